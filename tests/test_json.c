/* test_json.c — the JSON reader: valid documents, escapes, and hostile input. */
#include "test.h"
#include "base/json.h"

TEST(json_parses_nested_document) {
    const char *t = "{\"a\": [1, 2.5, -3e2, true, false, null], \"b\": {\"c\": \"x\\u00e9\\ud83d\\ude00\\n\"}, \"a\": 7}";
    flm_json_doc *d = flm_json_parse(t, strlen(t), "test");
    REQUIRE(d);
    const flm_json *r = flm_json_root(d);
    CHECK_EQ_INT(flm_json_int(flm_json_get(r, "a"), -1), 7); /* last duplicate wins */
    const flm_json *arr = &r->items[0];
    CHECK_EQ_INT(arr->len, 6);
    CHECK_NEAR(flm_json_number(flm_json_at(arr, 1), 0), 2.5, 0);
    CHECK_NEAR(flm_json_number(flm_json_at(arr, 2), 0), -300, 0);
    CHECK(flm_json_at(arr, 0)->is_int && !flm_json_at(arr, 1)->is_int);
    CHECK(flm_json_bool(flm_json_at(arr, 3), false));
    CHECK_EQ_INT(flm_json_at(arr, 5)->type, JSON_NULL);
    CHECK_STR(flm_json_string(flm_json_get(flm_json_get(r, "b"), "c"), NULL), "x\xc3\xa9\xf0\x9f\x98\x80\n");
    flm_json_free(d);
}

TEST(json_rejects_malformed_input) {
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "\"abc", "01", "1.", "-", "tru", "[1] x",
                         "\"\\x\"", "\"\\u12g4\"", "\"a\x01\"", "\"\xff\"", "{1:2}", "[\"\xc0\xaf\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        flm_json_doc *d = flm_json_parse(bad[i], strlen(bad[i]), "bad");
        CHECK_MSG(d == NULL, "accepted bad JSON #%zu: %s", i, bad[i]);
        flm_json_free(d);
    }
}

TEST(json_bounds_nesting_depth) {
    char deep[5000];
    memset(deep, '[', sizeof deep);
    flm_json_doc *d = flm_json_parse(deep, sizeof deep, "deep");
    CHECK(d == NULL);
    CHECK(strstr(flm_last_error(), "too deep") != NULL);
}

TEST(json_writes_python_style) {
    const char *t = "{\"k\": [1, \"\xc3\xa9\", {\"x\": null}], \"f\": 0.5}";
    flm_json_doc *d = flm_json_parse(t, strlen(t), "t");
    REQUIRE(d);
    strbuf sb;
    flm_sb_init(&sb);
    flm_json_write(&sb, flm_json_root(d), true);
    CHECK_STR(flm_sb_cstr(&sb), "{\"k\": [1, \"\\u00e9\", {\"x\": null}], \"f\": 0.5}");
    flm_sb_clear(&sb);
    flm_json_write(&sb, flm_json_root(d), false);
    CHECK_STR(flm_sb_cstr(&sb), "{\"k\":[1,\"\xc3\xa9\",{\"x\":null}],\"f\":0.5}");
    flm_sb_free(&sb);
    flm_json_free(d);
}

TEST(f16_bf16_round_trip) {
    /* every finite f16 survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        float f = flm_f16_to_f32((uint16_t)h);
        if (flm_f32_to_f16(f) != h) { CHECK_MSG(0, "f16 0x%04x did not round-trip", h); break; }
    }
    CHECK_NEAR(flm_f16_to_f32(0x3C00), 1.0, 0);
    CHECK_NEAR(flm_bf16_to_f32(flm_f32_to_bf16(1.0f)), 1.0, 0);
    CHECK_EQ_INT(flm_f32_to_bf16(1.00390625f), 0x3F80); /* tie rounds to even */
    CHECK_EQ_INT(flm_f32_to_f16(65520.0f), 0x7C00);      /* overflow to inf */
}
