/* Softmax and log-softmax over the last dim, numerically stable (the row max
 * is subtracted before exp; sums in double lanes, exp from mtft__vexpf so
 * the row loops vectorise; see ops_simd.h).
 *   x [..., C] -> y [..., C]; R = rows (numel / C).
 * Backward uses only the saved output y:
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log_softmax: dx = dy - exp(y) * sum(dy)
 * Rows are independent: parallel over rows, each thread writes its rows. */
#include <math.h>

#include "../tensor_impl.h"
#include "ops_simd.h"

/* One row: y = softmax(x) or log_softmax(x) */
MTFT_SIMD_CLONES
static void softmax_row(float *y, const float *x, int64_t C, int log_mode) {
    float m = mtft__row_max(x, C);
    if (!isfinite(m)) m = 0.0f; /* all -inf (or +inf present): let IEEE rules propagate */
    if (log_mode) {
        const float lse = m + (float)log(mtft__row_sum_exp(x, C, m, NULL));
        for (int64_t j = 0; j < C; j++) y[j] = x[j] - lse;
    } else {
        const float inv = (float)(1.0 / mtft__row_sum_exp(x, C, m, y));
        for (int64_t j = 0; j < C; j++) y[j] *= inv;
    }
}

/* One row: dx += y (dy - sum(dy y))  or  dx += dy - exp(y) sum(dy) */
MTFT_SIMD_CLONES
static void softmax_row_backward(float *dx, const float *y, const float *dy, int64_t C, int log_mode) {
    if (log_mode) {
        const float s = (float)mtft__row_dot(dy, NULL, C);
        for (int64_t j = 0; j < C; j++) dx[j] += dy[j] - mtft__vexpf(y[j]) * s;
    } else {
        const float s = (float)mtft__row_dot(dy, y, C);
        for (int64_t j = 0; j < C; j++) dx[j] += y[j] * (dy[j] - s);
    }
}

static void softmax_forward(float *y, const float *x, int64_t R, int64_t C, int log_mode) {
#pragma omp parallel for schedule(static) if (R * C > 16384)
    for (int64_t r = 0; r < R; r++) softmax_row(y + r * C, x + r * C, C, log_mode);
}

static int softmax_backward_impl(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const int log_mode = (int)n->i[0];
    const float *y = n->out->data, *dy = n->out->grad;
    const int64_t C = n->out->ne[n->out->ndim - 1], R = mtft__rows(n->out);
#pragma omp parallel for schedule(static) if (R * C > 16384)
    for (int64_t r = 0; r < R; r++) softmax_row_backward(dx + r * C, y + r * C, dy + r * C, C, log_mode);
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
