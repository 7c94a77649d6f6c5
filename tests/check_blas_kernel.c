/* ctest-labels: unit */
/* End to end: a program that calls mtft_blas_ensure_fast_kernel() first ends
 * up on a non-generic OpenBLAS kernel, and never overrides a kernel the
 * environment chose. Run plainly (check_blas_kernel) it checks this machine;
 * run with tests/fake_corename.c preloaded (blas_kernel_restart) OpenBLAS
 * looks as it does on a CPU that 0.3.21 does not know, which exercises the
 * restart. The test never changes OPENBLAS_CORETYPE itself: where the
 * environment sets it (some machines need a particular kernel), the restart
 * case is reported as skipped. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/mtft.h"

int main(int argc, char **argv) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    int restarted = getenv("MTFT_REEXECED") != NULL;
    int shim = getenv("MTFT_TEST_SHIM") != NULL;
    if (ct && !restarted) {
        /* the environment chose the kernel: mtft must leave it alone */
        if (mtft_blas_ensure_fast_kernel(argc, argv) < 0 || getenv("MTFT_REEXECED")) {
            fprintf(stderr, "FAIL: mtft_blas_ensure_fast_kernel touched OPENBLAS_CORETYPE=%s\n", ct);
            return 1;
        }
        printf("kernel %s, OPENBLAS_CORETYPE=%s set by the environment: left alone\n", mtft_blas_corename(), ct);
        if (shim) {
            printf("SKIP: the restart cannot be exercised while the environment sets OPENBLAS_CORETYPE\n");
            return 77;
        }
        printf("1 passed, 0 failed\n");
        return 0;
    }
    const char *before = mtft_blas_corename();
    int was_fallback = mtft_blas_is_fallback();
    if (mtft_blas_ensure_fast_kernel(argc, argv) < 0) {
        fprintf(stderr, "FAIL: %s\n", mtft_error_last()->message);
        return 1;
    }
    /* here either no restart was needed, or this is the restarted process */
    ct = getenv("OPENBLAS_CORETYPE");
    restarted = getenv("MTFT_REEXECED") != NULL;
    printf("kernel %s (fallback %d), OPENBLAS_CORETYPE=%s, restarted=%s\n", before, was_fallback, ct ? ct : "(unset)",
           restarted ? "yes" : "no");
    if (mtft_blas_is_fallback()) {
        fprintf(stderr, "FAIL: still on the generic kernel %s after mtft_blas_ensure_fast_kernel\n",
                mtft_blas_corename());
        return 1;
    }
    const char *best = mtft_cpu_best_blas_coretype();
    if (restarted && (!ct || !best || strcmp(ct, best) != 0)) {
        fprintf(stderr, "FAIL: restarted but OPENBLAS_CORETYPE is %s\n", ct ? ct : "(unset)");
        return 1;
    }
    printf("1 passed, 0 failed\n");
    return 0;
}
