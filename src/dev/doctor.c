/* doctor.c — audits a .litertlm against what LiteRT-LM will do with it, and against
 * the model's truth when its Hugging Face folder is given; rewrites the metadata
 * (doctor.h, docs/DOCTOR.md). */
#include "dev/doctor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/common.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/outfile.h"
#include "format/flatbuf.h"
#include "format/litertlm.h"
#include "format/safetensors.h"
#include "format/tflite.h"
#include "model/gen_config.h"
#include "model/model.h"
#include "text/template.h"
#include "text/tokenizer.h"

#define SMALL_CONTEXT 2048        /* below this, a chat of a few turns reaches the capacity */
#define MAX_TOKENIZER_JSON (256u << 20)
#define TFL_INT4 17
#define TFL_BFLOAT16 18
#define TFL_STRING 5
#define LLM_QWEN3 5
#define LLM_QWEN2P5 7
#define LLM_GENERIC 1
#define LLM_FASTVLM 9

/* ---- messages ---- */

static char *fmt(const char *f, ...) FLM_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

const char *flm_doc_severity_name(flm_doc_severity s) {
    return s == FLM_DOC_ERROR ? "error" : s == FLM_DOC_WARNING ? "warning" : "info";
}

/* Takes msg and fix (malloc'ed). */
static void add(flm_doc_report *r, const char *code, flm_doc_severity sev, char *msg, char *fix) {
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        flm_doc_finding *ni = realloc(r->items, (size_t)cap * sizeof *ni);
        if (!ni) { free(msg); free(fix); return; }
        r->items = ni;
        r->cap = cap;
    }
    flm_doc_finding *f = &r->items[r->n++];
    snprintf(f->code, sizeof f->code, "%s", code);
    f->severity = sev;
    f->message = msg ? msg : flm_strdup("(out of memory)");
    f->fix = fix ? fix : flm_strdup("");
    if (sev == FLM_DOC_ERROR) r->n_error++;
    else if (sev == FLM_DOC_WARNING) r->n_warning++;
    else r->n_info++;
}

void flm_doc_report_free(flm_doc_report *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->items[i].message);
        free(r->items[i].fix);
    }
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* A short printable quote of s[0..n): control characters escaped, cut at max bytes. */
static void quote(strbuf *sb, const char *s, size_t n, size_t max) {
    flm_sb_putc(sb, '"');
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') flm_sb_puts(sb, "\\n");
        else if (c == '"') flm_sb_puts(sb, "\\\"");
        else if (c == '\\') flm_sb_puts(sb, "\\\\");
        else if (c < 0x20 || c == 0x7f) flm_sb_printf(sb, "\\x%02x", c);
        else flm_sb_putc(sb, (char)c);
    }
    flm_sb_putc(sb, '"');
    if (n > max) flm_sb_puts(sb, "...");
}

/* ---- the model's truth ---- */

struct flm_doc_truth {
    char *dir;
    flm_config cfg;
    flm_gen_config gen;
    char *tok_json;
    size_t tok_json_len;
    flm_tokenizer *tok;
    char *tok_error;          /* why tokenizer.json could not be used */
    flm_template_source tsrc;
    const flm_named_template *tmpl;
    bool add_bos;             /* the tokenizer puts a BOS token in front */
    int lm_head_weight;       /* 1 the checkpoint has lm_head.weight, 0 not, -1 unknown */
};

static bool has_template_processing(const char *json, size_t n) {
    static const char K[] = "\"TemplateProcessing\"";
    return n >= sizeof K - 1 && memmem(json, n, K, sizeof K - 1) != NULL;
}

static int lm_head_in_folder(const char *dir) {
    char *ip = flm_path_join(dir, "model.safetensors.index.json");
    if (!ip) return -1;
    int found = -1;
    if (flm_file_exists(ip)) {
        flm_json_doc *d = flm_json_parse_file(ip);
        if (d) {
            const flm_json *wm = flm_json_get(flm_json_root(d), "weight_map");
            found = wm && wm->type == JSON_OBJECT ? flm_json_get(wm, "lm_head.weight") != NULL : -1;
            flm_json_free(d);
        }
        free(ip);
        flm_clear_error();
        return found;
    }
    free(ip);
    char *sp = flm_path_join(dir, "model.safetensors");
    if (sp && flm_file_exists(sp)) {
        flm_st_file *f = NULL;
        if (flm_st_open(sp, &f) == FLM_OK) {
            found = flm_st_find(f, "lm_head.weight") != NULL;
            flm_st_close(f);
        }
    }
    free(sp);
    flm_clear_error();
    return found;
}

void flm_doc_truth_free(flm_doc_truth *t) {
    if (!t) return;
    free(t->dir);
    free(t->tok_json);
    free(t->tok_error);
    if (t->tok) flm_tokenizer_free(t->tok);
    flm_template_source_free(&t->tsrc);
    free(t);
}

int flm_doc_truth_load(const char *dir, flm_doc_truth **out) {
    *out = NULL;
    if (!flm_is_dir(dir)) return flm_fail(FLM_ERR_IO, "--hf %s: not a folder", dir);
    flm_doc_truth *t = flm_calloc(1, sizeof *t);
    if (!t) return FLM_ERR_NOMEM;
    int rc = FLM_OK;
    char *p = NULL;
    if (!(t->dir = flm_strdup(dir))) { rc = FLM_ERR_NOMEM; goto fail; }
    if (!(p = flm_path_join(dir, "config.json"))) { rc = FLM_ERR_NOMEM; goto fail; }
    if ((rc = flm_config_load(p, &t->cfg))) { rc = flm_fail_context(rc, "--hf %s: ", dir); goto fail; }
    free(p);
    if ((rc = flm_gen_config_load_hf(dir, &t->gen))) { rc = flm_fail_context(rc, "--hf %s: ", dir); goto fail; }
    /* tokenizer.json: kept as bytes (compared with the package's) and loaded */
    if (!(p = flm_path_join(dir, "tokenizer.json"))) { rc = FLM_ERR_NOMEM; goto fail; }
    if (flm_file_exists(p)) {
        if ((rc = flm_read_file(p, &t->tok_json, &t->tok_json_len))) { rc = flm_fail_context(rc, "--hf %s: ", dir); goto fail; }
        if (flm_tokenizer_load_json(t->tok_json, t->tok_json_len, p, &t->tok) != FLM_OK) {
            t->tok = NULL;
            t->tok_error = flm_strdup(flm_last_error());
        }
    }
    free(p);
    p = NULL;
    flm_clear_error();
    if (flm_template_source_load_dir(dir, &t->tsrc) == FLM_OK) t->tmpl = flm_template_source_pick(&t->tsrc, false, NULL);
    flm_clear_error();
    /* BOS: tokenizer_config.json add_bos_token, or a post-processor that adds tokens */
    if ((p = flm_path_join(dir, "tokenizer_config.json")) && flm_file_exists(p)) {
        flm_json_doc *d = flm_json_parse_file(p);
        if (d) t->add_bos = flm_json_bool(flm_json_get(flm_json_root(d), "add_bos_token"), false);
        flm_json_free(d);
    }
    free(p);
    p = NULL;
    if (t->tok_json && has_template_processing(t->tok_json, t->tok_json_len)) t->add_bos = true;
    t->lm_head_weight = lm_head_in_folder(dir);
    flm_clear_error();
    *out = t;
    return FLM_OK;
fail:
    free(p);
    flm_doc_truth_free(t);
    return rc;
}

/* ---- the package ---- */

enum { Q_F32, Q_F16, Q_BF16, Q_I8_CH, Q_I8_T, Q_I8_BLOCK, Q_I4_CH, Q_I4_T, Q_I4_BLOCK, Q_U8, Q_I16, Q_OTHER, Q_N };
static const char *const QNAME[Q_N] = {"float32", "float16", "bfloat16", "int8 per-channel", "int8 per-tensor", "int8 blockwise",
                                       "int4 per-channel", "int4 per-tensor", "int4 blockwise", "uint8", "int16", "other"};

typedef struct {
    flm_litertlm_info info;
    const unsigned char *buf;
    size_t len;
    int md_sec;                 /* -1: no LlmMetadata section */
    flm_llm_metadata md;
    int hf_sec, sp_sec, n_tflite, main_tflite;
    char *tok_json;             /* inflated HF tokenizer (owned) */
    size_t tok_json_len;
    bool tok_inflate_failed;
    const flm_tokenizer *tok;   /* the package's tokenizer (owned when tok_owned) */
    flm_tokenizer *tok_owned;
    char *tok_error;
    bool tok_same_as_hf;        /* byte-identical with the model's tokenizer.json */
    bool sp_has_im_start;
    uint64_t q_tensors[Q_N], q_bytes[Q_N];
    uint64_t fc_int8_direct;    /* FULLY_CONNECTED ops on int8 weights: float inputs quantized at run time */
    uint64_t dequant_int8;      /* DEQUANTIZE ops of int8 weights: float compute */
    int cache_length, logits_vocab;
    int graph_tied;             /* 1 the LM head is the embedding table, 0 not, -1 unknown */
    int head_rows;
} pkg;

static void pkg_free(pkg *k) {
    free(k->tok_json);
    free(k->tok_error);
    if (k->tok_owned) flm_tokenizer_free(k->tok_owned);
    memset(k, 0, sizeof *k);
}

static const unsigned char *sec_data(const pkg *k, int s, size_t *n) {
    *n = (size_t)(k->info.sec[s].end - k->info.sec[s].begin);
    return k->buf + k->info.sec[s].begin;
}

static const char *sec_item(const pkg *k, int s, const char *key) {
    for (int i = 0; i < k->info.sec[s].n_items; i++)
        if (!strcmp(k->info.sec[s].items[i].key, key)) return k->info.sec[s].items[i].value;
    return NULL;
}

/* The bytes of buffer bi of a TFLite model (inline data, or offset/size after the
 * flatbuffer, counted from the model's start); NULL when empty or outside. */
static const unsigned char *tfl_buffer(flm_fb_reader *r, flm_fb_vec bufs, uint32_t bi, uint64_t *n) {
    *n = 0;
    if (bi >= bufs.n) return NULL;
    flm_fb_table b = flm_fb_vec_table(r, bufs, bi);
    uint64_t off = flm_fb_get_u64(r, b, TFL_BUFFER_OFFSET, 0), size = flm_fb_get_u64(r, b, TFL_BUFFER_SIZE, 0);
    if (off > 1) {
        if (off > r->len || size > r->len - off) return NULL;
        *n = size;
        return size ? r->buf + off : NULL;
    }
    flm_fb_vec d = flm_fb_get_vector(r, b, TFL_BUFFER_DATA, 1);
    *n = d.n;
    return d.n ? r->buf + d.pos : NULL;
}

typedef struct {
    flm_fb_reader *r;
    flm_fb_vec tensors, ops, bufs;
    const int32_t *producer; /* tensor -> the DEQUANTIZE / CAST op writing it, or -1 */
} graph;

/* The constant buffer behind tensor t: its own, or the input of the DEQUANTIZE /
 * CAST that produces it (fp16 and weight-only int8 graphs). -1 when none. */
static int64_t const_buffer(const graph *g, int32_t t, int depth) {
    if (t < 0 || (uint32_t)t >= g->tensors.n) return -1;
    flm_fb_table tt = flm_fb_vec_table(g->r, g->tensors, (uint32_t)t);
    uint32_t bi = flm_fb_get_u32(g->r, tt, TFL_TENSOR_BUFFER, 0);
    uint64_t n = 0;
    if (bi && tfl_buffer(g->r, g->bufs, bi, &n) && n) return bi;
    if (depth >= 3 || g->producer[t] < 0) return -1;
    flm_fb_vec ins = flm_fb_get_vector(g->r, flm_fb_vec_table(g->r, g->ops, (uint32_t)g->producer[t]), TFL_OP_INPUTS, 4);
    return ins.n ? const_buffer(g, flm_fb_vec_i32(g->r, ins, 0), depth + 1) : -1;
}

static int tensor_dim(flm_fb_reader *r, flm_fb_vec tensors, int32_t t, int d, int *ndim) {
    *ndim = 0;
    if (t < 0 || (uint32_t)t >= tensors.n) return 0;
    flm_fb_vec sh = flm_fb_get_vector(r, flm_fb_vec_table(r, tensors, (uint32_t)t), TFL_TENSOR_SHAPE, 4);
    *ndim = (int)sh.n;
    if (d < 0) d += (int)sh.n;
    if (d < 0 || (uint32_t)d >= sh.n) return 0;
    return flm_fb_vec_i32(r, sh, (uint32_t)d);
}

/* Walks one TFLite model: weight types (every model), and for the main model the
 * decode signature's cache length, vocabulary and whether its LM head is the
 * embedding table. */
static int analyse_tflite(pkg *k, const unsigned char *p, size_t n, bool main_model) {
    flm_fb_reader rd = {p, n, false}, *r = &rd;
    flm_fb_table root = flm_fb_root(r, NULL);
    flm_fb_vec codes = flm_fb_get_vector(r, root, TFL_MODEL_OPCODES, 4), subs = flm_fb_get_vector(r, root, TFL_MODEL_SUBGRAPHS, 4),
               bufs = flm_fb_get_vector(r, root, TFL_MODEL_BUFFERS, 4), sigs = flm_fb_get_vector(r, root, TFL_MODEL_SIGNATURES, 4);
    if (r->bad || !root.pos) return flm_fail(FLM_ERR_FORMAT, "TFLite model: not a valid flatbuffer");
    int *code_of = calloc(codes.n ? codes.n : 1, sizeof *code_of);
    unsigned char *seen = calloc(bufs.n ? bufs.n : 1, 1);
    int rc = FLM_OK;
    if (!code_of || !seen) { rc = flm_fail(FLM_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t i = 0; i < codes.n; i++) {
        flm_fb_table c = flm_fb_vec_table(r, codes, i);
        int32_t bc = flm_fb_get_i32(r, c, TFL_CODE_BUILTIN, 0), dep = (int8_t)flm_fb_get_u8(r, c, TFL_CODE_DEPRECATED, 0);
        code_of[i] = bc < dep ? dep : bc;
    }
    for (uint32_t s = 0; s < subs.n && !r->bad; s++) {
        flm_fb_vec tv = flm_fb_get_vector(r, flm_fb_vec_table(r, subs, s), TFL_SUB_TENSORS, 4);
        for (uint32_t t = 0; t < tv.n && !r->bad; t++) {
            flm_fb_table tt = flm_fb_vec_table(r, tv, t);
            uint32_t bi = flm_fb_get_u32(r, tt, TFL_TENSOR_BUFFER, 0);
            if (bi >= bufs.n && bi) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: tensor %u names buffer %u of %u", t, bi, bufs.n); goto out; }
            if (!bi || seen[bi]) continue;
            uint64_t bytes = 0;
            if (!tfl_buffer(r, bufs, bi, &bytes) || !bytes) continue;
            seen[bi] = 1;
            int type = flm_fb_get_u8(r, tt, TFL_TENSOR_TYPE, 0);
            if (type == TFL_INT32 || type == TFL_INT64 || type == TFL_BOOL || type == TFL_STRING) continue; /* shapes, indices */
            flm_fb_table q = flm_fb_get_table(r, tt, TFL_TENSOR_QUANT);
            uint32_t n_scales = q.pos ? flm_fb_get_vector(r, q, TFL_QUANT_SCALE, 4).n : 0;
            bool block = q.pos && flm_fb_get_u8(r, q, 4, 0) == 2; /* details: BlockwiseQuantization */
            int c;
            switch (type) {
            case TFL_FLOAT32: c = Q_F32; break;
            case TFL_FLOAT16: c = Q_F16; break;
            case TFL_BFLOAT16: c = Q_BF16; break;
            case TFL_INT8: c = block ? Q_I8_BLOCK : n_scales > 1 ? Q_I8_CH : Q_I8_T; break;
            case TFL_INT4: c = block ? Q_I4_BLOCK : n_scales > 1 ? Q_I4_CH : Q_I4_T; break;
            case TFL_UINT8: c = Q_U8; break;
            case TFL_INT16: c = Q_I16; break;
            default: c = Q_OTHER;
            }
            k->q_tensors[c]++;
            k->q_bytes[c] += bytes;
        }
    }
    if (r->bad) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed tensors"); goto out; }
    /* how int8 weights are used: by FULLY_CONNECTED directly (hybrid kernels quantize the
     * float activations to int8 at run time: dynamic_int8) or through DEQUANTIZE */
    for (uint32_t s = 0; s < subs.n && !r->bad; s++) {
        flm_fb_table sg = flm_fb_vec_table(r, subs, s);
        flm_fb_vec tv = flm_fb_get_vector(r, sg, TFL_SUB_TENSORS, 4), ov = flm_fb_get_vector(r, sg, TFL_SUB_OPERATORS, 4);
        for (uint32_t o = 0; o < ov.n && !r->bad; o++) {
            flm_fb_table op = flm_fb_vec_table(r, ov, o);
            uint32_t ci = flm_fb_get_u32(r, op, TFL_OP_OPCODE, 0);
            if (ci >= codes.n || (code_of[ci] != TFL_OP_FULLY_CONNECTED && code_of[ci] != TFL_OP_DEQUANTIZE)) continue;
            flm_fb_vec ins = flm_fb_get_vector(r, op, TFL_OP_INPUTS, 4);
            uint32_t wi = code_of[ci] == TFL_OP_FULLY_CONNECTED ? 1 : 0;
            if (ins.n <= wi) continue;
            int32_t t = flm_fb_vec_i32(r, ins, wi);
            if (t < 0 || (uint32_t)t >= tv.n) continue;
            if (flm_fb_get_u8(r, flm_fb_vec_table(r, tv, (uint32_t)t), TFL_TENSOR_TYPE, 0) != TFL_INT8) continue;
            if (code_of[ci] == TFL_OP_FULLY_CONNECTED) k->fc_int8_direct++;
            else k->dequant_int8++;
        }
    }
    if (r->bad) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed operators"); goto out; }
    if (!main_model) goto out;
    /* the decode signature */
    int64_t dsub = -1;
    int32_t kv_t = -1, logits_t = -1;
    for (uint32_t i = 0; i < sigs.n; i++) {
        flm_fb_table sg = flm_fb_vec_table(r, sigs, i);
        uint32_t kl = 0;
        const char *key = flm_fb_get_string(r, sg, TFL_SIG_KEY, &kl);
        if (!key || kl != 6 || memcmp(key, "decode", 6)) continue;
        dsub = flm_fb_get_u32(r, sg, TFL_SIG_SUBGRAPH, 0);
        for (int side = 0; side < 2; side++) {
            flm_fb_vec mv = flm_fb_get_vector(r, sg, side ? TFL_SIG_OUTPUTS : TFL_SIG_INPUTS, 4);
            for (uint32_t j = 0; j < mv.n; j++) {
                flm_fb_table mt = flm_fb_vec_table(r, mv, j);
                uint32_t nl = 0;
                const char *nm = flm_fb_get_string(r, mt, TFL_MAP_NAME, &nl);
                int32_t ti = (int32_t)flm_fb_get_u32(r, mt, TFL_MAP_TENSOR, 0);
                if (!nm) continue;
                if (!side && nl == 12 && !memcmp(nm, "kv_cache_k_0", 12)) kv_t = ti;
                if (side && nl == 6 && !memcmp(nm, "logits", 6)) logits_t = ti;
            }
        }
        break;
    }
    if (dsub < 0 || (uint64_t)dsub >= subs.n) goto out;
    flm_fb_table sg = flm_fb_vec_table(r, subs, (uint32_t)dsub);
    graph g = {r, flm_fb_get_vector(r, sg, TFL_SUB_TENSORS, 4), flm_fb_get_vector(r, sg, TFL_SUB_OPERATORS, 4), bufs, NULL};
    int32_t *producer = malloc((g.tensors.n ? g.tensors.n : 1) * sizeof *producer);
    if (!producer) { rc = flm_fail(FLM_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t i = 0; i < g.tensors.n; i++) producer[i] = -1;
    for (uint32_t o = 0; o < g.ops.n && !r->bad; o++) {
        flm_fb_table op = flm_fb_vec_table(r, g.ops, o);
        uint32_t ci = flm_fb_get_u32(r, op, TFL_OP_OPCODE, 0);
        if (ci >= codes.n || (code_of[ci] != TFL_OP_DEQUANTIZE && code_of[ci] != TFL_OP_CAST)) continue;
        flm_fb_vec outs = flm_fb_get_vector(r, op, TFL_OP_OUTPUTS, 4);
        for (uint32_t i = 0; i < outs.n; i++) {
            int32_t t = flm_fb_vec_i32(r, outs, i);
            if (t >= 0 && (uint32_t)t < g.tensors.n) producer[t] = (int32_t)o;
        }
    }
    g.producer = producer;
    int nd;
    int S = tensor_dim(r, g.tensors, kv_t, 1, &nd);
    if (nd == 4 && S > 0) k->cache_length = S;
    int V = tensor_dim(r, g.tensors, logits_t, -1, &nd);
    if (nd >= 1 && V > 0) k->logits_vocab = V;
    /* the embedding table (first EMBEDDING_LOOKUP, or a GATHER of a [V, hidden]
     * constant) and the LM head (the last FULLY_CONNECTED / BATCH_MATMUL with a
     * constant operand) */
    int64_t emb = -1, head = -1;
    for (uint32_t o = 0; o < g.ops.n && !r->bad; o++) {
        flm_fb_table op = flm_fb_vec_table(r, g.ops, o);
        uint32_t ci = flm_fb_get_u32(r, op, TFL_OP_OPCODE, 0);
        if (ci >= codes.n) continue;
        int code = code_of[ci];
        flm_fb_vec ins = flm_fb_get_vector(r, op, TFL_OP_INPUTS, 4);
        if (emb < 0 && code == TFL_OP_EMBEDDING_LOOKUP && ins.n >= 2) emb = const_buffer(&g, flm_fb_vec_i32(r, ins, 1), 0);
        if (emb < 0 && code == TFL_OP_GATHER && ins.n >= 1) {
            int32_t t = flm_fb_vec_i32(r, ins, 0);
            int rows = tensor_dim(r, g.tensors, t, 0, &nd);
            if (nd == 2 && (k->logits_vocab ? rows == k->logits_vocab : rows >= 1000)) emb = const_buffer(&g, t, 0);
        }
        if (code == TFL_OP_FULLY_CONNECTED && ins.n >= 2) {
            int32_t t = flm_fb_vec_i32(r, ins, 1);
            int64_t b = const_buffer(&g, t, 0);
            if (b >= 0) { head = b; k->head_rows = tensor_dim(r, g.tensors, t, 0, &nd); }
        }
        if (code == TFL_OP_BATCH_MATMUL)
            for (uint32_t i = 0; i < ins.n && i < 2; i++) {
                int64_t b = const_buffer(&g, flm_fb_vec_i32(r, ins, i), 0);
                if (b >= 0) { head = b; k->head_rows = 0; }
            }
    }
    free(producer);
    if (r->bad) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed decode subgraph"); goto out; }
    if (emb >= 0 && head >= 0) {
        uint64_t ne = 0, nh = 0;
        const unsigned char *pe = tfl_buffer(r, bufs, (uint32_t)emb, &ne), *ph = tfl_buffer(r, bufs, (uint32_t)head, &nh);
        k->graph_tied = emb == head || (pe && ph && ne == nh && !memcmp(pe, ph, (size_t)ne));
    }
out:
    free(code_of);
    free(seen);
    return rc;
}

/* Reads everything the checks need; FLM_ERR_FORMAT when the file is not a readable
 * bundle. The tokenizer is borrowed from hf when byte-identical. */
static int pkg_load(pkg *k, const unsigned char *buf, size_t len, const flm_doc_truth *hf) {
    memset(k, 0, sizeof *k);
    k->buf = buf;
    k->len = len;
    k->md_sec = k->hf_sec = k->sp_sec = k->main_tflite = -1;
    k->graph_tied = -1;
    int rc = flm_litertlm_parse(buf, len, len, &k->info);
    if (rc) return rc;
    for (int s = 0; s < k->info.n_sec; s++) {
        int dt = k->info.sec[s].data_type;
        size_t n;
        const unsigned char *p = sec_data(k, s, &n);
        if (dt == FLM_LTLM_LLM_METADATA && k->md_sec < 0) {
            k->md_sec = s;
            if ((rc = flm_llm_metadata_decode(p, n, &k->md))) return flm_fail_context(rc, "section %d: ", s);
        } else if (dt == FLM_LTLM_HF_TOKENIZER_ZLIB && k->hf_sec < 0) {
            k->hf_sec = s;
        } else if (dt == FLM_LTLM_SP_TOKENIZER && k->sp_sec < 0) {
            k->sp_sec = s;
            k->sp_has_im_start = n >= 12 && memmem(p, n, "<|im_start|>", 12) != NULL;
        } else if (dt == FLM_LTLM_TFLITE_MODEL) {
            const char *mt = sec_item(k, s, "model_type");
            bool main_model = k->main_tflite < 0 && (!mt || !strcmp(mt, "tf_lite_prefill_decode"));
            if (main_model) k->main_tflite = s;
            k->n_tflite++;
            if ((rc = analyse_tflite(k, p, n, main_model))) return flm_fail_context(rc, "section %d: ", s);
        }
    }
    if (k->md_sec < 0) memset(&k->md, 0, sizeof k->md);
    if (k->hf_sec >= 0) {
        size_t n;
        const unsigned char *p = sec_data(k, k->hf_sec, &n);
        uint64_t ul = 0;
        if (n >= 8) memcpy(&ul, p, 8);
        /* zlib expands at most ~1032:1 */
        if (n < 8 || ul > MAX_TOKENIZER_JSON || ul > (uint64_t)(n - 8) * 1032 + 64) k->tok_inflate_failed = true;
        else {
            char *t = malloc((size_t)ul + 1);
            uLongf got = (uLongf)ul;
            if (!t) return flm_fail(FLM_ERR_NOMEM, "out of memory");
            if (uncompress((Bytef *)t, &got, p + 8, (uLong)(n - 8)) != Z_OK || got != ul) {
                free(t);
                k->tok_inflate_failed = true;
            } else {
                t[ul] = 0;
                k->tok_json = t;
                k->tok_json_len = (size_t)ul;
            }
        }
        if (k->tok_json) {
            if (hf && hf->tok_json && hf->tok_json_len == k->tok_json_len && !memcmp(hf->tok_json, k->tok_json, k->tok_json_len)) {
                k->tok_same_as_hf = true;
                k->tok = hf->tok;
                if (!k->tok && hf->tok_error) k->tok_error = flm_strdup(hf->tok_error);
            } else if (flm_tokenizer_load_json(k->tok_json, k->tok_json_len, "the package's tokenizer.json", &k->tok_owned) == FLM_OK) {
                k->tok = k->tok_owned;
            } else {
                k->tok_owned = NULL;
                k->tok_error = flm_strdup(flm_last_error());
            }
            flm_clear_error();
        }
    }
    return FLM_OK;
}

/* ---- the checks ---- */

typedef struct {
    pkg *k;
    const flm_doc_truth *hf;
    flm_doc_report *rep;
    const flm_tokenizer *vocab; /* the package's tokenizer, else the model's */
    int32_t im_start, im_end, endoftext;
} ctx;

/* A token as LiteRT-LM resolves it: ids, or a string encoded by the tokenizer.
 * Returns the number of ids (writes the first one to *id); -1 when a string cannot be
 * resolved for lack of a tokenizer. */
static int resolve(const ctx *c, const flm_llm_token *t, int32_t legacy_id, int32_t *id) {
    if (!t->str && !t->n_ids) { *id = legacy_id; return 1; }
    if (!t->str) { *id = t->ids[0]; return t->n_ids; }
    if (!c->vocab) return -1;
    int32_t *ids = NULL;
    size_t n = 0;
    if (flm_tokenizer_encode(c->vocab, t->str, t->str_len, &ids, &n) != FLM_OK) { flm_clear_error(); free(ids); return 0; }
    *id = n ? ids[0] : -1;
    free(ids);
    return (int)n;
}

static void tok_name(const ctx *c, int32_t id, strbuf *sb) {
    const char *t = c->vocab && id >= 0 ? flm_tokenizer_token_text(c->vocab, id) : NULL;
    if (t) flm_sb_printf(sb, "%" PRId32 " %s", id, t);
    else flm_sb_printf(sb, "%" PRId32, id);
}

static bool in_set(const int32_t *s, int n, int32_t v) {
    for (int i = 0; i < n; i++)
        if (s[i] == v) return true;
    return false;
}

static void check_stops(ctx *c) {
    const flm_llm_metadata *md = &c->k->md;
    if (md->n_stops_total == 0) {
        add(c->rep, "stop_tokens", FLM_DOC_ERROR,
            fmt("no stop tokens: LiteRT-LM never ends a turn on its own; generation runs past the end of the answer (%s) into made-up "
                "next turns until the token limit",
                c->im_end >= 0 ? "<|im_end|>" : "the model's end-of-turn token"),
            fmt("write the model's eos ids as stop_tokens (%s); fieldlm doctor --fix [--hf DIR] does", c->im_end >= 0 ? "<|im_end|>, <|endoftext|>" : "generation_config.json eos_token_id"));
        return;
    }
    int32_t have[FLM_LLM_MAX_STOPS];
    int n_have = 0;
    strbuf warn;
    flm_sb_init(&warn);
    for (int i = 0; i < md->n_stops; i++) {
        int32_t id = -1;
        const flm_llm_token *t = &md->stops[i];
        int n = resolve(c, t, md->stop_ids[i], &id);
        if (n == 1 && id < 0 && !t->str) {
            flm_sb_printf(&warn, "%san empty stop token (matches nothing)", warn.len ? "; " : "");
            continue;
        }
        if (n == 1 && id >= 0) {
            if (c->vocab && !flm_tokenizer_token_text(c->vocab, id)) {
                flm_sb_printf(&warn, "%sstop id %" PRId32 " is not a token of the vocabulary (never produced)", warn.len ? "; " : "", id);
                continue;
            }
            have[n_have++] = id;
        } else if (n == -1) {
            flm_sb_printf(&warn, "%sstop string ", warn.len ? "; " : "");
            quote(&warn, t->str, t->str_len, 40);
            flm_sb_puts(&warn, " cannot be resolved (no usable tokenizer in the package)");
        } else {
            flm_sb_puts(&warn, warn.len ? "; " : "");
            if (t->str) {
                flm_sb_puts(&warn, "stop string ");
                quote(&warn, t->str, t->str_len, 40);
                flm_sb_printf(&warn, " encodes to %d tokens, not one: LiteRT-LM matches it only when the model emits exactly that id sequence", n);
            } else flm_sb_printf(&warn, "a stop token of %d ids is matched only as that exact sequence", n);
        }
    }
    if (md->n_stops_total > md->n_stops)
        flm_sb_printf(&warn, "%s%d stop tokens (only the first %d were checked)", warn.len ? "; " : "", md->n_stops_total, md->n_stops);
    /* what must be there */
    int32_t want[FLM_LLM_MAX_STOPS + 16];
    int n_want = 0;
    if (c->im_end >= 0) want[n_want++] = c->im_end;
    if (c->hf) {
        int32_t e[FLM_GEN_MAX_EOS];
        int ne = flm_gen_config_eos_ids(&c->hf->gen, -1, e, FLM_GEN_MAX_EOS);
        for (int i = 0; i < ne && i < FLM_GEN_MAX_EOS; i++)
            if (!in_set(want, n_want, e[i])) want[n_want++] = e[i];
        for (int i = 0; i < c->hf->cfg.n_eos && i < 8; i++)
            if (c->hf->cfg.eos_token_ids[i] >= 0 && !in_set(want, n_want, c->hf->cfg.eos_token_ids[i])) want[n_want++] = c->hf->cfg.eos_token_ids[i];
    }
    bool im_end_missing = c->im_end >= 0 && !in_set(have, n_have, c->im_end);
    strbuf missing;
    flm_sb_init(&missing);
    for (int i = 0; i < n_want; i++)
        if (!in_set(have, n_have, want[i]) && want[i] != c->im_end) {
            flm_sb_puts(&missing, missing.len ? ", " : "");
            tok_name(c, want[i], &missing);
        }
    strbuf have_s;
    flm_sb_init(&have_s);
    for (int i = 0; i < n_have; i++) {
        flm_sb_puts(&have_s, i ? ", " : "");
        tok_name(c, have[i], &have_s);
    }
    if (im_end_missing)
        add(c->rep, "stop_tokens", FLM_DOC_ERROR,
            fmt("the stop tokens (%s) do not include <|im_end|> (%" PRId32 "): the model ends its turn with <|im_end|>, LiteRT-LM does not "
                "stop there and generation runs on into a made-up next turn (\"user\" / \"assistant\" lines)%s%s",
                n_have ? flm_sb_cstr(&have_s) : "none usable", c->im_end, missing.len ? "; also missing: " : "", missing.len ? flm_sb_cstr(&missing) : ""),
            fmt("stop_tokens = the model's eos ids including <|im_end|> (fieldlm doctor --fix [--hf DIR])"));
    else if (missing.len)
        flm_sb_printf(&warn, "%sthe model's eos ids %s are not stop tokens: a turn that ends with them is not stopped", warn.len ? "; " : "",
                      flm_sb_cstr(&missing));
    if (warn.len)
        add(c->rep, "stop_tokens", FLM_DOC_WARNING, flm_sb_take(&warn),
            fmt("give each stop token as one token id (token_ids), the model's eos ids (fieldlm doctor --fix [--hf DIR])"));
    flm_sb_free(&warn);
    flm_sb_free(&missing);
    flm_sb_free(&have_s);
}

/* The conversations rendered with both templates. */
static const struct {
    const char *name, *messages;
    bool agp;
} CONVS[] = {
    {"system + user", "[{\"role\":\"system\",\"content\":\"You are an agricultural advisor for smallholder farmers.\"},"
                      "{\"role\":\"user\",\"content\":\"How do I control stem borer in paddy?\"}]", true},
    {"user only", "[{\"role\":\"user\",\"content\":\"Which fertilizer should I give cotton at flowering?\"}]", true},
    {"multi-turn", "[{\"role\":\"user\",\"content\":\"My tomato leaves curl upwards.\"},"
                   "{\"role\":\"assistant\",\"content\":\"That is often leaf curl virus spread by whiteflies.\"},"
                   "{\"role\":\"user\",\"content\":\"How do I control the whiteflies?\"}]", true},
    {"multi-turn ending with the assistant, no generation prompt",
     "[{\"role\":\"system\",\"content\":\"Answer briefly.\"},{\"role\":\"user\",\"content\":\"Sowing time for maize?\"},"
     "{\"role\":\"assistant\",\"content\":\"June to July, with the monsoon.\"}]", false},
};
#define N_CONVS (sizeof CONVS / sizeof *CONVS)

/* Renders conversation i; 0 on success (out filled), else the error message in err. */
static int render_conv(const flm_template *t, size_t i, const flm_json *vars, strbuf *out) {
    flm_json_doc *d = flm_json_parse(CONVS[i].messages, strlen(CONVS[i].messages), "conversation");
    if (!d) return FLM_ERR_NOMEM;
    int rc = flm_template_render(t, flm_json_root(d), NULL, CONVS[i].agp, vars, out);
    flm_json_free(d);
    return rc;
}

static void check_template(ctx *c) {
    const flm_llm_metadata *md = &c->k->md;
    if (!md->jinja) {
        add(c->rep, "prompt_template", FLM_DOC_ERROR,
            fmt("no jinja_prompt_template: LiteRT-LM builds the prompt from %s with the role name \"model\" for the assistant: "
                "the model's own chat format is not reproduced%s",
                md->has_prompt_templates ? "the package's user/model/system affixes" : "its default affixes",
                c->im_start >= 0 ? " (Qwen's default system prompt disappears, the assistant turn is not \"<|im_start|>assistant\")" : ""),
            fmt("write the model's chat template (tokenizer_config.json chat_template) as jinja_prompt_template (fieldlm doctor --fix --hf DIR)"));
        return;
    }
    flm_template *pt = NULL;
    int prc = flm_template_compile_n(md->jinja, md->jinja_len, &pt);
    char *perr = prc ? flm_strdup(flm_last_error()) : NULL;
    flm_clear_error();
    if (!c->hf || !c->hf->tmpl) {
        if (c->hf && !c->hf->tmpl)
            add(c->rep, "prompt_template", FLM_DOC_INFO, fmt("the model folder has no chat template: the package's template was not compared"),
                fmt("none"));
        /* from the file alone: it must at least render */
        strbuf o;
        flm_sb_init(&o);
        size_t bad = N_CONVS;
        for (size_t i = 0; i < N_CONVS && !prc && bad == N_CONVS; i++) {
            flm_sb_clear(&o);
            if (render_conv(pt, i, NULL, &o)) { bad = i; perr = flm_strdup(flm_last_error()); flm_clear_error(); }
        }
        if (prc || bad < N_CONVS)
            add(c->rep, "prompt_template", FLM_DOC_WARNING,
                fmt("the package's jinja_prompt_template does not %s with fieldlm's Jinja (%s): LiteRT-LM's renderer may fail on it or "
                    "render something else",
                    prc ? "compile" : "render a standard conversation", perr ? perr : "?"),
                fmt("compare it with the model's own template: fieldlm doctor FILE --hf DIR"));
        flm_sb_free(&o);
        free(perr);
        flm_template_free(pt);
        return;
    }
    const flm_named_template *ht = c->hf->tmpl;
    if (ht->len == md->jinja_len && !memcmp(ht->text, md->jinja, ht->len)) { free(perr); flm_template_free(pt); return; }
    flm_template *mt = NULL;
    if (flm_template_compile_n(ht->text, ht->len, &mt)) {
        add(c->rep, "prompt_template", FLM_DOC_INFO,
            fmt("the package's template differs from the model's, which fieldlm cannot compile (%s): not compared by rendering", flm_last_error()),
            fmt("check the template by hand"));
        flm_clear_error();
        free(perr);
        flm_template_free(pt);
        return;
    }
    const flm_json *vars = c->hf->tsrc.vars ? flm_json_root(c->hf->tsrc.vars) : NULL;
    strbuf a, b;
    flm_sb_init(&a);
    flm_sb_init(&b);
    char *diff = NULL;
    for (size_t i = 0; i < N_CONVS && !diff; i++) {
        flm_sb_clear(&a);
        flm_sb_clear(&b);
        if (render_conv(mt, i, vars, &b)) { flm_clear_error(); continue; } /* the model's own fails: nothing to compare */
        if (prc || render_conv(pt, i, vars, &a)) {
            const char *why = prc ? perr : flm_last_error();
            diff = fmt("the package's template %s (%s) where the model's renders the conversation \"%s\"", prc ? "does not compile" : "fails",
                       why ? why : "?", CONVS[i].name);
            flm_clear_error();
            break;
        }
        if (a.len == b.len && !memcmp(a.data, b.data, a.len)) continue;
        size_t at = 0;
        while (at < a.len && at < b.len && a.data[at] == b.data[at]) at++;
        size_t from = at > 20 ? at - 20 : 0;
        strbuf d;
        flm_sb_init(&d);
        flm_sb_printf(&d, "conversation \"%s\" renders differently from byte %zu: the package gives ...", CONVS[i].name, at);
        quote(&d, a.data + from, a.len - from, 60);
        flm_sb_puts(&d, ", the model's template ...");
        quote(&d, b.data + from, b.len - from, 60);
        diff = flm_sb_take(&d);
    }
    if (diff)
        add(c->rep, "prompt_template", FLM_DOC_ERROR,
            fmt("%s: LiteRT-LM prompts the model in a format it was not trained on", diff),
            fmt("use the model's own chat template as jinja_prompt_template (fieldlm doctor --fix --hf DIR)"));
    free(diff);
    flm_sb_free(&a);
    flm_sb_free(&b);
    free(perr);
    flm_template_free(pt);
    flm_template_free(mt);
}

static const char *sampler_type_name(int t) {
    static const char *const N[] = {"TYPE_UNSPECIFIED", "TOP_K", "TOP_P", "GREEDY"};
    return t >= 0 && t < 4 ? N[t] : "unknown";
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-6 * (1 + fabs(b)); }

static void check_sampler(ctx *c) {
    const flm_llm_metadata *md = &c->k->md;
    const flm_gen_config *g = c->hf ? &c->hf->gen : NULL;
    char *nopen = NULL; /* what LiteRT-LM's sampler cannot express */
    if (g && (g->repetition_penalty != 1.0 || g->min_p > 0)) {
        char rp[48] = "", mp[48] = "";
        if (g->repetition_penalty != 1.0) snprintf(rp, sizeof rp, " repetition_penalty %g", g->repetition_penalty);
        if (g->min_p > 0) snprintf(mp, sizeof mp, " min_p %g", g->min_p);
        nopen = fmt("LiteRT-LM's sampler cannot express generation_config.json's%s%s: repetition is not penalised, so loops the "
                    "original model avoids can appear", rp, mp);
    }
    const char *fix_nopen = "nothing in the package can express it; accept the difference (fieldlm ablate measures it) or run where a "
                            "repetition penalty exists";
    if (!md->has_sampler) {
        if (g && !g->do_sample) { /* LiteRT-LM's default is greedy, as the model */
            if (nopen) add(c->rep, "sampler", FLM_DOC_WARNING, nopen, fmt("%s", fix_nopen));
            return;
        }
        add(c->rep, "sampler", g ? FLM_DOC_ERROR : FLM_DOC_WARNING,
            fmt("no sampler_params: LiteRT-LM decodes with TOP_P k=1 (greedy)%s%s%s",
                g ? " where the model samples (generation_config.json do_sample true)" : "; greedy decoding of a chat model tends to repeat itself",
                nopen ? "; " : "", nopen ? nopen : ""),
            fmt("write generation_config.json's sampling as sampler_params (TOP_P with its top_k, top_p, temperature; fieldlm doctor --fix --hf DIR)"));
        free(nopen);
        return;
    }
    if (!g) {
        if (md->sampler_type == 0 || md->sampler_type > 3)
            add(c->rep, "sampler", FLM_DOC_WARNING,
                fmt("sampler_params type %s (%d): LiteRT-LM does not know which sampler to use", sampler_type_name(md->sampler_type), md->sampler_type),
                fmt("set the sampler from generation_config.json (fieldlm doctor --fix --hf DIR)"));
        return;
    }
    strbuf d;
    flm_sb_init(&d);
    if (!g->do_sample) {
        bool greedy = md->sampler_type == 3 || ((md->sampler_type == 1 || md->sampler_type == 2) && md->k == 1);
        if (!greedy)
            flm_sb_printf(&d, "the model decodes greedily (do_sample false) but the package samples (%s k=%" PRId32 " p=%g temperature=%g)",
                          sampler_type_name(md->sampler_type), md->k, (double)md->p, (double)md->temperature);
    } else {
        int want_k = g->top_k > 0 ? g->top_k : 0;
        bool k_ok = md->k == want_k || (want_k == 0 && md->k <= 0);
        if (md->sampler_type == 3) flm_sb_puts(&d, "type GREEDY where the model samples (do_sample true)");
        else if (md->sampler_type != 1 && md->sampler_type != 2) flm_sb_printf(&d, "type %s (%d)", sampler_type_name(md->sampler_type), md->sampler_type);
        else {
            if (!k_ok) flm_sb_printf(&d, "k %" PRId32 " (generation_config top_k %d)", md->k, g->top_k);
            if (md->sampler_type == 2 && !near(md->p, g->top_p)) flm_sb_printf(&d, "%sp %g (top_p %g)", d.len ? ", " : "", (double)md->p, g->top_p);
            if (md->sampler_type == 1 && g->top_p < 1.0) flm_sb_printf(&d, "%stype TOP_K ignores top_p %g", d.len ? ", " : "", g->top_p);
            if (!near(md->temperature, g->temperature))
                flm_sb_printf(&d, "%stemperature %g (%g)", d.len ? ", " : "", (double)md->temperature, g->temperature);
        }
    }
    if (d.len) {
        add(c->rep, "sampler", FLM_DOC_ERROR,
            fmt("sampler_params differ from generation_config.json: %s: LiteRT-LM draws tokens from another distribution than the "
                "original model%s%s", flm_sb_cstr(&d), nopen ? "; " : "", nopen ? nopen : ""),
            fmt("write generation_config.json's sampling as sampler_params (fieldlm doctor --fix --hf DIR)"));
        free(nopen);
    } else if (nopen) add(c->rep, "sampler", FLM_DOC_WARNING, nopen, fmt("%s", fix_nopen));
    flm_sb_free(&d);
}

static const char *model_type_name(int t) {
    static const char *const N[] = {"none", "generic_model", "gemma3n", "function_gemma", "gemma3", "qwen3", "6", "qwen2p5",
                                    "gemma4", "fast_vlm", "10", "lfm2", "minicpm5", "gemma3270m"};
    return t >= 0 && t < (int)(sizeof N / sizeof *N) ? N[t] : "unknown";
}

static void check_model_type(ctx *c) {
    int t = c->k->md.model_type;
    int want = 0;
    if (c->hf) {
        if (!strcmp(c->hf->cfg.model_type, "qwen2")) want = LLM_QWEN2P5;
        else if (!strcmp(c->hf->cfg.model_type, "qwen3")) want = LLM_QWEN3;
    }
    if (!t) {
        bool qv = c->im_start >= 0 || c->k->sp_has_im_start;
        add(c->rep, "model_type", qv || want ? FLM_DOC_ERROR : FLM_DOC_WARNING,
            fmt("no llm_model_type: LiteRT-LM guesses the model from the vocabulary%s", qv ? ": one with <|im_start|> is taken for FastVlm, not Qwen, "
                "and its prompt and tool conventions are applied" : " and falls back to a generic model"),
            fmt("set llm_model_type to %s (fieldlm doctor --fix --hf DIR)", want ? model_type_name(want) : "the model's family (qwen2p5 for Qwen2 / Qwen2.5)"));
        return;
    }
    if (want && t != want) {
        add(c->rep, "model_type", FLM_DOC_ERROR,
            fmt("llm_model_type is %s but config.json says model_type \"%s\": LiteRT-LM applies %s's conventions to a %s model",
                model_type_name(t), c->hf->cfg.model_type, model_type_name(t), c->hf->cfg.model_type),
            fmt("set llm_model_type to %s (fieldlm doctor --fix --hf DIR)", model_type_name(want)));
        return;
    }
    if (!c->hf && c->im_start >= 0 && t != LLM_QWEN2P5 && t != LLM_QWEN3 && t != LLM_GENERIC)
        add(c->rep, "model_type", FLM_DOC_WARNING,
            fmt("llm_model_type is %s, but the vocabulary is Qwen's (<|im_start|>): LiteRT-LM applies %s's conventions", model_type_name(t), model_type_name(t)),
            fmt("set the model's family (qwen2p5 for Qwen2 / Qwen2.5); compare with --hf DIR"));
}

static void check_start(ctx *c) {
    const flm_llm_metadata *md = &c->k->md;
    bool model_bos = c->hf ? c->hf->add_bos : (c->k->tok_json && has_template_processing(c->k->tok_json, c->k->tok_json_len));
    if (!md->has_start) return;
    const flm_llm_token *t = &md->start_tok;
    if (t->str && t->str_len == 4 && !memcmp(t->str, "None", 4)) {
        add(c->rep, "start_token", FLM_DOC_ERROR,
            fmt("start_token is the string \"None\" (a Python None written as text): LiteRT-LM encodes it and puts the text \"None\" "
                "in front of every prompt"),
            fmt("remove start_token%s (fieldlm doctor --fix)", model_bos ? " or give the model's BOS id" : ""));
        return;
    }
    if (!t->str && !t->n_ids && md->start_id < 0) return;
    int32_t id = -1;
    int n = resolve(c, t, md->start_id, &id);
    strbuf s;
    flm_sb_init(&s);
    if (n == 1) tok_name(c, id, &s);
    else if (t->str) quote(&s, t->str, t->str_len, 40);
    else flm_sb_printf(&s, "%d ids", n);
    if (!model_bos)
        add(c->rep, "start_token", FLM_DOC_ERROR,
            fmt("start_token %s, but the model has no BOS token (the tokenizer adds none; transformers starts prompts with the chat "
                "template's first token): LiteRT-LM puts it in front of every prompt, a token the model never saw there",
                flm_sb_cstr(&s)),
            fmt("remove start_token (fieldlm doctor --fix)"));
    else if (c->hf && c->hf->cfg.bos_token_id >= 0 && (n != 1 || id != c->hf->cfg.bos_token_id))
        add(c->rep, "start_token", FLM_DOC_WARNING,
            fmt("start_token %s is not the model's BOS id %d", flm_sb_cstr(&s), c->hf->cfg.bos_token_id),
            fmt("set start_token to %d", c->hf->cfg.bos_token_id));
    flm_sb_free(&s);
}

static void check_context(ctx *c) {
    int m = c->k->md.max_num_tokens, S = c->rep->cache_length;
    int mpe = c->hf ? c->hf->cfg.max_position_embeddings : 0;
    if (m <= 0) {
        add(c->rep, "context", FLM_DOC_WARNING,
            fmt("no max_num_tokens: LiteRT-LM uses its runtime's default capacity%s", S ? ", which need not be the graph's KV cache" : ""),
            S ? fmt("set max_num_tokens to the graph's KV cache length %d (fieldlm doctor --fix)", S) : fmt("set max_num_tokens to the graph's KV cache length"));
        return;
    }
    if (S && m > S) {
        add(c->rep, "context", FLM_DOC_ERROR,
            fmt("max_num_tokens %d is larger than the graph's KV cache (%d positions): LiteRT-LM lets a conversation grow past the "
                "cache, where the graph's cache update and mask no longer hold the earlier tokens",
                m, S),
            fmt("max_num_tokens = %d, the cache length (fieldlm doctor --fix), or re-convert with a larger cache", S));
        return;
    }
    if (mpe > 0 && m > mpe) {
        add(c->rep, "context", FLM_DOC_ERROR,
            fmt("max_num_tokens %d is beyond the model's max_position_embeddings %d: positions past it were never trained", m, mpe),
            fmt("max_num_tokens = %d or less", mpe));
        return;
    }
    if (S && m < S) {
        add(c->rep, "context", FLM_DOC_WARNING,
            fmt("max_num_tokens %d is smaller than the graph's KV cache (%d): LiteRT-LM refuses longer prompts and stops decoding at %d "
                "tokens though the graph holds %d",
                m, S, m, S),
            fmt("max_num_tokens = %d (fieldlm doctor --fix)", S));
        return;
    }
    if (m < SMALL_CONTEXT)
        add(c->rep, "context", FLM_DOC_WARNING,
            fmt("a capacity of %d tokens is small for chat (1280 was the old converter default): the system prompt, a few turns and "
                "the answer reach it quickly; LiteRT-LM then refuses the prompt or cuts the answer",
                m),
            fmt("re-convert with a larger cache (fieldlm convert --ctx 4096 or more) and set max_num_tokens to it"));
}

static bool bytelevel_bpe(const flm_doc_truth *hf) {
    return hf && hf->tok_json && memmem(hf->tok_json, hf->tok_json_len, "\"ByteLevel\"", 11) != NULL;
}

/* The first difference between two tokenizers, or NULL when they agree. */
static char *tokenizer_diff(const flm_tokenizer *a, const flm_tokenizer *b) {
    flm_tokenizer_spec x, y;
    flm_tokenizer_get_spec(a, &x);
    flm_tokenizer_get_spec(b, &y);
    if (x.n_vocab != y.n_vocab) return fmt("%zu vocabulary entries, the model's has %zu", x.n_vocab, y.n_vocab);
    for (size_t i = 0; i < x.n_vocab; i++) {
        const char *p = x.vocab[i] ? x.vocab[i] : "", *q = y.vocab[i] ? y.vocab[i] : "";
        if (strcmp(p, q)) return fmt("token %zu is \"%.40s\", the model's is \"%.40s\"", i, p, q);
    }
    if (x.n_merges != y.n_merges) return fmt("%zu merges, the model's has %zu", x.n_merges, y.n_merges);
    for (size_t i = 0; i < x.n_merges; i++)
        if (strcmp(x.merges[i], y.merges[i])) return fmt("merge %zu is \"%.40s\", the model's is \"%.40s\"", i, x.merges[i], y.merges[i]);
    if (x.n_added != y.n_added) return fmt("%zu added tokens, the model's has %zu", x.n_added, y.n_added);
    for (size_t i = 0; i < x.n_added; i++) {
        const flm_added_token *p = &x.added[i], *q = &y.added[i];
        if (p->id != q->id || strcmp(p->content, q->content) || p->special != q->special || p->lstrip != q->lstrip || p->rstrip != q->rstrip ||
            p->single_word != q->single_word || p->normalized != q->normalized)
            return fmt("added token %" PRId32 " \"%.40s\" differs from the model's %" PRId32 " \"%.40s\"", p->id, p->content, q->id, q->content);
    }
    const char *names[3] = {"normalizer", "pre_tokenizer", "decoder"};
    const char *px[3] = {x.normalizer_json, x.pre_tokenizer_json, x.decoder_json}, *py[3] = {y.normalizer_json, y.pre_tokenizer_json, y.decoder_json};
    for (int i = 0; i < 3; i++)
        if (strcmp(px[i] ? px[i] : "null", py[i] ? py[i] : "null")) return fmt("its %s is %.80s, the model's %.80s", names[i], px[i] ? px[i] : "null", py[i] ? py[i] : "null");
    if (x.ignore_merges != y.ignore_merges) return fmt("ignore_merges %d, the model's %d", x.ignore_merges, y.ignore_merges);
    return NULL;
}

static void check_tokenizer(ctx *c) {
    pkg *k = c->k;
    if (k->hf_sec < 0) {
        if (k->sp_sec < 0) {
            add(c->rep, "tokenizer", FLM_DOC_ERROR, fmt("no tokenizer section: LiteRT-LM cannot turn text into ids"),
                fmt("add the model's tokenizer.json as an HF_Tokenizer_Zlib section (fieldlm doctor --fix --hf DIR)"));
            return;
        }
        bool qwen = bytelevel_bpe(c->hf) || k->sp_has_im_start || k->md.model_type == LLM_QWEN2P5 || k->md.model_type == LLM_QWEN3 ||
                    (k->md.jinja && memmem(k->md.jinja, k->md.jinja_len, "<|im_start|>", 12));
        add(c->rep, "tokenizer", qwen ? FLM_DOC_ERROR : FLM_DOC_INFO,
            qwen ? fmt("only a SentencePiece tokenizer, for a byte-level BPE model (Qwen): a SentencePiece conversion of a byte-level "
                       "vocabulary splits text differently (spaces, digits, non-Latin scripts), so LiteRT-LM feeds the model ids it was "
                       "not trained on")
                 : fmt("a SentencePiece tokenizer: fieldlm cannot read it; compare it with the model's tokenizer by hand"),
            qwen ? fmt("replace it with the model's tokenizer.json as an HF_Tokenizer_Zlib section (fieldlm doctor --fix --hf DIR)") : fmt("none"));
        return;
    }
    if (k->tok_inflate_failed || !k->tok_json) {
        add(c->rep, "tokenizer", FLM_DOC_ERROR, fmt("the HF_Tokenizer_Zlib section does not inflate: LiteRT-LM cannot load the tokenizer"),
            fmt("rewrite it from the model's tokenizer.json (fieldlm doctor --fix --hf DIR)"));
        return;
    }
    if (c->hf && !c->hf->tok_json)
        add(c->rep, "tokenizer", FLM_DOC_INFO, fmt("the model folder has no tokenizer.json: the package's tokenizer was not compared"), fmt("none"));
    if (c->hf && c->hf->tok_json && !k->tok_same_as_hf) {
        char *d = NULL;
        if (k->tok && c->hf->tok) d = tokenizer_diff(k->tok, c->hf->tok);
        else if (!k->tok) d = fmt("its bytes differ and fieldlm cannot read it to compare further (%s)", k->tok_error ? k->tok_error : "?");
        if (d) {
            add(c->rep, "tokenizer", FLM_DOC_ERROR,
                fmt("the package's tokenizer.json differs from the model's: %s: LiteRT-LM encodes text into other ids than the model was trained on", d),
                fmt("use the model's tokenizer.json (fieldlm doctor --fix --hf DIR)"));
            free(d);
            return;
        }
    }
    if (!k->tok) {
        add(c->rep, "tokenizer", FLM_DOC_INFO,
            fmt("fieldlm cannot read the package's tokenizer.json (%s): token checks were done without it", k->tok_error ? k->tok_error : "?"), fmt("none"));
        return;
    }
    size_t nv = flm_tokenizer_vocab_size(k->tok);
    if (c->rep->logits_vocab && nv > (size_t)c->rep->logits_vocab)
        add(c->rep, "tokenizer", FLM_DOC_ERROR,
            fmt("the tokenizer has %zu ids but the graph's logits only %d: ids past %d index outside the embedding table", nv,
                c->rep->logits_vocab, c->rep->logits_vocab - 1),
            fmt("use the tokenizer the model was trained with"));
}

static void check_quant(ctx *c) {
    pkg *k = c->k;
    if (!k->n_tflite) {
        add(c->rep, "quantization", FLM_DOC_WARNING, fmt("no TFLite model section: nothing for LiteRT-LM to run"),
            fmt("convert the model into the package (fieldlm convert MODEL -o FILE.litertlm)"));
        return;
    }
    strbuf s;
    flm_sb_init(&s);
    flm_sb_puts(&s, "weights:");
    bool any = false;
    for (int q = 0; q < Q_N; q++) {
        if (!k->q_tensors[q]) continue;
        flm_sb_printf(&s, "%s %s %" PRIu64 " tensor%s, %" PRIu64 " bytes", any ? ";" : "", QNAME[q], k->q_tensors[q], k->q_tensors[q] == 1 ? "" : "s",
                      k->q_bytes[q]);
        any = true;
    }
    if (!any) flm_sb_puts(&s, " none found");
    bool int4_bad = k->q_tensors[Q_I4_CH] || k->q_tensors[Q_I4_T];
    bool int8 = k->q_tensors[Q_I8_CH] || k->q_tensors[Q_I8_T] || k->q_tensors[Q_I8_BLOCK];
    if (int4_bad)
        flm_sb_puts(&s, ". int4 per-channel (or per-tensor) weights are known to wreck small models: one scale per row of 4-bit values "
                        "loses too much, and LiteRT-LM's text degrades into repetition and fragments");
    else if (int8 && k->fc_int8_direct)
        flm_sb_printf(&s, ". %" PRIu64 " FULLY_CONNECTED operators take int8 weights directly, so LiteRT quantizes their float "
                      "activations to int8 at run time too (dynamic_int8): the logits move a little and greedy text can differ from "
                      "the float model on some prompts", k->fc_int8_direct);
    else if (int8)
        flm_sb_puts(&s, ". int8 weights dequantized to float compute (weight-only): the logits move a little");
    else if (k->q_tensors[Q_I4_BLOCK]) flm_sb_puts(&s, ". blockwise int4 keeps quality far better than per-channel int4");
    else flm_sb_puts(&s, ". float weights: no quantization error");
    add(c->rep, "quantization", int4_bad ? FLM_DOC_WARNING : FLM_DOC_INFO, flm_sb_take(&s),
        int4_bad ? fmt("re-convert with int8 (dynamic_int8 or weight_only_int8) or blockwise int4 (block size 32)")
                 : int8 ? fmt("none needed; %s if answers differ from the original model", k->fc_int8_direct ? "weight_only_int8 or fp16" : "fp16 or f32")
                        : fmt("none needed"));
}

static void check_lm_head(ctx *c) {
    if (!c->hf) return;
    bool hf_untied = !c->hf->cfg.tie_word_embeddings && c->hf->lm_head_weight == 1;
    if (!hf_untied) return;
    if (c->k->graph_tied == 1)
        add(c->rep, "lm_head", FLM_DOC_ERROR,
            fmt("the model has its own lm_head.weight (config.json tie_word_embeddings false) but the graph's LM head is the embedding "
                "table: LiteRT-LM computes the logits with the wrong matrix (AI Edge Torch's Qwen builder assumes tied embeddings)"),
            fmt("re-convert with the separate lm_head.weight (fieldlm convert writes it)"));
    else if (c->k->graph_tied < 0 && c->k->main_tflite >= 0)
        add(c->rep, "lm_head", FLM_DOC_INFO,
            fmt("the model has its own lm_head.weight; the graph's LM head could not be identified (no decode signature with an "
                "embedding lookup and a final matmul), so it was not checked"),
            fmt("check by hand that the graph uses lm_head.weight"));
}

int flm_doctor_check(const unsigned char *buf, size_t len, const flm_doc_truth *hf, flm_doc_report *rep) {
    memset(rep, 0, sizeof *rep);
    pkg *k = flm_calloc(1, sizeof *k);
    if (!k) return FLM_ERR_NOMEM;
    int rc = pkg_load(k, buf, len, hf);
    if (rc) { pkg_free(k); free(k); return rc; }
    rep->cache_length = k->cache_length;
    rep->logits_vocab = k->logits_vocab;
    ctx c = {k, hf, rep, k->tok ? k->tok : hf ? hf->tok : NULL, -1, -1, -1};
    if (c.vocab) {
        c.im_start = flm_tokenizer_token_id(c.vocab, "<|im_start|>");
        c.im_end = flm_tokenizer_token_id(c.vocab, "<|im_end|>");
        c.endoftext = flm_tokenizer_token_id(c.vocab, "<|endoftext|>");
    }
    check_stops(&c);
    check_template(&c);
    check_sampler(&c);
    check_model_type(&c);
    check_start(&c);
    check_context(&c);
    check_tokenizer(&c);
    check_quant(&c);
    check_lm_head(&c);
    flm_clear_error();
    pkg_free(k);
    free(k);
    return FLM_OK;
}

int flm_doctor_check_file(const char *path, const flm_doc_truth *hf, flm_doc_report *rep) {
    flm_map m;
    memset(rep, 0, sizeof *rep);
    int rc = flm_map_open(path, &m);
    if (rc) return rc;
    rc = m.data ? flm_doctor_check(m.data, m.size, hf, rep) : flm_fail(FLM_ERR_FORMAT, "empty file");
    flm_map_close(&m);
    if (rc) return flm_fail_context(rc, "%s: ", path);
    return FLM_OK;
}

/* ---- output ---- */

void flm_doc_report_write(const flm_doc_report *rep, const char *file, const char *hf_dir, bool json, const char *extra_json, strbuf *sb) {
    if (json) {
        flm_sb_puts(sb, "{\"file\":");
        flm_sb_json_string(sb, file, strlen(file), false);
        flm_sb_puts(sb, ",\"hf\":");
        if (hf_dir) flm_sb_json_string(sb, hf_dir, strlen(hf_dir), false);
        else flm_sb_puts(sb, "null");
        flm_sb_printf(sb, ",\"errors\":%d,\"warnings\":%d,\"infos\":%d,\"cache_length\":", rep->n_error, rep->n_warning, rep->n_info);
        if (rep->cache_length) flm_sb_printf(sb, "%d", rep->cache_length); else flm_sb_puts(sb, "null");
        flm_sb_puts(sb, ",\"logits_vocab\":");
        if (rep->logits_vocab) flm_sb_printf(sb, "%d", rep->logits_vocab); else flm_sb_puts(sb, "null");
        flm_sb_puts(sb, ",\"findings\":[");
        for (int i = 0; i < rep->n; i++) {
            const flm_doc_finding *f = &rep->items[i];
            flm_sb_printf(sb, "%s{\"code\":\"%s\",\"severity\":\"%s\",\"message\":", i ? "," : "", f->code, flm_doc_severity_name(f->severity));
            flm_sb_json_string(sb, f->message, strlen(f->message), false);
            flm_sb_puts(sb, ",\"fix\":");
            flm_sb_json_string(sb, f->fix, strlen(f->fix), false);
            flm_sb_putc(sb, '}');
        }
        flm_sb_putc(sb, ']');
        if (extra_json) { flm_sb_puts(sb, ",\"fixed\":"); flm_sb_puts(sb, extra_json); }
        flm_sb_putc(sb, '}');
        return;
    }
    flm_sb_printf(sb, "%s: %d error%s, %d warning%s, %d info%s", file, rep->n_error, rep->n_error == 1 ? "" : "s", rep->n_warning,
                  rep->n_warning == 1 ? "" : "s", rep->n_info, rep->n_info == 1 ? "" : "s");
    if (hf_dir) flm_sb_printf(sb, " (compared with %s)", hf_dir);
    else flm_sb_puts(sb, " (from the file alone; --hf DIR compares with the model)");
    flm_sb_putc(sb, '\n');
    for (int i = 0; i < rep->n; i++) {
        const flm_doc_finding *f = &rep->items[i];
        flm_sb_printf(sb, "%-7s %-15s %s\n", flm_doc_severity_name(f->severity), f->code, f->message);
        if (f->fix[0]) flm_sb_printf(sb, "        %-15s fix: %s\n", "", f->fix);
    }
}

/* ---- --fix ---- */

typedef struct {
    int fd;
    const char *path;
    const flm_litertlm_info *info;
    const int *src; /* output section -> input section (-1: in memory) */
} copy_ctx;

static int copy_section(void *vctx, size_t index, flm_outfile *of) {
    copy_ctx *cc = vctx;
    int s = cc->src[index];
    if (s < 0) return flm_fail(FLM_ERR_ARG, "doctor: section %zu has no source", index);
    uint64_t at = cc->info->sec[s].begin, end = cc->info->sec[s].end;
    size_t cap = 1u << 20;
    unsigned char *b = flm_malloc(cap);
    if (!b) return FLM_ERR_NOMEM;
    int rc = FLM_OK;
    while (at < end && !rc) {
        size_t want = end - at < cap ? (size_t)(end - at) : cap;
        ssize_t got = pread(cc->fd, b, want, (off_t)at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) { rc = flm_fail(FLM_ERR_IO, "%s: read failed at byte %llu (%s)", cc->path, (unsigned long long)at, got < 0 ? strerror(errno) : "file shrank"); break; }
        rc = flm_outfile_write(of, b, (size_t)got);
        at += (uint64_t)got;
    }
    free(b);
    return rc;
}

/* The header's key/value pairs as strings: strings exactly (the reader's copies are
 * truncated), numbers as the reader prints them. */
typedef struct {
    char *key, *value;
} kvs;

static int read_kvs(const unsigned char *buf, const flm_litertlm_info *info, int sec, kvs **out, size_t *n_out) {
    flm_fb_reader r = {buf + 32, (size_t)info->header_end - 32, false};
    flm_fb_table root = flm_fb_root(&r, NULL);
    flm_fb_vec v;
    if (sec < 0) v = flm_fb_get_vector(&r, flm_fb_get_table(&r, root, 0), 0, 4);
    else {
        flm_fb_vec ov = flm_fb_get_vector(&r, flm_fb_get_table(&r, root, 1), 0, 4);
        v = flm_fb_get_vector(&r, flm_fb_vec_table(&r, ov, (uint32_t)sec), 0, 4);
    }
    size_t n = v.n > FLM_LITERTLM_MAX_KV ? FLM_LITERTLM_MAX_KV : v.n;
    kvs *a = flm_calloc(n ? n : 1, sizeof *a);
    if (!a) return FLM_ERR_NOMEM;
    const flm_litertlm_read_kv *printed = sec < 0 ? info->sys : info->sec[sec].items;
    int n_printed = sec < 0 ? info->n_sys : info->sec[sec].n_items;
    for (size_t i = 0; i < n; i++) {
        flm_fb_table kv = flm_fb_vec_table(&r, v, (uint32_t)i);
        uint32_t kl = 0, vl = 0;
        const char *k = flm_fb_get_string(&r, kv, 0, &kl);
        const char *val = NULL;
        if (flm_fb_get_u8(&r, kv, 1, 0) == 9) val = flm_fb_get_string(&r, flm_fb_get_table(&r, kv, 2), 0, &vl);
        a[i].key = k ? flm_strndup(k, kl) : flm_strdup("");
        if (val) a[i].value = flm_strndup(val, vl);
        else a[i].value = flm_strdup((int)i < n_printed ? printed[i].value : "");
    }
    *out = a;
    *n_out = n;
    return r.bad ? flm_fail(FLM_ERR_FORMAT, ".litertlm header: malformed key/value pairs") : FLM_OK;
}

static void free_kvs(kvs *a, size_t n) {
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].key);
        free(a[i].value);
    }
    free(a);
}

int flm_doctor_fix(const char *in_path, const char *out_path, const flm_doc_truth *hf, strbuf *changes) {
    const char *inputs[2] = {in_path, hf ? hf->dir : NULL};
    int rc = flm_outfile_check(out_path, inputs, 2);
    if (rc) return rc;
    strbuf dummy;
    flm_sb_init(&dummy);
    flm_map m;
    if ((rc = flm_map_open(in_path, &m))) return rc;
    if (!m.data) { flm_map_close(&m); return flm_fail(FLM_ERR_FORMAT, "%s: empty file", in_path); }
    pkg *k = flm_calloc(1, sizeof *k);
    kvs *sys = NULL, *items[FLM_LITERTLM_MAX_SECTIONS + 2];
    size_t n_sys = 0, n_items[FLM_LITERTLM_MAX_SECTIONS + 2];
    memset(items, 0, sizeof items);
    memset(n_items, 0, sizeof n_items);
    unsigned char *meta = NULL, *z = NULL;
    size_t meta_len = 0;
    flm_litertlm_kv *sys_kv = NULL;
    flm_litertlm_kv *item_kv[FLM_LITERTLM_MAX_SECTIONS + 2];
    memset(item_kv, 0, sizeof item_kv);
    int fd = -1;
    flm_outfile of = {0};
    of.fd = -1;
    bool of_open = false;
    if (!k) { rc = FLM_ERR_NOMEM; goto done; }
    if ((rc = pkg_load(k, m.data, m.size, hf))) { rc = flm_fail_context(rc, "%s: ", in_path); goto done; }
    ctx c = {k, hf, NULL, k->tok ? k->tok : hf ? hf->tok : NULL, -1, -1, -1};
    if (c.vocab) {
        c.im_end = flm_tokenizer_token_id(c.vocab, "<|im_end|>");
        c.endoftext = flm_tokenizer_token_id(c.vocab, "<|endoftext|>");
    }
    strbuf *ch = changes ? changes : &dummy;

    /* the corrected LlmMetadata */
    flm_llm_metadata md = k->md;
    int32_t stops[FLM_LLM_MAX_STOPS];
    int ns = 0;
    if (hf) {
        int32_t e[FLM_GEN_MAX_EOS];
        int ne = flm_gen_config_eos_ids(&hf->gen, -1, e, FLM_GEN_MAX_EOS);
        for (int i = 0; i < ne && i < FLM_GEN_MAX_EOS && ns < FLM_LLM_MAX_STOPS; i++)
            if (!in_set(stops, ns, e[i])) stops[ns++] = e[i];
        for (int i = 0; i < hf->cfg.n_eos && i < 8 && ns < FLM_LLM_MAX_STOPS; i++)
            if (hf->cfg.eos_token_ids[i] >= 0 && !in_set(stops, ns, hf->cfg.eos_token_ids[i])) stops[ns++] = hf->cfg.eos_token_ids[i];
    } else {
        for (int i = 0; i < k->md.n_stops && ns < FLM_LLM_MAX_STOPS; i++) {
            int32_t id = -1;
            if (resolve(&c, &k->md.stops[i], k->md.stop_ids[i], &id) == 1 && id >= 0 && !in_set(stops, ns, id)) stops[ns++] = id;
        }
        if (c.endoftext >= 0 && c.im_end >= 0 && ns < FLM_LLM_MAX_STOPS && !in_set(stops, ns, c.endoftext)) stops[ns++] = c.endoftext;
    }
    if (c.im_end >= 0 && ns < FLM_LLM_MAX_STOPS && !in_set(stops, ns, c.im_end)) {
        memmove(stops + 1, stops, (size_t)ns * sizeof *stops);
        stops[0] = c.im_end;
        ns++;
    }
    if (ns) {
        memset(md.stops, 0, sizeof md.stops);
        memcpy(md.stop_ids, stops, (size_t)ns * sizeof *stops);
        md.n_stops = ns;
        flm_sb_puts(ch, "stop_tokens:");
        for (int i = 0; i < ns; i++) { flm_sb_putc(ch, ' '); tok_name(&c, stops[i], ch); }
        flm_sb_putc(ch, '\n');
    }
    bool model_bos = hf ? hf->add_bos : (k->tok_json && has_template_processing(k->tok_json, k->tok_json_len));
    bool start_none = md.has_start && md.start_tok.str && md.start_tok.str_len == 4 && !memcmp(md.start_tok.str, "None", 4);
    if (md.has_start && (!model_bos || start_none)) {
        md.has_start = false;
        memset(&md.start_tok, 0, sizeof md.start_tok);
        flm_sb_puts(ch, "start_token: removed\n");
    }
    if (model_bos && hf && hf->cfg.bos_token_id >= 0 && (!md.has_start || start_none)) {
        md.has_start = true;
        memset(&md.start_tok, 0, sizeof md.start_tok);
        md.start_id = hf->cfg.bos_token_id;
        flm_sb_printf(ch, "start_token: %d\n", hf->cfg.bos_token_id);
    }
    if (hf) {
        const flm_gen_config *g = &hf->gen;
        md.has_sampler = true;
        md.sampler_type = 2; /* TOP_P: top-k, then top-p, at the temperature; greedy as k = 1 */
        md.k = g->do_sample ? (g->top_k > 0 ? g->top_k : 0) : 1;
        md.p = g->do_sample ? (float)g->top_p : 1.0f;
        md.temperature = g->do_sample ? (float)g->temperature : 1.0f;
        flm_sb_printf(ch, "sampler_params: TOP_P k=%" PRId32 " p=%g temperature=%g\n", md.k, (double)md.p, (double)md.temperature);
        int want = !strcmp(hf->cfg.model_type, "qwen2") ? LLM_QWEN2P5 : !strcmp(hf->cfg.model_type, "qwen3") ? LLM_QWEN3 : md.model_type;
        if (want != md.model_type) flm_sb_printf(ch, "llm_model_type: %s\n", model_type_name(want));
        md.model_type = want;
        if (hf->tmpl) {
            if (!md.jinja || md.jinja_len != hf->tmpl->len || memcmp(md.jinja, hf->tmpl->text, md.jinja_len))
                flm_sb_printf(ch, "jinja_prompt_template: the model's (%zu bytes)\n", hf->tmpl->len);
            md.jinja = hf->tmpl->text;
            md.jinja_len = hf->tmpl->len;
        }
    }
    int S = k->cache_length;
    if (hf && hf->cfg.max_position_embeddings > 0 && S > hf->cfg.max_position_embeddings) S = hf->cfg.max_position_embeddings;
    if (S > 0 && md.max_num_tokens != S) {
        md.max_num_tokens = S;
        flm_sb_printf(ch, "max_num_tokens: %d (the graph's KV cache)\n", S);
    }
    const unsigned char *orig = NULL;
    size_t orig_len = 0;
    if (k->md_sec >= 0) orig = sec_data(k, k->md_sec, &orig_len);
    if ((rc = flm_llm_metadata_encode_over(orig, orig_len, &md, &meta, &meta_len))) goto done;

    /* the tokenizer */
    bool new_tok = hf && hf->tok_json && !k->tok_same_as_hf;
    bool drop_sp = hf && hf->tok_json;
    if (drop_sp && !new_tok && k->sp_sec >= 0) flm_sb_puts(ch, "tokenizer: SentencePiece section dropped (the HF tokenizer is the model's)\n");
    uint64_t z_len = 0;
    if (new_tok) {
        uLongf zl = compressBound((uLong)hf->tok_json_len);
        if (!(z = flm_malloc(8 + (size_t)zl))) { rc = FLM_ERR_NOMEM; goto done; }
        uint64_t ul = hf->tok_json_len;
        memcpy(z, &ul, 8);
        if (compress2(z + 8, &zl, (const Bytef *)hf->tok_json, (uLong)hf->tok_json_len, 6) != Z_OK) { rc = flm_fail(FLM_ERR_NOMEM, "zlib: could not compress tokenizer.json"); goto done; }
        z_len = 8 + (uint64_t)zl;
        flm_sb_printf(ch, "tokenizer: the model's tokenizer.json (%zu bytes)%s\n", hf->tok_json_len, k->sp_sec >= 0 ? ", SentencePiece section dropped" : "");
    }

    /* the sections, in the input's order: LlmMetadata first when it was missing,
     * the new tokenizer where the old one was (or after the metadata) */
    if ((rc = read_kvs(m.data, &k->info, -1, &sys, &n_sys))) goto done;
    flm_litertlm_section sec[FLM_LITERTLM_MAX_SECTIONS + 2];
    int src[FLM_LITERTLM_MAX_SECTIONS + 2];
    size_t n_sec = 0;
    bool tok_placed = false;
    if (k->md_sec < 0) {
        sec[n_sec] = (flm_litertlm_section){FLM_LTLM_LLM_METADATA, meta, meta_len, NULL, 0};
        src[n_sec++] = -1;
        flm_sb_puts(ch, "LlmMetadata: section added\n");
    }
    for (int s = 0; s < k->info.n_sec && !rc; s++) {
        int dt = k->info.sec[s].data_type;
        bool is_tok = dt == FLM_LTLM_HF_TOKENIZER_ZLIB || (dt == FLM_LTLM_SP_TOKENIZER && drop_sp);
        if (is_tok && new_tok) {
            if (!tok_placed) {
                sec[n_sec] = (flm_litertlm_section){FLM_LTLM_HF_TOKENIZER_ZLIB, z, z_len, NULL, 0};
                src[n_sec++] = -1;
                tok_placed = true;
            }
            continue;
        }
        if (dt == FLM_LTLM_SP_TOKENIZER && drop_sp) continue;
        if (n_sec + 2 > FLM_LITERTLM_MAX_SECTIONS + 2) { rc = flm_fail(FLM_ERR_FORMAT, "doctor: too many sections"); break; }
        if ((rc = read_kvs(m.data, &k->info, s, &items[n_sec], &n_items[n_sec]))) break;
        if (n_items[n_sec]) {
            if (!(item_kv[n_sec] = flm_calloc(n_items[n_sec], sizeof **item_kv))) { rc = FLM_ERR_NOMEM; break; }
            for (size_t j = 0; j < n_items[n_sec]; j++) item_kv[n_sec][j] = (flm_litertlm_kv){items[n_sec][j].key, items[n_sec][j].value};
        }
        bool is_md = s == k->md_sec;
        sec[n_sec] = (flm_litertlm_section){dt, is_md ? meta : NULL, is_md ? meta_len : k->info.sec[s].end - k->info.sec[s].begin,
                                            item_kv[n_sec], n_items[n_sec]};
        src[n_sec++] = is_md ? -1 : s;
        if (is_md && new_tok && !tok_placed && k->hf_sec < 0 && k->sp_sec < 0) {
            sec[n_sec] = (flm_litertlm_section){FLM_LTLM_HF_TOKENIZER_ZLIB, z, z_len, NULL, 0};
            src[n_sec++] = -1;
            tok_placed = true;
        }
    }
    if (rc) goto done;
    if (new_tok && !tok_placed) {
        sec[n_sec] = (flm_litertlm_section){FLM_LTLM_HF_TOKENIZER_ZLIB, z, z_len, NULL, 0};
        src[n_sec++] = -1;
    }
    if (n_sec > FLM_LITERTLM_MAX_SECTIONS) { rc = flm_fail(FLM_ERR_FORMAT, "doctor: too many sections"); goto done; }
    /* system metadata: kept, plus who rewrote it */
    size_t n_sys_kv = 0;
    if (!(sys_kv = flm_calloc(n_sys + 1, sizeof *sys_kv))) { rc = FLM_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < n_sys; i++)
        if (strcmp(sys[i].key, "doctor")) sys_kv[n_sys_kv++] = (flm_litertlm_kv){sys[i].key, sys[i].value};
    if (n_sys_kv < FLM_LITERTLM_MAX_KV) sys_kv[n_sys_kv++] = (flm_litertlm_kv){"doctor", hf ? "fieldlm " FLM_VERSION " doctor --fix --hf" : "fieldlm " FLM_VERSION " doctor --fix"};

    fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { rc = flm_fail(FLM_ERR_IO, "%s: %s", in_path, strerror(errno)); goto done; }
    if ((rc = flm_outfile_open(out_path, &of))) goto done;
    of_open = true;
    copy_ctx cc = {fd, in_path, &k->info, src};
    if ((rc = flm_litertlm_write(&of, sys_kv, n_sys_kv, sec, n_sec, copy_section, &cc))) goto done;
    rc = flm_outfile_commit(&of);
    of_open = false;
done:
    if (of_open) flm_outfile_abort(&of);
    if (fd >= 0) close(fd);
    if (k) {
        for (size_t i = 0; i < FLM_LITERTLM_MAX_SECTIONS + 2; i++) {
            free_kvs(items[i], n_items[i]);
            free(item_kv[i]);
        }
        pkg_free(k);
        free(k);
    }
    flm_sb_free(&dummy);
    free_kvs(sys, n_sys);
    free(sys_kv);
    free(meta);
    free(z);
    flm_map_close(&m);
    return rc;
}
