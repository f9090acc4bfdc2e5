/* safetensors_write.c — streaming safetensors writer (atomic: a temporary file
 * unique to the writer, fsync, rename; src/base/outfile.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/outfile.h"
#include "format/safetensors.h"

typedef struct {
    char *name;
    flm_dtype dtype;
    int ndim;
    int64_t shape[FLM_MAX_DIMS];
    size_t nbytes;
} st_decl;

struct flm_st_writer {
    char *path;
    flm_outfile out;
    st_decl *decls;
    size_t n, cap;
    size_t expected, written; /* data bytes */
};

static const char *st_dtype_name(flm_dtype t) {
    switch (t) {
    case FLM_F32: return "F32";
    case FLM_F16: return "F16";
    case FLM_BF16: return "BF16";
    case FLM_I32: return "I32";
    case FLM_I64: return "I64";
    case FLM_I8: return "I8";
    case FLM_U8: return "U8";
    case FLM_BOOL: return "BOOL";
    case FLM_F64: return "F64";
    default: return NULL;
    }
}

int flm_st_writer_open(const char *path, flm_st_writer **out) {
    *out = NULL;
    flm_st_writer *w = flm_calloc(1, sizeof *w);
    if (!w) return FLM_ERR_NOMEM;
    int rc = (w->path = flm_strdup(path)) ? flm_outfile_open(path, &w->out) : FLM_ERR_NOMEM;
    if (rc) { free(w->path); free(w); return rc; }
    *out = w;
    return FLM_OK;
}

int flm_st_writer_declare(flm_st_writer *w, const char *name, flm_dtype dtype, int ndim, const int64_t *shape) {
    if (!st_dtype_name(dtype)) return flm_fail(FLM_ERR_ARG, "%s: safetensors cannot hold type %s", w->path, flm_dtype_get(dtype)->name);
    if (ndim < 0 || ndim > FLM_MAX_DIMS) return flm_fail(FLM_ERR_ARG, "%s: tensor %s: bad rank", w->path, name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        st_decl *d = flm_realloc(w->decls, cap * sizeof *d);
        if (!d) return FLM_ERR_NOMEM;
        w->decls = d;
        w->cap = cap;
    }
    st_decl *d = &w->decls[w->n];
    memset(d, 0, sizeof *d);
    d->name = flm_strdup(name);
    if (!d->name) return FLM_ERR_NOMEM;
    d->dtype = dtype;
    d->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) { d->shape[i] = shape[i]; numel *= (uint64_t)shape[i]; }
    d->nbytes = flm_dtype_bytes(dtype, numel);
    w->n++;
    return FLM_OK;
}

static int write_all(flm_st_writer *w, const void *p, size_t n) { return flm_outfile_write(&w->out, p, n); }

int flm_st_writer_begin_data(flm_st_writer *w) {
    strbuf h;
    flm_sb_init(&h);
    flm_sb_puts(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        st_decl *d = &w->decls[i];
        flm_sb_putc(&h, ',');
        flm_sb_json_string(&h, d->name, strlen(d->name), false);
        flm_sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(d->dtype));
        for (int k = 0; k < d->ndim; k++) flm_sb_printf(&h, "%s%lld", k ? "," : "", (long long)d->shape[k]);
        flm_sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + d->nbytes);
        off += d->nbytes;
    }
    flm_sb_putc(&h, '}');
    while ((8 + h.len) % 8) flm_sb_putc(&h, ' '); /* keep the data 8-byte aligned, as safetensors recommends */
    if (h.oom) { flm_sb_free(&h); return FLM_ERR_NOMEM; }
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    int rc = write_all(w, le, 8);
    if (!rc) rc = write_all(w, h.data, h.len);
    flm_sb_free(&h);
    w->expected = off;
    return rc;
}

int flm_st_writer_write(flm_st_writer *w, const void *data, size_t n) {
    if (w->written + n > w->expected) return flm_fail(FLM_ERR_ARG, "%s: more tensor data than declared", w->path);
    int rc = write_all(w, data, n);
    if (!rc) w->written += n;
    return rc;
}

static void free_writer(flm_st_writer *w) {
    flm_outfile_abort(&w->out); /* no-op once committed */
    for (size_t i = 0; i < w->n; i++) free(w->decls[i].name);
    free(w->decls);
    free(w->path);
    free(w);
}

int flm_st_writer_finish(flm_st_writer *w) {
    int rc = FLM_OK;
    if (w->written != w->expected) rc = flm_fail(FLM_ERR_ARG, "%s: %zu of %zu data bytes written", w->path, w->written, w->expected);
    if (!rc) rc = flm_outfile_commit(&w->out); /* removes the temporary file on failure */
    free_writer(w);
    return rc;
}

void flm_st_writer_abort(flm_st_writer *w) {
    if (w) free_writer(w);
}
