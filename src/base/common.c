/* common.c — error messages, allocation, string buffers, files, float formats. */
#include "base/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static _Thread_local char g_err[1024];

const char *flm_status_str(int status) {
    switch (status) {
    case FLM_OK: return "ok";
    case FLM_ERR_IO: return "I/O error";
    case FLM_ERR_FORMAT: return "malformed input";
    case FLM_ERR_UNSUPPORTED: return "unsupported";
    case FLM_ERR_NOMEM: return "out of memory";
    case FLM_ERR_ARG: return "invalid argument";
    case FLM_ERR_CONTEXT: return "context full";
    case FLM_ERR_CANCELLED: return "cancelled";
    case FLM_ERR_BUFFER: return "buffer too small";
    default: return "unknown error";
    }
}

int flm_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return status;
}

int flm_fail_context(int status, const char *fmt, ...) {
    char prefix[256], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    int n = snprintf(g_err, sizeof g_err, "%s: ", prefix);
    if (n > 0 && (size_t)n < sizeof g_err) memcpy(g_err + n, old, sizeof g_err - (size_t)n - 1);
    g_err[sizeof g_err - 1] = 0;
    return status;
}

const char *flm_last_error(void) { return g_err[0] ? g_err : "no error"; }
void flm_clear_error(void) { g_err[0] = 0; }

void *flm_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) flm_fail(FLM_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}
void *flm_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) flm_fail(FLM_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}
void *flm_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) flm_fail(FLM_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return q;
}
char *flm_strndup(const char *s, size_t n) {
    char *p = flm_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}
char *flm_strdup(const char *s) { return flm_strndup(s, strlen(s)); }

/* ---- strbuf ---- */
void flm_sb_init(strbuf *sb) { memset(sb, 0, sizeof *sb); }
void flm_sb_free(strbuf *sb) { free(sb->data); flm_sb_init(sb); }
void flm_sb_clear(strbuf *sb) { sb->len = 0; if (sb->data) sb->data[0] = 0; }
bool flm_sb_reserve(strbuf *sb, size_t extra) {
    if (sb->oom) return false;
    if (sb->len + extra + 1 <= sb->cap) return true;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *p = realloc(sb->data, cap);
    if (!p) { sb->oom = true; flm_fail(FLM_ERR_NOMEM, "out of memory (string of %zu bytes)", cap); return false; }
    sb->data = p;
    sb->cap = cap;
    return true;
}
void flm_sb_append(strbuf *sb, const char *s, size_t n) {
    if (!flm_sb_reserve(sb, n)) return;
    if (n) memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = 0;
}
void flm_sb_puts(strbuf *sb, const char *s) { flm_sb_append(sb, s, strlen(s)); }
void flm_sb_putc(strbuf *sb, char c) { flm_sb_append(sb, &c, 1); }
void flm_sb_printf(strbuf *sb, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0 && flm_sb_reserve(sb, (size_t)n)) {
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap2);
        sb->len += (size_t)n;
    }
    va_end(ap2);
}
const char *flm_sb_cstr(strbuf *sb) {
    if (!sb->data && flm_sb_reserve(sb, 0)) sb->data[0] = 0;
    return sb->data ? sb->data : "";
}
char *flm_sb_take(strbuf *sb) {
    (void)flm_sb_cstr(sb);
    char *p = sb->data;
    flm_sb_init(sb);
    return p;
}

/* Decodes one UTF-8 sequence; returns its length, or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    size_t len = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t c = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

void flm_sb_json_string(strbuf *sb, const char *s, size_t n, bool ensure_ascii) {
    flm_sb_putc(sb, '"');
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        switch (c) {
        case '"': flm_sb_puts(sb, "\\\""); i++; continue;
        case '\\': flm_sb_puts(sb, "\\\\"); i++; continue;
        case '\n': flm_sb_puts(sb, "\\n"); i++; continue;
        case '\r': flm_sb_puts(sb, "\\r"); i++; continue;
        case '\t': flm_sb_puts(sb, "\\t"); i++; continue;
        case '\b': flm_sb_puts(sb, "\\b"); i++; continue;
        case '\f': flm_sb_puts(sb, "\\f"); i++; continue;
        default: break;
        }
        if (c < 0x20) { flm_sb_printf(sb, "\\u%04x", c); i++; continue; }
        if (c < 0x80 || !ensure_ascii) {
            if (c < 0x80) { flm_sb_putc(sb, (char)c); i++; continue; }
            uint32_t cp;
            size_t len = utf8_decode(p + i, n - i, &cp);
            if (len) { flm_sb_append(sb, s + i, len); i += len; }
            else { flm_sb_puts(sb, "\\ufffd"); i++; }
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode(p + i, n - i, &cp);
        if (!len) { flm_sb_puts(sb, "\\ufffd"); i++; continue; }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            flm_sb_printf(sb, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        } else {
            flm_sb_printf(sb, "\\u%04x", cp);
        }
        i += len;
    }
    flm_sb_putc(sb, '"');
}

/* ---- files ---- */
int flm_read_file(const char *path, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return flm_fail(FLM_ERR_IO, "%s: %s", path, strerror(errno));
    strbuf sb;
    flm_sb_init(&sb);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) flm_sb_append(&sb, buf, n);
    int err = ferror(f);
    fclose(f);
    if (err) { flm_sb_free(&sb); return flm_fail(FLM_ERR_IO, "%s: read error", path); }
    if (sb.oom) { flm_sb_free(&sb); return FLM_ERR_NOMEM; }
    if (out_len) *out_len = sb.len;
    *out = flm_sb_take(&sb);
    return *out ? FLM_OK : FLM_ERR_NOMEM;
}

char *flm_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = flm_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}
bool flm_file_exists(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISREG(st.st_mode); }
bool flm_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

/* ---- float formats ---- */
float flm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t flm_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xFF, man = x & 0x7FFFFF;
    if (exp == 0xFF) return (uint16_t)(sign | 0x7C00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7C00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* may carry into exponent: correct */
    return (uint16_t)(sign | h);
}

float flm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t flm_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

double flm_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t flm_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;
}
