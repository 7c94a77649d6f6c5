/* ctest-labels: unit */
/* The vectorisable exp/tanh/sigmoid used by the kernels, against libm in
 * double over the whole float range that matters. */
#include <float.h>
#include <math.h>

#include "mtft_test.h"
#include "tensor/fastmath.h"

START_TEST(test_fastmath_expf_ulp) {
    double worst = 0;
    for (double x = -87.0; x <= 88.5; x += 3e-4) {
        float f = (float)x;
        double ref = exp((double)f);
        double ulp = fabs((double)mtft__expf(f) - ref) / (ref * FLT_EPSILON);
        if (ulp > worst) worst = ulp;
    }
    /* tolerance: 3 ulp (measured 2.1) */
    ck_assert_msg(worst < 3.0, "expf worst error %.2f ulp", worst);
    ck_assert_float_eq(mtft__expf(0.0f), 1.0f);
    ck_assert_float_eq(mtft__expf(-200.0f), 0.0f);
    ck_assert_float_eq(mtft__expf(-INFINITY), 0.0f);
    ck_assert(isfinite(mtft__expf(100.0f)));
    ck_assert(isnan(mtft__expf(NAN)));
}
END_TEST

START_TEST(test_fastmath_tanh_sigmoid) {
    double wt = 0, ws = 0;
    for (double x = -30.0; x <= 30.0; x += 1e-4) {
        float f = (float)x;
        double t = fabs((double)mtft__tanhf(f) - tanh((double)f));
        double s = fabs((double)mtft__sigmoidf(f) - 1.0 / (1.0 + exp(-(double)f)));
        if (t > wt) wt = t;
        if (s > ws) ws = s;
    }
    /* tolerance: 3e-7 absolute (measured 1.4e-7 and 9e-8) */
    ck_assert_msg(wt < 3e-7, "tanh worst abs error %.3g", wt);
    ck_assert_msg(ws < 3e-7, "sigmoid worst abs error %.3g", ws);
    ck_assert_float_eq(mtft__tanhf(0.0f), 0.0f);
    ck_assert_float_eq(mtft__tanhf(50.0f), 1.0f);
    ck_assert_float_eq(mtft__tanhf(-50.0f), -1.0f);
    ck_assert_float_eq(mtft__sigmoidf(-200.0f), 0.0f);
    ck_assert_float_eq(mtft__sigmoidf(200.0f), 1.0f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fastmath");
    TCase *tc = tcase_create("unit");
    tcase_add_test(tc, test_fastmath_expf_ulp);
    tcase_add_test(tc, test_fastmath_tanh_sigmoid);
    suite_add_tcase(s, tc);
    return mtft_test_run(s);
}
