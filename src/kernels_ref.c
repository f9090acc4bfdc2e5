/* kernels_ref.c — scalar reference kernels: straightforward float32 loops, the
 * specification for every SIMD kernel. Accumulation is in float, in index order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"
#include "cpu.h"

static void matmul_f32(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const float *w = W;
    for (int r = r0; r < r1; r++) {
        const float *row = w + (size_t)r * (size_t)cols;
        for (int t = 0; t < n_tok; t++) {
            const float *x = X + (size_t)t * (size_t)cols;
            float acc = 0.0f;
            for (int c = 0; c < cols; c++) acc += row[c] * x[c];
            Y[(size_t)t * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

static void matmul_f16(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const uint16_t *w = W;
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = w + (size_t)r * (size_t)cols;
        for (int t = 0; t < n_tok; t++) {
            const float *x = X + (size_t)t * (size_t)cols;
            float acc = 0.0f;
            for (int c = 0; c < cols; c++) acc += flm_f16_to_f32(row[c]) * x[c];
            Y[(size_t)t * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

static void matmul_bf16(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const uint16_t *w = W;
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = w + (size_t)r * (size_t)cols;
        for (int t = 0; t < n_tok; t++) {
            const float *x = X + (size_t)t * (size_t)cols;
            float acc = 0.0f;
            for (int c = 0; c < cols; c++) acc += flm_bf16_to_f32(row[c]) * x[c];
            Y[(size_t)t * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

static void matmul_q8_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const block_q8_0 *w = W;
    int nb = cols / QK;
    for (int r = r0; r < r1; r++) {
        const block_q8_0 *row = w + (size_t)r * (size_t)nb;
        for (int t = 0; t < n_tok; t++) {
            const float *x = X + (size_t)t * (size_t)cols;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                float s = 0.0f;
                for (int j = 0; j < QK; j++) s += (float)row[b].qs[j] * x[b * QK + j];
                acc += flm_f16_to_f32(row[b].d) * s;
            }
            Y[(size_t)t * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

static void matmul_q4_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const block_q4_0 *w = W;
    int nb = cols / QK;
    for (int r = r0; r < r1; r++) {
        const block_q4_0 *row = w + (size_t)r * (size_t)nb;
        for (int t = 0; t < n_tok; t++) {
            const float *x = X + (size_t)t * (size_t)cols;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                float s = 0.0f;
                for (int j = 0; j < QK / 2; j++) {
                    s += (float)((row[b].qs[j] & 0x0F) - 8) * x[b * QK + j];
                    s += (float)((row[b].qs[j] >> 4) - 8) * x[b * QK + j + QK / 2];
                }
                acc += flm_f16_to_f32(row[b].d) * s;
            }
            Y[(size_t)t * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

static void rmsnorm_ref(float *out, const float *x, const float *w, int n, float eps) {
    /* transformers: variance = mean(x^2) in float32; x * rsqrt(variance + eps) * w */
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

static float dot_ref(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static void axpy_ref(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void swiglu_ref(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void flm_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static const flm_kernels SCALAR = {
    .name = "scalar",
    .matmul = {[FLM_F32] = matmul_f32, [FLM_F16] = matmul_f16, [FLM_BF16] = matmul_bf16,
               [FLM_Q8_0] = matmul_q8_0, [FLM_Q4_0] = matmul_q4_0},
    .rmsnorm = rmsnorm_ref,
    .dot = dot_ref,
    .axpy = axpy_ref,
    .swiglu = swiglu_ref,
};

const flm_kernels *flm_kernels_scalar(void) { return &SCALAR; }

const flm_kernels *flm_kernels_best(void) {
    /* cpu.c picks the best table this CPU runs (AVX-512, AVX2, NEON), once;
     * FLM_KERNELS=scalar|avx2|avx512|neon forces one (unavailable: warns, best). */
    return flm_kernels_select();
}
