/* cmd_convert.c — `fieldlm convert`: HF checkpoint (+ LoRA) → one GGUF package, or a
 * LiteRT .tflite / LiteRT-LM .litertlm (the public flm_convert chooses by opt.format). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile int g_cancel; /* flm_convert_options.cancel: set by the signal handler */
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
            "  -t, --threads N         threads converting rows (default: physical cores; one more\n"
            "                          writes the output and one hashes the sources)\n"
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

static void warn(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "convert: warning: %s\n", msg);
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* "8,64,128": at most 16 lengths >= 1 */
static bool parse_prefill(const char *s, int *v, int *n) {
    *n = 0;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 1 || x > 1 << 20 || (*end && *end != ',') || *n == 16) return false;
        v[(*n)++] = (int)x;
        s = *end ? end + 1 : end;
    }
    return *n > 0;
}

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    cli_model_args ma = {0};
    long threads = 0;
    bool quiet = false;
    flm_convert_options opt;
    flm_convert_options_init(&opt);
    const char *type = NULL, *format = NULL, *prefill = NULL;
    long ctx = 0;
    int prefill_v[16];
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-o", "--output")) { if (!(out = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--type")) {
            if (!(type = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
        } else if (!strcmp(argv[i], "--format")) {
            if (!(format = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
        } else if (!strcmp(argv[i], "--ctx")) {
            if (!(v = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
            if (!cli_parse_int(v, &ctx) || ctx < 1 || ctx > 1 << 20) { fprintf(stderr, "fieldlm convert: --ctx needs 1..1048576\n"); return EXIT_USAGE; }
        } else if (!strcmp(argv[i], "--prefill")) {
            if (!(prefill = cli_value(argc, argv, &i, "convert"))) return EXIT_USAGE;
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
    if (!format) opt.format = ends_with(out, ".tflite") ? FLM_FORMAT_TFLITE : ends_with(out, ".litertlm") ? FLM_FORMAT_LITERTLM : FLM_FORMAT_GGUF;
    else if (!strcmp(format, "gguf")) opt.format = FLM_FORMAT_GGUF;
    else if (!strcmp(format, "tflite")) opt.format = FLM_FORMAT_TFLITE;
    else if (!strcmp(format, "litertlm")) opt.format = FLM_FORMAT_LITERTLM;
    else { fprintf(stderr, "fieldlm convert: --format must be gguf, tflite or litertlm (got '%s')\n", format); return EXIT_USAGE; }
    bool litert = opt.format != FLM_FORMAT_GGUF;
    if (!litert) {
        if (type && flm_type_from_name(type, &opt.type) != FLM_OK) { fprintf(stderr, "fieldlm convert: --type must be f32, f16, bf16, q8_0 or q4_0 (got '%s')\n", type); return EXIT_USAGE; }
        if (ctx || prefill) {
            fprintf(stderr, "fieldlm convert: --ctx and --prefill are for .tflite/.litertlm outputs (a GGUF's context is chosen when running)\n");
            return EXIT_USAGE;
        }
    } else {
        static const char *const recipes[] = {"dynamic_int8", "weight_only_int8", "fp16", "f32", "none"};
        bool known = !type;
        for (size_t r = 0; type && r < sizeof recipes / sizeof *recipes; r++) known |= !strcmp(type, recipes[r]);
        if (!known) {
            fprintf(stderr, "fieldlm convert: --type for .tflite/.litertlm must be f32 (or none), fp16, dynamic_int8 or weight_only_int8 (got '%s')\n", type);
            return EXIT_USAGE;
        }
        opt.recipe = type;
        opt.ctx = (int)ctx;
        if (prefill) {
            if (!parse_prefill(prefill, prefill_v, &opt.n_prefill)) {
                fprintf(stderr, "fieldlm convert: --prefill takes up to 16 comma-separated lengths >= 1 (got '%s')\n", prefill);
                return EXIT_USAGE;
            }
            opt.prefill = prefill_v;
        }
        opt.warn = warn;
    }
    if (cli_adapter_hint(in, true, "convert")) return EXIT_FAIL;
    cli_lora_list lora;
    if (!cli_lora_parse(&ma, &lora, "convert")) return EXIT_FAIL;
    opt.lora = lora.adapters;
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
        fprintf(stderr, "fieldlm convert: %s\nfieldlm convert: no output written\n", flm_errmsg(NULL));
        return EXIT_FAIL;
    }
    if (litert) {
        fprintf(stderr, "convert: wrote %s (%s, %s, cache %d, %d signatures): %d weights, %.1f MB, %.1f s, peak RSS %.0f MB%s\n", out,
                opt.format == FLM_FORMAT_LITERTLM ? "litertlm" : "tflite", type ? type : "dynamic_int8", st.ctx, st.n_signatures,
                st.n_tensors, (double)st.bytes_written / 1e6, st.seconds, (double)st.peak_rss / 1e6, opt.n_lora ? ", LoRA merged" : "");
        if (st.no_tokenizer) fprintf(stderr, "convert: note: %s has no tokenizer files: the model runs on token ids only\n", in);
        return EXIT_OK;
    }
    fprintf(stderr, "convert: wrote %s (%s): %d tensors, %.1f MB, %.1f s, peak RSS %.0f MB%s\n", out,
            flm_type_name(opt.type), st.n_tensors, (double)st.bytes_written / 1e6, st.seconds, (double)st.peak_rss / 1e6,
            opt.n_lora ? ", LoRA merged" : "");
    if (st.no_tokenizer)
        fprintf(stderr, "convert: note: %s has no tokenizer files: the package runs on token ids only\n", in);
    if (st.n_fallback)
        fprintf(stderr, "convert: note: %d matri%s kept as f16 (rows not a multiple of 32)\n", st.n_fallback, st.n_fallback == 1 ? "x" : "ces");
    return EXIT_OK;
}
CLI_COMMAND(convert, "convert", "convert a Hugging Face checkpoint (+ LoRA) to a GGUF package", 40, cmd_convert)
