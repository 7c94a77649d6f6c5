/* ctest-labels: unit */
/* Gradient-level balancers (src/balance/gradbal.c) and their small solvers
 * (src/balance/linalg.c), against values worked out by hand from each
 * paper's formula, brute force, and the methods' defining properties. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/gradbal.h"
#include "balance/linalg.h"
#include "core/core.h"
#include "mtft_test.h"

/* ---- helpers ------------------------------------------------------------- */

static double dotf(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void gram_naive(int K, int64_t P, const float *const *g, double *G) {
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) G[i * K + j] = dotf(g[i], g[j], P);
}

static void assert_finite(const float *x, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++) ck_assert_msg(isfinite(x[i]), "%s: element %lld is %g", what, (long long)i, x[i]);
}

static void assert_closed(const double *a, const double *b, int n, double tol, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(a[i] - b[i]) <= tol * (1.0 + fabs(b[i])), "%s[%d]: got %.15g, expected %.15g", what, i,
                      a[i], b[i]);
}

/* w^T G w */
static double quad(int K, const double *G, const double *w) {
    double s = 0.0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) s += w[i] * G[i * K + j] * w[j];
    return s;
}

/* Methods behind one signature, for the degenerate-input and large-P sweeps. */
enum { M_PCGRAD, M_CAGRAD, M_IMTL, M_MGDA, M_ALIGNED, M_NASH, M_GRADNORM, M_COUNT };
static const char *mname[M_COUNT] = {"pcgrad", "cagrad", "imtl_g", "mgda", "aligned_mtl", "nash_mtl", "gradnorm"};

static int run_method(int m, int K, int64_t P, const float *const *g, float *out, float *w_out) {
    switch (m) {
    case M_PCGRAD: {
        mtft_rng r;
        mtft_rng_seed(&r, 7);
        return mtft__pcgrad(K, P, g, &r, out, w_out);
    }
    case M_CAGRAD: return mtft__cagrad(K, P, g, 0.5f, 1, out, w_out);
    case M_IMTL: return mtft__imtl_g(K, P, g, out, w_out);
    case M_MGDA: return mtft__mgda(K, P, g, NULL, 1, out, w_out);
    case M_ALIGNED: return mtft__aligned_mtl(K, P, g, NULL, out, w_out);
    case M_NASH: {
        float a[16] = {0};
        return mtft__nash_mtl(K, P, g, a, 0, out, w_out);
    }
    default: {
        float losses[16] = {0}, init[16] = {0}, w[16] = {0};
        for (int k = 0; k < K; k++) {
            losses[k] = 1.0f + 0.25f * k;
            init[k] = 2.0f;
            w[k] = 1.0f;
        }
        int rc = mtft__gradnorm(K, P, g, losses, init, 1.5f, 0.025f, w, out);
        if (w_out)
            for (int k = 0; k < K; k++) w_out[k] = 1.0f; /* out used the weights before the update */
        for (int k = 0; k < K && rc == MTFT_OK; k++) ck_assert(isfinite(w[k]) && w[k] > 0.0f);
        return rc;
    }
    }
}

/* ---- Gram matrix ------------------------------------------------------------ */

START_TEST(test_gram_matches_naive_and_is_deterministic) {
    enum { K = 3 };
    const int64_t P = 100003; /* not a multiple of any block or tile size */
    float *buf = malloc(sizeof(float) * K * P);
    const float *g[K];
    for (int k = 0; k < K; k++) {
        mtft_test_fill(buf + k * P, P, 100 + k, -1.0f, 1.0f);
        g[k] = buf + k * P;
    }
    double G[K * K], Gn[K * K], G1[K * K], G2[K * K];
    mtft__gram(K, P, g, G);
    gram_naive(K, P, g, Gn);
    for (int i = 0; i < K * K; i++)
        ck_assert_msg(fabs(G[i] - Gn[i]) <= 1e-11 * (fabs(Gn[i]) + 1.0), "G[%d] %.17g vs naive %.17g", i, G[i], Gn[i]);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) ck_assert(G[i * K + j] == G[j * K + i]);
    /* same bits with 1 and 2 threads */
    mtft_set_num_threads(1);
    mtft__gram(K, P, g, G1);
    mtft_set_num_threads(2);
    mtft__gram(K, P, g, G2);
    mtft_set_num_threads(0);
    ck_assert(memcmp(G1, G2, sizeof G1) == 0);
    ck_assert(memcmp(G, G1, sizeof G1) == 0);
    free(buf);
}
END_TEST

/* ---- small solvers ----------------------------------------------------------- */

START_TEST(test_sym_eig_reconstructs) {
    /* [[2,1],[1,2]]: eigenvalues 3 and 1, vectors (1,1)/sqrt2 and (1,-1)/sqrt2 */
    double A2[4] = {2, 1, 1, 2}, e2[2], V2[4];
    ck_assert_int_eq(mtft__sym_eig(2, A2, e2, V2, 0), MTFT_OK);
    ck_assert(fabs(e2[0] - 3.0) < 1e-14 && fabs(e2[1] - 1.0) < 1e-14);
    ck_assert(fabs(fabs(V2[0]) - sqrt(0.5)) < 1e-14 && fabs(V2[0] - V2[2]) < 1e-14);

    /* random symmetric 6x6 (a Gram matrix plus an indefinite part) */
    enum { N = 6 };
    double A[N * N], ev[N], V[N * N];
    mtft_rng r;
    mtft_rng_seed(&r, 42);
    for (int i = 0; i < N; i++)
        for (int j = i; j < N; j++) A[i * N + j] = A[j * N + i] = mtft_rng_normal(&r);
    ck_assert_int_eq(mtft__sym_eig(N, A, ev, V, 0), MTFT_OK);
    for (int i = 0; i + 1 < N; i++) ck_assert(ev[i] >= ev[i + 1]);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            double rec = 0.0, vtv = 0.0;
            for (int k = 0; k < N; k++) {
                rec += V[i * N + k] * ev[k] * V[j * N + k]; /* (V L V^T)_ij */
                vtv += V[k * N + i] * V[k * N + j];         /* (V^T V)_ij */
            }
            ck_assert_msg(fabs(rec - A[i * N + j]) < 1e-12, "V L V^T [%d][%d] = %.15g, A = %.15g", i, j, rec,
                          A[i * N + j]);
            ck_assert_msg(fabs(vtv - (i == j)) < 1e-12, "V^T V [%d][%d] = %.15g", i, j, vtv);
        }
    }
    /* trace is preserved */
    double tr = 0.0, se = 0.0;
    for (int i = 0; i < N; i++) {
        tr += A[i * N + i];
        se += ev[i];
    }
    ck_assert(fabs(tr - se) < 1e-12);
    /* a non-finite entry is an error, not a NaN result */
    A[1] = NAN;
    ck_assert_int_eq(mtft__sym_eig(N, A, ev, V, 0), MTFT_ENUMERIC);
}
END_TEST

START_TEST(test_cholesky_and_lu) {
    /* SPD: A = [[4,2],[2,3]] -> L = [[2,0],[1,sqrt2]]; A x = (2,1) -> x = (0.5, 0) */
    double A[4] = {4, 2, 2, 3}, b[2] = {2, 1};
    ck_assert_int_eq(mtft__cholesky(2, A), MTFT_OK);
    ck_assert(fabs(A[0] - 2.0) < 1e-15 && fabs(A[2] - 1.0) < 1e-15 && fabs(A[3] - sqrt(2.0)) < 1e-15);
    mtft__cholesky_solve(2, A, b);
    ck_assert(fabs(b[0] - 0.5) < 1e-15 && fabs(b[1]) < 1e-15);
    double S[4] = {1, 1, 1, 1}; /* singular */
    ck_assert_int_eq(mtft__cholesky(2, S), MTFT_ENUMERIC);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "not positive definite"));

    /* LU needs a row swap: [[0,1],[1,0]] x = (3,5) -> x = (5,3) */
    double P2[4] = {0, 1, 1, 0}, r2[2] = {3, 5}, x2[2];
    ck_assert_int_eq(mtft__lu_solve(2, P2, r2, x2), MTFT_OK);
    ck_assert(x2[0] == 5.0 && x2[1] == 3.0);
    /* random 5x5 system: residual */
    enum { N = 5 };
    double M[N * N], y[N], x[N];
    mtft_rng rng;
    mtft_rng_seed(&rng, 3);
    for (int i = 0; i < N * N; i++) M[i] = mtft_rng_normal(&rng);
    for (int i = 0; i < N; i++) y[i] = mtft_rng_normal(&rng);
    ck_assert_int_eq(mtft__lu_solve(N, M, y, x), MTFT_OK);
    for (int i = 0; i < N; i++) {
        double s = 0.0;
        for (int j = 0; j < N; j++) s += M[i * N + j] * x[j];
        ck_assert_msg(fabs(s - y[i]) < 1e-12, "LU residual row %d: %.3g", i, s - y[i]);
    }
    double Z[4] = {1, 2, 2, 4};
    ck_assert_int_eq(mtft__lu_solve(2, Z, r2, x2), MTFT_ENUMERIC);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "singular"));
}
END_TEST

START_TEST(test_simplex_project) {
    /* sorted (1, 0.5, -1): theta = (1 + 0.5 - 1)/2 = 0.25 -> (0.75, 0.25, 0) */
    double v[3] = {0.5, 1.0, -1.0};
    mtft__simplex_project(3, v);
    double e[3] = {0.25, 0.75, 0.0};
    assert_closed(v, e, 3, 1e-15, "proj");
    double u[2] = {2.0, 0.0}; /* theta = 1 -> (1, 0) */
    mtft__simplex_project(2, u);
    ck_assert(u[0] == 1.0 && u[1] == 0.0);
    double s[3] = {0.2, 0.3, 0.5}; /* already on the simplex */
    mtft__simplex_project(3, s);
    ck_assert(fabs(s[0] - 0.2) < 1e-15 && fabs(s[1] - 0.3) < 1e-15 && fabs(s[2] - 0.5) < 1e-15);
}
END_TEST

START_TEST(test_min_norm_hand) {
    double w[3], cost;
    /* (1,0),(0,1): gamma = (v2v2 - v1v2)/(v1v1 + v2v2 - 2 v1v2) = 1/2, cost 1/2 */
    double G1[4] = {1, 0, 0, 1};
    ck_assert_int_eq(mtft__min_norm_simplex(2, G1, w, 0, 0), MTFT_OK);
    ck_assert(fabs(w[0] - 0.5) < 1e-15 && fabs(w[1] - 0.5) < 1e-15);
    ck_assert(fabs(mtft__min_norm_2(1, 0, 1, &cost) - 0.5) < 1e-15 && fabs(cost - 0.5) < 1e-15);
    /* (1,0),(2,0): v1v2 = 2 >= v1v1 = 1, so v1 is the closest point: w = (1, 0) */
    double G2[4] = {1, 2, 2, 4};
    ck_assert_int_eq(mtft__min_norm_simplex(2, G2, w, 0, 0), MTFT_OK);
    ck_assert(w[0] == 1.0 && w[1] == 0.0);
    /* (2,0),(0,1): gamma = (1 - 0)/(4 + 1) = 0.2 */
    double G3[4] = {4, 0, 0, 1};
    ck_assert_int_eq(mtft__min_norm_simplex(2, G3, w, 0, 0), MTFT_OK);
    ck_assert(fabs(w[0] - 0.2) < 1e-15 && fabs(w[1] - 0.8) < 1e-15);
    /* (1,0),(0,1),(1,1): the hull's closest point is (0.5,0.5) on the first edge */
    double G4[9] = {1, 0, 1, 0, 1, 1, 1, 1, 2};
    ck_assert_int_eq(mtft__min_norm_simplex(3, G4, w, 0, 0), MTFT_OK);
    double e4[3] = {0.5, 0.5, 0.0};
    assert_closed(w, e4, 3, 1e-12, "min-norm K=3");
    /* (1,0),(-1,0.5),(0,-1)... (-1,1),(1,1),(0,-1): origin inside: min norm 0 */
    double gs[3][2] = {{-1, 1}, {1, 1}, {0, -1}};
    double G5[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) G5[i * 3 + j] = gs[i][0] * gs[j][0] + gs[i][1] * gs[j][1];
    ck_assert_int_eq(mtft__min_norm_simplex(3, G5, w, 0, 0), MTFT_OK);
    /* 0 = a(-1,1) + b(1,1) + c(0,-1): a = b, 2a = c, a+b+c = 1 -> (1/4, 1/4, 1/2) */
    double e5[3] = {0.25, 0.25, 0.5};
    assert_closed(w, e5, 3, 1e-12, "min-norm origin inside");
    ck_assert(quad(3, G5, w) < 1e-24);
}
END_TEST

START_TEST(test_min_norm_brute_force) {
    /* K = 3 random vectors in R^P (P = 2 often puts the origin inside the
     * hull, P = 4 rarely): the exact solver is never worse than any grid
     * point, the grid is within its resolution of it, KKT holds, and
     * Sener & Koltun's Frank-Wolfe comes close. */
    for (int trial = 0; trial < 12; trial++) {
        int P = trial % 2 ? 4 : 2;
        float v[3][4];
        const float *g[3] = {v[0], v[1], v[2]};
        for (int k = 0; k < 3; k++) mtft_test_fill(v[k], P, 1000 + 10 * trial + k, -1.0f, 1.0f);
        double G[9], w[3], wf[3];
        gram_naive(3, P, g, G);
        ck_assert_int_eq(mtft__min_norm_simplex(3, G, w, 0, 0), MTFT_OK);
        double best = INFINITY;
        const int n = 300;
        for (int a = 0; a <= n; a++)
            for (int b = 0; a + b <= n; b++) {
                double x[3] = {(double)a / n, (double)b / n, (double)(n - a - b) / n};
                best = fmin(best, quad(3, G, x));
            }
        double val = quad(3, G, w), scale = fmax(G[0], fmax(G[4], G[8]));
        ck_assert(fabs(w[0] + w[1] + w[2] - 1.0) < 1e-14 && w[0] >= 0 && w[1] >= 0 && w[2] >= 0);
        ck_assert_msg(val <= best + 1e-13 * scale, "trial %d: solver %.15g > grid %.15g", trial, val, best);
        ck_assert_msg(best - val <= 1e-3 * scale, "trial %d: grid %.15g far above solver %.15g", trial, best, val);
        for (int i = 0; i < 3; i++) { /* KKT: (G w)_i >= w^T G w, = on the support */
            double gi = G[i * 3] * w[0] + G[i * 3 + 1] * w[1] + G[i * 3 + 2] * w[2];
            ck_assert_msg(gi >= val - 1e-12 * scale, "trial %d: KKT (Gw)_%d = %g < %g", trial, i, gi, val);
            if (w[i] > 1e-9) ck_assert_msg(fabs(gi - val) <= 1e-10 * scale, "trial %d: KKT support %d", trial, i);
        }
        ck_assert_int_eq(mtft__min_norm_fw(3, G, wf, 0, 0), MTFT_OK);
        ck_assert_msg(quad(3, G, wf) - val <= 1e-3 * scale, "trial %d: FW %.9g vs exact %.9g", trial, quad(3, G, wf),
                      val);
    }
}
END_TEST

/* ---- PCGrad ------------------------------------------------------------------- */

/* Plain P-space PCGrad with a given order per task (orders[i] lists the others). */
static void pcgrad_ref(int K, int P, const float *const *g, const int *orders, double *out) {
    for (int p = 0; p < P; p++) out[p] = 0.0;
    for (int i = 0; i < K; i++) {
        double gi[8];
        for (int p = 0; p < P; p++) gi[p] = g[i][p];
        for (int a = 0; a < K - 1; a++) {
            int j = orders[i * (K - 1) + a];
            double d = 0.0, n = 0.0;
            for (int p = 0; p < P; p++) {
                d += gi[p] * g[j][p];
                n += (double)g[j][p] * g[j][p];
            }
            if (d < 0.0)
                for (int p = 0; p < P; p++) gi[p] -= d / n * g[j][p];
        }
        for (int p = 0; p < P; p++) out[p] += gi[p];
    }
}

START_TEST(test_pcgrad_hand) {
    /* g1 = (1,0), g2 = (-1,1): <g1,g2> = -1 < 0.
     * g1' = g1 - (-1/|g2|^2) g2 = (1,0) + 0.5 (-1,1) = (0.5, 0.5)
     * g2' = g2 - (-1/|g1|^2) g1 = (-1,1) + (1,0)     = (0, 1)
     * out = (0.5, 1.5) = 2 g1 + 1.5 g2 -> w = (2, 1.5) */
    float a[2] = {1, 0}, b[2] = {-1, 1}, out[2], w[3];
    const float *g[2] = {a, b};
    mtft_rng r;
    mtft_rng_seed(&r, 1);
    ck_assert_int_eq(mtft__pcgrad(2, 2, g, &r, out, w), MTFT_OK);
    float e[2] = {0.5f, 1.5f}, ew[2] = {2.0f, 1.5f};
    mtft_assert_close(out, e, 2, 0, 1e-6f, "pcgrad out");
    mtft_assert_close(w, ew, 2, 0, 1e-6f, "pcgrad w");
    /* no conflict: (1,0),(1,1) -> plain sum (2,1), w = (1,1) */
    float c[2] = {1, 1};
    const float *h[2] = {a, c};
    ck_assert_int_eq(mtft__pcgrad(2, 2, h, &r, out, w), MTFT_OK);
    float e2[2] = {2, 1}, ew2[2] = {1, 1};
    mtft_assert_close(out, e2, 2, 0, 1e-6f, "pcgrad no conflict");
    mtft_assert_close(w, ew2, 2, 0, 1e-6f, "pcgrad no conflict w");

    /* three tasks, fixed order (rng NULL: others in ascending order):
     * g1 = (1,0), g2 = (-1,1), g3 = (-1,-2)
     * g1: <g1,g2> = -1 -> (1,0) + 1/2 (-1,1) = (0.5,0.5); <.,g3> = -1.5 -> + 1.5/5 (-1,-2) = (0.2,-0.1)
     * g2: <g2,g1> = -1 -> (-1,1) + (1,0) = (0,1);          <.,g3> = -2   -> + 2/5 (-1,-2)   = (-0.4,0.2)
     * g3: <g3,g1> = -1 -> (-1,-2) + (1,0) = (0,-2);        <.,g2> = -2   -> + 2/2 (-1,1)    = (-1,-1)
     * out = (-1.2, -0.9) */
    float d3[2] = {-1, -2};
    const float *g3[3] = {a, b, d3};
    ck_assert_int_eq(mtft__pcgrad(3, 2, g3, NULL, out, w), MTFT_OK);
    float e3[2] = {-1.2f, -0.9f};
    mtft_assert_close(out, e3, 2, 0, 1e-6f, "pcgrad K=3 fixed order");
    /* out = sum w_k g_k */
    float re[2] = {w[0] * a[0] + w[1] * b[0] + w[2] * d3[0], w[0] * a[1] + w[1] * b[1] + w[2] * d3[1]};
    mtft_assert_close(re, e3, 2, 0, 1e-6f, "pcgrad K=3 weights");

    /* random order: the result is one of the 8 per-task order choices */
    ck_assert_int_eq(mtft__pcgrad(3, 2, g3, &r, out, NULL), MTFT_OK);
    int found = 0;
    for (int mask = 0; mask < 8; mask++) {
        int ord[6] = {1, 2, 0, 2, 0, 1};
        for (int i = 0; i < 3; i++)
            if (mask >> i & 1) {
                int t = ord[2 * i];
                ord[2 * i] = ord[2 * i + 1];
                ord[2 * i + 1] = t;
            }
        double ref[2];
        pcgrad_ref(3, 2, g3, ord, ref);
        if (fabs(ref[0] - out[0]) < 1e-6 && fabs(ref[1] - out[1]) < 1e-6) found = 1;
    }
    ck_assert_msg(found, "pcgrad random order: (%g, %g) matches no order", out[0], out[1]);
}
END_TEST

START_TEST(test_pcgrad_matches_direct) {
    /* Gram-coefficient PCGrad = projections done in P-space (K = 5, P = 7) */
    enum { K = 5, P = 7 };
    float v[K][P], out[P];
    const float *g[K];
    for (int k = 0; k < K; k++) {
        mtft_test_fill(v[k], P, 77 + k, -1.0f, 1.0f);
        g[k] = v[k];
    }
    int ord[K * (K - 1)];
    for (int i = 0; i < K; i++) {
        int n = 0;
        for (int j = 0; j < K; j++)
            if (j != i) ord[i * (K - 1) + n++] = j;
    }
    double ref[P];
    pcgrad_ref(K, P, g, ord, ref);
    ck_assert_int_eq(mtft__pcgrad(K, P, g, NULL, out, NULL), MTFT_OK);
    for (int p = 0; p < P; p++) ck_assert_msg(fabs(out[p] - ref[p]) < 1e-5, "p %d: %g vs %g", p, out[p], ref[p]);
}
END_TEST

/* ---- CAGrad -------------------------------------------------------------------- */

START_TEST(test_cagrad_hand) {
    /* g1 = (1,0), g2 = (0,1), c = 0.5: g0 = (0.5,0.5), |g0| = sqrt(0.5),
     * sqrt(phi) = 0.5 sqrt(0.5) = 0.353553. With w = (x, 1-x):
     * F(x) = g_w.g0 + sqrt(phi)|g_w| = 0.5 + 0.353553 sqrt(x^2 + (1-x)^2), min at x = 0.5.
     * g_w = (0.5,0.5), |g_w| = sqrt(0.5): d = g0 + (0.353553/0.707107) g_w = (0.75, 0.75);
     * rescale 1: / (1 + 0.25) = (0.6, 0.6); weights (1/2 + 0.5*0.5)/1.25 = 0.6 */
    float a[2] = {1, 0}, b[2] = {0, 1}, out[2], w[2];
    const float *g[2] = {a, b};
    ck_assert_int_eq(mtft__cagrad(2, 2, g, 0.5f, 1, out, w), MTFT_OK);
    float e[2] = {0.6f, 0.6f};
    mtft_assert_close(out, e, 2, 0, 1e-6f, "cagrad sym out");
    mtft_assert_close(w, e, 2, 0, 1e-6f, "cagrad sym w");
    ck_assert_int_eq(mtft__cagrad(2, 2, g, 0.5f, 0, out, NULL), MTFT_OK);
    float e0[2] = {0.75f, 0.75f};
    mtft_assert_close(out, e0, 2, 0, 1e-6f, "cagrad sym no rescale");

    /* g1 = (1,0), g2 = (-1,1), c = 0.8: g0 = (0, 0.5), sqrt(phi) = 0.8 * 0.5 = 0.4.
     * g_w = (2x-1, 1-x); g_w.g0 = 0.5(1-x); |g_w|^2 = q = 5x^2 - 6x + 2.
     * F'(x) = -0.5 + 0.4 (5x-3)/sqrt(q) = 0  ->  (5x-3)^2 = 1.5625 q, 5x-3 > 0
     *   -> 275x^2 - 330x + 94 = 0 -> x = (330 + sqrt(5500))/550 = 0.7348400.
     * g_w = (0.4696800, 0.2651600), |g_w| = 0.5393547; lambda = 0.4/|g_w| = 0.7416198
     * d = g0 + lambda g_w = (0.3483240, 0.6966479); weights 0.5 + lambda (x, 1-x) =
     * (1.0449719, 0.6966479). CAGrad's point: <g1,d> = <g2,d> = 0.3483240 = min F. */
    float b2[2] = {-1, 1};
    const float *h[2] = {a, b2};
    ck_assert_int_eq(mtft__cagrad(2, 2, h, 0.8f, 0, out, w), MTFT_OK);
    float e2[2] = {0.3483240f, 0.6966479f}, ew2[2] = {1.0449719f, 0.6966479f};
    mtft_assert_close(out, e2, 2, 1e-5f, 1e-6f, "cagrad asym out");
    mtft_assert_close(w, ew2, 2, 1e-5f, 1e-6f, "cagrad asym w");
    ck_assert(fabs(dotf(a, out, 2) - dotf(b2, out, 2)) < 1e-5);
    /* c = 0 is plain averaging */
    ck_assert_int_eq(mtft__cagrad(2, 2, h, 0.0f, 0, out, NULL), MTFT_OK);
    float em[2] = {0.0f, 0.5f};
    mtft_assert_close(out, em, 2, 0, 1e-7f, "cagrad c=0");
    ck_assert_int_eq(mtft__cagrad(2, 2, h, 1.5f, 0, out, NULL), MTFT_ERANGE);
}
END_TEST

START_TEST(test_cagrad_solver_brute_force) {
    /* K = 3: the solver's objective is within 1e-9 of a fine grid's best */
    for (int trial = 0; trial < 6; trial++) {
        float v[3][4];
        const float *g[3] = {v[0], v[1], v[2]};
        for (int k = 0; k < 3; k++) mtft_test_fill(v[k], 4, 500 + 10 * trial + k, -1.0f, 1.0f);
        double G[9], w[3];
        gram_naive(3, 4, g, G);
        double g0n2 = 0.0;
        for (int i = 0; i < 9; i++) g0n2 += G[i] / 9.0;
        double c = 0.5 * sqrt(g0n2);
        ck_assert_int_eq(mtft__cagrad_solve(3, G, c, w, 0, 0), MTFT_OK);
#define CAGF(x)                                                                                   \
    (((x)[0] * (G[0] + G[1] + G[2]) + (x)[1] * (G[3] + G[4] + G[5]) + (x)[2] * (G[6] + G[7] + G[8])) / 3.0 + \
     c * sqrt(fmax(quad(3, G, (x)), 0.0)))
        double val = CAGF(w), best = INFINITY;
        const int n = 400;
        for (int a = 0; a <= n; a++)
            for (int b = 0; a + b <= n; b++) {
                double x[3] = {(double)a / n, (double)b / n, (double)(n - a - b) / n};
                best = fmin(best, CAGF(x));
            }
#undef CAGF
        ck_assert(fabs(w[0] + w[1] + w[2] - 1.0) < 1e-12 && w[0] >= 0 && w[1] >= 0 && w[2] >= 0);
        ck_assert_msg(val <= best + 1e-9, "trial %d: solver %.12g > grid %.12g", trial, val, best);
        ck_assert_msg(best - val < 1e-3, "trial %d: grid %.12g vs solver %.12g", trial, best, val);
    }
}
END_TEST

/* ---- IMTL-G ---------------------------------------------------------------------- */

START_TEST(test_imtl_g) {
    /* g1 = (1,0), g2 = (1,1): u1 = (1,0), u2 = (1,1)/sqrt2.
     * D = g1 - g2 = (0,-1); U = u1 - u2 = (1 - 1/sqrt2, -1/sqrt2).
     * D U^T = 1/sqrt2; g1 U^T = 1 - 1/sqrt2 -> alpha2 = sqrt2 - 1 = 0.4142136,
     * alpha1 = 2 - sqrt2 = 0.5857864; out = (1, sqrt2 - 1): out.u1 = out.u2 = 1. */
    float a[2] = {1, 0}, b[2] = {1, 1}, out[2], w[2];
    const float *g[2] = {a, b};
    ck_assert_int_eq(mtft__imtl_g(2, 2, g, out, w), MTFT_OK);
    float e[2] = {1.0f, 0.41421356f}, ew[2] = {0.58578644f, 0.41421356f};
    mtft_assert_close(out, e, 2, 1e-6f, 1e-7f, "imtl out");
    mtft_assert_close(w, ew, 2, 1e-6f, 1e-7f, "imtl w");

    /* random K = 4, P = 6: projections of out on every unit gradient are equal, sum alpha = 1 */
    enum { K = 4, P = 6 };
    float v[K][P], o[P], ww[K];
    const float *h[K];
    for (int k = 0; k < K; k++) {
        mtft_test_fill(v[k], P, 300 + k, -1.0f, 1.0f);
        for (int p = 0; p < P; p++) v[k][p] *= (float)(k + 1); /* different norms */
        h[k] = v[k];
    }
    ck_assert_int_eq(mtft__imtl_g(K, P, h, o, ww), MTFT_OK);
    double proj0 = dotf(o, v[0], P) / sqrt(dotf(v[0], v[0], P)), s = 0.0;
    for (int k = 0; k < K; k++) {
        double pk = dotf(o, v[k], P) / sqrt(dotf(v[k], v[k], P));
        ck_assert_msg(fabs(pk - proj0) < 1e-4 * (1 + fabs(proj0)), "projection %d: %g vs %g", k, pk, proj0);
        s += ww[k];
    }
    ck_assert(fabs(s - 1.0) < 1e-5);
}
END_TEST

/* ---- MGDA --------------------------------------------------------------------------- */

START_TEST(test_mgda) {
    float a[2] = {1, 0}, b[2] = {0, 1}, c[2] = {2, 0}, out[2], w[2];
    /* (1,0),(0,1): w = (0.5,0.5), out = (0.5,0.5) */
    const float *g1[2] = {a, b};
    ck_assert_int_eq(mtft__mgda(2, 2, g1, NULL, 0, out, w), MTFT_OK);
    float e1[2] = {0.5f, 0.5f};
    mtft_assert_close(w, e1, 2, 0, 1e-7f, "mgda w orth");
    mtft_assert_close(out, e1, 2, 0, 1e-7f, "mgda out orth");
    /* (1,0),(2,0): w = (1,0), out = (1,0) */
    const float *g2[2] = {a, c};
    ck_assert_int_eq(mtft__mgda(2, 2, g2, NULL, 0, out, w), MTFT_OK);
    float e2[2] = {1.0f, 0.0f};
    mtft_assert_close(w, e2, 2, 0, 0, "mgda w parallel");
    mtft_assert_close(out, e2, 2, 0, 0, "mgda out parallel");
    /* (2,0),(0,1) unnormalised: gamma = (1 - 0)/(4 + 1) = 0.2 -> out = (0.4, 0.8) */
    const float *g3[2] = {c, b};
    ck_assert_int_eq(mtft__mgda(2, 2, g3, NULL, 0, out, w), MTFT_OK);
    float e3[2] = {0.4f, 0.8f}, ew3[2] = {0.2f, 0.8f};
    mtft_assert_close(out, e3, 2, 0, 1e-7f, "mgda none");
    mtft_assert_close(w, ew3, 2, 0, 1e-7f, "mgda none w");
    /* L2 normalisation: (1,0),(0,1) -> w = (0.5,0.5); out = 0.5 (2,0) + 0.5 (0,1) = (1, 0.5) */
    ck_assert_int_eq(mtft__mgda(2, 2, g3, NULL, 1, out, w), MTFT_OK);
    float e4[2] = {1.0f, 0.5f};
    mtft_assert_close(out, e4, 2, 0, 1e-7f, "mgda l2");
    /* loss normalisation with losses (2, 1): same normalised vectors */
    float L[2] = {2.0f, 1.0f}, L1[2] = {1.0f, 1.0f};
    ck_assert_int_eq(mtft__mgda(2, 2, g3, L, 2, out, w), MTFT_OK);
    mtft_assert_close(out, e4, 2, 0, 1e-7f, "mgda loss");
    ck_assert_int_eq(mtft__mgda(2, 2, g3, L1, 3, out, w), MTFT_OK);
    mtft_assert_close(out, e4, 2, 0, 1e-7f, "mgda loss+");
    float bad[2] = {1.0f, -1.0f};
    ck_assert_int_eq(mtft__mgda(2, 2, g3, bad, 2, out, w), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "task 1"));
    ck_assert_int_eq(mtft__mgda(2, 2, g3, NULL, 2, out, w), MTFT_EINVAL);
}
END_TEST

/* ---- Aligned-MTL ---------------------------------------------------------------- */

START_TEST(test_aligned_mtl) {
    /* g1 = (3,0), g2 = (0,1): M = diag(9, 1), V = I, l_min = 1,
     * B = sqrt(1) diag(1/3, 1); w = B (1/2, 1/2) = (1/6, 1/2): both scaled to
     * the smallest singular value 1, out = (0.5, 0.5). */
    float a[2] = {3, 0}, b[2] = {0, 1}, out[2], w[2];
    const float *g[2] = {a, b};
    ck_assert_int_eq(mtft__aligned_mtl(2, 2, g, NULL, out, w), MTFT_OK);
    float e[2] = {0.5f, 0.5f}, ew[2] = {1.0f / 6, 0.5f};
    mtft_assert_close(out, e, 2, 1e-6f, 1e-7f, "aligned out");
    mtft_assert_close(w, ew, 2, 1e-6f, 1e-7f, "aligned w");
    float pre[2] = {1.0f, 1.0f}, e1[2] = {1.0f, 1.0f};
    ck_assert_int_eq(mtft__aligned_mtl(2, 2, g, pre, out, NULL), MTFT_OK);
    mtft_assert_close(out, e1, 2, 1e-6f, 1e-7f, "aligned pre");

    /* random K = 3, P = 5: the aligned gradients G B have B^T M B = l_min I.
     * Column k of B is w_out for pre = e_k. */
    enum { K = 3, P = 5 };
    float v[K][P], o[P];
    const float *h[K];
    for (int k = 0; k < K; k++) {
        mtft_test_fill(v[k], P, 900 + k, -1.0f, 1.0f);
        h[k] = v[k];
    }
    double M[K * K], B[K * K], ev[K], V[K * K];
    gram_naive(K, P, h, M);
    ck_assert_int_eq(mtft__sym_eig(K, M, ev, V, 0), MTFT_OK);
    for (int k = 0; k < K; k++) {
        float ek[K] = {0, 0, 0}, col[K];
        ek[k] = 1.0f;
        ck_assert_int_eq(mtft__aligned_mtl(K, P, h, ek, o, col), MTFT_OK);
        for (int i = 0; i < K; i++) B[i * K + k] = col[i];
    }
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++)
                for (int q = 0; q < K; q++) s += B[p * K + i] * M[p * K + q] * B[q * K + j];
            double expect = i == j ? ev[K - 1] : 0.0;
            ck_assert_msg(fabs(s - expect) < 1e-5 * ev[0], "B^T M B [%d][%d] = %g, expected %g", i, j, s, expect);
        }
}
END_TEST

/* ---- Nash-MTL ------------------------------------------------------------------- */

START_TEST(test_nash_mtl) {
    /* g1 = (1,0), g2 = (1,1): M = [[1,1],[1,2]].
     * a1 (a1 + a2) = 1 and a2 (a1 + 2 a2) = 1 -> a1^2 = 2 a2^2 -> a1 = sqrt2 a2,
     * (2 + sqrt2) a2^2 = 1 -> a2 = 1/sqrt(2 + sqrt2) = 0.5411961, a1 = 0.7653669.
     * out = a1 g1 + a2 g2 = (1.3065630, 0.5411961); check <out, g_i> = 1/a_i. */
    float a[2] = {1, 0}, b[2] = {1, 1}, out[2], w[2], prev[2] = {0, 0};
    const float *g[2] = {a, b};
    ck_assert_int_eq(mtft__nash_mtl(2, 2, g, prev, 20, out, w), MTFT_OK);
    float e[2] = {1.3065630f, 0.5411961f}, ew[2] = {0.7653669f, 0.5411961f};
    mtft_assert_close(out, e, 2, 1e-6f, 1e-7f, "nash out");
    mtft_assert_close(w, ew, 2, 1e-6f, 1e-7f, "nash w");
    mtft_assert_close(prev, ew, 2, 1e-6f, 1e-7f, "nash alpha_prev updated");
    ck_assert(fabs(dotf(out, a, 2) * w[0] - 1.0) < 1e-5 && fabs(dotf(out, b, 2) * w[1] - 1.0) < 1e-5);

    /* random K = 3 (P = 6): the fixed point residual, from the solver and in P-space */
    enum { K = 3, P = 6 };
    float v[K][P], o[P], ww[K], pv[K] = {0, 0, 0};
    const float *h[K];
    for (int k = 0; k < K; k++) {
        mtft_test_fill(v[k], P, 40 + k, -1.0f, 1.0f);
        for (int p = 0; p < P; p++) v[k][p] += 0.5f * (float)k; /* no zero non-negative combination */
        h[k] = v[k];
    }
    double M[K * K], al[K] = {0, 0, 0}, res = 1.0;
    gram_naive(K, P, h, M);
    ck_assert_int_eq(mtft__nash_solve(K, M, al, 0, &res), MTFT_OK);
    ck_assert_msg(res < 1e-9, "nash residual %g", res);
    for (int i = 0; i < K; i++) {
        double Ma = 0.0;
        for (int j = 0; j < K; j++) Ma += M[i * K + j] * al[j];
        ck_assert(al[i] > 0.0 && fabs(al[i] * Ma - 1.0) < 1e-9);
    }
    ck_assert_int_eq(mtft__nash_mtl(K, P, h, pv, 20, o, ww), MTFT_OK);
    for (int k = 0; k < K; k++)
        ck_assert_msg(fabs(dotf(o, v[k], P) * ww[k] - 1.0) < 1e-4, "task %d: alpha <out,g> = %g", k,
                      dotf(o, v[k], P) * ww[k]);
    /* warm start: from the solution one Newton step suffices; from scratch it does not */
    double warm[K], cold[K] = {0, 0, 0};
    for (int k = 0; k < K; k++) warm[k] = al[k];
    ck_assert_int_eq(mtft__nash_solve(K, M, warm, 1, &res), MTFT_OK);
    ck_assert_int_eq(mtft__nash_solve(K, M, cold, 1, &res), MTFT_ENUMERIC);
    float o2[P], ww2[K];
    ck_assert_int_eq(mtft__nash_mtl(K, P, h, pv, 3, o2, ww2), MTFT_OK);
    mtft_assert_close(ww2, ww, K, 1e-5f, 0, "nash warm start");
    /* scale covariance: gradients x 10 -> alpha / 10, same out */
    float v10[K][P];
    const float *h10[K];
    for (int k = 0; k < K; k++) {
        for (int p = 0; p < P; p++) v10[k][p] = 10.0f * v[k][p];
        h10[k] = v10[k];
    }
    ck_assert_int_eq(mtft__nash_mtl(K, P, h10, NULL, 0, o2, ww2), MTFT_OK);
    for (int k = 0; k < K; k++) ck_assert(fabs(ww2[k] * 10.0f - ww[k]) < 1e-5 * ww[k]);
    mtft_assert_close(o2, o, P, 1e-5f, 1e-6f, "nash scale");

    /* g2 = -g1: a non-negative combination is zero, no solution: a clear error */
    float na[2] = {-1, 0};
    const float *opp[2] = {a, na};
    ck_assert_int_eq(mtft__nash_mtl(2, 2, opp, NULL, 0, out, w), MTFT_ENUMERIC);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "bargaining"));
}
END_TEST

/* ---- GradNorm -------------------------------------------------------------------- */

START_TEST(test_gradnorm_hand) {
    /* |g1| = 1, |g2| = 2, w = (1,1), L = (0.5, 1.0), L(0) = (1, 1), alpha = 1.5, lr = 0.025.
     * gnorm = (1, 2), mean 1.5; L~ = (0.5, 1.0), mean 0.75 -> r = (2/3, 4/3);
     * target = 1.5 r^1.5 = (0.8164966, 2.3094011);
     * gnorm - target = (+0.18, -0.31) -> dL/dw = (+|g1|, -|g2|) = (1, -2);
     * w = (1 - 0.025, 1 + 0.05) = (0.975, 1.05), sum 2.025 -> x 2/2.025 = (0.9629630, 1.0370370).
     * out = 1 g1 + 1 g2 = (1, 2) (this step's weights). */
    float a[2] = {1, 0}, b[2] = {0, 2}, out[2], w[2] = {1, 1};
    const float *g[2] = {a, b};
    float L[2] = {0.5f, 1.0f}, L0[2] = {1.0f, 1.0f};
    ck_assert_int_eq(mtft__gradnorm(2, 2, g, L, L0, 1.5f, 0.025f, w, out), MTFT_OK);
    float ew[2] = {0.96296296f, 1.03703704f}, eo[2] = {1, 2};
    mtft_assert_close(w, ew, 2, 1e-6f, 0, "gradnorm w");
    mtft_assert_close(out, eo, 2, 0, 1e-7f, "gradnorm out");
    /* second step uses the new weights: out = 0.962963 g1 + 1.037037 g2 */
    ck_assert_int_eq(mtft__gradnorm(2, 2, g, L, L0, 1.5f, 0.025f, w, out), MTFT_OK);
    float eo2[2] = {0.96296296f, 2.07407407f};
    mtft_assert_close(out, eo2, 2, 1e-6f, 0, "gradnorm out step 2");
    float bad[2] = {0.0f, 1.0f};
    ck_assert_int_eq(mtft__gradnorm(2, 2, g, L, bad, 1.5f, 0.025f, w, out), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "initial loss of task 0"));
}
END_TEST

/* ---- degenerate inputs ------------------------------------------------------------ */

START_TEST(test_degenerate_inputs) {
    float z[3] = {0, 0, 0}, a[3] = {1, 2, -1}, b[3] = {-0.5f, 1, 2}, out[3], w[3];
    const float *k1[1] = {a};                 /* K = 1 */
    const float *zero[3] = {a, z, b};         /* one zero gradient */
    const float *same[3] = {a, a, b};         /* two identical gradients */
    const float *allz[2] = {z, z};            /* all zero */
    const float *const *cases[4] = {k1, zero, same, allz};
    int ks[4] = {1, 3, 3, 2};
    const char *cname[4] = {"K=1", "zero gradient", "identical gradients", "all zero"};
    for (int m = 0; m < M_COUNT; m++) {
        for (int c = 0; c < 4; c++) {
            for (int i = 0; i < 3; i++) out[i] = NAN;
            int rc = run_method(m, ks[c], 3, cases[c], out, w);
            ck_assert_msg(rc == MTFT_OK, "%s, %s: rc %d (%s)", mname[m], cname[c], rc, mtft_error_last()->message);
            char what[96];
            snprintf(what, sizeof what, "%s, %s: out", mname[m], cname[c]);
            assert_finite(out, 3, what);
            assert_finite(w, ks[c], what);
        }
        /* K = 1: out is along g */
        run_method(m, 1, 3, k1, out, w);
        double cosv = dotf(out, a, 3) / sqrt(dotf(out, out, 3) * dotf(a, a, 3));
        ck_assert_msg(fabs(cosv - 1.0) < 1e-6, "%s K=1: out not along g (cos %g)", mname[m], cosv);
        /* non-finite input: a clear error naming the task */
        float bad[3] = {1, NAN, 0};
        const float *gb[2] = {a, bad};
        ck_assert_int_eq(run_method(m, 2, 3, gb, out, w), MTFT_ENUMERIC);
        ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "task 1"));
        ck_assert_int_lt(run_method(m, 0, 3, gb, out, w), 0);
    }
    /* identical gradients: MGDA, IMTL-G, Aligned-MTL and CAGrad (mean) all give back the common g */
    const float *id[2] = {a, a};
    float ea[3] = {1, 2, -1};
    ck_assert_int_eq(mtft__mgda(2, 3, id, NULL, 0, out, w), MTFT_OK);
    mtft_assert_close(out, ea, 3, 1e-6f, 1e-6f, "mgda identical");
    ck_assert_int_eq(mtft__imtl_g(2, 3, id, out, w), MTFT_OK);
    mtft_assert_close(out, ea, 3, 1e-5f, 1e-5f, "imtl identical");
    ck_assert_int_eq(mtft__aligned_mtl(2, 3, id, NULL, out, w), MTFT_OK);
    mtft_assert_close(out, ea, 3, 1e-5f, 1e-5f, "aligned identical");
}
END_TEST

/* ---- large P: the same answer as the small problem ------------------------------------ */

START_TEST(test_large_p_matches_small) {
    /* Each large gradient is a small P0 = 4 one tiled R times. The small values
     * are multiples of 1/4, so every Gram entry is exact in double and
     * G_large = R G_small exactly. Every method is invariant to a common scale
     * of the Gram matrix except Nash-MTL (alpha / sqrt(R)), so out_large is
     * out_small tiled (Nash: divided by sqrt(R)). */
    enum { K = 3, P0 = 4 };
    const int64_t R = 250000, P = R * P0; /* 1e6 */
    float s[K][P0] = {{1.0f, -0.5f, 0.25f, 2.0f}, {-1.0f, 1.0f, 0.5f, 0.75f}, {0.5f, -1.25f, -1.0f, 1.5f}};
    float *big = malloc(sizeof(float) * K * P), *out = malloc(sizeof(float) * P);
    ck_assert_ptr_nonnull(big);
    ck_assert_ptr_nonnull(out);
    const float *gs[K], *gb[K];
    for (int k = 0; k < K; k++) {
        gs[k] = s[k];
        gb[k] = big + k * P;
        for (int64_t r = 0; r < R; r++) memcpy(big + k * P + r * P0, s[k], sizeof s[k]);
    }
    double Gb[K * K], Gs[K * K];
    mtft__gram(K, P, gb, Gb);
    mtft__gram(K, P0, gs, Gs);
    for (int i = 0; i < K * K; i++) ck_assert(Gb[i] == (double)R * Gs[i]);
    for (int m = 0; m < M_COUNT; m++) {
        float os[P0], ws[K], wb[K];
        ck_assert_int_eq(run_method(m, K, P0, gs, os, ws), MTFT_OK);
        ck_assert_int_eq(run_method(m, K, P, gb, out, wb), MTFT_OK);
        double f = m == M_NASH ? 1.0 / sqrt((double)R) : 1.0;
        for (int64_t p = 0; p < P; p++) {
            double e = f * os[p % P0];
            if (!(fabs(out[p] - e) <= 1e-5 * fabs(e) + 1e-6 * f))
                ck_abort_msg("%s: large-P out[%lld] = %.8g, small-problem value %.8g", mname[m], (long long)p, out[p],
                             e);
        }
    }
    free(big);
    free(out);
}
END_TEST

static Suite *gradbal_suite(void) {
    Suite *s = suite_create("gradbal");
    TCase *t = tcase_create("solvers");
    tcase_add_test(t, test_gram_matches_naive_and_is_deterministic);
    tcase_add_test(t, test_sym_eig_reconstructs);
    tcase_add_test(t, test_cholesky_and_lu);
    tcase_add_test(t, test_simplex_project);
    tcase_add_test(t, test_min_norm_hand);
    tcase_add_test(t, test_min_norm_brute_force);
    suite_add_tcase(s, t);
    TCase *m = tcase_create("methods");
    tcase_add_test(m, test_pcgrad_hand);
    tcase_add_test(m, test_pcgrad_matches_direct);
    tcase_add_test(m, test_cagrad_hand);
    tcase_add_test(m, test_cagrad_solver_brute_force);
    tcase_add_test(m, test_imtl_g);
    tcase_add_test(m, test_mgda);
    tcase_add_test(m, test_aligned_mtl);
    tcase_add_test(m, test_nash_mtl);
    tcase_add_test(m, test_gradnorm_hand);
    tcase_add_test(m, test_degenerate_inputs);
    tcase_set_timeout(m, 120);
    suite_add_tcase(s, m);
    TCase *l = tcase_create("large");
    tcase_add_test(l, test_large_p_matches_small);
    tcase_set_timeout(l, 300);
    suite_add_tcase(s, l);
    return s;
}

int main(void) { return mtft_test_run(gradbal_suite()); }
