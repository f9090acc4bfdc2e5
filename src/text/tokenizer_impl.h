/* tokenizer_impl.h — the private layout of flm_tokenizer, shared by tokenizer.c (building,
 * loading), tokenizer_encode.c and tokenizer_decode.c. Not for other modules. */
#ifndef FLM_TOKENIZER_IMPL_H
#define FLM_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/tokenizer.h"

/* One added token, matched in the text before the pre-tokenizer. */
typedef struct {
    int32_t id;
    char *content; /* owned copy (the form given in the source) */
    size_t len;
    char *match;   /* what is searched for: content, or NFC(content) when normalized */
    size_t match_len;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* Leftmost-longest matcher over a set of added tokens. */
typedef struct {
    uint8_t first[256];  /* 1 if some token starts with this byte */
    int32_t *order;      /* indexes into tok->added, longest first */
    size_t n;
} tok_added_set;

typedef enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD } tok_norm_kind;
typedef enum { PRE_SPLIT, PRE_BYTELEVEL } tok_pre_kind;
typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED } tok_split_behavior;

typedef struct {
    tok_pre_kind kind;
    /* PRE_SPLIT, or PRE_BYTELEVEL with use_regex: compiled with PCRE2_ANCHORED, because
     * the encoder tries each start position itself to account for the work (see
     * tokenizer_encode.c); `pattern` is the source text, for error messages. */
    pcre2_code *re;
    char *pattern;
    tok_split_behavior behavior;
    bool invert;
    bool add_prefix_space;    /* PRE_BYTELEVEL */
} tok_pre_step;

#define TOK_MAX_NORM 8
#define TOK_MAX_PRE 8

/* Open-addressing map from (left id, right id) to (rank, merged id). */
typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;
    int32_t new_id;
} tok_merge_slot;

struct flm_tokenizer {
    size_t n_ids;            /* max id + 1 */
    /* Per id: the vocabulary text (model vocab or added content) and the decoded bytes.
     * Offsets into text_arena / bytes_arena; text_off[id] == UINT32_MAX for a hole. */
    uint32_t *text_off, *text_len; /* (n_ids) */
    char *text_arena;
    uint32_t *bytes_off, *bytes_len; /* (n_ids) */
    uint8_t *bytes_arena;
    uint8_t *is_model;  /* (n_ids) 1 if the id is in the model vocabulary */
    int32_t *added_of;  /* (n_ids) index into added[] or -1 */
    size_t n_model_vocab; /* length of the spec's vocab array */
    const char **vocab_ptrs; /* (n_model_vocab) for get_spec: model vocab text or NULL */

    uint32_t *vocab_slots; size_t vocab_mask; /* model vocab text -> id+1 */
    uint32_t *added_slots; size_t added_mask; /* added content -> index+1 */

    tok_merge_slot *merge_slots; size_t merge_mask;
    char **merges; size_t n_merges; /* "a b" strings, owned */

    tok_added *added; size_t n_added;
    flm_added_token *added_spec; /* for get_spec */
    tok_added_set raw_set, norm_set; /* normalized=false / normalized=true tokens */

    int32_t byte_id[256]; /* id of the one-byte token of each byte, -1 if none */
    bool ignore_merges;

    tok_norm_kind norm[TOK_MAX_NORM]; size_t n_norm;
    tok_pre_step pre[TOK_MAX_PRE]; size_t n_pre;
    char *normalizer_json, *pre_tokenizer_json, *decoder_json;
};

/* Byte-level alphabet (GPT-2's bytes_to_unicode): the code point standing for byte b. */
uint32_t flm_tok_byte_char(uint8_t b);
/* Inverse: the byte of a code point, or -1 if cp is not in the alphabet. */
int flm_tok_char_byte(uint32_t cp);
/* tokenizer_normalize.c: normalizes s with the tokenizer's normalizer into *out (malloc'ed) or returns
 * FLM_OK with *out = NULL when the text is unchanged. */
int flm_tok_normalize(const flm_tokenizer *tok, const char *s, size_t n, char **out, size_t *out_len);
uint64_t flm_tok_hash(const void *s, size_t n);
/* Model vocabulary lookup by byte-level text; -1 if absent. */
int32_t flm_tok_vocab_find(const flm_tokenizer *tok, const char *s, size_t n);

/* The merge of the pair (a, b): true with its rank and merged id, false if none. */
static inline bool flm_tok_merge_get(const flm_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                                     int32_t *new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)flm_tok_hash(&key, 8) & t->merge_mask;
    for (;;) {
        const tok_merge_slot *s = &t->merge_slots[i];
        if (s->key == key) { *rank = s->rank; *new_id = s->new_id; return true; }
        if (s->key == UINT64_MAX) return false;
        i = (i + 1) & t->merge_mask;
    }
}

#endif
