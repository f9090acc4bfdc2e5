/* hf_config.c — config.json → flm_config, for both transformers layouts:
 * 4.x (top-level rope_theta, torch_dtype) and 5.x (rope_parameters.rope_theta, dtype).
 * Also the range check of the float hyper-parameters shared with packages. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "model/model.h"

static int get_int(const flm_json *root, const char *key, int *out, bool required, const char *what) {
    const flm_json *v = flm_json_get(root, key);
    if (!v || v->type == JSON_NULL) {
        if (required) return flm_fail(FLM_ERR_FORMAT, "%s: missing \"%s\"", what, key);
        return FLM_OK;
    }
    if (v->type != JSON_NUMBER || !v->is_int || v->number < 0 || v->number > 1e9)
        return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer", what, key);
    *out = (int)v->number;
    return FLM_OK;
}

static int get_num(const flm_json *root, const char *key, double *out, const char *what) {
    const flm_json *v = flm_json_get(root, key);
    if (!v || v->type == JSON_NULL) return FLM_OK;
    if (v->type != JSON_NUMBER || !(v->number == v->number)) return flm_fail(FLM_ERR_FORMAT, "%s: \"%s\" must be a number", what, key);
    *out = v->number;
    return FLM_OK;
}

int flm_config_check_positive(double v, const char *what, const char *key) {
    /* the forward pass uses both as float32: a value that is not a normal float
     * would become 0 or inf there (and NaN in every logit) */
    if (isfinite(v) && v >= FLT_MIN && v <= FLT_MAX) return FLM_OK;
    return flm_fail(FLM_ERR_FORMAT, "%s: %s = %g is not allowed (expected a finite number > 0 within float32 range, %g..%g)",
                    what, key, v, (double)FLT_MIN, (double)FLT_MAX);
}

int flm_config_parse(const char *text, size_t len, const char *what, flm_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    flm_json_doc *doc = flm_json_parse(text, len, what);
    if (!doc) return FLM_ERR_FORMAT;
    const flm_json *r = flm_json_root(doc);
    int rc = FLM_OK;
    if (r->type != JSON_OBJECT) { rc = flm_fail(FLM_ERR_FORMAT, "%s: not a JSON object", what); goto done; }
    const char *mt = flm_json_string(flm_json_get(r, "model_type"), NULL);
    if (!mt) { rc = flm_fail(FLM_ERR_FORMAT, "%s: missing \"model_type\"", what); goto done; }
    if (strcmp(mt, "qwen2") != 0) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (fieldlm runs \"qwen2\": Qwen2 and Qwen2.5)", what, mt);
        goto done;
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    if ((rc = get_int(r, "vocab_size", &cfg->vocab_size, true, what)) ||
        (rc = get_int(r, "hidden_size", &cfg->hidden_size, true, what)) ||
        (rc = get_int(r, "intermediate_size", &cfg->intermediate_size, true, what)) ||
        (rc = get_int(r, "num_hidden_layers", &cfg->n_layers, true, what)) ||
        (rc = get_int(r, "num_attention_heads", &cfg->n_heads, true, what)))
        goto done;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->max_position_embeddings = 32768;
    if ((rc = get_int(r, "num_key_value_heads", &cfg->n_kv_heads, false, what)) ||
        (rc = get_int(r, "max_position_embeddings", &cfg->max_position_embeddings, false, what)))
        goto done;
    if (cfg->n_heads == 0 || cfg->n_kv_heads == 0 || cfg->hidden_size == 0 || cfg->vocab_size == 0 || cfg->n_layers == 0 || cfg->intermediate_size == 0) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: sizes and head counts must be positive", what);
        goto done;
    }
    if (cfg->n_heads % cfg->n_kv_heads) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what, cfg->n_heads, cfg->n_kv_heads);
        goto done;
    }
    cfg->head_dim = 0;
    if ((rc = get_int(r, "head_dim", &cfg->head_dim, false, what))) goto done;
    if (cfg->head_dim == 0) {
        if (cfg->hidden_size % cfg->n_heads) {
            rc = flm_fail(FLM_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d and head_dim is not given", what, cfg->hidden_size, cfg->n_heads);
            goto done;
        }
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    }
    if (cfg->head_dim % 2) { rc = flm_fail(FLM_ERR_FORMAT, "%s: head_dim %d must be even for rotary embeddings", what, cfg->head_dim); goto done; }
    /* rope: 5.x nests it in rope_parameters (or rope_scaling); 4.x has it top-level. Default 10000 as in transformers. */
    cfg->rope_theta = 10000.0;
    if ((rc = get_num(r, "rope_theta", &cfg->rope_theta, what))) goto done;
    const flm_json *rp = flm_json_get(r, "rope_parameters");
    if (rp && rp->type == JSON_OBJECT) {
        if ((rc = get_num(rp, "rope_theta", &cfg->rope_theta, what))) goto done;
        const char *rt = flm_json_string(flm_json_get(rp, "rope_type"), "default");
        if (strcmp(rt, "default") != 0) { rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: rope_type \"%s\" is not supported (only \"default\")", what, rt); goto done; }
    }
    const flm_json *rs = flm_json_get(r, "rope_scaling");
    if (rs && rs->type == JSON_OBJECT) {
        const char *rt = flm_json_string(flm_json_get(rs, "rope_type"), flm_json_string(flm_json_get(rs, "type"), "default"));
        if (strcmp(rt, "default") != 0) { rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported", what, rt); goto done; }
    }
    if ((rc = flm_config_check_positive(cfg->rope_theta, what, "rope_theta"))) goto done;
    cfg->rms_norm_eps = 1e-6;
    if ((rc = get_num(r, "rms_norm_eps", &cfg->rms_norm_eps, what))) goto done;
    if ((rc = flm_config_check_positive(cfg->rms_norm_eps, what, "rms_norm_eps"))) goto done;
    if (flm_json_bool(flm_json_get(r, "use_sliding_window"), false)) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: use_sliding_window=true is not supported", what);
        goto done;
    }
    const char *act = flm_json_string(flm_json_get(r, "hidden_act"), "silu");
    if (strcmp(act, "silu") != 0) { rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (only silu)", what, act); goto done; }
    /* transformers' default for tie_word_embeddings is true in PretrainedConfig */
    cfg->tie_word_embeddings = flm_json_bool(flm_json_get(r, "tie_word_embeddings"), true);
    cfg->bos_token_id = (int)flm_json_int(flm_json_get(r, "bos_token_id"), -1);
    const flm_json *eos = flm_json_get(r, "eos_token_id");
    if (eos && eos->type == JSON_NUMBER) cfg->eos_token_ids[cfg->n_eos++] = (int)flm_json_int(eos, -1);
    else if (eos && eos->type == JSON_ARRAY)
        for (size_t i = 0; i < eos->len && cfg->n_eos < 8; i++) cfg->eos_token_ids[cfg->n_eos++] = (int)flm_json_int(&eos->items[i], -1);
    const char *dt = flm_json_string(flm_json_get(r, "dtype"), flm_json_string(flm_json_get(r, "torch_dtype"), ""));
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt);
done:
    flm_json_free(doc);
    return rc;
}

int flm_config_load(const char *path, flm_config *cfg) {
    char *text;
    size_t len;
    int rc = flm_read_file(path, &text, &len);
    if (rc != FLM_OK) return rc;
    rc = flm_config_parse(text, len, path, cfg);
    free(text);
    return rc;
}
