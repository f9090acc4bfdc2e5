/* cli_model.c — -m MODEL / --lora DIR[:SCALE] handling shared by subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "model.h"

int cli_model_arg(cli_model_args *a, int argc, char **argv, int *i, const char *cmd) {
    if (cli_is(argv[*i], "-m", "--model")) {
        const char *v = cli_value(argc, argv, i, cmd);
        if (!v) return -1;
        a->model = v;
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

/* Splits "DIR[:SCALE]": only a trailing ":number" is a scale, so paths with ':' work. */
static char *split_lora(const char *spec, float *scale) {
    *scale = 1.0f;
    const char *colon = strrchr(spec, ':');
    if (colon && colon[1]) {
        double v;
        if (cli_parse_double(colon + 1, &v)) {
            *scale = (float)v;
            return flm_strndup(spec, (size_t)(colon - spec));
        }
    }
    return flm_strdup(spec);
}

struct flm_model *cli_open_model(const cli_model_args *a, const char *cmd) {
    if (!a->model) {
        fprintf(stderr, "fieldlm %s: no model given (use -m MODEL: a Hugging Face folder or a .gguf package)\n", cmd);
        return NULL;
    }
    const char *dirs[CLI_MAX_LORA];
    float scales[CLI_MAX_LORA];
    char *owned[CLI_MAX_LORA] = {0};
    for (int i = 0; i < a->n_lora; i++) {
        owned[i] = split_lora(a->lora[i], &scales[i]);
        dirs[i] = owned[i] ? owned[i] : a->lora[i];
    }
    flm_model_options opt = {.lora_dirs = dirs, .lora_scales = scales, .n_lora = a->n_lora};
    flm_model *m = NULL;
    int rc = flm_model_open(a->model, &opt, &m);
    for (int i = 0; i < a->n_lora; i++) free(owned[i]);
    if (rc) { cli_error(cmd); return NULL; }
    return m;
}
