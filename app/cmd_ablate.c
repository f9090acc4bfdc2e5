/* cmd_ablate.c — `fieldlm ablate`: which LiteRT-LM behaviour changes the text, and how
 * much (src/dev/ablate.c; docs/FIDELITY.md, "Which suspect causes which symptom"). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_dev.h"
#include "base/common.h"
#include "base/outfile.h"
#include "dev/ablate.h"
#include "runtime/session.h"

#define DEFAULT_MAX_TOKENS 48
#define DEFAULT_CONVERSATIONS 4
#define DEFAULT_TURNS 20

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm ablate [-m MODEL] [--lora DIR[:S]]... --questions FILE.jsonl [-n N] [--json]\n"
            "                      [--max-tokens N] [--seed N] [--turns N] [--conversations N] [--variants LIST] [-t N] [-o FILE]\n"
            "                      [--answers FILE]\n\n"
            "Answers the questions with fieldlm's faithful configuration (the baseline, equal to\n"
            "transformers: the model's chat template, generation_config.json's sampler with seed S+i for\n"
            "question i, every eos id a stop) and then with one LiteRT-LM behaviour at a time:\n"
            "  greedy_default          LiteRT-LM's sampler without sampler_params: TOP_P k=1 (argmax), no penalty\n"
            "  no_repetition_penalty   the baseline's sampler with repetition_penalty 1.0\n"
            "  stop_endoftext_only     only <|endoftext|> stops (generation runs past <|im_end|>)\n"
            "  affix_template          LiteRT-LM's prompt without a Jinja template: affixes, role `model`,\n"
            "                          no default system prompt\n"
            "  kv_cap_1280             --conversations conversations of --turns consecutive questions (the\n"
            "                          earlier questions and the uncapped answers as history) against a capacity\n"
            "                          of 1280 tokens: a longer prompt is refused, decoding stops at the\n"
            "                          capacity; compared with the same conversations uncapped\n"
            "  dynamic_int8            LiteRT's dynamic_int8 numerics, emulated (int8 weights per channel,\n"
            "                          inputs quantized per row to asymmetric int8)\n"
            "  litert_defaults         all of them together, on the single questions\n"
            "and prints, per variant: repetition rate (answers with a 4-token n-gram seen 3 times), loop\n"
            "rate (answers ending in a repeating cycle), distinct-2, runaway rate (past <|im_end|>, or cut\n"
            "mid-sentence by the token limit or the capacity), answers identical to the baseline's, mean\n"
            "KL of the next-token distribution teacher-forced along the baseline's answers, mean answer\n"
            "length in tokens, prompts refused. docs/FIDELITY.md defines each.\n\n"
            "  -m, --model MODEL     Hugging Face folder or .gguf package (default: the bundled kcc-advisor)\n"
            "      --lora DIR[:S]    merge a PEFT LoRA adapter at load, scale S (default 1); repeatable\n"
            "      --questions FILE  JSONL, one {\"messages\": [{\"role\": ..., \"content\": ...}]} per line, the\n"
            "                        last message the user's (required)\n"
            "  -n N                  the first N questions (default: all; more than the file has is an error)\n"
            "      --max-tokens N    new tokens per answer at most (default %d)\n"
            "      --seed N          question i samples with seed N+i (default 0)\n"
            "      --turns N         kv_cap_1280: questions per conversation (default %d)\n"
            "      --conversations N kv_cap_1280: conversations, over the first N x turns questions (default %d;\n"
            "                        0: all the questions)\n"
            "      --variants LIST   comma-separated names to run (the baseline always runs; default: all)\n"
            "  -t, --threads N       forward-pass threads (default: physical cores)\n"
            "      --json            print one JSON object instead of the table\n"
            "  -o, --output FILE     write the report (table or JSON) to FILE (atomically) instead of stdout\n"
            "      --answers FILE    also write every answer as JSONL (variant, question, ids, text, stop),\n"
            "                        atomically\n"
            "      --mmap, --no-mmap run the weights from the file mapping / load them into memory\n"
            "  -h, --help            this help\n\n"
            "Progress goes to stderr. Exit status: 0 done, 1 error (unreadable model or questions file),\n"
            "2 usage.\n",
            DEFAULT_MAX_TOKENS, DEFAULT_TURNS, DEFAULT_CONVERSATIONS);
}

static bool g_tty;

static void progress(void *ctx, const char *phase, int done, int total, double seconds) {
    (void)ctx;
    if (g_tty) {
        fprintf(stderr, "\rablate: %s %d/%d (%.0f s)   ", phase, done, total, seconds);
        if (done == total) fputc('\n', stderr);
    } else if (total <= 10 || done == total || (done * 10 / total) != ((done - 1) * 10 / total)) {
        fprintf(stderr, "ablate: %s %d/%d (%.0f s)\n", phase, done, total, seconds);
    }
}

static int write_answer(void *ctx, int variant, int question, const int32_t *ids, int n, const char *text, size_t len,
                        const char *stop) {
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_printf(&sb, "{\"variant\": \"%s\", \"question\": %d, \"stop\": \"%s\", \"ids\": [", flm_ablate_names[variant], question, stop);
    for (int i = 0; i < n; i++) flm_sb_printf(&sb, i ? ", %d" : "%d", ids[i]);
    flm_sb_puts(&sb, "], \"text\": ");
    flm_sb_json_string(&sb, text, len, false);
    flm_sb_puts(&sb, "}\n");
    int rc = sb.oom ? FLM_ERR_NOMEM : flm_outfile_write(ctx, sb.data, sb.len);
    flm_sb_free(&sb);
    return rc;
}

static bool parse_variants(const char *s, unsigned *out) {
    *out = 0;
    char *copy = strdup(s);
    if (!copy) return false;
    bool ok = true;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int v = 0;
        while (v < FLM_ABL_N && strcmp(tok, flm_ablate_names[v])) v++;
        if (v == FLM_ABL_N) {
            fprintf(stderr, "fieldlm ablate: unknown variant '%s' (known:", tok);
            for (int k = 0; k < FLM_ABL_N; k++) fprintf(stderr, " %s", flm_ablate_names[k]);
            fprintf(stderr, ")\n");
            ok = false;
            break;
        }
        *out |= 1u << v;
    }
    free(copy);
    return ok && *out;
}

static bool int_opt(int argc, char **argv, int *i, long lo, long hi, long *out) {
    const char *v = cli_value(argc, argv, i, "ablate");
    if (!v) return false;
    if (!cli_parse_int(v, out) || *out < lo || *out > hi) {
        fprintf(stderr, "fieldlm ablate: %s needs an integer from %ld to %ld (got '%s')\n", argv[*i - 1], lo, hi, v);
        return false;
    }
    return true;
}

static int cmd_ablate(int argc, char **argv) {
    cli_model_args ma = {0};
    const char *questions = NULL, *outp = NULL, *answers = NULL;
    bool as_json = false;
    long n = 0, max_tokens = DEFAULT_MAX_TOKENS, seed = 0, turns = DEFAULT_TURNS, threads = 0, convs = DEFAULT_CONVERSATIONS;
    unsigned variants = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_arg(&ma, argc, argv, &i, "ablate");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--questions")) { if (!(questions = cli_value(argc, argv, &i, "ablate"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "-n")) { if (!int_opt(argc, argv, &i, 1, 1000000, &n)) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--max-tokens")) { if (!int_opt(argc, argv, &i, 1, 8192, &max_tokens)) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--seed")) { if (!int_opt(argc, argv, &i, 0, 0x7fffffffL, &seed)) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--conversations")) { if (!int_opt(argc, argv, &i, 0, 100000, &convs)) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--turns")) { if (!int_opt(argc, argv, &i, 1, 1000, &turns)) return EXIT_USAGE; }
        else if (cli_is(argv[i], "-t", "--threads")) { if (!int_opt(argc, argv, &i, 1, 1024, &threads)) return EXIT_USAGE; }
        else if (cli_is(argv[i], "-o", "--output")) { if (!(outp = cli_value(argc, argv, &i, "ablate"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--answers")) { if (!(answers = cli_value(argc, argv, &i, "ablate"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--variants")) {
            if (!(v = cli_value(argc, argv, &i, "ablate"))) return EXIT_USAGE;
            if (!parse_variants(v, &variants)) return EXIT_USAGE;
        } else { fprintf(stderr, "fieldlm ablate: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!questions) { fprintf(stderr, "fieldlm ablate: --questions FILE.jsonl is required\n"); help(stderr); return EXIT_USAGE; }
    if (!ma.model) ma.model = cli_bundled_or("models/kcc-advisor");
    if (cli_adapter_hint(ma.model, true, "ablate")) return EXIT_USAGE;
    cli_lora_list lora;
    if (!cli_lora_parse(&ma, &lora, "ablate")) return EXIT_FAIL;
    const char *inputs[2 + CLI_MAX_LORA] = {ma.model, questions};
    for (int i = 0; i < lora.n; i++) inputs[2 + i] = lora.dirs[i];
    if ((outp && flm_outfile_check(outp, inputs, 2 + (size_t)lora.n)) || (answers && flm_outfile_check(answers, inputs, 2 + (size_t)lora.n))) {
        cli_lora_free(&lora);
        return cli_error("ablate");
    }
    /* the questions before the model: a bad file is reported at once */
    flm_ablate_questions qs;
    if (flm_ablate_questions_load(questions, (int)n, &qs)) { cli_lora_free(&lora); return cli_error("ablate"); }
    flm_model_options mopt = {.lora_dirs = lora.dirs, .lora_scales = lora.scales, .n_lora = lora.n, .weights = (flm_weights_mode)ma.weights};
    flm_assets *a = NULL;
    int rc = EXIT_FAIL;
    flm_outfile af = {.fd = -1};
    bool af_open = false;
    signal(SIGXFSZ, SIG_IGN); /* past the file size limit: an EFBIG error, not a silent kill */
    if (flm_assets_open(ma.model, &mopt, &a)) { cli_error("ablate"); goto done; }
    if (a->warning) fprintf(stderr, "fieldlm ablate: warning: %s\n", a->warning);
    g_tty = isatty(fileno(stderr));
    flm_ablate_options o = {.max_tokens = (int)max_tokens, .seed = (uint64_t)seed, .n_threads = (int)threads, .kv_cap = 1280,
                            .turns = (int)turns, .conversations = (int)convs, .variants = variants, .progress = progress};
    fprintf(stderr, "ablate: %d questions, at most %ld new tokens each, model %s%s\n", qs.n, max_tokens, ma.model, lora.n ? " + LoRA" : "");
    if (answers) {
        if (flm_outfile_open(answers, &af)) { cli_error("ablate"); goto done; }
        af_open = true;
        o.answer = write_answer;
        o.answer_ctx = &af;
    }
    flm_ablate_report rep;
    if (flm_ablate_run(a, &qs, &o, &rep)) { cli_error("ablate"); goto done; }
    if (af_open) {
        af_open = false;
        if (flm_outfile_commit(&af)) { cli_error("ablate"); goto done; }
    }
    strbuf sb;
    flm_sb_init(&sb);
    if (as_json) flm_ablate_report_json(&rep, ma.model, lora.dirs, lora.n, questions, &sb);
    else flm_ablate_report_table(&rep, &sb);
    if (sb.oom) { flm_sb_free(&sb); fprintf(stderr, "fieldlm ablate: out of memory\n"); goto done; }
    if (outp) {
        flm_outfile of;
        if (flm_outfile_open(outp, &of)) { flm_sb_free(&sb); cli_error("ablate"); goto done; }
        if (flm_outfile_write(&of, sb.data, sb.len)) { flm_outfile_abort(&of); flm_sb_free(&sb); cli_error("ablate"); goto done; }
        if (flm_outfile_commit(&of)) { flm_sb_free(&sb); cli_error("ablate"); goto done; }
        fprintf(stderr, "ablate: report written to %s\n", outp);
    } else {
        fwrite(sb.data, 1, sb.len, stdout);
    }
    flm_sb_free(&sb);
    rc = EXIT_OK;
done:
    if (af_open) flm_outfile_abort(&af);
    flm_assets_close(a);
    flm_ablate_questions_free(&qs);
    cli_lora_free(&lora);
    return rc;
}
CLI_COMMAND(ablate, "ablate", "measure which LiteRT-LM behaviour changes the answers, and how much", 75, cmd_ablate)
