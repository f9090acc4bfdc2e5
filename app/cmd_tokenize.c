/* cmd_tokenize.c — `fieldlm tokenize` (UTF-8 text on stdin -> token ids) and
 * `fieldlm detokenize` (ids -> text on stdout, exactly, no newline added). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void tokenize_help(FILE *f) {
    fprintf(f,
            "usage: fieldlm tokenize -m MODEL [--json] [--split-special] [--no-added] < text\n\n"
            "Reads UTF-8 text on standard input (all of it, newlines included) and prints its\n"
            "token ids as tokenizer.encode(text, add_special_tokens=False) does in transformers.\n\n"
            "options:\n"
            "  -m, --model MODEL   a Hugging Face model folder (tokenizer.json, or vocab.json +\n"
            "                      merges.txt), a tokenizer.json file, or a .gguf package\n"
            "  --json              print one JSON array, e.g. [9707,1879]\n"
            "                      (default: the ids on one line separated by spaces)\n"
            "  --split-special     treat special tokens (<|im_start|> ...) in the text as plain\n"
            "                      text; non-special added tokens are still recognised\n"
            "                      (llama.cpp's parse_special=false)\n"
            "  --no-added          recognise no added token at all in the text\n"
            "  -h, --help          show this help\n\n"
            "Exit status: 0 on success, 1 on an error (missing model, bad files, input that is\n"
            "not UTF-8), 2 on a usage error.\n");
}

static void detokenize_help(FILE *f) {
    fprintf(f,
            "usage: fieldlm detokenize -m MODEL --ids ID,ID,...\n\n"
            "Prints the text of the token ids exactly (no newline is added), as\n"
            "tokenizer.decode(ids) does in transformers: added tokens give their content and\n"
            "bytes that do not form valid UTF-8 become U+FFFD.\n\n"
            "options:\n"
            "  -m, --model MODEL   a Hugging Face model folder, a tokenizer.json file or a .gguf package\n"
            "  --ids LIST          comma-separated token ids, e.g. 9707,1879\n"
            "  -h, --help          show this help\n\n"
            "Exit status: 0 on success, 1 on an error (missing model, id out of range), 2 on a\n"
            "usage error.\n");
}

/* Opens the tokenizer of model; prints the error (and the adapter hint) on failure. */
static flm_handle *open_tokenizer(const char *model, const char *cmd) {
    flm_open_options o = {.what = FLM_OPEN_TOKENIZER};
    flm_handle *h = NULL;
    if (flm_open(model, &o, &h)) {
        cli_error(cmd);
        cli_adapter_hint(model, false, cmd);
        return NULL;
    }
    return h;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool as_json = false;
    int flags = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) { tokenize_help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-m", "--model")) { if (!(model = cli_value(argc, argv, &i, "tokenize"))) return EXIT_USAGE; }
        else if (cli_is(argv[i], "--json", NULL)) as_json = true;
        else if (cli_is(argv[i], "--split-special", NULL)) flags |= FLM_TOKENIZE_SPECIAL_AS_TEXT;
        else if (cli_is(argv[i], "--no-added", NULL)) flags |= FLM_TOKENIZE_NO_ADDED;
        else {
            fprintf(stderr, "fieldlm tokenize: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!model) {
        fprintf(stderr, "fieldlm tokenize: -m MODEL is required (see --help)\n");
        return EXIT_USAGE;
    }
    flm_handle *h = open_tokenizer(model, "tokenize");
    if (!h) return EXIT_FAIL;
    size_t len = 0;
    bool read_error = false;
    char *text = cli_read_all(stdin, &len, &read_error);
    if (!text || read_error) {
        free(text);
        flm_close(h);
        fprintf(stderr, "fieldlm tokenize: could not read standard input\n");
        return EXIT_FAIL;
    }
    /* Byte-level BPE gives at most one token per byte, unless normalization grows
     * the text: then FLM_ERR_BUFFER says how many, and a second call fits. */
    size_t n = len + 16;
    int32_t *ids = malloc(n * sizeof *ids);
    int rc = ids ? flm_tokenize(h, text, len, flags, ids, n, &n) : FLM_ERR_NOMEM;
    if (rc == FLM_ERR_BUFFER) {
        free(ids);
        if (!(ids = malloc(n * sizeof *ids))) rc = FLM_ERR_NOMEM;
        else rc = flm_tokenize(h, text, len, flags, ids, n, &n);
    }
    free(text);
    flm_close(h);
    if (rc && !ids) { fprintf(stderr, "fieldlm tokenize: out of memory\n"); return EXIT_FAIL; }
    if (rc) { free(ids); return cli_error("tokenize"); }
    /* the widest line: n ids of 11 characters and a separator, brackets, newline */
    size_t cap = n * 12 + 4, k = 0;
    char *line = malloc(cap);
    if (!line) { free(ids); fprintf(stderr, "fieldlm tokenize: could not write the output\n"); return EXIT_FAIL; }
    if (as_json) line[k++] = '[';
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(line + k, cap - k, i ? (as_json ? ",%d" : " %d") : "%d", (int)ids[i]);
    if (as_json) line[k++] = ']';
    line[k++] = '\n';
    free(ids);
    bool ok = fwrite(line, 1, k, stdout) == k && fflush(stdout) == 0;
    free(line);
    if (!ok) { fprintf(stderr, "fieldlm tokenize: could not write the output\n"); return EXIT_FAIL; }
    return EXIT_OK;
}

static int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *list = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) { detokenize_help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-m", "--model")) { if (!(model = cli_value(argc, argv, &i, "detokenize"))) return EXIT_USAGE; }
        else if (cli_is(argv[i], "--ids", NULL)) { if (!(list = cli_value(argc, argv, &i, "detokenize"))) return EXIT_USAGE; }
        else {
            fprintf(stderr, "fieldlm detokenize: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!model || !list) {
        fprintf(stderr, "fieldlm detokenize: -m MODEL and --ids LIST are required (see --help)\n");
        return EXIT_USAGE;
    }
    int *ids = NULL;
    int n = cli_parse_ids(list, &ids, "detokenize");
    if (n < 0) return EXIT_USAGE;
    flm_handle *h = open_tokenizer(model, "detokenize");
    if (!h) { free(ids); return EXIT_FAIL; }
    int32_t *ids32 = malloc((size_t)n * sizeof *ids32);
    if (!ids32) { free(ids); flm_close(h); fprintf(stderr, "fieldlm detokenize: out of memory\n"); return EXIT_FAIL; }
    for (int i = 0; i < n; i++) ids32[i] = ids[i];
    free(ids);
    char *text = NULL;
    size_t len = 0;
    int rc = flm_detokenize(h, ids32, (size_t)n, &text, &len);
    free(ids32);
    flm_close(h);
    if (rc) return cli_error("detokenize");
    bool ok = fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0;
    flm_free(text);
    if (!ok) { fprintf(stderr, "fieldlm detokenize: could not write the output\n"); return EXIT_FAIL; }
    return EXIT_OK;
}

CLI_COMMAND(tokenize, "tokenize", "print the token ids of UTF-8 text read on stdin", 30, cmd_tokenize)
CLI_COMMAND(detokenize, "detokenize", "print the text of a list of token ids", 31, cmd_detokenize)
