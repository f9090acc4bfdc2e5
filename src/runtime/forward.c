/* forward.c — one Qwen2 transformer pass for a chunk of tokens:
 *   x = embed[ids]
 *   per layer: h = rmsnorm(x); q,k,v = h·Wq+bq, h·Wk+bk, h·Wv+bv; rope(q,k);
 *              append k,v to the cache; a = causal GQA attention; x += a·Wo
 *              h = rmsnorm(x); x += (silu(h·Wg) * (h·Wu))·Wd
 *   logits = rmsnorm(x)·lm_headᵀ
 * Prompts are processed in chunks of FWD_CHUNK tokens as batched matrix products,
 * so memory stays bounded for long prompts. Allocation happens only when the KV
 * cache grows. */
#include "runtime/forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/threadpool.h"
#include "kernels/quant.h"

#ifndef FWD_CHUNK
#define FWD_CHUNK 64
#endif
#define KV_MIN_CAP 256

/* One thread's share of a product's chunks, [front, back) packed in one atomic word
 * (front low, back high): the owner takes chunks from the front, in order, so its
 * rows stream as one contiguous range; a thread that has finished its own takes
 * chunks from the back of another's. On a cache line of its own. */
struct chunk_range {
    _Alignas(64) _Atomic uint64_t fb;
};

struct flm_forward_state {
    const flm_model *m;
    const flm_kernels *k;
    int n_ctx, n_past, kv_cap;
    float **kcache, **vcache;   /* per (layer, KV head) l*n_kv + h: [kv_cap, hd], so attention
                                   streams one head's keys and values contiguously */
    /* scratch for one chunk */
    float *x;      /* [CHUNK, hidden] residual stream */
    float *xb;     /* [CHUNK, hidden] normed input */
    float *q;      /* [CHUNK, n_heads*hd] */
    float *kv_k;   /* [CHUNK, n_kv*hd] */
    float *kv_v;   /* [CHUNK, n_kv*hd] */
    float *att;    /* [CHUNK, n_heads*hd] attention output */
    float *hb;     /* [CHUNK, inter] gate */
    float *hb2;    /* [CHUNK, inter] up */
    float *scores; /* [n_threads, group, kv_cap]: each thread's scores for one GQA group of heads */
    flm_pool *pool; /* NULL: single-threaded */
    float *inv_freq; /* [hd/2] */
    float *rope_cos, *rope_sin; /* [CHUNK, hd/2]: this chunk's rotations, shared by every layer */
    void *qx[4];      /* X prepared for the int8 products (k->qprep), for q8_0 and q4_0,
                         then for the same in the packed layout (k->qpacked->prep) */
    size_t qx_cap[4];
    struct chunk_range *ranges; /* [n_threads]: each thread's chunks of the current product */
    /* LiteRT dynamic_int8 emulation (flm_forward_set_litert_int8), or NULL */
    const flm_litert_int8 *li8;
    int8_t *i8x;      /* [CHUNK, max cols] the product's input, quantized per row */
    float *i8s;       /* [CHUNK] dequantization scale per row */
    int32_t *i8z;     /* [CHUNK] zero point per row */
    void *emb_row;    /* one embedding row unpacked, when the embedding is packed (tied LM head) */
};

static int n_caches(const flm_forward_state *st) { return st->m->cfg.n_layers * st->m->cfg.n_kv_heads; }

static void free_cache(flm_forward_state *st) {
    if (st->kcache)
        for (int i = 0; i < n_caches(st); i++) { free(st->kcache[i]); free(st->vcache[i]); }
    free(st->kcache);
    free(st->vcache);
}

void flm_forward_free(flm_forward_state *st) {
    if (!st) return;
    free_cache(st);
    free(st->x); free(st->xb); free(st->q); free(st->kv_k); free(st->kv_v);
    free(st->att); free(st->hb); free(st->hb2); free(st->scores); free(st->inv_freq);
    free(st->rope_cos); free(st->rope_sin);
    for (int i = 0; i < 4; i++) free(st->qx[i]);
    free(st->ranges);
    free(st->emb_row);
    free(st->i8x); free(st->i8s); free(st->i8z);
    flm_pool_free(st->pool);
    free(st);
}

int flm_forward_new(const flm_model *m, int n_ctx, flm_forward_state **out) {
    *out = NULL;
    const flm_config *c = &m->cfg;
    if (n_ctx <= 0) n_ctx = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
    if (n_ctx > c->max_position_embeddings)
        return flm_fail(FLM_ERR_ARG, "context length %d exceeds the model's max_position_embeddings %d", n_ctx, c->max_position_embeddings);
    flm_forward_state *st = flm_calloc(1, sizeof *st);
    if (!st) return FLM_ERR_NOMEM;
    st->m = m;
    st->k = flm_kernels_best();
    st->n_ctx = n_ctx;
    size_t H = (size_t)c->hidden_size, Q = (size_t)c->n_heads * (size_t)c->head_dim,
           KV = (size_t)c->n_kv_heads * (size_t)c->head_dim, I = (size_t)c->intermediate_size;
    st->x = flm_malloc(FWD_CHUNK * H * sizeof(float));
    st->xb = flm_malloc(FWD_CHUNK * H * sizeof(float));
    st->q = flm_malloc(FWD_CHUNK * Q * sizeof(float));
    st->kv_k = flm_malloc(FWD_CHUNK * KV * sizeof(float));
    st->kv_v = flm_malloc(FWD_CHUNK * KV * sizeof(float));
    st->att = flm_malloc(FWD_CHUNK * Q * sizeof(float));
    st->hb = flm_malloc(FWD_CHUNK * I * sizeof(float));
    st->hb2 = flm_malloc(FWD_CHUNK * I * sizeof(float));
    st->inv_freq = flm_malloc((size_t)c->head_dim / 2 * sizeof(float));
    st->rope_cos = flm_malloc(FWD_CHUNK * (size_t)c->head_dim / 2 * sizeof(float));
    st->rope_sin = flm_malloc(FWD_CHUNK * (size_t)c->head_dim / 2 * sizeof(float));
    st->ranges = aligned_alloc(64, sizeof *st->ranges);
    st->kcache = flm_calloc((size_t)n_caches(st), sizeof(float *));
    st->vcache = flm_calloc((size_t)n_caches(st), sizeof(float *));
    if (m->embed.layout && !(st->emb_row = flm_malloc(flm_dtype_bytes(m->embed.dtype, (uint64_t)c->hidden_size)))) {
        flm_forward_free(st);
        return FLM_ERR_NOMEM;
    }
    if (!st->x || !st->xb || !st->q || !st->kv_k || !st->kv_v || !st->att || !st->hb || !st->hb2 || !st->inv_freq || !st->rope_cos || !st->rope_sin || !st->ranges || !st->kcache || !st->vcache) {
        flm_forward_free(st);
        return FLM_ERR_NOMEM;
    }
    /* transformers: inv_freq = 1 / theta ** (arange(0, d, 2).float() / d), in float32 */
    for (int i = 0; i < c->head_dim / 2; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        st->inv_freq[i] = (float)(1.0 / pow(c->rope_theta, (double)e));
    }
    *out = st;
    return FLM_OK;
}

void flm_forward_set_kernels(flm_forward_state *st, const flm_kernels *k) { st->k = k; }

int flm_forward_set_litert_int8(flm_forward_state *st, const flm_litert_int8 *q) {
    if (q && (q->n_layers != st->m->cfg.n_layers || q->embed.cols != st->m->cfg.hidden_size))
        return flm_fail(FLM_ERR_ARG, "the int8 weights were made for another model shape");
    if (q && !st->i8x) {
        const flm_config *c = &st->m->cfg;
        int cols = c->hidden_size;
        if (c->intermediate_size > cols) cols = c->intermediate_size;
        if (c->n_heads * c->head_dim > cols) cols = c->n_heads * c->head_dim;
        st->i8x = flm_malloc((size_t)FWD_CHUNK * (size_t)cols);
        st->i8s = flm_malloc(FWD_CHUNK * sizeof *st->i8s);
        st->i8z = flm_malloc(FWD_CHUNK * sizeof *st->i8z);
        if (!st->i8x || !st->i8s || !st->i8z) {
            free(st->i8x); free(st->i8s); free(st->i8z);
            st->i8x = NULL; st->i8s = NULL; st->i8z = NULL;
            return FLM_ERR_NOMEM;
        }
    }
    st->li8 = q;
    return FLM_OK;
}

/* Attention scratch: for each thread, a group of query heads' scores over cap positions. */
static size_t scores_floats(const flm_forward_state *st, int cap, int n_threads) {
    const flm_config *c = &st->m->cfg;
    return (size_t)cap * (size_t)n_threads * (size_t)(c->n_heads / c->n_kv_heads);
}

int flm_forward_set_threads(flm_forward_state *st, int n_threads) {
    flm_pool *p = NULL;
    if (n_threads != 1) {
        int rc = flm_pool_new(n_threads, &p);
        if (rc) return rc;
    }
    struct chunk_range *rg = aligned_alloc(64, (size_t)flm_pool_size(p) * sizeof *rg);
    if (!rg) { flm_pool_free(p); return FLM_ERR_NOMEM; }
    free(st->ranges);
    st->ranges = rg;
    /* the per-thread scores rows must exist for every thread */
    if (st->kv_cap) {
        float *s = flm_realloc(st->scores, scores_floats(st, st->kv_cap, flm_pool_size(p)) * sizeof(float));
        if (!s) { flm_pool_free(p); return FLM_ERR_NOMEM; }
        st->scores = s;
    }
    flm_pool_free(st->pool);
    st->pool = p;
    return FLM_OK;
}

int flm_forward_threads(const flm_forward_state *st) { return flm_pool_size(st->pool); }
int flm_forward_n_past(const flm_forward_state *st) { return st->n_past; }
int flm_forward_n_ctx(const flm_forward_state *st) { return st->n_ctx; }
void flm_forward_truncate(flm_forward_state *st, int n_keep) {
    if (n_keep >= 0 && n_keep < st->n_past) st->n_past = n_keep;
}
size_t flm_forward_kv_bytes(const flm_forward_state *st) {
    const flm_config *c = &st->m->cfg;
    return 2 * (size_t)c->n_layers * (size_t)st->kv_cap * (size_t)c->n_kv_heads * (size_t)c->head_dim * sizeof(float);
}

/* Grows every layer's cache to hold `need` tokens (doubling, capped at n_ctx). */
static int ensure_cache(flm_forward_state *st, int need) {
    if (need <= st->kv_cap) return FLM_OK;
    int cap = st->kv_cap ? st->kv_cap : KV_MIN_CAP;
    while (cap < need) cap *= 2;
    if (cap > st->n_ctx) cap = st->n_ctx;
    const flm_config *c = &st->m->cfg;
    size_t row = (size_t)c->head_dim * sizeof(float);
    for (int i = 0; i < n_caches(st); i++) {
        float *k = flm_realloc(st->kcache[i], (size_t)cap * row);
        if (!k) return FLM_ERR_NOMEM;
        st->kcache[i] = k;
        float *v = flm_realloc(st->vcache[i], (size_t)cap * row);
        if (!v) return FLM_ERR_NOMEM;
        st->vcache[i] = v;
    }
    float *s = flm_realloc(st->scores, scores_floats(st, cap, flm_pool_size(st->pool)) * sizeof(float));
    if (!s) return FLM_ERR_NOMEM;
    st->scores = s;
    st->kv_cap = cap;
    return FLM_OK;
}

/* Up to three products sharing one input X, in one pool job (q/k/v; gate/up).
 * The rows are cut into chunks of about CHUNK_BYTES of weights (a multiple of
 * CHUNK_ROW_MULT rows); each thread owns a contiguous run of chunks and works through it in order,
 * then takes chunks from the end of other threads' runs (struct chunk_range), so a
 * thread that is slowed down (another process on its core, a little core of a
 * big.LITTLE phone) does less instead of holding up the others. Every row is
 * computed by the same kernel from the same inputs whichever thread takes it, so
 * results do not depend on the thread count. For the int8 q8_0/q4_0 products X is
 * quantized once per job (k->qprep) before the chunks run. With swiglu set (gate and
 * up: equal row counts), a chunk is the same rows of both, finished with SwiGLU on
 * them: Y[0] = silu(Y[0]) * Y[1]. */
#define MAX_FUSED 3
#define CHUNK_BYTES (128u << 10)
#define CHUNK_ROW_MULT 48 /* whole row tiles of every kernel: 12- and 48-row float prefill superblocks,
                             4-row int8 panels, 8- and 4-row decode tiles (and 16) */
typedef struct {
    const flm_kernels *k;
    const flm_tensor *W[MAX_FUSED];
    const flm_i8_matrix *Q[MAX_FUSED]; /* LiteRT dynamic_int8 emulation: the int8 copy of W[i], else NULL */
    float *Y[MAX_FUSED];
    int n_mat;
    const float *X;
    int n_tok;
    bool swiglu;
    /* filled by matmul_run */
    const void *Xp[MAX_FUSED];       /* X prepared for matrix i, or NULL (plain matmul) */
    int n_groups;                    /* swiglu: 1 (both matrices), else n_mat */
    int chunk_rows[MAX_FUSED];       /* per group */
    int first[MAX_FUSED + 1];        /* first chunk of each group; first[n_groups] = total */
    struct chunk_range *ranges;      /* one per thread */
    const int8_t *i8x; const float *i8s; const int32_t *i8z; /* X quantized per row for Q */
} matmul_job;

/* Whether the job's table runs W in W's own packed layout (a layout may come with
 * several tables' products, so layouts are compared by their byte moves, not by the
 * table: avx512's "avx512-g16" and avx512-amx's "avx512-r16" differ). */
static bool runs_packed(const flm_kernels *k, const flm_tensor *W) {
    const flm_qpacked_fns *l = W->layout;
    return l && k->qpacked && l->pack_rows == k->qpacked->pack_rows && l->unpack_row == k->qpacked->unpack_row;
}

/* Rows [r0, r1) of a matrix packed for another table than the one running (a table
 * switched after loading): unpacked a few rows at a time, then the table's matmul.
 * Out of memory here (a path for tests and table experiments) gives NaN outputs rather
 * than stale ones. */
static void rows_unpacked(const matmul_job *j, const flm_tensor *W, float *Y, int r0, int r1) {
    enum { STEP = 16 };
    int rows = (int)W->shape[0], cols = (int)W->shape[1];
    size_t rb = flm_dtype_bytes(W->dtype, (uint64_t)cols);
    unsigned char *buf = malloc(STEP * rb);
    if (!buf) {
        for (int t = 0; t < j->n_tok; t++)
            for (int r = r0; r < r1; r++) Y[(size_t)t * (size_t)rows + (size_t)r] = NAN;
        return;
    }
    for (int r = r0; r < r1; r += STEP) {
        int n = r1 - r < STEP ? r1 - r : STEP;
        for (int i = 0; i < n; i++) {
            const void *p = flm_tensor_plain_row(W, r + i, buf + (size_t)i * rb);
            if (p != buf + (size_t)i * rb) memcpy(buf + (size_t)i * rb, p, rb);
        }
        j->k->matmul[W->dtype](buf, j->X, Y + r, j->n_tok, cols, rows, 0, n);
    }
    free(buf);
}

static void rows_of(const matmul_job *j, int i, int r0, int r1) {
    const flm_tensor *W = j->W[i];
    int rows = (int)W->shape[0], cols = (int)W->shape[1];
    if (j->Q[i]) flm_i8_hybrid_rows(j->Q[i], j->i8x, j->i8s, j->i8z, j->Y[i], j->n_tok, r0, r1);
    else if (j->Xp[i] && W->layout) j->k->qpacked->run(W->dtype, W->data, j->Xp[i], j->Y[i], j->n_tok, rows, cols, rows, r0, r1);
    else if (j->Xp[i]) j->k->qrun(W->dtype, W->data, j->Xp[i], j->Y[i], j->n_tok, cols, rows, r0, r1);
    else if (W->layout) rows_unpacked(j, W, j->Y[i], r0, r1);
    else j->k->matmul[W->dtype](W->data, j->X, j->Y[i], j->n_tok, cols, rows, r0, r1);
}

static void run_chunk(const matmul_job *j, int c) {
    int g = 0;
    while (c >= j->first[g + 1]) g++;
    int rows = (int)j->W[g]->shape[0], r0 = (c - j->first[g]) * j->chunk_rows[g];
    int r1 = r0 + j->chunk_rows[g] < rows ? r0 + j->chunk_rows[g] : rows;
    if (!j->swiglu) { rows_of(j, g, r0, r1); return; }
    rows_of(j, 0, r0, r1);
    rows_of(j, 1, r0, r1);
    for (int t = 0; t < j->n_tok; t++) {
        float *gt = j->Y[0] + (size_t)t * (size_t)rows + (size_t)r0;
        j->k->swiglu(gt, gt, j->Y[1] + (size_t)t * (size_t)rows + (size_t)r0, r1 - r0);
    }
}

/* Takes the next chunk of range r: from the front (own) or the back (another's); -1 if empty. */
static int take_chunk(struct chunk_range *r, bool own) {
    uint64_t v = atomic_load_explicit(&r->fb, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b) return -1;
        uint64_t nv = own ? v + 1 : ((uint64_t)(b - 1) << 32) | f;
        if (atomic_compare_exchange_weak_explicit(&r->fb, &v, nv, memory_order_relaxed, memory_order_relaxed))
            return own ? (int)f : (int)(b - 1);
    }
}

static void matmul_part(void *ctx, int ith, int nth) {
    const matmul_job *j = ctx;
    for (int c; (c = take_chunk(&j->ranges[ith], true)) >= 0;) run_chunk(j, c);
    for (int o = 1; o < nth; o++) /* then help the others, from the ends of their runs */
        for (int c; (c = take_chunk(&j->ranges[(ith + o) % nth], false)) >= 0;) run_chunk(j, c);
}

/* X quantized for the int8 products of W's dtype and layout into the state's buffer,
 * or NULL (float path; a layout this table does not run; or out of memory: the
 * kernels then quantize per call). */
static const void *prepare_x(flm_forward_state *st, const flm_tensor *W, const float *X, int n_tok, int cols) {
    const flm_kernels *k = st->k;
    flm_dtype dt = W->dtype;
    if (!k->qprep || (dt != FLM_Q8_0 && dt != FLM_Q4_0)) return NULL;
    if (W->layout && !runs_packed(k, W)) return NULL;
    int slot = (dt == FLM_Q4_0) + (W->layout ? 2 : 0);
    size_t (*bytes)(int, int, int) = W->layout ? k->qpacked->prep_bytes : k->qprep_bytes;
    void (*prep)(int, const float *, int, int, void *) = W->layout ? k->qpacked->prep : k->qprep;
    size_t need = (bytes(dt, n_tok, cols) + 63) & ~(size_t)63;
    if (need > st->qx_cap[slot]) {
        void *p = aligned_alloc(64, need);
        if (!p) return NULL;
        free(st->qx[slot]);
        st->qx[slot] = p;
        st->qx_cap[slot] = need;
    }
    prep(dt, X, n_tok, cols, st->qx[slot]);
    return st->qx[slot];
}

static void matmul_run(flm_forward_state *st, matmul_job *j) {
    if (j->Q[0]) { /* emulation: X quantized per row once for the job's products (they share X) */
        int cols = j->Q[0]->cols;
        for (int t = 0; t < j->n_tok; t++)
            st->i8s[t] = flm_quantize_row_i8_asym(j->X + (size_t)t * (size_t)cols, st->i8x + (size_t)t * (size_t)cols, cols, &st->i8z[t]);
        j->i8x = st->i8x; j->i8s = st->i8s; j->i8z = st->i8z;
    }
    for (int i = 0; i < j->n_mat; i++) { /* X prepared once per weight type and layout */
        int e = 0;
        while (e < i && (j->W[e]->dtype != j->W[i]->dtype || j->W[e]->layout != j->W[i]->layout)) e++;
        j->Xp[i] = j->Q[i] ? NULL : e < i ? j->Xp[e] : prepare_x(st, j->W[i], j->X, j->n_tok, (int)j->W[i]->shape[1]);
    }
    j->n_groups = j->swiglu ? 1 : j->n_mat;
    j->first[0] = 0;
    for (int g = 0; g < j->n_groups; g++) {
        int rows = (int)j->W[g]->shape[0];
        size_t row_bytes = flm_dtype_bytes(j->W[g]->dtype, (uint64_t)j->W[g]->shape[1]) * (j->swiglu ? 2 : 1);
        size_t cr = row_bytes ? CHUNK_BYTES / row_bytes : (size_t)rows;
        cr = (cr + CHUNK_ROW_MULT - 1) / CHUNK_ROW_MULT * CHUNK_ROW_MULT;
        if (cr < CHUNK_ROW_MULT) cr = CHUNK_ROW_MULT;
        j->chunk_rows[g] = (int)cr;
        j->first[g + 1] = j->first[g] + (int)(((size_t)rows + cr - 1) / cr);
    }
    int nth = flm_pool_size(st->pool), total = j->first[j->n_groups];
    for (int i = 0; i < nth; i++) {
        uint64_t f = (uint64_t)total * (uint64_t)i / (uint64_t)nth, b = (uint64_t)total * (uint64_t)(i + 1) / (uint64_t)nth;
        atomic_store_explicit(&st->ranges[i].fb, (b << 32) | f, memory_order_relaxed);
    }
    j->ranges = st->ranges;
    flm_pool_run(st->pool, matmul_part, j);
}

static void matmul(flm_forward_state *st, const flm_tensor *W, const flm_i8_matrix *Q, const float *X, float *Y, int n_tok) {
    matmul_job j = {.k = st->k, .W = {W}, .Q = {Q}, .Y = {Y}, .n_mat = 1, .X = X, .n_tok = n_tok};
    matmul_run(st, &j);
}

/* The rotation of position pos: cos and sin of pos * inv_freq[i], as transformers
 * computes them (float32 angle, then cos/sin). */
static void rope_angles(int pos, const float *inv_freq, int half, float *cs, float *sn) {
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        cs[i] = (float)cos((double)angle);
        sn[i] = (float)sin((double)angle);
    }
}

typedef struct {
    flm_forward_state *st;
    const flm_layer *L;
    int layer, n, p0;
    const float *norm_w; /* residual_norm_part: the RMSNorm weight, or NULL */
    bool add;            /* residual_norm_part: x += xb first */
} layer_job;

/* Per token (round-robin): x += xb (the block's output) if add, then, with norm_w,
 * xb = rmsnorm(x) * norm_w, the next block's input. */
static void residual_norm_part(void *ctx, int ith, int nth) {
    const layer_job *j = ctx;
    flm_forward_state *st = j->st;
    int H = st->m->cfg.hidden_size;
    float eps = (float)st->m->cfg.rms_norm_eps;
    for (int t = ith; t < j->n; t += nth) {
        float *x = st->x + (size_t)t * H, *xb = st->xb + (size_t)t * H;
        if (j->add)
            for (int i = 0; i < H; i++) x[i] += xb[i];
        if (j->norm_w) st->k->rmsnorm(xb, x, j->norm_w, H, eps);
    }
}

/* After the q/k/v products, per token (tokens dealt round-robin): biases, rotary
 * embedding, and k/v appended to the cache. */
static void qkv_finish_part(void *ctx, int ith, int nth) {
    const layer_job *j = ctx;
    flm_forward_state *st = j->st;
    const flm_config *c = &st->m->cfg;
    int hd = c->head_dim, Q = c->n_heads * hd, KV = c->n_kv_heads * hd, half = hd / 2;
    const float *bq = j->L->bq.data, *bk = j->L->bk.data, *bv = j->L->bv.data;
    for (int t = ith; t < j->n; t += nth) {
        float *q = st->q + (size_t)t * Q, *kk = st->kv_k + (size_t)t * KV, *vv = st->kv_v + (size_t)t * KV;
        for (int i = 0; i < Q; i++) q[i] += bq[i];
        for (int i = 0; i < KV; i++) { kk[i] += bk[i]; vv[i] += bv[i]; }
        const float *cs = st->rope_cos + (size_t)t * half, *sn = st->rope_sin + (size_t)t * half;
        st->k->rope(q, c->n_heads, hd, cs, sn);
        st->k->rope(kk, c->n_kv_heads, hd, cs, sn);
        for (int h = 0; h < c->n_kv_heads; h++) {
            size_t at = (size_t)(j->p0 + t) * (size_t)hd;
            memcpy(st->kcache[j->layer * c->n_kv_heads + h] + at, kk + (size_t)h * hd, (size_t)hd * sizeof(float));
            memcpy(st->vcache[j->layer * c->n_kv_heads + h] + at, vv + (size_t)h * hd, (size_t)hd * sizeof(float));
        }
    }
}

typedef struct {
    flm_forward_state *st;
    int layer, n, p0;
    int sub; /* query heads per unit of work (a GQA group, or part of one) */
    _Atomic int next; /* next unit to take */
} attn_job;

/* Causal GQA attention. A unit of work is (token, KV head, up to `sub` of the
 * query heads sharing it), so K and V are read once for the heads of a unit; threads
 * take units from a shared counter, each with its own scores scratch. Token t sees
 * positions 0..p0+t. A head's result does not depend on `sub` (kernels.h). */
static void attention_part(void *ctx, int ith, int nth) {
    (void)nth;
    attn_job *j = ctx;
    flm_forward_state *st = j->st;
    const flm_config *c = &st->m->cfg;
    int hd = c->head_dim, nkv = c->n_kv_heads, Q = c->n_heads * hd, group = c->n_heads / nkv;
    int per_kv = (group + j->sub - 1) / j->sub, units = j->n * nkv * per_kv;
    float scale = 1.0f / sqrtf((float)hd);
    float *scores = st->scores + (size_t)ith * (size_t)group * (size_t)st->kv_cap;
    float *const *kc = st->kcache + (size_t)j->layer * nkv, *const *vc = st->vcache + (size_t)j->layer * nkv;
    for (int u; (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < units;) {
        int t = u / (nkv * per_kv), r = u % (nkv * per_kv), kvh = r / per_kv, part = r % per_kv;
        int h0 = kvh * group + part * j->sub, nq = group - part * j->sub < j->sub ? group - part * j->sub : j->sub;
        size_t off = (size_t)t * (size_t)Q + (size_t)h0 * (size_t)hd;
        flm_attend(st->k, st->q + off, nq, kc[kvh], vc[kvh], j->p0 + t + 1, (size_t)hd, hd, scale, scores, st->att + off);
    }
}

/* Query heads per attention unit: whole GQA groups, halved until every thread has a unit. */
static int attention_sub(const flm_config *c, int n_tok, int n_threads) {
    int group = c->n_heads / c->n_kv_heads, sub = group;
    while (sub > 1 && n_tok * c->n_kv_heads * ((group + sub - 1) / sub) < n_threads) sub = (sub + 1) / 2;
    return sub;
}

/* Embedding rows to float; a packed (tied) embedding's rows are unpacked into buf first. */
static void embed_rows(const flm_tensor *emb, const int32_t *ids, int n, float *out, int hidden, void *buf) {
    const flm_dtype_info *d = flm_dtype_get(emb->dtype);
    for (int t = 0; t < n; t++)
        d->to_float(flm_tensor_plain_row(emb, ids[t], buf), out + (size_t)t * (size_t)hidden, (size_t)hidden);
}

static void forward_chunk(flm_forward_state *st, const int32_t *ids, int n, float *logits, flm_logits_mode mode) {
    const flm_model *m = st->m;
    const flm_config *c = &m->cfg;
    int H = c->hidden_size, hd = c->head_dim;
    int p0 = st->n_past;

    for (int t = 0; t < n; t++)
        rope_angles(p0 + t, st->inv_freq, hd / 2, st->rope_cos + (size_t)t * (hd / 2), st->rope_sin + (size_t)t * (hd / 2));
    if (st->li8)
        for (int t = 0; t < n; t++) flm_i8_embed_row(&st->li8->embed, ids[t], st->x + (size_t)t * (size_t)H);
    else embed_rows(&m->embed, ids, n, st->x, H, st->emb_row);
    layer_job lj = {st, &m->layers[0], 0, n, p0, m->layers[0].attn_norm.data, false};
    flm_pool_run(st->pool, residual_norm_part, &lj);
    for (int l = 0; l < c->n_layers; l++) {
        const flm_layer *L = &m->layers[l];
        const flm_i8_layer *QL = st->li8 ? &st->li8->layers[l] : NULL;
        lj.L = L;
        lj.layer = l;
        /* xb = attn_norm(x) here */
        matmul_job qkv = {.k = st->k, .W = {&L->wq, &L->wk, &L->wv}, .Q = {QL ? &QL->wq : NULL, QL ? &QL->wk : NULL, QL ? &QL->wv : NULL}, .Y = {st->q, st->kv_k, st->kv_v}, .n_mat = 3, .X = st->xb, .n_tok = n};
        matmul_run(st, &qkv);
        flm_pool_run(st->pool, qkv_finish_part, &lj);
        attn_job aj = {.st = st, .layer = l, .n = n, .p0 = p0, .sub = attention_sub(c, n, flm_pool_size(st->pool))};
        flm_pool_run(st->pool, attention_part, &aj);
        matmul(st, &L->wo, QL ? &QL->wo : NULL, st->att, st->xb, n);
        lj.norm_w = L->ffn_norm.data;
        lj.add = true;
        flm_pool_run(st->pool, residual_norm_part, &lj);
        matmul_job ffn = {.k = st->k, .W = {&L->w_gate, &L->w_up}, .Q = {QL ? &QL->w_gate : NULL, QL ? &QL->w_up : NULL}, .Y = {st->hb, st->hb2}, .n_mat = 2, .X = st->xb, .n_tok = n, .swiglu = true};
        matmul_run(st, &ffn); /* hb = silu(xb Wg) * (xb Wu) */
        matmul(st, &L->w_down, QL ? &QL->w_down : NULL, st->hb, st->xb, n);
        /* x += xb, then the next layer's attn_norm (or the final norm, when logits follow) */
        bool last_layer = l + 1 == c->n_layers;
        if (!last_layer) lj.norm_w = m->layers[l + 1].attn_norm.data;
        else lj.norm_w = mode == FLM_LOGITS_NONE || !logits ? NULL : m->final_norm.data;
        flm_pool_run(st->pool, residual_norm_part, &lj);
    }
    st->n_past += n;
    if (mode == FLM_LOGITS_NONE || !logits) return;
    /* xb = final_norm(x) for every token of the chunk */
    int first = mode == FLM_LOGITS_ALL ? 0 : n - 1;
    matmul(st, &m->lm_head, st->li8 ? &st->li8->lm_head : NULL, st->xb + (size_t)first * H, logits, n - first);
}

int flm_forward(flm_forward_state *st, const int32_t *ids, int n, float *logits, flm_logits_mode mode) {
    const flm_config *c = &st->m->cfg;
    if (n <= 0) return flm_fail(FLM_ERR_ARG, "no tokens to process");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return flm_fail(FLM_ERR_ARG, "token id %d at position %d is outside the vocabulary (0..%d)", ids[i], i, c->vocab_size - 1);
    if (n > st->n_ctx - st->n_past)
        return flm_fail(FLM_ERR_CONTEXT, "%d tokens do not fit in the context: %d of %d positions are used (choose a larger context with -c/--ctx, up to %d)",
                        n, st->n_past, st->n_ctx, c->max_position_embeddings);
    int rc = ensure_cache(st, st->n_past + n);
    if (rc) return rc;
    size_t V = (size_t)c->vocab_size;
    for (int done = 0; done < n;) {
        int chunk = n - done < FWD_CHUNK ? n - done : FWD_CHUNK;
        bool last = done + chunk == n;
        if (mode == FLM_LOGITS_ALL) forward_chunk(st, ids + done, chunk, logits + (size_t)done * V, FLM_LOGITS_ALL);
        else forward_chunk(st, ids + done, chunk, logits, last ? mode : FLM_LOGITS_NONE);
        done += chunk;
    }
    return FLM_OK;
}
