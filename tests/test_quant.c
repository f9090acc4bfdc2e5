/* test_quant.c — Q8_0 / Q4_0 reference quantizers, row converters, and the
 * scalar reference table's dot products (one row of its matmul) on quantized rows. Bit-compatibility with ggml on real weights is
 * checked in test_gguf.c (gguf_reads_llama_cpp_file). */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "base/common.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

/* Quantization error bounds, as fractions of the block's max |x|: half a step
 * plus the fp16 rounding of the scale (relative 2^-11, times up to 127 / 8
 * steps). q4_0 can be a full step off for -max (its code 16 clamps to 15). */
#define Q8_MAX_ERR (0.5f / 127.0f + 1.0f / 2048.0f)
#define Q4_MAX_ERR (1.0f / 8.0f + 1.0f / 2048.0f)
/* Dot products: |reference - dequant dot| relative to sum |w_i x_i|. */
#define DOT_REL_ERR 1e-5f

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static float block_amax(const float *x) {
    float m = 0;
    for (int j = 0; j < QK; j++) m = fabsf(x[j]) > m ? fabsf(x[j]) : m;
    return m;
}

TEST(quant_q8_0_error_bound_random) {
    enum { N = 32 * 64 };
    static float x[N], y[N];
    static block_q8_0 q[N / QK];
    for (int i = 0; i < N; i++) x[i] = frand() * (float)(1 + i / QK) * 0.37f;
    flm_quantize_row_q8_0(x, q, N);
    flm_dequantize_row_q8_0(q, y, N);
    for (int b = 0; b < N / QK; b++) {
        float amax = block_amax(x + b * QK);
        CHECK_NEAR(flm_f16_to_f32(q[b].d), amax / 127.0f, amax / 127.0f / 1024.0f);
        for (int j = 0; j < QK; j++) CHECK_NEAR(y[b * QK + j], x[b * QK + j], amax * Q8_MAX_ERR);
    }
}

TEST(quant_q4_0_error_bound_random) {
    enum { N = 32 * 64 };
    static float x[N], y[N];
    static block_q4_0 q[N / QK];
    for (int i = 0; i < N; i++) x[i] = frand() * (float)(1 + i / QK) * 0.37f;
    flm_quantize_row_q4_0(x, q, N);
    flm_dequantize_row_q4_0(q, y, N);
    for (int b = 0; b < N / QK; b++) {
        float amax = block_amax(x + b * QK);
        for (int j = 0; j < QK; j++) CHECK_NEAR(y[b * QK + j], x[b * QK + j], amax * Q4_MAX_ERR);
    }
}

TEST(quant_all_zero_blocks) {
    float x[64] = {0}, y[64];
    block_q8_0 q8[2];
    block_q4_0 q4[2];
    x[40] = -0.0f;
    flm_quantize_row_q8_0(x, q8, 64);
    flm_quantize_row_q4_0(x, q4, 64);
    for (int b = 0; b < 2; b++) {
        CHECK_EQ_INT(q8[b].d, 0);
        CHECK_EQ_INT(q4[b].d & 0x7FFF, 0);
        for (int j = 0; j < QK; j++) CHECK_EQ_INT(q8[b].qs[j], 0);
        for (int j = 0; j < QK / 2; j++) CHECK_EQ_INT(q4[b].qs[j], 0x88); /* zero is code 8 */
    }
    flm_dequantize_row_q4_0(q4, y, 64);
    for (int i = 0; i < 64; i++) CHECK(y[i] == 0.0f);
}

TEST(quant_single_huge_value) {
    float x[32], y[32];
    for (int j = 0; j < 32; j++) x[j] = 0.001f * (float)(j - 16);
    x[5] = 60000.0f;
    block_q8_0 q8;
    flm_quantize_row_q8_0(x, &q8, 32);
    CHECK_EQ_INT(q8.qs[5], 127);
    for (int j = 0; j < 32; j++) if (j != 5) CHECK_EQ_INT(q8.qs[j], 0);
    flm_dequantize_row_q8_0(&q8, y, 32);
    CHECK_NEAR(y[5], 60000.0f, 60000.0f * Q8_MAX_ERR);

    /* q4_0: the max keeps its sign: a positive max gets code 0 (d < 0). */
    block_q4_0 q4;
    flm_quantize_row_q4_0(x, &q4, 32);
    CHECK(flm_f16_to_f32(q4.d) < 0);
    CHECK_EQ_INT(q4.qs[5] & 0x0F, 0);
    for (int j = 0; j < 16; j++) if (j != 5) CHECK_EQ_INT(q4.qs[j] & 0x0F, 8);
    for (int j = 0; j < 16; j++) CHECK_EQ_INT(q4.qs[j] >> 4, 8);
    flm_dequantize_row_q4_0(&q4, y, 32);
    CHECK_NEAR(y[5], 60000.0f, 60000.0f / 2048.0f);
    /* A value beyond fp16 range gives an infinite scale, never UB or a crash. */
    x[5] = 1e30f;
    flm_quantize_row_q8_0(x, &q8, 32);
    flm_quantize_row_q4_0(x, &q4, 32);
    CHECK_EQ_INT(q8.d, 0x7C00);
}

TEST(quant_q4_0_follows_ggml_exactly) {
    /* Hand-worked block: the first element of largest magnitude is -4 (element 0;
     * +4 at element 20 ties and loses), so d = -4/-8 = 0.5 and id = 2.
     * q = min(15, trunc(x*2 + 8.5)); x = -4 -> 0, 4 -> 16 -> 15, 0.25 -> 9 (9.0),
     * 0.2 -> trunc(8.9) = 8, -0.3 -> trunc(7.9) = 7. */
    float x[32] = {0};
    x[0] = -4.0f;
    x[20] = 4.0f;
    x[1] = 0.25f;
    x[2] = 0.2f;
    x[17] = -0.3f;
    block_q4_0 q;
    flm_quantize_row_q4_0(x, &q, 32);
    CHECK_EQ_INT(q.d, flm_f32_to_f16(0.5f));
    CHECK_EQ_INT(q.qs[0] & 0x0F, 0);
    CHECK_EQ_INT(q.qs[1] & 0x0F, 9);
    CHECK_EQ_INT(q.qs[2] & 0x0F, 8);
    CHECK_EQ_INT(q.qs[4] >> 4, 15); /* element 20 = 16 + 4: high nibble of byte 4, clamped */
    CHECK_EQ_INT(q.qs[1] >> 4, 7);  /* element 17 */
    CHECK_EQ_INT(q.qs[3], 0x88);
    /* q8_0: ties round away from zero (roundf). amax 127 -> d = 1. */
    float z[32] = {0};
    z[0] = 127.0f;
    z[1] = 2.5f;
    z[2] = -2.5f;
    z[3] = 0.49f;
    block_q8_0 q8;
    flm_quantize_row_q8_0(z, &q8, 32);
    CHECK_EQ_INT(q8.d, flm_f32_to_f16(1.0f));
    CHECK(q8.qs[0] == 127 && q8.qs[1] == 3 && q8.qs[2] == -3 && q8.qs[3] == 0);
}

static double dot_via_dequant(flm_dtype t, const void *w, const float *x, int n, double *abs_sum) {
    float *y = malloc((size_t)n * sizeof *y);
    flm_dtype_get(t)->to_float(w, y, (size_t)n);
    double s = 0, a = 0;
    for (int i = 0; i < n; i++) {
        s += (double)y[i] * x[i];
        a += fabs((double)y[i] * x[i]);
    }
    free(y);
    *abs_sum = a;
    return s;
}

/* One row times x with the scalar reference table (kernels_ref.c): the one reference
 * dot product for every stored type. */
static float ref_dot(flm_dtype dt, const void *w, const float *x, int n) {
    float y = -1.0f;
    flm_kernels_scalar()->matmul[dt](w, x, &y, 1, n, 1, 0, 1);
    return y;
}

TEST(quant_reference_dots) {
    static const int sizes[] = {32, 64, 96, 4096 + 32};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        float *w = malloc((size_t)n * sizeof *w), *x = malloc((size_t)n * sizeof *x);
        for (int i = 0; i < n; i++) {
            w[i] = frand();
            x[i] = frand() * 3.0f;
        }
        block_q8_0 *q8 = malloc(flm_dtype_bytes(FLM_Q8_0, (uint64_t)n));
        block_q4_0 *q4 = malloc(flm_dtype_bytes(FLM_Q4_0, (uint64_t)n));
        uint16_t *h = malloc((size_t)n * 2), *bf = malloc((size_t)n * 2);
        REQUIRE(!flm_quantize_row(FLM_Q8_0, w, q8, n) && !flm_quantize_row(FLM_Q4_0, w, q4, n));
        REQUIRE(!flm_quantize_row(FLM_F16, w, h, n) && !flm_quantize_row(FLM_BF16, w, bf, n));
        double abs_sum, want;
        want = dot_via_dequant(FLM_Q8_0, q8, x, n, &abs_sum);
        CHECK_NEAR(ref_dot(FLM_Q8_0, q8, x, n), want, abs_sum * DOT_REL_ERR);
        want = dot_via_dequant(FLM_Q4_0, q4, x, n, &abs_sum);
        CHECK_NEAR(ref_dot(FLM_Q4_0, q4, x, n), want, abs_sum * DOT_REL_ERR);
        want = dot_via_dequant(FLM_F16, h, x, n, &abs_sum);
        CHECK_NEAR(ref_dot(FLM_F16, h, x, n), want, abs_sum * DOT_REL_ERR);
        want = dot_via_dequant(FLM_BF16, bf, x, n, &abs_sum);
        CHECK_NEAR(ref_dot(FLM_BF16, bf, x, n), want, abs_sum * DOT_REL_ERR);
        want = dot_via_dequant(FLM_F32, w, x, n, &abs_sum);
        CHECK_NEAR(ref_dot(FLM_F32, w, x, n), want, abs_sum * DOT_REL_ERR);
        free(w), free(x), free(q8), free(q4), free(h), free(bf);
    }
}

TEST(quant_row_converters_and_predicate) {
    float x[5] = {1.0f, -2.5f, 65504.0f, 1e-8f, 3.14159265f};
    uint16_t h[5], b[5];
    flm_f32_to_f16_row(x, h, 5);
    flm_f32_to_bf16_row(x, b, 5);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(h[i], flm_f32_to_f16(x[i]));
        CHECK_EQ_INT(b[i], flm_f32_to_bf16(x[i]));
    }
    CHECK_EQ_INT(h[2], 0x7BFF);
    CHECK(flm_quant_row_ok(FLM_Q8_0, 128) && flm_quant_row_ok(FLM_Q4_0, 32));
    CHECK(!flm_quant_row_ok(FLM_Q8_0, 48) && !flm_quant_row_ok(FLM_Q4_0, 31) && !flm_quant_row_ok(FLM_Q8_0, 0));
    CHECK(flm_quant_row_ok(FLM_F16, 7) && flm_quant_row_ok(FLM_F32, 1));
    block_q8_0 q;
    CHECK_EQ_INT(flm_quantize_row(FLM_Q8_0, x, &q, 5), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "q8_0"));
    CHECK_EQ_INT(flm_quantize_row(FLM_I32, x, &q, 1), FLM_ERR_ARG);
}

/* flm_quantize_row_q8_0 / _q4_0 (vectorised, no libm call) give the bytes of their
 * specifications (ggml's loops): random blocks at many scales, exact ties
 * (values whose x * id lands on k + 0.5, where roundf rounds away from zero and a
 * round-to-even would not), the boundaries +-127/-128, signed zeros, subnormals,
 * infinities and NaN. */
TEST(quant_fast_equals_spec) {
    enum { NB = 4096 };
    float *x = malloc(NB * 32 * sizeof(float));
    block_q8_0 *a = malloc(NB * sizeof *a), *b = malloc(NB * sizeof *b);
    REQUIRE(x && a && b);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int blk = 0; blk < NB; blk++) {
        float *v = x + blk * 32;
        float scale = ldexpf(1.0f, (blk % 61) - 30);
        for (int j = 0; j < 32; j++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            v[j] = ((float)(rng >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
        }
        switch (blk % 8) {
        case 1: /* amax 127: id = 1, so halves are exact ties */
            v[0] = 127.0f;
            for (int j = 1; j < 32; j++) v[j] = (float)((int)((rng >> j) % 253u) - 126) + ((j & 1) ? 0.5f : -0.5f);
            break;
        case 2: v[3] = INFINITY; break;
        case 3: v[5] = NAN; v[6] = -0.0f; break;
        case 4: for (int j = 0; j < 32; j++) v[j] = ldexpf(v[j], -120); break; /* subnormal range */
        case 5: v[7] = -v[0] * 1.0000001f; v[9] = 0.0f; break;
        case 6: v[1] = -INFINITY; v[2] = NAN; break;
        default: break;
        }
    }
    flm_quantize_row_q8_0(x, a, NB * 32);
    flm_quantize_row_q8_0_spec(x, b, NB * 32);
    int bad = 0;
    for (int blk = 0; blk < NB; blk++)
        if (memcmp(&a[blk], &b[blk], sizeof a[blk]) != 0 && bad++ < 3)
            test_fail(__FILE__, __LINE__, "q8_0 block %d: fast quantizer differs from the specification", blk);
    /* q4_0 on the same blocks, plus ties of magnitude (the first one's sign wins), all
     * zeros with a -0 first (d keeps the scalar's sign) and all NaN */
    block_q4_0 *c = malloc(NB * sizeof *c), *e = malloc(NB * sizeof *e);
    REQUIRE(c && e);
    for (int blk = 0; blk < NB; blk += 8) {
        float *v = x + blk * 32;
        if (blk % 24 == 0) { v[4] = -v[30] ; v[30] = fabsf(v[30]) + 1.0f; v[2] = -v[30]; }      /* -m before +m */
        else if (blk % 24 == 8) for (int j = 0; j < 32; j++) v[j] = j == 0 ? -0.0f : 0.0f;
        else for (int j = 0; j < 32; j++) v[j] = NAN;
    }
    flm_quantize_row_q4_0(x, c, NB * 32);
    flm_quantize_row_q4_0_spec(x, e, NB * 32);
    for (int blk = 0; blk < NB; blk++)
        if (memcmp(&c[blk], &e[blk], sizeof c[blk]) != 0 && bad++ < 6)
            test_fail(__FILE__, __LINE__, "q4_0 block %d: fast quantizer differs from the specification", blk);
    free(c); free(e);
    free(x); free(a); free(b);
}
