/* cmd_logits.c — `fieldlm logits`: prefill token ids, write raw float32 logits
 * (through the output-file discipline of src/base/outfile.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_dev.h"
#include "base/common.h"
#include "runtime/forward.h"
#include "model/model.h"
#include "base/outfile.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm logits -m MODEL --ids 1,2,3 -o FILE [--lora DIR[:SCALE]]... [--litert-int8]\n\n"
            "Prefills the token ids and writes the logits of every position to FILE as\n"
            "float32 little-endian, shape [n_ids, vocab], row-major, nothing else.\n\n"
            "  -m, --model MODEL     Hugging Face folder or .gguf package\n"
            "      --ids LIST        comma-separated token ids\n"
            "  -o, --output FILE     output file (written atomically: FILE.XXXXXX.tmp, then renamed)\n"
            "      --lora DIR[:S]    merge a PEFT LoRA adapter at load (HF folders), scale S (default 1)\n"
            "      --litert-int8     compute as LiteRT's dynamic_int8 recipe does (int8 weights per output\n"
            "                        channel, inputs of every product quantized per row to asymmetric int8),\n"
            "                        emulated (docs/LITERT.md); default: fieldlm's own numerics\n"
            "      --mmap, --no-mmap run the weights from the file mapping / load them into memory\n"
            "                        (default: load when they take at most half of the free memory)\n"
            "  -h, --help            this help\n\n"
            "Refused before the model is loaded: an output that is one of the inputs (the model's\n"
            "files, an adapter's files; links resolved), a directory, anything that exists and is\n"
            "not a regular file (a device such as /dev/full, a FIFO, a socket), or a folder that\n"
            "is missing or not writable.\n");
}

static int cmd_logits(int argc, char **argv) {
    cli_model_args ma = {0};
    const char *ids_s = NULL, *outp = NULL;
    bool litert_int8 = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_arg(&ma, argc, argv, &i, "logits");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--ids")) { if (!(ids_s = cli_value(argc, argv, &i, "logits"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--litert-int8")) litert_int8 = true;
        else if (cli_is(argv[i], "-o", "--output")) { if (!(outp = cli_value(argc, argv, &i, "logits"))) return EXIT_USAGE; }
        else { fprintf(stderr, "fieldlm logits: unknown option '%s'\n", argv[i]); help(stderr); return EXIT_USAGE; }
    }
    if (!ids_s || !outp) { fprintf(stderr, "fieldlm logits: --ids and -o are required\n"); help(stderr); return EXIT_USAGE; }
    int *ids;
    int n = cli_parse_ids(ids_s, &ids, "logits");
    if (n < 0) return EXIT_USAGE;
    /* the output, before any work: never one of the inputs, a directory or a device */
    cli_lora_list lora;
    if (!cli_lora_parse(&ma, &lora, "logits")) { free(ids); return EXIT_FAIL; }
    const char *inputs[1 + CLI_MAX_LORA] = {ma.model};
    for (int i = 0; i < lora.n; i++) inputs[1 + i] = lora.dirs[i];
    int bad = flm_outfile_check(outp, inputs, 1 + (size_t)lora.n);
    cli_lora_free(&lora);
    if (bad) { free(ids); return cli_error("logits"); }
    signal(SIGXFSZ, SIG_IGN); /* past the file size limit: an EFBIG error, not a silent kill */
    flm_model *m = cli_open_model(&ma, "logits");
    if (!m) { free(ids); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    size_t V = (size_t)m->cfg.vocab_size;
    float *logits = malloc((size_t)n * V * sizeof(float));
    flm_forward_state *st = NULL;
    flm_litert_int8 *li8 = NULL;
    if (!logits) { fprintf(stderr, "fieldlm logits: out of memory\n"); goto done; }
    int ctx = n > m->cfg.max_position_embeddings ? m->cfg.max_position_embeddings : n;
    if (flm_forward_new(m, ctx, &st) || (litert_int8 && (flm_litert_int8_new(m, 0, &li8) || flm_forward_set_litert_int8(st, li8))) ||
        flm_forward(st, (const int32_t *)ids, n, logits, FLM_LOGITS_ALL)) { cli_error("logits"); goto done; }
    flm_outfile of;
    if (flm_outfile_open(outp, &of)) { cli_error("logits"); goto done; }
    if (flm_outfile_write(&of, logits, (size_t)n * V * sizeof(float))) {
        flm_outfile_abort(&of);
        cli_error("logits");
        goto done;
    }
    if (flm_outfile_commit(&of)) { cli_error("logits"); goto done; }
    rc = EXIT_OK;
done:
    flm_forward_free(st);
    flm_litert_int8_free(li8);
    free(logits);
    free(ids);
    flm_model_close(m);
    return rc;
}
CLI_COMMAND(logits, "logits", "prefill token ids and write float32 logits", 60, cmd_logits)
