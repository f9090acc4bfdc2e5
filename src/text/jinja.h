/* jinja.h — private to the chat-template engine (template.c, jinja_*.c): the arena,
 * the syntax tree the parser builds, the runtime values and the render context.
 * Nothing outside the template module includes it; the API is src/text/template.h. */
#ifndef FLM_JINJA_H
#define FLM_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "base/json.h"

/* ---- limits: a hostile template must neither hang nor exhaust memory ---- */
#define JINJA_MAX_SOURCE       (4u << 20)  /* template source bytes */
#define JINJA_MAX_NEST         200         /* expression / block nesting while parsing */
#define JINJA_MAX_EVAL_DEPTH   400         /* evaluation recursion */
#define JINJA_MAX_STEPS        (4u << 20)  /* statements executed + loop iterations */
#define JINJA_MAX_OUTPUT       (64u << 20) /* rendered bytes */
#define JINJA_MAX_RENDER_MEM   (256u << 20) /* values made while rendering */
#define JINJA_MAX_RANGE        (1u << 20)  /* elements of one range() / list */

/* ---- arena (jinja_arena.c): chunks of malloc'ed memory freed together, with a byte limit ---- */
typedef struct jarena_chunk jarena_chunk;
typedef struct {
    jarena_chunk *head;
    size_t total, limit; /* limit 0: unlimited */
} jarena;

void flm_ja_init(jarena *a, size_t limit);
void flm_ja_free(jarena *a);
/* 16-byte aligned, zeroed. NULL with a message (FLM_ERR_NOMEM) on failure. */
void *flm_ja_alloc(jarena *a, size_t n);
char *flm_ja_strndup(jarena *a, const char *s, size_t n);

/* ---- syntax tree ---- */
typedef enum {
    E_STR, E_INT, E_FLOAT, E_BOOL, E_NONE,
    E_NAME,     /* s: variable name */
    E_ATTR,     /* a.s */
    E_ITEM,     /* a[b] */
    E_SLICE,    /* a[b:c:d] (each may be NULL) */
    E_CALL,     /* a(args) */
    E_FILTER,   /* a | s(args) */
    E_TEST,     /* a is [not] s(args); neg */
    E_NOT, E_NEG, E_POS,
    E_BIN,      /* a op b, op one of + - * / // % ** ~ */
    E_AND, E_OR,
    E_CMP,      /* chain: a op0 args[0] op1 args[1] ... (ops in cmp_ops) */
    E_COND,     /* a if b else c (c may be NULL) */
    E_LIST, E_TUPLE, /* args */
    E_DICT,     /* args = key0, val0, key1, val1, ... */
} jexpr_kind;

typedef enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
               OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN } jop;

typedef struct jexpr jexpr;
struct jexpr {
    jexpr_kind kind;
    int line;
    int op;              /* E_BIN */
    bool neg;            /* E_TEST: "is not" */
    const char *s;       /* E_STR value, names */
    size_t n;            /* length of s */
    int64_t i;           /* E_INT, E_BOOL */
    double f;            /* E_FLOAT */
    jexpr *a, *b, *c, *d;
    jexpr **args;        /* call / filter / test arguments, list items, dict k/v pairs */
    const char **kw;     /* parallel to args: keyword name or NULL */
    int *cmp_ops;        /* E_CMP */
    size_t nargs;
};

typedef enum { S_TEXT, S_OUTPUT, S_IF, S_FOR, S_SET, S_SET_BLOCK, S_BREAK, S_CONTINUE, S_BLOCK } jstmt_kind;

typedef struct jstmt jstmt;
struct jstmt {
    jstmt_kind kind;
    int line;
    jstmt *next;
    const char *text;    /* S_TEXT */
    size_t n;
    jexpr *expr;         /* S_OUTPUT value; S_IF condition; S_FOR iterable; S_SET value */
    jexpr *filter;       /* S_FOR: "if" clause */
    jstmt *body, *else_body;
    const char **targets; /* S_FOR loop variables, S_SET names */
    size_t ntargets;
    const char *attr;    /* S_SET: namespace attribute (set ns.attr = ...) */
};

/* Parses source into a statement list allocated in `arena`. Errors name the line. */
int flm_jinja_parse(const char *src, size_t len, jarena *arena, jstmt **out);

/* ---- runtime values ---- */
typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_JSON, V_LOOP, V_FUNC } jvkind;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;

typedef struct {
    jvkind k;
    bool ns;             /* V_DICT made by namespace(): attributes may be assigned */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;
        jlist *list;
        jdict *dict;
        const flm_json *j;   /* V_JSON: an array or object of the caller's JSON (borrowed) */
        jloop *loop;
        int func;        /* V_FUNC: builtin global id */
    } u;
    const char *name;    /* V_UNDEF: what was undefined (for messages), may be NULL */
} jvalue;

struct jlist { jvalue *items; size_t n; bool tuple; /* prints as (a, b) */ };
struct jdict { const char **keys; size_t *klens; jvalue *vals; size_t n, cap; };
struct jloop {
    size_t index0, length;
    const jvalue *items; /* the iterated items (length of them) */
};

/* The render context. */
typedef struct jscope jscope;
typedef struct {
    jarena arena;
    strbuf *out;
    uint64_t steps;
    int depth;
    jscope *globals;
} jctx;

/* Evaluation (jinja_eval.c). */
int flm_jinja_exec(jctx *cx, const jstmt *body, jscope *globals);
jscope *flm_jinja_scope_new(jctx *cx, jscope *parent);
int flm_jinja_scope_set(jctx *cx, jscope *sc, const char *name, size_t n, jvalue v);

/* Values and builtins (jinja_value.c). */
jvalue flm_jv_undef(const char *name);
jvalue flm_jv_none(void);
jvalue flm_jv_bool(bool b);
jvalue flm_jv_int(int64_t i);
jvalue flm_jv_float(double f);
jvalue flm_jv_str(const char *p, size_t n);
/* Converts a JSON node: scalars become plain values, arrays/objects stay borrowed. */
jvalue flm_jv_from_json(const flm_json *j);
bool flm_jv_truthy(const jvalue *v);
const char *flm_jv_type_name(const jvalue *v);
/* Sequence view of a list, a JSON array, a string (characters) or a mapping (keys). */
int flm_jv_iterate(jctx *cx, const jvalue *v, int line, jvalue **items, size_t *n);
bool flm_jv_is_mapping(const jvalue *v);
bool flm_jv_is_sequence(const jvalue *v);
/* Mapping lookup by string key: returns false if absent. */
bool flm_jv_map_get(const jvalue *m, const char *key, size_t klen, jvalue *out);
int flm_jv_length(const jvalue *v, int line, int64_t *out);
bool flm_jv_equal(const jvalue *a, const jvalue *b);
/* str(v) as Jinja prints it; appends to sb. */
void flm_jv_to_str(const jvalue *v, strbuf *sb);
/* str(v) as a value (strings returned as they are). */
int flm_jv_stringify(jctx *cx, const jvalue *v, jvalue *out);
/* json.dumps(v, ensure_ascii, indent) as transformers' tojson filter. */
int flm_jv_tojson(jctx *cx, const jvalue *v, strbuf *sb, bool ensure_ascii, int indent, int line);
void flm_jv_float_repr(double f, strbuf *sb);

/* Filters, tests, methods, globals (jinja_builtins.c). args[0..n) evaluated. */
typedef struct { const jvalue *pos; size_t npos; const char **kw; const jvalue *kwv; size_t nkw; } jargs;
int flm_jinja_filter(jctx *cx, const char *name, const jvalue *self, const jargs *a, int line, jvalue *out);
bool flm_jinja_filter_known(const char *name);
int flm_jinja_test(jctx *cx, const char *name, const jvalue *self, const jargs *a, int line, bool *out);
bool flm_jinja_test_known(const char *name);
int flm_jinja_method(jctx *cx, const jvalue *self, const char *name, const jargs *a, int line, jvalue *out);
/* Global functions: ids for V_FUNC values. */
enum { JF_RAISE_EXCEPTION = 1, JF_RANGE, JF_NAMESPACE, JF_STRFTIME_NOW, JF_DICT };
int flm_jinja_call_global(jctx *cx, int func, const jargs *a, int line, jvalue *out);

/* Records "template line N: message" with status `code` and returns it (jinja_arena.c). */
int flm_jinja_fail(int code, int line, const char *fmt, ...) FLM_PRINTF(3, 4);

#endif
