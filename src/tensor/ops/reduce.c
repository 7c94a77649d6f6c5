/* Reductions: sum and mean to a scalar [1] (double accumulation), and
 * pooling x [B, T, C] -> [B, C] with per-row valid lengths.
 *
 * sum/mean are deterministic for any thread count: the input is cut into
 * fixed chunks of REDUCE_CHUNK elements, each chunk summed in double in
 * order (in parallel), then the chunk sums added in order. */
#include <string.h>

#include "../tensor_impl.h"

#define REDUCE_CHUNK 8192

static double det_sum(mtft_graph *g, const float *x, int64_t N, int *ok) {
    const int64_t nc = (N + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    double one = 0.0, *part = &one;
    if (nc > 1) {
        part = mtft__scratch(g, (size_t)nc * sizeof(double));
        if (!part) {
            *ok = 0;
            return 0.0;
        }
    }
#pragma omp parallel for schedule(static) if (nc > 4)
    for (int64_t c = 0; c < nc; c++) {
        const int64_t lo = c * REDUCE_CHUNK, hi = lo + REDUCE_CHUNK < N ? lo + REDUCE_CHUNK : N;
        double s = 0.0;
        for (int64_t i = lo; i < hi; i++) s += x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    *ok = 1;
    return s;
}

/* dx += dy[0] * f[0] (f[0] = 1 for sum, 1/N for mean) */
static int reduce_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const float d = n->out->grad[0] * n->f[0];
    const int64_t N = mtft__numel(n->in[0]);
#pragma omp parallel for schedule(static) if (N > 32768)
    for (int64_t i = 0; i < N; i++) dx[i] += d;
    return MTFT_OK;
}
static const mtft_op_def sum_op = {"sum", reduce_backward};
static const mtft_op_def mean_op = {"mean", reduce_backward};

static mtft_tensor *reduce_common(mtft_graph *g, mtft_tensor *x, int mean) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!mtft__contig(x)) {
        x = mtft_contiguous(g, x);
        if (!x) return NULL;
    }
    const int64_t one = 1, N = mtft__numel(x);
    mtft_tensor *y = mtft__new(g, 1, &one);
    if (!y) return NULL;
    int ok = 0;
    double s = det_sum(g, x->data, N, &ok);
    if (!ok) return NULL;
    y->data[0] = (float)(mean ? s / (double)N : s);
    mtft_node *n = mtft__record(g, mean ? &mean_op : &sum_op, y, 1, x);
    if (n) n->f[0] = mean ? (float)(1.0 / (double)N) : 1.0f;
    return y;
}

mtft_tensor *mtft_sum(mtft_graph *g, mtft_tensor *x) { return reduce_common(g, x, 0); }
mtft_tensor *mtft_mean(mtft_graph *g, mtft_tensor *x) { return reduce_common(g, x, 1); }

/* ---- pooling ----------------------------------------------------------------
 * x [B, T, C] -> y [B, C]. saved: B int32 valid lengths (all T when NULL).
 *   MEAN:  y[b] = mean_{t < L_b} x[b, t];  dx[b, t] += dy[b] / L_b for t < L_b
 *   LAST:  y[b] = x[b, L_b - 1]
 *   FIRST: y[b] = x[b, 0] */
static void pool_range(int mode, int32_t L, int64_t *t0, int64_t *t1) {
    switch (mode) {
    case MTFT_POOL_MEAN: *t0 = 0, *t1 = L; break;
    case MTFT_POOL_LAST: *t0 = L - 1, *t1 = L; break;
    default: *t0 = 0, *t1 = 1; break;
    }
}

static int pool_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const int32_t *len = n->saved;
    const int mode = (int)n->i[0];
    const int64_t B = n->in[0]->ne[0], T = n->in[0]->ne[1], C = n->in[0]->ne[2];
    const float *dy = n->out->grad;
#pragma omp parallel for schedule(static) if (B * T * C > 32768)
    for (int64_t b = 0; b < B; b++) {
        int64_t t0, t1;
        pool_range(mode, len[b], &t0, &t1);
        const float w = 1.0f / (float)(t1 - t0);
        for (int64_t t = t0; t < t1; t++) {
            float *dxr = dx + (b * T + t) * C;
            for (int64_t c = 0; c < C; c++) dxr[c] += w * dy[b * C + c];
        }
    }
    return MTFT_OK;
}
static const mtft_op_def pool_op = {"pool", pool_backward};

mtft_tensor *mtft_pool(mtft_graph *g, mtft_tensor *x, const int32_t *valid_len, mtft_pool_mode mode) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    char sx[64];
    if (x->ndim != 3)
        return mtft__op_fail(g, MTFT_ESHAPE, "pool: x must be [B, T, C], got %s", mtft__shape_str(x, sx, sizeof sx));
    if (mode != MTFT_POOL_MEAN && mode != MTFT_POOL_LAST && mode != MTFT_POOL_FIRST)
        return mtft__op_fail(g, MTFT_EINVAL, "pool: unknown mode %d", (int)mode);
    const int64_t B = x->ne[0], T = x->ne[1], C = x->ne[2];
    for (int64_t b = 0; valid_len && b < B; b++)
        if (valid_len[b] < 1 || valid_len[b] > T)
            return mtft__op_fail(g, MTFT_ERANGE, "pool: valid_len[%lld] = %d outside 1..%lld (x %s)", (long long)b,
                                 (int)valid_len[b], (long long)T, mtft__shape_str(x, sx, sizeof sx));
    if (!mtft__contig(x)) {
        x = mtft_contiguous(g, x);
        if (!x) return NULL;
    }
    int32_t *len = mtft__scratch(g, (size_t)B * sizeof *len);
    if (!len) return NULL;
    for (int64_t b = 0; b < B; b++) len[b] = valid_len ? valid_len[b] : (int32_t)T;
    const int64_t yshape[2] = {B, C};
    mtft_tensor *y = mtft__new(g, 2, yshape);
    if (!y) return NULL;
#pragma omp parallel for schedule(static) if (B * T * C > 32768)
    for (int64_t b = 0; b < B; b++) {
        int64_t t0, t1;
        pool_range(mode, len[b], &t0, &t1);
        float *yr = y->data + b * C;
        /* channel blocks of 64 with double accumulators, rows read in order */
        for (int64_t c0 = 0; c0 < C; c0 += 64) {
            const int64_t nc = C - c0 < 64 ? C - c0 : 64;
            double acc[64] = {0};
            for (int64_t t = t0; t < t1; t++) {
                const float *xr = x->data + (b * T + t) * C + c0;
                for (int64_t c = 0; c < nc; c++) acc[c] += xr[c];
            }
            for (int64_t c = 0; c < nc; c++) yr[c0 + c] = (float)(acc[c] / (double)(t1 - t0));
        }
    }
    mtft_node *n = mtft__record(g, &pool_op, y, 1, x);
    if (n) {
        n->saved = len;
        n->i[0] = mode;
    }
    return y;
}
