/* kernels_avx512.c — the "avx512" kernel table (AVX-512 F/BW/VL/DQ + FMA + F16C),
 * and the int8-activation q8_0/q4_0 matmuls (AVX512_VNNI vpdpbusd).
 *
 * Float activations (all dtypes; q8_0/q4_0 with FLM_QACT=0): weights are widened to
 * float (f16 by vcvtph2ps, bf16 by a 16-bit shift, q8_0/q4_0 as d*q, exact in float)
 * and multiplied into per-(row, token) accumulators with FMA. Decode streams 8 rows
 * with prefetch; prefill (n_tok >= 4) first widens 6 rows into a float panel in a
 * per-thread scratch, then runs a 6-row x 4-token register tile over it, so each
 * weight is converted once per call, not once per 4 tokens.
 *
 * Int8 activations (q8_0/q4_0): each call quantizes X to 32-value blocks (the
 * reference quantizer, kernels_ref.c), laid out per 64-value chunk as 64 int8, 16
 * int32 bias corrections and 16 lane scales; weights become unsigned bytes (q8_0:
 * q ^ 0x80 = q + 128; q4_0: the raw nibble n = q + 8), so one vpdpbusd per chunk,
 * started from the token's correction (-128 or -8 times its lane sums of x), gives
 * exact per-lane integer sums of q_w * q_x; they are scaled by d_w * d_x and
 * accumulated in float. Prefill packs 6 rows of unpacked weights + lane scales into a
 * panel first, as above.
 *
 * Determinism: every (row, token) output has its own single accumulator that sees
 * the same sequence of operations whatever the tile shape or path (direct or panel),
 * so a row's result does not depend on its neighbours, on n_tok, or on how [r0, r1)
 * is split across threads. Results differ from kernels_ref.c only by summation order
 * (and FMA rounding). Only called after cpu.c has confirmed the CPU and OS support
 * AVX-512 (and AVX512_VNNI for the int8 functions). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kernels_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define L 16          /* float lanes per vector */
#define V (QK / L)    /* vectors per 32-element chunk */
#define MAX_RB 8
#define MAX_TB 4 /* = PT */
#define PF_BYTES 768 /* decode prefetch distance ahead of each row stream */
#define PR 6          /* prefill panel rows */
#define PT 4          /* prefill tokens per register tile */

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

/* Rows [r, r+RB) widened to float into P (row stride ps floats, zero padded to a
 * whole vector): exactly the values tile() multiplies. */
INLINE void pack_rows(int dt, int RB, const void *W, int cols, int r, float *P, size_t ps) {
    size_t rb = row_bytes(dt, cols);
    int nch = cols / QK;
    for (int i = 0; i < RB; i++) {
        const char *row = (const char *)W + (size_t)(r + i) * rb;
        float *p = P + (size_t)i * ps;
        for (int ch = 0; ch < nch; ch++) {
            __m512 d = chunk_scale(dt, row, ch);
#pragma GCC unroll 2
            for (int k = 0; k < V; k++) _mm512_store_ps(p + (size_t)ch * QK + (size_t)k * L, load_w(dt, row, ch, k, d));
        }
        if (dt == FLM_F32 || dt == FLM_F16 || dt == FLM_BF16)
            for (size_t c = (size_t)nch * QK; c < (size_t)cols; c += L) {
                size_t rem = (size_t)cols - c;
                __mmask16 m = rem >= L ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
                _mm512_store_ps(p + c, load_w_tail(dt, row, c, m));
            }
    }
}

/* tile() over a float panel: the same per-output sequence of FMAs (whole vectors in
 * order, then the masked tail vector). */
INLINE void tile_panel(int RB, int TB, const float *P, size_t ps, const float *X, float *Y, int cols, int ldy, int r, int t) {
    const float *xs[MAX_TB];
    __m512 acc[MAX_RB][MAX_TB];
#pragma GCC unroll 8
    for (int j = 0; j < TB; j++) xs[j] = X + (size_t)(t + j) * (size_t)cols;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm512_setzero_ps();
    size_t nv = (size_t)cols / L;
    for (size_t v = 0; v < nv; v++) {
        __m512 w[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) w[i] = _mm512_load_ps(P + (size_t)i * ps + v * L);
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            __m512 x = _mm512_loadu_ps(xs[j] + v * L);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
    if ((size_t)cols > nv * L) {
        __mmask16 m = (__mmask16)((1u << ((size_t)cols - nv * L)) - 1);
        __m512 w[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) w[i] = _mm512_load_ps(P + (size_t)i * ps + nv * L);
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            __m512 x = _mm512_maskz_loadu_ps(m, xs[j] + nv * L);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Tokens [0, n_tok) against the RB rows packed in P. */
INLINE void panel_tokens(int RB, const float *P, size_t ps, const float *X, float *Y, int n_tok, int cols, int ldy, int r) {
    int t = 0;
    for (; t + PT <= n_tok; t += PT) tile_panel(RB, PT, P, ps, X, Y, cols, ldy, r, t);
    for (; t < n_tok; t++) tile_panel(RB, 1, P, ps, X, Y, cols, ldy, r, t);
}

/* Decode (one token) streams 8 rows at once. Prefill widens PR rows at a time into a
 * float panel and runs PR x PT tiles over it; small batches (or no scratch memory)
 * use direct 4 x 4 tiles. All tiles compute each output identically. */
INLINE void matmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int r = r0;
    if (n_tok == 1)
        for (; r + 8 <= r1; r += 8) tile(dt, 8, 1, W, X, Y, cols, ldy, r, 0);
    size_t ps = ((size_t)cols + L - 1) / L * L;
    float *P = n_tok >= PT ? flm_kernel_scratch(1, PR * ps * sizeof(float)) : NULL;
    if (P) {
        for (; r + PR <= r1; r += PR) {
            pack_rows(dt, PR, W, cols, r, P, ps);
            panel_tokens(PR, P, ps, X, Y, n_tok, cols, ldy, r);
        }
        for (; r < r1; r++) {
            pack_rows(dt, 1, W, cols, r, P, ps);
            panel_tokens(1, P, ps, X, Y, n_tok, cols, ldy, r);
        }
        return;
    }
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

/* ---- int8 activations (AVX512_VNNI) ---------------------------------------- */

#define VNNI __attribute__((target("avx512vnni")))
#define QC 64 /* values per chunk: two 32-blocks, one zmm of bytes */
#ifndef QDEC_R
#define QDEC_R 8 /* decode rows streamed side by side (int8 path) */
#endif

/* One chunk of a quantized token: x bytes in the weights' lane order, the dpbusd
 * start value (-bias * sum of each lane's 4 bytes) and each lane's scale d_x. */
typedef struct {
    int8_t q[QC];
    int32_t init[L];
    float dx[L];
} xchunk;

/* One chunk of a weight row, unpacked: unsigned bytes and each lane's scale d_w. */
typedef struct {
    uint8_t w[QC];
    float dw[L];
} wchunk;

/* Byte layout of a chunk (blocks b0, b1): q8_0 [b0 0..31 | b1 0..31], dpbusd lanes
 * 0-7 from b0, 8-15 from b1; q4_0 [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31] (low
 * nibbles, then high nibbles), lanes 0-3 and 8-11 from b0, 4-7 and 12-15 from b1.
 * Lane l's block: */
INLINE int lane_block(int dt, int l) { return dt == FLM_Q8_0 ? l >> 3 : (l >> 2) & 1; }

/* Quantizes n_tok tokens of X (cols % 32 == 0) into nc chunks each, exactly as
 * flm_quantize_act_ref does. */
VNNI static void quantize_x(int dt, const float *X, int n_tok, int cols, xchunk *out) {
    int nb = cols / QK, nc = (nb + 1) / 2;
    __m512i bias = _mm512_set1_epi8(dt == FLM_Q8_0 ? (char)0x80 : 8);
    for (int t = 0; t < n_tok; t++) {
        const float *x = X + (size_t)t * (size_t)cols;
        xchunk *xc = out + (size_t)t * (size_t)nc;
        for (int c = 0; c < nc; c++) {
            float d[2] = {0.0f, 0.0f};
            memset(xc[c].q, 0, QC);
            for (int h = 0; h < 2 && 2 * c + h < nb; h++) {
                const float *xb = x + (size_t)(2 * c + h) * QK;
                __m512 a0 = _mm512_loadu_ps(xb), a1 = _mm512_loadu_ps(xb + L);
                float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a0), _mm512_abs_ps(a1)));
                float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
                __m512 vid = _mm512_set1_ps(id);
                __m128i q0 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a0, vid)));
                __m128i q1 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a1, vid)));
                if (dt == FLM_Q8_0) {
                    _mm_storeu_si128((__m128i *)(xc[c].q + h * 32), q0);
                    _mm_storeu_si128((__m128i *)(xc[c].q + h * 32 + 16), q1);
                } else {
                    _mm_storeu_si128((__m128i *)(xc[c].q + h * 16), q0);
                    _mm_storeu_si128((__m128i *)(xc[c].q + 32 + h * 16), q1);
                }
                d[h] = db;
            }
            for (int l = 0; l < L; l++) xc[c].dx[l] = d[lane_block(dt, l)];
            __m512i q = _mm512_loadu_si512(xc[c].q);
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, q);
            _mm512_storeu_si512(xc[c].init, _mm512_sub_epi32(_mm512_setzero_si512(), s));
        }
    }
}

/* Chunk c of a q8_0/q4_0 row (nb blocks) as unsigned bytes and lane scales (a
 * missing second block reads as zero weights with scale 0). */
INLINE VNNI void load_wq(int dt, const void *row, int nb, int c, __m512i *w, __m512 *dw) {
    int has1 = 2 * c + 1 < nb;
    uint32_t dd;
    if (dt == FLM_Q8_0) {
        const block_q8_0 *b0 = (const block_q8_0 *)row + 2 * c;
        __m256i hi = has1 ? _mm256_loadu_si256((const __m256i *)b0[1].qs) : _mm256_setzero_si256();
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b0[0].qs)), hi, 1);
        *w = _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
        dd = (uint32_t)b0[0].d | (has1 ? (uint32_t)b0[1].d << 16 : 0u);
    } else {
        const block_q4_0 *b0 = (const block_q4_0 *)row + 2 * c;
        __m128i hi = has1 ? _mm_loadu_si128((const __m128i *)b0[1].qs) : _mm_setzero_si128();
        __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b0[0].qs)), hi, 1);
        __m512i q = _mm512_broadcast_i64x4(y);
        q = _mm512_mask_srli_epi16(q, (__mmask32)0xFFFF0000u, q, 4);
        *w = _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
        dd = (uint32_t)b0[0].d | (has1 ? (uint32_t)b0[1].d << 16 : 0u);
    }
    __m512 d2 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)));
    __m512i idx = dt == FLM_Q8_0 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                                 : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
    *dw = _mm512_permutexvar_ps(idx, d2);
}

/* acc += float(init + w.x per lane) * (d_w * d_x): one chunk of one output. */
INLINE VNNI __m512 qstep(__m512 acc, __m512i w, __m512 dw, __m512i x, __m512i init, __m512 dx) {
    __m512i s = _mm512_dpbusd_epi32(init, w, x);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc);
}

/* Rows [r, r+RB) x tokens [t, t+TB), weights read from W (decode, small batches). */
INLINE VNNI void qtile(int dt, int RB, int TB, const void *W, const xchunk *XQ, float *Y, int cols, int ldy, int r, int t) {
    int nb = cols / QK, nc = (nb + 1) / 2;
    size_t rb = row_bytes(dt, cols);
    const char *rows[MAX_RB];
    __m512 acc[MAX_RB][MAX_TB];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm512_setzero_ps();
    size_t cb = 2 * (dt == FLM_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0));
    for (int c = 0; c < nc; c++) {
        __m512i w[MAX_RB];
        __m512 dw[MAX_RB];
        if (TB == 1 && (dt == FLM_Q8_0 || (c & 1) == 0))
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) _mm_prefetch(rows[i] + (size_t)c * cb + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) load_wq(dt, rows[i], nb, c, &w[i], &dw[i]);
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            const xchunk *xc = XQ + (size_t)(t + j) * (size_t)nc + c;
            __m512i x = _mm512_load_si512(xc->q), init = _mm512_load_si512(xc->init);
            __m512 dx = _mm512_load_ps(xc->dx);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) acc[i][j] = qstep(acc[i][j], w[i], dw[i], x, init, dx);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Rows [r, r+RB) unpacked into P (nc chunks per row). */
INLINE VNNI void qpack(int dt, int RB, const void *W, int cols, int r, wchunk *P) {
    int nb = cols / QK, nc = (nb + 1) / 2;
    size_t rb = row_bytes(dt, cols);
    for (int i = 0; i < RB; i++) {
        const char *row = (const char *)W + (size_t)(r + i) * rb;
        for (int c = 0; c < nc; c++) {
            __m512i w;
            __m512 dw;
            load_wq(dt, row, nb, c, &w, &dw);
            _mm512_store_si512(P[(size_t)i * (size_t)nc + (size_t)c].w, w);
            _mm512_store_ps(P[(size_t)i * (size_t)nc + (size_t)c].dw, dw);
        }
    }
}

/* qtile() over a panel of unpacked rows. */
INLINE VNNI void qtile_panel(int RB, int TB, const wchunk *P, int nc, const xchunk *XQ, float *Y, int ldy, int r, int t) {
    __m512 acc[MAX_RB][MAX_TB];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm512_setzero_ps();
    for (int c = 0; c < nc; c++) {
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            const xchunk *xc = XQ + (size_t)(t + j) * (size_t)nc + c;
            __m512i x = _mm512_load_si512(xc->q), init = _mm512_load_si512(xc->init);
            __m512 dx = _mm512_load_ps(xc->dx);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) {
                const wchunk *p = P + (size_t)i * (size_t)nc + (size_t)c;
                acc[i][j] = qstep(acc[i][j], _mm512_load_si512(p->w), _mm512_load_ps(p->dw), x, init, dx);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = _mm512_reduce_add_ps(acc[i][j]);
}

INLINE VNNI void qpanel_tokens(int RB, const wchunk *P, int nc, const xchunk *XQ, float *Y, int n_tok, int ldy, int r) {
    int t = 0;
    for (; t + PT <= n_tok; t += PT) qtile_panel(RB, PT, P, nc, XQ, Y, ldy, r, t);
    for (; t < n_tok; t++) qtile_panel(RB, 1, P, nc, XQ, Y, ldy, r, t);
}

INLINE VNNI void qmatmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int nc = (cols / QK + 1) / 2;
    xchunk *XQ = flm_kernel_scratch(0, (size_t)n_tok * (size_t)nc * sizeof(xchunk));
    if (!XQ) { matmul_body(dt, W, X, Y, n_tok, cols, ldy, r0, r1); return; } /* out of memory: float path */
    quantize_x(dt, X, n_tok, cols, XQ);
    int r = r0;
    wchunk *P = n_tok >= PT ? flm_kernel_scratch(1, PR * (size_t)nc * sizeof(wchunk)) : NULL;
    if (P) {
        for (; r + PR <= r1; r += PR) {
            qpack(dt, PR, W, cols, r, P);
            qpanel_tokens(PR, P, nc, XQ, Y, n_tok, ldy, r);
        }
        for (; r < r1; r++) {
            qpack(dt, 1, W, cols, r, P);
            qpanel_tokens(1, P, nc, XQ, Y, n_tok, ldy, r);
        }
        return;
    }
    for (; r + QDEC_R <= r1; r += QDEC_R)
        for (int t = 0; t < n_tok; t++) qtile(dt, QDEC_R, 1, W, XQ, Y, cols, ldy, r, t);
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) qtile(dt, 1, 1, W, XQ, Y, cols, ldy, r, t);
}

VNNI static void qmatmul_q8_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_body(FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
VNNI static void qmatmul_q4_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_body(FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}

static const flm_qact_fns QACT = {qmatmul_q8_0, qmatmul_q4_0};
const flm_qact_fns *flm_qact_avx512vnni(void) { return &QACT; }

/* ---- vector ops --------------------------------------------------------------- */

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
