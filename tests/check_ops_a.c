/* ctest-labels: grad */
/* ctest-timeout: 600 */
/* Ops A: matmul (every transpose form, batched, shared b, strided views),
 * linear, linear_t, embedding, layernorm, rmsnorm, activations, swiglu and
 * the elementwise ops add/sub/mul/scale/bias.
 *
 * For each op: (1) the forward against naive loops in double written here,
 * (2) central-difference gradient checks (mtft_gradcheck) of every
 * differentiable input, (3) a diamond graph, (4) error paths, (5) no
 * allocation in a repeated training step, (6) parameter groups (frozen and
 * trainable). Tolerances are stated at each check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "mtft_test.h"
#include "tensor/blas.h"
#include "tensor/tensor_impl.h"

/* ---- helpers ----------------------------------------------------------- */

static mtft_graph *gnew(size_t arena) {
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = arena ? arena : (size_t)1 << 20;
    ck_assert_int_eq(mtft_graph_new(&g, &o), MTFT_OK);
    return g;
}

static int64_t prod(int nd, const int64_t *sh) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    return n;
}

/* A graph tensor filled with uniform values in [lo, hi). */
static mtft_tensor *rnd(mtft_graph *g, int nd, const int64_t *sh, uint64_t seed, float lo, float hi) {
    mtft_tensor *t = mtft_new(g, nd, sh);
    ck_assert_ptr_nonnull(t);
    mtft_test_fill(mtft_tensor_data(t), prod(nd, sh), seed, lo, hi);
    return t;
}

static float *fbuf(int64_t n, uint64_t seed, float lo, float hi) {
    float *p = malloc((size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(p);
    mtft_test_fill(p, n, seed, lo, hi);
    return p;
}

/* the message of the last error contains s */
static void assert_msg_has(const char *s) {
    const char *m = mtft_error_last()->message;
    ck_assert_msg(strstr(m, s) != NULL, "error message '%s' does not contain '%s'", m, s);
}

static void fill_input(mtft_gradcheck_input *in, int nd, const int64_t *sh, float *data, int needs) {
    memset(in, 0, sizeof *in);
    in->ndim = nd;
    for (int i = 0; i < nd; i++) in->shape[i] = sh[i];
    in->data = data;
    in->needs_grad = needs;
}

/* naive batched matmul in double: a [nb, (ta ? K,M : M,K)], b likewise or shared */
static void ref_matmul(const float *a, const float *b, float *c, int64_t nb, int shared, int64_t M, int64_t N,
                       int64_t K, int ta, int tb) {
    for (int64_t bi = 0; bi < nb; bi++) {
        const float *A = a + bi * M * K, *B = b + (shared ? 0 : bi * K * N);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) {
                    double av = ta ? A[k * M + i] : A[i * K + k];
                    double bv = tb ? B[j * K + k] : B[k * N + j];
                    s += av * bv;
                }
                c[bi * M * N + i * N + j] = (float)s;
            }
    }
}

/* ---- the sgemm wrapper ----------------------------------------------------- */

/* Every trans form with padded leading dims and alpha/beta against naive
 * loops; K = 0 scales C by beta; sizes past BLAS's int fail with ERANGE. */
START_TEST(test_ops_a_sgemm_wrapper) {
    const int64_t M = 3, N = 4, K = 5, pad = 2;
    float A[64], B[64], C[64], R[64];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
            mtft_test_fill(A, 64, 1500, -1, 1);
            mtft_test_fill(B, 64, 1501, -1, 1);
            mtft_test_fill(C, 64, 1502, -1, 1);
            memcpy(R, C, sizeof R);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                    R[i * ldc + j] = (float)(0.5 * s + 2.0 * C[i * ldc + j]);
                }
            ck_assert_int_eq(mtft__sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, C, ldc), MTFT_OK);
            /* padding columns untouched, the rest matches */
            mtft_assert_close(C, R, M * ldc, 1e-5f, 1e-5f, "sgemm wrapper");
        }
    mtft_test_fill(C, 64, 1503, -1, 1);
    memcpy(R, C, sizeof R);
    ck_assert_int_eq(mtft__sgemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 0.5f, C, 3), MTFT_OK);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(C[i], 0.5f * R[i]);
    ck_assert_float_eq(C[6], R[6]);
    ck_assert_int_eq(mtft__sgemm(0, 0, (int64_t)1 << 31, 1, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1), MTFT_ERANGE);
    assert_msg_has("exceed");
}
END_TEST

/* ---- matmul ------------------------------------------------------------- */

typedef struct mm_ctx {
    int ta, tb;
} mm_ctx;

static mtft_tensor *mm_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const mm_ctx *c = ctx;
    return mtft_matmul(g, in[0], in[1], c->ta, c->tb);
}

/* Forward against ref_matmul and gradcheck of both inputs. a has `nbd` batch
 * dims (0..2); b is batched like a or (shared) 2-D. */
static void matmul_case(int nbd, const int64_t *bdims, int shared, int64_t M, int64_t N, int64_t K, int ta, int tb,
                        uint64_t seed) {
    int64_t sa[4], sb[4];
    int nda = nbd + 2, ndb = shared ? 2 : nbd + 2;
    int64_t nb = 1;
    for (int d = 0; d < nbd; d++) {
        sa[d] = sb[d] = bdims[d];
        nb *= bdims[d];
    }
    sa[nbd] = ta ? K : M;
    sa[nbd + 1] = ta ? M : K;
    int o = shared ? 0 : nbd;
    sb[o] = tb ? N : K;
    sb[o + 1] = tb ? K : N;
    int64_t na = prod(nda, sa), nbn = prod(ndb, sb);
    float *ad = fbuf(na, seed, -1, 1), *bd = fbuf(nbn, seed + 1, -1, 1);
    float *ref = malloc((size_t)(nb * M * N) * sizeof(float));
    ref_matmul(ad, bd, ref, nb, shared, M, N, K, ta, tb);

    mtft_graph *g = gnew(0);
    mtft_tensor *a = mtft_from_data(g, nda, sa, ad), *b = mtft_from_data(g, ndb, sb, bd);
    mtft_tensor *c = mtft_matmul(g, a, b, ta, tb);
    ck_assert_msg(c != NULL, "matmul: %s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tensor_ndim(c), nda);
    for (int d = 0; d < nbd; d++) ck_assert_int_eq(mtft_tensor_dim(c, d), bdims[d]);
    ck_assert_int_eq(mtft_tensor_dim(c, -2), M);
    ck_assert_int_eq(mtft_tensor_dim(c, -1), N);
    char what[96];
    snprintf(what, sizeof what, "matmul fwd nbd=%d shared=%d ta=%d tb=%d", nbd, shared, ta, tb);
    /* float sums of K <= 8 products of values in [-1, 1]: 1e-5 is loose */
    mtft_assert_close(mtft_tensor_data(c), ref, nb * M * N, 1e-5f, 1e-5f, what);
    mtft_graph_free(g);

    /* gradcheck: matmul is bilinear, so central differences are exact up to
     * float rounding: eps 1e-2, atol 2e-3, rtol 1e-2 */
    mtft_gradcheck_input in[2];
    fill_input(&in[0], nda, sa, ad, 1);
    fill_input(&in[1], ndb, sb, bd, 1);
    mm_ctx ctx = {ta, tb};
    snprintf(what, sizeof what, "matmul grad nbd=%d shared=%d ta=%d tb=%d", nbd, shared, ta, tb);
    mtft_gradcheck_result r = mtft_gradcheck(what, mm_fn, &ctx, in, 2, 1e-2f, 2e-3f, 1e-2f, 0);
    ck_assert_int_eq(r.checked, na + nbn);
    free(ad);
    free(bd);
    free(ref);
}

START_TEST(test_ops_a_matmul_2d) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) matmul_case(0, NULL, 0, 3, 5, 4, ta, tb, 10 + (uint64_t)(2 * ta + tb));
}
END_TEST

START_TEST(test_ops_a_matmul_batched) {
    const int64_t b1[1] = {3}, b2[2] = {2, 3};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            matmul_case(1, b1, 0, 2, 3, 4, ta, tb, 20 + (uint64_t)(2 * ta + tb));
            matmul_case(2, b2, 0, 3, 2, 2, ta, tb, 30 + (uint64_t)(2 * ta + tb));
        }
}
END_TEST

START_TEST(test_ops_a_matmul_shared_b) {
    /* ta = 0 takes the one-GEMM folded path, ta = 1 the per-batch loop */
    const int64_t b1[1] = {3}, b2[2] = {2, 2};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            matmul_case(1, b1, 1, 2, 3, 4, ta, tb, 40 + (uint64_t)(2 * ta + tb));
            matmul_case(2, b2, 1, 3, 2, 3, ta, tb, 50 + (uint64_t)(2 * ta + tb));
        }
}
END_TEST

/* A transposed view of x's last two dims (what mtft_transpose returns). */
static mtft_tensor *tview(mtft_graph *g, mtft_tensor *x) {
    mtft_tensor *v = mtft__view(g, x);
    ck_assert_ptr_nonnull(v);
    int r = v->ndim - 2, c = v->ndim - 1;
    int64_t t = v->ne[r];
    v->ne[r] = v->ne[c];
    v->ne[c] = t;
    t = v->st[r];
    v->st[r] = v->st[c];
    v->st[c] = t;
    return v;
}

/* Transposed views as inputs: the result and the gradients (in logical
 * order on the view) equal those of the same product on contiguous copies. */
START_TEST(test_ops_a_matmul_strided_views) {
    const int64_t M = 3, K = 4, N = 5;
    for (int tb = 0; tb < 2; tb++) {
        /* one graph for the views, one for contiguous copies (a second
         * backward on the same graph would run the first node again) */
        mtft_graph *g = gnew(0), *g2 = gnew(0);
        /* storage of A^T: [K, M]; the view is A [M, K] */
        const int64_t sat[2] = {K, M}, sa[2] = {M, K};
        mtft_tensor *at = rnd(g, 2, sat, 1, -1, 1);
        mtft_tensor *av = tview(g, at);
        ck_assert(!mtft_tensor_is_contiguous(av));
        mtft_tensor *ac = mtft_new(g2, 2, sa);
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) mtft_tensor_data(ac)[i * K + k] = mtft_tensor_data(at)[k * M + i];
        /* B: a view too, of storage transposed relative to op(B) */
        const int64_t sbl[2] = {tb ? N : K, tb ? K : N}, sbs[2] = {sbl[1], sbl[0]};
        mtft_tensor *bs = rnd(g, 2, sbs, 2, -1, 1);
        mtft_tensor *bv = tview(g, bs);
        mtft_tensor *bc = mtft_new(g2, 2, sbl);
        for (int64_t i = 0; i < sbl[0]; i++)
            for (int64_t j = 0; j < sbl[1]; j++)
                mtft_tensor_data(bc)[i * sbl[1] + j] = mtft_tensor_data(bs)[j * sbl[0] + i];
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g, av, 1), 0);
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g, bv, 1), 0);
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g2, ac, 1), 0);
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g2, bc, 1), 0);
        mtft_tensor *yv = mtft_matmul(g, av, bv, 0, tb);
        mtft_tensor *yc = mtft_matmul(g2, ac, bc, 0, tb);
        ck_assert_msg(yv && yc, "%s", mtft_error_last()->message);
        float ref[15];
        ref_matmul(mtft_tensor_data(ac), mtft_tensor_data(bc), ref, 1, 0, M, N, K, 0, tb);
        mtft_assert_close(mtft_tensor_data(yv), ref, M * N, 1e-5f, 1e-5f, "matmul of views");
        float seed[15];
        mtft_test_fill(seed, M * N, 7, -1, 1);
        ck_assert_int_eq(mtft_graph_backward(g, yv, seed), 0);
        ck_assert_int_eq(mtft_graph_backward(g2, yc, seed), 0);
        mtft_assert_close(mtft_tensor_grad(av), mtft_tensor_grad(ac), M * K, 1e-5f, 1e-6f, "dA through view");
        mtft_assert_close(mtft_tensor_grad(bv), mtft_tensor_grad(bc), K * N, 1e-5f, 1e-6f, "dB through view");
        /* a view with no unit stride is refused with a hint */
        const int64_t swide[2] = {M, 2 * K};
        mtft_tensor *bad = mtft__view(g2, rnd(g2, 2, swide, 3, -1, 1));
        bad->ne[1] = K;
        bad->st[1] = 2; /* every other column: [M, K] with strides (2K, 2) */
        ck_assert_ptr_null(mtft_matmul(g2, bad, bc, 0, tb));
        assert_msg_has("mtft_contiguous");
        ck_assert_int_lt(mtft_graph_status(g2), 0);
        mtft_graph_free(g);
        mtft_graph_free(g2);
    }
}
END_TEST

/* ---- linear ------------------------------------------------------------- */

typedef struct lin_ctx {
    int t;    /* 0: linear (w [out, in]), 1: linear_t (w [in, out]) */
    int bias; /* in[2] is the bias */
} lin_ctx;

static mtft_tensor *lin_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const lin_ctx *c = ctx;
    mtft_tensor *b = c->bias ? in[2] : NULL;
    return c->t ? mtft_linear_t(g, in[0], in[1], b) : mtft_linear(g, in[0], in[1], b);
}

START_TEST(test_ops_a_linear) {
    const int64_t B = 2, T = 3, I = 4, O = 5;
    for (int t = 0; t < 2; t++)
        for (int bias = 0; bias < 2; bias++) {
            const int64_t sx[3] = {B, T, I}, sw[2] = {t ? I : O, t ? O : I}, sb[1] = {O};
            float *xd = fbuf(B * T * I, 100 + (uint64_t)t, -1, 1), *wd = fbuf(I * O, 200, -1, 1),
                  *bd = fbuf(O, 300, -1, 1);
            /* reference: y[r, o] = sum_i x[r, i] w(o, i) + b[o] */
            float ref[30];
            for (int64_t r = 0; r < B * T; r++)
                for (int64_t o = 0; o < O; o++) {
                    double s = bias ? bd[o] : 0.0;
                    for (int64_t i = 0; i < I; i++) s += (double)xd[r * I + i] * (t ? wd[i * O + o] : wd[o * I + i]);
                    ref[r * O + o] = (float)s;
                }
            mtft_graph *g = gnew(0);
            mtft_tensor *in[3] = {mtft_from_data(g, 3, sx, xd), mtft_from_data(g, 2, sw, wd),
                                  mtft_from_data(g, 1, sb, bd)};
            lin_ctx ctx = {t, bias};
            mtft_tensor *y = lin_fn(g, in, &ctx);
            ck_assert_msg(y != NULL, "%s", mtft_error_last()->message);
            ck_assert_int_eq(mtft_tensor_ndim(y), 3);
            ck_assert_int_eq(mtft_tensor_dim(y, 0), B);
            ck_assert_int_eq(mtft_tensor_dim(y, 1), T);
            ck_assert_int_eq(mtft_tensor_dim(y, 2), O);
            mtft_assert_close(mtft_tensor_data(y), ref, B * T * O, 1e-5f, 1e-5f, t ? "linear_t fwd" : "linear fwd");
            mtft_graph_free(g);
            /* bilinear + bias: eps 1e-2, atol 2e-3, rtol 1e-2 */
            mtft_gradcheck_input gi[3];
            fill_input(&gi[0], 3, sx, xd, 1);
            fill_input(&gi[1], 2, sw, wd, 1);
            fill_input(&gi[2], 1, sb, bd, 1);
            mtft_gradcheck_result r =
                mtft_gradcheck(t ? "linear_t" : "linear", lin_fn, &ctx, gi, bias ? 3 : 2, 1e-2f, 2e-3f, 1e-2f, 0);
            ck_assert_int_eq(r.checked, B * T * I + I * O + (bias ? O : 0));
            free(xd);
            free(wd);
            free(bd);
        }
}
END_TEST

/* x x^T: both matmul inputs are the same tensor, so both backward GEMMs
 * accumulate into one gradient. eps 1e-2, atol 2e-3, rtol 1e-2. */
static mtft_tensor *gram_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    return mtft_matmul(g, in[0], in[0], 0, 1);
}

START_TEST(test_ops_a_matmul_same_input) {
    const int64_t sx[2] = {3, 4};
    float *xd = fbuf(12, 1200, -1, 1);
    float ref[9];
    ref_matmul(xd, xd, ref, 1, 0, 3, 3, 4, 0, 1);
    mtft_graph *g = gnew(0);
    mtft_tensor *x = mtft_from_data(g, 2, sx, xd);
    mtft_tensor *y = gram_fn(g, &x, NULL);
    ck_assert_ptr_nonnull(y);
    mtft_assert_close(mtft_tensor_data(y), ref, 9, 1e-5f, 1e-6f, "x x^T fwd");
    mtft_graph_free(g);
    mtft_gradcheck_input gi;
    fill_input(&gi, 2, sx, xd, 1);
    mtft_gradcheck("x x^T", gram_fn, NULL, &gi, 1, 1e-2f, 2e-3f, 1e-2f, 0);
    free(xd);
}
END_TEST

/* linear with a transposed-view weight (a tied table used as [out, in]) is
 * linear_t on the storage: same output, same dx, and dW of the view is the
 * transpose of dW of the storage. */
START_TEST(test_ops_a_linear_view_weight) {
    const int64_t N = 5, I = 4, O = 3, sx[2] = {N, I}, ss[2] = {I, O};
    float *xd = fbuf(N * I, 1300, -1, 1), *sd = fbuf(I * O, 1301, -1, 1), *bd = fbuf(O, 1302, -1, 1);
    const int64_t sb[1] = {O};
    mtft_graph *g1 = gnew(0), *g2 = gnew(0);
    mtft_tensor *x1 = mtft_from_data(g1, 2, sx, xd), *x2 = mtft_from_data(g2, 2, sx, xd);
    mtft_tensor *st = mtft_from_data(g1, 2, ss, sd), *s2 = mtft_from_data(g2, 2, ss, sd);
    mtft_tensor *b1 = mtft_from_data(g1, 1, sb, bd), *b2 = mtft_from_data(g2, 1, sb, bd);
    mtft_tensor *wv = tview(g1, st); /* [O, I] */
    mtft_tensor *ts[6] = {x1, x2, wv, s2, b1, b2};
    for (int i = 0; i < 6; i++) mtft_tensor_set_requires_grad(i % 2 ? g2 : g1, ts[i], 1);
    mtft_tensor *y1 = mtft_linear(g1, x1, wv, b1), *y2 = mtft_linear_t(g2, x2, s2, b2);
    ck_assert_msg(y1 && y2, "%s", mtft_error_last()->message);
    mtft_assert_close(mtft_tensor_data(y1), mtft_tensor_data(y2), N * O, 1e-6f, 1e-6f, "linear(view) fwd");
    float seed[15];
    mtft_test_fill(seed, N * O, 9, -1, 1);
    ck_assert_int_eq(mtft_graph_backward(g1, y1, seed), 0);
    ck_assert_int_eq(mtft_graph_backward(g2, y2, seed), 0);
    mtft_assert_close(mtft_tensor_grad(x1), mtft_tensor_grad(x2), N * I, 1e-6f, 1e-6f, "linear(view) dx");
    mtft_assert_close(mtft_tensor_grad(b1), mtft_tensor_grad(b2), O, 1e-6f, 1e-6f, "linear(view) db");
    float dwt[12];
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) dwt[o * I + i] = mtft_tensor_grad(s2)[i * O + o];
    mtft_assert_close(mtft_tensor_grad(wv), dwt, O * I, 1e-6f, 1e-6f, "linear(view) dW");
    mtft_graph_free(g1);
    mtft_graph_free(g2);
    free(xd);
    free(sd);
    free(bd);
}
END_TEST

/* Through the public view op: q k^T with k transposed by mtft_transpose over
 * a 4-D batch (the attention-score pattern), and a transposed slice. The
 * gradient flows through the view into k. eps 1e-2, atol 2e-3, rtol 1e-2. */
static mtft_tensor *qkt_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    return mtft_matmul(g, in[0], mtft_transpose(g, in[1], 2, 3), 0, 0);
}
static mtft_tensor *tr_slice_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    /* a [6, 4] -> rows 1..3 -> transposed [4, 3]: strided, non-contiguous */
    mtft_tensor *at = mtft_transpose(g, mtft_slice(g, in[0], 0, 1, 3), 0, 1);
    return mtft_linear(g, in[1], at, NULL); /* x [2, 3] W^T, W = at [4, 3] */
}

START_TEST(test_ops_a_matmul_public_views) {
    const int64_t sq[4] = {2, 2, 3, 4}, n = 48;
    float *qd = fbuf(n, 1400, -1, 1), *kd = fbuf(n, 1401, -1, 1);
    /* forward: s[b,h,i,j] = sum_d q[b,h,i,d] k[b,h,j,d] */
    float ref[36];
    ref_matmul(qd, kd, ref, 4, 0, 3, 3, 4, 0, 1);
    mtft_graph *g = gnew(0);
    mtft_tensor *in[2] = {mtft_from_data(g, 4, sq, qd), mtft_from_data(g, 4, sq, kd)};
    mtft_tensor *s = qkt_fn(g, in, NULL);
    ck_assert_msg(s != NULL, "%s", mtft_error_last()->message);
    mtft_assert_close(mtft_tensor_data(s), ref, 36, 1e-5f, 1e-5f, "q k^T via transpose");
    mtft_graph_free(g);
    mtft_gradcheck_input gi[2];
    fill_input(&gi[0], 4, sq, qd, 1);
    fill_input(&gi[1], 4, sq, kd, 1);
    mtft_gradcheck("q k^T via transpose", qkt_fn, NULL, gi, 2, 1e-2f, 2e-3f, 1e-2f, 0);
    const int64_t sa[2] = {6, 4}, sx[2] = {2, 3};
    float *ad = fbuf(24, 1402, -1, 1), *xd = fbuf(6, 1403, -1, 1);
    fill_input(&gi[0], 2, sa, ad, 1);
    fill_input(&gi[1], 2, sx, xd, 1);
    mtft_gradcheck("linear over a transposed slice", tr_slice_fn, NULL, gi, 2, 1e-2f, 2e-3f, 1e-2f, 0);
    free(qd);
    free(kd);
    free(ad);
    free(xd);
}
END_TEST

/* ---- embedding ---------------------------------------------------------- */

static const int32_t emb_ids[6] = {3, 0, 3, 4, 1, 3}; /* repeats: scatter-add must sum */

static mtft_tensor *emb_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    const int64_t sh[2] = {2, 3};
    return mtft_embedding(g, in[0], emb_ids, 2, sh);
}

START_TEST(test_ops_a_embedding) {
    const int64_t V = 5, C = 4, st[2] = {V, C};
    float *td = fbuf(V * C, 400, -1, 1);
    mtft_graph *g = gnew(0);
    mtft_tensor *table = mtft_from_data(g, 2, st, td);
    mtft_tensor *y = emb_fn(g, &table, NULL);
    ck_assert_msg(y != NULL, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tensor_ndim(y), 3);
    ck_assert_int_eq(mtft_tensor_dim(y, 0), 2);
    ck_assert_int_eq(mtft_tensor_dim(y, 1), 3);
    ck_assert_int_eq(mtft_tensor_dim(y, 2), C);
    for (int i = 0; i < 6; i++)
        mtft_assert_close(mtft_tensor_data(y) + i * C, td + emb_ids[i] * C, C, 0, 0, "embedding gather");
    /* shape NULL: ndim is the id count, output [n, C] */
    mtft_tensor *y2 = mtft_embedding(g, table, emb_ids + 1, 2, NULL);
    ck_assert_ptr_nonnull(y2);
    ck_assert_int_eq(mtft_tensor_ndim(y2), 2);
    ck_assert_int_eq(mtft_tensor_dim(y2, 0), 2);
    mtft_assert_close(mtft_tensor_data(y2) + C, td + 3 * C, C, 0, 0, "embedding gather, no shape");
    mtft_graph_free(g);
    /* the gradient is exact (a sum of copies): eps 1e-2, atol 1e-3, rtol 1e-2 */
    mtft_gradcheck_input gi;
    fill_input(&gi, 2, st, td, 1);
    mtft_gradcheck("embedding", emb_fn, NULL, &gi, 1, 1e-2f, 1e-3f, 1e-2f, 0);
    free(td);
}
END_TEST

START_TEST(test_ops_a_embedding_backward_sums_repeats) {
    /* wide enough (C = 200, 4 column blocks) to take the parallel path */
    const int64_t V = 7, C = 200, st[2] = {V, C};
    const int32_t ids[5] = {6, 2, 6, 6, 0};
    mtft_graph *g = gnew(0);
    mtft_tensor *table = rnd(g, 2, st, 1, -1, 1);
    ck_assert_int_eq(mtft_tensor_set_requires_grad(g, table, 1), 0);
    mtft_tensor *y = mtft_embedding(g, table, ids, 5, NULL);
    ck_assert_ptr_nonnull(y);
    float *seed = fbuf(5 * C, 2, -1, 1);
    ck_assert_int_eq(mtft_graph_backward(g, y, seed), 0);
    const float *dt = mtft_tensor_grad(table);
    for (int64_t v = 0; v < V; v++)
        for (int64_t j = 0; j < C; j++) {
            double e = 0;
            for (int i = 0; i < 5; i++)
                if (ids[i] == v) e += seed[i * C + j];
            ck_assert_msg(fabs(dt[v * C + j] - e) <= 1e-6, "dtable[%lld,%lld] %g vs %g", (long long)v, (long long)j,
                          (double)dt[v * C + j], e);
        }
    free(seed);
    mtft_graph_free(g);
}
END_TEST

/* ---- norms --------------------------------------------------------------- */

typedef struct norm_ctx {
    int rms, w, b;
} norm_ctx;

static mtft_tensor *norm_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const norm_ctx *c = ctx;
    mtft_tensor *w = c->w ? in[1] : NULL, *b = c->b ? in[c->w ? 2 : 1] : NULL;
    return c->rms ? mtft_rmsnorm(g, in[0], w, 1e-5f) : mtft_layernorm(g, in[0], w, b, 1e-5f);
}

static void ref_norm(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t C, int rms) {
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * C;
        double m = 0, v = 0;
        if (!rms) {
            for (int64_t j = 0; j < C; j++) m += xr[j];
            m /= (double)C;
        }
        for (int64_t j = 0; j < C; j++) v += (xr[j] - m) * (xr[j] - m);
        double rs = 1.0 / sqrt(v / (double)C + 1e-5);
        for (int64_t j = 0; j < C; j++)
            y[r * C + j] = (float)((xr[j] - m) * rs * (w ? w[j] : 1.0) + (b ? b[j] : 0.0));
    }
}

static void norm_case(int rms, int hw, int hb, int64_t N, int64_t C, uint64_t seed) {
    const int64_t sx[3] = {2, N / 2, C}, sp[1] = {C};
    float *xd = fbuf(N * C, seed, -2, 3), *wd = fbuf(C, seed + 1, 0.5f, 1.5f), *bd = fbuf(C, seed + 2, -1, 1);
    float *ref = malloc((size_t)(N * C) * sizeof(float));
    ref_norm(xd, hw ? wd : NULL, hb ? bd : NULL, ref, N, C, rms);
    mtft_graph *g = gnew(0);
    mtft_tensor *in[3];
    int n_in = 0;
    in[n_in++] = mtft_from_data(g, 3, sx, xd);
    if (hw) in[n_in++] = mtft_from_data(g, 1, sp, wd);
    if (hb) in[n_in++] = mtft_from_data(g, 1, sp, bd);
    norm_ctx ctx = {rms, hw, hb};
    mtft_tensor *y = norm_fn(g, in, &ctx);
    ck_assert_msg(y != NULL, "%s", mtft_error_last()->message);
    char what[64];
    snprintf(what, sizeof what, "%s w=%d b=%d C=%lld", rms ? "rmsnorm" : "layernorm", hw, hb, (long long)C);
    /* float statistics with 8-way partial sums vs double: 2e-5 */
    mtft_assert_close(mtft_tensor_data(y), ref, N * C, 1e-5f, 2e-5f, what);
    mtft_graph_free(g);
    /* normalisation is curved (second derivatives ~ rstd^2): eps 1e-2,
     * atol 5e-3, rtol 2e-2; at most 64 elements per input */
    mtft_gradcheck_input gi[3];
    int k = 0;
    fill_input(&gi[k++], 3, sx, xd, 1);
    if (hw) fill_input(&gi[k++], 1, sp, wd, 1);
    if (hb) fill_input(&gi[k++], 1, sp, bd, 1);
    mtft_gradcheck(what, norm_fn, &ctx, gi, k, 1e-2f, 5e-3f, 2e-2f, 64);
    free(xd);
    free(wd);
    free(bd);
    free(ref);
}

START_TEST(test_ops_a_layernorm) {
    for (int hw = 0; hw < 2; hw++)
        for (int hb = 0; hb < 2; hb++) norm_case(0, hw, hb, 4, 6, 500 + (uint64_t)(hw * 2 + hb));
    norm_case(0, 1, 1, 4, 77, 510); /* C not a multiple of 8 or of the 64-column block */
}
END_TEST

START_TEST(test_ops_a_rmsnorm) {
    norm_case(1, 0, 0, 4, 6, 600);
    norm_case(1, 1, 0, 4, 6, 601);
    norm_case(1, 1, 0, 4, 77, 602);
}
END_TEST

/* ---- activations --------------------------------------------------------- */

typedef mtft_tensor *(*unary_op)(mtft_graph *, mtft_tensor *);
typedef struct act_def {
    const char *name;
    unary_op fn;
    double (*ref)(double);
} act_def;

static double r_gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}
static double r_gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double r_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double r_silu(double x) { return x * r_sigmoid(x); }
static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_tanh(double x) { return tanh(x); }

static const act_def acts[] = {
    {"gelu_tanh", mtft_gelu_tanh, r_gelu_tanh}, {"gelu_erf", mtft_gelu_erf, r_gelu_erf},
    {"silu", mtft_silu, r_silu},                {"sigmoid", mtft_sigmoid, r_sigmoid},
    {"relu", mtft_relu, r_relu},                {"tanh", mtft_tanh, r_tanh},
};
#define N_ACTS ((int)(sizeof acts / sizeof acts[0]))

static mtft_tensor *act_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const act_def *a = ctx;
    return a->fn(g, in[0]);
}

START_TEST(test_ops_a_activations) {
    /* 3*4*5 values in [-4, 4], pushed at least 0.1 away from 0 (relu's kink) */
    const int64_t sh[3] = {3, 4, 5};
    const int64_t n = 60;
    float *xd = fbuf(n, 700, -4, 4);
    for (int64_t i = 0; i < n; i++)
        if (fabsf(xd[i]) < 0.1f) xd[i] = xd[i] < 0 ? -0.1f - xd[i] : 0.1f + xd[i];
    float ref[60];
    for (int k = 0; k < N_ACTS; k++) {
        for (int64_t i = 0; i < n; i++) ref[i] = (float)acts[k].ref(xd[i]);
        mtft_graph *g = gnew(0);
        mtft_tensor *x = mtft_from_data(g, 3, sh, xd);
        mtft_tensor *y = acts[k].fn(g, x);
        ck_assert_msg(y != NULL, "%s: %s", acts[k].name, mtft_error_last()->message);
        ck_assert_int_eq(mtft_tensor_numel(y), n);
        /* float libm vs double: rtol 1e-5, atol 1e-6 */
        mtft_assert_close(mtft_tensor_data(y), ref, n, 1e-5f, 1e-6f, acts[k].name);
        /* extremes stay finite and saturate correctly */
        const float ext[4] = {-100.0f, -30.0f, 30.0f, 100.0f};
        const int64_t s4[1] = {4};
        mtft_tensor *ye = acts[k].fn(g, mtft_from_data(g, 1, s4, ext));
        ck_assert_ptr_nonnull(ye);
        for (int i = 0; i < 4; i++) {
            float v = mtft_tensor_data(ye)[i];
            ck_assert_msg(isfinite(v), "%s(%g) = %g", acts[k].name, (double)ext[i], (double)v);
            ck_assert_msg(fabs(v - acts[k].ref(ext[i])) <= 1e-5 * (1 + fabs(acts[k].ref(ext[i]))),
                          "%s(%g) = %g, expected %g", acts[k].name, (double)ext[i], (double)v, acts[k].ref(ext[i]));
        }
        /* NaN propagates (as in PyTorch) */
        const float nanv[2] = {NAN, 1.0f};
        const int64_t s2[1] = {2};
        mtft_tensor *yn = acts[k].fn(g, mtft_from_data(g, 1, s2, nanv));
        ck_assert_ptr_nonnull(yn);
        ck_assert_msg(isnan(mtft_tensor_data(yn)[0]), "%s(NaN) = %g", acts[k].name, (double)mtft_tensor_data(yn)[0]);
        ck_assert(isfinite(mtft_tensor_data(yn)[1]));
        mtft_graph_free(g);
        /* smooth except relu (inputs kept 0.1 away from the kink > eps).
         * Only y_i moves when x_i does, so the numeric error is float
         * rounding of one output (~1e-7 |y| / eps) plus eps^2 |f3| / 6
         * (f3: third derivative): eps 1e-2, atol 5e-4, rtol 2e-3 */
        mtft_gradcheck_input gi;
        fill_input(&gi, 3, sh, xd, 1);
        mtft_gradcheck_result r = mtft_gradcheck(acts[k].name, act_fn, (void *)&acts[k], &gi, 1, 1e-2f, 5e-4f, 2e-3f, 0);
        ck_assert_int_eq(r.checked, n);
    }
    free(xd);
}
END_TEST

START_TEST(test_ops_a_activations_parallel) {
    /* large enough for the OpenMP path: same values as the reference */
    const int64_t n = 40000, sh[1] = {n};
    float *xd = fbuf(n, 710, -5, 5);
    for (int k = 0; k < N_ACTS; k++) {
        mtft_graph *g = gnew((size_t)4 << 20);
        mtft_tensor *x = mtft_from_data(g, 1, sh, xd);
        mtft_tensor_set_requires_grad(g, x, 1);
        mtft_tensor *y = acts[k].fn(g, x);
        ck_assert_ptr_nonnull(y);
        for (int64_t i = 0; i < n; i += 97) {
            double e = acts[k].ref(xd[i]);
            ck_assert_msg(fabs(mtft_tensor_data(y)[i] - e) <= 1e-6 + 1e-5 * fabs(e), "%s(%g)", acts[k].name,
                          (double)xd[i]);
        }
        ck_assert_int_eq(mtft_graph_backward(g, y, xd), 0); /* any seed */
        ck_assert_ptr_nonnull(mtft_tensor_grad(x));
        mtft_graph_free(g);
    }
    free(xd);
}
END_TEST

static mtft_tensor *swiglu_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    return mtft_swiglu(g, in[0], in[1]);
}

START_TEST(test_ops_a_swiglu) {
    const int64_t sh[2] = {4, 6}, n = 24;
    float *gd = fbuf(n, 800, -4, 4), *ud = fbuf(n, 801, -2, 2);
    float ref[24];
    for (int64_t i = 0; i < n; i++) ref[i] = (float)(r_silu(gd[i]) * ud[i]);
    mtft_graph *g = gnew(0);
    mtft_tensor *in[2] = {mtft_from_data(g, 2, sh, gd), mtft_from_data(g, 2, sh, ud)};
    mtft_tensor *y = swiglu_fn(g, in, NULL);
    ck_assert_ptr_nonnull(y);
    mtft_assert_close(mtft_tensor_data(y), ref, n, 1e-5f, 1e-6f, "swiglu fwd");
    mtft_graph_free(g);
    /* elementwise like the activations: eps 1e-2, atol 5e-4, rtol 2e-3 */
    mtft_gradcheck_input gi[2];
    fill_input(&gi[0], 2, sh, gd, 1);
    fill_input(&gi[1], 2, sh, ud, 1);
    mtft_gradcheck_result r = mtft_gradcheck("swiglu", swiglu_fn, NULL, gi, 2, 1e-2f, 5e-4f, 2e-3f, 0);
    ck_assert_int_eq(r.checked, 2 * n);
    free(gd);
    free(ud);
}
END_TEST

/* ---- elementwise (add/sub/mul/scale/bias) -------------------------------- */

typedef struct ew_ctx {
    int kind; /* 0 add, 1 sub, 2 mul, 3 scale, 4 bias */
} ew_ctx;

static mtft_tensor *ew_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    switch (((const ew_ctx *)ctx)->kind) {
    case 0: return mtft_add(g, in[0], in[1]);
    case 1: return mtft_sub(g, in[0], in[1]);
    case 2: return mtft_mul(g, in[0], in[1]);
    case 3: return mtft_scale(g, in[0], -1.75f);
    default: return mtft_bias(g, in[0], in[1]);
    }
}

static void ew_case(int kind, int ndb, const int64_t *sb) {
    const int64_t sa[3] = {2, 3, 4}, na = 24;
    int64_t nb = kind == 3 ? 1 : prod(ndb, sb);
    float *ad = fbuf(na, 900 + (uint64_t)kind, -2, 2), *bd = fbuf(nb, 950 + (uint64_t)kind, -2, 2);
    float ref[24];
    for (int64_t i = 0; i < na; i++) {
        double a = ad[i], b = bd[i % nb];
        ref[i] = (float)(kind == 0 || kind == 4 ? a + b : kind == 1 ? a - b : kind == 2 ? a * b : -1.75 * a);
    }
    mtft_graph *g = gnew(0);
    mtft_tensor *in[2] = {mtft_from_data(g, 3, sa, ad), kind == 3 ? NULL : mtft_from_data(g, ndb, sb, bd)};
    ew_ctx ctx = {kind};
    mtft_tensor *y = ew_fn(g, in, &ctx);
    ck_assert_msg(y != NULL, "%s", mtft_error_last()->message);
    char what[48];
    snprintf(what, sizeof what, "elementwise kind %d, b ndim %d", kind, ndb);
    mtft_assert_close(mtft_tensor_data(y), ref, na, 1e-6f, 1e-6f, what);
    mtft_graph_free(g);
    /* linear or bilinear: eps 1e-2, atol 1e-3, rtol 1e-2 */
    mtft_gradcheck_input gi[2];
    fill_input(&gi[0], 3, sa, ad, 1);
    if (kind != 3) fill_input(&gi[1], ndb, sb, bd, 1);
    mtft_gradcheck_result r = mtft_gradcheck(what, ew_fn, &ctx, gi, kind == 3 ? 1 : 2, 1e-2f, 1e-3f, 1e-2f, 0);
    ck_assert_int_eq(r.checked, na + (kind == 3 ? 0 : nb));
    free(ad);
    free(bd);
}

START_TEST(test_ops_a_elementwise) {
    const int64_t full[3] = {2, 3, 4}, suf2[2] = {3, 4}, suf1[1] = {4};
    for (int kind = 0; kind < 3; kind++) {
        ew_case(kind, 3, full);
        ew_case(kind, 2, suf2); /* broadcast over the leading dim */
        ew_case(kind, 1, suf1); /* broadcast over the rows */
    }
    ew_case(3, 0, NULL);
    ew_case(4, 1, suf1);
}
END_TEST

/* ---- diamond: one tensor, two consumers ---------------------------------- */

/* y = x W1; z = gelu(y) + y*y. y feeds gelu and both inputs of mul; the
 * backward of add, mul and gelu must all land in dy before matmul reads it. */
static mtft_tensor *diamond_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    mtft_tensor *y = mtft_matmul(g, in[0], in[1], 0, 0);
    return mtft_add(g, mtft_gelu_tanh(g, y), mtft_mul(g, y, y));
}

START_TEST(test_ops_a_diamond) {
    const int64_t sx[2] = {3, 4}, sw[2] = {4, 5};
    float *xd = fbuf(12, 1000, -1, 1), *wd = fbuf(20, 1001, -1, 1);
    /* forward reference */
    float y[15], ref[15];
    ref_matmul(xd, wd, y, 1, 0, 3, 5, 4, 0, 0);
    for (int i = 0; i < 15; i++) ref[i] = (float)(r_gelu_tanh(y[i]) + (double)y[i] * y[i]);
    mtft_graph *g = gnew(0);
    mtft_tensor *in[2] = {mtft_from_data(g, 2, sx, xd), mtft_from_data(g, 2, sw, wd)};
    mtft_tensor_set_requires_grad(g, in[0], 1);
    mtft_tensor *z = diamond_fn(g, in, NULL);
    ck_assert_ptr_nonnull(z);
    mtft_assert_close(mtft_tensor_data(z), ref, 15, 1e-5f, 1e-5f, "diamond fwd");
    ck_assert_int_eq(mtft_graph_n_nodes(g), 4);
    ck_assert_str_eq(mtft_graph_node_op(g, 0), "matmul");
    mtft_graph_free(g);
    /* curved (y^2 and gelu): eps 1e-2, atol 3e-3, rtol 1e-2 */
    mtft_gradcheck_input gi[2];
    fill_input(&gi[0], 2, sx, xd, 1);
    fill_input(&gi[1], 2, sw, wd, 1);
    mtft_gradcheck_result r = mtft_gradcheck("diamond", diamond_fn, NULL, gi, 2, 1e-2f, 3e-3f, 1e-2f, 0);
    ck_assert_int_eq(r.checked, 32);
    free(xd);
    free(wd);
}
END_TEST

/* ---- error paths ---------------------------------------------------------- */

START_TEST(test_ops_a_errors_shapes) {
    mtft_graph *g = gnew(0);
    const int64_t s23[2] = {2, 3}, s45[2] = {4, 5}, s4[1] = {4}, s3[1] = {3}, s234[3] = {2, 3, 4}, s5[1] = {5};
    mtft_tensor *a = rnd(g, 2, s23, 1, -1, 1), *b = rnd(g, 2, s45, 2, -1, 1);

    ck_assert_ptr_null(mtft_matmul(g, a, b, 0, 0));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESHAPE);
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ESHAPE);
    assert_msg_has("[2, 3]");
    assert_msg_has("[4, 5]");
    /* sticky: a valid op on the graph in error returns NULL */
    ck_assert_ptr_null(mtft_tanh(g, a));
    mtft_graph_reset(g);
    ck_assert_int_eq(mtft_graph_status(g), MTFT_OK);

    a = rnd(g, 2, s23, 1, -1, 1);
    mtft_tensor *b3 = rnd(g, 3, s234, 3, -1, 1);
    ck_assert_ptr_null(mtft_matmul(g, a, b3, 0, 0)); /* batch dims on b only */
    assert_msg_has("[2, 3, 4]");
    mtft_graph_reset(g);

    mtft_tensor *x = rnd(g, 3, s234, 4, -1, 1), *w = rnd(g, 2, s45, 5, -1, 1);
    ck_assert_ptr_null(mtft_linear(g, x, w, NULL)); /* w [4,5] as [out, in]: in 5 != 4 */
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESHAPE);
    assert_msg_has("[2, 3, 4]");
    assert_msg_has("[4, 5]");
    mtft_graph_reset(g);
    x = rnd(g, 3, s234, 4, -1, 1);
    w = rnd(g, 2, s45, 5, -1, 1);
    mtft_tensor *bb = rnd(g, 1, s4, 6, -1, 1);
    ck_assert_ptr_null(mtft_linear_t(g, x, w, bb)); /* out 5, bias [4] */
    assert_msg_has("bias [4]");
    mtft_graph_reset(g);

    x = rnd(g, 3, s234, 4, -1, 1);
    mtft_tensor *w3 = rnd(g, 1, s3, 7, -1, 1);
    ck_assert_ptr_null(mtft_layernorm(g, x, w3, NULL, 1e-5f));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESHAPE);
    assert_msg_has("[3]");
    assert_msg_has("[2, 3, 4]");
    mtft_graph_reset(g);
    x = rnd(g, 3, s234, 4, -1, 1);
    w3 = rnd(g, 1, s5, 7, -1, 1);
    ck_assert_ptr_null(mtft_rmsnorm(g, x, w3, 1e-5f));
    assert_msg_has("[5]");
    mtft_graph_reset(g);

    x = rnd(g, 3, s234, 4, -1, 1);
    a = rnd(g, 2, s23, 1, -1, 1);
    ck_assert_ptr_null(mtft_swiglu(g, x, a));
    assert_msg_has("[2, 3, 4]");
    assert_msg_has("[2, 3]");
    mtft_graph_reset(g);

    x = rnd(g, 3, s234, 4, -1, 1);
    a = rnd(g, 2, s23, 1, -1, 1);
    ck_assert_ptr_null(mtft_add(g, x, a)); /* [2,3] is not a suffix of [2,3,4] */
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESHAPE);
    assert_msg_has("[2, 3]");
    mtft_graph_reset(g);
    x = rnd(g, 3, s234, 4, -1, 1);
    bb = rnd(g, 1, s5, 6, -1, 1);
    ck_assert_ptr_null(mtft_bias(g, x, bb));
    assert_msg_has("[5]");
    mtft_graph_free(g);
}
END_TEST

START_TEST(test_ops_a_errors_embedding) {
    mtft_graph *g = gnew(0);
    const int64_t st[2] = {5, 3};
    mtft_tensor *table = rnd(g, 2, st, 1, -1, 1);
    const int32_t ids[4] = {0, 4, 7, 1};
    ck_assert_ptr_null(mtft_embedding(g, table, ids, 4, NULL));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ERANGE);
    assert_msg_has("id 7 at position 2");
    assert_msg_has("[0, 5)");
    mtft_graph_reset(g);
    table = rnd(g, 2, st, 1, -1, 1);
    const int32_t neg[2] = {1, -1};
    ck_assert_ptr_null(mtft_embedding(g, table, neg, 2, NULL));
    assert_msg_has("id -1 at position 1");
    mtft_graph_reset(g);
    table = rnd(g, 2, st, 1, -1, 1);
    ck_assert_ptr_null(mtft_embedding(g, table, NULL, 2, NULL));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_EINVAL);
    mtft_graph_free(g);
}
END_TEST

START_TEST(test_ops_a_errors_null_and_backward) {
    mtft_graph *g = gnew(0);
    const int64_t s[2] = {2, 3}, sw[2] = {3, 3};
    mtft_tensor *x = rnd(g, 2, s, 1, -1, 1);
    mtft_tensor_set_requires_grad(g, x, 1);
    mtft_tensor *y = mtft_tanh(g, x);
    ck_assert_ptr_nonnull(y);
    mtft_error_clear();
    /* a NULL input gives NULL, and NULL propagates through a chain */
    unary_op ops[] = {mtft_gelu_tanh, mtft_gelu_erf, mtft_silu, mtft_sigmoid, mtft_relu, mtft_tanh};
    for (int i = 0; i < 6; i++) ck_assert_ptr_null(ops[i](g, NULL));
    ck_assert_int_lt(mtft_graph_status(g), 0);
    mtft_tensor *w = rnd(g, 2, sw, 2, -1, 1);
    ck_assert_ptr_null(mtft_linear(g, mtft_gelu_tanh(g, NULL), w, NULL));
    ck_assert_ptr_null(mtft_matmul(g, NULL, w, 0, 0));
    ck_assert_ptr_null(mtft_layernorm(g, NULL, NULL, NULL, 1e-5f));
    ck_assert_ptr_null(mtft_rmsnorm(g, NULL, NULL, 1e-5f));
    ck_assert_ptr_null(mtft_swiglu(g, x, NULL));
    ck_assert_ptr_null(mtft_embedding(g, NULL, NULL, 1, NULL));
    ck_assert_ptr_null(mtft_add(g, NULL, x));
    ck_assert_ptr_null(mtft_scale(g, NULL, 2.0f));
    /* backward on a graph in error fails cleanly and says so */
    const float seed[6] = {1, 1, 1, 1, 1, 1};
    int rc = mtft_graph_backward(g, y, seed);
    ck_assert_int_lt(rc, 0);
    assert_msg_has("in error");
    ck_assert_ptr_null(mtft_tensor_grad(x));
    /* after reset the graph works again */
    mtft_graph_reset(g);
    x = rnd(g, 2, s, 1, -1, 1);
    mtft_tensor_set_requires_grad(g, x, 1);
    y = mtft_tanh(g, x);
    ck_assert_int_eq(mtft_graph_backward(g, y, seed), MTFT_OK);
    ck_assert_ptr_nonnull(mtft_tensor_grad(x));
    /* a NULL graph */
    ck_assert_ptr_null(mtft_tanh(NULL, x));
    mtft_graph_free(g);
}
END_TEST

/* ---- a small MLP on parameter groups ------------------------------------ */

typedef struct mlp {
    mtft_param_group *pg1, *pg2;
    mtft_tensor *w1, *b1, *ln_w, *w2, *b2, *emb;
} mlp;

enum { MLP_B = 8, MLP_IN = 6, MLP_H = 16, MLP_OUT = 3, MLP_V = 10 };

static void mlp_init(mlp *m) {
    ck_assert_int_eq(mtft_param_group_new(&m->pg1, "base"), 0);
    ck_assert_int_eq(mtft_param_group_new(&m->pg2, "head"), 0);
    const int64_t s_emb[2] = {MLP_V, MLP_IN}, s_w1[2] = {MLP_H, MLP_IN}, s_b1[1] = {MLP_H}, s_w2[2] = {MLP_H, MLP_OUT},
                  s_b2[1] = {MLP_OUT};
    m->emb = mtft_param_group_add(m->pg1, "emb", 2, s_emb);
    m->w1 = mtft_param_group_add(m->pg1, "w1", 2, s_w1);
    m->b1 = mtft_param_group_add(m->pg1, "b1", 1, s_b1);
    m->ln_w = mtft_param_group_add(m->pg1, "ln_w", 1, s_b1);
    m->w2 = mtft_param_group_add(m->pg2, "w2", 2, s_w2);
    m->b2 = mtft_param_group_add(m->pg2, "b2", 1, s_b2);
    ck_assert_int_eq(mtft_param_group_alloc(m->pg1), 0);
    ck_assert_int_eq(mtft_param_group_alloc(m->pg2), 0);
    size_t n1, n2;
    float *d1 = mtft_param_group_data(m->pg1, &n1), *d2 = mtft_param_group_data(m->pg2, &n2);
    mtft_test_fill(d1, (int64_t)n1, 1100, -0.5f, 0.5f);
    mtft_test_fill(d2, (int64_t)n2, 1101, -0.5f, 0.5f);
    for (int j = 0; j < MLP_H; j++) mtft_tensor_data(m->ln_w)[j] = 1.0f + 0.1f * (float)j / MLP_H;
}

static void mlp_free(mlp *m) {
    mtft_param_group_free(m->pg1);
    mtft_param_group_free(m->pg2);
}

/* forward + backward of: emb -> linear -> layernorm -> gelu -> silu ->
 * linear_t -> sigmoid, seeded with a fixed gradient */
static mtft_tensor *mlp_step(mtft_graph *g, mlp *m, mtft_tensor **x_out, int with_backward) {
    static const int32_t ids[MLP_B] = {1, 4, 4, 9, 0, 2, 7, 4};
    const int64_t s[1] = {MLP_B};
    mtft_tensor *x = mtft_embedding(g, m->emb, ids, 1, s);
    if (x_out) *x_out = x;
    mtft_tensor *h = mtft_linear(g, x, m->w1, m->b1);
    h = mtft_layernorm(g, h, m->ln_w, NULL, 1e-5f);
    h = mtft_silu(g, mtft_gelu_tanh(g, h));
    mtft_tensor *y = mtft_sigmoid(g, mtft_linear_t(g, h, m->w2, m->b2));
    ck_assert_msg(y != NULL, "mlp: %s", mtft_error_last()->message);
    if (with_backward) {
        float seed[MLP_B * MLP_OUT];
        for (int i = 0; i < MLP_B * MLP_OUT; i++) seed[i] = (float)((i % 5) - 2) * 0.25f;
        ck_assert_int_eq(mtft_graph_backward(g, y, seed), MTFT_OK);
    }
    return y;
}

START_TEST(test_ops_a_no_alloc_in_repeated_step) {
    mlp m;
    mlp_init(&m);
    mtft_graph *g = gnew(4096); /* tiny first block: the first step must grow the arena */
    mlp_step(g, &m, NULL, 1);
    ck_assert_uint_gt(mtft_graph_arena_sys_allocs(g), 1);
    mtft_graph_reset(g);
    uint64_t sys = mtft_graph_arena_sys_allocs(g), allocs = mtft__alloc_count();
    size_t cap = mtft_graph_arena_capacity(g);
    for (int step = 0; step < 3; step++) {
        mlp_step(g, &m, NULL, 1);
        mtft_graph_reset(g);
    }
    ck_assert_uint_eq(mtft_graph_arena_sys_allocs(g), sys);
    ck_assert_uint_eq(mtft__alloc_count(), allocs);
    ck_assert_uint_eq(mtft_graph_arena_capacity(g), cap);
    mtft_graph_free(g);
    mlp_free(&m);
}
END_TEST

START_TEST(test_ops_a_param_groups) {
    mlp m;
    mlp_init(&m);
    size_t n1 = 0, n2 = 0;
    ck_assert_int_eq(mtft_param_group_set_trainable(m.pg1, 0), 0);
    ck_assert_ptr_null(mtft_param_group_grad(m.pg1, &n1));
    ck_assert_uint_eq(n1, 0);
    mtft_graph *g = gnew((size_t)1 << 20);
    /* frozen base, trainable head: one step to warm up the tape */
    mlp_step(g, &m, NULL, 1);
    mtft_graph_reset(g);
    mtft_param_group_zero_grad(m.pg2);
    uint64_t allocs = mtft__alloc_count();
    mtft_tensor *x = NULL;
    mlp_step(g, &m, &x, 1);
    /* nothing was allocated for the frozen group, not even through the arena */
    ck_assert_uint_eq(mtft__alloc_count(), allocs);
    ck_assert_ptr_null(mtft_param_group_grad(m.pg1, &n1));
    ck_assert_ptr_null(mtft_tensor_grad(m.w1));
    ck_assert_ptr_null(mtft_tensor_grad(m.emb));
    ck_assert_ptr_null(mtft_tensor_grad(m.ln_w));
    ck_assert(!mtft_tensor_requires_grad(x)); /* nothing below the head needs a gradient */
    /* only head nodes were recorded: linear_t, sigmoid */
    ck_assert_int_eq(mtft_graph_n_nodes(g), 2);

    float *gr = mtft_param_group_grad(m.pg2, &n2);
    ck_assert_ptr_nonnull(gr);
    float *g1 = malloc(n2 * sizeof(float));
    memcpy(g1, gr, n2 * sizeof(float));
    double norm = 0;
    for (size_t i = 0; i < n2; i++) norm += fabs(g1[i]);
    ck_assert(norm > 1e-3);
    /* a second backward of the same step accumulates: 2 * g1 */
    mtft_graph_reset(g);
    mlp_step(g, &m, NULL, 1);
    for (size_t i = 0; i < n2; i++) g1[i] *= 2.0f;
    mtft_assert_close(gr, g1, (int64_t)n2, 1e-6f, 1e-7f, "head grads after two backward");
    mtft_param_group_zero_grad(m.pg2);
    for (size_t i = 0; i < n2; i++) ck_assert_float_eq(gr[i], 0.0f);

    /* unfreeze the base: its gradients now exist, and the head's match the frozen run */
    ck_assert_int_eq(mtft_param_group_set_trainable(m.pg1, 1), 0);
    mtft_graph_reset(g);
    mlp_step(g, &m, NULL, 1);
    ck_assert_ptr_nonnull(mtft_param_group_grad(m.pg1, &n1));
    ck_assert_ptr_nonnull(mtft_tensor_grad(m.w1));
    double gn = 0;
    for (size_t i = 0; i < n1; i++) gn += fabs(mtft_param_group_grad(m.pg1, NULL)[i]);
    ck_assert(gn > 1e-4);
    for (size_t i = 0; i < n2; i++) g1[i] *= 0.5f;
    mtft_assert_close(gr, g1, (int64_t)n2, 1e-6f, 1e-7f, "head grads with base trainable");
    ck_assert_int_gt(mtft_graph_n_nodes(g), 2);
    free(g1);
    mtft_graph_free(g);
    mlp_free(&m);
}
END_TEST

/* The whole MLP (all params trainable) against central differences on the
 * parameter blocks, through the same step the allocation test uses. */
typedef struct mlp_ctx {
    mlp *m;
} mlp_ctx;

static mtft_tensor *mlp_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    /* gradcheck inputs: in[0] feeds w1's values, in[1] w2's: copy them into the
     * parameters so the op sees them (parameters are not graph tensors) */
    mlp *m = ((mlp_ctx *)ctx)->m;
    (void)in;
    return mlp_step(g, m, NULL, 0);
}

START_TEST(test_ops_a_mlp_param_grads) {
    /* Compare each parameter gradient with central differences of
     * L = sum(y .* seed) computed by perturbing the parameter in place.
     * eps 1e-2, atol 3e-3, rtol 2e-2 (layernorm and sigmoid are curved). */
    mlp m;
    mlp_init(&m);
    mtft_graph *g = gnew(0);
    float seed[MLP_B * MLP_OUT];
    for (int i = 0; i < MLP_B * MLP_OUT; i++) seed[i] = (float)((i % 5) - 2) * 0.25f;
    mlp_step(g, &m, NULL, 1);
    size_t n1, n2;
    const float *ga = mtft_param_group_grad(m.pg1, &n1), *gb = mtft_param_group_grad(m.pg2, &n2);
    ck_assert_ptr_nonnull(ga);
    ck_assert_ptr_nonnull(gb);
    mtft_param_group *pgs[2] = {m.pg1, m.pg2};
    const float *grads[2] = {ga, gb};
    mlp_ctx ctx = {&m};
    int64_t checked = 0;
    for (int p = 0; p < 2; p++) {
        size_t n;
        float *d = mtft_param_group_data(pgs[p], &n);
        for (int t = 0; t < mtft_param_group_count(pgs[p]); t++) {
            mtft_tensor *pt = mtft_param_group_tensor(pgs[p], t);
            int64_t off = mtft_tensor_data(pt) - d, ne = mtft_tensor_numel(pt);
            for (int64_t j = 0; j < ne; j += 3) {
                float orig = d[off + j];
                double L[2];
                for (int s = 0; s < 2; s++) {
                    d[off + j] = orig + (s ? -1e-2f : 1e-2f);
                    mtft_graph_reset(g);
                    mtft_graph_set_grad_enabled(g, 0);
                    mtft_tensor *y = mlp_fn(g, NULL, &ctx);
                    L[s] = 0;
                    for (int i = 0; i < MLP_B * MLP_OUT; i++) L[s] += (double)mtft_tensor_data(y)[i] * seed[i];
                }
                d[off + j] = orig;
                double num = (L[0] - L[1]) / 2e-2, ana = grads[p][off + j];
                ck_assert_msg(fabs(num - ana) <= 3e-3 + 2e-2 * fabs(num), "mlp d%s[%lld]: analytic %g numeric %g",
                              mtft_tensor_name(pt), (long long)j, ana, num);
                checked++;
            }
        }
    }
    ck_assert_int_gt(checked, 60);
    mtft_graph_free(g);
    mlp_free(&m);
}
END_TEST

/* ---- determinism across thread counts ------------------------------------- */

/* layernorm, rmsnorm, embedding, linear's bias gradient and the activations
 * reduce in a fixed order per output element: 1 and 2 threads give the same
 * bits. Sizes are above every OpenMP threshold. */
static void det_run(int threads, float *out, int64_t *n_out) {
    mtft_set_num_threads(threads);
    const int64_t N = 300, C = 160, sx[2] = {N, C}, sc[1] = {C}, V = 50, se[2] = {V, C}, sw[2] = {C, C};
    mtft_graph *g = gnew((size_t)8 << 20);
    mtft_tensor *x = rnd(g, 2, sx, 1, -2, 2), *w = rnd(g, 1, sc, 2, 0.5f, 1.5f), *b = rnd(g, 1, sc, 3, -1, 1);
    mtft_tensor *e = rnd(g, 2, se, 4, -1, 1), *wl = rnd(g, 2, sw, 5, -0.1f, 0.1f);
    mtft_tensor *bl = rnd(g, 1, sc, 6, -1, 1);
    mtft_tensor *ts[6] = {x, w, b, e, wl, bl};
    for (int i = 0; i < 6; i++) mtft_tensor_set_requires_grad(g, ts[i], 1);
    int32_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = (int32_t)((i * 7) % V);
    mtft_tensor *h = mtft_add(g, mtft_layernorm(g, x, w, b, 1e-5f), mtft_embedding(g, e, ids, 300, NULL));
    h = mtft_gelu_tanh(g, mtft_rmsnorm(g, h, w, 1e-6f));
    h = mtft_linear(g, h, wl, bl);
    ck_assert_msg(h != NULL, "%s", mtft_error_last()->message);
    float *seed = fbuf(N * C, 7, -1, 1);
    ck_assert_int_eq(mtft_graph_backward(g, h, seed), 0);
    int64_t k = 0;
    for (int i = 0; i < 6; i++) {
        if (i == 4) continue; /* dW of linear is BLAS's business */
        int64_t n = mtft_tensor_numel(ts[i]);
        memcpy(out + k, mtft_tensor_grad(ts[i]), (size_t)n * sizeof(float));
        k += n;
    }
    memcpy(out + k, mtft_tensor_data(h), (size_t)(N * C) * sizeof(float));
    k += N * C;
    *n_out = k;
    free(seed);
    mtft_graph_free(g);
    mtft_set_num_threads(0);
}

START_TEST(test_ops_a_deterministic_threads) {
    size_t cap = (size_t)(300 * 160 * 2 + 160 * 4 + 50 * 160) * sizeof(float);
    float *o1 = malloc(cap), *o2 = malloc(cap);
    int64_t n1 = 0, n2 = 0;
    det_run(1, o1, &n1);
    det_run(2, o2, &n2);
    ck_assert_int_eq(n1, n2);
    ck_assert_msg(memcmp(o1, o2, (size_t)n1 * sizeof(float)) == 0, "results differ between 1 and 2 threads");
    free(o1);
    free(o2);
}
END_TEST

static Suite *mtft_test_ops_a_suite(void) {
    Suite *s = suite_create("ops_a");
    TCase *fwd = tcase_create("grad");
    tcase_set_timeout(fwd, 120);
    tcase_add_test(fwd, test_ops_a_sgemm_wrapper);
    tcase_add_test(fwd, test_ops_a_matmul_2d);
    tcase_add_test(fwd, test_ops_a_matmul_batched);
    tcase_add_test(fwd, test_ops_a_matmul_shared_b);
    tcase_add_test(fwd, test_ops_a_matmul_strided_views);
    tcase_add_test(fwd, test_ops_a_linear);
    tcase_add_test(fwd, test_ops_a_matmul_same_input);
    tcase_add_test(fwd, test_ops_a_linear_view_weight);
    tcase_add_test(fwd, test_ops_a_matmul_public_views);
    tcase_add_test(fwd, test_ops_a_embedding);
    tcase_add_test(fwd, test_ops_a_embedding_backward_sums_repeats);
    tcase_add_test(fwd, test_ops_a_layernorm);
    tcase_add_test(fwd, test_ops_a_rmsnorm);
    tcase_add_test(fwd, test_ops_a_activations);
    tcase_add_test(fwd, test_ops_a_activations_parallel);
    tcase_add_test(fwd, test_ops_a_swiglu);
    tcase_add_test(fwd, test_ops_a_elementwise);
    tcase_add_test(fwd, test_ops_a_diamond);
    tcase_add_test(fwd, test_ops_a_mlp_param_grads);
    suite_add_tcase(s, fwd);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_ops_a_errors_shapes);
    tcase_add_test(lim, test_ops_a_errors_embedding);
    tcase_add_test(lim, test_ops_a_errors_null_and_backward);
    suite_add_tcase(s, lim);
    TCase *api = tcase_create("api");
    tcase_add_test(api, test_ops_a_no_alloc_in_repeated_step);
    tcase_add_test(api, test_ops_a_param_groups);
    tcase_add_test(api, test_ops_a_deterministic_threads);
    suite_add_tcase(s, api);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_ops_a_suite()); }
