/* api.c — the public C API of include/fieldlm.h: opaque handles over the internal
 * generation layer (session.h), per-handle error messages, option defaults. Each
 * function copies the thread's error message into its handle when it fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "runtime/session.h"

#define ERRMSG_CAP 1024

struct flm_handle {
    flm_assets *a;
    int n_threads;
    char err[ERRMSG_CAP];
};

struct flm_session {
    flm_handle *h;
    flm_gen_session *g;
    char err[ERRMSG_CAP];
};

static int keep_error(char *dst, int rc) {
    if (rc) {
        const char *m = flm_last_error();
        snprintf(dst, ERRMSG_CAP, "%s", m && *m ? m : flm_status_str(rc));
    } else {
        dst[0] = 0;
    }
    return rc;
}

const char *flm_stop_reason_str(flm_stop_reason r) {
    switch (r) {
    case FLM_STOP_NONE: return "none";
    case FLM_STOP_EOS: return "eos";
    case FLM_STOP_LENGTH: return "length";
    case FLM_STOP_CONTEXT: return "context";
    case FLM_STOP_STRING: return "stop_string";
    case FLM_STOP_CANCELLED: return "cancelled";
    }
    return "unknown";
}

/* ---- handle ---- */

int flm_open(const char *path, const flm_open_options *opt, flm_handle **out) {
    if (!out) return flm_fail(FLM_ERR_ARG, "flm_open: out is NULL");
    *out = NULL;
    if (!path) return flm_fail(FLM_ERR_ARG, "flm_open: path is NULL");
    int n_lora = opt ? opt->n_lora : 0;
    if (n_lora < 0 || (n_lora > 0 && !opt->lora)) return flm_fail(FLM_ERR_ARG, "flm_open: bad LoRA list");
    if (opt && (opt->weights < FLM_WEIGHTS_AUTO || opt->weights > FLM_WEIGHTS_LOAD))
        return flm_fail(FLM_ERR_ARG, "flm_open: weights must be FLM_WEIGHTS_AUTO, _MAP or _LOAD (got %d)", (int)opt->weights);
    flm_handle *h = flm_calloc(1, sizeof *h);
    if (!h) return FLM_ERR_NOMEM;
    const char **dirs = NULL;
    float *scales = NULL;
    if (n_lora) {
        dirs = flm_calloc((size_t)n_lora, sizeof *dirs);
        scales = flm_calloc((size_t)n_lora, sizeof *scales);
        if (!dirs || !scales) { free(dirs); free(scales); free(h); return FLM_ERR_NOMEM; }
        for (int i = 0; i < n_lora; i++) {
            dirs[i] = opt->lora[i].path;
            scales[i] = opt->lora[i].scale;
        }
    }
    flm_model_options mo = {.lora_dirs = dirs, .lora_scales = scales, .n_lora = n_lora, .weights = opt ? opt->weights : FLM_WEIGHTS_AUTO};
    int rc = flm_assets_load(path, &mo, &h->a);
    free(dirs);
    free(scales);
    if (rc) { free(h); return rc; }
    h->n_threads = opt ? opt->n_threads : 0;
    *out = h;
    return FLM_OK;
}

void flm_close(flm_handle *h) {
    if (!h) return;
    flm_assets_free(h->a);
    free(h);
}

const char *flm_errmsg(const flm_handle *h) { return h ? h->err : flm_last_error(); }

int flm_max_context(const flm_handle *h) { return h->a->model->cfg.max_position_embeddings; }
int flm_vocab_size(const flm_handle *h) { return h->a->model->cfg.vocab_size; }

void flm_free(void *p) { free(p); }

/* Splits messages into the role / content arrays the session layer takes. */
static int split_messages(const flm_message *msgs, size_t n, const char ***roles, const char ***contents) {
    *roles = flm_calloc(n ? n : 1, sizeof **roles);
    *contents = flm_calloc(n ? n : 1, sizeof **contents);
    if (!*roles || !*contents) { free(*roles); free(*contents); return FLM_ERR_NOMEM; }
    for (size_t i = 0; i < n; i++) {
        (*roles)[i] = msgs[i].role;
        (*contents)[i] = msgs[i].content;
    }
    return FLM_OK;
}

int flm_render(flm_handle *h, const flm_message *msgs, size_t n_msgs, int add_generation_prompt, char **text) {
    *text = NULL;
    if (n_msgs && !msgs) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render: messages is NULL"));
    const char **roles, **contents;
    int rc = split_messages(msgs, n_msgs, &roles, &contents);
    if (rc) return keep_error(h->err, rc);
    strbuf sb;
    flm_sb_init(&sb);
    rc = flm_assets_render_pairs(h->a, roles, contents, n_msgs, add_generation_prompt != 0, &sb);
    free(roles);
    free(contents);
    if (!rc && !(*text = flm_sb_take(&sb))) rc = FLM_ERR_NOMEM;
    flm_sb_free(&sb);
    return keep_error(h->err, rc);
}

/* ---- session ---- */

flm_session_options flm_session_default_options(void) {
    flm_session_options o;
    memset(&o, 0, sizeof o);
    o.do_sample = -1;
    o.temperature = -1;
    o.top_k = -1;
    o.top_p = -1;
    o.min_p = -1;
    o.repetition_penalty = -1;
    return o;
}

int flm_session_new(flm_handle *h, const flm_session_options *opt, flm_session **out) {
    *out = NULL;
    flm_session_options o = opt ? *opt : flm_session_default_options();
    flm_gen_config ov;
    flm_gen_config_defaults(&ov);
    if (o.do_sample >= 0) flm_gen_config_set_do_sample(&ov, o.do_sample != 0);
    if (o.temperature >= 0) flm_gen_config_set_temperature(&ov, o.temperature);
    if (o.top_k >= 0) flm_gen_config_set_top_k(&ov, o.top_k);
    if (o.top_p >= 0) flm_gen_config_set_top_p(&ov, o.top_p);
    if (o.min_p >= 0) flm_gen_config_set_min_p(&ov, o.min_p);
    if (o.repetition_penalty > 0) flm_gen_config_set_repetition_penalty(&ov, o.repetition_penalty);
    if (o.max_new_tokens > 0) flm_gen_config_set_max_new_tokens(&ov, o.max_new_tokens);
    flm_gen_params p;
    flm_gen_params_from_config(h->a, &ov, o.greedy != 0, o.seed, &p);
    p.n_ctx = o.n_ctx;
    p.n_threads = o.n_threads > 0 ? o.n_threads : h->n_threads;
    p.stop = o.stop;
    p.n_stop = o.n_stop;
    flm_session *s = flm_calloc(1, sizeof *s);
    if (!s) return keep_error(h->err, FLM_ERR_NOMEM);
    s->h = h;
    int rc = flm_gen_session_new(h->a, &p, &s->g);
    if (rc) { free(s); return keep_error(h->err, rc); }
    h->err[0] = 0;
    *out = s;
    return FLM_OK;
}

void flm_session_free(flm_session *s) {
    if (!s) return;
    flm_gen_session_free(s->g);
    free(s);
}

const char *flm_session_errmsg(const flm_session *s) { return s->err; }
int flm_session_n_ctx(const flm_session *s) { return flm_gen_session_n_ctx(s->g); }
void flm_cancel(flm_session *s) { flm_gen_cancel(s->g); }
void flm_session_reset(flm_session *s) { flm_gen_session_reset(s->g); }

static void fill_result(const flm_gen_result *g, flm_result *res) {
    if (!res) return;
    res->stop_reason = g->stop_reason;
    res->stop_token = g->stop_token;
    res->timings = g->timings;
}

int flm_generate(flm_session *s, const flm_message *msgs, size_t n_msgs, flm_token_fn cb, void *user, flm_result *res) {
    if (res) memset(res, 0, sizeof *res);
    if (!msgs || !n_msgs) return keep_error(s->err, flm_fail(FLM_ERR_ARG, "flm_generate: no messages"));
    const char **roles, **contents;
    int rc = split_messages(msgs, n_msgs, &roles, &contents);
    if (rc) return keep_error(s->err, rc);
    flm_gen_result g;
    rc = flm_gen_run_chat(s->g, roles, contents, n_msgs, cb, user, &g);
    free(roles);
    free(contents);
    if (!rc) fill_result(&g, res);
    return keep_error(s->err, rc);
}

int flm_generate_text(flm_session *s, const char *prompt, flm_token_fn cb, void *user, flm_result *res) {
    if (res) memset(res, 0, sizeof *res);
    if (!prompt) return keep_error(s->err, flm_fail(FLM_ERR_ARG, "flm_generate_text: prompt is NULL"));
    flm_gen_result g;
    int rc = flm_gen_run_text(s->g, prompt, cb, user, &g);
    if (!rc) fill_result(&g, res);
    return keep_error(s->err, rc);
}
