/* json.h — a bounded, validating JSON reader (RFC 8259) producing an immutable tree.
 * All nodes and strings live in one flm_json_doc and are freed together. Strings are
 * unescaped, NUL-terminated and may contain embedded NULs (use len). Object members
 * keep file order; duplicate keys are kept (lookups return the last, like Python). */
#ifndef FLM_JSON_H
#define FLM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct flm_json flm_json;
struct flm_json {
    json_type type;
    bool is_int;        /* JSON_NUMBER written without fraction/exponent */
    bool boolean;       /* JSON_BOOL */
    double number;      /* JSON_NUMBER */
    const char *str;    /* JSON_STRING value */
    size_t len;         /* JSON_STRING: bytes; ARRAY/OBJECT: number of children */
    flm_json *items;        /* ARRAY/OBJECT: children, contiguous */
    const char *key;    /* for a member of an object: its key (NUL-terminated) */
    size_t key_len;
    const char *raw;    /* JSON_NUMBER: the literal as written (not NUL-terminated) */
    size_t raw_len;
};

typedef struct flm_json_doc flm_json_doc;

/* Parses text[0..len). Returns NULL on error with a message (line:column and what
 * was expected) via flm_last_error(); `what` names the source in the message. */
flm_json_doc *flm_json_parse(const char *text, size_t len, const char *what);
/* Reads and parses a file. */
flm_json_doc *flm_json_parse_file(const char *path);
const flm_json *flm_json_root(const flm_json_doc *doc);
void flm_json_free(flm_json_doc *doc);

/* Object member lookup (last duplicate wins); NULL if absent or not an object. */
const flm_json *flm_json_get(const flm_json *obj, const char *key);
/* Array element; NULL if out of range or not an array. */
const flm_json *flm_json_at(const flm_json *arr, size_t i);

/* Typed getters with defaults: return `def` when v is NULL, null or the wrong type. */
double flm_json_number(const flm_json *v, double def);
int64_t flm_json_int(const flm_json *v, int64_t def);
bool flm_json_bool(const flm_json *v, bool def);
const char *flm_json_string(const flm_json *v, const char *def);

/* Serialises v compactly (or with Python json.dumps separators ", " ": " when
 * python_style), appending to sb. */
#include "base/common.h"
void flm_json_write(strbuf *sb, const flm_json *v, bool python_style);

#endif
