/* common.h — internal basics shared by every module: status codes, the per-thread
 * error message, checked allocation, a growable string buffer.
 * The library never exits or prints; it returns a status and leaves a message that
 * flm_last_error() (or the public API's per-handle copy) reports. */
#ifndef FLM_COMMON_H
#define FLM_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdbool.h>
#include "fieldlm.h"

#if defined(__GNUC__)
#define FLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FLM_PRINTF(a, b)
#endif

/* Records a formatted message for this thread and returns `status` (a negative
 * flm_status), so callers can write `return flm_fail(FLM_ERR_FORMAT, "...")`. */
int flm_fail(int status, const char *fmt, ...) FLM_PRINTF(2, 3);
/* Prefixes the current message with more context ("loading X: " + old message). */
int flm_fail_context(int status, const char *fmt, ...) FLM_PRINTF(2, 3);
const char *flm_last_error(void);
void flm_clear_error(void);

/* Allocation that records FLM_ERR_NOMEM on failure (returns NULL). */
void *flm_malloc(size_t n);
void *flm_calloc(size_t n, size_t size);
void *flm_realloc(void *p, size_t n);
char *flm_strdup(const char *s);
char *flm_strndup(const char *s, size_t n);

/* Growable byte buffer, always NUL-terminated when len > 0 or after flm_sb_cstr(). */
typedef struct {
    char *data;
    size_t len, cap;
    bool oom; /* set once an allocation failed; further appends are no-ops */
} strbuf;

void flm_sb_init(strbuf *sb);
void flm_sb_free(strbuf *sb);
void flm_sb_clear(strbuf *sb);
bool flm_sb_reserve(strbuf *sb, size_t extra);
void flm_sb_append(strbuf *sb, const char *s, size_t n);
void flm_sb_puts(strbuf *sb, const char *s);
void flm_sb_putc(strbuf *sb, char c);
void flm_sb_printf(strbuf *sb, const char *fmt, ...) FLM_PRINTF(2, 3);
const char *flm_sb_cstr(strbuf *sb);
/* Takes the buffer (caller frees); the strbuf is left empty. */
char *flm_sb_take(strbuf *sb);
/* Appends s as a JSON string literal (quotes included). ensure_ascii escapes
 * non-ASCII as \uXXXX like Python's json.dumps default. */
void flm_sb_json_string(strbuf *sb, const char *s, size_t n, bool ensure_ascii);

/* Reads a whole file into a malloc'ed NUL-terminated buffer. */
int flm_read_file(const char *path, char **out, size_t *out_len);
/* Joins dir and name with '/', malloc'ed. */
char *flm_path_join(const char *dir, const char *name);
bool flm_file_exists(const char *path);
bool flm_is_dir(const char *path);

/* IEEE half / bfloat16 conversion (exact, round-to-nearest-even on the way down). */
float flm_f16_to_f32(uint16_t h);
uint16_t flm_f32_to_f16(float f);
float flm_bf16_to_f32(uint16_t h);
uint16_t flm_f32_to_bf16(float f);

double flm_now_seconds(void);
/* Peak resident set size of this process in bytes (0 if unknown). */
size_t flm_peak_rss_bytes(void);

#endif
