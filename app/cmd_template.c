/* cmd_template.c — `fieldlm template`: renders a model's own chat template for a
 * messages file and prints the prompt exactly, as transformers'
 * apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "json.h"
#include "template.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm template -m MODEL --messages FILE.json [--tools FILE.json]\n"
            "                        [--no-generation-prompt] [--template NAME]\n\n"
            "Renders the model's chat template (chat_template.jinja, or \"chat_template\" in\n"
            "tokenizer_config.json, or a package's tokenizer.chat_template) and prints the prompt\n"
            "exactly, with no newline added, as "
            "transformers' apply_chat_template(..., tokenize=False) does.\n\n"
            "options:\n"
            "  -m, --model MODEL          a Hugging Face model folder or a .gguf package\n"
            "      --messages FILE        a JSON array of message objects ({\"role\", \"content\", ...});\n"
            "                             '-' reads standard input\n"
            "      --tools FILE           a JSON array of tool schemas, passed as `tools`\n"
            "                             (selects the \"tool_use\" template when the model has one)\n"
            "      --no-generation-prompt render with add_generation_prompt=false (default true)\n"
            "      --template NAME        use the named template instead of the default choice\n"
            "  -h, --help                 show this help\n\n"
            "Exit status: 0 on success; 1 on an error (missing or bad files, messages that are\n"
            "not an array of objects, template errors, which name their line); 2 on a usage error.\n");
}

static json_doc *read_json(const char *path) {
    if (strcmp(path, "-")) return json_parse_file(path);
    strbuf sb;
    sb_init(&sb);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) sb_append(&sb, buf, n);
    if (sb.oom) { sb_free(&sb); flm_fail(FLM_ERR_NOMEM, "out of memory reading standard input"); return NULL; }
    json_doc *d = json_parse(sb.data ? sb.data : "", sb.len, "<stdin>");
    sb_free(&sb);
    return d;
}

/* An array whose every element is an object. */
static bool array_of_objects(const json *v, const char *path, const char *what) {
    if (v->type != JSON_ARRAY) {
        flm_fail(FLM_ERR_FORMAT, "%s: %s must be a JSON array", path, what);
        return false;
    }
    for (size_t i = 0; i < v->len; i++)
        if (v->items[i].type != JSON_OBJECT) {
            flm_fail(FLM_ERR_FORMAT, "%s: %s[%zu] is not an object", path, what, i);
            return false;
        }
    return true;
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
    flm_template_source src = {0};
    flm_template *t = NULL;
    json_doc *msgs = NULL, *tools = NULL;
    strbuf out;
    sb_init(&out);
    if (!(msgs = read_json(msgs_path)) || !array_of_objects(json_root(msgs), msgs_path, "messages")) goto fail;
    if (tools_path && (!(tools = read_json(tools_path)) || !array_of_objects(json_root(tools), tools_path, "tools"))) goto fail;
    if (flm_template_source_load(model, &src)) goto fail;
    const flm_named_template *nt = flm_template_source_pick(&src, tools != NULL, name);
    if (!nt) goto fail;
    if (flm_template_compile_n(nt->text, nt->len, &t)) {
        flm_fail_context(FLM_ERR_FORMAT, "%s", src.origin ? src.origin : model);
        goto fail;
    }
    if (flm_template_render(t, json_root(msgs), tools ? json_root(tools) : NULL, gen_prompt,
                            src.vars ? json_root(src.vars) : NULL, &out)) {
        flm_fail_context(FLM_ERR_FORMAT, "%s", src.origin ? src.origin : model);
        goto fail;
    }
    if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len) {
        fprintf(stderr, "fieldlm template: writing the output failed\n");
        goto done;
    }
    if (fflush(stdout) != 0) { fprintf(stderr, "fieldlm template: writing the output failed\n"); goto done; }
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_error("template");
done:
    sb_free(&out);
    flm_template_free(t);
    flm_template_source_free(&src);
    json_free(msgs);
    json_free(tools);
    return rc;
}
CLI_COMMAND(template, "template", "render the model's chat template for a messages file", 32, cmd_template)
