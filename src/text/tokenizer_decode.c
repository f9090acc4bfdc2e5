/* tokenizer_decode.c — ids -> bytes (ByteLevel decoder, precomputed per id at load) ->
 * UTF-8 text with Python's errors="replace" repair (base/utf8.h); the streaming decoder. */
#include "text/tokenizer_impl.h"

#include "base/utf8.h"

#include <stdlib.h>
#include <string.h>

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
    if (raw.len) flm_utf8_repair((const uint8_t *)raw.data, raw.len, true, out);
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
    size_t used = flm_utf8_repair(s, n, false, out);
    st->n_pending = n - used; /* at most 3: the start of one character */
    memcpy(st->pending, s + used, st->n_pending);
    free(heap);
    return FLM_OK;
}

void flm_token_stream_flush(flm_token_stream *st, strbuf *out) {
    if (st->n_pending) flm_utf8_repair(st->pending, st->n_pending, true, out);
    st->n_pending = 0;
}
