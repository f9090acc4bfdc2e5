/* response.c — OpenAI-shaped JSON (response.h). The text is written by json-c, so
 * every string is escaped correctly whatever the model generates. */
#include "response.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

char *serve_json_text(void *obj, size_t *len) {
    size_t n = 0;
    const char *t = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *out = t ? malloc(n + 1) : NULL;
    if (out) {
        memcpy(out, t, n);
        out[n] = 0;
    }
    json_object_put(obj);
    if (len) *len = out ? n : 0;
    return out;
}

char *serve_sse_event(void *obj, size_t *len) {
    static const char done[] = "data: [DONE]\n\n";
    if (!obj) {
        char *d = malloc(sizeof done);
        if (d) memcpy(d, done, sizeof done);
        if (len) *len = d ? sizeof done - 1 : 0;
        return d;
    }
    size_t n;
    char *j = serve_json_text(obj, &n);
    char *out = j ? malloc(n + 9) : NULL;
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, j, n);
        memcpy(out + 6 + n, "\n\n", 3);
    }
    free(j);
    if (len) *len = out ? n + 8 : 0;
    return out;
}

static json_object *str_len(const char *s, size_t n) { return json_object_new_string_len(s, (int)n); }

void *serve_error_json(const char *message, const char *type, const char *param, const char *code) {
    json_object *e = json_object_new_object(), *o = json_object_new_object();
    json_object_object_add(e, "message", json_object_new_string(message));
    json_object_object_add(e, "type", json_object_new_string(type ? type : "invalid_request_error"));
    json_object_object_add(e, "param", param && *param ? json_object_new_string(param) : NULL);
    json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
    json_object_object_add(o, "error", e);
    return o;
}

void *serve_usage_json(int prompt, int completion, int cached) {
    json_object *u = json_object_new_object(), *d = json_object_new_object();
    json_object_object_add(u, "prompt_tokens", json_object_new_int(prompt));
    json_object_object_add(u, "completion_tokens", json_object_new_int(completion));
    json_object_object_add(u, "total_tokens", json_object_new_int(prompt + completion));
    json_object_object_add(d, "cached_tokens", json_object_new_int(cached));
    json_object_object_add(u, "prompt_tokens_details", d);
    return u;
}

static json_object *bytes_of(const char *s, size_t n) {
    json_object *a = json_object_new_array_ext((int)n);
    for (size_t i = 0; i < n; i++) json_object_array_add(a, json_object_new_int((unsigned char)s[i]));
    return a;
}

void *serve_logprob_entry(const char *text, size_t len, double logprob, const char *const *top_text,
                          const size_t *top_len, const double *top_lp, int n_top) {
    json_object *e = json_object_new_object(), *tops = json_object_new_array_ext(n_top);
    json_object_object_add(e, "token", str_len(text, len));
    json_object_object_add(e, "logprob", json_object_new_double(logprob));
    json_object_object_add(e, "bytes", bytes_of(text, len));
    for (int i = 0; i < n_top; i++) {
        json_object *t = json_object_new_object();
        json_object_object_add(t, "token", str_len(top_text[i], top_len[i]));
        json_object_object_add(t, "logprob", json_object_new_double(top_lp[i]));
        json_object_object_add(t, "bytes", bytes_of(top_text[i], top_len[i]));
        json_object_array_add(tops, t);
    }
    json_object_object_add(e, "top_logprobs", tops);
    return e;
}

/* The legacy completions logprobs object from chat-style entries:
 * {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}. */
static json_object *legacy_logprobs(json_object *entries) {
    json_object *o = json_object_new_object(), *toks = json_object_new_array(), *lps = json_object_new_array(),
                *tops = json_object_new_array(), *offs = json_object_new_array();
    size_t n = json_object_array_length(entries), off = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(entries, i), *v, *tl, *m = json_object_new_object();
        json_object_object_get_ex(e, "token", &v);
        json_object_array_add(toks, json_object_get(v));
        json_object_array_add(offs, json_object_new_int64((int64_t)off));
        off += (size_t)json_object_get_string_len(v);
        json_object_object_get_ex(e, "logprob", &v);
        json_object_array_add(lps, json_object_get(v));
        json_object_object_get_ex(e, "top_logprobs", &tl);
        for (size_t k = 0; k < json_object_array_length(tl); k++) {
            json_object *t = json_object_array_get_idx(tl, k), *tt, *tv;
            json_object_object_get_ex(t, "token", &tt);
            json_object_object_get_ex(t, "logprob", &tv);
            json_object_object_add(m, json_object_get_string(tt), json_object_get(tv));
        }
        json_object_array_add(tops, m);
    }
    json_object_object_add(o, "tokens", toks);
    json_object_object_add(o, "token_logprobs", lps);
    json_object_object_add(o, "top_logprobs", tops);
    json_object_object_add(o, "text_offset", offs);
    json_object_put(entries);
    return o;
}

static json_object *head(const serve_meta *m, const char *object) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(m->id));
    json_object_object_add(o, "object", json_object_new_string(object));
    json_object_object_add(o, "created", json_object_new_int64(m->created));
    json_object_object_add(o, "model", json_object_new_string(m->model));
    json_object_object_add(o, "system_fingerprint", json_object_new_string("fieldlm-" FLM_VERSION));
    return o;
}

static json_object *logprobs_value(const serve_meta *m, json_object *entries) {
    if (!entries) return NULL;
    if (m->kind == SERVE_COMPLETION) return legacy_logprobs(entries);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "content", entries);
    return o;
}

void *serve_completion_json(const serve_meta *m, const char *text, size_t len, const char *finish, void *logprobs,
                            void *usage) {
    json_object *o = head(m, m->kind == SERVE_CHAT ? "chat.completion" : "text_completion");
    json_object *choices = json_object_new_array(), *c = json_object_new_object();
    json_object_object_add(c, "index", json_object_new_int(0));
    if (m->kind == SERVE_CHAT) {
        json_object *msg = json_object_new_object();
        json_object_object_add(msg, "role", json_object_new_string("assistant"));
        json_object_object_add(msg, "content", str_len(text, len));
        json_object_object_add(c, "message", msg);
    } else {
        json_object_object_add(c, "text", str_len(text, len));
    }
    json_object_object_add(c, "logprobs", logprobs_value(m, logprobs));
    json_object_object_add(c, "finish_reason", json_object_new_string(finish));
    json_object_array_add(choices, c);
    json_object_object_add(o, "choices", choices);
    json_object_object_add(o, "usage", usage);
    return o;
}

void *serve_chunk_json(const serve_meta *m, const char *role, const char *text, size_t len, const char *finish,
                       void *logprobs) {
    int chat = m->kind == SERVE_CHAT;
    json_object *o = head(m, chat ? "chat.completion.chunk" : "text_completion");
    json_object *choices = json_object_new_array(), *c = json_object_new_object();
    json_object_object_add(c, "index", json_object_new_int(0));
    if (chat) {
        json_object *d = json_object_new_object();
        if (role) json_object_object_add(d, "role", json_object_new_string(role));
        if (text) json_object_object_add(d, "content", str_len(text, len));
        json_object_object_add(c, "delta", d);
    } else {
        json_object_object_add(c, "text", str_len(text ? text : "", text ? len : 0));
    }
    json_object_object_add(c, "logprobs", logprobs_value(m, logprobs));
    json_object_object_add(c, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    json_object_array_add(choices, c);
    json_object_object_add(o, "choices", choices);
    return o;
}

void *serve_usage_chunk_json(const serve_meta *m, void *usage) {
    json_object *o = head(m, m->kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_object_add(o, "choices", json_object_new_array());
    json_object_object_add(o, "usage", usage);
    return o;
}
