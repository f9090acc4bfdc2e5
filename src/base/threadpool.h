/* threadpool.h — a persistent pool of worker threads for data-parallel kernels.
 * flm_pool_run(fn) calls fn(ctx, i, n) once for every i in [0, n) — the caller
 * runs i = 0 — and returns when all are done. Workers spin briefly, then sleep,
 * between jobs (decode dispatches a few hundred small jobs per token).
 * A pool is used by one thread at a time. */
#ifndef FLM_THREADPOOL_H
#define FLM_THREADPOOL_H

typedef struct flm_pool flm_pool;
typedef void (*flm_pool_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0: the number of physical cores. */
int flm_pool_new(int n_threads, flm_pool **out);
void flm_pool_free(flm_pool *p);
int flm_pool_size(const flm_pool *p);
void flm_pool_run(flm_pool *p, flm_pool_fn fn, void *ctx);

/* Physical cores of this machine (SMT siblings counted once); at least 1. */
int flm_physical_cores(void);

#endif
