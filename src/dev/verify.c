/* verify.c — model vs transformers reference: logits error, KL, top-1, greedy.
 *
 * KL divergence: where the reference stores full logits, KL(p_ref || p_ours) is exact.
 * Where it stores only the top-16 logits and the log-sum-exp (151,936-token models),
 * the KL is computed on the coarsened distribution {top-16 tokens, everything else},
 * which is a lower bound of the true KL (data-processing inequality); at the last
 * position the full logits are stored and that position's KL is exact. */
#include "dev/verify.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "runtime/forward.h"
#include "format/safetensors.h"

static const flm_tensor *find_case(flm_st_file *f, int i, const char *what, flm_dtype dt) {
    char name[64];
    snprintf(name, sizeof name, "case%d.%s", i, what);
    const flm_tensor *t = flm_st_find(f, name);
    return t && t->dtype == dt ? t : NULL;
}

static double logsumexp(const float *x, int n) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

static double kl_full(const float *ref, const float *ours, int n) {
    double lr = logsumexp(ref, n), lo = logsumexp(ours, n), kl = 0;
    for (int i = 0; i < n; i++) {
        double lp = (double)ref[i] - lr;
        kl += exp(lp) * (lp - ((double)ours[i] - lo));
    }
    return kl > 0 ? kl : 0;
}

static double kl_top16(const int32_t *ids, const float *ref_top, double ref_lse, const float *ours, int n) {
    double lo = logsumexp(ours, n), kl = 0, pr_rest = 1, po_rest = 1;
    for (int j = 0; j < 16; j++) {
        double lp = (double)ref_top[j] - ref_lse, lq = (double)ours[ids[j]] - lo;
        kl += exp(lp) * (lp - lq);
        pr_rest -= exp(lp);
        po_rest -= exp(lq);
    }
    if (pr_rest > 1e-12 && po_rest > 1e-12) kl += pr_rest * log(pr_rest / po_rest);
    return kl > 0 ? kl : 0;
}

static int run_case(const flm_model *m, flm_st_file *ref, int ci, const flm_verify_options *opt, flm_verify_case *out) {
    memset(out, 0, sizeof *out);
    out->greedy_first_diff = -1;
    const flm_tensor *ids_t = find_case(ref, ci, "input_ids", FLM_I32);
    if (!ids_t || ids_t->ndim != 1 || ids_t->shape[0] < 1)
        return flm_fail(FLM_ERR_FORMAT, "%s: case%d.input_ids (I32 [T]) is missing", flm_st_path(ref), ci);
    int T = (int)ids_t->shape[0], V = m->cfg.vocab_size;
    const flm_tensor *full = find_case(ref, ci, "logits", FLM_F32), *last = find_case(ref, ci, "logits_last", FLM_F32);
    const flm_tensor *top_ids = find_case(ref, ci, "top16_ids", FLM_I32), *top_l = find_case(ref, ci, "top16_logits", FLM_F32);
    const flm_tensor *lse = find_case(ref, ci, "logsumexp", FLM_F32);
    const flm_tensor *g_ids = find_case(ref, ci, "greedy_ids", FLM_I32), *g_m = find_case(ref, ci, "greedy_margins", FLM_F32);
    if (full && (full->ndim != 2 || full->shape[0] != T || full->shape[1] != V))
        return flm_fail(FLM_ERR_FORMAT, "%s: case%d.logits has the wrong shape for a %d-token vocabulary", flm_st_path(ref), ci, V);
    if (last && (last->ndim != 1 || last->shape[0] != V))
        return flm_fail(FLM_ERR_FORMAT, "%s: case%d.logits_last has %lld entries, the model's vocabulary has %d", flm_st_path(ref), ci, (long long)last->shape[0], V);
    if (!full && !(last && top_ids && top_l && lse))
        return flm_fail(FLM_ERR_FORMAT, "%s: case%d has neither full logits nor logits_last + top16 + logsumexp", flm_st_path(ref), ci);
    if (top_ids && (top_ids->ndim != 2 || top_ids->shape[0] != T || top_ids->shape[1] != 16 || !top_l || top_l->nbytes != top_ids->nbytes || !lse || lse->shape[0] != T))
        return flm_fail(FLM_ERR_FORMAT, "%s: case%d top16/logsumexp tensors have inconsistent shapes", flm_st_path(ref), ci);
    int G = g_ids ? (int)g_ids->shape[0] : 0;
    if (g_ids && (!g_m || g_m->shape[0] != G)) return flm_fail(FLM_ERR_FORMAT, "%s: case%d.greedy_margins missing or wrong length", flm_st_path(ref), ci);

    int n_ctx = opt->n_ctx > 0 ? opt->n_ctx : T + G;
    if (n_ctx > m->cfg.max_position_embeddings) n_ctx = m->cfg.max_position_embeddings;
    flm_forward_state *st;
    int rc = flm_forward_new(m, n_ctx, &st);
    if (rc) return rc;
    float *logits = malloc((size_t)T * (size_t)V * sizeof(float));
    if (!logits) { flm_forward_free(st); return flm_fail(FLM_ERR_NOMEM, "out of memory for %d x %d logits", T, V); }
    const int32_t *ids = ids_t->data;
    for (int i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= V) { rc = flm_fail(FLM_ERR_FORMAT, "%s: case%d token id %d outside the model's vocabulary", flm_st_path(ref), ci, ids[i]); goto done; }
    if ((rc = flm_forward(st, ids, T, logits, FLM_LOGITS_ALL))) goto done;

    out->n_input = T;
    out->full_logits = full != NULL;
    double kl_sum = 0;
    for (int p = 0; p < T; p++) {
        const float *ours = logits + (size_t)p * V;
        int a = argmax(ours, V);
        if (full) {
            const float *r = (const float *)full->data + (size_t)p * V;
            for (int v = 0; v < V; v++) { double e = fabs((double)r[v] - ours[v]); if (!(e <= out->max_abs_err)) out->max_abs_err = e; }
            kl_sum += kl_full(r, ours, V);
            out->top1_agree += a == argmax(r, V);
        } else {
            const int32_t *ti = (const int32_t *)top_ids->data + (size_t)p * 16;
            const float *tl = (const float *)top_l->data + (size_t)p * 16;
            for (int j = 0; j < 16; j++) {
                if (ti[j] < 0 || ti[j] >= V) { rc = flm_fail(FLM_ERR_FORMAT, "%s: case%d top16 id out of range", flm_st_path(ref), ci); goto done; }
                double e = fabs((double)tl[j] - ours[ti[j]]);
                if (!(e <= out->max_abs_err)) out->max_abs_err = e;
            }
            if (p == T - 1) {
                const float *r = last->data;
                for (int v = 0; v < V; v++) { double e = fabs((double)r[v] - ours[v]); if (!(e <= out->max_abs_err)) out->max_abs_err = e; }
                kl_sum += kl_full(r, ours, V);
            } else {
                kl_sum += kl_top16(ti, tl, ((const float *)lse->data)[p], ours, V);
            }
            out->top1_agree += a == ti[0];
        }
    }
    out->mean_kl = kl_sum / T;

    /* greedy continuation with the KV cache, compared up to the first near-tie */
    out->greedy_total = G;
    const int32_t *gi = g_ids ? g_ids->data : NULL;
    const float *gm = g_m ? g_m->data : NULL;
    int next = argmax(logits + (size_t)(T - 1) * V, V);
    for (int s = 0; s < G; s++) {
        if (gm[s] < FLM_VERIFY_NEAR_TIE) { out->near_tie_stop = true; break; }
        out->greedy_compared++;
        if (next != gi[s]) { out->greedy_first_diff = s; break; }
        if (s + 1 == G) break;
        if (flm_forward_n_past(st) >= flm_forward_n_ctx(st)) break;
        if ((rc = flm_forward(st, &next, 1, logits, FLM_LOGITS_LAST))) goto done;
        next = argmax(logits, V);
    }
    out->pass = out->max_abs_err <= opt->tol && out->greedy_first_diff < 0;
done:
    free(logits);
    flm_forward_free(st);
    return rc;
}

#define REF_WHAT "the reference is the .safetensors dump written by tools/make_reference.py (or a folder holding reference.safetensors)"

/* A folder without reference.safetensors: say what it is instead. */
static int not_a_reference_dir(const char *dir) {
    char *cfg = flm_path_join(dir, "config.json"), *ad = flm_path_join(dir, "adapter_config.json");
    bool model = cfg && flm_file_exists(cfg), adapter = ad && flm_file_exists(ad);
    free(cfg);
    free(ad);
    if (model) return flm_fail(FLM_ERR_ARG, "--reference %s is a model folder (config.json), not a reference: %s", dir, REF_WHAT);
    if (adapter) return flm_fail(FLM_ERR_ARG, "--reference %s is a LoRA adapter folder, not a reference: %s", dir, REF_WHAT);
    return flm_fail(FLM_ERR_IO, "--reference %s: the folder holds no reference.safetensors (%s)", dir, REF_WHAT);
}

/* Files that are not a safetensors dump but are easily passed by mistake: the
 * JSON summary make_reference.py writes beside the dump, and GGUF packages. A
 * safetensors file starts with an 8-byte header length and then '{', which
 * neither of those has at byte 8. Returns FLM_OK when the file may be safetensors. */
static int sniff_reference_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return FLM_OK; /* flm_st_open reports why */
    unsigned char h[16];
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    if (n >= 4 && !memcmp(h, "GGUF", 4))
        return flm_fail(FLM_ERR_ARG, "--reference %s is a GGUF package (a model), not a reference: give it as -m MODEL; %s",
                        path, REF_WHAT);
    if (n > 8 && h[8] == '{') return FLM_OK;
    size_t i = 0;
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) i++;
    if (i < n && (h[i] == '{' || h[i] == '[')) {
        /* make_reference.py writes NAME.json beside NAME.safetensors */
        size_t len = strlen(path);
        char *sib = NULL;
        if (len > 5 && !strcmp(path + len - 5, ".json") && (sib = malloc(len + 8))) {
            memcpy(sib, path, len - 5);
            strcpy(sib + len - 5, ".safetensors");
            if (!flm_file_exists(sib)) { free(sib); sib = NULL; }
        }
        int rc = sib ? flm_fail(FLM_ERR_ARG, "--reference %s is JSON (the human-readable summary), not the reference dump: pass %s",
                                path, sib)
                     : flm_fail(FLM_ERR_ARG, "--reference %s is JSON, not the reference dump: %s", path, REF_WHAT);
        free(sib);
        return rc;
    }
    return FLM_OK;
}

int flm_verify_check_reference(const char *ref_path) {
    if (!ref_path) return flm_fail(FLM_ERR_ARG, "flm_verify: NULL reference path");
    if (!flm_is_dir(ref_path)) return sniff_reference_file(ref_path);
    char *path = flm_path_join(ref_path, "reference.safetensors");
    if (!path) return FLM_ERR_NOMEM;
    int rc = flm_file_exists(path) ? sniff_reference_file(path) : not_a_reference_dir(ref_path);
    free(path);
    return rc;
}

int flm_verify_run(const flm_model *m, const char *ref_path, const flm_verify_options *opt, flm_verify_case **cases, int *n_cases) {
    *cases = NULL;
    *n_cases = 0;
    int rc = flm_verify_check_reference(ref_path);
    if (rc) return rc;
    char *path = flm_is_dir(ref_path) ? flm_path_join(ref_path, "reference.safetensors") : flm_strdup(ref_path);
    if (!path) return FLM_ERR_NOMEM;
    flm_st_file *ref;
    rc = flm_st_open(path, &ref);
    free(path);
    if (rc) return rc;
    int n = 0;
    while (find_case(ref, n, "input_ids", FLM_I32)) n++;
    if (n == 0) { flm_st_close(ref); return flm_fail(FLM_ERR_FORMAT, "%s: no cases (expected tensors case0.input_ids, ...)", flm_st_path(ref)); }
    flm_verify_case *cs = flm_calloc((size_t)n, sizeof *cs);
    if (!cs) { flm_st_close(ref); return FLM_ERR_NOMEM; }
    for (int i = 0; i < n && rc == FLM_OK; i++) {
        rc = run_case(m, ref, i, opt, &cs[i]);
        if (rc == FLM_OK && opt->progress) opt->progress(opt->progress_ctx, i, n, &cs[i]);
    }
    flm_st_close(ref);
    if (rc) { free(cs); return rc; }
    *cases = cs;
    *n_cases = n;
    return FLM_OK;
}
