/* cmd_verify.c — `fieldlm verify`: compare against a transformers reference dump. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_dev.h"
#include "base/common.h"
#include "model/model.h"
#include "dev/verify.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm verify -m MODEL --reference FILE [--tol X | --report] [--json]\n"
            "                      [--lora DIR[:SCALE]]...\n\n"
            "Runs every case of a reference dump made with transformers (tools/make_reference.py)\n"
            "and reports, per case: max absolute logit error, mean KL divergence of the softmax,\n"
            "top-1 agreement over positions, and greedy-continuation agreement (compared token by\n"
            "token up to the first step whose reference top-1/top-2 margin is below %g).\n\n"
            "Exit status: 0 when every case passes, that is its max absolute logit error is at\n"
            "most --tol AND no greedy token differs before a near-tie; 1 when a case fails, or on\n"
            "an error (model or reference unreadable); 2 on a usage error. --tol bounds only the\n"
            "logit error: a greedy difference fails whatever --tol is (a quantized package can\n"
            "stay within any logit tolerance and still choose other words). To look at the\n"
            "numbers without a verdict (quantized packages, which are not exact) use --report:\n"
            "the same comparison is printed and the exit status is 0 whatever the numbers.\n\n"
            "  -m, --model MODEL     Hugging Face folder or .gguf package\n"
            "      --reference FILE  reference .safetensors (or a folder holding reference.safetensors);\n"
            "                        not the .json summary beside it, not a model\n"
            "      --tol X           max absolute logit error allowed (default %g)\n"
            "      --report          report only: print the comparison, exit 0 whatever it says\n"
            "      --json            print one JSON object instead of a table\n"
            "  -c, --ctx N           context length (default: enough for the longest case)\n"
            "      --lora DIR[:S]    merge a PEFT LoRA adapter at load (HF folders), scale S (default 1);\n"
            "                        the same adapter twice is refused (give DIR:2 for a double scale)\n"
            "      --mmap, --no-mmap run the weights from the file mapping / load them into memory\n"
            "                        (default: load when they take at most half of the free memory)\n"
            "  -h, --help            this help\n",
            FLM_VERIFY_NEAR_TIE, FLM_VERIFY_DEFAULT_TOL);
}

static void progress(void *ctx, int i, int n, const flm_verify_case *c) {
    (void)ctx;
    fprintf(stderr, "\rverify: case %d/%d %s", i + 1, n, c->pass ? "ok  " : "FAIL");
    if (i + 1 == n) fputc('\n', stderr);
}

static int cmd_verify(int argc, char **argv) {
    cli_model_args ma = {0};
    const char *ref = NULL;
    bool as_json = false, report = false;
    flm_verify_options opt = {.tol = FLM_VERIFY_DEFAULT_TOL};
    for (int i = 1; i < argc; i++) {
        int r = cli_model_arg(&ma, argc, argv, &i, "verify");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--reference")) { if (!(ref = cli_value(argc, argv, &i, "verify"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "--report")) report = true;
        else if (!strcmp(argv[i], "--tol")) {
            if (!(v = cli_value(argc, argv, &i, "verify"))) return EXIT_USAGE;
            if (!cli_parse_double(v, &opt.tol) || !(opt.tol >= 0)) { fprintf(stderr, "fieldlm verify: --tol needs a non-negative number\n"); return EXIT_USAGE; }
        } else if (cli_is(argv[i], "-c", "--ctx")) {
            long n;
            if (!(v = cli_value(argc, argv, &i, "verify"))) return EXIT_USAGE;
            if (!cli_parse_int(v, &n) || n <= 0 || n > 1 << 24) { fprintf(stderr, "fieldlm verify: --ctx needs a positive integer\n"); return EXIT_USAGE; }
            opt.n_ctx = (int)n;
        } else { fprintf(stderr, "fieldlm verify: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!ref) { fprintf(stderr, "fieldlm verify: --reference is required\n"); help(stderr); return EXIT_USAGE; }
    if (flm_verify_check_reference(ref)) return cli_error("verify"); /* before loading the model */
    flm_model *m = cli_open_model(&ma, "verify");
    if (!m) return EXIT_FAIL;
    if (!as_json && isatty(fileno(stderr))) opt.progress = progress;
    flm_verify_case *cs;
    int n;
    if (flm_verify_run(m, ref, &opt, &cs, &n)) { flm_model_close(m); return cli_error("verify"); }
    bool all = true;
    for (int i = 0; i < n; i++) all &= cs[i].pass;
    if (as_json) {
        printf("{\"model\": ");
        strbuf sb; flm_sb_init(&sb);
        flm_sb_json_string(&sb, ma.model, strlen(ma.model), false);
        flm_sb_puts(&sb, ", \"reference\": ");
        flm_sb_json_string(&sb, ref, strlen(ref), false);
        fputs(flm_sb_cstr(&sb), stdout);
        flm_sb_free(&sb);
        printf(", \"tol\": %g, \"report\": %s, \"pass\": %s, \"cases\": [", opt.tol, report ? "true" : "false",
               all ? "true" : "false");
        for (int i = 0; i < n; i++) {
            const flm_verify_case *c = &cs[i];
            printf("%s{\"case\": %d, \"n_input\": %d, \"full_logits\": %s, \"max_abs_err\": %.6g, \"mean_kl\": %.6g, "
                   "\"top1_agree\": %d, \"top1_rate\": %.6f, \"greedy_total\": %d, \"greedy_compared\": %d, "
                   "\"greedy_first_diff\": %d, \"near_tie_stop\": %s, \"pass\": %s}",
                   i ? ", " : "", i, c->n_input, c->full_logits ? "true" : "false", c->max_abs_err, c->mean_kl, c->top1_agree,
                   (double)c->top1_agree / c->n_input, c->greedy_total, c->greedy_compared, c->greedy_first_diff,
                   c->near_tie_stop ? "true" : "false", c->pass ? "true" : "false");
        }
        printf("]}\n");
    } else {
        printf("%-5s %6s %12s %12s %10s %16s  %s\n", "case", "tokens", "max|err|", "mean KL", "top-1", "greedy", "result");
        for (int i = 0; i < n; i++) {
            const flm_verify_case *c = &cs[i];
            char greedy[64];
            if (c->greedy_first_diff >= 0) snprintf(greedy, sizeof greedy, "differs at %d", c->greedy_first_diff);
            else snprintf(greedy, sizeof greedy, "%d/%d%s", c->greedy_compared, c->greedy_total, c->near_tie_stop ? " (tie)" : "");
            printf("%-5d %6d %12.3g %12.3g %9.1f%% %16s  %s\n", i, c->n_input, c->max_abs_err, c->mean_kl,
                   100.0 * c->top1_agree / c->n_input, greedy, c->pass ? "ok" : "FAIL");
        }
        if (report) {
            int passed = 0;
            for (int i = 0; i < n; i++) passed += cs[i].pass;
            printf("REPORT: %d of %d case%s within tolerance %g with greedy agreement (--report: exit status 0 "
                   "whatever the numbers)\n", passed, n, n == 1 ? "" : "s", opt.tol);
        } else {
            printf("%s: %d case%s, tolerance %g\n", all ? "PASS" : "FAIL", n, n == 1 ? "" : "s", opt.tol);
        }
    }
    free(cs);
    flm_model_close(m);
    return all || report ? EXIT_OK : EXIT_FAIL;
}
CLI_COMMAND(verify, "verify", "check a model against a transformers reference dump", 70, cmd_verify)
