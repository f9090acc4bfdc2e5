/* ablate.h — `fieldlm ablate`: which LiteRT-LM behaviour makes the text worse, measured.
 *
 * Answers a set of questions with fieldlm's faithful configuration (the baseline, equal
 * to transformers: the model's chat template, generation_config.json's sampler with a
 * fixed seed per question, every eos id a stop) and then with one LiteRT-LM behaviour
 * switched on at a time, and with all of them (docs/FIDELITY.md, "Which suspect causes
 * which symptom"):
 *   baseline, greedy_default (TOP_P k=1: argmax, no repetition penalty),
 *   no_repetition_penalty, stop_endoftext_only (only <|endoftext|> stops),
 *   affix_template (LiteRT-LM's affix fallback: no default system prompt, role `model`),
 *   kv_cap_1280 (multi-turn conversations run against a 1280-token capacity, compared
 *   with the same conversations uncapped), dynamic_int8 (LiteRT's int8 numerics,
 *   runtime/litert_int8.h), litert_defaults (all of them on single questions).
 * For each: repetition rate, loop rate, distinct-2, runaway rate, identical answers,
 * mean KL (teacher-forced along the baseline's answers) and mean answer length. The
 * definitions are in docs/FIDELITY.md and at the metric functions below. */
#ifndef FLM_ABLATE_H
#define FLM_ABLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "runtime/session.h"

enum {
    FLM_ABL_BASELINE, FLM_ABL_GREEDY, FLM_ABL_NO_REP, FLM_ABL_STOP_EOT, FLM_ABL_AFFIX, FLM_ABL_KV_CAP, FLM_ABL_INT8,
    FLM_ABL_LITERT, FLM_ABL_N
};
/* "baseline", "greedy_default", ... in the order above. */
extern const char *const flm_ablate_names[FLM_ABL_N];

/* Metrics on token sequences (an answer: the generated ids, stop token excluded). */
#define FLM_ABLATE_NGRAM 4        /* repetition: a 4-token n-gram ... */
#define FLM_ABLATE_NGRAM_COUNT 3  /* ... that occurs at least 3 times (overlaps count) */
#define FLM_ABLATE_LOOP_MAX_PERIOD 32
#define FLM_ABLATE_LOOP_MIN_TOKENS 12
/* True when some FLM_ABLATE_NGRAM consecutive tokens occur FLM_ABLATE_NGRAM_COUNT or
 * more times in ids. */
bool flm_ablate_repeats(const int32_t *ids, int n);
/* True when the answer ends in a repeating cycle: for some period p in
 * 1..FLM_ABLATE_LOOP_MAX_PERIOD the last k tokens satisfy ids[i] == ids[i-p], with
 * k >= 3p (three full cycles) and k >= FLM_ABLATE_LOOP_MIN_TOKENS. */
bool flm_ablate_loops(const int32_t *ids, int n);
/* Corpus distinct-2: distinct token bigrams over all answers / all bigrams (bigrams
 * stay inside an answer). 0 when there is no bigram. */
double flm_ablate_distinct2(const int32_t *const *answers, const int *lens, int n);
/* Runaway: the answer ran past the end of its turn (it contains end_of_turn, the
 * <|im_end|> id, which did not stop it) or it was cut by the token limit or the
 * capacity (cut) while its text does not end a sentence (last non-space character
 * not one of . ! ? and the Devanagari danda). */
bool flm_ablate_runaway(const int32_t *ids, int n, int32_t end_of_turn, bool cut, const char *text, size_t len);
/* KL(softmax(p) || softmax(q)) over n logits, accumulated in double. */
double flm_ablate_kl(const float *p, const float *q, int n);

/* The question set: JSONL, one {"messages": [{"role": …, "content": …}, …]} per line
 * (roles system, user, assistant; the last one user). Blank lines are skipped. */
typedef struct {
    char **role, **content; /* [n_msg] */
    int n_msg;
} flm_ablate_question;
typedef struct {
    flm_ablate_question *q;
    int n;
} flm_ablate_questions;
/* Reads at most max_n questions (<= 0: all). FLM_ERR_FORMAT naming the file, the line
 * and what is wrong; FLM_ERR_IO when unreadable; an empty set is an error. */
int flm_ablate_questions_load(const char *path, int max_n, flm_ablate_questions *out);
void flm_ablate_questions_free(flm_ablate_questions *q);

typedef struct {
    int max_tokens;      /* new tokens per answer (> 0) */
    uint64_t seed;       /* question i samples with seed + i */
    int n_threads;       /* forward threads (<= 0: physical cores) */
    int kv_cap;          /* LiteRT-LM capacity (max_num_tokens), e.g. 1280 */
    int turns;           /* kv_cap_1280: questions per conversation */
    int conversations;   /* kv_cap_1280: conversations (the first conversations*turns questions); <= 0: all */
    unsigned variants;   /* bit per variant to run (baseline always runs); 0: all */
    void (*progress)(void *ctx, const char *phase, int done, int total, double seconds);
    void *progress_ctx;
    /* Called with every answer as it is made (may be NULL): the variant, the question's
     * index, the generated ids (stop token excluded), the decoded text, why it stopped
     * ("eos", "length", "context"; "refused" with no ids). Non-zero aborts the run. */
    int (*answer)(void *ctx, int variant, int question, const int32_t *ids, int n, const char *text, size_t len, const char *stop);
    void *answer_ctx;
} flm_ablate_options;

typedef struct {
    bool ran;
    int n_answers;       /* answers generated (refused prompts not counted) */
    int n_refused;       /* prompts over the capacity (kv_cap_1280) */
    double repetition_rate, loop_rate, distinct_2, runaway_rate, identical_to_baseline, mean_kl, mean_tokens;
    long kl_positions;   /* positions averaged in mean_kl */
    double seconds;      /* generation and teacher forcing of this variant */
} flm_ablate_variant;

typedef struct {
    flm_ablate_variant v[FLM_ABL_N];
    int n_questions, n_conversations, turns, max_tokens, kv_cap;
    int n_turns;         /* kv_cap_1280's answers: turns of all conversations */
    uint64_t seed;
    double seconds;
} flm_ablate_report;

/* Runs the ablation on a's model (its adapters already merged). */
int flm_ablate_run(const flm_assets *a, const flm_ablate_questions *qs, const flm_ablate_options *o, flm_ablate_report *r);
/* {"model": …, …, "variants": [{"name": …, "repetition_rate": …, …}]} */
void flm_ablate_report_json(const flm_ablate_report *r, const char *model, const char *const *lora, int n_lora,
                            const char *questions, strbuf *sb);
/* A table, one row per variant, and the settings. */
void flm_ablate_report_table(const flm_ablate_report *r, strbuf *sb);

#endif
