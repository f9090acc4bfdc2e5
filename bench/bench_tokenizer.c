/* bench_tokenizer.c — tokenizer load time and single-thread encode throughput on the
 * KCC CSV files (whole file and line by line), plus decode throughput.
 * Build and run: sh bench/tokenizer.sh  (or see the command in that script). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "text/tokenizer.h"
#include "package/source.h"

#define LOAD_RUNS 5
#define ENCODE_RUNS 3

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "models/kcc-advisor";
    double best_load = 1e9;
    flm_tokenizer *tok = NULL;
    for (int r = 0; r < LOAD_RUNS; r++) {
        flm_tokenizer_free(tok);
        double t0 = flm_now_seconds();
        if (flm_load_tokenizer(model, &tok)) { fprintf(stderr, "load: %s\n", flm_last_error()); return 1; }
        double dt = flm_now_seconds() - t0;
        if (dt < best_load) best_load = dt;
    }
    printf("load %s: %.0f ms (best of %d), vocab %zu\n", model, best_load * 1e3, LOAD_RUNS, flm_tokenizer_vocab_size(tok));
    const char *files[] = {"data/agri-kcc/KCC_PUN_01_2025.csv", "data/agri-kcc/KCC_TELANGANA_01_2025.raw_kcc.csv"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char *data;
        size_t len;
        if (flm_read_file(files[f], &data, &len)) { fprintf(stderr, "%s\n", flm_last_error()); return 1; }
        double best_whole = 1e9, best_lines = 1e9, best_dec = 1e9;
        size_t n_tokens = 0;
        for (int r = 0; r < ENCODE_RUNS; r++) {
            int32_t *ids;
            size_t n;
            double t0 = flm_now_seconds();
            if (flm_tokenizer_encode(tok, data, len, &ids, &n)) { fprintf(stderr, "%s\n", flm_last_error()); return 1; }
            double dt = flm_now_seconds() - t0;
            if (dt < best_whole) best_whole = dt;
            n_tokens = n;
            strbuf sb;
            flm_sb_init(&sb);
            t0 = flm_now_seconds();
            flm_tokenizer_decode(tok, ids, n, &sb);
            dt = flm_now_seconds() - t0;
            if (dt < best_dec) best_dec = dt;
            flm_sb_free(&sb);
            free(ids);
            /* line by line: a fresh call (and word cache) per line */
            t0 = flm_now_seconds();
            for (char *p = data; p < data + len;) {
                char *nl = memchr(p, '\n', (size_t)(data + len - p));
                size_t k = nl ? (size_t)(nl - p) + 1 : (size_t)(data + len - p);
                if (flm_tokenizer_encode(tok, p, k, &ids, &n)) { fprintf(stderr, "%s\n", flm_last_error()); return 1; }
                free(ids);
                p += k;
            }
            dt = flm_now_seconds() - t0;
            if (dt < best_lines) best_lines = dt;
        }
        double mb = (double)len / 1e6;
        printf("%s: %.2f MB, %zu tokens (%.2f bytes/token)\n", files[f], mb, n_tokens, (double)len / (double)n_tokens);
        printf("  encode whole file  %7.1f MB/s\n", mb / best_whole);
        printf("  encode per line    %7.1f MB/s\n", mb / best_lines);
        printf("  decode             %7.1f MB/s\n", mb / best_dec);
        free(data);
    }
    flm_tokenizer_free(tok);
    return 0;
}
