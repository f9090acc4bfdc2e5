/* test_litertlm.c — the .litertlm container and LlmMetadata: what fieldlm writes
 * (sections, alignment, the exact tokenizer.json, stop tokens, template, sampler,
 * capacity, model type, provenance), read back by fieldlm's reader, by an independent
 * reader generated from the upstream schemas (when protoc/flatc and Debian's python3
 * modules are installed), and the model section run in LiteRT.js. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/common.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/sha256.h"
#include "format/litertlm.h"
#include "litert_util.h"
#include "test.h"
#include "text/template.h"

TEST(litertlm_llm_metadata_encode_decode) {
    flm_llm_metadata md;
    memset(&md, 0, sizeof md);
    md.stop_ids[0] = 151645;
    md.stop_ids[1] = 151643;
    md.n_stops = 2;
    md.has_sampler = true;
    md.sampler_type = 2;
    md.k = 20;
    md.p = 0.8f;
    md.temperature = 0.7f;
    md.max_num_tokens = 32768;
    md.model_type = 7;
    md.jinja = "{{ messages }}";
    md.jinja_len = strlen(md.jinja);
    unsigned char *buf;
    size_t n;
    REQUIRE(flm_llm_metadata_encode(&md, &buf, &n) == FLM_OK);
    /* field 2 (stop_tokens, LEN) first: TokenUnion{token_ids{ids: [151645]}} */
    CHECK(buf[0] == 0x12);
    flm_llm_metadata back;
    REQUIRE(flm_llm_metadata_decode(buf, n, &back) == FLM_OK);
    CHECK(!back.has_start);
    CHECK(back.n_stops == 2 && back.stop_ids[0] == 151645 && back.stop_ids[1] == 151643);
    CHECK(back.has_sampler && back.sampler_type == 2 && back.k == 20 && back.p == 0.8f && back.temperature == 0.7f);
    CHECK(back.max_num_tokens == 32768 && back.model_type == 7);
    CHECK(back.jinja_len == md.jinja_len && !memcmp(back.jinja, md.jinja, md.jinja_len));
    /* truncations are errors or partial reads, never reads past the end */
    for (size_t cut = 0; cut < n; cut++) {
        unsigned char *c = malloc(cut ? cut : 1);
        memcpy(c, buf, cut);
        (void)flm_llm_metadata_decode(c, cut, &back);
        free(c);
    }
    free(buf);
}

typedef struct {
    flm_map map;
    flm_litertlm_info info;
} opened;

static int find_section(const flm_litertlm_info *in, int type) {
    for (int i = 0; i < in->n_sec; i++)
        if (in->sec[i].data_type == type) return i;
    return -1;
}

TEST(litertlm_kcc_advisor_container_and_metadata) {
    char out[512], args[1024], *err = NULL;
    snprintf(out, sizeof out, "%s/k.litertlm", test_tmpdir());
    snprintf(args, sizeof args, "%s -o %s --type dynamic_int8 --ctx 1024", BUNDLED_MODEL, out);
    REQUIRE(lt_convert(args, &err) == 0);
    /* generation_config.json's repetition_penalty 1.1 cannot be expressed: a warning */
    CHECK_MSG(err && strstr(err, "repetition_penalty"), "stderr: %s", err ? err : "");
    free(err);
    opened *o = calloc(1, sizeof *o);
    REQUIRE(o && flm_map_open(out, &o->map) == FLM_OK);
    REQUIRE(flm_litertlm_parse(o->map.data, o->map.size, o->map.size, &o->info) == FLM_OK);
    flm_litertlm_info *in = &o->info;
    CHECK(in->major == 1 && in->header_end <= 16384);
    CHECK_EQ_INT(in->n_sec, 3);
    for (int i = 0; i < in->n_sec; i++) CHECK(in->sec[i].begin % 16384 == 0);
    int mi = find_section(in, FLM_LTLM_LLM_METADATA), ti = find_section(in, FLM_LTLM_HF_TOKENIZER_ZLIB),
        ki = find_section(in, FLM_LTLM_TFLITE_MODEL);
    REQUIRE(mi >= 0 && ti >= 0 && ki >= 0);
    CHECK(in->sec[ki].n_items == 1 && !strcmp(in->sec[ki].items[0].key, "model_type") &&
          !strcmp(in->sec[ki].items[0].value, "tf_lite_prefill_decode"));
    /* the tokenizer: u64 size + zlib stream of tokenizer.json, byte for byte */
    char *tj = NULL;
    size_t tjl = 0;
    REQUIRE(flm_read_file(BUNDLED_MODEL "/tokenizer.json", &tj, &tjl) == FLM_OK);
    const unsigned char *tp = o->map.data + in->sec[ti].begin;
    uint64_t ul;
    memcpy(&ul, tp, 8);
    CHECK(ul == tjl);
    unsigned char *inf = malloc(tjl + 1);
    uLongf got = (uLongf)tjl;
    CHECK(uncompress(inf, &got, tp + 8, (uLong)(in->sec[ti].end - in->sec[ti].begin - 8)) == Z_OK);
    CHECK(got == tjl && !memcmp(inf, tj, tjl));
    free(inf);
    free(tj);
    /* LlmMetadata: every eos id as a stop, no start token (Qwen2 has no BOS in its
     * prompts), qwen2p5, capacity = the cache, the model's own template, the sampler of
     * generation_config.json (do_sample, temperature 0.7, top_p 0.8, top_k 20) */
    flm_llm_metadata md;
    REQUIRE(flm_llm_metadata_decode(o->map.data + in->sec[mi].begin, (size_t)(in->sec[mi].end - in->sec[mi].begin), &md) == FLM_OK);
    CHECK(!md.has_start);
    CHECK(md.n_stops == 2 && md.stop_ids[0] == 151645 && md.stop_ids[1] == 151643);
    CHECK(md.model_type == 7);
    CHECK(md.max_num_tokens == 1024);
    CHECK(md.has_sampler && md.sampler_type == 2 && md.k == 20);
    CHECK(md.p == 0.8f && md.temperature == 0.7f);
    flm_template_source ts;
    REQUIRE(flm_template_source_load_dir(BUNDLED_MODEL, &ts) == FLM_OK);
    const flm_named_template *t = flm_template_source_pick(&ts, false, NULL);
    REQUIRE(t);
    CHECK(md.jinja && md.jinja_len == t->len && !memcmp(md.jinja, t->text, t->len));
    flm_template_source_free(&ts);
    /* provenance: the writer and every source file's sha256 */
    bool writer = false, files = false;
    for (int i = 0; i < in->n_sys; i++) {
        if (!strcmp(in->sys[i].key, "writer")) writer = strstr(in->sys[i].value, "fieldlm") != NULL;
        if (!strcmp(in->sys[i].key, "source_files")) files = strstr(in->sys[i].value, "  model.safetensors") != NULL;
    }
    CHECK(writer && files);
    flm_map_close(&o->map);
    free(o);
}

TEST(litertlm_model_section_is_the_tflite) {
    /* offsets inside the TFLite section count from the section's start, so the section
     * is byte for byte the .tflite written with the same options */
    char a[512], b[512], args[1024];
    snprintf(a, sizeof a, "%s/m.litertlm", test_tmpdir());
    snprintf(b, sizeof b, "%s/m.tflite", test_tmpdir());
    snprintf(args, sizeof args, "%s -o %s --type weight_only_int8 --ctx 128 --prefill 8,32", BUNDLED_MODEL, a);
    REQUIRE(lt_convert(args, NULL) == 0);
    snprintf(args, sizeof args, "%s -o %s --type weight_only_int8 --ctx 128 --prefill 8,32", BUNDLED_MODEL, b);
    REQUIRE(lt_convert(args, NULL) == 0);
    flm_map ma, mb;
    REQUIRE(flm_map_open(a, &ma) == FLM_OK);
    REQUIRE(flm_map_open(b, &mb) == FLM_OK);
    flm_litertlm_info *in = calloc(1, sizeof *in);
    REQUIRE(in && flm_litertlm_parse(ma.data, ma.size, ma.size, in) == FLM_OK);
    int ki = find_section(in, FLM_LTLM_TFLITE_MODEL);
    REQUIRE(ki >= 0);
    CHECK(in->sec[ki].end - in->sec[ki].begin == mb.size);
    CHECK(!memcmp(ma.data + in->sec[ki].begin, mb.data, mb.size));
    free(in);
    flm_map_close(&ma);
    flm_map_close(&mb);
}

TEST(litertlm_refusals_and_hostile_headers) {
    char out[512], args[1024], *err = NULL;
    snprintf(out, sizeof out, "%s/n.litertlm", test_tmpdir());
    /* micro-qwen2 has no tokenizer: a .litertlm needs one */
    snprintf(args, sizeof args, "%s/micro-qwen2 -o %s", TEST_DATA, out);
    CHECK(lt_convert(args, &err) == 1);
    CHECK(err && strstr(err, "tokenizer"));
    free(err);
    /* a header whose offsets are corrupted is an error naming what, never a bad read */
    snprintf(args, sizeof args, "%s -o %s --type dynamic_int8 --ctx 32 --prefill 8", BUNDLED_MODEL, out);
    REQUIRE(lt_convert(args, NULL) == 0);
    flm_map m;
    REQUIRE(flm_map_open(out, &m) == FLM_OK);
    size_t hl = 32 + 2048 < m.size ? 32 + 2048 : m.size;
    unsigned char *h = malloc(hl);
    flm_litertlm_info *in = calloc(1, sizeof *in);
    REQUIRE(h && in);
    int failures = 0;
    for (size_t i = 0; i < hl; i += 3) {
        memcpy(h, m.data, hl);
        h[i] ^= 0x5a;
        if (flm_litertlm_parse(h, hl, m.size, in) != FLM_OK) failures++;
    }
    CHECK(failures > 0);
    memcpy(h, m.data, hl);
    CHECK(flm_litertlm_parse(h, 31, m.size, in) != FLM_OK);
    free(h);
    free(in);
    flm_map_close(&m);
    /* inspect shows the decoded metadata */
    char cmd[1024], *o = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect %s", test_bin(), out);
    REQUIRE(test_run(cmd, &o, NULL) == 0);
    CHECK(o && strstr(o, "qwen2p5") && strstr(o, "stop tokens: 151645 151643") && strstr(o, "max_num_tokens): 32") &&
          strstr(o, "HF_Tokenizer_Zlib") && strstr(o, "tf_lite_prefill_decode") && strstr(o, "decode (subgraph"));
    free(o);
}

static void sha_hex(const void *p, size_t n, char hex[65]) {
    flm_sha256 s;
    unsigned char d[32];
    flm_sha256_init(&s);
    flm_sha256_update(&s, p, n);
    flm_sha256_final(&s, d);
    flm_sha256_hex(d, hex);
}

TEST(litertlm_independent_reader_from_upstream_schemas) {
    bool have = test_run("command -v protoc >/dev/null && command -v flatc >/dev/null && "
                         "/usr/bin/python3 -c 'import google.protobuf, flatbuffers' 2>/dev/null",
                         NULL, NULL) == 0;
    if (!have) {
        const char *req = getenv("FLM_LITERT_REQUIRED");
        CHECK_MSG(!(req && !strcmp(req, "1")), "protoc/flatc/python3-protobuf/python3-flatbuffers are required in CI");
        fprintf(stderr, "  SKIP: protoc, flatc, python3-protobuf or python3-flatbuffers not installed\n");
        return;
    }
    char out[512], args[1024], cmd[1024], *o = NULL;
    snprintf(out, sizeof out, "%s/i.litertlm", test_tmpdir());
    snprintf(args, sizeof args, "%s --lora %s/kcc-advisor-lora -o %s --type dynamic_int8 --ctx 512 --prefill 8,64", BUNDLED_MODEL, TEST_DATA,
             out);
    REQUIRE(lt_convert(args, NULL) == 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/litert/check_metadata.py %s", out);
    REQUIRE(test_run(cmd, &o, NULL) == 0);
    flm_json_doc *d = o ? flm_json_parse(o, strlen(o), "check_metadata.py") : NULL;
    free(o);
    REQUIRE(d);
    const flm_json *r = flm_json_root(d), *secs = flm_json_get(r, "sections");
    REQUIRE(secs && secs->len == 3);
    const flm_json *md = flm_json_get(flm_json_at(secs, 0), "llm_metadata");
    REQUIRE(md);
    CHECK_STR(flm_json_string(flm_json_get(md, "llm_model_type"), ""), "qwen2p5");
    CHECK(flm_json_int(flm_json_get(md, "max_num_tokens"), 0) == 512);
    CHECK(!flm_json_bool(flm_json_get(md, "start_token"), true));
    const flm_json *stops = flm_json_get(md, "stop_tokens");
    CHECK(stops && stops->len == 2 && flm_json_int(flm_json_at(flm_json_at(stops, 0), 0), 0) == 151645);
    /* the template and tokenizer as the upstream reader sees them are the model's own */
    flm_template_source ts;
    REQUIRE(flm_template_source_load_dir(BUNDLED_MODEL, &ts) == FLM_OK);
    const flm_named_template *t = flm_template_source_pick(&ts, false, NULL);
    char hex[65];
    sha_hex(t->text, t->len, hex);
    CHECK_STR(flm_json_string(flm_json_get(md, "jinja_sha256"), ""), hex);
    flm_template_source_free(&ts);
    char *tj = NULL;
    size_t tjl;
    REQUIRE(flm_read_file(BUNDLED_MODEL "/tokenizer.json", &tj, &tjl) == FLM_OK);
    sha_hex(tj, tjl, hex);
    free(tj);
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(secs, 1), "tokenizer_sha256"), ""), hex);
    const char *adapters = flm_json_string(flm_json_get(flm_json_get(r, "system_metadata"), "lora_adapters"), "");
    CHECK(strstr(adapters, "kcc-advisor-lora") != NULL);
    flm_json_free(d);
}

TEST(litertlm_litertjs_runs_the_bundled_model) {
    int have = lt_runtime("litertlm in LiteRT.js");
    CHECK_MSG(have >= 0, "LiteRT.js is required (FLM_LITERT_REQUIRED=1) but not installed");
    if (have <= 0) return;
    char out[512], args[1024];
    snprintf(out, sizeof out, "%s/js.litertlm", test_tmpdir());
    snprintf(args, sizeof args, "%s -o %s --type f32 --ctx 256 --prefill 8,64", BUNDLED_MODEL, out);
    REQUIRE(lt_convert(args, NULL) == 0);
    flm_json_doc *d = NULL;
    int rc = lt_run_js(out, TEST_DATA "/kcc-advisor/reference.safetensors", "--greedy 16", &d);
    CHECK(rc == 0);
    REQUIRE(d);
    lt_check_cases(d, 1e-4, true, "kcc_f32 from .litertlm");
    flm_json_free(d);
}

TEST(litertlm_write_failure_leaves_nothing) {
    /* the file size limit hit while streaming the weights: an error naming it, and no
     * temporary file left in the folder */
    char dir[512], cmd[2048], *err = NULL;
    snprintf(dir, sizeof dir, "%s/full", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && ulimit -f 4096 && %s convert %s -o %s/x.litertlm --type f32 --ctx 64 --prefill 8 -q", dir,
             test_bin(), BUNDLED_MODEL, dir);
    CHECK(test_run(cmd, NULL, &err) != 0);
    CHECK_MSG(err && strstr(err, "file size limit"), "stderr: %s", err ? err : "");
    free(err);
    char *ls = NULL;
    snprintf(cmd, sizeof cmd, "ls -A %s", dir);
    REQUIRE(test_run(cmd, &ls, NULL) == 0);
    CHECK_MSG(ls && ls[0] == 0, "left behind: %s", ls ? ls : "");
    free(ls);
}

TEST(litertlm_litertjs_greedy_text_equals_fieldlm) {
    /* fieldlm's own greedy answers (chat template, no repetition penalty) to three
     * farmer questions, token for token — stop token included — from the bundle in
     * LiteRT.js: f32 must agree on every step; dynamic_int8's agreement is reported */
    int have = lt_runtime("greedy vs fieldlm in LiteRT.js");
    CHECK_MSG(have >= 0, "LiteRT.js is required (FLM_LITERT_REQUIRED=1) but not installed");
    if (have <= 0) return;
    static const char *const Q[] = {"How to control aphids in cotton? (crop: Cotton)",
                                    "FARMER ASKED QUERY ABOUT FERTILIZER FOR PADDY (crop: Paddy)",
                                    "What is the dose of urea for maize? (crop: Maize)"};
    strbuf ref;
    flm_sb_init(&ref);
    flm_sb_puts(&ref, "{\"cases\":[");
    for (size_t q = 0; q < sizeof Q / sizeof *Q; q++) {
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s run -m %s -p '%s' --greedy -n 40 --json", test_bin(), BUNDLED_MODEL, Q[q]);
        REQUIRE(test_run(cmd, &out, NULL) == 0);
        flm_json_doc *d = flm_json_parse(out, strlen(out), "run --json");
        free(out);
        REQUIRE(d);
        const flm_json *r = flm_json_root(d), *p = flm_json_get(r, "prompt_ids"), *ids = flm_json_get(r, "ids"),
                       *stop = flm_json_get(r, "stop_token");
        REQUIRE(p && ids);
        flm_sb_puts(&ref, q ? ",{\"input_ids\":" : "{\"input_ids\":");
        flm_json_write(&ref, p, false);
        flm_sb_puts(&ref, ",\"greedy_ids\":[");
        for (size_t i = 0; i < ids->len; i++) flm_sb_printf(&ref, "%s%lld", i ? "," : "", (long long)flm_json_int(flm_json_at(ids, i), -1));
        if (stop && stop->type == JSON_NUMBER) flm_sb_printf(&ref, "%s%lld", ids->len ? "," : "", (long long)flm_json_int(stop, -1));
        flm_sb_puts(&ref, "]}");
        flm_json_free(d);
    }
    flm_sb_puts(&ref, "]}");
    char refpath[512];
    snprintf(refpath, sizeof refpath, "%s/fieldlm_greedy.json", test_tmpdir());
    FILE *f = fopen(refpath, "w");
    REQUIRE(f);
    fwrite(ref.data, 1, ref.len, f);
    fclose(f);
    flm_sb_free(&ref);
    static const char *const T[] = {"f32", "dynamic_int8"};
    for (int t = 0; t < 2; t++) {
        char out[512], args[1024];
        snprintf(out, sizeof out, "%s/g_%s.litertlm", test_tmpdir(), T[t]);
        snprintf(args, sizeof args, "%s -o %s --type %s --ctx 256 --prefill 8,64", BUNDLED_MODEL, out, T[t]);
        REQUIRE(lt_convert(args, NULL) == 0);
        flm_json_doc *d = NULL;
        CHECK(lt_run_js(out, refpath, NULL, &d) == 0);
        REQUIRE(d);
        lt_check_cases(d, 0, t == 0, t == 0 ? "greedy vs fieldlm, f32" : "greedy vs fieldlm, dynamic_int8");
        flm_json_free(d);
    }
}
