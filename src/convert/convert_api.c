/* convert_api.c — the public flm_convert of include/fieldlm.h over the streaming
 * converters (convert.h: GGUF; litert.h: .tflite / .litertlm): the output format
 * chosen, public types mapped onto the internal ones, nothing else. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fieldlm.h"
#include "base/common.h"
#include "base/tensor.h"
#include "convert/convert.h"
#include "convert/litert.h"

/* The public cancel flag is a volatile int; the converter reads a sig_atomic_t. */
_Static_assert(_Generic((sig_atomic_t)0, int: 1, default: 0), "sig_atomic_t must be int");

static const struct { flm_type pub; flm_dtype dt; const char *name; } TYPES[] = {
    {FLM_TYPE_F32, FLM_F32, "f32"},   {FLM_TYPE_F16, FLM_F16, "f16"},     {FLM_TYPE_BF16, FLM_BF16, "bf16"},
    {FLM_TYPE_Q8_0, FLM_Q8_0, "q8_0"}, {FLM_TYPE_Q4_0, FLM_Q4_0, "q4_0"},
};
#define N_TYPES (sizeof TYPES / sizeof *TYPES)

const char *flm_type_name(flm_type t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].pub == t) return TYPES[i].name;
    return NULL;
}

int flm_type_from_name(const char *name, flm_type *out) {
    if (!name || !out) return flm_fail(FLM_ERR_ARG, "flm_type_from_name: NULL argument");
    for (size_t i = 0; i < N_TYPES; i++)
        if (!strcmp(name, TYPES[i].name)) { *out = TYPES[i].pub; return FLM_OK; }
    return flm_fail(FLM_ERR_ARG, "unknown type '%s' (f32, f16, bf16, q8_0 or q4_0)", name);
}

void flm_convert_options_init(flm_convert_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->type = FLM_TYPE_Q8_0;
}

static int convert_litert(const char *in, const char *out, flm_format fmt, const flm_convert_options *o, const char **dirs,
                          const float *scales, flm_convert_stats *stats) {
    flm_litert_options lo;
    memset(&lo, 0, sizeof lo);
    lo.format = fmt == FLM_FORMAT_LITERTLM ? FLM_LITERT_LITERTLM : FLM_LITERT_TFLITE;
    lo.recipe = FLM_LITERT_DYNAMIC_INT8;
    if (o->recipe && !flm_litert_parse_recipe(o->recipe, &lo.recipe))
        return flm_fail(FLM_ERR_ARG, "unknown LiteRT recipe '%s' (f32 or none, fp16, dynamic_int8, weight_only_int8)", o->recipe);
    if (o->ctx < 0) return flm_fail(FLM_ERR_ARG, "flm_convert: ctx %d is negative", o->ctx);
    if (o->n_prefill < 0 || o->n_prefill > FLM_LITERT_MAX_PREFILL || (o->n_prefill && !o->prefill))
        return flm_fail(FLM_ERR_ARG, "flm_convert: at most %d prefill lengths", FLM_LITERT_MAX_PREFILL);
    for (int i = 0; i < o->n_prefill; i++) {
        if (o->prefill[i] < 1) return flm_fail(FLM_ERR_ARG, "flm_convert: prefill length %d is not positive", o->prefill[i]);
        lo.prefill[i] = o->prefill[i];
    }
    lo.n_prefill = o->n_prefill;
    lo.ctx = o->ctx;
    lo.lora_dirs = dirs;
    lo.lora_scales = scales;
    lo.n_lora = o->n_lora;
    lo.n_threads = o->n_threads;
    lo.cancel = (volatile sig_atomic_t *)o->cancel;
    lo.progress = o->progress;
    lo.progress_ctx = o->user;
    lo.warn = o->warn;
    lo.warn_ctx = o->user;
    flm_litert_stats st;
    memset(&st, 0, sizeof st);
    int rc = flm_convert_litert(in, out, &lo, &st);
    if (!rc && stats) {
        stats->n_tensors = st.n_weights;
        stats->bytes_written = st.bytes_written;
        stats->seconds = st.seconds;
        stats->peak_rss = st.peak_rss;
        stats->no_tokenizer = st.no_tokenizer;
        stats->format = fmt;
        stats->ctx = st.ctx;
        stats->n_signatures = st.n_signatures;
    }
    return rc;
}

int flm_convert(const char *in, const char *out, const flm_convert_options *opt, flm_convert_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!in || !out) return flm_fail(FLM_ERR_ARG, "flm_convert: %s is NULL", in ? "out" : "in");
    flm_convert_options o;
    if (opt) o = *opt;
    else flm_convert_options_init(&o);
    size_t t = 0;
    while (t < N_TYPES && TYPES[t].pub != o.type) t++;
    if (t == N_TYPES) return flm_fail(FLM_ERR_ARG, "flm_convert: type %d is not a flm_type", (int)o.type);
    if (o.n_lora < 0 || (o.n_lora > 0 && !o.lora)) return flm_fail(FLM_ERR_ARG, "flm_convert: bad LoRA list");
    const char **dirs = NULL;
    float *scales = NULL;
    if (o.n_lora) {
        dirs = flm_calloc((size_t)o.n_lora, sizeof *dirs);
        scales = flm_calloc((size_t)o.n_lora, sizeof *scales);
        if (!dirs || !scales) { free(dirs); free(scales); return FLM_ERR_NOMEM; }
        for (int i = 0; i < o.n_lora; i++) {
            if (!o.lora[i].path) { free(dirs); free(scales); return flm_fail(FLM_ERR_ARG, "flm_convert: adapter %d has no path", i); }
            dirs[i] = o.lora[i].path;
            scales[i] = o.lora[i].scale;
        }
    }
    flm_format fmt = o.format;
    if (fmt == FLM_FORMAT_AUTO) {
        size_t n = strlen(out);
        fmt = n >= 7 && !strcmp(out + n - 7, ".tflite")     ? FLM_FORMAT_TFLITE
              : n >= 9 && !strcmp(out + n - 9, ".litertlm") ? FLM_FORMAT_LITERTLM
                                                              : FLM_FORMAT_GGUF;
    }
    if (fmt != FLM_FORMAT_GGUF && fmt != FLM_FORMAT_TFLITE && fmt != FLM_FORMAT_LITERTLM) {
        free(dirs);
        free(scales);
        return flm_fail(FLM_ERR_ARG, "flm_convert: format %d is not a flm_format", (int)o.format);
    }
    if (fmt != FLM_FORMAT_GGUF) {
        int rc = convert_litert(in, out, fmt, &o, dirs, scales, stats);
        free(dirs);
        free(scales);
        return rc;
    }
    if (o.recipe || o.ctx || o.prefill || o.n_prefill) {
        free(dirs);
        free(scales);
        return flm_fail(FLM_ERR_ARG, "recipe, ctx and prefill are for .tflite/.litertlm outputs (a GGUF's context is chosen when running)");
    }
    flm_convert_hf_options io = {
        .type = TYPES[t].dt,
        .lora_dirs = dirs,
        .lora_scales = scales,
        .n_lora = o.n_lora,
        .n_threads = o.n_threads,
        .cancel = (volatile sig_atomic_t *)o.cancel,
        .progress = o.progress,
        .progress_ctx = o.user,
    };
    flm_convert_hf_stats st;
    memset(&st, 0, sizeof st);
    int rc = flm_convert_hf(in, out, &io, &st);
    free(dirs);
    free(scales);
    if (!rc && stats) {
        stats->n_tensors = st.n_tensors;
        stats->n_fallback = st.n_fallback;
        stats->bytes_written = st.bytes_written;
        stats->seconds = st.seconds;
        stats->peak_rss = st.peak_rss;
        stats->no_tokenizer = st.no_tokenizer;
        stats->format = FLM_FORMAT_GGUF;
    }
    return rc;
}
