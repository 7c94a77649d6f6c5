#include "mtft_test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void mtft_assert_close(const float *a, const float *b, int64_t n, float rtol, float atol, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i])))
            ck_abort_msg("%s: element %lld: got %.8g, expected %.8g (|diff| %.3g > atol %.1g + rtol %.1g*|expected|)",
                         what, (long long)i, (double)a[i], (double)b[i], d, (double)atol, (double)rtol);
    }
}

void mtft_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    mtft_rng r;
    mtft_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * mtft_rng_uniform(&r);
}

static int64_t numel(const mtft_gradcheck_input *in) {
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= in->shape[i];
    return n;
}

/* Forward only; returns L = sum(out .* R) in double. R is built on first use. */
static double eval_loss(mtft_graph *g, mtft_test_fn fn, void *ctx, mtft_gradcheck_input *in, int n_in,
                        float **R, int64_t *Rn, int with_grad, mtft_tensor **ts) {
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, with_grad);
    for (int i = 0; i < n_in; i++) {
        ts[i] = mtft_from_data(g, in[i].ndim, in[i].shape, in[i].data);
        ck_assert_msg(ts[i] != NULL, "gradcheck: input %d: %s", i, mtft_error_last()->message);
        if (with_grad && in[i].needs_grad) mtft_tensor_set_requires_grad(g, ts[i], 1);
    }
    mtft_tensor *out = fn(g, ts, ctx);
    ck_assert_msg(out != NULL, "gradcheck: forward failed: %s", mtft_error_last()->message);
    int64_t n = mtft_tensor_numel(out);
    if (!*R) {
        *R = malloc((size_t)n * sizeof(float));
        mtft_test_fill(*R, n, 12345, -1.0f, 1.0f);
        *Rn = n;
    }
    ck_assert_int_eq(n, *Rn);
    /* read through strides so a view output works too */
    int64_t shape[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    int nd = mtft_tensor_shape(out, shape);
    for (int i = 0; i < nd; i++) st[i] = mtft_tensor_stride(out, i);
    const float *d = mtft_tensor_data(out);
    double L = 0;
    int64_t k = 0;
    for (int64_t a = 0; a < (nd > 0 ? shape[0] : 1); a++)
        for (int64_t b = 0; b < (nd > 1 ? shape[1] : 1); b++)
            for (int64_t c = 0; c < (nd > 2 ? shape[2] : 1); c++)
                for (int64_t e = 0; e < (nd > 3 ? shape[3] : 1); e++)
                    L += (double)d[a * st[0] + b * st[1] + c * st[2] + e * st[3]] * (*R)[k++];
    if (with_grad) {
        int rc = mtft_graph_backward(g, out, *R);
        ck_assert_msg(rc == 0, "gradcheck: backward failed: %s", mtft_error_last()->message);
    }
    return L;
}

mtft_gradcheck_result mtft_gradcheck(const char *name, mtft_test_fn fn, void *ctx, mtft_gradcheck_input *in,
                                     int n_in, float eps, float atol, float rtol, int64_t max_elems) {
    mtft_gradcheck_result res;
    memset(&res, 0, sizeof res);
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = 1 << 20;
    ck_assert_int_eq(mtft_graph_new(&g, &o), 0);
    mtft_tensor *ts[8];
    float *R = NULL;
    int64_t Rn = 0;
    float *ana[8] = {0};
    eval_loss(g, fn, ctx, in, n_in, &R, &Rn, 1, ts);
    for (int i = 0; i < n_in; i++) {
        if (!in[i].needs_grad) continue;
        int64_t n = numel(&in[i]);
        ana[i] = calloc((size_t)n, sizeof(float));
        const float *gr = mtft_tensor_grad(ts[i]);
        if (gr) memcpy(ana[i], gr, (size_t)n * sizeof(float));
    }
    for (int i = 0; i < n_in; i++) {
        if (!in[i].needs_grad) continue;
        int64_t n = numel(&in[i]);
        int64_t step = (max_elems > 0 && n > max_elems) ? (n + max_elems - 1) / max_elems : 1;
        for (int64_t j = 0; j < n; j += step) {
            float orig = in[i].data[j];
            in[i].data[j] = orig + eps;
            double lp = eval_loss(g, fn, ctx, in, n_in, &R, &Rn, 0, ts);
            in[i].data[j] = orig - eps;
            double lm = eval_loss(g, fn, ctx, in, n_in, &R, &Rn, 0, ts);
            in[i].data[j] = orig;
            double num = (lp - lm) / (2.0 * (double)eps);
            double a = ana[i][j];
            double err = fabs(a - num);
            double rel = err / fmax(fabs(num), 1e-3);
            res.checked++;
            if (err > res.max_abs_err) {
                res.max_abs_err = err;
                res.max_rel_err = rel;
                res.worst_input = i;
                res.worst_index = j;
            }
            if (!(err <= atol + rtol * fabs(num))) {
                mtft_graph_free(g);
                free(R);
                ck_abort_msg("gradcheck %s: input %d element %lld: analytic %.7g vs numeric %.7g (|diff| %.3g > "
                             "atol %.1g + rtol %.1g*|numeric|)",
                             name, i, (long long)j, a, num, err, (double)atol, (double)rtol);
            }
        }
    }
    for (int i = 0; i < n_in; i++) free(ana[i]);
    free(R);
    mtft_graph_free(g);
    return res;
}

const char *mtft_test_path(char *buf, size_t n, const char *rel) {
#ifdef MTFT_SOURCE_DIR
    snprintf(buf, n, "%s/%s", MTFT_SOURCE_DIR, rel);
#else
    snprintf(buf, n, "%s", rel);
#endif
    return buf;
}

void mtft_test_rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        unlink(dir);
        return;
    }
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            mtft_test_rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

mtft_tokenizer *mtft_test_gpt2_tokenizer(void) {
    char e[512], v[512];
    mtft_tokenizer *tok = NULL;
    mtft_test_path(e, sizeof e, "data/tokenizer/gpt2/encoder.json");
    mtft_test_path(v, sizeof v, "data/tokenizer/gpt2/vocab.bpe");
    if (mtft_tokenizer_load_gpt2(&tok, e, v) != MTFT_OK) {
        fprintf(stderr, "cannot load the GPT-2 tokenizer: %s\n", mtft_error_last()->message);
        exit(1);
    }
    return tok;
}

int mtft_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
