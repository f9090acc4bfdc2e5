/* fuzz_tflite.c — libFuzzer target: arbitrary bytes as a .tflite model through the
 * reader behind `fieldlm inspect` (every offset, index and signature checked), and as
 * a FlatBuffer through the generic reader. Must never read outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "format/flatbuf.h"
#include "format/tflite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a copy of exactly `size` bytes, so ASan sees any read past the end */
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    for (int json = 0; json < 2; json++) {
        strbuf sb;
        flm_sb_init(&sb);
        (void)flm_tflite_describe(buf, size, json, &sb);
        flm_sb_free(&sb);
    }
    flm_fb_reader r = {buf, size, false};
    flm_fb_table t = flm_fb_root(&r, NULL);
    for (int slot = 0; slot < 10; slot++) {
        uint32_t n;
        (void)flm_fb_get_string(&r, t, slot, &n);
        flm_fb_vec v = flm_fb_get_vector(&r, t, slot, 4);
        for (uint32_t i = 0; i < v.n && i < 64; i++) (void)flm_fb_get_u64(&r, flm_fb_vec_table(&r, v, i), 1, 0);
        (void)flm_fb_get_indirect(&r, t, slot, 8);
    }
    free(buf);
    return 0;
}
