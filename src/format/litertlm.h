/* litertlm.h — the LiteRT-LM container (.litertlm) and its LlmMetadata protobuf.
 *
 * File: "LITERTLM", u32 LE major/minor/patch (1.0.0), 4 zero bytes, u64 LE end of
 * the header, the header FlatBuffer (LiteRTLMMetaData: system metadata key/value
 * pairs and one SectionObject per section), then every section at a 16 KiB-aligned
 * offset. Keys and values written here are strings only (the numeric union members
 * changed encoding upstream without a version change; strings did not).
 *
 * LlmMetadata is encoded by hand (a few fields of litert.lm.proto.LlmMetadata:
 * start_token, stop_tokens, sampler_params, max_num_tokens, llm_model_type,
 * jinja_prompt_template), and decoded by a reader that skips unknown fields. */
#ifndef FLM_LITERTLM_H
#define FLM_LITERTLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "base/outfile.h"

#define FLM_LITERTLM_BLOCK 16384u
#define FLM_LITERTLM_MAX_HEADER 16384u

/* AnySectionDataType */
enum {
    FLM_LTLM_NONE = 0, FLM_LTLM_GENERIC = 1, FLM_LTLM_DEPRECATED = 2, FLM_LTLM_TFLITE_MODEL = 3, FLM_LTLM_SP_TOKENIZER = 4,
    FLM_LTLM_LLM_METADATA = 5, FLM_LTLM_HF_TOKENIZER_ZLIB = 6, FLM_LTLM_TFLITE_WEIGHTS = 7, FLM_LTLM_EXECUTOR_METADATA = 8,
};
const char *flm_litertlm_section_type_name(int t);

typedef struct {
    const char *key, *value;
} flm_litertlm_kv;

typedef struct {
    int data_type;
    const unsigned char *data; /* NULL: the caller streams it (only the last section) */
    uint64_t size;
    const flm_litertlm_kv *items;
    size_t n_items;
} flm_litertlm_section;

/* Writes the header and every section with data; returns in *last_begin where the
 * last section starts (the caller then writes its `size` bytes when its data is
 * NULL). FLM_ERR_ARG when the header exceeds 16 KiB. */
int flm_litertlm_write_head(flm_outfile *of, const flm_litertlm_kv *sys, size_t n_sys, const flm_litertlm_section *sec, size_t n_sec,
                            uint64_t *last_begin);
/* Writes a whole bundle: the header, then every section; a section whose data is
 * NULL is written by stream(ctx, index, of), which must write exactly its size bytes
 * (so any section, not only the last, may be streamed from elsewhere). */
int flm_litertlm_write(flm_outfile *of, const flm_litertlm_kv *sys, size_t n_sys, const flm_litertlm_section *sec, size_t n_sec,
                       int (*stream)(void *ctx, size_t index, flm_outfile *of), void *ctx);

/* ---- reading ---- */
#define FLM_LITERTLM_MAX_SECTIONS 32
#define FLM_LITERTLM_MAX_KV 64
typedef struct {
    char key[64];
    int type;        /* VData member: 9 string; others numeric */
    char value[1024]; /* strings truncated; numbers printed */
} flm_litertlm_read_kv;

typedef struct {
    uint32_t major, minor, patch;
    uint64_t header_end;
    flm_litertlm_read_kv sys[FLM_LITERTLM_MAX_KV];
    int n_sys;
    struct {
        int data_type;
        uint64_t begin, end;
        flm_litertlm_read_kv items[8];
        int n_items;
    } sec[FLM_LITERTLM_MAX_SECTIONS];
    int n_sec;
} flm_litertlm_info;

/* Parses the header of a file of `file_size` bytes from its first bytes buf[0..len)
 * (at least the header; 16 KiB is enough). Sections are checked to lie in the file. */
int flm_litertlm_parse(const unsigned char *buf, size_t len, uint64_t file_size, flm_litertlm_info *info);

/* ---- LlmMetadata ---- */
#define FLM_LLM_MAX_STOPS 16
#define FLM_LLM_TOKEN_IDS 8
/* A TokenUnion as written: token_ids (the first FLM_LLM_TOKEN_IDS ids; n_ids counts
 * them all) or token_str (str, not NUL-terminated). */
typedef struct {
    const char *str;
    size_t str_len;
    int32_t ids[FLM_LLM_TOKEN_IDS];
    int n_ids;
} flm_llm_token;

typedef struct {
    bool has_start;
    int32_t start_id;
    int32_t stop_ids[FLM_LLM_MAX_STOPS]; /* each stop token a one-id sequence */
    int n_stops;
    /* The same tokens as written (decode fills them; encode uses start_tok /
     * stops[i] instead of start_id / stop_ids[i] when its str or n_ids is set). */
    flm_llm_token start_tok;
    flm_llm_token stops[FLM_LLM_MAX_STOPS];
    int n_stops_total;          /* decode: stop tokens in the message (may exceed FLM_LLM_MAX_STOPS) */
    bool has_prompt_templates;  /* decode: field 3 (user/model/system affixes) is present */
    bool has_sampler;
    int sampler_type; /* 1 TOP_K, 2 TOP_P, 3 GREEDY */
    int32_t k;
    float p, temperature;
    int32_t max_num_tokens;
    int model_type;   /* LlmModelType oneof member: 7 qwen2p5, 0 none */
    const char *jinja; /* borrowed (encode) or pointing into the decoded bytes */
    size_t jinja_len;
} flm_llm_metadata;

int flm_llm_metadata_encode(const flm_llm_metadata *md, unsigned char **out, size_t *len);
/* Decodes what the encoder writes (stop tokens given as strings or multi-id sequences
 * are counted in n_stops with id -1); unknown fields are skipped. */
int flm_llm_metadata_decode(const unsigned char *p, size_t n, flm_llm_metadata *md);
/* Re-encodes over an existing LlmMetadata orig[0..n): every field the encoder does
 * not write (prompt_templates, channels, suppress_tokens, supports_*, pad_token,
 * unknown fields ...) is copied unchanged, then md's fields are appended. */
int flm_llm_metadata_encode_over(const unsigned char *orig, size_t n, const flm_llm_metadata *md, unsigned char **out, size_t *len);

/* Describes a whole .litertlm in buf[0..len): system metadata, every section, the
 * decoded LlmMetadata, the tokenizer (checked to inflate) and the model. */
int flm_litertlm_describe(const unsigned char *buf, size_t len, bool json, strbuf *out);
/* A .tflite or .litertlm file (by its first bytes), for `fieldlm inspect`. */
int flm_litert_describe_file(const char *path, bool json, strbuf *out);

#endif
