/* gguf.h — the GGUF v3 container: a validating, zero-copy reader (gguf.c) and a
 * streaming, atomic writer (gguf_write.c).
 *
 * Format: ggml docs/gguf.md, little-endian only. A file is
 *   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count x (string key, u32 value_type, value),
 *   tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset),
 *   padding to general.alignment (default 32), tensor data.
 * A string is u64 length + bytes (no NUL). Dimensions in the file are innermost
 * first (ggml's ne[0] is the row length); this API also gives them outermost
 * first (flm_tensor's order), which is the reverse.
 *
 * Reader: the file is mapped read-only; tensor data pointers point into the map.
 * Every length, count, type, offset and extent is checked against the file size
 * before use; violations return FLM_ERR_FORMAT with a message naming the file.
 * What the reader copies into memory is capped (GGUF_MAX_STRING per string,
 * GGUF_MAX_HEADER_MEMORY in all), so no file, however large or sparse, makes it
 * take more. All pointers handed out are borrowed and valid until the last
 * flm_gguf_close(). A flm_gguf_file is immutable after open and may be read from several
 * threads; flm_gguf_retain() lets several owners (model, loaders) share one parse.
 *
 * Writer: declare every KV and every tensor (name, type, shape) first, then write
 * the tensors' data in declaration order. Output goes to PATH.XXXXXX.tmp, which is
 * fsync'ed and renamed over PATH by flm_gguf_writer_finish(); any error or
 * flm_gguf_writer_abort() removes the temporary file. A writer has one owner. */
#ifndef FLM_GGUF_H
#define FLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/tensor.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64        /* tensor name bytes, as ggml's GGML_MAX_NAME allows */
#define GGUF_MAX_ARRAY_DEPTH 8  /* nesting of arrays of arrays the reader accepts */
#define GGUF_MAX_KEY 65535      /* metadata key bytes (the GGUF specification's limit) */
/* One metadata string value (or list element): a chat template or tokenizer JSON
 * is kilobytes, the whole Qwen2.5 vocabulary a few MB. */
#define GGUF_MAX_STRING ((uint64_t)64 << 20)
/* Everything the reader holds in memory for one file besides the mapping: copied
 * keys and strings, string lists, nested arrays, the KV and tensor tables (about
 * 10 MiB for Qwen2.5's 151,936-token vocabulary and merges). */
#define GGUF_MAX_HEADER_MEMORY ((uint64_t)256 << 20)

/* Metadata value types (the u32 written before each value). */
typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* ggml tensor type ids used by fieldlm (ggml.h enum ggml_type). Other ids are
 * still read (their sizes are known) but cannot become an flm_tensor. */
enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
};

/* "u8", "i32", "f32", "bool", "string", "array", ...; "?" if out of range. */
const char *flm_gguf_type_name(gguf_type t);
/* Bytes of one fixed-size value (0 for STRING, ARRAY and unknown types). */
size_t flm_gguf_type_size(gguf_type t);
/* ggml type name ("f32", "q8_0", "q4_K", ...) or NULL if the id is unknown. */
const char *flm_gguf_ggml_type_name(uint32_t ggml_type);
/* The ggml type id of an flm_dtype, or -1 when GGUF has no such type (bool, u8). */
int flm_gguf_ggml_from_dtype(flm_dtype t);
/* The flm_dtype of a ggml type id, or -1 when fieldlm cannot use it (e.g. q4_K). */
int flm_gguf_dtype_from_ggml(uint32_t ggml_type);

/* A metadata value. Strings are NUL-terminated copies (len excludes the NUL and
 * may count embedded NULs). Numeric and bool arrays point at the little-endian
 * elements inside the file (possibly unaligned: read them with the accessors). */
typedef struct flm_gguf_str { const char *str; uint64_t len; } flm_gguf_str;
typedef struct flm_gguf_value flm_gguf_value;
struct flm_gguf_value {
    gguf_type type;
    union {
        uint64_t u;   /* UINT8/16/32/64 */
        int64_t i;    /* INT8/16/32/64 */
        double f;     /* FLOAT32/64 */
        bool b;       /* BOOL */
    } num;
    flm_gguf_str s;                  /* STRING */
    /* ARRAY */
    gguf_type elem_type;
    uint64_t count;
    const void *data;            /* fixed-size elements: count * flm_gguf_type_size(elem_type) bytes */
    const flm_gguf_str *strs;        /* elem_type STRING: count strings */
    const flm_gguf_value *items;     /* elem_type ARRAY: count nested arrays */
};

typedef struct flm_gguf_kv { const char *key; flm_gguf_value value; } flm_gguf_kv;

typedef struct flm_gguf_tensor_info {
    const char *name;
    uint32_t ggml_type;
    int dtype;                   /* flm_dtype, or -1 if fieldlm cannot use ggml_type */
    int n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  /* as in the file: innermost first, unused = 1 */
    int64_t shape[GGUF_MAX_DIMS];/* outermost first (flm_tensor order) */
    uint64_t offset;             /* from the start of the data section */
    uint64_t nbytes;
    const void *data;            /* into the map */
} flm_gguf_tensor_info;

typedef struct flm_gguf_file flm_gguf_file;

/* ---- reader ---- */

/* True if the first four bytes are "GGUF". */
bool flm_gguf_has_magic(const void *buf, size_t n);
/* True if PATH is a readable file starting with "GGUF" (no other validation). */
bool flm_gguf_is_gguf_file(const char *path);

/* Maps and validates PATH. On failure *out is NULL and a message names the file. */
int flm_gguf_open(const char *path, flm_gguf_file **out);
/* Parses an in-memory image (borrowed: it must outlive the flm_gguf_file). `name`
 * is used in messages. flm_gguf_open() maps the file and calls this. */
int flm_gguf_open_memory(const void *buf, size_t size, const char *name, flm_gguf_file **out);
/* Drops one reference; the last one unmaps the file and frees everything. */
void flm_gguf_close(flm_gguf_file *f);
/* Adds a reference (returns f): each owner calls flm_gguf_close() once. Thread-safe. */
flm_gguf_file *flm_gguf_retain(flm_gguf_file *f);
/* How many images this process has parsed (every flm_gguf_open / flm_gguf_open_memory,
 * successful or not): lets tests prove that a package is parsed once per load. */
uint64_t flm_gguf_parse_count(void);

const char *flm_gguf_name(const flm_gguf_file *f);       /* path or name given to open */
uint32_t flm_gguf_version(const flm_gguf_file *f);
uint32_t flm_gguf_alignment(const flm_gguf_file *f);
uint64_t flm_gguf_data_offset(const flm_gguf_file *f);   /* file offset of the data section */
uint64_t flm_gguf_file_size(const flm_gguf_file *f);

/* Metadata in file order. */
size_t flm_gguf_kv_count(const flm_gguf_file *f);
const flm_gguf_kv *flm_gguf_kv_at(const flm_gguf_file *f, size_t i);
/* The value of `key`, or NULL if absent (no error recorded). */
const flm_gguf_value *flm_gguf_find(const flm_gguf_file *f, const char *key);

/* Typed getters: FLM_OK and *out set, or FLM_ERR_FORMAT when the key is missing
 * or its value does not fit (message names the file and the key). Integer getters
 * accept any integer type whose value is in range; float getters accept f32/f64;
 * bool and string getters require exactly BOOL / STRING. */
int flm_gguf_get_u32(const flm_gguf_file *f, const char *key, uint32_t *out);
int flm_gguf_get_i32(const flm_gguf_file *f, const char *key, int32_t *out);
int flm_gguf_get_u64(const flm_gguf_file *f, const char *key, uint64_t *out);
int flm_gguf_get_i64(const flm_gguf_file *f, const char *key, int64_t *out);
int flm_gguf_get_f32(const flm_gguf_file *f, const char *key, float *out);
int flm_gguf_get_f64(const flm_gguf_file *f, const char *key, double *out);
int flm_gguf_get_bool(const flm_gguf_file *f, const char *key, bool *out);
int flm_gguf_get_str(const flm_gguf_file *f, const char *key, const char **out);
/* An ARRAY value whose elements have type elem (or any type when elem is
 * GGUF_TYPE_COUNT). */
int flm_gguf_get_array(const flm_gguf_file *f, const char *key, gguf_type elem, const flm_gguf_value **out);

/* Element access on an ARRAY value. Index and type are checked: on a mismatch
 * they return FLM_ERR_ARG (no crash). Numeric getters convert any integer
 * (respectively any numeric) element type, range-checked. */
uint64_t flm_gguf_array_len(const flm_gguf_value *arr);
int flm_gguf_array_str(const flm_gguf_value *arr, uint64_t i, const char **s, uint64_t *len);
int flm_gguf_array_i64(const flm_gguf_value *arr, uint64_t i, int64_t *out);
int flm_gguf_array_f64(const flm_gguf_value *arr, uint64_t i, double *out);
/* Copies a whole numeric array converted to float / int32 (n must equal the length). */
int flm_gguf_array_copy_f32(const flm_gguf_value *arr, float *dst, uint64_t n);
int flm_gguf_array_copy_i32(const flm_gguf_value *arr, int32_t *dst, uint64_t n);

/* Tensors in file order. */
size_t flm_gguf_tensor_count(const flm_gguf_file *f);
const flm_gguf_tensor_info *flm_gguf_tensor_at(const flm_gguf_file *f, size_t i);
/* NULL if absent (no error recorded). */
const flm_gguf_tensor_info *flm_gguf_tensor_find(const flm_gguf_file *f, const char *name);
/* Fills an flm_tensor view (shape outermost first, data into the map).
 * FLM_ERR_FORMAT if absent, FLM_ERR_UNSUPPORTED if its type has no flm_dtype. */
int flm_gguf_get_tensor(const flm_gguf_file *f, const char *name, flm_tensor *out);
int flm_gguf_tensor_view(const flm_gguf_file *f, const flm_gguf_tensor_info *ti, flm_tensor *out);

/* ---- writer ---- */

typedef struct flm_gguf_writer flm_gguf_writer;

/* Starts PATH (written to a temporary PATH.XXXXXX.tmp until finish; PATH must not be
 * a directory or a non-regular file, see src/base/outfile.h). alignment 0 means 32;
 * otherwise a power of two (64 for AVX-512 friendly rows), recorded as general.alignment. */
int flm_gguf_writer_open(const char *path, uint32_t alignment, flm_gguf_writer **out);

/* Metadata, in the order it will appear. Keys must be unique. Allowed until the
 * first tensor data is written. */
int flm_gguf_writer_add_u8(flm_gguf_writer *w, const char *key, uint8_t v);
int flm_gguf_writer_add_i8(flm_gguf_writer *w, const char *key, int8_t v);
int flm_gguf_writer_add_u16(flm_gguf_writer *w, const char *key, uint16_t v);
int flm_gguf_writer_add_i16(flm_gguf_writer *w, const char *key, int16_t v);
int flm_gguf_writer_add_u32(flm_gguf_writer *w, const char *key, uint32_t v);
int flm_gguf_writer_add_i32(flm_gguf_writer *w, const char *key, int32_t v);
int flm_gguf_writer_add_u64(flm_gguf_writer *w, const char *key, uint64_t v);
int flm_gguf_writer_add_i64(flm_gguf_writer *w, const char *key, int64_t v);
int flm_gguf_writer_add_f32(flm_gguf_writer *w, const char *key, float v);
int flm_gguf_writer_add_f64(flm_gguf_writer *w, const char *key, double v);
int flm_gguf_writer_add_bool(flm_gguf_writer *w, const char *key, bool v);
int flm_gguf_writer_add_str(flm_gguf_writer *w, const char *key, const char *s);
int flm_gguf_writer_add_strn(flm_gguf_writer *w, const char *key, const char *s, size_t len);
/* Array of fixed-size elements given in host order (e.g. float[], int32_t[], bool[]). */
int flm_gguf_writer_add_array(flm_gguf_writer *w, const char *key, gguf_type elem, const void *data, size_t n);
/* Array of NUL-terminated strings. */
int flm_gguf_writer_add_str_array(flm_gguf_writer *w, const char *key, const char *const *strs, size_t n);
/* Any value, including nested arrays (built by hand or taken from a reader). */
int flm_gguf_writer_add_value(flm_gguf_writer *w, const char *key, const flm_gguf_value *v);

/* Declares the next tensor: shape outermost first (flm_tensor order). The
 * innermost dimension must be a multiple of the type's block size. */
int flm_gguf_writer_add_tensor(flm_gguf_writer *w, const char *name, flm_dtype dtype, int ndim,
                           const int64_t *shape);

/* Writes the data of the next declared tensor; `name` must match the
 * declaration (checks the caller's order) and nbytes its size. */
int flm_gguf_writer_write_tensor(flm_gguf_writer *w, const char *name, const void *data, size_t nbytes);
/* The same in pieces: appends bytes to the current tensor (moves to the next one
 * when it is complete). */
int flm_gguf_writer_write_part(flm_gguf_writer *w, const void *data, size_t nbytes);

/* Replaces element `index` of the string array `key` with s, which must have the
 * length of the string it replaces: the file's layout is fixed once the header is
 * out. Before the first tensor data it edits the metadata held in memory; after,
 * it rewrites those bytes of the temporary file. For values known only at the end
 * (the converter's source hashes): add a placeholder of the final length, write
 * the data, replace it, finish. */
int flm_gguf_writer_replace_str(flm_gguf_writer *w, const char *key, size_t index, const char *s);

/* Bytes written so far (the file's size once every tensor is written). */
uint64_t flm_gguf_writer_bytes(const flm_gguf_writer *w);
/* Checks that every tensor was written, then fsync + rename + fsync(dir). Frees w
 * in all cases; on failure nothing is left at PATH or the temporary file. */
int flm_gguf_writer_finish(flm_gguf_writer *w);
/* Removes the temporary file and frees w (NULL is fine). */
void flm_gguf_writer_abort(flm_gguf_writer *w);

/* Test hook: make the writer's write() fail with ENOSPC once this many bytes of
 * the file have been written (UINT64_MAX = never, the default). */
void flm_gguf_writer_fail_after(flm_gguf_writer *w, uint64_t bytes);

#endif
