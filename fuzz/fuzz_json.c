/* fuzz_json.c — libFuzzer target: the JSON reader must accept or reject any bytes
 * without crashing, and what it accepts must re-serialise and re-parse identically. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    flm_json_doc *d = flm_json_parse((const char *)data, size, "fuzz");
    if (!d) return 0;
    strbuf a, b;
    flm_sb_init(&a);
    flm_sb_init(&b);
    flm_json_write(&a, flm_json_root(d), false);
    flm_json_doc *d2 = flm_json_parse(flm_sb_cstr(&a), a.len, "fuzz-rt");
    if (!d2) abort(); /* our own output must parse */
    flm_json_write(&b, flm_json_root(d2), false);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
    flm_json_free(d2);
    flm_json_free(d);
    flm_sb_free(&a);
    flm_sb_free(&b);
    return 0;
}
