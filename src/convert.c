/* convert.c — Hugging Face folder (+ LoRA) → GGUF package, streaming.
 *
 * Per tensor: source rows (mapped bf16/f16/f32) → float32 → (+ scale·B·A for LoRA
 * targets, computed on the whole float32 weight) → f32/f16/bf16/q8_0/q4_0 rows →
 * written. Untargeted tensors go through in chunks of rows, so even the 151936-row
 * embedding needs a few MB; source pages are released after each chunk so the
 * process's resident set stays small. Norms and biases stay f32 (as llama.cpp does). */
#include "convert.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gen_config.h"
#include "gguf.h"
#include "lora.h"
#include "mapfile.h"
#include "model.h"
#include "model_source.h"
#include "package.h"
#include "quant.h"
#include "sha256.h"
#include "template.h"
#include "threadpool.h"
#include "tokenizer.h"

#define CHUNK_ELEMS (4u << 20) /* floats per row chunk (16 MiB) */

typedef struct {
    char gguf_name[96];
    char hf_name[128];
    const flm_tensor *src;
    flm_dtype out;
    bool lora;
} plan_entry;

/* ---- background hashing of the source files (provenance) ---- */
typedef struct {
    char **paths, **names;
    char (*hex)[65];
    size_t n;
    int rc;
    volatile sig_atomic_t *cancel;
} hash_job;

static void *hash_thread(void *arg) {
    hash_job *h = arg;
    for (size_t i = 0; i < h->n && !h->rc; i++) {
        if (h->cancel && *h->cancel) break;
        h->rc = flm_sha256_file(h->paths[i], h->hex[i]);
    }
    return NULL;
}

static int add_hash_file(hash_job *h, const char *dir, const char *name) {
    char *p = flm_path_join(dir, name);
    if (!p) return FLM_ERR_NOMEM;
    if (!flm_file_exists(p)) { free(p); return FLM_OK; }
    char **np = flm_realloc(h->paths, (h->n + 1) * sizeof *np);
    if (!np) { free(p); return FLM_ERR_NOMEM; }
    h->paths = np;
    char **nn = flm_realloc(h->names, (h->n + 1) * sizeof *nn);
    if (!nn) { free(p); return FLM_ERR_NOMEM; }
    h->names = nn;
    h->paths[h->n] = p;
    h->names[h->n] = flm_strdup(name);
    h->n++;
    return h->names[h->n - 1] ? FLM_OK : FLM_ERR_NOMEM;
}

static void free_hash_job(hash_job *h) {
    for (size_t i = 0; i < h->n; i++) { free(h->paths[i]); free(h->names[i]); }
    free(h->paths);
    free(h->names);
    free(h->hex);
}

/* ---- quantizing a chunk of rows on the pool ---- */
typedef struct {
    const float *x;
    unsigned char *dst;
    flm_dtype t;
    int64_t rows, cols;
    size_t row_bytes;
} quant_job;

static void quant_part(void *ctx, int ith, int nth) {
    const quant_job *q = ctx;
    int64_t per = (q->rows + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < q->rows ? r0 + per : q->rows;
    for (int64_t r = r0; r < r1; r++) flm_quantize_row(q->t, q->x + r * q->cols, q->dst + (size_t)r * q->row_bytes, q->cols);
}

typedef struct {
    const flm_tensor *src;
    float *dst;
    int64_t row0, rows, cols;
} deq_job;

static void deq_part(void *ctx, int ith, int nth) {
    const deq_job *d = ctx;
    const flm_dtype_info *di = flm_dtype_get(d->src->dtype);
    size_t rb = flm_dtype_bytes(d->src->dtype, (uint64_t)d->cols);
    int64_t per = (d->rows + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < d->rows ? r0 + per : d->rows;
    for (int64_t r = r0; r < r1; r++)
        di->to_float((const unsigned char *)d->src->data + (size_t)(d->row0 + r) * rb, d->dst + r * d->cols, (size_t)d->cols);
}

static int write_tensor(const flm_model *m, gguf_writer *w, flm_pool *pool, const plan_entry *e, flm_lora **ad, int n_lora,
                        volatile sig_atomic_t *cancel) {
    const flm_tensor *t = e->src;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    size_t out_row = flm_dtype_bytes(e->out, (uint64_t)cols);
    int64_t chunk = e->lora ? rows : (int64_t)(CHUNK_ELEMS / (uint64_t)cols);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float *x = flm_malloc((size_t)chunk * (size_t)cols * sizeof(float));
    unsigned char *y = e->out == FLM_F32 ? NULL : flm_malloc((size_t)chunk * out_row);
    int rc = (!x || (e->out != FLM_F32 && !y)) ? FLM_ERR_NOMEM : FLM_OK;
    size_t src_row = flm_dtype_bytes(t->dtype, (uint64_t)cols);
    for (int64_t r0 = 0; !rc && r0 < rows; r0 += chunk) {
        if (cancel && *cancel) { rc = flm_fail(FLM_ERR_CANCELLED, "conversion interrupted"); break; }
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        deq_job dj = {t, x, r0, n, cols};
        flm_pool_run(pool, deq_part, &dj);
        /* drop the source pages just read from this process's resident set (only
         * for mapped file data: never for owned heap copies such as f32 norms) */
        if (flm_model_is_mapped(m, t->data)) flm_map_release((const unsigned char *)t->data + (size_t)r0 * src_row, (size_t)n * src_row);
        for (int i = 0; e->lora && i < n_lora && !rc; i++) rc = flm_lora_apply(ad[i], e->hf_name, x, rows, cols);
        if (rc) break;
        if (e->out == FLM_F32) {
            rc = gguf_writer_write_part(w, x, (size_t)n * (size_t)cols * sizeof(float));
        } else {
            quant_job qj = {x, y, e->out, n, cols, out_row};
            flm_pool_run(pool, quant_part, &qj);
            rc = gguf_writer_write_part(w, y, (size_t)n * out_row);
        }
    }
    free(x);
    free(y);
    return rc;
}

static const char *type_name(flm_dtype t) { return flm_dtype_get(t)->name; }

static bool flm_has_tokenizer_files(const char *dir) {
    static const char *const any[] = {"tokenizer.json", "vocab.json"};
    for (size_t i = 0; i < sizeof any / sizeof *any; i++) {
        char *p = flm_path_join(dir, any[i]);
        bool ok = p && flm_file_exists(p);
        free(p);
        if (ok) return true;
    }
    return false;
}

int flm_convert(const char *hf_dir, const char *out_path, const flm_convert_options *opt, flm_convert_stats *stats) {
    double t0 = flm_now_seconds();
    memset(stats, 0, sizeof *stats);
    flm_dtype type = opt->type;
    if (type != FLM_F32 && type != FLM_F16 && type != FLM_BF16 && type != FLM_Q8_0 && type != FLM_Q4_0)
        return flm_fail(FLM_ERR_ARG, "unsupported output type %s (f32, f16, bf16, q8_0, q4_0)", type_name(type));
    if (!flm_is_dir(hf_dir)) return flm_fail(FLM_ERR_IO, "%s: not a folder (convert reads a Hugging Face checkpoint folder)", hf_dir);

    flm_model *m = NULL;
    flm_tokenizer *tok = NULL;
    flm_template_source tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    bool have_tmpl = false;
    flm_gen_config gen;
    flm_lora **ad = NULL;
    plan_entry *plan = NULL;
    gguf_writer *w = NULL;
    flm_pool *pool = NULL;
    hash_job hj = {.cancel = opt->cancel};
    pthread_t hasher;
    bool hashing = false;
    char **prov_files = NULL, **prov_adapters = NULL;
    char *names = NULL;
    flm_lora_base_weight *bw = NULL;
    int rc;

    flm_model_options mo = {.weights = FLM_WEIGHTS_MAP}; /* streamed from the files, one tensor at a time */
    if ((rc = flm_model_open(hf_dir, &mo, &m))) goto done;
    if (flm_has_tokenizer_files(hf_dir)) {
        if ((rc = flm_tokenizer_load_dir(hf_dir, &tok))) goto done;
    } else {
        stats->no_tokenizer = true; /* runs on token ids only; said in the summary */
    }
    if (flm_template_source_load_dir(hf_dir, &tmpl) == FLM_OK) have_tmpl = true; /* a base model may have none */
    if ((rc = flm_gen_config_load(hf_dir, &gen))) goto done;
    if ((rc = flm_pool_new(opt->n_threads, &pool))) goto done;

    /* adapters: open and check every one against the base before any work */
    if (opt->n_lora > 0) {
        size_t nb;
        ad = flm_calloc((size_t)opt->n_lora, sizeof *ad);
        bw = flm_model_base_weights(m, &nb, &names);
        if (!ad || !bw) { rc = FLM_ERR_NOMEM; goto done; }
        for (int i = 0; i < opt->n_lora && !rc; i++) {
            rc = flm_lora_open(opt->lora_dirs[i], opt->lora_scales ? opt->lora_scales[i] : 1.0f, &ad[i]);
            if (!rc) rc = flm_lora_check_base(ad[i], bw, nb);
        }
        if (!rc) rc = flm_lora_check_distinct(ad, opt->n_lora);
        if (rc) goto done;
    }

    /* provenance: hash every source file in the background while converting */
    static const char *const SRC_FILES[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                            "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json",
                                            "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof SRC_FILES / sizeof *SRC_FILES && !rc; i++) rc = add_hash_file(&hj, hf_dir, SRC_FILES[i]);
    for (size_t s = 0; s < m->source->n_shards && !rc; s++) {
        const char *p = st_path(m->source->shards[s]), *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        if (strcmp(base, "model.safetensors") != 0) rc = add_hash_file(&hj, hf_dir, base);
    }
    for (int i = 0; i < opt->n_lora && !rc; i++) {
        char label[64];
        snprintf(label, sizeof label, "adapter_model.safetensors");
        size_t before = hj.n;
        rc = add_hash_file(&hj, flm_lora_dir(ad[i]), label);
        if (!rc && hj.n > before) {
            char *nm = flm_path_join(flm_lora_dir(ad[i]), label);
            if (!nm) { rc = FLM_ERR_NOMEM; break; }
            free(hj.names[hj.n - 1]);
            hj.names[hj.n - 1] = nm;
        }
    }
    if (rc) goto done;
    hj.hex = flm_calloc(hj.n ? hj.n : 1, sizeof *hj.hex);
    if (!hj.hex) { rc = FLM_ERR_NOMEM; goto done; }
    if (pthread_create(&hasher, NULL, hash_thread, &hj) != 0) { rc = flm_fail(FLM_ERR_NOMEM, "could not start the hashing thread"); goto done; }
    hashing = true;

    /* the plan: llama.cpp's tensor order and names */
    const flm_config *c = &m->cfg;
    size_t n_plan = 2 + (size_t)c->n_layers * W_LAYER_COUNT + (c->tie_word_embeddings ? 0 : 1);
    plan = flm_calloc(n_plan, sizeof *plan);
    if (!plan) { rc = FLM_ERR_NOMEM; goto done; }
    size_t k = 0;
    plan[k++] = (plan_entry){.gguf_name = "token_embd.weight", .hf_name = "model.embed_tokens.weight", .src = &m->embed};
    for (int l = 0; l < c->n_layers; l++)
        for (int wi = 0; wi < W_LAYER_COUNT; wi++) {
            plan_entry *e = &plan[k++];
            flm_gguf_layer_name(l, (flm_layer_weight)wi, e->gguf_name, sizeof e->gguf_name);
            flm_hf_layer_name(l, (flm_layer_weight)wi, e->hf_name, sizeof e->hf_name);
            e->src = flm_layer_weight_slot(&m->layers[l], (flm_layer_weight)wi);
        }
    plan[k++] = (plan_entry){.gguf_name = "output_norm.weight", .hf_name = "model.norm.weight", .src = &m->final_norm};
    if (!c->tie_word_embeddings) plan[k++] = (plan_entry){.gguf_name = "output.weight", .hf_name = "lm_head.weight", .src = &m->lm_head};
    for (size_t i = 0; i < n_plan; i++) {
        plan_entry *e = &plan[i];
        if (e->src->ndim == 1) { e->out = FLM_F32; continue; }
        e->out = type;
        if (!flm_quant_row_ok(type, e->src->shape[1])) { e->out = FLM_F16; stats->n_fallback++; }
        for (int a = 0; a < opt->n_lora; a++) e->lora |= flm_lora_targets(ad[a], e->hf_name);
    }

    if ((rc = gguf_writer_open(out_path, 64, &w))) goto done;
    /* metadata needs the hashes: wait for them (they run while the plan was built;
     * on a large model most of the hashing overlaps with this wait's neighbours) */
    pthread_join(hasher, NULL);
    hashing = false;
    if (hj.rc) { rc = hj.rc; goto done; }
    if (opt->cancel && *opt->cancel) { rc = flm_fail(FLM_ERR_CANCELLED, "conversion interrupted"); goto done; }
    prov_files = flm_calloc(hj.n ? hj.n : 1, sizeof *prov_files);
    prov_adapters = flm_calloc(opt->n_lora ? (size_t)opt->n_lora : 1, sizeof *prov_adapters);
    if (!prov_files || !prov_adapters) { rc = FLM_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < hj.n; i++) {
        strbuf sb;
        sb_init(&sb);
        sb_printf(&sb, "%s  %s", hj.hex[i], hj.names[i]);
        prov_files[i] = sb_take(&sb);
        if (!prov_files[i]) { rc = FLM_ERR_NOMEM; goto done; }
    }
    for (int i = 0; i < opt->n_lora; i++) {
        strbuf sb;
        sb_init(&sb);
        const char *d = flm_lora_dir(ad[i]), *b = flm_lora_base_model(ad[i]);
        sb_puts(&sb, "{\"dir\":");
        sb_json_string(&sb, d, strlen(d), false);
        sb_puts(&sb, ",\"base_model_name_or_path\":");
        if (b) sb_json_string(&sb, b, strlen(b), false); else sb_puts(&sb, "null");
        sb_printf(&sb, ",\"r\":%d,\"lora_alpha\":%.9g,\"use_rslora\":%s,\"scale\":%.9g,\"user_scale\":%.9g}", flm_lora_rank(ad[i]),
                  flm_lora_alpha(ad[i]), flm_lora_rslora(ad[i]) ? "true" : "false", (double)flm_lora_scale(ad[i]),
                  (double)flm_lora_user_scale(ad[i]));
        prov_adapters[i] = sb_take(&sb);
        if (!prov_adapters[i]) { rc = FLM_ERR_NOMEM; goto done; }
    }
    flm_package_provenance prov = {(const char *const *)prov_files, hj.n, (const char *const *)prov_adapters, (size_t)opt->n_lora,
                                   c->torch_dtype, type_name(type)};
    if ((rc = flm_package_write_metadata(w, c, tok, have_tmpl ? &tmpl : NULL, &gen, &prov))) goto done;
    for (size_t i = 0; i < n_plan && !rc; i++)
        rc = gguf_writer_add_tensor(w, plan[i].gguf_name, plan[i].out, plan[i].src->ndim, plan[i].src->shape);
    if (rc) goto done;
    uint64_t total = 0, done_bytes = 0;
    for (size_t i = 0; i < n_plan; i++) total += plan[i].src->nbytes;
    for (size_t i = 0; i < n_plan && !rc; i++) {
        if (opt->progress) opt->progress(opt->progress_ctx, (int)i, (int)n_plan, plan[i].gguf_name, done_bytes, total);
        rc = write_tensor(m, w, pool, &plan[i], ad, opt->n_lora, opt->cancel);
        done_bytes += plan[i].src->nbytes;
    }
    if (rc) goto done;
    if (opt->progress) opt->progress(opt->progress_ctx, (int)n_plan, (int)n_plan, "", total, total);
    rc = gguf_writer_finish(w);
    w = NULL;
    if (rc) goto done;
    stats->n_tensors = (int)n_plan;
    FILE *f = fopen(out_path, "rb");
    if (f) { fseek(f, 0, SEEK_END); stats->bytes_written = (uint64_t)ftell(f); fclose(f); }
done:
    if (hashing) { if (opt->cancel) *opt->cancel = *opt->cancel; pthread_join(hasher, NULL); }
    if (w) gguf_writer_abort(w);
    for (size_t i = 0; prov_files && i < hj.n; i++) free(prov_files[i]);
    for (int i = 0; prov_adapters && i < opt->n_lora; i++) free(prov_adapters[i]);
    free(prov_files);
    free(prov_adapters);
    free_hash_job(&hj);
    free(plan);
    for (int i = 0; ad && i < opt->n_lora; i++) flm_lora_free(ad[i]);
    free(ad);
    free(bw);
    free(names);
    flm_pool_free(pool);
    if (have_tmpl) flm_template_source_free(&tmpl);
    flm_tokenizer_free(tok);
    flm_model_close(m);
    stats->seconds = flm_now_seconds() - t0;
    stats->peak_rss = flm_peak_rss_bytes();
    return rc;
}
