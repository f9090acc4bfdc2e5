/* threadpool.c — worker pool (pthreads + C11 atomics) with adaptive waiting.
 *
 * Both sides of a job wait by spinning for a short, time-bounded while, then sleep on
 * a condition variable: workers waiting for the next job (decode posts a few hundred
 * small jobs per token, microseconds apart, so a short spin catches them on a quiet
 * machine), and the caller waiting for the workers to finish. Sleeping matters on a
 * loaded machine: a thread that spins for its whole time slice while the thread it
 * waits for is descheduled (2 cores, 2 threads, another process running) turns a
 * decode step into a series of time slices; a sleeping waiter leaves its core idle,
 * so the scheduler can run (or migrate) the thread that has the work. A wake-up is a
 * system call only when someone is actually asleep (counted in `sleepers` and
 * `caller_sleeping`, with sequentially consistent atomics on both sides). */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"

/* Spin budgets in nanoseconds before sleeping (checked every SPIN_CHECK pauses). */
#ifndef WORKER_SPIN_NS
#define WORKER_SPIN_NS 100000 /* worker waiting for the next job */
#endif
#ifndef CALLER_SPIN_NS
#define CALLER_SPIN_NS 50000 /* caller waiting for the workers */
#endif
#define SPIN_CHECK 32

struct flm_pool {
    int n;                      /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* workers: a new job or quit */
    pthread_cond_t done_cv;     /* caller: the last worker finished */
    _Atomic unsigned generation; /* bumped for each job */
    _Atomic int pending;         /* workers still running the current job */
    _Atomic int sleepers;        /* workers asleep (or about to be) on cv */
    _Atomic int caller_sleeping; /* the caller is asleep (or about to be) on done_cv */
    _Atomic int quit;
    flm_pool_fn fn;
    void *ctx;
};

typedef struct { flm_pool *p; int ith; } worker_arg;

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins until *g != seen or quit, for at most budget_ns; true if it changed. */
static bool spin_for_job(flm_pool *p, unsigned seen, long long budget_ns) {
    long long t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen || atomic_load(&p->quit)) return true;
        cpu_relax();
        if (i % SPIN_CHECK == 0) {
            long long t = now_ns();
            if (t0 == 0) t0 = t;
            else if (t - t0 > budget_ns) return false;
        }
    }
}

static void *worker(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    flm_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        if (!spin_for_job(p, seen, WORKER_SPIN_NS)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        p->fn(p->ctx, wa.ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
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
    pthread_cond_init(&p->done_cv, NULL);
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
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p);
}

int flm_pool_size(const flm_pool *p) { return p ? p->n : 1; }

void flm_pool_run(flm_pool *p, flm_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    long long t0 = 0;
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if (i % SPIN_CHECK != 0) continue;
        long long t = now_ns();
        if (t0 == 0) { t0 = t; continue; }
        if (t - t0 <= CALLER_SPIN_NS) continue;
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
        break;
    }
}
