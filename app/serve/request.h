/* request.h — an OpenAI request body (JSON bytes) → a validated request.
 *
 * serve_request_parse is a pure function of the bytes (no model, no network): the
 * fuzz target fuzz/fuzz_serve_request.c drives it. Every refusal is a serve_error
 * with the HTTP status (400 for all of them), OpenAI's error type and code, the
 * offending parameter and a message that says what was wrong and what is wanted. */
#ifndef SERVE_REQUEST_H
#define SERVE_REQUEST_H
#include <stddef.h>
#include <stdint.h>

#include "fieldlm.h"

#define SERVE_MAX_STOP 16
#define SERVE_MAX_DEPTH 64     /* JSON nesting accepted in a request body */
#define SERVE_MAX_MESSAGES 4096

typedef enum { SERVE_CHAT, SERVE_COMPLETION } serve_kind;

typedef struct {
    int status;                /* HTTP status: 400 */
    const char *type;          /* "invalid_request_error" */
    const char *code;          /* NULL or a code such as "invalid_json", "unsupported_value" */
    char param[64];            /* the offending parameter ("" for none) */
    char message[512];
} serve_error;

typedef struct {
    serve_kind kind;
    /* SERVE_CHAT: the messages (role and content strings point into the request) */
    flm_message *msgs;
    size_t n_msgs;
    /* SERVE_COMPLETION: the raw prompt */
    const char *prompt;
    int stream;                /* SSE */
    int include_usage;         /* stream_options.include_usage */
    int logprobs;              /* 0/1 */
    int top_logprobs;          /* 0..20 */
    int have_seed;             /* seed given (else the server picks one) */
    int echo;                  /* completions: echo the prompt */
    flm_gen_settings set;      /* sampling, max_new_tokens, stop (points into stop[]) */
    const char *stop[SERVE_MAX_STOP];
    char **owned;              /* contents joined from content parts (malloc'ed) */
    size_t n_owned;
    void *root;                /* the parsed document (owns the strings) */
} serve_request;

/* Parses body[0..len) as a request of `kind`. On success fills *r (release with
 * serve_request_free) and returns 0; else fills *err and returns -1 (nothing to free). */
int serve_request_parse(const char *body, size_t len, serve_kind kind, serve_request *r, serve_error *err);
void serve_request_free(serve_request *r);

/* Parses body[0..len) as a JSON object (strict, UTF-8 checked, depth-limited):
 * returns the json_object (json_object_put) or NULL with *err filled. */
void *serve_json_parse_object(const char *body, size_t len, serve_error *err);

/* Fills err with status 400, the given code and param and a printf-style message; returns -1. */
int serve_error_set(serve_error *err, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#endif
