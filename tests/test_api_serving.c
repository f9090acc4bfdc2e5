/* test_api_serving.c — the public API a server needs (include/fieldlm.h):
 * flm_session_configure (per-request settings on a session that keeps its KV cache),
 * flm_token_logprobs (each generated token's log-probability and alternatives) and
 * OpenAI's presence / frequency penalties, checked against what the logits say. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "fieldlm.h"

#define TINY TEST_DATA "/tiny-qwen2"

static flm_handle *open_tiny(void) {
    flm_open_options o = {.n_threads = 2};
    flm_handle *h = NULL;
    if (flm_open(TINY, &o, &h)) test_fail(__FILE__, __LINE__, "flm_open: %s", flm_errmsg(NULL));
    return h;
}

static flm_gen_settings greedy(long max_new) {
    flm_gen_settings o;
    flm_gen_settings_init(&o);
    o.do_sample = 0;
    o.repetition_penalty = 1.0;
    o.max_new_tokens = max_new;
    return o;
}

static const flm_message MSGS[] = {{"system", "You are brief."}, {"user", "Say hello."}};

typedef struct {
    char text[8192];
    size_t len;
} textsink;

static int collect(void *user, const char *piece, size_t len, int32_t token) {
    (void)token;
    textsink *t = user;
    if (t->len + len < sizeof t->text) {
        memcpy(t->text + t->len, piece, len);
        t->len += len;
        t->text[t->len] = 0;
    }
    return 0;
}

TEST(api_configure_keeps_the_cache) {
    flm_handle *h = open_tiny();
    flm_gen_settings st = greedy(12);
    st.n_ctx = 256;
    flm_session *s = NULL;
    REQUIRE(flm_session_new(h, &st, &s) == FLM_OK);
    textsink a = {0}, b = {0};
    flm_result r;
    REQUIRE(flm_generate(s, MSGS, 2, collect, &a, &r) == FLM_OK);
    int prompt = r.timings.prompt_tokens;
    CHECK(r.timings.reused_tokens == 0);
    CHECK(r.timings.generated_tokens == 12);
    /* new settings (fewer tokens, a different seed), same cache */
    flm_gen_settings st2 = greedy(5);
    st2.seed = 7;
    REQUIRE(flm_session_configure(s, &st2) == FLM_OK);
    flm_gen_settings eff;
    REQUIRE(flm_session_settings(s, &eff) == FLM_OK);
    CHECK(eff.max_new_tokens == 5 && eff.seed == 7 && eff.n_ctx == 256);
    REQUIRE(flm_generate(s, MSGS, 2, collect, &b, &r) == FLM_OK);
    CHECK_MSG(r.timings.reused_tokens == prompt - 1, "reused %d of %d", r.timings.reused_tokens, prompt);
    CHECK(r.timings.generated_tokens == 5 && r.stop_reason == FLM_STOP_LENGTH);
    CHECK_MSG(b.len <= a.len && !memcmp(a.text, b.text, b.len), "'%s' is not a prefix of '%s'", b.text, a.text);
    /* fixed fields and bad values: refused, the session unchanged */
    flm_gen_settings bad = greedy(3);
    bad.n_ctx = 128;
    CHECK(flm_session_configure(s, &bad) == FLM_ERR_ARG);
    CHECK(strstr(flm_session_errmsg(s), "n_ctx") != NULL);
    bad = greedy(3);
    bad.presence_penalty = 2.5;
    CHECK(flm_session_configure(s, &bad) == FLM_ERR_ARG);
    CHECK(strstr(flm_session_errmsg(s), "presence_penalty") != NULL);
    bad = greedy(3);
    bad.top_logprobs = 2; /* without logprobs */
    CHECK(flm_session_configure(s, &bad) == FLM_ERR_ARG);
    REQUIRE(flm_session_settings(s, &eff) == FLM_OK);
    CHECK(eff.max_new_tokens == 5);
    CHECK(flm_session_configure(NULL, &st) == FLM_ERR_ARG);
    flm_session_free(s);
    flm_close(h);
}

typedef struct {
    flm_session *s;
    int calls, bad, n;
    int32_t ids[64];
    int counts[1 << 18];
    double fp, pp;
    int penalty_changed; /* steps where the penalty picked another token than the raw argmax */
    char why[256];
} lpcheck;

static int check_lp(void *user, const char *piece, size_t len, int32_t token) {
    (void)piece; (void)len;
    lpcheck *c = user;
    if (token < 0) return 0;
    flm_token_logprob chosen, top[20];
    int n_top = -1;
    if (flm_token_logprobs(c->s, &chosen, top, 20, &n_top) != FLM_OK) { c->bad++; snprintf(c->why, sizeof c->why, "failed"); return 0; }
    c->calls++;
    if (chosen.token != token || n_top != 20 || !(chosen.logprob <= 0)) {
        c->bad++;
        snprintf(c->why, sizeof c->why, "chosen %d/%d n_top %d lp %g", chosen.token, token, n_top, chosen.logprob);
    }
    double mass = 0;
    for (int i = 0; i < n_top; i++) {
        mass += exp(top[i].logprob);
        if (i && top[i].logprob > top[i - 1].logprob) { c->bad++; snprintf(c->why, sizeof c->why, "not sorted at %d", i); }
    }
    if (mass > 1.0001) { c->bad++; snprintf(c->why, sizeof c->why, "top mass %g", mass); }
    /* greedy with penalties: the chosen token maximises logprob - penalty over the candidates */
    double best = -INFINITY;
    int32_t best_id = -1;
    for (int i = 0; i < n_top; i++) {
        int k = top[i].token < (1 << 18) ? c->counts[top[i].token] : 0;
        double v = top[i].logprob - (k * c->fp + (k ? c->pp : 0));
        if (v > best) { best = v; best_id = top[i].token; }
    }
    if (best_id >= 0 && best_id != token) {
        int k = token < (1 << 18) ? c->counts[token] : 0;
        double v = chosen.logprob - (k * c->fp + (k ? c->pp : 0));
        if (v < best - 1e-4) { c->bad++; snprintf(c->why, sizeof c->why, "token %d scores %g < %g of %d", token, v, best, best_id); }
    }
    if (token != top[0].token) c->penalty_changed++;
    if (token < (1 << 18)) c->counts[token]++;
    return 0;
}

TEST(api_logprobs_and_openai_penalties) {
    flm_handle *h = open_tiny();
    REQUIRE(flm_vocab_size(h) <= (1 << 18));
    for (int pass = 0; pass < 2; pass++) {
        flm_gen_settings st = greedy(24);
        st.logprobs = 1;
        st.top_logprobs = 20;
        if (pass) { st.frequency_penalty = 1.5; st.presence_penalty = 0.5; }
        flm_session *s = NULL;
        REQUIRE(flm_session_new(h, &st, &s) == FLM_OK);
        lpcheck *c = calloc(1, sizeof *c);
        REQUIRE(c);
        c->s = s;
        c->fp = pass ? 1.5 : 0;
        c->pp = pass ? 0.5 : 0;
        flm_result r;
        REQUIRE(flm_generate(s, MSGS, 2, check_lp, c, &r) == FLM_OK);
        CHECK_MSG(c->bad == 0, "pass %d: %s", pass, c->why);
        CHECK(c->calls == r.n_ids);
        if (!pass) CHECK_MSG(c->penalty_changed == 0, "greedy without penalties takes the top token");
        else CHECK_MSG(c->penalty_changed > 0, "the penalties never changed the greedy choice");
        /* outside a callback: no log-probabilities */
        flm_token_logprob ch;
        int n;
        CHECK(flm_token_logprobs(s, &ch, NULL, 0, &n) == FLM_ERR_ARG);
        free(c);
        flm_session_free(s);
    }
    /* without logprobs asked for */
    flm_gen_settings st = greedy(2);
    flm_session *s = NULL;
    REQUIRE(flm_session_new(h, &st, &s) == FLM_OK);
    flm_gen_settings eff;
    REQUIRE(flm_session_settings(s, &eff) == FLM_OK);
    CHECK(eff.logprobs == 0 && eff.top_logprobs == 0 && eff.presence_penalty == 0 && eff.frequency_penalty == 0);
    flm_session_free(s);
    st.frequency_penalty = -3;
    CHECK(flm_session_new(h, &st, &s) == FLM_ERR_ARG && s == NULL);
    CHECK(strstr(flm_errmsg(h), "frequency_penalty") != NULL);
    flm_close(h);
}
