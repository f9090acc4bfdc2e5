/* sampler.c — owns next-token selection: the logits processors of transformers'
 * generate() (repetition penalty, temperature, top-k, top-p, min-p, in that order),
 * greedy argmax, the final distribution, and the seeded PRNG draw from it.
 * docs/SAMPLING.md explains each step and cites its source in transformers.
 *
 * Work per step is O(V) for the scans plus O(V log k) for top-k (a size-k heap, no
 * sort) and O(m + kept log m) for top-p (a max-heap walked from the top) over the m
 * tokens still finite. All scratch is preallocated in the sampler. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "runtime/sampler.h"

/* ---------------------------------------------------------------- PRNG ---- */
/* xoshiro256** (Blackman & Vigna, 2018), state seeded by four splitmix64 outputs,
 * as its authors recommend. Pure 64-bit integer arithmetic: identical on every
 * machine and compiler. */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

void flm_rng_seed(flm_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t flm_rng_next(flm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double flm_rng_uniform(flm_rng *r) {
    return (double)(flm_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------- sampler ---- */

typedef struct {
    float v;
    int32_t id;
} scored_id;

struct flm_sampler {
    flm_sampler_params p;
    flm_rng rng;
    int cap;            /* vocabulary size the scratch holds */
    uint8_t *mark;      /* (cap) 0 between calls; marks seen / kept ids within a step */
    int32_t *kept;      /* (cap) ids still in the running, ascending */
    scored_id *sorted;  /* (cap) top-p sort buffer */
    float *heap;        /* (cap) top-k min-heap of the k largest logits */
    double *weight;     /* (cap) exp(logit - max) of kept[i], for the final draw */
};

flm_sampler_params flm_sampler_default_params(void) {
    flm_sampler_params p;
    memset(&p, 0, sizeof p);
    p.do_sample = false;
    p.temperature = 1.0;
    p.top_k = 50;
    p.top_p = 1.0;
    p.min_p = 0.0;
    p.repetition_penalty = 1.0;
    p.seed = 0;
    return p;
}

flm_sampler_params flm_gen_config_sampler_params(const flm_gen_config *gc, uint64_t seed) {
    flm_sampler_params p = flm_sampler_default_params();
    p.do_sample = gc->do_sample;
    p.temperature = gc->temperature;
    p.top_k = gc->top_k;
    p.top_p = gc->top_p;
    p.min_p = gc->min_p;
    p.repetition_penalty = gc->repetition_penalty;
    p.seed = seed;
    return p;
}

int flm_sampler_validate(const flm_sampler_params *p) {
    if (!p) return flm_fail(FLM_ERR_ARG, "sampler: no parameters");
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return flm_fail(FLM_ERR_ARG, "sampler: temperature must be a finite number >= 0 (got %g)", p->temperature);
    if (p->top_k < 0) return flm_fail(FLM_ERR_ARG, "sampler: top_k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return flm_fail(FLM_ERR_ARG, "sampler: top_p must be in [0, 1] (got %g)", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return flm_fail(FLM_ERR_ARG, "sampler: min_p must be in [0, 1] (got %g)", p->min_p);
    if (!(p->repetition_penalty > 0) || isinf(p->repetition_penalty))
        return flm_fail(FLM_ERR_ARG, "sampler: repetition_penalty must be a finite number > 0 (got %g)",
                        p->repetition_penalty);
    return FLM_OK;
}

static void free_scratch(flm_sampler *s) {
    free(s->mark);
    free(s->kept);
    free(s->sorted);
    free(s->heap);
    free(s->weight);
    s->mark = NULL;
    s->kept = NULL;
    s->sorted = NULL;
    s->heap = NULL;
    s->weight = NULL;
    s->cap = 0;
}

static int ensure_capacity(flm_sampler *s, int n_vocab) {
    if (n_vocab <= s->cap) return FLM_OK;
    free_scratch(s);
    size_t n = (size_t)n_vocab;
    s->mark = flm_calloc(n, 1);
    s->kept = flm_malloc(n * sizeof *s->kept);
    s->sorted = flm_malloc(n * sizeof *s->sorted);
    s->heap = flm_malloc(n * sizeof *s->heap);
    s->weight = flm_malloc(n * sizeof *s->weight);
    if (!s->mark || !s->kept || !s->sorted || !s->heap || !s->weight) {
        free_scratch(s);
        return FLM_ERR_NOMEM;
    }
    s->cap = n_vocab;
    return FLM_OK;
}

int flm_sampler_new(const flm_sampler_params *p, int n_vocab, flm_sampler **out) {
    if (!out) return flm_fail(FLM_ERR_ARG, "sampler: no output pointer");
    *out = NULL;
    int rc = flm_sampler_validate(p);
    if (rc) return rc;
    if (n_vocab < 0) return flm_fail(FLM_ERR_ARG, "sampler: n_vocab must be >= 0 (got %d)", n_vocab);
    flm_sampler *s = flm_calloc(1, sizeof *s);
    if (!s) return FLM_ERR_NOMEM;
    s->p = *p;
    flm_rng_seed(&s->rng, p->seed);
    if (n_vocab > 0 && (rc = ensure_capacity(s, n_vocab)) != FLM_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return FLM_OK;
}

void flm_sampler_free(flm_sampler *s) {
    if (!s) return;
    free_scratch(s);
    free(s);
}

void flm_sampler_reset(flm_sampler *s, uint64_t seed) {
    if (!s) return;
    s->p.seed = seed;
    flm_rng_seed(&s->rng, seed);
}

const flm_sampler_params *flm_sampler_get_params(const flm_sampler *s) { return s ? &s->p : NULL; }

bool flm_sampler_is_greedy(const flm_sampler *s) {
    return !s->p.do_sample || s->p.temperature == 0;
}

/* --------------------------------------------------------- processors ---- */

/* RepetitionPenaltyLogitsProcessor: each distinct id once, on the raw score:
 * score < 0 → score * penalty, otherwise score / penalty (penalty rounded to float,
 * as the float32 tensor arithmetic does). */
static void apply_repetition_penalty(flm_sampler *s, float *logits, const int32_t *history, size_t n_history) {
    float pen = (float)s->p.repetition_penalty;
    for (size_t i = 0; i < n_history; i++) {
        int32_t id = history[i];
        if (s->mark[id]) continue;
        s->mark[id] = 1;
        float v = logits[id];
        logits[id] = v < 0 ? v * pen : v / pen;
    }
    for (size_t i = 0; i < n_history; i++) s->mark[history[i]] = 0;
}

static void heap_sift_down(float *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (r < n && h[r] < h[m]) m = r;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* The k-th largest of the kept logits (1 <= k < m), by a size-k min-heap: O(m log k),
 * no sort and no pathological inputs. */
static float kth_largest(flm_sampler *s, const float *logits, int m, int k) {
    float *h = s->heap;
    for (int i = 0; i < k; i++) h[i] = logits[s->kept[i]];
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(h, k, i);
    for (int i = k; i < m; i++) {
        float v = logits[s->kept[i]];
        if (v > h[0]) {
            h[0] = v;
            heap_sift_down(h, k, 0);
        }
    }
    return h[0];
}

/* Keeps the kept[] entries whose mark is set (ascending order preserved), clears the
 * marks, sets the dropped logits to -inf. Returns the new count. */
static int compact_marked(flm_sampler *s, float *logits, int m) {
    int n = 0;
    for (int i = 0; i < m; i++) {
        int32_t id = s->kept[i];
        if (s->mark[id]) {
            s->mark[id] = 0;
            s->kept[n++] = id;
        } else {
            logits[id] = -INFINITY;
        }
    }
    return n;
}

/* TopKLogitsWarper: drop every score strictly below the k-th largest (ties with it
 * stay, so more than k may remain). */
static int apply_top_k(flm_sampler *s, float *logits, int m) {
    int k = s->p.top_k;
    if (k <= 0 || k >= m) return m; /* k >= number of finite scores: nothing is below */
    float kth = kth_largest(s, logits, m, k);
    int n = 0;
    for (int i = 0; i < m; i++) {
        int32_t id = s->kept[i];
        if (logits[id] < kth) logits[id] = -INFINITY;
        else s->kept[n++] = id;
    }
    return n;
}

/* Order of the top-p walk: larger score first, and among equal scores the larger
 * id first (the mirror of an ascending sort by (score, id)). */
static bool comes_before(const scored_id *a, const scored_id *b) {
    return a->v > b->v || (a->v == b->v && a->id > b->id);
}

static void maxheap_sift_down(scored_id *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && comes_before(&h[l], &h[m])) m = l;
        if (r < n && comes_before(&h[r], &h[m])) m = r;
        if (m == i) return;
        scored_id t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Float probabilities of the kept scores into weight[] (softmax; filtered tokens
 * contribute exp(-inf) = 0, so only the kept ones matter); *pmax the largest. */
static void kept_probs(flm_sampler *s, const float *logits, int m, float *pmax) {
    float mx = -INFINITY;
    for (int i = 0; i < m; i++) if (logits[s->kept[i]] > mx) mx = logits[s->kept[i]];
    double sum = 0;
    for (int i = 0; i < m; i++) {
        double e = exp((double)logits[s->kept[i]] - (double)mx);
        s->weight[i] = e;
        sum += e;
    }
    float best = 0;
    for (int i = 0; i < m; i++) {
        float p = (float)(s->weight[i] / sum);
        s->weight[i] = p;
        if (p > best) best = p;
    }
    *pmax = best;
}

/* TopPLogitsWarper: with the scores sorted ascending, token j is dropped when the
 * cumulative probability up to and including it is <= 1 - top_p (the threshold
 * rounded to float, the sums taken in double and rounded to float, as torch's CPU
 * cumsum does); the largest always stays. Cumulative(j) = total - (mass above j), so
 * the walk goes down from the top with a max-heap and stops at the first dropped
 * token: O(m + kept * log m), no full sort when few tokens are kept. */
static int apply_top_p(flm_sampler *s, float *logits, int m) {
    if (!(s->p.top_p < 1.0)) return m;
    float pmax;
    kept_probs(s, logits, m, &pmax);
    double total = 0;
    scored_id *h = s->sorted;
    for (int i = 0; i < m; i++) {
        total += s->weight[i];
        h[i].v = logits[s->kept[i]];
        h[i].id = i; /* index into kept[] and weight[] */
    }
    for (int i = m / 2 - 1; i >= 0; i--) maxheap_sift_down(h, m, i);
    float thr = (float)(1.0 - s->p.top_p);
    double above = 0;
    for (int n = m; n > 0; n--) {
        scored_id top = h[0];
        if (n < m && !((float)(total - above) > thr)) break; /* first token always stays */
        s->mark[s->kept[top.id]] = 1;
        above += s->weight[top.id];
        h[0] = h[n - 1];
        maxheap_sift_down(h, n - 1, 0);
    }
    return compact_marked(s, logits, m);
}

/* MinPLogitsWarper: probabilities after the previous filters; drop p < min_p * p_max
 * (float arithmetic); always keep the most probable token. */
static int apply_min_p(flm_sampler *s, float *logits, int m) {
    if (!(s->p.min_p > 0)) return m; /* p < 0 * p_max never holds */
    float pmax;
    kept_probs(s, logits, m, &pmax);
    float thr = (float)s->p.min_p * pmax;
    int top = -1;
    for (int i = 0; i < m; i++) {
        if ((float)s->weight[i] == pmax && top < 0) top = i;
        if (!((float)s->weight[i] < thr)) s->mark[s->kept[i]] = 1;
    }
    if (top >= 0) s->mark[s->kept[top]] = 1;
    return compact_marked(s, logits, m);
}

/* Checks the arguments, makes room, replaces NaN by -inf, applies the repetition
 * penalty. */
static int prepare(flm_sampler *s, float *logits, int n_vocab, const int32_t *history, size_t n_history) {
    if (!s || !logits) return flm_fail(FLM_ERR_ARG, "sampler: no sampler or logits");
    if (n_vocab <= 0) return flm_fail(FLM_ERR_ARG, "sampler: n_vocab must be > 0 (got %d)", n_vocab);
    if (n_history > 0 && !history) return flm_fail(FLM_ERR_ARG, "sampler: history is NULL but n_history is %zu", n_history);
    int rc = ensure_capacity(s, n_vocab);
    if (rc) return rc;
    for (size_t i = 0; i < n_history; i++)
        if (history[i] < 0 || history[i] >= n_vocab)
            return flm_fail(FLM_ERR_ARG, "sampler: history[%zu] = %d is outside the vocabulary [0, %d)", i,
                            (int)history[i], n_vocab);
    for (int i = 0; i < n_vocab; i++)
        if (isnan(logits[i])) logits[i] = -INFINITY;
    if (s->p.repetition_penalty != 1.0) apply_repetition_penalty(s, logits, history, n_history);
    return FLM_OK;
}

/* Lowest id among the largest scores (torch.argmax); -1 if none is finite. */
static int32_t argmax(const float *logits, int n_vocab) {
    int32_t best = -1;
    float bv = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > bv) {
            bv = logits[i];
            best = i;
        }
    return best;
}

/* Runs every processor. Greedy: returns the argmax id. Sampling: leaves the kept ids
 * ascending in kept[0..*n_kept) with exp(logit - max) in weight[], *sum their total,
 * and returns 0. Negative on error. */
static int process(flm_sampler *s, float *logits, int n_vocab, const int32_t *history, size_t n_history,
                   int *n_kept, double *sum) {
    int rc = prepare(s, logits, n_vocab, history, n_history);
    if (rc) return rc;
    if (flm_sampler_is_greedy(s)) {
        int32_t id = argmax(logits, n_vocab);
        if (id < 0) return flm_fail(FLM_ERR_ARG, "sampler: no logit is finite");
        return id;
    }
    if (s->p.temperature != 1.0) {
        float t = (float)s->p.temperature;
        for (int i = 0; i < n_vocab; i++) logits[i] = logits[i] / t;
    }
    int m = 0;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > -INFINITY) s->kept[m++] = i;
    if (m == 0) return flm_fail(FLM_ERR_ARG, "sampler: no logit is finite");
    /* A +inf score (given, or a large logit over a tiny temperature) would make the
     * softmax NaN; instead the +inf tokens share the mass equally (0 each, rest -inf). */
    bool has_inf = false;
    for (int i = 0; i < m; i++) has_inf |= isinf(logits[s->kept[i]]);
    if (has_inf) {
        for (int i = 0; i < m; i++) {
            int32_t id = s->kept[i];
            if (isinf(logits[id])) {
                logits[id] = 0.0f;
                s->mark[id] = 1;
            }
        }
        m = compact_marked(s, logits, m);
    }
    m = apply_top_k(s, logits, m);
    m = apply_top_p(s, logits, m);
    m = apply_min_p(s, logits, m);
    /* final softmax, kept as unnormalised double weights */
    float mx = -INFINITY;
    for (int i = 0; i < m; i++) if (logits[s->kept[i]] > mx) mx = logits[s->kept[i]];
    double total = 0;
    for (int i = 0; i < m; i++) {
        double e = exp((double)logits[s->kept[i]] - (double)mx);
        s->weight[i] = e;
        total += e;
    }
    *n_kept = m;
    *sum = total;
    return 0;
}

int flm_sampler_probs(flm_sampler *s, float *logits, int n_vocab, const int32_t *history, size_t n_history,
                      float *probs) {
    if (!probs) return flm_fail(FLM_ERR_ARG, "sampler: no output buffer for probabilities");
    int m = 0;
    double sum = 0;
    int rc = process(s, logits, n_vocab, history, n_history, &m, &sum);
    if (rc < 0) return rc;
    memset(probs, 0, (size_t)n_vocab * sizeof *probs);
    if (flm_sampler_is_greedy(s)) {
        probs[rc] = 1.0f;
        return FLM_OK;
    }
    for (int i = 0; i < m; i++) probs[s->kept[i]] = (float)(s->weight[i] / sum);
    return FLM_OK;
}

int32_t flm_sampler_sample(flm_sampler *s, float *logits, int n_vocab, const int32_t *history, size_t n_history) {
    int m = 0;
    double sum = 0;
    int rc = process(s, logits, n_vocab, history, n_history, &m, &sum);
    if (rc < 0 || flm_sampler_is_greedy(s)) return rc;
    /* Inverse CDF over the kept ids in ascending id order: the first id whose
     * cumulative weight exceeds u * total. */
    double target = flm_rng_uniform(&s->rng) * sum;
    double cum = 0;
    for (int i = 0; i < m; i++) {
        cum += s->weight[i];
        if (target < cum) return s->kept[i];
    }
    return s->kept[m - 1]; /* rounding: u * total at the very top */
}
