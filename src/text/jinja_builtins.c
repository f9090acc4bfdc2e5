/* jinja_builtins.c — the chat-template engine's library: filters (tojson as
 * transformers overrides it, length, trim, default, join, ...), tests (defined,
 * none, string, ...), the string and dict methods chat templates call
 * (startswith, strip, split, items, get, ...) and the globals transformers and
 * Jinja provide (raise_exception, strftime_now, range, namespace, dict). Each is a
 * table entry; unknown names are rejected when the template is compiled. */
#include "text/jinja.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ---- argument helpers ---- */
/* Positional argument i, or keyword `name`, or NULL. */
static const jvalue *arg(const jargs *a, size_t i, const char *name) {
    if (i < a->npos) return &a->pos[i];
    for (size_t k = 0; k < a->nkw; k++)
        if (name && !strcmp(a->kw[k], name)) return &a->kwv[k];
    return NULL;
}

static int check_args(const jargs *a, size_t maxpos, const char *const *names, const char *what, int line) {
    if (a->npos > maxpos) return flm_jinja_fail(FLM_ERR_ARG, line, "%s takes at most %zu arguments (%zu given)", what, maxpos, a->npos);
    for (size_t k = 0; k < a->nkw; k++) {
        bool ok = false;
        for (size_t i = 0; names && names[i]; i++) ok |= !strcmp(names[i], a->kw[k]);
        if (!ok) return flm_jinja_fail(FLM_ERR_ARG, line, "%s got an unexpected keyword argument '%s'", what, a->kw[k]);
    }
    return 0;
}

static int need_str(const jvalue *v, const char *what, int line) {
    if (v->k == V_STR) return 0;
    if (v->k == V_UNDEF && v->name) return flm_jinja_fail(FLM_ERR_ARG, line, "%s: %s is undefined", what, v->name);
    return flm_jinja_fail(FLM_ERR_ARG, line, "%s expects a string, got %s", what, flm_jv_type_name(v));
}

static int new_str(jctx *cx, strbuf *sb, jvalue *out) {
    if (sb->oom) { flm_sb_free(sb); return flm_fail(FLM_ERR_NOMEM, "template: out of memory"); }
    char *s = flm_ja_strndup(&cx->arena, sb->data ? sb->data : "", sb->len);
    size_t n = sb->len;
    flm_sb_free(sb);
    if (!s) return FLM_ERR_NOMEM;
    *out = flm_jv_str(s, n);
    return 0;
}

static int new_list(jctx *cx, size_t n, jvalue *out, jvalue **items) {
    jlist *l = flm_ja_alloc(&cx->arena, sizeof *l);
    if (!l) return FLM_ERR_NOMEM;
    if (n && !(l->items = flm_ja_alloc(&cx->arena, n * sizeof *l->items))) return FLM_ERR_NOMEM;
    l->n = n;
    *out = (jvalue){.k = V_LIST};
    out->u.list = l;
    *items = l->items;
    return 0;
}

/* ---- UTF-8 helpers (template strings are valid UTF-8: sources are checked and
 * JSON strings are validated by the JSON reader) ---- */
static size_t dec(const char *s, size_t n, int32_t *cp) {
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, cp);
    if (k <= 0) { *cp = (unsigned char)s[0]; return 1; }
    return (size_t)k;
}

static void enc(strbuf *sb, int32_t cp) {
    utf8proc_uint8_t b[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, b);
    flm_sb_append(sb, (const char *)b, (size_t)k);
}

static bool py_space(int32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static bool in_chars(int32_t c, const jvalue *chars) {
    if (!chars) return py_space(c);
    const char *p = chars->u.s.p;
    size_t n = chars->u.s.n;
    for (size_t i = 0; i < n;) {
        int32_t d;
        i += dec(p + i, n - i, &d);
        if (d == c) return true;
    }
    return false;
}

/* Python str.strip/lstrip/rstrip(chars). */
static void strip(const jvalue *s, const jvalue *chars, bool left, bool right, jvalue *out) {
    const char *p = s->u.s.p;
    size_t b = 0, e = s->u.s.n;
    if (left)
        while (b < e) {
            int32_t c;
            size_t k = dec(p + b, e - b, &c);
            if (!in_chars(c, chars)) break;
            b += k;
        }
    if (right)
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
            int32_t c;
            dec(p + st, e - st, &c);
            if (!in_chars(c, chars)) break;
            e = st;
        }
    *out = flm_jv_str(p + b, e - b);
}

typedef enum { CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_CAPITALIZE } case_mode;

static int change_case(jctx *cx, const jvalue *s, case_mode m, jvalue *out) {
    strbuf sb;
    flm_sb_init(&sb);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s->u.s.n;) {
        int32_t c;
        i += dec(s->u.s.p + i, s->u.s.n - i, &c);
        int32_t d;
        switch (m) {
        case CASE_LOWER: d = utf8proc_tolower(c); break;
        case CASE_UPPER: d = utf8proc_toupper(c); break;
        case CASE_CAPITALIZE: d = first ? utf8proc_totitle(c) : utf8proc_tolower(c); break;
        default: {
            bool cased = utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
            d = cased ? (prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c)) : c;
            prev_cased = cased;
        }
        }
        first = false;
        enc(&sb, d);
    }
    return new_str(cx, &sb, out);
}

static bool starts_with(const jvalue *s, const jvalue *p) {
    return p->u.s.n <= s->u.s.n && !memcmp(s->u.s.p, p->u.s.p, p->u.s.n);
}

static bool ends_with(const jvalue *s, const jvalue *p) {
    return p->u.s.n <= s->u.s.n && !memcmp(s->u.s.p + s->u.s.n - p->u.s.n, p->u.s.p, p->u.s.n);
}

/* startswith/endswith accept a string or a tuple/list of strings. */
static int affix(jctx *cx, const jvalue *s, const jvalue *p, bool start, int line, bool *res) {
    if (!p) return flm_jinja_fail(FLM_ERR_ARG, line, "%s needs an argument", start ? "startswith" : "endswith");
    if (p->k == V_STR) { *res = start ? starts_with(s, p) : ends_with(s, p); return 0; }
    if (p->k == V_LIST || (p->k == V_JSON && p->u.j->type == JSON_ARRAY)) {
        jvalue *items;
        size_t n;
        int r = flm_jv_iterate(cx, p, line, &items, &n);
        if (r) return r;
        *res = false;
        for (size_t i = 0; i < n; i++) {
            if ((r = need_str(&items[i], start ? "startswith" : "endswith", line))) return r;
            if (start ? starts_with(s, &items[i]) : ends_with(s, &items[i])) *res = true;
        }
        return 0;
    }
    return need_str(p, start ? "startswith" : "endswith", line);
}

static int split(jctx *cx, const jvalue *s, const jvalue *sep, int64_t maxsplit, int line, jvalue *out) {
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    jvalue parts[4096];
    size_t np = 0;
    if (sep && sep->k == V_NONE) sep = NULL;
    if (sep) {
        int r = need_str(sep, "split", line);
        if (r) return r;
        if (!sep->u.s.n) return flm_jinja_fail(FLM_ERR_ARG, line, "split: empty separator");
        size_t b = 0;
        for (size_t i = 0; i + sep->u.s.n <= n;) {
            if ((maxsplit < 0 || (int64_t)np < maxsplit) && !memcmp(p + i, sep->u.s.p, sep->u.s.n)) {
                if (np == 4095) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "split: more than 4096 parts");
                parts[np++] = flm_jv_str(p + b, i - b);
                i += sep->u.s.n;
                b = i;
            } else i++;
        }
        parts[np++] = flm_jv_str(p + b, n - b);
    } else {
        size_t i = 0;
        for (;;) {
            int32_t c;
            while (i < n) { size_t k = dec(p + i, n - i, &c); if (!py_space(c)) break; i += k; }
            if (i >= n) break;
            if (np == 4095) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "split: more than 4096 parts");
            size_t b = i;
            if (maxsplit >= 0 && (int64_t)np >= maxsplit) {
                parts[np++] = flm_jv_str(p + b, n - b);
                break;
            }
            while (i < n) { size_t k = dec(p + i, n - i, &c); if (py_space(c)) break; i += k; }
            parts[np++] = flm_jv_str(p + b, i - b);
        }
    }
    jvalue *items;
    int r = new_list(cx, np, out, &items);
    if (!r && np) memcpy(items, parts, np * sizeof *items);
    return r;
}

static int replace(jctx *cx, const jvalue *s, const jvalue *old, const jvalue *new_, const jvalue *count, int line, jvalue *out) {
    int r;
    if (!old || !new_) return flm_jinja_fail(FLM_ERR_ARG, line, "replace needs two arguments");
    if ((r = need_str(old, "replace", line)) || (r = need_str(new_, "replace", line))) return r;
    int64_t max = count && count->k == V_INT ? count->u.i : -1;
    strbuf sb;
    flm_sb_init(&sb);
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int64_t done = 0;
    if (!old->u.s.n) { /* Python inserts `new` between characters */
        while (i <= n && (max < 0 || done < max)) {
            flm_sb_append(&sb, new_->u.s.p, new_->u.s.n);
            done++;
            if (i == n) { i++; break; }
            int32_t c;
            size_t k = dec(p + i, n - i, &c);
            flm_sb_append(&sb, p + i, k);
            i += k;
            if (sb.len > JINJA_MAX_OUTPUT) break;
        }
        if (i < n) flm_sb_append(&sb, p + i, n - i);
    } else {
        while (i < n) {
            if ((max < 0 || done < max) && i + old->u.s.n <= n && !memcmp(p + i, old->u.s.p, old->u.s.n)) {
                flm_sb_append(&sb, new_->u.s.p, new_->u.s.n);
                i += old->u.s.n;
                done++;
                if (sb.len > JINJA_MAX_OUTPUT) break;
            } else flm_sb_putc(&sb, p[i++]);
        }
    }
    if (sb.len > JINJA_MAX_OUTPUT) { flm_sb_free(&sb); return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "replace: result too large"); }
    return new_str(cx, &sb, out);
}

/* [key, value] pairs of a mapping. */
static int items(jctx *cx, const jvalue *m, int line, jvalue *out) {
    jvalue *keys;
    size_t n;
    int r = flm_jv_iterate(cx, m, line, &keys, &n);
    jvalue *dst;
    if (r || (r = new_list(cx, n, out, &dst))) return r;
    for (size_t i = 0; i < n; i++) {
        jvalue *pair, v;
        if ((r = new_list(cx, 2, &dst[i], &pair))) return r;
        flm_jv_map_get(m, keys[i].u.s.p, keys[i].u.s.n, &v);
        pair[0] = keys[i];
        pair[1] = v;
    }
    return 0;
}

/* ---------------------------------------------------------------- filters ---- */
typedef int (*filter_fn)(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out);

static int f_tojson(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    static const char *const kw[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
    int r = check_args(a, 4, kw, "tojson", line);
    if (r) return r;
    const jvalue *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"), *sep = arg(a, 2, "separators"),
                 *sk = arg(a, 3, "sort_keys");
    if ((sep && sep->k != V_NONE) || (sk && flm_jv_truthy(sk)))
        return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "tojson: separators= and sort_keys= are not supported");
    int indent = -1;
    if (ind && ind->k == V_INT) indent = ind->u.i < 0 ? 0 : ind->u.i > 64 ? 64 : (int)ind->u.i;
    else if (ind && ind->k != V_NONE) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "tojson: indent must be an integer");
    strbuf sb;
    flm_sb_init(&sb);
    if ((r = flm_jv_tojson(cx, self, &sb, ea && flm_jv_truthy(ea), indent, line))) { flm_sb_free(&sb); return r; }
    return new_str(cx, &sb, out);
}

static int f_length(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)cx; (void)a;
    int64_t n;
    int r = flm_jv_length(self, line, &n);
    if (!r) *out = flm_jv_int(n);
    return r;
}

static int f_trim(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    jvalue s;
    int r = flm_jv_stringify(cx, self, &s);
    if (r) return r;
    const jvalue *chars = arg(a, 0, "chars");
    if (chars && chars->k == V_NONE) chars = NULL;
    if (chars && (r = need_str(chars, "trim", line))) return r;
    strip(&s, chars, true, true, out);
    return 0;
}

static int f_string(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)a; (void)line;
    return flm_jv_stringify(cx, self, out);
}

static int f_case(jctx *cx, const jvalue *self, case_mode m, jvalue *out) {
    jvalue s;
    int r = flm_jv_stringify(cx, self, &s);
    return r ? r : change_case(cx, &s, m, out);
}
static int f_lower(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) { (void)a; (void)line; return f_case(cx, self, CASE_LOWER, out); }
static int f_upper(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) { (void)a; (void)line; return f_case(cx, self, CASE_UPPER, out); }
static int f_title(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) { (void)a; (void)line; return f_case(cx, self, CASE_TITLE, out); }
static int f_capitalize(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) { (void)a; (void)line; return f_case(cx, self, CASE_CAPITALIZE, out); }

static int f_default(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)cx; (void)line;
    const jvalue *dv = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
    bool use = self->k == V_UNDEF || (boolean && flm_jv_truthy(boolean) && !flm_jv_truthy(self));
    *out = use ? (dv ? *dv : flm_jv_str("", 0)) : *self;
    return 0;
}

static int f_first_last(jctx *cx, const jvalue *self, bool last, int line, jvalue *out) {
    jvalue *it;
    size_t n;
    int r = flm_jv_iterate(cx, self, line, &it, &n);
    if (r) return r;
    *out = n ? it[last ? n - 1 : 0] : flm_jv_undef(last ? "'last' of an empty sequence" : "'first' of an empty sequence");
    return 0;
}
static int f_first(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) { (void)a; return f_first_last(cx, self, false, line, out); }
static int f_last(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) { (void)a; return f_first_last(cx, self, true, line, out); }

static int f_join(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    const jvalue *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
    int r;
    if (sep && (r = need_str(sep, "join", line))) return r;
    if (attr) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "join: attribute= is not supported");
    jvalue *it;
    size_t n;
    if ((r = flm_jv_iterate(cx, self, line, &it, &n))) return r;
    strbuf sb;
    flm_sb_init(&sb);
    for (size_t i = 0; i < n; i++) {
        if (i && sep) flm_sb_append(&sb, sep->u.s.p, sep->u.s.n);
        flm_jv_to_str(&it[i], &sb);
        if (sb.len > JINJA_MAX_OUTPUT) { flm_sb_free(&sb); return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "join: result too large"); }
    }
    return new_str(cx, &sb, out);
}

static int f_items(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)a;
    if (self->k == V_UNDEF) { jvalue *d; return new_list(cx, 0, out, &d); }
    if (!flm_jv_is_mapping(self)) return flm_jinja_fail(FLM_ERR_ARG, line, "items: expected a mapping, got %s", flm_jv_type_name(self));
    return items(cx, self, line, out);
}

static int f_list(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)a;
    jvalue *it, *dst;
    size_t n;
    int r = flm_jv_iterate(cx, self, line, &it, &n);
    if (r || (r = new_list(cx, n, out, &dst))) return r;
    if (n) memcpy(dst, it, n * sizeof *dst);
    return 0;
}

static int f_reverse(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)a;
    jvalue *it, *dst;
    size_t n;
    int r = flm_jv_iterate(cx, self, line, &it, &n);
    if (r) return r;
    if (self->k == V_STR) {
        strbuf sb;
        flm_sb_init(&sb);
        for (size_t i = n; i-- > 0;) flm_sb_append(&sb, it[i].u.s.p, it[i].u.s.n);
        return new_str(cx, &sb, out);
    }
    if ((r = new_list(cx, n, out, &dst))) return r;
    for (size_t i = 0; i < n; i++) dst[i] = it[n - 1 - i];
    return 0;
}

static int f_safe(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)cx; (void)a; (void)line;
    *out = *self;
    return 0;
}

static int f_replace(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    jvalue s;
    int r = flm_jv_stringify(cx, self, &s);
    return r ? r : replace(cx, &s, arg(a, 0, "old"), arg(a, 1, "new"), arg(a, 2, "count"), line, out);
}

static int f_int(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)cx; (void)line;
    const jvalue *dv = arg(a, 0, "default");
    int64_t def = dv && dv->k == V_INT ? dv->u.i : 0;
    if (self->k == V_INT) *out = *self;
    else if (self->k == V_BOOL) *out = flm_jv_int(self->u.b);
    else if (self->k == V_FLOAT && isfinite(self->u.f) && fabs(self->u.f) < 9e18) *out = flm_jv_int((int64_t)self->u.f);
    else if (self->k == V_STR) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)(self->u.s.n > 60 ? 60 : self->u.s.n), self->u.s.p);
        char *end;
        long long v = strtoll(buf, &end, 10);
        while (*end == ' ') end++;
        *out = flm_jv_int(end != buf && !*end ? v : def);
    } else *out = flm_jv_int(def);
    return 0;
}

static int f_float(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)cx; (void)line;
    const jvalue *dv = arg(a, 0, "default");
    double def = dv && dv->k == V_FLOAT ? dv->u.f : 0.0;
    if (self->k == V_FLOAT) *out = *self;
    else if (self->k == V_INT) *out = flm_jv_float((double)self->u.i);
    else if (self->k == V_BOOL) *out = flm_jv_float(self->u.b);
    else if (self->k == V_STR) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)(self->u.s.n > 60 ? 60 : self->u.s.n), self->u.s.p);
        char *end;
        double v = strtod(buf, &end);
        *out = flm_jv_float(end != buf && !*end ? v : def);
    } else *out = flm_jv_float(def);
    return 0;
}

static int f_abs(jctx *cx, const jvalue *self, const jargs *a, int line, jvalue *out) {
    (void)cx; (void)a;
    if (self->k == V_INT && self->u.i != INT64_MIN) *out = flm_jv_int(self->u.i < 0 ? -self->u.i : self->u.i);
    else if (self->k == V_FLOAT) *out = flm_jv_float(fabs(self->u.f));
    else if (self->k == V_BOOL) *out = flm_jv_int(self->u.b);
    else return flm_jinja_fail(FLM_ERR_ARG, line, "abs: bad operand %s", flm_jv_type_name(self));
    return 0;
}

static const struct { const char *name; filter_fn fn; } FILTERS[] = {
    {"tojson", f_tojson}, {"length", f_length}, {"count", f_length}, {"trim", f_trim}, {"string", f_string},
    {"lower", f_lower}, {"upper", f_upper}, {"title", f_title}, {"capitalize", f_capitalize},
    {"default", f_default}, {"d", f_default}, {"first", f_first}, {"last", f_last}, {"join", f_join},
    {"items", f_items}, {"list", f_list}, {"reverse", f_reverse}, {"safe", f_safe}, {"replace", f_replace},
    {"int", f_int}, {"float", f_float}, {"abs", f_abs},
};

bool flm_jinja_filter_known(const char *name) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
        if (!strcmp(FILTERS[i].name, name)) return true;
    return false;
}

int flm_jinja_filter(jctx *cx, const char *name, const jvalue *self, const jargs *a, int line, jvalue *out) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
        if (!strcmp(FILTERS[i].name, name)) return FILTERS[i].fn(cx, self, a, line, out);
    return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "unsupported filter '%s'", name);
}

/* ------------------------------------------------------------------ tests ---- */
static const char *const TESTS[] = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true", "false", "mapping",
    "iterable", "sequence", "callable", "even", "odd", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "<",
    "le", "<=", "gt", ">", "ge", ">=", "in", "sameas", "lower", "upper",
};

bool flm_jinja_test_known(const char *name) {
    for (size_t i = 0; i < sizeof TESTS / sizeof *TESTS; i++)
        if (!strcmp(TESTS[i], name)) return true;
    return false;
}

int flm_jinja_test(jctx *cx, const char *name, const jvalue *v, const jargs *a, int line, bool *out) {
    const jvalue *x = arg(a, 0, NULL);
    jvalue none = flm_jv_none();
    if (!x) x = &none;
    jvkind k = v->k;
    if (!strcmp(name, "defined")) *out = k != V_UNDEF;
    else if (!strcmp(name, "undefined")) *out = k == V_UNDEF;
    else if (!strcmp(name, "none")) *out = k == V_NONE;
    else if (!strcmp(name, "string")) *out = k == V_STR;
    else if (!strcmp(name, "number")) *out = k == V_INT || k == V_FLOAT || k == V_BOOL;
    else if (!strcmp(name, "integer")) *out = k == V_INT;
    else if (!strcmp(name, "float")) *out = k == V_FLOAT;
    else if (!strcmp(name, "boolean")) *out = k == V_BOOL;
    else if (!strcmp(name, "true")) *out = k == V_BOOL && v->u.b;
    else if (!strcmp(name, "false")) *out = k == V_BOOL && !v->u.b;
    else if (!strcmp(name, "mapping")) *out = flm_jv_is_mapping(v) && !v->ns;
    else if (!strcmp(name, "iterable")) *out = k == V_UNDEF || k == V_STR || k == V_LIST || k == V_JSON || (k == V_DICT && !v->ns);
    else if (!strcmp(name, "sequence")) *out = k == V_STR || k == V_LIST || k == V_JSON || (k == V_DICT && !v->ns);
    else if (!strcmp(name, "callable")) *out = k == V_FUNC;
    else if (!strcmp(name, "even") || !strcmp(name, "odd")) {
        if (k != V_INT && k != V_BOOL) return flm_jinja_fail(FLM_ERR_ARG, line, "test '%s' needs an integer, got %s", name, flm_jv_type_name(v));
        int64_t i = k == V_INT ? v->u.i : v->u.b;
        *out = (i % 2 == 0) == (name[0] == 'e');
    } else if (!strcmp(name, "divisibleby")) {
        if ((k != V_INT && k != V_BOOL) || x->k != V_INT || x->u.i == 0)
            return flm_jinja_fail(FLM_ERR_ARG, line, "test 'divisibleby' needs non-zero integers");
        int64_t i = k == V_INT ? v->u.i : v->u.b;
        *out = x->u.i == -1 || i % x->u.i == 0;
    } else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) *out = flm_jv_equal(v, x);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *out = !flm_jv_equal(v, x);
    else if (!strcmp(name, "sameas")) {
        *out = (k == x->k && (k == V_NONE || k == V_UNDEF)) || (k == V_BOOL && x->k == V_BOOL && v->u.b == x->u.b);
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (k != V_STR) { *out = false; return 0; }
        jvalue t;
        int r = change_case(cx, v, name[0] == 'l' ? CASE_LOWER : CASE_UPPER, &t);
        if (r) return r;
        *out = flm_jv_equal(v, &t);
    } else if (!strcmp(name, "in")) {
        jvalue res; /* x contains v */
        if (x->k == V_STR) {
            if (k != V_STR) return flm_jinja_fail(FLM_ERR_ARG, line, "test 'in' on a string needs a string");
            *out = false;
            for (size_t i = 0; i + v->u.s.n <= x->u.s.n && !*out; i++) *out = !memcmp(x->u.s.p + i, v->u.s.p, v->u.s.n);
        } else if (flm_jv_is_mapping(x)) *out = k == V_STR && flm_jv_map_get(x, v->u.s.p, v->u.s.n, &res);
        else {
            jvalue *it;
            size_t n;
            int r = flm_jv_iterate(cx, x, line, &it, &n);
            if (r) return r;
            *out = false;
            for (size_t i = 0; i < n && !*out; i++) *out = flm_jv_equal(v, &it[i]);
        }
    } else {
        /* ordering tests */
        if ((k == V_INT || k == V_FLOAT || k == V_BOOL) && (x->k == V_INT || x->k == V_FLOAT || x->k == V_BOOL)) {
            double p = k == V_INT ? (double)v->u.i : k == V_FLOAT ? v->u.f : v->u.b;
            double q = x->k == V_INT ? (double)x->u.i : x->k == V_FLOAT ? x->u.f : x->u.b;
            int c = p < q ? -1 : p > q;
            if (!strcmp(name, "lt") || !strcmp(name, "<")) *out = c < 0;
            else if (!strcmp(name, "le") || !strcmp(name, "<=")) *out = c <= 0;
            else if (!strcmp(name, "gt") || !strcmp(name, ">")) *out = c > 0;
            else *out = c >= 0;
        } else return flm_jinja_fail(FLM_ERR_ARG, line, "test '%s' needs numbers", name);
    }
    return 0;
}

/* ---------------------------------------------------------------- methods ---- */
int flm_jinja_method(jctx *cx, const jvalue *self, const char *name, const jargs *a, int line, jvalue *out) {
    int r;
    if (self->k == V_STR) {
        bool res = false;
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            if ((r = affix(cx, self, arg(a, 0, NULL), name[0] == 's', line, &res))) return r;
            *out = flm_jv_bool(res);
            return 0;
        }
        if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
            const jvalue *chars = arg(a, 0, NULL);
            if (chars && chars->k == V_NONE) chars = NULL;
            if (chars && (r = need_str(chars, name, line))) return r;
            strip(self, chars, name[0] != 'r', name[0] != 'l', out);
            return 0;
        }
        if (!strcmp(name, "split")) {
            const jvalue *ms = arg(a, 1, "maxsplit");
            return split(cx, self, arg(a, 0, "sep"), ms && ms->k == V_INT ? ms->u.i : -1, line, out);
        }
        if (!strcmp(name, "upper")) return change_case(cx, self, CASE_UPPER, out);
        if (!strcmp(name, "lower")) return change_case(cx, self, CASE_LOWER, out);
        if (!strcmp(name, "title")) return change_case(cx, self, CASE_TITLE, out);
        if (!strcmp(name, "capitalize")) return change_case(cx, self, CASE_CAPITALIZE, out);
        if (!strcmp(name, "replace")) return replace(cx, self, arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, NULL), line, out);
        if (!strcmp(name, "find")) {
            const jvalue *sub = arg(a, 0, NULL);
            if (!sub) return flm_jinja_fail(FLM_ERR_ARG, line, "find needs an argument");
            if ((r = need_str(sub, "find", line))) return r;
            int64_t pos = -1, cp = 0;
            for (size_t i = 0; i + sub->u.s.n <= self->u.s.n; i++) {
                if (((unsigned char)self->u.s.p[i] & 0xc0) == 0x80) continue;
                if (!memcmp(self->u.s.p + i, sub->u.s.p, sub->u.s.n)) { pos = cp; break; }
                cp++;
            }
            *out = flm_jv_int(pos);
            return 0;
        }
    } else if (flm_jv_is_mapping(self) && !self->ns) {
        if (!strcmp(name, "items")) return items(cx, self, line, out);
        if (!strcmp(name, "keys") || !strcmp(name, "values")) {
            jvalue *keys, *dst;
            size_t n;
            if ((r = flm_jv_iterate(cx, self, line, &keys, &n)) || (r = new_list(cx, n, out, &dst))) return r;
            for (size_t i = 0; i < n; i++) {
                if (name[0] == 'k') dst[i] = keys[i];
                else flm_jv_map_get(self, keys[i].u.s.p, keys[i].u.s.n, &dst[i]);
            }
            return 0;
        }
        if (!strcmp(name, "get")) {
            const jvalue *k = arg(a, 0, NULL), *def = arg(a, 1, NULL);
            if (!k) return flm_jinja_fail(FLM_ERR_ARG, line, "get needs a key");
            if (k->k == V_STR && flm_jv_map_get(self, k->u.s.p, k->u.s.n, out)) return 0;
            *out = def ? *def : flm_jv_none();
            return 0;
        }
    }
    if (flm_jv_is_mapping(self)) { /* a callable stored under that key is not supported */
        jvalue v;
        if (flm_jv_map_get(self, name, strlen(name), &v) && v.k == V_FUNC) return flm_jinja_call_global(cx, v.u.func, a, line, out);
    }
    return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "unsupported method '%s' on a %s", name, flm_jv_type_name(self));
}

/* ---------------------------------------------------------------- globals ---- */
static int make_dict_from_kwargs(jctx *cx, const jargs *a, bool ns, jvalue *out) {
    jdict *d = flm_ja_alloc(&cx->arena, sizeof *d);
    if (!d) return FLM_ERR_NOMEM;
    size_t cap = a->nkw ? a->nkw : 1;
    d->keys = flm_ja_alloc(&cx->arena, cap * sizeof *d->keys);
    d->klens = flm_ja_alloc(&cx->arena, cap * sizeof *d->klens);
    d->vals = flm_ja_alloc(&cx->arena, cap * sizeof *d->vals);
    if (!d->keys || !d->klens || !d->vals) return FLM_ERR_NOMEM;
    d->cap = cap;
    for (size_t i = 0; i < a->nkw; i++) {
        d->keys[d->n] = a->kw[i];
        d->klens[d->n] = strlen(a->kw[i]);
        d->vals[d->n++] = a->kwv[i];
    }
    *out = (jvalue){.k = V_DICT, .ns = ns};
    out->u.dict = d;
    return 0;
}

int flm_jinja_call_global(jctx *cx, int func, const jargs *a, int line, jvalue *out) {
    switch (func) {
    case JF_RAISE_EXCEPTION: {
        const jvalue *m = arg(a, 0, NULL);
        strbuf sb;
        flm_sb_init(&sb);
        if (m) flm_jv_to_str(m, &sb);
        int r = flm_jinja_fail(FLM_ERR_ARG, line, "the template raised an error: %s", sb.data ? sb.data : "");
        flm_sb_free(&sb);
        return r;
    }
    case JF_STRFTIME_NOW: {
        const jvalue *f = arg(a, 0, NULL);
        if (!f || f->k != V_STR) return flm_jinja_fail(FLM_ERR_ARG, line, "strftime_now needs a format string");
        char fmt[256], buf[512];
        snprintf(fmt, sizeof fmt, "%.*s", (int)(f->u.s.n > 200 ? 200 : f->u.s.n), f->u.s.p);
        time_t t = time(NULL);
        struct tm tmv;
        localtime_r(&t, &tmv);
        size_t n = strftime(buf, sizeof buf, fmt, &tmv);
        char *s = flm_ja_strndup(&cx->arena, buf, n);
        if (!s) return FLM_ERR_NOMEM;
        *out = flm_jv_str(s, n);
        return 0;
    }
    case JF_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->npos < 1 || a->npos > 3 || a->nkw) return flm_jinja_fail(FLM_ERR_ARG, line, "range takes 1 to 3 integers");
        for (size_t i = 0; i < a->npos; i++) {
            if (a->pos[i].k != V_INT && a->pos[i].k != V_BOOL) return flm_jinja_fail(FLM_ERR_ARG, line, "range takes integers");
            v[a->npos == 1 ? 1 : i] = a->pos[i].k == V_INT ? a->pos[i].u.i : a->pos[i].u.b;
        }
        if (!v[2]) return flm_jinja_fail(FLM_ERR_ARG, line, "range step must not be zero");
        double cnt = v[2] > 0 ? ceil(((double)v[1] - (double)v[0]) / (double)v[2]) : ceil(((double)v[0] - (double)v[1]) / -(double)v[2]);
        if (cnt < 0) cnt = 0;
        if (cnt > JINJA_MAX_RANGE) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "range of %.0f elements is too large", cnt);
        jvalue *items;
        int r = new_list(cx, (size_t)cnt, out, &items);
        for (size_t i = 0; !r && i < (size_t)cnt; i++) items[i] = flm_jv_int(v[0] + (int64_t)i * v[2]);
        return r;
    }
    case JF_NAMESPACE:
    case JF_DICT:
        if (a->npos) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "%s() takes keyword arguments only", func == JF_DICT ? "dict" : "namespace");
        return make_dict_from_kwargs(cx, a, func == JF_NAMESPACE, out);
    default: return flm_jinja_fail(FLM_ERR_ARG, line, "not callable");
    }
}
