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

#if defined(__x86_64__)
#include <emmintrin.h>

/* One block's 32 values q = to_i8(roundf(x * id)), in SSE2 (part of x86-64): the same
 * multiply, NaN to 0, clamp to [-128, 127], then round_to_i8's truncate-and-correct
 * rounding, four lanes at a time. */
static inline void round_block_i8(const float *x, float id, int8_t *q) {
    const __m128 vid = _mm_set1_ps(id), lo = _mm_set1_ps(-128.0f), hi = _mm_set1_ps(127.0f);
    const __m128 half = _mm_set1_ps(0.5f), mhalf = _mm_set1_ps(-0.5f);
    __m128i r[8];
    for (int k = 0; k < 8; k++) {
        __m128 v = _mm_mul_ps(_mm_loadu_ps(x + 4 * k), vid);
        v = _mm_and_ps(v, _mm_cmpord_ps(v, v));        /* NaN -> 0 */
        v = _mm_min_ps(_mm_max_ps(v, lo), hi);
        __m128i i = _mm_cvttps_epi32(v);
        __m128 f = _mm_sub_ps(v, _mm_cvtepi32_ps(i));
        i = _mm_sub_epi32(i, _mm_castps_si128(_mm_cmpge_ps(f, half)));  /* true is -1 */
        i = _mm_add_epi32(i, _mm_castps_si128(_mm_cmple_ps(f, mhalf)));
        r[k] = i;
    }
    __m128i a = _mm_packs_epi16(_mm_packs_epi32(r[0], r[1]), _mm_packs_epi32(r[2], r[3]));
    __m128i b = _mm_packs_epi16(_mm_packs_epi32(r[4], r[5]), _mm_packs_epi32(r[6], r[7]));
    _mm_storeu_si128((__m128i *)(void *)q, a);
    _mm_storeu_si128((__m128i *)(void *)(q + 16), b);
}

/* max |x| of a block: NaN is skipped as by the scalar `if (a > amax)` (maxps returns
 * its second operand when one is NaN). */
static inline float block_amax(const float *x) {
    const __m128 abs = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 m = _mm_setzero_ps();
    for (int k = 0; k < 8; k++) m = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + 4 * k), abs), m);
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
#else
/* to_i8(roundf(v)) without the libm call (the converter's hot loop): truncation and
 * the exact remainder v - trunc(v) decide the rounding, half away from zero as
 * roundf does. */
static inline int8_t round_to_i8(float v) {
    if (!(v == v)) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    int i = (int)v;         /* truncation: exact in this range */
    float f = v - (float)i; /* exact: the fractional part */
    i += (f >= 0.5f) - (f <= -0.5f);
    return (int8_t)i;
}

static inline void round_block_i8(const float *x, float id, int8_t *q) {
    for (int j = 0; j < QK; j++) q[j] = round_to_i8(x[j] * id);
}

static inline float block_amax(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    return amax;
}
#endif

void flm_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        const float amax = block_amax(x);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = flm_f32_to_f16(d);
        round_block_i8(x, id, y[b].qs);
    }
}

/* The specification of flm_quantize_row_q8_0 (ggml's quantize_row_q8_0_ref with
 * defined non-finite handling): the tests compare the two. */
void flm_quantize_row_q8_0_spec(const float *x, block_q8_0 *y, int64_t n) {
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

#if defined(__x86_64__)
/* One q4_0 block's 16 bytes: nibble q = min(15, trunc(v)) for v = x * id + 8.5 (a
 * multiply, then an add, as the scalar code), NaN to 0 and v < 0 to 0 (to_i8, then
 * the clamp to [0, 15]): v is clamped to [0, 15] first, where truncation gives the
 * same. Element j in the low nibble of byte j, element j + 16 in the high one. */
static inline void nibbles_q4_0(const float *x, float id, uint8_t *qs) {
    const __m128 vid = _mm_set1_ps(id), off = _mm_set1_ps(8.5f), zero = _mm_setzero_ps(), top = _mm_set1_ps(15.0f);
    __m128i r[8];
    for (int k = 0; k < 8; k++) {
        __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(x + 4 * k), vid), off);
        v = _mm_and_ps(v, _mm_cmpord_ps(v, v));
        r[k] = _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(v, zero), top));
    }
    __m128i lo = _mm_packus_epi16(_mm_packs_epi32(r[0], r[1]), _mm_packs_epi32(r[2], r[3])); /* elements 0..15 */
    __m128i hi = _mm_packus_epi16(_mm_packs_epi32(r[4], r[5]), _mm_packs_epi32(r[6], r[7])); /* 16..31 */
    _mm_storeu_si128((__m128i *)(void *)qs, _mm_or_si128(lo, _mm_slli_epi16(hi, 4))); /* nibbles: no carry across bytes */
}

void flm_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        /* the first element of largest magnitude, with its sign (0 when every |x| is 0 or NaN) */
        const float amax = block_amax(x);
        float max = 0.0f;
        if (amax > 0.0f)
            for (int j = 0; j < QK; j++)
                if (fabsf(x[j]) == amax) { max = x[j]; break; }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = flm_f32_to_f16(d);
        nibbles_q4_0(x, id, y[b].qs);
    }
}
#else
void flm_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n) { flm_quantize_row_q4_0_spec(x, y, n); }
#endif

/* The specification of flm_quantize_row_q4_0 (ggml's quantize_row_q4_0_ref with
 * defined non-finite handling): the tests compare the two. */
void flm_quantize_row_q4_0_spec(const float *x, block_q4_0 *y, int64_t n) {
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
