/* test_hostile_model.c — model files that must not hang, crash or balloon fieldlm
 * (issue 10): a package is parsed once per load; metadata strings and the header's
 * memory are capped (a 1 GiB string in a sparse file); rms_norm_eps / rope_theta
 * must be finite and positive; layer counts are checked against the tensor table
 * before anything is allocated; the tokenizer must cover the embedding. Every
 * hostile file is generated here from the small fixtures. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "base/common.h"
#include "format/gguf.h"
#include "model/model.h"
#include "runtime/session.h"
#include "package/source.h"

#define PEER_GGUF TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf"
#define MICRO TEST_DATA "/micro-qwen2"
#define TINY TEST_DATA "/tiny-qwen2"

/* ---------------------------------------------------------------- helpers */

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) { test_fail(__FILE__, __LINE__, "cannot write %s", path); return; }
    fputs(text, f);
    fclose(f);
}

/* DIR/NAME → an absolute symlink to the fixture file (weights are not copied). */
static void link_fixture(const char *dir, const char *fixture, const char *name) {
    char *abs = realpath(fixture, NULL), *p = flm_path_join(dir, name);
    if (!abs || !p || symlink(abs, p) != 0) test_fail(__FILE__, __LINE__, "cannot link %s", fixture);
    free(abs);
    free(p);
}

/* A fresh folder under the test tmpdir. */
static char *make_dir(const char *name) {
    char *dir = flm_path_join(test_tmpdir(), name);
    mkdir(dir, 0755);
    return dir;
}

/* The fixture's config.json with the text `from` replaced by `to` (must occur once). */
static char *config_with(const char *fixture_dir, const char *from, const char *to) {
    char *p = flm_path_join(fixture_dir, "config.json"), *text;
    size_t len;
    int rc = flm_read_file(p, &text, &len);
    free(p);
    if (rc) return NULL;
    char *at = strstr(text, from);
    if (!at) { free(text); return NULL; }
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_append(&sb, text, (size_t)(at - text));
    flm_sb_puts(&sb, to);
    flm_sb_puts(&sb, at + strlen(from));
    free(text);
    return flm_sb_take(&sb);
}

/* An HF folder NAME: micro-qwen2's weights with its config.json edited. */
static char *micro_with(const char *name, const char *from, const char *to) {
    char *dir = make_dir(name), *cfg = config_with(MICRO, from, to), *p = flm_path_join(dir, "config.json");
    if (!cfg) test_fail(__FILE__, __LINE__, "config.json of %s lacks %s", MICRO, from);
    else write_text(p, cfg);
    link_fixture(dir, MICRO "/model.safetensors", "model.safetensors");
    free(cfg);
    free(p);
    return dir;
}

/* flm_load_model(dir) must fail with FLM_ERR_FORMAT and a message holding every needle. */
static void expect_model_refused(const char *dir, const char *const *needles, size_t n) {
    flm_model *m = NULL;
    int rc = flm_load_model(dir, NULL, &m);
    CHECK_MSG(rc == FLM_ERR_FORMAT, "%s: status %d, expected FLM_ERR_FORMAT (%s)", dir, rc, rc ? flm_last_error() : "accepted");
    for (size_t i = 0; i < n; i++)
        CHECK_MSG(has(flm_last_error(), needles[i]), "%s: message \"%s\" lacks \"%s\"", dir, flm_last_error(), needles[i]);
    flm_model_close(m);
}

/* Rewrites the GGUF `src` into `dst` with the metadata key `key` replaced by *v
 * (added at the end when absent; dropped when v is NULL); tensors copied as they are. */
typedef struct { const char *key; const flm_gguf_value *v; } kv_edit;

static int rewrite_gguf(const char *src, const char *dst, const kv_edit *edits, size_t n_edits) {
    flm_gguf_file *g;
    flm_gguf_writer *w;
    int rc = flm_gguf_open(src, &g);
    if (rc) return rc;
    if ((rc = flm_gguf_writer_open(dst, flm_gguf_alignment(g), &w))) { flm_gguf_close(g); return rc; }
    bool *used = calloc(n_edits + 1, sizeof *used);
    for (size_t i = 0; !rc && i < flm_gguf_kv_count(g); i++) {
        const flm_gguf_kv *kv = flm_gguf_kv_at(g, i);
        const flm_gguf_value *v = &kv->value;
        for (size_t e = 0; e < n_edits; e++)
            if (!strcmp(edits[e].key, kv->key)) { v = edits[e].v; used[e] = true; }
        if (v) rc = flm_gguf_writer_add_value(w, kv->key, v);
    }
    for (size_t e = 0; !rc && e < n_edits; e++)
        if (!used[e] && edits[e].v) rc = flm_gguf_writer_add_value(w, edits[e].key, edits[e].v);
    for (size_t i = 0; !rc && i < flm_gguf_tensor_count(g); i++) {
        const flm_gguf_tensor_info *ti = flm_gguf_tensor_at(g, i);
        rc = flm_gguf_writer_add_tensor(w, ti->name, (flm_dtype)ti->dtype, ti->n_dims, ti->shape);
    }
    for (size_t i = 0; !rc && i < flm_gguf_tensor_count(g); i++) {
        const flm_gguf_tensor_info *ti = flm_gguf_tensor_at(g, i);
        rc = flm_gguf_writer_write_tensor(w, ti->name, ti->data, (size_t)ti->nbytes);
    }
    free(used);
    rc = rc ? (flm_gguf_writer_abort(w), rc) : flm_gguf_writer_finish(w);
    flm_gguf_close(g);
    return rc;
}

static char *peer_with(const char *name, const char *key, const flm_gguf_value *v) {
    char *p = flm_path_join(test_tmpdir(), name);
    kv_edit e = {key, v};
    if (rewrite_gguf(PEER_GGUF, p, &e, 1)) test_fail(__FILE__, __LINE__, "rewrite %s: %s", name, flm_last_error());
    return p;
}

/* Runs the CLI; returns the exit status and stderr (caller frees). */
static int cli(const char *args, char **err) {
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s", test_bin(), args);
    int rc = test_run(cmd, &out, err);
    free(out);
    return rc;
}

/* ------------------------------------------------------- a package is parsed once */

TEST(hostile_package_parsed_once_per_load) {
    uint64_t before = flm_gguf_parse_count();
    flm_assets *a = NULL;
    REQUIRE(flm_assets_open(PEER_GGUF, NULL, &a) == FLM_OK);
    /* model, tokenizer, template and generation config all came from one parse
     * (four before issue 10, each copying every string) */
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 1);
    CHECK(a->tok && a->tmpl && a->n_eos > 0);
    flm_assets_close(a);
    /* the path-taking loaders still work on their own (one parse each) */
    before = flm_gguf_parse_count();
    flm_model *m = NULL;
    REQUIRE(flm_load_model(PEER_GGUF, NULL, &m) == FLM_OK);
    flm_model_close(m);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 1);
}

/* ------------------------------------------------------- metadata size caps */

static long vm_hwm_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) v = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* A GGUF with one string metadata value of `len` bytes whose bytes are a hole:
 * the file takes almost no disk, its size is len + 56. */
static char *sparse_string_gguf(const char *name, const char *key, uint64_t len) {
    char *p = flm_path_join(test_tmpdir(), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { test_fail(__FILE__, __LINE__, "cannot create %s", p); return p; }
    uint8_t h[256];
    size_t n = 0;
    uint32_t ver = 3, type = GGUF_TYPE_STRING;
    uint64_t nt = 0, nkv = 1, klen = strlen(key);
    memcpy(h + n, "GGUF", 4); n += 4;
    memcpy(h + n, &ver, 4); n += 4;
    memcpy(h + n, &nt, 8); n += 8;
    memcpy(h + n, &nkv, 8); n += 8;
    memcpy(h + n, &klen, 8); n += 8;
    memcpy(h + n, key, klen); n += klen;
    memcpy(h + n, &type, 4); n += 4;
    memcpy(h + n, &len, 8); n += 8;
    if (write(fd, h, n) != (ssize_t)n || ftruncate(fd, (off_t)(n + len)) != 0)
        test_fail(__FILE__, __LINE__, "cannot write %s", p);
    close(fd);
    return p;
}

TEST(hostile_gguf_1gib_string_refused_fast_and_small) {
    char *p = sparse_string_gguf("huge-string.gguf", "general.description", 1ull << 30);
    /* in a child, so that its peak RSS starts at the current size */
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        long hwm0 = vm_hwm_kib();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        flm_gguf_file *g = NULL;
        int rc = flm_gguf_open(p, &g);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        char msg[1024];
        snprintf(msg, sizeof msg, "%d %ld %.3f %s", rc, vm_hwm_kib() - hwm0,
                 (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), rc ? flm_last_error() : "");
        if (write(pipefd[1], msg, strlen(msg)) < 0) _exit(2);
        _exit(0);
    }
    close(pipefd[1]);
    char buf[1100] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(pipefd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    close(pipefd[0]);
    int st;
    waitpid(pid, &st, 0);
    int rc = 0;
    long grew_kib = 0;
    double secs = 0;
    int off = 0;
    REQUIRE(sscanf(buf, "%d %ld %lf %n", &rc, &grew_kib, &secs, &off) == 3);
    const char *msg = buf + off;
    CHECK_MSG(rc == FLM_ERR_FORMAT, "status %d (%s)", rc, msg);
    CHECK_MSG(has(msg, "general.description") && has(msg, "1073741824") && has(msg, "67108864") && has(msg, "huge-string.gguf"),
              "message should name the file, key, size and limit: %s", msg);
    CHECK_MSG(grew_kib < 64 * 1024, "opening took %ld KiB more memory", grew_kib);
    CHECK_MSG(secs < 1.0, "opening took %.3f s", secs);
    /* and through `run`: a clean error naming the key, exit 1 */
    char args[1024], *err = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p hi -n 1", p);
    CHECK_EQ_INT(cli(args, &err), 1);
    CHECK_MSG(has(err, "general.description") && !has(err, "Sanitizer"), "stderr: %s", err);
    free(err);
    free(p);
}

TEST(hostile_gguf_string_at_the_limit_is_read) {
    /* 64 MiB exactly is allowed, one more byte is not */
    char *p = sparse_string_gguf("limit-string.gguf", "general.description", GGUF_MAX_STRING);
    flm_gguf_file *g = NULL;
    CHECK_MSG(flm_gguf_open(p, &g) == FLM_OK, "%s", flm_last_error());
    const char *s = NULL;
    if (g) {
        CHECK(flm_gguf_get_str(g, "general.description", &s) == FLM_OK && s && s[0] == 0);
        CHECK_EQ_INT(flm_gguf_find(g, "general.description")->s.len, GGUF_MAX_STRING);
    }
    flm_gguf_close(g);
    free(p);
    p = sparse_string_gguf("over-string.gguf", "general.description", GGUF_MAX_STRING + 1);
    CHECK_EQ_INT(flm_gguf_open(p, &g), FLM_ERR_FORMAT);
    CHECK(has(flm_last_error(), "67108865"));
    free(p);
}

TEST(hostile_gguf_header_memory_capped) {
    /* 20 M empty strings take 160 MB of (sparse) file but would take 640 MB of
     * string table and copies: refused before any of it is allocated */
    char *p = flm_path_join(test_tmpdir(), "many-strings.gguf");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    uint8_t h[128];
    size_t n = 0;
    uint32_t ver = 3, arr = GGUF_TYPE_ARRAY, str = GGUF_TYPE_STRING;
    uint64_t nt = 0, nkv = 1, count = 20000000, klen = strlen("tokenizer.ggml.tokens");
    memcpy(h + n, "GGUF", 4); n += 4;
    memcpy(h + n, &ver, 4); n += 4;
    memcpy(h + n, &nt, 8); n += 8;
    memcpy(h + n, &nkv, 8); n += 8;
    memcpy(h + n, &klen, 8); n += 8;
    memcpy(h + n, "tokenizer.ggml.tokens", klen); n += klen;
    memcpy(h + n, &arr, 4); n += 4;
    memcpy(h + n, &str, 4); n += 4;
    memcpy(h + n, &count, 8); n += 8;
    REQUIRE(write(fd, h, n) == (ssize_t)n);
    REQUIRE(ftruncate(fd, (off_t)(n + count * 8)) == 0);
    close(fd);
    flm_gguf_file *g = NULL;
    CHECK_EQ_INT(flm_gguf_open(p, &g), FLM_ERR_FORMAT);
    CHECK_MSG(has(flm_last_error(), "tokenizer.ggml.tokens") && has(flm_last_error(), "256 MiB"), "%s", flm_last_error());
    flm_gguf_close(g);
    free(p);
}

/* ------------------------------------------------------- config.json values */

TEST(hostile_hf_config_eps_and_rope_theta) {
    static const struct { const char *from, *to, *needle; } CASES[] = {
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e999", "rms_norm_eps = inf"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": Infinity", "rms_norm_eps = inf"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 0", "rms_norm_eps = 0"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": -1", "rms_norm_eps = -1"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e300", "rms_norm_eps = 1e+300"},
        {"\"rope_theta\": 10000.0", "\"rope_theta\": 0", "rope_theta = 0"},
        {"\"rope_theta\": 10000.0", "\"rope_theta\": Infinity", "rope_theta = inf"},
        {"\"rope_theta\": 10000.0", "\"rope_theta\": -10000.0", "rope_theta = -10000"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char name[32];
        snprintf(name, sizeof name, "micro-cfg-%zu", i);
        char *dir = micro_with(name, CASES[i].from, CASES[i].to);
        const char *needles[] = {"config.json", CASES[i].needle, "expected a finite number > 0"};
        expect_model_refused(dir, needles, 3);
        free(dir);
    }
    /* the CLI says the same and exits 1 */
    char *dir = flm_path_join(test_tmpdir(), "micro-cfg-0"), args[1024], *err = NULL;
    snprintf(args, sizeof args, "logits -m '%s' --ids 1,2 -o '%s/logits.bin'", dir, test_tmpdir());
    CHECK_EQ_INT(cli(args, &err), 1);
    CHECK_MSG(has(err, "rms_norm_eps = inf"), "stderr: %s", err);
    free(err);
    free(dir);
}

TEST(hostile_hf_layer_count_checked_before_allocating) {
    char *dir = micro_with("micro-layers", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 1000000000");
    const char *needles[] = {"config.json", "num_hidden_layers = 1000000000", "at most 3 layers"};
    expect_model_refused(dir, needles, 3);
    free(dir);
    /* one layer more than the weights hold: the same clean refusal */
    dir = micro_with("micro-layers-4", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4");
    const char *needles4[] = {"num_hidden_layers = 4"};
    expect_model_refused(dir, needles4, 1);
    free(dir);
}

/* ------------------------------------------------------- GGUF keys */

TEST(hostile_gguf_block_count_and_eps) {
    flm_gguf_value v = {.type = GGUF_TYPE_UINT32};
    v.num.u = 1000000000u;
    char *p = peer_with("blocks-1e9.gguf", "qwen2.block_count", &v);
    const char *needles[] = {"blocks-1e9.gguf", "qwen2.block_count = 1000000000", "at most 4 layers"};
    expect_model_refused(p, needles, 3);
    free(p);

    flm_gguf_value f = {.type = GGUF_TYPE_FLOAT32};
    f.num.f = INFINITY;
    p = peer_with("eps-inf.gguf", "qwen2.attention.layer_norm_rms_epsilon", &f);
    const char *eps_needles[] = {"eps-inf.gguf", "qwen2.attention.layer_norm_rms_epsilon = inf"};
    expect_model_refused(p, eps_needles, 2);
    char args[1024], *err = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p hi -n 1", p);
    CHECK_EQ_INT(cli(args, &err), 1);
    CHECK_MSG(has(err, "layer_norm_rms_epsilon = inf"), "stderr: %s", err);
    free(err);
    free(p);

    /* fieldlm's exact f64 key wins over llama.cpp's, and is checked the same way */
    flm_gguf_value d = {.type = GGUF_TYPE_FLOAT64};
    d.num.f = 0.0;
    p = peer_with("theta-0.gguf", "fieldlm.rope_theta", &d);
    const char *theta_needles[] = {"fieldlm.rope_theta = 0"};
    expect_model_refused(p, theta_needles, 1);
    free(p);
}

/* ------------------------------------------------------- tokenizer coverage */

/* A tokenizer.json with ids 0..n-1 ("t0", "t1", ...) and optional extra JSON members. */
static void write_tokenizer(const char *dir, int n, const char *added_tokens) {
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_puts(&sb, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int i = 0; i < n; i++) flm_sb_printf(&sb, "%s\"t%d\": %d", i ? ", " : "", i, i);
    flm_sb_printf(&sb, "}, \"merges\": []}, \"added_tokens\": [%s], \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                   "\"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": true}, "
                   "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                   "\"use_regex\": true}}", added_tokens ? added_tokens : "");
    char *p = flm_path_join(dir, "tokenizer.json");
    write_text(p, flm_sb_cstr(&sb));
    free(p);
    flm_sb_free(&sb);
}

/* tiny-qwen2's config and weights (151,936 embedding rows) with a generated tokenizer. */
static char *tiny_with_tokenizer(const char *name, int n, const char *added) {
    char *dir = make_dir(name);
    link_fixture(dir, TINY "/config.json", "config.json");
    link_fixture(dir, TINY "/model.safetensors", "model.safetensors");
    link_fixture(dir, TINY "/generation_config.json", "generation_config.json");
    write_tokenizer(dir, n, added);
    return dir;
}

TEST(hostile_tokenizer_does_not_cover_the_embedding) {
    /* 2,000 tokens for 151,936 rows: refused (today it ran and printed nothing) */
    char *dir = tiny_with_tokenizer("tok-2000", 2000, NULL);
    flm_assets *a = NULL;
    int rc = flm_assets_open(dir, NULL, &a);
    CHECK_MSG(rc == FLM_ERR_FORMAT, "status %d (%s)", rc, rc ? flm_last_error() : "accepted");
    CHECK_MSG(has(flm_last_error(), dir) && has(flm_last_error(), "2000 tokens") && has(flm_last_error(), "151936") &&
              has(flm_last_error(), "at least half"), "%s", flm_last_error());
    flm_assets_close(a);
    char args[1024], *err = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p hi -n 4", dir);
    CHECK_EQ_INT(cli(args, &err), 1);
    CHECK_MSG(has(err, "2000 tokens"), "stderr: %s", err);
    free(err);
    free(dir);

    /* an id past the embedding: refused whatever the coverage */
    dir = tiny_with_tokenizer("tok-past-end", 151000,
                              "{\"id\": 151936, \"content\": \"<|x|>\", \"special\": true}");
    a = NULL;
    rc = flm_assets_open(dir, NULL, &a);
    CHECK_MSG(rc == FLM_ERR_FORMAT && has(flm_last_error(), "token id 151936") && has(flm_last_error(), "below 151936"),
              "status %d: %s", rc, rc ? flm_last_error() : "accepted");
    flm_assets_close(a);
    free(dir);

    /* 100,000 of 151,936: loads, with a warning giving the numbers */
    dir = tiny_with_tokenizer("tok-100k", 100000, NULL);
    a = NULL;
    rc = flm_assets_open(dir, NULL, &a);
    CHECK_MSG(rc == FLM_OK, "%s", flm_last_error());
    if (a) CHECK_MSG(a->warning && has(a->warning, "51936 of the model's 151936"), "warning: %s", a->warning ? a->warning : "(none)");
    flm_assets_close(a);
    snprintf(args, sizeof args, "run -m '%s' --raw -p t1 -n 1", dir);
    cli(args, &err);
    CHECK_MSG(has(err, "warning: ") && has(err, "51936 of the model's 151936"), "stderr: %s", err);
    free(err);
    free(dir);

    /* Qwen2.5's own padding (151,665 tokens for 151,936 rows) is normal: no warning */
    a = NULL;
    REQUIRE(flm_assets_open(TINY, NULL, &a) == FLM_OK);
    CHECK_MSG(a->warning == NULL, "unexpected warning: %s", a->warning);
    flm_assets_close(a);
}

TEST(hostile_gguf_tokenizer_does_not_cover_the_embedding) {
    flm_gguf_file *g;
    REQUIRE(flm_gguf_open(PEER_GGUF, &g) == FLM_OK);
    flm_gguf_value toks = *flm_gguf_find(g, "tokenizer.ggml.tokens"), types = *flm_gguf_find(g, "tokenizer.ggml.token_type");
    flm_gguf_value merges = *flm_gguf_find(g, "tokenizer.ggml.merges");
    toks.count = types.count = 2000;
    merges.count = 0;
    kv_edit e[] = {{"tokenizer.ggml.tokens", &toks}, {"tokenizer.ggml.token_type", &types}, {"tokenizer.ggml.merges", &merges}};
    char *p = flm_path_join(test_tmpdir(), "tok-2000.gguf");
    REQUIRE(rewrite_gguf(PEER_GGUF, p, e, 3) == FLM_OK);
    flm_gguf_close(g);
    flm_assets *a = NULL;
    int rc = flm_assets_open(p, NULL, &a);
    CHECK_MSG(rc == FLM_ERR_FORMAT && has(flm_last_error(), "tok-2000.gguf") && has(flm_last_error(), "2000 tokens"),
              "status %d: %s", rc, rc ? flm_last_error() : "accepted");
    flm_assets_close(a);
    free(p);
}
