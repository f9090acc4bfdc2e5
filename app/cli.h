/* cli.h — shared declarations of the CLI: the subcommand table and helpers. */
#ifndef FLM_CLI_H
#define FLM_CLI_H
#include <stdbool.h>

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cmd_version(int argc, char **argv);

#endif
