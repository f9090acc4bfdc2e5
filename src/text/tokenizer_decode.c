/* tokenizer_decode.c — ids -> bytes (ByteLevel decoder, precomputed per id at load) ->
 * UTF-8 text with Python's errors="replace" repair; the streaming decoder; the strict
 * UTF-8 helpers the encoder uses. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

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

size_t flm_tok_utf8_valid_prefix(const uint8_t *s, size_t n) {
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

size_t flm_tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
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
size_t flm_tok_utf8_repair(const uint8_t *s, size_t n, bool final, strbuf *out) {
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

int flm_tokenizer_decode(const flm_tokenizer *t, const int32_t *ids, size_t n, strbuf *out) {
    strbuf raw;
    flm_sb_init(&raw);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *b = flm_tokenizer_token_bytes(t, ids[i], &len);
        if (!b) {
            flm_sb_free(&raw);
            return flm_fail(FLM_ERR_ARG, "token id %d (position %zu) is not in the vocabulary (size %zu)",
                            (int)ids[i], i, t->n_ids);
        }
        flm_sb_append(&raw, (const char *)b, len);
    }
    if (raw.oom) { flm_sb_free(&raw); return flm_fail(FLM_ERR_NOMEM, "out of memory decoding %zu tokens", n); }
    if (raw.len) flm_tok_utf8_repair((const uint8_t *)raw.data, raw.len, true, out);
    flm_sb_free(&raw);
    return out->oom ? flm_fail(FLM_ERR_NOMEM, "out of memory decoding %zu tokens", n) : FLM_OK;
}

void flm_token_stream_init(flm_token_stream *st, const flm_tokenizer *tok) {
    memset(st, 0, sizeof *st);
    st->tok = tok;
}

int flm_token_stream_feed(flm_token_stream *st, int32_t id, strbuf *out) {
    size_t len;
    const uint8_t *b = flm_tokenizer_token_bytes(st->tok, id, &len);
    if (!b) return flm_fail(FLM_ERR_ARG, "token id %d is not in the vocabulary (size %zu)", (int)id, st->tok->n_ids);
    const uint8_t *s = b;
    size_t n = len;
    uint8_t local[256];
    uint8_t *heap = NULL;
    if (st->n_pending) {
        n = st->n_pending + len;
        uint8_t *buf = n <= sizeof local ? local : (heap = flm_malloc(n));
        if (!buf) return FLM_ERR_NOMEM;
        memcpy(buf, st->pending, st->n_pending);
        memcpy(buf + st->n_pending, b, len);
        s = buf;
    }
    size_t used = flm_tok_utf8_repair(s, n, false, out);
    st->n_pending = n - used; /* at most 3: the start of one character */
    memcpy(st->pending, s + used, st->n_pending);
    free(heap);
    return FLM_OK;
}

void flm_token_stream_flush(flm_token_stream *st, strbuf *out) {
    if (st->n_pending) flm_tok_utf8_repair(st->pending, st->n_pending, true, out);
    st->n_pending = 0;
}
