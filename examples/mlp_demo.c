/* mlp_demo: fit a tiny MLP with the public mtft API and plain SGD.
 *
 * Task: regression of y = x0 x1 + 1 / (1 + x0^2 + x1^2) - 0.5 on 256 points
 * drawn uniformly from [-1.5, 1.5]^2 (seeded). (No libm: the example links
 * only mtft.) Model: 2 -> 32 (tanh) -> 32 (GELU) ->
 * 1, weights in one parameter group, mean squared error. Each step resets the
 * graph (the arena is reused, so steps after the first allocate nothing),
 * runs forward and backward, and updates every parameter in the group's flat
 * block: w -= lr * grad. Prints the loss every 100 steps; exits non-zero if
 * the final loss is not below a quarter of the initial one. */
#include <stdio.h>
#include <string.h>

#include <mtft/mtft.h>

enum { N = 256, IN = 2, H = 32, STEPS = 1000, PRINT_EVERY = 100 };

static int fail(const char *what) {
    fprintf(stderr, "mlp_demo: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);

    /* data */
    static float x[N * IN], y[N];
    mtft_rng rng;
    mtft_rng_seed(&rng, 42);
    for (int i = 0; i < N; i++) {
        float a = 3.0f * mtft_rng_uniform(&rng) - 1.5f, b = 3.0f * mtft_rng_uniform(&rng) - 1.5f;
        x[i * IN] = a;
        x[i * IN + 1] = b;
        y[i] = a * b + 1.0f / (1.0f + a * a + b * b) - 0.5f;
    }

    /* parameters: PyTorch layout (w [out, in]) for mtft_linear */
    mtft_param_group *pg = NULL;
    if (mtft_param_group_new(&pg, "mlp") < 0) return fail("param group");
    const int64_t s_w1[2] = {H, IN}, s_b1[1] = {H}, s_w2[2] = {H, H}, s_w3[2] = {1, H}, s_b3[1] = {1};
    mtft_tensor *w1 = mtft_param_group_add(pg, "w1", 2, s_w1), *b1 = mtft_param_group_add(pg, "b1", 1, s_b1);
    mtft_tensor *w2 = mtft_param_group_add(pg, "w2", 2, s_w2), *b2 = mtft_param_group_add(pg, "b2", 1, s_b1);
    mtft_tensor *w3 = mtft_param_group_add(pg, "w3", 2, s_w3), *b3 = mtft_param_group_add(pg, "b3", 1, s_b3);
    if (!w1 || !b1 || !w2 || !b2 || !w3 || !b3 || mtft_param_group_alloc(pg) < 0) {
        mtft_param_group_free(pg);
        return fail("parameters");
    }
    /* uniform init in +-1/sqrt(fan_in), biases zero (alloc zeroes them) */
    mtft_tensor *ws[3] = {w1, w2, w3};
    const float bound[3] = {0.70710678f /* 1/sqrt(IN) */, 0.17677670f /* 1/sqrt(H) */, 0.17677670f};
    for (int l = 0; l < 3; l++) {
        float *d = mtft_tensor_data(ws[l]), r = bound[l];
        for (int64_t i = 0; i < mtft_tensor_numel(ws[l]); i++) d[i] = r * (2.0f * mtft_rng_uniform(&rng) - 1.0f);
    }

    mtft_graph *g = NULL;
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = (size_t)1 << 20;
    if (mtft_graph_new(&g, &go) < 0) {
        mtft_param_group_free(pg);
        return fail("graph");
    }

    const float lr = 0.1f;
    const int64_t s_x[2] = {N, IN};
    float first = -1.0f, last = -1.0f;
    int rc = 0;
    for (int step = 0; step <= STEPS; step++) {
        mtft_graph_reset(g);
        mtft_param_group_zero_grad(pg);
        mtft_tensor *xt = mtft_from_data(g, 2, s_x, x);
        mtft_tensor *h = mtft_tanh(g, mtft_linear(g, xt, w1, b1));
        h = mtft_gelu_tanh(g, mtft_linear(g, h, w2, b2));
        mtft_tensor *pred = mtft_linear(g, h, w3, b3); /* [N, 1] */
        mtft_tensor *loss = mtft_mse(g, pred, y);
        if (!loss) {
            rc = fail("forward");
            break;
        }
        float l = mtft_tensor_data(loss)[0];
        if (step == 0) first = l;
        last = l;
        if (step % PRINT_EVERY == 0) printf("step %4d  loss %.5f\n", step, (double)l);
        if (step == STEPS) break;
        if (mtft_graph_backward(g, loss, NULL) < 0) {
            rc = fail("backward");
            break;
        }
        size_t n = 0;
        float *p = mtft_param_group_data(pg, &n), *gr = mtft_param_group_grad(pg, NULL);
        for (size_t i = 0; i < n; i++) p[i] -= lr * gr[i];
    }
    mtft_graph_free(g);
    mtft_param_group_free(pg);
    if (rc) return rc;
    printf("initial loss %.5f, final loss %.5f (blas kernel %s)\n", (double)first, (double)last,
           mtft_blas_corename());
    if (!(last < 0.25f * first)) {
        fprintf(stderr, "mlp_demo: the loss did not fall enough\n");
        return 1;
    }
    return 0;
}
