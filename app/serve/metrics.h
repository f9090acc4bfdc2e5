/* metrics.h — the server's counters and histograms, written as Prometheus text
 * (GET /metrics): requests by endpoint and status, prompt / reused / generated
 * tokens, cancelled generations, busy slots and queue length, time to first token
 * and decode tokens/s histograms. Thread-safe. */
#ifndef SERVE_METRICS_H
#define SERVE_METRICS_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_N_ENDPOINTS 9
#define SERVE_HIST_MAX 12

typedef struct {
    int n;
    double le[SERVE_HIST_MAX];           /* upper bounds (+Inf implied) */
    uint64_t count[SERVE_HIST_MAX + 1];  /* per bucket, not cumulative */
    double sum;
    uint64_t total;
} serve_hist;

typedef struct {
    pthread_mutex_t mu;
    uint64_t requests[SERVE_N_ENDPOINTS][600];  /* by endpoint and HTTP status */
    uint64_t prompt_tokens, reused_tokens, generated_tokens, cancelled, rejected_queue_full;
    serve_hist ttft, tok_s;
} serve_metrics;

/* The endpoint index of a path ("other" for an unknown one). */
int serve_metrics_endpoint(const char *path);
void serve_metrics_init(serve_metrics *m);
void serve_metrics_free(serve_metrics *m);
void serve_metrics_request(serve_metrics *m, int endpoint, int status);
/* One finished generation. ttft_s < 0: no token came. */
void serve_metrics_generation(serve_metrics *m, int prompt, int reused, int generated, double ttft_s, double tok_s,
                              int cancelled);
void serve_metrics_queue_full(serve_metrics *m);
/* The Prometheus text exposition (malloc'ed, NUL-terminated). */
char *serve_metrics_text(serve_metrics *m, int busy, int n_slots, int waiting, int queue_max);
#endif
