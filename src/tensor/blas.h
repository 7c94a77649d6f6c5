/* Internal BLAS wrapper: the only place that talks to cblas. Not installed. */
#ifndef MTFT_BLAS_H
#define MTFT_BLAS_H

#include <stdint.h>

/* Row-major C[M, N] = alpha * op(A) op(B) + beta * C, with op(A) [M, K] and
 * op(B) [K, N]. trans_a: A is stored [K, M] (lda >= M), else [M, K]
 * (lda >= K); likewise trans_b: B stored [N, K] (ldb >= K), else [K, N]
 * (ldb >= N). ldc >= N. beta = 1 accumulates. Returns MTFT_OK, or
 * MTFT_ERANGE (with message) when a size does not fit BLAS's int.
 * Never call this inside an OpenMP parallel region. */
int mtft__sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* 1 when OpenBLAS is its OpenMP build: a call from inside an OpenMP
 * parallel region then runs on the calling thread alone, so callers may run
 * independent GEMMs one per thread. (A pthread build would start its own
 * threads from every caller.) Cached after the first call. */
int mtft__blas_nests_serially(void);

#endif
