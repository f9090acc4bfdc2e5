/* doctor.h — `fieldlm doctor`: audits a LiteRT-LM package (.litertlm, from any
 * producer: AI Edge Torch, LiteRT-LM's builder, fieldlm) for what makes its text
 * differ from the original model, and rewrites its metadata (--fix).
 *
 * Each finding has a stable code (stop_tokens, prompt_template, sampler, model_type,
 * start_token, context, tokenizer, quantization, lm_head), a severity, a message
 * that says what LiteRT-LM does because of it, and the fix. Given the Hugging Face
 * folder of the model (flm_doc_truth), the package is compared with the model's
 * truth: generation_config.json, tokenizer.json, the chat template, config.json and
 * whether the checkpoint has its own lm_head.weight. docs/DOCTOR.md lists every
 * check. */
#ifndef FLM_DOCTOR_H
#define FLM_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

typedef enum { FLM_DOC_INFO = 0, FLM_DOC_WARNING = 1, FLM_DOC_ERROR = 2 } flm_doc_severity;

typedef struct {
    char code[16];
    flm_doc_severity severity;
    char *message; /* what LiteRT-LM will do because of it */
    char *fix;
} flm_doc_finding;

typedef struct {
    flm_doc_finding *items;
    int n, cap;
    int n_error, n_warning, n_info;
    /* what the graph says (0: not found) */
    int cache_length;  /* the decode signature's kv_cache_k_0 [1, S, KV, D] */
    int logits_vocab;  /* the decode signature's logits [1, 1, V] */
} flm_doc_report;

/* The model's truth: a Hugging Face folder (config.json required; tokenizer.json,
 * generation_config.json, the chat template and the weights' headers when there). */
typedef struct flm_doc_truth flm_doc_truth;
int flm_doc_truth_load(const char *hf_dir, flm_doc_truth **out);
void flm_doc_truth_free(flm_doc_truth *t);

/* Audits a whole .litertlm in buf[0..len) (hf may be NULL: judge from the file
 * alone). A file that cannot be read as a LiteRT-LM bundle (bad header, malformed
 * LlmMetadata or TFLite model) returns FLM_ERR_FORMAT with a message and no report;
 * otherwise FLM_OK and the findings. */
int flm_doctor_check(const unsigned char *buf, size_t len, const flm_doc_truth *hf, flm_doc_report *rep);
/* The same for a file (mapped read-only). */
int flm_doctor_check_file(const char *path, const flm_doc_truth *hf, flm_doc_report *rep);
void flm_doc_report_free(flm_doc_report *rep);

const char *flm_doc_severity_name(flm_doc_severity s);
/* Text (one block per finding) or JSON: {"file":…, "hf":…, "errors":n, "warnings":n,
 * "infos":n, "cache_length":…, "logits_vocab":…, "findings":[{"code","severity",
 * "message","fix"}]}; extra_json (may be NULL) is added as the member "fixed". */
void flm_doc_report_write(const flm_doc_report *rep, const char *file, const char *hf_dir, bool json, const char *extra_json,
                          strbuf *out);

/* --fix: writes OUT with every section's bytes copied unchanged (streamed with
 * pread, never loaded whole) except the LlmMetadata (corrected: stop tokens, start
 * token, sampler, max_num_tokens, llm_model_type, jinja template; other fields kept)
 * and, with hf, the tokenizer (the model's tokenizer.json; SentencePiece sections are
 * dropped). Atomic (src/base/outfile.c); refuses an OUT that is the input or one of
 * hf's files. What needs the model's truth (template, sampler, tokenizer, model
 * type) is only changed with hf. `changes` (may be NULL) receives one line per
 * change. */
int flm_doctor_fix(const char *in_path, const char *out_path, const flm_doc_truth *hf, strbuf *changes);

#endif
