/* Row kernels at LM-head / activation shapes: cross-entropy over a GPT-2
 * vocabulary (N = 1024 rows, V = 50257), softmax over the same rows, and
 * dropout on [1024, 768]. Best of `reps` (the machine may be shared: best-of
 * is the stable figure), forward and backward separately.
 *
 *   ./build/bench_rows [reps]      (default 5; OMP_NUM_THREADS=1 for one thread)
 *
 * Prints a table and one JSON object per measurement. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mtft/mtft.h"

static void report(const char *name, double fwd, double bwd, int64_t elems) {
    printf("%-34s fwd %8.2f ms  bwd %8.2f ms  (%.2f ns/element fwd)\n", name, fwd * 1e3, bwd * 1e3,
           fwd / (double)elems * 1e9);
    printf("{\"name\":\"%s\",\"fwd_s\":%.6g,\"bwd_s\":%.6g,\"elements\":%lld}\n", name, fwd, bwd, (long long)elems);
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) return 2;
    const int64_t N = 1024, V = 50257, C = 768;
    float *x = malloc((size_t)(N * V) * sizeof(float));
    int32_t *t = malloc((size_t)N * sizeof(int32_t));
    if (!x || !t) return 1;
    mtft_rng r;
    mtft_rng_seed(&r, 1);
    for (int64_t i = 0; i < N * V; i++) x[i] = mtft_rng_uniform(&r) * 10.0f - 5.0f;
    for (int64_t i = 0; i < N; i++) t[i] = (int32_t)mtft_rng_below(&r, (uint64_t)V);
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = (size_t)1 << 30;
    mtft_graph *g = NULL;
    if (mtft_graph_new(&g, &o) < 0) return 1;
    printf("threads %d\n", mtft_get_num_threads());
    const int64_t sh[2] = {N, V}, sd[2] = {N, C};
    for (int op = 0; op < 3; op++) {
        double bf = 1e30, bb = 1e30;
        for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms the arena up */
            mtft_graph_reset(g);
            mtft_tensor *tx = mtft_from_data(g, 2, op == 2 ? sd : sh, x);
            mtft_tensor_set_requires_grad(g, tx, 1);
            double t0 = bench_now();
            mtft_tensor *y = op == 0 ? mtft_cross_entropy(g, tx, t, -100, 0.1f)
                             : op == 1 ? mtft_softmax(g, tx)
                                       : mtft_dropout(g, tx, 0.1f);
            double t1 = bench_now();
            if (!y) {
                fprintf(stderr, "%s\n", mtft_error_last()->message);
                return 1;
            }
            if (mtft_graph_backward(g, y, op == 0 ? NULL : mtft_tensor_data(y)) < 0) return 1;
            double t2 = bench_now();
            if (rep && t1 - t0 < bf) bf = t1 - t0;
            if (rep && t2 - t1 < bb) bb = t2 - t1;
        }
        report(op == 0 ? "cross_entropy [1024, 50257] ls 0.1" : op == 1 ? "softmax [1024, 50257]" : "dropout 0.1 [1024, 768]",
               bf, bb, op == 2 ? N * C : N * V);
    }
    mtft_graph_free(g);
    free(x);
    free(t);
    return 0;
}
