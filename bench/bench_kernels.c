/* bench_kernels.c — single-thread kernel benchmark: matvec (decode) GB/s of weights
 * streamed for a Qwen2.5-1.5B MLP weight (8960 x 1536, and its 1536 x 8960
 * transpose) in each dtype and each kernel table, against this core's measured read
 * bandwidth; and prefill (64 tokens) GFLOP/s. Weights are rotated through enough
 * copies (>= 512 MiB) that every call reads them from DRAM, not cache.
 * q8_0/q4_0 run twice: float activations (TABLE) and int8 activations (TABLE+i8).
 * Usage: bench_kernels [TABLE...]   (default: scalar and every SIMD table available)
 * BENCH_SHAPE=RxC replaces 8960x1536 by R x C (C a multiple of 32, both <= 8960) and its
 * transpose by C x R (R rounded down to 32): with BENCH_HOT=1, a shape that fits in L2
 * measures the arithmetic alone. BENCH_DTYPES=q8_0,q4_0 limits the dtypes; BENCH_INT8_ONLY=1 skips the float-activation
 * q8_0/q4_0 kernels; BENCH_NO_PREFILL=1 skips the prefill timing (0 printed); BENCH_HOT=1 reuses one copy of the weights
 * (cache-resident: the kernels' compute ceiling instead of DRAM streaming).
 * BENCH_CLOCK=cpu times calls with this thread's CPU time instead of the wall clock: on
 * a host shared with other work the time the thread was descheduled is not counted
 * (cache and memory contention still are), so kernels can be compared under load. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"
#include "kernels/kernels_simd.h"

#define ROTATE_BYTES ((size_t)512 << 20)
#define MIN_SECONDS 0.6

#include <time.h>

static bool g_cpu_clock;
/* Seconds: wall clock, or this thread's CPU time with BENCH_CLOCK=cpu. */
static double now(void) {
    if (!g_cpu_clock) return flm_now_seconds();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint8_t rnd_byte(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint8_t)(rng >> 24); }

/* Plausible random weights (finite halves/bfloats, small block scales). */
static void fill(flm_dtype dt, void *w, size_t bytes) {
    uint8_t *p = w;
    for (size_t i = 0; i < bytes; i++) p[i] = rnd_byte();
    if (dt == FLM_F16 || dt == FLM_BF16) {
        uint16_t *h = w;
        for (size_t i = 0; i < bytes / 2; i++) h[i] = dt == FLM_F16 ? (uint16_t)(h[i] & 0xBBFF) : (uint16_t)(h[i] & 0xBF7F);
    } else if (dt == FLM_F32) {
        float *f = w;
        for (size_t i = 0; i < bytes / 4; i++) f[i] = (float)(p[4 * i] & 0x7F) / 64.0f - 1.0f;
    } else if (dt == FLM_Q8_0) {
        block_q8_0 *b = w;
        for (size_t i = 0; i < bytes / sizeof *b; i++) b[i].d = flm_f32_to_f16(0.01f);
    } else {
        block_q4_0 *b = w;
        for (size_t i = 0; i < bytes / sizeof *b; i++) b[i].d = flm_f32_to_f16(0.01f);
    }
}

/* Read bandwidth of one core: the best table's dot over two large arrays. */
static double read_bandwidth(void) {
    size_t n = ROTATE_BYTES / 2 / sizeof(float);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    if (!a || !b) return 0;
    for (size_t i = 0; i < n; i++) { a[i] = 1.0f; b[i] = 0.5f; }
    const flm_kernels *k = flm_kernels_best();
    int chunk = 1 << 20;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (size_t i = 0; i + (size_t)chunk <= n; i += (size_t)chunk) sink += k->dot(a + i, b + i, chunk);
        double gbs = 2.0 * (double)n * sizeof(float) / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    (void)sink;
    free(a); free(b);
    return best;
}

/* Runs matmul over rotating weight copies for MIN_SECONDS; returns the fastest
 * call's seconds (the machine may be shared: the minimum is the least disturbed). */
static double time_matmul(const flm_kernels *k, flm_dtype dt, const char *wbuf, size_t wbytes, size_t ncopies,
                          const float *X, float *Y, int n_tok, int rows, int cols) {
    size_t calls = 0, c = 0;
    k->matmul[dt](wbuf, X, Y, n_tok, cols, rows, 0, rows); /* warm-up */
    double t0 = now(), best = 1e30;
    do {
        double t1 = now();
        k->matmul[dt](wbuf + c * wbytes, X, Y, n_tok, cols, rows, 0, rows);
        double dt1 = now() - t1;
        if (dt1 < best) best = dt1;
        c = (c + 1) % ncopies;
        calls++;
    } while (now() - t0 < MIN_SECONDS || calls < 3);
    return best;
}

/* time_matmul for a packed layout: X prepared and the rows run, per call, as the
 * one-call matmul does (wbuf already packed). */
static double time_packed(const flm_qpacked_fns *pk, flm_dtype dt, const char *wbuf, size_t wbytes, size_t ncopies,
                          const float *X, float *Y, int n_tok, int rows, int cols) {
    size_t calls = 0, c = 0, pb = pk->prep_bytes(dt, n_tok, cols);
    void *P = aligned_alloc(64, (pb + 63) / 64 * 64);
    if (!P) return 1e30;
    double t0 = now(), best = 1e30;
    do {
        double t1 = now();
        pk->prep(dt, X, n_tok, cols, P);
        pk->run(dt, wbuf + c * wbytes, P, Y, n_tok, rows, cols, rows, 0, rows);
        double dt1 = now() - t1;
        if (dt1 < best && calls > 0) best = dt1; /* the first call is the warm-up */
        c = (c + 1) % ncopies;
        calls++;
    } while (now() - t0 < MIN_SECONDS || calls < 4);
    free(P);
    return best;
}

int main(int argc, char **argv) {
    const char *def[] = {"scalar", "avx2", "avx512", "neon", "avx2-vnni", "avx512-vnni256", "avx512-amx"};
    const char **names = argc > 1 ? (const char **)(argv + 1) : def;
    int nnames = argc > 1 ? argc - 1 : (int)(sizeof def / sizeof *def);
    const char *i8only = getenv("BENCH_INT8_ONLY"), *noprefill = getenv("BENCH_NO_PREFILL");
    static const flm_dtype dts[] = {FLM_F32, FLM_F16, FLM_BF16, FLM_Q8_0, FLM_Q4_0};
    int shapes[2][2] = {{8960, 1536}, {1536, 8960}}; /* rows, cols */
    const char *shape = getenv("BENCH_SHAPE");
    if (shape && sscanf(shape, "%dx%d", &shapes[0][0], &shapes[0][1]) == 2 && shapes[0][0] > 0 && shapes[0][0] <= 8960 &&
        shapes[0][1] > 0 && shapes[0][1] <= 8960 && shapes[0][1] % 32 == 0) {
        shapes[1][0] = shapes[0][1];
        shapes[1][1] = shapes[0][0] / 32 * 32 ? shapes[0][0] / 32 * 32 : 32;
    }
    const char *clk = getenv("BENCH_CLOCK");
    g_cpu_clock = clk && strcmp(clk, "cpu") == 0;
    double bw = read_bandwidth();
    printf("single-core read bandwidth (best table's dot over %zu MiB): %.1f GB/s%s\n", ROTATE_BYTES >> 20, bw,
           g_cpu_clock ? " (thread CPU time)" : "");
    float *X = malloc(64 * 8960 * sizeof(float)), *Y = malloc(64 * 8960 * sizeof(float));
    if (!X || !Y) return 1;
    for (int i = 0; i < 64 * 8960; i++) X[i] = (float)(rnd_byte() & 0x7F) / 64.0f - 1.0f;
    printf("%-10s %-5s %-11s %9s %8s %7s %14s\n", "table", "dtype", "rows x cols", "ms/matvec", "GB/s", "of bw", "prefill GFLOP/s");
    for (size_t di = 0; di < sizeof dts / sizeof *dts; di++) {
        flm_dtype dt = dts[di];
        const char *only = getenv("BENCH_DTYPES");
        if (only && !strstr(only, flm_dtype_get(dt)->name)) continue;
        size_t wbytes = flm_dtype_bytes(dt, (uint64_t)shapes[0][0] * (uint64_t)shapes[0][1]); /* >= the transpose's */
        const char *hot = getenv("BENCH_HOT");
        size_t ncopies = hot && atoi(hot) ? 1 : ROTATE_BYTES / wbytes + 1;
        char *wbuf = malloc(wbytes * ncopies);
        if (!wbuf) return 1;
        fill(dt, wbuf, wbytes);
        for (size_t c = 1; c < ncopies; c++) memcpy(wbuf + c * wbytes, wbuf, wbytes);
        for (int ni = 0; ni < nnames * 2; ni++) {
            bool qact = ni % 2 == 1;
            if (qact && dt != FLM_Q8_0 && dt != FLM_Q4_0) continue;
            if (!qact && i8only && atoi(i8only) && (dt == FLM_Q8_0 || dt == FLM_Q4_0)) continue;
            const flm_kernels *k = flm_kernels_variant(names[ni / 2], qact);
            if (!k) continue;
            char label[32];
            snprintf(label, sizeof label, "%s%s", k->name, qact ? "+i8" : "");
            for (int s = 0; s < 2; s++) {
                int rows = shapes[s][0], cols = shapes[s][1];
                double sec = time_matmul(k, dt, wbuf, wbytes, ncopies, X, Y, 1, rows, cols);
                double gbs = (double)flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols) / sec / 1e9;
                double sp = noprefill && atoi(noprefill) ? 0 : time_matmul(k, dt, wbuf, wbytes, ncopies, X, Y, 64, rows, cols);
                double gflops = sp > 0 ? 2.0 * 64.0 * (double)rows * (double)cols / sp / 1e9 : 0;
                printf("%-10s %-5s %4dx%-6d %9.3f %8.1f %6.0f%% %14.1f\n", label, flm_dtype_get(dt)->name, rows, cols,
                       sec * 1e3, gbs, bw > 0 ? 100.0 * gbs / bw : 0.0, gflops);
                fflush(stdout);
            }
            if (!qact || !k->qpacked) continue;
            /* the same products on weights packed at load (flm_kernels.qpacked) */
            char *pbuf = malloc(wbytes * ncopies);
            if (!pbuf) return 1;
            snprintf(label, sizeof label, "%s+%s", k->name, strchr(k->qpacked->name, '-') ? strchr(k->qpacked->name, '-') + 1 : k->qpacked->name);
            for (int s = 0; s < 2; s++) {
                int rows = shapes[s][0], cols = shapes[s][1];
                size_t mb = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols);
                for (size_t c = 0; c < ncopies; c++) /* each copy's matrix of this shape, packed from the file's bytes */
                    k->qpacked->pack_rows(dt, wbuf + c * wbytes, pbuf + c * wbytes, rows, cols, 0, rows);
                double sec = time_packed(k->qpacked, dt, pbuf, wbytes, ncopies, X, Y, 1, rows, cols);
                double gbs = (double)mb / sec / 1e9;
                double sp = noprefill && atoi(noprefill) ? 0 : time_packed(k->qpacked, dt, pbuf, wbytes, ncopies, X, Y, 64, rows, cols);
                double gflops = sp > 0 ? 2.0 * 64.0 * (double)rows * (double)cols / sp / 1e9 : 0;
                printf("%-10s %-5s %4dx%-6d %9.3f %8.1f %6.0f%% %14.1f\n", label, flm_dtype_get(dt)->name, rows, cols,
                       sec * 1e3, gbs, bw > 0 ? 100.0 * gbs / bw : 0.0, gflops);
                fflush(stdout);
            }
            free(pbuf);
        }
        free(wbuf);
    }
    free(X); free(Y);
    return 0;
}
