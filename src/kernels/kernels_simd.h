/* kernels_simd.h — internal to the kernels: the per-ISA kernel tables and the
 * int8-activation matmuls for q8_0/q4_0 weights, which only the dispatcher (cpu.c)
 * composes into the tables callers get. Each table is defined only in a build for
 * its architecture (see the Makefile); callers go through cpu.h
 * (flm_kernels_by_name / flm_kernels_variant), which checks the CPU first. What the
 * ISA files share (attention drivers, scratch) is in drivers.h. */
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
    const flm_qpacked_fns *packed; /* optional: a packed weight layout (flm_kernels.qpacked) */
} flm_qact_fns;

const flm_qact_fns *flm_qact_scalar(void);       /* kernels_ref.c: the specification */
#if defined(__x86_64__)
const flm_qact_fns *flm_qact_avx2(void);         /* vpmaddubsw + vpmaddwd */
const flm_qact_fns *flm_qact_avx512vnni(void);   /* vpdpbusd (needs AVX512_VNNI + AVX512_VBMI) */
/* The same with its own packed q8_0 layout (16-row groups) and prefill on AMX-INT8
 * tiles (needs cpu.h's amx) */
const flm_qact_fns *flm_qact_avx512amx(void);
/* 256-bit vpdpbusd, bit-identical to flm_qact_avx2 (kernels_avx2.c, kernels_vnni256.h) */
const flm_qact_fns *flm_qact_avxvnni(void);      /* AVX-VNNI (VEX) */
const flm_qact_fns *flm_qact_avx512vnni256(void); /* AVX512_VNNI + AVX512_VL (EVEX), on ymm */
#endif
#if defined(__aarch64__)
const flm_qact_fns *flm_qact_neon(void);         /* vmull_s8 + vpadalq_s16 */
#endif

/* The activation quantizer of the reference: x[cols] (cols % 32 == 0) to q[cols] and
 * one float scale per 32 values. Every ISA's quantizer gives identical q and d. */
void flm_quantize_act_ref(const float *x, int cols, int8_t *q, float *d);

#endif
