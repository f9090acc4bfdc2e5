/* request.c — OpenAI request bodies (chat completions, completions) → serve_request:
 * strict JSON through json-c (UTF-8 validated, nesting limited), then every field
 * the server knows checked for its type and range. Unknown fields are ignored, as
 * OpenAI-compatible servers do; features the server lacks (n > 1, tools, response
 * formats other than text) are refused with a message that says so. */
#include "request.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int serve_error_set(serve_error *err, const char *code, const char *param, const char *fmt, ...) {
    err->status = 400;
    err->type = "invalid_request_error";
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Strict UTF-8 (RFC 3629): json-c's own check passes overlong forms, UTF-16 surrogates
 * and code points above U+10FFFF. Returns the offset of the first bad byte, or len. */
static size_t utf8_bad_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;  /* the allowed range of the second byte */
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) n = 1;
        else if (c == 0xe0) { n = 2; lo = 0xa0; }
        else if (c == 0xed) { n = 2; hi = 0x9f; }
        else if (c >= 0xe1 && c <= 0xef) n = 2;
        else if (c == 0xf0) { n = 3; lo = 0x90; }
        else if (c == 0xf4) { n = 3; hi = 0x8f; }
        else if (c >= 0xf1 && c <= 0xf3) n = 3;
        else return i;
        if (n >= len - i) return i;  /* truncated at the end */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return i;
        i += n + 1;
    }
    return len;
}

void *serve_json_parse_object(const char *body, size_t len, serve_error *err) {
    if (len == 0) { serve_error_set(err, "invalid_json", NULL, "the request body is empty: a JSON object is expected"); return NULL; }
    if (len > 0x7fffffff) { serve_error_set(err, "invalid_json", NULL, "the request body is too large"); return NULL; }
    size_t bad = utf8_bad_at((const unsigned char *)body, len);
    if (bad < len) {
        serve_error_set(err, "invalid_json", NULL, "the request body is not valid JSON: invalid UTF-8 at byte %zu", bad);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(SERVE_MAX_DEPTH);
    if (!tok) { serve_error_set(err, NULL, NULL, "out of memory"); return NULL; }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (e == json_tokener_continue) {
        json_object_put(o);
        serve_error_set(err, "invalid_json", NULL, "the request body is not valid JSON: it ends too early (truncated)");
        return NULL;
    }
    if (e != json_tokener_success || !o) {
        json_object_put(o);
        if (e == json_tokener_error_depth)
            serve_error_set(err, "invalid_json", NULL, "the request body nests JSON deeper than %d levels", SERVE_MAX_DEPTH);
        else
            serve_error_set(err, "invalid_json", NULL, "the request body is not valid JSON: %s at byte %zu",
                            json_tokener_error_desc(e), end);
        return NULL;
    }
    for (size_t i = end; i < len; i++)
        if (!strchr(" \t\r\n", body[i])) {
            json_object_put(o);
            serve_error_set(err, "invalid_json", NULL, "the request body is not valid JSON: unexpected data after the "
                                                       "value at byte %zu", i);
            return NULL;
        }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        serve_error_set(err, "invalid_json", NULL, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

static const char *type_name(json_object *v) {
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return "a number";
    case json_type_string: return "a string";
    case json_type_array: return "an array";
    case json_type_object: return "an object";
    }
    return "something else";
}

/* The field, or NULL when absent or null (OpenAI treats null as "not given"). */
static json_object *field(json_object *o, const char *name) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) return NULL;
    return v;
}

static int is_number(json_object *v) {
    return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

/* A number in [lo, hi]; *got stays when absent. */
static int get_real(json_object *o, const char *name, double lo, double hi, double *got, serve_error *err) {
    json_object *v = field(o, name);
    if (!v) return 0;
    if (!is_number(v)) return serve_error_set(err, "invalid_type", name, "'%s' must be a number, not %s", name, type_name(v));
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi)
        return serve_error_set(err, "invalid_value", name, "'%s' must be between %g and %g (got %g)", name, lo, hi, d);
    *got = d;
    return 0;
}

/* An integer in [lo, hi]; *present set when given. */
static int get_int(json_object *o, const char *name, int64_t lo, int64_t hi, int64_t *got, int *present,
                   serve_error *err) {
    json_object *v = field(o, name);
    if (present) *present = 0;
    if (!v) return 0;
    if (!is_number(v)) return serve_error_set(err, "invalid_type", name, "'%s' must be an integer, not %s", name, type_name(v));
    int64_t i;
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi)
            return serve_error_set(err, "invalid_value", name, "'%s' must be an integer between %lld and %lld (got %g)",
                                   name, (long long)lo, (long long)hi, d);
        i = (int64_t)d;
    } else {
        i = json_object_get_int64(v);
        if (i < lo || i > hi || (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX && hi == INT64_MAX))
            return serve_error_set(err, "invalid_value", name, "'%s' must be an integer between %lld and %lld", name,
                                   (long long)lo, (long long)hi);
    }
    *got = i;
    if (present) *present = 1;
    return 0;
}

static int get_bool(json_object *o, const char *name, int *got, serve_error *err) {
    json_object *v = field(o, name);
    if (!v) return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return serve_error_set(err, "invalid_type", name, "'%s' must be true or false, not %s", name, type_name(v));
    *got = json_object_get_boolean(v) ? 1 : 0;
    return 0;
}

/* A string without NUL characters, valid UTF-8 also after json-c decoded its \\u escapes
 * (a lone surrogate such as "\\ud800" would otherwise reach the tokenizer as invalid UTF-8). */
static int plain_string(json_object *v, const char *name, const char **out, serve_error *err) {
    if (!json_object_is_type(v, json_type_string))
        return serve_error_set(err, "invalid_type", name, "'%s' must be a string, not %s", name, type_name(v));
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (len != strlen(s))
        return serve_error_set(err, "invalid_value", name, "'%s' contains a NUL character (\\u0000)", name);
    if (utf8_bad_at((const unsigned char *)s, len) < len)
        return serve_error_set(err, "invalid_value", name, "'%s' is not valid UTF-8 (a lone UTF-16 surrogate escape?)", name);
    *out = s;
    return 0;
}

static int parse_stop(json_object *o, serve_request *r, serve_error *err) {
    json_object *v = field(o, "stop");
    if (!v) return 0;
    if (json_object_is_type(v, json_type_string)) {
        if (plain_string(v, "stop", &r->stop[0], err)) return -1;
        if (!r->stop[0][0]) return serve_error_set(err, "invalid_value", "stop", "'stop' must not be an empty string");
        r->set.n_stop = 1;
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        if (n > SERVE_MAX_STOP)
            return serve_error_set(err, "invalid_value", "stop", "'stop' may hold at most %d strings (got %zu)", SERVE_MAX_STOP, n);
        for (size_t i = 0; i < n; i++) {
            if (plain_string(json_object_array_get_idx(v, i), "stop", &r->stop[i], err)) return -1;
            if (!r->stop[i][0]) return serve_error_set(err, "invalid_value", "stop", "'stop' must not hold an empty string");
        }
        r->set.n_stop = (int)n;
    } else {
        return serve_error_set(err, "invalid_type", "stop", "'stop' must be a string or an array of strings, not %s", type_name(v));
    }
    r->set.stop = r->set.n_stop ? r->stop : NULL;
    return 0;
}

/* content: a string, or an array of {"type": "text", "text": "..."} parts (joined). */
static int parse_content(json_object *v, size_t i, serve_request *r, const char **out, serve_error *err) {
    char name[48];
    snprintf(name, sizeof name, "messages[%zu].content", i);
    if (!v) return serve_error_set(err, "invalid_value", name, "'%s' is missing: each message needs its text", name);
    if (json_object_is_type(v, json_type_string)) return plain_string(v, name, out, err);
    if (!json_object_is_type(v, json_type_array))
        return serve_error_set(err, "invalid_type", name, "'%s' must be a string or an array of text parts, not %s", name,
                               type_name(v));
    size_t n = json_object_array_length(v), total = 0;
    const char *texts[256];
    if (n > 256) return serve_error_set(err, "invalid_value", name, "'%s' has more than 256 parts", name);
    for (size_t k = 0; k < n; k++) {
        json_object *part = json_object_array_get_idx(v, k), *t;
        const char *type = NULL;
        if (!json_object_is_type(part, json_type_object) || !(t = field(part, "type")) ||
            plain_string(t, name, &type, err) || strcmp(type, "text") || !(t = field(part, "text")) ||
            plain_string(t, name, &texts[k], err))
            return serve_error_set(err, "unsupported_value", name,
                                   "'%s[%zu]' must be a text part {\"type\": \"text\", \"text\": \"...\"} (this server "
                                   "reads text only)", name, k);
        total += strlen(texts[k]);
    }
    char *joined = malloc(total + 1);
    if (!joined) return serve_error_set(err, NULL, NULL, "out of memory");
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        size_t l = strlen(texts[k]);
        memcpy(joined + at, texts[k], l);
        at += l;
    }
    joined[at] = 0;
    r->owned[r->n_owned++] = joined;
    *out = joined;
    return 0;
}

static int parse_messages(json_object *o, serve_request *r, serve_error *err) {
    json_object *v = field(o, "messages");
    if (!v) return serve_error_set(err, "invalid_value", "messages", "'messages' is required: an array of {\"role\", \"content\"}");
    if (!json_object_is_type(v, json_type_array))
        return serve_error_set(err, "invalid_type", "messages", "'messages' must be an array, not %s", type_name(v));
    size_t n = json_object_array_length(v);
    if (n == 0) return serve_error_set(err, "invalid_value", "messages", "'messages' is empty: give at least one message");
    if (n > SERVE_MAX_MESSAGES)
        return serve_error_set(err, "invalid_value", "messages", "'messages' holds %zu messages; at most %d are accepted", n,
                               SERVE_MAX_MESSAGES);
    r->msgs = calloc(n, sizeof *r->msgs);
    r->owned = calloc(n, sizeof *r->owned);
    if (!r->msgs || !r->owned) return serve_error_set(err, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(v, i), *role;
        char name[48];
        snprintf(name, sizeof name, "messages[%zu]", i);
        if (!json_object_is_type(m, json_type_object))
            return serve_error_set(err, "invalid_type", name, "'%s' must be an object, not %s", name, type_name(m));
        snprintf(name, sizeof name, "messages[%zu].role", i);
        const char *rs;
        if (!(role = field(m, "role"))) return serve_error_set(err, "invalid_value", name, "'%s' is missing", name);
        if (plain_string(role, name, &rs, err)) return -1;
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return serve_error_set(err, "invalid_value", name, "'%s' is '%.40s': the roles are system, user and assistant",
                                   name, rs);
        json_object *tc = field(m, "tool_calls");
        if (tc && !(json_object_is_type(tc, json_type_array) && json_object_array_length(tc) == 0))
            return serve_error_set(err, "unsupported_value", name, "tool calls are not supported by this server");
        r->msgs[i].role = rs;
        if (parse_content(field(m, "content"), i, r, &r->msgs[i].content, err)) return -1;
    }
    r->n_msgs = n;
    return 0;
}

static int refuse_if_set(json_object *o, const char *name, const char *why, serve_error *err) {
    json_object *v = field(o, name);
    if (!v) return 0;
    if (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 0) return 0;
    return serve_error_set(err, "unsupported_value", name, "'%s' is not supported: %s", name, why);
}

static int parse_fields(json_object *o, serve_kind kind, serve_request *r, serve_error *err) {
    json_object *v;
    const char *s;
    if ((v = field(o, "model")) && plain_string(v, "model", &s, err)) return -1;
    if (get_bool(o, "stream", &r->stream, err)) return -1;
    if ((v = field(o, "stream_options"))) {
        if (!json_object_is_type(v, json_type_object))
            return serve_error_set(err, "invalid_type", "stream_options", "'stream_options' must be an object, not %s", type_name(v));
        if (get_bool(v, "include_usage", &r->include_usage, err)) return -1;
    }
    int64_t i;
    int present;
    if (get_int(o, "n", 1, 1, &i, &present, err)) {
        if (field(o, "n") && is_number(field(o, "n")))
            return serve_error_set(err, "unsupported_value", "n", "'n' must be 1: this server generates one choice per request");
        return -1;
    }
    double d = NAN;
    if (get_real(o, "temperature", 0, 2, &d, err)) return -1;
    if (!isnan(d)) {
        r->set.temperature = d;
        r->set.do_sample = d > 0 ? 1 : 0;
    }
    if (get_real(o, "top_p", 0, 1, &r->set.top_p, err)) return -1;
    if (get_real(o, "min_p", 0, 1, &r->set.min_p, err)) return -1;
    if (get_int(o, "top_k", 0, 1 << 30, &i, &present, err)) return -1;
    if (present) r->set.top_k = (int)i;
    if (get_real(o, "repetition_penalty", 1e-3, 100, &r->set.repetition_penalty, err)) return -1;
    /* temperature 0: argmax, and (as `fieldlm run --greedy`) no repetition penalty unless given */
    if (r->set.do_sample == 0 && flm_is_unset(r->set.repetition_penalty)) r->set.repetition_penalty = 1.0;
    if (get_real(o, "presence_penalty", -2, 2, &r->set.presence_penalty, err)) return -1;
    if (get_real(o, "frequency_penalty", -2, 2, &r->set.frequency_penalty, err)) return -1;
    if (get_int(o, "max_tokens", 1, 1 << 30, &i, &present, err)) return -1;
    if (present) r->set.max_new_tokens = (long)i;
    if (get_int(o, "max_completion_tokens", 1, 1 << 30, &i, &present, err)) return -1;
    if (present) r->set.max_new_tokens = (long)i;
    if ((v = field(o, "seed"))) {
        if (!json_object_is_type(v, json_type_int))
            return serve_error_set(err, "invalid_type", "seed", "'seed' must be an integer, not %s",
                                   is_number(v) ? "a fraction" : type_name(v));
        int64_t sv = json_object_get_int64(v);
        r->set.seed = sv == INT64_MAX ? json_object_get_uint64(v) : (uint64_t)sv;
        r->have_seed = 1;
    }
    if (parse_stop(o, r, err)) return -1;
    if (kind == SERVE_CHAT) {
        if (get_bool(o, "logprobs", &r->logprobs, err)) return -1;
        if (get_int(o, "top_logprobs", 0, 20, &i, &present, err)) return -1;
        if (present) {
            if (!r->logprobs)
                return serve_error_set(err, "invalid_value", "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            r->top_logprobs = (int)i;
        }
        if (refuse_if_set(o, "tools", "this server does not call tools", err) ||
            refuse_if_set(o, "functions", "this server does not call functions", err))
            return -1;
        if ((v = field(o, "tool_choice")) &&
            !(json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), "none")))
            return serve_error_set(err, "unsupported_value", "tool_choice", "'tool_choice' is not supported (only \"none\")");
        if ((v = field(o, "response_format"))) {
            json_object *t = json_object_is_type(v, json_type_object) ? field(v, "type") : NULL;
            if (!t || !json_object_is_type(t, json_type_string) || strcmp(json_object_get_string(t), "text"))
                return serve_error_set(err, "unsupported_value", "response_format",
                                       "'response_format' must be {\"type\": \"text\"}: this server does not constrain "
                                       "output to JSON");
        }
        if (parse_messages(o, r, err)) return -1;
    } else {
        if (get_int(o, "logprobs", 0, 20, &i, &present, err)) return -1;
        if (present) { r->logprobs = 1; r->top_logprobs = (int)i; }
        if (get_bool(o, "echo", &r->echo, err)) return -1;
        if ((v = field(o, "suffix")) && !(json_object_is_type(v, json_type_string) && !json_object_get_string_len(v)))
            return serve_error_set(err, "unsupported_value", "suffix", "'suffix' is not supported (no fill-in-the-middle)");
        if (get_int(o, "best_of", 1, 1, &i, &present, err))
            return serve_error_set(err, "unsupported_value", "best_of", "'best_of' must be 1");
        v = field(o, "prompt");
        if (!v) return serve_error_set(err, "invalid_value", "prompt", "'prompt' is required: the text to continue");
        if (json_object_is_type(v, json_type_array)) {
            if (json_object_array_length(v) != 1)
                return serve_error_set(err, "unsupported_value", "prompt", "'prompt' as an array must hold exactly one string "
                                                                           "(one prompt per request)");
            v = json_object_array_get_idx(v, 0);
        }
        if (plain_string(v, "prompt", &r->prompt, err)) return -1;
        if (!r->prompt[0]) return serve_error_set(err, "invalid_value", "prompt", "'prompt' is empty");
    }
    if (r->logprobs) {
        r->set.logprobs = 1;
        r->set.top_logprobs = r->top_logprobs;
    }
    return 0;
}

int serve_request_parse(const char *body, size_t len, serve_kind kind, serve_request *r, serve_error *err) {
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    r->kind = kind;
    flm_gen_settings_init(&r->set);
    json_object *o = serve_json_parse_object(body, len, err);
    if (!o) return -1;
    r->root = o;
    if (parse_fields(o, kind, r, err)) {
        serve_request_free(r);
        return -1;
    }
    return 0;
}

void serve_request_free(serve_request *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    free(r->msgs);
    json_object_put(r->root);
    memset(r, 0, sizeof *r);
}
