/* Small dense solvers for the gradient balancers: K x K problems, K a handful
 * of tasks. See linalg.h for each method. */
#include "linalg.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "gradbal.h"

static double *alloc_d(size_t n, const char *what) {
    double *p = mtft__malloc((n ? n : 1) * sizeof(double));
    if (!p) mtft__err(MTFT_ENOMEM, "%s: out of memory (%zu doubles)", what, n);
    return p;
}

static int all_finite(size_t n, const double *x) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ---- symmetric eigendecomposition (cyclic Jacobi) ------------------------ */

int mtft__sym_eig(int n, const double *A, double *evals, double *V, int max_sweeps) {
    if (n < 1 || !A || !evals || !V) return mtft__err(MTFT_EINVAL, "sym_eig: invalid arguments (n = %d)", n);
    if (max_sweeps <= 0) max_sweeps = 100;
    size_t nn = (size_t)n * (size_t)n;
    double *a = alloc_d(nn, "sym_eig");
    if (!a) return MTFT_ENOMEM;
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) a[i * n + j] = a[j * n + i] = A[i * n + j];
    if (!all_finite(nn, a)) {
        mtft__free(a);
        return mtft__err(MTFT_ENUMERIC, "sym_eig: %dx%d matrix has a non-finite entry", n, n);
    }
    for (size_t i = 0; i < nn; i++) V[i] = 0.0;
    for (int i = 0; i < n; i++) V[i * n + i] = 1.0;

    int converged = 0;
    double off = 0.0, total = 0.0;
    for (int sweep = 0; sweep <= max_sweeps; sweep++) {
        off = 0.0;
        total = 0.0;
        for (int i = 0; i < n; i++) {
            total += a[i * n + i] * a[i * n + i];
            for (int j = i + 1; j < n; j++) off += 2.0 * a[i * n + j] * a[i * n + j];
        }
        total += off;
        if (off <= 1e-28 * total) {
            converged = 1;
            break;
        }
        if (sweep == max_sweeps) break;
        for (int p = 0; p < n - 1; p++) {
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (apq == 0.0) continue;
                /* t = tan(theta) is the smaller root of t^2 + 2 tau t - 1 = 0,
                 * which zeroes a'_pq in J^T A J (Golub & Van Loan 8.5.2). */
                double tau = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                double t = (tau >= 0.0 ? 1.0 : -1.0) / (fabs(tau) + sqrt(1.0 + tau * tau));
                double c = 1.0 / sqrt(1.0 + t * t), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q: A J */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q: J^T (A J) */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                a[p * n + q] = a[q * n + p] = 0.0;
                for (int k = 0; k < n; k++) { /* V J */
                    double vkp = V[k * n + p], vkq = V[k * n + q];
                    V[k * n + p] = c * vkp - s * vkq;
                    V[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    /* A few sweeps past the strict threshold still leave an excellent
     * decomposition; only a gross failure is an error. */
    if (!converged && !(off <= 1e-20 * total)) {
        mtft__free(a);
        return mtft__err(MTFT_ENUMERIC, "sym_eig: Jacobi did not converge in %d sweeps (%dx%d, off/total %.3g)",
                         max_sweeps, n, n, total > 0 ? off / total : 0.0);
    }
    for (int i = 0; i < n; i++) evals[i] = a[i * n + i];
    mtft__free(a);
    /* selection sort, descending, moving eigenvector columns along */
    for (int i = 0; i < n - 1; i++) {
        int m = i;
        for (int j = i + 1; j < n; j++)
            if (evals[j] > evals[m]) m = j;
        if (m == i) continue;
        double t = evals[i];
        evals[i] = evals[m];
        evals[m] = t;
        for (int k = 0; k < n; k++) {
            t = V[k * n + i];
            V[k * n + i] = V[k * n + m];
            V[k * n + m] = t;
        }
    }
    return MTFT_OK;
}

/* ---- Cholesky ------------------------------------------------------------- */

int mtft__cholesky(int n, double *A) {
    if (n < 1 || !A) return mtft__err(MTFT_EINVAL, "cholesky: invalid arguments (n = %d)", n);
    double dmax = 0.0;
    for (int i = 0; i < n; i++) dmax = fmax(dmax, fabs(A[i * n + i]));
    if (!(dmax > 0.0) || !isfinite(dmax))
        return mtft__err(MTFT_ENUMERIC, "cholesky: %dx%d matrix has a zero or non-finite diagonal", n, n);
    for (int j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 1e-14 * dmax))
            return mtft__err(MTFT_ENUMERIC, "cholesky: %dx%d matrix is not positive definite (pivot %d = %.3g)", n,
                             n, j, d);
        double l = sqrt(d);
        A[j * n + j] = l;
        for (int i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / l;
        }
    }
    return MTFT_OK;
}

void mtft__cholesky_solve(int n, const double *L, double *b) {
    for (int i = 0; i < n; i++) { /* L y = b */
        double s = b[i];
        for (int k = 0; k < i; k++) s -= L[i * n + k] * b[k];
        b[i] = s / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) { /* L^T x = y */
        double s = b[i];
        for (int k = i + 1; k < n; k++) s -= L[k * n + i] * b[k];
        b[i] = s / L[i * n + i];
    }
}

/* ---- LU with partial pivoting --------------------------------------------- */

int mtft__lu_solve(int n, const double *A, const double *b, double *x) {
    if (n < 1 || !A || !b || !x) return mtft__err(MTFT_EINVAL, "lu_solve: invalid arguments (n = %d)", n);
    size_t nn = (size_t)n * (size_t)n;
    double *a = alloc_d(nn + (size_t)n, "lu_solve");
    if (!a) return MTFT_ENOMEM;
    double *r = a + nn;
    memcpy(a, A, nn * sizeof(double));
    memcpy(r, b, (size_t)n * sizeof(double));
    double amax = 0.0;
    for (size_t i = 0; i < nn; i++) amax = fmax(amax, fabs(a[i]));
    int rc = MTFT_OK;
    if (!isfinite(amax) || !all_finite((size_t)n, r)) {
        rc = mtft__err(MTFT_ENUMERIC, "lu_solve: %dx%d system has a non-finite entry", n, n);
        goto done;
    }
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(a[i * n + k]) > fabs(a[p * n + k])) p = i;
        if (!(fabs(a[p * n + k]) > 1e-13 * amax)) {
            rc = mtft__err(MTFT_ENUMERIC, "lu_solve: %dx%d matrix is singular (column %d)", n, n, k);
            goto done;
        }
        if (p != k) {
            for (int j = 0; j < n; j++) {
                double t = a[k * n + j];
                a[k * n + j] = a[p * n + j];
                a[p * n + j] = t;
            }
            double t = r[k];
            r[k] = r[p];
            r[p] = t;
        }
        for (int i = k + 1; i < n; i++) {
            double f = a[i * n + k] / a[k * n + k];
            if (f == 0.0) continue;
            for (int j = k + 1; j < n; j++) a[i * n + j] -= f * a[k * n + j];
            r[i] -= f * r[k];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = r[i];
        for (int j = i + 1; j < n; j++) s -= a[i * n + j] * r[j];
        r[i] = s / a[i * n + i];
    }
    memcpy(x, r, (size_t)n * sizeof(double));
done:
    mtft__free(a);
    return rc;
}

/* ---- simplex ---------------------------------------------------------------- */

void mtft__simplex_project(int n, double *v) {
    /* sort a copy descending (insertion sort: n is a handful) */
    double u[64];
    double *s = n <= 64 ? u : mtft__malloc((size_t)n * sizeof(double));
    if (!s) { /* out of memory: fall back to clipping and renormalising */
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += (v[i] = fmax(v[i], 0.0));
        for (int i = 0; i < n; i++) v[i] = sum > 0.0 ? v[i] / sum : 1.0 / n;
        return;
    }
    for (int i = 0; i < n; i++) {
        double x = v[i];
        int j = i;
        while (j > 0 && s[j - 1] < x) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = x;
    }
    double cum = 0.0, theta = 0.0;
    for (int j = 0; j < n; j++) {
        cum += s[j];
        double t = (cum - 1.0) / (j + 1);
        if (s[j] - t > 0.0) theta = t;
    }
    for (int i = 0; i < n; i++) v[i] = fmax(v[i] - theta, 0.0);
    if (s != u) mtft__free(s);
}

double mtft__min_norm_2(double v1v1, double v1v2, double v2v2, double *cost) {
    double gamma, c;
    if (v1v2 >= v1v1) { /* v1 itself is the closest point of the segment */
        gamma = 1.0;
        c = v1v1;
    } else if (v1v2 >= v2v2) {
        gamma = 0.0;
        c = v2v2;
    } else { /* both endpoint tests failed, so |v1 - v2|^2 > 0 */
        gamma = (v2v2 - v1v2) / (v1v1 + v2v2 - 2.0 * v1v2);
        gamma = fmin(fmax(gamma, 0.0), 1.0);
        c = v2v2 + gamma * (v1v2 - v2v2);
    }
    if (cost) *cost = c;
    return gamma;
}

static int check_gram(int K, const double *G, const char *who) {
    if (K < 1 || !G) return mtft__err(MTFT_EINVAL, "%s: invalid arguments (K = %d)", who, K);
    if (!all_finite((size_t)K * (size_t)K, G))
        return mtft__err(MTFT_ENUMERIC, "%s: %dx%d Gram matrix has a non-finite entry", who, K, K);
    for (int i = 0; i < K; i++)
        if (G[i * K + i] < 0.0)
            return mtft__err(MTFT_EINVAL, "%s: Gram matrix diagonal %d is negative (%.3g)", who, i, G[i * K + i]);
    return MTFT_OK;
}

/* Best pair (i, j) for the 2-point problem; fills w. */
static void best_pair(int K, const double *G, double *w) {
    double best = INFINITY;
    int bi = 0, bj = 0;
    double bg = 1.0;
    for (int i = 0; i < K; i++) {
        for (int j = i + 1; j < K; j++) {
            double c;
            double g = mtft__min_norm_2(G[i * K + i], G[i * K + j], G[j * K + j], &c);
            if (c < best) {
                best = c;
                bi = i;
                bj = j;
                bg = g;
            }
        }
    }
    for (int k = 0; k < K; k++) w[k] = 0.0;
    w[bi] = bg;
    w[bj] += 1.0 - bg;
}

int mtft__min_norm_fw(int K, const double *G, double *w, int max_iter, double tol) {
    int rc = check_gram(K, G, "min_norm_fw");
    if (rc) return rc;
    if (!w) return mtft__err(MTFT_EINVAL, "min_norm_fw: w is NULL");
    if (K == 1) {
        w[0] = 1.0;
        return MTFT_OK;
    }
    best_pair(K, G, w);
    if (K == 2) return MTFT_OK;
    if (max_iter <= 0) max_iter = 250;
    if (tol <= 0.0) tol = 1e-5;
    double *gw = alloc_d((size_t)K, "min_norm_fw");
    if (!gw) return MTFT_ENOMEM;
    for (int it = 0; it < max_iter; it++) {
        double v1v1 = 0.0;
        int t = 0;
        for (int i = 0; i < K; i++) {
            double s = 0.0;
            for (int j = 0; j < K; j++) s += G[i * K + j] * w[j];
            gw[i] = s;
            v1v1 += w[i] * s;
            if (s < gw[t]) t = i;
        }
        double nc = mtft__min_norm_2(v1v1, gw[t], G[t * K + t], NULL);
        double change = 0.0;
        for (int i = 0; i < K; i++) {
            double nw = nc * w[i] + (i == t ? 1.0 - nc : 0.0);
            change += fabs(nw - w[i]);
            w[i] = nw;
        }
        if (change < tol) break;
    }
    mtft__free(gw);
    return MTFT_OK;
}

/* ---- exact min-norm point in a simplex hull (Wolfe 1976) --------------------
 * Points x_1..x_K are known through their Gram matrix only. The current point
 * is x = sum_{s in S} lam_s x_s with S a "corral" of affinely independent
 * points. Major cycle: the vertex j minimising <x, x_j> is added unless
 * <x, x> - <x, x_j> <= tol (then x is optimal: every vertex, hence the whole
 * hull, lies in the half-space {y : <x, y> >= |x|^2}). Minor cycle: mu = the
 * min-norm point of the affine hull of S (a KKT system); if mu > 0 it becomes
 * lam, else move from lam towards mu until a weight hits zero, drop it, and
 * repeat. Finite: the norm decreases strictly and no corral repeats. */
int mtft__min_norm_simplex(int K, const double *G, double *w, int max_iter, double tol) {
    int rc = check_gram(K, G, "min_norm_simplex");
    if (rc) return rc;
    if (!w) return mtft__err(MTFT_EINVAL, "min_norm_simplex: w is NULL");
    if (K == 1) {
        w[0] = 1.0;
        return MTFT_OK;
    }
    if (K == 2) {
        double g = mtft__min_norm_2(G[0], G[1], G[3], NULL);
        w[0] = g;
        w[1] = 1.0 - g;
        return MTFT_OK;
    }
    double scale = 0.0;
    for (int i = 0; i < K; i++) scale = fmax(scale, G[i * K + i]);
    if (scale == 0.0) { /* all vectors are zero: every point of the simplex is optimal */
        for (int i = 0; i < K; i++) w[i] = 1.0 / K;
        return MTFT_OK;
    }
    if (max_iter <= 0) max_iter = 50 * K + 100;
    if (tol <= 0.0) tol = 1e-13;
    size_t m1 = (size_t)K + 1;
    /* lam[K], gx[K], mu[K+1], rhs[K+1], sys[(K+1)^2], S as ints in the tail */
    double *buf = alloc_d(5 * (size_t)K + 2 + m1 * m1 + 1, "min_norm_simplex");
    if (!buf) return MTFT_ENOMEM;
    double *lam = buf, *gx = lam + K, *mu = gx + K, *rhs = mu + m1, *sys = rhs + m1;
    int S[64 + 1];
    int *Sp = K <= 64 ? S : mtft__malloc((size_t)(K + 1) * sizeof(int));
    if (!Sp) {
        mtft__free(buf);
        return mtft__err(MTFT_ENOMEM, "min_norm_simplex: out of memory");
    }
    int ns = 0;
    for (int i = 0; i < K; i++) lam[i] = 0.0;
    {
        int b = 0;
        for (int i = 1; i < K; i++)
            if (G[i * K + i] < G[b * K + b]) b = i;
        Sp[ns++] = b;
        lam[b] = 1.0;
    }
    int it = 0;
    for (; it < max_iter; it++) {
        /* major cycle: gx = G lam, xx = lam^T G lam */
        double xx = 0.0;
        int j = 0;
        for (int i = 0; i < K; i++) {
            double s = 0.0;
            for (int t = 0; t < ns; t++) s += G[i * K + Sp[t]] * lam[Sp[t]];
            gx[i] = s;
            if (s < gx[j]) j = i;
        }
        for (int t = 0; t < ns; t++) xx += lam[Sp[t]] * gx[Sp[t]];
        if (xx - gx[j] <= tol * scale) break;
        int present = 0;
        for (int t = 0; t < ns; t++) present |= Sp[t] == j;
        if (present || ns == K) break; /* no progress possible at working precision */
        Sp[ns++] = j;
        lam[j] = 0.0;
        /* minor cycles */
        for (int minor = 0; minor <= K; minor++) {
            int m = ns;
            /* [G_SS 1; 1^T 0] [mu; nu] = [0; 1] */
            for (int a = 0; a < m; a++) {
                for (int b = 0; b < m; b++) sys[a * (m + 1) + b] = G[Sp[a] * K + Sp[b]] / scale;
                sys[a * (m + 1) + m] = 1.0;
                sys[m * (m + 1) + a] = 1.0;
                rhs[a] = 0.0;
            }
            sys[m * (m + 1) + m] = 0.0;
            rhs[m] = 1.0;
            if (mtft__lu_solve(m + 1, sys, rhs, mu) != MTFT_OK) {
                /* affinely dependent corral (only through rounding): keep the
                 * current point, which is feasible, and stop */
                mtft_error_clear();
                it = max_iter;
                break;
            }
            int pos = 1;
            for (int a = 0; a < m; a++) pos &= mu[a] > 1e-15;
            if (pos) {
                for (int a = 0; a < m; a++) lam[Sp[a]] = mu[a];
                break;
            }
            double theta = 1.0;
            int drop = -1;
            for (int a = 0; a < m; a++) {
                if (mu[a] <= 1e-15) {
                    double l = lam[Sp[a]];
                    double th = l - mu[a] > 0.0 ? l / (l - mu[a]) : 0.0;
                    if (th < theta) {
                        theta = th;
                        drop = a;
                    }
                }
            }
            for (int a = 0; a < m; a++) lam[Sp[a]] = (1.0 - theta) * lam[Sp[a]] + theta * mu[a];
            if (drop >= 0) lam[Sp[drop]] = 0.0;
            int keep = 0;
            for (int a = 0; a < m; a++) {
                if (lam[Sp[a]] > 1e-15)
                    Sp[keep++] = Sp[a];
                else
                    lam[Sp[a]] = 0.0;
            }
            ns = keep;
            if (ns == 0) { /* cannot happen in exact arithmetic; restart from the best vertex */
                int b = 0;
                for (int i = 1; i < K; i++)
                    if (G[i * K + i] < G[b * K + b]) b = i;
                Sp[ns++] = b;
                lam[b] = 1.0;
                break;
            }
        }
    }
    double sum = 0.0;
    for (int i = 0; i < K; i++) sum += (lam[i] = fmax(lam[i], 0.0));
    for (int i = 0; i < K; i++) w[i] = lam[i] / sum;
    if (Sp != S) mtft__free(Sp);
    mtft__free(buf);
    return MTFT_OK;
}

/* ---- CAGrad subproblem ----------------------------------------------------- */

typedef struct {
    int K;
    const double *G;
    const double *b; /* G g0w */
    double c, delta;
} cag_fn;

/* F(w) and, when grad != NULL, its gradient; gw (K scratch) gets G w. */
static double cag_eval(const cag_fn *f, const double *w, double *grad, double *gw) {
    int K = f->K;
    double lin = 0.0, q = 0.0;
    for (int i = 0; i < K; i++) {
        double s = 0.0;
        for (int j = 0; j < K; j++) s += f->G[i * K + j] * w[j];
        gw[i] = s;
        q += w[i] * s;
        lin += w[i] * f->b[i];
    }
    double r = sqrt(fmax(q, 0.0) + f->delta);
    if (grad)
        for (int i = 0; i < K; i++) grad[i] = f->b[i] + f->c * gw[i] / r;
    return lin + f->c * r;
}

/* K == 2, w = (x, 1-x): F'(x) = (b1 - b2) + c q'(x) / (2 sqrt q(x)) with
 * b = G (1/2, 1/2) and q(x) = x^2 G11 + 2x(1-x) G12 + (1-x)^2 G22. Where
 * q = 0 (the segment crosses the origin) the kink's subgradient contains
 * b1 - b2, which is what we return there. */
static double cag2_df(double x, double G11, double G12, double G22, double c) {
    double b1 = 0.5 * (G11 + G12), b2 = 0.5 * (G12 + G22);
    double q = x * x * G11 + 2.0 * x * (1.0 - x) * G12 + (1.0 - x) * (1.0 - x) * G22;
    double dq2 = x * G11 + (1.0 - 2.0 * x) * G12 - (1.0 - x) * G22;
    return (b1 - b2) + (q > 0.0 ? c * dq2 / sqrt(q) : 0.0);
}

int mtft__cagrad_solve(int K, const double *G, double c, double *w, int max_iter, double tol) {
    int rc = check_gram(K, G, "cagrad_solve");
    if (rc) return rc;
    if (!w || !(c >= 0.0) || !isfinite(c))
        return mtft__err(MTFT_EINVAL, "cagrad_solve: invalid arguments (c = %g)", c);
    if (K == 1) {
        w[0] = 1.0;
        return MTFT_OK;
    }
    double s = 0.0;
    for (int i = 0; i < K; i++) s += G[i * K + i];
    s /= K;
    if (s == 0.0) { /* all gradients zero: F is 0 everywhere */
        for (int i = 0; i < K; i++) w[i] = 1.0 / K;
        return MTFT_OK;
    }
    if (K == 2) {
        /* F is convex in x, so F' is non-decreasing: bisect its sign change */
        double G11 = G[0], G12 = G[1], G22 = G[3];
        double lo = 0.0, hi = 1.0, x;
        if (cag2_df(lo, G11, G12, G22, c) >= 0.0) {
            x = 0.0;
        } else if (cag2_df(hi, G11, G12, G22, c) <= 0.0) {
            x = 1.0;
        } else {
            for (int it = 0; it < 200 && hi - lo > 1e-17; it++) {
                double mid = 0.5 * (lo + hi);
                if (cag2_df(mid, G11, G12, G22, c) > 0.0)
                    hi = mid;
                else
                    lo = mid;
            }
            x = 0.5 * (lo + hi);
        }
        w[0] = x;
        w[1] = 1.0 - x;
        return MTFT_OK;
    }
    if (max_iter <= 0) max_iter = 20000;
    if (tol <= 0.0) tol = 1e-12;
    double *buf = alloc_d(7 * (size_t)K, "cagrad_solve");
    if (!buf) return MTFT_ENOMEM;
    double *b = buf, *y = b + K, *gy = y + K, *z = gy + K, *gz = z + K, *wprev = gz + K, *tmp = wprev + K;
    for (int i = 0; i < K; i++) {
        double t = 0.0;
        for (int j = 0; j < K; j++) t += G[i * K + j];
        b[i] = t / K;
    }
    cag_fn f = {K, G, b, c, 1e-20 * s};
    for (int i = 0; i < K; i++) w[i] = wprev[i] = y[i] = 1.0 / K;
    double Fw = cag_eval(&f, w, NULL, tmp);
    double L = s * (1.0 + c / sqrt(s)); /* a first guess; backtracking fixes it */
    double tk = 1.0;
    for (int it = 0; it < max_iter; it++) {
        double Fy = cag_eval(&f, y, gy, tmp);
        double Fz;
        for (int bt = 0; bt < 100; bt++) {
            for (int i = 0; i < K; i++) z[i] = y[i] - gy[i] / L;
            mtft__simplex_project(K, z);
            Fz = cag_eval(&f, z, NULL, tmp);
            double lin = 0.0, d2 = 0.0;
            for (int i = 0; i < K; i++) {
                double d = z[i] - y[i];
                lin += gy[i] * d;
                d2 += d * d;
            }
            if (Fz <= Fy + lin + 0.5 * L * d2 + 1e-15 * fabs(Fy)) break;
            L *= 2.0;
        }
        if (Fz > Fw) {
            if (tk == 1.0) break; /* a plain step from w no longer decreases F: converged */
            tk = 1.0;               /* adaptive restart: drop the momentum */
            for (int i = 0; i < K; i++) y[i] = w[i];
            continue;
        }
        double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * tk * tk));
        for (int i = 0; i < K; i++) {
            wprev[i] = w[i];
            w[i] = z[i];
            y[i] = z[i] + (tk - 1.0) / tn * (z[i] - wprev[i]);
        }
        tk = tn;
        Fw = Fz;
        L *= 0.9;
        /* Frank-Wolfe gap at w: an upper bound on F(w) - min F */
        cag_eval(&f, w, gz, tmp);
        double gmin = gz[0], gw_dot = 0.0;
        for (int i = 0; i < K; i++) {
            gmin = fmin(gmin, gz[i]);
            gw_dot += gz[i] * w[i];
        }
        if (gw_dot - gmin <= tol * s) break;
    }
    mtft__free(buf);
    return MTFT_OK;
}

/* ---- Nash-MTL fixed point ------------------------------------------------ */

int mtft__nash_solve(int K, const double *M, double *alpha, int max_iter, double *residual) {
    int rc = check_gram(K, M, "nash_solve");
    if (rc) return rc;
    if (!alpha) return mtft__err(MTFT_EINVAL, "nash_solve: alpha is NULL");
    for (int i = 0; i < K; i++)
        if (!(M[i * K + i] > 0.0))
            return mtft__err(MTFT_EINVAL, "nash_solve: task %d has a zero gradient (M[%d][%d] = %g); remove it first",
                             i, i, i, M[i * K + i]);
    if (max_iter <= 0) max_iter = 100;
    size_t kk = (size_t)K * (size_t)K;
    double *buf = alloc_d(2 * kk + 5 * (size_t)K, "nash_solve");
    if (!buf) return MTFT_ENOMEM;
    double *Mn = buf, *H = Mn + kk, *a = H + kk, *g = a + K, *d = g + K, *Ma = d + K, *dsc = Ma + K;
    /* Diagonal scaling: with d_i = sqrt(M_ii), Mn = D^-1 M D^-1 (unit diagonal)
     * and b = D a, a_i (M a)_i = b_i (Mn b)_i, so b solves the same problem
     * for Mn, whatever the spread of the gradient norms. */
    for (int i = 0; i < K; i++) dsc[i] = sqrt(M[i * K + i]);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) Mn[i * K + j] = M[i * K + j] / (dsc[i] * dsc[j]);
    for (int i = 0; i < K; i++) Mn[i * K + i] += 1e-10;
    int fresh = 0;
    for (int i = 0; i < K; i++) fresh |= !(alpha[i] > 0.0) || !isfinite(alpha[i]);
    for (int i = 0; i < K; i++) a[i] = fresh ? 1.0 : alpha[i] * dsc[i];
    for (int it = 0; it < max_iter; it++) {
        for (int i = 0; i < K; i++) {
            double t = 0.0;
            for (int j = 0; j < K; j++) t += Mn[i * K + j] * a[j];
            Ma[i] = t;
            d[i] = g[i] = t - 1.0 / a[i];
        }
        for (size_t i = 0; i < kk; i++) H[i] = Mn[i];
        for (int i = 0; i < K; i++) H[i * K + i] += 1.0 / (a[i] * a[i]);
        rc = mtft__cholesky(K, H);
        if (rc) break; /* cannot happen: H >= diag(1/a^2) > 0 */
        mtft__cholesky_solve(K, H, d);
        double lam2 = 0.0;
        for (int i = 0; i < K; i++) lam2 += g[i] * d[i];
        if (!(lam2 > 1e-26)) break; /* Phi is within 1e-26 of its minimum */
        double lam = sqrt(lam2);
        double t = lam > 0.25 ? 1.0 / (1.0 + lam) : 1.0;
        for (int i = 0; i < K; i++) /* stay inside a > 0 */
            if (d[i] > 0.0 && t * d[i] > 0.99 * a[i]) t = 0.99 * a[i] / d[i];
        for (int i = 0; i < K; i++) a[i] -= t * d[i];
    }
    double res = 0.0;
    for (int i = 0; i < K; i++) alpha[i] = a[i] / dsc[i];
    for (int i = 0; i < K; i++) {
        double t = 0.0;
        for (int j = 0; j < K; j++) t += M[i * K + j] * alpha[j];
        double r = fabs(alpha[i] * t - 1.0);
        res = isfinite(r) ? fmax(res, r) : INFINITY;
    }
    if (residual) *residual = res;
    mtft__free(buf);
    if (rc) return rc;
    if (!(res <= 1e-6))
        return mtft__err(MTFT_ENUMERIC,
                         "nash_solve: no bargaining solution for %d tasks to 1e-6 (residual %.3g after %d Newton steps): "
                         "a non-negative combination of the gradients is (nearly) zero",
                         K, res, max_iter);
    return MTFT_OK;
}
