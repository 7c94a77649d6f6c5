/* Internal: gradient-level balancing methods as pure functions on per-task
 * gradient vectors of the shared trainable parameters. The public balancer
 * object (include/mtft/balance.h, src/balance/balance.c) owns state and
 * options and calls these. No tensors: flat float vectors only.
 *
 * Common conventions:
 *   K        number of tasks present this step (callers compact away tasks
 *            whose mask is 0 before calling), 1 <= K <= 64
 *   P        length of each gradient vector
 *   g[k]     task k's gradient, P floats (read only)
 *   out      P floats: the combined update direction (overwritten); may
 *            alias one of the g[k] (each block of out is written only after
 *            its block of every g[k] has been read)
 *   w_out    K floats or NULL: the effective per-task weights, defined so
 *            that out = sum_k w_out[k] * g[k] where the method is a linear
 *            combination (PCGrad reports 1 per task; CAGrad reports the
 *            weights of the g0 + ... combination)
 * Sums and dot products accumulate in double. Each returns MTFT_OK or a
 * negative mtft_status with the last error set: MTFT_ENUMERIC naming the task
 * when a gradient has a non-finite value, MTFT_ERANGE / MTFT_EINVAL for bad
 * arguments. Degenerate inputs (a zero gradient, identical gradients, K = 1,
 * all zero) give finite results, never NaN.
 *
 * Cost: every method makes exactly two passes over the K x P gradients: the
 * Gram matrix (K(K+1)/2 dot products per element), then out = sum_k w_k g_k.
 * Everything else is K x K math (src/balance/linalg.h). No P-sized
 * temporaries. Both passes are OpenMP-parallel and bitwise deterministic for
 * any thread count. */
#ifndef MTFT_GRADBAL_H
#define MTFT_GRADBAL_H

#include <stdint.h>

#include "mtft/rng.h"

/* K x K Gram matrix G[i*K+j] = <g_i, g_j> in double (1 <= K <= 64, else G is
 * left untouched). P is cut into fixed blocks (chosen from P and K only), each
 * block's partial sums are computed in parallel, and the partials are added
 * in block order: the same bits with any number of threads. */
void mtft__gram(int K, int64_t P, const float *const *g, double *G);

/* Min-norm point in the convex hull of vectors given by their Gram matrix:
 * minimise w^T G w subject to w >= 0, sum w = 1. K == 2: Sener & Koltun's
 * closed form (mtft__min_norm_2). K >= 3: Wolfe's (1976) min-norm-point
 * active-set algorithm, which is exact after finitely many steps, where
 * Sener & Koltun's Frank-Wolfe (kept as mtft__min_norm_fw in linalg.h)
 * converges at O(1/t). max_iter <= 0: 50 K + 100 major cycles; tol <= 0:
 * stop when |x|^2 - min_j <x, x_j> <= 1e-13 max_i G_ii. w: K doubles out. */
int mtft__min_norm_simplex(int K, const double *G, double *w, int max_iter, double tol);

/* PCGrad (Yu et al. 2020): for each task i, in a random order of the other
 * tasks j (drawn from rng; rng NULL: ascending order), if <g_i', g_j> < 0
 * project g_i' -= <g_i',g_j>/|g_j|^2 g_j; out = sum_i g_i' (the paper's sum;
 * the balancer may scale by 1/K). Every g_i' stays in span{g_j}, so the
 * projections run on coefficient vectors through the Gram matrix (O(K^3))
 * and w_out gets the effective coefficients: out = sum_k w_out[k] g_k (all 1
 * when nothing conflicts). A zero g_j is never projected on. */
int mtft__pcgrad(int K, int64_t P, const float *const *g, mtft_rng *rng, float *out, float *w_out);

/* CAGrad (Liu et al. 2021), c in [0,1) (paper default 0.5): g0 = mean g_i;
 * w = argmin_{w in simplex} g_w^T g0 + sqrt(phi) |g_w|, phi = c^2 |g0|^2;
 * out = g0 + sqrt(phi)/|g_w| * g_w (the paper's d), divided by (1 + c^2) when
 * rescale = 1 or by (1 + c) when rescale = 2, as the authors' code does
 * (rescale 0: not divided). When g_w = 0 (0 in the hull), out = g0. The
 * subproblem is solved by mtft__cagrad_solve (linalg.h): exact bisection for
 * K == 2, accelerated projected gradient to a 1e-12 duality gap for K >= 3.
 * c outside [0, 1): MTFT_ERANGE. */
int mtft__cagrad(int K, int64_t P, const float *const *g, float c, int rescale, float *out, float *w_out);

/* IMTL-G (Liu et al. 2021): D = [g_1 - g_k; ...], U = [u_1 - u_k; ...] with
 * u_i = g_i/|g_i|; alpha_{2..K} = g_1 U^T (D U^T)^{-1}, alpha_1 = 1 - sum;
 * out = sum alpha_i g_i, so that out has equal projections on every u_i and
 * sum alpha = 1. Zero gradients get alpha 0 and are left out of the system.
 * When D U^T is singular (linearly dependent gradients, e.g. two identical
 * ones) the regularised least-squares solution is used instead. */
int mtft__imtl_g(int K, int64_t P, const float *const *g, float *out, float *w_out);

/* MGDA-UB (Sener & Koltun 2018): w = min-norm point of the simplex hull of
 * the gradients (normalised by `norm`: 0 none, 1 L2, 2 loss, 3 loss+ as in
 * the authors' code; losses may be NULL when norm < 2, else they must be > 0);
 * out = sum w_i g_i with the raw g_i, as in Sener & Koltun's training code
 * (LibMTL combines the normalised ones instead). MGDA-UB's "upper bound" is
 * the caller's choice of g: gradients with respect to the shared
 * representation instead of the shared parameters. */
int mtft__mgda(int K, int64_t P, const float *const *g, const float *losses, int norm, float *out, float *w_out);

/* Aligned-MTL (Senushkin et al. 2023): G = [g_i] (P x K), M = G^T G = V L V^T;
 * B = sqrt(l_min) V L^{-1/2} V^T; out = G B w with w = 1/K (uniform pre-weights,
 * or `pre` K floats when not NULL; LibMTL uses all ones, i.e. K times ours).
 * Eigenvalues at or below K * FLT_EPSILON * l_max are dropped (the authors'
 * rank tolerance) and l_min is the smallest one kept; all zero: out = 0.
 * The eigendecomposition is mtft__sym_eig (Jacobi). */
int mtft__aligned_mtl(int K, int64_t P, const float *const *g, const float *pre, float *out, float *w_out);

/* Nash-MTL (Navon et al. 2022): find alpha > 0 with (G^T G) alpha = 1/alpha
 * (elementwise); out = sum alpha_i g_i. The paper solves a sequence of
 * convex problems with cvxpy; here alpha is the minimiser of the strictly
 * convex 1/2 a^T M a - sum log a_i, found by damped Newton
 * (mtft__nash_solve, linalg.h), to a fixed-point residual
 * max_i |alpha_i (M alpha)_i - 1| <= 1e-6 (typically ~1e-15). This is the
 * paper's alpha for the true M (the authors' code normalises M by its
 * Frobenius norm first, which scales their alpha by sqrt(|M|_F)). Warm start
 * from alpha_prev (K floats, updated in place on success; any entry <= 0
 * means start fresh; NULL: fresh, nothing stored). max_iter caps the Newton
 * steps but at least 50 are allowed (random K = 2..16 cases converged in
 * 5-16 steps from a fresh start; each step is O(K^3)). Tasks with a zero
 * gradient get alpha 0. MTFT_ENUMERIC when no solution exists (some
 * non-negative combination of the gradients is zero, e.g. g2 = -g1); out and
 * alpha_prev are then left unchanged. */
int mtft__nash_mtl(int K, int64_t P, const float *const *g, float *alpha_prev, int max_iter, float *out,
                   float *w_out);

/* GradNorm (Chen et al. 2018), one update of the task weights w (K floats, in
 * place; they are renormalised to sum to K). gnorm[i] = |grad of w_i L_i wrt
 * the chosen shared layer| = w_i |g_i|; r_i = (L_i/L_i(0)) / mean_j(L_j/L_j(0));
 * target_i = mean(gnorm) * r_i^alpha (a constant); L_grad = sum |gnorm_i - target_i|;
 * w_i -= lr * dL_grad/dw_i. alpha default 1.5, lr default 0.025 (paper).
 * g are the per-task gradients of the unweighted losses. out = sum w_i g_i
 * with the weights before the update (the step uses this step's weights).
 * Only the K norms are computed (one pass), not the whole Gram matrix. The
 * updated weights are floored at 1e-6 before renormalising, so that a large
 * lr cannot make one negative. losses must be >= 0, init_losses > 0. */
int mtft__gradnorm(int K, int64_t P, const float *const *g, const float *losses, const float *init_losses,
                   float alpha, float lr, float *w, float *out);

#endif
