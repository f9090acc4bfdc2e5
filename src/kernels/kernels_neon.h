/* kernels_neon.h — internal to the kernels: the NEON int8-activation variants for
 * CPUs with the optional dot-product instructions, which the dispatcher (cpu.c)
 * offers as the tables "neon-dotprod" and "neon-i8mm" (the "neon" float table with
 * these q8_0/q4_0 products). Each returns NULL when this CPU lacks the instructions
 * (Linux getauxval: HWCAP_ASIMDDP, HWCAP2_I8MM), so an armv8-a build runs anywhere;
 * both compute the bits of the scalar reference (flm_qact_scalar). */
#ifndef FLM_KERNELS_NEON_H
#define FLM_KERNELS_NEON_H

#include "kernels/kernels_simd.h"

#if defined(__aarch64__)
const flm_qact_fns *flm_qact_neon_dotprod(void); /* SDOT (FEAT_DotProd) */
const flm_qact_fns *flm_qact_neon_i8mm(void);    /* SMMLA for prefill, SDOT for decode (FEAT_I8MM + FEAT_DotProd) */
#endif

#endif
