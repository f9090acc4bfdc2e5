/* test_tokenizer.c — the byte-level BPE tokenizer against transformers' and llama.cpp's
 * fixtures (tests/data/tokenizer-cases), alternative file layouts, round trips on the
 * KCC CSV files and random text, streaming decode, the spec API, the CLI. */
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utf8proc.h>

#include "base/json.h"
#include "text/tokenizer.h"
#include "package/source.h"

#define CASES TEST_DATA "/tokenizer-cases"
#define RESAVED_DIR TEST_DATA "/qwen2.5-resaved-lora-dir"
#define QWEN25_VOCAB_SIZE 151665
#define N_LLAMA_CPP_CASES 46
#define N_RANDOM_TEXTS 300

static flm_tokenizer *g_tok;

static flm_tokenizer *bundled(void) {
    if (!g_tok && flm_load_tokenizer(BUNDLED_MODEL, &g_tok) != FLM_OK) {
        fprintf(stderr, "loading %s: %s\n", BUNDLED_MODEL, flm_last_error());
        g_tok = NULL;
    }
    return g_tok;
}

__attribute__((destructor)) static void free_bundled(void) { flm_tokenizer_free(g_tok); }

/* ---- case files ------------------------------------------------------------------ */

typedef struct {
    char *text; size_t len;
    int32_t *ids; size_t n;
    char *decoded; /* NULL if the case has none */
} tcase;

typedef struct { tcase *v; size_t n; } caselist;

static void cases_free(caselist *l) {
    for (size_t i = 0; i < l->n; i++) { free(l->v[i].text); free(l->v[i].ids); free(l->v[i].decoded); }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void add_case(caselist *l, const char *text, size_t len, const int32_t *ids, size_t n, const char *dec) {
    l->v = realloc(l->v, (l->n + 1) * sizeof *l->v);
    tcase *c = &l->v[l->n++];
    c->text = flm_strndup(text, len);
    c->len = len;
    c->ids = malloc((n + 1) * sizeof *ids);
    memcpy(c->ids, ids, n * sizeof *ids);
    c->n = n;
    c->decoded = dec ? flm_strdup(dec) : NULL;
}

/* One JSON object a line with "text" and "ids" (and maybe "decoded"). */
static bool load_jsonl(const char *path, caselist *l) {
    char *data;
    size_t len;
    if (flm_read_file(path, &data, &len)) return false;
    for (char *p = data; *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n) {
            flm_json_doc *d = flm_json_parse(p, n, path);
            if (!d) { free(data); return false; }
            const flm_json *r = flm_json_root(d), *t = flm_json_get(r, "text"), *ids = flm_json_get(r, "ids");
            int32_t buf[4096];
            size_t k = 0;
            for (; ids && k < ids->len && k < 4096; k++) buf[k] = (int32_t)flm_json_int(&ids->items[k], -1);
            add_case(l, t->str, t->len, buf, k, flm_json_string(flm_json_get(r, "decoded"), NULL));
            flm_json_free(d);
        }
        p = nl ? nl + 1 : p + n;
    }
    free(data);
    return true;
}

static bool load_llama_cpp(caselist *l) {
    char *inp, *out;
    size_t ni, no;
    if (flm_read_file(CASES "/ggml-vocab-qwen2.gguf.inp", &inp, &ni)) return false;
    if (flm_read_file(CASES "/ggml-vocab-qwen2.gguf.out", &out, &no)) { free(inp); return false; }
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *q = out;
    for (char *e; (e = strstr(p, sep));) {
        char *nl = strchr(q, '\n');
        if (!nl) break;
        *nl = '\0';
        int32_t buf[4096];
        size_t k = 0;
        for (char *s = q, *end; k < 4096; s = end) {
            long v = strtol(s, &end, 10);
            if (end == s) break;
            buf[k++] = (int32_t)v;
        }
        add_case(l, p, (size_t)(e - p), buf, k, NULL);
        p = e + strlen(sep);
        q = nl + 1;
    }
    free(inp);
    free(out);
    return true;
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* Encodes every case with `tok` and compares with the expected ids (and decoded text). */
static void check_cases(flm_tokenizer *tok, const caselist *l, int flags, const char *what) {
    for (size_t i = 0; i < l->n; i++) {
        const tcase *c = &l->v[i];
        int32_t *ids;
        size_t n;
        int rc = flm_tokenizer_encode_ex(tok, c->text, c->len, flags, &ids, &n);
        CHECK_MSG(rc == FLM_OK, "%s case %zu: encode failed: %s", what, i, flm_last_error());
        if (rc) continue;
        if (!ids_equal(ids, n, c->ids, c->n)) {
            strbuf sb;
            flm_sb_init(&sb);
            for (size_t k = 0; k < n; k++) flm_sb_printf(&sb, " %d", ids[k]);
            flm_sb_puts(&sb, " | expected");
            for (size_t k = 0; k < c->n; k++) flm_sb_printf(&sb, " %d", c->ids[k]);
            test_fail(__FILE__, __LINE__, "%s case %zu (%s): ids%s", what, i, c->text, flm_sb_cstr(&sb));
            flm_sb_free(&sb);
        }
        if (c->decoded) {
            strbuf sb;
            flm_sb_init(&sb);
            CHECK(flm_tokenizer_decode(tok, c->ids, c->n, &sb) == FLM_OK);
            CHECK_MSG(sb.len == strlen(c->decoded) && !memcmp(flm_sb_cstr(&sb), c->decoded, sb.len),
                      "%s case %zu: decoded '%s' expected '%s'", what, i, flm_sb_cstr(&sb), c->decoded);
            flm_sb_free(&sb);
        }
        free(ids);
    }
}

/* All three case files. */
static void check_all_cases(flm_tokenizer *tok, const char *what) {
    caselist l = {0};
    REQUIRE(load_jsonl(CASES "/encode_shared.jsonl", &l));
    CHECK(l.n >= 28);
    check_cases(tok, &l, 0, what);
    cases_free(&l);
    REQUIRE(load_jsonl(CASES "/chat_shared.jsonl", &l));
    CHECK(l.n >= 5);
    check_cases(tok, &l, 0, what);
    cases_free(&l);
    REQUIRE(load_llama_cpp(&l));
    CHECK_EQ_INT(l.n, N_LLAMA_CPP_CASES);
    check_cases(tok, &l, FLM_ENCODE_SPECIAL_AS_TEXT, what);
    cases_free(&l);
}

TEST(tokenizer_transformers_encode_cases) {
    caselist l = {0};
    REQUIRE(bundled());
    REQUIRE(load_jsonl(CASES "/encode_shared.jsonl", &l));
    CHECK_EQ_INT(l.n, 28);
    check_cases(g_tok, &l, 0, "encode_shared");
    cases_free(&l);
}

TEST(tokenizer_chat_cases) {
    caselist l = {0};
    REQUIRE(bundled());
    REQUIRE(load_jsonl(CASES "/chat_shared.jsonl", &l));
    CHECK_EQ_INT(l.n, 5);
    check_cases(g_tok, &l, 0, "chat_shared");
    cases_free(&l);
}

TEST(tokenizer_llama_cpp_qwen2_cases) {
    caselist l = {0};
    REQUIRE(bundled());
    REQUIRE(load_llama_cpp(&l));
    CHECK_EQ_INT(l.n, N_LLAMA_CPP_CASES);
    check_cases(g_tok, &l, FLM_ENCODE_SPECIAL_AS_TEXT, "llama.cpp qwen2");
    cases_free(&l);
}

TEST(tokenizer_vocabulary_lookups) {
    REQUIRE(bundled());
    CHECK_EQ_INT(flm_tokenizer_vocab_size(g_tok), QWEN25_VOCAB_SIZE);
    CHECK_EQ_INT(flm_tokenizer_token_id(g_tok, "<|im_start|>"), 151644);
    CHECK_EQ_INT(flm_tokenizer_token_id(g_tok, "\xc4\xa0world"), 1879);
    CHECK_EQ_INT(flm_tokenizer_token_id(g_tok, "no such token here"), -1);
    CHECK_STR(flm_tokenizer_token_text(g_tok, 9707), "Hello");
    CHECK_STR(flm_tokenizer_token_text(g_tok, 151645), "<|im_end|>");
    CHECK(flm_tokenizer_token_text(g_tok, QWEN25_VOCAB_SIZE) == NULL);
    CHECK(flm_tokenizer_token_text(g_tok, -1) == NULL);
    CHECK(flm_tokenizer_is_special(g_tok, 151643));
    CHECK(!flm_tokenizer_is_special(g_tok, 151657)); /* <tool_call> is added, not special */
    CHECK(!flm_tokenizer_is_special(g_tok, 9707));
}

TEST(tokenizer_special_tokens_split_or_not) {
    REQUIRE(bundled());
    const char *t = "a<|im_start|>b<tool_call>";
    int32_t *ids;
    size_t n;
    REQUIRE(flm_tokenizer_encode(g_tok, t, strlen(t), &ids, &n) == FLM_OK);
    REQUIRE(n == 4);
    CHECK_EQ_INT(ids[1], 151644);
    CHECK_EQ_INT(ids[3], 151657);
    free(ids);
    REQUIRE(flm_tokenizer_encode_ex(g_tok, t, strlen(t), FLM_ENCODE_SPECIAL_AS_TEXT, &ids, &n) == FLM_OK);
    bool has_special = false;
    for (size_t i = 0; i < n; i++) has_special |= ids[i] == 151644;
    CHECK(!has_special && ids[n - 1] == 151657); /* non-special added tokens still split */
    free(ids);
    REQUIRE(flm_tokenizer_encode_ex(g_tok, t, strlen(t), FLM_ENCODE_NO_ADDED, &ids, &n) == FLM_OK);
    CHECK(ids[n - 1] != 151657);
    free(ids);
}

TEST(tokenizer_resaved_dir_matches) {
    flm_tokenizer *tok;
    int rc = flm_load_tokenizer(RESAVED_DIR, &tok);
    CHECK_MSG(rc == FLM_OK, "%s", flm_last_error());
    REQUIRE(rc == FLM_OK);
    CHECK_EQ_INT(flm_tokenizer_vocab_size(tok), QWEN25_VOCAB_SIZE);
    check_all_cases(tok, "resaved");
    flm_tokenizer_free(tok);
}

static bool copy_file(const char *from, const char *dir, const char *name) {
    char *data;
    size_t len;
    if (flm_read_file(from, &data, &len)) return false;
    char *to = flm_path_join(dir, name);
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f) fclose(f);
    free(to);
    free(data);
    return ok;
}

TEST(tokenizer_vocab_merges_layout_matches) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/vm", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0 || flm_is_dir(dir));
    REQUIRE(copy_file(BUNDLED_MODEL "/vocab.json", dir, "vocab.json"));
    REQUIRE(copy_file(BUNDLED_MODEL "/merges.txt", dir, "merges.txt"));
    REQUIRE(copy_file(BUNDLED_MODEL "/tokenizer_config.json", dir, "tokenizer_config.json"));
    flm_tokenizer *tok;
    int rc = flm_load_tokenizer(dir, &tok);
    CHECK_MSG(rc == FLM_OK, "%s", flm_last_error());
    REQUIRE(rc == FLM_OK);
    CHECK_EQ_INT(flm_tokenizer_vocab_size(tok), QWEN25_VOCAB_SIZE);
    check_all_cases(tok, "vocab.json+merges.txt");
    flm_tokenizer_free(tok);

    /* the resaved folder's merges.txt (with #version) and added_tokens.json only */
    snprintf(dir, sizeof dir, "%s/vm2", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0 || flm_is_dir(dir));
    REQUIRE(copy_file(RESAVED_DIR "/vocab.json", dir, "vocab.json"));
    REQUIRE(copy_file(RESAVED_DIR "/merges.txt", dir, "merges.txt"));
    REQUIRE(copy_file(RESAVED_DIR "/added_tokens.json", dir, "added_tokens.json"));
    rc = flm_load_tokenizer(dir, &tok);
    CHECK_MSG(rc == FLM_OK, "%s", flm_last_error());
    REQUIRE(rc == FLM_OK);
    CHECK_EQ_INT(flm_tokenizer_vocab_size(tok), QWEN25_VOCAB_SIZE);
    caselist l = {0};
    REQUIRE(load_jsonl(CASES "/chat_shared.jsonl", &l));
    check_cases(tok, &l, 0, "added_tokens.json");
    cases_free(&l);
    flm_tokenizer_free(tok);
}

TEST(tokenizer_spec_round_trip_and_preset) {
    REQUIRE(bundled());
    flm_tokenizer_spec spec;
    flm_tokenizer_get_spec(g_tok, &spec);
    CHECK_EQ_INT(spec.n_vocab, 151643);
    CHECK_EQ_INT(spec.n_merges, 151387);
    CHECK_EQ_INT(spec.n_added, 22);
    CHECK_STR(spec.merges[0], "\xc4\xa0 \xc4\xa0");
    CHECK_STR(spec.normalizer_json, "{\"type\":\"NFC\"}");
    CHECK(strstr(spec.pre_tokenizer_json, "\"Split\"") != NULL);
    flm_tokenizer *tok;
    REQUIRE(flm_tokenizer_from_spec(&spec, &tok) == FLM_OK);
    check_all_cases(tok, "from_spec");
    flm_tokenizer_free(tok);
    /* a GGUF-like source: vocabulary and merges only, configuration from the preset */
    flm_tokenizer_spec p = spec;
    p.normalizer_json = p.pre_tokenizer_json = p.decoder_json = NULL;
    REQUIRE(flm_tokenizer_preset("qwen2", &p) == FLM_OK);
    REQUIRE(flm_tokenizer_from_spec(&p, &tok) == FLM_OK);
    check_all_cases(tok, "qwen2 preset");
    flm_tokenizer_free(tok);
    CHECK(flm_tokenizer_preset("llama3", &p) == FLM_ERR_UNSUPPORTED);
}

/* ---- UTF-8 repair and streaming ---------------------------------------------------- */

/* A tiny byte-level tokenizer (256 single-byte tokens, no merges) to decode raw bytes. */
static flm_tokenizer *byte_tokenizer(void) {
    static char storage[256][4];
    const char *vocab[256];
    for (int b = 0; b < 256; b++) {
        int cp = ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) ? b
                 : b <= 0x20 ? 256 + b : b <= 0xA0 ? 256 + 33 + (b - 0x7F) : 256 + 67;
        if (cp < 0x80) { storage[b][0] = (char)cp; storage[b][1] = 0; }
        else { storage[b][0] = (char)(0xC0 | (cp >> 6)); storage[b][1] = (char)(0x80 | (cp & 0x3F)); storage[b][2] = 0; }
        vocab[b] = storage[b];
    }
    flm_tokenizer_spec spec = {.vocab = vocab, .n_vocab = 256};
    flm_tokenizer_preset("qwen2", &spec);
    flm_tokenizer *tok = NULL;
    if (flm_tokenizer_from_spec(&spec, &tok)) fprintf(stderr, "%s\n", flm_last_error());
    return tok;
}

TEST(tokenizer_utf8_replacement_like_python) {
    flm_tokenizer *tok = byte_tokenizer();
    REQUIRE(tok);
    /* expected values: bytes.decode("utf-8", "replace") in CPython 3 */
    static const struct { const char *in; size_t n; const char *out; } cases[] = {
        {"\xe0\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98", 3, "\xef\xbf\xbd"},
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},
        {"\xc3", 1, "\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe2\x82" "a", 3, "\xef\xbf\xbd" "a"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98\x80\xf0\x9f", 6, "\xf0\x9f\x98\x80\xef\xbf\xbd"},
        {"\x00\x7f", 2, "\x00\x7f"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ids[16];
        for (size_t k = 0; k < cases[i].n; k++) ids[k] = (uint8_t)cases[i].in[k];
        strbuf sb, st;
        flm_sb_init(&sb);
        flm_sb_init(&st);
        CHECK(flm_tokenizer_decode(tok, ids, cases[i].n, &sb) == FLM_OK);
        size_t want = strlen(cases[i].out) ? strlen(cases[i].out) : 2;
        CHECK_MSG(sb.len == want && !memcmp(sb.data, cases[i].out, want), "repair case %zu", i);
        flm_token_stream s;
        flm_token_stream_init(&s, tok);
        for (size_t k = 0; k < cases[i].n; k++) CHECK(flm_token_stream_feed(&s, ids[k], &st) == FLM_OK);
        flm_token_stream_flush(&s, &st);
        CHECK_MSG(st.len == sb.len && !memcmp(st.data, sb.data, sb.len), "stream case %zu", i);
        flm_sb_free(&sb);
        flm_sb_free(&st);
    }
    flm_tokenizer_free(tok);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

/* Stream-decodes ids one at a time and compares with the one-shot decode. */
static void check_stream(flm_tokenizer *tok, const int32_t *ids, size_t n, const char *what) {
    strbuf one, st;
    flm_sb_init(&one);
    flm_sb_init(&st);
    CHECK(flm_tokenizer_decode(tok, ids, n, &one) == FLM_OK);
    flm_token_stream s;
    flm_token_stream_init(&s, tok);
    for (size_t i = 0; i < n; i++) {
        size_t before = st.len;
        CHECK(flm_token_stream_feed(&s, ids[i], &st) == FLM_OK);
        /* never half a character: what was emitted so far is valid UTF-8 */
        CHECK(utf8proc_decompose((const utf8proc_uint8_t *)st.data + before, (utf8proc_ssize_t)(st.len - before),
                                 NULL, 0, 0) >= 0 || st.len == before);
    }
    flm_token_stream_flush(&s, &st);
    CHECK_MSG(one.len == st.len && !memcmp(one.data, st.data, one.len), "%s: stream != one-shot", what);
    flm_sb_free(&one);
    flm_sb_free(&st);
}

TEST(tokenizer_stream_decode_equals_one_shot) {
    REQUIRE(bundled());
    /* Telugu: many tokens hold part of a character */
    const char *t = "\xe0\xb0\xb5\xe0\xb0\xb0\xe0\xb0\xbf \xe0\xb0\xaa\xe0\xb0\x82\xe0\xb0\x9f \xf0\x9f\x8c\xbe\xf0\x9f\x9a\x9c ok";
    int32_t *ids;
    size_t n;
    REQUIRE(flm_tokenizer_encode(g_tok, t, strlen(t), &ids, &n) == FLM_OK);
    check_stream(g_tok, ids, n, "telugu");
    strbuf sb;
    flm_sb_init(&sb);
    CHECK(flm_tokenizer_decode(g_tok, ids, n, &sb) == FLM_OK);
    CHECK_STR(flm_sb_cstr(&sb), t);
    flm_sb_free(&sb);
    free(ids);
    /* random id sequences: byte tokens produce broken UTF-8 on purpose */
    int32_t r[64];
    for (int round = 0; round < 200; round++) {
        size_t m = 1 + rnd() % 63;
        for (size_t i = 0; i < m; i++)
            r[i] = (int32_t)(rnd() % 4 == 0 ? rnd() % QWEN25_VOCAB_SIZE : 94 + rnd() % 188); /* 94..281 incl. byte tokens */
        check_stream(g_tok, r, m, "random ids");
    }
    flm_token_stream s;
    flm_token_stream_init(&s, g_tok);
    strbuf o;
    flm_sb_init(&o);
    CHECK(flm_token_stream_feed(&s, QWEN25_VOCAB_SIZE + 5, &o) == FLM_ERR_ARG);
    flm_sb_free(&o);
}

/* ---- round trips -------------------------------------------------------------------- */

static char *nfc(const char *s, size_t n, size_t *out_len) {
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0) return NULL;
    *out_len = (size_t)r;
    return (char *)d;
}

static bool round_trip(flm_tokenizer *tok, const char *s, size_t n) {
    int32_t *ids;
    size_t k, want_len;
    if (flm_tokenizer_encode(tok, s, n, &ids, &k)) return false;
    strbuf sb;
    flm_sb_init(&sb);
    bool ok = flm_tokenizer_decode(tok, ids, k, &sb) == FLM_OK;
    char *want = n ? nfc(s, n, &want_len) : (want_len = 0, NULL);
    ok = ok && (n == 0 || want) && sb.len == want_len && (!want_len || !memcmp(sb.data, want, want_len));
    free(want);
    flm_sb_free(&sb);
    free(ids);
    return ok;
}

TEST(tokenizer_round_trip_kcc_csv) {
    REQUIRE(bundled());
    const char *files[] = {"data/agri-kcc/KCC_PUN_01_2025.csv", "data/agri-kcc/KCC_TELANGANA_01_2025.raw_kcc.csv"};
    for (size_t f = 0; f < 2; f++) {
        char *data;
        size_t len;
        REQUIRE(flm_read_file(files[f], &data, &len) == FLM_OK);
        CHECK_MSG(round_trip(g_tok, data, len), "%s: whole file does not round-trip", files[f]);
        size_t lines = 0, bad = 0;
        for (char *p = data; p < data + len;) {
            char *nl = memchr(p, '\n', (size_t)(data + len - p));
            size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(data + len - p);
            if (!round_trip(g_tok, p, n) && bad++ < 3) CHECK_MSG(0, "%s line %zu does not round-trip", files[f], lines + 1);
            lines++;
            p += n;
        }
        CHECK(lines > 1000);
        free(data);
    }
}

/* Random text: code points from ASCII, whitespace, Latin with combining marks, Indic,
 * CJK, emoji, and the contraction/apostrophe cases; then raw random bytes made valid. */
TEST(tokenizer_round_trip_random_text) {
    REQUIRE(bundled());
    static const uint32_t pool[][2] = {
        {0x20, 0x7E}, {0x09, 0x0D}, {0x20, 0x20}, {0x27, 0x27}, {0xA0, 0xFF}, {0x300, 0x36F},
        {0x0C00, 0x0C7F}, {0x0A00, 0x0A7F}, {0x0900, 0x097F}, {0x4E00, 0x4E50}, {0x1F300, 0x1F6FF},
        {0x2000, 0x200D}, {0x3000, 0x3000}, {0x85, 0x85}, {0x180E, 0x180E}, {0xAC00, 0xAC10}, {0x10000, 0x10FFFF}};
    char buf[1024];
    for (int round = 0; round < N_RANDOM_TEXTS; round++) {
        size_t n = 0, want = 1 + rnd() % 120;
        for (size_t i = 0; i < want && n + 4 < sizeof buf; i++) {
            const uint32_t *r = pool[rnd() % (sizeof pool / sizeof *pool)];
            uint32_t cp = r[0] + rnd() % (r[1] - r[0] + 1);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
            n += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)buf + n);
        }
        CHECK_MSG(round_trip(g_tok, buf, n), "random text %d does not round-trip", round);
    }
    /* random bytes, repaired to valid UTF-8 the way Python's "replace" would */
    flm_tokenizer *bt = byte_tokenizer();
    REQUIRE(bt);
    for (int round = 0; round < N_RANDOM_TEXTS; round++) {
        int32_t ids[200];
        size_t m = 1 + rnd() % 200;
        for (size_t i = 0; i < m; i++) ids[i] = (int32_t)(rnd() % 4 ? rnd() % 128 : rnd() % 256);
        strbuf sb;
        flm_sb_init(&sb);
        CHECK(flm_tokenizer_decode(bt, ids, m, &sb) == FLM_OK);
        CHECK_MSG(round_trip(g_tok, sb.data, sb.len), "random bytes %d do not round-trip", round);
        flm_sb_free(&sb);
    }
    flm_tokenizer_free(bt);
}

/* ---- errors ------------------------------------------------------------------------- */

TEST(tokenizer_load_errors) {
    flm_tokenizer *tok;
    CHECK(flm_load_tokenizer("/nonexistent/model", &tok) == FLM_ERR_IO && !tok);
    CHECK(strstr(flm_last_error(), "/nonexistent/model") != NULL);
    CHECK(flm_load_tokenizer(TEST_DATA "/micro-qwen2", &tok) == FLM_ERR_IO);
    CHECK(strstr(flm_last_error(), "no tokenizer files") != NULL);
    const char *bad[] = {
        "{", "{\"model\": 3}", "{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}",
        "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
        "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
        "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}",
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
        "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
        "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = flm_tokenizer_load_json(bad[i], strlen(bad[i]), "bad.json", &tok);
        CHECK_MSG(rc < 0 && !tok, "accepted bad tokenizer.json #%zu", i);
        CHECK_MSG(*flm_last_error(), "no message for bad tokenizer.json #%zu", i);
        flm_tokenizer_free(tok);
    }
}

TEST(tokenizer_encode_decode_errors) {
    REQUIRE(bundled());
    int32_t *ids;
    size_t n;
    CHECK(flm_tokenizer_encode(g_tok, "ab\xff", 3, &ids, &n) == FLM_ERR_ARG);
    CHECK(flm_tokenizer_encode(g_tok, "\xed\xa0\x80", 3, &ids, &n) == FLM_ERR_ARG); /* surrogate */
    REQUIRE(flm_tokenizer_encode(g_tok, "", 0, &ids, &n) == FLM_OK);
    CHECK_EQ_INT(n, 0);
    free(ids);
    strbuf sb;
    flm_sb_init(&sb);
    int32_t bad[] = {9707, QWEN25_VOCAB_SIZE};
    CHECK(flm_tokenizer_decode(g_tok, bad, 2, &sb) == FLM_ERR_ARG);
    CHECK(strstr(flm_last_error(), "151665") != NULL);
    flm_sb_free(&sb);
}

/* Decoding no ids gives no text. An empty list once computed NULL + 0 in the UTF-8
 * repair (undefined; clang's UBSan stops on it, so this fails in `make test-san` built
 * by clang and in the fuzz build). */
TEST(tokenizer_decode_empty_list) {
    REQUIRE(bundled());
    strbuf sb;
    flm_sb_init(&sb);
    CHECK(flm_tokenizer_decode(g_tok, NULL, 0, &sb) == FLM_OK);
    int32_t one[1] = {9707};
    CHECK(flm_tokenizer_decode(g_tok, one, 0, &sb) == FLM_OK);
    CHECK_EQ_INT(sb.len, 0);
    flm_token_stream st;
    flm_token_stream_init(&st, g_tok);
    flm_token_stream_flush(&st, &sb);
    CHECK_EQ_INT(sb.len, 0);
    CHECK(flm_tokenizer_decode(g_tok, one, 1, &sb) == FLM_OK);
    CHECK_STR(flm_sb_cstr(&sb), "Hello");
    flm_sb_free(&sb);
}

/* ---- CLI ----------------------------------------------------------------------------- */

TEST(tokenizer_cli_tokenize_detokenize) {
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "printf 'Hello world<|im_end|>' | %s tokenize -m %s", test_bin(), BUNDLED_MODEL);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK_STR(out, "9707 1879 151645\n");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "printf 'Hello world' | %s tokenize -m %s --json", test_bin(), BUNDLED_MODEL);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK_STR(out, "[9707,1879]\n");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s --ids 9707,1879,151645", test_bin(), BUNDLED_MODEL);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK_STR(out, "Hello world<|im_end|>");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s tokenize --help", test_bin());
    CHECK_EQ_INT(test_run(cmd, &out, &err), 0);
    CHECK(strstr(out, "--json") && strstr(out, "--model"));
    free(out); free(err);
}

TEST(tokenizer_cli_errors) {
    static const char *cases[] = {
        "tokenize -m /nonexistent </dev/null",
        "tokenize -m " TEST_DATA "/micro-qwen2 </dev/null",
        "detokenize -m " BUNDLED_MODEL " --ids 1,999999",
        "detokenize -m " BUNDLED_MODEL " --ids x",
        "detokenize -m " BUNDLED_MODEL,
        "tokenize </dev/null",
        "tokenize -m " BUNDLED_MODEL " --bogus </dev/null",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[1024], *out, *err;
        snprintf(cmd, sizeof cmd, "%s %s", test_bin(), cases[i]);
        int rc = test_run(cmd, &out, &err);
        CHECK_MSG(rc > 0 && rc < 128, "'%s' exited %d", cases[i], rc);
        CHECK_MSG(err && *err, "'%s' printed no error", cases[i]);
        free(out); free(err);
    }
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "printf 'a\\377' | %s tokenize -m %s", test_bin(), BUNDLED_MODEL);
    CHECK_EQ_INT(test_run(cmd, &out, &err), 1);
    CHECK(strstr(err, "UTF-8") != NULL);
    free(out); free(err);
}

/* ---- added-token flags (tokenizers' AddedVocabulary rules) ---------------------------- */

static void expect_ids(flm_tokenizer *tok, const char *text, const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    REQUIRE(flm_tokenizer_encode(tok, text, strlen(text), &ids, &n) == FLM_OK);
    CHECK_MSG(ids_equal(ids, n, want, n_want), "'%s': got %zu ids (first %d)", text, n, n ? ids[0] : -1);
    free(ids);
}

TEST(tokenizer_added_token_flags) {
    flm_tokenizer *bt = byte_tokenizer(); /* byte b has id b */
    REQUIRE(bt);
    flm_tokenizer_spec spec;
    flm_tokenizer_get_spec(bt, &spec);
    const flm_added_token added[] = {
        {.id = 256, .content = "<L>", .special = true, .lstrip = true},
        {.id = 257, .content = "<R>", .special = true, .rstrip = true},
        {.id = 258, .content = "<W>", .special = true, .single_word = true},
        {.id = 259, .content = "<N>", .normalized = true},
        {.id = 260, .content = "<LL>", .special = true},
    };
    spec.added = added;
    spec.n_added = sizeof added / sizeof *added;
    flm_tokenizer *tok;
    REQUIRE(flm_tokenizer_from_spec(&spec, &tok) == FLM_OK);
    CHECK_EQ_INT(flm_tokenizer_vocab_size(tok), 261);
    expect_ids(tok, "a  <L>b", (const int32_t[]){'a', 256, 'b'}, 3);
    expect_ids(tok, "a<R> \t b", (const int32_t[]){'a', 257, 'b'}, 3);
    expect_ids(tok, "x<W>y", (const int32_t[]){'x', '<', 'W', '>', 'y'}, 5);
    expect_ids(tok, " <W> ", (const int32_t[]){' ', 258, ' '}, 3);
    expect_ids(tok, "e\xcc\x81<N>", (const int32_t[]){0xC3, 0xA9, 259}, 3); /* NFC, then matched */
    expect_ids(tok, "<LL>", (const int32_t[]){260}, 1);                      /* longest wins */
    strbuf sb;
    flm_sb_init(&sb);
    CHECK(flm_tokenizer_decode(tok, (const int32_t[]){'a', 256, 259}, 3, &sb) == FLM_OK);
    CHECK_STR(flm_sb_cstr(&sb), "a<L><N>");
    flm_sb_free(&sb);
    flm_tokenizer_free(tok);
    flm_tokenizer_free(bt);
}

/* ---- threads ------------------------------------------------------------------------ */

#define N_THREADS 4
static const char *g_thread_text = "Hello world! \xe0\xb0\xb5\xe0\xb0\xb0\xe0\xb0\xbf <|im_end|> 12,500 acres";
static void *encode_many(void *arg) {
    size_t *n_out = arg;
    for (int i = 0; i < 200; i++) {
        int32_t *ids;
        size_t n;
        if (flm_tokenizer_encode(g_tok, g_thread_text, strlen(g_thread_text), &ids, &n)) { *n_out = 0; return NULL; }
        if (i && n != *n_out) { free(ids); *n_out = 0; return NULL; }
        *n_out = n;
        free(ids);
    }
    return NULL;
}

TEST(tokenizer_concurrent_encode) {
    REQUIRE(bundled());
    pthread_t th[N_THREADS];
    size_t counts[N_THREADS] = {0};
    for (int i = 0; i < N_THREADS; i++) REQUIRE(pthread_create(&th[i], NULL, encode_many, &counts[i]) == 0);
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N_THREADS; i++) CHECK(counts[i] > 0 && counts[i] == counts[0]);
}

TEST(tokenizer_ignore_merges) {
    flm_tokenizer *bt = byte_tokenizer();
    REQUIRE(bt);
    flm_tokenizer_spec spec;
    flm_tokenizer_get_spec(bt, &spec);
    const char *vocab[258];
    for (int i = 0; i < 256; i++) vocab[i] = spec.vocab[i];
    vocab[256] = "ab";
    vocab[257] = "abc";
    const char *merges[] = {"a b"}; /* no merge makes "abc" */
    spec.vocab = vocab;
    spec.n_vocab = 258;
    spec.merges = merges;
    spec.n_merges = 1;
    flm_tokenizer *tok;
    REQUIRE(flm_tokenizer_from_spec(&spec, &tok) == FLM_OK);
    expect_ids(tok, "abc", (const int32_t[]){256, 'c'}, 2);
    flm_tokenizer_free(tok);
    spec.ignore_merges = true;
    REQUIRE(flm_tokenizer_from_spec(&spec, &tok) == FLM_OK);
    expect_ids(tok, "abc", (const int32_t[]){257}, 1);
    expect_ids(tok, "abd", (const int32_t[]){256, 'd'}, 2);
    flm_tokenizer_free(tok);
    flm_tokenizer_free(bt);
}

/* ---- hostile pre-tokenizer patterns (regex work limits) ------------------------------- */

/* (a|a){1,22} backtracks through ~2^23 paths at every 'a' before [\s\S] matches: ~18 ms
 * per character without limits, half an hour for 100k characters. The {1,15} form costs
 * 2^16 steps per character, under the per-attempt limit, so only the budget per encode
 * call stops it; without [\s\S] the pattern never matches and every start position
 * backtracks (PCRE2 resets its match limit per start position). */
#define HOSTILE_22 "(?:(?:a|a){1,22}Z)|[\\s\\S]"
#define HOSTILE_15 "(?:(?:a|a){1,15}Z)|[\\s\\S]"
#define HOSTILE_NEVER "(?:(?:a|a){1,15}Z)"
#define HOSTILE_CHILD_SECONDS 60 /* an encode without limits is killed after this */

/* The pre_tokenizer of Qwen2.5 with its Split regex replaced by `regex`. */
static char *hostile_pre_json(const char *regex) {
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_puts(&sb, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":");
    flm_sb_json_string(&sb, regex, strlen(regex), false);
    flm_sb_puts(&sb, "},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                 "\"trim_offsets\":false,\"use_regex\":false}]}");
    return flm_sb_take(&sb);
}

/* Writes dir/tokenizer.json: the bundled tokenizer.json with its Split regex replaced. */
static bool write_hostile_tokenizer_json(const char *dir, const char *regex) {
    char *text;
    size_t len;
    if (flm_read_file(BUNDLED_MODEL "/tokenizer.json", &text, &len)) return false;
    char *key = strstr(text, "\"Regex\": \"(?i:'s");
    char *start = key ? strchr(key + 8, '"') : NULL, *end = start ? start + 1 : NULL;
    while (end && *end && *end != '"') end += *end == '\\' ? 2 : 1;
    bool ok = end && *end == '"';
    if (ok) {
        strbuf sb;
        flm_sb_init(&sb);
        flm_sb_append(&sb, text, (size_t)(start - text));
        flm_sb_json_string(&sb, regex, strlen(regex), false);
        flm_sb_puts(&sb, end + 1);
        char path[512];
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        mkdir(dir, 0755);
        FILE *f = fopen(path, "wb");
        ok = f && !sb.oom && fwrite(sb.data, 1, sb.len, f) == sb.len;
        if (f) ok = fclose(f) == 0 && ok;
        flm_sb_free(&sb);
    }
    free(text);
    return ok;
}

/* Encodes text in a child process (an encode without limits would take minutes: the
 * child is killed after HOSTILE_CHILD_SECONDS). Returns 0 if encode failed within
 * max_s seconds with a message containing every string of `want` (NULL-terminated);
 * 1 if it succeeded, 2 if the message differs (printed), 3 if it was too slow, -1 if
 * it was killed. */
static int encode_fails_fast(const flm_tokenizer *tok, const char *text, size_t len, double max_s, const char *const *want) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -2;
    if (pid == 0) {
        alarm(HOSTILE_CHILD_SECONDS);
        int32_t *ids;
        size_t n;
        double t0 = flm_now_seconds();
        int rc = flm_tokenizer_encode(tok, text, len, &ids, &n);
        double dt = flm_now_seconds() - t0;
        if (rc == FLM_OK) _exit(1);
        for (const char *const *w = want; *w; w++)
            if (!strstr(flm_last_error(), *w)) {
                fprintf(stderr, "message: %s\nlacks: %s\n", flm_last_error(), *w);
                _exit(2);
            }
        if (dt > max_s) {
            fprintf(stderr, "encode took %.2f s: %s\n", dt, flm_last_error());
            _exit(3);
        }
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) return -2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *repeat_char(char c, size_t n, const char *tail) {
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    memset(s, c, n);
    memcpy(s + n, tail, t + 1);
    return s;
}

TEST(tokenizer_regex_limits_stop_catastrophic_backtracking) {
    REQUIRE(bundled());
    char *a100k = repeat_char('a', 100000, ""), *a20k = repeat_char('a', 20000, ""), *never = repeat_char('a', 20000, "bZ");
    /* from tokenizer.json */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hostile-json", test_tmpdir());
    REQUIRE(write_hostile_tokenizer_json(dir, HOSTILE_22));
    flm_tokenizer *tok;
    REQUIRE(flm_load_tokenizer(dir, &tok) == FLM_OK);
    const char *want22[] = {"tokenizer: pre-tokenizer pattern 1 \"" HOSTILE_22 "\" exceeded its matching budget on a 100000-byte input",
                            "catastrophic backtracking", NULL};
    CHECK_EQ_INT(encode_fails_fast(tok, a100k, 100000, 1.0, want22), 0);
    /* the limits are per call: the same tokenizer still encodes (one id a character here) */
    int32_t *ids;
    size_t n;
    CHECK(flm_tokenizer_encode(tok, "Hello", 5, &ids, &n) == FLM_OK && n == 5);
    free(ids);
    flm_tokenizer_free(tok);

    /* from a spec (what a .gguf package gives), for each hostile form */
    const struct { const char *regex, *input; size_t len; const char *want; } cases[] = {
        {HOSTILE_22, a100k, 100000, "exceeded its matching budget on a 100000-byte input (one match attempt"},
        {HOSTILE_15, a20k, 20000, "exceeded its matching budget on a 20000-byte input ("},
        {HOSTILE_NEVER, never, 20002, "exceeded its matching budget on a 20002-byte input ("},
    };
    flm_tokenizer_spec spec;
    flm_tokenizer_get_spec(g_tok, &spec);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *pre = hostile_pre_json(cases[i].regex);
        spec.pre_tokenizer_json = pre;
        REQUIRE(flm_tokenizer_from_spec(&spec, &tok) == FLM_OK);
        const char *want[] = {cases[i].want, "catastrophic backtracking", cases[i].regex, NULL};
        CHECK_MSG(encode_fails_fast(tok, cases[i].input, cases[i].len, 1.0, want) == 0, "hostile pattern %s", cases[i].regex);
        flm_tokenizer_free(tok);
        free(pre);
    }
    free(a100k);
    free(a20k);
    free(never);
}

/* The real Qwen2.5 pattern on long runs of one character class and on mixed scripts:
 * none comes near the limits (its worst is 32 of the 256 steps a byte allows: one
 * first try per one-byte match, e.g. digits). Fails if the limits are set too tight. */
TEST(tokenizer_regex_limits_leave_real_text_alone) {
    REQUIRE(bundled());
    const size_t N = 100000;
    static const char *const units[] = {" ", "\n", "\t", "7", "x", "!", "'s", "1a", " !", "\r\n", "\xC2\xA0", "\xE3\x80\x80",
                                        "\xE0\xA4\x95\xE0\xA4\xBF", /* कि */ "a ", "  a"};
    strbuf sb;
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
        flm_sb_init(&sb);
        while (sb.len < N) flm_sb_puts(&sb, units[u]);
        CHECK_MSG(round_trip(g_tok, sb.data, sb.len), "a %zu-byte run of '%s' fails: %s", sb.len, units[u], flm_last_error());
        flm_sb_puts(&sb, "x"); /* the long whitespace match backtracks one character */
        CHECK_MSG(round_trip(g_tok, sb.data, sb.len), "a run of '%s' then x fails: %s", units[u], flm_last_error());
        flm_sb_free(&sb);
    }
    /* random mixes: Indic scripts with their marks, whitespace kinds, digits, any code point */
    static const uint32_t pools[][4][2] = {
        {{0x0900, 0x097F}, {0x0A00, 0x0A7F}, {0x0C00, 0x0C7F}, {0x0B80, 0x0BFF}},
        {{0x09, 0x0D}, {0x20, 0x20}, {0x2000, 0x200A}, {0x3000, 0x3000}},
        {{0x30, 0x39}, {0x660, 0x669}, {0x20, 0x20}, {0x21, 0x2F}},
        {{0x01, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, 0x10FFFF}, {0x20, 0x7E}},
    };
    for (size_t p = 0; p < sizeof pools / sizeof *pools; p++) {
        flm_sb_init(&sb);
        while (sb.len < N) {
            const uint32_t *r = pools[p][rnd() % 4];
            utf8proc_uint8_t u[4];
            flm_sb_append(&sb, (const char *)u, (size_t)utf8proc_encode_char((utf8proc_int32_t)(r[0] + rnd() % (r[1] - r[0] + 1)), u));
        }
        CHECK_MSG(round_trip(g_tok, sb.data, sb.len), "random mix %zu fails: %s", p, flm_last_error());
        flm_sb_free(&sb);
    }
}

/* The limits reach the CLI as an error exit with the message: tokenize from a
 * tokenizer.json, run from a model folder, tokenize from a converted .gguf package. */
TEST(tokenizer_regex_limits_cli) {
    const char *tmp = test_tmpdir(), *bin = test_bin();
    char model[512], cmd[4096], *out, *err;
    snprintf(model, sizeof model, "%s/hostile-model", tmp);
    REQUIRE(write_hostile_tokenizer_json(model, HOSTILE_22));
    snprintf(cmd, sizeof cmd,
             "for f in config.json generation_config.json model.safetensors; do ln -sf \"$PWD/" TEST_DATA "/tiny-qwen2/$f\" %s/; done"
             " && ln -sf \"$PWD/" BUNDLED_MODEL "/tokenizer_config.json\" %s/ && head -c 100000 /dev/zero | tr '\\0' a > %s/a100k.txt"
             " && %s convert %s -o %s/hostile.gguf",
             model, model, tmp, bin, model, tmp);
    REQUIRE(test_run(cmd, &out, &err) == 0);
    free(out); free(err);
    char cmds[3][1024];
    snprintf(cmds[0], sizeof cmds[0], "timeout 60 %s tokenize -m %s/tokenizer.json < %s/a100k.txt", bin, model, tmp);
    snprintf(cmds[1], sizeof cmds[1], "timeout 60 %s run -m %s -n 1 --seed 1 -p aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", bin, model);
    snprintf(cmds[2], sizeof cmds[2], "timeout 60 %s tokenize -m %s/hostile.gguf < %s/a100k.txt", bin, tmp, tmp);
    for (size_t i = 0; i < 3; i++) {
        int rc = test_run(cmds[i], &out, &err);
        CHECK_MSG(rc == 1, "'%s' exited %d", cmds[i], rc);
        CHECK_MSG(err && strstr(err, "pre-tokenizer pattern 1 \"" HOSTILE_22 "\" exceeded its matching budget") &&
                      strstr(err, "catastrophic backtracking"),
                  "'%s' printed: %s", cmds[i], err ? err : "");
        free(out); free(err);
    }
}
