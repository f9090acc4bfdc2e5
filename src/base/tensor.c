/* tensor.c — the element-type table and tensor helpers. */
#include "base/tensor.h"

#include <stdio.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "base/common.h"

static void f32_to_float(const void *src, float *dst, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void f16_to_float(const void *src, float *dst, size_t n) {
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = flm_f16_to_f32(s[i]);
}
/* flm_bf16_to_f32 written out (a 16-bit shift) so the loop vectorises: the converter
 * widens every bf16 weight of a checkpoint through here (SSE2 on x86-64). */
static void bf16_to_float(const void *src, float *dst, size_t n) {
    const uint16_t *s = src;
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) { /* 8 bf16 -> 8 floats: each 16 bits into the top half of a 32-bit lane */
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_unpacklo_epi16(zero, v));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 4), _mm_unpackhi_epi16(zero, v));
    }
#endif
    for (; i < n; i++) {
        uint32_t bits = (uint32_t)s[i] << 16;
        memcpy(&dst[i], &bits, sizeof bits);
    }
}
static void q8_0_to_float(const void *src, float *dst, size_t n) {
    const block_q8_0 *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = flm_f16_to_f32(b[i].d);
        for (int j = 0; j < QK; j++) dst[i * QK + (size_t)j] = d * (float)b[i].qs[j];
    }
}
static void q4_0_to_float(const void *src, float *dst, size_t n) {
    const block_q4_0 *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = flm_f16_to_f32(b[i].d);
        for (int j = 0; j < QK / 2; j++) {
            dst[i * QK + (size_t)j] = d * (float)((b[i].qs[j] & 0x0F) - 8);
            dst[i * QK + (size_t)j + QK / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}
static void i32_to_float(const void *src, float *dst, size_t n) {
    const int32_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
}

static const flm_dtype_info DTYPES[FLM_DTYPE_COUNT] = {
    [FLM_F32] = {"f32", 1, 4, true, f32_to_float},
    [FLM_F16] = {"f16", 1, 2, true, f16_to_float},
    [FLM_BF16] = {"bf16", 1, 2, true, bf16_to_float},
    [FLM_Q8_0] = {"q8_0", QK, sizeof(block_q8_0), true, q8_0_to_float},
    [FLM_Q4_0] = {"q4_0", QK, sizeof(block_q4_0), true, q4_0_to_float},
    [FLM_I32] = {"i32", 1, 4, false, i32_to_float},
    [FLM_I64] = {"i64", 1, 8, false, NULL},
    [FLM_I8] = {"i8", 1, 1, false, NULL},
    [FLM_U8] = {"u8", 1, 1, false, NULL},
    [FLM_BOOL] = {"bool", 1, 1, false, NULL},
    [FLM_F64] = {"f64", 1, 8, false, NULL},
};

const flm_dtype_info *flm_dtype_get(flm_dtype t) {
    return (unsigned)t < FLM_DTYPE_COUNT ? &DTYPES[t] : NULL;
}

size_t flm_dtype_bytes(flm_dtype t, uint64_t n) {
    const flm_dtype_info *d = flm_dtype_get(t);
    if (!d || n % (uint64_t)d->block_size) return 0;
    uint64_t blocks = n / (uint64_t)d->block_size;
    if (blocks > SIZE_MAX / d->block_bytes) return 0;
    return (size_t)(blocks * d->block_bytes);
}

int flm_dtype_from_safetensors(const char *name) {
    static const struct { const char *n; flm_dtype t; } map[] = {
        {"F32", FLM_F32}, {"F16", FLM_F16}, {"BF16", FLM_BF16}, {"I32", FLM_I32}, {"I64", FLM_I64},
        {"I8", FLM_I8},   {"U8", FLM_U8},   {"BOOL", FLM_BOOL}, {"F64", FLM_F64},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(map[i].n, name)) return (int)map[i].t;
    return -1;
}

int64_t flm_tensor_numel(const flm_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *flm_shape_str(const int64_t *shape, int ndim, char *buf, size_t len) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}
