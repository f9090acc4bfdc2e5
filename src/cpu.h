/* cpu.h — what this CPU can run, detected once (cpuid + xgetbv on x86-64; NEON is
 * architectural on aarch64), and the kernel table chosen from it. */
#ifndef FLM_CPU_H
#define FLM_CPU_H

#include <stdbool.h>
#include "kernels.h"

typedef struct {
    bool avx2;    /* AVX2 + FMA + F16C, with the OS saving ymm state */
    bool avx512;  /* AVX-512 F/BW/VL/DQ, with the OS saving zmm/opmask state */
    bool neon;    /* aarch64 Advanced SIMD (always, when built for aarch64) */
} flm_cpu_features;

/* Detected on first call (thread-safe); the same pointer every time. */
const flm_cpu_features *flm_cpu_get(void);

/* The table called `name` ("scalar", "avx2", "avx512", "neon") if it is built in and
 * this CPU can run it; NULL otherwise. */
const flm_kernels *flm_kernels_by_name(const char *name);

/* The best table this CPU runs, honouring FLM_KERNELS=<name> (an unknown or
 * unsupported name warns once on stderr and falls back to the best). Chosen once. */
const flm_kernels *flm_kernels_select(void);

#endif
