/* lora.h — PEFT LoRA adapters: loading and validating an adapter folder
 * (adapter_config.json + adapter_model.safetensors) and the exact merge
 *     W' = W + scale · (B · A)          computed in float32,
 * one base weight at a time. See docs/LORA.md for the formulas, the matching
 * rules (with their sources in peft) and what is refused.
 *
 * Names: the caller speaks Hugging Face base weight names
 * ("model.layers.3.self_attn.q_proj.weight"); the adapter's tensors
 * ("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight") are mapped
 * to them here.
 *
 * Ownership and threads: an flm_lora is immutable after flm_lora_open. Every
 * function taking a `const flm_lora *` may be called from several threads at once
 * on the same handle (flm_lora_apply allocates its own scratch; each thread must
 * pass its own W). flm_lora_close must not race with any other call on the handle.
 * Errors are returned as a negative flm_status with a message for this thread in
 * flm_last_error(). */
#ifndef FLM_LORA_H
#define FLM_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/safetensors.h"
#include "base/tensor.h"
#include "base/threadpool.h"
#include "kernels/kernels.h"

typedef struct flm_lora flm_lora;

/* Opens and validates the adapter folder `dir`. `user_scale` multiplies every
 * module's scale (1.0 = as trained). Refuses (FLM_ERR_UNSUPPORTED, message naming
 * the option) configurations that cannot be merged exactly; refuses a pickled
 * adapter_model.bin. On success *out is owned by the caller (flm_lora_close);
 * the safetensors file stays mapped until then. Thread-safe (no shared state). */
int flm_lora_open(const char *dir, float user_scale, flm_lora **out);
/* Frees the handle (NULL is fine). Not concurrently with other calls on it. */
void flm_lora_close(flm_lora *lora);

/* Refuses (FLM_ERR_ARG) a list of opened adapters in which one adapter appears
 * twice, even through different paths (same device and inode of
 * adapter_model.safetensors): it would be merged twice. The message suggests
 * giving it once with the summed scale. NULL entries are skipped. Every caller
 * that collects adapters (convert, model load) checks with it before merging. */
int flm_lora_check_distinct(flm_lora *const *ad, int n);

/* For hints: true when `dir` is a folder holding adapter_config.json. When
 * base_model is not NULL it receives the config's base_model_name_or_path
 * (malloc'ed) or NULL when absent or unreadable. Leaves no error message. */
bool flm_lora_is_adapter_dir(const char *dir, char **base_model);

/* Splits an `ADAPTER_DIR[:SCALE]` argument. Only a trailing `:NUMBER` is a scale,
 * NUMBER being a plain decimal ([+-]digits[.digits][(e|E)[+-]digits], finite);
 * anything else after the last ':' is part of the directory ("C:\\x", "a:b/c").
 * Without a scale *scale_out = 1. *dir_out is malloc'ed (caller frees). A
 * directory whose own name ends in ":NUMBER" must be written with a scale
 * ("odd:2:1"). Errors: empty directory. Thread-safe. */
int flm_lora_parse_spec(const char *spec, char **dir_out, float *scale_out);

/* One base weight, as the loader knows it: HF name and shape (outermost first). */
typedef struct {
    const char *name;               /* borrowed, e.g. "model.layers.0.mlp.up_proj.weight" */
    int ndim;
    int64_t shape[FLM_MAX_DIMS];
} flm_lora_base_weight;

/* Checks the adapter against the base model's weight list before any work:
 * every adapter module must exist in the base as a 2-D weight whose shape is
 * [B rows, A cols] ([A cols, B rows] with fan_in_fan_out), and every 2-D base
 * "*.weight" that the config's target_modules selects must have adapter weights
 * (otherwise the adapter was made for a different model). The first problem is
 * returned as FLM_ERR_FORMAT, naming the module and expected vs actual. `base` is
 * borrowed for the call. Thread-safe. */
int flm_lora_check_base(const flm_lora *lora, const flm_lora_base_weight *base, size_t n);
/* Same, for a base held in one safetensors file. */
int flm_lora_check_base_st(const flm_lora *lora, const flm_st_file *base);

/* True when the adapter changes this base weight. Thread-safe. */
bool flm_lora_targets(const flm_lora *lora, const char *base_weight_name);

/* Adds scale·B·A (transposed with fan_in_fan_out) to W [rows, cols], row-major
 * float32, in place. A weight the adapter does not target is left untouched
 * (returns FLM_OK). A shape that does not match the adapter is FLM_ERR_FORMAT
 * naming the module and both shapes; W is then unchanged. Memory: A and B of this
 * module as float32 plus one row of the delta. W is borrowed for the call; the
 * handle may be shared between threads, W may not. To merge several adapters call
 * this for each, in order, on the same float32 W. */
int flm_lora_apply(const flm_lora *lora, const char *base_weight_name, float *W, int64_t rows, int64_t cols);
/* The same with the merge row of kernel table k (flm_kernels.lora_row). flm_lora_apply
 * passes flm_lora_kernels(); every table gives the same bits (kernels.h), so only the
 * speed depends on k. FLM_ERR_ARG if k is NULL or has no lora_row. */
int flm_lora_apply_with(const flm_lora *lora, const flm_kernels *k, const char *base_weight_name, float *W, int64_t rows,
                        int64_t cols);
/* flm_lora_apply with the rows split over `pool` (NULL: this thread alone); the same
 * bits for any pool size. The pool is used by this call until it returns. */
int flm_lora_apply_pool(const flm_lora *lora, const char *base_weight_name, float *W, int64_t rows, int64_t cols, flm_pool *pool);
/* The kernel table flm_lora_apply merges with: the dispatcher's choice
 * (flm_kernels_best(): the best this CPU runs, or the one FLM_KERNELS names). */
const flm_kernels *flm_lora_kernels(void);

/* ---- information for provenance (all borrowed, valid until flm_lora_close) ---- */
const char *flm_lora_dir(const flm_lora *lora);
/* base_model_name_or_path from the config, or NULL. */
const char *flm_lora_base_model(const flm_lora *lora);
/* peft_version from the config, or NULL. */
const char *flm_lora_peft_version(const flm_lora *lora);
int flm_lora_rank(const flm_lora *lora);           /* config `r` */
double flm_lora_alpha(const flm_lora *lora);       /* config `lora_alpha` */
bool flm_lora_rslora(const flm_lora *lora);        /* config `use_rslora` */
bool flm_lora_fan_in_fan_out(const flm_lora *lora);
float flm_lora_user_scale(const flm_lora *lora);
/* user_scale · lora_alpha / r (or / sqrt(r) with rsLoRA), rounded to float32:
 * the scale of a module that no rank_pattern / alpha_pattern entry overrides. */
float flm_lora_scale(const flm_lora *lora);
/* The scale used for this base weight (patterns applied), or 0 if not targeted. */
float flm_lora_module_scale(const flm_lora *lora, const char *base_weight_name);
/* The rank of this base weight's adapter, or 0 if not targeted. */
int flm_lora_module_rank(const flm_lora *lora, const char *base_weight_name);
/* target_modules: a list of names (count ≥ 0) or one regex (is_regex, count 1). */
bool flm_lora_target_is_regex(const flm_lora *lora);
size_t flm_lora_target_count(const flm_lora *lora);
const char *flm_lora_target_at(const flm_lora *lora, size_t i);
/* The base weights the adapter changes, sorted by name. */
size_t flm_lora_module_count(const flm_lora *lora);
const char *flm_lora_module_at(const flm_lora *lora, size_t i);

#endif
