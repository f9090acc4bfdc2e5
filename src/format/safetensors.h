/* safetensors.h — reader for the safetensors format (8-byte little-endian header
 * length, JSON header, raw little-endian data). The file is mapped read-only and
 * tensors point into the mapping. Every header entry is validated: dtype known,
 * shape product × element size equal to the byte range, range inside the data
 * section, no overlaps. */
#ifndef FLM_SAFETENSORS_H
#define FLM_SAFETENSORS_H

#include <stddef.h>
#include "base/tensor.h"

typedef struct flm_st_file flm_st_file;

/* Opens and validates path. `out` is owned by the caller (flm_st_close). */
int flm_st_open(const char *path, flm_st_file **out);
/* Same, from a caller-owned buffer that must outlive the flm_st_file (fuzzing, tests);
 * `what` names the source in messages. */
int flm_st_open_memory(const void *data, size_t size, const char *what, flm_st_file **out);
void flm_st_close(flm_st_file *f);

const char *flm_st_path(const flm_st_file *f);
size_t flm_st_count(const flm_st_file *f);
const flm_tensor *flm_st_tensor_at(const flm_st_file *f, size_t i); /* in file-header order */
const flm_tensor *flm_st_find(const flm_st_file *f, const char *name);
/* Value of a "__metadata__" string entry, or NULL. */
const char *flm_st_metadata(const flm_st_file *f, const char *key);
/* The file's size when opened, and the offset in the file of p (flm_st_contains(f, p)):
 * the converter reads tensor bytes with pread and checks the size before each one. */
size_t flm_st_size(const flm_st_file *f);
uint64_t flm_st_offset(const flm_st_file *f, const void *p);

#endif

/* ---- streaming writer ----
 * Declare every tensor (name, dtype, shape) first, then write each tensor's bytes in
 * declaration order; memory is one tensor at most. Output goes to PATH.XXXXXX.tmp and is
 * renamed to PATH by flm_st_writer_finish (after fsync); flm_st_writer_abort removes it. */
typedef struct flm_st_writer flm_st_writer;
int flm_st_writer_open(const char *path, flm_st_writer **out);
int flm_st_writer_declare(flm_st_writer *w, const char *name, flm_dtype dtype, int ndim, const int64_t *shape);
/* Writes the header; call after the last declare. */
int flm_st_writer_begin_data(flm_st_writer *w);
/* Appends bytes of the current tensor (may be called several times per tensor). */
int flm_st_writer_write(flm_st_writer *w, const void *data, size_t n);
int flm_st_writer_finish(flm_st_writer *w); /* frees w */
void flm_st_writer_abort(flm_st_writer *w); /* frees w, removes the temporary file */
/* True when p points into f's bytes (a mapped file or the caller's buffer). */
bool flm_st_contains(const flm_st_file *f, const void *p);
