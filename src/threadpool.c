/* threadpool.c — spin-then-sleep worker pool (pthreads + C11 atomics). */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define SPIN_ITERS 20000

struct flm_pool {
    int n;                      /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic unsigned generation; /* bumped for each job */
    _Atomic int pending;         /* workers still running the current job */
    _Atomic int quit;
    flm_pool_fn fn;
    void *ctx;
};

typedef struct { flm_pool *p; int ith; } worker_arg;

static void *worker(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    flm_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && !atomic_load(&p->quit)) {
            if (++spins < SPIN_ITERS) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        p->fn(p->ctx, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

int flm_physical_cores(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    /* count distinct (package, core) pairs; fall back to online CPUs */
    int seen_pkg[512], seen_core[512], n = 0;
    for (long c = 0; c < online && c < 512; c++) {
        char path[128];
        int pkg = -1, core = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", c);
        FILE *f = fopen(path, "r");
        if (f) { if (fscanf(f, "%d", &pkg) != 1) pkg = -1; fclose(f); }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", c);
        f = fopen(path, "r");
        if (f) { if (fscanf(f, "%d", &core) != 1) core = -1; fclose(f); }
        if (pkg < 0 || core < 0) return (int)online;
        bool dup = false;
        for (int i = 0; i < n && !dup; i++) dup = seen_pkg[i] == pkg && seen_core[i] == core;
        if (!dup) { seen_pkg[n] = pkg; seen_core[n] = core; n++; }
    }
    return n > 0 ? n : (int)online;
}

int flm_pool_new(int n_threads, flm_pool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = flm_physical_cores();
    if (n_threads > 256) return flm_fail(FLM_ERR_ARG, "too many threads (%d, at most 256)", n_threads);
    flm_pool *p = flm_calloc(1, sizeof *p);
    if (!p) return FLM_ERR_NOMEM;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->threads = flm_calloc((size_t)n_threads, sizeof *p->threads);
        if (!p->threads) { free(p); return FLM_ERR_NOMEM; }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = flm_malloc(sizeof *wa);
            if (!wa) { p->n = i; flm_pool_free(p); return FLM_ERR_NOMEM; }
            wa->p = p;
            wa->ith = i;
            if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
                free(wa);
                p->n = i;
                flm_pool_free(p);
                return flm_fail(FLM_ERR_NOMEM, "could not start worker thread %d", i);
            }
        }
    }
    *out = p;
    return FLM_OK;
}

void flm_pool_free(flm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int flm_pool_size(const flm_pool *p) { return p ? p->n : 1; }

void flm_pool_run(flm_pool *p, flm_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        sched_yield();
#endif
    }
}
