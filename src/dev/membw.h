/* membw.h — measures this machine's memory read bandwidth, the ceiling a
 * bandwidth-bound decode step can reach (`fieldlm bench` prints decode GB/s as a
 * share of it).
 *
 * Method: one buffer much larger than the caches (default 1 GiB) is written once
 * (so every page is resident), then read start to end several times by T threads
 * of the project's pool, each streaming its own contiguous slice with a kernel
 * table's load loop (flm_kernels.stream_read: AVX-512, AVX2, NEON, or plain 64-bit
 * loads; the table the kernels' dispatcher selects, so FLM_KERNELS applies) into
 * several independent accumulators, so the loop is bound by loads, not by adds. The
 * result is the best repeat, in GB/s (1e9 bytes per second). Nothing is printed;
 * the buffer is freed before returning. */
#ifndef FLM_MEMBW_H
#define FLM_MEMBW_H

#include <stddef.h>

#define FLM_MEMBW_DEFAULT_BYTES ((size_t)1 << 30)
#define FLM_MEMBW_DEFAULT_REPEATS 8

typedef struct {
    size_t bytes;   /* buffer size; 0 = FLM_MEMBW_DEFAULT_BYTES (rounded down to 4 KiB, >= 1 MiB) */
    int n_threads;  /* <= 0: the number of physical cores */
    int repeats;    /* <= 0: FLM_MEMBW_DEFAULT_REPEATS */
    const char *isa;/* NULL: the selected kernel table's loads (flm_kernels_best(): the widest this
                     * CPU has, or FLM_KERNELS); or a table: "avx512", "avx2", "neon", "scalar" */
} flm_membw_options;

typedef struct {
    double best_gb_s;   /* fastest repeat */
    double mean_gb_s;   /* mean over the repeats */
    double worst_gb_s;  /* slowest repeat */
    size_t bytes;       /* bytes read per repeat */
    int n_threads;
    int repeats;
    const char *isa;    /* "avx512", "avx2", "neon" or "scalar": the load loop used */
} flm_membw_result;

/* Runs the measurement (about bytes × (repeats + 1) of memory traffic). opt may be
 * NULL for the defaults. FLM_ERR_NOMEM when the buffer cannot be allocated,
 * FLM_ERR_ARG for a buffer under 1 MiB or a load loop this CPU cannot run. */
int flm_membw_measure(const flm_membw_options *opt, flm_membw_result *out);

/* The load loop used without opt->isa: the selected kernel table's name (what
 * flm_membw_result.isa will say). */
const char *flm_membw_isa(void);

#endif
