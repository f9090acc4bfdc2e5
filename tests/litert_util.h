/* litert_util.h — helpers shared by test_tflite.c and test_litertlm.c: converting
 * with the CLI, and running a model in LiteRT.js (tests/litert/run.mjs) when Node and
 * @litertjs/core are installed (`cd tests/litert && npm ci`). Without them the
 * LiteRT.js checks say plainly that they are skipped — unless FLM_LITERT_REQUIRED=1
 * (set by .ci/run), where a missing runtime is a failure. */
#ifndef TEST_LITERT_UTIL_H
#define TEST_LITERT_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "base/json.h"
#include "test.h"

/* Runs `fieldlm convert ARGS`; returns its exit status, stderr in *err (may be NULL). */
static inline int lt_convert(const char *args, char **err) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s convert %s -q", test_bin(), args);
    return test_run(cmd, NULL, err);
}

/* 1: LiteRT.js is available; 0: skip (said on stderr); -1: required but missing. */
static inline int lt_runtime(const char *what) {
    bool have = access("tests/litert/node_modules/@litertjs/core/package.json", R_OK) == 0 &&
                test_run("command -v node >/dev/null", NULL, NULL) == 0;
    if (have) return 1;
    const char *req = getenv("FLM_LITERT_REQUIRED");
    if (req && !strcmp(req, "1")) return -1;
    fprintf(stderr, "  SKIP %s: LiteRT.js not installed (node + cd tests/litert && npm ci)\n", what);
    return 0;
}

/* Runs the model in LiteRT.js against a reference; the JSON report in *doc. Returns
 * the harness's exit status (0: no LiteRT ERROR line). */
static inline int lt_run_js(const char *model, const char *ref, const char *extra, flm_json_doc **doc) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "node tests/litert/run.mjs %s %s %s", model, ref, extra ? extra : "");
    char *out = NULL;
    int rc = test_run(cmd, &out, NULL);
    *doc = out ? flm_json_parse(out, strlen(out), "run.mjs output") : NULL;
    if (!*doc) fprintf(stderr, "  run.mjs printed: %.500s\n", out ? out : "(nothing)");
    free(out);
    return rc;
}

/* Checks every case: last-prompt logits within tol of the reference, and (when
 * greedy_exact) every compared greedy step equal. Reports the figures. */
static inline void lt_check_cases(const flm_json_doc *doc, double tol, bool greedy_exact, const char *label) {
    const flm_json *r = flm_json_root(doc);
    const flm_json *errs = flm_json_get(r, "errors");
    CHECK_MSG(errs && errs->len == 0, "%s: LiteRT printed ERROR lines", label);
    const flm_json *cases = flm_json_get(r, "cases");
    REQUIRE(cases && cases->len > 0);
    int compared = 0, agree = 0, checked = 0;
    double worst = 0;
    bool logits = false;
    for (size_t i = 0; i < cases->len; i++) {
        const flm_json *c = flm_json_at(cases, i);
        if (flm_json_get(c, "skipped")) continue;
        checked++;
        const flm_json *dj = flm_json_get(c, "max_abs_diff");
        if (dj && dj->type == JSON_NUMBER) { /* null: a greedy-only reference */
            double d = flm_json_number(dj, 1e9);
            if (d > worst) worst = d;
            logits = true;
            CHECK_MSG(d <= tol, "%s case %zu: max |logit diff| %.3g > %.3g", label, i, d, tol);
        }
        int gc = (int)flm_json_int(flm_json_get(c, "greedy_compared"), 0), ga = (int)flm_json_int(flm_json_get(c, "greedy_agree"), 0);
        compared += gc;
        agree += ga;
        if (greedy_exact) CHECK_MSG(gc == ga, "%s case %zu: greedy differs at step %d", label, i, ga);
    }
    CHECK(checked > 0);
    if (logits) fprintf(stderr, "  %s: %d cases, max |logit diff| %.3g, greedy %d/%d steps agree\n", label, checked, worst, agree, compared);
    else fprintf(stderr, "  %s: %d cases, greedy %d/%d steps agree\n", label, checked, agree, compared);
}

#endif
