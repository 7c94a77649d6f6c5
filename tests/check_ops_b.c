/* ctest-labels: grad */
/* ctest-timeout: 600 */
/* Ops, second half: softmax, log_softmax, attention, dropout, sum, mean,
 * pool, cross_entropy, mse, huber, bce_logits, reshape, slice, transpose,
 * contiguous, concat.
 *
 * Each op: (1) forward against an independent naive double-precision
 * reference written here; (2) central-difference gradient checks of each
 * differentiable input (mtft_gradcheck; tolerances stated at each call);
 * (3) error paths; (4) numerically extreme inputs.
 *
 * Tolerances. Forward: float32 kernels vs double references, rtol 1e-5 /
 * atol 1e-6 for one-pass ops, rtol 1e-4 / atol 1e-5 for attention (a D-long
 * dot product, a softmax and a T-long weighted sum, all in float).
 * Gradients (central differences in double on float32 forwards): eps 1e-2
 * on inputs of order 1. Smooth ops: atol 3e-4 + rtol 3e-3 (worst seen 6e-5,
 * log_softmax: O(eps^2) truncation plus float noise of the loss / 2 eps).
 * Ops linear in the checked input (sum, mean, pool, dropout): atol 1e-4 +
 * rtol 1e-3 (worst seen 4e-6). Both catch a 1% error in any gradient
 * element of magnitude > 0.05. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft_test.h"
#include "tensor/ops/ops_simd.h"

static mtft_graph *new_graph(uint64_t seed) {
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = (size_t)4 << 20;
    o.seed = seed;
    ck_assert_int_eq(mtft_graph_new(&g, &o), 0);
    return g;
}

static mtft_tensor *from(mtft_graph *g, int ndim, const int64_t *shape, const float *data) {
    mtft_tensor *t = mtft_from_data(g, ndim, shape, data);
    ck_assert_msg(t != NULL, "from_data: %s", mtft_error_last()->message);
    return t;
}

/* Copy a (possibly strided) tensor's values into dst in logical order. */
static void read_logical(mtft_tensor *t, float *dst) {
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    int nd = mtft_tensor_shape(t, sh);
    for (int i = 0; i < nd; i++) st[i] = mtft_tensor_stride(t, i);
    const float *d = mtft_tensor_data(t);
    int64_t k = 0;
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++)
                for (int64_t e = 0; e < sh[3]; e++) dst[k++] = d[a * st[0] + b * st[1] + c * st[2] + e * st[3]];
}

static void assert_all_finite(const float *x, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++) ck_assert_msg(isfinite(x[i]), "%s: element %lld is %g", what, (long long)i, (double)x[i]);
}

/* The graph is in error with `code`, and the message contains `needle`. */
static void assert_failed(mtft_graph *g, mtft_tensor *y, int code, const char *needle) {
    ck_assert_msg(y == NULL, "expected the op to fail (%s)", needle);
    ck_assert_int_eq(mtft_graph_status(g), code);
    ck_assert_int_eq(mtft_error_last()->code, code);
    ck_assert_msg(strstr(mtft_error_last()->message, needle) != NULL, "message '%s' does not mention '%s'",
                  mtft_error_last()->message, needle);
    mtft_graph_reset(g);
    ck_assert_int_eq(mtft_graph_status(g), MTFT_OK);
}

/* ======================================================================== */
/* softmax / log_softmax                                                     */
/* ======================================================================== */
static void ref_softmax(const float *x, int64_t R, int64_t C, int log_mode, float *y) {
    for (int64_t r = 0; r < R; r++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; j++) m = fmax(m, x[r * C + j]);
        for (int64_t j = 0; j < C; j++) s += exp((double)x[r * C + j] - m);
        for (int64_t j = 0; j < C; j++) {
            double lp = (double)x[r * C + j] - m - log(s);
            y[r * C + j] = (float)(log_mode ? lp : exp(lp));
        }
    }
}

START_TEST(test_softmax_forward) {
    mtft_graph *g = new_graph(1);
    const int64_t sh[3] = {2, 3, 11};
    float x[66], ref[66];
    mtft_test_fill(x, 66, 1, -4.0f, 4.0f);
    mtft_tensor *t = from(g, 3, sh, x);
    mtft_tensor *y = mtft_softmax(g, t), *ly = mtft_log_softmax(g, t);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(ly);
    ck_assert_int_eq(mtft_tensor_ndim(y), 3);
    ck_assert_int_eq(mtft_tensor_dim(y, -1), 11);
    ref_softmax(x, 6, 11, 0, ref);
    mtft_assert_close(mtft_tensor_data(y), ref, 66, 1e-5f, 1e-6f, "softmax");
    ref_softmax(x, 6, 11, 1, ref);
    mtft_assert_close(mtft_tensor_data(ly), ref, 66, 1e-5f, 1e-6f, "log_softmax");
    /* rows sum to one */
    for (int r = 0; r < 6; r++) {
        double s = 0;
        for (int j = 0; j < 11; j++) s += mtft_tensor_data(y)[r * 11 + j];
        ck_assert_double_eq_tol(s, 1.0, 1e-5);
    }
    mtft_graph_free(g);
}
END_TEST

static mtft_tensor *fn_softmax(mtft_graph *g, mtft_tensor **in, void *ctx) {
    return *(int *)ctx ? mtft_log_softmax(g, in[0]) : mtft_softmax(g, in[0]);
}

START_TEST(test_softmax_grad) {
    float x[40];
    for (int mode = 0; mode < 2; mode++) {
        mtft_test_fill(x, 40, 2 + mode, -2.0f, 2.0f);
        mtft_gradcheck_input in = {2, {4, 10}, x, 1};
        /* smooth op, inputs O(1): eps 1e-2, atol 3e-4, rtol 3e-3 */
        mtft_gradcheck(mode ? "log_softmax" : "softmax", fn_softmax, &mode, &in, 1, 1e-2f, 3e-4f, 3e-3f, 0);
    }
}
END_TEST

START_TEST(test_softmax_extreme) {
    mtft_graph *g = new_graph(1);
    const int64_t sh[2] = {2, 4};
    const float x[8] = {1e4f, -1e4f, 0.0f, 1e4f, -1e4f, -1e4f, -1e4f, -9999.0f};
    mtft_tensor *t = from(g, 2, sh, x);
    mtft_tensor *y = mtft_softmax(g, t), *ly = mtft_log_softmax(g, t);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(ly);
    assert_all_finite(mtft_tensor_data(y), 8, "softmax(1e4)");
    assert_all_finite(mtft_tensor_data(ly), 8, "log_softmax(1e4)");
    float ref[8];
    ref_softmax(x, 2, 4, 0, ref);
    mtft_assert_close(mtft_tensor_data(y), ref, 8, 1e-5f, 1e-6f, "softmax(1e4)");
    ref_softmax(x, 2, 4, 1, ref);
    mtft_assert_close(mtft_tensor_data(ly), ref, 8, 1e-6f, 1e-3f, "log_softmax(1e4)");
    ck_assert_float_eq_tol(mtft_tensor_data(y)[0], 0.5f, 1e-6f);
    mtft_graph_free(g);
}
END_TEST

/* The vectorisable exp and the lane reductions behind softmax and
 * cross-entropy. */
START_TEST(test_vexp_accuracy) {
    double worst = 0.0, worst_x = 0.0;
    for (int64_t i = 0; i <= 2000000; i++) {
        const float x = -87.25f + (float)i * (175.5f / 2000000.0f);
        const double e = exp((double)x), got = mtft__vexpf(x);
        const double rel = fabs(got - e) / e;
        if (rel > worst) worst = rel, worst_x = x;
    }
    /* relative error below 1.5 * 2^-23 (seen: 0.68 * 2^-23; libm expf 0.5 * 2^-23) */
    ck_assert_msg(worst < 1.5 * 0x1.0p-23, "vexpf: relative error %.3g at x = %.9g", worst, worst_x);
    ck_assert_float_eq(mtft__vexpf(0.0f), 1.0f);
    ck_assert_float_eq(mtft__vexpf(-100.0f), 0.0f);
    ck_assert_float_eq(mtft__vexpf(-INFINITY), 0.0f);
    ck_assert(isnan(mtft__vexpf(NAN)));
    ck_assert(isfinite(mtft__vexpf(1e4f)) && mtft__vexpf(1e4f) > 1e38f);
    /* lane reductions: every length up to 3 chunks (tails, partial lanes) */
    enum { NMAX = 3 * MTFT_EXP_CHUNK + 5 };
    static float x[NMAX], e[NMAX];
    mtft_test_fill(x, NMAX, 77, -6.0f, 6.0f);
    for (int64_t n = 1; n <= NMAX; n += (n < 40 ? 1 : 37)) {
        double m = -INFINITY, se = 0, sx = 0, sxx = 0;
        for (int64_t j = 0; j < n; j++) m = fmax(m, x[j]);
        for (int64_t j = 0; j < n; j++) se += exp((double)x[j] - m), sx += x[j], sxx += (double)x[j] * x[j];
        ck_assert_float_eq(mtft__row_max(x, n), (float)m);
        const double got = mtft__row_sum_exp(x, n, (float)m, e);
        ck_assert_msg(fabs(got - se) <= 1e-6 * se, "row_sum_exp n=%lld: %.9g vs %.9g", (long long)n, got, se);
        ck_assert_double_eq(mtft__row_sum_exp(x, n, (float)m, NULL), got); /* same lanes with or without e */
        for (int64_t j = 0; j < n; j++) ck_assert_float_eq(e[j], mtft__vexpf(x[j] - (float)m));
        ck_assert_double_eq_tol(mtft__row_dot(x, NULL, n), sx, 1e-9 * (1 + fabs(sx)) + 1e-9);
        ck_assert_double_eq_tol(mtft__row_dot(x, x, n), sxx, 1e-9 * sxx);
    }
}
END_TEST

/* ======================================================================== */
/* attention                                                                  */
/* ======================================================================== */
/* q [B,H,T,D], k/v [B,Hkv,T,D] contiguous; out [B,H,T,D]. */
static void ref_attention(const float *q, const float *k, const float *v, int B, int H, int Hkv, int T, int D,
                          int causal, const int32_t *vl, double scale, float *out) {
    double *s = malloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int hk = h / (H / Hkv), L = vl ? vl[b] : T;
            for (int t = 0; t < T; t++) {
                float *o = out + (((size_t)b * H + h) * T + t) * D;
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                if (t >= L) continue;
                double m = -INFINITY, z = 0;
                for (int j = 0; j < T; j++) {
                    int allowed = j < L && (!causal || j <= t);
                    s[j] = -INFINITY;
                    if (!allowed) continue;
                    double acc = 0;
                    for (int d = 0; d < D; d++)
                        acc += (double)q[(((size_t)b * H + h) * T + t) * D + d] * k[(((size_t)b * Hkv + hk) * T + j) * D + d];
                    s[j] = acc * scale;
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j < T; j++) z += s[j] == -INFINITY ? 0.0 : exp(s[j] - m);
                for (int d = 0; d < D; d++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        if (s[j] != -INFINITY) acc += exp(s[j] - m) / z * v[(((size_t)b * Hkv + hk) * T + j) * D + d];
                    o[d] = (float)acc;
                }
            }
        }
    free(s);
}

typedef struct attn_case {
    int B, H, Hkv, T, D, causal;
    const int32_t *vl;
    float scale;
} attn_case;

static void check_attention_forward(const attn_case *c, uint64_t seed) {
    mtft_graph *g = new_graph(1);
    const int64_t qs[4] = {c->B, c->H, c->T, c->D}, ks[4] = {c->B, c->Hkv, c->T, c->D};
    const int64_t nq = (int64_t)c->B * c->H * c->T * c->D, nk = (int64_t)c->B * c->Hkv * c->T * c->D;
    float *q = malloc((size_t)nq * sizeof(float)), *k = malloc((size_t)nk * sizeof(float));
    float *v = malloc((size_t)nk * sizeof(float)), *ref = malloc((size_t)nq * sizeof(float));
    mtft_test_fill(q, nq, seed, -1.5f, 1.5f);
    mtft_test_fill(k, nk, seed + 1, -1.5f, 1.5f);
    mtft_test_fill(v, nk, seed + 2, -1.0f, 1.0f);
    mtft_tensor *o = mtft_attention(g, from(g, 4, qs, q), from(g, 4, ks, k), from(g, 4, ks, v), c->causal, c->vl,
                                    c->scale);
    ck_assert_msg(o != NULL, "attention: %s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tensor_numel(o), nq);
    double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->D);
    ref_attention(q, k, v, c->B, c->H, c->Hkv, c->T, c->D, c->causal, c->vl, scale, ref);
    /* float dot, softmax and weighted sum vs double: rtol 1e-4, atol 1e-5 */
    mtft_assert_close(mtft_tensor_data(o), ref, nq, 1e-4f, 1e-5f, "attention forward");
    assert_all_finite(mtft_tensor_data(o), nq, "attention forward");
    free(q), free(k), free(v), free(ref);
    mtft_graph_free(g);
}

START_TEST(test_attention_forward) {
    const int32_t vl2[2] = {7, 3}, vl0[2] = {0, 5};
    attn_case cases[] = {
        {2, 2, 2, 7, 8, 0, NULL, 0.0f},  /* bidirectional */
        {2, 2, 2, 7, 8, 1, NULL, 0.0f},  /* causal */
        {2, 4, 2, 7, 8, 1, NULL, 0.3f},  /* GQA, explicit scale */
        {2, 4, 1, 7, 4, 0, vl2, 0.0f},   /* MQA, padding, bidirectional */
        {2, 4, 2, 7, 8, 1, vl2, 0.0f},   /* GQA, padding, causal */
        {2, 2, 2, 5, 3, 0, vl0, 0.0f},   /* a fully padded row of the batch */
        {1, 2, 2, 70, 16, 1, NULL, 0.0f}, /* longer sequence */
        {1, 1, 1, 1, 1, 1, NULL, 0.0f},   /* all sizes 1 */
        {3, 3, 1, 2, 5, 0, NULL, 0.0f}    /* odd sizes, MQA */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_attention_forward(&cases[i], 10 + i);
}
END_TEST

/* Padded query rows are zeros (never NaN), even for valid_len 0. */
START_TEST(test_attention_padding_zeros) {
    mtft_graph *g = new_graph(1);
    const int64_t sh[4] = {2, 2, 4, 3};
    float x[48];
    mtft_test_fill(x, 48, 5, -1.0f, 1.0f);
    const int32_t vl[2] = {0, 2};
    for (int causal = 0; causal < 2; causal++) {
        mtft_tensor *o = mtft_attention(g, from(g, 4, sh, x), from(g, 4, sh, x), from(g, 4, sh, x), causal, vl, 0);
        ck_assert_ptr_nonnull(o);
        const float *od = mtft_tensor_data(o);
        for (int h = 0; h < 2; h++)
            for (int t = 0; t < 4; t++)
                for (int d = 0; d < 3; d++) {
                    ck_assert_float_eq(od[((0 * 2 + h) * 4 + t) * 3 + d], 0.0f);
                    if (t >= 2) ck_assert_float_eq(od[((1 * 2 + h) * 4 + t) * 3 + d], 0.0f);
                    else ck_assert(isfinite(od[((1 * 2 + h) * 4 + t) * 3 + d]));
                }
    }
    mtft_graph_free(g);
}
END_TEST

/* q, k, v given as transposed views of [B, T, H, D] (the usual layout after
 * the QKV projection) give the same result as contiguous [B, H, T, D]. */
START_TEST(test_attention_strided_views) {
    mtft_graph *g = new_graph(1);
    enum { B = 2, T = 6, H = 4, HKV = 2, D = 5 };
    const int64_t qsh[4] = {B, T, H, D}, ksh[4] = {B, T, HKV, D};
    float q[B * T * H * D], k[B * T * HKV * D], v[B * T * HKV * D];
    mtft_test_fill(q, B * T * H * D, 21, -1, 1);
    mtft_test_fill(k, B * T * HKV * D, 22, -1, 1);
    mtft_test_fill(v, B * T * HKV * D, 23, -1, 1);
    mtft_tensor *qv = mtft_transpose(g, from(g, 4, qsh, q), 1, 2);
    mtft_tensor *kv = mtft_transpose(g, from(g, 4, ksh, k), 1, 2);
    mtft_tensor *vv = mtft_transpose(g, from(g, 4, ksh, v), 1, 2);
    ck_assert(!mtft_tensor_is_contiguous(qv));
    const int32_t vl[B] = {6, 4};
    mtft_tensor *o = mtft_attention(g, qv, kv, vv, 1, vl, 0);
    ck_assert_msg(o != NULL, "%s", mtft_error_last()->message);
    float qc[B * H * T * D], kc[B * HKV * T * D], vc[B * HKV * T * D], ref[B * H * T * D];
    read_logical(qv, qc);
    read_logical(kv, kc);
    read_logical(vv, vc);
    ref_attention(qc, kc, vc, B, H, HKV, T, D, 1, vl, 1.0 / sqrt(D), ref);
    mtft_assert_close(mtft_tensor_data(o), ref, B * H * T * D, 1e-4f, 1e-5f, "attention on strided views");
    mtft_graph_free(g);
}
END_TEST

static mtft_tensor *fn_attention(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const attn_case *c = ctx;
    return mtft_attention(g, in[0], in[1], in[2], c->causal, c->vl, c->scale);
}

static void check_attention_grad(const char *name, const attn_case *c, uint64_t seed) {
    const int64_t nq = (int64_t)c->B * c->H * c->T * c->D, nk = (int64_t)c->B * c->Hkv * c->T * c->D;
    float *q = malloc((size_t)nq * sizeof(float)), *k = malloc((size_t)nk * sizeof(float));
    float *v = malloc((size_t)nk * sizeof(float));
    mtft_test_fill(q, nq, seed, -1.0f, 1.0f);
    mtft_test_fill(k, nk, seed + 1, -1.0f, 1.0f);
    mtft_test_fill(v, nk, seed + 2, -1.0f, 1.0f);
    mtft_gradcheck_input in[3] = {
        {4, {c->B, c->H, c->T, c->D}, q, 1},
        {4, {c->B, c->Hkv, c->T, c->D}, k, 1},
        {4, {c->B, c->Hkv, c->T, c->D}, v, 1},
    };
    /* smooth in q, k, v (masks are fixed): eps 1e-2, atol 3e-4, rtol 3e-3 */
    mtft_gradcheck(name, fn_attention, (void *)c, in, 3, 1e-2f, 3e-4f, 3e-3f, 0);
    free(q), free(k), free(v);
}

START_TEST(test_attention_grad) {
    const int32_t vl[2] = {5, 3};
    attn_case bi = {2, 2, 2, 5, 4, 0, NULL, 0.0f};
    attn_case ca = {2, 2, 2, 5, 4, 1, NULL, 0.0f};
    attn_case gqa = {2, 4, 2, 5, 4, 1, NULL, 0.0f};
    attn_case gqa_bi_pad = {2, 4, 2, 5, 4, 0, vl, 0.7f};
    attn_case gqa_ca_pad = {2, 4, 2, 5, 4, 1, vl, 0.0f};
    check_attention_grad("attention bidirectional", &bi, 100);
    check_attention_grad("attention causal", &ca, 110);
    check_attention_grad("attention causal GQA H=4 Hkv=2", &gqa, 120);
    check_attention_grad("attention bidirectional GQA padded", &gqa_bi_pad, 130);
    check_attention_grad("attention causal GQA padded", &gqa_ca_pad, 140);
    /* D = 20 and T = 19: the 16-wide register tiles plus their tails (keys,
     * head dims, a partial block of queries) */
    const int32_t vl19[2] = {19, 13};
    attn_case wide = {2, 2, 1, 19, 20, 1, vl19, 0.0f};
    attn_case wide_bi = {1, 2, 2, 19, 20, 0, NULL, 0.0f};
    check_attention_grad("attention causal MQA D=20 T=19 padded", &wide, 150);
    check_attention_grad("attention bidirectional D=20 T=19", &wide_bi, 160);
}
END_TEST

/* One tensor as q, k and v: dq, dk and dv accumulate into one gradient. */
static mtft_tensor *fn_attention_self(mtft_graph *g, mtft_tensor **in, void *ctx) {
    return mtft_attention(g, in[0], in[0], in[0], *(int *)ctx, NULL, 0);
}

START_TEST(test_attention_grad_shared_input) {
    float x[1 * 2 * 19 * 20];
    for (int causal = 0; causal < 2; causal++) {
        mtft_test_fill(x, 760, 170 + causal, -1, 1);
        mtft_gradcheck_input in = {4, {1, 2, 19, 20}, x, 1};
        /* eps 1e-2, atol 3e-4, rtol 3e-3 */
        mtft_gradcheck("attention(x, x, x)", fn_attention_self, &causal, &in, 1, 1e-2f, 3e-4f, 3e-3f, 0);
    }
}
END_TEST

/* Gradient through transposed views: attention's dq/dk/dv land in the
 * [B, T, H, D] leaves in the right places. */
static mtft_tensor *fn_attention_views(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    static const int32_t vl[2] = {4, 3};
    return mtft_attention(g, mtft_transpose(g, in[0], 1, 2), mtft_transpose(g, in[1], 1, 2),
                          mtft_transpose(g, in[2], 1, 2), 1, vl, 0);
}

START_TEST(test_attention_grad_views) {
    float q[2 * 4 * 4 * 3], k[2 * 4 * 2 * 3], v[2 * 4 * 2 * 3];
    mtft_test_fill(q, 96, 31, -1, 1);
    mtft_test_fill(k, 48, 32, -1, 1);
    mtft_test_fill(v, 48, 33, -1, 1);
    mtft_gradcheck_input in[3] = {{4, {2, 4, 4, 3}, q, 1}, {4, {2, 4, 2, 3}, k, 1}, {4, {2, 4, 2, 3}, v, 1}};
    /* eps 1e-2, atol 3e-4, rtol 3e-3 */
    mtft_gradcheck("attention on transposed views", fn_attention_views, NULL, in, 3, 1e-2f, 3e-4f, 3e-3f, 0);
}
END_TEST

/* Same bits for 1 and 2 threads, forward and backward. */
START_TEST(test_attention_deterministic) {
    enum { B = 2, H = 4, HKV = 2, T = 33, D = 16 };
    const int64_t qs[4] = {B, H, T, D}, ks[4] = {B, HKV, T, D};
    static float q[B * H * T * D], k[B * HKV * T * D], v[B * HKV * T * D];
    static float out[2][B * H * T * D], dq[2][B * H * T * D], dk[2][B * HKV * T * D];
    mtft_test_fill(q, B * H * T * D, 41, -1, 1);
    mtft_test_fill(k, B * HKV * T * D, 42, -1, 1);
    mtft_test_fill(v, B * HKV * T * D, 43, -1, 1);
    const int32_t vl[B] = {T, 20};
    int saved = mtft_get_num_threads();
    for (int run = 0; run < 2; run++) {
        mtft_set_num_threads(run + 1);
        mtft_graph *g = new_graph(1);
        mtft_tensor *tq = from(g, 4, qs, q), *tk = from(g, 4, ks, k), *tv = from(g, 4, ks, v);
        mtft_tensor_set_requires_grad(g, tq, 1);
        mtft_tensor_set_requires_grad(g, tk, 1);
        mtft_tensor *o = mtft_attention(g, tq, tk, tv, 1, vl, 0);
        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(mtft_graph_backward(g, mtft_sum(g, mtft_mul(g, o, o)), NULL), 0);
        memcpy(out[run], mtft_tensor_data(o), sizeof out[run]);
        memcpy(dq[run], mtft_tensor_grad(tq), sizeof dq[run]);
        memcpy(dk[run], mtft_tensor_grad(tk), sizeof dk[run]);
        ck_assert_ptr_null(mtft_tensor_grad(tv)); /* v needs no gradient: none made */
        mtft_graph_free(g);
    }
    mtft_set_num_threads(saved);
    ck_assert(memcmp(out[0], out[1], sizeof out[0]) == 0);
    ck_assert(memcmp(dq[0], dq[1], sizeof dq[0]) == 0);
    ck_assert(memcmp(dk[0], dk[1], sizeof dk[0]) == 0);
}
END_TEST

START_TEST(test_attention_errors) {
    mtft_graph *g = new_graph(1);
    float x[512];
    mtft_test_fill(x, 512, 1, -1, 1);
    const int64_t q4[4] = {2, 4, 5, 4}, k3[4] = {2, 3, 5, 4}, kd[4] = {2, 2, 5, 8}, q3[3] = {2, 5, 4};
    assert_failed(g, mtft_attention(g, from(g, 4, q4, x), from(g, 4, k3, x), from(g, 4, k3, x), 1, NULL, 0),
                  MTFT_ESHAPE, "not a multiple of kv heads");
    assert_failed(g, mtft_attention(g, from(g, 4, q4, x), from(g, 4, kd, x), from(g, 4, kd, x), 1, NULL, 0),
                  MTFT_ESHAPE, "[2, 2, 5, 8]");
    assert_failed(g, mtft_attention(g, from(g, 3, q3, x), from(g, 3, q3, x), from(g, 3, q3, x), 1, NULL, 0),
                  MTFT_ESHAPE, "[B, H, T, D]");
    assert_failed(g, mtft_attention(g, from(g, 4, q4, x), from(g, 4, q4, x), from(g, 4, kd, x), 1, NULL, 0),
                  MTFT_ESHAPE, "differ");
    const int32_t bad[2] = {5, 6};
    assert_failed(g, mtft_attention(g, from(g, 4, q4, x), from(g, 4, q4, x), from(g, 4, q4, x), 1, bad, 0),
                  MTFT_ERANGE, "valid_len[1] = 6");
    /* a NULL input gives NULL, and later builders pass the NULL along */
    mtft_error_clear();
    ck_assert_ptr_null(mtft_attention(g, NULL, from(g, 4, q4, x), from(g, 4, q4, x), 1, NULL, 0));
    ck_assert_int_ne(mtft_graph_status(g), MTFT_OK);
    mtft_graph_free(g);
}
END_TEST

/* ======================================================================== */
/* dropout                                                                    */
/* ======================================================================== */
enum { NDROP = 100000 };

static void dropout_run(uint64_t seed, float p, float *y_out, float *dx_out) {
    mtft_graph *g = new_graph(seed);
    const int64_t sh[2] = {100, NDROP / 100};
    float *x = malloc(NDROP * sizeof(float));
    mtft_test_fill(x, NDROP, 7, 0.5f, 1.5f); /* never 0, so y == 0 means dropped */
    mtft_tensor *t = from(g, 2, sh, x);
    mtft_tensor_set_requires_grad(g, t, 1);
    mtft_tensor *y = mtft_dropout(g, t, p);
    ck_assert_ptr_nonnull(y);
    memcpy(y_out, mtft_tensor_data(y), NDROP * sizeof(float));
    if (dx_out) {
        ck_assert_int_eq(mtft_graph_backward(g, mtft_sum(g, y), NULL), 0);
        memcpy(dx_out, mtft_tensor_grad(t), NDROP * sizeof(float));
    }
    free(x);
    mtft_graph_free(g);
}

START_TEST(test_dropout_mask) {
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    float *y1 = malloc(NDROP * sizeof(float)), *y2 = malloc(NDROP * sizeof(float));
    float *y3 = malloc(NDROP * sizeof(float)), *dx = malloc(NDROP * sizeof(float));
    float *x = malloc(NDROP * sizeof(float));
    mtft_test_fill(x, NDROP, 7, 0.5f, 1.5f);
    dropout_run(99, p, y1, dx);
    dropout_run(99, p, y2, NULL);
    dropout_run(100, p, y3, NULL);
    ck_assert_msg(memcmp(y1, y2, NDROP * sizeof(float)) == 0, "same seed gave a different mask");
    int64_t kept = 0, differ = 0;
    for (int64_t i = 0; i < NDROP; i++) {
        const int k1 = y1[i] != 0.0f;
        kept += k1;
        differ += k1 != (y3[i] != 0.0f);
        /* kept elements are scaled by 1/(1-p); the gradient of sum(y) is
         * 1/(1-p) on kept elements and 0 on dropped ones */
        if (k1) ck_assert_float_eq_tol(y1[i], x[i] * scale, 1e-6f);
        ck_assert_float_eq_tol(dx[i], (k1 ? scale : 0.0f), 1e-6f);
    }
    /* kept fraction within 5 binomial standard deviations of 1-p */
    const double sd = sqrt(p * (1.0 - p) / NDROP);
    ck_assert_msg(fabs((double)kept / NDROP - (1.0 - p)) < 5 * sd, "kept fraction %g, expected %g +- %g",
                  (double)kept / NDROP, 1.0 - p, 5 * sd);
    /* a different seed changes about 2p(1-p) of the decisions */
    ck_assert_msg(fabs((double)differ / NDROP - 2 * p * (1 - p)) < 0.02, "seeds 99/100 differ on %g of elements",
                  (double)differ / NDROP);
    free(y1), free(y2), free(y3), free(dx), free(x);
}
END_TEST

START_TEST(test_dropout_calls_and_modes) {
    mtft_graph *g = new_graph(5);
    const int64_t sh[1] = {4096};
    float x[4096];
    mtft_test_fill(x, 4096, 3, 1.0f, 2.0f);
    mtft_tensor *t = from(g, 1, sh, x);
    /* two calls in one step draw different masks */
    mtft_tensor *a = mtft_dropout(g, t, 0.5f), *b = mtft_dropout(g, t, 0.5f);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert(memcmp(mtft_tensor_data(a), mtft_tensor_data(b), sizeof x) != 0);
    /* after reset the counter restarts: the first call repeats */
    float first[4096];
    memcpy(first, mtft_tensor_data(a), sizeof first);
    mtft_graph_reset(g);
    t = from(g, 1, sh, x);
    a = mtft_dropout(g, t, 0.5f);
    ck_assert(memcmp(mtft_tensor_data(a), first, sizeof first) == 0);
    /* a training loop sets a per-step seed: another seed, another mask;
     * the same seed again (a resumed step), the same mask */
    uint64_t s0 = mtft_graph_seed(g);
    mtft_graph_reset(g);
    mtft_graph_set_seed(g, s0 + 1);
    t = from(g, 1, sh, x);
    a = mtft_dropout(g, t, 0.5f);
    ck_assert(memcmp(mtft_tensor_data(a), first, sizeof first) != 0);
    mtft_graph_reset(g);
    mtft_graph_set_seed(g, s0);
    t = from(g, 1, sh, x);
    a = mtft_dropout(g, t, 0.5f);
    ck_assert(memcmp(mtft_tensor_data(a), first, sizeof first) == 0);
    /* p == 0 and eval mode: the identity (x itself) */
    ck_assert_ptr_eq(mtft_dropout(g, t, 0.0f), t);
    mtft_graph_set_training(g, 0);
    ck_assert_ptr_eq(mtft_dropout(g, t, 0.5f), t);
    mtft_assert_close(mtft_tensor_data(mtft_dropout(g, t, 0.9f)), x, 4096, 0, 0, "dropout in eval mode");
    mtft_graph_set_training(g, 1);
    assert_failed(g, mtft_dropout(g, t, 1.0f), MTFT_ERANGE, "p = 1");
    t = from(g, 1, sh, x);
    assert_failed(g, mtft_dropout(g, t, -0.1f), MTFT_ERANGE, "outside [0, 1)");
    mtft_graph_free(g);
}
END_TEST

/* The documented mask: keep_i = [mtft_rng_hash_uniform(stream, i) >= p] with
 * stream = seed ^ mix64(call number), mix64 the splitmix64 finaliser
 * (dropout.c). The kernel inlines the hash; this pins it to the public one. */
static uint64_t test_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

START_TEST(test_dropout_matches_hash) {
    enum { N = 40000 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = 1.0f;
    const float ps[5] = {0.1f, 0.5f, 0.3333333f, 1e-7f, 0.9999f};
    const int64_t sh[1] = {N};
    mtft_graph *g = new_graph(0x1234567890abcdefULL);
    for (int k = 0; k < 5; k++) {
        mtft_tensor *y = mtft_dropout(g, from(g, 1, sh, x), ps[k]); /* call number k + 1 */
        ck_assert_ptr_nonnull(y);
        const uint64_t stream = 0x1234567890abcdefULL ^ test_mix64((uint64_t)k + 1);
        const float *yd = mtft_tensor_data(y);
        for (int i = 0; i < N; i++) {
            const int keep = mtft_rng_hash_uniform(stream, (uint64_t)i) >= ps[k];
            ck_assert_msg((yd[i] != 0.0f) == keep, "p %g element %d: kept %d, hash says %d", (double)ps[k], i,
                          yd[i] != 0.0f, keep);
        }
    }
    mtft_graph_free(g);
}
END_TEST

static mtft_tensor *fn_dropout(mtft_graph *g, mtft_tensor **in, void *ctx) {
    return mtft_dropout(g, in[0], *(float *)ctx);
}

START_TEST(test_dropout_grad) {
    float x[60], p = 0.4f;
    mtft_test_fill(x, 60, 9, -1, 1);
    mtft_gradcheck_input in = {2, {6, 10}, x, 1};
    /* linear in x for a fixed mask (the graph seed and counter are the same
     * on every evaluation): eps 1e-2, atol 1e-4, rtol 1e-3 */
    mtft_gradcheck("dropout", fn_dropout, &p, &in, 1, 1e-2f, 1e-4f, 1e-3f, 0);
}
END_TEST

/* ======================================================================== */
/* sum, mean, pool                                                            */
/* ======================================================================== */
START_TEST(test_reduce_forward) {
    mtft_graph *g = new_graph(1);
    const int64_t N = 100003; /* several chunks, not a multiple of the chunk */
    float *x = malloc((size_t)N * sizeof(float));
    mtft_test_fill(x, N, 4, -1.0f, 3.0f);
    double s = 0;
    for (int64_t i = 0; i < N; i++) s += x[i];
    const int64_t sh[1] = {N};
    mtft_tensor *t = from(g, 1, sh, x);
    mtft_tensor *ts = mtft_sum(g, t), *tm = mtft_mean(g, t);
    ck_assert_int_eq(mtft_tensor_numel(ts), 1);
    float es = (float)s, em = (float)(s / N);
    mtft_assert_close(mtft_tensor_data(ts), &es, 1, 1e-6f, 0, "sum");
    mtft_assert_close(mtft_tensor_data(tm), &em, 1, 1e-6f, 0, "mean");
    /* sum of a strided view (transpose) */
    const int64_t sh2[2] = {3, 5};
    mtft_tensor *tt = mtft_transpose(g, from(g, 2, sh2, x), 0, 1);
    double s15 = 0;
    for (int i = 0; i < 15; i++) s15 += x[i];
    float e15 = (float)s15;
    mtft_assert_close(mtft_tensor_data(mtft_sum(g, tt)), &e15, 1, 1e-6f, 1e-6f, "sum of a view");
    free(x);
    mtft_graph_free(g);
}
END_TEST

static mtft_tensor *fn_sum(mtft_graph *g, mtft_tensor **in, void *ctx) {
    return *(int *)ctx ? mtft_mean(g, in[0]) : mtft_sum(g, in[0]);
}

START_TEST(test_reduce_grad) {
    float x[24];
    for (int mode = 0; mode < 2; mode++) {
        mtft_test_fill(x, 24, 5, -1, 1);
        mtft_gradcheck_input in = {3, {2, 3, 4}, x, 1};
        /* linear: eps 1e-2, atol 1e-4, rtol 1e-3 */
        mtft_gradcheck(mode ? "mean" : "sum", fn_sum, &mode, &in, 1, 1e-2f, 1e-4f, 1e-3f, 0);
    }
}
END_TEST

static void ref_pool(const float *x, int B, int T, int C, const int32_t *vl, int mode, float *y) {
    for (int b = 0; b < B; b++) {
        int L = vl ? vl[b] : T;
        int t0 = mode == MTFT_POOL_MEAN ? 0 : mode == MTFT_POOL_LAST ? L - 1 : 0;
        int t1 = mode == MTFT_POOL_MEAN ? L : t0 + 1;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int t = t0; t < t1; t++) s += x[(b * T + t) * C + c];
            y[b * C + c] = (float)(s / (t1 - t0));
        }
    }
}

typedef struct pool_ctx {
    const int32_t *vl;
    int mode;
} pool_ctx;

static mtft_tensor *fn_pool(mtft_graph *g, mtft_tensor **in, void *ctx) {
    pool_ctx *c = ctx;
    return mtft_pool(g, in[0], c->vl, (mtft_pool_mode)c->mode);
}

START_TEST(test_pool) {
    enum { B = 3, T = 5, C = 70 }; /* C > 64: two channel blocks */
    const int32_t vl[B] = {5, 2, 1};
    const int64_t sh[3] = {B, T, C};
    static float x[B * T * C];
    float y[B * C], ref[B * C];
    mtft_test_fill(x, B * T * C, 6, -1, 1);
    mtft_graph *g = new_graph(1);
    for (int mode = 0; mode < 3; mode++)
        for (int withlen = 0; withlen < 2; withlen++) {
            const int32_t *l = withlen ? vl : NULL;
            mtft_tensor *o = mtft_pool(g, from(g, 3, sh, x), l, (mtft_pool_mode)mode);
            ck_assert_msg(o != NULL, "%s", mtft_error_last()->message);
            ck_assert_int_eq(mtft_tensor_dim(o, 0), B);
            ck_assert_int_eq(mtft_tensor_dim(o, 1), C);
            ref_pool(x, B, T, C, l, mode, ref);
            memcpy(y, mtft_tensor_data(o), sizeof y);
            mtft_assert_close(y, ref, B * C, 1e-6f, 1e-7f, "pool");
            pool_ctx pc = {l, mode};
            float xs[2 * 5 * 3];
            mtft_test_fill(xs, 30, 7 + mode, -1, 1);
            mtft_gradcheck_input in = {3, {2, 5, 3}, xs, 1};
            /* linear: eps 1e-2, atol 1e-4, rtol 1e-3 */
            mtft_gradcheck("pool", fn_pool, &pc, &in, 1, 1e-2f, 1e-4f, 1e-3f, 0);
        }
    const int32_t bad[B] = {5, 0, 1};
    assert_failed(g, mtft_pool(g, from(g, 3, sh, x), bad, MTFT_POOL_MEAN), MTFT_ERANGE, "valid_len[1] = 0");
    const int64_t sh2[2] = {B, T};
    assert_failed(g, mtft_pool(g, from(g, 2, sh2, x), NULL, MTFT_POOL_MEAN), MTFT_ESHAPE, "[3, 5]");
    mtft_graph_free(g);
}
END_TEST

/* ======================================================================== */
/* losses                                                                     */
/* ======================================================================== */
static double ref_ce(const float *x, const int32_t *t, int N, int V, int ignore, double ls) {
    double tot = 0;
    int M = 0;
    for (int r = 0; r < N; r++) {
        if (t[r] == ignore) continue;
        double m = -INFINITY, s = 0, sm = 0;
        for (int j = 0; j < V; j++) m = fmax(m, x[r * V + j]);
        for (int j = 0; j < V; j++) s += exp(x[r * V + j] - m);
        double lse = m + log(s);
        for (int j = 0; j < V; j++) sm += -(x[r * V + j] - lse);
        tot += (1 - ls) * (lse - x[r * V + t[r]]) + ls * sm / V;
        M++;
    }
    return M ? tot / M : 0.0;
}

typedef struct ce_ctx {
    const int32_t *t;
    int ignore;
    float ls;
} ce_ctx;

static mtft_tensor *fn_ce(mtft_graph *g, mtft_tensor **in, void *ctx) {
    ce_ctx *c = ctx;
    return mtft_cross_entropy(g, in[0], c->t, c->ignore, c->ls);
}

START_TEST(test_cross_entropy) {
    enum { N = 6, V = 9 };
    float x[N * V];
    mtft_test_fill(x, N * V, 8, -3, 3);
    const int32_t t[N] = {0, 8, -100, 3, 4, -100};
    const int64_t sh3[3] = {2, 3, V};
    mtft_graph *g = new_graph(1);
    const float lss[3] = {0.0f, 0.1f, 0.5f};
    for (int i = 0; i < 3; i++) {
        mtft_tensor *l = mtft_cross_entropy(g, from(g, 3, sh3, x), t, -100, lss[i]);
        ck_assert_msg(l != NULL, "%s", mtft_error_last()->message);
        ck_assert_int_eq(mtft_tensor_numel(l), 1);
        float e = (float)ref_ce(x, t, N, V, -100, lss[i]);
        mtft_assert_close(mtft_tensor_data(l), &e, 1, 1e-5f, 1e-6f, "cross_entropy");
        ce_ctx c = {t, -100, lss[i]};
        mtft_gradcheck_input in = {3, {2, 3, V}, x, 1};
        /* smooth: eps 1e-2, atol 3e-4, rtol 3e-3 */
        mtft_gradcheck("cross_entropy", fn_ce, &c, &in, 1, 1e-2f, 3e-4f, 3e-3f, 0);
    }
    /* all rows ignored: loss 0, gradient 0 */
    const int32_t all_ignored[N] = {-1, -1, -1, -1, -1, -1};
    mtft_tensor *xt = from(g, 3, sh3, x);
    mtft_tensor_set_requires_grad(g, xt, 1);
    mtft_tensor *l = mtft_cross_entropy(g, xt, all_ignored, -1, 0.1f);
    ck_assert_ptr_nonnull(l);
    ck_assert_float_eq(mtft_tensor_data(l)[0], 0.0f);
    ck_assert_int_eq(mtft_graph_backward(g, l, NULL), 0);
    const float *gx = mtft_tensor_grad(xt);
    for (int i = 0; gx && i < N * V; i++) ck_assert_float_eq(gx[i], 0.0f);
    /* bad targets name the row and the value */
    const int32_t bad[N] = {0, 1, 2, 9, 4, 5};
    assert_failed(g, mtft_cross_entropy(g, from(g, 3, sh3, x), bad, -100, 0), MTFT_ERANGE, "target 9 at row 3");
    const int32_t neg[N] = {0, 1, 2, 3, -7, 5};
    assert_failed(g, mtft_cross_entropy(g, from(g, 3, sh3, x), neg, -100, 0), MTFT_ERANGE, "target -7 at row 4");
    assert_failed(g, mtft_cross_entropy(g, from(g, 3, sh3, x), t, -100, 1.0f), MTFT_ERANGE, "label_smoothing");
    mtft_graph_free(g);
}
END_TEST

/* A large vocabulary, several threads' worth of rows. */
START_TEST(test_cross_entropy_large) {
    enum { N = 64, V = 5003 };
    float *x = malloc((size_t)N * V * sizeof(float));
    int32_t t[N];
    mtft_test_fill(x, (int64_t)N * V, 11, -5, 5);
    for (int r = 0; r < N; r++) t[r] = (r * 7919) % V;
    t[5] = -100;
    mtft_graph *g = new_graph(1);
    const int64_t sh[2] = {N, V};
    mtft_tensor *xt = from(g, 2, sh, x);
    mtft_tensor_set_requires_grad(g, xt, 1);
    mtft_tensor *l = mtft_cross_entropy(g, xt, t, -100, 0.1f);
    ck_assert_ptr_nonnull(l);
    float e = (float)ref_ce(x, t, N, V, -100, 0.1);
    mtft_assert_close(mtft_tensor_data(l), &e, 1, 1e-5f, 0, "cross_entropy V=5003");
    ck_assert_int_eq(mtft_graph_backward(g, l, NULL), 0);
    /* each counted row's gradient sums to 0 (softmax sums to 1, targets too);
     * the ignored row has none */
    const float *gx = mtft_tensor_grad(xt);
    for (int r = 0; r < N; r++) {
        double s = 0, a = 0;
        for (int j = 0; j < V; j++) s += gx[(size_t)r * V + j], a += fabs(gx[(size_t)r * V + j]);
        ck_assert_double_eq_tol(s, 0.0, 1e-6);
        if (r == 5) ck_assert_double_eq(a, 0.0);
        else ck_assert_double_gt(a, 0.0);
    }
    free(x);
    mtft_graph_free(g);
}
END_TEST

START_TEST(test_cross_entropy_extreme) {
    mtft_graph *g = new_graph(1);
    const float x[6] = {1e4f, -1e4f, 0.0f, -1e4f, -1e4f, 1e4f};
    const int32_t t[2] = {1, 2};
    const int64_t sh[2] = {2, 3};
    mtft_tensor *xt = from(g, 2, sh, x);
    mtft_tensor_set_requires_grad(g, xt, 1);
    mtft_tensor *l = mtft_cross_entropy(g, xt, t, -100, 0.1f);
    ck_assert_ptr_nonnull(l);
    assert_all_finite(mtft_tensor_data(l), 1, "cross_entropy(1e4)");
    float e = (float)ref_ce(x, t, 2, 3, -100, 0.1);
    mtft_assert_close(mtft_tensor_data(l), &e, 1, 1e-5f, 0, "cross_entropy(1e4)");
    ck_assert_int_eq(mtft_graph_backward(g, l, NULL), 0);
    assert_all_finite(mtft_tensor_grad(xt), 6, "cross_entropy(1e4) gradient");
    /* row 0: softmax = (1, 0, 0); d/dx = (p - (1-ls) onehot - ls/V) / 2 */
    const float ls = 0.1f;
    const float eg[3] = {(1 - ls / 3) / 2, (0 - (1 - ls) - ls / 3) / 2, (0 - ls / 3) / 2};
    mtft_assert_close(mtft_tensor_grad(xt), eg, 3, 1e-5f, 1e-6f, "cross_entropy(1e4) gradient row 0");
    mtft_graph_free(g);
}
END_TEST

typedef struct reg_ctx {
    int kind; /* 0 mse, 1 huber, 2 bce */
    const float *y, *mask;
    float delta;
} reg_ctx;

static mtft_tensor *fn_reg(mtft_graph *g, mtft_tensor **in, void *ctx) {
    reg_ctx *c = ctx;
    switch (c->kind) {
    case 0: return mtft_mse(g, in[0], c->y);
    case 1: return mtft_huber(g, in[0], c->y, c->delta);
    default: return mtft_bce_logits(g, in[0], c->y, c->mask);
    }
}

START_TEST(test_regression_losses) {
    enum { N = 40 };
    float x[N], y[N], yb[N], mask[N];
    mtft_test_fill(x, N, 12, -3, 3);
    mtft_test_fill(y, N, 13, -3, 3);
    mtft_test_fill(yb, N, 14, 0, 1); /* soft labels */
    for (int i = 0; i < N; i++) mask[i] = (i % 3) ? 1.0f : 0.0f;
    const float delta = 1.0f;
    /* keep |x - y| away from delta (the Huber kink) so differences are smooth */
    for (int i = 0; i < N; i++)
        if (fabsf(fabsf(x[i] - y[i]) - delta) < 0.05f) x[i] += 0.2f;
    double mse = 0, hub = 0, bce = 0, bcem = 0, cnt = 0;
    for (int i = 0; i < N; i++) {
        double d = (double)x[i] - y[i], ad = fabs(d);
        mse += d * d;
        hub += ad < delta ? 0.5 * d * d : delta * (ad - 0.5 * delta);
        /* the textbook form, -(y log s + (1-y) log(1-s)) */
        double s = 1 / (1 + exp(-(double)x[i]));
        double l = -(yb[i] * log(s) + (1 - yb[i]) * log(1 - s));
        bce += l;
        if (mask[i] != 0) bcem += l, cnt++;
    }
    mtft_graph *g = new_graph(1);
    const int64_t sh[2] = {4, 10};
    float e;
    e = (float)(mse / N);
    mtft_assert_close(mtft_tensor_data(mtft_mse(g, from(g, 2, sh, x), y)), &e, 1, 1e-5f, 0, "mse");
    e = (float)(hub / N);
    mtft_assert_close(mtft_tensor_data(mtft_huber(g, from(g, 2, sh, x), y, delta)), &e, 1, 1e-5f, 0, "huber");
    e = (float)(bce / N);
    mtft_assert_close(mtft_tensor_data(mtft_bce_logits(g, from(g, 2, sh, x), yb, NULL)), &e, 1, 1e-5f, 0, "bce");
    e = (float)(bcem / cnt);
    mtft_assert_close(mtft_tensor_data(mtft_bce_logits(g, from(g, 2, sh, x), yb, mask)), &e, 1, 1e-5f, 0,
                      "bce masked");
    /* bce at |x| = 1e4 stays finite: log1p(exp(-|x|)) form */
    const float big[4] = {1e4f, -1e4f, 1e4f, -1e4f}, by[4] = {1, 0, 0, 1};
    const int64_t s4[1] = {4};
    e = (float)((0 + 0 + 1e4 + 1e4) / 4);
    mtft_assert_close(mtft_tensor_data(mtft_bce_logits(g, from(g, 1, s4, big), by, NULL)), &e, 1, 1e-6f, 0,
                      "bce(1e4)");
    /* gradients: mse and bce smooth, huber away from its kink:
     * eps 1e-2, atol 3e-4, rtol 3e-3 */
    reg_ctx cs[4] = {{0, y, NULL, 0}, {1, y, NULL, delta}, {2, yb, NULL, 0}, {2, yb, mask, 0}};
    const char *names[4] = {"mse", "huber", "bce_logits", "bce_logits masked"};
    for (int i = 0; i < 4; i++) {
        mtft_gradcheck_input in = {2, {4, 10}, x, 1};
        mtft_gradcheck(names[i], fn_reg, &cs[i], &in, 1, 1e-2f, 3e-4f, 3e-3f, 0);
    }
    /* errors */
    assert_failed(g, mtft_huber(g, from(g, 2, sh, x), y, 0.0f), MTFT_ERANGE, "delta");
    assert_failed(g, mtft_mse(g, from(g, 2, sh, x), NULL), MTFT_EINVAL, "targets");
    float badmask[N];
    memcpy(badmask, mask, sizeof badmask);
    badmask[7] = 0.5f;
    assert_failed(g, mtft_bce_logits(g, from(g, 2, sh, x), yb, badmask), MTFT_ERANGE, "mask[7]");
    mtft_graph_free(g);
}
END_TEST

/* ======================================================================== */
/* shape ops                                                                  */
/* ======================================================================== */
START_TEST(test_shape_views_forward) {
    mtft_graph *g = new_graph(1);
    float x[2 * 3 * 4];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    const int64_t sh[3] = {2, 3, 4};
    mtft_tensor *t = from(g, 3, sh, x);
    /* reshape with -1 shares data */
    const int64_t rs[2] = {-1, 6};
    mtft_tensor *r = mtft_reshape(g, t, 2, rs);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(mtft_tensor_dim(r, 0), 4);
    ck_assert_int_eq(mtft_tensor_dim(r, 1), 6);
    ck_assert_ptr_eq(mtft_tensor_data(r), mtft_tensor_data(t));
    /* slice of dim 1: [:, 1:3, :] */
    mtft_tensor *s = mtft_slice(g, t, 1, 1, 2);
    ck_assert_ptr_nonnull(s);
    float got[24], ref[24];
    read_logical(s, got);
    int k = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 1; b < 3; b++)
            for (int c = 0; c < 4; c++) ref[k++] = x[(a * 3 + b) * 4 + c];
    mtft_assert_close(got, ref, 16, 0, 0, "slice");
    ck_assert(!mtft_tensor_is_contiguous(s));
    /* transpose(0, 2) -> [4, 3, 2] */
    mtft_tensor *tr = mtft_transpose(g, t, 0, -1);
    ck_assert_int_eq(mtft_tensor_dim(tr, 0), 4);
    ck_assert_int_eq(mtft_tensor_dim(tr, 2), 2);
    read_logical(tr, got);
    k = 0;
    for (int c = 0; c < 4; c++)
        for (int b = 0; b < 3; b++)
            for (int a = 0; a < 2; a++) ref[k++] = x[(a * 3 + b) * 4 + c];
    mtft_assert_close(got, ref, 24, 0, 0, "transpose");
    /* contiguous copies the view in logical order; x itself when contiguous */
    mtft_tensor *c = mtft_contiguous(g, tr);
    ck_assert(mtft_tensor_is_contiguous(c));
    ck_assert_ptr_ne(mtft_tensor_data(c), mtft_tensor_data(t));
    mtft_assert_close(mtft_tensor_data(c), ref, 24, 0, 0, "contiguous");
    ck_assert_ptr_eq(mtft_contiguous(g, t), t);
    /* a slice of a transpose */
    mtft_tensor *st = mtft_slice(g, tr, 0, 1, 2); /* [2, 3, 2]: c = 1..2 */
    read_logical(st, got);
    mtft_assert_close(got, ref + 6, 12, 0, 0, "slice of transpose");
    mtft_graph_free(g);
}
END_TEST

START_TEST(test_concat_forward) {
    mtft_graph *g = new_graph(1);
    float a[2 * 3 * 4], b[2 * 1 * 4], c[2 * 3 * 2];
    mtft_test_fill(a, 24, 1, -1, 1);
    mtft_test_fill(b, 8, 2, -1, 1);
    mtft_test_fill(c, 12, 3, -1, 1);
    const int64_t sa[3] = {2, 3, 4}, sb[3] = {2, 1, 4}, sc[3] = {2, 3, 2};
    mtft_tensor *ta = from(g, 3, sa, a), *tb = from(g, 3, sb, b), *tc = from(g, 3, sc, c);
    mtft_tensor *xs1[3] = {ta, tb, ta};
    mtft_tensor *y = mtft_concat(g, xs1, 3, 1); /* [2, 7, 4] */
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(mtft_tensor_dim(y, 1), 7);
    const float *yd = mtft_tensor_data(y);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 7; j++)
            for (int k = 0; k < 4; k++) {
                float e = j < 3 ? a[(i * 3 + j) * 4 + k] : j == 3 ? b[i * 4 + k] : a[(i * 3 + j - 4) * 4 + k];
                ck_assert_float_eq(yd[(i * 7 + j) * 4 + k], e);
            }
    mtft_tensor *xs2[2] = {ta, tc};
    y = mtft_concat(g, xs2, 2, -1); /* [2, 3, 6] */
    ck_assert_ptr_nonnull(y);
    yd = mtft_tensor_data(y);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 6; k++) ck_assert_float_eq(yd[i * 6 + k], k < 4 ? a[i * 4 + k] : c[i * 2 + k - 4]);
    /* along dim 0, with a strided (transposed) input */
    const int64_t s43[2] = {4, 3}, s34[2] = {3, 4};
    mtft_tensor *m1 = from(g, 2, s34, a), *m2 = mtft_transpose(g, from(g, 2, s43, c), 0, 1);
    mtft_tensor *xs3[2] = {m1, m2};
    y = mtft_concat(g, xs3, 2, 0); /* [6, 4] */
    ck_assert_ptr_nonnull(y);
    yd = mtft_tensor_data(y);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++) ck_assert_float_eq(yd[i * 4 + k], i < 3 ? a[i * 4 + k] : c[k * 3 + (i - 3)]);
    mtft_graph_free(g);
}
END_TEST

/* y = softmax(view) for views built from x: the view's gradient reaches x. */
static mtft_tensor *fn_views(mtft_graph *g, mtft_tensor **in, void *ctx) {
    mtft_tensor *x = in[0]; /* [2, 3, 4] */
    switch (*(int *)ctx) {
    case 0: { /* reshape then softmax over 6 */
        const int64_t s[2] = {4, -1};
        return mtft_softmax(g, mtft_reshape(g, x, 2, s));
    }
    case 1: /* slice feeding softmax (auto contiguous) */
        return mtft_softmax(g, mtft_slice(g, x, 2, 1, 3));
    case 2: /* transpose feeding log_softmax */
        return mtft_log_softmax(g, mtft_transpose(g, x, 1, 2));
    case 3: /* slice of a transpose, made contiguous, times itself */
    {
        mtft_tensor *c = mtft_contiguous(g, mtft_slice(g, mtft_transpose(g, x, 0, 2), 0, 1, 2));
        return mtft_mul(g, c, c);
    }
    case 4: /* the raw view as the output (read through strides) */
        return mtft_slice(g, mtft_transpose(g, x, 0, 1), 1, 1, 1);
    case 5: /* transpose of a slice (a view of a view), then contiguous */
    {
        mtft_tensor *c = mtft_contiguous(g, mtft_transpose(g, mtft_slice(g, x, 2, 1, 2), 0, 2));
        return mtft_mul(g, c, c);
    }
    case 6: /* the fused-QKV pattern: slices of transpose(reshape(x)), and the
             * transposed view itself consumed too (both routes reach x) */
    {
        const int64_t s4[4] = {2, 3, 2, 2};
        mtft_tensor *v = mtft_transpose(g, mtft_reshape(g, x, 4, s4), 1, 2); /* [2, 2, 3, 2] */
        mtft_tensor *a = mtft_contiguous(g, mtft_slice(g, v, 1, 0, 1));
        mtft_tensor *b = mtft_contiguous(g, mtft_slice(g, mtft_transpose(g, mtft_slice(g, v, 1, 1, 1), 2, 2), 1, 0, 1));
        mtft_tensor *parts[3] = {mtft_mul(g, a, a), mtft_contiguous(g, v), mtft_softmax(g, b)};
        return mtft_concat(g, parts, 3, 1);
    }
    default: { /* two overlapping slices feeding one sum: accumulation */
        mtft_tensor *a = mtft_contiguous(g, mtft_slice(g, x, 1, 0, 2));
        mtft_tensor *b = mtft_contiguous(g, mtft_slice(g, x, 1, 1, 2));
        return mtft_mul(g, a, b);
    }
    }
}

START_TEST(test_shape_views_grad) {
    float x[24];
    const char *names[8] = {"reshape", "slice->softmax", "transpose->log_softmax", "slice(transpose)->contiguous",
                            "view output", "transpose(slice)->contiguous", "slices of transpose(reshape)",
                            "overlapping slices"};
    for (int mode = 0; mode < 8; mode++) {
        mtft_test_fill(x, 24, 50 + mode, -1, 1);
        mtft_gradcheck_input in = {3, {2, 3, 4}, x, 1};
        /* eps 1e-2, atol 3e-4, rtol 3e-3 */
        mtft_gradcheck(names[mode], fn_views, &mode, &in, 1, 1e-2f, 3e-4f, 3e-3f, 0);
    }
}
END_TEST

static mtft_tensor *fn_concat(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const int dim = *(int *)ctx;
    /* in: a [2,3,4]; b, c shaped to fit along dim; a repeated, with a view */
    if (dim == 3) { /* six inputs: more than a node's in[] holds */
        mtft_tensor *xs[6] = {in[0], in[1], in[0], in[2], in[1], in[0]};
        return mtft_concat(g, xs, 6, 1);
    }
    mtft_tensor *xs[4] = {in[0], in[1], in[2], mtft_slice(g, in[0], dim, 1, 1)};
    mtft_tensor *y = mtft_concat(g, xs, 4, dim);
    return mtft_mul(g, y, y);
}

START_TEST(test_concat_grad) {
    float a[24], b[24], c[24];
    for (int dim = 0; dim < 4; dim++) {
        const int d = dim == 3 ? 1 : dim;
        mtft_test_fill(a, 24, 60 + dim, -1, 1);
        mtft_test_fill(b, 24, 70 + dim, -1, 1);
        mtft_test_fill(c, 24, 80 + dim, -1, 1);
        mtft_gradcheck_input in[3] = {{3, {2, 3, 4}, a, 1}, {3, {2, 3, 4}, b, 1}, {3, {2, 3, 4}, c, 0}};
        in[1].shape[d] = 1; /* b is thinner along the concat dim */
        in[2].shape[d] = 2;
        /* eps 1e-2, atol 3e-4, rtol 3e-3 */
        mtft_gradcheck("concat", fn_concat, (void *)&dim, in, 3, 1e-2f, 3e-4f, 3e-3f, 0);
    }
}
END_TEST

START_TEST(test_shape_errors) {
    mtft_graph *g = new_graph(1);
    float x[24] = {0};
    const int64_t sh[3] = {2, 3, 4};
    const int64_t r5[2] = {5, -1}, r2[2] = {-1, -1}, r7[2] = {4, 7};
    assert_failed(g, mtft_reshape(g, from(g, 3, sh, x), 2, r5), MTFT_ESHAPE, "not a multiple");
    assert_failed(g, mtft_reshape(g, from(g, 3, sh, x), 2, r2), MTFT_ESHAPE, "more than one -1");
    assert_failed(g, mtft_reshape(g, from(g, 3, sh, x), 2, r7), MTFT_ESHAPE, "[2, 3, 4] has 24 elements");
    assert_failed(g, mtft_reshape(g, mtft_transpose(g, from(g, 3, sh, x), 0, 1), 2, r5), MTFT_EINVAL,
                  "not contiguous");
    assert_failed(g, mtft_slice(g, from(g, 3, sh, x), 1, 2, 2), MTFT_ERANGE, "[2, 4) of dim 1");
    assert_failed(g, mtft_slice(g, from(g, 3, sh, x), 3, 0, 1), MTFT_EINVAL, "dim 3");
    assert_failed(g, mtft_transpose(g, from(g, 3, sh, x), 0, 5), MTFT_EINVAL, "dims 0, 5");
    const int64_t other[3] = {2, 2, 3};
    mtft_tensor *xs[2] = {from(g, 3, sh, x), from(g, 3, other, x)};
    assert_failed(g, mtft_concat(g, xs, 2, 1), MTFT_ESHAPE, "tensor 1 has shape [2, 2, 3]");
    assert_failed(g, mtft_concat(g, xs, 0, 1), MTFT_EINVAL, "at least one");
    /* sticky status: after a failure, later builders return NULL too */
    ck_assert_ptr_null(mtft_reshape(g, from(g, 3, sh, x), 2, r5));
    ck_assert_ptr_null(mtft_softmax(g, from(g, 3, sh, x)));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESHAPE);
    mtft_graph_free(g);
}
END_TEST

/* Row ops, reductions, losses, dropout and view backward give the same bits
 * with 1 and 2 threads (sizes above every parallel threshold). */
static void run_rows(float *out, int64_t *n_out) {
    enum { R = 96, C = 700 };
    static float x[R * C];
    static int32_t tg[R];
    mtft_test_fill(x, R * C, 91, -4, 4);
    for (int i = 0; i < R; i++) tg[i] = i % 7 == 0 ? -100 : (i * 31) % C;
    mtft_graph *g = new_graph(17);
    const int64_t sh[2] = {R, C}, s3[3] = {R / 4, 4, C};
    mtft_tensor *t = from(g, 2, sh, x);
    mtft_tensor_set_requires_grad(g, t, 1);
    mtft_tensor *d = mtft_dropout(g, t, 0.2f);
    mtft_tensor *sm = mtft_softmax(g, d);
    mtft_tensor *ls = mtft_transpose(g, mtft_log_softmax(g, mtft_transpose(g, d, 0, 1)), 0, 1);
    mtft_tensor *ce = mtft_cross_entropy(g, d, tg, -100, 0.1f);
    mtft_tensor *pool = mtft_pool(g, mtft_reshape(g, d, 3, s3), NULL, MTFT_POOL_MEAN);
    mtft_tensor *cat = mtft_concat(g, (mtft_tensor *[]){sm, ls}, 2, 0);
    mtft_tensor *loss = mtft_add(g, ce, mtft_add(g, mtft_mean(g, mtft_mul(g, cat, cat)), mtft_sum(g, mtft_mul(g, pool, pool))));
    ck_assert_msg(loss != NULL, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), 0);
    int64_t k = 0;
    out[k++] = mtft_tensor_data(loss)[0];
    memcpy(out + k, mtft_tensor_data(cat), sizeof(float) * 2 * R * C), k += 2 * R * C;
    memcpy(out + k, mtft_tensor_grad(t), sizeof(float) * R * C), k += R * C;
    *n_out = k;
    mtft_graph_free(g);
}

START_TEST(test_rows_deterministic) {
    static float a[4 * 96 * 700], b[4 * 96 * 700];
    int64_t na = 0, nb = 0;
    const int saved = mtft_get_num_threads();
    mtft_set_num_threads(1);
    run_rows(a, &na);
    mtft_set_num_threads(2);
    run_rows(b, &nb);
    mtft_set_num_threads(saved);
    ck_assert_int_eq(na, nb);
    ck_assert_msg(memcmp(a, b, (size_t)na * sizeof(float)) == 0, "1 and 2 threads differ");
    assert_all_finite(a, na, "rows");
}
END_TEST

/* Each op records one named node when an input needs a gradient, none with
 * grad disabled or when no input needs one; views alias data. */
START_TEST(test_tape_nodes) {
    mtft_graph *g = new_graph(3);
    float x[2 * 2 * 4 * 3];
    mtft_test_fill(x, 48, 1, -1, 1);
    const int64_t sh[4] = {2, 2, 4, 3}, s2[2] = {16, 3};
    const int32_t tg[16] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
    for (int pass = 0; pass < 3; pass++) {
        mtft_graph_reset(g);
        mtft_graph_set_grad_enabled(g, pass != 1);
        mtft_tensor *t = from(g, 4, sh, x);
        if (pass != 2) mtft_tensor_set_requires_grad(g, t, 1);
        mtft_tensor *outs[17];
        int k = 0;
        outs[k++] = mtft_softmax(g, t);
        outs[k++] = mtft_log_softmax(g, t);
        outs[k++] = mtft_attention(g, t, t, t, 1, NULL, 0);
        outs[k++] = mtft_dropout(g, t, 0.5f);
        outs[k++] = mtft_sum(g, t);
        outs[k++] = mtft_mean(g, t);
        outs[k++] = mtft_pool(g, mtft_reshape(g, t, 3, (const int64_t[]){4, 4, 3}), NULL, MTFT_POOL_MEAN);
        outs[k++] = mtft_cross_entropy(g, mtft_reshape(g, t, 2, s2), tg, -100, 0);
        outs[k++] = mtft_mse(g, t, x);
        outs[k++] = mtft_huber(g, t, x, 1.0f);
        outs[k++] = mtft_bce_logits(g, t, x, NULL);
        outs[k++] = mtft_slice(g, t, 2, 1, 2);
        outs[k] = mtft_transpose(g, t, 1, 2);
        outs[k + 1] = mtft_contiguous(g, outs[k]);
        k += 2;
        outs[k++] = mtft_concat(g, (mtft_tensor *[]){t, t}, 2, 0);
        for (int i = 0; i < k; i++) ck_assert_msg(outs[i] != NULL, "op %d: %s", i, mtft_error_last()->message);
        const char *expect[] = {"softmax", "log_softmax", "attention", "dropout", "sum", "mean", "reshape", "pool",
                                "reshape", "cross_entropy", "mse", "huber", "bce_logits", "slice", "transpose",
                                "contiguous", "concat"};
        const int ne = (int)(sizeof expect / sizeof expect[0]);
        if (pass == 0) {
            ck_assert_int_eq(mtft_graph_n_nodes(g), ne);
            for (int i = 0; i < ne; i++) ck_assert_str_eq(mtft_graph_node_op(g, i), expect[i]);
            ck_assert(mtft_tensor_requires_grad(outs[2]));
        } else {
            ck_assert_int_eq(mtft_graph_n_nodes(g), 0);
            ck_assert(!mtft_tensor_requires_grad(outs[2]));
        }
        /* views share data, copies do not */
        ck_assert_ptr_eq(mtft_tensor_data(outs[12]), mtft_tensor_data(t));
        ck_assert_ptr_eq(mtft_tensor_data(outs[11]), mtft_tensor_data(t) + 1 * 3);
        ck_assert_ptr_ne(mtft_tensor_data(outs[13]), mtft_tensor_data(t));
    }
    mtft_graph_free(g);
}
END_TEST

static Suite *ops_b_suite(void) {
    Suite *s = suite_create("ops_b");
    TCase *fw = tcase_create("forward");
    tcase_add_test(fw, test_softmax_forward);
    tcase_add_test(fw, test_softmax_extreme);
    tcase_add_test(fw, test_vexp_accuracy);
    tcase_add_test(fw, test_attention_forward);
    tcase_add_test(fw, test_attention_padding_zeros);
    tcase_add_test(fw, test_attention_strided_views);
    tcase_add_test(fw, test_reduce_forward);
    tcase_add_test(fw, test_shape_views_forward);
    tcase_add_test(fw, test_concat_forward);
    tcase_add_test(fw, test_cross_entropy_extreme);
    tcase_add_test(fw, test_cross_entropy_large);
    suite_add_tcase(s, fw);
    TCase *gr = tcase_create("grad");
    tcase_set_timeout(gr, 120);
    tcase_add_test(gr, test_softmax_grad);
    tcase_add_test(gr, test_attention_grad);
    tcase_add_test(gr, test_attention_grad_views);
    tcase_add_test(gr, test_attention_grad_shared_input);
    tcase_add_test(gr, test_attention_deterministic);
    tcase_add_test(gr, test_rows_deterministic);
    tcase_add_test(gr, test_dropout_grad);
    tcase_add_test(gr, test_reduce_grad);
    tcase_add_test(gr, test_pool);
    tcase_add_test(gr, test_cross_entropy);
    tcase_add_test(gr, test_regression_losses);
    tcase_add_test(gr, test_shape_views_grad);
    tcase_add_test(gr, test_concat_grad);
    suite_add_tcase(s, gr);
    TCase *dr = tcase_create("dropout");
    tcase_add_test(dr, test_dropout_mask);
    tcase_add_test(dr, test_dropout_calls_and_modes);
    tcase_add_test(dr, test_dropout_matches_hash);
    suite_add_tcase(s, dr);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_attention_errors);
    tcase_add_test(lim, test_shape_errors);
    tcase_add_test(lim, test_tape_nodes);
    suite_add_tcase(s, lim);
    return s;
}

int main(void) { return mtft_test_run(ops_b_suite()); }
