/* session.h — prompt → tokens → generation loop (internal).
 *
 * flm_assets: everything a model path provides, loaded in one place
 * (flm_assets_open): the model, the tokenizer, the chat template, the generation
 * config and the stop ids. Immutable once loaded; share it between threads.
 *
 * flm_gen_session: one sequence's generation state: the KV cache (reused across
 * calls for the longest common prefix of token ids), the sampler, the cancel flag,
 * and the last call's prompt ids, generated ids and text. One owner at a time,
 * except flm_gen_cancel (any thread, or a signal handler).
 *
 * The loop (flm_gen_run): prefill in chunks of FLM_PREFILL_CHUNK, then per step:
 * sample over prompt + generated ids → stop on an eos id (not emitted) → stream the
 * text (UTF-8 safe, holding back what could still become a stop string) → stop on
 * a stop string, max_new_tokens or a full context → feed the token. */
#ifndef FLM_SESSION_H
#define FLM_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "runtime/forward.h"
#include "runtime/sampler.h"
#include "model/gen_config.h"
#include "model/model.h"
#include "text/template.h"
#include "text/tokenizer.h"

#define FLM_PREFILL_CHUNK 64
/* FLM_DEFAULT_MAX_NEW_TOKENS (fieldlm.h): max_new_tokens when neither the user nor
 * generation_config.json sets it. */
#define FLM_MAX_STOP_IDS 16

typedef struct {
    flm_model *model;
    flm_tokenizer *tok;
    flm_template_source tsrc;   /* n == 0 when the model has no chat template */
    flm_template *tmpl;         /* the compiled "default" template, or NULL */
    char *tmpl_error;           /* why there is no template (for render errors) */
    flm_gen_config gen;         /* generation_config.json (or transformers' defaults) */
    int32_t eos[FLM_MAX_STOP_IDS]; /* every stop id: gen config (else config.json), then tokenizer */
    int n_eos;
    char *path;
    char *warning;              /* something the user should hear (the CLI prints it), or NULL */
} flm_assets;

/* Embedding rows without a token that are normal padding (Qwen2.5: 271 of 151,936;
 * the 7B and larger: 399 of 152,064); more is reported in flm_assets.warning. */
#define FLM_UNCOVERED_ROWS_OK 1024

/* Loads every asset of a model path (HF folder or .gguf package, opened and parsed
 * once): model (with adapters from mopt, may be NULL), tokenizer, chat template (its
 * absence is not an error: rendering then fails with the reason), generation config,
 * stop ids. Refuses a tokenizer that does not fit the embedding: a token, stop or
 * pad id without a row, or fewer tokens than half of the rows. */
int flm_assets_open(const char *path, const flm_model_options *mopt, flm_assets **out);
void flm_assets_close(flm_assets *a);

/* Renders messages (a JSON array of {role, content}) through the chat template. */
int flm_assets_render(const flm_assets *a, const flm_json *messages, bool add_generation_prompt, strbuf *out);
/* Convenience: role/content pairs (n pairs: roles[i], contents[i]). */
int flm_assets_render_pairs(const flm_assets *a, const char *const *roles, const char *const *contents, size_t n,
                            bool add_generation_prompt, strbuf *out);
/* The JSON array [{"role": roles[i], "content": contents[i]}, ...] as a parsed
 * document (flm_json_free). FLM_ERR_ARG for a NULL role or content. */
int flm_pairs_to_json(const char *const *roles, const char *const *contents, size_t n, flm_json_doc **out);
/* Encodes prompt text like tokenizer.encode(text, add_special_tokens=False)
 * (special tokens in the text recognised). *ids malloc'ed. */
int flm_assets_encode(const flm_assets *a, const char *text, size_t len, int32_t **ids, size_t *n);
bool flm_assets_is_eos(const flm_assets *a, int32_t id);

typedef struct {
    int n_ctx;                 /* <= 0: min(4096, max_position_embeddings) */
    int n_threads;             /* forward threads; <= 0: physical cores */
    flm_sampler_params sp;     /* see flm_gen_config_sampler_params */
    long max_new_tokens;       /* > 0 */
    const char *const *stop;   /* stop strings (copied) */
    int n_stop;
    double presence_penalty;   /* OpenAI's, over the generated ids: 0 = off */
    double frequency_penalty;  /* OpenAI's, times each generated id's count: 0 = off */
    int top_logprobs;          /* < 0: no log-probabilities; else each generated token's and this many
                                  alternatives' (flm_gen_token_logprobs), at most FLM_GEN_MAX_TOP_LOGPROBS */
    /* NULL: fieldlm's own numerics. Else LiteRT's dynamic_int8 numerics emulated with
     * these int8 weights (litert_int8.h; borrowed, must outlive the session). */
    const flm_litert_int8 *litert_int8;
} flm_gen_params;
#define FLM_GEN_MAX_TOP_LOGPROBS 20

/* Parameters from the asset's generation config merged with `overrides` (user
 * fields win; NULL = none), seed as given; greedy forces argmax (and, unless the
 * user set repetition_penalty, turns the penalty off). max_new_tokens: user, then
 * the config file's, then FLM_DEFAULT_MAX_NEW_TOKENS. */
void flm_gen_params_from_config(const flm_assets *a, const flm_gen_config *overrides, bool greedy, uint64_t seed,
                                flm_gen_params *p);

typedef struct flm_gen_session flm_gen_session;

/* Called per generated token with the newly released text (valid UTF-8, may be
 * empty) and the token (-1 for text released at the end). Non-zero stops. */
typedef int (*flm_gen_piece_fn)(void *user, const char *piece, size_t len, int32_t token);

typedef struct {
    flm_stop_reason stop_reason;
    int32_t stop_token;        /* eos id when stop_reason is EOS, else -1 */
    flm_timings timings;
    /* Borrowed from the session, valid until its next run/reset/free: */
    const int32_t *prompt_ids; int n_prompt;
    const int32_t *ids; int n_ids;   /* generated, stop token excluded (stop-string tokens included) */
    const char *text; size_t text_len; /* emitted text (stop string and what follows cut) */
} flm_gen_result;

/* a must outlive the session. */
int flm_gen_session_new(const flm_assets *a, const flm_gen_params *p, flm_gen_session **out);
void flm_gen_session_free(flm_gen_session *s);
int flm_gen_session_n_ctx(const flm_gen_session *s);
/* The parameters the session was made with (stop points at the session's copies). */
const flm_gen_params *flm_gen_session_params(const flm_gen_session *s);
/* Replaces the parameters (sampler reseeded with p's seed, stop strings copied) and
 * keeps the KV cache; p->n_ctx and p->n_threads are ignored (they stay). On failure
 * nothing changes. */
int flm_gen_session_set_params(flm_gen_session *s, const flm_gen_params *p);
/* During a piece callback for a token (token >= 0): that token's log-probability
 * under the model (log-softmax of the raw logits, before penalties and sampling
 * filters), and the top alternatives, most likely first (ties: lower id first):
 * *n_top = min(cap, top_logprobs). FLM_ERR_ARG when top_logprobs < 0. */
int flm_gen_token_logprobs(const flm_gen_session *s, int32_t *token, float *logprob, int32_t *top_ids,
                           float *top_lp, int cap, int *n_top);
/* Forgets the cache and reseeds the sampler with the params' seed. */
void flm_gen_session_reset(flm_gen_session *s);
/* Sets the cancel flag (atomic; async-signal-safe). flm_gen_run clears it on entry. */
void flm_gen_cancel(flm_gen_session *s);

/* Generates from prompt ids. FLM_ERR_CONTEXT (nothing computed) when the prompt
 * leaves no room for a token; FLM_ERR_ARG for an id outside the vocabulary. */
int flm_gen_run(flm_gen_session *s, const int32_t *prompt, int n_prompt, flm_gen_piece_fn cb, void *user,
                flm_gen_result *res);
/* Renders (add_generation_prompt), encodes and runs. */
int flm_gen_run_chat(flm_gen_session *s, const char *const *roles, const char *const *contents, size_t n,
                     flm_gen_piece_fn cb, void *user, flm_gen_result *res);
/* Encodes text as is and runs. */
int flm_gen_run_text(flm_gen_session *s, const char *text, flm_gen_piece_fn cb, void *user, flm_gen_result *res);

#endif
