/* Inference that switches per-task adapters inside one batch.
 *
 * One base model, three tasks, each with its own LoRA adapter and its own
 * classification head. A batch mixes rows of all three tasks in any order:
 * the rows are grouped by task, the trunk runs ONCE over the whole batch
 * with each task's LoRA applied to its own rows only, and each head reads
 * its own rows. The example then runs every row alone, through its task's
 * adapter, and checks that the mixed batch gave the same answers.
 *
 * Adapters here are random stand-ins for trained ones; in a real program
 * they come from mtft_peft_lora_load (PEFT's adapter_model.safetensors) and
 * the heads from mtft_head_load. Public API only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mtft/mtft.h>

#define N_TASKS 3
#define B 6
#define T 8
#define N_LABELS 3

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, mtft_error_last()->message);
    return 1;
}

/* Fill a trainable group with small random values (a stand-in for training). */
static void randomise(mtft_param_group *pg, uint64_t seed) {
    size_t n = 0;
    float *d = mtft_param_group_data(pg, &n);
    mtft_rng r;
    mtft_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) d[i] = 0.2f * (mtft_rng_uniform(&r) - 0.5f);
}

/* Class ids and probabilities of `rows` rows of ids through the current
 * adapter setting (grouped ranges set by the caller). */
static int classify(mtft_model *m, mtft_graph *g, mtft_head *const *heads, const int32_t *ids, int rows,
                    const int32_t *valid, const int32_t *offsets, int32_t *cls, float *probs) {
    mtft_tensor *hidden = mtft_model_hidden(m, g, ids, rows, T, valid);
    if (!hidden) return -1;
    for (int k = 0; k < N_TASKS; k++) {
        int n = offsets[k + 1] - offsets[k];
        if (n == 0) continue;
        mtft_tensor *h_k = mtft_slice(g, hidden, 0, offsets[k], n); /* a view: no copy */
        if (mtft_head_predict(heads[k], g, m, h_k, valid + offsets[k], cls + offsets[k],
                              probs + (size_t)offsets[k] * N_LABELS) < 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    int rc = 1;
    mtft_model *m = NULL;
    mtft_peft *p = NULL;
    mtft_graph *g = NULL;
    mtft_head *heads[N_TASKS] = {NULL};

    mtft_model_config cfg = MTFT_MODEL_CONFIG_INIT;
    cfg.vocab_size = 96;
    cfg.n_ctx = 16;
    cfg.n_embd = 32;
    cfg.n_layer = 2;
    cfg.n_head = 4;
    cfg.n_kv_head = 4;
    cfg.n_ff = 128;
    if (mtft_model_new(&m, &cfg, 1) < 0) return fail("model");
    mtft_param_group_set_trainable(mtft_model_base_group(m), 0); /* the base is shared and frozen */
    if (mtft_peft_new(&p, m, N_TASKS) < 0) {
        rc = fail("peft");
        goto done;
    }
    for (int k = 0; k < N_TASKS; k++) {
        mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
        lo.rank = 4;
        lo.alpha = 8.0f;
        lo.target_modules = "attn.c_attn|mlp.c_fc";
        lo.seed = 10 + (uint64_t)k;
        mtft_param_group *pg = NULL;
        if (mtft_peft_add_lora(p, k, &lo, &pg) < 0) {
            rc = fail("lora");
            goto done;
        }
        randomise(pg, 100 + (uint64_t)k);
        mtft_head_options ho = MTFT_HEAD_OPTIONS_INIT;
        ho.kind = MTFT_HEAD_CLASSIFICATION;
        ho.n_labels = N_LABELS;
        ho.pool = MTFT_POOL_MEAN;
        if (mtft_head_new(&heads[k], cfg.n_embd, &ho, 200 + (uint64_t)k) < 0) {
            rc = fail("head");
            goto done;
        }
    }
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.training = 0;
    if (mtft_graph_new(&g, &go) < 0) {
        rc = fail("graph");
        goto done;
    }
    mtft_graph_set_grad_enabled(g, 0);

    /* A batch in arbitrary task order, rows right-padded. */
    const int32_t task_of_row[B] = {2, 0, 1, 0, 2, 1};
    const int32_t len_of_row[B] = {8, 5, 7, 8, 3, 6};
    int32_t ids[B * T];
    mtft_rng r;
    mtft_rng_seed(&r, 7);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)mtft_rng_below(&r, (uint64_t)cfg.vocab_size);

    /* Group the rows by task; perm[i] is the original row at grouped slot i. */
    int32_t perm[B], offsets[N_TASKS + 1];
    if (mtft_peft_group_rows(task_of_row, B, N_TASKS, perm, NULL, offsets) < 0) {
        rc = fail("group rows");
        goto done;
    }
    int32_t gids[B * T], gvalid[B], gcls[B];
    float gprobs[B * N_LABELS];
    for (int i = 0; i < B; i++) {
        memcpy(gids + i * T, ids + perm[i] * T, T * sizeof(int32_t));
        gvalid[i] = len_of_row[perm[i]];
    }
    if (mtft_peft_set_batch(p, g, offsets) < 0 || classify(m, g, heads, gids, B, gvalid, offsets, gcls, gprobs) < 0) {
        rc = fail("mixed batch");
        goto done;
    }

    /* The same rows one at a time, each through its own task's adapter. */
    printf("row task | mixed batch: class  p(class) | alone: class  p(class)\n");
    int mismatches = 0;
    for (int i = 0; i < B; i++) {
        int row = perm[i], task = task_of_row[row];
        int32_t off1[N_TASKS + 1], cls1[1];
        float probs1[N_LABELS];
        for (int k = 0; k <= N_TASKS; k++) off1[k] = k <= task ? 0 : 1;
        mtft_graph_reset(g);
        if (mtft_peft_set_task(p, g, task, 1) < 0 ||
            classify(m, g, heads, ids + row * T, 1, &len_of_row[row], off1, cls1, probs1) < 0) {
            rc = fail("single row");
            goto done;
        }
        /* the adapter matters: the same row through another task's adapter
         * (and this task's head) gives other probabilities */
        int other = (task + 1) % N_TASKS;
        int32_t off2[N_TASKS + 1], cls2[1];
        float probs2[N_LABELS];
        for (int k = 0; k <= N_TASKS; k++) off2[k] = k <= task ? 0 : 1;
        mtft_graph_reset(g);
        if (mtft_peft_set_task(p, g, other, 1) < 0) {
            rc = fail("other adapter");
            goto done;
        }
        /* set_task routes all rows to `other`; the head list still picks this task's head by off2 */
        if (classify(m, g, heads, ids + row * T, 1, &len_of_row[row], off2, cls2, probs2) < 0) {
            rc = fail("other adapter");
            goto done;
        }
        if (fabsf(probs2[0] - probs1[0]) < 1e-6f && fabsf(probs2[1] - probs1[1]) < 1e-6f) {
            fprintf(stderr, "row %d: another task's adapter changed nothing\n", row);
            mismatches++;
        }
        float pm = gprobs[i * N_LABELS + gcls[i]], pa = probs1[cls1[0]];
        int same = cls1[0] == gcls[i];
        for (int c = 0; c < N_LABELS; c++)
            if (fabsf(probs1[c] - gprobs[i * N_LABELS + c]) > 1e-5f) same = 0;
        mismatches += !same;
        printf("%3d %4d | %17d  %8.5f | %11d  %8.5f %s\n", row, task, gcls[i], (double)pm, cls1[0], (double)pa,
               same ? "" : "  MISMATCH");
    }
    printf("%s: the mixed batch ran the trunk once with %d adapters and matched %d single-row runs\n",
           mismatches ? "FAIL" : "ok", N_TASKS, B - mismatches);
    rc = mismatches ? 1 : 0;
done:
    for (int k = 0; k < N_TASKS; k++) mtft_head_free(heads[k]);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
    return rc;
}
