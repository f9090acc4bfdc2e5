/* model_source.h — the open files behind a model, and what the binders share
 * (internal to model_*.c and the converter). */
#ifndef FLM_MODEL_SOURCE_H
#define FLM_MODEL_SOURCE_H

#include "model/model.h"
#include "format/safetensors.h"

struct flm_gguf_file;

typedef struct flm_model_source {
    flm_st_file **shards;          /* Hugging Face safetensors shards */
    size_t n_shards;
    struct flm_gguf_file *gguf;    /* or a GGUF package */
} flm_model_source;

/* Owned buffer attached to the model (freed with it). */
void *flm_model_own(flm_model *m, size_t bytes);
/* Replaces t's data with an owned f32 copy (no-op for f32). */
int flm_tensor_to_f32_owned(flm_model *m, flm_tensor *t);
int flm_check_shape(const char *file, const flm_tensor *t, const char *name, const int64_t *shape, int ndim);

/* Every weight of m by its Hugging Face name and shape (for LoRA base checks).
 * Caller frees the array and *names_block. */
#include "model/lora.h"
flm_lora_base_weight *flm_model_base_weights(const flm_model *m, size_t *n, char **names_block);

/* True when p lies in one of the model's mapped source files (not an owned copy). */
bool flm_model_is_mapped(const flm_model *m, const void *p);

/* Refuses a layer count the tensor table cannot hold (a qwen2 layer is 12 tensors),
 * before anything proportional to it is allocated. `key` names the setting. */
int flm_check_layer_count(const flm_config *c, size_t n_tensors, const char *file, const char *key);

/* model_load.c, for the binders (model_hf.c, model_gguf.c): a model with no weights
 * yet (path kept for messages), and the steps after binding: LoRA merge (opt->lora_*),
 * small tensors to f32, weight placement (opt->weights). opt may be NULL. */
int flm_model_new(const char *path, flm_model **out);
int flm_model_finish(flm_model *m, const flm_model_options *opt);
/* The Hugging Face name of a layer weight after "model.layers.N." */
const char *flm_hf_layer_suffix(flm_layer_weight w);

#endif
