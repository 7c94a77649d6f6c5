/* ctest-labels: unit */
/* Loss balancers (include/mtft/balance.h): every loss-level method against
 * values worked out by hand from its paper's formula, masks, state
 * save/restore, option and input validation; the gradient-level methods on
 * two-task cases with an obvious answer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/balance.h"
#include "mtft_test.h"

/* Weights of float arithmetic on top of double maths: 1e-6 relative is ample. */
#define RTOL 1e-5f
#define ATOL 1e-6f

static mtft_balancer *make(int K, mtft_balancer_options *o) {
    mtft_balancer *b = NULL;
    int rc = mtft_balancer_new(&b, K, o);
    ck_assert_msg(rc == MTFT_OK, "mtft_balancer_new: %s", mtft_error_last()->message);
    return b;
}

/* One step with losses (and optional mask); weights into w. */
static void step(mtft_balancer *b, const float *losses, const uint8_t *mask, float *w) {
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    in.losses = losses;
    in.mask = mask;
    mtft_balance_output out = {w, NULL};
    int rc = mtft_balancer_step(b, &in, &out);
    ck_assert_msg(rc == MTFT_OK, "mtft_balancer_step: %s", mtft_error_last()->message);
}

static void expect_err(int rc, int code, const char *needle) {
    ck_assert_int_eq(rc, code);
    ck_assert_int_eq(mtft_error_last()->code, code);
    ck_assert_msg(strstr(mtft_error_last()->message, needle) != NULL, "message '%s' lacks '%s'",
                  mtft_error_last()->message, needle);
}

/* ---- names and levels ------------------------------------------------------ */

START_TEST(test_balance_names) {
    for (int m = 0; m < MTFT_BALANCE_METHOD_COUNT; m++) {
        mtft_balance_method back = MTFT_BALANCE_METHOD_COUNT;
        const char *name = mtft_balance_method_name((mtft_balance_method)m);
        ck_assert_str_ne(name, "unknown");
        ck_assert_int_eq(mtft_balance_method_from_name(name, &back), MTFT_OK);
        ck_assert_int_eq(back, m);
        ck_assert_int_eq(mtft_balancer_is_gradient_level((mtft_balance_method)m), m >= MTFT_BALANCE_GRADNORM);
    }
    mtft_balance_method m = MTFT_BALANCE_EQUAL;
    ck_assert_int_eq(mtft_balance_method_from_name("Nash-MTL", &m), MTFT_OK);
    ck_assert_int_eq(m, MTFT_BALANCE_NASH_MTL);
    ck_assert_int_eq(mtft_balance_method_from_name("DWA", &m), MTFT_OK);
    ck_assert_int_eq(m, MTFT_BALANCE_DWA);
    expect_err(mtft_balance_method_from_name("gradnrom", &m), MTFT_ENOTFOUND, "unknown method 'gradnrom'");
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "famo"));
    ck_assert_str_eq(mtft_balance_method_name((mtft_balance_method)99), "unknown");
    ck_assert_int_eq(mtft_balancer_is_gradient_level((mtft_balance_method)99), -1);
    ck_assert_str_eq(mtft_balance_method_name(MTFT_BALANCE_MFTCODER_TOKEN), "mftcoder_token");
}
END_TEST

/* ---- options ------------------------------------------------------------------ */

START_TEST(test_balance_options) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT, f;
    mtft_balancer_options_init(&f);
    /* the function and the macro agree (field by field: padding may differ) */
    ck_assert_int_eq(o.version, f.version);
    ck_assert_int_eq(o.method, f.method);
    ck_assert_float_eq(o.famo_gamma, f.famo_gamma);
    ck_assert_float_eq(o.coba_tau, f.coba_tau);
    ck_assert_int_eq(o.mgda_norm, f.mgda_norm);
    ck_assert_int_eq(f.version, MTFT_BALANCER_OPTIONS_VERSION);
    /* the papers' defaults */
    ck_assert_float_eq(o.dwa_temperature, 2.0f);
    ck_assert_int_eq(o.dwa_period, 1);
    ck_assert_float_eq(o.famo_lr, 0.025f);
    ck_assert_float_eq(o.famo_gamma, 0.001f);
    ck_assert_float_eq(o.cagrad_c, 0.5f);
    ck_assert_float_eq(o.gradnorm_alpha, 1.5f);
    ck_assert_float_eq(o.gradnorm_lr, 0.025f);
    ck_assert_int_eq(o.nash_max_iter, 20);
    ck_assert_int_eq(o.coba_warmup, 100);
    ck_assert_int_eq(o.coba_window, 200);
    ck_assert_float_eq(o.coba_tau, 5.0f);
    ck_assert_float_eq(o.uncertainty_lr, 1e-3f);
    ck_assert_int_eq(o.mgda_norm, 1);

    mtft_balancer *b = NULL;
    expect_err(mtft_balancer_new(&b, 0, &o), MTFT_EINVAL, "n_tasks = 0");
    ck_assert_ptr_null(b);
    o.version = 7;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_EINVAL, "version 7");
    o = f;
    o.method = (mtft_balance_method)42;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_EINVAL, "method 42");
    o = f;
    o.method = MTFT_BALANCE_DWA;
    o.dwa_temperature = 0.0f;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "dwa_temperature = 0");
    o.dwa_temperature = 2.0f;
    o.dwa_period = 0;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "dwa_period = 0");
    o = f;
    o.method = MTFT_BALANCE_STATIC;
    float sw[2] = {1.0f, -0.5f};
    o.static_weights = sw;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "static_weights[1] = -0.5");
    o = f;
    o.method = MTFT_BALANCE_CAGRAD;
    o.cagrad_c = 1.0f;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "cagrad_c = 1");
    o = f;
    o.method = MTFT_BALANCE_FAMO;
    o.famo_lr = NAN;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "famo_lr");
    o = f;
    o.method = MTFT_BALANCE_COBA;
    o.coba_window = 1;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "coba_window = 1");
    o = f;
    o.method = MTFT_BALANCE_MGDA_UB;
    o.mgda_norm = 4;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "mgda_norm = 4");
    o = f;
    o.method = MTFT_BALANCE_UNCERTAINTY;
    o.uncertainty_lr = -1.0f;
    expect_err(mtft_balancer_new(&b, 2, &o), MTFT_ERANGE, "uncertainty_lr = -1");
    ck_assert_ptr_null(b);
    /* NULL options: EQUAL */
    ck_assert_int_eq(mtft_balancer_new(&b, 3, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_balancer_method(b), MTFT_BALANCE_EQUAL);
    ck_assert_int_eq(mtft_balancer_n_tasks(b), 3);
    mtft_balancer_free(b);
    mtft_balancer_free(NULL);
}
END_TEST

START_TEST(test_balance_bad_input) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_GLS;
    mtft_balancer *b = make(2, &o);
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    float w[2];
    mtft_balance_output out = {w, NULL};
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_EINVAL, "in->losses");
    float bad[2] = {1.0f, NAN};
    in.losses = bad;
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_ENUMERIC, "losses[1]");
    float zero[2] = {0.0f, 1.0f};
    in.losses = zero;
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_ERANGE, "losses[0] = 0, must be > 0");
    uint8_t none[2] = {0, 0};
    in.mask = none;
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_EINVAL, "no task is present");
    /* a masked task's loss is not looked at */
    uint8_t only1[2] = {0, 1};
    in.mask = only1;
    ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
    ck_assert_float_eq(w[0], 0.0f);
    ck_assert_float_eq_tol(w[1], 1.0f, 1e-6f); /* one task: total = L, w = L / (1 L) = 1 */
    ck_assert_uint_eq(mtft_balancer_steps(b), 1);
    mtft_balancer_free(b);

    o.method = MTFT_BALANCE_MFTCODER_TOKEN;
    b = make(2, &o);
    float l[2] = {1.0f, 2.0f};
    in.mask = NULL;
    in.losses = l;
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_EINVAL, "n_tokens is required");
    int64_t neg[2] = {3, -1};
    in.n_tokens = neg;
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_ERANGE, "n_tokens[1] = -1");
    ck_assert_uint_eq(mtft_balancer_steps(b), 0);
    mtft_balancer_free(b);

    o.method = MTFT_BALANCE_PCGRAD;
    b = make(2, &o);
    in.n_tokens = NULL;
    expect_err(mtft_balancer_step(b, &in, &out), MTFT_EINVAL, "grads is required");
    mtft_balancer_free(b);
}
END_TEST

/* ---- loss-level methods -------------------------------------------------------- */

START_TEST(test_balance_equal_static) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    mtft_balancer *b = make(3, &o);
    float L[3] = {5.0f, 1.0f, 0.1f}, w[3];
    uint8_t mask[3] = {1, 0, 1};
    step(b, L, NULL, w);
    float ones[3] = {1, 1, 1};
    mtft_assert_close(w, ones, 3, 0, 0, "equal");
    step(b, L, mask, w);
    float e2[3] = {1, 0, 1};
    mtft_assert_close(w, e2, 3, 0, 0, "equal masked");
    mtft_assert_close(mtft_balancer_weights(b), e2, 3, 0, 0, "equal last weights");
    mtft_balancer_free(b);

    float sw[3] = {0.5f, 2.0f, 3.0f};
    o.method = MTFT_BALANCE_STATIC;
    o.static_weights = sw;
    b = make(3, &o);
    sw[0] = 100.0f; /* copied at _new: later changes do not matter */
    float s1[3] = {0.5f, 2.0f, 3.0f};
    mtft_assert_close(mtft_balancer_weights(b), s1, 3, 0, 0, "static before the first step");
    step(b, L, mask, w);
    float s2[3] = {0.5f, 0.0f, 3.0f};
    mtft_assert_close(w, s2, 3, 0, 0, "static masked");
    mtft_balancer_free(b);
}
END_TEST

START_TEST(test_balance_uncertainty) {
    /* total = sum exp(-s_k) L_k + s_k, s = 0, L = (2, 0.5).
     * SGD, lr 0.1: step 1 weights exp(0) = (1, 1);
     *   dtotal/ds = -exp(-s) L + 1 = (-1, 0.5)  ->  s = (0.1, -0.05)
     * step 2 weights exp(-0.1) = 0.904837418, exp(0.05) = 1.051271096. */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_UNCERTAINTY;
    o.uncertainty_adam = 0;
    o.uncertainty_lr = 0.1f;
    mtft_balancer *b = make(2, &o);
    float L[2] = {2.0f, 0.5f}, w[2];
    step(b, L, NULL, w);
    float e1[2] = {1.0f, 1.0f};
    mtft_assert_close(w, e1, 2, RTOL, ATOL, "uncertainty sgd step 1");
    step(b, L, NULL, w);
    float e2[2] = {0.904837418f, 1.051271096f};
    mtft_assert_close(w, e2, 2, RTOL, ATOL, "uncertainty sgd step 2");
    mtft_balancer_free(b);

    /* Adam, lr 0.01: the first Adam step moves each s by lr * sign(g)
     * (m^ = g, sqrt(v^) = |g|): s = (0.01, -0.01) -> exp(-0.01) = 0.990049834,
     * exp(0.01) = 1.010050167. A masked task keeps s = 0 (weight 1 when back). */
    o.uncertainty_adam = 1;
    o.uncertainty_lr = 0.01f;
    b = make(3, &o);
    float L3[3] = {2.0f, 0.5f, 7.0f}, w3[3];
    uint8_t mask[3] = {1, 1, 0};
    step(b, L3, mask, w3);
    ck_assert_float_eq(w3[2], 0.0f);
    step(b, L3, NULL, w3);
    float e3[3] = {0.990049834f, 1.010050167f, 1.0f};
    mtft_assert_close(w3, e3, 3, RTOL, ATOL, "uncertainty adam step 2");
    mtft_balancer_free(b);
}
END_TEST

START_TEST(test_balance_dwa) {
    /* T = 2, per step. Losses (1, 2), (0.5, 1.5), then (0.4, 1.2), (0.32, 0.96).
     * Steps 1 and 2: weights 1 (fewer than two past losses).
     * Step 3: r = (0.5/1, 1.5/2) = (0.5, 0.75); exp(r/T) = (e^0.25, e^0.375)
     *   = (1.2840254, 1.4549914); w = 2 e / sum = (0.93758125, 1.06241875).
     * Step 4: r = (0.4/0.5, 1.2/1.5) = (0.8, 0.8) -> (1, 1). */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_DWA;
    mtft_balancer *b = make(2, &o);
    float L[4][2] = {{1.0f, 2.0f}, {0.5f, 1.5f}, {0.4f, 1.2f}, {0.32f, 0.96f}}, w[2];
    float ones[2] = {1.0f, 1.0f}, e3[2] = {0.93758125f, 1.06241875f};
    step(b, L[0], NULL, w);
    mtft_assert_close(w, ones, 2, RTOL, ATOL, "dwa step 1");
    step(b, L[1], NULL, w);
    mtft_assert_close(w, ones, 2, RTOL, ATOL, "dwa step 2");
    step(b, L[2], NULL, w);
    mtft_assert_close(w, e3, 2, RTOL, ATOL, "dwa step 3");
    step(b, L[3], NULL, w);
    mtft_assert_close(w, ones, 2, RTOL, ATOL, "dwa step 4");
    mtft_balancer_free(b);

    /* Period 2 (averaged "epochs"): losses (1,2),(3,2) -> means (2, 2);
     * (1,1),(1,3) -> means (1, 2). Step 5: r = (1/2, 2/2) = (0.5, 1);
     * e^(0.25), e^(0.5) -> w = (0.87564700, 1.12435300). Steps 1-4: 1. */
    o.dwa_period = 2;
    b = make(2, &o);
    float P[5][2] = {{1, 2}, {3, 2}, {1, 1}, {1, 3}, {9, 9}};
    for (int t = 0; t < 4; t++) {
        step(b, P[t], NULL, w);
        mtft_assert_close(w, ones, 2, RTOL, ATOL, "dwa period 2, first two periods");
    }
    step(b, P[4], NULL, w);
    float e5[2] = {0.87564700f, 1.12435300f};
    mtft_assert_close(w, e5, 2, RTOL, ATOL, "dwa period 2 step 5");
    mtft_balancer_free(b);

    /* T settable: T = 0.5 at step 3: exp(r/T) = (e^1, e^1.5):
     * w = 2 e^1 / (e^1 + e^1.5) = 0.75508242, 1.24491758. */
    o.dwa_period = 1;
    o.dwa_temperature = 0.5f;
    b = make(2, &o);
    step(b, L[0], NULL, w);
    step(b, L[1], NULL, w);
    step(b, L[2], NULL, w);
    float eT[2] = {0.75508242f, 1.24491758f};
    mtft_assert_close(w, eT, 2, RTOL, ATOL, "dwa T = 0.5");
    mtft_balancer_free(b);

    /* Mask: task 1 absent at step 2 -> weight 0 there and its history keeps
     * only L(1) = 2, so at step 3 its ratio is 1 while task 0's is 0.5:
     * e^(0.25), e^(0.5) -> (0.87564700, 1.12435300). The masked loss (1e9)
     * is never read. */
    o.dwa_temperature = 2.0f;
    b = make(2, &o);
    uint8_t m01[2] = {1, 0};
    float Lm[2] = {0.5f, 1e9f};
    step(b, L[0], NULL, w);
    step(b, Lm, m01, w);
    ck_assert_float_eq(w[1], 0.0f);
    ck_assert_float_eq_tol(w[0], 1.0f, 1e-6f); /* one present task: K' = 1 */
    step(b, L[2], NULL, w);
    mtft_assert_close(w, e5, 2, RTOL, ATOL, "dwa with task 1 masked at step 2");
    mtft_balancer_free(b);
}
END_TEST

START_TEST(test_balance_rlw) {
    /* w = K softmax(z), z ~ N(0,1) from the seeded stream: reproduce the
     * draws with an mtft_rng of the same seed. */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_RLW;
    o.seed = 1234;
    mtft_balancer *b = make(3, &o);
    mtft_rng r;
    mtft_rng_seed(&r, 1234);
    float L[3] = {1, 2, 3}, w[3], prev[3] = {0, 0, 0};
    for (int t = 0; t < 3; t++) {
        double z[3], s = 0.0;
        for (int k = 0; k < 3; k++) {
            z[k] = mtft_rng_normal(&r);
            s += exp(z[k]);
        }
        float e[3];
        for (int k = 0; k < 3; k++) e[k] = (float)(3.0 * exp(z[k]) / s);
        step(b, L, NULL, w);
        mtft_assert_close(w, e, 3, RTOL, ATOL, "rlw");
        ck_assert_float_eq_tol(w[0] + w[1] + w[2], 3.0f, 1e-5f);
        ck_assert(w[0] != prev[0]); /* fresh draws each step */
        memcpy(prev, w, sizeof w);
    }
    /* masked: K' = 2 over the present tasks, the third draw discarded */
    uint8_t mask[3] = {1, 0, 1};
    double z[3];
    for (int k = 0; k < 3; k++) z[k] = mtft_rng_normal(&r);
    double s = exp(z[0]) + exp(z[2]);
    float e[3] = {(float)(2 * exp(z[0]) / s), 0.0f, (float)(2 * exp(z[2]) / s)};
    step(b, L, mask, w);
    mtft_assert_close(w, e, 3, RTOL, ATOL, "rlw masked");
    mtft_balancer_free(b);
}
END_TEST

START_TEST(test_balance_gls) {
    /* total = (prod L)^(1/K); w_k = total / (K L_k).
     * L = (1, 2, 4): total = 8^(1/3) = 2; w = (2/3, 1/3, 1/6).
     * Check: sum w_k L_k = 2/3 + 2/3 + 2/3 = 2 = total (Euler, degree 1). */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_GLS;
    mtft_balancer *b = make(3, &o);
    float L[3] = {1, 2, 4}, w[3];
    step(b, L, NULL, w);
    float e[3] = {2.0f / 3, 1.0f / 3, 1.0f / 6};
    mtft_assert_close(w, e, 3, RTOL, ATOL, "gls");
    /* mask task 1: L = (1, 4): total = 2, w = (2/2, 0, 2/8) */
    uint8_t mask[3] = {1, 0, 1};
    step(b, L, mask, w);
    float em[3] = {1.0f, 0.0f, 0.25f};
    mtft_assert_close(w, em, 3, RTOL, ATOL, "gls masked");
    mtft_balancer_free(b);
}
END_TEST

START_TEST(test_balance_famo) {
    /* xi = 0, L = (1, 0.5): z = (0.5, 0.5); c_k ∝ z_k / L_k = (0.5, 1) -> (1/3, 2/3).
     * update_after_step with L' = (0.5, 0.5): delta = log L - log L' = (ln 2, 0);
     * d = z (delta - z.delta) = (0.5 (ln2 - ln2/2), 0.5 (0 - ln2/2)) = (+0.1733, -0.1733);
     * first Adam step moves xi by -lr sign(d): xi = (-0.025, 0.025).
     * Next step L = (0.5, 0.5): z = softmax(xi) = (1/(1+e^0.05), ...) =
     * (0.48750260, 0.51249740) = c (equal losses). */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_FAMO;
    mtft_balancer *b = make(2, &o);
    float L1[2] = {1.0f, 0.5f}, L2[2] = {0.5f, 0.5f}, w[2];
    float e0[2] = {0.5f, 0.5f};
    mtft_assert_close(mtft_balancer_weights(b), e0, 2, RTOL, ATOL, "famo initial weights");
    step(b, L1, NULL, w);
    float e1[2] = {1.0f / 3, 2.0f / 3};
    mtft_assert_close(w, e1, 2, RTOL, ATOL, "famo step 1");
    ck_assert_int_eq(mtft_balancer_update_after_step(b, L2, NULL), MTFT_OK);
    expect_err(mtft_balancer_update_after_step(b, L2, NULL), MTFT_ESTATE, "without a step");
    step(b, L2, NULL, w);
    float e2[2] = {0.48750260f, 0.51249740f};
    mtft_assert_close(w, e2, 2, RTOL, ATOL, "famo step 2 (explicit update)");
    mtft_balancer_free(b);

    /* Without update_after_step, the next step's losses serve as the new
     * losses: same numbers here since the batch losses coincide. */
    b = make(2, &o);
    step(b, L1, NULL, w);
    step(b, L2, NULL, w);
    mtft_assert_close(w, e2, 2, RTOL, ATOL, "famo step 2 (implicit update)");
    mtft_balancer_free(b);

    /* lr settable: lr = 0.1 -> xi = (-0.1, 0.1), z = 1/(1+e^0.2) = 0.45016600 */
    o.famo_lr = 0.1f;
    b = make(2, &o);
    step(b, L1, NULL, w);
    step(b, L2, NULL, w);
    float e3[2] = {0.45016600f, 0.54983400f};
    mtft_assert_close(w, e3, 2, RTOL, ATOL, "famo lr 0.1");
    mtft_balancer_free(b);

    /* A task masked in either call keeps its logit: task 1 absent in the
     * update -> only task 0 takes part; with one task the softmax Jacobian
     * is 0, so nothing moves and step 2 gives c ∝ z/L with z = (0.5, 0.5). */
    o.famo_lr = 0.025f;
    b = make(2, &o);
    uint8_t m0[2] = {1, 0};
    step(b, L1, NULL, w);
    ck_assert_int_eq(mtft_balancer_update_after_step(b, L2, m0), MTFT_OK);
    step(b, L1, NULL, w);
    mtft_assert_close(w, e1, 2, RTOL, ATOL, "famo masked update leaves logits");
    mtft_balancer_free(b);
}
END_TEST

/* MFTCoder's three normalisations against a direct token-level computation.
 * Batch: task 0 has samples A = [1, 2, 3] and B = [4]; task 1 has C = [2, 2];
 * task 2 has D = [6, 0, 3].
 *   token mean per task: L = (10/4, 4/2, 9/3) = (2.5, 2, 3), tokens (4, 2, 3)
 *   (a) all tokens: (10 + 4 + 9) / 9 = 23/9 = 2.5556
 *   (b) per sample: sample means (2, 4, 2, 3) -> 11/4 = 2.75; per-task mean of
 *       sample means Ls = (3, 2, 3), samples (2, 1, 1): (2*3 + 2 + 3)/4 = 11/4
 *   (c) per task, weights u = (1, 2, 1): (2.5 + 4 + 3)/4 = 2.375 */
typedef struct {
    int task;
    int n;
    float tok[3];
} sample;

START_TEST(test_balance_mftcoder) {
    const sample S[4] = {{0, 3, {1, 2, 3}}, {0, 1, {4, 0, 0}}, {1, 2, {2, 2, 0}}, {2, 3, {6, 0, 3}}};
    double tok_sum[3] = {0}, samp_sum[3] = {0}, all = 0, all_n = 0, samp_all = 0;
    int64_t ntok[3] = {0}, nsamp[3] = {0};
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int j = 0; j < S[i].n; j++) s += S[i].tok[j];
        tok_sum[S[i].task] += s;
        ntok[S[i].task] += S[i].n;
        samp_sum[S[i].task] += s / S[i].n;
        nsamp[S[i].task]++;
        all += s;
        all_n += S[i].n;
        samp_all += s / S[i].n;
    }
    float Ltok[3], Lsamp[3], w[3];
    for (int k = 0; k < 3; k++) {
        Ltok[k] = (float)(tok_sum[k] / ntok[k]);
        Lsamp[k] = (float)(samp_sum[k] / nsamp[k]);
    }
    ck_assert_double_eq_tol(all / all_n, 23.0 / 9.0, 1e-12);
    ck_assert_double_eq_tol(samp_all / 4, 2.75, 1e-12);

    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    mtft_balance_output out = {w, NULL};

    o.method = MTFT_BALANCE_MFTCODER_TOKEN;
    mtft_balancer *b = make(3, &o);
    in.losses = Ltok;
    in.n_tokens = ntok;
    ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
    float ew[3] = {4.0f / 9, 2.0f / 9, 3.0f / 9};
    mtft_assert_close(w, ew, 3, RTOL, ATOL, "mftcoder token weights");
    ck_assert_double_eq_tol(w[0] * Ltok[0] + w[1] * Ltok[1] + w[2] * Ltok[2], all / all_n, 1e-5);
    /* task 2 absent: (10 + 4) / 6 */
    uint8_t mask[3] = {1, 1, 0};
    in.mask = mask;
    ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
    ck_assert_float_eq(w[2], 0.0f);
    ck_assert_double_eq_tol(w[0] * Ltok[0] + w[1] * Ltok[1], 14.0 / 6.0, 1e-5);
    mtft_balancer_free(b);
    in.mask = NULL;

    o.method = MTFT_BALANCE_MFTCODER_SAMPLE;
    b = make(3, &o);
    in.losses = Lsamp;
    in.n_samples = nsamp;
    ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
    float es[3] = {0.5f, 0.25f, 0.25f};
    mtft_assert_close(w, es, 3, RTOL, ATOL, "mftcoder sample weights");
    ck_assert_double_eq_tol(w[0] * Lsamp[0] + w[1] * Lsamp[1] + w[2] * Lsamp[2], samp_all / 4, 1e-5);
    mtft_balancer_free(b);

    float u[3] = {1, 2, 1};
    o.method = MTFT_BALANCE_MFTCODER_TASK;
    o.static_weights = u;
    b = make(3, &o);
    in.losses = Ltok;
    ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
    float et[3] = {0.25f, 0.5f, 0.25f};
    mtft_assert_close(w, et, 3, RTOL, ATOL, "mftcoder task weights");
    ck_assert_double_eq_tol(w[0] * Ltok[0] + w[1] * Ltok[1] + w[2] * Ltok[2], 2.375, 1e-5);
    mtft_balancer_free(b);
}
END_TEST

START_TEST(test_balance_coba) {
    /* K = 2, warm-up 2, window N = 3, tau 5, no normalisation.
     * Validation losses: task 0: 1.0, 0.8, 0.6, 0.9; task 1: 1.0, 0.9, 0.8, 0.7.
     * t = 0, 1: uniform (0.5, 0.5).
     * t = 2: points t = 0..2: alpha = (-0.2, -0.1); max curve (1, .9, .8): -0.1.
     *   RCS = softmax(2 alpha / 0.3) = softmax(-4/3, -2/3) = (0.33924363, 0.66075637)
     *   ACS: each task's own slope history [alpha]: -1 alpha/|alpha| = 1 -> (0.5, 0.5)
     *   DF: one max slope: 1 * softmax(5 * 1 * 0.1/0.1)_last = 1 -> w = RCS.
     * t = 3: points t = 1..3: task 0 (0.8, 0.6, 0.9): slope = sum (x-2)(y-0.76667) / 2
     *   = (-(0.8-0.76667) + (0.9-0.76667)) / 2 = 0.05; task 1: -0.1;
     *   max curve (.9, .8, .9): slope 0.
     *   RCS = softmax(2 (0.05, -0.1) / 0.15) = softmax(0.6667, -1.3333) = (0.88079708, 0.11920292)
     *   ACS: task 0 slopes (-0.2, 0.05): -2 * 0.05 / 0.25 = -0.4; task 1 (-0.1, -0.1): -2 * -0.1 / 0.2 = 1
     *        -> softmax(-0.4, 1) = (0.19781611, 0.80218389)
     *   DF: max slopes (-0.1, 0), sum |.| = 0.1, u = -5 * 2 * a / 0.1 = (10, 0):
     *        DF = 2 e^0 / (e^10 + e^0) = 9.0795737e-5
     *   w0 = DF 0.88079708 + (1 - DF) 0.19781611 = 0.19787812; w1 = 0.80212188. */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_COBA;
    o.coba_warmup = 2;
    o.coba_window = 3;
    o.coba_normalize = 0;
    mtft_balancer *b = make(2, &o);
    float V[4][2] = {{1.0f, 1.0f}, {0.8f, 0.9f}, {0.6f, 0.8f}, {0.9f, 0.7f}};
    float train[2] = {3.0f, 3.0f}, w[2];
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    mtft_balance_output out = {w, NULL};
    in.losses = train; /* not used by CoBa when val_losses is given */
    float half[2] = {0.5f, 0.5f};
    float e2[2] = {0.33924363f, 0.66075637f}, e3[2] = {0.19787812f, 0.80212188f};
    for (int t = 0; t < 4; t++) {
        in.val_losses = V[t];
        ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
        if (t < 2) mtft_assert_close(w, half, 2, RTOL, ATOL, "coba warm-up");
        if (t == 2) mtft_assert_close(w, e2, 2, 1e-5f, 1e-6f, "coba t=2 (DF = 1: RCS)");
        if (t == 3) mtft_assert_close(w, e3, 2, 1e-4f, 1e-6f, "coba t=3 (DF ~ 0: ACS)");
    }
    mtft_balancer_free(b);

    /* Normalisation by the first value: multiplying task 1's losses by 10
     * changes nothing when coba_normalize = 1. */
    o.coba_normalize = 1;
    mtft_balancer *b1 = make(2, &o), *b2 = make(2, &o);
    float w2[2];
    for (int t = 0; t < 4; t++) {
        float scaled[2] = {V[t][0], 10.0f * V[t][1]};
        in.val_losses = V[t];
        out.weights = w;
        ck_assert_int_eq(mtft_balancer_step(b1, &in, &out), MTFT_OK);
        in.val_losses = scaled;
        out.weights = w2;
        ck_assert_int_eq(mtft_balancer_step(b2, &in, &out), MTFT_OK);
        mtft_assert_close(w2, w, 2, 1e-4f, 1e-6f, "coba normalised is scale free");
    }
    /* and w sums to 1 */
    ck_assert_float_eq_tol(w[0] + w[1], 1.0f, 1e-6f);
    mtft_balancer_free(b1);
    mtft_balancer_free(b2);
}
END_TEST

/* ---- masks leave state untouched ------------------------------------------------- */

/* Two balancers see the same present losses; the masked task's loss is
 * garbage in one and different garbage in the other: the weights must agree
 * at every step, and equal those of a run where that step's masked loss
 * was never given. */
static void mask_invariance(mtft_balance_method m) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = m;
    o.seed = 5;
    o.coba_warmup = 1;
    o.coba_window = 4;
    o.uncertainty_lr = 0.05f;
    mtft_balancer *a = make(3, &o), *b = make(3, &o);
    float w1[3], w2[3];
    for (int t = 0; t < 8; t++) {
        float base[3] = {1.0f / (1 + t), 2.0f / (1 + 0.5f * t), 0.7f + 0.1f * (t % 3)};
        uint8_t mask[3] = {1, (uint8_t)(t % 3 != 1), 1};
        float la[3], lb[3];
        memcpy(la, base, sizeof la);
        memcpy(lb, base, sizeof lb);
        if (!mask[1]) {
            la[1] = 1e6f;
            lb[1] = NAN;
        }
        step(a, la, mask, w1);
        step(b, lb, mask, w2);
        mtft_assert_close(w1, w2, 3, 0, 0, mtft_balance_method_name(m));
        if (!mask[1]) ck_assert_float_eq(w1[1], 0.0f);
    }
    mtft_balancer_free(a);
    mtft_balancer_free(b);
}

START_TEST(test_balance_masks) {
    mtft_balance_method ms[] = {MTFT_BALANCE_EQUAL, MTFT_BALANCE_UNCERTAINTY, MTFT_BALANCE_DWA, MTFT_BALANCE_RLW,
                                MTFT_BALANCE_GLS, MTFT_BALANCE_FAMO, MTFT_BALANCE_COBA};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) mask_invariance(ms[i]);
}
END_TEST

/* ---- state save / restore --------------------------------------------------------- */

static float loss_at(int t, int k) { return (float)(1.0 / (1.0 + 0.3 * t * (k + 1)) + 0.05 * ((t * 7 + k) % 3)); }

static void save_restore(mtft_balance_method m) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = m;
    o.seed = 99;
    o.coba_warmup = 2;
    o.coba_window = 4;
    o.dwa_period = 2;
    o.uncertainty_lr = 0.05f;
    const int K = 3;
    mtft_balancer *a = make(K, &o);
    float w[3], wa[6][3];
    for (int t = 0; t < 7; t++) {
        float L[3] = {loss_at(t, 0), loss_at(t, 1), loss_at(t, 2)};
        uint8_t mask[3] = {1, (uint8_t)(t != 3), 1};
        step(a, L, mask, w);
        if (m == MTFT_BALANCE_FAMO && t % 2 == 0) {
            float L2[3] = {0.9f * L[0], 0.95f * L[1], L[2]};
            ck_assert_int_eq(mtft_balancer_update_after_step(a, L2, mask), MTFT_OK);
        }
    }
    size_t n = mtft_balancer_state_size(a), wr = 0;
    ck_assert_uint_gt(n, 40);
    unsigned char *buf = malloc(n);
    ck_assert_int_eq(mtft_balancer_state_save(a, buf, n, &wr), MTFT_OK);
    ck_assert_uint_eq(wr, n);
    for (int t = 7; t < 13; t++) {
        float L[3] = {loss_at(t, 0), loss_at(t, 1), loss_at(t, 2)};
        step(a, L, NULL, wa[t - 7]);
    }
    mtft_balancer *b = make(K, &o);
    ck_assert_int_eq(mtft_balancer_state_load(b, buf, n), MTFT_OK);
    ck_assert_uint_eq(mtft_balancer_steps(b), 7);
    for (int t = 7; t < 13; t++) {
        float L[3] = {loss_at(t, 0), loss_at(t, 1), loss_at(t, 2)};
        step(b, L, NULL, w);
        /* bit for bit */
        ck_assert_msg(memcmp(w, wa[t - 7], sizeof w) == 0, "%s: resumed step %d differs: %g %g %g vs %g %g %g",
                      mtft_balance_method_name(m), t, w[0], w[1], w[2], wa[t - 7][0], wa[t - 7][1], wa[t - 7][2]);
    }
    /* a fresh balancer (no load) would not match: the test can fail */
    if (m != MTFT_BALANCE_EQUAL && m != MTFT_BALANCE_GLS) {
        mtft_balancer *c = make(K, &o);
        float L[3] = {loss_at(7, 0), loss_at(7, 1), loss_at(7, 2)};
        step(c, L, NULL, w);
        ck_assert_msg(memcmp(w, wa[0], sizeof w) != 0, "%s: state did not matter", mtft_balance_method_name(m));
        mtft_balancer_free(c);
    }
    free(buf);
    mtft_balancer_free(a);
    mtft_balancer_free(b);
}

START_TEST(test_balance_state_roundtrip) {
    mtft_balance_method ms[] = {MTFT_BALANCE_EQUAL, MTFT_BALANCE_UNCERTAINTY, MTFT_BALANCE_DWA, MTFT_BALANCE_RLW,
                                MTFT_BALANCE_GLS, MTFT_BALANCE_FAMO, MTFT_BALANCE_COBA};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) save_restore(ms[i]);
}
END_TEST

START_TEST(test_balance_state_corrupt) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_RLW;
    mtft_balancer *a = make(2, &o);
    float L[2] = {1, 2}, w[2], wb[2];
    step(a, L, NULL, w);
    size_t n = mtft_balancer_state_size(a);
    unsigned char *buf = malloc(n), *bad = malloc(n);
    expect_err(mtft_balancer_state_save(a, buf, n - 1, NULL), MTFT_ERANGE, "needs");
    ck_assert_int_eq(mtft_balancer_state_save(a, buf, n, NULL), MTFT_OK);

    mtft_balancer *b = make(2, &o);
    step(b, L, NULL, w);
    step(b, L, NULL, w); /* b is 2 steps in; failed loads must leave it so */

    memcpy(bad, buf, n);
    bad[0] = 'X';
    expect_err(mtft_balancer_state_load(b, bad, n), MTFT_EFORMAT, "bad magic");
    memcpy(bad, buf, n);
    bad[8] = 9;
    expect_err(mtft_balancer_state_load(b, bad, n), MTFT_EFORMAT, "format version 9");
    memcpy(bad, buf, n);
    bad[40] ^= 0x10;
    expect_err(mtft_balancer_state_load(b, bad, n), MTFT_EFORMAT, "checksum mismatch");
    expect_err(mtft_balancer_state_load(b, buf, n - 3), MTFT_EFORMAT, "truncated");
    expect_err(mtft_balancer_state_load(b, buf, 10), MTFT_EFORMAT, "shorter than");

    mtft_balancer_options od = o;
    od.method = MTFT_BALANCE_DWA;
    mtft_balancer *d = make(2, &od);
    expect_err(mtft_balancer_state_load(d, buf, n), MTFT_EINVAL, "method 'rlw', this balancer is 'dwa'");
    mtft_balancer_free(d);
    d = make(3, &o);
    expect_err(mtft_balancer_state_load(d, buf, n), MTFT_EINVAL, "for 2 tasks, this balancer has 3");
    mtft_balancer_free(d);

    /* b unchanged: it continues exactly like a, stepped twice as well */
    ck_assert_uint_eq(mtft_balancer_steps(b), 2);
    step(a, L, NULL, w);
    step(a, L, NULL, w);
    step(b, L, NULL, wb);
    ck_assert_int_eq(memcmp(w, wb, sizeof w), 0);
    free(buf);
    free(bad);
    mtft_balancer_free(a);
    mtft_balancer_free(b);
}
END_TEST

/* ---- gradient-level methods -------------------------------------------------------- */

/* Run one gradient-level step on two tasks; returns the status. */
static int grad_step_o(mtft_balancer_options *o, const float *g0, const float *g1, int64_t P, const float *losses,
                       const uint8_t *mask, float *out_grad, float *w) {
    mtft_balancer *b = make(2, o);
    const float *g[2] = {g0, g1};
    float L1[2] = {1.0f, 1.0f};
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    in.losses = losses ? losses : L1;
    in.mask = mask;
    in.grads = g;
    in.n_params = P;
    mtft_balance_output out = {w, out_grad};
    int rc = mtft_balancer_step(b, &in, &out);
    mtft_balancer_free(b);
    return rc;
}

static int grad_step(mtft_balance_method m, const float *g0, const float *g1, int64_t P, const float *losses,
                     const uint8_t *mask, float *out_grad, float *w) {
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = m;
    return grad_step_o(&o, g0, g1, P, losses, mask, out_grad, w);
}

START_TEST(test_balance_grad_options) {
    /* CAGrad with c = 0 is the mean gradient: g1 = (1, 0), g2 = (-1, 1) -> (0, 0.5);
     * the default c = 0.5 moves away from it. */
    const float g1[2] = {1, 0}, g2[2] = {-1, 1};
    float d[2], w[2], mean[2] = {0.0f, 0.5f};
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_CAGRAD;
    o.cagrad_c = 0.0f;
    ck_assert_int_eq(grad_step_o(&o, g1, g2, 2, NULL, NULL, d, w), MTFT_OK);
    mtft_assert_close(d, mean, 2, 1e-5f, 1e-6f, "cagrad c = 0");
    o.cagrad_c = 0.5f;
    ck_assert_int_eq(grad_step_o(&o, g1, g2, 2, NULL, NULL, d, w), MTFT_OK);
    ck_assert_msg(fabsf(d[0] - mean[0]) + fabsf(d[1] - mean[1]) > 1e-3f, "cagrad c = 0.5 equals the mean");
    /* MGDA-UB without normalisation on g1 = (2, 0), g2 = (0, 1): min-norm point of
     * the hull: w = argmin 4 w^2 + (1-w)^2 -> 8w - 2(1-w) = 0 -> w = 1/5:
     * d = 0.2 (2, 0) + 0.8 (0, 1) = (0.4, 0.8). */
    const float h1[2] = {2, 0}, h2[2] = {0, 1};
    float mg[2] = {0.4f, 0.8f};
    o.method = MTFT_BALANCE_MGDA_UB;
    o.mgda_norm = 0;
    ck_assert_int_eq(grad_step_o(&o, h1, h2, 2, NULL, NULL, d, w), MTFT_OK);
    mtft_assert_close(d, mg, 2, 1e-4f, 1e-5f, "mgda no normalisation");
    float ew[2] = {0.2f, 0.8f};
    mtft_assert_close(w, ew, 2, 1e-4f, 1e-5f, "mgda weights");
}
END_TEST

START_TEST(test_balance_grad_orthogonal) {
    /* Two orthogonal unit gradients e1, e2: no conflict.
     * PCGrad: no projection, sum = (1, 1).
     * MGDA-UB: min-norm point of the hull = (1/2, 1/2) -> (0.5, 0.5).
     * IMTL-G: equal projections onto d for alpha = (1/2, 1/2) -> (0.5, 0.5).
     * Aligned-MTL: G^T G = I, B = I, w = 1/2 -> (0.5, 0.5).
     * Nash-MTL: (G^T G) alpha = 1/alpha -> alpha_i^2 = 1 -> (1, 1).
     * GradNorm: weights 1 at the first step -> (1, 1). */
    const float e1[2] = {1, 0}, e2[2] = {0, 1};
    float d[2], w[2];
    struct {
        mtft_balance_method m;
        float expect[2];
    } cases[] = {{MTFT_BALANCE_PCGRAD, {1, 1}},       {MTFT_BALANCE_MGDA_UB, {0.5f, 0.5f}},
                 {MTFT_BALANCE_IMTL_G, {0.5f, 0.5f}}, {MTFT_BALANCE_ALIGNED_MTL, {0.5f, 0.5f}},
                 {MTFT_BALANCE_NASH_MTL, {1, 1}},     {MTFT_BALANCE_GRADNORM, {1, 1}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = grad_step(cases[i].m, e1, e2, 2, NULL, NULL, d, w);
        ck_assert_msg(rc == MTFT_OK, "%s: %s", mtft_balance_method_name(cases[i].m), mtft_error_last()->message);
        mtft_assert_close(d, cases[i].expect, 2, 1e-3f, 1e-4f, mtft_balance_method_name(cases[i].m));
    }
}
END_TEST

START_TEST(test_balance_grad_conflict) {
    /* g1 = (1, 0), g2 = (-1, 1) (angle 135 degrees).
     * PCGrad: g1' = g1 - (<g1,g2>/|g2|^2) g2 = (1,0) + 0.5 (-1, 1) = (0.5, 0.5);
     *         g2' = g2 - (<g2,g1>/|g1|^2) g1 = (-1,1) + (1, 0) = (0, 1);
     *         sum = (0.5, 1.5).
     * MGDA-UB (no normalisation would give w = argmin |w g1 + (1-w) g2|^2:
     *   with L2 normalisation (default) u1 = (1,0), u2 = (-0.7071, 0.7071):
     *   the min-norm point of the hull is the foot of the perpendicular, and the
     *   result has <d, g1> >= 0 and <d, g2> >= 0 (a common descent direction). */
    const float g1[2] = {1, 0}, g2[2] = {-1, 1};
    float d[2], w[2];
    ck_assert_int_eq(grad_step(MTFT_BALANCE_PCGRAD, g1, g2, 2, NULL, NULL, d, w), MTFT_OK);
    float pc[2] = {0.5f, 1.5f};
    mtft_assert_close(d, pc, 2, 1e-5f, 1e-6f, "pcgrad conflict");
    const mtft_balance_method common[] = {MTFT_BALANCE_MGDA_UB, MTFT_BALANCE_CAGRAD, MTFT_BALANCE_IMTL_G,
                                          MTFT_BALANCE_NASH_MTL, MTFT_BALANCE_ALIGNED_MTL};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        int rc = grad_step(common[i], g1, g2, 2, NULL, NULL, d, w);
        ck_assert_msg(rc == MTFT_OK, "%s: %s", mtft_balance_method_name(common[i]), mtft_error_last()->message);
        double d1 = d[0] * g1[0] + d[1] * g1[1], d2 = d[0] * g2[0] + d[1] * g2[1];
        ck_assert_msg(d1 >= -1e-5 && d2 >= -1e-5, "%s: (%g, %g) conflicts with a task (%g, %g)",
                      mtft_balance_method_name(common[i]), d[0], d[1], d1, d2);
        ck_assert_msg(fabs(d[0]) + fabs(d[1]) > 1e-4, "%s: zero direction", mtft_balance_method_name(common[i]));
    }
    /* IMTL-G: equal projections of d on the unit gradients */
    ck_assert_int_eq(grad_step(MTFT_BALANCE_IMTL_G, g1, g2, 2, NULL, NULL, d, w), MTFT_OK);
    double p1 = d[0], p2 = (-d[0] + d[1]) / sqrt(2.0);
    ck_assert_double_eq_tol(p1, p2, 1e-4);
}
END_TEST

START_TEST(test_balance_grad_mask) {
    /* Task 1 masked: its gradient pointer may be NULL; the result is task 0's
     * gradient alone for PCGrad (nothing to project onto) and weight 0 for task 1. */
    const float g0[3] = {1, 2, 3};
    float d[3], w[2];
    uint8_t mask[2] = {1, 0};
    ck_assert_int_eq(grad_step(MTFT_BALANCE_PCGRAD, g0, NULL, 3, NULL, mask, d, w), MTFT_OK);
    mtft_assert_close(d, g0, 3, 1e-6f, 1e-6f, "pcgrad one task");
    ck_assert_float_eq(w[1], 0.0f);
    /* NULL gradient of a present task is an error */
    expect_err(grad_step(MTFT_BALANCE_PCGRAD, g0, NULL, 3, NULL, NULL, d, w), MTFT_EINVAL, "grads[1] is NULL");
}
END_TEST

START_TEST(test_balance_gradnorm_state) {
    /* GradNorm keeps its weights across steps and saves them: two balancers,
     * one resumed from the other's state, give the same gradient. */
    mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
    o.method = MTFT_BALANCE_GRADNORM;
    mtft_balancer *a = make(2, &o);
    const float g0[2] = {3, 0}, g1[2] = {0, 1};
    const float *g[2] = {g0, g1};
    float L[2] = {1.0f, 1.0f}, d[2], da[2], w[2];
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    in.losses = L;
    in.grads = g;
    in.n_params = 2;
    mtft_balance_output out = {w, d};
    ck_assert_int_eq(mtft_balancer_step(a, &in, &out), MTFT_OK);
    /* |g0| = 3 > |g1| = 1 with equal loss ratios: GradNorm lowers w0, raises w1 */
    L[0] = 0.5f;
    L[1] = 0.9f;
    ck_assert_int_eq(mtft_balancer_step(a, &in, &out), MTFT_OK);
    ck_assert_float_lt(w[0], 1.0f);
    ck_assert_float_gt(w[1], 1.0f);
    size_t n = mtft_balancer_state_size(a);
    unsigned char *buf = malloc(n);
    ck_assert_int_eq(mtft_balancer_state_save(a, buf, n, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_balancer_step(a, &in, &out), MTFT_OK);
    memcpy(da, d, sizeof d);
    mtft_balancer *b = make(2, &o);
    ck_assert_int_eq(mtft_balancer_state_load(b, buf, n), MTFT_OK);
    ck_assert_int_eq(mtft_balancer_step(b, &in, &out), MTFT_OK);
    ck_assert_int_eq(memcmp(d, da, sizeof d), 0);
    free(buf);
    mtft_balancer_free(a);
    mtft_balancer_free(b);
}
END_TEST

static Suite *balance_suite(void) {
    Suite *s = suite_create("balance");
    TCase *tc = tcase_create("loss");
    tcase_add_test(tc, test_balance_names);
    tcase_add_test(tc, test_balance_options);
    tcase_add_test(tc, test_balance_bad_input);
    tcase_add_test(tc, test_balance_equal_static);
    tcase_add_test(tc, test_balance_uncertainty);
    tcase_add_test(tc, test_balance_dwa);
    tcase_add_test(tc, test_balance_rlw);
    tcase_add_test(tc, test_balance_gls);
    tcase_add_test(tc, test_balance_famo);
    tcase_add_test(tc, test_balance_mftcoder);
    tcase_add_test(tc, test_balance_coba);
    tcase_add_test(tc, test_balance_masks);
    tcase_add_test(tc, test_balance_state_roundtrip);
    tcase_add_test(tc, test_balance_state_corrupt);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("grad");
    tcase_add_test(tg, test_balance_grad_orthogonal);
    tcase_add_test(tg, test_balance_grad_conflict);
    tcase_add_test(tg, test_balance_grad_mask);
    tcase_add_test(tg, test_balance_grad_options);
    tcase_add_test(tg, test_balance_gradnorm_state);
    suite_add_tcase(s, tg);
    return s;
}

int main(void) { return mtft_test_run(balance_suite()); }
