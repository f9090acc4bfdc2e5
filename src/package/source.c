/* source.c — opening a model path once (source.h): a Hugging Face folder goes to the
 * text/ and model/ folder loaders, a .gguf package is parsed once and read through
 * package.c into the neutral inputs those layers parse. */
#include "package/source.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "package/package.h"

bool flm_is_package_path(const char *path) { return flm_file_exists(path) && flm_gguf_is_gguf_file(path); }

int flm_source_open(const char *path, flm_source *out) {
    memset(out, 0, sizeof *out);
    if (!path) return flm_fail(FLM_ERR_ARG, "no model path given");
    bool dir = flm_is_dir(path);
    if (!dir && !flm_file_exists(path)) return flm_fail(FLM_ERR_IO, "%s: no such file or folder", path);
    if (!(out->path = flm_strdup(path))) return FLM_ERR_NOMEM;
    int rc = dir ? FLM_OK : flm_gguf_open(path, &out->gguf);
    if (rc) flm_source_close(out);
    return rc;
}

void flm_source_close(flm_source *src) {
    flm_gguf_close(src->gguf);
    free(src->path);
    memset(src, 0, sizeof *src);
}

int flm_source_model(const flm_source *src, const flm_model_options *opt, flm_model **out) {
    *out = NULL;
    if (!src->gguf) return flm_model_open_dir(src->path, opt, out);
    if (opt && opt->n_lora)
        return flm_fail(FLM_ERR_ARG, "%s: --lora applies to Hugging Face folders; merge adapters into a package with `fieldlm convert --lora`", src->path);
    flm_config cfg;
    int rc = flm_package_config(src->gguf, &cfg);
    if (rc) return rc;
    return flm_model_open_gguf(src->gguf, &cfg, opt ? opt->weights : FLM_WEIGHTS_AUTO, out);
}

int flm_source_tokenizer(const flm_source *src, flm_tokenizer **out) {
    return src->gguf ? flm_package_tokenizer(src->gguf, out) : flm_tokenizer_load_dir(src->path, out);
}

int flm_source_template(const flm_source *src, flm_template_source *out) {
    return src->gguf ? flm_package_template(src->gguf, out) : flm_template_source_load_dir(src->path, out);
}

int flm_source_gen_config(const flm_source *src, flm_gen_config *out) {
    if (src->gguf) {
        flm_gen_config_defaults(out);
        return flm_package_gen_config(src->gguf, out);
    }
    return flm_gen_config_load_hf(src->path, out);
}

/* ---- one asset of a path ---- */

int flm_load_model(const char *path, const flm_model_options *opt, flm_model **out) {
    *out = NULL;
    flm_source src;
    int rc = flm_source_open(path, &src);
    if (rc) return rc;
    rc = flm_source_model(&src, opt, out);
    flm_source_close(&src);
    return rc;
}

int flm_load_tokenizer(const char *path, flm_tokenizer **out) {
    *out = NULL;
    if (!path) return flm_fail(FLM_ERR_ARG, "no tokenizer path given");
    if (flm_is_dir(path)) return flm_tokenizer_load_dir(path, out);
    if (!flm_file_exists(path)) return flm_fail(FLM_ERR_IO, "%s: no such file or folder", path);
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return flm_tokenizer_load_file(path, out);
    if (!flm_is_package_path(path)) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: not a model folder or tokenizer.json", path);
    flm_source src;
    int rc = flm_source_open(path, &src);
    if (!rc) rc = flm_source_tokenizer(&src, out);
    flm_source_close(&src);
    return rc;
}

int flm_load_template(const char *path, flm_template_source *out) {
    memset(out, 0, sizeof *out);
    if (flm_is_dir(path)) return flm_template_source_load_dir(path, out);
    if (!flm_file_exists(path)) return flm_fail(FLM_ERR_IO, "%s: no such file or directory", path);
    if (!flm_is_package_path(path)) return flm_fail(FLM_ERR_UNSUPPORTED, "%s: not a Hugging Face model folder or a .gguf package", path);
    flm_source src;
    int rc = flm_source_open(path, &src);
    if (!rc) rc = flm_source_template(&src, out);
    flm_source_close(&src);
    return rc;
}

int flm_load_gen_config(const char *path, flm_gen_config *out) {
    flm_gen_config_defaults(out);
    if (!path) return flm_fail(FLM_ERR_ARG, "generation config: no path");
    if (!flm_is_package_path(path)) return flm_gen_config_load_hf(path, out);
    flm_source src;
    int rc = flm_source_open(path, &src);
    if (!rc) rc = flm_source_gen_config(&src, out);
    flm_source_close(&src);
    return rc;
}
