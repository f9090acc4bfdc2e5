/* membw.c — memory read bandwidth measurement (see membw.h): a large resident
 * buffer streamed by the thread pool with the widest loads the CPU has. */
#include "dev/membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "base/common.h"
#include "base/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MEMBW_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define MEMBW_NEON 1
#endif

#define MIB ((size_t)1 << 20)
#define LINE 64                 /* bytes per cache line; slices are multiples of UNROLL_BYTES */
#define UNROLL_BYTES 512        /* bytes each loop iteration reads (8 lines) */
#define PREFETCH_AHEAD 4096     /* bytes ahead of the loads that are prefetched */

/* Reads [p, p + n) (n a multiple of UNROLL_BYTES, p 64-byte aligned) and returns a
 * value that depends on every byte, so the compiler cannot drop the loads. */
typedef uint64_t (*read_fn)(const unsigned char *p, size_t n);

static uint64_t read_scalar(const unsigned char *p, size_t n) {
    /* eight independent accumulators, one per 8-byte word of a line */
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t off = 0; off < n; off += LINE) {
        const uint64_t *w = (const uint64_t *)(const void *)(p + off);
        a0 += w[0]; a1 += w[1]; a2 += w[2]; a3 += w[3];
        a4 += w[4]; a5 += w[5]; a6 += w[6]; a7 += w[7];
    }
    return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

#ifdef MEMBW_X86
__attribute__((target("avx2"))) static uint64_t read_avx2(const unsigned char *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t off = 0; off < n; off += 256) {
        const __m256i *v = (const __m256i *)(const void *)(p + off);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + 0));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
        a4 = _mm256_add_epi64(a4, _mm256_load_si256(v + 4));
        a5 = _mm256_add_epi64(a5, _mm256_load_si256(v + 5));
        a6 = _mm256_add_epi64(a6, _mm256_load_si256(v + 6));
        a7 = _mm256_add_epi64(a7, _mm256_load_si256(v + 7));
    }
    __m256i s = _mm256_xor_si256(_mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3)),
                                 _mm256_xor_si256(_mm256_xor_si256(a4, a5), _mm256_xor_si256(a6, a7)));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)(void *)lanes, s);
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}

__attribute__((target("avx512f"))) static uint64_t read_avx512(const unsigned char *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t off = 0; off < n; off += UNROLL_BYTES) {
        const __m512i *v = (const __m512i *)(const void *)(p + off);
        /* software prefetch well ahead: one core's hardware prefetchers alone do not
         * keep enough lines in flight to reach the memory's bandwidth */
        for (int k = 0; k < UNROLL_BYTES; k += LINE) _mm_prefetch((const char *)(p + off + PREFETCH_AHEAD + (size_t)k), _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(v + 0));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(v + 1));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(v + 2));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(v + 3));
        a4 = _mm512_add_epi64(a4, _mm512_load_si512(v + 4));
        a5 = _mm512_add_epi64(a5, _mm512_load_si512(v + 5));
        a6 = _mm512_add_epi64(a6, _mm512_load_si512(v + 6));
        a7 = _mm512_add_epi64(a7, _mm512_load_si512(v + 7));
    }
    __m512i s = _mm512_xor_si512(_mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3)),
                                 _mm512_xor_si512(_mm512_xor_si512(a4, a5), _mm512_xor_si512(a6, a7)));
    uint64_t lanes[8];
    _mm512_storeu_si512((void *)lanes, s);
    uint64_t r = 0;
    for (int i = 0; i < 8; i++) r ^= lanes[i];
    return r;
}
#endif

#ifdef MEMBW_NEON
static uint64_t read_neon(const unsigned char *p, size_t n) {
    uint64x2_t a0 = vdupq_n_u64(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t off = 0; off < n; off += 128) {
        const uint64_t *w = (const uint64_t *)(const void *)(p + off);
        a0 = vaddq_u64(a0, vld1q_u64(w + 0));
        a1 = vaddq_u64(a1, vld1q_u64(w + 2));
        a2 = vaddq_u64(a2, vld1q_u64(w + 4));
        a3 = vaddq_u64(a3, vld1q_u64(w + 6));
        a4 = vaddq_u64(a4, vld1q_u64(w + 8));
        a5 = vaddq_u64(a5, vld1q_u64(w + 10));
        a6 = vaddq_u64(a6, vld1q_u64(w + 12));
        a7 = vaddq_u64(a7, vld1q_u64(w + 14));
    }
    uint64x2_t s = veorq_u64(veorq_u64(veorq_u64(a0, a1), veorq_u64(a2, a3)), veorq_u64(veorq_u64(a4, a5), veorq_u64(a6, a7)));
    return vgetq_lane_u64(s, 0) ^ vgetq_lane_u64(s, 1);
}
#endif

typedef struct { read_fn fn; const char *name; } reader;

/* Load loops this build has, best first. */
static const reader READERS[] = {
#ifdef MEMBW_X86
    {read_avx512, "avx512"},
    {read_avx2, "avx2"},
#endif
#ifdef MEMBW_NEON
    {read_neon, "neon"},
#endif
    {read_scalar, "scalar"},
};
#define N_READERS (sizeof READERS / sizeof READERS[0])

static bool reader_runs(const reader *r) {
#ifdef MEMBW_X86
    __builtin_cpu_init();
    if (!strcmp(r->name, "avx512")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(r->name, "avx2")) return __builtin_cpu_supports("avx2");
#endif
    (void)r;
    return true;
}

/* The named loop (NULL: the best this CPU runs); NULL if unknown or unsupported. */
static const reader *pick_reader(const char *name) {
    for (size_t i = 0; i < N_READERS; i++)
        if ((!name || !strcmp(name, READERS[i].name)) && reader_runs(&READERS[i])) return &READERS[i];
    return NULL;
}

const char *flm_membw_isa(void) { return pick_reader(NULL)->name; }

/* One job for the pool: thread ith touches (fill) or reads its slice. */
typedef struct {
    unsigned char *buf;
    size_t slice;          /* bytes per thread, a multiple of UNROLL_BYTES */
    bool fill;
    read_fn fn;
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
    const reader *rd = pick_reader(opt ? opt->isa : NULL);
    if (!rd) return flm_fail(FLM_ERR_ARG, "membw: load loop '%s' is not built in or this CPU cannot run it", opt->isa);

    flm_pool *pool = NULL;
    int rc = flm_pool_new(want, &pool);
    if (rc) return rc;
    int nth = flm_pool_size(pool);
    if (nth > 256) {
        flm_pool_free(pool);
        return flm_fail(FLM_ERR_ARG, "membw: %d threads is more than the 256 supported", nth);
    }
    size_t slice = bytes / (size_t)nth / UNROLL_BYTES * UNROLL_BYTES;
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
    membw_job job = {.buf = mem, .slice = slice, .fill = true, .fn = rd->fn};
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
