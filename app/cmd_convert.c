/* cmd_convert.c — `fieldlm convert`: HF checkpoint (+ LoRA) → one GGUF package. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "base/common.h"
#include "convert/convert.h"
#include "convert/litert.h"

static volatile sig_atomic_t g_cancel;
static void on_signal(int sig) { (void)sig; g_cancel = 1; }

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm convert HF_DIR -o OUT.gguf [--type TYPE] [--lora ADAPTER_DIR[:SCALE]]... [-t N]\n"
            "       fieldlm convert HF_DIR -o OUT.tflite|OUT.litertlm [--type RECIPE] [--ctx S] [--prefill T,...] [--lora ...]\n\n"
            "Converts a Hugging Face Qwen2/Qwen2.5 checkpoint folder, with PEFT LoRA adapters merged\n"
            "(W' = W + scale * B A in float32, then rounded), into one GGUF package that llama.cpp can\n"
            "also load. The package carries the tokenizer, chat template, every stop id and the\n"
            "generation defaults, plus provenance (sha256 of every source file, adapters). Tensors\n"
            "are streamed one at a time: memory stays near one tensor, not the model. The context\n"
            "length is not fixed here: choose it when running (-c).\n\n"
            "  -o, --output OUT.gguf   output file; written to OUT.gguf.XXXXXX.tmp (one per run),\n"
            "                          fsynced, then renamed over OUT.gguf: on any error or Ctrl-C\n"
            "                          nothing is left behind\n"
            "      --type TYPE         weight matrices as f32, f16, bf16, q8_0 (default) or q4_0;\n"
            "                          norms and biases stay f32; a matrix whose rows are not a\n"
            "                          multiple of 32 is kept as f16 when q8_0/q4_0 is asked\n"
            "      --lora DIR[:S]      merge a PEFT adapter (adapter_config.json +\n"
            "                          adapter_model.safetensors) with extra scale S (default 1);\n"
            "                          repeatable, merged in order\n"
            "  -t, --threads N         threads for conversion (default: physical cores)\n"
            "LiteRT outputs (format from the extension, or --format gguf|tflite|litertlm):\n"
            "      --type RECIPE       AI Edge Torch's recipes: dynamic_int8 (default: int8 per-channel\n"
            "                          weights, inputs quantized at run time), weight_only_int8,\n"
            "                          fp16, f32 (alias none)\n"
            "      --ctx S             cache length baked into the graph (default 4096, at most\n"
            "                          max_position_embeddings); LiteRT-LM's max_num_tokens\n"
            "      --prefill T,...     prefill signatures (default 8,64,128,256,512,1024; those\n"
            "                          longer than the cache are left out)\n"
            "  A .litertlm bundles the model, tokenizer.json and LlmMetadata (qwen2p5, the chat\n"
            "  template, every eos id as a stop token, sampler from generation_config.json).\n"
            "  -q, --quiet             no progress display\n"
            "  -h, --help              this help\n\n"
            "Refused before any work, so nothing a user types destroys a file: an output that is\n"
            "one of the inputs (a file of HF_DIR that is read, an adapter's files; links and hard\n"
            "links resolved), a directory, anything that exists and is not a regular file (a\n"
            "device such as /dev/null, a FIFO, a socket), or a folder that is missing or not\n"
            "writable. A source file that changes size during conversion is an error naming it;\n"
            "so is the file size limit (ulimit -f). Exit status: 0 written, 1 failed (nothing\n"
            "written), 2 usage.\n");
}

static void progress(void *ctx, int i, int n, const char *name, uint64_t done, uint64_t total) {
    (void)ctx;
    fprintf(stderr, "\rconvert: [%3d/%3d] %5.1f%% %-32s", i, n, total ? 100.0 * (double)done / (double)total : 100.0, name);
    if (i == n) fputc('\n', stderr);
}

static bool parse_type(const char *s, flm_dtype *t) {
    static const struct { const char *n; flm_dtype t; } T[] = {
        {"f32", FLM_F32}, {"f16", FLM_F16}, {"bf16", FLM_BF16}, {"q8_0", FLM_Q8_0}, {"q4_0", FLM_Q4_0}};
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        if (!strcmp(s, T[i].n)) { *t = T[i].t; return true; }
    return false;
}

/* ---- LiteRT outputs (.tflite, .litertlm): --format, --ctx, --prefill ---- */
typedef struct {
    const char *format;  /* --format, or NULL: from the extension */
    const char *type;    /* --type as given (the recipe for LiteRT outputs) */
    long ctx;
    const char *prefill;
} litert_args;

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* 0: GGUF; 1: .tflite; 2: .litertlm; -1: a bad --format */
static int output_format(const litert_args *la, const char *out) {
    if (la->format) {
        if (!strcmp(la->format, "gguf")) return 0;
        if (!strcmp(la->format, "tflite")) return 1;
        if (!strcmp(la->format, "litertlm")) return 2;
        return -1;
    }
    if (ends_with(out, ".tflite")) return 1;
    if (ends_with(out, ".litertlm")) return 2;
    return 0;
}

static void litert_warn(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "convert: warning: %s\n", msg);
}

static int convert_litert(const char *in, const char *out, int fmt, const litert_args *la, const cli_lora_list *lora, long threads,
                          bool quiet) {
    flm_litert_options lo;
    memset(&lo, 0, sizeof lo);
    lo.format = fmt == 2 ? FLM_LITERT_LITERTLM : FLM_LITERT_TFLITE;
    lo.recipe = FLM_LITERT_DYNAMIC_INT8;
    if (la->type && !flm_litert_parse_recipe(la->type, &lo.recipe)) {
        fprintf(stderr, "fieldlm convert: --type for .tflite/.litertlm must be f32 (or none), fp16, dynamic_int8 or weight_only_int8 (got '%s')\n", la->type);
        return EXIT_USAGE;
    }
    lo.ctx = (int)la->ctx;
    if (la->prefill) {
        const char *p = la->prefill;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 1 << 20 || (*end && *end != ',') || lo.n_prefill == FLM_LITERT_MAX_PREFILL) {
                fprintf(stderr, "fieldlm convert: --prefill takes up to %d comma-separated lengths >= 1 (got '%s')\n", FLM_LITERT_MAX_PREFILL, la->prefill);
                return EXIT_USAGE;
            }
            lo.prefill[lo.n_prefill++] = (int)v;
            p = *end ? end + 1 : end;
        }
    }
    lo.lora_dirs = lora->dirs;
    lo.lora_scales = lora->scales;
    lo.n_lora = lora->n;
    lo.n_threads = (int)threads;
    lo.cancel = &g_cancel;
    lo.warn = litert_warn;
    if (!quiet && isatty(fileno(stderr))) lo.progress = progress;
    flm_litert_stats st;
    int rc = flm_convert_litert(in, out, &lo, &st);
    if (rc) {
        if (lo.progress) fputc('\n', stderr);
        fprintf(stderr, "fieldlm convert: %s\nfieldlm convert: no output written\n", flm_last_error());
        return EXIT_FAIL;
    }
    fprintf(stderr, "convert: wrote %s (%s, %s, cache %d, %d signatures): %d weights, %.1f MB, %.1f s, peak RSS %.0f MB%s\n", out,
            fmt == 2 ? "litertlm" : "tflite", flm_litert_recipe_name(lo.recipe), st.ctx, st.n_signatures, st.n_weights,
            (double)st.bytes_written / 1e6, st.seconds, (double)st.peak_rss / 1e6, lo.n_lora ? ", LoRA merged" : "");
    if (st.no_tokenizer)
        fprintf(stderr, "convert: note: %s has no tokenizer files: the model runs on token ids only\n", in);
    return EXIT_OK;
}

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    cli_model_args ma = {0};
    long threads = 0;
    bool quiet = false;
    flm_convert_options opt = {.type = FLM_Q8_0};
    litert_args la = {0};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-o", "--output")) { if (!(out = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--type")) {
            if (!(v = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
            la.type = v;
        } else if (!strcmp(argv[i], "--format")) {
            if (!(la.format = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
        } else if (!strcmp(argv[i], "--ctx")) {
            if (!(v = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
            if (!cli_parse_int(v, &la.ctx) || la.ctx < 1 || la.ctx > 1 << 20) { fprintf(stderr, "fieldlm convert: --ctx needs 1..1048576\n"); return EXIT_USAGE; }
        } else if (!strcmp(argv[i], "--prefill")) {
            if (!(la.prefill = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
        } else if (!strcmp(argv[i], "--lora")) {
            if (cli_model_arg(&ma, argc, argv, &i, "convert") < 0) return EXIT_USAGE;
        } else if (cli_is(argv[i], "-t", "--threads")) {
            if (!(v = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
            if (!cli_parse_int(v, &threads) || threads < 1 || threads > 256) { fprintf(stderr, "fieldlm convert: --threads needs 1..256\n"); return EXIT_USAGE; }
        } else if (cli_is(argv[i], "-q", "--quiet")) quiet = true;
        else if (argv[i][0] == '-') { fprintf(stderr, "fieldlm convert: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
        else if (!in) in = argv[i];
        else { fprintf(stderr, "fieldlm convert: unexpected argument '%s'\n", argv[i]); return EXIT_USAGE; }
    }
    if (!in || !out) { fprintf(stderr, "fieldlm convert: HF_DIR and -o OUT.gguf are required\n"); help(stderr); return EXIT_USAGE; }
    int fmt = output_format(&la, out);
    if (fmt < 0) { fprintf(stderr, "fieldlm convert: --format must be gguf, tflite or litertlm (got '%s')\n", la.format); return EXIT_USAGE; }
    if (fmt == 0 && la.type && !parse_type(la.type, &opt.type)) {
        fprintf(stderr, "fieldlm convert: --type must be f32, f16, bf16, q8_0 or q4_0 (got '%s')\n", la.type);
        return EXIT_USAGE;
    }
    if (fmt == 0 && (la.ctx || la.prefill)) {
        fprintf(stderr, "fieldlm convert: --ctx and --prefill are for .tflite/.litertlm outputs (a GGUF's context is chosen when running)\n");
        return EXIT_USAGE;
    }
    if (cli_adapter_hint(in, true, "convert")) return EXIT_FAIL;
    cli_lora_list lora;
    if (!cli_lora_parse(&ma, &lora, "convert")) return EXIT_FAIL;
    if (fmt) {
        struct sigaction sa0;
        memset(&sa0, 0, sizeof sa0);
        sa0.sa_handler = on_signal;
        sigaction(SIGINT, &sa0, NULL);
        sigaction(SIGTERM, &sa0, NULL);
        signal(SIGXFSZ, SIG_IGN);
        int r = convert_litert(in, out, fmt, &la, &lora, threads, quiet);
        cli_lora_free(&lora);
        return r;
    }
    opt.lora_dirs = lora.dirs;
    opt.lora_scales = lora.scales;
    opt.n_lora = lora.n;
    opt.n_threads = (int)threads;
    opt.cancel = &g_cancel;
    if (!quiet && isatty(fileno(stderr))) opt.progress = progress;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* past the file size limit, write() fails with EFBIG (reported, temp removed)
     * instead of the process being killed without a word */
    signal(SIGXFSZ, SIG_IGN);
    flm_convert_stats st;
    int rc = flm_convert(in, out, &opt, &st);
    cli_lora_free(&lora);
    if (rc) {
        if (opt.progress) fputc('\n', stderr);
        fprintf(stderr, "fieldlm convert: %s\nfieldlm convert: no output written\n", flm_last_error());
        return EXIT_FAIL;
    }
    fprintf(stderr, "convert: wrote %s (%s): %d tensors, %.1f MB, %.1f s, peak RSS %.0f MB%s\n", out,
            flm_dtype_get(opt.type)->name, st.n_tensors, (double)st.bytes_written / 1e6, st.seconds, (double)st.peak_rss / 1e6,
            opt.n_lora ? ", LoRA merged" : "");
    if (st.no_tokenizer)
        fprintf(stderr, "convert: note: %s has no tokenizer files: the package runs on token ids only\n", in);
    if (st.n_fallback)
        fprintf(stderr, "convert: note: %d matri%s kept as f16 (rows not a multiple of 32)\n", st.n_fallback, st.n_fallback == 1 ? "x" : "ces");
    return EXIT_OK;
}
CLI_COMMAND(convert, "convert", "convert a Hugging Face checkpoint (+ LoRA) to a GGUF package", 40, cmd_convert)
