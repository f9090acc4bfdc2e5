/* model_load.c — the model object whatever its source: the Qwen2 weight slots, their
 * Hugging Face and llama.cpp names and expected shapes, the checks every binding
 * shares, LoRA merging at load, the small tensors made f32, placement and closing.
 * The weights are bound by model_hf.c (a Hugging Face folder) or model_gguf.c (a
 * GGUF package); neither is called from here. Which of the two a path is, only
 * src/package decides (flm_source). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_source.h"
#include "format/gguf.h"
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

const char *flm_hf_layer_suffix(flm_layer_weight w) { return HF_LAYER_NAMES[w]; }

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
    for (int i = 0; i < opt->n_lora; i++) flm_lora_close(ad[i]);
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

int flm_model_new(const char *path, flm_model **out) {
    *out = NULL;
    flm_model *m = flm_calloc(1, sizeof *m);
    if (!m) return FLM_ERR_NOMEM;
    m->path = flm_strdup(path);
    m->source = flm_calloc(1, sizeof *m->source);
    if (!m->path || !m->source) {
        flm_model_close(m);
        return FLM_ERR_NOMEM;
    }
    *out = m;
    return FLM_OK;
}

int flm_model_finish(flm_model *m, const flm_model_options *opt) {
    int rc;
    if ((rc = merge_loras(m, opt))) return rc;
    if ((rc = make_small_tensors_f32(m))) return rc;
    return flm_model_place_weights(m, opt ? opt->weights : FLM_WEIGHTS_AUTO);
}

void flm_model_close(flm_model *m) {
    if (!m) return;
    if (m->source) {
        for (size_t i = 0; i < m->source->n_shards; i++) flm_st_close(m->source->shards[i]);
        free(m->source->shards);
        flm_gguf_close(m->source->gguf);
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
