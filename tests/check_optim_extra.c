/* ctest-labels: unit */
/* SGD (torch.optim.SGD semantics), LR schedules (Hugging Face formulas),
 * gradient clipping/accumulation, SAM and per-task SAM, against values
 * worked out by hand in the comments. */
#include <math.h>
#include <string.h>

#include "mtft/optim.h"
#include "mtft_test.h"

/* A group with a [1,1] matrix "w" (decays) and a [1] vector "b" (no decay
 * by default), both starting at 1. */
static mtft_param_group *scalar_group(const char *name) {
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, name), 0);
    int64_t s2[2] = {1, 1}, s1[1] = {1};
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "w", 2, s2));
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "b", 1, s1));
    ck_assert_int_eq(mtft_param_group_alloc(pg), 0);
    mtft_tensor_data(mtft_param_group_find(pg, "w"))[0] = 1.0f;
    mtft_tensor_data(mtft_param_group_find(pg, "b"))[0] = 1.0f;
    return pg;
}

static float val(mtft_param_group *pg, const char *t) { return mtft_tensor_data(mtft_param_group_find(pg, t))[0]; }
static void set_grad(mtft_param_group *pg, const char *t, float g) {
    mtft_tensor_grad(mtft_param_group_find(pg, t))[0] = g;
}

static void run_sgd(mtft_sgd_options *o, mtft_param_group *pg, int steps, float g) {
    mtft_sgd *opt = NULL;
    ck_assert_int_eq(mtft_sgd_new(&opt, o), 0);
    ck_assert_int_eq(mtft_sgd_add_group(opt, pg, NULL), 0);
    for (int s = 0; s < steps; s++) {
        mtft_sgd_zero_grad(opt);
        set_grad(pg, "w", g);
        set_grad(pg, "b", g);
        ck_assert_int_eq(mtft_sgd_step(opt), 0);
    }
    mtft_sgd_free(opt);
}

/* p = 1, g = 0.5 every step, lr 0.1, momentum 0.9:
 *   step 1: b = 0.5 (the first buffer is d itself), p = 1 - 0.05 = 0.95
 *   step 2: b = 0.9*0.5 + 0.5 = 0.95,               p = 0.95 - 0.095 = 0.855
 *   step 3: b = 0.9*0.95 + 0.5 = 1.355,             p = 0.855 - 0.1355 = 0.7195 */
START_TEST(test_optim_sgd_momentum_by_hand) {
    mtft_sgd_options o = MTFT_SGD_OPTIONS_INIT;
    o.lr = 0.1f;
    o.momentum = 0.9f;
    mtft_param_group *pg = scalar_group("g");
    run_sgd(&o, pg, 1, 0.5f);
    ck_assert_float_eq_tol(val(pg, "w"), 0.95f, 1e-6f);
    mtft_param_group_free(pg);
    pg = scalar_group("g");
    run_sgd(&o, pg, 3, 0.5f);
    ck_assert_float_eq_tol(val(pg, "w"), 0.7195f, 1e-6f);
    ck_assert_float_eq_tol(val(pg, "b"), 0.7195f, 1e-6f);
    mtft_param_group_free(pg);

    /* nesterov: d = g + 0.9 b.
     *   step 1: b = 0.5,  d = 0.5 + 0.45 = 0.95,   p = 1 - 0.095 = 0.905
     *   step 2: b = 0.95, d = 0.5 + 0.855 = 1.355, p = 0.905 - 0.1355 = 0.7695 */
    o.nesterov = 1;
    pg = scalar_group("g");
    run_sgd(&o, pg, 2, 0.5f);
    ck_assert_float_eq_tol(val(pg, "w"), 0.7695f, 1e-6f);
    mtft_param_group_free(pg);

    /* dampening 0.5 (PyTorch skips it on the first step):
     *   step 1: b = 0.5, p = 0.95;  step 2: b = 0.45 + 0.25 = 0.7, p = 0.88 */
    o.nesterov = 0;
    o.dampening = 0.5f;
    pg = scalar_group("g");
    run_sgd(&o, pg, 2, 0.5f);
    ck_assert_float_eq_tol(val(pg, "w"), 0.88f, 1e-6f);
    mtft_param_group_free(pg);
}
END_TEST

/* Weight decay 0.1, lr 0.1, no momentum, g = 0.5: the matrix gets
 * d = 0.5 + 0.1*1 = 0.6 -> 0.94; the vector (1-D) d = 0.5 -> 0.95, or 0.94
 * with decay_1d. A group with lr_scale 2 moves twice as far: 1 - 0.12. */
START_TEST(test_optim_sgd_weight_decay_and_groups) {
    mtft_sgd_options o = MTFT_SGD_OPTIONS_INIT;
    o.lr = 0.1f;
    o.weight_decay = 0.1f;
    mtft_param_group *pg = scalar_group("g");
    run_sgd(&o, pg, 1, 0.5f);
    ck_assert_float_eq_tol(val(pg, "w"), 0.94f, 1e-7f);
    ck_assert_float_eq_tol(val(pg, "b"), 0.95f, 1e-7f);
    mtft_param_group_free(pg);
    o.decay_1d = 1;
    pg = scalar_group("g");
    run_sgd(&o, pg, 1, 0.5f);
    ck_assert_float_eq_tol(val(pg, "b"), 0.94f, 1e-7f);
    mtft_param_group_free(pg);

    /* two groups, per-group lr_scale and weight decay; a frozen group is skipped */
    mtft_param_group *a = scalar_group("a"), *b = scalar_group("b"), *c = scalar_group("c");
    mtft_sgd *opt = NULL;
    o.momentum = 0.5f;
    ck_assert_int_eq(mtft_sgd_new(&opt, &o), 0);
    mtft_sgd_group_options go = MTFT_SGD_GROUP_OPTIONS_INIT;
    go.lr_scale = 2.0f;
    go.weight_decay = 0.0f;
    ck_assert_int_eq(mtft_sgd_add_group(opt, a, NULL), 0);
    ck_assert_int_eq(mtft_sgd_add_group(opt, b, &go), 0);
    ck_assert_int_eq(mtft_sgd_add_group(opt, c, NULL), 0);
    ck_assert_int_eq(mtft_sgd_add_group(opt, a, NULL), MTFT_EINVAL); /* twice */
    ck_assert_int_eq(mtft_param_group_set_trainable(c, 0), 0);
    set_grad(a, "w", 0.5f);
    set_grad(b, "w", 0.5f);
    ck_assert_int_eq(mtft_sgd_step(opt), 0);
    ck_assert_float_eq_tol(val(a, "w"), 0.94f, 1e-7f);
    ck_assert_float_eq_tol(val(b, "w"), 0.9f, 1e-7f); /* lr 0.2, no decay */
    ck_assert_float_eq(val(c, "w"), 1.0f);
    float *buf;
    size_t n;
    int64_t step;
    ck_assert_int_eq(mtft_sgd_group_state(opt, 2, &buf, &n, &step), 0);
    ck_assert_ptr_null(buf); /* frozen: no state */
    ck_assert_int_eq(step, 0);
    ck_assert_int_eq(mtft_sgd_group_state(opt, 0, &buf, &n, &step), 0);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(step, 1);
    ck_assert_float_eq_tol(buf[0], 0.6f, 1e-7f); /* the momentum buffer holds d */
    ck_assert_int_eq(mtft_sgd_group_state(opt, 3, &buf, &n, &step), MTFT_ERANGE);
    ck_assert_int_eq(mtft_sgd_n_groups(opt), 3);
    ck_assert_int_eq(mtft_sgd_remove_group(opt, c), 0);
    ck_assert_int_eq(mtft_sgd_remove_group(opt, c), MTFT_ENOTFOUND);
    ck_assert_int_eq(mtft_sgd_set_lr(opt, 0.5f), 0);
    ck_assert_float_eq(mtft_sgd_get_lr(opt), 0.5f);
    ck_assert_int_eq(mtft_sgd_set_lr(opt, -1.0f), MTFT_EINVAL);
    mtft_sgd_free(opt);
    mtft_param_group_free(a);
    mtft_param_group_free(b);
    mtft_param_group_free(c);
}
END_TEST

/* Several steps with random gradients against a double-precision
 * transcription of torch.optim.SGD (momentum, dampening, weight decay). */
START_TEST(test_optim_sgd_matches_reference) {
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "g"), 0);
    int64_t s2[2] = {3, 5};
    mtft_tensor *w = mtft_param_group_add(pg, "w", 2, s2);
    ck_assert_int_eq(mtft_param_group_alloc(pg), 0);
    enum { N = 15 };
    mtft_test_fill(mtft_tensor_data(w), N, 7, -1, 1);
    double p[N], b[N];
    for (int i = 0; i < N; i++) p[i] = mtft_tensor_data(w)[i];
    mtft_sgd_options o = MTFT_SGD_OPTIONS_INIT;
    o.lr = 0.05f;
    o.momentum = 0.8f;
    o.dampening = 0.1f;
    o.weight_decay = 0.02f;
    mtft_sgd *opt = NULL;
    ck_assert_int_eq(mtft_sgd_new(&opt, &o), 0);
    ck_assert_int_eq(mtft_sgd_add_group(opt, pg, NULL), 0);
    for (int step = 0; step < 6; step++) {
        mtft_sgd_zero_grad(opt);
        mtft_test_fill(mtft_tensor_grad(w), N, 100 + (uint64_t)step, -1, 1);
        double g[N];
        for (int i = 0; i < N; i++) g[i] = mtft_tensor_grad(w)[i];
        ck_assert_int_eq(mtft_sgd_step(opt), 0);
        for (int i = 0; i < N; i++) {
            double d = g[i] + (double)o.weight_decay * p[i];
            b[i] = step == 0 ? d : (double)o.momentum * b[i] + (1.0 - (double)o.dampening) * d;
            p[i] -= (double)o.lr * b[i];
        }
        float want[N];
        for (int i = 0; i < N; i++) want[i] = (float)p[i];
        mtft_assert_close(mtft_tensor_data(w), want, N, 1e-5f, 1e-6f, "sgd vs reference");
    }
    mtft_sgd_free(opt);
    mtft_param_group_free(pg);
}
END_TEST

START_TEST(test_optim_sgd_options) {
    mtft_sgd *opt = (mtft_sgd *)1;
    mtft_sgd_options o = MTFT_SGD_OPTIONS_INIT;
    o.nesterov = 1; /* momentum 0 */
    ck_assert_int_eq(mtft_sgd_new(&opt, &o), MTFT_EINVAL);
    ck_assert_ptr_null(opt);
    o.momentum = 0.9f;
    o.dampening = 0.1f;
    ck_assert_int_eq(mtft_sgd_new(&opt, &o), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "nesterov"));
    o = (mtft_sgd_options)MTFT_SGD_OPTIONS_INIT;
    o.dampening = 2.0f;
    ck_assert_int_eq(mtft_sgd_new(&opt, &o), MTFT_EINVAL);
    ck_assert_int_eq(mtft_sgd_new(&opt, NULL), 0);
    /* no momentum: no buffer to allocate */
    mtft_param_group *pg = scalar_group("g");
    ck_assert_int_eq(mtft_sgd_add_group(opt, pg, NULL), 0);
    ck_assert_int_eq(mtft_sgd_group_state_alloc(opt, 0), MTFT_ESTATE);
    ck_assert_int_eq(mtft_sgd_set_group_step(opt, 0, -1), MTFT_EINVAL);
    mtft_sgd_free(opt);
    mtft_sgd_free(NULL);
    mtft_param_group_free(pg);
}
END_TEST

/* A restored momentum buffer with a restored step continues as if never
 * stopped: run 2 steps, copy state into a fresh optimizer, run the third in
 * both and compare bits. */
START_TEST(test_optim_sgd_state_roundtrip) {
    mtft_sgd_options o = MTFT_SGD_OPTIONS_INIT;
    o.lr = 0.1f;
    o.momentum = 0.9f;
    mtft_param_group *a = scalar_group("a"), *b = scalar_group("b");
    mtft_sgd *oa = NULL, *ob = NULL;
    ck_assert_int_eq(mtft_sgd_new(&oa, &o), 0);
    ck_assert_int_eq(mtft_sgd_add_group(oa, a, NULL), 0);
    for (int s = 0; s < 2; s++) {
        set_grad(a, "w", 0.5f);
        set_grad(a, "b", 0.25f);
        ck_assert_int_eq(mtft_sgd_step(oa), 0);
    }
    ck_assert_int_eq(mtft_sgd_new(&ob, &o), 0);
    ck_assert_int_eq(mtft_sgd_add_group(ob, b, NULL), 0);
    ck_assert_int_eq(mtft_sgd_group_state_alloc(ob, 0), 0);
    float *ba, *bb;
    size_t na, nb;
    int64_t st;
    ck_assert_int_eq(mtft_sgd_group_state(oa, 0, &ba, &na, &st), 0);
    ck_assert_int_eq(mtft_sgd_group_state(ob, 0, &bb, &nb, NULL), 0);
    ck_assert_uint_eq(na, nb);
    memcpy(bb, ba, na * sizeof(float));
    ck_assert_int_eq(mtft_sgd_set_group_step(ob, 0, st), 0);
    size_t nd;
    float *da = mtft_param_group_data(a, &nd), *db = mtft_param_group_data(b, NULL);
    memcpy(db, da, nd * sizeof(float));
    set_grad(a, "w", 0.5f);
    set_grad(a, "b", 0.25f);
    set_grad(b, "w", 0.5f);
    set_grad(b, "b", 0.25f);
    ck_assert_int_eq(mtft_sgd_step(oa), 0);
    ck_assert_int_eq(mtft_sgd_step(ob), 0);
    ck_assert_int_eq(memcmp(da, db, nd * sizeof(float)), 0);
    ck_assert_float_eq_tol(val(a, "w"), 0.7195f, 1e-6f);
    mtft_sgd_free(oa);
    mtft_sgd_free(ob);
    mtft_param_group_free(a);
    mtft_param_group_free(b);
}
END_TEST

static double factor(const mtft_schedule_options *o, int64_t step) {
    double f = -1;
    ck_assert_int_eq(mtft_schedule_factor(o, step, &f), 0);
    return f;
}

/* HF formulas, W warmup, N total:
 *   linear W 10 N 100: 0 -> 0; 5 -> 5/10; 10 -> 90/90 = 1; 55 -> 45/90 = 0.5;
 *     100 -> 0; 150 -> max(0, -50/90) = 0; with min ratio 0.1: 55 -> 0.55.
 *   cosine W 10 N 110: 35 -> p 0.25, 0.5 (1 + cos(pi/4)); 60 -> p 0.5, 0.5;
 *     110 -> 0; 200 -> 0 (clamped); min ratio 0.2: 60 -> 0.6, 110 -> 0.2.
 *   constant W 4: 2 -> 0.5; 4 -> 1; 10^6 -> 1. */
START_TEST(test_optim_schedules_hf_formulas) {
    mtft_schedule_options o = MTFT_SCHEDULE_OPTIONS_INIT;
    o.kind = MTFT_SCHEDULE_LINEAR;
    o.warmup_steps = 10;
    o.total_steps = 100;
    ck_assert_double_eq(factor(&o, 0), 0.0);
    ck_assert_double_eq_tol(factor(&o, 5), 0.5, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 10), 1.0, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 55), 0.5, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 99), 1.0 / 90.0, 1e-12);
    ck_assert_double_eq(factor(&o, 100), 0.0);
    ck_assert_double_eq(factor(&o, 150), 0.0);
    o.min_lr_ratio = 0.1;
    ck_assert_double_eq_tol(factor(&o, 55), 0.55, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 150), 0.1, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 5), 0.5, 1e-12); /* warmup ignores the minimum, as HF */

    o = (mtft_schedule_options)MTFT_SCHEDULE_OPTIONS_INIT;
    o.kind = MTFT_SCHEDULE_COSINE;
    o.warmup_steps = 10;
    o.total_steps = 110;
    ck_assert_double_eq_tol(factor(&o, 3), 0.3, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 10), 1.0, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 35), 0.5 * (1.0 + sqrt(0.5)), 1e-12);
    ck_assert_double_eq_tol(factor(&o, 60), 0.5, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 110), 0.0, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 200), 0.0, 1e-12);
    o.min_lr_ratio = 0.2;
    ck_assert_double_eq_tol(factor(&o, 60), 0.6, 1e-12);
    ck_assert_double_eq_tol(factor(&o, 110), 0.2, 1e-12);

    o = (mtft_schedule_options)MTFT_SCHEDULE_OPTIONS_INIT;
    ck_assert_double_eq(factor(&o, 0), 1.0); /* constant, no warmup */
    o.warmup_steps = 4;
    ck_assert_double_eq_tol(factor(&o, 2), 0.5, 1e-12);
    ck_assert_double_eq(factor(&o, 4), 1.0);
    ck_assert_double_eq(factor(&o, 1000000), 1.0);
    /* linear without warmup starts at the full rate: (N - 0) / N */
    o = (mtft_schedule_options)MTFT_SCHEDULE_OPTIONS_INIT;
    o.kind = MTFT_SCHEDULE_LINEAR;
    o.total_steps = 4;
    ck_assert_double_eq(factor(&o, 0), 1.0);
    ck_assert_double_eq_tol(factor(&o, 1), 0.75, 1e-12);
    float lr;
    ck_assert_int_eq(mtft_schedule_lr(&o, 3e-4f, 2, &lr), 0);
    ck_assert_float_eq_tol(lr, 1.5e-4f, 1e-10f);
    int kind;
    ck_assert_int_eq(mtft_schedule_kind_from_name("cosine", &kind), 0);
    ck_assert_int_eq(kind, MTFT_SCHEDULE_COSINE);
    ck_assert_int_eq(mtft_schedule_kind_from_name("step", &kind), MTFT_ENOTFOUND);
}
END_TEST

START_TEST(test_optim_schedule_errors) {
    mtft_schedule_options o = MTFT_SCHEDULE_OPTIONS_INIT;
    double f;
    o.kind = MTFT_SCHEDULE_LINEAR; /* total_steps 0 */
    ck_assert_int_eq(mtft_schedule_factor(&o, 0, &f), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "total_steps"));
    o.total_steps = 10;
    o.min_lr_ratio = 1.5;
    ck_assert_int_eq(mtft_schedule_check(&o), MTFT_EINVAL);
    o.min_lr_ratio = 0;
    ck_assert_int_eq(mtft_schedule_factor(&o, -1, &f), MTFT_EINVAL);
    o.warmup_steps = -2;
    ck_assert_int_eq(mtft_schedule_check(&o), MTFT_EINVAL);
    o.warmup_steps = 0;
    o.kind = 7;
    ck_assert_int_eq(mtft_schedule_check(&o), MTFT_EINVAL);
    o.kind = MTFT_SCHEDULE_COSINE;
    o.num_cycles = 0;
    ck_assert_int_eq(mtft_schedule_check(&o), MTFT_EINVAL);
}
END_TEST

/* Two groups: g1 has "a" [2] and "b" [1], g2 has "c" [1,1]. Gradients
 * a = (3, 4), b = 0, c = 12: global norm sqrt(9 + 16 + 144) = 13. */
static void clip_groups(mtft_param_group **g1, mtft_param_group **g2) {
    int64_t s1[1] = {2}, s0[1] = {1}, s2[2] = {1, 1};
    ck_assert_int_eq(mtft_param_group_new(g1, "g1"), 0);
    ck_assert_ptr_nonnull(mtft_param_group_add(*g1, "a", 1, s1));
    ck_assert_ptr_nonnull(mtft_param_group_add(*g1, "b", 1, s0));
    ck_assert_int_eq(mtft_param_group_alloc(*g1), 0);
    ck_assert_int_eq(mtft_param_group_new(g2, "g2"), 0);
    ck_assert_ptr_nonnull(mtft_param_group_add(*g2, "c", 2, s2));
    ck_assert_int_eq(mtft_param_group_alloc(*g2), 0);
    float *a = mtft_tensor_grad(mtft_param_group_find(*g1, "a"));
    a[0] = 3;
    a[1] = 4;
    mtft_tensor_grad(mtft_param_group_find(*g2, "c"))[0] = 12;
    float *wa = mtft_tensor_data(mtft_param_group_find(*g1, "a"));
    wa[0] = 1;
    wa[1] = 2;
    mtft_tensor_data(mtft_param_group_find(*g2, "c"))[0] = -1;
}

START_TEST(test_optim_clip_grad_norm) {
    mtft_param_group *g1, *g2;
    clip_groups(&g1, &g2);
    mtft_param_group *gs[2];
    gs[0] = g1;
    gs[1] = g2;
    float *a = mtft_tensor_grad(mtft_param_group_find(g1, "a"));
    float *c = mtft_tensor_grad(mtft_param_group_find(g2, "c"));
    double norm = 0;
    ck_assert_int_eq(mtft_grad_norm(gs, 2, &norm), 0);
    ck_assert_double_eq(norm, 13.0);
    /* no clipping below the limit: gradients unchanged */
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 2, 20.0f, &norm), 0);
    ck_assert_double_eq(norm, 13.0);
    ck_assert_float_eq(a[0], 3.0f);
    ck_assert_float_eq(c[0], 12.0f);
    /* max 6.5: coefficient 6.5 / (13 + 1e-6) -> (1.5, 2), 6; returns the pre-clip norm */
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 2, 6.5f, &norm), 0);
    ck_assert_double_eq(norm, 13.0);
    ck_assert_float_eq_tol(a[0], 1.5f, 1e-6f);
    ck_assert_float_eq_tol(a[1], 2.0f, 1e-6f);
    ck_assert_float_eq_tol(c[0], 6.0f, 1e-6f);
    ck_assert_int_eq(mtft_grad_norm(gs, 2, &norm), 0);
    ck_assert_double_eq_tol(norm, 6.5, 1e-5);
    /* a frozen group does not count */
    ck_assert_int_eq(mtft_param_group_set_trainable(g2, 0), 0);
    ck_assert_int_eq(mtft_grad_norm(gs, 2, &norm), 0);
    ck_assert_double_eq_tol(norm, 2.5, 1e-6);
    ck_assert_int_eq(mtft_param_group_set_trainable(g2, 1), 0);
    /* non-finite: reported, nothing modified */
    a[0] = 3;
    a[1] = 4;
    mtft_tensor_grad(mtft_param_group_find(g1, "b"))[0] = INFINITY;
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 2, 1.0f, &norm), MTFT_ENUMERIC);
    ck_assert(isinf(norm));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "tensor 'b' element 0"));
    ck_assert_float_eq(a[0], 3.0f);
    ck_assert_float_eq(a[1], 4.0f);
    mtft_tensor_grad(mtft_param_group_find(g1, "b"))[0] = NAN;
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 2, 1.0f, NULL), MTFT_ENUMERIC);
    ck_assert_float_eq(a[1], 4.0f);
    mtft_tensor_grad(mtft_param_group_find(g1, "b"))[0] = 0;
    /* argument errors */
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 2, 0.0f, &norm), MTFT_EINVAL);
    mtft_param_group *dup[2] = {g1, g1};
    ck_assert_int_eq(mtft_grad_norm(dup, 2, &norm), MTFT_EINVAL);
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 2, INFINITY, &norm), 0); /* never clips */
    ck_assert_float_eq(a[1], 4.0f);
    mtft_param_group_free(g1);
    mtft_param_group_free(g2);
}
END_TEST

/* The threaded path (tensors over 65536 floats): the norm matches a plain
 * double sum and has the same bits with 1 and 2 threads. */
START_TEST(test_optim_clip_large_tensor) {
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "big"), 0);
    int64_t shape[2] = {300, 1001};
    mtft_tensor *t = mtft_param_group_add(pg, "w", 2, shape);
    ck_assert_int_eq(mtft_param_group_alloc(pg), 0);
    int64_t n = mtft_tensor_numel(t);
    float *g = mtft_tensor_grad(t);
    mtft_test_fill(g, n, 11, -1.0f, 1.0f);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
    ref = sqrt(ref);
    mtft_param_group *gs[1] = {pg};
    double n1, n2;
    int nt = mtft_get_num_threads();
    mtft_set_num_threads(1);
    ck_assert_int_eq(mtft_grad_norm(gs, 1, &n1), 0);
    mtft_set_num_threads(2);
    ck_assert_int_eq(mtft_grad_norm(gs, 1, &n2), 0);
    mtft_set_num_threads(nt);
    ck_assert(n1 == n2);
    ck_assert_double_eq_tol(n1, ref, 1e-9 * ref);
    float g7 = g[n - 7];
    ck_assert_int_eq(mtft_clip_grad_norm(gs, 1, (float)(ref / 4), NULL), 0);
    ck_assert_float_eq_tol(g[n - 7], g7 * 0.25f, 1e-6f);
    mtft_param_group_free(pg);
}
END_TEST

START_TEST(test_optim_grad_scale_and_accum) {
    mtft_param_group *g1, *g2;
    clip_groups(&g1, &g2);
    mtft_param_group *gs[2];
    gs[0] = g1;
    gs[1] = g2;
    float *a = mtft_tensor_grad(mtft_param_group_find(g1, "a"));
    float *c = mtft_tensor_grad(mtft_param_group_find(g2, "c"));
    ck_assert_int_eq(mtft_grad_accum_average(gs, 2, 1), 0); /* no-op */
    ck_assert_float_eq(a[0], 3.0f);
    ck_assert_int_eq(mtft_grad_accum_average(gs, 2, 3), 0); /* divides by 3, exactly rounded */
    ck_assert_float_eq(a[0], 1.0f);
    ck_assert_float_eq(a[1], 4.0f / 3.0f);
    ck_assert_float_eq(c[0], 4.0f);
    ck_assert_int_eq(mtft_grad_scale(gs, 2, -2.0f), 0);
    ck_assert_float_eq(a[0], -2.0f);
    ck_assert_float_eq(c[0], -8.0f);
    ck_assert_int_eq(mtft_grad_accum_average(gs, 2, 0), MTFT_EINVAL);
    ck_assert_int_eq(mtft_grad_scale(gs, 2, NAN), MTFT_EINVAL);
    mtft_param_group_free(g1);
    mtft_param_group_free(g2);
}
END_TEST

/* rho 0.5, gradients a = (3, 4), c = 12 (norm 13): e_w = 0.5/13 * g, so
 * a: (1, 2) + (1.5/13, 2/13), c: -1 + 6/13. Restore gives the same bits. */
START_TEST(test_optim_sam_perturb_restore) {
    mtft_param_group *g1, *g2;
    clip_groups(&g1, &g2);
    mtft_param_group *gs[2];
    gs[0] = g1;
    gs[1] = g2;
    size_t n1, n2;
    float *d1 = mtft_param_group_data(g1, &n1), *d2 = mtft_param_group_data(g2, &n2);
    float s1[64], s2[64];
    ck_assert_uint_le(n1, 64);
    ck_assert_uint_le(n2, 64);
    /* make the weights awkward for w + e - e to round-trip */
    float *wa = mtft_tensor_data(mtft_param_group_find(g1, "a"));
    wa[0] = 0.1f;
    wa[1] = 1e-3f;
    memcpy(s1, d1, n1 * sizeof(float));
    memcpy(s2, d2, n2 * sizeof(float));
    mtft_sam *sam = NULL;
    ck_assert_int_eq(mtft_sam_new(&sam, NULL), 0);
    ck_assert_int_eq(mtft_sam_restore(sam), MTFT_ESTATE);
    double norm = 0;
    for (int round = 0; round < 2; round++) { /* the second round reuses the saved buffers */
        ck_assert_int_eq(mtft_sam_perturb(sam, gs, 2, 0.5f, &norm), 0);
        ck_assert_int_eq(mtft_sam_is_perturbed(sam), 1);
        ck_assert_double_eq(norm, 13.0);
        ck_assert_float_eq_tol(wa[0], 0.1f + 1.5f / 13.0f, 1e-6f);
        ck_assert_float_eq_tol(wa[1], 1e-3f + 2.0f / 13.0f, 1e-6f);
        ck_assert_float_eq_tol(mtft_tensor_data(mtft_param_group_find(g2, "c"))[0], -1.0f + 6.0f / 13.0f, 1e-6f);
        ck_assert_float_eq(mtft_tensor_data(mtft_param_group_find(g1, "b"))[0], 0.0f); /* zero gradient */
        ck_assert_int_eq(mtft_sam_perturb(sam, gs, 2, 0.5f, NULL), MTFT_ESTATE);
        ck_assert_int_eq(mtft_sam_restore(sam), 0);
        ck_assert_int_eq(memcmp(d1, s1, n1 * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(d2, s2, n2 * sizeof(float)), 0);
    }
    /* a frozen group is neither perturbed nor counted */
    ck_assert_int_eq(mtft_param_group_set_trainable(g2, 0), 0);
    ck_assert_int_eq(mtft_sam_perturb(sam, gs, 2, 0.5f, &norm), 0);
    ck_assert_double_eq(norm, 5.0);
    ck_assert_float_eq_tol(wa[0], 0.1f + 0.3f, 1e-6f);
    ck_assert_int_eq(memcmp(d2, s2, n2 * sizeof(float)), 0);
    ck_assert_int_eq(mtft_sam_restore(sam), 0);
    ck_assert_int_eq(memcmp(d1, s1, n1 * sizeof(float)), 0);
    /* non-finite gradient: error, weights untouched, not perturbed */
    mtft_tensor_grad(mtft_param_group_find(g1, "a"))[1] = NAN;
    ck_assert_int_eq(mtft_sam_perturb(sam, gs, 2, 0.5f, NULL), MTFT_ENUMERIC);
    ck_assert_int_eq(mtft_sam_is_perturbed(sam), 0);
    ck_assert_int_eq(memcmp(d1, s1, n1 * sizeof(float)), 0);
    ck_assert_int_eq(mtft_sam_perturb(sam, gs, 2, -1.0f, NULL), MTFT_EINVAL);
    mtft_sam_free(sam);
    mtft_sam_free(NULL);
    mtft_param_group_free(g1);
    mtft_param_group_free(g2);
}
END_TEST

/* Adaptive SAM: w = (1, 2), g = (3, 4): |w| g = (3, 8), norm sqrt(73);
 * e = rho w^2 g / sqrt(73) = 0.5 (3, 16) / sqrt(73). */
START_TEST(test_optim_sam_adaptive) {
    mtft_param_group *pg = NULL;
    int64_t s1[1] = {2};
    ck_assert_int_eq(mtft_param_group_new(&pg, "g"), 0);
    mtft_tensor *t = mtft_param_group_add(pg, "a", 1, s1);
    ck_assert_int_eq(mtft_param_group_alloc(pg), 0);
    float *w = mtft_tensor_data(t), *g = mtft_tensor_grad(t);
    w[0] = 1;
    w[1] = 2;
    g[0] = 3;
    g[1] = 4;
    mtft_sam_options o = MTFT_SAM_OPTIONS_INIT;
    o.adaptive = 1;
    mtft_sam *sam = NULL;
    ck_assert_int_eq(mtft_sam_new(&sam, &o), 0);
    double norm;
    mtft_param_group *gs[1] = {pg};
    ck_assert_int_eq(mtft_sam_perturb(sam, gs, 1, 0.5f, &norm), 0);
    ck_assert_double_eq_tol(norm, sqrt(73.0), 1e-12);
    ck_assert_float_eq_tol(w[0], (float)(1.0 + 1.5 / sqrt(73.0)), 1e-6f);
    ck_assert_float_eq_tol(w[1], (float)(2.0 + 8.0 / sqrt(73.0)), 1e-6f);
    ck_assert_int_eq(mtft_sam_restore(sam), 0);
    ck_assert_float_eq(w[0], 1.0f);
    ck_assert_float_eq(w[1], 2.0f);
    mtft_sam_free(sam);
    mtft_param_group_free(pg);
}
END_TEST

/* A SAM step by hand on L(w) = 1.5 w^2 (g = 3w): w = 2, g = 6, rho 0.1:
 * e = 0.1, gradient at 2.1 is 6.3; restore; SGD lr 0.1: 2 - 0.63 = 1.37. */
START_TEST(test_optim_sam_step_by_hand) {
    mtft_param_group *pg = scalar_group("g");
    mtft_param_group *gs[1] = {pg};
    float *w = mtft_tensor_data(mtft_param_group_find(pg, "w"));
    float *g = mtft_tensor_grad(mtft_param_group_find(pg, "w"));
    w[0] = 2.0f;
    mtft_sam *sam = NULL;
    mtft_sgd *opt = NULL;
    mtft_sgd_options so = MTFT_SGD_OPTIONS_INIT;
    so.lr = 0.1f;
    ck_assert_int_eq(mtft_sam_new(&sam, NULL), 0);
    ck_assert_int_eq(mtft_sgd_new(&opt, &so), 0);
    ck_assert_int_eq(mtft_sgd_add_group(opt, pg, NULL), 0);
    mtft_sgd_zero_grad(opt);
    g[0] = 3.0f * w[0];
    ck_assert_int_eq(mtft_sam_perturb(sam, gs, 1, 0.1f, NULL), 0);
    ck_assert_float_eq_tol(w[0], 2.1f, 1e-6f);
    mtft_sgd_zero_grad(opt);
    g[0] = 3.0f * w[0];
    ck_assert_int_eq(mtft_sam_restore(sam), 0);
    ck_assert_float_eq(w[0], 2.0f);
    ck_assert_int_eq(mtft_sgd_step(opt), 0);
    ck_assert_float_eq_tol(w[0], 1.37f, 1e-6f);
    mtft_sgd_free(opt);
    mtft_sam_free(sam);
    mtft_param_group_free(pg);
}
END_TEST

static int agg_sum(const float *const *v, int m, size_t n, float *out, void *payload) {
    int *calls = payload;
    (*calls)++;
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int k = 0; k < m; k++) s += v[k][i];
        out[i] = s;
    }
    return 0;
}

static int agg_min(const float *const *v, int m, size_t n, float *out, void *payload) {
    (void)payload;
    for (size_t i = 0; i < n; i++) {
        float s = v[0][i];
        for (int k = 1; k < m; k++) s = v[k][i] < s ? v[k][i] : s;
        out[i] = s;
    }
    return 0;
}

static int agg_stop(const float *const *v, int m, size_t n, float *out, void *payload) {
    (void)v, (void)m, (void)n, (void)out, (void)payload;
    return 1;
}

/* Two tasks, two shared parameters, rho 0.5.
 *   task 0: g = (3, 4), no own params: norm 5, scale 0.1, e = (0.3, 0.4);
 *           gradient at w + e: (3.5, 4.5) -> h = (0.5, 0.5)
 *   task 1: g = (0, 2), own gradient norm^2 2.25: norm sqrt(4 + 2.25) = 2.5,
 *           scale 0.2, e = (0, 0.4); at w + e: (1, 2) -> h = (1, 0)
 *   mean:  (1.5, 3) + (0.75, 0.25) = (2.25, 3.25)
 *   sum:   (3, 6) + (1.5, 0.5) = (4.5, 6.5)
 *   elementwise min (non-linear, so A(g) + A(h) != A(g^SAM)):
 *          (0, 2) + (0.5, 0) = (0.5, 2), whereas min of g^SAM is (1, 2). */
START_TEST(test_optim_task_sam_by_hand) {
    mtft_task_sam *s = NULL;
    ck_assert_int_eq(mtft_task_sam_new(&s, 2, 2, 0.5f), 0);
    const float g0[2] = {3, 4}, g1[2] = {0, 2}, gs0[2] = {3.5f, 4.5f}, gs1[2] = {1, 2};
    float e[2], out[2];
    double scale;
    ck_assert_int_eq(mtft_task_sam_combine(s, NULL, NULL, out), MTFT_ESTATE); /* nothing yet */
    ck_assert_int_eq(mtft_task_sam_set_perturbed_grad(s, 0, gs0), MTFT_ESTATE); /* step 1 first */
    ck_assert_int_eq(mtft_task_sam_set_grad(s, 0, g0, 0.0, e, &scale), 0);
    ck_assert_double_eq_tol(scale, 0.1, 1e-12);
    ck_assert_float_eq_tol(e[0], 0.3f, 1e-7f);
    ck_assert_float_eq_tol(e[1], 0.4f, 1e-7f);
    ck_assert_int_eq(mtft_task_sam_set_grad(s, 1, g1, 2.25, e, &scale), 0);
    ck_assert_double_eq_tol(scale, 0.2, 1e-12);
    ck_assert_float_eq(e[0], 0.0f);
    ck_assert_float_eq_tol(e[1], 0.4f, 1e-7f);
    ck_assert_int_eq(mtft_task_sam_set_perturbed_grad(s, 0, gs0), 0);
    ck_assert_int_eq(mtft_task_sam_combine(s, NULL, NULL, out), MTFT_ESTATE); /* task 1 half done */
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "task 1"));
    ck_assert_int_eq(mtft_task_sam_set_perturbed_grad(s, 1, gs1), 0);
    ck_assert_int_eq(mtft_task_sam_combine(s, NULL, NULL, out), 0);
    ck_assert_float_eq_tol(out[0], 2.25f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 3.25f, 1e-6f);
    int calls = 0;
    ck_assert_int_eq(mtft_task_sam_combine(s, agg_sum, &calls, out), 0);
    ck_assert_int_eq(calls, 2); /* once for the loss part, once for the flatness part */
    ck_assert_float_eq_tol(out[0], 4.5f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 6.5f, 1e-6f);
    ck_assert_int_eq(mtft_task_sam_combine(s, agg_min, NULL, out), 0);
    ck_assert_float_eq_tol(out[0], 0.5f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 2.0f, 1e-6f);
    ck_assert_int_eq(mtft_task_sam_combine(s, agg_stop, NULL, out), MTFT_EUSER);
    /* a task absent from the batch is left out: only task 0 -> g0 + h0 */
    mtft_task_sam_clear(s);
    ck_assert_int_eq(mtft_task_sam_set_grad(s, 0, g0, 0.0, NULL, NULL), 0);
    ck_assert_int_eq(mtft_task_sam_set_perturbed_grad(s, 0, gs0), 0);
    ck_assert_int_eq(mtft_task_sam_combine(s, NULL, NULL, out), 0);
    ck_assert_float_eq_tol(out[0], 3.5f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 4.5f, 1e-6f);
    /* errors */
    const float bad[2] = {1, INFINITY};
    ck_assert_int_eq(mtft_task_sam_set_grad(s, 1, bad, 0.0, NULL, NULL), MTFT_ENUMERIC);
    ck_assert_int_eq(mtft_task_sam_set_grad(s, 2, g0, 0.0, NULL, NULL), MTFT_ERANGE);
    ck_assert_int_eq(mtft_task_sam_set_grad(s, 1, g0, -1.0, NULL, NULL), MTFT_ENUMERIC);
    mtft_task_sam_free(s);
    mtft_task_sam_free(NULL);
    ck_assert_int_eq(mtft_task_sam_new(&s, 0, 2, 0.5f), MTFT_EINVAL);
    ck_assert_int_eq(mtft_task_sam_new(&s, 2, 0, 0.5f), MTFT_EINVAL);
}
END_TEST

/* The whole per-task SAM step on two quadratic tasks,
 * L_k(w) = 0.5 sum_i a_ki w_i^2 + sum_i b_ki w_i (gradient a_k w + b_k),
 * against the formula in double: with the mean, the result is the mean of
 * the gradients at w + e_k. */
START_TEST(test_optim_task_sam_quadratic) {
    enum { N = 5, K = 2 };
    float a[K][N], b[K][N], w[N];
    mtft_test_fill(&a[0][0], K * N, 3, 0.5f, 2.0f);
    mtft_test_fill(&b[0][0], K * N, 4, -1.0f, 1.0f);
    mtft_test_fill(w, N, 5, -1.0f, 1.0f);
    const float rho = 0.05f;
    mtft_task_sam *s = NULL;
    ck_assert_int_eq(mtft_task_sam_new(&s, K, N, rho), 0);
    double want[N] = {0};
    for (int k = 0; k < K; k++) {
        float g[N], e[N], wp[N], gs[N];
        double sq = 0;
        for (int i = 0; i < N; i++) {
            g[i] = a[k][i] * w[i] + b[k][i];
            sq += (double)g[i] * g[i];
        }
        ck_assert_int_eq(mtft_task_sam_set_grad(s, k, g, 0.0, e, NULL), 0);
        for (int i = 0; i < N; i++) {
            double ek = rho * g[i] / sqrt(sq);
            ck_assert_double_eq_tol(e[i], ek, 1e-7);
            wp[i] = w[i] + e[i];
            gs[i] = a[k][i] * wp[i] + b[k][i];
            want[i] += (a[k][i] * (w[i] + ek) + b[k][i]) / K;
        }
        ck_assert_int_eq(mtft_task_sam_set_perturbed_grad(s, k, gs), 0);
    }
    float out[N], wantf[N];
    ck_assert_int_eq(mtft_task_sam_combine(s, NULL, NULL, out), 0);
    for (int i = 0; i < N; i++) wantf[i] = (float)want[i];
    mtft_assert_close(out, wantf, N, 1e-5f, 1e-6f, "per-task SAM direction");
    mtft_task_sam_free(s);
}
END_TEST

static Suite *optim_extra_suite(void) {
    Suite *s = suite_create("optim_extra");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_optim_sgd_momentum_by_hand);
    tcase_add_test(tc, test_optim_sgd_weight_decay_and_groups);
    tcase_add_test(tc, test_optim_sgd_matches_reference);
    tcase_add_test(tc, test_optim_sgd_options);
    tcase_add_test(tc, test_optim_sgd_state_roundtrip);
    tcase_add_test(tc, test_optim_schedules_hf_formulas);
    tcase_add_test(tc, test_optim_schedule_errors);
    tcase_add_test(tc, test_optim_clip_grad_norm);
    tcase_add_test(tc, test_optim_clip_large_tensor);
    tcase_add_test(tc, test_optim_grad_scale_and_accum);
    tcase_add_test(tc, test_optim_sam_perturb_restore);
    tcase_add_test(tc, test_optim_sam_adaptive);
    tcase_add_test(tc, test_optim_sam_step_by_hand);
    tcase_add_test(tc, test_optim_task_sam_by_hand);
    tcase_add_test(tc, test_optim_task_sam_quadratic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(optim_extra_suite()); }
