/* jinja_parse.c — the chat-template engine's front end: the lexer (with
 * Jinja's whitespace rules as transformers configures them: trim_blocks and
 * lstrip_blocks on, keep_trailing_newline off, "-"/"+" markers) and a
 * recursive-descent parser that builds the syntax tree of src/text/jinja.h. Unsupported
 * tags are rejected here, with their line. */
#include "text/jinja.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ whitespace ---- */
/* Python's str.isspace() set (what Jinja's \s and rstrip() use), in UTF-8.
 * Length of the whitespace character starting at s (0 if none). */
static size_t ws_fwd(const unsigned char *s, size_t n) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n >= 3) {
        unsigned d = s[1], e = s[2];
        if (c == 0xe1 && d == 0x9a && e == 0x80) return 3;                 /* U+1680 */
        if (c == 0xe2 && d == 0x80 && (e <= 0x8a || e == 0xa8 || e == 0xa9 || e == 0xaf)) return 3;
        if (c == 0xe2 && d == 0x81 && e == 0x9f) return 3;                 /* U+205F */
        if (c == 0xe3 && d == 0x80 && e == 0x80) return 3;                 /* U+3000 */
    }
    return 0;
}

/* Length of the whitespace character ending at s[n-1] (0 if none). */
static size_t ws_back(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (ws_fwd(s + n - k, k) == k) return k;
    return 0;
}

/* ----------------------------------------------------------------- lexer ---- */
typedef enum { T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING,
               T_INT, T_FLOAT, T_OP, T_EOF } tkind;

typedef struct {
    tkind k;
    int line;
    const char *s;
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    const char *src;
    size_t len, pos;
    int line;
    jarena *arena;
    tok *toks;
    size_t ntoks, cap;
    bool oom;
} lexer;

static int push_tok(lexer *L, tkind k, int line, const char *s, size_t n) {
    if (L->ntoks == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        tok *t = flm_realloc(L->toks, cap * sizeof *t);
        if (!t) return FLM_ERR_NOMEM;
        L->toks = t;
        L->cap = cap;
    }
    L->toks[L->ntoks++] = (tok){k, line, s, n, 0, 0};
    return 0;
}

static int count_lines(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_utf8(strbuf *sb, uint32_t cp) {
    char b[4];
    if (cp < 0x80) { b[0] = (char)cp; flm_sb_append(sb, b, 1); }
    else if (cp < 0x800) { b[0] = (char)(0xc0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3f)); flm_sb_append(sb, b, 2); }
    else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f)); flm_sb_append(sb, b, 3);
    } else {
        b[0] = (char)(0xf0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); b[3] = (char)(0x80 | (cp & 0x3f)); flm_sb_append(sb, b, 4);
    }
}

/* A string literal, decoded like Python's "unicode-escape" (what Jinja applies).
 * Unknown escapes are kept as written, as Python does. */
static int lex_string(lexer *L) {
    char q = L->src[L->pos];
    int line = L->line;
    size_t i = L->pos + 1;
    strbuf sb;
    flm_sb_init(&sb);
    for (;;) {
        if (i >= L->len) { flm_sb_free(&sb); return flm_jinja_fail(FLM_ERR_FORMAT, line, "unterminated string literal"); }
        char c = L->src[i];
        if (c == q) break;
        if (c == '\n') L->line++;
        if (c != '\\') { flm_sb_putc(&sb, c); i++; continue; }
        if (i + 1 >= L->len) { i++; continue; } /* reported as unterminated above */
        char e = L->src[i + 1];
        i += 2;
        int ndig = 0;
        switch (e) {
        case 'n': flm_sb_putc(&sb, '\n'); break;
        case 't': flm_sb_putc(&sb, '\t'); break;
        case 'r': flm_sb_putc(&sb, '\r'); break;
        case 'b': flm_sb_putc(&sb, '\b'); break;
        case 'f': flm_sb_putc(&sb, '\f'); break;
        case 'v': flm_sb_putc(&sb, '\v'); break;
        case 'a': flm_sb_putc(&sb, '\a'); break;
        case '\\': flm_sb_putc(&sb, '\\'); break;
        case '\'': flm_sb_putc(&sb, '\''); break;
        case '"': flm_sb_putc(&sb, '"'); break;
        case '\n': L->line++; break; /* line continuation */
        case 'x': ndig = 2; break;
        case 'u': ndig = 4; break;
        case 'U': ndig = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                uint32_t v = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < L->len && L->src[i] >= '0' && L->src[i] <= '7'; k++)
                    v = v * 8 + (uint32_t)(L->src[i++] - '0');
                put_utf8(&sb, v);
            } else {
                flm_sb_putc(&sb, '\\');
                flm_sb_putc(&sb, e);
                if (e == '\n') L->line++;
            }
        }
        if (ndig) {
            uint32_t v = 0;
            for (int k = 0; k < ndig; k++) {
                int h = i < L->len ? hexval(L->src[i]) : -1;
                if (h < 0) { flm_sb_free(&sb); return flm_jinja_fail(FLM_ERR_FORMAT, L->line, "bad \\%c escape in string literal", e); }
                v = v * 16 + (uint32_t)h;
                i++;
            }
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
                flm_sb_free(&sb);
                return flm_jinja_fail(FLM_ERR_UNSUPPORTED, L->line, "escape \\%c%0*X is not a Unicode scalar value", e, ndig, v);
            }
            put_utf8(&sb, v);
        }
    }
    if (sb.oom) { flm_sb_free(&sb); return FLM_ERR_NOMEM; }
    char *s = flm_ja_strndup(L->arena, sb.data ? sb.data : "", sb.len);
    size_t n = sb.len;
    flm_sb_free(&sb);
    if (!s) return FLM_ERR_NOMEM;
    L->pos = i + 1;
    return push_tok(L, T_STRING, line, s, n);
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int lex_number(lexer *L) {
    size_t i = L->pos;
    bool is_float = false;
    char buf[128];
    size_t bn = 0;
#define TAKE_DIGITS()                                                                 \
    while (i < L->len && (is_digit(L->src[i]) || (L->src[i] == '_' && i + 1 < L->len && is_digit(L->src[i + 1])))) { \
        if (L->src[i] != '_' && bn < sizeof buf - 4) buf[bn++] = L->src[i];          \
        i++;                                                                          \
    }
    TAKE_DIGITS();
    if (i + 1 < L->len && L->src[i] == '.' && is_digit(L->src[i + 1])) {
        is_float = true;
        if (bn < sizeof buf - 4) buf[bn++] = '.';
        i++;
        TAKE_DIGITS();
    }
    if (i < L->len && (L->src[i] == 'e' || L->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->len && (L->src[j] == '+' || L->src[j] == '-')) j++;
        if (j < L->len && is_digit(L->src[j])) {
            is_float = true;
            if (bn < sizeof buf - 3) { buf[bn++] = 'e'; if (j > i + 1) buf[bn++] = L->src[i + 1]; }
            i = j;
            TAKE_DIGITS();
        }
    }
#undef TAKE_DIGITS
    buf[bn] = 0;
    if (i - L->pos > 100) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, L->line, "number literal too long");
    int r = push_tok(L, is_float ? T_FLOAT : T_INT, L->line, L->src + L->pos, i - L->pos);
    if (r) return r;
    tok *t = &L->toks[L->ntoks - 1];
    if (is_float) t->f = strtod(buf, NULL);
    else {
        errno = 0;
        char *end;
        long long v = strtoll(buf, &end, 10);
        if (errno) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, L->line, "integer literal %s does not fit in 64 bits", buf);
        t->i = v;
    }
    L->pos = i;
    return 0;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", ">=", "<="};
static const char OPS1[] = "+-/*%~[](){}><=.:|,;";

/* Lexes the inside of a {{ }} or {% %} tag, up to and including its end. */
static int lex_tag(lexer *L, bool is_block, int open_line, bool *ends_newline) {
    int depth = 0;
    for (;;) {
        if (L->pos >= L->len)
            return flm_jinja_fail(FLM_ERR_FORMAT, open_line, "%s opened here is never closed", is_block ? "'{%'" : "'{{'");
        char c = L->src[L->pos];
        size_t w = ws_fwd((const unsigned char *)L->src + L->pos, L->len - L->pos);
        if (w) {
            if (c == '\n') L->line++;
            L->pos += w;
            continue;
        }
        const char *p = L->src + L->pos;
        size_t left = L->len - L->pos;
        char e = is_block ? '%' : '}';
        if (depth == 0) {
            size_t endlen = 0;
            int mode = 0; /* 0 plain, 1 '-' strip, 2 '+' keep */
            if (left >= 3 && p[0] == '-' && p[1] == e && p[2] == '}') { endlen = 3; mode = 1; }
            else if (is_block && left >= 3 && p[0] == '+' && p[1] == '%' && p[2] == '}') { endlen = 3; mode = 2; }
            else if (left >= 2 && p[0] == e && p[1] == '}') endlen = 2;
            if (endlen) {
                int r = push_tok(L, is_block ? T_BLOCK_END : T_VAR_END, L->line, p, endlen);
                if (r) return r;
                L->pos += endlen;
                *ends_newline = false;
                if (mode == 1) {
                    size_t k;
                    while ((k = ws_fwd((const unsigned char *)L->src + L->pos, L->len - L->pos))) {
                        if (L->src[L->pos] == '\n') { L->line++; *ends_newline = true; }
                        else *ends_newline = false;
                        L->pos += k;
                    }
                } else if (mode == 0 && is_block && L->pos < L->len && L->src[L->pos] == '\n') {
                    L->pos++; /* trim_blocks */
                    L->line++;
                    *ends_newline = true;
                }
                return 0;
            }
        }
        int r;
        if (c == '\'' || c == '"') r = lex_string(L);
        else if (is_digit(c)) r = lex_number(L);
        else if (is_name_start(c)) {
            size_t i = L->pos;
            while (i < L->len && (is_name_start(L->src[i]) || is_digit(L->src[i]))) i++;
            r = push_tok(L, T_NAME, L->line, p, i - L->pos);
            L->pos = i;
        } else {
            size_t n = 0;
            for (size_t k = 0; k < sizeof OPS2 / sizeof *OPS2; k++)
                if (left >= 2 && p[0] == OPS2[k][0] && p[1] == OPS2[k][1]) n = 2;
            if (!n && c && strchr(OPS1, c)) n = 1;
            if (!n) {
                if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                    return flm_jinja_fail(FLM_ERR_FORMAT, L->line, "unexpected character '%c'", c);
                return flm_jinja_fail(FLM_ERR_FORMAT, L->line, "unexpected byte 0x%02X", (unsigned char)c);
            }
            if (c == '(' || c == '[' || c == '{') depth++;
            if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
            r = push_tok(L, T_OP, L->line, p, n);
            L->pos += n;
        }
        if (r) return r;
    }
}

/* Index of the next "{{", "{%" or "{#" at or after `from`, or len. */
static size_t find_tag(const char *s, size_t len, size_t from) {
    for (size_t i = from; i + 1 < len; i++)
        if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) return i;
    return len;
}

static bool all_ws(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = ws_fwd((const unsigned char *)s + i, n - i))) i += k;
    return i == n;
}

/* Applies the strip rules to the text before a tag and emits it. */
static int emit_text(lexer *L, const char *text, size_t n, int line, char sign, bool lstrip_ok, bool line_starting) {
    if (sign == '-') {
        size_t k;
        while (n && (k = ws_back((const unsigned char *)text, n))) n -= k;
    } else if (sign != '+' && lstrip_ok) {
        size_t l_pos = n;
        while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
        if ((l_pos > 0 || line_starting) && all_ws(text + l_pos, n - l_pos)) n = l_pos;
    }
    if (!n) return 0;
    return push_tok(L, T_DATA, line, text, n);
}

/* Is there "{%[-+]? *NAME *[-+]?%}" at i? Sets *end past it, *strip_after for "-%}". */
static bool match_simple_tag(const char *s, size_t len, size_t i, const char *name, size_t *end, char *sign,
                             char *end_sign) {
    if (i + 2 > len || s[i] != '{' || s[i + 1] != '%') return false;
    size_t j = i + 2;
    *sign = 0;
    if (j < len && (s[j] == '-' || s[j] == '+')) *sign = s[j++];
    size_t k;
    while (j < len && (k = ws_fwd((const unsigned char *)s + j, len - j))) j += k;
    size_t nl = strlen(name);
    if (j + nl > len || memcmp(s + j, name, nl)) return false;
    j += nl;
    if (j < len && (is_name_start(s[j]) || is_digit(s[j]))) return false;
    while (j < len && (k = ws_fwd((const unsigned char *)s + j, len - j))) j += k;
    *end_sign = 0;
    if (j < len && (s[j] == '-' || s[j] == '+')) *end_sign = s[j++];
    if (j + 2 > len || s[j] != '%' || s[j + 1] != '}') return false;
    *end = j + 2;
    return true;
}

static int lex_all(lexer *L) {
    bool line_starting = true;
    const char *s = L->src;
    while (L->pos < L->len) {
        size_t t = find_tag(s, L->len, L->pos);
        int text_line = L->line;
        const char *text = s + L->pos;
        size_t tn = t - L->pos;
        if (t >= L->len) { /* trailing data */
            int r = push_tok(L, T_DATA, text_line, text, tn);
            if (r) return r;
            L->line += count_lines(text, tn);
            break;
        }
        L->line += count_lines(text, tn);
        char kind = s[t + 1];
        char sign = (t + 2 < L->len && (s[t + 2] == '-' || s[t + 2] == '+')) ? s[t + 2] : 0;
        int tag_line = L->line;
        /* {% raw %} ... {% endraw %} */
        size_t raw_end;
        char rs, res;
        if (kind == '%' && match_simple_tag(s, L->len, t, "raw", &raw_end, &rs, &res) && res != '+') {
            int r = emit_text(L, text, tn, text_line, sign, true, line_starting);
            if (r) return r;
            L->line += count_lines(s + t, raw_end - t);
            size_t body = raw_end;
            if (res == '-') {
                size_t k;
                while (body < L->len && (k = ws_fwd((const unsigned char *)s + body, L->len - body))) {
                    L->line += s[body] == '\n';
                    body += k;
                }
            }
            size_t q = body, end = 0;
            char es = 0, ees = 0;
            for (; q < L->len; q++)
                if (match_simple_tag(s, L->len, q, "endraw", &end, &es, &ees)) break;
            if (q >= L->len) return flm_jinja_fail(FLM_ERR_FORMAT, tag_line, "'raw' block is never closed with 'endraw'");
            int body_line = L->line;
            L->line += count_lines(s + body, q - body);
            r = emit_text(L, s + body, q - body, body_line, es, true, false);
            if (r) return r;
            L->line += count_lines(s + q, end - q);
            L->pos = end;
            line_starting = false;
            if (ees == '-') {
                size_t k;
                while (L->pos < L->len && (k = ws_fwd((const unsigned char *)s + L->pos, L->len - L->pos))) {
                    line_starting = s[L->pos] == '\n';
                    L->line += line_starting;
                    L->pos += k;
                }
            } else if (ees != '+' && L->pos < L->len && s[L->pos] == '\n') {
                L->pos++;
                L->line++;
                line_starting = true;
            }
            continue;
        }
        int r = emit_text(L, text, tn, text_line, sign, kind != '{', line_starting);
        if (r) return r;
        L->pos = t + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t q = L->pos;
            while (q + 1 < L->len && !(s[q] == '#' && s[q + 1] == '}')) q++;
            if (q + 1 >= L->len) return flm_jinja_fail(FLM_ERR_FORMAT, tag_line, "comment '{#' is never closed");
            char cs = q > L->pos ? s[q - 1] : 0;
            L->line += count_lines(s + L->pos, q + 2 - L->pos);
            L->pos = q + 2;
            line_starting = false;
            if (cs == '-') {
                size_t k;
                while (L->pos < L->len && (k = ws_fwd((const unsigned char *)s + L->pos, L->len - L->pos))) {
                    line_starting = s[L->pos] == '\n';
                    L->line += line_starting;
                    L->pos += k;
                }
            } else if (cs != '+' && L->pos < L->len && s[L->pos] == '\n') {
                L->pos++;
                L->line++;
                line_starting = true;
            }
            continue;
        }
        bool is_block = kind == '%';
        r = push_tok(L, is_block ? T_BLOCK_BEGIN : T_VAR_BEGIN, tag_line, s + t, 2);
        if (r) return r;
        r = lex_tag(L, is_block, tag_line, &line_starting);
        if (r) return r;
    }
    return push_tok(L, T_EOF, L->line, "", 0);
}

/* ---------------------------------------------------------------- parser ---- */
typedef struct {
    tok *t;
    size_t pos, n;
    jarena *arena;
    int nest;
    int loops;
} parser;

static tok *cur(parser *P) { return &P->t[P->pos]; }
static bool is_op(const tok *t, const char *op) { return t->k == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static bool is_name(const tok *t, const char *nm) { return t->k == T_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n); }
static bool skip_op(parser *P, const char *op) { if (is_op(cur(P), op)) { P->pos++; return true; } return false; }
static bool skip_name(parser *P, const char *nm) { if (is_name(cur(P), nm)) { P->pos++; return true; } return false; }

static const char *tok_desc(const tok *t, char *buf, size_t n) {
    switch (t->k) {
    case T_EOF: return "end of template";
    case T_DATA: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    default: snprintf(buf, n, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    }
}

static int unexpected(parser *P, const char *wanted) {
    char b[64];
    return flm_jinja_fail(FLM_ERR_FORMAT, cur(P)->line, "expected %s, found %s", wanted, tok_desc(cur(P), b, sizeof b));
}

static int expect_op(parser *P, const char *op) {
    if (skip_op(P, op)) return 0;
    char w[16];
    snprintf(w, sizeof w, "'%s'", op);
    return unexpected(P, w);
}

static jexpr *mk(parser *P, jexpr_kind k, int line) {
    jexpr *e = flm_ja_alloc(P->arena, sizeof *e);
    if (e) { e->kind = k; e->line = line; }
    return e;
}

/* Growable argument vector used while parsing lists, calls and dicts. */
typedef struct { jexpr **v; const char **kw; size_t n, cap; } argvec;

static int av_push(argvec *a, jexpr *e, const char *kw) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        jexpr **v = flm_realloc(a->v, cap * sizeof *v);
        if (!v) return FLM_ERR_NOMEM;
        a->v = v;
        const char **k = flm_realloc(a->kw, cap * sizeof *k);
        if (!k) return FLM_ERR_NOMEM;
        a->kw = k;
        a->cap = cap;
    }
    a->v[a->n] = e;
    a->kw[a->n] = kw;
    a->n++;
    return 0;
}

static int av_finish(parser *P, argvec *a, jexpr *e, bool keep_kw) {
    int r = 0;
    e->nargs = a->n;
    if (a->n) {
        e->args = flm_ja_alloc(P->arena, a->n * sizeof *e->args);
        if (!e->args) r = FLM_ERR_NOMEM;
        else memcpy(e->args, a->v, a->n * sizeof *e->args);
        bool any_kw = false;
        for (size_t i = 0; i < a->n; i++) any_kw |= a->kw[i] != NULL;
        if (!r && keep_kw && any_kw) {
            e->kw = flm_ja_alloc(P->arena, a->n * sizeof *e->kw);
            if (!e->kw) r = FLM_ERR_NOMEM;
            else memcpy(e->kw, a->kw, a->n * sizeof *e->kw);
        }
    }
    free(a->v);
    free(a->kw);
    return r;
}

static int parse_expr(parser *P, jexpr **out);
static int parse_or(parser *P, jexpr **out);
static int parse_unary(parser *P, bool with_filter, jexpr **out);
static int parse_primary(parser *P, jexpr **out);
static int parse_postfix(parser *P, jexpr **e);

static char *tokstr(parser *P, const tok *t) { return flm_ja_strndup(P->arena, t->s, t->n); }

/* "(" args ")" with keyword arguments; the "(" is current. */
static int parse_call_args(parser *P, jexpr *e) {
    argvec a = {0};
    int r = 0;
    P->pos++; /* ( */
    while (!r && !is_op(cur(P), ")")) {
        if (a.n && (r = expect_op(P, ","))) break;
        if (is_op(cur(P), ")")) break;
        const char *kw = NULL;
        if (cur(P)->k == T_NAME && is_op(&P->t[P->pos + 1], "=")) {
            if (!(kw = tokstr(P, cur(P)))) { r = FLM_ERR_NOMEM; break; }
            P->pos += 2;
        } else if (is_op(cur(P), "*")) {
            r = flm_jinja_fail(FLM_ERR_UNSUPPORTED, cur(P)->line, "'*' / '**' argument unpacking is not supported");
            break;
        }
        jexpr *v;
        if ((r = parse_expr(P, &v))) break;
        r = av_push(&a, v, kw);
    }
    if (!r) r = expect_op(P, ")");
    int r2 = av_finish(P, &a, e, true);
    return r ? r : r2;
}

static int parse_postfix(parser *P, jexpr **e) {
    for (;;) {
        tok *t = cur(P);
        int line = t->line;
        if (is_op(t, ".")) {
            P->pos++;
            tok *nt = cur(P);
            if (nt->k == T_NAME) {
                jexpr *x = mk(P, E_ATTR, line);
                if (!x || !(x->s = tokstr(P, nt))) return FLM_ERR_NOMEM;
                x->n = nt->n;
                x->a = *e;
                P->pos++;
                *e = x;
            } else if (nt->k == T_INT) {
                jexpr *idx = mk(P, E_INT, line), *x = mk(P, E_ITEM, line);
                if (!idx || !x) return FLM_ERR_NOMEM;
                idx->i = nt->i;
                x->a = *e;
                x->b = idx;
                P->pos++;
                *e = x;
            } else return unexpected(P, "an attribute name after '.'");
        } else if (is_op(t, "[")) {
            P->pos++;
            jexpr *parts[3] = {NULL, NULL, NULL};
            int np = 0, r;
            bool slice = false;
            for (;;) {
                if (!is_op(cur(P), ":") && !is_op(cur(P), "]")) {
                    if ((r = parse_expr(P, &parts[np]))) return r;
                }
                if (skip_op(P, ":")) {
                    slice = true;
                    if (++np > 2) return unexpected(P, "']'");
                    continue;
                }
                break;
            }
            if ((r = expect_op(P, "]"))) return r;
            jexpr *x = mk(P, slice ? E_SLICE : E_ITEM, line);
            if (!x) return FLM_ERR_NOMEM;
            x->a = *e;
            x->b = parts[0];
            x->c = parts[1];
            x->d = parts[2];
            if (!slice && !parts[0]) return flm_jinja_fail(FLM_ERR_FORMAT, line, "empty subscript '[]'");
            *e = x;
        } else if (is_op(t, "(")) {
            jexpr *x = mk(P, E_CALL, line);
            if (!x) return FLM_ERR_NOMEM;
            x->a = *e;
            int r = parse_call_args(P, x);
            if (r) return r;
            *e = x;
        } else return 0;
    }
}

/* name(.name)* as used after "|" and "is". */
static int parse_dotted_name(parser *P, const char **out, size_t *n) {
    if (cur(P)->k != T_NAME) return unexpected(P, "a name");
    tok *t = cur(P);
    if (is_op(&P->t[P->pos + 1], ".")) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, t->line, "dotted filter/test names are not supported");
    P->pos++;
    *out = tokstr(P, t);
    *n = t->n;
    return *out ? 0 : FLM_ERR_NOMEM;
}

static int parse_filter_expr(parser *P, jexpr **e) {
    for (;;) {
        tok *t = cur(P);
        int r;
        if (is_op(t, "|")) {
            P->pos++;
            jexpr *x = mk(P, E_FILTER, cur(P)->line);
            if (!x) return FLM_ERR_NOMEM;
            if ((r = parse_dotted_name(P, &x->s, &x->n))) return r;
            if (!flm_jinja_filter_known(x->s))
                return flm_jinja_fail(FLM_ERR_UNSUPPORTED, x->line, "unsupported filter '%s'", x->s);
            x->a = *e;
            if (is_op(cur(P), "(") && (r = parse_call_args(P, x))) return r;
            *e = x;
        } else if (is_name(t, "is")) {
            P->pos++;
            jexpr *x = mk(P, E_TEST, t->line);
            if (!x) return FLM_ERR_NOMEM;
            x->neg = skip_name(P, "not");
            if ((r = parse_dotted_name(P, &x->s, &x->n))) return r;
            if (!flm_jinja_test_known(x->s))
                return flm_jinja_fail(FLM_ERR_UNSUPPORTED, x->line, "unsupported test '%s'", x->s);
            x->a = *e;
            tok *c = cur(P);
            if (is_op(c, "(")) {
                if ((r = parse_call_args(P, x))) return r;
            } else if ((c->k == T_NAME || c->k == T_STRING || c->k == T_INT || c->k == T_FLOAT ||
                        is_op(c, "[") || is_op(c, "{")) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                jexpr *arg;
                if ((r = parse_primary(P, &arg)) || (r = parse_postfix(P, &arg))) return r;
                x->args = flm_ja_alloc(P->arena, sizeof *x->args);
                if (!x->args) return FLM_ERR_NOMEM;
                x->args[0] = arg;
                x->nargs = 1;
            }
            *e = x;
        } else if (is_op(t, "(")) {
            jexpr *x = mk(P, E_CALL, t->line);
            if (!x) return FLM_ERR_NOMEM;
            x->a = *e;
            if ((r = parse_call_args(P, x))) return r;
            *e = x;
        } else return 0;
    }
}

static int parse_primary(parser *P, jexpr **out) {
    tok *t = cur(P);
    int line = t->line, r;
    if (++P->nest > JINJA_MAX_NEST) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "expression nested too deeply");
    jexpr *e = NULL;
    if (t->k == T_NAME) {
        P->pos++;
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
            if (!(e = mk(P, E_BOOL, line))) return FLM_ERR_NOMEM;
            e->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (is_name(t, "none") || is_name(t, "None")) {
            if (!(e = mk(P, E_NONE, line))) return FLM_ERR_NOMEM;
        } else {
            if (!(e = mk(P, E_NAME, line)) || !(e->s = tokstr(P, t))) return FLM_ERR_NOMEM;
            e->n = t->n;
        }
    } else if (t->k == T_STRING) {
        /* adjacent literals concatenate */
        strbuf sb;
        flm_sb_init(&sb);
        while (cur(P)->k == T_STRING) { flm_sb_append(&sb, cur(P)->s, cur(P)->n); P->pos++; }
        e = mk(P, E_STR, line);
        if (e) e->s = flm_ja_strndup(P->arena, sb.data ? sb.data : "", sb.len);
        if (e) e->n = sb.len;
        bool bad = sb.oom || !e || !e->s;
        flm_sb_free(&sb);
        if (bad) return FLM_ERR_NOMEM;
    } else if (t->k == T_INT || t->k == T_FLOAT) {
        P->pos++;
        if (!(e = mk(P, t->k == T_INT ? E_INT : E_FLOAT, line))) return FLM_ERR_NOMEM;
        e->i = t->i;
        e->f = t->f;
    } else if (is_op(t, "(")) {
        P->pos++;
        argvec a = {0};
        bool tuple = false;
        r = 0;
        while (!is_op(cur(P), ")")) {
            if (a.n) {
                if ((r = expect_op(P, ","))) break;
                tuple = true;
                if (is_op(cur(P), ")")) break;
            }
            jexpr *v;
            if ((r = parse_expr(P, &v)) || (r = av_push(&a, v, NULL))) break;
        }
        if (!r) r = expect_op(P, ")");
        if (!r && a.n == 1 && !tuple) {
            e = a.v[0];
            free(a.v);
            free(a.kw);
        } else {
            e = mk(P, E_TUPLE, line);
            int r2 = e ? av_finish(P, &a, e, false) : FLM_ERR_NOMEM;
            if (!e) { free(a.v); free(a.kw); }
            if (!r) r = r2;
        }
        if (r) return r;
    } else if (is_op(t, "[") || is_op(t, "{")) {
        bool dict = t->s[0] == '{';
        const char *close = dict ? "}" : "]";
        P->pos++;
        argvec a = {0};
        r = 0;
        while (!is_op(cur(P), close)) {
            if (a.n && ((r = expect_op(P, ",")) || is_op(cur(P), close))) break;
            jexpr *v;
            if ((r = parse_expr(P, &v)) || (r = av_push(&a, v, NULL))) break;
            if (dict) {
                if ((r = expect_op(P, ":")) || (r = parse_expr(P, &v)) || (r = av_push(&a, v, NULL))) break;
            }
        }
        if (!r) r = expect_op(P, close);
        e = mk(P, dict ? E_DICT : E_LIST, line);
        int r2 = e ? av_finish(P, &a, e, false) : FLM_ERR_NOMEM;
        if (!e) { free(a.v); free(a.kw); }
        if (r || r2) return r ? r : r2;
    } else {
        return unexpected(P, "an expression");
    }
    P->nest--;
    *out = e;
    return 0;
}

static int parse_unary(parser *P, bool with_filter, jexpr **out) {
    tok *t = cur(P);
    int r;
    jexpr *e;
    if (++P->nest > JINJA_MAX_NEST) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, t->line, "expression nested too deeply");
    if (is_op(t, "-") || is_op(t, "+")) {
        P->pos++;
        jexpr *x;
        if ((r = parse_unary(P, false, &x))) return r;
        if (!(e = mk(P, t->s[0] == '-' ? E_NEG : E_POS, t->line))) return FLM_ERR_NOMEM;
        e->a = x;
    } else {
        if ((r = parse_primary(P, &e))) return r;
        if ((r = parse_postfix(P, &e))) return r;
    }
    if (with_filter && (r = parse_filter_expr(P, &e))) return r;
    P->nest--;
    *out = e;
    return 0;
}

static int bin(parser *P, int op, int line, jexpr *a, jexpr *b, jexpr **out) {
    jexpr *e = mk(P, E_BIN, line);
    if (!e) return FLM_ERR_NOMEM;
    e->op = op;
    e->a = a;
    e->b = b;
    *out = e;
    return 0;
}

static int parse_pow(parser *P, jexpr **out) {
    int r = parse_unary(P, true, out);
    while (!r && is_op(cur(P), "**")) {
        int line = cur(P)->line;
        P->pos++;
        jexpr *b;
        if ((r = parse_unary(P, true, &b))) break;
        r = bin(P, OP_POW, line, *out, b, out);
    }
    return r;
}

static int parse_math2(parser *P, jexpr **out) {
    int r = parse_pow(P, out);
    for (;;) {
        if (r) return r;
        tok *t = cur(P);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV : is_op(t, "%") ? OP_MOD : 0;
        if (!op) return 0;
        P->pos++;
        jexpr *b;
        if ((r = parse_pow(P, &b))) return r;
        r = bin(P, op, t->line, *out, b, out);
    }
}

static int parse_concat(parser *P, jexpr **out) {
    int r = parse_math2(P, out);
    while (!r && is_op(cur(P), "~")) {
        int line = cur(P)->line;
        P->pos++;
        jexpr *b;
        if ((r = parse_math2(P, &b))) break;
        r = bin(P, OP_CONCAT, line, *out, b, out);
    }
    return r;
}

static int parse_math1(parser *P, jexpr **out) {
    int r = parse_concat(P, out);
    for (;;) {
        if (r) return r;
        tok *t = cur(P);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return 0;
        P->pos++;
        jexpr *b;
        if ((r = parse_concat(P, &b))) return r;
        r = bin(P, op, t->line, *out, b, out);
    }
}

static int parse_compare(parser *P, jexpr **out) {
    jexpr *first;
    int r = parse_math1(P, &first);
    if (r) return r;
    argvec a = {0};
    int ops[64], nops = 0, line = cur(P)->line;
    for (;;) {
        tok *t = cur(P);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT : is_op(t, "<=") ? OP_LE
               : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE : is_name(t, "in") ? OP_IN : 0;
        if (!op && is_name(t, "not") && is_name(&P->t[P->pos + 1], "in")) { op = OP_NOTIN; P->pos++; }
        if (!op) break;
        P->pos++;
        if (nops == 64) { r = flm_jinja_fail(FLM_ERR_UNSUPPORTED, t->line, "comparison chain too long"); break; }
        jexpr *b;
        if ((r = parse_math1(P, &b)) || (r = av_push(&a, b, NULL))) break;
        ops[nops++] = op;
    }
    if (r || !nops) { free(a.v); free(a.kw); *out = first; return r; }
    jexpr *e = mk(P, E_CMP, line);
    if (!e) { free(a.v); free(a.kw); return FLM_ERR_NOMEM; }
    e->a = first;
    e->cmp_ops = flm_ja_alloc(P->arena, (size_t)nops * sizeof *e->cmp_ops);
    if (!e->cmp_ops) { free(a.v); free(a.kw); return FLM_ERR_NOMEM; }
    memcpy(e->cmp_ops, ops, (size_t)nops * sizeof *ops);
    if ((r = av_finish(P, &a, e, false))) return r;
    *out = e;
    return 0;
}

static int parse_not(parser *P, jexpr **out) {
    tok *t = cur(P);
    if (is_name(t, "not")) {
        if (++P->nest > JINJA_MAX_NEST) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, t->line, "expression nested too deeply");
        P->pos++;
        jexpr *x, *e;
        int r = parse_not(P, &x);
        if (r) return r;
        if (!(e = mk(P, E_NOT, t->line))) return FLM_ERR_NOMEM;
        e->a = x;
        *out = e;
        P->nest--;
        return 0;
    }
    return parse_compare(P, out);
}

static int parse_and(parser *P, jexpr **out) {
    int r = parse_not(P, out);
    while (!r && is_name(cur(P), "and")) {
        jexpr *e = mk(P, E_AND, cur(P)->line);
        if (!e) return FLM_ERR_NOMEM;
        P->pos++;
        e->a = *out;
        if ((r = parse_not(P, &e->b))) break;
        *out = e;
    }
    return r;
}

static int parse_or(parser *P, jexpr **out) {
    int r = parse_and(P, out);
    while (!r && is_name(cur(P), "or")) {
        jexpr *e = mk(P, E_OR, cur(P)->line);
        if (!e) return FLM_ERR_NOMEM;
        P->pos++;
        e->a = *out;
        if ((r = parse_and(P, &e->b))) break;
        *out = e;
    }
    return r;
}

static int parse_expr(parser *P, jexpr **out) {
    if (++P->nest > JINJA_MAX_NEST) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, cur(P)->line, "expression nested too deeply");
    int r = parse_or(P, out);
    while (!r && is_name(cur(P), "if")) {
        jexpr *e = mk(P, E_COND, cur(P)->line);
        if (!e) return FLM_ERR_NOMEM;
        P->pos++;
        e->a = *out;
        if ((r = parse_or(P, &e->b))) break;
        if (skip_name(P, "else") && (r = parse_expr(P, &e->c))) break;
        *out = e;
    }
    P->nest--;
    return r;
}

/* ---- statements ---- */
static const char *const UNSUPPORTED_TAGS[] = {
    "macro", "endmacro", "call", "endcall", "filter", "endfilter", "with", "endwith", "block", "endblock",
    "extends", "include", "import", "from", "autoescape", "endautoescape", "do", "trans", "endtrans",
    "pluralize", "print",
};

static int expect_block_end(parser *P) {
    if (cur(P)->k == T_BLOCK_END) { P->pos++; return 0; }
    return unexpected(P, "'%}'");
}

static int parse_body(parser *P, const char *const *ends, size_t nends, jstmt **out, const char **hit, int open_line,
                      const char *open_tag);

static jstmt *mks(parser *P, jstmt_kind k, int line) {
    jstmt *s = flm_ja_alloc(P->arena, sizeof *s);
    if (s) { s->kind = k; s->line = line; }
    return s;
}

static int parse_targets(parser *P, jstmt *s, const char *what) {
    const char *names[16];
    size_t n = 0;
    bool paren = skip_op(P, "(");
    do {
        if (cur(P)->k != T_NAME) return unexpected(P, what);
        if (n == 16) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, cur(P)->line, "too many targets");
        if (!(names[n++] = tokstr(P, cur(P)))) return FLM_ERR_NOMEM;
        P->pos++;
    } while (skip_op(P, ","));
    if (paren) {
        int r = expect_op(P, ")");
        if (r) return r;
    }
    s->targets = flm_ja_alloc(P->arena, n * sizeof *s->targets);
    if (!s->targets) return FLM_ERR_NOMEM;
    memcpy(s->targets, names, n * sizeof *names);
    s->ntargets = n;
    return 0;
}

static int parse_if(parser *P, int line, jstmt **out) {
    jstmt *s = mks(P, S_IF, line);
    if (!s) return FLM_ERR_NOMEM;
    int r;
    const char *hit;
    static const char *const ends[] = {"elif", "else", "endif"};
    if ((r = parse_expr(P, &s->expr)) || (r = expect_block_end(P))) return r;
    if ((r = parse_body(P, ends, 3, &s->body, &hit, line, "if"))) return r;
    if (!strcmp(hit, "elif")) {
        if ((r = parse_if(P, P->t[P->pos - 1].line, &s->else_body))) return r;
    } else if (!strcmp(hit, "else")) {
        static const char *const endif[] = {"endif"};
        if ((r = expect_block_end(P)) || (r = parse_body(P, endif, 1, &s->else_body, &hit, line, "if"))) return r;
        if ((r = expect_block_end(P))) return r;
    } else if ((r = expect_block_end(P))) return r;
    *out = s;
    return 0;
}

static int parse_statement(parser *P, jstmt **out) {
    tok *t = cur(P);
    int line = t->line, r;
    if (t->k != T_NAME) return unexpected(P, "a tag name");
    const char *hit;
    if (is_name(t, "if")) {
        P->pos++;
        return parse_if(P, line, out);
    }
    if (is_name(t, "for")) {
        P->pos++;
        jstmt *s = mks(P, S_FOR, line);
        if (!s) return FLM_ERR_NOMEM;
        if ((r = parse_targets(P, s, "a loop variable name"))) return r;
        if (!skip_name(P, "in")) return unexpected(P, "'in'");
        if ((r = parse_or(P, &s->expr))) return r;
        if (skip_name(P, "if") && (r = parse_expr(P, &s->filter))) return r;
        if (is_name(cur(P), "recursive"))
            return flm_jinja_fail(FLM_ERR_UNSUPPORTED, cur(P)->line, "recursive for loops are not supported");
        if ((r = expect_block_end(P))) return r;
        static const char *const ends[] = {"else", "endfor"};
        P->loops++;
        r = parse_body(P, ends, 2, &s->body, &hit, line, "for");
        P->loops--;
        if (r) return r;
        if ((r = expect_block_end(P))) return r;
        if (!strcmp(hit, "else")) {
            static const char *const endfor[] = {"endfor"};
            if ((r = parse_body(P, endfor, 1, &s->else_body, &hit, line, "for")) || (r = expect_block_end(P))) return r;
        }
        *out = s;
        return 0;
    }
    if (is_name(t, "set")) {
        P->pos++;
        jstmt *s = mks(P, S_SET, line);
        if (!s) return FLM_ERR_NOMEM;
        if (cur(P)->k == T_NAME && is_op(&P->t[P->pos + 1], ".")) {
            if (!(s->targets = flm_ja_alloc(P->arena, sizeof *s->targets)) || !(s->targets[0] = tokstr(P, cur(P))))
                return FLM_ERR_NOMEM;
            s->ntargets = 1;
            P->pos += 2;
            if (cur(P)->k != T_NAME) return unexpected(P, "an attribute name");
            if (!(s->attr = tokstr(P, cur(P)))) return FLM_ERR_NOMEM;
            P->pos++;
        } else if ((r = parse_targets(P, s, "a variable name"))) return r;
        if (skip_op(P, "=")) {
            if ((r = parse_expr(P, &s->expr))) return r;
            if (is_op(cur(P), ",")) {
                /* set x = a, b  -> tuple */
                argvec a = {0};
                if ((r = av_push(&a, s->expr, NULL))) { free(a.v); free(a.kw); return r; }
                while (!r && skip_op(P, ",")) {
                    jexpr *v;
                    if (cur(P)->k == T_BLOCK_END) break;
                    if (!(r = parse_expr(P, &v))) r = av_push(&a, v, NULL);
                }
                jexpr *tu = r ? NULL : mk(P, E_TUPLE, line);
                if (!tu) { free(a.v); free(a.kw); return r ? r : FLM_ERR_NOMEM; }
                if ((r = av_finish(P, &a, tu, false))) return r;
                s->expr = tu;
            }
            if ((r = expect_block_end(P))) return r;
        } else {
            if (s->attr || s->ntargets != 1) return unexpected(P, "'='");
            if (is_op(cur(P), "|"))
                return flm_jinja_fail(FLM_ERR_UNSUPPORTED, cur(P)->line, "filters on block 'set' are not supported");
            if ((r = expect_block_end(P))) return r;
            s->kind = S_SET_BLOCK;
            static const char *const ends[] = {"endset"};
            if ((r = parse_body(P, ends, 1, &s->body, &hit, line, "set")) || (r = expect_block_end(P))) return r;
        }
        *out = s;
        return 0;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!P->loops) return flm_jinja_fail(FLM_ERR_FORMAT, line, "'%.*s' outside a for loop", (int)t->n, t->s);
        P->pos++;
        jstmt *s = mks(P, t->s[0] == 'b' ? S_BREAK : S_CONTINUE, line);
        if (!s) return FLM_ERR_NOMEM;
        if ((r = expect_block_end(P))) return r;
        *out = s;
        return 0;
    }
    if (is_name(t, "generation")) { /* transformers' assistant-mask tag: renders its body */
        P->pos++;
        jstmt *s = mks(P, S_BLOCK, line);
        if (!s) return FLM_ERR_NOMEM;
        static const char *const ends[] = {"endgeneration"};
        if ((r = expect_block_end(P)) || (r = parse_body(P, ends, 1, &s->body, &hit, line, "generation")) ||
            (r = expect_block_end(P)))
            return r;
        *out = s;
        return 0;
    }
    for (size_t i = 0; i < sizeof UNSUPPORTED_TAGS / sizeof *UNSUPPORTED_TAGS; i++)
        if (is_name(t, UNSUPPORTED_TAGS[i]))
            return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "unsupported tag '%s'", UNSUPPORTED_TAGS[i]);
    return flm_jinja_fail(FLM_ERR_FORMAT, line, "unknown or misplaced tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
}

/* Parses statements until "{% END" for one of `ends` (consumed up to the name), or
 * EOF when nends == 0. */
static int parse_body(parser *P, const char *const *ends, size_t nends, jstmt **out, const char **hit, int open_line,
                      const char *open_tag) {
    jstmt *head = NULL, **tail = &head;
    if (++P->nest > JINJA_MAX_NEST) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, cur(P)->line, "blocks nested too deeply");
    for (;;) {
        tok *t = cur(P);
        jstmt *s = NULL;
        int r;
        if (t->k == T_EOF) {
            if (nends)
                return flm_jinja_fail(FLM_ERR_FORMAT, open_line, "'%s' opened here is never closed (expected '%s' before the end)",
                                  open_tag, ends[nends - 1]);
            break;
        }
        if (t->k == T_DATA) {
            if (!(s = mks(P, S_TEXT, t->line))) return FLM_ERR_NOMEM;
            s->text = t->s;
            s->n = t->n;
            P->pos++;
        } else if (t->k == T_VAR_BEGIN) {
            P->pos++;
            if (!(s = mks(P, S_OUTPUT, t->line))) return FLM_ERR_NOMEM;
            if ((r = parse_expr(P, &s->expr))) return r;
            if (cur(P)->k != T_VAR_END) return unexpected(P, "'}}'");
            P->pos++;
        } else if (t->k == T_BLOCK_BEGIN) {
            tok *nt = &P->t[P->pos + 1];
            for (size_t i = 0; i < nends; i++)
                if (is_name(nt, ends[i])) {
                    P->pos += 2;
                    *hit = ends[i];
                    *tail = NULL;
                    *out = head;
                    P->nest--;
                    return 0;
                }
            if (nt->k == T_NAME && nt->n >= 3 && (!memcmp(nt->s, "end", 3) || is_name(nt, "else") || is_name(nt, "elif"))) {
                bool unsupported_end = false;
                for (size_t i = 0; i < sizeof UNSUPPORTED_TAGS / sizeof *UNSUPPORTED_TAGS; i++)
                    unsupported_end |= is_name(nt, UNSUPPORTED_TAGS[i]);
                if (!unsupported_end) {
                    if (nends)
                        return flm_jinja_fail(FLM_ERR_FORMAT, nt->line, "unexpected '%.*s' (the '%s' on line %d expects '%s')",
                                          (int)nt->n, nt->s, open_tag, open_line, ends[nends - 1]);
                    return flm_jinja_fail(FLM_ERR_FORMAT, nt->line, "unexpected '%.*s' with no open block", (int)nt->n, nt->s);
                }
            }
            P->pos++;
            if ((r = parse_statement(P, &s))) return r;
        } else {
            return unexpected(P, "template text or a tag");
        }
        *tail = s;
        tail = &s->next;
    }
    *tail = NULL;
    *out = head;
    P->nest--;
    return 0;
}

int flm_jinja_parse(const char *src, size_t len, jarena *arena, jstmt **out) {
    *out = NULL;
    if (len > JINJA_MAX_SOURCE) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, 0, "source of %zu bytes is too large", len);
    /* Jinja's lexer first normalises \r\n and \r to \n and drops one trailing newline
     * (keep_trailing_newline is off). */
    char *norm = flm_ja_alloc(arena, len + 1);
    if (!norm) return FLM_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else norm[n++] = src[i];
    }
    if (n && norm[n - 1] == '\n') n--;
    norm[n] = 0;
    lexer L = {.src = norm, .len = n, .line = 1, .arena = arena};
    int r = lex_all(&L);
    if (!r) {
        parser P = {.t = L.toks, .n = L.ntoks, .arena = arena};
        const char *hit = NULL;
        r = parse_body(&P, NULL, 0, out, &hit, 0, "");
    }
    free(L.toks);
    return r;
}
