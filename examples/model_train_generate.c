/* Train a tiny GPT-2 from scratch with AdamW on a repeating token pattern,
 * then continue a prompt with the KV-cache generator. Public API only.
 * Exits non-zero if the model did not learn the pattern. */
#include <stdio.h>

#include <mtft/mtft.h>
#include <mtft/model.h>
#include <mtft/optim.h>

#define PERIOD 7
#define B 4
#define T 16

static int fail(const char *what) {
    fprintf(stderr, "model_train_generate: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.vocab_size = 16;
    c.n_ctx = 32;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 4;
    c.n_ff = 64;
    mtft_model *m = NULL;
    if (mtft_model_new(&m, &c, 1) < 0) return fail("model");

    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = 1e-2f;
    mtft_adamw *opt = NULL;
    mtft_graph *g = NULL;
    if (mtft_adamw_new(&opt, &ao) < 0 || mtft_adamw_add_group(opt, mtft_model_base_group(m), NULL) < 0)
        return fail("adamw");
    if (mtft_graph_new(&g, NULL) < 0) return fail("graph");

    /* rows start at different phases of the pattern 0 1 2 ... PERIOD-1 */
    int32_t ids[B * T], targets[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = (int32_t)((b * 2 + t) % PERIOD);
            targets[b * T + t] = (int32_t)((b * 2 + t + 1) % PERIOD);
        }
    float first = 0.0f, last = 0.0f;
    for (int step = 0; step < 60; step++) {
        mtft_graph_reset(g);
        mtft_adamw_zero_grad(opt);
        mtft_tensor *h = mtft_model_hidden(m, g, ids, B, T, NULL);
        mtft_tensor *loss = mtft_cross_entropy(g, mtft_model_logits(m, g, h), targets, -100, 0.0f);
        if (!loss || mtft_graph_backward(g, loss, NULL) < 0 || mtft_adamw_step(opt) < 0) return fail("step");
        last = mtft_tensor_data(loss)[0];
        if (step == 0) first = last;
        if (step % 10 == 0) printf("step %2d  loss %.4f\n", step, (double)last);
    }
    printf("loss %.4f -> %.4f\n", (double)first, (double)last);

    int32_t prompt[3] = {3, 4, 5}, out[12];
    int n_out = 0;
    if (mtft_model_generate(m, prompt, 3, 12, NULL, out, &n_out) < 0) return fail("generate");
    int ok = n_out == 12;
    printf("3 4 5 ->");
    for (int i = 0; i < n_out; i++) {
        printf(" %d", (int)out[i]);
        ok = ok && out[i] == (6 + i) % PERIOD;
    }
    printf("\n%s\n", ok ? "learned the pattern" : "did NOT learn the pattern");

    mtft_graph_free(g);
    mtft_adamw_free(opt);
    mtft_model_free(m);
    return ok && last < 0.5f * first ? 0 : 1;
}
