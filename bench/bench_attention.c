/* Attention benchmark: mtft_attention (fused OpenMP loops, register tiles) against a
 * BLAS formulation of the same forward pass (per (b, h): S = scale Q K^T by
 * sgemm, masked softmax over rows with OpenMP, O = P V by sgemm; BLAS calls
 * outside any parallel region), on GPT-2-small-like shapes.
 *
 *   ./build/bench_attention [B] [T] [reps]     (defaults 4 256 5; H 12, D 64)
 *
 * Best of `reps` runs (on a shared machine the best run is the stable
 * figure); OMP_NUM_THREADS=1 for single-thread numbers.
 * Prints a table and one JSON object per measurement; restarts itself on the
 * fast OpenBLAS kernel when needed (mtft_blas_ensure_fast_kernel). */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/mtft.h"
#include "tensor/blas.h"

/* The BLAS formulation: q [B,H,T,D], k/v [B,H,T,D] (no GQA here), causal. */
static void blas_attention(const float *q, const float *k, const float *v, float *o, float *S, int B, int H, int T,
                           int D, int causal) {
    const float scale = 1.0f / sqrtf((float)D);
    for (int bh = 0; bh < B * H; bh++) {
        const float *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D;
        mtft__sgemm(0, 1, T, T, D, scale, qh, D, kh, D, 0.0f, S, T);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            float *s = S + (size_t)t * T;
            const int nk = causal ? t + 1 : T;
            float m = -INFINITY, z = 0.0f;
            for (int j = 0; j < nk; j++) m = s[j] > m ? s[j] : m;
            for (int j = 0; j < nk; j++) z += (s[j] = expf(s[j] - m));
            const float inv = 1.0f / z;
            for (int j = 0; j < nk; j++) s[j] *= inv;
            for (int j = nk; j < T; j++) s[j] = 0.0f;
        }
        mtft__sgemm(0, 0, T, D, T, 1.0f, S, T, vh, D, 0.0f, o + (size_t)bh * T * D, D);
    }
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const int B = argc > 1 ? atoi(argv[1]) : 4, T = argc > 2 ? atoi(argv[2]) : 256;
    const int reps = argc > 3 ? atoi(argv[3]) : 5, H = 12, D = 64;
    if (B < 1 || T < 1 || reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_attention [B] [T] [reps<=64]\n");
        return 2;
    }
    printf("OpenBLAS kernel %s, threads %d, B %d H %d T %d D %d\n", mtft_blas_corename(), mtft_get_num_threads(), B, H,
           T, D);
    const int64_t sh[4] = {B, H, T, D};
    const size_t n = (size_t)B * H * T * D;
    float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    float *ob = malloc(n * sizeof(float)), *S = malloc((size_t)T * T * sizeof(float));
    mtft_rng r;
    mtft_rng_seed(&r, 1);
    for (size_t i = 0; i < n; i++) {
        q[i] = mtft_rng_uniform(&r) * 2 - 1;
        k[i] = mtft_rng_uniform(&r) * 2 - 1;
        v[i] = mtft_rng_uniform(&r) * 2 - 1;
    }
    mtft_graph *g = NULL;
    if (mtft_graph_new(&g, NULL) < 0) return 1;
    for (int causal = 0; causal < 2; causal++) {
        /* useful FLOPs: QK^T and PV, halved by the causal mask */
        const double flops = 4.0 * B * H * (double)T * T * D * (causal ? 0.5 : 1.0);
        double tf[64], tb[64], tl[64];
        float maxdiff = 0.0f;
        for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
            mtft_graph_reset(g);
            mtft_tensor *tq = mtft_from_data(g, 4, sh, q), *tk = mtft_from_data(g, 4, sh, k);
            mtft_tensor *tv = mtft_from_data(g, 4, sh, v);
            mtft_tensor_set_requires_grad(g, tq, 1);
            mtft_tensor_set_requires_grad(g, tk, 1);
            mtft_tensor_set_requires_grad(g, tv, 1);
            double t0 = bench_now();
            mtft_tensor *o = mtft_attention(g, tq, tk, tv, causal, NULL, 0);
            double t1 = bench_now();
            if (!o) {
                fprintf(stderr, "attention: %s\n", mtft_error_last()->message);
                return 1;
            }
            mtft_graph_backward(g, o, mtft_tensor_data(o)); /* seed dO = O: any dense gradient */
            double t2 = bench_now();
            blas_attention(q, k, v, ob, S, B, H, T, D, causal);
            double t3 = bench_now();
            if (rep == 0) {
                const float *od = mtft_tensor_data(o);
                for (size_t i = 0; i < n; i++) maxdiff = fmaxf(maxdiff, fabsf(od[i] - ob[i]));
                continue;
            }
            tf[rep - 1] = t1 - t0, tb[rep - 1] = t2 - t1, tl[rep - 1] = t3 - t2;
        }
        const double f = bench_best(tf, reps), b = bench_best(tb, reps), l = bench_best(tl, reps);
        const char *mode = causal ? "causal" : "bidirectional";
        printf("%-14s fused loops fwd %8.2f ms %6.1f GFLOP/s | bwd %8.2f ms | BLAS fwd %8.2f ms %6.1f GFLOP/s | "
               "max |diff| %.2g\n",
               mode, f * 1e3, flops / f * 1e-9, b * 1e3, l * 1e3, flops / l * 1e-9, (double)maxdiff);
        printf("{\"name\":\"attention %s\",\"B\":%d,\"H\":%d,\"T\":%d,\"D\":%d,\"fused_fwd_s\":%.6g,"
               "\"fused_bwd_s\":%.6g,\"blas_fwd_s\":%.6g,\"max_abs_diff\":%.3g}\n",
               mode, B, H, T, D, f, b, l, (double)maxdiff);
    }
    mtft_graph_free(g);
    free(q), free(k), free(v), free(ob), free(S);
    return 0;
}
