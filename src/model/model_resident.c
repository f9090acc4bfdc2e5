/* model_resident.c — where the weight matrices live while the model runs.
 *
 * Mapped: the tensors are used in place in the file mapping (page cache). Opening
 * is instant and the pages stay clean and shared, so the kernel can drop them
 * under memory pressure and re-read them later.
 *
 * Loaded: every matrix still in a mapping is copied once into one anonymous arena,
 * 2 MiB aligned with transparent huge pages requested, and its mapped pages are
 * released. Measured on the 2-core reference VM (docs/PERFORMANCE.md): decode
 * streams the weights at the same median speed either way, but mapped page-cache
 * pages stall every ~0.5 s when the kernel's memory monitor (DAMON) samples them
 * (TLB shootdowns on huge-page-mapped file folios), raising the mean decode step
 * of q8_0 Qwen2.5-1.5B from 40 to 53 ms; the anonymous copy is never sampled that
 * way. The price is the copy at open and memory that is no longer clean page cache.
 *
 * Auto (the default) loads when the copy takes at most half of the memory the
 * kernel reports available (MemAvailable), and maps otherwise. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/common.h"
#include "base/mapfile.h"
#include "model/model.h"
#include "model/model_source.h"
#include "base/threadpool.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"

#define ARENA_ALIGN ((size_t)2 << 20) /* huge page size on x86-64 and arm64 (4 KiB granule) */
#define TENSOR_ALIGN 64
#define ALIGN_UP(n) (((n) + TENSOR_ALIGN - 1) & ~(size_t)(TENSOR_ALIGN - 1))
#define COPY_THREADS_MAX 4

static bool is_owned(const flm_model *m, const void *p) {
    for (size_t i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return true;
    return false;
}

/* The weight matrices, each distinct data pointer once (a tied lm_head is the
 * embedding). Returns the count; t must hold 2 + 7 * n_layers entries. */
static size_t matrices(flm_model *m, flm_tensor **t) {
    size_t n = 0;
    t[n++] = &m->embed;
    if (m->lm_head.data != m->embed.data) t[n++] = &m->lm_head;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        flm_layer *L = &m->layers[l];
        flm_tensor *w[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) t[n++] = w[i];
    }
    return n;
}

/* MemAvailable from /proc/meminfo in bytes; 0 if unknown. FLM_TEST_MEM_AVAILABLE_MB
 * replaces it (tests of the fallback to mapping). */
static size_t mem_available(void) {
    const char *test = getenv("FLM_TEST_MEM_AVAILABLE_MB");
    if (test && *test) return (size_t)strtoull(test, NULL, 10) << 20;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb * 1024;
}

/* The copy: tensors laid out back to back (64-byte aligned) in the arena; thread i
 * of k copies the arena bytes [i*total/k, (i+1)*total/k). Several threads because
 * first-touching fresh memory (page zeroing, and in a VM the host's faults) costs
 * more than the copy itself, and that scales with cores.
 *
 * A q8_0/q4_0 matrix the int8 products read is packed on the way into the kernel
 * table's own layout (flm_kernels.qpacked, e.g. "avx512-g16": no byte permutes in the
 * products; docs/KERNELS.md): each thread takes the rows (in whole row groups of the
 * layout) that start in its byte range, straight from the file's bytes into the arena. */
typedef struct {
    flm_tensor **t;
    const bool *pack; /* per tensor: copied packed */
    size_t n;
    const flm_qpacked_fns *pk;
    unsigned char *arena;
    size_t total;
    int k, i;
} copy_plan;

/* First row of a matrix at arena offset off (row bytes rb, rows rows) that starts at or
 * after byte x and begins a group of `group` rows (the layout's row_group). */
static int64_t first_row_from(size_t x, size_t off, size_t rb, int64_t rows, int group) {
    if (x <= off) return 0;
    size_t r = (x - off + rb - 1) / rb;
    r = (r + (size_t)group - 1) / (size_t)group * (size_t)group;
    return r < (size_t)rows ? (int64_t)r : rows;
}

static void *copy_part(void *arg) {
    const copy_plan *p = arg;
    size_t lo = p->total / (size_t)p->k * (size_t)p->i, hi = p->i + 1 == p->k ? p->total : p->total / (size_t)p->k * (size_t)(p->i + 1);
    size_t off = 0;
    for (size_t j = 0; j < p->n && off < hi; j++) {
        const flm_tensor *t = p->t[j];
        size_t nb = t->nbytes, a = off > lo ? off : lo, b = off + nb < hi ? off + nb : hi;
        if (p->pack[j]) {
            int g = p->pk->row_group;
            int64_t rows = t->shape[0];
            size_t rb = nb / (size_t)rows;
            int64_t r0 = first_row_from(lo, off, rb, rows, g), r1 = off + nb <= hi ? rows : first_row_from(hi, off, rb, rows, g);
            if (r0 < r1) {
                const unsigned char *src = (const unsigned char *)t->data;
                p->pk->pack_rows((int)t->dtype, src, p->arena + off, rows, (int)t->shape[1], r0, r1);
                flm_map_release(src + (size_t)r0 * rb, (size_t)(r1 - r0) * rb);
            }
        } else if (a < b) {
            const unsigned char *src = (const unsigned char *)t->data + (a - off);
            memcpy(p->arena + a, src, b - a);
            /* drop the source pages as we go, so the copy never holds the model twice
             * (rounded out to pages: a neighbour's page refaults from the file if needed) */
            flm_map_release(src, b - a);
        }
        off += ALIGN_UP(nb);
    }
    return NULL;
}

static void copy_parallel(const copy_plan *plan) {
    int k = flm_physical_cores();
    if (k > COPY_THREADS_MAX) k = COPY_THREADS_MAX;
    if (k < 1) k = 1;
    copy_plan parts[COPY_THREADS_MAX];
    pthread_t th[COPY_THREADS_MAX];
    bool started[COPY_THREADS_MAX] = {false};
    for (int i = 0; i < k; i++) {
        parts[i] = *plan;
        parts[i].k = k;
        parts[i].i = i;
        if (i > 0) started[i] = pthread_create(&th[i], NULL, copy_part, &parts[i]) == 0;
    }
    copy_part(&parts[0]);
    for (int i = 1; i < k; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else copy_part(&parts[i]); /* no thread: do its share here */
    }
}

/* The table's packed layout, unless FLM_QPACK=0 (the file's layout, for A/B runs). */
static const flm_qpacked_fns *packed_layout(void) { return flm_kernels_qpack_enabled() ? flm_kernels_best()->qpacked : NULL; }

/* Whether t is packed when loaded: a q8_0/q4_0 matrix the int8 products read (a
 * layer's or the LM head; the embedding only when it is the LM head). */
static bool packs(const flm_model *m, const flm_tensor *t) {
    if ((t->dtype != FLM_Q8_0 && t->dtype != FLM_Q4_0) || t->ndim != 2 || t->shape[0] <= 0) return false;
    return t != &m->embed || m->lm_head.data == m->embed.data;
}

int flm_model_place_weights(flm_model *m, flm_weights_mode mode) {
    if (mode == FLM_WEIGHTS_MAP) return FLM_OK;
    size_t cap = 2 + 7 * (size_t)m->cfg.n_layers, n = 0;
    flm_tensor **all = flm_malloc(cap * sizeof *all), **todo = flm_malloc(cap * sizeof *todo);
    bool *pack = flm_calloc(cap, sizeof *pack);
    if (!all || !todo || !pack) { free(all); free(todo); free(pack); return FLM_ERR_NOMEM; }
    size_t total = 0, count = matrices(m, all);
    for (size_t i = 0; i < count; i++) {
        if (!all[i]->data || is_owned(m, all[i]->data)) continue; /* LoRA-merged or realigned: already in memory */
        todo[n++] = all[i];
        total += ALIGN_UP(all[i]->nbytes);
    }
    int rc = FLM_OK;
    if (n == 0) goto done;
    if (mode == FLM_WEIGHTS_AUTO) {
        size_t avail = mem_available();
        if (avail == 0 || total > avail / 2) goto done; /* stay mapped */
    }
    size_t span = (total + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN + ARENA_ALIGN;
    void *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        if (mode == FLM_WEIGHTS_AUTO) goto done;
        rc = flm_fail(FLM_ERR_NOMEM, "cannot load %zu MiB of weights into memory (%s); use --mmap to run them from the file",
                      total >> 20, strerror(errno));
        goto done;
    }
    /* keep the 2 MiB-aligned part only, so every huge page holds weights */
    unsigned char *arena = (unsigned char *)(((uintptr_t)raw + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1));
    size_t head = (size_t)(arena - (unsigned char *)raw), used = span - ARENA_ALIGN;
    if (head) munmap(raw, head);
    if (span - head - used) munmap(arena + used, span - head - used);
#ifdef MADV_HUGEPAGE
    madvise(arena, used, MADV_HUGEPAGE); /* a hint; fine if refused */
#endif
    const flm_qpacked_fns *pk = packed_layout();
    for (size_t i = 0; i < n; i++) pack[i] = pk && packs(m, todo[i]);
    copy_plan plan = {.t = todo, .pack = pack, .n = n, .pk = pk, .arena = arena, .total = total};
    copy_parallel(&plan);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        flm_tensor *t = todo[i];
        const void *old = t->data;
        t->data = arena + off;
        if (pack[i]) t->layout = pk;
        if (m->lm_head.data == old) { /* tied to the embedding */
            m->lm_head.data = arena + off;
            m->lm_head.layout = t->layout;
        }
        off += ALIGN_UP(t->nbytes);
    }
    mprotect(arena, used, PROT_READ); /* read-only from here on */
    m->arena = arena;
    m->arena_span = used;
    m->loaded_bytes = total;
done:
    free(all);
    free(todo);
    free(pack);
    return rc;
}

size_t flm_model_loaded_bytes(const flm_model *m) { return m->loaded_bytes; }

const char *flm_model_weight_layout(const flm_model *m) {
    size_t cap = 2 + 7 * (size_t)m->cfg.n_layers;
    flm_tensor **t = flm_malloc(cap * sizeof *t);
    const void *l = m->lm_head.layout;
    if (t) {
        size_t n = matrices((flm_model *)m, t);
        for (size_t i = 0; !l && i < n; i++) l = t[i]->layout;
        free(t);
    }
    return l ? ((const flm_qpacked_fns *)l)->name : NULL;
}

size_t flm_model_huge_page_bytes(const flm_model *m) {
    if (!m->arena) return 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    uintptr_t lo = (uintptr_t)m->arena, hi = lo + m->arena_span;
    bool in = false;
    unsigned long long kb, sum = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a, b;
        if (sscanf(line, "%llx-%llx ", &a, &b) == 2) in = a < hi && b > lo;
        else if (in && sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) sum += kb;
    }
    fclose(f);
    size_t huge = (size_t)sum * 1024; /* the last huge page may be only partly weights */
    return huge < m->loaded_bytes ? huge : m->loaded_bytes;
}

void flm_model_unload_weights(flm_model *m) {
    if (m->arena) munmap(m->arena, m->arena_span);
    m->arena = NULL;
    m->arena_span = m->loaded_bytes = 0;
}
