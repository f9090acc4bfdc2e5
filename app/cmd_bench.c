/* cmd_bench.c — `fieldlm bench`: prefill and decode speed of a model, decode as
 * GB/s of weights + KV cache streamed per token, peak RSS, and this machine's
 * measured memory read bandwidth (src/dev/membw.c) so decode is printed as a share
 * of the physical limit. `fieldlm bench --membw` measures only the bandwidth. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_dev.h"
#include "base/common.h"
#include "runtime/forward.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"
#include "dev/membw.h"
#include "model/model.h"
#include "base/threadpool.h"

#define DEFAULT_PROMPT 512
#define DEFAULT_DECODE 128
#define WARMUP_TOKENS 4          /* one short prefill before timing: page faults, pool start */
#define MAX_BENCH_TOKENS (1 << 22)
#define MIB_F 1048576.0
#define MAX_REPEAT 50

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm bench -m MODEL [-p N] [-n N] [-t N] [-r N] [-c CTX] [--mmap] [--json]\n"
            "       fieldlm bench --membw [-t N] [--json]\n\n"
            "Measures a model on this CPU: one prefill of -p pseudo-random prompt tokens\n"
            "(after a %d-token warm-up), then -n single-token decode steps (each feeding the\n"
            "previous step's argmax). Reports prefill and decode tokens/s, decode GB/s (bytes\n"
            "of weights plus KV cache read per token, times tokens/s; 1 GB = 1e9 bytes), peak\n"
            "resident memory, time to load the weights, and this machine's memory read\n"
            "bandwidth, measured right after each run (it may drift on a shared host), with\n"
            "decode as a percentage of it.\n\n"
            "  -m, --model MODEL   Hugging Face folder or .gguf package\n"
            "      --lora DIR[:S]  merge a PEFT LoRA adapter at load (HF folders), scale S\n"
            "      --mmap          run the weights in place from the file mapping\n"
            "      --no-mmap       load the weights into memory first (the default when they\n"
            "                      take at most half of the available memory)\n"
            "  -p, --prompt N      prompt tokens to prefill (default %d)\n"
            "  -n, --decode N      tokens to decode after the prompt (default %d; 0 skips decode)\n"
            "  -t, --threads N     threads (default: physical cores, here %d)\n"
            "  -r, --repeat N      measure N times (prefill and decode from a fresh context each\n"
            "                      time) and report the run with the median decode speed, the\n"
            "                      median prefill speed, and the range of both (default 1)\n"
            "  -c, --ctx N         context length to allocate (default: prompt + decode); the\n"
            "                      KV cache holds the tokens actually processed, so peak memory at\n"
            "                      a long context is measured with -p/-n filling it\n"
            "      --membw         only measure memory read bandwidth\n"
            "      --no-membw      skip the bandwidth measurement in a model run\n"
            "      --json          print one JSON object instead of text\n"
            "  -h, --help          this help\n\n"
            "Peak RSS is read before the bandwidth measurement, whose buffer would dominate it.\n",
            WARMUP_TOKENS, DEFAULT_PROMPT, DEFAULT_DECODE, flm_physical_cores());
}

/* Deterministic pseudo-random ids in [0, vocab): splitmix64. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    int threads;
    int n_ctx;
    int prompt, decode;
    double prefill_s, decode_s;
    double prefill_tok_s, decode_tok_s;
    size_t weight_bytes;        /* per decode token */
    double kv_bytes;            /* per decode token, mean over the decode positions */
    double decode_gb_s;
    size_t kv_cache_bytes;      /* allocated at the end */
    size_t peak_rss;
    double step_median_s, step_max_s; /* decode step times */
} bench_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static bool parse_count(const char *v, long lo, long hi, long *out) {
    return cli_parse_int(v, out) && *out >= lo && *out <= hi;
}

/* Times the prefill and decode of one model. Returns FLM_OK or a library status. */
static int run_model(flm_model *m, int threads, int prompt, int decode, int n_ctx, bench_result *r) {
    const flm_config *c = &m->cfg;
    flm_forward_state *st = NULL;
    int rc = flm_forward_new(m, n_ctx, &st);
    if (rc) return rc;
    int32_t *ids = flm_malloc((size_t)(prompt > WARMUP_TOKENS ? prompt : WARMUP_TOKENS) * sizeof *ids);
    float *logits = flm_malloc((size_t)c->vocab_size * sizeof *logits);
    double *steps = NULL;
    if (!ids || !logits) { rc = FLM_ERR_NOMEM; goto done; }
    if ((rc = flm_forward_set_threads(st, threads))) goto done;
    r->threads = flm_forward_threads(st);
    r->n_ctx = flm_forward_n_ctx(st);
    r->prompt = prompt;
    r->decode = decode;

    uint64_t seed = 0x5EEDull;
    int warm = WARMUP_TOKENS < n_ctx ? WARMUP_TOKENS : n_ctx;
    for (int i = 0; i < warm; i++) ids[i] = (int32_t)(splitmix(&seed) % (uint64_t)c->vocab_size);
    if ((rc = flm_forward(st, ids, warm, logits, FLM_LOGITS_LAST))) goto done;
    flm_forward_truncate(st, 0);

    for (int i = 0; i < prompt; i++) ids[i] = (int32_t)(splitmix(&seed) % (uint64_t)c->vocab_size);
    double t0 = flm_now_seconds();
    if ((rc = flm_forward(st, ids, prompt, logits, FLM_LOGITS_LAST))) goto done;
    r->prefill_s = flm_now_seconds() - t0;
    r->prefill_tok_s = r->prefill_s > 0 ? prompt / r->prefill_s : 0;

    int32_t tok = argmax(logits, c->vocab_size);
    steps = flm_malloc((size_t)(decode > 0 ? decode : 1) * sizeof *steps);
    if (!steps) { rc = FLM_ERR_NOMEM; goto done; }
    t0 = flm_now_seconds();
    for (int i = 0; i < decode; i++) {
        double ts = flm_now_seconds();
        if ((rc = flm_forward(st, &tok, 1, logits, FLM_LOGITS_LAST))) goto done;
        tok = argmax(logits, c->vocab_size);
        steps[i] = flm_now_seconds() - ts;
    }
    r->decode_s = flm_now_seconds() - t0;
    if (decode > 0) {
        qsort(steps, (size_t)decode, sizeof *steps, cmp_double);
        r->step_median_s = steps[decode / 2];
        r->step_max_s = steps[decode - 1];
    }
    r->decode_tok_s = decode > 0 && r->decode_s > 0 ? decode / r->decode_s : 0;

    /* Step i (position prompt + i) reads the keys and values of prompt + i + 1
     * positions: K and V, every layer, n_kv heads × head_dim floats each. */
    r->weight_bytes = flm_model_weight_bytes(m);
    double mean_pos = prompt + (decode + 1) / 2.0;
    r->kv_bytes = 2.0 * c->n_layers * mean_pos * c->n_kv_heads * c->head_dim * sizeof(float);
    r->decode_gb_s = ((double)r->weight_bytes + r->kv_bytes) * r->decode_tok_s / 1e9;
    r->kv_cache_bytes = flm_forward_kv_bytes(st);
    r->peak_rss = flm_peak_rss_bytes();
done:
    free(ids);
    free(logits);
    free(steps);
    flm_forward_free(st);
    return rc;
}

static void print_json_str(const char *key, const char *v) {
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_json_string(&sb, v, strlen(v), false);
    printf("\"%s\": %s", key, flm_sb_cstr(&sb));
    flm_sb_free(&sb);
}

static void print_membw_human(const flm_membw_result *bw) {
    printf("memory read bandwidth: %.1f GB/s (best of %d; mean %.1f, worst %.1f) with %d thread%s, %s loads, %.0f MiB buffer\n",
           bw->best_gb_s, bw->repeats, bw->mean_gb_s, bw->worst_gb_s, bw->n_threads, bw->n_threads == 1 ? "" : "s",
           bw->isa, (double)bw->bytes / MIB_F);
}

static int cmd_bench(int argc, char **argv) {
    cli_model_args ma = {0};
    long prompt = DEFAULT_PROMPT, decode = DEFAULT_DECODE, threads = 0, n_ctx = 0, membw_mib = 0, repeat = 1;
    bool as_json = false, membw_only = false, no_membw = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_arg(&ma, argc, argv, &i, "bench");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "--membw")) membw_only = true;
        else if (!strcmp(argv[i], "--no-membw")) no_membw = true;
        else if (cli_is(argv[i], "-p", "--prompt")) {
            if (!(v = cli_value(argc, argv, &i, "bench"))) return EXIT_USAGE;
            if (!parse_count(v, 1, MAX_BENCH_TOKENS, &prompt)) { fprintf(stderr, "fieldlm bench: -p needs a positive number of tokens\n"); return EXIT_USAGE; }
        } else if (cli_is(argv[i], "-n", "--decode")) {
            if (!(v = cli_value(argc, argv, &i, "bench"))) return EXIT_USAGE;
            if (!parse_count(v, 0, MAX_BENCH_TOKENS, &decode)) { fprintf(stderr, "fieldlm bench: -n needs a number of tokens (0 or more)\n"); return EXIT_USAGE; }
        } else if (cli_is(argv[i], "-t", "--threads")) {
            if (!(v = cli_value(argc, argv, &i, "bench"))) return EXIT_USAGE;
            if (!parse_count(v, 1, 256, &threads)) { fprintf(stderr, "fieldlm bench: -t needs a thread count from 1 to 256\n"); return EXIT_USAGE; }
        } else if (cli_is(argv[i], "-c", "--ctx")) {
            if (!(v = cli_value(argc, argv, &i, "bench"))) return EXIT_USAGE;
            if (!parse_count(v, 1, MAX_BENCH_TOKENS, &n_ctx)) { fprintf(stderr, "fieldlm bench: -c needs a positive context length\n"); return EXIT_USAGE; }
        } else if (cli_is(argv[i], "-r", "--repeat")) {
            if (!(v = cli_value(argc, argv, &i, "bench"))) return EXIT_USAGE;
            if (!parse_count(v, 1, MAX_REPEAT, &repeat)) { fprintf(stderr, "fieldlm bench: -r needs a run count from 1 to %d\n", MAX_REPEAT); return EXIT_USAGE; }
        } else if (!strcmp(argv[i], "--membw-mib")) { /* undocumented: small buffers for tests */
            if (!(v = cli_value(argc, argv, &i, "bench"))) return EXIT_USAGE;
            if (!parse_count(v, 1, 1 << 20, &membw_mib)) { fprintf(stderr, "fieldlm bench: --membw-mib needs a positive size in MiB\n"); return EXIT_USAGE; }
        } else { fprintf(stderr, "fieldlm bench: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (membw_only && (ma.model || ma.n_lora)) { fprintf(stderr, "fieldlm bench: --membw takes no model\n"); return EXIT_USAGE; }
    if (membw_only && no_membw) { fprintf(stderr, "fieldlm bench: --membw and --no-membw contradict each other\n"); return EXIT_USAGE; }
    if (!membw_only && !ma.model) { fprintf(stderr, "fieldlm bench: give -m MODEL (or --membw)\n"); help(stderr); return EXIT_USAGE; }
    if (n_ctx && n_ctx < prompt + decode) {
        fprintf(stderr, "fieldlm bench: -c %ld is less than the %ld prompt + %ld decode tokens\n", n_ctx, prompt, decode);
        return EXIT_USAGE;
    }
    int nthreads = threads > 0 ? (int)threads : flm_physical_cores();
    flm_membw_options mo = {.bytes = (size_t)membw_mib << 20, .n_threads = nthreads};
    flm_membw_result bw = {0};

    if (membw_only) {
        if (flm_membw_measure(&mo, &bw)) return cli_error("bench");
        if (as_json)
            printf("{\"membw_gb_s\": %.3f, \"membw_mean_gb_s\": %.3f, \"membw_worst_gb_s\": %.3f, \"threads\": %d, "
                   "\"repeats\": %d, \"buffer_bytes\": %zu, \"isa\": \"%s\"}\n",
                   bw.best_gb_s, bw.mean_gb_s, bw.worst_gb_s, bw.n_threads, bw.repeats, bw.bytes, bw.isa);
        else
            print_membw_human(&bw);
        return EXIT_OK;
    }

    double load_t0 = flm_now_seconds();
    flm_model *m = cli_open_model(&ma, "bench");
    if (!m) return EXIT_FAIL;
    double load_s = flm_now_seconds() - load_t0;
    size_t loaded = flm_model_loaded_bytes(m), huge = flm_model_huge_page_bytes(m);
    if (!n_ctx) n_ctx = prompt + decode;
    if (m->cfg.max_position_embeddings > 0 && n_ctx > m->cfg.max_position_embeddings) {
        fprintf(stderr, "fieldlm bench: %ld tokens exceed the model's max_position_embeddings (%d)\n", n_ctx,
                m->cfg.max_position_embeddings);
        flm_model_close(m);
        return EXIT_USAGE;
    }
    bench_result runs[MAX_REPEAT] = {{0}};
    if (!as_json) fprintf(stderr, "bench: %s: prefill %ld tokens, decode %ld on %d thread%s, %ld run%s...\n", ma.model, prompt,
                          decode, nthreads, nthreads == 1 ? "" : "s", repeat, repeat == 1 ? "" : "s");
    /* Each run is followed by its own bandwidth measurement: this machine's bandwidth
     * drifts (a shared host), so decode is compared with the probe taken next to it. */
    flm_membw_result bws[MAX_REPEAT] = {{0}};
    for (int i = 0; i < repeat; i++) {
        if (run_model(m, nthreads, (int)prompt, (int)decode, (int)n_ctx, &runs[i]) ||
            (!no_membw && flm_membw_measure(&mo, &bws[i]))) {
            flm_model_close(m);
            return cli_error("bench");
        }
    }
    /* the run with the median decode speed (prefill speed if no decode), with the
     * median prefill speed of all runs; the spread is reported beside */
    double pre[MAX_REPEAT], dec[MAX_REPEAT];
    for (int i = 0; i < repeat; i++) { pre[i] = runs[i].prefill_tok_s; dec[i] = runs[i].decode_tok_s; }
    qsort(pre, (size_t)repeat, sizeof *pre, cmp_double);
    qsort(dec, (size_t)repeat, sizeof *dec, cmp_double);
    int mid = 0;
    for (int i = 0; i < repeat; i++)
        if (decode > 0 ? runs[i].decode_tok_s == dec[repeat / 2] : runs[i].prefill_tok_s == pre[repeat / 2]) mid = i;
    bench_result r = runs[mid];
    bw = bws[mid];
    r.prefill_tok_s = pre[repeat / 2];
    r.prefill_s = r.prefill_tok_s > 0 ? r.prompt / r.prefill_tok_s : r.prefill_s;
    /* the first run's peak: later ones would count the probe's buffer, which the
     * allocator may keep mapped */
    r.peak_rss = runs[0].peak_rss;
    double bw_lo = bws[0].best_gb_s, bw_hi = bws[0].best_gb_s;
    for (int i = 1; i < repeat; i++) {
        bw_lo = bws[i].best_gb_s < bw_lo ? bws[i].best_gb_s : bw_lo;
        bw_hi = bws[i].best_gb_s > bw_hi ? bws[i].best_gb_s : bw_hi;
    }
    const char *kernels = flm_kernels_best()->name, *layout = flm_model_weight_layout(m);
    double pct = bw.best_gb_s > 0 ? 100.0 * r.decode_gb_s / bw.best_gb_s : 0;

    if (as_json) {
        printf("{");
        print_json_str("model", ma.model);
        printf(", \"threads\": %d, \"kernels\": \"%s\", \"n_ctx\": %d, \"prompt_tokens\": %d, \"decode_tokens\": %d, "
               "\"prefill_s\": %.6f, \"prefill_tok_s\": %.3f, \"decode_s\": %.6f, \"decode_tok_s\": %.3f, "
               "\"weight_bytes_per_token\": %zu, \"kv_bytes_per_token\": %.0f, \"decode_gb_s\": %.3f, ",
               r.threads, kernels, r.n_ctx, r.prompt, r.decode, r.prefill_s, r.prefill_tok_s, r.decode_s, r.decode_tok_s,
               r.weight_bytes, r.kv_bytes, r.decode_gb_s);
        if (no_membw) printf("\"membw_gb_s\": null, \"decode_membw_pct\": null, ");
        else printf("\"membw_gb_s\": %.3f, \"decode_membw_pct\": %.1f, \"membw_isa\": \"%s\", \"membw_gb_s_min\": %.3f, "
                    "\"membw_gb_s_max\": %.3f, ", bw.best_gb_s, pct, bw.isa, bw_lo, bw_hi);
        printf("\"runs\": %ld, \"prefill_tok_s_min\": %.3f, \"prefill_tok_s_max\": %.3f, \"decode_tok_s_min\": %.3f, "
               "\"decode_tok_s_max\": %.3f, ", repeat, pre[0], pre[repeat - 1], dec[0], dec[repeat - 1]);
        printf("\"decode_step_median_ms\": %.3f, \"decode_step_max_ms\": %.3f, ", r.step_median_s * 1e3, r.step_max_s * 1e3);
        printf("\"load_s\": %.3f, \"weights\": \"%s\", \"weight_layout\": \"%s\", \"loaded_mb\": %.1f, \"huge_page_mb\": %.1f, ",
               load_s, loaded ? "loaded" : "mapped", layout ? layout : "file", (double)loaded / MIB_F, (double)huge / MIB_F);
        printf("\"kv_cache_bytes\": %zu, \"peak_rss_mb\": %.1f, \"amx_tiles\": \"%s\"}\n", r.kv_cache_bytes, (double)r.peak_rss / MIB_F,
               flm_cpu_amx_state());
    } else {
        printf("model: %s (%d layers, hidden %d, vocab %d)\n", ma.model, m->cfg.n_layers, m->cfg.hidden_size, m->cfg.vocab_size);
        const char *amx = flm_cpu_amx_state();
        bool has_amx = strcmp(amx, "none") != 0;
        printf("threads: %d, kernels: %s, context: %d%s%s\n", r.threads, kernels, r.n_ctx, has_amx ? ", AMX tiles: " : "", has_amx ? amx : "");
        if (loaded)
            printf("weights: %.1f MiB loaded into memory in %.2f s (%.0f MiB on huge pages%s%s)\n", (double)loaded / MIB_F, load_s,
                   (double)huge / MIB_F, layout ? "; int8 matrices packed: " : "", layout ? layout : "");
        else printf("weights: run from the file mapping (opened in %.2f s)\n", load_s);
        if (repeat > 1)
            printf("runs: %ld (medians below; prefill %.1f-%.1f tok/s, decode %.1f-%.1f tok/s)\n", repeat, pre[0], pre[repeat - 1],
                   dec[0], dec[repeat - 1]);
        printf("prefill: %d tokens = %.1f tok/s\n", r.prompt, r.prefill_tok_s);
        if (r.decode > 0) {
            printf("decode: %.1f tok/s, %.1f GB/s", r.decode_tok_s, r.decode_gb_s);
            if (!no_membw) printf(" = %.0f%% of %.1f GB/s measured right after", pct, bw.best_gb_s);
            printf("\n  (%d tokens in %.3f s; per token %.1f MB of weights + %.1f MB of KV cache;\n"
                   "   step median %.1f ms, slowest %.1f ms)\n", r.decode, r.decode_s,
                   (double)r.weight_bytes / 1e6, r.kv_bytes / 1e6, r.step_median_s * 1e3, r.step_max_s * 1e3);
        }
        printf("peak RSS: %.1f MiB (KV cache %.1f MiB)\n", (double)r.peak_rss / MIB_F, (double)r.kv_cache_bytes / MIB_F);
        if (!no_membw) {
            print_membw_human(&bw);
            if (repeat > 1) printf("  (after each of the %ld runs: %.1f-%.1f GB/s)\n", repeat, bw_lo, bw_hi);
        }
    }
    flm_model_close(m);
    return EXIT_OK;
}
CLI_COMMAND(bench, "bench", "measure prefill/decode speed, decode GB/s and memory bandwidth", 80, cmd_bench)
