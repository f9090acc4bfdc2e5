/* test_cli_ux.c — what a user meets at the command line (issue 10, "surprises"):
 * verify's report-only mode, warnings for messages the chat template drops, the
 * hint for an adapter folder given as the model, a JSON/GGUF/folder passed as a
 * reference, bundled defaults found from any directory, exit 130 on Ctrl-C, and
 * the same adapter given twice. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/json.h"
#include "test.h"

#define KCC_LORA TEST_DATA "/kcc-advisor-lora"
#define TINY TEST_DATA "/tiny-qwen2"

/* A fresh folder under the test tmpdir. Malloc'ed. */
static char *fresh_dir(const char *name) {
    char *d = flm_path_join(test_tmpdir(), name);
    if (d) mkdir(d, 0755);
    return d;
}

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* An absolute path of the fieldlm binary under test (tests run from the repo root). */
static const char *abs_bin(void) {
    static char path[PATH_MAX];
    if (!path[0] && !realpath(test_bin(), path)) snprintf(path, sizeof path, "%s", test_bin());
    return path;
}

/* ---- 1. verify: report-only mode ---- */

TEST(cli_verify_report_prints_everything_and_exits_0) {
    char *dir = fresh_dir("verify-report"), cmd[2048], *o, *e;
    char *pkg = flm_path_join(dir, "kcc-lora-q8_0.gguf");
    /* the README's example: a LoRA merged into q8_0 is not exact, its greedy text differs */
    snprintf(cmd, sizeof cmd, "%s convert %s --lora %s -o %s --type q8_0 -t 2", test_bin(), BUNDLED_MODEL, KCC_LORA, pkg);
    int rc = test_run(cmd, &o, &e);
    free(o);
    CHECK_MSG(rc == 0, "convert: %s", e);
    free(e);
    REQUIRE(rc == 0);

    /* --report: the same table, exit 0 whatever the numbers */
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s/reference.safetensors --report", test_bin(), pkg, KCC_LORA);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "verify --report exit %d: %s", rc, e);
    CHECK_MSG(strstr(o, "max|err|") && strstr(o, "mean KL") && strstr(o, "differs at") && strstr(o, "REPORT:"), "%s", o);
    CHECK_MSG(strstr(o, "0 of 4 cases"), "%s", o);
    free(o);
    free(e);

    /* --tol bounds the logit error only: a greedy difference still fails (a model
     * that is not the reference's, to be quick) */
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s --tol 1e9", test_bin(), TINY, KCC_LORA);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 1, "verify --tol 1e9 exit %d: %s", rc, e);
    CHECK_MSG(strstr(o, "differs at") && strstr(o, "FAIL:"), "%s", o);
    free(o);
    free(e);

    /* --report --json on it: still exit 0, "report": true, "pass": false */
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s --report --json", test_bin(), TINY, KCC_LORA);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "verify --report --json exit %d: %s", rc, e);
    flm_json_doc *d = flm_json_parse(o, strlen(o), "verify --json");
    CHECK_MSG(d != NULL, "%s", o);
    if (d) {
        CHECK(flm_json_bool(flm_json_get(flm_json_root(d), "report"), false));
        CHECK(!flm_json_bool(flm_json_get(flm_json_root(d), "pass"), true));
        CHECK_EQ_INT(flm_json_get(flm_json_root(d), "cases")->len, 4);
    }
    flm_json_free(d);
    free(o);
    free(e);

    /* --help says what decides the exit status */
    snprintf(cmd, sizeof cmd, "%s verify --help", test_bin());
    rc = test_run(cmd, &o, NULL);
    CHECK(rc == 0 && strstr(o, "--report") && strstr(o, "Exit status") && strstr(o, "whatever --tol is"));
    free(o);
    free(pkg);
    free(dir);
}

/* ---- 4. verify: a reference that is not a reference dump ---- */

TEST(cli_verify_reference_json_gguf_or_folder_says_what_to_pass) {
    char cmd[2048], *o, *e;
    /* checked before the model is loaded: a missing model is not reached */
    snprintf(cmd, sizeof cmd, "%s verify -m /nonexistent-model --reference %s/reference.json", test_bin(), KCC_LORA);
    int rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "is JSON") && strstr(e, "pass " KCC_LORA "/reference.safetensors"), "%s", e);
    CHECK_MSG(!strstr(e, "header"), "%s", e);
    free(o);
    free(e);

    /* a JSON file without a .safetensors sibling */
    char *js = flm_path_join(test_tmpdir(), "ref-alone.json");
    REQUIRE(write_text(js, "  {\"cases\": []}\n"));
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s", test_bin(), TINY, js);
    rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "is JSON") && strstr(e, "make_reference.py"), "%s", e);
    free(o);
    free(e);
    free(js);

    /* a GGUF package */
    char *pkg = flm_path_join(test_tmpdir(), "ref-is-a-model.gguf");
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s --type f32", test_bin(), TINY, pkg);
    rc = test_run(cmd, &o, &e);
    free(o);
    free(e);
    REQUIRE(rc == 0);
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s", test_bin(), TINY, pkg);
    rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "GGUF package") && strstr(e, "-m MODEL"), "%s", e);
    free(o);
    free(e);
    free(pkg);

    /* a model folder, and an empty folder */
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s", test_bin(), TINY, BUNDLED_MODEL);
    rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "is a model folder"), "%s", e);
    free(o);
    free(e);
    char *empty = fresh_dir("ref-empty");
    snprintf(cmd, sizeof cmd, "%s verify -m %s --reference %s", test_bin(), TINY, empty);
    rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "holds no reference.safetensors"), "%s", e);
    free(o);
    free(e);
    free(empty);
}

/* ---- 2. messages the chat template drops ---- */

TEST(cli_template_warns_about_a_message_it_drops) {
    char *dir = fresh_dir("dropped"), cmd[2048], *o, *e, *o2;
    char *with = flm_path_join(dir, "with-farmer.json"), *without = flm_path_join(dir, "without.json");
    REQUIRE(write_text(with, "[{\"role\": \"system\", \"content\": \"You advise farmers.\"},"
                             " {\"role\": \"farmer\", \"content\": \"My paddy has brown spots.\"},"
                             " {\"role\": \"user\", \"content\": \"What should I spray?\"}]"));
    REQUIRE(write_text(without, "[{\"role\": \"system\", \"content\": \"You advise farmers.\"},"
                                " {\"role\": \"user\", \"content\": \"What should I spray?\"}]"));
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s", test_bin(), BUNDLED_MODEL, with);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, e);
    CHECK_MSG(strstr(e, "warning: message 1 (role \"farmer\") is not in the prompt"), "stderr: %s", e);
    free(e);
    /* the prompt is unchanged: transformers' template drops the message too */
    snprintf(cmd, sizeof cmd, "%s template -m %s --messages %s", test_bin(), BUNDLED_MODEL, without);
    rc = test_run(cmd, &o2, &e);
    CHECK(rc == 0);
    CHECK_STR(o, o2);
    CHECK_MSG(!strstr(e, "warning"), "no warning for known roles: %s", e);
    free(o);
    free(o2);
    free(e);
    free(with);
    free(without);

    /* run: a --system message that the model's template leaves out */
    static const char *const files[] = {"config.json", "generation_config.json", "merges.txt", "model.safetensors",
                                        "tokenizer.json", "tokenizer_config.json", "vocab.json"};
    char *model = fresh_dir("dropped/no-system-template");
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char src[PATH_MAX], *rel = flm_path_join(BUNDLED_MODEL, files[i]), *dst = flm_path_join(model, files[i]);
        REQUIRE(rel && dst && realpath(rel, src));
        CHECK(symlink(src, dst) == 0);
        free(rel);
        free(dst);
    }
    char *jinja = flm_path_join(model, "chat_template.jinja");
    REQUIRE(write_text(jinja, "{%- for m in messages %}{%- if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
                              "{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"));
    snprintf(cmd, sizeof cmd, "%s run -m %s --system 'Answer briefly.' -p hello -n 1 --greedy", test_bin(), model);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, e);
    CHECK_MSG(strstr(e, "warning: the system message is not in the prompt"), "stderr: %s", e);
    free(o);
    free(e);
    /* the bundled template renders it: no warning */
    snprintf(cmd, sizeof cmd, "%s run -m %s --system 'Answer briefly.' -p hello -n 1 --greedy", test_bin(), BUNDLED_MODEL);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0 && !strstr(e, "warning"), "exit %d: %s", rc, e);
    free(o);
    free(e);
    free(jinja);
    free(model);
    free(dir);
}

/* ---- 3. an adapter folder given as the model ---- */

TEST(cli_adapter_folder_as_model_suggests_base_and_lora) {
    char cmd[2048], *o, *e;
    static const char *const with_lora[] = {"run -p hi -n 1", "verify --reference " KCC_LORA, "logits --ids 1,2 -o /tmp/fieldlm-never-written.bin",
                                            "bench -n 1 -p 1 -r 1"};
    for (size_t i = 0; i < sizeof with_lora / sizeof *with_lora; i++) {
        const char *sp = strchr(with_lora[i], ' ');
        snprintf(cmd, sizeof cmd, "%s %.*s -m %s%s", test_bin(), (int)(sp - with_lora[i]), with_lora[i], KCC_LORA, sp);
        int rc = test_run(cmd, &o, &e);
        CHECK_MSG(rc == 1, "%s: exit %d", cmd, rc);
        CHECK_MSG(strstr(e, "is a LoRA adapter folder") && strstr(e, "-m BASE_MODEL --lora " KCC_LORA) &&
                      strstr(e, "names the base: ../kcc-advisor"),
                  "%s: %s", cmd, e);
        CHECK_MSG(!strstr(e, "no config.json"), "%s: %s", cmd, e);
        free(o);
        free(e);
    }
    /* convert takes the model as its argument: the hint says so, and no output appears */
    snprintf(cmd, sizeof cmd, "%s convert %s -o /tmp/fieldlm-never-written.gguf", test_bin(), KCC_LORA);
    int crc = test_run(cmd, &o, &e);
    CHECK_MSG(crc == 1, "%s: exit %d", cmd, crc);
    CHECK_MSG(strstr(e, "is a LoRA adapter folder") && strstr(e, "BASE_MODEL --lora " KCC_LORA) && !strstr(e, "-m BASE"),
              "%s: %s", cmd, e);
    CHECK(access("/tmp/fieldlm-never-written.gguf", F_OK) != 0);
    free(o);
    free(e);
    /* commands without --lora point at the base model only */
    static const char *const no_lora[] = {"tokenize", "detokenize --ids 1", "template --messages /dev/null"};
    for (size_t i = 0; i < sizeof no_lora / sizeof *no_lora; i++) {
        snprintf(cmd, sizeof cmd, "%s %s -m %s < /dev/null", test_bin(), no_lora[i], KCC_LORA);
        int rc = test_run(cmd, &o, &e);
        CHECK_MSG(rc == 1, "%s: exit %d", cmd, rc);
        CHECK_MSG(strstr(e, "is a LoRA adapter folder") && strstr(e, "give its base model") &&
                      strstr(e, "../kcc-advisor"), "%s: %s", cmd, e);
        free(o);
        free(e);
    }
}

/* ---- 5. bundled defaults found from another directory ---- */

TEST(cli_bundled_defaults_found_from_another_directory) {
    char *dir = fresh_dir("elsewhere"), cmd[16384], *o, *e;
    /* synth's default --tokenizer */
    snprintf(cmd, sizeof cmd, "cd %s && %s synth --preset tiny -o synth-out", dir, abs_bin());
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "synth from %s: exit %d: %s", dir, rc, e);
    free(o);
    free(e);
    char *tok = flm_path_join(dir, "synth-out/tokenizer.json");
    CHECK(flm_file_exists(tok));
    free(tok);

    /* examples/simple: built into DIR/bin with DIR/models -> the bundled models, run from
     * a third folder. The library archive sits beside the fieldlm binary. */
    char repo[PATH_MAX], lib[PATH_MAX];
    REQUIRE(getcwd(repo, sizeof repo));
    snprintf(lib, sizeof lib, "%s", abs_bin());
    char *slash = strrchr(lib, '/');
    REQUIRE(slash);
    snprintf(slash, sizeof lib - (size_t)(slash - lib), "/libfieldlm.a");
    REQUIRE(flm_file_exists(lib));
    char *bin = fresh_dir("elsewhere/bin"), *models = flm_path_join(dir, "models"), *src = flm_path_join(repo, "models");
    CHECK(symlink(src, models) == 0);
    /* a sanitizer build's archive needs the sanitizer runtimes at link time */
    snprintf(cmd, sizeof cmd,
             "L=\"%s $(pkg-config --libs libutf8proc libpcre2-8 2>/dev/null || echo -lutf8proc -lpcre2-8) -lm -pthread\"; "
             "cc -std=c11 -Iinclude -o %s/simple examples/simple.c $L 2>/dev/null || "
             "cc -std=c11 -Iinclude -fsanitize=address,undefined -o %s/simple examples/simple.c $L",
             lib, bin, bin);
    rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 0, "building examples/simple: %s", e);
    free(o);
    free(e);
    if (rc == 0) {
        snprintf(cmd, sizeof cmd, "cd %s/synth-out && %s/simple", dir, bin);
        rc = test_run(cmd, &o, &e);
        CHECK_MSG(rc == 0, "simple from elsewhere: exit %d: %s", rc, e);
        CHECK_MSG(strstr(e, "generated at"), "%s", e);
        free(o);
        free(e);
    }
    free(bin);
    free(models);
    free(src);
    free(dir);
}

/* ---- 6. Ctrl-C during run ---- */

TEST(cli_run_ctrl_c_exits_130_and_says_stopped) {
    char *dir = fresh_dir("sigint"), cmd[2048], *o, *e;
    char *out = flm_path_join(dir, "answer.txt");
    /* SIGINT once the answer streams (not during the load); the random tiny model
     * practically never samples an eos, so without the signal it would run to -c */
    snprintf(cmd, sizeof cmd,
             "%s run -m %s --raw -p hello -n 100000 -c 8192 > %s & pid=$!; "
             "i=0; while [ ! -s %s ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; "
             "kill -INT $pid; wait $pid",
             test_bin(), TINY, out, out);
    int rc = test_run(cmd, &o, &e);
    CHECK_MSG(rc == 130, "run exit %d: %s", rc, e);
    CHECK_MSG(strstr(e, "stop: cancelled") && strstr(e, "stopped"), "stderr: %s", e);
    char *text = NULL;
    size_t len = 0;
    CHECK(flm_read_file(out, &text, &len) == FLM_OK && len > 0); /* the partial answer stays */
    free(text);
    free(o);
    free(e);
    free(out);
    free(dir);
}

/* ---- 7. the same adapter twice ---- */

TEST(cli_same_adapter_twice_is_refused) {
    char cmd[2048], *o, *e;
    char *link = flm_path_join(test_tmpdir(), "lora-link"), src[PATH_MAX];
    REQUIRE(realpath(KCC_LORA, src));
    CHECK(symlink(src, link) == 0);
    /* the same path twice: refused, suggesting the doubled scale */
    snprintf(cmd, sizeof cmd, "%s run -m %s --lora %s --lora %s -p hi -n 1", test_bin(), BUNDLED_MODEL, KCC_LORA, KCC_LORA);
    int rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "given twice") && strstr(e, "--lora " KCC_LORA ":2"), "%s", e);
    free(o);
    free(e);
    /* another path to the same folder (a symlink), with scales: the sum is suggested */
    char *pkg = flm_path_join(test_tmpdir(), "twice.gguf");
    snprintf(cmd, sizeof cmd, "%s convert %s --lora %s:0.5 --lora %s:0.25 -o %s", test_bin(), BUNDLED_MODEL, KCC_LORA, link, pkg);
    rc = test_run(cmd, &o, &e);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e, "are the same adapter") && strstr(e, ":0.75"), "%s", e);
    CHECK(!flm_file_exists(pkg));
    free(o);
    free(e);
    free(pkg);
    free(link);
}
