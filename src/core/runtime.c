/* Threads, CPU features and the OpenBLAS kernel. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core.h"

/* OpenBLAS extensions (declared here so no cblas.h include is needed). */
extern char *openblas_get_corename(void);
extern int openblas_get_parallel(void);
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);

static _Atomic int g_threads = 0; /* 0: not set by the user */
static once_flag g_once = ONCE_FLAG_INIT;
static int g_default_threads = 1;

static void init(void) {
#ifdef _OPENMP
    g_default_threads = omp_get_max_threads();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    g_default_threads = n > 0 ? (int)n : 1;
#endif
}

void mtft__init_once(void) { call_once(&g_once, init); }

int mtft__num_threads(void) {
    int n = atomic_load(&g_threads);
    if (n > 0) return n;
    mtft__init_once();
    return g_default_threads;
}

void mtft_set_num_threads(int n) {
    mtft__init_once();
    atomic_store(&g_threads, n > 0 ? n : 0);
    int eff = n > 0 ? n : g_default_threads;
#ifdef _OPENMP
    omp_set_num_threads(eff);
#endif
    openblas_set_num_threads(eff);
}

int mtft_get_num_threads(void) { return mtft__num_threads(); }

const char *mtft_blas_corename(void) {
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}

const char *mtft_blas_threading(void) {
    switch (openblas_get_parallel()) {
    case 0: return "serial";
    case 1: return "pthread";
    case 2: return "openmp";
    default: return "unknown";
    }
}

const char *mtft_cpu_best_blas_coretype(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SKYLAKEX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "HASWELL";
    return NULL;
#else
    return NULL;
#endif
}

/* Kernels OpenBLAS falls back to when it does not know the CPU. */
int mtft__blas_core_is_generic(const char *core) {
    static const char *generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                    "Katmai", "Coppermine", "Northwood", "Banias", "Atom",
                                    "Barcelona", "Opteron", "Opteron(SSE3)", "Unknown", NULL};
    for (int i = 0; generic[i]; i++)
        if (strcmp(core, generic[i]) == 0) return 1;
    return 0;
}

int mtft_blas_is_fallback(void) {
    return mtft__blas_core_is_generic(mtft_blas_corename()) && mtft_cpu_best_blas_coretype() != NULL;
}

int mtft_blas_ensure_fast_kernel(int argc, char **argv) {
    (void)argc;
    const char *no = getenv("MTFT_NO_REEXEC");
    if (no && *no && strcmp(no, "0") != 0) return MTFT_OK;
    if (getenv("OPENBLAS_CORETYPE")) return MTFT_OK;   /* never override the user */
    if (getenv("MTFT_REEXECED")) return MTFT_OK;       /* we already tried once */
    if (!mtft_blas_is_fallback()) return MTFT_OK;
    const char *best = mtft_cpu_best_blas_coretype();
    if (!best || !argv || !argv[0]) return MTFT_OK;
    mtft__log(MTFT_LOG_INFO, "OpenBLAS chose the generic '%s' kernel; restarting with OPENBLAS_CORETYPE=%s",
              mtft_blas_corename(), best);
    setenv("OPENBLAS_CORETYPE", best, 0);
    setenv("MTFT_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: stay on the slow kernel, but say so */
    unsetenv("OPENBLAS_CORETYPE");
    return mtft__err(MTFT_ERROR, "could not restart with OPENBLAS_CORETYPE=%s; running on '%s'", best,
                     mtft_blas_corename());
}
