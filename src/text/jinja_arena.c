/* jinja_arena.c — the chat-template engine's memory and error helpers, shared by the
 * parser, the values, the builtins and the evaluator: the arena (chunks of malloc'ed
 * memory freed together, with a byte limit) and flm_jinja_fail. */
#include "text/jinja.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena ---- */
struct jarena_chunk {
    jarena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void flm_ja_init(jarena *a, size_t limit) {
    a->head = NULL;
    a->total = 0;
    a->limit = limit;
}

void flm_ja_free(jarena *a) {
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *flm_ja_alloc(jarena *a, size_t n) {
    if (n > ((size_t)1 << 40)) { flm_fail(FLM_ERR_NOMEM, "template: allocation too large"); return NULL; }
    n = (n + 15) & ~(size_t)15;
    if (!n) n = 16;
    jarena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        if (a->limit && a->total + cap > a->limit) {
            flm_fail(FLM_ERR_NOMEM, "template: memory limit of %zu MiB reached", a->limit >> 20);
            return NULL;
        }
        c = malloc(sizeof *c + cap);
        if (!c) { flm_fail(FLM_ERR_NOMEM, "template: out of memory"); return NULL; }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
        a->total += cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *flm_ja_strndup(jarena *a, const char *s, size_t n) {
    char *d = flm_ja_alloc(a, n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

int flm_jinja_fail(int code, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return flm_fail(code, "template line %d: %s", line, msg);
    return flm_fail(code, "template: %s", msg);
}
