/* LayerNorm and RMSNorm over the last dim. x [N, C] (leading dims flatten to
 * N rows), weight/bias [C] or NULL.
 *
 * Forward saves per-row statistics (layernorm: mean and rstd; rmsnorm: rstd)
 * in the graph arena. Backward makes one pass over rows, parallel over fixed
 * chunks of NORM_RCHUNK rows: each chunk writes its rows of dx and its own
 * partial sums of dw/db; a second pass, parallel over columns, adds the
 * partials in chunk order. The chunking does not depend on the thread count,
 * so the bits do not either. Row sums use 8 independent partial sums in a
 * fixed order, which the compiler can vectorise without -ffast-math. */
#include <math.h>
#include <string.h>

#include "../tensor_impl.h"
#include "ops_grad.h"
#include "ops_simd.h"

#define NORM_RCHUNK 32

static inline float hsum8(const float *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline float sum8(const float *x, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    float s = hsum8(acc);
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
    float s = hsum8(acc);
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
    float s = hsum8(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* sum a[i] * b[i] * c[i] */
static inline float dot3_8(const float *a, const float *b, const float *c, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k] * c[i + k];
    float s = hsum8(acc);
    for (; i < n; i++) s += a[i] * b[i] * c[i];
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

/* A [C] array of ones from the arena (stands in for a NULL weight in backward). */
static float *ones(mtft_graph *g, int64_t C) {
    float *o = mtft__scratch(g, (size_t)C * sizeof(float));
    if (o)
        for (int64_t j = 0; j < C; j++) o[j] = 1.0f;
    return o;
}

/* dst[j] += sum over chunks c of part[c * stride + j], in chunk order;
 * parallel over columns. */
MTFT_SIMD_CLONES static void reduce_chunks(float *dst, const float *part, int64_t nchunk, int64_t stride, int64_t C) {
#pragma omp parallel for if (nchunk * C > 65536)
    for (int64_t j0 = 0; j0 < C; j0 += 256) {
        int64_t j1 = j0 + 256 < C ? j0 + 256 : C;
        for (int64_t c = 0; c < nchunk; c++) {
            const float *p = part + c * stride;
            for (int64_t j = j0; j < j1; j++) dst[j] += p[j];
        }
    }
}

/* ---- layernorm ----------------------------------------------------------- */

typedef struct ln_saved {
    float *mean, *rstd; /* [N] */
} ln_saved;

MTFT_SIMD_CLONES static void layernorm_fwd_k(float *y, float *mean, float *rstd, const float *x, const float *w,
                                        const float *b, int64_t N, int64_t C, float eps) {
#pragma omp parallel for if (N * C > 16384)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float m = sum8(xr, C) / (float)C;
        float v = sqdev8(xr, m, C) / (float)C;
        float rs = 1.0f / sqrtf(v + eps);
        mean[r] = m;
        rstd[r] = rs;
        if (w && b)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
        else if (w)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * w[j];
        else if (b)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs + b[j];
        else
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs;
    }
}

/* dx (may be NULL) += per row; pw/pb (may be NULL): [nchunk, C] partials of
 * dw = sum dy xhat and db = sum dy. w is never NULL here (ones). */
/* ... then dw += sum of pw over chunks and db += sum of pb (when not NULL),
 * in chunk order, in the same parallel region (one fork/join a call). */
MTFT_SIMD_CLONES static void layernorm_bwd_k(float *dx, int dx_write, float *pw, float *pb, float *dw, float *db,
                                             const float *dy, const float *x, const float *w, const float *mean,
                                             const float *rstd, int64_t N, int64_t C) {
    int64_t nchunk = (N + NORM_RCHUNK - 1) / NORM_RCHUNK;
#pragma omp parallel if (N * C > 16384)
    {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t r0 = c * NORM_RCHUNK, r1 = r0 + NORM_RCHUNK < N ? r0 + NORM_RCHUNK : N;
        float *pwc = pw ? pw + c * C : NULL, *pbc = pb ? pb + c * C : NULL;
        if (pwc) memset(pwc, 0, (size_t)C * sizeof(float));
        if (pbc) memset(pbc, 0, (size_t)C * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            float m = mean[r], rs = rstd[r];
            if (dx) {
                /* dxhat = dy w; xhat = (x - m) rs;
                 * dx = rs (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
                float a8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                int64_t j = 0;
                for (; j + 8 <= C; j += 8)
                    for (int k = 0; k < 8; k++) {
                        float dxh = dyr[j + k] * w[j + k];
                        a8[k] += dxh;
                        b8[k] += dxh * (xr[j + k] - m);
                    }
                float sa = hsum8(a8), sb = hsum8(b8);
                for (; j < C; j++) {
                    float dxh = dyr[j] * w[j];
                    sa += dxh;
                    sb += dxh * (xr[j] - m);
                }
                float mean_d = sa / (float)C, mean_dx = sb * rs / (float)C;
                float *dxr = dx + r * C;
                if (dx_write) /* dx was fresh: store */
                    for (j = 0; j < C; j++) dxr[j] = (dyr[j] * w[j] - mean_d - (xr[j] - m) * rs * mean_dx) * rs;
                else
                    for (j = 0; j < C; j++) dxr[j] += (dyr[j] * w[j] - mean_d - (xr[j] - m) * rs * mean_dx) * rs;
            }
            if (pwc)
                for (int64_t j = 0; j < C; j++) pwc[j] += dyr[j] * (xr[j] - m) * rs;
            if (pbc)
                for (int64_t j = 0; j < C; j++) pbc[j] += dyr[j];
        }
    }
    /* (the implied barrier of the loop above: all partials are complete) */
#pragma omp for schedule(static)
    for (int64_t j0 = 0; j0 < C; j0 += 64) {
        const int64_t j1 = j0 + 64 < C ? j0 + 64 : C;
        for (int64_t c = 0; c < nchunk; c++) {
            if (dw)
                for (int64_t j = j0; j < j1; j++) dw[j] += pw[c * C + j];
            if (db)
                for (int64_t j = j0; j < j1; j++) db[j] += pb[c * C + j];
        }
    }
    }
}

static int layernorm_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const ln_saved *s = n->saved;
    int dx_write = 0;
    float *dx = mtft__grad_w(g, x, &dx_write), *dw = mtft__grad(g, w), *db = mtft__grad(g, b);
    if (g->status < 0) return g->status;
    int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x), nchunk = (N + NORM_RCHUNK - 1) / NORM_RCHUNK;
    const float *wd = w ? w->data : ones(g, C);
    float *pw = dw ? mtft__scratch(g, (size_t)(nchunk * C) * sizeof(float)) : NULL;
    float *pb = db ? mtft__scratch(g, (size_t)(nchunk * C) * sizeof(float)) : NULL;
    if (!wd || (dw && !pw) || (db && !pb)) return MTFT_ENOMEM;
    layernorm_bwd_k(dx, dx_write, pw, pb, dw, db, n->out->grad, x->data, wd, s->mean, s->rstd, N, C);
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
    layernorm_fwd_k(y->data, mean, rstd, x->data, w ? w->data : NULL, b ? b->data : NULL, N, C, eps);
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

MTFT_SIMD_CLONES static void rmsnorm_fwd_k(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                                      float eps) {
#pragma omp parallel for if (N * C > 16384)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float rs = 1.0f / sqrtf(dot8(xr, xr, C) / (float)C + eps);
        rstd[r] = rs;
        if (w)
            for (int64_t j = 0; j < C; j++) yr[j] = xr[j] * rs * w[j];
        else
            for (int64_t j = 0; j < C; j++) yr[j] = xr[j] * rs;
    }
}

/* xhat = x rs; dxhat = dy w; dx = rs (dxhat - xhat mean(dxhat xhat))
 *                               = rs dxhat - x rs^3 sum(dy w x) / C */
MTFT_SIMD_CLONES static void rmsnorm_bwd_k(float *dx, float *pw, const float *dy, const float *x, const float *w,
                                      const float *rstd, int64_t N, int64_t C) {
    int64_t nchunk = (N + NORM_RCHUNK - 1) / NORM_RCHUNK;
#pragma omp parallel for if (N * C > 16384)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t r0 = c * NORM_RCHUNK, r1 = r0 + NORM_RCHUNK < N ? r0 + NORM_RCHUNK : N;
        float *pwc = pw ? pw + c * C : NULL;
        if (pwc) memset(pwc, 0, (size_t)C * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            float rs = rstd[r];
            if (dx) {
                float k = dot3_8(dyr, w, xr, C) * rs * rs / (float)C;
                float *dxr = dx + r * C;
                for (int64_t j = 0; j < C; j++) dxr[j] += rs * (dyr[j] * w[j] - xr[j] * k);
            }
            if (pwc)
                for (int64_t j = 0; j < C; j++) pwc[j] += dyr[j] * xr[j] * rs;
        }
    }
}

static int rmsnorm_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0], *w = n->in[1];
    float *dx = mtft__grad(g, x), *dw = mtft__grad(g, w);
    int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x), nchunk = (N + NORM_RCHUNK - 1) / NORM_RCHUNK;
    const float *wd = w ? w->data : ones(g, C);
    float *pw = dw ? mtft__scratch(g, (size_t)(nchunk * C) * sizeof(float)) : NULL;
    if (!wd || (dw && !pw)) return MTFT_ENOMEM;
    rmsnorm_bwd_k(dx, pw, n->out->grad, x->data, wd, n->saved, N, C);
    if (dw) reduce_chunks(dw, pw, nchunk, C, C);
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
    rmsnorm_fwd_k(y->data, rstd, x->data, w ? w->data : NULL, N, C, eps);
    mtft_node *n = mtft__record(g, &rmsnorm_op, y, 2, x, w);
    if (n) n->saved = rstd;
    return y;
}
