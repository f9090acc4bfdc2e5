/* convert.c — Hugging Face folder (+ LoRA) → GGUF package, streaming.
 *
 * Per tensor: source rows (bf16/f16/f32, read with pread from the shard) → float32
 * → (+ scale·B·A for LoRA targets, computed on the whole float32 weight) →
 * f32/f16/bf16/q8_0/q4_0 rows → written. Untargeted tensors go through in chunks of
 * rows, so even the 151936-row embedding needs a few MB, and no source page stays
 * in the process's resident set. Norms and biases stay f32 (as llama.cpp does).
 *
 * Sources that change under the converter are errors, not signals: the weights are
 * read with pread (a truncated shard is a short read, where the mapping would raise
 * SIGBUS), and every source file's size is checked against its size at open before
 * each tensor. The output follows src/base/outfile.h: checked before any work, written
 * to a temporary file of its own, removed on any error or cancel. */
#include "convert/convert.h"
#include "convert/convert_src.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "model/gen_config.h"
#include "format/gguf.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_source.h"
#include "base/outfile.h"
#include "package/package.h"
#include "kernels/quant.h"
#include "base/sha256.h"
#include "text/template.h"
#include "base/threadpool.h"
#include "text/tokenizer.h"

typedef struct {
    char gguf_name[96];
    char hf_name[128];
    const flm_tensor *src;
    flm_dtype out;
    bool lora;
} plan_entry;

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

/* Converts a chunk of float32 rows to the plan's type and appends it to the package. */
typedef struct {
    flm_gguf_writer *w;
    flm_pool *pool;
    flm_dtype out;
    unsigned char *y;
    size_t y_cap;
} gguf_sink;

static int gguf_sink_rows(void *ctx, const float *x, int64_t row0, int64_t n, int64_t cols) {
    (void)row0;
    gguf_sink *g = ctx;
    if (g->out == FLM_F32) return flm_gguf_writer_write_part(g->w, x, (size_t)n * (size_t)cols * sizeof(float));
    size_t out_row = flm_dtype_bytes(g->out, (uint64_t)cols);
    if ((size_t)n * out_row > g->y_cap) {
        free(g->y);
        g->y_cap = (size_t)n * out_row;
        if (!(g->y = flm_malloc(g->y_cap))) { g->y_cap = 0; return FLM_ERR_NOMEM; }
    }
    quant_job qj = {x, g->y, g->out, n, cols, out_row};
    flm_pool_run(g->pool, quant_part, &qj);
    return flm_gguf_writer_write_part(g->w, g->y, (size_t)n * out_row);
}

static const char *type_name(flm_dtype t) { return flm_dtype_get(t)->name; }

int flm_convert(const char *hf_dir, const char *out_path, const flm_convert_options *opt, flm_convert_stats *stats) {
    double t0 = flm_now_seconds();
    memset(stats, 0, sizeof *stats);
    flm_dtype type = opt->type;
    if (type != FLM_F32 && type != FLM_F16 && type != FLM_BF16 && type != FLM_Q8_0 && type != FLM_Q4_0)
        return flm_fail(FLM_ERR_ARG, "unsupported output type %s (f32, f16, bf16, q8_0, q4_0)", type_name(type));

    flm_conv_source s;
    plan_entry *plan = NULL;
    flm_gguf_writer *w = NULL;
    gguf_sink gs = {0};
    int rc = flm_conv_source_open(&s, hf_dir, out_path, opt->lora_dirs, opt->lora_scales, opt->n_lora, opt->n_threads, opt->cancel);
    if (rc) goto out;
    if (!s.tok) stats->no_tokenizer = true; /* runs on token ids only; said in the summary */

    /* the plan: llama.cpp's tensor order and names */
    flm_model *m = s.m;
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
        e->lora = flm_conv_source_lora_targets(&s, e->hf_name);
    }

    if ((rc = flm_gguf_writer_open(out_path, 64, &w))) goto done;
    /* metadata needs the hashes: wait for them (they run while the plan was built;
     * on a large model most of the hashing overlaps with this wait's neighbours) */
    if ((rc = flm_conv_source_provenance(&s))) goto done;
    flm_package_provenance prov = {(const char *const *)s.prov_files, s.hj.n, (const char *const *)s.prov_adapters, (size_t)opt->n_lora,
                                   c->torch_dtype, type_name(type)};
    if ((rc = flm_package_write_metadata(w, c, s.tok, s.have_tmpl ? &s.tmpl : NULL, &s.gen, &prov))) goto done;
    for (size_t i = 0; i < n_plan && !rc; i++)
        rc = flm_gguf_writer_add_tensor(w, plan[i].gguf_name, plan[i].out, plan[i].src->ndim, plan[i].src->shape);
    if (rc) goto done;
    uint64_t total = 0, done_bytes = 0;
    for (size_t i = 0; i < n_plan; i++) total += plan[i].src->nbytes;
    gs.w = w;
    gs.pool = s.pool;
    for (size_t i = 0; i < n_plan && !rc; i++) {
        if (opt->progress) opt->progress(opt->progress_ctx, (int)i, (int)n_plan, plan[i].gguf_name, done_bytes, total);
        /* every source (shards, adapters) still has the size its header promised */
        rc = flm_conv_source_check(&s);
        gs.out = plan[i].out;
        if (!rc) rc = flm_conv_source_read(&s, plan[i].src, plan[i].hf_name, plan[i].lora, gguf_sink_rows, &gs);
        done_bytes += plan[i].src->nbytes;
    }
    if (!rc) rc = flm_conv_source_check(&s);
    if (rc) goto done;
    if (opt->progress) opt->progress(opt->progress_ctx, (int)n_plan, (int)n_plan, "", total, total);
    stats->bytes_written = flm_gguf_writer_bytes(w); /* this writer's own file, whoever renames last */
    rc = flm_gguf_writer_finish(w);
    w = NULL;
    if (rc) { stats->bytes_written = 0; goto done; }
    stats->n_tensors = (int)n_plan;
done:
    if (w) flm_gguf_writer_abort(w);
    free(gs.y);
    free(plan);
    flm_conv_source_close(&s);
out:
    stats->seconds = flm_now_seconds() - t0;
    stats->peak_rss = flm_peak_rss_bytes();
    return rc;
}
