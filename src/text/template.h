/* template.h — chat templates: finding a model's Jinja chat template (a Hugging Face
 * folder, or a package's "tokenizer.chat_template" through flm_template_source_add)
 * and rendering it byte for byte like transformers'
 * apply_chat_template(..., tokenize=False), with a Jinja subset implemented here
 * (docs/CHAT_TEMPLATE.md lists it). Internal header; prefix flm_template_. */
#ifndef FLM_TEMPLATE_H
#define FLM_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/common.h"
#include "base/json.h"

/* ---- finding the template source ---- */
typedef struct {
    char *name;   /* "default", "tool_use", ... */
    char *text;   /* the Jinja source, NUL-terminated */
    size_t len;
} flm_named_template;

typedef struct {
    flm_named_template *templates; /* in the order found */
    size_t n;
    char *origin;    /* the file they came from, for messages (may be NULL) */
    flm_json_doc *vars;  /* an object of the special-token variables transformers passes
                        (bos_token, eos_token, unk_token, pad_token, ...,
                        additional_special_tokens) or NULL when none are known */
} flm_template_source;

/* Reads a Hugging Face folder. As transformers does (tokenization_utils_base.py:
 * "If independent chat template file(s) exist, they take priority over template
 * entries in the tokenizer config"), chat_template.jinja ("default") and
 * additional_chat_templates/NAME.jinja win over tokenizer_config.json's
 * "chat_template", which may be a string ("default") or a list of
 * {"name", "template"}. Special tokens come from tokenizer_config.json.
 * FLM_ERR_IO / FLM_ERR_FORMAT when there is no template or a file is bad. */
int flm_template_source_load_dir(const char *dir, flm_template_source *out);
/* A .gguf package's templates are read by src/package/source.h (flm_source_template,
 * flm_load_template: any model path), which adds each "tokenizer.chat_template[.NAME]"
 * key with flm_template_source_add. */
/* Adds (or replaces) a named template, copying text[0..len). For other containers. */
int flm_template_source_add(flm_template_source *src, const char *name, const char *text, size_t len);
/* The template transformers would use: `name` if given; otherwise "tool_use" when
 * tools are given and it exists, else "default". NULL (with a message) if absent. */
const flm_named_template *flm_template_source_pick(const flm_template_source *src, bool have_tools, const char *name);
void flm_template_source_free(flm_template_source *src);

/* Convenience: the "default" template of a folder, malloc'ed (caller frees). */
int flm_template_load_dir(const char *dir, char **source_out);

/* ---- compiling and rendering ---- */
typedef struct flm_template flm_template;

/* Compiles a template (NUL-terminated, or len bytes). Syntax errors, unknown or
 * unsupported tags, filters and tests fail here with "template line N: ...". The
 * source must be valid UTF-8. The compiled template is immutable: several threads
 * may render it at once. */
int flm_template_compile(const char *src, flm_template **out);
int flm_template_compile_n(const char *src, size_t len, flm_template **out);

/* Renders with the variables transformers passes: messages (a JSON array), tools
 * (NULL renders as none, as transformers passes tools=None), documents (none),
 * add_generation_prompt, and every member of extra_vars (an object, e.g. the
 * source's vars; they do not override the four above). Appends to `out` only on
 * success. Bounded: steps, output size, memory and recursion are limited, so a
 * hostile template fails with a message instead of hanging. */
int flm_template_render(const flm_template *t, const flm_json *messages, const flm_json *tools, bool add_generation_prompt,
                        const flm_json *extra_vars, strbuf *out);
void flm_template_free(flm_template *t);

#endif
