/* template.c — the chat-template module's public face (src/text/template.h): finding a
 * model's template source and special-token variables, and compiling / rendering
 * through the Jinja engine in jinja_*.c. */
#include "text/template.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

struct flm_template {
    jarena arena; /* the syntax tree and its strings */
    jstmt *body;
};

/* ---------------------------------------------------------------- sources ---- */
int flm_template_source_add(flm_template_source *src, const char *name, const char *text, size_t len) {
    for (size_t i = 0; i < src->n; i++)
        if (!strcmp(src->templates[i].name, name)) {
            char *t = flm_strndup(text, len);
            if (!t) return FLM_ERR_NOMEM;
            free(src->templates[i].text);
            src->templates[i].text = t;
            src->templates[i].len = len;
            return 0;
        }
    flm_named_template *v = flm_realloc(src->templates, (src->n + 1) * sizeof *v);
    if (!v) return FLM_ERR_NOMEM;
    src->templates = v;
    char *nm = flm_strdup(name), *t = flm_strndup(text, len);
    if (!nm || !t) { free(nm); free(t); return FLM_ERR_NOMEM; }
    v[src->n++] = (flm_named_template){nm, t, len};
    return 0;
}

void flm_template_source_free(flm_template_source *src) {
    if (!src) return;
    for (size_t i = 0; i < src->n; i++) { free(src->templates[i].name); free(src->templates[i].text); }
    free(src->templates);
    free(src->origin);
    flm_json_free(src->vars);
    memset(src, 0, sizeof *src);
}

const flm_named_template *flm_template_source_pick(const flm_template_source *src, bool have_tools, const char *name) {
    const char *want = name ? name : "default";
    if (!name && have_tools)
        for (size_t i = 0; i < src->n; i++)
            if (!strcmp(src->templates[i].name, "tool_use")) return &src->templates[i];
    for (size_t i = 0; i < src->n; i++)
        if (!strcmp(src->templates[i].name, want)) return &src->templates[i];
    strbuf names;
    flm_sb_init(&names);
    for (size_t i = 0; i < src->n; i++) flm_sb_printf(&names, "%s'%s'", i ? ", " : "", src->templates[i].name);
    flm_fail(FLM_ERR_FORMAT, "%s: no chat template named '%s' (has %s)", src->origin ? src->origin : "chat templates", want,
             src->n ? flm_sb_cstr(&names) : "none");
    flm_sb_free(&names);
    return NULL;
}

static int add_file(flm_template_source *src, const char *name, const char *path) {
    char *text;
    size_t len;
    int r = flm_read_file(path, &text, &len);
    if (r) return r;
    r = flm_template_source_add(src, name, text, len);
    free(text);
    return r;
}

static const char *const SPECIAL_TOKENS[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                             "cls_token", "mask_token"};

/* A special token in tokenizer_config.json: a string or an AddedToken object. */
static const char *token_text(const flm_json *v, size_t *len) {
    if (v && v->type == JSON_OBJECT) v = flm_json_get(v, "content");
    if (!v || v->type != JSON_STRING) return NULL;
    *len = v->len;
    return v->str;
}

/* Builds {"bos_token": ..., ...} from the config's special tokens. */
static int special_vars(const flm_json *cfg, const char *path, flm_json_doc **out) {
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_putc(&sb, '{');
    bool any = false;
    for (size_t i = 0; i < sizeof SPECIAL_TOKENS / sizeof *SPECIAL_TOKENS; i++) {
        size_t n;
        const char *t = token_text(flm_json_get(cfg, SPECIAL_TOKENS[i]), &n);
        if (!t) continue;
        flm_sb_printf(&sb, "%s\"%s\": ", any ? ", " : "", SPECIAL_TOKENS[i]);
        flm_sb_json_string(&sb, t, n, false);
        any = true;
    }
    const flm_json *extra = flm_json_get(cfg, "additional_special_tokens");
    if (extra && extra->type == JSON_ARRAY) {
        flm_sb_printf(&sb, "%s\"additional_special_tokens\": [", any ? ", " : "");
        size_t k = 0;
        for (size_t i = 0; i < extra->len; i++) {
            size_t n;
            const char *t = token_text(&extra->items[i], &n);
            if (!t) continue;
            if (k++) flm_sb_puts(&sb, ", ");
            flm_sb_json_string(&sb, t, n, false);
        }
        flm_sb_putc(&sb, ']');
    }
    flm_sb_putc(&sb, '}');
    if (sb.oom) { flm_sb_free(&sb); return flm_fail(FLM_ERR_NOMEM, "out of memory"); }
    *out = flm_json_parse(sb.data, sb.len, path);
    flm_sb_free(&sb);
    return *out ? 0 : FLM_ERR_FORMAT;
}

static int load_additional(flm_template_source *src, const char *dir) {
    char *sub = flm_path_join(dir, "additional_chat_templates");
    if (!sub) return FLM_ERR_NOMEM;
    int r = 0;
    DIR *d = flm_is_dir(sub) ? opendir(sub) : NULL;
    if (d) {
        struct dirent *e;
        while (!r && (e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n <= 6 || strcmp(e->d_name + n - 6, ".jinja")) continue;
            char *name = flm_strndup(e->d_name, n - 6), *path = flm_path_join(sub, e->d_name);
            r = name && path ? add_file(src, name, path) : FLM_ERR_NOMEM;
            free(name);
            free(path);
        }
        closedir(d);
    }
    free(sub);
    return r;
}

int flm_template_source_load_dir(const char *dir, flm_template_source *out) {
    memset(out, 0, sizeof *out);
    if (!flm_is_dir(dir)) return flm_fail(FLM_ERR_IO, "%s: not a directory", dir);
    char *cfg_path = flm_path_join(dir, "tokenizer_config.json");
    char *jinja_path = flm_path_join(dir, "chat_template.jinja");
    flm_json_doc *cfg = NULL;
    int r = 0;
    if (!cfg_path || !jinja_path) { r = FLM_ERR_NOMEM; goto done; }
    if (flm_file_exists(cfg_path)) {
        if (!(cfg = flm_json_parse_file(cfg_path))) { r = FLM_ERR_FORMAT; goto done; }
        if (flm_json_root(cfg)->type != JSON_OBJECT) { r = flm_fail(FLM_ERR_FORMAT, "%s: not a JSON object", cfg_path); goto done; }
        if ((r = special_vars(flm_json_root(cfg), cfg_path, &out->vars))) goto done;
    }
    /* separate template files first: they take priority */
    if (flm_file_exists(jinja_path)) {
        if ((r = add_file(out, "default", jinja_path))) goto done;
        out->origin = flm_strdup(jinja_path);
    }
    if ((r = load_additional(out, dir))) goto done;
    if (!out->n && cfg) {
        const flm_json *ct = flm_json_get(flm_json_root(cfg), "chat_template");
        if (ct && ct->type == JSON_STRING) r = flm_template_source_add(out, "default", ct->str, ct->len);
        else if (ct && ct->type == JSON_ARRAY) {
            for (size_t i = 0; !r && i < ct->len; i++) {
                const flm_json *name = flm_json_get(&ct->items[i], "name"), *tmpl = flm_json_get(&ct->items[i], "template");
                if (!name || name->type != JSON_STRING || !tmpl || tmpl->type != JSON_STRING)
                    r = flm_fail(FLM_ERR_FORMAT, "%s: chat_template[%zu] needs string \"name\" and \"template\"", cfg_path, i);
                else r = flm_template_source_add(out, name->str, tmpl->str, tmpl->len);
            }
        } else if (ct && ct->type != JSON_NULL)
            r = flm_fail(FLM_ERR_FORMAT, "%s: \"chat_template\" must be a string or a list of {name, template}", cfg_path);
        if (!r && out->n) out->origin = flm_strdup(cfg_path);
    }
    if (!r && !out->n)
        r = flm_fail(FLM_ERR_FORMAT, "%s: no chat template (looked for chat_template.jinja and \"chat_template\" in tokenizer_config.json)", dir);
done:
    flm_json_free(cfg);
    free(cfg_path);
    free(jinja_path);
    if (r) flm_template_source_free(out);
    return r;
}

int flm_template_load_dir(const char *dir, char **source_out) {
    *source_out = NULL;
    flm_template_source src;
    int r = flm_template_source_load_dir(dir, &src);
    if (r) return r;
    const flm_named_template *t = flm_template_source_pick(&src, false, NULL);
    if (!t) r = FLM_ERR_FORMAT;
    else if (!(*source_out = flm_strndup(t->text, t->len))) r = FLM_ERR_NOMEM;
    flm_template_source_free(&src);
    return r;
}

/* ---------------------------------------------------------- compile/render ---- */
/* Offset of the first invalid UTF-8 sequence, or len. */
static size_t utf8_check(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
        else return i;
        if (i + n > len) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return i;
        i += n;
    }
    return len;
}

int flm_template_compile_n(const char *src, size_t len, flm_template **out) {
    *out = NULL;
    size_t bad = utf8_check((const unsigned char *)src, len);
    if (bad < len) return flm_fail(FLM_ERR_FORMAT, "template: not valid UTF-8 at byte %zu", bad);
    flm_template *t = flm_calloc(1, sizeof *t);
    if (!t) return FLM_ERR_NOMEM;
    flm_ja_init(&t->arena, 0);
    int r = flm_jinja_parse(src, len, &t->arena, &t->body);
    if (r) { flm_template_free(t); return r; }
    *out = t;
    return 0;
}

int flm_template_compile(const char *src, flm_template **out) {
    return flm_template_compile_n(src, strlen(src), out);
}

void flm_template_free(flm_template *t) {
    if (!t) return;
    flm_ja_free(&t->arena);
    free(t);
}

static const struct { const char *name; int id; } GLOBAL_FUNCS[] = {
    {"raise_exception", JF_RAISE_EXCEPTION}, {"strftime_now", JF_STRFTIME_NOW}, {"range", JF_RANGE},
    {"namespace", JF_NAMESPACE}, {"dict", JF_DICT},
};

int flm_template_render(const flm_template *t, const flm_json *messages, const flm_json *tools, bool add_generation_prompt,
                        const flm_json *extra_vars, strbuf *out) {
    if (!t || !out) return flm_fail(FLM_ERR_ARG, "template: missing template or output");
    if (!messages || messages->type != JSON_ARRAY) return flm_fail(FLM_ERR_ARG, "template: messages must be a JSON array");
    if (extra_vars && extra_vars->type != JSON_OBJECT) return flm_fail(FLM_ERR_ARG, "template: extra variables must be a JSON object");
    jctx cx = {0};
    flm_ja_init(&cx.arena, JINJA_MAX_RENDER_MEM);
    strbuf buf;
    flm_sb_init(&buf);
    cx.out = &buf;
    int r = 0;
    /* scopes: environment globals < extra variables < the render arguments */
    jscope *env = flm_jinja_scope_new(&cx, NULL), *extra = env ? flm_jinja_scope_new(&cx, env) : NULL;
    jscope *args = extra ? flm_jinja_scope_new(&cx, extra) : NULL;
    if (!args) r = FLM_ERR_NOMEM;
    for (size_t i = 0; !r && i < sizeof GLOBAL_FUNCS / sizeof *GLOBAL_FUNCS; i++) {
        jvalue f = {.k = V_FUNC};
        f.u.func = GLOBAL_FUNCS[i].id;
        r = flm_jinja_scope_set(&cx, env, GLOBAL_FUNCS[i].name, strlen(GLOBAL_FUNCS[i].name), f);
    }
    for (size_t i = 0; !r && extra_vars && i < extra_vars->len; i++) {
        const flm_json *m = &extra_vars->items[i];
        r = flm_jinja_scope_set(&cx, extra, m->key, m->key_len, flm_jv_from_json(m));
    }
    if (!r) r = flm_jinja_scope_set(&cx, args, "messages", 8, flm_jv_from_json(messages));
    if (!r) r = flm_jinja_scope_set(&cx, args, "tools", 5, tools ? flm_jv_from_json(tools) : flm_jv_none());
    if (!r) r = flm_jinja_scope_set(&cx, args, "documents", 9, flm_jv_none());
    if (!r) r = flm_jinja_scope_set(&cx, args, "add_generation_prompt", 21, flm_jv_bool(add_generation_prompt));
    if (!r) r = flm_jinja_exec(&cx, t->body, args);
    if (!r && buf.oom) r = flm_fail(FLM_ERR_NOMEM, "template: out of memory for the output");
    if (!r) {
        flm_sb_append(out, buf.data ? buf.data : "", buf.len);
        if (out->oom) r = flm_fail(FLM_ERR_NOMEM, "template: out of memory for the output");
    }
    flm_sb_free(&buf);
    flm_ja_free(&cx.arena);
    return r;
}
