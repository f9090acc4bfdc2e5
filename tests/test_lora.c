/* test_lora.c — PEFT LoRA adapters: the merge against peft's merged weights, the
 * fixture adapters against their bases, refusals, scale rules (rsLoRA, patterns),
 * target matching, fan_in_fan_out, several adapters, the same adapter twice,
 * ADAPTER_DIR[:SCALE], and the merge going through the kernel table FLM_KERNELS selects. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "base/common.h"
#include "fieldlm.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "format/safetensors.h"

/* peft's merged weights are float32; the bar is 1e-6 (we measure 0). */
#define MAX_MERGE_ERR 1e-6
#define MICRO_BASE TEST_DATA "/micro-qwen2/model.safetensors"
#define MICRO_LORA TEST_DATA "/micro-qwen2-lora"
#define MICRO_MERGED TEST_DATA "/micro-qwen2-lora/merged/model.safetensors"
#define TINY_BASE TEST_DATA "/tiny-qwen2/model.safetensors"
#define TINY_LORA TEST_DATA "/tiny-qwen2-lora"
#define KCC_BASE BUNDLED_MODEL "/model.safetensors"
#define KCC_LORA TEST_DATA "/kcc-advisor-lora"

/* ---------------------------------------------------------------- helpers */

static float *tensor_f32(const flm_tensor *t) {
    size_t n = (size_t)flm_tensor_numel(t);
    float *d = malloc(n * sizeof *d + 1);
    if (d) flm_dtype_get(t->dtype)->to_float(t->data, d, n);
    return d;
}

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* One tensor for write_st: float values stored as F32, F16 or BF16. */
typedef struct {
    const char *name;
    flm_dtype dtype;
    int64_t rows, cols;
    const float *data;
} st_entry;

/* Writes a minimal safetensors file by hand (header padded to 8 bytes). */
static bool write_st(const char *path, const st_entry *e, size_t n) {
    strbuf h;
    flm_sb_init(&h);
    flm_sb_putc(&h, '{');
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t esz = e[i].dtype == FLM_F32 ? 4 : 2;
        size_t bytes = (size_t)(e[i].rows * e[i].cols) * esz;
        flm_sb_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}", i ? "," : "", e[i].name,
                  e[i].dtype == FLM_F32 ? "F32" : e[i].dtype == FLM_F16 ? "F16" : "BF16", (long long)e[i].rows,
                  (long long)e[i].cols, off, off + bytes);
        off += bytes;
    }
    flm_sb_putc(&h, '}');
    while (h.len % 8) flm_sb_putc(&h, ' ');
    FILE *f = fopen(path, "wb");
    if (!f) { flm_sb_free(&h); return false; }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.data, 1, h.len, f) == h.len;
    for (size_t i = 0; i < n && ok; i++) {
        size_t cnt = (size_t)(e[i].rows * e[i].cols);
        for (size_t j = 0; j < cnt && ok; j++) {
            if (e[i].dtype == FLM_F32) {
                ok = fwrite(&e[i].data[j], 4, 1, f) == 1;
            } else {
                uint16_t v = e[i].dtype == FLM_F16 ? flm_f32_to_f16(e[i].data[j]) : flm_f32_to_bf16(e[i].data[j]);
                unsigned char b[2] = {(unsigned char)(v & 0xff), (unsigned char)(v >> 8)};
                ok = fwrite(b, 1, 2, f) == 2;
            }
        }
    }
    ok = (fclose(f) == 0) && ok;
    flm_sb_free(&h);
    return ok;
}

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return (fclose(f) == 0) && ok;
}

/* A fresh subdirectory of the test tmpdir; returns a static-lifetime copy. */
static const char *make_dir(const char *name) {
    static char bufs[32][512];
    static int next;
    char *p = bufs[next++ % 32];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    mkdir(p, 0700);
    return p;
}

/* Deterministic values in [-1, 1) with few mantissa bits' worth of structure. */
static void fill(float *x, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 8) % 2000 - 1000) / 997.0f;
    }
}

/* A config in peft's layout with `extra` members (",\"k\": v" ...) appended. */
static void write_config(const char *dir, int r, double alpha, const char *target_modules, const char *extra) {
    char path[600], text[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    snprintf(text, sizeof text,
             "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": %g, \"target_modules\": %s, \"bias\": \"none\","
             " \"use_dora\": false, \"lora_bias\": false, \"modules_to_save\": null, \"task_type\": \"CAUSAL_LM\"%s}",
             r, alpha, target_modules, extra ? extra : "");
    CHECK(write_text(path, text));
}

/* The spec merge of one module, written independently of src/model/lora.c:
 * W[i][j] += fl(fmaf-chain_k(B[i][k]·A[k][j]) · scale) (transposed with fifo). */
static void reference_merge(float *W, const float *A, const float *B, int r, int64_t in, int64_t out, float scale, bool fifo) {
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) {
            float s = 0.0f;
            for (int k = 0; k < r; k++) s = fmaf(B[i * r + k], A[(int64_t)k * in + j], s);
            float d = s * scale;
            float *w = fifo ? &W[j * out + i] : &W[i * in + j];
            *w = *w + d;
        }
}

/* A synthetic two-layer adapter on q_proj ([OUT, IN]) with per-layer ranks. */
#define SYN_IN 33
#define SYN_OUT 17
typedef struct {
    float A[2][8 * SYN_IN], B[2][SYN_OUT * 8];
    int rank[2];
} syn_adapter;

static void write_syn(const char *dir, syn_adapter *s, const int rank[2], flm_dtype dtype, uint32_t seed) {
    char names[4][128], path[600];
    st_entry e[4];
    for (int l = 0; l < 2; l++) {
        s->rank[l] = rank[l];
        fill(s->A[l], (size_t)rank[l] * SYN_IN, seed + 10 * (uint32_t)l);
        fill(s->B[l], (size_t)SYN_OUT * rank[l], seed + 10 * (uint32_t)l + 1);
        /* values the stored dtype holds exactly, so the test's float copies are the truth */
        for (int i = 0; i < rank[l] * SYN_IN; i++)
            s->A[l][i] = dtype == FLM_F16 ? flm_f16_to_f32(flm_f32_to_f16(s->A[l][i])) : dtype == FLM_BF16 ? flm_bf16_to_f32(flm_f32_to_bf16(s->A[l][i])) : s->A[l][i];
        for (int i = 0; i < rank[l] * SYN_OUT; i++)
            s->B[l][i] = dtype == FLM_F16 ? flm_f16_to_f32(flm_f32_to_f16(s->B[l][i])) : dtype == FLM_BF16 ? flm_bf16_to_f32(flm_f32_to_bf16(s->B[l][i])) : s->B[l][i];
        snprintf(names[2 * l], sizeof names[0], "base_model.model.model.layers.%d.self_attn.q_proj.lora_A.weight", l);
        snprintf(names[2 * l + 1], sizeof names[0], "base_model.model.model.layers.%d.self_attn.q_proj.lora_B.weight", l);
        e[2 * l] = (st_entry){names[2 * l], dtype, rank[l], SYN_IN, s->A[l]};
        e[2 * l + 1] = (st_entry){names[2 * l + 1], dtype, SYN_OUT, rank[l], s->B[l]};
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(write_st(path, e, 4));
}

static const char *const SYN_W[2] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"};

/* ---------------------------------------------------------------- fixtures */

TEST(lora_micro_merge_matches_peft) {
    flm_lora *l = NULL;
    REQUIRE(flm_lora_open(MICRO_LORA, 1.0f, &l) == FLM_OK);
    flm_st_file *base = NULL, *merged = NULL;
    REQUIRE(flm_st_open(MICRO_BASE, &base) == FLM_OK);
    REQUIRE(flm_st_open(MICRO_MERGED, &merged) == FLM_OK);
    CHECK_MSG(flm_lora_check_base_st(l, base) == FLM_OK, "%s", flm_last_error());
    CHECK_EQ_INT(flm_lora_rank(l), 4);
    CHECK_NEAR(flm_lora_alpha(l), 8, 0);
    CHECK_NEAR(flm_lora_scale(l), 2, 0);
    CHECK(!flm_lora_rslora(l));
    CHECK_STR(flm_lora_base_model(l), "../micro-qwen2");
    CHECK_STR(flm_lora_peft_version(l), "0.21.0");
    CHECK(!flm_lora_target_is_regex(l));
    CHECK_EQ_INT(flm_lora_target_count(l), 2);
    CHECK_STR(flm_lora_target_at(l, 0), "q_proj");
    CHECK_EQ_INT(flm_lora_module_count(l), 6);
    CHECK_STR(flm_lora_module_at(l, 0), "model.layers.0.self_attn.q_proj.weight");

    double max_err = 0;
    size_t targeted = 0, exact = 0, total = 0;
    CHECK_EQ_INT(flm_st_count(base), flm_st_count(merged));
    for (size_t i = 0; i < flm_st_count(base); i++) {
        const flm_tensor *t = flm_st_tensor_at(base, i);
        const flm_tensor *m = flm_st_find(merged, t->name);
        REQUIRE(m && flm_tensor_numel(m) == flm_tensor_numel(t));
        float *w = tensor_f32(t), *want = tensor_f32(m);
        REQUIRE(w && want);
        int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
        bool tg = flm_lora_targets(l, t->name);
        CHECK_EQ_INT(flm_lora_apply(l, t->name, w, rows, cols), FLM_OK);
        size_t n = (size_t)flm_tensor_numel(t);
        for (size_t j = 0; j < n; j++) {
            double e = fabs((double)w[j] - (double)want[j]);
            if (tg) {
                if (e > max_err) max_err = e;
                exact += w[j] == want[j];
                total++;
            } else if (w[j] != want[j]) {
                CHECK_MSG(0, "untargeted %s[%zu] changed: %.9g vs %.9g", t->name, j, w[j], want[j]);
                break;
            }
        }
        targeted += tg;
        free(w);
        free(want);
    }
    CHECK_EQ_INT(targeted, 6);
    CHECK_MSG(max_err <= MAX_MERGE_ERR, "max merge error %.3g", max_err);
    printf("    micro merge vs peft: max abs err %.3g, bit-exact %zu/%zu\n", max_err, exact, total);
    flm_st_close(base);
    flm_st_close(merged);
    flm_lora_close(l);
}

/* The merge goes through a kernel table's lora_row: flm_lora_apply uses
 * flm_lora_kernels(), the dispatcher's table (FLM_KERNELS when set and available);
 * flm_lora_apply_with calls the given table's row once per output row; every table
 * this build and CPU runs gives the same bits on the peft fixture. Prints the table
 * (lora_merge_follows_flm_kernels runs this test under each FLM_KERNELS). */
static const flm_kernels *g_counted;
static size_t g_counted_rows;
static void counting_lora_row(const float *u, const float *V, int r, int64_t cols, float scale, float *acc, float *W) {
    g_counted_rows++;
    g_counted->lora_row(u, V, r, cols, scale, acc, W);
}

TEST(lora_merge_goes_through_the_kernel_table) {
    static const char *const TABLES[] = {"scalar", "avx2", "avx512", "neon"};
    const flm_kernels *k = flm_lora_kernels();
    REQUIRE(k && k->lora_row);
    CHECK(k == flm_kernels_best());
    const char *env = getenv("FLM_KERNELS");
    if (env && *env) {
        bool known = false;
        for (size_t i = 0; i < sizeof TABLES / sizeof *TABLES; i++) known |= !strcmp(env, TABLES[i]) && flm_kernels_variant(env, false);
        if (known) CHECK_STR(k->name, env);
    }
    printf("    lora merge table: %s\n", k->name);
    flm_lora *l = NULL;
    REQUIRE(flm_lora_open(MICRO_LORA, 1.0f, &l) == FLM_OK);
    flm_st_file *base = NULL;
    REQUIRE(flm_st_open(MICRO_BASE, &base) == FLM_OK);
    flm_kernels counting = *k;
    counting.lora_row = counting_lora_row;
    g_counted = k;
    size_t merged = 0;
    for (size_t i = 0; i < flm_st_count(base); i++) {
        const flm_tensor *t = flm_st_tensor_at(base, i);
        if (!flm_lora_targets(l, t->name)) continue;
        int64_t rows = t->shape[0], cols = t->shape[1];
        size_t n = (size_t)flm_tensor_numel(t);
        float *w0 = tensor_f32(t), *w1 = tensor_f32(t), *w2 = tensor_f32(t);
        REQUIRE(w0 && w1 && w2);
        CHECK_EQ_INT(flm_lora_apply(l, t->name, w1, rows, cols), FLM_OK);
        CHECK(memcmp(w0, w1, n * sizeof(float)) != 0);
        g_counted_rows = 0;
        CHECK_EQ_INT(flm_lora_apply_with(l, &counting, t->name, w2, rows, cols), FLM_OK);
        CHECK_EQ_INT(g_counted_rows, rows);
        CHECK_MSG(memcmp(w1, w2, n * sizeof(float)) == 0, "%s: merge through the table differs from flm_lora_apply", t->name);
        for (size_t ti = 0; ti < sizeof TABLES / sizeof *TABLES; ti++) {
            const flm_kernels *kt = flm_kernels_variant(TABLES[ti], false);
            if (!kt) continue;
            memcpy(w2, w0, n * sizeof(float));
            CHECK_EQ_INT(flm_lora_apply_with(l, kt, t->name, w2, rows, cols), FLM_OK);
            CHECK_MSG(memcmp(w1, w2, n * sizeof(float)) == 0, "%s: the %s table merges other bits than %s", t->name, kt->name, k->name);
        }
        /* no table, or one without a merge row: refused, W untouched */
        memcpy(w2, w0, n * sizeof(float));
        CHECK_EQ_INT(flm_lora_apply_with(l, NULL, t->name, w2, rows, cols), FLM_ERR_ARG);
        counting.lora_row = NULL;
        CHECK_EQ_INT(flm_lora_apply_with(l, &counting, t->name, w2, rows, cols), FLM_ERR_ARG);
        counting.lora_row = counting_lora_row;
        CHECK(memcmp(w0, w2, n * sizeof(float)) == 0);
        free(w0);
        free(w1);
        free(w2);
        merged++;
    }
    CHECK_EQ_INT(merged, 6);
    flm_st_close(base);
    flm_lora_close(l);
}

/* FLM_KERNELS reaches the merge: the test above, run in a child process under each
 * table this CPU runs, merges with that table (and says so); a convert with the
 * adapter under FLM_KERNELS=scalar writes the same file as with the default table. */
TEST(lora_merge_follows_flm_kernels) {
    static const char *const TABLES[] = {"scalar", "avx2", "avx512", "neon"};
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(len > 0);
    self[len] = 0;
    char cmd[8192], want[64];
    for (size_t i = 0; i < sizeof TABLES / sizeof *TABLES; i++) {
        if (!flm_kernels_variant(TABLES[i], false)) continue;
        snprintf(cmd, sizeof cmd, "FLM_KERNELS=%s '%s' lora_merge_goes_through_the_kernel_table", TABLES[i], self);
        char *out = NULL, *err = NULL;
        int rc = test_run(cmd, &out, &err);
        snprintf(want, sizeof want, "lora merge table: %s\n", TABLES[i]);
        CHECK_MSG(rc == 0 && has(out, want) && has(out, "1 passed, 0 failed"), "FLM_KERNELS=%s: exit %d, output:\n%s%s", TABLES[i], rc,
                  out ? out : "", err ? err : "");
        free(out);
        free(err);
    }
    const char *tmp = test_tmpdir();
    char *o1 = NULL, *o2 = NULL;
    snprintf(cmd, sizeof cmd, "env -u FLM_KERNELS %s convert %s --lora %s -o %s/default.gguf --type f32 -q && FLM_KERNELS=scalar %s convert %s --lora %s -o "
             "%s/scalar.gguf --type f32 -q && cmp %s/default.gguf %s/scalar.gguf && echo same",
             test_bin(), "tests/data/micro-qwen2", MICRO_LORA, tmp, test_bin(), "tests/data/micro-qwen2", MICRO_LORA, tmp, tmp, tmp);
    int rc = test_run(cmd, &o1, &o2);
    CHECK_MSG(rc == 0 && has(o1, "same"), "convert with the adapter under FLM_KERNELS=scalar vs default: exit %d\n%s%s", rc, o1 ? o1 : "",
              o2 ? o2 : "");
    free(o1);
    free(o2);
}

TEST(lora_tiny_and_kcc_check_clean) {
    static const struct { const char *lora, *base; size_t modules; int r; } CASES[] = {
        {TINY_LORA, TINY_BASE, 2 * 7, 8},
        {KCC_LORA, KCC_BASE, 4 * 7, 16},
    };
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        flm_lora *l = NULL;
        flm_st_file *base = NULL;
        CHECK_MSG(flm_lora_open(CASES[c].lora, 1.0f, &l) == FLM_OK, "%s: %s", CASES[c].lora, flm_last_error());
        CHECK_MSG(flm_st_open(CASES[c].base, &base) == FLM_OK, "%s", flm_last_error());
        if (!l || !base) { flm_lora_close(l); flm_st_close(base); continue; }
        CHECK_MSG(flm_lora_check_base_st(l, base) == FLM_OK, "%s: %s", CASES[c].lora, flm_last_error());
        CHECK_EQ_INT(flm_lora_module_count(l), CASES[c].modules);
        CHECK_EQ_INT(flm_lora_rank(l), CASES[c].r);
        CHECK_NEAR(flm_lora_scale(l), 2, 0);
        CHECK_EQ_INT(flm_lora_target_count(l), 7);
        /* every targeted bf16 weight merges to finite values and changes */
        for (size_t i = 0; i < flm_lora_module_count(l); i++) {
            const char *name = flm_lora_module_at(l, i);
            const flm_tensor *t = flm_st_find(base, name);
            REQUIRE(t && t->ndim == 2);
            float *w = tensor_f32(t), *w0 = tensor_f32(t);
            REQUIRE(w && w0);
            CHECK_EQ_INT(flm_lora_apply(l, name, w, t->shape[0], t->shape[1]), FLM_OK);
            size_t changed = 0, n = (size_t)flm_tensor_numel(t);
            for (size_t j = 0; j < n; j++) {
                CHECK(isfinite(w[j]));
                changed += w[j] != w0[j];
            }
            CHECK_MSG(changed > 0, "%s unchanged", name);
            free(w);
            free(w0);
        }
        flm_st_close(base);
        flm_lora_close(l);
    }
}

TEST(lora_other_base_is_named) {
    flm_lora *l = NULL;
    flm_st_file *micro = NULL, *tiny = NULL, *kcc = NULL;
    REQUIRE(flm_st_open(MICRO_BASE, &micro) == FLM_OK);
    REQUIRE(flm_st_open(TINY_BASE, &tiny) == FLM_OK);
    REQUIRE(flm_st_open(KCC_BASE, &kcc) == FLM_OK);
    /* tiny adapter (hidden 32) on the micro base (hidden 128) */
    REQUIRE(flm_lora_open(TINY_LORA, 1.0f, &l) == FLM_OK);
    CHECK_EQ_INT(flm_lora_check_base_st(l, micro), FLM_ERR_FORMAT);
    const char *e = flm_last_error();
    CHECK_MSG(has(e, "model.layers.0.") && has(e, "different base model") && has(e, "[128, 352]") && has(e, "[32,"), "%s", e);
    flm_lora_close(l);
    /* micro adapter (3 layers) on tiny (2 layers): shapes differ already at layer 0 */
    REQUIRE(flm_lora_open(MICRO_LORA, 1.0f, &l) == FLM_OK);
    CHECK_EQ_INT(flm_lora_check_base_st(l, tiny), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "model.layers.0.self_attn.q_proj.weight"), "%s", flm_last_error());
    /* micro adapter on kcc (4 layers, hidden 128, 2 KV heads): q fits, v_proj is [64, 128] */
    CHECK_EQ_INT(flm_lora_check_base_st(l, kcc), FLM_ERR_FORMAT);
    e = flm_last_error();
    CHECK_MSG(has(e, "model.layers.0.self_attn.v_proj.weight") && has(e, "[32, 128]") && has(e, "[64, 128]"), "%s", e);
    /* a base with a layer the adapter lacks: target_modules selects it */
    flm_lora_base_weight extra[] = {
        {"model.layers.0.self_attn.q_proj.weight", 2, {128, 128}}, {"model.layers.0.self_attn.v_proj.weight", 2, {32, 128}},
        {"model.layers.1.self_attn.q_proj.weight", 2, {128, 128}}, {"model.layers.1.self_attn.v_proj.weight", 2, {32, 128}},
        {"model.layers.2.self_attn.q_proj.weight", 2, {128, 128}}, {"model.layers.2.self_attn.v_proj.weight", 2, {32, 128}},
        {"model.layers.3.self_attn.q_proj.weight", 2, {128, 128}},
    };
    size_t n = sizeof extra / sizeof *extra;
    CHECK_EQ_INT(flm_lora_check_base(l, extra, n - 1), FLM_OK);
    CHECK_EQ_INT(flm_lora_check_base(l, extra, n), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "model.layers.3.self_attn.q_proj") && has(flm_last_error(), "no lora_A/lora_B"), "%s", flm_last_error());
    /* a module missing from the base */
    CHECK_EQ_INT(flm_lora_check_base(l, extra, 5), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "model.layers.2.self_attn.v_proj.weight") && has(flm_last_error(), "not in the base model"), "%s", flm_last_error());
    /* apply with the wrong shape: error, W untouched */
    float w[4] = {1, 2, 3, 4};
    CHECK_EQ_INT(flm_lora_apply(l, "model.layers.0.self_attn.q_proj.weight", w, 2, 2), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "[128, 128]") && has(flm_last_error(), "[2, 2]"), "%s", flm_last_error());
    CHECK(w[0] == 1 && w[3] == 4);
    /* untargeted names are a no-op */
    CHECK_EQ_INT(flm_lora_apply(l, "model.layers.0.self_attn.k_proj.weight", w, 2, 2), FLM_OK);
    CHECK(!flm_lora_targets(l, "model.layers.0.self_attn.k_proj.weight"));
    flm_lora_close(l);
    flm_st_close(micro);
    flm_st_close(tiny);
    flm_st_close(kcc);
}

/* ---------------------------------------------------------------- refusals */

TEST(lora_missing_config_and_pickle_only) {
    flm_lora *l = NULL;
    const char *d = make_dir("no-config");
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", d);
    float one = 1;
    st_entry e = {"base_model.model.x.lora_A.weight", FLM_F32, 1, 1, &one};
    CHECK(write_st(path, &e, 1));
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_IO);
    CHECK_MSG(has(flm_last_error(), "adapter_config.json"), "%s", flm_last_error());
    CHECK(l == NULL);

    d = make_dir("pickle-only");
    write_config(d, 4, 8, "[\"q_proj\"]", NULL);
    snprintf(path, sizeof path, "%s/adapter_model.bin", d);
    CHECK(write_text(path, "\x80\x02pickle"));
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_UNSUPPORTED);
    const char *m = flm_last_error();
    CHECK_MSG(has(m, "adapter_model.bin") && has(m, "pickle") && has(m, "save_pretrained") && has(m, "safe_serialization=True"), "%s", m);

    CHECK_EQ_INT(flm_lora_open(TEST_DATA "/no-such-adapter", 1.0f, &l), FLM_ERR_IO);
}

TEST(lora_refuses_unsupported_options) {
    static const struct { const char *extra, *named; int status; } CASES[] = {
        {", \"use_dora\": true", "use_dora", FLM_ERR_UNSUPPORTED},
        {", \"lora_bias\": true", "lora_bias", FLM_ERR_UNSUPPORTED},
        {", \"modules_to_save\": [\"lm_head\"]", "modules_to_save", FLM_ERR_UNSUPPORTED},
        {", \"layer_replication\": [[0, 2]]", "layer_replication", FLM_ERR_UNSUPPORTED},
        {", \"trainable_token_indices\": [1, 2]", "trainable_token_indices", FLM_ERR_UNSUPPORTED},
        {", \"alora_invocation_tokens\": [5]", "alora_invocation_tokens", FLM_ERR_UNSUPPORTED},
        {", \"init_lora_weights\": \"pissa\"", "pissa", FLM_ERR_UNSUPPORTED},
        {", \"loftq_config\": {\"loftq_bits\": 4}", "loftq_config", FLM_ERR_UNSUPPORTED},
        {", \"some_future_option\": 3", "some_future_option", FLM_ERR_UNSUPPORTED},
        {", \"rank_pattern\": {\"q_proj\": 0}", "rank_pattern", FLM_ERR_FORMAT},
        {", \"rank_pattern\": {\"q_proj(\": 2}", "invalid regular expression", FLM_ERR_FORMAT},
    };
    int rank[2] = {4, 4};
    syn_adapter s;
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char name[32];
        snprintf(name, sizeof name, "refuse-%zu", i);
        const char *d = make_dir(name);
        write_config(d, 4, 8, "[\"q_proj\"]", CASES[i].extra);
        write_syn(d, &s, rank, FLM_F32, 1);
        flm_lora *l = NULL;
        CHECK_MSG(flm_lora_open(d, 1.0f, &l) == CASES[i].status, "case %zu accepted or wrong status", i);
        CHECK_MSG(has(flm_last_error(), CASES[i].named), "case %zu: %s", i, flm_last_error());
        flm_lora_close(l);
    }
    /* non-LoRA peft types and biases */
    const char *d = make_dir("refuse-type");
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", d);
    write_syn(d, &s, rank, FLM_F32, 1);
    flm_lora *l = NULL;
    CHECK(write_text(path, "{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\"]}"));
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_UNSUPPORTED);
    CHECK_MSG(has(flm_last_error(), "IA3"), "%s", flm_last_error());
    CHECK(write_text(path, "{\"peft_type\": \"LORA\", \"bias\": \"lora_only\", \"target_modules\": [\"q_proj\"]}"));
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_UNSUPPORTED);
    CHECK_MSG(has(flm_last_error(), "lora_only"), "%s", flm_last_error());
    /* harmless falsy unknowns and the peft 0.18 layout pass the config stage */
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"future_flag\": false, \"future_cfg\": null, \"init_lora_weights\": \"gaussian\"");
    CHECK_MSG(flm_lora_open(d, 1.0f, &l) == FLM_OK, "%s", flm_last_error());
    flm_lora_close(l);
}

TEST(lora_refuses_bad_tensors) {
    int rank[2] = {4, 4};
    syn_adapter s;
    const char *d = make_dir("bad-tensors");
    write_config(d, 4, 8, "[\"q_proj\"]", NULL);
    write_syn(d, &s, rank, FLM_F32, 2);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", d);
    flm_lora *l = NULL;
    /* lora_A without lora_B */
    st_entry e[2] = {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", FLM_F32, 4, SYN_IN, s.A[0]},
                     {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", FLM_F32, SYN_OUT, 4, s.B[0]}};
    CHECK(write_st(path, e, 1));
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "model.layers.0.self_attn.q_proj") && has(flm_last_error(), "lora_A but no lora_B"), "%s", flm_last_error());
    /* rank in the file differs from r */
    e[0].rows = 2;
    e[1].cols = 2;
    CHECK(write_st(path, e, 2));
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "rank from the config is 4") && has(flm_last_error(), "[2, 33]"), "%s", flm_last_error());
    /* a module target_modules does not select */
    write_config(d, 2, 8, "[\"k_proj\"]", NULL);
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "does not select"), "%s", flm_last_error());
    /* DoRA / embedding tensors, foreign names */
    write_config(d, 2, 8, "[\"q_proj\"]", NULL);
    float one = 1;
    st_entry odd[] = {{"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", FLM_F32, 1, 1, &one},
                      {"base_model.model.model.embed_tokens.lora_embedding_A", FLM_F32, 1, 1, &one},
                      {"model.layers.0.self_attn.q_proj.weight", FLM_F32, 1, 1, &one}};
    const char *want[] = {"DoRA", "embedding", "unexpected tensor"};
    for (size_t i = 0; i < 3; i++) {
        CHECK(write_st(path, &odd[i], 1));
        CHECK(flm_lora_open(d, 1.0f, &l) < 0);
        CHECK_MSG(has(flm_last_error(), want[i]), "%s", flm_last_error());
    }
}

/* ---------------------------------------------------------------- scale rules */

/* Opens dir, merges both synthetic modules into zero-based W, and compares with
 * the independent reference merge at the given per-layer scales: bit-exact. */
static void check_syn_merge(const char *dir, const syn_adapter *s, const float scale[2], bool fifo, float user) {
    flm_lora *l = NULL;
    CHECK_MSG(flm_lora_open(dir, user, &l) == FLM_OK, "%s: %s", dir, flm_last_error());
    if (!l) return;
    for (int layer = 0; layer < 2; layer++) {
        float got[SYN_IN * SYN_OUT], want[SYN_IN * SYN_OUT];
        fill(got, SYN_IN * SYN_OUT, 99 + (uint32_t)layer);
        memcpy(want, got, sizeof got);
        CHECK_NEAR(flm_lora_module_scale(l, SYN_W[layer]), scale[layer], 0);
        CHECK_EQ_INT(flm_lora_module_rank(l, SYN_W[layer]), s->rank[layer]);
        int64_t rows = fifo ? SYN_IN : SYN_OUT, cols = fifo ? SYN_OUT : SYN_IN;
        CHECK_MSG(flm_lora_apply(l, SYN_W[layer], got, rows, cols) == FLM_OK, "%s", flm_last_error());
        reference_merge(want, s->A[layer], s->B[layer], s->rank[layer], SYN_IN, SYN_OUT, scale[layer], fifo);
        for (int i = 0; i < SYN_IN * SYN_OUT; i++)
            if (got[i] != want[i]) {
                CHECK_MSG(0, "%s layer %d [%d]: %.9g vs %.9g", dir, layer, i, got[i], want[i]);
                break;
            }
    }
    flm_lora_close(l);
}

TEST(lora_rslora_scale) {
    int rank[2] = {4, 4};
    syn_adapter s;
    const char *d = make_dir("rslora");
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"use_rslora\": true");
    write_syn(d, &s, rank, FLM_F32, 3);
    const float scale[2] = {4.0f, 4.0f}; /* 8 / sqrt(4) */
    check_syn_merge(d, &s, scale, false, 1.0f);
    flm_lora *l = NULL;
    REQUIRE(flm_lora_open(d, 1.0f, &l) == FLM_OK);
    CHECK(flm_lora_rslora(l));
    CHECK_NEAR(flm_lora_scale(l), 4, 0);
    flm_lora_close(l);
    /* r = 8, alpha 16: 16/sqrt(8) rounded to float32 */
    int rank8[2] = {8, 8};
    d = make_dir("rslora8");
    write_config(d, 8, 16, "[\"q_proj\"]", ", \"use_rslora\": true");
    write_syn(d, &s, rank8, FLM_F32, 4);
    const float scale8[2] = {(float)(16 / sqrt(8.0)), (float)(16 / sqrt(8.0))};
    check_syn_merge(d, &s, scale8, false, 1.0f);
}

TEST(lora_rank_and_alpha_patterns) {
    /* layer 1 has rank 2 (full-name key), layer 0's alpha is 32 (suffix key);
     * "q_proj" in alpha_pattern comes later and must not win for layer 0 */
    int rank[2] = {4, 2};
    syn_adapter s;
    const char *d = make_dir("patterns");
    write_config(d, 4, 8, "[\"q_proj\"]",
                 ", \"rank_pattern\": {\"model.layers.1.self_attn.q_proj\": 2},"
                 " \"alpha_pattern\": {\"layers.0.self_attn.q_proj\": 32, \"q_proj\": 6}");
    write_syn(d, &s, rank, FLM_F32, 5);
    const float scale[2] = {32.0f / 4, 6.0f / 2};
    check_syn_merge(d, &s, scale, false, 1.0f);
    /* a pattern key is a regex matched at a dot boundary: "ayers.1.self_attn.q_proj" does not match */
    d = make_dir("patterns-boundary");
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"rank_pattern\": {\"ayers.1.self_attn.q_proj\": 2}");
    write_syn(d, &s, rank, FLM_F32, 5);
    flm_lora *l = NULL;
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "rank from the config is 4"), "%s", flm_last_error());
    /* regex key with rslora */
    d = make_dir("patterns-regex");
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"use_rslora\": true, \"rank_pattern\": {\"layers\\\\.[1-9]\\\\..*\": 2}");
    write_syn(d, &s, rank, FLM_F32, 6);
    const float scale_rs[2] = {8.0f / 2, (float)(8 / sqrt(2.0))};
    check_syn_merge(d, &s, scale_rs, false, 1.0f);
}

TEST(lora_target_modules_rules) {
    int rank[2] = {4, 4};
    syn_adapter s;
    const char *d = make_dir("regex-target");
    write_syn(d, &s, rank, FLM_F32, 7);
    const float scale[2] = {2, 2};
    /* a string is a regex matched against the whole module name */
    write_config(d, 4, 8, "\"model\\\\.layers\\\\.\\\\d+\\\\.self_attn\\\\.(q|k)_proj\"", NULL);
    check_syn_merge(d, &s, scale, false, 1.0f);
    flm_lora *l = NULL;
    REQUIRE(flm_lora_open(d, 1.0f, &l) == FLM_OK);
    CHECK(flm_lora_target_is_regex(l));
    /* the regex selects k_proj too: a base with k_proj and no adapter weights is another model */
    flm_lora_base_weight base[] = {{SYN_W[0], 2, {SYN_OUT, SYN_IN}}, {SYN_W[1], 2, {SYN_OUT, SYN_IN}},
                                   {"model.layers.0.self_attn.k_proj.weight", 2, {SYN_OUT, SYN_IN}},
                                   {"model.layers.0.self_attn.q_proj.bias", 1, {SYN_OUT}}};
    CHECK_EQ_INT(flm_lora_check_base(l, base, 2), FLM_OK);
    CHECK_EQ_INT(flm_lora_check_base(l, base, 3), FLM_ERR_FORMAT);
    CHECK_EQ_INT(flm_lora_check_base(l, base + 3, 0), FLM_ERR_FORMAT); /* modules missing */
    flm_lora_close(l);
    /* a partial regex does not match: "q_proj" as a string is a full match */
    write_config(d, 4, 8, "\"q_proj\"", NULL);
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "does not select"), "%s", flm_last_error());
    /* list entries match whole names or dot-suffixes only: "_proj" does not */
    write_config(d, 4, 8, "[\"_proj\"]", NULL);
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    write_config(d, 4, 8, "[\"self_attn.q_proj\"]", NULL);
    check_syn_merge(d, &s, scale, false, 1.0f);
    /* exclude_modules wins over target_modules */
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"exclude_modules\": [\"layers.1.self_attn.q_proj\"]");
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    /* layers_to_transform */
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"layers_to_transform\": [1], \"layers_pattern\": \"layers\"");
    CHECK_EQ_INT(flm_lora_open(d, 1.0f, &l), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "model.layers.0.self_attn.q_proj"), "%s", flm_last_error());
    write_config(d, 4, 8, "[\"q_proj\"]", ", \"layers_to_transform\": [0, 1]");
    check_syn_merge(d, &s, scale, false, 1.0f);
}

TEST(lora_fan_in_fan_out) {
    int rank[2] = {3, 3};
    syn_adapter s;
    const char *d = make_dir("fifo");
    write_config(d, 3, 5, "[\"q_proj\"]", ", \"fan_in_fan_out\": true");
    write_syn(d, &s, rank, FLM_F32, 8);
    const float scale[2] = {(float)(5 / 3.0), (float)(5 / 3.0)};
    check_syn_merge(d, &s, scale, true, 1.0f);
    flm_lora *l = NULL;
    REQUIRE(flm_lora_open(d, 1.0f, &l) == FLM_OK);
    CHECK(flm_lora_fan_in_fan_out(l));
    /* the base is stored [in, out] */
    flm_lora_base_weight base[] = {{SYN_W[0], 2, {SYN_IN, SYN_OUT}}, {SYN_W[1], 2, {SYN_IN, SYN_OUT}}};
    CHECK_EQ_INT(flm_lora_check_base(l, base, 2), FLM_OK);
    base[1].shape[0] = SYN_OUT;
    base[1].shape[1] = SYN_IN;
    CHECK_EQ_INT(flm_lora_check_base(l, base, 2), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "fan_in_fan_out") && has(flm_last_error(), "[33, 17]"), "%s", flm_last_error());
    flm_lora_close(l);
}

TEST(lora_half_precision_factors) {
    static const flm_dtype DT[] = {FLM_F16, FLM_BF16};
    for (size_t i = 0; i < 2; i++) {
        int rank[2] = {5, 5};
        syn_adapter s;
        char name[32];
        snprintf(name, sizeof name, "half-%zu", i);
        const char *d = make_dir(name);
        write_config(d, 5, 10, "[\"q_proj\"]", NULL);
        write_syn(d, &s, rank, DT[i], 9);
        const float scale[2] = {2, 2};
        check_syn_merge(d, &s, scale, false, 1.0f);
    }
}

TEST(lora_two_adapters_with_user_scales) {
    int rank_a[2] = {4, 4}, rank_b[2] = {2, 3};
    syn_adapter a, b;
    const char *da = make_dir("stack-a"), *db = make_dir("stack-b");
    write_config(da, 4, 8, "[\"q_proj\"]", NULL);
    write_syn(da, &a, rank_a, FLM_F32, 10);
    write_config(db, 2, 3, "[\"q_proj\"]", ", \"rank_pattern\": {\"layers.1.self_attn.q_proj\": 3}");
    write_syn(db, &b, rank_b, FLM_BF16, 11);
    char spec_a[600], spec_b[600];
    snprintf(spec_a, sizeof spec_a, "%s:0.5", da);
    snprintf(spec_b, sizeof spec_b, "%s:-1.25", db);
    char *dir_a = NULL, *dir_b = NULL;
    float sa = 0, sb = 0;
    REQUIRE(flm_lora_parse_spec(spec_a, &dir_a, &sa) == FLM_OK && flm_lora_parse_spec(spec_b, &dir_b, &sb) == FLM_OK);
    CHECK_STR(dir_a, da);
    CHECK_NEAR(sa, 0.5, 0);
    CHECK_NEAR(sb, -1.25, 0);
    flm_lora *la = NULL, *lb = NULL;
    REQUIRE(flm_lora_open(dir_a, sa, &la) == FLM_OK);
    REQUIRE(flm_lora_open(dir_b, sb, &lb) == FLM_OK);
    CHECK_NEAR(flm_lora_user_scale(lb), -1.25, 0);
    CHECK_NEAR(flm_lora_scale(la), 0.5 * 2, 0);
    for (int layer = 0; layer < 2; layer++) {
        float got[SYN_IN * SYN_OUT], want[SYN_IN * SYN_OUT];
        fill(got, SYN_IN * SYN_OUT, 50 + (uint32_t)layer);
        memcpy(want, got, sizeof got);
        CHECK_EQ_INT(flm_lora_apply(la, SYN_W[layer], got, SYN_OUT, SYN_IN), FLM_OK);
        CHECK_EQ_INT(flm_lora_apply(lb, SYN_W[layer], got, SYN_OUT, SYN_IN), FLM_OK);
        reference_merge(want, a.A[layer], a.B[layer], 4, SYN_IN, SYN_OUT, 1.0f, false);
        float scale_b = (float)(-1.25 * (3.0 / b.rank[layer]));
        CHECK_NEAR(flm_lora_module_scale(lb, SYN_W[layer]), scale_b, 0);
        reference_merge(want, b.A[layer], b.B[layer], b.rank[layer], SYN_IN, SYN_OUT, scale_b, false);
        CHECK(memcmp(got, want, sizeof got) == 0);
    }
    flm_lora_close(la);
    flm_lora_close(lb);
    free(dir_a);
    free(dir_b);
}

TEST(lora_parse_spec) {
    static const struct { const char *spec, *dir; float scale; } OK[] = {
        {"adapters/x", "adapters/x", 1.0f},
        {"adapters/x:0.5", "adapters/x", 0.5f},
        {"adapters/x:-2", "adapters/x", -2.0f},
        {"adapters/x:+1e-1", "adapters/x", 0.1f},
        {"adapters/x:.25", "adapters/x", 0.25f},
        {"a:b/c:2", "a:b/c", 2.0f},
        {"C:\\lora", "C:\\lora", 1.0f},
        {"x:nan", "x:nan", 1.0f},
        {"x:0x10", "x:0x10", 1.0f},
        {"x:", "x:", 1.0f},
        {"odd:2:1", "odd:2", 1.0f},
        {"host:8080/dir", "host:8080/dir", 1.0f},
    };
    for (size_t i = 0; i < sizeof OK / sizeof *OK; i++) {
        char *dir = NULL;
        float sc = 0;
        CHECK_MSG(flm_lora_parse_spec(OK[i].spec, &dir, &sc) == FLM_OK, "%s: %s", OK[i].spec, flm_last_error());
        CHECK_STR(dir, OK[i].dir);
        CHECK_NEAR(sc, OK[i].scale, 0);
        free(dir);
    }
    static const char *const BAD[] = {":0.5", "", "x:1e999"};
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        char *dir = NULL;
        float sc = 0;
        CHECK_MSG(flm_lora_parse_spec(BAD[i], &dir, &sc) == FLM_ERR_ARG, "accepted \"%s\"", BAD[i]);
        CHECK(dir == NULL);
    }
}

/* The same adapter twice would be merged twice: flm_lora_check_distinct refuses it,
 * also through another path (a symlink), and the public API (via the model loader)
 * refuses it too. Different adapters pass. */
TEST(lora_same_adapter_twice_refused) {
    char link[600], src[4096];
    snprintf(link, sizeof link, "%s/kcc-lora-link", test_tmpdir());
    REQUIRE(realpath(KCC_LORA, src));
    CHECK(symlink(src, link) == 0);
    flm_lora *ad[3] = {NULL, NULL, NULL};
    REQUIRE(flm_lora_open(KCC_LORA, 1.0f, &ad[0]) == FLM_OK);
    REQUIRE(flm_lora_open(TINY_LORA, 1.0f, &ad[1]) == FLM_OK);
    REQUIRE(flm_lora_open(link, 0.5f, &ad[2]) == FLM_OK);
    CHECK(flm_lora_check_distinct(ad, 2) == FLM_OK);
    CHECK(flm_lora_check_distinct(ad + 1, 2) == FLM_OK);
    CHECK(flm_lora_check_distinct(ad, 3) == FLM_ERR_ARG);
    CHECK_MSG(has(flm_last_error(), "adapters 1 (" KCC_LORA ") and 3") && has(flm_last_error(), KCC_LORA ":1.5"), "%s",
              flm_last_error());
    for (int i = 0; i < 3; i++) flm_lora_close(ad[i]);

    flm_lora_adapter two[2] = {{KCC_LORA, 1.0f}, {KCC_LORA, 1.0f}};
    flm_open_options opt = {.lora = two, .n_lora = 2};
    flm_handle *h = NULL;
    CHECK(flm_open(BUNDLED_MODEL, &opt, &h) == FLM_ERR_ARG);
    CHECK(h == NULL);
    CHECK_MSG(has(flm_errmsg(NULL), "given twice") && has(flm_errmsg(NULL), KCC_LORA ":2"), "%s", flm_errmsg(NULL));
    flm_close(h);
}

/* flm_lora_apply_pool (the converter's merge, rows split over a pool) gives the bits of
 * the one-thread flm_lora_apply for pools of 1, 2 and 3 threads, on every targeted
 * tensor of the micro fixture. */
TEST(lora_merge_on_a_pool_same_bits) {
    flm_lora *l = NULL;
    REQUIRE(flm_lora_open(MICRO_LORA, 1.0f, &l) == FLM_OK);
    flm_st_file *base = NULL;
    REQUIRE(flm_st_open(MICRO_BASE, &base) == FLM_OK);
    int checked = 0;
    for (int nt = 1; nt <= 3; nt++) {
        flm_pool *pool = NULL;
        REQUIRE(flm_pool_new(nt, &pool) == FLM_OK);
        for (size_t i = 0; i < flm_st_count(base); i++) {
            const flm_tensor *t = flm_st_tensor_at(base, i);
            if (!flm_lora_targets(l, t->name)) continue;
            int64_t rows = t->shape[0], cols = t->shape[1];
            float *w1 = tensor_f32(t), *w2 = tensor_f32(t);
            REQUIRE(w1 && w2);
            CHECK_EQ_INT(flm_lora_apply(l, t->name, w1, rows, cols), FLM_OK);
            CHECK_EQ_INT(flm_lora_apply_pool(l, t->name, w2, rows, cols, pool), FLM_OK);
            CHECK_MSG(memcmp(w1, w2, (size_t)flm_tensor_numel(t) * sizeof(float)) == 0, "%s with %d threads: other bits", t->name, nt);
            checked++;
            free(w1);
            free(w2);
        }
        flm_pool_free(pool);
    }
    CHECK(checked == 18);
    flm_st_close(base);
    flm_lora_close(l);
}
