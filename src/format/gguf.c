/* gguf.c — the GGUF reader: maps a file read-only, validates every field against
 * the file size, and serves metadata and tensor views without copying tensor
 * data. Also owns the GGUF/ggml type tables shared with gguf_write.c.
 * See gguf.h for the format and docs/GGUF.md for what fieldlm reads. */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/mapfile.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian fields with memcpy; port it before using a big-endian host"
#endif

/* ------------------------------------------------------------------ type tables */

static const struct { const char *name; size_t size; } VALUE_TYPES[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {"u8", 1},    [GGUF_TYPE_INT8] = {"i8", 1},
    [GGUF_TYPE_UINT16] = {"u16", 2},  [GGUF_TYPE_INT16] = {"i16", 2},
    [GGUF_TYPE_UINT32] = {"u32", 4},  [GGUF_TYPE_INT32] = {"i32", 4},
    [GGUF_TYPE_FLOAT32] = {"f32", 4}, [GGUF_TYPE_BOOL] = {"bool", 1},
    [GGUF_TYPE_STRING] = {"string", 0}, [GGUF_TYPE_ARRAY] = {"array", 0},
    [GGUF_TYPE_UINT64] = {"u64", 8},  [GGUF_TYPE_INT64] = {"i64", 8},
    [GGUF_TYPE_FLOAT64] = {"f64", 8},
};

const char *flm_gguf_type_name(gguf_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? VALUE_TYPES[t].name : "?";
}
size_t flm_gguf_type_size(gguf_type t) { return (unsigned)t < GGUF_TYPE_COUNT ? VALUE_TYPES[t].size : 0; }

/* ggml tensor types: elements per block and bytes per block (ggml-common.h), so
 * that files holding types fieldlm does not compute with can still be checked
 * and listed. dtype is the flm_dtype or -1. Ids 4, 5 and 31..33 are retired. */
typedef struct { const char *name; uint32_t block; uint32_t bytes; int dtype; } ggml_type_info;
#define GGML_TYPE_TABLE_SIZE 36
static const ggml_type_info GGML_TYPES[GGML_TYPE_TABLE_SIZE] = {
    [0] = {"f32", 1, 4, FLM_F32},        [1] = {"f16", 1, 2, FLM_F16},
    [2] = {"q4_0", 32, 18, FLM_Q4_0},    [3] = {"q4_1", 32, 20, -1},
    [6] = {"q5_0", 32, 22, -1},          [7] = {"q5_1", 32, 24, -1},
    [8] = {"q8_0", 32, 34, FLM_Q8_0},    [9] = {"q8_1", 32, 36, -1},
    [10] = {"q2_K", 256, 84, -1},        [11] = {"q3_K", 256, 110, -1},
    [12] = {"q4_K", 256, 144, -1},       [13] = {"q5_K", 256, 176, -1},
    [14] = {"q6_K", 256, 210, -1},       [15] = {"q8_K", 256, 292, -1},
    [16] = {"iq2_xxs", 256, 66, -1},     [17] = {"iq2_xs", 256, 74, -1},
    [18] = {"iq3_xxs", 256, 98, -1},     [19] = {"iq1_s", 256, 50, -1},
    [20] = {"iq4_nl", 32, 18, -1},       [21] = {"iq3_s", 256, 110, -1},
    [22] = {"iq2_s", 256, 82, -1},       [23] = {"iq4_xs", 256, 136, -1},
    [24] = {"i8", 1, 1, FLM_I8},         [25] = {"i16", 1, 2, -1},
    [26] = {"i32", 1, 4, FLM_I32},       [27] = {"i64", 1, 8, FLM_I64},
    [28] = {"f64", 1, 8, FLM_F64},       [29] = {"iq1_m", 256, 56, -1},
    [30] = {"bf16", 1, 2, FLM_BF16},
    [34] = {"tq1_0", 256, 54, -1},       [35] = {"tq2_0", 256, 66, -1},
};

static const ggml_type_info *ggml_type_get(uint32_t id) {
    return id < GGML_TYPE_TABLE_SIZE && GGML_TYPES[id].name ? &GGML_TYPES[id] : NULL;
}
const char *flm_gguf_ggml_type_name(uint32_t id) {
    const ggml_type_info *t = ggml_type_get(id);
    return t ? t->name : NULL;
}
int flm_gguf_dtype_from_ggml(uint32_t id) {
    const ggml_type_info *t = ggml_type_get(id);
    return t ? t->dtype : -1;
}
int flm_gguf_ggml_from_dtype(flm_dtype dt) {
    for (uint32_t id = 0; id < GGML_TYPE_TABLE_SIZE; id++)
        if (GGML_TYPES[id].name && GGML_TYPES[id].dtype == (int)dt) return (int)id;
    return -1;
}

/* ------------------------------------------------------------------ the handle */

/* Chunked arena for strings and value arrays: pointers stay valid until close. */
typedef struct arena_chunk { struct arena_chunk *next; size_t used, cap; max_align_t data[]; } arena_chunk;

struct flm_gguf_file {
    atomic_int refs;             /* flm_gguf_retain / flm_gguf_close */
    char *name;
    const uint8_t *base;         /* the image */
    uint64_t size;
    flm_map map;                 /* owned mapping (flm_gguf_open); empty for flm_gguf_open_memory */
    uint32_t version, alignment;
    uint64_t data_offset;
    flm_gguf_kv *kvs;
    size_t n_kv;
    flm_gguf_tensor_info *tensors;
    size_t n_tensors;
    uint32_t *kv_sorted, *tensor_sorted; /* indices sorted by key / name */
    arena_chunk *arena;
    uint64_t mem;                /* bytes of the header held in memory, <= GGUF_MAX_HEADER_MEMORY */
};

static atomic_uint_least64_t g_parses; /* images parsed by this process (flm_gguf_parse_count) */

static void *arena_alloc(flm_gguf_file *f, size_t n) {
    static max_align_t empty;
    if (n == 0) return &empty;
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_chunk *c = f->arena;
    if (!c || c->cap - c->used < n) {
        /* Chunks grow from 4 KiB to 1 MiB, so small files stay cheap. */
        size_t grow = c ? (c->cap < (1u << 20) ? c->cap * 2 : c->cap) : 4096;
        size_t cap = n > grow ? n : grow;
        c = flm_malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = f->arena;
        f->arena = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

/* ------------------------------------------------------------------ parsing */

typedef struct {
    flm_gguf_file *f;
    const uint8_t *p;
    uint64_t size, pos;
    char ctx[128]; /* what is being read, for messages: "metadata key 'x'", "tensor y" */
} cursor;

static void set_ctx(cursor *c, const char *fmt, ...) FLM_PRINTF(2, 3);
static void set_ctx(cursor *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->ctx, sizeof c->ctx, fmt, ap);
    va_end(ap);
}

static uint64_t left(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > left(c))
        return flm_fail(FLM_ERR_FORMAT, "%s: %s: truncated: %s at offset %" PRIu64 " needs %" PRIu64
                        " bytes, only %" PRIu64 " left in the file",
                        c->f->name, c->ctx, what, c->pos, n, left(c));
    return FLM_OK;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    int rc = need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return FLM_OK;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    int rc = need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return FLM_OK;
}

/* Counts n more bytes of the reader's own memory (copied strings, string lists,
 * nested arrays, the KV and tensor tables) against GGUF_MAX_HEADER_MEMORY, before
 * allocating them: a small (or sparse) file cannot make the reader take gigabytes. */
static int charge(cursor *c, uint64_t n, const char *what) {
    flm_gguf_file *f = c->f;
    if (n > GGUF_MAX_HEADER_MEMORY - f->mem)
        return flm_fail(FLM_ERR_FORMAT, "%s: %s: %s would bring the header's size in memory to %" PRIu64
                        " bytes; fieldlm reads headers of at most %" PRIu64 " bytes (%" PRIu64 " MiB)",
                        f->name, c->ctx, what, n > UINT64_MAX - f->mem ? UINT64_MAX : f->mem + n,
                        GGUF_MAX_HEADER_MEMORY, GGUF_MAX_HEADER_MEMORY >> 20);
    f->mem += n;
    return FLM_OK;
}

/* Charges and allocates n bytes of the arena. */
static int arena_take(cursor *c, uint64_t n, const char *what, void **out) {
    /* arena_alloc rounds every allocation up to max_align_t: charge that */
    uint64_t a = sizeof(max_align_t);
    uint64_t cost = n > UINT64_MAX - a ? UINT64_MAX : (n + a - 1) / a * a;
    int rc = charge(c, cost, what);
    if (rc) return rc;
    *out = arena_alloc(c->f, (size_t)n);
    return *out ? FLM_OK : FLM_ERR_NOMEM;
}

/* Reads a string into the arena (NUL-terminated). Lengths above max are refused
 * before anything is copied. */
static int rd_str(cursor *c, flm_gguf_str *s, const char *what, uint64_t max) {
    uint64_t len;
    int rc = rd_u64(c, &len, what);
    if (rc) return rc;
    if (len > left(c))
        return flm_fail(FLM_ERR_FORMAT, "%s: %s: %s at offset %" PRIu64 " has length %" PRIu64
                        ", but only %" PRIu64 " bytes are left in the file",
                        c->f->name, c->ctx, what, c->pos - 8, len, left(c));
    if (len > max)
        return flm_fail(FLM_ERR_FORMAT, "%s: %s: %s at offset %" PRIu64 " is %" PRIu64
                        " bytes; fieldlm reads at most %" PRIu64 " bytes there",
                        c->f->name, c->ctx, what, c->pos - 8, len, max);
    char *d;
    if ((rc = arena_take(c, len + 1, what, (void **)&d))) return rc;
    memcpy(d, c->p + c->pos, (size_t)len);
    d[len] = 0;
    c->pos += len;
    s->str = d;
    s->len = len;
    return FLM_OK;
}

static void decode_scalar(gguf_type t, const uint8_t *p, flm_gguf_value *v) {
    memset(&v->num, 0, sizeof v->num);
    v->type = t;
    switch (t) {
    case GGUF_TYPE_UINT8: v->num.u = p[0]; break;
    case GGUF_TYPE_INT8: v->num.i = (int8_t)p[0]; break;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); v->num.u = x; break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); v->num.i = x; break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); v->num.u = x; break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); v->num.i = x; break; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); v->num.u = x; break; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); v->num.i = x; break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); v->num.f = x; break; }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); v->num.f = x; break; }
    case GGUF_TYPE_BOOL: v->num.b = p[0] != 0; break;
    default: break;
    }
}

static int rd_value(cursor *c, gguf_type t, flm_gguf_value *v, int depth, const char *key);

static int rd_array(cursor *c, flm_gguf_value *v, int depth, const char *key) {
    flm_gguf_file *f = c->f;
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(c, &et, "array element type");
    if (!rc) rc = rd_u64(c, &n, "array length");
    if (rc) return rc;
    if (et >= GGUF_TYPE_COUNT)
        return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s': array element type %" PRIu32
                        " is not a GGUF value type (expected 0..%d)", f->name, key, et, GGUF_TYPE_COUNT - 1);
    v->elem_type = (gguf_type)et;
    v->count = n;
    /* Each element occupies at least `min` bytes of the file: bounds n before any
     * allocation, so a hostile length cannot ask for more than the file holds. */
    size_t sz = flm_gguf_type_size(v->elem_type);
    uint64_t min = sz ? sz : et == GGUF_TYPE_STRING ? 8 : 12;
    if (n > left(c) / min)
        return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s': array of %" PRIu64 " %s needs at least %" PRIu64
                        " bytes, only %" PRIu64 " left in the file",
                        f->name, key, n, flm_gguf_type_name(v->elem_type),
                        n > UINT64_MAX / min ? UINT64_MAX : n * min, left(c));
    if (sz) {
        v->data = c->p + c->pos;
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->p[c->pos + i] > 1)
                    return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s': bool element %" PRIu64
                                    " is %u, expected 0 or 1", f->name, key, i, c->p[c->pos + i]);
        c->pos += n * sz;
        return FLM_OK;
    }
    if (et == GGUF_TYPE_STRING) {
        flm_gguf_str *s;
        if ((rc = arena_take(c, n * sizeof *s, "the list of strings", (void **)&s))) return rc;
        for (uint64_t i = 0; i < n; i++)
            if ((rc = rd_str(c, &s[i], "array string", GGUF_MAX_STRING))) return rc;
        v->strs = s;
        return FLM_OK;
    }
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s': arrays nested deeper than %d",
                        f->name, key, GGUF_MAX_ARRAY_DEPTH);
    flm_gguf_value *items;
    if ((rc = arena_take(c, n * sizeof *items, "the nested arrays", (void **)&items))) return rc;
    memset(items, 0, (size_t)n * sizeof *items);
    for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_value(c, GGUF_TYPE_ARRAY, &items[i], depth + 1, key))) return rc;
    v->items = items;
    return FLM_OK;
}

static int rd_value(cursor *c, gguf_type t, flm_gguf_value *v, int depth, const char *key) {
    v->type = t;
    if (t == GGUF_TYPE_STRING) {
        return rd_str(c, &v->s, "string value", GGUF_MAX_STRING);
    }
    if (t == GGUF_TYPE_ARRAY) return rd_array(c, v, depth, key);
    size_t sz = flm_gguf_type_size(t);
    int rc = need(c, sz, flm_gguf_type_name(t));
    if (rc) return rc;
    if (t == GGUF_TYPE_BOOL && c->p[c->pos] > 1)
        return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s': bool is %u, expected 0 or 1",
                        c->f->name, key, c->p[c->pos]);
    decode_scalar(t, c->p + c->pos, v);
    c->pos += sz;
    return FLM_OK;
}

typedef enum { BY_KEY, BY_NAME, BY_OFFSET } sort_order;

static bool idx_le(const flm_gguf_file *f, sort_order by, uint32_t a, uint32_t b) {
    switch (by) {
    case BY_KEY: return strcmp(f->kvs[a].key, f->kvs[b].key) <= 0;
    case BY_NAME: return strcmp(f->tensors[a].name, f->tensors[b].name) <= 0;
    default: return f->tensors[a].offset <= f->tensors[b].offset;
    }
}

/* Sorts indices 0..n-1 (stable merge sort through tmp[n], O(n log n) whatever the
 * file's order; no global state, so threads may open files at once). */
static void sort_idx(uint32_t *idx, uint32_t *tmp, size_t n, const flm_gguf_file *f, sort_order by) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_idx(idx, tmp, h, f, by);
    sort_idx(idx + h, tmp, n - h, f, by);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = idx_le(f, by, idx[i], idx[j]) ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

static int parse_kvs(cursor *c, uint64_t n_kv) {
    flm_gguf_file *f = c->f;
    /* A KV is at least 8 (key length) + 4 (type) + 1 bytes. */
    if (n_kv > left(c) / 13)
        return flm_fail(FLM_ERR_FORMAT, "%s: header declares %" PRIu64 " metadata pairs, but the file has room for at most %" PRIu64,
                        f->name, n_kv, left(c) / 13);
    /* the table, and the sorted index with its merge buffer */
    int rc = charge(c, n_kv * (sizeof *f->kvs + 2 * sizeof *f->kv_sorted), "the metadata table");
    if (rc) return rc;
    f->kvs = flm_calloc(n_kv ? (size_t)n_kv : 1, sizeof *f->kvs);
    if (!f->kvs) return FLM_ERR_NOMEM;
    for (uint64_t i = 0; i < n_kv; i++) {
        flm_gguf_kv *kv = &f->kvs[i];
        flm_gguf_str key;
        uint32_t t;
        set_ctx(c, "metadata pair %" PRIu64, i);
        rc = rd_str(c, &key, "key", GGUF_MAX_KEY);
        if (rc) return rc;
        if (key.len == 0 || strlen(key.str) != key.len)
            return flm_fail(FLM_ERR_FORMAT, "%s: metadata pair %" PRIu64 ": key is empty or contains a NUL byte",
                            f->name, i);
        kv->key = key.str;
        f->n_kv = (size_t)i + 1;
        set_ctx(c, "metadata key '%.100s'", kv->key);
        if ((rc = rd_u32(c, &t, "value type"))) return rc;
        if (t >= GGUF_TYPE_COUNT)
            return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s': value type %" PRIu32
                            " is not a GGUF value type (expected 0..%d)", f->name, kv->key, t, GGUF_TYPE_COUNT - 1);
        if ((rc = rd_value(c, (gguf_type)t, &kv->value, 0, kv->key))) return rc;
    }
    f->kv_sorted = flm_malloc((f->n_kv ? f->n_kv : 1) * 2 * sizeof(uint32_t));
    if (!f->kv_sorted) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < f->n_kv; i++) f->kv_sorted[i] = (uint32_t)i;
    sort_idx(f->kv_sorted, f->kv_sorted + f->n_kv, f->n_kv, f, BY_KEY);
    for (size_t i = 1; i < f->n_kv; i++)
        if (!strcmp(f->kvs[f->kv_sorted[i]].key, f->kvs[f->kv_sorted[i - 1]].key))
            return flm_fail(FLM_ERR_FORMAT, "%s: duplicate metadata key '%s'", f->name, f->kvs[f->kv_sorted[i]].key);
    return FLM_OK;
}

static int parse_alignment(flm_gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const flm_gguf_value *v = flm_gguf_find(f, "general.alignment");
    if (!v) return FLM_OK;
    if (v->type != GGUF_TYPE_UINT32)
        return flm_fail(FLM_ERR_FORMAT, "%s: general.alignment is %s, expected u32", f->name, flm_gguf_type_name(v->type));
    uint64_t a = v->num.u;
    if (a == 0 || (a & (a - 1)))
        return flm_fail(FLM_ERR_FORMAT, "%s: general.alignment is %" PRIu64 ", expected a power of two", f->name, a);
    f->alignment = (uint32_t)a;
    return FLM_OK;
}

static int parse_tensor_info(cursor *c, flm_gguf_tensor_info *ti, uint64_t i) {
    flm_gguf_file *f = c->f;
    flm_gguf_str name;
    uint32_t nd, type;
    set_ctx(c, "tensor %" PRIu64, i);
    /* the length is checked before the name is copied */
    uint64_t len = 0;
    if (need(c, 8, "name") == FLM_OK) memcpy(&len, c->p + c->pos, 8);
    if (len > GGUF_MAX_NAME && len <= left(c) - 8)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %" PRIu64 ": name must be 1..%d bytes without NUL, got %" PRIu64 " bytes",
                        f->name, i, GGUF_MAX_NAME, len);
    int rc = rd_str(c, &name, "name", GGUF_MAX_NAME);
    if (rc) return rc;
    if (name.len == 0 || strlen(name.str) != name.len)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %" PRIu64 ": name must be 1..%d bytes without NUL, got %" PRIu64 " bytes",
                        f->name, i, GGUF_MAX_NAME, name.len);
    ti->name = name.str;
    set_ctx(c, "tensor %s", ti->name);
    if ((rc = rd_u32(c, &nd, "n_dims"))) return rc;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: n_dims expected 1..%d, got %" PRIu32, f->name, ti->name,
                        GGUF_MAX_DIMS, nd);
    ti->n_dims = (int)nd;
    uint64_t numel = 1;
    bool overflow = false;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        if ((rc = rd_u64(c, &ti->ne[d], "dimension"))) return rc;
        if (ti->ne[d] > (uint64_t)INT64_MAX || (ti->ne[d] && numel > (uint64_t)INT64_MAX / ti->ne[d])) overflow = true;
        else numel *= ti->ne[d];
    }
    if (overflow)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: dimensions overflow 63 bits", f->name, ti->name);
    for (int d = 0; d < ti->n_dims; d++) ti->shape[d] = (int64_t)ti->ne[ti->n_dims - 1 - d];
    for (int d = ti->n_dims; d < GGUF_MAX_DIMS; d++) ti->shape[d] = 1;
    if ((rc = rd_u32(c, &type, "tensor type"))) return rc;
    const ggml_type_info *gt = ggml_type_get(type);
    if (!gt) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: unknown ggml type id %" PRIu32, f->name, ti->name, type);
    ti->ggml_type = type;
    ti->dtype = gt->dtype;
    if (ti->ne[0] % gt->block)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: row length %" PRIu64 " is not a multiple of %s's block size %" PRIu32,
                        f->name, ti->name, ti->ne[0], gt->name, gt->block);
    uint64_t blocks = numel / gt->block;
    if (blocks > UINT64_MAX / gt->bytes)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: byte size overflows", f->name, ti->name);
    ti->nbytes = blocks * gt->bytes;
    if ((rc = rd_u64(c, &ti->offset, "tensor offset"))) return rc;
    if (ti->offset % f->alignment)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                        f->name, ti->name, ti->offset, f->alignment);
    return FLM_OK;
}

static int parse_tensors(cursor *c, uint64_t n_t) {
    flm_gguf_file *f = c->f;
    /* A tensor info is at least 8 + 1 (name) + 4 + 8 (one dim) + 4 + 8 bytes. */
    if (n_t > left(c) / 33)
        return flm_fail(FLM_ERR_FORMAT, "%s: header declares %" PRIu64 " tensors, but the file has room for at most %" PRIu64,
                        f->name, n_t, left(c) / 33);
    set_ctx(c, "tensor table");
    int rc = charge(c, n_t * (sizeof *f->tensors + 2 * sizeof *f->tensor_sorted), "the tensor table");
    if (rc) return rc;
    f->tensors = flm_calloc(n_t ? (size_t)n_t : 1, sizeof *f->tensors);
    if (!f->tensors) return FLM_ERR_NOMEM;
    for (uint64_t i = 0; i < n_t; i++) {
        rc = parse_tensor_info(c, &f->tensors[i], i);
        if (rc) return rc;
        f->n_tensors = (size_t)i + 1;
    }
    f->tensor_sorted = flm_malloc((f->n_tensors ? f->n_tensors : 1) * 2 * sizeof(uint32_t));
    if (!f->tensor_sorted) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < f->n_tensors; i++) f->tensor_sorted[i] = (uint32_t)i;
    sort_idx(f->tensor_sorted, f->tensor_sorted + f->n_tensors, f->n_tensors, f, BY_NAME);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[f->tensor_sorted[i]].name, f->tensors[f->tensor_sorted[i - 1]].name))
            return flm_fail(FLM_ERR_FORMAT, "%s: duplicate tensor name %s", f->name, f->tensors[f->tensor_sorted[i]].name);
    return FLM_OK;
}

/* Places the data section and checks each tensor's extent and that none overlap. */
static int check_extents(flm_gguf_file *f, uint64_t header_end) {
    uint64_t a = f->alignment;
    uint64_t start = header_end % a ? header_end + (a - header_end % a) : header_end;
    f->data_offset = start;
    if (f->n_tensors == 0) return FLM_OK;
    if (start > f->size)
        return flm_fail(FLM_ERR_FORMAT, "%s: data section would start at offset %" PRIu64 ", past the end of the file (%" PRIu64 " bytes)",
                        f->name, start, f->size);
    uint64_t data_size = f->size - start;
    for (size_t i = 0; i < f->n_tensors; i++) {
        flm_gguf_tensor_info *ti = &f->tensors[i];
        if (ti->offset > data_size || ti->nbytes > data_size - ti->offset)
            return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: data [%" PRIu64 ", +%" PRIu64 ") of the data section runs past the end of the file "
                            "(expected at most %" PRIu64 " data bytes)", f->name, ti->name, ti->offset, ti->nbytes, data_size);
        ti->data = f->base + start + ti->offset;
    }
    /* Overlap: sort by offset. */
    uint32_t *ord = flm_malloc(f->n_tensors * 2 * sizeof *ord);
    if (!ord) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < f->n_tensors; i++) ord[i] = (uint32_t)i;
    sort_idx(ord, ord + f->n_tensors, f->n_tensors, f, BY_OFFSET);
    int rc = FLM_OK;
    for (size_t i = 1; i < f->n_tensors; i++) {
        const flm_gguf_tensor_info *p = &f->tensors[ord[i - 1]], *q = &f->tensors[ord[i]];
        if (p->offset + p->nbytes > q->offset) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: data at offset %" PRIu64 " overlaps tensor %s ([%" PRIu64 ", +%" PRIu64 "))",
                          f->name, q->name, q->offset, p->name, p->offset, p->nbytes);
            break;
        }
    }
    free(ord);
    return rc;
}

static int parse(flm_gguf_file *f) {
    cursor c = {f, f->base, f->size, 0, "header"};
    uint32_t magic_ver[2];
    uint64_t n_t, n_kv;
    if (f->size < 4 || !flm_gguf_has_magic(f->base, f->size))
        return flm_fail(FLM_ERR_FORMAT, "%s: not a GGUF file (expected magic \"GGUF\")", f->name);
    int rc = rd_u32(&c, &magic_ver[0], "magic");
    if (!rc) rc = rd_u32(&c, &magic_ver[1], "version");
    if (rc) return rc;
    f->version = magic_ver[1];
    if (f->version == 0x02000000u || f->version == 0x03000000u)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: big-endian GGUF files are not supported", f->name);
    if (f->version != 2 && f->version != 3)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: GGUF version %" PRIu32 " is not supported (expected 2 or 3)", f->name,
                        f->version);
    if ((rc = rd_u64(&c, &n_t, "tensor count")) || (rc = rd_u64(&c, &n_kv, "metadata count"))) return rc;
    if ((rc = parse_kvs(&c, n_kv)) || (rc = parse_alignment(f)) || (rc = parse_tensors(&c, n_t))) return rc;
    return check_extents(f, c.pos);
}

bool flm_gguf_has_magic(const void *buf, size_t n) { return buf && n >= 4 && !memcmp(buf, GGUF_MAGIC, 4); }

bool flm_gguf_is_gguf_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) return false;
    char m[4];
    ssize_t n = read(fd, m, 4);
    close(fd);
    return n == 4 && flm_gguf_has_magic(m, 4);
}

static int open_common(flm_gguf_file *f, flm_gguf_file **out) {
    atomic_init(&f->refs, 1);
    atomic_fetch_add(&g_parses, 1);
    int rc = parse(f);
    if (rc) {
        flm_gguf_close(f);
        return rc;
    }
    *out = f;
    return FLM_OK;
}

int flm_gguf_open_memory(const void *buf, size_t size, const char *name, flm_gguf_file **out) {
    *out = NULL;
    if (!name) name = "(memory)";
    flm_gguf_file *f = flm_calloc(1, sizeof *f);
    if (!f) return FLM_ERR_NOMEM;
    if (!(f->name = flm_strdup(name))) { free(f); return FLM_ERR_NOMEM; }
    f->base = buf;
    f->size = buf ? size : 0;
    return open_common(f, out);
}

int flm_gguf_open(const char *path, flm_gguf_file **out) {
    *out = NULL;
    flm_map map;
    int rc = flm_map_open(path, &map);
    if (rc) return rc;
    if (map.size < 4) {
        flm_map_close(&map);
        return flm_fail(FLM_ERR_FORMAT, "%s: not a GGUF file (%zu bytes)", path, map.size);
    }
    flm_gguf_file *f = flm_calloc(1, sizeof *f);
    if (!f || !(f->name = flm_strdup(path))) {
        free(f);
        flm_map_close(&map);
        return FLM_ERR_NOMEM;
    }
    f->map = map;
    f->base = map.data;
    f->size = map.size;
    return open_common(f, out);
}

flm_gguf_file *flm_gguf_retain(flm_gguf_file *f) {
    if (f) atomic_fetch_add(&f->refs, 1);
    return f;
}

uint64_t flm_gguf_parse_count(void) { return atomic_load(&g_parses); }

void flm_gguf_close(flm_gguf_file *f) {
    if (!f || atomic_fetch_sub(&f->refs, 1) > 1) return;
    flm_map_close(&f->map);
    for (arena_chunk *c = f->arena, *n; c; c = n) { n = c->next; free(c); }
    free(f->kvs);
    free(f->tensors);
    free(f->kv_sorted);
    free(f->tensor_sorted);
    free(f->name);
    free(f);
}

/* ------------------------------------------------------------------ accessors */

const char *flm_gguf_name(const flm_gguf_file *f) { return f->name; }
uint32_t flm_gguf_version(const flm_gguf_file *f) { return f->version; }
uint32_t flm_gguf_alignment(const flm_gguf_file *f) { return f->alignment; }
uint64_t flm_gguf_data_offset(const flm_gguf_file *f) { return f->data_offset; }
uint64_t flm_gguf_file_size(const flm_gguf_file *f) { return f->size; }
size_t flm_gguf_kv_count(const flm_gguf_file *f) { return f->n_kv; }
const flm_gguf_kv *flm_gguf_kv_at(const flm_gguf_file *f, size_t i) { return i < f->n_kv ? &f->kvs[i] : NULL; }
size_t flm_gguf_tensor_count(const flm_gguf_file *f) { return f->n_tensors; }
const flm_gguf_tensor_info *flm_gguf_tensor_at(const flm_gguf_file *f, size_t i) { return i < f->n_tensors ? &f->tensors[i] : NULL; }

const flm_gguf_value *flm_gguf_find(const flm_gguf_file *f, const char *key) {
    size_t lo = 0, hi = f->n_kv;
    if (!f->kv_sorted) return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->kvs[f->kv_sorted[mid]].key, key);
        if (c == 0) return &f->kvs[f->kv_sorted[mid]].value;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const flm_gguf_tensor_info *flm_gguf_tensor_find(const flm_gguf_file *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    if (!f->tensor_sorted) return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->tensor_sorted[mid]].name, name);
        if (c == 0) return &f->tensors[f->tensor_sorted[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static bool is_unsigned(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}
static bool is_signed(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}
static bool is_float(gguf_type t) { return t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64; }

/* Integer value of a scalar within [lo, hi]; false if not an integer or out of range. */
static bool scalar_int(const flm_gguf_value *v, int64_t lo, uint64_t hi, bool *neg, uint64_t *mag) {
    if (is_unsigned(v->type)) {
        *neg = false;
        *mag = v->num.u;
        return v->num.u <= hi;
    }
    if (is_signed(v->type)) {
        *neg = v->num.i < 0;
        *mag = *neg ? (uint64_t)(-(v->num.i + 1)) + 1 : (uint64_t)v->num.i;
        return *neg ? v->num.i >= lo : *mag <= hi;
    }
    return false;
}

static const flm_gguf_value *need_key(const flm_gguf_file *f, const char *key, int *rc) {
    const flm_gguf_value *v = flm_gguf_find(f, key);
    *rc = v ? FLM_OK : flm_fail(FLM_ERR_FORMAT, "%s: missing metadata key '%s'", f->name, key);
    return v;
}

static int wrong(const flm_gguf_file *f, const char *key, const flm_gguf_value *v, const char *expected) {
    return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s' is %s, expected %s", f->name, key,
                    flm_gguf_type_name(v->type), expected);
}

#define INT_GETTER(fn, T, LO, HI, EXPECT)                                                  \
    int fn(const flm_gguf_file *f, const char *key, T *out) {                                  \
        int rc;                                                                            \
        const flm_gguf_value *v = need_key(f, key, &rc);                                       \
        bool neg;                                                                          \
        uint64_t mag;                                                                      \
        if (!v) return rc;                                                                 \
        if (!scalar_int(v, LO, HI, &neg, &mag)) return wrong(f, key, v, EXPECT);           \
        *out = neg ? (T)v->num.i : (T)mag;                                                 \
        return FLM_OK;                                                                     \
    }
INT_GETTER(flm_gguf_get_u32, uint32_t, 0, UINT32_MAX, "an integer in u32 range")
INT_GETTER(flm_gguf_get_i32, int32_t, INT32_MIN, INT32_MAX, "an integer in i32 range")
INT_GETTER(flm_gguf_get_u64, uint64_t, 0, UINT64_MAX, "a non-negative integer")
INT_GETTER(flm_gguf_get_i64, int64_t, INT64_MIN, INT64_MAX, "an integer in i64 range")

int flm_gguf_get_f64(const flm_gguf_file *f, const char *key, double *out) {
    int rc;
    const flm_gguf_value *v = need_key(f, key, &rc);
    if (!v) return rc;
    if (!is_float(v->type)) return wrong(f, key, v, "f32 or f64");
    *out = v->num.f;
    return FLM_OK;
}
int flm_gguf_get_f32(const flm_gguf_file *f, const char *key, float *out) {
    double d = 0;
    int rc = flm_gguf_get_f64(f, key, &d);
    if (!rc) *out = (float)d;
    return rc;
}
int flm_gguf_get_bool(const flm_gguf_file *f, const char *key, bool *out) {
    int rc;
    const flm_gguf_value *v = need_key(f, key, &rc);
    if (!v) return rc;
    if (v->type != GGUF_TYPE_BOOL) return wrong(f, key, v, "bool");
    *out = v->num.b;
    return FLM_OK;
}
int flm_gguf_get_str(const flm_gguf_file *f, const char *key, const char **out) {
    int rc;
    const flm_gguf_value *v = need_key(f, key, &rc);
    if (!v) return rc;
    if (v->type != GGUF_TYPE_STRING) return wrong(f, key, v, "string");
    *out = v->s.str;
    return FLM_OK;
}
int flm_gguf_get_array(const flm_gguf_file *f, const char *key, gguf_type elem, const flm_gguf_value **out) {
    int rc;
    const flm_gguf_value *v = need_key(f, key, &rc);
    if (!v) return rc;
    if (v->type != GGUF_TYPE_ARRAY) return wrong(f, key, v, "array");
    if (elem != GGUF_TYPE_COUNT && v->elem_type != elem)
        return flm_fail(FLM_ERR_FORMAT, "%s: metadata key '%s' is an array of %s, expected an array of %s", f->name, key,
                        flm_gguf_type_name(v->elem_type), flm_gguf_type_name(elem));
    *out = v;
    return FLM_OK;
}

uint64_t flm_gguf_array_len(const flm_gguf_value *arr) { return arr && arr->type == GGUF_TYPE_ARRAY ? arr->count : 0; }

static int array_check(const flm_gguf_value *arr, uint64_t i) {
    if (!arr || arr->type != GGUF_TYPE_ARRAY) return flm_fail(FLM_ERR_ARG, "gguf: value is not an array");
    if (i >= arr->count)
        return flm_fail(FLM_ERR_ARG, "gguf: array index %" PRIu64 " out of range (length %" PRIu64 ")", i, arr->count);
    return FLM_OK;
}

int flm_gguf_array_str(const flm_gguf_value *arr, uint64_t i, const char **s, uint64_t *len) {
    int rc = array_check(arr, i);
    if (rc) return rc;
    if (arr->elem_type != GGUF_TYPE_STRING)
        return flm_fail(FLM_ERR_ARG, "gguf: array of %s has no strings", flm_gguf_type_name(arr->elem_type));
    *s = arr->strs[i].str;
    if (len) *len = arr->strs[i].len;
    return FLM_OK;
}

static int array_elem(const flm_gguf_value *arr, uint64_t i, flm_gguf_value *e) {
    int rc = array_check(arr, i);
    if (rc) return rc;
    size_t sz = flm_gguf_type_size(arr->elem_type);
    if (!sz || arr->elem_type == GGUF_TYPE_BOOL)
        return flm_fail(FLM_ERR_ARG, "gguf: array of %s is not numeric", flm_gguf_type_name(arr->elem_type));
    decode_scalar(arr->elem_type, (const uint8_t *)arr->data + i * sz, e);
    return FLM_OK;
}

int flm_gguf_array_i64(const flm_gguf_value *arr, uint64_t i, int64_t *out) {
    flm_gguf_value e;
    bool neg;
    uint64_t mag;
    int rc = array_elem(arr, i, &e);
    if (rc) return rc;
    if (!scalar_int(&e, INT64_MIN, INT64_MAX, &neg, &mag))
        return flm_fail(FLM_ERR_ARG, "gguf: array element %" PRIu64 " (%s) is not an i64", i, flm_gguf_type_name(e.type));
    *out = neg ? e.num.i : (int64_t)mag;
    return FLM_OK;
}

int flm_gguf_array_f64(const flm_gguf_value *arr, uint64_t i, double *out) {
    flm_gguf_value e;
    int rc = array_elem(arr, i, &e);
    if (rc) return rc;
    *out = is_float(e.type) ? e.num.f : is_signed(e.type) ? (double)e.num.i : (double)e.num.u;
    return FLM_OK;
}

int flm_gguf_array_copy_f32(const flm_gguf_value *arr, float *dst, uint64_t n) {
    if (flm_gguf_array_len(arr) != n)
        return flm_fail(FLM_ERR_ARG, "gguf: array length %" PRIu64 ", expected %" PRIu64, flm_gguf_array_len(arr), n);
    if (arr->elem_type == GGUF_TYPE_FLOAT32) {
        if (n) memcpy(dst, arr->data, (size_t)n * 4);
        return FLM_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        double d;
        int rc = flm_gguf_array_f64(arr, i, &d);
        if (rc) return rc;
        dst[i] = (float)d;
    }
    return FLM_OK;
}

int flm_gguf_array_copy_i32(const flm_gguf_value *arr, int32_t *dst, uint64_t n) {
    if (flm_gguf_array_len(arr) != n)
        return flm_fail(FLM_ERR_ARG, "gguf: array length %" PRIu64 ", expected %" PRIu64, flm_gguf_array_len(arr), n);
    for (uint64_t i = 0; i < n; i++) {
        int64_t v;
        int rc = flm_gguf_array_i64(arr, i, &v);
        if (rc) return rc;
        if (v < INT32_MIN || v > INT32_MAX)
            return flm_fail(FLM_ERR_ARG, "gguf: array element %" PRIu64 " = %" PRId64 " is out of i32 range", i, v);
        dst[i] = (int32_t)v;
    }
    return FLM_OK;
}

int flm_gguf_tensor_view(const flm_gguf_file *f, const flm_gguf_tensor_info *ti, flm_tensor *out) {
    if (ti->dtype < 0)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %s, which fieldlm cannot use "
                        "(expected f32, f16, bf16, q8_0 or q4_0)", f->name, ti->name, flm_gguf_ggml_type_name(ti->ggml_type));
    if (ti->nbytes > SIZE_MAX) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s is too large", f->name, ti->name);
    memset(out, 0, sizeof *out);
    out->name = ti->name;
    out->dtype = (flm_dtype)ti->dtype;
    out->ndim = ti->n_dims;
    for (int d = 0; d < ti->n_dims; d++) out->shape[d] = ti->shape[d];
    out->data = ti->data;
    out->nbytes = (size_t)ti->nbytes;
    return FLM_OK;
}

int flm_gguf_get_tensor(const flm_gguf_file *f, const char *name, flm_tensor *out) {
    const flm_gguf_tensor_info *ti = flm_gguf_tensor_find(f, name);
    if (!ti) return flm_fail(FLM_ERR_FORMAT, "%s: missing tensor %s", f->name, name);
    return flm_gguf_tensor_view(f, ti, out);
}
