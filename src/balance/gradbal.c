/* Gradient-level multitask balancing methods on flat per-task gradients.
 *
 * Every method has the same shape, so that the cost is two passes over the
 * K x P gradients whatever the method:
 *   1. the K x K Gram matrix G_ij = <g_i, g_j> (one pass, K(K+1)/2 dot
 *      products per element, OpenMP over fixed blocks, deterministic);
 *   2. the method's small math on G only, giving coefficients w with
 *      out = sum_k w_k g_k (PCGrad's projections are tracked as such
 *      coefficients too: every projected g_i' stays in span{g_j});
 *   3. out from one pass over P.
 * No P-sized temporaries are allocated. */
#include "gradbal.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <threads.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/core.h"
#include "linalg.h"

/* Tasks per call. The Gram kernel keeps K(K+1)/2 partial sums on the stack. */
#define GB_MAX_K 64
#define GB_MAX_PAIRS (GB_MAX_K * (GB_MAX_K + 1) / 2)
/* Gram tiles: TILE floats of each vector are reduced at a time (all K tiles
 * stay in L1/L2 while the K(K+1)/2 pairs run over them). */
#define GB_TILE 512
/* Budget of per-block partial sums (doubles) for the deterministic reduction. */
#define GB_PARTIAL_BUDGET (1 << 18)

/* ---- passes over P ------------------------------------------------------------ */

/* The two inner kernels, compiled for SSE2 (the x86-64 baseline) and, on
 * x86 with GCC or Clang, also for AVX2 and AVX-512, picked once at run time.
 * Every variant does the same operations in the same order (eight explicit
 * double lanes, no FMA contraction in ISO C mode), so all give the same bits;
 * wider vectors only run them faster (measured here: AVX-512 about 2x SSE2
 * on the Gram pass).
 *
 * dot: sum_p a[p] b[p] over n elements in double, in a fixed order: eight
 * lanes, combined pairwise, then the tail. (float x float is exact in double.)
 * axpy: acc[p] += w b[p] in double. */
#define GB_KERNELS(sfx, attr)                                                                              \
    attr static double dot_##sfx(const float *a, const float *b, int64_t n) {                                \
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                           \
        int64_t p = 0;                                                                                      \
        for (; p + 8 <= n; p += 8)                                                                          \
            for (int l = 0; l < 8; l++) acc[l] += (double)a[p + l] * (double)b[p + l];                      \
        double tail = 0.0;                                                                                  \
        for (; p < n; p++) tail += (double)a[p] * (double)b[p];                                             \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;    \
    }                                                                                                       \
    attr static void axpy_##sfx(double *acc, double w, const float *b, int64_t n) {                          \
        for (int64_t p = 0; p < n; p++) acc[p] += w * (double)b[p];                                         \
    }

GB_KERNELS(base, )
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define GB_X86 1
GB_KERNELS(avx2, __attribute__((target("avx2"))))
GB_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

typedef double (*gb_dot_fn)(const float *, const float *, int64_t);
typedef void (*gb_axpy_fn)(double *, double, const float *, int64_t);
static gb_dot_fn dot_tile = dot_base;
static gb_axpy_fn axpy_tile = axpy_base;

static void pick_kernels(void) {
#ifdef GB_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        dot_tile = dot_avx512;
        axpy_tile = axpy_avx512;
    } else if (__builtin_cpu_supports("avx2")) {
        dot_tile = dot_avx2;
        axpy_tile = axpy_avx2;
    }
#endif
}

static once_flag g_kernels_once = ONCE_FLAG_INIT;

/* Partial Gram sums (upper triangle, row-major pairs) over [p0, p1). */
static void gram_block(int K, const float *const *g, int64_t p0, int64_t p1, int diag_only, double *part) {
    int npairs = diag_only ? K : K * (K + 1) / 2;
    for (int q = 0; q < npairs; q++) part[q] = 0.0;
    for (int64_t t = p0; t < p1; t += GB_TILE) {
        int64_t n = p1 - t < GB_TILE ? p1 - t : GB_TILE;
        int q = 0;
        for (int i = 0; i < K; i++) {
            if (diag_only) {
                part[q++] += dot_tile(g[i] + t, g[i] + t, n);
                continue;
            }
            for (int j = i; j < K; j++) part[q++] += dot_tile(g[i] + t, g[j] + t, n);
        }
    }
}

/* The blocking depends on P and K only (never on the thread count), and the
 * block partials are summed in block order: the same bits with any number of
 * threads. */
static void gram_impl(int K, int64_t P, const float *const *g, double *G, int diag_only) {
    call_once(&g_kernels_once, pick_kernels);
    int npairs = diag_only ? K : K * (K + 1) / 2;
    int64_t nb_max = GB_PARTIAL_BUDGET / npairs;
    if (nb_max < 1) nb_max = 1;
    int64_t blk = (int64_t)1 << 15;
    int64_t nb = P > 0 ? (P + blk - 1) / blk : 0;
    if (nb > nb_max) {
        blk = (P + nb_max - 1) / nb_max;
        blk = (blk + GB_TILE - 1) / GB_TILE * GB_TILE;
        nb = (P + blk - 1) / blk;
    }
    double total[GB_MAX_PAIRS];
    for (int q = 0; q < npairs; q++) total[q] = 0.0;
    double *parts = nb > 1 ? mtft__malloc((size_t)nb * (size_t)npairs * sizeof(double)) : NULL;
    if (parts) {
        int nt = mtft__num_threads();
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
        for (int64_t b = 0; b < nb; b++) {
            int64_t p0 = b * blk, p1 = p0 + blk < P ? p0 + blk : P;
            gram_block(K, g, p0, p1, diag_only, parts + b * npairs);
        }
        for (int64_t b = 0; b < nb; b++)
            for (int q = 0; q < npairs; q++) total[q] += parts[b * npairs + q];
        mtft__free(parts);
    } else { /* one block, or no memory for the partials: the same sums, serially */
        double part[GB_MAX_PAIRS];
        for (int64_t b = 0; b < nb; b++) {
            int64_t p0 = b * blk, p1 = p0 + blk < P ? p0 + blk : P;
            gram_block(K, g, p0, p1, diag_only, part);
            for (int q = 0; q < npairs; q++) total[q] += part[q];
        }
    }
    for (int i = 0; i < K * K; i++) G[i] = 0.0;
    int q = 0;
    for (int i = 0; i < K; i++) {
        if (diag_only) {
            G[i * K + i] = total[q++];
            continue;
        }
        for (int j = i; j < K; j++, q++) G[i * K + j] = G[j * K + i] = total[q];
    }
}

void mtft__gram(int K, int64_t P, const float *const *g, double *G) {
    if (K < 1 || K > GB_MAX_K || P < 0 || !g || !G) return;
    gram_impl(K, P, g, G, 0);
}

/* out = sum_k w_k g_k, each element summed in double in task order and
 * rounded once. Blocks read and write only their own range, so out may
 * alias one of the g[k]. */
static void combine(int K, int64_t P, const float *const *g, const double *w, float *out) {
    enum { CB = 1024 };
    call_once(&g_kernels_once, pick_kernels);
    int64_t nb = (P + CB - 1) / CB;
    int nt = mtft__num_threads();
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nb > 16) num_threads(nt)
#endif
    for (int64_t b = 0; b < nb; b++) {
        double acc[CB];
        int64_t p0 = b * CB, n = P - p0 < CB ? P - p0 : CB;
        for (int64_t p = 0; p < n; p++) acc[p] = 0.0;
        for (int k = 0; k < K; k++)
            if (w[k] != 0.0) axpy_tile(acc, w[k], g[k] + p0, n);
        for (int64_t p = 0; p < n; p++) out[p0 + p] = (float)acc[p];
    }
}

/* ---- shared argument handling ------------------------------------------------- */

static int check_common(const char *who, int K, int64_t P, const float *const *g, const float *out) {
    if (K < 1 || K > GB_MAX_K)
        return mtft__err(MTFT_ERANGE, "%s: K = %d tasks, expected 1..%d", who, K, GB_MAX_K);
    if (P < 1) return mtft__err(MTFT_EINVAL, "%s: gradient length P = %lld, expected >= 1", who, (long long)P);
    if (!g) return mtft__err(MTFT_EINVAL, "%s: g is NULL", who);
    for (int k = 0; k < K; k++)
        if (!g[k]) return mtft__err(MTFT_EINVAL, "%s: g[%d] is NULL", who, k);
    if (!out) return mtft__err(MTFT_EINVAL, "%s: out is NULL", who);
    return MTFT_OK;
}

/* Gram matrix into a fresh K*K buffer; ENUMERIC names the task whose
 * gradient has a non-finite value (its squared norm is then not finite). */
static int gram_checked(const char *who, int K, int64_t P, const float *const *g, double **Gout, int diag_only) {
    double *G = mtft__malloc((size_t)K * (size_t)K * sizeof(double));
    if (!G) return mtft__err(MTFT_ENOMEM, "%s: out of memory", who);
    gram_impl(K, P, g, G, diag_only);
    for (int k = 0; k < K; k++) {
        if (!isfinite(G[k * K + k])) {
            mtft__free(G);
            return mtft__err(MTFT_ENUMERIC, "%s: task %d gradient (P = %lld) has a non-finite value or overflows", who,
                             k, (long long)P);
        }
    }
    *Gout = G;
    return MTFT_OK;
}

/* Write the coefficients: out, and w_out when given. */
static void finish(int K, int64_t P, const float *const *g, const double *w, float *out, float *w_out) {
    combine(K, P, g, w, out);
    if (w_out)
        for (int k = 0; k < K; k++) w_out[k] = (float)w[k];
}

/* ---- PCGrad ----------------------------------------------------------------------- */

int mtft__pcgrad(int K, int64_t P, const float *const *g, mtft_rng *rng, float *out, float *w_out) {
    int rc = check_common("pcgrad", K, P, g, out);
    if (rc) return rc;
    double *G = NULL;
    if ((rc = gram_checked("pcgrad", K, P, g, &G, 0))) return rc;
    double C[GB_MAX_K], w[GB_MAX_K] = {0};
    int order[GB_MAX_K];
    for (int k = 0; k < K; k++) w[k] = 0.0;
    for (int i = 0; i < K; i++) {
        /* g_i' = sum_m C[m] g_m, starting from g_i */
        for (int m = 0; m < K; m++) C[m] = m == i ? 1.0 : 0.0;
        int n = 0;
        for (int j = 0; j < K; j++)
            if (j != i) order[n++] = j;
        if (rng)
            for (int a = n - 1; a > 0; a--) { /* Fisher-Yates */
                int b = (int)mtft_rng_below(rng, (uint64_t)a + 1);
                int t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
        for (int a = 0; a < n; a++) {
            int j = order[a];
            double gjj = G[j * K + j];
            if (!(gjj > 0.0)) continue; /* a zero g_j has no direction to conflict with */
            double dot = 0.0;        /* <g_i', g_j> */
            for (int m = 0; m < K; m++) dot += C[m] * G[m * K + j];
            if (dot < 0.0) C[j] -= dot / gjj;
        }
        for (int m = 0; m < K; m++) w[m] += C[m];
    }
    mtft__free(G);
    finish(K, P, g, w, out, w_out);
    return MTFT_OK;
}

/* ---- CAGrad ----------------------------------------------------------------------- */

int mtft__cagrad(int K, int64_t P, const float *const *g, float c, int rescale, float *out, float *w_out) {
    int rc = check_common("cagrad", K, P, g, out);
    if (rc) return rc;
    if (!(c >= 0.0f && c < 1.0f)) return mtft__err(MTFT_ERANGE, "cagrad: c = %g, expected 0 <= c < 1", (double)c);
    if (rescale < 0 || rescale > 2)
        return mtft__err(MTFT_EINVAL, "cagrad: rescale = %d, expected 0 (none), 1 (1/(1+c^2)) or 2 (1/(1+c))",
                         rescale);
    double *G = NULL;
    if ((rc = gram_checked("cagrad", K, P, g, &G, 0))) return rc;
    double g0n2 = 0.0, s = 0.0; /* |g0|^2 = 1^T G 1 / K^2 */
    for (int i = 0; i < K; i++) {
        s += G[i * K + i];
        for (int j = 0; j < K; j++) g0n2 += G[i * K + j];
    }
    g0n2 = fmax(g0n2, 0.0) / ((double)K * K);
    s /= K;
    double sc = (double)c * sqrt(g0n2); /* sqrt(phi) */
    double w[GB_MAX_K];
    rc = mtft__cagrad_solve(K, G, sc, w, 0, 0.0);
    if (rc) {
        mtft__free(G);
        mtft__err_prefix("cagrad");
        return rc;
    }
    double gwn2 = 0.0; /* |g_w|^2 */
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) gwn2 += w[i] * G[i * K + j] * w[j];
    mtft__free(G);
    /* d = g0 + sqrt(phi)/|g_w| g_w; when g_w vanishes (0 lies in the hull),
     * the second term has no direction and d = g0 */
    double lambda = gwn2 > 1e-24 * s ? sc / sqrt(gwn2) : 0.0;
    double scale = rescale == 1 ? 1.0 / (1.0 + (double)c * c) : rescale == 2 ? 1.0 / (1.0 + (double)c) : 1.0;
    double coef[GB_MAX_K] = {0};
    for (int k = 0; k < K; k++) coef[k] = (1.0 / K + lambda * w[k]) * scale;
    finish(K, P, g, coef, out, w_out);
    return MTFT_OK;
}

/* ---- IMTL-G ------------------------------------------------------------------------ */

int mtft__imtl_g(int K, int64_t P, const float *const *g, float *out, float *w_out) {
    int rc = check_common("imtl_g", K, P, g, out);
    if (rc) return rc;
    double *G = NULL;
    if ((rc = gram_checked("imtl_g", K, P, g, &G, 0))) return rc;
    double w[GB_MAX_K] = {0}, nrm[GB_MAX_K];
    int act[GB_MAX_K], na = 0;
    double dmax = 0.0;
    for (int k = 0; k < K; k++) dmax = fmax(dmax, G[k * K + k]);
    for (int k = 0; k < K; k++) {
        w[k] = 0.0;
        nrm[k] = sqrt(G[k * K + k]);
        /* a zero gradient has no unit direction; it gets weight 0 (it adds nothing to out anyway) */
        if (G[k * K + k] > 1e-30 * dmax && G[k * K + k] > 0.0) act[na++] = k;
    }
    if (na == 1) w[act[0]] = 1.0;
    if (na >= 2) {
        /* Reference task r = act[0]; for a, b over the others:
         *   M_ab = <g_r - g_a, u_r - u_b>,   rhs_b = <g_r, u_r - u_b>,
         *   alpha M = rhs  (row vector), i.e. M^T alpha^T = rhs^T. */
        int m = na - 1, r = act[0];
        double *buf = mtft__malloc(((size_t)m * m * 2 + (size_t)m * 2) * sizeof(double));
        if (!buf) {
            mtft__free(G);
            return mtft__err(MTFT_ENOMEM, "imtl_g: out of memory");
        }
        double *Mt = buf, *A = Mt + (size_t)m * m, *rhs = A + (size_t)m * m, *alpha = rhs + m;
        for (int a = 0; a < m; a++) {
            int ia = act[a + 1];
            for (int b = 0; b < m; b++) {
                int ib = act[b + 1];
                double Mab = G[r * K + r] / nrm[r] - G[r * K + ib] / nrm[ib] - G[ia * K + r] / nrm[r] +
                             G[ia * K + ib] / nrm[ib];
                Mt[b * m + a] = Mab;
            }
            rhs[a] = nrm[r] - G[r * K + ia] / nrm[ia];
        }
        if (mtft__lu_solve(m, Mt, rhs, alpha) != MTFT_OK) {
            /* Linearly dependent gradients (e.g. two identical ones): the
             * system has no unique solution. Take the regularised
             * least-squares one, (Mt^T Mt + eps I) alpha = Mt^T rhs, which
             * tends to the minimum-norm solution. */
            mtft_error_clear();
            double tr = 0.0;
            for (int a = 0; a < m; a++) {
                for (int b = 0; b < m; b++) {
                    double t = 0.0;
                    for (int k = 0; k < m; k++) t += Mt[k * m + a] * Mt[k * m + b];
                    A[a * m + b] = t;
                }
                tr += A[a * m + a];
            }
            double eps = 1e-12 * (tr > 0.0 ? tr / m : 1.0);
            for (int a = 0; a < m; a++) A[a * m + a] += eps;
            double mr[GB_MAX_K];
            for (int a = 0; a < m; a++) {
                double t = 0.0;
                for (int k = 0; k < m; k++) t += Mt[k * m + a] * rhs[k];
                mr[a] = t;
            }
            if (mtft__cholesky(m, A) != MTFT_OK) { /* cannot happen: A + eps I is positive definite */
                mtft__free(buf);
                mtft__free(G);
                mtft__err_prefix("imtl_g");
                return MTFT_ENUMERIC;
            }
            mtft__cholesky_solve(m, A, mr);
            memcpy(alpha, mr, (size_t)m * sizeof(double));
        }
        double sum = 0.0;
        for (int a = 0; a < m; a++) {
            w[act[a + 1]] = alpha[a];
            sum += alpha[a];
        }
        w[r] = 1.0 - sum;
        mtft__free(buf);
    }
    mtft__free(G);
    for (int k = 0; k < K; k++)
        if (!isfinite(w[k])) return mtft__err(MTFT_ENUMERIC, "imtl_g: weight of task %d is not finite", k);
    finish(K, P, g, w, out, w_out);
    return MTFT_OK;
}

/* ---- MGDA-UB ------------------------------------------------------------------------ */

int mtft__mgda(int K, int64_t P, const float *const *g, const float *losses, int norm, float *out, float *w_out) {
    int rc = check_common("mgda", K, P, g, out);
    if (rc) return rc;
    if (norm < 0 || norm > 3)
        return mtft__err(MTFT_EINVAL, "mgda: norm = %d, expected 0 (none), 1 (l2), 2 (loss) or 3 (loss+)", norm);
    if (norm >= 2) {
        if (!losses) return mtft__err(MTFT_EINVAL, "mgda: norm = %d needs the losses, got NULL", norm);
        for (int k = 0; k < K; k++)
            if (!(losses[k] > 0.0f) || !isfinite(losses[k]))
                return mtft__err(MTFT_ERANGE, "mgda: loss of task %d is %g; loss normalisation needs finite losses > 0",
                                 k, (double)losses[k]);
    }
    double *G = NULL;
    if ((rc = gram_checked("mgda", K, P, g, &G, 0))) return rc;
    /* gradient normalisers (Sener & Koltun's gradient_normalizers); a zero
     * gradient keeps normaliser 1 so that it stays a zero vector */
    double gn[GB_MAX_K], w[GB_MAX_K];
    for (int k = 0; k < K; k++) {
        double l2 = sqrt(G[k * K + k]);
        double v = norm == 1 ? l2 : norm == 2 ? (double)losses[k] : norm == 3 ? (double)losses[k] * l2 : 1.0;
        gn[k] = v > 0.0 && isfinite(v) ? v : 1.0;
    }
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) G[i * K + j] /= gn[i] * gn[j];
    rc = mtft__min_norm_simplex(K, G, w, 0, 0.0);
    mtft__free(G);
    if (rc) {
        mtft__err_prefix("mgda");
        return rc;
    }
    finish(K, P, g, w, out, w_out);
    return MTFT_OK;
}

/* ---- Aligned-MTL ------------------------------------------------------------------- */

int mtft__aligned_mtl(int K, int64_t P, const float *const *g, const float *pre, float *out, float *w_out) {
    int rc = check_common("aligned_mtl", K, P, g, out);
    if (rc) return rc;
    if (pre)
        for (int k = 0; k < K; k++)
            if (!isfinite(pre[k]))
                return mtft__err(MTFT_ENUMERIC, "aligned_mtl: pre-weight of task %d is not finite", k);
    double *G = NULL;
    if ((rc = gram_checked("aligned_mtl", K, P, g, &G, 0))) return rc;
    double *V = mtft__malloc((size_t)K * K * sizeof(double));
    if (!V) {
        mtft__free(G);
        return mtft__err(MTFT_ENOMEM, "aligned_mtl: out of memory");
    }
    double ev[GB_MAX_K], w[GB_MAX_K] = {0}, u[GB_MAX_K];
    rc = mtft__sym_eig(K, G, ev, V, 0);
    mtft__free(G);
    if (rc) {
        mtft__free(V);
        mtft__err_prefix("aligned_mtl");
        return rc;
    }
    for (int k = 0; k < K; k++) {
        w[k] = 0.0;
        u[k] = pre ? (double)pre[k] : 1.0 / K;
    }
    /* rank: eigenvalues above K * FLT_EPSILON * l_max (the authors' tolerance;
     * the gradients are floats) */
    double tol = ev[0] * K * FLT_EPSILON;
    int rank = 0;
    while (rank < K && ev[rank] > tol && ev[rank] > 0.0) rank++;
    if (rank > 0) {
        /* w = B u, B = sqrt(l_min) V_r L_r^{-1/2} V_r^T */
        double smin = sqrt(ev[rank - 1]);
        for (int r = 0; r < rank; r++) {
            double vu = 0.0;
            for (int k = 0; k < K; k++) vu += V[k * K + r] * u[k];
            double f = smin / sqrt(ev[r]) * vu;
            for (int k = 0; k < K; k++) w[k] += f * V[k * K + r];
        }
    } /* else: all gradients zero, out = 0 */
    mtft__free(V);
    finish(K, P, g, w, out, w_out);
    return MTFT_OK;
}

/* ---- Nash-MTL ------------------------------------------------------------------------ */

int mtft__nash_mtl(int K, int64_t P, const float *const *g, float *alpha_prev, int max_iter, float *out,
                   float *w_out) {
    int rc = check_common("nash_mtl", K, P, g, out);
    if (rc) return rc;
    double *G = NULL;
    if ((rc = gram_checked("nash_mtl", K, P, g, &G, 0))) return rc;
    /* tasks with a zero gradient cannot satisfy alpha_i (M alpha)_i = 1: alpha_i = 0 */
    int act[GB_MAX_K], na = 0;
    double dmax = 0.0;
    for (int k = 0; k < K; k++) dmax = fmax(dmax, G[k * K + k]);
    for (int k = 0; k < K; k++)
        if (G[k * K + k] > 1e-30 * dmax && G[k * K + k] > 0.0) act[na++] = k;
    double w[GB_MAX_K] = {0};
    if (na > 0) {
        double *M = mtft__malloc((size_t)na * na * sizeof(double));
        if (!M) {
            mtft__free(G);
            return mtft__err(MTFT_ENOMEM, "nash_mtl: out of memory");
        }
        double a[GB_MAX_K];
        for (int i = 0; i < na; i++) {
            for (int j = 0; j < na; j++) M[i * na + j] = G[act[i] * K + act[j]];
            a[i] = alpha_prev ? (double)alpha_prev[act[i]] : 0.0;
        }
        double res = 0.0;
        rc = mtft__nash_solve(na, M, a, max_iter > 50 ? max_iter : 50, &res);
        mtft__free(M);
        if (rc) {
            mtft__free(G);
            mtft__err_prefix("nash_mtl");
            return rc;
        }
        for (int i = 0; i < na; i++) w[act[i]] = a[i];
    }
    mtft__free(G);
    if (alpha_prev)
        for (int k = 0; k < K; k++) alpha_prev[k] = (float)w[k];
    finish(K, P, g, w, out, w_out);
    return MTFT_OK;
}

/* ---- GradNorm ---------------------------------------------------------------------- */

int mtft__gradnorm(int K, int64_t P, const float *const *g, const float *losses, const float *init_losses,
                   float alpha, float lr, float *w, float *out) {
    int rc = check_common("gradnorm", K, P, g, out);
    if (rc) return rc;
    if (!losses || !init_losses || !w)
        return mtft__err(MTFT_EINVAL, "gradnorm: losses, init_losses and w must not be NULL");
    if (!isfinite(alpha) || !(lr >= 0.0f) || !isfinite(lr))
        return mtft__err(MTFT_ERANGE, "gradnorm: alpha = %g, lr = %g; expected finite, lr >= 0", (double)alpha,
                         (double)lr);
    for (int k = 0; k < K; k++) {
        if (!(losses[k] >= 0.0f) || !isfinite(losses[k]))
            return mtft__err(MTFT_ERANGE, "gradnorm: loss of task %d is %g, expected finite >= 0", k,
                             (double)losses[k]);
        if (!(init_losses[k] > 0.0f) || !isfinite(init_losses[k]))
            return mtft__err(MTFT_ERANGE, "gradnorm: initial loss of task %d is %g, expected finite > 0", k,
                             (double)init_losses[k]);
        if (!isfinite(w[k]))
            return mtft__err(MTFT_ENUMERIC, "gradnorm: weight of task %d is not finite", k);
    }
    double *G = NULL;
    if ((rc = gram_checked("gradnorm", K, P, g, &G, 1))) return rc;
    double n[GB_MAX_K], wd[GB_MAX_K] = {0}, gnorm[GB_MAX_K], ratio[GB_MAX_K];
    for (int k = 0; k < K; k++) {
        n[k] = sqrt(G[k * K + k]);
        wd[k] = w[k];
    }
    mtft__free(G);
    /* the step uses this step's weights */
    combine(K, P, g, wd, out);
    double gbar = 0.0, rbar = 0.0;
    for (int k = 0; k < K; k++) {
        gnorm[k] = wd[k] * n[k]; /* G_W^(i) = |grad_W (w_i L_i)| = w_i |g_i| */
        gbar += gnorm[k];
        ratio[k] = (double)losses[k] / (double)init_losses[k]; /* L~_i = L_i / L_i(0) */
        rbar += ratio[k];
    }
    gbar /= K;
    rbar /= K;
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
        double r = rbar > 0.0 ? ratio[k] / rbar : 1.0;   /* r_i */
        double target = gbar * pow(r, (double)alpha);    /* held constant */
        double diff = gnorm[k] - target;
        double sgn = diff > 0.0 ? 1.0 : diff < 0.0 ? -1.0 : 0.0;
        /* d/dw_i sum_j |w_j |g_j| - target_j| = sign(.) |g_i| */
        double nw = wd[k] - (double)lr * sgn * n[k];
        /* keep weights positive (the paper renormalises only; a large lr
         * could otherwise flip a sign) */
        nw = fmax(nw, 1e-6);
        wd[k] = nw;
        sum += nw;
    }
    for (int k = 0; k < K; k++) w[k] = (float)(wd[k] * K / sum);
    return MTFT_OK;
}
