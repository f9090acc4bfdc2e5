/* test_source.c — a model path opened once (src/package/source.h): the folder-or-package
 * decision, one parse of a package shared by every asset, the one-asset loaders, and
 * what each refuses with which message. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "base/common.h"
#include "format/gguf.h"
#include "model/model.h"
#include "package/source.h"
#include "text/template.h"
#include "text/tokenizer.h"

#define PEER_GGUF TEST_DATA "/gguf-peer/kcc-advisor-q8_0.gguf"
#define MICRO TEST_DATA "/micro-qwen2"

static bool has(const char *haystack, const char *needle) { return haystack && strstr(haystack, needle); }

TEST(source_folder_is_not_parsed_as_a_package) {
    uint64_t before = flm_gguf_parse_count();
    flm_source src;
    REQUIRE(flm_source_open(BUNDLED_MODEL, &src) == FLM_OK);
    CHECK(src.gguf == NULL);
    CHECK_STR(src.path, BUNDLED_MODEL);
    flm_tokenizer *tok = NULL;
    flm_template_source tsrc;
    flm_gen_config gen;
    CHECK_MSG(flm_source_tokenizer(&src, &tok) == FLM_OK, "%s", flm_last_error());
    CHECK_MSG(flm_source_template(&src, &tsrc) == FLM_OK, "%s", flm_last_error());
    CHECK_MSG(flm_source_gen_config(&src, &gen) == FLM_OK, "%s", flm_last_error());
    CHECK(tok && flm_tokenizer_vocab_size(tok) > 150000);
    CHECK(tsrc.n > 0 && gen.file_found && gen.n_eos > 0);
    flm_tokenizer_free(tok);
    flm_template_source_free(&tsrc);
    flm_source_close(&src);
    CHECK(src.path == NULL && src.gguf == NULL);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 0);
}

TEST(source_package_assets_share_one_parse) {
    uint64_t before = flm_gguf_parse_count();
    flm_source src;
    REQUIRE(flm_source_open(PEER_GGUF, &src) == FLM_OK);
    REQUIRE(src.gguf != NULL);
    flm_model *m = NULL;
    flm_tokenizer *tok = NULL;
    flm_template_source tsrc;
    flm_gen_config gen;
    CHECK_MSG(flm_source_model(&src, NULL, &m) == FLM_OK, "%s", flm_last_error());
    CHECK_MSG(flm_source_tokenizer(&src, &tok) == FLM_OK, "%s", flm_last_error());
    CHECK_MSG(flm_source_template(&src, &tsrc) == FLM_OK, "%s", flm_last_error());
    CHECK_MSG(flm_source_gen_config(&src, &gen) == FLM_OK, "%s", flm_last_error());
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 1);
    flm_source_close(&src);
    /* the model holds its own reference to the parse: its weights outlive the source */
    REQUIRE(m != NULL);
    CHECK_STR(m->path, PEER_GGUF);
    CHECK_STR(m->cfg.model_type, "qwen2");
    CHECK(m->cfg.vocab_size > 0 && (size_t)m->cfg.vocab_size >= flm_tokenizer_vocab_size(tok));
    CHECK(m->embed.data && m->layers && m->layers[m->cfg.n_layers - 1].w_down.data);
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < m->layers[m->cfg.n_layers - 1].w_down.nbytes; i += 4096)
        sum ^= ((const uint8_t *)m->layers[m->cfg.n_layers - 1].w_down.data)[i];
    (void)sum;
    CHECK(tsrc.n > 0 && has(tsrc.origin, "kcc-advisor-q8_0.gguf"));
    CHECK(gen.n_eos > 0);
    flm_model_close(m);
    flm_tokenizer_free(tok);
    flm_template_source_free(&tsrc);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 1);
}

TEST(source_one_asset_loaders_parse_a_package_once_each) {
    uint64_t before = flm_gguf_parse_count();
    flm_tokenizer *tok = NULL;
    REQUIRE(flm_load_tokenizer(PEER_GGUF, &tok) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 1);
    flm_template_source tsrc;
    REQUIRE(flm_load_template(PEER_GGUF, &tsrc) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 2);
    flm_gen_config gen;
    REQUIRE(flm_load_gen_config(PEER_GGUF, &gen) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 3);
    /* the same assets from the folder the package was made from */
    flm_tokenizer *ftok = NULL;
    flm_template_source fsrc;
    REQUIRE(flm_load_tokenizer(BUNDLED_MODEL, &ftok) == FLM_OK);
    REQUIRE(flm_load_template(BUNDLED_MODEL, &fsrc) == FLM_OK);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 3);
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    const char *text = "Which crop suits black soil in the rabi season?";
    REQUIRE(flm_tokenizer_encode(tok, text, strlen(text), &a, &na) == FLM_OK);
    REQUIRE(flm_tokenizer_encode(ftok, text, strlen(text), &b, &nb) == FLM_OK);
    CHECK(na == nb && na > 0 && !memcmp(a, b, na * sizeof *a));
    const flm_named_template *pt = flm_template_source_pick(&tsrc, false, NULL);
    const flm_named_template *ft = flm_template_source_pick(&fsrc, false, NULL);
    CHECK(pt && ft && pt->len == ft->len && !memcmp(pt->text, ft->text, pt->len));
    free(a);
    free(b);
    flm_tokenizer_free(tok);
    flm_tokenizer_free(ftok);
    flm_template_source_free(&tsrc);
    flm_template_source_free(&fsrc);
    /* a tokenizer.json or generation_config.json file directly */
    REQUIRE(flm_load_tokenizer(BUNDLED_MODEL "/tokenizer.json", &tok) == FLM_OK);
    flm_tokenizer_free(tok);
    REQUIRE(flm_load_gen_config(MICRO "/generation_config.json", &gen) == FLM_OK);
    CHECK(gen.file_found);
    CHECK_EQ_INT(flm_gguf_parse_count() - before, 3);
}

TEST(source_refusals_keep_their_messages) {
    flm_source src;
    CHECK_EQ_INT(flm_source_open(NULL, &src), FLM_ERR_ARG);
    CHECK_EQ_INT(flm_source_open("/nonexistent/model", &src), FLM_ERR_IO);
    CHECK(has(flm_last_error(), "/nonexistent/model: no such file or folder"));
    CHECK(src.path == NULL && src.gguf == NULL);
    /* a file that is not a package: the GGUF reader's error */
    CHECK(flm_source_open(MICRO "/config.json", &src) != FLM_OK);
    CHECK(src.path == NULL && src.gguf == NULL);
    flm_model *m = NULL;
    CHECK(flm_load_model(MICRO "/config.json", NULL, &m) != FLM_OK && !m);
    /* a folder without config.json */
    CHECK_EQ_INT(flm_load_model(test_tmpdir(), NULL, &m), FLM_ERR_IO);
    CHECK(has(flm_last_error(), "no config.json (expected a Hugging Face model folder or a .gguf file)"));
    /* adapters are merged into a package by convert, not at load */
    const char *dirs[] = {TEST_DATA "/kcc-advisor-lora"};
    flm_model_options mo = {.lora_dirs = dirs, .n_lora = 1};
    CHECK_EQ_INT(flm_load_model(PEER_GGUF, &mo, &m), FLM_ERR_ARG);
    CHECK(!m && has(flm_last_error(), "--lora applies to Hugging Face folders"));
    /* one-asset loaders: a file that is neither their JSON nor a package */
    flm_tokenizer *tok = NULL;
    CHECK_EQ_INT(flm_load_tokenizer(MICRO "/model.safetensors", &tok), FLM_ERR_UNSUPPORTED);
    CHECK(!tok && has(flm_last_error(), "not a model folder or tokenizer.json"));
    CHECK_EQ_INT(flm_load_tokenizer(NULL, &tok), FLM_ERR_ARG);
    flm_template_source tsrc;
    CHECK_EQ_INT(flm_load_template(MICRO "/model.safetensors", &tsrc), FLM_ERR_UNSUPPORTED);
    CHECK(has(flm_last_error(), "not a Hugging Face model folder or a .gguf package"));
    CHECK_EQ_INT(flm_load_template("/nonexistent/model", &tsrc), FLM_ERR_IO);
    flm_gen_config gen;
    CHECK_EQ_INT(flm_load_gen_config(NULL, &gen), FLM_ERR_ARG);
    /* no generation_config.json (or none at that path): transformers' defaults */
    CHECK_EQ_INT(flm_load_gen_config("/nonexistent/generation_config.json", &gen), FLM_OK);
    CHECK(!gen.file_found && gen.top_k == 50);
}
