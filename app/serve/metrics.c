/* metrics.c — counters and histograms in Prometheus' text format 0.0.4 (metrics.h). */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ENDPOINTS[SERVE_N_ENDPOINTS] = {
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/tokenize",
    "/detokenize", "/metrics", "/", "other",
};

int serve_metrics_endpoint(const char *path) {
    for (int i = 0; i < SERVE_N_ENDPOINTS - 1; i++)
        if (!strcmp(path, ENDPOINTS[i])) return i;
    return SERVE_N_ENDPOINTS - 1;
}

static void hist_init(serve_hist *h, const double *le, int n) {
    memset(h, 0, sizeof *h);
    h->n = n;
    memcpy(h->le, le, (size_t)n * sizeof *le);
}

static void hist_add(serve_hist *h, double v) {
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->total++;
}

void serve_metrics_init(serve_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    static const double ttft[] = {0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    static const double tps[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    hist_init(&m->ttft, ttft, 10);
    hist_init(&m->tok_s, tps, 10);
}

void serve_metrics_free(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

void serve_metrics_request(serve_metrics *m, int endpoint, int status) {
    if (endpoint < 0 || endpoint >= SERVE_N_ENDPOINTS || status < 0 || status >= 600) return;
    pthread_mutex_lock(&m->mu);
    m->requests[endpoint][status]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_generation(serve_metrics *m, int prompt, int reused, int generated, double ttft_s, double tok_s,
                              int cancelled) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)(prompt > 0 ? prompt : 0);
    m->reused_tokens += (uint64_t)(reused > 0 ? reused : 0);
    m->generated_tokens += (uint64_t)(generated > 0 ? generated : 0);
    if (cancelled) m->cancelled++;
    if (ttft_s >= 0) hist_add(&m->ttft, ttft_s);
    if (generated > 1 && tok_s > 0) hist_add(&m->tok_s, tok_s);
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_queue_full(serve_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->rejected_queue_full++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} textbuf;

__attribute__((format(printf, 2, 3))) static void put(textbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if (b->p && (size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
}

static void put_hist(textbuf *b, const char *name, const char *help, const serve_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->count[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)cum);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)h->total, name, h->sum,
        name, (unsigned long long)h->total);
}

char *serve_metrics_text(serve_metrics *m, int busy, int n_slots, int waiting, int queue_max) {
    textbuf b = {0};
    pthread_mutex_lock(&m->mu);
    put(&b, "# HELP fieldlm_requests_total HTTP requests answered, by endpoint and status code.\n"
            "# TYPE fieldlm_requests_total counter\n");
    for (int e = 0; e < SERVE_N_ENDPOINTS; e++)
        for (int s = 0; s < 600; s++)
            if (m->requests[e][s])
                put(&b, "fieldlm_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", ENDPOINTS[e], s,
                    (unsigned long long)m->requests[e][s]);
    put(&b, "# HELP fieldlm_prompt_tokens_total Prompt tokens of finished generations.\n"
            "# TYPE fieldlm_prompt_tokens_total counter\nfieldlm_prompt_tokens_total %llu\n"
            "# HELP fieldlm_prompt_tokens_reused_total Prompt tokens found in a slot's KV cache (not recomputed).\n"
            "# TYPE fieldlm_prompt_tokens_reused_total counter\nfieldlm_prompt_tokens_reused_total %llu\n"
            "# HELP fieldlm_generated_tokens_total Tokens generated.\n"
            "# TYPE fieldlm_generated_tokens_total counter\nfieldlm_generated_tokens_total %llu\n"
            "# HELP fieldlm_generations_cancelled_total Generations stopped early (client gone, shutdown).\n"
            "# TYPE fieldlm_generations_cancelled_total counter\nfieldlm_generations_cancelled_total %llu\n"
            "# HELP fieldlm_queue_rejected_total Requests refused with 503 because the queue was full.\n"
            "# TYPE fieldlm_queue_rejected_total counter\nfieldlm_queue_rejected_total %llu\n",
        (unsigned long long)m->prompt_tokens, (unsigned long long)m->reused_tokens,
        (unsigned long long)m->generated_tokens, (unsigned long long)m->cancelled,
        (unsigned long long)m->rejected_queue_full);
    put(&b, "# HELP fieldlm_slots_busy Slots generating now.\n# TYPE fieldlm_slots_busy gauge\nfieldlm_slots_busy %d\n"
            "# HELP fieldlm_slots Slots (--parallel).\n# TYPE fieldlm_slots gauge\nfieldlm_slots %d\n"
            "# HELP fieldlm_queue_length Requests waiting for a slot.\n# TYPE fieldlm_queue_length gauge\n"
            "fieldlm_queue_length %d\n"
            "# HELP fieldlm_queue_capacity Requests that may wait (--queue).\n# TYPE fieldlm_queue_capacity gauge\n"
            "fieldlm_queue_capacity %d\n",
        busy, n_slots, waiting, queue_max);
    put_hist(&b, "fieldlm_time_to_first_token_seconds", "From the start of the prefill to the first token.", &m->ttft);
    put_hist(&b, "fieldlm_decode_tokens_per_second", "Decode speed of each generation (2 tokens or more).", &m->tok_s);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}
