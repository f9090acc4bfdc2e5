/* model_hf.c — binds a Hugging Face folder: config.json + model.safetensors, or
 * sharded model-0000K-of-0000N.safetensors with model.safetensors.index.json. Every
 * tensor must be a Qwen2 weight; names, shapes and dtypes are checked against the
 * config. Weights stay in the safetensors mappings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "format/safetensors.h"
#include "model/model.h"
#include "model/model_source.h"

static int hf_open_shards(flm_model_source *src, const char *dir) {
    char *single = flm_path_join(dir, "model.safetensors");
    char *index = flm_path_join(dir, "model.safetensors.index.json");
    int rc = FLM_OK;
    if (!single || !index) { rc = FLM_ERR_NOMEM; goto done; }
    if (flm_file_exists(single)) {
        src->shards = flm_calloc(1, sizeof *src->shards);
        if (!src->shards) { rc = FLM_ERR_NOMEM; goto done; }
        rc = flm_st_open(single, &src->shards[0]);
        if (rc == FLM_OK) src->n_shards = 1;
        goto done;
    }
    if (!flm_file_exists(index)) {
        rc = flm_fail(FLM_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json (a .bin PyTorch checkpoint must be re-saved with safe_serialization=True)", dir);
        goto done;
    }
    flm_json_doc *doc = flm_json_parse_file(index);
    if (!doc) { rc = FLM_ERR_FORMAT; goto done; }
    const flm_json *wm = flm_json_get(flm_json_root(doc), "weight_map");
    if (!wm || wm->type != JSON_OBJECT || wm->len == 0) {
        flm_json_free(doc);
        rc = flm_fail(FLM_ERR_FORMAT, "%s: missing or empty \"weight_map\"", index);
        goto done;
    }
    /* unique shard file names, in first-seen order */
    const char **names = flm_calloc(wm->len, sizeof *names);
    size_t n = 0;
    if (!names) { flm_json_free(doc); rc = FLM_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < wm->len && rc == FLM_OK; i++) {
        const char *f = flm_json_string(&wm->items[i], NULL);
        if (!f || strchr(f, '/') || !strcmp(f, "..")) { rc = flm_fail(FLM_ERR_FORMAT, "%s: bad shard file name for %s", index, wm->items[i].key); break; }
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++) seen = !strcmp(names[j], f);
        if (!seen) names[n++] = f;
    }
    if (rc == FLM_OK) {
        src->shards = flm_calloc(n, sizeof *src->shards);
        if (!src->shards) rc = FLM_ERR_NOMEM;
        for (size_t j = 0; j < n && rc == FLM_OK; j++) {
            char *p = flm_path_join(dir, names[j]);
            if (!p) { rc = FLM_ERR_NOMEM; break; }
            rc = flm_st_open(p, &src->shards[j]);
            free(p);
            if (rc == FLM_OK) src->n_shards++;
        }
    }
    /* every tensor the index names must be in the shard it names */
    for (size_t i = 0; i < wm->len && rc == FLM_OK; i++) {
        const char *f = flm_json_string(&wm->items[i], "");
        for (size_t j = 0; j < src->n_shards; j++) {
            const char *base = strrchr(flm_st_path(src->shards[j]), '/');
            base = base ? base + 1 : flm_st_path(src->shards[j]);
            if (!strcmp(base, f) && !flm_st_find(src->shards[j], wm->items[i].key)) {
                rc = flm_fail(FLM_ERR_FORMAT, "%s: tensor %s is listed in the index but missing from the shard", flm_st_path(src->shards[j]), wm->items[i].key);
                break;
            }
        }
    }
    free(names);
    flm_json_free(doc);
done:
    free(single);
    free(index);
    return rc;
}

static const flm_tensor *hf_find(const flm_model_source *src, const char *name, const char **file) {
    for (size_t i = 0; i < src->n_shards; i++) {
        const flm_tensor *t = flm_st_find(src->shards[i], name);
        if (t) { if (file) *file = flm_st_path(src->shards[i]); return t; }
    }
    return NULL;
}

/* Binds one weight by HF name, checking shape. */
static int hf_bind(flm_model *m, const char *name, const int64_t *shape, int ndim, flm_tensor *slot) {
    const char *file = NULL;
    const flm_tensor *t = hf_find(m->source, name, &file);
    if (!t) return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s is missing", m->path, name);
    int rc = flm_check_shape(file, t, name, shape, ndim);
    if (rc) return rc;
    *slot = *t;
    /* safetensors does not require aligned data (a header whose length is not a
     * multiple of 8 shifts everything): kernels need element alignment, so such a
     * tensor is copied once into an aligned buffer */
    size_t align = flm_dtype_get(t->dtype)->block_size == 1 ? flm_dtype_get(t->dtype)->block_bytes : 2;
    if ((uintptr_t)t->data % align) {
        void *copy = flm_model_own(m, t->nbytes);
        if (!copy) return FLM_ERR_NOMEM;
        memcpy(copy, t->data, t->nbytes);
        slot->data = copy;
    }
    return FLM_OK;
}

/* Recognises every tensor a Qwen2 checkpoint may hold; anything else is an error. */
static bool hf_name_known(const flm_config *c, const char *name) {
    if (!strcmp(name, "model.embed_tokens.weight") || !strcmp(name, "model.norm.weight") || !strcmp(name, "lm_head.weight")) return true;
    int layer, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0 && layer < c->n_layers) {
        const char *rest = name + used;
        for (int w = 0; w < W_LAYER_COUNT; w++)
            if (!strcmp(rest, flm_hf_layer_suffix((flm_layer_weight)w))) return true;
        if (!strcmp(rest, "self_attn.rotary_emb.inv_freq")) return true; /* buffer saved by old transformers */
    }
    return false;
}

static int hf_bind_all(flm_model *m) {
    const flm_config *c = &m->cfg;
    flm_model_source *src = m->source;
    for (size_t s = 0; s < src->n_shards; s++)
        for (size_t i = 0; i < flm_st_count(src->shards[s]); i++) {
            const flm_tensor *t = flm_st_tensor_at(src->shards[s], i);
            if (!hf_name_known(c, t->name))
                return flm_fail(FLM_ERR_FORMAT, "%s: unexpected tensor %s (not part of a %d-layer qwen2 model)", flm_st_path(src->shards[s]), t->name, c->n_layers);
        }
    int64_t emb[2] = {c->vocab_size, c->hidden_size}, norm[1] = {c->hidden_size};
    int rc;
    if ((rc = hf_bind(m, "model.embed_tokens.weight", emb, 2, &m->embed))) return rc;
    if ((rc = hf_bind(m, "model.norm.weight", norm, 1, &m->final_norm))) return rc;
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    else if ((rc = hf_bind(m, "lm_head.weight", emb, 2, &m->lm_head))) return rc;
    /* num_hidden_layers is checked against the weights before the layer table exists */
    size_t n_tensors = 0;
    for (size_t s = 0; s < src->n_shards; s++) n_tensors += flm_st_count(src->shards[s]);
    char *cfgp = flm_path_join(m->path, "config.json");
    rc = cfgp ? flm_check_layer_count(c, n_tensors, cfgp, "num_hidden_layers") : FLM_ERR_NOMEM;
    free(cfgp);
    if (rc) return rc;
    if (!(m->layers = flm_calloc((size_t)c->n_layers, sizeof *m->layers))) return FLM_ERR_NOMEM;
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < W_LAYER_COUNT; w++) {
            char name[128];
            int64_t shape[FLM_MAX_DIMS];
            int nd = flm_layer_weight_shape(c, (flm_layer_weight)w, shape);
            flm_hf_layer_name(l, (flm_layer_weight)w, name, sizeof name);
            if ((rc = hf_bind(m, name, shape, nd, flm_layer_weight_slot(&m->layers[l], (flm_layer_weight)w)))) return rc;
        }
    return FLM_OK;
}

int flm_model_open_dir(const char *dir, const flm_model_options *opt, flm_model **out) {
    *out = NULL;
    flm_model *m;
    int rc = flm_model_new(dir, &m);
    if (rc) return rc;
    char *cfgp = flm_path_join(dir, "config.json");
    if (!cfgp) rc = FLM_ERR_NOMEM;
    else if (!flm_file_exists(cfgp)) rc = flm_fail(FLM_ERR_IO, "%s: no config.json (expected a Hugging Face model folder or a .gguf file)", dir);
    else rc = flm_config_load(cfgp, &m->cfg);
    free(cfgp);
    if (!rc) rc = hf_open_shards(m->source, dir);
    if (!rc) rc = hf_bind_all(m);
    if (!rc) rc = flm_model_finish(m, opt);
    if (rc) {
        flm_model_close(m);
        return rc;
    }
    *out = m;
    return FLM_OK;
}
