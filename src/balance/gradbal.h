/* Internal: gradient-level balancing methods as pure functions on per-task
 * gradient vectors of the shared trainable parameters. The public balancer
 * object (include/mtft/balance.h, src/balance/balance.c) owns state and
 * options and calls these. No tensors: flat float vectors only.
 *
 * Common conventions:
 *   K        number of tasks present this step (callers compact away tasks
 *            whose mask is 0 before calling), K >= 1
 *   P        length of each gradient vector
 *   g[k]     task k's gradient, P floats (read only)
 *   out      P floats: the combined update direction (overwritten)
 *   w_out    K floats or NULL: the effective per-task weights, defined so
 *            that out = sum_k w_out[k] * g[k] where the method is a linear
 *            combination (PCGrad reports 1 per task; CAGrad reports the
 *            weights of the g0 + ... combination)
 * Sums and dot products accumulate in double. Each returns MTFT_OK or a
 * negative mtft_status with the last error set. */
#ifndef MTFT_GRADBAL_H
#define MTFT_GRADBAL_H

#include <stdint.h>

#include "mtft/rng.h"

/* K x K Gram matrix G[i*K+j] = <g_i, g_j> in double. */
void mtft__gram(int K, int64_t P, const float *const *g, double *G);

/* Min-norm point in the convex hull of vectors given by their Gram matrix:
 * minimise w^T G w subject to w >= 0, sum w = 1 (Frank-Wolfe as in Sener &
 * Koltun, then exact for K == 2). w: K doubles out. */
int mtft__min_norm_simplex(int K, const double *G, double *w, int max_iter, double tol);

/* PCGrad (Yu et al. 2020): for each task i, in a random order of the other
 * tasks j (drawn from rng), if <g_i', g_j> < 0 project g_i' -= <g_i',g_j>/|g_j|^2 g_j;
 * out = sum_i g_i' (the paper's sum; the balancer may scale by 1/K). */
int mtft__pcgrad(int K, int64_t P, const float *const *g, mtft_rng *rng, float *out, float *w_out);

/* CAGrad (Liu et al. 2021), c in [0,1) (paper default 0.5): g0 = mean g_i;
 * w = argmin_{w in simplex} g_w^T g0 + sqrt(phi) |g_w|, phi = c^2 |g0|^2;
 * out = g0 + sqrt(phi)/|g_w| * g_w (the paper's d; optionally / (1 + c^2) when
 * rescale = 1, as the authors' code does). */
int mtft__cagrad(int K, int64_t P, const float *const *g, float c, int rescale, float *out, float *w_out);

/* IMTL-G (Liu et al. 2021): D = [g_1 - g_k; ...], U = [u_1 - u_k; ...] with
 * u_i = g_i/|g_i|; alpha_{2..K} = g_1 U^T (D U^T)^{-1}, alpha_1 = 1 - sum;
 * out = sum alpha_i g_i. */
int mtft__imtl_g(int K, int64_t P, const float *const *g, float *out, float *w_out);

/* MGDA-UB (Sener & Koltun 2018): w = min-norm point of the simplex hull of
 * the gradients (normalised by `norm`: 0 none, 1 L2, 2 loss, 3 loss+ as in
 * the authors' code; losses may be NULL when norm < 2); out = sum w_i g_i. */
int mtft__mgda(int K, int64_t P, const float *const *g, const float *losses, int norm, float *out, float *w_out);

/* Aligned-MTL (Senushkin et al. 2023): G = [g_i] (P x K), M = G^T G = V L V^T;
 * B = sqrt(l_min) V L^{-1/2} V^T; out = G B w with w = 1/K (uniform pre-weights,
 * or `pre` K floats when not NULL). Eigenvalues below eps*l_max are dropped. */
int mtft__aligned_mtl(int K, int64_t P, const float *const *g, const float *pre, float *out, float *w_out);

/* Nash-MTL (Navon et al. 2022): find alpha > 0 with (G^T G) alpha = 1/alpha
 * (elementwise), solved by the paper's sequence of convex problems
 * (max_iter iterations, default 20) warm-started from alpha_prev (K floats,
 * updated in place; all <= 0 means start fresh); out = sum alpha_i g_i. */
int mtft__nash_mtl(int K, int64_t P, const float *const *g, float *alpha_prev, int max_iter, float *out,
                   float *w_out);

/* GradNorm (Chen et al. 2018), one update of the task weights w (K floats, in
 * place; they are renormalised to sum to K). gnorm[i] = |grad of w_i L_i wrt
 * the chosen shared layer| = w_i |g_i|; r_i = (L_i/L_i(0)) / mean_j(L_j/L_j(0));
 * target_i = mean(gnorm) * r_i^alpha (a constant); L_grad = sum |gnorm_i - target_i|;
 * w_i -= lr * dL_grad/dw_i. alpha default 1.5, lr default 0.025 (paper).
 * g are the per-task gradients of the unweighted losses. out = sum w_i g_i
 * with the weights before the update (the step uses this step's weights). */
int mtft__gradnorm(int K, int64_t P, const float *const *g, const float *losses, const float *init_losses,
                   float alpha, float lr, float *w, float *out);

#endif
