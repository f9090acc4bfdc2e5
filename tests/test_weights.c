/* test_weights.c — where the weights live (src/model/model_resident.c): loaded into
 * memory and run from the file mapping give bit-identical logits for Hugging Face
 * folders, GGUF packages (tied embedding) and LoRA-merged models, the loaded copy
 * really replaces the mapping, and --mmap / --no-mmap reach the CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fieldlm.h"
#include "base/common.h"
#include "kernels/cpu.h"
#include "runtime/forward.h"
#include "base/json.h"
#include "model/model.h"
#include "model/model_source.h"
#include "test.h"
#include "package/source.h"

#define MICRO TEST_DATA "/micro-qwen2"
#define PEER_GGUF TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf"

/* Logits of every position of a fixed prompt. Caller frees. */
static float *logits_of(const char *path, const char *lora, flm_weights_mode mode, flm_model **keep) {
    flm_model_options mo = {.lora_dirs = &lora, .n_lora = lora ? 1 : 0, .weights = mode};
    flm_model *m = NULL;
    if (flm_load_model(path, &mo, &m) != FLM_OK) {
        test_fail(__FILE__, __LINE__, "open %s: %s", path, flm_last_error());
        return NULL;
    }
    enum { N = 9 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
    float *lg = malloc((size_t)N * (size_t)m->cfg.vocab_size * sizeof *lg);
    flm_forward_state *st = NULL;
    if (!lg || flm_forward_new(m, 32, &st) || flm_forward(st, ids, N, lg, FLM_LOGITS_ALL)) {
        test_fail(__FILE__, __LINE__, "forward %s: %s", path, flm_last_error());
        free(lg);
        lg = NULL;
    }
    flm_forward_free(st);
    if (keep) *keep = m;
    else flm_model_close(m);
    return lg;
}

static void check_same(const char *path, const char *lora, bool expect_loaded) {
    flm_model *mm = NULL, *ml = NULL;
    float *a = logits_of(path, lora, FLM_WEIGHTS_MAP, &mm);
    float *b = logits_of(path, lora, FLM_WEIGHTS_LOAD, &ml);
    if (a && b) {
        size_t n = 9 * (size_t)mm->cfg.vocab_size;
        CHECK_MSG(memcmp(a, b, n * sizeof *a) == 0, "%s: loaded and mapped weights give different logits", path);
    }
    if (mm && ml) {
        CHECK_EQ_INT(flm_model_loaded_bytes(mm), 0);
        CHECK_MSG(expect_loaded == (flm_model_loaded_bytes(ml) > 0), "%s: loaded %zu bytes", path, flm_model_loaded_bytes(ml));
        /* nothing of the loaded model points into its files any more */
        flm_tensor *w[] = {&ml->embed, &ml->lm_head, &ml->layers[0].wq, &ml->layers[0].w_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) CHECK(!flm_model_is_mapped(ml, w[i]->data));
        if (ml->cfg.tie_word_embeddings) CHECK(ml->lm_head.data == ml->embed.data);
        CHECK(flm_model_huge_page_bytes(ml) <= flm_model_loaded_bytes(ml) + ((size_t)2 << 20));
    }
    free(a);
    free(b);
    flm_model_close(mm);
    flm_model_close(ml);
}

TEST(weights_loaded_equal_mapped_hf_folder) { check_same(MICRO, NULL, true); }
TEST(weights_loaded_equal_mapped_gguf_tied) { check_same(PEER_GGUF, NULL, true); }
/* Every micro matrix is LoRA-merged (an owned f32 copy) or loaded: same logits either way. */
TEST(weights_loaded_equal_mapped_with_lora) { check_same(MICRO, TEST_DATA "/micro-qwen2-lora", true); }

/* Logits of a fixed prompt from m under table k (NULL: the default). Caller frees.
 * 37 tokens: two full 16-token AMX tiles and a padded one where the table has AMX. */
enum { LOGIT_TOKENS = 37 };
static float *logits_with(flm_model *m, const flm_kernels *k) {
    enum { N = LOGIT_TOKENS };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 104729 + 5) % m->cfg.vocab_size);
    float *lg = malloc((size_t)N * (size_t)m->cfg.vocab_size * sizeof *lg);
    flm_forward_state *st = NULL;
    if (!lg || flm_forward_new(m, 64, &st)) { free(lg); return NULL; }
    if (k) flm_forward_set_kernels(st, k);
    if (flm_forward(st, ids, N, lg, FLM_LOGITS_ALL)) { free(lg); lg = NULL; }
    flm_forward_free(st);
    return lg;
}

/* Loading packs the q8_0/q4_0 matrices (and a tied embedding, which is the LM head;
 * an untied one only serves row lookups and stays) into the default table's int8
 * layout when it has one; FLM_QPACK=0 keeps the file's; a packed model run by another
 * table (here the scalar reference) unpacks rows on the way and gives that table's
 * logits of the unpacked model, bit for bit. */
static void check_packed(const char *path) {
    const flm_qpacked_fns *pk = flm_kernels_select()->qpacked;
    flm_model_options load = {.weights = FLM_WEIGHTS_LOAD}, map = {.weights = FLM_WEIGHTS_MAP};
    flm_model *packed = NULL, *plain = NULL, *mapped = NULL;
    REQUIRE(flm_load_model(path, &load, &packed) == FLM_OK);
    setenv("FLM_QPACK", "0", 1);
    int rc = flm_load_model(path, &load, &plain);
    unsetenv("FLM_QPACK");
    REQUIRE(rc == FLM_OK && flm_load_model(path, &map, &mapped) == FLM_OK);
    bool tied = packed->lm_head.data == packed->embed.data;
    CHECK_STR(flm_model_weight_layout(packed), pk->name);
    CHECK(packed->layers[0].wq.layout == pk && packed->layers[0].w_down.layout == pk && packed->lm_head.layout == pk);
    CHECK_MSG(packed->embed.layout == (tied ? pk : NULL), "%s: the %s embedding %s packed", path, tied ? "tied" : "untied",
              packed->embed.layout ? "is" : "is not");
    CHECK(flm_model_weight_layout(plain) == NULL && plain->layers[0].wq.layout == NULL);
    CHECK(flm_model_weight_layout(mapped) == NULL && mapped->lm_head.layout == NULL);
    /* same sizes; different bytes (a one-block q4_0 row, 32 columns, packs to itself) */
    const flm_tensor *wp = &packed->layers[0].w_up, *wf = &plain->layers[0].w_up;
    CHECK(wp->nbytes == wf->nbytes);
    CHECK(wp->shape[1] < 64 || memcmp(wp->data, wf->data, wf->nbytes) != 0);
    size_t n = LOGIT_TOKENS * (size_t)packed->cfg.vocab_size * sizeof(float);
    const flm_kernels *scalar = flm_kernels_variant("scalar", true);
    float *a = logits_with(packed, NULL), *b = logits_with(plain, NULL), *c = logits_with(packed, scalar), *d = logits_with(mapped, scalar);
    REQUIRE(a && b && c && d);
    CHECK_MSG(memcmp(a, b, n) == 0, "%s: packed and file-layout weights give different logits", path);
    CHECK_MSG(memcmp(c, d, n) == 0, "%s: the scalar table on packed weights differs from it on the file's", path);
    free(a); free(b); free(c); free(d);
    flm_model_close(packed);
    flm_model_close(plain);
    flm_model_close(mapped);
}

TEST(weights_packed_layout) {
    if (!flm_kernels_select()->qpacked) { printf("    (the %s table has no packed layout: skipped)\n", flm_kernels_select()->name); return; }
    check_packed(PEER_GGUF); /* q8_0, tied */
    /* q4_0, tied (tiny-qwen2) and untied (micro-qwen2), converted here */
    static const char *const SRC[] = {TEST_DATA "/tiny-qwen2", MICRO};
    for (int i = 0; i < 2; i++) {
        char out[512];
        snprintf(out, sizeof out, "%s/packed-%d-q4_0.gguf", test_tmpdir(), i);
        flm_convert_options o;
        flm_convert_options_init(&o);
        o.type = FLM_TYPE_Q4_0;
        int rc = flm_convert(SRC[i], out, &o, NULL);
        CHECK_MSG(rc == FLM_OK, "convert %s: %s", SRC[i], flm_last_error());
        if (rc != FLM_OK) return;
        check_packed(out);
    }
}

TEST(weights_loaded_bytes_cover_every_matrix) {
    flm_model_options mo = {.weights = FLM_WEIGHTS_LOAD};
    flm_model *m = NULL;
    REQUIRE(flm_load_model(MICRO, &mo, &m) == FLM_OK);
    size_t want = m->embed.nbytes + (m->lm_head.data != m->embed.data ? m->lm_head.nbytes : 0);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const flm_layer *L = &m->layers[l];
        want += L->wq.nbytes + L->wk.nbytes + L->wv.nbytes + L->wo.nbytes + L->w_gate.nbytes + L->w_up.nbytes + L->w_down.nbytes;
    }
    /* each tensor is padded to 64 bytes in the arena */
    size_t got = flm_model_loaded_bytes(m), slack = (size_t)(2 + 7 * m->cfg.n_layers) * 64;
    CHECK_MSG(got >= want && got <= want + slack, "loaded %zu bytes for %zu bytes of matrices", got, want);
    flm_model_close(m);
}

static flm_json_doc *run_json(const char *args) {
    char cmd[1024], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s %s", test_bin(), args);
    int rc = test_run(cmd, &out, &err);
    flm_json_doc *d = NULL;
    if (rc != 0) test_fail(__FILE__, __LINE__, "%s exited %d: %s", args, rc, err ? err : "");
    else if (!(d = flm_json_parse(out, strlen(out), "json"))) test_fail(__FILE__, __LINE__, "%s: not JSON: %s", args, out);
    free(out);
    free(err);
    return d;
}

/* AUTO maps the weights when a copy would take more than half of the available
 * memory; an explicit --no-mmap still loads them. */
TEST(weights_auto_maps_when_memory_is_short) {
    flm_json_doc *a = run_json("bench -m " MICRO " -p 4 -n 2 --no-membw --json");
    setenv("FLM_TEST_MEM_AVAILABLE_MB", "2", 1); /* micro's matrices take ~2 MiB */
    flm_json_doc *b = run_json("bench -m " MICRO " -p 4 -n 2 --no-membw --json");
    flm_json_doc *c = run_json("bench -m " MICRO " -p 4 -n 2 --no-membw --json --no-mmap");
    unsetenv("FLM_TEST_MEM_AVAILABLE_MB");
    if (a && b && c) {
        const flm_json *wa = flm_json_get(flm_json_root(a), "weights"), *wb = flm_json_get(flm_json_root(b), "weights"), *wc = flm_json_get(flm_json_root(c), "weights");
        CHECK(wa && wa->type == JSON_STRING && !strcmp(wa->str, "loaded"));
        CHECK(wb && wb->type == JSON_STRING && !strcmp(wb->str, "mapped"));
        CHECK(wc && wc->type == JSON_STRING && !strcmp(wc->str, "loaded"));
    }
    flm_json_free(a);
    flm_json_free(b);
    flm_json_free(c);
}

TEST(weights_cli_mmap_flags) {
    flm_json_doc *mapped = run_json("bench -m " MICRO " -p 4 -n 2 --no-membw --json --mmap");
    flm_json_doc *loaded = run_json("bench -m " MICRO " -p 4 -n 2 --no-membw --json --no-mmap");
    if (mapped && loaded) {
        const flm_json *w = flm_json_get(flm_json_root(mapped), "weights"), *l = flm_json_get(flm_json_root(loaded), "weights");
        CHECK(w && w->type == JSON_STRING && !strcmp(w->str, "mapped"));
        CHECK(l && l->type == JSON_STRING && !strcmp(l->str, "loaded"));
        const flm_json *lm = flm_json_get(flm_json_root(loaded), "loaded_mb"), *mm = flm_json_get(flm_json_root(mapped), "loaded_mb");
        CHECK(lm && lm->type == JSON_NUMBER && lm->number > 0);
        CHECK(mm && mm->type == JSON_NUMBER && mm->number == 0);
        CHECK(flm_json_get(flm_json_root(loaded), "load_s") && flm_json_get(flm_json_root(loaded), "decode_step_median_ms"));
    }
    flm_json_free(mapped);
    flm_json_free(loaded);
    /* the same greedy answer either way, through run */
    char cmd[1024], *a = NULL, *b = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m %s --greedy -n 12 --seed 1 --mmap -p 'How to control aphids?' 2>/dev/null", test_bin(), PEER_GGUF);
    CHECK_EQ_INT(test_run(cmd, &a, NULL), 0);
    snprintf(cmd, sizeof cmd, "%s run -m %s --greedy -n 12 --seed 1 --no-mmap -p 'How to control aphids?' 2>/dev/null", test_bin(), PEER_GGUF);
    CHECK_EQ_INT(test_run(cmd, &b, NULL), 0);
    CHECK_MSG(a && b && a[0] && !strcmp(a, b), "--mmap: \"%s\" vs --no-mmap: \"%s\"", a ? a : "", b ? b : "");
    free(a);
    free(b);
}
