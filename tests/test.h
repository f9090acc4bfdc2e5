/* test.h — the one test runner: tests register themselves with TEST(name), the
 * runner (tests/main.c) runs those whose name contains any argv filter, and ends
 * with "N passed, N failed". Tests run from the repository root. */
#ifndef FLM_TEST_H
#define FLM_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
/* Marks the running test failed with a message (printed with file:line). */
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool test_failed(void);

#define TEST(name)                                                                   \
    static void name(void);                                                          \
    __attribute__((constructor)) static void register_##name(void) {                 \
        test_register(#name, __FILE__, name);                                        \
    }                                                                                \
    static void name(void)

#define CHECK(cond)                                                                  \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define REQUIRE(cond)                                                                \
    do { if (!(cond)) { test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define CHECK_MSG(cond, ...)                                                         \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b)                                                           \
    do { long long a_ = (long long)(a), b_ = (long long)(b);                         \
         if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_STR(a, b)                                                              \
    do { const char *a_ = (a), *b_ = (b);                                            \
         if (!a_ || !b_ || strcmp(a_, b_) != 0)                                      \
             test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,     \
                       a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
#define CHECK_NEAR(a, b, tol)                                                        \
    do { double a_ = (a), b_ = (b);                                                  \
         if (!(fabs(a_ - b_) <= (tol)))                                              \
             test_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); } while (0)

/* Runs a shell command, captures stdout (malloc'ed, NUL-terminated) and returns the
 * exit status (-1 if it did not exit normally). stderr goes to *err_out if non-NULL. */
int test_run(const char *cmd, char **out, char **err_out);
/* The fieldlm binary under test ($FLM_BIN, default build/fieldlm). */
const char *test_bin(void);
/* A fresh temporary directory for this test (removed at exit). */
const char *test_tmpdir(void);

#define TEST_DATA "tests/data"
#define BUNDLED_MODEL "models/kcc-advisor"

#endif
