/* litertlm.c — LiteRT-LM container writer/reader and LlmMetadata protobuf (litertlm.h). */
#include "format/litertlm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "format/flatbuf.h"

const char *flm_litertlm_section_type_name(int t) {
    static const char *const N[] = {"NONE", "GenericBinaryData", "Deprecated", "TFLiteModel", "SP_Tokenizer",
                                    "LlmMetadataProto", "HF_Tokenizer_Zlib", "TFLiteWeights", "ExecutorMetadataProto"};
    return t >= 0 && t < (int)(sizeof N / sizeof *N) ? N[t] : "?";
}

static flm_fb_ref kv_table(flm_fb_builder *b, const flm_litertlm_kv *kv) {
    flm_fb_ref vs = flm_fb_cstring(b, kv->value);
    flm_fb_table_start(b);
    flm_fb_add_ref(b, 0, vs);
    flm_fb_ref sv = flm_fb_table_end(b);
    flm_fb_ref ks = flm_fb_cstring(b, kv->key);
    flm_fb_table_start(b);
    flm_fb_add_ref(b, 0, ks);
    flm_fb_add_u8(b, 1, 9, 0, true); /* VData.StringValue */
    flm_fb_add_ref(b, 2, sv);
    return flm_fb_table_end(b);
}

static uint64_t align_block(uint64_t v) { return (v + FLM_LITERTLM_BLOCK - 1) / FLM_LITERTLM_BLOCK * FLM_LITERTLM_BLOCK; }

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

static int write_bundle(flm_outfile *of, const flm_litertlm_kv *sys, size_t n_sys, const flm_litertlm_section *sec, size_t n_sec,
                        uint64_t *last_begin, int (*stream)(void *ctx, size_t index, flm_outfile *of), void *sctx);

int flm_litertlm_write_head(flm_outfile *of, const flm_litertlm_kv *sys, size_t n_sys, const flm_litertlm_section *sec, size_t n_sec,
                            uint64_t *last_begin) {
    for (size_t i = 0; i + 1 < n_sec; i++)
        if (!sec[i].data) return flm_fail(FLM_ERR_ARG, "litertlm: only the last section may be streamed");
    return write_bundle(of, sys, n_sys, sec, n_sec, last_begin, NULL, NULL);
}

int flm_litertlm_write(flm_outfile *of, const flm_litertlm_kv *sys, size_t n_sys, const flm_litertlm_section *sec, size_t n_sec,
                       int (*stream)(void *ctx, size_t index, flm_outfile *of), void *ctx) {
    uint64_t last = 0;
    for (size_t i = 0; i < n_sec; i++)
        if (!sec[i].data && !stream) return flm_fail(FLM_ERR_ARG, "litertlm: a section without data needs a stream callback");
    return write_bundle(of, sys, n_sys, sec, n_sec, &last, stream, ctx);
}

static int write_bundle(flm_outfile *of, const flm_litertlm_kv *sys, size_t n_sys, const flm_litertlm_section *sec, size_t n_sec,
                        uint64_t *last_begin, int (*stream)(void *ctx, size_t index, flm_outfile *of), void *sctx) {
    if (n_sec == 0 || n_sec > FLM_LITERTLM_MAX_SECTIONS || n_sys > FLM_LITERTLM_MAX_KV) return flm_fail(FLM_ERR_ARG, "litertlm: bad section count");
    /* the header size does not depend on the offsets (fixed-width fields): build it
     * once with zero offsets to learn where the first section starts */
    uint64_t begin[FLM_LITERTLM_MAX_SECTIONS];
    const unsigned char *hd = NULL;
    size_t hl = 0;
    flm_fb_builder b;
    flm_fb_init(&b);
    int rc = FLM_OK;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        flm_fb_free(&b);
        flm_fb_init(&b);
        flm_fb_ref refs[FLM_LITERTLM_MAX_KV > FLM_LITERTLM_MAX_SECTIONS ? FLM_LITERTLM_MAX_KV : FLM_LITERTLM_MAX_SECTIONS];
        flm_fb_ref objs[FLM_LITERTLM_MAX_SECTIONS];
        for (size_t i = 0; i < n_sec; i++) {
            flm_fb_ref items = 0;
            if (sec[i].n_items) {
                if (sec[i].n_items > FLM_LITERTLM_MAX_KV) return flm_fail(FLM_ERR_ARG, "litertlm: too many section items");
                for (size_t j = 0; j < sec[i].n_items; j++) refs[j] = kv_table(&b, &sec[i].items[j]);
                items = flm_fb_vector_refs(&b, refs, sec[i].n_items);
            }
            flm_fb_table_start(&b);
            flm_fb_add_ref(&b, 0, items);
            flm_fb_add_u64(&b, 1, pass ? begin[i] : 0, 0, true);
            flm_fb_add_u64(&b, 2, pass ? begin[i] + sec[i].size : 0, 0, true);
            flm_fb_add_u8(&b, 3, (uint8_t)sec[i].data_type, 0, true);
            objs[i] = flm_fb_table_end(&b);
        }
        flm_fb_ref ov = flm_fb_vector_refs(&b, objs, n_sec);
        flm_fb_table_start(&b);
        flm_fb_add_ref(&b, 0, ov);
        flm_fb_ref secmeta = flm_fb_table_end(&b);
        for (size_t j = 0; j < n_sys; j++) refs[j] = kv_table(&b, &sys[j]);
        flm_fb_ref ev = flm_fb_vector_refs(&b, refs, n_sys);
        flm_fb_table_start(&b);
        flm_fb_add_ref(&b, 0, ev);
        flm_fb_ref sysmeta = flm_fb_table_end(&b);
        flm_fb_table_start(&b);
        flm_fb_add_ref(&b, 0, sysmeta);
        flm_fb_add_ref(&b, 1, secmeta);
        flm_fb_ref root = flm_fb_table_end(&b);
        size_t prev = hl;
        rc = flm_fb_finish(&b, root, NULL, &hd, &hl);
        if (rc) break;
        if (pass && hl != prev) rc = flm_fail(FLM_ERR_FORMAT, "litertlm: header size changed between builds");
        if (32 + hl > FLM_LITERTLM_MAX_HEADER)
            rc = flm_fail(FLM_ERR_ARG, "litertlm: header of %zu bytes is over LiteRT-LM's 16 KiB limit", 32 + hl);
        uint64_t at = align_block(32 + hl);
        for (size_t i = 0; i < n_sec; i++) {
            begin[i] = at;
            at = align_block(at + sec[i].size);
        }
    }
    if (!rc) {
        unsigned char pre[32] = "LITERTLM";
        uint32_t ver[3] = {1, 0, 0};
        memcpy(pre + 8, ver, 12);
        uint64_t end = 32 + hl;
        memcpy(pre + 24, &end, 8);
        rc = flm_outfile_write(of, pre, 32);
        if (!rc) rc = flm_outfile_write(of, hd, hl);
        for (size_t i = 0; i < n_sec && !rc; i++) {
            rc = write_zeros(of, begin[i] - of->written);
            if (!rc && sec[i].data) rc = flm_outfile_write(of, sec[i].data, (size_t)sec[i].size);
            else if (!rc && stream) {
                rc = stream(sctx, i, of);
                if (!rc && of->written != begin[i] + sec[i].size)
                    rc = flm_fail(FLM_ERR_ARG, "litertlm: section %zu: %llu bytes written, %llu declared", i,
                                  (unsigned long long)(of->written - begin[i]), (unsigned long long)sec[i].size);
            }
        }
        *last_begin = begin[n_sec - 1];
    }
    flm_fb_free(&b);
    return rc;
}

/* ---- reading ---- */

static void read_kv(flm_fb_reader *r, flm_fb_table kv, flm_litertlm_read_kv *out) {
    uint32_t kl = 0;
    const char *k = flm_fb_get_string(r, kv, 0, &kl);
    snprintf(out->key, sizeof out->key, "%.*s", k ? (int)(kl < 63 ? kl : 63) : 0, k ? k : "");
    out->type = flm_fb_get_u8(r, kv, 1, 0);
    out->value[0] = 0;
    if (out->type == 9) {
        flm_fb_table sv = flm_fb_get_table(r, kv, 2);
        uint32_t vl = 0;
        const char *v = flm_fb_get_string(r, sv, 0, &vl);
        if (v) snprintf(out->value, sizeof out->value, "%.*s", (int)(vl < sizeof out->value - 1 ? vl : sizeof out->value - 1), v);
        return;
    }
    /* numbers: a struct (older writers) or a table { value } (newer); read as a table
     * when it looks like one, else as the struct's bytes */
    static const size_t SZ[] = {0, 1, 1, 2, 2, 4, 4, 4, 1, 0, 8, 8, 8};
    if (out->type <= 0 || out->type > 12 || !SZ[out->type]) { snprintf(out->value, sizeof out->value, "?"); return; }
    flm_fb_reader probe = *r;
    flm_fb_table t = flm_fb_get_table(&probe, kv, 2);
    unsigned char raw[8] = {0};
    const unsigned char *p = NULL;
    if (!probe.bad && t.pos && t.vt_len >= 6) {
        uint16_t fo;
        memcpy(&fo, r->buf + t.vt + 4, 2);
        if (fo && t.pos + fo + SZ[out->type] <= r->len) p = r->buf + t.pos + fo;
        else if (!fo) p = raw; /* the default: 0 */
    }
    if (!p) p = flm_fb_get_indirect(r, kv, 2, SZ[out->type]);
    if (!p) { snprintf(out->value, sizeof out->value, "?"); return; }
    memcpy(raw, p, SZ[out->type]);
    switch (out->type) {
    case 1: case 8: snprintf(out->value, sizeof out->value, "%u", raw[0]); break;
    case 2: snprintf(out->value, sizeof out->value, "%d", (int8_t)raw[0]); break;
    case 3: { uint16_t v; memcpy(&v, raw, 2); snprintf(out->value, sizeof out->value, "%u", v); break; }
    case 4: { int16_t v; memcpy(&v, raw, 2); snprintf(out->value, sizeof out->value, "%d", v); break; }
    case 5: { uint32_t v; memcpy(&v, raw, 4); snprintf(out->value, sizeof out->value, "%" PRIu32, v); break; }
    case 6: { int32_t v; memcpy(&v, raw, 4); snprintf(out->value, sizeof out->value, "%" PRId32, v); break; }
    case 7: { float v; memcpy(&v, raw, 4); snprintf(out->value, sizeof out->value, "%.9g", (double)v); break; }
    case 10: { uint64_t v; memcpy(&v, raw, 8); snprintf(out->value, sizeof out->value, "%" PRIu64, v); break; }
    case 11: { int64_t v; memcpy(&v, raw, 8); snprintf(out->value, sizeof out->value, "%" PRId64, v); break; }
    case 12: { double v; memcpy(&v, raw, 8); snprintf(out->value, sizeof out->value, "%.17g", v); break; }
    }
}

int flm_litertlm_parse(const unsigned char *buf, size_t len, uint64_t file_size, flm_litertlm_info *info) {
    memset(info, 0, sizeof *info);
    if (len < 32 || memcmp(buf, "LITERTLM", 8) != 0) return flm_fail(FLM_ERR_FORMAT, "not a .litertlm file (no LITERTLM magic)");
    memcpy(&info->major, buf + 8, 4);
    memcpy(&info->minor, buf + 12, 4);
    memcpy(&info->patch, buf + 16, 4);
    memcpy(&info->header_end, buf + 24, 8);
    if (info->major != 1) return flm_fail(FLM_ERR_FORMAT, ".litertlm major version %u (only 1 is known)", info->major);
    if (info->header_end < 40 || info->header_end > len || info->header_end > file_size)
        return flm_fail(FLM_ERR_FORMAT, ".litertlm header end %llu is outside the file", (unsigned long long)info->header_end);
    flm_fb_reader r = {buf + 32, (size_t)info->header_end - 32, false};
    flm_fb_table root = flm_fb_root(&r, NULL);
    flm_fb_table sm = flm_fb_get_table(&r, root, 0), sec = flm_fb_get_table(&r, root, 1);
    flm_fb_vec ev = flm_fb_get_vector(&r, sm, 0, 4), ov = flm_fb_get_vector(&r, sec, 0, 4);
    if (r.bad || !root.pos || !sec.pos) return flm_fail(FLM_ERR_FORMAT, ".litertlm header is not a valid LiteRTLMMetaData flatbuffer");
    for (uint32_t i = 0; i < ev.n && info->n_sys < FLM_LITERTLM_MAX_KV; i++)
        read_kv(&r, flm_fb_vec_table(&r, ev, i), &info->sys[info->n_sys++]);
    if (ov.n > FLM_LITERTLM_MAX_SECTIONS) return flm_fail(FLM_ERR_FORMAT, ".litertlm has %u sections (at most %d read)", ov.n, FLM_LITERTLM_MAX_SECTIONS);
    for (uint32_t i = 0; i < ov.n; i++) {
        flm_fb_table o = flm_fb_vec_table(&r, ov, i);
        if (!o.pos) return flm_fail(FLM_ERR_FORMAT, ".litertlm section %u is malformed", i);
        info->sec[i].begin = flm_fb_get_u64(&r, o, 1, 0);
        info->sec[i].end = flm_fb_get_u64(&r, o, 2, 0);
        info->sec[i].data_type = flm_fb_get_u8(&r, o, 3, 0);
        flm_fb_vec iv = flm_fb_get_vector(&r, o, 0, 4);
        for (uint32_t j = 0; j < iv.n && info->sec[i].n_items < 8; j++)
            read_kv(&r, flm_fb_vec_table(&r, iv, j), &info->sec[i].items[info->sec[i].n_items++]);
        if (info->sec[i].begin > info->sec[i].end || info->sec[i].end > file_size || info->sec[i].begin < info->header_end)
            return flm_fail(FLM_ERR_FORMAT, ".litertlm section %u [%llu, %llu) is outside the file (%llu bytes)", i,
                            (unsigned long long)info->sec[i].begin, (unsigned long long)info->sec[i].end, (unsigned long long)file_size);
        info->n_sec++;
    }
    if (r.bad) return flm_fail(FLM_ERR_FORMAT, ".litertlm header is not a valid LiteRTLMMetaData flatbuffer");
    return FLM_OK;
}

/* ---- protobuf ---- */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    bool nomem;
} pb;

static void pb_put(pb *b, const void *d, size_t n) {
    if (b->nomem || !n) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n) cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (!np) { b->nomem = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void pb_varint(pb *b, uint64_t v) {
    unsigned char t[10];
    size_t n = 0;
    do {
        t[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    pb_put(b, t, n);
}

static void pb_tag(pb *b, int field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }
static void pb_bytes(pb *b, int field, const void *d, size_t n) {
    pb_tag(b, field, 2);
    pb_varint(b, n);
    pb_put(b, d, n);
}
static void pb_int(pb *b, int field, int64_t v) {
    pb_tag(b, field, 0);
    pb_varint(b, (uint64_t)v); /* negative int32/int64: ten bytes, as protobuf does */
}
static void pb_float(pb *b, int field, float v) {
    pb_tag(b, field, 5);
    pb_put(b, &v, 4);
}

/* TokenUnion { token_ids = 1: TokenIds { ids = 1 (packed) } } */
static void pb_token(pb *out, int field, int32_t id) {
    pb ids = {0}, inner = {0}, tu = {0};
    pb_varint(&ids, (uint64_t)(int64_t)id);
    pb_bytes(&inner, 1, ids.p, ids.n); /* TokenIds.ids, packed */
    pb_bytes(&tu, 1, inner.p, inner.n); /* TokenUnion.token_ids */
    pb_bytes(out, field, tu.p, tu.n);
    if (ids.nomem || tu.nomem || inner.nomem) out->nomem = true;
    free(ids.p);
    free(tu.p);
    free(inner.p);
}

/* A TokenUnion as given: token_str, or token_ids with several ids. */
static void pb_token_u(pb *out, int field, const flm_llm_token *t) {
    pb inner = {0}, tu = {0};
    if (t->str) pb_bytes(&tu, 2, t->str, t->str_len); /* TokenUnion.token_str */
    else {
        pb ids = {0};
        int n = t->n_ids < FLM_LLM_TOKEN_IDS ? t->n_ids : FLM_LLM_TOKEN_IDS;
        for (int i = 0; i < n; i++) pb_varint(&ids, (uint64_t)(int64_t)t->ids[i]);
        pb_bytes(&inner, 1, ids.p, ids.n);
        pb_bytes(&tu, 1, inner.p, inner.n);
        if (ids.nomem) out->nomem = true;
        free(ids.p);
    }
    pb_bytes(out, field, tu.p, tu.n);
    if (tu.nomem || inner.nomem) out->nomem = true;
    free(tu.p);
    free(inner.p);
}

static bool tok_given(const flm_llm_token *t) { return t->str || t->n_ids > 0; }

static void encode_fields(pb *bp, const flm_llm_metadata *md);

int flm_llm_metadata_encode(const flm_llm_metadata *md, unsigned char **out, size_t *len) {
    pb b = {0};
    encode_fields(&b, md);
    if (!b.p && !b.nomem && !(b.p = malloc(1))) b.nomem = true; /* never NULL: NULL section data means "streamed" */
    if (b.nomem) { free(b.p); return FLM_ERR_NOMEM; }
    *out = b.p;
    *len = b.n;
    return FLM_OK;
}

static void encode_fields(pb *bp, const flm_llm_metadata *md) {
    pb b = *bp;
    if (md->has_start) {
        if (tok_given(&md->start_tok)) pb_token_u(&b, 1, &md->start_tok);
        else pb_token(&b, 1, md->start_id);
    }
    for (int i = 0; i < md->n_stops && i < FLM_LLM_MAX_STOPS; i++) {
        if (tok_given(&md->stops[i])) pb_token_u(&b, 2, &md->stops[i]);
        else pb_token(&b, 2, md->stop_ids[i]);
    }
    if (md->has_sampler) {
        pb s = {0};
        pb_int(&s, 1, md->sampler_type);
        pb_int(&s, 2, md->k);
        pb_float(&s, 3, md->p);
        pb_float(&s, 4, md->temperature);
        pb_bytes(&b, 4, s.p, s.n);
        if (s.nomem) b.nomem = true;
        free(s.p);
    }
    if (md->max_num_tokens) pb_int(&b, 5, md->max_num_tokens);
    if (md->model_type) {
        pb t = {0};
        pb_bytes(&t, md->model_type, NULL, 0);
        pb_bytes(&b, 6, t.p, t.n);
        if (t.nomem) b.nomem = true;
        free(t.p);
    }
    if (md->jinja) pb_bytes(&b, 7, md->jinja, md->jinja_len);
    *bp = b;
}

typedef struct {
    const unsigned char *p, *end;
    bool bad;
} pr;

static uint64_t pr_varint(pr *r) {
    uint64_t v = 0;
    for (int s = 0; s < 70; s += 7) {
        if (r->p >= r->end) { r->bad = true; return 0; }
        unsigned char c = *r->p++;
        if (s == 63 && c > 1) { r->bad = true; return 0; }
        v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

/* Reads one field: its number, wire type, and for LEN fields the payload. */
static bool pr_field(pr *r, int *field, int *wire, pr *sub, uint64_t *val) {
    if (r->p >= r->end || r->bad) return false;
    uint64_t key = pr_varint(r);
    *field = (int)(key >> 3);
    *wire = (int)(key & 7);
    if (*field <= 0 || key >> 32) { r->bad = true; return false; }
    switch (*wire) {
    case 0: *val = pr_varint(r); break;
    case 1: if (r->end - r->p < 8) { r->bad = true; return false; } memcpy(val, r->p, 8); r->p += 8; break;
    case 5: { if (r->end - r->p < 4) { r->bad = true; return false; } uint32_t v; memcpy(&v, r->p, 4); *val = v; r->p += 4; break; }
    case 2: {
        uint64_t n = pr_varint(r);
        if (r->bad || n > (uint64_t)(r->end - r->p)) { r->bad = true; return false; }
        sub->p = r->p;
        sub->end = r->p + n;
        sub->bad = false;
        r->p += n;
        break;
    }
    default: r->bad = true; return false;
    }
    return !r->bad;
}

static void tok_add(flm_llm_token *tk, int32_t id) {
    if (tk->n_ids < FLM_LLM_TOKEN_IDS) tk->ids[tk->n_ids] = id;
    if (tk->n_ids < INT32_MAX) tk->n_ids++;
}

/* A TokenUnion: its ids or string into *tk; returns the id when it holds exactly
 * one id, -1 for anything else (a string, several ids). */
static int32_t pr_token(pr t, flm_llm_token *tk) {
    int f, w;
    pr sub;
    uint64_t v;
    memset(tk, 0, sizeof *tk);
    while (pr_field(&t, &f, &w, &sub, &v)) {
        if (f == 2 && w == 2) {
            tk->str = (const char *)sub.p;
            tk->str_len = (size_t)(sub.end - sub.p);
            tk->n_ids = 0;
            continue;
        }
        if (f != 1 || w != 2) continue;
        tk->str = NULL;
        tk->str_len = 0;
        int f2, w2;
        pr s2;
        uint64_t v2;
        while (pr_field(&sub, &f2, &w2, &s2, &v2)) {
            if (f2 != 1) continue;
            if (w2 == 0) tok_add(tk, (int32_t)v2);
            else if (w2 == 2)
                while (s2.p < s2.end && !s2.bad) {
                    uint64_t x = pr_varint(&s2);
                    if (!s2.bad) tok_add(tk, (int32_t)x);
                }
        }
    }
    return !tk->str && tk->n_ids == 1 ? tk->ids[0] : -1;
}

int flm_llm_metadata_decode(const unsigned char *p, size_t n, flm_llm_metadata *md) {
    memset(md, 0, sizeof *md);
    if (!p) n = 0;
    pr r = {p, p ? p + n : p, false};
    int f, w;
    pr sub;
    uint64_t v;
    while (pr_field(&r, &f, &w, &sub, &v)) {
        if (w == 2 && f == 1) { md->has_start = true; md->start_id = pr_token(sub, &md->start_tok); }
        else if (w == 2 && f == 2) {
            if (md->n_stops < FLM_LLM_MAX_STOPS) { md->stop_ids[md->n_stops] = pr_token(sub, &md->stops[md->n_stops]); md->n_stops++; }
            if (md->n_stops_total < INT32_MAX) md->n_stops_total++;
        } else if (w == 2 && f == 3) md->has_prompt_templates = true;
        else if (w == 2 && f == 4) {
            md->has_sampler = true;
            int f2, w2;
            pr s2;
            uint64_t v2;
            while (pr_field(&sub, &f2, &w2, &s2, &v2)) {
                uint32_t u = (uint32_t)v2;
                if (f2 == 1 && w2 == 0) md->sampler_type = (int)v2;
                else if (f2 == 2 && w2 == 0) md->k = (int32_t)v2;
                else if (f2 == 3 && w2 == 5) memcpy(&md->p, &u, 4);
                else if (f2 == 4 && w2 == 5) memcpy(&md->temperature, &u, 4);
            }
            if (sub.bad) r.bad = true;
        } else if (w == 0 && f == 5) md->max_num_tokens = (int32_t)v;
        else if (w == 2 && f == 6) {
            int f2, w2;
            pr s2;
            uint64_t v2;
            while (pr_field(&sub, &f2, &w2, &s2, &v2)) md->model_type = f2;
            if (sub.bad) r.bad = true;
        } else if (w == 2 && f == 7) {
            md->jinja = (const char *)sub.p;
            md->jinja_len = (size_t)(sub.end - sub.p);
        }
    }
    if (r.bad) return flm_fail(FLM_ERR_FORMAT, "LlmMetadata: malformed protobuf");
    return FLM_OK;
}

int flm_llm_metadata_encode_over(const unsigned char *orig, size_t n, const flm_llm_metadata *md, unsigned char **out, size_t *len) {
    pb b = {0};
    if (!orig) n = 0;
    pr r = {orig, orig ? orig + n : orig, false};
    int f, w;
    pr sub;
    uint64_t v;
    const unsigned char *at = r.p;
    while (pr_field(&r, &f, &w, &sub, &v)) {
        bool ours = f == 1 || f == 2 || f == 4 || f == 5 || f == 6 || f == 7;
        if (!ours) pb_put(&b, at, (size_t)(r.p - at));
        at = r.p;
    }
    if (r.bad) { free(b.p); return flm_fail(FLM_ERR_FORMAT, "LlmMetadata: malformed protobuf"); }
    encode_fields(&b, md);
    if (!b.p && !b.nomem && !(b.p = malloc(1))) b.nomem = true; /* never NULL: NULL section data means "streamed" */
    if (b.nomem) { free(b.p); return FLM_ERR_NOMEM; }
    *out = b.p;
    *len = b.n;
    return FLM_OK;
}
