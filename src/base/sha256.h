/* sha256.h — SHA-256 (FIPS 180-4), for the provenance of converted packages. */
#ifndef FLM_SHA256_H
#define FLM_SHA256_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t total;
    unsigned char buf[64];
    size_t n;
} flm_sha256;

void flm_sha256_init(flm_sha256 *s);
void flm_sha256_update(flm_sha256 *s, const void *data, size_t len);
void flm_sha256_final(flm_sha256 *s, unsigned char out[32]);
/* Hex digest (64 chars + NUL) of a whole file. */
int flm_sha256_file(const char *path, char hex[65]);
void flm_sha256_hex(const unsigned char d[32], char hex[65]);

/* The compression function over n 64-byte blocks at p, updating the state h: with
 * the CPU's SHA instructions when it has them (x86 SHA extensions), else portable C;
 * _portable always uses the C code (the two are compared by the tests). */
void flm_sha256_blocks(uint32_t h[8], const unsigned char *p, size_t n);
void flm_sha256_blocks_portable(uint32_t h[8], const unsigned char *p, size_t n);
/* Whether flm_sha256_blocks uses SHA instructions on this CPU. */
bool flm_sha256_accelerated(void);

#endif
