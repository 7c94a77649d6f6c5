/* ctest-labels: unit */
/* Mixture sampler: rate formulas against hand-computed values, empirical
 * frequencies (chi-square), linear annealing, batch composition, epoch
 * accounting (RESHUFFLE / STOP / end of data), masks and rate overrides,
 * state save/restore. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/sampler.h"
#include "mtft_test.h"

/* Upper 99.9% quantiles of the chi-square distribution (dof 1..5). With a
 * fixed seed the statistic is deterministic; a correct sampler exceeds the
 * bound with probability 0.001 over seeds, a wrong rate formula by far. */
static const double CHI2_999[6] = {0.0, 10.828, 13.816, 16.266, 18.467, 20.515};

#define TOL 1e-12

static void assert_rates(const double *got, const double *want, int n, const char *what) {
    for (int k = 0; k < n; k++)
        ck_assert_msg(fabs(got[k] - want[k]) <= TOL, "%s: rate[%d] = %.17g, expected %.17g", what, k, got[k],
                      want[k]);
}

static void normalise(double *v, int n) {
    double s = 0.0;
    for (int k = 0; k < n; k++) s += v[k];
    for (int k = 0; k < n; k++) v[k] /= s;
}

/* Pearson's statistic of counts against probabilities p (N draws). Cells of
 * probability 0 must be empty; returns the dof through *dof. */
static double chi2(const int64_t *counts, const double *p, int n, int64_t total, int *dof) {
    double x = 0.0;
    int cells = 0;
    for (int k = 0; k < n; k++) {
        if (p[k] <= 0.0) {
            ck_assert_msg(counts[k] == 0, "task %d has rate 0 but was drawn %lld times", k, (long long)counts[k]);
            continue;
        }
        double e = (double)total * p[k];
        x += ((double)counts[k] - e) * ((double)counts[k] - e) / e;
        cells++;
    }
    *dof = cells - 1;
    return x;
}

static mtft_sampler *make(int n, const int64_t *sizes, const mtft_sampler_options *o) {
    mtft_sampler *s = NULL;
    int rc = mtft_sampler_new(&s, n, sizes, o);
    ck_assert_msg(rc == MTFT_OK, "mtft_sampler_new: %d %s", rc, mtft_error_last()->message);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Draw `steps` batches of `bs` rows, counting rows per task. */
static int64_t count_rows(mtft_sampler *s, int steps, int bs, int64_t *counts) {
    int32_t tid[64];
    int64_t ex[64];
    int64_t total = 0;
    ck_assert_int_le(bs, 64);
    for (int i = 0; i < steps; i++) {
        int got = mtft_sampler_next_batch(s, bs, tid, ex);
        ck_assert_msg(got == bs, "next_batch returned %d: %s", got, mtft_error_last()->message);
        for (int r = 0; r < bs; r++) counts[tid[r]]++;
        total += bs;
    }
    return total;
}

static const int64_t SIZES3[3] = {100, 1000, 10000};

/* (1) every formula against values computed by hand from the papers' formulas */
START_TEST(test_sampler_rates_by_hand) {
    double r[3], want[3];
    mtft_sampler_dist d = MTFT_SAMPLER_DIST_INIT;

    d.strategy = MTFT_SAMPLER_PROPORTIONAL;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    want[0] = 100.0 / 11100.0, want[1] = 1000.0 / 11100.0, want[2] = 10000.0 / 11100.0;
    assert_rates(r, want, 3, "proportional");

    /* T5: min(n, K) with K = 500 -> {100, 500, 500} / 1100 */
    d.strategy = MTFT_SAMPLER_CAPPED;
    d.cap = 500;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    want[0] = 100.0 / 1100.0, want[1] = 500.0 / 1100.0, want[2] = 500.0 / 1100.0;
    assert_rates(r, want, 3, "capped 500");

    /* T = 2: n^(1/2) = {10, 31.6227766016838, 100} */
    d.strategy = MTFT_SAMPLER_TEMPERATURE;
    d.temperature = 2.0;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    double s2 = 10.0 + 31.622776601683793 + 100.0;
    want[0] = 10.0 / s2, want[1] = 31.622776601683793 / s2, want[2] = 100.0 / s2;
    assert_rates(r, want, 3, "temperature 2");
    ck_assert(fabs(r[2] - 0.7061011117) < 1e-9); /* 100 / 141.6227766 */

    /* mT5: alpha = 0.3 (T = 1/0.3): n^0.3 = {3.98107170553497, 7.94328234724281, 15.8489319246111} */
    d.temperature = 1.0 / 0.3;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    double a = 3.9810717055349722, b = 7.9432823472428150, c = 15.848931924611135;
    want[0] = a / (a + b + c), want[1] = b / (a + b + c), want[2] = c / (a + b + c);
    assert_rates(r, want, 3, "temperature 1/0.3 (mT5)");

    /* T = 1 is proportional */
    d.temperature = 1.0;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    want[0] = 100.0 / 11100.0, want[1] = 1000.0 / 11100.0, want[2] = 10000.0 / 11100.0;
    assert_rates(r, want, 3, "temperature 1");

    /* a tiny T does not overflow: all mass on the largest task */
    d.temperature = 0.01;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    want[0] = 0.0, want[1] = 0.0, want[2] = 1.0;
    assert_rates(r, want, 3, "temperature 0.01");

    d.strategy = MTFT_SAMPLER_UNIFORM;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    want[0] = want[1] = want[2] = 1.0 / 3.0;
    assert_rates(r, want, 3, "uniform");

    double w[3] = {1.0, 2.0, 5.0};
    d.strategy = MTFT_SAMPLER_WEIGHTS;
    d.weights = w;
    ck_assert_int_eq(mtft_sampler_compute_rates(3, SIZES3, &d, r), MTFT_OK);
    want[0] = 0.125, want[1] = 0.25, want[2] = 0.625;
    assert_rates(r, want, 3, "weights");

    /* the sampler reports the same rates before any step */
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.start.strategy = MTFT_SAMPLER_CAPPED;
    o.start.cap = 500;
    mtft_sampler *s = make(3, SIZES3, &o);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    want[0] = 100.0 / 1100.0, want[1] = 500.0 / 1100.0, want[2] = 500.0 / 1100.0;
    assert_rates(r, want, 3, "sampler capped 500");
    ck_assert_int_eq(mtft_sampler_n_tasks(s), 3);
    ck_assert_int_eq(mtft_sampler_step(s), 0);
    mtft_sampler_free(s);
}
END_TEST

/* (2) empirical frequencies of mixed batches against each formula */
START_TEST(test_sampler_chi2_strategies) {
    double w[3] = {3.0, 1.0, 2.0};
    mtft_sampler_dist dists[5] = {MTFT_SAMPLER_DIST_INIT, MTFT_SAMPLER_DIST_INIT, MTFT_SAMPLER_DIST_INIT,
                                  MTFT_SAMPLER_DIST_INIT, MTFT_SAMPLER_DIST_INIT};
    dists[0].strategy = MTFT_SAMPLER_PROPORTIONAL;
    dists[1].strategy = MTFT_SAMPLER_CAPPED, dists[1].cap = 500;
    dists[2].strategy = MTFT_SAMPLER_TEMPERATURE, dists[2].temperature = 2.0;
    dists[3].strategy = MTFT_SAMPLER_UNIFORM;
    dists[4].strategy = MTFT_SAMPLER_WEIGHTS, dists[4].weights = w;
    /* hand formulas */
    double p[5][3] = {{100, 1000, 10000}, {100, 500, 500}, {10, 31.622776601683793, 100}, {1, 1, 1}, {3, 1, 2}};
    for (int i = 0; i < 5; i++) {
        normalise(p[i], 3);
        for (uint64_t seed = 1; seed <= 2; seed++) {
            mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
            o.seed = seed * 1000 + (uint64_t)i;
            o.start = dists[i];
            mtft_sampler *s = make(3, SIZES3, &o);
            int64_t counts[3] = {0, 0, 0};
            int64_t n = count_rows(s, 1000, 40, counts); /* 40000 rows */
            int dof;
            double x = chi2(counts, p[i], 3, n, &dof);
            ck_assert_int_eq(dof, 2);
            ck_assert_msg(x < CHI2_999[2], "strategy %d seed %llu: chi2 = %g >= %g (dof 2); counts %lld %lld %lld", i,
                          (unsigned long long)seed, x, CHI2_999[2], (long long)counts[0], (long long)counts[1],
                          (long long)counts[2]);
            /* the test has power: the same counts reject a different formula */
            double x_wrong = chi2(counts, p[(i + 1) % 5], 3, n, &dof);
            ck_assert_msg(x_wrong > 100.0 * CHI2_999[2], "strategy %d: counts also fit strategy %d (chi2 %g)", i,
                          (i + 1) % 5, x_wrong);
            mtft_sampler_free(s);
        }
    }
}
END_TEST

/* (3) linear annealing: uniform -> proportional over 10 steps */
START_TEST(test_sampler_anneal_linear) {
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.start.strategy = MTFT_SAMPLER_UNIFORM;
    o.end.strategy = MTFT_SAMPLER_PROPORTIONAL;
    o.anneal_steps = 10;
    mtft_sampler *s = make(3, SIZES3, &o);
    const double u = 1.0 / 3.0, pr[3] = {100.0 / 11100, 1000.0 / 11100, 10000.0 / 11100};
    int32_t tid[8];
    int64_t ex[8];
    double r[3], want[3];
    for (int t = 0; t <= 15; t++) {
        ck_assert_int_eq(mtft_sampler_step(s), t);
        ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
        double f = t >= 10 ? 1.0 : t / 10.0;
        for (int k = 0; k < 3; k++) want[k] = (1.0 - f) * u + f * pr[k];
        char what[32];
        snprintf(what, sizeof what, "anneal step %d", t);
        assert_rates(r, want, 3, what);
        if (t == 0) assert_rates(r, (double[]){u, u, u}, 3, "anneal start");
        if (t == 5) /* mid: the average */
            assert_rates(r, (double[]){(u + pr[0]) / 2, (u + pr[1]) / 2, (u + pr[2]) / 2}, 3, "anneal mid");
        if (t >= 10) assert_rates(r, pr, 3, "anneal end and beyond");
        ck_assert_int_eq(mtft_sampler_next_batch(s, 8, tid, ex), 8);
    }
    mtft_sampler_free(s);

    /* annealing between two weight vectors, at steps 0, 2 (of 4) and 7 */
    double w0[2] = {1, 0}, w1[2] = {0, 1};
    int64_t sz[2] = {10, 10};
    o = (mtft_sampler_options)MTFT_SAMPLER_OPTIONS_INIT;
    o.start.strategy = o.end.strategy = MTFT_SAMPLER_WEIGHTS;
    o.start.weights = w0;
    o.end.weights = w1;
    o.anneal_steps = 4;
    s = make(2, sz, &o);
    ck_assert_int_eq(mtft_sampler_next_batch(s, 8, tid, ex), 8);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(tid[i], 0); /* rate 1 on task 0 at step 0 */
    ck_assert_int_eq(mtft_sampler_next_batch(s, 1, tid, ex), 1);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, (double[]){0.5, 0.5}, 2, "weights anneal mid");
    for (int i = 0; i < 5; i++) ck_assert_int_eq(mtft_sampler_next_batch(s, 1, tid, ex), 1);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, (double[]){0.0, 1.0}, 2, "weights anneal beyond");
    ck_assert_int_eq(mtft_sampler_next_batch(s, 8, tid, ex), 8);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(tid[i], 1);
    mtft_sampler_free(s);
}
END_TEST

/* (4) single-task batches: one task per batch, batches distributed by the
 * rates; mixed batches: rows distributed by the rates and really mixed */
START_TEST(test_sampler_batch_composition) {
    double p[3] = {100, 500, 500};
    normalise(p, 3);
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 7;
    o.start.strategy = MTFT_SAMPLER_CAPPED;
    o.start.cap = 500;
    o.batch_mode = MTFT_SAMPLER_SINGLE_TASK;
    mtft_sampler *s = make(3, SIZES3, &o);
    int32_t tid[16];
    int64_t ex[16];
    int64_t batches[3] = {0, 0, 0};
    const int nb = 4000;
    for (int i = 0; i < nb; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(s, 16, tid, ex), 16);
        for (int r = 1; r < 16; r++) ck_assert_int_eq(tid[r], tid[0]);
        for (int r = 0; r < 16; r++) ck_assert(ex[r] >= 0 && ex[r] < SIZES3[tid[r]]);
        batches[tid[0]]++;
    }
    int dof;
    double x = chi2(batches, p, 3, nb, &dof);
    ck_assert_msg(x < CHI2_999[dof], "single-task: chi2 %g >= %g (dof %d)", x, CHI2_999[dof], dof);
    mtft_sampler_free(s);

    o.batch_mode = MTFT_SAMPLER_MIXED;
    s = make(3, SIZES3, &o);
    int64_t rows[3] = {0, 0, 0};
    int mixed_batches = 0;
    for (int i = 0; i < 2500; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(s, 16, tid, ex), 16);
        int same = 1;
        for (int r = 0; r < 16; r++) {
            rows[tid[r]]++;
            same &= tid[r] == tid[0];
            ck_assert(ex[r] >= 0 && ex[r] < SIZES3[tid[r]]);
        }
        mixed_batches += !same;
    }
    x = chi2(rows, p, 3, 2500 * 16, &dof);
    ck_assert_msg(x < CHI2_999[dof], "mixed: chi2 %g >= %g (dof %d)", x, CHI2_999[dof], dof);
    /* P(all 16 rows same task) = sum p^16 < 3e-6: nearly every batch mixes */
    ck_assert_int_ge(mixed_batches, 2490);
    mtft_sampler_free(s);
}
END_TEST

/* (5a) RESHUFFLE: each epoch is a permutation; a new order each epoch */
START_TEST(test_sampler_epochs_reshuffle) {
    const int64_t sz[3] = {7, 13, 5};
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 3;
    o.start.strategy = MTFT_SAMPLER_UNIFORM;
    mtft_sampler *s = make(3, sz, &o);
    enum { MAXSEQ = 400 };
    int64_t seq[3][MAXSEQ];
    int64_t len[3] = {0, 0, 0};
    int32_t tid[4];
    int64_t ex[4];
    for (int i = 0; i < 80; i++) { /* 320 rows, ~107 per task: >= 8 epochs of 13 */
        ck_assert_int_eq(mtft_sampler_next_batch(s, 4, tid, ex), 4);
        for (int r = 0; r < 4; r++) seq[tid[r]][len[tid[r]]++] = ex[r];
        for (int k = 0; k < 3; k++) {
            mtft_sampler_task_stats st;
            ck_assert_int_eq(mtft_sampler_get_task_stats(s, k, &st), MTFT_OK);
            ck_assert_int_eq(st.size, sz[k]);
            ck_assert_int_eq(st.drawn, len[k]);
            ck_assert_int_eq(st.epochs, len[k] / sz[k]);
            ck_assert_int_eq(st.position, len[k] % sz[k]);
            ck_assert_int_eq(st.stopped, 0);
            ck_assert_int_eq(st.active, 1);
        }
    }
    for (int k = 0; k < 3; k++) {
        int64_t full = len[k] / sz[k];
        ck_assert_int_ge(full, 3);
        int orders_differ = 0;
        for (int64_t e = 0; e < full; e++) {
            int seen[16] = {0};
            for (int64_t i = 0; i < sz[k]; i++) {
                int64_t v = seq[k][e * sz[k] + i];
                ck_assert(v >= 0 && v < sz[k]);
                seen[v]++;
            }
            for (int64_t v = 0; v < sz[k]; v++)
                ck_assert_msg(seen[v] == 1, "task %d epoch %lld: example %lld seen %d times", k, (long long)e,
                              (long long)v, seen[v]);
            if (e > 0 && memcmp(&seq[k][e * sz[k]], &seq[k][(e - 1) * sz[k]], (size_t)sz[k] * sizeof(int64_t)))
                orders_differ++;
        }
        /* reshuffled: consecutive epochs differ (equal with prob. 1/n! each) */
        ck_assert_int_ge(orders_differ, (int)full - 2);
        ck_assert_int_ge(orders_differ, 1);
        /* the first epoch is shuffled, not 0..n-1 */
        int identity = 1;
        for (int64_t i = 0; i < sz[k]; i++) identity &= seq[k][i] == i;
        ck_assert(!identity);
    }
    mtft_sampler_free(s);
}
END_TEST

/* (5d) each epoch's order is a uniform random permutation: for n = 3 the 6
 * orders are equally likely (chi-square, dof 5) */
START_TEST(test_sampler_permutation_uniform) {
    const int64_t sz[1] = {3};
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 77;
    mtft_sampler *s = make(1, sz, &o);
    int32_t tid[3];
    int64_t ex[3];
    int64_t counts[6] = {0};
    const int epochs = 12000;
    for (int e = 0; e < epochs; e++) {
        ck_assert_int_eq(mtft_sampler_next_batch(s, 3, tid, ex), 3);
        ck_assert(ex[0] != ex[1] && ex[1] != ex[2] && ex[0] != ex[2]);
        /* rank of the order among the 6: first element * 2 + (second > third) */
        counts[ex[0] * 2 + (ex[1] > ex[2])]++;
    }
    double p[6] = {1, 1, 1, 1, 1, 1};
    normalise(p, 6);
    int dof;
    double x = chi2(counts, p, 6, epochs, &dof);
    ck_assert_int_eq(dof, 5);
    ck_assert_msg(x < CHI2_999[5], "permutation orders: chi2 %g >= %g (dof 5)", x, CHI2_999[5]);
    mtft_sampler_task_stats st;
    ck_assert_int_eq(mtft_sampler_get_task_stats(s, 0, &st), MTFT_OK);
    ck_assert_int_eq(st.epochs, epochs);
    mtft_sampler_free(s);
}
END_TEST

/* (5b) STOP: exhausted tasks leave the mixture, the rest are renormalised,
 * every example comes exactly once, then end of data */
START_TEST(test_sampler_epochs_stop) {
    const int64_t sz[3] = {3, 5, 1000};
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 11;
    o.start.strategy = MTFT_SAMPLER_UNIFORM;
    o.epoch_policy = MTFT_SAMPLER_STOP;
    mtft_sampler *s = make(3, sz, &o);
    int seen0[3] = {0}, seen1[5] = {0};
    int *seen2 = calloc(1000, sizeof(int));
    ck_assert_ptr_nonnull(seen2);
    int32_t tid[2];
    int64_t ex[2];
    int64_t total = 0;
    int renorm_checks = 0;
    double r[3];
    for (;;) {
        int got = mtft_sampler_next_batch(s, 2, tid, ex);
        if (got < 0) {
            ck_assert_int_eq(got, MTFT_ESTATE);
            ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "end of data"));
            break;
        }
        ck_assert(got == 1 || got == 2);
        if (got == 1) ck_assert(tid[1] == -1 && ex[1] == -1);
        for (int i = 0; i < got; i++) {
            int *seen = tid[i] == 0 ? seen0 : tid[i] == 1 ? seen1 : seen2;
            ck_assert(ex[i] >= 0 && ex[i] < sz[tid[i]]);
            seen[ex[i]]++;
        }
        total += got;
        mtft_sampler_task_stats s0, s1;
        mtft_sampler_get_task_stats(s, 0, &s0);
        mtft_sampler_get_task_stats(s, 1, &s1);
        ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
        if (s0.stopped && !s1.stopped) { /* task 0 gone: uniform over {1, 2} */
            assert_rates(r, (double[]){0.0, 0.5, 0.5}, 3, "after task 0 stopped");
            ck_assert_int_eq(s0.epochs, 1);
            ck_assert_int_eq(s0.drawn, 3);
            renorm_checks++;
        } else if (s0.stopped && s1.stopped && !mtft_sampler_finished(s)) {
            assert_rates(r, (double[]){0.0, 0.0, 1.0}, 3, "after tasks 0, 1 stopped");
            renorm_checks++;
        } else if (!s0.stopped && s1.stopped) {
            assert_rates(r, (double[]){0.5, 0.0, 0.5}, 3, "after task 1 stopped");
            renorm_checks++;
        }
        ck_assert(total <= 1008);
    }
    ck_assert_int_eq(total, 1008);
    ck_assert_int_ge(renorm_checks, 400); /* ~990 rows of task 2 come after the small tasks stop */
    for (int i = 0; i < 3; i++) ck_assert_int_eq(seen0[i], 1);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(seen1[i], 1);
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(seen2[i], 1);
    free(seen2);
    ck_assert_int_eq(mtft_sampler_finished(s), 1);
    for (int k = 0; k < 3; k++) {
        mtft_sampler_task_stats st;
        ck_assert_int_eq(mtft_sampler_get_task_stats(s, k, &st), MTFT_OK);
        ck_assert_int_eq(st.stopped, 1);
        ck_assert_int_eq(st.epochs, 1);
        ck_assert_int_eq(st.drawn, sz[k]);
        ck_assert_int_eq(st.position, sz[k]);
    }
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, (double[]){0, 0, 0}, 3, "finished");
    /* end of data persists and draws nothing */
    int64_t step = mtft_sampler_step(s);
    ck_assert_int_eq(mtft_sampler_next_batch(s, 2, tid, ex), MTFT_ESTATE);
    ck_assert_int_eq(mtft_sampler_step(s), step);
    mtft_sampler_free(s);

    /* proportional rates renormalise over the remaining tasks by the formula */
    const int64_t sz2[3] = {2, 40, 60};
    o.start.strategy = MTFT_SAMPLER_PROPORTIONAL;
    o.seed = 5;
    s = make(3, sz2, &o);
    int done = 0;
    for (int i = 0; i < 200 && !done; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(s, 1, tid, ex), 1);
        mtft_sampler_task_stats s0;
        mtft_sampler_get_task_stats(s, 0, &s0);
        if (s0.stopped) {
            ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
            assert_rates(r, (double[]){0.0, 40.0 / 100.0, 60.0 / 100.0}, 3, "proportional after stop");
            done = 1;
        }
    }
    ck_assert_msg(done, "task 0 (2 examples) never stopped in 200 draws");
    mtft_sampler_free(s);
}
END_TEST

/* (5c) single-task batches under STOP end with their task: a short batch */
START_TEST(test_sampler_stop_short_batch) {
    const int64_t sz[1] = {5};
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.batch_mode = MTFT_SAMPLER_SINGLE_TASK;
    o.epoch_policy = MTFT_SAMPLER_STOP;
    mtft_sampler *s = make(1, sz, &o);
    int32_t tid[4];
    int64_t ex[4];
    int seen[5] = {0};
    ck_assert_int_eq(mtft_sampler_next_batch(s, 4, tid, ex), 4);
    for (int r = 0; r < 4; r++) seen[ex[r]]++;
    ck_assert_int_eq(mtft_sampler_finished(s), 0);
    ck_assert_int_eq(mtft_sampler_next_batch(s, 4, tid, ex), 1);
    ck_assert_int_eq(tid[0], 0);
    seen[ex[0]]++;
    for (int r = 1; r < 4; r++) ck_assert(tid[r] == -1 && ex[r] == -1);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_int_eq(mtft_sampler_finished(s), 1);
    ck_assert_int_eq(mtft_sampler_next_batch(s, 4, tid, ex), MTFT_ESTATE);
    mtft_sampler_free(s);
}
END_TEST

/* (7) masks and rate overrides */
START_TEST(test_sampler_mask_and_set_rates) {
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 21;
    mtft_sampler *s = make(3, SIZES3, &o);
    double r[3];
    int mask[3] = {1, 0, 1};
    ck_assert_int_eq(mtft_sampler_set_mask(s, mask), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    double pm[3] = {100.0 / 10100, 0.0, 10000.0 / 10100};
    assert_rates(r, pm, 3, "masked proportional");
    int64_t counts[3] = {0, 0, 0};
    int64_t n = count_rows(s, 500, 40, counts);
    int dof;
    double x = chi2(counts, pm, 3, n, &dof); /* also asserts task 1 never drawn */
    ck_assert_int_eq(dof, 1);
    ck_assert_msg(x < CHI2_999[1], "masked: chi2 %g >= %g (dof 1)", x, CHI2_999[1]);
    mtft_sampler_task_stats st;
    ck_assert_int_eq(mtft_sampler_get_task_stats(s, 1, &st), MTFT_OK);
    ck_assert_int_eq(st.active, 0);
    ck_assert_int_eq(st.drawn, 0);

    /* a mask with no active task is rejected and changes nothing */
    int none[3] = {0, 0, 0};
    ck_assert_int_eq(mtft_sampler_set_mask(s, none), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "none"));
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, pm, 3, "mask unchanged");

    /* override for 3 steps, renormalised over the mask */
    double ov[3] = {1.0, 1.0, 2.0};
    ck_assert_int_eq(mtft_sampler_set_rates(s, ov, 3), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, (double[]){1.0 / 3, 0.0, 2.0 / 3}, 3, "override masked");
    ck_assert_int_eq(mtft_sampler_set_mask(s, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, (double[]){0.25, 0.25, 0.5}, 3, "override");
    int32_t tid[8];
    int64_t ex[8];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
        assert_rates(r, (double[]){0.25, 0.25, 0.5}, 3, "override lasting");
        ck_assert_int_eq(mtft_sampler_next_batch(s, 8, tid, ex), 8);
    }
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK); /* expired: back to the schedule */
    assert_rates(r, (double[]){100.0 / 11100, 1000.0 / 11100, 10000.0 / 11100}, 3, "override expired");

    /* override until cleared drives the draws */
    double one[3] = {0.0, 0.0, 4.0};
    ck_assert_int_eq(mtft_sampler_set_rates(s, one, 0), MTFT_OK);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(s, 8, tid, ex), 8);
        for (int j = 0; j < 8; j++) ck_assert_int_eq(tid[j], 2);
    }
    /* override frequencies (balancer weights driving the sampler) */
    double bw[3] = {0.5, 0.3, 0.2};
    ck_assert_int_eq(mtft_sampler_set_rates(s, bw, 0), MTFT_OK);
    int64_t c2[3] = {0, 0, 0};
    n = count_rows(s, 1000, 40, c2);
    x = chi2(c2, bw, 3, n, &dof);
    ck_assert_msg(x < CHI2_999[dof], "override: chi2 %g >= %g (dof %d)", x, CHI2_999[dof], dof);
    ck_assert_int_eq(mtft_sampler_set_rates(s, NULL, 0), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, (double[]){100.0 / 11100, 1000.0 / 11100, 10000.0 / 11100}, 3, "override cleared");

    /* invalid overrides are rejected with the offending index */
    double neg[3] = {1.0, -0.5, 1.0};
    ck_assert_int_eq(mtft_sampler_set_rates(s, neg, 0), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "rates[1]"));
    double zero[3] = {0.0, 0.0, 0.0};
    ck_assert_int_eq(mtft_sampler_set_rates(s, zero, 0), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "sum"));
    double nan3[3] = {1.0, NAN, 1.0};
    ck_assert_int_eq(mtft_sampler_set_rates(s, nan3, 0), MTFT_EINVAL);
    ck_assert_int_eq(mtft_sampler_set_rates(s, bw, -1), MTFT_EINVAL);

    /* rates that give the active tasks no mass: a distinct error, not end of data */
    int only1[3] = {0, 1, 0};
    double only0[3] = {1.0, 0.0, 0.0};
    ck_assert_int_eq(mtft_sampler_set_mask(s, only1), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_set_rates(s, only0, 0), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_rates(s, r), MTFT_OK);
    assert_rates(r, zero, 3, "no mass");
    int64_t step = mtft_sampler_step(s);
    ck_assert_int_eq(mtft_sampler_next_batch(s, 8, tid, ex), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "total rate 0"));
    ck_assert_int_eq(mtft_sampler_step(s), step);
    ck_assert_int_eq(mtft_sampler_finished(s), 0);
    mtft_sampler_free(s);
}
END_TEST

/* (6) save at step k, continue to k+m; a restored sampler draws the same */
static void roundtrip(const mtft_sampler_options *o, int n, const int64_t *sz, int k, int m, int bs, int use_mask) {
    enum { MAXROWS = 4096 };
    mtft_sampler *a = make(n, sz, o);
    int32_t tid[32];
    int64_t ex[32];
    ck_assert_int_le(bs, 32);
    ck_assert_int_le(m * bs, MAXROWS);
    int mask[8];
    for (int i = 0; i < k; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(a, bs, tid, ex), bs);
        if (use_mask && i == k / 3) { /* the state carries a mask and an override too */
            for (int j = 0; j < n; j++) mask[j] = j != 1;
            ck_assert_int_eq(mtft_sampler_set_mask(a, mask), MTFT_OK);
        }
        if (i == k / 2) {
            double w[8];
            for (int j = 0; j < n; j++) w[j] = 1.0 + j;
            ck_assert_int_eq(mtft_sampler_set_rates(a, w, k), MTFT_OK);
        }
    }
    int64_t need = mtft_sampler_state_save(a, NULL, 0);
    ck_assert_int_gt(need, 0);
    unsigned char *buf = malloc((size_t)need);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0xAB, (size_t)need);
    ck_assert_int_eq(mtft_sampler_state_save(a, buf, (size_t)need - 1), need); /* too small: no write */
    ck_assert_int_eq(buf[0], 0xAB);
    ck_assert_int_eq(mtft_sampler_state_save(a, buf, (size_t)need), need);

    int32_t *ta = malloc(sizeof(int32_t) * MAXROWS);
    int64_t *ea = malloc(sizeof(int64_t) * MAXROWS);
    ck_assert(ta && ea);
    int rows_a[64];
    double ra[8], rb[8];
    double rates_a[64][8];
    for (int i = 0; i < m; i++) {
        ck_assert_int_eq(mtft_sampler_rates(a, rates_a[i]), MTFT_OK);
        rows_a[i] = mtft_sampler_next_batch(a, bs, ta + i * bs, ea + i * bs);
    }

    mtft_sampler *b = make(n, sz, o); /* fresh: step 0, different position */
    ck_assert_int_eq(mtft_sampler_state_load(b, buf, (size_t)need), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_step(b), k);
    for (int i = 0; i < m; i++) {
        ck_assert_int_eq(mtft_sampler_rates(b, rb), MTFT_OK);
        for (int j = 0; j < n; j++) ck_assert(rb[j] == rates_a[i][j]);
        int got = mtft_sampler_next_batch(b, bs, tid, ex);
        ck_assert_int_eq(got, rows_a[i]);
        for (int r = 0; r < bs && got > 0; r++) {
            ck_assert_msg(tid[r] == ta[i * bs + r] && ex[r] == ea[i * bs + r],
                          "step %d row %d: restored (%d, %lld) vs original (%d, %lld)", k + i, r, tid[r],
                          (long long)ex[r], ta[i * bs + r], (long long)ea[i * bs + r]);
        }
    }
    ck_assert_int_eq(mtft_sampler_step(a), mtft_sampler_step(b));
    for (int j = 0; j < n; j++) {
        mtft_sampler_task_stats sa, sb;
        ck_assert_int_eq(mtft_sampler_get_task_stats(a, j, &sa), MTFT_OK);
        ck_assert_int_eq(mtft_sampler_get_task_stats(b, j, &sb), MTFT_OK);
        ck_assert(memcmp(&sa, &sb, sizeof sa) == 0);
    }
    ck_assert_int_eq(mtft_sampler_rates(a, ra), MTFT_OK);
    ck_assert_int_eq(mtft_sampler_rates(b, rb), MTFT_OK);
    for (int j = 0; j < n; j++) ck_assert(ra[j] == rb[j]);
    /* and both save the same bytes now */
    unsigned char *sa_buf = malloc((size_t)need), *sb_buf = malloc((size_t)need);
    ck_assert(sa_buf && sb_buf);
    ck_assert_int_eq(mtft_sampler_state_save(a, sa_buf, (size_t)need), need);
    ck_assert_int_eq(mtft_sampler_state_save(b, sb_buf, (size_t)need), need);
    ck_assert(memcmp(sa_buf, sb_buf, (size_t)need) == 0);
    free(sa_buf);
    free(sb_buf);
    free(ta);
    free(ea);
    free(buf);
    mtft_sampler_free(a);
    mtft_sampler_free(b);
}

START_TEST(test_sampler_state_roundtrip) {
    const int64_t sz[4] = {7, 13, 50, 3};
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 99;
    o.start.strategy = MTFT_SAMPLER_TEMPERATURE;
    o.start.temperature = 2.0;
    o.end.strategy = MTFT_SAMPLER_UNIFORM;
    o.anneal_steps = 40;
    /* mixed, reshuffle, annealing, mask, override that expires after the save */
    roundtrip(&o, 4, sz, 24, 30, 8, 1);
    /* single-task batches */
    o.batch_mode = MTFT_SAMPLER_SINGLE_TASK;
    roundtrip(&o, 4, sz, 10, 40, 4, 1);
    /* STOP: saved with some tasks stopped, restored runs into end of data identically */
    o.batch_mode = MTFT_SAMPLER_MIXED;
    o.epoch_policy = MTFT_SAMPLER_STOP;
    roundtrip(&o, 4, sz, 4, 60, 2, 0);
}
END_TEST

START_TEST(test_sampler_state_rejects) {
    const int64_t sz[3] = {7, 13, 50};
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 5;
    mtft_sampler *a = make(3, sz, &o);
    mtft_sampler *ref = make(3, sz, &o);
    int32_t tid[4], tr[4];
    int64_t ex[4], er[4];
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(a, 4, tid, ex), 4);
        ck_assert_int_eq(mtft_sampler_next_batch(ref, 4, tid, ex), 4);
    }
    int64_t need = mtft_sampler_state_save(a, NULL, 0);
    unsigned char *buf = malloc((size_t)need), *bad = malloc((size_t)need);
    ck_assert(buf && bad);
    ck_assert_int_eq(mtft_sampler_state_save(a, buf, (size_t)need), need);

    /* truncated */
    ck_assert_int_eq(mtft_sampler_state_load(a, buf, (size_t)need - 1), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "truncated"));
    ck_assert_int_eq(mtft_sampler_state_load(a, buf, 10), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "truncated"));
    /* bad magic */
    memcpy(bad, buf, (size_t)need);
    bad[0] = 'X';
    ck_assert_int_eq(mtft_sampler_state_load(a, bad, (size_t)need), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "magic"));
    /* unknown format version */
    memcpy(bad, buf, (size_t)need);
    bad[8] = 7;
    ck_assert_int_eq(mtft_sampler_state_load(a, bad, (size_t)need), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "version 7"));
    /* any flipped byte in the body is caught */
    for (int64_t pos = 8; pos < need; pos += 7) {
        memcpy(bad, buf, (size_t)need);
        bad[pos] ^= 0x10;
        int rc = mtft_sampler_state_load(a, bad, (size_t)need);
        ck_assert_msg(rc == MTFT_EFORMAT, "flipped byte %lld accepted (rc %d)", (long long)pos, rc);
    }
    memcpy(bad, buf, (size_t)need);
    bad[need / 2] ^= 1;
    ck_assert_int_eq(mtft_sampler_state_load(a, bad, (size_t)need), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "checksum"));

    /* mismatched configurations */
    const int64_t sz4[4] = {7, 13, 50, 2};
    mtft_sampler *b4 = make(4, sz4, &o);
    ck_assert_int_eq(mtft_sampler_state_load(b4, buf, (size_t)need), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "3 tasks, this sampler has 4"));
    mtft_sampler_free(b4);
    const int64_t szb[3] = {7, 14, 50};
    mtft_sampler *bs = make(3, szb, &o);
    ck_assert_int_eq(mtft_sampler_state_load(bs, buf, (size_t)need), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "task 1 was saved with 13 examples"));
    mtft_sampler_free(bs);
    mtft_sampler_options o2 = o;
    o2.start.strategy = MTFT_SAMPLER_UNIFORM;
    mtft_sampler *bu = make(3, sz, &o2);
    ck_assert_int_eq(mtft_sampler_state_load(bu, buf, (size_t)need), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "start rate"));
    mtft_sampler_free(bu);
    o2 = o;
    o2.epoch_policy = MTFT_SAMPLER_STOP;
    mtft_sampler *bp = make(3, sz, &o2);
    ck_assert_int_eq(mtft_sampler_state_load(bp, buf, (size_t)need), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "epoch policy"));
    mtft_sampler_free(bp);
    o2 = o;
    o2.batch_mode = MTFT_SAMPLER_SINGLE_TASK;
    mtft_sampler *bm = make(3, sz, &o2);
    ck_assert_int_eq(mtft_sampler_state_load(bm, buf, (size_t)need), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "batches"));
    mtft_sampler_free(bm);
    o2 = o;
    o2.anneal_steps = 10;
    o2.end.strategy = MTFT_SAMPLER_PROPORTIONAL;
    mtft_sampler *ba = make(3, sz, &o2);
    ck_assert_int_eq(mtft_sampler_state_load(ba, buf, (size_t)need), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "anneal_steps"));
    mtft_sampler_free(ba);

    /* after all those failed loads, `a` still continues exactly like `ref` */
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(a, 4, tid, ex), 4);
        ck_assert_int_eq(mtft_sampler_next_batch(ref, 4, tr, er), 4);
        ck_assert(memcmp(tid, tr, sizeof tid) == 0 && memcmp(ex, er, sizeof ex) == 0);
    }
    ck_assert_int_eq(mtft_sampler_state_load(a, NULL, 10), MTFT_EINVAL);
    free(buf);
    free(bad);
    mtft_sampler_free(a);
    mtft_sampler_free(ref);
}
END_TEST

/* option validation, with messages naming the field */
static void expect_bad(int n, const int64_t *sz, const mtft_sampler_options *o, int code, const char *needle) {
    mtft_sampler *s = (mtft_sampler *)(uintptr_t)1;
    int rc = mtft_sampler_new(&s, n, sz, o);
    ck_assert_msg(rc == code, "expected %d for '%s', got %d (%s)", code, needle, rc, mtft_error_last()->message);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(mtft_error_last()->message, needle), "message '%s' lacks '%s'", mtft_error_last()->message,
                  needle);
}

START_TEST(test_sampler_options_validation) {
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    const int64_t bad_size[3] = {10, 20, 0};
    expect_bad(3, bad_size, &o, MTFT_EINVAL, "sizes[2] = 0");
    expect_bad(0, SIZES3, &o, MTFT_EINVAL, "n_tasks");
    expect_bad(3, NULL, &o, MTFT_EINVAL, "sizes is NULL");
    o.version = 99;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "version 99");
    o = (mtft_sampler_options)MTFT_SAMPLER_OPTIONS_INIT;
    o.start.strategy = MTFT_SAMPLER_TEMPERATURE;
    o.start.temperature = 0.0;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.temperature = 0");
    o.start.temperature = -2.0;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.temperature = -2");
    o.start.temperature = INFINITY;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.temperature");
    o.start.strategy = MTFT_SAMPLER_CAPPED;
    o.start.cap = 0.0;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.cap = 0");
    o.start.strategy = MTFT_SAMPLER_WEIGHTS;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.weights is NULL");
    double wneg[3] = {1.0, -1.0, 1.0};
    o.start.weights = wneg;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.weights[1] = -1");
    double wzero[3] = {0.0, 0.0, 0.0};
    o.start.weights = wzero;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "sum to 0");
    o.start.strategy = 17;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "start.strategy = 17");
    o = (mtft_sampler_options)MTFT_SAMPLER_OPTIONS_INIT;
    o.anneal_steps = 5;
    o.end.strategy = MTFT_SAMPLER_TEMPERATURE;
    o.end.temperature = -1.0;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "end.temperature");
    o.anneal_steps = -1;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "anneal_steps = -1");
    o = (mtft_sampler_options)MTFT_SAMPLER_OPTIONS_INIT;
    o.batch_mode = 5;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "batch_mode = 5");
    o = (mtft_sampler_options)MTFT_SAMPLER_OPTIONS_INIT;
    o.epoch_policy = 9;
    expect_bad(3, SIZES3, &o, MTFT_EINVAL, "epoch_policy = 9");
    /* without annealing, `end` is not looked at */
    o = (mtft_sampler_options)MTFT_SAMPLER_OPTIONS_INIT;
    o.end.strategy = 42;
    mtft_sampler *s = make(3, SIZES3, &o);
    mtft_sampler_free(s);
    /* NULL options are the defaults */
    s = make(3, SIZES3, NULL);
    int32_t tid[2];
    int64_t ex[2];
    ck_assert_int_eq(mtft_sampler_next_batch(s, 0, tid, ex), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "batch_size = 0"));
    ck_assert_int_eq(mtft_sampler_next_batch(s, 2, NULL, ex), MTFT_EINVAL);
    mtft_sampler_task_stats st;
    ck_assert_int_eq(mtft_sampler_get_task_stats(s, 3, &st), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "task 3"));
    mtft_sampler_free(s);
    mtft_sampler_free(NULL);
    ck_assert_int_eq(mtft_sampler_compute_rates(3, bad_size, &o.start, (double[3]){0}), MTFT_EINVAL);
}
END_TEST

/* same seed, same draws; another seed, other draws */
START_TEST(test_sampler_deterministic) {
    mtft_sampler_options o = MTFT_SAMPLER_OPTIONS_INIT;
    o.seed = 1234;
    o.start.strategy = MTFT_SAMPLER_UNIFORM;
    mtft_sampler *a = make(3, SIZES3, &o), *b = make(3, SIZES3, &o);
    o.seed = 1235;
    mtft_sampler *c = make(3, SIZES3, &o);
    int32_t ta[16], tb[16], tc[16];
    int64_t ea[16], eb[16], ec[16];
    int differ = 0;
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(mtft_sampler_next_batch(a, 16, ta, ea), 16);
        ck_assert_int_eq(mtft_sampler_next_batch(b, 16, tb, eb), 16);
        ck_assert_int_eq(mtft_sampler_next_batch(c, 16, tc, ec), 16);
        ck_assert(memcmp(ta, tb, sizeof ta) == 0 && memcmp(ea, eb, sizeof ea) == 0);
        differ += memcmp(ta, tc, sizeof ta) != 0 || memcmp(ea, ec, sizeof ea) != 0;
    }
    ck_assert_int_ge(differ, 45);
    mtft_sampler_free(a);
    mtft_sampler_free(b);
    mtft_sampler_free(c);
}
END_TEST

static Suite *mtft_test_sampler_suite(void) {
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_sampler_rates_by_hand);
    tcase_add_test(tc, test_sampler_chi2_strategies);
    tcase_add_test(tc, test_sampler_anneal_linear);
    tcase_add_test(tc, test_sampler_batch_composition);
    tcase_add_test(tc, test_sampler_epochs_reshuffle);
    tcase_add_test(tc, test_sampler_permutation_uniform);
    tcase_add_test(tc, test_sampler_epochs_stop);
    tcase_add_test(tc, test_sampler_stop_short_batch);
    tcase_add_test(tc, test_sampler_mask_and_set_rates);
    tcase_add_test(tc, test_sampler_state_roundtrip);
    tcase_add_test(tc, test_sampler_state_rejects);
    tcase_add_test(tc, test_sampler_deterministic);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_sampler_options_validation);
    suite_add_tcase(s, lim);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_sampler_suite()); }
