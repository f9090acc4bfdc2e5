/* main.c — the test runner. Usage: fieldlm_tests [FILTER...] runs every registered
 * test whose name or file contains one of the filters (all when none). */
#include "test.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/common.h"

typedef struct { const char *name, *file; test_fn fn; } test_entry;
static test_entry *g_tests;
static size_t g_ntests, g_cap;
static bool g_failed;
static char g_tmpdir[256];

void test_register(const char *name, const char *file, test_fn fn) {
    if (g_ntests == g_cap) {
        g_cap = g_cap ? g_cap * 2 : 64;
        g_tests = realloc(g_tests, g_cap * sizeof *g_tests);
        if (!g_tests) abort();
    }
    g_tests[g_ntests++] = (test_entry){name, file, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    g_failed = true;
}

bool test_failed(void) { return g_failed; }

const char *test_bin(void) {
    const char *b = getenv("FLM_BIN");
    return b && *b ? b : "build/fieldlm";
}

const char *test_tmpdir(void) {
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/fieldlm-test-XXXXXX");
        if (!mkdtemp(g_tmpdir)) abort();
    }
    return g_tmpdir;
}

static char *slurp(FILE *f) {
    strbuf sb;
    flm_sb_init(&sb);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) flm_sb_append(&sb, buf, n);
    return flm_sb_take(&sb);
}

int test_run(const char *cmd, char **out, char **err_out) {
    char errpath[300];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", test_tmpdir());
    strbuf full;
    flm_sb_init(&full);
    flm_sb_printf(&full, "(%s) 2>%s", cmd, errpath);
    FILE *p = popen(flm_sb_cstr(&full), "r");
    flm_sb_free(&full);
    if (!p) return -1;
    char *o = slurp(p);
    int st = pclose(p);
    if (out) *out = o; else free(o);
    if (err_out) {
        FILE *e = fopen(errpath, "rb");
        *err_out = e ? slurp(e) : flm_strdup("");
        if (e) fclose(e);
    }
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

static int cmp_tests(const void *a, const void *b) {
    const test_entry *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    qsort(g_tests, g_ntests, sizeof *g_tests, cmp_tests);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < g_ntests; i++) {
        bool selected = argc < 2;
        for (int a = 1; a < argc && !selected; a++)
            selected = strstr(g_tests[i].name, argv[a]) || strstr(g_tests[i].file, argv[a]);
        if (!selected) continue;
        /* FLM_TEST_SKIP=a,b: leave out the tests whose name contains a or b, each named on a
         * "skip" line (CI's sanitizer run leaves out the slowest numeric and Node-driven ones) */
        const char *skip = getenv("FLM_TEST_SKIP");
        bool skipped = false;
        for (const char *p = skip; p && *p && !skipped;) {
            size_t n = strcspn(p, ",");
            char pat[128];
            if (n > 0 && n < sizeof pat) {
                memcpy(pat, p, n);
                pat[n] = 0;
                skipped = strstr(g_tests[i].name, pat) != NULL;
            }
            p += n + (p[n] == ',');
        }
        if (skipped) { printf("skip %s (FLM_TEST_SKIP)\n", g_tests[i].name); continue; }
        g_failed = false;
        double t0 = flm_now_seconds();
        g_tests[i].fn();
        double dt = flm_now_seconds() - t0;
        printf("%s %s (%.2fs)\n", g_failed ? "FAIL" : "ok  ", g_tests[i].name, dt);
        if (g_failed) failed++; else passed++;
    }
    if (g_tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
