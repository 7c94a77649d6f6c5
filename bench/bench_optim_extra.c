/* Optimizer extras benchmark: global-norm clipping, SAM perturb + restore and
 * one SGD momentum step on a parameter group of N floats (default 16M, about
 * a 124M-parameter model's LoRA-free trunk divided by 8), and metric
 * accumulation (chrF on 1000 sentence pairs, Spearman on 1M values).
 *
 *   ./build/bench_optim_extra [N] [reps]      (defaults 16777216 5)
 *
 * Prints the median time of each. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/metrics.h"
#include "mtft/mtft.h"

#define CHECK(x)                                                                        \
    do {                                                                                \
        if ((x) < 0) {                                                                  \
            fprintf(stderr, "%s failed: %s\n", #x, mtft_error_last()->message);         \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    int64_t N = argc > 1 ? atoll(argv[1]) : (int64_t)1 << 24;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (N < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: %s [N] [reps]\n", argv[0]);
        return 2;
    }
    mtft_param_group *pg = NULL;
    CHECK(mtft_param_group_new(&pg, "bench"));
    int64_t shape[2] = {N / 1024 > 0 ? N / 1024 : 1, 1024};
    mtft_tensor *t = mtft_param_group_add(pg, "w", 2, shape);
    if (!t) return 1;
    CHECK(mtft_param_group_alloc(pg));
    int64_t n = mtft_tensor_numel(t);
    float *w = mtft_tensor_data(t), *g = mtft_tensor_grad(t);
    uint64_t x = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        w[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
        g[i] = w[i] * 1e-3f;
    }
    mtft_param_group *gs[1] = {pg};
    mtft_sam *sam = NULL;
    mtft_sgd *sgd = NULL;
    mtft_sgd_options so = MTFT_SGD_OPTIONS_INIT;
    so.momentum = 0.9f;
    CHECK(mtft_sam_new(&sam, NULL));
    CHECK(mtft_sgd_new(&sgd, &so));
    CHECK(mtft_sgd_add_group(sgd, pg, NULL));
    double tc[100], ts[100], tg[100], norm = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        CHECK(mtft_clip_grad_norm(gs, 1, 1e9f, &norm));
        double t1 = bench_now();
        CHECK(mtft_sam_perturb(sam, gs, 1, 0.05f, NULL));
        CHECK(mtft_sam_restore(sam));
        double t2 = bench_now();
        CHECK(mtft_sgd_step(sgd));
        double t3 = bench_now();
        tc[r] = t1 - t0;
        ts[r] = t2 - t1;
        tg[r] = t3 - t2;
    }
    printf("threads %d, %lld floats\n", mtft_get_num_threads(), (long long)n);
    printf("clip_grad_norm        %8.2f ms  (norm %.4f)\n", 1e3 * bench_median(tc, reps), norm);
    printf("sam perturb+restore   %8.2f ms\n", 1e3 * bench_median(ts, reps));
    printf("sgd momentum step     %8.2f ms\n", 1e3 * bench_median(tg, reps));
    mtft_sgd_free(sgd);
    mtft_sam_free(sam);
    mtft_param_group_free(pg);

    /* metrics */
    enum { P = 1000, V = 1 << 20 };
    static char hb[P][96], rb[P][96];
    const char *hyp[P], *ref[P];
    for (int i = 0; i < P; i++) {
        snprintf(hb[i], sizeof hb[i], "the quick brown fox %d jumps over the lazy dog number %d", i, i * 7);
        snprintf(rb[i], sizeof rb[i], "a quick brown fox %d jumped over the lazy dog no. %d", i, i * 3);
        hyp[i] = hb[i];
        ref[i] = rb[i];
    }
    double v, tm[100];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        CHECK(mtft_metric_chrf(hyp, ref, P, &v));
        tm[r] = bench_now() - t0;
    }
    printf("chrf, %d pairs        %8.2f ms  (chrF %.3f)\n", P, 1e3 * bench_median(tm, reps), v);
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
    if (!a || !b) return 1;
    for (int i = 0; i < V; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        a[i] = (float)(x % 1000);
        b[i] = a[i] + (float)(x % 17);
    }
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        CHECK(mtft_metric_spearman(a, b, V, &v));
        tm[r] = bench_now() - t0;
    }
    printf("spearman, %d values %8.2f ms  (rho %.4f)\n", V, 1e3 * bench_median(tm, reps), v);
    free(a);
    free(b);
    return 0;
}
