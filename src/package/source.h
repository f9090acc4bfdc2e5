/* source.h — a model path, opened once: the one place in the library that decides
 * whether a path is a Hugging Face folder or a .gguf package.
 *
 * flm_source_open maps and parses a package once (flm_gguf_open); each asset is then
 * built from that one parse by the layer that owns it, from neutral input:
 *   the model       flm_model_open_gguf (model/) under flm_package_config's hyper-parameters
 *   the tokenizer   flm_tokenizer_from_spec (text/) from the package's tokenizer keys
 *   the template    flm_template_source_add (text/) per tokenizer.chat_template[.NAME]
 *   generation      flm_gen_config_parse (model/) from the fieldlm.generation.* keys
 * A folder's files are read by the same layers' Hugging Face loaders
 * (flm_model_open_dir, flm_tokenizer_load_dir, flm_template_source_load_dir,
 * flm_gen_config_load_hf). text/ and model/ never see the folder-or-package choice.
 *
 * Code that needs several assets of one path opens a flm_source (runtime's
 * flm_assets_open does); flm_load_* open, load one asset and close. */
#ifndef FLM_SOURCE_H
#define FLM_SOURCE_H

#include <stdbool.h>

#include "format/gguf.h"
#include "model/gen_config.h"
#include "model/model.h"
#include "text/template.h"
#include "text/tokenizer.h"

typedef struct flm_source {
    char *path;           /* as given */
    flm_gguf_file *gguf;  /* the package, parsed once; NULL for a Hugging Face folder */
} flm_source;

/* A folder becomes a folder source (its files are read by each loader); an existing
 * file is opened and validated as a GGUF package (flm_gguf_open's errors); a path with
 * nothing there is FLM_ERR_IO, a NULL path FLM_ERR_ARG. */
int flm_source_open(const char *path, flm_source *out);
void flm_source_close(flm_source *src);

/* The assets of an opened source. A model from a package holds its own reference to
 * the parse, so the source may be closed before the model. A package takes no LoRA
 * adapters (opt->n_lora: FLM_ERR_ARG; they are merged by `fieldlm convert --lora`). */
int flm_source_model(const flm_source *src, const flm_model_options *opt, flm_model **out);
int flm_source_tokenizer(const flm_source *src, flm_tokenizer **out);
int flm_source_template(const flm_source *src, flm_template_source *out);
/* A folder without generation_config.json, or a package without fieldlm.generation.*
 * keys, gives transformers' defaults (stop ids still come from the package). */
int flm_source_gen_config(const flm_source *src, flm_gen_config *out);

/* True if path names an existing GGUF file (reads its magic; does not parse it). */
bool flm_is_package_path(const char *path);

/* One asset of any model path: open, load, close (one parse of a package each).
 * flm_load_tokenizer also takes a tokenizer.json file, flm_load_gen_config a
 * generation_config.json file (a missing one gives the defaults, as a folder
 * without it does). */
int flm_load_model(const char *path, const flm_model_options *opt, flm_model **out);
int flm_load_tokenizer(const char *path, flm_tokenizer **out);
int flm_load_template(const char *path, flm_template_source *out);
int flm_load_gen_config(const char *path, flm_gen_config *out);

#endif
