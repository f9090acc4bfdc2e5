/* fuzz_config.c — libFuzzer target: arbitrary bytes as config.json and as
 * generation_config.json. Accepted configs must be internally consistent. */
#include <stdint.h>
#include <stdlib.h>

#include "model/gen_config.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    flm_config c;
    if (flm_config_parse((const char *)data, size, "fuzz", &c) == 0) {
        if (c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads || c.head_dim <= 0 || c.head_dim % 2 ||
            c.hidden_size <= 0 || c.vocab_size <= 0 || c.n_layers <= 0 || !(c.rope_theta > 0))
            abort();
    }
    flm_gen_config g;
    if (flm_gen_config_parse((const char *)data, size, "fuzz", &g) == 0) {
        if (g.n_eos < 0 || g.n_eos > FLM_GEN_MAX_EOS) abort();
    }
    return 0;
}
