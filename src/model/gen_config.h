/* gen_config.h — generation defaults: generation_config.json → flm_gen_config.
 *
 * Fields absent from the file (or the whole file missing) take transformers'
 * defaults (GenerationConfig: do_sample false, temperature 1.0, top_k 50, top_p 1.0,
 * min_p unset, repetition_penalty 1.0, max_length 20). Every field records where its
 * value came from — transformers' default, the file, or the user (CLI overrides
 * merged on top) — so `inspect`/`run` can say which. A missing file is not an error;
 * malformed JSON or a field of the wrong type is, with a message naming the file and
 * the field. A flm_gen_config is a plain value: copy it freely, nothing to free. */
#ifndef FLM_GEN_CONFIG_H
#define FLM_GEN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One bit per field, for flm_gen_config.from_file / from_user. */
typedef enum {
    FLM_GEN_DO_SAMPLE = 1u << 0,
    FLM_GEN_TEMPERATURE = 1u << 1,
    FLM_GEN_TOP_K = 1u << 2,
    FLM_GEN_TOP_P = 1u << 3,
    FLM_GEN_MIN_P = 1u << 4,
    FLM_GEN_REPETITION_PENALTY = 1u << 5,
    FLM_GEN_EOS = 1u << 6,
    FLM_GEN_BOS = 1u << 7,
    FLM_GEN_PAD = 1u << 8,
    FLM_GEN_MAX_NEW_TOKENS = 1u << 9,
    FLM_GEN_MAX_LENGTH = 1u << 10,
} flm_gen_field;
#define FLM_GEN_FIELD_COUNT 11

typedef enum { FLM_GEN_SRC_DEFAULT = 0, FLM_GEN_SRC_FILE, FLM_GEN_SRC_USER } flm_gen_source;

#define FLM_GEN_MAX_EOS 16

typedef struct {
    bool do_sample;
    double temperature;
    int top_k;
    double top_p;
    double min_p;                     /* 0 when unset (transformers: None = no MinP warper) */
    double repetition_penalty;
    int32_t eos_ids[FLM_GEN_MAX_EOS]; /* as listed in the file (a scalar becomes one entry) */
    int n_eos;
    int32_t bos_id;                   /* -1 when unset */
    int32_t pad_id;                   /* -1 when unset */
    int64_t max_new_tokens;           /* -1 when unset */
    int64_t max_length;               /* prompt + new tokens; transformers' default 20 */
    uint32_t from_file;               /* flm_gen_field bits present in the file */
    uint32_t from_user;               /* flm_gen_field bits set by overrides */
    bool file_found;                  /* false: no generation_config.json, all defaults */
} flm_gen_config;

/* transformers' defaults, every field marked as default, file_found false. */
void flm_gen_config_defaults(flm_gen_config *gc);

/* Loads `path`: a generation_config.json file, or a Hugging Face folder that may
 * contain one (a .gguf package's keys are read by src/package: flm_source_gen_config,
 * flm_load_gen_config for any model path).
 * No such file → defaults and FLM_OK (file_found false). Malformed JSON or a bad
 * field → FLM_ERR_FORMAT naming the file and field; *gc then holds defaults. */
int flm_gen_config_load_hf(const char *path, flm_gen_config *gc);
/* The same from text in memory; `what` names the source in messages. */
int flm_gen_config_parse(const char *text, size_t len, const char *what, flm_gen_config *gc);

/* Sets a field on `overrides` and marks it user-set (for CLI flags). */
void flm_gen_config_set_do_sample(flm_gen_config *o, bool v);
void flm_gen_config_set_temperature(flm_gen_config *o, double v);
void flm_gen_config_set_top_k(flm_gen_config *o, int v);
void flm_gen_config_set_top_p(flm_gen_config *o, double v);
void flm_gen_config_set_min_p(flm_gen_config *o, double v);
void flm_gen_config_set_repetition_penalty(flm_gen_config *o, double v);
void flm_gen_config_set_max_new_tokens(flm_gen_config *o, int64_t v);

/* Copies into `base` every field whose bit is set in overrides->from_user; those
 * fields become user-sourced in base. Other fields of base are untouched. */
void flm_gen_config_merge(flm_gen_config *base, const flm_gen_config *overrides);

/* Where a field's value came from (user beats file beats default). */
flm_gen_source flm_gen_config_source(const flm_gen_config *gc, flm_gen_field f);
/* "default (transformers)", "generation_config.json", "user". */
const char *flm_gen_source_name(flm_gen_source src);
/* The JSON key of a field ("top_k", "eos_token_id", ...); NULL if not one field. */
const char *flm_gen_field_name(flm_gen_field f);

/* Every stop id: the config's eos ids (file order), then tokenizer_eos (ignored if
 * < 0), without duplicates. Writes up to cap ids; returns how many there are in all
 * (may exceed cap). For Qwen2.5: {151645, 151643}. */
int flm_gen_config_eos_ids(const flm_gen_config *gc, int32_t tokenizer_eos, int32_t *out, int cap);

#endif
