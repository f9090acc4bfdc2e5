/* membw.c — memory read bandwidth measurement (see membw.h): a large resident
 * buffer streamed by the thread pool with a kernel table's load loop
 * (flm_kernels.stream_read: the widest loads the CPU has, or the table FLM_KERNELS
 * or opt->isa names). No SIMD of its own: the kernels' dispatcher chooses. */
#include "dev/membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "base/common.h"
#include "base/threadpool.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"

#define MIB ((size_t)1 << 20)

/* The load loop: a kernel table's stream_read (kernels.h), so FLM_KERNELS picks it
 * like every other SIMD path. `name` NULL: the dispatcher's table (flm_kernels_best:
 * the best this CPU runs, or the one FLM_KERNELS names); otherwise that table if this
 * build has it and this CPU runs it, else NULL. */
static const flm_kernels *pick_table(const char *name) {
    const flm_kernels *k = name ? flm_kernels_variant(name, false) : flm_kernels_best();
    return k && k->stream_read ? k : NULL;
}

const char *flm_membw_isa(void) {
    const flm_kernels *k = pick_table(NULL);
    return k ? k->name : "scalar";
}

/* One job for the pool: thread ith touches (fill) or reads its slice. */
typedef struct {
    unsigned char *buf;
    size_t slice;          /* bytes per thread, a multiple of FLM_STREAM_CHUNK */
    bool fill;
    uint64_t (*fn)(const void *p, size_t n); /* the table's stream_read */
    uint64_t sums[256];    /* per-thread results: stored through ctx, so the reads stay live */
} membw_job;

static void membw_worker(void *ctx, int ith, int nth) {
    (void)nth;
    membw_job *j = ctx;
    unsigned char *p = j->buf + (size_t)ith * j->slice;
    if (j->fill) {
        /* a non-zero pattern, written by the thread that will read it (first touch) */
        memset(p, 0x5A + ith, j->slice);
        return;
    }
    j->sums[ith & 255] ^= j->fn(p, j->slice);
}

int flm_membw_measure(const flm_membw_options *opt, flm_membw_result *out) {
    memset(out, 0, sizeof *out);
    size_t bytes = opt && opt->bytes ? opt->bytes : FLM_MEMBW_DEFAULT_BYTES;
    int repeats = opt && opt->repeats > 0 ? opt->repeats : FLM_MEMBW_DEFAULT_REPEATS;
    int want = opt ? opt->n_threads : 0;
    if (bytes < MIB) return flm_fail(FLM_ERR_ARG, "membw: buffer of %zu bytes is too small (at least 1 MiB)", bytes);
    const flm_kernels *rd = pick_table(opt ? opt->isa : NULL);
    if (!rd) return flm_fail(FLM_ERR_ARG, "membw: load loop '%s' is not built in or this CPU cannot run it", opt->isa);

    flm_pool *pool = NULL;
    int rc = flm_pool_new(want, &pool);
    if (rc) return rc;
    int nth = flm_pool_size(pool);
    if (nth > 256) {
        flm_pool_free(pool);
        return flm_fail(FLM_ERR_ARG, "membw: %d threads is more than the 256 supported", nth);
    }
    size_t slice = bytes / (size_t)nth / FLM_STREAM_CHUNK * FLM_STREAM_CHUNK;
    if (slice == 0) {
        flm_pool_free(pool);
        return flm_fail(FLM_ERR_ARG, "membw: buffer of %zu bytes is too small for %d threads", bytes, nth);
    }
    size_t total = slice * (size_t)nth;
    void *mem = NULL;
    /* 2 MiB aligned, transparent huge pages asked for: the page size loaded weights
     * get (model_resident.c), so the ceiling is measured in the same conditions */
    if (posix_memalign(&mem, (size_t)2 << 20, total) != 0 || !mem) {
        flm_pool_free(pool);
        return flm_fail(FLM_ERR_NOMEM, "membw: cannot allocate a %zu MiB buffer", total / MIB);
    }
#ifdef MADV_HUGEPAGE
    madvise(mem, total, MADV_HUGEPAGE);
#endif
    membw_job job = {.buf = mem, .slice = slice, .fill = true, .fn = rd->stream_read};
    flm_pool_run(pool, membw_worker, &job);
    job.fill = false;
    flm_pool_run(pool, membw_worker, &job); /* warm-up pass: TLB, frequency, pool wake-up */

    double best = 0, worst = 0, sum = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = flm_now_seconds();
        flm_pool_run(pool, membw_worker, &job);
        double dt = flm_now_seconds() - t0;
        double gbs = dt > 0 ? (double)total / dt / 1e9 : 0;
        if (r == 0 || gbs > best) best = gbs;
        if (r == 0 || gbs < worst) worst = gbs;
        sum += gbs;
    }
    free(mem);
    flm_pool_free(pool);

    out->best_gb_s = best;
    out->mean_gb_s = sum / repeats;
    out->worst_gb_s = worst;
    out->bytes = total;
    out->n_threads = nth;
    out->repeats = repeats;
    out->isa = rd->name;
    return FLM_OK;
}
