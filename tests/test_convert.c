/* test_convert.c — `fieldlm convert`: packages reproduce the HF folders (verify),
 * LoRA merges equal peft's, quantized packages stay within the fidelity bars, the
 * package carries tokenizer / template / generation defaults, every failure
 * leaves no output behind, and nothing a user types destroys a file: inputs,
 * FIFOs and folders refused, concurrent runs, a source truncated mid-way, the
 * file size limit, cancel during hashing (issue 10). */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/common.h"
#include "convert/convert.h"
#include "model/gen_config.h"
#include "format/gguf.h"
#include "base/json.h"
#include "model/model.h"
#include "package/package.h"
#include "format/safetensors.h"
#include "base/sha256.h"
#include "text/template.h"
#include "test.h"
#include "text/tokenizer.h"
#include "dev/verify.h"
#include "package/source.h"

/* issue 4's bar for q8_0 packages of kcc-advisor */
#define Q8_MIN_TOP1 0.97
#define Q8_MAX_MEAN_KL 0.01
#define LORA_MERGE_TOL 1e-6

/* Entries of dir whose name ends in ".tmp" (the writers' temporary files). */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 4 && !strcmp(e->d_name + len - 4, ".tmp");
    }
    if (d) closedir(d);
    return n;
}

static char *convert(const char *src, const char *name, const char *type, const char *extra) {
    char *out = flm_path_join(test_tmpdir(), name);
    char cmd[2048], *o, *e, summary[64];
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s --type %s %s", test_bin(), src, out, type, extra ? extra : "");
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "%s: exit %d: %s", cmd, rc, e);
    CHECK_MSG(strstr(e, "peak RSS") != NULL, "no summary: %s", e);
    snprintf(summary, sizeof summary, " (%s): ", type);
    CHECK_MSG(strstr(e, summary) != NULL, "the summary does not name the type %s: %s", type, e); /* issue 10 */
    free(o);
    free(e);
    return out;
}

static void verify_all(const char *model, const char *ref, double tol, double min_top1, double max_kl, bool greedy_exact) {
    flm_model *m;
    int rc = flm_load_model(model, NULL, &m);
    CHECK_MSG(rc == FLM_OK, "%s: %s", model, flm_last_error());
    if (rc) return;
    flm_verify_options opt = {.tol = tol};
    flm_verify_case *cs;
    int n;
    REQUIRE(flm_verify_run(m, ref, &opt, &cs, &n) == FLM_OK);
    int top1 = 0, pos = 0;
    double kl = 0;
    for (int i = 0; i < n; i++) {
        if (greedy_exact) CHECK_MSG(cs[i].pass, "%s case %d: err %g, greedy diff at %d", model, i, cs[i].max_abs_err, cs[i].greedy_first_diff);
        top1 += cs[i].top1_agree;
        pos += cs[i].n_input;
        kl += cs[i].mean_kl * cs[i].n_input;
    }
    CHECK_MSG((double)top1 / pos >= min_top1, "%s: top-1 %d/%d", model, top1, pos);
    CHECK_MSG(kl / pos <= max_kl, "%s: mean KL %g", model, kl / pos);
    free(cs);
    flm_model_close(m);
}

TEST(convert_f32_bf16_packages_match_transformers) {
    char *p = convert(TEST_DATA "/micro-qwen2", "micro-f32.gguf", "f32", NULL);
    verify_all(p, TEST_DATA "/micro-qwen2", FLM_VERIFY_DEFAULT_TOL, 1.0, 1e-9, true);
    free(p);
    p = convert(TEST_DATA "/tiny-qwen2", "tiny-bf16.gguf", "bf16", NULL);
    verify_all(p, TEST_DATA "/tiny-qwen2", FLM_VERIFY_DEFAULT_TOL, 1.0, 1e-9, true);
    free(p);
    p = convert(BUNDLED_MODEL, "kcc-f32.gguf", "f32", NULL);
    verify_all(p, TEST_DATA "/kcc-advisor", FLM_VERIFY_DEFAULT_TOL, 1.0, 1e-6, true);
    free(p);
}

TEST(convert_lora_packages_match_peft) {
    char *p = convert(TEST_DATA "/micro-qwen2", "micro-lora.gguf", "f32", "--lora " TEST_DATA "/micro-qwen2-lora");
    verify_all(p, TEST_DATA "/micro-qwen2-lora", FLM_VERIFY_DEFAULT_TOL, 1.0, 1e-9, true);
    /* the merged weights equal peft's merge_and_unload() */
    flm_gguf_file *g;
    flm_st_file *merged;
    REQUIRE(flm_gguf_open(p, &g) == FLM_OK);
    REQUIRE(flm_st_open(TEST_DATA "/micro-qwen2-lora/merged/model.safetensors", &merged) == FLM_OK);
    double worst = 0;
    int compared = 0;
    for (int l = 0; l < 3; l++)
        for (int w = 0; w < W_LAYER_COUNT; w++) {
            char gn[96], hn[128];
            flm_gguf_layer_name(l, (flm_layer_weight)w, gn, sizeof gn);
            flm_hf_layer_name(l, (flm_layer_weight)w, hn, sizeof hn);
            flm_tensor a;
            const flm_tensor *b = flm_st_find(merged, hn);
            REQUIRE(b && flm_gguf_get_tensor(g, gn, &a) == FLM_OK && a.dtype == FLM_F32 && b->dtype == FLM_F32);
            REQUIRE(a.nbytes == b->nbytes);
            const float *x = a.data, *y = b->data;
            for (size_t i = 0; i < a.nbytes / 4; i++) { double e = fabs((double)x[i] - y[i]); if (e > worst) worst = e; }
            compared++;
        }
    CHECK_EQ_INT(compared, 3 * W_LAYER_COUNT);
    CHECK_MSG(worst <= LORA_MERGE_TOL, "merged weights differ from peft by %g", worst);
    /* provenance names the adapter with its rank, alpha and scale */
    const flm_gguf_value *ad;
    REQUIRE(flm_gguf_get_array(g, "fieldlm.lora.adapters", GGUF_TYPE_STRING, &ad) == FLM_OK);
    const char *s;
    uint64_t len;
    REQUIRE(flm_gguf_array_str(ad, 0, &s, &len) == FLM_OK);
    CHECK(strstr(s, "\"r\":4") && strstr(s, "\"lora_alpha\":8") && strstr(s, "\"scale\":2"));
    flm_st_close(merged);
    flm_gguf_close(g);
    free(p);
    p = convert(TEST_DATA "/tiny-qwen2", "tiny-lora.gguf", "f32", "--lora " TEST_DATA "/tiny-qwen2-lora");
    verify_all(p, TEST_DATA "/tiny-qwen2-lora", FLM_VERIFY_DEFAULT_TOL, 1.0, 1e-9, true);
    free(p);
    p = convert(BUNDLED_MODEL, "kcc-lora.gguf", "f32", "--lora " TEST_DATA "/kcc-advisor-lora");
    verify_all(p, TEST_DATA "/kcc-advisor-lora", FLM_VERIFY_DEFAULT_TOL, 1.0, 1e-6, true);
    free(p);
}

TEST(convert_q8_0_meets_the_fidelity_bar) {
    char *p = convert(BUNDLED_MODEL, "kcc-q8.gguf", "q8_0", NULL);
    verify_all(p, TEST_DATA "/kcc-advisor", 1e9, Q8_MIN_TOP1, Q8_MAX_MEAN_KL, false);
    /* bit-compatible with llama.cpp's own q8_0 file of the same model */
    flm_gguf_file *ours, *peer;
    REQUIRE(flm_gguf_open(p, &ours) == FLM_OK);
    REQUIRE(flm_gguf_open(TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf", &peer) == FLM_OK);
    int same = 0, total = 0;
    for (size_t i = 0; i < flm_gguf_tensor_count(peer); i++) {
        const flm_gguf_tensor_info *b = flm_gguf_tensor_at(peer, i), *a = flm_gguf_tensor_find(ours, b->name);
        REQUIRE(a);
        total++;
        same += a->ggml_type == b->ggml_type && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
    }
    CHECK_MSG(same == total, "%d of %d tensors identical to llama.cpp's q8_0 file", same, total);
    flm_gguf_close(ours);
    flm_gguf_close(peer);
    free(p);
}

TEST(convert_package_carries_tokenizer_template_and_generation) {
    char *p = convert(BUNDLED_MODEL, "kcc-assets.gguf", "q4_0", NULL);
    flm_tokenizer *a, *b;
    REQUIRE(flm_load_tokenizer(BUNDLED_MODEL, &a) == FLM_OK);
    REQUIRE(flm_load_tokenizer(p, &b) == FLM_OK);
    CHECK_EQ_INT(flm_tokenizer_vocab_size(a), flm_tokenizer_vocab_size(b));
    char *text;
    size_t len;
    REQUIRE(flm_read_file(TEST_DATA "/tokenizer-cases/encode_shared.jsonl", &text, &len) == FLM_OK);
    int cases = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        flm_json_doc *d = flm_json_parse(line, strlen(line), "case");
        REQUIRE(d);
        const flm_json *t = flm_json_get(flm_json_root(d), "text");
        int32_t *ia, *ib;
        size_t na, nb;
        REQUIRE(flm_tokenizer_encode(a, t->str, t->len, &ia, &na) == FLM_OK);
        REQUIRE(flm_tokenizer_encode(b, t->str, t->len, &ib, &nb) == FLM_OK);
        CHECK_MSG(na == nb && memcmp(ia, ib, na * sizeof *ia) == 0, "package tokenizer differs on case %d", cases);
        free(ia);
        free(ib);
        flm_json_free(d);
        cases++;
    }
    CHECK(cases > 20);
    free(text);
    flm_tokenizer_free(a);
    flm_tokenizer_free(b);
    /* the chat template renders identically */
    flm_template_source sa, sb;
    REQUIRE(flm_load_template(BUNDLED_MODEL, &sa) == FLM_OK);
    REQUIRE(flm_load_template(p, &sb) == FLM_OK);
    CHECK_STR(flm_template_source_pick(&sa, false, NULL)->text, flm_template_source_pick(&sb, false, NULL)->text);
    flm_template_source_free(&sa);
    flm_template_source_free(&sb);
    /* generation defaults and both stop ids */
    flm_gen_config ga, gb;
    REQUIRE(flm_load_gen_config(BUNDLED_MODEL, &ga) == FLM_OK);
    REQUIRE(flm_load_gen_config(p, &gb) == FLM_OK);
    CHECK(gb.file_found && gb.do_sample == ga.do_sample);
    CHECK_NEAR(gb.temperature, 0.7, 0);
    CHECK_NEAR(gb.top_p, 0.8, 0);
    CHECK_EQ_INT(gb.top_k, 20);
    CHECK_NEAR(gb.repetition_penalty, 1.1, 0);
    CHECK_EQ_INT(gb.from_file, ga.from_file);
    int32_t eos[8];
    int ne = flm_gen_config_eos_ids(&gb, -1, eos, 8);
    bool has645 = false, has643 = false;
    for (int i = 0; i < ne; i++) { has645 |= eos[i] == 151645; has643 |= eos[i] == 151643; }
    CHECK(has645 && has643);
    /* a llama.cpp file has no fieldlm generation keys: transformers' defaults */
    flm_gen_config gp;
    REQUIRE(flm_load_gen_config(TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf", &gp) == FLM_OK);
    CHECK(!gp.file_found && !gp.do_sample && gp.top_k == 50);
    CHECK(gp.n_eos >= 1);
    free(p);
}

static void expect_convert_fails(const char *args, const char *needle, const char *out) {
    char cmd[2048], *o, *e;
    snprintf(cmd, sizeof cmd, "%s convert %s", test_bin(), args);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 1 || rc == 2, "%s: exit %d", cmd, rc);
    CHECK_MSG(strstr(e, needle) != NULL, "%s: stderr lacks '%s': %s", cmd, needle, e);
    if (out) CHECK_MSG(!flm_file_exists(out) && count_tmp(test_tmpdir()) == 0, "%s: output left behind", cmd);
    free(o);
    free(e);
}

TEST(convert_failures_leave_nothing_behind) {
    char *out = flm_path_join(test_tmpdir(), "fail.gguf");
    char args[2048];
    snprintf(args, sizeof args, "%s/micro-qwen2 -o %s --lora %s/tiny-qwen2-lora", TEST_DATA, out, TEST_DATA);
    expect_convert_fails(args, "different base model", out);
    snprintf(args, sizeof args, "%s -o %s", test_tmpdir(), out);
    expect_convert_fails(args, "no config.json", out);
    /* unsupported architecture */
    char *d = flm_path_join(test_tmpdir(), "llama-dir");
    mkdir(d, 0755);
    char *cfg = flm_path_join(d, "config.json");
    FILE *f = fopen(cfg, "w");
    fputs("{\"model_type\": \"llama\"}", f);
    fclose(f);
    snprintf(args, sizeof args, "%s -o %s", d, out);
    expect_convert_fails(args, "not supported", out);
    /* truncated weights */
    char *trunc = flm_path_join(test_tmpdir(), "trunc-dir");
    snprintf(args, sizeof args, "mkdir -p %s && cp %s/micro-qwen2/config.json %s/ && head -c 1000000 %s/micro-qwen2/model.safetensors > %s/model.safetensors",
             trunc, TEST_DATA, trunc, TEST_DATA, trunc);
    REQUIRE(test_run(args, NULL, NULL) == 0);
    snprintf(args, sizeof args, "%s -o %s", trunc, out);
    expect_convert_fails(args, "past the end", out);
    /* unwritable location */
    snprintf(args, sizeof args, "%s/micro-qwen2 -o /nonexistent-dir/x.gguf", TEST_DATA);
    expect_convert_fails(args, "/nonexistent-dir/x.gguf", NULL);
    /* the file size limit: writes fail with EFBIG part-way. fieldlm ignores SIGXFSZ
     * itself (no trap here), so this is a message and exit 1, not a silent kill */
    {
        char cmd[2048], *o, *e;
        snprintf(cmd, sizeof cmd, "sh -c 'ulimit -f 200; exec %s convert %s/micro-qwen2 -o %s --type f32'", test_bin(), TEST_DATA, out);
        int rc = test_run(cmd, &o, &e);
        CHECK_MSG(rc == 1, "file size limit: exit %d: %s", rc, e);
        CHECK_MSG(strstr(e, "file size limit reached") && strstr(e, "no output written"), "file size limit: %s", e);
        CHECK(!flm_file_exists(out) && count_tmp(test_tmpdir()) == 0);
        free(o);
        free(e);
    }
    /* bad options */
    snprintf(args, sizeof args, "%s/micro-qwen2 -o %s --type q5_k", TEST_DATA, out);
    expect_convert_fails(args, "--type must be", out);
    free(trunc);
    free(cfg);
    free(d);
    free(out);
}

TEST(convert_interrupted_leaves_nothing_behind) {
    /* Ctrl-C part-way through a conversion of the bundled model */
    char *out = flm_path_join(test_tmpdir(), "interrupted.gguf");
    char cmd[2048], *o, *e;
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s --type q8_0 -t 1 & pid=$!; sleep 0.3; kill -INT $pid; wait $pid", test_bin(), BUNDLED_MODEL, out);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(count_tmp(test_tmpdir()) == 0, "temporary file left behind");
    if (rc == 0) {
        /* the conversion finished before the signal: then the output must be complete */
        CHECK(flm_file_exists(out));
    } else {
        CHECK_MSG(strstr(e, "interrupted") != NULL, "stderr: %s", e);
        CHECK(!flm_file_exists(out));
    }
    free(o);
    free(e);
    free(out);
}

/* Equal GGUF values (scalars by value, arrays element by element). */
static bool gguf_value_equal(const flm_gguf_value *a, const flm_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_TYPE_STRING: return a->s.len == b->s.len && memcmp(a->s.str, b->s.str, a->s.len) == 0;
    case GGUF_TYPE_ARRAY:
        if (a->elem_type != b->elem_type || a->count != b->count) return false;
        if (a->elem_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < a->count; i++)
                if (a->strs[i].len != b->strs[i].len || memcmp(a->strs[i].str, b->strs[i].str, a->strs[i].len)) return false;
            return true;
        }
        if (a->elem_type == GGUF_TYPE_ARRAY) return false;
        return memcmp(a->data, b->data, a->count * flm_gguf_type_size(a->elem_type)) == 0;
    default: return memcmp(&a->num, &b->num, sizeof a->num) == 0;
    }
}

TEST(convert_package_has_every_llama_cpp_key_and_tensor) {
    /* llama.cpp's own converter wrote gguf-peer for the same model: a fieldlm q8_0
     * package must carry each of its keys with the same type and value (but the
     * free-text name), and the same tensors in the same order. */
    char *p = convert(BUNDLED_MODEL, "kcc-llamacpp.gguf", "q8_0", NULL);
    flm_gguf_file *ours, *peer;
    REQUIRE(flm_gguf_open(p, &ours) == FLM_OK);
    REQUIRE(flm_gguf_open(TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf", &peer) == FLM_OK);
    for (size_t i = 0; i < flm_gguf_kv_count(peer); i++) {
        const flm_gguf_kv *kv = flm_gguf_kv_at(peer, i);
        const flm_gguf_value *v = flm_gguf_find(ours, kv->key);
        CHECK_MSG(v != NULL, "missing key %s", kv->key);
        if (!v || !strcmp(kv->key, "general.name")) continue;
        if (!strcmp(kv->key, "tokenizer.ggml.token_type")) {
            /* One deliberate difference: added tokens that tokenizer.json does not mark
             * special (<tool_call>, <|fim_prefix|>, ...) are USER_DEFINED (4) here, as
             * transformers treats them (decoded as text); the peer file has CONTROL (3). */
            REQUIRE(v->type == kv->value.type && v->count == kv->value.count);
            for (uint64_t k = 0; k < v->count; k++) {
                int64_t a, b;
                flm_gguf_array_i64(v, k, &a);
                flm_gguf_array_i64(&kv->value, k, &b);
                CHECK_MSG(a == b || (a == 4 && b == 3 && k >= 151643), "token_type[%llu]: %lld vs %lld", (unsigned long long)k, (long long)a, (long long)b);
            }
            continue;
        }
        CHECK_MSG(gguf_value_equal(v, &kv->value), "key %s differs", kv->key);
    }
    /* same tensors, types and shapes (llama.cpp looks tensors up by name; order is free) */
    CHECK_EQ_INT(flm_gguf_tensor_count(ours), flm_gguf_tensor_count(peer));
    for (size_t i = 0; i < flm_gguf_tensor_count(peer); i++) {
        const flm_gguf_tensor_info *b = flm_gguf_tensor_at(peer, i), *a = flm_gguf_tensor_find(ours, b->name);
        CHECK_MSG(a && a->ggml_type == b->ggml_type && a->n_dims == b->n_dims && !memcmp(a->ne, b->ne, sizeof a->ne), "tensor %s", b->name);
    }
    flm_gguf_close(ours);
    flm_gguf_close(peer);
    free(p);
}

/* ------------------------------------------------------------------ issue 10: files */

/* A fresh copy of a fixture folder (links resolved) under the test's tmpdir. */
static char *copy_fixture(const char *fixture, const char *name) {
    char *d = flm_path_join(test_tmpdir(), name);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -rL '%s' '%s'", d, fixture, d);
    if (test_run(cmd, NULL, NULL) != 0) test_fail(__FILE__, __LINE__, "cannot copy %s", fixture);
    return d;
}

/* Runs convert with args; expects exit 1, `needle` on stderr, `guarded` unchanged
 * (sha256) and no temporary file in `dir`. */
static void expect_refused(const char *args, const char *needle, const char *guarded, const char *dir) {
    char before[65] = "", after[65] = "", cmd[4096], *o, *e;
    if (guarded) REQUIRE(flm_sha256_file(guarded, before) == FLM_OK);
    snprintf(cmd, sizeof cmd, "%s convert %s", test_bin(), args);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 1, "%s: exit %d: %s", cmd, rc, e);
    CHECK_MSG(strstr(e, needle) != NULL, "%s: stderr lacks '%s': %s", cmd, needle, e);
    if (guarded) {
        CHECK_MSG(flm_sha256_file(guarded, after) == FLM_OK && !strcmp(before, after), "%s: %s was changed", cmd, guarded);
    }
    CHECK_MSG(count_tmp(dir) == 0, "%s: temporary file left in %s", cmd, dir);
    free(o);
    free(e);
}

TEST(convert_refuses_to_write_onto_its_inputs) {
    char *m = copy_fixture(TEST_DATA "/micro-qwen2", "inputs-model");
    char *lora = copy_fixture(TEST_DATA "/micro-qwen2-lora", "inputs-lora");
    char *wts = flm_path_join(m, "model.safetensors"), *cfg = flm_path_join(m, "config.json");
    char *ad = flm_path_join(lora, "adapter_model.safetensors");
    char *sym = flm_path_join(test_tmpdir(), "inputs-link.gguf");
    REQUIRE(symlink(wts, sym) == 0);
    char args[4096];
    /* the source weights, the config, through a symlink */
    snprintf(args, sizeof args, "%s -o %s", m, wts);
    expect_refused(args, "is an input of this command", wts, m);
    snprintf(args, sizeof args, "%s -o %s --type f32", m, cfg);
    expect_refused(args, "is an input of this command", cfg, m);
    snprintf(args, sizeof args, "%s -o %s", m, sym);
    expect_refused(args, "same file as", wts, test_tmpdir());
    /* an adapter's weights */
    snprintf(args, sizeof args, "%s --lora %s -o %s", m, lora, ad);
    expect_refused(args, "is an input of this command", ad, lora);
    snprintf(args, sizeof args, "%s --lora %s:0.5 -o %s", m, lora, ad);
    expect_refused(args, "is an input of this command", ad, lora);
    /* a package beside the model's files is fine, and so is writing it again */
    char *pkg = flm_path_join(m, "micro.gguf"), cmd[4096], *o, *e;
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s && %s convert %s -o %s", test_bin(), m, pkg, test_bin(), m, pkg);
    CHECK_MSG(test_run(cmd, &o, &e) == 0, "%s", e);
    free(o);
    free(e);
    free(pkg); free(sym); free(ad); free(cfg); free(wts); free(lora); free(m);
}

TEST(convert_refuses_fifos_devices_and_folders_before_any_work) {
    char *fifo = flm_path_join(test_tmpdir(), "out.fifo"), *dir = flm_path_join(test_tmpdir(), "out-dir");
    REQUIRE(mkfifo(fifo, 0644) == 0);
    REQUIRE(mkdir(dir, 0755) == 0);
    char args[2048];
    /* a FIFO stands for /dev/null and the like (a test must not risk the real device) */
    snprintf(args, sizeof args, "%s -o %s", BUNDLED_MODEL, fifo);
    expect_refused(args, "not a regular file", NULL, test_tmpdir());
    struct stat st;
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    /* a folder: refused at once, not at the final rename after all the work */
    snprintf(args, sizeof args, "%s -o %s", BUNDLED_MODEL, dir);
    double t0 = flm_now_seconds();
    expect_refused(args, "is a directory", NULL, test_tmpdir());
    CHECK(flm_is_dir(dir));
    CHECK_EQ_INT(count_tmp(dir), 0);
    double dt = flm_now_seconds() - t0;
    /* a missing folder */
    snprintf(args, sizeof args, "%s -o %s/missing/out.gguf", BUNDLED_MODEL, test_tmpdir());
    expect_refused(args, "does not exist", NULL, test_tmpdir());
    CHECK_MSG(dt < 5.0, "refusing a folder took %.1f s", dt);
    free(fifo);
    free(dir);
}

TEST(convert_concurrent_runs_to_one_output_each_write_a_whole_file) {
    /* two conversions of different types to one -o, at the same time: both succeed and
     * the file is byte for byte one of the two complete packages (each run has its own
     * temporary file; the last rename wins) */
    char *ref_a = convert(BUNDLED_MODEL, "conc-ref-f16.gguf", "f16", "-t 1");
    char *ref_b = convert(BUNDLED_MODEL, "conc-ref-q8.gguf", "q8_0", "-t 1");
    char *out = flm_path_join(test_tmpdir(), "conc.gguf");
    char cmd[4096], *o, *e;
    for (int round = 0; round < 1; round++) { /* today's code failed every round it was tried */
        snprintf(cmd, sizeof cmd,
                 "%s convert %s -o %s --type f16 -t 1 2>/dev/null & a=$!; %s convert %s -o %s --type q8_0 -t 1 2>/dev/null & b=$!; "
                 "wait $a; ra=$?; wait $b; rb=$?; echo $ra $rb",
                 test_bin(), BUNDLED_MODEL, out, test_bin(), BUNDLED_MODEL, out);
        REQUIRE(test_run(cmd, &o, &e) == 0);
        CHECK_MSG(!strcmp(o, "0 0\n"), "round %d: exit statuses %s", round, o);
        char *x, *y, *z;
        size_t nx, ny, nz;
        REQUIRE(flm_read_file(out, &x, &nx) == FLM_OK);
        REQUIRE(flm_read_file(ref_a, &y, &ny) == FLM_OK);
        REQUIRE(flm_read_file(ref_b, &z, &nz) == FLM_OK);
        CHECK_MSG((nx == ny && !memcmp(x, y, nx)) || (nx == nz && !memcmp(x, z, nx)),
                  "round %d: the output (%zu bytes) is neither complete package (%zu, %zu bytes)", round, nx, ny, nz);
        CHECK_EQ_INT(count_tmp(test_tmpdir()), 0);
        free(x); free(y); free(z);
        free(o); free(e);
        unlink(out);
    }
    free(out); free(ref_a); free(ref_b);
}

typedef struct {
    const char *path;
    int at;
    off_t size;
} truncate_ctx;

/* The progress callback runs before each tensor: cut the source there. */
static void truncate_source(void *ctx, int index, int total, const char *name, uint64_t done, uint64_t all) {
    (void)total; (void)name; (void)done; (void)all;
    const truncate_ctx *t = ctx;
    if (index == t->at && truncate(t->path, t->size) != 0) _exit(3);
}

TEST(convert_source_truncated_during_conversion_is_an_error_not_a_signal) {
    /* A real truncation between the header parse and the tensor reads, of the base
     * weights and then of an adapter's. Run in a child: a converter reading from the
     * mapping dies of SIGBUS there. */
    char *m = NULL, *lora = NULL, *outdir = flm_path_join(test_tmpdir(), "trunc-out");
    char *out = flm_path_join(outdir, "out.gguf"), *msg = flm_path_join(test_tmpdir(), "trunc-msg.txt");
    REQUIRE(mkdir(outdir, 0755) == 0);
    for (int with_lora = 0; with_lora < 2; with_lora++) {
        free(m);
        free(lora);
        m = copy_fixture(TEST_DATA "/micro-qwen2", "trunc-model");
        lora = copy_fixture(TEST_DATA "/micro-qwen2-lora", "trunc-lora");
        char *victim = flm_path_join(with_lora ? lora : m, with_lora ? "adapter_model.safetensors" : "model.safetensors");
        struct stat st;
        REQUIRE(stat(victim, &st) == 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            truncate_ctx t = {victim, 2, 4096};
            const char *dirs[1] = {lora};
            flm_convert_hf_options opt = {.type = FLM_F32, .n_threads = 2, .progress = truncate_source, .progress_ctx = &t,
                                       .lora_dirs = dirs, .n_lora = with_lora};
            flm_convert_hf_stats stats;
            int rc = flm_convert_hf(m, out, &opt, &stats);
            FILE *f = fopen(msg, "w");
            if (f) { fputs(flm_last_error(), f); fclose(f); }
            _exit(rc == FLM_ERR_IO ? 0 : 1);
        }
        int status;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lora %d: the converter %s %d", with_lora,
                  WIFSIGNALED(status) ? "died of signal" : "exited", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        char *text = NULL, want[2048];
        size_t len;
        snprintf(want, sizeof want, "%s changed size during conversion (was %lld bytes, now 4096)", victim, (long long)st.st_size);
        CHECK_MSG(flm_read_file(msg, &text, &len) == FLM_OK && strstr(text, want), "lora %d: %s", with_lora, text ? text : "");
        CHECK(!flm_file_exists(out));
        CHECK_EQ_INT(count_tmp(outdir), 0);
        free(text);
        unlink(msg);
        free(victim);
    }
    free(msg); free(out); free(outdir); free(lora); free(m);
}

/* A one-layer qwen2 folder whose 1 GiB embedding is a hole in a sparse file: valid,
 * cheap to make, and hashing it takes seconds. */
static char *make_sparse_model(const char *name) {
    char *d = flm_path_join(test_tmpdir(), name);
    if (mkdir(d, 0755) != 0) return d;
    flm_config c = {.vocab_size = 8 << 20, .hidden_size = 64, .intermediate_size = 128, .n_layers = 1, .n_heads = 2,
                    .n_kv_heads = 1, .head_dim = 32};
    char *cfg = flm_path_join(d, "config.json"), *wts = flm_path_join(d, "model.safetensors");
    FILE *f = fopen(cfg, "w");
    if (f) {
        fprintf(f, "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"hidden_act\": \"silu\", "
                   "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                   "\"num_key_value_heads\": 1, \"vocab_size\": %d, \"max_position_embeddings\": 512, \"rope_theta\": 10000.0, "
                   "\"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\"}\n", c.vocab_size);
        fclose(f);
    }
    strbuf h;
    flm_sb_init(&h);
    uint64_t off = 0;
    int64_t emb[2] = {c.vocab_size, c.hidden_size}, norm[1] = {c.hidden_size};
    flm_sb_printf(&h, "{\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[0,%llu]}",
              (long long)emb[0], (long long)emb[1], (unsigned long long)(off = (uint64_t)emb[0] * (uint64_t)emb[1] * 2));
    for (int k = 0; k < W_LAYER_COUNT; k++) {
        char tn[128];
        int64_t shape[FLM_MAX_DIMS];
        int nd = flm_layer_weight_shape(&c, (flm_layer_weight)k, shape);
        flm_hf_layer_name(0, (flm_layer_weight)k, tn, sizeof tn);
        uint64_t n = 2;
        flm_sb_printf(&h, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[", tn);
        for (int i = 0; i < nd; i++) { flm_sb_printf(&h, "%s%lld", i ? "," : "", (long long)shape[i]); n *= (uint64_t)shape[i]; }
        flm_sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + n));
        off += n;
    }
    flm_sb_printf(&h, ",\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}}", (long long)norm[0],
              (unsigned long long)off, (unsigned long long)(off + 2 * (uint64_t)norm[0]));
    off += 2 * (uint64_t)norm[0];
    while (h.len % 8) flm_sb_putc(&h, ' ');
    f = fopen(wts, "wb");
    if (f) {
        uint64_t hl = h.len;
        fwrite(&hl, 8, 1, f);
        fwrite(h.data, 1, h.len, f);
        fclose(f);
    }
    if (truncate(wts, (off_t)(8 + h.len + off)) != 0) test_fail(__FILE__, __LINE__, "cannot extend %s", wts);
    flm_sb_free(&h);
    free(cfg);
    free(wts);
    return d;
}

TEST(convert_cancel_while_hashing_returns_promptly) {
    /* Ctrl-C half a second in, while the 1 GiB source is being hashed: the hashing
     * stops at once (it used to run to the end of the shard, many seconds), and
     * nothing is left behind. */
    char *d = make_sparse_model("sparse-model");
    char *out = flm_path_join(test_tmpdir(), "sparse.gguf");
    char cmd[2048], *o, *e;
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s -t 1 & pid=$!; sleep 0.5; kill -INT $pid; wait $pid", test_bin(), d, out);
    double t0 = flm_now_seconds();
    int rc = test_run(cmd, &o, &e);
    double dt = flm_now_seconds() - t0;
    CHECK_MSG(rc == 1 && strstr(e, "interrupted"), "exit %d: %s", rc, e);
    CHECK_MSG(dt < 3.0, "convert took %.1f s to stop after Ctrl-C", dt - 0.5);
    CHECK(!flm_file_exists(out));
    CHECK_EQ_INT(count_tmp(test_tmpdir()), 0);
    free(o);
    free(e);
    free(out);
    free(d);
}

/* Seconds the library's SHA-256 takes over the whole file, read as the hasher reads
 * it (1 MiB blocks): its first `sample` bytes are timed and the time scaled to the
 * file's size (the hash is linear; this keeps the sanitizer build's run short). */
static double time_hash_file(const char *path, uint64_t sample) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || st.st_size <= 0) {
        if (f) fclose(f);
        return 0;
    }
    unsigned char *buf = malloc(1u << 20), d[32];
    flm_sha256 s;
    flm_sha256_init(&s);
    uint64_t done = 0;
    double t0 = flm_now_seconds();
    for (size_t n; buf && done < sample && (n = fread(buf, 1, 1u << 20, f)) > 0; done += n) flm_sha256_update(&s, buf, n);
    flm_sha256_final(&s, d);
    double dt = flm_now_seconds() - t0;
    fclose(f);
    free(buf);
    return done ? dt * (double)st.st_size / (double)done : 0;
}

TEST(convert_error_while_hashing_returns_promptly) {
    /* An error in the conversion itself (the output hits the file size limit at its
     * first tensor) while the 1 GiB source is still being hashed: convert stops the
     * hashing thread and returns, instead of finishing the SHA-256 first (the tensor
     * data used to wait for the hashes), and leaves nothing behind. The bound is
     * relative: a third of what hashing the shard alone takes on this machine. */
    char *d = make_sparse_model("sparse-model");
    char *src = flm_path_join(d, "model.safetensors");
    char *out = flm_path_join(test_tmpdir(), "sparse-efbig.gguf");
    double hash_s = time_hash_file(src, 256u << 20);
    if (hash_s < 0.3) { /* the bound below would be noise */
        test_fail(__FILE__, __LINE__, "hashing the sparse shard took only %.2f s: too fast to time against", hash_s);
        free(out); free(src); free(d);
        return;
    }
    char cmd[2048], *o, *e;
    snprintf(cmd, sizeof cmd, "sh -c 'ulimit -f 1024; exec %s convert %s -o %s --type f16 -t 1'", test_bin(), d, out);
    double t0 = flm_now_seconds();
    int rc = test_run(cmd, &o, &e);
    double dt = flm_now_seconds() - t0;
    CHECK_MSG(rc == 1 && strstr(e, "file size limit reached") && strstr(e, "no output written"), "exit %d: %s", rc, e);
    CHECK_MSG(dt < hash_s / 3, "convert took %.2f s to fail; hashing the shard alone takes %.2f s", dt, hash_s);
    CHECK(!flm_file_exists(out));
    CHECK_EQ_INT(count_tmp(test_tmpdir()), 0);
    free(o);
    free(e);
    free(out);
    free(src);
    free(d);
}

/* The converter's work is split by rows over the pool and its writes go out on a
 * writer thread: the package must not depend on either. The `tiny` synth shape (a
 * 151936-row embedding: two row chunks; every tensor through the writer's ring of
 * slots many times over) converted with 1 and 3 threads gives the same bytes for
 * q8_0, q4_0 and f16. */
/* `fieldlm convert ARGS -o OUT -t 1` and `-t 3` (OUT in the test folder, named after
 * name): whether both succeed and give the same, non-empty bytes. */
static bool same_bytes_t1_t3(const char *args, const char *name) {
    char *data[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char file[96], cmd[2048], *o = NULL, *e = NULL;
        snprintf(file, sizeof file, "%s-t%d.gguf", name, k ? 3 : 1);
        char *out = flm_path_join(test_tmpdir(), file);
        snprintf(cmd, sizeof cmd, "%s convert %s -o %s -t %d -q", test_bin(), args, out, k ? 3 : 1);
        int rc = test_run(cmd, &o, &e);
        CHECK_MSG(rc == 0, "convert %s -t %d: %s", args, k ? 3 : 1, e);
        free(o);
        free(e);
        CHECK(flm_read_file(out, &data[k], &len[k]) == FLM_OK);
        remove(out);
        free(out);
    }
    bool same = data[0] && data[1] && len[0] == len[1] && len[0] > 0 && memcmp(data[0], data[1], len[0]) == 0;
    free(data[0]);
    free(data[1]);
    return same;
}

TEST(convert_same_bytes_for_any_thread_count) {
    char *dir = flm_path_join(test_tmpdir(), "tiny-threads");
    char cmd[2048], *o = NULL, *e = NULL;
    snprintf(cmd, sizeof cmd, "%s synth --preset tiny -o %s", test_bin(), dir);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "synth: %s", e);
    free(o);
    free(e);
    if (rc != 0) { free(dir); return; }
    static const char *const TYPES[] = {"q8_0", "q4_0", "f16"};
    for (size_t ti = 0; ti < 3; ti++) {
        char args[1024], name[64];
        snprintf(args, sizeof args, "%s --type %s", dir, TYPES[ti]);
        snprintf(name, sizeof name, "tiny-%s", TYPES[ti]);
        CHECK_MSG(same_bytes_t1_t3(args, name), "%s: -t 1 and -t 3 packages differ", TYPES[ti]);
    }
    /* with a LoRA merge (its rows split over the pool too) */
    snprintf(cmd, sizeof cmd, "%s/tiny-qwen2 --lora %s/tiny-qwen2-lora --type q8_0", TEST_DATA, TEST_DATA);
    CHECK_MSG(same_bytes_t1_t3(cmd, "lora"), "LoRA merge: -t 1 and -t 3 packages differ");
    free(dir);
}
