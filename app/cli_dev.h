/* cli_dev.h — what the developer commands (inspect, bench, verify, logits, synth)
 * share beyond cli.h and that needs the library's internal headers. The user-facing
 * commands never include it. */
#ifndef FLM_CLI_DEV_H
#define FLM_CLI_DEV_H

#include "cli.h"
#include "model/model.h"

/* Opens the model with its adapters; prints the error and returns NULL on failure
 * (an adapter folder given as MODEL gets cli_adapter_hint's message). */
flm_model *cli_open_model(const cli_model_args *a, const char *cmd);

#endif
