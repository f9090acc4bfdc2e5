/* package.h — what a fieldlm package (a GGUF v3 file) carries besides weights, and
 * how each asset is read back. Keys (docs/PACKAGE.md):
 *   general.*, qwen2.*            llama.cpp's standard architecture keys
 *   tokenizer.ggml.*              vocabulary, token types, merges, special ids (llama.cpp)
 *   tokenizer.chat_template[.NAME]
 *   fieldlm.tokenizer.*           normalizer / pre_tokenizer / decoder JSON, added tokens
 *   fieldlm.generation.*          generation_config.json fields present in the source
 *   fieldlm.eos_token_ids         every stop id
 *   fieldlm.chat_template_vars    special-token variables transformers passes to templates
 *   fieldlm.source.*, fieldlm.lora.adapters, fieldlm.converter   provenance
 * Files made by llama.cpp's converter lack the fieldlm.* keys: the tokenizer then
 * uses the preset named by tokenizer.ggml.pre, generation uses transformers' defaults.
 *
 * Opening a model path (folder or package) is source.h's. */
#ifndef FLM_PACKAGE_H
#define FLM_PACKAGE_H

#include "model/gen_config.h"
#include "format/gguf.h"
#include "model/model.h"
#include "text/template.h"
#include "text/tokenizer.h"

typedef struct {
    const char *const *source_files;  /* "sha256  name" lines */
    size_t n_source_files;
    const char *const *adapters;      /* one JSON object per LoRA adapter */
    size_t n_adapters;
    const char *source_dtype;         /* the checkpoint's dtype */
    const char *file_type;            /* f32, f16, bf16, q8_0, q4_0 */
} flm_package_provenance;

/* Writes every metadata key of a package (all but the tensors). tok and tmpl may be
 * NULL for checkpoints without them (test models that run on token ids only). */
int flm_package_write_metadata(flm_gguf_writer *w, const flm_config *cfg, const flm_tokenizer *tok,
                               const flm_template_source *tmpl, const flm_gen_config *gen,
                               const flm_package_provenance *prov);

/* Reading back. Each turns the keys into the neutral input of the layer that owns the
 * asset: the hyper-parameters (flm_model_open_gguf then binds the tensors), a
 * flm_tokenizer_spec (flm_tokenizer_from_spec), named template sources
 * (flm_template_source_add), generation_config.json fields (flm_gen_config_parse). */
int flm_package_config(const flm_gguf_file *g, flm_config *cfg);
int flm_package_tokenizer(const flm_gguf_file *g, flm_tokenizer **out);
int flm_package_template(const flm_gguf_file *g, flm_template_source *out);
int flm_package_gen_config(const flm_gguf_file *g, flm_gen_config *out);
/* True when the file carries fieldlm's generation defaults. */
bool flm_package_has_generation(const flm_gguf_file *g);

#endif
