/* ctest-labels: unit */
/* Metrics against values computed by hand (the arithmetic is in the
 * comments), including ties, degenerate inputs and errors. Reference
 * behaviour: sklearn (f1_score macro, matthews_corrcoef), scipy (pearsonr,
 * spearmanr), seqeval (default mode), sacrebleu 2.x CHRF(). */
#include <math.h>
#include <string.h>

#include "mtft/metrics.h"
#include "mtft_test.h"

#define TOL 1e-9

/* gold = [0,0,1,1,2,2], pred = [0,1,1,1,2,0]. Confusion C[g][p]:
 * g0: p0 1, p1 1;  g1: p1 2;  g2: p2 1, p0 1.
 * accuracy = 4/6.
 * F1: class 0 tp1 fp1 fn1 -> 2/4; class 1 tp2 fp1 fn0 -> 4/5; class 2 tp1
 * fp0 fn1 -> 2/3; macro = (0.5 + 0.8 + 2/3) / 3.
 * MCC: t = [2,2,2], p = [2,3,1], c = 4, s = 6: cov_tp = 24 - 12 = 12,
 * cov_pp = 36 - 14 = 22, cov_tt = 36 - 12 = 24 -> 12 / sqrt(528). */
static const int32_t CG[6] = {0, 0, 1, 1, 2, 2}, CP[6] = {0, 1, 1, 1, 2, 0};
#define C_ACC (4.0 / 6.0)
#define C_F1 ((0.5 + 0.8 + 2.0 / 3.0) / 3.0)
#define C_MCC (12.0 / sqrt(528.0))

START_TEST(test_metrics_classification_oneshot) {
    double v;
    ck_assert_int_eq(mtft_metric_accuracy(CP, CG, 6, &v), 0);
    ck_assert_double_eq_tol(v, C_ACC, TOL);
    ck_assert_int_eq(mtft_metric_macro_f1(CP, CG, 6, 3, &v), 0);
    ck_assert_double_eq_tol(v, C_F1, TOL);
    /* a class absent from gold and pred does not enter the mean (sklearn) */
    ck_assert_int_eq(mtft_metric_macro_f1(CP, CG, 6, 5, &v), 0);
    ck_assert_double_eq_tol(v, C_F1, TOL);
    ck_assert_int_eq(mtft_metric_mcc(CP, CG, 6, 3, &v), 0);
    ck_assert_double_eq_tol(v, C_MCC, TOL);
    /* binary: TP 2, TN 1, FP 1, FN 1 -> (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6 */
    const int32_t bg[5] = {1, 1, 0, 0, 1}, bp[5] = {1, 0, 0, 1, 1};
    ck_assert_int_eq(mtft_metric_mcc(bp, bg, 5, 2, &v), 0);
    ck_assert_double_eq_tol(v, 1.0 / 6.0, TOL);
    /* perfect and inverted binary predictions */
    const int32_t inv[5] = {0, 0, 1, 1, 0};
    ck_assert_int_eq(mtft_metric_mcc(bg, bg, 5, 2, &v), 0);
    ck_assert_double_eq_tol(v, 1.0, TOL);
    ck_assert_int_eq(mtft_metric_mcc(inv, bg, 5, 2, &v), 0);
    ck_assert_double_eq_tol(v, -1.0, TOL);
    /* constant prediction: MCC undefined -> 0 (sklearn) */
    const int32_t cst[5] = {1, 1, 1, 1, 1};
    ck_assert_int_eq(mtft_metric_mcc(cst, bg, 5, 2, &v), 0);
    ck_assert_double_eq(v, 0.0);
    /* macro F1 with the constant prediction: class 1 tp3 fp2 -> 6/8, class 0 -> 0 */
    ck_assert_int_eq(mtft_metric_macro_f1(cst, bg, 5, 2, &v), 0);
    ck_assert_double_eq_tol(v, 0.375, TOL);
}
END_TEST

START_TEST(test_metrics_classification_errors) {
    double v = 42;
    ck_assert_int_eq(mtft_metric_accuracy(CP, CG, 0, &v), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "empty"));
    ck_assert_int_eq(mtft_metric_macro_f1(CP, CG, 0, 3, &v), MTFT_EINVAL);
    ck_assert_int_eq(mtft_metric_mcc(CP, CG, 6, 2, &v), MTFT_ERANGE); /* label 2 with 2 classes */
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "index 4"));
    const int32_t neg[2] = {0, -1}, ok[2] = {0, 1};
    ck_assert_int_eq(mtft_metric_macro_f1(neg, ok, 2, 2, &v), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "predicted label -1 at index 1"));
    ck_assert_double_eq(v, 42); /* untouched on error */
}
END_TEST

START_TEST(test_metrics_classification_stream) {
    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_CLASSIFICATION;
    o.n_classes = 3;
    mtft_metrics *m = NULL;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), 0);
    double v;
    int def;
    ck_assert_int_eq(mtft_metrics_compute(m), MTFT_EINVAL); /* empty */
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_ACCURACY, &v, &def), MTFT_ESTATE);
    ck_assert_int_eq(mtft_metrics_add_labels(m, CP, CG, 4), 0);
    ck_assert_int_eq(mtft_metrics_add_labels(m, CP + 4, CG + 4, 2), 0);
    const int32_t bad[1] = {3};
    ck_assert_int_eq(mtft_metrics_add_labels(m, bad, bad, 1), MTFT_ERANGE); /* adds nothing */
    ck_assert_int_eq(mtft_metrics_add_values(m, NULL, NULL, 0), MTFT_ESTATE);  /* wrong kind */
    ck_assert_int_eq(mtft_metrics_n(m), 6);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_count(m), 3);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_ACCURACY, &v, &def), 0);
    ck_assert_double_eq_tol(v, C_ACC, TOL);
    ck_assert_int_eq(def, 1);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_MACRO_F1, &v, &def), 0);
    ck_assert_double_eq_tol(v, C_F1, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_MCC, &v, &def), 0);
    ck_assert_double_eq_tol(v, C_MCC, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_PEARSON, &v, &def), MTFT_ENOTFOUND);
    /* after reset: a constant prediction gives an undefined MCC */
    mtft_metrics_reset(m);
    ck_assert_int_eq(mtft_metrics_n(m), 0);
    const int32_t g[3] = {0, 1, 2}, p[3] = {1, 1, 1};
    ck_assert_int_eq(mtft_metrics_add_labels(m, p, g, 3), 0);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_MCC, &v, &def), 0);
    ck_assert_double_eq(v, 0.0);
    ck_assert_int_eq(def, 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_ACCURACY, &v, NULL), 0);
    ck_assert_double_eq_tol(v, 1.0 / 3.0, TOL);
    mtft_metrics_free(m);
    mtft_metrics_free(NULL);
}
END_TEST

/* pred = [1,2,3,4,5], gold = [2,4,5,4,5].
 * Pearson: dx = [-2,-1,0,1,2], dy = [-2,0,1,0,1]: sxy 6, sxx 10, syy 6 ->
 * 6/sqrt(60). Spearman: gold ranks with ties averaged = [1,2.5,4.5,2.5,4.5]
 * (mean 3): sxy = 4+0.5+0-0.5+3 = 7, syy = 9 -> 7/sqrt(90).
 * RMSE: diffs [-1,-2,-2,0,0] -> sqrt(9/5); MAE = 5/5 = 1. */
static const float RP[5] = {1, 2, 3, 4, 5}, RG[5] = {2, 4, 5, 4, 5};

START_TEST(test_metrics_regression) {
    double v;
    ck_assert_int_eq(mtft_metric_pearson(RP, RG, 5, &v), 0);
    ck_assert_double_eq_tol(v, 6.0 / sqrt(60.0), TOL);
    ck_assert_int_eq(mtft_metric_spearman(RP, RG, 5, &v), 0);
    ck_assert_double_eq_tol(v, 7.0 / sqrt(90.0), TOL);
    ck_assert_int_eq(mtft_metric_rmse(RP, RG, 5, &v), 0);
    ck_assert_double_eq_tol(v, sqrt(9.0 / 5.0), TOL);
    ck_assert_int_eq(mtft_metric_mae(RP, RG, 5, &v), 0);
    ck_assert_double_eq_tol(v, 1.0, TOL);
    /* Spearman is rank-based: a monotone transform of pred changes nothing */
    const float cube[5] = {1, 8, 27, 64, 125};
    ck_assert_int_eq(mtft_metric_spearman(cube, RG, 5, &v), 0);
    ck_assert_double_eq_tol(v, 7.0 / sqrt(90.0), TOL);
    /* anti-correlated */
    const float rev[5] = {5, 4, 3, 2, 1};
    ck_assert_int_eq(mtft_metric_pearson(rev, RP, 5, &v), 0);
    ck_assert_double_eq_tol(v, -1.0, TOL);
    /* constant prediction: undefined -> NaN, still MTFT_OK (scipy) */
    const float cst[5] = {3, 3, 3, 3, 3};
    ck_assert_int_eq(mtft_metric_pearson(cst, RG, 5, &v), 0);
    ck_assert(isnan(v));
    ck_assert_int_eq(mtft_metric_spearman(cst, RG, 5, &v), 0);
    ck_assert(isnan(v));
    ck_assert_int_eq(mtft_metric_pearson(RP, RG, 1, &v), 0); /* n < 2 */
    ck_assert(isnan(v));
    /* errors */
    ck_assert_int_eq(mtft_metric_rmse(RP, RG, 0, &v), MTFT_EINVAL);
    const float bad[2] = {1.0f, NAN};
    ck_assert_int_eq(mtft_metric_mae(bad, RP, 2, &v), MTFT_ENUMERIC);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "index 1"));
}
END_TEST

START_TEST(test_metrics_regression_stream) {
    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_REGRESSION;
    mtft_metrics *m = NULL;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), 0);
    ck_assert_int_eq(mtft_metrics_add_values(m, RP, RG, 2), 0);
    ck_assert_int_eq(mtft_metrics_add_values(m, RP + 2, RG + 2, 3), 0);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_count(m), 4);
    double v;
    int def;
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_PEARSON, &v, &def), 0);
    ck_assert_double_eq_tol(v, 6.0 / sqrt(60.0), TOL);
    ck_assert_int_eq(def, 1);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_SPEARMAN, &v, &def), 0);
    ck_assert_double_eq_tol(v, 7.0 / sqrt(90.0), TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_RMSE, &v, &def), 0);
    ck_assert_double_eq_tol(v, sqrt(1.8), TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_MAE, &v, &def), 0);
    ck_assert_double_eq_tol(v, 1.0, TOL);
    mtft_metrics_reset(m);
    const float cst[3] = {2, 2, 2};
    ck_assert_int_eq(mtft_metrics_add_values(m, cst, RG, 3), 0);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_PEARSON, &v, &def), 0);
    ck_assert(isnan(v));
    ck_assert_int_eq(def, 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_SPEARMAN, &v, &def), 0);
    ck_assert_int_eq(def, 0);
    mtft_metrics_free(m);
}
END_TEST

/* Tags 0 O, 1 B-PER, 2 I-PER, 3 B-LOC, 4 I-LOC; two sequences of 6.
 *   seq 1 gold [B-PER I-PER O B-LOC ign O], pred [B-PER I-PER O B-LOC I-LOC I-LOC]
 *   seq 2 gold [O B-LOC I-LOC O O O],       pred [O I-LOC I-LOC O B-PER O]
 * After dropping the ignored position, seq 1 gold spans PER(0,1) LOC(3,3),
 * pred spans PER(0,1) LOC(3,4); seq 2 gold LOC(1,2), pred LOC(1,2) (I after
 * O opens a chunk, seqeval default mode) and PER(4,4). tp 2, pred 4, gold 3:
 * P 1/2, R 2/3, F1 = 4/7.
 * Token accuracy: 4 of 5 and 4 of 6 -> 8/11.
 * Per-tag (O excluded): B-PER tp1 fp1 -> 2/3; I-PER 1; B-LOC tp1 fn1 -> 2/3;
 * I-LOC tp1 fp2 -> 1/2; macro = (2/3+1+2/3+1/2)/4; micro TP 4 FP 3 FN 1 -> 8/12. */
static const char *const TAGS[5] = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"};
static const int32_t TG[12] = {1, 2, 0, 3, -100, 0, 0, 3, 4, 0, 0, 0};
static const int32_t TP[12] = {1, 2, 0, 3, 4, 4, 0, 4, 4, 0, 1, 0};

START_TEST(test_metrics_tagging) {
    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_TAGGING;
    o.n_classes = 5;
    o.tag_names = TAGS;
    mtft_metrics *m = NULL;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), 0);
    ck_assert_int_eq(mtft_metrics_add_tags(m, TP, TG, 1, 6), 0);
    ck_assert_int_eq(mtft_metrics_add_tags(m, TP + 6, TG + 6, 1, 6), 0);
    ck_assert_int_eq(mtft_metrics_n(m), 11);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_count(m), 4);
    double v;
    int def;
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_TOKEN_ACCURACY, &v, &def), 0);
    ck_assert_double_eq_tol(v, 8.0 / 11.0, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_TAG_MICRO_F1, &v, &def), 0);
    ck_assert_double_eq_tol(v, 8.0 / 12.0, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_TAG_MACRO_F1, &v, &def), 0);
    ck_assert_double_eq_tol(v, (2.0 / 3 + 1 + 2.0 / 3 + 0.5) / 4, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_SPAN_F1, &v, &def), 0);
    ck_assert_double_eq_tol(v, 4.0 / 7.0, TOL);
    ck_assert_int_eq(def, 1);
    mtft_metrics_free(m);
    /* the same through the one-shot functions, both sequences in one call */
    ck_assert_int_eq(mtft_metric_span_f1(TP, TG, 2, 6, TAGS, 5, -100, &v), 0);
    ck_assert_double_eq_tol(v, 4.0 / 7.0, TOL);
    ck_assert_int_eq(mtft_metric_token_accuracy(TP, TG, 12, -100, &v), 0);
    ck_assert_double_eq_tol(v, 8.0 / 11.0, TOL);
}
END_TEST

START_TEST(test_metrics_spans_seqeval_rules) {
    double v;
    /* Spans never cross sequences: gold [O B-PER] [I-PER O] is two PER
     * spans; pred [O B-PER] [O O] finds one: P 1, R 1/2 -> F1 2/3 (a
     * crossing span would give 0). */
    const int32_t g1[4] = {0, 1, 2, 0}, p1[4] = {0, 1, 0, 0};
    ck_assert_int_eq(mtft_metric_span_f1(p1, g1, 2, 2, TAGS, 5, -100, &v), 0);
    ck_assert_double_eq_tol(v, 2.0 / 3.0, TOL);
    /* A type change splits: [B-PER I-LOC] is PER(0,0) + LOC(1,1); gold
     * [B-PER B-LOC] has the same two spans -> 1. */
    const int32_t g2[2] = {1, 3}, p2[2] = {1, 4};
    ck_assert_int_eq(mtft_metric_span_f1(p2, g2, 1, 2, TAGS, 5, -100, &v), 0);
    ck_assert_double_eq_tol(v, 1.0, TOL);
    /* B then B of the same type: two spans; gold one span (0,1): tp 0 -> 0 */
    const int32_t g3[2] = {1, 2}, p3[2] = {1, 1};
    ck_assert_int_eq(mtft_metric_span_f1(p3, g3, 1, 2, TAGS, 5, -100, &v), 0);
    ck_assert_double_eq(v, 0.0);
    /* IOBES: S-X and B-X E-X */
    const char *const iobes[4] = {"O", "S-X", "B-X", "E-X"};
    const int32_t g4[4] = {1, 0, 2, 3}, p4[4] = {1, 0, 2, 0};
    /* gold X(0,0) X(2,3); pred X(0,0) X(2,2): tp 1 of 2 and 2 -> 1/2 */
    ck_assert_int_eq(mtft_metric_span_f1(p4, g4, 1, 4, iobes, 4, -100, &v), 0);
    ck_assert_double_eq_tol(v, 0.5, TOL);
    /* all O: no spans -> 0 */
    const int32_t z[3] = {0, 0, 0};
    ck_assert_int_eq(mtft_metric_span_f1(z, z, 1, 3, TAGS, 5, -100, &v), 0);
    ck_assert_double_eq(v, 0.0);
    /* not BIO-shaped */
    const char *const pos[3] = {"NOUN", "VERB", "ADJ"};
    ck_assert_int_eq(mtft_metric_span_f1(z, z, 1, 3, pos, 3, -100, &v), MTFT_EUNSUPPORTED);
    /* all ignored -> empty */
    const int32_t ign[2] = {-100, -100};
    ck_assert_int_eq(mtft_metric_span_f1(z, ign, 1, 2, TAGS, 5, -100, &v), MTFT_EINVAL);
    ck_assert_int_eq(mtft_metric_token_accuracy(z, ign, 2, -100, &v), MTFT_EINVAL);
    /* tag out of range names sequence and position */
    const int32_t badg[3] = {0, 7, 0};
    ck_assert_int_eq(mtft_metric_span_f1(z, badg, 1, 3, TAGS, 5, -100, &v), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "position 1"));
}
END_TEST

START_TEST(test_metrics_tagging_plain_tags) {
    /* POS-like tags: token-level F1 over all tags, no span_f1 */
    const char *const pos[3] = {"NOUN", "VERB", "ADJ"};
    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_TAGGING;
    o.n_classes = 3;
    o.tag_names = pos;
    mtft_metrics *m = NULL;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), 0);
    /* gold [0 1 2 0], pred [0 1 1 0]: tags 0: tp2 -> 1; 1: tp1 fp1 -> 2/3;
     * 2: fn1 -> 0; macro 5/9; micro TP 3 FP 1 FN 1 -> 6/8 (= accuracy 3/4) */
    const int32_t g[4] = {0, 1, 2, 0}, p[4] = {0, 1, 1, 0};
    ck_assert_int_eq(mtft_metrics_add_tags(m, p, g, 2, 2), 0);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_count(m), 3);
    double v;
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_TAG_MACRO_F1, &v, NULL), 0);
    ck_assert_double_eq_tol(v, 5.0 / 9.0, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_TAG_MICRO_F1, &v, NULL), 0);
    ck_assert_double_eq_tol(v, 0.75, TOL);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_SPAN_F1, &v, NULL), MTFT_ENOTFOUND);
    mtft_metrics_free(m);
}
END_TEST

/* chrF by hand (sacrebleu 2.x, effective order, beta 2, x100):
 *  ("ab","abc"): n1 hyp 2 ref 3 match 2; n2 hyp 1 ref 2 match 1; n3 hyp 0
 *    ref 1 (not effective). P = (1+1)/2 = 1, R = (2/3+1/2)/2 = 7/12,
 *    F = 5*(7/12)/(4+7/12) = 35/55 = 7/11.
 *  + ("x","y"): n1 adds hyp 1 ref 1 match 0 -> n1 3/4/2, n2 1/2/1:
 *    P = (2/3+1)/2 = 5/6, R = (1/2+1/2)/2 = 1/2, F = (25/12)/(23/6) = 25/46.
 *  ("aaa","aa"): n1 3/2/2, n2 2/1/1, n3 ref has none -> P = (2/3+1/2)/2 =
 *    7/12, R = 1, F = (35/12)/(40/12) = 7/8.
 *  ("éa","ea") counts code points: n1 2/2/1, n2 1/1/0: P = R = 1/4 -> F 1/4.
 *  Whitespace is removed: ("a b","ab") -> 100. */
START_TEST(test_metrics_chrf) {
    double v;
    const char *h1[2] = {"ab", "x"}, *r1[2] = {"abc", "y"};
    ck_assert_int_eq(mtft_metric_chrf(h1, r1, 1, &v), 0);
    ck_assert_double_eq_tol(v, 700.0 / 11.0, 1e-9);
    ck_assert_int_eq(mtft_metric_chrf(h1, r1, 2, &v), 0);
    ck_assert_double_eq_tol(v, 2500.0 / 46.0, 1e-9);
    const char *h2[1] = {"aaa"}, *r2[1] = {"aa"};
    ck_assert_int_eq(mtft_metric_chrf(h2, r2, 1, &v), 0);
    ck_assert_double_eq_tol(v, 87.5, 1e-9);
    /* corpus sums: ("aaa","aa") + ("abc","abc"). Without the rule that drops
     * hypothesis n-grams of an order the reference lacks, n3 would be 2/1/1.
     * With it: n1 6/5/5, n2 4/3/3, n3 1/1/1 -> P = (5/6+3/4+1)/3 = 31/36,
     * R = 1, F = (155/36)/(160/36) = 0.96875. */
    const char *h7[2] = {"aaa", "abc"}, *r7[2] = {"aa", "abc"};
    ck_assert_int_eq(mtft_metric_chrf(h7, r7, 2, &v), 0);
    ck_assert_double_eq_tol(v, 96.875, 1e-9);
    const char *h8[1] = {"a"}, *r8[1] = {""};
    ck_assert_int_eq(mtft_metric_chrf(h8, r8, 1, &v), 0);
    ck_assert_double_eq(v, 0.0);
    const char *h3[1] = {"\xc3\xa9" "a"}, *r3[1] = {"ea"};
    ck_assert_int_eq(mtft_metric_chrf(h3, r3, 1, &v), 0);
    ck_assert_double_eq_tol(v, 25.0, 1e-9);
    const char *h4[1] = {" a \t b\n"}, *r4[1] = {"ab"};
    ck_assert_int_eq(mtft_metric_chrf(h4, r4, 1, &v), 0);
    ck_assert_double_eq_tol(v, 100.0, 1e-9);
    const char *h5[1] = {""}, *r5[1] = {"abc"};
    ck_assert_int_eq(mtft_metric_chrf(h5, r5, 1, &v), 0);
    ck_assert_double_eq(v, 0.0);
    /* The example of the HF `chrf` metric card (sacrebleu defaults):
     * 61.576379378113785. */
    const char *h6[1] = {"The relationship between Obama and Netanyahu is not exactly friendly."};
    const char *r6[1] = {"The ties between Obama and Netanyahu are not particularly friendly."};
    ck_assert_int_eq(mtft_metric_chrf(h6, r6, 1, &v), 0);
    ck_assert_double_eq_tol(v, 61.576379378113785, 1e-9);
    /* errors */
    const char *bad[2] = {"ok", "a\xff"}, *ref[2] = {"ok", "a"};
    ck_assert_int_eq(mtft_metric_chrf(bad, ref, 2, &v), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "pair 1"));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "byte 1"));
    ck_assert_int_eq(mtft_metric_chrf(h1, r1, 0, &v), MTFT_EINVAL);
}
END_TEST

START_TEST(test_metrics_generation) {
    const char *hyp[3] = {"Paris", "the  cat ", "x"}, *ref[3] = {"Paris", "The cat", "y"};
    double v;
    ck_assert_int_eq(mtft_metric_exact_match(hyp, ref, 3, 0, &v), 0);
    ck_assert_double_eq_tol(v, 1.0 / 3.0, TOL);
    ck_assert_int_eq(mtft_metric_exact_match(hyp, ref, 3, 1, &v), 0);
    ck_assert_double_eq_tol(v, 2.0 / 3.0, TOL);
    const char *a[1] = {" a"}, *b[1] = {"a b"};
    ck_assert_int_eq(mtft_metric_exact_match(a, b, 1, 1, &v), 0);
    ck_assert_double_eq(v, 0.0);
    ck_assert_int_eq(mtft_metric_exact_match(hyp, ref, 0, 0, &v), MTFT_EINVAL);

    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_GENERATION;
    o.normalize_text = 1;
    mtft_metrics *m = NULL;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), 0);
    const char *h1[2] = {"ab", "x"}, *r1[2] = {"abc", "y"};
    ck_assert_int_eq(mtft_metrics_add_text(m, h1, r1, 1), 0);
    ck_assert_int_eq(mtft_metrics_add_text(m, h1 + 1, r1 + 1, 1), 0);
    ck_assert_int_eq(mtft_metrics_add_text(m, hyp + 1, ref + 1, 1), 0); /* normalised match */
    const char *bad[1] = {"\xc3"};
    ck_assert_int_eq(mtft_metrics_add_text(m, bad, bad, 1), MTFT_EFORMAT); /* adds nothing */
    ck_assert_int_eq(mtft_metrics_n(m), 3);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_EXACT_MATCH, &v, NULL), 0);
    ck_assert_double_eq_tol(v, 1.0 / 3.0, TOL);
    /* corpus chrF = summed statistics of the three pairs = one-shot on them */
    const char *hh[3] = {"ab", "x", "the  cat "}, *rr[3] = {"abc", "y", "The cat"};
    double want;
    ck_assert_int_eq(mtft_metric_chrf(hh, rr, 3, &want), 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_CHRF, &v, NULL), 0);
    ck_assert_double_eq_tol(v, want, 1e-12);
    ck_assert(fabs(v - 2500.0 / 46.0) > 1e-3); /* the third pair changed it */
    mtft_metrics_free(m);
}
END_TEST

START_TEST(test_metrics_perplexity_and_delta_m) {
    double v;
    const float nll[3] = {1, 2, 3};
    ck_assert_int_eq(mtft_metric_perplexity(nll, 3, &v), 0);
    ck_assert_double_eq_tol(v, exp(2.0), 1e-12);
    ck_assert_int_eq(mtft_metric_perplexity(nll, 0, &v), MTFT_EINVAL);

    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_LM;
    mtft_metrics *m = NULL;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), 0);
    ck_assert_int_eq(mtft_metrics_add_nll(m, 3.0, 2), 0);
    ck_assert_int_eq(mtft_metrics_add_nll(m, 1.0, 2), 0);
    ck_assert_int_eq(mtft_metrics_add_nll(m, INFINITY, 1), MTFT_ENUMERIC);
    ck_assert_int_eq(mtft_metrics_compute(m), 0);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_PERPLEXITY, &v, NULL), 0);
    ck_assert_double_eq_tol(v, exp(1.0), 1e-12);
    ck_assert_int_eq(mtft_metrics_value(m, MTFT_METRIC_NLL, &v, NULL), 0);
    ck_assert_double_eq_tol(v, 1.0, 1e-12);
    mtft_metrics_free(m);

    /* accuracy 0.80 vs 0.75 (+0.05/0.75), RMSE 0.5 vs 0.6 (lower is better:
     * -(-0.1/0.6)) -> (1/15 + 1/6) / 2 = 7/60 */
    const double mtl[2] = {0.80, 0.5}, single[2] = {0.75, 0.6};
    const int lower[2] = {0, 1};
    ck_assert_int_eq(mtft_delta_m(mtl, single, lower, 2, &v), 0);
    ck_assert_double_eq_tol(v, 7.0 / 60.0, 1e-12);
    const int higher[2] = {0, 0};
    ck_assert_int_eq(mtft_delta_m(mtl, single, higher, 2, &v), 0);
    ck_assert_double_eq_tol(v, (1.0 / 15.0 - 1.0 / 6.0) / 2.0, 1e-12);
    const double zero[2] = {0.75, 0.0};
    ck_assert_int_eq(mtft_delta_m(mtl, zero, lower, 2, &v), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "baseline 1"));
    ck_assert_int_eq(mtft_delta_m(mtl, single, lower, 0, &v), MTFT_EINVAL);
}
END_TEST

START_TEST(test_metrics_names_and_options) {
    for (int i = 0; i < MTFT_METRIC_COUNT_; i++) {
        mtft_metric id;
        const char *name = mtft_metric_name((mtft_metric)i);
        ck_assert_ptr_nonnull(name);
        ck_assert_int_eq(mtft_metric_from_name(name, &id), 0);
        ck_assert_int_eq((int)id, i);
    }
    mtft_metric id;
    ck_assert_int_eq(mtft_metric_from_name("bleu", &id), MTFT_ENOTFOUND);
    ck_assert_ptr_null(mtft_metric_name(MTFT_METRIC_COUNT_));
    ck_assert_int_eq(mtft_metric_lower_is_better(MTFT_METRIC_RMSE), 1);
    ck_assert_int_eq(mtft_metric_lower_is_better(MTFT_METRIC_PERPLEXITY), 1);
    ck_assert_int_eq(mtft_metric_lower_is_better(MTFT_METRIC_ACCURACY), 0);
    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    mtft_metrics *m = (mtft_metrics *)1;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), MTFT_EINVAL); /* n_classes 0 */
    ck_assert_ptr_null(m);
    o.kind = 9;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), MTFT_EINVAL);
    o = (mtft_metrics_options)MTFT_METRICS_OPTIONS_INIT;
    o.version = 99;
    ck_assert_int_eq(mtft_metrics_new(&m, &o), MTFT_EINVAL);
}
END_TEST

static Suite *metrics_suite(void) {
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_metrics_classification_oneshot);
    tcase_add_test(tc, test_metrics_classification_errors);
    tcase_add_test(tc, test_metrics_classification_stream);
    tcase_add_test(tc, test_metrics_regression);
    tcase_add_test(tc, test_metrics_regression_stream);
    tcase_add_test(tc, test_metrics_tagging);
    tcase_add_test(tc, test_metrics_spans_seqeval_rules);
    tcase_add_test(tc, test_metrics_tagging_plain_tags);
    tcase_add_test(tc, test_metrics_chrf);
    tcase_add_test(tc, test_metrics_generation);
    tcase_add_test(tc, test_metrics_perplexity_and_delta_m);
    tcase_add_test(tc, test_metrics_names_and_options);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(metrics_suite()); }
