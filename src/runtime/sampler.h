/* sampler.h — next-token selection with Hugging Face transformers' semantics.
 *
 * Given one step's logits, a sampler applies, in transformers' order,
 *   repetition penalty → temperature → top-k → top-p → min-p
 * and then either takes the argmax (greedy) or draws from the resulting
 * distribution with its own seeded PRNG (xoshiro256**, seeded through splitmix64),
 * so a seed reproduces a run exactly on any machine. docs/SAMPLING.md gives the
 * semantics of every step and where each fact comes from.
 *
 * Ownership and threads: a sampler has one owner. It holds the PRNG state and
 * preallocated scratch sized for the vocabulary, so two threads must not use the
 * same sampler at once; separate samplers are independent. Per-step calls allocate
 * nothing (unless a call passes a larger n_vocab than the sampler was sized for,
 * which grows the scratch once). */
#ifndef FLM_SAMPLER_H
#define FLM_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/gen_config.h"

typedef struct {
    bool do_sample;            /* false: greedy (argmax after the repetition penalty) */
    /* The real-valued knobs are doubles, like Python floats in transformers, and are
     * rounded to float where PyTorch rounds them (see docs/SAMPLING.md). */
    double temperature;        /* >= 0; 1 = off; 0 = greedy even when do_sample */
    int top_k;                 /* >= 0; 0 = off; at least the vocabulary = off */
    double top_p;              /* in [0, 1]; 1 = off */
    double min_p;              /* in [0, 1]; 0 = off */
    double repetition_penalty; /* > 0; 1 = off; applied in greedy mode too */
    uint64_t seed;             /* PRNG seed */
} flm_sampler_params;

typedef struct flm_sampler flm_sampler;

/* transformers' defaults: do_sample false, temperature 1, top_k 50, top_p 1,
 * min_p 0 (off), repetition_penalty 1, seed 0. */
flm_sampler_params flm_sampler_default_params(void);
/* The sampling fields of a model's generation config (min_p unset → 0, i.e. off). */
flm_sampler_params flm_gen_config_sampler_params(const flm_gen_config *gc, uint64_t seed);

/* Checks the parameters (FLM_ERR_ARG naming the bad field). */
int flm_sampler_validate(const flm_sampler_params *p);

/* Creates a sampler; n_vocab (> 0, or 0 to size it on first use) preallocates the
 * scratch. `*out` is owned by the caller and released with flm_sampler_free. */
int flm_sampler_new(const flm_sampler_params *p, int n_vocab, flm_sampler **out);
void flm_sampler_free(flm_sampler *s);

/* Restarts the PRNG from `seed`, as if the sampler had been created with it. */
void flm_sampler_reset(flm_sampler *s, uint64_t seed);
const flm_sampler_params *flm_sampler_get_params(const flm_sampler *s);

/* True when the sampler picks the argmax (do_sample false or temperature 0). */
bool flm_sampler_is_greedy(const flm_sampler *s);

/* Picks the next token. `logits[0..n_vocab)` are modified in place: on return they
 * hold the processed scores (filtered tokens are -inf). `history` holds the prompt
 * and generated ids (each distinct id is penalised once; ids must be in
 * [0, n_vocab)); it may be NULL when n_history is 0.
 * Returns the token id (>= 0) or a negative flm_status: FLM_ERR_ARG for bad
 * arguments, or when no logit is finite (after NaN -> -inf). */
int32_t flm_sampler_sample(flm_sampler *s, float *logits, int n_vocab,
                           const int32_t *history, size_t n_history);

/* Runs the same processors as flm_sampler_sample (logits modified in place) and
 * writes the distribution the sampler would draw from into probs[0..n_vocab):
 * softmax of the processed logits, exactly 0 for filtered tokens. In greedy mode it
 * is one-hot at the argmax. Does not touch the PRNG. Returns FLM_OK or an error as
 * flm_sampler_sample does. */
int flm_sampler_probs(flm_sampler *s, float *logits, int n_vocab,
                      const int32_t *history, size_t n_history, float *probs);

/* The PRNG on its own, for tests and tools: xoshiro256** seeded with splitmix64. */
typedef struct { uint64_t s[4]; } flm_rng;
void flm_rng_seed(flm_rng *r, uint64_t seed);
uint64_t flm_rng_next(flm_rng *r);
/* Uniform double in [0, 1) from the top 53 bits of one draw. */
double flm_rng_uniform(flm_rng *r);

#endif
