/* ctest-labels: unit */
/* Task heads: every kind's loss against a naive double computation,
 * pooling with right padding, ignored tokens, prompt-masked LM loss, class
 * weights and label smoothing as PyTorch defines them, target
 * standardisation, finite-difference gradients of head parameters and of the
 * hidden states, predictions, save/load, errors, and the mixed-task batch:
 * one forward and one backward give the same per-task losses and gradients
 * as separate single-task batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mtft/head.h"
#include "mtft/peft.h"
#include "mtft_test.h"

#define IGN MTFT_HEAD_IGNORE_INDEX

/* ---- small helpers ---------------------------------------------------------------- */
static mtft_graph *new_graph(void) {
    mtft_graph *g = NULL;
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = 1 << 20;
    ck_assert_int_eq(mtft_graph_new(&g, &go), MTFT_OK);
    return g;
}

/* Non-zero biases so that they matter in the checks, and larger weights than
 * the N(0, 0.02) init, so that logits differ visibly. */
static void fill_params(mtft_head *h, uint64_t seed) {
    mtft_param_group *pg = mtft_head_group(h);
    for (int i = 0; i < mtft_param_group_count(pg); i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        if (strstr(mtft_tensor_name(t), "bias"))
            mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), seed + 7 + (uint64_t)i, -0.5f, 0.5f);
        else
            mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), seed + 3 + (uint64_t)i, -0.8f, 0.8f);
    }
}

static mtft_head *new_head(mtft_head_kind kind, int C, int L, void (*tweak)(mtft_head_options *), uint64_t seed) {
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.kind = kind;
    o.n_labels = L;
    o.name = "t";
    if (tweak) tweak(&o);
    mtft_head *h = NULL;
    int rc = mtft_head_new(&h, C, &o, seed);
    ck_assert_msg(rc == MTFT_OK, "head_new: %s", mtft_error_last()->message);
    fill_params(h, seed);
    return h;
}

static const float *param(mtft_head *h, const char *name) {
    mtft_tensor *t = mtft_param_group_find(mtft_head_group(h), name);
    ck_assert_msg(t != NULL, "no parameter %s", name);
    return mtft_tensor_data(t);
}

static mtft_tensor *leaf(mtft_graph *g, int b, int T, int C, const float *x, int requires_grad) {
    const int64_t s[3] = {b, T, C};
    mtft_tensor *t = mtft_from_data(g, 3, s, x);
    ck_assert_ptr_nonnull(t);
    if (requires_grad) ck_assert_int_eq(mtft_tensor_set_requires_grad(g, t, 1), MTFT_OK);
    return t;
}

static float loss_value(mtft_tensor *l) {
    ck_assert_msg(l != NULL, "loss failed: %s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tensor_numel(l), 1);
    return mtft_tensor_data(l)[0];
}

static void assert_rel(double got, double want, double rtol, const char *what) {
    ck_assert_msg(fabs(got - want) <= rtol * fabs(want) + 1e-7, "%s: got %.9g, expected %.9g", what, got, want);
}

/* ---- naive double references -------------------------------------------------------- */
static void naive_pool(const float *x, int b, int T, int C, const int32_t *len, mtft_pool_mode mode, double *out) {
    for (int r = 0; r < b; r++) {
        int n = len ? len[r] : T, t0 = 0, t1 = n;
        if (mode == MTFT_POOL_LAST) t0 = n - 1;
        if (mode == MTFT_POOL_FIRST) t1 = 1;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int t = t0; t < t1; t++) s += x[((size_t)r * T + t) * C + c];
            out[r * C + c] = s / (t1 - t0);
        }
    }
}

/* y[n, o] = x[n, i] W[o, i]^T + bias */
static void naive_linear(const double *x, int n, int in, const float *W, const float *bias, int od, double *y) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < od; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < in; i++) s += x[r * in + i] * (double)W[o * in + i];
            y[r * od + o] = s;
        }
}

/* PyTorch CrossEntropyLoss(weight=w or None, ignore_index=-100, label_smoothing=ls), mean. */
static double naive_ce(const double *z, int n, int L, const int32_t *y, const float *w, double ls) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        if (y[i] == IGN) continue;
        const double *zi = z + (size_t)i * L;
        double m = zi[0], s = 0;
        for (int c = 1; c < L; c++) m = zi[c] > m ? zi[c] : m;
        for (int c = 0; c < L; c++) s += exp(zi[c] - m);
        const double lse = m + log(s);
        double smooth = 0;
        for (int c = 0; c < L; c++) smooth += (w ? w[c] : 1.0) * (lse - zi[c]);
        const double wy = w ? w[y[i]] : 1.0;
        num += (1 - ls) * wy * (lse - zi[y[i]]) + ls / L * smooth;
        den += wy;
    }
    return den > 0 ? num / den : 0.0;
}

/* ---- per-kind losses against naive references --------------------------------------- */
enum { B3 = 3, T5 = 5, C4 = 4 };
static const int32_t len3[B3] = {5, 2, 3};

static void opt_smooth_weights(mtft_head_options *o) {
    static const float w[3] = {0.5f, 2.0f, 1.25f};
    o->label_smoothing = 0.1f;
    o->class_weights = w;
    o->pool = MTFT_POOL_MEAN;
}

START_TEST(test_heads_classification_loss) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 11, -1, 1);
    const int32_t y[B3] = {2, 0, 1};
    const mtft_head_targets tg = {y, NULL, NULL, 0};
    mtft_graph *g = new_graph();
    for (int variant = 0; variant < 3; variant++) {
        /* 0: plain, pool last; 1: smoothing + class weights, pool mean; 2: tanh hidden layer, pool first */
        mtft_head *h = NULL;
        if (variant == 0) h = new_head(MTFT_HEAD_CLASSIFICATION, C4, 3, NULL, 5);
        if (variant == 1) h = new_head(MTFT_HEAD_CLASSIFICATION, C4, 3, opt_smooth_weights, 5);
        if (variant == 2) {
            mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
            o.n_labels = 3;
            o.hidden_size = 6;
            o.pool = MTFT_POOL_FIRST;
            ck_assert_int_eq(mtft_head_new(&h, C4, &o, 9), MTFT_OK);
            fill_params(h, 9);
            ck_assert_int_eq(mtft_param_group_count(mtft_head_group(h)), 4);
        }
        const mtft_head_options *o = mtft_head_get_options(h);
        mtft_graph_reset(g);
        float got = loss_value(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &tg));
        double pooled[B3 * C4], hid[B3 * 6], z[B3 * 3];
        naive_pool(x, B3, T5, C4, len3, o->pool, pooled);
        const double *in = pooled;
        int inw = C4;
        if (variant == 2) {
            naive_linear(pooled, B3, C4, param(h, "dense.weight"), param(h, "dense.bias"), 6, hid);
            for (int i = 0; i < B3 * 6; i++) hid[i] = tanh(hid[i]);
            in = hid;
            inw = 6;
        }
        naive_linear(in, B3, inw, param(h, "out_proj.weight"), param(h, "out_proj.bias"), 3, z);
        double want = naive_ce(z, B3, 3, y, o->class_weights, o->label_smoothing);
        assert_rel(got, want, 1e-5, "classification loss");
        /* the reference is sensitive to what it checks: another label gives another loss */
        ck_assert(fabs(want - naive_ce(z, B3, 3, (const int32_t[]){1, 0, 1}, o->class_weights, o->label_smoothing)) > 1e-3);
        mtft_head_free(h);
    }
    mtft_graph_free(g);
}
END_TEST

/* Pooling: padding positions hold huge values that must never leak in. */
START_TEST(test_heads_pooling_right_padding) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 21, -1, 1);
    for (int r = 0; r < B3; r++)
        for (int t = len3[r]; t < T5; t++)
            for (int c = 0; c < C4; c++) x[(r * T5 + t) * C4 + c] = 1000.0f;
    const mtft_pool_mode modes[3] = {MTFT_POOL_LAST, MTFT_POOL_MEAN, MTFT_POOL_FIRST};
    mtft_graph *g = new_graph();
    double prev[B3 * 2] = {0};
    for (int k = 0; k < 3; k++) {
        mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
        o.kind = MTFT_HEAD_REGRESSION;
        o.n_labels = 2;
        o.pool = modes[k];
        mtft_head *h = NULL;
        ck_assert_int_eq(mtft_head_new(&h, C4, &o, 3), MTFT_OK);
        mtft_graph_reset(g);
        mtft_tensor *out = mtft_head_forward(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3);
        ck_assert_ptr_nonnull(out);
        ck_assert_int_eq(mtft_tensor_ndim(out), 2);
        ck_assert_int_eq(mtft_tensor_dim(out, 0), B3);
        ck_assert_int_eq(mtft_tensor_dim(out, 1), 2);
        double pooled[B3 * C4], z[B3 * 2];
        naive_pool(x, B3, T5, C4, len3, modes[k], pooled);
        naive_linear(pooled, B3, C4, param(h, "out_proj.weight"), param(h, "out_proj.bias"), 2, z);
        float zf[B3 * 2];
        for (int i = 0; i < B3 * 2; i++) {
            zf[i] = (float)z[i];
            ck_assert(fabs(z[i]) < 10.0); /* no padding leaked in */
        }
        mtft_assert_close(mtft_tensor_data(out), zf, B3 * 2, 1e-5f, 1e-6f, "pooled head output");
        /* the three modes give different outputs here */
        if (k > 0) ck_assert(fabs(z[0] - prev[0]) + fabs(z[2] - prev[2]) > 1e-4);
        memcpy(prev, z, sizeof prev);
        mtft_head_free(h);
    }
    mtft_graph_free(g);
}
END_TEST

START_TEST(test_heads_multilabel_loss) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 31, -1, 1);
    /* labels at stride 5 (as an mtft_batch's label_width), soft target in row 2 */
    const float yv[B3 * 5] = {1, 0, 1, 1, -9, 0, 0, 0, 0, -9, 1, 0.25f, 0, 1, -9};
    const mtft_head_targets tg = {NULL, NULL, yv, 5};
    mtft_head *h = new_head(MTFT_HEAD_MULTILABEL, C4, 4, NULL, 8);
    mtft_graph *g = new_graph();
    float got = loss_value(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &tg));
    double pooled[B3 * C4], z[B3 * 4], want = 0;
    naive_pool(x, B3, T5, C4, len3, MTFT_POOL_LAST, pooled);
    naive_linear(pooled, B3, C4, param(h, "out_proj.weight"), param(h, "out_proj.bias"), 4, z);
    for (int r = 0; r < B3; r++)
        for (int j = 0; j < 4; j++) {
            double p = 1 / (1 + exp(-z[r * 4 + j])), t = yv[r * 5 + j];
            want -= t * log(p) + (1 - t) * log(1 - p);
        }
    want /= B3 * 4;
    assert_rel(got, want, 1e-5, "multi-label BCE");
    /* a target outside [0, 1] is named */
    mtft_graph_reset(g);
    const float bad[B3 * 4] = {1, 0, 1, 1, 0, 0, 2, 0, 1, 0, 0, 1};
    const mtft_head_targets tb = {NULL, NULL, bad, 0};
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &tb));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ERANGE);
    ck_assert_msg(strstr(mtft_error_last()->message, "row 1, label 2") != NULL, "%s", mtft_error_last()->message);
    mtft_graph_free(g);
    mtft_head_free(h);
}
END_TEST

static void opt_huber(mtft_head_options *o) {
    o->loss = MTFT_HEAD_LOSS_HUBER;
    o->huber_delta = 0.7f;
    o->pool = MTFT_POOL_MEAN;
}

START_TEST(test_heads_regression_loss_standardised) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 41, -1, 1);
    const float y[B3 * 2] = {10.0f, -3.0f, 14.0f, -1.0f, 9.0f, 2.0f};
    const mtft_head_targets tg = {NULL, NULL, y, 0};
    mtft_graph *g = new_graph();
    for (int huber = 0; huber < 2; huber++) {
        mtft_head *h = new_head(MTFT_HEAD_REGRESSION, C4, 2, huber ? opt_huber : NULL, 12);
        ck_assert_int_eq(mtft_head_fit_target_stats(h, y, B3, 0), MTFT_OK);
        float mean[2], sd[2];
        ck_assert_int_eq(mtft_head_get_target_stats(h, mean, sd, 2), MTFT_OK);
        /* population statistics by hand: target 0: 10, 14, 9 -> mean 11, var (1+9+4)/3 */
        assert_rel(mean[0], 11.0, 1e-6, "mean[0]");
        assert_rel(sd[0], sqrt(14.0 / 3.0), 1e-6, "std[0]");
        assert_rel(mean[1], -2.0 / 3.0, 1e-6, "mean[1]");
        assert_rel(sd[1], sqrt(((-3 + 2.0 / 3) * (-3 + 2.0 / 3) + (-1 + 2.0 / 3) * (-1 + 2.0 / 3) +
                                (2 + 2.0 / 3) * (2 + 2.0 / 3)) / 3.0),
                   1e-6, "std[1]");
        mtft_graph_reset(g);
        float got = loss_value(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &tg));
        const mtft_head_options *o = mtft_head_get_options(h);
        double pooled[B3 * C4], z[B3 * 2], want = 0;
        naive_pool(x, B3, T5, C4, len3, o->pool, pooled);
        naive_linear(pooled, B3, C4, param(h, "out_proj.weight"), param(h, "out_proj.bias"), 2, z);
        for (int i = 0; i < B3 * 2; i++) {
            double d = fabs(z[i] - (y[i] - mean[i % 2]) / sd[i % 2]);
            want += huber ? (d < 0.7 ? 0.5 * d * d : 0.7 * (d - 0.35)) : d * d;
        }
        want /= B3 * 2;
        assert_rel(got, want, 1e-5, huber ? "huber loss" : "mse loss");
        mtft_head_free(h);
    }
    mtft_graph_free(g);
}
END_TEST

/* Round trip: a head whose standardised output equals the standardised
 * target has loss 0 and predicts the target in original units. */
START_TEST(test_heads_regression_round_trip) {
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.kind = MTFT_HEAD_REGRESSION;
    o.n_labels = 2;
    mtft_head *h = NULL;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 1), MTFT_OK);
    const float mean[2] = {100.0f, -5.0f}, sd[2] = {20.0f, 0.5f};
    ck_assert_int_eq(mtft_head_set_target_stats(h, mean, sd, 2), MTFT_OK);
    const float y[2] = {130.0f, -4.25f}; /* standardised: 1.5, 1.5 */
    float *w = (float *)param(h, "out_proj.weight"), *b = (float *)param(h, "out_proj.bias");
    memset(w, 0, 2 * C4 * sizeof(float));
    b[0] = (y[0] - mean[0]) / sd[0];
    b[1] = (y[1] - mean[1]) / sd[1];
    float x[1 * T5 * C4];
    mtft_test_fill(x, T5 * C4, 3, -1, 1);
    mtft_graph *g = new_graph();
    const mtft_head_targets tg = {NULL, NULL, y, 0};
    ck_assert(fabs(loss_value(mtft_head_loss(h, g, NULL, leaf(g, 1, T5, C4, x, 0), NULL, &tg))) < 1e-10);
    float pred[2];
    ck_assert_int_eq(mtft_head_predict(h, g, NULL, leaf(g, 1, T5, C4, x, 0), NULL, NULL, pred), MTFT_OK);
    mtft_assert_close(pred, y, 2, 1e-6f, 0, "prediction in original units");
    /* without standardisation the same head predicts the raw output */
    ck_assert(fabs(pred[0] - b[0]) > 1.0f);
    mtft_head_free(h);
    o.standardize = 0;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 1), MTFT_OK);
    ck_assert_int_eq(mtft_head_set_target_stats(h, mean, sd, 2), MTFT_OK);
    w = (float *)param(h, "out_proj.weight");
    b = (float *)param(h, "out_proj.bias");
    memset(w, 0, 2 * C4 * sizeof(float));
    b[0] = 7.0f;
    b[1] = -2.0f;
    ck_assert_int_eq(mtft_head_predict(h, g, NULL, leaf(g, 1, T5, C4, x, 0), NULL, NULL, pred), MTFT_OK);
    mtft_assert_close(pred, (const float[]){7.0f, -2.0f}, 2, 0, 0, "unstandardised prediction");
    /* bad statistics */
    ck_assert_int_eq(mtft_head_set_target_stats(h, mean, (const float[]){1.0f, 0.0f}, 2), MTFT_ERANGE);
    ck_assert_int_eq(mtft_head_set_target_stats(h, mean, sd, 3), MTFT_ESHAPE);
    /* constant target: std 1 */
    const float cst[3] = {4, 4, 4};
    float m1[2], s1[2];
    mtft_head_free(h);
    o.n_labels = 1;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 1), MTFT_OK);
    ck_assert_int_eq(mtft_head_fit_target_stats(h, cst, 3, 0), MTFT_OK);
    ck_assert_int_eq(mtft_head_get_target_stats(h, m1, s1, 1), MTFT_OK);
    ck_assert(m1[0] == 4.0f && s1[0] == 1.0f);
    mtft_head_free(h);
    mtft_graph_free(g);
}
END_TEST

/* Token classification: -100 (continuation sub-tokens) and padding never count,
 * even when a padding position carries a valid (or out-of-range) tag. */
START_TEST(test_heads_token_classification_ignores) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 51, -1, 1);
    const int32_t tags[B3 * T5] = {
        0, IGN, 2, 1, IGN, /* row 0 (len 5) */
        3, 1, 2, 2, 99,    /* row 1 (len 2): positions 2..4 are padding */
        IGN, 0, 3, 1, 1,   /* row 2 (len 3) */
    };
    const mtft_head_targets tg = {NULL, tags, NULL, 0};
    mtft_graph *g = new_graph();
    for (int weighted = 0; weighted < 2; weighted++) {
        mtft_head *h = NULL;
        mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
        const float cw[4] = {1.0f, 0.5f, 3.0f, 2.0f};
        o.kind = MTFT_HEAD_TOKEN_CLASSIFICATION;
        o.n_labels = 4;
        o.hidden_size = 5;
        o.activation = MTFT_HEAD_ACT_GELU;
        if (weighted) {
            o.class_weights = cw;
            o.label_smoothing = 0.2f;
        }
        ck_assert_int_eq(mtft_head_new(&h, C4, &o, 77), MTFT_OK);
        fill_params(h, 77);
        mtft_graph_reset(g);
        float got = loss_value(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &tg));
        double xd[B3 * T5 * C4], hid[B3 * T5 * 5], z[B3 * T5 * 4];
        int32_t eff[B3 * T5];
        for (int i = 0; i < B3 * T5 * C4; i++) xd[i] = x[i];
        naive_linear(xd, B3 * T5, C4, param(h, "dense.weight"), param(h, "dense.bias"), 5, hid);
        for (int i = 0; i < B3 * T5 * 5; i++) hid[i] = 0.5 * hid[i] * (1 + erf(hid[i] / sqrt(2.0)));
        naive_linear(hid, B3 * T5, 5, param(h, "out_proj.weight"), param(h, "out_proj.bias"), 4, z);
        for (int r = 0; r < B3; r++)
            for (int t = 0; t < T5; t++) eff[r * T5 + t] = t < len3[r] ? tags[r * T5 + t] : IGN;
        double want = naive_ce(z, B3 * T5, 4, eff, weighted ? cw : NULL, weighted ? 0.2 : 0.0);
        assert_rel(got, want, 1e-5, weighted ? "weighted token CE" : "token CE");
        /* counting a padding tag would change the loss: the check can fail */
        eff[1 * T5 + 2] = 2;
        ck_assert(fabs(want - naive_ce(z, B3 * T5, 4, eff, weighted ? cw : NULL, weighted ? 0.2 : 0.0)) > 1e-4);
        /* predictions: argmax tags, -100 past valid_len */
        int32_t ids[B3 * T5];
        float probs[B3 * T5 * 4];
        ck_assert_int_eq(mtft_head_predict(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, ids, probs), MTFT_OK);
        for (int r = 0; r < B3; r++)
            for (int t = 0; t < T5; t++) {
                const int i = r * T5 + t;
                if (t >= len3[r]) {
                    ck_assert_int_eq(ids[i], IGN);
                    continue;
                }
                int am = 0;
                double ps = 0;
                for (int c = 0; c < 4; c++) {
                    if (z[i * 4 + c] > z[i * 4 + am]) am = c;
                    ps += probs[i * 4 + c];
                }
                ck_assert_int_eq(ids[i], am);
                assert_rel(ps, 1.0, 1e-5, "probabilities sum to 1");
            }
        mtft_head_free(h);
    }
    mtft_graph_free(g);
}
END_TEST

/* ---- LM head --------------------------------------------------------------------------- */
static mtft_model *tiny_model(uint64_t seed) {
    mtft_model_config cfg = MTFT_MODEL_CONFIG_INIT;
    cfg.vocab_size = 13;
    cfg.n_ctx = 16;
    cfg.n_embd = 8;
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_kv_head = 2;
    cfg.n_ff = 16;
    mtft_model *m = NULL;
    int rc = mtft_model_new(&m, &cfg, seed);
    ck_assert_msg(rc == MTFT_OK, "model_new: %s", mtft_error_last()->message);
    return m;
}

/* Loss on target tokens only: prompt (-100) and padding give no loss and no
 * gradient; the tied LM head is the model's wte. */
START_TEST(test_heads_lm_prompt_masked) {
    enum { B = 2, T = 6, C = 8, V = 13 };
    mtft_model *m = tiny_model(4);
    float x[B * T * C];
    mtft_test_fill(x, B * T * C, 61, -1, 1);
    const int32_t len[B] = {6, 4};
    /* row 0: prompt of 3 tokens, then targets; row 1: prompt 2, targets, then padding with garbage */
    const int32_t lab[B * T] = {IGN, IGN, 5, 7, 1, 12, IGN, 3, 3, 9, 4, 4};
    const mtft_head_targets tg = {NULL, lab, NULL, 0};
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.kind = MTFT_HEAD_LM;
    o.n_labels = 0;
    mtft_head *h = NULL;
    ck_assert_int_eq(mtft_head_new(&h, C, &o, 1), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_count(mtft_head_group(h)), 0);
    ck_assert_int_eq(mtft_head_output_dim(h, m), V);
    mtft_param_group_zero_grad(mtft_model_base_group(m));
    mtft_graph *g = new_graph();
    mtft_tensor *hid = leaf(g, B, T, C, x, 1);
    mtft_tensor *l = mtft_head_loss(h, g, m, hid, len, &tg);
    float got = loss_value(l);
    const float *wte = mtft_tensor_data(mtft_param_group_find(mtft_model_base_group(m), "wte.weight"));
    double xd[B * T * C], z[B * T * V];
    for (int i = 0; i < B * T * C; i++) xd[i] = x[i];
    naive_linear(xd, B * T, C, wte, NULL, V, z);
    int32_t eff[B * T];
    int counted = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            eff[r * T + t] = t < len[r] ? lab[r * T + t] : IGN;
            counted += eff[r * T + t] != IGN;
        }
    ck_assert_int_eq(counted, 7);
    assert_rel(got, naive_ce(z, B * T, V, eff, NULL, 0.0), 1e-5, "LM loss on target tokens");
    ck_assert_int_eq(mtft_graph_backward(g, l, NULL), MTFT_OK);
    const float *gh = mtft_tensor_grad(hid);
    ck_assert_ptr_nonnull(gh);
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += fabs(gh[(r * T + t) * C + c]);
            if (eff[r * T + t] == IGN) ck_assert_msg(s == 0.0, "gradient at masked position (%d, %d)", r, t);
            else ck_assert_msg(s > 0.0, "no gradient at target position (%d, %d)", r, t);
        }
    /* logits were computed at the 7 target tokens only: the tape gathers rows first */
    int gathered = 0;
    for (int i = 0; i < mtft_graph_n_nodes(g); i++) gathered += strcmp(mtft_graph_node_op(g, i), "head_gather_rows") == 0;
    ck_assert_int_eq(gathered, 1);
    /* every position a target (plain causal LM, no padding): the full path */
    {
        mtft_graph *g2 = new_graph();
        int32_t all[B * T];
        for (int i = 0; i < B * T; i++) all[i] = (i * 5 + 1) % V;
        const mtft_head_targets ta = {NULL, all, NULL, 0};
        float full = loss_value(mtft_head_loss(h, g2, m, leaf(g2, B, T, C, x, 0), NULL, &ta));
        assert_rel(full, naive_ce(z, B * T, V, all, NULL, 0.0), 1e-5, "LM loss, all positions");
        /* no target at all: loss 0, and backward works */
        for (int i = 0; i < B * T; i++) all[i] = IGN;
        mtft_graph_reset(g2);
        mtft_tensor *h0 = leaf(g2, B, T, C, x, 1);
        mtft_tensor *l0 = mtft_head_loss(h, g2, m, h0, NULL, &ta);
        ck_assert(loss_value(l0) == 0.0f);
        ck_assert_int_eq(mtft_graph_backward(g2, l0, NULL), MTFT_OK);
        mtft_graph_free(g2);
    }
    /* the tied embedding received the LM head's gradient */
    size_t ng = 0;
    const float *gb = mtft_param_group_grad(mtft_model_base_group(m), &ng);
    double gs = 0;
    for (size_t i = 0; i < ng; i++) gs += fabs(gb[i]);
    ck_assert(gs > 0);
    /* predict: logits and argmax next token, -100 past valid_len */
    int32_t ids[B * T];
    float *lg = malloc(sizeof(float) * B * T * V);
    ck_assert_int_eq(mtft_head_predict(h, g, m, leaf(g, B, T, C, x, 0), len, ids, lg), MTFT_OK);
    for (int i = 0; i < B * T; i++) {
        int am = 0;
        for (int v = 0; v < V; v++) {
            ck_assert(fabs(lg[i * V + v] - z[i * V + v]) < 1e-4);
            if (z[i * V + v] > z[i * V + am]) am = v;
        }
        ck_assert_int_eq(ids[i], (i % T) < len[i / T] ? am : IGN);
    }
    free(lg);
    /* without the model the tied head cannot run */
    mtft_graph_reset(g);
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B, T, C, x, 0), len, &tg));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_EINVAL);
    /* a target token outside the vocabulary names the row and position */
    mtft_graph_reset(g);
    int32_t bad[B * T];
    memcpy(bad, lab, sizeof bad);
    bad[1 * T + 2] = 13;
    const mtft_head_targets tb = {NULL, bad, NULL, 0};
    ck_assert_ptr_null(mtft_head_loss(h, g, m, leaf(g, B, T, C, x, 0), len, &tb));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ERANGE);
    ck_assert_msg(strstr(mtft_error_last()->message, "13 at row 1, token 2 outside [0, 13)") != NULL, "%s",
                  mtft_error_last()->message);
    mtft_graph_free(g);
    mtft_head_free(h);
    mtft_model_free(m);
}
END_TEST

/* ---- gradients ------------------------------------------------------------------------ */
typedef struct grad_case {
    mtft_head *h;
    mtft_model *m;
    int b, T, C;
    float *x;
    const int32_t *len;
    mtft_head_targets tg;
} grad_case;

static mtft_tensor *case_loss(mtft_graph *g, grad_case *gc, int x_grad, mtft_tensor **xt) {
    mtft_tensor *x = leaf(g, gc->b, gc->T, gc->C, gc->x, x_grad);
    if (xt) *xt = x;
    return mtft_head_loss(gc->h, g, gc->m, x, gc->len, &gc->tg);
}

/* Central differences over every float of the head's parameter block. */
static void check_param_grads(const char *what, grad_case *gc) {
    mtft_param_group *pg = mtft_head_group(gc->h);
    mtft_param_group_zero_grad(pg);
    mtft_graph *g = new_graph();
    mtft_tensor *l = case_loss(g, gc, 0, NULL);
    loss_value(l);
    ck_assert_int_eq(mtft_graph_backward(g, l, NULL), MTFT_OK);
    size_t n = 0, ng = 0;
    float *d = mtft_param_group_data(pg, &n);
    const float *gr = mtft_param_group_grad(pg, &ng);
    ck_assert_uint_eq(n, ng);
    ck_assert(n > 0);
    mtft_graph_set_grad_enabled(g, 0);
    const float eps = 5e-3f;
    double max_ana = 0;
    for (size_t i = 0; i < n; i++) {
        const float orig = d[i];
        d[i] = orig + eps;
        mtft_graph_reset(g);
        double lp = loss_value(case_loss(g, gc, 0, NULL));
        d[i] = orig - eps;
        mtft_graph_reset(g);
        double lm = loss_value(case_loss(g, gc, 0, NULL));
        d[i] = orig;
        double num = (lp - lm) / (2.0 * eps);
        ck_assert_msg(fabs(gr[i] - num) <= 3e-4 + 1e-2 * fabs(num),
                      "%s: parameter float %zu: analytic %.7g vs numeric %.7g", what, i, (double)gr[i], num);
        if (fabs(gr[i]) > max_ana) max_ana = fabs(gr[i]);
    }
    ck_assert_msg(max_ana > 1e-3, "%s: all parameter gradients vanish", what);
    mtft_graph_free(g);
}

static mtft_tensor *gc_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    grad_case *gc = ctx;
    return mtft_head_loss(gc->h, g, gc->m, in[0], gc->len, &gc->tg);
}

static void check_hidden_grads(const char *what, grad_case *gc) {
    mtft_gradcheck_input in = {3, {gc->b, gc->T, gc->C}, gc->x, 1};
    mtft_gradcheck_result r = mtft_gradcheck(what, gc_fn, gc, &in, 1, 5e-3f, 3e-4f, 1e-2f, 0);
    ck_assert(r.checked == (int64_t)gc->b * gc->T * gc->C);
}

static void opt_grad_cls(mtft_head_options *o) {
    static const float w[3] = {0.5f, 2.0f, 1.0f};
    o->hidden_size = 5;
    o->activation = MTFT_HEAD_ACT_TANH;
    o->pool = MTFT_POOL_MEAN;
    o->class_weights = w;
    o->label_smoothing = 0.1f;
}
static void opt_grad_reg(mtft_head_options *o) {
    o->hidden_size = 3;
    o->activation = MTFT_HEAD_ACT_GELU_TANH;
    o->loss = MTFT_HEAD_LOSS_HUBER;
    o->huber_delta = 0.5f;
    o->pool = MTFT_POOL_LAST;
}
static void opt_grad_lm(mtft_head_options *o) { o->label_smoothing = 0.05f; }

START_TEST(test_heads_gradcheck) {
    enum { b = 3, T = 4, C = 4 };
    float x[b * T * C];
    const int32_t len[b] = {4, 1, 3};
    const int32_t cls[b] = {2, 0, 1};
    const float ml[b * 3] = {1, 0, 1, 0, 1, 1, 0.5f, 0, 0};
    const float reg[b * 2] = {3.0f, -1.0f, 0.5f, 2.0f, -2.0f, 0.0f};
    const int32_t tok[b * T] = {1, IGN, 2, 0, 2, 1, 1, 1, IGN, 0, 2, 1};
    const int32_t lmt[b * T] = {IGN, 3, 6, 2, 5, IGN, IGN, IGN, IGN, IGN, 0, 4};
    struct {
        const char *name;
        mtft_head_kind kind;
        int L;
        void (*tweak)(mtft_head_options *);
        mtft_head_targets tg;
    } cases[] = {
        {"classification (hidden tanh, weights, smoothing)", MTFT_HEAD_CLASSIFICATION, 3, opt_grad_cls, {cls, NULL, NULL, 0}},
        {"multilabel", MTFT_HEAD_MULTILABEL, 3, NULL, {NULL, NULL, ml, 0}},
        {"regression (hidden gelu_tanh, huber)", MTFT_HEAD_REGRESSION, 2, opt_grad_reg, {NULL, NULL, reg, 0}},
        {"token classification", MTFT_HEAD_TOKEN_CLASSIFICATION, 3, NULL, {NULL, tok, NULL, 0}},
        {"lm (own projection)", MTFT_HEAD_LM, 7, opt_grad_lm, {NULL, lmt, NULL, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mtft_test_fill(x, b * T * C, 100 + k, -1, 1);
        grad_case gc = {new_head(cases[k].kind, C, cases[k].L, cases[k].tweak, 40 + k), NULL, b, T, C, x, len,
                        cases[k].tg};
        if (cases[k].kind == MTFT_HEAD_REGRESSION)
            ck_assert_int_eq(mtft_head_set_target_stats(gc.h, (const float[]){0.5f, -0.2f}, (const float[]){2.0f, 0.7f}, 2),
                             MTFT_OK);
        check_param_grads(cases[k].name, &gc);
        check_hidden_grads(cases[k].name, &gc);
        mtft_head_free(gc.h);
    }
}
END_TEST

/* The tied LM head: gradient of wte via the head's loss, by finite differences. */
START_TEST(test_heads_lm_tied_gradcheck) {
    enum { b = 2, T = 3, C = 8 };
    mtft_model *m = tiny_model(9);
    float x[b * T * C];
    mtft_test_fill(x, b * T * C, 5, -1, 1);
    const int32_t lab[b * T] = {IGN, 4, 11, 2, IGN, 0};
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.kind = MTFT_HEAD_LM;
    o.n_labels = 0;
    mtft_head *h = NULL;
    ck_assert_int_eq(mtft_head_new(&h, C, &o, 1), MTFT_OK);
    grad_case gc = {h, m, b, T, C, x, NULL, {NULL, lab, NULL, 0}};
    check_hidden_grads("lm tied (hidden)", &gc);
    mtft_param_group *pg = mtft_model_base_group(m);
    mtft_tensor *wte = mtft_param_group_find(pg, "wte.weight");
    mtft_param_group_zero_grad(pg);
    mtft_graph *g = new_graph();
    mtft_tensor *l = case_loss(g, &gc, 0, NULL);
    ck_assert_int_eq(mtft_graph_backward(g, l, NULL), MTFT_OK);
    const float *gw = mtft_tensor_grad(wte);
    float *w = mtft_tensor_data(wte);
    mtft_graph_set_grad_enabled(g, 0);
    for (int i = 0; i < 13 * C; i += 3) {
        const float orig = w[i];
        w[i] = orig + 5e-3f;
        mtft_graph_reset(g);
        double lp = loss_value(case_loss(g, &gc, 0, NULL));
        w[i] = orig - 5e-3f;
        mtft_graph_reset(g);
        double lm = loss_value(case_loss(g, &gc, 0, NULL));
        w[i] = orig;
        double num = (lp - lm) / 1e-2;
        ck_assert_msg(fabs(gw[i] - num) <= 3e-4 + 1e-2 * fabs(num), "wte[%d]: analytic %g vs numeric %g", i,
                      (double)gw[i], num);
    }
    mtft_graph_free(g);
    mtft_head_free(h);
    mtft_model_free(m);
}
END_TEST

/* ---- predictions, eval mode ---------------------------------------------------------- */
START_TEST(test_heads_predict_classification) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 71, -1, 1);
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.n_labels = 3;
    o.hidden_size = 4;
    o.dropout = 0.5f;
    mtft_head *h = NULL;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 6), MTFT_OK);
    mtft_graph *g = new_graph(); /* a training graph: dropout active */
    int32_t ids[B3], ids2[B3];
    float p[B3 * 3], p2[B3 * 3];
    ck_assert_int_eq(mtft_head_predict(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, ids, p), MTFT_OK);
    ck_assert_int_eq(mtft_graph_n_nodes(g), 0); /* nothing recorded */
    ck_assert_int_eq(mtft_head_predict(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, ids2, p2), MTFT_OK);
    mtft_assert_close(p2, p, B3 * 3, 0, 0, "predict is deterministic (no dropout)");
    /* equals the eval-mode forward */
    mtft_graph_set_training(g, 0);
    mtft_tensor *z = mtft_head_forward(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3);
    ck_assert_ptr_nonnull(z);
    const float *zd = mtft_tensor_data(z);
    for (int r = 0; r < B3; r++) {
        double s = 0, mx = zd[r * 3];
        int am = 0;
        for (int c = 0; c < 3; c++) {
            if (zd[r * 3 + c] > mx) mx = zd[r * 3 + c], am = c;
        }
        for (int c = 0; c < 3; c++) s += exp(zd[r * 3 + c] - mx);
        for (int c = 0; c < 3; c++) assert_rel(p[r * 3 + c], exp(zd[r * 3 + c] - mx) / s, 1e-5, "probability");
        ck_assert_int_eq(ids[r], am);
    }
    /* in a training graph the forward does apply dropout: outputs differ */
    mtft_graph_set_training(g, 1);
    mtft_tensor *zt = mtft_head_forward(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3);
    ck_assert_ptr_nonnull(zt);
    double diff = 0;
    for (int i = 0; i < B3 * 3; i++) diff += fabs(mtft_tensor_data(zt)[i] - zd[i]);
    ck_assert(diff > 1e-4);
    mtft_head_free(h);
    /* multi-label: ids are the thresholded probabilities */
    o.kind = MTFT_HEAD_MULTILABEL;
    o.dropout = 0;
    o.threshold = 0.4f;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 6), MTFT_OK);
    int32_t on[B3 * 3];
    ck_assert_int_eq(mtft_head_predict(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, on, p), MTFT_OK);
    for (int i = 0; i < B3 * 3; i++) {
        ck_assert(p[i] > 0 && p[i] < 1);
        ck_assert_int_eq(on[i], p[i] >= 0.4f);
    }
    mtft_head_free(h);
    mtft_graph_free(g);
}
END_TEST

/* ---- save / load ---------------------------------------------------------------------- */
static void tmpdir(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/mtft_heads_%s_%ld", tag, (long)getpid());
    mkdir(buf, 0755);
}
static void rmdir_files(const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/head.safetensors", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/head_config.json", dir);
    remove(p);
    rmdir(dir);
}

START_TEST(test_heads_save_load) {
    char dir[256];
    tmpdir(dir, sizeof dir, "rt");
    const float cw[3] = {1.0f, 0.25f, 4.0f};
    mtft_head_options os[4];
    for (int k = 0; k < 4; k++) {
        mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
        os[k] = o;
    }
    os[0].name = "sst2";
    os[0].n_labels = 3;
    os[0].hidden_size = 6;
    os[0].activation = MTFT_HEAD_ACT_GELU;
    os[0].dropout = 0.1f;
    os[0].label_smoothing = 0.05f;
    os[0].class_weights = cw;
    os[0].pool = MTFT_POOL_MEAN;
    os[1].name = "stsb";
    os[1].kind = MTFT_HEAD_REGRESSION;
    os[1].n_labels = 2;
    os[1].loss = MTFT_HEAD_LOSS_HUBER;
    os[1].huber_delta = 0.3f;
    os[1].pool = MTFT_POOL_FIRST;
    os[2].name = "ner";
    os[2].kind = MTFT_HEAD_TOKEN_CLASSIFICATION;
    os[2].n_labels = 5;
    os[3].name = "lm";
    os[3].kind = MTFT_HEAD_LM;
    os[3].n_labels = 0;
    for (int k = 0; k < 4; k++) {
        mtft_head *h = NULL, *h2 = NULL;
        ck_assert_int_eq(mtft_head_new(&h, C4, &os[k], 100 + k), MTFT_OK);
        if (k == 1)
            ck_assert_int_eq(mtft_head_set_target_stats(h, (const float[]){3.5f, -1.0f}, (const float[]){0.1f, 9.0f}, 2),
                             MTFT_OK);
        int rc = mtft_head_save(h, dir);
        ck_assert_msg(rc == MTFT_OK, "save: %s", mtft_error_last()->message);
        rc = mtft_head_load(&h2, dir);
        ck_assert_msg(rc == MTFT_OK, "load: %s", mtft_error_last()->message);
        const mtft_head_options *a = mtft_head_get_options(h), *b = mtft_head_get_options(h2);
        ck_assert_str_eq(a->name, b->name);
        ck_assert_int_eq(a->kind, b->kind);
        ck_assert_int_eq(a->n_labels, b->n_labels);
        ck_assert_int_eq(a->pool, b->pool);
        ck_assert_int_eq(a->hidden_size, b->hidden_size);
        ck_assert_int_eq(a->activation, b->activation);
        ck_assert(a->dropout == b->dropout && a->label_smoothing == b->label_smoothing);
        ck_assert(a->huber_delta == b->huber_delta && a->threshold == b->threshold);
        ck_assert_int_eq(a->loss, b->loss);
        ck_assert_int_eq(a->standardize, b->standardize);
        ck_assert_int_eq(a->class_weights != NULL, b->class_weights != NULL);
        if (a->class_weights) mtft_assert_close(b->class_weights, a->class_weights, a->n_labels, 0, 0, "class weights");
        ck_assert_int_eq(mtft_head_n_embd(h2), C4);
        ck_assert_str_eq(mtft_param_group_name(mtft_head_group(h2)), mtft_param_group_name(mtft_head_group(h)));
        size_t n1 = 0, n2 = 0;
        const float *d1 = mtft_param_group_data(mtft_head_group(h), &n1);
        const float *d2 = mtft_param_group_data(mtft_head_group(h2), &n2);
        ck_assert_uint_eq(n1, n2);
        mtft_assert_close(d2, d1, (int64_t)n1, 0, 0, "parameters after load");
        if (k == 1) {
            float m[2], s[2];
            ck_assert_int_eq(mtft_head_get_target_stats(h2, m, s, 2), MTFT_OK);
            ck_assert(m[0] == 3.5f && m[1] == -1.0f && s[0] == 0.1f && s[1] == 9.0f);
        }
        mtft_head_free(h);
        mtft_head_free(h2);
    }
    /* a corrupt sidecar is named with file:line:col */
    char p[512];
    snprintf(p, sizeof p, "%s/head_config.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\n  \"format\": \"mtft-head\",\n  \"kind\": ]\n}\n", f);
    fclose(f);
    mtft_head *h = (mtft_head *)1;
    ck_assert_int_eq(mtft_head_load(&h, dir), MTFT_EFORMAT);
    ck_assert_ptr_null(h);
    ck_assert_msg(strstr(mtft_error_last()->message, "head_config.json:3:") != NULL, "%s", mtft_error_last()->message);
    /* an unknown kind is named with its key and position */
    f = fopen(p, "w");
    fputs("{\"format\": \"mtft-head\", \"format_version\": 1, \"name\": \"x\",\n \"kind\": \"ner2\"}", f);
    fclose(f);
    ck_assert_int_eq(mtft_head_load(&h, dir), MTFT_EFORMAT);
    ck_assert_msg(strstr(mtft_error_last()->message, "head_config.json:2:2: key 'kind': unknown value ner2") != NULL,
                  "%s", mtft_error_last()->message);
    /* weights that do not fit the config: the shape error names the tensor */
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.n_labels = 4;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 1), MTFT_OK);
    ck_assert_int_eq(mtft_head_save(h, dir), MTFT_OK);
    mtft_head_free(h);
    f = fopen(p, "r");
    char txt[2048];
    size_t nr = fread(txt, 1, sizeof txt - 1, f);
    fclose(f);
    txt[nr] = 0;
    char *q = strstr(txt, "\"n_labels\":");
    ck_assert_ptr_nonnull(q);
    q = strchr(q, '4');
    ck_assert_ptr_nonnull(q);
    *q = '3';
    f = fopen(p, "w");
    fputs(txt, f);
    fclose(f);
    ck_assert_int_eq(mtft_head_load(&h, dir), MTFT_ESHAPE);
    ck_assert_msg(strstr(mtft_error_last()->message, "out_proj") != NULL, "%s", mtft_error_last()->message);
    rmdir_files(dir);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */
START_TEST(test_heads_errors) {
    float x[B3 * T5 * C4];
    mtft_test_fill(x, B3 * T5 * C4, 81, -1, 1);
    mtft_head *h = new_head(MTFT_HEAD_CLASSIFICATION, C4, 3, NULL, 2);
    mtft_graph *g = new_graph();
    /* label out of range names the row and the value */
    const int32_t y[B3] = {0, 2, 3};
    const mtft_head_targets tg = {y, NULL, NULL, 0};
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &tg));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ERANGE);
    ck_assert_str_eq(mtft_error_last()->message, "head 't': label 3 at row 2 outside [0, 3)");
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ERANGE);
    /* shape mismatch names the shapes */
    mtft_graph_reset(g);
    const int32_t y0[B3] = {0, 1, 2};
    const mtft_head_targets t0 = {y0, NULL, NULL, 0};
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4 - 1, x, 0), NULL, &t0));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ESHAPE);
    ck_assert_str_eq(mtft_error_last()->message, "head 't': hidden [3, 5, 3] does not fit the head (expected [b, T, 4])");
    /* valid_len outside 1..T */
    mtft_graph_reset(g);
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), (const int32_t[]){5, 0, 1}, &t0));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ERANGE);
    ck_assert_msg(strstr(mtft_error_last()->message, "valid_len 0 of row 1") != NULL, "%s", mtft_error_last()->message);
    /* missing targets for the kind */
    mtft_graph_reset(g);
    const mtft_head_targets none = {NULL, NULL, NULL, 0};
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &none));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_EINVAL);
    ck_assert_msg(strstr(mtft_error_last()->message, "class_ids is NULL") != NULL, "%s", mtft_error_last()->message);
    /* an earlier error on the graph: NULL without a new message */
    mtft_error_clear();
    ck_assert_ptr_null(mtft_head_loss(h, g, NULL, leaf(g, B3, T5, C4, x, 0), len3, &t0));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_OK);
    /* regression-only calls on a classification head */
    float m1[3], s1[3];
    ck_assert_int_eq(mtft_head_get_target_stats(h, m1, s1, 3), MTFT_ESTATE);
    mtft_head_free(h);
    /* bad options name the field */
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.n_labels = 1;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 0), MTFT_ERANGE);
    ck_assert_ptr_null(h);
    ck_assert_msg(strstr(mtft_error_last()->message, "n_labels 1 must be >= 2") != NULL, "%s", mtft_error_last()->message);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.dropout = 1.0f;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 0), MTFT_ERANGE);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.kind = MTFT_HEAD_REGRESSION;
    o.label_smoothing = 0.1f;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 0), MTFT_EINVAL);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.kind = MTFT_HEAD_LM;
    o.hidden_size = 4;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 0), MTFT_EINVAL);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.class_weights = (const float[]){1.0f, -1.0f};
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 0), MTFT_ERANGE);
    ck_assert_msg(strstr(mtft_error_last()->message, "class_weights[1]") != NULL, "%s", mtft_error_last()->message);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.version = 99;
    ck_assert_int_eq(mtft_head_new(&h, C4, &o, 0), MTFT_EINVAL);
    ck_assert_int_eq(mtft_head_new(&h, 0, NULL, 0), MTFT_EINVAL);
    mtft_head_free(NULL);
    mtft_graph_free(g);
}
END_TEST

/* ---- mixed-task batches ------------------------------------------------------------------ */
START_TEST(test_heads_multitask_rows) {
    int s[3], c[3];
    ck_assert_int_eq(mtft_multitask_rows((const int32_t[]){2, 2, 0, 0, 0}, 5, 3, s, c), MTFT_OK);
    ck_assert(s[2] == 0 && c[2] == 2 && s[0] == 2 && c[0] == 3 && c[1] == 0);
    ck_assert_int_eq(mtft_multitask_rows((const int32_t[]){1, 0, 1}, 3, 3, s, c), MTFT_EINVAL);
    ck_assert_str_eq(mtft_error_last()->message, "multitask: rows of task 1 are not grouped: rows 0..0, then row 2 "
                                                 "after row 1 of task 0 (group rows by task first)");
    ck_assert_int_eq(mtft_multitask_rows((const int32_t[]){0, 3}, 2, 3, s, c), MTFT_ERANGE);
    ck_assert_msg(strstr(mtft_error_last()->message, "task id 3 of row 1") != NULL, "%s", mtft_error_last()->message);
}
END_TEST

enum { MB = 7, MT = 6, NT = 4 };
/* Batch rows, grouped by task in the order 2, 0, 3, 1 (not sorted). */
static const int32_t mt_task[MB] = {2, 2, 0, 0, 0, 3, 1};
static const int32_t mt_len[MB] = {6, 3, 4, 6, 2, 5, 3};
static int32_t mt_ids[MB * MT];
/* batch-indexed labels, as an mtft_batch holds them */
static const int32_t mt_cls[MB] = {-1, -1, 2, 0, 1, -1, -1};
static const float mt_vals[MB * 2] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4.0f, -2.5f};
static const int32_t mt_tok[MB * MT] = {
    IGN, IGN, 3, 4, 9, 1,     /* task 2: LM, prompt of 2 */
    IGN, 7, 2, 5, 5, 5,       /* len 3: 2..5 are padding */
    IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN, IGN,
    0, 1, IGN, 2, 1, 3,       /* task 3: tagging, len 5 */
    IGN, IGN, IGN, IGN, IGN, IGN,
};

static mtft_head *mt_heads[NT];
static mtft_head_targets mt_tg[NT];

static void mt_setup(void) {
    for (int i = 0; i < MB * MT; i++) mt_ids[i] = (int32_t)((i * 7 + 3) % 13);
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.name = "cls";
    o.n_labels = 3;
    o.hidden_size = 5;
    o.pool = MTFT_POOL_MEAN;
    ck_assert_int_eq(mtft_head_new(&mt_heads[0], 8, &o, 1), MTFT_OK);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.name = "reg";
    o.kind = MTFT_HEAD_REGRESSION;
    o.n_labels = 2;
    ck_assert_int_eq(mtft_head_new(&mt_heads[1], 8, &o, 2), MTFT_OK);
    ck_assert_int_eq(mtft_head_set_target_stats(mt_heads[1], (const float[]){3, -2}, (const float[]){2, 0.5f}, 2), 0);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.name = "lm";
    o.kind = MTFT_HEAD_LM;
    o.n_labels = 0;
    ck_assert_int_eq(mtft_head_new(&mt_heads[2], 8, &o, 3), MTFT_OK);
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.name = "ner";
    o.kind = MTFT_HEAD_TOKEN_CLASSIFICATION;
    o.n_labels = 5;
    ck_assert_int_eq(mtft_head_new(&mt_heads[3], 8, &o, 4), MTFT_OK);
    for (int k = 0; k < NT; k++) {
        mt_tg[k].class_ids = mt_cls;
        mt_tg[k].token_ids = mt_tok;
        mt_tg[k].values = mt_vals;
        mt_tg[k].values_stride = 2;
    }
}
static void mt_teardown(void) {
    for (int k = 0; k < NT; k++) mtft_head_free(mt_heads[k]);
}

static float *copy_grad(mtft_param_group *pg, size_t *n) {
    const float *gsrc = mtft_param_group_grad(pg, n);
    ck_assert_ptr_nonnull(gsrc);
    float *c = malloc(*n * sizeof(float));
    memcpy(c, gsrc, *n * sizeof(float));
    return c;
}

/* Same tolerance as the issue asks: 1e-5 relative, with an absolute floor of
 * 1e-5 of the largest gradient for elements that cancel to ~0. */
static void assert_grads_close(const float *got, const float *want, size_t n, const char *what) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
    ck_assert_msg(mx > 0, "%s: gradient is all zero", what);
    mtft_assert_close(got, want, (int64_t)n, 1e-5f, (float)(1e-5 * mx), what);
}

START_TEST(test_heads_multitask_matches_separate) {
    mtft_model *m = tiny_model(21);
    mtft_param_group *base = mtft_model_base_group(m);
    const float weights[NT] = {0.5f, 2.0f, 1.0f, 1.5f};
    mtft_graph *g = new_graph();
    mtft_graph_set_training(g, 0);
    /* one mixed batch, one forward, one backward */
    mtft_param_group_zero_grad(base);
    for (int k = 0; k < NT; k++) mtft_param_group_zero_grad(mtft_head_group(mt_heads[k]));
    mtft_multitask_batch mb = {mt_ids, MB, MT, mt_len, mt_task};
    mtft_tensor *tl[NT], *total = NULL, *hidden = NULL;
    int rc = mtft_multitask_forward(m, g, &mb, mt_heads, mt_tg, NT, weights, tl, &total, &hidden);
    ck_assert_msg(rc == MTFT_OK, "multitask_forward: %s", mtft_error_last()->message);
    ck_assert_ptr_nonnull(total);
    ck_assert_int_eq(mtft_tensor_dim(hidden, 0), MB);
    float mixed[NT];
    double wsum = 0;
    for (int k = 0; k < NT; k++) {
        mixed[k] = loss_value(tl[k]);
        wsum += weights[k] * mixed[k];
    }
    assert_rel(loss_value(total), wsum, 1e-6, "weighted total");
    ck_assert_int_eq(mtft_graph_backward(g, total, NULL), MTFT_OK);
    size_t nb = 0, nh[NT];
    float *gbase = copy_grad(base, &nb), *ghead[NT];
    for (int k = 0; k < NT; k++) ghead[k] = copy_grad(mtft_head_group(mt_heads[k]), &nh[k]);

    /* separate single-task batches; base gradients accumulate over them */
    mtft_param_group_zero_grad(base);
    for (int k = 0; k < NT; k++) mtft_param_group_zero_grad(mtft_head_group(mt_heads[k]));
    int s[NT], c[NT];
    ck_assert_int_eq(mtft_multitask_rows(mt_task, MB, NT, s, c), MTFT_OK);
    for (int k = 0; k < NT; k++) {
        mtft_graph_reset(g);
        mtft_tensor *h = mtft_model_hidden(m, g, mt_ids + s[k] * MT, c[k], MT, mt_len + s[k]);
        ck_assert_ptr_nonnull(h);
        mtft_head_targets t = {mt_cls + s[k], mt_tok + s[k] * MT, mt_vals + s[k] * 2, 2};
        mtft_tensor *l = mtft_head_loss(mt_heads[k], g, m, h, mt_len + s[k], &t);
        const float sep = loss_value(l);
        assert_rel(mixed[k], sep, 1e-5, "per-task loss, mixed vs separate");
        ck_assert(sep > 0.01f);
        ck_assert_int_eq(mtft_graph_backward(g, l, &weights[k]), MTFT_OK);
        size_t n = 0;
        float *gh = copy_grad(mtft_head_group(mt_heads[k]), &n);
        ck_assert_uint_eq(n, nh[k]);
        if (n > 0) {
            char what[64];
            snprintf(what, sizeof what, "head %d gradient, mixed vs separate", k);
            assert_grads_close(ghead[k], gh, n, what);
        }
        free(gh);
    }
    size_t nb2 = 0;
    float *gsep = copy_grad(base, &nb2);
    ck_assert_uint_eq(nb, nb2);
    assert_grads_close(gbase, gsep, nb, "base gradient, mixed vs sum of separate");
    /* the comparison is sharp: leaving out one task's contribution fails it */
    mtft_param_group_zero_grad(base);
    mtft_graph_reset(g);
    mtft_tensor *h = mtft_model_hidden(m, g, mt_ids + s[1] * MT, c[1], MT, mt_len + s[1]);
    mtft_head_targets t1 = {NULL, NULL, mt_vals + s[1] * 2, 2};
    mtft_tensor *l1 = mtft_head_loss(mt_heads[1], g, m, h, mt_len + s[1], &t1);
    ck_assert_int_eq(mtft_graph_backward(g, l1, &weights[1]), MTFT_OK);
    const float *g1 = mtft_param_group_grad(base, NULL);
    double off = 0;
    for (size_t i = 0; i < nb; i++) off = fmax(off, fabs((gsep[i] - g1[i]) - gbase[i]) - 1e-4 * fabs(gbase[i]));
    ck_assert_msg(off > 1e-6, "dropping task 1 did not change the base gradient");
    free(gbase);
    free(gsep);
    for (int k = 0; k < NT; k++) free(ghead[k]);
    mtft_graph_free(g);
    mtft_model_free(m);
}
END_TEST

START_TEST(test_heads_multitask_errors) {
    mtft_model *m = tiny_model(22);
    mtft_graph *g = new_graph();
    mtft_tensor *tl[NT], *total = NULL;
    /* rows not grouped */
    const int32_t bad_task[MB] = {2, 0, 2, 0, 0, 3, 1};
    mtft_multitask_batch mb = {mt_ids, MB, MT, mt_len, bad_task};
    ck_assert_int_eq(mtft_multitask_forward(m, g, &mb, mt_heads, mt_tg, NT, NULL, tl, &total, NULL), MTFT_EINVAL);
    ck_assert_msg(strstr(mtft_error_last()->message, "not grouped") != NULL, "%s", mtft_error_last()->message);
    ck_assert_ptr_null(total);
    /* a label out of range is reported with its batch row */
    mtft_graph_reset(g);
    int32_t cls[MB];
    memcpy(cls, mt_cls, sizeof cls);
    cls[4] = 7;
    mtft_head_targets tg[NT];
    memcpy(tg, mt_tg, sizeof tg);
    tg[0].class_ids = cls;
    mb.task_id = mt_task;
    ck_assert_int_eq(mtft_multitask_forward(m, g, &mb, mt_heads, tg, NT, NULL, tl, &total, NULL), MTFT_ERANGE);
    ck_assert_msg(strstr(mtft_error_last()->message, "task 0 (rows 2..4): head 'cls': label 7 at row 4 outside [0, 3)") !=
                      NULL,
                  "%s", mtft_error_last()->message);
    /* a present task without a head */
    mtft_graph_reset(g);
    mtft_head *hs[NT] = {mt_heads[0], NULL, mt_heads[2], mt_heads[3]};
    ck_assert_int_eq(mtft_multitask_forward(m, g, &mb, hs, mt_tg, NT, NULL, tl, &total, NULL), MTFT_EINVAL);
    ck_assert_msg(strstr(mtft_error_last()->message, "task 1 has 1 rows (from row 6) but no head") != NULL, "%s",
                  mtft_error_last()->message);
    /* a head for another width */
    mtft_graph_reset(g);
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    mtft_head *wide = NULL;
    ck_assert_int_eq(mtft_head_new(&wide, 16, &o, 1), MTFT_OK);
    hs[1] = wide;
    ck_assert_int_eq(mtft_multitask_forward(m, g, &mb, hs, mt_tg, NT, NULL, tl, &total, NULL), MTFT_ESHAPE);
    ck_assert_msg(strstr(mtft_error_last()->message, "takes hidden [b, T, 16], the model gives [7, 6, 8]") != NULL, "%s",
                  mtft_error_last()->message);
    mtft_head_free(wide);
    /* absent tasks get no loss; weights NULL sum the present ones */
    mtft_graph_reset(g);
    const int32_t two[3] = {0, 0, 3};
    mtft_multitask_batch m3 = {mt_ids + 2 * MT, 3, MT, mt_len + 2, two};
    mtft_head_targets tg3[NT];
    memcpy(tg3, mt_tg, sizeof tg3);
    tg3[0].class_ids = mt_cls + 2;
    tg3[3].token_ids = mt_tok + 3 * MT; /* tags of row 2 of this batch: row 5 of the big one */
    ck_assert_int_eq(mtft_multitask_forward(m, g, &m3, mt_heads, tg3, NT, NULL, tl, &total, NULL), MTFT_OK);
    ck_assert_ptr_null(tl[1]);
    ck_assert_ptr_null(tl[2]);
    assert_rel(loss_value(total), loss_value(tl[0]) + loss_value(tl[3]), 1e-6, "unweighted total");
    mtft_graph_free(g);
    mtft_model_free(m);
}
END_TEST


/* With per-task LoRA (peft): batch rows in any order are grouped with
 * mtft_peft_group_rows, the ranges go to mtft_peft_set_batch, and one mixed
 * forward + backward gives each task's LoRA and head the same loss and
 * gradients as that task alone on a frozen base. */
START_TEST(test_heads_multitask_with_lora) {
    mtft_model *m = tiny_model(23);
    ck_assert_int_eq(mtft_param_group_set_trainable(mtft_model_base_group(m), 0), MTFT_OK);
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, NT), MTFT_OK);
    mtft_param_group *lora[NT];
    for (int k = 0; k < NT; k++) {
        mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
        lo.rank = 2;
        lo.alpha = 4.0f;
        lo.target_modules = "attn.c_attn|mlp.c_fc";
        lo.seed = 30 + (uint64_t)k;
        int rc = mtft_peft_add_lora(p, k, &lo, &lora[k]);
        ck_assert_msg(rc == MTFT_OK, "add_lora: %s", mtft_error_last()->message);
        for (int i = 0; i < mtft_param_group_count(lora[k]); i++) { /* B != 0, so A gets a gradient */
            mtft_tensor *t = mtft_param_group_tensor(lora[k], i);
            mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), 50 + 10 * (uint64_t)k + (uint64_t)i, -0.3f, 0.3f);
        }
    }
    /* group the batch (task order 2, 2, 0, 0, 0, 3, 1) into ascending task order */
    int32_t perm[MB], off[NT + 1], ids[MB * MT], len[MB], cls[MB], tok[MB * MT], task[MB];
    float vals[MB * 2];
    ck_assert_int_eq(mtft_peft_group_rows(mt_task, MB, NT, perm, NULL, off), MTFT_OK);
    for (int i = 0; i < MB; i++) {
        const int r = perm[i];
        memcpy(ids + i * MT, mt_ids + r * MT, sizeof(int32_t) * MT);
        memcpy(tok + i * MT, mt_tok + r * MT, sizeof(int32_t) * MT);
        memcpy(vals + i * 2, mt_vals + r * 2, sizeof(float) * 2);
        len[i] = mt_len[r];
        cls[i] = mt_cls[r];
        task[i] = mt_task[r];
    }
    mtft_head_targets tg[NT];
    for (int k = 0; k < NT; k++) tg[k] = (mtft_head_targets){cls, tok, vals, 2};
    const float weights[NT] = {1.0f, 0.25f, 2.0f, 1.0f};
    mtft_graph *g = new_graph();
    for (int k = 0; k < NT; k++) {
        mtft_param_group_zero_grad(lora[k]);
        mtft_param_group_zero_grad(mtft_head_group(mt_heads[k]));
    }
    ck_assert_int_eq(mtft_peft_set_batch(p, g, off), MTFT_OK);
    mtft_multitask_batch mb = {ids, MB, MT, len, task};
    mtft_tensor *tl[NT], *total = NULL;
    int rc = mtft_multitask_forward(m, g, &mb, mt_heads, tg, NT, weights, tl, &total, NULL);
    ck_assert_msg(rc == MTFT_OK, "multitask_forward: %s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_graph_backward(g, total, NULL), MTFT_OK);
    ck_assert_ptr_null(mtft_param_group_grad(mtft_model_base_group(m), NULL)); /* frozen: no gradient memory */
    float mixed[NT], *gl[NT], *gh[NT];
    size_t nl[NT], nh[NT];
    for (int k = 0; k < NT; k++) {
        mixed[k] = loss_value(tl[k]);
        gl[k] = copy_grad(lora[k], &nl[k]);
        gh[k] = copy_grad(mtft_head_group(mt_heads[k]), &nh[k]);
    }
    for (int k = 0; k < NT; k++) {
        mtft_param_group_zero_grad(lora[k]);
        mtft_param_group_zero_grad(mtft_head_group(mt_heads[k]));
        mtft_graph_reset(g);
        const int s0 = off[k], n = off[k + 1] - off[k];
        ck_assert_int_eq(mtft_peft_set_task(p, g, k, n), MTFT_OK);
        mtft_tensor *h = mtft_model_hidden(m, g, ids + s0 * MT, n, MT, len + s0);
        const mtft_head_targets t = {cls + s0, tok + s0 * MT, vals + s0 * 2, 2};
        mtft_tensor *l = mtft_head_loss(mt_heads[k], g, m, h, len + s0, &t);
        assert_rel(mixed[k], loss_value(l), 1e-5, "per-task loss with LoRA, mixed vs separate");
        ck_assert_int_eq(mtft_graph_backward(g, l, &weights[k]), MTFT_OK);
        size_t n1 = 0, n2 = 0;
        float *a = copy_grad(lora[k], &n1), *b = NULL;
        ck_assert_uint_eq(n1, nl[k]);
        assert_grads_close(gl[k], a, n1, "LoRA gradient, mixed vs separate");
        if (nh[k] > 0) {
            b = copy_grad(mtft_head_group(mt_heads[k]), &n2);
            assert_grads_close(gh[k], b, n2, "head gradient with LoRA, mixed vs separate");
        }
        free(a);
        free(b);
        free(gl[k]);
        free(gh[k]);
    }
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}
END_TEST

static Suite *heads_suite(void) {
    Suite *s = suite_create("heads");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_heads_classification_loss);
    tcase_add_test(tc, test_heads_pooling_right_padding);
    tcase_add_test(tc, test_heads_multilabel_loss);
    tcase_add_test(tc, test_heads_regression_loss_standardised);
    tcase_add_test(tc, test_heads_regression_round_trip);
    tcase_add_test(tc, test_heads_token_classification_ignores);
    tcase_add_test(tc, test_heads_lm_prompt_masked);
    tcase_add_test(tc, test_heads_predict_classification);
    tcase_add_test(tc, test_heads_save_load);
    tcase_add_test(tc, test_heads_errors);
    suite_add_tcase(s, tc);
    TCase *gr = tcase_create("grad");
    tcase_set_timeout(gr, 120);
    tcase_add_test(gr, test_heads_gradcheck);
    tcase_add_test(gr, test_heads_lm_tied_gradcheck);
    suite_add_tcase(s, gr);
    TCase *mt = tcase_create("multitask");
    tcase_set_timeout(mt, 60);
    tcase_add_checked_fixture(mt, mt_setup, mt_teardown);
    tcase_add_test(mt, test_heads_multitask_rows);
    tcase_add_test(mt, test_heads_multitask_matches_separate);
    tcase_add_test(mt, test_heads_multitask_errors);
    tcase_add_test(mt, test_heads_multitask_with_lora);
    suite_add_tcase(s, mt);
    return s;
}

int main(void) { return mtft_test_run(heads_suite()); }
