/* main.c — the fieldlm CLI: dispatches to the subcommands that app/cmd_*.c register. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_COMMANDS 64
static const cli_command *g_cmds[MAX_COMMANDS];
static size_t g_ncmds;

void cli_register(const cli_command *cmd) {
    if (g_ncmds < MAX_COMMANDS) g_cmds[g_ncmds++] = cmd;
}

int cli_error(const char *cmd) {
    fprintf(stderr, "fieldlm %s: %s\n", cmd, flm_errmsg(NULL));
    return EXIT_FAIL;
}

bool cli_is(const char *arg, const char *a, const char *b) {
    return !strcmp(arg, a) || (b && !strcmp(arg, b));
}

const char *cli_value(int argc, char **argv, int *i, const char *cmd) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "fieldlm %s: option %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

bool cli_parse_int(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

int cli_parse_ids(const char *s, int **out, const char *cmd) {
    size_t cap = 16, n = 0;
    int *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7FFFFFFF) {
            fprintf(stderr, "fieldlm %s: bad token id list '%s' (expected e.g. 1,2,3)\n", cmd, s);
            free(ids);
            return -1;
        }
        if (n == cap) {
            int *t = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!t) { free(ids); return -1; }
            ids = t;
        }
        ids[n++] = (int)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            fprintf(stderr, "fieldlm %s: bad token id list '%s' (expected e.g. 1,2,3)\n", cmd, s);
            free(ids);
            return -1;
        }
    }
    if (n == 0) {
        fprintf(stderr, "fieldlm %s: empty token id list\n", cmd);
        free(ids);
        return -1;
    }
    *out = ids;
    return (int)n;
}

static int by_order(const void *a, const void *b) {
    const cli_command *x = *(const cli_command *const *)a, *y = *(const cli_command *const *)b;
    return x->order - y->order;
}

static void usage(FILE *f) {
    fprintf(f, "usage: fieldlm COMMAND [OPTIONS]\n\n"
               "Runs Qwen2 / Qwen2.5 models on the CPU from a Hugging Face folder or a .gguf package.\n\n"
               "commands:\n");
    for (size_t i = 0; i < g_ncmds; i++) fprintf(f, "  %-12s %s\n", g_cmds[i]->name, g_cmds[i]->summary);
    fprintf(f, "\n'fieldlm COMMAND --help' describes each command's options.\n");
}

static int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("fieldlm %s\n", FLM_VERSION);
    return EXIT_OK;
}
CLI_COMMAND(version, "version", "print the version", 1000, cmd_version)

int main(int argc, char **argv) {
    qsort(g_cmds, g_ncmds, sizeof *g_cmds, by_order);
    if (argc < 2) { usage(stderr); return EXIT_USAGE; }
    if (cli_is(argv[1], "--help", "-h") || !strcmp(argv[1], "help")) { usage(stdout); return EXIT_OK; }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < g_ncmds; i++)
        if (!strcmp(argv[1], g_cmds[i]->name)) return g_cmds[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "fieldlm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
