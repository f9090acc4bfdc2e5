/* model_gguf.c — binds a GGUF file's tensors (llama.cpp names) to the model slots,
 * under the hyper-parameters src/package read from its keys. Uses only the GGUF
 * reader (format/gguf.h); weights stay in the file's mapping. */
#include <stdio.h>
#include <string.h>

#include "base/common.h"
#include "format/gguf.h"
#include "model/model_source.h"

static int bind(flm_model *m, const char *name, const int64_t *shape, int ndim, flm_tensor *slot, bool optional) {
    flm_gguf_file *g = m->source->gguf;
    const flm_gguf_tensor_info *ti = flm_gguf_tensor_find(g, name);
    if (!ti) {
        if (optional) return FLM_OK;
        return flm_fail(FLM_ERR_FORMAT, "%s: tensor %s is missing", m->path, name);
    }
    if (ti->dtype < 0)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tensor %s has GGML type %s, which fieldlm does not run (f32, f16, bf16, q8_0, q4_0)",
                        m->path, name, flm_gguf_ggml_type_name(ti->ggml_type));
    int rc = flm_gguf_tensor_view(g, ti, slot);
    if (rc) return rc;
    if ((rc = flm_check_shape(m->path, slot, name, shape, ndim))) return rc;
    /* a file with general.alignment 1 may misalign data: copy such a tensor once */
    const flm_dtype_info *d = flm_dtype_get(slot->dtype);
    size_t align = d->block_size == 1 ? d->block_bytes : 2;
    if ((uintptr_t)slot->data % align) {
        void *copy = flm_model_own(m, slot->nbytes);
        if (!copy) return FLM_ERR_NOMEM;
        memcpy(copy, slot->data, slot->nbytes);
        slot->data = copy;
    }
    return FLM_OK;
}

/* Binds every tensor of g under m->cfg. */
static int bind_all(flm_model *m, flm_gguf_file *g) {
    const char *path = m->path;
    int rc;
    const flm_config *c = &m->cfg;

    /* every tensor must be one we know */
    for (size_t i = 0; i < flm_gguf_tensor_count(g); i++) {
        const char *n = flm_gguf_tensor_at(g, i)->name;
        bool known = !strcmp(n, "token_embd.weight") || !strcmp(n, "output_norm.weight") || !strcmp(n, "output.weight");
        int layer, used = 0;
        if (!known && sscanf(n, "blk.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0 && layer < c->n_layers)
            for (int w = 0; w < W_LAYER_COUNT && !known; w++) {
                char want[96];
                flm_gguf_layer_name(layer, (flm_layer_weight)w, want, sizeof want);
                known = !strcmp(n, want);
            }
        if (!known) return flm_fail(FLM_ERR_FORMAT, "%s: unexpected tensor %s (not part of a %d-layer qwen2 model)", path, n, c->n_layers);
    }
    int64_t emb[2] = {c->vocab_size, c->hidden_size}, norm[1] = {c->hidden_size};
    if ((rc = bind(m, "token_embd.weight", emb, 2, &m->embed, false))) return rc;
    if ((rc = bind(m, "output_norm.weight", norm, 1, &m->final_norm, false))) return rc;
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    else if ((rc = bind(m, "output.weight", emb, 2, &m->lm_head, false))) return rc;
    /* block_count is checked against the tensor table before the layer table exists */
    if ((rc = flm_check_layer_count(c, flm_gguf_tensor_count(g), path, "qwen2.block_count"))) return rc;
    if (!(m->layers = flm_calloc((size_t)c->n_layers, sizeof *m->layers))) return FLM_ERR_NOMEM;
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < W_LAYER_COUNT; w++) {
            char name[96];
            int64_t shape[FLM_MAX_DIMS];
            int nd = flm_layer_weight_shape(c, (flm_layer_weight)w, shape);
            flm_gguf_layer_name(l, (flm_layer_weight)w, name, sizeof name);
            if ((rc = bind(m, name, shape, nd, flm_layer_weight_slot(&m->layers[l], (flm_layer_weight)w), false))) return rc;
        }
    return FLM_OK;
}

int flm_model_open_gguf(flm_gguf_file *g, const flm_config *cfg, flm_weights_mode weights, flm_model **out) {
    *out = NULL;
    flm_model *m;
    int rc = flm_model_new(flm_gguf_name(g), &m);
    if (rc) return rc;
    m->cfg = *cfg;
    m->source->gguf = flm_gguf_retain(g);
    flm_model_options opt = {.weights = weights};
    if (!(rc = bind_all(m, g))) rc = flm_model_finish(m, &opt);
    if (rc) {
        flm_model_close(m);
        return rc;
    }
    *out = m;
    return FLM_OK;
}
