/* ctest-labels: unit */
/* ctest-timeout: 300 */
/* Per-task gradients without K backward passes (ARCHITECTURE.md decision 4),
 * end to end: a tiny GPT-2 (2 layers, C = 32) with a frozen base, a SHARED
 * LoRA (trainable, split by task), one LoRA and one head per task
 * (classification, token tagging, LM), a mixed batch over 3 tasks grouped
 * with mtft_peft_group_rows, one mtft_multitask_forward and ONE backward.
 *
 *   - The shared LoRA's per-task gradient blocks equal the gradients of 3
 *     separate single-task passes (task k's rows alone, group not split),
 *     and so do the task LoRAs', the heads' gradients and the losses.
 *   - A gradient-level balancer (PCGrad, CAGrad, and every other
 *     gradient-level method) fed the split gradients gives the same combined
 *     gradient and weights as fed the separately obtained ones, and the
 *     AdamW step that follows (shared LoRA <- combined gradient, task LoRAs
 *     and heads <- their own gradients) gives the same parameters.
 *   - Partial labels: a task whose rows carry no label contributes nothing
 *     (its gradient block, task LoRA and head gradients are exactly 0, the
 *     balancer gives it weight 0 and combines the other two exactly as a
 *     2-task balancer does); a task with one unlabelled row gets the
 *     gradient of its labelled rows alone.
 *
 * Tolerances: gradients and losses |a - b| <= 1e-5 |b| + 1e-6 max|b| per
 * element and ||a - b|| <= 1e-5 ||b|| (same maths, different GEMM row
 * counts, so only rounding differs); balancer outputs the same; AdamW
 * parameters after one step (lr 1e-2, default eps): |a - b| <= 1e-5 |b| +
 * lr (1e-4 + 2 d / (|g| + eps)), d the gradient tolerance above, i.e. about
 * 1.2e-4 lr except where |g| itself is at the rounding level (see
 * assert_adamw_close); masked task: exact zeros and bitwise-equal balancer
 * outputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/balance.h"
#include "mtft/head.h"
#include "mtft/optim.h"
#include "mtft/peft.h"
#include "mtft_test.h"

enum { K = 3, B = 7, T = 6, V = 64, C = 32 };
#define IGN MTFT_HEAD_IGNORE_INDEX

/* Everything one test needs; rows are stored grouped by task. */
typedef struct fx {
    mtft_model *m;
    mtft_peft *p;
    mtft_param_group *sg;     /* shared LoRA, split into K parts */
    mtft_param_group *tg[K];  /* task LoRAs */
    mtft_head *heads[K];
    mtft_graph *g;
    int32_t task[B], off[K + 1], ids[B * T], len[B];
    int32_t cls[B], tags[B * T], lm[B * T];
    size_t ns, nt[K], nh[K];
} fx;

/* Gradients of one pass. */
typedef struct grads {
    float *shared[K]; /* per-task blocks of the shared LoRA */
    float *shared_total;
    float *task[K];
    float *head[K];
    float loss[K];
} grads;

static void rand_group(mtft_param_group *pg, uint64_t seed, float lo, float hi) {
    for (int i = 0; i < mtft_param_group_count(pg); i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), seed + (uint64_t)i, lo, hi);
    }
}

static float *dup(const float *src, size_t n) {
    ck_assert_ptr_nonnull(src);
    float *d = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(d);
    memcpy(d, src, n * sizeof(float));
    return d;
}

static void fx_init(fx *f) {
    memset(f, 0, sizeof *f);
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.vocab_size = V;
    c.n_ctx = 16;
    c.n_embd = C;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = 2;
    c.n_ff = 4 * C;
    ck_assert_int_eq(mtft_model_new(&f->m, &c, 11), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_trainable(mtft_model_base_group(f->m), 0), MTFT_OK);
    ck_assert_int_eq(mtft_peft_new(&f->p, f->m, K), MTFT_OK);

    mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
    lo.rank = 2;
    lo.alpha = 4.0f;
    lo.target_modules = "attn.c_attn|mlp.c_fc";
    for (int k = 0; k < K; k++) {
        lo.seed = 20 + (uint64_t)k;
        ck_assert_int_eq(mtft_peft_add_lora(f->p, k, &lo, &f->tg[k]), MTFT_OK);
        rand_group(f->tg[k], 100 + 10 * (uint64_t)k, -0.2f, 0.2f); /* B != 0: gradients reach A too */
    }
    lo.rank = 4;
    lo.alpha = 8.0f;
    lo.seed = 30;
    lo.target_modules = "*"; /* c_attn, attn.c_proj, c_fc, mlp.c_proj */
    ck_assert_int_eq(mtft_peft_add_lora(f->p, MTFT_PEFT_SHARED, &lo, &f->sg), MTFT_OK);
    rand_group(f->sg, 300, -0.2f, 0.2f);
    ck_assert_int_eq(mtft_param_group_set_split(f->sg, K), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_split_count(f->sg), K);

    mtft_head_options ho = MTFT_HEAD_OPTIONS_INIT;
    ho.name = "cls";
    ho.n_labels = 3;
    ho.hidden_size = 16;
    ho.pool = MTFT_POOL_LAST;
    ck_assert_int_eq(mtft_head_new(&f->heads[0], C, &ho, 41), MTFT_OK);
    ho = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    ho.name = "tag";
    ho.kind = MTFT_HEAD_TOKEN_CLASSIFICATION;
    ho.n_labels = 5;
    ck_assert_int_eq(mtft_head_new(&f->heads[1], C, &ho, 42), MTFT_OK);
    ho = (mtft_head_options)MTFT_HEAD_OPTIONS_INIT;
    ho.name = "lm";
    ho.kind = MTFT_HEAD_LM;
    ho.n_labels = V; /* its own output projection [V, C] (trainable) */
    ck_assert_int_eq(mtft_head_new(&f->heads[2], C, &ho, 43), MTFT_OK);

    /* a batch whose rows arrive in any task order, grouped here */
    const int32_t task0[B] = {1, 2, 0, 1, 0, 2, 1};
    const int32_t len0[B] = {6, 5, 4, 6, 6, 3, 5};
    int32_t perm[B];
    ck_assert_int_eq(mtft_peft_group_rows(task0, B, K, perm, NULL, f->off), MTFT_OK);
    ck_assert(f->off[0] == 0 && f->off[1] == 2 && f->off[2] == 5 && f->off[3] == 7);
    float r[B * T];
    mtft_test_fill(r, B * T, 7, 0.0f, 1.0f);
    for (int i = 0; i < B; i++) {
        f->task[i] = task0[perm[i]];
        f->len[i] = len0[perm[i]];
        for (int t = 0; t < T; t++) f->ids[i * T + t] = (int32_t)(r[perm[i] * T + t] * V) % V;
    }
    /* labels, by grouped row: task 0 classes, task 1 tags, task 2 next
     * tokens after a 2-token prompt (IGN on prompt and padding) */
    mtft_test_fill(r, B * T, 8, 0.0f, 1.0f);
    for (int i = 0; i < B; i++) {
        f->cls[i] = f->task[i] == 0 ? (int32_t)(r[i] * 3) % 3 : IGN;
        for (int t = 0; t < T; t++) {
            int valid = t < f->len[i];
            f->tags[i * T + t] = f->task[i] == 1 && valid ? (int32_t)(r[i * T + t] * 5) % 5 : IGN;
            f->lm[i * T + t] = f->task[i] == 2 && valid && t >= 2 ? (int32_t)(r[i * T + t] * V) % V : IGN;
        }
    }
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = (size_t)4 << 20;
    ck_assert_int_eq(mtft_graph_new(&f->g, &go), MTFT_OK);
    mtft_param_group_grad(f->sg, &f->ns);
    for (int k = 0; k < K; k++) {
        mtft_param_group_grad(f->tg[k], &f->nt[k]);
        mtft_param_group_grad(mtft_head_group(f->heads[k]), &f->nh[k]);
        ck_assert(f->nt[k] > 0);
    }
    ck_assert(f->ns > 0 && f->nh[0] > 0 && f->nh[1] > 0);
}

static void fx_free(fx *f) {
    mtft_graph_free(f->g);
    for (int k = 0; k < K; k++) mtft_head_free(f->heads[k]);
    mtft_peft_free(f->p);
    mtft_model_free(f->m);
}

static void grads_free(grads *gr) {
    for (int k = 0; k < K; k++) {
        free(gr->shared[k]);
        free(gr->task[k]);
        free(gr->head[k]);
    }
    free(gr->shared_total);
    memset(gr, 0, sizeof *gr);
}

static void zero_all(fx *f) {
    mtft_param_group_zero_grad(f->sg);
    for (int k = 0; k < K; k++) {
        mtft_param_group_zero_grad(f->tg[k]);
        mtft_param_group_zero_grad(mtft_head_group(f->heads[k]));
    }
}

/* Forward rows [r0, r0+n) (all of one task when single >= 0, else the whole
 * grouped batch) and backward on the sum of the task losses. */
static void pass(fx *f, int r0, int n, int single, float loss[K]) {
    zero_all(f);
    mtft_graph_reset(f->g);
    if (single >= 0)
        ck_assert_int_eq(mtft_peft_set_task(f->p, f->g, single, n), MTFT_OK);
    else
        ck_assert_int_eq(mtft_peft_set_batch(f->p, f->g, f->off), MTFT_OK);
    mtft_multitask_batch mb = {f->ids + r0 * T, n, T, f->len + r0, f->task + r0};
    mtft_head_targets tg[K];
    memset(tg, 0, sizeof tg);
    tg[0].class_ids = f->cls + r0;
    tg[1].token_ids = f->tags + r0 * T;
    tg[2].token_ids = f->lm + r0 * T;
    mtft_tensor *tl[K], *total = NULL;
    int rc = mtft_multitask_forward(f->m, f->g, &mb, f->heads, tg, K, NULL, tl, &total, NULL);
    ck_assert_msg(rc == MTFT_OK, "multitask_forward: %s", mtft_error_last()->message);
    for (int k = 0; k < K; k++) {
        if (single >= 0 && k != single) {
            ck_assert_ptr_null(tl[k]);
            continue;
        }
        ck_assert_ptr_nonnull(tl[k]);
        loss[k] = mtft_tensor_data(tl[k])[0];
        ck_assert(isfinite(loss[k]));
    }
    rc = mtft_graph_backward(f->g, total, NULL);
    ck_assert_msg(rc == MTFT_OK, "backward: %s", mtft_error_last()->message);
}

/* One mixed pass: the per-task blocks from ONE backward. */
static void mixed(fx *f, grads *gr) {
    ck_assert_int_eq(mtft_param_group_set_split(f->sg, K), MTFT_OK);
    pass(f, 0, B, -1, gr->loss);
    for (int k = 0; k < K; k++) {
        size_t n = 0;
        gr->shared[k] = dup(mtft_param_group_split_grad(f->sg, k, &n), f->ns);
        ck_assert_uint_eq(n, f->ns);
        gr->task[k] = dup(mtft_param_group_grad(f->tg[k], NULL), f->nt[k]);
        gr->head[k] = dup(mtft_param_group_grad(mtft_head_group(f->heads[k]), NULL), f->nh[k]);
    }
    gr->shared_total = dup(mtft_param_group_grad(f->sg, NULL), f->ns);
}

/* K single-task passes, the shared LoRA NOT split: task k's gradient is the
 * group's ordinary gradient of a pass over task k's rows alone. rows[k] may
 * shorten task k's range (labelled rows only); 0 skips the task. */
static void separate(fx *f, const int *rows, grads *gr) {
    ck_assert_int_eq(mtft_param_group_set_split(f->sg, 0), MTFT_OK);
    ck_assert_ptr_null(mtft_param_group_split_grad(f->sg, 0, NULL));
    for (int k = 0; k < K; k++) {
        int n = rows ? rows[k] : f->off[k + 1] - f->off[k];
        if (n == 0) continue;
        float loss[K];
        pass(f, f->off[k], n, k, loss);
        gr->loss[k] = loss[k];
        gr->shared[k] = dup(mtft_param_group_grad(f->sg, NULL), f->ns);
        gr->task[k] = dup(mtft_param_group_grad(f->tg[k], NULL), f->nt[k]);
        gr->head[k] = dup(mtft_param_group_grad(mtft_head_group(f->heads[k]), NULL), f->nh[k]);
        /* the other tasks' modules got nothing */
        for (int j = 0; j < K; j++) {
            if (j == k) continue;
            size_t nj = 0;
            const float *gj = mtft_param_group_grad(f->tg[j], &nj);
            for (size_t i = 0; i < nj; i++) ck_assert_float_eq(gj[i], 0.0f);
        }
    }
    ck_assert_int_eq(mtft_param_group_set_split(f->sg, K), MTFT_OK);
}

static double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* |a - b| <= rtol |b| + 0.1 rtol max|b| per element, and ||a - b|| <= rtol ||b||. */
static void assert_rel(const float *got, const float *want, size_t n, float rtol, const char *what, int k) {
    char name[96];
    snprintf(name, sizeof name, "%s (task %d)", what, k);
    double mx = max_abs(want, n);
    ck_assert_msg(mx > 0.0, "%s: reference is all zero", name);
    mtft_assert_close(got, want, (int64_t)n, rtol, (float)(0.1 * rtol * mx), name);
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - (double)want[i];
        d += e * e;
        s += (double)want[i] * want[i];
    }
    ck_assert_msg(sqrt(d) <= rtol * sqrt(s), "%s: relative error %.3g > %.3g", name, sqrt(d / s), (double)rtol);
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

START_TEST(test_mtgrad_split_equals_separate) {
    fx f;
    fx_init(&f);
    grads mx, sp;
    memset(&mx, 0, sizeof mx);
    memset(&sp, 0, sizeof sp);
    mixed(&f, &mx);
    separate(&f, NULL, &sp);
    for (int k = 0; k < K; k++) {
        ck_assert_msg(fabsf(mx.loss[k] - sp.loss[k]) <= 1e-5f * fabsf(sp.loss[k]), "loss %d: %g vs %g", k,
                      (double)mx.loss[k], (double)sp.loss[k]);
        assert_rel(mx.shared[k], sp.shared[k], f.ns, 1e-5f, "shared LoRA per-task gradient", k);
        assert_rel(mx.task[k], sp.task[k], f.nt[k], 1e-5f, "task LoRA gradient", k);
        assert_rel(mx.head[k], sp.head[k], f.nh[k], 1e-5f, "head gradient", k);
    }
    /* the group's ordinary gradient is the sum of its blocks */
    float *sum = calloc(f.ns, sizeof(float));
    for (int k = 0; k < K; k++)
        for (size_t i = 0; i < f.ns; i++) sum[i] += mx.shared[k][i];
    assert_rel(mx.shared_total, sum, f.ns, 1e-6f, "sum of the blocks", -1);
    free(sum);
    /* the tasks' gradients differ: the blocks are not one gradient copied */
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) {
            double c = dot(mx.shared[a], mx.shared[b], f.ns) /
                       sqrt(dot(mx.shared[a], mx.shared[a], f.ns) * dot(mx.shared[b], mx.shared[b], f.ns));
            ck_assert_msg(fabs(c) < 0.9, "tasks %d and %d: cosine %g", a, b, c);
        }
    grads_free(&mx);
    grads_free(&sp);
    fx_free(&f);
}
END_TEST

/* Every trainable group's parameters, back to back. */
static size_t params_size(fx *f) {
    size_t n = f->ns;
    for (int k = 0; k < K; k++) n += f->nt[k] + f->nh[k];
    return n;
}
static void params_copy(fx *f, float *dst, int restore) {
    mtft_param_group *gs[1 + 2 * K];
    gs[0] = f->sg;
    for (int k = 0; k < K; k++) {
        gs[1 + k] = f->tg[k];
        gs[1 + K + k] = mtft_head_group(f->heads[k]);
    }
    for (int i = 0; i < 1 + 2 * K; i++) {
        size_t n = 0;
        float *d = mtft_param_group_data(gs[i], &n);
        if (restore)
            memcpy(d, dst, n * sizeof(float));
        else
            memcpy(dst, d, n * sizeof(float));
        dst += n;
    }
}

/* Every trainable group's gradient, in the same order. */
static void params_copy_grad(fx *f, float *dst) {
    mtft_param_group *gs[1 + 2 * K];
    gs[0] = f->sg;
    for (int k = 0; k < K; k++) {
        gs[1 + k] = f->tg[k];
        gs[1 + K + k] = mtft_head_group(f->heads[k]);
    }
    for (int i = 0; i < 1 + 2 * K; i++) {
        size_t n = 0;
        const float *g = mtft_param_group_grad(gs[i], &n);
        memcpy(dst, g, n * sizeof(float));
        dst += n;
    }
}

/* AdamW's first step moves p by lr * g / (|g| + eps) (plus weight decay): a
 * gradient known to within d moves it by at most lr * 2d / (|g| + eps) more,
 * which is large only where |g| itself is at the rounding level. So: |pa -
 * pb| <= 1e-5 |pb| + lr (1e-4 + 2 d / (|gb| + eps)) with d = 1e-5 |gb| +
 * 1e-6 max|gb|, the gradient tolerance asserted before. Where |g| >> 1e-6
 * max|g| (nearly every element) this is about 1.2e-4 lr. */
static void assert_adamw_close(const float *pa, const float *pb, const float *gb, size_t n, float lr, float eps,
                               const char *what) {
    double mx = max_abs(gb, n);
    for (size_t i = 0; i < n; i++) {
        double d = 1e-5 * fabs((double)gb[i]) + 1e-6 * mx;
        double tol = 1e-5 * fabs((double)pb[i]) + lr * (1e-4 + 2.0 * d / (fabs((double)gb[i]) + eps));
        ck_assert_msg(fabs((double)pa[i] - pb[i]) <= tol, "%s: parameter %zu after AdamW: %.9g vs %.9g (gradient %g)",
                      what, i, (double)pa[i], (double)pb[i], (double)gb[i]);
    }
}

/* The training step after the backward: balancer on the per-task blocks ->
 * the shared LoRA's gradient; task LoRAs and heads keep their own gradients;
 * one AdamW step from p0. Leaves the new parameters in p1, the combined
 * gradient in comb and the weights in w; restores p0. */
static void balanced_step(fx *f, mtft_balance_method method, const grads *gr, const float *p0, float *p1,
                          float *comb, float *w, float *gall) {
    mtft_balancer_options bo = MTFT_BALANCER_OPTIONS_INIT;
    bo.method = method;
    bo.seed = 5;
    mtft_balancer *bal = NULL;
    ck_assert_int_eq(mtft_balancer_new(&bal, K, &bo), MTFT_OK);
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    in.losses = gr->loss;
    const float *gk[K] = {gr->shared[0], gr->shared[1], gr->shared[2]};
    in.grads = gk;
    in.n_params = (int64_t)f->ns;
    mtft_balance_output out = {w, comb};
    int rc = mtft_balancer_step(bal, &in, &out);
    ck_assert_msg(rc == MTFT_OK, "%s: %s", mtft_balance_method_name(method), mtft_error_last()->message);
    mtft_balancer_free(bal);

    params_copy(f, (float *)p0, 1);
    zero_all(f);
    memcpy(mtft_param_group_grad(f->sg, NULL), comb, f->ns * sizeof(float));
    for (int k = 0; k < K; k++) {
        memcpy(mtft_param_group_grad(f->tg[k], NULL), gr->task[k], f->nt[k] * sizeof(float));
        memcpy(mtft_param_group_grad(mtft_head_group(f->heads[k]), NULL), gr->head[k], f->nh[k] * sizeof(float));
    }
    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = 1e-2f;
    mtft_adamw *opt = NULL;
    ck_assert_int_eq(mtft_adamw_new(&opt, &ao), MTFT_OK);
    ck_assert_int_eq(mtft_adamw_add_group(opt, f->sg, NULL), MTFT_OK);
    for (int k = 0; k < K; k++) {
        ck_assert_int_eq(mtft_adamw_add_group(opt, f->tg[k], NULL), MTFT_OK);
        ck_assert_int_eq(mtft_adamw_add_group(opt, mtft_head_group(f->heads[k]), NULL), MTFT_OK);
    }
    ck_assert_int_eq(mtft_adamw_step(opt), MTFT_OK);
    mtft_adamw_free(opt);
    params_copy_grad(f, gall);
    params_copy(f, p1, 0);
    params_copy(f, (float *)p0, 1);
}

START_TEST(test_mtgrad_balancer_step_equals_separate) {
    fx f;
    fx_init(&f);
    grads mx, sp;
    memset(&mx, 0, sizeof mx);
    memset(&sp, 0, sizeof sp);
    mixed(&f, &mx);
    separate(&f, NULL, &sp);
    /* at least one pair of tasks conflicts, so PCGrad really projects */
    int conflicts = 0;
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) conflicts += dot(mx.shared[a], mx.shared[b], f.ns) < 0.0;
    ck_assert_int_gt(conflicts, 0);

    size_t np = params_size(&f);
    float *p0 = malloc(np * sizeof(float)), *pa = malloc(np * sizeof(float)), *pb = malloc(np * sizeof(float));
    float *ca = malloc(f.ns * sizeof(float)), *cb = malloc(f.ns * sizeof(float)), *sum = calloc(f.ns, sizeof(float));
    float *ga = malloc(np * sizeof(float)), *gb = malloc(np * sizeof(float));
    params_copy(&f, p0, 0);
    for (int k = 0; k < K; k++)
        for (size_t i = 0; i < f.ns; i++) sum[i] += mx.shared[k][i];
    for (int m = 0; m < MTFT_BALANCE_METHOD_COUNT; m++) {
        if (mtft_balancer_is_gradient_level((mtft_balance_method)m) != 1) continue;
        const char *name = mtft_balance_method_name((mtft_balance_method)m);
        float wa[K], wb[K];
        balanced_step(&f, (mtft_balance_method)m, &mx, p0, pa, ca, wa, ga);
        balanced_step(&f, (mtft_balance_method)m, &sp, p0, pb, cb, wb, gb);
        assert_rel(ca, cb, f.ns, 1e-5f, name, -1);
        for (int k = 0; k < K; k++)
            ck_assert_msg(fabsf(wa[k] - wb[k]) <= 1e-5f * fmaxf(1.0f, fabsf(wb[k])), "%s weight %d: %g vs %g", name,
                          k, (double)wa[k], (double)wb[k]);
        const float lr = 1e-2f;
        assert_adamw_close(pa, pb, gb, np, lr, 1e-8f, name);
        /* the step moved the parameters */
        double moved = 0.0;
        for (size_t i = 0; i < np; i++) moved = fmax(moved, fabs((double)pa[i] - p0[i]));
        ck_assert_msg(moved > 0.5 * lr, "%s: parameters moved by at most %g", name, moved);
        if (m == MTFT_BALANCE_PCGRAD || m == MTFT_BALANCE_CAGRAD) {
            /* and the method changed the direction: not the plain sum (or mean) */
            double cs = dot(ca, sum, f.ns) / sqrt(dot(ca, ca, f.ns) * dot(sum, sum, f.ns));
            ck_assert_msg(cs < 1.0 - 1e-6, "%s: combined gradient parallel to the sum (cos %.9f)", name, cs);
        }
    }
    free(p0);
    free(pa);
    free(pb);
    free(ca);
    free(cb);
    free(sum);
    free(ga);
    free(gb);
    grads_free(&mx);
    grads_free(&sp);
    fx_free(&f);
}
END_TEST

START_TEST(test_mtgrad_masked_task_contributes_nothing) {
    fx f;
    fx_init(&f);
    grads full, mk, sp;
    memset(&full, 0, sizeof full);
    memset(&mk, 0, sizeof mk);
    memset(&sp, 0, sizeof sp);
    mixed(&f, &full);
    /* task 0: no row labelled; task 1: its last row unlabelled */
    for (int i = f.off[0]; i < f.off[1]; i++) f.cls[i] = IGN;
    int last1 = f.off[2] - 1;
    for (int t = 0; t < T; t++) f.tags[last1 * T + t] = IGN;
    mixed(&f, &mk);
    ck_assert_float_eq(mk.loss[0], 0.0f);
    for (size_t i = 0; i < f.ns; i++) ck_assert_float_eq(mk.shared[0][i], 0.0f);
    for (size_t i = 0; i < f.nt[0]; i++) ck_assert_float_eq(mk.task[0][i], 0.0f);
    for (size_t i = 0; i < f.nh[0]; i++) ck_assert_float_eq(mk.head[0][i], 0.0f);
    /* task 2 is untouched by the others' labels */
    assert_rel(mk.shared[2], full.shared[2], f.ns, 1e-5f, "unchanged task", 2);
    /* task 1 = its labelled rows alone */
    int rows[K] = {0, f.off[2] - f.off[1] - 1, 0};
    separate(&f, rows, &sp);
    assert_rel(mk.shared[1], sp.shared[1], f.ns, 1e-5f, "partially labelled task", 1);
    assert_rel(mk.head[1], sp.head[1], f.nh[1], 1e-5f, "partially labelled task's head", 1);
    ck_assert(fabsf(mk.loss[1] - sp.loss[1]) <= 1e-5f * fabsf(sp.loss[1]));

    /* the balancer: mask 0 -> weight 0, and the others combined exactly as a
     * 2-task balancer combines them; the masked task's gradient is not read */
    float *junk = malloc(f.ns * sizeof(float));
    for (size_t i = 0; i < f.ns; i++) junk[i] = NAN;
    float *c3 = malloc(f.ns * sizeof(float)), *c2 = malloc(f.ns * sizeof(float)), *c3j = malloc(f.ns * sizeof(float));
    const mtft_balance_method ms[2] = {MTFT_BALANCE_PCGRAD, MTFT_BALANCE_CAGRAD};
    for (int mi = 0; mi < 2; mi++) {
        mtft_balancer_options bo = MTFT_BALANCER_OPTIONS_INIT;
        bo.method = ms[mi];
        bo.seed = 9;
        mtft_balancer *b3 = NULL, *b3j = NULL, *b2 = NULL;
        ck_assert_int_eq(mtft_balancer_new(&b3, K, &bo), MTFT_OK);
        ck_assert_int_eq(mtft_balancer_new(&b3j, K, &bo), MTFT_OK);
        ck_assert_int_eq(mtft_balancer_new(&b2, 2, &bo), MTFT_OK);
        const uint8_t mask[K] = {0, 1, 1};
        float w3[K], w3j[K], w2[2];
        const float *g3[K] = {NULL, mk.shared[1], mk.shared[2]};
        const float *g3j[K] = {junk, mk.shared[1], mk.shared[2]};
        const float *g2[2] = {mk.shared[1], mk.shared[2]};
        mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
        in.losses = mk.loss;
        in.mask = mask;
        in.grads = g3;
        in.n_params = (int64_t)f.ns;
        mtft_balance_output o3 = {w3, c3}, o3j = {w3j, c3j}, o2 = {w2, c2};
        ck_assert_int_eq(mtft_balancer_step(b3, &in, &o3), MTFT_OK);
        in.grads = g3j;
        ck_assert_int_eq(mtft_balancer_step(b3j, &in, &o3j), MTFT_OK);
        in.mask = NULL;
        in.losses = mk.loss + 1;
        in.grads = g2;
        ck_assert_int_eq(mtft_balancer_step(b2, &in, &o2), MTFT_OK);
        ck_assert_float_eq(w3[0], 0.0f);
        ck_assert_float_eq(w3[1], w2[0]);
        ck_assert_float_eq(w3[2], w2[1]);
        ck_assert_int_eq(memcmp(c3, c2, f.ns * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(c3, c3j, f.ns * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(w3, w3j, sizeof w3), 0);
        ck_assert(max_abs(c3, f.ns) > 0.0);
        mtft_balancer_free(b3);
        mtft_balancer_free(b3j);
        mtft_balancer_free(b2);
    }
    free(junk);
    free(c3);
    free(c2);
    free(c3j);
    grads_free(&full);
    grads_free(&mk);
    grads_free(&sp);
    fx_free(&f);
}
END_TEST

static Suite *multitask_grad_suite(void) {
    Suite *s = suite_create("multitask_grad");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_mtgrad_split_equals_separate);
    tcase_add_test(tc, test_mtgrad_balancer_step_equals_separate);
    tcase_add_test(tc, test_mtgrad_masked_task_contributes_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(multitask_grad_suite()); }
