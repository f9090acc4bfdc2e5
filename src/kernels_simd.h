/* kernels_simd.h — the per-ISA kernel tables, internal to the kernels. Each is
 * defined only in a build for its architecture (see the Makefile); callers go
 * through flm_kernels_by_name() in cpu.c, which checks the CPU first. */
#ifndef FLM_KERNELS_SIMD_H
#define FLM_KERNELS_SIMD_H

#include "kernels.h"

#if defined(__x86_64__)
const flm_kernels *flm_kernels_avx2(void);
const flm_kernels *flm_kernels_avx512(void);
#endif
#if defined(__aarch64__)
const flm_kernels *flm_kernels_neon(void);
#endif

#endif
