/* quant.h — Q8_0 / Q4_0 block quantization and row conversion (format knowledge).
 *
 * The quantizers are bit-identical with ggml's quantize_row_q8_0_ref /
 * quantize_row_q4_0_ref (the ones llama.cpp uses to write model files); the
 * block layouts are block_q8_0 / block_q4_0 in tensor.h. Products with these
 * blocks are kernels: flm_kernels_scalar()->matmul[dtype] (kernels_ref.c) is the
 * one reference, with its summation order spelled out there. All row lengths n
 * are element counts; for block types n must be a multiple of QK (32). Pure
 * functions, thread-safe. */
#ifndef FLM_QUANT_H
#define FLM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/tensor.h"

/* x[n] -> n/32 blocks. q8_0: d = amax/127, q = roundf(x/d) (ties away from
 * zero). q4_0: d = m/-8 where m is the element of largest magnitude (sign kept),
 * q = min(15, trunc(x/d + 8.5)); element j in the low nibble of qs[j], element
 * j+16 in the high nibble. The scale is stored as IEEE half, rounded to nearest
 * even; the quants use the unrounded float scale, as ggml does. */
void flm_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
/* The same function written as ggml's scalar loop (roundf); the tests check that
 * flm_quantize_row_q8_0 (vectorised, no libm call) gives its bytes; the same for q4_0. */
void flm_quantize_row_q8_0_spec(const float *x, block_q8_0 *y, int64_t n);
void flm_quantize_row_q4_0_spec(const float *x, block_q4_0 *y, int64_t n);
void flm_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n);
void flm_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n);
void flm_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n);

/* LiteRT int8 weights (AI Edge Torch's dynamic_int8 / weight_only_int8 recipes): one
 * row (output channel) -> int8, symmetric, one scale for the row: scale = amax/127
 * (1 when the row is all zero), q = roundf(x/scale) clamped to [-127, 127]. Returns the
 * scale. fieldlm's .tflite writer (convert/litert.c) stores exactly these, and the
 * runtime's dynamic_int8 emulation (runtime/litert_int8.c) computes with them. */
float flm_quantize_row_i8_channel(const float *x, int8_t *q, int64_t n);

/* XNNPACK's dynamic per-row input quantization (its f32->qd8 conversion in front of a
 * FULLY_CONNECTED with float input and int8 weights, "asymmetric_quantize_inputs"):
 * rmin = min(0, min x), rmax = max(0, max x); m = 255/(rmax-rmin) (1 if equal); the zero
 * point is -128 - rmin*m or 127 - rmax*m (whichever side has the smaller error), clamped to
 * [-128, 127] and rounded to nearest even; q = clamp(rint(x * (1/(1/m))) + zp) to [-128, 127].
 * Returns the dequantization scale 1/m (a product sum(q_x - zp)*q_w is multiplied by it);
 * *zero_point receives zp. */
float flm_quantize_row_i8_asym(const float *x, int8_t *q, int64_t n, int32_t *zero_point);

/* float32 -> half / bfloat16 rows (round to nearest even; NaN stays NaN). */
void flm_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
void flm_f32_to_bf16_row(const float *x, uint16_t *y, int64_t n);

/* True if a row of `row_len` elements can be stored as `t` (q8_0/q4_0 need a
 * multiple of 32; plain types always can). The converter keeps other tensors
 * in f16/f32. */
bool flm_quant_row_ok(flm_dtype t, int64_t row_len);

/* Converts n floats to dtype t (f32, f16, bf16, q8_0, q4_0) into dst, which
 * must hold flm_dtype_bytes(t, n) bytes. FLM_ERR_ARG for other types or when n
 * is not a multiple of the block size. */
int flm_quantize_row(flm_dtype t, const float *x, void *dst, int64_t n);

#endif
