/* model.h — a Qwen2 model bound to its weights: the hyper-parameters, and one
 * flm_tensor per weight, whatever the source (Hugging Face folder with one or
 * more safetensors shards, or a GGUF package). Binding checks every tensor's
 * presence, dtype and shape against the config; the forward pass (forward.h)
 * never sees file formats. */
#ifndef FLM_MODEL_H
#define FLM_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "fieldlm.h"
#include "base/tensor.h"

typedef struct {
    char model_type[32];     /* "qwen2" */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;            /* given, or hidden_size / n_heads */
    int max_position_embeddings;
    double rope_theta;
    double rms_norm_eps;
    bool tie_word_embeddings;
    int bos_token_id;        /* -1 if none */
    int eos_token_ids[8];    /* from config.json (int or list) */
    int n_eos;
    char torch_dtype[16];    /* the checkpoint's declared dtype, informational */
} flm_config;

/* Parses a config.json (transformers 4.x or 5.x layout). `what` names the file. */
int flm_config_parse(const char *text, size_t len, const char *what, flm_config *cfg);
int flm_config_load(const char *path, flm_config *cfg);
/* rms_norm_eps and rope_theta must be finite, > 0 and a normal float32 (the forward
 * pass computes in float32); otherwise FLM_ERR_FORMAT naming what, key and value. */
int flm_config_check_positive(double v, const char *what, const char *key);

typedef struct {
    flm_tensor attn_norm;                   /* [hidden] */
    flm_tensor wq, wk, wv, wo;              /* [n_heads*hd, hidden], [n_kv*hd, hidden] x2, [hidden, n_heads*hd] */
    flm_tensor bq, bk, bv;                  /* [n_heads*hd], [n_kv*hd] x2 */
    flm_tensor ffn_norm;                    /* [hidden] */
    flm_tensor w_gate, w_up, w_down;        /* [inter, hidden] x2, [hidden, inter] */
} flm_layer;

typedef struct flm_model flm_model;

struct flm_model {
    flm_config cfg;
    flm_tensor embed;        /* [vocab, hidden] */
    flm_tensor final_norm;   /* [hidden] */
    flm_tensor lm_head;      /* [vocab, hidden]; == embed when tied */
    flm_layer *layers;       /* [n_layers] */
    /* Norm weights and biases converted to f32 at load (small). Weight matrices
     * stay in their stored type, in place in the mapping, unless LoRA was merged. */
    void **owned;
    size_t n_owned, cap_owned;
    struct flm_model_source *source; /* the open files (model_load.c) */
    void *arena;             /* weights loaded into memory (model_resident.c); NULL: mapped */
    size_t arena_span, loaded_bytes;
    char *path;
};

/* How a weight is named in a Hugging Face checkpoint: "model.layers.3.self_attn.q_proj.weight". */
typedef enum {
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_BQ, W_BK, W_BV, W_FFN_NORM, W_GATE, W_UP, W_DOWN, W_LAYER_COUNT
} flm_layer_weight;

/* Fills name with the HF name of layer weight w of layer l. */
void flm_hf_layer_name(int layer, flm_layer_weight w, char *name, size_t len);
/* The same weight in llama.cpp's GGUF naming: "blk.3.attn_q.weight". */
void flm_gguf_layer_name(int layer, flm_layer_weight w, char *name, size_t len);
/* Expected shape of layer weight w under cfg; returns ndim. */
int flm_layer_weight_shape(const flm_config *cfg, flm_layer_weight w, int64_t shape[FLM_MAX_DIMS]);
flm_tensor *flm_layer_weight_slot(flm_layer *L, flm_layer_weight w);

/* Options for opening a model. */
typedef struct {
    const char **lora_dirs;  /* PEFT adapter folders to merge at load (HF folders) */
    const float *lora_scales;/* extra user scale per adapter (1.0 = as trained) */
    int n_lora;
    flm_weights_mode weights; /* FLM_WEIGHTS_AUTO (0), _MAP or _LOAD: see model_resident.c */
} flm_model_options;

/* Opens a Hugging Face folder (config.json + safetensors), merging opt's LoRA
 * adapters. Any model path, folder or .gguf package, is opened by src/package
 * (source.h: flm_source_model, flm_load_model). */
int flm_model_open_dir(const char *dir, const flm_model_options *opt, flm_model **out);
/* Binds the tensors of an opened GGUF file under cfg (the hyper-parameters src/package
 * read from its keys); the model keeps its own reference to g. Adapters are merged
 * into a package when it is made (fieldlm convert --lora), so none are taken here. */
struct flm_gguf_file;
int flm_model_open_gguf(struct flm_gguf_file *g, const flm_config *cfg, flm_weights_mode weights, flm_model **out);
void flm_model_close(flm_model *m);

/* model_resident.c: loads the matrices still in a file mapping into memory (or,
 * in AUTO mode, leaves them mapped when memory is short). */
int flm_model_place_weights(flm_model *m, flm_weights_mode mode);
void flm_model_unload_weights(flm_model *m);
/* Bytes of weights copied into memory (0: every matrix runs from its mapping or
 * was already an owned copy), and how many of those sit on transparent huge pages. */
size_t flm_model_loaded_bytes(const flm_model *m);
/* The name of the kernel layout the loaded q8_0/q4_0 matrices were packed into at load
 * ("avx512-g16", "avx512-r16"; FLM_QPACK=0 leaves them as in the file), or NULL when none was. */
const char *flm_model_weight_layout(const flm_model *m);
size_t flm_model_huge_page_bytes(const flm_model *m);

/* Bytes of weights read for one decode step (all matrices + embedding row). */
size_t flm_model_weight_bytes(const flm_model *m);

#endif
