/* test_tflite.c — the FlatBuffers builder/reader, the .tflite writer (structure,
 * sizes, refusals) and, when LiteRT.js is installed, the written models run in a real
 * LiteRT runtime against transformers' references. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/common.h"
#include "base/json.h"
#include "format/flatbuf.h"
#include "format/tflite.h"
#include "litert_util.h"
#include "test.h"

TEST(flatbuf_builder_reader_roundtrip) {
    flm_fb_builder b;
    flm_fb_init(&b);
    int32_t v[3] = {7, -8, 9};
    int64_t w[2] = {1LL << 40, -5};
    flm_fb_ref s = flm_fb_cstring(&b, "hello");
    flm_fb_ref vv = flm_fb_vector(&b, v, 3, 4, 4), wv = flm_fb_vector(&b, w, 2, 8, 8);
    flm_fb_table_start(&b);
    flm_fb_add_u8(&b, 0, 5, 0, false);
    flm_fb_ref child = flm_fb_table_end(&b);
    flm_fb_ref kids[2] = {child, child};
    flm_fb_ref kv = flm_fb_vector_refs(&b, kids, 2);
    flm_fb_table_start(&b);
    flm_fb_add_ref(&b, 0, s);
    flm_fb_add_u64(&b, 1, 0x123456789abcULL, 0, true);
    flm_fb_add_ref(&b, 2, vv);
    flm_fb_add_i32(&b, 4, 0, 0, false); /* default: absent */
    flm_fb_add_f32(&b, 5, 1.5f, 0, false);
    flm_fb_add_ref(&b, 6, wv);
    flm_fb_add_ref(&b, 7, kv);
    flm_fb_ref root = flm_fb_table_end(&b);
    const unsigned char *d;
    size_t n;
    REQUIRE(flm_fb_finish(&b, root, "TEST", &d, &n) == FLM_OK);
    CHECK(n % 8 == 0);
    flm_fb_reader r = {d, n, false};
    flm_fb_table t = flm_fb_root(&r, "TEST");
    REQUIRE(t.pos);
    uint32_t sl = 0;
    const char *str = flm_fb_get_string(&r, t, 0, &sl);
    CHECK(str && sl == 5 && !memcmp(str, "hello", 5) && str[5] == 0);
    CHECK(flm_fb_get_u64(&r, t, 1, 0) == 0x123456789abcULL);
    flm_fb_vec x = flm_fb_get_vector(&r, t, 2, 4);
    CHECK(x.n == 3 && flm_fb_vec_i32(&r, x, 1) == -8 && flm_fb_vec_i32(&r, x, 2) == 9);
    CHECK(!flm_fb_has(&r, t, 4) && flm_fb_get_i32(&r, t, 4, 42) == 42);
    CHECK(flm_fb_get_f32(&r, t, 5, 0) == 1.5f);
    flm_fb_vec y = flm_fb_get_vector(&r, t, 6, 8);
    CHECK(y.n == 2 && flm_fb_vec_i64(&r, y, 0) == (1LL << 40) && flm_fb_vec_i64(&r, y, 1) == -5);
    flm_fb_vec k = flm_fb_get_vector(&r, t, 7, 4);
    CHECK(k.n == 2 && flm_fb_get_u8(&r, flm_fb_vec_table(&r, k, 1), 0, 0) == 5);
    CHECK(!r.bad);
    CHECK(flm_fb_root(&r, "NOPE").pos == 0 && r.bad); /* wrong identifier */
    /* every truncation reads as absent or bad, never outside the buffer (ASan checks) */
    for (size_t cut = 0; cut < n; cut++) {
        unsigned char *c = malloc(cut ? cut : 1);
        memcpy(c, d, cut);
        flm_fb_reader rc = {c, cut, false};
        flm_fb_table tt = flm_fb_root(&rc, NULL);
        (void)flm_fb_get_string(&rc, tt, 0, &sl);
        flm_fb_vec q = flm_fb_get_vector(&rc, tt, 2, 4);
        for (uint32_t i = 0; i < q.n; i++) (void)flm_fb_vec_i32(&rc, q, i);
        free(c);
    }
    flm_fb_free(&b);
}

/* Reads `inspect --json` of a converted file. */
static flm_json_doc *inspect_json(const char *path) {
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect --json %s", test_bin(), path);
    if (test_run(cmd, &out, NULL) != 0) { free(out); return NULL; }
    flm_json_doc *d = flm_json_parse(out, strlen(out), "inspect --json");
    free(out);
    return d;
}

TEST(tflite_f32_structure_signatures_and_size) {
    char out[512], args[1024];
    snprintf(out, sizeof out, "%s/k.tflite", test_tmpdir());
    snprintf(args, sizeof args, "%s -o %s --type f32 --ctx 64", BUNDLED_MODEL, out);
    char *err = NULL;
    REQUIRE(lt_convert(args, &err) == 0);
    free(err);
    flm_json_doc *d = inspect_json(out);
    REQUIRE(d);
    const flm_json *r = flm_json_root(d);
    CHECK_STR(flm_json_string(flm_json_get(r, "format"), ""), "tflite");
    const flm_json *sigs = flm_json_get(r, "signatures");
    /* default prefill set 8,64,128,... cut at the 64-token cache: prefill_8, prefill_64, decode */
    REQUIRE(sigs && sigs->len == 3);
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(sigs, 0), "key"), ""), "prefill_8");
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(sigs, 1), "key"), ""), "prefill_64");
    const flm_json *dec = flm_json_at(sigs, 2);
    CHECK_STR(flm_json_string(flm_json_get(dec, "key"), ""), "decode");
    const flm_json *ins = flm_json_get(dec, "inputs"), *outs = flm_json_get(dec, "outputs");
    REQUIRE(ins && outs);
    CHECK_EQ_INT((int)ins->len, 2 + 2 * 4); /* tokens, input_pos, k/v of 4 layers */
    CHECK_EQ_INT((int)outs->len, 2 * 4 + 1);
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(ins, 0), "name"), ""), "tokens");
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(ins, 1), "name"), ""), "input_pos");
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(ins, 2), "name"), ""), "kv_cache_k_0");
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(ins, 3), "name"), ""), "kv_cache_v_0");
    const flm_json *kv_shape = flm_json_get(flm_json_at(ins, 2), "shape");
    REQUIRE(kv_shape && kv_shape->len == 4);
    CHECK(flm_json_int(flm_json_at(kv_shape, 1), 0) == 64 && flm_json_int(flm_json_at(kv_shape, 2), 0) == 2 &&
          flm_json_int(flm_json_at(kv_shape, 3), 0) == 32);
    const flm_json *lg = flm_json_at(outs, 8);
    CHECK_STR(flm_json_string(flm_json_get(lg, "name"), ""), "logits");
    CHECK(flm_json_int(flm_json_at(flm_json_get(lg, "shape"), 2), 0) == 151936);
    /* prefill returns the cache only */
    CHECK_EQ_INT((int)flm_json_get(flm_json_at(sigs, 0), "outputs")->len, 8);
    /* weights stored once: the float32 constants are the model's parameters (20.3 M,
     * tied embedding once), and the file is within 2% of them */
    const flm_json *f32 = flm_json_get(flm_json_get(r, "constants_by_type"), "FLOAT32");
    double wbytes = flm_json_number(flm_json_get(f32, "bytes"), 0), fbytes = flm_json_number(flm_json_get(r, "bytes"), 0);
    CHECK(wbytes > 4 * 20.0e6 && wbytes < 4 * 20.6e6);
    CHECK_MSG(fbytes <= wbytes * 1.02, "file %.0f bytes, weights %.0f", fbytes, wbytes);
    /* no S x S constant: inline constants are O(S) */
    CHECK(flm_json_number(flm_json_get(r, "inline_bytes"), 1e9) < 64 * 1024);
    const flm_json *ops = flm_json_get(r, "operator_counts");
    CHECK(flm_json_int(flm_json_get(ops, "DYNAMIC_UPDATE_SLICE"), 0) == 3 * 8);
    CHECK(flm_json_int(flm_json_get(ops, "EMBEDDING_LOOKUP"), 0) == 3);
    CHECK(!flm_json_get(ops, "GATHER")); /* the mask is computed, not gathered from a table */
    flm_json_free(d);
}

TEST(tflite_large_cache_costs_nothing_at_conversion) {
    /* a 4096-token cache: the graph's constants stay O(S); AI Edge Torch's mask would be 67 MB */
    char out[512], args[1024];
    snprintf(out, sizeof out, "%s/k4k.tflite", test_tmpdir());
    snprintf(args, sizeof args, "%s -o %s --type dynamic_int8 --ctx 4096 --prefill 8,128", BUNDLED_MODEL, out);
    REQUIRE(lt_convert(args, NULL) == 0);
    flm_json_doc *d = inspect_json(out);
    REQUIRE(d);
    const flm_json *r = flm_json_root(d);
    CHECK(flm_json_number(flm_json_get(r, "inline_bytes"), 1e9) < 64 * 1024);
    const flm_json *i8 = flm_json_get(flm_json_get(r, "constants_by_type"), "INT8");
    CHECK(flm_json_number(flm_json_get(i8, "bytes"), 0) > 19e6); /* int8 matrices + the embedding */
    CHECK(flm_json_number(flm_json_get(r, "bytes"), 0) < 24e6);
    flm_json_free(d);
}

TEST(tflite_refusals) {
    char out[512], args[1024], *err = NULL;
    snprintf(out, sizeof out, "%s/r.tflite", test_tmpdir());
    /* kcc-advisor: max_position_embeddings 32768 */
    snprintf(args, sizeof args, "%s -o %s --ctx 40000", BUNDLED_MODEL, out);
    CHECK(lt_convert(args, &err) == 1);
    CHECK(err && strstr(err, "max_position_embeddings"));
    free(err);
    snprintf(args, sizeof args, "%s -o %s --ctx 64 --prefill 8,128", BUNDLED_MODEL, out);
    CHECK(lt_convert(args, &err) == 1);
    CHECK(err && strstr(err, "--prefill 128 is longer than the cache"));
    free(err);
    snprintf(args, sizeof args, "%s -o %s --type q8_0", BUNDLED_MODEL, out);
    CHECK(lt_convert(args, &err) == 2);
    CHECK(err && strstr(err, "dynamic_int8"));
    free(err);
    snprintf(args, sizeof args, "%s -o %s --format onnx", BUNDLED_MODEL, out);
    CHECK(lt_convert(args, &err) == 2);
    free(err);
    snprintf(args, sizeof args, "%s -o %s/x.gguf --ctx 64", BUNDLED_MODEL, test_tmpdir());
    CHECK(lt_convert(args, &err) == 2); /* a GGUF's context is chosen when running */
    free(err);
    struct stat st;
    CHECK(stat(out, &st) != 0); /* nothing written */
    /* an output that is one of the inputs is refused before any work */
    snprintf(args, sizeof args, "%s -o %s/config.json --format tflite", BUNDLED_MODEL, BUNDLED_MODEL);
    CHECK(lt_convert(args, &err) == 1);
    free(err);
    /* --format overrides the extension */
    snprintf(args, sizeof args, "%s -o %s/model.bin --format tflite --type f32 --ctx 32 --prefill 8", BUNDLED_MODEL, test_tmpdir());
    CHECK(lt_convert(args, NULL) == 0);
    snprintf(out, sizeof out, "%s/model.bin", test_tmpdir());
    FILE *f = fopen(out, "rb");
    unsigned char hdr[8] = {0};
    CHECK(f && fread(hdr, 1, 8, f) == 8 && !memcmp(hdr + 4, "TFL3", 4));
    if (f) fclose(f);
}

TEST(tflite_another_architecture_is_a_clear_error) {
    char dir[512], cmd[2048], *err = NULL;
    snprintf(dir, sizeof dir, "%s/llama", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && cp %s/micro-qwen2/model.safetensors %s/ && sed 's/\"model_type\": *\"qwen2\"/\"model_type\": \"llama\"/' "
             "%s/micro-qwen2/config.json > %s/config.json",
             dir, TEST_DATA, dir, TEST_DATA, dir);
    REQUIRE(test_run(cmd, NULL, NULL) == 0);
    char args[1024];
    snprintf(args, sizeof args, "%s -o %s/l.tflite", dir, test_tmpdir());
    CHECK(lt_convert(args, &err) == 1);
    CHECK_MSG(err && (strstr(err, "llama") || strstr(err, "qwen2")), "stderr: %s", err ? err : "");
    free(err);
}

/* ---- in LiteRT.js ---- */

static void js_case(const char *hf, const char *lora, const char *ref_dir, const char *type, const char *ctx, double tol, bool exact,
                    const char *label, const char *extra) {
    int have = lt_runtime(label);
    CHECK_MSG(have >= 0, "LiteRT.js is required (FLM_LITERT_REQUIRED=1) but not installed");
    if (have <= 0) return;
    char out[512], args[1024], ref[512];
    snprintf(out, sizeof out, "%s/%s.tflite", test_tmpdir(), label);
    snprintf(args, sizeof args, "%s %s%s -o %s --type %s --ctx %s", hf, lora ? "--lora " : "", lora ? lora : "", out, type, ctx);
    REQUIRE(lt_convert(args, NULL) == 0);
    snprintf(ref, sizeof ref, "%s/reference.safetensors", ref_dir);
    flm_json_doc *d = NULL;
    int rc = lt_run_js(out, ref, extra, &d);
    CHECK_MSG(rc == 0, "%s: run.mjs exit %d", label, rc);
    REQUIRE(d);
    lt_check_cases(d, tol, exact, label);
    flm_json_free(d);
}

TEST(tflite_litertjs_f32_kcc_advisor_matches_transformers) {
    js_case(BUNDLED_MODEL, NULL, TEST_DATA "/kcc-advisor", "f32", "256", 1e-4, true, "kcc_f32", NULL);
}

TEST(tflite_litertjs_f32_micro_untied_long_prompt_matches_transformers) {
    /* untied lm_head; case 3 has 300 tokens: several prefill signatures, padded slots */
    js_case(TEST_DATA "/micro-qwen2", NULL, TEST_DATA "/micro-qwen2", "f32", "512", 1e-4, true, "micro_f32", NULL);
}

TEST(tflite_litertjs_f32_lora_merged_matches_transformers) {
    js_case(BUNDLED_MODEL, TEST_DATA "/kcc-advisor-lora", TEST_DATA "/kcc-advisor-lora", "f32", "256", 1e-4, true, "kcc_lora_f32", "--greedy 16");
    js_case(TEST_DATA "/micro-qwen2", TEST_DATA "/micro-qwen2-lora", TEST_DATA "/micro-qwen2-lora", "none", "512", 1e-4, true,
            "micro_lora_f32", NULL);
}

TEST(tflite_litertjs_fp16_and_int8_recipes) {
    /* fp16 of bf16 weights is exact; int8 per-channel weights move the logits by up to
     * ~0.5 (docs/LITERT.md); greedy agreement is reported */
    js_case(BUNDLED_MODEL, NULL, TEST_DATA "/kcc-advisor", "fp16", "128", 1e-4, true, "kcc_fp16", "--greedy 8");
    js_case(BUNDLED_MODEL, NULL, TEST_DATA "/kcc-advisor", "dynamic_int8", "128", 1.0, false, "kcc_dynamic_int8", NULL);
    js_case(BUNDLED_MODEL, NULL, TEST_DATA "/kcc-advisor", "weight_only_int8", "128", 1.0, false, "kcc_weight_only_int8", "--greedy 8");
    js_case(TEST_DATA "/micro-qwen2", NULL, TEST_DATA "/micro-qwen2", "dynamic_int8", "512", 1.0, false, "micro_dynamic_int8", "--greedy 16");
}
