/* model_source.h — the open files behind a model (internal to model_*.c). */
#ifndef FLM_MODEL_SOURCE_H
#define FLM_MODEL_SOURCE_H

#include "model/model.h"
#include "format/safetensors.h"

struct flm_gguf_file;

typedef struct flm_model_source {
    flm_st_file **shards;          /* Hugging Face safetensors shards */
    size_t n_shards;
    struct flm_gguf_file *gguf;    /* or a GGUF package */
} flm_model_source;

/* Owned buffer attached to the model (freed with it). */
void *flm_model_own(flm_model *m, size_t bytes);
/* Replaces t's data with an owned f32 copy (no-op for f32). */
int flm_tensor_to_f32_owned(flm_model *m, flm_tensor *t);
int flm_check_shape(const char *file, const flm_tensor *t, const char *name, const int64_t *shape, int ndim);

/* Every weight of m by its Hugging Face name and shape (for LoRA base checks).
 * Caller frees the array and *names_block. */
#include "model/lora.h"
flm_lora_base_weight *flm_model_base_weights(const flm_model *m, size_t *n, char **names_block);

/* True when p lies in one of the model's mapped source files (not an owned copy). */
bool flm_model_is_mapped(const flm_model *m, const void *p);

/* Refuses a layer count the tensor table cannot hold (a qwen2 layer is 12 tensors),
 * before anything proportional to it is allocated. `key` names the setting. */
int flm_check_layer_count(const flm_config *c, size_t n_tensors, const char *file, const char *key);

/* model_gguf.c: binds an opened package (the model takes a reference to g). */
int flm_model_bind_gguf(flm_model *m, struct flm_gguf_file *g);
void flm_model_source_close_gguf(flm_model_source *src);

#endif
