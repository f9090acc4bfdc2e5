/* cpu.c — the one kernel dispatcher: CPU feature detection (cpuid + xgetbv on
 * x86-64) done once; the kernel tables composed from the ISA files (float-activation
 * tables, with the int8-activation q8_0/q4_0 matmuls patched in for the qact
 * variants); and the choice of table (the best the CPU runs, or the one FLM_KERNELS
 * names), which every SIMD caller of the library gets through flm_kernels_best()
 * (the forward pass, the LoRA merge, the bandwidth probe). The top of src/kernels:
 * it calls the ISA files and kernels_ref.c; nothing in src/kernels calls it. */
#include "kernels/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_neon.h"
#include "kernels/kernels_simd.h"

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
    bool vnni = (c >> 11) & 1; /* leaf 7 ECX bit 11: AVX512_VNNI */
    bool vbmi = (c >> 1) & 1;  /* leaf 7 ECX bit 1: AVX512_VBMI (vpermb, vpermt2b) */
    g_cpu.avx2 = ymm_ok && avx2 && fma && f16c;
    g_cpu.avx512 = g_cpu.avx2 && zmm_ok && f && dq && bw && vl;
    g_cpu.avx512vnni = g_cpu.avx512 && vnni;
    g_cpu.avx512vbmi = g_cpu.avx512 && vbmi;
#elif defined(__aarch64__)
    g_cpu.neon = true;
#endif
}

const flm_cpu_features *flm_cpu_get(void) {
    pthread_once(&g_cpu_once, detect);
    return &g_cpu;
}

/* ---- tables ---- */

/* Float-activation table by name, if built and runnable. */
static const flm_kernels *float_table(const char *name) {
    const flm_cpu_features *f = flm_cpu_get();
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

/* The int8-activation matmuls that go with a float table (the best this CPU runs
 * for that ISA: AVX-512 without VNNI and VBMI borrows the AVX2 ones). */
static const flm_qact_fns *qact_fns(const char *name) {
    const flm_cpu_features *f = flm_cpu_get();
#if defined(__x86_64__)
    if (strcmp(name, "avx512") == 0) return f->avx512vnni && f->avx512vbmi ? flm_qact_avx512vnni() : flm_qact_avx2();
    if (strcmp(name, "avx2") == 0) return flm_qact_avx2();
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return flm_qact_neon();
    if (strcmp(name, "neon-dotprod") == 0) return flm_qact_neon_dotprod(); /* NULL without SDOT */
    if (strcmp(name, "neon-i8mm") == 0) return flm_qact_neon_i8mm();       /* NULL without SMMLA */
#endif
    (void)f;
    return flm_qact_scalar();
}

static const char *const TABLE_NAMES[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod", "neon-i8mm"};
#define N_TABLES (sizeof TABLE_NAMES / sizeof TABLE_NAMES[0])
static flm_kernels g_qact[N_TABLES];
static bool g_qact_ok[N_TABLES];
static pthread_once_t g_qact_once = PTHREAD_ONCE_INIT;

static void compose_qact(void) {
    for (size_t i = 0; i < N_TABLES; i++) {
        /* "neon-dotprod", "neon-i8mm": the neon table with other int8 products (no float table) */
        const flm_kernels *base = float_table(strncmp(TABLE_NAMES[i], "neon-", 5) == 0 ? "neon" : TABLE_NAMES[i]);
        const flm_qact_fns *q = qact_fns(TABLE_NAMES[i]);
        if (!base || !q) continue;
        g_qact[i] = *base;
        g_qact[i].name = TABLE_NAMES[i];
        g_qact[i].matmul[FLM_Q8_0] = q->q8_0;
        g_qact[i].matmul[FLM_Q4_0] = q->q4_0;
        g_qact[i].qprep_bytes = q->prep_bytes;
        g_qact[i].qprep = q->prep;
        g_qact[i].qrun = q->run;
        g_qact_ok[i] = true;
    }
}

const flm_kernels *flm_kernels_variant(const char *name, bool qact) {
    if (!name) return NULL;
    if (!qact) return float_table(name);
    pthread_once(&g_qact_once, compose_qact);
    for (size_t i = 0; i < N_TABLES; i++)
        if (strcmp(name, TABLE_NAMES[i]) == 0) return g_qact_ok[i] ? &g_qact[i] : NULL;
    return NULL;
}

static bool g_qact_default = true;
static pthread_once_t g_env_once = PTHREAD_ONCE_INIT;
static void read_env(void) {
    const char *e = getenv("FLM_QACT");
    if (e && strcmp(e, "0") == 0) g_qact_default = false;
}

bool flm_kernels_qact_default(void) {
    pthread_once(&g_env_once, read_env);
    return g_qact_default;
}

const flm_kernels *flm_kernels_by_name(const char *name) { return flm_kernels_variant(name, flm_kernels_qact_default()); }

static const flm_kernels *g_selected;
static pthread_once_t g_select_once = PTHREAD_ONCE_INIT;

static const flm_kernels *best_for_cpu(void) {
    static const char *const order[] = {"avx512", "avx2", "neon-i8mm", "neon-dotprod", "neon", "scalar"};
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

const flm_kernels *flm_kernels_best(void) { return flm_kernels_select(); }
