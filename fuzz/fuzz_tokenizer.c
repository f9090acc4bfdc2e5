/* fuzz_tokenizer.c — libFuzzer target for the tokenizer: encodes arbitrary bytes with
 * the bundled Qwen2.5 tokenizer (loaded once; $FLM_FUZZ_MODEL overrides the folder,
 * default models/kcc-advisor relative to the repository root, where `make fuzz` runs).
 * Checks: invalid UTF-8 is rejected with FLM_ERR_ARG; valid text encodes to known ids
 * and decodes back to its NFC form (exactly when added tokens are off, up to NFC of
 * the whole otherwise, since tokenizers normalizes each piece between added tokens);
 * the streaming decoder agrees with the one-shot decode on the ids and on the input
 * bytes read as raw ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer.h"
#include "package/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static flm_tokenizer *g_tok;

static flm_tokenizer *tokenizer(void) {
    if (!g_tok) {
        const char *dir = getenv("FLM_FUZZ_MODEL");
        if (!dir || !*dir) dir = "models/kcc-advisor";
        if (flm_load_tokenizer(dir, &g_tok)) {
            fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root or set FLM_FUZZ_MODEL)\n", flm_last_error());
            abort();
        }
    }
    return g_tok;
}

static char *nfc(const char *s, size_t n, size_t *len) {
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t r = n ? utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE) : 0;
    if (r < 0) abort();
    *len = (size_t)r;
    return d ? (char *)d : calloc(1, 1);
}

static void check_stream(const flm_tokenizer *tok, const int32_t *ids, size_t n) {
    strbuf one, st;
    flm_sb_init(&one);
    flm_sb_init(&st);
    if (flm_tokenizer_decode(tok, ids, n, &one)) abort();
    flm_token_stream s;
    flm_token_stream_init(&s, tok);
    for (size_t i = 0; i < n; i++)
        if (flm_token_stream_feed(&s, ids[i], &st)) abort();
    flm_token_stream_flush(&s, &st);
    if (one.len != st.len || (one.len && memcmp(one.data, st.data, one.len))) abort();
    flm_sb_free(&one);
    flm_sb_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const flm_tokenizer *tok = tokenizer();
    if (size == 0) return 0;
    int flags = data[0] % 3 == 1 ? FLM_ENCODE_SPECIAL_AS_TEXT : data[0] % 3 == 2 ? FLM_ENCODE_NO_ADDED : 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids;
    size_t n;
    int rc = flm_tokenizer_encode_ex(tok, text, len, flags, &ids, &n);
    bool valid = utf8proc_decompose((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, NULL, 0, 0) >= 0 || len == 0;
    if (!valid) {
        if (rc != FLM_ERR_ARG) abort();
    } else {
        if (rc != FLM_OK) abort();
        for (size_t i = 0; i < n; i++)
            if (!flm_tokenizer_token_text(tok, ids[i])) abort();
        strbuf sb;
        flm_sb_init(&sb);
        if (flm_tokenizer_decode(tok, ids, n, &sb)) abort();
        size_t want_len, got_len;
        char *want = nfc(text, len, &want_len);
        char *got = flags == FLM_ENCODE_NO_ADDED ? NULL : nfc(sb.data ? sb.data : "", sb.len, &got_len);
        const char *g = got ? got : sb.data;
        size_t gl = got ? got_len : sb.len;
        if (gl != want_len || (gl && memcmp(g, want, gl))) abort();
        free(want);
        free(got);
        flm_sb_free(&sb);
        check_stream(tok, ids, n);
        free(ids);
    }
    /* the input as raw ids (two bytes each) */
    int32_t raw[512];
    size_t k = 0;
    for (size_t i = 0; i + 1 < size && k < 512; i += 2)
        raw[k++] = (int32_t)(((uint32_t)data[i] << 8 | data[i + 1]) % flm_tokenizer_vocab_size(tok));
    check_stream(tok, raw, k);
    return 0;
}
