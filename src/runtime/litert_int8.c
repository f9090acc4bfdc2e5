/* litert_int8.c — int8 copies of a model's matrices as LiteRT's dynamic_int8 stores
 * them, and the hybrid (float input quantized per row) product. See litert_int8.h. */
#include "runtime/litert_int8.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

static void free_matrix(flm_i8_matrix *w) {
    free(w->q);
    free(w->scale);
    free(w->qsum);
    memset(w, 0, sizeof *w);
}

void flm_litert_int8_free(flm_litert_int8 *q) {
    if (!q) return;
    free_matrix(&q->embed);
    free_matrix(&q->lm_head);
    for (int l = 0; q->layers && l < q->n_layers; l++) {
        flm_i8_layer *L = &q->layers[l];
        free_matrix(&L->wq); free_matrix(&L->wk); free_matrix(&L->wv); free_matrix(&L->wo);
        free_matrix(&L->w_gate); free_matrix(&L->w_up); free_matrix(&L->w_down);
    }
    free(q->layers);
    free(q);
}

typedef struct {
    const flm_tensor *src;
    flm_i8_matrix *dst;
    float *row_buf;   /* [n_threads, 2 * cols]: a row as float, then room for its bytes unpacked */
    int rc;
} quant_job;

static void quant_part(void *ctx, int ith, int nth) {
    quant_job *j = ctx;
    const flm_tensor *t = j->src;
    const flm_dtype_info *d = flm_dtype_get(t->dtype);
    int rows = j->dst->rows, cols = j->dst->cols;
    float *buf = j->row_buf + (size_t)ith * 2 * (size_t)cols;
    for (int r = ith; r < rows; r += nth) {
        d->to_float(flm_tensor_plain_row(t, r, buf + cols), buf, (size_t)cols); /* a packed row unpacked first */
        int8_t *q = j->dst->q + (size_t)r * (size_t)cols;
        j->dst->scale[r] = flm_quantize_row_i8_channel(buf, q, cols);
        int32_t s = 0;
        for (int i = 0; i < cols; i++) s += q[i];
        j->dst->qsum[r] = s;
    }
}

static int quantize(flm_pool *pool, const flm_tensor *t, flm_i8_matrix *w) {
    if (t->ndim != 2) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: a %d-dimensional weight cannot be quantized per channel", t->name ? t->name : "weight", t->ndim);
    const flm_dtype_info *d = flm_dtype_get(t->dtype);
    if (!d || !d->to_float) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: its type cannot be read as float", t->name ? t->name : "weight");
    w->rows = (int)t->shape[0];
    w->cols = (int)t->shape[1];
    w->q = flm_malloc((size_t)w->rows * (size_t)w->cols);
    w->scale = flm_malloc((size_t)w->rows * sizeof *w->scale);
    w->qsum = flm_malloc((size_t)w->rows * sizeof *w->qsum);
    float *buf = flm_malloc((size_t)flm_pool_size(pool) * 2 * (size_t)w->cols * sizeof(float));
    if (!w->q || !w->scale || !w->qsum || !buf) { free(buf); return FLM_ERR_NOMEM; }
    quant_job j = {t, w, buf, 0};
    flm_pool_run(pool, quant_part, &j);
    free(buf);
    return FLM_OK;
}

int flm_litert_int8_new(const flm_model *m, int n_threads, flm_litert_int8 **out) {
    *out = NULL;
    flm_litert_int8 *q = flm_calloc(1, sizeof *q);
    if (!q) return FLM_ERR_NOMEM;
    flm_pool *pool = NULL;
    int rc = FLM_ERR_NOMEM;
    if (!(q->layers = flm_calloc((size_t)m->cfg.n_layers, sizeof *q->layers))) goto fail;
    q->n_layers = m->cfg.n_layers;
    if (n_threads != 1 && (rc = flm_pool_new(n_threads, &pool))) goto fail;
    if ((rc = quantize(pool, &m->embed, &q->embed))) goto fail;
    /* tied: the .tflite's LM head is the embedding's own int8 buffer and scales */
    if ((rc = quantize(pool, m->cfg.tie_word_embeddings ? &m->embed : &m->lm_head, &q->lm_head))) goto fail;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const flm_layer *L = &m->layers[l];
        flm_i8_layer *Q = &q->layers[l];
        if ((rc = quantize(pool, &L->wq, &Q->wq)) || (rc = quantize(pool, &L->wk, &Q->wk)) ||
            (rc = quantize(pool, &L->wv, &Q->wv)) || (rc = quantize(pool, &L->wo, &Q->wo)) ||
            (rc = quantize(pool, &L->w_gate, &Q->w_gate)) || (rc = quantize(pool, &L->w_up, &Q->w_up)) ||
            (rc = quantize(pool, &L->w_down, &Q->w_down)))
            goto fail;
    }
    flm_pool_free(pool);
    *out = q;
    return FLM_OK;
fail:
    flm_pool_free(pool);
    flm_litert_int8_free(q);
    return rc;
}

/* The int8 dot product with int32 accumulation: exact, so its order does not matter and
 * the compiler may vectorize it (this file is built with -O3; on x86-64 GCC and clang
 * also make an AVX2 clone chosen at load). */
static inline int32_t dot_i8(const int8_t *a, const int8_t *b, int n) {
    int32_t acc = 0;
    for (int i = 0; i < n; i++) acc += (int16_t)a[i] * (int16_t)b[i];
    return acc;
}

/* GCC only: clang 14 names the resolver "<name>.ifunc" and leaves <name> undefined for a
 * static archive's users (the fuzz build, which uses clang, failed to link). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FLM_NO_CLONES) && !defined(__SANITIZE_ADDRESS__)
#define I8_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define I8_CLONES
#endif

I8_CLONES void flm_i8_hybrid_rows(const flm_i8_matrix *W, const int8_t *xq, const float *xs, const int32_t *xzp, float *Y,
                        int n_tok, int r0, int r1) {
    int cols = W->cols;
    for (int t = 0; t < n_tok; t++) {
        const int8_t *x = xq + (size_t)t * (size_t)cols;
        float *y = Y + (size_t)t * (size_t)W->rows;
        for (int r = r0; r < r1; r++) {
            int32_t acc = dot_i8(x, W->q + (size_t)r * (size_t)cols, cols) - xzp[t] * W->qsum[r];
            y[r] = (float)acc * xs[t] * W->scale[r];
        }
    }
}

void flm_i8_embed_row(const flm_i8_matrix *E, int32_t id, float *out) {
    const int8_t *q = E->q + (size_t)id * (size_t)E->cols;
    float s = E->scale[id];
    for (int i = 0; i < E->cols; i++) out[i] = (float)q[i] * s;
}
