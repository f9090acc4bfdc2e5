/* api.c — the public C API of include/fieldlm.h: opaque handles over the internal
 * generation layer (session.h), per-handle error messages, the generation settings
 * (flm_gen_settings, mapped onto the internal generation config and parameters here
 * and nowhere else), tokens, rendering, model facts and adapter specs. Each function
 * copies the thread's error message into its handle when it fails. The public
 * flm_convert lives in src/convert/convert_api.c (the converter is its own layer). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "base/threadpool.h"
#include "model/lora.h"
#include "package/source.h"
#include "runtime/session.h"
#include "text/template.h"
#include "text/tokenizer.h"

#define ERRMSG_CAP 1024

struct flm_handle {
    flm_open_what what;
    flm_assets *a;              /* FLM_OPEN_ALL */
    flm_tokenizer *tok;         /* FLM_OPEN_TOKENIZER */
    flm_template_source tsrc;   /* FLM_OPEN_TEMPLATE */
    char *path;
    char dtype[16];
    int n_threads;
    int n_lora;
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

static const flm_tokenizer *tok_of(const flm_handle *h) { return h->a ? h->a->tok : h->tok; }
static const flm_template_source *tsrc_of(const flm_handle *h) {
    if (h->a) return h->a->tsrc.n ? &h->a->tsrc : NULL;
    return h->what == FLM_OPEN_TEMPLATE ? &h->tsrc : NULL;
}

static int need_model(const flm_handle *h, const char *fn) {
    if (h->a) return FLM_OK;
    return flm_fail(FLM_ERR_UNSUPPORTED, "%s: the handle of %s was opened with %s only (open it with FLM_OPEN_ALL)", fn,
                    h->path, h->what == FLM_OPEN_TOKENIZER ? "the tokenizer" : "the chat templates");
}

static int need_tokenizer(const flm_handle *h, const char *fn) {
    if (tok_of(h)) return FLM_OK;
    return flm_fail(FLM_ERR_UNSUPPORTED, "%s: the handle of %s was opened with the chat templates only (open it with "
                    "FLM_OPEN_ALL or FLM_OPEN_TOKENIZER)", fn, h->path);
}

/* The weight matrices' type: the first layer's query projection. */
static void note_dtype(flm_handle *h) {
    const flm_model *m = h->a->model;
    const flm_dtype_info *d = m->cfg.n_layers > 0 && m->layers ? flm_dtype_get(m->layers[0].wq.dtype) : NULL;
    snprintf(h->dtype, sizeof h->dtype, "%s", d && d->name ? d->name : "");
}

int flm_open(const char *path, const flm_open_options *opt, flm_handle **out) {
    if (!out) return flm_fail(FLM_ERR_ARG, "flm_open: out is NULL");
    *out = NULL;
    if (!path) return flm_fail(FLM_ERR_ARG, "flm_open: path is NULL");
    int n_lora = opt ? opt->n_lora : 0;
    if (n_lora < 0 || (n_lora > 0 && !opt->lora)) return flm_fail(FLM_ERR_ARG, "flm_open: bad LoRA list");
    if (opt && (opt->weights < FLM_WEIGHTS_AUTO || opt->weights > FLM_WEIGHTS_LOAD))
        return flm_fail(FLM_ERR_ARG, "flm_open: weights must be FLM_WEIGHTS_AUTO, _MAP or _LOAD (got %d)", (int)opt->weights);
    flm_open_what what = opt ? opt->what : FLM_OPEN_ALL;
    if (what < FLM_OPEN_ALL || what > FLM_OPEN_TEMPLATE)
        return flm_fail(FLM_ERR_ARG, "flm_open: what must be FLM_OPEN_ALL, _TOKENIZER or _TEMPLATE (got %d)", (int)what);
    if (what != FLM_OPEN_ALL && n_lora) return flm_fail(FLM_ERR_ARG, "flm_open: LoRA adapters need FLM_OPEN_ALL");
    flm_handle *h = flm_calloc(1, sizeof *h);
    if (!h) return FLM_ERR_NOMEM;
    h->what = what;
    h->n_lora = n_lora;
    h->n_threads = opt ? opt->n_threads : 0;
    if (!(h->path = flm_strdup(path))) { free(h); return FLM_ERR_NOMEM; }
    int rc;
    if (what == FLM_OPEN_TOKENIZER) {
        rc = flm_load_tokenizer(path, &h->tok);
    } else if (what == FLM_OPEN_TEMPLATE) {
        rc = flm_load_template(path, &h->tsrc);
    } else {
        const char **dirs = NULL;
        float *scales = NULL;
        if (n_lora) {
            dirs = flm_calloc((size_t)n_lora, sizeof *dirs);
            scales = flm_calloc((size_t)n_lora, sizeof *scales);
            if (!dirs || !scales) { free(dirs); free(scales); free(h->path); free(h); return FLM_ERR_NOMEM; }
            for (int i = 0; i < n_lora; i++) {
                dirs[i] = opt->lora[i].path;
                scales[i] = opt->lora[i].scale;
            }
        }
        flm_model_options mo = {.lora_dirs = dirs, .lora_scales = scales, .n_lora = n_lora, .weights = opt ? opt->weights : FLM_WEIGHTS_AUTO};
        rc = flm_assets_open(path, &mo, &h->a);
        free(dirs);
        free(scales);
        if (!rc) note_dtype(h);
    }
    if (rc) { free(h->path); free(h); return rc; }
    *out = h;
    return FLM_OK;
}

void flm_close(flm_handle *h) {
    if (!h) return;
    flm_assets_close(h->a);
    flm_tokenizer_free(h->tok);
    if (h->what == FLM_OPEN_TEMPLATE) flm_template_source_free(&h->tsrc);
    free(h->path);
    free(h);
}

const char *flm_errmsg(const flm_handle *h) { return h ? h->err : flm_last_error(); }

int flm_max_context(const flm_handle *h) { return h && h->a ? h->a->model->cfg.max_position_embeddings : 0; }
int flm_vocab_size(const flm_handle *h) { return h && h->a ? h->a->model->cfg.vocab_size : 0; }

int flm_model_info(const flm_handle *h, flm_info *info) {
    if (!h || !info) return flm_fail(FLM_ERR_ARG, "flm_model_info: %s is NULL", h ? "info" : "h");
    memset(info, 0, sizeof *info);
    info->path = h->path;
    info->architecture = info->dtype = info->torch_dtype = "";
    const flm_tokenizer *tok = tok_of(h);
    if (tok) info->n_tokens = (int)flm_tokenizer_vocab_size(tok);
    info->n_lora = h->n_lora;
    if (h->what == FLM_OPEN_TEMPLATE) info->has_chat_template = flm_template_source_pick(&h->tsrc, false, NULL) != NULL;
    if (h->what == FLM_OPEN_TEMPLATE) flm_clear_error();
    if (!h->a) return FLM_OK;
    const flm_config *c = &h->a->model->cfg;
    info->architecture = c->model_type;
    info->dtype = h->dtype;
    info->torch_dtype = c->torch_dtype;
    info->n_layers = c->n_layers;
    info->n_embd = c->hidden_size;
    info->n_ff = c->intermediate_size;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->n_vocab = c->vocab_size;
    info->max_context = c->max_position_embeddings;
    for (int i = 0; i < h->a->n_eos && i < FLM_INFO_MAX_STOP; i++) info->stop_ids[info->n_stop_ids++] = h->a->eos[i];
    info->has_chat_template = h->a->tmpl != NULL;
    info->weights_in_memory = flm_model_loaded_bytes(h->a->model);
    info->warning = h->a->warning;
    return FLM_OK;
}

void flm_free(void *p) { free(p); }

/* ---- tokens ---- */

int flm_tokenize(flm_handle *h, const char *text, size_t len, int flags, int32_t *ids, size_t cap, size_t *n_needed) {
    if (!h) return flm_fail(FLM_ERR_ARG, "flm_tokenize: h is NULL");
    if (n_needed) *n_needed = 0;
    if (!n_needed) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_tokenize: n_needed is NULL"));
    if (!text && len) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_tokenize: text is NULL"));
    if (cap && !ids) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_tokenize: ids is NULL with a capacity of %zu", cap));
    if (flags & ~(FLM_TOKENIZE_SPECIAL_AS_TEXT | FLM_TOKENIZE_NO_ADDED))
        return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_tokenize: unknown flags 0x%x", (unsigned)flags));
    int rc = need_tokenizer(h, "flm_tokenize");
    if (rc) return keep_error(h->err, rc);
    int iflags = ((flags & FLM_TOKENIZE_SPECIAL_AS_TEXT) ? FLM_ENCODE_SPECIAL_AS_TEXT : 0) |
                 ((flags & FLM_TOKENIZE_NO_ADDED) ? FLM_ENCODE_NO_ADDED : 0);
    int32_t *all = NULL;
    size_t n = 0;
    rc = flm_tokenizer_encode_ex(tok_of(h), text ? text : "", len, iflags, &all, &n);
    if (rc) return keep_error(h->err, rc);
    *n_needed = n;
    if (n > cap) {
        free(all);
        return keep_error(h->err, flm_fail(FLM_ERR_BUFFER, "flm_tokenize: the text is %zu tokens, the buffer holds %zu", n, cap));
    }
    if (n) memcpy(ids, all, n * sizeof *ids);
    free(all);
    return keep_error(h->err, FLM_OK);
}

int flm_detokenize(flm_handle *h, const int32_t *ids, size_t n, char **text, size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!h) return flm_fail(FLM_ERR_ARG, "flm_detokenize: h is NULL");
    if (!text) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_detokenize: text is NULL"));
    if (n && !ids) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_detokenize: ids is NULL"));
    int rc = need_tokenizer(h, "flm_detokenize");
    if (rc) return keep_error(h->err, rc);
    strbuf sb;
    flm_sb_init(&sb);
    rc = flm_tokenizer_decode(tok_of(h), ids, n, &sb);
    if (!rc && sb.oom) rc = FLM_ERR_NOMEM;
    if (!rc) {
        size_t l = sb.len;
        flm_sb_cstr(&sb);
        char *t = flm_sb_take(&sb);
        if (!t) t = calloc(1, 1);
        if (!t) rc = FLM_ERR_NOMEM;
        else { *text = t; if (len) *len = l; }
    }
    flm_sb_free(&sb);
    return keep_error(h->err, rc);
}

/* ---- rendering ---- */

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
    if (!h) return flm_fail(FLM_ERR_ARG, "flm_render: h is NULL");
    if (!text) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render: text is NULL"));
    *text = NULL;
    if (n_msgs && !msgs) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render: messages is NULL"));
    int rc = need_model(h, "flm_render");
    if (rc) return keep_error(h->err, rc);
    const char **roles, **contents;
    rc = split_messages(msgs, n_msgs, &roles, &contents);
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

/* Calls fn for each message of msgs whose removal leaves `full` (their rendering)
 * unchanged. One render per message is quadratic: beyond EXACT_DROP_CHECK messages,
 * one whose text content is found in the prompt (searched from where the previous
 * one was found) is taken as rendered, and at most MAX_DROP_CHECKS others are
 * re-rendered; the rest are counted in *unchecked. A removal that makes the template
 * fail means the message mattered. */
#define EXACT_DROP_CHECK 64
#define MAX_DROP_CHECKS 256
static int check_dropped(const flm_template *t, const flm_json *msgs, const flm_json *tools, bool gen_prompt,
                         const flm_json *vars, const strbuf *full, flm_dropped_fn fn, void *user, size_t *unchecked) {
    size_t n = msgs->len, checks = 0, skipped = 0, from = 0;
    if (unchecked) *unchecked = 0;
    if (n == 0) return FLM_OK;
    flm_json *items = flm_malloc(n * sizeof *items);
    if (!items) return FLM_ERR_NOMEM;
    flm_json sub = *msgs;
    sub.items = items;
    sub.len = n - 1;
    strbuf out;
    flm_sb_init(&out);
    for (size_t i = 0; i < n; i++) {
        const flm_json *content = flm_json_get(&msgs->items[i], "content");
        if (n > EXACT_DROP_CHECK && content && content->type == JSON_STRING && content->len && full->len) {
            const char *hit = memmem(full->data + from, full->len - from, content->str, content->len);
            if (!hit) hit = memmem(full->data, full->len, content->str, content->len);
            if (hit) { from = (size_t)(hit - full->data) + content->len; continue; }
        }
        if (checks == MAX_DROP_CHECKS) { skipped++; continue; }
        checks++;
        memcpy(items, msgs->items, i * sizeof *items);
        memcpy(items + i, msgs->items + i + 1, (n - 1 - i) * sizeof *items);
        flm_sb_clear(&out);
        if (flm_template_render(t, &sub, tools, gen_prompt, vars, &out) != FLM_OK) { flm_clear_error(); continue; }
        if (out.oom || out.len != full->len || (out.len && memcmp(out.data, full->data, out.len))) continue;
        if (fn) fn(user, i, flm_json_string(flm_json_get(&msgs->items[i], "role"), NULL));
    }
    if (unchecked) *unchecked = skipped;
    flm_sb_free(&out);
    free(items);
    flm_clear_error();
    return FLM_OK;
}

int flm_render_check(flm_handle *h, const flm_message *msgs, size_t n_msgs, int add_generation_prompt,
                     flm_dropped_fn fn, void *user, size_t *n_unchecked) {
    if (n_unchecked) *n_unchecked = 0;
    if (!h) return flm_fail(FLM_ERR_ARG, "flm_render_check: h is NULL");
    if (n_msgs && !msgs) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render_check: messages is NULL"));
    int rc = need_model(h, "flm_render_check");
    if (rc) return keep_error(h->err, rc);
    const char **roles, **contents;
    if ((rc = split_messages(msgs, n_msgs, &roles, &contents))) return keep_error(h->err, rc);
    flm_json_doc *doc = NULL;
    rc = flm_pairs_to_json(roles, contents, n_msgs, &doc);
    free(roles);
    free(contents);
    if (rc) return keep_error(h->err, rc);
    strbuf full;
    flm_sb_init(&full);
    rc = flm_assets_render(h->a, flm_json_root(doc), add_generation_prompt != 0, &full);
    if (!rc && full.oom) rc = FLM_ERR_NOMEM;
    if (!rc) {
        const flm_json *vars = h->a->tsrc.vars ? flm_json_root(h->a->tsrc.vars) : NULL;
        rc = check_dropped(h->a->tmpl, flm_json_root(doc), NULL, add_generation_prompt != 0, vars, &full, fn, user,
                           n_unchecked);
    }
    flm_sb_free(&full);
    flm_json_free(doc);
    return keep_error(h->err, rc);
}

/* Parses text as a JSON array whose every element is an object. */
static int parse_array_of_objects(const char *text, size_t len, const char *name, const char *what, flm_json_doc **out) {
    *out = NULL;
    flm_json_doc *d = flm_json_parse(text ? text : "", len, name);
    if (!d) {
        const char *m = flm_last_error();
        return m && strstr(m, "out of memory") ? FLM_ERR_NOMEM : FLM_ERR_FORMAT;
    }
    const flm_json *v = flm_json_root(d);
    int rc = FLM_OK;
    if (v->type != JSON_ARRAY) rc = flm_fail(FLM_ERR_FORMAT, "%s: %s must be a JSON array", name, what);
    for (size_t i = 0; !rc && i < v->len; i++)
        if (v->items[i].type != JSON_OBJECT) rc = flm_fail(FLM_ERR_FORMAT, "%s: %s[%zu] is not an object", name, what, i);
    if (rc) { flm_json_free(d); return rc; }
    *out = d;
    return FLM_OK;
}

int flm_render_json(flm_handle *h, const char *messages_json, size_t len, const flm_render_options *opt, char **text,
                    size_t *text_len) {
    if (text) *text = NULL;
    if (text_len) *text_len = 0;
    if (opt && opt->n_unchecked) *opt->n_unchecked = 0;
    if (!h) return flm_fail(FLM_ERR_ARG, "flm_render_json: h is NULL");
    if (!text) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render_json: text is NULL"));
    if (!messages_json && len) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render_json: messages_json is NULL"));
    flm_render_options o;
    if (opt) o = *opt;
    else memset(&o, 0, sizeof o);
    if (!o.tools_json && o.tools_len) return keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_render_json: tools_json is NULL"));
    const char *mname = o.messages_name ? o.messages_name : "messages";
    const char *tname = o.tools_name ? o.tools_name : "tools";
    flm_json_doc *msgs = NULL, *tools = NULL;
    flm_template *t = NULL;
    strbuf out;
    flm_sb_init(&out);
    int rc = parse_array_of_objects(messages_json, len, mname, "messages", &msgs);
    if (!rc && o.tools_json) rc = parse_array_of_objects(o.tools_json, o.tools_len, tname, "tools", &tools);
    if (rc) goto done;
    const flm_template_source *src = tsrc_of(h);
    if (!src) {
        if (h->a) rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s has no usable chat template (%s)", h->path,
                                h->a->tmpl_error ? h->a->tmpl_error : "unknown reason");
        else rc = need_model(h, "flm_render_json");
        goto done;
    }
    const flm_named_template *nt = flm_template_source_pick(src, tools != NULL, o.template_name);
    if (!nt) { rc = FLM_ERR_ARG; goto done; }
    const char *origin = src->origin ? src->origin : h->path;
    if ((rc = flm_template_compile_n(nt->text, nt->len, &t))) { rc = flm_fail_context(FLM_ERR_FORMAT, "%s", origin); goto done; }
    const flm_json *vars = src->vars ? flm_json_root(src->vars) : NULL;
    const flm_json *tj = tools ? flm_json_root(tools) : NULL;
    bool gen = o.add_generation_prompt != 0;
    if ((rc = flm_template_render(t, flm_json_root(msgs), tj, gen, vars, &out))) {
        rc = flm_fail_context(FLM_ERR_FORMAT, "%s", origin);
        goto done;
    }
    if (out.oom) { rc = FLM_ERR_NOMEM; goto done; }
    if (o.dropped && (rc = check_dropped(t, flm_json_root(msgs), tj, gen, vars, &out, o.dropped, o.user, o.n_unchecked)))
        goto done;
    size_t l = out.len;
    flm_sb_cstr(&out);
    char *r = flm_sb_take(&out);
    if (!r) r = calloc(1, 1);
    if (!r) { rc = FLM_ERR_NOMEM; goto done; }
    *text = r;
    if (text_len) *text_len = l;
done:
    flm_sb_free(&out);
    flm_template_free(t);
    flm_json_free(msgs);
    flm_json_free(tools);
    return keep_error(h->err, rc);
}

/* ---- generation settings: the one place they meet the internal config ---- */

void flm_gen_settings_init(flm_gen_settings *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->do_sample = FLM_UNSET_INT;
    s->temperature = FLM_UNSET_FLOAT;
    s->top_k = FLM_UNSET_INT;
    s->top_p = FLM_UNSET_FLOAT;
    s->min_p = FLM_UNSET_FLOAT;
    s->repetition_penalty = FLM_UNSET_FLOAT;
    s->max_new_tokens = FLM_UNSET_INT;
    s->n_ctx = FLM_UNSET_INT;
    s->n_threads = FLM_UNSET_INT;
    s->presence_penalty = FLM_UNSET_FLOAT;
    s->frequency_penalty = FLM_UNSET_FLOAT;
    s->logprobs = FLM_UNSET_INT;
    s->top_logprobs = FLM_UNSET_INT;
}

int flm_is_unset(double v) { return isnan(v); }

static int bad_setting(const char *field, const char *want, double got) {
    return flm_fail(FLM_ERR_ARG, "flm_gen_settings.%s must be %s, or unset (got %g)", field, want, got);
}

/* Checks the set fields, then merges them over the model's generation config into
 * the session layer's parameters. */
static int settings_to_params(const flm_handle *h, const flm_gen_settings *st, flm_gen_params *p) {
    if (st->do_sample != FLM_UNSET_INT && st->do_sample != 0 && st->do_sample != 1)
        return bad_setting("do_sample", "0 or 1", st->do_sample);
    if (!isnan(st->temperature) && !(st->temperature >= 0 && isfinite(st->temperature)))
        return bad_setting("temperature", "a finite number >= 0", st->temperature);
    if (st->top_k != FLM_UNSET_INT && st->top_k < 0) return bad_setting("top_k", ">= 0", st->top_k);
    if (!isnan(st->top_p) && !(st->top_p >= 0 && st->top_p <= 1)) return bad_setting("top_p", "in [0, 1]", st->top_p);
    if (!isnan(st->min_p) && !(st->min_p >= 0 && st->min_p <= 1)) return bad_setting("min_p", "in [0, 1]", st->min_p);
    if (!isnan(st->repetition_penalty) && !(st->repetition_penalty > 0 && isfinite(st->repetition_penalty)))
        return bad_setting("repetition_penalty", "a finite number > 0", st->repetition_penalty);
    if (st->max_new_tokens != FLM_UNSET_INT && st->max_new_tokens <= 0)
        return bad_setting("max_new_tokens", "> 0", (double)st->max_new_tokens);
    if (st->n_ctx != FLM_UNSET_INT && st->n_ctx <= 0) return bad_setting("n_ctx", "> 0", st->n_ctx);
    if (st->n_threads != FLM_UNSET_INT && st->n_threads <= 0) return bad_setting("n_threads", "> 0", st->n_threads);
    if (st->n_stop < 0 || (st->n_stop > 0 && !st->stop))
        return flm_fail(FLM_ERR_ARG, "flm_gen_settings: stop is NULL with n_stop %d", st->n_stop);
    if (!isnan(st->presence_penalty) && !(st->presence_penalty >= -2 && st->presence_penalty <= 2))
        return bad_setting("presence_penalty", "in [-2, 2]", st->presence_penalty);
    if (!isnan(st->frequency_penalty) && !(st->frequency_penalty >= -2 && st->frequency_penalty <= 2))
        return bad_setting("frequency_penalty", "in [-2, 2]", st->frequency_penalty);
    if (st->logprobs != FLM_UNSET_INT && st->logprobs != 0 && st->logprobs != 1)
        return bad_setting("logprobs", "0 or 1", st->logprobs);
    if (st->top_logprobs != FLM_UNSET_INT && !(st->top_logprobs >= 0 && st->top_logprobs <= FLM_GEN_MAX_TOP_LOGPROBS))
        return bad_setting("top_logprobs", "in [0, 20]", st->top_logprobs);
    if (st->top_logprobs > 0 && st->logprobs != 1)
        return flm_fail(FLM_ERR_ARG, "flm_gen_settings.top_logprobs needs logprobs 1");
    flm_gen_config ov;
    flm_gen_config_defaults(&ov);
    if (st->do_sample != FLM_UNSET_INT) flm_gen_config_set_do_sample(&ov, st->do_sample != 0);
    if (!isnan(st->temperature)) flm_gen_config_set_temperature(&ov, st->temperature);
    if (st->top_k != FLM_UNSET_INT) flm_gen_config_set_top_k(&ov, st->top_k);
    if (!isnan(st->top_p)) flm_gen_config_set_top_p(&ov, st->top_p);
    if (!isnan(st->min_p)) flm_gen_config_set_min_p(&ov, st->min_p);
    if (!isnan(st->repetition_penalty)) flm_gen_config_set_repetition_penalty(&ov, st->repetition_penalty);
    if (st->max_new_tokens != FLM_UNSET_INT) flm_gen_config_set_max_new_tokens(&ov, st->max_new_tokens);
    flm_gen_params_from_config(h->a, &ov, false, st->seed, p);
    p->n_ctx = st->n_ctx != FLM_UNSET_INT ? st->n_ctx : 0;
    p->n_threads = st->n_threads != FLM_UNSET_INT ? st->n_threads : h->n_threads;
    p->stop = st->stop;
    p->n_stop = st->n_stop;
    p->presence_penalty = isnan(st->presence_penalty) ? 0 : st->presence_penalty;
    p->frequency_penalty = isnan(st->frequency_penalty) ? 0 : st->frequency_penalty;
    p->top_logprobs = st->logprobs == 1 ? (st->top_logprobs > 0 ? st->top_logprobs : 0) : -1;
    return FLM_OK;
}

/* The session layer's parameters as settings, every field resolved. */
static void params_to_settings(const flm_handle *h, const flm_gen_params *p, int n_ctx, flm_gen_settings *s) {
    flm_gen_settings_init(s);
    s->do_sample = p->sp.do_sample ? 1 : 0;
    s->temperature = p->sp.temperature;
    s->top_k = p->sp.top_k;
    s->top_p = p->sp.top_p;
    s->min_p = p->sp.min_p;
    s->repetition_penalty = p->sp.repetition_penalty;
    s->seed = p->sp.seed;
    s->max_new_tokens = p->max_new_tokens;
    s->stop = p->stop;
    s->n_stop = p->n_stop;
    int max_pos = h->a->model->cfg.max_position_embeddings;
    s->n_ctx = n_ctx > 0 ? n_ctx : (max_pos < 4096 ? max_pos : 4096);
    s->n_threads = p->n_threads > 0 ? p->n_threads : flm_physical_cores();
    s->presence_penalty = p->presence_penalty;
    s->frequency_penalty = p->frequency_penalty;
    s->logprobs = p->top_logprobs >= 0 ? 1 : 0;
    s->top_logprobs = p->top_logprobs >= 0 ? p->top_logprobs : 0;
}

int flm_gen_settings_defaults(const flm_handle *h, flm_gen_settings *s) {
    if (!h || !s) return flm_fail(FLM_ERR_ARG, "flm_gen_settings_defaults: %s is NULL", h ? "s" : "h");
    int rc = need_model(h, "flm_gen_settings_defaults");
    if (rc) return rc;
    flm_gen_settings unset;
    flm_gen_settings_init(&unset);
    flm_gen_params p;
    if ((rc = settings_to_params(h, &unset, &p))) return rc;
    params_to_settings(h, &p, 0, s);
    return FLM_OK;
}

/* ---- session ---- */

int flm_session_new(flm_handle *h, const flm_gen_settings *settings, flm_session **out) {
    if (!out) return h ? keep_error(h->err, flm_fail(FLM_ERR_ARG, "flm_session_new: out is NULL"))
                       : flm_fail(FLM_ERR_ARG, "flm_session_new: out is NULL");
    *out = NULL;
    if (!h) return flm_fail(FLM_ERR_ARG, "flm_session_new: h is NULL");
    int rc = need_model(h, "flm_session_new");
    if (rc) return keep_error(h->err, rc);
    flm_gen_settings st;
    if (settings) st = *settings;
    else flm_gen_settings_init(&st);
    flm_gen_params p;
    if ((rc = settings_to_params(h, &st, &p))) return keep_error(h->err, rc);
    flm_session *s = flm_calloc(1, sizeof *s);
    if (!s) return keep_error(h->err, FLM_ERR_NOMEM);
    s->h = h;
    rc = flm_gen_session_new(h->a, &p, &s->g);
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

const char *flm_session_errmsg(const flm_session *s) { return s ? s->err : ""; }
int flm_session_n_ctx(const flm_session *s) { return flm_gen_session_n_ctx(s->g); }
void flm_cancel(flm_session *s) { flm_gen_cancel(s->g); }
void flm_session_reset(flm_session *s) { flm_gen_session_reset(s->g); }

int flm_session_settings(const flm_session *s, flm_gen_settings *out) {
    if (!s || !out) return flm_fail(FLM_ERR_ARG, "flm_session_settings: %s is NULL", s ? "out" : "s");
    params_to_settings(s->h, flm_gen_session_params(s->g), flm_gen_session_n_ctx(s->g), out);
    return FLM_OK;
}

int flm_session_configure(flm_session *s, const flm_gen_settings *settings) {
    if (!s || !settings) return flm_fail(FLM_ERR_ARG, "flm_session_configure: %s is NULL", s ? "settings" : "s");
    const flm_gen_params *cur = flm_gen_session_params(s->g);
    int n_threads = cur->n_threads > 0 ? cur->n_threads : flm_physical_cores();
    if (settings->n_ctx != FLM_UNSET_INT && settings->n_ctx != flm_gen_session_n_ctx(s->g))
        return keep_error(s->err, flm_fail(FLM_ERR_ARG, "flm_session_configure: n_ctx is fixed at session creation "
                                                        "(%d; got %d)", flm_gen_session_n_ctx(s->g), settings->n_ctx));
    if (settings->n_threads != FLM_UNSET_INT && settings->n_threads != n_threads)
        return keep_error(s->err, flm_fail(FLM_ERR_ARG, "flm_session_configure: n_threads is fixed at session creation "
                                                        "(%d; got %d)", n_threads, settings->n_threads));
    flm_gen_params p;
    int rc = settings_to_params(s->h, settings, &p);
    if (!rc) rc = flm_gen_session_set_params(s->g, &p);
    return keep_error(s->err, rc);
}

int flm_token_logprobs(const flm_session *s, flm_token_logprob *chosen, flm_token_logprob *top, int cap, int *n_top) {
    if (n_top) *n_top = 0;
    if (!s || !chosen || !n_top || cap < 0 || (cap > 0 && !top))
        return flm_fail(FLM_ERR_ARG, "flm_token_logprobs: bad arguments");
    int32_t ids[FLM_GEN_MAX_TOP_LOGPROBS];
    float lps[FLM_GEN_MAX_TOP_LOGPROBS];
    if (cap > FLM_GEN_MAX_TOP_LOGPROBS) cap = FLM_GEN_MAX_TOP_LOGPROBS;
    int rc = flm_gen_token_logprobs(s->g, &chosen->token, &chosen->logprob, ids, lps, cap, n_top);
    for (int i = 0; !rc && i < *n_top; i++) {
        top[i].token = ids[i];
        top[i].logprob = lps[i];
    }
    return rc;
}

static void fill_result(const flm_gen_result *g, flm_result *res) {
    if (!res) return;
    res->stop_reason = g->stop_reason;
    res->stop_token = g->stop_token;
    res->timings = g->timings;
    res->prompt_ids = g->prompt_ids;
    res->n_prompt_ids = g->n_prompt;
    res->ids = g->ids;
    res->n_ids = g->n_ids;
    res->text = g->text;
    res->text_len = g->text_len;
}

int flm_generate(flm_session *s, const flm_message *msgs, size_t n_msgs, flm_token_fn cb, void *user, flm_result *res) {
    if (res) memset(res, 0, sizeof *res);
    if (!s) return flm_fail(FLM_ERR_ARG, "flm_generate: s is NULL");
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
    if (!s) return flm_fail(FLM_ERR_ARG, "flm_generate_text: s is NULL");
    if (!prompt) return keep_error(s->err, flm_fail(FLM_ERR_ARG, "flm_generate_text: prompt is NULL"));
    flm_gen_result g;
    int rc = flm_gen_run_text(s->g, prompt, cb, user, &g);
    if (!rc) fill_result(&g, res);
    return keep_error(s->err, rc);
}

/* ---- adapters ---- */

int flm_lora_spec_parse(const char *spec, char **path, float *scale) {
    if (path) *path = NULL;
    if (!spec || !path || !scale) return flm_fail(FLM_ERR_ARG, "flm_lora_spec_parse: NULL argument");
    return flm_lora_parse_spec(spec, path, scale);
}

int flm_lora_probe(const char *path, int *is_adapter, char **base_model) {
    if (base_model) *base_model = NULL;
    if (is_adapter) *is_adapter = 0;
    if (!path || !is_adapter) return flm_fail(FLM_ERR_ARG, "flm_lora_probe: NULL argument");
    *is_adapter = flm_lora_is_adapter_dir(path, base_model) ? 1 : 0;
    return FLM_OK;
}
