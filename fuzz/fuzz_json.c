/* fuzz_json.c — libFuzzer target: the JSON reader must accept or reject any bytes
 * without crashing, and what it accepts must re-serialise and re-parse identically. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_doc *d = json_parse((const char *)data, size, "fuzz");
    if (!d) return 0;
    strbuf a, b;
    sb_init(&a);
    sb_init(&b);
    json_write(&a, json_root(d), false);
    json_doc *d2 = json_parse(sb_cstr(&a), a.len, "fuzz-rt");
    if (!d2) abort(); /* our own output must parse */
    json_write(&b, json_root(d2), false);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
    json_free(d2);
    json_free(d);
    sb_free(&a);
    sb_free(&b);
    return 0;
}
