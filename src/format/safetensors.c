/* safetensors.c — validated, zero-copy safetensors reader. */
#include "format/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "base/mapfile.h"

/* A header larger than this is refused (the format's own reference limit is 100 MB). */
#define ST_MAX_HEADER (100u * 1024 * 1024)

struct flm_st_file {
    char *path;
    flm_map map;          /* empty when opened from memory */
    const unsigned char *data;
    size_t size;
    flm_json_doc *header;
    flm_tensor *tensors;
    size_t n;
};

static int cmp_offset(const void *a, const void *b) {
    const flm_tensor *x = *(const flm_tensor *const *)a, *y = *(const flm_tensor *const *)b;
    const unsigned char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

static int parse(flm_st_file *f) {
    const char *what = f->path;
    if (f->size < 8) return flm_fail(FLM_ERR_FORMAT, "%s: truncated safetensors file (%zu bytes, header length needs 8)", what, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->data[i];
    if (hlen > ST_MAX_HEADER) return flm_fail(FLM_ERR_FORMAT, "%s: safetensors header length %llu is too large (limit %u)", what, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return flm_fail(FLM_ERR_FORMAT, "%s: safetensors header length %llu exceeds the file size %zu (truncated download?)", what, (unsigned long long)hlen, f->size);
    f->header = flm_json_parse((const char *)f->data + 8, (size_t)hlen, what);
    if (!f->header) return FLM_ERR_FORMAT;
    const flm_json *root = flm_json_root(f->header);
    if (root->type != JSON_OBJECT) return flm_fail(FLM_ERR_FORMAT, "%s: safetensors header is not a JSON object", what);
    const unsigned char *base = f->data + 8 + hlen;
    size_t data_size = f->size - 8 - (size_t)hlen;
    f->tensors = flm_calloc(root->len, sizeof *f->tensors);
    if (!f->tensors) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < root->len; i++) {
        const flm_json *e = &root->items[i];
        if (!strcmp(e->key, "__metadata__")) {
            if (e->type != JSON_OBJECT) return flm_fail(FLM_ERR_FORMAT, "%s: __metadata__ is not an object", what);
            continue;
        }
        const char *name = e->key;
        if (e->type != JSON_OBJECT) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: entry is not an object", what, name);
        const char *dt = flm_json_string(flm_json_get(e, "dtype"), NULL);
        const flm_json *shape = flm_json_get(e, "shape"), *offs = flm_json_get(e, "data_offsets");
        if (!dt) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: missing dtype", what, name);
        int dtype = flm_dtype_from_safetensors(dt);
        if (dtype < 0) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s: unsupported dtype %s", what, name, dt);
        if (!shape || shape->type != JSON_ARRAY) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: missing shape", what, name);
        if (shape->len > FLM_MAX_DIMS) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s: %zu dimensions (at most %d supported)", what, name, shape->len, FLM_MAX_DIMS);
        if (!offs || offs->type != JSON_ARRAY || offs->len != 2) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: data_offsets must be [begin, end]", what, name);
        flm_tensor *t = &f->tensors[f->n];
        t->name = name;
        t->dtype = (flm_dtype)dtype;
        t->ndim = (int)shape->len;
        uint64_t numel = 1;
        for (size_t d = 0; d < shape->len; d++) {
            const flm_json *s = &shape->items[d];
            if (s->type != JSON_NUMBER || !s->is_int || s->number < 0 || s->number > 9.0e15)
                return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: bad shape entry", what, name);
            t->shape[d] = (int64_t)s->number;
            if (t->shape[d] && numel > UINT64_MAX / (uint64_t)t->shape[d]) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: shape overflows", what, name);
            numel *= (uint64_t)t->shape[d];
        }
        const flm_json *b = &offs->items[0], *en = &offs->items[1];
        if (b->type != JSON_NUMBER || en->type != JSON_NUMBER || !b->is_int || !en->is_int || b->number < 0 || en->number < b->number || en->number > 9.0e15)
            return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: bad data_offsets", what, name);
        uint64_t begin = (uint64_t)b->number, end = (uint64_t)en->number;
        if (end > data_size)
            return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] run past the end of the data (%zu bytes; truncated file?)", what, name,
                            (unsigned long long)begin, (unsigned long long)end, data_size);
        size_t expect = flm_dtype_bytes(t->dtype, numel);
        if ((expect == 0 && numel != 0) || expect != end - begin) {
            char sb[96];
            return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s: shape %s of %s needs %zu bytes, data_offsets give %llu", what, name,
                            flm_shape_str(t->shape, t->ndim, sb, sizeof sb), dt, expect, (unsigned long long)(end - begin));
        }
        t->data = base + begin;
        t->nbytes = (size_t)(end - begin);
        f->n++;
    }
    /* overlapping tensors would alias each other's data */
    if (f->n > 1) {
        const flm_tensor **order = flm_malloc(f->n * sizeof *order);
        if (!order) return FLM_ERR_NOMEM;
        for (size_t i = 0; i < f->n; i++) order[i] = &f->tensors[i];
        qsort(order, f->n, sizeof *order, cmp_offset);
        for (size_t i = 1; i < f->n; i++) {
            const unsigned char *prev_end = (const unsigned char *)order[i - 1]->data + order[i - 1]->nbytes;
            if ((const unsigned char *)order[i]->data < prev_end && order[i]->nbytes && order[i - 1]->nbytes) {
                int r = flm_fail(FLM_ERR_FORMAT, "%s: tensors %s and %s overlap", what, order[i - 1]->name, order[i]->name);
                free(order);
                return r;
            }
        }
        free(order);
    }
    return FLM_OK;
}

static int finish_open(flm_st_file *f, flm_st_file **out) {
    int r = parse(f);
    if (r != FLM_OK) { flm_st_close(f); return r; }
    *out = f;
    return FLM_OK;
}

int flm_st_open(const char *path, flm_st_file **out) {
    *out = NULL;
    flm_st_file *f = flm_calloc(1, sizeof *f);
    if (!f) return FLM_ERR_NOMEM;
    f->path = flm_strdup(path);
    if (!f->path) { free(f); return FLM_ERR_NOMEM; }
    int r = flm_map_open(path, &f->map);
    if (r != FLM_OK) { flm_st_close(f); return r; }
    f->data = f->map.data;
    f->size = f->map.size;
    return finish_open(f, out);
}

int flm_st_open_memory(const void *data, size_t size, const char *what, flm_st_file **out) {
    *out = NULL;
    flm_st_file *f = flm_calloc(1, sizeof *f);
    if (!f) return FLM_ERR_NOMEM;
    f->path = flm_strdup(what ? what : "(memory)");
    if (!f->path) { free(f); return FLM_ERR_NOMEM; }
    f->data = data;
    f->size = size;
    return finish_open(f, out);
}

void flm_st_close(flm_st_file *f) {
    if (!f) return;
    flm_map_close(&f->map);
    flm_json_free(f->header);
    free(f->tensors);
    free(f->path);
    free(f);
}

const char *flm_st_path(const flm_st_file *f) { return f->path; }
size_t flm_st_count(const flm_st_file *f) { return f->n; }
const flm_tensor *flm_st_tensor_at(const flm_st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const flm_tensor *flm_st_find(const flm_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *flm_st_metadata(const flm_st_file *f, const char *key) {
    return flm_json_string(flm_json_get(flm_json_get(flm_json_root(f->header), "__metadata__"), key), NULL);
}

size_t flm_st_size(const flm_st_file *f) { return f->size; }
uint64_t flm_st_offset(const flm_st_file *f, const void *p) { return (uint64_t)((const unsigned char *)p - f->data); }

bool flm_st_contains(const flm_st_file *f, const void *p) {
    const unsigned char *c = p;
    return f->data && c >= f->data && c < f->data + f->size;
}
