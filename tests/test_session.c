/* test_session.c — the generation layer (src/runtime/session.c) and `fieldlm run` / `chat`:
 * greedy generation through the full text path against the transformers references
 * (kcc-advisor, + LoRA), seeds, context limits, eos ids, UTF-8 streaming, stop
 * strings, a scripted chat through a pipe, KV-cache prefix reuse. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "base/common.h"
#include "base/json.h"
#include "format/safetensors.h"
#include "runtime/session.h"

/* The fixtures README's near-tie bar: stop comparing greedy tokens at the first step
 * whose reference top-1/top-2 margin is below this. */
#define NEAR_TIE_MARGIN 1e-3
#define TINY TEST_DATA "/tiny-qwen2"
#define KCC BUNDLED_MODEL
#define KCC_LORA TEST_DATA "/kcc-advisor-lora"
#define KCC_SYSTEM "You are an agricultural advisor for smallholder farmers. Answer briefly and practically."
#define PADDY_Q "fertilizer management in paddy field (crop: Paddy (Dhan))"
#define QWEN_IM_END 151645
#define QWEN_ENDOFTEXT 151643
#define TEST_THREADS "2"

/* ---------------------------------------------------------------- helpers */

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* Appends s single-quoted for sh. */
static void sh_quote(strbuf *sb, const char *s) {
    flm_sb_putc(sb, '\'');
    for (; *s; s++) {
        if (*s == '\'') flm_sb_puts(sb, "'\\''");
        else flm_sb_putc(sb, *s);
    }
    flm_sb_putc(sb, '\'');
}

/* Runs `fieldlm run ... --json`, parses its stdout. Returns the exit status. */
static int run_json(const char *args, flm_json_doc **doc, char **err) {
    strbuf cmd;
    flm_sb_init(&cmd);
    flm_sb_printf(&cmd, "%s run --json -t " TEST_THREADS " %s", test_bin(), args);
    char *out = NULL;
    int rc = test_run(flm_sb_cstr(&cmd), &out, err);
    flm_sb_free(&cmd);
    *doc = NULL;
    if (rc == 0 && out) *doc = flm_json_parse(out, strlen(out), "run --json output");
    free(out);
    return rc;
}

static int json_ids(const flm_json *arr, int32_t *out, int cap) {
    int n = 0;
    for (size_t i = 0; arr && i < arr->len && n < cap; i++) out[n++] = (int32_t)flm_json_int(flm_json_at(arr, i), -1);
    return n;
}

static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

static const int32_t *tensor_i32(flm_st_file *f, const char *name, int64_t *n) {
    const flm_tensor *t = flm_st_find(f, name);
    if (!t || t->dtype != FLM_I32 || t->ndim != 1) return NULL;
    *n = t->shape[0];
    return t->data;
}

static const float *tensor_f32(flm_st_file *f, const char *name, int64_t *n) {
    const flm_tensor *t = flm_st_find(f, name);
    if (!t || t->dtype != FLM_F32 || t->ndim != 1) return NULL;
    *n = t->shape[0];
    return t->data;
}

/* ------------------------------------------- greedy against the references */

/* Every case of ref_dir/reference.{json,safetensors}: `run --greedy --json` with the
 * case's system prompt and question through the chat template must give the
 * reference input_ids and greedy_ids (up to a near-tie; an eos before the end must
 * be an eos in the reference too). `model` and `extra` (e.g. "--lora DIR") are
 * parameters so the same check runs on a .gguf package. */
static void check_greedy_reference(const char *model, const char *extra, const char *ref_dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/reference.json", ref_dir);
    flm_json_doc *meta = flm_json_parse_file(path);
    REQUIRE(meta);
    snprintf(path, sizeof path, "%s/reference.safetensors", ref_dir);
    flm_st_file *ref = NULL;
    if (flm_st_open(path, &ref)) { flm_json_free(meta); REQUIRE(!"reference.safetensors opens"); }
    const flm_json *cases = flm_json_get(flm_json_root(meta), "cases");
    CHECK(cases && cases->len > 0);
    for (size_t ci = 0; cases && ci < cases->len; ci++) {
        const flm_json *c = flm_json_at(cases, ci);
        char name[64];
        int64_t n_in = 0, n_g = 0, n_m = 0;
        snprintf(name, sizeof name, "case%zu.input_ids", ci);
        const int32_t *in_ids = tensor_i32(ref, name, &n_in);
        snprintf(name, sizeof name, "case%zu.greedy_ids", ci);
        const int32_t *g_ids = tensor_i32(ref, name, &n_g);
        snprintf(name, sizeof name, "case%zu.greedy_margins", ci);
        const float *g_m = tensor_f32(ref, name, &n_m);
        CHECK(in_ids && g_ids && g_m && n_m == n_g);
        if (!in_ids || !g_ids || !g_m || n_m != n_g) continue;
        /* user turns were "{question} (crop: {crop})" (refgen/train_kcc_advisor.py) */
        char user[1024];
        snprintf(user, sizeof user, "%s (crop: %s)", flm_json_string(flm_json_get(c, "question"), ""),
                 flm_json_string(flm_json_get(c, "crop"), ""));
        strbuf args;
        flm_sb_init(&args);
        flm_sb_printf(&args, "-m %s %s --greedy -n %lld --system ", model, extra ? extra : "", (long long)n_g);
        sh_quote(&args, flm_json_string(flm_json_get(c, "system"), ""));
        flm_sb_puts(&args, " -p ");
        sh_quote(&args, user);
        flm_json_doc *doc;
        char *err = NULL;
        int rc = run_json(flm_sb_cstr(&args), &doc, &err);
        flm_sb_free(&args);
        CHECK_MSG(rc == 0 && doc, "%s case %zu: run failed (%d): %s", ref_dir, ci, rc, err ? err : "");
        free(err);
        if (!doc) continue;
        const flm_json *root = flm_json_root(doc);
        int32_t got_in[512], got[512];
        int n_got_in = json_ids(flm_json_get(root, "prompt_ids"), got_in, 512);
        int n_got = json_ids(flm_json_get(root, "ids"), got, 512);
        CHECK_EQ_INT(n_got_in, n_in);
        for (int i = 0; i < n_got_in && i < n_in; i++)
            if (got_in[i] != in_ids[i]) { CHECK_MSG(0, "%s case %zu: prompt id %d: %d != %d", ref_dir, ci, i, got_in[i], in_ids[i]); break; }
        const char *why = flm_json_string(flm_json_get(root, "stop_reason"), "");
        int compared = 0;
        bool tie = false;
        for (int i = 0; i < n_got && i < n_g; i++) {
            if (g_m[i] < NEAR_TIE_MARGIN) { tie = true; break; }
            CHECK_MSG(got[i] == g_ids[i], "%s case %zu: greedy step %d: %d != reference %d", ref_dir, ci, i, got[i], g_ids[i]);
            if (got[i] != g_ids[i]) break;
            compared++;
        }
        if (!tie && n_got < n_g) {
            /* stopped early: only an eos the reference also produced at that step */
            CHECK_MSG(!strcmp(why, "eos"), "%s case %zu: stopped after %d of %lld tokens with %s", ref_dir, ci, n_got, (long long)n_g, why);
            int32_t stop = (int32_t)flm_json_int(flm_json_get(root, "stop_token"), -1);
            CHECK_MSG(stop == g_ids[n_got] && (stop == QWEN_IM_END || stop == QWEN_ENDOFTEXT),
                      "%s case %zu: eos %d at step %d, reference has %d", ref_dir, ci, stop, n_got, g_ids[n_got]);
        } else if (!tie) {
            CHECK_STR(why, "length");
        }
        CHECK(compared > 0);
        flm_json_free(doc);
    }
    flm_st_close(ref);
    flm_json_free(meta);
}

TEST(session_greedy_kcc_reference) { check_greedy_reference(KCC, NULL, TEST_DATA "/kcc-advisor"); }
TEST(session_greedy_kcc_lora_reference) { check_greedy_reference(KCC, "--lora " KCC_LORA, KCC_LORA); }

/* The same full text path from f32 packages made by `fieldlm convert` (plain, and with
 * the adapter merged at conversion). */
static char *convert_to(const char *name, const char *extra) {
    char *out = flm_path_join(test_tmpdir(), name);
    char cmd[1024], *o, *e;
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s --type f32 -q %s", test_bin(), KCC, out, extra);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "convert: %s", e);
    free(o);
    free(e);
    return out;
}
TEST(session_greedy_kcc_package_reference) {
    char *p = convert_to("kcc-f32.gguf", "");
    check_greedy_reference(p, NULL, TEST_DATA "/kcc-advisor");
    free(p);
    p = convert_to("kcc-lora-f32.gguf", "--lora " KCC_LORA);
    check_greedy_reference(p, NULL, KCC_LORA);
    free(p);
}

/* ------------------------------------------------------------- CLI behaviour */

TEST(session_seed_reproduces) {
    flm_json_doc *a, *b, *c;
    CHECK_EQ_INT(run_json("-m " TINY " --seed 7 -n 16 -p hello", &a, NULL), 0);
    CHECK_EQ_INT(run_json("-m " TINY " --seed 7 -n 16 -p hello", &b, NULL), 0);
    CHECK_EQ_INT(run_json("-m " TINY " --seed 8 -n 16 -p hello", &c, NULL), 0);
    if (a && b && c) {
        const char *ta = flm_json_string(flm_json_get(flm_json_root(a), "text"), NULL);
        const char *tb = flm_json_string(flm_json_get(flm_json_root(b), "text"), NULL);
        const char *tc = flm_json_string(flm_json_get(flm_json_root(c), "text"), NULL);
        CHECK_STR(ta, tb);
        CHECK(ta && tc && strcmp(ta, tc) != 0);
        int32_t ia[64], ic[64];
        int na = json_ids(flm_json_get(flm_json_root(a), "ids"), ia, 64), nc = json_ids(flm_json_get(flm_json_root(c), "ids"), ic, 64);
        CHECK(na != nc || memcmp(ia, ic, (size_t)na * sizeof *ia) != 0);
    }
    flm_json_free(a);
    flm_json_free(b);
    flm_json_free(c);
}

TEST(session_prompt_longer_than_context) {
    char *out = NULL, *err = NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s run -m " TINY " -c 16 -n 4 -t " TEST_THREADS " -p 'a question that is long enough'", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK_MSG(has(err, "context holds 16") && has(err, "prompt is"), "stderr: %s", err ? err : "");
    CHECK(!out || !out[0]);
    free(out);
    free(err);
    /* -c beyond max_position_embeddings is refused too */
    snprintf(cmd, sizeof cmd, "%s run -m " TINY " -c 40000 -n 4 -p hi", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    free(out);
    free(err);
}

TEST(session_stops_at_context) {
    flm_json_doc *d;
    /* a 30-token prompt in a 36-token context: 6 tokens fit (greedy tiny never emits eos here) */
    CHECK_EQ_INT(run_json("-m " TINY " --greedy -c 36 -n 100 -p hello", &d, NULL), 0);
    if (d) {
        const flm_json *r = flm_json_root(d);
        CHECK_STR(flm_json_string(flm_json_get(r, "stop_reason"), ""), "context");
        CHECK_EQ_INT(flm_json_get(r, "prompt_ids")->len + flm_json_get(r, "ids")->len, 36);
    }
    flm_json_free(d);
}

TEST(session_stop_string_cli) {
    flm_json_doc *full, *cut;
    CHECK_EQ_INT(run_json("-m " KCC " --greedy -n 24 --system '" KCC_SYSTEM "' -p '" PADDY_Q "'", &full, NULL), 0);
    CHECK_EQ_INT(run_json("-m " KCC " --greedy -n 24 --stop 'kg potash' --stop NEVER --system '" KCC_SYSTEM "' -p '" PADDY_Q "'", &cut, NULL), 0);
    if (full && cut) {
        const char *t = flm_json_string(flm_json_get(flm_json_root(full), "text"), "");
        const char *at = strstr(t, "kg potash");
        REQUIRE(at); /* the fixture's greedy answer: "... 35 kg urea and 15 kg potash per acre ..." */
        const char *tc = flm_json_string(flm_json_get(flm_json_root(cut), "text"), "");
        CHECK_EQ_INT(strlen(tc), at - t);
        CHECK(!strncmp(tc, t, (size_t)(at - t)));
        CHECK_STR(flm_json_string(flm_json_get(flm_json_root(cut), "stop_reason"), ""), "stop_string");
    }
    flm_json_free(full);
    flm_json_free(cut);
    /* streamed: the stop string is never printed */
    char *out = NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s run -m " KCC " -t " TEST_THREADS " --greedy -n 24 --stop 'kg potash' --system '" KCC_SYSTEM "' -p '" PADDY_Q "'", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, NULL), 0);
    CHECK(out && has(out, "15 ") && !has(out, "potash"));
    free(out);
}

/* ------------------------------------------------------- the loop, directly */

typedef struct {
    strbuf all;
    int n_calls, n_bad_utf8, n_with_stop;
    const char *stop;
} collect;

static int collect_piece(void *user, const char *piece, size_t len, int32_t token) {
    (void)token;
    collect *c = user;
    c->n_calls++;
    if (!valid_utf8(piece, len) || strlen(piece) != len) c->n_bad_utf8++;
    if (c->stop && strstr(piece, c->stop)) c->n_with_stop++;
    flm_sb_append(&c->all, piece, len);
    return 0;
}

static flm_assets *open_assets(const char *path) {
    flm_assets *a = NULL;
    if (flm_assets_open(path, NULL, &a)) test_fail(__FILE__, __LINE__, "load %s: %s", path, flm_last_error());
    return a;
}

static flm_gen_session *greedy_session(const flm_assets *a, int n_ctx, long max_new, const char *const *stop, int n_stop) {
    flm_gen_config ov;
    flm_gen_config_defaults(&ov);
    flm_gen_params p;
    flm_gen_params_from_config(a, &ov, true, 0, &p);
    p.n_ctx = n_ctx;
    p.n_threads = 2;
    p.max_new_tokens = max_new;
    p.stop = stop;
    p.n_stop = n_stop;
    flm_gen_session *s = NULL;
    if (flm_gen_session_new(a, &p, &s)) test_fail(__FILE__, __LINE__, "session: %s", flm_last_error());
    return s;
}

TEST(session_eos_ids_collected) {
    flm_assets *a = open_assets(KCC);
    REQUIRE(a);
    CHECK_EQ_INT(a->n_eos, 2);
    CHECK(flm_assets_is_eos(a, QWEN_IM_END) && flm_assets_is_eos(a, QWEN_ENDOFTEXT));
    flm_assets_close(a);
}

/* Generation stops on whichever id of the eos list comes up, at either position of
 * the list: the model's own greedy tokens are made eos ids by editing the list. */
TEST(session_stops_on_either_eos_id) {
    flm_assets *a = open_assets(KCC);
    REQUIRE(a);
    flm_gen_session *s = greedy_session(a, 256, 12, NULL, 0);
    const char *roles[] = {"system", "user"}, *contents[] = {KCC_SYSTEM, PADDY_Q};
    flm_gen_result r;
    REQUIRE(flm_gen_run_chat(s, roles, contents, 2, NULL, NULL, &r) == 0);
    CHECK_EQ_INT(r.n_ids, 12);
    int32_t ids[12];
    memcpy(ids, r.ids, sizeof ids);
    int n_prompt = r.n_prompt;
    /* pick steps whose token did not occur earlier in the answer */
    int k1 = 3, k2 = 7;
    for (int round = 0; round < 2; round++) {
        int k = round ? k2 : k1;
        for (int j = 0; j < k; j++) REQUIRE(ids[j] != ids[k]);
        a->n_eos = 2;
        a->eos[round] = ids[k];            /* first entry, then second entry */
        a->eos[1 - round] = round ? QWEN_IM_END : QWEN_ENDOFTEXT;
        collect c = {0};
        flm_sb_init(&c.all);
        CHECK_EQ_INT(flm_gen_run_chat(s, roles, contents, 2, collect_piece, &c, &r), 0);
        CHECK_EQ_INT(r.stop_reason, FLM_STOP_EOS);
        CHECK_EQ_INT(r.stop_token, ids[k]);
        CHECK_EQ_INT(r.n_ids, k);
        CHECK(!memcmp(r.ids, ids, (size_t)k * sizeof *ids));
        /* the same prompt again: all but its last token come from the cache */
        CHECK_EQ_INT(r.timings.reused_tokens, n_prompt - 1);
        strbuf want;
        flm_sb_init(&want);
        CHECK_EQ_INT(flm_tokenizer_decode(a->tok, ids, (size_t)k, &want), 0);
        CHECK_STR(flm_sb_cstr(&c.all), flm_sb_cstr(&want));
        CHECK_STR(r.text, flm_sb_cstr(&want));
        flm_sb_free(&want);
        flm_sb_free(&c.all);
    }
    flm_gen_session_free(s);
    flm_assets_close(a);
}

/* kcc-advisor answers in Telugu too: its byte-level tokens split characters. */
TEST(session_utf8_split_across_tokens) {
    flm_assets *a = open_assets(KCC);
    REQUIRE(a);
    flm_gen_session *s = greedy_session(a, 256, 48, NULL, 0);
    const char *roles[] = {"system", "user"}, *contents[] = {KCC_SYSTEM, PADDY_Q};
    collect c = {0};
    flm_sb_init(&c.all);
    flm_gen_result r;
    REQUIRE(flm_gen_run_chat(s, roles, contents, 2, collect_piece, &c, &r) == 0);
    int split = 0;
    for (int i = 0; i < r.n_ids; i++) {
        size_t len;
        const uint8_t *b = flm_tokenizer_token_bytes(a->tok, r.ids[i], &len);
        if (b && !valid_utf8((const char *)b, len)) split++;
    }
    CHECK_MSG(split > 0, "no token of the answer splits a character; the test proves nothing");
    CHECK_EQ_INT(c.n_bad_utf8, 0);
    CHECK_EQ_INT(c.all.len, r.text_len);
    CHECK(c.all.len && !memcmp(c.all.data, r.text, r.text_len));
    strbuf want;
    flm_sb_init(&want);
    CHECK_EQ_INT(flm_tokenizer_decode(a->tok, r.ids, (size_t)r.n_ids, &want), 0);
    CHECK_STR(flm_sb_cstr(&c.all), flm_sb_cstr(&want));
    flm_sb_free(&want);
    flm_sb_free(&c.all);
    flm_gen_session_free(s);
    flm_assets_close(a);
}

/* Text that could start a stop string is held back, and released once it cannot:
 * "kg" of "35 kg urea" waits for " urea"; the stop string "kg potash" is never
 * delivered, even split over pieces. A Telugu stop string cuts mid-answer. */
TEST(session_stop_strings_held_back) {
    flm_assets *a = open_assets(KCC);
    REQUIRE(a);
    const char *roles[] = {"system", "user"}, *contents[] = {KCC_SYSTEM, PADDY_Q};
    const char *stops[] = {"kg potash", "ఎకరాకు"};
    for (int i = 0; i < 2; i++) {
        flm_gen_session *s = greedy_session(a, 256, 48, &stops[i], 1);
        REQUIRE(s);
        collect c = {0};
        flm_sb_init(&c.all);
        c.stop = stops[i];
        flm_gen_result r;
        CHECK_EQ_INT(flm_gen_run_chat(s, roles, contents, 2, collect_piece, &c, &r), 0);
        CHECK_EQ_INT(r.stop_reason, FLM_STOP_STRING);
        CHECK(!has(flm_sb_cstr(&c.all), stops[i]));
        CHECK_EQ_INT(c.n_with_stop, 0);
        CHECK_EQ_INT(c.n_bad_utf8, 0);
        CHECK_STR(flm_sb_cstr(&c.all), r.text);
        strbuf dec;
        flm_sb_init(&dec);
        flm_tokenizer_decode(a->tok, r.ids, (size_t)r.n_ids, &dec);
        const char *at = strstr(flm_sb_cstr(&dec), stops[i]);
        CHECK(at && (size_t)(at - dec.data) == r.text_len && !strncmp(dec.data, r.text, r.text_len));
        flm_sb_free(&dec);
        flm_sb_free(&c.all);
        flm_gen_session_free(s);
    }
    flm_assets_close(a);
}

TEST(session_prompt_too_long_api) {
    flm_assets *a = open_assets(TINY);
    REQUIRE(a);
    flm_gen_session *s = greedy_session(a, 8, 4, NULL, 0);
    REQUIRE(s);
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    flm_gen_result r;
    CHECK_EQ_INT(flm_gen_run(s, ids, 8, NULL, NULL, &r), FLM_ERR_CONTEXT);
    CHECK(has(flm_last_error(), "prompt is 8 tokens") && has(flm_last_error(), "context holds 8"));
    CHECK_EQ_INT(flm_gen_run(s, ids, 7, NULL, NULL, &r), 0); /* 7 + 1 fits */
    CHECK_EQ_INT(r.stop_reason, FLM_STOP_CONTEXT);
    CHECK_EQ_INT(r.n_ids, 1);
    flm_gen_session_free(s);
    flm_assets_close(a);
}

/* ------------------------------------------------------------------ chat */

/* A scripted chat through a pipe equals the same turns made through the session
 * layer with the whole history each turn; /system keeps the history, /reset
 * forgets it (and keeps the system message). */
TEST(session_chat_pipe) {
    const char *script = "What should I spray on chilli thrips?\n"
                         "/system " KCC_SYSTEM "\n"
                         "\n"
                         "And for paddy?\n"
                         "/reset\n"
                         PADDY_Q "\n"
                         "/quit\n"
                         "never read\n";
    char *in = flm_path_join(test_tmpdir(), "chat_in.txt");
    FILE *f = fopen(in, "w");
    REQUIRE(f);
    fputs(script, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s chat -m " KCC " --greedy -n 20 -t " TEST_THREADS " < %s", test_bin(), in);
    char *out = NULL, *err = NULL;
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    free(in);

    flm_assets *a = open_assets(KCC);
    REQUIRE(a && out);
    flm_gen_session *s = greedy_session(a, 0, 20, NULL, 0);
    strbuf want;
    flm_sb_init(&want);
    flm_gen_result r;
    /* turn 1: no system message */
    const char *r1[] = {"user"}, *c1[] = {"What should I spray on chilli thrips?"};
    CHECK_EQ_INT(flm_gen_run_chat(s, r1, c1, 1, NULL, NULL, &r), 0);
    char *a1 = flm_strdup(r.text);
    flm_sb_printf(&want, "%s\n", a1);
    /* turn 2: system set, history kept */
    const char *r2[] = {"system", "user", "assistant", "user"};
    const char *c2[] = {KCC_SYSTEM, c1[0], a1, "And for paddy?"};
    CHECK_EQ_INT(flm_gen_run_chat(s, r2, c2, 4, NULL, NULL, &r), 0);
    flm_sb_printf(&want, "%s\n", r.text);
    /* turn 3: after /reset, the system message stays */
    flm_gen_session_reset(s);
    const char *r3[] = {"system", "user"}, *c3[] = {KCC_SYSTEM, PADDY_Q};
    CHECK_EQ_INT(flm_gen_run_chat(s, r3, c3, 2, NULL, NULL, &r), 0);
    flm_sb_printf(&want, "%s\n", r.text);
    CHECK_STR(out, flm_sb_cstr(&want));
    CHECK_MSG(!err || !err[0], "stderr: %s", err ? err : "");
    free(a1);
    flm_sb_free(&want);
    flm_gen_session_free(s);
    flm_assets_close(a);
    free(out);
    free(err);
}

/* Multi-turn: the second turn's prompt starts with the first turn's prompt and
 * answer, so the cache covers it and only the new tail is prefilled. */
TEST(session_multi_turn_reuses_cache) {
    flm_assets *a = open_assets(KCC);
    REQUIRE(a);
    flm_gen_session *s = greedy_session(a, 0, 8, NULL, 0);
    flm_gen_result r;
    const char *r1[] = {"system", "user"}, *c1[] = {KCC_SYSTEM, PADDY_Q};
    REQUIRE(flm_gen_run_chat(s, r1, c1, 2, NULL, NULL, &r) == 0);
    int n1 = r.n_prompt;
    CHECK_EQ_INT(r.timings.reused_tokens, 0);
    char *ans = flm_strdup(r.text);
    const char *r2[] = {"system", "user", "assistant", "user"}, *c2[] = {KCC_SYSTEM, PADDY_Q, ans, "and wheat?"};
    REQUIRE(flm_gen_run_chat(s, r2, c2, 4, NULL, NULL, &r) == 0);
    CHECK_MSG(r.timings.reused_tokens >= n1, "reused %d of a %d-token first prompt", r.timings.reused_tokens, n1);
    CHECK(r.timings.reused_tokens < r.n_prompt);
    /* the same as a fresh session computing everything */
    int32_t ids[8];
    int n = r.n_ids;
    memcpy(ids, r.ids, (size_t)n * sizeof *ids);
    flm_gen_session_reset(s);
    REQUIRE(flm_gen_run_chat(s, r2, c2, 4, NULL, NULL, &r) == 0);
    CHECK_EQ_INT(r.timings.reused_tokens, 0);
    CHECK_EQ_INT(r.n_ids, n);
    CHECK(!memcmp(r.ids, ids, (size_t)n * sizeof *ids));
    free(ans);
    flm_gen_session_free(s);
    flm_assets_close(a);
}

TEST(session_run_help_and_usage) {
    char *out = NULL, *err = NULL;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s run --help", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(has(out, "--greedy") && has(out, "generation_config.json") && has(out, "--stop") && has(out, "-c, --ctx"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s run -m " TINY " --temp x -p hi", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 2);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s chat --help", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(has(out, "/reset") && has(out, "/system"));
    free(out);
    free(err);
}

TEST(session_raw_prompt_and_stdin) {
    flm_json_doc *d;
    /* --raw: the text as is, special tokens recognised */
    CHECK_EQ_INT(run_json("-m " TINY " --greedy -n 2 --raw -p '<|im_start|>user\nhi'", &d, NULL), 0);
    if (d) {
        int32_t ids[16];
        int n = json_ids(flm_json_get(flm_json_root(d), "prompt_ids"), ids, 16);
        CHECK(n == 4 && ids[0] == 151644 && ids[1] == 872 && ids[2] == 198 && ids[3] == 6023);
    }
    flm_json_free(d);
    char cmd[512];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "printf 'hello' | %s run --json -m " TINY " --greedy -n 2 -p -", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, NULL), 0);
    flm_json_doc *e = out ? flm_json_parse(out, strlen(out), "out") : NULL;
    CHECK(e != NULL);
    if (e) CHECK_EQ_INT(flm_json_get(flm_json_root(e), "prompt_ids")->len, 30); /* default system prompt + "hello" */
    flm_json_free(e);
    free(out);
}

/* Ctrl-C (SIGINT) stops the current answer, not the program: `run` reports the
 * cancellation and exits 130 (as shells expect); `chat` goes on reading the next line. */
TEST(session_sigint_stops_the_answer_not_the_program) {
    char cmd[1024], *o, *e;
    /* the random tiny model practically never samples an eos: without the signal
     * both would run to the 8192-token context */
    snprintf(cmd, sizeof cmd, "%s run -m %s/tiny-qwen2 --raw -p hello -n 100000 -c 8192 --json & pid=$!; sleep 1.5; kill -INT $pid; wait $pid",
             test_bin(), TEST_DATA);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 130, "run exit %d: %s", rc, e);
    CHECK_MSG(strstr(o, "\"stop_reason\": \"cancelled\"") != NULL, "run output: %.300s", o);
    free(o);
    free(e);
    char *in = flm_path_join(test_tmpdir(), "chat-sigint.txt");
    FILE *f = fopen(in, "w");
    REQUIRE(f);
    fputs("hello\n/system Answer briefly.\n/quit\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s chat -m %s/tiny-qwen2 -n 100000 -c 8192 < %s & pid=$!; sleep 1.5; kill -INT $pid; wait $pid", test_bin(), TEST_DATA, in);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "chat exit %d: %s", rc, e);
    free(o);
    free(e);
    free(in);
}
