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
