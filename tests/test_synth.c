/* test_synth.c — the safetensors writer and `fieldlm synth`, which never replaces a
 * real model by accident (issue 10). */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "model/model.h"
#include "format/safetensors.h"
#include "base/sha256.h"
#include "test.h"
#include "package/source.h"

/* Entries of dir whose name ends in ".tmp" (the writers' temporary files). */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 4 && !strcmp(e->d_name + len - 4, ".tmp");
    }
    if (d) closedir(d);
    return n;
}

TEST(safetensors_writer_round_trip_and_abort) {
    char *path = flm_path_join(test_tmpdir(), "w.safetensors");
    flm_st_writer *w;
    REQUIRE(flm_st_writer_open(path, &w) == FLM_OK);
    int64_t s1[2] = {2, 3}, s2[1] = {5};
    REQUIRE(flm_st_writer_declare(w, "a", FLM_F32, 2, s1) == FLM_OK);
    REQUIRE(flm_st_writer_declare(w, "b", FLM_BF16, 1, s2) == FLM_OK);
    REQUIRE(flm_st_writer_begin_data(w) == FLM_OK);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[5] = {1, 2, 3, 4, 5};
    REQUIRE(flm_st_writer_write(w, a, sizeof a) == FLM_OK);
    REQUIRE(flm_st_writer_write(w, b, sizeof b) == FLM_OK);
    REQUIRE(flm_st_writer_finish(w) == FLM_OK);
    flm_st_file *f;
    REQUIRE(flm_st_open(path, &f) == FLM_OK);
    const flm_tensor *t = flm_st_find(f, "a");
    REQUIRE(t && t->dtype == FLM_F32 && t->shape[1] == 3);
    CHECK(memcmp(t->data, a, sizeof a) == 0);
    t = flm_st_find(f, "b");
    REQUIRE(t && t->dtype == FLM_BF16);
    CHECK(memcmp(t->data, b, sizeof b) == 0);
    CHECK(((uintptr_t)flm_st_find(f, "a")->data & 7) == 0);
    flm_st_close(f);
    /* short data is an error and leaves nothing behind */
    char *p2 = flm_path_join(test_tmpdir(), "short.safetensors");
    REQUIRE(flm_st_writer_open(p2, &w) == FLM_OK);
    REQUIRE(flm_st_writer_declare(w, "a", FLM_F32, 2, s1) == FLM_OK);
    REQUIRE(flm_st_writer_begin_data(w) == FLM_OK);
    REQUIRE(flm_st_writer_write(w, a, 8) == FLM_OK);
    CHECK(flm_st_writer_finish(w) == FLM_ERR_ARG);
    CHECK(!flm_file_exists(p2));
    CHECK_EQ_INT(count_tmp(test_tmpdir()), 0);
    /* abort removes the temporary file */
    REQUIRE(flm_st_writer_open(p2, &w) == FLM_OK);
    CHECK_EQ_INT(count_tmp(test_tmpdir()), 1);
    flm_st_writer_abort(w);
    CHECK(count_tmp(test_tmpdir()) == 0 && !flm_file_exists(p2));
    /* a directory or a FIFO is refused before anything is written */
    CHECK(flm_st_writer_open(test_tmpdir(), &w) == FLM_ERR_ARG);
    char *fifo = flm_path_join(test_tmpdir(), "st.fifo");
    REQUIRE(mkfifo(fifo, 0644) == 0);
    CHECK(flm_st_writer_open(fifo, &w) == FLM_ERR_ARG);
    CHECK_EQ_INT(count_tmp(test_tmpdir()), 0);
    unlink(fifo);
    free(fifo);
    /* unwritable location */
    CHECK(flm_st_writer_open("/nonexistent-dir/x.safetensors", &w) == FLM_ERR_IO);
    free(path);
    free(p2);
}

TEST(synth_tiny_folder_loads_and_runs) {
    char cmd[1024], *out, *err;
    char *dir = flm_path_join(test_tmpdir(), "synth-tiny");
    snprintf(cmd, sizeof cmd, "%s synth --preset tiny -o %s --seed 7", test_bin(), dir);
    REQUIRE(test_run(cmd, &out, &err) == 0);
    free(out); free(err);
    flm_model *m;
    REQUIRE(flm_load_model(dir, NULL, &m) == FLM_OK);
    CHECK_EQ_INT(m->cfg.hidden_size, 32);
    CHECK_EQ_INT(m->cfg.vocab_size, 151936);
    CHECK_EQ_INT(m->embed.dtype, FLM_BF16);
    flm_model_close(m);
    snprintf(cmd, sizeof cmd, "%s synth --preset nope -o %s", test_bin(), dir);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 2);
    CHECK(strstr(err, "unknown preset") != NULL);
    free(out); free(err);
    free(dir);
}

TEST(synth_refuses_a_folder_that_holds_a_model) {
    /* synth -o on a real model folder would replace its weights with random ones */
    char *m = flm_path_join(test_tmpdir(), "synth-real-model"), *wts = flm_path_join(m, "model.safetensors");
    char cmd[2048], *out, *err, before[65], after[65];
    snprintf(cmd, sizeof cmd, "cp -r %s/micro-qwen2 %s", TEST_DATA, m);
    REQUIRE(test_run(cmd, NULL, NULL) == 0);
    REQUIRE(flm_sha256_file(wts, before) == FLM_OK);
    snprintf(cmd, sizeof cmd, "%s synth --preset tiny -o %s", test_bin(), m);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK_MSG(strstr(err, "already holds model files") && strstr(err, "--force"), "%s", err);
    REQUIRE(flm_sha256_file(wts, after) == FLM_OK);
    CHECK_STR(before, after);
    char *tj = flm_path_join(m, "tokenizer.json");
    CHECK_MSG(!flm_file_exists(tj), "synth wrote into the model folder it refused");
    free(tj);
    CHECK_EQ_INT(count_tmp(m), 0);
    free(out); free(err);
    /* --help says so */
    snprintf(cmd, sizeof cmd, "%s synth --help", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(strstr(out, "--force") && strstr(out, "refused"));
    free(out); free(err);
    /* with --force it is replaced, and the result is a model */
    snprintf(cmd, sizeof cmd, "%s synth --preset tiny -o %s --force", test_bin(), m);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    flm_model *mod;
    CHECK(flm_load_model(m, NULL, &mod) == FLM_OK && mod->cfg.hidden_size == 32);
    if (mod) flm_model_close(mod);
    free(out); free(err);
    /* even with --force, never over the tokenizer files it copies from */
    char *tok = flm_path_join(m, "tokenizer.json");
    REQUIRE(flm_sha256_file(tok, before) == FLM_OK);
    snprintf(cmd, sizeof cmd, "%s synth --preset tiny -o %s --tokenizer %s --force", test_bin(), m, m);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK_MSG(strstr(err, "an input of this command"), "%s", err);
    REQUIRE(flm_sha256_file(tok, after) == FLM_OK);
    CHECK_STR(before, after);
    free(out); free(err);
    /* an -o that is a file, not a folder */
    snprintf(cmd, sizeof cmd, "%s synth --preset tiny -o %s", test_bin(), wts);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK_MSG(strstr(err, "not a folder"), "%s", err);
    free(out); free(err);
    free(tok); free(wts); free(m);
}

TEST(synth_failure_removes_what_it_created) {
    /* The file size limit stops the weights part-way (fieldlm ignores SIGXFSZ, so this
     * is a message): the folder synth created is gone, tokenizer copies included. */
    char *tok = flm_path_join(test_tmpdir(), "synth-small-tok"), *dir = flm_path_join(test_tmpdir(), "synth-limited");
    REQUIRE(mkdir(tok, 0755) == 0);
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *p = flm_path_join(tok, files[i]);
        FILE *f = fopen(p, "w");
        REQUIRE(f);
        fputs("{}\n", f);
        fclose(f);
        free(p);
    }
    char cmd[2048], *out, *err;
    snprintf(cmd, sizeof cmd, "sh -c 'ulimit -f 2000; exec %s synth --preset tiny -o %s --tokenizer %s'", test_bin(), dir, tok);
    int rc = test_run(cmd, &out, &err);
    CHECK_MSG(rc == 1, "exit %d: %s", rc, err);
    CHECK_MSG(strstr(err, "file size limit reached"), "%s", err);
    CHECK_MSG(!flm_file_exists(dir) && !flm_is_dir(dir), "%s was left behind", dir);
    CHECK_EQ_INT(count_tmp(test_tmpdir()), 0);
    free(out); free(err);
    /* into an existing empty folder: the folder stays, empty */
    REQUIRE(mkdir(dir, 0755) == 0);
    rc = test_run(cmd, &out, &err);
    CHECK_EQ_INT(rc, 1);
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK_EQ_INT(entries, 0);
    free(out); free(err);
    free(dir); free(tok);
}
