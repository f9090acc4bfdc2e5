/* model_gguf.c — binds a GGUF package's tensors (llama.cpp names) to the model. */
#include "common.h"
#include "model_source.h"

int flm_model_bind_gguf(flm_model *m, const char *path) {
    (void)m;
    return flm_fail(FLM_ERR_UNSUPPORTED, "%s: GGUF loading is not wired yet", path);
}
void model_source_close_gguf(model_source *src) { (void)src; }
