/* test_outfile.c — the output-file discipline (src/base/outfile.h): what is refused
 * before any work (inputs, links to inputs, devices/FIFOs, folders, missing
 * folders), unique temporary files, commit and abort, and `logits -o`. */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/outfile.h"
#include "base/sha256.h"
#include "test.h"

static char *tmp_path(const char *name) { return flm_path_join(test_tmpdir(), name); }

/* A fresh folder under the test's temporary directory. */
static char *fresh_dir(const char *name) {
    char *d = tmp_path(name);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", d, d);
    if (test_run(cmd, NULL, NULL) != 0) test_fail(__FILE__, __LINE__, "cannot make %s", d);
    return d;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { test_fail(__FILE__, __LINE__, "cannot write %s", path); return; }
    fputs(text, f);
    fclose(f);
}

/* Entries of dir whose name ends in ".tmp". */
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

static bool is_fifo(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISFIFO(st.st_mode);
}

TEST(outfile_check_refuses_inputs_links_devices_and_folders) {
    char *d = fresh_dir("check");
    char *model = flm_path_join(d, "model");
    REQUIRE(mkdir(model, 0755) == 0);
    char *cfg = flm_path_join(model, "config.json"), *wts = flm_path_join(model, "model.safetensors");
    char *tpl_dir = flm_path_join(model, "additional_chat_templates"), *tpl = flm_path_join(tpl_dir, "tool.jinja");
    REQUIRE(mkdir(tpl_dir, 0755) == 0);
    write_text(cfg, "{}");
    write_text(wts, "weights");
    write_text(tpl, "{{ x }}");
    char *sym = flm_path_join(d, "link.gguf"), *hard = flm_path_join(d, "hard.gguf"), *fifo = flm_path_join(d, "fifo");
    REQUIRE(symlink(wts, sym) == 0);
    REQUIRE(link(cfg, hard) == 0);
    const char *in_dir[] = {model}, *in_file[] = {wts};

    /* an input, by its own name, through a symlink, through a hard link, inside a folder input */
    CHECK_EQ_INT(flm_outfile_check(wts, in_file, 1), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "is an input of this command"));
    CHECK_EQ_INT(flm_outfile_check(wts, in_dir, 1), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_outfile_check(sym, in_dir, 1), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "same file as") && strstr(flm_last_error(), "model.safetensors"));
    CHECK_EQ_INT(flm_outfile_check(tpl, in_dir, 1), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_outfile_check(hard, in_dir, 1), FLM_ERR_ARG);
    /* a directory, a FIFO, a device, a missing folder, a path ending in '/' */
    CHECK_EQ_INT(flm_outfile_check(model, NULL, 0), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "is a directory"));
    REQUIRE(mkfifo(fifo, 0644) == 0);
    CHECK_EQ_INT(flm_outfile_check(fifo, NULL, 0), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "not a regular file"));
    CHECK_EQ_INT(flm_outfile_check("/dev/null", NULL, 0), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_outfile_check("/nonexistent-dir/x.gguf", NULL, 0), FLM_ERR_IO);
    CHECK(strstr(flm_last_error(), "/nonexistent-dir does not exist"));
    char slash[1100];
    snprintf(slash, sizeof slash, "%s/", d);
    CHECK_EQ_INT(flm_outfile_check(slash, NULL, 0), FLM_ERR_ARG);
    /* below a regular file */
    char below[1100];
    snprintf(below, sizeof below, "%s/x.gguf", wts);
    CHECK(flm_outfile_check(below, NULL, 0) != FLM_OK);

    /* allowed: a new file, a package beside the model's files, an unrelated file */
    char *fresh = flm_path_join(model, "model-q8_0.gguf"), *other = flm_path_join(d, "other.gguf");
    CHECK_EQ_INT(flm_outfile_check(fresh, in_dir, 1), FLM_OK);
    write_text(fresh, "old package");
    CHECK_EQ_INT(flm_outfile_check(fresh, in_dir, 1), FLM_OK);
    write_text(other, "x");
    CHECK_EQ_INT(flm_outfile_check(other, in_dir, 1), FLM_OK);
    CHECK(is_fifo(fifo));
    free(fresh); free(other); free(sym); free(hard); free(fifo);
    free(cfg); free(wts); free(tpl); free(tpl_dir); free(model); free(d);
}

TEST(outfile_temp_files_are_unique_and_never_left_behind) {
    char *d = fresh_dir("temps");
    char *out = flm_path_join(d, "out.bin");
    flm_outfile a, b;
    REQUIRE(flm_outfile_open(out, &a) == FLM_OK);
    REQUIRE(flm_outfile_open(out, &b) == FLM_OK);
    /* two writers of one output never share a temporary file */
    CHECK(strcmp(a.tmp, b.tmp) != 0);
    CHECK(!strncmp(a.tmp, out, strlen(out)) && strstr(a.tmp + strlen(out), ".tmp"));
    CHECK_EQ_INT(count_tmp(d), 2);
    REQUIRE(flm_outfile_write(&a, "aaaa", 4) == FLM_OK);
    REQUIRE(flm_outfile_write(&b, "bb", 2) == FLM_OK);
    REQUIRE(flm_outfile_commit(&b) == FLM_OK);
    REQUIRE(flm_outfile_commit(&a) == FLM_OK);
    char *text;
    size_t len;
    REQUIRE(flm_read_file(out, &text, &len) == FLM_OK);
    CHECK(len == 4 && !memcmp(text, "aaaa", 4)); /* the last commit, whole */
    free(text);
    struct stat st;
    REQUIRE(stat(out, &st) == 0);
    mode_t mask = umask(022);
    umask(mask);
    CHECK_EQ_INT(st.st_mode & 0777, 0666 & ~mask); /* not mkstemp's 0600 */
    CHECK_EQ_INT(count_tmp(d), 0);
    /* abort removes the temporary file and leaves the target alone */
    REQUIRE(flm_outfile_open(out, &a) == FLM_OK);
    REQUIRE(flm_outfile_write(&a, "zz", 2) == FLM_OK);
    flm_outfile_abort(&a);
    flm_outfile_abort(&a); /* twice is harmless */
    CHECK_EQ_INT(count_tmp(d), 0);
    REQUIRE(flm_read_file(out, &text, &len) == FLM_OK);
    CHECK(len == 4);
    free(text);
    /* the target turned into a folder while writing: the commit fails, nothing left */
    char *later = flm_path_join(d, "later");
    REQUIRE(flm_outfile_open(later, &a) == FLM_OK);
    REQUIRE(mkdir(later, 0755) == 0);
    CHECK_EQ_INT(flm_outfile_commit(&a), FLM_ERR_ARG);
    CHECK_EQ_INT(count_tmp(d), 0);
    /* open refuses what check refuses */
    CHECK(flm_outfile_open(d, &a) != FLM_OK);
    CHECK_EQ_INT(count_tmp(d), 0);
    free(later);
    free(out);
    free(d);
}

TEST(logits_refuses_fifos_folders_and_its_inputs) {
    char *d = fresh_dir("logits");
    char *fifo = flm_path_join(d, "logits.fifo");
    REQUIRE(mkfifo(fifo, 0644) == 0);
    char cmd[2048], *o, *e;
    /* a FIFO (as /dev/full would be): refused before the model is loaded, still a FIFO */
    snprintf(cmd, sizeof cmd, "%s logits -m %s/micro-qwen2 --ids 1,2,3 -o %s", test_bin(), TEST_DATA, fifo);
    CHECK_EQ_INT(test_run(cmd, &o, &e), 1);
    CHECK_MSG(strstr(e, "not a regular file"), "%s", e);
    CHECK(is_fifo(fifo));
    free(o); free(e);
    /* a folder */
    snprintf(cmd, sizeof cmd, "%s logits -m %s/micro-qwen2 --ids 1,2,3 -o %s", test_bin(), TEST_DATA, d);
    CHECK_EQ_INT(test_run(cmd, &o, &e), 1);
    CHECK_MSG(strstr(e, "is a directory"), "%s", e);
    free(o); free(e);
    /* the model's own weights (a copy), through a symlink */
    char *model = flm_path_join(d, "m"), *sym = flm_path_join(d, "out.bin");
    snprintf(cmd, sizeof cmd, "cp -r %s/micro-qwen2 %s", TEST_DATA, model);
    REQUIRE(test_run(cmd, NULL, NULL) == 0);
    char *wts = flm_path_join(model, "model.safetensors");
    char before[65], after[65];
    REQUIRE(flm_sha256_file(wts, before) == FLM_OK);
    REQUIRE(symlink(wts, sym) == 0);
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids 1,2,3 -o %s", test_bin(), model, sym);
    CHECK_EQ_INT(test_run(cmd, &o, &e), 1);
    CHECK_MSG(strstr(e, "an input of this command"), "%s", e);
    REQUIRE(flm_sha256_file(wts, after) == FLM_OK);
    CHECK_STR(before, after);
    free(o); free(e);
    CHECK_EQ_INT(count_tmp(d), 0);
    CHECK_EQ_INT(count_tmp(model), 0);
    /* and a plain new file is written, whole */
    char *ok = flm_path_join(d, "logits.bin");
    snprintf(cmd, sizeof cmd, "%s logits -m %s --ids 1,2,3 -o %s", test_bin(), model, ok);
    CHECK_EQ_INT(test_run(cmd, &o, &e), 0);
    struct stat st;
    CHECK(stat(ok, &st) == 0 && st.st_size > 0 && st.st_size % (3 * 4) == 0);
    CHECK_EQ_INT(count_tmp(d), 0);
    free(o); free(e);
    free(ok); free(wts); free(sym); free(model); free(fifo); free(d);
}
