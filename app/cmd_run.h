/* cmd_run.h — what `run` and `chat` share (defined in cmd_run.c): the generation
 * options, the bundled-model default, opening the model and a session, timings.
 * Public API only (fieldlm.h). */
#ifndef FLM_CMD_RUN_H
#define FLM_CMD_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "fieldlm.h"

#define GEN_CLI_MAX_STOP 16

typedef struct {
    cli_model_args ma;
    flm_gen_settings set;     /* what the options give; FLM_UNSET_* elsewhere */
    bool greedy;
    bool have_seed;
    const char *system;       /* --system */
    const char *stop[GEN_CLI_MAX_STOP];
    char *model_owned;        /* the resolved bundled model path, when -m was not given */
    double load_s;            /* time gen_cli_open took */
} gen_cli_args;

void gen_cli_init(gen_cli_args *g);
void gen_cli_free(gen_cli_args *g);
/* Consumes one generation option at argv[*i]: 1 consumed, 0 not ours, -1 usage error (printed). */
int gen_cli_arg(gen_cli_args *g, int argc, char **argv, int *i, const char *cmd);
/* The help text of those options. */
void gen_cli_help(FILE *f);
/* Opens -m (or the bundled model) with its adapters and prints the model's warning,
 * if any; prints the error and returns NULL on failure. */
flm_handle *gen_cli_open(gen_cli_args *g, const char *cmd);
/* Creates a session with the options (greedy, seed: given or random) and prints the
 * sampling settings when it samples; prints errors. */
flm_session *gen_cli_new_session(gen_cli_args *g, flm_handle *h, const char *cmd);
/* Warns on stderr about each message the chat template leaves out of the prompt
 * (one whose removal leaves the rendered prompt unchanged), e.g. a system message
 * under a template that has none. Prints nothing when rendering fails. */
void gen_cli_warn_dropped(flm_handle *h, const flm_message *msgs, size_t n, const char *cmd);
/* Token callback that writes each piece to stdout at once (flushes). */
int gen_cli_stream_stdout(void *user, const char *piece, size_t len, int32_t token);
/* "model loaded in X s (weights in memory, N MiB)" or "(weights mapped from the file)", no newline */
void gen_cli_print_load(FILE *f, const gen_cli_args *g, const flm_handle *h);
/* "prompt N tokens (R cached), prefill ... tok/s; N generated, ... tok/s; first token ... s; stop: X" */
void gen_cli_print_timings(FILE *f, const flm_result *r);

#endif
