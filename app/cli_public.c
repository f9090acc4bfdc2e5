/* cli_public.c — -m MODEL / --lora DIR[:SCALE] handling shared by subcommands:
 * parsing, the hint for an adapter folder given as a model, finding the bundled
 * files (models/...) from the current directory or beside the binary, and JSON
 * quoting for messages. Public API only (fieldlm.h), like the user-facing commands. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_model_arg(cli_model_args *a, int argc, char **argv, int *i, const char *cmd) {
    if (cli_is(argv[*i], "-m", "--model")) {
        const char *v = cli_value(argc, argv, i, cmd);
        if (!v) return -1;
        a->model = v;
        return 1;
    }
    if (!strcmp(argv[*i], "--mmap") || !strcmp(argv[*i], "--no-mmap")) {
        a->weights = argv[*i][2] == 'm' ? FLM_WEIGHTS_MAP : FLM_WEIGHTS_LOAD;
        return 1;
    }
    if (!strcmp(argv[*i], "--lora")) {
        const char *v = cli_value(argc, argv, i, cmd);
        if (!v) return -1;
        if (a->n_lora == CLI_MAX_LORA) {
            fprintf(stderr, "fieldlm %s: at most %d --lora adapters\n", cmd, CLI_MAX_LORA);
            return -1;
        }
        a->lora[a->n_lora++] = v;
        return 1;
    }
    return 0;
}

bool cli_lora_parse(const cli_model_args *a, cli_lora_list *l, const char *cmd) {
    memset(l, 0, sizeof *l);
    for (int i = 0; i < a->n_lora; i++) {
        if (flm_lora_spec_parse(a->lora[i], &l->owned[i], &l->scales[i]) != FLM_OK) {
            cli_error(cmd);
            cli_lora_free(l);
            return false;
        }
        l->dirs[i] = l->owned[i];
        l->adapters[i].path = l->owned[i];
        l->adapters[i].scale = l->scales[i];
        l->n = i + 1;
    }
    return true;
}

void cli_lora_free(cli_lora_list *l) {
    for (int i = 0; i < CLI_MAX_LORA; i++) flm_free(l->owned[i]);
    memset(l, 0, sizeof *l);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Directory of the running binary + "/../" + rel, or NULL. */
static char *beside_binary(const char *rel) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    size_t len = strlen(exe) + strlen(rel) + 8;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s/../%s", exe, rel);
    return p;
}

char *cli_find_bundled(const char *rel) {
    if (exists(rel)) return strdup(rel);
    char *p = beside_binary(rel);
    if (p && exists(p)) return p;
    free(p);
    return NULL;
}

const char *cli_bundled_or(const char *rel) {
    static char found[4096];
    char *p = cli_find_bundled(rel);
    if (!p || strlen(p) >= sizeof found) { free(p); return rel; }
    strcpy(found, p);
    free(p);
    return found;
}

bool cli_adapter_hint(const char *model, bool takes_lora, const char *cmd) {
    if (!model) return false;
    if (is_dir(model)) {
        size_t len = strlen(model) + sizeof "/config.json";
        char *cfg = malloc(len);
        if (!cfg) return false;
        snprintf(cfg, len, "%s%sconfig.json", model, model[0] && model[strlen(model) - 1] == '/' ? "" : "/");
        struct stat st;
        bool has_config = stat(cfg, &st) == 0 && S_ISREG(st.st_mode);
        free(cfg);
        if (has_config) return false;
    }
    int adapter = 0;
    char *base = NULL;
    if (flm_lora_probe(model, &adapter, &base) != FLM_OK || !adapter) { flm_free(base); return false; }
    if (takes_lora)
        fprintf(stderr, "fieldlm %s: %s is a LoRA adapter folder (adapter_config.json), not a model: give the base model "
                        "and the adapter, %s --lora %s", cmd, model,
                !strcmp(cmd, "convert") ? "BASE_MODEL" : "-m BASE_MODEL", model);
    else
        fprintf(stderr, "fieldlm %s: %s is a LoRA adapter folder (adapter_config.json), not a model: give its base model, "
                        "-m BASE_MODEL (an adapter leaves the tokenizer and chat template as they are)", cmd, model);
    if (base) fprintf(stderr, "; adapter_config.json names the base: %s", base);
    fputc('\n', stderr);
    flm_free(base);
    return true;
}

/* Length of the UTF-8 sequence at p[0..n) (1..4) and its code point, or 0 when it
 * is not a valid, shortest-form sequence of a scalar value. */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp) {
    unsigned char c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

char *cli_json_quote(const char *s, size_t n, bool ensure_ascii) {
    size_t cap = n * 12 + 3; /* worst case: a \uXXXX\uXXXX pair for 4 bytes, \u00XX for 1 */
    char *out = malloc(cap), *o = out;
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) { o += sprintf(o, "%s", esc); i++; continue; }
        if (c < 0x20) { o += sprintf(o, "\\u%04x", c); i++; continue; }
        if (c < 0x80) { *o++ = (char)c; i++; continue; }
        uint32_t cp;
        size_t len = utf8_seq(p + i, n - i, &cp);
        if (!len) { o += sprintf(o, "\\ufffd"); i++; continue; }
        if (!ensure_ascii) { memcpy(o, p + i, len); o += len; i += len; continue; }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            o += sprintf(o, "\\u%04x\\u%04x", (unsigned)(0xD800 + (cp >> 10)), (unsigned)(0xDC00 + (cp & 0x3FF)));
        } else {
            o += sprintf(o, "\\u%04x", (unsigned)cp);
        }
        i += len;
    }
    *o++ = '"';
    *o = 0;
    return out;
}

char *cli_read_all(FILE *f, size_t *len, bool *read_error) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (cap - n < 65536) {
            char *t = realloc(buf, cap *= 2);
            if (!t) { free(buf); return NULL; }
            buf = t;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    buf[n] = 0;
    if (len) *len = n;
    if (read_error) *read_error = ferror(f) != 0;
    return buf;
}
