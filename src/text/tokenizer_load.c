/* tokenizer_load.c — reads Hugging Face tokenizer files into a flm_tokenizer_spec and
 * builds the tokenizer: tokenizer.json (merges as "a b" or ["a","b"]), or
 * vocab.json + merges.txt with added tokens from tokenizer_config.json
 * ("added_tokens_decoder") and added_tokens.json. A .gguf package is
 * read by src/package (its keys become a flm_tokenizer_spec); this file knows only
 * Hugging Face files. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/json.h"

#define MAX_TOKEN_ID (1 << 24)

typedef struct {
    const char **vocab; size_t n_vocab;
    const char **merges; size_t n_merges;
    flm_added_token *added; size_t n_added, cap_added;
    strbuf arena;         /* joined pair-form merges, as offsets until finished */
    size_t *merge_offs;   /* (n_merges) offsets into arena, or SIZE_MAX if borrowed */
    strbuf norm, pre, dec;
} spec_builder;

static void builder_free(spec_builder *b) {
    free(b->vocab); free(b->merges); free(b->added); free(b->merge_offs);
    flm_sb_free(&b->arena); flm_sb_free(&b->norm); flm_sb_free(&b->pre); flm_sb_free(&b->dec);
}

/* vocab object {"token": id} -> id-indexed array (borrowing the strings). */
static int read_vocab(spec_builder *b, const flm_json *v, const char *what) {
    if (!v || v->type != JSON_OBJECT) return flm_fail(FLM_ERR_FORMAT, "%s: vocab is not a JSON object", what);
    size_t n = 0;
    for (size_t i = 0; i < v->len; i++) {
        const flm_json *e = &v->items[i];
        int64_t id = flm_json_int(e, -1);
        if (e->type != JSON_NUMBER || !e->is_int || id < 0 || id >= MAX_TOKEN_ID)
            return flm_fail(FLM_ERR_FORMAT, "%s: vocab entry '%s' has a bad id", what, e->key);
        if ((size_t)id + 1 > n) n = (size_t)id + 1;
    }
    b->vocab = flm_calloc(n + 1, sizeof *b->vocab);
    if (!b->vocab) return FLM_ERR_NOMEM;
    b->n_vocab = n;
    for (size_t i = 0; i < v->len; i++) {
        const flm_json *e = &v->items[i];
        size_t id = (size_t)flm_json_int(e, 0);
        if (b->vocab[id]) return flm_fail(FLM_ERR_FORMAT, "%s: vocab ids repeat (%zu is '%s' and '%s')", what, id, b->vocab[id], e->key);
        if (strlen(e->key) != e->key_len) return flm_fail(FLM_ERR_FORMAT, "%s: vocab token %zu contains a NUL", what, id);
        b->vocab[id] = e->key;
    }
    return FLM_OK;
}

static int read_merges_json(spec_builder *b, const flm_json *m, const char *what) {
    if (!m || m->type != JSON_ARRAY) return flm_fail(FLM_ERR_FORMAT, "%s: model.merges is not an array", what);
    b->merges = flm_calloc(m->len + 1, sizeof *b->merges);
    b->merge_offs = flm_malloc((m->len + 1) * sizeof *b->merge_offs);
    if (!b->merges || !b->merge_offs) return FLM_ERR_NOMEM;
    b->n_merges = m->len;
    for (size_t i = 0; i < m->len; i++) {
        const flm_json *e = &m->items[i];
        b->merge_offs[i] = SIZE_MAX;
        if (e->type == JSON_STRING) {
            b->merges[i] = e->str;
        } else if (e->type == JSON_ARRAY && e->len == 2 && e->items[0].type == JSON_STRING &&
                   e->items[1].type == JSON_STRING) {
            b->merge_offs[i] = b->arena.len;
            flm_sb_append(&b->arena, e->items[0].str, e->items[0].len);
            flm_sb_putc(&b->arena, ' ');
            flm_sb_append(&b->arena, e->items[1].str, e->items[1].len + 1); /* with the NUL */
        } else {
            return flm_fail(FLM_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", what, i);
        }
    }
    if (b->arena.oom) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < b->n_merges; i++)
        if (b->merge_offs[i] != SIZE_MAX) b->merges[i] = b->arena.data + b->merge_offs[i];
    return FLM_OK;
}

static int push_added(spec_builder *b, const flm_added_token *a) {
    for (size_t i = 0; i < b->n_added; i++)
        if (b->added[i].id == a->id) { b->added[i] = *a; return FLM_OK; } /* later wins */
    if (b->n_added == b->cap_added) {
        size_t cap = b->cap_added ? b->cap_added * 2 : 32;
        flm_added_token *n = flm_realloc(b->added, cap * sizeof *n);
        if (!n) return FLM_ERR_NOMEM;
        b->added = n;
        b->cap_added = cap;
    }
    b->added[b->n_added++] = *a;
    return FLM_OK;
}

/* One added token object ({"content", "special", "lstrip", ...}); id given or in "id". */
static int read_added_obj(spec_builder *b, const flm_json *o, int64_t id, const char *what) {
    const flm_json *c = flm_json_get(o, "content");
    if (id < 0) id = flm_json_int(flm_json_get(o, "id"), -1);
    if (!c || c->type != JSON_STRING || id < 0 || id >= MAX_TOKEN_ID || strlen(c->str) != c->len)
        return flm_fail(FLM_ERR_FORMAT, "%s: an added token has no valid id or content", what);
    flm_added_token a = {
        .id = (int32_t)id, .content = c->str,
        .special = flm_json_bool(flm_json_get(o, "special"), false),
        .lstrip = flm_json_bool(flm_json_get(o, "lstrip"), false),
        .rstrip = flm_json_bool(flm_json_get(o, "rstrip"), false),
        .single_word = flm_json_bool(flm_json_get(o, "single_word"), false),
    };
    a.normalized = flm_json_bool(flm_json_get(o, "normalized"), !a.special);
    return push_added(b, &a);
}

static int build(spec_builder *b, bool ignore_merges, flm_tokenizer **out) {
    flm_tokenizer_spec spec = {
        .vocab = b->vocab, .n_vocab = b->n_vocab,
        .merges = b->merges, .n_merges = b->n_merges,
        .added = b->added, .n_added = b->n_added,
        .normalizer_json = b->norm.len ? b->norm.data : NULL,
        .pre_tokenizer_json = b->pre.len ? b->pre.data : NULL,
        .decoder_json = b->dec.len ? b->dec.data : NULL,
        .ignore_merges = ignore_merges,
    };
    if (b->norm.oom || b->pre.oom || b->dec.oom) return flm_fail(FLM_ERR_NOMEM, "out of memory");
    return flm_tokenizer_from_spec(&spec, out);
}

static int load_json_doc(const flm_json *root, const char *what, flm_tokenizer **out) {
    spec_builder b;
    memset(&b, 0, sizeof b);
    int rc;
    const flm_json *model = flm_json_get(root, "model");
    if (!model || model->type != JSON_OBJECT) {
        rc = flm_fail(FLM_ERR_FORMAT, "%s: no \"model\" object", what);
        goto done;
    }
    const char *ty = flm_json_string(flm_json_get(model, "type"), "BPE");
    if (strcmp(ty, "BPE")) { rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", what, ty); goto done; }
    if (flm_json_bool(flm_json_get(model, "byte_fallback"), false) ||
        *flm_json_string(flm_json_get(model, "continuing_subword_prefix"), "") ||
        *flm_json_string(flm_json_get(model, "end_of_word_suffix"), "") ||
        flm_json_number(flm_json_get(model, "dropout"), 0.0) != 0.0) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: BPE with byte_fallback, dropout or subword prefix/suffix is not supported", what);
        goto done;
    }
    if ((rc = read_vocab(&b, flm_json_get(model, "vocab"), what))) goto done;
    if ((rc = read_merges_json(&b, flm_json_get(model, "merges"), what))) goto done;
    const flm_json *added = flm_json_get(root, "added_tokens");
    if (added && added->type == JSON_ARRAY)
        for (size_t i = 0; i < added->len; i++)
            if ((rc = read_added_obj(&b, &added->items[i], -1, what))) goto done;
    /* absent member = none; flm_json_write gives "null" for null */
    const flm_json *n = flm_json_get(root, "normalizer"), *p = flm_json_get(root, "pre_tokenizer"), *d = flm_json_get(root, "decoder");
    if (n) flm_json_write(&b.norm, n, false);
    if (p) flm_json_write(&b.pre, p, false);
    if (d && d->type != JSON_NULL) flm_json_write(&b.dec, d, false);
    else flm_sb_puts(&b.dec, "null");
    rc = build(&b, flm_json_bool(flm_json_get(model, "ignore_merges"), false), out);
    if (rc) flm_fail_context(rc, "%s: ", what);
done:
    builder_free(&b);
    return rc;
}

int flm_tokenizer_load_json(const char *text, size_t len, const char *what, flm_tokenizer **out) {
    *out = NULL;
    flm_json_doc *d = flm_json_parse(text, len, what);
    if (!d) return FLM_ERR_FORMAT;
    int rc = load_json_doc(flm_json_root(d), what, out);
    flm_json_free(d);
    return rc;
}

int flm_tokenizer_load_file(const char *path, flm_tokenizer **out) {
    *out = NULL;
    flm_json_doc *d = flm_json_parse_file(path);
    if (!d) return flm_last_error()[0] && flm_file_exists(path) ? FLM_ERR_FORMAT : FLM_ERR_IO;
    int rc = load_json_doc(flm_json_root(d), path, out);
    flm_json_free(d);
    return rc;
}

/* merges.txt: an optional "#version" first line, then "a b" lines (blank lines skipped),
 * as transformers' slow Qwen2Tokenizer / GPT2Tokenizer read it. */
static int read_merges_txt(spec_builder *b, char *text, size_t len) {
    size_t cap = 1024;
    b->merges = flm_malloc(cap * sizeof *b->merges);
    if (!b->merges) return FLM_ERR_NOMEM;
    size_t line_no = 0;
    for (char *p = text, *end = text + len; p < end; line_no++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        char *s = p;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
        char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r')) t--;
        *t = '\0';
        p = nl ? nl + 1 : end;
        if (t == s || (line_no == 0 && !strncmp(s, "#version", 8))) continue;
        if (b->n_merges == cap) {
            const char **n = flm_realloc(b->merges, (cap *= 2) * sizeof *n);
            if (!n) return FLM_ERR_NOMEM;
            b->merges = n;
        }
        b->merges[b->n_merges++] = s;
    }
    return FLM_OK;
}

static int load_vocab_merges(const char *dir, flm_tokenizer **out) {
    spec_builder b;
    memset(&b, 0, sizeof b);
    char *vpath = flm_path_join(dir, "vocab.json"), *mpath = flm_path_join(dir, "merges.txt");
    char *cpath = flm_path_join(dir, "tokenizer_config.json"), *apath = flm_path_join(dir, "added_tokens.json");
    flm_json_doc *vd = NULL, *cd = NULL, *ad = NULL;
    char *mtext = NULL;
    size_t mlen = 0;
    int rc = FLM_ERR_NOMEM;
    if (!vpath || !mpath || !cpath || !apath) goto done;
    if (!(vd = flm_json_parse_file(vpath))) { rc = FLM_ERR_FORMAT; goto done; }
    if ((rc = read_vocab(&b, flm_json_root(vd), vpath))) goto done;
    if ((rc = flm_read_file(mpath, &mtext, &mlen))) goto done;
    if ((rc = read_merges_txt(&b, mtext, mlen))) goto done;
    const char *cls = "Qwen2Tokenizer";
    if (flm_file_exists(cpath)) {
        if (!(cd = flm_json_parse_file(cpath))) { rc = FLM_ERR_FORMAT; goto done; }
        const flm_json *r = flm_json_root(cd);
        cls = flm_json_string(flm_json_get(r, "tokenizer_class"), cls);
        const flm_json *atd = flm_json_get(r, "added_tokens_decoder");
        if (atd && atd->type == JSON_OBJECT)
            for (size_t i = 0; i < atd->len; i++) {
                char *end;
                long id = strtol(atd->items[i].key, &end, 10);
                if (*end || end == atd->items[i].key || id < 0) {
                    rc = flm_fail(FLM_ERR_FORMAT, "%s: added_tokens_decoder key '%s' is not an id", cpath, atd->items[i].key);
                    goto done;
                }
                if ((rc = read_added_obj(&b, &atd->items[i], id, cpath))) goto done;
            }
    }
    if (flm_file_exists(apath)) {
        /* {"content": id}; tokens already described by tokenizer_config.json keep their
         * flags, others get transformers' AddedToken defaults (not special, normalized). */
        if (!(ad = flm_json_parse_file(apath))) { rc = FLM_ERR_FORMAT; goto done; }
        const flm_json *r = flm_json_root(ad);
        for (size_t i = 0; r->type == JSON_OBJECT && i < r->len; i++) {
            int64_t id = flm_json_int(&r->items[i], -1);
            if (id < 0 || id >= MAX_TOKEN_ID) { rc = flm_fail(FLM_ERR_FORMAT, "%s: '%s' has a bad id", apath, r->items[i].key); goto done; }
            bool known = false;
            for (size_t k = 0; k < b.n_added; k++) known |= b.added[k].id == id;
            if (known) continue;
            flm_added_token a = {.id = (int32_t)id, .content = r->items[i].key, .normalized = true};
            if ((rc = push_added(&b, &a))) goto done;
        }
    }
    flm_tokenizer_spec preset = {0};
    const char *pname = strstr(cls, "Qwen2") ? "qwen2" : strstr(cls, "GPT2") ? "gpt2" : NULL;
    if (!pname) { rc = flm_fail(FLM_ERR_UNSUPPORTED, "%s: tokenizer_class '%s' has no preset (Qwen2Tokenizer, GPT2Tokenizer)", cpath, cls); goto done; }
    flm_tokenizer_preset(pname, &preset);
    if (preset.normalizer_json) flm_sb_puts(&b.norm, preset.normalizer_json);
    flm_sb_puts(&b.pre, preset.pre_tokenizer_json);
    flm_sb_puts(&b.dec, preset.decoder_json);
    rc = build(&b, false, out);
    if (rc) flm_fail_context(rc, "%s: ", dir);
done:
    flm_json_free(vd); flm_json_free(cd); flm_json_free(ad);
    free(mtext); free(vpath); free(mpath); free(cpath); free(apath);
    builder_free(&b);
    return rc;
}

int flm_tokenizer_load_dir(const char *dir, flm_tokenizer **out) {
    *out = NULL;
    if (!flm_is_dir(dir)) return flm_fail(FLM_ERR_IO, "%s: no such model folder", dir);
    char *tj = flm_path_join(dir, "tokenizer.json");
    if (!tj) return FLM_ERR_NOMEM;
    int rc;
    if (flm_file_exists(tj)) {
        rc = flm_tokenizer_load_file(tj, out);
    } else {
        char *v = flm_path_join(dir, "vocab.json"), *m = flm_path_join(dir, "merges.txt");
        bool have = v && m && flm_file_exists(v) && flm_file_exists(m);
        free(v); free(m);
        rc = have ? load_vocab_merges(dir, out)
                  : flm_fail(FLM_ERR_IO, "%s: no tokenizer files (tokenizer.json, or vocab.json and merges.txt)", dir);
    }
    free(tj);
    return rc;
}
