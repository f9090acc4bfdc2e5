/* kernels_neon.c — the "neon" kernel table (aarch64 Advanced SIMD, with the
 * architectural fp16 <-> fp32 conversion). Activations stay float32 for every weight
 * type: weights are widened to float (f16 by fcvtl, bf16 by a 16-bit shift,
 * q8_0/q4_0 as d*q, which is exact in float) and multiplied into per-(row, token)
 * accumulators with FMA.
 *
 * Determinism: every (row, token) output has its own single accumulator that sees
 * the same sequence of operations whatever the tile shape, so a row's result does not
 * depend on its neighbours, on n_tok, or on how [r0, r1) is split across threads.
 * Results differ from kernels_ref.c only by summation order (and FMA rounding).
 *
 * Int8 activations (q8_0/q4_0 qact variants): X is quantized per call exactly as the
 * reference does (vcvtnq rounds to nearest even, like nearbyintf); per block the
 * integer sum of q_w * q_x is exact (vmull_s8/vmlal_high_s8 pair sums fit int16 since
 * |q_x| <= 127, then vpadalq_s16 into 4 int32 lanes); lanes are converted to float
 * and accumulated with FMA, scaled by d_w * d_x (the reference's product).
 *
 * Also the LoRA merge row and the bandwidth probe's load loop. Calls only drivers.c. */
#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>

#include "kernels/drivers.h"
#include "kernels/kernels.h"
#include "kernels/kernels_neon.h"
#include "kernels/kernels_simd.h"

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* Linux arch/arm64 uapi hwcap.h: SDOT/UDOT */
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13) /* SMMLA/UMMLA/USMMLA */
#endif

#define INLINE static inline __attribute__((always_inline))
#define L 4           /* float lanes per vector */
#define P (QK / 8)    /* 8-weight pieces per 32-element chunk (two vectors each) */
#define MAX_RB 4
#define MAX_TB 4

INLINE size_t row_bytes(int dt, int cols) {
    switch (dt) {
    case FLM_F32: return (size_t)cols * 4;
    case FLM_F16: case FLM_BF16: return (size_t)cols * 2;
    case FLM_Q8_0: return (size_t)(cols / QK) * sizeof(block_q8_0);
    default: return (size_t)(cols / QK) * sizeof(block_q4_0);
    }
}

INLINE float half_to_float(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

INLINE float32x4_t chunk_scale(int dt, const void *row, int ch) {
    if (dt == FLM_Q8_0) return vdupq_n_f32(half_to_float(((const block_q8_0 *)row)[ch].d));
    if (dt == FLM_Q4_0) return vdupq_n_f32(half_to_float(((const block_q4_0 *)row)[ch].d));
    return vdupq_n_f32(0.0f);
}

INLINE void widen_s8(int8x8_t q, float32x4_t d, float32x4_t *lo, float32x4_t *hi) {
    int16x8_t s = vmovl_s8(q);
    *lo = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(s))), d);
    *hi = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(s))), d);
}

/* Weights [ch*32 + p*8, +8) of a row as two float vectors. */
INLINE void load_w(int dt, const void *row, int ch, int p, float32x4_t d, float32x4_t *lo, float32x4_t *hi) {
    size_t c = (size_t)ch * QK + (size_t)p * 8;
    switch (dt) {
    case FLM_F32:
        *lo = vld1q_f32((const float *)row + c);
        *hi = vld1q_f32((const float *)row + c + 4);
        break;
    case FLM_F16: {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)row + c));
        *lo = vcvt_f32_f16(vget_low_f16(h));
        *hi = vcvt_high_f32_f16(h);
        break;
    }
    case FLM_BF16: {
        uint16x8_t h = vld1q_u16((const uint16_t *)row + c);
        *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        *hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
        break;
    }
    case FLM_Q8_0:
        widen_s8(vld1_s8(((const block_q8_0 *)row)[ch].qs + p * 8), d, lo, hi);
        break;
    default: {
        uint8x8_t b = vld1_u8(((const block_q4_0 *)row)[ch].qs + (p & 1) * 8);
        b = p < 2 ? vand_u8(b, vdup_n_u8(0x0F)) : vshr_n_u8(b, 4);
        widen_s8(vsub_s8(vreinterpret_s8_u8(b), vdup_n_s8(8)), d, lo, hi);
        break;
    }
    }
}

/* Float-type weights [c, c + min(rem, 4)) of a row, zero beyond (tails). */
INLINE float32x4_t load_w_tail(int dt, const void *row, size_t c, size_t rem) {
    size_t n = rem < L ? rem : L;
    if (dt == FLM_F32) {
        float buf[L] = {0};
        memcpy(buf, (const float *)row + c, n * sizeof(float));
        return vld1q_f32(buf);
    }
    uint16_t buf[L] = {0};
    memcpy(buf, (const uint16_t *)row + c, n * sizeof(uint16_t));
    uint16x4_t h = vld1_u16(buf);
    if (dt == FLM_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

INLINE float32x4_t load_x_tail(const float *x, size_t rem) {
    float buf[L] = {0};
    memcpy(buf, x, (rem < L ? rem : L) * sizeof(float));
    return vld1q_f32(buf);
}

/* Y for rows [r, r+RB) x tokens [t, t+TB): one accumulator per output. */
INLINE void tile(int dt, int RB, int TB, const void *W, const float *X, float *Y, int cols, int ldy, int r, int t) {
    const char *rows[MAX_RB];
    const float *xs[MAX_TB];
    float32x4_t acc[MAX_RB][MAX_TB];
    size_t rb = row_bytes(dt, cols);
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int j = 0; j < TB; j++) xs[j] = X + (size_t)(t + j) * (size_t)cols;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = vdupq_n_f32(0.0f);
    int nch = cols / QK;
    for (int ch = 0; ch < nch; ch++) {
        float32x4_t d[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) d[i] = chunk_scale(dt, rows[i], ch);
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) {
            float32x4_t lo[MAX_RB], hi[MAX_RB];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) load_w(dt, rows[i], ch, p, d[i], &lo[i], &hi[i]);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) {
                const float *x = xs[j] + (size_t)ch * QK + (size_t)p * 8;
                float32x4_t x0 = vld1q_f32(x), x1 = vld1q_f32(x + 4);
#pragma GCC unroll 8
                for (int i = 0; i < RB; i++) {
                    acc[i][j] = vfmaq_f32(acc[i][j], lo[i], x0);
                    acc[i][j] = vfmaq_f32(acc[i][j], hi[i], x1);
                }
            }
        }
    }
    if (dt == FLM_F32 || dt == FLM_F16 || dt == FLM_BF16) {
        for (size_t c = (size_t)nch * QK; c < (size_t)cols; c += L) {
            size_t rem = (size_t)cols - c;
            float32x4_t w[MAX_RB];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) w[i] = load_w_tail(dt, rows[i], c, rem);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) {
                float32x4_t x = load_x_tail(xs[j] + c, rem);
#pragma GCC unroll 8
                for (int i = 0; i < RB; i++) acc[i][j] = vfmaq_f32(acc[i][j], w[i], x);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = vaddvq_f32(acc[i][j]);
}

/* Decode streams 4 rows at once; prefill uses 4 rows x 4 tokens so each weight
 * vector is used four times. All tiles compute each output identically. */
INLINE void matmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        int t = 0;
        for (; t + 4 <= n_tok; t += 4) tile(dt, 4, 4, W, X, Y, cols, ldy, r, t);
        for (; t < n_tok; t++) tile(dt, 4, 1, W, X, Y, cols, ldy, r, t);
    }
    for (; r < r1; r++) {
        int t = 0;
        for (; t + 4 <= n_tok; t += 4) tile(dt, 1, 4, W, X, Y, cols, ldy, r, t);
        for (; t < n_tok; t++) tile(dt, 1, 1, W, X, Y, cols, ldy, r, t);
    }
}

#define MATMUL(name, dt)                                                                              \
    static void name(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) { \
        matmul_body(dt, W, X, Y, n_tok, cols, ldy, r0, r1);                                           \
    }
MATMUL(matmul_f32, FLM_F32)
MATMUL(matmul_f16, FLM_F16)
MATMUL(matmul_bf16, FLM_BF16)
MATMUL(matmul_q8_0, FLM_Q8_0)
MATMUL(matmul_q4_0, FLM_Q4_0)

/* ---- int8 activations ------------------------------------------------------- */

#define QB_TOK 4 /* tokens per prefill tile */

/* The prepared X in one buffer: q [n_tok * cols], then d [n_tok * cols / 32]. */
static size_t prep_bytes(int dt, int n_tok, int cols) {
    (void)dt;
    size_t nq = (size_t)n_tok * (size_t)cols;
    return nq + nq / QK * sizeof(float);
}

/* flm_quantize_act_ref, vectorised: the same operations, so the same q and d. */
static void quantize_x(const float *X, int n_tok, int cols, int8_t **q, float **d, void *mem) {
    size_t nq = (size_t)n_tok * (size_t)cols, nb = nq / QK;
    char *buf = mem;
    *q = (int8_t *)buf;
    *d = (float *)(void *)(buf + nq);
    for (size_t b = 0; b < nb; b++) {
        const float *x = X + b * QK;
        float32x4_t a[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            a[k] = vld1q_f32(x + 4 * k);
            m = vmaxq_f32(m, vabsq_f32(a[k]));
        }
        float amax = vmaxvq_f32(m);
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        for (int k = 0; k < 8; k += 2) {
            int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(a[k], id)), i1 = vcvtnq_s32_f32(vmulq_n_f32(a[k + 1], id));
            int16x8_t h = vcombine_s16(vmovn_s32(i0), vmovn_s32(i1));
            vst1_s8(*q + b * QK + (size_t)k * 4, vmovn_s16(h));
        }
        (*d)[b] = db;
    }
}

/* Block b of a row as signed weights q_w (two vectors of 16, elements 0..31). */
INLINE void load_wq(int dt, const void *row, int b, int8x16_t *w0, int8x16_t *w1, float *dw) {
    if (dt == FLM_Q8_0) {
        const block_q8_0 *blk = (const block_q8_0 *)row + b;
        *w0 = vld1q_s8(blk->qs);
        *w1 = vld1q_s8(blk->qs + 16);
        *dw = half_to_float(blk->d);
    } else {
        const block_q4_0 *blk = (const block_q4_0 *)row + b;
        uint8x16_t v = vld1q_u8(blk->qs);
        int8x16_t eight = vdupq_n_s8(8);
        *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), eight);
        *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
        *dw = half_to_float(blk->d);
    }
}

/* Exact integer dot of 32 signed bytes, in 4 int32 lanes. */
INLINE int32x4_t dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}

INLINE void qtile(int dt, int RB, int TB, const void *W, const int8_t *xq, const float *dx, float *Y, int cols, int ldy, int r, int t) {
    int nb = cols / QK;
    size_t rb = row_bytes(dt, cols);
    const char *rows[MAX_RB];
    float32x4_t acc[MAX_RB][QB_TOK];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        int8x16_t w0[MAX_RB], w1[MAX_RB];
        float dw[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) load_wq(dt, rows[i], b, &w0[i], &w1[i], &dw[i]);
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            size_t xb = (size_t)(t + j) * (size_t)nb + (size_t)b;
            int8x16_t x0 = vld1q_s8(xq + xb * QK), x1 = vld1q_s8(xq + xb * QK + 16);
            float d = dx[xb];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++)
                acc[i][j] = vfmaq_f32(acc[i][j], vcvtq_f32_s32(dot32(w0[i], w1[i], x0, x1)), vdupq_n_f32(dw[i] * d));
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = vaddvq_f32(acc[i][j]);
}

static void prep(int dt, const float *X, int n_tok, int cols, void *buf) {
    (void)dt;
    int8_t *xq;
    float *dx;
    quantize_x(X, n_tok, cols, &xq, &dx, buf);
}

static void run(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const int8_t *xq = Xp;
    const float *dx = (const float *)(const void *)(xq + (size_t)n_tok * (size_t)cols);
    int r = r0;
    if (n_tok == 1)
        for (; r + 4 <= r1; r += 4) qtile(dt, 4, 1, W, xq, dx, Y, cols, ldy, r, 0);
    for (; r + 2 <= r1; r += 2) {
        int t = 0;
        for (; t + QB_TOK <= n_tok; t += QB_TOK) qtile(dt, 2, QB_TOK, W, xq, dx, Y, cols, ldy, r, t);
        for (; t < n_tok; t++) qtile(dt, 2, 1, W, xq, dx, Y, cols, ldy, r, t);
    }
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) qtile(dt, 1, 1, W, xq, dx, Y, cols, ldy, r, t);
}

/* One call: X prepared in this thread's scratch, then run. */
static void qmatmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    void *buf = flm_kernel_scratch(0, prep_bytes(dt, n_tok, cols));
    if (!buf) { matmul_body(dt, W, X, Y, n_tok, cols, ldy, r0, r1); return; } /* out of memory: float path */
    prep(dt, X, n_tok, cols, buf);
    run(dt, W, buf, Y, n_tok, cols, ldy, r0, r1);
}

static void qmatmul_q8_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_body(FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
static void qmatmul_q4_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_body(FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}

static const flm_qact_fns QACT = {qmatmul_q8_0, qmatmul_q4_0, prep_bytes, prep, run, NULL};
const flm_qact_fns *flm_qact_neon(void) { return &QACT; }

/* ---- int8 activations with FEAT_DotProd (SDOT) and FEAT_I8MM (SMMLA) -------------
 * The "neon-dotprod" and "neon-i8mm" variants (kernels_neon.h). X is prepared as above
 * (the reference's q and d, the same buffer layout). Each output is computed exactly
 * as the reference run_ref does it: per block the exact integer sum isum_b (SDOT's or
 * SMMLA's int32 lanes, reduced with integer pairwise adds, which cannot round), then
 * acc = acc + (float)isum_b * (d_w * d_x) in block order, a multiply and an add, each
 * rounded once (no FMA: the library is built with -std=c11, which keeps contraction
 * off). So both variants give the reference's bits, for any tile, row split or token
 * batch, and the tests compare them with memcmp.
 *
 * dotprod: a tile of 4 rows x 1 or 4 tokens; per (block, row, token) two SDOTs give 4
 * int32 partial sums; three ADDPs turn the 4 rows' partials into one vector of 4 block
 * sums (lanes = rows), converted and scaled by [d_w0..d_w3] * d_x with one SCVTF, two
 * FMULs and one FADD per 4 outputs. Rows past r1 in a tail tile repeat the last row
 * (computed, not stored).
 * i8mm: prefill pairs rows and tokens: SMMLA multiplies a 2x8 int8 matrix (two rows'
 * bytes k..k+7) by the transpose of another (two tokens' bytes k..k+7) into a 2x2
 * int32 tile [r0t0 r0t1 r1t0 r1t1]; four SMMLAs cover a block. A tile of 4 rows x 4
 * tokens is 16 SMMLAs per block (the dotprod tile needs 32 SDOTs and 12 ADDPs for the
 * same outputs); decode (one token, nothing to pair) and odd tails use the dotprod
 * tile, which computes the same bits. */

/* Signed weights of block b of a row (two vectors of 16: elements 0..15, 16..31). */
INLINE void load_wq_only(int dt, const char *row, int b, int8x16_t *w0, int8x16_t *w1) {
    if (dt == FLM_Q8_0) {
        const block_q8_0 *blk = (const block_q8_0 *)(const void *)row + b;
        *w0 = vld1q_s8(blk->qs);
        *w1 = vld1q_s8(blk->qs + 16);
    } else {
        const block_q4_0 *blk = (const block_q4_0 *)(const void *)row + b;
        uint8x16_t v = vld1q_u8(blk->qs);
        int8x16_t eight = vdupq_n_s8(8);
        *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), eight);
        *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
    }
}

/* The fp16 scale of block b (the first member of both block types) of four rows, as
 * float (fp16 -> fp32 is exact, the same value as flm_f16_to_f32). */
INLINE float32x4_t scales4(int dt, const char *const *rows, int b) {
    size_t bs = dt == FLM_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    size_t o = (size_t)b * bs;
    uint16_t h[4];
    memcpy(&h[0], rows[0] + o, 2);
    memcpy(&h[1], rows[1] + o, 2);
    memcpy(&h[2], rows[2] + o, 2);
    memcpy(&h[3], rows[3] + o, 2);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

/* Rows r .. r+3 of W (rows past r1 repeat the last one). */
INLINE void rows4(int dt, const void *W, int cols, int r, int r1, const char **rows) {
    size_t rb = row_bytes(dt, cols);
    for (int i = 0; i < 4; i++) rows[i] = (const char *)W + (size_t)(r + i < r1 ? r + i : r1 - 1) * rb;
}

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod") /* FEAT_DotProd exists from Armv8.2 */

/* The exact integer dot of 32 signed bytes, in 4 int32 partial sums. */
INLINE int32x4_t sdot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
}

/* Rows [r, min(r+4, r1)) x tokens [t, t+TB). */
INLINE void dtile(int dt, int TB, const void *W, const int8_t *xq, const float *dx, float *Y, int cols, int ldy, int r, int r1, int t) {
    int nb = cols / QK;
    const char *rows[4];
    rows4(dt, W, cols, r, r1, rows);
    float32x4_t acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < TB; j++) acc[j] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        int8x16_t w0[4], w1[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) load_wq_only(dt, rows[i], b, &w0[i], &w1[i]);
        float32x4_t dw = scales4(dt, rows, b);
#pragma GCC unroll 4
        for (int j = 0; j < TB; j++) {
            size_t xb = (size_t)(t + j) * (size_t)nb + (size_t)b;
            int8x16_t x0 = vld1q_s8(xq + xb * QK), x1 = vld1q_s8(xq + xb * QK + 16);
            int32x4_t s01 = vpaddq_s32(sdot32(w0[0], w1[0], x0, x1), sdot32(w0[1], w1[1], x0, x1));
            int32x4_t s23 = vpaddq_s32(sdot32(w0[2], w1[2], x0, x1), sdot32(w0[3], w1[3], x0, x1));
            float32x4_t sc = vmulq_n_f32(dw, dx[xb]);
            acc[j] = vaddq_f32(acc[j], vmulq_f32(vcvtq_f32_s32(vpaddq_s32(s01, s23)), sc));
        }
    }
    int n = r1 - r < 4 ? r1 - r : 4;
#pragma GCC unroll 4
    for (int j = 0; j < TB; j++) {
        float *y = Y + (size_t)(t + j) * (size_t)ldy + (size_t)r;
        if (n == 4) vst1q_f32(y, acc[j]);
        else {
            float tmp[4];
            vst1q_f32(tmp, acc[j]);
            memcpy(y, tmp, (size_t)n * sizeof(float));
        }
    }
}

/* Rows [r0, r1) x tokens [t0, n_tok) with dotprod tiles. */
INLINE void run_dot_part(int dt, const void *W, const int8_t *xq, const float *dx, float *Y, int n_tok, int cols, int ldy, int r0,
                         int r1, int t0) {
    for (int r = r0; r < r1; r += 4) {
        int t = t0;
        for (; t + 4 <= n_tok; t += 4) dtile(dt, 4, W, xq, dx, Y, cols, ldy, r, r1, t);
        for (; t < n_tok; t++) dtile(dt, 1, W, xq, dx, Y, cols, ldy, r, r1, t);
    }
}

static void run_dot(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const int8_t *xq = Xp;
    const float *dx = (const float *)(const void *)(xq + (size_t)n_tok * (size_t)cols);
    run_dot_part(dt, W, xq, dx, Y, n_tok, cols, ldy, r0, r1, 0);
}

#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")

INLINE int8x16_t zip1_64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
INLINE int8x16_t zip2_64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* Rows [r, r+4) x tokens [t, t+2*TP) (all inside the product): row pairs (r, r+1),
 * (r+2, r+3) times token pairs, each a 2x2 SMMLA tile. */
INLINE void mtile(int dt, int TP, const void *W, const int8_t *xq, const float *dx, float *Y, int cols, int ldy, int r, int t) {
    int nb = cols / QK;
    const char *rows[4];
    rows4(dt, W, cols, r, r + 4, rows);
    float32x4_t acc[2][2];
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++)
#pragma GCC unroll 2
        for (int q = 0; q < TP; q++) acc[p][q] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        int8x16_t a[2][4];
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            int8x16_t u0, u1, v0, v1;
            load_wq_only(dt, rows[2 * p], b, &u0, &u1);
            load_wq_only(dt, rows[2 * p + 1], b, &v0, &v1);
            a[p][0] = zip1_64(u0, v0);
            a[p][1] = zip2_64(u0, v0);
            a[p][2] = zip1_64(u1, v1);
            a[p][3] = zip2_64(u1, v1);
        }
        float32x4_t dw = scales4(dt, rows, b);
        float32x4_t dwp[2] = {vzip1q_f32(dw, dw), vzip2q_f32(dw, dw)}; /* [d0 d0 d1 d1], [d2 d2 d3 d3] */
#pragma GCC unroll 2
        for (int q = 0; q < TP; q++) {
            size_t xb0 = (size_t)(t + 2 * q) * (size_t)nb + (size_t)b, xb1 = xb0 + (size_t)nb;
            int8x16_t x0a = vld1q_s8(xq + xb0 * QK), x0b = vld1q_s8(xq + xb0 * QK + 16);
            int8x16_t x1a = vld1q_s8(xq + xb1 * QK), x1b = vld1q_s8(xq + xb1 * QK + 16);
            int8x16_t bq0 = zip1_64(x0a, x1a), bq1 = zip2_64(x0a, x1a), bq2 = zip1_64(x0b, x1b), bq3 = zip2_64(x0b, x1b);
            float32x2_t d2 = vset_lane_f32(dx[xb1], vdup_n_f32(dx[xb0]), 1);
            float32x4_t dxv = vcombine_f32(d2, d2); /* [dx0 dx1 dx0 dx1] */
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), a[p][0], bq0);
                s = vmmlaq_s32(s, a[p][1], bq1);
                s = vmmlaq_s32(s, a[p][2], bq2);
                s = vmmlaq_s32(s, a[p][3], bq3);
                acc[p][q] = vaddq_f32(acc[p][q], vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(dwp[p], dxv)));
            }
        }
    }
    /* acc[p][q] = [r0t0 r0t1 r1t0 r1t1] with r0 = r + 2p, t0 = t + 2q */
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++)
#pragma GCC unroll 2
        for (int q = 0; q < TP; q++) {
            float *y00 = Y + (size_t)(t + 2 * q) * (size_t)ldy + (size_t)(r + 2 * p);
            float *y10 = y00 + ldy; /* token t0 + 1 */
            vst1q_lane_f32(y00, acc[p][q], 0);
            vst1q_lane_f32(y10, acc[p][q], 1);
            vst1q_lane_f32(y00 + 1, acc[p][q], 2);
            vst1q_lane_f32(y10 + 1, acc[p][q], 3);
        }
}

static void run_mm(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const int8_t *xq = Xp;
    const float *dx = (const float *)(const void *)(xq + (size_t)n_tok * (size_t)cols);
    int r = r0;
    if (n_tok >= 2) {
        int te = n_tok & ~1; /* tokens [0, te) in pairs */
        for (; r + 4 <= r1; r += 4) {
            int t = 0;
            for (; t + 4 <= te; t += 4) mtile(dt, 2, W, xq, dx, Y, cols, ldy, r, t);
            for (; t < te; t += 2) mtile(dt, 1, W, xq, dx, Y, cols, ldy, r, t);
            if (te < n_tok) run_dot_part(dt, W, xq, dx, Y, n_tok, cols, ldy, r, r + 4, te);
        }
    }
    run_dot_part(dt, W, xq, dx, Y, n_tok, cols, ldy, r, r1, 0);
}

#pragma GCC pop_options

/* One call: X prepared in this thread's scratch, then the variant's run. */
INLINE void qmatmul_with(void (*runf)(int, const void *, const void *, float *, int, int, int, int, int), int dt, const void *W,
                         const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    void *buf = flm_kernel_scratch(0, prep_bytes(dt, n_tok, cols));
    if (!buf) { matmul_body(dt, W, X, Y, n_tok, cols, ldy, r0, r1); return; } /* out of memory: float path */
    prep(dt, X, n_tok, cols, buf);
    runf(dt, W, buf, Y, n_tok, cols, ldy, r0, r1);
}

static void qmatmul_q8_0_dot(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_with(run_dot, FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
static void qmatmul_q4_0_dot(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_with(run_dot, FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
static void qmatmul_q8_0_mm(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_with(run_mm, FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
static void qmatmul_q4_0_mm(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_with(run_mm, FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}

static const flm_qact_fns QACT_DOT = {qmatmul_q8_0_dot, qmatmul_q4_0_dot, prep_bytes, prep, run_dot, NULL};
static const flm_qact_fns QACT_MM = {qmatmul_q8_0_mm, qmatmul_q4_0_mm, prep_bytes, prep, run_mm, NULL};

/* What the kernel reports (getauxval: Linux's view of ID_AA64ISAR0/1). */
static bool hwcap_dotprod(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
static bool hwcap_i8mm(void) { return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0; }

const flm_qact_fns *flm_qact_neon_dotprod(void) { return hwcap_dotprod() ? &QACT_DOT : NULL; }
const flm_qact_fns *flm_qact_neon_i8mm(void) { return hwcap_dotprod() && hwcap_i8mm() ? &QACT_MM : NULL; }

/* ---- vector ops --------------------------------------------------------------- */

/* Sum of squares in vector lanes, then the reference's scalar formula; the
 * elementwise part is the reference's exact operation order. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + L);
        a0 = vfmaq_f32(a0, v0, v0);
        a1 = vfmaq_f32(a1, v1, v1);
    }
    for (; i < n; i += L) {
        float32x4_t v = load_x_tail(x + i, (size_t)(n - i));
        a0 = vfmaq_f32(a0, v, v);
    }
    float ss = vaddvq_f32(vaddq_f32(a0, a1));
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    float32x4_t vs = vdupq_n_f32(scale);
    for (i = 0; i + L <= n; i += L) vst1q_f32(out + i, vmulq_f32(vld1q_f32(w + i), vmulq_f32(vld1q_f32(x + i), vs)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

static float dot(const float *a, const float *b, int n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        a0 = vfmaq_f32(a0, vld1q_f32(a + i), vld1q_f32(b + i));
        a1 = vfmaq_f32(a1, vld1q_f32(a + i + L), vld1q_f32(b + i + L));
    }
    for (; i < n; i += L) a0 = vfmaq_f32(a0, load_x_tail(a + i, (size_t)(n - i)), load_x_tail(b + i, (size_t)(n - i)));
    return vaddvq_f32(vaddq_f32(a0, a1));
}

/* y += a*x with a separate multiply and add: bit-identical to the reference. */
static void axpy(float *y, float a, const float *x, int n) {
    float32x4_t va = vdupq_n_f32(a);
    int i = 0;
    for (; i + L <= n; i += L) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_f32(va, vld1q_f32(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* silu(g)*u with libm expf (bit-identical to the reference); the divide and the
 * multiply are vectorised (IEEE-exact, so still identical). out may alias gate. */
static void swiglu(float *out, const float *gate, const float *up, int n) {
    float e[L];
    int i = 0;
    for (; i + L <= n; i += L) {
        for (int j = 0; j < L; j++) e[j] = expf(-gate[i + j]);
        float32x4_t g = vld1q_f32(gate + i);
        float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), vld1q_f32(e)));
        vst1q_f32(out + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* Attention of nq heads sharing one KV head (see kernels.h), the structure of the
 * AVX-512 version: positions in blocks of FLM_ATT_BLOCK (flm_attend_blocked), so a
 * block of K (then V) is read from memory once and from L1 by every head of the
 * group; scores 4 keys at a time
 * (pairwise adds), softmax with a vector exp, then out_h = sum_p s_hp V_p, 8
 * vectors of out at a time in registers. Blocks and score tiles start at multiples
 * of 4 whatever nq is, so each head's result is the same for any nq. Head sizes
 * that are not a multiple of 32 use the composed definition. */
#define ATT_OV 8 /* output vectors held in registers per pass */

/* scale * q.K_p for p in [p0, p1) into sc[p]; p0 is a multiple of 4. */
static void att_scores(const float *q, const float *Kc, size_t stride, int hd, int p0, int p1, float scale, float *sc) {
    int nv = hd / L, p = p0;
    for (; p + 4 <= p1; p += 4) {
        const float *k0 = Kc + (size_t)p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int v = 0; v < nv; v++) {
            float32x4_t qv = vld1q_f32(q + v * L);
            a0 = vfmaq_f32(a0, qv, vld1q_f32(k0 + v * L));
            a1 = vfmaq_f32(a1, qv, vld1q_f32(k1 + v * L));
            a2 = vfmaq_f32(a2, qv, vld1q_f32(k2 + v * L));
            a3 = vfmaq_f32(a3, qv, vld1q_f32(k3 + v * L));
        }
        float32x4_t h = vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
        vst1q_f32(sc + p, vmulq_n_f32(h, scale));
    }
    for (; p < p1; p++) {
        const float *kp = Kc + (size_t)p * stride;
        float32x4_t a = vdupq_n_f32(0.0f);
        for (int v = 0; v < nv; v++) a = vfmaq_f32(a, vld1q_f32(q + v * L), vld1q_f32(kp + v * L));
        sc[p] = vaddvq_f32(a) * scale;
    }
}

/* out += sum_{p in [p0, p1)} sc[p] V_p, in order of p; hd is a multiple of ATT_OV vectors. */
static void att_values(const float *sc, const float *Vc, size_t stride, int hd, int p0, int p1, float *out) {
    for (int v0 = 0; v0 < hd / L; v0 += ATT_OV) {
        float32x4_t o[ATT_OV];
        for (int v = 0; v < ATT_OV; v++) o[v] = vld1q_f32(out + (v0 + v) * L);
        for (int p = p0; p < p1; p++) {
            const float *vp = Vc + (size_t)p * stride + (size_t)v0 * L;
            float s = sc[p];
            for (int v = 0; v < ATT_OV; v++) o[v] = vfmaq_n_f32(o[v], vld1q_f32(vp + v * L), s);
        }
        for (int v = 0; v < ATT_OV; v++) vst1q_f32(out + (v0 + v) * L, o[v]);
    }
}

/* exp(x) for x <= 0: 2^n * poly(r), x = n ln2 + r, |r| <= ln2/2, a degree-6 Taylor
 * polynomial (error below 2e-7 relative); x is clamped at -87 (exp ~ 1.6e-38, so
 * 2^n stays a normal number). */
static float32x4_t exp_le0(float32x4_t x) {
    x = vmaxq_f32(x, vdupq_n_f32(-87.0f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* Softmax in place as flm_softmax, with the vector exp and a vector sum. */
static void softmax_vec(float *x, int n) {
    float mx = -INFINITY;
    int i = 0;
    if (n >= L) {
        float32x4_t vm = vld1q_f32(x);
        for (i = L; i + L <= n; i += L) vm = vmaxq_f32(vm, vld1q_f32(x + i));
        mx = vmaxvq_f32(vm);
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float32x4_t vmx = vdupq_n_f32(mx), sum = vdupq_n_f32(0.0f);
    float tail = 0.0f;
    for (i = 0; i + L <= n; i += L) {
        float32x4_t e = exp_le0(vsubq_f32(vld1q_f32(x + i), vmx));
        vst1q_f32(x + i, e);
        sum = vaddq_f32(sum, e);
    }
    for (; i < n; i++) {
        float e = vgetq_lane_f32(exp_le0(vdupq_n_f32(x[i] - mx)), 0);
        x[i] = e;
        tail += e;
    }
    float inv = 1.0f / (vaddvq_f32(sum) + tail);
    for (i = 0; i < n; i++) x[i] *= inv;
}

static const flm_attend_ops ATT_OPS = {att_scores, softmax_vec, att_values};

static void attend(const float *q, int nq, const float *Kc, const float *Vc, int len, size_t stride, int hd, float scale,
                   float *scores, float *out) {
    if (hd % (ATT_OV * L)) flm_attend_composed(dot, axpy, q, nq, Kc, Vc, len, stride, hd, scale, scores, out);
    else flm_attend_blocked(&ATT_OPS, q, nq, Kc, Vc, len, stride, hd, scale, scores, out);
}

/* rope (see kernels.h): 4 pairs per step, scalar tail; mul, mul, sub/add as the reference. */
static void rope(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)hd;
        int i = 0;
        for (; i + L <= half; i += L) {
            float32x4_t c = vld1q_f32(cs + i), s = vld1q_f32(sn + i);
            float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + i + half);
            vst1q_f32(x + i, vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s)));
            vst1q_f32(x + i + half, vaddq_f32(vmulq_f32(x1, c), vmulq_f32(x0, s)));
        }
        for (; i < half; i++) {
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * cs[i] - x1 * sn[i];
            x[i + half] = x1 * cs[i] + x0 * sn[i];
        }
    }
}

/* lora_row (see kernels.h): 4 columns at a time, the rank's FMA chain (vfmaq_f32 is
 * fused) in a register per lane; every lane does exactly the reference's steps. */
static void lora_row(const float *restrict u, const float *restrict Vw, int r, int64_t cols, float scale, float *restrict acc,
                     float *restrict W) {
    (void)acc;
    const float32x4_t vs = vdupq_n_f32(scale);
    int64_t c0 = 0;
    for (; c0 + L <= cols; c0 += L) {
        float32x4_t s = vdupq_n_f32(0.0f);
        for (int k = 0; k < r; k++) s = vfmaq_f32(s, vdupq_n_f32(u[k]), vld1q_f32(Vw + (size_t)k * (size_t)cols + (size_t)c0));
        vst1q_f32(W + c0, vaddq_f32(vld1q_f32(W + c0), vmulq_f32(s, vs)));
    }
    for (int64_t c = c0; c < cols; c++) {
        float s = 0.0f;
        for (int k = 0; k < r; k++) s = fmaf(u[k], Vw[(size_t)k * (size_t)cols + (size_t)c], s);
        const float d = s * scale;
        W[c] = W[c] + d;
    }
}

/* stream_read (see kernels.h): 128 bytes per step into eight q-register accumulators. */
static uint64_t stream_read(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64x2_t a0 = vdupq_n_u64(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t off = 0; off < n; off += 128) {
        const uint64_t *w = (const uint64_t *)(const void *)(b + off);
        a0 = vaddq_u64(a0, vld1q_u64(w + 0));
        a1 = vaddq_u64(a1, vld1q_u64(w + 2));
        a2 = vaddq_u64(a2, vld1q_u64(w + 4));
        a3 = vaddq_u64(a3, vld1q_u64(w + 6));
        a4 = vaddq_u64(a4, vld1q_u64(w + 8));
        a5 = vaddq_u64(a5, vld1q_u64(w + 10));
        a6 = vaddq_u64(a6, vld1q_u64(w + 12));
        a7 = vaddq_u64(a7, vld1q_u64(w + 14));
    }
    uint64x2_t x = veorq_u64(veorq_u64(veorq_u64(a0, a1), veorq_u64(a2, a3)), veorq_u64(veorq_u64(a4, a5), veorq_u64(a6, a7)));
    return vgetq_lane_u64(x, 0) ^ vgetq_lane_u64(x, 1);
}

static const flm_kernels NEON = {
    .name = "neon",
    .matmul = {[FLM_F32] = matmul_f32, [FLM_F16] = matmul_f16, [FLM_BF16] = matmul_bf16,
               [FLM_Q8_0] = matmul_q8_0, [FLM_Q4_0] = matmul_q4_0},
    .rmsnorm = rmsnorm,
    .dot = dot,
    .axpy = axpy,
    .swiglu = swiglu,
    .attend = attend,
    .rope = rope,
    .lora_row = lora_row,
    .stream_read = stream_read,
};

const flm_kernels *flm_kernels_neon(void) { return &NEON; }
