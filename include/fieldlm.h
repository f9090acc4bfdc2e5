/* fieldlm.h — the only public header of the fieldlm library.
 *
 * fieldlm runs Qwen2 / Qwen2.5 models on the CPU, from a Hugging Face folder or a
 * single-file package (GGUF), with every step verified against transformers.
 * Every exported name starts with flm_ / FLM_. Functions return an flm_status
 * (0 = success, negative = error); the library never exits or prints. */
#ifndef FIELDLM_H
#define FIELDLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLM_VERSION "0.1.0"

typedef enum {
    FLM_OK = 0,
    FLM_ERR_IO = -1,          /* a file could not be opened, read or written */
    FLM_ERR_FORMAT = -2,      /* a file is malformed (bad JSON, bad header, wrong shape) */
    FLM_ERR_UNSUPPORTED = -3, /* valid input this version does not handle */
    FLM_ERR_NOMEM = -4,       /* an allocation failed */
    FLM_ERR_ARG = -5,         /* an argument is out of range or inconsistent */
    FLM_ERR_CONTEXT = -6,     /* the context window is full / prompt too long */
    FLM_ERR_CANCELLED = -7,   /* the operation was cancelled by the caller */
} flm_status;

/* A short constant description of a status code. */
const char *flm_status_str(int status);

#ifdef __cplusplus
}
#endif
#endif
