/* kernels_avx2.c — the "avx2" kernel table (AVX2 + FMA + F16C), and int8-activation
 * q8_0/q4_0 matmuls (vpmaddubsw + vpmaddwd; also used by AVX-512 CPUs without VNNI).
 * Float activations (all dtypes; q8_0/q4_0 with FLM_QACT=0): weights are widened to float
 * (f16 by vcvtph2ps, bf16 by a 16-bit shift, q8_0/q4_0 as d*q, which is exact in
 * float) and multiplied into per-(row, token) accumulators with FMA.
 *
 * Determinism: every (row, token) output has its own single accumulator that sees
 * the same sequence of operations whatever the tile shape, so a row's result does not
 * depend on its neighbours, on n_tok, or on how [r0, r1) is split across threads.
 * Results differ from kernels_ref.c only by summation order (and FMA rounding).
 * Int8 activations: X is quantized per call to 32-value blocks exactly as the
 * reference does (kernels_ref.c); per block and (row, token) the exact integer sum
 * of q_w * q_x comes from vpmaddubsw (unsigned x signed bytes, pair sums in int16)
 * and vpmaddwd (into 8 int32 lanes): q8_0 multiplies |q_w| by q_x with q_w's sign
 * (|products| <= 128 * 127, so pair sums never saturate); q4_0 multiplies the raw
 * nibble n = q_w + 8 by q_x and subtracts the token's 8 * (lane sums of q_x). The
 * lanes are converted to float and accumulated with FMA, scaled by d_w * d_x.
 *
 * Also the LoRA merge row and the bandwidth probe's load loop with ymm registers.
 *
 * Only called after cpu.c has confirmed the CPU and OS support AVX2/FMA/F16C; calls
 * only drivers.c (attention drivers, scratch). */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/drivers.h"
#include "kernels/kernels.h"
#include "kernels/kernels_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define L 8           /* float lanes per vector */
#define V (QK / L)    /* vectors per 32-element chunk */
#define MAX_RB 4
#define QB_TOK 4 /* int8 path: tokens per prefill tile */
#define MAX_TB 4
#define PF_BYTES 768 /* decode prefetch distance ahead of each row stream */

INLINE size_t row_bytes(int dt, int cols) {
    switch (dt) {
    case FLM_F32: return (size_t)cols * 4;
    case FLM_F16: case FLM_BF16: return (size_t)cols * 2;
    case FLM_Q8_0: return (size_t)(cols / QK) * sizeof(block_q8_0);
    default: return (size_t)(cols / QK) * sizeof(block_q4_0);
    }
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Prefetch on chunks where (ch & mask) == 0: chunk bytes 128/64/64/34/18. */
INLINE int prefetch_mask(int dt) { return dt == FLM_Q8_0 ? 1 : dt == FLM_Q4_0 ? 3 : 0; }

/* The scale of chunk ch (32 weights) of a row: unused for float types, d for blocks. */
INLINE __m256 chunk_scale(int dt, const void *row, int ch) {
    if (dt == FLM_Q8_0) return _mm256_set1_ps(_cvtsh_ss(((const block_q8_0 *)row)[ch].d));
    if (dt == FLM_Q4_0) return _mm256_set1_ps(_cvtsh_ss(((const block_q4_0 *)row)[ch].d));
    return _mm256_setzero_ps();
}

/* Weights [ch*32 + k*8, +8) of a row as floats. */
INLINE __m256 load_w(int dt, const void *row, int ch, int k, __m256 d) {
    size_t c = (size_t)ch * QK + (size_t)k * L;
    switch (dt) {
    case FLM_F32: return _mm256_loadu_ps((const float *)row + c);
    case FLM_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + c)));
    case FLM_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + c))), 16));
    case FLM_Q8_0: {
        const block_q8_0 *b = (const block_q8_0 *)row + ch;
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + k * L)));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
    }
    default: {
        const block_q4_0 *b = (const block_q4_0 *)row + ch;
        __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + (k & 1) * L)));
        q = k < 2 ? _mm256_and_si256(q, _mm256_set1_epi32(0x0F)) : _mm256_srli_epi32(q, 4);
        /* d*n - 8d: one rounding of the exact d*(n-8), which fits in float: exact */
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), d, _mm256_mul_ps(d, _mm256_set1_ps(-8.0f)));
    }
    }
}

INLINE __m256i lane_mask(size_t rem) {
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - (rem < 8 ? rem : 8)));
}

/* Float-type weights [c, c + min(rem, 8)) of a row, zero beyond (tails). */
INLINE __m256 load_w_tail(int dt, const void *row, size_t c, size_t rem) {
    if (dt == FLM_F32) return _mm256_maskload_ps((const float *)row + c, lane_mask(rem));
    uint16_t buf[L] = {0};
    memcpy(buf, (const uint16_t *)row + c, (rem < L ? rem : L) * sizeof(uint16_t));
    __m128i h = _mm_loadu_si128((const __m128i *)buf);
    if (dt == FLM_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Y for rows [r, r+RB) x tokens [t, t+TB): one accumulator per output. */
INLINE void tile(int dt, int RB, int TB, const void *W, const float *X, float *Y, int cols, int ldy, int r, int t) {
    const char *rows[MAX_RB];
    const float *xs[MAX_TB];
    __m256 acc[MAX_RB][MAX_TB];
    size_t rb = row_bytes(dt, cols);
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int j = 0; j < TB; j++) xs[j] = X + (size_t)(t + j) * (size_t)cols;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm256_setzero_ps();
    int nch = cols / QK;
    for (int ch = 0; ch < nch; ch++) {
        __m256 d[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) d[i] = chunk_scale(dt, rows[i], ch);
        /* Decode: short rows (1536 weights) are too short for the hardware
         * prefetcher to ramp up per stream; ask for each row's line ahead, about
         * once per 64 bytes. Past the row end this is the next tile's data. */
        if (TB == 1 && (ch & prefetch_mask(dt)) == 0)
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) _mm_prefetch(rows[i] + (size_t)ch * (rb / (size_t)nch) + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int k = 0; k < V; k++) {
            __m256 w[MAX_RB];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) w[i] = load_w(dt, rows[i], ch, k, d[i]);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) {
                __m256 x = _mm256_loadu_ps(xs[j] + (size_t)ch * QK + (size_t)k * L);
#pragma GCC unroll 8
                for (int i = 0; i < RB; i++) acc[i][j] = _mm256_fmadd_ps(w[i], x, acc[i][j]);
            }
        }
    }
    if (dt == FLM_F32 || dt == FLM_F16 || dt == FLM_BF16) {
        for (size_t c = (size_t)nch * QK; c < (size_t)cols; c += L) {
            size_t rem = (size_t)cols - c;
            __m256 w[MAX_RB];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) w[i] = load_w_tail(dt, rows[i], c, rem);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) {
                __m256 x = _mm256_maskload_ps(xs[j] + c, lane_mask(rem));
#pragma GCC unroll 8
                for (int i = 0; i < RB; i++) acc[i][j] = _mm256_fmadd_ps(w[i], x, acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = hsum(acc[i][j]);
}

/* Decode (one token) streams 4 rows at once; prefill uses 2 rows x 4 tokens so each
 * weight vector loaded is used four times (16 ymm registers allow no more). All
 * tiles compute each output identically. */
INLINE void matmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int r = r0;
    if (n_tok == 1)
        for (; r + 4 <= r1; r += 4) tile(dt, 4, 1, W, X, Y, cols, ldy, r, 0);
    for (; r + 2 <= r1; r += 2) {
        int t = 0;
        for (; t + 4 <= n_tok; t += 4) tile(dt, 2, 4, W, X, Y, cols, ldy, r, t);
        for (; t < n_tok; t++) tile(dt, 2, 1, W, X, Y, cols, ldy, r, t);
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

/* The quantized tokens: q [n_tok][cols] int8, corr [n_tok][nb][8] int32 (8 times
 * the lane sums of q, for q4_0's offset), d [n_tok][nb]. */
typedef struct {
    int8_t *q;
    int32_t *corr;
    float *d;
} xquant;

INLINE int32_t *align32(char *p) { return (int32_t *)(void *)p; }

/* The prepared X in one buffer: q, then corr, then d (nq is a multiple of 32). */
static size_t prep_bytes(int dt, int n_tok, int cols) {
    (void)dt;
    size_t nq = (size_t)n_tok * (size_t)cols, nb = nq / QK;
    return nq + nb * 8 * sizeof(int32_t) + nb * sizeof(float);
}

static xquant xquant_at(const void *buf, int n_tok, int cols) {
    size_t nq = (size_t)n_tok * (size_t)cols, nb = nq / QK;
    char *b = (char *)(uintptr_t)buf;
    xquant xq = {(int8_t *)b, align32(b + nq), (float *)(void *)(b + nq + nb * 8 * sizeof(int32_t))};
    return xq;
}

/* flm_quantize_act_ref, vectorised: the same operations, so the same q and d; corr
 * gets bias times the lane sums of q (bias 8 or 128; negated when neg: the VNNI kernels
 * start vpdpbusd from it). */
static void quantize_x_corr(const float *X, int n_tok, int cols, const xquant *xq, int bias, bool neg) {
    const __m256i vbias = _mm256_set1_epi8((char)(uint8_t)bias); /* an unsigned byte operand of vpmaddubsw */
    size_t nq = (size_t)n_tok * (size_t)cols, nb = nq / QK;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b = 0; b < nb; b++) {
        const float *x = X + b * QK;
        __m256 a[4];
        for (int k = 0; k < 4; k++) a[k] = _mm256_loadu_ps(x + k * L);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a[0]), _mm256_andnot_ps(sign, a[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, a[2]), _mm256_andnot_ps(sign, a[3])));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i[4];
        for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(a[k], vid));
        __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        q = _mm256_permutevar8x32_epi32(q, perm);
        _mm256_storeu_si256((__m256i *)(xq->q + b * QK), q);
        __m256i c = _mm256_madd_epi16(_mm256_maddubs_epi16(vbias, q), _mm256_set1_epi16(1));
        if (neg) c = _mm256_sub_epi32(_mm256_setzero_si256(), c);
        _mm256_storeu_si256((__m256i *)(xq->corr + b * 8), c);
        xq->d[b] = db;
    }
}

static void quantize_x(const float *X, int n_tok, int cols, const xquant *xq) { quantize_x_corr(X, n_tok, cols, xq, 8, false); }

/* Block b of a row: q8_0 bytes q_w (signed) or q4_0 nibbles n (unsigned, in order
 * 0..31), and d_w broadcast. */
INLINE void load_wq(int dt, const void *row, int b, __m256i *w, __m256 *dw) {
    if (dt == FLM_Q8_0) {
        const block_q8_0 *blk = (const block_q8_0 *)row + b;
        *w = _mm256_loadu_si256((const __m256i *)blk->qs);
        *dw = _mm256_set1_ps(_cvtsh_ss(blk->d));
    } else {
        const block_q4_0 *blk = (const block_q4_0 *)row + b;
        __m128i v = _mm_loadu_si128((const __m128i *)blk->qs), m = _mm_set1_epi8(0x0F);
        *w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
        *dw = _mm256_set1_ps(_cvtsh_ss(blk->d));
    }
}

/* Rows [r, r+RB) x tokens [t, t+TB): one accumulator per output, blocks in order. */
INLINE void qtile(int dt, int RB, int TB, const void *W, const xquant *xq, float *Y, int cols, int ldy, int r, int t) {
    int nb = cols / QK;
    size_t rb = row_bytes(dt, cols);
    const char *rows[MAX_RB];
    __m256 acc[MAX_RB][QB_TOK];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm256_setzero_ps();
    size_t bb = dt == FLM_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (int b = 0; b < nb; b++) {
        __m256i w[MAX_RB], aw[MAX_RB];
        __m256 dw[MAX_RB];
        if (TB == 1 && (b & prefetch_mask(dt)) == 0)
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) _mm_prefetch(rows[i] + (size_t)b * bb + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            load_wq(dt, rows[i], b, &w[i], &dw[i]);
            aw[i] = dt == FLM_Q8_0 ? _mm256_sign_epi8(w[i], w[i]) : w[i];
        }
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            size_t xb = (size_t)(t + j) * (size_t)nb + (size_t)b;
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq->q + xb * QK));
            __m256 dx = _mm256_broadcast_ss(xq->d + xb);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) {
                __m256i p;
                if (dt == FLM_Q8_0) {
                    p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[i], _mm256_sign_epi8(x, w[i])), ones);
                } else {
                    p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[i], x), ones);
                    p = _mm256_sub_epi32(p, _mm256_loadu_si256((const __m256i *)(xq->corr + xb * 8)));
                }
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = hsum(acc[i][j]);
}

static void prep(int dt, const float *X, int n_tok, int cols, void *buf) {
    (void)dt;
    xquant xq = xquant_at(buf, n_tok, cols);
    quantize_x(X, n_tok, cols, &xq);
}

static void run(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    xquant xq = xquant_at(Xp, n_tok, cols);
    int r = r0;
    if (n_tok == 1)
        for (; r + 4 <= r1; r += 4) qtile(dt, 4, 1, W, &xq, Y, cols, ldy, r, 0);
    for (; r + 2 <= r1; r += 2) {
        int t = 0;
        for (; t + QB_TOK <= n_tok; t += QB_TOK) qtile(dt, 2, QB_TOK, W, &xq, Y, cols, ldy, r, t);
        for (; t < n_tok; t++) qtile(dt, 2, 1, W, &xq, Y, cols, ldy, r, t);
    }
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) qtile(dt, 1, 1, W, &xq, Y, cols, ldy, r, t);
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
const flm_qact_fns *flm_qact_avx2(void) { return &QACT; }

/* The same products with 256-bit vpdpbusd, once per encoding: AVX-VNNI (VEX; Alder
 * Lake and later, Zen 5) and AVX512_VNNI + AVX512_VL (EVEX; Zen 4, Cascade Lake, Ice
 * Lake and later). Bit-identical to the kernels above (kernels_vnni256.h). */
#define VNNI256_TARGET __attribute__((target("avxvnni")))
#define VNNI256_DPBUSD _mm256_dpbusd_avx_epi32
#define VNNI256(name) name##_avxvnni
#include "kernels/kernels_vnni256.h"
const flm_qact_fns *flm_qact_avxvnni(void) { return &VNNI256(QACT); }
#undef VNNI256_TARGET
#undef VNNI256_DPBUSD
#undef VNNI256

#define VNNI256_TARGET __attribute__((target("avx512f,avx512vl,avx512vnni")))
#define VNNI256_DPBUSD _mm256_dpbusd_epi32
#define VNNI256(name) name##_avx512vl
#include "kernels/kernels_vnni256.h"
const flm_qact_fns *flm_qact_avx512vnni256(void) { return &VNNI256(QACT); }

/* ---- vector ops --------------------------------------------------------------- */

/* Sum of squares in vector lanes, then the reference's scalar formula; the
 * elementwise part is the reference's exact operation order. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + L);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += L) {
        __m256 v = _mm256_maskload_ps(x + i, lane_mask((size_t)(n - i)));
        a0 = _mm256_fmadd_ps(v, v, a0);
    }
    float ss = hsum(_mm256_add_ps(a0, a1));
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + L <= n; i += L)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vs)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

static float dot(const float *a, const float *b, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + L), _mm256_loadu_ps(b + i + L), a1);
    }
    for (; i < n; i += L) {
        __m256i m = lane_mask((size_t)(n - i));
        a0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), a0);
    }
    return hsum(_mm256_add_ps(a0, a1));
}

/* y += a*x with a separate multiply and add: bit-identical to the reference. */
static void axpy(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + L <= n; i += L)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* silu(g)*u with libm expf (bit-identical to the reference); the divide and the
 * multiply are vectorised (IEEE-exact, so still identical). out may alias gate. */
static void swiglu(float *out, const float *gate, const float *up, int n) {
    float e[L];
    int i = 0;
    for (; i + L <= n; i += L) {
        for (int j = 0; j < L; j++) e[j] = expf(-gate[i + j]);
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_loadu_ps(e)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* Attention of nq heads sharing one KV head (see kernels.h), the structure of the
 * AVX-512 and NEON versions: positions in blocks of FLM_ATT_BLOCK (flm_attend_blocked),
 * so a block of K (then V) is read from memory once and from L1 by every head of the
 * group; scores 4 keys at
 * a time (one horizontal add for the four), softmax with a vector exp, then
 * out_h = sum_p s_hp V_p, ATT_OV vectors of out at a time in registers. Blocks and
 * score tiles start at multiples of 4 whatever nq is, so each head's result is the
 * same for any nq. Head sizes that are not a multiple of 64 use the composed
 * definition. */
#define ATT_OV 8 /* output vectors held in registers per pass */

/* scale * q.K_p for p in [p0, p1) into sc[p]; p0 is a multiple of 4. */
static void att_scores(const float *q, const float *Kc, size_t stride, int hd, int p0, int p1, float scale, float *sc) {
    int nv = hd / L, p = p0;
    for (; p + 4 <= p1; p += 4) {
        const float *k0 = Kc + (size_t)p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int v = 0; v < nv; v++) {
            __m256 qv = _mm256_loadu_ps(q + v * L);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + v * L), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + v * L), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + v * L), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + v * L), a3);
        }
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(sc + p, _mm_mul_ps(r, _mm_set1_ps(scale)));
    }
    for (; p < p1; p++) {
        const float *kp = Kc + (size_t)p * stride;
        __m256 a = _mm256_setzero_ps();
        for (int v = 0; v < nv; v++) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + v * L), _mm256_loadu_ps(kp + v * L), a);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        r = _mm_hadd_ps(r, r);
        sc[p] = _mm_cvtss_f32(_mm_hadd_ps(r, r)) * scale;
    }
}

/* out += sum_{p in [p0, p1)} sc[p] V_p, in order of p; hd is a multiple of ATT_OV vectors. */
static void att_values(const float *sc, const float *Vc, size_t stride, int hd, int p0, int p1, float *out) {
    for (int v0 = 0; v0 < hd / L; v0 += ATT_OV) {
        __m256 o[ATT_OV];
        for (int v = 0; v < ATT_OV; v++) o[v] = _mm256_loadu_ps(out + (v0 + v) * L);
        for (int p = p0; p < p1; p++) {
            const float *vp = Vc + (size_t)p * stride + (size_t)v0 * L;
            __m256 s = _mm256_set1_ps(sc[p]);
            for (int v = 0; v < ATT_OV; v++) o[v] = _mm256_fmadd_ps(s, _mm256_loadu_ps(vp + v * L), o[v]);
        }
        for (int v = 0; v < ATT_OV; v++) _mm256_storeu_ps(out + (v0 + v) * L, o[v]);
    }
}

/* exp(x) for x <= 0: 2^n * poly(r), x = n ln2 + r, |r| <= ln2/2, a degree-6 Taylor
 * polynomial (error below 2e-7 relative); x is clamped at -87 so 2^n stays normal. */
static __m256 exp_le0(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Softmax in place as flm_softmax, with the vector exp and a vector sum. */
static void softmax_vec(float *x, int n) {
    float mx = -INFINITY;
    int i = 0;
    if (n >= L) {
        __m256 vm = _mm256_loadu_ps(x);
        for (i = L; i + L <= n; i += L) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        float t[L];
        _mm256_storeu_ps(t, vm);
        for (int j = 0; j < L; j++) mx = t[j] > mx ? t[j] : mx;
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    __m256 vmx = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    float tail = 0.0f;
    for (i = 0; i + L <= n; i += L) {
        __m256 e = exp_le0(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    for (; i < n; i++) {
        float e = _mm256_cvtss_f32(exp_le0(_mm256_set1_ps(x[i] - mx)));
        x[i] = e;
        tail += e;
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    s4 = _mm_hadd_ps(s4, s4);
    float inv = 1.0f / (_mm_cvtss_f32(_mm_hadd_ps(s4, s4)) + tail);
    for (i = 0; i < n; i++) x[i] *= inv;
}

static const flm_attend_ops ATT_OPS = {att_scores, softmax_vec, att_values};

static void attend(const float *q, int nq, const float *Kc, const float *Vc, int len, size_t stride, int hd, float scale,
                   float *scores, float *out) {
    if (hd % (ATT_OV * L)) flm_attend_composed(dot, axpy, q, nq, Kc, Vc, len, stride, hd, scale, scores, out);
    else flm_attend_blocked(&ATT_OPS, q, nq, Kc, Vc, len, stride, hd, scale, scores, out);
}

/* rope (see kernels.h): 8 pairs per step, scalar tail; mul, mul, sub/add as the reference. */
static void rope(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)hd;
        int i = 0;
        for (; i + L <= half; i += L) {
            __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + half);
            _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s)));
            _mm256_storeu_ps(x + i + half, _mm256_add_ps(_mm256_mul_ps(x1, c), _mm256_mul_ps(x0, s)));
        }
        for (; i < half; i++) {
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * cs[i] - x1 * sn[i];
            x[i + half] = x1 * cs[i] + x0 * sn[i];
        }
    }
}

/* lora_row (see kernels.h): 8 columns at a time, the rank's FMA chain in a register
 * per lane; every lane does exactly the reference's steps, so the bits are the same. */
static void lora_row(const float *restrict u, const float *restrict Vw, int r, int64_t cols, float scale, float *restrict acc,
                     float *restrict W) {
    (void)acc;
    const __m256 vs = _mm256_set1_ps(scale);
    int64_t c0 = 0;
    for (; c0 + L <= cols; c0 += L) {
        __m256 s = _mm256_setzero_ps();
        for (int k = 0; k < r; k++) s = _mm256_fmadd_ps(_mm256_set1_ps(u[k]), _mm256_loadu_ps(Vw + (size_t)k * (size_t)cols + (size_t)c0), s);
        _mm256_storeu_ps(W + c0, _mm256_add_ps(_mm256_loadu_ps(W + c0), _mm256_mul_ps(s, vs)));
    }
    for (int64_t c = c0; c < cols; c++) {
        float s = 0.0f;
        for (int k = 0; k < r; k++) s = fmaf(u[k], Vw[(size_t)k * (size_t)cols + (size_t)c], s);
        const float d = s * scale;
        W[c] = W[c] + d;
    }
}

/* stream_read (see kernels.h): 256 bytes per step into eight ymm accumulators. */
static uint64_t stream_read(const void *p, size_t n) {
    const unsigned char *b = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t off = 0; off < n; off += 256) {
        const __m256i *v = (const __m256i *)(const void *)(b + off);
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

static const flm_kernels AVX2 = {
    .name = "avx2",
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

const flm_kernels *flm_kernels_avx2(void) { return &AVX2; }
