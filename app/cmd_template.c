/* cmd_template.c — `fieldlm template`: renders a model's own chat template for a
 * messages file and prints the prompt exactly, as transformers'
 * apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm template -m MODEL --messages FILE.json [--tools FILE.json]\n"
            "                        [--no-generation-prompt] [--template NAME]\n\n"
            "Renders the model's chat template (chat_template.jinja, or \"chat_template\" in\n"
            "tokenizer_config.json, or a package's tokenizer.chat_template) and prints the prompt\n"
            "exactly, with no newline added, as "
            "transformers' apply_chat_template(..., tokenize=False) does.\n\n"
            "options:\n"
            "  -m, --model MODEL          a Hugging Face model folder or a .gguf package (not a LoRA\n"
            "                             adapter folder: its template is the base model's)\n"
            "      --messages FILE        a JSON array of message objects ({\"role\", \"content\", ...});\n"
            "                             '-' reads standard input\n"
            "      --tools FILE           a JSON array of tool schemas, passed as `tools`\n"
            "                             (selects the \"tool_use\" template when the model has one)\n"
            "      --no-generation-prompt render with add_generation_prompt=false (default true)\n"
            "      --template NAME        use the named template instead of the default choice\n"
            "  -h, --help                 show this help\n\n"
            "A message the template leaves out of the prompt (Qwen2's drops roles other than\n"
            "system, user, assistant and tool) is named in a warning on stderr; the prompt stays\n"
            "exactly as transformers renders it.\n"
            "Exit status: 0 on success (warnings included); 1 on an error (missing or bad files, messages that are\n"
            "not an array of objects, template errors, which name their line); 2 on a usage error.\n");
}

/* A file's text, or standard input's for "-"; prints the error and returns NULL on failure. */
static char *read_text(const char *path, size_t *len) {
    if (!strcmp(path, "-")) {
        char *t = cli_read_all(stdin, len, NULL);
        if (!t) fprintf(stderr, "fieldlm template: out of memory reading standard input\n");
        return t;
    }
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "fieldlm template: %s: %s\n", path, strerror(errno)); return NULL; }
    bool err = false;
    char *t = cli_read_all(f, len, &err);
    fclose(f);
    if (!t) fprintf(stderr, "fieldlm template: out of memory\n");
    else if (err) { fprintf(stderr, "fieldlm template: %s: read error\n", path); free(t); t = NULL; }
    return t;
}

/* Messages the template drops. transformers' Qwen2 template, for one, skips any
 * message whose role is not system, user, assistant or tool, without a word. The
 * prompt stays exactly as transformers renders it; this only warns on stderr
 * (flm_render_json finds them: flm_render_check in fieldlm.h says how). */
static void on_dropped(void *user, size_t index, const char *role) {
    (void)user;
    char *q = role ? cli_json_quote(role, strlen(role), true) : NULL; /* the role comes from the user's file */
    fprintf(stderr, "fieldlm template: warning: message %zu (role %s) is not in the prompt: the chat template leaves "
                    "it out (as transformers does); use a role the template renders (for Qwen2: system, user, "
                    "assistant, tool)\n", index, role ? (q ? q : "?") : "missing");
    free(q);
}

static int cmd_template(int argc, char **argv) {
    const char *model = NULL, *msgs_path = NULL, *tools_path = NULL, *name = NULL;
    bool gen_prompt = true;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (cli_is(argv[i], "-m", "--model")) { if (!(model = cli_value(argc, argv, &i, "template"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--messages")) { if (!(msgs_path = cli_value(argc, argv, &i, "template"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--tools")) { if (!(tools_path = cli_value(argc, argv, &i, "template"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--template")) { if (!(name = cli_value(argc, argv, &i, "template"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--no-generation-prompt")) gen_prompt = false;
        else { fprintf(stderr, "fieldlm template: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!model || !msgs_path) {
        fprintf(stderr, "fieldlm template: -m MODEL and --messages FILE are required\n");
        help(stderr);
        return EXIT_USAGE;
    }
    if (tools_path && !strcmp(tools_path, "-") && !strcmp(msgs_path, "-")) {
        fprintf(stderr, "fieldlm template: only one of --messages and --tools can read standard input\n");
        return EXIT_USAGE;
    }
    int rc = EXIT_FAIL;
    flm_handle *h = NULL;
    char *msgs = NULL, *tools = NULL, *out = NULL;
    size_t msgs_len = 0, tools_len = 0, out_len = 0, unchecked = 0;
    if (!(msgs = read_text(msgs_path, &msgs_len)) || (tools_path && !(tools = read_text(tools_path, &tools_len)))) {
        cli_adapter_hint(model, false, "template");
        goto done;
    }
    flm_open_options oo = {.what = FLM_OPEN_TEMPLATE};
    if (flm_open(model, &oo, &h)) goto fail;
    flm_render_options ro = {
        .add_generation_prompt = gen_prompt,
        .tools_json = tools,
        .tools_len = tools_len,
        .template_name = name,
        .messages_name = strcmp(msgs_path, "-") ? msgs_path : "<stdin>",
        .tools_name = tools_path && strcmp(tools_path, "-") ? tools_path : "<stdin>",
        .dropped = on_dropped,
        .n_unchecked = &unchecked,
    };
    if (flm_render_json(h, msgs, msgs_len, &ro, &out, &out_len)) goto fail;
    if (unchecked)
        fprintf(stderr, "fieldlm template: warning: %zu messages whose text is not in the prompt were not checked "
                        "(after %d checks); some may be left out by the template\n", unchecked, 256);
    if (out_len && fwrite(out, 1, out_len, stdout) != out_len) {
        fprintf(stderr, "fieldlm template: writing the output failed\n");
        goto done;
    }
    if (fflush(stdout) != 0) { fprintf(stderr, "fieldlm template: writing the output failed\n"); goto done; }
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_error("template");
    cli_adapter_hint(model, false, "template");
done:
    flm_free(out);
    flm_close(h);
    free(msgs);
    free(tools);
    return rc;
}
CLI_COMMAND(template, "template", "render the model's chat template for a messages file", 32, cmd_template)
