/* Internal: small dense solvers for the gradient balancers (mtft__sym_eig also
 * serves merge's truncated SVD, src/merge/svd.c). Every matrix here
 * is K x K with K the number of tasks (a handful), row-major doubles. None of
 * them needs LAPACK; all allocate only O(K^2) scratch (mtft__malloc) and
 * return MTFT_OK or a negative mtft_status with the last error set.
 *
 *   mtft__sym_eig         cyclic Jacobi eigendecomposition of a symmetric matrix
 *   mtft__cholesky        A = L L^T in place, and the matching solve
 *   mtft__lu_solve        A x = b by LU with partial pivoting
 *   mtft__simplex_project Euclidean projection onto {w >= 0, sum w = 1}
 *   mtft__min_norm_2      exact min-norm point of a segment (Sener & Koltun)
 *   mtft__min_norm_fw     Sener & Koltun's Frank-Wolfe MinNormSolver
 *   mtft__cagrad_solve    CAGrad's simplex subproblem
 *   mtft__nash_solve      Nash-MTL's fixed point M a = 1/a
 * (mtft__min_norm_simplex, the exact min-norm QP, is declared in gradbal.h.) */
#ifndef MTFT_BALANCE_LINALG_H
#define MTFT_BALANCE_LINALG_H

/* Symmetric eigendecomposition A = V diag(evals) V^T by cyclic Jacobi
 * rotations (rotation angles as in Golub & Van Loan 8.5.2), until the
 * off-diagonal mass is below 1e-15 of the total or max_sweeps (<= 0: 100)
 * sweeps. A is n x n symmetric, read only; only its upper triangle is read.
 * evals: n doubles, sorted descending; V: n x n, column j is the unit
 * eigenvector of evals[j] (V[i*n + j]). MTFT_ENUMERIC if A has a non-finite
 * entry or the sweeps did not converge. */
int mtft__sym_eig(int n, const double *A, double *evals, double *V, int max_sweeps);

/* In-place Cholesky A = L L^T of a symmetric positive definite n x n matrix;
 * the lower triangle of A becomes L (the upper is left as is). MTFT_ENUMERIC
 * when a pivot is <= 1e-14 times the largest diagonal entry (not positive
 * definite to working precision). */
int mtft__cholesky(int n, double *A);
/* Solve L L^T x = b with the factor from mtft__cholesky; b is overwritten by x. */
void mtft__cholesky_solve(int n, const double *L, double *b);

/* Solve A x = b (A n x n, read only) by LU with partial pivoting. MTFT_ENUMERIC
 * when A is singular to working precision (a pivot <= 1e-13 times the largest
 * absolute entry of A). x may alias b. */
int mtft__lu_solve(int n, const double *A, const double *b, double *x);

/* Euclidean projection of v (n doubles) onto the probability simplex, in
 * place (sort-based, Duchi et al. 2008). */
void mtft__simplex_project(int n, double *v);

/* Min-norm point of the segment between two vectors given by their dot
 * products v1v1 = |v1|^2, v1v2, v2v2: returns gamma in [0, 1] so that
 * gamma v1 + (1 - gamma) v2 has the smallest norm (Sener & Koltun's
 * _min_norm_element_from2, with exact endpoints 1 and 0 where their code
 * uses 0.999 and 0.001). *cost (may be NULL) gets the squared norm. */
double mtft__min_norm_2(double v1v1, double v1v2, double v2v2, double *cost);

/* Sener & Koltun's Frank-Wolfe MinNormSolver on a Gram matrix: start from the
 * best pair, then move towards the vertex of smallest <x, g_t> with the exact
 * two-point line search, until the weights change by less than tol (<= 0:
 * 1e-5, the authors' STOP_CRIT) in L1 or max_iter (<= 0: 250, their MAX_ITER)
 * steps. Converges at O(1/t); kept as the reference method
 * (mtft__min_norm_simplex is exact and is what the balancers use). */
int mtft__min_norm_fw(int K, const double *G, double *w, int max_iter, double tol);

/* CAGrad's subproblem: w = argmin over the simplex of
 *   F(w) = w^T G g0w + c * sqrt(w^T G w),   g0w = (1/K, ..., 1/K),
 * i.e. g_w . g0 + c |g_w| with g_w = sum w_i g_i, g0 the mean gradient.
 * F is convex. K == 1: w = 1. K == 2: bisection on F'(x), which is monotone,
 * to machine precision. K >= 3: accelerated projected gradient (FISTA with
 * backtracking and restarts) on the smoothed F (sqrt(q + 1e-20 s), s the mean
 * diagonal), stopped when the Frank-Wolfe duality gap, an upper bound on
 * F(w) - min F, is below tol (<= 0: 1e-12) times s, or after max_iter (<= 0:
 * 20000) steps. w: K doubles out. Measured on random K = 3..16 problems: the
 * gap target is met within the default steps unless gradient norms differ by
 * about 1e3 or more (Gram entries by 1e6), where F(w) - min F stayed below
 * 2e-7 s (0.015 s per solve). */
int mtft__cagrad_solve(int K, const double *G, double c, double *w, int max_iter, double tol);

/* Nash-MTL's bargaining solution: alpha > 0 with (M alpha)_i = 1/alpha_i for
 * every i, M = G^T G (K x K Gram matrix, positive semidefinite).
 *
 * Method: those equations say that the gradient of the strictly convex
 *   Phi(a) = 1/2 a^T M a - sum_i log a_i       (a > 0)
 * is zero, so alpha is Phi's unique minimiser. We minimise Phi by Newton's
 * method with the Hessian M + diag(1/a^2) (Cholesky), damped as for
 * self-concordant functions (step 1/(1 + lambda) while the Newton decrement
 * lambda > 1/4, which keeps a > 0), plus a fraction-to-boundary safeguard.
 * M is first scaled to unit diagonal, Mn = D^-1 M D^-1 with D = diag(|g_i|)
 * (then b = D alpha solves Mn b = 1/b: the problem is invariant under this
 * scaling, so disparate gradient norms cost nothing), and a ridge of 1e-10 is
 * added to Mn so that a minimiser always exists (without it, gradients with a
 * zero non-negative combination, e.g. g2 = -g1, have none).
 * Rows with a zero diagonal (zero gradients) cannot satisfy the equation; the
 * caller removes them.
 *
 * alpha: K doubles, in: the start (all > 0), or any <= 0 entry to start from
 * 1/sqrt(M_ii); out: the solution. max_iter <= 0: 100. *residual (may be
 * NULL) gets max_i |alpha_i (M alpha)_i - 1|, the relative fixed-point
 * residual (with the true M, no ridge). Returns MTFT_ENUMERIC if it did not
 * reach a residual of 1e-6 (alpha then holds the last iterate, finite). */
int mtft__nash_solve(int K, const double *M, double *alpha, int max_iter, double *residual);

#endif
