/* sha256.c — SHA-256 as specified in FIPS 180-4 (constants are the spec's). The
 * compression function runs on the x86 SHA extensions (SHA-NI: sha256rnds2,
 * sha256msg1/2) when cpuid reports them — about 5x the portable code, which matters
 * when the converter hashes a multi-GB checkpoint beside its work — and portable C
 * otherwise; both compute the same function (tests/test_sha256.c compares them). */
#include "base/sha256.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block_portable(uint32_t hs[8], const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4], f = hs[5], g = hs[6], h = hs[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    hs[0] += a; hs[1] += b; hs[2] += c; hs[3] += d;
    hs[4] += e; hs[5] += f; hs[6] += g; hs[7] += h;
}

void flm_sha256_blocks_portable(uint32_t h[8], const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) block_portable(h, p + 64 * i);
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* n blocks with the SHA extensions. The state lives in two registers as the
 * instructions want it: ABEF (lanes 3..0 = A, B, E, F) and CDGH. Each sha256rnds2
 * does two rounds from the low two dwords of W + K; sha256msg1/msg2 and one alignr
 * compute the next four schedule words W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]. */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_shani(uint32_t h[8], const unsigned char *p, size_t n) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL); /* big-endian dwords */
    __m128i t = _mm_loadu_si128((const __m128i *)(const void *)h);         /* [A B C D] (lane 0 first) */
    __m128i s1 = _mm_loadu_si128((const __m128i *)(const void *)(h + 4));  /* [E F G H] */
    t = _mm_shuffle_epi32(t, 0xB1);                                          /* [B A D C] */
    s1 = _mm_shuffle_epi32(s1, 0x1B);                                        /* [H G F E] */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                  /* [F E B A]: ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                       /* [H G D C]: CDGH */
    for (size_t blk = 0; blk < n; blk++, p += 64) {
        __m128i w[16];
        for (int g = 0; g < 4; g++) w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * g)), bswap);
        for (int g = 4; g < 16; g++)
            w[g] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w[g - 4], w[g - 3]), _mm_alignr_epi8(w[g - 1], w[g - 2], 4)),
                                        w[g - 1]);
        __m128i a0 = s0, c0 = s1;
        for (int g = 0; g < 16; g++) {
            __m128i m = _mm_add_epi32(w[g], _mm_loadu_si128((const __m128i *)(const void *)(K + 4 * g)));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
        }
        s0 = _mm_add_epi32(s0, a0);
        s1 = _mm_add_epi32(s1, c0);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);   /* [A B E F] */
    s1 = _mm_shuffle_epi32(s1, 0xB1);  /* [G H C D] */
    s0 = _mm_blend_epi16(t, s1, 0xF0); /* [A B C D] */
    s1 = _mm_alignr_epi8(s1, t, 8);    /* [E F G H] */
    _mm_storeu_si128((__m128i *)(void *)h, s0);
    _mm_storeu_si128((__m128i *)(void *)(h + 4), s1);
}

static bool g_shani;
static pthread_once_t g_shani_once = PTHREAD_ONCE_INIT;
static void detect_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    g_shani = ssse3 && sse41 && ((b >> 29) & 1); /* leaf 7 EBX bit 29: SHA */
}
#endif

bool flm_sha256_accelerated(void) {
#if defined(__x86_64__)
    pthread_once(&g_shani_once, detect_shani);
    return g_shani;
#else
    return false;
#endif
}

void flm_sha256_blocks(uint32_t h[8], const unsigned char *p, size_t n) {
#if defined(__x86_64__)
    if (flm_sha256_accelerated()) {
        blocks_shani(h, p, n);
        return;
    }
#endif
    flm_sha256_blocks_portable(h, p, n);
}

void flm_sha256_init(flm_sha256 *s) {
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->total = 0;
    s->n = 0;
}

void flm_sha256_update(flm_sha256 *s, const void *data, size_t len) {
    const unsigned char *p = data;
    s->total += len;
    if (s->n) {
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take; p += take; len -= take;
        if (s->n == 64) { flm_sha256_blocks(s->h, s->buf, 1); s->n = 0; }
    }
    if (len >= 64) {
        size_t nb = len / 64;
        flm_sha256_blocks(s->h, p, nb);
        p += nb * 64;
        len -= nb * 64;
    }
    if (len) { memcpy(s->buf, p, len); s->n = len; }
}

void flm_sha256_final(flm_sha256 *s, unsigned char out[32]) {
    uint64_t bits = s->total * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    flm_sha256_update(s, &pad, 1);
    while (s->n != 56) flm_sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    flm_sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->h[i] >> 24); out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 8); out[4 * i + 3] = (unsigned char)s->h[i];
    }
}

void flm_sha256_hex(const unsigned char d[32], char hex[65]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int flm_sha256_file(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return flm_fail(FLM_ERR_IO, "%s: %s", path, strerror(errno));
    flm_sha256 s;
    flm_sha256_init(&s);
    unsigned char *buf = flm_malloc(1 << 20);
    if (!buf) { fclose(f); return FLM_ERR_NOMEM; }
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0) flm_sha256_update(&s, buf, n);
    int err = ferror(f);
    fclose(f);
    free(buf);
    if (err) return flm_fail(FLM_ERR_IO, "%s: read error", path);
    unsigned char d[32];
    flm_sha256_final(&s, d);
    flm_sha256_hex(d, hex);
    return FLM_OK;
}
