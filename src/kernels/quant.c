/* quant.c — Q8_0 / Q4_0 reference quantizers (bit-identical with ggml's
 * quantize_row_*_ref) and row converters for the GGUF converter: format knowledge
 * only. The arithmetic on these blocks (dot products, matmuls) is in the kernel
 * tables; kernels_ref.c holds its one scalar reference. */
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

#include "base/common.h"

/* (int8_t)v for v that may be NaN or out of range (only with non-finite input):
 * identical to the plain cast for every value ggml's code produces from finite
 * input, and defined (NaN -> 0, saturated) otherwise. */
static int8_t to_i8(float v) {
    if (!(v == v)) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    return (int8_t)v;
}

void flm_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = flm_f32_to_f16(d);
        for (int j = 0; j < QK; j++) y[b].qs[j] = to_i8(roundf(x[j] * id));
    }
}

void flm_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float amax = 0.0f, max = 0.0f; /* the first element of largest magnitude, with its sign */
        for (int j = 0; j < QK; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = flm_f32_to_f16(d);
        for (int j = 0; j < QK / 2; j++) {
            /* x*id lies in [-8, 8]: +8.5 and truncation round to 0..16, clamped to 15. */
            int lo = to_i8(x[j] * id + 8.5f);
            int hi = to_i8(x[j + QK / 2] * id + 8.5f);
            lo = lo < 0 ? 0 : lo > 15 ? 15 : lo; /* < 0 only for non-finite input */
            hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void flm_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n) {
    flm_dtype_get(FLM_Q8_0)->to_float(x, y, (size_t)n);
}

void flm_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n) {
    flm_dtype_get(FLM_Q4_0)->to_float(x, y, (size_t)n);
}

void flm_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = flm_f32_to_f16(x[i]);
}

void flm_f32_to_bf16_row(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = flm_f32_to_bf16(x[i]);
}

float flm_quantize_row_i8_channel(const float *x, int8_t *q, int64_t n) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float scale = amax > 0 ? amax / 127.0f : 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float v = roundf(x[i] / scale);
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return scale;
}

float flm_quantize_row_i8_asym(const float *x, int8_t *q, int64_t n, int32_t *zero_point) {
    float lo = 0, hi = 0; /* min(0, min x), max(0, max x) */
    for (int64_t i = 0; i < n; i++) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    const float qmin = -128.0f, qmax = 127.0f;
    float m = lo == hi ? 1.0f : (qmax - qmin) / (hi - lo);
    float dmin = lo * m, dmax = hi * m;
    float zp = (qmin + dmin) + (qmax + dmax) > 0 ? qmin - dmin : qmax - dmax;
    zp = fminf(fmaxf(zp, qmin), qmax);
    int32_t z = (int32_t)rintf(zp);
    float inv = 1.0f / m, mult = 1.0f / inv; /* the conversion's multiplier, as the runtime rounds it */
    float lo_c = qmin - (float)z, hi_c = qmax - (float)z;
    for (int64_t i = 0; i < n; i++) {
        float v = fminf(fmaxf(x[i] * mult, lo_c), hi_c);
        q[i] = (int8_t)((int32_t)rintf(v) + z);
    }
    *zero_point = z;
    return inv;
}

bool flm_quant_row_ok(flm_dtype t, int64_t row_len) {
    const flm_dtype_info *d = flm_dtype_get(t);
    return d && row_len > 0 && row_len % d->block_size == 0;
}

int flm_quantize_row(flm_dtype t, const float *x, void *dst, int64_t n) {
    if (n < 0 || !flm_quant_row_ok(t, n ? n : QK))
        return flm_fail(FLM_ERR_ARG, "cannot store %lld elements as %s", (long long)n,
                        flm_dtype_get(t) ? flm_dtype_get(t)->name : "?");
    switch (t) {
    case FLM_F32: memcpy(dst, x, (size_t)n * sizeof(float)); return FLM_OK;
    case FLM_F16: flm_f32_to_f16_row(x, dst, n); return FLM_OK;
    case FLM_BF16: flm_f32_to_bf16_row(x, dst, n); return FLM_OK;
    case FLM_Q8_0: flm_quantize_row_q8_0(x, dst, n); return FLM_OK;
    case FLM_Q4_0: flm_quantize_row_q4_0(x, dst, n); return FLM_OK;
    default: return flm_fail(FLM_ERR_ARG, "cannot quantize to %s", flm_dtype_get(t)->name);
    }
}
