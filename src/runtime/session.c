/* session.c — owns the generation layer: loading a model path's assets (model,
 * tokenizer, chat template, generation config, stop ids) from one opened source and
 * checking that they fit together, rendering
 * and encoding prompts, and the generation loop with KV-cache prefix reuse,
 * chunked prefill, eos / stop-string / length / context stops, UTF-8-safe
 * streaming, cancellation and timings. See session.h and docs/GENERATION.md. */
#include "runtime/session.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "package/source.h"
#include "runtime/sampler.h"

/* ================================ assets ================================ */

/* The tokenizer's own eos token (tokenizer_config.json "eos_token", a string or an
 * AddedToken object), as the template source's special-token variables carry it. */
static int32_t tokenizer_eos_id(const flm_assets *a) {
    if (!a->tsrc.vars) return -1;
    const flm_json *v = flm_json_get(flm_json_root(a->tsrc.vars), "eos_token");
    if (v && v->type == JSON_OBJECT) v = flm_json_get(v, "content");
    const char *s = flm_json_string(v, NULL);
    return s ? flm_tokenizer_token_id(a->tok, s) : -1;
}

static void collect_eos(flm_assets *a) {
    flm_gen_config gc = a->gen;
    /* transformers builds the generation config from config.json when the file
     * has no eos_token_id; do the same. */
    if (gc.n_eos == 0) {
        for (int i = 0; i < a->model->cfg.n_eos && gc.n_eos < FLM_GEN_MAX_EOS; i++)
            gc.eos_ids[gc.n_eos++] = a->model->cfg.eos_token_ids[i];
    }
    int n = flm_gen_config_eos_ids(&gc, tokenizer_eos_id(a), a->eos, FLM_MAX_STOP_IDS);
    a->n_eos = n < FLM_MAX_STOP_IDS ? n : FLM_MAX_STOP_IDS;
}

static void load_template(flm_assets *a, const flm_source *src) {
    if (flm_source_template(src, &a->tsrc)) {
        memset(&a->tsrc, 0, sizeof a->tsrc);
        a->tmpl_error = flm_strdup(flm_last_error());
        return;
    }
    const flm_named_template *nt = flm_template_source_pick(&a->tsrc, false, NULL);
    if (!nt || flm_template_compile_n(nt->text, nt->len, &a->tmpl)) {
        a->tmpl = NULL;
        a->tmpl_error = flm_strdup(flm_last_error());
    }
}

/* The tokenizer must fit the embedding it feeds (docs/PACKAGE.md, "Checks at load"):
 * every token id and stop / pad id needs a row, and the tokenizer must name at least
 * half of the rows; more than FLM_UNCOVERED_ROWS_OK rows without a token is a
 * warning (the model can sample ids that print nothing). */
static int check_vocab_coverage(flm_assets *a) {
    const char *path = a->path;
    size_t rows = (size_t)a->model->cfg.vocab_size;
    size_t n_ids = flm_tokenizer_vocab_size(a->tok);
    if (n_ids > rows) {
        const char *t = flm_tokenizer_token_text(a->tok, (int32_t)(n_ids - 1));
        return flm_fail(FLM_ERR_FORMAT, "%s: the tokenizer has token id %zu ('%.40s') but the model's embedding has only %zu rows "
                        "(vocab_size): every token id must be below %zu", path, n_ids - 1, t ? t : "?", rows, rows);
    }
    for (int i = 0; i < a->n_eos; i++)
        if (a->eos[i] >= 0 && (size_t)a->eos[i] >= rows)
            return flm_fail(FLM_ERR_FORMAT, "%s: stop token id %d (eos_token_id) is outside the model's %zu embedding rows "
                            "(allowed: 0..%zu)", path, a->eos[i], rows, rows - 1);
    if (a->gen.pad_id >= 0 && (size_t)a->gen.pad_id >= rows)
        return flm_fail(FLM_ERR_FORMAT, "%s: pad_token_id %d is outside the model's %zu embedding rows (allowed: 0..%zu)", path,
                        a->gen.pad_id, rows, rows - 1);
    size_t covered = 0;
    for (size_t id = 0; id < n_ids; id++) covered += flm_tokenizer_token_text(a->tok, (int32_t)id) != NULL;
    size_t gap = rows - covered;
    if (gap <= FLM_UNCOVERED_ROWS_OK) return FLM_OK;
    if (covered < rows - rows / 2)
        return flm_fail(FLM_ERR_FORMAT, "%s: the tokenizer has %zu tokens for the model's %zu embedding rows (%.1f%%): it does not "
                        "belong to this model (a tokenizer must cover at least half of the rows; Qwen2.5 covers 151665 of 151936)",
                        path, covered, rows, 100.0 * (double)covered / (double)rows);
    char msg[320];
    snprintf(msg, sizeof msg, "%s: %zu of the model's %zu embedding rows have no token in the tokenizer (more than %d): "
             "if the model samples one of them it prints nothing", path, gap, rows, FLM_UNCOVERED_ROWS_OK);
    return (a->warning = flm_strdup(msg)) ? FLM_OK : FLM_ERR_NOMEM;
}

int flm_assets_open(const char *path, const flm_model_options *mopt, flm_assets **out) {
    *out = NULL;
    flm_assets *a = flm_calloc(1, sizeof *a);
    if (!a) return FLM_ERR_NOMEM;
    /* The path is opened once: a package is parsed once for all four loaders. */
    flm_source src;
    int rc = flm_source_open(path, &src);
    if (rc) { free(a); return rc; }
    rc = FLM_ERR_NOMEM;
    if (!(a->path = flm_strdup(path))) goto fail;
    if ((rc = flm_source_model(&src, mopt, &a->model))) goto fail;
    if ((rc = flm_source_tokenizer(&src, &a->tok))) { flm_fail_context(rc, "%s: tokenizer", path); goto fail; }
    if ((rc = flm_source_gen_config(&src, &a->gen))) goto fail;
    load_template(a, &src);
    collect_eos(a);
    if ((rc = check_vocab_coverage(a))) goto fail;
    flm_source_close(&src);
    flm_clear_error();
    *out = a;
    return FLM_OK;
fail:
    flm_source_close(&src);
    flm_assets_close(a);
    return rc;
}

void flm_assets_close(flm_assets *a) {
    if (!a) return;
    flm_template_free(a->tmpl);
    if (a->tsrc.n || a->tsrc.vars || a->tsrc.origin) flm_template_source_free(&a->tsrc);
    free(a->tmpl_error);
    free(a->warning);
    flm_tokenizer_free(a->tok);
    flm_model_close(a->model);
    free(a->path);
    free(a);
}

int flm_assets_render(const flm_assets *a, const flm_json *messages, bool add_generation_prompt, strbuf *out) {
    if (!a->tmpl)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s has no usable chat template (%s); use raw prompt text instead",
                        a->path, a->tmpl_error ? a->tmpl_error : "unknown reason");
    const flm_json *vars = a->tsrc.vars ? flm_json_root(a->tsrc.vars) : NULL;
    return flm_template_render(a->tmpl, messages, NULL, add_generation_prompt, vars, out);
}

int flm_pairs_to_json(const char *const *roles, const char *const *contents, size_t n, flm_json_doc **out) {
    *out = NULL;
    strbuf js;
    flm_sb_init(&js);
    flm_sb_putc(&js, '[');
    for (size_t i = 0; i < n; i++) {
        if (!roles[i] || !contents[i]) { flm_sb_free(&js); return flm_fail(FLM_ERR_ARG, "message %zu has no role or content", i); }
        flm_sb_puts(&js, i ? ", {\"role\": " : "{\"role\": ");
        flm_sb_json_string(&js, roles[i], strlen(roles[i]), false);
        flm_sb_puts(&js, ", \"content\": ");
        flm_sb_json_string(&js, contents[i], strlen(contents[i]), false);
        flm_sb_putc(&js, '}');
    }
    flm_sb_putc(&js, ']');
    if (js.oom) { flm_sb_free(&js); return FLM_ERR_NOMEM; }
    flm_json_doc *doc = flm_json_parse(js.data, js.len, "messages");
    flm_sb_free(&js);
    if (!doc) return flm_fail_context(FLM_ERR_ARG, "messages");
    *out = doc;
    return FLM_OK;
}

int flm_assets_render_pairs(const flm_assets *a, const char *const *roles, const char *const *contents, size_t n,
                            bool add_generation_prompt, strbuf *out) {
    flm_json_doc *doc;
    int rc = flm_pairs_to_json(roles, contents, n, &doc);
    if (rc) return rc;
    rc = flm_assets_render(a, flm_json_root(doc), add_generation_prompt, out);
    flm_json_free(doc);
    return rc;
}

int flm_assets_encode(const flm_assets *a, const char *text, size_t len, int32_t **ids, size_t *n) {
    return flm_tokenizer_encode(a->tok, text, len, ids, n);
}

bool flm_assets_is_eos(const flm_assets *a, int32_t id) {
    for (int i = 0; i < a->n_eos; i++)
        if (a->eos[i] == id) return true;
    return false;
}

void flm_gen_params_from_config(const flm_assets *a, const flm_gen_config *overrides, bool greedy, uint64_t seed,
                                flm_gen_params *p) {
    memset(p, 0, sizeof *p);
    flm_gen_config gc = a->gen;
    if (overrides) flm_gen_config_merge(&gc, overrides);
    p->sp = flm_gen_config_sampler_params(&gc, seed);
    if (greedy) {
        p->sp.do_sample = false;
        if (!(overrides && (overrides->from_user & FLM_GEN_REPETITION_PENALTY))) p->sp.repetition_penalty = 1.0;
    }
    p->max_new_tokens = gc.max_new_tokens > 0 ? (long)gc.max_new_tokens : FLM_DEFAULT_MAX_NEW_TOKENS;
    p->top_logprobs = -1;
}

/* ================================ session ================================ */

struct flm_gen_session {
    const flm_assets *a;
    flm_gen_params p;            /* p.stop points at `stop` below */
    char **stop;                 /* [n_stop] owned copies */
    size_t *stop_len;            /* [n_stop] */
    flm_forward_state *fw;
    flm_sampler *smp;
    int n_vocab;                 /* model logits */
    float *logits;               /* [n_vocab] */
    int32_t *cached;             /* [n_ctx] ids whose keys/values are in fw (n_cached == n_past) */
    int n_cached;
    int32_t *hist;               /* [n_ctx] this run: prompt ids then generated ids */
    int n_hist, n_prompt;
    strbuf text;                 /* this run's decoded text, [0..emitted) delivered */
    size_t emitted;
    strbuf piece;                /* scratch for one callback's text */
    atomic_int cancel;
    int *counts;                 /* [n_vocab] generated-id counts for presence/frequency penalties, or NULL */
    float *raw;                  /* [n_vocab] this step's raw logits when log-probabilities are asked for */
    double raw_lse;              /* log-sum-exp of raw */
    int32_t last_tok;            /* the token the current piece callback is about */
};

static void free_stops(char **stop, size_t *stop_len, int n) {
    for (int i = 0; stop && i < n; i++) free(stop[i]);
    free(stop);
    free(stop_len);
}

/* Owned copies of p's stop strings (NULL when there are none). */
static int copy_stops(const flm_gen_params *p, char ***stop, size_t **stop_len) {
    *stop = NULL;
    *stop_len = NULL;
    if (!p->n_stop) return FLM_OK;
    char **st = flm_calloc((size_t)p->n_stop, sizeof *st);
    size_t *len = flm_calloc((size_t)p->n_stop, sizeof *len);
    int rc = FLM_ERR_NOMEM;
    if (!st || !len) goto fail;
    for (int i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || !p->stop[i][0]) { rc = flm_fail(FLM_ERR_ARG, "stop string %d is empty", i); goto fail; }
        if (!(st[i] = flm_strdup(p->stop[i]))) goto fail;
        len[i] = strlen(st[i]);
    }
    *stop = st;
    *stop_len = len;
    return FLM_OK;
fail:
    free_stops(st, len, p->n_stop);
    return rc;
}

static int check_extras(const flm_gen_params *p) {
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return flm_fail(FLM_ERR_ARG, "presence_penalty must be in [-2, 2] (got %g)", p->presence_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return flm_fail(FLM_ERR_ARG, "frequency_penalty must be in [-2, 2] (got %g)", p->frequency_penalty);
    if (p->top_logprobs > FLM_GEN_MAX_TOP_LOGPROBS)
        return flm_fail(FLM_ERR_ARG, "top_logprobs must be at most %d (got %d)", FLM_GEN_MAX_TOP_LOGPROBS, p->top_logprobs);
    return FLM_OK;
}

int flm_gen_session_new(const flm_assets *a, const flm_gen_params *p, flm_gen_session **out) {
    *out = NULL;
    if (p->max_new_tokens <= 0) return flm_fail(FLM_ERR_ARG, "max_new_tokens must be positive (got %ld)", p->max_new_tokens);
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop)) return flm_fail(FLM_ERR_ARG, "bad stop string list");
    flm_gen_session *s = flm_calloc(1, sizeof *s);
    if (!s) return FLM_ERR_NOMEM;
    s->a = a;
    s->p = *p;
    atomic_init(&s->cancel, 0);
    flm_sb_init(&s->text);
    flm_sb_init(&s->piece);
    int rc = copy_stops(p, &s->stop, &s->stop_len);
    if (rc) goto fail;
    s->p.stop = (const char *const *)s->stop;
    if ((rc = check_extras(p))) goto fail;
    if ((rc = flm_sampler_new(&p->sp, a->model->cfg.vocab_size, &s->smp))) goto fail;
    if ((rc = flm_forward_new(a->model, p->n_ctx, &s->fw))) goto fail;
    if ((rc = flm_forward_set_threads(s->fw, p->n_threads))) goto fail;
    if (p->litert_int8 && (rc = flm_forward_set_litert_int8(s->fw, p->litert_int8))) goto fail;
    int n_ctx = flm_forward_n_ctx(s->fw);
    s->n_vocab = a->model->cfg.vocab_size;
    rc = FLM_ERR_NOMEM;
    s->logits = flm_malloc((size_t)s->n_vocab * sizeof *s->logits);
    s->cached = flm_malloc((size_t)n_ctx * sizeof *s->cached);
    s->hist = flm_malloc((size_t)n_ctx * sizeof *s->hist);
    if (!s->logits || !s->cached || !s->hist) goto fail;
    *out = s;
    return FLM_OK;
fail:
    flm_gen_session_free(s);
    return rc;
}

void flm_gen_session_free(flm_gen_session *s) {
    if (!s) return;
    free_stops(s->stop, s->stop_len, s->p.n_stop);
    free(s->counts);
    free(s->raw);
    flm_sampler_free(s->smp);
    flm_forward_free(s->fw);
    free(s->logits);
    free(s->cached);
    free(s->hist);
    flm_sb_free(&s->text);
    flm_sb_free(&s->piece);
    free(s);
}

int flm_gen_session_n_ctx(const flm_gen_session *s) { return flm_forward_n_ctx(s->fw); }
const flm_gen_params *flm_gen_session_params(const flm_gen_session *s) { return &s->p; }

void flm_gen_session_reset(flm_gen_session *s) {
    flm_forward_truncate(s->fw, 0);
    s->n_cached = 0;
    s->n_hist = s->n_prompt = 0;
    flm_sb_clear(&s->text);
    s->emitted = 0;
    flm_sampler_reset(s->smp, s->p.sp.seed);
}

void flm_gen_cancel(flm_gen_session *s) { atomic_store(&s->cancel, 1); }

int flm_gen_session_set_params(flm_gen_session *s, const flm_gen_params *p) {
    if (p->max_new_tokens <= 0) return flm_fail(FLM_ERR_ARG, "max_new_tokens must be positive (got %ld)", p->max_new_tokens);
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop)) return flm_fail(FLM_ERR_ARG, "bad stop string list");
    int rc = check_extras(p);
    if (rc) return rc;
    char **stop;
    size_t *stop_len;
    if ((rc = copy_stops(p, &stop, &stop_len))) return rc;
    flm_sampler *smp;
    if ((rc = flm_sampler_new(&p->sp, s->n_vocab, &smp))) { free_stops(stop, stop_len, p->n_stop); return rc; }
    free_stops(s->stop, s->stop_len, s->p.n_stop);
    flm_sampler_free(s->smp);
    int n_ctx = s->p.n_ctx, n_threads = s->p.n_threads;
    s->p = *p;
    s->p.n_ctx = n_ctx;
    s->p.n_threads = n_threads;
    s->stop = stop;
    s->stop_len = stop_len;
    s->p.stop = (const char *const *)stop;
    s->smp = smp;
    return FLM_OK;
}

int flm_gen_token_logprobs(const flm_gen_session *s, int32_t *token, float *logprob, int32_t *top_ids,
                           float *top_lp, int cap, int *n_top) {
    *n_top = 0;
    if (s->p.top_logprobs < 0 || !s->raw || s->last_tok < 0)
        return flm_fail(FLM_ERR_ARG, "no log-probabilities: the session does not compute them (top_logprobs unset) "
                                     "or no token is being delivered");
    *token = s->last_tok;
    *logprob = (float)(s->raw[s->last_tok] - s->raw_lse);
    int want = s->p.top_logprobs < cap ? s->p.top_logprobs : cap;
    /* one pass keeping the `want` largest sorted (most likely first; a later id never
     * displaces an equal earlier one, so ties keep the lower id first) */
    int n = 0;
    for (int32_t i = 0; i < s->n_vocab && want > 0; i++) {
        float v = s->raw[i];
        if (n == want && !(v > s->raw[top_ids[n - 1]])) continue;
        int j = n < want ? n++ : n - 1;
        while (j > 0 && v > s->raw[top_ids[j - 1]]) { top_ids[j] = top_ids[j - 1]; j--; }
        top_ids[j] = i;
    }
    for (int k = 0; k < n; k++) top_lp[k] = (float)(s->raw[top_ids[k]] - s->raw_lse);
    *n_top = n;
    return FLM_OK;
}

/* The raw logits kept for log-probabilities (before penalties), with their log-sum-exp. */
static void keep_raw(flm_gen_session *s) {
    memcpy(s->raw, s->logits, (size_t)s->n_vocab * sizeof *s->raw);
    float mx = -INFINITY;
    for (int i = 0; i < s->n_vocab; i++)
        if (s->raw[i] > mx) mx = s->raw[i];
    double sum = 0;
    for (int i = 0; i < s->n_vocab; i++) sum += exp((double)s->raw[i] - mx);
    s->raw_lse = mx + log(sum);
}

/* OpenAI's presence and frequency penalties over the ids generated so far:
 * logit -= count * frequency_penalty + presence_penalty for every generated id. */
static void apply_openai_penalties(flm_gen_session *s) {
    const int32_t *gen = s->hist + s->n_prompt;
    int n = s->n_hist - s->n_prompt;
    for (int i = 0; i < n; i++) s->counts[gen[i]]++;
    for (int i = 0; i < n; i++) {
        int c = s->counts[gen[i]];
        if (c <= 0) continue; /* done already */
        s->logits[gen[i]] -= (float)(c * s->p.frequency_penalty + s->p.presence_penalty);
        s->counts[gen[i]] = 0;
    }
}

/* ---- stop strings ---- */

/* Earliest occurrence of any stop string in text[from..len); returns its offset or -1. */
static long find_stop(const flm_gen_session *s, size_t from) {
    long best = -1;
    for (int i = 0; i < s->p.n_stop; i++) {
        const char *hit = memmem(s->text.data + from, s->text.len - from, s->stop[i], s->stop_len[i]);
        if (hit && (best < 0 || hit - s->text.data < best)) best = hit - s->text.data;
    }
    return best;
}

/* Bytes at the end of text[from..len) that are a proper prefix of some stop string
 * (so they must be held back until the next token decides). */
static size_t stop_holdback(const flm_gen_session *s, size_t from) {
    size_t avail = s->text.len - from, hold = 0;
    for (int i = 0; i < s->p.n_stop; i++) {
        size_t k = s->stop_len[i] - 1 < avail ? s->stop_len[i] - 1 : avail;
        for (; k > hold; k--)
            if (!memcmp(s->text.data + s->text.len - k, s->stop[i], k)) { hold = k; break; }
    }
    return hold;
}

/* Delivers text[emitted..upto) to the callback; returns its result (0 = go on). */
static int deliver(flm_gen_session *s, size_t upto, int32_t token, flm_gen_piece_fn cb, void *user) {
    size_t from = s->emitted;
    s->emitted = upto;
    if (!cb) return 0;
    flm_sb_clear(&s->piece);
    flm_sb_append(&s->piece, s->text.data + from, upto - from);
    return cb(user, flm_sb_cstr(&s->piece), upto - from, token);
}

static int feed(flm_gen_session *s, const int32_t *ids, int n, flm_logits_mode mode) {
    int rc = flm_forward(s->fw, ids, n, s->logits, mode);
    if (rc) return rc;
    memcpy(s->cached + s->n_cached, ids, (size_t)n * sizeof *ids);
    s->n_cached += n;
    return FLM_OK;
}

int flm_gen_run(flm_gen_session *s, const int32_t *prompt, int n_prompt, flm_gen_piece_fn cb, void *user,
                flm_gen_result *res) {
    atomic_store(&s->cancel, 0);
    memset(res, 0, sizeof *res);
    res->stop_token = -1;
    double t0 = flm_now_seconds();
    const flm_assets *a = s->a;
    int n_ctx = flm_forward_n_ctx(s->fw);
    s->n_hist = s->n_prompt = 0;
    flm_sb_clear(&s->text);
    s->emitted = 0;
    if (n_prompt <= 0) return flm_fail(FLM_ERR_ARG, "the prompt is empty (0 tokens)");
    if (n_prompt >= n_ctx)
        return flm_fail(FLM_ERR_CONTEXT,
                        "the prompt is %d tokens but the context holds %d: the prompt and at least one new token "
                        "must fit (raise the context length, up to the model's %d, or shorten the prompt)",
                        n_prompt, n_ctx, a->model->cfg.max_position_embeddings);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->n_vocab)
            return flm_fail(FLM_ERR_ARG, "prompt token %d (id %d) is outside the model's vocabulary of %d", i, prompt[i], s->n_vocab);
    memcpy(s->hist, prompt, (size_t)n_prompt * sizeof *prompt);
    s->n_hist = s->n_prompt = n_prompt;

    /* Reuse the cached prefix; at least the last prompt token is recomputed for its logits. */
    int common = 0;
    while (common < s->n_cached && common < n_prompt - 1 && s->cached[common] == prompt[common]) common++;
    flm_forward_truncate(s->fw, common);
    s->n_cached = common;

    flm_stop_reason why = FLM_STOP_NONE;
    int rc = FLM_OK;
    for (int pos = common; pos < n_prompt;) {
        if (atomic_load(&s->cancel)) { why = FLM_STOP_CANCELLED; break; }
        int n = n_prompt - pos < FLM_PREFILL_CHUNK ? n_prompt - pos : FLM_PREFILL_CHUNK;
        if ((rc = feed(s, prompt + pos, n, pos + n == n_prompt ? FLM_LOGITS_LAST : FLM_LOGITS_NONE))) goto fail;
        pos += n;
    }
    double t_prefill = flm_now_seconds();
    res->timings.prompt_tokens = n_prompt;
    res->timings.reused_tokens = common;
    res->timings.prefill_s = t_prefill - t0;
    if (res->timings.prefill_s > 0) res->timings.prefill_tok_s = (n_prompt - common) / res->timings.prefill_s;

    flm_token_stream ts;
    flm_token_stream_init(&ts, a->tok);
    int n_gen = 0;
    bool penalties = s->p.presence_penalty != 0 || s->p.frequency_penalty != 0;
    s->last_tok = -1;
    if (why == FLM_STOP_NONE && penalties && !s->counts && !(s->counts = flm_calloc((size_t)s->n_vocab, sizeof *s->counts))) {
        rc = FLM_ERR_NOMEM;
        goto fail;
    }
    if (why == FLM_STOP_NONE && s->p.top_logprobs >= 0 && !s->raw && !(s->raw = flm_malloc((size_t)s->n_vocab * sizeof *s->raw))) {
        rc = FLM_ERR_NOMEM;
        goto fail;
    }
    while (why == FLM_STOP_NONE) {
        if (atomic_load(&s->cancel)) { why = FLM_STOP_CANCELLED; break; }
        if (s->p.top_logprobs >= 0) keep_raw(s);
        if (penalties) apply_openai_penalties(s);
        int32_t tok = flm_sampler_sample(s->smp, s->logits, s->n_vocab, s->hist, (size_t)s->n_hist);
        s->last_tok = tok;
        if (tok < 0) { rc = tok; goto fail; }
        if (n_gen == 0) res->timings.ttft_s = flm_now_seconds() - t0;
        if (flm_assets_is_eos(a, tok)) { why = FLM_STOP_EOS; res->stop_token = tok; break; }
        s->hist[s->n_hist++] = tok;
        n_gen++;
        /* ids past the tokenizer's vocabulary (padding rows of the embedding) have no text */
        if (flm_tokenizer_token_text(a->tok, tok) && (rc = flm_token_stream_feed(&ts, tok, &s->text))) goto fail;
        if (s->text.oom) { rc = FLM_ERR_NOMEM; goto fail; }
        size_t upto = s->text.len;
        if (s->p.n_stop) {
            long at = find_stop(s, s->emitted);
            if (at >= 0) { upto = (size_t)at; why = FLM_STOP_STRING; }
            else upto -= stop_holdback(s, s->emitted);
        }
        if (deliver(s, upto, tok, cb, user) && why == FLM_STOP_NONE) { why = FLM_STOP_CANCELLED; break; }
        if (why != FLM_STOP_NONE) break;
        if (n_gen >= s->p.max_new_tokens) { why = FLM_STOP_LENGTH; break; }
        if (s->n_hist >= n_ctx) { why = FLM_STOP_CONTEXT; break; }
        if ((rc = feed(s, &tok, 1, FLM_LOGITS_LAST))) goto fail;
    }
    /* Release what was held back (an unfinished character becomes U+FFFD, as decode
     * does) unless a stop string ended the text or the callback asked to stop. */
    bool cb_stopped = why == FLM_STOP_CANCELLED && !atomic_load(&s->cancel);
    s->last_tok = -1;
    if (why != FLM_STOP_STRING && !cb_stopped) {
        flm_token_stream_flush(&ts, &s->text);
        if (s->text.len > s->emitted) deliver(s, s->text.len, -1, cb, user);
    }
    atomic_store(&s->cancel, 0);
    s->text.len = s->emitted;
    if (s->text.data) s->text.data[s->text.len] = 0;
    double t_end = flm_now_seconds();
    res->stop_reason = why;
    res->timings.generated_tokens = n_gen;
    res->timings.decode_s = t_end - t_prefill;
    if (res->timings.decode_s > 0) res->timings.decode_tok_s = n_gen / res->timings.decode_s;
    res->prompt_ids = s->hist;
    res->n_prompt = s->n_prompt;
    res->ids = s->hist + s->n_prompt;
    res->n_ids = n_gen;
    res->text = s->text.data ? s->text.data : "";
    res->text_len = s->text.len;
    return FLM_OK;
fail:
    s->last_tok = -1;
    /* The cache holds exactly s->cached[0..n_cached) still; a failed forward left it untouched. */
    return rc;
}

int flm_gen_run_text(flm_gen_session *s, const char *text, flm_gen_piece_fn cb, void *user, flm_gen_result *res) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = flm_assets_encode(s->a, text, strlen(text), &ids, &n);
    if (rc) return rc;
    if (n > (size_t)INT32_MAX) { free(ids); return flm_fail(FLM_ERR_CONTEXT, "the prompt is too long (%zu tokens)", n); }
    rc = flm_gen_run(s, ids, (int)n, cb, user, res);
    free(ids);
    return rc;
}

int flm_gen_run_chat(flm_gen_session *s, const char *const *roles, const char *const *contents, size_t n,
                     flm_gen_piece_fn cb, void *user, flm_gen_result *res) {
    strbuf prompt;
    flm_sb_init(&prompt);
    int rc = flm_assets_render_pairs(s->a, roles, contents, n, true, &prompt);
    if (!rc) rc = flm_gen_run_text(s, flm_sb_cstr(&prompt), cb, user, res);
    flm_sb_free(&prompt);
    return rc;
}
