/* cmd_logits.c — `fieldlm logits`: prefill token ids, write raw float32 logits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "forward.h"
#include "model.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm logits -m MODEL --ids 1,2,3 -o FILE [--lora DIR[:SCALE]]...\n\n"
            "Prefills the token ids and writes the logits of every position to FILE as\n"
            "float32 little-endian, shape [n_ids, vocab], row-major, nothing else.\n\n"
            "  -m, --model MODEL     Hugging Face folder or .gguf package\n"
            "      --ids LIST        comma-separated token ids\n"
            "  -o, --output FILE     output file (written atomically: FILE.tmp then rename)\n"
            "      --lora DIR[:S]    merge a PEFT LoRA adapter at load (HF folders), scale S (default 1)\n"
            "      --mmap, --no-mmap run the weights from the file mapping / load them into memory\n"
            "                        (default: load when they take at most half of the free memory)\n"
            "  -h, --help            this help\n");
}

static int cmd_logits(int argc, char **argv) {
    cli_model_args ma = {0};
    const char *ids_s = NULL, *outp = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_arg(&ma, argc, argv, &i, "logits");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--ids")) { if (!(ids_s = cli_value(argc, argv, &i, "logits"))) return EXIT_USAGE; }
        else if (cli_is(argv[i], "-o", "--output")) { if (!(outp = cli_value(argc, argv, &i, "logits"))) return EXIT_USAGE; }
        else { fprintf(stderr, "fieldlm logits: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!ids_s || !outp) { fprintf(stderr, "fieldlm logits: --ids and -o are required\n"); help(stderr); return EXIT_USAGE; }
    int *ids;
    int n = cli_parse_ids(ids_s, &ids, "logits");
    if (n < 0) return EXIT_USAGE;
    flm_model *m = cli_open_model(&ma, "logits");
    if (!m) { free(ids); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    size_t V = (size_t)m->cfg.vocab_size;
    float *logits = malloc((size_t)n * V * sizeof(float));
    flm_forward_state *st = NULL;
    if (!logits) { fprintf(stderr, "fieldlm logits: out of memory\n"); goto done; }
    int ctx = n > m->cfg.max_position_embeddings ? m->cfg.max_position_embeddings : n;
    if (flm_forward_new(m, ctx, &st) || flm_forward(st, (const int32_t *)ids, n, logits, FLM_LOGITS_ALL)) { cli_error("logits"); goto done; }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", outp);
    FILE *f = fopen(tmp, "wb");
    if (!f) { fprintf(stderr, "fieldlm logits: %s: %s\n", tmp, strerror(errno)); goto done; }
    bool ok = fwrite(logits, sizeof(float), (size_t)n * V, f) == (size_t)n * V;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, outp) != 0) {
        fprintf(stderr, "fieldlm logits: writing %s failed: %s\n", outp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = EXIT_OK;
done:
    flm_forward_free(st);
    free(logits);
    free(ids);
    flm_model_close(m);
    return rc;
}
CLI_COMMAND(logits, "logits", "prefill token ids and write float32 logits", 60, cmd_logits)
