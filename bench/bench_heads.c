/* Task-head costs at the GPT-2 small shape (C 768, V 50257).
 *
 *   bench_heads [B] [T] [prompt_frac] [reps]     defaults 4 256 0.5 2
 *
 * 1. LM head (tied embedding), forward + loss + backward, with the first
 *    prompt_frac of every row a prompt (-100): the head's loss, which
 *    projects only the target tokens' rows, against the same loss through
 *    full [B, T, V] logits and a masked cross-entropy.
 * 2. Classification heads on a mixed batch: B heads, each on its own row
 *    (row slices, as mtft_multitask_forward runs them), against one head on
 *    all B rows: the per-task overhead of the heads.
 * Prints a line per case and a JSON line per case. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/head.h"
#include "mtft/model.h"
#include "mtft/tensor.h"

static int die(const char *what) {
    fprintf(stderr, "bench_heads: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const int B = argc > 1 ? atoi(argv[1]) : 4, T = argc > 2 ? atoi(argv[2]) : 256;
    const double frac = argc > 3 ? atof(argv[3]) : 0.5;
    const int reps = argc > 4 ? atoi(argv[4]) : 2;
    if (B < 1 || T < 2 || !(frac >= 0 && frac < 1) || reps < 1 || reps > 50) {
        fprintf(stderr, "usage: bench_heads [B] [T] [prompt_frac in [0,1)] [reps<=50]\n");
        return 2;
    }
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.n_layer = 1; /* only the tied embedding is used */
    c.n_ctx = T > 1024 ? T : 1024;
    mtft_model *m = NULL;
    if (mtft_model_new(&m, &c, 1) < 0) return die("model");
    const int C = c.n_embd, V = c.vocab_size, N = B * T, P = (int)(frac * T);
    printf("OpenBLAS kernel %s, threads %d, B %d T %d C %d V %d, prompt %d of %d tokens per row\n",
           mtft_blas_corename(), mtft_get_num_threads(), B, T, C, V, P, T);

    float *x = malloc(sizeof(float) * (size_t)N * (size_t)C);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *cls = malloc(sizeof(int32_t) * (size_t)B);
    int32_t *len = malloc(sizeof(int32_t) * (size_t)B);
    if (!x || !lab || !cls || !len) return 1;
    mtft_rng r;
    mtft_rng_seed(&r, 3);
    for (int64_t i = 0; i < (int64_t)N * C; i++) x[i] = (float)mtft_rng_normal(&r);
    for (int i = 0; i < N; i++) lab[i] = (i % T) < P ? MTFT_HEAD_IGNORE_INDEX : (int32_t)mtft_rng_below(&r, (uint64_t)V);
    for (int b = 0; b < B; b++) {
        cls[b] = (int32_t)mtft_rng_below(&r, 3);
        len[b] = T;
    }
    const int64_t shape[3] = {B, T, C};

    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    o.kind = MTFT_HEAD_LM;
    o.n_labels = 0;
    mtft_head *lm = NULL;
    if (mtft_head_new(&lm, C, &o, 1) < 0) return die("lm head");
    mtft_graph *g = NULL;
    if (mtft_graph_new(&g, NULL) < 0) return die("graph");
    double best[2] = {1e30, 1e30}, loss[2] = {0, 0};
    for (int rep = 0; rep <= reps; rep++) {
        for (int way = 0; way < 2; way++) {
            mtft_param_group_zero_grad(mtft_model_base_group(m));
            mtft_graph_reset(g);
            const double t0 = bench_now();
            mtft_tensor *h = mtft_from_data(g, 3, shape, x);
            mtft_tensor_set_requires_grad(g, h, 1);
            mtft_tensor *l;
            if (way == 0) {
                const mtft_head_targets tg = {NULL, lab, NULL, 0};
                l = mtft_head_loss(lm, g, m, h, NULL, &tg);
            } else {
                l = mtft_cross_entropy(g, mtft_head_forward(lm, g, m, h, NULL), lab, MTFT_HEAD_IGNORE_INDEX, 0.0f);
            }
            if (!l || mtft_graph_backward(g, l, NULL) < 0) return die("lm step");
            const double dt = bench_now() - t0;
            if (rep > 0 && dt < best[way]) best[way] = dt; /* rep 0 warms the arena */
            loss[way] = mtft_tensor_data(l)[0];
        }
    }
    printf("lm head fwd+bwd: target rows only %8.1f ms | full logits %8.1f ms | x%.2f | loss %.6f vs %.6f\n",
           1e3 * best[0], 1e3 * best[1], best[1] / best[0], loss[0], loss[1]);
    printf("{\"name\":\"lm_head_target_rows\",\"B\":%d,\"T\":%d,\"prompt_frac\":%.3f,\"seconds\":%.6g,\"full_logits_"
           "seconds\":%.6g,\"speedup\":%.4g,\"kernel\":\"%s\",\"threads\":%d}\n",
           B, T, frac, best[0], best[1], best[1] / best[0], mtft_blas_corename(), mtft_get_num_threads());
    mtft_head_free(lm);

    /* B classification heads (one per row) vs one head on B rows */
    mtft_head **heads = calloc((size_t)B, sizeof *heads);
    if (!heads) return 1;
    o = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    o.n_labels = 3;
    o.hidden_size = C;
    for (int b = 0; b < B; b++)
        if (mtft_head_new(&heads[b], C, &o, 10 + (uint64_t)b) < 0) return die("cls head");
    double hb[2] = {1e30, 1e30};
    for (int rep = 0; rep <= reps * 5; rep++) {
        for (int way = 0; way < 2; way++) {
            mtft_graph_reset(g);
            const double t0 = bench_now();
            mtft_tensor *h = mtft_from_data(g, 3, shape, x);
            mtft_tensor_set_requires_grad(g, h, 1);
            mtft_tensor *sum = NULL;
            const int nh = way == 0 ? B : 1;
            for (int k = 0; k < nh; k++) {
                const int rows = way == 0 ? 1 : B;
                const mtft_head_targets tg = {cls + k, NULL, NULL, 0};
                mtft_tensor *l = mtft_head_loss(heads[k], g, NULL, mtft_slice(g, h, 0, k, rows), len + k, &tg);
                sum = sum ? mtft_add(g, sum, l) : l;
            }
            if (!sum || mtft_graph_backward(g, sum, NULL) < 0) return die("cls step");
            const double dt = bench_now() - t0;
            if (rep > 0 && dt < hb[way]) hb[way] = dt;
        }
    }
    printf("classification heads (hidden %d) fwd+bwd: %d heads x 1 row %8.3f ms | 1 head x %d rows %8.3f ms | x%.2f\n",
           C, B, 1e3 * hb[0], B, 1e3 * hb[1], hb[0] / hb[1]);
    printf("{\"name\":\"cls_heads_per_task\",\"B\":%d,\"T\":%d,\"heads\":%d,\"seconds\":%.6g,\"one_head_seconds\":%.6g,"
           "\"ratio\":%.4g}\n",
           B, T, B, hb[0], hb[1], hb[0] / hb[1]);
    for (int b = 0; b < B; b++) mtft_head_free(heads[b]);
    free(heads);
    mtft_graph_free(g);
    mtft_model_free(m);
    free(x);
    free(lab);
    free(cls);
    free(len);
    return 0;
}
