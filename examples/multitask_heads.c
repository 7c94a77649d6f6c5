/* Four tasks, one tiny GPT-2, one mixed batch per step: a classification
 * head, a regression head (standardised targets), a token-tagging head and a
 * prompt-masked LM head (answer after a separator), trained
 * together with AdamW; one forward and one backward per step. Public API
 * only. Exits non-zero unless every task learned (loss falls and held-out
 * predictions are right). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <mtft/head.h>
#include <mtft/mtft.h>
#include <mtft/optim.h>

#define V 16
#define SEP 15
#define T 12
#define PER 3          /* rows per task per batch */
#define NT 4
#define B (PER * NT)
#define STEPS 600
#define IGN MTFT_HEAD_IGNORE_INDEX

static int fail(const char *what) {
    fprintf(stderr, "multitask_heads: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

typedef struct batch {
    int32_t ids[B * T], len[B], task[B], cls[B], tok[B * T];
    float val[B];
} batch;

/* Rows of task k are PER..: 0 classification (first token < 8?), 1
 * regression (100 + 3 * first token), 2 tagging (tag = token % 3), 3 LM
 * (4 prompt tokens, SEP, then count on from the last prompt token mod 14:
 * loss on the answer only). */
static void make_batch(batch *b, mtft_rng *r) {
    memset(b, 0, sizeof *b);
    for (int i = 0; i < B; i++) {
        const int k = i / PER;
        int32_t *ids = b->ids + i * T, *tok = b->tok + i * T;
        b->task[i] = k;
        b->len[i] = k == 3 ? 9 : 6 + (int)mtft_rng_below(r, T - 5);
        for (int t = 0; t < T; t++) {
            ids[t] = (int32_t)mtft_rng_below(r, V - 1);
            tok[t] = IGN;
        }
        if (k == 0) b->cls[i] = ids[0] < 8;
        if (k == 1) b->val[i] = 100.0f + 3.0f * (float)ids[0];
        if (k == 2)
            for (int t = 0; t < b->len[i]; t++) tok[t] = ids[t] % 3;
        if (k == 3) {
            for (int t = 0; t < 4; t++) ids[t] = (int32_t)mtft_rng_below(r, 14);
            ids[4] = SEP;
            for (int t = 0; t < 4; t++) ids[5 + t] = (ids[3] + 1 + t) % 14;
            for (int t = 4; t < 8; t++) tok[t] = ids[t + 1]; /* the next token, on the answer only */
        }
    }
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.vocab_size = V;
    c.n_ctx = 16;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 4;
    c.n_ff = 64;
    mtft_model *m = NULL;
    if (mtft_model_new(&m, &c, 1) < 0) return fail("model");

    mtft_head *heads[NT];
    const mtft_head_kind kinds[NT] = {MTFT_HEAD_CLASSIFICATION, MTFT_HEAD_REGRESSION, MTFT_HEAD_TOKEN_CLASSIFICATION,
                                      MTFT_HEAD_LM};
    const char *names[NT] = {"cls", "reg", "tag", "count"};
    const int labels[NT] = {2, 1, 3, 0};
    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = 3e-3f;
    mtft_adamw *opt = NULL;
    if (mtft_adamw_new(&opt, &ao) < 0 || mtft_adamw_add_group(opt, mtft_model_base_group(m), NULL) < 0)
        return fail("adamw");
    for (int k = 0; k < NT; k++) {
        mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
        o.name = names[k];
        o.kind = kinds[k];
        o.n_labels = labels[k];
        o.pool = MTFT_POOL_LAST;
        if (k == 0) o.hidden_size = 32;
        if (mtft_head_new(&heads[k], c.n_embd, &o, 10 + (uint64_t)k) < 0) return fail("head");
        if (mtft_adamw_add_group(opt, mtft_head_group(heads[k]), NULL) < 0) return fail("adamw group");
    }
    /* regression statistics from training targets: 100 + 3 * U{0..14} */
    float tr[1000];
    mtft_rng r;
    mtft_rng_seed(&r, 7);
    for (int i = 0; i < 1000; i++) tr[i] = 100.0f + 3.0f * (float)mtft_rng_below(&r, V - 1);
    if (mtft_head_fit_target_stats(heads[1], tr, 1000, 0) < 0) return fail("target stats");

    mtft_graph *g = NULL;
    if (mtft_graph_new(&g, NULL) < 0) return fail("graph");
    batch b;
    double first[NT] = {0}, last[NT] = {0};
    for (int step = 0; step < STEPS; step++) {
        make_batch(&b, &r);
        mtft_multitask_batch mb = {b.ids, B, T, b.len, b.task};
        mtft_head_targets tg = {b.cls, b.tok, b.val, 1}, tgs[NT] = {tg, tg, tg, tg};
        mtft_tensor *loss[NT], *total = NULL;
        mtft_graph_reset(g);
        mtft_adamw_zero_grad(opt);
        if (mtft_multitask_forward(m, g, &mb, heads, tgs, NT, NULL, loss, &total, NULL) < 0) return fail("forward");
        if (mtft_graph_backward(g, total, NULL) < 0) return fail("backward");
        if (mtft_adamw_step(opt) < 0) return fail("step");
        for (int k = 0; k < NT; k++) {
            const double l = mtft_tensor_data(loss[k])[0];
            if (step < 20) first[k] += l / 20;
            if (step >= STEPS - 20) last[k] += l / 20;
        }
        if (step % 100 == 0 || step == STEPS - 1)
            printf("step %3d  loss %.4f  (cls %.4f  reg %.4f  tag %.4f  count %.4f)\n", step,
                   (double)mtft_tensor_data(total)[0], (double)mtft_tensor_data(loss[0])[0],
                   (double)mtft_tensor_data(loss[1])[0], (double)mtft_tensor_data(loss[2])[0],
                   (double)mtft_tensor_data(loss[3])[0]);
    }

    /* held-out predictions over 20 fresh mixed batches, each head on its own rows */
    int right[NT] = {0}, count[NT] = {0};
    mtft_graph_set_grad_enabled(g, 0);
    for (int rep = 0; rep < 20; rep++) {
        make_batch(&b, &r);
        mtft_multitask_batch mb = {b.ids, B, T, b.len, b.task};
        mtft_graph_reset(g);
        mtft_tensor *hid = mtft_model_hidden(m, g, mb.ids, B, T, mb.valid_len);
        if (!hid) return fail("eval forward");
        for (int k = 0; k < NT; k++) {
            mtft_tensor *rows = mtft_slice(g, hid, 0, k * PER, PER);
            int32_t ids[PER * T];
            float vals[PER];
            if (mtft_head_predict(heads[k], g, m, rows, b.len + k * PER, ids, k == 1 ? vals : NULL) < 0)
                return fail("predict");
            for (int i = 0; i < PER; i++) {
                const int row = k * PER + i;
                if (k == 0) right[k] += ids[i] == b.cls[row], count[k]++;
                if (k == 1) right[k] += fabsf(vals[i] - b.val[row]) < 6.0f, count[k]++;
                if (k >= 2)
                    for (int t = 0; t < T; t++)
                        if (b.tok[row * T + t] != IGN) right[k] += ids[i * T + t] == b.tok[row * T + t], count[k]++;
            }
        }
    }
    int ok = 1;
    for (int k = 0; k < NT; k++) {
        const int learned = last[k] < 0.5 * first[k] && right[k] * 10 >= count[k] * 8;
        printf("%-5s loss %.4f -> %.4f, held-out %d/%d right%s\n", names[k], first[k], last[k], right[k], count[k],
               learned ? "" : "  <- did not learn");
        ok &= learned;
    }
    mtft_graph_free(g);
    for (int k = 0; k < NT; k++) mtft_head_free(heads[k]);
    mtft_adamw_free(opt);
    mtft_model_free(m);
    return ok ? 0 : 1;
}
