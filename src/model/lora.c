/* lora.c — PEFT LoRA adapters: adapter_config.json (what is supported, which
 * modules are targeted, per-module rank and scale), adapter_model.safetensors
 * (lora_A / lora_B pairs mapped to base weight names), checks against the base
 * model, and the float32 merge W' = W + scale·(B·A). Semantics follow peft
 * (tuners/lora, tuners/tuners_utils.py, utils/other.py); docs/LORA.md cites them. */
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/common.h"
#include "base/json.h"
#include "kernels/kernels.h"

#define ADAPTER_CONFIG "adapter_config.json"
#define ADAPTER_WEIGHTS "adapter_model.safetensors"
#define ADAPTER_PICKLE "adapter_model.bin"
#define TENSOR_PREFIX "base_model.model."
#define LORA_MAX_RANK 65536
/* peft's LoraConfig defaults for r and lora_alpha when a key is absent. */
#define PEFT_DEFAULT_R 8
#define PEFT_DEFAULT_ALPHA 8.0

/* ------------------------------------------------------------------ types */

typedef struct {
    char *key;          /* as written in the config */
    pcre2_code *re;     /* "(.*\.)?(key)$", anchored at the start */
    double value;
} lora_pattern;

typedef struct {
    char *weight;           /* base weight name: "<module>.weight" */
    const flm_tensor *A;    /* [rank, in] */
    const flm_tensor *B;    /* [out, rank] */
    int rank;               /* expected from config (r / rank_pattern) */
    float scale;            /* user_scale · alpha / r (or / sqrt(r)), float32 */
} lora_module;

struct flm_lora {
    char *dir;
    flm_st_file *st;
    char *base_model, *peft_version;
    int r;
    double alpha;
    bool rslora, fifo, all_linear;
    float user_scale;
    dev_t dev;                  /* identity of adapter_model.safetensors, to spot */
    ino_t ino;                  /* one adapter given twice (flm_lora_check_distinct) */
    /* target_modules: list, or one regex (full match) */
    char **targets;
    size_t ntargets;
    pcre2_code *target_re;
    /* exclude_modules: same shapes */
    char **excludes;
    size_t nexcludes;
    pcre2_code *exclude_re;
    /* layers_to_transform / layers_pattern (list form of target_modules only) */
    int64_t *layers;
    size_t nlayers;
    pcre2_code **layer_res;     /* one per layers_pattern entry, or one generic */
    size_t nlayer_res;
    lora_pattern *rank_pat, *alpha_pat;
    size_t nrank_pat, nalpha_pat;
    lora_module *mods;          /* sorted by weight name */
    size_t nmods;
};

/* ------------------------------------------------------------------ regex */

/* Compiles a peft (Python re) pattern; messages name where it came from. */
static int compile_re(const char *pattern, const char *what, pcre2_code **out) {
    int err = 0;
    PCRE2_SIZE off = 0;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return flm_fail(FLM_ERR_FORMAT, "%s: invalid regular expression \"%s\" at offset %zu: %s", what, pattern,
                        (size_t)off, (const char *)msg);
    }
    return FLM_OK;
}

/* Python re.match (anchored at the start) or re.fullmatch (both ends). Returns
 * the number of capture pairs set (>0) on a match, 0 on no match, <0 on error;
 * group 1 is copied to cap[0..cap_len) when cap is given. */
static int re_match(const pcre2_code *re, const char *s, bool full, char *cap, size_t cap_len) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return flm_fail(FLM_ERR_NOMEM, "out of memory matching a regular expression");
    uint32_t opts = PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, opts, md, NULL);
    int result = 0;
    if (rc > 0) {
        result = rc;
        if (cap && cap_len) {
            PCRE2_SIZE n = cap_len;
            if (pcre2_substring_copy_bynumber(md, 1, (PCRE2_UCHAR *)cap, &n) != 0) cap[0] = 0;
        }
    } else if (rc != PCRE2_ERROR_NOMATCH) {
        result = flm_fail(FLM_ERR_FORMAT, "regular expression failed on \"%s\" (pcre2 error %d)", s, rc);
    }
    pcre2_match_data_free(md);
    return result;
}

/* ------------------------------------------------------------------ config */

static bool json_is_set(const flm_json *v) {
    if (!v) return false;
    switch (v->type) {
    case JSON_NULL: return false;
    case JSON_BOOL: return v->boolean;
    case JSON_STRING:
    case JSON_ARRAY:
    case JSON_OBJECT: return v->len > 0;
    case JSON_NUMBER: return true;
    }
    return true;
}

typedef enum { KEY_READ, KEY_IGNORE, KEY_REFUSE_IF_SET } key_kind;

/* Every adapter_config.json key fieldlm knows. KEY_READ: interpreted below.
 * KEY_IGNORE: metadata or training-only, no effect on merged weights.
 * KEY_REFUSE_IF_SET: changes the computation in a way this merge does not do.
 * A key not in the table is refused when set (null/false/empty pass): a newer peft
 * option may change the weights, and a wrong merge would be silent. */
static const struct {
    const char *key;
    key_kind kind;
    const char *why;
} CONFIG_KEYS[] = {
    {"peft_type", KEY_READ, NULL},
    {"r", KEY_READ, NULL},
    {"lora_alpha", KEY_READ, NULL},
    {"use_rslora", KEY_READ, NULL},
    {"target_modules", KEY_READ, NULL},
    {"exclude_modules", KEY_READ, NULL},
    {"fan_in_fan_out", KEY_READ, NULL},
    {"rank_pattern", KEY_READ, NULL},
    {"alpha_pattern", KEY_READ, NULL},
    {"layers_to_transform", KEY_READ, NULL},
    {"layers_pattern", KEY_READ, NULL},
    {"bias", KEY_READ, NULL},
    {"init_lora_weights", KEY_READ, NULL},
    {"loftq_config", KEY_READ, NULL},
    {"base_model_name_or_path", KEY_READ, NULL},
    {"peft_version", KEY_READ, NULL},
    {"auto_mapping", KEY_IGNORE, NULL},
    {"revision", KEY_IGNORE, NULL},
    {"task_type", KEY_IGNORE, NULL},
    {"inference_mode", KEY_IGNORE, NULL},
    {"lora_dropout", KEY_IGNORE, NULL},
    {"megatron_config", KEY_IGNORE, NULL},
    {"megatron_core", KEY_IGNORE, NULL},
    {"ensure_weight_tying", KEY_IGNORE, NULL},
    {"qalora_group_size", KEY_IGNORE, NULL},
    {"eva_config", KEY_IGNORE, NULL},
    {"corda_config", KEY_IGNORE, NULL},
    {"lora_ga_config", KEY_IGNORE, NULL},
    {"merge_weights", KEY_IGNORE, NULL},
    {"use_dora", KEY_REFUSE_IF_SET, "DoRA rescales each merged column by a learned magnitude vector"},
    {"lora_bias", KEY_REFUSE_IF_SET, "the adapter also trains a bias on lora_B, which is not merged"},
    {"modules_to_save", KEY_REFUSE_IF_SET, "the adapter carries full replacement weights for those modules"},
    {"layer_replication", KEY_REFUSE_IF_SET, "the adapted model has duplicated layers the base does not have"},
    {"target_parameters", KEY_REFUSE_IF_SET, "LoRA on bare parameters (MoE experts) is not supported"},
    {"trainable_token_indices", KEY_REFUSE_IF_SET, "the adapter replaces embedding rows for some tokens"},
    {"use_qalora", KEY_REFUSE_IF_SET, "QA-LoRA pools the input in groups; B·A is not its delta"},
    {"use_bdlora", KEY_REFUSE_IF_SET, "block-diagonal LoRA is not supported"},
    {"alora_invocation_tokens", KEY_REFUSE_IF_SET, "activated LoRA applies only after the invocation tokens, so it cannot be merged"},
    {"arrow_config", KEY_REFUSE_IF_SET, "Arrow routes between several LoRA experts per token"},
    {"kasa_config", KEY_REFUSE_IF_SET, "KaSA adds a singular-value scaling that is not merged"},
    {"monteclora_config", KEY_REFUSE_IF_SET, "MonteCLoRA's sampled adapters are not supported"},
    {"velora_config", KEY_REFUSE_IF_SET, "VeLoRA is not supported"},
    {"enable_lora", KEY_REFUSE_IF_SET, "old peft MergedLinear adapters are not supported"},
};

/* init_lora_weights values that leave the base weights untouched. PiSSA, OLoRA,
 * CorDA, LoftQ and LoRA-GA subtract their initial B·A from the base, so their
 * adapters only fit the modified base unless converted when saved (peft then
 * writes init_lora_weights = true). */
static const char *const INIT_OK[] = {"gaussian", "eva", "orthogonal"};

static char *dup_str(const flm_json *v) { return flm_strndup(v->str, v->len); }

/* Reads a JSON list of strings (or one string when allow_string) into names/re. */
static int read_name_list(const flm_json *v, const char *key, char ***names, size_t *n, pcre2_code **re,
                          const char *cfg) {
    if (!v || v->type == JSON_NULL) return FLM_OK;
    if (v->type == JSON_STRING) {
        char what[256];
        snprintf(what, sizeof what, "%s: %s", cfg, key);
        *names = flm_calloc(1, sizeof **names);
        if (!*names || !((*names)[0] = dup_str(v))) return FLM_ERR_NOMEM;
        *n = 1;
        return compile_re((*names)[0], what, re);
    }
    if (v->type != JSON_ARRAY) return flm_fail(FLM_ERR_FORMAT, "%s: %s must be a list of module names or a regex string", cfg, key);
    *names = flm_calloc(v->len ? v->len : 1, sizeof **names);
    if (!*names) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < v->len; i++) {
        const flm_json *e = &v->items[i];
        if (e->type != JSON_STRING) return flm_fail(FLM_ERR_FORMAT, "%s: %s[%zu] is not a string", cfg, key, i);
        if (!((*names)[i] = dup_str(e))) return FLM_ERR_NOMEM;
        (*n)++;
    }
    return FLM_OK;
}

static int read_patterns(const flm_json *v, const char *key, lora_pattern **out, size_t *n, bool integer, const char *cfg) {
    if (!v || v->type == JSON_NULL) return FLM_OK;
    if (v->type != JSON_OBJECT) return flm_fail(FLM_ERR_FORMAT, "%s: %s must be an object", cfg, key);
    *out = flm_calloc(v->len ? v->len : 1, sizeof **out);
    if (!*out) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < v->len; i++) {
        const flm_json *e = &v->items[i];
        lora_pattern *p = &(*out)[i];
        if (e->type != JSON_NUMBER || (integer && (!e->is_int || e->number < 1 || e->number > LORA_MAX_RANK)) ||
            !(e->number > 0) || !isfinite(e->number))
            return flm_fail(FLM_ERR_FORMAT, "%s: %s[\"%s\"] must be a positive %s", cfg, key, e->key,
                            integer ? "integer rank" : "number");
        p->value = e->number;
        if (!(p->key = flm_strdup(e->key))) return FLM_ERR_NOMEM;
        (*n)++;
        strbuf sb;
        flm_sb_init(&sb);
        flm_sb_printf(&sb, "(.*\\.)?(%s)$", e->key);
        if (sb.oom) return flm_fail(FLM_ERR_NOMEM, "out of memory");
        char what[256];
        snprintf(what, sizeof what, "%s: %s key", cfg, key);
        int rc = compile_re(flm_sb_cstr(&sb), what, &p->re);
        flm_sb_free(&sb);
        if (rc) return rc;
    }
    return FLM_OK;
}

static int read_config(flm_lora *l, const char *cfg) {
    flm_json_doc *doc = flm_json_parse_file(cfg);
    if (!doc) return FLM_ERR_FORMAT;
    const flm_json *root = flm_json_root(doc);
    int rc = FLM_OK;
    if (root->type != JSON_OBJECT) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: not a JSON object", cfg);
        goto done;
    }
    /* unknown or unsupported options first, so the message names the real cause */
    for (size_t i = 0; i < root->len; i++) {
        const flm_json *m = &root->items[i];
        size_t k = 0, nk = sizeof CONFIG_KEYS / sizeof *CONFIG_KEYS;
        while (k < nk && strcmp(CONFIG_KEYS[k].key, m->key) != 0) k++;
        if (k == nk) {
            if (json_is_set(m)) {
                rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: option \"%s\" is set and not known to fieldlm; refusing rather than risk merging wrong weights", cfg, m->key);
                goto done;
            }
        } else if (CONFIG_KEYS[k].kind == KEY_REFUSE_IF_SET && json_is_set(m)) {
            rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: \"%s\" is set: not supported (%s)", cfg, m->key, CONFIG_KEYS[k].why);
            goto done;
        }
    }
    const char *type = flm_json_string(flm_json_get(root, "peft_type"), NULL);
    if (!type) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: no \"peft_type\" (is this a PEFT adapter config?)", cfg);
        goto done;
    }
    if (strcmp(type, "LORA") != 0) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: peft_type is \"%s\"; only LORA adapters are supported", cfg, type);
        goto done;
    }
    const char *bias = flm_json_string(flm_json_get(root, "bias"), "none");
    if (strcmp(bias, "none") != 0) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: bias is \"%s\": not supported (the adapter trains the base biases too); only \"none\"", cfg, bias);
        goto done;
    }
    const flm_json *init = flm_json_get(root, "init_lora_weights");
    if (init && init->type == JSON_STRING) {
        bool ok = false;
        for (size_t i = 0; i < sizeof INIT_OK / sizeof *INIT_OK; i++) ok |= strcmp(init->str, INIT_OK[i]) == 0;
        if (!ok) {
            rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: init_lora_weights is \"%s\": this initialisation changes the base weights, so the adapter only fits "
                          "the modified base; save it with peft's path_initial_model_for_weight_conversion to get a plain LoRA", cfg, init->str);
            goto done;
        }
    } else if (init && init->type != JSON_BOOL && init->type != JSON_NULL) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: init_lora_weights must be a boolean or a string", cfg);
        goto done;
    }
    if (json_is_set(flm_json_get(root, "loftq_config"))) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: loftq_config is set: LoftQ adapters correct a quantized base, not the original weights", cfg);
        goto done;
    }
    const flm_json *r = flm_json_get(root, "r");
    if (r && r->type != JSON_NULL && (r->type != JSON_NUMBER || !r->is_int || r->number < 1 || r->number > LORA_MAX_RANK)) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: r must be a positive integer", cfg);
        goto done;
    }
    l->r = (int)flm_json_int(r, PEFT_DEFAULT_R);
    const flm_json *alpha = flm_json_get(root, "lora_alpha");
    if (alpha && alpha->type != JSON_NULL && (alpha->type != JSON_NUMBER || !(alpha->number > 0) || !isfinite(alpha->number))) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: lora_alpha must be a positive number", cfg);
        goto done;
    }
    l->alpha = flm_json_number(alpha, PEFT_DEFAULT_ALPHA);
    l->rslora = flm_json_bool(flm_json_get(root, "use_rslora"), false);
    l->fifo = flm_json_bool(flm_json_get(root, "fan_in_fan_out"), false);
    const char *s = flm_json_string(flm_json_get(root, "base_model_name_or_path"), NULL);
    if (s && !(l->base_model = flm_strdup(s))) { rc = FLM_ERR_NOMEM; goto done; }
    s = flm_json_string(flm_json_get(root, "peft_version"), NULL);
    if (s && !(l->peft_version = flm_strdup(s))) { rc = FLM_ERR_NOMEM; goto done; }

    const flm_json *tm = flm_json_get(root, "target_modules");
    if (!tm || tm->type == JSON_NULL) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: no target_modules", cfg);
        goto done;
    }
    if (tm->type == JSON_STRING && strcasecmp(tm->str, "all-linear") == 0) {
        l->all_linear = true;
        if (!(l->targets = flm_calloc(1, sizeof *l->targets)) || !(l->targets[0] = dup_str(tm))) { rc = FLM_ERR_NOMEM; goto done; }
        l->ntargets = 1;
    } else if ((rc = read_name_list(tm, "target_modules", &l->targets, &l->ntargets, &l->target_re, cfg))) {
        goto done;
    }
    if ((rc = read_name_list(flm_json_get(root, "exclude_modules"), "exclude_modules", &l->excludes, &l->nexcludes, &l->exclude_re, cfg)))
        goto done;

    /* layers_to_transform: an int or a list of ints; layers_pattern: str or list */
    const flm_json *lt = flm_json_get(root, "layers_to_transform");
    if (lt && lt->type != JSON_NULL && !(lt->type == JSON_ARRAY && lt->len == 0)) {
        size_t n = lt->type == JSON_ARRAY ? lt->len : 1;
        if (!(l->layers = flm_calloc(n, sizeof *l->layers))) { rc = FLM_ERR_NOMEM; goto done; }
        for (size_t i = 0; i < n; i++) {
            const flm_json *e = lt->type == JSON_ARRAY ? &lt->items[i] : lt;
            if (e->type != JSON_NUMBER || !e->is_int) {
                rc = flm_fail(FLM_ERR_FORMAT, "%s: layers_to_transform must be an integer or a list of integers", cfg);
                goto done;
            }
            l->layers[l->nlayers++] = (int64_t)e->number;
        }
        const flm_json *lp = flm_json_get(root, "layers_pattern");
        size_t np = !lp || lp->type == JSON_NULL ? 0 : lp->type == JSON_ARRAY ? lp->len : (lp->type == JSON_STRING && lp->len) ? 1 : 0;
        if (!(l->layer_res = flm_calloc(np ? np : 1, sizeof *l->layer_res))) { rc = FLM_ERR_NOMEM; goto done; }
        for (size_t i = 0; i < (np ? np : 1); i++) {
            strbuf sb;
            flm_sb_init(&sb);
            if (!np) {
                flm_sb_puts(&sb, ".*\\.[^.]*\\.(\\d+)\\.");
            } else {
                const flm_json *e = lp->type == JSON_ARRAY ? &lp->items[i] : lp;
                if (e->type != JSON_STRING) {
                    flm_sb_free(&sb);
                    rc = flm_fail(FLM_ERR_FORMAT, "%s: layers_pattern must be a string or a list of strings", cfg);
                    goto done;
                }
                flm_sb_printf(&sb, ".*\\.%s\\.(\\d+)\\.", e->str);
            }
            if (sb.oom) { flm_sb_free(&sb); rc = FLM_ERR_NOMEM; goto done; }
            char what[256];
            snprintf(what, sizeof what, "%s: layers_pattern", cfg);
            rc = compile_re(flm_sb_cstr(&sb), what, &l->layer_res[i]);
            flm_sb_free(&sb);
            if (rc) goto done;
            l->nlayer_res++;
        }
    }
    if ((rc = read_patterns(flm_json_get(root, "rank_pattern"), "rank_pattern", &l->rank_pat, &l->nrank_pat, true, cfg))) goto done;
    if ((rc = read_patterns(flm_json_get(root, "alpha_pattern"), "alpha_pattern", &l->alpha_pat, &l->nalpha_pat, false, cfg))) goto done;
done:
    flm_json_free(doc);
    return rc;
}

/* ------------------------------------------------------------------ matching */

static bool ends_with_dot(const char *name, const char *suffix) {
    size_t n = strlen(name), m = strlen(suffix);
    return n > m && name[n - m - 1] == '.' && memcmp(name + n - m, suffix, m) == 0;
}

/* List-or-regex module selection as in peft's check_target_module_exists:
 * regex → full match; list → equal to an entry or ends with "." + entry. */
static int names_select(char *const *names, size_t n, const pcre2_code *re, const char *module) {
    if (re) return re_match(re, module, true, NULL, 0) > 0 ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(module, names[i]) == 0 || ends_with_dot(module, names[i])) return 1;
    return 0;
}

/* 1 when the config targets this module name (no ".weight"), 0 if not, <0 error. */
static int config_selects(const flm_lora *l, const char *module) {
    if (l->nexcludes && names_select(l->excludes, l->nexcludes, l->exclude_re, module)) return 0;
    if (l->all_linear) return 1;
    if (l->target_re) return re_match(l->target_re, module, true, NULL, 0) > 0 ? 1 : 0;
    for (size_t i = 0; i < l->ntargets; i++)
        if (strcmp(module, l->targets[i]) == 0) return 1; /* exact: layers_to_transform not applied */
    bool found = false;
    for (size_t i = 0; i < l->ntargets && !found; i++) found = ends_with_dot(module, l->targets[i]);
    if (!found || !l->nlayers) return found;
    char idx[32] = "";
    bool got = false;
    for (size_t i = 0; i < l->nlayer_res && !got; i++) {
        int rc = re_match(l->layer_res[i], module, false, idx, sizeof idx);
        if (rc < 0) return rc;
        got = rc > 0;
    }
    if (!got) return 0;
    int64_t layer = strtoll(idx, NULL, 10);
    for (size_t i = 0; i < l->nlayers; i++)
        if (l->layers[i] == layer) return 1;
    return 0;
}

/* peft's get_pattern_key: the first key (config order) with
 * re.match(r"(.*\.)?(key)$", module); else an exact key; else none. */
static int pattern_lookup(const lora_pattern *p, size_t n, const char *module, double *value) {
    for (size_t i = 0; i < n; i++) {
        int rc = re_match(p[i].re, module, false, NULL, 0);
        if (rc < 0) return rc;
        if (rc > 0) { *value = p[i].value; return 1; }
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].key, module) == 0) { *value = p[i].value; return 1; }
    return 0;
}

/* ------------------------------------------------------------------ open */

typedef struct {
    const char *module;     /* points into the tensor name (not terminated) */
    size_t len;
    bool is_b;
    const flm_tensor *t;
} tensor_ref;

static int cmp_ref(const void *a, const void *b) {
    const tensor_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->module, y->module, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (int)x->is_b - (int)y->is_b;
}

static int cmp_mod(const void *a, const void *b) {
    return strcmp(((const lora_module *)a)->weight, ((const lora_module *)b)->weight);
}

/* Classifies one adapter tensor name. */
static int parse_tensor_name(const flm_tensor *t, const char *path, tensor_ref *ref) {
    static const struct { const char *suffix; bool is_b; } SUFFIX[] = {
        {".lora_A.weight", false},
        {".lora_B.weight", true},
    };
    const char *name = t->name;
    size_t n = strlen(name), pl = strlen(TENSOR_PREFIX);
    if (strstr(name, "lora_embedding_"))
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s: LoRA on embedding layers is not supported", path, name);
    if (strstr(name, "lora_magnitude_vector"))
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s: DoRA adapters are not supported", path, name);
    for (size_t i = 0; i < sizeof SUFFIX / sizeof *SUFFIX; i++) {
        size_t sl = strlen(SUFFIX[i].suffix);
        if (n > pl + sl && strncmp(name, TENSOR_PREFIX, pl) == 0 && strcmp(name + n - sl, SUFFIX[i].suffix) == 0) {
            ref->module = name + pl;
            ref->len = n - pl - sl;
            ref->is_b = SUFFIX[i].is_b;
            ref->t = t;
            return FLM_OK;
        }
    }
    return flm_fail(FLM_ERR_FORMAT, "%s: unexpected tensor \"%s\" (a LoRA adapter holds base_model.model.<module>.lora_A.weight and .lora_B.weight)", path, name);
}

static int check_ab_tensor(const flm_tensor *t, const char *path) {
    if (t->dtype != FLM_F32 && t->dtype != FLM_F16 && t->dtype != FLM_BF16)
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s has dtype %s; LoRA weights must be f32, f16 or bf16", path, t->name, flm_dtype_get(t->dtype)->name);
    if (t->ndim != 2) {
        char sh[96];
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s has shape %s; only 2-D (Linear) LoRA weights are supported", path, t->name,
                        flm_shape_str(t->shape, t->ndim, sh, sizeof sh));
    }
    return FLM_OK;
}

static int read_weights(flm_lora *l, const char *path) {
    size_t nt = flm_st_count(l->st);
    tensor_ref *refs = flm_calloc(nt ? nt : 1, sizeof *refs);
    if (!refs) return FLM_ERR_NOMEM;
    int rc = FLM_OK;
    for (size_t i = 0; i < nt; i++) {
        const flm_tensor *t = flm_st_tensor_at(l->st, i);
        if ((rc = parse_tensor_name(t, path, &refs[i])) || (rc = check_ab_tensor(t, path))) goto done;
    }
    if (nt == 0) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: the adapter holds no tensors", path);
        goto done;
    }
    qsort(refs, nt, sizeof *refs, cmp_ref);
    if (!(l->mods = flm_calloc(nt, sizeof *l->mods))) { rc = FLM_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < nt;) {
        size_t j = i;
        while (j < nt && refs[j].len == refs[i].len && memcmp(refs[j].module, refs[i].module, refs[i].len) == 0) j++;
        int len = (int)refs[i].len;
        const char *mod = refs[i].module;
        if (j - i != 2 || refs[i].is_b || !refs[i + 1].is_b) {
            bool has_b = refs[j - 1].is_b, has_a = !refs[i].is_b;
            rc = flm_fail(FLM_ERR_FORMAT, "%s: module %.*s has %s", path, len, mod,
                          j - i > 2 ? "duplicate LoRA tensors" : has_a && !has_b ? "lora_A but no lora_B" : "lora_B but no lora_A");
            goto done;
        }
        lora_module *m = &l->mods[l->nmods];
        m->A = refs[i].t;
        m->B = refs[i + 1].t;
        strbuf sb;
        flm_sb_init(&sb);
        flm_sb_printf(&sb, "%.*s.weight", len, mod);
        if (sb.oom) { flm_sb_free(&sb); rc = FLM_ERR_NOMEM; goto done; }
        m->weight = flm_sb_take(&sb);
        l->nmods++;
        char *module = flm_strndup(mod, (size_t)len);
        if (!module) { rc = FLM_ERR_NOMEM; goto done; }
        int sel = config_selects(l, module);
        double rank = l->r, alpha = l->alpha;
        int rr = sel < 0 ? sel : pattern_lookup(l->rank_pat, l->nrank_pat, module, &rank);
        int ra = rr < 0 ? rr : pattern_lookup(l->alpha_pat, l->nalpha_pat, module, &alpha);
        free(module);
        if (sel < 0 || rr < 0 || ra < 0) { rc = sel < 0 ? sel : rr < 0 ? rr : ra; goto done; }
        if (!sel) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: module %.*s has LoRA weights but adapter_config.json's target_modules does not select it", path, len, mod);
            goto done;
        }
        m->rank = (int)rank;
        int64_t ra_ = m->A->shape[0], rb = m->B->shape[1];
        if (ra_ != m->rank || rb != m->rank) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: module %.*s: rank from the config is %d but lora_A is [%lld, %lld] and lora_B is [%lld, %lld]",
                          path, len, mod, m->rank, (long long)m->A->shape[0], (long long)m->A->shape[1],
                          (long long)m->B->shape[0], (long long)m->B->shape[1]);
            goto done;
        }
        double base = l->rslora ? alpha / sqrt(rank) : alpha / rank;
        m->scale = (float)((double)l->user_scale * base);
        i = j;
    }
    qsort(l->mods, l->nmods, sizeof *l->mods, cmp_mod);
done:
    free(refs);
    return rc;
}

int flm_lora_open(const char *dir, float user_scale, flm_lora **out) {
    *out = NULL;
    if (!dir || !*dir) return flm_fail(FLM_ERR_ARG, "LoRA adapter: empty directory name");
    if (!isfinite(user_scale)) return flm_fail(FLM_ERR_ARG, "LoRA adapter %s: the scale must be a finite number", dir);
    if (!flm_is_dir(dir)) return flm_fail(FLM_ERR_IO, "LoRA adapter %s: not a directory", dir);
    char *cfg = flm_path_join(dir, ADAPTER_CONFIG);
    char *wts = flm_path_join(dir, ADAPTER_WEIGHTS);
    char *pkl = flm_path_join(dir, ADAPTER_PICKLE);
    flm_lora *l = flm_calloc(1, sizeof *l);
    int rc = FLM_OK;
    if (!cfg || !wts || !pkl || !l) { rc = FLM_ERR_NOMEM; goto done; }
    l->user_scale = user_scale;
    if (!(l->dir = flm_strdup(dir))) { rc = FLM_ERR_NOMEM; goto done; }
    if (!flm_file_exists(cfg)) {
        rc = flm_fail(FLM_ERR_IO, "LoRA adapter %s: no %s (a PEFT adapter folder holds %s and %s)", dir, ADAPTER_CONFIG, ADAPTER_CONFIG, ADAPTER_WEIGHTS);
        goto done;
    }
    if (!flm_file_exists(wts)) {
        if (flm_file_exists(pkl))
            rc = flm_fail(FLM_ERR_UNSUPPORTED, "LoRA adapter %s: only %s found, a Python pickle, which fieldlm does not read (unpickling can run "
                          "arbitrary code). Convert it: load it with peft (PeftModel.from_pretrained) and call "
                          "save_pretrained(DIR, safe_serialization=True) to write %s", dir, ADAPTER_PICKLE, ADAPTER_WEIGHTS);
        else
            rc = flm_fail(FLM_ERR_IO, "LoRA adapter %s: no %s", dir, ADAPTER_WEIGHTS);
        goto done;
    }
    if ((rc = read_config(l, cfg))) goto done;
    if ((rc = flm_st_open(wts, &l->st))) goto done;
    struct stat sb;
    if (stat(wts, &sb) != 0) { rc = flm_fail(FLM_ERR_IO, "LoRA adapter %s: cannot stat %s", dir, ADAPTER_WEIGHTS); goto done; }
    l->dev = sb.st_dev;
    l->ino = sb.st_ino;
    rc = read_weights(l, wts);
done:
    free(cfg);
    free(wts);
    free(pkl);
    if (rc) flm_lora_close(l);
    else *out = l;
    return rc;
}

static void free_names(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void free_patterns(lora_pattern *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        pcre2_code_free(p[i].re);
    }
    free(p);
}

void flm_lora_close(flm_lora *l) {
    if (!l) return;
    for (size_t i = 0; i < l->nmods; i++) free(l->mods[i].weight);
    free(l->mods);
    flm_st_close(l->st);
    free(l->dir);
    free(l->base_model);
    free(l->peft_version);
    free_names(l->targets, l->ntargets);
    pcre2_code_free(l->target_re);
    free_names(l->excludes, l->nexcludes);
    pcre2_code_free(l->exclude_re);
    free(l->layers);
    for (size_t i = 0; i < l->nlayer_res; i++) pcre2_code_free(l->layer_res[i]);
    free(l->layer_res);
    free_patterns(l->rank_pat, l->nrank_pat);
    free_patterns(l->alpha_pat, l->nalpha_pat);
    free(l);
}

/* ------------------------------------------------------------------ lookups */

static const lora_module *find_module(const flm_lora *l, const char *weight) {
    if (!l || !weight) return NULL;
    size_t lo = 0, hi = l->nmods;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->mods[mid].weight, weight);
        if (c == 0) return &l->mods[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

bool flm_lora_targets(const flm_lora *l, const char *name) { return find_module(l, name) != NULL; }

/* Expected base shape for a module: [out, in], or [in, out] with fan_in_fan_out. */
static void expected_shape(const flm_lora *l, const lora_module *m, int64_t shape[2]) {
    int64_t out = m->B->shape[0], in = m->A->shape[1];
    shape[0] = l->fifo ? in : out;
    shape[1] = l->fifo ? out : in;
}

static int shape_error(const flm_lora *l, const lora_module *m, const int64_t *got, int ndim) {
    int64_t want[2];
    expected_shape(l, m, want);
    char ws[64], gs[96];
    return flm_fail(FLM_ERR_FORMAT, "LoRA adapter %s: module %s: the adapter expects a base weight of shape %s (lora_B %lld rows, lora_A %lld columns%s) "
                    "but the base has %s: the adapter was made for a different base model",
                    l->dir, m->weight, flm_shape_str(want, 2, ws, sizeof ws), (long long)m->B->shape[0], (long long)m->A->shape[1],
                    l->fifo ? ", fan_in_fan_out" : "", flm_shape_str(got, ndim, gs, sizeof gs));
}

typedef struct { const flm_lora_base_weight *w; } base_ref;

static int cmp_base(const void *a, const void *b) {
    return strcmp(((const base_ref *)a)->w->name, ((const base_ref *)b)->w->name);
}

int flm_lora_check_base(const flm_lora *l, const flm_lora_base_weight *base, size_t n) {
    if (!l || (!base && n)) return flm_fail(FLM_ERR_ARG, "flm_lora_check_base: NULL argument");
    base_ref *idx = flm_calloc(n ? n : 1, sizeof *idx);
    if (!idx) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) idx[i].w = &base[i];
    qsort(idx, n, sizeof *idx, cmp_base);
    int rc = FLM_OK;
    for (size_t i = 0; i < l->nmods && !rc; i++) {
        const lora_module *m = &l->mods[i];
        flm_lora_base_weight key = {.name = m->weight};
        base_ref kr = {&key};
        const base_ref *hit = bsearch(&kr, idx, n, sizeof *idx, cmp_base);
        if (!hit) {
            rc = flm_fail(FLM_ERR_FORMAT, "LoRA adapter %s: module %s (lora_A %lld×%lld, lora_B %lld×%lld) is not in the base model: "
                          "the adapter was made for a different base model", l->dir, m->weight,
                          (long long)m->A->shape[0], (long long)m->A->shape[1], (long long)m->B->shape[0], (long long)m->B->shape[1]);
            break;
        }
        int64_t want[2];
        expected_shape(l, m, want);
        const flm_lora_base_weight *w = hit->w;
        if (w->ndim != 2 || w->shape[0] != want[0] || w->shape[1] != want[1]) rc = shape_error(l, m, w->shape, w->ndim);
    }
    /* base weights the config selects but the adapter has no weights for */
    for (size_t i = 0; i < n && !rc && !l->all_linear; i++) {
        const flm_lora_base_weight *w = &base[i];
        size_t len = strlen(w->name);
        if (w->ndim != 2 || len <= 7 || strcmp(w->name + len - 7, ".weight") != 0 || find_module(l, w->name)) continue;
        char *module = flm_strndup(w->name, len - 7);
        if (!module) { rc = FLM_ERR_NOMEM; break; }
        int sel = config_selects(l, module);
        if (sel < 0) rc = sel;
        else if (sel)
            rc = flm_fail(FLM_ERR_FORMAT, "LoRA adapter %s: the base model has %s, which target_modules selects, but the adapter has no "
                          "lora_A/lora_B for it: the adapter was made for a different base model", l->dir, module);
        free(module);
    }
    free(idx);
    return rc;
}

int flm_lora_check_base_st(const flm_lora *l, const flm_st_file *base) {
    if (!l || !base) return flm_fail(FLM_ERR_ARG, "flm_lora_check_base_st: NULL argument");
    size_t n = flm_st_count(base);
    flm_lora_base_weight *w = flm_calloc(n ? n : 1, sizeof *w);
    if (!w) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const flm_tensor *t = flm_st_tensor_at(base, i);
        w[i].name = t->name;
        w[i].ndim = t->ndim;
        memcpy(w[i].shape, t->shape, sizeof w[i].shape);
    }
    int rc = flm_lora_check_base(l, w, n);
    free(w);
    return rc;
}

/* ------------------------------------------------------------------ merge */

/* Converts a 2-D adapter tensor to float32 (transposed when `transpose`) and
 * checks every value is finite. */
static int to_f32(const flm_lora *l, const lora_module *m, const flm_tensor *t, bool transpose, float *dst) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    size_t n = (size_t)(rows * cols);
    const flm_dtype_info *di = flm_dtype_get(t->dtype);
    if (!transpose) {
        di->to_float(t->data, dst, n);
    } else {
        float *tmp = flm_malloc(n * sizeof *tmp);
        if (!tmp) return FLM_ERR_NOMEM;
        di->to_float(t->data, tmp, n);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = tmp[i * cols + j];
        free(tmp);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) return flm_fail(FLM_ERR_FORMAT, "LoRA adapter %s: module %s: %s holds a non-finite value", l->dir, m->weight, t->name);
    return FLM_OK;
}

/* The merge of one output row is the kernel table's lora_row (kernels.h: the spec;
 * kernels_ref.c: the reference):
 *   acc[c] = fma(u[k], V[k][c], acc[c])   for k = 0..r-1, acc starting at 0,
 *            each step one correctly rounded float32 fused multiply-add
 *   W[c]   = W[c] + (float)(acc[c] · scale)
 * u and V are this row's factors (B's row and A without fan_in_fan_out; A's
 * column and Bᵀ with it). This reproduces torch's CPU float32 B @ A (an FMA
 * chain over the rank) bit for bit on the micro fixture, where plain float32
 * multiply-then-add and a double sum each miss by up to 7.5e-9 (docs/LORA.md).
 * fmaf is correctly rounded by IEEE 754, so every table (scalar, avx2, avx512,
 * neon) gives the same bits; only the speed differs. flm_lora_apply uses the table
 * the dispatcher selects (flm_kernels_best(), so FLM_KERNELS reaches the merge). */
const flm_kernels *flm_lora_kernels(void) { return flm_kernels_best(); }

int flm_lora_apply(const flm_lora *l, const char *name, float *W, int64_t rows, int64_t cols) {
    return flm_lora_apply_with(l, flm_lora_kernels(), name, W, rows, cols);
}

/* Rows of a merge split over a pool: thread ith merges its contiguous share of the
 * rows with its own acc scratch. Each row's result depends only on that row, so the
 * bits are the same for any number of threads. */
typedef struct {
    const flm_kernels *k;
    const float *U, *V;
    float *W, *acc; /* acc: n_acc rows of cols floats, one per thread */
    int n_acc, r;
    int64_t rows, cols;
    float scale;
} merge_job;

static void merge_part(void *ctx, int ith, int nth) {
    const merge_job *j = ctx;
    int64_t per = (j->rows + nth - 1) / nth, i0 = (int64_t)ith * per, i1 = i0 + per < j->rows ? i0 + per : j->rows;
    float *acc = j->acc + (size_t)(ith < j->n_acc ? ith : 0) * (size_t)j->cols;
    for (int64_t i = i0; i < i1; i++)
        j->k->lora_row(j->U + (size_t)i * (size_t)j->r, j->V, j->r, j->cols, j->scale, acc, j->W + (size_t)i * (size_t)j->cols);
}

static int apply(const flm_lora *l, const flm_kernels *k, const char *name, float *W, int64_t rows, int64_t cols, flm_pool *pool);

int flm_lora_apply_with(const flm_lora *l, const flm_kernels *k, const char *name, float *W, int64_t rows, int64_t cols) {
    return apply(l, k, name, W, rows, cols, NULL);
}

int flm_lora_apply_pool(const flm_lora *l, const char *name, float *W, int64_t rows, int64_t cols, flm_pool *pool) {
    return apply(l, flm_lora_kernels(), name, W, rows, cols, pool);
}

static int apply(const flm_lora *l, const flm_kernels *k, const char *name, float *W, int64_t rows, int64_t cols, flm_pool *pool) {
    if (!l || !name) return flm_fail(FLM_ERR_ARG, "flm_lora_apply: NULL argument");
    if (!k || !k->lora_row) return flm_fail(FLM_ERR_ARG, "flm_lora_apply: no kernel table with a LoRA merge row");
    const lora_module *m = find_module(l, name);
    if (!m) return FLM_OK;
    int64_t want[2], got[2] = {rows, cols};
    expected_shape(l, m, want);
    if (rows != want[0] || cols != want[1]) return shape_error(l, m, got, 2);
    if (!W) return flm_fail(FLM_ERR_ARG, "flm_lora_apply: NULL weight for %s", name);
    const int r = m->rank;
    /* factors laid out so each output row reads u (r values) and V (r × cols) */
    float *V = flm_malloc((size_t)r * (size_t)cols * sizeof *V);      /* A, or Bᵀ */
    float *U = flm_malloc((size_t)r * (size_t)rows * sizeof *U);      /* B, or Aᵀ: row i at U + i·r */
    int nth = pool ? flm_pool_size(pool) : 1;
    float *acc = flm_malloc((size_t)nth * (size_t)cols * sizeof *acc);
    int rc = FLM_OK;
    if (!V || !U || !acc) { rc = FLM_ERR_NOMEM; goto done; }
    if (!l->fifo) {
        /* W [out, in]: row i += scale · Σ_k B[i][k] · A[k][:] */
        if ((rc = to_f32(l, m, m->A, false, V)) || (rc = to_f32(l, m, m->B, false, U))) goto done;
    } else {
        /* W [in, out] = (B·A)ᵀ: row j += scale · Σ_k A[k][j] · Bᵀ[k][:] */
        if ((rc = to_f32(l, m, m->B, true, V)) || (rc = to_f32(l, m, m->A, true, U))) goto done;
    }
    merge_job j = {k, U, V, W, acc, nth, r, rows, cols, m->scale};
    if (pool) flm_pool_run(pool, merge_part, &j);
    else merge_part(&j, 0, 1);
done:
    free(V);
    free(U);
    free(acc);
    return rc;
}

/* ------------------------------------------------------------------ lists */

int flm_lora_check_distinct(flm_lora *const *ad, int n) {
    for (int j = 1; j < n; j++)
        for (int i = 0; i < j; i++) {
            const flm_lora *a = ad[i], *b = ad[j];
            if (!a || !b || a->dev != b->dev || a->ino != b->ino) continue;
            /* W + s1·BA + s2·BA is one merge at scale s1 + s2 */
            double sum = (double)a->user_scale + (double)b->user_scale;
            if (!strcmp(a->dir, b->dir))
                return flm_fail(FLM_ERR_ARG, "LoRA adapter %s is given twice (adapters %d and %d): it would be merged twice. "
                                "Give it once; if a larger effect was meant, give it once with the summed scale: --lora %s:%g",
                                a->dir, i + 1, j + 1, a->dir, sum);
            return flm_fail(FLM_ERR_ARG, "LoRA adapters %d (%s) and %d (%s) are the same adapter (the same %s): it would be "
                            "merged twice. Give it once; if a larger effect was meant, give it once with the summed scale: "
                            "--lora %s:%g", i + 1, a->dir, j + 1, b->dir, ADAPTER_WEIGHTS, a->dir, sum);
        }
    return FLM_OK;
}

bool flm_lora_is_adapter_dir(const char *dir, char **base_model) {
    if (base_model) *base_model = NULL;
    if (!dir || !flm_is_dir(dir)) return false;
    char *cfg = flm_path_join(dir, ADAPTER_CONFIG);
    bool yes = cfg && flm_file_exists(cfg);
    if (yes && base_model) {
        flm_json_doc *d = flm_json_parse_file(cfg);
        const char *s = d ? flm_json_string(flm_json_get(flm_json_root(d), "base_model_name_or_path"), NULL) : NULL;
        if (s && *s) *base_model = flm_strdup(s);
        flm_json_free(d);
        flm_clear_error(); /* a config that does not parse is reported when the adapter is opened */
    }
    free(cfg);
    return yes;
}

/* ------------------------------------------------------------------ spec */

/* A plain decimal: [+-]digits[.digits][(e|E)[+-]digits] or [+-].digits[...]. */
static bool is_decimal(const char *s) {
    if (*s == '+' || *s == '-') s++;
    size_t d = 0;
    while (*s >= '0' && *s <= '9') s++, d++;
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') s++, d++;
    }
    if (!d) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        size_t e = 0;
        while (*s >= '0' && *s <= '9') s++, e++;
        if (!e) return false;
    }
    return *s == 0;
}

int flm_lora_parse_spec(const char *spec, char **dir_out, float *scale_out) {
    *dir_out = NULL;
    *scale_out = 1.0f;
    if (!spec) return flm_fail(FLM_ERR_ARG, "LoRA adapter: no argument");
    const char *colon = strrchr(spec, ':');
    size_t dlen = strlen(spec);
    float scale = 1.0f;
    if (colon && is_decimal(colon + 1)) {
        double v = strtod(colon + 1, NULL);
        if (!isfinite(v) || fabs(v) > 3.4e38)
            return flm_fail(FLM_ERR_ARG, "LoRA adapter \"%s\": scale %s is out of range", spec, colon + 1);
        scale = (float)v;
        dlen = (size_t)(colon - spec);
    }
    if (dlen == 0) return flm_fail(FLM_ERR_ARG, "LoRA adapter \"%s\": empty directory (expected ADAPTER_DIR[:SCALE])", spec);
    if (!(*dir_out = flm_strndup(spec, dlen))) return FLM_ERR_NOMEM;
    *scale_out = scale;
    return FLM_OK;
}

/* ------------------------------------------------------------------ info */

const char *flm_lora_dir(const flm_lora *l) { return l->dir; }
const char *flm_lora_base_model(const flm_lora *l) { return l->base_model; }
const char *flm_lora_peft_version(const flm_lora *l) { return l->peft_version; }
int flm_lora_rank(const flm_lora *l) { return l->r; }
double flm_lora_alpha(const flm_lora *l) { return l->alpha; }
bool flm_lora_rslora(const flm_lora *l) { return l->rslora; }
bool flm_lora_fan_in_fan_out(const flm_lora *l) { return l->fifo; }
float flm_lora_user_scale(const flm_lora *l) { return l->user_scale; }
float flm_lora_scale(const flm_lora *l) {
    return (float)((double)l->user_scale * (l->rslora ? l->alpha / sqrt((double)l->r) : l->alpha / l->r));
}
float flm_lora_module_scale(const flm_lora *l, const char *name) {
    const lora_module *m = find_module(l, name);
    return m ? m->scale : 0.0f;
}
int flm_lora_module_rank(const flm_lora *l, const char *name) {
    const lora_module *m = find_module(l, name);
    return m ? m->rank : 0;
}
bool flm_lora_target_is_regex(const flm_lora *l) { return l->target_re != NULL; }
size_t flm_lora_target_count(const flm_lora *l) { return l->ntargets; }
const char *flm_lora_target_at(const flm_lora *l, size_t i) { return i < l->ntargets ? l->targets[i] : NULL; }
size_t flm_lora_module_count(const flm_lora *l) { return l->nmods; }
const char *flm_lora_module_at(const flm_lora *l, size_t i) { return i < l->nmods ? l->mods[i].weight : NULL; }
