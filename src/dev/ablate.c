/* ablate.c — the ablation driver of `fieldlm ablate` (ablate.h, docs/FIDELITY.md).
 *
 * Generation here is the session's loop (runtime/session.c) written out over the
 * forward state and the sampler, so that stops, the prompt text, the capacity and the
 * numerics can each be switched alone: a fresh prefill of the prompt in chunks of
 * FLM_PREFILL_CHUNK (as `fieldlm run` does, so greedy_default equals `run --greedy`),
 * then sample → stop id? → append → token limit? → capacity? → feed the token.
 * Teacher forcing reuses the prompt left in the cache: [last prompt token, answer…]
 * in one call with every position's logits. */
#include "dev/ablate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "runtime/forward.h"
#include "runtime/litert_int8.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"

const char *const flm_ablate_names[FLM_ABL_N] = {
    "baseline", "greedy_default", "no_repetition_penalty", "stop_endoftext_only",
    "affix_template", "kv_cap_1280", "dynamic_int8", "litert_defaults",
};

/* ================================ metrics ================================ */

bool flm_ablate_repeats(const int32_t *ids, int n) {
    const int g = FLM_ABLATE_NGRAM;
    for (int i = 0; i + g <= n; i++) {
        int count = 1;
        for (int j = i + 1; j + g <= n && count < FLM_ABLATE_NGRAM_COUNT; j++)
            if (!memcmp(ids + i, ids + j, (size_t)g * sizeof *ids)) count++;
        if (count >= FLM_ABLATE_NGRAM_COUNT) return true;
    }
    return false;
}

bool flm_ablate_loops(const int32_t *ids, int n) {
    for (int p = 1; p <= FLM_ABLATE_LOOP_MAX_PERIOD; p++) {
        int k = p; /* the last k tokens are periodic with period p */
        while (k < n && ids[n - 1 - k] == ids[n - 1 - k + p]) k++;
        if (k >= 3 * p && k >= FLM_ABLATE_LOOP_MIN_TOKENS) return true;
    }
    return false;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double flm_ablate_distinct2(const int32_t *const *answers, const int *lens, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += lens[i] > 1 ? (size_t)lens[i] - 1 : 0;
    if (!total) return 0;
    uint64_t *bg = malloc(total * sizeof *bg);
    if (!bg) return NAN;
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j + 1 < lens[i]; j++) bg[k++] = (uint64_t)(uint32_t)answers[i][j] << 32 | (uint32_t)answers[i][j + 1];
    qsort(bg, total, sizeof *bg, cmp_u64);
    size_t distinct = 0;
    for (size_t i = 0; i < total; i++) distinct += i == 0 || bg[i] != bg[i - 1];
    free(bg);
    return (double)distinct / (double)total;
}

bool flm_ablate_runaway(const int32_t *ids, int n, int32_t end_of_turn, bool cut, const char *text, size_t len) {
    for (int i = 0; i < n; i++)
        if (ids[i] == end_of_turn) return true;
    if (!cut) return false;
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\t' || text[len - 1] == '\r')) len--;
    if (len == 0) return true;
    char c = text[len - 1];
    if (c == '.' || c == '!' || c == '?') return false;
    if (len >= 3 && !memcmp(text + len - 3, "\xe0\xa5\xa4", 3)) return false; /* U+0964 DEVANAGARI DANDA */
    return true;
}

/* log-sum-exp of x[0..n): max + log(sum exp(x - max)), the sum in double of float exps. */
static double log_sum_exp(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)expf(x[i] - m);
    return (double)m + log(s);
}

/* KL(softmax(p) || softmax(q)) given p's log-sum-exp: terms with p below e^-60 add
 * nothing a double can hold against the rest. */
static double kl_lse(const float *p, double lp, const float *q, int n) {
    double lq = log_sum_exp(q, n), kl = 0;
    for (int i = 0; i < n; i++) {
        double a = (double)p[i] - lp;
        if (a < -60) continue;
        kl += exp(a) * (a - ((double)q[i] - lq));
    }
    return kl > 0 ? kl : 0;
}

double flm_ablate_kl(const float *p, const float *q, int n) { return kl_lse(p, log_sum_exp(p, n), q, n); }

/* ================================ questions ================================ */

void flm_ablate_questions_free(flm_ablate_questions *qs) {
    for (int i = 0; qs->q && i < qs->n; i++) {
        for (int j = 0; j < qs->q[i].n_msg; j++) { free(qs->q[i].role[j]); free(qs->q[i].content[j]); }
        free(qs->q[i].role);
        free(qs->q[i].content);
    }
    free(qs->q);
    qs->q = NULL;
    qs->n = 0;
}

static int parse_question(const char *path, int line, const char *text, size_t len, flm_ablate_question *q) {
    char what[64];
    snprintf(what, sizeof what, "line %d", line);
    flm_json_doc *doc = flm_json_parse(text, len, what);
    if (!doc) {
        char msg[512]; /* the message lives in the buffer flm_fail writes */
        snprintf(msg, sizeof msg, "%s", flm_last_error());
        return flm_fail(FLM_ERR_FORMAT, "%s: %s (each line must be one JSON object {\"messages\": [...]})", path, msg);
    }
    int rc = FLM_ERR_FORMAT;
    const flm_json *root = flm_json_root(doc), *msgs = flm_json_get(root, "messages");
    if (root->type != JSON_OBJECT || !msgs || msgs->type != JSON_ARRAY || msgs->len == 0) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: line %d: expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} with at least one message", path, line);
        goto done;
    }
    q->role = flm_calloc(msgs->len, sizeof *q->role);
    q->content = flm_calloc(msgs->len, sizeof *q->content);
    if (!q->role || !q->content) { rc = FLM_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < msgs->len; i++) {
        const flm_json *m = flm_json_at(msgs, i);
        const char *role = flm_json_string(flm_json_get(m, "role"), NULL), *content = flm_json_string(flm_json_get(m, "content"), NULL);
        if (!role || !content) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: line %d: message %zu needs a string \"role\" and a string \"content\"", path, line, i + 1);
            goto done;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: line %d: message %zu has role '%s' (expected system, user or assistant)", path, line, i + 1, role);
            goto done;
        }
        if (i + 1 == msgs->len && strcmp(role, "user")) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: line %d: the last message must be the user's question (it is '%s')", path, line, role);
            goto done;
        }
        if (!(q->role[i] = flm_strdup(role)) || !(q->content[i] = flm_strdup(content))) { q->n_msg = (int)i + 1; rc = FLM_ERR_NOMEM; goto done; }
        q->n_msg = (int)i + 1;
    }
    rc = FLM_OK;
done:
    flm_json_free(doc);
    return rc;
}

int flm_ablate_questions_load(const char *path, int max_n, flm_ablate_questions *out) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    int rc = flm_read_file(path, &buf, &len);
    if (rc) return rc;
    int cap = 0, line = 0;
    for (size_t pos = 0; pos < len && (max_n <= 0 || out->n < max_n);) {
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl != NULL);
        line++;
        size_t a = 0;
        while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) a++;
        if (a == n) continue;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            flm_ablate_question *t = flm_realloc(out->q, (size_t)cap * sizeof *t);
            if (!t) { rc = FLM_ERR_NOMEM; goto fail; }
            out->q = t;
        }
        memset(&out->q[out->n], 0, sizeof out->q[out->n]);
        rc = parse_question(path, line, s, n, &out->q[out->n]);
        out->n++;
        if (rc) goto fail;
    }
    free(buf);
    if (out->n == 0) return flm_fail(FLM_ERR_FORMAT, "%s: no questions (expected JSONL: one {\"messages\": [...]} per line)", path);
    if (max_n > 0 && out->n < max_n) {
        int have = out->n;
        flm_ablate_questions_free(out);
        return flm_fail(FLM_ERR_ARG, "%s has %d question%s; %d were asked for", path, have, have == 1 ? "" : "s", max_n);
    }
    return FLM_OK;
fail:
    free(buf);
    flm_ablate_questions_free(out);
    return rc;
}

/* ================================ generation ================================ */

typedef struct {
    flm_forward_state *fw;
    float *logits;           /* [V] */
    int32_t *hist;           /* [n_ctx] prompt + answer */
    int n_ctx, V;
    int prompt_in_cache;     /* the last generate()'s prompt length (its ids are in hist), 0: none */
} runner;

static void runner_free(runner *r) {
    flm_forward_free(r->fw);
    free(r->logits);
    free(r->hist);
    memset(r, 0, sizeof *r);
}

static int runner_new(const flm_assets *a, int n_ctx, int n_threads, const flm_litert_int8 *li8, runner *r) {
    memset(r, 0, sizeof *r);
    int rc = flm_forward_new(a->model, n_ctx, &r->fw);
    if (!rc) rc = flm_forward_set_threads(r->fw, n_threads);
    if (!rc && li8) rc = flm_forward_set_litert_int8(r->fw, li8);
    if (rc) { runner_free(r); return rc; }
    r->n_ctx = flm_forward_n_ctx(r->fw);
    r->V = a->model->cfg.vocab_size;
    r->logits = flm_malloc((size_t)r->V * sizeof *r->logits);
    r->hist = flm_malloc((size_t)r->n_ctx * sizeof *r->hist);
    if (!r->logits || !r->hist) { runner_free(r); return FLM_ERR_NOMEM; }
    return FLM_OK;
}

typedef struct {
    int32_t *ids;            /* generated, stop token excluded */
    int n;
    flm_stop_reason stop;
    int32_t stop_token;      /* the stop id, or -1 */
    bool refused;            /* the prompt did not fit the capacity */
    char *text;              /* decoded */
    size_t text_len;
} answer;

static void answer_free(answer *x) {
    free(x->ids);
    free(x->text);
    memset(x, 0, sizeof *x);
}

static bool in_set(const int32_t *set, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (set[i] == id) return true;
    return false;
}

static int decode(runner *r, const flm_assets *a, int n_prompt, int n_gen, flm_sampler *smp, const int32_t *stops,
                  int n_stops, int max_new, answer *out);

static int generate(runner *r, const flm_assets *a, const int32_t *prompt, int n_prompt, flm_sampler *smp,
                    const int32_t *stops, int n_stops, int max_new, answer *out) {
    memset(out, 0, sizeof *out);
    out->stop_token = -1;
    r->prompt_in_cache = 0;
    if (n_prompt >= r->n_ctx) { out->refused = true; return FLM_OK; }
    flm_forward_truncate(r->fw, 0);
    int rc;
    for (int pos = 0; pos < n_prompt;) {
        int n = n_prompt - pos < FLM_PREFILL_CHUNK ? n_prompt - pos : FLM_PREFILL_CHUNK;
        if ((rc = flm_forward(r->fw, prompt + pos, n, r->logits, pos + n == n_prompt ? FLM_LOGITS_LAST : FLM_LOGITS_NONE))) return rc;
        pos += n;
    }
    memcpy(r->hist, prompt, (size_t)n_prompt * sizeof *prompt);
    r->prompt_in_cache = n_prompt;
    return decode(r, a, n_prompt, 0, smp, stops, n_stops, max_new, out);
}

/* The decoding loop from r->logits, with n_gen tokens already generated after the
 * n_prompt prompt tokens in r->hist (0: a fresh answer). */
static int decode(runner *r, const flm_assets *a, int n_prompt, int n_gen, flm_sampler *smp, const int32_t *stops,
                  int n_stops, int max_new, answer *out) {
    int rc, n_hist = n_prompt + n_gen;
    flm_stop_reason why = FLM_STOP_NONE;
    while (why == FLM_STOP_NONE) {
        int32_t tok = flm_sampler_sample(smp, r->logits, r->V, r->hist, (size_t)n_hist);
        if (tok < 0) return tok;
        if (in_set(stops, n_stops, tok)) { why = FLM_STOP_EOS; out->stop_token = tok; break; }
        r->hist[n_hist++] = tok;
        n_gen++;
        if (n_gen >= max_new) { why = FLM_STOP_LENGTH; break; }
        if (n_hist >= r->n_ctx) { why = FLM_STOP_CONTEXT; break; }
        if ((rc = flm_forward(r->fw, &tok, 1, r->logits, FLM_LOGITS_LAST))) return rc;
    }
    out->stop = why;
    out->n = n_gen;
    free(out->ids);
    free(out->text);
    out->text = NULL;
    out->ids = flm_malloc(((size_t)n_gen + 1) * sizeof *out->ids);
    if (!out->ids) return FLM_ERR_NOMEM;
    memcpy(out->ids, r->hist + n_prompt, (size_t)n_gen * sizeof *out->ids);
    strbuf sb;
    flm_sb_init(&sb);
    if ((rc = flm_tokenizer_decode(a->tok, out->ids, (size_t)n_gen, &sb))) { flm_sb_free(&sb); return rc; }
    if (sb.oom) { flm_sb_free(&sb); return FLM_ERR_NOMEM; }
    out->text_len = sb.len;
    out->text = sb.data ? sb.data : flm_strdup("");
    return out->text ? FLM_OK : FLM_ERR_NOMEM;
}

/* stop_endoftext_only from the baseline's run b (the runner and sampler just as b's
 * generation left them): up to the baseline's stop both runs are one computation (same
 * prompt, numerics, seed and draws); they part only where the baseline stopped on an
 * id that is not <|endoftext|> — there this run appends it, feeds it and goes on. */
static int continue_past(runner *r, const flm_assets *a, int n_prompt, const answer *b, flm_sampler *smp, int32_t eot,
                         int max_new, answer *out) {
    memset(out, 0, sizeof *out);
    out->stop_token = -1;
    if (b->stop != FLM_STOP_EOS || b->stop_token == eot) {
        /* the same answer: copy it */
        out->stop = b->stop;
        out->stop_token = b->stop_token;
        out->n = b->n;
        out->ids = flm_malloc(((size_t)b->n + 1) * sizeof *out->ids);
        out->text = flm_malloc(b->text_len + 1);
        if (!out->ids || !out->text) return FLM_ERR_NOMEM;
        memcpy(out->ids, b->ids, (size_t)b->n * sizeof *out->ids);
        memcpy(out->text, b->text, b->text_len + 1);
        out->text_len = b->text_len;
        return FLM_OK;
    }
    int32_t tok = b->stop_token;
    int n_gen = b->n, n_hist = n_prompt + n_gen;
    r->hist[n_hist++] = tok;
    n_gen++;
    if (n_gen >= max_new || n_hist >= r->n_ctx) {
        out->stop = n_gen >= max_new ? FLM_STOP_LENGTH : FLM_STOP_CONTEXT;
        out->n = n_gen;
        out->ids = flm_malloc(((size_t)n_gen + 1) * sizeof *out->ids);
        if (!out->ids) return FLM_ERR_NOMEM;
        memcpy(out->ids, r->hist + n_prompt, (size_t)n_gen * sizeof *out->ids);
        strbuf sb;
        flm_sb_init(&sb);
        int rc = flm_tokenizer_decode(a->tok, out->ids, (size_t)n_gen, &sb);
        if (rc || sb.oom) { flm_sb_free(&sb); return rc ? rc : FLM_ERR_NOMEM; }
        out->text_len = sb.len;
        out->text = sb.data ? sb.data : flm_strdup("");
        return out->text ? FLM_OK : FLM_ERR_NOMEM;
    }
    int rc = flm_forward(r->fw, &tok, 1, r->logits, FLM_LOGITS_LAST);
    if (rc) return rc;
    return decode(r, a, n_prompt, n_gen, smp, &eot, 1, max_new, out);
}

/* The logits of the positions that predict T[0..m) after the prompt (row j predicts
 * T[j]), as far as they fit the capacity (the token predicted by row j sits at position
 * n_prompt + j < n_ctx). The prompt must be the one of the runner's last generate().
 * *rows receives how many rows were written to out ([m, V]). */
static int teacher(runner *r, const int32_t *prompt, int n_prompt, const int32_t *T, int m, float *out, int *rows) {
    *rows = 0;
    int k = m < r->n_ctx - n_prompt ? m : r->n_ctx - n_prompt;
    if (k <= 0 || n_prompt <= 0) return FLM_OK;
    if (r->prompt_in_cache != n_prompt || memcmp(r->hist, prompt, (size_t)n_prompt * sizeof *prompt))
        return flm_fail(FLM_ERR_ARG, "teacher forcing needs its prompt in the cache");
    flm_forward_truncate(r->fw, n_prompt - 1);
    int32_t *in = flm_malloc((size_t)k * sizeof *in);
    if (!in) return FLM_ERR_NOMEM;
    in[0] = prompt[n_prompt - 1];
    for (int j = 1; j < k; j++) in[j] = T[j - 1];
    int rc = flm_forward(r->fw, in, k, out, FLM_LOGITS_ALL);
    free(in);
    r->prompt_in_cache = 0; /* the cache now holds the teacher's tokens */
    if (!rc) *rows = k;
    return rc;
}

/* ================================ prompts ================================ */

/* LiteRT-LM's prompt when the package has no jinja_prompt_template: the turns wrapped in
 * the user / model / system affixes, the assistant's role written `model`, and no system
 * message unless the conversation has one (so Qwen's default system prompt is absent).
 * The affixes are ChatML's as a Qwen package gives them (<|im_start|>ROLE\n … <|im_end|>\n). */
static void render_affix(const char *const *roles, const char *const *contents, int n, strbuf *sb) {
    for (int i = 0; i < n; i++) {
        const char *role = !strcmp(roles[i], "assistant") ? "model" : roles[i];
        flm_sb_printf(sb, "<|im_start|>%s\n%s<|im_end|>\n", role, contents[i]);
    }
    flm_sb_puts(sb, "<|im_start|>model\n");
}

static int make_prompt(const flm_assets *a, bool affix, const char *const *roles, const char *const *contents, int n,
                       int32_t **ids, int *n_ids) {
    strbuf sb;
    flm_sb_init(&sb);
    int rc = FLM_OK;
    if (affix) render_affix(roles, contents, n, &sb);
    else rc = flm_assets_render_pairs(a, roles, contents, (size_t)n, true, &sb);
    if (!rc && sb.oom) rc = FLM_ERR_NOMEM;
    size_t nn = 0;
    if (!rc) rc = flm_assets_encode(a, flm_sb_cstr(&sb), sb.len, ids, &nn);
    flm_sb_free(&sb);
    *n_ids = (int)nn;
    return rc;
}

/* ================================ per-variant results ================================ */

typedef struct {
    answer *ans;          /* [n] */
    int n;
    int identical;
    double kl_sum;
    long kl_pos;
    double seconds;
} results;

static void results_free(results *x) {
    for (int i = 0; x->ans && i < x->n; i++) answer_free(&x->ans[i]);
    free(x->ans);
}

static void summarize(const results *x, int32_t end_of_turn, flm_ablate_variant *v) {
    memset(v, 0, sizeof *v);
    v->ran = true;
    int rep = 0, loop = 0, run = 0, answered = 0;
    long tokens = 0;
    const int32_t **seqs = flm_calloc((size_t)x->n + 1, sizeof *seqs);
    int *lens = flm_calloc((size_t)x->n + 1, sizeof *lens);
    for (int i = 0; i < x->n; i++) {
        const answer *an = &x->ans[i];
        if (an->refused) { v->n_refused++; continue; }
        answered++;
        tokens += an->n;
        rep += flm_ablate_repeats(an->ids, an->n);
        loop += flm_ablate_loops(an->ids, an->n);
        run += flm_ablate_runaway(an->ids, an->n, end_of_turn, an->stop == FLM_STOP_LENGTH || an->stop == FLM_STOP_CONTEXT, an->text, an->text_len);
        if (seqs) { seqs[answered - 1] = an->ids; lens[answered - 1] = an->n; }
    }
    v->n_answers = answered;
    double d = answered ? (double)answered : 1;
    v->repetition_rate = rep / d;
    v->loop_rate = loop / d;
    v->runaway_rate = run / d;
    v->mean_tokens = (double)tokens / d;
    v->distinct_2 = seqs && lens ? flm_ablate_distinct2(seqs, lens, answered) : NAN;
    v->identical_to_baseline = x->n ? (double)x->identical / x->n : 0;
    v->mean_kl = x->kl_pos ? x->kl_sum / (double)x->kl_pos : 0;
    v->kl_positions = x->kl_pos;
    v->seconds = x->seconds;
    free(seqs);
    free(lens);
}

static bool same_answer(const answer *x, const answer *y) {
    return !x->refused && !y->refused && x->n == y->n && !memcmp(x->ids, y->ids, (size_t)x->n * sizeof *x->ids);
}

/* The baseline's answer as teacher-forcing targets: the ids, then its stop id when an
 * eos ended it (the position that should end the turn is compared too). */
static int targets(const answer *b, int32_t **T, int *m) {
    *m = b->n + (b->stop == FLM_STOP_EOS);
    *T = flm_malloc(((size_t)*m + 1) * sizeof **T);
    if (!*T) return FLM_ERR_NOMEM;
    memcpy(*T, b->ids, (size_t)b->n * sizeof **T);
    if (b->stop == FLM_STOP_EOS) (*T)[b->n] = b->stop_token;
    return FLM_OK;
}

/* Sum over rows of KL(P_j || Q_j); lse_p: the log-sum-exp of each P row. */
static double kl_rows(const float *P, const double *lse_p, const float *Q, int rows, int V) {
    double s = 0;
    for (int j = 0; j < rows; j++) s += kl_lse(P + (size_t)j * (size_t)V, lse_p[j], Q + (size_t)j * (size_t)V, V);
    return s;
}

static void lse_rows(const float *P, int rows, int V, double *out) {
    for (int j = 0; j < rows; j++) out[j] = log_sum_exp(P + (size_t)j * (size_t)V, V);
}

/* ================================ the run ================================ */

static int report_answer(const flm_ablate_options *o, int v, int q, const answer *x) {
    if (!o->answer) return FLM_OK;
    const char *stop = x->refused ? "refused" : x->stop == FLM_STOP_EOS ? "eos" : x->stop == FLM_STOP_LENGTH ? "length" : "context";
    if (o->answer(o->answer_ctx, v, q, x->ids, x->n, x->text ? x->text : "", x->text_len, stop))
        return flm_fail(FLM_ERR_IO, "writing the answers failed");
    return FLM_OK;
}

typedef struct {
    bool greedy, no_rep, eot_only, affix, int8, cap;
} behaviour;

static behaviour behaviour_of(int v) {
    behaviour b = {0};
    switch (v) {
    case FLM_ABL_GREEDY: b.greedy = true; break;
    case FLM_ABL_NO_REP: b.no_rep = true; break;
    case FLM_ABL_STOP_EOT: b.eot_only = true; break;
    case FLM_ABL_AFFIX: b.affix = true; break;
    case FLM_ABL_KV_CAP: b.cap = true; break;
    case FLM_ABL_INT8: b.int8 = true; break;
    case FLM_ABL_LITERT: b = (behaviour){true, true, true, true, true, true}; break;
    default: break;
    }
    return b;
}

int flm_ablate_run(const flm_assets *a, const flm_ablate_questions *qs, const flm_ablate_options *o, flm_ablate_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (o->max_tokens <= 0) return flm_fail(FLM_ERR_ARG, "max_tokens must be positive");
    if (o->kv_cap < 2) return flm_fail(FLM_ERR_ARG, "the capacity must be at least 2 tokens");
    if (o->turns < 1) return flm_fail(FLM_ERR_ARG, "a conversation needs at least one turn");
    unsigned want = o->variants ? o->variants | 1u : (1u << FLM_ABL_N) - 1;
    const int V = a->model->cfg.vocab_size, N = qs->n;
    double t_start = flm_now_seconds();
    int32_t eot = flm_tokenizer_token_id(a->tok, "<|endoftext|>"), im_end = flm_tokenizer_token_id(a->tok, "<|im_end|>");
    if (eot < 0 || im_end < 0)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: the tokenizer has no <|endoftext|> or <|im_end|> token: ablate knows Qwen2's ChatML turns only", a->path);

    /* samplers: the model's generation config (baseline), without penalty, greedy */
    flm_gen_params gp;
    flm_gen_params_from_config(a, NULL, false, o->seed, &gp);
    flm_sampler_params sp_base = gp.sp, sp_norep = gp.sp, sp_greedy = gp.sp;
    sp_norep.repetition_penalty = 1.0;
    sp_greedy.do_sample = false;          /* LiteRT-LM's TOP_P with k = 1: the argmax */
    sp_greedy.repetition_penalty = 1.0;   /* its sampler has no penalty */

    flm_litert_int8 *li8 = NULL;
    runner r_f32 = {0}, r_i8 = {0}, r_i8cap = {0}, r_conv = {0}, r_cap = {0};
    flm_sampler *s_base = NULL, *s_norep = NULL, *s_greedy = NULL;
    results res[FLM_ABL_N];
    memset(res, 0, sizeof res);
    float *base_rows = NULL, *var_rows = NULL;
    double *base_lse = NULL;
    int32_t *prompt_chat = NULL, *prompt_affix = NULL, *T = NULL;
    const char **roles = NULL, **contents = NULL;
    int rc = FLM_ERR_NOMEM;
    size_t max_rows = (size_t)o->max_tokens + 1;
    if (!(base_lse = flm_malloc(max_rows * sizeof *base_lse)) || !(base_rows = flm_malloc(max_rows * (size_t)V * sizeof(float))) || !(var_rows = flm_malloc(max_rows * (size_t)V * sizeof(float))))
        goto done;
    for (int v = 0; v < FLM_ABL_N; v++)
        if (!(res[v].ans = flm_calloc((size_t)N, sizeof *res[v].ans))) goto done;
    if ((rc = flm_sampler_new(&sp_base, V, &s_base)) || (rc = flm_sampler_new(&sp_norep, V, &s_norep)) ||
        (rc = flm_sampler_new(&sp_greedy, V, &s_greedy)))
        goto done;
    if ((rc = runner_new(a, 0, o->n_threads, NULL, &r_f32))) goto done;
    if (want & (1u << FLM_ABL_INT8 | 1u << FLM_ABL_LITERT)) {
        double t0 = flm_now_seconds();
        if (o->progress) o->progress(o->progress_ctx, "quantizing the weights for dynamic_int8", 0, 1, 0);
        if ((rc = flm_litert_int8_new(a->model, o->n_threads, &li8))) goto done;
        if ((rc = runner_new(a, 0, o->n_threads, li8, &r_i8)) || (rc = runner_new(a, o->kv_cap, o->n_threads, li8, &r_i8cap))) goto done;
        double dt = flm_now_seconds() - t0;
        res[FLM_ABL_INT8].seconds += dt;
    }

    /* ---- single questions: every variant but kv_cap_1280 ---- */
    for (int i = 0; i < N; i++) {
        const flm_ablate_question *q = &qs->q[i];
        uint64_t seed = o->seed + (uint64_t)i;
        int n_chat = 0, n_affix = 0, m = 0;
        free(prompt_chat); free(prompt_affix); free(T);
        prompt_chat = prompt_affix = T = NULL;
        if ((rc = make_prompt(a, false, (const char *const *)q->role, (const char *const *)q->content, q->n_msg, &prompt_chat, &n_chat))) {
            flm_fail_context(rc, "question %d", i + 1);
            goto done;
        }
        if ((rc = make_prompt(a, true, (const char *const *)q->role, (const char *const *)q->content, q->n_msg, &prompt_affix, &n_affix))) goto done;
        /* baseline */
        double t0 = flm_now_seconds();
        flm_sampler_reset(s_base, seed);
        answer *b = &res[FLM_ABL_BASELINE].ans[i];
        if ((rc = generate(&r_f32, a, prompt_chat, n_chat, s_base, a->eos, a->n_eos, o->max_tokens, b))) goto done;
        if (b->refused) { rc = flm_fail(FLM_ERR_CONTEXT, "question %d: its prompt of %d tokens does not fit the context", i + 1, n_chat); goto done; }
        if ((rc = report_answer(o, FLM_ABL_BASELINE, i, b)) || (rc = targets(b, &T, &m))) goto done;
        res[FLM_ABL_BASELINE].seconds += flm_now_seconds() - t0;
        if (want & (1u << FLM_ABL_STOP_EOT)) {
            t0 = flm_now_seconds();
            answer *x = &res[FLM_ABL_STOP_EOT].ans[i];
            if ((rc = continue_past(&r_f32, a, n_chat, b, s_base, eot, o->max_tokens, x)) || (rc = report_answer(o, FLM_ABL_STOP_EOT, i, x))) goto done;
            res[FLM_ABL_STOP_EOT].identical += same_answer(x, b);
            res[FLM_ABL_STOP_EOT].seconds += flm_now_seconds() - t0;
        }
        t0 = flm_now_seconds();
        int rows_b = 0;
        if ((rc = teacher(&r_f32, prompt_chat, n_chat, T, m, base_rows, &rows_b))) goto done;
        lse_rows(base_rows, rows_b, V, base_lse);
        double kl_same = kl_rows(base_rows, base_lse, base_rows, rows_b, V); /* chat template, float numerics: the baseline's own */
        res[FLM_ABL_BASELINE].identical++;
        res[FLM_ABL_BASELINE].kl_sum += kl_same;
        res[FLM_ABL_BASELINE].kl_pos += rows_b;
        res[FLM_ABL_BASELINE].seconds += flm_now_seconds() - t0;

        for (int v = 1; v < FLM_ABL_N; v++) {
            if (v == FLM_ABL_KV_CAP || !(want & (1u << v))) continue;
            if (v == FLM_ABL_STOP_EOT) { /* generated above; the baseline's prompt and numerics */
                res[v].kl_sum += kl_same;
                res[v].kl_pos += rows_b;
                continue;
            }
            behaviour bh = behaviour_of(v);
            t0 = flm_now_seconds();
            runner *rn = bh.int8 ? (bh.cap ? &r_i8cap : &r_i8) : &r_f32;
            flm_sampler *smp = bh.greedy ? s_greedy : bh.no_rep ? s_norep : s_base;
            flm_sampler_reset(smp, seed);
            const int32_t *pr = bh.affix ? prompt_affix : prompt_chat;
            int npr = bh.affix ? n_affix : n_chat;
            answer *x = &res[v].ans[i];
            if ((rc = generate(rn, a, pr, npr, smp, bh.eot_only ? &eot : a->eos, bh.eot_only ? 1 : a->n_eos, o->max_tokens, x))) goto done;
            if ((rc = report_answer(o, v, i, x))) goto done;
            res[v].identical += same_answer(x, b);
            if (!bh.affix && !bh.int8) {
                /* the same prompt and numerics as the baseline: its distributions */
                res[v].kl_sum += kl_same;
                res[v].kl_pos += rows_b;
            } else if (!x->refused) {
                int rows = 0;
                if ((rc = teacher(rn, pr, npr, T, m, var_rows, &rows))) goto done;
                res[v].kl_sum += kl_rows(base_rows, base_lse, var_rows, rows, V);
                res[v].kl_pos += rows;
            }
            res[v].seconds += flm_now_seconds() - t0;
        }
        if (o->progress) o->progress(o->progress_ctx, "questions", i + 1, N, flm_now_seconds() - t_start);
    }

    /* ---- kv_cap_1280: conversations of `turns` consecutive questions ---- */
    if (want & (1u << FLM_ABL_KV_CAP)) {
        double t0 = flm_now_seconds();
        int ctx_big = a->model->cfg.max_position_embeddings < 32768 ? a->model->cfg.max_position_embeddings : 32768;
        if ((rc = runner_new(a, ctx_big, o->n_threads, NULL, &r_conv)) || (rc = runner_new(a, o->kv_cap, o->n_threads, NULL, &r_cap))) goto done;
        int max_msgs = 2 * o->turns + 1;
        roles = flm_calloc((size_t)max_msgs, sizeof *roles);
        contents = flm_calloc((size_t)max_msgs, sizeof *contents);
        char **hist_text = flm_calloc((size_t)o->turns, sizeof *hist_text);
        if (!roles || !contents || !hist_text) { free(hist_text); rc = FLM_ERR_NOMEM; goto done; }
        answer ref = {0};
        int n_conv_q = o->conversations > 0 && o->conversations * o->turns < N ? o->conversations * o->turns : N;
        res[FLM_ABL_KV_CAP].n = n_conv_q;
        for (int c0 = 0; c0 < n_conv_q; c0 += o->turns) {
            int turns = n_conv_q - c0 < o->turns ? n_conv_q - c0 : o->turns;
            rep->n_conversations++;
            for (int k = 0; k < turns; k++) {
                int i = c0 + k, n_msg = 0;
                for (int j = 0; j < k; j++) {
                    const flm_ablate_question *qj = &qs->q[c0 + j];
                    roles[n_msg] = "user"; contents[n_msg++] = qj->content[qj->n_msg - 1];
                    roles[n_msg] = "assistant"; contents[n_msg++] = hist_text[j];
                }
                const flm_ablate_question *q = &qs->q[i];
                roles[n_msg] = "user"; contents[n_msg++] = q->content[q->n_msg - 1];
                int n_p = 0, m = 0;
                free(prompt_chat); free(T);
                prompt_chat = T = NULL;
                if ((rc = make_prompt(a, false, roles, contents, n_msg, &prompt_chat, &n_p))) break;
                uint64_t seed = o->seed + (uint64_t)i;
                flm_sampler_reset(s_base, seed);
                if ((rc = generate(&r_conv, a, prompt_chat, n_p, s_base, a->eos, a->n_eos, o->max_tokens, &ref))) break;
                if (ref.refused) { rc = flm_fail(FLM_ERR_CONTEXT, "conversation %d: %d tokens do not fit the model's context", rep->n_conversations, n_p); break; }
                int rows_ref = 0, rows_cap = 0;
                if ((rc = targets(&ref, &T, &m)) || (rc = teacher(&r_conv, prompt_chat, n_p, T, m, base_rows, &rows_ref))) break;
                flm_sampler_reset(s_base, seed);
                answer *x = &res[FLM_ABL_KV_CAP].ans[i];
                if ((rc = generate(&r_cap, a, prompt_chat, n_p, s_base, a->eos, a->n_eos, o->max_tokens, x))) break;
                if ((rc = report_answer(o, FLM_ABL_KV_CAP, i, x))) break;
                res[FLM_ABL_KV_CAP].identical += same_answer(x, &ref);
                if (!x->refused) {
                    if ((rc = teacher(&r_cap, prompt_chat, n_p, T, m, var_rows, &rows_cap))) break;
                    lse_rows(base_rows, rows_cap, V, base_lse);
                    res[FLM_ABL_KV_CAP].kl_sum += kl_rows(base_rows, base_lse, var_rows, rows_cap, V);
                    res[FLM_ABL_KV_CAP].kl_pos += rows_cap;
                }
                if (!(hist_text[k] = flm_strdup(ref.text ? ref.text : ""))) { rc = FLM_ERR_NOMEM; break; }
                answer_free(&ref);
                if (o->progress) o->progress(o->progress_ctx, "kv_cap_1280 conversation turns", i + 1, n_conv_q, flm_now_seconds() - t_start);
            }
            for (int k = 0; k < o->turns; k++) { free(hist_text[k]); hist_text[k] = NULL; }
            if (rc) break;
        }
        answer_free(&ref);
        free(hist_text);
        if (rc) goto done;
        res[FLM_ABL_KV_CAP].seconds += flm_now_seconds() - t0;
    }

    for (int v = 0; v < FLM_ABL_N; v++) {
        if (!(want & (1u << v))) continue;
        if (v != FLM_ABL_KV_CAP) res[v].n = N;
        summarize(&res[v], im_end, &rep->v[v]);
    }
    rep->n_turns = res[FLM_ABL_KV_CAP].n;
    rep->n_questions = N;
    rep->turns = o->turns;
    rep->max_tokens = o->max_tokens;
    rep->kv_cap = o->kv_cap;
    rep->seed = o->seed;
    rep->seconds = flm_now_seconds() - t_start;
    rc = FLM_OK;
done:
    for (int v = 0; v < FLM_ABL_N; v++) { res[v].n = N; results_free(&res[v]); }
    free(base_rows); free(var_rows); free(base_lse); free(prompt_chat); free(prompt_affix); free(T);
    free(roles); free(contents);
    flm_sampler_free(s_base); flm_sampler_free(s_norep); flm_sampler_free(s_greedy);
    runner_free(&r_f32); runner_free(&r_i8); runner_free(&r_i8cap); runner_free(&r_conv); runner_free(&r_cap);
    flm_litert_int8_free(li8);
    return rc;
}

/* ================================ reports ================================ */

static void num(strbuf *sb, double x) {
    if (isfinite(x)) flm_sb_printf(sb, "%.6g", x);
    else flm_sb_puts(sb, "null");
}

void flm_ablate_report_json(const flm_ablate_report *r, const char *model, const char *const *lora, int n_lora,
                            const char *questions, strbuf *sb) {
    flm_sb_puts(sb, "{\"model\": ");
    flm_sb_json_string(sb, model, strlen(model), false);
    flm_sb_puts(sb, ", \"lora\": [");
    for (int i = 0; i < n_lora; i++) {
        if (i) flm_sb_puts(sb, ", ");
        flm_sb_json_string(sb, lora[i], strlen(lora[i]), false);
    }
    flm_sb_puts(sb, "], \"questions\": ");
    flm_sb_json_string(sb, questions, strlen(questions), false);
    flm_sb_printf(sb, ", \"n_questions\": %d, \"max_tokens\": %d, \"seed\": %llu, \"kv_cap\": %d, \"turns\": %d, "
                  "\"conversations\": %d, \"conversation_turns\": %d, \"seconds\": %.2f, \"variants\": [",
                  r->n_questions, r->max_tokens, (unsigned long long)r->seed, r->kv_cap, r->turns, r->n_conversations, r->n_turns, r->seconds);
    bool first = true;
    for (int v = 0; v < FLM_ABL_N; v++) {
        const flm_ablate_variant *x = &r->v[v];
        if (!x->ran) continue;
        flm_sb_printf(sb, "%s{\"name\": \"%s\", \"repetition_rate\": ", first ? "" : ", ", flm_ablate_names[v]);
        first = false;
        num(sb, x->repetition_rate);
        flm_sb_puts(sb, ", \"loop_rate\": "); num(sb, x->loop_rate);
        flm_sb_puts(sb, ", \"distinct_2\": "); num(sb, x->distinct_2);
        flm_sb_puts(sb, ", \"runaway_rate\": "); num(sb, x->runaway_rate);
        flm_sb_puts(sb, ", \"identical_to_baseline\": "); num(sb, x->identical_to_baseline);
        flm_sb_puts(sb, ", \"mean_kl\": "); num(sb, x->mean_kl);
        flm_sb_puts(sb, ", \"mean_tokens\": "); num(sb, x->mean_tokens);
        flm_sb_printf(sb, ", \"answers\": %d, \"refused\": %d, \"kl_positions\": %ld, \"seconds\": %.2f}", x->n_answers, x->n_refused,
                      x->kl_positions, x->seconds);
    }
    flm_sb_puts(sb, "]}\n");
}

void flm_ablate_report_table(const flm_ablate_report *r, strbuf *sb) {
    flm_sb_printf(sb, "%-22s %7s %7s %8s %8s %9s %10s %7s %8s\n", "variant", "repeat", "loop", "distinct2", "runaway", "identical",
                  "mean KL", "tokens", "refused");
    for (int v = 0; v < FLM_ABL_N; v++) {
        const flm_ablate_variant *x = &r->v[v];
        if (!x->ran) continue;
        flm_sb_printf(sb, "%-22s %6.1f%% %6.1f%% %9.3f %7.1f%% %8.1f%% %10.3g %7.1f %8d\n", flm_ablate_names[v], 100 * x->repetition_rate,
                      100 * x->loop_rate, x->distinct_2, 100 * x->runaway_rate, 100 * x->identical_to_baseline, x->mean_kl, x->mean_tokens,
                      x->n_refused);
    }
    flm_sb_printf(sb, "%d questions, at most %d new tokens each, seeds %llu..%llu; kv_cap_1280: %d conversations of up to %d turns "
                  "(%d answers) against a capacity of %d, compared with the same conversations uncapped; %.1f s\n",
                  r->n_questions, r->max_tokens, (unsigned long long)r->seed, (unsigned long long)(r->seed + (uint64_t)r->n_questions - 1),
                  r->n_conversations, r->turns, r->n_turns, r->kv_cap, r->seconds);
}
