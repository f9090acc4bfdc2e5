/* cmd_template.c — `fieldlm template`: renders a model's own chat template for a
 * messages file and prints the prompt exactly, as transformers'
 * apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/common.h"
#include "base/json.h"
#include "text/template.h"
#include "package/source.h"

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

static flm_json_doc *read_json(const char *path) {
    if (strcmp(path, "-")) return flm_json_parse_file(path);
    strbuf sb;
    flm_sb_init(&sb);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) flm_sb_append(&sb, buf, n);
    if (sb.oom) { flm_sb_free(&sb); flm_fail(FLM_ERR_NOMEM, "out of memory reading standard input"); return NULL; }
    flm_json_doc *d = flm_json_parse(sb.data ? sb.data : "", sb.len, "<stdin>");
    flm_sb_free(&sb);
    return d;
}

/* An array whose every element is an object. */
static bool array_of_objects(const flm_json *v, const char *path, const char *what) {
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

/* Messages the template drops. transformers' Qwen2 template, for one, skips any
 * message whose role is not system, user, assistant or tool, without a word. The
 * prompt stays exactly as transformers renders it; this only warns on stderr.
 * Template-agnostic: a message whose removal leaves the prompt unchanged never
 * reached it (a removal that makes the template fail means the message mattered).
 * One render per message is quadratic: beyond EXACT_DROP_CHECK messages, one whose
 * text content is found in the prompt (searched from where the previous one was
 * found) is taken as rendered, and at most MAX_DROP_CHECKS others are re-rendered. */
#define EXACT_DROP_CHECK 64
#define MAX_DROP_CHECKS 256
static void warn_dropped(const flm_template *t, const flm_json *msgs, const flm_json *tools, bool gen_prompt, const flm_json *vars,
                         const strbuf *full) {
    size_t n = msgs->len, checks = 0, skipped = 0, from = 0;
    if (n == 0) return;
    flm_json *items = malloc(n * sizeof *items);
    if (!items) return;
    flm_json sub = *msgs;
    sub.items = items;
    sub.len = n - 1;
    strbuf out;
    flm_sb_init(&out);
    for (size_t i = 0; i < n; i++) {
        const flm_json *content = flm_json_get(&msgs->items[i], "content");
        if (n > EXACT_DROP_CHECK && content && content->type == JSON_STRING && content->len && full->len) {
            const char *hit = memmem(full->data + from, full->len - from, content->str, content->len);
            if (!hit) hit = memmem(full->data, full->len, content->str, content->len);
            if (hit) { from = (size_t)(hit - full->data) + content->len; continue; }
        }
        if (checks == MAX_DROP_CHECKS) { skipped++; continue; }
        checks++;
        memcpy(items, msgs->items, i * sizeof *items);
        memcpy(items + i, msgs->items + i + 1, (n - 1 - i) * sizeof *items);
        flm_sb_clear(&out);
        if (flm_template_render(t, &sub, tools, gen_prompt, vars, &out) != FLM_OK) { flm_clear_error(); continue; }
        if (out.oom || out.len != full->len || (out.len && memcmp(out.data, full->data, out.len))) continue;
        const flm_json *role = flm_json_get(&msgs->items[i], "role");
        strbuf r; /* quoted and escaped: the role comes from the user's file */
        flm_sb_init(&r);
        if (role && role->type == JSON_STRING) flm_sb_json_string(&r, role->str, role->len, true);
        else flm_sb_puts(&r, "missing");
        fprintf(stderr, "fieldlm template: warning: message %zu (role %s) is not in the prompt: the chat template leaves "
                        "it out (as transformers does); use a role the template renders (for Qwen2: system, user, "
                        "assistant, tool)\n", i, r.oom ? "?" : flm_sb_cstr(&r));
        flm_sb_free(&r);
    }
    if (skipped)
        fprintf(stderr, "fieldlm template: warning: %zu messages whose text is not in the prompt were not checked "
                        "(after %d checks); some may be left out by the template\n", skipped, MAX_DROP_CHECKS);
    flm_sb_free(&out);
    free(items);
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
    flm_json_doc *msgs = NULL, *tools = NULL;
    strbuf out;
    flm_sb_init(&out);
    if (!(msgs = read_json(msgs_path)) || !array_of_objects(flm_json_root(msgs), msgs_path, "messages")) goto fail;
    if (tools_path && (!(tools = read_json(tools_path)) || !array_of_objects(flm_json_root(tools), tools_path, "tools"))) goto fail;
    if (flm_load_template(model, &src)) goto fail;
    const flm_named_template *nt = flm_template_source_pick(&src, tools != NULL, name);
    if (!nt) goto fail;
    if (flm_template_compile_n(nt->text, nt->len, &t)) {
        flm_fail_context(FLM_ERR_FORMAT, "%s", src.origin ? src.origin : model);
        goto fail;
    }
    if (flm_template_render(t, flm_json_root(msgs), tools ? flm_json_root(tools) : NULL, gen_prompt,
                            src.vars ? flm_json_root(src.vars) : NULL, &out)) {
        flm_fail_context(FLM_ERR_FORMAT, "%s", src.origin ? src.origin : model);
        goto fail;
    }
    warn_dropped(t, flm_json_root(msgs), tools ? flm_json_root(tools) : NULL, gen_prompt, src.vars ? flm_json_root(src.vars) : NULL, &out);
    if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len) {
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
    flm_sb_free(&out);
    flm_template_free(t);
    flm_template_source_free(&src);
    flm_json_free(msgs);
    flm_json_free(tools);
    return rc;
}
CLI_COMMAND(template, "template", "render the model's chat template for a messages file", 32, cmd_template)
