/* litert.h — Hugging Face Qwen2 checkpoint (+ LoRA) → LiteRT model (.tflite) or
 * LiteRT-LM bundle (.litertlm), streaming like the GGUF converter (convert.h).
 *
 * The graph follows AI Edge Torch's signature contract (prefill_<T> and decode;
 * inputs tokens [1,T], input_pos [T], kv_cache_k_<i>/kv_cache_v_<i> [1,S,KV,D];
 * outputs the same KV names and, in decode, logits [1,1,V]) and Qwen2 exactly
 * (q/k/v bias, NEOX rotary, GQA, SwiGLU, RMSNorm, tied or untied lm_head). The
 * causal mask is computed from input_pos in the graph (O(S) constants). Weights
 * are stored once after the flatbuffer (Buffer.offset/size), shared by every
 * signature, and streamed one tensor at a time. docs/LITERT.md has the details. */
#ifndef FLM_LITERT_H
#define FLM_LITERT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    FLM_LITERT_F32 = 0,          /* "f32" / "none": float32 weights */
    FLM_LITERT_FP16,             /* "fp16": float16 weights, DEQUANTIZE to float32 */
    FLM_LITERT_DYNAMIC_INT8,     /* "dynamic_int8": int8 per-channel weights, inputs quantized at run time */
    FLM_LITERT_WEIGHT_ONLY_INT8, /* "weight_only_int8": int8 per-channel weights, DEQUANTIZE, float compute */
} flm_litert_recipe;

typedef enum { FLM_LITERT_TFLITE = 0, FLM_LITERT_LITERTLM } flm_litert_format;

#define FLM_LITERT_MAX_PREFILL 16

typedef struct {
    flm_litert_format format;
    flm_litert_recipe recipe;
    int ctx;                          /* cache length S; 0: 4096 (capped at max_position_embeddings) */
    int prefill[FLM_LITERT_MAX_PREFILL]; /* prefill lengths; n_prefill 0: 8,64,128,256,512,1024 */
    int n_prefill;
    const char *const *lora_dirs;
    const float *lora_scales;
    int n_lora;
    int n_threads;
    volatile sig_atomic_t *cancel;
    void (*progress)(void *ctx, int index, int total, const char *name, uint64_t bytes_done, uint64_t bytes_total);
    void *progress_ctx;
    /* warnings (generation settings LiteRT-LM cannot express); may be NULL */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} flm_litert_options;

typedef struct {
    int n_signatures;
    int n_weights;
    int ctx;
    uint64_t weight_bytes;   /* bytes of weight data after the flatbuffer */
    uint64_t flatbuffer_bytes;
    uint64_t bytes_written;
    double seconds;
    size_t peak_rss;
    bool no_tokenizer;
} flm_litert_stats;

/* Parses a recipe name (f32, none, fp16, dynamic_int8, weight_only_int8). */
bool flm_litert_parse_recipe(const char *s, flm_litert_recipe *out);
const char *flm_litert_recipe_name(flm_litert_recipe r);

/* Errors as flm_convert (convert.h); a checkpoint the graph cannot express (not
 * qwen2) or a .litertlm without tokenizer is FLM_ERR_ARG / FLM_ERR_FORMAT. */
int flm_convert_litert(const char *hf_dir, const char *out_path, const flm_litert_options *opt, flm_litert_stats *stats);

#endif
