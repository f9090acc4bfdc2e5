/* test_ablate.c — `fieldlm ablate` (src/dev/ablate.c) and the LiteRT dynamic_int8
 * emulation (src/runtime/litert_int8.c): the metrics on constructed token sequences,
 * the question file's errors, every variant on the bundled model (a few questions,
 * short answers), greedy_default = `run --greedy`, the capacity rules, and the
 * emulation against the real LiteRT runtime (LiteRT.js) when it is installed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "dev/ablate.h"
#include "kernels/quant.h"
#include "litert_util.h"
#include "runtime/forward.h"
#include "runtime/litert_int8.h"
#include "runtime/session.h"
#include "test.h"

/* ---------------- metrics ---------------- */

TEST(ablate_metric_repetition) {
    int32_t a[] = {1, 2, 3, 4, 9, 1, 2, 3, 4, 8, 1, 2, 3, 4};   /* 1 2 3 4 three times */
    CHECK(flm_ablate_repeats(a, 14));
    CHECK(!flm_ablate_repeats(a, 9));                            /* only twice */
    int32_t b[] = {5, 5, 5, 5, 5, 5};                            /* overlapping occurrences count */
    CHECK(flm_ablate_repeats(b, 6));
    CHECK(!flm_ablate_repeats(b, 5));
    int32_t c[] = {1, 2, 3, 1, 2, 3, 1, 2, 3};                   /* 3-gram thrice, each 4-gram twice */
    CHECK(!flm_ablate_repeats(c, 9));
    CHECK(!flm_ablate_repeats(NULL, 0));
}

TEST(ablate_metric_loop) {
    /* a tail of period 3 repeated 4 times (12 tokens) after a normal start */
    int32_t a[] = {10, 11, 12, 13, 7, 8, 9, 7, 8, 9, 7, 8, 9, 7, 8, 9};
    CHECK(flm_ablate_loops(a, 16));
    CHECK(!flm_ablate_loops(a, 13));            /* ends 7 8 9 7 8 9 7 8 9: three cycles but 9 tokens < 12 */
    int32_t b[20];
    for (int i = 0; i < 20; i++) b[i] = i;      /* no cycle */
    CHECK(!flm_ablate_loops(b, 20));
    b[19] = 18;                                 /* 18 18 at the end: too short */
    CHECK(!flm_ablate_loops(b, 20));
    int32_t c[14] = {1, 2};
    for (int i = 2; i < 14; i++) c[i] = 42;     /* one token twelve times */
    CHECK(flm_ablate_loops(c, 14));
    /* a cycle that does not reach the end is not a loop */
    int32_t d[16] = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1, 2, 3};
    CHECK(!flm_ablate_loops(d, 16));
}

TEST(ablate_metric_distinct2) {
    int32_t a[] = {1, 2, 3, 1, 2};     /* bigrams 12 23 31 12: 3 distinct of 4 */
    int32_t b[] = {1, 2, 9};           /* 12 29: 12 again, 29 new */
    int32_t c[] = {7};                 /* no bigram */
    const int32_t *ans[] = {a, b, c};
    int lens[] = {5, 3, 1};
    CHECK_NEAR(flm_ablate_distinct2(ans, lens, 1), 0.75, 1e-12);
    CHECK_NEAR(flm_ablate_distinct2(ans, lens, 3), 4.0 / 6.0, 1e-12);
    /* bigrams do not cross answers: {1,2},{3,4} has 2 bigrams, not 3 */
    int32_t x[] = {1, 2}, y[] = {3, 4};
    const int32_t *xy[] = {x, y};
    int l2[] = {2, 2};
    CHECK_NEAR(flm_ablate_distinct2(xy, l2, 2), 1.0, 1e-12);
    CHECK(flm_ablate_distinct2(ans + 2, lens + 2, 1) == 0);
}

TEST(ablate_metric_runaway) {
    int32_t im_end = 151645;
    int32_t past[] = {100, 101, 151645, 151644, 77091};
    CHECK(flm_ablate_runaway(past, 5, im_end, false, "Use urea.<|im_end|><|im_start|>assistant", 40));
    int32_t plain[] = {100, 101};
    CHECK(!flm_ablate_runaway(plain, 2, im_end, false, "Use urea", 8));        /* ended by a stop id */
    CHECK(flm_ablate_runaway(plain, 2, im_end, true, "Apply 25 kg of", 14));   /* cut mid-sentence */
    CHECK(!flm_ablate_runaway(plain, 2, im_end, true, "Apply 25 kg.\n", 13));  /* cut at a sentence end */
    CHECK(!flm_ablate_runaway(plain, 2, im_end, true, "Spray? ", 7));
    const char *danda = "\xe0\xa4\x95\xe0\xa5\xa4";                              /* क। */
    CHECK(!flm_ablate_runaway(plain, 2, im_end, true, danda, strlen(danda)));
    CHECK(flm_ablate_runaway(plain, 2, im_end, true, "", 0));
}

TEST(ablate_metric_kl) {
    float p[4] = {1, 2, 3, 4}, q[4] = {1, 2, 3, 4}, r[4] = {4, 3, 2, 1}, s[4] = {11, 12, 13, 14};
    CHECK(flm_ablate_kl(p, q, 4) == 0);
    CHECK_NEAR(flm_ablate_kl(p, s, 4), 0, 1e-12); /* a shift of every logit is the same distribution */
    /* KL computed by hand in double */
    double zp = 0, zr = 0;
    for (int i = 0; i < 4; i++) { zp += exp(p[i]); zr += exp(r[i]); }
    double want = 0;
    for (int i = 0; i < 4; i++) want += exp(p[i]) / zp * (log(exp(p[i]) / zp) - log(exp(r[i]) / zr));
    CHECK_NEAR(flm_ablate_kl(p, r, 4), want, 1e-6);
}

/* ---------------- the int8 quantizers ---------------- */

TEST(ablate_quant_i8_asym_as_xnnpack) {
    /* a row with min -1 and max 3: m = 255/4, zero point -128 + 63.75 = -64.25 -> -64 */
    float x[5] = {-1, 0, 1, 2, 3};
    int8_t q[5];
    int32_t zp;
    float s = flm_quantize_row_i8_asym(x, q, 5, &zp);
    CHECK_EQ_INT(zp, -64);
    CHECK_NEAR(s, 4.0 / 255.0, 1e-9);
    CHECK_EQ_INT(q[0], -128);
    CHECK_EQ_INT(q[1], -64);
    CHECK_EQ_INT(q[4], 127);
    for (int i = 0; i < 5; i++) CHECK_NEAR((q[i] - zp) * s, x[i], s / 2 + 1e-6);
    /* a positive row: rmin is 0, so 0 is exact */
    float y[3] = {0.5f, 1, 2};
    s = flm_quantize_row_i8_asym(y, q, 3, &zp);
    CHECK_EQ_INT(zp, -128);
    CHECK_EQ_INT(q[2], 127);
    /* all zero: multiplier 1; -128 + 127 is not > 0, so the zero point is 127 - 0 */
    float z[2] = {0, 0};
    s = flm_quantize_row_i8_asym(z, q, 2, &zp);
    CHECK(s == 1.0f && zp == 127 && q[0] == 127 && q[1] == 127);
    /* per-channel weights: amax/127, symmetric */
    float w[4] = {-0.5f, 0.25f, 1.27f, 0};
    int8_t qw[4];
    float sw = flm_quantize_row_i8_channel(w, qw, 4);
    CHECK_NEAR(sw, 0.01, 1e-7);
    CHECK_EQ_INT(qw[0], -50);
    CHECK_EQ_INT(qw[2], 127);
}

TEST(ablate_hybrid_product_is_its_formula) {
    /* y = float(sum (qx - zp) * qw) * sx * sw, computed by hand */
    int8_t wq[2 * 3] = {10, -20, 30, 127, 0, -127};
    float wscale[2] = {0.01f, 0.02f};
    int32_t qsum[2] = {20, 0};
    flm_i8_matrix W = {wq, wscale, qsum, 2, 3};
    int8_t xq[3] = {5, -7, 100};
    float xs = 0.03f;
    int32_t zp = -3;
    float y[2];
    flm_i8_hybrid_rows(&W, xq, &xs, &zp, y, 1, 0, 2);
    for (int r = 0; r < 2; r++) {
        int32_t acc = 0;
        for (int i = 0; i < 3; i++) acc += (xq[i] - zp) * wq[r * 3 + i];
        CHECK(y[r] == (float)acc * xs * wscale[r]);
    }
}

/* ---------------- the CLI ---------------- */

static char *write_tmp(const char *name, const char *text) {
    char *path = malloc(1024);
    snprintf(path, 1024, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (f) { fputs(text, f); fclose(f); }
    return path;
}

static const char *QUESTIONS =
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Sowing time of black gram\"}]}\n"
    "\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"FARMER ASKED QUERY ON NUTRIENT MANAGEMENT IN MANGO?\"}]}\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"SUCKING PEST IN CHILLI MANAGEMENT\"}]}\n";

TEST(ablate_bad_questions_files) {
    struct { const char *name, *text, *want; } cases[] = {
        {"q-empty.jsonl", "\n\n", "no questions"},
        {"q-notjson.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\nnot json\n", "line 2"},
        {"q-nomsgs.jsonl", "{\"question\": \"a\"}\n", "expected {\"messages\""},
        {"q-role.jsonl", "{\"messages\": [{\"role\": \"farmer\", \"content\": \"a\"}]}\n", "role 'farmer'"},
        {"q-last.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n",
         "last message must be the user's"},
        {"q-content.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n", "string \"content\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_tmp(cases[i].name, cases[i].text), cmd[2048], *err = NULL;
        snprintf(cmd, sizeof cmd, "%s ablate --questions %s", test_bin(), path);
        int rc = test_run(cmd, NULL, &err);
        CHECK_MSG(rc == 1, "%s: exit %d", cases[i].name, rc);
        CHECK_MSG(err && strstr(err, cases[i].want) && strstr(err, path), "%s: %s", cases[i].name, err ? err : "(no message)");
        free(err);
        free(path);
    }
    char cmd[1024], *err = NULL;
    snprintf(cmd, sizeof cmd, "%s ablate --questions %s/none.jsonl", test_bin(), test_tmpdir());
    CHECK_EQ_INT(test_run(cmd, NULL, &err), 1);
    CHECK(err && strstr(err, "none.jsonl"));
    free(err);
    char *path = write_tmp("q-three.jsonl", QUESTIONS);
    snprintf(cmd, sizeof cmd, "%s ablate --questions %s -n 5", test_bin(), path);
    err = NULL;
    CHECK_EQ_INT(test_run(cmd, NULL, &err), 1);
    CHECK(err && strstr(err, "has 3 questions; 5 were asked for"));
    free(err);
    snprintf(cmd, sizeof cmd, "%s ablate --questions %s --variants baseline,nonsense", test_bin(), path);
    err = NULL;
    CHECK_EQ_INT(test_run(cmd, NULL, &err), 2);
    CHECK(err && strstr(err, "unknown variant 'nonsense'"));
    free(err);
    snprintf(cmd, sizeof cmd, "%s ablate", test_bin());
    err = NULL;
    CHECK_EQ_INT(test_run(cmd, NULL, &err), 2);
    CHECK(err && strstr(err, "--questions"));
    free(err);
    free(path);
}

static const flm_json *variant(const flm_json *root, const char *name) {
    const flm_json *vs = flm_json_get(root, "variants");
    for (size_t i = 0; vs && i < vs->len; i++) {
        const flm_json *v = flm_json_at(vs, i);
        const char *n = flm_json_string(flm_json_get(v, "name"), "");
        if (!strcmp(n, name)) return v;
    }
    return NULL;
}

TEST(ablate_every_variant_runs_json_and_answers) {
    char *path = write_tmp("q-run.jsonl", QUESTIONS), cmd[2048], *out = NULL, ans[1024];
    snprintf(ans, sizeof ans, "%s/ablate-answers.jsonl", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s ablate --questions %s --max-tokens 10 --turns 2 --conversations 1 -t 1 --json --answers %s",
             test_bin(), path, ans);
    int rc = test_run(cmd, &out, NULL);
    REQUIRE(rc == 0 && out);
    flm_json_doc *doc = flm_json_parse(out, strlen(out), "ablate --json");
    REQUIRE(doc);
    const flm_json *root = flm_json_root(doc);
    CHECK_EQ_INT(flm_json_int(flm_json_get(root, "n_questions"), -1), 3);
    const char *fields[] = {"repetition_rate", "loop_rate", "distinct_2", "runaway_rate", "identical_to_baseline", "mean_kl", "mean_tokens"};
    for (int v = 0; v < FLM_ABL_N; v++) {
        const flm_json *x = variant(root, flm_ablate_names[v]);
        CHECK_MSG(x, "variant %s missing", flm_ablate_names[v]);
        if (!x) continue;
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
            const flm_json *val = flm_json_get(x, fields[f]);
            CHECK_MSG(val && val->type == JSON_NUMBER, "%s.%s", flm_ablate_names[v], fields[f]);
            double d = flm_json_number(val, -1);
            if (strcmp(fields[f], "mean_tokens") && strcmp(fields[f], "mean_kl")) CHECK_MSG(d >= 0 && d <= 1, "%s.%s = %g", flm_ablate_names[v], fields[f], d);
        }
        CHECK(flm_json_number(flm_json_get(x, "mean_tokens"), -1) <= 10);
    }
    const flm_json *b = variant(root, "baseline");
    CHECK(flm_json_number(flm_json_get(b, "identical_to_baseline"), -1) == 1.0);
    CHECK(flm_json_number(flm_json_get(b, "mean_kl"), -1) == 0.0);
    CHECK(flm_json_int(flm_json_get(b, "kl_positions"), 0) > 0);
    /* the prompt and numerics of the sampler and stop variants are the baseline's */
    CHECK(flm_json_number(flm_json_get(variant(root, "greedy_default"), "mean_kl"), -1) == 0.0);
    CHECK(flm_json_number(flm_json_get(variant(root, "no_repetition_penalty"), "mean_kl"), -1) == 0.0);
    /* int8 numerics and another prompt move the distribution */
    double kl8 = flm_json_number(flm_json_get(variant(root, "dynamic_int8"), "mean_kl"), -1);
    double kla = flm_json_number(flm_json_get(variant(root, "affix_template"), "mean_kl"), -1);
    CHECK_MSG(kl8 > 0 && kl8 < 0.05, "dynamic_int8 mean_kl %g", kl8);
    CHECK_MSG(kla > kl8, "affix_template mean_kl %g", kla);
    CHECK_EQ_INT(flm_json_int(flm_json_get(variant(root, "kv_cap_1280"), "answers"), -1), 2); /* one conversation of 2 turns */
    flm_json_free(doc);
    free(out);

    /* greedy_default's answers are `fieldlm run --greedy`'s */
    char *text = NULL;
    size_t len = 0;
    REQUIRE(flm_read_file(ans, &text, &len) == 0);
    int greedy_seen = 0, lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        flm_json_doc *d = flm_json_parse(line, strlen(line), "answer");
        REQUIRE(d);
        const flm_json *r = flm_json_root(d);
        if (!strcmp(flm_json_string(flm_json_get(r, "variant"), ""), "greedy_default")) {
            int q = (int)flm_json_int(flm_json_get(r, "question"), -1);
            const char *prompts[] = {"Sowing time of black gram", "FARMER ASKED QUERY ON NUTRIENT MANAGEMENT IN MANGO?",
                                     "SUCKING PEST IN CHILLI MANAGEMENT"};
            REQUIRE(q >= 0 && q < 3);
            char rcmd[1024], *rout = NULL;
            snprintf(rcmd, sizeof rcmd, "%s run -m models/kcc-advisor --greedy -n 10 -t 1 --json -p '%s'", test_bin(), prompts[q]);
            REQUIRE(test_run(rcmd, &rout, NULL) == 0 && rout);
            flm_json_doc *rd = flm_json_parse(rout, strlen(rout), "run --json");
            REQUIRE(rd);
            const flm_json *want = flm_json_get(flm_json_root(rd), "ids"), *got = flm_json_get(r, "ids");
            REQUIRE(want && got);
            CHECK_MSG(want->len == got->len, "question %d: %zu vs %zu ids", q, got->len, want->len);
            for (size_t i = 0; i < want->len && i < got->len; i++)
                CHECK(flm_json_int(flm_json_at(want, i), -1) == flm_json_int(flm_json_at(got, i), -2));
            flm_json_free(rd);
            free(rout);
            greedy_seen++;
        }
        flm_json_free(d);
    }
    CHECK_EQ_INT(greedy_seen, 3);
    CHECK_EQ_INT(lines, 3 * 7 + 2); /* 7 single-question variants, 2 conversation turns */
    free(text);
    free(path);
}

TEST(ablate_table_output) {
    char *path = write_tmp("q-table.jsonl", QUESTIONS), cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s ablate --questions %s -n 1 --max-tokens 4 --variants greedy_default -t 1", test_bin(), path);
    REQUIRE(test_run(cmd, &out, NULL) == 0 && out);
    CHECK(strstr(out, "variant") && strstr(out, "baseline") && strstr(out, "greedy_default") && !strstr(out, "dynamic_int8"));
    CHECK(strstr(out, "1 questions, at most 4 new tokens"));
    free(out);
    free(path);
}

/* ---------------- through the library: capacity, stop continuation ---------------- */

typedef struct {
    int n;
    int32_t ids[FLM_ABL_N][8][64];
    int len[FLM_ABL_N][8];
    char stop[FLM_ABL_N][8][12];
} collected;

static int collect(void *ctx, int v, int q, const int32_t *ids, int n, const char *text, size_t len, const char *stop) {
    (void)text; (void)len;
    collected *c = ctx;
    if (q >= 8 || n > 64) return 0;
    if (n) memcpy(c->ids[v][q], ids, (size_t)n * sizeof *ids);
    c->len[v][q] = n;
    snprintf(c->stop[v][q], sizeof c->stop[v][q], "%s", stop);
    c->n++;
    return 0;
}

TEST(ablate_capacity_refuses_and_cuts_as_litert_lm) {
    flm_assets *a = NULL;
    REQUIRE(flm_assets_open(BUNDLED_MODEL, NULL, &a) == 0);
    char *path = write_tmp("q-cap.jsonl", QUESTIONS);
    flm_ablate_questions qs;
    REQUIRE(flm_ablate_questions_load(path, 0, &qs) == 0);
    CHECK_EQ_INT(qs.n, 3);
    static collected c;
    memset(&c, 0, sizeof c);
    /* a capacity of 60: turn 1 (~35 prompt tokens) fits, its answer may be cut at the
     * capacity; turn 3's history is longer than 60: refused */
    flm_ablate_options o = {.max_tokens = 24, .seed = 5, .n_threads = 1, .kv_cap = 60, .turns = 3, .conversations = 1,
                            .variants = 1u << FLM_ABL_KV_CAP | 1u << FLM_ABL_STOP_EOT, .answer = collect, .answer_ctx = &c};
    flm_ablate_report r;
    REQUIRE(flm_ablate_run(a, &qs, &o, &r) == 0);
    CHECK(r.v[FLM_ABL_KV_CAP].ran && r.v[FLM_ABL_STOP_EOT].ran && !r.v[FLM_ABL_INT8].ran);
    CHECK_STR(c.stop[FLM_ABL_KV_CAP][2], "refused");
    CHECK_EQ_INT(c.len[FLM_ABL_KV_CAP][2], 0);
    CHECK(r.v[FLM_ABL_KV_CAP].n_refused >= 1);
    /* an answer that was not refused ends by eos, or at the capacity ("context") */
    bool cut = false;
    for (int k = 0; k < 2; k++)
        if (strcmp(c.stop[FLM_ABL_KV_CAP][k], "refused")) {
            CHECK(!strcmp(c.stop[FLM_ABL_KV_CAP][k], "eos") || !strcmp(c.stop[FLM_ABL_KV_CAP][k], "context") ||
                  !strcmp(c.stop[FLM_ABL_KV_CAP][k], "length"));
            cut |= !strcmp(c.stop[FLM_ABL_KV_CAP][k], "context");
        }
    CHECK_MSG(cut || r.v[FLM_ABL_KV_CAP].n_refused >= 2, "no answer was cut at the capacity");
    CHECK(r.v[FLM_ABL_KV_CAP].mean_kl == 0); /* the capacity does not change the numerics */
    /* stop_endoftext_only: the baseline's answer, and past an <|im_end|> it did stop on */
    for (int q = 0; q < 3; q++) {
        int nb = c.len[FLM_ABL_BASELINE][q];
        CHECK(c.len[FLM_ABL_STOP_EOT][q] >= nb);
        CHECK(!memcmp(c.ids[FLM_ABL_STOP_EOT][q], c.ids[FLM_ABL_BASELINE][q], (size_t)nb * sizeof(int32_t)));
        if (c.len[FLM_ABL_STOP_EOT][q] > nb) CHECK_EQ_INT(c.ids[FLM_ABL_STOP_EOT][q][nb], 151645);
    }
    flm_ablate_questions_free(&qs);
    flm_assets_close(a);
    free(path);
}

/* ---------------- the emulation: a runtime option that changes nothing else ---------------- */

TEST(ablate_litert_int8_option_is_explicit) {
    flm_assets *a = NULL;
    REQUIRE(flm_assets_open(BUNDLED_MODEL, NULL, &a) == 0);
    int32_t ids[] = {151644, 872, 198, 50, 23184, 882, 315, 3691, 23018, 151645, 198, 151644, 77091, 198};
    int n = (int)(sizeof ids / sizeof ids[0]), V = a->model->cfg.vocab_size;
    float *l0 = malloc((size_t)V * 4), *l1 = malloc((size_t)V * 4), *l2 = malloc((size_t)V * 4);
    flm_forward_state *f0 = NULL, *f1 = NULL;
    flm_litert_int8 *q = NULL;
    REQUIRE(l0 && l1 && l2);
    REQUIRE(flm_litert_int8_new(a->model, 1, &q) == 0);
    REQUIRE(flm_forward_new(a->model, 64, &f0) == 0 && flm_forward_new(a->model, 64, &f1) == 0);
    REQUIRE(flm_forward(f0, ids, n, l0, FLM_LOGITS_LAST) == 0);
    REQUIRE(flm_forward_set_litert_int8(f1, q) == 0);
    REQUIRE(flm_forward(f1, ids, n, l1, FLM_LOGITS_LAST) == 0);
    double maxd = 0;
    for (int i = 0; i < V; i++) maxd = fmax(maxd, fabs(l0[i] - l1[i]));
    CHECK_MSG(maxd > 1e-3 && maxd < 2.0, "int8 numerics moved the logits by %g", maxd);
    /* switched off again: fieldlm's own numerics, bit for bit */
    REQUIRE(flm_forward_set_litert_int8(f1, NULL) == 0);
    flm_forward_truncate(f1, 0);
    REQUIRE(flm_forward(f1, ids, n, l2, FLM_LOGITS_LAST) == 0);
    CHECK(!memcmp(l0, l2, (size_t)V * 4));
    /* the session option: greedy with the emulation = greedy over the emulated logits */
    flm_gen_params p;
    flm_gen_params_from_config(a, NULL, true, 0, &p);
    p.max_new_tokens = 1;
    p.n_threads = 1;
    p.litert_int8 = q;
    flm_gen_session *s = NULL;
    REQUIRE(flm_gen_session_new(a, &p, &s) == 0);
    flm_gen_result res;
    REQUIRE(flm_gen_run(s, ids, n, NULL, NULL, &res) == 0);
    int best = 0;
    for (int i = 1; i < V; i++) if (l1[i] > l1[best]) best = i;
    CHECK(res.n_ids == 1 ? res.ids[0] == best : flm_assets_is_eos(a, best));
    flm_gen_session_free(s);
    flm_forward_free(f0);
    flm_forward_free(f1);
    flm_litert_int8_free(q);
    free(l0); free(l1); free(l2);
    flm_assets_close(a);
}

/* ---------------- against the real LiteRT runtime ---------------- */

static float *read_rows(const char *path, size_t *n_floats) {
    char *buf = NULL;
    size_t len = 0;
    if (flm_read_file(path, &buf, &len)) return NULL;
    *n_floats = len / 4;
    return (float *)buf;
}

TEST(ablate_dynamic_int8_emulation_matches_litert) {
    int have = lt_runtime("ablate_dynamic_int8_emulation_matches_litert");
    REQUIRE(have >= 0);
    if (!have) return;
    const char *tmp = test_tmpdir();
    char tfl[1024], args[1536], cmd[4096], lite[1024], f32[1024], emu[1024];
    snprintf(tfl, sizeof tfl, "%s/abl-int8.tflite", tmp);
    snprintf(lite, sizeof lite, "%s/abl-lite.bin", tmp);
    snprintf(f32, sizeof f32, "%s/abl-f32.bin", tmp);
    snprintf(emu, sizeof emu, "%s/abl-emu.bin", tmp);
    snprintf(args, sizeof args, "%s -o %s --type dynamic_int8 --ctx 256 --prefill 8,64", BUNDLED_MODEL, tfl);
    REQUIRE(lt_convert(args, NULL) == 0);
    /* a real prompt and the model's own greedy answer: prefix through the prefill
     * signatures, then 30 teacher-forced decode steps */
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m models/kcc-advisor --greedy -n 30 -t 1 --json -p 'FERTILIZER MANAGEMENT IN PADDY CROP'", test_bin());
    REQUIRE(test_run(cmd, &out, NULL) == 0 && out);
    flm_json_doc *d = flm_json_parse(out, strlen(out), "run");
    REQUIRE(d);
    strbuf ids;
    flm_sb_init(&ids);
    const char *keys[] = {"prompt_ids", "ids"};
    int n = 0, n_prompt = 0;
    for (int k = 0; k < 2; k++) {
        const flm_json *arr = flm_json_get(flm_json_root(d), keys[k]);
        for (size_t i = 0; arr && i < arr->len; i++, n++) flm_sb_printf(&ids, n ? ",%lld" : "%lld", (long long)flm_json_int(flm_json_at(arr, i), 0));
        if (k == 0) n_prompt = n;
    }
    flm_json_free(d);
    free(out);
    REQUIRE(n > n_prompt + 4);
    snprintf(cmd, sizeof cmd, "node tests/litert/run.mjs %s ids:%s --logits-out %s --prefix %d", tfl, flm_sb_cstr(&ids), lite, n_prompt);
    out = NULL;
    int rc = test_run(cmd, &out, NULL);
    CHECK_MSG(rc == 0, "run.mjs: %s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids %s -o %s && %s logits -m %s --ids %s -o %s --litert-int8", test_bin(), BUNDLED_MODEL,
             flm_sb_cstr(&ids), f32, test_bin(), BUNDLED_MODEL, flm_sb_cstr(&ids), emu);
    REQUIRE(test_run(cmd, NULL, NULL) == 0);
    flm_sb_free(&ids);
    size_t nl = 0, nf = 0, ne = 0;
    float *L = read_rows(lite, &nl), *F = read_rows(f32, &nf), *E = read_rows(emu, &ne);
    REQUIRE(L && F && E);
    const size_t V = 151936;
    size_t rows = nl / V;
    CHECK_EQ_INT((int)rows, n - n_prompt + 1);
    REQUIRE(nf == (size_t)n * V && ne == nf && rows >= 1);
    /* LiteRT's row j is position n_prompt-1+j */
    const float *F0 = F + (size_t)(n_prompt - 1) * V, *E0 = E + (size_t)(n_prompt - 1) * V;
    double dF = 0, dE = 0, klF = 0, klE = 0;
    for (size_t j = 0; j < rows; j++) {
        for (size_t i = 0; i < V; i++) {
            dF = fmax(dF, fabs(F0[j * V + i] - L[j * V + i]));
            dE = fmax(dE, fabs(E0[j * V + i] - L[j * V + i]));
        }
        klF += flm_ablate_kl(L + j * V, F0 + j * V, (int)V);
        klE += flm_ablate_kl(L + j * V, E0 + j * V, (int)V);
    }
    klF /= (double)rows;
    klE /= (double)rows;
    fprintf(stderr, "  LiteRT.js dynamic_int8 vs fieldlm over %zu positions: max |f32 - LiteRT| %.3g, max |emulated - LiteRT| %.3g; "
            "mean KL(LiteRT || f32) %.3g, KL(LiteRT || emulated) %.3g\n", rows, dF, dE, klF, klE);
    CHECK_MSG(dE < 1e-3, "emulation %g from LiteRT", dE);
    CHECK_MSG(dE * 100 < dF, "emulation %g vs f32 %g", dE, dF);
    CHECK_MSG(klE * 1000 < klF, "KL emulation %g vs f32 %g", klE, klF);
    free(L); free(F); free(E);
}
