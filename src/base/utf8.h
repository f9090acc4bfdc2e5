/* utf8.h — strict UTF-8 helpers (Unicode Table 3-7 well-formed sequences): the
 * tokenizer's input check and decoding, and the repair its decoder applies to bytes
 * that end mid-character or are ill-formed. */
#ifndef FLM_UTF8_H
#define FLM_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

/* Length of the longest valid UTF-8 prefix of s (== n when valid). */
size_t flm_utf8_valid_prefix(const uint8_t *s, size_t n);
/* Decodes one UTF-8 character of a valid string (n >= 1); returns its length. */
size_t flm_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* Appends s[0..n) to out with invalid UTF-8 replaced like Python's
 * bytes.decode(errors="replace"): each maximal subpart of an ill-formed sequence
 * becomes one U+FFFD. When `final` is false an unfinished character at the end is
 * not consumed; returns the number of bytes consumed. s may be NULL when n is 0. */
size_t flm_utf8_repair(const uint8_t *s, size_t n, bool final, strbuf *out);

#endif
