/* package.c — package metadata: writing every asset a model needs into GGUF keys,
 * and reading them back as the neutral inputs of the layers below: a flm_config, a
 * flm_tokenizer_spec, template sources, generation_config.json fields. */
#include "package/package.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/json.h"

/* llama.cpp token types (gguf-py constants.py TokenType). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* llama.cpp general.file_type (LlamaFileType): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_BF16 32. */
static int file_type_id(const char *t) {
    if (!t) return -1;
    if (!strcmp(t, "f32")) return 0;
    if (!strcmp(t, "f16")) return 1;
    if (!strcmp(t, "q4_0")) return 2;
    if (!strcmp(t, "q8_0")) return 7;
    if (!strcmp(t, "bf16")) return 32;
    return -1;
}

/* ---- writing ---- */

static int write_tokenizer(flm_gguf_writer *w, const flm_config *cfg, const flm_tokenizer *tok, const flm_gen_config *gen) {
    flm_tokenizer_spec sp;
    flm_tokenizer_get_spec(tok, &sp);
    size_t n = (size_t)cfg->vocab_size;
    if (sp.n_vocab > n) n = sp.n_vocab;
    for (size_t i = 0; i < sp.n_added; i++)
        if ((size_t)sp.added[i].id >= n) n = (size_t)sp.added[i].id + 1;
    const char **tokens = flm_calloc(n, sizeof *tokens);
    int32_t *types = flm_calloc(n, sizeof *types);
    char **pads = flm_calloc(n, sizeof *pads);
    int rc = (tokens && types && pads) ? FLM_OK : FLM_ERR_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        if (i < sp.n_vocab && sp.vocab[i]) { tokens[i] = sp.vocab[i]; types[i] = TT_NORMAL; }
    }
    for (size_t i = 0; !rc && i < sp.n_added; i++) {
        tokens[sp.added[i].id] = sp.added[i].content;
        types[sp.added[i].id] = sp.added[i].special ? TT_CONTROL : TT_USER_DEFINED;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        if (tokens[i]) continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%zu]", i); /* llama.cpp's filler for unused ids */
        pads[i] = flm_strdup(buf);
        if (!pads[i]) { rc = FLM_ERR_NOMEM; break; }
        tokens[i] = pads[i];
        types[i] = TT_UNUSED;
    }
    if (!rc) rc = flm_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    if (!rc) rc = flm_gguf_writer_add_str(w, "tokenizer.ggml.pre", "qwen2");
    if (!rc) rc = flm_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", tokens, n);
    if (!rc) rc = flm_gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n);
    if (!rc) rc = flm_gguf_writer_add_str_array(w, "tokenizer.ggml.merges", sp.merges, sp.n_merges);
    int32_t eos = cfg->n_eos ? cfg->eos_token_ids[0] : (gen->n_eos ? gen->eos_ids[0] : -1);
    int32_t bos = cfg->bos_token_id >= 0 ? cfg->bos_token_id : gen->bos_id;
    int32_t pad = gen->pad_id >= 0 ? gen->pad_id : bos;
    if (!rc && eos >= 0) rc = flm_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (!rc && bos >= 0) rc = flm_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (!rc && pad >= 0) rc = flm_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    if (!rc) rc = flm_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false);
    /* the exact Hugging Face configuration, so the tokenizer behaves as the original */
    if (!rc && sp.normalizer_json) rc = flm_gguf_writer_add_str(w, "fieldlm.tokenizer.normalizer", sp.normalizer_json);
    if (!rc && sp.pre_tokenizer_json) rc = flm_gguf_writer_add_str(w, "fieldlm.tokenizer.pre_tokenizer", sp.pre_tokenizer_json);
    if (!rc && sp.decoder_json) rc = flm_gguf_writer_add_str(w, "fieldlm.tokenizer.decoder", sp.decoder_json);
    if (!rc) rc = flm_gguf_writer_add_bool(w, "fieldlm.tokenizer.ignore_merges", sp.ignore_merges);
    if (!rc) {
        strbuf sb;
        flm_sb_init(&sb);
        flm_sb_putc(&sb, '[');
        for (size_t i = 0; i < sp.n_added; i++) {
            const flm_added_token *a = &sp.added[i];
            flm_sb_printf(&sb, "%s{\"id\":%d,\"content\":", i ? "," : "", a->id);
            flm_sb_json_string(&sb, a->content, strlen(a->content), false);
            flm_sb_printf(&sb, ",\"special\":%s,\"lstrip\":%s,\"rstrip\":%s,\"single_word\":%s,\"normalized\":%s}",
                      a->special ? "true" : "false", a->lstrip ? "true" : "false", a->rstrip ? "true" : "false",
                      a->single_word ? "true" : "false", a->normalized ? "true" : "false");
        }
        flm_sb_putc(&sb, ']');
        rc = sb.oom ? FLM_ERR_NOMEM : flm_gguf_writer_add_str(w, "fieldlm.tokenizer.added_tokens", flm_sb_cstr(&sb));
        flm_sb_free(&sb);
    }
    for (size_t i = 0; pads && i < n; i++) free(pads[i]);
    free(pads);
    free(tokens);
    free(types);
    return rc;
}

static int write_generation(flm_gguf_writer *w, const flm_config *cfg, const flm_gen_config *g, const flm_tokenizer *tok) {
    int rc = FLM_OK;
    uint32_t f = g->from_file;
    if (!rc && (f & FLM_GEN_DO_SAMPLE)) rc = flm_gguf_writer_add_bool(w, "fieldlm.generation.do_sample", g->do_sample);
    if (!rc && (f & FLM_GEN_TEMPERATURE)) rc = flm_gguf_writer_add_f64(w, "fieldlm.generation.temperature", g->temperature);
    if (!rc && (f & FLM_GEN_TOP_K)) rc = flm_gguf_writer_add_i32(w, "fieldlm.generation.top_k", g->top_k);
    if (!rc && (f & FLM_GEN_TOP_P)) rc = flm_gguf_writer_add_f64(w, "fieldlm.generation.top_p", g->top_p);
    if (!rc && (f & FLM_GEN_MIN_P)) rc = flm_gguf_writer_add_f64(w, "fieldlm.generation.min_p", g->min_p);
    if (!rc && (f & FLM_GEN_REPETITION_PENALTY)) rc = flm_gguf_writer_add_f64(w, "fieldlm.generation.repetition_penalty", g->repetition_penalty);
    if (!rc && (f & FLM_GEN_MAX_NEW_TOKENS)) rc = flm_gguf_writer_add_i64(w, "fieldlm.generation.max_new_tokens", g->max_new_tokens);
    if (!rc && (f & FLM_GEN_MAX_LENGTH)) rc = flm_gguf_writer_add_i64(w, "fieldlm.generation.max_length", g->max_length);
    if (!rc && (f & FLM_GEN_BOS)) rc = flm_gguf_writer_add_i32(w, "fieldlm.generation.bos_token_id", g->bos_id);
    if (!rc && (f & FLM_GEN_PAD)) rc = flm_gguf_writer_add_i32(w, "fieldlm.generation.pad_token_id", g->pad_id);
    /* every stop id: generation_config.json's, config.json's and the tokenizer's eos */
    int32_t ids[FLM_GEN_MAX_EOS + 8];
    (void)tok;
    int n = flm_gen_config_eos_ids(g, -1, ids, FLM_GEN_MAX_EOS);
    if (n < 0) n = 0;
    for (int i = 0; i < cfg->n_eos && n < FLM_GEN_MAX_EOS + 8; i++) {
        bool dup = false;
        for (int j = 0; j < n; j++) dup |= ids[j] == cfg->eos_token_ids[i];
        if (!dup && cfg->eos_token_ids[i] >= 0) ids[n++] = cfg->eos_token_ids[i];
    }
    if (!rc && n > 0) rc = flm_gguf_writer_add_array(w, "fieldlm.eos_token_ids", GGUF_TYPE_INT32, ids, (size_t)n);
    return rc;
}

static int write_template(flm_gguf_writer *w, const flm_template_source *t) {
    int rc = FLM_OK;
    for (size_t i = 0; !rc && i < t->n; i++) {
        if (!strcmp(t->templates[i].name, "default")) {
            rc = flm_gguf_writer_add_strn(w, "tokenizer.chat_template", t->templates[i].text, t->templates[i].len);
        } else {
            char key[256];
            snprintf(key, sizeof key, "tokenizer.chat_template.%s", t->templates[i].name);
            rc = flm_gguf_writer_add_strn(w, key, t->templates[i].text, t->templates[i].len);
        }
    }
    if (!rc && t->vars) {
        strbuf sb;
        flm_sb_init(&sb);
        flm_json_write(&sb, flm_json_root(t->vars), false);
        rc = sb.oom ? FLM_ERR_NOMEM : flm_gguf_writer_add_str(w, "fieldlm.chat_template_vars", flm_sb_cstr(&sb));
        flm_sb_free(&sb);
    }
    return rc;
}

int flm_package_write_metadata(flm_gguf_writer *w, const flm_config *cfg, const flm_tokenizer *tok,
                               const flm_template_source *tmpl, const flm_gen_config *gen,
                               const flm_package_provenance *prov) {
    int rc = flm_gguf_writer_add_str(w, "general.architecture", "qwen2");
    if (!rc) rc = flm_gguf_writer_add_str(w, "general.name", "fieldlm package");
    int ft = file_type_id(prov ? prov->file_type : NULL);
    if (!rc && ft >= 0) rc = flm_gguf_writer_add_u32(w, "general.file_type", (uint32_t)ft);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.context_length", (uint32_t)cfg->max_position_embeddings);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.embedding_length", (uint32_t)cfg->hidden_size);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.block_count", (uint32_t)cfg->n_layers);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.feed_forward_length", (uint32_t)cfg->intermediate_size);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.attention.head_count", (uint32_t)cfg->n_heads);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.attention.head_count_kv", (uint32_t)cfg->n_kv_heads);
    if (!rc) rc = flm_gguf_writer_add_f32(w, "qwen2.rope.freq_base", (float)cfg->rope_theta);
    if (!rc) rc = flm_gguf_writer_add_f32(w, "qwen2.attention.layer_norm_rms_epsilon", (float)cfg->rms_norm_eps);
    if (!rc && cfg->head_dim * cfg->n_heads != cfg->hidden_size) {
        rc = flm_gguf_writer_add_u32(w, "qwen2.attention.key_length", (uint32_t)cfg->head_dim);
        if (!rc) rc = flm_gguf_writer_add_u32(w, "qwen2.attention.value_length", (uint32_t)cfg->head_dim);
    }
    /* exact values (the qwen2.* floats above are f32 as llama.cpp expects) */
    if (!rc) rc = flm_gguf_writer_add_f64(w, "fieldlm.rope_theta", cfg->rope_theta);
    if (!rc) rc = flm_gguf_writer_add_f64(w, "fieldlm.rms_norm_eps", cfg->rms_norm_eps);
    if (!rc) rc = flm_gguf_writer_add_u32(w, "fieldlm.format_version", 1);
    if (!rc) rc = flm_gguf_writer_add_str(w, "fieldlm.converter", "fieldlm " FLM_VERSION);
    if (!rc && tok) rc = write_tokenizer(w, cfg, tok, gen);
    if (!rc && tmpl) rc = write_template(w, tmpl);
    if (!rc) rc = write_generation(w, cfg, gen, tok);
    if (!rc && prov) {
        if (prov->source_dtype && prov->source_dtype[0]) rc = flm_gguf_writer_add_str(w, "fieldlm.source.dtype", prov->source_dtype);
        if (!rc && prov->n_source_files) rc = flm_gguf_writer_add_str_array(w, "fieldlm.source.files", prov->source_files, prov->n_source_files);
        if (!rc && prov->n_adapters) rc = flm_gguf_writer_add_str_array(w, "fieldlm.lora.adapters", prov->adapters, prov->n_adapters);
    }
    return rc;
}

/* ---- reading ---- */

static int get_u32_req(const flm_gguf_file *g, const char *key, int *out) {
    uint32_t v;
    if (flm_gguf_get_u32(g, key, &v) != FLM_OK) return flm_fail(FLM_ERR_FORMAT, "%s: missing or non-integer key %s", flm_gguf_name(g), key);
    if (v > 1000000000u) return flm_fail(FLM_ERR_FORMAT, "%s: %s = %u is out of range (allowed: up to 1000000000)", flm_gguf_name(g), key, v);
    *out = (int)v;
    return FLM_OK;
}

/* An optional count: *out unchanged when the key is absent. */
static int get_u32_opt(const flm_gguf_file *g, const char *key, int *out) {
    return flm_gguf_find(g, key) ? get_u32_req(g, key, out) : FLM_OK;
}

int flm_package_config(const flm_gguf_file *g, flm_config *c) {
    memset(c, 0, sizeof *c);
    const char *arch = NULL;
    if (flm_gguf_get_str(g, "general.architecture", &arch) != FLM_OK)
        return flm_fail(FLM_ERR_FORMAT, "%s: missing general.architecture", flm_gguf_name(g));
    if (strcmp(arch, "qwen2") != 0)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (fieldlm runs \"qwen2\")", flm_gguf_name(g), arch);
    snprintf(c->model_type, sizeof c->model_type, "qwen2");
    int rc;
    if ((rc = get_u32_req(g, "qwen2.context_length", &c->max_position_embeddings)) ||
        (rc = get_u32_req(g, "qwen2.embedding_length", &c->hidden_size)) ||
        (rc = get_u32_req(g, "qwen2.block_count", &c->n_layers)) ||
        (rc = get_u32_req(g, "qwen2.feed_forward_length", &c->intermediate_size)) ||
        (rc = get_u32_req(g, "qwen2.attention.head_count", &c->n_heads)))
        return rc;
    c->n_kv_heads = c->n_heads;
    uint32_t v;
    if ((rc = get_u32_opt(g, "qwen2.attention.head_count_kv", &c->n_kv_heads))) return rc;
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->hidden_size <= 0 || c->n_layers <= 0 || c->intermediate_size <= 0 ||
        c->n_heads % c->n_kv_heads)
        return flm_fail(FLM_ERR_FORMAT, "%s: inconsistent qwen2.* hyper-parameters", flm_gguf_name(g));
    c->head_dim = c->hidden_size / c->n_heads;
    if ((rc = get_u32_opt(g, "qwen2.attention.key_length", &c->head_dim))) return rc;
    if (c->head_dim <= 0 || c->head_dim % 2) return flm_fail(FLM_ERR_FORMAT, "%s: bad head dimension %d", flm_gguf_name(g), c->head_dim);
    double d;
    float f;
    /* the exact f64 keys first, else llama.cpp's f32 ones, else transformers' defaults */
    const char *theta_key = "fieldlm.rope_theta", *eps_key = "fieldlm.rms_norm_eps";
    c->rope_theta = 10000.0;
    if (flm_gguf_get_f64(g, theta_key, &d) == FLM_OK) c->rope_theta = d;
    else if (flm_gguf_get_f32(g, (theta_key = "qwen2.rope.freq_base"), &f) == FLM_OK) c->rope_theta = f;
    c->rms_norm_eps = 1e-6;
    if (flm_gguf_get_f64(g, eps_key, &d) == FLM_OK) c->rms_norm_eps = d;
    else if (flm_gguf_get_f32(g, (eps_key = "qwen2.attention.layer_norm_rms_epsilon"), &f) == FLM_OK) c->rms_norm_eps = f;
    if ((rc = flm_config_check_positive(c->rope_theta, flm_gguf_name(g), theta_key)) ||
        (rc = flm_config_check_positive(c->rms_norm_eps, flm_gguf_name(g), eps_key)))
        return rc;
    const flm_gguf_tensor_info *emb = flm_gguf_tensor_find(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return flm_fail(FLM_ERR_FORMAT, "%s: tensor token_embd.weight is missing", flm_gguf_name(g));
    if (emb->shape[0] < 1 || emb->shape[0] > 1000000000)
        return flm_fail(FLM_ERR_FORMAT, "%s: token_embd.weight has %lld rows (allowed: 1..1000000000)", flm_gguf_name(g),
                        (long long)emb->shape[0]);
    c->vocab_size = (int)emb->shape[0];
    c->tie_word_embeddings = flm_gguf_tensor_find(g, "output.weight") == NULL;
    c->bos_token_id = -1;
    if (flm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v) == FLM_OK) c->bos_token_id = (int)v;
    const flm_gguf_value *arr;
    if (flm_gguf_get_array(g, "fieldlm.eos_token_ids", GGUF_TYPE_COUNT, &arr) == FLM_OK) {
        for (uint64_t i = 0; i < flm_gguf_array_len(arr) && c->n_eos < 8; i++) {
            int64_t x;
            if (flm_gguf_array_i64(arr, i, &x) == FLM_OK) c->eos_token_ids[c->n_eos++] = (int)x;
        }
    } else if (flm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v) == FLM_OK) {
        c->eos_token_ids[c->n_eos++] = (int)v;
    }
    const char *dt = NULL;
    if (flm_gguf_get_str(g, "fieldlm.source.dtype", &dt) == FLM_OK) snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt);
    return FLM_OK;
}

static const char *opt_str(const flm_gguf_file *g, const char *key) {
    const char *s = NULL;
    return flm_gguf_get_str(g, key, &s) == FLM_OK ? s : NULL;
}

int flm_package_tokenizer(const flm_gguf_file *g, flm_tokenizer **out) {
    *out = NULL;
    const char *model = opt_str(g, "tokenizer.ggml.model");
    if (!model) return flm_fail(FLM_ERR_FORMAT, "%s: no tokenizer (tokenizer.ggml.model is missing)", flm_gguf_name(g));
    if (strcmp(model, "gpt2") != 0)
        return flm_fail(FLM_ERR_UNSUPPORTED, "%s: tokenizer model \"%s\" is not supported (byte-level BPE \"gpt2\" only)", flm_gguf_name(g), model);
    const flm_gguf_value *toks, *merges, *types = NULL;
    if (flm_gguf_get_array(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks) != FLM_OK)
        return flm_fail(FLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing", flm_gguf_name(g));
    if (flm_gguf_get_array(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges) != FLM_OK)
        return flm_fail(FLM_ERR_FORMAT, "%s: tokenizer.ggml.merges is missing", flm_gguf_name(g));
    flm_gguf_get_array(g, "tokenizer.ggml.token_type", GGUF_TYPE_COUNT, &types);
    size_t n = (size_t)flm_gguf_array_len(toks), nm = (size_t)flm_gguf_array_len(merges);
    if (types && flm_gguf_array_len(types) != n) return flm_fail(FLM_ERR_FORMAT, "%s: token_type has %llu entries, tokens %zu", flm_gguf_name(g), (unsigned long long)flm_gguf_array_len(types), n);
    flm_tokenizer_spec sp;
    memset(&sp, 0, sizeof sp);
    const char **vocab = flm_calloc(n, sizeof *vocab);
    const char **mg = flm_calloc(nm ? nm : 1, sizeof *mg);
    flm_added_token *added = flm_calloc(n, sizeof *added);
    flm_json_doc *added_doc = NULL;
    int rc = (vocab && mg && added) ? FLM_OK : FLM_ERR_NOMEM;
    size_t n_added = 0;
    const char *added_json = opt_str(g, "fieldlm.tokenizer.added_tokens");
    if (!rc && added_json) {
        added_doc = flm_json_parse(added_json, strlen(added_json), "fieldlm.tokenizer.added_tokens");
        const flm_json *a = flm_json_root(added_doc);
        if (!a || a->type != JSON_ARRAY) rc = flm_fail(FLM_ERR_FORMAT, "%s: fieldlm.tokenizer.added_tokens is not a JSON array", flm_gguf_name(g));
        for (size_t i = 0; !rc && i < a->len; i++) {
            const flm_json *e = &a->items[i];
            int64_t id = flm_json_int(flm_json_get(e, "id"), -1);
            const char *content = flm_json_string(flm_json_get(e, "content"), NULL);
            if (id < 0 || (size_t)id >= n || !content) { rc = flm_fail(FLM_ERR_FORMAT, "%s: bad added token #%zu", flm_gguf_name(g), i); break; }
            added[n_added++] = (flm_added_token){(int32_t)id, content, flm_json_bool(flm_json_get(e, "special"), false),
                                                 flm_json_bool(flm_json_get(e, "lstrip"), false), flm_json_bool(flm_json_get(e, "rstrip"), false),
                                                 flm_json_bool(flm_json_get(e, "single_word"), false), flm_json_bool(flm_json_get(e, "normalized"), false)};
        }
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const char *s;
        uint64_t len;
        if (flm_gguf_array_str(toks, i, &s, &len) != FLM_OK) { rc = flm_fail(FLM_ERR_FORMAT, "%s: bad token %zu", flm_gguf_name(g), i); break; }
        int64_t type = TT_NORMAL;
        if (types) flm_gguf_array_i64(types, i, &type);
        bool is_added = false;
        for (size_t k = 0; k < n_added && !is_added; k++) is_added = added[k].id == (int32_t)i;
        if (is_added || type == TT_UNUSED) continue;
        if (type == TT_CONTROL || type == TT_USER_DEFINED) {
            if (added_json) continue; /* the JSON list is authoritative */
            /* llama.cpp files: control = special added token, user-defined = normal added token */
            added[n_added++] = (flm_added_token){(int32_t)i, s, type == TT_CONTROL, false, false, false, type != TT_CONTROL};
            continue;
        }
        vocab[i] = s;
    }
    for (size_t i = 0; !rc && i < nm; i++) {
        uint64_t len;
        if (flm_gguf_array_str(merges, i, &mg[i], &len) != FLM_OK) rc = flm_fail(FLM_ERR_FORMAT, "%s: bad merge %zu", flm_gguf_name(g), i);
    }
    if (!rc) {
        /* the model vocabulary ends at its last normal token: padding ids ([PADn],
         * added for llama.cpp's tensor shapes) are not part of the tokenizer */
        size_t n_model = n;
        while (n_model > 0 && !vocab[n_model - 1]) n_model--;
        sp.vocab = vocab;
        sp.n_vocab = n_model;
        sp.merges = mg;
        sp.n_merges = nm;
        sp.added = added;
        sp.n_added = n_added;
        sp.normalizer_json = opt_str(g, "fieldlm.tokenizer.normalizer");
        sp.pre_tokenizer_json = opt_str(g, "fieldlm.tokenizer.pre_tokenizer");
        sp.decoder_json = opt_str(g, "fieldlm.tokenizer.decoder");
        bool im = false;
        if (flm_gguf_get_bool(g, "fieldlm.tokenizer.ignore_merges", &im) == FLM_OK) sp.ignore_merges = im;
        if (!sp.pre_tokenizer_json) {
            const char *pre = opt_str(g, "tokenizer.ggml.pre");
            rc = flm_tokenizer_preset(pre ? pre : "gpt2", &sp);
            if (rc) rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: pre-tokenizer \"%s\" is not known to fieldlm (supported: qwen2, gpt2)", flm_gguf_name(g), pre ? pre : "?");
        }
    }
    if (!rc) rc = flm_tokenizer_from_spec(&sp, out);
    flm_json_free(added_doc);
    free(vocab);
    free(mg);
    free(added);
    return rc;
}

int flm_package_template(const flm_gguf_file *g, flm_template_source *out) {
    memset(out, 0, sizeof *out);
    int rc = FLM_OK;
    for (size_t i = 0; !rc && i < flm_gguf_kv_count(g); i++) {
        const flm_gguf_kv *kv = flm_gguf_kv_at(g, i);
        if (strncmp(kv->key, "tokenizer.chat_template", 23) != 0 || kv->value.type != GGUF_TYPE_STRING) continue;
        const char *name = kv->key[23] == '.' ? kv->key + 24 : kv->key[23] == 0 ? "default" : NULL;
        if (name) rc = flm_template_source_add(out, name, kv->value.s.str, (size_t)kv->value.s.len);
    }
    if (!rc && out->n == 0) rc = flm_fail(FLM_ERR_FORMAT, "%s: no chat template (tokenizer.chat_template)", flm_gguf_name(g));
    const char *vars = opt_str(g, "fieldlm.chat_template_vars");
    if (!rc && vars) {
        out->vars = flm_json_parse(vars, strlen(vars), "fieldlm.chat_template_vars");
        if (!out->vars) rc = FLM_ERR_FORMAT;
    }
    if (!rc) out->origin = flm_strdup(flm_gguf_name(g));
    if (rc) flm_template_source_free(out);
    return rc;
}

bool flm_package_has_generation(const flm_gguf_file *g) {
    for (size_t i = 0; i < flm_gguf_kv_count(g); i++)
        if (!strncmp(flm_gguf_kv_at(g, i)->key, "fieldlm.generation.", 19)) return true;
    return false;
}

int flm_package_gen_config(const flm_gguf_file *g, flm_gen_config *out) {
    /* Rebuild the generation_config.json fields the package carries and parse them
     * with the same reader, so defaults and provenance bits behave identically. */
    static const struct { const char *key, *json; } F[] = {
        {"fieldlm.generation.do_sample", "do_sample"}, {"fieldlm.generation.temperature", "temperature"},
        {"fieldlm.generation.top_k", "top_k"}, {"fieldlm.generation.top_p", "top_p"},
        {"fieldlm.generation.min_p", "min_p"}, {"fieldlm.generation.repetition_penalty", "repetition_penalty"},
        {"fieldlm.generation.max_new_tokens", "max_new_tokens"}, {"fieldlm.generation.max_length", "max_length"},
        {"fieldlm.generation.bos_token_id", "bos_token_id"}, {"fieldlm.generation.pad_token_id", "pad_token_id"},
    };
    strbuf sb;
    flm_sb_init(&sb);
    flm_sb_putc(&sb, '{');
    int n = 0;
    for (size_t i = 0; i < sizeof F / sizeof *F; i++) {
        const flm_gguf_value *v = flm_gguf_find(g, F[i].key);
        if (!v) continue;
        flm_sb_printf(&sb, "%s\"%s\": ", n++ ? ", " : "", F[i].json);
        if (v->type == GGUF_TYPE_BOOL) flm_sb_puts(&sb, v->num.b ? "true" : "false");
        else if (v->type == GGUF_TYPE_FLOAT32 || v->type == GGUF_TYPE_FLOAT64) flm_sb_printf(&sb, "%.17g", v->num.f);
        else if (v->type == GGUF_TYPE_INT8 || v->type == GGUF_TYPE_INT16 || v->type == GGUF_TYPE_INT32 || v->type == GGUF_TYPE_INT64) flm_sb_printf(&sb, "%lld", (long long)v->num.i);
        else flm_sb_printf(&sb, "%llu", (unsigned long long)v->num.u);
    }
    const flm_gguf_value *arr;
    if (flm_gguf_get_array(g, "fieldlm.eos_token_ids", GGUF_TYPE_COUNT, &arr) == FLM_OK) {
        flm_sb_printf(&sb, "%s\"eos_token_id\": [", n++ ? ", " : "");
        for (uint64_t i = 0; i < flm_gguf_array_len(arr); i++) {
            int64_t x = -1;
            flm_gguf_array_i64(arr, i, &x);
            flm_sb_printf(&sb, "%s%lld", i ? ", " : "", (long long)x);
        }
        flm_sb_putc(&sb, ']');
    }
    flm_sb_putc(&sb, '}');
    int rc;
    if (sb.oom) rc = FLM_ERR_NOMEM;
    else if (!flm_package_has_generation(g)) {
        flm_gen_config_defaults(out);
        /* stop ids still come from the file's tokenizer */
        uint32_t eos;
        if (n && (rc = flm_gen_config_parse(sb.data, sb.len, flm_gguf_name(g), out)) != FLM_OK) { flm_sb_free(&sb); return rc; }
        if (n) { out->from_file &= ~(uint32_t)FLM_GEN_EOS; out->file_found = false; }
        if (out->n_eos == 0 && flm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos) == FLM_OK) out->eos_ids[out->n_eos++] = (int32_t)eos;
        rc = FLM_OK;
    } else {
        rc = flm_gen_config_parse(sb.data, sb.len, flm_gguf_name(g), out);
    }
    flm_sb_free(&sb);
    return rc;
}
