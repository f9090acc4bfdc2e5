/* test_inspect.c — `fieldlm inspect` on GGUF packages (llama.cpp's peer file and
 * one carrying fieldlm's generation defaults), safetensors files, Hugging Face
 * folders (single file and sharded), and broken inputs. JSON output is parsed
 * with the library's reader and checked against the container readers. */
#include <stdlib.h>
#include <unistd.h>

#include "base/common.h"
#include "format/gguf.h"
#include "base/json.h"
#include "format/safetensors.h"
#include "test.h"

#define PEER_GGUF TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf"
#define KCC_ST BUNDLED_MODEL "/model.safetensors"
#define PEER_TENSORS 50
#define KCC_PARAMS 20433024
#define CHAT_TEMPLATE_BYTES "2507"
#define CMP_BYTES 16 /* bytes of tensor data compared at a reported offset */

/* Runs `fieldlm inspect ARGS`; returns the exit status. */
static int inspect(const char *args, char **out, char **err) {
    strbuf cmd;
    flm_sb_init(&cmd);
    flm_sb_printf(&cmd, "%s inspect %s", test_bin(), args);
    int rc = test_run(flm_sb_cstr(&cmd), out, err);
    flm_sb_free(&cmd);
    return rc;
}

static flm_json_doc *inspect_json(const char *args) {
    char *out = NULL, *err = NULL;
    strbuf a;
    flm_sb_init(&a);
    flm_sb_printf(&a, "%s --json", args);
    int rc = inspect(flm_sb_cstr(&a), &out, &err);
    flm_sb_free(&a);
    flm_json_doc *d = NULL;
    if (rc != 0) test_fail(__FILE__, __LINE__, "inspect %s --json exited %d: %s", args, rc, err ? err : "");
    else if (!(d = flm_json_parse(out, strlen(out), "inspect --json")))
        test_fail(__FILE__, __LINE__, "inspect %s --json: not JSON: %s", args, flm_last_error());
    free(out);
    free(err);
    return d;
}

/* The bytes at `offset` in `path` equal `want`. */
static bool file_bytes_equal(const char *path, uint64_t offset, const void *want, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char buf[CMP_BYTES];
    bool ok = n <= sizeof buf && fseek(f, (long)offset, SEEK_SET) == 0 && fread(buf, 1, n, f) == n && !memcmp(buf, want, n);
    fclose(f);
    return ok;
}

TEST(inspect_gguf_peer_text) {
    char *out, *err;
    REQUIRE(inspect(PEER_GGUF, &out, &err) == 0);
    CHECK(strstr(out, "GGUF v3"));
    CHECK(strstr(out, "generation defaults: none in file (transformers' defaults apply"));
    CHECK(strstr(out, "general.architecture"));
    CHECK(strstr(out, "\"qwen2\""));
    CHECK(strstr(out, "string[151936]"));
    CHECK(strstr(out, "[\"!\", \"\\\"\", \"#\", \"$\", \"%\", ...]"));
    CHECK(strstr(out, "(" CHAT_TEMPLATE_BYTES " bytes)")); /* chat template shortened */
    CHECK(strstr(out, "token_embd.weight"));
    CHECK(strstr(out, "[151936, 128]"));
    CHECK(strstr(out, "totals: 50 tensors, 20433024 parameters"));
    CHECK(strstr(out, "q8_0"));
    free(out);
    free(err);
    /* --full: the whole chat template, no shortening note */
    REQUIRE(inspect(PEER_GGUF " --full", &out, &err) == 0);
    CHECK(!strstr(out, "(" CHAT_TEMPLATE_BYTES " bytes)"));
    CHECK(strstr(out, "add_generation_prompt"));
    free(out);
    free(err);
}

TEST(inspect_gguf_peer_json_matches_reader) {
    flm_json_doc *d = inspect_json(PEER_GGUF);
    REQUIRE(d);
    flm_gguf_file *g;
    REQUIRE(flm_gguf_open(PEER_GGUF, &g) == FLM_OK);
    const flm_json *root = flm_json_root(d), *meta = flm_json_get(root, "metadata");
    CHECK_STR(flm_json_string(flm_json_get(root, "format"), NULL), "gguf");
    CHECK_EQ_INT(flm_json_int(flm_json_get(root, "flm_gguf_version"), 0), 3);
    CHECK_EQ_INT(flm_json_int(flm_json_get(root, "data_offset"), 0), (long long)flm_gguf_data_offset(g));
    REQUIRE(meta && meta->type == JSON_OBJECT);
    CHECK_EQ_INT(meta->len, flm_gguf_kv_count(g));
    CHECK_STR(flm_json_string(flm_json_get(meta, "general.architecture"), NULL), "qwen2");
    CHECK_EQ_INT(flm_json_int(flm_json_get(meta, "qwen2.block_count"), 0), 4);
    CHECK_NEAR(flm_json_number(flm_json_get(meta, "qwen2.attention.layer_norm_rms_epsilon"), 0), 1e-6, 1e-12);
    CHECK(flm_json_get(meta, "tokenizer.ggml.add_bos_token")->type == JSON_BOOL);
    /* scalars in full: the chat template is not shortened in JSON */
    const flm_json *tmpl = flm_json_get(meta, "tokenizer.chat_template");
    REQUIRE(tmpl && tmpl->type == JSON_STRING);
    CHECK_EQ_INT(tmpl->len, atoi(CHAT_TEMPLATE_BYTES));
    const flm_json *toks = flm_json_get(meta, "tokenizer.ggml.tokens");
    REQUIRE(toks && toks->type == JSON_OBJECT);
    CHECK_STR(flm_json_string(flm_json_get(toks, "type"), NULL), "string");
    CHECK_EQ_INT(flm_json_int(flm_json_get(toks, "count"), 0), 151936);
    CHECK_EQ_INT(flm_json_get(toks, "head")->len, 5);
    CHECK_STR(flm_json_string(flm_json_at(flm_json_get(toks, "head"), 1), NULL), "\"");
    const flm_json *gen = flm_json_get(root, "generation_defaults");
    REQUIRE(gen);
    CHECK(!flm_json_bool(flm_json_get(gen, "in_file"), true));
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_get(gen, "values"), "top_k"), 0), 50);

    const flm_json *ts = flm_json_get(root, "tensors");
    REQUIRE(ts && ts->type == JSON_ARRAY);
    CHECK_EQ_INT(ts->len, PEER_TENSORS);
    CHECK_EQ_INT(ts->len, flm_gguf_tensor_count(g));
    uint64_t sum = 0;
    for (size_t i = 0; i < ts->len && i < flm_gguf_tensor_count(g); i++) {
        const flm_json *t = flm_json_at(ts, i);
        const flm_gguf_tensor_info *ti = flm_gguf_tensor_at(g, i);
        CHECK_STR(flm_json_string(flm_json_get(t, "name"), NULL), ti->name);
        CHECK_STR(flm_json_string(flm_json_get(t, "type"), NULL), flm_gguf_ggml_type_name(ti->ggml_type));
        const flm_json *shape = flm_json_get(t, "shape");
        REQUIRE(shape && (int)shape->len == ti->n_dims);
        for (int k = 0; k < ti->n_dims; k++) CHECK_EQ_INT(flm_json_int(flm_json_at(shape, (size_t)k), -1), ti->shape[k]);
        CHECK_EQ_INT(flm_json_int(flm_json_get(t, "bytes"), 0), (long long)ti->nbytes);
        uint64_t off = (uint64_t)flm_json_int(flm_json_get(t, "offset"), 0);
        size_t n = ti->nbytes < CMP_BYTES ? (size_t)ti->nbytes : CMP_BYTES;
        CHECK_MSG(file_bytes_equal(PEER_GGUF, off, ti->data, n), "tensor %s: data not at the reported offset %llu", ti->name,
                  (unsigned long long)off);
        sum += ti->nbytes;
    }
    CHECK_STR(flm_json_string(flm_json_get(flm_json_at(ts, 0), "name"), NULL), "token_embd.weight");
    const flm_json *tot = flm_json_get(root, "totals");
    CHECK_EQ_INT(flm_json_int(flm_json_get(tot, "tensors"), 0), PEER_TENSORS);
    CHECK_EQ_INT(flm_json_int(flm_json_get(tot, "parameters"), 0), KCC_PARAMS);
    CHECK_EQ_INT(flm_json_int(flm_json_get(tot, "bytes"), 0), (long long)sum);
    const flm_json *bt = flm_json_get(tot, "by_type");
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_get(bt, "q8_0"), "tensors"), 0) + flm_json_int(flm_json_get(flm_json_get(bt, "f32"), "tensors"), 0),
                 PEER_TENSORS);
    flm_gguf_close(g);
    flm_json_free(d);

    /* --full lists arrays in full */
    d = inspect_json(PEER_GGUF " --full");
    REQUIRE(d);
    const flm_json *merges = flm_json_get(flm_json_get(flm_json_root(d), "metadata"), "tokenizer.ggml.merges");
    CHECK_EQ_INT(flm_json_get(merges, "head")->len, flm_json_int(flm_json_get(merges, "count"), 0));
    flm_json_free(d);
}

/* A fieldlm-style package: the fieldlm.generation.* keys are reported as present. */
TEST(inspect_gguf_with_generation_defaults) {
    char *path = flm_path_join(test_tmpdir(), "gen.gguf");
    flm_gguf_writer *w;
    REQUIRE(flm_gguf_writer_open(path, 64, &w) == FLM_OK);
    int32_t eos[2] = {151645, 151643};
    CHECK(flm_gguf_writer_add_str(w, "general.architecture", "qwen2") == FLM_OK);
    CHECK(flm_gguf_writer_add_bool(w, "fieldlm.generation.do_sample", true) == FLM_OK);
    CHECK(flm_gguf_writer_add_f32(w, "fieldlm.generation.temperature", 0.7f) == FLM_OK);
    CHECK(flm_gguf_writer_add_i32(w, "fieldlm.generation.top_k", 20) == FLM_OK);
    CHECK(flm_gguf_writer_add_f32(w, "fieldlm.generation.top_p", 0.8f) == FLM_OK);
    CHECK(flm_gguf_writer_add_f32(w, "fieldlm.generation.repetition_penalty", 1.05f) == FLM_OK);
    CHECK(flm_gguf_writer_add_array(w, "fieldlm.eos_token_ids", GGUF_TYPE_INT32, eos, 2) == FLM_OK);
    CHECK(flm_gguf_writer_add_u64(w, "test.big", UINT64_MAX) == FLM_OK);
    double f64s[3] = {0.1, -2.5, 1e300};
    CHECK(flm_gguf_writer_add_array(w, "test.f64s", GGUF_TYPE_FLOAT64, f64s, 3) == FLM_OK);
    int64_t shape[2] = {2, 32};
    REQUIRE(flm_gguf_writer_add_tensor(w, "t", FLM_F32, 2, shape) == FLM_OK);
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i;
    REQUIRE(flm_gguf_writer_write_tensor(w, "t", data, sizeof data) == FLM_OK);
    REQUIRE(flm_gguf_writer_finish(w) == FLM_OK);

    char *out, *err;
    REQUIRE(inspect(path, &out, &err) == 0);
    CHECK(strstr(out, "generation defaults: in file"));
    CHECK(strstr(out, "temperature=0.7"));
    CHECK(strstr(out, "top_k=20"));
    CHECK(strstr(out, "eos_token_ids=[151645, 151643]"));
    CHECK(strstr(out, "18446744073709551615"));
    CHECK(!strstr(out, "none in file"));
    free(out);
    free(err);

    flm_json_doc *d = inspect_json(path);
    REQUIRE(d);
    const flm_json *root = flm_json_root(d), *gen = flm_json_get(root, "generation_defaults");
    CHECK(flm_json_bool(flm_json_get(gen, "in_file"), false));
    const flm_json *v = flm_json_get(gen, "values");
    CHECK(flm_json_bool(flm_json_get(v, "do_sample"), false));
    CHECK_NEAR(flm_json_number(flm_json_get(v, "temperature"), 0), 0.7, 1e-7);
    CHECK_EQ_INT(flm_json_int(flm_json_get(v, "top_k"), 0), 20);
    CHECK_EQ_INT(flm_json_int(flm_json_at(flm_json_get(v, "eos_token_ids"), 1), 0), 151643);
    const flm_json *meta = flm_json_get(root, "metadata");
    const flm_json *big = flm_json_get(meta, "test.big");
    REQUIRE(big && big->type == JSON_NUMBER);
    CHECK(big->raw_len == 20 && !strncmp(big->raw, "18446744073709551615", 20));
    const flm_json *f = flm_json_get(meta, "test.f64s");
    CHECK_STR(flm_json_string(flm_json_get(f, "type"), NULL), "f64");
    CHECK_EQ_INT(flm_json_number(flm_json_at(flm_json_get(f, "head"), 0), 0) == 0.1, 1); /* shortest round-trip digits */
    CHECK_EQ_INT(flm_json_number(flm_json_at(flm_json_get(f, "head"), 2), 0) == 1e300, 1);
    CHECK_EQ_INT(flm_json_int(flm_json_get(root, "alignment"), 0), 64);
    const flm_json *t = flm_json_at(flm_json_get(root, "tensors"), 0);
    CHECK_EQ_INT(flm_json_int(flm_json_get(t, "offset"), 1) % 64, 0);
    CHECK(file_bytes_equal(path, (uint64_t)flm_json_int(flm_json_get(t, "offset"), 0), data, CMP_BYTES));
    flm_json_free(d);
    free(path);
}

TEST(inspect_safetensors_file) {
    char *out, *err;
    REQUIRE(inspect(KCC_ST, &out, &err) == 0);
    CHECK(strstr(out, "safetensors, 50 tensors"));
    CHECK(strstr(out, "model.embed_tokens.weight"));
    CHECK(strstr(out, "bf16"));
    CHECK(strstr(out, "format = \"pt\""));
    free(out);
    free(err);

    flm_json_doc *d = inspect_json(KCC_ST);
    REQUIRE(d);
    flm_st_file *f;
    REQUIRE(flm_st_open(KCC_ST, &f) == FLM_OK);
    const flm_json *root = flm_json_root(d), *ts = flm_json_get(root, "tensors");
    CHECK_STR(flm_json_string(flm_json_get(root, "format"), NULL), "safetensors");
    CHECK_STR(flm_json_string(flm_json_get(flm_json_get(root, "metadata"), "format"), NULL), "pt");
    REQUIRE(ts && ts->len == flm_st_count(f));
    for (size_t i = 0; i < ts->len; i++) {
        const flm_json *t = flm_json_at(ts, i);
        const flm_tensor *ten = flm_st_find(f, flm_json_string(flm_json_get(t, "name"), ""));
        REQUIRE(ten);
        CHECK_STR(flm_json_string(flm_json_get(t, "type"), NULL), "bf16");
        CHECK_EQ_INT(flm_json_int(flm_json_get(t, "bytes"), 0), (long long)ten->nbytes);
        CHECK_EQ_INT(flm_json_int(flm_json_get(t, "parameters"), 0), flm_tensor_numel(ten));
        size_t n = ten->nbytes < CMP_BYTES ? ten->nbytes : CMP_BYTES;
        CHECK_MSG(file_bytes_equal(KCC_ST, (uint64_t)flm_json_int(flm_json_get(t, "offset"), 0), ten->data, n), "tensor %s: wrong offset", ten->name);
    }
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_get(root, "totals"), "parameters"), 0), KCC_PARAMS);
    flm_st_close(f);
    flm_json_free(d);
}

TEST(inspect_hf_folder) {
    char *out, *err;
    REQUIRE(inspect(BUNDLED_MODEL, &out, &err) == 0);
    CHECK(strstr(out, "Hugging Face model folder, 1 safetensors file"));
    CHECK(strstr(out, "config.json:"));
    CHECK(strstr(out, "num_hidden_layers"));
    CHECK(strstr(out, "generation defaults: generation_config.json: do_sample=true temperature=0.7 top_k=20"));
    CHECK(strstr(out, "model.safetensors: safetensors, 50 tensors"));
    free(out);
    free(err);

    flm_json_doc *d = inspect_json(BUNDLED_MODEL);
    REQUIRE(d);
    const flm_json *root = flm_json_root(d);
    CHECK_STR(flm_json_string(flm_json_get(root, "format"), NULL), "hf-folder");
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_get(root, "config"), "hidden_size"), 0), 128);
    const flm_json *gen = flm_json_get(root, "generation_defaults");
    CHECK_STR(flm_json_string(flm_json_get(gen, "source"), NULL), "generation_config.json");
    CHECK_NEAR(flm_json_number(flm_json_get(flm_json_get(gen, "values"), "top_p"), 0), 0.8, 1e-12);
    CHECK_EQ_INT(flm_json_get(root, "files")->len, 1);
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_get(root, "totals"), "parameters"), 0), KCC_PARAMS);
    flm_json_free(d);
}

/* A sharded folder (index + two shards, no generation_config.json): every shard is
 * inspected and the folder totals add up. */
TEST(inspect_sharded_folder) {
    char *dir = flm_path_join(test_tmpdir(), "sharded");
    REQUIRE(dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp " BUNDLED_MODEL "/config.json %s/", dir, dir);
    REQUIRE(system(cmd) == 0);
    int64_t shape[2] = {4, 8};
    float data[32] = {0};
    const char *shard[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    const char *names[2] = {"a.weight", "b.weight"};
    for (int s = 0; s < 2; s++) {
        char *p = flm_path_join(dir, shard[s]);
        flm_st_writer *w;
        REQUIRE(flm_st_writer_open(p, &w) == FLM_OK);
        REQUIRE(flm_st_writer_declare(w, names[s], FLM_F32, 2, shape) == FLM_OK);
        REQUIRE(flm_st_writer_begin_data(w) == FLM_OK);
        REQUIRE(flm_st_writer_write(w, data, sizeof data) == FLM_OK);
        REQUIRE(flm_st_writer_finish(w) == FLM_OK);
        free(p);
    }
    char *index = flm_path_join(dir, "model.safetensors.index.json");
    FILE *f = fopen(index, "w");
    REQUIRE(f);
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {\"a.weight\": \"%s\", \"b.weight\": \"%s\"}}", shard[0], shard[1]);
    fclose(f);

    char *out, *err;
    REQUIRE(inspect(dir, &out, &err) == 0);
    CHECK(strstr(out, "2 safetensors files"));
    CHECK(strstr(out, "generation defaults: none in folder (transformers' defaults apply"));
    CHECK(strstr(out, "folder totals: 2 tensors, 64 parameters"));
    free(out);
    free(err);
    flm_json_doc *d = inspect_json(dir);
    REQUIRE(d);
    const flm_json *root = flm_json_root(d);
    CHECK_EQ_INT(flm_json_get(root, "files")->len, 2);
    CHECK_EQ_INT(flm_json_int(flm_json_get(flm_json_get(root, "totals"), "bytes"), 0), 2 * sizeof data);
    CHECK_STR(flm_json_string(flm_json_get(flm_json_get(root, "generation_defaults"), "source"), NULL), "transformers_defaults");
    flm_json_free(d);
    /* a shard named by the index but missing is an error naming it */
    snprintf(cmd, sizeof cmd, "rm %s/%s", dir, shard[1]);
    REQUIRE(system(cmd) == 0);
    CHECK_EQ_INT(inspect(dir, &out, &err), 1);
    CHECK(strstr(err, shard[1]));
    free(out);
    free(err);
    free(index);
    free(dir);
}

/* Copies the first n bytes of src to tmpdir/name; returns the malloc'ed path. */
static char *truncated_copy(const char *src, const char *name, size_t n) {
    char *path = flm_path_join(test_tmpdir(), name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "head -c %zu %s > %s", n, src, path);
    if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "cannot run %s", cmd);
    return path;
}

TEST(inspect_broken_inputs) {
    struct { const char *args, *needle; int rc; } cases[] = {
        {"/nonexistent/model.gguf", "no such file", 1},
        {"README.md", "not a GGUF or safetensors file", 1},
        {"--bogus " PEER_GGUF, "unknown option", 2},
        {"", "no PATH", 2},
        {PEER_GGUF " " KCC_ST, "one PATH", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out, *err;
        CHECK_EQ_INT(inspect(cases[i].args, &out, &err), cases[i].rc);
        CHECK_MSG(strstr(err, cases[i].needle), "inspect %s: stderr lacks '%s': %s", cases[i].args, cases[i].needle, err);
        CHECK_EQ_INT(strlen(out), 0);
        free(out);
        free(err);
    }
    /* truncated GGUF (metadata and tensor data), truncated and empty safetensors,
     * an empty .gguf, and a folder without config.json */
    struct { const char *src, *name; size_t n; } cuts[] = {
        {PEER_GGUF, "cut-meta.gguf", 100000},
        {PEER_GGUF, "cut-data.gguf", 27000000},
        {PEER_GGUF, "cut-header.gguf", 10},
        {KCC_ST, "cut.safetensors", 1000},
        {KCC_ST, "cut-data.safetensors", 40000000},
        {KCC_ST, "empty.safetensors", 0},
        {PEER_GGUF, "empty.gguf", 0},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char *path = truncated_copy(cuts[i].src, cuts[i].name, cuts[i].n);
        char *out, *err;
        CHECK_EQ_INT(inspect(path, &out, &err), 1);
        CHECK_MSG(strstr(err, path), "inspect %s: the message should name the file: %s", path, err);
        CHECK_MSG(!strstr(err, "Sanitizer") && !strstr(err, "runtime error"), "inspect %s: %s", path, err);
        free(out);
        free(err);
        free(path);
    }
    char *out, *err;
    CHECK_EQ_INT(inspect(test_tmpdir(), &out, &err), 1);
    CHECK(strstr(err, "not a Hugging Face model folder"));
    free(out);
    free(err);
    REQUIRE(inspect("--help", &out, &err) == 0);
    CHECK(strstr(out, "--json") && strstr(out, "--full") && strstr(out, "usage: fieldlm inspect"));
    free(out);
    free(err);
}
