/* MTFT_CLONES: give a hot elementwise/row kernel an AVX2 clone picked at load
 * time (GCC/Clang target_clones, ifunc), so the library is fast on current
 * x86-64 CPUs while the baseline build still runs everywhere. The clones do
 * the same arithmetic in the same order (GCC in ISO C mode does not contract
 * to FMA), so results are deterministic on a given machine. Define
 * MTFT_NO_CLONES to disable. Not installed. */
#ifndef MTFT_OPS_CLONES_H
#define MTFT_OPS_CLONES_H

/* GCC only: clang 14 gives the ifunc resolvers default visibility, so they
 * would leak out of the shared library (the exports test catches it). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MTFT_NO_CLONES)
#define MTFT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MTFT_CLONES
#endif

#endif
