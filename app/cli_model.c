/* cli_model.c — -m MODEL / --lora DIR[:SCALE] handling shared by subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "lora.h"
#include "model.h"

int cli_model_arg(cli_model_args *a, int argc, char **argv, int *i, const char *cmd) {
    if (cli_is(argv[*i], "-m", "--model")) {
        const char *v = cli_value(argc, argv, i, cmd);
        if (!v) return -1;
        a->model = v;
        return 1;
    }
    if (!strcmp(argv[*i], "--mmap") || !strcmp(argv[*i], "--no-mmap")) {
        a->weights = argv[*i][2] == 'm' ? FLM_WEIGHTS_MAP : FLM_WEIGHTS_LOAD;
        return 1;
    }
    if (!strcmp(argv[*i], "--lora")) {
        const char *v = cli_value(argc, argv, i, cmd);
        if (!v) return -1;
        if (a->n_lora == CLI_MAX_LORA) {
            fprintf(stderr, "fieldlm %s: at most %d --lora adapters\n", cmd, CLI_MAX_LORA);
            return -1;
        }
        a->lora[a->n_lora++] = v;
        return 1;
    }
    return 0;
}

bool cli_lora_parse(const cli_model_args *a, cli_lora_list *l, const char *cmd) {
    memset(l, 0, sizeof *l);
    for (int i = 0; i < a->n_lora; i++) {
        if (flm_lora_parse_spec(a->lora[i], &l->owned[i], &l->scales[i]) != FLM_OK) {
            cli_error(cmd);
            cli_lora_free(l);
            return false;
        }
        l->dirs[i] = l->owned[i];
        l->n = i + 1;
    }
    return true;
}

void cli_lora_free(cli_lora_list *l) {
    for (int i = 0; i < CLI_MAX_LORA; i++) free(l->owned[i]);
    memset(l, 0, sizeof *l);
}

struct flm_model *cli_open_model(const cli_model_args *a, const char *cmd) {
    if (!a->model) {
        fprintf(stderr, "fieldlm %s: no model given (use -m MODEL: a Hugging Face folder or a .gguf package)\n", cmd);
        return NULL;
    }
    cli_lora_list l;
    if (!cli_lora_parse(a, &l, cmd)) return NULL;
    flm_model_options opt = {.lora_dirs = l.dirs, .lora_scales = l.scales, .n_lora = l.n, .weights = (flm_weights_mode)a->weights};
    flm_model *m = NULL;
    int rc = flm_model_open(a->model, &opt, &m);
    cli_lora_free(&l);
    if (rc) { cli_error(cmd); return NULL; }
    return m;
}
