/* kernels_avx512.c — the "avx512" kernel table (AVX-512 F/BW/VL/DQ + FMA + F16C).
 * Activations stay float32 for every weight type: weights are widened to float
 * (f16 by vcvtph2ps, bf16 by a 16-bit shift, q8_0/q4_0 as d*q, which is exact in
 * float) and multiplied into per-(row, token) accumulators with FMA.
 *
 * Determinism: every (row, token) output has its own single accumulator that sees
 * the same sequence of operations whatever the tile shape, so a row's result does not
 * depend on its neighbours, on n_tok, or on how [r0, r1) is split across threads.
 * Results differ from kernels_ref.c only by summation order (and FMA rounding).
 * Only called after cpu.c has confirmed the CPU and OS support AVX-512. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"
#include "kernels_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define L 16          /* float lanes per vector */
#define V (QK / L)    /* vectors per 32-element chunk */
#define MAX_RB 8
#define MAX_TB 4
#define PF_BYTES 768 /* decode prefetch distance ahead of each row stream */

/* Bytes of one row of `cols` weights of type dt. */
INLINE size_t row_bytes(int dt, int cols) {
    switch (dt) {
    case FLM_F32: return (size_t)cols * 4;
    case FLM_F16: case FLM_BF16: return (size_t)cols * 2;
    case FLM_Q8_0: return (size_t)(cols / QK) * sizeof(block_q8_0);
    default: return (size_t)(cols / QK) * sizeof(block_q4_0);
    }
}

/* Prefetch on chunks where (ch & mask) == 0: chunk bytes 128/64/64/34/18. */
INLINE int prefetch_mask(int dt) { return dt == FLM_Q8_0 ? 1 : dt == FLM_Q4_0 ? 3 : 0; }

/* The scale of chunk ch (32 weights) of a row: 1 for float types, d for blocks. */
INLINE __m512 chunk_scale(int dt, const void *row, int ch) {
    if (dt == FLM_Q8_0) return _mm512_set1_ps(_cvtsh_ss(((const block_q8_0 *)row)[ch].d));
    if (dt == FLM_Q4_0) return _mm512_set1_ps(_cvtsh_ss(((const block_q4_0 *)row)[ch].d));
    return _mm512_setzero_ps();
}

/* Weights [ch*32 + k*16, +16) of a row as floats (full vector). */
INLINE __m512 load_w(int dt, const void *row, int ch, int k, __m512 d) {
    size_t c = (size_t)ch * QK + (size_t)k * L;
    switch (dt) {
    case FLM_F32: return _mm512_loadu_ps((const float *)row + c);
    case FLM_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c)));
    case FLM_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c))), 16));
    case FLM_Q8_0: {
        const block_q8_0 *b = (const block_q8_0 *)row + ch;
        __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + k * L)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(q), d);
    }
    default: {
        const block_q4_0 *b = (const block_q4_0 *)row + ch;
        __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->qs));
        q = k == 0 ? _mm512_and_si512(q, _mm512_set1_epi32(0x0F)) : _mm512_srli_epi32(q, 4);
        /* d*n - 8d: one rounding of the exact d*(n-8), which fits in float: exact */
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), d, _mm512_mul_ps(d, _mm512_set1_ps(-8.0f)));
    }
    }
}

/* Float-type weights [c, c + popcount(m)) of a row, zero beyond (tails). */
INLINE __m512 load_w_tail(int dt, const void *row, size_t c, __mmask16 m) {
    switch (dt) {
    case FLM_F32: return _mm512_maskz_loadu_ps(m, (const float *)row + c);
    case FLM_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + c));
    default:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + c)), 16));
    }
}

/* Y for rows [r, r+RB) x tokens [t, t+TB): one accumulator per output. */
INLINE void tile(int dt, int RB, int TB, const void *W, const float *X, float *Y, int cols, int ldy, int r, int t) {
    const char *rows[MAX_RB];
    const float *xs[MAX_TB];
    __m512 acc[MAX_RB][MAX_TB];
    size_t rb = row_bytes(dt, cols);
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int j = 0; j < TB; j++) xs[j] = X + (size_t)(t + j) * (size_t)cols;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm512_setzero_ps();
    int nch = cols / QK;
    for (int ch = 0; ch < nch; ch++) {
        __m512 d[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) d[i] = chunk_scale(dt, rows[i], ch);
        /* Decode: short rows (1536 weights) are too short for the hardware
         * prefetcher to ramp up per stream; ask for each row's line ahead, about
         * once per 64 bytes. Past the row end this is the next tile's data. */
        if (TB == 1 && (ch & prefetch_mask(dt)) == 0)
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) _mm_prefetch(rows[i] + (size_t)ch * (rb / (size_t)nch) + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 2
        for (int k = 0; k < V; k++) {
            __m512 w[MAX_RB];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) w[i] = load_w(dt, rows[i], ch, k, d[i]);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) {
                __m512 x = _mm512_loadu_ps(xs[j] + (size_t)ch * QK + (size_t)k * L);
#pragma GCC unroll 8
                for (int i = 0; i < RB; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
            }
        }
    }
    if (dt == FLM_F32 || dt == FLM_F16 || dt == FLM_BF16) {
        for (size_t c = (size_t)nch * QK; c < (size_t)cols; c += L) {
            size_t rem = (size_t)cols - c;
            __mmask16 m = rem >= L ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
            __m512 w[MAX_RB];
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) w[i] = load_w_tail(dt, rows[i], c, m);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) {
                __m512 x = _mm512_maskz_loadu_ps(m, xs[j] + c);
#pragma GCC unroll 8
                for (int i = 0; i < RB; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Decode (one token) streams 8 rows at once; prefill uses 4 rows x 4 tokens so each
 * weight vector loaded is used four times. Leftovers use smaller tiles; all tiles
 * compute each output identically. */
INLINE void matmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int r = r0;
    if (n_tok == 1)
        for (; r + 8 <= r1; r += 8) tile(dt, 8, 1, W, X, Y, cols, ldy, r, 0);
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

INLINE __mmask16 tail_mask(int rem) { return rem >= L ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1); }

/* Sum of squares in vector lanes, then the reference's scalar formula; the
 * elementwise part is the reference's exact operation order. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + L);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += L) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    __m512 scale = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    for (i = 0; i < n; i += L) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), v));
    }
}

static float dot(const float *a, const float *b, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + L), _mm512_loadu_ps(b + i + L), a1);
    }
    for (; i < n; i += L) {
        __mmask16 m = tail_mask(n - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* y += a*x with a separate multiply and add: bit-identical to the reference. */
static void axpy(float *y, float a, const float *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += L) {
        __mmask16 m = tail_mask(n - i);
        __m512 p = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), p));
    }
}

/* silu(g)*u with libm expf (bit-identical to the reference); the divide and the
 * multiply are vectorised (IEEE-exact, so still identical). out may alias gate. */
static void swiglu(float *out, const float *gate, const float *up, int n) {
    float e[L];
    for (int i = 0; i < n; i += L) {
        int cnt = n - i < L ? n - i : L;
        __mmask16 m = tail_mask(cnt);
        for (int j = 0; j < L; j++) e[j] = j < cnt ? expf(-gate[i + j]) : 0.0f;
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_loadu_ps(e)));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

static const flm_kernels AVX512 = {
    .name = "avx512",
    .matmul = {[FLM_F32] = matmul_f32, [FLM_F16] = matmul_f16, [FLM_BF16] = matmul_bf16,
               [FLM_Q8_0] = matmul_q8_0, [FLM_Q4_0] = matmul_q4_0},
    .rmsnorm = rmsnorm,
    .dot = dot,
    .axpy = axpy,
    .swiglu = swiglu,
};

const flm_kernels *flm_kernels_avx512(void) { return &AVX512; }
