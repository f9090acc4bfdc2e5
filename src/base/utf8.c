/* utf8.c — strict UTF-8 checking, decoding and Python-style repair (base/utf8.h). */
#include "base/utf8.h"

/* Length of the sequence a lead byte starts (0 if it cannot start one) and the allowed
 * range of its second byte (Unicode Table 3-7, well-formed UTF-8 byte sequences). */
static int utf8_lead(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;
    if (b < 0xE0) return 2;
    if (b < 0xF0) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 3;
    }
    if (b < 0xF5) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

size_t flm_utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint8_t lo, hi;
        int len = utf8_lead(s[i], &lo, &hi);
        if (!len || i + (size_t)len > n) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (int k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += (size_t)len;
    }
    return n;
}

size_t flm_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80 || n < 2) { *cp = b; return 1; }
    if (b < 0xE0) { *cp = (uint32_t)(b & 0x1F) << 6 | (s[1] & 0x3F); return 2; }
    if (b < 0xF0 || n < 4) {
        *cp = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    *cp = (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return 4;
}

#define REPLACEMENT "\xEF\xBF\xBD"

/* Each maximal subpart of an ill-formed sequence becomes one U+FFFD (what CPython's
 * UTF-8 decoder does with errors="replace", and the Unicode "best practice"). */
size_t flm_utf8_repair(const uint8_t *s, size_t n, bool final, strbuf *out) {
    if (!n) return 0; /* s may be NULL (an empty strbuf): no arithmetic on it */
    size_t i = 0, run = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint8_t lo, hi;
        int len = utf8_lead(s[i], &lo, &hi);
        int j = 1;
        if (len) {
            while (j < len) {
                if (i + (size_t)j >= n) { /* the input ends inside a character */
                    flm_sb_append(out, (const char *)s + run, i - run);
                    if (!final) return i;
                    flm_sb_puts(out, REPLACEMENT);
                    return n;
                }
                uint8_t c = s[i + (size_t)j];
                if (c < (j == 1 ? lo : 0x80) || c > (j == 1 ? hi : 0xBF)) break;
                j++;
            }
            if (j == len) { i += (size_t)len; continue; }
        }
        flm_sb_append(out, (const char *)s + run, i - run);
        flm_sb_puts(out, REPLACEMENT);
        i += (size_t)j;
        run = i;
    }
    flm_sb_append(out, (const char *)s + run, n - run);
    return n;
}
