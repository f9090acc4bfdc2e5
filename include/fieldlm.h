/* fieldlm.h — the only public header of the fieldlm library.
 *
 * fieldlm runs Qwen2 / Qwen2.5 models on the CPU, from a Hugging Face folder or a
 * single-file package (GGUF), with every step verified against transformers.
 * Every exported name starts with flm_ / FLM_. Functions return an flm_status
 * (0 = success, negative = error); the library never exits or prints.
 * examples/simple.c shows the whole API in use; docs/GENERATION.md describes it. */
#ifndef FIELDLM_H
#define FIELDLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLM_VERSION "0.1.0"

/* FLM_API marks what the shared library exports; everything else in it is built
 * with -fvisibility=hidden. Define FLM_API yourself to override. */
#ifndef FLM_API
#if defined(__GNUC__) || defined(__clang__)
#define FLM_API __attribute__((visibility("default")))
#else
#define FLM_API
#endif
#endif

typedef enum {
    FLM_OK = 0,
    FLM_ERR_IO = -1,          /* a file could not be opened, read or written */
    FLM_ERR_FORMAT = -2,      /* a file is malformed (bad JSON, bad header, wrong shape) */
    FLM_ERR_UNSUPPORTED = -3, /* valid input this version does not handle */
    FLM_ERR_NOMEM = -4,       /* an allocation failed */
    FLM_ERR_ARG = -5,         /* an argument is out of range or inconsistent */
    FLM_ERR_CONTEXT = -6,     /* the context window is full / prompt too long */
    FLM_ERR_CANCELLED = -7,   /* the operation was cancelled by the caller */
} flm_status;

/* A short constant description of a status code. */
FLM_API const char *flm_status_str(int status);

/* ==== Generation API ======================================================
 *
 * A flm_handle is an opened model: weights (with any LoRA adapters merged),
 * tokenizer, chat template and generation_config.json defaults. It is
 * immutable after flm_open and may be shared by any number of threads and
 * sessions at once; close it after its last session.
 *
 * A flm_session is one conversation's state: the KV cache (its context length
 * chosen at creation), the sampler and its seeded PRNG. A session has one owner:
 * its functions must not run concurrently, except flm_cancel, which any thread or
 * a signal handler may call at any time.
 *
 * Strings are UTF-8. Errors: every function returns an flm_status; the message of
 * the last failure is kept per handle / per session (flm_errmsg,
 * flm_session_errmsg), and flm_errmsg(NULL) gives the calling thread's last
 * message (e.g. after flm_open failed). */

typedef struct flm_handle flm_handle;
typedef struct flm_session flm_session;

/* One LoRA adapter to merge at load: a PEFT folder (adapter_config.json +
 * adapter_model.safetensors) and an extra scale (1.0 = as trained). */
typedef struct {
    const char *path;
    float scale;
} flm_lora_adapter;

/* Where the weight matrices live while the model runs. */
typedef enum {
    FLM_WEIGHTS_AUTO = 0, /* LOAD when the copy takes at most half of the memory the
                             kernel reports available, else MAP */
    FLM_WEIGHTS_MAP = 1,  /* run them in place from the file mapping: instant open,
                             clean pages the kernel may drop and re-read */
    FLM_WEIGHTS_LOAD = 2, /* copy them into memory at open (2 MiB pages where the kernel
                             allows): steadier decode speed (docs/PERFORMANCE.md) */
} flm_weights_mode;

typedef struct {
    const flm_lora_adapter *lora; /* borrowed for the duration of flm_open; may be NULL */
    int n_lora;
    int n_threads;        /* threads of each session's forward pass; <= 0: physical cores */
    flm_weights_mode weights; /* FLM_WEIGHTS_AUTO (0) unless set */
} flm_open_options;

/* Opens a Hugging Face model folder or a .gguf package. opt may be NULL (no
 * adapters, all physical cores). On success *out is owned by the caller and must
 * be released with flm_close; on failure *out is NULL and flm_errmsg(NULL) says why. */
FLM_API int flm_open(const char *path, const flm_open_options *opt, flm_handle **out);
/* Releases the model. Every session made from it must be freed first. NULL is a no-op. */
FLM_API void flm_close(flm_handle *h);
/* The message of the last failed call on h (flm_render, flm_session_new; borrowed,
 * valid until the next such call on h); "" if none. When several threads use h at
 * once their messages may overwrite each other: flm_errmsg(NULL), the calling
 * thread's last message, is exact right after a failed call on any handle. */
FLM_API const char *flm_errmsg(const flm_handle *h);

/* Model facts (h borrowed). */
FLM_API int flm_max_context(const flm_handle *h);   /* max_position_embeddings */
FLM_API int flm_vocab_size(const flm_handle *h);

/* Why generation stopped. */
typedef enum {
    FLM_STOP_NONE = 0,    /* not stopped (internal) */
    FLM_STOP_EOS,         /* an end-of-sequence token was sampled (not emitted) */
    FLM_STOP_LENGTH,      /* max_new_tokens were generated */
    FLM_STOP_CONTEXT,     /* prompt + generated tokens filled the context */
    FLM_STOP_STRING,      /* a stop string appeared (it and what follows not emitted) */
    FLM_STOP_CANCELLED,   /* flm_cancel, or the token callback returned non-zero */
} flm_stop_reason;

/* "eos", "length", "context", "stop_string", "cancelled" ("none" for 0). Static. */
FLM_API const char *flm_stop_reason_str(flm_stop_reason r);

/* Session settings. Get the defaults with flm_session_default_options(): every
 * "< 0" (or NULL) field then means "the model's generation_config.json, else
 * transformers' default", so a default session generates as transformers'
 * generate() does with the model's own configuration. */
typedef struct {
    int n_ctx;                 /* context length; <= 0: min(4096, max_position_embeddings) */
    int n_threads;             /* <= 0: the handle's */
    int greedy;                /* non-zero: argmax with no processors (repetition penalty
                                  off unless repetition_penalty is given) */
    int do_sample;             /* < 0: config; 0: greedy (config's penalty kept); 1: sample */
    double temperature;        /* < 0: config */
    int top_k;                 /* < 0: config; 0: off */
    double top_p;              /* < 0: config */
    double min_p;              /* < 0: config */
    double repetition_penalty; /* <= 0: config */
    uint64_t seed;             /* PRNG seed (default 0) */
    long max_new_tokens;       /* <= 0: config's max_new_tokens, else 256 */
    const char *const *stop;   /* stop strings, copied by flm_session_new; may be NULL */
    int n_stop;
} flm_session_options;

FLM_API flm_session_options flm_session_default_options(void);

/* Creates a session on h (h must outlive it). opt NULL = defaults. The KV cache
 * grows with use up to n_ctx. *out is owned by the caller (flm_session_free).
 * Thread safety: h may be used by other sessions at the same time. */
FLM_API int flm_session_new(flm_handle *h, const flm_session_options *opt, flm_session **out);
FLM_API void flm_session_free(flm_session *s);
FLM_API const char *flm_session_errmsg(const flm_session *s);
FLM_API int flm_session_n_ctx(const flm_session *s);

/* A conversation turn. Roles as the chat template knows them: "system", "user",
 * "assistant". */
typedef struct {
    const char *role;
    const char *content;
} flm_message;

/* Renders messages through the model's chat template, as transformers'
 * apply_chat_template(messages, add_generation_prompt=..., tokenize=False).
 * *text is malloc'ed, released with flm_free. Without a system message the
 * template's own default applies. */
FLM_API int flm_render(flm_handle *h, const flm_message *msgs, size_t n_msgs, int add_generation_prompt, char **text);
FLM_API void flm_free(void *p);

/* Called once per generated token (the stop token excluded) with the new text
 * (piece[0..len), valid UTF-8, NUL-terminated, possibly empty while a multi-byte
 * character or a possible stop string is incomplete; borrowed for the call) and
 * the token id; token is -1 for text released when generation ends. Returning
 * non-zero stops generation (stop reason "cancelled"). Runs on the calling thread. */
typedef int (*flm_token_fn)(void *user, const char *piece, size_t len, int32_t token);

typedef struct {
    int prompt_tokens;     /* tokens of the prompt */
    int reused_tokens;     /* of those, found in the KV cache (not recomputed) */
    double prefill_s;      /* time to process the rest of the prompt */
    double prefill_tok_s;  /* (prompt_tokens - reused_tokens) / prefill_s */
    int generated_tokens;  /* tokens generated (stop token excluded) */
    double decode_s;       /* from the end of the prefill to the end */
    double decode_tok_s;   /* generated_tokens / decode_s */
    double ttft_s;         /* from the start of the prefill (after rendering and encoding) to the first token */
} flm_timings;

typedef struct {
    flm_stop_reason stop_reason;
    int32_t stop_token;    /* the eos id sampled (FLM_STOP_EOS), else -1 */
    flm_timings timings;
} flm_result;

/* Renders msgs with the chat template (add_generation_prompt true), encodes the
 * text (special tokens recognised, nothing added), reuses the KV cache for the
 * longest common prefix with what the session processed before, and generates
 * until an eos id (generation_config.json's and the tokenizer's), a stop string,
 * max_new_tokens, the end of the context, or a cancel. For multi-turn chat, pass
 * the whole history each turn (append the assistant's answer yourself).
 * A prompt that does not leave room for one token is FLM_ERR_CONTEXT (nothing is
 * truncated). Cancelling is not an error: FLM_OK with FLM_STOP_CANCELLED.
 * cb may be NULL; res may be NULL. */
FLM_API int flm_generate(flm_session *s, const flm_message *msgs, size_t n_msgs, flm_token_fn cb, void *user, flm_result *res);
/* The same for prompt text used as is (no template). */
FLM_API int flm_generate_text(flm_session *s, const char *prompt, flm_token_fn cb, void *user, flm_result *res);

/* Asks the running flm_generate* on s to stop at its next check (every token and
 * every prefill chunk of 64 tokens). Async-signal-safe and thread-safe (an atomic
 * store). Each flm_generate* clears the flag when it starts, so a cancel that
 * arrives while no generation runs is forgotten. */
FLM_API void flm_cancel(flm_session *s);
/* Forgets the KV cache and restarts the PRNG from the session's seed. */
FLM_API void flm_session_reset(flm_session *s);

#ifdef __cplusplus
}
#endif
#endif
