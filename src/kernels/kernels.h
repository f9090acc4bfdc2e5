/* kernels.h — the kernel table. Every SIMD path of the library goes through an
 * flm_kernels table (the forward pass, the LoRA merge, the bandwidth probe), so SIMD
 * (AVX2, AVX-512, NEON) and quantized kernels slot in without touching their callers,
 * and FLM_KERNELS reaches all of them. kernels_ref.c holds the scalar reference, the
 * one specification every other implementation is tested against; cpu.c is the one
 * dispatcher (cpu.h). */
#ifndef FLM_KERNELS_H
#define FLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "base/tensor.h"

/* Y[t*ldy + r] = sum_c W[r, c] * X[t*cols + c]   for t in [0, n_tok), r in [r0, r1).
 * W is row-major [rows, cols] in its stored type; cols is a multiple of the type's
 * block size. */
typedef void (*flm_matmul_fn)(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1);

/* A layout of q8_0/q4_0 matrices that a table's int8 products read faster than the
 * file's (no byte rearranging in the inner loop), made once when the weights are
 * loaded into memory (src/model/model_resident.c). The matrix keeps its byte count;
 * bytes move only within a group of row_group consecutive rows (the last group may
 * be shorter), so a group is still found at its first row * row_bytes. */
typedef struct flm_qpacked_fns {
    const char *name;
    int row_group; /* rows whose bytes are interleaved: 1 (each row packed alone) or 16 */
    /* Rows [r0, r1) of a matrix [rows, cols] (dt FLM_Q8_0 or FLM_Q4_0) in the file's
     * layout at src, written packed at dst (the same offsets); r0 and r1 are multiples
     * of row_group or rows. dst does not overlap src. */
    void (*pack_rows)(int dt, const void *src, void *dst, int64_t rows, int cols, int64_t r0, int64_t r1);
    /* Row r of the packed matrix W [rows, cols] back in the file's layout (dst, the
     * row's byte count). */
    void (*unpack_row)(int dt, const void *W, int64_t rows, int cols, int64_t r, void *dst);
    /* As flm_kernels.qprep / qrun, for W [rows, cols] in this layout: qrun's results,
     * bit for bit, from its own prepared X (the two X layouts differ); any [r0, r1). */
    size_t (*prep_bytes)(int dt, int n_tok, int cols);
    void (*prep)(int dt, const float *X, int n_tok, int cols, void *buf);
    void (*run)(int dt, const void *W, const void *Xp, float *Y, int n_tok, int rows, int cols, int ldy, int r0, int r1);
} flm_qpacked_fns;

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
    /* Optional (NULL: none): this table's packed layout of q8_0/q4_0 matrices. */
    const flm_qpacked_fns *qpacked;
    /* Optional (NULL: flm_attend composes dot, flm_softmax and axpy). nq query heads
     * sharing one KV head (GQA), over len cached positions: for head h,
     * out[h*hd ..] = sum_p softmax_p(scale * q_h.K_p) V_p, with q_h = q + h*hd,
     * K_p = K + p*stride, V_p = V + p*stride; scores: scratch of nq*len floats.
     * Each head's result must not depend on nq (so any split of a group's heads
     * across threads gives the same logits). */
    void (*attend)(const float *q, int nq, const float *K, const float *V, int len, size_t stride, int hd, float scale,
                   float *scores, float *out);
    /* One output row of a LoRA merge (src/model/lora.c), specified exactly:
     *   acc[c] = fma(u[k], V[k*cols + c], acc[c])   for k = 0..r-1, from acc[c] = 0,
     *            each step one correctly rounded float32 fused multiply-add
     *   W[c]   = W[c] + (float)(acc[c] * scale)     (a multiply, then an add)
     * for c in [0, cols). acc is scratch for cols floats (a table may leave it unused).
     * fma is correctly rounded and the columns are independent, so every table gives
     * the same bits as the reference. */
    void (*lora_row)(const float *u, const float *V, int r, int64_t cols, float scale, float *acc, float *W);
    /* The bandwidth probe's load loop (src/dev/membw.c): reads [p, p + n), p 64-byte
     * aligned and n a multiple of FLM_STREAM_CHUNK, with this ISA's widest loads into
     * independent accumulators (bound by loads, not adds), and returns a value that
     * depends on every byte read, so the loads cannot be dropped. Values differ between
     * tables; only the bytes read are specified. */
    uint64_t (*stream_read)(const void *p, size_t n);
} flm_kernels;

#define FLM_STREAM_CHUNK 512 /* bytes: stream_read's n is a multiple of this */

/* k->attend, or its definition from k's dot, flm_softmax and axpy (head by head)
 * when k has none. */
void flm_attend(const flm_kernels *k, const float *q, int nq, const float *K, const float *V, int len, size_t stride, int hd,
                float scale, float *scores, float *out);

/* Row r of t (a q8_0/q4_0 matrix) in the file's layout: a pointer into t's data, or
 * buf (t's row byte count) holding the row unpacked when t is packed (t->layout). */
const void *flm_tensor_plain_row(const flm_tensor *t, int64_t r, void *buf);

/* The table for this CPU, chosen once from cpuid by the dispatcher (cpu.c; the same
 * as flm_kernels_select in cpu.h). FLM_KERNELS=scalar in the environment forces the
 * reference path. */
const flm_kernels *flm_kernels_best(void);
/* The scalar reference table (kernels_ref.c; float activations). */
const flm_kernels *flm_kernels_scalar(void);

/* Numerically careful softmax in place over n entries (max-subtracted). */
void flm_softmax(float *x, int n);

#endif
