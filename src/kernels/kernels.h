/* kernels.h — the kernel table. The model code calls kernels only through an
 * flm_kernels table, so SIMD (AVX2, AVX-512, NEON) and quantized kernels slot in
 * without touching forward.c. kernels_ref.c holds the scalar references: they are
 * the specification every other implementation is tested against. */
#ifndef FLM_KERNELS_H
#define FLM_KERNELS_H

#include <stddef.h>
#include "base/tensor.h"

/* Y[t*ldy + r] = sum_c W[r, c] * X[t*cols + c]   for t in [0, n_tok), r in [r0, r1).
 * W is row-major [rows, cols] in its stored type; cols is a multiple of the type's
 * block size. */
typedef void (*flm_matmul_fn)(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1);

typedef struct {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */
    flm_matmul_fn matmul[FLM_DTYPE_COUNT];
    /* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] */
    void (*rmsnorm)(float *out, const float *x, const float *w, int n, float eps);
    float (*dot)(const float *a, const float *b, int n);
    /* y[i] += a * x[i] */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* out[i] = silu(gate[i]) * up[i] */
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
    /* NEOX rotary embedding of n_heads vectors of hd floats in place: pairs (i, i+hd/2)
     * rotated by cs[i], sn[i] as x0*c - x1*s, x1*c + x0*s (separate multiplies and
     * subtract/add, no FMA: every table is bit-identical to the reference). */
    void (*rope)(float *v, int n_heads, int hd, const float *cs, const float *sn);
    /* The int8-activation q8_0/q4_0 products in two steps (qact tables only; NULL in
     * float tables): qprep quantizes X [n_tok, cols] once into buf (qprep_bytes bytes,
     * 64-byte aligned), then qrun computes any rows [r0, r1) from it, exactly as
     * matmul[dt] of the same table would. So a product split into many row chunks
     * quantizes X once. dt is FLM_Q8_0 or FLM_Q4_0. */
    size_t (*qprep_bytes)(int dt, int n_tok, int cols);
    void (*qprep)(int dt, const float *X, int n_tok, int cols, void *buf);
    void (*qrun)(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1);
    /* Optional (NULL: flm_attend composes dot, flm_softmax and axpy). nq query heads
     * sharing one KV head (GQA), over len cached positions: for head h,
     * out[h*hd ..] = sum_p softmax_p(scale * q_h.K_p) V_p, with q_h = q + h*hd,
     * K_p = K + p*stride, V_p = V + p*stride; scores: scratch of nq*len floats.
     * Each head's result must not depend on nq (so any split of a group's heads
     * across threads gives the same logits). */
    void (*attend)(const float *q, int nq, const float *K, const float *V, int len, size_t stride, int hd, float scale,
                   float *scores, float *out);
} flm_kernels;

/* k->attend, or its definition from k's dot, flm_softmax and axpy (head by head)
 * when k has none. */
void flm_attend(const flm_kernels *k, const float *q, int nq, const float *K, const float *V, int len, size_t stride, int hd,
                float scale, float *scores, float *out);

/* The table for this CPU, chosen once from cpuid. FLM_KERNELS=scalar in the
 * environment forces the reference path. */
const flm_kernels *flm_kernels_best(void);
const flm_kernels *flm_kernels_scalar(void);

/* Numerically careful softmax in place over n entries (max-subtracted). */
void flm_softmax(float *x, int n);

#endif
