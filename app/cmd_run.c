/* cmd_run.c — `fieldlm run`: one prompt → chat template → generation, streamed to
 * stdout (or one JSON object with --json), timings on stderr. Also owns what `run`
 * and `chat` share (cmd_run.h): generation options, the bundled-model default,
 * opening a session, the timings line. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cmd_run.h"

/* ---- shared options ---- */

void gen_cli_init(gen_cli_args *g) {
    memset(g, 0, sizeof *g);
    flm_gen_settings_init(&g->set);
    g->set.stop = g->stop;
}

void gen_cli_free(gen_cli_args *g) {
    free(g->model_owned);
    g->model_owned = NULL;
}

static int bad_value(const char *cmd, const char *opt, const char *what) {
    fprintf(stderr, "fieldlm %s: %s needs %s\n", cmd, opt, what);
    return -1;
}

int gen_cli_arg(gen_cli_args *g, int argc, char **argv, int *i, const char *cmd) {
    int r = cli_model_arg(&g->ma, argc, argv, i, cmd);
    if (r) return r;
    const char *opt = argv[*i], *v;
    double d;
    long n;
    if (!strcmp(opt, "--greedy")) { g->greedy = true; return 1; }
    static const char *const with_value[] = {"-n", "--max-new-tokens", "--temp", "--top-k", "--top-p", "--min-p",
                                             "--repeat-penalty", "--seed", "-c", "--ctx", "-t", "--threads",
                                             "--system", "--stop"};
    bool known = false;
    for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(opt, with_value[k]);
    if (!known) return 0;
    if (!(v = cli_value(argc, argv, i, cmd))) return -1;
    if (cli_is(opt, "-n", "--max-new-tokens")) {
        if (!cli_parse_int(v, &n) || n <= 0 || n > INT_MAX) return bad_value(cmd, opt, "a positive integer");
        g->set.max_new_tokens = n;
    } else if (!strcmp(opt, "--temp")) {
        if (!cli_parse_double(v, &d) || !(d >= 0) || d > 1e6) return bad_value(cmd, opt, "a number >= 0");
        g->set.temperature = d;
    } else if (!strcmp(opt, "--top-k")) {
        if (!cli_parse_int(v, &n) || n < 0 || n > INT_MAX) return bad_value(cmd, opt, "an integer >= 0");
        g->set.top_k = (int)n;
    } else if (!strcmp(opt, "--top-p")) {
        if (!cli_parse_double(v, &d) || !(d >= 0 && d <= 1)) return bad_value(cmd, opt, "a number in [0, 1]");
        g->set.top_p = d;
    } else if (!strcmp(opt, "--min-p")) {
        if (!cli_parse_double(v, &d) || !(d >= 0 && d <= 1)) return bad_value(cmd, opt, "a number in [0, 1]");
        g->set.min_p = d;
    } else if (!strcmp(opt, "--repeat-penalty")) {
        if (!cli_parse_double(v, &d) || !(d > 0) || d > 1e6) return bad_value(cmd, opt, "a number > 0");
        g->set.repetition_penalty = d;
    } else if (!strcmp(opt, "--seed")) {
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (end == v || *end || v[0] == '-') return bad_value(cmd, opt, "a non-negative integer");
        g->set.seed = s;
        g->have_seed = true;
    } else if (cli_is(opt, "-c", "--ctx")) {
        if (!cli_parse_int(v, &n) || n <= 0 || n > INT_MAX) return bad_value(cmd, opt, "a positive integer");
        g->set.n_ctx = (int)n;
    } else if (cli_is(opt, "-t", "--threads")) {
        if (!cli_parse_int(v, &n) || n <= 0 || n > 1024) return bad_value(cmd, opt, "a positive integer");
        g->set.n_threads = (int)n;
    } else if (!strcmp(opt, "--system")) {
        g->system = v;
    } else if (!strcmp(opt, "--stop")) {
        if (!v[0]) return bad_value(cmd, opt, "a non-empty string");
        if (g->set.n_stop == GEN_CLI_MAX_STOP) return bad_value(cmd, opt, "at most 16 strings in all");
        g->stop[g->set.n_stop++] = v;
    }
    return 1;
}

void gen_cli_help(FILE *f) {
    fprintf(f,
            "  -m, --model MODEL       Hugging Face folder or .gguf package. Default: the bundled model,\n"
            "                          models/kcc-advisor-q8_0.gguf if it exists, else models/kcc-advisor,\n"
            "                          looked up in the current directory, then in ../models/ next to\n"
            "                          the fieldlm binary. A LoRA adapter folder is not a model: it is\n"
            "                          refused, naming the base model to give with --lora\n"
            "      --lora DIR[:S]      merge a PEFT LoRA adapter folder at load, scale S (default 1);\n"
            "                          repeatable. The same adapter twice (even by another path) is\n"
            "                          refused: give it once, DIR:2 for a doubled scale\n"
            "      --mmap              run the weights in place from the file (instant start)\n"
            "      --no-mmap           load the weights into memory at start (steadier decode;\n"
            "                          the default when they take at most half of the free memory)\n"
            "  -n, --max-new-tokens N  stop after N new tokens (default: max_new_tokens of the model's\n"
            "                          generation_config.json, else %d)\n"
            "      --temp X            temperature (0 = greedy)\n"
            "      --top-k N           keep the N most likely tokens (0 = off)\n"
            "      --top-p X           nucleus sampling threshold in [0, 1] (1 = off)\n"
            "      --min-p X           drop tokens below X times the top probability (0 = off)\n"
            "      --repeat-penalty X  transformers' repetition penalty over prompt + output (1 = off)\n"
            "                          The five above default to generation_config.json, else\n"
            "                          transformers' defaults (temperature 1, top-k 50, top-p 1, min-p\n"
            "                          off, penalty 1); sampling is on when its do_sample is true.\n"
            "      --greedy            always take the most likely token (no sampling, and no\n"
            "                          repetition penalty unless --repeat-penalty is given)\n"
            "      --seed N            sampling seed (default: random, printed with the timings)\n"
            "  -c, --ctx N             context length in tokens: prompt + output (default\n"
            "                          min(4096, max_position_embeddings); at most max_position_embeddings)\n"
            "  -t, --threads N         threads for the forward pass (default: physical cores)\n"
            "      --system TEXT       system message (default: none, so the template's own default\n"
            "                          system prompt applies, as in transformers)\n"
            "      --stop STR          also stop when the text contains STR (not printed); repeatable.\n"
            "                          Generation always stops at every eos id of generation_config.json\n"
            "                          and the tokenizer (Qwen2.5: <|im_end|> and <|endoftext|>)\n",
            FLM_DEFAULT_MAX_NEW_TOKENS);
}

/* The bundled model: the q8_0 package if present, else the HF folder; each looked
 * up from the current directory, then beside the binary. Malloc'ed or NULL. */
static char *bundled_model(void) {
    char *p = cli_find_bundled("models/kcc-advisor-q8_0.gguf");
    return p ? p : cli_find_bundled("models/kcc-advisor");
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

flm_handle *gen_cli_open(gen_cli_args *g, const char *cmd) {
    if (!g->ma.model) {
        if (!(g->model_owned = bundled_model())) {
            fprintf(stderr, "fieldlm %s: no -m MODEL given and the bundled model (models/kcc-advisor-q8_0.gguf "
                            "or models/kcc-advisor) was not found\n", cmd);
            return NULL;
        }
        g->ma.model = g->model_owned;
    }
    if (cli_adapter_hint(g->ma.model, true, cmd)) return NULL;
    cli_lora_list l;
    if (!cli_lora_parse(&g->ma, &l, cmd)) return NULL;
    flm_open_options o = {.lora = l.adapters, .n_lora = l.n, .weights = (flm_weights_mode)g->ma.weights};
    flm_handle *h = NULL;
    double t0 = now_seconds();
    int rc = flm_open(g->ma.model, &o, &h);
    g->load_s = now_seconds() - t0;
    cli_lora_free(&l);
    if (rc) { cli_error(cmd); return NULL; }
    flm_info info;
    if (flm_model_info(h, &info) == FLM_OK && info.warning) fprintf(stderr, "fieldlm %s: warning: %s\n", cmd, info.warning);
    return h;
}

flm_session *gen_cli_new_session(gen_cli_args *g, flm_handle *h, const char *cmd) {
    flm_gen_settings set = g->set;
    set.seed = g->have_seed ? g->set.seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (g->greedy) { /* argmax, and no repetition penalty unless one is given */
        set.do_sample = 0;
        if (flm_is_unset(set.repetition_penalty)) set.repetition_penalty = 1.0;
    }
    flm_session *s = NULL;
    if (flm_session_new(h, &set, &s)) { cli_error(cmd); return NULL; }
    flm_gen_settings eff;
    if (flm_session_settings(s, &eff) == FLM_OK && eff.do_sample && !(eff.temperature == 0))
        fprintf(stderr, "fieldlm %s: sampling: temperature %g, top-k %d, top-p %g, min-p %g, repetition penalty %g, "
                        "seed %llu\n", cmd, eff.temperature, eff.top_k, eff.top_p, eff.min_p,
                eff.repetition_penalty, (unsigned long long)eff.seed);
    return s;
}

typedef struct {
    const flm_message *msgs;
    const char *cmd;
} dropped_ctx;

static void on_dropped(void *user, size_t index, const char *role) {
    const dropped_ctx *d = user;
    (void)role;
    fprintf(stderr, "fieldlm %s: warning: the %s message is not in the prompt: the model's chat template leaves "
                    "it out (as transformers does)\n", d->cmd, d->msgs[index].role);
}

void gen_cli_warn_dropped(flm_handle *h, const flm_message *msgs, size_t n, const char *cmd) {
    if (n == 0) return;
    dropped_ctx d = {msgs, cmd};
    flm_render_check(h, msgs, n, 1, on_dropped, &d, NULL); /* a render failure: the run reports it */
}

void gen_cli_print_load(FILE *f, const gen_cli_args *g, const flm_handle *h) {
    flm_info info;
    uint64_t loaded = flm_model_info(h, &info) == FLM_OK ? info.weights_in_memory : 0;
    fprintf(f, "model loaded in %.2f s (", g->load_s);
    if (loaded) fprintf(f, "weights in memory, %.0f MiB)", (double)loaded / 1048576.0);
    else fprintf(f, "weights mapped from the file)");
}

void gen_cli_print_timings(FILE *f, const flm_result *r) {
    const flm_timings *t = &r->timings;
    fprintf(f, "prompt %d tokens", t->prompt_tokens);
    if (t->reused_tokens) fprintf(f, " (%d cached)", t->reused_tokens);
    fprintf(f, ", prefill %.3f s (%.1f tok/s); generated %d tokens, %.1f tok/s; first token %.3f s; stop: %s\n",
            t->prefill_s, t->prefill_tok_s, t->generated_tokens, t->decode_tok_s, t->ttft_s,
            flm_stop_reason_str(r->stop_reason));
}

/* ---- run ---- */

/* Ctrl-C: the answer stops where it is (what was printed stays), the timings are
 * printed, "stopped" is said and the exit status is 130 (128 + SIGINT), as shells
 * expect of an interrupted command. */
#define EXIT_INTERRUPTED 130
static flm_session *volatile g_running;
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
    flm_session *s = g_running;
    if (s) flm_cancel(s);
    else _exit(EXIT_INTERRUPTED);
}

int gen_cli_stream_stdout(void *user, const char *piece, size_t len, int32_t token) {
    (void)user; (void)token;
    if (len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm run [-m MODEL] -p PROMPT [OPTIONS]\n\n"
            "Generates an answer to PROMPT as transformers' generate() does with the model's own\n"
            "generation_config.json: the prompt becomes the user message of the chat template\n"
            "(add_generation_prompt), the text is streamed to stdout as it is generated, and the\n"
            "timings go to stderr. A --system message that the chat template leaves out of the\n"
            "prompt is named in a warning on stderr.\n\n"
            "Exit status: 0 when the answer ended (eos, a stop string, -n, the context); 130 when\n"
            "stopped by Ctrl-C (SIGINT: the text printed so far stays, with --json the partial\n"
            "result is printed with stop_reason \"cancelled\", and \"stopped\" is said on stderr);\n"
            "1 on an error (e.g. a prompt longer than the context, an adapter given twice);\n"
            "2 on a usage error. -m given a LoRA adapter folder is refused with the base model\n"
            "to use instead (-m BASE --lora DIR).\n\n"
            "  -p, --prompt TEXT       the user message; '-' reads it from stdin\n"
            "      --raw               use the prompt text as is (no chat template; special tokens\n"
            "                          written in it are recognised)\n"
            "      --json              print one JSON object instead of streaming: prompt_ids, ids\n"
            "                          (generated, stop token excluded), text, stop_reason\n"
            "                          (eos|length|context|stop_string|cancelled), stop_token, timings\n");
    gen_cli_help(f);
    fprintf(f, "  -h, --help              this help\n");
}

static void json_ids(const int32_t *ids, int n) {
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    putchar(']');
}

static void print_json(const flm_result *r) {
    const flm_timings *t = &r->timings;
    char *text = cli_json_quote(r->text, r->text_len, false);
    if (!text) { fprintf(stderr, "fieldlm run: out of memory\n"); return; }
    fputs("{\"prompt_ids\": ", stdout);
    json_ids(r->prompt_ids, r->n_prompt_ids);
    fputs(", \"ids\": ", stdout);
    json_ids(r->ids, r->n_ids);
    printf(", \"text\": %s, \"stop_reason\": \"%s\", \"stop_token\": ", text, flm_stop_reason_str(r->stop_reason));
    free(text);
    if (r->stop_token >= 0) printf("%d", r->stop_token);
    else fputs("null", stdout);
    printf(", \"timings\": {\"prompt_tokens\": %d, \"reused_tokens\": %d, \"prefill_s\": %.6f, "
           "\"prefill_tok_s\": %.3f, \"generated_tokens\": %d, \"decode_s\": %.6f, \"decode_tok_s\": %.3f, "
           "\"ttft_s\": %.6f}}\n",
           t->prompt_tokens, t->reused_tokens, t->prefill_s, t->prefill_tok_s, t->generated_tokens, t->decode_s,
           t->decode_tok_s, t->ttft_s);
}

static int cmd_run(int argc, char **argv) {
    gen_cli_args g;
    gen_cli_init(&g);
    const char *prompt_arg = NULL;
    bool raw = false, as_json = false;
    for (int i = 1; i < argc; i++) {
        int r = gen_cli_arg(&g, argc, argv, &i, "run");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-p", "--prompt")) { if (!(prompt_arg = cli_value(argc, argv, &i, "run"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--raw")) raw = true;
        else if (!strcmp(argv[i], "--json")) as_json = true;
        else { fprintf(stderr, "fieldlm run: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!prompt_arg) { fprintf(stderr, "fieldlm run: -p PROMPT is required\n"); help(stderr); return EXIT_USAGE; }
    if (raw && g.system) { fprintf(stderr, "fieldlm run: --system has no effect with --raw\n"); return EXIT_USAGE; }
    char *prompt = !strcmp(prompt_arg, "-") ? cli_read_all(stdin, NULL, NULL) : strdup(prompt_arg);
    if (!prompt) { fprintf(stderr, "fieldlm run: cannot read the prompt\n"); return EXIT_FAIL; }
    int status = EXIT_FAIL;
    flm_handle *h = gen_cli_open(&g, "run");
    flm_session *s = h ? gen_cli_new_session(&g, h, "run") : NULL;
    if (!s) goto done;
    flm_message msgs[2] = {{"system", g.system}, {"user", prompt}};
    size_t first = g.system ? 0 : 1;
    if (!raw) gen_cli_warn_dropped(h, msgs + first, 2 - first, "run");
    g_running = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    flm_result res;
    int rc;
    if (raw) {
        rc = flm_generate_text(s, prompt, as_json ? NULL : gen_cli_stream_stdout, NULL, &res);
    } else {
        rc = flm_generate(s, msgs + first, 2 - first, as_json ? NULL : gen_cli_stream_stdout, NULL, &res);
    }
    g_running = NULL;
    if (rc) { cli_error("run"); goto done; }
    if (as_json) print_json(&res);
    else {
        if (res.text_len && res.text[res.text_len - 1] != '\n') putchar('\n');
        fflush(stdout);
    }
    gen_cli_print_load(stderr, &g, h);
    fputs("; ", stderr);
    gen_cli_print_timings(stderr, &res);
    status = EXIT_OK;
    if (g_interrupted || res.stop_reason == FLM_STOP_CANCELLED) {
        fprintf(stderr, "fieldlm run: stopped (Ctrl-C)\n");
        status = EXIT_INTERRUPTED;
    }
done:
    flm_session_free(s);
    flm_close(h);
    free(prompt);
    gen_cli_free(&g);
    return status;
}
CLI_COMMAND(run, "run", "generate an answer to one prompt (chat template, streaming, timings)", 10, cmd_run)
