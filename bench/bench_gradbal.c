/* Gradient-level balancers: time of the Gram pass and of each method on K
 * per-task gradients of P floats, against the memory traffic they need.
 *   bench_gradbal [P] [reps]      (default P = 2000000, reps = 5)
 * Prints, per K: Gram time and the effective read bandwidth (K P floats),
 * and each method's total time (Gram + small math + the combine pass). */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "balance/gradbal.h"
#include "mtft/mtft.h"

int main(int argc, char **argv) {
    int64_t P = argc > 1 ? atoll(argv[1]) : 2000000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (P < 1 || reps < 1) {
        fprintf(stderr, "usage: %s [P >= 1] [reps >= 1]\n", argv[0]);
        return 2;
    }
    printf("bench_gradbal: P = %lld, threads = %d, best of %d\n", (long long)P, mtft_get_num_threads(), reps);
    const int Ks[] = {2, 4, 8, 16};
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
        int K = Ks[ki];
        float *buf = malloc(sizeof(float) * (size_t)K * (size_t)P), *out = malloc(sizeof(float) * (size_t)P);
        if (!buf || !out) {
            fprintf(stderr, "out of memory for K = %d\n", K);
            free(buf);
            free(out);
            return 1;
        }
        const float *g[16];
        mtft_rng r;
        mtft_rng_seed(&r, 1);
        for (int k = 0; k < K; k++) {
            g[k] = buf + (size_t)k * P;
            for (int64_t p = 0; p < P; p++) buf[(size_t)k * P + p] = (float)mtft_rng_normal(&r) + 0.3f;
        }
        double G[256], best = 1e30;
        for (int i = 0; i < reps; i++) {
            double t0 = bench_now();
            mtft__gram(K, P, g, G);
            double t = bench_now() - t0;
            if (t < best) best = t;
        }
        printf("K=%2d gram        %8.2f ms  %6.2f GB/s read\n", K, best * 1e3, (double)K * P * 4 / best / 1e9);
        const char *names[] = {"pcgrad", "cagrad", "imtl_g", "mgda", "aligned_mtl", "nash_mtl", "gradnorm"};
        for (int m = 0; m < 7; m++) {
            double bm = 1e30;
            for (int i = 0; i < reps; i++) {
                float w[16], alpha[16] = {0}, losses[16], init[16], gw[16];
                for (int k = 0; k < K; k++) {
                    losses[k] = 1.0f;
                    init[k] = 2.0f;
                    gw[k] = 1.0f;
                }
                double t0 = bench_now();
                int rc;
                switch (m) {
                case 0: rc = mtft__pcgrad(K, P, g, &r, out, w); break;
                case 1: rc = mtft__cagrad(K, P, g, 0.5f, 1, out, w); break;
                case 2: rc = mtft__imtl_g(K, P, g, out, w); break;
                case 3: rc = mtft__mgda(K, P, g, NULL, 1, out, w); break;
                case 4: rc = mtft__aligned_mtl(K, P, g, NULL, out, w); break;
                case 5: rc = mtft__nash_mtl(K, P, g, alpha, 20, out, w); break;
                default: rc = mtft__gradnorm(K, P, g, losses, init, 1.5f, 0.025f, gw, out); break;
                }
                double t = bench_now() - t0;
                if (rc != MTFT_OK) printf("  %s: %s\n", names[m], mtft_error_last()->message);
                if (t < bm) bm = t;
            }
            printf("K=%2d %-12s %8.2f ms\n", K, names[m], bm * 1e3);
        }
        free(buf);
        free(out);
    }
    return 0;
}
