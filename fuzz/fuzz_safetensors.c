/* fuzz_safetensors.c — libFuzzer target: arbitrary bytes as a safetensors file.
 * Whatever is accepted must describe tensors that lie inside the buffer. */
#include <stdint.h>
#include <stdlib.h>

#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    flm_st_file *f;
    if (flm_st_open_memory(data, size, "fuzz", &f) != 0) return 0;
    volatile unsigned sum = 0;
    for (size_t i = 0; i < flm_st_count(f); i++) {
        const flm_tensor *t = flm_st_tensor_at(f, i);
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) abort();
        for (size_t j = 0; j < t->nbytes; j++) sum += p[j]; /* ASan catches any out-of-range byte */
    }
    (void)sum;
    flm_st_close(f);
    return 0;
}
