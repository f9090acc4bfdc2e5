/* litert.c — the Qwen2 graph for LiteRT (see litert.h) and the streaming writer.
 *
 * The flatbuffer is built twice: once with zero quantization scales and weight
 * offsets counted from 0, which gives its size (every field that changes between
 * the two builds has a fixed width: forced u64 offsets, float scale vectors of a
 * known length), then again with the real scales and offsets once every weight
 * has been streamed after the reserved room; the second build is written over
 * the room with pwrite. One weight is in memory at a time. */
#include "convert/litert.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/common.h"
#include "base/outfile.h"
#include "convert/convert_src.h"
#include "format/flatbuf.h"
#include "format/litertlm.h"
#include "format/tflite.h"
#include "kernels/quant.h"
#include "base/json.h"

#define WEIGHT_ALIGN 64

/* ---- the weights ---- */
typedef struct {
    char hf_name[128];
    const flm_tensor *src;
    int type;           /* TFLite tensor type of the stored data */
    int64_t rows, cols; /* a 1-D tensor is 1 x n */
    int ndim;
    bool lora;
    float *scales;      /* [rows] for int8 (filled while streaming) */
    uint64_t offset, size;
    /* per build */
    uint32_t buffer;
    flm_fb_ref tensor;
} weight;

/* A constant shared by every signature (shape tensors, position range, ...). */
typedef struct {
    int type, ndim;
    int32_t shape[4];
    unsigned char *data;
    size_t bytes;
    uint32_t buffer;
    flm_fb_ref tensor;
} konst;

typedef struct {
    const flm_config *c;
    flm_litert_recipe recipe;
    int S;
    int prefill[FLM_LITERT_MAX_PREFILL];
    int n_prefill;
    weight *w;
    int n_w;
    int w_embed, w_final_norm, w_lm_head; /* indices into w */
    int *w_layer;                         /* [n_layers][W_LAYER_COUNT] */
    konst *k;
    int n_k, cap_k;
    /* the build */
    flm_fb_builder fb;
    flm_fb_ref *buffers;
    int n_buffers, cap_buffers;
    int opcodes[64];
    int n_opcodes;
    bool nomem;
} model_ctx;

/* One subgraph under construction. */
typedef struct {
    model_ctx *m;
    flm_fb_ref *tensors;
    int32_t (*shape)[4];
    int *ndim, *type;
    int n_t, cap_t;
    flm_fb_ref *ops;
    int n_ops, cap_ops;
    int *w_index; /* weight → tensor index in this subgraph (-1: not yet) */
    int *k_index; /* constant → tensor index */
    int cap_k_index;
} sub;

static bool grow_arr(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

static uint32_t add_buffer_inline(model_ctx *m, const void *data, size_t n) {
    if (!grow_arr((void **)&m->buffers, &m->cap_buffers, m->n_buffers + 1, sizeof *m->buffers)) { m->nomem = true; return 0; }
    flm_fb_ref d = n ? flm_fb_vector(&m->fb, data, n, 1, 16) : 0;
    flm_fb_table_start(&m->fb);
    flm_fb_add_ref(&m->fb, 0, d);
    m->buffers[m->n_buffers] = flm_fb_table_end(&m->fb);
    return (uint32_t)m->n_buffers++;
}

static uint32_t add_buffer_external(model_ctx *m, uint64_t offset, uint64_t size) {
    if (!grow_arr((void **)&m->buffers, &m->cap_buffers, m->n_buffers + 1, sizeof *m->buffers)) { m->nomem = true; return 0; }
    flm_fb_table_start(&m->fb);
    flm_fb_add_u64(&m->fb, 1, offset, 0, true);
    flm_fb_add_u64(&m->fb, 2, size, 0, true);
    m->buffers[m->n_buffers] = flm_fb_table_end(&m->fb);
    return (uint32_t)m->n_buffers++;
}

static int opcode_index(model_ctx *m, int code) {
    for (int i = 0; i < m->n_opcodes; i++)
        if (m->opcodes[i] == code) return i;
    m->opcodes[m->n_opcodes] = code;
    return m->n_opcodes++;
}

/* A Tensor table. quant: scales (n) with zero points 0 on dimension 0, or NULL. */
static flm_fb_ref tensor_table(model_ctx *m, const char *name, int type, const int32_t *shape, int ndim, uint32_t buffer,
                               const float *scales, int64_t n_scales) {
    flm_fb_builder *b = &m->fb;
    flm_fb_ref q = 0;
    if (scales) {
        flm_fb_ref sv = flm_fb_vector(b, scales, (size_t)n_scales, 4, 4);
        int64_t *zp = calloc((size_t)n_scales, sizeof *zp);
        if (!zp) { m->nomem = true; return 0; }
        flm_fb_ref zv = flm_fb_vector(b, zp, (size_t)n_scales, 8, 8);
        free(zp);
        flm_fb_table_start(b);
        flm_fb_add_ref(b, 2, sv);
        flm_fb_add_ref(b, 3, zv);
        flm_fb_add_i32(b, 6, 0, 0, true);
        q = flm_fb_table_end(b);
    }
    flm_fb_ref nm = name ? flm_fb_cstring(b, name) : 0;
    flm_fb_ref sh = flm_fb_vector(b, shape, (size_t)ndim, 4, 4);
    flm_fb_table_start(b);
    flm_fb_add_ref(b, 0, sh);
    flm_fb_add_u8(b, 1, (uint8_t)type, 0, true);
    flm_fb_add_u32(b, 2, buffer, 0, true);
    flm_fb_add_ref(b, 3, nm);
    flm_fb_add_ref(b, 4, q);
    return flm_fb_table_end(b);
}

/* ---- subgraph building ---- */

static int sub_tensor_ref(sub *g, flm_fb_ref ref, int type, const int32_t *shape_in, int ndim) {
    int32_t shape[4] = {0, 0, 0, 0}; /* shape_in may point into g->shape, which may move below */
    memcpy(shape, shape_in, (size_t)ndim * sizeof *shape);
    if (!grow_arr((void **)&g->tensors, &g->cap_t, g->n_t + 1, sizeof *g->tensors) ||
        !(g->shape = realloc(g->shape, (size_t)g->cap_t * sizeof *g->shape)) ||
        !(g->ndim = realloc(g->ndim, (size_t)g->cap_t * sizeof *g->ndim)) ||
        !(g->type = realloc(g->type, (size_t)g->cap_t * sizeof *g->type))) {
        g->m->nomem = true;
        return 0;
    }
    g->tensors[g->n_t] = ref;
    memset(g->shape[g->n_t], 0, sizeof g->shape[g->n_t]);
    memcpy(g->shape[g->n_t], shape, (size_t)ndim * sizeof *shape);
    g->ndim[g->n_t] = ndim;
    g->type[g->n_t] = type;
    return g->n_t++;
}

/* A new activation tensor. */
static int t_new(sub *g, const char *name, int type, const int32_t *shape, int ndim) {
    flm_fb_ref r = tensor_table(g->m, name, type, shape, ndim, 0, NULL, 0);
    return sub_tensor_ref(g, r, type, shape, ndim);
}

/* A shared constant (deduplicated by type, shape and content). */
static int t_const(sub *g, int type, const int32_t *shape, int ndim, const void *data, size_t bytes) {
    model_ctx *m = g->m;
    int ki = -1;
    for (int i = 0; i < m->n_k && ki < 0; i++) {
        konst *k = &m->k[i];
        if (k->type == type && k->ndim == ndim && !memcmp(k->shape, shape, (size_t)ndim * 4) && k->bytes == bytes &&
            !memcmp(k->data, data, bytes))
            ki = i;
    }
    if (ki < 0) {
        if (!grow_arr((void **)&m->k, &m->cap_k, m->n_k + 1, sizeof *m->k)) { m->nomem = true; return 0; }
        konst *k = &m->k[m->n_k];
        memset(k, 0, sizeof *k);
        k->type = type;
        k->ndim = ndim;
        memcpy(k->shape, shape, (size_t)ndim * 4);
        if (!(k->data = malloc(bytes ? bytes : 1))) { m->nomem = true; return 0; }
        memcpy(k->data, data, bytes);
        k->bytes = bytes;
        ki = m->n_k++;
    }
    konst *k = &m->k[ki];
    if (!k->tensor) {
        k->buffer = add_buffer_inline(m, k->data, k->bytes);
        char name[32];
        snprintf(name, sizeof name, "const_%d", ki);
        k->tensor = tensor_table(m, name, type, k->shape, ndim, k->buffer, NULL, 0);
    }
    if (ki >= g->cap_k_index) {
        int old = g->cap_k_index;
        if (!grow_arr((void **)&g->k_index, &g->cap_k_index, ki + 1, sizeof *g->k_index)) { m->nomem = true; return 0; }
        for (int i = old; i < g->cap_k_index; i++) g->k_index[i] = -1;
    }
    if (g->k_index[ki] < 0) g->k_index[ki] = sub_tensor_ref(g, k->tensor, type, k->shape, ndim);
    return g->k_index[ki];
}

static int c_i32(sub *g, const int32_t *v, int n) {
    int32_t sh[1] = {n};
    return t_const(g, TFL_INT32, sh, 1, v, (size_t)n * 4);
}

static int c_f32_scalar(sub *g, float v) {
    int32_t sh[1] = {1};
    return t_const(g, TFL_FLOAT32, sh, 1, &v, 4);
}

static int t_weight(sub *g, int wi) {
    weight *w = &g->m->w[wi];
    int32_t sh[2] = {(int32_t)w->rows, (int32_t)w->cols};
    int nd = w->ndim;
    if (nd == 1) sh[0] = (int32_t)w->cols;
    if (g->w_index[wi] < 0) g->w_index[wi] = sub_tensor_ref(g, w->tensor, w->type, sh, nd);
    return g->w_index[wi];
}

static void op(sub *g, int code, const int *in, int nin, const int *out, int nout, int opt_type, flm_fb_ref opt) {
    model_ctx *m = g->m;
    flm_fb_builder *b = &m->fb;
    flm_fb_ref iv = flm_fb_vector(b, in, (size_t)nin, 4, 4), ov = flm_fb_vector(b, out, (size_t)nout, 4, 4);
    flm_fb_table_start(b);
    flm_fb_add_u32(b, 0, (uint32_t)opcode_index(m, code), 0, false);
    flm_fb_add_ref(b, 1, iv);
    flm_fb_add_ref(b, 2, ov);
    if (opt) {
        flm_fb_add_u8(b, 3, (uint8_t)opt_type, 0, true);
        flm_fb_add_ref(b, 4, opt);
    }
    flm_fb_ref r = flm_fb_table_end(b);
    if (!grow_arr((void **)&g->ops, &g->cap_ops, g->n_ops + 1, sizeof *g->ops)) { m->nomem = true; return; }
    g->ops[g->n_ops++] = r;
}

/* Options tables. */
static flm_fb_ref opt_empty(model_ctx *m) {
    flm_fb_table_start(&m->fb);
    return flm_fb_table_end(&m->fb);
}
static flm_fb_ref opt_i32(model_ctx *m, int slot, int32_t v) {
    flm_fb_table_start(&m->fb);
    flm_fb_add_i32(&m->fb, slot, v, 0, true);
    return flm_fb_table_end(&m->fb);
}
static flm_fb_ref opt_bool(model_ctx *m, int slot, bool v) {
    flm_fb_table_start(&m->fb);
    flm_fb_add_u8(&m->fb, slot, v, 0, true);
    return flm_fb_table_end(&m->fb);
}

static void bshape(sub *g, int a, int b, int32_t *out, int *nd) {
    int na = g->ndim[a], nb = g->ndim[b], n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int32_t da = ia >= 0 ? g->shape[a][ia] : 1, db = ib >= 0 ? g->shape[b][ib] : 1;
        out[i] = da > db ? da : db;
    }
    *nd = n;
}

static int binary(sub *g, int code, int a, int b, const char *name) {
    int32_t sh[4];
    int nd;
    bshape(g, a, b, sh, &nd);
    int o = t_new(g, name, TFL_FLOAT32, sh, nd);
    int in[2] = {a, b};
    int opt_type = code == TFL_OP_ADD ? TFL_OPT_ADD : code == TFL_OP_MUL ? TFL_OPT_MUL : TFL_OPT_SUB;
    op(g, code, in, 2, &o, 1, opt_type, opt_empty(g->m));
    return o;
}

static int unary(sub *g, int code, int a, const char *name) {
    int o = t_new(g, name, g->type[a], g->shape[a], g->ndim[a]);
    op(g, code, &a, 1, &o, 1, 0, 0);
    return o;
}

static int reshape(sub *g, int a, const int32_t *shape, int nd, const char *name) {
    int s = c_i32(g, shape, nd);
    int o = t_new(g, name, g->type[a], shape, nd);
    int in[2] = {a, s};
    flm_fb_ref nv = flm_fb_vector(&g->m->fb, shape, (size_t)nd, 4, 4);
    flm_fb_table_start(&g->m->fb);
    flm_fb_add_ref(&g->m->fb, 0, nv);
    op(g, TFL_OP_RESHAPE, in, 2, &o, 1, TFL_OPT_RESHAPE, flm_fb_table_end(&g->m->fb));
    return o;
}

static int transpose(sub *g, int a, const int32_t *perm, const char *name) {
    int nd = g->ndim[a];
    int32_t sh[4];
    for (int i = 0; i < nd; i++) sh[i] = g->shape[a][perm[i]];
    int p = c_i32(g, perm, nd);
    int o = t_new(g, name, g->type[a], sh, nd);
    int in[2] = {a, p};
    op(g, TFL_OP_TRANSPOSE, in, 2, &o, 1, TFL_OPT_TRANSPOSE, opt_empty(g->m));
    return o;
}

static int slice(sub *g, int a, const int32_t *begin, const int32_t *size, const char *name) {
    int nd = g->ndim[a];
    int bi = c_i32(g, begin, nd), si = c_i32(g, size, nd);
    int o = t_new(g, name, g->type[a], size, nd);
    int in[3] = {a, bi, si};
    op(g, TFL_OP_SLICE, in, 3, &o, 1, TFL_OPT_SLICE, opt_empty(g->m));
    return o;
}

static int concat(sub *g, const int *parts, int n, int axis, const char *name) {
    int32_t sh[4];
    int nd = g->ndim[parts[0]];
    memcpy(sh, g->shape[parts[0]], sizeof sh);
    for (int i = 1; i < n; i++) sh[axis] += g->shape[parts[i]][axis];
    int o = t_new(g, name, g->type[parts[0]], sh, nd);
    op(g, TFL_OP_CONCATENATION, parts, n, &o, 1, TFL_OPT_CONCATENATION, opt_i32(g->m, 0, axis));
    return o;
}

/* y = x W^T (+ bias): x [T, in], weight wi [out, in]. */
static int fc(sub *g, int x, int wi, int bias_wi, const char *name) {
    model_ctx *m = g->m;
    int w = t_weight(g, wi);
    int in[3] = {x, w, bias_wi >= 0 ? t_weight(g, bias_wi) : -1};
    int32_t sh[2] = {g->shape[x][0], (int32_t)m->w[wi].rows};
    if (m->w[wi].type == TFL_FLOAT16 || (m->w[wi].type == TFL_INT8 && m->recipe == FLM_LITERT_WEIGHT_ONLY_INT8)) {
        int32_t wsh[2] = {(int32_t)m->w[wi].rows, (int32_t)m->w[wi].cols};
        int d = t_new(g, NULL, TFL_FLOAT32, wsh, 2);
        op(g, TFL_OP_DEQUANTIZE, &w, 1, &d, 1, 0, 0);
        in[1] = d;
    }
    int o = t_new(g, name, TFL_FLOAT32, sh, 2);
    flm_fb_builder *b = &m->fb;
    flm_fb_table_start(b);
    flm_fb_add_u8(b, 3, m->recipe == FLM_LITERT_DYNAMIC_INT8, 0, false); /* asymmetric_quantize_inputs */
    op(g, TFL_OP_FULLY_CONNECTED, in, 3, &o, 1, TFL_OPT_FULLY_CONNECTED, flm_fb_table_end(b));
    return o;
}

/* RMSNorm over the last axis of x [T, H] with weight wi. */
static int rms_norm(sub *g, int x, int wi, const char *name) {
    model_ctx *m = g->m;
    int sq = binary(g, TFL_OP_MUL, x, x, NULL);
    int32_t axis = 1, msh[2] = {g->shape[x][0], 1};
    int ax = c_i32(g, &axis, 1);
    int ms = t_new(g, NULL, TFL_FLOAT32, msh, 2);
    int in[2] = {sq, ax};
    op(g, TFL_OP_MEAN, in, 2, &ms, 1, TFL_OPT_REDUCER, opt_bool(m, 0, true));
    int e = binary(g, TFL_OP_ADD, ms, c_f32_scalar(g, (float)m->c->rms_norm_eps), NULL);
    int r = unary(g, TFL_OP_RSQRT, e, NULL);
    int y = binary(g, TFL_OP_MUL, x, r, NULL);
    return binary(g, TFL_OP_MUL, y, t_weight(g, wi), name);
}

/* NEOX rotary on x [T, N, D] with cos/sin [T, 1, D/2]. */
static int rope(sub *g, int x, int cs, int sn) {
    int32_t T = g->shape[x][0], N = g->shape[x][1], D = g->shape[x][2], h = D / 2;
    int32_t b0[3] = {0, 0, 0}, b1[3] = {0, 0, h}, sz[3] = {T, N, h};
    int x1 = slice(g, x, b0, sz, NULL), x2 = slice(g, x, b1, sz, NULL);
    int r1 = binary(g, TFL_OP_SUB, binary(g, TFL_OP_MUL, x1, cs, NULL), binary(g, TFL_OP_MUL, x2, sn, NULL), NULL);
    int r2 = binary(g, TFL_OP_ADD, binary(g, TFL_OP_MUL, x2, cs, NULL), binary(g, TFL_OP_MUL, x1, sn, NULL), NULL);
    int parts[2] = {r1, r2};
    return concat(g, parts, 2, 2, NULL);
}

#define LW(m, l, w) ((m)->w_layer[(l) * W_LAYER_COUNT + (w)])

/* Builds the subgraph of one signature (T tokens; decode when is_decode) and its SignatureDef. */
static int build_signature(model_ctx *m, int T, bool is_decode, uint32_t sub_index, flm_fb_ref *sub_out, flm_fb_ref *sig_out) {
    const flm_config *c = m->c;
    sub G;
    memset(&G, 0, sizeof G);
    sub *g = &G;
    g->m = m;
    g->w_index = malloc((size_t)m->n_w * sizeof *g->w_index);
    if (!g->w_index) return FLM_ERR_NOMEM;
    for (int i = 0; i < m->n_w; i++) g->w_index[i] = -1;
    int L = c->n_layers, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim, HD = c->hidden_size, G_ = H / KV, S = m->S;
    int n_in = 2 + 2 * L, n_out = 2 * L + (is_decode ? 1 : 0);
    int *ins = calloc((size_t)n_in, sizeof *ins), *outs = calloc((size_t)n_out, sizeof *outs);
    char **in_names = calloc((size_t)n_in, sizeof *in_names), **out_names = calloc((size_t)n_out, sizeof *out_names);
    if (!ins || !outs || !in_names || !out_names) { m->nomem = true; goto out; }
    char nm[64];

    int32_t sh_tok[2] = {1, T}, sh_pos[1] = {T}, sh_kv[4] = {1, S, KV, D};
    int tokens = t_new(g, "tokens", TFL_INT32, sh_tok, 2), input_pos = t_new(g, "input_pos", TFL_INT32, sh_pos, 1);
    ins[0] = tokens; in_names[0] = flm_strdup("tokens");
    ins[1] = input_pos; in_names[1] = flm_strdup("input_pos");
    int *kin = calloc((size_t)(2 * L), sizeof *kin);
    if (!kin) { m->nomem = true; goto out; }
    for (int l = 0; l < L; l++)
        for (int kv = 0; kv < 2; kv++) {
            snprintf(nm, sizeof nm, "kv_cache_%c_%d", kv ? 'v' : 'k', l);
            kin[2 * l + kv] = ins[2 + 2 * l + kv] = t_new(g, nm, TFL_FLOAT32, sh_kv, 4);
            in_names[2 + 2 * l + kv] = flm_strdup(nm);
            out_names[2 * l + kv] = flm_strdup(nm);
        }

    /* embedding */
    int32_t sh_ids[1] = {T};
    int ids = reshape(g, tokens, sh_ids, 1, NULL);
    int32_t sh_x[2] = {T, HD};
    int x = t_new(g, "embed", TFL_FLOAT32, sh_x, 2);
    {
        int in[2] = {ids, t_weight(g, m->w_embed)};
        op(g, TFL_OP_EMBEDDING_LOOKUP, in, 2, &x, 1, 0, 0);
    }

    /* positions: rotary angles, the causal mask, the cache write index */
    int32_t sh_pos1[1] = {T};
    int posf = t_new(g, "pos_f", TFL_FLOAT32, sh_pos1, 1);
    {
        flm_fb_builder *b = &m->fb;
        flm_fb_table_start(b);
        flm_fb_add_u8(b, 0, TFL_INT32, 0, true);
        flm_fb_add_u8(b, 1, TFL_FLOAT32, 0, true);
        op(g, TFL_OP_CAST, &input_pos, 1, &posf, 1, TFL_OPT_CAST, flm_fb_table_end(b));
    }
    int32_t sh_col[2] = {T, 1};
    int pos_col = reshape(g, posf, sh_col, 2, NULL);
    float *inv = malloc((size_t)(D / 2) * sizeof *inv);
    float *range = malloc((size_t)S * sizeof *range);
    if (!inv || !range) { free(inv); free(range); m->nomem = true; goto out; }
    for (int i = 0; i < D / 2; i++) {
        /* transformers: 1 / theta ** (arange(0, D, 2).float() / D), in float32 */
        float e = (float)(2 * i) / (float)D;
        inv[i] = 1.0f / powf((float)c->rope_theta, e);
    }
    for (int s = 0; s < S; s++) range[s] = (float)s;
    int32_t sh_inv[2] = {1, D / 2}, sh_rng[2] = {1, S};
    int inv_t = t_const(g, TFL_FLOAT32, sh_inv, 2, inv, (size_t)(D / 2) * 4);
    int rng_t = t_const(g, TFL_FLOAT32, sh_rng, 2, range, (size_t)S * 4);
    free(inv);
    free(range);
    int ang = binary(g, TFL_OP_MUL, pos_col, inv_t, "rope_angles"); /* [T, D/2] */
    int32_t sh_cs[3] = {T, 1, D / 2};
    int cs = reshape(g, unary(g, TFL_OP_COS, ang, NULL), sh_cs, 3, "rope_cos");
    int sn = reshape(g, unary(g, TFL_OP_SIN, ang, NULL), sh_cs, 3, "rope_sin");
    /* mask[t, s] = -1e9 * max(s - pos[t], 0): 0 where s <= pos[t] */
    int rel = binary(g, TFL_OP_SUB, rng_t, pos_col, NULL); /* [T, S] */
    int over = unary(g, TFL_OP_RELU, rel, NULL);
    int mask2 = binary(g, TFL_OP_MUL, over, c_f32_scalar(g, -1e9f), NULL);
    int32_t sh_m4[4] = {1, T, 1, S};
    int mask = reshape(g, mask2, sh_m4, 4, "causal_mask");
    int32_t zero = 0, b0[1] = {0}, s1[1] = {1};
    int pos0 = slice(g, input_pos, b0, s1, NULL);
    int zt = c_i32(g, &zero, 1);
    int parts[4] = {zt, pos0, zt, zt};
    int start = concat(g, parts, 4, 0, "cache_start");
    float scale = (float)pow((double)D, -0.5); /* transformers: head_dim ** -0.5, a Python float, used as float32 */

    for (int l = 0; l < L; l++) {
        bool last_prefill = !is_decode && l == L - 1; /* only its cache write matters */
        int h = rms_norm(g, x, LW(m, l, W_ATTN_NORM), NULL);
        int k = fc(g, h, LW(m, l, W_K), LW(m, l, W_BK), NULL);
        int v = fc(g, h, LW(m, l, W_V), LW(m, l, W_BV), NULL);
        int32_t sh_k3[3] = {T, KV, D}, sh_k4[4] = {1, T, KV, D};
        k = rope(g, reshape(g, k, sh_k3, 3, NULL), cs, sn);
        k = reshape(g, k, sh_k4, 4, NULL);
        v = reshape(g, v, sh_k4, 4, NULL);
        int cache[2];
        for (int kv = 0; kv < 2; kv++) {
            snprintf(nm, sizeof nm, "kv_cache_%c_%d_out", kv ? 'v' : 'k', l);
            cache[kv] = t_new(g, nm, TFL_FLOAT32, sh_kv, 4);
            int in[3] = {kin[2 * l + kv], kv ? v : k, start};
            op(g, TFL_OP_DYNAMIC_UPDATE_SLICE, in, 3, &cache[kv], 1, TFL_OPT_DYNAMIC_UPDATE_SLICE, opt_empty(m));
            outs[2 * l + kv] = cache[kv];
        }
        if (last_prefill) break;
        int q = fc(g, h, LW(m, l, W_Q), LW(m, l, W_BQ), NULL);
        int32_t sh_q3[3] = {T, H, D}, sh_q4[4] = {T, KV, G_, D}, sh_qb[3] = {KV, T * G_, D};
        q = rope(g, reshape(g, q, sh_q3, 3, NULL), cs, sn);
        int32_t p4[4] = {1, 0, 2, 3}, p3[3] = {1, 0, 2};
        q = reshape(g, transpose(g, reshape(g, q, sh_q4, 4, NULL), p4, NULL), sh_qb, 3, NULL); /* [KV, T*G, D] */
        int32_t sh_c3[3] = {S, KV, D};
        int kb = transpose(g, reshape(g, cache[0], sh_c3, 3, NULL), p3, NULL); /* [KV, S, D] */
        int vb = transpose(g, reshape(g, cache[1], sh_c3, 3, NULL), p3, NULL);
        int32_t sh_sc[3] = {KV, T * G_, S}, sh_sc4[4] = {KV, T, G_, S};
        int sc = t_new(g, NULL, TFL_FLOAT32, sh_sc, 3);
        {
            int in[2] = {q, kb};
            flm_fb_builder *b = &m->fb;
            flm_fb_table_start(b);
            flm_fb_add_u8(b, 1, 1, 0, true); /* adj_y */
            op(g, TFL_OP_BATCH_MATMUL, in, 2, &sc, 1, TFL_OPT_BATCH_MATMUL, flm_fb_table_end(b));
        }
        sc = binary(g, TFL_OP_MUL, sc, c_f32_scalar(g, scale), NULL);
        sc = binary(g, TFL_OP_ADD, reshape(g, sc, sh_sc4, 4, NULL), mask, NULL);
        int pr = t_new(g, NULL, TFL_FLOAT32, sh_sc4, 4);
        {
            flm_fb_builder *b = &m->fb;
            flm_fb_table_start(b);
            flm_fb_add_f32(b, 0, 1.0f, 0.0f, true);
            op(g, TFL_OP_SOFTMAX, &sc, 1, &pr, 1, TFL_OPT_SOFTMAX, flm_fb_table_end(b));
        }
        pr = reshape(g, pr, sh_sc, 3, NULL);
        int32_t sh_o[3] = {KV, T * G_, D}, sh_o4[4] = {KV, T, G_, D}, sh_o2[2] = {T, H * D};
        int o = t_new(g, NULL, TFL_FLOAT32, sh_o, 3);
        {
            int in[2] = {pr, vb};
            op(g, TFL_OP_BATCH_MATMUL, in, 2, &o, 1, TFL_OPT_BATCH_MATMUL, opt_empty(m));
        }
        o = reshape(g, transpose(g, reshape(g, o, sh_o4, 4, NULL), p4, NULL), sh_o2, 2, NULL); /* [T, H*D] */
        x = binary(g, TFL_OP_ADD, x, fc(g, o, LW(m, l, W_O), -1, NULL), NULL);
        int h2 = rms_norm(g, x, LW(m, l, W_FFN_NORM), NULL);
        int gt = fc(g, h2, LW(m, l, W_GATE), -1, NULL);
        int up = fc(g, h2, LW(m, l, W_UP), -1, NULL);
        int act = binary(g, TFL_OP_MUL, binary(g, TFL_OP_MUL, gt, unary(g, TFL_OP_LOGISTIC, gt, NULL), NULL), up, NULL);
        snprintf(nm, sizeof nm, "layer_%d", l);
        x = binary(g, TFL_OP_ADD, x, fc(g, act, LW(m, l, W_DOWN), -1, NULL), nm);
    }
    free(kin);
    if (is_decode) {
        int xn = rms_norm(g, x, m->w_final_norm, "final_norm");
        int lg = fc(g, xn, m->w_lm_head, -1, NULL);
        int32_t sh_l[3] = {1, T, c->vocab_size};
        outs[2 * L] = reshape(g, lg, sh_l, 3, "logits");
        out_names[2 * L] = flm_strdup("logits");
    }
    for (int i = 0; i < n_in; i++)
        if (!in_names[i]) m->nomem = true;
    for (int i = 0; i < n_out; i++)
        if (!out_names[i]) m->nomem = true;
    if (m->nomem) goto out;

    /* the SubGraph and its SignatureDef */
    {
        flm_fb_builder *b = &m->fb;
        char sname[32];
        if (is_decode) snprintf(sname, sizeof sname, "decode");
        else snprintf(sname, sizeof sname, "prefill_%d", T);
        flm_fb_ref tv = flm_fb_vector_refs(b, g->tensors, (size_t)g->n_t);
        flm_fb_ref iv = flm_fb_vector(b, ins, (size_t)n_in, 4, 4), ov = flm_fb_vector(b, outs, (size_t)n_out, 4, 4);
        flm_fb_ref opv = flm_fb_vector_refs(b, g->ops, (size_t)g->n_ops);
        flm_fb_ref sn_ = flm_fb_cstring(b, sname);
        flm_fb_table_start(b);
        flm_fb_add_ref(b, 0, tv);
        flm_fb_add_ref(b, 1, iv);
        flm_fb_add_ref(b, 2, ov);
        flm_fb_add_ref(b, 3, opv);
        flm_fb_add_ref(b, 4, sn_);
        *sub_out = flm_fb_table_end(b);
        flm_fb_ref *maps = malloc((size_t)(n_in > n_out ? n_in : n_out) * sizeof *maps);
        if (!maps) { m->nomem = true; goto out; }
        flm_fb_ref mv[2];
        for (int side = 0; side < 2; side++) {
            int n = side ? n_out : n_in;
            for (int i = 0; i < n; i++) {
                flm_fb_ref s = flm_fb_cstring(b, side ? out_names[i] : in_names[i]);
                flm_fb_table_start(b);
                flm_fb_add_ref(b, 0, s);
                flm_fb_add_u32(b, 1, (uint32_t)(side ? outs[i] : ins[i]), 0, true);
                maps[i] = flm_fb_table_end(b);
            }
            mv[side] = flm_fb_vector_refs(b, maps, (size_t)n);
        }
        free(maps);
        flm_fb_ref key = flm_fb_cstring(b, sname);
        flm_fb_table_start(b);
        flm_fb_add_ref(b, 0, mv[0]);
        flm_fb_add_ref(b, 1, mv[1]);
        flm_fb_add_ref(b, 2, key);
        flm_fb_add_u32(b, 4, sub_index, 0, true);
        *sig_out = flm_fb_table_end(b);
    }
out:
    for (int i = 0; in_names && i < n_in; i++) free(in_names[i]);
    for (int i = 0; out_names && i < n_out; i++) free(out_names[i]);
    free(in_names);
    free(out_names);
    free(ins);
    free(outs);
    free(g->tensors);
    free(g->shape);
    free(g->ndim);
    free(g->type);
    free(g->ops);
    free(g->w_index);
    free(g->k_index);
    return m->nomem ? flm_fail(FLM_ERR_NOMEM, "out of memory building the LiteRT graph") : FLM_OK;
}

/* Builds the whole model flatbuffer; weights at base + w->offset. */
static int build_model(model_ctx *m, const char *description, const unsigned char **data, size_t *len) {
    flm_fb_free(&m->fb);
    flm_fb_init(&m->fb);
    m->n_buffers = 0;
    m->n_opcodes = 0;
    m->nomem = false;
    for (int i = 0; i < m->n_k; i++) m->k[i].tensor = 0;
    add_buffer_inline(m, NULL, 0); /* buffer 0: empty, by convention */
    for (int i = 0; i < m->n_w; i++) {
        weight *w = &m->w[i];
        w->buffer = add_buffer_external(m, w->offset, w->size);
        int32_t sh[2] = {(int32_t)w->rows, (int32_t)w->cols};
        if (w->ndim == 1) sh[0] = (int32_t)w->cols;
        w->tensor = tensor_table(m, w->hf_name, w->type, sh, w->ndim, w->buffer, w->type == TFL_INT8 ? w->scales : NULL, w->rows);
    }
    int n_sig = m->n_prefill + 1;
    flm_fb_ref subs[FLM_LITERT_MAX_PREFILL + 1], sigs[FLM_LITERT_MAX_PREFILL + 1];
    int rc = FLM_OK;
    for (int s = 0; s < n_sig && !rc; s++) {
        bool dec = s == m->n_prefill;
        rc = build_signature(m, dec ? 1 : m->prefill[s], dec, (uint32_t)s, &subs[s], &sigs[s]);
    }
    if (rc) return rc;
    flm_fb_builder *b = &m->fb;
    flm_fb_ref codes[64];
    for (int i = 0; i < m->n_opcodes; i++) {
        flm_fb_table_start(b);
        flm_fb_add_u8(b, 0, (uint8_t)(m->opcodes[i] < 127 ? m->opcodes[i] : 127), 0, true);
        flm_fb_add_i32(b, 2, 1, 1, true);
        flm_fb_add_i32(b, 3, m->opcodes[i], 0, true);
        codes[i] = flm_fb_table_end(b);
    }
    flm_fb_ref cv = flm_fb_vector_refs(b, codes, (size_t)m->n_opcodes);
    flm_fb_ref sv = flm_fb_vector_refs(b, subs, (size_t)n_sig);
    flm_fb_ref bv = flm_fb_vector_refs(b, m->buffers, (size_t)m->n_buffers);
    flm_fb_ref dv = flm_fb_cstring(b, description);
    flm_fb_ref gv = flm_fb_vector_refs(b, sigs, (size_t)n_sig);
    flm_fb_table_start(b);
    flm_fb_add_u32(b, 0, 3, 0, true);
    flm_fb_add_ref(b, 1, cv);
    flm_fb_add_ref(b, 2, sv);
    flm_fb_add_ref(b, 3, dv);
    flm_fb_add_ref(b, 4, bv);
    flm_fb_add_ref(b, 7, gv);
    flm_fb_ref root = flm_fb_table_end(b);
    if (m->nomem) return flm_fail(FLM_ERR_NOMEM, "out of memory building the LiteRT graph");
    return flm_fb_finish(b, root, "TFL3", data, len);
}

/* ---- streaming the weights ---- */
typedef struct {
    flm_outfile *of;
    flm_pool *pool;
    weight *w;
    unsigned char *y;
    size_t y_cap;
    /* the chunk being converted */
    const float *x;
    int64_t row0, rows, cols;
} tfl_sink;

/* Rows of the chunk → float16, or int8 with one symmetric scale per row (output channel). */
static void convert_part(void *ctx, int ith, int nth) {
    tfl_sink *s = ctx;
    weight *w = s->w;
    int64_t per = (s->rows + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < s->rows ? r0 + per : s->rows;
    int64_t cols = s->cols;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = s->x + r * cols;
        if (w->type == TFL_FLOAT16) {
            uint16_t *o = (uint16_t *)s->y + r * cols;
            for (int64_t i = 0; i < cols; i++) o[i] = flm_f32_to_f16(xr[i]);
            continue;
        }
        w->scales[s->row0 + r] = flm_quantize_row_i8_channel(xr, (int8_t *)s->y + r * cols, cols);
    }
}

static int tfl_sink_rows(void *ctx, const float *x, int64_t row0, int64_t n, int64_t cols) {
    tfl_sink *s = ctx;
    weight *w = s->w;
    if (w->type == TFL_FLOAT32) return flm_outfile_write(s->of, x, (size_t)n * (size_t)cols * sizeof(float));
    size_t eb = w->type == TFL_FLOAT16 ? 2 : 1, need = (size_t)n * (size_t)cols * eb;
    if (need > s->y_cap) {
        free(s->y);
        s->y_cap = need;
        if (!(s->y = flm_malloc(need))) { s->y_cap = 0; return FLM_ERR_NOMEM; }
    }
    s->x = x;
    s->row0 = row0;
    s->rows = n;
    s->cols = cols;
    flm_pool_run(s->pool, convert_part, s);
    return flm_outfile_write(s->of, s->y, need);
}

static int write_zeros(flm_outfile *of, uint64_t n) {
    static const unsigned char z[4096];
    while (n) {
        size_t k = n < sizeof z ? (size_t)n : sizeof z;
        int rc = flm_outfile_write(of, z, k);
        if (rc) return rc;
        n -= k;
    }
    return FLM_OK;
}

static int pwrite_all(flm_outfile *of, const void *p, size_t n, uint64_t at) {
    const unsigned char *b = p;
    while (n) {
        ssize_t k = pwrite(of->fd, b, n, (off_t)at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return flm_fail(FLM_ERR_IO, "%s: %s", of->path, flm_outfile_strerror(k < 0 ? errno : EIO));
        b += k;
        n -= (size_t)k;
        at += (uint64_t)k;
    }
    return FLM_OK;
}

bool flm_litert_parse_recipe(const char *s, flm_litert_recipe *out) {
    static const struct { const char *n; flm_litert_recipe r; } R[] = {
        {"f32", FLM_LITERT_F32}, {"none", FLM_LITERT_F32}, {"fp16", FLM_LITERT_FP16},
        {"dynamic_int8", FLM_LITERT_DYNAMIC_INT8}, {"weight_only_int8", FLM_LITERT_WEIGHT_ONLY_INT8}};
    for (size_t i = 0; i < sizeof R / sizeof *R; i++)
        if (!strcmp(s, R[i].n)) { *out = R[i].r; return true; }
    return false;
}

const char *flm_litert_recipe_name(flm_litert_recipe r) {
    switch (r) {
    case FLM_LITERT_F32: return "f32";
    case FLM_LITERT_FP16: return "fp16";
    case FLM_LITERT_DYNAMIC_INT8: return "dynamic_int8";
    case FLM_LITERT_WEIGHT_ONLY_INT8: return "weight_only_int8";
    }
    return "?";
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static void model_ctx_free(model_ctx *m) {
    for (int i = 0; i < m->n_w; i++) free(m->w[i].scales);
    free(m->w);
    free(m->w_layer);
    for (int i = 0; i < m->n_k; i++) free(m->k[i].data);
    free(m->k);
    free(m->buffers);
    flm_fb_free(&m->fb);
}

static int add_weight(model_ctx *m, const char *hf_name, const flm_tensor *t, flm_litert_recipe r, bool is_matrix) {
    weight *w = &m->w[m->n_w];
    memset(w, 0, sizeof *w);
    snprintf(w->hf_name, sizeof w->hf_name, "%s", hf_name);
    w->src = t;
    w->ndim = t->ndim;
    w->rows = t->ndim == 2 ? t->shape[0] : 1;
    w->cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    w->type = TFL_FLOAT32;
    if (is_matrix && r == FLM_LITERT_FP16) w->type = TFL_FLOAT16;
    if (is_matrix && (r == FLM_LITERT_DYNAMIC_INT8 || r == FLM_LITERT_WEIGHT_ONLY_INT8)) {
        w->type = TFL_INT8;
        if (!(w->scales = flm_calloc((size_t)w->rows, sizeof *w->scales))) return -1;
    }
    return m->n_w++;
}

/* The .litertlm sections before the model: LlmMetadata and the tokenizer, in
 * memory; writes the header and them, and returns where the model section starts. */
static int write_litertlm_head(flm_conv_source *s, const char *hf_dir, int S, flm_litert_recipe recipe, uint64_t tfl_size,
                               const flm_litert_options *opt, flm_outfile *of, uint64_t *tfl_base) {
    const flm_config *c = &s->m->cfg;
    char *tj = NULL, *tpath = flm_path_join(hf_dir, "tokenizer.json");
    size_t tj_len = 0;
    unsigned char *z = NULL, *meta = NULL;
    size_t meta_len = 0;
    char *src_lines = NULL, *adapters = NULL;
    int rc = tpath ? flm_read_file(tpath, &tj, &tj_len) : FLM_ERR_NOMEM;
    free(tpath);
    if (rc) return rc;
    /* HF_Tokenizer_Zlib: u64 LE uncompressed size + zlib stream of tokenizer.json, exactly */
    uLongf zl = compressBound((uLong)tj_len);
    z = flm_malloc(8 + (size_t)zl);
    if (!z) { rc = FLM_ERR_NOMEM; goto out; }
    uint64_t ul = tj_len;
    memcpy(z, &ul, 8);
    if (compress2(z + 8, &zl, (const Bytef *)tj, (uLong)tj_len, 6) != Z_OK) { rc = flm_fail(FLM_ERR_NOMEM, "zlib: could not compress tokenizer.json"); goto out; }

    flm_llm_metadata md;
    memset(&md, 0, sizeof md);
    /* every eos id (config.json and generation_config.json) is a stop token; Qwen2
     * has no BOS in its prompts (transformers adds none), so no start_token */
    for (int i = 0; i < c->n_eos + s->gen.n_eos; i++) {
        int32_t id = i < c->n_eos ? c->eos_token_ids[i] : s->gen.eos_ids[i - c->n_eos];
        bool dup = id < 0;
        for (int j = 0; j < md.n_stops; j++) dup |= md.stop_ids[j] == id;
        if (!dup && md.n_stops < FLM_LLM_MAX_STOPS) md.stop_ids[md.n_stops++] = id;
    }
    char w[256];
    if (!md.n_stops && opt->warn) opt->warn(opt->warn_ctx, "the model names no eos token: the .litertlm has no stop tokens");
    md.has_sampler = true;
    if (s->gen.do_sample) {
        md.sampler_type = 2; /* TOP_P: top-k, then top-p, at the temperature */
        md.k = s->gen.top_k > 0 ? s->gen.top_k : 0;
        md.p = (float)s->gen.top_p;
        md.temperature = (float)s->gen.temperature;
    } else {
        md.sampler_type = 2; /* greedy, as LiteRT-LM's own default: top-k 1 */
        md.k = 1;
        md.p = 1.0f;
        md.temperature = 1.0f;
    }
    if (s->gen.repetition_penalty != 1.0 && opt->warn) {
        snprintf(w, sizeof w, "generation_config.json: repetition_penalty %g cannot be expressed in LiteRT-LM's sampler parameters (left out)",
                 s->gen.repetition_penalty);
        opt->warn(opt->warn_ctx, w);
    }
    if (s->gen.min_p > 0 && opt->warn) {
        snprintf(w, sizeof w, "generation_config.json: min_p %g cannot be expressed in LiteRT-LM's sampler parameters (left out)", s->gen.min_p);
        opt->warn(opt->warn_ctx, w);
    }
    md.max_num_tokens = S;
    md.model_type = 7; /* LlmModelType.qwen2p5 */
    const flm_named_template *t = s->have_tmpl ? flm_template_source_pick(&s->tmpl, false, NULL) : NULL;
    flm_clear_error();
    if (t) { md.jinja = t->text; md.jinja_len = t->len; }
    else if (opt->warn) opt->warn(opt->warn_ctx, "the model has no chat template: LiteRT-LM will build one from its own defaults");
    if ((rc = flm_llm_metadata_encode(&md, &meta, &meta_len))) goto out;

    /* provenance in the system metadata */
    strbuf sb;
    flm_sb_init(&sb);
    for (size_t i = 0; i < s->hj.n; i++) flm_sb_printf(&sb, "%s%s", i ? "\n" : "", s->prov_files[i]);
    src_lines = flm_sb_take(&sb);
    flm_sb_init(&sb);
    flm_sb_putc(&sb, '[');
    for (int i = 0; i < s->n_lora; i++) flm_sb_printf(&sb, "%s%s", i ? "," : "", s->prov_adapters[i]);
    flm_sb_putc(&sb, ']');
    adapters = flm_sb_take(&sb);
    if (!src_lines || !adapters) { rc = FLM_ERR_NOMEM; goto out; }
    char ctxs[32];
    snprintf(ctxs, sizeof ctxs, "%d", S);
    flm_litertlm_kv sys[] = {{"writer", "fieldlm " FLM_VERSION}, {"architecture", "qwen2"}, {"recipe", flm_litert_recipe_name(recipe)},
                             {"cache_length", ctxs}, {"source_dtype", c->torch_dtype}, {"source_files", src_lines},
                             {"lora_adapters", adapters}};
    flm_litertlm_kv model_items[] = {{"model_type", "tf_lite_prefill_decode"}};
    flm_litertlm_section sec[] = {
        {FLM_LTLM_LLM_METADATA, meta, meta_len, NULL, 0},
        {FLM_LTLM_HF_TOKENIZER_ZLIB, z, 8 + (uint64_t)zl, NULL, 0},
        {FLM_LTLM_TFLITE_MODEL, NULL, tfl_size, model_items, 1},
    };
    rc = flm_litertlm_write_head(of, sys, sizeof sys / sizeof *sys, sec, 3, tfl_base);
out:
    free(tj);
    free(z);
    free(meta);
    free(src_lines);
    free(adapters);
    return rc;
}

int flm_convert_litert(const char *hf_dir, const char *out_path, const flm_litert_options *opt, flm_litert_stats *stats) {
    double t0 = flm_now_seconds();
    memset(stats, 0, sizeof *stats);
    model_ctx M;
    memset(&M, 0, sizeof M);
    model_ctx *m = &M;
    flm_fb_init(&m->fb);
    flm_conv_source s;
    flm_outfile of = {0};
    of.fd = -1;
    bool of_open = false;
    tfl_sink ts = {0};
    int rc = flm_conv_source_open(&s, hf_dir, out_path, opt->lora_dirs, opt->lora_scales, opt->n_lora, opt->n_threads, opt->cancel);
    if (rc) goto out;
    if (!s.tok) stats->no_tokenizer = true;
    const flm_config *c = &s.m->cfg;
    m->c = c;
    m->recipe = opt->recipe;
    if (strcmp(c->model_type, "qwen2") != 0) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: model_type '%s': the LiteRT graph is written for qwen2 only", hf_dir, c->model_type);
        goto done;
    }
    if (opt->format == FLM_LITERT_LITERTLM && !s.tok) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s has no tokenizer.json: a .litertlm needs the tokenizer (write a .tflite instead)", hf_dir);
        goto done;
    }
    /* the cache length and the prefill signatures */
    int S = opt->ctx > 0 ? opt->ctx : 4096;
    if (opt->ctx <= 0 && c->max_position_embeddings > 0 && S > c->max_position_embeddings) S = c->max_position_embeddings;
    if (c->max_position_embeddings > 0 && S > c->max_position_embeddings) {
        rc = flm_fail(FLM_ERR_ARG, "--ctx %d is above the model's max_position_embeddings (%d)", S, c->max_position_embeddings);
        goto done;
    }
    m->S = S;
    static const int DEF_PREFILL[] = {8, 64, 128, 256, 512, 1024};
    const int *pf = opt->n_prefill ? opt->prefill : DEF_PREFILL;
    int npf = opt->n_prefill ? opt->n_prefill : 6;
    for (int i = 0; i < npf; i++) {
        if (pf[i] < 1) { rc = flm_fail(FLM_ERR_ARG, "--prefill lengths must be >= 1"); goto done; }
        if (pf[i] > S) {
            if (opt->n_prefill) { rc = flm_fail(FLM_ERR_ARG, "--prefill %d is longer than the cache (--ctx %d)", pf[i], S); goto done; }
            continue; /* a default longer than a small cache is left out */
        }
        bool dup = false;
        for (int j = 0; j < m->n_prefill; j++) dup |= m->prefill[j] == pf[i];
        if (!dup) m->prefill[m->n_prefill++] = pf[i];
    }
    /* the weights, in the order they are streamed */
    int L = c->n_layers;
    m->w = flm_calloc((size_t)L * W_LAYER_COUNT + 3, sizeof *m->w);
    m->w_layer = flm_calloc((size_t)L * W_LAYER_COUNT, sizeof *m->w_layer);
    if (!m->w || !m->w_layer) { rc = FLM_ERR_NOMEM; goto done; }
    flm_model *md = s.m;
    /* fp16: EMBEDDING_LOOKUP has no float16 kernel, so the table stays float32 */
    if ((m->w_embed = add_weight(m, "model.embed_tokens.weight", &md->embed, opt->recipe, opt->recipe != FLM_LITERT_FP16)) < 0) { rc = FLM_ERR_NOMEM; goto done; }
    for (int l = 0; l < L; l++)
        for (int wi = 0; wi < W_LAYER_COUNT; wi++) {
            char hn[128];
            flm_hf_layer_name(l, (flm_layer_weight)wi, hn, sizeof hn);
            const flm_tensor *t = flm_layer_weight_slot(&md->layers[l], (flm_layer_weight)wi);
            if ((LW(m, l, wi) = add_weight(m, hn, t, opt->recipe, t->ndim == 2)) < 0) { rc = FLM_ERR_NOMEM; goto done; }
        }
    if ((m->w_final_norm = add_weight(m, "model.norm.weight", &md->final_norm, opt->recipe, false)) < 0) { rc = FLM_ERR_NOMEM; goto done; }
    if (c->tie_word_embeddings) m->w_lm_head = m->w_embed;
    else if ((m->w_lm_head = add_weight(m, "lm_head.weight", &md->lm_head, opt->recipe, true)) < 0) { rc = FLM_ERR_NOMEM; goto done; }
    for (int i = 0; i < m->n_w; i++) {
        weight *w = &m->w[i];
        w->lora = flm_conv_source_lora_targets(&s, w->hf_name);
        w->size = (uint64_t)w->rows * (uint64_t)w->cols * (w->type == TFL_FLOAT32 ? 4 : w->type == TFL_FLOAT16 ? 2 : 1);
    }

    /* provenance and the description */
    if ((rc = flm_conv_source_provenance(&s))) goto done;
    strbuf desc;
    flm_sb_init(&desc);
    flm_sb_printf(&desc, "fieldlm %s: qwen2, recipe %s, cache %d", FLM_VERSION, flm_litert_recipe_name(opt->recipe), S);
    char *description = flm_sb_take(&desc);
    if (!description) { rc = FLM_ERR_NOMEM; goto done; }

    /* pass 1: the flatbuffer's size */
    const unsigned char *fbd;
    size_t fbl;
    rc = build_model(m, description, &fbd, &fbl);
    if (rc) { free(description); goto done; }
    uint64_t data_start = align_up(fbl, WEIGHT_ALIGN), at = data_start;
    for (int i = 0; i < m->n_w; i++) {
        m->w[i].offset = at;
        at = align_up(at + m->w[i].size, WEIGHT_ALIGN);
    }
    uint64_t tfl_size = at;
    stats->flatbuffer_bytes = fbl;
    stats->weight_bytes = tfl_size - data_start;

    /* the .litertlm header and the sections before the model (metadata, tokenizer) */
    uint64_t tfl_base = 0;
    if ((rc = flm_outfile_open(out_path, &of))) { free(description); goto done; }
    of_open = true;
    if (opt->format == FLM_LITERT_LITERTLM &&
        (rc = write_litertlm_head(&s, hf_dir, S, opt->recipe, tfl_size, opt, &of, &tfl_base))) { free(description); goto done; }
    /* room for the flatbuffer, then the weights */
    rc = write_zeros(&of, data_start);
    uint64_t total = 0, done_bytes = 0;
    for (int i = 0; i < m->n_w; i++) total += m->w[i].src->nbytes;
    for (int i = 0; i < m->n_w && !rc; i++) {
        weight *w = &m->w[i];
        if (opt->progress) opt->progress(opt->progress_ctx, i, m->n_w, w->hf_name, done_bytes, total);
        rc = flm_conv_source_check(&s);
        uint64_t pos = of.written - tfl_base;
        if (!rc && pos < w->offset) rc = write_zeros(&of, w->offset - pos);
        ts.of = &of;
        ts.pool = s.pool;
        ts.w = w;
        if (!rc) rc = flm_conv_source_read(&s, w->src, w->hf_name, w->lora, tfl_sink_rows, &ts);
        done_bytes += w->src->nbytes;
    }
    if (!rc) {
        uint64_t pos = of.written - tfl_base;
        if (pos < tfl_size) rc = write_zeros(&of, tfl_size - pos);
    }
    if (!rc) rc = flm_conv_source_check(&s);
    /* pass 2: the real scales and offsets, written over the room */
    if (!rc) {
        rc = build_model(m, description, &fbd, &fbl);
        if (!rc && fbl != stats->flatbuffer_bytes)
            rc = flm_fail(FLM_ERR_FORMAT, "flatbuffer size changed between builds (%zu, %llu)", fbl, (unsigned long long)stats->flatbuffer_bytes);
        if (!rc) rc = pwrite_all(&of, fbd, fbl, tfl_base);
    }
    free(description);
    if (rc) goto done;
    if (opt->progress) opt->progress(opt->progress_ctx, m->n_w, m->n_w, "", total, total);
    stats->bytes_written = of.written;
    rc = flm_outfile_commit(&of);
    of_open = false;
    if (rc) { stats->bytes_written = 0; goto done; }
    stats->n_signatures = m->n_prefill + 1;
    stats->n_weights = m->n_w;
    stats->ctx = S;
done:
    if (of_open) flm_outfile_abort(&of);
    free(ts.y);
    model_ctx_free(m);
    flm_conv_source_close(&s);
out:
    stats->seconds = flm_now_seconds() - t0;
    stats->peak_rss = flm_peak_rss_bytes();
    return rc;
}
