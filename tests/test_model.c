/* test_model.c — Qwen2 loading and forward pass against the transformers fixtures,
 * prefill/decode equivalence, context limits, and hostile checkpoints. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/common.h"
#include "runtime/forward.h"
#include "model/model.h"
#include "model/model_source.h"
#include "format/safetensors.h"
#include "test.h"
#include "dev/verify.h"
#include "package/source.h"

/* Largest allowed difference between one n-token prefill and n decode steps. */
#define PREFILL_DECODE_TOL 1e-5

static void verify_fixture_lora(const char *model_dir, const char *lora, const char *ref) {
    flm_model *m = NULL;
    flm_model_options mo = {.lora_dirs = &lora, .n_lora = lora ? 1 : 0};
    int rc = flm_load_model(model_dir, &mo, &m);
    CHECK_MSG(rc == FLM_OK, "open %s: %s", model_dir, flm_last_error());
    if (rc) return;
    flm_verify_options opt = {.tol = FLM_VERIFY_DEFAULT_TOL};
    flm_verify_case *cs = NULL;
    int n = 0;
    rc = flm_verify_run(m, ref, &opt, &cs, &n);
    CHECK_MSG(rc == FLM_OK, "verify %s: %s", model_dir, flm_last_error());
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
        CHECK_MSG(cs[i].pass, "%s case %d: max err %g, greedy first diff %d", model_dir, i, cs[i].max_abs_err, cs[i].greedy_first_diff);
        CHECK_MSG(cs[i].top1_agree == cs[i].n_input, "%s case %d: top-1 %d/%d", model_dir, i, cs[i].top1_agree, cs[i].n_input);
    }
    free(cs);
    flm_model_close(m);
}

static void verify_fixture(const char *model_dir, const char *ref) { verify_fixture_lora(model_dir, NULL, ref); }

TEST(model_micro_qwen2_matches_transformers) { verify_fixture(TEST_DATA "/micro-qwen2", TEST_DATA "/micro-qwen2/reference.safetensors"); }
TEST(model_tiny_qwen2_matches_transformers) { verify_fixture(TEST_DATA "/tiny-qwen2", TEST_DATA "/tiny-qwen2"); }

TEST(model_micro_lora_matches_peft) { verify_fixture_lora(TEST_DATA "/micro-qwen2", TEST_DATA "/micro-qwen2-lora", TEST_DATA "/micro-qwen2-lora"); }
TEST(model_kcc_advisor_matches_transformers) { verify_fixture(BUNDLED_MODEL, TEST_DATA "/kcc-advisor"); }
TEST(model_kcc_lora_matches_peft) { verify_fixture_lora(BUNDLED_MODEL, TEST_DATA "/kcc-advisor-lora", TEST_DATA "/kcc-advisor-lora"); }
TEST(model_tiny_lora_matches_peft) { verify_fixture_lora(TEST_DATA "/tiny-qwen2", TEST_DATA "/tiny-qwen2-lora", TEST_DATA "/tiny-qwen2-lora"); }

TEST(model_lora_for_another_base_is_refused) {
    char cmd[512], *out, *err;
    snprintf(cmd, sizeof cmd, "%s logits -m %s/micro-qwen2 --lora %s/tiny-qwen2-lora --ids 1 -o %s/x.bin", test_bin(), TEST_DATA, TEST_DATA, test_tmpdir());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK_MSG(strstr(err, "different base model") && strstr(err, "model.layers.0."), "stderr: %s", err);
    free(out);
    free(err);
}

TEST(model_prefill_equals_decode_steps) {
    flm_model *m;
    REQUIRE(flm_load_model(TEST_DATA "/micro-qwen2", NULL, &m) == FLM_OK);
    enum { N = 150 }; /* crosses the 64-token prefill chunks and the first cache growth */
    int V = m->cfg.vocab_size;
    int32_t ids[N];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) { s = s * 1664525u + 1013904223u; ids[i] = (int32_t)((s >> 8) % (uint32_t)V); }
    float *a = malloc((size_t)N * V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    flm_forward_state *pf, *dc;
    REQUIRE(a && b);
    REQUIRE(flm_forward_new(m, 512, &pf) == FLM_OK);
    REQUIRE(flm_forward_new(m, 512, &dc) == FLM_OK);
    REQUIRE(flm_forward(pf, ids, N, a, FLM_LOGITS_ALL) == FLM_OK);
    double worst = 0;
    for (int t = 0; t < N; t++) {
        REQUIRE(flm_forward(dc, &ids[t], 1, b, FLM_LOGITS_LAST) == FLM_OK);
        for (int v = 0; v < V; v++) {
            double e = fabs((double)a[(size_t)t * V + v] - b[v]);
            if (e > worst) worst = e;
        }
    }
    CHECK_MSG(worst <= PREFILL_DECODE_TOL, "prefill vs decode max diff %g", worst);
    CHECK_EQ_INT(flm_forward_n_past(pf), N);
    /* a mixed split (prefill 100 + decode) also agrees at the last position */
    flm_forward_state *mix;
    REQUIRE(flm_forward_new(m, 512, &mix) == FLM_OK);
    REQUIRE(flm_forward(mix, ids, 100, b, FLM_LOGITS_NONE) == FLM_OK);
    REQUIRE(flm_forward(mix, ids + 100, N - 100, b, FLM_LOGITS_LAST) == FLM_OK);
    double w2 = 0;
    for (int v = 0; v < V; v++) { double e = fabs((double)a[(size_t)(N - 1) * V + v] - b[v]); if (e > w2) w2 = e; }
    CHECK_MSG(w2 <= PREFILL_DECODE_TOL, "split prefill max diff %g", w2);
    flm_forward_free(mix);
    flm_forward_free(pf);
    flm_forward_free(dc);
    free(a);
    free(b);
    flm_model_close(m);
}

TEST(model_context_limits_are_enforced) {
    flm_model *m;
    REQUIRE(flm_load_model(TEST_DATA "/micro-qwen2", NULL, &m) == FLM_OK);
    flm_forward_state *st;
    CHECK(flm_forward_new(m, m->cfg.max_position_embeddings + 1, &st) == FLM_ERR_ARG);
    REQUIRE(flm_forward_new(m, 8, &st) == FLM_OK);
    CHECK_EQ_INT(flm_forward_kv_bytes(st), 0); /* nothing allocated before use */
    int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    CHECK(flm_forward(st, ids, 9, logits, FLM_LOGITS_LAST) == FLM_ERR_CONTEXT);
    CHECK(strstr(flm_last_error(), "context") != NULL);
    CHECK_EQ_INT(flm_forward_n_past(st), 0);
    CHECK(flm_forward(st, ids, 8, logits, FLM_LOGITS_LAST) == FLM_OK);
    CHECK(flm_forward(st, ids, 1, logits, FLM_LOGITS_LAST) == FLM_ERR_CONTEXT);
    int32_t bad = m->cfg.vocab_size;
    flm_forward_truncate(st, 0);
    CHECK(flm_forward(st, &bad, 1, logits, FLM_LOGITS_LAST) == FLM_ERR_ARG);
    free(logits);
    flm_forward_free(st);
    /* default context: min(4096, max_position_embeddings) */
    REQUIRE(flm_forward_new(m, 0, &st) == FLM_OK);
    CHECK_EQ_INT(flm_forward_n_ctx(st), m->cfg.max_position_embeddings < 4096 ? m->cfg.max_position_embeddings : 4096);
    flm_forward_free(st);
    flm_model_close(m);
}

TEST(config_reads_both_transformers_layouts) {
    flm_config c;
    REQUIRE(flm_config_load(TEST_DATA "/tiny-qwen2/config.json", &c) == FLM_OK); /* 5.x */
    CHECK_NEAR(c.rope_theta, 1e6, 0);
    CHECK_EQ_INT(c.head_dim, 16);
    CHECK(c.tie_word_embeddings);
    CHECK_STR(c.torch_dtype, "bfloat16");
    REQUIRE(flm_config_load(TEST_DATA "/qwen2.5-1.5b-instruct/config.json", &c) == FLM_OK); /* 4.x */
    CHECK_NEAR(c.rope_theta, 1e6, 0);
    CHECK_EQ_INT(c.head_dim, 1536 / 12); /* derived */
    CHECK_EQ_INT(c.n_kv_heads, 2);
    CHECK_EQ_INT(c.max_position_embeddings, 32768);
    CHECK_STR(c.torch_dtype, "bfloat16");
    const char *bad = "{\"model_type\": \"llama\", \"vocab_size\": 10}";
    CHECK(flm_config_parse(bad, strlen(bad), "x", &c) == FLM_ERR_UNSUPPORTED);
    CHECK(strstr(flm_last_error(), "llama") != NULL);
}

/* ---- hostile checkpoints, through the CLI ---- */

static void copy_file(const char *from, const char *to) {
    char *d;
    size_t n;
    REQUIRE(flm_read_file(from, &d, &n) == FLM_OK);
    FILE *f = fopen(to, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(d, 1, n, f) == n);
    fclose(f);
    free(d);
}

static void write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(d, 1, n, f) == n);
    fclose(f);
}

/* Makes DIR/NAME holding micro-qwen2's config.json and a given model.safetensors. */
static char *make_model_dir(const char *name, const void *st, size_t st_len, const char *config) {
    char *dir = flm_path_join(test_tmpdir(), name);
    mkdir(dir, 0755);
    char *p = flm_path_join(dir, "config.json");
    if (config) write_bytes(p, config, strlen(config));
    else copy_file(TEST_DATA "/micro-qwen2/config.json", p);
    free(p);
    if (st) {
        p = flm_path_join(dir, "model.safetensors");
        write_bytes(p, st, st_len);
        free(p);
    }
    return dir;
}

static void expect_cli_error(const char *dir, const char *needle) {
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s logits -m '%s' --ids 1,2 -o '%s/out.bin'", test_bin(), dir, test_tmpdir());
    int rc = test_run(cmd, &out, &err);
    CHECK_MSG(rc == 1, "%s: exit %d (expected 1), stderr: %s", dir, rc, err);
    CHECK_MSG(strstr(err, needle) != NULL, "%s: stderr lacks '%s': %s", dir, needle, err);
    free(out);
    free(err);
}

/* Writes a safetensors header+data where the JSON header is given. */
static char *st_bytes(const char *header, size_t data_len, size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    char *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (char)((hl >> (8 * i)) & 0xFF);
    memcpy(b + 8, header, hl);
    return b;
}

TEST(model_hostile_checkpoints_fail_cleanly) {
    char *orig;
    size_t n;
    REQUIRE(flm_read_file(TEST_DATA "/micro-qwen2/model.safetensors", &orig, &n) == FLM_OK);
    char *d;
    /* truncated: cut in the data section, in the header, and inside the length */
    d = make_model_dir("trunc-data", orig, n - 1000, NULL); expect_cli_error(d, "past the end"); free(d);
    d = make_model_dir("trunc-header", orig, 100, NULL); expect_cli_error(d, "exceeds the file size"); free(d);
    d = make_model_dir("trunc-len", orig, 5, NULL); expect_cli_error(d, "truncated"); free(d);
    /* header length larger than the file */
    {
        char *c = malloc(n);
        memcpy(c, orig, n);
        c[6] = 0x7F;
        d = make_model_dir("big-header", c, n, NULL); expect_cli_error(d, "too large"); free(d);
        free(c);
    }
    size_t len;
    char *b;
    b = st_bytes("{\"model.norm.weight\": {\"dtype\": \"F16\", \"shape\": [128], \"data_offsets\": [0, 999999]}}", 256, &len);
    d = make_model_dir("offsets", b, len, NULL); expect_cli_error(d, "past the end"); free(d); free(b);
    b = st_bytes("{\"model.norm.weight\": {\"dtype\": \"F16\", \"shape\": [100], \"data_offsets\": [0, 256]}}", 256, &len);
    d = make_model_dir("dtype-shape", b, len, NULL); expect_cli_error(d, "needs 200 bytes"); free(d); free(b);
    b = st_bytes("{\"model.norm.weight\": {\"dtype\": \"F16\", \"shape\": [128], \"data_offsets\": [0, 256]}", 256, &len);
    d = make_model_dir("bad-json", b, len, NULL); expect_cli_error(d, "invalid JSON"); free(d); free(b);
    b = st_bytes("{\"model.norm.weight\": {\"dtype\": \"F16\", \"shape\": [128], \"data_offsets\": [0, 256]}}", 256, &len);
    d = make_model_dir("missing-tensor", b, len, NULL); expect_cli_error(d, "model.embed_tokens.weight is missing"); free(d); free(b);
    b = st_bytes("{\"model.norm.weight\": {\"dtype\": \"F16\", \"shape\": [64], \"data_offsets\": [0, 128]}, \"model.embed_tokens.weight\": {\"dtype\": \"F16\", \"shape\": [2048, 128], \"data_offsets\": [128, 524416]}}", 524416, &len);
    d = make_model_dir("wrong-shape", b, len, NULL); expect_cli_error(d, "expected [128]"); free(d); free(b);
    b = st_bytes("{\"model.extra.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, &len);
    d = make_model_dir("extra-tensor", b, len, NULL); expect_cli_error(d, "unexpected tensor model.extra.weight"); free(d); free(b);
    /* config problems */
    d = make_model_dir("bad-config", orig, n, "{\"model_type\": \"qwen2\", "); expect_cli_error(d, "invalid JSON"); free(d);
    d = make_model_dir("llama", orig, n, "{\"model_type\": \"llama\"}"); expect_cli_error(d, "not supported"); free(d);
    d = make_model_dir("no-weights", NULL, 0, NULL); expect_cli_error(d, "no model.safetensors"); free(d);
    {
        char *empty = flm_path_join(test_tmpdir(), "no-config");
        mkdir(empty, 0755);
        expect_cli_error(empty, "no config.json");
        free(empty);
    }
    expect_cli_error("/nonexistent/model", "no such file");
    free(orig);
}

/* Writes the tensors of `src` for which pick(name) == want into one safetensors file. */
static void write_shard(const char *path, flm_st_file *src, bool (*pick)(const char *), bool want, strbuf *index, const char *fname) {
    strbuf h;
    flm_sb_init(&h);
    flm_sb_putc(&h, '{');
    size_t off = 0, n = 0;
    for (size_t i = 0; i < flm_st_count(src); i++) {
        const flm_tensor *t = flm_st_tensor_at(src, i);
        if (pick(t->name) != want) continue;
        flm_sb_printf(&h, "%s\"%s\": {\"dtype\": \"F16\", \"shape\": [", n++ ? ", " : "", t->name);
        for (int d = 0; d < t->ndim; d++) flm_sb_printf(&h, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        flm_sb_printf(&h, "], \"data_offsets\": [%zu, %zu]}", off, off + t->nbytes);
        off += t->nbytes;
        flm_sb_printf(index, "%s\"%s\": \"%s\"", index->data[index->len - 1] == '{' ? "" : ", ", t->name, fname);
    }
    flm_sb_putc(&h, '}');
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    uint64_t hl = h.len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(h.data, 1, h.len, f);
    for (size_t i = 0; i < flm_st_count(src); i++) {
        const flm_tensor *t = flm_st_tensor_at(src, i);
        if (pick(t->name) == want) fwrite(t->data, 1, t->nbytes, f);
    }
    fclose(f);
    flm_sb_free(&h);
}

static bool is_layer(const char *name) { return strncmp(name, "model.layers.", 13) == 0; }

TEST(model_loads_sharded_checkpoints) {
    flm_st_file *src;
    REQUIRE(flm_st_open(TEST_DATA "/micro-qwen2/model.safetensors", &src) == FLM_OK);
    char *dir = flm_path_join(test_tmpdir(), "sharded");
    mkdir(dir, 0755);
    char *cfg = flm_path_join(dir, "config.json");
    copy_file(TEST_DATA "/micro-qwen2/config.json", cfg);
    free(cfg);
    strbuf idx;
    flm_sb_init(&idx);
    flm_sb_puts(&idx, "{\"weight_map\": {");
    char *p1 = flm_path_join(dir, "model-00001-of-00002.safetensors"), *p2 = flm_path_join(dir, "model-00002-of-00002.safetensors");
    write_shard(p1, src, is_layer, false, &idx, "model-00001-of-00002.safetensors");
    write_shard(p2, src, is_layer, true, &idx, "model-00002-of-00002.safetensors");
    flm_sb_puts(&idx, "}}");
    char *ip = flm_path_join(dir, "model.safetensors.index.json");
    write_bytes(ip, idx.data, idx.len);
    /* the sharded copy computes the same logits as the original */
    flm_model *a, *b;
    REQUIRE(flm_load_model(TEST_DATA "/micro-qwen2", NULL, &a) == FLM_OK);
    CHECK_MSG(flm_load_model(dir, NULL, &b) == FLM_OK, "%s", flm_last_error());
    if (b) {
        int32_t ids[5] = {5, 17, 300, 2047, 9};
        int V = a->cfg.vocab_size;
        float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
        flm_forward_state *sa, *sb2;
        REQUIRE(flm_forward_new(a, 16, &sa) == FLM_OK && flm_forward_new(b, 16, &sb2) == FLM_OK);
        REQUIRE(flm_forward(sa, ids, 5, la, FLM_LOGITS_LAST) == FLM_OK && flm_forward(sb2, ids, 5, lb, FLM_LOGITS_LAST) == FLM_OK);
        CHECK(memcmp(la, lb, sizeof(float) * (size_t)V) == 0);
        flm_forward_free(sa); flm_forward_free(sb2);
        free(la); free(lb);
        flm_model_close(b);
    }
    flm_model_close(a);
    /* an index that names a tensor its shard lacks is an error naming it */
    const char *bogus = "{\"weight_map\": {\"model.bogus\": \"model-00001-of-00002.safetensors\"}}";
    write_bytes(ip, bogus, strlen(bogus));
    CHECK(flm_load_model(dir, NULL, &b) == FLM_ERR_FORMAT);
    CHECK(strstr(flm_last_error(), "model.bogus") != NULL);
    free(p1); free(p2); free(ip); free(dir);
    flm_sb_free(&idx);
    flm_st_close(src);
}

TEST(model_threads_give_identical_logits) {
    flm_model *m;
    REQUIRE(flm_load_model(TEST_DATA "/micro-qwen2", NULL, &m) == FLM_OK);
    enum { N = 70 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
    size_t V = (size_t)m->cfg.vocab_size;
    float *a = malloc(N * V * sizeof(float)), *b = malloc(N * V * sizeof(float));
    REQUIRE(a && b);
    int threads[] = {2, 3};
    flm_forward_state *s1;
    REQUIRE(flm_forward_new(m, 128, &s1) == FLM_OK);
    REQUIRE(flm_forward(s1, ids, N, a, FLM_LOGITS_ALL) == FLM_OK);
    for (size_t i = 0; i < sizeof threads / sizeof *threads; i++) {
        flm_forward_state *s2;
        REQUIRE(flm_forward_new(m, 128, &s2) == FLM_OK);
        REQUIRE(flm_forward_set_threads(s2, threads[i]) == FLM_OK);
        CHECK_EQ_INT(flm_forward_threads(s2), threads[i]);
        REQUIRE(flm_forward(s2, ids, N, b, FLM_LOGITS_ALL) == FLM_OK);
        CHECK_MSG(memcmp(a, b, N * V * sizeof(float)) == 0, "%d threads differ from 1", threads[i]);
        /* and decode steps after the prefill */
        float *c1 = malloc(V * sizeof(float)), *c2 = malloc(V * sizeof(float));
        int32_t nxt = 42;
        REQUIRE(flm_forward(s1, &nxt, 1, c1, FLM_LOGITS_LAST) == FLM_OK);
        REQUIRE(flm_forward(s2, &nxt, 1, c2, FLM_LOGITS_LAST) == FLM_OK);
        CHECK(memcmp(c1, c2, V * sizeof(float)) == 0);
        flm_forward_truncate(s1, N);
        free(c1); free(c2);
        flm_forward_free(s2);
    }
    flm_forward_free(s1);
    free(a); free(b);
    flm_model_close(m);
}

/* Qwen2.5-1.5B's attention geometry (12 heads, 2 KV heads, head_dim 128, hidden 1536),
 * saved by transformers as a sharded checkpoint; reference from tools/make_reference.py. */
TEST(model_qwen25_shape_sharded_matches_transformers) {
    verify_fixture(TEST_DATA "/qwen2.5-shape", TEST_DATA "/qwen2.5-shape/reference.safetensors");
    flm_model *m;
    REQUIRE(flm_load_model(TEST_DATA "/qwen2.5-shape", NULL, &m) == FLM_OK);
    CHECK_EQ_INT(m->cfg.head_dim, 128);
    CHECK_EQ_INT(m->cfg.n_heads / m->cfg.n_kv_heads, 6);
    CHECK_EQ_INT(m->source->n_shards, 2);
    flm_model_close(m);
}
