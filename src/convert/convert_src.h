/* convert_src.h — the source side of every converter (convert.c → GGUF,
 * litert.c → .tflite/.litertlm): the Hugging Face folder opened with its weights
 * left in the files, tokenizer, chat template and generation config, the LoRA
 * adapters opened and checked against the base, every weight file opened for
 * pread and watched for size changes, the source files hashed in the background
 * for provenance, and one weight at a time read as float32 rows (LoRA merged),
 * handed to the caller in chunks. */
#ifndef FLM_CONVERT_SRC_H
#define FLM_CONVERT_SRC_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/tensor.h"
#include "base/threadpool.h"
#include "model/gen_config.h"
#include "model/lora.h"
#include "model/model.h"
#include "text/template.h"
#include "text/tokenizer.h"

#define FLM_CONV_CHUNK_ELEMS (4u << 20) /* floats per row chunk (16 MiB) */

typedef struct {
    char *path;
    int fd;
    uint64_t size;
} flm_conv_watched;

typedef struct {
    char **paths, **names;
    char (*hex)[65];
    size_t n;
    int rc;
    char msg[512];
    volatile sig_atomic_t *cancel;
    atomic_int stop;
} flm_conv_hash_job;

typedef struct {
    flm_model *m;
    flm_tokenizer *tok;              /* NULL: the folder has no tokenizer files */
    flm_template_source tmpl;
    bool have_tmpl;
    flm_gen_config gen;
    flm_pool *pool;
    flm_lora **ad;
    int n_lora;
    flm_conv_watched *watch;         /* the shards, then the adapters' weights */
    size_t n_watch;
    flm_conv_hash_job hj;
    pthread_t hasher;
    bool hashing;
    flm_lora_base_weight *bw;
    char *names;
    char **prov_files, **prov_adapters; /* after flm_conv_source_provenance */
    volatile sig_atomic_t *cancel;
} flm_conv_source;

/* Opens everything, refusing out_path (an input, a folder, ...) before any work,
 * and starts hashing. On error *s is closed. */
int flm_conv_source_open(flm_conv_source *s, const char *hf_dir, const char *out_path, const char *const *lora_dirs,
                         const float *lora_scales, int n_lora, int n_threads, volatile sig_atomic_t *cancel);
/* Waits for the hashes and builds the provenance lines ("sha256  name") and one
 * JSON object per adapter (s->prov_files[s->hj.n], s->prov_adapters[s->n_lora]). */
int flm_conv_source_provenance(flm_conv_source *s);
/* True when some adapter changes the weight of that HF name. */
bool flm_conv_source_lora_targets(const flm_conv_source *s, const char *hf_name);
/* Every watched source file still has its size. */
int flm_conv_source_check(const flm_conv_source *s);

/* Receives rows [row0, row0 + rows) of a weight as float32 (rows x cols, contiguous). */
typedef int (*flm_conv_sink)(void *ctx, const float *x, int64_t row0, int64_t rows, int64_t cols);
/* Reads weight t (HF name hf_name) in chunks of rows; with lora, the whole weight
 * at once with every adapter merged. A 1-D tensor is one row. */
int flm_conv_source_read(flm_conv_source *s, const flm_tensor *t, const char *hf_name, bool lora, flm_conv_sink sink, void *ctx);
void flm_conv_source_close(flm_conv_source *s);

#endif
