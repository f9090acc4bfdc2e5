/* convert_api.c — the public flm_convert of include/fieldlm.h over the streaming
 * converter (convert.h): public types mapped onto the internal ones, nothing else. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fieldlm.h"
#include "base/common.h"
#include "base/tensor.h"
#include "convert/convert.h"

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
    }
    return rc;
}
