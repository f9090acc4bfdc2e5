/* model_load.c — opens a model source (Hugging Face folder: config.json +
 * model.safetensors or sharded model-0000K-of-0000N.safetensors with
 * model.safetensors.index.json) and binds every Qwen2 weight, checking names,
 * shapes and dtypes against the config. LoRA adapters are merged here at load.
 * GGUF packages are bound in model_gguf.c through the same slots; which of the two a
 * path is, package.c decides (flm_source). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_source.h"
#include "package/package.h"
#include "format/safetensors.h"

static const char *const HF_LAYER_NAMES[W_LAYER_COUNT] = {
    [W_ATTN_NORM] = "input_layernorm.weight",  [W_Q] = "self_attn.q_proj.weight",
    [W_K] = "self_attn.k_proj.weight",         [W_V] = "self_attn.v_proj.weight",
    [W_O] = "self_attn.o_proj.weight",         [W_BQ] = "self_attn.q_proj.bias",
    [W_BK] = "self_attn.k_proj.bias",          [W_BV] = "self_attn.v_proj.bias",
    [W_FFN_NORM] = "post_attention_layernorm.weight", [W_GATE] = "mlp.gate_proj.weight",
    [W_UP] = "mlp.up_proj.weight",             [W_DOWN] = "mlp.down_proj.weight",
};
/* llama.cpp's names (gguf-py constants.py, MODEL_TENSOR for qwen2). */
static const char *const GGUF_LAYER_NAMES[W_LAYER_COUNT] = {
    [W_ATTN_NORM] = "attn_norm.weight", [W_Q] = "attn_q.weight",   [W_K] = "attn_k.weight",
    [W_V] = "attn_v.weight",            [W_O] = "attn_output.weight", [W_BQ] = "attn_q.bias",
    [W_BK] = "attn_k.bias",             [W_BV] = "attn_v.bias",    [W_FFN_NORM] = "ffn_norm.weight",
    [W_GATE] = "ffn_gate.weight",       [W_UP] = "ffn_up.weight",  [W_DOWN] = "ffn_down.weight",
};

void flm_hf_layer_name(int layer, flm_layer_weight w, char *name, size_t len) {
    snprintf(name, len, "model.layers.%d.%s", layer, HF_LAYER_NAMES[w]);
}
void flm_gguf_layer_name(int layer, flm_layer_weight w, char *name, size_t len) {
    snprintf(name, len, "blk.%d.%s", layer, GGUF_LAYER_NAMES[w]);
}

int flm_layer_weight_shape(const flm_config *c, flm_layer_weight w, int64_t s[FLM_MAX_DIMS]) {
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    switch (w) {
    case W_ATTN_NORM: case W_FFN_NORM: s[0] = c->hidden_size; return 1;
    case W_Q: s[0] = q; s[1] = c->hidden_size; return 2;
    case W_K: case W_V: s[0] = kv; s[1] = c->hidden_size; return 2;
    case W_O: s[0] = c->hidden_size; s[1] = q; return 2;
    case W_BQ: s[0] = q; return 1;
    case W_BK: case W_BV: s[0] = kv; return 1;
    case W_GATE: case W_UP: s[0] = c->intermediate_size; s[1] = c->hidden_size; return 2;
    case W_DOWN: s[0] = c->hidden_size; s[1] = c->intermediate_size; return 2;
    default: return 0;
    }
}

flm_tensor *flm_layer_weight_slot(flm_layer *L, flm_layer_weight w) {
    switch (w) {
    case W_ATTN_NORM: return &L->attn_norm;
    case W_Q: return &L->wq;
    case W_K: return &L->wk;
    case W_V: return &L->wv;
    case W_O: return &L->wo;
    case W_BQ: return &L->bq;
    case W_BK: return &L->bk;
    case W_BV: return &L->bv;
    case W_FFN_NORM: return &L->ffn_norm;
    case W_GATE: return &L->w_gate;
    case W_UP: return &L->w_up;
    case W_DOWN: return &L->w_down;
    default: return NULL;
    }
}

void *flm_model_own(flm_model *m, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **p = flm_realloc(m->owned, cap * sizeof *p);
        if (!p) return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    void *buf = flm_malloc(bytes);
    if (buf) m->owned[m->n_owned++] = buf;
    return buf;
}

int flm_tensor_to_f32_owned(flm_model *m, flm_tensor *t) {
    if (t->dtype == FLM_F32) return FLM_OK;
    const flm_dtype_info *d = flm_dtype_get(t->dtype);
    if (!d || !d->to_float) return flm_fail(FLM_ERR_UNSUPPORTED, "tensor %s: type %s cannot be converted to f32", t->name, d ? d->name : "?");
    size_t n = (size_t)flm_tensor_numel(t);
    float *buf = flm_model_own(m, n * sizeof(float));
    if (!buf) return FLM_ERR_NOMEM;
    d->to_float(t->data, buf, n);
    t->data = buf;
    t->dtype = FLM_F32;
    t->nbytes = n * sizeof(float);
    return FLM_OK;
}

int flm_check_shape(const char *file, const flm_tensor *t, const char *name, const int64_t *shape, int ndim) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char a[96], b[96];
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s from config.json", file, name,
                        flm_shape_str(t->shape, t->ndim, a, sizeof a), flm_shape_str(shape, ndim, b, sizeof b));
    }
    if (!flm_dtype_get(t->dtype)->is_float_weight)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s has type %s (expected a floating-point or q8_0/q4_0 weight)", file, name,
                        flm_dtype_get(t->dtype)->name);
    return FLM_OK;
}

/* ---- Hugging Face folder ---- */

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
            if (!strcmp(rest, HF_LAYER_NAMES[w])) return true;
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

/* ---- common ---- */

static int make_small_tensors_f32(flm_model *m) {
    int rc;
    if ((rc = flm_tensor_to_f32_owned(m, &m->final_norm))) return rc;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        flm_layer *L = &m->layers[l];
        flm_tensor *small[] = {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv};
        for (size_t i = 0; i < sizeof small / sizeof *small; i++)
            if ((rc = flm_tensor_to_f32_owned(m, small[i]))) return rc;
    }
    return FLM_OK;
}

/* Lists every base weight by its HF name and shape, for the adapter check. */
flm_lora_base_weight *flm_model_base_weights(const flm_model *m, size_t *n, char **names_block) {
    size_t cap = (size_t)m->cfg.n_layers * W_LAYER_COUNT + 3;
    flm_lora_base_weight *bw = flm_calloc(cap, sizeof *bw);
    char(*names)[128] = flm_calloc(cap, 128);
    if (!bw || !names) { free(bw); free(names); return NULL; }
    size_t k = 0;
    const flm_tensor *top[] = {&m->embed, &m->final_norm, m->cfg.tie_word_embeddings ? NULL : &m->lm_head};
    const char *top_names[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    for (int i = 0; i < 3; i++) {
        if (!top[i]) continue;
        snprintf(names[k], 128, "%s", top_names[i]);
        bw[k].name = names[k]; bw[k].ndim = top[i]->ndim;
        memcpy(bw[k].shape, top[i]->shape, sizeof bw[k].shape);
        k++;
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < W_LAYER_COUNT; w++) {
            const flm_tensor *t = flm_layer_weight_slot(&m->layers[l], (flm_layer_weight)w);
            flm_hf_layer_name(l, (flm_layer_weight)w, names[k], 128);
            bw[k].name = names[k]; bw[k].ndim = t->ndim;
            memcpy(bw[k].shape, t->shape, sizeof bw[k].shape);
            k++;
        }
    *n = k;
    *names_block = (char *)names;
    return bw;
}

/* Merges each adapter into the targeted weights, in order, in float32: the weight
 * becomes an owned f32 copy W + sum_i scale_i * B_i A_i. */
static int merge_loras(flm_model *m, const flm_model_options *opt) {
    if (!opt || opt->n_lora == 0) return FLM_OK;
    flm_lora **ad = flm_calloc((size_t)opt->n_lora, sizeof *ad);
    if (!ad) return FLM_ERR_NOMEM;
    size_t nb = 0;
    char *names = NULL;
    flm_lora_base_weight *bw = flm_model_base_weights(m, &nb, &names);
    int rc = bw ? FLM_OK : FLM_ERR_NOMEM;
    for (int i = 0; i < opt->n_lora && rc == FLM_OK; i++) {
        rc = flm_lora_open(opt->lora_dirs[i], opt->lora_scales ? opt->lora_scales[i] : 1.0f, &ad[i]);
        if (rc == FLM_OK) rc = flm_lora_check_base(ad[i], bw, nb);
    }
    if (rc == FLM_OK) rc = flm_lora_check_distinct(ad, opt->n_lora);
    for (int l = 0; l < m->cfg.n_layers && rc == FLM_OK; l++)
        for (int w = 0; w < W_LAYER_COUNT && rc == FLM_OK; w++) {
            char name[128];
            flm_hf_layer_name(l, (flm_layer_weight)w, name, sizeof name);
            flm_tensor *t = flm_layer_weight_slot(&m->layers[l], (flm_layer_weight)w);
            bool targeted = false;
            for (int i = 0; i < opt->n_lora; i++) targeted |= flm_lora_targets(ad[i], name);
            if (!targeted || t->ndim != 2) continue;
            if ((rc = flm_tensor_to_f32_owned(m, t))) break;
            for (int i = 0; i < opt->n_lora && rc == FLM_OK; i++)
                rc = flm_lora_apply(ad[i], name, (float *)t->data, t->shape[0], t->shape[1]);
        }
    for (int i = 0; i < opt->n_lora; i++) flm_lora_free(ad[i]);
    free(names);
    free(bw);
    free(ad);
    return rc;
}

int flm_check_layer_count(const flm_config *c, size_t n_tensors, const char *file, const char *key) {
    if (c->n_layers > 0 && (size_t)c->n_layers <= n_tensors / W_LAYER_COUNT) return FLM_OK;
    return flm_fail(FLM_ERR_FORMAT, "%s: %s = %d, but the weights hold %zu tensors, room for at most %zu layers "
                    "(a qwen2 layer has %d tensors)", file, key, c->n_layers, n_tensors, n_tensors / W_LAYER_COUNT,
                    W_LAYER_COUNT);
}

static int open_hf_folder(flm_model *m, const char *path) {
    char *cfgp = flm_path_join(path, "config.json");
    if (!cfgp) return FLM_ERR_NOMEM;
    if (!flm_file_exists(cfgp)) {
        free(cfgp);
        return flm_fail(FLM_ERR_IO, "%s: no config.json (expected a Hugging Face model folder or a .gguf file)", path);
    }
    int rc = flm_config_load(cfgp, &m->cfg);
    free(cfgp);
    if (!rc) rc = hf_open_shards(m->source, path);
    if (!rc) rc = hf_bind_all(m);
    return rc;
}

int flm_model_open_source(const struct flm_source *src, const flm_model_options *opt, flm_model **out) {
    *out = NULL;
    flm_model *m = flm_calloc(1, sizeof *m);
    if (!m) return FLM_ERR_NOMEM;
    m->path = flm_strdup(src->path);
    m->source = flm_calloc(1, sizeof *m->source);
    int rc = (!m->path || !m->source) ? FLM_ERR_NOMEM : FLM_OK;
    if (rc) goto fail;
    if (!src->gguf) {
        if ((rc = open_hf_folder(m, src->path))) goto fail;
    } else {
        if (opt && opt->n_lora) {
            rc = flm_fail(FLM_ERR_ARG, "%s: --lora applies to Hugging Face folders; merge adapters into a package with `fieldlm convert --lora`", src->path);
            goto fail;
        }
        if ((rc = flm_model_bind_gguf(m, src->gguf))) goto fail;
    }
    if ((rc = merge_loras(m, opt))) goto fail;
    if ((rc = make_small_tensors_f32(m))) goto fail;
    if ((rc = flm_model_place_weights(m, opt ? opt->weights : FLM_WEIGHTS_AUTO))) goto fail;
    *out = m;
    return FLM_OK;
fail:
    flm_model_close(m);
    return rc;
}

int flm_model_open(const char *path, const flm_model_options *opt, flm_model **out) {
    *out = NULL;
    flm_source src;
    int rc = flm_source_open(path, &src);
    if (rc) return rc;
    rc = flm_model_open_source(&src, opt, out);
    flm_source_close(&src);
    return rc;
}

void flm_model_close(flm_model *m) {
    if (!m) return;
    if (m->source) {
        for (size_t i = 0; i < m->source->n_shards; i++) flm_st_close(m->source->shards[i]);
        free(m->source->shards);
        flm_model_source_close_gguf(m->source);
        free(m->source);
    }
    flm_model_unload_weights(m);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->path);
    free(m);
}

bool flm_model_is_mapped(const flm_model *m, const void *p) {
    for (size_t i = 0; i < m->source->n_shards; i++)
        if (flm_st_contains(m->source->shards[i], p)) return true;
    return false;
}

size_t flm_model_weight_bytes(const flm_model *m) {
    size_t total = m->lm_head.nbytes + m->embed.nbytes / (size_t)m->cfg.vocab_size;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const flm_layer *L = &m->layers[l];
        total += L->wq.nbytes + L->wk.nbytes + L->wv.nbytes + L->wo.nbytes + L->w_gate.nbytes + L->w_up.nbytes + L->w_down.nbytes;
    }
    return total;
}
