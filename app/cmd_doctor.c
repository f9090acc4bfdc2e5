/* cmd_doctor.c — `fieldlm doctor`: audits a LiteRT-LM package against what LiteRT-LM
 * will do with it (and the model's Hugging Face folder), and rewrites its metadata
 * with --fix (src/dev/doctor.h, docs/DOCTOR.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_dev.h"
#include "base/common.h"
#include "base/outfile.h"
#include "dev/doctor.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm doctor FILE.litertlm [--hf HF_DIR] [--json]\n"
            "       fieldlm doctor FILE.litertlm --fix [--hf HF_DIR] -o OUT.litertlm [--json]\n\n"
            "Audits a LiteRT-LM package (written by AI Edge Torch, LiteRT-LM's builder or fieldlm) for\n"
            "what makes LiteRT-LM's text differ from the original model. Each finding has a code,\n"
            "a severity (error, warning, info), what LiteRT-LM will do because of it, and the fix:\n"
            "  stop_tokens      missing/incomplete stop tokens (<|im_end|>), stops that are not one token\n"
            "  prompt_template  no jinja_prompt_template, or one that renders differently from the model's\n"
            "  sampler          no sampler_params (greedy), values unlike generation_config.json\n"
            "  model_type       no llm_model_type (a <|im_start|> vocabulary is taken for FastVlm) or a wrong one\n"
            "  start_token      a start token for a model without BOS, or the string \"None\"\n"
            "  context          max_num_tokens unlike the graph's KV cache, or small for chat\n"
            "  tokenizer        no HF tokenizer (SentencePiece for a byte-level BPE), or unlike tokenizer.json\n"
            "  quantization     the TFLite weights' types and bytes (int4 per-channel: warning)\n"
            "  lm_head          an untied lm_head.weight in the model, the embedding as LM head in the graph\n\n"
            "  --hf HF_DIR       compare with the model's Hugging Face folder: config.json,\n"
            "                    generation_config.json, tokenizer.json, the chat template (rendered\n"
            "                    for a few standard conversations with both templates) and whether the\n"
            "                    checkpoint has its own lm_head.weight. Without it, only what the file\n"
            "                    itself shows is judged.\n"
            "  --json            print {\"file\", \"hf\", \"errors\", \"warnings\", \"infos\", \"cache_length\",\n"
            "                    \"logits_vocab\", \"findings\":[{\"code\",\"severity\",\"message\",\"fix\"}]}\n"
            "  --fix             write OUT with the same section bytes (the model copied unchanged) and a\n"
            "                    corrected LlmMetadata: stop tokens = the model's eos ids with <|im_end|>,\n"
            "                    no start token for a model without BOS, max_num_tokens = the graph's KV\n"
            "                    cache; with --hf also the sampler from generation_config.json, the model's\n"
            "                    chat template, llm_model_type (qwen2p5 for qwen2) and its tokenizer.json\n"
            "                    (SentencePiece sections dropped). Other metadata fields are kept. Then OUT\n"
            "                    is audited; the report shows the input's findings and OUT's.\n"
            "  -o, --output OUT  the output of --fix (written atomically: OUT.XXXXXX.tmp, then renamed;\n"
            "                    never the input or a file of HF_DIR)\n"
            "  -h, --help        this help\n\n"
            "Exit status: 0 no error finding (with --fix: in OUT), 1 an error finding, 2 unreadable\n"
            "input, a usage error or a failed --fix. docs/DOCTOR.md explains every check.\n");
}

static int cmd_doctor(int argc, char **argv) {
    const char *file = NULL, *hf_dir = NULL, *outp = NULL;
    bool json = false, fix = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--hf")) { if (!(hf_dir = cli_value(argc, argv, &i, "doctor"))) return EXIT_USAGE; }
        else if (cli_is(argv[i], "-o", "--output")) { if (!(outp = cli_value(argc, argv, &i, "doctor"))) return EXIT_USAGE; }
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--fix")) fix = true;
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "fieldlm doctor: unknown option '%s' (see --help)\n", argv[i]); return EXIT_USAGE; }
        else if (!file) file = argv[i];
        else { fprintf(stderr, "fieldlm doctor: one FILE only ('%s' is extra)\n", argv[i]); return EXIT_USAGE; }
    }
    if (!file) { fprintf(stderr, "fieldlm doctor: FILE.litertlm is required\n"); help(stderr); return EXIT_USAGE; }
    if (fix && !outp) { fprintf(stderr, "fieldlm doctor: --fix needs -o OUT.litertlm\n"); return EXIT_USAGE; }
    if (outp && !fix) { fprintf(stderr, "fieldlm doctor: -o is only for --fix\n"); return EXIT_USAGE; }
    if (fix) { /* the output, before any work: never the input, a file of HF_DIR, a folder or a device */
        const char *inputs[2] = {file, hf_dir};
        if (flm_outfile_check(outp, inputs, 2)) { fprintf(stderr, "fieldlm doctor: %s\n", flm_last_error()); return EXIT_USAGE; }
    }
    flm_doc_truth *hf = NULL;
    if (hf_dir && flm_doc_truth_load(hf_dir, &hf)) {
        fprintf(stderr, "fieldlm doctor: %s\n", flm_last_error());
        return EXIT_USAGE;
    }
    flm_doc_report rep, out_rep;
    memset(&out_rep, 0, sizeof out_rep);
    int rc = EXIT_USAGE;
    strbuf sb, changes, extra;
    flm_sb_init(&sb);
    flm_sb_init(&changes);
    flm_sb_init(&extra);
    if (flm_doctor_check_file(file, hf, &rep)) {
        fprintf(stderr, "fieldlm doctor: %s\n", flm_last_error());
        flm_doc_truth_free(hf);
        return EXIT_USAGE;
    }
    if (fix) {
        signal(SIGXFSZ, SIG_IGN);
        if (flm_doctor_fix(file, outp, hf, &changes) || flm_doctor_check_file(outp, hf, &out_rep)) {
            fprintf(stderr, "fieldlm doctor: --fix: %s\n", flm_last_error());
            goto done;
        }
        if (json) {
            flm_doc_report_write(&out_rep, outp, hf_dir, true, NULL, &extra);
            flm_sb_cstr(&extra);
        }
    }
    flm_doc_report_write(&rep, file, hf_dir, json, fix && json ? flm_sb_cstr(&extra) : NULL, &sb);
    if (fix && !json) {
        flm_sb_printf(&sb, "\n--fix wrote %s:\n", outp);
        const char *c = flm_sb_cstr(&changes);
        while (*c) {
            const char *e = strchr(c, '\n');
            size_t n = e ? (size_t)(e - c) : strlen(c);
            flm_sb_puts(&sb, "  ");
            flm_sb_append(&sb, c, n);
            flm_sb_putc(&sb, '\n');
            c += n + (e ? 1 : 0);
        }
        flm_sb_putc(&sb, '\n');
        flm_doc_report_write(&out_rep, outp, hf_dir, false, NULL, &sb);
    }
    if (sb.oom) { fprintf(stderr, "fieldlm doctor: out of memory\n"); goto done; }
    fwrite(sb.data, 1, sb.len, stdout);
    if (json) putchar('\n');
    rc = (fix ? out_rep.n_error : rep.n_error) ? EXIT_FAIL : EXIT_OK;
done:
    flm_sb_free(&sb);
    flm_sb_free(&changes);
    flm_sb_free(&extra);
    flm_doc_report_free(&rep);
    flm_doc_report_free(&out_rep);
    flm_doc_truth_free(hf);
    return rc;
}
CLI_COMMAND(doctor, "doctor", "audit a LiteRT-LM package (.litertlm) against the model; --fix its metadata", 75, cmd_doctor)
