/* cpu.h — what this CPU can run, detected once (cpuid + xgetbv on x86-64; NEON is
 * architectural on aarch64), and the kernel table chosen from it. */
#ifndef FLM_CPU_H
#define FLM_CPU_H

#include <stdbool.h>
#include "kernels/kernels.h"

typedef struct {
    bool avx2;       /* AVX2 + FMA + F16C, with the OS saving ymm state */
    bool avx512;     /* AVX-512 F/BW/VL/DQ, with the OS saving zmm/opmask state */
    bool avx512vnni; /* avx512 and AVX512_VNNI (vpdpbusd on zmm) */
    bool avx512vbmi; /* avx512 and AVX512_VBMI (vpermb/vpermt2b); the int8 AVX-512
                      * kernels need both, else the avx512 table uses the AVX2 ones */
    bool avxvnni;    /* avx2 and AVX-VNNI (VEX vpdpbusd on ymm) */
    bool amx;        /* avx512vnni + avx512vbmi, AMX-TILE + AMX-INT8, with the OS saving
                      * and granting (Linux arch_prctl) the tile state */
    bool neon;       /* aarch64 Advanced SIMD (always, when built for aarch64) */
    char vendor[13]; /* cpuid vendor string ("GenuineIntel", "AuthenticAMD"), x86-64 */
    int family, model; /* cpuid display family and model, x86-64 (0 elsewhere) */
} flm_cpu_features;

/* Detected on first call (thread-safe); the same pointer every time. */
const flm_cpu_features *flm_cpu_get(void);

/* Whether this process holds Linux's permission for the AMX tile state (read back from
 * the kernel, ARCH_GET_XCOMP_PERM): "granted"; "not requested" (FLM_KERNELS names
 * another table, or FLM_QACT=0 / FLM_QPACK=0 rule the AMX table out, so the
 * process-wide permission and its larger signal frames are avoided); "refused"
 * (asked, denied); "none" (no usable AMX-INT8 on this CPU/OS). */
const char *flm_cpu_amx_state(void);

/* The table called `name` ("scalar", "avx2", "avx512", "neon"; with int8 activations
 * only, "avx2-vnni" and "avx512-vnni256": the avx2 / avx512 table with 256-bit
 * vpdpbusd q8_0/q4_0 kernels, "avx512-amx": the avx512 table with its own packed q8_0
 * layout (16-row groups) and AMX-INT8 prefill on
 * packed weights, and "neon-dotprod" / "neon-i8mm": the neon table with
 * SDOT / SMMLA int8 products) if it is built in and this CPU can run it; NULL otherwise. With qact, q8_0/q4_0 matmuls quantize the
 * activations to int8 blocks (integer dot products; see docs/KERNELS.md); without,
 * every matmul keeps float activations. The scalar tables are the references. */
const flm_kernels *flm_kernels_variant(const char *name, bool qact);

/* flm_kernels_variant(name, flm_kernels_qact_default()). */
const flm_kernels *flm_kernels_by_name(const char *name);

/* Whether q8_0/q4_0 use int8 activations by default: yes, unless the environment
 * has FLM_QACT=0 (read once). */
bool flm_kernels_qact_default(void);

/* Whether q8_0/q4_0 matrices loaded into memory are packed into the table's own layout
 * (flm_kernels.qpacked): yes, unless the environment has FLM_QPACK=0. */
bool flm_kernels_qpack_enabled(void);

/* The table names in this CPU's order of preference, NULL-terminated (chosen by CPU
 * family where several tables are correct: see docs/KERNELS.md). The first one
 * flm_kernels_by_name returns is the default. */
const char *const *flm_kernels_preference(void);

/* The best table this CPU runs, honouring FLM_KERNELS=<name> (an unknown or
 * unsupported name warns once on stderr and falls back to the best) and FLM_QACT.
 * Chosen once. */
const flm_kernels *flm_kernels_select(void);

#endif
