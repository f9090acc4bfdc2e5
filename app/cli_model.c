/* cli_model.c — opening a bare model (no tokenizer, no session) for the developer
 * commands (bench, verify, logits); see cli_dev.h. The parts of -m / --lora the
 * user-facing commands share are in cli_public.c. */
#include <stdio.h>

#include "cli_dev.h"
#include "base/common.h"
#include "package/source.h"

flm_model *cli_open_model(const cli_model_args *a, const char *cmd) {
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
