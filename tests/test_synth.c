/* test_synth.c — the safetensors writer and `fieldlm synth`. */
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"

TEST(safetensors_writer_round_trip_and_abort) {
    char *path = flm_path_join(test_tmpdir(), "w.safetensors");
    st_writer *w;
    REQUIRE(st_writer_new(path, &w) == FLM_OK);
    int64_t s1[2] = {2, 3}, s2[1] = {5};
    REQUIRE(st_writer_declare(w, "a", FLM_F32, 2, s1) == FLM_OK);
    REQUIRE(st_writer_declare(w, "b", FLM_BF16, 1, s2) == FLM_OK);
    REQUIRE(st_writer_begin_data(w) == FLM_OK);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[5] = {1, 2, 3, 4, 5};
    REQUIRE(st_writer_write(w, a, sizeof a) == FLM_OK);
    REQUIRE(st_writer_write(w, b, sizeof b) == FLM_OK);
    REQUIRE(st_writer_finish(w) == FLM_OK);
    st_file *f;
    REQUIRE(st_open(path, &f) == FLM_OK);
    const flm_tensor *t = st_find(f, "a");
    REQUIRE(t && t->dtype == FLM_F32 && t->shape[1] == 3);
    CHECK(memcmp(t->data, a, sizeof a) == 0);
    t = st_find(f, "b");
    REQUIRE(t && t->dtype == FLM_BF16);
    CHECK(memcmp(t->data, b, sizeof b) == 0);
    CHECK(((uintptr_t)st_find(f, "a")->data & 7) == 0);
    st_close(f);
    /* short data is an error and leaves nothing behind */
    char *p2 = flm_path_join(test_tmpdir(), "short.safetensors");
    REQUIRE(st_writer_new(p2, &w) == FLM_OK);
    REQUIRE(st_writer_declare(w, "a", FLM_F32, 2, s1) == FLM_OK);
    REQUIRE(st_writer_begin_data(w) == FLM_OK);
    REQUIRE(st_writer_write(w, a, 8) == FLM_OK);
    CHECK(st_writer_finish(w) == FLM_ERR_ARG);
    CHECK(!flm_file_exists(p2));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p2);
    CHECK(!flm_file_exists(tmp));
    /* abort removes the temporary file */
    REQUIRE(st_writer_new(p2, &w) == FLM_OK);
    st_writer_abort(w);
    CHECK(!flm_file_exists(tmp) && !flm_file_exists(p2));
    /* unwritable location */
    CHECK(st_writer_new("/nonexistent-dir/x.safetensors", &w) == FLM_ERR_IO);
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
    REQUIRE(flm_model_open(dir, NULL, &m) == FLM_OK);
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
