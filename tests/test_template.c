/* test_template.c — chat templates: the real Qwen2.5 template against transformers'
 * references (tests/data/tokenizer-cases/chat_shared.jsonl), the tools branch, the
 * Jinja subset (whitespace control, trim_blocks/lstrip_blocks, loops, scoping,
 * tojson), error messages with line numbers, bounds, and the `fieldlm template` CLI.
 * Expected strings not taken from the fixtures were checked against Jinja 3.1 run
 * with transformers' environment (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, its tojson override). */
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "text/template.h"
#include "test.h"

#define CHAT_CASES TEST_DATA "/tokenizer-cases/chat_shared.jsonl"
#define RESAVED_DIR TEST_DATA "/qwen2.5-resaved-lora-dir"

/* Renders src with messages/tools given as JSON text; returns the output
 * (malloc'ed) or NULL with the error message in flm_last_error(). */
static char *render(const char *src, const char *messages, const char *tools, bool agp) {
    flm_template *t = NULL;
    flm_json_doc *m = flm_json_parse(messages, strlen(messages), "messages");
    flm_json_doc *tl = tools ? flm_json_parse(tools, strlen(tools), "tools") : NULL;
    flm_json_doc *extra = flm_json_parse("{\"eos_token\": \"<|im_end|>\"}", 27, "extra");
    char *res = NULL;
    if (m && (!tools || tl) && extra && !flm_template_compile(src, &t)) {
        strbuf sb;
        flm_sb_init(&sb);
        if (!flm_template_render(t, flm_json_root(m), tl ? flm_json_root(tl) : NULL, agp, flm_json_root(extra), &sb))
            res = sb.len ? flm_sb_take(&sb) : flm_strdup("");
        flm_sb_free(&sb);
    }
    flm_template_free(t);
    flm_json_free(m);
    flm_json_free(tl);
    flm_json_free(extra);
    return res;
}

static const char *const THREE_MSGS =
    "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U1\"},{\"role\":\"assistant\",\"content\":\"A1\"}]";

#define CHECK_RENDER(src, expected)                                                   \
    do {                                                                              \
        flm_clear_error();                                                            \
        char *got_ = render(src, THREE_MSGS, NULL, true);                             \
        CHECK_MSG(got_ != NULL, "render failed: %s", flm_last_error());               \
        if (got_) CHECK_STR(got_, expected);                                          \
        free(got_);                                                                   \
    } while (0)

/* Renders every case of chat_shared.jsonl with the template of `dir`. */
static void check_chat_cases(const char *dir) {
    flm_template_source src;
    REQUIRE(flm_template_source_load_dir(dir, &src) == 0);
    const flm_named_template *nt = flm_template_source_pick(&src, false, NULL);
    REQUIRE(nt != NULL);
    flm_template *t = NULL;
    CHECK_MSG(flm_template_compile_n(nt->text, nt->len, &t) == 0, "%s", flm_last_error());
    char *text;
    size_t len;
    REQUIRE(flm_read_file(CHAT_CASES, &text, &len) == 0);
    int ncases = 0;
    for (char *line = text; t && line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (n) {
            flm_json_doc *c = flm_json_parse(line, n, CHAT_CASES);
            CHECK(c != NULL);
            if (c) {
                const flm_json *root = flm_json_root(c);
                strbuf out;
                flm_sb_init(&out);
                int r = flm_template_render(t, flm_json_get(root, "messages"), flm_json_get(root, "tools"),
                                            flm_json_bool(flm_json_get(root, "add_generation_prompt"), false),
                                            src.vars ? flm_json_root(src.vars) : NULL, &out);
                CHECK_MSG(r == 0, "case %d: %s", ncases, flm_last_error());
                CHECK_STR(flm_sb_cstr(&out), flm_json_string(flm_json_get(root, "text"), "?"));
                flm_sb_free(&out);
                flm_json_free(c);
                ncases++;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    CHECK(ncases >= 5);
    free(text);
    flm_template_free(t);
    flm_template_source_free(&src);
}

TEST(template_chat_shared_tokenizer_config) { check_chat_cases(BUNDLED_MODEL); }
TEST(template_chat_shared_chat_template_jinja) { check_chat_cases(RESAVED_DIR); }

TEST(template_source_vars_and_precedence) {
    flm_template_source src;
    REQUIRE(flm_template_source_load_dir(BUNDLED_MODEL, &src) == 0);
    REQUIRE(src.vars != NULL);
    CHECK_STR(flm_json_string(flm_json_get(flm_json_root(src.vars), "eos_token"), "?"), "<|im_end|>");
    CHECK(flm_json_get(flm_json_root(src.vars), "bos_token") == NULL); /* null in the config: undefined */
    CHECK(strstr(src.origin, "tokenizer_config.json") != NULL);
    flm_template_source_free(&src);
    REQUIRE(flm_template_source_load_dir(RESAVED_DIR, &src) == 0);
    CHECK(strstr(src.origin, "chat_template.jinja") != NULL);
    flm_template_source_free(&src);

    /* chat_template.jinja wins over tokenizer_config.json; named lists are read */
    char path[512];
    snprintf(path, sizeof path, "%s/tpl_prec", test_tmpdir());
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && printf '%%s' '{\"chat_template\": \"CONFIG\"}' > %s/tokenizer_config.json", path, path);
    REQUIRE(system(cmd) == 0);
    char *s = NULL;
    REQUIRE(flm_template_load_dir(path, &s) == 0);
    CHECK_STR(s, "CONFIG");
    free(s);
    snprintf(cmd, sizeof cmd, "printf 'FILE\\n' > %s/chat_template.jinja", path);
    REQUIRE(system(cmd) == 0);
    REQUIRE(flm_template_load_dir(path, &s) == 0);
    CHECK_STR(s, "FILE\n");
    free(s);
    snprintf(cmd, sizeof cmd,
             "rm %s/chat_template.jinja && printf '%%s' '{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"},"
             " {\"name\": \"tool_use\", \"template\": \"T\"}]}' > %s/tokenizer_config.json", path, path);
    REQUIRE(system(cmd) == 0);
    REQUIRE(flm_template_source_load_dir(path, &src) == 0);
    CHECK_STR(flm_template_source_pick(&src, false, NULL)->text, "D");
    CHECK_STR(flm_template_source_pick(&src, true, NULL)->text, "T");
    CHECK(flm_template_source_pick(&src, false, "nope") == NULL);
    CHECK(strstr(flm_last_error(), "nope") != NULL);
    flm_template_source_free(&src);
    /* no template at all */
    snprintf(cmd, sizeof cmd, "printf '{}' > %s/tokenizer_config.json", path);
    REQUIRE(system(cmd) == 0);
    CHECK(flm_template_source_load_dir(path, &src) == FLM_ERR_FORMAT);
    CHECK(strstr(flm_last_error(), "no chat template") != NULL);
}

/* The Qwen2.5 tools branch: a system prompt with tool signatures (tojson of each
 * tool), an assistant tool call given as {"function": {...}} and one given flat,
 * and two consecutive tool responses merged into one user turn. */
TEST(template_qwen_tools_branch) {
    char *src = NULL;
    REQUIRE(flm_template_load_dir(BUNDLED_MODEL, &src) == 0);
    const char *msgs =
        "[{\"role\":\"user\",\"content\":\"Rain in Warangal?\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"rain\","
        "\"arguments\":{\"city\":\"Warangal\",\"days\":2}}},{\"name\":\"soil\",\"arguments\":{\"f\":\"ñ\"}}]},"
        "{\"role\":\"tool\",\"content\":\"12 mm\"},{\"role\":\"tool\",\"content\":\"loam\"}]";
    const char *tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"rain\",\"description\":\"Rain — mm\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]";
    const char *expected =
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"rain\", \"description\": \"Rain — mm\", \"parameters\": "
        "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
        "</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\nRain in Warangal?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"rain\", \"arguments\": {\"city\": \"Warangal\", \"days\": 2}}\n</tool_call>"
        "\n<tool_call>\n{\"name\": \"soil\", \"arguments\": {\"f\": \"ñ\"}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n12 mm\n</tool_response>\n<tool_response>\nloam\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n";
    char *got = render(src, msgs, tools, true);
    CHECK_MSG(got != NULL, "%s", flm_last_error());
    if (got) CHECK_STR(got, expected);
    free(got);
    /* without tools: tools is none, the plain branch; a system message is used */
    got = render(src, "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"}]", NULL, false);
    REQUIRE(got != NULL);
    CHECK_STR(got, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    free(got);
    free(src);
}

TEST(template_whitespace_control) {
    /* trim_blocks removes the newline after a block tag, lstrip_blocks the
     * indentation before it; {{ }} tags are not affected */
    CHECK_RENDER("a\n  {% if true %}\n    x\n  {% endif %}\nb", "a\n    x\nb");
    CHECK_RENDER("{%- for m in messages -%}\n   [{{- m.role -}}]\n{%- endfor %}\n  end  ", "[system][user][assistant]  end  ");
    /* comments, {%+ (no lstrip), -%} eating newlines, one trailing newline dropped */
    CHECK_RENDER("x\n    {# c #}\n{%+ if true %}k{% endif %}\n  {{ 'v' }}\n  {%- if true %}\n y{% endif -%}\n   z\n", "x\nk  v yz");
    CHECK_RENDER("a\r\nb\rc\n\n", "a\nb\nc\n");
    CHECK_RENDER("{% raw %}{{ x }}{% endraw %}", "{{ x }}");
}

TEST(template_loops_and_scoping) {
    CHECK_RENDER("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.length }}{{ loop.first }}{{ loop.last }}"
                 "{{ loop.revindex }}{% endfor %}",
                 "103TrueFalse3213FalseFalse2323FalseTrue1");
    /* a set inside a loop does not leak out, and each iteration starts afresh */
    CHECK_RENDER("{% set x = 'out' %}{% for m in messages %}{% set x = m.role %}{{ x }},{% endfor %}{{ x }}",
                 "system,user,assistant,out");
    CHECK_RENDER("{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}", "2221");
    CHECK_RENDER("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", "3");
    CHECK_RENDER("{% if true %}{% set y = 1 %}{% endif %}{{ y }}", "1");
    CHECK_RENDER("{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% else %}none{% endfor %}",
                 "1user2assistant");
    CHECK_RENDER("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}{{ i }}"
                 "{% endfor %}", "01345");
    CHECK_RENDER("{% for k, v in {'a': 1, 'b': [2]}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=[2];");
    CHECK_RENDER("{{ messages[1:] | length }}{{ messages[-1].role }}{{ 'hello'[::-1] }}", "2assistantolleh");
}

TEST(template_expressions_and_undefined) {
    CHECK_RENDER("{{ undefinedvar }}|{{ undefinedvar is defined }}|{{ tools is none }}|{{ messages[0].nope is defined }}",
                 "|False|True|False");
    CHECK_RENDER("{{ 'a' ~ 1 ~ none ~ true }}|{{ 1/2 }}|{{ 7//2 }}|{{ -7 % 3 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}",
                 "a1NoneTrue|0.5|3|2|0.30000000000000004|1e+20");
    CHECK_RENDER("{{ none or 'x' }}|{{ 0 and 1 }}|{{ 'ab' in 'cab' }}|{{ 3 not in [1, 2] }}|{{ 1 < 2 < 3 }}|{{ 1 if false }}",
                 "x|0|True|True|True|");
    CHECK_RENDER("{{ '  a b '.strip() }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}|{{ 'x'|upper }}|{{ ' y '|trim }}",
                 "a b|['a', 'b']|True|X|y");
    CHECK_RENDER("{{ \"x\\ty\\u00e9\" }}|{{ 'it\\'s' }}|{{ messages[0] }}", "x\ty\xc3\xa9|it's|{'role': 'system', 'content': 'S'}");
    CHECK_RENDER("{{ eos_token }}|{{ bos_token is defined }}|{{ add_generation_prompt }}", "<|im_end|>|False|True");
}

TEST(template_tojson) {
    const char *msgs = "[{\"role\":\"user\",\"content\":\"x\",\"d\":{\"b\":[1,2.5,null,true,{\"c\":\"ñ 你好 \\\"q\\\"\\n\"}],"
                       "\"a\":\"x\",\"e\":1.0,\"big\":1e300}}]";
    char *got = render("{{ messages[0].d | tojson }}", msgs, NULL, true);
    REQUIRE(got != NULL);
    CHECK_STR(got, "{\"b\": [1, 2.5, null, true, {\"c\": \"ñ 你好 \\\"q\\\"\\n\"}], \"a\": \"x\", \"e\": 1.0, \"big\": 1e+300}");
    free(got);
    got = render("{{ messages[0].d.b | tojson(indent=2) }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ {} | tojson }}", msgs, NULL, true);
    REQUIRE(got != NULL);
    CHECK_STR(got, "[\n  1,\n  2.5,\n  null,\n  true,\n  {\n    \"c\": \"ñ 你好 \\\"q\\\"\\n\"\n  }\n]|\"\\u00e9\"|{}");
    free(got);
}

/* Compiling must fail with a message naming `what` and "line N". */
static void check_compile_error(const char *src, const char *what, int line) {
    flm_template *t = NULL;
    int r = flm_template_compile(src, &t);
    CHECK_MSG(r < 0, "compiled: %s", src);
    char want[64];
    snprintf(want, sizeof want, "line %d:", line);
    CHECK_MSG(strstr(flm_last_error(), what) != NULL, "'%s' not in '%s'", what, flm_last_error());
    CHECK_MSG(strstr(flm_last_error(), want) != NULL, "'%s' not in '%s'", want, flm_last_error());
    flm_template_free(t);
}

static void check_render_error(const char *src, const char *what, int line) {
    flm_clear_error();
    char *got = render(src, THREE_MSGS, NULL, true);
    CHECK_MSG(got == NULL, "rendered: %s", got);
    free(got);
    char want[64];
    snprintf(want, sizeof want, "line %d:", line);
    CHECK_MSG(strstr(flm_last_error(), what) != NULL, "'%s' not in '%s'", what, flm_last_error());
    CHECK_MSG(strstr(flm_last_error(), want) != NULL, "'%s' not in '%s'", want, flm_last_error());
}

TEST(template_errors_name_construct_and_line) {
    check_compile_error("a\nb\n{% macro m() %}x{% endmacro %}", "unsupported tag 'macro'", 3);
    check_compile_error("\n{{ x | nosuchfilter }}", "unsupported filter 'nosuchfilter'", 2);
    check_compile_error("{% if x is nosuchtest %}{% endif %}", "unsupported test 'nosuchtest'", 1);
    check_compile_error("x\n\n{% if x %}\nnever closed", "'if' opened here is never closed", 3);
    check_compile_error("{% for x in y %}\n{% endif %}", "unexpected 'endif'", 2);
    check_compile_error("\n\n\n{{ 1 + }}", "expected an expression", 4);
    check_compile_error("{{ 'abc }}", "unterminated string", 1);
    check_compile_error("{% frobnicate %}", "unknown or misplaced tag 'frobnicate'", 1);
    check_compile_error("x\n{% break %}", "outside a for loop", 2);
    check_compile_error("{{ x\n\n", "never closed", 1);
    check_render_error("\n{{ raise_exception('Conversation roles must alternate') }}", "Conversation roles must alternate", 2);
    check_render_error("{{ undefinedvar.attr }}", "'undefinedvar' is undefined", 1);
    check_render_error("\n\n{{ 'a' + none }}", "unsupported operand types for '+': string and none", 3);
    check_render_error("{{ messages[0].content + messages[0].missing }}", "has no attribute 'missing'", 1);
    check_render_error("{{ 'x'.nosuchmethod() }}", "unsupported method 'nosuchmethod'", 1);
    check_render_error("{{ '%s' % 1 }}", "string formatting is not supported", 1);
    flm_template *t = NULL;
    CHECK(flm_template_compile("\xff\xfe", &t) == FLM_ERR_FORMAT);
    CHECK(strstr(flm_last_error(), "UTF-8") != NULL);
}

TEST(template_bounds) {
    /* a hostile template fails fast instead of hanging or exhausting memory */
    double t0 = flm_now_seconds();
    check_render_error("{% set r = range(3000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "steps", 1);
    flm_clear_error();
    char *got = render("{% for i in range(100000) %}{% set x = range(1000000) %}{% endfor %}", THREE_MSGS, NULL, true);
    CHECK(got == NULL);
    free(got);
    CHECK_MSG(strstr(flm_last_error(), "memory limit") != NULL, "%s", flm_last_error());
    check_render_error("{% set s = 'xxxxxxxxxxxxxxxx' %}{% for i in range(100000) %}{{ s * 1000 }}{% endfor %}", "output exceeds", 1);
    check_render_error("{{ range(100000000) }}", "too large", 1);
    CHECK(flm_now_seconds() - t0 < 30.0);
    /* deep nesting is rejected at compile time */
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_puts(&sb, "{{ ");
    for (int i = 0; i < 5000; i++) flm_sb_putc(&sb, '(');
    flm_sb_puts(&sb, "1");
    for (int i = 0; i < 5000; i++) flm_sb_putc(&sb, ')');
    flm_sb_puts(&sb, " }}");
    flm_template *t = NULL;
    CHECK(flm_template_compile(flm_sb_cstr(&sb), &t) < 0);
    CHECK(strstr(flm_last_error(), "nested too deeply") != NULL);
    flm_sb_free(&sb);
    /* messages must be an array */
    REQUIRE(flm_template_compile("x", &t) == 0);
    flm_json_doc *d = flm_json_parse("{}", 2, "m");
    strbuf out;
    flm_sb_init(&out);
    CHECK(flm_template_render(t, flm_json_root(d), NULL, true, NULL, &out) == FLM_ERR_ARG);
    CHECK(out.len == 0);
    flm_sb_free(&out);
    flm_json_free(d);
    flm_template_free(t);
}

/* ---- CLI ---- */
static char *write_tmp(const char *name, const char *content) {
    char *path = flm_path_join(test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (f) { fputs(content, f); fclose(f); }
    return path;
}

TEST(template_cli) {
    char cmd[2048], *out = NULL, *err = NULL;
    char *msgs = write_tmp("tpl_msgs.json", "[{\"role\":\"user\",\"content\":\"Hi\"}]");
    const char *expected = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                           "<|im_start|>user\nHi<|im_end|>\n";
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s", test_bin(), BUNDLED_MODEL, msgs);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    strbuf want;
    flm_sb_init(&want);
    flm_sb_puts(&want, expected);
    flm_sb_puts(&want, "<|im_start|>assistant\n");
    CHECK_STR(out, flm_sb_cstr(&want));
    flm_sb_free(&want);
    free(out); free(err);
    /* stdin, no generation prompt */
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages - --no-generation-prompt < %s", test_bin(), RESAVED_DIR, msgs);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK_STR(out, expected);
    free(out); free(err);
    /* tools */
    char *tools = write_tmp("tpl_tools.json", "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]");
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s --tools %s", test_bin(), BUNDLED_MODEL, msgs, tools);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(strstr(out, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\"}}\n</tools>") != NULL);
    free(out); free(err);
    /* help */
    snprintf(cmd, sizeof cmd, "%s template --help", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(strstr(out, "--messages") && strstr(out, "--tools") && strstr(out, "--no-generation-prompt") && strstr(out, "-m, --model"));
    free(out); free(err);

    /* error paths: non-zero exit, a message on stderr, nothing on stdout */
    struct { const char *args; int rc; const char *msg; } bad[] = {
        {"--messages /nonexistent.json -m " BUNDLED_MODEL, 1, "nonexistent"},
        {"--messages %s -m /nonexistent-model", 1, "nonexistent-model"},
        {"--messages %s", 2, "required"},
        {"-m " BUNDLED_MODEL " --messages %s --bogus", 2, "unknown option"},
        {"-m " BUNDLED_MODEL " --messages", 2, "needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[512];
        snprintf(args, sizeof args, bad[i].args, msgs);
        snprintf(cmd, sizeof cmd, "%s template %s > %s/tpl_stdout", test_bin(), args, test_tmpdir());
        CHECK_EQ_INT(test_run(cmd, &out, &err), bad[i].rc);
        CHECK_MSG(strstr(err, bad[i].msg) != NULL, "%s: stderr '%s'", args, err);
        char *so = flm_path_join(test_tmpdir(), "tpl_stdout"), *text = NULL;
        size_t len = 1;
        CHECK(flm_read_file(so, &text, &len) == 0 && len == 0); /* nothing on stdout */
        free(so); free(text);
        free(out); free(err);
    }
    const char *bad_inputs[][2] = {
        {"[{\"role\": \"user\", ", "tpl_bad.json"},
        {"{\"role\": \"user\"}", "must be a JSON array"},
        {"[\"hello\"]", "messages[0] is not an object"},
    };
    for (size_t i = 0; i < sizeof bad_inputs / sizeof *bad_inputs; i++) {
        char *p = write_tmp("tpl_bad.json", bad_inputs[i][0]);
        snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s", test_bin(), BUNDLED_MODEL, p);
        CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
        CHECK_MSG(strstr(err, bad_inputs[i][1]) != NULL, "stderr '%s'", err);
        free(out); free(err); free(p);
    }
    /* a template error names the file and the line */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tpl_badmodel", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && printf 'ok\\n{%%%% for m in messages %%%%}\\n{{ m.role | frob }}\\n' > %s/chat_template.jinja",
             dir, dir);
    REQUIRE(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s", test_bin(), dir, msgs);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK_MSG(strstr(err, "chat_template.jinja") && strstr(err, "line 3") && strstr(err, "'frob'"), "stderr '%s'", err);
    free(out); free(err);
    free(msgs);
    free(tools);
}
