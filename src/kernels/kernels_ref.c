/* kernels_ref.c — the scalar reference kernels, the one specification of the
 * library's arithmetic: every SIMD kernel is tested against these (tests/
 * test_kernels.c), and the scalar table is what FLM_KERNELS=scalar runs. Straightforward
 * float32 loops, accumulation in float, in index order (q4_0: element j then element
 * j+16 of each byte, j = 0..15; the forward pass' order). Calls only drivers.c and base. */
#include <math.h>

#include "base/common.h"
#include "kernels/drivers.h"
#include "kernels/kernels.h"
#include "kernels/kernels_simd.h"

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

/* ---- int8 activations for q8_0/q4_0 weights (the qact variants; cpu.h) ---- */

/* GGML-style q8_0 quantization of activations, with a float scale: per 32 values
 * d = max|x| / 127, q = x * (1/d) rounded to nearest, ties to even (0 when d == 0).
 * SIMD quantizers use exactly these operations, so their q and d are identical. */
void flm_quantize_act_ref(const float *x, int cols, int8_t *q, float *d) {
    for (int b = 0; b < cols / QK; b++) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            float v = fabsf(x[b * QK + j]);
            if (v > amax) amax = v;
        }
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        for (int j = 0; j < QK; j++) q[b * QK + j] = (int8_t)nearbyintf(x[b * QK + j] * id);
        d[b] = db;
    }
}

/* Prepared X: q [n_tok, cols] int8, then d [n_tok, cols/32] float. */
static size_t prep_bytes_ref(int dt, int n_tok, int cols) {
    (void)dt;
    size_t nq = (size_t)n_tok * (size_t)cols;
    return nq + nq / QK * sizeof(float);
}

static void prep_ref(int dt, const float *X, int n_tok, int cols, void *buf) {
    (void)dt;
    int8_t *q = buf;
    float *d = (float *)(void *)(q + (size_t)n_tok * (size_t)cols); /* a multiple of 32 bytes in: aligned */
    for (int t = 0; t < n_tok; t++)
        flm_quantize_act_ref(X + (size_t)t * (size_t)cols, cols, q + (size_t)t * (size_t)cols, d + (size_t)t * (size_t)(cols / QK));
}

/* acc = sum over blocks, in order, of (float)isum_b * (d_w * d_x). */
static void run_ref(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const int8_t *xq = Xp;
    const float *dx = (const float *)(const void *)(xq + (size_t)n_tok * (size_t)cols);
    int nb = cols / QK;
    for (int r = r0; r < r1; r++) {
        for (int t = 0; t < n_tok; t++) {
            const int8_t *q = xq + (size_t)t * (size_t)cols;
            const float *d = dx + (size_t)t * (size_t)nb;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                int32_t s = 0;
                float dw;
                if (dt == FLM_Q8_0) {
                    const block_q8_0 *blk = (const block_q8_0 *)W + (size_t)r * (size_t)nb + b;
                    for (int j = 0; j < QK; j++) s += (int32_t)blk->qs[j] * (int32_t)q[b * QK + j];
                    dw = flm_f16_to_f32(blk->d);
                } else {
                    const block_q4_0 *blk = (const block_q4_0 *)W + (size_t)r * (size_t)nb + b;
                    for (int j = 0; j < QK / 2; j++) {
                        s += ((int32_t)(blk->qs[j] & 0x0F) - 8) * (int32_t)q[b * QK + j];
                        s += ((int32_t)(blk->qs[j] >> 4) - 8) * (int32_t)q[b * QK + j + QK / 2];
                    }
                    dw = flm_f16_to_f32(blk->d);
                }
                acc += (float)s * (dw * d[b]);
            }
            Y[(size_t)t * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

/* One call: X quantized into this thread's scratch, then run. */
static void qact_ref(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    void *buf = flm_kernel_scratch(0, prep_bytes_ref(dt, n_tok, cols));
    if (!buf) { /* out of memory: float path */
        (dt == FLM_Q8_0 ? matmul_q8_0 : matmul_q4_0)(W, X, Y, n_tok, cols, ldy, r0, r1);
        return;
    }
    prep_ref(dt, X, n_tok, cols, buf);
    run_ref(dt, W, buf, Y, n_tok, cols, ldy, r0, r1);
}

static void matmul_q8_0_qact(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qact_ref(FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
static void matmul_q4_0_qact(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qact_ref(FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}

static const flm_qact_fns SCALAR_QACT = {matmul_q8_0_qact, matmul_q4_0_qact, prep_bytes_ref, prep_ref, run_ref, NULL};
const flm_qact_fns *flm_qact_scalar(void) { return &SCALAR_QACT; }

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

static void rope_ref(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)hd;
        for (int i = 0; i < half; i++) {
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * cs[i] - x1 * sn[i];
            x[i + half] = x1 * cs[i] + x0 * sn[i];
        }
    }
}

/* lora_row (see kernels.h): row by row over the rank, so V is read in order. fmaf is
 * correctly rounded (IEEE 754), so this is the same on every machine, with or without
 * an FMA instruction. */
static void lora_row_ref(const float *restrict u, const float *restrict V, int r, int64_t cols, float scale, float *restrict acc,
                         float *restrict W) {
    for (int64_t c = 0; c < cols; c++) acc[c] = 0.0f;
    for (int k = 0; k < r; k++) {
        const float uk = u[k];
        const float *v = V + (size_t)k * (size_t)cols;
        for (int64_t c = 0; c < cols; c++) acc[c] = fmaf(uk, v[c], acc[c]);
    }
    for (int64_t c = 0; c < cols; c++) {
        const float d = acc[c] * scale;
        W[c] = W[c] + d;
    }
}

/* stream_read (see kernels.h) with plain 64-bit loads: eight independent
 * accumulators, one per 8-byte word of a 64-byte line. */
static uint64_t stream_read_ref(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t off = 0; off < n; off += 64) {
        const uint64_t *w = (const uint64_t *)(const void *)(b + off);
        a0 += w[0]; a1 += w[1]; a2 += w[2]; a3 += w[3];
        a4 += w[4]; a5 += w[5]; a6 += w[6]; a7 += w[7];
    }
    return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

static const flm_kernels SCALAR = {
    .name = "scalar",
    .matmul = {[FLM_F32] = matmul_f32, [FLM_F16] = matmul_f16, [FLM_BF16] = matmul_bf16,
               [FLM_Q8_0] = matmul_q8_0, [FLM_Q4_0] = matmul_q4_0},
    .rmsnorm = rmsnorm_ref,
    .dot = dot_ref,
    .axpy = axpy_ref,
    .swiglu = swiglu_ref,
    .rope = rope_ref,
    .lora_row = lora_row_ref,
    .stream_read = stream_read_ref,
};

const flm_kernels *flm_kernels_scalar(void) { return &SCALAR; }
