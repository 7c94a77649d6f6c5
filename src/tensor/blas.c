#include <stdatomic.h>
/* The one wrapper around cblas_sgemm. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "../core/core.h"
#include "blas.h"

int mtft__sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M < 0 || N < 0 || K < 0 || M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX ||
        ldb > INT_MAX || ldc > INT_MAX)
        return mtft__err(MTFT_ERANGE, "sgemm: sizes M=%lld N=%lld K=%lld (lda %lld, ldb %lld, ldc %lld) exceed "
                                      "the BLAS integer range",
                         (long long)M, (long long)N, (long long)K, (long long)lda, (long long)ldb, (long long)ldc);
    if (M == 0 || N == 0) return MTFT_OK;
    if (K == 0) {
        /* BLAS scales C by beta; do the same without reading A or B */
        for (int64_t i = 0; i < M; i++) {
            float *c = C + i * ldc;
            if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
            else for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
        return MTFT_OK;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return MTFT_OK;
}

int mtft__blas_nests_serially(void) {
    static _Atomic int cached = -1;
    int v = atomic_load(&cached);
    if (v < 0) {
        v = strcmp(mtft_blas_threading(), "openmp") == 0;
        atomic_store(&cached, v);
    }
    return v;
}
