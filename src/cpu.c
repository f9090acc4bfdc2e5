/* cpu.c — CPU feature detection (cpuid + xgetbv on x86-64) done once, and the choice
 * of kernel table: the best the CPU runs, or the one FLM_KERNELS names. */
#include "cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_simd.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

static flm_cpu_features g_cpu;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

static void detect(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    unsigned long long xcr0 = xgetbv0();
    bool ymm_ok = (xcr0 & 0x6) == 0x6;       /* SSE + AVX state */
    bool zmm_ok = (xcr0 & 0xE6) == 0xE6;     /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = (b >> 5) & 1;
    bool f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    g_cpu.avx2 = ymm_ok && avx2 && fma && f16c;
    g_cpu.avx512 = g_cpu.avx2 && zmm_ok && f && dq && bw && vl;
#elif defined(__aarch64__)
    g_cpu.neon = true;
#endif
}

const flm_cpu_features *flm_cpu_get(void) {
    pthread_once(&g_cpu_once, detect);
    return &g_cpu;
}

const flm_kernels *flm_kernels_by_name(const char *name) {
    const flm_cpu_features *f = flm_cpu_get();
    if (!name) return NULL;
    if (strcmp(name, "scalar") == 0) return flm_kernels_scalar();
#if defined(__x86_64__)
    if (strcmp(name, "avx2") == 0) return f->avx2 ? flm_kernels_avx2() : NULL;
    if (strcmp(name, "avx512") == 0) return f->avx512 ? flm_kernels_avx512() : NULL;
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return f->neon ? flm_kernels_neon() : NULL;
#endif
    (void)f;
    return NULL;
}

static const flm_kernels *g_selected;
static pthread_once_t g_select_once = PTHREAD_ONCE_INIT;

static const flm_kernels *best_for_cpu(void) {
    static const char *const order[] = {"avx512", "avx2", "neon"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const flm_kernels *k = flm_kernels_by_name(order[i]);
        if (k) return k;
    }
    return flm_kernels_scalar();
}

static void select_once(void) {
    const char *env = getenv("FLM_KERNELS");
    g_selected = best_for_cpu();
    if (env && *env) {
        const flm_kernels *k = flm_kernels_by_name(env);
        if (k) g_selected = k;
        else fprintf(stderr, "fieldlm: FLM_KERNELS=%s is not available on this CPU/build; using %s\n", env, g_selected->name);
    }
}

const flm_kernels *flm_kernels_select(void) {
    pthread_once(&g_select_once, select_once);
    return g_selected;
}
