/* ctest-labels: unit */
/* Merging: every method against values worked out by hand on small task
 * vectors (the arithmetic is in the comments), DARE masks and their
 * expectation, the truncated SVD, checkpoints and PEFT adapters as inputs
 * (Conv1D orientation), per-tensor parameters, the YAML config, error
 * messages, and AdaMerging's learned coefficients. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "merge/merger_impl.h"
#include "mtft/io.h"
#include "mtft/merge.h"
#include "mtft/model.h"
#include "mtft/peft.h"
#include "mtft_test.h"

static mtft_merge_model_params P(float w, float density) {
    mtft_merge_model_params p = {w, density, 0.0f, 0.0f};
    return p;
}

/* ---- the methods on flat vectors ------------------------------------------------------ */

START_TEST(test_merge_linear) {
    /* tau1 = [1, -2, 3, 0], tau2 = [3, 2, -1, 4], w = 1, 3.
     * normalize: (1 tau1 + 3 tau2) / 4 = [(1+9)/4, (-2+6)/4, (3-3)/4, (0+12)/4] = [2.5, 1, 0, 3]
     * no normalize:                        [10, 4, 0, 12] */
    const float t1[] = {1, -2, 3, 0}, t2[] = {3, 2, -1, 4};
    const float *d[] = {t1, t2};
    mtft_merge_model_params p[2] = {P(1, 1), P(3, 1)};
    float out[4];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_LINEAR, 2, 4, d, p, 1.0f, 1, 0, out), MTFT_OK);
    const float e1[] = {2.5f, 1.0f, 0.0f, 3.0f};
    mtft_assert_close(out, e1, 4, 0, 1e-6f, "linear normalized");
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_LINEAR, 2, 4, d, p, 1.0f, 0, 0, out), MTFT_OK);
    const float e2[] = {10, 4, 0, 12};
    mtft_assert_close(out, e2, 4, 0, 1e-6f, "linear sum");
    /* weights summing to zero cannot be normalised */
    mtft_merge_model_params pz[2] = {P(1, 1), P(-1, 1)};
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_LINEAR, 2, 4, d, pz, 1.0f, 1, 0, out), MTFT_ERANGE);
}
END_TEST

START_TEST(test_merge_task_arithmetic) {
    /* lambda 0.5, w = 1: 0.5 (tau1 + tau2) = 0.5 [4, 0, 2, 4] = [2, 0, 1, 2] */
    const float t1[] = {1, -2, 3, 0}, t2[] = {3, 2, -1, 4};
    const float *d[] = {t1, t2};
    mtft_merge_model_params p[2] = {P(1, 1), P(1, 1)};
    float out[4];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_TASK_ARITHMETIC, 2, 4, d, p, 0.5f, 0, 0, out), MTFT_OK);
    const float e[] = {2, 0, 1, 2};
    mtft_assert_close(out, e, 4, 0, 1e-6f, "task arithmetic");
}
END_TEST

/* Three task vectors used by the TIES tests. */
static const float ties1[] = {0.5f, -1.0f, 2.0f, -0.1f, 0.3f};
static const float ties2[] = {-0.4f, 0.8f, 1.0f, 0.2f, -3.0f};
static const float ties3[] = {0.6f, -0.2f, -0.5f, 0.05f, 1.0f};

START_TEST(test_merge_ties) {
    /* density 0.6 of n = 5: keep floor(3.0) = 3 per model.
     *   trim(tau1): |.| = .5 1 2 .1 .3 -> keep i2, i1, i0 -> [0.5, -1, 2, 0, 0]
     *   trim(tau2): |.| = .4 .8 1 .2 3 -> keep i4, i2, i1 -> [0, 0.8, 1, 0, -3]
     *   trim(tau3): |.| = .6 .2 .5 .05 1 -> keep i4, i0, i2 -> [0.6, 0, -0.5, 0, 1]
     * elect (sum): i0 1.1 (+), i1 -0.2 (-), i2 2.5 (+), i3 0 (none), i4 -2 (-)
     * disjoint mean: i0 (0.5+0.6)/2 = 0.55, i1 -1/1, i2 (2+1)/2 = 1.5, i3 0, i4 -3/1
     * lambda 2: [1.1, -2, 3, 0, -6] */
    const float *d[] = {ties1, ties2, ties3};
    mtft_merge_model_params p[3] = {P(1, 0.6f), P(1, 0.6f), P(1, 0.6f)};
    float out[5];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_TIES, 3, 5, d, p, 2.0f, 0, 0, out), MTFT_OK);
    const float e[] = {1.1f, -2.0f, 3.0f, 0.0f, -6.0f};
    mtft_assert_close(out, e, 5, 0, 1e-6f, "ties");
    /* weights 1, 2, 1 (lambda 1): elect on sum_t w_t trim(tau_t)
     *   i0: 0.5 + 0.6 = 1.1 (+) -> (0.5 + 0.6) / 2 = 0.55
     *   i1: -1 + 2*0.8 = 0.6 (+) -> only tau2 agrees: 2*0.8 / 2 = 0.8
     *   i2: 2 + 2*1 - 0.5 = 3.5 (+) -> (2 + 2*1) / (1 + 2) = 4/3
     *   i3: 0 -> 0;  i4: -6 + 1 = -5 (-) -> 2*(-3) / 2 = -3 */
    p[1].weight = 2;
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_TIES, 3, 5, d, p, 1.0f, 0, 0, out), MTFT_OK);
    const float ew[] = {0.55f, 0.8f, 4.0f / 3.0f, 0.0f, -3.0f};
    mtft_assert_close(out, ew, 5, 0, 1e-6f, "ties weighted");
    /* a tie in magnitude keeps the lower index: [1, -1, 1] at density 1/3 keeps i0 only */
    const float tt[] = {1, -1, 1};
    const float *dt[] = {tt};
    mtft_merge_model_params p1 = P(1, 1.0f / 3.0f);
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_TIES, 1, 3, dt, &p1, 1.0f, 0, 0, out), MTFT_OK);
    const float et[] = {1, 0, 0};
    mtft_assert_close(out, et, 3, 0, 0, "ties tie-break");
    /* density outside (0, 1] */
    p[0].density = 0;
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_TIES, 3, 5, d, p, 1.0f, 0, 0, out), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "density"));
}
END_TEST

static uint64_t dare_stream(uint64_t seed, int t) { return seed + (uint64_t)t * 0x9E3779B97F4A7C15ull; }

START_TEST(test_merge_dare_mask) {
    /* Exact masks: model t drops entry k when u = hash_uniform(seed + t*phi, k) < p. */
    enum { N = 97 };
    float a[N], b[N], out[N], e[N];
    mtft_test_fill(a, N, 1, -1, 1);
    mtft_test_fill(b, N, 2, -1, 1);
    const float *d[] = {a, b};
    mtft_merge_model_params p[2] = {P(1, 0.7f), P(0.5f, 0.4f)};
    uint64_t seed = 42;
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_DARE_LINEAR, 2, N, d, p, 1.5f, 0, seed, out), MTFT_OK);
    int dropped = 0;
    for (int k = 0; k < N; k++) {
        float ua = mtft_rng_hash_uniform(dare_stream(seed, 0), (uint64_t)k);
        float ub = mtft_rng_hash_uniform(dare_stream(seed, 1), (uint64_t)k);
        double va = ua < 0.3f ? 0.0 : a[k] / 0.7;  /* p = 1 - 0.7 */
        double vb = ub < 0.6f ? 0.0 : b[k] / 0.4;  /* p = 1 - 0.4 */
        dropped += ua < 0.3f;
        e[k] = (float)(1.5 * (1.0 * va + 0.5 * vb));
    }
    ck_assert_int_gt(dropped, 10); /* the mask is not trivial */
    mtft_assert_close(out, e, N, 1e-6f, 1e-6f, "dare_linear exact mask");
    /* dare_ties: the same masks, then sign election and disjoint mean */
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_DARE_TIES, 2, N, d, p, 1.0f, 0, seed, out), MTFT_OK);
    for (int k = 0; k < N; k++) {
        float ua = mtft_rng_hash_uniform(dare_stream(seed, 0), (uint64_t)k);
        float ub = mtft_rng_hash_uniform(dare_stream(seed, 1), (uint64_t)k);
        double va = ua < 0.3f ? 0.0 : (double)(float)(a[k] / 0.7);
        double vb = ub < 0.6f ? 0.0 : (double)(float)(b[k] / 0.4);
        double mass = va + 0.5 * vb, num = 0, den = 0;
        if (mass != 0) {
            if (va != 0 && (va > 0) == (mass > 0)) num += va, den += 1;
            if (vb != 0 && (vb > 0) == (mass > 0)) num += 0.5 * vb, den += 0.5;
        }
        e[k] = den ? (float)(num / den) : 0.0f;
    }
    mtft_assert_close(out, e, N, 1e-6f, 1e-6f, "dare_ties exact mask");
    /* a different seed gives a different mask */
    float out2[N];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_DARE_LINEAR, 2, N, d, p, 1.0f, 0, seed + 1, out2), MTFT_OK);
    ck_assert(memcmp(out, out2, sizeof out) != 0);
}
END_TEST

START_TEST(test_merge_dare_expectation) {
    /* tau = 1 everywhere, p = 0.75: E[out] = (1-p) * 1/(1-p) = 1; the kept
     * share is 1-p. n = 200000: sd of the mean sqrt(p/(1-p)/n) = 0.0039, sd
     * of the share sqrt(p(1-p)/n) = 0.00097; 5 sd bounds. */
    const int64_t n = 200000;
    float *t = malloc((size_t)n * sizeof *t), *out = malloc((size_t)n * sizeof *out);
    for (int64_t k = 0; k < n; k++) t[k] = 1.0f;
    const float *d[] = {t};
    mtft_merge_model_params p = P(1, 0.25f);
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_DARE_LINEAR, 1, n, d, &p, 1.0f, 0, 7, out), MTFT_OK);
    double sum = 0;
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) {
        sum += out[k];
        if (out[k] != 0) {
            kept++;
            ck_assert_float_eq_tol(out[k], 4.0f, 1e-6f); /* rescaled by 1/(1-p) */
        }
    }
    ck_assert_double_le(fabs(sum / (double)n - 1.0), 5 * 0.0039);
    ck_assert_double_le(fabs((double)kept / (double)n - 0.25), 5 * 0.00097);
    /* density 1 keeps everything: dare_ties == ties at density 1.
     * tau1 = [1, -2], tau2 = [3, 1]: i0 + -> (1+3)/2 = 2; i1 sum -1 (-) -> -2 */
    const float a[] = {1, -2}, b[] = {3, 1};
    const float *d2[] = {a, b};
    mtft_merge_model_params p2[2] = {P(1, 1), P(1, 1)};
    float o2[2];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_DARE_TIES, 2, 2, d2, p2, 1.0f, 0, 3, o2), MTFT_OK);
    const float e2[] = {2, -2};
    mtft_assert_close(o2, e2, 2, 0, 1e-6f, "dare_ties density 1");
    free(t);
    free(out);
}
END_TEST

START_TEST(test_merge_breadcrumbs) {
    /* tau1 = [0.1, -5, 0.3, -0.2, 2, 0.05, -1, 0.5, 0.01, 3], beta 0.1, gamma 0.3:
     *   |.| descending: 5(i1) 3(i9) 2(i4) 1(i6) .5(i7) .3(i2) .2(i3) .1(i0) .05(i5) .01(i8)
     *   drop the largest floor(1.0) = 1 (i1) and the smallest floor(3.0) = 3 (i0, i5, i8)
     *   -> [0, 0, .3, -.2, 2, 0, -1, .5, 0, 3]
     * tau2 = [1..10], beta 0.2, gamma 0.2: drop i9, i8 (largest) and i0, i1 (smallest)
     *   -> [0, 0, 3, 4, 5, 6, 7, 8, 0, 0]
     * lambda 0.5 of the sum: [0, 0, 1.65, 1.9, 3.5, 3, 3, 4.25, 0, 1.5] */
    const float t1[] = {0.1f, -5, 0.3f, -0.2f, 2, 0.05f, -1, 0.5f, 0.01f, 3};
    const float t2[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const float *d[] = {t1, t2};
    mtft_merge_model_params p[2] = {{1, 1, 0.1f, 0.3f}, {1, 1, 0.2f, 0.2f}};
    float out[10];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_BREADCRUMBS, 2, 10, d, p, 0.5f, 0, 0, out), MTFT_OK);
    const float e[] = {0, 0, 1.65f, 1.9f, 3.5f, 3, 3, 4.25f, 0, 1.5f};
    mtft_assert_close(out, e, 10, 0, 1e-6f, "breadcrumbs");
    p[0].beta = 0.8f; /* beta + gamma > 1 */
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_BREADCRUMBS, 2, 10, d, p, 0.5f, 0, 0, out), MTFT_ERANGE);
}
END_TEST

START_TEST(test_merge_pcb) {
    /* tau1 = [1, 2, 0], tau2 = [2, -1, 1], T = 2, density 2/3 (keep 2 of 3).
     * Task 1: tau1^2 = [1, 4, 0] -> Norm [.25, 1, 0] -> x T: [.5, 2, 0]
     *   intra1 = [e^.5, e^2, 1] / (e^.5 + e^2 + 1)
     *   inter1 = softmax(Norm(tau1 tau1)) + softmax(Norm(tau1 tau2))
     *          = [e^.25, e, 1]/(e^.25 + e + 1) + [e, 1, e^.5]/(e + 1 + e^.5)
     *            (tau1 tau2 = [2, -2, 0] -> Norm [1, 0, .5])
     *   beta1 = intra1 inter1 ~ [0.1254, 0.5372, 0.0505]: order i1 > i0 > i2,
     *   hi = beta1[1], lo = beta1[2] (dropped) -> s1 = [(b0-lo)/(hi-lo), 1, 0]
     * Task 2: tau2^2 = [4, 1, 1] -> Norm [1, 0, 0] -> x T: [2, 0, 0]
     *   intra2 = [e^2, 1, 1] / (e^2 + 2)
     *   inter2 = [e, 1, e^.5]/(e + 1 + e^.5) + [e, 1, 1]/(e + 2)
     *   beta2 ~ [0.8520, 0.0424, 0.0553]: order i0 > i2 > i1, lo = beta2[1]
     *   -> s2 = [1, 0, (b2-lo)/(hi-lo)]
     * merge: i0 (s1_0 * 1 + 1 * 2) / (s1_0 + 1); i1 (1 * 2) / 1 = 2; i2 (s2_2 * 1) / s2_2 = 1 */
    const float t1[] = {1, 2, 0}, t2[] = {2, -1, 1};
    const float *d[] = {t1, t2};
    mtft_merge_model_params p[2] = {P(1, 2.0f / 3.0f), P(1, 2.0f / 3.0f)};
    float out[3];
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_PCB, 2, 3, d, p, 1.0f, 0, 0, out), MTFT_OK);
    double E = exp(1.0);
    double z1 = exp(0.5) + exp(2.0) + 1, za = exp(0.25) + E + 1, zb = E + 1 + exp(0.5);
    double b1[3] = {exp(0.5) / z1 * (exp(0.25) / za + E / zb), exp(2.0) / z1 * (E / za + 1 / zb),
                    1 / z1 * (1 / za + exp(0.5) / zb)};
    double s10 = (b1[0] - b1[2]) / (b1[1] - b1[2]);
    double z2 = exp(2.0) + 2, zc = E + 2;
    double b2[3] = {exp(2.0) / z2 * (E / zb + E / zc), 1 / z2 * (1 / zb + 1 / zc), 1 / z2 * (exp(0.5) / zb + 1 / zc)};
    ck_assert(b1[1] > b1[0] && b1[0] > b1[2] && b2[0] > b2[2] && b2[2] > b2[1]); /* the orders used above */
    const float e[] = {(float)((s10 * 1 + 2) / (s10 + 1)), 2.0f, 1.0f};
    mtft_assert_close(out, e, 3, 1e-5f, 1e-6f, "pcb");
    ck_assert_float_eq_tol(out[0], 1.8667248f, 1e-5f);
    /* lambda scales the result; weights scale each task's contribution */
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_PCB, 2, 3, d, p, 0.5f, 0, 0, out), MTFT_OK);
    ck_assert_float_eq_tol(out[1], 1.0f, 1e-6f);
    p[1].weight = 2;
    ck_assert_int_eq(mtft_merge_deltas(MTFT_MERGE_PCB, 2, 3, d, p, 1.0f, 0, 0, out), MTFT_OK);
    ck_assert_float_eq_tol(out[2], 2.0f, 1e-6f); /* (s2_2 * 2 * 1) / s2_2 */
}
END_TEST

START_TEST(test_merge_names) {
    mtft_merge_method m;
    for (int i = 0; i <= MTFT_MERGE_PCB; i++) {
        ck_assert_int_eq(mtft_merge_method_from_name(mtft_merge_method_name((mtft_merge_method)i), &m), MTFT_OK);
        ck_assert_int_eq((int)m, i);
    }
    ck_assert_int_eq(mtft_merge_method_from_name("tie", &m), MTFT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "task_arithmetic"));
    mtft_merge_param pp;
    ck_assert_int_eq(mtft_merge_param_from_name("gamma", &pp), MTFT_OK);
    ck_assert_int_eq(pp, MTFT_MERGE_P_GAMMA);
    ck_assert_int_eq(mtft_merge_param_from_name("alpha", &pp), MTFT_ENOTFOUND);
    ck_assert(mtft_merge__match(NULL, "x"));
    ck_assert(mtft_merge__match("attn", "h.0.attn.c_attn.weight"));
    ck_assert(!mtft_merge__match("mlp", "h.0.attn.c_attn.weight"));
    ck_assert(mtft_merge__match("h.*.attn.*", "h.10.attn.c_proj.bias"));
    ck_assert(!mtft_merge__match("h.?.attn.*", "h.10.attn.c_proj.bias"));
    ck_assert(mtft_merge__match("*.weight", "wte.weight"));
    ck_assert(!mtft_merge__match("*.weight", "wte.weight2"));
}
END_TEST

/* ---- SVD -------------------------------------------------------------------------------- */

/* Random orthonormal columns: Q [n, k] (Gram-Schmidt in double). */
static void orth(double *Q, int n, int k, uint64_t seed) {
    mtft_rng r;
    mtft_rng_seed(&r, seed);
    for (int i = 0; i < n * k; i++) Q[i] = mtft_rng_normal(&r);
    for (int j = 0; j < k; j++) {
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < j; i++) {
                double d = 0;
                for (int a = 0; a < n; a++) d += Q[a * k + i] * Q[a * k + j];
                for (int a = 0; a < n; a++) Q[a * k + j] -= d * Q[a * k + i];
            }
        double nn = 0;
        for (int a = 0; a < n; a++) nn += Q[a * k + j] * Q[a * k + j];
        for (int a = 0; a < n; a++) Q[a * k + j] /= sqrt(nn);
    }
}

/* ||M - U diag(S) Vt||_F for a rank-k factorisation. */
static double recon_err(const float *M, int R, int C, int k, const float *U, const float *S, const float *Vt) {
    double e = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int j = 0; j < k; j++) s += (double)U[r * k + j] * S[j] * Vt[j * C + c];
            e += (M[r * C + c] - s) * (M[r * C + c] - s);
        }
    return sqrt(e);
}

START_TEST(test_merge_svd) {
    /* M = U diag(sv) V^T + N, sv = [10, 8, 6, 4, 2], N ~ 1e-3 * normal, 300 x 200.
     * The range finder uses k + 8 columns, fewer than min(300, 200): the
     * randomized path. Singular values within the noise's spectral norm
     * (~ 1e-3 (sqrt 300 + sqrt 200) = 0.032), and the rank-k error is at most
     * Eckart-Young's bound: ||M - M_5|| <= ||N||_F; ||M - M_3|| <= sqrt(4^2 + 2^2 + ||N||^2). */
    enum { R = 300, C = 200, K = 5 };
    const double sv[K] = {10, 8, 6, 4, 2};
    double *U0 = malloc(sizeof(double) * R * K), *V0 = malloc(sizeof(double) * C * K);
    float *M = malloc(sizeof(float) * R * C);
    orth(U0, R, K, 11);
    orth(V0, C, K, 12);
    mtft_rng rng;
    mtft_rng_seed(&rng, 13);
    double nn = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            double s = 0, noise = 1e-3 * mtft_rng_normal(&rng);
            for (int j = 0; j < K; j++) s += U0[r * K + j] * sv[j] * V0[c * K + j];
            M[r * C + c] = (float)(s + noise);
            nn += noise * noise;
        }
    nn = sqrt(nn);
    float *U = malloc(sizeof(float) * R * K), *S = malloc(sizeof(float) * K), *Vt = malloc(sizeof(float) * K * C);
    ck_assert_int_eq(mtft_merge__svd(M, R, C, K, 1, U, S, Vt), MTFT_OK);
    for (int j = 0; j < K; j++) ck_assert_double_le(fabs(S[j] - sv[j]), 0.04);
    double e5 = recon_err(M, R, C, K, U, S, Vt);
    ck_assert_double_le(e5, nn * 1.01);
    ck_assert_double_ge(e5, nn * 0.9); /* the noise cannot be represented */
    ck_assert_int_eq(mtft_merge__svd(M, R, C, 3, 2, U, S, Vt), MTFT_OK);
    double e3 = recon_err(M, R, C, 3, U, S, Vt), opt3 = sqrt(16 + 4 + nn * nn);
    ck_assert_double_le(e3, opt3 * 1.01);
    ck_assert_double_ge(e3, sqrt(16 + 4) * 0.99);
    /* U's columns orthonormal */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double d = 0;
            for (int r = 0; r < R; r++) d += (double)U[r * 3 + a] * U[r * 3 + b];
            ck_assert_double_le(fabs(d - (a == b)), 1e-4);
        }
    /* small exact case: rank <= min dims, singular values of diag(3, -2) = 3, 2 */
    const float D[] = {3, 0, 0, -2};
    float u[4], s[2], vt[4];
    ck_assert_int_eq(mtft_merge__svd(D, 2, 2, 2, 0, u, s, vt), MTFT_OK);
    ck_assert_float_eq_tol(s[0], 3.0f, 1e-5f);
    ck_assert_float_eq_tol(s[1], 2.0f, 1e-5f);
    ck_assert_double_le(recon_err(D, 2, 2, 2, u, s, vt), 1e-5);
    ck_assert_int_eq(mtft_merge__svd(D, 2, 2, 3, 0, u, s, vt), MTFT_ERANGE);
    free(U0), free(V0), free(M), free(U), free(S), free(Vt);
}
END_TEST

/* ---- files: checkpoints and adapters ------------------------------------------------------- */

static char g_dir[256];

static void setup_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mtft_check_merge_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static const char *path_in(char *buf, size_t n, const char *rel) {
    ck_assert_int_lt(snprintf(buf, n, "%s/%s", g_dir, rel), (int)n);
    return buf;
}

/* The toy base: "wte.weight" [4, 2], "h.0.attn.c_attn.weight" [2, 3] (a
 * GPT-2 Conv1D: in 2, out 3) and "lin.weight" [3, 2] (nn.Linear: out 3, in 2). */
static const char *k_names[3] = {"wte.weight", "h.0.attn.c_attn.weight", "lin.weight"};
static const int k_nd[3] = {2, 2, 2};
static const int64_t k_sh0[2] = {4, 2}, k_sh1[2] = {2, 3}, k_sh2[2] = {3, 2};
static const int64_t *const k_sh[3] = {k_sh0, k_sh1, k_sh2};
static float g_base[3][8];

static void write_model(const char *rel, const float tau[3][8], const char *const *meta) {
    char p[512];
    float w[3][8];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 8; k++) w[i][k] = g_base[i][k] + (tau ? tau[i][k] : 0.0f);
    const float *data[3] = {w[0], w[1], w[2]};
    ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, rel), 3, k_names, data, k_nd, k_sh, meta), MTFT_OK);
}

static void write_text(const char *rel, const char *text) {
    char p[512];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A rank-1 adapter on one module: A [1, 2], B [3, 1]. */
static void write_adapter(const char *rel, const char *module, const float *A, const float *B, const char *config) {
    char p[1024], d[512];
    mkdir(path_in(d, sizeof d, rel), 0777);
    char na[256], nb[256];
    snprintf(na, sizeof na, "base_model.model.%s.lora_A.weight", module);
    snprintf(nb, sizeof nb, "base_model.model.%s.lora_B.weight", module);
    const char *names[2] = {na, nb};
    const float *data[2] = {A, B};
    const int nd[2] = {2, 2};
    const int64_t sa[2] = {1, 2}, sb[2] = {3, 1};
    const int64_t *sh[2] = {sa, sb};
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    ck_assert_int_eq(mtft_safetensors_save_raw(p, 2, names, data, nd, sh, NULL), MTFT_OK);
    snprintf(p, sizeof p, "%s/adapter_config.json", rel);
    write_text(p, config);
}

static void fill_base(void) {
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 8; k++) g_base[i][k] = 0.1f * (float)(i * 8 + k) - 0.5f;
}

START_TEST(test_merge_checkpoints) {
    setup_dir();
    fill_base();
    write_model("base.safetensors", NULL, NULL);
    float ta[3][8] = {{1, -1, 0.5f, 0, 2, 0, 0, 0}, {0.3f, 0.2f, -0.1f, 0, 0, 1}, {1, 2, 3, 4, 5, 6}};
    float tb[3][8] = {{-1, 2, 0.5f, 1, 0, 0, 1, 1}, {0.1f, -0.2f, 0.4f, 1, 1, 0}, {6, 5, 4, 3, 2, 1}};
    write_model("a.safetensors", ta, NULL);
    write_model("b.safetensors", tb, NULL);
    char p[512], pb[512];
    mtft_merge_options o = MTFT_MERGE_OPTIONS_INIT;
    o.method = MTFT_MERGE_TASK_ARITHMETIC;
    o.lambda = 0.5f;
    mtft_merger *m = NULL;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors")), MTFT_OK);
    ck_assert_int_eq(mtft_merger_add_model(m, path_in(p, sizeof p, "a.safetensors"), 1.0f), 0);
    ck_assert_int_eq(mtft_merger_add_model(m, path_in(p, sizeof p, "b.safetensors"), 2.0f), 1);
    /* per-tensor override: lambda 1 on "lin" (substring filter) */
    ck_assert_int_eq(mtft_merger_set_param(m, -1, "lin", MTFT_MERGE_P_LAMBDA, 1.0), MTFT_OK);
    float tv[6];
    ck_assert_int_eq(mtft_merger_task_vector(m, 1, "lin.weight", tv, 6), MTFT_OK);
    mtft_assert_close(tv, tb[2], 6, 0, 1e-5f, "task vector");
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "out")), MTFT_OK);
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path_in(pb, sizeof pb, "out/model.safetensors")), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 3);
    ck_assert_str_eq(mtft_safetensors_metadata(st, "mtft.merge_method"), "task_arithmetic");
    ck_assert_ptr_nonnull(mtft_safetensors_metadata(st, "mtft.base_fingerprint"));
    for (int i = 0; i < 3; i++) {
        float got[8], e[8];
        int64_t n = k_sh[i][0] * k_sh[i][1];
        ck_assert_int_eq(mtft_safetensors_read_f32(st, k_names[i], got, 2, k_sh[i]), MTFT_OK);
        /* base + lambda (1 tau_a + 2 tau_b), lambda 0.5 except 1 on lin.weight */
        float lam = i == 2 ? 1.0f : 0.5f;
        for (int k = 0; k < n; k++) e[k] = g_base[i][k] + lam * (ta[i][k] + 2 * tb[i][k]);
        mtft_assert_close(got, e, n, 1e-6f, 1e-5f, k_names[i]);
    }
    mtft_safetensors_close(st);
    /* the same merge into a parameter group (names with a transformer. prefix) */
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "base"), MTFT_OK);
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "transformer.wte.weight", 2, k_sh0));
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "transformer.h.0.attn.c_attn.weight", 2, k_sh1));
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "lin.weight", 2, k_sh2));
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    ck_assert_int_eq(mtft_merger_merge_into(m, pg), MTFT_OK);
    float e1[6];
    for (int k = 0; k < 6; k++) e1[k] = g_base[1][k] + 0.5f * (ta[1][k] + 2 * tb[1][k]);
    mtft_assert_close(mtft_tensor_data(mtft_param_group_tensor(pg, 1)), e1, 6, 1e-6f, 1e-5f, "merge_into");
    mtft_param_group_free(pg);
    mtft_merger_free(m);

    /* linear without a base: the plain weighted average of the models */
    o.method = MTFT_MERGE_LINEAR;
    o.lambda = 1.0f;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    mtft_merger_add_model(m, path_in(p, sizeof p, "a.safetensors"), 1.0f);
    mtft_merger_add_model(m, path_in(p, sizeof p, "b.safetensors"), 3.0f);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "avg.safetensors")), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_open(&st, p), MTFT_OK);
    float got[6], e[6];
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "lin.weight", got, 2, k_sh2), MTFT_OK);
    for (int k = 0; k < 6; k++) e[k] = g_base[2][k] + (1 * ta[2][k] + 3 * tb[2][k]) / 4;
    mtft_assert_close(got, e, 6, 1e-6f, 1e-5f, "linear average");
    mtft_safetensors_close(st);
    mtft_merger_free(m);
    mtft_test_rm_rf(g_dir);
}
END_TEST

START_TEST(test_merge_errors) {
    setup_dir();
    fill_base();
    write_model("base.safetensors", NULL, NULL);
    char p[512];
    /* a model with a tensor of another shape */
    {
        const char *names[3] = {"wte.weight", "h.0.attn.c_attn.weight", "lin.weight"};
        const int64_t bad[2] = {2, 4};
        const int64_t *sh[3] = {bad, k_sh1, k_sh2};
        float z[8] = {0};
        const float *data[3] = {z, z, z};
        ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, "shape.safetensors"), 3, names, data, k_nd, sh,
                                                   NULL),
                         MTFT_OK);
        /* and one missing lin.weight */
        ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, "missing.safetensors"), 2, names, data, k_nd,
                                                   (const int64_t *const *)(const int64_t *[]){k_sh0, k_sh1}, NULL),
                         MTFT_OK);
    }
    const char *meta[] = {"mtft.base_fingerprint", "0123456789abcdef", NULL};
    write_model("otherbase.safetensors", NULL, meta);
    mtft_merge_options o = MTFT_MERGE_OPTIONS_INIT;
    mtft_merger *m = NULL;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors")), MTFT_OK);
    mtft_merger_add_model(m, path_in(p, sizeof p, "shape.safetensors"), 1.0f);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "o1")), MTFT_ESHAPE);
    const char *msg = mtft_error_last()->message;
    ck_assert_ptr_nonnull(strstr(msg, "wte.weight"));
    ck_assert_ptr_nonnull(strstr(msg, "[4, 2]"));
    ck_assert_ptr_nonnull(strstr(msg, "[2, 4]"));
    ck_assert_ptr_nonnull(strstr(msg, "shape.safetensors"));
    mtft_merger_free(m);

    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors"));
    mtft_merger_add_model(m, path_in(p, sizeof p, "missing.safetensors"), 1.0f);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "o2")), MTFT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "lin.weight"));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "missing.safetensors"));
    mtft_merger_free(m);

    /* a model finetuned from another base (fingerprint in its metadata) */
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors"));
    mtft_merger_add_model(m, path_in(p, sizeof p, "otherbase.safetensors"), 1.0f);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "o3")), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "different base"));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "0123456789abcdef"));
    mtft_merger_free(m);

    /* a model with an extra tensor */
    {
        const char *names[4] = {"wte.weight", "h.0.attn.c_attn.weight", "lin.weight", "extra.bias"};
        const int nd[4] = {2, 2, 2, 1};
        const int64_t one[1] = {1};
        const int64_t *sh[4] = {k_sh0, k_sh1, k_sh2, one};
        float z[8] = {0};
        const float *data[4] = {z, z, z, z};
        ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, "extra.safetensors"), 4, names, data, nd, sh, NULL),
                         MTFT_OK);
    }
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors"));
    mtft_merger_add_model(m, path_in(p, sizeof p, "extra.safetensors"), 1.0f);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "o4")), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "extra.bias"));
    mtft_merger_free(m);

    /* ties without a base; nothing added; a file that does not exist; bad parameter values */
    o.method = MTFT_MERGE_TIES;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "o5")), MTFT_ESTATE);
    mtft_merger_add_model(m, path_in(p, sizeof p, "base.safetensors"), 1.0f);
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "o5")), MTFT_ESTATE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "base"));
    ck_assert_int_lt(mtft_merger_add_model(m, path_in(p, sizeof p, "nope.safetensors"), 1.0f), 0);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "nope.safetensors"));
    ck_assert_int_eq(mtft_merger_set_param(m, 0, NULL, MTFT_MERGE_P_DENSITY, 1.5), MTFT_ERANGE);
    ck_assert_int_eq(mtft_merger_set_param(m, 0, NULL, MTFT_MERGE_P_LAMBDA, 1.0), MTFT_EINVAL);
    ck_assert_int_eq(mtft_merger_set_param(m, 5, NULL, MTFT_MERGE_P_WEIGHT, 1.0), MTFT_ERANGE);
    mtft_merger_free(m);
    mtft_merger_free(NULL);
    o.version = 99;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_EINVAL);
    mtft_test_rm_rf(g_dir);
}
END_TEST

START_TEST(test_merge_params_resolve) {
    setup_dir();
    fill_base();
    write_model("base.safetensors", NULL, NULL);
    char p[512];
    mtft_merge_options o = MTFT_MERGE_OPTIONS_INIT;
    o.method = MTFT_MERGE_TIES;
    mtft_merger *m = NULL;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors"));
    mtft_merger_add_model(m, p, 2.0f);
    mtft_merger_add_model(m, p, 1.0f);
    ck_assert_int_eq(mtft_merger_set_param(m, -1, NULL, MTFT_MERGE_P_DENSITY, 0.5), MTFT_OK);
    ck_assert_int_eq(mtft_merger_set_param(m, -1, "h.*.attn.*", MTFT_MERGE_P_DENSITY, 0.3), MTFT_OK);
    ck_assert_int_eq(mtft_merger_set_param(m, 1, "attn", MTFT_MERGE_P_DENSITY, 0.9), MTFT_OK);
    ck_assert_int_eq(mtft_merger_set_param(m, -1, "wte", MTFT_MERGE_P_LAMBDA, 3.0), MTFT_OK);
    mtft_merge_model_params mp[2];
    float lam;
    int norm;
    mtft_merge__resolve(m, "h.0.attn.c_attn.weight", mp, &lam, &norm);
    ck_assert_float_eq(mp[0].density, 0.3f);
    ck_assert_float_eq(mp[1].density, 0.9f); /* the later, model-specific setting wins */
    ck_assert_float_eq(mp[0].weight, 2.0f);
    ck_assert_float_eq(lam, 1.0f);
    ck_assert_int_eq(norm, 0);
    mtft_merge__resolve(m, "wte.weight", mp, &lam, &norm);
    ck_assert_float_eq(mp[0].density, 0.5f);
    ck_assert_float_eq(mp[1].density, 0.5f);
    ck_assert_float_eq(lam, 3.0f);
    mtft_merger_free(m);
    mtft_test_rm_rf(g_dir);
}
END_TEST

/* adapter_config.json of a rank-1 adapter with lora_alpha 2 (scale 2). */
#define CFG_CONV "{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2, \"fan_in_fan_out\": true, \"base_model_name_or_path\": \"toy\"}"
#define CFG_LIN "{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2}"

START_TEST(test_merge_adapters) {
    setup_dir();
    fill_base();
    write_model("base.safetensors", NULL, NULL);
    char p[512], pb[512];
    /* adapter 1 on the Conv1D c_attn (PEFT's name carries "transformer."):
     * A = [1, 2], B = [1, -1, 3]^T: delta W (Linear [3, 2]) = 2 B A =
     *   [[2, 4], [-2, -4], [6, 12]], stored transposed [2, 3]: [[2, -2, 6], [4, -4, 12]] */
    const float A1[] = {1, 2}, B1[] = {1, -1, 3};
    write_adapter("ad1", "transformer.h.0.attn.c_attn", A1, B1, CFG_CONV);
    /* adapter 2 on the same weight: A = [0.5, -1], B = [2, 0, 1]^T: 2 B A = [[2, -4], [0, 0], [1, -2]]
     *   transposed: [[2, 0, 1], [-4, 0, -2]];  and adapter 3 on the Linear "lin" (no
     *   fan_in_fan_out: found from the shapes, [3, 2] = [out, in]) */
    const float A2[] = {0.5f, -1}, B2[] = {2, 0, 1};
    write_adapter("ad2", "transformer.h.0.attn.c_attn", A2, B2, CFG_CONV);
    write_adapter("ad3", "lin", A2, B2, CFG_LIN);
    mtft_merge_options o = MTFT_MERGE_OPTIONS_INIT;
    o.base_name = "toy";
    mtft_merger *m = NULL;
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors")), MTFT_OK);
    ck_assert_int_eq(mtft_merger_add_adapter(m, path_in(p, sizeof p, "ad1"), 1.0f), 0);
    ck_assert_int_eq(mtft_merger_add_adapter(m, path_in(p, sizeof p, "ad2"), 1.0f), 1);
    ck_assert_int_eq(mtft_merger_add_adapter(m, path_in(p, sizeof p, "ad3"), 1.0f), 2);
    float tv[6];
    ck_assert_int_eq(mtft_merger_task_vector(m, 0, "h.0.attn.c_attn.weight", tv, 6), MTFT_OK);
    const float e1[] = {2, -2, 6, 4, -4, 12};
    mtft_assert_close(tv, e1, 6, 0, 1e-6f, "conv1d delta");
    ck_assert_int_eq(mtft_merger_task_vector(m, 2, "lin.weight", tv, 6), MTFT_OK);
    const float e3[] = {2, -4, 0, 0, 1, -2};
    mtft_assert_close(tv, e3, 6, 0, 1e-6f, "linear delta");
    ck_assert_int_eq(mtft_merger_task_vector(m, 2, "wte.weight", tv, 6), MTFT_ESHAPE);
    float tw[8];
    ck_assert_int_eq(mtft_merger_task_vector(m, 2, "wte.weight", tw, 8), MTFT_OK);
    for (int k = 0; k < 8; k++) ck_assert_float_eq(tw[k], 0.0f); /* untouched */
    /* full weights: task arithmetic, lambda 1 */
    ck_assert_int_eq(mtft_merger_save(m, path_in(p, sizeof p, "full.safetensors")), MTFT_OK);
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, p), MTFT_OK);
    float got[8], e[8];
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "h.0.attn.c_attn.weight", got, 2, k_sh1), MTFT_OK);
    const float sum[] = {2 + 2, -2 + 0, 6 + 1, 4 - 4, -4 + 0, 12 - 2};
    for (int k = 0; k < 6; k++) e[k] = g_base[1][k] + sum[k];
    mtft_assert_close(got, e, 6, 1e-6f, 1e-5f, "adapters merged");
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "wte.weight", got, 2, k_sh0), MTFT_OK);
    mtft_assert_close(got, g_base[0], 8, 0, 0, "untouched weight");
    mtft_safetensors_close(st);
    /* LoRA output at rank 2: the merged delta of c_attn has rank 2 (two
     * rank-1 terms), so the re-factored adapter reproduces it; "lin" has rank 1 */
    ck_assert_int_eq(mtft_merger_save_lora(m, path_in(pb, sizeof pb, "lora_out"), 2), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_open(&st, path_in(p, sizeof p, "lora_out/adapter_model.safetensors")), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 4);
    float A[4], B[6];
    const int64_t sa[2] = {2, 2}, sb[2] = {3, 2};
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", A, 2, sa),
                     MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight", B, 2, sb),
                     MTFT_OK);
    /* B A (Linear [3, 2]) equals the transposed merged delta */
    for (int o2 = 0; o2 < 3; o2++)
        for (int c = 0; c < 2; c++) {
            float ba = B[o2 * 2] * A[c] + B[o2 * 2 + 1] * A[2 + c];
            ck_assert_float_eq_tol(ba, sum[c * 3 + o2], 1e-4f);
        }
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "base_model.model.lin.lora_A.weight", A, 2, sa), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "base_model.model.lin.lora_B.weight", B, 2, sb), MTFT_OK);
    for (int o2 = 0; o2 < 3; o2++)
        for (int c = 0; c < 2; c++)
            ck_assert_float_eq_tol(B[o2 * 2] * A[c] + B[o2 * 2 + 1] * A[2 + c], e3[o2 * 2 + c], 1e-4f);
    mtft_safetensors_close(st);
    char *cfg = NULL;
    size_t len = 0;
    FILE *f = fopen(path_in(p, sizeof p, "lora_out/adapter_config.json"), "rb");
    ck_assert_ptr_nonnull(f);
    cfg = calloc(1, 4096);
    len = fread(cfg, 1, 4095, f);
    fclose(f);
    ck_assert_int_gt((int)len, 10);
    ck_assert_ptr_nonnull(strstr(cfg, "\"r\":\t2") ? cfg : strstr(cfg, "\"r\": 2"));
    ck_assert_ptr_nonnull(strstr(cfg, "\"fan_in_fan_out\":\ttrue") ? cfg : strstr(cfg, "\"fan_in_fan_out\": true"));
    ck_assert_ptr_nonnull(strstr(cfg, "\"attn.c_attn\""));
    free(cfg);
    ck_assert_int_eq(mtft_merger_save_lora(m, path_in(pb, sizeof pb, "lora_bad"), 3), MTFT_ERANGE);
    mtft_merger_free(m);

    /* errors: another base name; an adapter on a module the base lacks; a wrong orientation */
    o.base_name = "gpt2-medium";
    ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
    ck_assert_int_lt(mtft_merger_add_adapter(m, path_in(p, sizeof p, "ad1"), 1.0f), 0);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "toy"));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "gpt2-medium"));
    mtft_merger_free(m);
    write_adapter("ad4", "h.0.mlp.c_fc", A1, B1, CFG_CONV);
    write_adapter("ad5", "wte", A1, B1, CFG_LIN); /* wte is [4, 2]: B A is [3, 2] */
    o.base_name = NULL;
    for (int which = 0; which < 2; which++) {
        ck_assert_int_eq(mtft_merger_new(&m, &o), MTFT_OK);
        mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors"));
        ck_assert_int_ge(mtft_merger_add_adapter(m, path_in(p, sizeof p, which ? "ad5" : "ad4"), 1.0f), 0);
        int rc = mtft_merger_save(m, path_in(p, sizeof p, "bad.safetensors"));
        ck_assert_int_eq(rc, which ? MTFT_ESHAPE : MTFT_ENOTFOUND);
        const char *msg = mtft_error_last()->message;
        ck_assert_ptr_nonnull(strstr(msg, which ? "wte.weight" : "h.0.mlp.c_fc.weight"));
        if (which) ck_assert_ptr_nonnull(strstr(msg, "[4, 2]"));
        mtft_merger_free(m);
    }
    mtft_test_rm_rf(g_dir);
}
END_TEST


/* ---- against mtft's own PEFT: real GPT-2 (Conv1D) and LLaMA models -------------------------- */

static mtft_model *tiny_model(mtft_arch arch, uint64_t seed) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.arch = arch;
    c.vocab_size = 32;
    c.n_ctx = 16;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = arch == MTFT_ARCH_LLAMA ? 1 : 2;
    c.n_ff = arch == MTFT_ARCH_LLAMA ? 24 : 32;
    c.tie_embeddings = arch == MTFT_ARCH_GPT2;
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, seed), MTFT_OK);
    return m;
}

/* Copy of a group's flat block. */
static float *group_copy(mtft_param_group *pg, size_t *n) {
    const float *d = mtft_param_group_data(pg, n);
    float *c = malloc(*n * sizeof *c);
    memcpy(c, d, *n * sizeof *c);
    return c;
}

START_TEST(test_merge_peft_roundtrip) {
    /* Two task LoRAs saved by mtft_peft_lora_save (PEFT format; GPT-2 with
     * fan_in_fan_out on Conv1D weights, LLaMA nn.Linear). Expected task
     * vectors come from mtft_peft_lora_merge, PEFT's own W += scale B A:
     *   merged full weights = base + (W_0 - base) + (W_1 - base)   (task arithmetic, lambda 1)
     * and the rank-(r0 + r1) LoRA output, loaded back with mtft_peft_lora_load and
     * merged into a fresh copy of the base, gives the same weights. */
    for (int arch = 0; arch < 2; arch++) {
        setup_dir();
        char p[512], pb[512];
        mtft_model *m = tiny_model((mtft_arch)arch, 21);
        mtft_param_group *base = mtft_model_base_group(m);
        ck_assert_int_eq(mtft_model_save_hf(m, path_in(p, sizeof p, "")), MTFT_OK);
        mtft_peft *pe = NULL;
        ck_assert_int_eq(mtft_peft_new(&pe, m, 2), MTFT_OK);
        mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
        lo.rank = 2;
        lo.alpha = 3.0f;
        lo.target_modules = arch == 0 ? "attn.c_attn|mlp.c_fc" : "q_proj|mlp.down_proj";
        mtft_param_group *g0 = NULL, *g1 = NULL;
        ck_assert_int_eq(mtft_peft_add_lora(pe, 0, &lo, &g0), MTFT_OK);
        lo.use_rslora = 1;
        ck_assert_int_eq(mtft_peft_add_lora(pe, 1, &lo, &g1), MTFT_OK);
        for (int gi = 0; gi < 2; gi++) {
            mtft_param_group *g = gi ? g1 : g0;
            for (int i = 0; i < mtft_param_group_count(g); i++) {
                mtft_tensor *t = mtft_param_group_tensor(g, i);
                mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), 100u * (uint64_t)gi + (uint64_t)i, -0.5f, 0.5f);
            }
        }
        mkdir(path_in(p, sizeof p, "ad0"), 0777);
        mkdir(path_in(p, sizeof p, "ad1"), 0777);
        ck_assert_int_eq(mtft_peft_lora_save(pe, 0, path_in(p, sizeof p, "ad0"), "tiny"), MTFT_OK);
        ck_assert_int_eq(mtft_peft_lora_save(pe, 1, path_in(p, sizeof p, "ad1"), "tiny"), MTFT_OK);
        size_t n = 0;
        float *b0 = group_copy(base, &n), *w0, *w1;
        ck_assert_int_eq(mtft_peft_lora_merge(pe, 0), MTFT_OK);
        w0 = group_copy(base, &n);
        ck_assert_int_eq(mtft_peft_lora_unmerge(pe, 0), MTFT_OK);
        ck_assert_int_eq(mtft_peft_lora_merge(pe, 1), MTFT_OK);
        w1 = group_copy(base, &n);
        ck_assert_int_eq(mtft_peft_lora_unmerge(pe, 1), MTFT_OK);
        mtft_peft_free(pe);
        float *want = malloc(n * sizeof *want);
        int changed = 0;
        for (size_t k = 0; k < n; k++) {
            want[k] = b0[k] + (w0[k] - b0[k]) + (w1[k] - b0[k]);
            changed += want[k] != b0[k];
        }
        ck_assert_int_gt(changed, 100);
        mtft_merger *mg = NULL;
        mtft_merge_options o = MTFT_MERGE_OPTIONS_INIT;
        o.base_name = "tiny";
        ck_assert_int_eq(mtft_merger_new(&mg, &o), MTFT_OK);
        ck_assert_int_eq(mtft_merger_set_base(mg, g_dir), MTFT_OK);
        ck_assert_int_eq(mtft_merger_add_adapter(mg, path_in(p, sizeof p, "ad0"), 1.0f), 0);
        ck_assert_int_eq(mtft_merger_add_adapter(mg, path_in(p, sizeof p, "ad1"), 1.0f), 1);
        ck_assert_int_eq(mtft_merger_merge_into(mg, base), MTFT_OK);
        mtft_assert_close(mtft_param_group_data(base, NULL), want, (int64_t)n, 1e-5f, 1e-5f, "adapters vs peft merge");
        ck_assert_int_eq(mtft_merger_save_lora(mg, path_in(pb, sizeof pb, "merged_lora"), 4), MTFT_OK);
        mtft_merger_free(mg);
        mtft_model_free(m);
        /* load the rank-4 LoRA into a fresh base and merge it with mtft's PEFT */
        mtft_model *m2 = NULL;
        ck_assert_int_eq(mtft_model_load_hf(&m2, g_dir), MTFT_OK);
        mtft_peft *p2 = NULL;
        ck_assert_int_eq(mtft_peft_new(&p2, m2, 1), MTFT_OK);
        ck_assert_int_eq(mtft_peft_lora_load(p2, 0, pb, NULL), MTFT_OK);
        ck_assert_int_eq(mtft_peft_lora_merge(p2, 0), MTFT_OK);
        mtft_assert_close(mtft_param_group_data(mtft_model_base_group(m2), NULL), want, (int64_t)n, 1e-4f, 1e-4f,
                          "rank-4 LoRA output");
        mtft_peft_free(p2);
        mtft_model_free(m2);
        free(b0), free(w0), free(w1), free(want);
        mtft_test_rm_rf(g_dir);
    }
}
END_TEST

/* ---- YAML -------------------------------------------------------------------------------------- */

START_TEST(test_merge_yaml) {
    setup_dir();
    fill_base();
    mkdir(path_in((char[512]){0}, 512, "basedir"), 0777);
    write_model("basedir/model.safetensors", NULL, NULL);
    write_text("basedir/config.json", "{\"model_type\": \"gpt2\"}\n");
    float ta[3][8] = {{1, -1, 0.5f, 0, 2, 0, 0, 0}, {0.3f, 0.2f, -0.1f, 0, 0, 1}, {1, 2, 3, 4, 5, 6}};
    write_model("a.safetensors", ta, NULL);
    const float A1[] = {1, 2}, B1[] = {1, -1, 3};
    write_adapter("ad1", "transformer.h.0.attn.c_attn", A1, B1, CFG_CONV);
    write_text("merge.yaml", "merge_method: task_arithmetic\n"
                             "base_model: basedir\n"
                             "models:\n"
                             "  - model: a.safetensors\n"
                             "    parameters:\n"
                             "      weight:\n"
                             "        - filter: lin\n"
                             "          value: 0.5\n"
                             "        - value: 2\n"
                             "  - adapter: ad1\n"
                             "parameters:\n"
                             "  lambda: 1.0\n"
                             "dtype: float32\n"
                             "seed: 3\n"
                             "output: merged\n");
    char p[512];
    mtft_merger *m = NULL;
    const char *out = NULL;
    int rank = -1;
    ck_assert_int_eq(mtft_merger_from_yaml(&m, path_in(p, sizeof p, "merge.yaml"), &out, &rank), MTFT_OK);
    ck_assert_int_eq(rank, 0);
    ck_assert_int_eq(mtft_merger_n_models(m), 2);
    ck_assert_ptr_nonnull(strstr(out, "/merged"));
    ck_assert_int_eq(mtft_merger_save(m, out), MTFT_OK);
    mtft_merger_free(m);
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path_in(p, sizeof p, "merged/model.safetensors")), MTFT_OK);
    float got[8], e[8];
    /* lin: weight 0.5 (the first matching filter); wte: weight 2; c_attn: 2 tau_a + the adapter */
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "lin.weight", got, 2, k_sh2), MTFT_OK);
    for (int k = 0; k < 6; k++) e[k] = g_base[2][k] + 0.5f * ta[2][k];
    mtft_assert_close(got, e, 6, 1e-6f, 1e-5f, "yaml lin");
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "wte.weight", got, 2, k_sh0), MTFT_OK);
    for (int k = 0; k < 8; k++) e[k] = g_base[0][k] + 2 * ta[0][k];
    mtft_assert_close(got, e, 8, 1e-6f, 1e-5f, "yaml wte");
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "h.0.attn.c_attn.weight", got, 2, k_sh1), MTFT_OK);
    const float ad[] = {2, -2, 6, 4, -4, 12};
    for (int k = 0; k < 6; k++) e[k] = g_base[1][k] + 2 * ta[1][k] + ad[k];
    mtft_assert_close(got, e, 6, 1e-6f, 1e-5f, "yaml c_attn");
    mtft_safetensors_close(st);
    struct stat sb;
    ck_assert_int_eq(stat(path_in(p, sizeof p, "merged/config.json"), &sb), 0); /* copied from the base dir */

    /* errors name file:line:col and the key path */
    struct {
        const char *yaml, *want, *want2;
    } bad[] = {
        {"merge_method: tiez\nbase_model: basedir\nmodels: [{model: a.safetensors}]\noutput: o\n", "merge.yaml:1:15",
         "ties"},
        {"merge_method: ties\nbase_model: basedir\nmodels:\n  - model: a.safetensors\n    paramters: {}\noutput: o\n",
         "models[0].paramters", "did you mean 'parameters'"},
        {"merge_method: ties\nbase_model: basedir\nmodels:\n  - model: a.safetensors\n    parameters: {density: 2}\n"
         "output: o\n",
         "merge.yaml:5:27", "density"},
        {"merge_method: ties\nbase_model: basedir\nmodels:\n  - model: a.safetensors\n    parameters: {lambda: 2}\n"
         "output: o\n",
         "top-level", "lambda"},
        {"merge_method: ties\nbase_model: basedir\nmodels: [{model: a.safetensors, adapter: ad1}]\noutput: o\n",
         "models[0]", "exactly one"},
        {"merge_method: ties\nbase_model: basedir\nmodels: [{model: nothere}]\noutput: o\n", "merge.yaml:3:18",
         "nothere"},
        {"merge_method: ties\nbase_model: basedir\nmodels: [{model: a.safetensors}]\ndtype: bfloat16\noutput: o\n",
         "merge.yaml:4:8", "float32"},
        {"merge_method: ties\nbase_model: basedir\nmodels: [{model: a.safetensors}]\n", "output", "missing"},
        {"merge_method: ties\nmodels: [{model: a.safetensors}]\noutput: o\nparameters:\n  density:\n    - {filter: x}\n",
         "parameters.density[0]", "value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text("bad.yaml", bad[i].yaml);
        ck_assert_int_lt(mtft_merger_from_yaml(&m, path_in(p, sizeof p, "bad.yaml"), NULL, NULL), 0);
        ck_assert_ptr_null(m);
        const char *msg = mtft_error_last()->message;
        char want[64];
        snprintf(want, sizeof want, "%s", bad[i].want);
        if (!strncmp(want, "merge.yaml", 10)) memcpy(want, "bad.yaml", 8), memmove(want + 8, want + 10, strlen(want + 10) + 1);
        if (!strstr(msg, want) || !strstr(msg, bad[i].want2))
            ck_abort_msg("case %zu: message '%s' lacks '%s' / '%s'", i, msg, want, bad[i].want2);
    }
    mtft_test_rm_rf(g_dir);
}
END_TEST

/* ---- AdaMerging ----------------------------------------------------------------------------------- */

/* A linear classifier: logits [4, 3] = X [4, 2] w^T + b, w [3, 2], b [3]. */
static const float k_X[8] = {1, 0, 0, 1, 1, 1, -1, 0.5f};

typedef struct {
    mtft_param_group *pg;
} ada_ctx;

static int ada_loss(mtft_graph *g, int step, void *payload, mtft_tensor **loss) {
    (void)step;
    ada_ctx *c = payload;
    const int64_t xs[2] = {4, 2};
    mtft_tensor *x = mtft_from_data(g, 2, xs, k_X);
    mtft_tensor *logits =
        mtft_linear(g, x, mtft_param_group_find(c->pg, "w"), mtft_param_group_find(c->pg, "b"));
    *loss = mtft_merge_entropy(g, logits);
    return *loss ? MTFT_OK : mtft_graph_status(g);
}

/* Mean entropy of softmax(X w^T + b) in double. */
static double entropy_ref(const float *w, const float *b) {
    double H = 0;
    for (int r = 0; r < 4; r++) {
        double z[3], mx = -1e300, s = 0;
        for (int j = 0; j < 3; j++) {
            z[j] = b[j] + (double)k_X[r * 2] * w[j * 2] + (double)k_X[r * 2 + 1] * w[j * 2 + 1];
            if (z[j] > mx) mx = z[j];
        }
        for (int j = 0; j < 3; j++) s += exp(z[j] - mx);
        for (int j = 0; j < 3; j++) {
            double pj = exp(z[j] - mx) / s;
            H -= pj * log(pj);
        }
    }
    return H / 4;
}

START_TEST(test_merge_adamerging) {
    /* base w = 0, b = 0 (uniform predictions, entropy log 3). Task 1 moves w
     * only, task 2 moves b only. Entropy falls as either coefficient grows
     * (softmax(lambda z) sharpens), so with the box [0, 1] the optimum is
     * lambda = 1 for the two coefficients whose task vector is non-zero;
     * coefficients of zero task vectors get zero gradient and stay at 0.3. */
    setup_dir();
    const char *names[2] = {"w", "b"};
    const int nd[2] = {2, 1};
    const int64_t sw[2] = {3, 2}, sbias[1] = {3};
    const int64_t *sh[2] = {sw, sbias};
    float w0[6] = {0}, b0[3] = {0};
    const float w1[6] = {2, -1, -1, 2, 0.5f, 0.5f}, b2[3] = {2.5f, 0, -1};
    char p[512];
    const float *d0[2] = {w0, b0}, *d1[2] = {w1, b0}, *d2[2] = {w0, b2};
    ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, "base.safetensors"), 2, names, d0, nd, sh, NULL), 0);
    ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, "t1.safetensors"), 2, names, d1, nd, sh, NULL), 0);
    ck_assert_int_eq(mtft_safetensors_save_raw(path_in(p, sizeof p, "t2.safetensors"), 2, names, d2, nd, sh, NULL), 0);
    mtft_merger *m = NULL;
    ck_assert_int_eq(mtft_merger_new(&m, NULL), MTFT_OK);
    mtft_merger_set_base(m, path_in(p, sizeof p, "base.safetensors"));
    mtft_merger_add_model(m, path_in(p, sizeof p, "t1.safetensors"), 1.0f);
    mtft_merger_add_model(m, path_in(p, sizeof p, "t2.safetensors"), 1.0f);
    ck_assert_int_eq(mtft_merger_n_tensors(m), 2);
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "model"), MTFT_OK);
    mtft_param_group_add(pg, "w", 2, sw);
    mtft_param_group_add(pg, "b", 1, sbias);
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    mtft_param_group_set_trainable(pg, 0);
    ada_ctx c = {pg};
    mtft_adamerge_options o = MTFT_ADAMERGE_OPTIONS_INIT;
    o.steps = 150;
    o.lr = 0.02f;
    float lam[4], losses[150];
    ck_assert_int_eq(mtft_adamerge(m, pg, ada_loss, &c, &o, lam, losses), MTFT_OK);
    /* the first loss is the entropy of the initial merge 0.3 (tau1 + tau2) */
    float wi[6], bi[3];
    for (int k = 0; k < 6; k++) wi[k] = 0.3f * w1[k];
    for (int k = 0; k < 3; k++) bi[k] = 0.3f * b2[k];
    ck_assert_double_le(fabs(losses[0] - entropy_ref(wi, bi)), 1e-5);
    /* layer-wise coefficients, model-major: [t1.w, t1.b, t2.w, t2.b] (base file order w, b) */
    ck_assert_str_eq(mtft_safetensors_name(mtft_merge__ref(m), 0), "w");
    ck_assert_float_eq_tol(lam[0], 1.0f, 1e-6f);
    ck_assert_float_eq(lam[1], 0.3f); /* tau1 of b is zero */
    ck_assert_float_eq(lam[2], 0.3f); /* tau2 of w is zero */
    ck_assert_float_eq_tol(lam[3], 1.0f, 1e-6f);
    ck_assert_float_lt(losses[149], losses[0]);
    /* pg holds the final merge: w = 1 * w1, b = 1 * b2 */
    mtft_assert_close(mtft_tensor_data(mtft_param_group_find(pg, "w")), w1, 6, 1e-6f, 1e-6f, "final w");
    mtft_assert_close(mtft_tensor_data(mtft_param_group_find(pg, "b")), b2, 3, 1e-6f, 1e-6f, "final b");
    ck_assert_int_eq(mtft_param_group_trainable(pg), 0); /* restored */
    /* task-wise: one coefficient per task; both go up */
    o.layerwise = 0;
    o.steps = 60;
    ck_assert_int_eq(mtft_adamerge(m, pg, ada_loss, &c, &o, lam, NULL), MTFT_OK);
    ck_assert_float_gt(lam[0], 0.9f);
    ck_assert_float_gt(lam[1], 0.9f);
    /* and with an upper bound of 2, the unconstrained optimum is past it:
     * entropy keeps falling, so lambda reaches the bound */
    o.lambda_max = 2.0f;
    o.steps = 200;
    o.lr = 0.05f;
    ck_assert_int_eq(mtft_adamerge(m, pg, ada_loss, &c, &o, lam, NULL), MTFT_OK);
    ck_assert_float_eq_tol(lam[0], 2.0f, 1e-6f);
    mtft_param_group_free(pg);
    mtft_merger_free(m);
    mtft_test_rm_rf(g_dir);
}
END_TEST

START_TEST(test_merge_entropy_grad) {
    /* d/dz of the mean entropy against central differences (through the autograd). */
    enum { N = 3, V = 4 };
    float z[N * V];
    mtft_test_fill(z, N * V, 5, -2, 2);
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = 1 << 20;
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, &go), MTFT_OK);
    const int64_t sh[2] = {N, V};
    mtft_tensor *x = mtft_from_data(g, 2, sh, z);
    mtft_tensor_set_requires_grad(g, x, 1);
    mtft_tensor *H = mtft_merge_entropy(g, x);
    ck_assert_ptr_nonnull(H);
    ck_assert_int_eq(mtft_graph_backward(g, H, NULL), MTFT_OK);
    const float *gr = mtft_tensor_grad(x);
    for (int i = 0; i < N * V; i++) {
        double h = 1e-3, Hp = 0, Hm = 0;
        for (int s = 0; s < 2; s++) {
            double zz[N * V];
            for (int k = 0; k < N * V; k++) zz[k] = z[k];
            zz[i] += s ? -h : h;
            double tot = 0;
            for (int r = 0; r < N; r++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < V; j++) mx = zz[r * V + j] > mx ? zz[r * V + j] : mx;
                for (int j = 0; j < V; j++) sum += exp(zz[r * V + j] - mx);
                for (int j = 0; j < V; j++) {
                    double pj = exp(zz[r * V + j] - mx) / sum;
                    tot -= pj * log(pj);
                }
            }
            if (s) Hm = tot / N;
            else Hp = tot / N;
        }
        ck_assert_double_le(fabs(gr[i] - (Hp - Hm) / (2 * h)), 1e-4);
    }
    mtft_graph_free(g);
}
END_TEST

static Suite *mtft_test_merge_suite(void) {
    Suite *s = suite_create("merge");
    TCase *m = tcase_create("methods");
    tcase_add_test(m, test_merge_linear);
    tcase_add_test(m, test_merge_task_arithmetic);
    tcase_add_test(m, test_merge_ties);
    tcase_add_test(m, test_merge_dare_mask);
    tcase_add_test(m, test_merge_dare_expectation);
    tcase_add_test(m, test_merge_breadcrumbs);
    tcase_add_test(m, test_merge_pcb);
    tcase_add_test(m, test_merge_names);
    tcase_add_test(m, test_merge_svd);
    suite_add_tcase(s, m);
    TCase *f = tcase_create("api");
    tcase_add_test(f, test_merge_checkpoints);
    tcase_add_test(f, test_merge_errors);
    tcase_add_test(f, test_merge_params_resolve);
    tcase_add_test(f, test_merge_adapters);
    tcase_add_test(f, test_merge_yaml);
    tcase_add_test(f, test_merge_peft_roundtrip);
    suite_add_tcase(s, f);
    TCase *a = tcase_create("grad");
    tcase_set_timeout(a, 60);
    tcase_add_test(a, test_merge_adamerging);
    tcase_add_test(a, test_merge_entropy_grad);
    suite_add_tcase(s, a);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_merge_suite()); }
