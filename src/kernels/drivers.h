/* drivers.h — internal to the kernels: what every kernel table may call, below the
 * ISA files and above nothing but base: the attention drivers (the composed
 * definition and the blocked driver that the SIMD tables feed with their pieces),
 * the softmax they share, and a per-thread scratch. drivers.c calls no ISA file and
 * not the dispatcher (cpu.c), so the layering inside src/kernels is
 *     cpu.c (dispatcher) -> kernels_{ref,avx2,avx512,neon}.c -> drivers.c -> base
 * with no call cycle (tools/check-layers.sh). */
#ifndef FLM_KERNELS_DRIVERS_H
#define FLM_KERNELS_DRIVERS_H

#include <stddef.h>

#include "kernels/kernels.h"

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
