/* flatbuf.c — FlatBuffers builder (back to front) and bounds-checked reader. */
#include "format/flatbuf.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

void flm_fb_init(flm_fb_builder *b) { memset(b, 0, sizeof *b); b->minalign = 1; }

void flm_fb_free(flm_fb_builder *b) {
    free(b->buf);
    memset(b, 0, sizeof *b);
}

/* Room for `need` more bytes in front of the data. */
static bool grow(flm_fb_builder *b, size_t need) {
    if (b->failed) return false;
    if (b->cap - b->size >= need) return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->size < need) {
        if (cap > SIZE_MAX / 2 || cap >= (size_t)1 << 31) { b->failed = true; return false; } /* flatbuffers stop at 2 GiB */
        cap *= 2;
    }
    unsigned char *nb = malloc(cap);
    if (!nb) { b->failed = true; return false; }
    memset(nb, 0, cap - b->size);
    if (b->size) memcpy(nb + cap - b->size, b->buf + b->cap - b->size, b->size);
    free(b->buf);
    b->buf = nb;
    b->cap = cap;
    return true;
}

static void push(flm_fb_builder *b, const void *p, size_t n) {
    if (!grow(b, n)) return;
    b->size += n;
    if (p) memcpy(b->buf + b->cap - b->size, p, n);
    else memset(b->buf + b->cap - b->size, 0, n);
}

/* Pads so that after `extra` more bytes the size is a multiple of align. */
static void prep(flm_fb_builder *b, size_t align, size_t extra) {
    if (align > b->minalign) b->minalign = align;
    size_t pad = (align - ((b->size + extra) & (align - 1))) & (align - 1);
    if (pad) push(b, NULL, pad);
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

static flm_fb_ref cur(const flm_fb_builder *b) { return b->failed ? 0 : (flm_fb_ref)b->size; }

flm_fb_ref flm_fb_string(flm_fb_builder *b, const char *s, size_t len) {
    if (b->in_table) { b->failed = true; return 0; }
    prep(b, 4, len + 1);
    push(b, NULL, 1);
    push(b, s, len);
    uint32_t n = (uint32_t)len;
    push(b, &n, 4);
    return cur(b);
}

flm_fb_ref flm_fb_cstring(flm_fb_builder *b, const char *s) { return flm_fb_string(b, s, strlen(s)); }

flm_fb_ref flm_fb_vector(flm_fb_builder *b, const void *data, size_t n, size_t elem, size_t align) {
    if (b->in_table || n > UINT32_MAX) { b->failed = true; return 0; }
    if (align < elem) align = elem;
    prep(b, 4, n * elem);
    prep(b, align, n * elem);
    push(b, data, n * elem);
    uint32_t c = (uint32_t)n;
    push(b, &c, 4);
    return cur(b);
}

flm_fb_ref flm_fb_vector_refs(flm_fb_builder *b, const flm_fb_ref *refs, size_t n) {
    if (b->in_table || n > UINT32_MAX) { b->failed = true; return 0; }
    prep(b, 4, n * 4);
    for (size_t i = n; i-- > 0;) {
        uint32_t v = (uint32_t)(b->size + 4 - refs[i]);
        push(b, &v, 4);
    }
    uint32_t c = (uint32_t)n;
    push(b, &c, 4);
    return cur(b);
}

void flm_fb_table_start(flm_fb_builder *b) {
    if (b->in_table) b->failed = true;
    b->in_table = true;
    b->table_start = b->size;
    b->nslots = 0;
    memset(b->slot_at, 0, sizeof b->slot_at);
}

static void add_scalar(flm_fb_builder *b, int slot, const void *v, size_t n) {
    if (!b->in_table || slot < 0 || slot >= FLM_FB_MAX_SLOTS) { b->failed = true; return; }
    prep(b, n, 0);
    push(b, v, n);
    b->slot_at[slot] = (uint32_t)b->size;
    if (slot + 1 > b->nslots) b->nslots = slot + 1;
}

void flm_fb_add_u8(flm_fb_builder *b, int slot, uint8_t v, uint8_t def, bool force) {
    if (force || v != def) add_scalar(b, slot, &v, 1);
}
void flm_fb_add_i32(flm_fb_builder *b, int slot, int32_t v, int32_t def, bool force) {
    if (force || v != def) add_scalar(b, slot, &v, 4);
}
void flm_fb_add_u32(flm_fb_builder *b, int slot, uint32_t v, uint32_t def, bool force) {
    if (force || v != def) add_scalar(b, slot, &v, 4);
}
void flm_fb_add_u64(flm_fb_builder *b, int slot, uint64_t v, uint64_t def, bool force) {
    if (force || v != def) add_scalar(b, slot, &v, 8);
}
void flm_fb_add_f32(flm_fb_builder *b, int slot, float v, float def, bool force) {
    if (force || memcmp(&v, &def, 4) != 0) add_scalar(b, slot, &v, 4);
}

void flm_fb_add_ref(flm_fb_builder *b, int slot, flm_fb_ref ref) {
    if (!ref) return;
    if (!b->in_table || slot < 0 || slot >= FLM_FB_MAX_SLOTS) { b->failed = true; return; }
    prep(b, 4, 0);
    uint32_t v = (uint32_t)(b->size + 4 - ref);
    push(b, &v, 4);
    b->slot_at[slot] = (uint32_t)b->size;
    if (slot + 1 > b->nslots) b->nslots = slot + 1;
}

flm_fb_ref flm_fb_table_end(flm_fb_builder *b) {
    if (!b->in_table) { b->failed = true; return 0; }
    prep(b, 4, 0);
    push(b, NULL, 4); /* soffset to the vtable, filled below */
    size_t obj = b->size;
    size_t obj_size = obj - b->table_start;
    if (obj_size > 0xffff) b->failed = true;
    for (int i = b->nslots; i-- > 0;) {
        uint16_t fo = b->slot_at[i] ? (uint16_t)(obj - b->slot_at[i]) : 0;
        push(b, &fo, 2);
    }
    uint16_t osz = (uint16_t)obj_size, vsz = (uint16_t)(4 + 2 * b->nslots);
    push(b, &osz, 2);
    push(b, &vsz, 2);
    b->in_table = false;
    if (b->failed) return 0;
    int32_t so = (int32_t)(b->size - obj);
    memcpy(b->buf + b->cap - obj, &so, 4);
    return (flm_fb_ref)obj;
}

int flm_fb_finish(flm_fb_builder *b, flm_fb_ref root, const char *ident, const unsigned char **data, size_t *len) {
    if (b->in_table || !root) b->failed = true;
    size_t align = b->minalign < 8 ? 8 : b->minalign;
    prep(b, align, ident ? 8 : 4);
    if (ident) push(b, ident, 4);
    prep(b, 4, 4);
    uint32_t v = (uint32_t)(b->size + 4 - root);
    push(b, &v, 4);
    if (b->failed) return flm_fail(FLM_ERR_NOMEM, "flatbuffer: out of memory or too large (2 GiB limit)");
    (void)put_u32;
    *data = b->buf + b->cap - b->size;
    *len = b->size;
    return FLM_OK;
}

/* ---- reader ---- */

static bool in(flm_fb_reader *r, size_t pos, size_t n, size_t align) {
    if (pos > r->len || n > r->len - pos || (align > 1 && (pos & (align - 1)))) { r->bad = true; return false; }
    return true;
}

static uint32_t rd_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static flm_fb_table table_at(flm_fb_reader *r, size_t pos) {
    flm_fb_table t = {0, 0, 0};
    if (!pos || !in(r, pos, 4, 4)) return t;
    int32_t so;
    memcpy(&so, r->buf + pos, 4);
    int64_t vt = (int64_t)pos - so;
    if (vt < 0 || !in(r, (size_t)vt, 4, 2)) return t;
    uint16_t vl = rd_u16(r->buf + vt);
    if (vl < 4 || (vl & 1) || !in(r, (size_t)vt, vl, 2)) { r->bad = true; return t; }
    t.pos = pos;
    t.vt = (size_t)vt;
    t.vt_len = vl;
    return t;
}

flm_fb_table flm_fb_root(flm_fb_reader *r, const char *ident) {
    flm_fb_table none = {0, 0, 0};
    if (!in(r, 0, ident ? 8 : 4, 1)) return none;
    if (ident && memcmp(r->buf + 4, ident, 4) != 0) { r->bad = true; return none; }
    return table_at(r, rd_u32(r->buf));
}

/* Absolute position of a field of n bytes; 0 if absent. */
static size_t field(flm_fb_reader *r, flm_fb_table t, int slot, size_t n) {
    if (!t.pos || slot < 0 || (size_t)4 + 2 * (size_t)slot + 2 > t.vt_len) return 0;
    uint16_t fo = rd_u16(r->buf + t.vt + 4 + 2 * (size_t)slot);
    if (!fo) return 0;
    size_t p = t.pos + fo;
    if (!in(r, p, n, n)) return 0;
    return p;
}

/* Target of an offset field at absolute position p. */
static size_t deref(flm_fb_reader *r, size_t p) {
    if (!p) return 0;
    uint64_t tgt = (uint64_t)p + rd_u32(r->buf + p);
    if (tgt >= r->len) { r->bad = true; return 0; }
    return (size_t)tgt;
}

bool flm_fb_has(flm_fb_reader *r, flm_fb_table t, int slot) { return field(r, t, slot, 1) != 0; }

uint8_t flm_fb_get_u8(flm_fb_reader *r, flm_fb_table t, int slot, uint8_t def) {
    size_t p = field(r, t, slot, 1);
    return p ? r->buf[p] : def;
}
int32_t flm_fb_get_i32(flm_fb_reader *r, flm_fb_table t, int slot, int32_t def) {
    size_t p = field(r, t, slot, 4);
    return p ? (int32_t)rd_u32(r->buf + p) : def;
}
uint32_t flm_fb_get_u32(flm_fb_reader *r, flm_fb_table t, int slot, uint32_t def) {
    size_t p = field(r, t, slot, 4);
    return p ? rd_u32(r->buf + p) : def;
}
uint64_t flm_fb_get_u64(flm_fb_reader *r, flm_fb_table t, int slot, uint64_t def) {
    size_t p = field(r, t, slot, 8);
    if (!p) return def;
    uint64_t v;
    memcpy(&v, r->buf + p, 8);
    return v;
}
float flm_fb_get_f32(flm_fb_reader *r, flm_fb_table t, int slot, float def) {
    size_t p = field(r, t, slot, 4);
    if (!p) return def;
    float v;
    memcpy(&v, r->buf + p, 4);
    return v;
}

flm_fb_table flm_fb_get_table(flm_fb_reader *r, flm_fb_table t, int slot) { return table_at(r, deref(r, field(r, t, slot, 4))); }

static const char *string_at(flm_fb_reader *r, size_t p, uint32_t *len) {
    if (!p || !in(r, p, 4, 4)) return NULL;
    uint32_t n = rd_u32(r->buf + p);
    if (!in(r, p + 4, (size_t)n + 1, 1)) return NULL;
    if (len) *len = n;
    return (const char *)r->buf + p + 4;
}

const char *flm_fb_get_string(flm_fb_reader *r, flm_fb_table t, int slot, uint32_t *len) {
    return string_at(r, deref(r, field(r, t, slot, 4)), len);
}

flm_fb_vec flm_fb_get_vector(flm_fb_reader *r, flm_fb_table t, int slot, size_t elem) {
    flm_fb_vec v = {0, 0};
    size_t p = deref(r, field(r, t, slot, 4));
    if (!p || !in(r, p, 4, 4)) return v;
    uint32_t n = rd_u32(r->buf + p);
    if ((uint64_t)n * elem > r->len || !in(r, p + 4, (size_t)n * elem, elem > 4 ? 4 : elem)) return v;
    v.pos = p + 4;
    v.n = n;
    return v;
}

flm_fb_table flm_fb_vec_table(flm_fb_reader *r, flm_fb_vec v, uint32_t i) {
    flm_fb_table none = {0, 0, 0};
    if (i >= v.n) { r->bad = true; return none; }
    return table_at(r, deref(r, v.pos + 4 * (size_t)i));
}

const char *flm_fb_vec_string(flm_fb_reader *r, flm_fb_vec v, uint32_t i, uint32_t *len) {
    if (i >= v.n) { r->bad = true; return NULL; }
    return string_at(r, deref(r, v.pos + 4 * (size_t)i), len);
}

int32_t flm_fb_vec_i32(flm_fb_reader *r, flm_fb_vec v, uint32_t i) {
    if (i >= v.n) { r->bad = true; return 0; }
    return (int32_t)rd_u32(r->buf + v.pos + 4 * (size_t)i);
}

int64_t flm_fb_vec_i64(flm_fb_reader *r, flm_fb_vec v, uint32_t i) {
    if (i >= v.n) { r->bad = true; return 0; }
    int64_t x;
    memcpy(&x, r->buf + v.pos + 8 * (size_t)i, 8);
    return x;
}

float flm_fb_vec_f32(flm_fb_reader *r, flm_fb_vec v, uint32_t i) {
    if (i >= v.n) { r->bad = true; return 0; }
    float x;
    memcpy(&x, r->buf + v.pos + 4 * (size_t)i, 4);
    return x;
}

const unsigned char *flm_fb_get_indirect(flm_fb_reader *r, flm_fb_table t, int slot, size_t size) {
    size_t p = deref(r, field(r, t, slot, 4));
    if (!p || !in(r, p, size, 1)) return NULL;
    return r->buf + p;
}
