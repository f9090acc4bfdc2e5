/* fuzz_serve_request.c — libFuzzer target: arbitrary bytes as the body of a
 * `fieldlm serve` request (app/serve/request.c: JSON → validated request), as a chat
 * completion and as a completion. An accepted request must hold what the server relies
 * on: messages with a known role and NUL-free UTF-8 content, settings in range. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../app/serve/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0) return 0;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xc0) != 0x80) return 0;
    }
    return 1;
}

static void check(const serve_request *r) {
    if (r->kind == SERVE_CHAT) {
        if (!r->n_msgs || !r->msgs) abort();
        for (size_t i = 0; i < r->n_msgs; i++) {
            const char *role = r->msgs[i].role;
            if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))) abort();
            if (!r->msgs[i].content || !valid_utf8(r->msgs[i].content)) abort();
        }
    } else if (!r->prompt || !r->prompt[0] || !valid_utf8(r->prompt)) {
        abort();
    }
    const flm_gen_settings *s = &r->set;
    if (!flm_is_unset(s->temperature) && !(s->temperature >= 0 && s->temperature <= 2)) abort();
    if (!flm_is_unset(s->top_p) && !(s->top_p >= 0 && s->top_p <= 1)) abort();
    if (s->max_new_tokens != FLM_UNSET_INT && s->max_new_tokens < 1) abort();
    if (s->n_stop < 0 || s->n_stop > SERVE_MAX_STOP) abort();
    for (int i = 0; i < s->n_stop; i++)
        if (!s->stop[i] || !s->stop[i][0]) abort();
    if (r->top_logprobs < 0 || r->top_logprobs > 20) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int k = 0; k < 2; k++) {
        serve_request r;
        serve_error e;
        if (serve_request_parse((const char *)data, size, k ? SERVE_COMPLETION : SERVE_CHAT, &r, &e) == 0) {
            check(&r);
            serve_request_free(&r);
        } else if (e.status != 400 || !e.message[0]) {
            abort();
        }
    }
    return 0;
}
