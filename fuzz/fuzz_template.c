/* fuzz_template.c — libFuzzer target: compiles arbitrary bytes as a chat template
 * and renders it with a small fixed conversation (tools given on odd lengths). Any
 * crash, leak, sanitizer report or hang is a bug: compile and render must fail
 * cleanly with a message, within the engine's step / output / memory bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"
#include "text/template.h"

static const char MESSAGES[] =
    "[{\"role\":\"system\",\"content\":\"You advise farmers.\"},"
    "{\"role\":\"user\",\"content\":\"Rain? \\u0c35\\u0c30\\u0c4d\\u0c37\\u0c02\",\"n\":3,\"f\":2.5},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"function\":"
    "{\"name\":\"rain\",\"arguments\":{\"city\":\"Warangal\",\"days\":[1,2,null,true]}}}]},"
    "{\"role\":\"tool\",\"content\":\"12 mm\"}]";
static const char TOOLS[] = "[{\"type\":\"function\",\"function\":{\"name\":\"rain\",\"parameters\":{\"type\":\"object\"}}}]";
static const char VARS[] = "{\"eos_token\":\"<|im_end|>\",\"pad_token\":\"<|endoftext|>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static flm_json_doc *msgs, *tools, *vars;
    if (!msgs) {
        msgs = flm_json_parse(MESSAGES, strlen(MESSAGES), "messages");
        tools = flm_json_parse(TOOLS, strlen(TOOLS), "tools");
        vars = flm_json_parse(VARS, strlen(VARS), "vars");
        if (!msgs || !tools || !vars) __builtin_trap();
    }
    if (size > 65536) return 0;
    flm_template *t = NULL;
    if (flm_template_compile_n((const char *)data, size, &t) == 0) {
        strbuf out;
        flm_sb_init(&out);
        (void)flm_template_render(t, flm_json_root(msgs), (size & 1) ? flm_json_root(tools) : NULL, true, flm_json_root(vars), &out);
        flm_sb_free(&out);
        flm_template_free(t);
    }
    return 0;
}
