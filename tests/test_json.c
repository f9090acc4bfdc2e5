/* test_json.c — the JSON reader: valid documents, escapes, and hostile input. */
#include "test.h"
#include "json.h"

TEST(json_parses_nested_document) {
    const char *t = "{\"a\": [1, 2.5, -3e2, true, false, null], \"b\": {\"c\": \"x\\u00e9\\ud83d\\ude00\\n\"}, \"a\": 7}";
    json_doc *d = json_parse(t, strlen(t), "test");
    REQUIRE(d);
    const json *r = json_root(d);
    CHECK_EQ_INT(json_int(json_get(r, "a"), -1), 7); /* last duplicate wins */
    const json *arr = &r->items[0];
    CHECK_EQ_INT(arr->len, 6);
    CHECK_NEAR(json_number(json_at(arr, 1), 0), 2.5, 0);
    CHECK_NEAR(json_number(json_at(arr, 2), 0), -300, 0);
    CHECK(json_at(arr, 0)->is_int && !json_at(arr, 1)->is_int);
    CHECK(json_bool(json_at(arr, 3), false));
    CHECK_EQ_INT(json_at(arr, 5)->type, JSON_NULL);
    CHECK_STR(json_string(json_get(json_get(r, "b"), "c"), NULL), "x\xc3\xa9\xf0\x9f\x98\x80\n");
    json_free(d);
}

TEST(json_rejects_malformed_input) {
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "\"abc", "01", "1.", "-", "tru", "[1] x",
                         "\"\\x\"", "\"\\u12g4\"", "\"a\x01\"", "\"\xff\"", "{1:2}", "[\"\xc0\xaf\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_doc *d = json_parse(bad[i], strlen(bad[i]), "bad");
        CHECK_MSG(d == NULL, "accepted bad JSON #%zu: %s", i, bad[i]);
        json_free(d);
    }
}

TEST(json_bounds_nesting_depth) {
    char deep[5000];
    memset(deep, '[', sizeof deep);
    json_doc *d = json_parse(deep, sizeof deep, "deep");
    CHECK(d == NULL);
    CHECK(strstr(flm_last_error(), "too deep") != NULL);
}

TEST(json_writes_python_style) {
    const char *t = "{\"k\": [1, \"\xc3\xa9\", {\"x\": null}], \"f\": 0.5}";
    json_doc *d = json_parse(t, strlen(t), "t");
    REQUIRE(d);
    strbuf sb;
    sb_init(&sb);
    json_write(&sb, json_root(d), true);
    CHECK_STR(sb_cstr(&sb), "{\"k\": [1, \"\\u00e9\", {\"x\": null}], \"f\": 0.5}");
    sb_clear(&sb);
    json_write(&sb, json_root(d), false);
    CHECK_STR(sb_cstr(&sb), "{\"k\":[1,\"\xc3\xa9\",{\"x\":null}],\"f\":0.5}");
    sb_free(&sb);
    json_free(d);
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
