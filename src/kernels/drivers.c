/* drivers.c — the pieces every kernel table may call (drivers.h): the attention
 * drivers (composed definition, blocked driver), flm_attend's choice between a
 * table's attend and the composed definition, the softmax, and the per-thread
 * kernel scratch. Calls no ISA file and not the dispatcher. */
#include "kernels/drivers.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- attention ---- */

void flm_attend_composed(flm_dot_fn dot, flm_axpy_fn axpy, const float *q, int nq, const float *K, const float *V, int len,
                         size_t stride, int hd, float scale, float *scores, float *out) {
    for (int h = 0; h < nq; h++) {
        const float *qh = q + (size_t)h * (size_t)hd;
        float *oh = out + (size_t)h * (size_t)hd;
        for (int p = 0; p < len; p++) scores[p] = dot(qh, K + (size_t)p * stride, hd) * scale;
        flm_softmax(scores, len);
        memset(oh, 0, (size_t)hd * sizeof(float));
        for (int p = 0; p < len; p++) axpy(oh, scores[p], V + (size_t)p * stride, hd);
    }
}

void flm_attend_blocked(const flm_attend_ops *ops, const float *q, int nq, const float *K, const float *V, int len,
                        size_t stride, int hd, float scale, float *scores, float *out) {
    for (int p0 = 0; p0 < len; p0 += FLM_ATT_BLOCK) {
        int p1 = p0 + FLM_ATT_BLOCK < len ? p0 + FLM_ATT_BLOCK : len;
        for (int h = 0; h < nq; h++) ops->scores(q + (size_t)h * (size_t)hd, K, stride, hd, p0, p1, scale, scores + (size_t)h * (size_t)len);
    }
    for (int h = 0; h < nq; h++) ops->softmax(scores + (size_t)h * (size_t)len, len);
    memset(out, 0, (size_t)nq * (size_t)hd * sizeof(float));
    for (int p0 = 0; p0 < len; p0 += FLM_ATT_BLOCK) {
        int p1 = p0 + FLM_ATT_BLOCK < len ? p0 + FLM_ATT_BLOCK : len;
        for (int h = 0; h < nq; h++) ops->values(scores + (size_t)h * (size_t)len, V, stride, hd, p0, p1, out + (size_t)h * (size_t)hd);
    }
}

void flm_attend(const flm_kernels *k, const float *q, int nq, const float *K, const float *V, int len, size_t stride, int hd,
                float scale, float *scores, float *out) {
    if (k->attend) k->attend(q, nq, K, V, len, stride, hd, scale, scores, out);
    else flm_attend_composed(k->dot, k->axpy, q, nq, K, V, len, stride, hd, scale, scores, out);
}

void flm_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* ---- rows of packed matrices ---- */

const void *flm_tensor_plain_row(const flm_tensor *t, int64_t r, void *buf) {
    size_t rb = flm_dtype_bytes(t->dtype, (uint64_t)t->shape[1]);
    if (!t->layout) return (const unsigned char *)t->data + (size_t)r * rb;
    ((const flm_qpacked_fns *)t->layout)->unpack_row((int)t->dtype, t->data, t->shape[0], (int)t->shape[1], r, buf);
    return buf;
}

/* ---- per-thread scratch ---- */

typedef struct {
    void *p[FLM_SCRATCH_SLOTS];
    size_t n[FLM_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local scratch_set *t_scratch;

static void scratch_free(void *v) {
    scratch_set *s = v;
    for (int i = 0; i < FLM_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}
static void scratch_key_init(void) { (void)pthread_key_create(&g_scratch_key, scratch_free); }

void *flm_kernel_scratch(int slot, size_t bytes) {
    scratch_set *s = t_scratch;
    if (slot < 0 || slot >= FLM_SCRATCH_SLOTS) return NULL;
    if (!s) {
        pthread_once(&g_scratch_once, scratch_key_init);
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        /* the key's destructor frees the set when this thread exits */
        (void)pthread_setspecific(g_scratch_key, s);
        t_scratch = s;
    }
    if (s->n[slot] < bytes) {
        size_t cap = (bytes + bytes / 4 + 63) & ~(size_t)63;
        void *p = aligned_alloc(64, cap);
        if (!p) return NULL;
        free(s->p[slot]);
        s->p[slot] = p;
        s->n[slot] = cap;
    }
    return s->p[slot];
}
