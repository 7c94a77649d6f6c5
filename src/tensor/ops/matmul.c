/* Matrix products through cblas_sgemm: mtft_matmul, mtft_linear (x W^T + b,
 * PyTorch layout) and mtft_linear_t (x W + b, GPT-2 Conv1D layout).
 *
 * Layouts. The matrix part (last two dims) of an input may be row-major with
 * a leading dimension (a contiguous tensor, or a slice of rows/columns), or a
 * transposed view from mtft_transpose (unit stride on the row dim): the latter
 * is passed to BLAS with the transpose flag flipped, so no copy is made. Any
 * other strides (e.g. a view with no unit stride) fail with a message asking
 * for mtft_contiguous. Batch dims may have any strides. Gradients are always
 * contiguous in logical order.
 *
 * Shapes: op(A) [M, K], op(B) [K, N], C [M, N]. Backward (accumulating, beta=1):
 *   d op(A) = dC op(B)^T      d op(B) = op(A)^T dC
 * The bias gradient of linear is a column sum of dY [N, out], parallel over
 * column blocks so each thread owns the outputs it writes (deterministic).
 *
 * Split groups (mtft_param_group_set_split): when the weight (and bias) of
 * linear/linear_t, or the shared 2-D b of a matmul whose a folds into rows,
 * belongs to a split group, its gradient is computed per part of the graph's
 * row partition, dW_k = X_k^T dY_k over the part's row range, into the part's
 * block (same FLOPs as one dW). dX is unchanged. */
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../blas.h"
#include "../tensor_impl.h"
#include "ops_simd.h"

/* Storage of the matrix part of t (its last two dims, [rows, cols]).
 * flip = 0: element (i, j) at i*ld + j; flip = 1: at i + j*ld (a transposed
 * view). Returns 0 when the strides fit neither. */
static int mat_layout(const mtft_tensor *t, int *flip, int64_t *ld) {
    int r = t->ndim - 2, c = t->ndim - 1;
    int64_t nr = t->ne[r], nc = t->ne[c], sr = t->st[r], sc = t->st[c];
    if ((nc == 1 || sc == 1) && (nr == 1 || sr >= nc)) {
        *flip = 0;
        *ld = nr == 1 ? nc : sr;
        return 1;
    }
    if ((nr == 1 || sr == 1) && (nc == 1 || sc >= nr)) {
        *flip = 1;
        *ld = nc == 1 ? nr : sc;
        return 1;
    }
    return 0;
}

/* Can t be seen as one row-major matrix [rows(t), ne[last]] with leading
 * dimension *ld (its leading dims fold into the rows)? */
static int fold_rows(const mtft_tensor *t, int64_t *ld) {
    int nd = t->ndim;
    int64_t C = t->ne[nd - 1];
    if (C != 1 && t->st[nd - 1] != 1) return 0;
    if (nd == 1) {
        *ld = C;
        return 1;
    }
    int64_t l = t->ne[nd - 2] == 1 ? C : t->st[nd - 2];
    if (l < C) return 0;
    int64_t expect = l * t->ne[nd - 2];
    for (int d = nd - 3; d >= 0; d--) {
        if (t->ne[d] != 1 && t->st[d] != expect) return 0;
        expect *= t->ne[d];
    }
    *ld = l;
    return 1;
}

/* Element offset of batch index bi over the leading n_batch dims of t. */
static int64_t batch_offset(const mtft_tensor *t, int n_batch, int64_t bi) {
    int64_t off = 0;
    for (int d = n_batch - 1; d >= 0; d--) {
        off += (bi % t->ne[d]) * t->st[d];
        bi /= t->ne[d];
    }
    return off;
}

/* d op(A) += dC op(B)^T. ta: A's logical transpose flag (dA is stored
 * contiguous [M, K], or [K, M] when ta). tbe: B's storage transpose flag. */
static int mm_grad_a(int ta, int tbe, int64_t M, int64_t N, int64_t K, const float *dC, const float *B,
                     int64_t ldb, float *dA) {
    if (!ta) return mtft__sgemm(0, !tbe, M, K, N, 1.0f, dC, N, B, ldb, 1.0f, dA, K);
    return mtft__sgemm(tbe, 1, K, M, N, 1.0f, B, ldb, dC, N, 1.0f, dA, M);
}

/* d op(B) += op(A)^T dC. tb: B's logical flag (dB stored [K, N], or [N, K]
 * when tb). tae: A's storage transpose flag. */
static int mm_grad_b(int tb, int tae, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *dC, float *dB) {
    if (!tb) return mtft__sgemm(!tae, 0, K, N, M, 1.0f, A, lda, dC, N, 1.0f, dB, N);
    return mtft__sgemm(1, tae, N, K, M, 1.0f, dC, N, A, lda, 1.0f, dB, K);
}

/* The sgemm wrapper already set the message: record the status only. */
static mtft_tensor *gemm_failed(mtft_graph *g, int rc) {
    if (g->status == MTFT_OK) g->status = rc;
    return NULL;
}

/* ---- matmul ------------------------------------------------------------- */

typedef struct mm_plan {
    int64_t M, N, K, nb; /* nb: batch count */
    int nbd;             /* batch dims */
    int shared;          /* b is 2-D and shared by all batches */
    int fold;            /* shared and a folds into one [nb*M, K] matrix */
    int fa, fb;          /* storage flips */
    int64_t lda, ldb, lda_fold;
} mm_plan;

static const char *tr(int t) { return t ? "^T" : ""; }

static int mm_plan_make(mtft_graph *g, const mtft_tensor *a, const mtft_tensor *b, int ta, int tb, mm_plan *p) {
    char sa[64], sb[64];
    mtft__shape_str(a, sa, sizeof sa);
    mtft__shape_str(b, sb, sizeof sb);
    memset(p, 0, sizeof *p);
    if (a->ndim < 2 || b->ndim < 2) {
        mtft__op_fail(g, MTFT_ESHAPE, "matmul: a %s and b %s: both need at least 2 dims", sa, sb);
        return 0;
    }
    p->nbd = a->ndim - 2;
    if (b->ndim == 2 && a->ndim > 2) {
        p->shared = 1;
    } else if (b->ndim != a->ndim) {
        mtft__op_fail(g, MTFT_ESHAPE, "matmul: a %s and b %s: b must have a's batch dims or be 2-D", sa, sb);
        return 0;
    } else {
        for (int d = 0; d < p->nbd; d++)
            if (a->ne[d] != b->ne[d]) {
                mtft__op_fail(g, MTFT_ESHAPE, "matmul: a %s and b %s: batch dim %d differs (%lld vs %lld)", sa, sb,
                              d, (long long)a->ne[d], (long long)b->ne[d]);
                return 0;
            }
    }
    int64_t ar = a->ne[a->ndim - 2], ac = a->ne[a->ndim - 1];
    int64_t br = b->ne[b->ndim - 2], bc = b->ne[b->ndim - 1];
    p->M = ta ? ac : ar;
    p->K = ta ? ar : ac;
    int64_t Kb = tb ? bc : br;
    p->N = tb ? br : bc;
    if (Kb != p->K) {
        mtft__op_fail(g, MTFT_ESHAPE, "matmul: a%s %s times b%s %s: inner dims %lld and %lld differ", tr(ta), sa,
                      tr(tb), sb, (long long)p->K, (long long)Kb);
        return 0;
    }
    if (!mat_layout(a, &p->fa, &p->lda) || !mat_layout(b, &p->fb, &p->ldb)) {
        mtft__op_fail(g, MTFT_EINVAL,
                      "matmul: a %s or b %s has strides BLAS cannot use (neither row nor column unit stride); "
                      "use mtft_contiguous",
                      sa, sb);
        return 0;
    }
    p->nb = 1;
    for (int d = 0; d < p->nbd; d++) p->nb *= a->ne[d];
    p->fold = p->shared && !ta && fold_rows(a, &p->lda_fold) && !p->fa;
    return 1;
}

/* d op(B) per part of the row partition, over rows of A stored row-major
 * (ld lda): B's gradient goes to each part's block. */
static int mm_grad_b_split(mtft_graph *g, mtft_tensor *b, int tb, int64_t rows, int64_t N, int64_t K,
                           const float *A, int64_t lda, const float *dC) {
    for (int k = 0; k < g->n_parts || k == 0; k++) {
        int64_t r0, r1;
        int rc = mtft__part_rows(g, b, rows, k, &r0, &r1);
        if (rc < 0) return rc;
        float *dBk = mtft__split_grad(g, b, k);
        if (!dBk) return g->status;
        if (r1 > r0) rc = mm_grad_b(tb, 0, r1 - r0, N, K, A + r0 * lda, lda, dC + r0 * N, dBk);
        if (rc < 0) return rc;
    }
    return MTFT_OK;
}

static int matmul_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *a = n->in[0], *b = n->in[1];
    int ta = (int)n->i[0], tb = (int)n->i[1];
    mm_plan p;
    if (!mm_plan_make(g, a, b, ta, tb, &p)) return mtft_error_last()->code;
    const float *dC = n->out->grad;
    int tae = ta ^ p.fa, tbe = tb ^ p.fb;
    int rc = MTFT_OK;
    if (mtft__is_split(b)) {
        /* rows of A: a folds into [nb*M, K] (or is 2-D), row-major */
        int64_t lda = p.fold ? p.lda_fold : p.lda;
        if (!(p.fold || (p.nbd == 0 && !ta && !p.fa))) {
            char sa[64];
            mtft__op_fail(g, MTFT_EUNSUPPORTED, "matmul: b '%s' is split by rows, which needs a shared 2-D b and "
                          "an a %s whose rows fold into one row-major matrix", b->name,
                          mtft__shape_str(a, sa, sizeof sa));
            return g->status;
        }
        rc = mm_grad_b_split(g, b, tb, p.nb * p.M, p.N, p.K, a->data, lda, dC);
        float *dA0 = mtft__grad(g, a);
        if (rc == MTFT_OK && dA0) rc = mm_grad_a(0, tbe, p.nb * p.M, p.N, p.K, dC, b->data, p.ldb, dA0);
        return rc;
    }
    float *dA = mtft__grad(g, a), *dB = mtft__grad(g, b);
    if (p.fold) {
        if (dA) rc = mm_grad_a(0, tbe, p.nb * p.M, p.N, p.K, dC, b->data, p.ldb, dA);
        if (rc == MTFT_OK && dB) rc = mm_grad_b(tb, 0, p.nb * p.M, p.N, p.K, a->data, p.lda_fold, dC, dB);
        return rc;
    }
    int64_t szA = p.M * p.K, szB = p.K * p.N, szC = p.M * p.N;
    for (int64_t bi = 0; bi < p.nb && rc == MTFT_OK; bi++) {
        const float *A = a->data + batch_offset(a, p.nbd, bi);
        const float *B = b->data + (p.shared ? 0 : batch_offset(b, p.nbd, bi));
        const float *dCb = dC + bi * szC;
        if (dA) rc = mm_grad_a(ta, tbe, p.M, p.N, p.K, dCb, B, p.ldb, dA + bi * szA);
        if (rc == MTFT_OK && dB) rc = mm_grad_b(tb, tae, p.M, p.N, p.K, A, p.lda, dCb, dB + (p.shared ? 0 : bi * szB));
    }
    return rc;
}
static const mtft_op_def matmul_op = {"matmul", matmul_backward};

mtft_tensor *mtft_matmul(mtft_graph *g, mtft_tensor *a, mtft_tensor *b, int trans_a, int trans_b) {
    if (!mtft__op_begin(g, 2, a, b)) return NULL;
    int ta = trans_a ? 1 : 0, tb = trans_b ? 1 : 0;
    mm_plan p;
    if (!mm_plan_make(g, a, b, ta, tb, &p)) return NULL;
    int64_t shape[MTFT_MAX_DIMS];
    for (int d = 0; d < p.nbd; d++) shape[d] = a->ne[d];
    shape[p.nbd] = p.M;
    shape[p.nbd + 1] = p.N;
    mtft_tensor *y = mtft__new(g, a->ndim, shape);
    if (!y) return NULL;
    int tae = ta ^ p.fa, tbe = tb ^ p.fb;
    int rc = MTFT_OK;
    if (p.fold) {
        rc = mtft__sgemm(0, tbe, p.nb * p.M, p.N, p.K, 1.0f, a->data, p.lda_fold, b->data, p.ldb, 0.0f, y->data, p.N);
    } else {
        for (int64_t bi = 0; bi < p.nb && rc == MTFT_OK; bi++) {
            const float *A = a->data + batch_offset(a, p.nbd, bi);
            const float *B = b->data + (p.shared ? 0 : batch_offset(b, p.nbd, bi));
            rc = mtft__sgemm(tae, tbe, p.M, p.N, p.K, 1.0f, A, p.lda, B, p.ldb, 0.0f, y->data + bi * p.M * p.N, p.N);
        }
    }
    if (rc < 0) return gemm_failed(g, rc);
    mtft_node *n = mtft__record(g, &matmul_op, y, 2, a, b);
    if (n) {
        n->i[0] = ta;
        n->i[1] = tb;
    }
    return y;
}

/* ---- linear ------------------------------------------------------------- */

/* dX and dW of a linear are independent GEMMs of equal FLOPs. With Debian's
 * OpenMP build of OpenBLAS (the one mtft links by default), a GEMM called
 * inside an OpenMP parallel region runs on its calling thread alone, so on
 * 2 threads the two can run whole, one per thread, with no thread waiting
 * for the other inside a GEMM (each element is computed by the same kernel
 * over the same K order as in a plain call). Measured on 2 shared, loaded
 * cores: a small GPT-2 step (C 256, 1024 tokens) 0.49 s -> 0.39 s, 8 of 8
 * interleaved rounds faster; at 124M shapes no gain (GEMMs of 2.4e9
 * multiply-adds and more keep OpenBLAS's own threading). Other BLAS builds
 * (pthread: it would start its own threads from each caller) or thread
 * counts: plain calls. */
#define PAIR_MAX_MNK 1.2e9
static int pair_grads(int64_t M, int64_t N, int64_t K) {
#ifdef _OPENMP
    return mtft__blas_nests_serially() && !omp_in_parallel() && omp_get_max_threads() == 2 &&
           (double)M * (double)N * (double)K <= PAIR_MAX_MNK;
#else
    (void)M, (void)N, (void)K;
    return 0;
#endif
}

/* db[j] += sum_r dy[r*C + j], parallel over column blocks. */
MTFT_SIMD_CLONES static void col_sum_acc(float *db, const float *dy, int64_t R, int64_t C) {
    enum { CB = 64 };
    int64_t nblk = (C + CB - 1) / CB;
#pragma omp parallel for if (R * C > 32768)
    for (int64_t bk = 0; bk < nblk; bk++) {
        int64_t j0 = bk * CB, j1 = j0 + CB < C ? j0 + CB : C;
        float acc[CB];
        for (int64_t j = j0; j < j1; j++) acc[j - j0] = 0.0f;
        for (int64_t r = 0; r < R; r++) {
            const float *d = dy + r * C;
            for (int64_t j = j0; j < j1; j++) acc[j - j0] += d[j];
        }
        for (int64_t j = j0; j < j1; j++) db[j] += acc[j - j0];
    }
}

typedef struct lin_plan {
    int64_t N, in, out, ldx, ldw;
    int fw; /* w storage flip */
} lin_plan;

/* wt: 1 for linear (w [out, in], used transposed), 0 for linear_t (w [in, out]). */
static int lin_plan_make(mtft_graph *g, const char *name, const mtft_tensor *x, const mtft_tensor *w,
                         const mtft_tensor *b, int wt, lin_plan *p) {
    char sx[64], sw[64], sb[64];
    mtft__shape_str(x, sx, sizeof sx);
    mtft__shape_str(w, sw, sizeof sw);
    if (w->ndim != 2) {
        mtft__op_fail(g, MTFT_ESHAPE, "%s: weight %s must be 2-D (%s)", name, sw, wt ? "[out, in]" : "[in, out]");
        return 0;
    }
    p->in = x->ne[x->ndim - 1];
    int64_t w_in = wt ? w->ne[1] : w->ne[0];
    p->out = wt ? w->ne[0] : w->ne[1];
    if (w_in != p->in) {
        mtft__op_fail(g, MTFT_ESHAPE, "%s: x %s has %lld input features but weight %s %s expects %lld", name, sx,
                      (long long)p->in, sw, wt ? "[out, in]" : "[in, out]", (long long)w_in);
        return 0;
    }
    if (b && (b->ndim != 1 || b->ne[0] != p->out)) {
        mtft__op_fail(g, MTFT_ESHAPE, "%s: bias %s does not match %lld output features of weight %s", name,
                      mtft__shape_str(b, sb, sizeof sb), (long long)p->out, sw);
        return 0;
    }
    if (b && !mtft__contig(b)) {
        mtft__op_fail(g, MTFT_EINVAL, "%s: bias must be contiguous (use mtft_contiguous)", name);
        return 0;
    }
    if (!fold_rows(x, &p->ldx)) {
        mtft__op_fail(g, MTFT_EINVAL, "%s: x %s is a strided view whose rows do not fold into one matrix; "
                                      "use mtft_contiguous", name, sx);
        return 0;
    }
    if (!mat_layout(w, &p->fw, &p->ldw)) {
        mtft__op_fail(g, MTFT_EINVAL, "%s: weight %s has strides BLAS cannot use; use mtft_contiguous", name, sw);
        return 0;
    }
    p->N = mtft__rows(x);
    return 1;
}

static int linear_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int wt = (int)n->i[0];
    lin_plan p;
    if (!lin_plan_make(g, wt ? "linear" : "linear_t", x, w, b, wt, &p)) return mtft_error_last()->code;
    const float *dy = n->out->grad;
    int split_w = mtft__is_split(w), split_b = mtft__is_split(b);
    float *dx = mtft__grad(g, x), *dw = split_w ? NULL : mtft__grad(g, w), *db = split_b ? NULL : mtft__grad(g, b);
    int tbe = wt ^ p.fw, rc = MTFT_OK;
    /* A = x [N, in] (M = N, K = in), B = w with logical flag wt, C = y [N, out] */
    if (dx && dw && pair_grads(p.N, p.out, p.in)) {
        int rc1 = MTFT_OK, rc2 = MTFT_OK;
#pragma omp parallel sections num_threads(2)
        {
#pragma omp section
            rc1 = mm_grad_a(0, tbe, p.N, p.out, p.in, dy, w->data, p.ldw, dx);
#pragma omp section
            rc2 = mm_grad_b(wt, 0, p.N, p.out, p.in, x->data, p.ldx, dy, dw);
        }
        rc = rc1 < 0 ? rc1 : rc2;
        dx = dw = NULL; /* done */
    }
    if (dx) rc = mm_grad_a(0, tbe, p.N, p.out, p.in, dy, w->data, p.ldw, dx);
    if (rc == MTFT_OK && dw) rc = mm_grad_b(wt, 0, p.N, p.out, p.in, x->data, p.ldx, dy, dw);
    if (rc == MTFT_OK && db) col_sum_acc(db, dy, p.N, p.out);
    if (rc == MTFT_OK && split_w) rc = mm_grad_b_split(g, w, wt, p.N, p.out, p.in, x->data, p.ldx, dy);
    for (int k = 0; rc == MTFT_OK && split_b && k < g->n_parts; k++) {
        int64_t r0, r1;
        rc = mtft__part_rows(g, b, p.N, k, &r0, &r1);
        float *dbk = rc == MTFT_OK ? mtft__split_grad(g, b, k) : NULL;
        if (rc == MTFT_OK && !dbk) rc = g->status;
        if (rc == MTFT_OK) col_sum_acc(dbk, dy + r0 * p.out, r1 - r0, p.out);
    }
    if (rc == MTFT_OK && split_b && g->n_parts == 0) {
        int64_t r0, r1;
        rc = mtft__part_rows(g, b, p.N, 0, &r0, &r1); /* raises the missing-partition error */
    }
    return rc;
}
static const mtft_op_def linear_op = {"linear", linear_backward};
static const mtft_op_def linear_t_op = {"linear_t", linear_backward};

static mtft_tensor *linear_impl(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b, int wt) {
    if (!mtft__op_begin(g, 2, x, w)) return NULL;
    const mtft_op_def *op = wt ? &linear_op : &linear_t_op;
    lin_plan p;
    if (!lin_plan_make(g, op->name, x, w, b, wt, &p)) return NULL;
    int64_t shape[MTFT_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->ne[d];
    shape[x->ndim - 1] = p.out;
    mtft_tensor *y = mtft__new(g, x->ndim, shape);
    if (!y) return NULL;
    float beta = 0.0f;
    if (b) {
        const float *bd = b->data;
        float *yd = y->data;
        int64_t N = p.N, O = p.out;
#pragma omp parallel for if (N * O > 32768)
        for (int64_t r = 0; r < N; r++) memcpy(yd + r * O, bd, (size_t)O * sizeof(float));
        beta = 1.0f;
    }
    int rc = mtft__sgemm(0, wt ^ p.fw, p.N, p.out, p.in, 1.0f, x->data, p.ldx, w->data, p.ldw, beta, y->data, p.out);
    if (rc < 0) return gemm_failed(g, rc);
    mtft_node *n = mtft__record(g, op, y, 3, x, w, b);
    if (n) n->i[0] = wt;
    return y;
}

mtft_tensor *mtft_linear(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b) {
    return linear_impl(g, x, w, b, 1);
}
mtft_tensor *mtft_linear_t(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b) {
    return linear_impl(g, x, w, b, 0);
}
