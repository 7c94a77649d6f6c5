/* LayerNorm and RMSNorm over the last dim. x [N, C] (leading dims flatten to
 * N rows), weight/bias [C] or NULL.
 *
 * Forward saves per-row statistics (layernorm: mean and rstd; rmsnorm: rstd)
 * in the graph arena. Backward: dx is parallel over rows; dw/db reduce over
 * rows, parallel over column blocks so each thread owns what it writes and the
 * order per element is fixed (same bits for any thread count). Row sums use
 * 8 independent partial sums in a fixed order, which the compiler can
 * vectorise without -ffast-math. */
#include <math.h>
#include <string.h>

#include "../tensor_impl.h"

#define NORM_CB 64

static inline float sum8(const float *x, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += x[i];
    return s;
}

/* sum (x[i] - m)^2 */
static inline float sqdev8(const float *x, float m, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float d = x[i + k] - m;
            acc[k] += d * d;
        }
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) {
        float d = x[i] - m;
        s += d * d;
    }
    return s;
}

/* sum a[i] * b[i] */
static inline float dot8(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static int norm_check(mtft_graph *g, const char *name, const mtft_tensor *x, const mtft_tensor *w,
                      const mtft_tensor *b) {
    char sx[64], sp[64];
    mtft__shape_str(x, sx, sizeof sx);
    int64_t C = x->ne[x->ndim - 1];
    if (!mtft__contig(x)) {
        mtft__op_fail(g, MTFT_EINVAL, "%s: x %s must be contiguous (use mtft_contiguous)", name, sx);
        return 0;
    }
    const mtft_tensor *ps[2] = {w, b};
    const char *pn[2] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        const mtft_tensor *p = ps[i];
        if (!p) continue;
        if (p->ndim != 1 || p->ne[0] != C || !mtft__contig(p)) {
            mtft__op_fail(g, MTFT_ESHAPE, "%s: %s '%s' %s does not match the last dim %lld of x %s", name, pn[i],
                          p->name, mtft__shape_str(p, sp, sizeof sp), (long long)C, sx);
            return 0;
        }
    }
    return 1;
}

/* ---- layernorm ----------------------------------------------------------- */

typedef struct ln_saved {
    float *mean, *rstd; /* [N] */
} ln_saved;

static int layernorm_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const ln_saved *s = n->saved;
    const float *dy = n->out->grad, *xd = x->data, *wd = w ? w->data : NULL;
    const float *mean = s->mean, *rstd = s->rstd;
    float *dx = mtft__grad(g, x), *dw = mtft__grad(g, w), *db = mtft__grad(g, b);
    int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x);
    if (dx) {
#pragma omp parallel for if (N * C > 16384)
        for (int64_t r = 0; r < N; r++) {
            const float *xr = xd + r * C, *dyr = dy + r * C;
            float *dxr = dx + r * C;
            float m = mean[r], rs = rstd[r];
            /* dxhat = dy * w; xhat = (x - m) * rs */
            float a8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t j = 0;
            for (; j + 8 <= C; j += 8)
                for (int k = 0; k < 8; k++) {
                    float dxh = wd ? dyr[j + k] * wd[j + k] : dyr[j + k];
                    a8[k] += dxh;
                    b8[k] += dxh * (xr[j + k] - m) * rs;
                }
            float sa = ((a8[0] + a8[1]) + (a8[2] + a8[3])) + ((a8[4] + a8[5]) + (a8[6] + a8[7]));
            float sb = ((b8[0] + b8[1]) + (b8[2] + b8[3])) + ((b8[4] + b8[5]) + (b8[6] + b8[7]));
            for (; j < C; j++) {
                float dxh = wd ? dyr[j] * wd[j] : dyr[j];
                sa += dxh;
                sb += dxh * (xr[j] - m) * rs;
            }
            float mean_d = sa / (float)C, mean_dx = sb / (float)C;
            for (j = 0; j < C; j++) {
                float dxh = wd ? dyr[j] * wd[j] : dyr[j];
                float xh = (xr[j] - m) * rs;
                dxr[j] += (dxh - mean_d - xh * mean_dx) * rs;
            }
        }
    }
    if (dw || db) {
        int64_t nblk = (C + NORM_CB - 1) / NORM_CB;
#pragma omp parallel for if (N * C > 16384)
        for (int64_t bk = 0; bk < nblk; bk++) {
            int64_t j0 = bk * NORM_CB, j1 = j0 + NORM_CB < C ? j0 + NORM_CB : C;
            float aw[NORM_CB], ab[NORM_CB];
            for (int64_t j = 0; j < j1 - j0; j++) aw[j] = ab[j] = 0.0f;
            for (int64_t r = 0; r < N; r++) {
                const float *xr = xd + r * C, *dyr = dy + r * C;
                float m = mean[r], rs = rstd[r];
                for (int64_t j = j0; j < j1; j++) {
                    aw[j - j0] += dyr[j] * (xr[j] - m) * rs;
                    ab[j - j0] += dyr[j];
                }
            }
            for (int64_t j = j0; j < j1; j++) {
                if (dw) dw[j] += aw[j - j0];
                if (db) db[j] += ab[j - j0];
            }
        }
    }
    return MTFT_OK;
}
static const mtft_op_def layernorm_op = {"layernorm", layernorm_backward};

mtft_tensor *mtft_layernorm(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b, float eps) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!norm_check(g, "layernorm", x, w, b)) return NULL;
    if (!(eps >= 0.0f)) return mtft__op_fail(g, MTFT_EINVAL, "layernorm: eps %g must be >= 0", (double)eps);
    int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x);
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    float *mean = mtft__scratch(g, (size_t)N * sizeof(float));
    float *rstd = mtft__scratch(g, (size_t)N * sizeof(float));
    if (!y || !mean || !rstd) return mtft__op_fail(g, MTFT_ENOMEM, "layernorm: out of memory");
    const float *xd = x->data, *wd = w ? w->data : NULL, *bd = b ? b->data : NULL;
    float *yd = y->data;
#pragma omp parallel for if (N * C > 16384)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        float m = sum8(xr, C) / (float)C;
        float v = sqdev8(xr, m, C) / (float)C;
        float rs = 1.0f / sqrtf(v + eps);
        mean[r] = m;
        rstd[r] = rs;
        if (wd && bd)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * wd[j] + bd[j];
        else if (wd)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * wd[j];
        else if (bd)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs + bd[j];
        else
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs;
    }
    mtft_node *n = mtft__record(g, &layernorm_op, y, 3, x, w, b);
    if (n) {
        ln_saved *s = mtft__scratch(g, sizeof *s);
        if (!s) return mtft__op_fail(g, MTFT_ENOMEM, "layernorm: out of memory");
        s->mean = mean;
        s->rstd = rstd;
        n->saved = s;
    }
    return y;
}

/* ---- rmsnorm --------------------------------------------------------------- */

static int rmsnorm_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0], *w = n->in[1];
    const float *rstd = n->saved;
    const float *dy = n->out->grad, *xd = x->data, *wd = w ? w->data : NULL;
    float *dx = mtft__grad(g, x), *dw = mtft__grad(g, w);
    int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x);
    if (dx) {
#pragma omp parallel for if (N * C > 16384)
        for (int64_t r = 0; r < N; r++) {
            const float *xr = xd + r * C, *dyr = dy + r * C;
            float *dxr = dx + r * C;
            float rs = rstd[r];
            /* xhat = x rs; dxhat = dy w; dx = rs (dxhat - xhat mean(dxhat xhat)) */
            float s = 0.0f;
            if (wd) {
                float a8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                int64_t j = 0;
                for (; j + 8 <= C; j += 8)
                    for (int k = 0; k < 8; k++) a8[k] += dyr[j + k] * wd[j + k] * xr[j + k];
                s = ((a8[0] + a8[1]) + (a8[2] + a8[3])) + ((a8[4] + a8[5]) + (a8[6] + a8[7]));
                for (; j < C; j++) s += dyr[j] * wd[j] * xr[j];
            } else {
                s = dot8(dyr, xr, C);
            }
            float c = s * rs * rs / (float)C; /* mean(dxhat xhat) / rs ... times x rs below */
            for (int64_t j = 0; j < C; j++) {
                float dxh = wd ? dyr[j] * wd[j] : dyr[j];
                dxr[j] += rs * (dxh - xr[j] * c);
            }
        }
    }
    if (dw) {
        int64_t nblk = (C + NORM_CB - 1) / NORM_CB;
#pragma omp parallel for if (N * C > 16384)
        for (int64_t bk = 0; bk < nblk; bk++) {
            int64_t j0 = bk * NORM_CB, j1 = j0 + NORM_CB < C ? j0 + NORM_CB : C;
            float aw[NORM_CB];
            for (int64_t j = 0; j < j1 - j0; j++) aw[j] = 0.0f;
            for (int64_t r = 0; r < N; r++) {
                const float *xr = xd + r * C, *dyr = dy + r * C;
                float rs = rstd[r];
                for (int64_t j = j0; j < j1; j++) aw[j - j0] += dyr[j] * xr[j] * rs;
            }
            for (int64_t j = j0; j < j1; j++) dw[j] += aw[j - j0];
        }
    }
    return MTFT_OK;
}
static const mtft_op_def rmsnorm_op = {"rmsnorm", rmsnorm_backward};

mtft_tensor *mtft_rmsnorm(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, float eps) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!norm_check(g, "rmsnorm", x, w, NULL)) return NULL;
    if (!(eps >= 0.0f)) return mtft__op_fail(g, MTFT_EINVAL, "rmsnorm: eps %g must be >= 0", (double)eps);
    int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x);
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    float *rstd = mtft__scratch(g, (size_t)N * sizeof(float));
    if (!y || !rstd) return mtft__op_fail(g, MTFT_ENOMEM, "rmsnorm: out of memory");
    const float *xd = x->data, *wd = w ? w->data : NULL;
    float *yd = y->data;
#pragma omp parallel for if (N * C > 16384)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        float rs = 1.0f / sqrtf(dot8(xr, xr, C) / (float)C + eps);
        rstd[r] = rs;
        if (wd)
            for (int64_t j = 0; j < C; j++) yr[j] = xr[j] * rs * wd[j];
        else
            for (int64_t j = 0; j < C; j++) yr[j] = xr[j] * rs;
    }
    mtft_node *n = mtft__record(g, &rmsnorm_op, y, 2, x, w);
    if (n) n->saved = rstd;
    return y;
}
