/* ctest-labels: unit grad */
/* The training-step speed and memory paths of the model: attention straight
 * from the fused QKV projection (src/nn/attn_qkv.c) against the generic
 * views + mtft_attention path, and the recycling of transient activation
 * gradients during backward (MTFT_TF_TRANSIENT, mtft__grad's pool). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft_test.h"
#include "nn/nn_impl.h"

enum { B = 3, T = 7, H = 2, D = 4, C = H * D };

/* The generic path of block.c: views of qkv [B,T,3C] -> mtft_attention -> [B,T,C]. */
static mtft_tensor *generic_attention(mtft_graph *g, mtft_tensor *qkv, int causal, const int32_t *len) {
    int64_t s4[4] = {B, T, 3 * H, D}, s3[3] = {B, T, C};
    mtft_tensor *v4 = mtft_transpose(g, mtft_reshape(g, qkv, 4, s4), 1, 2); /* [B,3H,T,D] */
    mtft_tensor *q = mtft_slice(g, v4, 1, 0, H), *k = mtft_slice(g, v4, 1, H, H), *v = mtft_slice(g, v4, 1, 2 * H, H);
    mtft_tensor *o = mtft_attention(g, q, k, v, causal, len, 0.0f);
    return mtft_reshape(g, mtft_contiguous(g, mtft_transpose(g, o, 1, 2)), 3, s3);
}

/* y and dqkv of one path; seed: the output gradient. */
static void run_path(int fused, int causal, const int32_t *len, const float *x, const float *seed, float *y,
                     float *dx) {
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    int64_t shp[3] = {B, T, 3 * C};
    mtft_tensor *qkv = mtft_from_data(g, 3, shp, x);
    ck_assert_int_eq(mtft_tensor_set_requires_grad(g, qkv, 1), MTFT_OK);
    mtft_tensor *out = fused ? mtft_nn__attention_qkv(g, qkv, H, causal, len) : generic_attention(g, qkv, causal, len);
    ck_assert_msg(out != NULL, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tensor_numel(out), B * T * C);
    memcpy(y, mtft_tensor_data(out), sizeof(float) * B * T * C);
    ck_assert_int_eq(mtft_graph_backward(g, out, seed), MTFT_OK);
    memcpy(dx, mtft_tensor_grad(qkv), sizeof(float) * B * T * 3 * C);
    mtft_graph_free(g);
}

START_TEST(test_attention_qkv_matches_generic) {
    float x[B * T * 3 * C], seed[B * T * C];
    mtft_test_fill(x, B * T * 3 * C, 11, -2.0f, 2.0f);
    mtft_test_fill(seed, B * T * C, 12, -1.0f, 1.0f);
    const int32_t lens[B] = {T, 3, 0}; /* full, padded, empty */
    for (int causal = 0; causal <= 1; causal++)
        for (int padded = 0; padded <= 1; padded++) {
            const int32_t *len = padded ? lens : NULL;
            float y0[B * T * C], y1[B * T * C], d0[B * T * 3 * C], d1[B * T * 3 * C];
            run_path(0, causal, len, x, seed, y0, d0);
            run_path(1, causal, len, x, seed, y1, d1);
            char what[96];
            snprintf(what, sizeof what, "attention_qkv output (causal %d, padded %d)", causal, padded);
            mtft_assert_close(y1, y0, B * T * C, 1e-5f, 1e-6f, what);
            snprintf(what, sizeof what, "attention_qkv dqkv (causal %d, padded %d)", causal, padded);
            mtft_assert_close(d1, d0, B * T * 3 * C, 1e-5f, 1e-6f, what);
            if (padded) {
                /* padding rows: zero output, and no gradient into their q */
                for (int t = lens[1]; t < T; t++)
                    for (int c = 0; c < C; c++) {
                        ck_assert_float_eq(y1[(1 * T + t) * C + c], 0.0f);
                        ck_assert_float_eq(d1[(1 * T + t) * 3 * C + c], 0.0f);
                    }
            }
        }
}
END_TEST

START_TEST(test_attention_qkv_errors) {
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    int64_t bad[3] = {1, 4, 10};
    mtft_tensor *x = mtft_zeros(g, 3, bad);
    ck_assert_ptr_null(mtft_nn__attention_qkv(g, x, 2, 1, NULL)); /* 10 is not 3C */
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ESHAPE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "[1, 4, 10]"));
    mtft_graph_reset(g);
    int64_t ok[3] = {1, 4, 12};
    x = mtft_zeros(g, 3, ok);
    const int32_t len[1] = {5};
    ck_assert_ptr_null(mtft_nn__attention_qkv(g, x, 2, 1, len));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "valid_len[0] = 5"));
    mtft_graph_free(g);
}
END_TEST

/* One training-step backward of a small GPT-2; keep_all clears the transient
 * flags first (the behaviour without recycling). Returns the bytes the
 * step took from its arena. */
static size_t step_grads(mtft_model *m, int keep_all, float *grads, size_t n) {
    enum { SB = 2, ST = 16 };
    int32_t ids[SB * ST], tg[SB * ST];
    for (int i = 0; i < SB * ST; i++) ids[i] = (i * 7 + 3) % 64, tg[i] = (i * 5 + 1) % 64;
    const int32_t len[SB] = {ST, 11};
    mtft_param_group *pg = mtft_model_base_group(m);
    mtft_param_group_zero_grad(pg);
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    mtft_tensor *h = mtft_model_hidden(m, g, ids, SB, ST, len);
    ck_assert_msg(h != NULL, "%s", mtft_error_last()->message);
    mtft_tensor *loss = mtft_cross_entropy(g, mtft_model_logits(m, g, h), tg, -100, 0.0f);
    ck_assert_msg(loss != NULL, "%s", mtft_error_last()->message);
    int n_transient = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].out->flags & MTFT_TF_TRANSIENT) n_transient++;
        if (keep_all) g->nodes[i].out->flags &= ~(uint32_t)MTFT_TF_TRANSIENT;
    }
    ck_assert_int_gt(n_transient, 20);                          /* the blocks' activations */
    ck_assert_int_eq((int)(h->flags & MTFT_TF_TRANSIENT), 0);   /* the hidden state is handed out */
    ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), MTFT_OK);
    ck_assert_ptr_nonnull(mtft_tensor_grad(h)); /* kept: not transient */
    int dropped = 0;
    for (int i = 0; i < g->n_nodes; i++) dropped += g->nodes[i].out->grad == NULL;
    ck_assert_int_eq(dropped > 0, !keep_all);
    size_t np = 0;
    const float *gr = mtft_param_group_grad(pg, &np);
    ck_assert_uint_eq(np, n);
    memcpy(grads, gr, n * sizeof(float));
    size_t used = g->arena.used_total;
    mtft_graph_free(g);
    return used;
}

START_TEST(test_transient_gradients_recycled) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.vocab_size = 64, c.n_ctx = 32, c.n_embd = 32, c.n_layer = 4, c.n_head = c.n_kv_head = 4, c.n_ff = 128;
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 7), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_trainable(mtft_model_base_group(m), 1), MTFT_OK);
    size_t n = 0;
    mtft_param_group_data(mtft_model_base_group(m), &n);
    float *g0 = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
    size_t cap_keep = step_grads(m, 1, g0, n);
    size_t cap_recycle = step_grads(m, 0, g1, n);
    /* the same gradients, bit for bit: no buffer was reused while live */
    ck_assert_int_eq(memcmp(g0, g1, n * sizeof(float)), 0);
    double nz = 0;
    for (size_t i = 0; i < n; i++) nz += g1[i] != 0.0f;
    ck_assert(nz > 0.5 * (double)n);
    /* and less memory: 4 layers' activation gradients become about 2 */
    ck_assert_msg(cap_recycle < cap_keep * 9 / 10, "arena %zu bytes with recycling, %zu without", cap_recycle,
                  cap_keep);
    free(g0);
    free(g1);
    mtft_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_perf");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_attention_qkv_matches_generic);
    tcase_add_test(tc, test_attention_qkv_errors);
    tcase_add_test(tc, test_transient_gradients_recycled);
    suite_add_tcase(s, tc);
    return mtft_test_run(s);
}
