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
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static flm_cpu_features g_cpu;
static bool g_amx_cpu, g_amx_asked; /* AMX-INT8 usable but for the OS; the permission asked for */
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
    bool avxvnni = false;
    if (a >= 1) { /* leaf 7 subleaf 1 EAX bit 4: AVX-VNNI (VEX vpdpbusd) */
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        avxvnni = (a1 >> 4) & 1;
    }
    g_cpu.avx2 = ymm_ok && avx2 && fma && f16c;
    g_cpu.avx512 = g_cpu.avx2 && zmm_ok && f && dq && bw && vl;
    g_cpu.avx512vnni = g_cpu.avx512 && vnni;
    g_cpu.avx512vbmi = g_cpu.avx512 && vbmi;
    g_cpu.avxvnni = g_cpu.avx2 && avxvnni;
    /* AMX: leaf 7 EDX bits 24 (AMX-TILE) and 25 (AMX-INT8), XCR0 bits 17-18 (tile
     * config and data), and Linux's permission for the 8 KB tile state per thread
     * (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux 5.16+). The
     * permission is process-wide and enlarges every signal frame of the process (an
     * application's small sigaltstack could then fail), so it is not asked for when
     * the AMX table cannot be the one chosen: FLM_KERNELS names another table, or (not
     * named) FLM_QACT=0 / FLM_QPACK=0, under which it is never the default. */
    bool amx = ((d >> 24) & 1) && ((d >> 25) & 1) && (xcr0 & 0x60000) == 0x60000;
    g_amx_cpu = amx && g_cpu.avx512 && vnni && vbmi;
    const char *forced = getenv("FLM_KERNELS");
    if (forced && *forced) amx = amx && strcmp(forced, "avx512-amx") == 0;
    else amx = amx && flm_kernels_qact_default() && flm_kernels_qpack_enabled();
#if defined(__linux__)
    g_amx_asked = amx && g_amx_cpu;
    amx = g_amx_asked && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    amx = false;
#endif
    g_cpu.amx = g_cpu.avx512 && vnni && vbmi && amx;
    unsigned v[4];
    __cpuid(0, v[0], v[1], v[2], v[3]);
    memcpy(g_cpu.vendor, &v[1], 4);
    memcpy(g_cpu.vendor + 4, &v[3], 4);
    memcpy(g_cpu.vendor + 8, &v[2], 4);
    __cpuid(1, a, b, c, d);
    unsigned fam = (a >> 8) & 0xF, mod = (a >> 4) & 0xF;
    if (fam == 0xF) fam += (a >> 20) & 0xFF;
    if (fam == 0x6 || fam >= 0xF) mod += ((a >> 16) & 0xF) << 4;
    g_cpu.family = (int)fam;
    g_cpu.model = (int)mod;
#elif defined(__aarch64__)
    g_cpu.neon = true;
#endif
}

const flm_cpu_features *flm_cpu_get(void) {
    pthread_once(&g_cpu_once, detect);
    return &g_cpu;
}

const char *flm_cpu_amx_state(void) {
    flm_cpu_get();
    if (!g_amx_cpu) return "none";
#if defined(__linux__) && defined(__x86_64__)
    unsigned long perm = 0; /* the features this process may use, as Linux sees it */
    if (syscall(SYS_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_PERM */, &perm) == 0 && ((perm >> 18) & 1)) return "granted";
#endif
    return g_amx_asked ? "refused" : "not requested";
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

/* The tables that exist only with int8 activations: the float table of another
 * name with other q8_0/q4_0 kernels (256-bit vpdpbusd). */
static const char *int8_only_base(const char *name) {
    if (strcmp(name, "avx2-vnni") == 0) return "avx2";
    if (strcmp(name, "avx512-vnni256") == 0 || strcmp(name, "avx512-amx") == 0) return "avx512";
    if (strcmp(name, "neon-dotprod") == 0 || strcmp(name, "neon-i8mm") == 0) return "neon"; /* SDOT / SMMLA int8 products */
    return NULL;
}

/* The int8-activation matmuls that go with a table (the best this CPU runs for that
 * ISA: AVX-512 without VBMI uses 256-bit vpdpbusd with VNNI, else the AVX2 ones), or
 * NULL when the CPU cannot run them. */
static const flm_qact_fns *qact_fns(const char *name) {
    const flm_cpu_features *f = flm_cpu_get();
#if defined(__x86_64__)
    if (strcmp(name, "avx512") == 0)
        return f->avx512vnni && f->avx512vbmi ? flm_qact_avx512vnni() : f->avx512vnni ? flm_qact_avx512vnni256() : flm_qact_avx2();
    if (strcmp(name, "avx2") == 0) return flm_qact_avx2();
    if (strcmp(name, "avx2-vnni") == 0) return f->avxvnni ? flm_qact_avxvnni() : f->avx512vnni ? flm_qact_avx512vnni256() : NULL;
    if (strcmp(name, "avx512-vnni256") == 0) return f->avx512vnni ? flm_qact_avx512vnni256() : NULL;
    if (strcmp(name, "avx512-amx") == 0) return f->amx ? flm_qact_avx512amx() : NULL;
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return flm_qact_neon();
    if (strcmp(name, "neon-dotprod") == 0) return flm_qact_neon_dotprod(); /* NULL without SDOT */
    if (strcmp(name, "neon-i8mm") == 0) return flm_qact_neon_i8mm();       /* NULL without SMMLA */
#endif
    (void)f;
    return flm_qact_scalar();
}

static const char *const TABLE_NAMES[] = {"scalar", "avx2", "avx512", "neon", "avx2-vnni", "avx512-vnni256", "avx512-amx", "neon-dotprod", "neon-i8mm"};
#define N_TABLES (sizeof TABLE_NAMES / sizeof TABLE_NAMES[0])
static flm_kernels g_qact[N_TABLES];
static bool g_qact_ok[N_TABLES];
static pthread_once_t g_qact_once = PTHREAD_ONCE_INIT;

static void compose_qact(void) {
    for (size_t i = 0; i < N_TABLES; i++) {
        const char *b = int8_only_base(TABLE_NAMES[i]);
        const flm_kernels *base = float_table(b ? b : TABLE_NAMES[i]);
        if (!base) continue;
        const flm_qact_fns *q = qact_fns(TABLE_NAMES[i]);
        if (!q) continue;
        g_qact[i] = *base;
        g_qact[i].name = TABLE_NAMES[i];
        g_qact[i].matmul[FLM_Q8_0] = q->q8_0;
        g_qact[i].matmul[FLM_Q4_0] = q->q4_0;
        g_qact[i].qprep_bytes = q->prep_bytes;
        g_qact[i].qprep = q->prep;
        g_qact[i].qrun = q->run;
        g_qact[i].qpacked = q->packed;
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

bool flm_kernels_qpack_enabled(void) {
    const char *e = getenv("FLM_QPACK");
    return !(e && strcmp(e, "0") == 0);
}

/* Whether this CPU runs 512-bit vectors on 256-bit units (AMD family 19h with AVX-512:
 * Zen 4), where the 256-bit int8 kernels beat the 512-bit ones on the file's layout
 * (byte permutes and transpose-adds cost twice there) but not on the packed layout
 * (docs/KERNELS.md). */
static bool half_width_avx512(const flm_cpu_features *f) {
    return f->avx512 && strcmp(f->vendor, "AuthenticAMD") == 0 && f->family == 0x19;
}

const char *const *flm_kernels_preference(void) {
    static const char *const zen4[] = {"avx512-vnni256", "avx512", "avx2-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon", "scalar", NULL};
    static const char *const other[] = {"avx512-amx", "avx512", "avx2-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon", "scalar", NULL};
    /* packing on (the default): avx512(-amx) and the packed layout everywhere; without
     * packing avx512-amx would run exactly avx512's products, so it is not named */
    if (!flm_kernels_qpack_enabled()) return half_width_avx512(flm_cpu_get()) ? zen4 : other + 1;
    return other;
}

static const flm_kernels *best_for_cpu(void) {
    for (const char *const *n = flm_kernels_preference(); *n; n++) {
        const flm_kernels *k = flm_kernels_by_name(*n);
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
