/* cmd_tokenize.c — `fieldlm tokenize` (UTF-8 text on stdin -> token ids) and
 * `fieldlm detokenize` (ids -> text on stdout, exactly, no newline added). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/common.h"
#include "text/tokenizer.h"
#include "package/source.h"

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

static char *read_stdin(size_t *len) {
    strbuf sb;
    flm_sb_init(&sb);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) flm_sb_append(&sb, buf, n);
    if (sb.oom || ferror(stdin)) { flm_sb_free(&sb); return NULL; }
    *len = sb.len;
    char *s = flm_sb_take(&sb);
    return s ? s : calloc(1, 1);
}

static int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool as_json = false;
    int flags = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) { tokenize_help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-m", "--model")) { if (!(model = cli_value(argc, argv, &i, "tokenize"))) return EXIT_USAGE; }
        else if (cli_is(argv[i], "--json", NULL)) as_json = true;
        else if (cli_is(argv[i], "--split-special", NULL)) flags |= FLM_ENCODE_SPECIAL_AS_TEXT;
        else if (cli_is(argv[i], "--no-added", NULL)) flags |= FLM_ENCODE_NO_ADDED;
        else {
            fprintf(stderr, "fieldlm tokenize: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!model) {
        fprintf(stderr, "fieldlm tokenize: -m MODEL is required (see --help)\n");
        return EXIT_USAGE;
    }
    flm_tokenizer *tok;
    if (flm_load_tokenizer(model, &tok)) {
        cli_error("tokenize");
        cli_adapter_hint(model, false, "tokenize");
        return EXIT_FAIL;
    }
    size_t len = 0;
    char *text = read_stdin(&len);
    if (!text) {
        flm_tokenizer_free(tok);
        fprintf(stderr, "fieldlm tokenize: could not read standard input\n");
        return EXIT_FAIL;
    }
    int32_t *ids;
    size_t n;
    int rc = flm_tokenizer_encode_ex(tok, text, len, flags, &ids, &n);
    free(text);
    flm_tokenizer_free(tok);
    if (rc) return cli_error("tokenize");
    strbuf sb;
    flm_sb_init(&sb);
    if (as_json) flm_sb_putc(&sb, '[');
    for (size_t i = 0; i < n; i++) flm_sb_printf(&sb, i ? (as_json ? ",%d" : " %d") : "%d", (int)ids[i]);
    if (as_json) flm_sb_putc(&sb, ']');
    flm_sb_putc(&sb, '\n');
    free(ids);
    bool ok = !sb.oom && fwrite(sb.data, 1, sb.len, stdout) == sb.len && fflush(stdout) == 0;
    flm_sb_free(&sb);
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
    flm_tokenizer *tok;
    if (flm_load_tokenizer(model, &tok)) {
        free(ids);
        cli_error("detokenize");
        cli_adapter_hint(model, false, "detokenize");
        return EXIT_FAIL;
    }
    int32_t *ids32 = malloc((size_t)n * sizeof *ids32);
    if (!ids32) { free(ids); flm_tokenizer_free(tok); fprintf(stderr, "fieldlm detokenize: out of memory\n"); return EXIT_FAIL; }
    for (int i = 0; i < n; i++) ids32[i] = ids[i];
    free(ids);
    strbuf sb;
    flm_sb_init(&sb);
    int rc = flm_tokenizer_decode(tok, ids32, (size_t)n, &sb);
    free(ids32);
    flm_tokenizer_free(tok);
    if (rc) { flm_sb_free(&sb); return cli_error("detokenize"); }
    bool ok = fwrite(sb.data ? sb.data : "", 1, sb.len, stdout) == sb.len && fflush(stdout) == 0;
    flm_sb_free(&sb);
    if (!ok) { fprintf(stderr, "fieldlm detokenize: could not write the output\n"); return EXIT_FAIL; }
    return EXIT_OK;
}

CLI_COMMAND(tokenize, "tokenize", "print the token ids of UTF-8 text read on stdin", 30, cmd_tokenize)
CLI_COMMAND(detokenize, "detokenize", "print the text of a list of token ids", 31, cmd_detokenize)
