/* fuzz_pretokenizer.c — libFuzzer target for the pre-tokenizer Split regex taken from a
 * model file: the input is a pattern and a text, and a tokenizer of 256 byte tokens (no
 * merges) is built around Split(pattern) + ByteLevel, as tokenizer.json or a package
 * would give it. Input layout: byte 0 = flags (bit 0: behaviour Removed, bit 1: invert,
 * bit 2: String pattern instead of Regex, bits 3-7: the text is repeated 1 + that many
 * times, so short inputs reach the matching limits), then the pattern up to the first
 * NUL byte, then the text.
 * Checks: a pattern that does not compile is refused with a message; encode either
 * succeeds or, for a pattern that backtracks too much, fails with the pre-tokenizer
 * message (it must never hang: libFuzzer's -timeout catches that); text that is not
 * UTF-8 is refused; with behaviour Isolated every byte of the text comes back, in order,
 * from decode; with Removed the decoded text is no longer than the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REPEAT 32

/* GPT-2's byte-level alphabet: the UTF-8 text of the token of byte b. */
static void byte_token(int b, char out[4]) {
    int cp = ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) ? b
             : b <= 0x20 ? 256 + b : b <= 0xA0 ? 256 + 33 + (b - 0x7F) : 256 + 67;
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int flags = data[0];
    const uint8_t *pat = data + 1, *nul = memchr(pat, 0, size - 1);
    if (!nul) return 0;
    size_t pat_len = (size_t)(nul - pat), unit_len = size - 1 - pat_len - 1;
    const uint8_t *unit = nul + 1;

    static char storage[256][4];
    static const char *vocab[256];
    for (int b = 0; b < 256; b++) { byte_token(b, storage[b]); vocab[b] = storage[b]; }
    strbuf pre;
    flm_sb_init(&pre);
    flm_sb_puts(&pre, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{");
    flm_sb_puts(&pre, flags & 4 ? "\"String\":" : "\"Regex\":");
    flm_sb_json_string(&pre, (const char *)pat, pat_len, false);
    flm_sb_printf(&pre, "},\"behavior\":\"%s\",\"invert\":%s},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                    "\"use_regex\":false}]}", flags & 1 ? "Removed" : "Isolated", flags & 2 ? "true" : "false");
    flm_tokenizer_spec spec = {.vocab = vocab, .n_vocab = 256, .pre_tokenizer_json = flm_sb_cstr(&pre),
                               .decoder_json = "{\"type\":\"ByteLevel\"}"};
    flm_tokenizer *tok;
    int rc = flm_tokenizer_from_spec(&spec, &tok);
    flm_sb_free(&pre);
    if (rc) {
        if (!*flm_last_error()) abort(); /* refused without a message */
        return 0;
    }

    size_t repeat = 1 + (size_t)(flags >> 3) % MAX_REPEAT, len = unit_len * repeat;
    char *text = malloc(len + 1);
    if (!text) abort();
    for (size_t i = 0; i < repeat; i++) memcpy(text + i * unit_len, unit, unit_len);
    int32_t *ids;
    size_t n;
    rc = flm_tokenizer_encode(tok, text, len, &ids, &n);
    bool valid = len == 0 || utf8proc_decompose((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, NULL, 0, 0) >= 0;
    if (!valid) {
        if (rc != FLM_ERR_ARG) abort();
    } else if (rc) {
        /* only the matching limits may stop a valid text */
        if (rc != FLM_ERR_UNSUPPORTED || !strstr(flm_last_error(), "pre-tokenizer pattern")) abort();
    } else {
        strbuf sb;
        flm_sb_init(&sb);
        if (flm_tokenizer_decode(tok, ids, n, &sb)) abort();
        if (flags & 1 ? sb.len > len : sb.len != len || (len && memcmp(sb.data, text, len))) abort();
        flm_sb_free(&sb);
        free(ids);
    }
    free(text);
    flm_tokenizer_free(tok);
    return 0;
}
