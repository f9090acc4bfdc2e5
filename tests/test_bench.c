/* test_bench.c — the memory-bandwidth measurement (src/dev/membw.c) and `fieldlm bench`:
 * well-formed JSON with positive numbers on the micro fixture and the peer GGUF,
 * the text report, --membw, its load loop following FLM_KERNELS, and usage errors.
 * Buffers are kept small (hidden --membw-mib) so the tests stay fast; the numbers
 * are not judged here. */
#include <stdlib.h>
#include <unistd.h>

#include "base/common.h"
#include "base/json.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"
#include "dev/membw.h"
#include "model/model.h"
#include "test.h"
#include "base/threadpool.h"
#include "package/source.h"

#define MICRO TEST_DATA "/micro-qwen2"
#define PEER_GGUF TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf"
#define SMALL_MIB "64"

static int bench(const char *args, char **out, char **err) {
    strbuf cmd;
    flm_sb_init(&cmd);
    flm_sb_printf(&cmd, "%s bench %s", test_bin(), args);
    int rc = test_run(flm_sb_cstr(&cmd), out, err);
    flm_sb_free(&cmd);
    return rc;
}

static flm_json_doc *bench_json(const char *args) {
    char *out = NULL, *err = NULL;
    int rc = bench(args, &out, &err);
    flm_json_doc *d = NULL;
    if (rc != 0) test_fail(__FILE__, __LINE__, "bench %s exited %d: %s", args, rc, err ? err : "");
    else if (!(d = flm_json_parse(out, strlen(out), "bench --json")))
        test_fail(__FILE__, __LINE__, "bench %s: not JSON: %s", args, flm_last_error());
    free(out);
    free(err);
    return d;
}

static double num(const flm_json *root, const char *key) {
    const flm_json *v = flm_json_get(root, key);
    if (!v || v->type != JSON_NUMBER) {
        test_fail(__FILE__, __LINE__, "bench JSON: \"%s\" missing or not a number", key);
        return -1;
    }
    return v->number;
}

TEST(bench_membw_library) {
    flm_membw_options o = {.bytes = 4u << 20, .n_threads = 1, .repeats = 2};
    flm_membw_result r;
    REQUIRE(flm_membw_measure(&o, &r) == FLM_OK);
    CHECK(r.best_gb_s > 0 && r.best_gb_s >= r.mean_gb_s && r.mean_gb_s >= r.worst_gb_s && r.worst_gb_s > 0);
    CHECK_EQ_INT(r.n_threads, 1);
    CHECK_EQ_INT(r.repeats, 2);
    CHECK_EQ_INT(r.bytes, 4u << 20);
    CHECK_STR(r.isa, flm_membw_isa());
    /* two threads split the buffer; odd sizes are rounded down to whole slices */
    o = (flm_membw_options){.bytes = (3u << 20) + 12345, .n_threads = 2, .repeats = 1};
    REQUIRE(flm_membw_measure(&o, &r) == FLM_OK);
    CHECK_EQ_INT(r.n_threads, 2);
    CHECK(r.bytes <= o.bytes && r.bytes + 2 * 512 > o.bytes);
    o.bytes = 1000;
    CHECK_EQ_INT(flm_membw_measure(&o, &r), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "too small"));
}

/* Every load loop this CPU runs gives a positive figure; the portable one always runs. */
TEST(bench_membw_every_isa) {
    static const char *const isas[] = {"avx512", "avx2", "neon", "scalar"};
    int ran = 0;
    for (size_t i = 0; i < sizeof isas / sizeof *isas; i++) {
        flm_membw_options o = {.bytes = 2u << 20, .n_threads = 2, .repeats = 1, .isa = isas[i]};
        flm_membw_result r;
        int rc = flm_membw_measure(&o, &r);
        if (rc == FLM_ERR_ARG) continue; /* not built in, or this CPU lacks it */
        REQUIRE(rc == FLM_OK);
        CHECK_STR(r.isa, isas[i]);
        CHECK(r.best_gb_s > 0);
        ran++;
    }
    CHECK(ran >= 1);
    flm_membw_options o = {.bytes = 2u << 20, .isa = "scalar"};
    flm_membw_result r;
    CHECK_EQ_INT(flm_membw_measure(&o, &r), FLM_OK);
    o.isa = "sse9";
    CHECK_EQ_INT(flm_membw_measure(&o, &r), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "sse9"));
}

/* FLM_KERNELS reaches the probe: its load loop is the selected kernel table's
 * (stream_read), and the report names it. */
TEST(bench_membw_follows_flm_kernels) {
    static const char *const tables[] = {"scalar", "avx2", "avx512", "neon"};
    int ran = 0;
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        if (!flm_kernels_variant(tables[i], false)) continue;
        strbuf cmd;
        flm_sb_init(&cmd);
        flm_sb_printf(&cmd, "FLM_KERNELS=%s %s bench --membw --membw-mib 8 -t 1 --json", tables[i], test_bin());
        char *out = NULL, *err = NULL;
        int rc = test_run(flm_sb_cstr(&cmd), &out, &err);
        flm_sb_free(&cmd);
        flm_json_doc *d = rc == 0 ? flm_json_parse(out, strlen(out), "bench --json") : NULL;
        CHECK_MSG(d != NULL, "FLM_KERNELS=%s bench --membw: exit %d %s", tables[i], rc, err ? err : "");
        if (d) CHECK_STR(flm_json_string(flm_json_get(flm_json_root(d), "isa"), NULL), tables[i]);
        flm_json_free(d);
        free(out);
        free(err);
        ran++;
    }
    CHECK(ran >= 1);
    CHECK_STR(flm_membw_isa(), flm_kernels_best()->name);
}

/* FLM_KERNELS reaches the int8-only tables (issue 14): bench names the forced table;
 * with FLM_QACT=0 they do not exist, and the run says so and uses the best table. */
TEST(bench_follows_flm_kernels_int8_only_tables) {
    static const char *const tables[] = {"avx2-vnni", "avx512-vnni256", "avx512-amx"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        if (!flm_kernels_variant(tables[i], true)) { printf("    (%s: not on this CPU)\n", tables[i]); continue; }
        for (int qact = 1; qact >= 0; qact--) {
            strbuf cmd;
            flm_sb_init(&cmd);
            flm_sb_printf(&cmd, "FLM_KERNELS=%s FLM_QACT=%d %s bench -m %s -p 8 -n 2 -t 1 --no-membw --json", tables[i], qact,
                          test_bin(), MICRO);
            char *out = NULL, *err = NULL;
            int rc = test_run(flm_sb_cstr(&cmd), &out, &err);
            flm_sb_free(&cmd);
            flm_json_doc *d = rc == 0 ? flm_json_parse(out, strlen(out), "bench --json") : NULL;
            CHECK_MSG(d != NULL, "FLM_KERNELS=%s bench: exit %d %s", tables[i], rc, err ? err : "");
            const char *k = d ? flm_json_string(flm_json_get(flm_json_root(d), "kernels"), NULL) : NULL;
            if (qact) CHECK_MSG(k && !strcmp(k, tables[i]), "FLM_KERNELS=%s: bench used %s", tables[i], k ? k : "?");
            else {
                CHECK_MSG(k && strcmp(k, tables[i]) != 0, "FLM_QACT=0 FLM_KERNELS=%s: bench used it", tables[i]);
                CHECK_MSG(err && strstr(err, tables[i]) && strstr(err, "not available"), "no warning: %s", err ? err : "");
            }
            flm_json_free(d);
            free(out);
            free(err);
        }
    }
}

/* Linux's AMX permission is process-wide and enlarges every signal frame, so it is asked
 * for only when the AMX table may run: with FLM_KERNELS naming another table the
 * process does not hold it, as the kernel itself reports (ARCH_GET_XCOMP_PERM, read
 * back into bench's "amx_tiles"). */
static char *bench_amx_state(const char *env, char **kernels) {
    strbuf cmd;
    flm_sb_init(&cmd);
    flm_sb_printf(&cmd, "%s %s bench -m %s -p 4 -n 1 -t 1 --no-membw --json", env, test_bin(), MICRO);
    char *out = NULL, *err = NULL, *state = NULL;
    int rc = test_run(flm_sb_cstr(&cmd), &out, &err);
    flm_json_doc *d = rc == 0 ? flm_json_parse(out, strlen(out), "bench --json") : NULL;
    CHECK_MSG(d != NULL, "%s: exit %d %s", flm_sb_cstr(&cmd), rc, err ? err : "");
    const char *a = d ? flm_json_string(flm_json_get(flm_json_root(d), "amx_tiles"), NULL) : NULL;
    const char *k = d ? flm_json_string(flm_json_get(flm_json_root(d), "kernels"), NULL) : NULL;
    state = a ? flm_strdup(a) : NULL;
    *kernels = k ? flm_strdup(k) : NULL;
    flm_sb_free(&cmd);
    flm_json_free(d);
    free(out);
    free(err);
    return state;
}

TEST(bench_amx_permission_follows_flm_kernels) {
    char *k0 = NULL, *k1 = NULL, *k2 = NULL;
    char *dflt = bench_amx_state("FLM_KERNELS= FLM_QACT=1 FLM_QPACK=1", &k0);
    REQUIRE(dflt);
    if (!strcmp(dflt, "none")) printf("    (no AMX-INT8 here: only the report is checked)\n");
    else {
        bool granted = !strcmp(dflt, "granted"); /* else refused (a sandbox): the AMX table does not exist */
        CHECK_MSG(!granted || (k0 && !strcmp(k0, "avx512-amx")), "default: AMX %s, kernels %s", dflt, k0 ? k0 : "?");
        char *other = bench_amx_state("FLM_KERNELS=avx512", &k1), *amx = bench_amx_state("FLM_KERNELS=avx512-amx", &k2);
        CHECK_MSG(other && !strcmp(other, "not requested"), "FLM_KERNELS=avx512: AMX %s", other ? other : "?");
        CHECK(k1 && !strcmp(k1, "avx512"));
        CHECK_MSG(amx && !strcmp(amx, dflt), "FLM_KERNELS=avx512-amx: AMX %s (default %s)", amx ? amx : "?", dflt);
        /* the AMX table is never the default without int8 activations or packed weights */
        for (int i = 0; i < 2; i++) {
            char *k = NULL, *s = bench_amx_state(i ? "FLM_KERNELS= FLM_QPACK=0" : "FLM_KERNELS= FLM_QACT=0", &k);
            CHECK_MSG(s && !strcmp(s, "not requested"), "%s: AMX %s", i ? "FLM_QPACK=0" : "FLM_QACT=0", s ? s : "?");
            free(s);
            free(k);
        }
        free(other);
        free(amx);
    }
    CHECK(!strcmp(dflt, "none") || !strcmp(dflt, "granted") || !strcmp(dflt, "refused"));
    free(dflt);
    free(k0);
    free(k1);
    free(k2);
}

/* bench/vs-llama.sh refuses a llama-bench that is not there and a bad round count
 * before it makes any file (the 1.5B-shape run itself is too big for the suite). */
TEST(bench_vs_llama_script_usage_errors) {
    static const char *const cases[][2] = {
        {"LLAMA_BENCH=/nonexistent/llama-bench", "is not an executable file"},
        {"ROUNDS=0", "ROUNDS must be a positive number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        strbuf cmd, work;
        flm_sb_init(&cmd);
        flm_sb_init(&work);
        flm_sb_printf(&work, "%s/vs-llama-%zu", test_tmpdir(), i);
        flm_sb_printf(&cmd, "%s FLM=%s sh bench/vs-llama.sh %s", cases[i][0], test_bin(), flm_sb_cstr(&work));
        char *out = NULL, *err = NULL;
        int rc = test_run(flm_sb_cstr(&cmd), &out, &err);
        CHECK_MSG(rc != 0, "%s: exit 0", cases[i][0]);
        CHECK_MSG(err && strstr(err, cases[i][1]), "%s: stderr %s", cases[i][0], err ? err : "");
        CHECK_MSG(access(flm_sb_cstr(&work), F_OK) != 0, "%s: made %s", cases[i][0], flm_sb_cstr(&work));
        flm_sb_free(&cmd);
        flm_sb_free(&work);
        free(out);
        free(err);
    }
}

TEST(bench_micro_json) {
    flm_json_doc *d = bench_json("-m " MICRO " -p 16 -n 8 --json --membw-mib " SMALL_MIB);
    REQUIRE(d);
    const flm_json *r = flm_json_root(d);
    CHECK_STR(flm_json_string(flm_json_get(r, "model"), NULL), MICRO);
    CHECK_STR(flm_json_string(flm_json_get(r, "kernels"), NULL), flm_kernels_best()->name);
    CHECK_EQ_INT(num(r, "threads"), flm_physical_cores());
    CHECK_EQ_INT(num(r, "prompt_tokens"), 16);
    CHECK_EQ_INT(num(r, "decode_tokens"), 8);
    CHECK_EQ_INT(num(r, "n_ctx"), 24);
    static const char *const positive[] = {"prefill_tok_s", "decode_tok_s", "decode_gb_s", "membw_gb_s", "peak_rss_mb",
                                           "prefill_s", "decode_s", "kv_bytes_per_token", "decode_membw_pct"};
    for (size_t i = 0; i < sizeof positive / sizeof *positive; i++)
        CHECK_MSG(num(r, positive[i]) > 0, "%s should be positive", positive[i]);
    flm_model *m;
    REQUIRE(flm_load_model(MICRO, NULL, &m) == FLM_OK);
    CHECK_EQ_INT(num(r, "weight_bytes_per_token"), (long long)flm_model_weight_bytes(m));
    /* decode GB/s is (weights + KV) bytes per token times tokens per second */
    double want = (num(r, "weight_bytes_per_token") + num(r, "kv_bytes_per_token")) * num(r, "decode_tok_s") / 1e9;
    CHECK_NEAR(num(r, "decode_gb_s"), want, 1e-3 * want + 1e-3);
    /* KV read per token, averaged over positions 16..23 reading 17..24 entries */
    const flm_config *c = &m->cfg;
    CHECK_NEAR(num(r, "kv_bytes_per_token"), 2.0 * c->n_layers * 20.5 * c->n_kv_heads * c->head_dim * 4, 1);
    flm_model_close(m);
    flm_json_free(d);
}

TEST(bench_threads_and_no_membw) {
    flm_json_doc *d = bench_json("-m " MICRO " -p 8 -n 2 -t 1 --no-membw --json");
    REQUIRE(d);
    const flm_json *r = flm_json_root(d);
    CHECK_EQ_INT(num(r, "threads"), 1);
    CHECK(flm_json_get(r, "membw_gb_s") && flm_json_get(r, "membw_gb_s")->type == JSON_NULL);
    CHECK(num(r, "prefill_tok_s") > 0);
    flm_json_free(d);
    /* -n 0: prefill only */
    d = bench_json("-m " MICRO " -p 8 -n 0 -t 2 -c 64 --json --membw-mib " SMALL_MIB);
    REQUIRE(d);
    r = flm_json_root(d);
    CHECK_EQ_INT(num(r, "threads"), 2);
    CHECK_EQ_INT(num(r, "n_ctx"), 64);
    CHECK_EQ_INT(num(r, "decode_tok_s"), 0);
    flm_json_free(d);
}

/* -r N: N measurements, the medians reported with the range around them. */
TEST(bench_repeat_reports_median_and_range) {
    flm_json_doc *d = bench_json("-m " MICRO " -p 8 -n 4 -r 3 --no-membw --json");
    if (!d) return;
    const flm_json *r = flm_json_root(d);
    CHECK_EQ_INT(num(r, "runs"), 3);
    double p = num(r, "prefill_tok_s"), d0 = num(r, "decode_tok_s");
    CHECK(num(r, "prefill_tok_s_min") <= p && p <= num(r, "prefill_tok_s_max"));
    CHECK(num(r, "decode_tok_s_min") <= d0 && d0 <= num(r, "decode_tok_s_max"));
    CHECK_NEAR(num(r, "prefill_s") * p, 8, 0.1); /* prefill_s is printed to the microsecond */
    flm_json_free(d);
    /* with the bandwidth probe after each run: the reported one lies in their range */
    d = bench_json("-m " MICRO " -p 8 -n 4 -r 3 --membw-mib " SMALL_MIB " --json");
    if (d) {
        r = flm_json_root(d);
        double bw = num(r, "membw_gb_s");
        CHECK(num(r, "membw_gb_s_min") <= bw && bw <= num(r, "membw_gb_s_max") && bw > 0);
        CHECK_NEAR(num(r, "decode_membw_pct"), 100.0 * num(r, "decode_gb_s") / bw, 0.1);
        flm_json_free(d);
    }
    char *out, *err;
    REQUIRE(bench("-m " MICRO " -p 8 -n 4 -r 2 --no-membw", &out, &err) == 0);
    CHECK_MSG(strstr(out, "runs: 2 (medians below;"), "%s", out);
    free(out);
    free(err);
}

TEST(bench_gguf_and_text_report) {
    char *out, *err;
    REQUIRE(bench("-m " PEER_GGUF " -p 8 -n 4 --membw-mib " SMALL_MIB, &out, &err) == 0);
    CHECK(strstr(out, "prefill: 8 tokens = "));
    CHECK(strstr(out, "decode: "));
    CHECK(strstr(out, " GB/s = "));
    CHECK(strstr(out, "% of ") && strstr(out, "GB/s measured right after"));
    CHECK(strstr(out, "peak RSS: "));
    CHECK(strstr(out, "memory read bandwidth: "));
    free(out);
    free(err);
}

TEST(bench_membw_only) {
    flm_json_doc *d = bench_json("--membw --membw-mib " SMALL_MIB " -t 2 --json");
    REQUIRE(d);
    const flm_json *r = flm_json_root(d);
    CHECK(num(r, "membw_gb_s") > 0);
    CHECK_EQ_INT(num(r, "threads"), 2);
    CHECK(num(r, "buffer_bytes") > 63.0 * (1 << 20) && num(r, "buffer_bytes") <= 64.0 * (1 << 20));
    CHECK_STR(flm_json_string(flm_json_get(r, "isa"), NULL), flm_membw_isa());
    flm_json_free(d);
    char *out, *err;
    REQUIRE(bench("--membw --membw-mib " SMALL_MIB, &out, &err) == 0);
    CHECK(strstr(out, "memory read bandwidth: ") && strstr(out, "GB/s"));
    free(out);
    free(err);
}

TEST(bench_bad_options) {
    static const char *const usage[] = {
        "",                                  /* neither -m nor --membw */
        "--bogus",
        "-m " MICRO " -p 0",
        "-m " MICRO " -p abc",
        "-m " MICRO " -n -1",
        "-m " MICRO " -t 0",
        "-m " MICRO " -p",                   /* missing value */
        "-m " MICRO " -p 16 -n 8 -c 10",     /* context smaller than the work */
        "-m " MICRO " -p 100000 -n 1",       /* beyond max_position_embeddings */
        "--membw -m " MICRO,
        "--membw --no-membw",
        "--membw --membw-mib 0",
        "-m " MICRO " -r 0",
        "-m " MICRO " -r 51",
    };
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        char *out, *err;
        CHECK_MSG(bench(usage[i], &out, &err) == 2, "bench %s should be a usage error (2)", usage[i]);
        CHECK_MSG(strstr(err, "fieldlm bench"), "bench %s: no message: %s", usage[i], err);
        free(out);
        free(err);
    }
    char *out, *err;
    CHECK_EQ_INT(bench("-m /nonexistent-model -p 4 -n 1", &out, &err), 1);
    CHECK(strstr(err, "/nonexistent-model"));
    free(out);
    free(err);
    REQUIRE(bench("--help", &out, &err) == 0);
    CHECK(strstr(out, "--membw") && strstr(out, "--json") && strstr(out, "-t, --threads"));
    free(out);
    free(err);
}
