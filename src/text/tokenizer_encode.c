/* tokenizer_encode.c — text -> ids, in the order Hugging Face tokenizers applies it:
 * added tokens split out of the raw text (normalized=false ones), normalizer (tokenizer_normalize.c),
 * added tokens with normalized=true split out of the normalized text, pre-tokenizer
 * steps (PCRE2 Split, ByteLevel), then BPE per word (rank-ordered merges with a heap over
 * a linked list of symbols) with a per-call word cache. */
#include "text/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/utf8.h"

#define CACHE_MAX_ENTRIES (1u << 16) /* per call; cleared when full */
#define CACHE_MAX_WORD 256           /* longer words are not cached */

/* Limits on pre-tokenizer regex work, in PCRE2 match-limit units (one unit is one
 * backtracking step, a few ns with the JIT). A pattern from a model file can backtrack
 * catastrophically, so every match attempt gets a match limit, and the limits granted
 * are charged to a budget per encode call that grows with the bytes the regex steps
 * scan. Granted limits (not the unknown work actually done) are charged, so the budget
 * is a deterministic upper bound on the work. Qwen2's pattern needs about 1 unit per
 * byte of a whitespace run and under 20 per match otherwise. See docs/TOKENIZER.md. */
#define RE_FIRST_LIMIT 32u          /* first try of each attempt; doubled while it runs out */
#define RE_MATCH_BASE 100000u       /* one attempt: BASE + PER_BYTE x bytes left in the piece */
#define RE_MATCH_PER_BYTE 8u
#define RE_BUDGET_BASE 1000000u     /* per encode call, plus PER_BYTE x bytes scanned */
#define RE_BUDGET_PER_BYTE 256u
#define RE_DEPTH_LIMIT 100000u      /* interpreter backtracking depth (the JIT has its stack) */
#define RE_HEAP_LIMIT_KIB (64u * 1024u)

/* ---- per-call state --------------------------------------------------------------- */

typedef struct { size_t start, end; int32_t id; } span; /* id -1: text */
typedef struct { span *v; size_t n, cap; } spanvec;

typedef struct { uint64_t hash; uint32_t key_off, key_len, val_off, val_len; } cache_slot;
typedef struct { uint32_t rank, pos; int32_t new_id; } heap_entry;

typedef struct {
    const flm_tokenizer *t;
    int flags;
    int32_t *ids; size_t n_ids, cap_ids;
    bool oom;
    /* word cache: raw word bytes -> ids */
    cache_slot *slots; size_t mask, count;
    uint8_t *keys; size_t keys_len, keys_cap;
    int32_t *vals; size_t vals_len, vals_cap;
    /* BPE scratch, sized for the longest word so far */
    int32_t *sym, *prev, *next; size_t sym_cap;
    heap_entry *heap; size_t heap_n, heap_cap;
    pcre2_match_data *md[TOK_MAX_PRE];
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    uint64_t re_budget, re_spent; /* match-limit units left (see RE_BUDGET_*) and charged */
    size_t text_len;    /* of the whole input, for messages */
    strbuf scratch;
    spanvec outer, inner;
} enc_ctx;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *n = realloc(*p, c * elem);
    if (!n) return false;
    *p = n;
    *cap = c;
    return true;
}

static void push_ids(enc_ctx *c, const int32_t *ids, size_t n) {
    if (!grow((void **)&c->ids, &c->cap_ids, c->n_ids + n, sizeof *c->ids)) { c->oom = true; return; }
    memcpy(c->ids + c->n_ids, ids, n * sizeof *ids);
    c->n_ids += n;
}

static void push_span(enc_ctx *c, spanvec *v, size_t s, size_t e, int32_t id) {
    if (!grow((void **)&v->v, &v->cap, v->n + 1, sizeof *v->v)) { c->oom = true; return; }
    v->v[v->n++] = (span){s, e, id};
}

/* ---- word cache ------------------------------------------------------------------ */

static const cache_slot *cache_find(const enc_ctx *c, const uint8_t *w, size_t n, uint64_t h) {
    if (!c->slots) return NULL;
    for (size_t i = (size_t)h & c->mask;; i = (i + 1) & c->mask) {
        const cache_slot *s = &c->slots[i];
        if (!s->hash) return NULL;
        if (s->hash == h && s->key_len == n && !memcmp(c->keys + s->key_off, w, n)) return s;
    }
}

static void cache_clear(enc_ctx *c) {
    memset(c->slots, 0, (c->mask + 1) * sizeof *c->slots);
    c->count = c->keys_len = c->vals_len = 0;
}

static void cache_put(enc_ctx *c, const uint8_t *w, size_t n, uint64_t h, const int32_t *ids, size_t k) {
    if (!c->slots || (c->count + 1) * 2 > c->mask + 1) {
        size_t cap = c->slots ? (c->mask + 1) * 2 : 4096;
        if (cap > CACHE_MAX_ENTRIES * 2) { cache_clear(c); cap = c->mask + 1; }
        else {
            cache_slot *ns = calloc(cap, sizeof *ns);
            if (!ns) return; /* the cache is an optimisation: skip on failure */
            for (size_t i = 0; c->slots && i <= c->mask; i++) {
                if (!c->slots[i].hash) continue;
                size_t j = (size_t)c->slots[i].hash & (cap - 1);
                while (ns[j].hash) j = (j + 1) & (cap - 1);
                ns[j] = c->slots[i];
            }
            free(c->slots);
            c->slots = ns;
            c->mask = cap - 1;
        }
    }
    if (!grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        !grow((void **)&c->vals, &c->vals_cap, c->vals_len + k, sizeof *c->vals))
        return;
    size_t i = (size_t)h & c->mask;
    while (c->slots[i].hash) i = (i + 1) & c->mask;
    c->slots[i] = (cache_slot){h, (uint32_t)c->keys_len, (uint32_t)n, (uint32_t)c->vals_len, (uint32_t)k};
    memcpy(c->keys + c->keys_len, w, n);
    memcpy(c->vals + c->vals_len, ids, k * sizeof *ids);
    c->keys_len += n;
    c->vals_len += k;
    c->count++;
}

/* ---- BPE --------------------------------------------------------------------------- */

static bool heap_less(const heap_entry *a, const heap_entry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(enc_ctx *c, uint32_t rank, uint32_t pos, int32_t new_id) {
    size_t i = c->heap_n++;
    heap_entry e = {rank, pos, new_id};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = e;
}

static heap_entry heap_pop(enc_ctx *c) {
    heap_entry top = c->heap[0], last = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const heap_entry *best = &last;
        if (l < n && heap_less(&c->heap[l], best)) { m = l; best = &c->heap[l]; }
        if (l + 1 < n && heap_less(&c->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void push_pair(enc_ctx *c, size_t pos) {
    uint32_t rank;
    int32_t nid;
    if (flm_tok_merge_get(c->t, c->sym[pos], c->sym[c->next[pos]], &rank, &nid)) heap_push(c, rank, (uint32_t)pos, nid);
}

/* Merges the symbols of one word, lowest rank first and leftmost among equals, the
 * order tokenizers' Word::merge_all uses; an entry whose pair has since changed is
 * skipped. Leaves the result in c->sym linked from 0; returns the symbol count. */
static size_t bpe_merge(enc_ctx *c, const uint8_t *w, size_t n) {
    const flm_tokenizer *t = c->t;
    if (!grow((void **)&c->sym, &c->sym_cap, n, sizeof *c->sym)) { c->oom = true; return 0; }
    size_t cap = c->sym_cap;
    c->prev = realloc(c->prev, cap * sizeof *c->prev);
    c->next = realloc(c->next, cap * sizeof *c->next);
    if (!c->prev || !c->next || !grow((void **)&c->heap, &c->heap_cap, 3 * n + 1, sizeof *c->heap)) {
        c->oom = true;
        return 0;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id >= 0) c->sym[m++] = id; /* a byte without a token is dropped (no unk) */
    }
    for (size_t i = 0; i < m; i++) {
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    c->heap_n = 0;
    for (size_t i = 0; i + 1 < m; i++) push_pair(c, i);
    while (c->heap_n) {
        heap_entry top = heap_pop(c);
        size_t p = top.pos;
        if (c->sym[p] < 0 || c->next[p] < 0) continue;
        size_t q = (size_t)c->next[p];
        uint32_t rank;
        int32_t nid;
        if (!flm_tok_merge_get(t, c->sym[p], c->sym[q], &rank, &nid) || nid != top.new_id) continue;
        c->sym[p] = nid;
        c->sym[q] = -1;
        c->next[p] = c->next[q];
        if (c->next[q] >= 0) c->prev[c->next[q]] = (int32_t)p;
        if (c->prev[p] >= 0) push_pair(c, (size_t)c->prev[p]);
        if (c->next[p] >= 0) push_pair(c, p);
    }
    return m;
}

static void bpe_word(enc_ctx *c, const uint8_t *w, size_t n) {
    const flm_tokenizer *t = c->t;
    if (!n) return;
    if (t->ignore_merges) {
        flm_sb_clear(&c->scratch);
        for (size_t i = 0; i < n; i++) {
            uint32_t cp = flm_tok_byte_char(w[i]);
            char u[2];
            if (cp < 0x80) { u[0] = (char)cp; flm_sb_append(&c->scratch, u, 1); }
            else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); flm_sb_append(&c->scratch, u, 2); }
        }
        int32_t id = c->scratch.oom ? -1 : flm_tok_vocab_find(t, c->scratch.data, c->scratch.len);
        if (id >= 0) { push_ids(c, &id, 1); return; }
    }
    if (n == 1) {
        if (t->byte_id[w[0]] >= 0) push_ids(c, &t->byte_id[w[0]], 1);
        return;
    }
    uint64_t h = 0;
    if (n <= CACHE_MAX_WORD) {
        h = flm_tok_hash(w, n) | 1;
        const cache_slot *s = cache_find(c, w, n, h);
        if (s) { push_ids(c, c->vals + s->val_off, s->val_len); return; }
    }
    size_t m = bpe_merge(c, w, n);
    if (c->oom || !m) return;
    size_t start = c->n_ids;
    for (int32_t p = 0; p >= 0; p = c->next[p]) push_ids(c, &c->sym[p], 1);
    if (n <= CACHE_MAX_WORD && !c->oom) cache_put(c, w, n, h, c->ids + start, c->n_ids - start);
}

/* ---- pre-tokenizer ------------------------------------------------------------------ */

static int pre_step(enc_ctx *c, size_t step, const char *s, size_t n);

/* `"pattern"` for messages: at most 40 characters, control characters as \xNN. The
 * pattern is valid UTF-8 (PCRE2_UTF checked it when compiling). */
static void pattern_excerpt(const char *p, strbuf *out) {
    size_t n = strlen(p), i = 0;
    flm_sb_putc(out, '"');
    for (size_t chars = 0; i < n && chars < 40; chars++) {
        uint32_t cp;
        size_t l = flm_utf8_next((const uint8_t *)p + i, n - i, &cp);
        if (cp < 0x20 || cp == 0x7F) flm_sb_printf(out, "\\x%02X", (unsigned)cp);
        else flm_sb_append(out, p + i, l);
        i += l;
    }
    flm_sb_puts(out, i < n ? "...\"" : "\"");
}

/* "tokenizer: pre-tokenizer pattern 1 "..." exceeded its <what> on a N-byte input (<detail>)" */
static int regex_fail(enc_ctx *c, size_t step, const char *what, const char *detail) {
    strbuf pat;
    flm_sb_init(&pat);
    pattern_excerpt(c->t->pre[step].pattern, &pat);
    int rc = flm_fail(FLM_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer pattern %zu %s exceeded its %s on a %zu-byte input (%s)", step + 1,
                      pat.oom ? "(?)" : flm_sb_cstr(&pat), what, c->text_len, detail);
    flm_sb_free(&pat);
    return rc;
}

/* The rest of a match attempt whose first try (limit RE_FIRST_LIMIT) ran out, or that
 * has less budget left than that: doubles the limit while PCRE2 runs out, up to the
 * per-attempt cap and to what is left of the budget. */
static int match_retry(enc_ctx *c, size_t step, const char *s, size_t n, size_t pos, uint64_t limit, bool *found) {
    const tok_pre_step *ps = &c->t->pre[step];
    uint64_t cap = RE_MATCH_BASE + (uint64_t)RE_MATCH_PER_BYTE * (n - pos);
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    char detail[128];
    for (;;) {
        bool by_budget = limit >= c->re_budget;
        if (by_budget) limit = c->re_budget;
        if (limit) {
            pcre2_set_match_limit(c->mctx, (uint32_t)limit);
            int r = pcre2_match(ps->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md[step], c->mctx);
            pcre2_set_match_limit(c->mctx, RE_FIRST_LIMIT);
            c->re_budget -= limit;
            c->re_spent += limit;
            if (r > 0) { *found = true; return FLM_OK; }
            if (r == PCRE2_ERROR_NOMATCH) { *found = false; return FLM_OK; }
            if (r == PCRE2_ERROR_JIT_STACKLIMIT && !c->jstack) { /* retry with a larger JIT stack */
                c->jstack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
                if (!c->jstack) return flm_fail(FLM_ERR_NOMEM, "out of memory for the regex stack");
                pcre2_jit_stack_assign(c->mctx, NULL, c->jstack);
                continue;
            }
            if (r == PCRE2_ERROR_DEPTHLIMIT || r == PCRE2_ERROR_HEAPLIMIT || r == PCRE2_ERROR_JIT_STACKLIMIT)
                return regex_fail(c, step, "backtracking memory limit", "catastrophic backtracking?");
            if (r != PCRE2_ERROR_MATCHLIMIT) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(r, msg, sizeof msg);
                return flm_fail(FLM_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer pattern %zu failed on a %zu-byte input: %s",
                                step + 1, c->text_len, (const char *)msg);
            }
        }
        if (by_budget) {
            snprintf(detail, sizeof detail, "%llu backtracking steps; catastrophic backtracking?", (unsigned long long)c->re_spent);
            return regex_fail(c, step, "matching budget", detail);
        }
        if (limit >= cap) {
            snprintf(detail, sizeof detail, "one match attempt needed over %llu backtracking steps; catastrophic backtracking?",
                     (unsigned long long)cap);
            return regex_fail(c, step, "matching budget", detail);
        }
        limit = limit * 2 < cap ? limit * 2 : cap;
    }
}

/* One match attempt of a step's (anchored) pattern at s[pos..n): *found tells whether it
 * matched (ovector in c->md[step]). Every match limit granted is charged to the encode
 * call's budget. The first try uses the limit left in the context (RE_FIRST_LIMIT). */
static inline int match_at(enc_ctx *c, size_t step, const char *s, size_t n, size_t pos, bool *found) {
    if (c->re_budget <= RE_FIRST_LIMIT) return match_retry(c, step, s, n, pos, RE_FIRST_LIMIT, found);
    int r = pcre2_match(c->t->pre[step].re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md[step], c->mctx);
    c->re_budget -= RE_FIRST_LIMIT;
    c->re_spent += RE_FIRST_LIMIT;
    if (r > 0) { *found = true; return FLM_OK; }
    if (r == PCRE2_ERROR_NOMATCH) { *found = false; return FLM_OK; }
    /* out of limit (or stack): the first try is charged, the retry starts at twice it */
    return match_retry(c, step, s, n, pos, r == PCRE2_ERROR_MATCHLIMIT ? 2 * RE_FIRST_LIMIT : RE_FIRST_LIMIT, found);
}

/* Runs the regex of a step over s and hands the pieces to `step + 1` (Split) or to BPE
 * (ByteLevel with use_regex), with tokenizers' Isolated / Removed behaviours. The
 * pattern is anchored, so the leftmost match is found by trying each start position
 * here, as an unanchored search would (PCRE2 resets its match limit at each start
 * position, which would leave a search that never matches unbounded). */
static int regex_split(enc_ctx *c, size_t step, const char *s, size_t n, bool to_bpe) {
    const tok_pre_step *ps = &c->t->pre[step];
    if (!c->md[step] && !(c->md[step] = pcre2_match_data_create_from_pattern(ps->re, NULL)))
        return flm_fail(FLM_ERR_NOMEM, "out of memory for regex match data");
    if (!c->mctx) {
        if (!(c->mctx = pcre2_match_context_create(NULL))) return flm_fail(FLM_ERR_NOMEM, "out of memory for the regex context");
        pcre2_set_depth_limit(c->mctx, RE_DEPTH_LIMIT);
        pcre2_set_heap_limit(c->mctx, RE_HEAP_LIMIT_KIB);
        pcre2_set_match_limit(c->mctx, RE_FIRST_LIMIT);
    }
    c->re_budget += (uint64_t)RE_BUDGET_PER_BYTE * (n + 1);
    size_t pos = 0, prev = 0;
    while (pos <= n) {
        bool found;
        int rc = match_at(c, step, s, n, pos, &found);
        if (rc) return rc;
        uint32_t cp;
        if (!found) { /* no match here: the next start position is one character on */
            if (pos >= n) break;
            pos += flm_utf8_next((const uint8_t *)s + pos, n - pos, &cp);
            continue;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md[step]);
        size_t ms = ov[0], me = ov[1];
        if (ms < pos || me < ms || me > n)
            return flm_fail(FLM_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer pattern %zu gave a match out of order (\\K?)", step + 1);
        /* pieces: the gap before the match, then the match */
        for (int k = 0; k < 2; k++) {
            size_t a = k ? ms : prev, b = k ? me : ms;
            bool is_match = k == 1;
            if (ps->invert) is_match = !is_match;
            if (a == b || (ps->behavior == SPLIT_REMOVED && is_match)) continue;
            rc = to_bpe ? (bpe_word(c, (const uint8_t *)s + a, b - a), FLM_OK) : pre_step(c, step + 1, s + a, b - a);
            if (rc) return rc;
        }
        prev = me;
        if (me > ms) pos = me;
        else if (ms >= n) break;
        else pos = ms + flm_utf8_next((const uint8_t *)s + ms, n - ms, &cp); /* empty match: step over one character */
    }
    if (prev < n) {
        bool is_match = ps->invert;
        if (!(ps->behavior == SPLIT_REMOVED && is_match)) {
            if (to_bpe) bpe_word(c, (const uint8_t *)s + prev, n - prev);
            else return pre_step(c, step + 1, s + prev, n - prev);
        }
    }
    return FLM_OK;
}

static int pre_step(enc_ctx *c, size_t step, const char *s, size_t n) {
    if (!n) return FLM_OK;
    const tok_pre_step *ps = &c->t->pre[step];
    if (ps->kind == PRE_SPLIT) return regex_split(c, step, s, n, false);
    /* ByteLevel (the last step): optional prefix space, optional GPT-2 regex, then BPE
     * on the raw bytes (the byte->char mapping is folded into byte_id[]). */
    char *tmp = NULL;
    if (ps->add_prefix_space && s[0] != ' ') {
        if (!(tmp = malloc(n + 1))) return flm_fail(FLM_ERR_NOMEM, "out of memory");
        tmp[0] = ' ';
        memcpy(tmp + 1, s, n);
        s = tmp;
        n++;
    }
    int rc = FLM_OK;
    if (ps->re) rc = regex_split(c, step, s, n, true);
    else bpe_word(c, (const uint8_t *)s, n);
    free(tmp);
    return rc;
}

/* ---- added tokens ------------------------------------------------------------------- */

/* Rust's char::is_whitespace (the White_Space property). */
static bool is_ws(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Approximates Rust's char::is_alphanumeric with general categories L*, N*, Mn, Mc. */
static bool is_word(uint32_t cp) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) || k == UTF8PROC_CATEGORY_MN ||
           k == UTF8PROC_CATEGORY_MC;
}

static size_t char_start_before(const char *s, size_t i) {
    do i--; while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80);
    return i;
}

/* Splits s into text spans and added-token spans the way tokenizers' AddedVocabulary
 * find_matches does: leftmost-longest non-overlapping matches, then the single_word,
 * lstrip and rstrip rules. */
static void split_added(enc_ctx *c, const tok_added_set *set, const char *s, size_t n, spanvec *out) {
    const flm_tokenizer *t = c->t;
    out->n = 0;
    size_t start_offset = 0, pos = 0;
    if (set->n && !(c->flags & FLM_ENCODE_NO_ADDED)) {
        while (pos < n) {
            const tok_added *a = NULL;
            size_t ms = pos;
            for (; ms < n && !a; ms++) {
                if (!set->first[(uint8_t)s[ms]]) continue;
                for (size_t k = 0; k < set->n; k++) {
                    const tok_added *x = &t->added[set->order[k]];
                    if (x->match_len <= n - ms && !memcmp(s + ms, x->match, x->match_len)) { a = x; break; }
                }
            }
            if (!a) break;
            ms--;
            size_t me = ms + a->match_len;
            pos = me;
            if ((c->flags & FLM_ENCODE_SPECIAL_AS_TEXT) && a->special) continue;
            uint32_t cp;
            if (a->single_word) {
                bool word_before = ms > 0 && (flm_utf8_next((const uint8_t *)s + char_start_before(s, ms), n, &cp), is_word(cp));
                bool word_after = me < n && (flm_utf8_next((const uint8_t *)s + me, n - me, &cp), is_word(cp));
                if (word_before || word_after) continue;
            }
            if (a->lstrip) {
                size_t ns = ms;
                while (ns > 0) {
                    size_t p = char_start_before(s, ns);
                    flm_utf8_next((const uint8_t *)s + p, n - p, &cp);
                    if (!is_ws(cp)) break;
                    ns = p;
                }
                ms = ns > start_offset ? ns : start_offset;
            }
            if (a->rstrip) {
                while (me < n) {
                    size_t l = flm_utf8_next((const uint8_t *)s + me, n - me, &cp);
                    if (!is_ws(cp)) break;
                    me += l;
                }
                if (me > pos) pos = me;
            }
            if (start_offset < ms) push_span(c, out, start_offset, ms, -1);
            push_span(c, out, ms, me, a->id);
            start_offset = me;
        }
    }
    if (start_offset < n) push_span(c, out, start_offset, n, -1);
}

/* ---- entry point ----------------------------------------------------------------------- */

static void ctx_free(enc_ctx *c) {
    free(c->slots); free(c->keys); free(c->vals);
    free(c->sym); free(c->prev); free(c->next); free(c->heap);
    for (size_t i = 0; i < TOK_MAX_PRE; i++) pcre2_match_data_free(c->md[i]);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jstack);
    flm_sb_free(&c->scratch);
    free(c->outer.v); free(c->inner.v);
}

int flm_tokenizer_encode_ex(const flm_tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
                            size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return flm_fail(FLM_ERR_ARG, "encode: NULL text");
    size_t valid = flm_utf8_valid_prefix((const uint8_t *)text, len);
    if (valid != len) return flm_fail(FLM_ERR_ARG, "encode: the text is not valid UTF-8 (byte %zu)", valid);
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.flags = flags;
    c.re_budget = RE_BUDGET_BASE;
    c.text_len = len;
    flm_sb_init(&c.scratch);
    int rc = FLM_OK;
    split_added(&c, &t->raw_set, text, len, &c.outer);
    for (size_t i = 0; i < c.outer.n && !rc && !c.oom; i++) {
        span o = c.outer.v[i];
        if (o.id >= 0) { push_ids(&c, &o.id, 1); continue; }
        char *norm = NULL;
        size_t nlen = 0;
        if ((rc = flm_tok_normalize(t, text + o.start, o.end - o.start, &norm, &nlen))) break;
        const char *p = norm ? norm : text + o.start;
        size_t plen = norm ? nlen : o.end - o.start;
        split_added(&c, &t->norm_set, p, plen, &c.inner);
        for (size_t k = 0; k < c.inner.n && !rc && !c.oom; k++) {
            span s = c.inner.v[k];
            if (s.id >= 0) push_ids(&c, &s.id, 1);
            else rc = pre_step(&c, 0, p + s.start, s.end - s.start);
        }
        free(norm);
    }
    if (!rc && c.oom) rc = flm_fail(FLM_ERR_NOMEM, "out of memory encoding %zu bytes", len);
    if (!rc && !c.ids && !(c.ids = malloc(sizeof *c.ids))) rc = flm_fail(FLM_ERR_NOMEM, "out of memory");
    if (rc) {
        free(c.ids);
    } else {
        *ids = c.ids;
        *n_ids = c.n_ids;
    }
    c.ids = NULL;
    ctx_free(&c);
    return rc;
}

int flm_tokenizer_encode(const flm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    return flm_tokenizer_encode_ex(t, text, len, 0, ids, n_ids);
}
