/* tokenizer.h — byte-level BPE tokenizer (Qwen2 / Qwen2.5), identical to Hugging Face
 * tokenizers: added-token splitting, normalizer, Split pre-tokenizer, ByteLevel, BPE
 * merges by rank, ByteLevel decoding with Python's errors="replace" UTF-8 repair.
 *
 * Sources: tokenizer.json (merges as "a b" or ["a","b"]), or vocab.json + merges.txt
 * (+ tokenizer_config.json added_tokens_decoder / added_tokens.json), or a
 * flm_tokenizer_spec built by a container reader (GGUF). See docs/TOKENIZER.md.
 *
 * Thread safety: a loaded flm_tokenizer is immutable. encode/decode/lookups may run on
 * one tokenizer from any number of threads at once (the per-word cache is per call).
 * A flm_token_stream has one owner. */
#ifndef FLM_TOKENIZER_H
#define FLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

typedef struct flm_tokenizer flm_tokenizer;

/* ---- loading ---------------------------------------------------------------- */
/* Hugging Face files only; any model path (a folder or a .gguf package) is opened by
 * src/package/source.h (flm_source_tokenizer, flm_load_tokenizer). */

/* A folder with tokenizer.json, or else vocab.json + merges.txt (added tokens from
 * tokenizer_config.json "added_tokens_decoder" and added_tokens.json; normalizer and
 * pre-tokenizer from the preset of its tokenizer_class, see flm_tokenizer_preset). */
int flm_tokenizer_load_dir(const char *dir, flm_tokenizer **out);
/* A tokenizer.json file (FLM_ERR_IO when it cannot be read, FLM_ERR_FORMAT when bad). */
int flm_tokenizer_load_file(const char *path, flm_tokenizer **out);
/* Parses tokenizer.json text; `what` names the source in error messages. */
int flm_tokenizer_load_json(const char *text, size_t len, const char *what, flm_tokenizer **out);
void flm_tokenizer_free(flm_tokenizer *tok);

/* ---- building from parts (container formats such as GGUF) ------------------- */

typedef struct {
    int32_t id;
    const char *content; /* UTF-8 text of the token, NUL-terminated */
    bool special, lstrip, rstrip, single_word, normalized;
} flm_added_token;

typedef struct {
    /* vocab[id]: the model vocabulary's token text, byte-level encoded exactly as in
     * tokenizer.json ("Ġthe"); NULL marks a hole. */
    const char *const *vocab;
    size_t n_vocab;
    /* merges[rank] = "a b" (the two byte-level parts separated by one space). */
    const char *const *merges;
    size_t n_merges;
    const flm_added_token *added;
    size_t n_added;
    /* The "normalizer", "pre_tokenizer" and "decoder" members of tokenizer.json as
     * JSON text (e.g. "{\"type\":\"NFC\"}"); NULL or "null" means none. Supported:
     * normalizer NFC/NFD/NFKC/NFKD/Sequence; pre_tokenizer Sequence of Split
     * (Regex or String pattern, behaviour Isolated or Removed, invert) ending with
     * ByteLevel; decoder ByteLevel (or none). */
    const char *normalizer_json;
    const char *pre_tokenizer_json;
    const char *decoder_json;
    bool ignore_merges; /* model.ignore_merges: a word found whole in vocab skips BPE */
} flm_tokenizer_spec;

/* Builds a tokenizer; copies everything it needs from spec (spec may be freed after). */
int flm_tokenizer_from_spec(const flm_tokenizer_spec *spec, flm_tokenizer **out);
/* Describes tok as a spec. All pointers are borrowed, valid until flm_tokenizer_free.
 * The JSON members are compact re-serialisations of the source's JSON. */
void flm_tokenizer_get_spec(const flm_tokenizer *tok, flm_tokenizer_spec *spec);
/* Fills normalizer_json / pre_tokenizer_json / decoder_json with the configuration a
 * Hugging Face converter writes for a model family, for sources that carry only the
 * vocabulary and merges (llama.cpp GGUF "tokenizer.ggml.pre", slow-tokenizer folders).
 * Names: "qwen2" (NFC + Qwen2 Split regex + ByteLevel) and "gpt2" (ByteLevel with its
 * built-in regex). Returns FLM_ERR_UNSUPPORTED for other names. Static strings. */
int flm_tokenizer_preset(const char *name, flm_tokenizer_spec *spec);
extern const char flm_qwen2_pretokenize_regex[];

/* ---- encoding ----------------------------------------------------------------- */

enum {
    /* Special added tokens in the text are encoded as ordinary text; non-special added
     * tokens are still recognised (tokenizers' encode_special_tokens, transformers'
     * split_special_tokens=True, llama.cpp parse_special=false). */
    FLM_ENCODE_SPECIAL_AS_TEXT = 1 << 0,
    /* No added token at all is recognised in the text. */
    FLM_ENCODE_NO_ADDED = 1 << 1,
};

/* Encodes UTF-8 text[0..len) like tokenizer.encode(text, add_special_tokens=False).
 * *ids is malloc'ed (caller frees; non-NULL even when *n_ids is 0). Text that is not
 * valid UTF-8 is rejected with FLM_ERR_ARG. A pre-tokenizer regex (from the model file)
 * that exceeds its matching limits fails with FLM_ERR_UNSUPPORTED and a message naming
 * the pattern; the work is bounded by a budget proportional to len (docs/TOKENIZER.md). */
int flm_tokenizer_encode(const flm_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         size_t *n_ids);
int flm_tokenizer_encode_ex(const flm_tokenizer *tok, const char *text, size_t len, int flags,
                            int32_t **ids, size_t *n_ids);

/* ---- decoding ----------------------------------------------------------------- */

/* Appends the text of ids to out, like tokenizer.decode(ids, skip_special_tokens=False):
 * added tokens give their content; bytes that are not valid UTF-8 become U+FFFD as
 * Python's bytes.decode("utf-8", "replace") does. FLM_ERR_ARG for an unknown id. */
int flm_tokenizer_decode(const flm_tokenizer *tok, const int32_t *ids, size_t n, strbuf *out);
/* The raw bytes of one token after the ByteLevel decoder (may be part of a UTF-8
 * character). Borrowed; NULL for an unknown id. */
const uint8_t *flm_tokenizer_token_bytes(const flm_tokenizer *tok, int32_t id, size_t *len);

/* Streaming decoder: feed ids one at a time and get the newly completed text; bytes of
 * an unfinished UTF-8 character are held back. Concatenated output (with the flush) is
 * exactly flm_tokenizer_decode of all ids. Plain struct: may live on the stack. */
typedef struct {
    const flm_tokenizer *tok; /* private */
    uint8_t pending[4];       /* private: the start of an unfinished character */
    size_t n_pending;         /* private */
} flm_token_stream;

void flm_token_stream_init(flm_token_stream *st, const flm_tokenizer *tok);
/* Appends the text completed by `id` to out (possibly nothing). FLM_ERR_ARG for an
 * unknown id (the stream is left unchanged). */
int flm_token_stream_feed(flm_token_stream *st, int32_t id, strbuf *out);
/* Appends U+FFFD if an unfinished character is pending, and resets the stream. */
void flm_token_stream_flush(flm_token_stream *st, strbuf *out);

/* ---- vocabulary --------------------------------------------------------------- */

/* Number of ids: the largest id of the vocabulary or the added tokens, plus one
 * (151665 for Qwen2.5, as len(tokenizer) in transformers). */
size_t flm_tokenizer_vocab_size(const flm_tokenizer *tok);
/* The id of a token given as its vocabulary text (added tokens first, then the model's
 * byte-level vocabulary: "Ġthe", "<|im_end|>"); -1 if there is none. */
int32_t flm_tokenizer_token_id(const flm_tokenizer *tok, const char *token);
/* The vocabulary text of an id (added token content or byte-level string); NULL for an
 * unknown id. Borrowed. */
const char *flm_tokenizer_token_text(const flm_tokenizer *tok, int32_t id);
/* True if id is an added token marked special. */
bool flm_tokenizer_is_special(const flm_tokenizer *tok, int32_t id);

#endif
