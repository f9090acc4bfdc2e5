/* test_sha256.c — FIPS 180-4 test vectors and agreement with sha256sum. */
#include <stdlib.h>
#include "base/sha256.h"
#include "base/common.h"
#include "test.h"

static void hex_of(const char *msg, size_t n, char out[65]) {
    flm_sha256 s;
    unsigned char d[32];
    flm_sha256_init(&s);
    flm_sha256_update(&s, msg, n);
    flm_sha256_final(&s, d);
    flm_sha256_hex(d, out);
}

TEST(sha256_known_vectors) {
    char h[65];
    hex_of("abc", 3, h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("", 0, h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(sha256_file_matches_sha256sum) {
    char h[65], *out;
    REQUIRE(flm_sha256_file(TEST_DATA "/micro-qwen2/config.json", h) == FLM_OK);
    REQUIRE(test_run("sha256sum " TEST_DATA "/micro-qwen2/config.json", &out, NULL) == 0);
    CHECK(strncmp(out, h, 64) == 0);
    free(out);
}

/* The compression function on this CPU (SHA extensions when it has them) against the
 * portable C code: random blocks, 1..37 at a time, from a random state, and a known
 * vector through the multi-block path (one million 'a', FIPS 180-4's long message). */
TEST(sha256_accelerated_matches_portable) {
    uint64_t rng = 0x243F6A8885A308D3ull;
    unsigned char *buf = malloc(37 * 64 + 1);
    REQUIRE(buf);
    for (int rep = 0; rep < 200; rep++) {
        size_t n = 1 + (size_t)(rep % 37);
        uint32_t h1[8], h2[8];
        for (int i = 0; i < 8; i++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            h1[i] = h2[i] = (uint32_t)(rng >> 11);
        }
        for (size_t i = 0; i < n * 64 + 1; i++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            buf[i] = (unsigned char)(rng >> 32);
        }
        const unsigned char *p = buf + (rep & 1); /* unaligned half the time */
        flm_sha256_blocks(h1, p, n);
        flm_sha256_blocks_portable(h2, p, n);
        CHECK_MSG(memcmp(h1, h2, sizeof h1) == 0, "%zu blocks (rep %d): accelerated and portable differ", n, rep);
    }
    free(buf);
    char *a = malloc(1000000);
    REQUIRE(a);
    memset(a, 'a', 1000000);
    char h[65];
    hex_of(a, 1000000, h);
    CHECK_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    printf("    SHA-256 compression: %s\n", flm_sha256_accelerated() ? "x86 SHA extensions (checked against the C code)" : "portable C");
}
