/* test_gguf.c — the GGUF reader and writer: round trips, a file written by
 * llama.cpp's gguf package, hostile input, and writer failures. */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/common.h"
#include "format/gguf.h"
#include "kernels/quant.h"
#include "format/safetensors.h"

#define PEER_GGUF TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf"

static char *tmp_path(const char *name) { return flm_path_join(test_tmpdir(), name); }

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The writer's temporary file is PATH.XXXXXX.tmp (src/base/outfile.h): any such file beside path. */
static bool tmp_exists(const char *path) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char dir[512];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        size_t n = strlen(e->d_name), k = strlen(base);
        found = n > k + 4 && !strncmp(e->d_name, base, k) && e->d_name[k] == '.' && !strcmp(e->d_name + n - 4, ".tmp");
    }
    if (d) closedir(d);
    return found;
}

/* ------------------------------------------------------------------ round trip */

typedef struct {
    const char *name;
    flm_dtype dtype;
    int ndim;
    int64_t shape[4];
} tspec;

static const tspec ROUND_TRIP_TENSORS[] = {
    {"t.f32.odd", FLM_F32, 1, {7}},
    {"t.f32.3d", FLM_F32, 3, {3, 5, 2}},
    {"t.f16", FLM_F16, 2, {5, 3}},
    {"t.bf16.4d", FLM_BF16, 4, {2, 3, 1, 5}},
    {"t.q8_0", FLM_Q8_0, 2, {3, 64}},
    {"t.q4_0", FLM_Q4_0, 2, {5, 32}},
    {"t.q8_0.3d", FLM_Q8_0, 3, {2, 1, 96}},
    {"t.i32", FLM_I32, 1, {3}},
};
#define N_RT (sizeof ROUND_TRIP_TENSORS / sizeof *ROUND_TRIP_TENSORS)

static size_t spec_bytes(const tspec *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return flm_dtype_bytes(t->dtype, (uint64_t)n);
}

/* Deterministic contents: byte i of tensor k. For float types the bytes are
 * derived from real values so nothing is NaN. */
static void fill_tensor(const tspec *t, size_t k, uint8_t *buf) {
    size_t nb = spec_bytes(t);
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((int)((i * 37 + (int64_t)k * 11) % 23) - 11) * 0.125f;
    if (t->dtype == FLM_I32) {
        for (int64_t i = 0; i < n; i++) ((int32_t *)(void *)buf)[i] = (int32_t)(i * 1000 - 7);
    } else {
        CHECK_EQ_INT(flm_quantize_row(t->dtype, x, buf, n), FLM_OK);
    }
    (void)nb;
    free(x);
}

static int write_round_trip(const char *path, uint32_t alignment) {
    flm_gguf_writer *w;
    int rc = flm_gguf_writer_open(path, alignment, &w);
    if (rc) return rc;
    static const float f32s[] = {1.5f, -2.25f, 3e38f};
    static const int32_t i32s[] = {-1, 0, 2147483647};
    static const bool bools[] = {true, false, true};
    static const uint8_t u8s[] = {0, 255};
    static const char *const strs[] = {"a", "", "h\xc3\xa9llo", "<|im_start|>"};
    static const int64_t i64s[] = {INT64_MIN, 5};
    flm_gguf_str inner_strs[2] = {{"x", 1}, {"yz", 2}};
    flm_gguf_value inner[3] = {
        {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_INT32, .count = 3, .data = i32s},
        {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_STRING, .count = 2, .strs = inner_strs},
        {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_FLOAT32, .count = 0},
    };
    flm_gguf_value nested = {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_ARRAY, .count = 3, .items = inner};
    flm_gguf_value deeper = {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_ARRAY, .count = 1, .items = &nested};
    rc = flm_gguf_writer_add_str(w, "general.architecture", "qwen2");
    if (!rc) rc = flm_gguf_writer_add_u8(w, "k.u8", 200);
    if (!rc) rc = flm_gguf_writer_add_i8(w, "k.i8", -100);
    if (!rc) rc = flm_gguf_writer_add_u16(w, "k.u16", 65535);
    if (!rc) rc = flm_gguf_writer_add_i16(w, "k.i16", -32768);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "k.u32", 4000000000u);
    if (!rc) rc = flm_gguf_writer_add_i32(w, "k.i32", -5);
    if (!rc) rc = flm_gguf_writer_add_u64(w, "k.u64", UINT64_MAX);
    if (!rc) rc = flm_gguf_writer_add_i64(w, "k.i64", INT64_MIN);
    if (!rc) rc = flm_gguf_writer_add_f32(w, "k.f32", 1e-6f);
    if (!rc) rc = flm_gguf_writer_add_f64(w, "k.f64", 3.141592653589793);
    if (!rc) rc = flm_gguf_writer_add_bool(w, "k.bool", true);
    if (!rc) rc = flm_gguf_writer_add_strn(w, "k.str.nul", "a\0b", 3);
    if (!rc) rc = flm_gguf_writer_add_array(w, "k.arr.f32", GGUF_TYPE_FLOAT32, f32s, 3);
    if (!rc) rc = flm_gguf_writer_add_array(w, "k.arr.i32", GGUF_TYPE_INT32, i32s, 3);
    if (!rc) rc = flm_gguf_writer_add_array(w, "k.arr.bool", GGUF_TYPE_BOOL, bools, 3);
    if (!rc) rc = flm_gguf_writer_add_array(w, "k.arr.u8", GGUF_TYPE_UINT8, u8s, 2);
    if (!rc) rc = flm_gguf_writer_add_array(w, "k.arr.i64", GGUF_TYPE_INT64, i64s, 2);
    if (!rc) rc = flm_gguf_writer_add_array(w, "k.arr.empty", GGUF_TYPE_UINT32, NULL, 0);
    if (!rc) rc = flm_gguf_writer_add_str_array(w, "k.arr.str", strs, 4);
    if (!rc) rc = flm_gguf_writer_add_value(w, "k.arr.nested", &nested);
    if (!rc) rc = flm_gguf_writer_add_value(w, "k.arr.deeper", &deeper);
    for (size_t i = 0; !rc && i < N_RT; i++) {
        const tspec *t = &ROUND_TRIP_TENSORS[i];
        rc = flm_gguf_writer_add_tensor(w, t->name, t->dtype, t->ndim, t->shape);
    }
    for (size_t i = 0; !rc && i < N_RT; i++) {
        const tspec *t = &ROUND_TRIP_TENSORS[i];
        size_t nb = spec_bytes(t);
        uint8_t *buf = malloc(nb);
        fill_tensor(t, i, buf);
        if (i % 2) { /* odd tensors in two pieces */
            rc = flm_gguf_writer_write_part(w, buf, nb / 2);
            if (!rc) rc = flm_gguf_writer_write_part(w, buf + nb / 2, nb - nb / 2);
        } else {
            rc = flm_gguf_writer_write_tensor(w, t->name, buf, nb);
        }
        free(buf);
    }
    if (rc) {
        flm_gguf_writer_abort(w);
        return rc;
    }
    return flm_gguf_writer_finish(w);
}

static void check_round_trip(const char *path, uint32_t alignment) {
    flm_gguf_file *f;
    int rc = flm_gguf_open(path, &f);
    CHECK_MSG(rc == FLM_OK, "open: %s", flm_last_error());
    if (rc) return;
    CHECK_EQ_INT(flm_gguf_version(f), 3);
    CHECK_EQ_INT(flm_gguf_alignment(f), alignment);
    CHECK_EQ_INT(flm_gguf_data_offset(f) % alignment, 0);
    CHECK_EQ_INT(flm_gguf_kv_count(f), 22 + (alignment != 32));
    const char *s;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    CHECK(!flm_gguf_get_str(f, "general.architecture", &s));
    CHECK_STR(s, "qwen2");
    CHECK(!flm_gguf_get_u32(f, "k.u8", &u32) && u32 == 200);
    CHECK(!flm_gguf_get_i32(f, "k.i8", &i32) && i32 == -100);
    CHECK(!flm_gguf_get_u32(f, "k.u16", &u32) && u32 == 65535);
    CHECK(!flm_gguf_get_i32(f, "k.i16", &i32) && i32 == -32768);
    CHECK(!flm_gguf_get_u32(f, "k.u32", &u32) && u32 == 4000000000u);
    CHECK(!flm_gguf_get_i32(f, "k.i32", &i32) && i32 == -5);
    CHECK(!flm_gguf_get_u64(f, "k.u64", &u64) && u64 == UINT64_MAX);
    CHECK(!flm_gguf_get_i64(f, "k.i64", &i64) && i64 == INT64_MIN);
    CHECK(!flm_gguf_get_f32(f, "k.f32", &f32) && f32 == 1e-6f);
    CHECK(!flm_gguf_get_f64(f, "k.f64", &f64) && f64 == 3.141592653589793);
    CHECK(!flm_gguf_get_bool(f, "k.bool", &b) && b);
    CHECK_EQ_INT(flm_gguf_find(f, "k.str.nul")->s.len, 3);
    CHECK(!memcmp(flm_gguf_find(f, "k.str.nul")->s.str, "a\0b", 4));
    /* Type and range checks of the getters. */
    CHECK_EQ_INT(flm_gguf_get_i32(f, "k.u32", &i32), FLM_ERR_FORMAT); /* 4e9 does not fit */
    CHECK_EQ_INT(flm_gguf_get_u32(f, "k.i32", &u32), FLM_ERR_FORMAT); /* negative */
    CHECK_EQ_INT(flm_gguf_get_u32(f, "k.f32", &u32), FLM_ERR_FORMAT);
    CHECK_EQ_INT(flm_gguf_get_str(f, "k.u8", &s), FLM_ERR_FORMAT);
    CHECK(strstr(flm_last_error(), "k.u8") && strstr(flm_last_error(), "expected string"));
    CHECK_EQ_INT(flm_gguf_get_u32(f, "no.such.key", &u32), FLM_ERR_FORMAT);
    CHECK(strstr(flm_last_error(), "missing metadata key 'no.such.key'"));
    CHECK(flm_gguf_find(f, "no.such.key") == NULL);

    const flm_gguf_value *a;
    float fl[3];
    int32_t il[3];
    CHECK(!flm_gguf_get_array(f, "k.arr.f32", GGUF_TYPE_FLOAT32, &a) && flm_gguf_array_len(a) == 3);
    CHECK(!flm_gguf_array_copy_f32(a, fl, 3) && fl[0] == 1.5f && fl[1] == -2.25f && fl[2] == 3e38f);
    CHECK(!flm_gguf_get_array(f, "k.arr.i32", GGUF_TYPE_INT32, &a));
    CHECK(!flm_gguf_array_copy_i32(a, il, 3) && il[0] == -1 && il[1] == 0 && il[2] == 2147483647);
    CHECK_EQ_INT(flm_gguf_array_i64(a, 3, &i64), FLM_ERR_ARG); /* out of range index */
    CHECK_EQ_INT(flm_gguf_get_array(f, "k.arr.i32", GGUF_TYPE_STRING, &a), FLM_ERR_FORMAT);
    CHECK(!flm_gguf_get_array(f, "k.arr.bool", GGUF_TYPE_BOOL, &a) && a->count == 3);
    CHECK(((const uint8_t *)a->data)[0] == 1 && ((const uint8_t *)a->data)[1] == 0);
    CHECK(!flm_gguf_get_array(f, "k.arr.u8", GGUF_TYPE_UINT8, &a) && !flm_gguf_array_i64(a, 1, &i64) && i64 == 255);
    CHECK(!flm_gguf_get_array(f, "k.arr.i64", GGUF_TYPE_INT64, &a) && !flm_gguf_array_i64(a, 0, &i64) && i64 == INT64_MIN);
    CHECK(!flm_gguf_get_array(f, "k.arr.empty", GGUF_TYPE_UINT32, &a) && flm_gguf_array_len(a) == 0);
    CHECK(!flm_gguf_get_array(f, "k.arr.str", GGUF_TYPE_STRING, &a) && flm_gguf_array_len(a) == 4);
    uint64_t len;
    CHECK(!flm_gguf_array_str(a, 2, &s, &len) && len == 6);
    CHECK_STR(s, "h\xc3\xa9llo");
    CHECK(!flm_gguf_array_str(a, 1, &s, &len) && len == 0 && s[0] == 0);
    CHECK(!flm_gguf_array_str(a, 3, &s, NULL));
    CHECK_STR(s, "<|im_start|>");
    CHECK_EQ_INT(flm_gguf_array_str(a, 4, &s, NULL), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_gguf_array_f64(a, 0, &f64), FLM_ERR_ARG); /* strings are not numeric */
    CHECK(!flm_gguf_get_array(f, "k.arr.nested", GGUF_TYPE_ARRAY, &a) && a->count == 3);
    if (!test_failed() && a->count == 3) {
        CHECK(a->items[0].elem_type == GGUF_TYPE_INT32 && a->items[0].count == 3);
        CHECK(!flm_gguf_array_i64(&a->items[0], 2, &i64) && i64 == 2147483647);
        CHECK(!flm_gguf_array_str(&a->items[1], 1, &s, NULL));
        CHECK_STR(s, "yz");
        CHECK(a->items[2].elem_type == GGUF_TYPE_FLOAT32 && a->items[2].count == 0);
    }
    CHECK(!flm_gguf_get_array(f, "k.arr.deeper", GGUF_TYPE_ARRAY, &a) && a->count == 1 && a->items[0].count == 3 &&
          a->items[0].items[1].strs[0].str[0] == 'x');
    /* Iteration keeps file order. */
    CHECK_STR(flm_gguf_kv_at(f, alignment != 32 ? 1 : 0)->key, "general.architecture");
    CHECK_STR(flm_gguf_kv_at(f, flm_gguf_kv_count(f) - 1)->key, "k.arr.deeper");
    CHECK(flm_gguf_kv_at(f, flm_gguf_kv_count(f)) == NULL);

    CHECK_EQ_INT(flm_gguf_tensor_count(f), N_RT);
    for (size_t i = 0; i < N_RT && i < flm_gguf_tensor_count(f); i++) {
        const tspec *t = &ROUND_TRIP_TENSORS[i];
        const flm_gguf_tensor_info *ti = flm_gguf_tensor_at(f, i);
        CHECK_STR(ti->name, t->name);
        CHECK(flm_gguf_tensor_find(f, t->name) == ti);
        CHECK_EQ_INT(ti->ggml_type, flm_gguf_ggml_from_dtype(t->dtype));
        CHECK_EQ_INT(ti->offset % alignment, 0);
        CHECK_EQ_INT((flm_gguf_data_offset(f) + ti->offset) % alignment, 0);
        CHECK_EQ_INT((uintptr_t)ti->data % alignment, 0); /* the map is page aligned */
        CHECK_EQ_INT(ti->ne[0], t->shape[t->ndim - 1]);  /* GGUF order is innermost first */
        flm_tensor ft;
        REQUIRE(flm_gguf_get_tensor(f, t->name, &ft) == FLM_OK);
        CHECK_EQ_INT(ft.dtype, t->dtype);
        CHECK_EQ_INT(ft.ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++) CHECK_EQ_INT(ft.shape[d], t->shape[d]);
        size_t nb = spec_bytes(t);
        CHECK_EQ_INT(ft.nbytes, nb);
        uint8_t *want = malloc(nb);
        fill_tensor(t, i, want);
        CHECK_MSG(!memcmp(want, ft.data, nb), "tensor %s data differs", t->name);
        free(want);
    }
    CHECK(flm_gguf_tensor_find(f, "nope") == NULL);
    flm_tensor ft;
    CHECK_EQ_INT(flm_gguf_get_tensor(f, "nope", &ft), FLM_ERR_FORMAT);
    flm_gguf_close(f);
}

TEST(gguf_round_trip_all_types) {
    char *p = tmp_path("rt32.gguf");
    int rc = write_round_trip(p, 0);
    CHECK_MSG(rc == FLM_OK, "write: %s", flm_last_error());
    CHECK(!tmp_exists(p));
    CHECK(flm_gguf_is_gguf_file(p));
    if (!rc) check_round_trip(p, 32);
    free(p);
}

TEST(gguf_round_trip_align64) {
    char *p = tmp_path("rt64.gguf");
    int rc = write_round_trip(p, 64);
    CHECK_MSG(rc == FLM_OK, "write: %s", flm_last_error());
    if (!rc) check_round_trip(p, 64);
    free(p);
}

TEST(gguf_writer_rejects_bad_alignment) {
    flm_gguf_writer *w;
    char *p = tmp_path("badalign.gguf");
    CHECK_EQ_INT(flm_gguf_writer_open(p, 48, &w), FLM_ERR_ARG);
    CHECK(w == NULL && !exists(p) && !tmp_exists(p));
    free(p);
}

/* ------------------------------------------------------------------ peer file */

TEST(gguf_reads_llama_cpp_file) {
    flm_gguf_file *f;
    int rc = flm_gguf_open(PEER_GGUF, &f);
    REQUIRE(rc == FLM_OK || (fprintf(stderr, "%s\n", flm_last_error()), 0));
    const char *s;
    uint32_t u;
    float eps;
    CHECK(!flm_gguf_get_str(f, "general.architecture", &s));
    CHECK_STR(s, "qwen2");
    CHECK(!flm_gguf_get_u32(f, "qwen2.block_count", &u) && u == 4);
    CHECK(!flm_gguf_get_u32(f, "qwen2.embedding_length", &u) && u == 128);
    CHECK(!flm_gguf_get_f32(f, "qwen2.attention.layer_norm_rms_epsilon", &eps) && eps == 1e-6f);
    CHECK(!flm_gguf_get_str(f, "tokenizer.ggml.model", &s));
    CHECK_STR(s, "gpt2");
    const flm_gguf_value *tok;
    CHECK(!flm_gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok));
    CHECK_EQ_INT(flm_gguf_array_len(tok), 151936);
    CHECK(!flm_gguf_array_str(tok, 151643, &s, NULL));
    CHECK_STR(s, "<|endoftext|>");
    CHECK_EQ_INT(flm_gguf_alignment(f), 32);

    const flm_gguf_tensor_info *q = flm_gguf_tensor_find(f, "blk.0.attn_q.weight");
    REQUIRE(q);
    CHECK_EQ_INT(q->ggml_type, GGML_TYPE_Q8_0);
    flm_tensor t;
    REQUIRE(flm_gguf_get_tensor(f, "blk.0.attn_q.weight", &t) == FLM_OK);
    CHECK_EQ_INT(t.dtype, FLM_Q8_0);
    CHECK_EQ_INT(t.ndim, 2);
    CHECK(t.shape[0] == 128 && t.shape[1] == 128);
    flm_tensor e;
    REQUIRE(flm_gguf_get_tensor(f, "token_embd.weight", &e) == FLM_OK);
    CHECK(e.ndim == 2 && e.shape[0] == 151936 && e.shape[1] == 128);
    CHECK(flm_gguf_tensor_find(f, "output.weight") == NULL); /* tied embeddings */
    flm_tensor k;
    REQUIRE(flm_gguf_get_tensor(f, "blk.0.attn_k.weight", &k) == FLM_OK);
    CHECK(k.shape[0] == 64 && k.shape[1] == 128);

    /* Dequantize + requantize with our quantizer gives ggml's bytes back. */
    size_t n = 128 * 128;
    float *x = malloc(n * sizeof *x);
    block_q8_0 *rq = malloc(t.nbytes);
    flm_dequantize_row_q8_0(t.data, x, (int64_t)n);
    flm_quantize_row_q8_0(x, rq, (int64_t)n);
    CHECK_MSG(!memcmp(rq, t.data, t.nbytes), "requantized blk.0.attn_q.weight differs from the file");

    /* And quantizing the original bf16 weights reproduces the file's blocks. */
    flm_st_file *st;
    if (flm_st_open(BUNDLED_MODEL "/model.safetensors", &st) == FLM_OK) {
        const flm_tensor *src = flm_st_find(st, "model.layers.0.self_attn.q_proj.weight");
        CHECK(src && src->dtype == FLM_BF16 && src->shape[0] == 128 && src->shape[1] == 128);
        if (src && src->dtype == FLM_BF16) {
            flm_dtype_get(FLM_BF16)->to_float(src->data, x, n);
            flm_quantize_row_q8_0(x, rq, (int64_t)n);
            size_t diff = 0;
            const block_q8_0 *fb = t.data;
            for (size_t b = 0; b < n / QK; b++) diff += memcmp(&rq[b], &fb[b], sizeof *rq) != 0;
            CHECK_MSG(diff == 0, "%zu of %zu blocks differ from quantizing the bf16 source", diff, n / QK);
        }
        flm_st_close(st);
    }
    free(x);
    free(rq);
    flm_gguf_close(f);
}

/* ------------------------------------------------------------------ hostile input */

/* A byte builder for hand-made files. */
typedef struct { uint8_t b[4096]; size_t n; } bytes;
static void put(bytes *o, const void *p, size_t n) { memcpy(o->b + o->n, p, n); o->n += n; }
static void p32(bytes *o, uint32_t v) { put(o, &v, 4); }
static void p64(bytes *o, uint64_t v) { put(o, &v, 8); }
static void pstr(bytes *o, const char *s) { p64(o, strlen(s)); put(o, s, strlen(s)); }
static void header(bytes *o, uint64_t nt, uint64_t nkv) { o->n = 0; put(o, "GGUF", 4); p32(o, 3); p64(o, nt); p64(o, nkv); }
static void tinfo(bytes *o, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    pstr(o, name);
    p32(o, nd);
    for (uint32_t i = 0; i < nd; i++) p64(o, ne[i]);
    p32(o, type);
    p64(o, off);
}
static void pad_to(bytes *o, size_t a, size_t extra) {
    while (o->n % a) o->b[o->n++] = 0;
    memset(o->b + o->n, 0x3c, extra);
    o->n += extra;
}

/* Expects flm_gguf_open_memory to fail with `status` and a message containing `frag`,
 * then the same through a real file. */
static void expect_bad(const bytes *o, int status, const char *frag, const char *what) {
    flm_gguf_file *f = (flm_gguf_file *)1;
    int rc = flm_gguf_open_memory(o->b, o->n, "hostile.gguf", &f);
    CHECK_MSG(rc == status, "%s: status %d, expected %d (%s)", what, rc, status, rc ? flm_last_error() : "accepted");
    CHECK_MSG(f == NULL, "%s: handle not NULL on failure", what);
    CHECK_MSG(strstr(flm_last_error(), frag) && strstr(flm_last_error(), "hostile.gguf"), "%s: message \"%s\" lacks \"%s\"",
              what, flm_last_error(), frag);
    if (rc == FLM_OK) flm_gguf_close(f);
    char *p = tmp_path("hostile.gguf");
    FILE *fp = fopen(p, "wb");
    REQUIRE(fp);
    fwrite(o->b, 1, o->n, fp);
    fclose(fp);
    rc = flm_gguf_open(p, &f);
    CHECK_MSG(rc == status, "%s (file): status %d", what, rc);
    if (rc == FLM_OK) flm_gguf_close(f);
    free(p);
}

/* A valid file: one KV and one 1-d f32 tensor of 8 elements. */
static void valid_small(bytes *o) {
    header(o, 1, 1);
    pstr(o, "general.architecture");
    p32(o, GGUF_TYPE_STRING);
    pstr(o, "qwen2");
    uint64_t ne[1] = {8};
    tinfo(o, "w", 1, ne, GGML_TYPE_F32, 0);
    pad_to(o, 32, 32);
}

TEST(gguf_valid_small_hand_made) {
    bytes o;
    valid_small(&o);
    flm_gguf_file *f;
    REQUIRE(flm_gguf_open_memory(o.b, o.n, "small", &f) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_tensor_count(f), 1);
    CHECK_EQ_INT(flm_gguf_tensor_at(f, 0)->nbytes, 32);
    flm_gguf_close(f);
}

TEST(gguf_rejects_every_truncation) {
    bytes o;
    valid_small(&o);
    for (size_t n = 0; n < o.n; n++) {
        flm_gguf_file *f;
        int rc = flm_gguf_open_memory(o.b, n, "trunc.gguf", &f);
        CHECK_MSG(rc == FLM_ERR_FORMAT && f == NULL, "prefix of %zu bytes: rc %d", n, rc);
        if (!rc) flm_gguf_close(f);
    }
    /* The peer file truncated at a few places inside its metadata and data. */
    char *buf;
    size_t len;
    REQUIRE(flm_read_file(PEER_GGUF, &buf, &len) == FLM_OK);
    size_t cuts[] = {24, 100, 1000, 700000, 3000000, 5933823, 5933824, 20000000, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        flm_gguf_file *f;
        int rc = flm_gguf_open_memory(buf, cuts[i], "peer-trunc", &f);
        CHECK_MSG(rc == FLM_ERR_FORMAT, "peer prefix %zu: rc %d", cuts[i], rc);
        if (!rc) flm_gguf_close(f);
    }
    flm_gguf_file *f;
    CHECK(flm_gguf_open_memory(buf, len, "peer", &f) == FLM_OK);
    flm_gguf_close(f);
    free(buf);
}

TEST(gguf_rejects_hostile_headers) {
    bytes o;
    uint64_t ne1[1] = {8}, ne5[5] = {1, 1, 1, 1, 1};

    header(&o, 0, 0);
    o.b[0] = 'X';
    expect_bad(&o, FLM_ERR_FORMAT, "not a GGUF file", "bad magic");
    header(&o, 0, 0);
    o.b[4] = 1;
    expect_bad(&o, FLM_ERR_UNSUPPORTED, "version 1", "version 1");
    header(&o, 0, 0);
    memcpy(o.b + 4, "\0\0\0\3", 4);
    expect_bad(&o, FLM_ERR_UNSUPPORTED, "big-endian", "big-endian");

    header(&o, 0, UINT64_MAX);
    expect_bad(&o, FLM_ERR_FORMAT, "metadata pairs", "huge kv count");
    header(&o, UINT64_MAX / 2, 0);
    expect_bad(&o, FLM_ERR_FORMAT, "tensors", "huge tensor count");

    header(&o, 0, 1);
    p64(&o, UINT64_MAX);
    p64(&o, 0);
    expect_bad(&o, FLM_ERR_FORMAT, "has length 18446744073709551615", "huge key length");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_STRING);
    p64(&o, 1ull << 62);
    expect_bad(&o, FLM_ERR_FORMAT, "metadata key 'k'", "huge string length");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_ARRAY);
    p32(&o, GGUF_TYPE_UINT64);
    p64(&o, UINT64_MAX / 4);
    expect_bad(&o, FLM_ERR_FORMAT, "array of", "huge numeric array");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_ARRAY);
    p32(&o, GGUF_TYPE_STRING);
    p64(&o, 1ull << 40);
    expect_bad(&o, FLM_ERR_FORMAT, "array of 1099511627776 string", "huge string array");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_ARRAY);
    p32(&o, 13);
    p64(&o, 0);
    expect_bad(&o, FLM_ERR_FORMAT, "element type 13", "bad array element type");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, 99);
    expect_bad(&o, FLM_ERR_FORMAT, "value type 99", "bad value type");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_BOOL);
    o.b[o.n++] = 2;
    expect_bad(&o, FLM_ERR_FORMAT, "expected 0 or 1", "bool 2");
    header(&o, 0, 1);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_ARRAY);
    for (int d = 0; d < 12; d++) { p32(&o, GGUF_TYPE_ARRAY); p64(&o, 1); }
    p32(&o, GGUF_TYPE_UINT8);
    p64(&o, 0);
    memset(o.b + o.n, 0, 64);
    o.n += 64;
    expect_bad(&o, FLM_ERR_FORMAT, "nested deeper", "deep nesting");

    header(&o, 0, 2);
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_UINT8);
    o.b[o.n++] = 1;
    pstr(&o, "k");
    p32(&o, GGUF_TYPE_UINT8);
    o.b[o.n++] = 1;
    expect_bad(&o, FLM_ERR_FORMAT, "duplicate metadata key 'k'", "duplicate key");

    header(&o, 0, 1);
    pstr(&o, "general.alignment");
    p32(&o, GGUF_TYPE_UINT32);
    p32(&o, 48);
    expect_bad(&o, FLM_ERR_FORMAT, "power of two", "alignment 48");
    header(&o, 0, 1);
    pstr(&o, "general.alignment");
    p32(&o, GGUF_TYPE_UINT64);
    p64(&o, 32);
    expect_bad(&o, FLM_ERR_FORMAT, "expected u32", "alignment u64");

    header(&o, 1, 0);
    tinfo(&o, "w", 5, ne5, GGML_TYPE_F32, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "tensor w: n_dims expected 1..4, got 5", "n_dims 5");
    header(&o, 1, 0);
    tinfo(&o, "w", 0, ne1, GGML_TYPE_F32, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "got 0", "n_dims 0");
    header(&o, 1, 0);
    tinfo(&o, "w", 1, ne1, 99, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "tensor w: unknown ggml type id 99", "type 99");
    header(&o, 1, 0);
    tinfo(&o, "w", 1, ne1, 4, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "unknown ggml type id 4", "retired type 4");
    header(&o, 1, 0);
    tinfo(&o, "w", 1, ne1, GGML_TYPE_Q8_0, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "not a multiple of q8_0's block size 32", "q8_0 row of 8");
    header(&o, 1, 0);
    uint64_t big[2] = {1ull << 40, 1ull << 40};
    tinfo(&o, "w", 2, big, GGML_TYPE_F32, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "overflow", "dims overflow");
    header(&o, 1, 0);
    tinfo(&o, "w", 1, ne1, GGML_TYPE_F32, 1);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "tensor w: data offset 1 is not a multiple of the alignment 32", "misaligned");
    header(&o, 1, 0);
    tinfo(&o, "w", 1, ne1, GGML_TYPE_F32, 0);
    pad_to(&o, 32, 31);
    expect_bad(&o, FLM_ERR_FORMAT, "tensor w: data [0, +32) of the data section runs past the end", "data past end");
    header(&o, 1, 0);
    tinfo(&o, "w", 1, ne1, GGML_TYPE_F32, 1ull << 62);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "runs past the end", "offset far past end");
    header(&o, 2, 0);
    tinfo(&o, "w", 1, ne1, GGML_TYPE_F32, 0);
    tinfo(&o, "w", 1, ne1, GGML_TYPE_F32, 32);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "duplicate tensor name w", "duplicate tensor");
    header(&o, 2, 0);
    uint64_t ne16[1] = {16};
    tinfo(&o, "a", 1, ne16, GGML_TYPE_F32, 0);
    tinfo(&o, "b", 1, ne1, GGML_TYPE_F32, 32);
    pad_to(&o, 32, 96);
    expect_bad(&o, FLM_ERR_FORMAT, "tensor b: data at offset 32 overlaps tensor a", "overlap");
    header(&o, 1, 0);
    p64(&o, 65);
    memset(o.b + o.n, 'n', 65);
    o.n += 65;
    p32(&o, 1);
    p64(&o, 8);
    p32(&o, 0);
    p64(&o, 0);
    pad_to(&o, 32, 64);
    expect_bad(&o, FLM_ERR_FORMAT, "name must be 1..64 bytes", "long tensor name");
}

TEST(gguf_open_missing_file_and_magic_probe) {
    flm_gguf_file *f;
    CHECK_EQ_INT(flm_gguf_open("/nonexistent/x.gguf", &f), FLM_ERR_IO);
    CHECK(strstr(flm_last_error(), "/nonexistent/x.gguf"));
    CHECK(!flm_gguf_is_gguf_file("/nonexistent/x.gguf"));
    CHECK(flm_gguf_is_gguf_file(PEER_GGUF));
    CHECK(!flm_gguf_is_gguf_file(BUNDLED_MODEL "/model.safetensors"));
    CHECK_EQ_INT(flm_gguf_open(BUNDLED_MODEL "/config.json", &f), FLM_ERR_FORMAT);
    CHECK(flm_gguf_has_magic("GGUF", 4) && !flm_gguf_has_magic("GGU", 3));
}

TEST(gguf_unknown_but_sized_types_are_listed) {
    bytes o;
    header(&o, 1, 0);
    uint64_t ne[1] = {256};
    tinfo(&o, "k", 1, ne, 12 /* q4_K */, 0);
    pad_to(&o, 32, 144);
    flm_gguf_file *f;
    REQUIRE(flm_gguf_open_memory(o.b, o.n, "qk.gguf", &f) == FLM_OK);
    const flm_gguf_tensor_info *ti = flm_gguf_tensor_at(f, 0);
    CHECK_STR(flm_gguf_ggml_type_name(ti->ggml_type), "q4_K");
    CHECK_EQ_INT(ti->nbytes, 144);
    CHECK_EQ_INT(ti->dtype, -1);
    flm_tensor t;
    CHECK_EQ_INT(flm_gguf_get_tensor(f, "k", &t), FLM_ERR_UNSUPPORTED);
    CHECK(strstr(flm_last_error(), "q4_K"));
    flm_gguf_close(f);
}

/* ------------------------------------------------------------------ writer failures */

/* Writes a small file; `fail_after` injects ENOSPC at that byte (UINT64_MAX: none). */
static int write_small(const char *path, uint64_t fail_after) {
    flm_gguf_writer *w;
    int rc = flm_gguf_writer_open(path, 0, &w);
    if (rc) return rc;
    flm_gguf_writer_fail_after(w, fail_after);
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i;
    int64_t s1[1] = {64}, s2[2] = {2, 16};
    rc = flm_gguf_writer_add_str(w, "general.architecture", "qwen2");
    if (!rc) rc = flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1);
    if (!rc) rc = flm_gguf_writer_add_tensor(w, "b", FLM_F32, 2, s2);
    if (!rc) rc = flm_gguf_writer_write_tensor(w, "a", data, sizeof data);
    if (!rc) rc = flm_gguf_writer_write_tensor(w, "b", data, 32 * sizeof(float));
    if (rc) {
        flm_gguf_writer_abort(w);
        return rc;
    }
    return flm_gguf_writer_finish(w);
}

TEST(gguf_writer_unwritable_directory) {
    flm_gguf_writer *w;
    CHECK_EQ_INT(flm_gguf_writer_open("/nonexistent-dir/out.gguf", 0, &w), FLM_ERR_IO);
    CHECK(w == NULL);
    CHECK(strstr(flm_last_error(), "/nonexistent-dir/out.gguf"));
    CHECK(!exists("/nonexistent-dir"));
    /* A path below a regular file. */
    char *p = tmp_path("plainfile");
    FILE *fp = fopen(p, "w");
    REQUIRE(fp);
    fclose(fp);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/out.gguf", p);
    CHECK_EQ_INT(flm_gguf_writer_open(sub, 0, &w), FLM_ERR_IO);
    free(p);
}

TEST(gguf_writer_injected_write_failures_leave_nothing) {
    char *p = tmp_path("enospc.gguf");
    /* Measure the file, then fail at many points in the header, data and padding. */
    REQUIRE(write_small(p, UINT64_MAX) == FLM_OK);
    struct stat st;
    REQUIRE(stat(p, &st) == 0);
    unlink(p);
    uint64_t size = (uint64_t)st.st_size;
    for (uint64_t at = 0; at < size; at += (at < 200 ? 7 : 29)) {
        int rc = write_small(p, at);
        CHECK_MSG(rc == FLM_ERR_IO, "fail at %llu: rc %d", (unsigned long long)at, rc);
        CHECK_MSG(!exists(p) && !tmp_exists(p), "fail at %llu left a file", (unsigned long long)at);
        CHECK(strstr(flm_last_error(), "enospc.gguf") && strstr(flm_last_error(), "No space left"));
    }
    /* An existing output survives a failed rewrite untouched. */
    REQUIRE(write_small(p, UINT64_MAX) == FLM_OK);
    CHECK_EQ_INT(write_small(p, 100), FLM_ERR_IO);
    flm_gguf_file *f;
    CHECK(flm_gguf_open(p, &f) == FLM_OK);
    flm_gguf_close(f);
    CHECK(!tmp_exists(p));
    free(p);
}

TEST(gguf_writer_real_write_failure_efbig) {
    /* A real kernel write failure: RLIMIT_FSIZE makes write() fail with EFBIG.
     * Run in a child so the limit does not leak into other tests. */
    char *p = tmp_path("efbig.gguf");
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {100, 100};
        setrlimit(RLIMIT_FSIZE, &rl);
        int rc = write_small(p, UINT64_MAX);
        _exit(rc == FLM_ERR_IO && strstr(flm_last_error(), "too large") ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(!exists(p) && !tmp_exists(p));
    free(p);
}

TEST(gguf_writer_abort_and_misuse_remove_temp) {
    char *p = tmp_path("abort.gguf");
    flm_gguf_writer *w;
    float data[64] = {0};
    int64_t s1[1] = {64};
    /* Abort mid-way, after some data went out. */
    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK(tmp_exists(p));
    CHECK(!flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1));
    CHECK(!flm_gguf_writer_add_tensor(w, "b", FLM_F32, 1, s1));
    CHECK(!flm_gguf_writer_write_tensor(w, "a", data, sizeof data));
    flm_gguf_writer_abort(w);
    CHECK(!exists(p) && !tmp_exists(p));
    flm_gguf_writer_abort(NULL);

    /* finish() with a tensor never written. */
    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK(!flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1));
    CHECK_EQ_INT(flm_gguf_writer_finish(w), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "tensor a (1 of 1) was never written"));
    CHECK(!exists(p) && !tmp_exists(p));

    /* Out of order, wrong size, duplicate names, q8_0 on a row of 48. */
    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK(!flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1));
    CHECK(!flm_gguf_writer_add_tensor(w, "b", FLM_F32, 1, s1));
    CHECK_EQ_INT(flm_gguf_writer_write_tensor(w, "b", data, sizeof data), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "expected a next"));
    CHECK(!tmp_exists(p));
    CHECK_EQ_INT(flm_gguf_writer_add_u32(w, "late", 1), FLM_ERR_ARG); /* poisoned */
    CHECK_EQ_INT(flm_gguf_writer_finish(w), FLM_ERR_ARG);
    CHECK(!exists(p));

    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK(!flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1));
    CHECK_EQ_INT(flm_gguf_writer_write_tensor(w, "a", data, 4), FLM_ERR_ARG);
    flm_gguf_writer_abort(w);

    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK(!flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1));
    CHECK_EQ_INT(flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "duplicate tensor name a"));
    flm_gguf_writer_abort(w);

    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    int64_t s48[2] = {4, 48};
    CHECK_EQ_INT(flm_gguf_writer_add_tensor(w, "q", FLM_Q8_0, 2, s48), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "row length 48 is not a multiple of 32"));
    flm_gguf_writer_abort(w);

    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK(!flm_gguf_writer_add_u32(w, "k", 1));
    CHECK_EQ_INT(flm_gguf_writer_add_str(w, "k", "x"), FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "duplicate metadata key 'k'"));
    flm_gguf_writer_abort(w);

    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_writer_add_u32(w, "general.alignment", 64), FLM_ERR_ARG);
    flm_gguf_writer_abort(w);
    CHECK(!exists(p) && !tmp_exists(p));
    free(p);
}

TEST(gguf_writer_empty_file_round_trips) {
    char *p = tmp_path("empty.gguf");
    flm_gguf_writer *w;
    REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_writer_finish(w), FLM_OK);
    flm_gguf_file *f;
    REQUIRE(flm_gguf_open(p, &f) == FLM_OK);
    CHECK(flm_gguf_kv_count(f) == 0 && flm_gguf_tensor_count(f) == 0);
    flm_gguf_close(f);
    free(p);
}

TEST(gguf_accepts_tensors_out_of_offset_order) {
    /* Offsets need not follow declaration order; overlap is checked after sorting. */
    bytes o;
    uint64_t ne[1] = {8};
    header(&o, 3, 0);
    tinfo(&o, "c", 1, ne, GGML_TYPE_F32, 64);
    tinfo(&o, "a", 1, ne, GGML_TYPE_F32, 0);
    tinfo(&o, "b", 1, ne, GGML_TYPE_F32, 32);
    pad_to(&o, 32, 96);
    flm_gguf_file *f;
    REQUIRE(flm_gguf_open_memory(o.b, o.n, "order.gguf", &f) == FLM_OK);
    CHECK_STR(flm_gguf_tensor_at(f, 0)->name, "c");
    CHECK_EQ_INT(flm_gguf_tensor_find(f, "b")->offset, 32);
    flm_gguf_close(f);
    header(&o, 2, 0);
    uint64_t ne16[1] = {16};
    tinfo(&o, "late", 1, ne16, GGML_TYPE_F32, 32);
    tinfo(&o, "early", 1, ne16, GGML_TYPE_F32, 0);
    pad_to(&o, 32, 96);
    expect_bad(&o, FLM_ERR_FORMAT, "tensor late: data at offset 32 overlaps tensor early", "overlap, reversed");
}

/* Reads back element i of a string array: "" when anything is off. */
static const char *array_item(const flm_gguf_file *f, const char *key, uint64_t i) {
    const flm_gguf_value *a;
    const char *s;
    uint64_t len;
    if (flm_gguf_get_array(f, key, GGUF_TYPE_STRING, &a) || flm_gguf_array_str(a, i, &s, &len)) return "";
    return s;
}

TEST(gguf_writer_replaces_a_string_before_and_after_the_header) {
    /* The converter's source hashes: placeholders of the final length go out with
     * the header, the real values replace them once known. */
    static const char *const before[] = {"aaaa  x", "bbbb  yy", "cccc  z"};
    for (int late = 0; late < 2; late++) {
        char *p = tmp_path(late ? "replace-late.gguf" : "replace-early.gguf");
        flm_gguf_writer *w;
        REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
        float data[32] = {1, 2, 3};
        int64_t s1[1] = {32};
        CHECK_EQ_INT(flm_gguf_writer_add_str(w, "general.architecture", "qwen2"), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_add_str_array(w, "x.files", before, 3), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_add_u32(w, "x.after", 7), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_add_tensor(w, "a", FLM_F32, 1, s1), FLM_OK);
        if (late) CHECK_EQ_INT(flm_gguf_writer_write_tensor(w, "a", data, sizeof data), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_replace_str(w, "x.files", 1, "1234  yy"), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_replace_str(w, "x.files", 2, "5678  z"), FLM_OK);
        if (!late) CHECK_EQ_INT(flm_gguf_writer_write_tensor(w, "a", data, sizeof data), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_finish(w), FLM_OK);
        flm_gguf_file *f;
        REQUIRE(flm_gguf_open(p, &f) == FLM_OK);
        CHECK_STR(array_item(f, "x.files", 0), "aaaa  x");
        CHECK_STR(array_item(f, "x.files", 1), "1234  yy");
        CHECK_STR(array_item(f, "x.files", 2), "5678  z");
        uint32_t u = 0;
        CHECK(flm_gguf_get_u32(f, "x.after", &u) == FLM_OK && u == 7);
        flm_tensor t;
        CHECK(flm_gguf_get_tensor(f, "a", &t) == FLM_OK && ((const float *)t.data)[2] == 3.0f);
        flm_gguf_close(f);
        free(p);
    }
    /* misuse: another length, a missing key, a key that is not a string array, an
     * index past the end; each fails the writer and leaves nothing */
    static const struct { const char *key; size_t i; const char *s, *needle; } bad[] = {
        {"x.files", 0, "aaaaa  x", "bytes"}, {"x.nope", 0, "aaaa  x", "no metadata key"},
        {"x.after", 0, "aaaa  x", "not a string array"}, {"x.files", 3, "aaaa  x", "has 3 elements"}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char *p = tmp_path("replace-bad.gguf");
        flm_gguf_writer *w;
        REQUIRE(flm_gguf_writer_open(p, 0, &w) == FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_add_str_array(w, "x.files", before, 3), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_add_u32(w, "x.after", 7), FLM_OK);
        CHECK_EQ_INT(flm_gguf_writer_replace_str(w, bad[k].key, bad[k].i, bad[k].s), FLM_ERR_ARG);
        CHECK_MSG(strstr(flm_last_error(), bad[k].needle), "case %zu: %s", k, flm_last_error());
        CHECK(flm_gguf_writer_finish(w) != FLM_OK);
        CHECK(!exists(p) && !tmp_exists(p));
        free(p);
    }
}
