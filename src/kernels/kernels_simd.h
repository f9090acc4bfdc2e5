/* kernels_simd.h — internal to the kernels: the per-ISA kernel tables, the
 * int8-activation matmuls for q8_0/q4_0 weights, and a per-thread scratch.
 * Each table is defined only in a build for its architecture (see the Makefile);
 * callers go through cpu.h (flm_kernels_by_name / flm_kernels_variant), which
 * checks the CPU first and composes the tables. */
#ifndef FLM_KERNELS_SIMD_H
#define FLM_KERNELS_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Float-activation tables: every matmul widens weights to float (docs/KERNELS.md). */
#if defined(__x86_64__)
const flm_kernels *flm_kernels_avx2(void);
const flm_kernels *flm_kernels_avx512(void);
#endif
#if defined(__aarch64__)
const flm_kernels *flm_kernels_neon(void);
#endif

/* Int8-activation matmuls for q8_0 and q4_0 weights (same signature and contract as
 * flm_matmul_fn). Each call quantizes every token of X to blocks of 32 int8 with a
 * float scale (flm_quantize_act_ref: d = max|x|/127, q = round-to-even(x/d) computed
 * as x * (1/d)), then sums integer products per block, scaled by d_w * d_x, in float.
 * The result for a row depends only on that row and X: identical for any [r0, r1)
 * split and any token batching. */
typedef struct {
    flm_matmul_fn q8_0, q4_0;
    /* The same products in two steps (see flm_kernels.qprep in kernels.h). */
    size_t (*prep_bytes)(int dt, int n_tok, int cols);
    void (*prep)(int dt, const float *X, int n_tok, int cols, void *buf);
    void (*run)(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1);
} flm_qact_fns;

const flm_qact_fns *flm_qact_scalar(void);       /* kernels_ref.c: the specification */
#if defined(__x86_64__)
const flm_qact_fns *flm_qact_avx2(void);         /* vpmaddubsw + vpmaddwd */
const flm_qact_fns *flm_qact_avx512vnni(void);   /* vpdpbusd (needs AVX512_VNNI + AVX512_VBMI) */
#endif
#if defined(__aarch64__)
const flm_qact_fns *flm_qact_neon(void);         /* vmull_s8 + vpadalq_s16 */
#endif

/* The activation quantizer of the reference: x[cols] (cols % 32 == 0) to q[cols] and
 * one float scale per 32 values. Every ISA's quantizer gives identical q and d. */
void flm_quantize_act_ref(const float *x, int cols, int8_t *q, float *d);

/* Attention helpers shared by the tables (see flm_kernels.attend in kernels.h). */
typedef float (*flm_dot_fn)(const float *a, const float *b, int n);
typedef void (*flm_axpy_fn)(float *y, float a, const float *x, int n);
/* The definition of attend composed from dot, flm_softmax and axpy, head by head. */
void flm_attend_composed(flm_dot_fn dot, flm_axpy_fn axpy, const float *q, int nq, const float *K, const float *V, int len,
                         size_t stride, int hd, float scale, float *scores, float *out);

/* A table's pieces of blocked attention: scores sc[p] = scale * q.K_p for p in
 * [p0, p1) (p0 a multiple of 4), a softmax in place, and out += sum sc[p] V_p over
 * [p0, p1) in order of p. */
typedef struct {
    void (*scores)(const float *q, const float *K, size_t stride, int hd, int p0, int p1, float scale, float *sc);
    void (*softmax)(float *x, int n);
    void (*values)(const float *sc, const float *V, size_t stride, int hd, int p0, int p1, float *out);
} flm_attend_ops;
#define FLM_ATT_BLOCK 32 /* positions per block: 16 KiB of K at head size 128 */
/* Blocked attention of nq heads sharing K/V: every head's scores block by block (a
 * block of K is read from memory once, then from L1 by the other heads), a softmax
 * per head, then the outputs block by block likewise. Blocks start at multiples of
 * FLM_ATT_BLOCK whatever nq is, so each head's result does not depend on nq. */
void flm_attend_blocked(const flm_attend_ops *ops, const float *q, int nq, const float *K, const float *V, int len,
                        size_t stride, int hd, float scale, float *scores, float *out);

/* A 64-byte aligned buffer of at least `bytes`, private to the calling thread and to
 * `slot` (0..FLM_SCRATCH_SLOTS-1), kept and grown across calls, freed when the thread
 * exits. NULL if out of memory. The contents are not preserved when it grows. */
#define FLM_SCRATCH_SLOTS 3
void *flm_kernel_scratch(int slot, size_t bytes);

#endif
