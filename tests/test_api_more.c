/* test_api_more.c — the public API added for the user-facing commands, through
 * include/fieldlm.h only: tokens into a caller buffer, detokenize, handles opened
 * for the tokenizer or the templates only, model facts, rendering from JSON with
 * tools and the dropped-message check, the generation settings and their "unset"
 * convention, the result's ids and text, adapter specs, and conversion with
 * progress, cancel and nothing left behind. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "fieldlm.h"

#define TINY TEST_DATA "/tiny-qwen2"
#define TINY_LORA TEST_DATA "/tiny-qwen2-lora"

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static flm_handle *open_as(const char *path, flm_open_what what) {
    flm_open_options o = {.n_threads = 2, .what = what};
    flm_handle *h = NULL;
    if (flm_open(path, &o, &h)) test_fail(__FILE__, __LINE__, "flm_open %s: %s", path, flm_errmsg(NULL));
    return h;
}

/* ---- tokens ---- */

TEST(api_tokenize_caller_buffer) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    const char *text = "Hello world";
    size_t n = 99;
    /* a size query: no buffer, the count comes back with FLM_ERR_BUFFER */
    CHECK_EQ_INT(flm_tokenize(h, text, strlen(text), 0, NULL, 0, &n), FLM_ERR_BUFFER);
    CHECK_EQ_INT((int)n, 2);
    CHECK(has(flm_errmsg(h), "2 tokens"));
    CHECK_STR(flm_status_str(FLM_ERR_BUFFER), "buffer too small");
    /* too small: the buffer is left untouched */
    int32_t ids[4] = {-7, -7, -7, -7};
    n = 0;
    CHECK_EQ_INT(flm_tokenize(h, text, strlen(text), 0, ids, 1, &n), FLM_ERR_BUFFER);
    CHECK_EQ_INT((int)n, 2);
    CHECK_EQ_INT(ids[0], -7);
    /* exactly enough */
    CHECK_EQ_INT(flm_tokenize(h, text, strlen(text), 0, ids, 2, &n), FLM_OK);
    CHECK_EQ_INT((int)n, 2);
    CHECK_EQ_INT(ids[0], 9707);
    CHECK_EQ_INT(ids[1], 1879);
    CHECK_EQ_INT(ids[2], -7);
    CHECK_STR(flm_errmsg(h), "");
    /* the empty text is zero tokens */
    CHECK_EQ_INT(flm_tokenize(h, "", 0, 0, NULL, 0, &n), FLM_OK);
    CHECK_EQ_INT((int)n, 0);
    /* special tokens: recognised by default, plain text with the flag */
    const char *sp = "<|im_start|>";
    CHECK_EQ_INT(flm_tokenize(h, sp, strlen(sp), 0, ids, 4, &n), FLM_OK);
    CHECK_EQ_INT((int)n, 1);
    CHECK_EQ_INT(ids[0], 151644);
    CHECK_EQ_INT(flm_tokenize(h, sp, strlen(sp), FLM_TOKENIZE_SPECIAL_AS_TEXT, ids, 4, &n), FLM_ERR_BUFFER);
    CHECK(n > 1);
    CHECK_EQ_INT(flm_tokenize(h, sp, strlen(sp), FLM_TOKENIZE_NO_ADDED, NULL, 0, &n), FLM_ERR_BUFFER);
    CHECK(n > 1);
    /* bad input */
    CHECK_EQ_INT(flm_tokenize(NULL, text, 5, 0, ids, 4, &n), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_tokenize(h, text, 5, 0, ids, 4, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_tokenize(h, NULL, 5, 0, ids, 4, &n), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_tokenize(h, text, 5, 0, NULL, 4, &n), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_tokenize(h, text, 5, 1 << 7, ids, 4, &n), FLM_ERR_ARG);
    CHECK(has(flm_errmsg(h), "flags"));
    CHECK(flm_tokenize(h, "\xff\xfe", 2, 0, ids, 4, &n) != FLM_OK); /* not UTF-8 */
    CHECK(flm_errmsg(h)[0] != 0);
    flm_close(h);
}

TEST(api_detokenize) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    const int32_t ids[] = {9707, 1879, 151644};
    char *t = NULL;
    size_t len = 0;
    CHECK_EQ_INT(flm_detokenize(h, ids, 3, &t, &len), FLM_OK);
    CHECK_STR(t, "Hello world<|im_start|>");
    CHECK_EQ_INT((int)len, 23);
    flm_free(t);
    /* no ids: the empty string, not NULL */
    CHECK_EQ_INT(flm_detokenize(h, ids, 0, &t, NULL), FLM_OK);
    CHECK(t && t[0] == 0);
    flm_free(t);
    /* an unknown id is an error, and nothing is returned */
    const int32_t bad[] = {9707, 99999999};
    t = (char *)1;
    CHECK_EQ_INT(flm_detokenize(h, bad, 2, &t, &len), FLM_ERR_ARG);
    CHECK(t == NULL && len == 0);
    CHECK(flm_errmsg(h)[0] != 0);
    CHECK_EQ_INT(flm_detokenize(h, NULL, 2, &t, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_detokenize(h, ids, 1, NULL, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_detokenize(NULL, ids, 1, &t, NULL), FLM_ERR_ARG);
    /* a round trip */
    const char *s = "Sow maize after the first rains: 2-3 seeds per hole. ñ 🌽";
    int32_t back[64];
    size_t n = 0;
    REQUIRE(flm_tokenize(h, s, strlen(s), 0, back, 64, &n) == FLM_OK);
    CHECK_EQ_INT(flm_detokenize(h, back, n, &t, &len), FLM_OK);
    CHECK_STR(t, s);
    flm_free(t);
    flm_close(h);
}

/* ---- partial handles ---- */

TEST(api_open_tokenizer_only) {
    /* a bare tokenizer.json file is enough */
    flm_handle *h = open_as(TINY "/tokenizer.json", FLM_OPEN_TOKENIZER);
    REQUIRE(h);
    int32_t ids[4];
    size_t n;
    CHECK_EQ_INT(flm_tokenize(h, "Hello world", 11, 0, ids, 4, &n), FLM_OK);
    CHECK_EQ_INT((int)n, 2);
    flm_info info;
    CHECK_EQ_INT(flm_model_info(h, &info), FLM_OK);
    CHECK(info.n_tokens > 151000);
    CHECK_EQ_INT(info.n_layers, 0);
    CHECK_EQ_INT(info.n_vocab, 0);
    CHECK_STR(info.architecture, "");
    CHECK_EQ_INT(flm_max_context(h), 0);
    /* what needs the weights or the template says so */
    flm_session *s = (flm_session *)1;
    CHECK_EQ_INT(flm_session_new(h, NULL, &s), FLM_ERR_UNSUPPORTED);
    CHECK(s == NULL && has(flm_errmsg(h), "FLM_OPEN_ALL"));
    flm_message m[] = {{"user", "Hi"}};
    char *t = NULL;
    CHECK_EQ_INT(flm_render(h, m, 1, 1, &t), FLM_ERR_UNSUPPORTED);
    CHECK_EQ_INT(flm_render_json(h, "[]", 2, NULL, &t, NULL), FLM_ERR_UNSUPPORTED);
    flm_gen_settings gs;
    CHECK_EQ_INT(flm_gen_settings_defaults(h, &gs), FLM_ERR_UNSUPPORTED);
    flm_close(h);
    /* bad choices */
    flm_open_options bad = {.what = (flm_open_what)9};
    CHECK_EQ_INT(flm_open(TINY, &bad, &h), FLM_ERR_ARG);
    CHECK(h == NULL);
    flm_lora_adapter ad = {TINY_LORA, 1.0f};
    flm_open_options lo = {.lora = &ad, .n_lora = 1, .what = FLM_OPEN_TOKENIZER};
    CHECK_EQ_INT(flm_open(TINY, &lo, &h), FLM_ERR_ARG);
    CHECK(has(flm_errmsg(NULL), "FLM_OPEN_ALL"));
    CHECK(flm_open(TEST_DATA "/no-such-model", &(flm_open_options){.what = FLM_OPEN_TOKENIZER}, &h) != FLM_OK);
    CHECK(h == NULL && flm_errmsg(NULL)[0]);
}

TEST(api_open_template_only) {
    /* a folder with nothing but a chat template */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/api_tpl_only", test_tmpdir());
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if tools %}tools: {{ tools | length }}\n"
          "{% endif %}{% if add_generation_prompt %}[assistant] {% endif %}", f);
    fclose(f);
    flm_handle *h = open_as(dir, FLM_OPEN_TEMPLATE);
    REQUIRE(h);
    flm_info info;
    CHECK_EQ_INT(flm_model_info(h, &info), FLM_OK);
    CHECK_EQ_INT(info.has_chat_template, 1);
    CHECK_EQ_INT(info.n_tokens, 0);
    const char *msgs = "[{\"role\": \"user\", \"content\": \"Hi\"}]";
    char *t = NULL;
    size_t len = 0;
    flm_render_options ro = {.add_generation_prompt = 1};
    CHECK_EQ_INT(flm_render_json(h, msgs, strlen(msgs), &ro, &t, &len), FLM_OK);
    CHECK_STR(t, "[user] Hi\n[assistant] ");
    CHECK_EQ_INT((int)len, (int)strlen(t));
    flm_free(t);
    const char *tools = "[{\"type\": \"function\"}, {\"type\": \"function\"}]";
    ro.tools_json = tools;
    ro.tools_len = strlen(tools);
    ro.add_generation_prompt = 0;
    CHECK_EQ_INT(flm_render_json(h, msgs, strlen(msgs), &ro, &t, NULL), FLM_OK);
    CHECK_STR(t, "[user] Hi\ntools: 2\n");
    flm_free(t);
    int32_t ids[4];
    size_t n;
    CHECK_EQ_INT(flm_tokenize(h, "Hi", 2, 0, ids, 4, &n), FLM_ERR_UNSUPPORTED);
    CHECK(has(flm_errmsg(h), "chat templates only"));
    flm_close(h);
}

/* ---- model facts ---- */

TEST(api_model_info) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    flm_info info;
    CHECK_EQ_INT(flm_model_info(h, &info), FLM_OK);
    CHECK_STR(info.path, TINY);
    CHECK_STR(info.architecture, "qwen2");
    CHECK(info.dtype && info.dtype[0]);
    CHECK_EQ_INT(info.n_layers, 2);
    CHECK_EQ_INT(info.n_embd, 32);
    CHECK_EQ_INT(info.n_ff, 96);
    CHECK_EQ_INT(info.n_heads, 2);
    CHECK_EQ_INT(info.n_kv_heads, 1);
    CHECK_EQ_INT(info.head_dim, 16);
    CHECK_EQ_INT(info.n_vocab, 151936);
    CHECK_EQ_INT(info.max_context, 32768);
    CHECK(info.n_tokens > 151000 && info.n_tokens <= info.n_vocab);
    CHECK_EQ_INT(info.n_stop_ids, 2);
    CHECK_EQ_INT(info.stop_ids[0], 151645);
    CHECK_EQ_INT(info.stop_ids[1], 151643);
    CHECK_EQ_INT(info.has_chat_template, 1);
    CHECK_EQ_INT(info.n_lora, 0);
    CHECK(info.warning == NULL);
    CHECK_EQ_INT(flm_model_info(h, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_model_info(NULL, &info), FLM_ERR_ARG);
    flm_close(h);
    /* weights loaded into memory are counted; mapped ones are not */
    for (int i = 0; i < 2; i++) {
        flm_open_options o = {.weights = i ? FLM_WEIGHTS_LOAD : FLM_WEIGHTS_MAP};
        REQUIRE(flm_open(TINY, &o, &h) == FLM_OK);
        CHECK_EQ_INT(flm_model_info(h, &info), FLM_OK);
        CHECK(i ? info.weights_in_memory > 0 : info.weights_in_memory == 0);
        flm_close(h);
    }
}

/* ---- rendering ---- */

typedef struct {
    size_t index[512];
    char role[512][32];
    size_t n;
} dropped_log;

static void log_dropped(void *user, size_t index, const char *role) {
    dropped_log *d = user;
    if (d->n < 512) {
        d->index[d->n] = index;
        snprintf(d->role[d->n], sizeof d->role[d->n], "%s", role ? role : "(null)");
    }
    d->n++;
}

TEST(api_render_json_and_dropped) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    /* the same prompt as flm_render for role/content messages */
    flm_message m[] = {{"system", "Be brief."}, {"user", "Hi"}};
    char *a = NULL, *b = NULL;
    REQUIRE(flm_render(h, m, 2, 1, &a) == FLM_OK);
    const char *js = "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}]";
    flm_render_options ro = {.add_generation_prompt = 1};
    CHECK_EQ_INT(flm_render_json(h, js, strlen(js), &ro, &b, NULL), FLM_OK);
    CHECK_STR(a, b);
    flm_free(a);
    flm_free(b);
    /* tools select the tool-use part of Qwen2's template */
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]";
    ro.tools_json = tools;
    ro.tools_len = strlen(tools);
    CHECK_EQ_INT(flm_render_json(h, js, strlen(js), &ro, &b, NULL), FLM_OK);
    CHECK(has(b, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\"}}\n</tools>"));
    flm_free(b);
    /* dropped messages: an unknown role and a message without one */
    const char *odd = "[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"critic\", \"content\": \"x\"}, {\"content\": \"y\"}]";
    static dropped_log d;
    memset(&d, 0, sizeof d);
    size_t unchecked = 99;
    flm_render_options rd = {.add_generation_prompt = 1, .dropped = log_dropped, .user = &d, .n_unchecked = &unchecked};
    CHECK_EQ_INT(flm_render_json(h, odd, strlen(odd), &rd, &b, NULL), FLM_OK);
    flm_free(b);
    CHECK_EQ_INT((int)d.n, 2);
    CHECK_EQ_INT((int)d.index[0], 1);
    CHECK_STR(d.role[0], "critic");
    CHECK_EQ_INT((int)d.index[1], 2);
    CHECK_STR(d.role[1], "(null)");
    CHECK_EQ_INT((int)unchecked, 0);
    /* the same through flm_render_check for role/content messages */
    flm_message mm[] = {{"user", "Hi"}, {"critic", "x"}};
    memset(&d, 0, sizeof d);
    CHECK_EQ_INT(flm_render_check(h, mm, 2, 1, log_dropped, &d, NULL), FLM_OK);
    CHECK_EQ_INT((int)d.n, 1);
    CHECK_EQ_INT((int)d.index[0], 1);
    CHECK_STR(d.role[0], "critic");
    /* nothing dropped */
    memset(&d, 0, sizeof d);
    CHECK_EQ_INT(flm_render_check(h, m, 2, 1, log_dropped, &d, NULL), FLM_OK);
    CHECK_EQ_INT((int)d.n, 0);
    /* a message that does not render: the render's error, no callback */
    flm_message broken[] = {{"user", NULL}};
    CHECK(flm_render_check(h, broken, 1, 1, log_dropped, &d, NULL) != FLM_OK);
    CHECK_EQ_INT((int)d.n, 0);
    flm_close(h);
}

TEST(api_render_json_many_dropped_are_bounded) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    /* 400 messages with a role the template skips: 256 are re-rendered, the rest counted */
    size_t cap = 400 * 64 + 16, k = 0;
    char *js = malloc(cap);
    REQUIRE(js);
    js[k++] = '[';
    for (int i = 0; i < 400; i++) k += (size_t)snprintf(js + k, cap - k, "%s{\"role\": \"note\", \"content\": \"n%d\"}", i ? "," : "", i);
    js[k++] = ']';
    static dropped_log d;
    memset(&d, 0, sizeof d);
    size_t unchecked = 0;
    flm_render_options ro = {.dropped = log_dropped, .user = &d, .n_unchecked = &unchecked};
    char *t = NULL;
    CHECK_EQ_INT(flm_render_json(h, js, k, &ro, &t, NULL), FLM_OK);
    CHECK_EQ_INT((int)d.n, 256);
    CHECK_EQ_INT((int)unchecked, 144);
    flm_free(t);
    free(js);
    flm_close(h);
}

TEST(api_render_json_errors) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    char *t = (char *)1;
    flm_render_options ro = {.messages_name = "conv.json", .tools_name = "tools.json"};
    CHECK_EQ_INT(flm_render_json(h, "[{\"role\": ", 10, &ro, &t, NULL), FLM_ERR_FORMAT);
    CHECK(t == NULL && has(flm_errmsg(h), "conv.json"));
    CHECK_EQ_INT(flm_render_json(h, "{}", 2, &ro, &t, NULL), FLM_ERR_FORMAT);
    CHECK(has(flm_errmsg(h), "conv.json: messages must be a JSON array"));
    CHECK_EQ_INT(flm_render_json(h, "[1]", 3, &ro, &t, NULL), FLM_ERR_FORMAT);
    CHECK(has(flm_errmsg(h), "messages[0] is not an object"));
    ro.tools_json = "[\"f\"]";
    ro.tools_len = 5;
    CHECK_EQ_INT(flm_render_json(h, "[]", 2, &ro, &t, NULL), FLM_ERR_FORMAT);
    CHECK(has(flm_errmsg(h), "tools.json: tools[0] is not an object"));
    ro.tools_json = NULL;
    ro.tools_len = 0;
    ro.template_name = "no-such-template";
    CHECK(flm_render_json(h, "[]", 2, &ro, &t, NULL) != FLM_OK);
    CHECK(has(flm_errmsg(h), "no-such-template"));
    CHECK_EQ_INT(flm_render_json(h, "[]", 2, NULL, NULL, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_render_json(h, NULL, 2, NULL, &t, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_render_json(NULL, "[]", 2, NULL, &t, NULL), FLM_ERR_ARG);
    /* a template error names the file and the line */
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/api_tpl_bad", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("ok\n{% for m in messages %}\n{{ m.role | frob }}\n", f);
    fclose(f);
    flm_close(h);
    h = NULL;
    CHECK_EQ_INT(flm_open(dir, &(flm_open_options){.what = FLM_OPEN_TEMPLATE}, &h), FLM_OK);
    CHECK_EQ_INT(flm_render_json(h, "[]", 2, NULL, &t, NULL), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_errmsg(h), "chat_template.jinja") && has(flm_errmsg(h), "line 3"), "%s", flm_errmsg(h));
    flm_close(h);
}

/* ---- generation settings ---- */

TEST(api_gen_settings_unset_and_defaults) {
    flm_gen_settings s;
    memset(&s, 0x5a, sizeof s);
    flm_gen_settings_init(&s);
    CHECK_EQ_INT(s.do_sample, FLM_UNSET_INT);
    CHECK(flm_is_unset(s.temperature) && flm_is_unset(s.top_p) && flm_is_unset(s.min_p) && flm_is_unset(s.repetition_penalty));
    CHECK(!flm_is_unset(0.0) && !flm_is_unset(1.0));
    CHECK_EQ_INT(s.top_k, -1);
    CHECK_EQ_INT((int)s.max_new_tokens, -1);
    CHECK_EQ_INT(s.n_ctx, -1);
    CHECK_EQ_INT(s.n_threads, -1);
    CHECK(s.seed == 0 && s.stop == NULL && s.n_stop == 0);
    flm_gen_settings_init(NULL);

    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    /* the model's generation_config.json, resolved */
    flm_gen_settings d;
    CHECK_EQ_INT(flm_gen_settings_defaults(h, &d), FLM_OK);
    CHECK_EQ_INT(d.do_sample, 1);
    CHECK_NEAR(d.temperature, 0.7, 1e-12);
    CHECK_EQ_INT(d.top_k, 20);
    CHECK_NEAR(d.top_p, 0.8, 1e-12);
    CHECK_NEAR(d.min_p, 0.0, 0);
    CHECK_NEAR(d.repetition_penalty, 1.05, 1e-12);
    CHECK_EQ_INT((int)d.max_new_tokens, FLM_DEFAULT_MAX_NEW_TOKENS);
    CHECK_EQ_INT(d.n_ctx, 4096);
    CHECK_EQ_INT(d.n_threads, 2);
    CHECK_EQ_INT(flm_gen_settings_defaults(h, NULL), FLM_ERR_ARG);

    /* a session: unset fields resolve to the defaults, set ones win; stop strings are copied */
    char stop0[8] = "ab";
    const char *stops[] = {stop0, "cd"};
    flm_gen_settings_init(&s);
    s.top_k = 3;
    s.temperature = 0.25;
    s.seed = 77;
    s.n_ctx = 128;
    s.max_new_tokens = 9;
    s.stop = stops;
    s.n_stop = 2;
    flm_session *ss = NULL;
    REQUIRE(flm_session_new(h, &s, &ss) == FLM_OK);
    stop0[0] = 'X';
    flm_gen_settings e;
    CHECK_EQ_INT(flm_session_settings(ss, &e), FLM_OK);
    CHECK_EQ_INT(e.do_sample, 1);
    CHECK_NEAR(e.temperature, 0.25, 0);
    CHECK_EQ_INT(e.top_k, 3);
    CHECK_NEAR(e.top_p, 0.8, 1e-12);
    CHECK_NEAR(e.repetition_penalty, 1.05, 1e-12);
    CHECK(e.seed == 77);
    CHECK_EQ_INT((int)e.max_new_tokens, 9);
    CHECK_EQ_INT(e.n_ctx, 128);
    CHECK_EQ_INT(e.n_threads, 2);
    REQUIRE(e.n_stop == 2 && e.stop);
    CHECK_STR(e.stop[0], "ab");
    CHECK_STR(e.stop[1], "cd");
    CHECK_EQ_INT(flm_session_settings(ss, NULL), FLM_ERR_ARG);
    flm_session_free(ss);
    /* NULL settings: all unset */
    REQUIRE(flm_session_new(h, NULL, &ss) == FLM_OK);
    CHECK_EQ_INT(flm_session_settings(ss, &e), FLM_OK);
    CHECK_EQ_INT(e.top_k, 20);
    CHECK_EQ_INT(e.n_ctx, 4096);
    flm_session_free(ss);
    flm_close(h);
}

TEST(api_gen_settings_out_of_range) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    static const struct { const char *field; int what; } bad[] = {
        {"do_sample", 0}, {"temperature", 1}, {"top_k", 2}, {"top_p", 3}, {"min_p", 4},
        {"repetition_penalty", 5}, {"max_new_tokens", 6}, {"n_ctx", 7}, {"n_threads", 8}, {"stop", 9},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        flm_gen_settings s;
        flm_gen_settings_init(&s);
        switch (bad[i].what) {
        case 0: s.do_sample = 2; break;
        case 1: s.temperature = -0.5; break;
        case 2: s.top_k = -2; break;
        case 3: s.top_p = 1.5; break;
        case 4: s.min_p = -1; break;
        case 5: s.repetition_penalty = 0; break;
        case 6: s.max_new_tokens = 0; break;
        case 7: s.n_ctx = 0; break;
        case 8: s.n_threads = -3; break;
        case 9: s.n_stop = 1; break;
        }
        flm_session *ss = (flm_session *)1;
        CHECK_MSG(flm_session_new(h, &s, &ss) == FLM_ERR_ARG, "%s", bad[i].field);
        CHECK(ss == NULL);
        CHECK_MSG(has(flm_errmsg(h), bad[i].field), "%s: %s", bad[i].field, flm_errmsg(h));
    }
    /* an empty stop string is refused by the session */
    const char *empty[] = {""};
    flm_gen_settings s;
    flm_gen_settings_init(&s);
    s.stop = empty;
    s.n_stop = 1;
    flm_session *ss = NULL;
    CHECK_EQ_INT(flm_session_new(h, &s, &ss), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_session_new(h, NULL, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_session_new(NULL, NULL, &ss), FLM_ERR_ARG);
    flm_close(h);
}

typedef struct {
    char text[4096];
    size_t len;
    int n;
} collect;

static int on_piece(void *user, const char *piece, size_t len, int32_t token) {
    (void)token;
    collect *c = user;
    if (c->len + len < sizeof c->text) { memcpy(c->text + c->len, piece, len); c->len += len; c->text[c->len] = 0; }
    c->n++;
    return 0;
}

/* The result carries the prompt ids, the generated ids and the text; a greedy
 * session (do_sample 0, no penalty) matches the text its ids decode to. */
TEST(api_result_ids_and_text) {
    flm_handle *h = open_as(TINY, FLM_OPEN_ALL);
    REQUIRE(h);
    flm_gen_settings s;
    flm_gen_settings_init(&s);
    s.do_sample = 0;
    s.repetition_penalty = 1.0;
    s.max_new_tokens = 6;
    flm_session *ss = NULL;
    REQUIRE(flm_session_new(h, &s, &ss) == FLM_OK);
    static collect c;
    memset(&c, 0, sizeof c);
    flm_result r;
    flm_message m[] = {{"user", "hello"}};
    REQUIRE(flm_generate(ss, m, 1, on_piece, &c, &r) == FLM_OK);
    CHECK_EQ_INT(r.n_prompt_ids, 30);
    CHECK_EQ_INT(r.n_prompt_ids, r.timings.prompt_tokens);
    CHECK_EQ_INT(r.prompt_ids[0], 151644);
    CHECK_EQ_INT(r.n_ids, 6);
    CHECK_EQ_INT((int)r.text_len, (int)c.len);
    CHECK_STR(r.text, c.text);
    char *t = NULL;
    REQUIRE(flm_detokenize(h, r.ids, (size_t)r.n_ids, &t, NULL) == FLM_OK);
    CHECK_STR(t, r.text);
    flm_free(t);
    /* the prompt's ids are what flm_render + flm_tokenize give */
    char *prompt = NULL;
    REQUIRE(flm_render(h, m, 1, 1, &prompt) == FLM_OK);
    int32_t ids[64];
    size_t n = 0;
    REQUIRE(flm_tokenize(h, prompt, strlen(prompt), 0, ids, 64, &n) == FLM_OK);
    CHECK_EQ_INT((int)n, r.n_prompt_ids);
    CHECK(n == (size_t)r.n_prompt_ids && !memcmp(ids, r.prompt_ids, n * sizeof *ids));
    flm_free(prompt);
    /* the next turn reuses the cached prefix */
    flm_message m2[] = {{"user", "hello"}, {"assistant", r.text}, {"user", "again"}};
    REQUIRE(flm_generate(ss, m2, 3, NULL, NULL, &r) == FLM_OK);
    CHECK(r.timings.reused_tokens >= 29);
    flm_session_free(ss);
    flm_close(h);
}

/* ---- adapters ---- */

TEST(api_lora_spec_and_probe) {
    char *p = NULL;
    float sc = 0;
    CHECK_EQ_INT(flm_lora_spec_parse("adapters/a:0.5", &p, &sc), FLM_OK);
    CHECK_STR(p, "adapters/a");
    CHECK_NEAR(sc, 0.5f, 0);
    flm_free(p);
    CHECK_EQ_INT(flm_lora_spec_parse("a:b/c", &p, &sc), FLM_OK);
    CHECK_STR(p, "a:b/c");
    CHECK_NEAR(sc, 1.0f, 0);
    flm_free(p);
    CHECK_EQ_INT(flm_lora_spec_parse(":2", &p, &sc), FLM_ERR_ARG);
    CHECK(p == NULL);
    CHECK_EQ_INT(flm_lora_spec_parse(NULL, &p, &sc), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_lora_spec_parse("a", NULL, &sc), FLM_ERR_ARG);

    int is = -1;
    char *base = NULL;
    CHECK_EQ_INT(flm_lora_probe(TEST_DATA "/kcc-advisor-lora", &is, &base), FLM_OK);
    CHECK_EQ_INT(is, 1);
    CHECK_STR(base, "../kcc-advisor");
    flm_free(base);
    CHECK_EQ_INT(flm_lora_probe(TINY, &is, &base), FLM_OK);
    CHECK(is == 0 && base == NULL);
    CHECK_EQ_INT(flm_lora_probe(TEST_DATA "/no-such-dir", &is, NULL), FLM_OK);
    CHECK_EQ_INT(is, 0);
    CHECK_EQ_INT(flm_lora_probe(NULL, &is, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_lora_probe(TINY, NULL, NULL), FLM_ERR_ARG);
}

/* ---- conversion ---- */

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

typedef struct {
    int calls, last_index, last_total, cancel_at;
    uint64_t last_done, last_bytes_total;
    bool monotonic;
    volatile int *cancel;
} progress_log;

static void on_progress(void *user, int index, int total, const char *name, uint64_t done, uint64_t bytes_total) {
    progress_log *p = user;
    if (p->calls && (index < p->last_index || done < p->last_done)) p->monotonic = false;
    if (!name) p->monotonic = false;
    p->calls++;
    p->last_index = index;
    p->last_total = total;
    p->last_done = done;
    p->last_bytes_total = bytes_total;
    if (p->cancel_at && index == p->cancel_at) *p->cancel = 1;
}

TEST(api_convert_progress_and_result) {
    CHECK_STR(flm_type_name(FLM_TYPE_Q8_0), "q8_0");
    CHECK_STR(flm_type_name(FLM_TYPE_BF16), "bf16");
    CHECK(flm_type_name((flm_type)42) == NULL);
    flm_type t;
    CHECK_EQ_INT(flm_type_from_name("q4_0", &t), FLM_OK);
    CHECK_EQ_INT(t, FLM_TYPE_Q4_0);
    CHECK_EQ_INT(flm_type_from_name("q9", &t), FLM_ERR_ARG);
    CHECK(has(flm_errmsg(NULL), "q9"));
    flm_convert_options o;
    memset(&o, 0x5a, sizeof o);
    flm_convert_options_init(&o);
    CHECK_EQ_INT(o.type, FLM_TYPE_Q8_0);
    CHECK(o.lora == NULL && o.n_lora == 0 && o.progress == NULL && o.cancel == NULL);

    char dir[512], out[600];
    snprintf(dir, sizeof dir, "%s/api_convert_ok", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(out, sizeof out, "%s/tiny-f16.gguf", dir);
    progress_log p = {.monotonic = true};
    flm_lora_adapter ad = {TINY_LORA, 0.5f};
    o.type = FLM_TYPE_F16;
    o.n_threads = 2;
    o.progress = on_progress;
    o.user = &p;
    o.lora = &ad;
    o.n_lora = 1;
    flm_convert_stats st;
    CHECK_EQ_INT(flm_convert(TINY, out, &o, &st), FLM_OK);
    CHECK(p.calls > 2 && p.monotonic);
    CHECK_EQ_INT(p.last_index, p.last_total);          /* the final call: index == total */
    CHECK(p.last_done == p.last_bytes_total && p.last_bytes_total > 0);
    CHECK(st.n_tensors > 0 && st.bytes_written > 0 && st.seconds >= 0 && st.peak_rss > 0);
    CHECK_EQ_INT(st.n_tensors, p.last_total);
    CHECK_EQ_INT(st.no_tokenizer, 0);
    CHECK_EQ_INT(count_entries(dir), 1);
    /* the package opens, with the type asked for and the adapter merged in */
    flm_handle *h = NULL;
    REQUIRE(flm_open(out, NULL, &h) == FLM_OK);
    flm_info info;
    CHECK_EQ_INT(flm_model_info(h, &info), FLM_OK);
    CHECK_STR(info.dtype, "f16");
    CHECK_EQ_INT(info.n_layers, 2);
    flm_close(h);
}

TEST(api_convert_cancel_and_errors_leave_nothing) {
    char dir[512], out[600];
    snprintf(dir, sizeof dir, "%s/api_convert_cancel", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(out, sizeof out, "%s/never.gguf", dir);
    /* cancelled before it starts */
    volatile int cancel = 1;
    flm_convert_options o;
    flm_convert_options_init(&o);
    o.n_threads = 2;
    o.cancel = &cancel;
    flm_convert_stats st;
    memset(&st, 0x5a, sizeof st);
    CHECK_EQ_INT(flm_convert(TINY, out, &o, &st), FLM_ERR_CANCELLED);
    CHECK(has(flm_errmsg(NULL), "interrupted"));
    CHECK_EQ_INT(st.n_tensors, 0);
    CHECK_EQ_INT(count_entries(dir), 0);
    /* cancelled from the progress callback, mid-way */
    cancel = 0;
    progress_log p = {.monotonic = true, .cancel_at = 3, .cancel = &cancel};
    o.progress = on_progress;
    o.user = &p;
    CHECK_EQ_INT(flm_convert(TINY, out, &o, NULL), FLM_ERR_CANCELLED);
    CHECK(p.calls >= 3 && p.last_index < p.last_total);
    CHECK_EQ_INT(count_entries(dir), 0);
    /* refused before any work */
    cancel = 0;
    o.progress = NULL;
    CHECK_EQ_INT(flm_convert(TINY, TINY "/config.json", &o, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_convert(TINY, dir, &o, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_convert(NULL, out, &o, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_convert(TINY, NULL, &o, NULL), FLM_ERR_ARG);
    o.type = (flm_type)17;
    CHECK_EQ_INT(flm_convert(TINY, out, &o, NULL), FLM_ERR_ARG);
    CHECK(has(flm_errmsg(NULL), "type"));
    o.type = FLM_TYPE_F32;
    o.n_lora = 1;
    CHECK_EQ_INT(flm_convert(TINY, out, &o, NULL), FLM_ERR_ARG);
    flm_lora_adapter none = {NULL, 1.0f};
    o.lora = &none;
    CHECK_EQ_INT(flm_convert(TINY, out, &o, NULL), FLM_ERR_ARG);
    /* an adapter folder given as the model */
    o.lora = NULL;
    o.n_lora = 0;
    CHECK(flm_convert(TINY_LORA, out, &o, NULL) != FLM_OK);
    CHECK_EQ_INT(count_entries(dir), 0);
}
