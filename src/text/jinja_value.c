/* jinja_value.c — runtime values of the chat-template engine: constructors, Python
 * truthiness / equality / len / iteration over template values and borrowed JSON,
 * str() as Jinja prints values, and json.dumps() as transformers' tojson filter
 * (ensure_ascii=False, separators ", " and ": ", key order kept). */
#include "text/jinja.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

jvalue flm_jv_undef(const char *name) { jvalue v = {.k = V_UNDEF}; v.name = name; return v; }
jvalue flm_jv_none(void) { jvalue v = {.k = V_NONE}; return v; }
jvalue flm_jv_bool(bool b) { jvalue v = {.k = V_BOOL}; v.u.b = b; return v; }
jvalue flm_jv_int(int64_t i) { jvalue v = {.k = V_INT}; v.u.i = i; return v; }
jvalue flm_jv_float(double f) { jvalue v = {.k = V_FLOAT}; v.u.f = f; return v; }
jvalue flm_jv_str(const char *p, size_t n) { jvalue v = {.k = V_STR}; v.u.s.p = p; v.u.s.n = n; return v; }

jvalue flm_jv_from_json(const flm_json *j) {
    if (!j) return flm_jv_undef(NULL);
    switch (j->type) {
    case JSON_NULL: return flm_jv_none();
    case JSON_BOOL: return flm_jv_bool(j->boolean);
    case JSON_NUMBER:
        if (j->is_int && j->number >= -9.2e18 && j->number <= 9.2e18) return flm_jv_int(flm_json_int(j, 0));
        return flm_jv_float(j->number);
    case JSON_STRING: return flm_jv_str(j->str, j->len);
    default: { jvalue v = {.k = V_JSON}; v.u.j = j; return v; }
    }
}

bool flm_jv_is_mapping(const jvalue *v) {
    return v->k == V_DICT || (v->k == V_JSON && v->u.j->type == JSON_OBJECT);
}

bool flm_jv_is_sequence(const jvalue *v) {
    return v->k == V_LIST || v->k == V_STR || (v->k == V_JSON && v->u.j->type == JSON_ARRAY);
}

bool flm_jv_truthy(const jvalue *v) {
    switch (v->k) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v->u.b;
    case V_INT: return v->u.i != 0;
    case V_FLOAT: return v->u.f != 0.0;
    case V_STR: return v->u.s.n != 0;
    case V_LIST: return v->u.list->n != 0;
    case V_DICT: return v->ns || v->u.dict->n != 0;
    case V_JSON: return v->u.j->len != 0;
    default: return true;
    }
}

const char *flm_jv_type_name(const jvalue *v) {
    switch (v->k) {
    case V_UNDEF: return "undefined";
    case V_NONE: return "none";
    case V_BOOL: return "boolean";
    case V_INT: return "integer";
    case V_FLOAT: return "float";
    case V_STR: return "string";
    case V_LIST: return "list";
    case V_DICT: return v->ns ? "namespace" : "dict";
    case V_JSON: return v->u.j->type == JSON_ARRAY ? "list" : "dict";
    case V_LOOP: return "loop";
    default: return "function";
    }
}

bool flm_jv_map_get(const jvalue *m, const char *key, size_t klen, jvalue *out) {
    if (m->k == V_DICT) {
        const jdict *d = m->u.dict;
        for (size_t i = d->n; i-- > 0;)
            if (d->klens[i] == klen && !memcmp(d->keys[i], key, klen)) { *out = d->vals[i]; return true; }
        return false;
    }
    if (m->k == V_JSON && m->u.j->type == JSON_OBJECT) {
        const flm_json *o = m->u.j;
        for (size_t i = o->len; i-- > 0;)
            if (o->items[i].key_len == klen && !memcmp(o->items[i].key, key, klen)) {
                *out = flm_jv_from_json(&o->items[i]);
                return true;
            }
    }
    return false;
}

static size_t utf8_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

int flm_jv_length(const jvalue *v, int line, int64_t *out) {
    switch (v->k) {
    case V_UNDEF: *out = 0; return 0;
    case V_STR: *out = (int64_t)utf8_len(v->u.s.p, v->u.s.n); return 0;
    case V_LIST: *out = (int64_t)v->u.list->n; return 0;
    case V_DICT: *out = (int64_t)v->u.dict->n; return 0;
    case V_JSON: *out = (int64_t)v->u.j->len; return 0;
    default: return flm_jinja_fail(FLM_ERR_ARG, line, "object of type %s has no length", flm_jv_type_name(v));
    }
}

int flm_jv_iterate(jctx *cx, const jvalue *v, int line, jvalue **items, size_t *n) {
    *items = NULL;
    *n = 0;
    switch (v->k) {
    case V_UNDEF: return 0;
    case V_LIST: *items = v->u.list->items; *n = v->u.list->n; return 0;
    case V_DICT: {
        const jdict *d = v->u.dict;
        if (!d->n) return 0;
        jvalue *it = flm_ja_alloc(&cx->arena, d->n * sizeof *it);
        if (!it) return FLM_ERR_NOMEM;
        for (size_t i = 0; i < d->n; i++) it[i] = flm_jv_str(d->keys[i], d->klens[i]);
        *items = it;
        *n = d->n;
        return 0;
    }
    case V_JSON: {
        const flm_json *j = v->u.j;
        if (!j->len) return 0;
        jvalue *it = flm_ja_alloc(&cx->arena, j->len * sizeof *it);
        if (!it) return FLM_ERR_NOMEM;
        for (size_t i = 0; i < j->len; i++)
            it[i] = j->type == JSON_ARRAY ? flm_jv_from_json(&j->items[i]) : flm_jv_str(j->items[i].key, j->items[i].key_len);
        *items = it;
        *n = j->len;
        return 0;
    }
    case V_STR: {
        size_t cnt = utf8_len(v->u.s.p, v->u.s.n);
        if (!cnt) return 0;
        jvalue *it = flm_ja_alloc(&cx->arena, cnt * sizeof *it);
        if (!it) return FLM_ERR_NOMEM;
        const char *p = v->u.s.p, *end = p + v->u.s.n;
        for (size_t i = 0; i < cnt; i++) {
            const char *q = p + 1;
            while (q < end && ((unsigned char)*q & 0xc0) == 0x80) q++;
            it[i] = flm_jv_str(p, (size_t)(q - p));
            p = q;
        }
        *items = it;
        *n = cnt;
        return 0;
    }
    default: return flm_jinja_fail(FLM_ERR_ARG, line, "object of type %s is not iterable", flm_jv_type_name(v));
    }
}

static bool is_num(const jvalue *v) { return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL; }
static double num(const jvalue *v) { return v->k == V_INT ? (double)v->u.i : v->k == V_FLOAT ? v->u.f : v->u.b; }

/* Element i of a list or JSON array. */
static jvalue seq_at(const jvalue *v, size_t i) {
    if (v->k == V_LIST) return v->u.list->items[i];
    return flm_jv_from_json(&v->u.j->items[i]);
}

static size_t seq_len(const jvalue *v) { return v->k == V_LIST ? v->u.list->n : v->u.j->len; }

static bool map_key_at(const jvalue *m, size_t i, const char **k, size_t *kn, jvalue *val) {
    if (m->k == V_DICT) { *k = m->u.dict->keys[i]; *kn = m->u.dict->klens[i]; *val = m->u.dict->vals[i]; }
    else { *k = m->u.j->items[i].key; *kn = m->u.j->items[i].key_len; *val = flm_jv_from_json(&m->u.j->items[i]); }
    return true;
}

static size_t map_len(const jvalue *m) { return m->k == V_DICT ? m->u.dict->n : m->u.j->len; }

bool flm_jv_equal(const jvalue *a, const jvalue *b) {
    if (a->k == V_UNDEF || b->k == V_UNDEF) return a->k == b->k;
    if (a->k == V_NONE || b->k == V_NONE) return a->k == b->k;
    if (is_num(a) && is_num(b)) {
        if (a->k != V_FLOAT && b->k != V_FLOAT) {
            int64_t x = a->k == V_INT ? a->u.i : a->u.b, y = b->k == V_INT ? b->u.i : b->u.b;
            return x == y;
        }
        return num(a) == num(b);
    }
    if (a->k == V_STR && b->k == V_STR) return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    bool sa = (a->k == V_LIST || (a->k == V_JSON && a->u.j->type == JSON_ARRAY));
    bool sb = (b->k == V_LIST || (b->k == V_JSON && b->u.j->type == JSON_ARRAY));
    if (sa && sb) {
        size_t n = seq_len(a);
        if (n != seq_len(b)) return false;
        for (size_t i = 0; i < n; i++) {
            jvalue x = seq_at(a, i), y = seq_at(b, i);
            if (!flm_jv_equal(&x, &y)) return false;
        }
        return true;
    }
    if (flm_jv_is_mapping(a) && flm_jv_is_mapping(b) && !a->ns && !b->ns) {
        size_t n = map_len(a);
        if (n != map_len(b)) return false;
        for (size_t i = 0; i < n; i++) {
            const char *k;
            size_t kn;
            jvalue x, y;
            map_key_at(a, i, &k, &kn, &x);
            if (!flm_jv_map_get(b, k, kn, &y) || !flm_jv_equal(&x, &y)) return false;
        }
        return true;
    }
    if (a->k == V_DICT && b->k == V_DICT) return a->u.dict == b->u.dict;
    if (a->k == V_LOOP && b->k == V_LOOP) return a->u.loop == b->u.loop;
    if (a->k == V_FUNC && b->k == V_FUNC) return a->u.func == b->u.func;
    return false;
}

/* Python's repr(float): the shortest string that reads back to the same double. */
void flm_jv_float_repr(double f, strbuf *sb) {
    if (isnan(f)) { flm_sb_puts(sb, "nan"); return; }
    if (isinf(f)) { flm_sb_puts(sb, f < 0 ? "-inf" : "inf"); return; }
    char buf[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf: [-]d[.ddd]e[+-]XX */
    const char *p = buf;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[32];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = exp10 + 1;
    if (neg) flm_sb_putc(sb, '-');
    if (decpt > -4 + 0 && decpt <= 16 && !(decpt <= -4)) {
        if (decpt <= 0) {
            flm_sb_puts(sb, "0.");
            for (int i = 0; i < -decpt; i++) flm_sb_putc(sb, '0');
            flm_sb_append(sb, digits, (size_t)nd);
        } else if (decpt >= nd) {
            flm_sb_append(sb, digits, (size_t)nd);
            for (int i = nd; i < decpt; i++) flm_sb_putc(sb, '0');
            flm_sb_puts(sb, ".0");
        } else {
            flm_sb_append(sb, digits, (size_t)decpt);
            flm_sb_putc(sb, '.');
            flm_sb_append(sb, digits + decpt, (size_t)(nd - decpt));
        }
    } else {
        flm_sb_putc(sb, digits[0]);
        if (nd > 1) { flm_sb_putc(sb, '.'); flm_sb_append(sb, digits + 1, (size_t)(nd - 1)); }
        flm_sb_printf(sb, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

/* Python repr() of a str (ASCII escapes; other characters as they are). */
static void str_repr(strbuf *sb, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    flm_sb_putc(sb, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == (unsigned char)q || c == '\\') { flm_sb_putc(sb, '\\'); flm_sb_putc(sb, (char)c); }
        else if (c == '\n') flm_sb_puts(sb, "\\n");
        else if (c == '\r') flm_sb_puts(sb, "\\r");
        else if (c == '\t') flm_sb_puts(sb, "\\t");
        else if (c < 0x20 || c == 0x7f) flm_sb_printf(sb, "\\x%02x", c);
        else flm_sb_putc(sb, (char)c);
    }
    flm_sb_putc(sb, q);
}

static void repr(const jvalue *v, strbuf *sb, int depth) {
    if (depth > 200) { flm_sb_puts(sb, "..."); return; }
    switch (v->k) {
    case V_STR: str_repr(sb, v->u.s.p, v->u.s.n); return;
    case V_UNDEF: flm_sb_puts(sb, "Undefined"); return;
    case V_LIST: case V_JSON: case V_DICT:
        if (flm_jv_is_mapping(v)) {
            if (v->ns) { flm_sb_puts(sb, "<Namespace>"); return; }
            flm_sb_putc(sb, '{');
            for (size_t i = 0; i < map_len(v); i++) {
                const char *k;
                size_t kn;
                jvalue x;
                map_key_at(v, i, &k, &kn, &x);
                if (i) flm_sb_puts(sb, ", ");
                str_repr(sb, k, kn);
                flm_sb_puts(sb, ": ");
                repr(&x, sb, depth + 1);
            }
            flm_sb_putc(sb, '}');
        } else {
            bool tuple = v->k == V_LIST && v->u.list->tuple;
            flm_sb_putc(sb, tuple ? '(' : '[');
            for (size_t i = 0; i < seq_len(v); i++) {
                jvalue x = seq_at(v, i);
                if (i) flm_sb_puts(sb, ", ");
                repr(&x, sb, depth + 1);
            }
            if (tuple && seq_len(v) == 1) flm_sb_putc(sb, ',');
            flm_sb_putc(sb, tuple ? ')' : ']');
        }
        return;
    default: flm_jv_to_str(v, sb);
    }
}

void flm_jv_to_str(const jvalue *v, strbuf *sb) {
    switch (v->k) {
    case V_UNDEF: return;
    case V_NONE: flm_sb_puts(sb, "None"); return;
    case V_BOOL: flm_sb_puts(sb, v->u.b ? "True" : "False"); return;
    case V_INT: flm_sb_printf(sb, "%lld", (long long)v->u.i); return;
    case V_FLOAT: flm_jv_float_repr(v->u.f, sb); return;
    case V_STR: flm_sb_append(sb, v->u.s.p, v->u.s.n); return;
    case V_LOOP: flm_sb_puts(sb, "<LoopContext>"); return;
    case V_FUNC: flm_sb_puts(sb, "<function>"); return;
    default: repr(v, sb, 0);
    }
}

int flm_jv_stringify(jctx *cx, const jvalue *v, jvalue *out) {
    if (v->k == V_STR) { *out = *v; return 0; }
    strbuf sb;
    flm_sb_init(&sb);
    flm_jv_to_str(v, &sb);
    if (sb.oom) { flm_sb_free(&sb); return flm_fail(FLM_ERR_NOMEM, "template: out of memory"); }
    char *s = flm_ja_strndup(&cx->arena, sb.data ? sb.data : "", sb.len);
    size_t n = sb.len;
    flm_sb_free(&sb);
    if (!s) return FLM_ERR_NOMEM;
    *out = flm_jv_str(s, n);
    return 0;
}

static void newline_indent(strbuf *sb, int indent, int level) {
    flm_sb_putc(sb, '\n');
    for (int i = 0; i < indent * level; i++) flm_sb_putc(sb, ' ');
}

static int tojson_rec(jctx *cx, const jvalue *v, strbuf *sb, bool ascii, int indent, int level, int line) {
    if (level > 256) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "tojson: value nested too deeply");
    if (sb->len > JINJA_MAX_OUTPUT) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "tojson: output too large");
    switch (v->k) {
    case V_NONE: flm_sb_puts(sb, "null"); return 0;
    case V_BOOL: flm_sb_puts(sb, v->u.b ? "true" : "false"); return 0;
    case V_INT: flm_sb_printf(sb, "%lld", (long long)v->u.i); return 0;
    case V_FLOAT:
        if (isnan(v->u.f)) flm_sb_puts(sb, "NaN");
        else if (isinf(v->u.f)) flm_sb_puts(sb, v->u.f < 0 ? "-Infinity" : "Infinity");
        else flm_jv_float_repr(v->u.f, sb);
        return 0;
    case V_STR: flm_sb_json_string(sb, v->u.s.p, v->u.s.n, ascii); return 0;
    case V_LIST: case V_JSON: case V_DICT: {
        bool map = flm_jv_is_mapping(v);
        if (v->ns) break;
        size_t n = map ? map_len(v) : seq_len(v);
        if (!n) { flm_sb_puts(sb, map ? "{}" : "[]"); return 0; }
        flm_sb_putc(sb, map ? '{' : '[');
        for (size_t i = 0; i < n; i++) {
            if (i) flm_sb_puts(sb, indent >= 0 ? "," : ", ");
            if (indent >= 0) newline_indent(sb, indent, level + 1);
            jvalue x;
            if (map) {
                const char *k;
                size_t kn;
                map_key_at(v, i, &k, &kn, &x);
                flm_sb_json_string(sb, k, kn, ascii);
                flm_sb_puts(sb, ": ");
            } else x = seq_at(v, i);
            int r = tojson_rec(cx, &x, sb, ascii, indent, level + 1, line);
            if (r) return r;
        }
        if (indent >= 0) newline_indent(sb, indent, level);
        flm_sb_putc(sb, map ? '}' : ']');
        return 0;
    }
    default: break;
    }
    return flm_jinja_fail(FLM_ERR_ARG, line, "tojson: object of type %s is not JSON serializable", flm_jv_type_name(v));
}

int flm_jv_tojson(jctx *cx, const jvalue *v, strbuf *sb, bool ensure_ascii, int indent, int line) {
    return tojson_rec(cx, v, sb, ensure_ascii, indent, 0, line);
}
