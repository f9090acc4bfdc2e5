/* fieldlm.h — the only public header of the fieldlm library.
 *
 * fieldlm runs Qwen2 / Qwen2.5 models on the CPU, from a Hugging Face folder or a
 * single-file package (GGUF), with every step verified against transformers.
 * Every exported name starts with flm_ / FLM_. Functions return an flm_status
 * (0 = success, negative = error); the library never exits or prints.
 * examples/simple.c shows the API in use; docs/API.md describes all of it (ownership,
 * threads, the "unset" convention, errors) and docs/GENERATION.md generation. */
#ifndef FIELDLM_H
#define FIELDLM_H

#include <math.h>
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
    FLM_ERR_BUFFER = -8,      /* the caller's buffer is too small (the call says how much is needed) */
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

/* What flm_open reads of the path. */
typedef enum {
    FLM_OPEN_ALL = 0,       /* everything: weights, tokenizer, chat template, generation_config.json */
    FLM_OPEN_TOKENIZER = 1, /* the tokenizer only (flm_tokenize, flm_detokenize, flm_model_info): the
                               path may also be a tokenizer.json file; no weights are read */
    FLM_OPEN_TEMPLATE = 2,  /* the chat templates only (flm_render_json, flm_model_info): no tokenizer
                               and no weights are needed, e.g. a folder with chat_template.jinja */
} flm_open_what;

typedef struct {
    const flm_lora_adapter *lora; /* borrowed for the duration of flm_open; may be NULL */
    int n_lora;
    int n_threads;        /* threads of each session's forward pass; <= 0: physical cores */
    flm_weights_mode weights; /* FLM_WEIGHTS_AUTO (0) unless set */
    flm_open_what what;   /* FLM_OPEN_ALL (0) unless set; adapters need FLM_OPEN_ALL */
} flm_open_options;

/* Opens a Hugging Face model folder or a .gguf package (opt->what says which parts).
 * opt may be NULL (everything, no adapters, all physical cores). On success *out is
 * owned by the caller and must be released with flm_close; on failure *out is NULL
 * and flm_errmsg(NULL) says why. A function that needs a part the handle was not
 * opened with fails with FLM_ERR_UNSUPPORTED. */
FLM_API int flm_open(const char *path, const flm_open_options *opt, flm_handle **out);
/* Releases the model. Every session made from it must be freed first. NULL is a no-op. */
FLM_API void flm_close(flm_handle *h);
/* The message of the last failed call on h (flm_tokenize, flm_render*,
 * flm_session_new, ...; borrowed, valid until the next such call on h); "" if none. When several threads use h at
 * once their messages may overwrite each other: flm_errmsg(NULL), the calling
 * thread's last message, is exact right after a failed call on any handle. */
FLM_API const char *flm_errmsg(const flm_handle *h);

/* Model facts (h borrowed). */
FLM_API int flm_max_context(const flm_handle *h);   /* max_position_embeddings (0 without weights) */
FLM_API int flm_vocab_size(const flm_handle *h);    /* embedding rows (0 without weights) */

#define FLM_INFO_MAX_STOP 16

/* What flm_model_info reports. Strings are borrowed from the handle (valid until
 * flm_close); numbers a part the handle was not opened with are 0 (strings ""). */
typedef struct {
    const char *path;           /* the path given to flm_open */
    const char *architecture;   /* config.json model_type, e.g. "qwen2" */
    const char *dtype;          /* the weight matrices' type in the file: "bf16", "q8_0", ... */
    const char *torch_dtype;    /* the checkpoint's declared torch_dtype ("" when absent) */
    int n_layers;
    int n_embd;                 /* hidden_size */
    int n_ff;                   /* intermediate_size */
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int n_vocab;                /* embedding rows (vocab_size) */
    int max_context;            /* max_position_embeddings */
    int n_tokens;               /* ids the tokenizer knows (0 without a tokenizer) */
    int32_t stop_ids[FLM_INFO_MAX_STOP]; /* every id generation stops at: generation_config.json's
                                           eos ids (else config.json's), then the tokenizer's */
    int n_stop_ids;
    int has_chat_template;      /* non-zero when rendering can work (flm_render) */
    int n_lora;                 /* adapters merged at open */
    uint64_t weights_in_memory; /* bytes of weights copied into memory at open (0: mapped) */
    const char *warning;        /* something a user should hear about the model (e.g. embedding rows
                                   that no token covers), or NULL; the CLI prints it */
} flm_info;

/* Fills *info (h borrowed; thread-safe). FLM_ERR_ARG for NULL arguments. */
FLM_API int flm_model_info(const flm_handle *h, flm_info *info);

/* ==== Tokens =============================================================== */

/* flm_tokenize flags (0: transformers' tokenizer.encode(text, add_special_tokens=False):
 * every added token written in the text, special or not, is recognised). The Qwen2
 * tokenizers add no BOS/EOS, so there is no "add special" flag. */
enum {
    FLM_TOKENIZE_SPECIAL_AS_TEXT = 1 << 0, /* special tokens in the text are plain text; non-special
                                              added tokens are still recognised (llama.cpp's
                                              parse_special=false) */
    FLM_TOKENIZE_NO_ADDED = 1 << 1,        /* no added token at all is recognised */
};

/* Encodes UTF-8 text[0..len) into ids[0..cap). *n_needed (required) always receives
 * the number of tokens of the text. When it is at most cap the ids are written and
 * the result is FLM_OK; when it is larger the result is FLM_ERR_BUFFER, ids is left
 * untouched, and a second call with cap >= *n_needed succeeds (ids may be NULL
 * when cap is 0: a size query). Text that is not valid UTF-8 is FLM_ERR_ARG.
 * Needs the tokenizer (FLM_OPEN_ALL or FLM_OPEN_TOKENIZER). Thread-safe on one h. */
FLM_API int flm_tokenize(flm_handle *h, const char *text, size_t len, int flags, int32_t *ids, size_t cap,
                         size_t *n_needed);
/* The text of ids, as tokenizer.decode(ids, skip_special_tokens=False): added tokens
 * give their content, bytes that do not form valid UTF-8 become U+FFFD. *text is
 * malloc'ed and NUL-terminated (release it with flm_free); *len (may be NULL) gets its
 * length, which counts any NUL a token decodes to. An id the tokenizer does not know
 * is FLM_ERR_ARG (*text NULL). Thread-safe on one h. */
FLM_API int flm_detokenize(flm_handle *h, const int32_t *ids, size_t n, char **text, size_t *len);

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

/* ==== Generation settings ==================================================
 *
 * One struct holds every generation setting: sampling, length, stop strings and
 * the session's context and threads. The "unset" convention is the same for every
 * field: FLM_UNSET_INT (-1) for integers, FLM_UNSET_FLOAT (NaN; test it with
 * flm_is_unset) for reals, NULL / 0 for the stop list. An unset field takes the
 * model's generation_config.json value, else transformers' default (do_sample
 * false, temperature 1, top_k 50, top_p 1, min_p off, repetition_penalty 1) or the
 * documented default below, so a session made from flm_gen_settings_init()
 * generates as transformers' generate() does with the model's own configuration.
 * A set value out of range is FLM_ERR_ARG at flm_session_new, naming the field.
 * The seed has no unset value (every 64-bit value is a seed): init sets 0. */
#define FLM_UNSET_INT (-1)
/* max_new_tokens when neither the settings nor generation_config.json give it
 * (transformers' max_length = 20 default is deliberately not used). */
#define FLM_DEFAULT_MAX_NEW_TOKENS 256
#define FLM_UNSET_FLOAT ((double)NAN)

typedef struct {
    int do_sample;             /* 0: greedy (argmax after the repetition penalty); 1: sample */
    double temperature;        /* >= 0; 0 = greedy even when sampling */
    int top_k;                 /* >= 0; 0 = off */
    double top_p;              /* in [0, 1]; 1 = off */
    double min_p;              /* in [0, 1]; 0 = off */
    double repetition_penalty; /* > 0; 1 = off; applies to greedy decoding too */
    uint64_t seed;             /* the sampler's PRNG seed (same seed, same text) */
    long max_new_tokens;       /* > 0; unset: generation_config.json's max_new_tokens, else
                                  FLM_DEFAULT_MAX_NEW_TOKENS */
    const char *const *stop;   /* extra stop strings (non-empty), copied by flm_session_new */
    int n_stop;
    int n_ctx;                 /* > 0, at most max_position_embeddings; unset:
                                  min(4096, max_position_embeddings) */
    int n_threads;             /* > 0; unset: flm_open_options.n_threads */
    /* OpenAI's penalties (not in transformers), over the ids generated so far, applied to
     * the logits before everything above: logit -= count * frequency_penalty +
     * presence_penalty for each generated id (count: its occurrences). */
    double presence_penalty;   /* in [-2, 2]; unset (or 0): off */
    double frequency_penalty;  /* in [-2, 2]; unset (or 0): off */
    int logprobs;              /* 1: compute each generated token's log-probability for
                                  flm_token_logprobs; unset (or 0): off */
    int top_logprobs;          /* 0..20 most likely alternatives flm_token_logprobs also gives
                                  (needs logprobs 1); unset: 0 */
} flm_gen_settings;

/* Every field unset, seed 0, no stop strings. s NULL is a no-op. */
FLM_API void flm_gen_settings_init(flm_gen_settings *s);
/* Non-zero when v is FLM_UNSET_FLOAT (any NaN). */
FLM_API int flm_is_unset(double v);
/* Fills *s with what an unset field resolves to on h: the model's
 * generation_config.json merged over transformers' defaults, max_new_tokens,
 * n_ctx and n_threads as a session would use them; seed 0; no stop strings.
 * Needs FLM_OPEN_ALL. Thread-safe. */
FLM_API int flm_gen_settings_defaults(const flm_handle *h, flm_gen_settings *s);

/* Creates a session on h (h must outlive it; needs FLM_OPEN_ALL). settings NULL =
 * flm_gen_settings_init()'s (all unset), which are copied: the caller may free or
 * reuse them (and the stop strings) after the call. The KV cache grows with use up
 * to n_ctx. *out is owned by the caller (flm_session_free); on failure it is NULL
 * and flm_errmsg(h) says why. Thread safety: h may be used by other sessions at the
 * same time. */
FLM_API int flm_session_new(flm_handle *h, const flm_gen_settings *settings, flm_session **out);
FLM_API void flm_session_free(flm_session *s);
FLM_API const char *flm_session_errmsg(const flm_session *s);
FLM_API int flm_session_n_ctx(const flm_session *s);
/* The settings the session runs with, every field resolved (none unset): what the
 * CLI prints as "sampling: ...". stop points into the session (valid until
 * flm_session_free). */
FLM_API int flm_session_settings(const flm_session *s, flm_gen_settings *out);
/* Replaces a session's generation settings between generations, keeping its KV cache
 * (so the next flm_generate* still reuses the common prefix) and restarting its PRNG
 * from settings->seed: a server gives each request its own settings on a long-lived
 * session. Fields resolve as in flm_session_new (unset: the model's defaults);
 * n_ctx and n_threads must be unset or equal to the session's (FLM_ERR_ARG).
 * On failure the session is unchanged and flm_session_errmsg(s) says why. */
FLM_API int flm_session_configure(flm_session *s, const flm_gen_settings *settings);

/* A token and its log-probability (natural log). */
typedef struct {
    int32_t token;
    float logprob;
} flm_token_logprob;

/* Inside a flm_token_fn call for a token (token >= 0) on a session whose settings have
 * logprobs 1: that token's log-probability under the model (log-softmax of the model's
 * logits, before penalties, temperature and filters) in *chosen, and the
 * min(cap, top_logprobs) most likely tokens in top[] (most likely first; ties: lower
 * id first), their count in *n_top. FLM_ERR_ARG outside such a call or without
 * logprobs. top may be NULL when cap is 0. */
FLM_API int flm_token_logprobs(const flm_session *s, flm_token_logprob *chosen, flm_token_logprob *top, int cap,
                               int *n_top);

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
/* Releases what the library malloc'ed for the caller (rendered text, ...). NULL is a no-op. */
FLM_API void flm_free(void *p);

/* Called for each message the chat template leaves out of the prompt: its index in
 * the messages and its role (NULL when the message has no string "role"; borrowed
 * for the call). Runs on the calling thread. */
typedef void (*flm_dropped_fn)(void *user, size_t index, const char *role);

/* Finds the messages the chat template leaves out (transformers' Qwen2 template
 * skips any role but system, user, assistant and tool; a template without a system
 * turn drops the system message): a message whose removal leaves the rendered
 * prompt unchanged never reached it. One render per message; beyond 64 messages one
 * whose text is found in the prompt is taken as rendered and at most 256 others are
 * re-rendered (*n_unchecked, may be NULL, counts the rest). Calls fn for each
 * dropped message. When the messages do not render, calls nothing and returns the
 * render's error. Needs the chat template; thread-safe on one h. */
FLM_API int flm_render_check(flm_handle *h, const flm_message *msgs, size_t n_msgs, int add_generation_prompt,
                             flm_dropped_fn fn, void *user, size_t *n_unchecked);

/* Rendering from JSON, for messages with more than role and content (tool calls,
 * tool results) and for tools, as apply_chat_template(messages, tools=tools, ...). */
typedef struct {
    int add_generation_prompt;   /* non-zero: end with the assistant turn's opening */
    const char *tools_json;      /* a JSON array of tool schemas, or NULL (tools=None) */
    size_t tools_len;            /* bytes of tools_json */
    const char *template_name;   /* NULL: "tool_use" when tools are given and the model has it, else
                                    "default"; else that named template */
    const char *messages_name;   /* names the messages in error messages (e.g. their file); NULL: "messages" */
    const char *tools_name;      /* the same for the tools; NULL: "tools" */
    flm_dropped_fn dropped;      /* NULL: no check; else as flm_render_check */
    void *user;                  /* passed to dropped */
    size_t *n_unchecked;         /* may be NULL; as flm_render_check */
} flm_render_options;

/* Renders messages_json[0..len) (a JSON array of message objects). *text is
 * malloc'ed and NUL-terminated (flm_free), *text_len (may be NULL) its length.
 * Errors: FLM_ERR_FORMAT for JSON that is not an array of objects (the message
 * names messages_name) and for template errors (naming the template's file and
 * line). Works on any handle with the templates (FLM_OPEN_ALL or FLM_OPEN_TEMPLATE);
 * thread-safe on one h. */
FLM_API int flm_render_json(flm_handle *h, const char *messages_json, size_t len, const flm_render_options *opt,
                            char **text, size_t *text_len);

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
    /* Borrowed from the session, valid until its next flm_generate*, flm_session_reset
     * or flm_session_free: */
    const int32_t *prompt_ids;  /* the prompt's token ids */
    int n_prompt_ids;
    const int32_t *ids;         /* the generated ids (stop token excluded; stop-string tokens included) */
    int n_ids;
    const char *text;           /* the text delivered to the callback, NUL-terminated */
    size_t text_len;
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

/* ==== Adapters ============================================================ */

/* Splits an "ADAPTER_DIR[:SCALE]" argument as the CLI's --lora takes it. Only a
 * trailing ":NUMBER" is a scale (a plain finite decimal); anything else after the
 * last ':' belongs to the folder ("C:\\x", "a:b/c"); without one the scale is 1.
 * *path is malloc'ed (flm_free). Errors: FLM_ERR_ARG for an empty folder.
 * Thread-safe; the message goes to flm_errmsg(NULL). */
FLM_API int flm_lora_spec_parse(const char *spec, char **path, float *scale);
/* Sets *is_adapter to 1 when path is a folder holding adapter_config.json (a PEFT
 * adapter, to merge with flm_open_options.lora or flm_convert_options.lora, not a
 * model), else 0. When it is one and base_model is not NULL, *base_model receives
 * the config's base_model_name_or_path (malloc'ed, flm_free) or NULL. Reading
 * failures count as "not an adapter": FLM_OK unless an argument is NULL. */
FLM_API int flm_lora_probe(const char *path, int *is_adapter, char **base_model);

/* ==== Conversion ========================================================== */

/* Types of the weight matrices in a package. */
typedef enum {
    FLM_TYPE_F32 = 0,
    FLM_TYPE_F16 = 1,
    FLM_TYPE_BF16 = 2,
    FLM_TYPE_Q8_0 = 3,
    FLM_TYPE_Q4_0 = 4,
} flm_type;

/* "f32", "f16", "bf16", "q8_0", "q4_0"; NULL for another value. Static. */
FLM_API const char *flm_type_name(flm_type t);
/* The type of a name flm_type_name gives; FLM_ERR_ARG (with a message) for another. */
FLM_API int flm_type_from_name(const char *name, flm_type *out);

/* Called before each tensor is converted, and once at the end with index == total:
 * the tensor's name (borrowed for the call), its position, and the bytes of source
 * tensors done so far out of all. Runs on the calling thread. */
typedef void (*flm_progress_fn)(void *user, int index, int total, const char *name, uint64_t bytes_done,
                                uint64_t bytes_total);

typedef enum {
    FLM_FORMAT_AUTO = 0,           /* from the output's extension */
    FLM_FORMAT_GGUF = 1,           /* fieldlm's package (llama.cpp-compatible GGUF v3) */
    FLM_FORMAT_TFLITE = 2,         /* a LiteRT model with AI Edge Torch's prefill/decode signatures */
    FLM_FORMAT_LITERTLM = 3,       /* a LiteRT-LM bundle: that model + tokenizer + LlmMetadata */
} flm_format;

typedef struct {
    flm_type type;                 /* weight matrices; FLM_TYPE_F32 (0) unless set (flm_convert_options_init
                                      sets FLM_TYPE_Q8_0, the CLI's default) */
    const flm_lora_adapter *lora;  /* merged in order (W' = W + scale * B A in float32); may be NULL */
    int n_lora;
    int n_threads;                 /* <= 0: physical cores */
    flm_progress_fn progress;      /* may be NULL */
    void *user;                    /* passed to progress */
    volatile int *cancel;          /* may be NULL; set *cancel non-zero from any thread or a signal
                                      handler to stop between chunks: FLM_ERR_CANCELLED */
    /* The output format (docs/LITERT.md for the LiteRT ones). */
    flm_format format;             /* FLM_FORMAT_AUTO (0): from out's extension: .tflite, .litertlm, else GGUF */
    const char *recipe;            /* LiteRT outputs only (type is for GGUF): "dynamic_int8" (NULL: the
                                      default, as AI Edge Torch), "weight_only_int8", "fp16", "f32" / "none" */
    int ctx;                       /* LiteRT outputs: the KV cache length in the graph; 0: 4096, capped at
                                      max_position_embeddings */
    const int *prefill;            /* LiteRT outputs: prefill signature lengths; NULL: 8,64,128,256,512,1024 */
    int n_prefill;                 /* at most 16 */
    void (*warn)(void *user, const char *msg); /* may be NULL: what the output cannot express (LiteRT-LM has
                                      no repetition penalty, ...); called with user */
} flm_convert_options;

typedef struct {
    int n_tensors;                 /* tensors written */
    int n_fallback;                /* matrices kept as f16 (rows not a multiple of 32 for q8_0 / q4_0) */
    uint64_t bytes_written;        /* size of the package */
    double seconds;
    uint64_t peak_rss;             /* the process's peak resident memory, bytes */
    int no_tokenizer;              /* the folder had no tokenizer files: the package has none */
    flm_format format;             /* what was written (never FLM_FORMAT_AUTO) */
    int ctx;                       /* LiteRT: the cache length in the graph */
    int n_signatures;              /* LiteRT: prefill signatures + decode */
} flm_convert_stats;

/* FLM_TYPE_Q8_0, nothing else set. o NULL is a no-op. */
FLM_API void flm_convert_options_init(flm_convert_options *o);
/* Converts the Hugging Face checkpoint folder in (+ adapters) into one GGUF package
 * (or a LiteRT .tflite / LiteRT-LM .litertlm, opt->format) at out, streaming one tensor at a time. out is refused before any work when it is
 * one of the inputs, a directory, something other than a regular file, or in a
 * folder that is missing or not writable (FLM_ERR_ARG); it is written to a temporary
 * file beside it and renamed at the end, so on any error or cancel nothing is left
 * behind (no out, no temporary file). opt NULL = flm_convert_options_init()'s;
 * stats may be NULL. Errors go to flm_errmsg(NULL). Past the file size limit the
 * write fails with FLM_ERR_IO if the caller ignores SIGXFSZ (the CLI does).
 * Thread-safe: separate conversions may run at once. */
FLM_API int flm_convert(const char *in, const char *out, const flm_convert_options *opt, flm_convert_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
