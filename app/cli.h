/* cli.h — shared declarations of the CLI. Each app/cmd_*.c registers its
 * subcommands with CLI_COMMAND; main.c lists them in `order`. Public-API only: it
 * includes nothing but fieldlm.h and system headers (the user-facing commands
 * include it; tools/check-layers.sh checks). What needs the library's internals
 * is in cli_dev.h, for the developer commands. */
#ifndef FLM_CLI_H
#define FLM_CLI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "fieldlm.h"

typedef struct {
    const char *name, *summary;
    int order; /* position in `fieldlm --help` */
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
} cli_command;

void cli_register(const cli_command *cmd);

#define CLI_COMMAND(ident, name_, summary_, order_, fn)                                  \
    __attribute__((constructor)) static void cli_register_##ident(void) {               \
        static const cli_command c = {name_, summary_, order_, fn};                     \
        cli_register(&c);                                                               \
    }

/* Exit codes used by every subcommand. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Prints "fieldlm CMD: <library error message>" (the calling thread's last one,
 * flm_errmsg(NULL)) to stderr and returns EXIT_FAIL. */
int cli_error(const char *cmd);
/* Returns true if argv[i] equals a or b (b may be NULL). */
bool cli_is(const char *arg, const char *a, const char *b);
/* Fetches the value of option argv[*i] (advancing *i); prints an error and returns
 * NULL when missing. */
const char *cli_value(int argc, char **argv, int *i, const char *cmd);
/* Parses a comma-separated list of integers; returns count or -1 (message printed). */
int cli_parse_ids(const char *s, int **out, const char *cmd);
bool cli_parse_double(const char *s, double *out);
bool cli_parse_int(const char *s, long *out);

/* Model selection shared by commands that take -m MODEL and --lora DIR[:SCALE]. */
#define CLI_MAX_LORA 8
typedef struct {
    const char *model;
    const char *lora[CLI_MAX_LORA];
    int n_lora;
    int weights; /* flm_weights_mode: --mmap / --no-mmap; 0 = auto */
} cli_model_args;

/* If argv[*i] is -m/--model, --lora, --mmap or --no-mmap, consumes it (and its value) and returns 1;
 * returns -1 on a usage error (message printed), 0 if not a model option. */
int cli_model_arg(cli_model_args *a, int argc, char **argv, int *i, const char *cmd);
/* The --lora specs split into folders and scales (flm_lora_spec_parse: only a
 * trailing ":number" is a scale); `adapters` is the same list for the public API. */
typedef struct {
    const char *dirs[CLI_MAX_LORA];
    float scales[CLI_MAX_LORA];
    flm_lora_adapter adapters[CLI_MAX_LORA];
    char *owned[CLI_MAX_LORA];
    int n;
} cli_lora_list;
/* Returns false (message printed) on a bad spec. Free with cli_lora_free. */
bool cli_lora_parse(const cli_model_args *a, cli_lora_list *l, const char *cmd);
void cli_lora_free(cli_lora_list *l);

/* When `model` is a folder with adapter_config.json and no config.json (a PEFT
 * adapter given as the model), prints what to give instead ("-m BASE --lora DIR"
 * when the command takes --lora, else "-m BASE"), naming the base model from
 * adapter_config.json, and returns true; otherwise prints nothing, false. */
bool cli_adapter_hint(const char *model, bool takes_lora, const char *cmd);
/* A bundled file or folder `rel` (e.g. "models/kcc-advisor"): `rel` from the
 * current directory if it exists, else DIR_OF_BINARY/../rel (via /proc/self/exe),
 * so the bundled model is found from any directory. Malloc'ed, or NULL. */
char *cli_find_bundled(const char *rel);
/* The same as a default option value: the path found, in static storage valid
 * until the next call, or `rel` itself when not found (errors then name it). */
const char *cli_bundled_or(const char *rel);
/* s[0..n) as a JSON string in quotes; with ensure_ascii every non-ASCII character
 * is escaped (\uXXXX, surrogate pairs above U+FFFF, as Python's json.dumps), else
 * it is kept; bytes that are not UTF-8 become \ufffd. Malloc'ed, or NULL when out
 * of memory. */
char *cli_json_quote(const char *s, size_t n, bool ensure_ascii);
/* Reads f to its end: malloc'ed, NUL-terminated (*len bytes before the NUL), or
 * NULL when out of memory; *read_error (may be NULL) is set when reading failed
 * (what was read is still returned). */
char *cli_read_all(FILE *f, size_t *len, bool *read_error);
#endif
