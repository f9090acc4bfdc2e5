/* kernels_avx2.c — the "avx2" kernel table (AVX2 + FMA + F16C).
 * Activations stay float32 for every weight type: weights are widened to float
 * (f16 by vcvtph2ps, bf16 by a 16-bit shift, q8_0/q4_0 as d*q, which is exact in
 * float) and multiplied into per-(row, token) accumulators with FMA.
 *
 * Determinism: every (row, token) output has its own single accumulator that sees
 * the same sequence of operations whatever the tile shape, so a row's result does not
 * depend on its neighbours, on n_tok, or on how [r0, r1) is split across threads.
 * Results differ from kernels_ref.c only by summation order (and FMA rounding).
 * Only called after cpu.c has confirmed the CPU and OS support AVX2/FMA/F16C. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kernels_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define L 8           /* float lanes per vector */
#define V (QK / L)    /* vectors per 32-element chunk */
#define MAX_RB 4
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

static const flm_kernels AVX2 = {
    .name = "avx2",
    .matmul = {[FLM_F32] = matmul_f32, [FLM_F16] = matmul_f16, [FLM_BF16] = matmul_bf16,
               [FLM_Q8_0] = matmul_q8_0, [FLM_Q4_0] = matmul_q4_0},
    .rmsnorm = rmsnorm,
    .dot = dot,
    .axpy = axpy,
    .swiglu = swiglu,
};

const flm_kernels *flm_kernels_avx2(void) { return &AVX2; }
