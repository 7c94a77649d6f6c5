/* ctest-labels: unit grad */
/* The fused ops of the GPT-2 training step, and gradients that are stored
 * instead of accumulated when they are fresh (src/tensor/ops/ops_grad.h).
 *
 * - The attention from a QKV projection (src/nn/attn_qkv.c) at lengths beyond
 *   its causal block of 64 query rows (T = 150: blocks of 64, 64, 22; a
 *   padded row of 70), against the generic views + mtft_attention path:
 *   output and gradient, both when its gradient is the first one qkv gets
 *   (stored) and when qkv already has one (accumulated).
 * - bias + GELU (mtft__bias_gelu_tanh): values against double, central
 *   differences, and the stored and accumulated gradient paths.
 * - cross-entropy, whose forward makes the logits' gradient: handed over,
 *   scaled and accumulated.
 * - A GPT-2 model whose MLP takes the fused path (no PEFT hook) against the
 *   same model through the unfused ops (a no-op hook): logits and every
 *   parameter's gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft_test.h"
#include "nn/nn_impl.h"
#include "tensor/ops/ops_grad.h"

enum { B = 2, T = 150, H = 2, D = 8, C = H * D, NX = B * T * 3 * C, NY = B * T * C };

static mtft_tensor *generic_attention(mtft_graph *g, mtft_tensor *qkv, int causal, const int32_t *len) {
    int64_t s4[4] = {B, T, 3 * H, D}, s3[3] = {B, T, C};
    mtft_tensor *v4 = mtft_transpose(g, mtft_reshape(g, qkv, 4, s4), 1, 2); /* [B,3H,T,D] */
    mtft_tensor *q = mtft_slice(g, v4, 1, 0, H), *k = mtft_slice(g, v4, 1, H, H), *v = mtft_slice(g, v4, 1, 2 * H, H);
    mtft_tensor *o = mtft_attention(g, q, k, v, causal, len, 0.0f);
    return mtft_reshape(g, mtft_contiguous(g, mtft_transpose(g, o, 1, 2)), 3, s3);
}

/* y and dqkv of L = sum(attn(qkv) .* seed) (+ sum(qkv .* extra) when extra:
 * recorded after the attention, so its backward runs first and the
 * attention adds to an existing gradient). */
static void run_path(int fused, int causal, const int32_t *len, const float *x, const float *seed, const float *extra,
                     float *y, float *dx) {
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    int64_t shx[3] = {B, T, 3 * C}, shy[3] = {B, T, C};
    mtft_tensor *qkv = mtft_from_data(g, 3, shx, x);
    ck_assert_int_eq(mtft_tensor_set_requires_grad(g, qkv, 1), MTFT_OK);
    mtft_tensor *out = fused ? mtft_nn__attention_qkv(g, qkv, H, causal, len) : generic_attention(g, qkv, causal, len);
    ck_assert_msg(out != NULL, "%s", mtft_error_last()->message);
    memcpy(y, mtft_tensor_data(out), sizeof(float) * NY);
    mtft_tensor *loss = mtft_sum(g, mtft_mul(g, out, mtft_from_data(g, 3, shy, seed)));
    if (extra) loss = mtft_add(g, loss, mtft_sum(g, mtft_mul(g, qkv, mtft_from_data(g, 3, shx, extra))));
    ck_assert_msg(loss != NULL, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), MTFT_OK);
    memcpy(dx, mtft_tensor_grad(qkv), sizeof(float) * NX);
    mtft_graph_free(g);
}

START_TEST(test_attention_blocks_match_generic) {
    float *x = malloc(sizeof(float) * NX), *seed = malloc(sizeof(float) * NY), *extra = malloc(sizeof(float) * NX);
    float *y0 = malloc(sizeof(float) * NY), *y1 = malloc(sizeof(float) * NY);
    float *d0 = malloc(sizeof(float) * NX), *d1 = malloc(sizeof(float) * NX), *d2 = malloc(sizeof(float) * NX);
    mtft_test_fill(x, NX, 21, -2.0f, 2.0f);
    mtft_test_fill(seed, NY, 22, -1.0f, 1.0f);
    mtft_test_fill(extra, NX, 23, -1.0f, 1.0f);
    const int32_t lens[B] = {T, 70};
    for (int causal = 0; causal <= 1; causal++)
        for (int padded = 0; padded <= 1; padded++) {
            const int32_t *len = padded ? lens : NULL;
            run_path(0, causal, len, x, seed, NULL, y0, d0);
            run_path(1, causal, len, x, seed, NULL, y1, d1);
            char what[96];
            snprintf(what, sizeof what, "attention_qkv output T=%d (causal %d, padded %d)", T, causal, padded);
            mtft_assert_close(y1, y0, NY, 1e-4f, 1e-5f, what);
            snprintf(what, sizeof what, "attention_qkv dqkv T=%d (causal %d, padded %d)", T, causal, padded);
            mtft_assert_close(d1, d0, NX, 1e-4f, 1e-5f, what);
            double nz = 0;
            for (int i = 0; i < NX; i++) nz += d1[i] != 0.0f;
            ck_assert_msg(nz > 0.3 * NX, "only %.0f of %d gradient elements are non-zero", nz, NX);
            if (padded)
                for (int t = lens[1]; t < T; t++)
                    for (int c = 0; c < 3 * C; c++) {
                        if (c < C) ck_assert_float_eq(y1[(1 * T + t) * C + c], 0.0f);
                        /* padding rows: no gradient into q; k and v of padding keys neither */
                        ck_assert_float_eq(d1[(1 * T + t) * 3 * C + c], 0.0f);
                    }
            /* accumulating into an existing gradient: d1 + extra */
            run_path(1, causal, len, x, seed, extra, y1, d2);
            for (int i = 0; i < NX; i++) d1[i] += extra[i];
            snprintf(what, sizeof what, "attention_qkv dqkv accumulated (causal %d, padded %d)", causal, padded);
            mtft_assert_close(d2, d1, NX, 1e-5f, 1e-6f, what);
        }
    free(x), free(seed), free(extra), free(y0), free(y1), free(d0), free(d1), free(d2);
}
END_TEST

static double r_gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

static mtft_tensor *bias_gelu_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    (void)ctx;
    return mtft__bias_gelu_tanh(g, in[0], in[1]);
}

START_TEST(test_bias_gelu) {
    enum { R = 37, F = 70 }; /* 2 chunks of db partial sums */
    float x[R * F], b[F], dy[R * F], ref[R * F];
    mtft_test_fill(x, R * F, 31, -3.0f, 3.0f);
    mtft_test_fill(b, F, 32, -1.0f, 1.0f);
    mtft_test_fill(dy, R * F, 33, -1.0f, 1.0f);
    for (int i = 0; i < R * F; i++) ref[i] = (float)r_gelu_tanh((double)x[i] + b[i % F]);
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    int64_t sx[2] = {R, F}, sb[1] = {F};
    mtft_tensor *xt = mtft_from_data(g, 2, sx, x), *bt = mtft_from_data(g, 1, sb, b);
    mtft_tensor *y = mtft__bias_gelu_tanh(g, xt, bt);
    ck_assert_msg(y != NULL, "%s", mtft_error_last()->message);
    mtft_assert_close(mtft_tensor_data(y), ref, R * F, 2e-5f, 2e-6f, "bias_gelu_tanh forward");
    /* gradients: stored (fresh) with one use; with two uses the later one's
     * backward stores and the earlier one's adds */
    float dx1[R * F], db1[F];
    for (int uses = 1; uses <= 2; uses++) {
        mtft_graph_reset(g);
        xt = mtft_from_data(g, 2, sx, x), bt = mtft_from_data(g, 1, sb, b);
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g, xt, 1), MTFT_OK);
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g, bt, 1), MTFT_OK);
        mtft_tensor *loss = mtft_sum(g, mtft_mul(g, mtft__bias_gelu_tanh(g, xt, bt), mtft_from_data(g, 2, sx, dy)));
        if (uses == 2)
            loss = mtft_add(g, loss,
                            mtft_sum(g, mtft_mul(g, mtft__bias_gelu_tanh(g, xt, bt), mtft_from_data(g, 2, sx, dy))));
        ck_assert_msg(loss != NULL, "%s", mtft_error_last()->message);
        ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), MTFT_OK);
        if (uses == 1) {
            double dbr[F] = {0};
            float dxr[R * F], dbf[F];
            for (int i = 0; i < R * F; i++) {
                const double v = (double)x[i] + b[i % F], h = 1e-4;
                dxr[i] = (float)(dy[i] * (r_gelu_tanh(v + h) - r_gelu_tanh(v - h)) / (2 * h));
                dbr[i % F] += dxr[i];
            }
            for (int j = 0; j < F; j++) dbf[j] = (float)dbr[j];
            mtft_assert_close(mtft_tensor_grad(xt), dxr, R * F, 1e-4f, 1e-5f, "bias_gelu_tanh dx");
            mtft_assert_close(mtft_tensor_grad(bt), dbf, F, 1e-4f, 1e-4f, "bias_gelu_tanh db");
            for (int i = 0; i < R * F; i++) dx1[i] = 2.0f * mtft_tensor_grad(xt)[i];
            for (int j = 0; j < F; j++) db1[j] = 2.0f * mtft_tensor_grad(bt)[j];
        } else {
            mtft_assert_close(mtft_tensor_grad(xt), dx1, R * F, 1e-6f, 0.0f, "bias_gelu_tanh dx of two uses");
            mtft_assert_close(mtft_tensor_grad(bt), db1, F, 1e-6f, 0.0f, "bias_gelu_tanh db of two uses");
        }
    }
    /* shape errors name the tensors */
    int64_t s6[1] = {6};
    ck_assert_ptr_null(mtft__bias_gelu_tanh(g, xt, mtft_zeros(g, 1, s6)));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ESHAPE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "[37, 70]"));
    mtft_graph_free(g);
    /* central differences through the graph (eps 1e-2: atol 3e-3, rtol 1e-2, as the activations) */
    mtft_gradcheck_input in[2] = {{2, {R, F}, x, 1}, {1, {F}, b, 1}};
    mtft_gradcheck("bias_gelu_tanh", bias_gelu_fn, NULL, in, 2, 1e-2f, 3e-3f, 1e-2f, 300);
}
END_TEST

/* Cross-entropy's gradient made by its forward: handed over as it is (seed
 * 1), scaled (a weighted loss), and added to a gradient the logits already
 * have; against the formula in double. */
START_TEST(test_cross_entropy_gradient_paths) {
    enum { N = 5, V = 300 };
    float x[N * V], ref[N * V];
    mtft_test_fill(x, N * V, 51, -4.0f, 4.0f);
    const int32_t tg[N] = {3, -100, 299, 0, 150};
    const double ls = 0.1;
    const int M = 4;
    for (int r = 0; r < N; r++) {
        double mx = -1e30, sum = 0;
        for (int j = 0; j < V; j++) mx = x[r * V + j] > mx ? x[r * V + j] : mx;
        for (int j = 0; j < V; j++) sum += exp(x[r * V + j] - mx);
        for (int j = 0; j < V; j++)
            ref[r * V + j] = tg[r] < 0 ? 0.0f
                                       : (float)((exp(x[r * V + j] - mx) / sum - (1 - ls) * (j == tg[r]) - ls / V) / M);
    }
    int64_t sh[2] = {N, V};
    for (int mode = 0; mode < 3; mode++) {
        mtft_graph *g = NULL;
        ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
        mtft_tensor *lg = mtft_from_data(g, 2, sh, x);
        ck_assert_int_eq(mtft_tensor_set_requires_grad(g, lg, 1), MTFT_OK);
        mtft_tensor *loss = mtft_cross_entropy(g, lg, tg, -100, (float)ls);
        if (mode == 1) loss = mtft_scale(g, loss, 0.25f);
        if (mode == 2) loss = mtft_add(g, loss, mtft_scale(g, mtft_sum(g, lg), 0.5f)); /* runs first in backward */
        ck_assert_msg(loss != NULL, "%s", mtft_error_last()->message);
        ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), MTFT_OK);
        float want[N * V];
        for (int i = 0; i < N * V; i++) want[i] = mode == 1 ? 0.25f * ref[i] : mode == 2 ? ref[i] + 0.5f : ref[i];
        const char *what[3] = {"cross_entropy dx (handed over)", "cross_entropy dx (scaled 0.25)",
                               "cross_entropy dx (added to 0.5)"};
        mtft_assert_close(mtft_tensor_grad(lg), want, N * V, 1e-4f, 1e-7f, what[mode]);
        mtft_graph_free(g);
    }
}
END_TEST

/* A hook that returns the projection unchanged: the model then takes the
 * unfused path (linear with bias, then GELU). */
static mtft_tensor *identity_hook(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, mtft_tensor *y, void *payload) {
    (void)ctx, (void)name, (void)x, (void)payload;
    return y;
}

/* logits [SB*ST*V] and parameter gradients of one step */
static void model_step(mtft_model *m, float *logits, float *grads, size_t n) {
    enum { SB = 2, ST = 80, V = 50 };
    int32_t ids[SB * ST], tg[SB * ST];
    for (int i = 0; i < SB * ST; i++) ids[i] = (i * 7 + 3) % V, tg[i] = (i * 5 + 1) % V;
    const int32_t len[SB] = {ST, 71};
    mtft_param_group *pg = mtft_model_base_group(m);
    mtft_param_group_zero_grad(pg);
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    mtft_tensor *lg = mtft_model_logits(m, g, mtft_model_hidden(m, g, ids, SB, ST, len));
    mtft_tensor *loss = mtft_cross_entropy(g, lg, tg, -100, 0.0f);
    ck_assert_msg(loss != NULL, "%s", mtft_error_last()->message);
    memcpy(logits, mtft_tensor_data(lg), sizeof(float) * SB * ST * V);
    ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), MTFT_OK);
    size_t np = 0;
    const float *gr = mtft_param_group_grad(pg, &np);
    ck_assert_uint_eq(np, n);
    memcpy(grads, gr, n * sizeof(float));
    mtft_graph_free(g);
}

START_TEST(test_model_fused_matches_unfused) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.vocab_size = 50, c.n_ctx = 96, c.n_embd = 32, c.n_layer = 2, c.n_head = c.n_kv_head = 2, c.n_ff = 128;
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 5), MTFT_OK);
    /* non-zero biases, so that where the bias is added matters */
    mtft_param_group *pg = mtft_model_base_group(m);
    for (int i = 0; i < mtft_param_group_count(pg); i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        if (strstr(mtft_tensor_name(t), "bias")) mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), 40 + i, -0.5f, 0.5f);
    }
    size_t n = 0;
    mtft_param_group_data(pg, &n);
    enum { NL = 2 * 80 * 50 };
    float *l0 = malloc(sizeof(float) * NL), *l1 = malloc(sizeof(float) * NL);
    float *g0 = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
    model_step(m, l0, g0, n); /* fused */
    m->proj_hook = identity_hook;
    model_step(m, l1, g1, n); /* unfused */
    m->proj_hook = NULL;
    mtft_assert_close(l0, l1, NL, 1e-5f, 1e-5f, "logits fused vs unfused MLP");
    mtft_assert_close(g0, g1, (int64_t)n, 1e-4f, 1e-6f, "gradients fused vs unfused MLP");
    double nz = 0;
    for (size_t i = 0; i < n; i++) nz += g0[i] != 0.0f;
    ck_assert(nz > 0.5 * (double)n);
    free(l0), free(l1), free(g0), free(g1);
    mtft_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("step_fused");
    TCase *tc = tcase_create("fused");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_attention_blocks_match_generic);
    tcase_add_test(tc, test_bias_gelu);
    tcase_add_test(tc, test_cross_entropy_gradient_paths);
    tcase_add_test(tc, test_model_fused_matches_unfused);
    suite_add_tcase(s, tc);
    return mtft_test_run(s);
}
