/* test_api.c — the public C API (include/fieldlm.h): open/close and errors,
 * rendering, generation through callbacks, seeds and reset, cancellation from the
 * callback, from the callback's return value and from another thread, and the
 * example program (built from examples/simple.c with only the public header). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "fieldlm.h"

#define TINY TEST_DATA "/tiny-qwen2"
/* tiny-qwen2 greedy answers "hello" with newlines only, never an eos: a long run to cancel */
#define LONG_RUN_TOKENS 2000

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* Argmax with no processors: what the CLI's --greedy sets. */
static flm_gen_settings greedy_settings(void) {
    flm_gen_settings o;
    flm_gen_settings_init(&o);
    o.do_sample = 0;
    o.repetition_penalty = 1.0;
    return o;
}

static flm_handle *open_tiny(void) {
    flm_open_options o = {.n_threads = 2};
    flm_handle *h = NULL;
    if (flm_open(TINY, &o, &h)) test_fail(__FILE__, __LINE__, "flm_open: %s", flm_errmsg(NULL));
    return h;
}

typedef struct {
    char text[16384];
    size_t len;
    atomic_int calls;
    int cancel_at;       /* flm_cancel from the callback at this call (0 = never) */
    int stop_at;         /* return non-zero at this call */
    int sleep_us;        /* per call, to give another thread time */
    flm_session *s;
} sink;

static int on_piece(void *user, const char *piece, size_t len, int32_t token) {
    (void)token;
    sink *k = user;
    int n = atomic_fetch_add(&k->calls, 1) + 1;
    if (k->len + len < sizeof k->text) {
        memcpy(k->text + k->len, piece, len);
        k->len += len;
        k->text[k->len] = 0;
    }
    if (k->sleep_us) nanosleep(&(struct timespec){0, k->sleep_us * 1000L}, NULL);
    if (k->cancel_at && n == k->cancel_at) flm_cancel(k->s);
    return k->stop_at && n == k->stop_at;
}

TEST(api_open_errors) {
    flm_handle *h = (flm_handle *)1;
    CHECK(flm_open("tests/data/no-such-model", NULL, &h) != FLM_OK);
    CHECK(h == NULL);
    CHECK(flm_errmsg(NULL)[0] != 0);
    flm_close(NULL);
    flm_session_free(NULL);
}

TEST(api_render) {
    flm_handle *h = open_tiny();
    REQUIRE(h);
    CHECK_EQ_INT(flm_max_context(h), 32768);
    CHECK_EQ_INT(flm_vocab_size(h), 151936);
    flm_message m[] = {{"system", "Be brief."}, {"user", "Hi"}};
    char *t = NULL;
    CHECK_EQ_INT(flm_render(h, m, 2, 1, &t), FLM_OK);
    CHECK_STR(t, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    flm_free(t);
    /* no system message: the template's default applies, as in transformers */
    CHECK_EQ_INT(flm_render(h, m + 1, 1, 0, &t), FLM_OK);
    CHECK_STR(t, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\nHi<|im_end|>\n");
    flm_free(t);
    flm_message bad[] = {{"user", NULL}};
    CHECK(flm_render(h, bad, 1, 1, &t) != FLM_OK && t == NULL);
    CHECK(has(flm_errmsg(h), "content"));
    flm_close(h);
}

TEST(api_generate_and_errors) {
    flm_handle *h = open_tiny();
    REQUIRE(h);
    flm_gen_settings o;
    flm_gen_settings_init(&o);
    o.top_p = 2; /* out of range */
    flm_session *s = NULL;
    CHECK(flm_session_new(h, &o, &s) != FLM_OK && s == NULL);
    CHECK(has(flm_errmsg(h), "top_p"));

    o = greedy_settings();
    o.max_new_tokens = 5;
    o.n_ctx = 64;
    REQUIRE(flm_session_new(h, &o, &s) == FLM_OK);
    CHECK_EQ_INT(flm_session_n_ctx(s), 64);
    sink k = {.s = s};
    flm_result r;
    flm_message m[] = {{"user", "hello"}};
    CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &k, &r), FLM_OK);
    CHECK_EQ_INT(r.stop_reason, FLM_STOP_LENGTH);
    CHECK_EQ_INT(r.timings.generated_tokens, 5);
    CHECK_EQ_INT(r.timings.prompt_tokens, 30);
    CHECK_EQ_INT(atomic_load(&k.calls), 5);
    CHECK_STR(flm_stop_reason_str(r.stop_reason), "length");
    /* the context (32) is full after 2 more tokens than the prompt (30) */
    flm_message m2[] = {{"user", "hello"}};
    o.max_new_tokens = 100;
    o.n_ctx = 32;
    flm_session *s2 = NULL;
    REQUIRE(flm_session_new(h, &o, &s2) == FLM_OK);
    CHECK_EQ_INT(flm_generate(s2, m2, 1, NULL, NULL, &r), FLM_OK);
    CHECK_EQ_INT(r.stop_reason, FLM_STOP_CONTEXT);
    CHECK_EQ_INT(r.timings.generated_tokens, 2);
    /* a prompt longer than the context is an error, with the numbers */
    flm_message big[] = {{"user", "a much longer question that does not fit in thirty-two tokens at all"}};
    CHECK_EQ_INT(flm_generate(s2, big, 1, NULL, NULL, &r), FLM_ERR_CONTEXT);
    CHECK(has(flm_session_errmsg(s2), "context holds 32"));
    CHECK_EQ_INT(flm_generate_text(s2, "hello", NULL, NULL, &r), FLM_OK);
    CHECK_EQ_INT(r.timings.prompt_tokens, 1);
    flm_session_free(s2);
    flm_session_free(s);
    flm_close(h);
}

TEST(api_seed_and_reset) {
    flm_handle *h = open_tiny();
    REQUIRE(h);
    flm_gen_settings o; /* sampling, from generation_config.json */
    flm_gen_settings_init(&o);
    o.max_new_tokens = 12;
    o.seed = 5;
    flm_session *s = NULL, *s6 = NULL;
    REQUIRE(flm_session_new(h, &o, &s) == FLM_OK);
    o.seed = 6;
    REQUIRE(flm_session_new(h, &o, &s6) == FLM_OK);
    flm_message m[] = {{"user", "hello"}};
    static sink a, b, c;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &a, NULL), FLM_OK);
    flm_session_reset(s);
    CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &b, NULL), FLM_OK);
    CHECK_EQ_INT(flm_generate(s6, m, 1, on_piece, &c, NULL), FLM_OK);
    CHECK_STR(a.text, b.text);
    CHECK(strcmp(a.text, c.text) != 0);
    flm_session_free(s);
    flm_session_free(s6);
    flm_close(h);
}

static flm_session *long_session(flm_handle *h) {
    flm_gen_settings o = greedy_settings();
    o.max_new_tokens = LONG_RUN_TOKENS;
    flm_session *s = NULL;
    if (flm_session_new(h, &o, &s)) test_fail(__FILE__, __LINE__, "session: %s", flm_errmsg(h));
    return s;
}

TEST(api_cancel_from_callback) {
    flm_handle *h = open_tiny();
    REQUIRE(h);
    flm_session *s = long_session(h);
    REQUIRE(s);
    flm_message m[] = {{"user", "hello"}};
    static sink k;
    memset(&k, 0, sizeof k);
    k.s = s;
    k.cancel_at = 3; /* flm_cancel: stops before the next token */
    flm_result r;
    CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &k, &r), FLM_OK);
    CHECK_EQ_INT(r.stop_reason, FLM_STOP_CANCELLED);
    CHECK_EQ_INT(r.timings.generated_tokens, 3);
    /* the flag does not outlive the call */
    memset(&k, 0, sizeof k);
    k.s = s;
    k.stop_at = 2; /* a non-zero return stops too */
    CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &k, &r), FLM_OK);
    CHECK_EQ_INT(r.stop_reason, FLM_STOP_CANCELLED);
    CHECK_EQ_INT(r.timings.generated_tokens, 2);
    CHECK_EQ_INT(atomic_load(&k.calls), 2);
    flm_session_free(s);
    flm_close(h);
}

typedef struct {
    sink *k;
    flm_session *s;
} canceller;

static void *cancel_later(void *arg) {
    canceller *c = arg;
    while (atomic_load(&c->k->calls) < 3) nanosleep(&(struct timespec){0, 200000}, NULL);
    flm_cancel(c->s);
    return NULL;
}

TEST(api_cancel_from_thread) {
    flm_handle *h = open_tiny();
    REQUIRE(h);
    flm_session *s = long_session(h);
    REQUIRE(s);
    flm_message m[] = {{"user", "hello"}};
    static sink k;
    memset(&k, 0, sizeof k);
    k.s = s;
    k.sleep_us = 2000;
    canceller c = {&k, s};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, cancel_later, &c) == 0);
    flm_result r;
    CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &k, &r), FLM_OK);
    pthread_join(t, NULL);
    CHECK_EQ_INT(r.stop_reason, FLM_STOP_CANCELLED);
    CHECK(r.timings.generated_tokens >= 3 && r.timings.generated_tokens < LONG_RUN_TOKENS);
    CHECK_EQ_INT(r.timings.generated_tokens, atomic_load(&k.calls));
    flm_session_free(s);
    flm_close(h);
}

/* examples/simple.c compiles with only include/ on the path, links with the library
 * next to the binary under test, and answers. */
TEST(api_example_builds_and_runs) {
    const char *bin = test_bin();
    const char *slash = strrchr(bin, '/');
    char dir[256];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - bin) : 1, slash ? bin : ".");
    bool san = has(dir, "san");
    char cmd[2048], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 -Wall -Wextra -Werror %s -Iinclude examples/simple.c %s/libfieldlm.a "
             "$(pkg-config --libs libutf8proc libpcre2-8 2>/dev/null || echo -lutf8proc -lpcre2-8) -lm -pthread -o %s/simple 2>&1",
             san ? "-fsanitize=address,undefined" : "", dir, test_tmpdir());
    CHECK_EQ_INT(test_run(cmd, &out, NULL), 0);
    if (out && out[0]) test_fail(__FILE__, __LINE__, "compiler said: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/simple " TINY " 'When should I sow maize?'", test_tmpdir());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(out && strlen(out) > 1);
    CHECK_MSG(has(err, "generated") && has(err, "stop: "), "stderr: %s", err ? err : "");
    free(out);
    free(err);
}

/* flm_open_options.weights: mapped and loaded weights answer the same, token for token;
 * an out-of-range mode is refused. */
TEST(api_weights_map_and_load_agree) {
    flm_open_options bad = {.weights = (flm_weights_mode)7};
    flm_handle *hb = NULL;
    CHECK_EQ_INT(flm_open(BUNDLED_MODEL, &bad, &hb), FLM_ERR_ARG);
    CHECK(hb == NULL && has(flm_errmsg(NULL), "weights"));
    char text[2][16384];
    for (int i = 0; i < 2; i++) {
        flm_open_options oo = {.n_threads = 2, .weights = i ? FLM_WEIGHTS_LOAD : FLM_WEIGHTS_MAP};
        flm_handle *h = NULL;
        REQUIRE(flm_open(BUNDLED_MODEL, &oo, &h) == FLM_OK);
        flm_gen_settings o = greedy_settings();
        o.max_new_tokens = 24;
        flm_session *s = NULL;
        REQUIRE(flm_session_new(h, &o, &s) == FLM_OK);
        sink k = {.s = s};
        flm_message m[] = {{"user", "How do I control aphids on mustard?"}};
        CHECK_EQ_INT(flm_generate(s, m, 1, on_piece, &k, NULL), FLM_OK);
        memcpy(text[i], k.text, sizeof text[i]);
        CHECK(k.len > 0);
        flm_session_free(s);
        flm_close(h);
    }
    CHECK_STR(text[0], text[1]);
}
