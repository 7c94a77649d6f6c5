/* Truncated SVD for re-factoring merged LoRA deltas to rank r: a randomized
 * range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4 with q = 2 power
 * iterations) and the eigendecomposition of the small Gram matrix B B^T,
 * B = Q^T M, by the library's one cyclic Jacobi solver (mtft__sym_eig in
 * src/balance/linalg.c). All in double. */
#include <math.h>
#include <string.h>

#include "balance/linalg.h" /* mtft__sym_eig: balance sits below merge */
#include "merge_impl.h"

/* Orthonormalise the kk columns of Y [rows, kk] in place (modified
 * Gram-Schmidt, twice for stability); a column that vanishes becomes 0. */
static void orthonormalise(double *Y, int64_t rows, int kk) {
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < kk; j++) {
            for (int i = 0; i < j; i++) {
                double d = 0;
                for (int64_t r = 0; r < rows; r++) d += Y[r * kk + i] * Y[r * kk + j];
                for (int64_t r = 0; r < rows; r++) Y[r * kk + j] -= d * Y[r * kk + i];
            }
            double nn = 0;
            for (int64_t r = 0; r < rows; r++) nn += Y[r * kk + j] * Y[r * kk + j];
            nn = sqrt(nn);
            for (int64_t r = 0; r < rows; r++) Y[r * kk + j] = nn > 1e-300 ? Y[r * kk + j] / nn : 0.0;
        }
}

/* Y [rows, kk] = M [rows, cols] X [cols, kk] (zeros of M skipped). */
static void mul_m(const float *M, int64_t rows, int64_t cols, const double *X, int kk, double *Y) {
    memset(Y, 0, (size_t)rows * (size_t)kk * sizeof *Y);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double m = M[r * cols + c];
            if (m == 0) continue;
            for (int j = 0; j < kk; j++) Y[r * kk + j] += m * X[c * kk + j];
        }
}

/* Z [cols, kk] = M^T X, M [rows, cols], X [rows, kk] (zeros of M skipped). */
static void mul_mt(const float *M, int64_t rows, int64_t cols, const double *X, int kk, double *Z) {
    memset(Z, 0, (size_t)cols * (size_t)kk * sizeof *Z);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double m = M[r * cols + c];
            if (m == 0) continue;
            for (int j = 0; j < kk; j++) Z[c * kk + j] += m * X[r * kk + j];
        }
}

int mtft_merge__svd(const float *M, int64_t rows, int64_t cols, int k, uint64_t seed, float *U, float *S, float *Vt) {
    MTFT_CHECK_ARG(M && rows > 0 && cols > 0 && k >= 1);
    int64_t mn = rows < cols ? rows : cols;
    if (k > mn) return mtft__err(MTFT_ERANGE, "svd: rank %d exceeds min(rows %lld, cols %lld)", k, (long long)rows,
                                 (long long)cols);
    int kk = (int)((int64_t)k + 8 < mn ? k + 8 : mn);
    double *Om = mtft__malloc((size_t)cols * (size_t)kk * sizeof *Om);
    double *Y = mtft__malloc((size_t)rows * (size_t)kk * sizeof *Y);
    double *Z = mtft__malloc((size_t)cols * (size_t)kk * sizeof *Z);
    double *G = mtft__malloc((size_t)kk * (size_t)kk * sizeof *G);
    double *W = mtft__malloc((size_t)kk * (size_t)kk * sizeof *W);
    double *ev = mtft__malloc((size_t)kk * sizeof *ev);
    if (!Om || !Y || !Z || !G || !W || !ev) {
        mtft__free(Om), mtft__free(Y), mtft__free(Z), mtft__free(G), mtft__free(W), mtft__free(ev);
        return mtft__err(MTFT_ENOMEM, "svd: out of memory for a [%lld, %lld] matrix", (long long)rows,
                         (long long)cols);
    }
    mtft_rng rng;
    mtft_rng_seed(&rng, seed);
    for (int64_t i = 0; i < cols * kk; i++) Om[i] = mtft_rng_normal(&rng);
    /* Y = M Om */
    mul_m(M, rows, cols, Om, kk, Y);
    orthonormalise(Y, rows, kk);
    for (int it = 0; it < 2; it++) {
        /* Z = M^T Y, orthonormalise; Y = M Z, orthonormalise */
        mul_mt(M, rows, cols, Y, kk, Z);
        orthonormalise(Z, cols, kk);
        mul_m(M, rows, cols, Z, kk, Y);
        orthonormalise(Y, rows, kk);
    }
    /* B = Q^T M, stored transposed as Z [cols, kk]: Z[c][j] = sum_r Q[r][j] M[r][c] */
    mul_mt(M, rows, cols, Y, kk, Z);
    /* G = B B^T [kk, kk] */
    for (int i = 0; i < kk; i++)
        for (int j = i; j < kk; j++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++) s += Z[c * kk + i] * Z[c * kk + j];
            G[i * kk + j] = G[j * kk + i] = s;
        }
    int rc = mtft__sym_eig(kk, G, ev, W, 0);
    if (rc < 0) {
        mtft__free(Om), mtft__free(Y), mtft__free(Z), mtft__free(G), mtft__free(W), mtft__free(ev);
        return rc;
    }
    /* sigma_j = sqrt(ev_j); U_j = Q W_j; V_j = B^T W_j / sigma_j */
    for (int j = 0; j < k; j++) {
        double sig = sqrt(ev[j] > 0 ? ev[j] : 0.0);
        if (S) S[j] = (float)sig;
        if (U)
            for (int64_t r = 0; r < rows; r++) {
                double s = 0;
                for (int i = 0; i < kk; i++) s += Y[r * kk + i] * W[i * kk + j];
                U[r * k + j] = (float)s;
            }
        if (Vt)
            for (int64_t c = 0; c < cols; c++) {
                double s = 0;
                for (int i = 0; i < kk; i++) s += Z[c * kk + i] * W[i * kk + j];
                Vt[(int64_t)j * cols + c] = sig > 1e-300 ? (float)(s / sig) : 0.0f;
            }
    }
    mtft__free(Om), mtft__free(Y), mtft__free(Z), mtft__free(G), mtft__free(W), mtft__free(ev);
    return MTFT_OK;
}
