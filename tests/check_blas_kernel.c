/* ctest-labels: unit */
/* End to end: a program that calls mtft_blas_ensure_fast_kernel() first ends
 * up on a non-generic OpenBLAS kernel. The test first restarts itself with
 * OPENBLAS_CORETYPE removed from the environment (so OpenBLAS chooses on its
 * own, as for a user who never heard of the variable), then lets mtft do its
 * restart, then checks the kernel. On CPUs that OpenBLAS 0.3.21 does not know
 * this exercises the restart; on others it checks that nothing was needed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mtft/mtft.h"

int main(int argc, char **argv) {
    (void)argc;
    if (!getenv("MTFT_KERNEL_TEST_STAGE")) {
        setenv("MTFT_KERNEL_TEST_STAGE", "1", 1);
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv("MTFT_REEXECED");
        unsetenv("MTFT_NO_REEXEC");
        execv("/proc/self/exe", argv);
        perror("execv");
        return 1;
    }
    const char *before = mtft_blas_corename();
    int was_fallback = mtft_blas_is_fallback();
    if (mtft_blas_ensure_fast_kernel(argc, argv) < 0) {
        fprintf(stderr, "FAIL: %s\n", mtft_error_last()->message);
        return 1;
    }
    /* here either no restart was needed, or this is the restarted process */
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("kernel %s (fallback %d), OPENBLAS_CORETYPE=%s, restarted=%s\n", before, was_fallback, ct ? ct : "(unset)",
           getenv("MTFT_REEXECED") ? "yes" : "no");
    if (mtft_blas_is_fallback()) {
        fprintf(stderr, "FAIL: still on the generic kernel %s after mtft_blas_ensure_fast_kernel\n",
                mtft_blas_corename());
        return 1;
    }
    if (getenv("MTFT_REEXECED") && (!ct || strcmp(ct, mtft_cpu_best_blas_coretype()) != 0)) {
        fprintf(stderr, "FAIL: restarted but OPENBLAS_CORETYPE is %s\n", ct ? ct : "(unset)");
        return 1;
    }
    printf("1 passed, 0 failed\n");
    return 0;
}
