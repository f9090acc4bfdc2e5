/* convert_src.c — the source side shared by the converters (convert_src.h): moved
 * out of convert.c unchanged in what it reads, merges and checks. */
#include "convert/convert_src.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/outfile.h"
#include "base/sha256.h"
#include "model/model_source.h"

#define HASH_BLOCK (1u << 20)  /* bytes hashed between checks of the stop flag */

/* A source file watched for changes: opened once, its size as the reader saw it. */
typedef flm_conv_watched watched_file;

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


/* ---- background hashing of the source files (provenance) ---- */
typedef flm_conv_hash_job hash_job;

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
    return NULL;
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

/* Rows [row0, row0 + rows) of src → float32. A tensor in a shard is read with pread
 * (each thread its own rows) into `raw`; one held in memory (an f32 copy) is read
 * in place. */
typedef struct {
    const flm_tensor *src;
    int fd;                    /* the shard, or -1: src->data is in memory */
    uint64_t off;              /* the tensor's offset in the shard */
    unsigned char *raw;        /* the chunk's source bytes */
    float *dst;
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
    for (int64_t r = r0; r < r1; r++) di->to_float(base + (size_t)r * rb, d->dst + r * d->cols, (size_t)d->cols);
}

static bool has_tokenizer_files(const char *dir) {
    static const char *const any[] = {"tokenizer.json", "vocab.json"};
    for (size_t i = 0; i < sizeof any / sizeof *any; i++) {
        char *p = flm_path_join(dir, any[i]);
        bool ok = p && flm_file_exists(p);
        free(p);
        if (ok) return true;
    }
    return false;
}

int flm_conv_source_open(flm_conv_source *s, const char *hf_dir, const char *out_path, const char *const *lora_dirs,
                         const float *lora_scales, int n_lora, int n_threads, volatile sig_atomic_t *cancel) {
    memset(s, 0, sizeof *s);
    s->cancel = cancel;
    s->hj.cancel = cancel;
    atomic_init(&s->hj.stop, 0);
    if (!flm_is_dir(hf_dir)) return flm_fail(FLM_ERR_IO, "%s: not a folder (convert reads a Hugging Face checkpoint folder)", hf_dir);
    /* the output, before any work: not an input, not a directory or device, a writable folder */
    {
        const char **inputs = flm_calloc((size_t)n_lora + 1, sizeof *inputs);
        if (!inputs) return FLM_ERR_NOMEM;
        inputs[0] = hf_dir;
        for (int i = 0; i < n_lora; i++) inputs[i + 1] = lora_dirs[i];
        int rc0 = flm_outfile_check(out_path, inputs, (size_t)n_lora + 1);
        free(inputs);
        if (rc0) return rc0;
    }
    int rc;
    flm_model_options mo = {.weights = FLM_WEIGHTS_MAP}; /* streamed from the files, one tensor at a time */
    if ((rc = flm_model_open_dir(hf_dir, &mo, &s->m))) goto fail;
    if (has_tokenizer_files(hf_dir) && (rc = flm_tokenizer_load_dir(hf_dir, &s->tok))) goto fail;
    if (flm_template_source_load_dir(hf_dir, &s->tmpl) == FLM_OK) s->have_tmpl = true; /* a base model may have none */
    if ((rc = flm_gen_config_load_hf(hf_dir, &s->gen))) goto fail;
    if ((rc = flm_pool_new(n_threads, &s->pool))) goto fail;

    /* adapters: open and check every one against the base before any work */
    if (n_lora > 0) {
        size_t nb;
        s->ad = flm_calloc((size_t)n_lora, sizeof *s->ad);
        s->bw = flm_model_base_weights(s->m, &nb, &s->names);
        if (!s->ad || !s->bw) { rc = FLM_ERR_NOMEM; goto fail; }
        s->n_lora = n_lora;
        for (int i = 0; i < n_lora && !rc; i++) {
            rc = flm_lora_open(lora_dirs[i], lora_scales ? lora_scales[i] : 1.0f, &s->ad[i]);
            if (!rc) rc = flm_lora_check_base(s->ad[i], s->bw, nb);
        }
        if (!rc) rc = flm_lora_check_distinct(s->ad, n_lora);
        if (rc) goto fail;
    }

    /* every file the weights come from: checked again as the output (a shard named by
     * the index), then opened for pread and watched for changes */
    flm_model *m = s->m;
    s->watch = flm_calloc(m->source->n_shards + (size_t)n_lora + 1, sizeof *s->watch);
    if (!s->watch) { rc = FLM_ERR_NOMEM; goto fail; }
    for (size_t i = 0; i < m->source->n_shards + (size_t)n_lora && !rc; i++) {
        bool shard = i < m->source->n_shards;
        char *p = shard ? flm_strdup(flm_st_path(m->source->shards[i]))
                        : flm_path_join(flm_lora_dir(s->ad[i - m->source->n_shards]), "adapter_model.safetensors");
        if (!p) rc = FLM_ERR_NOMEM;
        else if (!(rc = flm_outfile_check(out_path, (const char *const *)&p, 1)) &&
                 !(rc = watch_open(&s->watch[s->n_watch], p, shard ? flm_st_size(m->source->shards[i]) : 0)))
            rc = watch_check(&s->watch[s->n_watch++]);
        free(p);
    }
    if (rc) goto fail;

    /* provenance: hash every source file in the background while converting */
    hash_job *hj = &s->hj;
    static const char *const SRC_FILES[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                            "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json",
                                            "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof SRC_FILES / sizeof *SRC_FILES && !rc; i++) rc = add_hash_file(hj, hf_dir, SRC_FILES[i]);
    for (size_t i = 0; i < m->source->n_shards && !rc; i++) {
        const char *p = flm_st_path(m->source->shards[i]), *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        if (strcmp(base, "model.safetensors") != 0) rc = add_hash_file(hj, hf_dir, base);
    }
    for (int i = 0; i < n_lora && !rc; i++) {
        char label[64];
        snprintf(label, sizeof label, "adapter_model.safetensors");
        size_t before = hj->n;
        rc = add_hash_file(hj, flm_lora_dir(s->ad[i]), label);
        if (!rc && hj->n > before) {
            char *nm = flm_path_join(flm_lora_dir(s->ad[i]), label);
            if (!nm) { rc = FLM_ERR_NOMEM; break; }
            free(hj->names[hj->n - 1]);
            hj->names[hj->n - 1] = nm;
        }
    }
    if (rc) goto fail;
    hj->hex = flm_calloc(hj->n ? hj->n : 1, sizeof *hj->hex);
    if (!hj->hex) { rc = FLM_ERR_NOMEM; goto fail; }
    if (pthread_create(&s->hasher, NULL, hash_thread, hj) != 0) { rc = flm_fail(FLM_ERR_NOMEM, "could not start the hashing thread"); goto fail; }
    s->hashing = true;
    return FLM_OK;
fail:
    flm_conv_source_close(s);
    return rc;
}

int flm_conv_source_provenance(flm_conv_source *s) {
    hash_job *hj = &s->hj;
    if (s->hashing) {
        pthread_join(s->hasher, NULL);
        s->hashing = false;
    }
    if (s->cancel && *s->cancel) return flm_fail(FLM_ERR_CANCELLED, "conversion interrupted");
    if (hj->rc) return flm_fail(hj->rc, "%s", hj->msg);
    s->prov_files = flm_calloc(hj->n ? hj->n : 1, sizeof *s->prov_files);
    s->prov_adapters = flm_calloc(s->n_lora ? (size_t)s->n_lora : 1, sizeof *s->prov_adapters);
    if (!s->prov_files || !s->prov_adapters) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < hj->n; i++) {
        strbuf sb;
        flm_sb_init(&sb);
        flm_sb_printf(&sb, "%s  %s", hj->hex[i], hj->names[i]);
        s->prov_files[i] = flm_sb_take(&sb);
        if (!s->prov_files[i]) return FLM_ERR_NOMEM;
    }
    for (int i = 0; i < s->n_lora; i++) {
        strbuf sb;
        flm_sb_init(&sb);
        const char *d = flm_lora_dir(s->ad[i]), *b = flm_lora_base_model(s->ad[i]);
        flm_sb_puts(&sb, "{\"dir\":");
        flm_sb_json_string(&sb, d, strlen(d), false);
        flm_sb_puts(&sb, ",\"base_model_name_or_path\":");
        if (b) flm_sb_json_string(&sb, b, strlen(b), false); else flm_sb_puts(&sb, "null");
        flm_sb_printf(&sb, ",\"r\":%d,\"lora_alpha\":%.9g,\"use_rslora\":%s,\"scale\":%.9g,\"user_scale\":%.9g}", flm_lora_rank(s->ad[i]),
                  flm_lora_alpha(s->ad[i]), flm_lora_rslora(s->ad[i]) ? "true" : "false", (double)flm_lora_scale(s->ad[i]),
                  (double)flm_lora_user_scale(s->ad[i]));
        s->prov_adapters[i] = flm_sb_take(&sb);
        if (!s->prov_adapters[i]) return FLM_ERR_NOMEM;
    }
    return FLM_OK;
}

bool flm_conv_source_lora_targets(const flm_conv_source *s, const char *hf_name) {
    bool t = false;
    for (int a = 0; a < s->n_lora; a++) t |= flm_lora_targets(s->ad[a], hf_name);
    return t;
}

int flm_conv_source_check(const flm_conv_source *s) {
    int rc = FLM_OK;
    for (size_t wi = 0; wi < s->n_watch && !rc; wi++) rc = watch_check(&s->watch[wi]);
    return rc;
}

int flm_conv_source_read(flm_conv_source *s, const flm_tensor *t, const char *hf_name, bool lora, flm_conv_sink sink, void *ctx) {
    flm_model *m = s->m;
    size_t si = 0;
    while (si < m->source->n_shards && !flm_st_contains(m->source->shards[si], t->data)) si++;
    bool in_shard = si < m->source->n_shards; /* else an owned copy (f32 norms) */
    const watched_file *src = in_shard ? &s->watch[si] : NULL;
    const flm_st_file *shard = in_shard ? m->source->shards[si] : NULL;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    int64_t chunk = lora ? rows : (int64_t)(FLM_CONV_CHUNK_ELEMS / (uint64_t)cols);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    size_t src_row = flm_dtype_bytes(t->dtype, (uint64_t)cols);
    float *x = flm_malloc((size_t)chunk * (size_t)cols * sizeof(float));
    unsigned char *raw = shard ? flm_malloc((size_t)chunk * src_row) : NULL;
    int rc = (!x || (shard && !raw)) ? FLM_ERR_NOMEM : FLM_OK;
    for (int64_t r0 = 0; !rc && r0 < rows; r0 += chunk) {
        if (s->cancel && *s->cancel) { rc = flm_fail(FLM_ERR_CANCELLED, "conversion interrupted"); break; }
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        deq_job dj = {.src = t, .fd = shard ? src->fd : -1, .off = shard ? flm_st_offset(shard, t->data) : 0, .raw = raw,
                      .dst = x, .row0 = r0, .rows = n, .cols = cols};
        atomic_init(&dj.failed, 0);
        atomic_init(&dj.fail_at, 0);
        flm_pool_run(s->pool, deq_part, &dj);
        int failed = atomic_load(&dj.failed);
        if (failed) {
            rc = flm_fail(FLM_ERR_IO, "%s: read failed at offset %llu: %s (was the file changed during conversion?)",
                          src->path, (unsigned long long)atomic_load(&dj.fail_at),
                          failed > 0 ? strerror(failed) : "end of file (truncated?)");
            break;
        }
        for (int i = 0; lora && i < s->n_lora && !rc; i++) rc = flm_lora_apply_pool(s->ad[i], hf_name, x, rows, cols, s->pool);
        if (rc) break;
        rc = sink(ctx, x, r0, n, cols);
    }
    free(x);
    free(raw);
    return rc;
}

void flm_conv_source_close(flm_conv_source *s) {
    if (s->hashing) {
        atomic_store(&s->hj.stop, 1); /* an error or cancel: do not wait for the rest of the hashing */
        pthread_join(s->hasher, NULL);
        s->hashing = false;
    }
    for (size_t wi = 0; wi < s->n_watch; wi++) { close(s->watch[wi].fd); free(s->watch[wi].path); }
    free(s->watch);
    for (size_t i = 0; s->prov_files && i < s->hj.n; i++) free(s->prov_files[i]);
    for (int i = 0; s->prov_adapters && i < s->n_lora; i++) free(s->prov_adapters[i]);
    free(s->prov_files);
    free(s->prov_adapters);
    free_hash_job(&s->hj);
    for (int i = 0; s->ad && i < s->n_lora; i++) flm_lora_close(s->ad[i]);
    free(s->ad);
    free(s->bw);
    free(s->names);
    flm_pool_free(s->pool);
    if (s->have_tmpl) flm_template_source_free(&s->tmpl);
    flm_tokenizer_free(s->tok);
    flm_model_close(s->m);
    memset(s, 0, sizeof *s);
}
