/* Softmax and log-softmax over the last dim, numerically stable (the row max
 * is subtracted before exp; sums in double).
 *   x [..., C] -> y [..., C]; R = rows (numel / C).
 * Backward uses only the saved output y:
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log_softmax: dx = dy - exp(y) * sum(dy)
 * Rows are independent: parallel over rows, each thread writes its rows. */
#include <math.h>

#include "../tensor_impl.h"

/* y[r, :] = softmax or log_softmax of x[r, :] */
static void softmax_forward(float *y, const float *x, int64_t R, int64_t C, int log_mode) {
#pragma omp parallel for schedule(static) if (R * C > 16384)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float m = -INFINITY;
        for (int64_t j = 0; j < C; j++) m = xr[j] > m ? xr[j] : m;
        if (!isfinite(m)) m = 0.0f; /* all -inf (or +inf/NaN present): let IEEE rules propagate */
        double s = 0.0;
        for (int64_t j = 0; j < C; j++) {
            float e = expf(xr[j] - m);
            if (!log_mode) yr[j] = e;
            s += e;
        }
        if (log_mode) {
            float lse = m + (float)log(s);
            for (int64_t j = 0; j < C; j++) yr[j] = xr[j] - lse;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < C; j++) yr[j] *= inv;
        }
    }
}

static int softmax_backward_impl(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const int log_mode = (int)n->i[0];
    const float *y = n->out->data, *dy = n->out->grad;
    const int64_t C = n->out->ne[n->out->ndim - 1], R = mtft__rows(n->out);
#pragma omp parallel for schedule(static) if (R * C > 16384)
    for (int64_t r = 0; r < R; r++) {
        const float *yr = y + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        double s = 0.0;
        if (log_mode) {
            for (int64_t j = 0; j < C; j++) s += dyr[j];
            const float sf = (float)s;
            for (int64_t j = 0; j < C; j++) dxr[j] += dyr[j] - expf(yr[j]) * sf;
        } else {
            for (int64_t j = 0; j < C; j++) s += (double)dyr[j] * yr[j];
            const float sf = (float)s;
            for (int64_t j = 0; j < C; j++) dxr[j] += yr[j] * (dyr[j] - sf);
        }
    }
    return MTFT_OK;
}

static const mtft_op_def softmax_op = {"softmax", softmax_backward_impl};
static const mtft_op_def log_softmax_op = {"log_softmax", softmax_backward_impl};

static mtft_tensor *softmax_common(mtft_graph *g, mtft_tensor *x, int log_mode) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!mtft__contig(x)) {
        x = mtft_contiguous(g, x);
        if (!x) return NULL;
    }
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    if (!y) return NULL;
    softmax_forward(y->data, x->data, mtft__rows(x), x->ne[x->ndim - 1], log_mode);
    mtft_node *n = mtft__record(g, log_mode ? &log_softmax_op : &softmax_op, y, 1, x);
    if (n) n->i[0] = log_mode;
    return y;
}

mtft_tensor *mtft_softmax(mtft_graph *g, mtft_tensor *x) { return softmax_common(g, x, 0); }
mtft_tensor *mtft_log_softmax(mtft_graph *g, mtft_tensor *x) { return softmax_common(g, x, 1); }
