/* fuzz_litertlm.c — libFuzzer target: arbitrary bytes as a .litertlm bundle (header,
 * sections, LlmMetadata, the zlib tokenizer, the embedded model), audited by
 * `fieldlm doctor`'s checks (src/dev/doctor.c: metadata tokens, tokenizer, the TFLite
 * graph's weights, signatures and LM head), and as an LlmMetadata protobuf (decoded,
 * then re-encoded over itself). Must never read outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "dev/doctor.h"
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
    flm_doc_report rep;
    if (flm_doctor_check(buf, size, NULL, &rep) == FLM_OK) {
        if (rep.n_error + rep.n_warning + rep.n_info != rep.n) abort();
        flm_sb_init(&sb);
        flm_doc_report_write(&rep, "fuzz", NULL, size & 2, NULL, &sb);
        flm_sb_free(&sb);
        flm_doc_report_free(&rep);
    }
    flm_llm_metadata md;
    if (flm_llm_metadata_decode(buf, size, &md) == 0) {
        if (md.n_stops < 0 || md.n_stops > FLM_LLM_MAX_STOPS) abort();
        if (md.jinja && (md.jinja < (const char *)buf || md.jinja + md.jinja_len > (const char *)buf + size)) abort();
        for (int i = 0; i < md.n_stops; i++)
            if (md.stops[i].str && (md.stops[i].str < (const char *)buf || md.stops[i].str + md.stops[i].str_len > (const char *)buf + size)) abort();
        unsigned char *re = NULL;
        size_t rn = 0;
        if (flm_llm_metadata_encode_over(buf, size, &md, &re, &rn) == FLM_OK) {
            flm_llm_metadata back;
            if (flm_llm_metadata_decode(re, rn, &back) != FLM_OK) abort(); /* what was written reads back */
            if (back.n_stops != md.n_stops || back.has_start != md.has_start || back.max_num_tokens != md.max_num_tokens) abort();
        }
        free(re);
    }
    free(buf);
    return 0;
}
