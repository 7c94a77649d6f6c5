/* Truncated SVD for re-factoring merged LoRA deltas to rank r: a randomized
 * range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4 with q = 2 power
 * iterations) and a cyclic Jacobi eigendecomposition of the small Gram
 * matrix B B^T, B = Q^T M. All in double. */
#include <math.h>
#include <string.h>

#include "merge_impl.h"

void mtft_merge__jacobi_eig(double *A, int n, double *w, double *V) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) V[i * n + j] = i == j ? 1.0 : 0.0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < n; i++) {
            diag += A[i * n + i] * A[i * n + i];
            for (int j = i + 1; j < n; j++) off += A[i * n + j] * A[i * n + j];
        }
        if (off <= 1e-30 * (diag > 0 ? diag : 1.0)) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (apq == 0) continue;
                double app = A[p * n + p], aqq = A[q * n + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* A <- A J (columns p, q) */
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - s * akq;
                    A[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* A <- J^T A (rows p, q) */
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - s * aqk;
                    A[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) { /* V <- V J */
                    double vkp = V[k * n + p], vkq = V[k * n + q];
                    V[k * n + p] = c * vkp - s * vkq;
                    V[k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = A[i * n + i];
    /* sort descending (selection sort; n is small), columns of V along */
    for (int i = 0; i < n; i++) {
        int best = i;
        for (int j = i + 1; j < n; j++)
            if (w[j] > w[best]) best = j;
        if (best == i) continue;
        double tw = w[i];
        w[i] = w[best];
        w[best] = tw;
        for (int k = 0; k < n; k++) {
            double tv = V[k * n + i];
            V[k * n + i] = V[k * n + best];
            V[k * n + best] = tv;
        }
    }
}

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
    memset(Y, 0, (size_t)rows * (size_t)kk * sizeof *Y);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double m = M[r * cols + c];
            if (m == 0) continue;
            for (int j = 0; j < kk; j++) Y[r * kk + j] += m * Om[c * kk + j];
        }
    orthonormalise(Y, rows, kk);
    for (int it = 0; it < 2; it++) {
        /* Z = M^T Y, orthonormalise; Y = M Z, orthonormalise */
        memset(Z, 0, (size_t)cols * (size_t)kk * sizeof *Z);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                double m = M[r * cols + c];
                if (m == 0) continue;
                for (int j = 0; j < kk; j++) Z[c * kk + j] += m * Y[r * kk + j];
            }
        orthonormalise(Z, cols, kk);
        memset(Y, 0, (size_t)rows * (size_t)kk * sizeof *Y);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                double m = M[r * cols + c];
                if (m == 0) continue;
                for (int j = 0; j < kk; j++) Y[r * kk + j] += m * Z[c * kk + j];
            }
        orthonormalise(Y, rows, kk);
    }
    /* B = Q^T M, stored transposed as Z [cols, kk]: Z[c][j] = sum_r Q[r][j] M[r][c] */
    memset(Z, 0, (size_t)cols * (size_t)kk * sizeof *Z);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double m = M[r * cols + c];
            if (m == 0) continue;
            for (int j = 0; j < kk; j++) Z[c * kk + j] += m * Y[r * kk + j];
        }
    /* G = B B^T [kk, kk] */
    for (int i = 0; i < kk; i++)
        for (int j = i; j < kk; j++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++) s += Z[c * kk + i] * Z[c * kk + j];
            G[i * kk + j] = G[j * kk + i] = s;
        }
    mtft_merge__jacobi_eig(G, kk, ev, W);
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
