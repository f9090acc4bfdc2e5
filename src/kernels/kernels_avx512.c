/* kernels_avx512.c — the "avx512" kernel table (AVX-512 F/BW/VL/DQ + FMA + F16C),
 * and the int8-activation q8_0/q4_0 matmuls (AVX512_VNNI vpdpbusd).
 *
 * Float activations (all dtypes; q8_0/q4_0 with FLM_QACT=0): weights are widened to
 * float (f16 by vcvtph2ps, bf16 by a 16-bit shift, q8_0/q4_0 as d*q, exact in float)
 * and multiplied into per-(row, token) accumulators with FMA. Decode streams 8 rows
 * with prefetch; prefill (n_tok >= 4) first widens 6 rows into a float panel in a
 * per-thread scratch, then runs a 6-row x 4-token register tile over it, so each
 * weight is converted once per call, not once per 4 tokens (blocked by row
 * superblocks, 64-token blocks and column blocks: see matmul_panels).
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
 * (and FMA rounding). Also the LoRA merge row and the bandwidth probe's load loop
 * with zmm registers. Only called after cpu.c has confirmed the CPU and OS support
 * AVX-512 (and AVX512_VNNI for the int8 functions); calls only drivers.c. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/drivers.h"
#include "kernels/kernels.h"
#include "kernels/kernels_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define L 16          /* float lanes per vector */
#define V (QK / L)    /* vectors per 32-element chunk */
#define MAX_RB 8
#define MAX_TB 4 /* = PT */
#ifndef PF_BYTES
#define PF_BYTES 768
#endif
/* PF_BYTES: decode prefetch distance ahead of each row stream, at least (768: no better
 * at 2048 or 4096 in a sweep on the reference VM) */
#ifndef PF_TILE_MAX
#define PF_TILE_MAX (32 << 10) /* prefetch one tile ahead when a tile is at most this */
#endif

/* Int8 decode prefetch distance for a tile of RB rows of rb bytes. A tile reads its rows
 * side by side, so memory is consumed tile by tile: ask for the same place in the
 * next tile when that is near (short rows: Qwen's 1536 weights are too short for the
 * hardware prefetcher to ramp up per stream), else PF_BYTES ahead in the row. */
INLINE size_t pf_distance(int RB, size_t rb) {
    size_t t = (size_t)RB * rb;
    return t <= PF_TILE_MAX && t > PF_BYTES ? t : PF_BYTES;
}
#define PR 6          /* prefill panel rows */
#ifndef PACK_PF
#define PACK_PF 4096 /* pack_rows prefetch distance, bytes */
#endif
#define PT 4          /* prefill tokens per register tile */

/* The first rem lanes (all 16 when rem >= 16). */
INLINE __mmask16 tail_mask(int rem) { return rem >= L ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1); }

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
    size_t pf = pf_distance(RB, rb);
    for (int ch = 0; ch < nch; ch++) {
        __m512 d[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) d[i] = chunk_scale(dt, rows[i], ch);
        /* Decode: each row's line one tile ahead when tiles are short, else PF_BYTES
         * ahead, about once per 64 bytes (pf_distance, as the int8 path does: f16
         * 8960 x 1536, one thread, 8.4-10.0 -> 10.4-14.7 GB/s on a Xeon with AVX-512). */
        if (TB == 1 && (ch & prefetch_mask(dt)) == 0)
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) _mm_prefetch(rows[i] + (size_t)ch * (rb / (size_t)nch) + pf, _MM_HINT_T0);
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
            __mmask16 m = tail_mask((int)((size_t)cols - c));
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

/* Vectors [v0, v1) of rows [r, r+rs) widened to float into P (row stride ps floats;
 * P's vector 0 is the rows' vector v0): exactly the values tile() multiplies. Vectors
 * at or past the row's whole 32-value chunks are the float types' tail (masked, zero
 * beyond cols). v0 is even (a chunk boundary). */
INLINE void pack_cols(int dt, const void *W, int cols, int r, int rs, size_t v0, size_t v1, float *P, size_t ps) {
    size_t rb = row_bytes(dt, cols), nch = (size_t)cols / QK, cb = nch ? rb / nch : 0;
    for (int i = 0; i < rs; i++) {
        const char *row = (const char *)W + (size_t)(r + i) * rb;
        float *p = P + (size_t)i * ps;
        size_t v = v0;
        for (; v < v1 && v < nch * V; v += V) {
            size_t ch = v / V;
            __m512 d = chunk_scale(dt, row, (int)ch);
            /* a few KB ahead in the row: the stream is read once */
            if ((ch & (size_t)prefetch_mask(dt)) == 0) _mm_prefetch(row + ch * cb + PACK_PF, _MM_HINT_T0);
#pragma GCC unroll 2
            for (int k = 0; k < V; k++) _mm512_store_ps(p + (v - v0 + (size_t)k) * L, load_w(dt, row, (int)ch, k, d));
        }
        for (; v < v1; v++) { /* float types only: cols % 32 */
            size_t c = v * L;
            _mm512_store_ps(p + (v - v0) * L, load_w_tail(dt, row, c, tail_mask((int)((size_t)cols - c))));
        }
    }
}

/* tile() over a float panel, vectors [v0, v1) of a column block: the same per-output
 * sequence of FMAs (whole vectors in order, then the masked tail vector in the last
 * block). Accumulators start at zero (v0 == 0) or from A, the per-(token, row) vectors
 * saved by the previous block (exact: a store and reload), and end in A, or reduced
 * into Y after the last block. */
INLINE void tile_panel(int RB, int TB, const float *P, size_t ps, size_t pv0, const float *X, float *Y, int cols, int ldy, int r,
                       int t, float *A, int ta, size_t v0, size_t v1, int last) {
    const float *xs[MAX_TB];
    __m512 acc[MAX_RB][MAX_TB];
#pragma GCC unroll 8
    for (int j = 0; j < TB; j++) xs[j] = X + (size_t)(t + j) * (size_t)cols;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++)
            acc[i][j] = v0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(A + ((size_t)(ta + j) * (size_t)RB + (size_t)i) * L);
    for (size_t v = v0; v < v1; v++) {
        __m512 w[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) w[i] = _mm512_load_ps(P + (size_t)i * ps + (v - pv0) * L);
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            __m512 x = _mm512_loadu_ps(xs[j] + v * L);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
    if (!last) {
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) _mm512_store_ps(A + ((size_t)(ta + j) * (size_t)RB + (size_t)i) * L, acc[i][j]);
        return;
    }
    size_t nv = (size_t)cols / L;
    if ((size_t)cols > nv * L) {
        __mmask16 m = tail_mask((int)((size_t)cols - nv * L));
        __m512 w[MAX_RB];
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) w[i] = _mm512_load_ps(P + (size_t)i * ps + (nv - pv0) * L);
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

/* Prefill blocking. Rows go in superblocks, tokens in blocks of PTB, columns in
 * chunks: per (superblock, token block, column chunk) the chunk of the superblock's
 * rows is widened once into P (in L2), then its column blocks of PCB vectors run in
 * order, each over every 6-row panel and 4-token tile, with the accumulators kept in
 * A (superblock rows x PTB vectors) between blocks. So a column block of a panel stays
 * in L1 while the tokens stream past it and the token block of X is read from L2.
 * X comes from L3/memory once per superblock: with 12-row superblocks of whole rows
 * while a token block of X fits in L2 (XBIG); past that (the down projection's
 * 64 x 8960 floats, 2.3 MB) with PSB-row superblocks widened PCC vectors at a time, so
 * four times less often. Each output still sees exactly tile()'s sequence of FMAs. */
#ifndef PCB
#define PCB 32 /* vectors (512 columns) per column block */
#endif
#define PSB_SMALL 12  /* rows per superblock while X fits (24 and 48 measured 1-4 % slower) */
#define XBIG (512u << 10) /* bytes of a token block of X above which the next two apply */
#define PSB 48        /* rows per superblock (a multiple of PR; forward.c's chunk) */
#define PCC 64        /* vectors per widened column chunk (a multiple of PCB): P ~200 KB */
#define PTB 64        /* tokens per token block (a multiple of PT) */

/* Column block [v0, v1) of rows [r, r+rs) (P holds them from vector pv0) x tokens
 * [t0, t0+nt): 6-row panels, then single rows. */
INLINE void panel_block(const float *P, size_t ps, size_t pv0, const float *X, float *Y, int rs, int t0, int nt, int cols, int ldy,
                        int r, float *A, size_t v0, size_t v1, int last) {
    for (int i = 0; i < rs;) {
        const float *Pi = P + (size_t)i * ps;
        float *Ai = A ? A + (size_t)i * PTB * L : NULL;
        int t = t0;
        if (i + PR <= rs) {
            for (; t + PT <= t0 + nt; t += PT) tile_panel(PR, PT, Pi, ps, pv0, X, Y, cols, ldy, r + i, t, Ai, t - t0, v0, v1, last);
            for (; t < t0 + nt; t++) tile_panel(PR, 1, Pi, ps, pv0, X, Y, cols, ldy, r + i, t, Ai, t - t0, v0, v1, last);
            i += PR;
        } else {
            for (; t + PT <= t0 + nt; t += PT) tile_panel(1, PT, Pi, ps, pv0, X, Y, cols, ldy, r + i, t, Ai, t - t0, v0, v1, last);
            for (; t < t0 + nt; t++) tile_panel(1, 1, Pi, ps, pv0, X, Y, cols, ldy, r + i, t, Ai, t - t0, v0, v1, last);
            i += 1;
        }
    }
}

/* Rows [r0, r1) x all tokens through the widened panels; false when the scratch
 * memory is not there (the caller then runs direct tiles). */
INLINE bool matmul_panels(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    size_t nv = (size_t)cols / L, nvt = ((size_t)cols + L - 1) / L;
    int nt0 = n_tok < PTB ? n_tok : PTB;
    bool big = (size_t)nt0 * (size_t)cols * sizeof(float) > XBIG;
    int psb = big ? PSB : PSB_SMALL;
    size_t pcc = big ? PCC : nv + 1; /* a chunk's vectors, plus the tail vector when it ends the row */
    size_t ps = (nvt < pcc + 1 ? nvt : pcc + 1) * L;
    float *P = flm_kernel_scratch(1, (size_t)psb * ps * sizeof(float));
    float *A = nv > PCB ? flm_kernel_scratch(2, (size_t)psb * PTB * L * sizeof(float)) : NULL;
    if (!P || (nv > PCB && !A)) return false;
    for (int r = r0; r < r1; r += psb) {
        int rs = r1 - r < psb ? r1 - r : psb;
        for (int t0 = 0; t0 < n_tok; t0 += PTB) {
            int nt = n_tok - t0 < PTB ? n_tok - t0 : PTB;
            for (size_t c0 = 0; c0 == 0 || c0 < nv; c0 += pcc) {
                size_t c1 = c0 + pcc < nv ? c0 + pcc : nv;
                pack_cols(dt, W, cols, r, rs, c0, c1 == nv ? nvt : c1, P, ps);
                for (size_t v0 = c0; v0 == c0 || v0 < c1; v0 += PCB) {
                    size_t v1 = v0 + PCB < c1 ? v0 + PCB : c1;
                    panel_block(P, ps, c0, X, Y, rs, t0, nt, cols, ldy, r, A, v0, v1, v1 == nv);
                }
            }
        }
    }
    return true;
}

/* Decode (one token) streams 8 rows at once. Prefill runs PR x PT tiles over widened
 * panels (matmul_panels); small batches (or no scratch memory) use direct 4 x 4
 * tiles. All tiles compute each output identically. */
INLINE void matmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int r = r0;
    if (n_tok == 1)
        for (; r + 8 <= r1; r += 8) tile(dt, 8, 1, W, X, Y, cols, ldy, r, 0);
    if (n_tok >= PT && matmul_panels(dt, W, X, Y, n_tok, cols, ldy, r, r1)) return;
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

#define VNNI __attribute__((target("avx512vnni,avx512vbmi")))
#define GB 16        /* blocks per group: one vector of 16 block sums */
#define GV (GB * QK) /* values per group */
#ifndef QDEC_R
#define QDEC_R 4 /* decode rows streamed side by side (int8 path) */
#endif
#define QPR 4 /* prefill panel rows (int8 path) */
#define QPT 4 /* prefill tokens per register tile (int8 path) */

/* A group is 16 blocks, handled as 4 steps of 4 blocks. Step s holds blocks 4s..4s+3
 * as two 64-byte vectors: "lo" = values 0..15 of each block (16 bytes per block, block
 * 4s+k in bytes 16k..16k+15), "hi" = values 16..31 likewise. For q4_0 these are
 * exactly the low and high nibbles of the block's 16 bytes, so a step unpacks with
 * one and, one shift and one and; q8_0 uses the same layout. One vpdpbusd per vector
 * gives, in 32-bit lanes 4k..4k+3, partial sums of block 4s+k; the 4 steps' lanes are
 * then added (a 4x4 transpose-add, exact in int32) into one vector whose lane p holds
 * the whole block GBLK(p) = 4*(p%4) + p/4. Block scales and corrections are kept in
 * that lane order. */
#define GBLK(p) (4 * ((p) & 3) + ((p) >> 2))

/* One group of a quantized token: q in the step layout, per lane the correction
 * bias * (sum of the block's q_x) (bias 8 for q4_0 nibbles, 128 for q8_0 q ^ 0x80)
 * and the block's d_x. Missing blocks past the row end are zero. For the packed
 * weights (quantize_x with g16) q is in that layout's lane order and corr negated. */
typedef struct {
    int8_t q[GV];
    int32_t corr[L];
    float dx[L];
} xgroup;

/* One group of a weight row, unpacked (prefill panel): unsigned bytes in the step
 * layout and the block scales d_w in lane order. */
typedef struct {
    uint8_t w[GV];
    float dw[L];
} wgroup;

INLINE size_t block_bytes(int dt) { return dt == FLM_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0); }

/* One block of 32 activations as flm_quantize_act_ref does it: the quantized values
 * 0..15 in *i0 and 16..31 in *i1 (int32 lanes); returns the scale d. */
INLINE float quantize_block(const float *xb, __m512i *i0, __m512i *i1) {
    __m512 a0 = _mm512_loadu_ps(xb), a1 = _mm512_loadu_ps(xb + L);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a0), _mm512_abs_ps(a1)));
    float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    *i0 = _mm512_cvtps_epi32(_mm512_mul_ps(a0, vid));
    *i1 = _mm512_cvtps_epi32(_mm512_mul_ps(a1, vid));
    return db;
}

/* Quantizes n_tok tokens of X (cols % 32 == 0) into ng groups each, exactly as
 * flm_quantize_act_ref does: q in the step layout and corr = bias * (lane sums of q_x)
 * for the file-layout kernels, or (g16) q in the packed layout's lane order and corr
 * negated (the packed kernels start their vpdpbusd chains from it; "the packed int8
 * layout" below). */
VNNI static void quantize_x(int dt, const float *X, int n_tok, int cols, xgroup *out, bool g16) {
    int nb = cols / QK, ng = (nb + GB - 1) / GB;
    int32_t bias = dt == FLM_Q8_0 ? 128 : 8;
    for (int t = 0; t < n_tok; t++) {
        const float *x = X + (size_t)t * (size_t)cols;
        xgroup *xg = out + (size_t)t * (size_t)ng;
        for (int g = 0; g < ng; g++) {
            int nblk = nb - g * GB < GB ? nb - g * GB : GB;
            if (nblk < GB) memset(&xg[g], 0, sizeof xg[g]);
            for (int b = 0; b < nblk; b++) {
                __m512i i0, i1;
                float db = quantize_block(x + (size_t)(g * GB + b) * QK, &i0, &i1);
                int p = GBLK(b); /* GBLK is its own inverse */
                int32_t corr = bias * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
                if (g16) {
                    _Alignas(32) int8_t q[QK];
                    _mm_store_si128((__m128i *)q, _mm512_cvtepi32_epi8(i0));
                    _mm_store_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(i1));
                    for (int v = 0; v < 8; v++) memcpy(xg[g].q + 64 * v + 4 * p, q + 4 * v, 4);
                    corr = -corr;
                } else {
                    int8_t *q = xg[g].q + (b >> 2) * 128 + (b & 3) * 16;
                    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(i0));
                    _mm_storeu_si128((__m128i *)(q + 64), _mm512_cvtepi32_epi8(i1));
                }
                xg[g].corr[p] = corr;
                xg[g].dx[p] = db;
            }
        }
    }
}

/* Byte indices for vpermt2b/vpermb (built once per call site; constant folded). */
typedef struct {
    __m512i lo, hi; /* step bytes from the two source windows */
    __m512i d;      /* byte 2p+e of lane p <- byte e of the scale of its block in the step */
} step_idx;

/* q4_0 step (4 blocks, 72 bytes at p): windows A = p[0, 64), B = p[8, 72); block k's
 * qs at 18k+2. q8_0 step (136 bytes): lo from A = p[0, 64), B = p[64, 128) (qs at
 * 34k+2), hi from C = p[8, 72), D = p[72, 136) (qs at 34k+18). Scales at 18k / 34k. */
INLINE step_idx make_step_idx(int dt) {
    _Alignas(64) uint8_t lo[64], hi[64], d[64];
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 16; j++) {
            int o;
            if (dt == FLM_Q8_0) {
                lo[16 * k + j] = (uint8_t)(34 * k + 2 + j);
                hi[16 * k + j] = (uint8_t)(34 * k + 18 + j - 8);
            } else {
                o = 18 * k + 2 + j;
                lo[16 * k + j] = (uint8_t)(o < 64 ? o : 64 + o - 8);
                hi[16 * k + j] = 0;
            }
        }
    for (int p = 0; p < L; p++)
        for (int e = 0; e < 2; e++) d[2 * p + e] = (uint8_t)((int)block_bytes(dt) * (p >> 2) + e);
    for (int i = 32; i < 64; i++) d[i] = 0;
    step_idx r = {_mm512_load_si512(lo), _mm512_load_si512(hi), _mm512_load_si512(d)};
    return r;
}

/* Byte mask of the scale words that step s fills: lanes p = s, 4+s, 8+s, 12+s. */
INLINE __mmask64 step_dmask(int s) {
    __mmask64 m = 0;
    for (int k = 0; k < 4; k++) m |= (__mmask64)3 << (2 * (4 * k + s));
    return m;
}

/* Step s of the group starting at blk (16 whole blocks): unsigned weight bytes, and
 * the step's 4 scales merged into their half-float words of dh. */
INLINE VNNI void load_step(int dt, const step_idx *ix, const char *blk, int s, __m512i *lo, __m512i *hi, __m512i *dh) {
    const char *p = blk + (size_t)s * 4 * block_bytes(dt);
    __m512i a = _mm512_loadu_si512(p);
    if (dt == FLM_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        __m512i b = _mm512_loadu_si512(p + 64), c = _mm512_loadu_si512(p + 8), d = _mm512_loadu_si512(p + 72);
        *lo = _mm512_xor_si512(_mm512_permutex2var_epi8(a, ix->lo, b), flip);
        *hi = _mm512_xor_si512(_mm512_permutex2var_epi8(c, ix->hi, d), flip);
        *dh = _mm512_mask_mov_epi8(*dh, step_dmask(s), _mm512_permutex2var_epi8(a, ix->d, b));
    } else {
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        __m512i v = _mm512_permutex2var_epi8(a, ix->lo, _mm512_loadu_si512(p + 8));
        *lo = _mm512_and_si512(v, m4);
        *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        *dh = _mm512_mask_permutexvar_epi8(*dh, step_dmask(s), ix->d, a);
    }
}

/* 64 bytes at p of which only the first avail are read (the rest are zero): masked
 * loads never touch memory past the row, and give exactly tail_group()'s zero padding. */
INLINE __m512i load_avail(const char *p, ptrdiff_t avail) {
    if (avail >= 64) return _mm512_loadu_si512(p);
    if (avail <= 0) return _mm512_setzero_si512();
    return _mm512_maskz_loadu_epi8(((__mmask64)1 << avail) - 1, p);
}

/* load_step for the last, partial group of a row: bytes past blk + avail read as zero. */
INLINE VNNI void load_step_tail(int dt, const step_idx *ix, const char *blk, ptrdiff_t avail, int s, __m512i *lo, __m512i *hi,
                                __m512i *dh) {
    ptrdiff_t o = (ptrdiff_t)s * 4 * (ptrdiff_t)block_bytes(dt);
    const char *p = blk + o;
    avail -= o;
    __m512i a = load_avail(p, avail);
    if (dt == FLM_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        __m512i b = load_avail(p + 64, avail - 64), c = load_avail(p + 8, avail - 8), d = load_avail(p + 72, avail - 72);
        *lo = _mm512_xor_si512(_mm512_permutex2var_epi8(a, ix->lo, b), flip);
        *hi = _mm512_xor_si512(_mm512_permutex2var_epi8(c, ix->hi, d), flip);
        *dh = _mm512_mask_mov_epi8(*dh, step_dmask(s), _mm512_permutex2var_epi8(a, ix->d, b));
    } else {
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        __m512i v = _mm512_permutex2var_epi8(a, ix->lo, load_avail(p + 8, avail - 8));
        *lo = _mm512_and_si512(v, m4);
        *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        *dh = _mm512_mask_permutexvar_epi8(*dh, step_dmask(s), ix->d, a);
    }
}

/* A whole group of weights: 8 unsigned vectors (w[2s], w[2s+1] = step s lo/hi) and
 * the 16 block scales d_w in lane order. */
INLINE VNNI __m512 load_group(int dt, const step_idx *ix, const char *blk, __m512i w[8]) {
    __m512i dh = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) load_step(dt, ix, blk, k, &w[2 * k], &w[2 * k + 1], &dh);
    return _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
}

/* Lane p = exact sum of the 4 steps' lanes of block GBLK(p). */
INLINE __m512i transpose_add(__m512i s0, __m512i s1, __m512i s2, __m512i s3) {
    __m512i u01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s0, s1), _mm512_unpackhi_epi32(s0, s1));
    __m512i u23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s2, s3), _mm512_unpackhi_epi32(s2, s3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
}

/* acc += float(sum_b q_w.q_x) * (d_w * d_x), lanes = blocks: one group of one output.
 * w[2s], w[2s+1] are step s's lo/hi weight vectors. */
INLINE VNNI __m512 group_step(__m512 acc, const __m512i w[8], __m512 dw, const xgroup *xg) {
    __m512i s[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[2 * k], _mm512_load_si512(xg->q + 128 * k));
        s[k] = _mm512_dpbusd_epi32(a, w[2 * k + 1], _mm512_load_si512(xg->q + 128 * k + 64));
    }
    __m512i t = _mm512_sub_epi32(transpose_add(s[0], s[1], s[2], s[3]), _mm512_load_si512(xg->corr));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, _mm512_load_ps(xg->dx)), acc);
}

/* The last, partial group of a row (nblk < 16 blocks) copied and zero padded: zero
 * weights with zero scales, so the result is that of the missing blocks absent. */
INLINE const char *tail_group(int dt, const char *blk, int nblk, char *buf) {
    size_t n = (size_t)nblk * block_bytes(dt);
    memcpy(buf, blk, n);
    memset(buf + n, 0, GB * block_bytes(dt) - n);
    return buf;
}

/* Decode: rows [r, r+RB) against one quantized token, weights read from W. */
INLINE VNNI void qdec(int dt, int RB, const void *W, const xgroup *XG, float *Y, int cols, int r) {
    int nb = cols / QK, nfull = nb / GB, ng = (nb + GB - 1) / GB;
    size_t rb = row_bytes(dt, cols), gb = GB * block_bytes(dt);
    const step_idx ix = make_step_idx(dt);
    const char *rows[MAX_RB];
    __m512 acc[MAX_RB];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) {
        rows[i] = (const char *)W + (size_t)(r + i) * rb;
        acc[i] = _mm512_setzero_ps();
    }
    size_t pf = pf_distance(RB, rb);
    for (int g = 0; g < nfull; g++) {
        /* Each row's lines ahead (past the end: the next rows; see pf_distance). */
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++)
            for (size_t o = 0; o < gb; o += 64) _mm_prefetch(rows[i] + (size_t)g * gb + o + pf, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            __m512i w[8];
            __m512 dw = load_group(dt, &ix, rows[i] + (size_t)g * gb, w);
            acc[i] = group_step(acc[i], w, dw, XG + g);
        }
    }
    if (ng > nfull) { /* the partial last group: masked loads, no copy (a copy stalls store forwarding) */
        ptrdiff_t avail = (ptrdiff_t)((size_t)(nb - nfull * GB) * block_bytes(dt));
        for (int i = 0; i < RB; i++) {
            const char *blk = rows[i] + (size_t)nfull * gb;
            __m512i w[8], dh = _mm512_setzero_si512();
            for (int k = 0; k < 4; k++) load_step_tail(dt, &ix, blk, avail, k, &w[2 * k], &w[2 * k + 1], &dh);
            acc[i] = group_step(acc[i], w, _mm512_cvtph_ps(_mm512_castsi512_si256(dh)), XG + nfull);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) Y[r + i] = _mm512_reduce_add_ps(acc[i]);
}

/* Rows [r, r+RB) unpacked into P (ng groups per row): exactly what qdec multiplies. */
INLINE VNNI void qpack(int dt, int RB, const void *W, int cols, int r, wgroup *P) {
    int nb = cols / QK, nfull = nb / GB, ng = (nb + GB - 1) / GB;
    size_t rb = row_bytes(dt, cols), gb = GB * block_bytes(dt);
    const step_idx ix = make_step_idx(dt);
    _Alignas(64) char buf[GB * sizeof(block_q8_0)];
    for (int i = 0; i < RB; i++) {
        const char *row = (const char *)W + (size_t)(r + i) * rb;
        for (int g = 0; g < ng; g++) {
            const char *blk = g < nfull ? row + (size_t)g * gb : tail_group(dt, row + (size_t)g * gb, nb - g * GB, buf);
            wgroup *p = P + (size_t)i * (size_t)ng + (size_t)g;
            __m512i w[8];
            _mm512_store_ps(p->dw, load_group(dt, &ix, blk, w));
            for (int k = 0; k < 8; k++) _mm512_store_si512(p->w + 64 * k, w[k]);
        }
    }
}

/* Rows [r, r+RB) x tokens [t, t+TB) over a panel: the same per-output sequence as qdec. */
INLINE VNNI void qtile_panel(int RB, int TB, const wgroup *P, int ng, const xgroup *XG, float *Y, int ldy, int r, int t) {
    __m512 acc[QPR][QPT];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            const wgroup *p = P + (size_t)i * (size_t)ng + (size_t)g;
            __m512i w[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) w[k] = _mm512_load_si512(p->w + 64 * k);
            __m512 dw = _mm512_load_ps(p->dw);
#pragma GCC unroll 8
            for (int j = 0; j < TB; j++) acc[i][j] = group_step(acc[i][j], w, dw, XG + (size_t)(t + j) * (size_t)ng + g);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = _mm512_reduce_add_ps(acc[i][j]);
}

INLINE VNNI void qpanel_tokens(int RB, const wgroup *P, int ng, const xgroup *XG, float *Y, int n_tok, int ldy, int r) {
    int t = 0;
    for (; t + QPT <= n_tok; t += QPT) qtile_panel(RB, QPT, P, ng, XG, Y, ldy, r, t);
    for (; t < n_tok; t++) qtile_panel(RB, 1, P, ng, XG, Y, ldy, r, t);
}

/* The prepared X: ng groups per token (xgroup, 64-byte aligned). */
static size_t qprep_bytes(int dt, int n_tok, int cols) {
    (void)dt;
    return (size_t)n_tok * (size_t)((cols / QK + GB - 1) / GB) * sizeof(xgroup);
}

VNNI static void qprep(int dt, const float *X, int n_tok, int cols, void *buf) { quantize_x(dt, X, n_tok, cols, buf, false); }

VNNI static void qrun(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    int ng = (cols / QK + GB - 1) / GB;
    const xgroup *XG = Xp;
    int r = r0;
    wgroup *P = n_tok >= QPT ? flm_kernel_scratch(1, QPR * (size_t)ng * sizeof(wgroup)) : NULL;
    if (P) {
        for (; r + QPR <= r1; r += QPR) {
            qpack(dt, QPR, W, cols, r, P);
            qpanel_tokens(QPR, P, ng, XG, Y, n_tok, ldy, r);
        }
        for (; r < r1; r++) {
            qpack(dt, 1, W, cols, r, P);
            qpanel_tokens(1, P, ng, XG, Y, n_tok, ldy, r);
        }
        return;
    }
    /* Decode and small batches: each token streams the rows. */
    for (int t = 0; t < n_tok; t++) {
        const xgroup *xt = XG + (size_t)t * (size_t)ng;
        float *yt = Y + (size_t)t * (size_t)ldy;
        int rr = r;
        for (; rr + QDEC_R <= r1; rr += QDEC_R) qdec(dt, QDEC_R, W, xt, yt, cols, rr);
        for (; rr < r1; rr++) qdec(dt, 1, W, xt, yt, cols, rr);
    }
}

/* One call: X prepared in this thread's scratch, then qrun. */
INLINE VNNI void qmatmul_body(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    xgroup *XG = flm_kernel_scratch(0, qprep_bytes(dt, n_tok, cols));
    if (!XG) { matmul_body(dt, W, X, Y, n_tok, cols, ldy, r0, r1); return; } /* out of memory: float path */
    quantize_x(dt, X, n_tok, cols, XG, false);
    qrun(dt, W, XG, Y, n_tok, cols, ldy, r0, r1);
}

VNNI static void qmatmul_q8_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_body(FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
VNNI static void qmatmul_q4_0(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    qmatmul_body(FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}

/* ---- the packed int8 layout "avx512-g16" ------------------------------------
 *
 * The file's q8_0/q4_0 bytes need ~50 vector instructions per 16-block group and row
 * to reach vpdpbusd (byte permutes, a q8_0 sign flip, a 4x4 transpose-add). Packed at
 * load, a group is instead read with plain loads: per row, each group of 16 blocks
 * (the row's last group may have fewer, nblk) is written, at the same offset, as
 *   the nblk block scales (fp16), one per active lane in ascending lane order, then
 *   for v = 0 .. NV-1 (q8_0: 8, q4_0: 4) the 4-byte pieces qs[4v .. 4v+3] of the
 *   active lanes' blocks in ascending lane order (q8_0 bytes ^ 0x80: unsigned),
 * where lane p holds block GBLK(p) and is active when GBLK(p) < nblk (all 16 in a
 * full group). So a full group is 32 bytes of scales and NV 64-byte vectors whose
 * 32-bit lane p is 4 bytes of block GBLK(p); a partial group is read with expand
 * loads (vpexpandd) into the same lanes, zero elsewhere. A group keeps its size
 * (nblk * 34 or 18 bytes) and place. The prepared X matches (quantize_x with g16): vector v
 * lane p = the quantized x values 4v .. 4v+3 of block GBLK(p); a q4_0 piece's low
 * nibbles are weights 4v .. 4v+3 and its high nibbles 16+4v .. 16+4v+3, so they meet
 * x vectors v and v+4. Each lane's vpdpbusd chain then sums its whole block exactly,
 * from the negated correction: the same integers, scales and float operations as
 * qdec and the panel path, in the same lanes — bit-identical results. */
#define NV8 8 /* 64-byte weight vectors per q8_0 group */
#define NV4 4 /* per q4_0 group */
_Static_assert(QDEC_R <= MAX_RB && QPR <= MAX_RB, "qtile16 holds at most MAX_RB rows");
#ifndef QTB16
#define QTB16 16 /* prefill: tokens per block (see qrun16) */
#endif

/* Lanes holding one of a group's first nblk blocks. */
INLINE __mmask16 active_lanes(int nblk) {
    __mmask16 m = 0;
    for (int p = 0; p < L; p++)
        if (GBLK(p) < nblk) m |= (__mmask16)(1u << p);
    return m;
}

/* One group of one row at grp (nblk blocks): the 8 unsigned weight vectors matching
 * x vectors 0..7, and the scales d_w by lane. */
INLINE VNNI __m512 load_group16(int dt, const char *grp, int nblk, __m512i w[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (nblk == GB) {
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)grp));
        const char *q = grp + 2 * GB;
        if (dt == FLM_Q8_0) {
#pragma GCC unroll 8
            for (int v = 0; v < NV8; v++) w[v] = _mm512_loadu_si512(q + 64 * v);
        } else {
#pragma GCC unroll 4
            for (int v = 0; v < NV4; v++) {
                __m512i b = _mm512_loadu_si512(q + 64 * v);
                w[v] = _mm512_and_si512(b, m4);
                w[v + 4] = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
            }
        }
        return dw;
    }
    __mmask16 act = active_lanes(nblk);
    __m512 dw = _mm512_maskz_expand_ps(act, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << nblk) - 1), grp)));
    const char *q = grp + 2 * nblk;
    if (dt == FLM_Q8_0) {
        for (int v = 0; v < NV8; v++) w[v] = _mm512_maskz_expandloadu_epi32(act, q + (size_t)(4 * nblk * v));
    } else {
        for (int v = 0; v < NV4; v++) {
            __m512i b = _mm512_maskz_expandloadu_epi32(act, q + (size_t)(4 * nblk * v));
            w[v] = _mm512_and_si512(b, m4);
            w[v + 4] = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
        }
    }
    return dw;
}

/* acc += float(exact block sums - corrections) * (d_w * d_x): group_step's operations. */
INLINE VNNI __m512 group_step16(__m512 acc, const __m512i w[8], __m512 dw, const xgroup *xg) {
    __m512i s0 = _mm512_load_si512(xg->corr), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int v = 0; v < 8; v += 2) {
        s0 = _mm512_dpbusd_epi32(s0, w[v], _mm512_load_si512(xg->q + 64 * v));
        s1 = _mm512_dpbusd_epi32(s1, w[v + 1], _mm512_load_si512(xg->q + 64 * (v + 1)));
    }
    __m512i t = _mm512_add_epi32(s0, s1);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, _mm512_load_ps(xg->dx)), acc);
}

/* Rows [r, r+RB) x tokens [t, t+TB) straight from the packed rows (decode: TB = 1). */
INLINE VNNI void qtile16(int dt, int RB, int TB, const void *W, const xgroup *XG, float *Y, int cols, int ldy, int r, int t) {
    int nb = cols / QK, nfull = nb / GB, ng = (nb + GB - 1) / GB;
    size_t rb = row_bytes(dt, cols), gb = GB * block_bytes(dt);
    const char *rows[MAX_RB];
    __m512 acc[MAX_RB][QPT];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) {
        rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 4
        for (int j = 0; j < TB; j++) acc[i][j] = _mm512_setzero_ps();
    }
    size_t pf = pf_distance(RB, rb);
    for (int g = 0; g < ng; g++) {
        int nblk = g < nfull ? GB : nb - nfull * GB;
        if (TB == 1)
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++)
                for (size_t o = 0; o < gb; o += 64) _mm_prefetch(rows[i] + (size_t)g * gb + o + pf, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            __m512i w[8];
            __m512 dw = load_group16(dt, rows[i] + (size_t)g * gb, nblk, w);
#pragma GCC unroll 4
            for (int j = 0; j < TB; j++) acc[i][j] = group_step16(acc[i][j], w, dw, XG + (size_t)(t + j) * (size_t)ng + g);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = _mm512_reduce_add_ps(acc[i][j]);
}

VNNI static void qprep16(int dt, const float *X, int n_tok, int cols, void *buf) { quantize_x(dt, X, n_tok, cols, buf, true); }

VNNI static void qrun16(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    const xgroup *XG = Xp;
    if (n_tok == 1) {
        int r = r0;
        for (; r + QDEC_R <= r1; r += QDEC_R) qtile16(dt, QDEC_R, 1, W, XG, Y, cols, ldy, r, 0);
        for (; r < r1; r++) qtile16(dt, 1, 1, W, XG, Y, cols, ldy, r, 0);
        return;
    }
    /* Tokens in blocks of QTB16 (their prepared X, ~30 KB at 1536 columns, stays in L1)
     * over all rows of the call (their weights stay in L2), rather than each row tile over
     * all tokens (X streamed from L2 again for every 4 rows). Every output is one qtile16
     * call either way: same operations, same bits. */
    for (int t0 = 0; t0 < n_tok; t0 += QTB16) {
        int t1 = t0 + QTB16 < n_tok ? t0 + QTB16 : n_tok, r = r0;
        for (; r + QPR <= r1; r += QPR) {
            int t = t0;
            for (; t + QPT <= t1; t += QPT) qtile16(dt, QPR, QPT, W, XG, Y, cols, ldy, r, t);
            for (; t < t1; t++) qtile16(dt, QPR, 1, W, XG, Y, cols, ldy, r, t);
        }
        for (; r < r1; r++) {
            int t = t0;
            for (; t + QPT <= t1; t += QPT) qtile16(dt, 1, QPT, W, XG, Y, cols, ldy, r, t);
            for (; t < t1; t++) qtile16(dt, 1, 1, W, XG, Y, cols, ldy, r, t);
        }
    }
}

/* The layout's byte moves, in plain C (once per row at load; and back for a row
 * lookup of a packed tied embedding). dir 1: file -> packed, 0: packed -> file. */
static void g16_row(int dt, const unsigned char *src, unsigned char *dst, int cols, int pack) {
    size_t bb = block_bytes(dt), nv = dt == FLM_Q8_0 ? NV8 : NV4;
    uint32_t flip = dt == FLM_Q8_0 ? 0x80808080u : 0;
    int nb = cols / QK;
    for (int g0 = 0; g0 < nb; g0 += GB) {
        int nblk = nb - g0 < GB ? nb - g0 : GB, lanes[L], n = 0;
        for (int p = 0; p < L; p++)
            if (GBLK(p) < nblk) lanes[n++] = p;
        size_t base = (size_t)g0 * bb;
        for (int k = 0; k < n; k++) {
            size_t blk = base + (size_t)GBLK(lanes[k]) * bb, pk = base + 2 * (size_t)k;
            if (pack) memcpy(dst + pk, src + blk, 2);
            else memcpy(dst + blk, src + pk, 2);
            for (size_t v = 0; v < nv; v++) {
                size_t fo = blk + 2 + 4 * v, po = base + 2 * (size_t)n + 4 * ((size_t)n * v + (size_t)k);
                uint32_t u;
                memcpy(&u, src + (pack ? fo : po), 4);
                u ^= flip;
                memcpy(dst + (pack ? po : fo), &u, 4);
            }
        }
    }
}

/* One full group (16 blocks) file -> packed: g16_row's bytes, by gathers (one dword of
 * each lane's block per vector), ~3x fewer instructions than the byte moves. */
INLINE void g16_pack_full_group(int dt, const unsigned char *src, unsigned char *dst) {
    int nv = dt == FLM_Q8_0 ? NV8 : NV4;
    __m512i blk = _mm512_mullo_epi32(_mm512_setr_epi32(GBLK(0), GBLK(1), GBLK(2), GBLK(3), GBLK(4), GBLK(5), GBLK(6), GBLK(7),
                                                       GBLK(8), GBLK(9), GBLK(10), GBLK(11), GBLK(12), GBLK(13), GBLK(14), GBLK(15)),
                                     _mm512_set1_epi32((int)block_bytes(dt)));
    __m512i flip = _mm512_set1_epi32(dt == FLM_Q8_0 ? (int)0x80808080u : 0);
    _mm256_storeu_si256((__m256i *)dst, _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(blk, src, 1)));
    for (int v = 0; v < nv; v++) {
        __m512i w = _mm512_i32gather_epi32(_mm512_add_epi32(blk, _mm512_set1_epi32(2 + 4 * v)), src, 1);
        _mm512_storeu_si512(dst + 2 * GB + 64 * v, _mm512_xor_si512(w, flip));
    }
}

static void g16_pack_rows(int dt, const void *src, void *dst, int64_t rows, int cols, int64_t r0, int64_t r1) {
    (void)rows;
    size_t rb = row_bytes(dt, cols), bb = block_bytes(dt), gb = GB * bb;
    for (int64_t r = r0; r < r1; r++) {
        const unsigned char *in = (const unsigned char *)src + (size_t)r * rb;
        unsigned char *out = (unsigned char *)dst + (size_t)r * rb;
        for (size_t o = 0; o < rb; o += gb) { /* group by group: a group's bytes stay within it */
            size_t n = rb - o < gb ? rb - o : gb;
            if (n == gb) g16_pack_full_group(dt, in + o, out + o);
            else g16_row(dt, in + o, out + o, (int)(n / bb) * QK, 1);
        }
    }
}

static void g16_unpack_row(int dt, const void *W, int64_t rows, int cols, int64_t r, void *dst) {
    (void)rows;
    g16_row(dt, (const unsigned char *)W + (size_t)r * row_bytes(dt, cols), dst, cols, 0);
}

VNNI static void g16_run(int dt, const void *W, const void *Xp, float *Y, int n_tok, int rows, int cols, int ldy, int r0, int r1) {
    (void)rows;
    qrun16(dt, W, Xp, Y, n_tok, cols, ldy, r0, r1);
}

static const flm_qpacked_fns QPACKED = {"avx512-g16", 1, g16_pack_rows, g16_unpack_row, qprep_bytes, qprep16, g16_run};

static const flm_qact_fns QACT = {qmatmul_q8_0, qmatmul_q4_0, qprep_bytes, qprep, qrun, &QPACKED};
const flm_qact_fns *flm_qact_avx512vnni(void) { return &QACT; }

/* ---- AMX-INT8 on the 16-row layout "avx512-r16" ("avx512-amx") ----------------
 *
 * Where the CPU has AMX-INT8 (Sapphire Rapids and later) and the OS grants the tile
 * state (cpu.c), q8_0 matrices are packed at load in groups of 16 rows, so that a block
 * of 16 rows is one AMX B tile read straight from the weights (no per-call
 * rearranging), and the decode products read 16 rows' values with one vector load.
 * q4_0 matrices keep the g16 layout (decode streams them faster row by row; their
 * nibbles need expanding per call either way) and gather their tiles per call.
 *
 * Layout (q8_0): rows in groups of AT = 16 (the last group of a matrix has nr = rows % 16
 * rows when that is not 0), a group's nr * row_bytes bytes rewritten as
 *   the nr rows' scales (fp16) of block 0, then of block 1, ... (nb blocks per row);
 *   then for block b = 0 .. nb-1 and v = 0 .. 7: the nr rows' 4-byte pieces qs[4v .. 4v+3]
 *   of block b, row after row (the file's signed bytes).
 * So in a full group a block is 512 bytes: the tile of 8 rows x 64 bytes whose row v
 * holds values 4v..4v+3 of each of the 16 weight rows (the B operand of tdpbssd, with x
 * values 4v..4v+3 of 16 tokens in the A tile's columns 4v..4v+3). Rows never straddle a
 * group, so a model splits into row chunks at multiples of 16 (forward.c) and any
 * [r0, r1) works (the rows of a group outside it are computed and not stored).
 *
 * Results are bit for bit the VNNI kernels' (qrun, qrun16): each output is a 16-lane
 * sum in which lane p sees the blocks GBLK(p), GBLK(p) + 16, ... in order, each as
 * acc = fma(float(sum + corr), d_w * d_x, acc), and the lanes are added in
 * _mm512_reduce_add_ps's tree (upper half + lower half, then 4, 2, 1). Here a vector
 * holds 16 weight rows (decode) or 16 weight rows of one token (tiles) instead of 16
 * lanes of one row, so the 16 lanes are 16 accumulators, added in that tree at the end
 * (kernels_qpacked_equals_qrun). Batches of at least AMX_MIN_TOK tokens run their block
 * products on the tile unit (16 tokens x 16 rows x 32 values per tdpbssd: signed times
 * signed, the exact sums without a correction); smaller ones (decode) multiply 16 rows at
 * a time with vpdpbusd on broadcast x values (weights made unsigned by an XOR, as g16
 * stores them, and the same correction). */
#define AMX __attribute__((target("avx512vnni,avx512vbmi,amx-tile,amx-int8")))
#ifndef AMX_MIN_TOK
#define AMX_MIN_TOK 16 /* fewer tokens: the vpdpbusd products */
#endif
#define AT 16 /* tokens per A tile; rows per group and B tile */

/* Group of rows [g0, g0 + nr): block b's nr scales at d + nr * b, its vector v at
 * q + (b * 8 + v) * 4 * nr. */
typedef struct {
    const uint16_t *d;
    const uint8_t *q;
    int nr;
} r16_group;

INLINE r16_group r16_at(int dt, const void *W, int64_t rows, int cols, int64_t g0) {
    int nb = cols / QK, nr = rows - g0 < AT ? (int)(rows - g0) : AT;
    const uint8_t *base = (const uint8_t *)W + (size_t)g0 * row_bytes(dt, cols);
    r16_group g = {(const uint16_t *)(const void *)base, base + 2 * (size_t)nr * (size_t)nb, nr};
    return g;
}

/* Row j of a group of nr rows: the file's row <-> the packed group (pack 1: file -> packed). */
static void r16_row(int dt, unsigned char *file, unsigned char *grp, int nr, int nb, int j, int pack) {
    size_t bb = block_bytes(dt), nv = NV8;
    unsigned char *q = grp + 2 * (size_t)nr * (size_t)nb;
    for (int b = 0; b < nb; b++) {
        unsigned char *fb = file + (size_t)b * bb, *pd = grp + 2 * ((size_t)nr * (size_t)b + (size_t)j);
        if (pack) memcpy(pd, fb, 2);
        else memcpy(fb, pd, 2);
        for (size_t v = 0; v < nv; v++) {
            unsigned char *pq = q + 4 * (((size_t)b * nv + v) * (size_t)nr + (size_t)j), *fq = fb + 2 + 4 * v;
            if (pack) memcpy(pq, fq, 4);
            else memcpy(fq, pq, 4);
        }
    }
}

/* A full group (16 rows of rb bytes at src) packed at dst: r16_row's bytes, by gathers
 * (one dword of each row's block per vector). */
INLINE void r16_pack_full(int dt, const unsigned char *src, size_t rb, unsigned char *dst, int nb) {
    int nv = NV8;
    size_t bb = block_bytes(dt);
    __m512i rowoff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)rb));
    unsigned char *q = dst + 2 * (size_t)AT * (size_t)nb;
    for (int b = 0; b < nb; b++) {
        const unsigned char *fb = src + (size_t)b * bb;
        _mm256_storeu_si256((__m256i *)(void *)(dst + 2 * (size_t)AT * (size_t)b), _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(rowoff, fb, 1)));
        for (int v = 0; v < nv; v++)
            _mm512_storeu_si512(q + ((size_t)b * (size_t)nv + (size_t)v) * 64, _mm512_i32gather_epi32(rowoff, fb + 2 + 4 * v, 1));
    }
}

static void r16_pack_rows(int dt, const void *src, void *dst, int64_t rows, int cols, int64_t r0, int64_t r1) {
    size_t rb = row_bytes(dt, cols);
    int nb = cols / QK;
    for (int64_t g0 = r0; g0 < r1; g0 += AT) {
        int nr = rows - g0 < AT ? (int)(rows - g0) : AT;
        unsigned char *s = (unsigned char *)src + (size_t)g0 * rb, *d = (unsigned char *)dst + (size_t)g0 * rb;
        if (nr == AT) r16_pack_full(dt, s, rb, d, nb);
        else
            for (int j = 0; j < nr; j++) r16_row(dt, s + (size_t)j * rb, d, nr, nb, j, 1);
    }
}

static void r16_unpack_row(int dt, const void *W, int64_t rows, int cols, int64_t r, void *dst) {
    int64_t g0 = r / AT * AT;
    r16_group g = r16_at(dt, W, rows, cols, g0);
    r16_row(dt, dst, (unsigned char *)(uintptr_t)g.d, g.nr, cols / QK, (int)(r - g0), 0);
}

/* The prepared X: the g16 groups (quantize_x, the VNNI kernels' exact quantization),
 * then the same values per token and block: q in tiles of th tokens (16: the A tiles,
 * tokens padded with zeros to ntp, a multiple of 16; below AMX_MIN_TOK tokens th = 1,
 * each token's blocks one after the other), block b of tile i at ((i * nb + b) * th) * 32;
 * then per token and block d_x and the negated correction. */
typedef struct {
    int ntp, th;
    const int8_t *q;     /* [ntp / th][nb][th][QK] */
    const float *dx;     /* [ntp][nb] */
    const int32_t *corr; /* [ntp][nb] */
} amx_x;

INLINE size_t amx_align(size_t n) { return (n + 63) / 64 * 64; }
INLINE int amx_th(int n_tok) { return n_tok < AMX_MIN_TOK ? 1 : AT; }
INLINE int amx_ntp(int n_tok) { return n_tok < AMX_MIN_TOK ? n_tok : (n_tok + AT - 1) / AT * AT; }

INLINE amx_x amx_x_at(int dt, const void *buf, int n_tok, int cols) {
    int nb = cols / QK, ntp = amx_ntp(n_tok);
    const char *p = (const char *)buf + amx_align(qprep_bytes(dt, n_tok, cols));
    amx_x x = {ntp, amx_th(n_tok), (const int8_t *)p, NULL, NULL};
    p += amx_align((size_t)ntp * (size_t)cols);
    x.dx = (const float *)(const void *)p;
    x.corr = (const int32_t *)(const void *)(p + amx_align((size_t)ntp * (size_t)nb * sizeof(float)));
    return x;
}

/* Token t's block b (32 bytes). */
INLINE const int8_t *amx_xq(const amx_x *x, int nb, int t, int b) {
    return x->q + (((size_t)(t / x->th) * (size_t)nb + (size_t)b) * (size_t)x->th + (size_t)(t % x->th)) * QK;
}

static size_t amx_prep_bytes(int dt, int n_tok, int cols) {
    size_t nb = (size_t)(cols / QK), ntp = (size_t)amx_ntp(n_tok);
    return amx_align(qprep_bytes(dt, n_tok, cols)) + amx_align(ntp * (size_t)cols) + 2 * amx_align(ntp * nb * 4);
}

/* Block b of a token is lane p = GBLK(b % 16) of its group b / 16, values 4v..4v+3 in vector v. */
VNNI static void amx_prep(int dt, const float *X, int n_tok, int cols, void *buf) {
    quantize_x(dt, X, n_tok, cols, buf, true);
    if (dt == FLM_Q4_0 && n_tok < AMX_MIN_TOK) return; /* q4_0 below the tiles runs qrun16 on the g16 groups */
    amx_x x = amx_x_at(dt, buf, n_tok, cols);
    int nb = cols / QK, ng = (nb + GB - 1) / GB;
    const xgroup *XG = buf;
    float *dx = (float *)(uintptr_t)x.dx;
    int32_t *corr = (int32_t *)(uintptr_t)x.corr;
    for (int t = 0; t < x.ntp; t++)
        for (int b = 0; b < nb; b++) {
            size_t o = (size_t)t * (size_t)nb + (size_t)b;
            int8_t *qb = (int8_t *)(uintptr_t)amx_xq(&x, nb, t, b);
            if (t >= n_tok) { memset(qb, 0, QK); dx[o] = 0.0f; corr[o] = 0; continue; }
            const xgroup *xg = XG + (size_t)t * (size_t)ng + b / GB;
            int p = GBLK(b % GB);
            for (int v = 0; v < 8; v++) memcpy(qb + 4 * v, xg->q + 64 * v + 4 * p, 4);
            dx[o] = xg->dx[p];
            corr[o] = xg->corr[p];
        }
}

/* _mm512_reduce_add_ps's tree over 16 lane vectors: (p, p + 8), then (p, p + 4), (p, p + 2), (0, 1). */
INLINE __m512 lane_tree(const float *l, size_t pstride) {
#define LN(p) _mm512_load_ps(l + (size_t)(p) * pstride)
    __m512 a0 = _mm512_add_ps(LN(8), LN(0)), a1 = _mm512_add_ps(LN(9), LN(1)), a2 = _mm512_add_ps(LN(10), LN(2)),
           a3 = _mm512_add_ps(LN(11), LN(3)), a4 = _mm512_add_ps(LN(12), LN(4)), a5 = _mm512_add_ps(LN(13), LN(5)),
           a6 = _mm512_add_ps(LN(14), LN(6)), a7 = _mm512_add_ps(LN(15), LN(7));
#undef LN
    a0 = _mm512_add_ps(a4, a0); a1 = _mm512_add_ps(a5, a1); a2 = _mm512_add_ps(a6, a2); a3 = _mm512_add_ps(a7, a3);
    a0 = _mm512_add_ps(a2, a0); a1 = _mm512_add_ps(a3, a1);
    return _mm512_add_ps(a1, a0);
}

/* ---- fewer than AMX_MIN_TOK tokens: 16 rows per vector ---- */
#ifndef R16_PF
#define R16_PF 4096 /* decode prefetch distance (bytes): 4096 beat 0, 2048, 8192, 16384 and per-block lines in a sweep */
#endif

/* The 16 rows' vector of a block at p (full: an unmasked load), as unsigned bytes q + 128
 * for vpdpbusd (the correction in corr takes the 128 back out). */
INLINE VNNI __m512i r16_load(const uint8_t *p, __mmask16 live, int full) {
    __m512i w = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(live, p);
    return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
}

/* acc (16 rows) += one block of the group (its vectors at q, vs bytes apart; its scales
 * at d) times a token's block (xb, d_x, corr): group_step16's operations, row by row. */
INLINE VNNI __m512 r16_block(const uint8_t *q, size_t vs, const uint16_t *d, __mmask16 live, int full, const int8_t *xb, float dx,
                             int32_t corr, __m512 acc) {
    const int32_t *x4 = (const int32_t *)(const void *)xb;
    __m512i s0 = _mm512_set1_epi32(corr), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int v = 0; v < 8; v += 2) {
        s0 = _mm512_dpbusd_epi32(s0, r16_load(q + (size_t)v * vs, live, full), _mm512_set1_epi32(x4[v]));
        s1 = _mm512_dpbusd_epi32(s1, r16_load(q + (size_t)(v + 1) * vs, live, full), _mm512_set1_epi32(x4[v + 1]));
    }
    __m256i dh = full ? _mm256_loadu_si256((const __m256i *)(const void *)d) : _mm256_maskz_loadu_epi16(live, d);
    __m512 dw = _mm512_cvtph_ps(dh);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc);
}

/* One token x one group: the 16 lanes' accumulators over the blocks in order, 16 at a
 * time in memory order (block s + k goes to lane GBLK(k)), then the tree; stored where
 * `store` says. The token's block b is at xq + b * xs, its d_x and correction at dx[b],
 * corr[b]. Every line is prefetched R16_PF bytes ahead (into the next group at the end):
 * one stream per thread does not keep enough lines in flight on its own. */
INLINE VNNI void r16_vec_group(const r16_group *g, int nb, const int8_t *xq, size_t xs, const float *dx, const int32_t *corr, float *y,
                               __mmask16 store, int full) {
    __mmask16 live = tail_mask(g->nr);
    size_t nr = full ? AT : (size_t)g->nr, vs = 4 * nr, bs = NV8 * vs; /* bytes per vector, per block */
    const uint8_t *q = g->q;
    const uint16_t *d = g->d;
    __m512 acc[L];
#pragma GCC unroll 16
    for (int p = 0; p < L; p++) acc[p] = _mm512_setzero_ps();
    int b0 = 0;
    for (; b0 + GB <= nb; b0 += GB) {
#pragma GCC unroll 16
        for (int k = 0; k < GB; k++) {
            for (size_t o = 0; o < bs; o += 64) _mm_prefetch((const char *)q + R16_PF + (size_t)k * bs + o, _MM_HINT_T0);
            acc[GBLK(k)] = r16_block(q + (size_t)k * bs, vs, d + (size_t)k * nr, live, full, xq + (size_t)k * xs, dx[k], corr[k], acc[GBLK(k)]);
        }
        q += GB * bs; d += GB * nr; xq += GB * xs; dx += GB; corr += GB;
    }
#pragma GCC unroll 16
    for (int k = 0; k < nb - b0; k++) /* the last, partial 16 blocks */
        acc[GBLK(k)] = r16_block(q + (size_t)k * bs, vs, d + (size_t)k * nr, live, full, xq + (size_t)k * xs, dx[k], corr[k], acc[GBLK(k)]);
    _Alignas(64) float lanes[L * L];
#pragma GCC unroll 16
    for (int p = 0; p < L; p++) _mm512_store_ps(lanes + (size_t)p * L, acc[p]);
    _mm512_mask_storeu_ps(y, store, lane_tree(lanes, L));
}

/* Tokens [0, n_tok) x the group at g0 (fewer than AMX_MIN_TOK tokens, or no scratch). */
static VNNI void r16_vec_tokens(const r16_group *g, int nb, const amx_x *x, int n_tok, float *Y, int ldy, int g0, __mmask16 store) {
    for (int t = 0; t < n_tok; t++) {
        const int8_t *xq = amx_xq(x, nb, t, 0);
        const float *dx = x->dx + (size_t)t * (size_t)nb;
        const int32_t *corr = x->corr + (size_t)t * (size_t)nb;
        float *y = Y + (size_t)t * (size_t)ldy + (size_t)g0;
        /* constant strides and masks in the common case */
        if (x->th == 1 && g->nr == AT) r16_vec_group(g, nb, xq, QK, dx, corr, y, store, 1);
        else r16_vec_group(g, nb, xq, (size_t)x->th * QK, dx, corr, y, store, 0);
    }
}

/* ---- AMX_MIN_TOK tokens or more: the tile unit ---- */

/* The tile registers: 0/3 A (16 x 32 bytes), 1/4 B (8 x 64), 2/5 C (16 x 64). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

INLINE AMX void amx_configure(void) {
    _Alignas(64) amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 6; i += 3) {
        c.colsb[i] = 32; c.rows[i] = AT;
        c.colsb[i + 1] = 64; c.rows[i + 1] = 8;
        c.colsb[i + 2] = 64; c.rows[i + 2] = AT;
    }
    __asm__ volatile("ldtilecfg %0" ::"m"(c));
}
/* The compiler's tile intrinsics do not tell it that tileloadd reads memory. */
#define TILE_LOAD(tmm, base, stride) __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #tmm ::"r"(base), "r"((long)(stride)) : "memory")
#define TILE_STORE(tmm, base, stride) __asm__ volatile("tilestored %%tmm" #tmm ", (%0,%1,1)" ::"r"(base), "r"((long)(stride)) : "memory")
#define TILE_ZERO(tmm) __asm__ volatile("tilezero %%tmm" #tmm ::)
#define TILE_DPBSSD(c, a, b) __asm__ volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

/* A group of fewer than 16 rows as full tiles: B + 512 b block b's tile (missing rows
 * zero), D + 16 b its 16 scales. */
INLINE AMX void r16_stage(const r16_group *g, int nb, uint8_t *B, uint16_t *D) {
    __mmask16 live = tail_mask(g->nr);
    size_t vs = 4 * (size_t)g->nr;
    for (int b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)(void *)(D + (size_t)b * AT), _mm256_maskz_loadu_epi16(live, g->d + (size_t)g->nr * (size_t)b));
        const uint8_t *q = g->q + (size_t)b * NV8 * vs;
        for (int v = 0; v < NV8; v++) _mm512_store_si512(B + (size_t)b * 512 + 64 * v, _mm512_maskz_loadu_epi32(live, q + (size_t)v * vs));
    }
}

/* q4_0 keeps the g16 layout here (its decode streams faster row by row): the tiles of
 * rows [r, r + nr) (nr <= 16; missing rows' scales zero) gathered per call from the
 * packed rows into B (512 bytes per block, nibbles expanded to the signed weights
 * q - 8) and D (16 scales per block). */
INLINE AMX void g16_gather_q4_0(const void *W, int cols, int r, int nr, uint8_t *B, uint16_t *D) {
    const int dt = FLM_Q4_0;
    int nb = cols / QK, nfull = nb / GB;
    size_t rb = row_bytes(dt, cols), bb = block_bytes(dt), nv = NV4;
    const char *base = (const char *)W + (size_t)r * rb;
    __mmask16 live = tail_mask(nr);
    __m512i rowoff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)rb));
    const __m512i m4 = _mm512_set1_epi8(0x0F), e8 = _mm512_set1_epi8(8);
    for (int b = 0; b < nb; b++) {
        int g = b / GB, nblk = g < nfull ? GB : nb - nfull * GB, p = GBLK(b % GB), k = 0;
        for (int q = 0; q < p; q++) k += GBLK(q) < nblk; /* rank of lane p among the active lanes */
        const char *grp = base + (size_t)g * GB * bb;
        __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, grp + 2 * k, 1);
        _mm256_storeu_si256((__m256i *)(void *)(D + (size_t)b * AT), _mm512_cvtepi32_epi16(d));
        uint8_t *bt = B + (size_t)b * 512;
        for (size_t v = 0; v < nv; v++) {
            __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, grp + 2 * nblk + 4 * ((size_t)nblk * v + (size_t)k), 1);
            _mm512_store_si512(bt + 64 * v, _mm512_sub_epi8(_mm512_and_si512(w, m4), e8));
            _mm512_store_si512(bt + 64 * (v + 4), _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(w, 4), m4), e8));
        }
    }
}

/* acc[t] (16 weight rows of token t) += the block product in C (16 x 16 int32: signed x
 * times signed w, so the exact sums the VNNI kernels reach through their correction). */
INLINE AMX void amx_scale_block(__m512 acc[AT], const int32_t *C, __m512 dw, const float *dx, int nb) {
#pragma GCC unroll 16
    for (int t = 0; t < AT; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(C + 16 * t)), _mm512_mul_ps(dw, _mm512_set1_ps(dx[(size_t)t * (size_t)nb])), acc[t]);
}

/* Tokens [t0, t0 + 16) x the 16 rows whose tiles are B (512 bytes per block) and scales
 * D (16 per block): Y rows [g0, g0 + 16) where `store` says, tokens < n_tok. The lanes
 * are walked one after the other, the 16 tokens' accumulators in registers. */
INLINE AMX void amx_tile(const amx_x *x, int cols, const uint8_t *B, const uint16_t *D, float *Y, int n_tok, int ldy, int g0,
                         __mmask16 store, int t0, float *lanes, int32_t *C, const char *pf, size_t npf) {
    int nb = cols / QK;
    const int8_t *xq = x->q + (size_t)t0 * (size_t)cols; /* tile (t0 / AT, b) at xq + 512 b */
    const float *dx = x->dx + (size_t)t0 * (size_t)nb;
    for (int p = 0; p < L; p++) {
        for (size_t i = npf * (size_t)p / L; i < npf * (size_t)(p + 1) / L; i++) _mm_prefetch(pf + 64 * i, _MM_HINT_T1);
        __m512 acc[AT];
#pragma GCC unroll 16
        for (int t = 0; t < AT; t++) acc[t] = _mm512_setzero_ps();
/* Block b's 16 x 16 sums into tile c, through tiles a (x) and w (weights). */
#define TILE_BLOCK(a, w, c, b)                                                                                       \
    do {                                                                                                                \
        TILE_LOAD(a, xq + (size_t)(b) * 512, QK);                                                                       \
        TILE_LOAD(w, B + (size_t)(b) * 512, 64);                                                                        \
        TILE_ZERO(c);                                                                                                   \
        TILE_DPBSSD(c, a, w);                                                                                           \
    } while (0)
#define SCALE(b, C) amx_scale_block(acc, C, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(D + (size_t)(b) * AT))), dx + (b), nb)
        int b = GBLK(p);
        /* two blocks in flight: tiles 0-2 and 3-5, C buffers 0 and 1 */
        for (; b + GB < nb; b += 2 * GB) {
            TILE_BLOCK(0, 1, 2, b);
            TILE_BLOCK(3, 4, 5, b + GB);
            TILE_STORE(2, C, 64);
            TILE_STORE(5, C + 256, 64);
            SCALE(b, C);
            SCALE(b + GB, C + 256);
        }
        if (b < nb) {
            TILE_BLOCK(0, 1, 2, b);
            TILE_STORE(2, C, 64);
            SCALE(b, C);
        }
#undef SCALE
#undef TILE_BLOCK
#pragma GCC unroll 16
        for (int t = 0; t < AT; t++) _mm512_store_ps(lanes + ((size_t)p * AT + (size_t)t) * L, acc[t]);
    }
    for (int t = 0; t < AT && t0 + t < n_tok; t++)
        _mm512_mask_storeu_ps(Y + (size_t)(t0 + t) * (size_t)ldy + (size_t)g0, store, lane_tree(lanes + (size_t)t * L, AT * L));
}

/* Per-thread buffers of the tile path: staged B tiles (nb x 512 bytes), two C tiles,
 * the 16 lanes' vectors of 16 tokens, staged scales (nb x 16). */
typedef struct {
    uint8_t *B;
    int32_t *C;
    float *lanes;
    uint16_t *D;
} amx_scratch;

INLINE bool amx_scratch_get(int nb, amx_scratch *sc) {
    char *s = flm_kernel_scratch(1, (size_t)nb * (512 + 2 * AT) + 2 * 1024 + (size_t)L * AT * L * sizeof(float));
    if (!s) return false;
    sc->B = (uint8_t *)s;
    sc->C = (int32_t *)(void *)(s + (size_t)nb * 512);
    sc->lanes = (float *)(void *)(sc->C + 2 * 256);
    sc->D = (uint16_t *)(void *)(sc->lanes + (size_t)L * AT * L);
    return true;
}

/* Every 16-token tile x the 16 rows at g0 whose tiles are B and scales D; the npf lines
 * at pf (the next rows) are prefetched into L2, spread over the token tiles. */
INLINE AMX void amx_group(const amx_x *x, int cols, const uint8_t *B, const uint16_t *D, float *Y, int n_tok, int ldy, int g0,
                          __mmask16 store, const amx_scratch *sc, const char *pf, size_t npf) {
    int ntt = (n_tok + AT - 1) / AT;
    for (int t0 = 0, tt = 0; t0 < n_tok; t0 += AT, tt++) {
        size_t a = npf * (size_t)tt / (size_t)ntt, e = npf * (size_t)(tt + 1) / (size_t)ntt;
        amx_tile(x, cols, B, D, Y, n_tok, ldy, g0, store, t0, sc->lanes, sc->C, pf + 64 * a, e - a);
    }
}

/* q4_0 (g16 layout): the tiles gathered per 16 rows, or qrun16. */
AMX static void g16_amx_run(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    amx_scratch sc;
    if (n_tok < AMX_MIN_TOK || !amx_scratch_get(cols / QK, &sc)) { qrun16(dt, W, Xp, Y, n_tok, cols, ldy, r0, r1); return; }
    amx_x x = amx_x_at(dt, Xp, n_tok, cols);
    amx_configure();
    size_t rb = row_bytes(dt, cols);
    for (int r = r0; r < r1; r += AT) {
        int nr = r1 - r < AT ? r1 - r : AT;
        g16_gather_q4_0(W, cols, r, nr, sc.B, sc.D);
        /* The next rows' bytes into L2 while these compute (the gathers read 16 rows
         * side by side, which the hardware prefetchers do not follow). */
        size_t nlines = r + AT < r1 ? (size_t)(r1 - r - AT < AT ? r1 - r - AT : AT) * rb / 64 : 0;
        amx_group(&x, cols, sc.B, sc.D, Y, n_tok, ldy, r, tail_mask(nr), &sc, (const char *)W + (size_t)(r + AT) * rb, nlines);
    }
    _tile_release();
}

AMX static void r16_run(int dt, const void *W, const void *Xp, float *Y, int n_tok, int rows, int cols, int ldy, int r0, int r1) {
    if (dt == FLM_Q4_0) { g16_amx_run(dt, W, Xp, Y, n_tok, cols, ldy, r0, r1); return; }
    int nb = cols / QK;
    size_t rb = row_bytes(dt, cols);
    amx_x x = amx_x_at(dt, Xp, n_tok, cols);
    amx_scratch sc;
    bool tiles = n_tok >= AMX_MIN_TOK && amx_scratch_get(nb, &sc); /* else the vector path */
    if (tiles) amx_configure();
    for (int g0 = r0 / AT * AT; g0 < r1; g0 += AT) {
        r16_group g = r16_at(dt, W, rows, cols, g0);
        int lo = r0 > g0 ? r0 - g0 : 0, hi = r1 - g0 < g.nr ? r1 - g0 : g.nr;
        __mmask16 store = (__mmask16)(tail_mask(hi) & ~tail_mask(lo));
        if (!tiles) { r16_vec_tokens(&g, nb, &x, n_tok, Y, ldy, g0, store); continue; }
        const uint8_t *Bg = g.q;
        const uint16_t *Dg = g.d;
        if (g.nr != AT) { r16_stage(&g, nb, sc.B, sc.D); Bg = sc.B; Dg = sc.D; }
        /* the next group's bytes into L2 while this one computes */
        size_t nlines = g0 + AT < r1 ? (size_t)(rows - g0 - AT < AT ? rows - g0 - AT : AT) * rb / 64 : 0;
        amx_group(&x, cols, Bg, Dg, Y, n_tok, ldy, g0, store, &sc, (const char *)W + (size_t)(g0 + AT) * rb, nlines);
    }
    if (tiles) _tile_release();
}

static void amx_pack_rows(int dt, const void *src, void *dst, int64_t rows, int cols, int64_t r0, int64_t r1) {
    if (dt == FLM_Q4_0) g16_pack_rows(dt, src, dst, rows, cols, r0, r1);
    else r16_pack_rows(dt, src, dst, rows, cols, r0, r1);
}

static void amx_unpack_row(int dt, const void *W, int64_t rows, int cols, int64_t r, void *dst) {
    if (dt == FLM_Q4_0) g16_unpack_row(dt, W, rows, cols, r, dst);
    else r16_unpack_row(dt, W, rows, cols, r, dst);
}

static const flm_qpacked_fns QPACKED_AMX = {"avx512-r16", AT, amx_pack_rows, amx_unpack_row, amx_prep_bytes, amx_prep, r16_run};

static const flm_qact_fns QACT_AMX = {qmatmul_q8_0, qmatmul_q4_0, qprep_bytes, qprep, qrun, &QPACKED_AMX};
const flm_qact_fns *flm_qact_avx512amx(void) { return &QACT_AMX; }

/* ---- vector ops --------------------------------------------------------------- */

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

/* Attention of nq heads sharing one KV head (see kernels.h). Head sizes 64 and 128
 * (Qwen2.5's) go by blocks of FLM_ATT_BLOCK positions (flm_attend_blocked), so a
 * block of K (then of V) is read from memory once and from L1 by every head of the
 * group: scores 4
 * keys at a time with q in registers (one 4-way horizontal add), softmax with a
 * vector exp, then out_h = sum_p s_hp V_p with one FMA per vector, the running
 * sums kept in out between blocks (an exact store and reload). Blocks and score
 * tiles start at multiples of 4 whatever nq is, so each head's result is the same
 * for any nq. The vector count is a constant per head size, so q and the sums stay
 * in registers; other head sizes use the composed definition. */
#define ATT_MAXV 8 /* vectors per head on the blocked path (head size 128) */
INLINE __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* scale * q.K_p for p in [p0, p1) into sc[p]; p0 is a multiple of 4. */
INLINE void att_scores(const float *q, int nv, const float *Kc, size_t stride, int p0, int p1, float scale, float *sc) {
    __m512 qv[ATT_MAXV];
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++) qv[v] = _mm512_loadu_ps(q + v * L);
    const __m128 vs = _mm_set1_ps(scale);
    int p = p0;
    for (; p + 4 <= p1; p += 4) {
        const float *k0 = Kc + (size_t)p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#pragma GCC unroll 16
        for (int v = 0; v < nv; v++) {
            a0 = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(k0 + v * L), a0);
            a1 = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(k1 + v * L), a1);
            a2 = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(k2 + v * L), a2);
            a3 = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(k3 + v * L), a3);
        }
        _mm_storeu_ps(sc + p, _mm_mul_ps(hsum4(a0, a1, a2, a3), vs));
    }
    for (; p < p1; p++) {
        const float *kp = Kc + (size_t)p * stride;
        __m512 a = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int v = 0; v < nv; v++) a = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(kp + v * L), a);
        sc[p] = _mm512_reduce_add_ps(a) * scale;
    }
}

/* out += sum_{p in [p0, p1)} sc[p] V_p, in order of p. */
INLINE void att_values(const float *sc, int nv, const float *Vc, size_t stride, int p0, int p1, float *out) {
    __m512 o[ATT_MAXV];
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++) o[v] = _mm512_loadu_ps(out + v * L);
    for (int p = p0; p < p1; p++) {
        __m512 s = _mm512_set1_ps(sc[p]);
        const float *vp = Vc + (size_t)p * stride;
#pragma GCC unroll 16
        for (int v = 0; v < nv; v++) o[v] = _mm512_fmadd_ps(s, _mm512_loadu_ps(vp + v * L), o[v]);
    }
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++) _mm512_storeu_ps(out + v * L, o[v]);
}

/* exp(x) for x <= 0 (softmax arguments): 2^n * poly(r), x = n ln2 + r, |r| <= ln2/2,
 * a degree-6 Taylor polynomial (error below 2e-7 relative, against libm's
 * correctly rounded expf); x below -103 gives 0. */
INLINE __m512 exp_le0(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-103.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);     /* ln2 high part (exact product) */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);         /* ln2 low part */
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Softmax in place, as flm_softmax (max subtracted, then normalised by the sum)
 * with a vector exp and a vector sum. */
static void softmax_vec(float *x, int n) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += L) vm = _mm512_max_ps(vm, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vm)), sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += L) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp_le0(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int i = 0; i < n; i += L) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

/* The blocked pieces for head sizes 64 and 128: the vector count is a constant in each
 * wrapper, so q and the output sums stay in registers. */
static void scores4(const float *q, const float *K, size_t stride, int hd, int p0, int p1, float scale, float *sc) {
    (void)hd;
    att_scores(q, 4, K, stride, p0, p1, scale, sc);
}
static void scores8(const float *q, const float *K, size_t stride, int hd, int p0, int p1, float scale, float *sc) {
    (void)hd;
    att_scores(q, 8, K, stride, p0, p1, scale, sc);
}
static void values4(const float *sc, const float *Vc, size_t stride, int hd, int p0, int p1, float *out) {
    (void)hd;
    att_values(sc, 4, Vc, stride, p0, p1, out);
}
static void values8(const float *sc, const float *Vc, size_t stride, int hd, int p0, int p1, float *out) {
    (void)hd;
    att_values(sc, 8, Vc, stride, p0, p1, out);
}
static const flm_attend_ops ATT_OPS_64 = {scores4, softmax_vec, values4}, ATT_OPS_128 = {scores8, softmax_vec, values8};

static void attend(const float *q, int nq, const float *Kc, const float *Vc, int len, size_t stride, int hd, float scale,
                   float *scores, float *out) {
    const flm_attend_ops *ops = hd == 64 ? &ATT_OPS_64 : hd == 128 ? &ATT_OPS_128 : NULL; /* Qwen2.5's head sizes */
    if (ops) flm_attend_blocked(ops, q, nq, Kc, Vc, len, stride, hd, scale, scores, out);
    else flm_attend_composed(dot, axpy, q, nq, Kc, Vc, len, stride, hd, scale, scores, out);
}

/* rope (see kernels.h): 16 pairs per step, masked tail; mul, mul, sub/add as the reference. */
static void rope(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)hd;
        for (int i = 0; i < half; i += L) {
            __mmask16 m = tail_mask(half - i);
            __m512 c = _mm512_maskz_loadu_ps(m, cs + i), s = _mm512_maskz_loadu_ps(m, sn + i);
            __m512 x0 = _mm512_maskz_loadu_ps(m, x + i), x1 = _mm512_maskz_loadu_ps(m, x + i + half);
            _mm512_mask_storeu_ps(x + i, m, _mm512_sub_ps(_mm512_mul_ps(x0, c), _mm512_mul_ps(x1, s)));
            _mm512_mask_storeu_ps(x + i + half, m, _mm512_add_ps(_mm512_mul_ps(x1, c), _mm512_mul_ps(x0, s)));
        }
    }
}

/* lora_row (see kernels.h): 16 columns at a time (a masked tail), the rank's FMA
 * chain in a register per lane; every lane does exactly the reference's steps. */
static void lora_row(const float *restrict u, const float *restrict Vw, int r, int64_t cols, float scale, float *restrict acc,
                     float *restrict W) {
    (void)acc;
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t c0 = 0; c0 < cols; c0 += L) {
        __mmask16 m = cols - c0 >= L ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - c0)) - 1u);
        __m512 s = _mm512_setzero_ps();
        for (int k = 0; k < r; k++)
            s = _mm512_fmadd_ps(_mm512_set1_ps(u[k]), _mm512_maskz_loadu_ps(m, Vw + (size_t)k * (size_t)cols + (size_t)c0), s);
        _mm512_mask_storeu_ps(W + c0, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, W + c0), _mm512_mul_ps(s, vs)));
    }
}

/* stream_read (see kernels.h): 512 bytes per step into eight zmm accumulators, with a
 * software prefetch STREAM_AHEAD bytes ahead: one core's hardware prefetchers alone
 * do not keep enough lines in flight to reach the memory's bandwidth. */
#define STREAM_AHEAD 4096
static uint64_t stream_read(const void *p, size_t n) {
    const unsigned char *b = p;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t off = 0; off < n; off += FLM_STREAM_CHUNK) {
        const __m512i *v = (const __m512i *)(const void *)(b + off);
        for (int k = 0; k < FLM_STREAM_CHUNK; k += 64) _mm_prefetch((const char *)(b + off + STREAM_AHEAD + (size_t)k), _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(v + 0));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(v + 1));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(v + 2));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(v + 3));
        a4 = _mm512_add_epi64(a4, _mm512_load_si512(v + 4));
        a5 = _mm512_add_epi64(a5, _mm512_load_si512(v + 5));
        a6 = _mm512_add_epi64(a6, _mm512_load_si512(v + 6));
        a7 = _mm512_add_epi64(a7, _mm512_load_si512(v + 7));
    }
    __m512i s = _mm512_xor_si512(_mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3)),
                                 _mm512_xor_si512(_mm512_xor_si512(a4, a5), _mm512_xor_si512(a6, a7)));
    uint64_t lanes[8];
    _mm512_storeu_si512((void *)lanes, s);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x ^= lanes[i];
    return x;
}

static const flm_kernels AVX512 = {
    .name = "avx512",
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

const flm_kernels *flm_kernels_avx512(void) { return &AVX512; }
