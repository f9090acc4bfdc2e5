/* convert.h — the streaming converter: Hugging Face checkpoint (+ PEFT LoRA
 * adapters) → one GGUF package. One source tensor is read (pread), merged,
 * converted/quantized in row chunks and written at a time, so peak memory is
 * bounded by a tensor's working set, never the model. Output follows
 * src/base/outfile.h: refused before any work when it is an input, a directory or not
 * a regular file; written to a temporary file of its own; nothing left behind on
 * any error or cancel. A source file that changes size during the conversion is
 * an error naming it. */
#ifndef FLM_CONVERT_H
#define FLM_CONVERT_H

#include <signal.h>
#include <stdint.h>
#include "base/tensor.h"

typedef struct {
    flm_dtype type;               /* weight matrices: f32, f16, bf16, q8_0 or q4_0 */
    const char *const *lora_dirs; /* PEFT adapters merged in order */
    const float *lora_scales;     /* extra user scale per adapter (NULL: 1.0) */
    int n_lora;
    int n_threads;                /* <= 0: physical cores */
    volatile sig_atomic_t *cancel;/* checked between chunks; non-zero aborts (FLM_ERR_CANCELLED) */
    /* Called before each tensor (may be NULL). */
    void (*progress)(void *ctx, int index, int total, const char *name, uint64_t bytes_done, uint64_t bytes_total);
    void *progress_ctx;
} flm_convert_hf_options;

typedef struct {
    int n_tensors;
    int n_fallback;               /* quantized requests kept as f16 (rows not a multiple of 32) */
    uint64_t bytes_written;       /* size of the output file */
    double seconds;
    size_t peak_rss;
    bool no_tokenizer;            /* the folder had no tokenizer files: none in the package */
} flm_convert_hf_stats;

/* Errors: FLM_ERR_ARG for a refused output (the message says why), FLM_ERR_IO for
 * unreadable or changed sources and write failures (EFBIG: the caller should
 * ignore SIGXFSZ, as the CLI does), FLM_ERR_CANCELLED when *cancel was set. */
int flm_convert_hf(const char *hf_dir, const char *out_path, const flm_convert_hf_options *opt, flm_convert_hf_stats *stats);

#endif
