/* forward.h — the Qwen2 forward pass over a KV cache.
 * A flm_forward_state holds one sequence's KV cache and the scratch buffers; it
 * is owned by one thread at a time. The cache grows with the tokens actually
 * processed (doubling) up to n_ctx, which is chosen at run time. */
#ifndef FLM_FORWARD_H
#define FLM_FORWARD_H

#include <stdint.h>
#include "kernels/kernels.h"
#include "model/model.h"
#include "runtime/litert_int8.h"

typedef struct flm_forward_state flm_forward_state;

typedef enum {
    FLM_LOGITS_NONE,  /* only fill the cache */
    FLM_LOGITS_LAST,  /* logits of the last token: [vocab] */
    FLM_LOGITS_ALL,   /* logits of every token: [n, vocab] */
} flm_logits_mode;

/* n_ctx <= 0 picks the default: min(4096, max_position_embeddings). n_ctx larger
 * than max_position_embeddings is an error. */
int flm_forward_new(const flm_model *m, int n_ctx, flm_forward_state **out);
void flm_forward_free(flm_forward_state *st);
/* Uses a specific kernel table (tests); default flm_kernels_best(). */
void flm_forward_set_kernels(flm_forward_state *st, const flm_kernels *k);

/* LiteRT dynamic_int8 numerics emulated (litert_int8.h): every matrix product and the
 * embedding lookup use q's int8 weights, with the input quantized per row as LiteRT's
 * XNNPACK does; NULL (the default) = fieldlm's own numerics, untouched. q must outlive
 * the state's use of it. FLM_ERR_ARG if q was made for another shape. */
int flm_forward_set_litert_int8(flm_forward_state *st, const flm_litert_int8 *q);

/* Runs the matrix products and attention on n_threads threads (<= 0: physical
 * cores; 1: the calling thread only, the default). Results are bit-identical for
 * any thread count. */
int flm_forward_set_threads(flm_forward_state *st, int n_threads);
int flm_forward_threads(const flm_forward_state *st);

/* Processes n tokens at positions n_past..n_past+n-1 (prefill when n > 1, decode
 * when n == 1), appending to the cache. Logits go to `logits` as `mode` says.
 * Returns FLM_ERR_CONTEXT (cache untouched) if the tokens do not fit. */
int flm_forward(flm_forward_state *st, const int32_t *ids, int n, float *logits, flm_logits_mode mode);

int flm_forward_n_past(const flm_forward_state *st);
int flm_forward_n_ctx(const flm_forward_state *st);
/* Forgets cached tokens from position n_keep on (n_keep <= n_past): reuse of a
 * shared prefix between chat turns. */
void flm_forward_truncate(flm_forward_state *st, int n_keep);
/* Bytes of KV cache currently allocated. */
size_t flm_forward_kv_bytes(const flm_forward_state *st);

#endif
