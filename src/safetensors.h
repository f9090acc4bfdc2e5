/* safetensors.h — reader for the safetensors format (8-byte little-endian header
 * length, JSON header, raw little-endian data). The file is mapped read-only and
 * tensors point into the mapping. Every header entry is validated: dtype known,
 * shape product × element size equal to the byte range, range inside the data
 * section, no overlaps. */
#ifndef FLM_SAFETENSORS_H
#define FLM_SAFETENSORS_H

#include <stddef.h>
#include "tensor.h"

typedef struct st_file st_file;

/* Opens and validates path. `out` is owned by the caller (st_close). */
int st_open(const char *path, st_file **out);
/* Same, from a caller-owned buffer that must outlive the st_file (fuzzing, tests);
 * `what` names the source in messages. */
int st_open_memory(const void *data, size_t size, const char *what, st_file **out);
void st_close(st_file *f);

const char *st_path(const st_file *f);
size_t st_count(const st_file *f);
const flm_tensor *st_tensor_at(const st_file *f, size_t i); /* in file-header order */
const flm_tensor *st_find(const st_file *f, const char *name);
/* Value of a "__metadata__" string entry, or NULL. */
const char *st_metadata(const st_file *f, const char *key);
/* The file's size when opened, and the offset in the file of p (st_contains(f, p)):
 * the converter reads tensor bytes with pread and checks the size before each one. */
size_t st_size(const st_file *f);
uint64_t st_offset(const st_file *f, const void *p);

#endif

/* ---- streaming writer ----
 * Declare every tensor (name, dtype, shape) first, then write each tensor's bytes in
 * declaration order; memory is one tensor at most. Output goes to PATH.XXXXXX.tmp and is
 * renamed to PATH by st_writer_finish (after fsync); st_writer_abort removes it. */
typedef struct st_writer st_writer;
int st_writer_new(const char *path, st_writer **out);
int st_writer_declare(st_writer *w, const char *name, flm_dtype dtype, int ndim, const int64_t *shape);
/* Writes the header; call after the last declare. */
int st_writer_begin_data(st_writer *w);
/* Appends bytes of the current tensor (may be called several times per tensor). */
int st_writer_write(st_writer *w, const void *data, size_t n);
int st_writer_finish(st_writer *w); /* frees w */
void st_writer_abort(st_writer *w); /* frees w, removes the temporary file */
/* True when p points into f's bytes (a mapped file or the caller's buffer). */
bool st_contains(const st_file *f, const void *p);
