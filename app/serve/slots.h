/* slots.h — the server's generation slots and the bounded queue in front of them.
 *
 * Each slot owns one flm_session (its own KV cache and sampler), so what one slot
 * generates never depends on another. A request takes the free slot whose cache
 * shares the longest prefix with its prompt tokens (ties: the least recently used),
 * waits in a FIFO queue of at most queue_max requests when every slot is busy, and
 * is refused (SERVE_QUEUE_FULL: a 503 with Retry-After) beyond that. */
#ifndef SERVE_SLOTS_H
#define SERVE_SLOTS_H
#include <pthread.h>
#include <stdint.h>

#include "fieldlm.h"

typedef struct {
    int index;
    flm_session *session;
    int busy;
    int32_t *cache;        /* the ids the session's KV cache holds (prompt + generated) */
    int n_cache, cap;
    uint64_t last_used;
} serve_slot;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_slot *slot;
    int n;
    int queue_max;
    int waiting;
    uint64_t next_ticket, head_ticket; /* FIFO order of the waiting requests */
    uint64_t clock;
    int closing;
} serve_slots;

enum { SERVE_SLOT_OK = 0, SERVE_QUEUE_FULL = 1, SERVE_CLOSING = 2 };

/* n slots with sessions made from `set` (n_ctx and n_threads fixed there). Returns an
 * flm_status (flm_errmsg(h) says why). */
int serve_slots_init(serve_slots *q, flm_handle *h, const flm_gen_settings *set, int n, int queue_max);
void serve_slots_free(serve_slots *q);
/* Takes a slot for a prompt of ids[0..n) (waits in the queue when all are busy). */
serve_slot *serve_slots_acquire(serve_slots *q, const int32_t *ids, int n, int *why);
/* Gives the slot back; cached[0..n) is what its cache now holds (NULL/0: unknown, empty). */
void serve_slots_release(serve_slots *q, serve_slot *s, const int32_t *cached, int n);
/* Stops the queue (waiting requests get SERVE_CLOSING) and cancels every running generation. */
void serve_slots_close(serve_slots *q);
void serve_slots_counts(serve_slots *q, int *busy, int *waiting);
#endif
