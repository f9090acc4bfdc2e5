/* cli_model.c — -m MODEL / --lora DIR[:SCALE] handling shared by subcommands:
 * parsing, opening, the hint for an adapter folder given as a model, and finding
 * the bundled files (models/...) from the current directory or beside the binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "base/common.h"
#include "model/lora.h"
#include "model/model.h"
#include "package/source.h"

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

/* Directory of the running binary + "/../" + rel, or NULL. */
static char *beside_binary(const char *rel) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    size_t len = strlen(exe) + strlen(rel) + 8;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s/../%s", exe, rel);
    return p;
}

char *cli_find_bundled(const char *rel) {
    if (flm_file_exists(rel) || flm_is_dir(rel)) return flm_strdup(rel);
    char *p = beside_binary(rel);
    if (p && (flm_file_exists(p) || flm_is_dir(p))) return p;
    free(p);
    return NULL;
}

const char *cli_bundled_or(const char *rel) {
    static char found[4096];
    char *p = cli_find_bundled(rel);
    if (!p || strlen(p) >= sizeof found) { free(p); return rel; }
    strcpy(found, p);
    free(p);
    return found;
}

bool cli_adapter_hint(const char *model, bool takes_lora, const char *cmd) {
    char *cfg = model && flm_is_dir(model) ? flm_path_join(model, "config.json") : NULL;
    bool has_config = cfg && flm_file_exists(cfg);
    free(cfg);
    char *base = NULL;
    if (!model || has_config || !flm_lora_is_adapter_dir(model, &base)) return false;
    if (takes_lora)
        fprintf(stderr, "fieldlm %s: %s is a LoRA adapter folder (adapter_config.json), not a model: give the base model "
                        "and the adapter, %s --lora %s", cmd, model,
                !strcmp(cmd, "convert") ? "BASE_MODEL" : "-m BASE_MODEL", model);
    else
        fprintf(stderr, "fieldlm %s: %s is a LoRA adapter folder (adapter_config.json), not a model: give its base model, "
                        "-m BASE_MODEL (an adapter leaves the tokenizer and chat template as they are)", cmd, model);
    if (base) fprintf(stderr, "; adapter_config.json names the base: %s", base);
    fputc('\n', stderr);
    free(base);
    return true;
}

struct flm_model *cli_open_model(const cli_model_args *a, const char *cmd) {
    if (!a->model) {
        fprintf(stderr, "fieldlm %s: no model given (use -m MODEL: a Hugging Face folder or a .gguf package)\n", cmd);
        return NULL;
    }
    if (cli_adapter_hint(a->model, true, cmd)) return NULL;
    cli_lora_list l;
    if (!cli_lora_parse(a, &l, cmd)) return NULL;
    flm_model_options opt = {.lora_dirs = l.dirs, .lora_scales = l.scales, .n_lora = l.n, .weights = (flm_weights_mode)a->weights};
    flm_model *m = NULL;
    int rc = flm_load_model(a->model, &opt, &m);
    cli_lora_free(&l);
    if (rc) { cli_error(cmd); return NULL; }
    return m;
}
