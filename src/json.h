/* json.h — a bounded, validating JSON reader (RFC 8259) producing an immutable tree.
 * All nodes and strings live in one json_doc and are freed together. Strings are
 * unescaped, NUL-terminated and may contain embedded NULs (use len). Object members
 * keep file order; duplicate keys are kept (lookups return the last, like Python). */
#ifndef FLM_JSON_H
#define FLM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json json;
struct json {
    json_type type;
    bool is_int;        /* JSON_NUMBER written without fraction/exponent */
    bool boolean;       /* JSON_BOOL */
    double number;      /* JSON_NUMBER */
    const char *str;    /* JSON_STRING value */
    size_t len;         /* JSON_STRING: bytes; ARRAY/OBJECT: number of children */
    json *items;        /* ARRAY/OBJECT: children, contiguous */
    const char *key;    /* for a member of an object: its key (NUL-terminated) */
    size_t key_len;
    const char *raw;    /* JSON_NUMBER: the literal as written (not NUL-terminated) */
    size_t raw_len;
};

typedef struct json_doc json_doc;

/* Parses text[0..len). Returns NULL on error with a message (line:column and what
 * was expected) via flm_last_error(); `what` names the source in the message. */
json_doc *json_parse(const char *text, size_t len, const char *what);
/* Reads and parses a file. */
json_doc *json_parse_file(const char *path);
const json *json_root(const json_doc *doc);
void json_free(json_doc *doc);

/* Object member lookup (last duplicate wins); NULL if absent or not an object. */
const json *json_get(const json *obj, const char *key);
/* Array element; NULL if out of range or not an array. */
const json *json_at(const json *arr, size_t i);

/* Typed getters with defaults: return `def` when v is NULL, null or the wrong type. */
double json_number(const json *v, double def);
int64_t json_int(const json *v, int64_t def);
bool json_bool(const json *v, bool def);
const char *json_string(const json *v, const char *def);

/* Serialises v compactly (or with Python json.dumps separators ", " ": " when
 * python_style), appending to sb. */
#include "common.h"
void json_write(strbuf *sb, const json *v, bool python_style);

#endif
