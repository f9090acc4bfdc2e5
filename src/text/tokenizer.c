/* tokenizer.c — builds a flm_tokenizer: from a flm_tokenizer_spec (vocabulary, merges,
 * added tokens, normalizer / pre-tokenizer / decoder JSON), from tokenizer.json, or from
 * vocab.json + merges.txt; the Qwen2 / GPT-2 presets; vocabulary lookups; get_spec.
 * Encoding is in tokenizer_encode.c, decoding in tokenizer_decode.c. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/utf8.h"

#define MAX_TOKEN_ID (1 << 24) /* ids beyond this are treated as a corrupt file */

/* ---- small helpers ------------------------------------------------------------ */

uint64_t flm_tok_hash(const void *data, size_t n) {
    /* FNV-1a over 8-byte words, then a final avalanche (splitmix64's finaliser). */
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other
 * 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD) get 256, 257, ... in byte order. */
uint32_t flm_tok_byte_char(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 33u + 34u; /* 0xAD */
}

int flm_tok_char_byte(uint32_t cp) {
    if (cp < 256) {
        uint8_t b = (uint8_t)cp;
        return flm_tok_byte_char(b) == cp ? (int)b : -1;
    }
    if (cp <= 256 + 0x20) return (int)(cp - 256);
    if (cp <= 256 + 33 + 33) return (int)(0x7F + (cp - 256 - 33));
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

static size_t put_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* ---- vocabulary maps ---------------------------------------------------------- */

static const char *id_text(const flm_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_ids || t->text_off[id] == UINT32_MAX) return NULL;
    *len = t->text_len[id];
    return t->text_arena + t->text_off[id];
}

/* The model vocabulary keeps its own strings: vocab_ptrs[id]. */
int32_t flm_tok_vocab_find(const flm_tokenizer *t, const char *s, size_t n) {
    if (!t->vocab_slots) return -1;
    size_t i = (size_t)flm_tok_hash(s, n) & t->vocab_mask;
    for (;;) {
        uint32_t v = t->vocab_slots[i];
        if (!v) return -1;
        const char *k = t->vocab_ptrs[v - 1];
        if (strlen(k) == n && memcmp(k, s, n) == 0) return (int32_t)(v - 1);
        i = (i + 1) & t->vocab_mask;
    }
}

static void vocab_insert(flm_tokenizer *t, int32_t id) {
    const char *s = t->vocab_ptrs[id];
    size_t n = strlen(s);
    size_t i = (size_t)flm_tok_hash(s, n) & t->vocab_mask;
    for (;;) {
        uint32_t v = t->vocab_slots[i];
        if (!v) { t->vocab_slots[i] = (uint32_t)id + 1; return; }
        const char *k = t->vocab_ptrs[v - 1];
        if (strcmp(k, s) == 0) { t->vocab_slots[i] = (uint32_t)id + 1; return; } /* last wins */
        i = (i + 1) & t->vocab_mask;
    }
}

static int32_t added_find(const flm_tokenizer *t, const char *s, size_t n) {
    if (!t->added_slots) return -1;
    size_t i = (size_t)flm_tok_hash(s, n) & t->added_mask;
    for (;;) {
        uint32_t v = t->added_slots[i];
        if (!v) return -1;
        const tok_added *a = &t->added[v - 1];
        if (a->len == n && memcmp(a->content, s, n) == 0) return (int32_t)(v - 1);
        i = (i + 1) & t->added_mask;
    }
}

static void merge_insert(flm_tokenizer *t, uint64_t key, uint32_t rank, int32_t new_id) {
    size_t i = (size_t)flm_tok_hash(&key, 8) & t->merge_mask;
    while (t->merge_slots[i].key != UINT64_MAX && t->merge_slots[i].key != key)
        i = (i + 1) & t->merge_mask;
    t->merge_slots[i].key = key; /* a repeated pair takes the later rank, like tokenizers */
    t->merge_slots[i].rank = rank;
    t->merge_slots[i].new_id = new_id;
}

/* ---- configuration JSON ------------------------------------------------------- */

const char flm_qwen2_pretokenize_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* The pattern of tokenizers' ByteLevel pre-tokenizer when use_regex is true. */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Presets: what Hugging Face's converters write into tokenizer.json (transformers
 * convert_slow_tokenizer.py Qwen2Converter / GPT2Converter; the regex is
 * tokenization_qwen2.py's PRETOKENIZE_REGEX, as in Qwen2.5's own tokenizer.json). */
static const char QWEN2_NORMALIZER[] = "{\"type\":\"NFC\"}";
static const char QWEN2_PRE[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
    "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
    "\"trim_offsets\":false,\"use_regex\":false}]}";
static const char BYTELEVEL_DECODER[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}";
static const char GPT2_PRE[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";

int flm_tokenizer_preset(const char *name, flm_tokenizer_spec *spec) {
    if (name && !strcmp(name, "qwen2")) {
        spec->normalizer_json = QWEN2_NORMALIZER;
        spec->pre_tokenizer_json = QWEN2_PRE;
        spec->decoder_json = BYTELEVEL_DECODER;
        return FLM_OK;
    }
    if (name && !strcmp(name, "gpt2")) {
        spec->normalizer_json = NULL;
        spec->pre_tokenizer_json = GPT2_PRE;
        spec->decoder_json = BYTELEVEL_DECODER;
        return FLM_OK;
    }
    return flm_fail(FLM_ERR_UNSUPPORTED, "no tokenizer preset named '%s' (known: qwen2, gpt2)",
                    name ? name : "(null)");
}

/* Oniguruma (which tokenizers uses) reads \s as Unicode White_Space; PCRE2 with UCP adds
 * U+180E. Rewrite \s and \S so the two agree. */
#define WS_CLASS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static void translate_regex(const char *p, size_t n, strbuf *out) {
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's') flm_sb_puts(out, in_class ? WS_CLASS : "[" WS_CLASS "]");
            else if (d == 'S' && !in_class) flm_sb_puts(out, "[^" WS_CLASS "]");
            else { flm_sb_putc(out, c); flm_sb_putc(out, d); }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            flm_sb_putc(out, c);
            if (i + 1 < n && p[i + 1] == '^') flm_sb_putc(out, p[++i]);
            if (i + 1 < n && p[i + 1] == ']') flm_sb_putc(out, p[++i]); /* literal ] first */
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX [:name:] */
            const char *e = memchr(p + i + 2, ']', n - i - 2);
            if (e) {
                flm_sb_append(out, p + i, (size_t)(e - (p + i)) + 1);
                i = (size_t)(e - p);
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        flm_sb_putc(out, c);
    }
}

/* Compiles a Split (or ByteLevel) pattern anchored: the encoder runs it at each start
 * position itself, so that every attempt is charged to its matching budget. */
static int compile_regex(const char *pat, size_t n, bool literal, tok_pre_step *st) {
    if (!(st->pattern = flm_strndup(pat, n))) return FLM_ERR_NOMEM;
    strbuf sb;
    flm_sb_init(&sb);
    if (literal) flm_sb_append(&sb, pat, n);
    else translate_regex(pat, n, &sb);
    if (sb.oom) { flm_sb_free(&sb); return FLM_ERR_NOMEM; }
    int err = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(sb.data ? sb.data : ""), sb.len, opts, &err, &off, NULL);
    flm_sb_free(&sb);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return flm_fail(FLM_ERR_FORMAT, "pre-tokenizer regex does not compile at offset %zu: %s",
                        (size_t)off, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    st->re = re;
    return FLM_OK;
}

static const char *type_of(const flm_json *v) { return flm_json_string(flm_json_get(v, "type"), ""); }

static int parse_normalizer(flm_tokenizer *t, const flm_json *v, int depth) {
    if (!v || v->type == JSON_NULL) return FLM_OK;
    if (v->type != JSON_OBJECT || depth > 4) return flm_fail(FLM_ERR_FORMAT, "normalizer is not an object");
    const char *ty = type_of(v);
    if (!strcmp(ty, "Sequence")) {
        const flm_json *list = flm_json_get(v, "normalizers");
        if (!list || list->type != JSON_ARRAY) return flm_fail(FLM_ERR_FORMAT, "normalizer Sequence has no \"normalizers\" array");
        for (size_t i = 0; i < list->len; i++) {
            int rc = parse_normalizer(t, &list->items[i], depth + 1);
            if (rc) return rc;
        }
        return FLM_OK;
    }
    static const struct { const char *name; tok_norm_kind kind; } kinds[] = {
        {"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        if (strcmp(ty, kinds[i].name)) continue;
        if (t->n_norm == TOK_MAX_NORM) return flm_fail(FLM_ERR_UNSUPPORTED, "too many normalizers");
        t->norm[t->n_norm++] = kinds[i].kind;
        return FLM_OK;
    }
    return flm_fail(FLM_ERR_UNSUPPORTED, "normalizer type '%s' is not supported (NFC, NFD, NFKC, NFKD, Sequence)", ty);
}

static int add_pre(flm_tokenizer *t, tok_pre_step **out) {
    if (t->n_pre == TOK_MAX_PRE) return flm_fail(FLM_ERR_UNSUPPORTED, "too many pre-tokenizers");
    *out = &t->pre[t->n_pre++];
    memset(*out, 0, sizeof **out);
    return FLM_OK;
}

static int parse_pre(flm_tokenizer *t, const flm_json *v, int depth) {
    if (!v || v->type == JSON_NULL) return FLM_OK;
    if (v->type != JSON_OBJECT || depth > 4) return flm_fail(FLM_ERR_FORMAT, "pre_tokenizer is not an object");
    const char *ty = type_of(v);
    tok_pre_step *st = NULL;
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const flm_json *list = flm_json_get(v, "pretokenizers");
        if (!list || list->type != JSON_ARRAY) return flm_fail(FLM_ERR_FORMAT, "pre_tokenizer Sequence has no \"pretokenizers\" array");
        for (size_t i = 0; i < list->len; i++)
            if ((rc = parse_pre(t, &list->items[i], depth + 1))) return rc;
        return FLM_OK;
    }
    if (!strcmp(ty, "Split")) {
        const flm_json *pat = flm_json_get(v, "pattern");
        const flm_json *rx = flm_json_get(pat, "Regex"), *lit = flm_json_get(pat, "String");
        const flm_json *p = rx && rx->type == JSON_STRING ? rx : lit;
        if (!p || p->type != JSON_STRING) return flm_fail(FLM_ERR_FORMAT, "Split pre-tokenizer has no pattern Regex or String");
        const char *beh = flm_json_string(flm_json_get(v, "behavior"), "");
        if ((rc = add_pre(t, &st))) return rc;
        st->kind = PRE_SPLIT;
        if (!strcmp(beh, "Isolated")) st->behavior = SPLIT_ISOLATED;
        else if (!strcmp(beh, "Removed")) st->behavior = SPLIT_REMOVED;
        else return flm_fail(FLM_ERR_UNSUPPORTED, "Split behavior '%s' is not supported (Isolated, Removed)", beh);
        st->invert = flm_json_bool(flm_json_get(v, "invert"), false);
        return compile_regex(p->str, p->len, p != rx, st);
    }
    if (!strcmp(ty, "ByteLevel")) {
        if ((rc = add_pre(t, &st))) return rc;
        st->kind = PRE_BYTELEVEL;
        st->add_prefix_space = flm_json_bool(flm_json_get(v, "add_prefix_space"), true);
        if (flm_json_bool(flm_json_get(v, "use_regex"), true))
            return compile_regex(GPT2_REGEX, strlen(GPT2_REGEX), false, st);
        return FLM_OK;
    }
    return flm_fail(FLM_ERR_UNSUPPORTED, "pre_tokenizer type '%s' is not supported (Sequence, Split, ByteLevel)", ty);
}

/* Parses one configuration member given as JSON text (NULL = absent). */
static int parse_config(flm_tokenizer *t, const char *text, const char *what, int which) {
    if (!text) return FLM_OK;
    flm_json_doc *d = flm_json_parse(text, strlen(text), what);
    if (!d) return FLM_ERR_FORMAT;
    const flm_json *v = flm_json_root(d);
    int rc = FLM_OK;
    if (which == 0) rc = parse_normalizer(t, v, 0);
    else if (which == 1) rc = parse_pre(t, v, 0);
    else if (v->type != JSON_OBJECT || strcmp(type_of(v), "ByteLevel"))
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "decoder %s is not supported (only ByteLevel)",
                      v->type == JSON_OBJECT ? type_of(v) : "null");
    flm_json_free(d);
    return rc;
}

/* ---- building ----------------------------------------------------------------- */

void flm_tokenizer_free(flm_tokenizer *t) {
    if (!t) return;
    free(t->text_off); free(t->text_len); free(t->text_arena);
    free(t->bytes_off); free(t->bytes_len); free(t->bytes_arena);
    free(t->is_model); free(t->added_of); free(t->vocab_ptrs);
    free(t->vocab_slots); free(t->added_slots); free(t->merge_slots);
    if (t->merges) free(t->merges[0]);
    free(t->merges);
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].match != t->added[i].content) free(t->added[i].match);
        free(t->added[i].content);
    }
    free(t->added); free(t->added_spec);
    free(t->raw_set.order); free(t->norm_set.order);
    for (size_t i = 0; i < t->n_pre; i++) { pcre2_code_free(t->pre[i].re); free(t->pre[i].pattern); }
    free(t->normalizer_json); free(t->pre_tokenizer_json); free(t->decoder_json);
    free(t);
}

static int build_set(flm_tokenizer *t, tok_added_set *set, bool normalized) {
    set->order = flm_malloc((t->n_added + 1) * sizeof *set->order);
    if (!set->order) return FLM_ERR_NOMEM;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].match_len > 0) set->order[set->n++] = (int32_t)i;
    /* insertion sort, longest first (few tokens); equal lengths keep id order */
    for (size_t i = 1; i < set->n; i++) {
        int32_t x = set->order[i];
        size_t j = i;
        while (j > 0 && t->added[set->order[j - 1]].match_len < t->added[x].match_len) {
            set->order[j] = set->order[j - 1];
            j--;
        }
        set->order[j] = x;
    }
    for (size_t i = 0; i < set->n; i++) set->first[(uint8_t)t->added[set->order[i]].match[0]] = 1;
    return FLM_OK;
}

static char *dup_opt(const char *s) { return s ? flm_strdup(s) : NULL; }

int flm_tokenizer_from_spec(const flm_tokenizer_spec *spec, flm_tokenizer **out) {
    *out = NULL;
    if (!spec || (spec->n_vocab && !spec->vocab) || (spec->n_merges && !spec->merges) ||
        (spec->n_added && !spec->added))
        return flm_fail(FLM_ERR_ARG, "tokenizer spec is missing its arrays");
    if (spec->n_vocab > MAX_TOKEN_ID) return flm_fail(FLM_ERR_FORMAT, "tokenizer vocabulary too large (%zu)", spec->n_vocab);
    flm_tokenizer *t = flm_calloc(1, sizeof *t);
    if (!t) return FLM_ERR_NOMEM;
    int rc = FLM_ERR_NOMEM;

    /* ids */
    size_t n_ids = spec->n_vocab;
    for (size_t i = 0; i < spec->n_added; i++) {
        int32_t id = spec->added[i].id;
        if (id < 0 || id >= MAX_TOKEN_ID || !spec->added[i].content) {
            rc = flm_fail(FLM_ERR_FORMAT, "added token %zu has a bad id (%d) or no content", i, (int)id);
            goto fail;
        }
        if ((size_t)id + 1 > n_ids) n_ids = (size_t)id + 1;
    }
    t->n_ids = n_ids;
    t->n_model_vocab = spec->n_vocab;
    t->text_off = flm_malloc((n_ids + 1) * sizeof *t->text_off);
    t->text_len = flm_calloc(n_ids + 1, sizeof *t->text_len);
    t->bytes_off = flm_calloc(n_ids + 1, sizeof *t->bytes_off);
    t->bytes_len = flm_calloc(n_ids + 1, sizeof *t->bytes_len);
    t->is_model = flm_calloc(n_ids + 1, 1);
    t->added_of = flm_malloc((n_ids + 1) * sizeof *t->added_of);
    t->vocab_ptrs = flm_calloc(spec->n_vocab + 1, sizeof *t->vocab_ptrs);
    if (!t->text_off || !t->text_len || !t->bytes_off || !t->bytes_len || !t->is_model ||
        !t->added_of || !t->vocab_ptrs)
        goto fail;
    for (size_t i = 0; i < n_ids; i++) { t->text_off[i] = UINT32_MAX; t->added_of[i] = -1; }

    /* added tokens */
    t->added = flm_calloc(spec->n_added + 1, sizeof *t->added);
    t->added_spec = flm_calloc(spec->n_added + 1, sizeof *t->added_spec);
    if (!t->added || !t->added_spec) goto fail;
    for (size_t i = 0; i < spec->n_added; i++) {
        const flm_added_token *s = &spec->added[i];
        tok_added *a = &t->added[t->n_added++];
        a->id = s->id;
        a->len = strlen(s->content);
        if (!(a->content = flm_strndup(s->content, a->len))) goto fail;
        a->match = a->content;
        a->match_len = a->len;
        a->special = s->special; a->lstrip = s->lstrip; a->rstrip = s->rstrip;
        a->single_word = s->single_word; a->normalized = s->normalized;
        t->added_spec[i] = *s;
        t->added_spec[i].content = a->content;
        t->added_of[s->id] = (int32_t)i;
    }

    /* configuration */
    if ((rc = parse_config(t, spec->normalizer_json, "normalizer", 0))) goto fail;
    if ((rc = parse_config(t, spec->pre_tokenizer_json, "pre_tokenizer", 1))) goto fail;
    if ((rc = parse_config(t, spec->decoder_json, "decoder", 2))) goto fail;
    if (!t->n_pre || t->pre[t->n_pre - 1].kind != PRE_BYTELEVEL) {
        rc = flm_fail(FLM_ERR_UNSUPPORTED, "pre_tokenizer must end with ByteLevel (only byte-level BPE is supported)");
        goto fail;
    }
    for (size_t i = 0; i + 1 < t->n_pre; i++)
        if (t->pre[i].kind == PRE_BYTELEVEL) {
            rc = flm_fail(FLM_ERR_UNSUPPORTED, "ByteLevel must be the last pre-tokenizer");
            goto fail;
        }
    rc = FLM_ERR_NOMEM;
    if (!(t->normalizer_json = dup_opt(spec->normalizer_json)) && spec->normalizer_json) goto fail;
    if (!(t->pre_tokenizer_json = dup_opt(spec->pre_tokenizer_json)) && spec->pre_tokenizer_json) goto fail;
    if (!(t->decoder_json = dup_opt(spec->decoder_json)) && spec->decoder_json) goto fail;
    t->ignore_merges = spec->ignore_merges;

    /* normalized added tokens are matched in their normalized form */
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        if (!a->normalized) continue;
        char *m = NULL;
        size_t ml = 0;
        if ((rc = flm_tok_normalize(t, a->content, a->len, &m, &ml))) goto fail;
        if (m) { a->match = m; a->match_len = ml; }
    }
    rc = FLM_ERR_NOMEM;
    if (build_set(t, &t->raw_set, false) || build_set(t, &t->norm_set, true)) goto fail;

    /* text arena: model vocab strings then added contents */
    size_t total = 0;
    for (size_t i = 0; i < spec->n_vocab; i++)
        if (spec->vocab[i]) total += strlen(spec->vocab[i]) + 1;
    for (size_t i = 0; i < t->n_added; i++) total += t->added[i].len + 1;
    if (total >= UINT32_MAX) { rc = flm_fail(FLM_ERR_FORMAT, "tokenizer vocabulary text too large"); goto fail; }
    t->text_arena = flm_malloc(total + 1);
    t->bytes_arena = flm_malloc(total + 1); /* decoded bytes never exceed the text */
    if (!t->text_arena || !t->bytes_arena) goto fail;
    size_t pos = 0;
    for (size_t i = 0; i < spec->n_vocab; i++) {
        if (!spec->vocab[i]) continue;
        size_t n = strlen(spec->vocab[i]);
        memcpy(t->text_arena + pos, spec->vocab[i], n + 1);
        t->vocab_ptrs[i] = t->text_arena + pos;
        t->is_model[i] = 1;
        if (t->added_of[i] < 0) { t->text_off[i] = (uint32_t)pos; t->text_len[i] = (uint32_t)n; }
        pos += n + 1;
    }
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        memcpy(t->text_arena + pos, a->content, a->len + 1);
        t->text_off[a->id] = (uint32_t)pos;
        t->text_len[a->id] = (uint32_t)a->len;
        pos += a->len + 1;
    }

    /* decoded bytes: ByteLevel decoder per token; a token with a character outside the
     * byte alphabet decodes to its own UTF-8 bytes (tokenizers does the same). */
    size_t bpos = 0;
    for (size_t id = 0; id < n_ids; id++) {
        if (t->text_off[id] == UINT32_MAX) continue;
        const uint8_t *s = (const uint8_t *)t->text_arena + t->text_off[id];
        size_t n = t->text_len[id], start = bpos;
        bool ok = flm_utf8_valid_prefix(s, n) == n;
        for (size_t k = 0; ok && k < n;) {
            uint32_t cp;
            k += flm_utf8_next(s + k, n - k, &cp);
            int b = flm_tok_char_byte(cp);
            if (b < 0) ok = false;
            else t->bytes_arena[bpos++] = (uint8_t)b;
        }
        if (!ok) { bpos = start; memcpy(t->bytes_arena + bpos, s, n); bpos += n; }
        t->bytes_off[id] = (uint32_t)start;
        t->bytes_len[id] = (uint32_t)(bpos - start);
    }

    /* maps */
    t->vocab_mask = pow2_at_least(spec->n_vocab * 2) - 1;
    t->vocab_slots = flm_calloc(t->vocab_mask + 1, sizeof *t->vocab_slots);
    t->added_mask = pow2_at_least(t->n_added * 2) - 1;
    t->added_slots = flm_calloc(t->added_mask + 1, sizeof *t->added_slots);
    if (!t->vocab_slots || !t->added_slots) goto fail;
    for (size_t i = 0; i < spec->n_vocab; i++)
        if (t->vocab_ptrs[i]) vocab_insert(t, (int32_t)i);
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        size_t k = (size_t)flm_tok_hash(a->content, a->len) & t->added_mask;
        while (t->added_slots[k]) {
            const tok_added *o = &t->added[t->added_slots[k] - 1];
            if (o->len == a->len && !memcmp(o->content, a->content, a->len)) break;
            k = (k + 1) & t->added_mask;
        }
        t->added_slots[k] = (uint32_t)i + 1;
    }
    for (int b = 0; b < 256; b++) {
        char c[4];
        size_t n = put_utf8(flm_tok_byte_char((uint8_t)b), c);
        t->byte_id[b] = flm_tok_vocab_find(t, c, n);
    }

    /* merges */
    t->merge_mask = pow2_at_least(spec->n_merges * 2) - 1;
    t->merge_slots = flm_malloc((t->merge_mask + 1) * sizeof *t->merge_slots);
    t->merges = flm_calloc(spec->n_merges + 1, sizeof *t->merges);
    if (!t->merge_slots || !t->merges) goto fail;
    for (size_t i = 0; i <= t->merge_mask; i++) t->merge_slots[i].key = UINT64_MAX;
    size_t mtotal = 0;
    for (size_t i = 0; i < spec->n_merges; i++) mtotal += strlen(spec->merges[i] ? spec->merges[i] : "") + 1;
    char *marena = flm_malloc(mtotal + 1);
    if (!marena) goto fail;
    t->merges[0] = marena; /* freed through merges[0] */
    strbuf joined;
    flm_sb_init(&joined);
    size_t mpos = 0;
    for (size_t i = 0; i < spec->n_merges; i++) {
        const char *m = spec->merges[i] ? spec->merges[i] : "";
        size_t n = strlen(m);
        memcpy(marena + mpos, m, n + 1);
        t->merges[i] = marena + mpos;
        mpos += n + 1;
        const char *sp = memchr(m, ' ', n);
        if (!sp || sp == m || sp == m + n - 1 || memchr(sp + 1, ' ', (size_t)(m + n - sp - 1))) {
            flm_sb_free(&joined);
            rc = flm_fail(FLM_ERR_FORMAT, "merge %zu '%s' is not two tokens separated by one space", i, m);
            goto fail;
        }
        int32_t a = flm_tok_vocab_find(t, m, (size_t)(sp - m)), b = flm_tok_vocab_find(t, sp + 1, (size_t)(m + n - sp - 1));
        flm_sb_clear(&joined);
        flm_sb_append(&joined, m, (size_t)(sp - m));
        flm_sb_append(&joined, sp + 1, (size_t)(m + n - sp - 1));
        int32_t c = joined.oom ? -1 : flm_tok_vocab_find(t, joined.data, joined.len);
        if (a < 0 || b < 0 || c < 0) {
            flm_sb_free(&joined);
            rc = flm_fail(FLM_ERR_FORMAT, "merge %zu '%s': %s is not in the vocabulary", i, m,
                          a < 0 ? "the first part" : b < 0 ? "the second part" : "the merged token");
            goto fail;
        }
        merge_insert(t, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, (uint32_t)i, c);
    }
    flm_sb_free(&joined);
    t->n_merges = spec->n_merges;
    *out = t;
    return FLM_OK;
fail:
    if (rc == FLM_ERR_NOMEM && !*flm_last_error()) flm_fail(FLM_ERR_NOMEM, "out of memory building the tokenizer");
    flm_tokenizer_free(t);
    return rc;
}

void flm_tokenizer_get_spec(const flm_tokenizer *t, flm_tokenizer_spec *spec) {
    memset(spec, 0, sizeof *spec);
    spec->vocab = t->vocab_ptrs;
    spec->n_vocab = t->n_model_vocab;
    spec->merges = (const char *const *)t->merges;
    spec->n_merges = t->n_merges;
    spec->added = t->added_spec;
    spec->n_added = t->n_added;
    spec->normalizer_json = t->normalizer_json;
    spec->pre_tokenizer_json = t->pre_tokenizer_json;
    spec->decoder_json = t->decoder_json;
    spec->ignore_merges = t->ignore_merges;
}

/* ---- lookups ------------------------------------------------------------------ */

size_t flm_tokenizer_vocab_size(const flm_tokenizer *t) { return t->n_ids; }

int32_t flm_tokenizer_token_id(const flm_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t a = added_find(t, token, n);
    if (a >= 0) return t->added[a].id;
    return flm_tok_vocab_find(t, token, n);
}

const char *flm_tokenizer_token_text(const flm_tokenizer *t, int32_t id) {
    size_t n;
    return id_text(t, id, &n);
}

bool flm_tokenizer_is_special(const flm_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_ids || t->added_of[id] < 0) return false;
    return t->added[t->added_of[id]].special;
}

const uint8_t *flm_tokenizer_token_bytes(const flm_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_ids || t->text_off[id] == UINT32_MAX) return NULL;
    *len = t->bytes_len[id];
    return t->bytes_arena + t->bytes_off[id];
}
