/* ctest-labels: unit */
/* AdamW: against an independent double-precision implementation of
 * torch.optim.AdamW, the first-step closed form, the no-decay rule for 1-D
 * tensors, per-group lr/weight decay, frozen groups (no state, no update),
 * state access and argument errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/optim.h"
#include "mtft_test.h"

/* A group with a [3,4] matrix "w" and a [4] vector "b". */
static mtft_param_group *make_group(const char *name, uint64_t seed) {
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, name), 0);
    int64_t s2[2] = {3, 4}, s1[1] = {4};
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "w", 2, s2));
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "b", 1, s1));
    ck_assert_int_eq(mtft_param_group_alloc(pg), 0);
    for (int i = 0; i < 2; i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), seed + (uint64_t)i, -1.0f, 1.0f);
    }
    return pg;
}

static void set_grads(mtft_param_group *pg, uint64_t seed) {
    for (int i = 0; i < mtft_param_group_count(pg); i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        mtft_test_fill(mtft_tensor_grad(t), mtft_tensor_numel(t), seed + (uint64_t)i, -0.5f, 0.5f);
    }
}

START_TEST(test_optim_adamw_matches_reference) {
    mtft_param_group *pg = make_group("g", 1);
    enum { NW = 12, NB = 4, N = NW + NB };
    double p[N], m[N] = {0}, v[N] = {0};
    mtft_tensor *w = mtft_param_group_find(pg, "w"), *b = mtft_param_group_find(pg, "b");
    for (int i = 0; i < NW; i++) p[i] = mtft_tensor_data(w)[i];
    for (int i = 0; i < NB; i++) p[NW + i] = mtft_tensor_data(b)[i];
    mtft_adamw_options o = MTFT_ADAMW_OPTIONS_INIT;
    o.lr = 0.05f;
    o.weight_decay = 0.1f;
    o.beta1 = 0.8f;
    o.beta2 = 0.95f;
    o.eps = 1e-6f;
    mtft_adamw *opt = NULL;
    ck_assert_int_eq(mtft_adamw_new(&opt, &o), 0);
    ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), 0);
    for (int step = 1; step <= 5; step++) {
        mtft_adamw_zero_grad(opt);
        set_grads(pg, 100 + (uint64_t)step * 10);
        double gr[N];
        for (int i = 0; i < NW; i++) gr[i] = mtft_tensor_grad(w)[i];
        for (int i = 0; i < NB; i++) gr[NW + i] = mtft_tensor_grad(b)[i];
        ck_assert_int_eq(mtft_adamw_step(opt), 0);
        double b1 = o.beta1, b2 = o.beta2, lr = o.lr;
        for (int i = 0; i < N; i++) {
            double wd = i < NW ? o.weight_decay : 0.0; /* 1-D: no decay */
            p[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * gr[i];
            v[i] = b2 * v[i] + (1 - b2) * gr[i] * gr[i];
            double mh = m[i] / (1 - pow(b1, step));
            double den = sqrt(v[i]) / sqrt(1 - pow(b2, step)) + o.eps;
            p[i] -= lr * mh / den;
        }
        float want[N];
        for (int i = 0; i < N; i++) want[i] = (float)p[i];
        mtft_assert_close(mtft_tensor_data(w), want, NW, 1e-5f, 1e-6f, "w after step");
        mtft_assert_close(mtft_tensor_data(b), want + NW, NB, 1e-5f, 1e-6f, "b after step");
    }
    float *ms, *vs;
    size_t n;
    int64_t steps;
    ck_assert_int_eq(mtft_adamw_group_state(opt, 0, &ms, &vs, &n, &steps), 0);
    ck_assert_int_eq(steps, 5);
    ck_assert_ptr_nonnull(ms);
    ck_assert_uint_ge(n, N);
    for (int i = 0; i < NW; i++) ck_assert_float_eq_tol(ms[i], (float)m[i], 1e-6f);
    ck_assert_int_eq(mtft_adamw_group_state(opt, 1, &ms, &vs, &n, &steps), MTFT_ERANGE);
    mtft_adamw_free(opt);
    mtft_param_group_free(pg);
}
END_TEST

/* Step 1: m^ = g, v^ = g^2, so p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
 * 15 elements: the 4-wide path and the scalar tail both run. */
START_TEST(test_optim_adamw_first_step) {
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "odd"), 0);
    int64_t shp[2] = {3, 5};
    mtft_tensor *w = mtft_param_group_add(pg, "w", 2, shp);
    ck_assert_int_eq(mtft_param_group_alloc(pg), 0);
    mtft_test_fill(mtft_tensor_data(w), 15, 2, -1.0f, 1.0f);
    mtft_test_fill(mtft_tensor_grad(w), 15, 7, -0.5f, 0.5f);
    float p0[15], g0[15];
    memcpy(p0, mtft_tensor_data(w), sizeof p0);
    memcpy(g0, mtft_tensor_grad(w), sizeof g0);
    mtft_adamw *opt = NULL;
    mtft_adamw_options o = MTFT_ADAMW_OPTIONS_INIT; /* lr 1e-3, wd 0.01 */
    ck_assert_int_eq(mtft_adamw_new(&opt, &o), 0);
    ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), 0);
    ck_assert_int_eq(mtft_adamw_step(opt), 0);
    for (int i = 0; i < 15; i++) {
        double want = p0[i] * (1.0 - 1e-3 * 0.01) - 1e-3 * g0[i] / (fabs(g0[i]) + 1e-8);
        ck_assert_float_eq_tol(mtft_tensor_data(w)[i], (float)want, 1e-6f);
    }
    mtft_adamw_free(opt);
    mtft_param_group_free(pg);
}
END_TEST

/* Zero gradients: 2-D tensors only decay (p *= 1 - lr wd), 1-D stay unless
 * decay_1d; a group weight_decay override and lr_scale apply. */
START_TEST(test_optim_adamw_decay_rule) {
    for (int decay_1d = 0; decay_1d <= 1; decay_1d++) {
        mtft_param_group *pg = make_group("g", 3), *pg2 = make_group("g2", 4);
        mtft_tensor *w = mtft_param_group_find(pg, "w"), *b = mtft_param_group_find(pg, "b");
        mtft_tensor *w2 = mtft_param_group_find(pg2, "w");
        float w0[12], b0[4], w20[12];
        memcpy(w0, mtft_tensor_data(w), sizeof w0);
        memcpy(b0, mtft_tensor_data(b), sizeof b0);
        memcpy(w20, mtft_tensor_data(w2), sizeof w20);
        mtft_adamw_options o = MTFT_ADAMW_OPTIONS_INIT;
        o.lr = 0.1f;
        o.weight_decay = 0.5f;
        o.decay_1d = decay_1d;
        mtft_adamw *opt = NULL;
        ck_assert_int_eq(mtft_adamw_new(&opt, &o), 0);
        ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), 0);
        mtft_adamw_group_options go = MTFT_ADAMW_GROUP_OPTIONS_INIT;
        go.lr_scale = 2.0f;
        go.weight_decay = 0.25f;
        ck_assert_int_eq(mtft_adamw_add_group(opt, pg2, &go), 0);
        ck_assert_int_eq(mtft_adamw_n_groups(opt), 2);
        mtft_adamw_zero_grad(opt);
        ck_assert_int_eq(mtft_adamw_step(opt), 0);
        ck_assert_int_eq(mtft_adamw_step(opt), 0);
        for (int i = 0; i < 12; i++) {
            ck_assert_float_eq_tol(mtft_tensor_data(w)[i], w0[i] * 0.95f * 0.95f, 1e-6f);
            ck_assert_float_eq_tol(mtft_tensor_data(w2)[i], w20[i] * 0.95f * 0.95f, 1e-6f); /* 0.2 * 0.25 */
        }
        for (int i = 0; i < 4; i++)
            ck_assert_float_eq_tol(mtft_tensor_data(b)[i], decay_1d ? b0[i] * 0.95f * 0.95f : b0[i], 1e-6f);
        mtft_adamw_free(opt);
        mtft_param_group_free(pg);
        mtft_param_group_free(pg2);
    }
}
END_TEST

/* A frozen group gets no moments and no update; unfrozen, it gets both. */
START_TEST(test_optim_adamw_frozen) {
    mtft_param_group *pg = make_group("frozen", 5);
    ck_assert_int_eq(mtft_param_group_set_trainable(pg, 0), 0);
    size_t n;
    float *d = mtft_param_group_data(pg, &n);
    float *before = malloc(n * sizeof(float));
    memcpy(before, d, n * sizeof(float));
    mtft_adamw *opt = NULL;
    ck_assert_int_eq(mtft_adamw_new(&opt, NULL), 0);
    ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), 0);
    ck_assert_int_eq(mtft_adamw_step(opt), 0);
    ck_assert_int_eq(memcmp(before, d, n * sizeof(float)), 0);
    float *m = (float *)1, *v = (float *)1;
    size_t ns = 1;
    int64_t steps = -1;
    ck_assert_int_eq(mtft_adamw_group_state(opt, 0, &m, &v, &ns, &steps), 0);
    ck_assert_ptr_null(m);
    ck_assert_ptr_null(v);
    ck_assert_uint_eq(ns, 0);
    ck_assert_int_eq(steps, 0);
    ck_assert_int_eq(mtft_param_group_set_trainable(pg, 1), 0);
    set_grads(pg, 9);
    ck_assert_int_eq(mtft_adamw_step(opt), 0);
    ck_assert_int_ne(memcmp(before, d, n * sizeof(float)), 0);
    ck_assert_int_eq(mtft_adamw_group_state(opt, 0, &m, &v, &ns, &steps), 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(ns, n);
    ck_assert_int_eq(steps, 1);
    /* zero_grad clears trainable groups */
    mtft_adamw_zero_grad(opt);
    size_t ng;
    float *gr = mtft_param_group_grad(pg, &ng);
    for (size_t i = 0; i < ng; i++) ck_assert_float_eq(gr[i], 0.0f);
    free(before);
    mtft_adamw_free(opt);
    mtft_param_group_free(pg);
}
END_TEST

/* Restoring state (moments + step) continues exactly like the original. */
START_TEST(test_optim_adamw_state_restore) {
    mtft_param_group *a = make_group("a", 6), *b = make_group("b", 6);
    mtft_adamw *oa = NULL, *ob = NULL;
    ck_assert_int_eq(mtft_adamw_new(&oa, NULL), 0);
    ck_assert_int_eq(mtft_adamw_new(&ob, NULL), 0);
    ck_assert_int_eq(mtft_adamw_add_group(oa, a, NULL), 0);
    ck_assert_int_eq(mtft_adamw_add_group(ob, b, NULL), 0);
    for (int s = 0; s < 3; s++) {
        set_grads(a, 20 + (uint64_t)s);
        ck_assert_int_eq(mtft_adamw_step(oa), 0);
    }
    /* copy a's params and state into b */
    size_t n;
    float *da = mtft_param_group_data(a, &n), *db = mtft_param_group_data(b, NULL);
    memcpy(db, da, n * sizeof(float));
    float *ma, *va, *mb, *vb;
    int64_t steps;
    ck_assert_int_eq(mtft_adamw_group_state(oa, 0, &ma, &va, NULL, &steps), 0);
    ck_assert_int_eq(mtft_adamw_group_state_alloc(ob, 0), 0);
    ck_assert_int_eq(mtft_adamw_group_state(ob, 0, &mb, &vb, NULL, NULL), 0);
    memcpy(mb, ma, n * sizeof(float));
    memcpy(vb, va, n * sizeof(float));
    ck_assert_int_eq(mtft_adamw_set_group_step(ob, 0, steps), 0);
    set_grads(a, 50);
    set_grads(b, 50);
    ck_assert_int_eq(mtft_adamw_step(oa), 0);
    ck_assert_int_eq(mtft_adamw_step(ob), 0);
    ck_assert_int_eq(memcmp(da, db, n * sizeof(float)), 0);
    /* without the step count the bias correction differs */
    ck_assert_int_eq(mtft_adamw_set_group_step(ob, 0, 0), 0);
    set_grads(a, 60);
    set_grads(b, 60);
    ck_assert_int_eq(mtft_adamw_step(oa), 0);
    ck_assert_int_eq(mtft_adamw_step(ob), 0);
    ck_assert_int_ne(memcmp(da, db, n * sizeof(float)), 0);
    mtft_adamw_free(oa);
    mtft_adamw_free(ob);
    mtft_param_group_free(a);
    mtft_param_group_free(b);
}
END_TEST

START_TEST(test_optim_adamw_errors) {
    mtft_adamw *opt = (mtft_adamw *)1;
    mtft_adamw_options o = MTFT_ADAMW_OPTIONS_INIT;
    o.beta1 = 1.0f;
    ck_assert_int_eq(mtft_adamw_new(&opt, &o), MTFT_EINVAL);
    ck_assert_ptr_null(opt);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "betas"));
    o = (mtft_adamw_options)MTFT_ADAMW_OPTIONS_INIT;
    o.eps = 0.0f;
    ck_assert_int_eq(mtft_adamw_new(&opt, &o), MTFT_EINVAL);
    o = (mtft_adamw_options)MTFT_ADAMW_OPTIONS_INIT;
    o.version = 42;
    ck_assert_int_eq(mtft_adamw_new(&opt, &o), MTFT_EINVAL);
    ck_assert_int_eq(mtft_adamw_new(&opt, NULL), 0);
    mtft_param_group *pg = make_group("g", 1), *un = NULL;
    ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), 0);
    ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "'g'"));
    ck_assert_int_eq(mtft_param_group_new(&un, "unallocated"), 0);
    ck_assert_int_eq(mtft_adamw_add_group(opt, un, NULL), MTFT_ESTATE);
    ck_assert_int_eq(mtft_adamw_remove_group(opt, un), MTFT_ENOTFOUND);
    ck_assert_int_eq(mtft_adamw_set_lr(opt, -1.0f), MTFT_EINVAL);
    ck_assert_int_eq(mtft_adamw_set_lr(opt, 0.5f), 0);
    ck_assert_float_eq(mtft_adamw_get_lr(opt), 0.5f);
    ck_assert_int_eq(mtft_adamw_remove_group(opt, pg), 0);
    ck_assert_int_eq(mtft_adamw_n_groups(opt), 0);
    ck_assert_int_eq(mtft_adamw_set_group_step(opt, 0, 1), MTFT_ERANGE);
    mtft_adamw_free(opt);
    mtft_adamw_free(NULL);
    mtft_param_group_free(pg);
    mtft_param_group_free(un);
}
END_TEST

static Suite *mtft_test_optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_optim_adamw_matches_reference);
    tcase_add_test(tc, test_optim_adamw_first_step);
    tcase_add_test(tc, test_optim_adamw_decay_rule);
    tcase_add_test(tc, test_optim_adamw_frozen);
    tcase_add_test(tc, test_optim_adamw_state_restore);
    tcase_add_test(tc, test_optim_adamw_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_optim_suite()); }
