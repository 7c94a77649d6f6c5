/* Test shim (LD_PRELOAD): makes OpenBLAS look as it does on a CPU that
 * OpenBLAS 0.3.21 does not know: the generic "Prescott" kernel, unless
 * OPENBLAS_CORETYPE is set. Used by the blas_kernel_restart test. */
#include <stdlib.h>

char *openblas_get_corename(void);
char *openblas_get_corename(void) {
    static char prescott[] = "Prescott", chosen[64];
    const char *ct = getenv("OPENBLAS_CORETYPE");
    if (!ct) return prescott;
    /* report the chosen type the way OpenBLAS names it */
    int i = 0;
    for (; ct[i] && i < 63; i++) chosen[i] = ct[i];
    chosen[i] = '\0';
    return chosen;
}
