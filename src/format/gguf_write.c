/* gguf_write.c — the streaming GGUF writer used by the converter.
 *
 * Metadata and tensor infos are collected in memory (a few MB at most: the
 * vocabulary dominates); tensor data is streamed one tensor at a time in
 * declaration order to a temporary file unique to this writer (PATH.XXXXXX.tmp,
 * src/base/outfile.c), so the caller needs memory for one tensor only. Offsets are
 * known when a tensor is declared, so the header goes out before the first data
 * byte; a string-array element can still be replaced by one of the same length
 * until finish (flm_gguf_writer_replace_str: the converter's source hashes, which
 * are computed while the data is written). Every write is checked; the first
 * failure (or any misuse) removes the temporary file and makes every later call
 * fail, so a failed conversion leaves nothing behind. finish() fsyncs the file,
 * renames it over PATH and fsyncs the directory. */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "base/outfile.h"

typedef struct {
    char *name;
    uint64_t nbytes, offset;
} wtensor;

struct flm_gguf_writer {
    char *path;
    flm_outfile out;         /* the temporary file; closed (tmp NULL) once failed or finished */
    uint32_t alignment;
    int failed;              /* 0 or the status of the first failure */
    char errmsg[512];        /* its message, repeated by later calls */
    strbuf kv;               /* serialised KV pairs */
    char **keys;             /* for the duplicate check */
    uint64_t *key_off;       /* where each key's entry starts in kv (and, + 24, in the file) */
    size_t n_kv, cap_kv;
    strbuf ti;               /* serialised tensor infos */
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t data_size;      /* aligned end of the declared data */
    bool header_written;
    size_t cur;              /* tensor being written */
    uint64_t cur_written;    /* bytes of it written so far */
    uint64_t file_pos, fail_after;
};

/* Records the failure, removes the temporary file, poisons the writer. */
static int wfail(flm_gguf_writer *w, int status, const char *fmt, ...) FLM_PRINTF(3, 4);
static int wfail(flm_gguf_writer *w, int status, const char *fmt, ...) {
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->errmsg, sizeof w->errmsg, fmt, ap);
        va_end(ap);
        w->failed = status;
        flm_outfile_abort(&w->out);
    }
    return flm_fail(w->failed, "%s", w->errmsg);
}

static int check_live(flm_gguf_writer *w) {
    if (!w) return flm_fail(FLM_ERR_ARG, "gguf writer: NULL handle");
    return w->failed ? flm_fail(w->failed, "%s", w->errmsg) : FLM_OK;
}

int flm_gguf_writer_open(const char *path, uint32_t alignment, flm_gguf_writer **out) {
    *out = NULL;
    if (alignment == 0) alignment = GGUF_DEFAULT_ALIGNMENT;
    if ((alignment & (alignment - 1)) || alignment > 4096)
        return flm_fail(FLM_ERR_ARG, "%s: alignment %" PRIu32 " must be a power of two up to 4096", path, alignment);
    flm_gguf_writer *w = flm_calloc(1, sizeof *w);
    if (!w) return FLM_ERR_NOMEM;
    w->alignment = alignment;
    w->fail_after = UINT64_MAX;
    flm_sb_init(&w->kv);
    flm_sb_init(&w->ti);
    int rc = (w->path = flm_strdup(path)) ? flm_outfile_open(path, &w->out) : FLM_ERR_NOMEM;
    if (rc) {
        free(w->path);
        free(w);
        return rc;
    }
    if (alignment != GGUF_DEFAULT_ALIGNMENT) {
        rc = flm_gguf_writer_add_u32(w, "general.alignment", alignment);
        if (rc) {
            flm_gguf_writer_abort(w);
            return rc;
        }
    }
    *out = w;
    return FLM_OK;
}

void flm_gguf_writer_fail_after(flm_gguf_writer *w, uint64_t bytes) {
    if (w) w->fail_after = bytes;
}

/* ------------------------------------------------------------------ metadata */

static void put_u32(strbuf *sb, uint32_t v) { flm_sb_append(sb, (const char *)&v, 4); }
static void put_u64(strbuf *sb, uint64_t v) { flm_sb_append(sb, (const char *)&v, 8); }
static void put_str(strbuf *sb, const char *s, uint64_t len) {
    put_u64(sb, len);
    flm_sb_append(sb, s, (size_t)len);
}

/* Serialises a value body (without its type tag) after validating it. */
static int put_value(flm_gguf_writer *w, const char *key, const flm_gguf_value *v, int depth) {
    strbuf *sb = &w->kv;
    if ((unsigned)v->type >= GGUF_TYPE_COUNT)
        return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': bad value type %d", w->path, key, (int)v->type);
    if (v->type == GGUF_TYPE_STRING) {
        if (!v->s.str && v->s.len) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': NULL string", w->path, key);
        put_str(sb, v->s.str ? v->s.str : "", v->s.len);
        return FLM_OK;
    }
    if (v->type != GGUF_TYPE_ARRAY) {
        uint8_t raw[8];
        size_t sz = flm_gguf_type_size(v->type);
        switch (v->type) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
            memcpy(raw, &v->num.u, 8); /* little-endian: the low bytes come first */
            break;
        case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
            memcpy(raw, &v->num.i, 8);
            break;
        case GGUF_TYPE_FLOAT32: { float x = (float)v->num.f; memcpy(raw, &x, 4); break; }
        case GGUF_TYPE_FLOAT64: memcpy(raw, &v->num.f, 8); break;
        default: raw[0] = v->num.b ? 1 : 0; break; /* BOOL */
        }
        flm_sb_append(sb, (const char *)raw, sz);
        return FLM_OK;
    }
    if ((unsigned)v->elem_type >= GGUF_TYPE_COUNT)
        return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': bad array element type %d", w->path, key, (int)v->elem_type);
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': arrays nested deeper than %d", w->path, key,
                     GGUF_MAX_ARRAY_DEPTH);
    put_u32(sb, (uint32_t)v->elem_type);
    put_u64(sb, v->count);
    size_t sz = flm_gguf_type_size(v->elem_type);
    if (v->count == 0) return FLM_OK;
    if (sz) {
        if (!v->data) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': NULL array data", w->path, key);
        if (v->count > SIZE_MAX / sz) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': array too long", w->path, key);
        if (v->elem_type == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < v->count; i++)
                if (((const uint8_t *)v->data)[i] > 1)
                    return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': bool element %" PRIu64 " is not 0 or 1",
                                 w->path, key, i);
        flm_sb_append(sb, v->data, (size_t)v->count * sz);
        return FLM_OK;
    }
    if (v->elem_type == GGUF_TYPE_STRING) {
        if (!v->strs) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': NULL string array", w->path, key);
        for (uint64_t i = 0; i < v->count; i++) put_str(sb, v->strs[i].str ? v->strs[i].str : "", v->strs[i].len);
        return FLM_OK;
    }
    if (!v->items) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': NULL nested array", w->path, key);
    for (uint64_t i = 0; i < v->count; i++) {
        if (v->items[i].type != GGUF_TYPE_ARRAY)
            return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': element %" PRIu64 " of an array of arrays is %s",
                         w->path, key, i, flm_gguf_type_name(v->items[i].type));
        int rc = put_value(w, key, &v->items[i], depth + 1);
        if (rc) return rc;
    }
    return FLM_OK;
}

/* Checks the key, writes key + type tag + value. */
static int begin_kv(flm_gguf_writer *w, const char *key, gguf_type t, bool *skip) {
    int rc = check_live(w);
    *skip = false;
    if (rc) return rc;
    if (w->header_written)
        return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s' added after tensor data was written", w->path, key);
    size_t len = key ? strlen(key) : 0;
    if (len == 0 || len > 65535)
        return wfail(w, FLM_ERR_ARG, "%s: metadata key must be 1..65535 bytes", w->path);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) {
            /* general.alignment is set by flm_gguf_writer_open; repeating the same value is fine. */
            if (!strcmp(key, "general.alignment") && w->alignment != GGUF_DEFAULT_ALIGNMENT) { *skip = true; return FLM_OK; }
            return wfail(w, FLM_ERR_ARG, "%s: duplicate metadata key '%s'", w->path, key);
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        char **k = flm_realloc(w->keys, cap * sizeof *k);
        if (!k) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory", w->path);
        w->keys = k;
        uint64_t *o = flm_realloc(w->key_off, cap * sizeof *o);
        if (!o) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory", w->path);
        w->key_off = o;
        w->cap_kv = cap;
    }
    if (!(w->keys[w->n_kv] = flm_strdup(key))) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory", w->path);
    w->key_off[w->n_kv] = w->kv.len;
    w->n_kv++;
    put_str(&w->kv, key, len);
    put_u32(&w->kv, (uint32_t)t);
    return FLM_OK;
}

int flm_gguf_writer_add_value(flm_gguf_writer *w, const char *key, const flm_gguf_value *v) {
    bool skip;
    if (!v) return check_live(w) ? check_live(w) : wfail(w, FLM_ERR_ARG, "%s: NULL value", w->path);
    if (key && !strcmp(key, "general.alignment")) {
        int rc = check_live(w);
        if (rc) return rc;
        if (v->type != GGUF_TYPE_UINT32 || v->num.u != w->alignment)
            return wfail(w, FLM_ERR_ARG, "%s: general.alignment must be the u32 %" PRIu32 " given to flm_gguf_writer_open",
                         w->path, w->alignment);
    }
    int rc = begin_kv(w, key, v->type, &skip);
    if (rc || skip) return rc;
    if ((rc = put_value(w, key, v, 0))) return rc;
    if (w->kv.oom) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory for metadata", w->path);
    return FLM_OK;
}

static int add_u(flm_gguf_writer *w, const char *key, gguf_type t, uint64_t u) {
    flm_gguf_value v = {.type = t};
    v.num.u = u;
    return flm_gguf_writer_add_value(w, key, &v);
}
static int add_i(flm_gguf_writer *w, const char *key, gguf_type t, int64_t i) {
    flm_gguf_value v = {.type = t};
    v.num.i = i;
    return flm_gguf_writer_add_value(w, key, &v);
}
static int add_f(flm_gguf_writer *w, const char *key, gguf_type t, double f) {
    flm_gguf_value v = {.type = t};
    v.num.f = f;
    return flm_gguf_writer_add_value(w, key, &v);
}

int flm_gguf_writer_add_u8(flm_gguf_writer *w, const char *key, uint8_t v) { return add_u(w, key, GGUF_TYPE_UINT8, v); }
int flm_gguf_writer_add_u16(flm_gguf_writer *w, const char *key, uint16_t v) { return add_u(w, key, GGUF_TYPE_UINT16, v); }
int flm_gguf_writer_add_u32(flm_gguf_writer *w, const char *key, uint32_t v) { return add_u(w, key, GGUF_TYPE_UINT32, v); }
int flm_gguf_writer_add_u64(flm_gguf_writer *w, const char *key, uint64_t v) { return add_u(w, key, GGUF_TYPE_UINT64, v); }
int flm_gguf_writer_add_i8(flm_gguf_writer *w, const char *key, int8_t v) { return add_i(w, key, GGUF_TYPE_INT8, v); }
int flm_gguf_writer_add_i16(flm_gguf_writer *w, const char *key, int16_t v) { return add_i(w, key, GGUF_TYPE_INT16, v); }
int flm_gguf_writer_add_i32(flm_gguf_writer *w, const char *key, int32_t v) { return add_i(w, key, GGUF_TYPE_INT32, v); }
int flm_gguf_writer_add_i64(flm_gguf_writer *w, const char *key, int64_t v) { return add_i(w, key, GGUF_TYPE_INT64, v); }
int flm_gguf_writer_add_f32(flm_gguf_writer *w, const char *key, float v) { return add_f(w, key, GGUF_TYPE_FLOAT32, v); }
int flm_gguf_writer_add_f64(flm_gguf_writer *w, const char *key, double v) { return add_f(w, key, GGUF_TYPE_FLOAT64, v); }
int flm_gguf_writer_add_bool(flm_gguf_writer *w, const char *key, bool b) {
    flm_gguf_value v = {.type = GGUF_TYPE_BOOL};
    v.num.b = b;
    return flm_gguf_writer_add_value(w, key, &v);
}
int flm_gguf_writer_add_strn(flm_gguf_writer *w, const char *key, const char *s, size_t len) {
    flm_gguf_value v = {.type = GGUF_TYPE_STRING, .s = {s, len}};
    return flm_gguf_writer_add_value(w, key, &v);
}
int flm_gguf_writer_add_str(flm_gguf_writer *w, const char *key, const char *s) {
    return flm_gguf_writer_add_strn(w, key, s, s ? strlen(s) : 0);
}
int flm_gguf_writer_add_array(flm_gguf_writer *w, const char *key, gguf_type elem, const void *data, size_t n) {
    if (!flm_gguf_type_size(elem)) {
        int rc = check_live(w);
        return rc ? rc : wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': flm_gguf_writer_add_array takes fixed-size "
                               "elements, not %s", w->path, key, flm_gguf_type_name(elem));
    }
    flm_gguf_value v = {.type = GGUF_TYPE_ARRAY, .elem_type = elem, .count = n, .data = data};
    return flm_gguf_writer_add_value(w, key, &v);
}

int flm_gguf_writer_add_str_array(flm_gguf_writer *w, const char *key, const char *const *strs, size_t n) {
    bool skip;
    int rc = begin_kv(w, key, GGUF_TYPE_ARRAY, &skip);
    if (rc) return rc;
    if (n && !strs) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': NULL string array", w->path, key);
    put_u32(&w->kv, GGUF_TYPE_STRING);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) {
        if (!strs[i]) return wfail(w, FLM_ERR_ARG, "%s: metadata key '%s': element %zu is NULL", w->path, key, i);
        put_str(&w->kv, strs[i], strlen(strs[i]));
    }
    if (w->kv.oom) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory for metadata", w->path);
    return FLM_OK;
}

/* ------------------------------------------------------------------ tensors */

int flm_gguf_writer_add_tensor(flm_gguf_writer *w, const char *name, flm_dtype dtype, int ndim, const int64_t *shape) {
    int rc = check_live(w);
    if (rc) return rc;
    if (w->header_written)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s declared after tensor data was written", w->path, name ? name : "?");
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > GGUF_MAX_NAME)
        return wfail(w, FLM_ERR_ARG, "%s: tensor name '%s' must be 1..%d bytes, got %zu", w->path, name ? name : "",
                     GGUF_MAX_NAME, len);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return wfail(w, FLM_ERR_ARG, "%s: duplicate tensor name %s", w->path, name);
    int ggml = flm_gguf_ggml_from_dtype(dtype);
    const flm_dtype_info *di = flm_dtype_get(dtype);
    if (ggml < 0 || !di)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s: type %d has no GGUF equivalent", w->path, name, (int)dtype);
    if (ndim < 1 || ndim > GGUF_MAX_DIMS)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s: ndim expected 1..%d, got %d", w->path, name, GGUF_MAX_DIMS, ndim);
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || (uint64_t)shape[d] > (uint64_t)INT64_MAX / numel)
            return wfail(w, FLM_ERR_ARG, "%s: tensor %s: bad dimension %d = %lld", w->path, name, d, (long long)shape[d]);
        numel *= (uint64_t)shape[d];
    }
    if (shape[ndim - 1] % di->block_size)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s: row length %lld is not a multiple of %d, as %s requires",
                     w->path, name, (long long)shape[ndim - 1], di->block_size, di->name);
    size_t nbytes = flm_dtype_bytes(dtype, numel);
    if (!nbytes || nbytes > UINT64_MAX / 4 || w->data_size > UINT64_MAX / 2 - nbytes)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s: size overflows", w->path, name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = flm_realloc(w->tensors, cap * sizeof *t);
        if (!t) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory", w->path);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    if (!(t->name = flm_strdup(name))) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory", w->path);
    t->nbytes = nbytes;
    t->offset = w->data_size;
    w->n_tensors++;
    uint64_t end = t->offset + nbytes;
    w->data_size = end % w->alignment ? end + (w->alignment - end % w->alignment) : end;

    put_str(&w->ti, name, len);
    put_u32(&w->ti, (uint32_t)ndim);
    for (int d = ndim - 1; d >= 0; d--) put_u64(&w->ti, (uint64_t)shape[d]); /* innermost first */
    put_u32(&w->ti, (uint32_t)ggml);
    put_u64(&w->ti, t->offset);
    if (w->ti.oom) return wfail(w, FLM_ERR_NOMEM, "%s: out of memory for tensor infos", w->path);
    return FLM_OK;
}

/* ------------------------------------------------------------------ output */

static int wwrite(flm_gguf_writer *w, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r;
        if (w->fail_after != UINT64_MAX && w->file_pos + chunk > w->fail_after) {
            chunk = (size_t)(w->fail_after > w->file_pos ? w->fail_after - w->file_pos : 0);
            r = chunk ? write(w->out.fd, p, chunk) : (errno = ENOSPC, -1);
        } else {
            r = write(w->out.fd, p, chunk);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            return wfail(w, FLM_ERR_IO, "%s: writing at offset %" PRIu64 ": %s", w->path, w->file_pos,
                         flm_outfile_strerror(errno));
        }
        if (r == 0)
            return wfail(w, FLM_ERR_IO, "%s: writing at offset %" PRIu64 ": no progress", w->path, w->file_pos);
        p += r;
        n -= (size_t)r;
        w->file_pos += (uint64_t)r;
    }
    return FLM_OK;
}

static int wpad(flm_gguf_writer *w) {
    static const char zeros[4096];
    uint64_t rem = w->file_pos % w->alignment;
    return rem ? wwrite(w, zeros, (size_t)(w->alignment - rem)) : FLM_OK;
}

static int write_header(flm_gguf_writer *w) {
    uint8_t h[24];
    uint32_t version = GGUF_VERSION;
    uint64_t nt = w->n_tensors, nkv = w->n_kv;
    memcpy(h, GGUF_MAGIC, 4);
    memcpy(h + 4, &version, 4);
    memcpy(h + 8, &nt, 8);
    memcpy(h + 16, &nkv, 8);
    int rc = wwrite(w, h, sizeof h);
    if (!rc && w->kv.len) rc = wwrite(w, w->kv.data, w->kv.len);
    if (!rc && w->ti.len) rc = wwrite(w, w->ti.data, w->ti.len);
    if (!rc && w->n_tensors) rc = wpad(w);
    if (rc) return rc;
    w->header_written = true;
    /* Metadata is on disk: release it. */
    flm_sb_free(&w->kv);
    flm_sb_free(&w->ti);
    return FLM_OK;
}

int flm_gguf_writer_write_part(flm_gguf_writer *w, const void *data, size_t nbytes) {
    int rc = check_live(w);
    if (rc) return rc;
    if (!w->header_written && (rc = write_header(w))) return rc;
    const char *p = data;
    while (nbytes) {
        if (w->cur >= w->n_tensors)
            return wfail(w, FLM_ERR_ARG, "%s: %zu bytes of tensor data beyond the %zu declared tensors", w->path, nbytes,
                         w->n_tensors);
        wtensor *t = &w->tensors[w->cur];
        uint64_t room = t->nbytes - w->cur_written;
        size_t take = nbytes < room ? nbytes : (size_t)room;
        if ((rc = wwrite(w, p, take))) return rc;
        p += take;
        nbytes -= take;
        w->cur_written += take;
        if (w->cur_written == t->nbytes) {
            if ((rc = wpad(w))) return rc;
            w->cur++;
            w->cur_written = 0;
        }
    }
    return FLM_OK;
}

int flm_gguf_writer_write_tensor(flm_gguf_writer *w, const char *name, const void *data, size_t nbytes) {
    int rc = check_live(w);
    if (rc) return rc;
    if (w->cur >= w->n_tensors)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s written, but all %zu declared tensors are already written", w->path,
                     name, w->n_tensors);
    wtensor *t = &w->tensors[w->cur];
    if (strcmp(t->name, name) || w->cur_written)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s written out of order: expected %s next", w->path, name, t->name);
    if (nbytes != t->nbytes)
        return wfail(w, FLM_ERR_ARG, "%s: tensor %s: expected %" PRIu64 " bytes of data, got %zu", w->path, name,
                     t->nbytes, nbytes);
    return flm_gguf_writer_write_part(w, data, nbytes);
}

/* ------------------------------------------------------------------ late values */

#define HEADER_FIXED 24 /* magic, version, tensor count, KV count: kv starts here in the file */

/* n bytes of the serialised metadata at kv offset `at`: from memory before the
 * header is written, from the temporary file after. */
static int kv_read(flm_gguf_writer *w, uint64_t at, void *buf, size_t n) {
    if (!w->header_written) {
        if (at > w->kv.len || n > w->kv.len - at) return wfail(w, FLM_ERR_ARG, "%s: metadata read past its end", w->path);
        memcpy(buf, w->kv.data + at, n);
        return FLM_OK;
    }
    for (char *p = buf; n;) {
        ssize_t r = pread(w->out.fd, p, n, (off_t)(HEADER_FIXED + at));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return wfail(w, FLM_ERR_IO, "%s: reading back the header: %s", w->path, r < 0 ? strerror(errno) : "end of file");
        p += r;
        n -= (size_t)r;
        at += (uint64_t)r;
    }
    return FLM_OK;
}

static int kv_write(flm_gguf_writer *w, uint64_t at, const char *s, size_t n) {
    if (!w->header_written) {
        memcpy(w->kv.data + at, s, n);
        return FLM_OK;
    }
    while (n) {
        ssize_t r = pwrite(w->out.fd, s, n, (off_t)(HEADER_FIXED + at));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return wfail(w, FLM_ERR_IO, "%s: rewriting the header: %s", w->path, r < 0 ? flm_outfile_strerror(errno) : "no progress");
        s += r;
        n -= (size_t)r;
        at += (uint64_t)r;
    }
    return FLM_OK;
}

int flm_gguf_writer_replace_str(flm_gguf_writer *w, const char *key, size_t index, const char *s) {
    int rc = check_live(w);
    if (rc) return rc;
    size_t k = 0;
    while (key && k < w->n_kv && strcmp(w->keys[k], key)) k++;
    if (!key || !s || k == w->n_kv) return wfail(w, FLM_ERR_ARG, "%s: replace: no metadata key '%s'", w->path, key ? key : "(null)");
    uint64_t at = w->key_off[k] + 8 + strlen(key), n, len;
    uint32_t type, elem = 0;
    if ((rc = kv_read(w, at, &type, 4)) || (type == GGUF_TYPE_ARRAY && (rc = kv_read(w, at + 4, &elem, 4)))) return rc;
    if (type != GGUF_TYPE_ARRAY || elem != GGUF_TYPE_STRING)
        return wfail(w, FLM_ERR_ARG, "%s: replace: metadata key '%s' is not a string array", w->path, key);
    if ((rc = kv_read(w, at + 8, &n, 8))) return rc;
    if (index >= n)
        return wfail(w, FLM_ERR_ARG, "%s: replace: '%s' has %" PRIu64 " elements, not %zu", w->path, key, n, index + 1);
    at += 16;
    for (size_t i = 0;; i++) {
        if ((rc = kv_read(w, at, &len, 8))) return rc;
        if (i == index) break;
        at += 8 + len;
    }
    if (strlen(s) != len)
        return wfail(w, FLM_ERR_ARG, "%s: replace: '%s'[%zu] is %" PRIu64 " bytes, the new value %zu", w->path, key, index, len,
                     strlen(s));
    return kv_write(w, at + 8, s, (size_t)len);
}

uint64_t flm_gguf_writer_bytes(const flm_gguf_writer *w) { return w ? w->file_pos : 0; }

static void writer_free(flm_gguf_writer *w) {
    flm_outfile_abort(&w->out); /* no-op once committed */
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->key_off);
    free(w->tensors);
    flm_sb_free(&w->kv);
    flm_sb_free(&w->ti);
    free(w->path);
    free(w);
}

void flm_gguf_writer_abort(flm_gguf_writer *w) {
    if (w) writer_free(w);
}

int flm_gguf_writer_finish(flm_gguf_writer *w) {
    int rc = check_live(w);
    if (!w) return rc;
    if (!rc && !w->header_written) rc = write_header(w);
    if (!rc && w->cur < w->n_tensors)
        rc = wfail(w, FLM_ERR_ARG, "%s: tensor %s (%zu of %zu) was never written", w->path, w->tensors[w->cur].name,
                   w->cur + 1, w->n_tensors);
    if (!rc) rc = flm_outfile_commit(&w->out); /* fsync, rename, fsync the folder; removes the temp on failure */
    writer_free(w);
    return rc;
}
