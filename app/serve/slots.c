/* slots.c — slots (one flm_session each), longest-common-prefix routing and the
 * bounded FIFO queue (see slots.h). */
#include "slots.h"

#include <stdlib.h>
#include <string.h>

int serve_slots_init(serve_slots *q, flm_handle *h, const flm_gen_settings *set, int n, int queue_max) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->queue_max = queue_max;
    q->slot = calloc((size_t)n, sizeof *q->slot);
    if (!q->slot) return FLM_ERR_NOMEM;
    q->n = n;
    for (int i = 0; i < n; i++) {
        q->slot[i].index = i;
        int rc = flm_session_new(h, set, &q->slot[i].session);
        if (rc) return rc;
        q->slot[i].cap = flm_session_n_ctx(q->slot[i].session);
        q->slot[i].cache = malloc((size_t)q->slot[i].cap * sizeof *q->slot[i].cache);
        if (!q->slot[i].cache) return FLM_ERR_NOMEM;
    }
    return FLM_OK;
}

void serve_slots_free(serve_slots *q) {
    for (int i = 0; q->slot && i < q->n; i++) {
        flm_session_free(q->slot[i].session);
        free(q->slot[i].cache);
    }
    free(q->slot);
    q->slot = NULL;
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
}

static int common_prefix(const serve_slot *s, const int32_t *ids, int n) {
    int k = 0;
    while (k < s->n_cache && k < n && s->cache[k] == ids[k]) k++;
    return k;
}

/* The free slot sharing the longest prefix with ids (ties: least recently used), or NULL. */
static serve_slot *best_free(serve_slots *q, const int32_t *ids, int n) {
    serve_slot *best = NULL;
    int best_k = -1;
    for (int i = 0; i < q->n; i++) {
        serve_slot *s = &q->slot[i];
        if (s->busy) continue;
        int k = common_prefix(s, ids, n);
        if (k > best_k || (k == best_k && s->last_used < best->last_used)) { best = s; best_k = k; }
    }
    return best;
}

serve_slot *serve_slots_acquire(serve_slots *q, const int32_t *ids, int n, int *why) {
    pthread_mutex_lock(&q->mu);
    serve_slot *s = NULL;
    *why = SERVE_SLOT_OK;
    if (q->closing) { *why = SERVE_CLOSING; goto out; }
    if (q->waiting == 0 && (s = best_free(q, ids, n))) goto take;
    if (q->waiting >= q->queue_max) { *why = SERVE_QUEUE_FULL; goto out; }
    uint64_t ticket = q->next_ticket++;
    q->waiting++;
    for (;;) {
        if (q->closing) { *why = SERVE_CLOSING; break; }
        if (ticket == q->head_ticket && (s = best_free(q, ids, n))) break;
        pthread_cond_wait(&q->cv, &q->mu);
    }
    q->waiting--;
    if (!s) goto out;
    q->head_ticket++;
    pthread_cond_broadcast(&q->cv); /* the next in line may find another free slot */
take:
    s->busy = 1;
    s->last_used = ++q->clock;
out:
    pthread_mutex_unlock(&q->mu);
    return s;
}

void serve_slots_release(serve_slots *q, serve_slot *s, const int32_t *cached, int n) {
    pthread_mutex_lock(&q->mu);
    if (n > s->cap) n = s->cap;
    if (!cached || n < 0) n = 0;
    if (n) memcpy(s->cache, cached, (size_t)n * sizeof *cached);
    s->n_cache = n;
    s->busy = 0;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void serve_slots_close(serve_slots *q) {
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    for (int i = 0; i < q->n; i++)
        if (q->slot[i].busy) flm_cancel(q->slot[i].session);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void serve_slots_counts(serve_slots *q, int *busy, int *waiting) {
    pthread_mutex_lock(&q->mu);
    int b = 0;
    for (int i = 0; i < q->n; i++) b += q->slot[i].busy;
    *busy = b;
    *waiting = q->waiting;
    pthread_mutex_unlock(&q->mu);
}
