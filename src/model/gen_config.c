/* gen_config.c — owns generation defaults: reading generation_config.json with
 * transformers' defaults for absent fields, recording each field's source, merging
 * user overrides, and collecting stop ids. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/gen_config.h"
#include "base/json.h"

#define GEN_CONFIG_NAME "generation_config.json"

static const struct {
    flm_gen_field field;
    const char *key;
} field_names[FLM_GEN_FIELD_COUNT] = {
    {FLM_GEN_DO_SAMPLE, "do_sample"},
    {FLM_GEN_TEMPERATURE, "temperature"},
    {FLM_GEN_TOP_K, "top_k"},
    {FLM_GEN_TOP_P, "top_p"},
    {FLM_GEN_MIN_P, "min_p"},
    {FLM_GEN_REPETITION_PENALTY, "repetition_penalty"},
    {FLM_GEN_EOS, "eos_token_id"},
    {FLM_GEN_BOS, "bos_token_id"},
    {FLM_GEN_PAD, "pad_token_id"},
    {FLM_GEN_MAX_NEW_TOKENS, "max_new_tokens"},
    {FLM_GEN_MAX_LENGTH, "max_length"},
};

const char *flm_gen_field_name(flm_gen_field f) {
    for (int i = 0; i < FLM_GEN_FIELD_COUNT; i++)
        if (field_names[i].field == f) return field_names[i].key;
    return NULL;
}

void flm_gen_config_defaults(flm_gen_config *gc) {
    memset(gc, 0, sizeof *gc);
    gc->do_sample = false;
    gc->temperature = 1.0;
    gc->top_k = 50;
    gc->top_p = 1.0;
    gc->min_p = 0.0;
    gc->repetition_penalty = 1.0;
    gc->n_eos = 0;
    gc->bos_id = -1;
    gc->pad_id = -1;
    gc->max_new_tokens = -1;
    gc->max_length = 20;
}

static const char *json_type_name(const flm_json *v) {
    switch (v->type) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return v->is_int ? "an integer" : "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

/* Present and not null: transformers treats null like an absent key. */
static const flm_json *member(const flm_json *root, const char *key) {
    const flm_json *v = flm_json_get(root, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

static int bad_field(const char *what, const char *key, const char *expected, const flm_json *v) {
    return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\" must be %s (got %s)", what, key, expected, json_type_name(v));
}

static int read_real(const flm_json *root, const char *what, const char *key, double lo, double hi, double *out,
                     bool *present) {
    const flm_json *v = member(root, key);
    *present = v != NULL;
    if (!v) return FLM_OK;
    if (v->type != JSON_NUMBER) return bad_field(what, key, "a number", v);
    if (!(v->number >= lo && v->number <= hi))
        return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\" is %g, outside [%g, %g]", what, key, v->number, lo, hi);
    *out = v->number;
    return FLM_OK;
}

static bool is_integer(const flm_json *v) {
    return v->type == JSON_NUMBER && v->is_int;
}

static int read_int(const flm_json *root, const char *what, const char *key, int64_t lo, int64_t hi, int64_t *out,
                    bool *present) {
    const flm_json *v = member(root, key);
    *present = v != NULL;
    if (!v) return FLM_OK;
    if (!is_integer(v)) return bad_field(what, key, "an integer", v);
    if (!(v->number >= (double)lo && v->number <= (double)hi))
        return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\" is %.0f, outside [%lld, %lld]", what, key, v->number,
                        (long long)lo, (long long)hi);
    *out = (int64_t)v->number;
    return FLM_OK;
}

#define TOKEN_ID_MAX INT32_MAX

static int read_eos(const flm_json *root, const char *what, flm_gen_config *gc) {
    const char *key = "eos_token_id";
    const flm_json *v = member(root, key);
    if (!v) return FLM_OK;
    if (v->type != JSON_ARRAY && !is_integer(v)) return bad_field(what, key, "an integer or a list of integers", v);
    size_t n = v->type == JSON_ARRAY ? v->len : 1;
    if (n > FLM_GEN_MAX_EOS)
        return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\" lists %zu ids, more than the %d supported", what, key, n,
                        FLM_GEN_MAX_EOS);
    for (size_t i = 0; i < n; i++) {
        const flm_json *e = v->type == JSON_ARRAY ? &v->items[i] : v;
        if (!is_integer(e))
            return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\"[%zu] must be an integer (got %s)", what, key, i,
                            json_type_name(e));
        if (e->number < 0 || e->number > TOKEN_ID_MAX)
            return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\"[%zu] = %.0f is not a token id", what, key, i, e->number);
        gc->eos_ids[i] = (int32_t)e->number;
    }
    gc->n_eos = (int)n;
    gc->from_file |= FLM_GEN_EOS;
    return FLM_OK;
}

static int parse_root(const flm_json *root, const char *what, flm_gen_config *gc) {
    if (root->type != JSON_OBJECT)
        return flm_fail(FLM_ERR_FORMAT, "%s: the top level must be an object (got %s)", what, json_type_name(root));
    int rc;
    bool present;
    const flm_json *v = member(root, "do_sample");
    if (v) {
        if (v->type != JSON_BOOL) return bad_field(what, "do_sample", "a boolean", v);
        gc->do_sample = v->boolean;
        gc->from_file |= FLM_GEN_DO_SAMPLE;
    }
    struct {
        flm_gen_field field;
        double lo, hi;
        double *out;
    } reals[] = {
        {FLM_GEN_TEMPERATURE, 0, HUGE_VAL, &gc->temperature},
        {FLM_GEN_TOP_P, 0, 1, &gc->top_p},
        {FLM_GEN_MIN_P, 0, 1, &gc->min_p},
        {FLM_GEN_REPETITION_PENALTY, 0, HUGE_VAL, &gc->repetition_penalty},
    };
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        const char *key = flm_gen_field_name(reals[i].field);
        if ((rc = read_real(root, what, key, reals[i].lo, reals[i].hi, reals[i].out, &present))) return rc;
        if (present) gc->from_file |= reals[i].field;
    }
    if (gc->from_file & FLM_GEN_REPETITION_PENALTY && !(gc->repetition_penalty > 0))
        return flm_fail(FLM_ERR_FORMAT, "%s: \"repetition_penalty\" must be > 0 (got %g)", what,
                        gc->repetition_penalty);
    struct {
        flm_gen_field field;
        int64_t lo, hi;
    } ints[] = {
        {FLM_GEN_TOP_K, 0, INT32_MAX},
        {FLM_GEN_BOS, 0, TOKEN_ID_MAX},
        {FLM_GEN_PAD, 0, TOKEN_ID_MAX},
        {FLM_GEN_MAX_NEW_TOKENS, 0, INT32_MAX},
        {FLM_GEN_MAX_LENGTH, 0, INT32_MAX},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        int64_t val = 0;
        if ((rc = read_int(root, what, flm_gen_field_name(ints[i].field), ints[i].lo, ints[i].hi, &val, &present)))
            return rc;
        if (!present) continue;
        gc->from_file |= ints[i].field;
        switch (ints[i].field) {
        case FLM_GEN_TOP_K: gc->top_k = (int)val; break;
        case FLM_GEN_BOS: gc->bos_id = (int32_t)val; break;
        case FLM_GEN_PAD: gc->pad_id = (int32_t)val; break;
        case FLM_GEN_MAX_NEW_TOKENS: gc->max_new_tokens = val; break;
        case FLM_GEN_MAX_LENGTH: gc->max_length = val; break;
        default: break;
        }
    }
    return read_eos(root, what, gc);
}

int flm_gen_config_parse(const char *text, size_t len, const char *what, flm_gen_config *gc) {
    flm_gen_config_defaults(gc);
    flm_json_doc *doc = flm_json_parse(text, len, what);
    if (!doc) return flm_fail_context(FLM_ERR_FORMAT, "reading generation config");
    int rc = parse_root(flm_json_root(doc), what, gc);
    flm_json_free(doc);
    if (rc) {
        flm_gen_config_defaults(gc);
        return rc;
    }
    gc->file_found = true;
    return FLM_OK;
}

int flm_gen_config_load_hf(const char *path, flm_gen_config *gc) {
    flm_gen_config_defaults(gc);
    if (!path) return flm_fail(FLM_ERR_ARG, "generation config: no path");
    char *file = flm_is_dir(path) ? flm_path_join(path, GEN_CONFIG_NAME) : flm_strdup(path);
    if (!file) return FLM_ERR_NOMEM;
    if (!flm_file_exists(file)) {
        free(file);
        return FLM_OK; /* no file: transformers' defaults */
    }
    char *text = NULL;
    size_t len = 0;
    int rc = flm_read_file(file, &text, &len);
    if (rc == FLM_OK) rc = flm_gen_config_parse(text, len, file, gc);
    free(text);
    free(file);
    return rc;
}

void flm_gen_config_set_do_sample(flm_gen_config *o, bool v) { o->do_sample = v; o->from_user |= FLM_GEN_DO_SAMPLE; }
void flm_gen_config_set_temperature(flm_gen_config *o, double v) { o->temperature = v; o->from_user |= FLM_GEN_TEMPERATURE; }
void flm_gen_config_set_top_k(flm_gen_config *o, int v) { o->top_k = v; o->from_user |= FLM_GEN_TOP_K; }
void flm_gen_config_set_top_p(flm_gen_config *o, double v) { o->top_p = v; o->from_user |= FLM_GEN_TOP_P; }
void flm_gen_config_set_min_p(flm_gen_config *o, double v) { o->min_p = v; o->from_user |= FLM_GEN_MIN_P; }
void flm_gen_config_set_repetition_penalty(flm_gen_config *o, double v) {
    o->repetition_penalty = v;
    o->from_user |= FLM_GEN_REPETITION_PENALTY;
}
void flm_gen_config_set_max_new_tokens(flm_gen_config *o, int64_t v) {
    o->max_new_tokens = v;
    o->from_user |= FLM_GEN_MAX_NEW_TOKENS;
}

void flm_gen_config_merge(flm_gen_config *base, const flm_gen_config *o) {
    uint32_t u = o->from_user;
    if (u & FLM_GEN_DO_SAMPLE) base->do_sample = o->do_sample;
    if (u & FLM_GEN_TEMPERATURE) base->temperature = o->temperature;
    if (u & FLM_GEN_TOP_K) base->top_k = o->top_k;
    if (u & FLM_GEN_TOP_P) base->top_p = o->top_p;
    if (u & FLM_GEN_MIN_P) base->min_p = o->min_p;
    if (u & FLM_GEN_REPETITION_PENALTY) base->repetition_penalty = o->repetition_penalty;
    if (u & FLM_GEN_EOS) {
        memcpy(base->eos_ids, o->eos_ids, sizeof base->eos_ids);
        base->n_eos = o->n_eos;
    }
    if (u & FLM_GEN_BOS) base->bos_id = o->bos_id;
    if (u & FLM_GEN_PAD) base->pad_id = o->pad_id;
    if (u & FLM_GEN_MAX_NEW_TOKENS) base->max_new_tokens = o->max_new_tokens;
    if (u & FLM_GEN_MAX_LENGTH) base->max_length = o->max_length;
    base->from_user |= u;
}

flm_gen_source flm_gen_config_source(const flm_gen_config *gc, flm_gen_field f) {
    if (gc->from_user & f) return FLM_GEN_SRC_USER;
    if (gc->from_file & f) return FLM_GEN_SRC_FILE;
    return FLM_GEN_SRC_DEFAULT;
}

const char *flm_gen_source_name(flm_gen_source src) {
    switch (src) {
    case FLM_GEN_SRC_DEFAULT: return "default (transformers)";
    case FLM_GEN_SRC_FILE: return GEN_CONFIG_NAME;
    case FLM_GEN_SRC_USER: return "user";
    }
    return "?";
}

static int add_unique(int32_t id, int32_t *out, int cap, int n, const int32_t *seen, int n_seen) {
    for (int i = 0; i < n_seen; i++)
        if (seen[i] == id) return n;
    if (n < cap) out[n] = id;
    return n + 1;
}

int flm_gen_config_eos_ids(const flm_gen_config *gc, int32_t tokenizer_eos, int32_t *out, int cap) {
    /* Deduplicate against a local list so `out` may be small (or NULL with cap 0). */
    int32_t all[FLM_GEN_MAX_EOS + 1];
    int n = 0;
    for (int i = 0; i < gc->n_eos; i++) n = add_unique(gc->eos_ids[i], all, FLM_GEN_MAX_EOS + 1, n, all, n);
    if (tokenizer_eos >= 0) n = add_unique(tokenizer_eos, all, FLM_GEN_MAX_EOS + 1, n, all, n);
    for (int i = 0; i < n && i < cap; i++) out[i] = all[i];
    return n;
}
