/* cmd_synth.c — `fieldlm synth`: a Hugging Face folder with random bf16 weights of an
 * exact Qwen2.5 shape, for benchmarks and memory tests. Written one tensor at a time.
 * It never replaces a real model by accident: a folder that holds model files is
 * refused unless --force, every file goes through src/base/outfile.h (never onto the
 * tokenizer files it copies from; temp + rename), and a failed or interrupted run
 * removes what it created. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "base/common.h"
#include "model/model.h"
#include "base/outfile.h"
#include "format/safetensors.h"

static volatile sig_atomic_t g_cancel;
static void on_signal(int sig) { (void)sig; g_cancel = 1; }

typedef struct {
    const char *name;
    int hidden, inter, layers, heads, kv_heads, vocab, max_pos;
    double theta;
    int tied;
} synth_preset;

/* Shapes from the models' own config.json files on Hugging Face. */
static const synth_preset PRESETS[] = {
    {"qwen2.5-1.5b", 1536, 8960, 28, 12, 2, 151936, 32768, 1000000.0, 1},
    {"qwen2.5-0.5b", 896, 4864, 24, 14, 2, 151936, 32768, 1000000.0, 1},
    {"tiny", 32, 96, 2, 2, 1, 151936, 32768, 1000000.0, 1},
};

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm synth --preset NAME -o DIR [--seed N] [--tokenizer DIR] [--force]\n\n"
            "Writes a Hugging Face folder (config.json, generation_config.json, model.safetensors,\n"
            "tokenizer files) with random bf16 weights of the preset's exact shape.\n\n"
            "Refused before anything is written: a folder that already holds model files\n"
            "(config.json, *.safetensors, *.gguf, *.json, merges.txt, ...) unless --force, since\n"
            "synth would replace a real model with random weights; an -o that exists and is not a\n"
            "folder; and, even with --force, writing over the --tokenizer files it copies from.\n"
            "Each file is written to a temporary file and renamed; on an error or Ctrl-C the\n"
            "files this run created are removed.\n\n"
            "  --preset NAME     qwen2.5-1.5b (3.1 GB), qwen2.5-0.5b (1.0 GB) or tiny\n"
            "  -o, --output DIR  output folder (created if missing)\n"
            "  --force           write into a folder that already holds model files, replacing\n"
            "                    them (without it, such a folder is refused)\n"
            "  --seed N          random seed (default 1)\n"
            "  --tokenizer DIR   where to copy the tokenizer and generation config from\n"
            "                    (default: the bundled models/kcc-advisor, the real Qwen2.5\n"
            "                    tokenizer, from the current directory or beside the binary)\n"
            "  -h, --help        this help\n");
}

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
/* Approximately standard normal: the sum of four 16-bit uniforms, centred and scaled. */
static float rng_normal(uint64_t *s) {
    uint64_t r = rng_next(s);
    double sum = (double)(r & 0xFFFF) + (double)((r >> 16) & 0xFFFF) + (double)((r >> 32) & 0xFFFF) + (double)(r >> 48);
    return (float)((sum / 65535.0 - 2.0) / sqrt(4.0 / 12.0));
}

/* Writes one whole file through the output-file discipline (temp + rename). */
static int write_file(const char *path, const void *data, size_t n) {
    flm_outfile of;
    int rc = flm_outfile_open(path, &of);
    if (!rc && (rc = flm_outfile_write(&of, data, n))) flm_outfile_abort(&of);
    if (!rc) rc = flm_outfile_commit(&of);
    return rc;
}

static int write_config(const char *dir, const synth_preset *p) {
    char *path = flm_path_join(dir, "config.json");
    if (!path) return FLM_ERR_NOMEM;
    strbuf f;
    flm_sb_init(&f);
    flm_sb_printf(&f,
            "{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"model_type\": \"qwen2\",\n  \"hidden_act\": \"silu\",\n"
            "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"rope_theta\": %.1f,\n"
            "  \"rms_norm_eps\": 1e-06,\n  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": 151643,\n  \"eos_token_id\": 151645,\n"
            "  \"torch_dtype\": \"bfloat16\",\n  \"use_sliding_window\": false,\n  \"fieldlm_synthetic\": true\n}\n",
            p->hidden, p->inter, p->layers, p->heads, p->kv_heads, p->vocab, p->max_pos, p->theta, p->tied ? "true" : "false");
    int rc = f.oom ? FLM_ERR_NOMEM : write_file(path, f.data, f.len);
    flm_sb_free(&f);
    free(path);
    return rc;
}

static int write_weights(const char *dir, const synth_preset *p, uint64_t seed) {
    flm_config c = {.vocab_size = p->vocab, .hidden_size = p->hidden, .intermediate_size = p->inter, .n_layers = p->layers,
                    .n_heads = p->heads, .n_kv_heads = p->kv_heads, .head_dim = p->hidden / p->heads};
    char *path = flm_path_join(dir, "model.safetensors");
    flm_st_writer *w;
    int rc = path ? flm_st_writer_open(path, &w) : FLM_ERR_NOMEM;
    free(path);
    if (rc) return rc;
    int64_t emb[2] = {p->vocab, p->hidden}, norm[1] = {p->hidden};
    rc = flm_st_writer_declare(w, "model.embed_tokens.weight", FLM_BF16, 2, emb);
    for (int l = 0; l < p->layers && !rc; l++)
        for (int k = 0; k < W_LAYER_COUNT && !rc; k++) {
            char name[128];
            int64_t shape[FLM_MAX_DIMS];
            int nd = flm_layer_weight_shape(&c, (flm_layer_weight)k, shape);
            flm_hf_layer_name(l, (flm_layer_weight)k, name, sizeof name);
            rc = flm_st_writer_declare(w, name, FLM_BF16, nd, shape);
        }
    if (!rc) rc = flm_st_writer_declare(w, "model.norm.weight", FLM_BF16, 1, norm);
    if (!p->tied && !rc) rc = flm_st_writer_declare(w, "lm_head.weight", FLM_BF16, 2, emb);
    if (!rc) rc = flm_st_writer_begin_data(w);
    /* data in declaration order, in 1 MiB pieces */
    enum { PIECE = 1 << 19 };
    uint16_t *buf = flm_malloc(PIECE * sizeof(uint16_t));
    if (!buf) rc = FLM_ERR_NOMEM;
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    int n_tensors = 1 + p->layers * W_LAYER_COUNT + 1 + !p->tied;
    for (int ti = 0; ti < n_tensors && !rc; ti++) {
        bool is_norm = false;
        uint64_t numel;
        if (ti == 0 || (ti == n_tensors - 1 && !p->tied)) numel = (uint64_t)p->vocab * (uint64_t)p->hidden;
        else if (ti == 1 + p->layers * W_LAYER_COUNT) { numel = (uint64_t)p->hidden; is_norm = true; }
        else {
            int k = (ti - 1) % W_LAYER_COUNT;
            int64_t shape[FLM_MAX_DIMS];
            int nd = flm_layer_weight_shape(&c, (flm_layer_weight)k, shape);
            numel = 1;
            for (int d = 0; d < nd; d++) numel *= (uint64_t)shape[d];
            is_norm = k == W_ATTN_NORM || k == W_FFN_NORM;
        }
        for (uint64_t done = 0; done < numel && !rc;) {
            size_t n = numel - done < PIECE ? (size_t)(numel - done) : PIECE;
            for (size_t i = 0; i < n; i++) {
                float v = is_norm ? 1.0f + 0.1f * rng_normal(&s) : 0.02f * rng_normal(&s);
                buf[i] = flm_f32_to_bf16(v);
            }
            rc = flm_st_writer_write(w, buf, n * sizeof(uint16_t));
            done += n;
            if (!rc && g_cancel) rc = flm_fail(FLM_ERR_CANCELLED, "interrupted");
        }
        if (isatty(fileno(stderr))) fprintf(stderr, "\rsynth: tensor %d/%d", ti + 1, n_tensors);
    }
    if (isatty(fileno(stderr))) fputc('\n', stderr);
    free(buf);
    if (rc) { flm_st_writer_abort(w); return rc; }
    return flm_st_writer_finish(w);
}

/* The model files in dir ("config.json, model.safetensors, ..."), appended to sb; their count. */
static int model_files_in(const char *dir, strbuf *sb) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!flm_outfile_is_model_file(e->d_name)) continue;
        if (n < 4) flm_sb_printf(sb, "%s%s", n ? ", " : "", e->d_name);
        else if (n == 4) flm_sb_puts(sb, ", ...");
        n++;
    }
    closedir(d);
    return n;
}

enum { N_TOKENIZER_FILES = 5, N_OUT_FILES = N_TOKENIZER_FILES + 2 };
/* What synth writes: the tokenizer files copied from --tokenizer, then its own two. */
static const char *const OUT_FILES[N_OUT_FILES] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                                   "generation_config.json", "config.json", "model.safetensors"};

static int synth_write(const char *out, const char *tok, const synth_preset *p, uint64_t seed, bool force) {
    /* everything is checked and read before the first byte is written */
    struct stat st;
    bool existed = stat(out, &st) == 0;
    if (existed && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "fieldlm synth: %s exists and is not a folder\n", out);
        return EXIT_FAIL;
    }
    strbuf found;
    flm_sb_init(&found);
    int n_found = existed ? model_files_in(out, &found) : 0;
    if (n_found && !force) {
        fprintf(stderr, "fieldlm synth: %s already holds model files (%s); synth would replace them with random weights. "
                "Choose a new or empty folder, or pass --force to replace them\n", out, flm_sb_cstr(&found));
        flm_sb_free(&found);
        return EXIT_FAIL;
    }
    flm_sb_free(&found);
    char *data[N_TOKENIZER_FILES] = {0}, *paths[N_OUT_FILES] = {0};
    size_t len[N_TOKENIZER_FILES] = {0};
    bool created[N_OUT_FILES] = {0}, made_dir = false;
    int rc = FLM_OK, exit_code = EXIT_FAIL;
    for (int i = 0; i < N_TOKENIZER_FILES && !rc; i++) {
        char *from = flm_path_join(tok, OUT_FILES[i]);
        rc = from ? flm_read_file(from, &data[i], &len[i]) : FLM_ERR_NOMEM;
        free(from);
        if (rc) {
            fprintf(stderr, "fieldlm synth: copying the tokenizer (--tokenizer %s): %s\n", tok, flm_last_error());
            goto done;
        }
    }
    for (int i = 0; i < N_OUT_FILES && !rc; i++) {
        if (!(paths[i] = flm_path_join(out, OUT_FILES[i]))) rc = FLM_ERR_NOMEM;
        else if (existed) rc = flm_outfile_check(paths[i], &tok, 1); /* never onto the files copied from */
        created[i] = !rc && lstat(paths[i], &st) != 0;
    }
    if (rc) { cli_error("synth"); goto done; }
    if (!existed) {
        if (mkdir(out, 0755) != 0) { fprintf(stderr, "fieldlm synth: %s: %s\n", out, strerror(errno)); goto done; }
        made_dir = true;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN); /* past the file size limit: an EFBIG error, not a silent kill */
    double t0 = flm_now_seconds();
    for (int i = 0; i < N_TOKENIZER_FILES && !rc; i++) rc = write_file(paths[i], data[i], len[i]);
    if (!rc) rc = write_config(out, p);
    if (!rc) rc = write_weights(out, p, seed);
    if (rc) {
        cli_error("synth");
        /* leave no half-made model: remove what this run created */
        for (int i = 0; i < N_OUT_FILES; i++)
            if (created[i]) unlink(paths[i]);
        if (made_dir) rmdir(out);
        goto done;
    }
    fprintf(stderr, "synth: wrote %s (%s, seed %llu) in %.1f s\n", out, p->name, (unsigned long long)seed, flm_now_seconds() - t0);
    exit_code = EXIT_OK;
done:
    for (int i = 0; i < N_TOKENIZER_FILES; i++) free(data[i]);
    for (int i = 0; i < N_OUT_FILES; i++) free(paths[i]);
    return exit_code;
}

static int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *tok = cli_bundled_or("models/kcc-advisor");
    long seed = 1;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--preset")) { if (!(preset = cli_value(argc, argv, &i, "synth"))) return EXIT_USAGE; }
        else if (cli_is(argv[i], "-o", "--output")) { if (!(out = cli_value(argc, argv, &i, "synth"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--tokenizer")) { if (!(tok = cli_value(argc, argv, &i, "synth"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--force")) force = true;
        else if (!strcmp(argv[i], "--seed")) {
            if (!(v = cli_value(argc, argv, &i, "synth"))) return EXIT_USAGE;
            if (!cli_parse_int(v, &seed) || seed < 0) { fprintf(stderr, "fieldlm synth: --seed needs a non-negative integer\n"); return EXIT_USAGE; }
        } else { fprintf(stderr, "fieldlm synth: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!preset || !out) { fprintf(stderr, "fieldlm synth: --preset and -o are required\n"); help(stderr); return EXIT_USAGE; }
    const synth_preset *p = NULL;
    for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++)
        if (!strcmp(PRESETS[i].name, preset)) p = &PRESETS[i];
    if (!p) { fprintf(stderr, "fieldlm synth: unknown preset '%s' (qwen2.5-1.5b, qwen2.5-0.5b, tiny)\n", preset); return EXIT_USAGE; }
    return synth_write(out, tok, p, (uint64_t)seed, force);
}
CLI_COMMAND(synth, "synth", "write a random-weight Hugging Face folder of a real Qwen2.5 shape", 90, cmd_synth)
