/* flatbuf.h — a small FlatBuffers builder and a bounds-checked reader, enough for
 * the TFLite model schema and the LiteRT-LM header (no schema compiler, no
 * generated code: callers name the vtable slots of the schema they follow).
 *
 * Builder: built back to front, as the FlatBuffers wire format expects children
 * before parents. Offsets returned by the builder (flm_fb_ref) count from the end
 * of the buffer and stay valid while it grows. A table is built between
 * flm_fb_table_start() and flm_fb_table_end(); its fields are added in any order
 * by slot (a union field takes two slots: its type byte, then its value). Scalars
 * equal to the schema's default may be skipped, but `force` writes them anyway
 * (so a rebuilt buffer keeps its size). Errors (out of memory, a field outside a
 * table) are sticky: flm_fb_finish() reports them.
 *
 * Reader: every access checks bounds and alignment against the buffer; a bad
 * offset yields "absent" (0 / NULL / empty), and flm_fb_reader.bad is set, so a
 * reader of hostile input never reads outside it. */
#ifndef FLM_FLATBUF_H
#define FLM_FLATBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint32_t flm_fb_ref; /* distance from the end of the buffer; 0: none */

#define FLM_FB_MAX_SLOTS 64

typedef struct {
    unsigned char *buf; /* data lives in buf[cap - size, cap) */
    size_t cap, size;
    size_t minalign;
    bool failed;
    /* the open table */
    bool in_table;
    size_t table_start;
    int nslots;
    uint32_t slot_at[FLM_FB_MAX_SLOTS]; /* size after the field was pushed; 0: absent */
} flm_fb_builder;

void flm_fb_init(flm_fb_builder *b);
void flm_fb_free(flm_fb_builder *b);

flm_fb_ref flm_fb_string(flm_fb_builder *b, const char *s, size_t len);
flm_fb_ref flm_fb_cstring(flm_fb_builder *b, const char *s);
/* A vector of n scalars of elem bytes each (little-endian host data), data aligned
 * to max(elem, align). */
flm_fb_ref flm_fb_vector(flm_fb_builder *b, const void *data, size_t n, size_t elem, size_t align);
/* A vector of n offsets (tables or strings). */
flm_fb_ref flm_fb_vector_refs(flm_fb_builder *b, const flm_fb_ref *refs, size_t n);

void flm_fb_table_start(flm_fb_builder *b);
void flm_fb_add_u8(flm_fb_builder *b, int slot, uint8_t v, uint8_t def, bool force);
void flm_fb_add_i32(flm_fb_builder *b, int slot, int32_t v, int32_t def, bool force);
void flm_fb_add_u32(flm_fb_builder *b, int slot, uint32_t v, uint32_t def, bool force);
void flm_fb_add_u64(flm_fb_builder *b, int slot, uint64_t v, uint64_t def, bool force);
void flm_fb_add_f32(flm_fb_builder *b, int slot, float v, float def, bool force);
void flm_fb_add_ref(flm_fb_builder *b, int slot, flm_fb_ref ref); /* ref 0: absent */
flm_fb_ref flm_fb_table_end(flm_fb_builder *b);

/* Finishes with root table `root` and a 4-character file identifier (NULL: none).
 * The buffer is *data, *len bytes (owned by the builder). FLM_ERR_NOMEM or
 * FLM_ERR_ARG on an earlier error. */
int flm_fb_finish(flm_fb_builder *b, flm_fb_ref root, const char *ident, const unsigned char **data, size_t *len);

/* ---- reader ---- */
typedef struct {
    const unsigned char *buf;
    size_t len;
    bool bad; /* set when any access was out of bounds or misaligned */
} flm_fb_reader;

typedef struct {
    size_t pos; /* absolute position of the table; 0: absent */
    size_t vt;  /* its vtable */
    uint16_t vt_len;
} flm_fb_table;

typedef struct {
    size_t pos; /* first element; 0 with n = 0 when absent */
    uint32_t n;
} flm_fb_vec;

/* The root table (after checking the identifier when ident is not NULL). */
flm_fb_table flm_fb_root(flm_fb_reader *r, const char *ident);
bool flm_fb_has(flm_fb_reader *r, flm_fb_table t, int slot);
uint8_t flm_fb_get_u8(flm_fb_reader *r, flm_fb_table t, int slot, uint8_t def);
int32_t flm_fb_get_i32(flm_fb_reader *r, flm_fb_table t, int slot, int32_t def);
uint32_t flm_fb_get_u32(flm_fb_reader *r, flm_fb_table t, int slot, uint32_t def);
uint64_t flm_fb_get_u64(flm_fb_reader *r, flm_fb_table t, int slot, uint64_t def);
float flm_fb_get_f32(flm_fb_reader *r, flm_fb_table t, int slot, float def);
flm_fb_table flm_fb_get_table(flm_fb_reader *r, flm_fb_table t, int slot);
/* A string field: pointer into the buffer (not NUL-terminated) and length; NULL if absent. */
const char *flm_fb_get_string(flm_fb_reader *r, flm_fb_table t, int slot, uint32_t *len);
/* A vector field of elem-byte elements. */
flm_fb_vec flm_fb_get_vector(flm_fb_reader *r, flm_fb_table t, int slot, size_t elem);
/* Element i of a vector of tables. */
flm_fb_table flm_fb_vec_table(flm_fb_reader *r, flm_fb_vec v, uint32_t i);
const char *flm_fb_vec_string(flm_fb_reader *r, flm_fb_vec v, uint32_t i, uint32_t *len);
int32_t flm_fb_vec_i32(flm_fb_reader *r, flm_fb_vec v, uint32_t i);
int64_t flm_fb_vec_i64(flm_fb_reader *r, flm_fb_vec v, uint32_t i);
float flm_fb_vec_f32(flm_fb_reader *r, flm_fb_vec v, uint32_t i);
/* The `size` bytes an offset field points at (a union member that is a struct is
 * stored out of line like this); NULL if absent or out of bounds. */
const unsigned char *flm_fb_get_indirect(flm_fb_reader *r, flm_fb_table t, int slot, size_t size);

#endif
