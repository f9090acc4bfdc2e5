/* response.h — the JSON the server writes: OpenAI's error object, chat completions
 * and text completions (whole, and as the chunks of an SSE stream), usage and
 * log-probabilities. Built with json-c; each serve_*_json function returns a new
 * json_object (as void *, so callers need not include json-c), and serve_json_text
 * turns one into malloc'ed text and releases it. */
#ifndef SERVE_RESPONSE_H
#define SERVE_RESPONSE_H
#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* Malloc'ed compact JSON text of obj (*len its length, may be NULL); obj is released.
 * NULL when out of memory. */
char *serve_json_text(void *obj, size_t *len);
/* "data: JSON\n\n" for an SSE event (obj released), or "data: [DONE]\n\n" when obj is NULL. */
char *serve_sse_event(void *obj, size_t *len);

/* {"error": {"message", "type", "param", "code"}} */
void *serve_error_json(const char *message, const char *type, const char *param, const char *code);

/* What every completion object carries. */
typedef struct {
    serve_kind kind;
    const char *id;           /* "chatcmpl-..." / "cmpl-..." */
    long long created;        /* unix seconds */
    const char *model;
} serve_meta;

/* {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"}} */
void *serve_usage_json(int prompt, int completion, int cached);

/* One token's log-probability entry. Chat: {"token", "logprob", "bytes", "top_logprobs": [...]};
 * the alternatives' texts and log-probabilities are given in parallel arrays. */
void *serve_logprob_entry(const char *text, size_t len, double logprob, const char *const *top_text,
                          const size_t *top_len, const double *top_lp, int n_top);

/* The whole answer. logprobs: a json array of entries (chat) or NULL; usage: from serve_usage_json. */
void *serve_completion_json(const serve_meta *m, const char *text, size_t len, const char *finish, void *logprobs,
                            void *usage);
/* One stream chunk: role (chat, first chunk) or NULL, content text (may be NULL), finish reason or NULL,
 * log-prob entries (json array) or NULL. */
void *serve_chunk_json(const serve_meta *m, const char *role, const char *text, size_t len, const char *finish,
                       void *logprobs);
/* The final usage chunk of a stream (stream_options.include_usage): empty choices. */
void *serve_usage_chunk_json(const serve_meta *m, void *usage);
#endif
