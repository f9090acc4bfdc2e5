/* convert.c — Hugging Face folder (+ LoRA) → GGUF package, streaming.
 *
 * Per tensor: source rows (bf16/f16/f32, read with pread from the shard) → float32
 * → (+ scale·B·A for LoRA targets, computed on the whole float32 weight) →
 * f32/f16/bf16/q8_0/q4_0 rows → written. Untargeted tensors go through in chunks of
 * rows, so even the 151936-row embedding needs a few MB, and no source page stays
 * in the process's resident set. Norms and biases stay f32 (as llama.cpp does).
 *
 * Three things overlap: the pool's threads read and convert a chunk (each thread its
 * own rows: pread, widen one row into a cached float row, convert it to the output
 * type; LoRA targets are widened whole, merged on the pool, then converted), a writer
 * thread writes the previous chunks (a ring of three output buffers), and the hasher
 * reads the sources. Every row's bytes depend only on that row, so the package is
 * the same for any thread count.
 *
 * Sources that change under the converter are errors, not signals: the weights are
 * read with pread (a truncated shard is a short read, where the mapping would raise
 * SIGBUS), and every source file's size is checked against its size at open before
 * each tensor. The output follows src/base/outfile.h: checked before any work, written
 * to a temporary file of its own, removed on any error or cancel.
 *
 * Provenance: a thread hashes every source file (SHA-256) while the tensors are
 * converted. The metadata goes out with placeholders of the hashes' length, which
 * are replaced in the written header once the hashing ends (before the rename). Any
 * error or cancel, on either side, stops the other: the converter sets the hasher's
 * stop flag, and looks at the hasher's result before each tensor. */
#include "convert/convert.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "model/gen_config.h"
#include "format/gguf.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_source.h"
#include "base/outfile.h"
#include "package/package.h"
#include "kernels/quant.h"
#include "base/sha256.h"
#include "text/template.h"
#include "base/threadpool.h"
#include "text/tokenizer.h"

#define CHUNK_ELEMS (4u << 20) /* floats per row chunk (16 MiB) */
#define HASH_BLOCK (1u << 20)  /* bytes hashed between checks of the stop flag */

/* A source file watched for changes: opened once, its size as the reader saw it. */
typedef struct {
    char *path;
    int fd;
    uint64_t size;
} watched_file;

/* Opens path for pread. size: what the reader saw (0: take the size now). */
static int watch_open(watched_file *f, const char *path, uint64_t size) {
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return flm_fail(FLM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (!size && fstat(f->fd, &st) == 0) size = (uint64_t)st.st_size;
    f->size = size;
    if (!(f->path = flm_strdup(path))) {
        close(f->fd);
        return FLM_ERR_NOMEM;
    }
    return FLM_OK;
}

/* The file must still have the size it had when its header was read. */
static int watch_check(const watched_file *f) {
    struct stat st;
    if (fstat(f->fd, &st) != 0) return flm_fail(FLM_ERR_IO, "%s: %s", f->path, strerror(errno));
    if ((uint64_t)st.st_size != f->size)
        return flm_fail(FLM_ERR_IO, "%s changed size during conversion (was %llu bytes, now %llu)", f->path,
                        (unsigned long long)f->size, (unsigned long long)st.st_size);
    return FLM_OK;
}

typedef struct {
    char gguf_name[96];
    char hf_name[128];
    const flm_tensor *src;
    flm_dtype out;
    bool lora;
} plan_entry;

/* ---- background hashing of the source files (provenance) ---- */
typedef struct {
    char **paths, **names;
    char (*hex)[65];
    size_t n;
    int rc;
    char msg[512];                 /* the hashing thread's error message */
    volatile sig_atomic_t *cancel; /* the caller's flag */
    atomic_int stop;               /* set by the converter on any error */
    atomic_int done;               /* set by the hasher when rc and msg are final */
} hash_job;

static bool hash_stopped(hash_job *h) { return atomic_load(&h->stop) || (h->cancel && *h->cancel); }

/* SHA-256 of one file; stops within a block when the conversion fails or is
 * cancelled (hashing one shard of a large model takes seconds). */
static int hash_file(hash_job *h, const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return flm_fail(FLM_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char *buf = flm_malloc(HASH_BLOCK);
    int rc = buf ? FLM_OK : FLM_ERR_NOMEM;
    flm_sha256 s;
    flm_sha256_init(&s);
    size_t n;
    while (!rc && (n = fread(buf, 1, HASH_BLOCK, f)) > 0) {
        if (hash_stopped(h)) rc = FLM_ERR_CANCELLED;
        else flm_sha256_update(&s, buf, n);
    }
    if (!rc && ferror(f)) rc = flm_fail(FLM_ERR_IO, "%s: read error", path);
    fclose(f);
    free(buf);
    if (rc) return rc;
    unsigned char d[32];
    flm_sha256_final(&s, d);
    flm_sha256_hex(d, hex);
    return FLM_OK;
}

static void *hash_thread(void *arg) {
    hash_job *h = arg;
    for (size_t i = 0; i < h->n && !h->rc; i++) {
        if (hash_stopped(h)) { h->rc = FLM_ERR_CANCELLED; break; }
        h->rc = hash_file(h, h->paths[i], h->hex[i]);
    }
    /* messages are per thread: hand this one to the converter's thread */
    if (h->rc && h->rc != FLM_ERR_CANCELLED) snprintf(h->msg, sizeof h->msg, "%s", flm_last_error());
    atomic_store(&h->done, 1);
    return NULL;
}

/* The hasher's failure as this thread's error. */
static int hash_error(const hash_job *h) {
    if (h->rc == FLM_ERR_CANCELLED) return flm_fail(FLM_ERR_CANCELLED, "conversion interrupted");
    return flm_fail(h->rc, "%s", h->msg);
}

static int add_hash_file(hash_job *h, const char *dir, const char *name) {
    char *p = flm_path_join(dir, name);
    if (!p) return FLM_ERR_NOMEM;
    if (!flm_file_exists(p)) { free(p); return FLM_OK; }
    char **np = flm_realloc(h->paths, (h->n + 1) * sizeof *np);
    if (!np) { free(p); return FLM_ERR_NOMEM; }
    h->paths = np;
    char **nn = flm_realloc(h->names, (h->n + 1) * sizeof *nn);
    if (!nn) { free(p); return FLM_ERR_NOMEM; }
    h->names = nn;
    h->paths[h->n] = p;
    h->names[h->n] = flm_strdup(name);
    h->n++;
    return h->names[h->n - 1] ? FLM_OK : FLM_ERR_NOMEM;
}

static void free_hash_job(hash_job *h) {
    for (size_t i = 0; i < h->n; i++) { free(h->paths[i]); free(h->names[i]); }
    free(h->paths);
    free(h->names);
    free(h->hex);
}

/* ---- the writer thread: tensor data goes out while the next chunk is converted ----
 * A ring of WQ_SLOTS output buffers. The converter fills the next free slot and
 * queues it; the writer thread writes queued slots in order (the GGUF writer is
 * used by that thread alone until wq_close) and frees them. A write error stops the
 * writer, which drops what is queued; the converter sees it at its next acquire. */
#define WQ_SLOTS 3

typedef struct {
    flm_gguf_writer *w;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned char *buf[WQ_SLOTS];
    size_t cap[WQ_SLOTS], len[WQ_SLOTS];
    int head, count, next; /* queued: count slots from head; the converter fills `next` */
    bool closing, started;
    int rc;                /* the writer's error (FLM_OK while none) */
    char msg[512];         /* its message, handed over from the writer's thread */
} wqueue;

static void *wq_thread(void *arg) {
    wqueue *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->count && !q->closing) pthread_cond_wait(&q->cv, &q->mu);
        if (!q->count) break;
        int slot = q->head;
        int rc = q->rc;
        pthread_mutex_unlock(&q->mu);
        if (!rc && (rc = flm_gguf_writer_write_part(q->w, q->buf[slot], q->len[slot])))
            snprintf(q->msg, sizeof q->msg, "%s", flm_last_error());
        pthread_mutex_lock(&q->mu);
        if (rc) q->rc = rc;
        q->head = (q->head + 1) % WQ_SLOTS;
        q->count--;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static int wq_start(wqueue *q, flm_gguf_writer *w) {
    memset(q, 0, sizeof *q);
    q->w = w;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->th, NULL, wq_thread, q) != 0) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        return flm_fail(FLM_ERR_IO, "cannot start the writer thread");
    }
    q->started = true;
    return FLM_OK;
}

/* The writer's failure as this thread's error. */
static int wq_error(const wqueue *q) { return flm_fail(q->rc, "%s", q->msg); }

/* The next free slot, with room for n bytes, in *out; an error when out of memory or
 * when the writer failed (its message). */
static int wq_acquire(wqueue *q, size_t n, unsigned char **out) {
    *out = NULL;
    pthread_mutex_lock(&q->mu);
    while (q->count == WQ_SLOTS && !q->rc) pthread_cond_wait(&q->cv, &q->mu);
    int rc = q->rc;
    pthread_mutex_unlock(&q->mu);
    if (rc) return wq_error(q);
    int s = q->next; /* not queued, so the writer does not touch it */
    if (q->cap[s] < n) {
        free(q->buf[s]);
        q->cap[s] = 0;
        if (!(q->buf[s] = flm_malloc(n))) return FLM_ERR_NOMEM;
        q->cap[s] = n;
    }
    *out = q->buf[s];
    return FLM_OK;
}

/* Queues the acquired slot's first n bytes. */
static void wq_submit(wqueue *q, size_t n) {
    pthread_mutex_lock(&q->mu);
    q->len[q->next] = n;
    q->next = (q->next + 1) % WQ_SLOTS;
    q->count++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Writes what is queued (drop: drops it instead, for a conversion that failed),
 * stops the thread, frees the slots; returns the writer's error code, if any (its
 * message: wq_error). Safe to call twice. */
static int wq_close(wqueue *q, bool drop) {
    if (!q->started) return FLM_OK;
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    if (drop && !q->rc) {
        q->rc = FLM_ERR_CANCELLED;
        snprintf(q->msg, sizeof q->msg, "conversion stopped");
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->th, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    for (int i = 0; i < WQ_SLOTS; i++) free(q->buf[i]);
    q->started = false;
    return q->rc;
}

/* ---- converting a chunk of rows on the pool ---- */
typedef struct {
    const float *x;
    unsigned char *dst;
    flm_dtype t;
    int64_t rows, cols;
    size_t row_bytes;
} quant_job;

static void quant_part(void *ctx, int ith, int nth) {
    const quant_job *q = ctx;
    int64_t per = (q->rows + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < q->rows ? r0 + per : q->rows;
    for (int64_t r = r0; r < r1; r++) flm_quantize_row(q->t, q->x + r * q->cols, q->dst + (size_t)r * q->row_bytes, q->cols);
}

/* Rows [row0, row0 + rows) of src, each thread its own rows: a tensor in a shard is
 * read with pread into `raw`, one held in memory (an f32 copy) is read in place.
 * Then either every row to float32 into dst (LoRA targets: the merge needs the
 * whole tensor), or row by row straight to the output type into out: widened into
 * the thread's row of `rowf` (cols floats, in cache) and converted from there, so
 * the chunk's float32 copy never goes through memory. */
typedef struct {
    const flm_tensor *src;
    int fd;                    /* the shard, or -1: src->data is in memory */
    uint64_t off;              /* the tensor's offset in the shard */
    unsigned char *raw;        /* the chunk's source bytes */
    float *dst;                /* float32 rows, or NULL: convert to `out` */
    float *rowf;               /* n_rowf rows of cols floats: one per thread */
    int n_rowf;
    unsigned char *out;        /* the chunk's output rows (out_row bytes each) */
    flm_dtype out_type;
    size_t out_row;
    int64_t row0, rows, cols;
    atomic_int failed;         /* 0, errno of a failed read, or -1 for end of file */
    _Atomic uint64_t fail_at;  /* file offset of that read */
} deq_job;

static void deq_fail(deq_job *d, int code, uint64_t at) {
    int none = 0;
    if (atomic_compare_exchange_strong(&d->failed, &none, code)) atomic_store(&d->fail_at, at);
}

static void deq_part(void *ctx, int ith, int nth) {
    deq_job *d = ctx;
    const flm_dtype_info *di = flm_dtype_get(d->src->dtype);
    size_t rb = flm_dtype_bytes(d->src->dtype, (uint64_t)d->cols);
    int64_t per = (d->rows + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < d->rows ? r0 + per : d->rows;
    if (r0 >= r1) return;
    const unsigned char *base = (const unsigned char *)d->src->data + (size_t)d->row0 * rb;
    if (d->fd >= 0) {
        unsigned char *p = d->raw + (size_t)r0 * rb;
        size_t want = (size_t)(r1 - r0) * rb;
        uint64_t at = d->off + (uint64_t)(d->row0 + r0) * rb;
        while (want) {
            ssize_t n = pread(d->fd, p, want, (off_t)at);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { deq_fail(d, n < 0 ? errno : -1, at); return; }
            p += n;
            want -= (size_t)n;
            at += (uint64_t)n;
        }
        base = d->raw;
    }
    if (d->dst) {
        for (int64_t r = r0; r < r1; r++) di->to_float(base + (size_t)r * rb, d->dst + r * d->cols, (size_t)d->cols);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        unsigned char *y = d->out + (size_t)r * d->out_row;
        if (d->out_type == FLM_F32) {
            di->to_float(base + (size_t)r * rb, (float *)(void *)y, (size_t)d->cols);
        } else {
            float *f = d->rowf + (size_t)(ith < d->n_rowf ? ith : 0) * (size_t)d->cols;
            di->to_float(base + (size_t)r * rb, f, (size_t)d->cols);
            flm_quantize_row(d->out_type, f, y, d->cols);
        }
    }
}

/* Converts one tensor into the writer's queue; `shard` is the file holding its data
 * (NULL: in memory). */
static int write_tensor(wqueue *wq, flm_pool *pool, const plan_entry *e, const flm_st_file *shard, const watched_file *src,
                        flm_lora **ad, int n_lora, volatile sig_atomic_t *cancel) {
    const flm_tensor *t = e->src;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    size_t out_row = flm_dtype_bytes(e->out, (uint64_t)cols);
    int64_t chunk = e->lora ? rows : (int64_t)(CHUNK_ELEMS / (uint64_t)cols);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    size_t src_row = flm_dtype_bytes(t->dtype, (uint64_t)cols);
    int nth = flm_pool_size(pool);
    /* LoRA targets: the whole tensor in float32; others: one float row per thread */
    float *x = e->lora ? flm_malloc((size_t)chunk * (size_t)cols * sizeof(float)) : NULL;
    float *rowf = e->lora ? NULL : flm_malloc((size_t)nth * (size_t)cols * sizeof(float));
    unsigned char *raw = shard ? flm_malloc((size_t)chunk * src_row) : NULL;
    int rc = ((e->lora && !x) || (!e->lora && !rowf) || (shard && !raw)) ? FLM_ERR_NOMEM : FLM_OK;
    for (int64_t r0 = 0; !rc && r0 < rows; r0 += chunk) {
        if (cancel && *cancel) { rc = flm_fail(FLM_ERR_CANCELLED, "conversion interrupted"); break; }
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        unsigned char *y;
        if ((rc = wq_acquire(wq, (size_t)n * out_row, &y))) break;
        deq_job dj = {.src = t, .fd = shard ? src->fd : -1, .off = shard ? flm_st_offset(shard, t->data) : 0, .raw = raw,
                      .dst = x, .rowf = rowf, .n_rowf = nth, .out = y, .out_type = e->out, .out_row = out_row,
                      .row0 = r0, .rows = n, .cols = cols};
        atomic_init(&dj.failed, 0);
        atomic_init(&dj.fail_at, 0);
        flm_pool_run(pool, deq_part, &dj);
        int failed = atomic_load(&dj.failed);
        if (failed) {
            rc = flm_fail(FLM_ERR_IO, "%s: read failed at offset %llu: %s (was the file changed during conversion?)",
                          src->path, (unsigned long long)atomic_load(&dj.fail_at),
                          failed > 0 ? strerror(failed) : "end of file (truncated?)");
            break;
        }
        if (e->lora) {
            for (int i = 0; i < n_lora && !rc; i++) rc = flm_lora_apply_pool(ad[i], e->hf_name, x, rows, cols, pool);
            if (rc) break;
            quant_job qj = {x, y, e->out, n, cols, out_row};
            flm_pool_run(pool, quant_part, &qj);
        }
        wq_submit(wq, (size_t)n * out_row);
    }
    free(x);
    free(rowf);
    free(raw);
    return rc;
}

static const char *type_name(flm_dtype t) { return flm_dtype_get(t)->name; }

static bool flm_has_tokenizer_files(const char *dir) {
    static const char *const any[] = {"tokenizer.json", "vocab.json"};
    for (size_t i = 0; i < sizeof any / sizeof *any; i++) {
        char *p = flm_path_join(dir, any[i]);
        bool ok = p && flm_file_exists(p);
        free(p);
        if (ok) return true;
    }
    return false;
}

int flm_convert_hf(const char *hf_dir, const char *out_path, const flm_convert_hf_options *opt, flm_convert_hf_stats *stats) {
    double t0 = flm_now_seconds();
    memset(stats, 0, sizeof *stats);
    flm_dtype type = opt->type;
    if (type != FLM_F32 && type != FLM_F16 && type != FLM_BF16 && type != FLM_Q8_0 && type != FLM_Q4_0)
        return flm_fail(FLM_ERR_ARG, "unsupported output type %s (f32, f16, bf16, q8_0, q4_0)", type_name(type));
    if (!flm_is_dir(hf_dir)) return flm_fail(FLM_ERR_IO, "%s: not a folder (convert reads a Hugging Face checkpoint folder)", hf_dir);
    /* the output, before any work: not an input, not a directory or device, a writable folder */
    {
        const char **inputs = flm_calloc((size_t)opt->n_lora + 1, sizeof *inputs);
        if (!inputs) return FLM_ERR_NOMEM;
        inputs[0] = hf_dir;
        for (int i = 0; i < opt->n_lora; i++) inputs[i + 1] = opt->lora_dirs[i];
        int rc0 = flm_outfile_check(out_path, inputs, (size_t)opt->n_lora + 1);
        free(inputs);
        if (rc0) return rc0;
    }

    flm_model *m = NULL;
    flm_tokenizer *tok = NULL;
    flm_template_source tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    bool have_tmpl = false;
    flm_gen_config gen;
    flm_lora **ad = NULL;
    plan_entry *plan = NULL;
    flm_gguf_writer *w = NULL;
    flm_pool *pool = NULL;
    wqueue wq = {.started = false};
    hash_job hj = {.cancel = opt->cancel};
    atomic_init(&hj.stop, 0);
    atomic_init(&hj.done, 0);
    watched_file *watch = NULL; /* the shards, then the adapters' weights */
    size_t n_watch = 0;
    pthread_t hasher;
    bool hashing = false;
    char **prov_files = NULL, **prov_adapters = NULL;
    char *names = NULL;
    flm_lora_base_weight *bw = NULL;
    int rc;

    flm_model_options mo = {.weights = FLM_WEIGHTS_MAP}; /* streamed from the files, one tensor at a time */
    if ((rc = flm_model_open_dir(hf_dir, &mo, &m))) goto done;
    if (flm_has_tokenizer_files(hf_dir)) {
        if ((rc = flm_tokenizer_load_dir(hf_dir, &tok))) goto done;
    } else {
        stats->no_tokenizer = true; /* runs on token ids only; said in the summary */
    }
    if (flm_template_source_load_dir(hf_dir, &tmpl) == FLM_OK) have_tmpl = true; /* a base model may have none */
    if ((rc = flm_gen_config_load_hf(hf_dir, &gen))) goto done;
    if ((rc = flm_pool_new(opt->n_threads, &pool))) goto done;

    /* adapters: open and check every one against the base before any work */
    if (opt->n_lora > 0) {
        size_t nb;
        ad = flm_calloc((size_t)opt->n_lora, sizeof *ad);
        bw = flm_model_base_weights(m, &nb, &names);
        if (!ad || !bw) { rc = FLM_ERR_NOMEM; goto done; }
        for (int i = 0; i < opt->n_lora && !rc; i++) {
            rc = flm_lora_open(opt->lora_dirs[i], opt->lora_scales ? opt->lora_scales[i] : 1.0f, &ad[i]);
            if (!rc) rc = flm_lora_check_base(ad[i], bw, nb);
        }
        if (!rc) rc = flm_lora_check_distinct(ad, opt->n_lora);
        if (rc) goto done;
    }

    /* every file the weights come from: checked again as the output (a shard named by
     * the index), then opened for pread and watched for changes */
    watch = flm_calloc(m->source->n_shards + (size_t)opt->n_lora + 1, sizeof *watch);
    if (!watch) { rc = FLM_ERR_NOMEM; goto done; }
    for (size_t s = 0; s < m->source->n_shards + (size_t)opt->n_lora && !rc; s++) {
        bool shard = s < m->source->n_shards;
        char *p = shard ? flm_strdup(flm_st_path(m->source->shards[s]))
                        : flm_path_join(flm_lora_dir(ad[s - m->source->n_shards]), "adapter_model.safetensors");
        if (!p) rc = FLM_ERR_NOMEM;
        else if (!(rc = flm_outfile_check(out_path, (const char *const *)&p, 1)) &&
                 !(rc = watch_open(&watch[n_watch], p, shard ? flm_st_size(m->source->shards[s]) : 0)))
            rc = watch_check(&watch[n_watch++]);
        free(p);
    }
    if (rc) goto done;

    /* provenance: hash every source file in the background while converting */
    static const char *const SRC_FILES[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                            "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json",
                                            "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof SRC_FILES / sizeof *SRC_FILES && !rc; i++) rc = add_hash_file(&hj, hf_dir, SRC_FILES[i]);
    for (size_t s = 0; s < m->source->n_shards && !rc; s++) {
        const char *p = flm_st_path(m->source->shards[s]), *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        if (strcmp(base, "model.safetensors") != 0) rc = add_hash_file(&hj, hf_dir, base);
    }
    for (int i = 0; i < opt->n_lora && !rc; i++) {
        char label[64];
        snprintf(label, sizeof label, "adapter_model.safetensors");
        size_t before = hj.n;
        rc = add_hash_file(&hj, flm_lora_dir(ad[i]), label);
        if (!rc && hj.n > before) {
            char *nm = flm_path_join(flm_lora_dir(ad[i]), label);
            if (!nm) { rc = FLM_ERR_NOMEM; break; }
            free(hj.names[hj.n - 1]);
            hj.names[hj.n - 1] = nm;
        }
    }
    if (rc) goto done;
    hj.hex = flm_calloc(hj.n ? hj.n : 1, sizeof *hj.hex);
    if (!hj.hex) { rc = FLM_ERR_NOMEM; goto done; }
    if (pthread_create(&hasher, NULL, hash_thread, &hj) != 0) { rc = flm_fail(FLM_ERR_NOMEM, "could not start the hashing thread"); goto done; }
    hashing = true;

    /* the plan: llama.cpp's tensor order and names */
    const flm_config *c = &m->cfg;
    size_t n_plan = 2 + (size_t)c->n_layers * W_LAYER_COUNT + (c->tie_word_embeddings ? 0 : 1);
    plan = flm_calloc(n_plan, sizeof *plan);
    if (!plan) { rc = FLM_ERR_NOMEM; goto done; }
    size_t k = 0;
    plan[k++] = (plan_entry){.gguf_name = "token_embd.weight", .hf_name = "model.embed_tokens.weight", .src = &m->embed};
    for (int l = 0; l < c->n_layers; l++)
        for (int wi = 0; wi < W_LAYER_COUNT; wi++) {
            plan_entry *e = &plan[k++];
            flm_gguf_layer_name(l, (flm_layer_weight)wi, e->gguf_name, sizeof e->gguf_name);
            flm_hf_layer_name(l, (flm_layer_weight)wi, e->hf_name, sizeof e->hf_name);
            e->src = flm_layer_weight_slot(&m->layers[l], (flm_layer_weight)wi);
        }
    plan[k++] = (plan_entry){.gguf_name = "output_norm.weight", .hf_name = "model.norm.weight", .src = &m->final_norm};
    if (!c->tie_word_embeddings) plan[k++] = (plan_entry){.gguf_name = "output.weight", .hf_name = "lm_head.weight", .src = &m->lm_head};
    for (size_t i = 0; i < n_plan; i++) {
        plan_entry *e = &plan[i];
        if (e->src->ndim == 1) { e->out = FLM_F32; continue; }
        e->out = type;
        if (!flm_quant_row_ok(type, e->src->shape[1])) { e->out = FLM_F16; stats->n_fallback++; }
        for (int a = 0; a < opt->n_lora; a++) e->lora |= flm_lora_targets(ad[a], e->hf_name);
    }

    if ((rc = flm_gguf_writer_open(out_path, 64, &w))) goto done;
    /* the hashes are not known yet: "0"×64 stands for each until the hashing ends */
    prov_files = flm_calloc(hj.n ? hj.n : 1, sizeof *prov_files);
    prov_adapters = flm_calloc(opt->n_lora ? (size_t)opt->n_lora : 1, sizeof *prov_adapters);
    if (!prov_files || !prov_adapters) { rc = FLM_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < hj.n; i++) {
        strbuf sb;
        flm_sb_init(&sb);
        flm_sb_printf(&sb, "%064d  %s", 0, hj.names[i]);
        prov_files[i] = flm_sb_take(&sb);
        if (!prov_files[i]) { rc = FLM_ERR_NOMEM; goto done; }
    }
    for (int i = 0; i < opt->n_lora; i++) {
        strbuf sb;
        flm_sb_init(&sb);
        const char *d = flm_lora_dir(ad[i]), *b = flm_lora_base_model(ad[i]);
        flm_sb_puts(&sb, "{\"dir\":");
        flm_sb_json_string(&sb, d, strlen(d), false);
        flm_sb_puts(&sb, ",\"base_model_name_or_path\":");
        if (b) flm_sb_json_string(&sb, b, strlen(b), false); else flm_sb_puts(&sb, "null");
        flm_sb_printf(&sb, ",\"r\":%d,\"lora_alpha\":%.9g,\"use_rslora\":%s,\"scale\":%.9g,\"user_scale\":%.9g}", flm_lora_rank(ad[i]),
                  flm_lora_alpha(ad[i]), flm_lora_rslora(ad[i]) ? "true" : "false", (double)flm_lora_scale(ad[i]),
                  (double)flm_lora_user_scale(ad[i]));
        prov_adapters[i] = flm_sb_take(&sb);
        if (!prov_adapters[i]) { rc = FLM_ERR_NOMEM; goto done; }
    }
    flm_package_provenance prov = {(const char *const *)prov_files, hj.n, (const char *const *)prov_adapters, (size_t)opt->n_lora,
                                   c->torch_dtype, type_name(type)};
    if ((rc = flm_package_write_metadata(w, c, tok, have_tmpl ? &tmpl : NULL, &gen, &prov))) goto done;
    for (size_t i = 0; i < n_plan && !rc; i++)
        rc = flm_gguf_writer_add_tensor(w, plan[i].gguf_name, plan[i].out, plan[i].src->ndim, plan[i].src->shape);
    if (rc) goto done;
    uint64_t total = 0, done_bytes = 0;
    for (size_t i = 0; i < n_plan; i++) total += plan[i].src->nbytes;
    if ((rc = wq_start(&wq, w))) goto done;
    for (size_t i = 0; i < n_plan && !rc; i++) {
        if (opt->progress) opt->progress(opt->progress_ctx, (int)i, (int)n_plan, plan[i].gguf_name, done_bytes, total);
        /* the hashing has not failed, and every source (shards, adapters) still has
         * the size its header promised */
        if (atomic_load(&hj.done) && hj.rc) rc = hash_error(&hj);
        for (size_t wi = 0; wi < n_watch && !rc; wi++) rc = watch_check(&watch[wi]);
        size_t s = 0;
        while (s < m->source->n_shards && !flm_st_contains(m->source->shards[s], plan[i].src->data)) s++;
        bool in_shard = s < m->source->n_shards; /* else an owned copy (f32 norms) */
        if (!rc)
            rc = write_tensor(&wq, pool, &plan[i], in_shard ? m->source->shards[s] : NULL, in_shard ? &watch[s] : NULL, ad,
                              opt->n_lora, opt->cancel);
        done_bytes += plan[i].src->nbytes;
    }
    {
        int wrc = wq_close(&wq, rc != FLM_OK); /* everything queued is written (or the writer's error) */
        if (!rc && wrc) rc = wq_error(&wq);
    }
    for (size_t wi = 0; wi < n_watch && !rc; wi++) rc = watch_check(&watch[wi]);
    if (rc) goto done;
    /* the data is written: wait for the rest of the hashing, put the hashes in the header */
    pthread_join(hasher, NULL);
    hashing = false;
    if (opt->cancel && *opt->cancel) { rc = flm_fail(FLM_ERR_CANCELLED, "conversion interrupted"); goto done; }
    if (hj.rc) { rc = hash_error(&hj); goto done; }
    for (size_t i = 0; i < hj.n && !rc; i++) {
        memcpy(prov_files[i], hj.hex[i], 64);
        rc = flm_gguf_writer_replace_str(w, "fieldlm.source.files", i, prov_files[i]);
    }
    if (rc) goto done;
    if (opt->progress) opt->progress(opt->progress_ctx, (int)n_plan, (int)n_plan, "", total, total);
    stats->bytes_written = flm_gguf_writer_bytes(w); /* this writer's own file, whoever renames last */
    rc = flm_gguf_writer_finish(w);
    w = NULL;
    if (rc) { stats->bytes_written = 0; goto done; }
    stats->n_tensors = (int)n_plan;
done:
    wq_close(&wq, true); /* after an error: stop the writer, drop its queue, before the file goes */
    if (hashing) {
        atomic_store(&hj.stop, 1); /* an error or cancel: do not wait for the rest of the hashing */
        pthread_join(hasher, NULL);
    }
    if (w) flm_gguf_writer_abort(w);
    for (size_t wi = 0; wi < n_watch; wi++) { close(watch[wi].fd); free(watch[wi].path); }
    free(watch);
    for (size_t i = 0; prov_files && i < hj.n; i++) free(prov_files[i]);
    for (int i = 0; prov_adapters && i < opt->n_lora; i++) free(prov_adapters[i]);
    free(prov_files);
    free(prov_adapters);
    free_hash_job(&hj);
    free(plan);
    for (int i = 0; ad && i < opt->n_lora; i++) flm_lora_close(ad[i]);
    free(ad);
    free(bw);
    free(names);
    flm_pool_free(pool);
    if (have_tmpl) flm_template_source_free(&tmpl);
    flm_tokenizer_free(tok);
    flm_model_close(m);
    stats->seconds = flm_now_seconds() - t0;
    stats->peak_rss = flm_peak_rss_bytes();
    return rc;
}
