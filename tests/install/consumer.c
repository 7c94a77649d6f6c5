/* Built against the installed mtft by tests/check_install.sh. */
#include <mtft/mtft.h>
#include <stdio.h>

int main(void) {
    int maj, min, pat;
    int v = mtft_version(&maj, &min, &pat);
    if (v != MTFT_VERSION_NUMBER) {
        fprintf(stderr, "header %d vs library %d\n", MTFT_VERSION_NUMBER, v);
        return 1;
    }
    mtft_graph *g = NULL;
    if (mtft_graph_new(&g, NULL) < 0) return 1;
    int64_t shape[2] = {2, 3};
    float d[6] = {1, 2, 3, 4, 5, 6};
    mtft_tensor *x = mtft_from_data(g, 2, shape, d);
    mtft_tensor_set_requires_grad(g, x, 1);
    mtft_tensor *s = mtft_sum(g, mtft_mul(g, x, x));
    if (!s || mtft_graph_backward(g, s, NULL) < 0) {
        fprintf(stderr, "%s\n", mtft_error_last()->message);
        return 1;
    }
    float *gx = mtft_tensor_grad(x);
    printf("mtft %s: sum(x*x) = %g, d/dx[5] = %g (blas %s)\n", mtft_version_string(), mtft_tensor_data(s)[0], gx[5],
           mtft_blas_corename());
    int ok = mtft_tensor_data(s)[0] == 91.0f && gx[5] == 12.0f;
    mtft_graph_free(g);
    return ok ? 0 : 1;
}
