/* test_kernels.c — every SIMD kernel table this build and CPU can run (avx2, avx512,
 * neon) against the scalar reference in kernels_ref.c: each dtype's matmul on odd
 * sizes, token counts 1..9 and 64, misaligned W/X, padded Y rows (float activations,
 * and the int8-activation q8_0/q4_0 variants against their own reference, which is
 * itself checked against the float reference within the activation quantization
 * error); bit-identical
 * results for any [r0, r1) split and any token batching; rmsnorm/dot within a
 * reassociation tolerance; axpy/swiglu bit-identical; the LoRA merge row bit-identical
 * to its fma-chain specification; the bandwidth probe's load loop reads exactly its
 * bytes. Also the table selection.
 * Builds standalone with tests/main.c + the kernels + common.c + tensor.c (see
 * tools/neon-test.sh), so it must not use other modules. */
#include "test.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/common.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"
#include "kernels/kernels_simd.h"

/* |simd - ref| <= SIMD_REL_TOL * sum_c |w_c * x_c| (+ SIMD_ABS_TOL): summation order
 * and FMA rounding only. The reference's sequential float sum itself carries error
 * up to ~cols * FLT_EPSILON of that sum; in practice both are far below this. */
#define SIMD_REL_TOL 2e-6
#define SIMD_ABS_TOL 1e-30
/* rmsnorm: only mean(x^2) is reassociated; its rounding error grows like sqrt(n)
 * ulp (random signs), and reaches the output through the scale. */
#define RMS_REL_TOL(n) ((4.0 + sqrt((double)(n))) * FLT_EPSILON)

static const char *const SIMD_TABLES[] = {"avx2", "avx512", "neon", "avx2-vnni", "avx512-vnni256", "avx512-amx", "neon-dotprod", "neon-i8mm"};
#define N_SIMD_TABLES (sizeof SIMD_TABLES / sizeof SIMD_TABLES[0])

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float rnd_f(void) { return (float)((double)rnd_u32() / 4294967296.0 * 2.0 - 1.0); }

static const flm_dtype MATMUL_DTYPES[] = {FLM_F32, FLM_F16, FLM_BF16, FLM_Q8_0, FLM_Q4_0};

/* Random weights of type dt, rows x cols, written at `dst` (byte size bytes). */
static void fill_weights(flm_dtype dt, void *dst, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    switch (dt) {
    case FLM_F32: for (size_t i = 0; i < n; i++) ((float *)dst)[i] = rnd_f(); break;
    case FLM_F16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = flm_f32_to_f16(rnd_f()); break;
    case FLM_BF16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = flm_f32_to_bf16(rnd_f()); break;
    case FLM_Q8_0:
        for (size_t b = 0; b < n / QK; b++) {
            block_q8_0 blk;
            blk.d = flm_f32_to_f16(0.001f + 0.05f * (rnd_f() + 1.0f));
            for (int j = 0; j < QK; j++) blk.qs[j] = (int8_t)((int)(rnd_u32() % 256) - 128); /* -128 too */
            memcpy((char *)dst + b * sizeof blk, &blk, sizeof blk);
        }
        break;
    default:
        for (size_t b = 0; b < n / QK; b++) {
            block_q4_0 blk;
            blk.d = flm_f32_to_f16(0.001f + 0.05f * (rnd_f() + 1.0f));
            for (int j = 0; j < QK / 2; j++) blk.qs[j] = (uint8_t)rnd_u32();
            memcpy((char *)dst + b * sizeof blk, &blk, sizeof blk);
        }
        break;
    }
}

/* sum_c |w[r,c] * x[t,c]| from dequantized weights (the error scale). */
static double abs_products(const float *wf, const float *x, int cols) {
    double s = 0;
    for (int c = 0; c < cols; c++) s += fabs((double)wf[c] * (double)x[c]);
    return s;
}

/* One matmul case: table k vs the reference, then splits and batching. Returns the
 * largest error / sum|products| seen (for the report line). */
static double check_matmul_vs(const flm_kernels *k, const flm_kernels *ref, flm_dtype dt, int rows, int cols, int n_tok, int misalign) {
    const flm_dtype_info *di = flm_dtype_get(dt);
    size_t wbytes = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols);
    /* Misaligned: W off by one element (f32 4 bytes, f16/bf16 2); blocks by 2 bytes,
     * the least their uint16 scale allows (so no longer 4/16/32-byte aligned). */
    size_t woff = misalign ? (dt == FLM_F32 ? 4 : 2) : 0;
    size_t xoff = misalign ? 1 : 0;
    int ldy = rows + 3;
    size_t ny = (size_t)n_tok * (size_t)ldy;
    char *wbuf = malloc(wbytes + 8);
    float *xbuf = malloc(((size_t)n_tok * (size_t)cols + 1) * sizeof(float));
    float *wf = malloc((size_t)rows * (size_t)cols * sizeof(float));
    float *yr = malloc(ny * sizeof(float)), *ys = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
    double worst = 0;
    if (!wbuf || !xbuf || !wf || !yr || !ys || !y2) { test_fail(__FILE__, __LINE__, "out of memory"); goto out; }
    void *W = wbuf + woff;
    float *X = xbuf + xoff;
    fill_weights(dt, W, rows, cols);
    di->to_float(W, wf, (size_t)rows * (size_t)cols);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) X[i] = rnd_f();
    for (size_t i = 0; i < ny; i++) yr[i] = ys[i] = y2[i] = -777.0f;

    ref->matmul[dt](W, X, yr, n_tok, cols, ldy, 0, rows);
    k->matmul[dt](W, X, ys, n_tok, cols, ldy, 0, rows);
    int bad = 0;
    for (int t = 0; t < n_tok; t++) {
        for (int r = 0; r < ldy; r++) {
            size_t i = (size_t)t * (size_t)ldy + (size_t)r;
            if (r >= rows) {
                if (ys[i] != -777.0f && bad++ < 3)
                    test_fail(__FILE__, __LINE__, "%s %s: wrote Y padding at t=%d r=%d", k->name, di->name, t, r);
                continue;
            }
            double scale = abs_products(wf + (size_t)r * (size_t)cols, X + (size_t)t * (size_t)cols, cols);
            double err = fabs((double)ys[i] - (double)yr[i]);
            if (scale > 0 && err / scale > worst) worst = err / scale;
            if (!(err <= SIMD_REL_TOL * scale + SIMD_ABS_TOL) && bad++ < 3)
                test_fail(__FILE__, __LINE__, "%s %s rows=%d cols=%d n_tok=%d mis=%d: y[%d,%d] %.9g vs ref %.9g (sum|p| %.3g)",
                          k->name, di->name, rows, cols, n_tok, misalign, t, r, ys[i], yr[i], scale);
        }
    }
    /* Any split of [0, rows) gives bit-identical rows. */
    for (size_t i = 0; i < ny; i++) y2[i] = -777.0f;
    for (int r0 = 0; r0 < rows;) {
        int len = 1 + (int)(rnd_u32() % 7u);
        int r1 = r0 + len > rows ? rows : r0 + len;
        k->matmul[dt](W, X, y2, n_tok, cols, ldy, r0, r1);
        r0 = r1;
    }
    if (memcmp(ys, y2, ny * sizeof(float)) != 0 && bad++ < 3)
        test_fail(__FILE__, __LINE__, "%s %s cols=%d n_tok=%d: row split changes results", k->name, di->name, cols, n_tok);
    /* Token by token (decode) gives the same as the batch (prefill). */
    if (n_tok > 1) {
        for (size_t i = 0; i < ny; i++) y2[i] = -777.0f;
        for (int t = 0; t < n_tok; t++)
            k->matmul[dt](W, X + (size_t)t * (size_t)cols, y2 + (size_t)t * (size_t)ldy, 1, cols, ldy, 0, rows);
        if (memcmp(ys, y2, ny * sizeof(float)) != 0 && bad++ < 3)
            test_fail(__FILE__, __LINE__, "%s %s cols=%d n_tok=%d: batching changes results", k->name, di->name, cols, n_tok);
    }
out:
    free(wbuf); free(xbuf); free(wf); free(yr); free(ys); free(y2);
    return worst;
}

static double check_matmul(const flm_kernels *k, flm_dtype dt, int rows, int cols, int n_tok, int misalign) {
    return check_matmul_vs(k, flm_kernels_scalar(), dt, rows, cols, n_tok, misalign);
}

static void run_matmul_dtype(flm_dtype dt) {
    static const int float_cols[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                     23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 127, 128, 129, 352, 4095};
    static const int quant_cols[] = {32, 64, 96, 128, 352, 512, 1536};
    static const int toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 64};
    bool quant = dt == FLM_Q8_0 || dt == FLM_Q4_0;
    const int *cols = quant ? quant_cols : float_cols;
    size_t ncols = quant ? sizeof quant_cols / sizeof *quant_cols : sizeof float_cols / sizeof *float_cols;
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const flm_kernels *k = flm_kernels_variant(SIMD_TABLES[ti], false);
        if (!k) continue;
        double worst = 0;
        for (size_t ci = 0; ci < ncols; ci++)
            for (size_t t = 0; t < sizeof toks / sizeof *toks; t++) {
                int rows = 1 + (int)(rnd_u32() % 19u);
                double w = check_matmul(k, dt, rows, cols[ci], toks[t], (int)(t & 1));
                if (w > worst) worst = w;
            }
        /* The real shapes: 1536 -> 8960 and back, decode and a short prefill. */
        for (int mis = 0; mis < 2; mis++) {
            double w = check_matmul(k, dt, 9, 8960, 1 + 4 * mis, mis);
            if (w > worst) worst = w;
        }
        /* Prefill blocking (AVX-512 float panels: 512-column blocks, 64-token blocks,
         * 12-row superblocks; when a token block of X passes 512 KB, 48-row superblocks
         * widened in 1024-column chunks): several blocks of each, partial last ones, a
         * tail, a tail after whole chunks (2053 = 2 x 1024 + 5). */
        {
            double w = check_matmul(k, dt, 29, quant ? 1056 : 1037, 133, 1);
            if (w > worst) worst = w;
            w = check_matmul(k, dt, 13, 8960, 70, 0);
            if (w > worst) worst = w;
            w = check_matmul(k, dt, 101, quant ? 2112 : 2053, 66, 1);
            if (w > worst) worst = w;
        }
        printf("    %s %s: max |err| / sum|products| = %.3g (tol %g)\n", k->name, flm_dtype_get(dt)->name, worst, SIMD_REL_TOL);
    }
}

TEST(kernels_matmul_f32) { run_matmul_dtype(FLM_F32); }
TEST(kernels_matmul_f16) { run_matmul_dtype(FLM_F16); }
TEST(kernels_matmul_bf16) { run_matmul_dtype(FLM_BF16); }
TEST(kernels_matmul_q8_0) { run_matmul_dtype(FLM_Q8_0); }
TEST(kernels_matmul_q4_0) { run_matmul_dtype(FLM_Q4_0); }

/* Int8 activations: each SIMD table's qact variant against the qact reference, on
 * every multiple of 32 up to 1024 and the model's sizes (to 8960 + 32), token counts
 * 1..9 and 64 (rotating through the column sizes), misaligned inputs, row splits and
 * batching (check_matmul_vs). The integer sums are exact, so only the float scaling
 * and summation order differ: the float tolerance applies. */
static void run_qact_dtype(flm_dtype dt) {
    static const int toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 64};
    static const int big[] = {1536, 2080, 4096, 8960, 8992};
    int cols[32 + sizeof big / sizeof *big];
    int ncols = 0;
    for (int c = 32; c <= 1024; c += 32) cols[ncols++] = c;
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) cols[ncols++] = big[i];
    const flm_kernels *ref = flm_kernels_variant("scalar", true);
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const flm_kernels *k = flm_kernels_variant(SIMD_TABLES[ti], true);
        if (!k) continue;
        double worst = 0;
        for (int ci = 0; ci < ncols; ci++)
            for (int rep = 0; rep < 3; rep++) {
                int n_tok = toks[(ci * 3 + rep) % (int)(sizeof toks / sizeof *toks)];
                int rows = 1 + (int)(rnd_u32() % 19u);
                double w = check_matmul_vs(k, ref, dt, rows, cols[ci], n_tok, rep & 1);
                if (w > worst) worst = w;
            }
        for (int n_tok = 1; n_tok <= 9; n_tok++) {
            double w = check_matmul_vs(k, ref, dt, 13, 8960, n_tok, n_tok & 1);
            if (w > worst) worst = w;
        }
        double w = check_matmul_vs(k, ref, dt, 7, 1536, 64, 1);
        if (w > worst) worst = w;
        printf("    %s %s int8 activations: max |err| / sum|products| = %.3g (tol %g)\n", k->name, flm_dtype_get(dt)->name,
               worst, SIMD_REL_TOL);
    }
}

/* The qact reference against the float reference: |y_qact - y_float| is at most the
 * activation rounding error sum_b (d_x[b] / 2) * sum_{c in b} |w_c| (plus float
 * rounding); and no worse than that bound says on random data. */
static void check_qact_reference(flm_dtype dt, int rows, int cols, int n_tok) {
    const flm_kernels *fref = flm_kernels_scalar(), *qref = flm_kernels_variant("scalar", true);
    size_t wbytes = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols), n = (size_t)rows * (size_t)cols;
    void *W = malloc(wbytes);
    float *wf = malloc(n * sizeof(float)), *X = malloc((size_t)n_tok * (size_t)cols * sizeof(float));
    float *yf = malloc((size_t)n_tok * (size_t)rows * sizeof(float)), *yq = malloc((size_t)n_tok * (size_t)rows * sizeof(float));
    int8_t *q = malloc((size_t)cols);
    float *d = malloc((size_t)cols / QK * sizeof(float));
    if (!W || !wf || !X || !yf || !yq || !q || !d) { test_fail(__FILE__, __LINE__, "out of memory"); goto out; }
    fill_weights(dt, W, rows, cols);
    flm_dtype_get(dt)->to_float(W, wf, n);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) X[i] = rnd_f() * (i % 7 == 0 ? 8.0f : 1.0f);
    fref->matmul[dt](W, X, yf, n_tok, cols, rows, 0, rows);
    qref->matmul[dt](W, X, yq, n_tok, cols, rows, 0, rows);
    int bad = 0;
    for (int t = 0; t < n_tok; t++) {
        const float *x = X + (size_t)t * (size_t)cols;
        flm_quantize_act_ref(x, cols, q, d);
        for (int r = 0; r < rows; r++) {
            const float *w = wf + (size_t)r * (size_t)cols;
            double bound = 0;
            for (int c = 0; c < cols; c++) bound += fabs((double)w[c]) * 0.5 * (double)d[c / QK];
            bound = bound * (1.0 + 1e-5) + 4 * SIMD_REL_TOL * abs_products(w, x, cols) + 1e-30;
            double err = fabs((double)yq[(size_t)t * (size_t)rows + (size_t)r] - (double)yf[(size_t)t * (size_t)rows + (size_t)r]);
            if (!(err <= bound) && bad++ < 3)
                test_fail(__FILE__, __LINE__, "%s qact reference cols=%d: y[%d,%d] err %.3g > bound %.3g",
                          flm_dtype_get(dt)->name, cols, t, r, err, bound);
        }
    }
out:
    free(W); free(wf); free(X); free(yf); free(yq); free(q); free(d);
}

TEST(kernels_qact_quantizer) {
    /* The reference quantizer: d = max|x| / 127, q = round-half-even(x * (1/d)). */
    float x[2 * QK], d[2];
    int8_t q[2 * QK];
    for (int i = 0; i < QK; i++) x[i] = (float)(i - 16) * 0.25f;   /* max |x| = 4 at i = 0 */
    for (int i = QK; i < 2 * QK; i++) x[i] = 0.0f;                  /* all zero: d = 0, q = 0 */
    flm_quantize_act_ref(x, 2 * QK, q, d);
    CHECK(d[0] == 4.0f / 127.0f);
    CHECK(q[0] == -127);
    CHECK(d[1] == 0.0f);
    float id = 1.0f / d[0];
    for (int i = 1; i < QK; i++) CHECK_MSG(q[i] == (int8_t)nearbyintf(x[i] * id), "q[%d] = %d", i, q[i]);
    for (int i = QK; i < 2 * QK; i++) CHECK(q[i] == 0);
    for (int i = 0; i < 2; i++) {
        check_qact_reference(FLM_Q8_0, 5, 8960, 2);
        check_qact_reference(FLM_Q4_0, 5, 1536, 3);
        check_qact_reference(FLM_Q8_0, 3, 96, 9);
        check_qact_reference(FLM_Q4_0, 3, 32, 1);
    }
}

/* The NEON SDOT/SMMLA variants compute each output with the reference's operations
 * (exact block sums, then acc + (float)isum * (d_w * d_x)): the same bits as the
 * scalar qact table, on odd row counts (tails of the 4-row tiles), every token count
 * around the 2x2 and 4-token tiles, misaligned weights and activations. */
static void check_qact_exact(const char *name, flm_dtype dt) {
    const flm_kernels *k = flm_kernels_variant(name, true), *ref = flm_kernels_variant("scalar", true);
    if (!k) return;
    static const int SHAPES[][2] = {{1, 32}, {3, 64}, {5, 96}, {7, 1536}, {9, 160}, {13, 8960}, {4, 2080}, {6, 352}};
    int checked = 0;
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++)
        for (int n_tok = 1; n_tok <= 10; n_tok += (si & 1) + 1) {
            int rows = SHAPES[si][0], cols = SHAPES[si][1], mis = (int)(si + (size_t)n_tok) & 1;
            size_t wbytes = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols), ny = (size_t)n_tok * (size_t)(rows + 2);
            char *wbuf = malloc(wbytes + 8);
            float *xbuf = malloc(((size_t)n_tok * (size_t)cols + 1) * sizeof(float));
            float *y1 = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
            REQUIRE(wbuf && xbuf && y1 && y2);
            void *W = wbuf + (mis ? 2 : 0);
            float *X = xbuf + mis;
            fill_weights(dt, W, rows, cols);
            for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) X[i] = rnd_f() * (i % 11 == 0 ? 9.0f : 1.0f);
            for (size_t i = 0; i < ny; i++) y1[i] = y2[i] = -777.0f;
            ref->matmul[dt](W, X, y1, n_tok, cols, rows + 2, 0, rows);
            k->matmul[dt](W, X, y2, n_tok, cols, rows + 2, 0, rows);
            CHECK_MSG(memcmp(y1, y2, ny * sizeof(float)) == 0, "%s %s %dx%d n_tok=%d mis=%d: not the reference's bits", name,
                      flm_dtype_get(dt)->name, rows, cols, n_tok, mis);
            checked++;
            free(wbuf); free(xbuf); free(y1); free(y2);
        }
    printf("    %s %s int8 activations: %d shapes bit-identical to the scalar reference\n", name, flm_dtype_get(dt)->name, checked);
}

TEST(kernels_qact_neon_exact) {
    static const char *const NAMES[] = {"neon-dotprod", "neon-i8mm"};
    for (size_t i = 0; i < 2; i++) {
        check_qact_exact(NAMES[i], FLM_Q8_0);
        check_qact_exact(NAMES[i], FLM_Q4_0);
    }
}

TEST(kernels_qact_q8_0) { run_qact_dtype(FLM_Q8_0); }
TEST(kernels_qact_q4_0) { run_qact_dtype(FLM_Q4_0); }

/* The 256-bit vpdpbusd int8 kernels (avx2-vnni: AVX-VNNI or AVX512_VNNI+VL encoding;
 * avx512-vnni256: EVEX) give exactly the bits of the avx2 int8 kernels (the same
 * integers per lane and the same float operations): odd row counts, every multiple
 * of 32 columns to 512 and the model's sizes, decode and prefill batches, misaligned
 * W and X, padded Y rows left untouched. */
TEST(kernels_vnni256_equals_avx2_int8) {
    const flm_kernels *base = flm_kernels_variant("avx2", true);
    if (!base) { printf("    (no AVX2 on this CPU/build: skipped)\n"); return; }
    static const char *const NAMES[] = {"avx2-vnni", "avx512-vnni256"};
    static const int BIG[] = {1536, 8960};
    static const int TOKS[] = {1, 2, 3, 4, 5, 9};
    int compared = 0;
    for (size_t ni = 0; ni < 2; ni++) {
        const flm_kernels *k = flm_kernels_variant(NAMES[ni], true);
        if (!k) { printf("    (%s: not on this CPU)\n", NAMES[ni]); continue; }
        for (int dti = 0; dti < 2; dti++) {
            flm_dtype dt = dti ? FLM_Q4_0 : FLM_Q8_0;
            for (int ci = 0; ci < 16 + 2; ci++) {
                int cols = ci < 16 ? 32 * (ci + 1) : BIG[ci - 16];
                int rows = 1 + (int)(rnd_u32() % 13u), n_tok = TOKS[ci % 6], mis = ci & 1;
                size_t wbytes = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols), ldy = (size_t)rows + 2;
                char *wbuf = malloc(wbytes + 8);
                float *xbuf = malloc(((size_t)n_tok * (size_t)cols + 1) * sizeof(float));
                float *ya = malloc((size_t)n_tok * ldy * sizeof(float)), *yb = malloc((size_t)n_tok * ldy * sizeof(float));
                REQUIRE(wbuf && xbuf && ya && yb);
                void *W = wbuf + (mis ? 2 : 0);
                float *X = xbuf + mis;
                fill_weights(dt, W, rows, cols);
                for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) X[i] = rnd_f();
                for (size_t i = 0; i < (size_t)n_tok * ldy; i++) ya[i] = yb[i] = -777.0f;
                base->matmul[dt](W, X, ya, n_tok, cols, (int)ldy, 0, rows);
                k->matmul[dt](W, X, yb, n_tok, cols, (int)ldy, 0, rows);
                CHECK_MSG(memcmp(ya, yb, (size_t)n_tok * ldy * sizeof(float)) == 0, "%s %s rows=%d cols=%d n_tok=%d mis=%d differs from avx2",
                          k->name, flm_dtype_get(dt)->name, rows, cols, n_tok, mis);
                compared++;
                free(wbuf); free(xbuf); free(ya); free(yb);
            }
        }
    }
    printf("    %d shapes compared bit for bit\n", compared);
}

static const int VEC_SIZES[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1536, 4095, 8960};
#define N_VEC_SIZES (sizeof VEC_SIZES / sizeof VEC_SIZES[0])
#define VEC_MAX 8960

/* Five buffers of VEC_MAX+1 usable floats (n + a guard), offset by `mis` floats. */
typedef struct { float *a, *b, *c, *o1, *o2; void *mem; } vecbufs;
static bool vec_alloc(vecbufs *v, int mis) {
    size_t n = VEC_MAX + 2; /* room for the guard element and the offset */
    float *m = malloc(5 * n * sizeof(float));
    if (!m) return false;
    v->mem = m;
    v->a = m + mis; v->b = m + n + mis; v->c = m + 2 * n + mis; v->o1 = m + 3 * n + mis; v->o2 = m + 4 * n + mis;
    for (size_t i = 0; i < 5 * n; i++) m[i] = rnd_f() * 4.0f;
    return true;
}

TEST(kernels_vector_ops) {
    const flm_kernels *ref = flm_kernels_scalar();
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const flm_kernels *k = flm_kernels_by_name(SIMD_TABLES[ti]);
        if (!k) continue;
        for (int mis = 0; mis < 2; mis++) {
            vecbufs v;
            REQUIRE(vec_alloc(&v, mis));
            for (size_t si = 0; si < N_VEC_SIZES; si++) {
                int n = VEC_SIZES[si];
                /* rmsnorm */
                ref->rmsnorm(v.o1, v.a, v.b, n, 1e-6f);
                float guard = v.o2[n];
                k->rmsnorm(v.o2, v.a, v.b, n, 1e-6f);
                CHECK_MSG(memcmp(&guard, &v.o2[n], sizeof guard) == 0, "%s rmsnorm n=%d wrote past the end", k->name, n);
                for (int i = 0; i < n; i++)
                    if (!(fabsf(v.o1[i] - v.o2[i]) <= RMS_REL_TOL(n) * fabsf(v.o1[i]) + 1e-30)) {
                        test_fail(__FILE__, __LINE__, "%s rmsnorm n=%d mis=%d: out[%d] %.9g vs %.9g", k->name, n, mis, i, v.o2[i], v.o1[i]);
                        break;
                    }
                /* dot */
                double scale = abs_products(v.a, v.b, n);
                float dr = ref->dot(v.a, v.b, n), ds = k->dot(v.a, v.b, n);
                CHECK_MSG(fabs((double)dr - (double)ds) <= SIMD_REL_TOL * scale + SIMD_ABS_TOL,
                          "%s dot n=%d mis=%d: %.9g vs %.9g", k->name, n, mis, ds, dr);
                /* axpy: bit-identical */
                memcpy(v.o1, v.c, (size_t)(n + 1) * sizeof(float));
                memcpy(v.o2, v.c, (size_t)(n + 1) * sizeof(float));
                ref->axpy(v.o1, 0.37f, v.a, n);
                k->axpy(v.o2, 0.37f, v.a, n);
                CHECK_MSG(memcmp(v.o1, v.o2, (size_t)(n + 1) * sizeof(float)) == 0, "%s axpy n=%d mis=%d differs", k->name, n, mis);
                /* swiglu: bit-identical, also in place (out == gate, as forward.c calls it) */
                float *g = v.o1;
                for (int i = 0; i <= n; i++) g[i] = rnd_f() * 12.0f;
                if (n > 3) { g[0] = -100.0f; g[1] = 100.0f; g[2] = 0.0f; g[3] = -0.0f; }
                memcpy(v.o2, g, (size_t)(n + 1) * sizeof(float));
                ref->swiglu(v.c, g, v.b, n);
                k->swiglu(v.o2, v.o2, v.b, n);
                CHECK_MSG(memcmp(v.c, v.o2, (size_t)n * sizeof(float)) == 0, "%s swiglu n=%d mis=%d differs", k->name, n, mis);
                CHECK_MSG(memcmp(&g[n], &v.o2[n], sizeof(float)) == 0, "%s swiglu n=%d wrote past the end", k->name, n);
            }
            free(v.mem);
        }
    }
}

TEST(kernels_selection) {
    const flm_kernels *best = flm_kernels_best();
    REQUIRE(best != NULL);
    CHECK(flm_kernels_variant("scalar", false) == flm_kernels_scalar());
    CHECK(flm_kernels_variant("scalar", true) != NULL && flm_kernels_variant("scalar", true) != flm_kernels_scalar());
    CHECK(flm_kernels_by_name("scalar") == flm_kernels_variant("scalar", flm_kernels_qact_default()));
    CHECK(flm_kernels_by_name("no-such-isa") == NULL);
    CHECK(flm_kernels_by_name(NULL) == NULL);
    for (int d = 0; d < (int)(sizeof MATMUL_DTYPES / sizeof *MATMUL_DTYPES); d++) CHECK(best->matmul[MATMUL_DTYPES[d]] != NULL);
    CHECK(best->rmsnorm && best->dot && best->axpy && best->swiglu && best->rope && best->lora_row && best->stream_read);
    const char *env = getenv("FLM_KERNELS");
    if (env && flm_kernels_by_name(env)) CHECK_STR(best->name, env);
    else {
        /* Unforced: the first available in this CPU's order of preference, which puts
         * the widest ISA first (an int8-only sibling of it may come before it). */
        const char *want = "scalar";
        for (const char *const *n = flm_kernels_preference(); *n; n++)
            if (flm_kernels_by_name(*n)) { want = *n; break; }
        CHECK_STR(best->name, want);
        const flm_cpu_features *f = flm_cpu_get();
        const char *isa = f->avx512 ? "avx512" : f->avx2 ? "avx2" : f->neon ? "neon" : "scalar";
        CHECK_MSG(!strncmp(best->name, isa, strlen(isa)), "best table %s is not of the widest ISA %s", best->name, isa);
    }
    /* The int8-only tables: no float variant; their float kernels are their base's. */
    CHECK(flm_kernels_variant("avx2-vnni", false) == NULL && flm_kernels_variant("avx512-vnni256", false) == NULL);
    const flm_kernels *v2 = flm_kernels_variant("avx2-vnni", true), *v5 = flm_kernels_variant("avx512-vnni256", true);
    if (v2) CHECK(v2->matmul[FLM_F16] == flm_kernels_variant("avx2", false)->matmul[FLM_F16] && !strcmp(v2->name, "avx2-vnni"));
    if (v5) CHECK(v5->matmul[FLM_F16] == flm_kernels_variant("avx512", false)->matmul[FLM_F16] && !strcmp(v5->name, "avx512-vnni256"));
    const flm_cpu_features *f = flm_cpu_get();
    CHECK(!f->avx512 || f->avx2);
    CHECK(!f->avx512vnni || f->avx512);
    CHECK(!f->avx512vbmi || f->avx512);
    CHECK(!f->avxvnni || f->avx2);
    printf("    tables: best=%s%s%s%s%s%s%s, q8_0/q4_0 activations: %s; cpu %s family %#x model %#x\n", best->name,
           f->avx2 ? " avx2" : "", f->avx512 ? " avx512" : "", f->avx512vnni ? " avx512vnni" : "",
           f->avx512vbmi ? " avx512vbmi" : "", f->avxvnni ? " avxvnni" : "", f->neon ? " neon" : "",
           flm_kernels_qact_default() ? "int8" : "float", f->vendor[0] ? f->vendor : "-", (unsigned)f->family, (unsigned)f->model);
    if (!flm_kernels_by_name("avx2") && !flm_kernels_by_name("neon"))
        printf("    (no SIMD table on this CPU/build: matmul tests compared nothing)\n");
}

/* attend (a group of query heads over a KV cache) against the scalar composition:
 * head sizes on and off the vector width, every tail of the 4-key score loop and of
 * the position blocks, misaligned rows; and each head's result is bit-identical
 * whether it is computed alone or with the rest of its group. */
TEST(kernels_attend) {
    const flm_kernels *ref = flm_kernels_scalar();
    static const int HD[] = {8, 16, 24, 64, 128, 256, 272};
    static const int LEN[] = {1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 65, 127, 128, 129};
    enum { MAXHD = 272, MAXLEN = 129, PAD = 5, NQ = 6 };
    size_t stride = 2 * MAXHD + PAD; /* two kv heads side by side, odd stride */
    float *K = malloc(((size_t)MAXLEN * stride + 1) * sizeof(float)), *Vv = malloc(((size_t)MAXLEN * stride + 1) * sizeof(float));
    float *q = malloc((NQ * MAXHD + 1) * sizeof(float)), *s1 = malloc(NQ * MAXLEN * sizeof(float)), *s2 = malloc(NQ * MAXLEN * sizeof(float));
    float *o1 = malloc((NQ * MAXHD + 1) * sizeof(float)), *o2 = malloc((NQ * MAXHD + 2) * sizeof(float));
    float *o3 = malloc((MAXHD + 1) * sizeof(float));
    REQUIRE(K && Vv && q && s1 && s2 && o1 && o2 && o3);
    for (size_t i = 0; i < (size_t)MAXLEN * stride + 1; i++) { K[i] = rnd_f() * 3.0f; Vv[i] = rnd_f(); }
    for (int i = 0; i <= NQ * MAXHD; i++) q[i] = rnd_f() * 3.0f;
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const flm_kernels *k = flm_kernels_by_name(SIMD_TABLES[ti]);
        if (!k) continue;
        for (size_t hi = 0; hi < sizeof HD / sizeof HD[0]; hi++)
            for (size_t li = 0; li < sizeof LEN / sizeof LEN[0]; li++)
                for (int mis = 0; mis < 2; mis++) {
                    int hd = HD[hi], len = LEN[li], nq = 1 + (int)((hi + li) % NQ);
                    float scale = 1.0f / sqrtf((float)hd);
                    /* second kv head, shifted by mis floats: rows start unaligned */
                    const float *kh = K + hd + mis, *vh = Vv + hd + mis, *qq = q + mis;
                    flm_attend(ref, qq, nq, kh, vh, len, stride, hd, scale, s1, o1);
                    o2[nq * hd] = 12345.0f;
                    flm_attend(k, qq, nq, kh, vh, len, stride, hd, scale, s2, o2);
                    CHECK_MSG(o2[nq * hd] == 12345.0f, "%s attend hd=%d len=%d nq=%d wrote past the end", k->name, hd, len, nq);
                    for (int i = 0; i < nq * hd; i++)
                        if (!(fabsf(o1[i] - o2[i]) <= 2e-6f)) {
                            test_fail(__FILE__, __LINE__, "%s attend hd=%d len=%d nq=%d mis=%d: out[%d] %.9g vs %.9g", k->name, hd, len,
                                      nq, mis, i, o2[i], o1[i]);
                            break;
                        }
                    /* the last head alone: the same bits as within its group */
                    flm_attend(k, qq + (size_t)(nq - 1) * hd, 1, kh, vh, len, stride, hd, scale, s2, o3);
                    CHECK_MSG(memcmp(o3, o2 + (size_t)(nq - 1) * hd, (size_t)hd * sizeof(float)) == 0,
                              "%s attend hd=%d len=%d: head %d differs alone and in a group of %d", k->name, hd, len, nq - 1, nq);
                }
    }
    free(K); free(Vv); free(q); free(s1); free(s2); free(o1); free(o2); free(o3);
}

/* rope: bit-identical to the reference (separate multiplies, no FMA), every head size
 * tail of each table's vector width, misaligned rows, and nothing written past the
 * last head. */
TEST(kernels_rope) {
    const flm_kernels *ref = flm_kernels_scalar();
    static const int HD[] = {2, 4, 6, 8, 14, 16, 30, 32, 34, 64, 66, 128, 130, 256};
    enum { MAXHD = 256, NH = 3 };
    float *cs = malloc((MAXHD / 2 + 1) * sizeof(float)), *sn = malloc((MAXHD / 2 + 1) * sizeof(float));
    float *a = malloc((NH * MAXHD + 2) * sizeof(float)), *b = malloc((NH * MAXHD + 2) * sizeof(float));
    REQUIRE(cs && sn && a && b);
    for (int i = 0; i <= MAXHD / 2; i++) {
        double ang = 0.37 * i + 0.11;
        cs[i] = (float)cos(ang);
        sn[i] = (float)sin(ang);
    }
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const flm_kernels *k = flm_kernels_by_name(SIMD_TABLES[ti]);
        if (!k) continue;
        REQUIRE(k->rope);
        for (size_t hi = 0; hi < sizeof HD / sizeof HD[0]; hi++)
            for (int mis = 0; mis < 2; mis++) {
                int hd = HD[hi], n = NH * hd;
                for (int i = 0; i < n + 1; i++) a[mis + i] = b[mis + i] = rnd_f() * 4.0f;
                ref->rope(a + mis, NH, hd, cs, sn);
                k->rope(b + mis, NH, hd, cs, sn);
                CHECK_MSG(memcmp(a + mis, b + mis, (size_t)(n + 1) * sizeof(float)) == 0, "%s rope hd=%d mis=%d differs (or wrote past the end)",
                          k->name, hd, mis);
            }
    }
    free(cs); free(sn); free(a); free(b);
}

/* The two-step int8 products (qprep once, qrun on row chunks) give exactly the bits of
 * the one-call matmul of the same table: every qact table including the scalar
 * reference, both types, decode and prefill batches, odd row chunks. */
TEST(kernels_qact_prepared_equals_matmul) {
    static const char *const ALL[] = {"scalar", "avx2", "avx512", "neon", "avx2-vnni", "avx512-vnni256", "avx512-amx", "neon-dotprod", "neon-i8mm"};
    static const int SHAPES[][3] = {{37, 1536, 1}, {20, 8960, 1}, {19, 96, 5}, {33, 1536, 64}, {7, 2080, 3}};
    for (size_t ti = 0; ti < sizeof ALL / sizeof ALL[0]; ti++) {
        const flm_kernels *k = flm_kernels_variant(ALL[ti], true);
        if (!k) continue;
        REQUIRE(k->qprep && k->qrun && k->qprep_bytes);
        for (int dti = 0; dti < 2; dti++) {
            flm_dtype dt = dti ? FLM_Q4_0 : FLM_Q8_0;
            for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
                int rows = SHAPES[si][0], cols = SHAPES[si][1], n_tok = SHAPES[si][2];
                size_t wbytes = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols);
                void *W = malloc(wbytes);
                float *X = malloc((size_t)n_tok * (size_t)cols * sizeof(float));
                float *y1 = malloc((size_t)n_tok * (size_t)rows * sizeof(float)), *y2 = malloc((size_t)n_tok * (size_t)rows * sizeof(float));
                size_t pb = k->qprep_bytes(dt, n_tok, cols);
                void *P = aligned_alloc(64, (pb + 63) / 64 * 64);
                REQUIRE(W && X && y1 && y2 && P);
                fill_weights(dt, W, rows, cols);
                for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) X[i] = rnd_f() * (i % 5 == 0 ? 6.0f : 1.0f);
                k->matmul[dt](W, X, y1, n_tok, cols, rows, 0, rows);
                memset(y2, 0xff, (size_t)n_tok * (size_t)rows * sizeof(float));
                k->qprep(dt, X, n_tok, cols, P);
                for (int r0 = 0; r0 < rows;) { /* chunks of 1, 5, 16, 3, ... rows */
                    int len = 1 + (int)(rnd_u32() % 16u), r1 = r0 + len < rows ? r0 + len : rows;
                    k->qrun(dt, W, P, y2, n_tok, cols, rows, r0, r1);
                    r0 = r1;
                }
                CHECK_MSG(memcmp(y1, y2, (size_t)n_tok * (size_t)rows * sizeof(float)) == 0, "%s %s %dx%d n_tok=%d: prepared result differs",
                          k->name, flm_dtype_get(dt)->name, rows, cols, n_tok);
                free(W); free(X); free(y1); free(y2); free(P);
            }
        }
    }
}

/* lora_row, every table (float and qact variants) against the specification computed
 * here: per column an fmaf chain over the rank from 0, then W + (float)(acc * scale).
 * Rank and column counts on and off every vector width, misaligned rows, nothing
 * written past the row. The fixture is sensitive: somewhere a multiply-then-add
 * chain gives other bits than the fused one. */
TEST(kernels_lora_row) {
    static const char *const ALL[] = {"scalar", "avx2", "avx512", "neon", "avx2-vnni", "avx512-vnni256", "avx512-amx", "neon-dotprod", "neon-i8mm"};
    static const int RANK[] = {1, 2, 3, 4, 7, 16, 64};
    static const int COLS[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 257};
    enum { MAXR = 64, MAXC = 257 };
    float *u = malloc((MAXR + 1) * sizeof(float)), *V = malloc(((size_t)MAXR * MAXC + 1) * sizeof(float));
    float *W0 = malloc((MAXC + 2) * sizeof(float)), *want = malloc((MAXC + 2) * sizeof(float)), *got = malloc((MAXC + 2) * sizeof(float));
    float *acc = malloc((MAXC + 1) * sizeof(float));
    REQUIRE(u && V && W0 && want && got && acc);
    size_t unfused_differs = 0, compared = 0;
    for (size_t ri = 0; ri < sizeof RANK / sizeof RANK[0]; ri++)
        for (size_t ci = 0; ci < sizeof COLS / sizeof COLS[0]; ci++)
            for (int mis = 0; mis < 2; mis++) {
                int r = RANK[ri], cols = COLS[ci];
                float scale = mis ? 0.37f : 2.0f;
                for (int i = 0; i <= r; i++) u[i] = rnd_f() * 3.0f;
                for (size_t i = 0; i < (size_t)r * (size_t)cols + 1; i++) V[i] = rnd_f() * (i % 7 == 0 ? 40.0f : 1.0f);
                for (int i = 0; i < cols + 2; i++) W0[i] = rnd_f();
                const float *vm = V + mis; /* rows start misaligned */
                memcpy(want, W0, (size_t)(cols + 2) * sizeof(float));
                for (int c = 0; c < cols; c++) {
                    float s = 0.0f, s2 = 0.0f;
                    for (int k = 0; k < r; k++) {
                        s = fmaf(u[k], vm[(size_t)k * (size_t)cols + (size_t)c], s);
                        float p = u[k] * vm[(size_t)k * (size_t)cols + (size_t)c];
                        s2 = s2 + p;
                    }
                    const float d = s * scale;
                    want[mis + c] = want[mis + c] + d;
                    unfused_differs += s != s2;
                }
                for (size_t ti = 0; ti < sizeof ALL / sizeof ALL[0]; ti++)
                    for (int qact = 0; qact < 2; qact++) {
                        const flm_kernels *k = flm_kernels_variant(ALL[ti], qact);
                        if (!k) continue;
                        REQUIRE(k->lora_row);
                        memcpy(got, W0, (size_t)(cols + 2) * sizeof(float));
                        k->lora_row(u, vm, r, cols, scale, acc, got + mis);
                        compared++;
                        CHECK_MSG(memcmp(got, want, (size_t)(cols + 2) * sizeof(float)) == 0,
                                  "%s%s lora_row r=%d cols=%d mis=%d differs from the fma chain (or wrote outside the row)", k->name,
                                  qact ? " (qact)" : "", r, cols, mis);
                    }
            }
    CHECK(compared > 0);
    CHECK_MSG(unfused_differs > 0, "fixture cannot tell a fused chain from multiply-then-add");
    printf("    lora_row: %zu table runs bit-identical to the fma chain; %zu columns where multiply-then-add differs\n", compared,
           unfused_differs);
    free(u); free(V); free(W0); free(want); free(got); free(acc);
}

/* stream_read, every table: reads exactly [p, p + n) (the buffer ends at an
 * inaccessible page, and a byte past n does not change the value), and its value
 * depends on every byte (one byte changed anywhere changes it; restored, it is back). */
TEST(kernels_stream_read) {
    static const char *const ALL[] = {"scalar", "avx2", "avx512", "neon", "avx2-vnni", "avx512-vnni256", "avx512-amx", "neon-dotprod", "neon-i8mm"};
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 16 * (size_t)FLM_STREAM_CHUNK;
    size_t span = (n + page - 1) / page * page;
    unsigned char *map = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(map != MAP_FAILED);
    REQUIRE(mprotect(map + span, page, PROT_NONE) == 0); /* a guard page right after the buffer */
    unsigned char *p = map + span - n;                    /* page-aligned end, 64-byte aligned start */
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)rnd_u32();
    int ran = 0;
    for (size_t ti = 0; ti < sizeof ALL / sizeof ALL[0]; ti++) {
        const flm_kernels *k = flm_kernels_variant(ALL[ti], false);
        if (!k) continue;
        REQUIRE(k->stream_read);
        CHECK(flm_kernels_variant(ALL[ti], true)->stream_read == k->stream_read);
        ran++;
        uint64_t v0 = k->stream_read(p, n);
        CHECK_MSG(k->stream_read(p, n) == v0, "%s stream_read is not deterministic", k->name);
        size_t at[] = {0, 1, 7, 8, 63, 64, 200, 255, 256, 511, 512, 1000, n - 65, n - 64, n - 1, rnd_u32() % n, rnd_u32() % n};
        for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
            p[at[i]] ^= 0x5A;
            CHECK_MSG(k->stream_read(p, n) != v0, "%s stream_read ignores byte %zu", k->name, at[i]);
            p[at[i]] ^= 0x5A;
        }
        CHECK(k->stream_read(p, n) == v0);
        /* a shorter read does not look at the bytes after it */
        uint64_t v1 = k->stream_read(p, n - FLM_STREAM_CHUNK);
        p[n - FLM_STREAM_CHUNK] ^= 0x5A;
        CHECK_MSG(k->stream_read(p, n - FLM_STREAM_CHUNK) == v1, "%s stream_read reads past n", k->name);
        p[n - FLM_STREAM_CHUNK] ^= 0x5A;
        CHECK(k->stream_read(p + n - FLM_STREAM_CHUNK, FLM_STREAM_CHUNK) == k->stream_read(p + n - FLM_STREAM_CHUNK, FLM_STREAM_CHUNK));
    }
    CHECK(ran >= 1);
    munmap(map, span + page);
}

/* The packed int8 layouts (flm_kernels.qpacked: "avx512-g16" where AVX512_VNNI+VBMI run,
 * "avx512-r16" with AMX): packing in one call or two (split at a row group) gives the
 * same bytes, keeps the matrix's size and unpacks every row back to the file's bytes;
 * its products are bit for bit those of the table's qrun on the file's layout (the same
 * integers, scales and float operations per lane): every multiple of 32 columns to 576
 * (full and partial 16-block groups) and the model's sizes (+ 2400: full groups then a
 * partial one of 11), odd row counts, odd row chunks, misaligned W ending at a guard page,
 * padded Y rows left alone; flm_tensor_plain_row reads packed rows back. Both packed
 * tables: avx512 (1..9, 64 tokens; 1-13 rows in chunks of 1-8) and, with AMX, avx512-amx
 * (16..100 tokens: the tile path with a padded last tile; 1 and 3: the 16-rows-per-vector
 * decode path; 1-40 rows in chunks of 1-40, so partial and split 16-row groups). */
TEST(kernels_qpacked_equals_qrun) {
    static const char *const TABLES[] = {"avx512", "avx512-amx"};
    static const int BIG[] = {1536, 8960, 2080, 2400};
    static const int TOKS[] = {1, 2, 3, 4, 5, 9, 64, 1};
    static const int TOKS_AMX[] = {16, 1, 17, 5, 33, 3, 100, 31}; /* the tile path (>= 16) and the vector path */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int compared = 0;
    for (int ti = 0; ti < 2; ti++) {
    const flm_kernels *k = flm_kernels_variant(TABLES[ti], true);
    if (!k || !k->qpacked) { printf("    (%s: not on this CPU/build, skipped)\n", TABLES[ti]); continue; }
    const flm_qpacked_fns *pk = k->qpacked;
    for (int dti = 0; dti < 2; dti++) {
        flm_dtype dt = dti ? FLM_Q4_0 : FLM_Q8_0;
        for (int ci = 0; ci < 18 + 4; ci++) {
            int cols = ci < 18 ? 32 * (ci + 1) : BIG[ci - 18];
            int rows = 1 + (int)(rnd_u32() % (ti ? 40u : 13u)), n_tok = ti ? TOKS_AMX[ci % 8] : TOKS[ci % 8], mis = ci % 3;
            size_t wbytes = flm_dtype_bytes(dt, (uint64_t)rows * (uint64_t)cols), ldy = (size_t)rows + 2;
            size_t rb = wbytes / (size_t)rows;
            /* W ends right at an inaccessible page (mis 0) or a few bytes before it, so a
             * read past the matrix (a gather over missing rows) faults */
            size_t span = (wbytes + 8 + page - 1) / page * page;
            char *map = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            REQUIRE(map != MAP_FAILED && mprotect(map + span, page, PROT_NONE) == 0);
            char *orig = malloc(wbytes), *row = malloc(rb);
            float *X = malloc((size_t)n_tok * (size_t)cols * sizeof(float));
            float *ya = malloc((size_t)n_tok * ldy * sizeof(float)), *yb = malloc((size_t)n_tok * ldy * sizeof(float));
            size_t pa = k->qprep_bytes(dt, n_tok, cols), pp = pk->prep_bytes(dt, n_tok, cols);
            void *Pa = aligned_alloc(64, (pa + 63) / 64 * 64), *Pp = aligned_alloc(64, (pp + 63) / 64 * 64);
            REQUIRE(orig && row && X && ya && yb && Pa && Pp);
            char *W = map + span - wbytes - (mis ? 2 * mis + 1 : 0);
            fill_weights(dt, W, rows, cols);
            memcpy(orig, W, wbytes);
            for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) X[i] = rnd_f() * (i % 7 == 0 ? 5.0f : 1.0f);
            for (size_t i = 0; i < (size_t)n_tok * ldy; i++) ya[i] = yb[i] = -777.0f;
            k->qprep(dt, X, n_tok, cols, Pa);
            k->qrun(dt, W, Pa, ya, n_tok, cols, (int)ldy, 0, rows);
            /* in one call, and in two split at a row group (as loading threads do) */
            int mid = rows / 2 / pk->row_group * pk->row_group;
            char *copy = malloc(wbytes);
            REQUIRE(copy);
            pk->pack_rows(dt, orig, copy, rows, cols, 0, rows);
            pk->pack_rows(dt, orig, W, rows, cols, 0, mid);
            pk->pack_rows(dt, orig, W, rows, cols, mid, rows);
            CHECK_MSG(memcmp(copy, W, wbytes) == 0, "%s %dx%d: packing in one call and in two differ", flm_dtype_get(dt)->name, rows, cols);
            free(copy);
            CHECK_MSG(cols < 64 || memcmp(W, orig, wbytes) != 0, "%s %dx%d: packing changed nothing", flm_dtype_get(dt)->name, rows, cols);
            pk->prep(dt, X, n_tok, cols, Pp);
            for (int r0 = 0; r0 < rows;) { /* chunks of 1..8 rows, or (AMX) 1..40 */
                int r1 = r0 + 1 + (int)(rnd_u32() % (ti ? 40u : 8u));
                if (r1 > rows) r1 = rows;
                pk->run(dt, W, Pp, yb, n_tok, rows, cols, (int)ldy, r0, r1);
                r0 = r1;
            }
            CHECK_MSG(memcmp(ya, yb, (size_t)n_tok * ldy * sizeof(float)) == 0, "%s %s rows=%d cols=%d n_tok=%d mis=%d: packed differs from qrun",
                      k->name, flm_dtype_get(dt)->name, rows, cols, n_tok, mis);
            flm_tensor t = {.dtype = dt, .ndim = 2, .shape = {rows, cols}, .data = W, .nbytes = wbytes, .layout = pk};
            for (int r = 0; r < rows; r++) {
                const void *p = flm_tensor_plain_row(&t, r, row);
                CHECK_MSG(p == row && memcmp(row, orig + (size_t)r * rb, rb) == 0, "%s %dx%d: row %d does not unpack to the file's bytes",
                          flm_dtype_get(dt)->name, rows, cols, r);
            }
            t.layout = NULL;
            CHECK(flm_tensor_plain_row(&t, rows - 1, row) == (const void *)(W + (size_t)(rows - 1) * rb));
            compared++;
            munmap(map, span + page);
            free(orig); free(row); free(X); free(ya); free(yb); free(Pa); free(Pp);
        }
    }
    }
    printf("    %d shapes compared bit for bit\n", compared);
}
