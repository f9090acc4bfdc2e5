/* tensor.h — element types and the tensor descriptor every module shares.
 * A tensor is a view: `data` points into a mapped file or an owned buffer that
 * outlives it. Shapes are written outermost first, as PyTorch does: a Linear
 * weight is [out_features, in_features] and rows are contiguous. */
#ifndef FLM_TENSOR_H
#define FLM_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    FLM_F32 = 0,
    FLM_F16,
    FLM_BF16,
    FLM_Q8_0,
    FLM_Q4_0,
    FLM_I32,
    FLM_I64,
    FLM_I8,
    FLM_U8,
    FLM_BOOL,
    FLM_F64,
    FLM_DTYPE_COUNT
} flm_dtype;

/* Static facts about an element type. Block types (q8_0, q4_0) pack block_size
 * weights into block_bytes; plain types have block_size 1. */
typedef struct {
    const char *name;      /* "f32", "q8_0", ... */
    int block_size;        /* elements per block */
    size_t block_bytes;    /* bytes per block */
    bool is_float_weight;  /* usable as a weight by the kernels (f32/f16/bf16/q8_0/q4_0) */
    /* Converts n elements (n a multiple of block_size) starting at src to float. */
    void (*to_float)(const void *src, float *dst, size_t n);
} flm_dtype_info;

const flm_dtype_info *flm_dtype_get(flm_dtype t);
/* Bytes needed for n elements (n must be a multiple of block_size); 0 on overflow. */
size_t flm_dtype_bytes(flm_dtype t, uint64_t n);
/* Parses a name as written by safetensors ("F32", "BF16", ...); -1 if unknown. */
int flm_dtype_from_safetensors(const char *name);

#define FLM_MAX_DIMS 4

typedef struct {
    const char *name;              /* borrowed */
    flm_dtype dtype;
    int ndim;
    int64_t shape[FLM_MAX_DIMS];   /* outermost first */
    const void *data;              /* borrowed; valid while its source is open */
    size_t nbytes;
    /* NULL: the bytes are laid out as stored in the file. Else the q8_0/q4_0 rows were
     * repacked in memory for a kernel table's int8 products, and this is that layout's
     * description (a flm_qpacked_fns, src/kernels/kernels.h): same rows, same sizes,
     * bytes moved within each row. */
    const void *layout;
} flm_tensor;

int64_t flm_tensor_numel(const flm_tensor *t);
/* Formats a shape as "[a, b]" into buf. */
const char *flm_shape_str(const int64_t *shape, int ndim, char *buf, size_t len);

/* Q8_0 / Q4_0 blocks, bit-compatible with GGML: 32 weights, an IEEE half scale d.
 * q8_0: w = d * qs[i].  q4_0: w = d * (nibble - 8), low nibbles hold elements
 * 0..15 and high nibbles 16..31 of the block. */
#define QK 32
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block is 18 bytes");

#endif
