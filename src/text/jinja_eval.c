/* jinja_eval.c — executes a parsed chat template: scopes (a for-loop iteration is a
 * scope; "set" inside it does not leak out, as in Jinja), expressions with Python
 * semantics (and/or return operands, chained comparisons, "+" typed, "~" as
 * strings), Jinja's default Undefined (falsy, prints empty, iterates empty, but an
 * error when used in arithmetic, called, or when an attribute of it is read), loop
 * variables, break/continue, and the step / output / memory bounds. */
#include "text/jinja.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jscope {
    jscope *parent;
    const char **names;
    size_t *lens;
    jvalue *vals;
    size_t n, cap;
};

jscope *flm_jinja_scope_new(jctx *cx, jscope *parent) {
    jscope *s = flm_ja_alloc(&cx->arena, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

int flm_jinja_scope_set(jctx *cx, jscope *sc, const char *name, size_t n, jvalue v) {
    for (size_t i = 0; i < sc->n; i++)
        if (sc->lens[i] == n && !memcmp(sc->names[i], name, n)) { sc->vals[i] = v; return 0; }
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 8;
        const char **nm = flm_ja_alloc(&cx->arena, cap * sizeof *nm);
        size_t *ln = flm_ja_alloc(&cx->arena, cap * sizeof *ln);
        jvalue *vv = flm_ja_alloc(&cx->arena, cap * sizeof *vv);
        if (!nm || !ln || !vv) return FLM_ERR_NOMEM;
        if (sc->n) {
            memcpy(nm, sc->names, sc->n * sizeof *nm);
            memcpy(ln, sc->lens, sc->n * sizeof *ln);
            memcpy(vv, sc->vals, sc->n * sizeof *vv);
        }
        sc->names = nm;
        sc->lens = ln;
        sc->vals = vv;
        sc->cap = cap;
    }
    sc->names[sc->n] = name;
    sc->lens[sc->n] = n;
    sc->vals[sc->n] = v;
    sc->n++;
    return 0;
}

static bool scope_get(const jscope *sc, const char *name, size_t n, jvalue *out) {
    for (; sc; sc = sc->parent)
        for (size_t i = sc->n; i-- > 0;)
            if (sc->lens[i] == n && !memcmp(sc->names[i], name, n)) { *out = sc->vals[i]; return true; }
    return false;
}

static int eval(jctx *cx, const jexpr *e, jscope *sc, jvalue *out);

static int undefined_error(const jvalue *v, int line) {
    if (v->name) return flm_jinja_fail(FLM_ERR_ARG, line, "%s is undefined", v->name);
    return flm_jinja_fail(FLM_ERR_ARG, line, "value is undefined");
}

/* A readable name for an undefined result: "'x'" or "'x' has no attribute 'y'". */
static const char *undef_name(jctx *cx, const char *fmt, const char *a, const char *b) {
    char buf[256];
    snprintf(buf, sizeof buf, fmt, a, b);
    return flm_ja_strndup(&cx->arena, buf, strlen(buf));
}

static int get_attr(jctx *cx, const jvalue *obj, const char *name, size_t n, int line, jvalue *out) {
    if (obj->k == V_UNDEF) return undefined_error(obj, line);
    if (flm_jv_is_mapping(obj) && flm_jv_map_get(obj, name, n, out)) return 0;
    if (obj->k == V_LOOP) {
        const jloop *L = obj->u.loop;
        size_t i = L->index0;
        if (!strcmp(name, "index0")) { *out = flm_jv_int((int64_t)i); return 0; }
        if (!strcmp(name, "index")) { *out = flm_jv_int((int64_t)i + 1); return 0; }
        if (!strcmp(name, "revindex")) { *out = flm_jv_int((int64_t)(L->length - i)); return 0; }
        if (!strcmp(name, "revindex0")) { *out = flm_jv_int((int64_t)(L->length - i - 1)); return 0; }
        if (!strcmp(name, "first")) { *out = flm_jv_bool(i == 0); return 0; }
        if (!strcmp(name, "last")) { *out = flm_jv_bool(i + 1 == L->length); return 0; }
        if (!strcmp(name, "length")) { *out = flm_jv_int((int64_t)L->length); return 0; }
        if (!strcmp(name, "depth")) { *out = flm_jv_int(1); return 0; }
        if (!strcmp(name, "depth0")) { *out = flm_jv_int(0); return 0; }
        if (!strcmp(name, "previtem")) { *out = i ? L->items[i - 1] : flm_jv_undef("loop.previtem"); return 0; }
        if (!strcmp(name, "nextitem")) { *out = i + 1 < L->length ? L->items[i + 1] : flm_jv_undef("loop.nextitem"); return 0; }
    }
    *out = flm_jv_undef(undef_name(cx, "'%s' has no attribute '%s'", flm_jv_type_name(obj), name));
    return 0;
}

/* Python-style index normalisation; false if out of range. */
static bool norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

static int get_item(jctx *cx, const jvalue *obj, const jvalue *key, int line, jvalue *out) {
    if (obj->k == V_UNDEF) return undefined_error(obj, line);
    if (key->k == V_STR) {
        if (flm_jv_is_mapping(obj) && flm_jv_map_get(obj, key->u.s.p, key->u.s.n, out)) return 0;
        char k[128];
        snprintf(k, sizeof k, "%.*s", (int)(key->u.s.n > 100 ? 100 : key->u.s.n), key->u.s.p);
        if (obj->k == V_LOOP) return get_attr(cx, obj, k, strlen(k), line, out);
        *out = flm_jv_undef(undef_name(cx, "'%s' has no attribute '%s'", flm_jv_type_name(obj), k));
        return 0;
    }
    if (key->k == V_INT || key->k == V_BOOL) {
        int64_t i = key->k == V_INT ? key->u.i : key->u.b;
        jvalue *items;
        size_t n, at;
        if (obj->k == V_LIST || obj->k == V_STR || (obj->k == V_JSON && obj->u.j->type == JSON_ARRAY)) {
            if (obj->k == V_JSON) {
                if (norm_index(i, obj->u.j->len, &at)) { *out = flm_jv_from_json(&obj->u.j->items[at]); return 0; }
            } else {
                int r = flm_jv_iterate(cx, obj, line, &items, &n);
                if (r) return r;
                if (norm_index(i, n, &at)) { *out = items[at]; return 0; }
            }
            *out = flm_jv_undef("index out of range");
            return 0;
        }
    }
    *out = flm_jv_undef("item");
    return 0;
}

static int make_list(jctx *cx, size_t n, jvalue *out, jvalue **items) {
    jlist *l = flm_ja_alloc(&cx->arena, sizeof *l);
    if (!l) return FLM_ERR_NOMEM;
    if (n && !(l->items = flm_ja_alloc(&cx->arena, n * sizeof *l->items))) return FLM_ERR_NOMEM;
    l->n = n;
    out->k = V_LIST;
    out->ns = false;
    out->name = NULL;
    out->u.list = l;
    *items = l->items;
    return 0;
}

static int64_t clamp_slice(int64_t v, int64_t n, bool neg_step, bool is_stop) {
    (void)is_stop;
    if (v < 0) { v += n; if (v < 0) v = neg_step ? -1 : 0; }
    else if (v >= n) v = neg_step ? n - 1 : n;
    return v;
}

static int get_slice(jctx *cx, const jexpr *e, jscope *sc, const jvalue *obj, jvalue *out) {
    jvalue bounds[3];
    const jexpr *parts[3] = {e->b, e->c, e->d};
    for (int k = 0; k < 3; k++) {
        bounds[k] = flm_jv_none();
        if (parts[k]) {
            int r = eval(cx, parts[k], sc, &bounds[k]);
            if (r) return r;
            if (bounds[k].k != V_NONE && bounds[k].k != V_INT && bounds[k].k != V_BOOL)
                return flm_jinja_fail(FLM_ERR_ARG, e->line, "slice indices must be integers or none");
        }
    }
    if (obj->k == V_UNDEF) return undefined_error(obj, e->line);
    if (!flm_jv_is_sequence(obj)) return flm_jinja_fail(FLM_ERR_ARG, e->line, "cannot slice a %s", flm_jv_type_name(obj));
    jvalue *items;
    size_t nn;
    int r = flm_jv_iterate(cx, obj, e->line, &items, &nn);
    if (r) return r;
    int64_t n = (int64_t)nn;
    int64_t step = bounds[2].k == V_NONE ? 1 : bounds[2].k == V_INT ? bounds[2].u.i : bounds[2].u.b;
    if (step == 0) return flm_jinja_fail(FLM_ERR_ARG, e->line, "slice step cannot be zero");
    if (step < -(int64_t)1e15 || step > (int64_t)1e15) step = step < 0 ? -(int64_t)1e15 : (int64_t)1e15;
    bool neg = step < 0;
    int64_t start, stop;
    if (bounds[0].k == V_NONE) start = neg ? n - 1 : 0;
    else start = clamp_slice(bounds[0].k == V_INT ? bounds[0].u.i : bounds[0].u.b, n, neg, false);
    if (bounds[1].k == V_NONE) stop = neg ? -1 : n;
    else stop = clamp_slice(bounds[1].k == V_INT ? bounds[1].u.i : bounds[1].u.b, n, neg, true);
    size_t cnt = 0;
    for (int64_t i = start; neg ? i > stop : i < stop; i += step) cnt++;
    if (obj->k == V_STR) {
        strbuf sb;
        flm_sb_init(&sb);
        for (int64_t i = start; neg ? i > stop : i < stop; i += step) flm_sb_append(&sb, items[i].u.s.p, items[i].u.s.n);
        char *s = flm_ja_strndup(&cx->arena, sb.data ? sb.data : "", sb.len);
        size_t sl = sb.len;
        bool oom = sb.oom;
        flm_sb_free(&sb);
        if (!s || oom) return FLM_ERR_NOMEM;
        *out = flm_jv_str(s, sl);
        return 0;
    }
    jvalue *dst;
    if ((r = make_list(cx, cnt, out, &dst))) return r;
    size_t j = 0;
    for (int64_t i = start; neg ? i > stop : i < stop; i += step) dst[j++] = items[i];
    return 0;
}

static int concat_str(jctx *cx, const jvalue *a, const jvalue *b, jvalue *out) {
    strbuf sb;
    flm_sb_init(&sb);
    flm_jv_to_str(a, &sb);
    flm_jv_to_str(b, &sb);
    bool oom = sb.oom;
    char *s = oom ? NULL : flm_ja_strndup(&cx->arena, sb.data ? sb.data : "", sb.len);
    size_t n = sb.len;
    flm_sb_free(&sb);
    if (!s) return oom ? flm_fail(FLM_ERR_NOMEM, "template: out of memory") : FLM_ERR_NOMEM;
    *out = flm_jv_str(s, n);
    return 0;
}

static const char *op_name(int op) {
    static const char *const names[] = {"", "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return op > 0 && op <= OP_NOTIN ? names[op] : "?";
}

static bool is_numv(const jvalue *v) { return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL; }
static double numv(const jvalue *v) { return v->k == V_INT ? (double)v->u.i : v->k == V_FLOAT ? v->u.f : v->u.b; }
static int64_t intv(const jvalue *v) { return v->k == V_INT ? v->u.i : v->u.b; }

static int type_error(int line, int op, const jvalue *a, const jvalue *b) {
    if (a->k == V_UNDEF) return undefined_error(a, line);
    if (b->k == V_UNDEF) return undefined_error(b, line);
    return flm_jinja_fail(FLM_ERR_ARG, line, "unsupported operand types for '%s': %s and %s", op_name(op), flm_jv_type_name(a),
                      flm_jv_type_name(b));
}

static bool is_list_like(const jvalue *v) { return v->k == V_LIST || (v->k == V_JSON && v->u.j->type == JSON_ARRAY); }

static int binop(jctx *cx, int op, const jvalue *a, const jvalue *b, int line, jvalue *out) {
    if (op == OP_CONCAT) return concat_str(cx, a, b, out);
    if (op == OP_ADD && a->k == V_STR && b->k == V_STR) return concat_str(cx, a, b, out);
    if (op == OP_ADD && is_list_like(a) && is_list_like(b)) {
        jvalue *ia, *ib, *dst;
        size_t na, nb;
        int r;
        if ((r = flm_jv_iterate(cx, a, line, &ia, &na)) || (r = flm_jv_iterate(cx, b, line, &ib, &nb))) return r;
        if ((r = make_list(cx, na + nb, out, &dst))) return r;
        if (na) memcpy(dst, ia, na * sizeof *dst);
        if (nb) memcpy(dst + na, ib, nb * sizeof *dst);
        return 0;
    }
    if (op == OP_MUL && ((a->k == V_STR && (b->k == V_INT || b->k == V_BOOL)) || (b->k == V_STR && (a->k == V_INT || a->k == V_BOOL)))) {
        const jvalue *s = a->k == V_STR ? a : b;
        int64_t times = intv(a->k == V_STR ? b : a);
        if (times <= 0) { *out = flm_jv_str("", 0); return 0; }
        if ((uint64_t)times * s->u.s.n > JINJA_MAX_OUTPUT)
            return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "string repetition too large");
        size_t total = (size_t)times * s->u.s.n;
        char *p = flm_ja_alloc(&cx->arena, total + 1);
        if (!p) return FLM_ERR_NOMEM;
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * s->u.s.n, s->u.s.p, s->u.s.n);
        *out = flm_jv_str(p, total);
        return 0;
    }
    if (op == OP_MOD && a->k == V_STR)
        return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "'%%' string formatting is not supported");
    if (!is_numv(a) || !is_numv(b)) return type_error(line, op, a, b);
    bool ints = a->k != V_FLOAT && b->k != V_FLOAT;
    if (ints && op != OP_DIV) {
        int64_t x = intv(a), y = intv(b), z = 0;
        bool ovf = false;
        switch (op) {
        case OP_ADD: ovf = __builtin_add_overflow(x, y, &z); break;
        case OP_SUB: ovf = __builtin_sub_overflow(x, y, &z); break;
        case OP_MUL: ovf = __builtin_mul_overflow(x, y, &z); break;
        case OP_FLOORDIV: case OP_MOD:
            if (y == 0) return flm_jinja_fail(FLM_ERR_ARG, line, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) { ovf = true; break; }
            {
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
                z = op == OP_FLOORDIV ? q : m;
            }
            break;
        case OP_POW:
            if (y < 0) { *out = flm_jv_float(pow((double)x, (double)y)); return 0; }
            z = 1;
            for (int64_t i = 0; i < y && !ovf; i++) {
                ovf = __builtin_mul_overflow(z, x, &z);
                if (z == 0 || z == 1) break;
                if (z == -1) { z = (y % 2) ? -1 : 1; break; }
            }
            break;
        default: return type_error(line, op, a, b);
        }
        if (ovf) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "integer overflow in '%s'", op_name(op));
        *out = flm_jv_int(z);
        return 0;
    }
    double x = numv(a), y = numv(b), z;
    switch (op) {
    case OP_ADD: z = x + y; break;
    case OP_SUB: z = x - y; break;
    case OP_MUL: z = x * y; break;
    case OP_DIV:
        if (y == 0) return flm_jinja_fail(FLM_ERR_ARG, line, "division by zero");
        z = x / y;
        break;
    case OP_FLOORDIV: case OP_MOD:
        if (y == 0) return flm_jinja_fail(FLM_ERR_ARG, line, "float division or modulo by zero");
        {
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            z = op == OP_MOD ? m : floor(x / y);
        }
        break;
    case OP_POW: z = pow(x, y); break;
    default: return type_error(line, op, a, b);
    }
    *out = flm_jv_float(z);
    return 0;
}

static int compare(jctx *cx, int op, const jvalue *a, const jvalue *b, int line, bool *res) {
    switch (op) {
    case OP_EQ: *res = flm_jv_equal(a, b); return 0;
    case OP_NE: *res = !flm_jv_equal(a, b); return 0;
    case OP_IN: case OP_NOTIN: {
        bool found = false;
        if (b->k == V_STR) {
            if (a->k != V_STR)
                return flm_jinja_fail(FLM_ERR_ARG, line, "'in <string>' requires a string on the left, not %s", flm_jv_type_name(a));
            if (!a->u.s.n) found = true;
            else if (a->u.s.n <= b->u.s.n)
                for (size_t i = 0; i + a->u.s.n <= b->u.s.n && !found; i++)
                    found = !memcmp(b->u.s.p + i, a->u.s.p, a->u.s.n);
        } else if (flm_jv_is_mapping(b)) {
            jvalue tmp;
            found = a->k == V_STR && flm_jv_map_get(b, a->u.s.p, a->u.s.n, &tmp);
        } else if (b->k == V_UNDEF || is_list_like(b)) {
            jvalue *items;
            size_t n;
            int r = flm_jv_iterate(cx, b, line, &items, &n);
            if (r) return r;
            for (size_t i = 0; i < n && !found; i++) found = flm_jv_equal(a, &items[i]);
        } else return flm_jinja_fail(FLM_ERR_ARG, line, "argument of type %s is not iterable", flm_jv_type_name(b));
        *res = op == OP_IN ? found : !found;
        return 0;
    }
    default: break;
    }
    int c;
    if (is_numv(a) && is_numv(b)) {
        double x = numv(a), y = numv(b);
        if (a->k != V_FLOAT && b->k != V_FLOAT) { int64_t p = intv(a), q = intv(b); c = p < q ? -1 : p > q; }
        else if (isnan(x) || isnan(y)) { *res = false; return 0; }
        else c = x < y ? -1 : x > y;
    } else if (a->k == V_STR && b->k == V_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        c = memcmp(a->u.s.p, b->u.s.p, n);
        if (!c) c = a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
        c = c < 0 ? -1 : c > 0;
    } else return type_error(line, op, a, b);
    *res = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
    return 0;
}

/* Evaluates call / filter / test arguments into positional and keyword arrays. */
static int eval_args(jctx *cx, const jexpr *e, jscope *sc, jargs *a) {
    memset(a, 0, sizeof *a);
    if (!e->nargs) return 0;
    jvalue *pos = flm_ja_alloc(&cx->arena, e->nargs * sizeof *pos);
    jvalue *kwv = flm_ja_alloc(&cx->arena, e->nargs * sizeof *kwv);
    const char **kw = flm_ja_alloc(&cx->arena, e->nargs * sizeof *kw);
    if (!pos || !kwv || !kw) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < e->nargs; i++) {
        jvalue v;
        int r = eval(cx, e->args[i], sc, &v);
        if (r) return r;
        if (e->kw && e->kw[i]) { kw[a->nkw] = e->kw[i]; kwv[a->nkw++] = v; }
        else {
            if (a->nkw) return flm_jinja_fail(FLM_ERR_FORMAT, e->line, "positional argument follows keyword argument");
            pos[a->npos++] = v;
        }
    }
    a->pos = pos;
    a->kw = kw;
    a->kwv = kwv;
    return 0;
}

static int eval(jctx *cx, const jexpr *e, jscope *sc, jvalue *out) {
    if (++cx->depth > JINJA_MAX_EVAL_DEPTH) return flm_jinja_fail(FLM_ERR_UNSUPPORTED, e->line, "expression evaluation too deep");
    int r = 0;
    jvalue a, b;
    switch (e->kind) {
    case E_STR: *out = flm_jv_str(e->s, e->n); break;
    case E_INT: *out = flm_jv_int(e->i); break;
    case E_FLOAT: *out = flm_jv_float(e->f); break;
    case E_BOOL: *out = flm_jv_bool(e->i != 0); break;
    case E_NONE: *out = flm_jv_none(); break;
    case E_NAME:
        if (!scope_get(sc, e->s, e->n, out)) *out = flm_jv_undef(undef_name(cx, "'%s'%s", e->s, ""));
        break;
    case E_ATTR:
        if (!(r = eval(cx, e->a, sc, &a))) r = get_attr(cx, &a, e->s, e->n, e->line, out);
        break;
    case E_ITEM:
        if (!(r = eval(cx, e->a, sc, &a)) && !(r = eval(cx, e->b, sc, &b))) r = get_item(cx, &a, &b, e->line, out);
        break;
    case E_SLICE:
        if (!(r = eval(cx, e->a, sc, &a))) r = get_slice(cx, e, sc, &a, out);
        break;
    case E_CALL: {
        jargs args;
        if (e->a->kind == E_ATTR) {
            if ((r = eval(cx, e->a->a, sc, &a))) break;
            if (a.k == V_UNDEF) { r = undefined_error(&a, e->line); break; }
            if ((r = eval_args(cx, e, sc, &args))) break;
            r = flm_jinja_method(cx, &a, e->a->s, &args, e->line, out);
            break;
        }
        if ((r = eval(cx, e->a, sc, &a))) break;
        if (a.k == V_UNDEF) { r = undefined_error(&a, e->line); break; }
        if (a.k != V_FUNC) { r = flm_jinja_fail(FLM_ERR_ARG, e->line, "%s object is not callable", flm_jv_type_name(&a)); break; }
        if ((r = eval_args(cx, e, sc, &args))) break;
        r = flm_jinja_call_global(cx, a.u.func, &args, e->line, out);
        break;
    }
    case E_FILTER: {
        jargs args;
        if (!(r = eval(cx, e->a, sc, &a)) && !(r = eval_args(cx, e, sc, &args)))
            r = flm_jinja_filter(cx, e->s, &a, &args, e->line, out);
        break;
    }
    case E_TEST: {
        jargs args;
        bool res;
        if (!(r = eval(cx, e->a, sc, &a)) && !(r = eval_args(cx, e, sc, &args)) &&
            !(r = flm_jinja_test(cx, e->s, &a, &args, e->line, &res)))
            *out = flm_jv_bool(e->neg ? !res : res);
        break;
    }
    case E_NOT:
        if (!(r = eval(cx, e->a, sc, &a))) *out = flm_jv_bool(!flm_jv_truthy(&a));
        break;
    case E_NEG: case E_POS:
        if ((r = eval(cx, e->a, sc, &a))) break;
        if (a.k == V_UNDEF) { r = undefined_error(&a, e->line); break; }
        if (a.k == V_FLOAT) *out = flm_jv_float(e->kind == E_NEG ? -a.u.f : a.u.f);
        else if (a.k == V_INT || a.k == V_BOOL) {
            int64_t v = intv(&a);
            if (e->kind == E_NEG && v == INT64_MIN) { r = flm_jinja_fail(FLM_ERR_UNSUPPORTED, e->line, "integer overflow"); break; }
            *out = flm_jv_int(e->kind == E_NEG ? -v : v);
        } else r = flm_jinja_fail(FLM_ERR_ARG, e->line, "bad operand type for unary %c: %s", e->kind == E_NEG ? '-' : '+',
                              flm_jv_type_name(&a));
        break;
    case E_BIN:
        if (!(r = eval(cx, e->a, sc, &a)) && !(r = eval(cx, e->b, sc, &b))) r = binop(cx, e->op, &a, &b, e->line, out);
        break;
    case E_AND: case E_OR:
        if ((r = eval(cx, e->a, sc, &a))) break;
        if (flm_jv_truthy(&a) == (e->kind == E_OR)) *out = a;
        else r = eval(cx, e->b, sc, out);
        break;
    case E_CMP: {
        if ((r = eval(cx, e->a, sc, &a))) break;
        bool res = true;
        for (size_t i = 0; i < e->nargs && res; i++) {
            if ((r = eval(cx, e->args[i], sc, &b)) || (r = compare(cx, e->cmp_ops[i], &a, &b, e->line, &res))) break;
            a = b;
        }
        if (!r) *out = flm_jv_bool(res);
        break;
    }
    case E_COND:
        if ((r = eval(cx, e->b, sc, &a))) break;
        if (flm_jv_truthy(&a)) r = eval(cx, e->a, sc, out);
        else if (e->c) r = eval(cx, e->c, sc, out);
        else *out = flm_jv_undef("the else branch of an inline if");
        break;
    case E_LIST: case E_TUPLE: {
        jvalue *items;
        if ((r = make_list(cx, e->nargs, out, &items))) break;
        out->u.list->tuple = e->kind == E_TUPLE;
        for (size_t i = 0; i < e->nargs && !r; i++) r = eval(cx, e->args[i], sc, &items[i]);
        break;
    }
    case E_DICT: {
        size_t n = e->nargs / 2;
        jdict *d = flm_ja_alloc(&cx->arena, sizeof *d);
        if (!d) { r = FLM_ERR_NOMEM; break; }
        if (n && (!(d->keys = flm_ja_alloc(&cx->arena, n * sizeof *d->keys)) || !(d->klens = flm_ja_alloc(&cx->arena, n * sizeof *d->klens)) ||
                  !(d->vals = flm_ja_alloc(&cx->arena, n * sizeof *d->vals)))) { r = FLM_ERR_NOMEM; break; }
        d->cap = n;
        for (size_t i = 0; i < n && !r; i++) {
            if ((r = eval(cx, e->args[2 * i], sc, &a)) || (r = eval(cx, e->args[2 * i + 1], sc, &b))) break;
            if (a.k != V_STR) { r = flm_jinja_fail(FLM_ERR_UNSUPPORTED, e->line, "dict keys must be strings"); break; }
            size_t j;
            for (j = 0; j < d->n; j++)
                if (d->klens[j] == a.u.s.n && !memcmp(d->keys[j], a.u.s.p, a.u.s.n)) break;
            if (j == d->n) { d->keys[j] = a.u.s.p; d->klens[j] = a.u.s.n; d->n++; }
            d->vals[j] = b;
        }
        if (!r) { out->k = V_DICT; out->ns = false; out->name = NULL; out->u.dict = d; }
        break;
    }
    }
    cx->depth--;
    return r;
}

/* ---- statements ---- */
enum { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE };

static int step(jctx *cx, int line) {
    if (++cx->steps > JINJA_MAX_STEPS)
        return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "template ran for more than %u steps", (unsigned)JINJA_MAX_STEPS);
    return 0;
}

static int emit(jctx *cx, const jvalue *v, int line) {
    flm_jv_to_str(v, cx->out);
    if (cx->out->oom) return flm_fail(FLM_ERR_NOMEM, "template: out of memory for the output");
    if (cx->out->len > JINJA_MAX_OUTPUT)
        return flm_jinja_fail(FLM_ERR_UNSUPPORTED, line, "output exceeds %u MiB", (unsigned)(JINJA_MAX_OUTPUT >> 20));
    return 0;
}

static int bind_targets(jctx *cx, jscope *sc, const jstmt *s, const jvalue *v) {
    if (s->ntargets == 1) return flm_jinja_scope_set(cx, sc, s->targets[0], strlen(s->targets[0]), *v);
    jvalue *items;
    size_t n;
    if (!is_list_like(v)) return flm_jinja_fail(FLM_ERR_ARG, s->line, "cannot unpack %s into %zu names", flm_jv_type_name(v), s->ntargets);
    int r = flm_jv_iterate(cx, v, s->line, &items, &n);
    if (r) return r;
    if (n != s->ntargets) return flm_jinja_fail(FLM_ERR_ARG, s->line, "cannot unpack %zu values into %zu names", n, s->ntargets);
    for (size_t i = 0; i < n && !r; i++) r = flm_jinja_scope_set(cx, sc, s->targets[i], strlen(s->targets[i]), items[i]);
    return r;
}

static int exec_body(jctx *cx, const jstmt *s, jscope *sc, int *flow);

static int exec_for(jctx *cx, const jstmt *s, jscope *sc, int *flow) {
    jvalue seq;
    int r = eval(cx, s->expr, sc, &seq);
    if (r) return r;
    jvalue *items;
    size_t n;
    if ((r = flm_jv_iterate(cx, &seq, s->line, &items, &n))) return r;
    if (s->filter && n) {
        jvalue *kept = flm_ja_alloc(&cx->arena, n * sizeof *kept);
        if (!kept) return FLM_ERR_NOMEM;
        size_t m = 0;
        jscope *fs = flm_jinja_scope_new(cx, sc);
        if (!fs) return FLM_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            jvalue c;
            fs->n = 0; /* nothing can hold on to a scope: reuse it */
            if ((r = step(cx, s->line)) || (r = bind_targets(cx, fs, s, &items[i])) || (r = eval(cx, s->filter, fs, &c))) return r;
            if (flm_jv_truthy(&c)) kept[m++] = items[i];
        }
        items = kept;
        n = m;
    }
    jloop *L = flm_ja_alloc(&cx->arena, sizeof *L);
    if (!L) return FLM_ERR_NOMEM;
    L->length = n;
    L->items = items;
    jscope *it = flm_jinja_scope_new(cx, sc);
    if (!it) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((r = step(cx, s->line))) return r;
        it->n = 0; /* each iteration starts afresh; nothing can hold on to a scope */
        jvalue lv = {.k = V_LOOP};
        lv.u.loop = L;
        L->index0 = i;
        if ((r = bind_targets(cx, it, s, &items[i])) || (r = flm_jinja_scope_set(cx, it, "loop", 4, lv))) return r;
        int f = FLOW_NORMAL;
        if ((r = exec_body(cx, s->body, it, &f))) return r;
        if (f == FLOW_BREAK) break;
    }
    if (!n && s->else_body) {
        jscope *es = flm_jinja_scope_new(cx, sc);
        if (!es) return FLM_ERR_NOMEM;
        return exec_body(cx, s->else_body, es, flow);
    }
    return 0;
}

static int exec_body(jctx *cx, const jstmt *s, jscope *sc, int *flow) {
    int r = 0;
    for (; s && !r; s = s->next) {
        if ((r = step(cx, s->line))) break;
        jvalue v;
        switch (s->kind) {
        case S_TEXT:
            flm_sb_append(cx->out, s->text, s->n);
            if (cx->out->oom) r = flm_fail(FLM_ERR_NOMEM, "template: out of memory for the output");
            else if (cx->out->len > JINJA_MAX_OUTPUT)
                r = flm_jinja_fail(FLM_ERR_UNSUPPORTED, s->line, "output exceeds %u MiB", (unsigned)(JINJA_MAX_OUTPUT >> 20));
            break;
        case S_OUTPUT:
            if (!(r = eval(cx, s->expr, sc, &v))) r = emit(cx, &v, s->line);
            break;
        case S_IF:
            if ((r = eval(cx, s->expr, sc, &v))) break;
            if (flm_jv_truthy(&v)) r = exec_body(cx, s->body, sc, flow);
            else if (s->else_body) r = exec_body(cx, s->else_body, sc, flow);
            break;
        case S_FOR: r = exec_for(cx, s, sc, flow); break;
        case S_SET:
            if ((r = eval(cx, s->expr, sc, &v))) break;
            if (s->attr) {
                jvalue ns;
                if (!scope_get(sc, s->targets[0], strlen(s->targets[0]), &ns) || ns.k != V_DICT || !ns.ns) {
                    r = flm_jinja_fail(FLM_ERR_ARG, s->line, "cannot assign attribute '%s': '%s' is not a namespace()", s->attr,
                                   s->targets[0]);
                    break;
                }
                jdict *d = ns.u.dict;
                size_t j, al = strlen(s->attr);
                for (j = 0; j < d->n; j++)
                    if (d->klens[j] == al && !memcmp(d->keys[j], s->attr, al)) break;
                if (j == d->cap) {
                    size_t cap = d->cap ? d->cap * 2 : 8;
                    const char **k = flm_ja_alloc(&cx->arena, cap * sizeof *k);
                    size_t *kl = flm_ja_alloc(&cx->arena, cap * sizeof *kl);
                    jvalue *vv = flm_ja_alloc(&cx->arena, cap * sizeof *vv);
                    if (!k || !kl || !vv) { r = FLM_ERR_NOMEM; break; }
                    if (d->n) {
                        memcpy(k, d->keys, d->n * sizeof *k);
                        memcpy(kl, d->klens, d->n * sizeof *kl);
                        memcpy(vv, d->vals, d->n * sizeof *vv);
                    }
                    d->keys = k; d->klens = kl; d->vals = vv; d->cap = cap;
                }
                if (j == d->n) { d->keys[j] = s->attr; d->klens[j] = al; d->n++; }
                d->vals[j] = v;
            } else r = bind_targets(cx, sc, s, &v);
            break;
        case S_SET_BLOCK: {
            strbuf tmp, *saved = cx->out;
            flm_sb_init(&tmp);
            cx->out = &tmp;
            jscope *bs = flm_jinja_scope_new(cx, sc);
            int f = FLOW_NORMAL;
            r = bs ? exec_body(cx, s->body, bs, &f) : FLM_ERR_NOMEM;
            cx->out = saved;
            if (!r) {
                char *p = flm_ja_strndup(&cx->arena, tmp.data ? tmp.data : "", tmp.len);
                if (!p) r = FLM_ERR_NOMEM;
                else r = flm_jinja_scope_set(cx, sc, s->targets[0], strlen(s->targets[0]), flm_jv_str(p, tmp.len));
            }
            flm_sb_free(&tmp);
            break;
        }
        case S_BLOCK: {
            jscope *bs = flm_jinja_scope_new(cx, sc);
            r = bs ? exec_body(cx, s->body, bs, flow) : FLM_ERR_NOMEM;
            break;
        }
        case S_BREAK: *flow = FLOW_BREAK; return 0;
        case S_CONTINUE: *flow = FLOW_CONTINUE; return 0;
        }
        if (*flow != FLOW_NORMAL) return r;
    }
    return r;
}

int flm_jinja_exec(jctx *cx, const jstmt *body, jscope *globals) {
    cx->globals = globals;
    jscope *top = flm_jinja_scope_new(cx, globals);
    if (!top) return FLM_ERR_NOMEM;
    int flow = FLOW_NORMAL;
    return exec_body(cx, body, top, &flow);
}
