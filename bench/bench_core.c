/* Foundation benchmark: which OpenBLAS kernel runs, sgemm GFLOP/s on the GEMM
 * shapes of a 768-wide transformer (1024 tokens), and the throughput of the
 * main non-GEMM ops. Prints a table and one JSON object per measurement.
 *
 *   ./build/bench_core [reps]       (median of `reps` runs, default 7)
 *
 * Run it as it is: it restarts itself on the fast OpenBLAS kernel when
 * OpenBLAS fell back to a generic one (mtft_blas_ensure_fast_kernel). */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/mtft.h"
#include "tensor/blas.h"

static float *rnd(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    mtft_rng r;
    mtft_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = mtft_rng_uniform(&r) * 2.0f - 1.0f;
    return x;
}

static int reps = 7;

/* C[M,N] = op(A) op(B) */
static void bench_gemm(const char *name, int ta, int tb, int M, int N, int K) {
    float *A = rnd((size_t)M * K, 1), *B = rnd((size_t)K * N, 2), *C = rnd((size_t)M * N, 3);
    int lda = ta ? M : K, ldb = tb ? K : N;
    double t[64];
    mtft__sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N); /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        mtft__sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        t[r] = bench_now() - t0;
    }
    double s = bench_median(t, reps), gf = 2.0 * M * N * K / s * 1e-9;
    printf("%-34s %8.3f ms %8.1f GFLOP/s\n", name, s * 1e3, gf);
    printf("{\"name\":\"sgemm %s\",\"M\":%d,\"N\":%d,\"K\":%d,\"trans_a\":%d,\"trans_b\":%d,\"median_s\":%.6g,"
           "\"gflops\":%.2f}\n",
           name, M, N, K, ta, tb, s, gf);
    free(A);
    free(B);
    free(C);
}

typedef mtft_tensor *(*op_fn)(mtft_graph *g, mtft_tensor *x, void *ctx);

/* Time forward (+ backward when bwd) of an op; bytes = bytes moved by one
 * forward (+ backward) pass, for GB/s. */
static void bench_op(const char *name, op_fn fn, void *ctx, int ndim, const int64_t *shape, int bwd,
                     double bytes_fwd, double bytes_bwd) {
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = (size_t)512 << 20;
    if (mtft_graph_new(&g, &o) < 0) {
        fprintf(stderr, "%s\n", mtft_error_last()->message);
        exit(1);
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *x0 = rnd((size_t)n, 5);
    double tf[64], tb[64];
    for (int r = -1; r < reps; r++) {
        mtft_graph_reset(g);
        mtft_tensor *x = mtft_from_data(g, ndim, shape, x0);
        if (bwd) mtft_tensor_set_requires_grad(g, x, 1);
        double t0 = bench_now();
        mtft_tensor *y = fn(g, x, ctx);
        double t1 = bench_now();
        if (!y) {
            fprintf(stderr, "%s: %s\n", name, mtft_error_last()->message);
            exit(1);
        }
        if (bwd) {
            int64_t ny = mtft_tensor_numel(y);
            float *seed = malloc((size_t)ny * sizeof(float));
            for (int64_t i = 0; i < ny; i++) seed[i] = 1e-3f;
            double t2 = bench_now();
            if (mtft_graph_backward(g, y, seed) < 0) {
                fprintf(stderr, "%s: %s\n", name, mtft_error_last()->message);
                exit(1);
            }
            double t3 = bench_now();
            free(seed);
            if (r >= 0) tb[r] = t3 - t2;
        }
        if (r >= 0) tf[r] = t1 - t0;
    }
    double sf = bench_median(tf, reps);
    printf("%-34s fwd %8.3f ms %7.1f GB/s", name, sf * 1e3, bytes_fwd / sf * 1e-9);
    double sb = 0;
    if (bwd) {
        sb = bench_median(tb, reps);
        printf("   bwd %8.3f ms %7.1f GB/s", sb * 1e3, bytes_bwd / sb * 1e-9);
    }
    printf("\n{\"name\":\"%s\",\"fwd_s\":%.6g,\"fwd_gbs\":%.2f,\"bwd_s\":%.6g,\"bwd_gbs\":%.2f}\n", name, sf,
           bytes_fwd / sf * 1e-9, sb, bwd ? bytes_bwd / sb * 1e-9 : 0.0);
    free(x0);
    mtft_graph_free(g);
}

static mtft_tensor *op_layernorm(mtft_graph *g, mtft_tensor *x, void *ctx) {
    (void)ctx;
    return mtft_layernorm(g, x, NULL, NULL, 1e-5f);
}
static mtft_tensor *op_gelu(mtft_graph *g, mtft_tensor *x, void *ctx) {
    (void)ctx;
    return mtft_gelu_tanh(g, x);
}
static mtft_tensor *op_softmax(mtft_graph *g, mtft_tensor *x, void *ctx) {
    (void)ctx;
    return mtft_softmax(g, x);
}
/* x: [B, H, T, 3*D] packed q|k|v along the last dim, sliced as views */
static mtft_tensor *op_attention(mtft_graph *g, mtft_tensor *x, void *ctx) {
    int64_t D = *(int64_t *)ctx;
    mtft_tensor *q = mtft_contiguous(g, mtft_slice(g, x, 3, 0, D));
    mtft_tensor *k = mtft_contiguous(g, mtft_slice(g, x, 3, D, D));
    mtft_tensor *v = mtft_contiguous(g, mtft_slice(g, x, 3, 2 * D, D));
    return mtft_attention(g, q, k, v, 1, NULL, 0.0f);
}
static mtft_tensor *op_xent(mtft_graph *g, mtft_tensor *x, void *ctx) {
    return mtft_cross_entropy(g, x, (const int32_t *)ctx, -100, 0.0f);
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    if (argc > 1) reps = atoi(argv[1]);
    if (reps < 1 || reps > 64) reps = 7;
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("mtft %s | OpenBLAS kernel: %s (%s threads, %d) | OPENBLAS_CORETYPE=%s | best for this CPU: %s\n",
           mtft_version_string(), mtft_blas_corename(), mtft_blas_threading(), mtft_get_num_threads(),
           ct ? ct : "(unset)", mtft_cpu_best_blas_coretype() ? mtft_cpu_best_blas_coretype() : "default");
    printf("{\"name\":\"blas\",\"kernel\":\"%s\",\"threading\":\"%s\",\"threads\":%d}\n", mtft_blas_corename(),
           mtft_blas_threading(), mtft_get_num_threads());

    const int N = 1024, C = 768, F = 3072;
    printf("-- sgemm, %d tokens, median of %d\n", N, reps);
    /* forward: y[N,out] = x[N,in] W^T[in,out], W stored [out,in] (nn.Linear) */
    bench_gemm("fwd 768->768   (NT)", 0, 1, N, C, C);
    bench_gemm("fwd 768->3072  (NT)", 0, 1, N, F, C);
    bench_gemm("fwd 3072->768  (NT)", 0, 1, N, C, F);
    /* backward dX[N,in] = dY[N,out] W[out,in] */
    bench_gemm("bwd dX 768<-3072 (NN)", 0, 0, N, C, F);
    bench_gemm("bwd dX 3072<-768 (NN)", 0, 0, N, F, C);
    /* backward dW[out,in] = dY^T[out,N] X[N,in] */
    bench_gemm("bwd dW 3072x768 (TN)", 1, 0, F, C, N);
    bench_gemm("bwd dW 768x3072 (TN)", 1, 0, C, F, N);
    bench_gemm("bwd dW 768x768  (TN)", 1, 0, C, C, N);

    printf("-- non-GEMM ops (GB/s counts each input and output byte once)\n");
    int64_t s_ln[2] = {N, C};
    bench_op("layernorm [1024, 768]", op_layernorm, NULL, 2, s_ln, 1, 2.0 * N * C * 4, 3.0 * N * C * 4);
    int64_t s_gelu[2] = {N, F};
    bench_op("gelu_tanh [1024, 3072]", op_gelu, NULL, 2, s_gelu, 1, 2.0 * N * F * 4, 3.0 * N * F * 4);
    int64_t s_sm[2] = {4 * 12 * 256, 256};
    bench_op("softmax [12288, 256]", op_softmax, NULL, 2, s_sm, 1, 2.0 * s_sm[0] * s_sm[1] * 4,
             3.0 * s_sm[0] * s_sm[1] * 4);
    int64_t D = 64, s_att[4] = {4, 12, 256, 3 * 64};
    /* bytes: q, k, v in and out once */
    double att_bytes = 4.0 * 4 * 12 * 256 * 64 * 4;
    bench_op("attention causal B4 H12 T256 D64", op_attention, &D, 4, s_att, 1, att_bytes, 2 * att_bytes);
    int64_t V = 50257, s_ce[2] = {256, V};
    int32_t *tg = malloc(256 * sizeof *tg);
    for (int i = 0; i < 256; i++) tg[i] = (int32_t)((i * 7919) % V);
    bench_op("cross_entropy [256, 50257]", op_xent, tg, 2, s_ce, 1, 1.0 * 256 * V * 4, 2.0 * 256 * V * 4);
    free(tg);
    return 0;
}
