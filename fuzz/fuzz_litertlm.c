/* fuzz_litertlm.c — libFuzzer target: arbitrary bytes as a .litertlm bundle (header,
 * sections, LlmMetadata, the zlib tokenizer, the embedded model) and as an
 * LlmMetadata protobuf. Must never read outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "format/litertlm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    strbuf sb;
    flm_sb_init(&sb);
    (void)flm_litertlm_describe(buf, size, size & 1, &sb);
    flm_sb_free(&sb);
    flm_llm_metadata md;
    if (flm_llm_metadata_decode(buf, size, &md) == 0) {
        if (md.n_stops < 0 || md.n_stops > FLM_LLM_MAX_STOPS) abort();
        if (md.jinja && (md.jinja < (const char *)buf || md.jinja + md.jinja_len > (const char *)buf + size)) abort();
    }
    free(buf);
    return 0;
}
