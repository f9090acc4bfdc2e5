/* verify.h — compares a model's logits and greedy continuations with a reference
 * dump made by transformers (format: tests/data/FIXTURES-README.md, "Model
 * references"). Used by `fieldlm verify` and the test suite. */
#ifndef FLM_VERIFY_H
#define FLM_VERIFY_H

#include <stdbool.h>
#include "model/model.h"

#define FLM_VERIFY_DEFAULT_TOL 2e-4
/* Greedy steps whose reference top-1/top-2 margin is below this are near-ties that
 * summation order may flip: comparison stops there. */
#define FLM_VERIFY_NEAR_TIE 1e-3

typedef struct {
    int n_input;             /* prompt tokens */
    bool full_logits;        /* the reference has logits at every position */
    double max_abs_err;      /* over every compared logit */
    double mean_kl;          /* mean over positions of KL(ref || ours) */
    int top1_agree;          /* positions whose argmax agrees */
    int greedy_total;        /* reference greedy steps */
    int greedy_compared;     /* steps compared (up to the first near-tie) */
    int greedy_first_diff;   /* first differing step before a near-tie, -1 if none */
    bool near_tie_stop;      /* comparison stopped at a near-tie */
    bool pass;
} flm_verify_case;

typedef struct {
    double tol;              /* max abs logit error allowed */
    int n_ctx;               /* 0: enough for the longest case */
    /* Called after each case (may be NULL). */
    void (*progress)(void *ctx, int i, int n, const flm_verify_case *c);
    void *progress_ctx;
} flm_verify_options;

/* Checks, before any model is loaded, that ref_path can be a reference: refuses
 * (with a message saying what to pass instead) the JSON summary that
 * make_reference.py writes beside the dump (naming the .safetensors beside it),
 * a GGUF package, a model or adapter folder, and a folder without
 * reference.safetensors. The dump itself is validated by flm_verify_run. */
int flm_verify_check_reference(const char *ref_path);

/* ref_path: a reference .safetensors file, or a folder holding reference.safetensors.
 * Fills a malloc'ed array of cases; returns an error only when the reference or
 * the model cannot be used (mismatching numbers are reported in the cases). */
int flm_verify_run(const flm_model *m, const char *ref_path, const flm_verify_options *opt,
                   flm_verify_case **cases, int *n_cases);

#endif
