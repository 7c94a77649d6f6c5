/* Vectorisable, deterministic building blocks shared by every op file (the
 * activations, norms and bias sums use the clone macro and exp too; softmax,
 * log-softmax, cross-entropy, attention). Internal to src/tensor/ops.
 *
 * MTFT_SIMD_CLONES builds a function for AVX-512, AVX2 and baseline x86-64
 * and picks one at load time (GCC ifunc on x86-64 Linux; elsewhere a plain
 * function; -DMTFT_NO_CLONES turns it off). It is clones.h's MTFT_CLONES
 * with an AVX-512 copy added, under its own name so both headers can meet. The clones give the same bits: ISO C mode keeps
 * -ffp-contract=off (no FMA contraction), and nothing here reassociates a
 * sum: reductions run over MTFT_LANES fixed lanes (lane k takes elements
 * j = k mod MTFT_LANES in order) that are added in a fixed order at the end.
 * So results do not depend on the ISA, the thread count or the schedule. */
#ifndef MTFT_OPS_SIMD_H
#define MTFT_OPS_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(MTFT_NO_CLONES)
#define MTFT_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MTFT_SIMD_CLONES
#endif

#define MTFT_LANES 16

/* exp(x) in float without a libm call, so loops around it vectorise.
 * Cephes' expf: x = n ln2 + r (Cody-Waite split of ln2), |r| <= ln2/2,
 * degree-6 polynomial, times 2^n built in the exponent bits. Max relative
 * error about 2 ulp (checked against exp() in double by check_ops_b).
 * Returns 0 below -87.3 (where expf would be subnormal), saturates at
 * exp(88.3) (about 2.2e38) above 88.3, and passes NaN through.
 * always_inline: GCC declined to inline it into the AVX-512 clones of the
 * activation kernels (a scalar call per element: GELU was 10% of a small
 * model's training step). */
__attribute__((always_inline)) static inline float mtft__vexpf(float x) {
    /* NaN takes the -87.3 branch here (so n stays a small integer: no UB in
     * the conversion) and is passed through at the end */
    const float xc = x >= -87.3f ? (x <= 88.3f ? x : 88.3f) : -87.3f;
    /* round to nearest with the 1.5 * 2^23 trick: no floorf call */
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float y = p * scale;
    return x < -87.3f ? 0.0f : (x == x ? y : x);
}

/* max_j x[j] (-INFINITY for n == 0; NaNs are skipped) */
static inline float mtft__row_max(const float *x, int64_t n) {
    float mx[MTFT_LANES];
    for (int k = 0; k < MTFT_LANES; k++) mx[k] = -INFINITY;
    int64_t j = 0;
#if defined(__GNUC__) || defined(__clang__)
    /* The same lanes in GCC/clang vector types: the compare-and-select
     * below is written as vector ops, because the compilers do not if-convert
     * the scalar form under the default -ftrapping-math (a scalar loop: half
     * of the cross-entropy forward at V = 4096). */
    typedef float v16f __attribute__((vector_size(4 * MTFT_LANES)));
    typedef int32_t v16i __attribute__((vector_size(4 * MTFT_LANES)));
    v16f vm;
    memcpy(&vm, mx, sizeof vm);
    for (; j + MTFT_LANES <= n; j += MTFT_LANES) {
        v16f v;
        memcpy(&v, x + j, sizeof v);
        const v16i gt = v > vm; /* false for NaN: keep the lane's max */
        vm = (v16f)((gt & (v16i)v) | (~gt & (v16i)vm));
    }
    memcpy(mx, &vm, sizeof mx);
#endif
    for (; j + MTFT_LANES <= n; j += MTFT_LANES)
        for (int k = 0; k < MTFT_LANES; k++) mx[k] = x[j + k] > mx[k] ? x[j + k] : mx[k];
    for (int k = 0; j + k < n; k++) mx[k] = x[j + k] > mx[k] ? x[j + k] : mx[k];
    float m = mx[0];
    for (int k = 1; k < MTFT_LANES; k++) m = mx[k] > m ? mx[k] : m;
    return m;
}

/* sum_j exp(x[j] - m) in double lanes; writes the exps to e when not NULL.
 * Chunks of MTFT_EXP_CHUNK: one vectorised exp loop, then the lane sums
 * (fusing the two in one loop defeats GCC's vectoriser: 10x slower). */
#define MTFT_EXP_CHUNK 256 /* a multiple of MTFT_LANES */
/* dst[j] = exp(x[j] - m): its own (cloned) function so that it is a single
 * loop, which GCC if-converts and vectorises (inside the chunk loop it does not). */
MTFT_SIMD_CLONES __attribute__((noinline, unused)) static void mtft__vexp_sub(float *restrict dst, const float *restrict x,
                                                                        int64_t n, float m) {
    for (int64_t j = 0; j < n; j++) dst[j] = mtft__vexpf(x[j] - m);
}
static inline double mtft__row_sum_exp(const float *x, int64_t n, float m, float *e) {
    double acc[MTFT_LANES] = {0};
    if (e) {
        mtft__vexp_sub(e, x, n, m);
        int64_t j = 0;
        for (; j + MTFT_LANES <= n; j += MTFT_LANES)
            for (int k = 0; k < MTFT_LANES; k++) acc[k] += e[j + k];
        for (int k = 0; j + k < n; k++) acc[k] += e[j + k];
    } else {
        float buf[MTFT_EXP_CHUNK];
        for (int64_t j0 = 0; j0 < n; j0 += MTFT_EXP_CHUNK) {
            const int64_t c = n - j0 < MTFT_EXP_CHUNK ? n - j0 : MTFT_EXP_CHUNK;
            mtft__vexp_sub(buf, x + j0, c, m);
            int64_t j = 0;
            for (; j + MTFT_LANES <= c; j += MTFT_LANES)
                for (int k = 0; k < MTFT_LANES; k++) acc[k] += buf[j + k];
            for (int k = 0; j + k < c; k++) acc[k] += buf[j + k];
        }
    }
    double s = 0.0;
    for (int k = 0; k < MTFT_LANES; k++) s += acc[k];
    return s;
}

/* sum_j a[j] (b == NULL) or sum_j a[j] b[j], in double lanes */
static inline double mtft__row_dot(const float *a, const float *b, int64_t n) {
    double acc[MTFT_LANES] = {0};
    int64_t j = 0;
    if (b) {
        for (; j + MTFT_LANES <= n; j += MTFT_LANES)
            for (int k = 0; k < MTFT_LANES; k++) acc[k] += (double)a[j + k] * b[j + k];
        for (int k = 0; j + k < n; k++) acc[k] += (double)a[j + k] * b[j + k];
    } else {
        for (; j + MTFT_LANES <= n; j += MTFT_LANES)
            for (int k = 0; k < MTFT_LANES; k++) acc[k] += a[j + k];
        for (int k = 0; j + k < n; k++) acc[k] += a[j + k];
    }
    double s = 0.0;
    for (int k = 0; k < MTFT_LANES; k++) s += acc[k];
    return s;
}

#endif
