/* test_doctor.c — `fieldlm doctor`: a faithful package written by fieldlm, then one
 * package per fault (its LlmMetadata / tokenizer sections rewritten with the litertlm
 * writer, the model section unchanged) must give exactly the expected codes and
 * severities; --fix output passes with no error and keeps the model bytes; the real
 * LiteRT-LM fixture and its LlmMetadata read cleanly; unreadable input is exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/common.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/outfile.h"
#include "dev/doctor.h"
#include "format/litertlm.h"
#include "litert_util.h"
#include "test.h"

#define KCC_TRUTH BUNDLED_MODEL

/* ---- the faithful package, read once ---- */
typedef struct {
    char path[512];
    flm_map map;
    flm_litertlm_info info;
    flm_llm_metadata md;
    int sec_md, sec_tok, sec_model;
    bool ok, tried;
} good_pkg;
static good_pkg G;
static flm_doc_truth *g_truth;

static int find_sec(const flm_litertlm_info *in, int type) {
    for (int i = 0; i < in->n_sec; i++)
        if (in->sec[i].data_type == type) return i;
    return -1;
}

static const good_pkg *good(void) {
    if (G.tried) return G.ok ? &G : NULL;
    G.tried = true;
    snprintf(G.path, sizeof G.path, "%s/good.litertlm", test_tmpdir());
    char args[1024];
    snprintf(args, sizeof args, "%s -o %s --type dynamic_int8 --ctx 256 --prefill 8", BUNDLED_MODEL, G.path);
    if (lt_convert(args, NULL) != 0) return NULL;
    if (flm_map_open(G.path, &G.map) || flm_litertlm_parse(G.map.data, G.map.size, G.map.size, &G.info)) return NULL;
    G.sec_md = find_sec(&G.info, FLM_LTLM_LLM_METADATA);
    G.sec_tok = find_sec(&G.info, FLM_LTLM_HF_TOKENIZER_ZLIB);
    G.sec_model = find_sec(&G.info, FLM_LTLM_TFLITE_MODEL);
    if (G.sec_md < 0 || G.sec_tok < 0 || G.sec_model < 0) return NULL;
    if (flm_llm_metadata_decode(G.map.data + G.info.sec[G.sec_md].begin,
                                (size_t)(G.info.sec[G.sec_md].end - G.info.sec[G.sec_md].begin), &G.md))
        return NULL;
    G.ok = true;
    return &G;
}

static const flm_doc_truth *truth(void) {
    if (!g_truth && flm_doc_truth_load(KCC_TRUTH, &g_truth)) return NULL;
    return g_truth;
}

static const unsigned char *sec_bytes(const flm_map *m, const flm_litertlm_info *in, int s, size_t *n) {
    *n = (size_t)(in->sec[s].end - in->sec[s].begin);
    return m->data + in->sec[s].begin;
}

/* One variant of the faithful package: its metadata (md, or raw bytes), tokenizer
 * section (bytes and type) and model section (replacement bytes) as given. */
typedef struct {
    flm_llm_metadata md;
    const unsigned char *md_raw;
    size_t md_raw_len;
    const unsigned char *tok;
    size_t tok_len;
    int tok_type;
    const unsigned char *model;
    size_t model_len;
} variant;

static variant base_variant(void) {
    variant v;
    memset(&v, 0, sizeof v);
    v.md = G.md;
    /* encode from the plain fields (one id per token), as fieldlm writes them */
    memset(v.md.stops, 0, sizeof v.md.stops);
    memset(&v.md.start_tok, 0, sizeof v.md.start_tok);
    v.tok = sec_bytes(&G.map, &G.info, G.sec_tok, &v.tok_len);
    v.tok_type = FLM_LTLM_HF_TOKENIZER_ZLIB;
    v.model = sec_bytes(&G.map, &G.info, G.sec_model, &v.model_len);
    return v;
}

static bool write_variant(const char *path, const variant *v) {
    unsigned char *meta = NULL;
    size_t meta_len = 0;
    if (v->md_raw) { meta = malloc(v->md_raw_len); memcpy(meta, v->md_raw, v->md_raw_len); meta_len = v->md_raw_len; }
    else if (flm_llm_metadata_encode(&v->md, &meta, &meta_len)) return false;
    flm_litertlm_kv sys[] = {{"writer", "test_doctor.c"}};
    flm_litertlm_kv items[] = {{"model_type", "tf_lite_prefill_decode"}};
    flm_litertlm_section sec[] = {
        {FLM_LTLM_LLM_METADATA, meta, meta_len, NULL, 0},
        {v->tok_type, v->tok, v->tok_len, NULL, 0},
        {FLM_LTLM_TFLITE_MODEL, v->model, v->model_len, items, 1},
    };
    flm_outfile of;
    bool ok = flm_outfile_open(path, &of) == FLM_OK;
    if (ok && flm_litertlm_write(&of, sys, 1, sec, 3, NULL, NULL)) { flm_outfile_abort(&of); ok = false; }
    if (ok) ok = flm_outfile_commit(&of) == FLM_OK;
    free(meta);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* "code:severity code:severity ..." sorted, so that expectations do not depend on
 * the order of the checks. */
static char *sorted_codes(const char *const *items, int n) {
    const char **s = malloc((size_t)(n ? n : 1) * sizeof *s);
    memcpy(s, items, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    strbuf sb;
    flm_sb_init(&sb);
    for (int i = 0; i < n; i++) flm_sb_printf(&sb, "%s%s", i ? " " : "", s[i]);
    flm_sb_cstr(&sb);
    free(s);
    return flm_sb_take(&sb);
}

/* A space-separated list, sorted. */
static char *canon(const char *list) {
    char *copy = flm_strdup(list), *save = NULL;
    const char *items[64];
    int n = 0;
    for (char *t = strtok_r(copy, " ", &save); t && n < 64; t = strtok_r(NULL, " ", &save)) items[n++] = t;
    char *out = sorted_codes(items, n);
    free(copy);
    return out;
}

static char *codes(const flm_doc_report *r) {
    char buf[64][40];
    const char *items[64];
    int n = 0;
    for (int i = 0; i < r->n && n < 64; i++, n++) {
        snprintf(buf[n], sizeof buf[n], "%s:%s", r->items[i].code, flm_doc_severity_name(r->items[i].severity));
        items[n] = buf[n];
    }
    return sorted_codes(items, n);
}

static int g_n;
/* Writes the variant and checks its findings with and without the model's folder. */
static void expect_variant(const char *name, const variant *v, const char *want_hf, const char *want_alone, flm_doc_report *keep) {
    char path[600];
    snprintf(path, sizeof path, "%s/v%d.litertlm", test_tmpdir(), g_n++);
    if (!write_variant(path, v)) { test_fail(__FILE__, __LINE__, "%s: could not write the variant: %s", name, flm_last_error()); return; }
    for (int pass = 0; pass < 2; pass++) {
        const char *want = pass ? want_alone : want_hf;
        if (!want) continue;
        flm_doc_report rep;
        if (flm_doctor_check_file(path, pass ? NULL : truth(), &rep)) { test_fail(__FILE__, __LINE__, "%s: %s", name, flm_last_error()); continue; }
        char *got = codes(&rep), *w = canon(want);
        CHECK_MSG(!strcmp(got, w), "%s (%s): got [%s], want [%s]", name, pass ? "file alone" : "--hf", got, w);
        free(got);
        free(w);
        if (keep && !pass) *keep = rep;
        else flm_doc_report_free(&rep);
    }
    remove(path);
}

static bool finding_has(const flm_doc_report *r, const char *code, const char *text) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->items[i].code, code) && strstr(r->items[i].message, text)) return true;
    return false;
}

#define BASE_HF "sampler:warning context:warning quantization:info"
#define BASE_ALONE "context:warning quantization:info"

TEST(doctor_faithful_package_and_metadata_faults) {
    REQUIRE(good() && truth());
    variant v = base_variant();
    flm_doc_report rep;
    memset(&rep, 0, sizeof rep);
    /* faithful: only what the package cannot express (repetition penalty), the small
     * cache of this test package, and the weights */
    expect_variant("faithful", &v, BASE_HF, BASE_ALONE, &rep);
    CHECK(rep.cache_length == 256 && rep.logits_vocab == 151936);
    CHECK(finding_has(&rep, "sampler", "repetition_penalty 1.1"));
    CHECK(finding_has(&rep, "quantization", "int8 per-channel"));
    CHECK(finding_has(&rep, "quantization", "FULLY_CONNECTED operators take int8 weights directly")); /* dynamic_int8 */
    flm_doc_report_free(&rep);

    /* stop tokens: only <|endoftext|> */
    v = base_variant();
    v.md.n_stops = 1;
    v.md.stop_ids[0] = 151643;
    expect_variant("stops only <|endoftext|>", &v, "stop_tokens:error " BASE_HF, "stop_tokens:error " BASE_ALONE, &rep);
    CHECK(finding_has(&rep, "stop_tokens", "<|im_end|> (151645)"));
    flm_doc_report_free(&rep);
    /* no stop tokens at all */
    v.md.n_stops = 0;
    expect_variant("no stops", &v, "stop_tokens:error " BASE_HF, NULL, NULL);
    /* stops given as strings that resolve to one token each: fine (AI Edge Torch writes token_str) */
    v = base_variant();
    v.md.stops[0].str = "<|im_end|>";
    v.md.stops[0].str_len = 10;
    v.md.stops[1].str = "<|endoftext|>";
    v.md.stops[1].str_len = 13;
    expect_variant("stops as one-token strings", &v, BASE_HF, BASE_ALONE, NULL);
    /* a stop string that is several tokens */
    v.md.n_stops = 3;
    v.md.stops[2].str = "Farmer:";
    v.md.stops[2].str_len = 7;
    expect_variant("multi-token stop string", &v, "stop_tokens:warning " BASE_HF, NULL, &rep);
    CHECK(finding_has(&rep, "stop_tokens", "\"Farmer:\" encodes to 3 tokens"));
    flm_doc_report_free(&rep);
    /* only <|im_end|>: <|endoftext|> (generation_config eos) missing is a warning with --hf */
    v = base_variant();
    v.md.n_stops = 1;
    expect_variant("stops only <|im_end|>", &v, "stop_tokens:warning " BASE_HF, BASE_ALONE, NULL);

    /* prompt template: none; one that renders differently */
    v = base_variant();
    v.md.jinja = NULL;
    v.md.jinja_len = 0;
    expect_variant("no jinja template", &v, "prompt_template:error " BASE_HF, NULL, NULL);
    v = base_variant();
    const char *qs = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    char *t2 = flm_strndup(G.md.jinja, G.md.jinja_len);
    REQUIRE(t2);
    /* the second one: the first is in the tools branch, which these conversations do not reach */
    char *at = strstr(t2, qs);
    REQUIRE(at);
    at = strstr(at + 1, qs);
    REQUIRE(at);
    memcpy(at + 14, "made for Indian farmers.", 24); /* was "created by Alibaba Cloud" */
    v.md.jinja = t2;
    expect_variant("template renders differently", &v, "prompt_template:error " BASE_HF, NULL, &rep);
    CHECK(finding_has(&rep, "prompt_template", "\"user only\" renders differently from byte 33"));
    flm_doc_report_free(&rep);
    /* a template that only differs in Jinja whitespace control renders the same: no finding */
    strbuf ws;
    flm_sb_init(&ws);
    flm_sb_append(&ws, G.md.jinja, G.md.jinja_len);
    flm_sb_puts(&ws, "{#- a comment -#}");
    v.md.jinja = flm_sb_cstr(&ws);
    v.md.jinja_len = ws.len;
    expect_variant("template differs in text only", &v, BASE_HF, NULL, NULL);
    flm_sb_free(&ws);
    free(t2);

    /* sampler: none (greedy where the model samples); values unlike generation_config */
    v = base_variant();
    v.md.has_sampler = false;
    expect_variant("no sampler", &v, "sampler:error context:warning quantization:info", "sampler:warning " BASE_ALONE, NULL);
    v = base_variant();
    v.md.k = 40;
    v.md.temperature = 1.0f;
    expect_variant("sampler unlike generation_config", &v, "sampler:error context:warning quantization:info", NULL, &rep);
    CHECK(finding_has(&rep, "sampler", "k 40 (generation_config top_k 20)") && finding_has(&rep, "sampler", "temperature 1 (0.7)"));
    flm_doc_report_free(&rep);
    v.md.k = 1; /* greedy: the convert default for a greedy model */
    v.md.temperature = 0.7f;
    expect_variant("greedy sampler for a sampling model", &v, "sampler:error context:warning quantization:info", NULL, NULL);

    /* model type: none (FastVlm guess), wrong */
    v = base_variant();
    v.md.model_type = 0;
    expect_variant("no model type", &v, "model_type:error " BASE_HF, "model_type:error " BASE_ALONE, &rep);
    CHECK(finding_has(&rep, "model_type", "FastVlm"));
    flm_doc_report_free(&rep);
    v.md.model_type = 4; /* gemma3 */
    expect_variant("wrong model type", &v, "model_type:error " BASE_HF, "model_type:warning " BASE_ALONE, NULL);

    /* start token: the string "None"; the BOS-like <|endoftext|> for a BOS-less model */
    v = base_variant();
    v.md.has_start = true;
    v.md.start_tok.str = "None";
    v.md.start_tok.str_len = 4;
    expect_variant("start token None", &v, "start_token:error " BASE_HF, NULL, NULL);
    memset(&v.md.start_tok, 0, sizeof v.md.start_tok);
    v.md.start_id = 151643;
    expect_variant("start token for a BOS-less model", &v, "start_token:error " BASE_HF, "start_token:error " BASE_ALONE, NULL);

    /* context: the old converter default 1280 over a 256 cache; smaller than the cache */
    v = base_variant();
    v.md.max_num_tokens = 1280;
    expect_variant("max_num_tokens 1280", &v, "sampler:warning context:error quantization:info", "context:error quantization:info", NULL);
    v.md.max_num_tokens = 128;
    expect_variant("max_num_tokens below the cache", &v, BASE_HF, NULL, &rep);
    CHECK(finding_has(&rep, "context", "smaller than the graph's KV cache (256)"));
    flm_doc_report_free(&rep);
    v.md.max_num_tokens = 0;
    expect_variant("no max_num_tokens", &v, BASE_HF, NULL, NULL);
}

TEST(doctor_tokenizer_faults) {
    REQUIRE(good() && truth());
    /* a SentencePiece tokenizer for a byte-level BPE model */
    static const unsigned char sp[] = "\x0a\x0d\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02\x0a\x0b\x0a\x04\xe2\x96\x81t\x15\x00\x00\x80\xbf";
    variant v = base_variant();
    v.tok = sp;
    v.tok_len = sizeof sp - 1;
    v.tok_type = FLM_LTLM_SP_TOKENIZER;
    expect_variant("SentencePiece tokenizer", &v, "tokenizer:error " BASE_HF, "tokenizer:error " BASE_ALONE, NULL);
    /* a tokenizer.json that differs from the model's (NFC normalizer turned into NFD) */
    size_t zn;
    const unsigned char *zp = sec_bytes(&G.map, &G.info, G.sec_tok, &zn);
    uint64_t ul;
    memcpy(&ul, zp, 8);
    char *tj = malloc((size_t)ul);
    uLongf got = (uLongf)ul;
    REQUIRE(tj && uncompress((Bytef *)tj, &got, zp + 8, (uLong)(zn - 8)) == Z_OK && got == ul);
    char *nfc = memmem(tj, (size_t)ul, "\"NFC\"", 5);
    REQUIRE(nfc);
    memcpy(nfc, "\"NFD\"", 5);
    uLongf zl = compressBound((uLong)ul);
    unsigned char *z = malloc(8 + (size_t)zl);
    memcpy(z, &ul, 8);
    REQUIRE(compress2(z + 8, &zl, (const Bytef *)tj, (uLong)ul, 1) == Z_OK);
    v = base_variant();
    v.tok = z;
    v.tok_len = 8 + (size_t)zl;
    flm_doc_report rep;
    expect_variant("tokenizer differs", &v, "tokenizer:error " BASE_HF, BASE_ALONE, &rep);
    CHECK(finding_has(&rep, "tokenizer", "normalizer"));
    flm_doc_report_free(&rep);
    /* a tokenizer section that does not inflate */
    z[20] ^= 0xff;
    z[21] ^= 0xff;
    expect_variant("tokenizer does not inflate", &v, "tokenizer:error " BASE_HF, "tokenizer:error " BASE_ALONE, NULL);
    free(z);
    free(tj);
}

/* The model's truth in a folder of the test: micro-qwen2 (untied lm_head.weight) with
 * the Qwen tokenizer files; `tied` writes config.json with tie_word_embeddings true. */
static bool micro_folder(const char *dir, bool tied) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && cp %s/micro-qwen2/model.safetensors %s/micro-qwen2/generation_config.json %s/ && "
             "cp %s/tokenizer.json %s/tokenizer_config.json %s/ && sed 's/\"tie_word_embeddings\": false/\"tie_word_embeddings\": %s/' "
             "%s/micro-qwen2/config.json > %s/config.json",
             dir, TEST_DATA, TEST_DATA, dir, BUNDLED_MODEL, BUNDLED_MODEL, dir, tied ? "true" : "false", TEST_DATA, dir);
    return test_run(cmd, NULL, NULL) == 0;
}

TEST(doctor_lm_head_untied_model_tied_graph) {
    REQUIRE(good());
    char untied[300], tied[300], a[400], b[400], args[1024];
    snprintf(untied, sizeof untied, "%s/micro-untied", test_tmpdir());
    snprintf(tied, sizeof tied, "%s/micro-tied", test_tmpdir());
    REQUIRE(micro_folder(untied, false) && micro_folder(tied, true));
    /* graphs: one with its own lm_head, one whose LM head is the embedding table */
    snprintf(a, sizeof a, "%s/untied.tflite", test_tmpdir());
    snprintf(b, sizeof b, "%s/tied.tflite", test_tmpdir());
    snprintf(args, sizeof args, "%s -o %s --type fp16 --ctx 64 --prefill 8", untied, a);
    REQUIRE(lt_convert(args, NULL) == 0);
    snprintf(args, sizeof args, "%s -o %s --type fp16 --ctx 64 --prefill 8", tied, b);
    REQUIRE(lt_convert(args, NULL) == 0);
    flm_doc_truth *t = NULL;
    REQUIRE(flm_doc_truth_load(untied, &t) == FLM_OK);
    for (int pass = 0; pass < 2; pass++) {
        flm_map m;
        REQUIRE(flm_map_open(pass ? b : a, &m) == FLM_OK);
        variant v = base_variant();
        v.md.max_num_tokens = 64;
        v.md.stop_ids[0] = 151645; /* the micro model's own eos is id 1 */
        v.md.stop_ids[1] = 1;
        v.md.k = 1; /* the micro model decodes greedily */
        v.model = m.data;
        v.model_len = m.size;
        char path[700];
        snprintf(path, sizeof path, "%s/micro-%d.litertlm", test_tmpdir(), pass);
        REQUIRE(write_variant(path, &v));
        flm_doc_report rep;
        REQUIRE(flm_doctor_check_file(path, t, &rep) == FLM_OK);
        char *got = codes(&rep), *w;
        /* the Qwen tokenizer's 151665 ids do not fit the micro model's 2048 logits (a
         * real error, the same in both); the lm_head finding only for the tied graph */
        const char *want = pass ? "context:warning tokenizer:error quantization:info lm_head:error"
                                : "context:warning tokenizer:error quantization:info";
        w = canon(want);
        CHECK_MSG(!strcmp(got, w), "%s graph: got [%s], want [%s]", pass ? "tied" : "untied", got, w);
        free(w);
        CHECK(rep.logits_vocab == 2048 && rep.cache_length == 64);
        CHECK(finding_has(&rep, "quantization", "float16"));
        free(got);
        flm_doc_report_free(&rep);
        flm_map_close(&m);
    }
    flm_doc_truth_free(t);
}

/* The model section's bytes of a .litertlm (malloc'ed copy). */
static unsigned char *model_section(const char *path, size_t *n) {
    flm_map m;
    flm_litertlm_info in;
    if (flm_map_open(path, &m)) return NULL;
    unsigned char *out = NULL;
    int s = flm_litertlm_parse(m.data, m.size, m.size, &in) ? -1 : find_sec(&in, FLM_LTLM_TFLITE_MODEL);
    if (s >= 0) {
        const unsigned char *p = sec_bytes(&m, &in, s, n);
        if ((out = malloc(*n))) memcpy(out, p, *n);
    }
    flm_map_close(&m);
    return out;
}

static int doctor_cli(const char *args, char **out, char **err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s doctor %s", test_bin(), args);
    return test_run(cmd, out, err);
}

TEST(doctor_fix_repairs_and_keeps_the_model_bytes) {
    REQUIRE(good());
    /* everything wrong at once: stops, start token, template, sampler, model type,
     * capacity, a SentencePiece tokenizer */
    static const unsigned char sp[] = "\x0a\x0d\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02";
    variant v = base_variant();
    v.md.n_stops = 1;
    v.md.stop_ids[0] = 151643;
    v.md.has_start = true;
    v.md.start_tok.str = "None";
    v.md.start_tok.str_len = 4;
    v.md.jinja = NULL;
    v.md.has_sampler = false;
    v.md.model_type = 0;
    v.md.max_num_tokens = 1280;
    v.tok = sp;
    v.tok_len = sizeof sp - 1;
    v.tok_type = FLM_LTLM_SP_TOKENIZER;
    char bad[600], fixed[600], args[2048];
    snprintf(bad, sizeof bad, "%s/bad.litertlm", test_tmpdir());
    snprintf(fixed, sizeof fixed, "%s/fixed.litertlm", test_tmpdir());
    REQUIRE(write_variant(bad, &v));
    char *out = NULL, *err = NULL;
    snprintf(args, sizeof args, "%s --hf %s --json", bad, KCC_TRUTH);
    CHECK_EQ_INT(doctor_cli(args, &out, &err), 1);
    flm_json_doc *d = out ? flm_json_parse(out, strlen(out), "doctor --json") : NULL;
    REQUIRE(d);
    const flm_json *fs = flm_json_get(flm_json_root(d), "findings");
    REQUIRE(fs && fs->type == JSON_ARRAY);
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_root(d), "errors"), -1), 7);
    for (size_t i = 0; i < fs->len; i++) {
        const flm_json *f = flm_json_at(fs, i);
        CHECK(flm_json_string(flm_json_get(f, "code"), NULL) && flm_json_string(flm_json_get(f, "severity"), NULL) &&
              flm_json_string(flm_json_get(f, "message"), NULL) && flm_json_string(flm_json_get(f, "fix"), NULL));
    }
    flm_json_free(d);
    free(out);
    free(err);
    /* --fix with the model's folder: no error left, the model bytes unchanged */
    snprintf(args, sizeof args, "%s --fix --hf %s -o %s --json", bad, KCC_TRUTH, fixed);
    out = err = NULL;
    CHECK_EQ_INT(doctor_cli(args, &out, &err), 0);
    d = out ? flm_json_parse(out, strlen(out), "doctor --fix --json") : NULL;
    REQUIRE(d);
    const flm_json *fx = flm_json_get(flm_json_root(d), "fixed");
    CHECK(fx && flm_json_int(flm_json_get(fx, "errors"), -1) == 0);
    flm_json_free(d);
    free(out);
    free(err);
    flm_doc_report rep;
    REQUIRE(flm_doctor_check_file(fixed, truth(), &rep) == FLM_OK);
    char *got = codes(&rep), *w = canon(BASE_HF);
    CHECK_MSG(!strcmp(got, w), "after --fix: [%s]", got);
    free(got);
    free(w);
    flm_doc_report_free(&rep);
    size_t n1 = 0, n2 = 0;
    unsigned char *m1 = model_section(bad, &n1), *m2 = model_section(fixed, &n2);
    REQUIRE(m1 && m2);
    CHECK(n1 == n2 && !memcmp(m1, m2, n1));
    free(m1);
    free(m2);
    /* the repaired metadata is the faithful one (same fields as fieldlm convert writes) */
    flm_map m;
    flm_litertlm_info in;
    REQUIRE(flm_map_open(fixed, &m) == FLM_OK && flm_litertlm_parse(m.data, m.size, m.size, &in) == FLM_OK);
    CHECK(find_sec(&in, FLM_LTLM_SP_TOKENIZER) < 0);
    int ms = find_sec(&in, FLM_LTLM_LLM_METADATA), ts = find_sec(&in, FLM_LTLM_HF_TOKENIZER_ZLIB);
    REQUIRE(ms >= 0 && ts >= 0);
    size_t n;
    const unsigned char *p = sec_bytes(&m, &in, ms, &n);
    flm_llm_metadata md;
    REQUIRE(flm_llm_metadata_decode(p, n, &md) == FLM_OK);
    CHECK(!md.has_start && md.n_stops == 2 && md.stop_ids[0] == 151645 && md.stop_ids[1] == 151643);
    CHECK(md.has_sampler && md.sampler_type == 2 && md.k == 20 && md.p == 0.8f && md.temperature == 0.7f);
    CHECK(md.max_num_tokens == 256 && md.model_type == 7);
    CHECK(md.jinja && md.jinja_len == G.md.jinja_len && !memcmp(md.jinja, G.md.jinja, md.jinja_len));
    size_t tn, gn;
    const unsigned char *tp = sec_bytes(&m, &in, ts, &tn), *gp = sec_bytes(&G.map, &G.info, G.sec_tok, &gn);
    uint64_t a, b;
    memcpy(&a, tp, 8);
    memcpy(&b, gp, 8);
    CHECK(a == b); /* the model's tokenizer.json, 7031645 bytes */
    flm_map_close(&m);

    /* without --fix's folder: what the file itself tells (stops, start, capacity) */
    v = base_variant();
    v.md.n_stops = 1;
    v.md.stop_ids[0] = 151643;
    v.md.has_start = true;
    v.md.start_id = 151643;
    v.md.max_num_tokens = 1280;
    REQUIRE(write_variant(bad, &v));
    snprintf(args, sizeof args, "%s --fix -o %s", bad, fixed);
    out = err = NULL;
    CHECK_EQ_INT(doctor_cli(args, &out, &err), 0);
    CHECK_MSG(out && strstr(out, "stop_tokens: 151645 <|im_end|>, 151643 <|endoftext|>") == NULL && strstr(out, "--fix wrote"), "%s", out ? out : "");
    CHECK_MSG(out && strstr(out, "stop_tokens: 151645 <|im_end|> 151643 <|endoftext|>"), "%s", out ? out : "");
    free(out);
    free(err);
    REQUIRE(flm_doctor_check_file(fixed, NULL, &rep) == FLM_OK);
    got = codes(&rep);
    w = canon(BASE_ALONE);
    CHECK_MSG(!strcmp(got, w), "after --fix without --hf: [%s]", got);
    free(got);
    free(w);
    flm_doc_report_free(&rep);
    m1 = model_section(bad, &n1);
    m2 = model_section(fixed, &n2);
    REQUIRE(m1 && m2);
    CHECK(n1 == n2 && !memcmp(m1, m2, n1));
    free(m1);
    free(m2);

    /* refusals: the input as output (nothing written), -o without --fix, --fix without -o */
    unsigned char *before = model_section(bad, &n1);
    snprintf(args, sizeof args, "%s --fix -o %s", bad, bad);
    err = NULL;
    CHECK_EQ_INT(doctor_cli(args, NULL, &err), 2);
    CHECK_MSG(err && strstr(err, "input"), "stderr: %s", err ? err : "");
    free(err);
    unsigned char *after = model_section(bad, &n2);
    CHECK(before && after && n1 == n2 && !memcmp(before, after, n1));
    free(before);
    free(after);
    flm_doc_report rb;
    REQUIRE(flm_doctor_check_file(bad, NULL, &rb) == FLM_OK);
    CHECK(rb.n_error > 0); /* still the faulty metadata */
    flm_doc_report_free(&rb);
    snprintf(args, sizeof args, "%s -o %s", bad, fixed);
    CHECK_EQ_INT(doctor_cli(args, NULL, NULL), 2);
    snprintf(args, sizeof args, "%s --fix", bad);
    CHECK_EQ_INT(doctor_cli(args, NULL, NULL), 2);
}

TEST(doctor_cli_exit_codes_and_unreadable_input) {
    REQUIRE(good());
    char args[2048], path[600], *out = NULL, *err = NULL;
    /* faithful: 0, text report names the file and each finding */
    snprintf(args, sizeof args, "%s --hf %s", G.path, KCC_TRUTH);
    CHECK_EQ_INT(doctor_cli(args, &out, &err), 0);
    CHECK_MSG(out && strstr(out, "0 errors, 2 warnings, 1 info") && strstr(out, "fix:"), "%s", out ? out : "");
    free(out);
    free(err);
    /* unreadable: garbage, truncated, empty, missing, a malformed LlmMetadata: exit 2 and a message */
    snprintf(path, sizeof path, "%s/garbage.litertlm", test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    for (int i = 0; i < 1000; i++) fputs("not a bundle ", f);
    fclose(f);
    err = NULL;
    snprintf(args, sizeof args, "%s", path);
    CHECK_EQ_INT(doctor_cli(args, NULL, &err), 2);
    CHECK_MSG(err && strstr(err, "not a .litertlm"), "stderr: %s", err ? err : "");
    free(err);
    snprintf(args, sizeof args, "bash -c 'head -c 40000 %s > %s/trunc.litertlm'", G.path, test_tmpdir());
    REQUIRE(test_run(args, NULL, NULL) == 0);
    snprintf(args, sizeof args, "%s/trunc.litertlm --json", test_tmpdir());
    err = out = NULL;
    CHECK_EQ_INT(doctor_cli(args, &out, &err), 2);
    CHECK_MSG(err && strstr(err, "outside the file"), "stderr: %s", err ? err : "");
    CHECK(out && !out[0]);
    free(out);
    free(err);
    snprintf(args, sizeof args, "%s/empty.litertlm", test_tmpdir());
    f = fopen(args, "wb");
    REQUIRE(f);
    fclose(f);
    CHECK_EQ_INT(doctor_cli(args, NULL, NULL), 2);
    snprintf(args, sizeof args, "%s/none.litertlm", test_tmpdir());
    CHECK_EQ_INT(doctor_cli(args, NULL, NULL), 2);
    variant v = base_variant();
    static const unsigned char broken[] = {0x12, 0xff, 0xff, 0x01};
    v.md_raw = broken;
    v.md_raw_len = sizeof broken;
    snprintf(path, sizeof path, "%s/badmeta.litertlm", test_tmpdir());
    REQUIRE(write_variant(path, &v));
    err = NULL;
    CHECK_EQ_INT(doctor_cli(path, NULL, &err), 2);
    CHECK_MSG(err && strstr(err, "LlmMetadata"), "stderr: %s", err ? err : "");
    free(err);
    /* a bad --hf folder and usage errors */
    snprintf(args, sizeof args, "%s --hf %s/nowhere", G.path, test_tmpdir());
    CHECK_EQ_INT(doctor_cli(args, NULL, NULL), 2);
    CHECK_EQ_INT(doctor_cli("", NULL, NULL), 2);
    CHECK_EQ_INT(doctor_cli("--bogus x", NULL, NULL), 2);
    out = NULL;
    CHECK_EQ_INT(doctor_cli("--help", &out, NULL), 0);
    CHECK(out && strstr(out, "stop_tokens") && strstr(out, "lm_head") && strstr(out, "--fix"));
    free(out);
}

TEST(doctor_real_litertlm_fixture_and_llm_metadata) {
    /* LiteRT-LM's own test bundle: a tokenizer only (not Qwen's, a 49,152-token BPE) */
    char *out = NULL, *err = NULL;
    CHECK_EQ_INT(doctor_cli(TEST_DATA "/litertlm/test_hf_tokenizer.litertlm --json", &out, &err), 1);
    flm_json_doc *d = out ? flm_json_parse(out, strlen(out), "doctor --json") : NULL;
    REQUIRE(d);
    const flm_json *fs = flm_json_get(flm_json_root(d), "findings");
    strbuf sb;
    flm_sb_init(&sb);
    for (size_t i = 0; fs && i < fs->len; i++)
        flm_sb_printf(&sb, "%s%s:%s", i ? " " : "", flm_json_string(flm_json_get(flm_json_at(fs, i), "code"), "?"),
                      flm_json_string(flm_json_get(flm_json_at(fs, i), "severity"), "?"));
    CHECK_MSG(!strcmp(flm_sb_cstr(&sb), "stop_tokens:error prompt_template:error sampler:warning model_type:warning context:warning "
                                        "tokenizer:info quantization:warning"),
              "got [%s]", flm_sb_cstr(&sb));
    flm_sb_free(&sb);
    flm_json_free(d);
    free(out);
    free(err);
    /* LiteRT-LM's real LlmMetadata (Gemma's: start "<bos>", stops "<eos>", "<end_of_turn>"
     * as token_str) in front of the Qwen model: every string resolved through the tokenizer */
    REQUIRE(good() && truth());
    char *pb = NULL;
    size_t pbn = 0;
    REQUIRE(flm_read_file(TEST_DATA "/litertlm/llm_metadata.pb", &pb, &pbn) == FLM_OK);
    flm_llm_metadata md;
    REQUIRE(flm_llm_metadata_decode((const unsigned char *)pb, pbn, &md) == FLM_OK);
    CHECK(md.has_start && md.start_tok.str && md.start_tok.str_len == 5 && !memcmp(md.start_tok.str, "<bos>", 5));
    CHECK(md.n_stops == 2 && md.stops[1].str_len == 13 && !memcmp(md.stops[1].str, "<end_of_turn>", 13));
    variant v = base_variant();
    v.md_raw = (const unsigned char *)pb;
    v.md_raw_len = pbn;
    flm_doc_report rep;
    expect_variant("LiteRT-LM's llm_metadata.pb", &v,
                   "stop_tokens:error stop_tokens:warning prompt_template:error sampler:error model_type:error start_token:error "
                   "context:warning quantization:info",
                   "stop_tokens:error stop_tokens:warning prompt_template:error sampler:warning model_type:error start_token:error "
                   "context:warning quantization:info",
                   &rep);
    CHECK(finding_has(&rep, "stop_tokens", "\"<eos>\" encodes to 3 tokens"));
    CHECK(finding_has(&rep, "start_token", "\"<bos>\""));
    flm_doc_report_free(&rep);
    /* re-encoding over it keeps what fieldlm does not write, in order */
    flm_llm_metadata m2 = md;
    m2.has_start = false;
    unsigned char *re = NULL;
    size_t ren = 0;
    REQUIRE(flm_llm_metadata_encode_over((const unsigned char *)pb, pbn, &m2, &re, &ren) == FLM_OK);
    flm_llm_metadata back;
    REQUIRE(flm_llm_metadata_decode(re, ren, &back) == FLM_OK);
    CHECK(!back.has_start && back.n_stops == 2 && back.stops[0].str_len == 5 && !memcmp(back.stops[0].str, "<eos>", 5));
    free(re);
    free(pb);
}
