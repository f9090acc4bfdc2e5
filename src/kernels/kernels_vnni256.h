/* kernels_vnni256.h — the int8-activation q8_0/q4_0 products with 256-bit vpdpbusd.
 * Included only by kernels_avx2.c, twice, with
 *   VNNI256_TARGET  the target attribute (avxvnni, or avx512f,avx512vl,avx512vnni)
 *   VNNI256_DPBUSD  the intrinsic of that encoding (_mm256_dpbusd_avx_epi32 or
 *                   _mm256_dpbusd_epi32)
 *   VNNI256(name)   the suffixed name of each definition
 * (no include guard on purpose). Uses kernels_avx2.c's xquant, quantize_x_corr,
 * prep_bytes, load_wq, row_bytes, hsum and prefetch_mask.
 *
 * Same tiles, block order and float operations as kernels_avx2.c's qtile, and the
 * same exact integers per lane: vpdpbusd multiplies unsigned by signed bytes, so the
 * weights go in unsigned (q8_0: q ^ 0x80 = q + 128; q4_0: the raw nibble n = q + 8)
 * and each lane starts from the token's -bias * (sum of its 4 q_x) (bias 128 or 8,
 * stored negated by prep), giving exactly sum q_w * q_x of the lane's 4 values, the
 * integer vpmaddubsw + vpmaddwd produce. So the results are bit-identical to the
 * "avx2" int8 kernels, with one instruction per block and row in place of three
 * (q8_0: vpsignb twice, vpmaddubsw, vpmaddwd; q4_0: vpmaddubsw, vpmaddwd, vpsubd). */

/* Rows [r, r+RB) x tokens [t, t+TB): one accumulator per output, blocks in order. */
static inline __attribute__((always_inline)) VNNI256_TARGET void VNNI256(qtile)(int dt, int RB, int TB, const void *W,
                                                                                  const xquant *xq, float *Y, int cols,
                                                                                  int ldy, int r, int t) {
    int nb = cols / QK;
    size_t rb = row_bytes(dt, cols);
    const char *rows[MAX_RB];
    __m256 acc[MAX_RB][QB_TOK];
    const __m256i flip = _mm256_set1_epi8((char)0x80);
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) rows[i] = (const char *)W + (size_t)(r + i) * rb;
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) acc[i][j] = _mm256_setzero_ps();
    size_t bb = dt == FLM_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (int b = 0; b < nb; b++) {
        __m256i w[MAX_RB];
        __m256 dw[MAX_RB];
        if (TB == 1 && (b & prefetch_mask(dt)) == 0)
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) _mm_prefetch(rows[i] + (size_t)b * bb + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            load_wq(dt, rows[i], b, &w[i], &dw[i]);
            if (dt == FLM_Q8_0) w[i] = _mm256_xor_si256(w[i], flip);
        }
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) {
            size_t xb = (size_t)(t + j) * (size_t)nb + (size_t)b;
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq->q + xb * QK));
            __m256i nc = _mm256_loadu_si256((const __m256i *)(xq->corr + xb * 8));
            __m256 dx = _mm256_broadcast_ss(xq->d + xb);
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) {
                __m256i p = VNNI256_DPBUSD(nc, w[i], x);
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < TB; j++) Y[(size_t)(t + j) * (size_t)ldy + (size_t)(r + i)] = hsum(acc[i][j]);
}

/* X quantized as kernels_avx2.c's prep does, with corr = -bias * lane sums. */
static void VNNI256(prep)(int dt, const float *X, int n_tok, int cols, void *buf) {
    xquant xq = xquant_at(buf, n_tok, cols);
    quantize_x_corr(X, n_tok, cols, &xq, dt == FLM_Q8_0 ? 128 : 8, true);
}

/* The tiling of kernels_avx2.c's run (the tile shape does not change any output). */
VNNI256_TARGET static void VNNI256(run)(int dt, const void *W, const void *Xp, float *Y, int n_tok, int cols, int ldy, int r0,
                                        int r1) {
    xquant xq = xquant_at(Xp, n_tok, cols);
    int r = r0;
    if (n_tok == 1)
        for (; r + 4 <= r1; r += 4) VNNI256(qtile)(dt, 4, 1, W, &xq, Y, cols, ldy, r, 0);
    for (; r + 2 <= r1; r += 2) {
        int t = 0;
        for (; t + QB_TOK <= n_tok; t += QB_TOK) VNNI256(qtile)(dt, 2, QB_TOK, W, &xq, Y, cols, ldy, r, t);
        for (; t < n_tok; t++) VNNI256(qtile)(dt, 2, 1, W, &xq, Y, cols, ldy, r, t);
    }
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) VNNI256(qtile)(dt, 1, 1, W, &xq, Y, cols, ldy, r, t);
}

/* One call: X prepared in this thread's scratch, then run (float path without memory). */
static void VNNI256(qmatmul)(int dt, const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    void *buf = flm_kernel_scratch(0, prep_bytes(dt, n_tok, cols));
    if (!buf) { matmul_body(dt, W, X, Y, n_tok, cols, ldy, r0, r1); return; }
    VNNI256(prep)(dt, X, n_tok, cols, buf);
    VNNI256(run)(dt, W, buf, Y, n_tok, cols, ldy, r0, r1);
}
static void VNNI256(qmatmul_q8_0)(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    VNNI256(qmatmul)(FLM_Q8_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}
static void VNNI256(qmatmul_q4_0)(const void *W, const float *X, float *Y, int n_tok, int cols, int ldy, int r0, int r1) {
    VNNI256(qmatmul)(FLM_Q4_0, W, X, Y, n_tok, cols, ldy, r0, r1);
}

static const flm_qact_fns VNNI256(QACT) = {VNNI256(qmatmul_q8_0), VNNI256(qmatmul_q4_0), prep_bytes, VNNI256(prep),
                                           VNNI256(run), NULL};
