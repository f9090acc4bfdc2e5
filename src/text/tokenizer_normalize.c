/* tokenizer_normalize.c — the tokenizer's normalizer steps (NFC, NFD, NFKC, NFKD via
 * utf8proc), applied to the input text by the encoder and to normalized=true added
 * tokens when the tokenizer is built. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <utf8proc.h>

int flm_tok_normalize(const flm_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!t->n_norm) return FLM_OK;
    size_t i = 0;
    while (i < n && (uint8_t)s[i] < 0x80) i++;
    if (i == n) return FLM_OK; /* ASCII is invariant under NFC/NFD/NFKC/NFKD */
    char *cur = NULL;
    size_t cur_len = n;
    for (size_t k = 0; k < t->n_norm; k++) {
        static const utf8proc_option_t opts[] = {
            [NORM_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
            [NORM_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
            [NORM_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
            [NORM_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
        };
        utf8proc_uint8_t *dst = NULL;
        const char *src = cur ? cur : s;
        utf8proc_ssize_t r = cur_len ? utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)cur_len, &dst, opts[t->norm[k]]) : 0;
        if (r < 0) {
            free(cur);
            return flm_fail(r == UTF8PROC_ERROR_NOMEM ? FLM_ERR_NOMEM : FLM_ERR_ARG, "normalizing text: %s",
                            utf8proc_errmsg(r));
        }
        free(cur);
        cur = (char *)dst;
        cur_len = (size_t)r;
    }
    *out = cur;
    *out_len = cur_len;
    return FLM_OK;
}
