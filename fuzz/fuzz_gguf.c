/* fuzz_gguf.c — libFuzzer target: arbitrary bytes as a GGUF file. Whatever is
 * accepted must describe metadata and tensors that lie inside the buffer; every
 * value is walked (nested arrays included) and every tensor byte is read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_sink;

static void walk(const flm_gguf_value *v, int depth) {
    if (depth > GGUF_MAX_ARRAY_DEPTH + 1) abort();
    if (v->type == GGUF_TYPE_STRING) {
        if (v->s.str[v->s.len] != 0) abort(); /* a NUL-terminated copy */
        for (uint64_t i = 0; i < v->s.len; i++) g_sink += (unsigned char)v->s.str[i];
        return;
    }
    if (v->type != GGUF_TYPE_ARRAY) return;
    for (uint64_t i = 0; i < v->count; i++) {
        int64_t iv;
        double dv;
        const char *s;
        uint64_t len;
        if (v->elem_type == GGUF_TYPE_STRING) {
            if (flm_gguf_array_str(v, i, &s, &len) || s[len] != 0) abort();
            g_sink += (unsigned)len;
        } else if (v->elem_type == GGUF_TYPE_ARRAY) {
            walk(&v->items[i], depth + 1);
        } else if (v->elem_type != GGUF_TYPE_BOOL) {
            if (flm_gguf_array_f64(v, i, &dv)) abort();
            (void)flm_gguf_array_i64(v, i, &iv);
        } else {
            g_sink += ((const uint8_t *)v->data)[i];
        }
    }
    int64_t iv;
    if (flm_gguf_array_i64(v, v->count, &iv) == 0) abort(); /* one past the end must fail */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    flm_gguf_file *f;
    if (flm_gguf_open_memory(data, size, "fuzz", &f) != 0) return 0;
    for (size_t i = 0; i < flm_gguf_kv_count(f); i++) {
        const flm_gguf_kv *kv = flm_gguf_kv_at(f, i);
        if (flm_gguf_find(f, kv->key) != &kv->value) abort(); /* keys are unique */
        walk(&kv->value, 0);
        uint32_t u;
        float x;
        const char *s;
        (void)flm_gguf_get_u32(f, kv->key, &u);
        (void)flm_gguf_get_f32(f, kv->key, &x);
        (void)flm_gguf_get_str(f, kv->key, &s);
    }
    for (size_t i = 0; i < flm_gguf_tensor_count(f); i++) {
        const flm_gguf_tensor_info *t = flm_gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        if (flm_gguf_tensor_find(f, t->name) != t) abort();
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) abort();
        if (t->nbytes && (p < data || t->nbytes > size || p + t->nbytes > data + size)) abort();
        if ((flm_gguf_data_offset(f) + t->offset) % flm_gguf_alignment(f)) abort();
        for (uint64_t j = 0; j < t->nbytes; j++) g_sink += p[j]; /* ASan catches any byte out of range */
        flm_tensor ft;
        if (flm_gguf_tensor_view(f, t, &ft) == 0 && ft.nbytes != t->nbytes) abort();
    }
    flm_gguf_close(f);
    return 0;
}
