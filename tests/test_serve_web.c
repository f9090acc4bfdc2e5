/* test_serve_web.c — `fieldlm serve` from outside, by node scripts in tests/web/ against a
 * real server process on loopback (the binary under test: FLM_BIN, so `make test-san` runs
 * them against the ASan+UBSan build):
 *   - tests/web/hostile.mjs: more than a thousand malformed or abusive requests and
 *     connections; the server answers or closes every one, stays alive, gives the same greedy
 *     text, frees every slot and keeps its RSS (node's built-in modules only);
 *   - tests/web/chat.test.mjs: the chat page in headless Debian chromium (npm playwright-core,
 *     pinned in tests/web/package-lock.json): a streamed answer, the system-prompt box, the stop
 *     button, a screenshot.
 * Without node (or without tests/web/node_modules and /usr/bin/chromium for the page) they
 * print a SKIP line; CI sets FLM_SERVE_WEB_REQUIRED=1, which turns a SKIP into a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

static int required(void) {
    const char *r = getenv("FLM_SERVE_WEB_REQUIRED");
    return r && !strcmp(r, "1");
}

/* Prints the lines of `out` that start with one of the prefixes (what a run measured). */
static void show_lines(const char *out, const char *const *prefixes, int n) {
    const char *p = out;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        for (int i = 0; i < n; i++)
            if (!strncmp(p, prefixes[i], strlen(prefixes[i]))) { fprintf(stderr, "  %.*s\n", (int)len, p); break; }
        p = e ? e + 1 : NULL;
    }
}

static int sanitized_bin(void) { return strstr(test_bin(), "build-san") != NULL; }

TEST(serve_hostile_suite) {
    if (test_run("command -v node >/dev/null", NULL, NULL) != 0) {
        CHECK_MSG(!required(), "node is required for the hostile suite (FLM_SERVE_WEB_REQUIRED=1)");
        fprintf(stderr, "  SKIP: node missing (the hostile suite tests/web/hostile.mjs needs it)\n");
        return;
    }
    char cmd[1024], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "FLM_BIN='%s' FLM_SAN=%d node tests/web/hostile.mjs 2>&1", test_bin(), sanitized_bin());
    int rc = test_run(cmd, &out, &err);
    CHECK_MSG(rc == 0, "tests/web/hostile.mjs failed:\n%s", out ? out : "");
    CHECK_MSG(out && strstr(out, "hostile: all checks passed"), "%s", out ? out : "");
    static const char *const keep[] = {"hostile: "};
    if (rc == 0) show_lines(out, keep, 1);
    free(out);
    free(err);
}

TEST(serve_chat_page_in_chromium) {
    if (test_run("command -v node >/dev/null && test -d tests/web/node_modules/playwright-core && test -x /usr/bin/chromium",
                 NULL, NULL) != 0) {
        CHECK_MSG(!required(), "node, tests/web/node_modules (npm ci in tests/web) and /usr/bin/chromium are required "
                               "for the chat page test (FLM_SERVE_WEB_REQUIRED=1)");
        fprintf(stderr, "  SKIP: the chat page test needs node, /usr/bin/chromium and 'npm ci' in tests/web\n");
        return;
    }
    char cmd[1024], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "FLM_BIN='%s' FLM_TMPDIR='%s' node tests/web/chat.test.mjs 2>&1", test_bin(), test_tmpdir());
    int rc = test_run(cmd, &out, &err);
    CHECK_MSG(rc == 0, "tests/web/chat.test.mjs failed:\n%s", out ? out : "");
    CHECK_MSG(out && strstr(out, "chat page: all checks passed"), "%s", out ? out : "");
    static const char *const keep[] = {"screenshot: ", "answer 1: ", "stop: "};
    if (rc == 0) show_lines(out, keep, 3);
    free(out);
    free(err);
}
