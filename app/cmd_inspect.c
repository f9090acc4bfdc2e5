/* cmd_inspect.c — `fieldlm inspect FILE|DIR`: what is inside a GGUF package, a
 * safetensors file or a Hugging Face folder (config + every shard): metadata,
 * the tensor table, totals by type, and where generation defaults come from.
 * Text for people, or one JSON object with --json. Files are opened with the
 * library's validating readers, so a corrupt file is an error, never a crash. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "format/litertlm.h"
#include "base/common.h"
#include "model/gen_config.h"
#include "format/gguf.h"
#include "base/json.h"
#include "format/safetensors.h"
#include "base/tensor.h"

#define HEAD_ITEMS 5        /* array elements shown unless --full */
#define SHORT_STRING 72     /* longer strings are cut to this many bytes unless --full */
#define SHORT_ELEM 24       /* the same for strings inside array heads */
#define MAX_TYPES 48        /* distinct tensor types in the totals */
#define GEN_PREFIX "fieldlm.generation."
#define GEN_EOS_KEY "fieldlm.eos_token_ids"

typedef struct {
    bool json, full;
} inspect_opts;

/* One tensor of any container, for the shared table and totals. */
typedef struct {
    const char *name;
    const char *type;
    int ndim;
    int64_t shape[GGUF_MAX_DIMS]; /* outermost first */
    uint64_t params, bytes;
    uint64_t offset;              /* file offset of the data */
} row;

typedef struct { const char *type; uint64_t tensors, params, bytes; } type_total;
typedef struct {
    type_total by_type[MAX_TYPES];
    int n_types;
    uint64_t tensors, params, bytes;
} totals;

static void totals_add(totals *t, const row *r) {
    t->tensors++;
    t->params += r->params;
    t->bytes += r->bytes;
    int i = 0;
    while (i < t->n_types && strcmp(t->by_type[i].type, r->type)) i++;
    if (i == t->n_types) {
        if (t->n_types == MAX_TYPES) return;
        t->by_type[t->n_types++] = (type_total){.type = r->type};
    }
    t->by_type[i].tensors++;
    t->by_type[i].params += r->params;
    t->by_type[i].bytes += r->bytes;
}

static void totals_merge(totals *dst, const totals *src) {
    for (int i = 0; i < src->n_types; i++) {
        row r = {.type = src->by_type[i].type};
        int j = 0;
        while (j < dst->n_types && strcmp(dst->by_type[j].type, r.type)) j++;
        if (j == dst->n_types) {
            if (dst->n_types == MAX_TYPES) continue;
            dst->by_type[dst->n_types++] = (type_total){.type = r.type};
        }
        dst->by_type[j].tensors += src->by_type[i].tensors;
        dst->by_type[j].params += src->by_type[i].params;
        dst->by_type[j].bytes += src->by_type[i].bytes;
    }
    dst->tensors += src->tensors;
    dst->params += src->params;
    dst->bytes += src->bytes;
}

/* ---- value formatting ---- */

/* Shortest decimal that reads back as the same float (f32) or double, with ".0"
 * added to integral values so they still read as floats (Python's repr style). */
static void put_float(strbuf *sb, double v, bool is_f32, bool as_json) {
    if (!isfinite(v)) {
        flm_sb_puts(sb, as_json ? "null" : isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v) break;
    }
    flm_sb_puts(sb, buf);
    if (!strpbrk(buf, ".en")) flm_sb_puts(sb, ".0");
}

/* Bytes of a UTF-8 prefix of s no longer than limit that does not split a character. */
static size_t utf8_cut(const char *s, size_t len, size_t limit) {
    if (len <= limit) return len;
    size_t n = limit;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

/* A quoted, escaped string; cut to `limit` bytes (0 = never) with a note of its length. */
static void put_string(strbuf *sb, const char *s, uint64_t len, size_t limit) {
    if (limit && len > limit) {
        size_t n = utf8_cut(s, (size_t)len, limit);
        flm_sb_json_string(sb, s, n, false);
        flm_sb_printf(sb, "... (%llu bytes)", (unsigned long long)len);
    } else {
        flm_sb_json_string(sb, s, (size_t)len, false);
    }
}

static void put_gguf_array(strbuf *sb, const flm_gguf_value *v, const inspect_opts *o);

/* Element i of an ARRAY value; numbers are read straight from the (little-endian)
 * file bytes, so every width and sign is exact. */
static void put_gguf_elem(strbuf *sb, const flm_gguf_value *arr, uint64_t i, const inspect_opts *o) {
    const unsigned char *p = (const unsigned char *)arr->data + i * flm_gguf_type_size(arr->elem_type);
    switch (arr->elem_type) {
    case GGUF_TYPE_UINT8: flm_sb_printf(sb, "%u", (unsigned)p[0]); break;
    case GGUF_TYPE_INT8: flm_sb_printf(sb, "%d", (int)(int8_t)p[0]); break;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); flm_sb_printf(sb, "%u", (unsigned)x); break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); flm_sb_printf(sb, "%d", (int)x); break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); flm_sb_printf(sb, "%lu", (unsigned long)x); break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); flm_sb_printf(sb, "%ld", (long)x); break; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); flm_sb_printf(sb, "%llu", (unsigned long long)x); break; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); flm_sb_printf(sb, "%lld", (long long)x); break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); put_float(sb, x, true, o->json); break; }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); put_float(sb, x, false, o->json); break; }
    case GGUF_TYPE_BOOL: flm_sb_puts(sb, p[0] ? "true" : "false"); break;
    case GGUF_TYPE_STRING:
        put_string(sb, arr->strs[i].str, arr->strs[i].len, o->full || o->json ? 0 : SHORT_ELEM);
        break;
    case GGUF_TYPE_ARRAY: put_gguf_array(sb, &arr->items[i], o); break;
    default: flm_sb_puts(sb, o->json ? "null" : "?"); break;
    }
}

/* Text: [a, b, c, ...]; JSON: {"type": T, "count": N, "head": [...]} (all elements with --full). */
static void put_gguf_array(strbuf *sb, const flm_gguf_value *v, const inspect_opts *o) {
    uint64_t shown = o->full ? v->count : (v->count < HEAD_ITEMS ? v->count : HEAD_ITEMS);
    if (o->json) flm_sb_printf(sb, "{\"type\": \"%s\", \"count\": %llu, \"head\": ", flm_gguf_type_name(v->elem_type), (unsigned long long)v->count);
    flm_sb_putc(sb, '[');
    for (uint64_t i = 0; i < shown; i++) {
        if (i) flm_sb_puts(sb, ", ");
        put_gguf_elem(sb, v, i, o);
    }
    if (!o->json && shown < v->count) flm_sb_puts(sb, shown ? ", ..." : "...");
    flm_sb_putc(sb, ']');
    if (o->json) flm_sb_putc(sb, '}');
}

static void put_gguf_value(strbuf *sb, const flm_gguf_value *v, const inspect_opts *o) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        flm_sb_printf(sb, "%llu", (unsigned long long)v->num.u);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        flm_sb_printf(sb, "%lld", (long long)v->num.i);
        break;
    case GGUF_TYPE_FLOAT32: put_float(sb, v->num.f, true, o->json); break;
    case GGUF_TYPE_FLOAT64: put_float(sb, v->num.f, false, o->json); break;
    case GGUF_TYPE_BOOL: flm_sb_puts(sb, v->num.b ? "true" : "false"); break;
    case GGUF_TYPE_STRING: put_string(sb, v->s.str, v->s.len, o->full || o->json ? 0 : SHORT_STRING); break;
    case GGUF_TYPE_ARRAY: put_gguf_array(sb, v, o); break;
    default: flm_sb_puts(sb, o->json ? "null" : "?"); break;
    }
}

/* "u32", "string", "string[151936]", "array[24]" */
static void gguf_type_label(const flm_gguf_value *v, char *buf, size_t len) {
    if (v->type == GGUF_TYPE_ARRAY)
        snprintf(buf, len, "%s[%llu]", flm_gguf_type_name(v->elem_type), (unsigned long long)v->count);
    else
        snprintf(buf, len, "%s", flm_gguf_type_name(v->type));
}

/* ---- the tensor table and totals ---- */

static void put_shape_json(strbuf *sb, const row *r) {
    flm_sb_putc(sb, '[');
    for (int d = 0; d < r->ndim; d++) flm_sb_printf(sb, "%s%lld", d ? ", " : "", (long long)r->shape[d]);
    flm_sb_putc(sb, ']');
}

static void put_totals_json(strbuf *sb, const totals *t) {
    flm_sb_printf(sb, "{\"tensors\": %llu, \"parameters\": %llu, \"bytes\": %llu, \"by_type\": {", (unsigned long long)t->tensors,
              (unsigned long long)t->params, (unsigned long long)t->bytes);
    for (int i = 0; i < t->n_types; i++) {
        const type_total *x = &t->by_type[i];
        flm_sb_printf(sb, "%s\"%s\": {\"tensors\": %llu, \"parameters\": %llu, \"bytes\": %llu}", i ? ", " : "", x->type,
                  (unsigned long long)x->tensors, (unsigned long long)x->params, (unsigned long long)x->bytes);
    }
    flm_sb_puts(sb, "}}");
}

static void put_size(strbuf *sb, uint64_t bytes) {
    if (bytes >= 1000000000ull) flm_sb_printf(sb, "%.2f GB", (double)bytes / 1e9);
    else if (bytes >= 1000000ull) flm_sb_printf(sb, "%.1f MB", (double)bytes / 1e6);
    else if (bytes >= 1000ull) flm_sb_printf(sb, "%.1f kB", (double)bytes / 1e3);
    else flm_sb_printf(sb, "%llu B", (unsigned long long)bytes);
}

static void put_totals_text(strbuf *sb, const char *what, const totals *t) {
    flm_sb_printf(sb, "%s: %llu tensors, %llu parameters (%.3f B), %llu bytes (", what, (unsigned long long)t->tensors,
              (unsigned long long)t->params, (double)t->params / 1e9, (unsigned long long)t->bytes);
    put_size(sb, t->bytes);
    flm_sb_puts(sb, ")\n");
    for (int i = 0; i < t->n_types; i++) {
        const type_total *x = &t->by_type[i];
        flm_sb_printf(sb, "  %-6s %6llu tensors %15llu parameters %15llu bytes (", x->type, (unsigned long long)x->tensors,
                  (unsigned long long)x->params, (unsigned long long)x->bytes);
        put_size(sb, x->bytes);
        flm_sb_puts(sb, ")\n");
    }
}

/* Writes the table (text) or the "tensors" array + "totals" members (JSON). */
static void put_tensors(strbuf *sb, const row *rows, size_t n, const inspect_opts *o, totals *t) {
    for (size_t i = 0; i < n; i++) totals_add(t, &rows[i]);
    if (o->json) {
        flm_sb_puts(sb, "\"tensors\": [");
        for (size_t i = 0; i < n; i++) {
            const row *r = &rows[i];
            flm_sb_puts(sb, i ? ", {\"name\": " : "{\"name\": ");
            flm_sb_json_string(sb, r->name, strlen(r->name), false);
            flm_sb_printf(sb, ", \"type\": \"%s\", \"shape\": ", r->type);
            put_shape_json(sb, r);
            flm_sb_printf(sb, ", \"parameters\": %llu, \"bytes\": %llu, \"offset\": %llu}", (unsigned long long)r->params,
                      (unsigned long long)r->bytes, (unsigned long long)r->offset);
        }
        flm_sb_puts(sb, "], \"totals\": ");
        put_totals_json(sb, t);
        return;
    }
    int wname = 4;
    for (size_t i = 0; i < n; i++) {
        int l = (int)strlen(rows[i].name);
        if (l > wname) wname = l;
    }
    flm_sb_printf(sb, "tensors (shape outermost first, offset = position of the data in the file):\n  %-*s %-6s %-22s %14s %14s\n",
              wname, "name", "type", "shape", "bytes", "offset");
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        char shape[96];
        flm_shape_str(r->shape, r->ndim, shape, sizeof shape);
        flm_sb_printf(sb, "  %-*s %-6s %-22s %14llu %14llu\n", wname, r->name, r->type, shape, (unsigned long long)r->bytes,
                  (unsigned long long)r->offset);
    }
    put_totals_text(sb, "totals", t);
}

/* ---- generation defaults ---- */

static void put_gen_defaults_values_json(strbuf *sb, const flm_gen_config *g) {
    flm_sb_printf(sb, "{\"do_sample\": %s, \"temperature\": ", g->do_sample ? "true" : "false");
    put_float(sb, g->temperature, false, true);
    flm_sb_printf(sb, ", \"top_k\": %d, \"top_p\": ", g->top_k);
    put_float(sb, g->top_p, false, true);
    flm_sb_puts(sb, ", \"min_p\": ");
    if (g->from_file & FLM_GEN_MIN_P) put_float(sb, g->min_p, false, true);
    else flm_sb_puts(sb, "null");
    flm_sb_puts(sb, ", \"repetition_penalty\": ");
    put_float(sb, g->repetition_penalty, false, true);
    flm_sb_puts(sb, ", \"eos_token_id\": [");
    for (int i = 0; i < g->n_eos; i++) flm_sb_printf(sb, "%s%ld", i ? ", " : "", (long)g->eos_ids[i]);
    flm_sb_puts(sb, "]}");
}

static void put_gen_defaults_values_text(strbuf *sb, const flm_gen_config *g) {
    flm_sb_printf(sb, "do_sample=%s temperature=", g->do_sample ? "true" : "false");
    put_float(sb, g->temperature, false, false);
    flm_sb_printf(sb, " top_k=%d top_p=", g->top_k);
    put_float(sb, g->top_p, false, false);
    if (g->from_file & FLM_GEN_MIN_P) { flm_sb_puts(sb, " min_p="); put_float(sb, g->min_p, false, false); }
    flm_sb_puts(sb, " repetition_penalty=");
    put_float(sb, g->repetition_penalty, false, false);
    if (g->n_eos) {
        flm_sb_puts(sb, " eos_token_id=[");
        for (int i = 0; i < g->n_eos; i++) flm_sb_printf(sb, "%s%ld", i ? ", " : "", (long)g->eos_ids[i]);
        flm_sb_putc(sb, ']');
    }
}

/* GGUF: the fieldlm.generation.* keys and fieldlm.eos_token_ids, or a statement
 * that the file has none and transformers' defaults apply. */
static void put_gguf_gen_defaults(strbuf *sb, const flm_gguf_file *f, const inspect_opts *o) {
    size_t n = 0;
    for (size_t i = 0; i < flm_gguf_kv_count(f); i++) {
        const char *k = flm_gguf_kv_at(f, i)->key;
        if (!strncmp(k, GEN_PREFIX, strlen(GEN_PREFIX)) || !strcmp(k, GEN_EOS_KEY)) n++;
    }
    if (!n) {
        flm_gen_config d;
        flm_gen_config_defaults(&d);
        if (o->json) {
            flm_sb_puts(sb, "\"generation_defaults\": {\"source\": \"transformers_defaults\", \"in_file\": false, \"values\": ");
            put_gen_defaults_values_json(sb, &d);
            flm_sb_puts(sb, "}");
        } else {
            flm_sb_puts(sb, "generation defaults: none in file (transformers' defaults apply: ");
            put_gen_defaults_values_text(sb, &d);
            flm_sb_puts(sb, ")\n");
        }
        return;
    }
    flm_sb_puts(sb, o->json ? "\"generation_defaults\": {\"source\": \"file\", \"in_file\": true, \"values\": {"
                        : "generation defaults: in file (" GEN_PREFIX "*):");
    size_t k = 0;
    inspect_opts full = *o;
    full.full = true;
    for (size_t i = 0; i < flm_gguf_kv_count(f); i++) {
        const flm_gguf_kv *kv = flm_gguf_kv_at(f, i);
        const char *name;
        if (!strncmp(kv->key, GEN_PREFIX, strlen(GEN_PREFIX))) name = kv->key + strlen(GEN_PREFIX);
        else if (!strcmp(kv->key, GEN_EOS_KEY)) name = "eos_token_ids";
        else continue;
        if (o->json) {
            if (k++) flm_sb_puts(sb, ", ");
            flm_sb_json_string(sb, name, strlen(name), false);
            flm_sb_puts(sb, ": ");
            if (kv->value.type == GGUF_TYPE_ARRAY) {
                /* small arrays (eos ids) in full, as a plain list */
                inspect_opts plain = {.json = false, .full = true};
                put_gguf_array(sb, &kv->value, &plain);
            } else {
                put_gguf_value(sb, &kv->value, &full);
            }
        } else {
            flm_sb_printf(sb, " %s=", name);
            put_gguf_value(sb, &kv->value, &full);
        }
    }
    flm_sb_puts(sb, o->json ? "}}" : "\n");
}

/* ---- GGUF ---- */

static int inspect_gguf(const char *path, const inspect_opts *o, strbuf *sb) {
    flm_gguf_file *f = NULL;
    if (flm_gguf_open(path, &f)) return FLM_ERR_FORMAT;
    size_t nkv = flm_gguf_kv_count(f), nt = flm_gguf_tensor_count(f);
    if (o->json) {
        flm_sb_puts(sb, "{\"path\": ");
        flm_sb_json_string(sb, path, strlen(path), false);
        flm_sb_printf(sb, ", \"format\": \"gguf\", \"flm_gguf_version\": %lu, \"alignment\": %lu, \"data_offset\": %llu, \"file_size\": %llu, \"metadata\": {",
                  (unsigned long)flm_gguf_version(f), (unsigned long)flm_gguf_alignment(f), (unsigned long long)flm_gguf_data_offset(f),
                  (unsigned long long)flm_gguf_file_size(f));
        for (size_t i = 0; i < nkv; i++) {
            const flm_gguf_kv *kv = flm_gguf_kv_at(f, i);
            if (i) flm_sb_puts(sb, ", ");
            flm_sb_json_string(sb, kv->key, strlen(kv->key), false);
            flm_sb_puts(sb, ": ");
            put_gguf_value(sb, &kv->value, o);
        }
        flm_sb_puts(sb, "}, ");
    } else {
        flm_sb_printf(sb, "%s: GGUF v%lu, %zu metadata keys, %zu tensors, alignment %lu, data at offset %llu, file size %llu bytes\n",
                  path, (unsigned long)flm_gguf_version(f), nkv, nt, (unsigned long)flm_gguf_alignment(f),
                  (unsigned long long)flm_gguf_data_offset(f), (unsigned long long)flm_gguf_file_size(f));
        int wkey = 8;
        for (size_t i = 0; i < nkv; i++) {
            int l = (int)strlen(flm_gguf_kv_at(f, i)->key);
            if (l > wkey) wkey = l;
        }
        flm_sb_puts(sb, "metadata:\n");
        for (size_t i = 0; i < nkv; i++) {
            const flm_gguf_kv *kv = flm_gguf_kv_at(f, i);
            char label[48];
            gguf_type_label(&kv->value, label, sizeof label);
            flm_sb_printf(sb, "  %-*s %-14s ", wkey, kv->key, label);
            put_gguf_value(sb, &kv->value, o);
            flm_sb_putc(sb, '\n');
        }
    }
    put_gguf_gen_defaults(sb, f, o);
    if (o->json) flm_sb_puts(sb, ", ");

    row *rows = flm_calloc(nt ? nt : 1, sizeof *rows);
    if (!rows) { flm_gguf_close(f); return FLM_ERR_NOMEM; }
    for (size_t i = 0; i < nt; i++) {
        const flm_gguf_tensor_info *ti = flm_gguf_tensor_at(f, i);
        const char *tn = flm_gguf_ggml_type_name(ti->ggml_type);
        row *r = &rows[i];
        r->name = ti->name;
        r->type = tn ? tn : "?";
        r->ndim = ti->n_dims;
        r->params = 1;
        for (int d = 0; d < ti->n_dims; d++) {
            r->shape[d] = ti->shape[d];
            r->params *= ti->ne[d];
        }
        r->bytes = ti->nbytes;
        r->offset = flm_gguf_data_offset(f) + ti->offset;
    }
    totals t = {0};
    put_tensors(sb, rows, nt, o, &t);
    if (o->json) flm_sb_puts(sb, "}");
    free(rows);
    flm_gguf_close(f);
    return FLM_OK;
}

/* ---- safetensors ---- */

/* The header again (flm_st_open validated it): __metadata__ and each tensor's data
 * offset, which the reader does not expose. */
static flm_json_doc *st_header(const char *path, uint64_t *data_start) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { flm_fail(FLM_ERR_IO, "%s: cannot open", path); return NULL; }
    unsigned char len8[8];
    flm_json_doc *doc = NULL;
    if (fread(len8, 1, 8, fp) == 8) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
        char *text = flm_malloc((size_t)hlen + 1);
        if (text && fread(text, 1, (size_t)hlen, fp) == hlen) {
            doc = flm_json_parse(text, (size_t)hlen, path);
            *data_start = 8 + hlen;
        } else if (text) {
            flm_fail(FLM_ERR_IO, "%s: short read of the header", path);
        }
        free(text);
    } else {
        flm_fail(FLM_ERR_IO, "%s: short read of the header length", path);
    }
    fclose(fp);
    return doc;
}

static int inspect_safetensors(const char *path, const inspect_opts *o, strbuf *sb, totals *t) {
    flm_st_file *f = NULL;
    if (flm_st_open(path, &f)) return FLM_ERR_FORMAT;
    uint64_t data_start = 0;
    flm_json_doc *hdr = st_header(path, &data_start);
    if (!hdr) { flm_st_close(f); return FLM_ERR_IO; }
    const flm_json *root = flm_json_root(hdr), *meta = flm_json_get(root, "__metadata__");
    size_t n = flm_st_count(f);
    if (o->json) {
        flm_sb_puts(sb, "{\"path\": ");
        flm_sb_json_string(sb, path, strlen(path), false);
        flm_sb_printf(sb, ", \"format\": \"safetensors\", \"data_offset\": %llu, \"metadata\": ", (unsigned long long)data_start);
        if (meta) flm_json_write(sb, meta, true);
        else flm_sb_puts(sb, "{}");
        flm_sb_puts(sb, ", ");
    } else {
        flm_sb_printf(sb, "%s: safetensors, %zu tensors, data at offset %llu\n", path, n, (unsigned long long)data_start);
        if (meta && meta->len) {
            flm_sb_puts(sb, "metadata (__metadata__):\n");
            for (size_t i = 0; i < meta->len; i++) {
                const flm_json *e = &meta->items[i];
                flm_sb_printf(sb, "  %s = ", e->key);
                if (e->type == JSON_STRING) put_string(sb, e->str, e->len, o->full ? 0 : SHORT_STRING);
                else flm_json_write(sb, e, true);
                flm_sb_putc(sb, '\n');
            }
        }
    }
    row *rows = flm_calloc(n ? n : 1, sizeof *rows);
    if (!rows) { flm_json_free(hdr); flm_st_close(f); return FLM_ERR_NOMEM; }
    for (size_t i = 0; i < n; i++) {
        const flm_tensor *ten = flm_st_tensor_at(f, i);
        row *r = &rows[i];
        r->name = ten->name;
        r->type = flm_dtype_get(ten->dtype)->name;
        r->ndim = ten->ndim;
        memcpy(r->shape, ten->shape, sizeof r->shape);
        r->params = (uint64_t)flm_tensor_numel(ten);
        r->bytes = ten->nbytes;
        const flm_json *offs = flm_json_get(flm_json_get(root, ten->name), "data_offsets");
        r->offset = data_start + (uint64_t)flm_json_int(flm_json_at(offs, 0), 0);
    }
    totals local = {0};
    put_tensors(sb, rows, n, o, &local);
    if (o->json) flm_sb_puts(sb, "}");
    if (t) totals_merge(t, &local);
    free(rows);
    flm_json_free(hdr);
    flm_st_close(f);
    return FLM_OK;
}

/* ---- Hugging Face folder (or PEFT adapter folder) ---- */

/* The weight files of a folder, in order: model.safetensors, the shards named by
 * model.safetensors.index.json, or adapter_model.safetensors. */
static int folder_files(const char *dir, char ***out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    static const char *const singles[] = {"model.safetensors", "adapter_model.safetensors"};
    for (size_t i = 0; i < sizeof singles / sizeof *singles; i++) {
        char *p = flm_path_join(dir, singles[i]);
        if (!p) return FLM_ERR_NOMEM;
        if (flm_file_exists(p)) {
            *out = flm_malloc(sizeof **out);
            if (!*out) { free(p); return FLM_ERR_NOMEM; }
            (*out)[0] = p;
            *n_out = 1;
            return FLM_OK;
        }
        free(p);
    }
    char *index = flm_path_join(dir, "model.safetensors.index.json");
    if (!index) return FLM_ERR_NOMEM;
    if (!flm_file_exists(index)) {
        int rc = flm_fail(FLM_ERR_IO, "%s: no model.safetensors, model.safetensors.index.json or adapter_model.safetensors", dir);
        free(index);
        return rc;
    }
    flm_json_doc *doc = flm_json_parse_file(index);
    if (!doc) { free(index); return FLM_ERR_FORMAT; }
    const flm_json *wm = flm_json_get(flm_json_root(doc), "weight_map");
    int rc = FLM_OK;
    if (!wm || wm->type != JSON_OBJECT) rc = flm_fail(FLM_ERR_FORMAT, "%s: missing \"weight_map\"", index);
    char **files = rc ? NULL : flm_calloc(wm->len ? wm->len : 1, sizeof *files);
    if (!rc && !files) rc = FLM_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; !rc && i < wm->len; i++) {
        const char *f = flm_json_string(&wm->items[i], NULL);
        if (!f || !*f || strchr(f, '/') || !strcmp(f, "..")) { rc = flm_fail(FLM_ERR_FORMAT, "%s: bad shard file name for %s", index, wm->items[i].key); break; }
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++) {
            const char *b = strrchr(files[j], '/');
            seen = !strcmp(b ? b + 1 : files[j], f);
        }
        if (seen) continue;
        if (!(files[n] = flm_path_join(dir, f))) rc = FLM_ERR_NOMEM;
        else n++;
    }
    flm_json_free(doc);
    free(index);
    if (rc) {
        for (size_t j = 0; j < n; j++) free(files[j]);
        free(files);
        return rc;
    }
    *out = files;
    *n_out = n;
    return FLM_OK;
}

static int inspect_folder(const char *dir, const inspect_opts *o, strbuf *sb) {
    char *cfg_path = flm_path_join(dir, "config.json");
    if (!cfg_path) return FLM_ERR_NOMEM;
    if (!flm_file_exists(cfg_path)) {
        free(cfg_path);
        cfg_path = flm_path_join(dir, "adapter_config.json");
        if (!cfg_path) return FLM_ERR_NOMEM;
        if (!flm_file_exists(cfg_path)) {
            free(cfg_path);
            return flm_fail(FLM_ERR_IO, "%s: not a Hugging Face model folder (no config.json or adapter_config.json)", dir);
        }
    }
    flm_json_doc *cfg = flm_json_parse_file(cfg_path);
    if (!cfg) { free(cfg_path); return FLM_ERR_FORMAT; }
    const flm_json *root = flm_json_root(cfg);
    const char *cfg_name = strrchr(cfg_path, '/') + 1;
    bool is_adapter = !strcmp(cfg_name, "adapter_config.json"); /* no generation config of its own */
    flm_gen_config gen;
    int rc = flm_gen_config_load_hf(dir, &gen);
    char **files = NULL;
    size_t n_files = 0;
    if (!rc) rc = folder_files(dir, &files, &n_files);
    if (rc) { flm_json_free(cfg); free(cfg_path); return rc; }

    if (o->json) {
        flm_sb_puts(sb, "{\"path\": ");
        flm_sb_json_string(sb, dir, strlen(dir), false);
        flm_sb_puts(sb, is_adapter ? ", \"format\": \"peft-adapter-folder\", \"config_file\": " : ", \"format\": \"hf-folder\", \"config_file\": ");
        flm_sb_json_string(sb, cfg_name, strlen(cfg_name), false);
        flm_sb_puts(sb, ", \"config\": ");
        flm_json_write(sb, root, true);
        if (!is_adapter) {
            flm_sb_printf(sb, ", \"generation_defaults\": {\"source\": \"%s\", \"in_file\": %s, \"values\": ",
                      gen.file_found ? "generation_config.json" : "transformers_defaults", gen.file_found ? "true" : "false");
            put_gen_defaults_values_json(sb, &gen);
            flm_sb_putc(sb, '}');
        }
        flm_sb_puts(sb, ", \"files\": [");
    } else {
        flm_sb_printf(sb, "%s: Hugging Face %s folder, %zu safetensors file%s\n%s:\n", dir, is_adapter ? "PEFT adapter" : "model", n_files, n_files == 1 ? "" : "s", cfg_name);
        for (size_t i = 0; root->type == JSON_OBJECT && i < root->len; i++) {
            const flm_json *e = &root->items[i];
            flm_sb_printf(sb, "  %-32s ", e->key);
            if (e->type == JSON_STRING) {
                put_string(sb, e->str, e->len, o->full ? 0 : SHORT_STRING);
            } else {
                strbuf v;
                flm_sb_init(&v);
                flm_json_write(&v, e, true);
                if (!o->full && v.len > SHORT_STRING) flm_sb_printf(sb, "%.*s... (%zu bytes)", SHORT_STRING, flm_sb_cstr(&v), v.len);
                else flm_sb_puts(sb, flm_sb_cstr(&v));
                flm_sb_free(&v);
            }
            flm_sb_putc(sb, '\n');
        }
        if (!is_adapter) {
            if (gen.file_found) flm_sb_puts(sb, "generation defaults: generation_config.json: ");
            else flm_sb_puts(sb, "generation defaults: none in folder (transformers' defaults apply: ");
            put_gen_defaults_values_text(sb, &gen);
            flm_sb_puts(sb, gen.file_found ? "\n" : ")\n");
        }
    }
    totals all = {0};
    for (size_t i = 0; !rc && i < n_files; i++) {
        if (i) flm_sb_puts(sb, o->json ? ", " : "\n");
        else if (!o->json) flm_sb_putc(sb, '\n');
        rc = inspect_safetensors(files[i], o, sb, &all);
    }
    if (!rc) {
        if (o->json) {
            flm_sb_puts(sb, "], \"totals\": ");
            put_totals_json(sb, &all);
            flm_sb_puts(sb, "}");
        } else if (n_files > 1) {
            flm_sb_putc(sb, '\n');
            put_totals_text(sb, "folder totals", &all);
        }
    }
    for (size_t i = 0; i < n_files; i++) free(files[i]);
    free(files);
    flm_json_free(cfg);
    free(cfg_path);
    return rc;
}

/* ---- the command ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* A LiteRT-LM bundle ("LITERTLM" first) or a TFLite model ("TFL3" at byte 4). */
static bool is_litert_file(const char *path) {
    unsigned char h[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    return n == 8 && (!memcmp(h, "LITERTLM", 8) || !memcmp(h + 4, "TFL3", 4));
}

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm inspect PATH [--json] [--full]\n\n"
            "Describes a .gguf package, a .safetensors file, or a Hugging Face folder (its\n"
            "config.json, generation defaults and every safetensors shard; a PEFT adapter folder\n"
            "works too): metadata, the tensor table (name, type, shape outermost first, bytes,\n"
            "file offset of the data) and totals (tensors, parameters, bytes by type). For a GGUF\n"
            "package it also says whether the file carries fieldlm's generation defaults\n"
            "(fieldlm.generation.*); standard llama.cpp files do not, and transformers' defaults\n"
            "then apply. A LiteRT model (.tflite) shows its signatures with their inputs and\n"
            "outputs, operator counts and constant bytes by type; a LiteRT-LM bundle (.litertlm)\n"
            "also every section and the decoded LlmMetadata (sampler, stop tokens, template,\n"
            "model type, capacity) — docs/LITERT.md. The file type is recognised by its\n"
            "contents, not its name.\n\n"
            "  --json      print one JSON object: metadata (scalars in full, arrays as\n"
            "              {type, count, head}), tensors, totals\n"
            "  --full      do not shorten long strings (e.g. the chat template) and list\n"
            "              arrays in full (e.g. all tokenizer tokens; large)\n"
            "  -h, --help  this help\n\n"
            "Exit status: 0 on success, 1 if the file is missing, of no known type, or corrupt,\n"
            "2 on a usage error.\n");
}

static int cmd_inspect(int argc, char **argv) {
    inspect_opts o = {0};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--json")) o.json = true;
        else if (!strcmp(argv[i], "--full")) o.full = true;
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "fieldlm inspect: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
        else if (path) { fprintf(stderr, "fieldlm inspect: one PATH at a time ('%s' and '%s' given)\n", path, argv[i]); return EXIT_USAGE; }
        else path = argv[i];
    }
    if (!path) { fprintf(stderr, "fieldlm inspect: no PATH given\n"); help(stderr); return EXIT_USAGE; }

    strbuf sb;
    flm_sb_init(&sb);
    int rc;
    if (flm_is_dir(path)) {
        rc = inspect_folder(path, &o, &sb);
    } else if (!flm_file_exists(path)) {
        rc = flm_fail(FLM_ERR_IO, "%s: no such file or folder", path);
    } else if (flm_gguf_is_gguf_file(path)) {
        rc = inspect_gguf(path, &o, &sb);
    } else if (is_litert_file(path)) {
        rc = flm_litert_describe_file(path, o.json, &sb); /* LiteRT model or LiteRT-LM bundle */
    } else {
        rc = inspect_safetensors(path, &o, &sb, NULL);
        if (rc && !ends_with(path, ".safetensors")) {
            char why[256];
            snprintf(why, sizeof why, "%s", flm_last_error());
            if (ends_with(path, ".gguf")) rc = flm_fail(FLM_ERR_FORMAT, "%s: not a GGUF file (it does not start with \"GGUF\")", path);
            else rc = flm_fail(FLM_ERR_FORMAT, "%s: not a GGUF or safetensors file (as safetensors: %s)", path, why);
        }
    }
    if (!rc && sb.oom) rc = flm_fail(FLM_ERR_NOMEM, "out of memory formatting the output");
    if (rc) {
        flm_sb_free(&sb);
        return cli_error("inspect");
    }
    if (o.json) flm_sb_putc(&sb, '\n');
    fwrite(sb.data, 1, sb.len, stdout);
    flm_sb_free(&sb);
    return EXIT_OK;
}
CLI_COMMAND(inspect, "inspect", "describe a .gguf, .safetensors or Hugging Face folder: metadata, tensors, totals", 50, cmd_inspect)
