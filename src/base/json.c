/* json.c — recursive-descent JSON reader into an arena-allocated tree.
 * Hostile input is expected: depth is bounded, every byte is validated,
 * numbers must follow the grammar, strings must be valid UTF-8 after unescaping. */
#include "base/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 512

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct flm_json_doc {
    arena_block *blocks;
    flm_json root;
};

typedef struct {
    const char *s, *end, *start;
    const char *what;
    flm_json_doc *doc;
    int depth;
    bool failed;
    /* scratch stack of nodes for arrays/objects being built */
    flm_json *stack;
    size_t stack_len, stack_cap;
} parser;

static void *arena_alloc(flm_json_doc *doc, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_block *b = doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (b && b->cap * 2 > cap && b->cap < (64u << 20)) cap = b->cap * 2 > n ? b->cap * 2 : n;
        b = malloc(sizeof *b + cap);
        if (!b) { flm_fail(FLM_ERR_NOMEM, "out of memory parsing JSON"); return NULL; }
        b->next = doc->blocks;
        b->used = 0;
        b->cap = cap;
        doc->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void location(const parser *p, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *c = p->start; c < at && c < p->end; c++) {
        if (*c == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

static bool perr(parser *p, const char *msg) {
    if (!p->failed) {
        int line, col;
        location(p, p->s, &line, &col);
        flm_fail(FLM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", p->what, line, col, msg);
        p->failed = true;
    }
    return false;
}

static void skip_ws(parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static bool push(parser *p, const flm_json *v) {
    if (p->stack_len == p->stack_cap) {
        size_t cap = p->stack_cap ? p->stack_cap * 2 : 256;
        flm_json *n = realloc(p->stack, cap * sizeof *n);
        if (!n) { flm_fail(FLM_ERR_NOMEM, "out of memory parsing JSON"); p->failed = true; return false; }
        p->stack = n;
        p->stack_cap = cap;
    }
    p->stack[p->stack_len++] = *v;
    return true;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, uint32_t *out) {
    if (p->end - p->s < 4) return perr(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[i]);
        if (h < 0) return perr(p, "bad hex digit in \\u escape");
        v = (v << 4) | (uint32_t)h;
    }
    p->s += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Validates one raw UTF-8 sequence starting at s; returns its length or 0. */
static size_t utf8_valid(const unsigned char *s, const unsigned char *end) {
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - s) < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

/* Parses a string literal (p->s at the opening quote). Lone surrogate escapes are
 * replaced by U+FFFD, as Python's json would keep them unpaired (rare; documented). */
static bool parse_string(parser *p, const char **out, size_t *out_len) {
    p->s++; /* opening quote */
    const char *q = p->s;
    size_t raw = 0;
    bool has_escape = false;
    while (q < p->end && *q != '"') {
        if (*q == '\\') { has_escape = true; q++; if (q >= p->end) break; }
        q++;
        raw++;
    }
    if (q >= p->end) return perr(p, "unterminated string");
    size_t cap = (size_t)(q - p->s);
    char *buf = arena_alloc(p->doc, cap + 1);
    if (!buf) { p->failed = true; return false; }
    size_t n = 0;
    (void)raw;
    if (!has_escape) {
        const unsigned char *u = (const unsigned char *)p->s, *ue = (const unsigned char *)q;
        while (u < ue) {
            if (*u < 0x20) return perr(p, "control character in string");
            size_t l = utf8_valid(u, ue);
            if (!l) return perr(p, "invalid UTF-8 in string");
            u += l;
        }
        memcpy(buf, p->s, cap);
        n = cap;
        p->s = q + 1;
    } else {
        while (p->s < q) {
            unsigned char c = (unsigned char)*p->s;
            if (c == '\\') {
                p->s++;
                char e = *p->s++;
                switch (e) {
                case '"': buf[n++] = '"'; break;
                case '\\': buf[n++] = '\\'; break;
                case '/': buf[n++] = '/'; break;
                case 'b': buf[n++] = '\b'; break;
                case 'f': buf[n++] = '\f'; break;
                case 'n': buf[n++] = '\n'; break;
                case 'r': buf[n++] = '\r'; break;
                case 't': buf[n++] = '\t'; break;
                case 'u': {
                    uint32_t cp;
                    if (!read_hex4(p, &cp)) return false;
                    if (cp >= 0xD800 && cp <= 0xDBFF && q - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u') {
                        const char *save = p->s;
                        p->s += 2;
                        uint32_t lo;
                        if (!read_hex4(p, &lo)) return false;
                        if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        else { p->s = save; cp = 0xFFFD; }
                    } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                        cp = 0xFFFD;
                    }
                    /* \uXXXX takes 6 input bytes and at most 4 output bytes: fits in cap */
                    n += put_utf8(buf + n, cp);
                    break;
                }
                default: p->s--; return perr(p, "invalid escape in string");
                }
            } else {
                if (c < 0x20) return perr(p, "control character in string");
                size_t l = utf8_valid((const unsigned char *)p->s, (const unsigned char *)q);
                if (!l) return perr(p, "invalid UTF-8 in string");
                memcpy(buf + n, p->s, l);
                n += l;
                p->s += l;
            }
        }
        p->s = q + 1;
    }
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return true;
}

static bool parse_number(parser *p, flm_json *v) {
    const char *b = p->s;
    bool is_int = true;
    if (p->s < p->end && *p->s == '-') p->s++;
    if (p->s >= p->end) return perr(p, "truncated number");
    if (*p->s == '0') p->s++;
    else if (*p->s >= '1' && *p->s <= '9') while (p->s < p->end && *p->s >= '0' && *p->s <= '9') p->s++;
    else return perr(p, "invalid number");
    if (p->s < p->end && *p->s == '.') {
        is_int = false;
        p->s++;
        if (p->s >= p->end || *p->s < '0' || *p->s > '9') return perr(p, "digit expected after '.'");
        while (p->s < p->end && *p->s >= '0' && *p->s <= '9') p->s++;
    }
    if (p->s < p->end && (*p->s == 'e' || *p->s == 'E')) {
        is_int = false;
        p->s++;
        if (p->s < p->end && (*p->s == '+' || *p->s == '-')) p->s++;
        if (p->s >= p->end || *p->s < '0' || *p->s > '9') return perr(p, "digit expected in exponent");
        while (p->s < p->end && *p->s >= '0' && *p->s <= '9') p->s++;
    }
    char tmp[64];
    size_t n = (size_t)(p->s - b);
    v->type = JSON_NUMBER;
    v->is_int = is_int;
    v->raw = b;
    v->raw_len = n;
    if (n < sizeof tmp) {
        memcpy(tmp, b, n);
        tmp[n] = 0;
        v->number = strtod(tmp, NULL);
    } else {
        char *t = malloc(n + 1);
        if (!t) { flm_fail(FLM_ERR_NOMEM, "out of memory"); p->failed = true; return false; }
        memcpy(t, b, n);
        t[n] = 0;
        v->number = strtod(t, NULL);
        free(t);
    }
    return true;
}

static bool literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0) return perr(p, "invalid literal");
    p->s += n;
    return true;
}

static bool parse_value(parser *p, flm_json *v);

static bool finish_container(parser *p, flm_json *v, size_t base) {
    size_t n = p->stack_len - base;
    v->len = n;
    v->items = NULL;
    if (n) {
        v->items = arena_alloc(p->doc, n * sizeof(flm_json));
        if (!v->items) { p->failed = true; return false; }
        memcpy(v->items, p->stack + base, n * sizeof(flm_json));
    }
    p->stack_len = base;
    return true;
}

static bool parse_value(parser *p, flm_json *v) {
    memset(v, 0, sizeof *v);
    skip_ws(p);
    if (p->s >= p->end) return perr(p, "unexpected end of input");
    char c = *p->s;
    if (c == '{' || c == '[') {
        if (++p->depth > JSON_MAX_DEPTH) return perr(p, "nesting too deep");
        size_t base = p->stack_len;
        bool obj = c == '{';
        v->type = obj ? JSON_OBJECT : JSON_ARRAY;
        p->s++;
        skip_ws(p);
        if (p->s < p->end && *p->s == (obj ? '}' : ']')) {
            p->s++;
        } else {
            for (;;) {
                flm_json item;
                const char *key = NULL;
                size_t key_len = 0;
                if (obj) {
                    skip_ws(p);
                    if (p->s >= p->end || *p->s != '"') return perr(p, "object key (string) expected");
                    if (!parse_string(p, &key, &key_len)) return false;
                    skip_ws(p);
                    if (p->s >= p->end || *p->s != ':') return perr(p, "':' expected after object key");
                    p->s++;
                }
                if (!parse_value(p, &item)) return false;
                item.key = key;
                item.key_len = key_len;
                if (!push(p, &item)) return false;
                skip_ws(p);
                if (p->s >= p->end) return perr(p, obj ? "unterminated object" : "unterminated array");
                if (*p->s == ',') { p->s++; continue; }
                if (*p->s == (obj ? '}' : ']')) { p->s++; break; }
                return perr(p, obj ? "',' or '}' expected" : "',' or ']' expected");
            }
        }
        p->depth--;
        return finish_container(p, v, base);
    }
    if (c == '"') {
        v->type = JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
    if (c == 't') { v->type = JSON_BOOL; v->boolean = true; return literal(p, "true"); }
    if (c == 'f') { v->type = JSON_BOOL; v->boolean = false; return literal(p, "false"); }
    if (c == 'n') { v->type = JSON_NULL; return literal(p, "null"); }
    /* Python's json also writes NaN / Infinity; accept them (transformers configs may carry them). */
    if (c == 'N') { v->type = JSON_NUMBER; v->number = NAN; return literal(p, "NaN"); }
    if (c == 'I') { v->type = JSON_NUMBER; v->number = INFINITY; return literal(p, "Infinity"); }
    return perr(p, "value expected");
}

flm_json_doc *flm_json_parse(const char *text, size_t len, const char *what) {
    flm_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) { flm_fail(FLM_ERR_NOMEM, "out of memory"); return NULL; }
    /* Number nodes point into the text (`raw`): keep a private copy in the arena. */
    char *copy = arena_alloc(doc, len + 1);
    if (!copy) { flm_json_free(doc); return NULL; }
    memcpy(copy, text, len);
    copy[len] = 0;
    parser p = {.s = copy, .end = copy + len, .start = copy, .what = what ? what : "JSON", .doc = doc};
    /* skip a UTF-8 byte-order mark */
    if (len >= 3 && memcmp(copy, "\xEF\xBB\xBF", 3) == 0) p.s += 3;
    bool ok = parse_value(&p, &doc->root);
    if (ok) {
        skip_ws(&p);
        if (p.s != p.end) ok = perr(&p, "trailing characters after the JSON value");
    }
    free(p.stack);
    if (!ok) { flm_json_free(doc); return NULL; }
    return doc;
}

flm_json_doc *flm_json_parse_file(const char *path) {
    char *text;
    size_t len;
    if (flm_read_file(path, &text, &len) != FLM_OK) return NULL;
    flm_json_doc *d = flm_json_parse(text, len, path);
    free(text);
    return d;
}

const flm_json *flm_json_root(const flm_json_doc *doc) { return doc ? &doc->root : NULL; }

void flm_json_free(flm_json_doc *doc) {
    if (!doc) return;
    arena_block *b = doc->blocks;
    while (b) { arena_block *n = b->next; free(b); b = n; }
    free(doc);
}

const flm_json *flm_json_get(const flm_json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = obj->len; i-- > 0;)
        if (obj->items[i].key_len == kl && memcmp(obj->items[i].key, key, kl) == 0) return &obj->items[i];
    return NULL;
}

const flm_json *flm_json_at(const flm_json *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY || i >= arr->len) return NULL;
    return &arr->items[i];
}

double flm_json_number(const flm_json *v, double def) { return v && v->type == JSON_NUMBER ? v->number : def; }
int64_t flm_json_int(const flm_json *v, int64_t def) {
    if (!v || v->type != JSON_NUMBER || !(v->number == v->number)) return def;
    if (v->number >= 9.2e18 || v->number <= -9.2e18) return def;
    return (int64_t)v->number;
}
bool flm_json_bool(const flm_json *v, bool def) { return v && v->type == JSON_BOOL ? v->boolean : def; }
const char *flm_json_string(const flm_json *v, const char *def) { return v && v->type == JSON_STRING ? v->str : def; }

void flm_json_write(strbuf *sb, const flm_json *v, bool python_style) {
    switch (v->type) {
    case JSON_NULL: flm_sb_puts(sb, "null"); break;
    case JSON_BOOL: flm_sb_puts(sb, v->boolean ? "true" : "false"); break;
    case JSON_NUMBER:
        if (v->raw) flm_sb_append(sb, v->raw, v->raw_len);
        else if (v->number != v->number) flm_sb_puts(sb, "NaN");
        else if (v->number > 0 && v->number * 0.5 == v->number) flm_sb_puts(sb, "Infinity");
        else if (v->number < 0 && v->number * 0.5 == v->number) flm_sb_puts(sb, "-Infinity");
        else flm_sb_printf(sb, "%.17g", v->number);
        break;
    case JSON_STRING: flm_sb_json_string(sb, v->str, v->len, python_style); break;
    case JSON_ARRAY:
    case JSON_OBJECT: {
        bool obj = v->type == JSON_OBJECT;
        flm_sb_putc(sb, obj ? '{' : '[');
        for (size_t i = 0; i < v->len; i++) {
            if (i) flm_sb_puts(sb, python_style ? ", " : ",");
            if (obj) {
                flm_sb_json_string(sb, v->items[i].key, v->items[i].key_len, python_style);
                flm_sb_puts(sb, python_style ? ": " : ":");
            }
            flm_json_write(sb, &v->items[i], python_style);
        }
        flm_sb_putc(sb, obj ? '}' : ']');
        break;
    }
    }
}
