/* Losses, each a scalar mean [1].
 *
 * cross_entropy: logits [N, V] (leading dims flatten to N), targets N int32.
 *   Fused log-softmax + NLL, one pass per row, parallel over rows:
 *     lse_r = log sum_j exp(x_rj)
 *     loss_r = (1-ls) * (lse_r - x_r,t) + ls * (lse_r - mean_j x_rj)
 *   (PyTorch's label smoothing: (1-ls)*nll + ls*mean_j(-logp_j)); the result
 *   is the mean over rows whose target != ignore_index (0 when there are none).
 *   Saved: lse per row and a copy of the targets. Backward:
 *     dx_rj = dL / M * (softmax_rj - (1-ls)*[j == t_r] - ls/V), 0 on ignored rows.
 *   When the op is recorded, the forward writes dx for dL = 1 from the exps
 *   it computes anyway; backward hands that buffer to the logits as their
 *   gradient (dL = 1 and no gradient yet: a loss backpropagated alone) or
 *   scales it in, instead of a second exp pass over [N, V].
 * mse:   mean (p - y)^2
 * huber: mean of 0.5 d^2 if |d| < delta else delta (|d| - delta/2) (PyTorch HuberLoss)
 * bce_logits: mean over masked-in elements of max(x,0) - x y + log1p(exp(-|x|)).
 * Per-row / per-element terms are written to scratch and summed in order in
 * double, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "../tensor_impl.h"
#include "ops_grad.h"
#include "ops_simd.h"

static mtft_tensor *scalar(mtft_graph *g, double v) {
    const int64_t one = 1;
    mtft_tensor *y = mtft__new(g, 1, &one);
    if (y) y->data[0] = (float)v;
    return y;
}

static double ordered_sum(const double *v, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    return s;
}

/* ---- cross-entropy --------------------------------------------------------- */
typedef struct ce_saved {
    float *lse;       /* [N] */
    int32_t *targets; /* [N] */
    float *d;         /* [N, V]: dloss/dx for an upstream gradient of 1 (made by the forward), or NULL */
    int32_t ignore_index;
    int64_t n_valid;
} ce_saved;

/* One row when the op is recorded: lse, and the row of dloss/dx into d
 * (inv_m (softmax - uni) - inv_m on_t at the target; 0 on an ignored row),
 * from the exps of the forward pass: backward does no exp pass of its own. */
MTFT_SIMD_CLONES
static void ce_row_d(const float *xr, int64_t V, int want_sum, double *lse, double *sum_x, float *d, int32_t t,
                     int ignored, float inv_m, float uni, float on_t) {
    float m = mtft__row_max(xr, V);
    if (!isfinite(m)) m = 0.0f; /* -inf/+inf/NaN logits: IEEE rules propagate */
    const double sum = mtft__row_sum_exp(xr, V, m, d);
    *lse = (double)m + log(sum);
    *sum_x = want_sum ? mtft__row_dot(xr, NULL, V) : 0.0;
    if (ignored) {
        memset(d, 0, (size_t)V * sizeof(float));
        return;
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < V; j++) d[j] = inv_m * (d[j] * inv - uni);
    d[t] -= inv_m * on_t;
}

/* One row: lse, and the sum of the logits when label smoothing needs it. */
MTFT_SIMD_CLONES
static void ce_row(const float *xr, int64_t V, int want_sum, double *lse, double *sum_x) {
    float m = mtft__row_max(xr, V);
    if (!isfinite(m)) m = 0.0f; /* -inf/+inf/NaN logits: IEEE rules propagate */
    *lse = (double)m + log(mtft__row_sum_exp(xr, V, m, NULL));
    *sum_x = want_sum ? mtft__row_dot(xr, NULL, V) : 0.0;
}

static int ce_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0];
    const ce_saved *sv = n->saved;
    if (sv->n_valid == 0 || !sv->d) {
        (void)mtft__grad(g, x); /* a zero gradient */
        return g->status < 0 ? g->status : MTFT_OK;
    }
    const int64_t V = x->ne[x->ndim - 1], N = mtft__rows(x);
    const float up = n->out->grad[0];
    /* the forward's dloss/dx becomes x's gradient as it is (a loss
     * backpropagated with seed 1), or is scaled into it */
    if (up == 1.0f && mtft__grad_set(g, x, sv->d)) return MTFT_OK;
    int write = 0;
    float *dx = mtft__grad_w(g, x, &write);
    if (!dx) return g->status < 0 ? g->status : MTFT_OK;
    const float *d = sv->d;
#pragma omp parallel for schedule(static) if (N * V > 16384)
    for (int64_t r = 0; r < N; r++) {
        float *dr = dx + r * V;
        const float *sr = d + r * V;
        if (write)
            for (int64_t j = 0; j < V; j++) dr[j] = up * sr[j];
        else
            for (int64_t j = 0; j < V; j++) dr[j] += up * sr[j];
    }
    return MTFT_OK;
}
static const mtft_op_def ce_op = {"cross_entropy", ce_backward};

mtft_tensor *mtft_cross_entropy(mtft_graph *g, mtft_tensor *logits, const int32_t *targets, int32_t ignore_index,
                                float label_smoothing) {
    if (!mtft__op_begin(g, 1, logits)) return NULL;
    char sx[64];
    if (!targets) return mtft__op_fail(g, MTFT_EINVAL, "cross_entropy: targets is NULL");
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
        return mtft__op_fail(g, MTFT_ERANGE, "cross_entropy: label_smoothing %g outside [0, 1)", (double)label_smoothing);
    const int64_t V = logits->ne[logits->ndim - 1], N = mtft__rows(logits);
    for (int64_t r = 0; r < N; r++) {
        const int32_t t = targets[r];
        if (t != ignore_index && (t < 0 || (int64_t)t >= V))
            return mtft__op_fail(g, MTFT_ERANGE,
                                 "cross_entropy: target %d at row %lld is outside [0, %lld) (logits %s, ignore_index %d)",
                                 (int)t, (long long)r, (long long)V, mtft__shape_str(logits, sx, sizeof sx),
                                 (int)ignore_index);
    }
    mtft_tensor *x = logits;
    if (!mtft__contig(x)) {
        x = mtft_contiguous(g, x);
        if (!x) return NULL;
    }
    ce_saved *sv = mtft__scratch(g, sizeof *sv);
    float *lse = mtft__scratch(g, (size_t)N * sizeof(float));
    int32_t *tg = mtft__scratch(g, (size_t)N * sizeof(int32_t));
    double *row = mtft__scratch(g, (size_t)N * sizeof(double));
    if (!sv || !lse || !tg || !row) return NULL;
    memcpy(tg, targets, (size_t)N * sizeof(int32_t));
    const double ls = label_smoothing;
    int64_t M = 0;
    for (int64_t r = 0; r < N; r++) M += tg[r] != ignore_index;
    /* recorded (as mtft__record will decide) with rows to learn from: the
     * forward also writes dloss/dx */
    float *d = NULL;
    if (M > 0 && g->grad_enabled && mtft__needs_grad(x) && !(d = mtft__scratch(g, (size_t)(N * V) * sizeof(float))))
        return mtft__op_fail(g, MTFT_ENOMEM, "cross_entropy: no memory for the gradient of logits %s",
                             mtft__shape_str(logits, sx, sizeof sx));
    const float inv_m = M ? 1.0f / (float)M : 0.0f, on_t = 1.0f - label_smoothing, uni = label_smoothing / (float)V;
#pragma omp parallel for schedule(static) if (N * V > 16384)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x->data + r * V;
        double l, sx_;
        if (d) ce_row_d(xr, V, ls > 0.0, &l, &sx_, d + r * V, tg[r], tg[r] == ignore_index, inv_m, uni, on_t);
        else ce_row(xr, V, ls > 0.0, &l, &sx_);
        lse[r] = (float)l;
        const int32_t t = tg[r];
        if (t == ignore_index) {
            row[r] = 0.0;
        } else {
            const double nll = l - (double)xr[t];
            row[r] = ls > 0.0 ? (1.0 - ls) * nll + ls * (l - sx_ / (double)V) : nll;
        }
    }
    mtft_tensor *y = scalar(g, M ? ordered_sum(row, N) / (double)M : 0.0);
    if (!y) return NULL;
    mtft_node *n = mtft__record(g, &ce_op, y, 1, x);
    if (n) {
        sv->lse = lse;
        sv->targets = tg;
        sv->d = d;
        sv->ignore_index = ignore_index;
        sv->n_valid = M;
        n->saved = sv;
        n->f[0] = label_smoothing;
    }
    return y;
}

/* ---- elementwise regression losses ------------------------------------------ */
enum { L_MSE, L_HUBER, L_BCE };

typedef struct ew_saved {
    float *targets; /* [N] */
    float *mask;    /* [N] or NULL */
    double denom;   /* elements counted by the mean */
} ew_saved;

/* d loss_i / d x_i (before the 1/denom and upstream factors) */
static inline float ew_grad(int kind, float x, float y, float delta) {
    switch (kind) {
    case L_MSE: return 2.0f * (x - y);
    case L_HUBER: {
        const float d = x - y;
        return fabsf(d) < delta ? d : (d > 0 ? delta : -delta);
    }
    default: {
        /* sigmoid(x) - y, stable for both signs */
        const float e = expf(-fabsf(x));
        const float sg = x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
        return sg - y;
    }
    }
}

static inline double ew_loss(int kind, float x, float y, float delta) {
    switch (kind) {
    case L_MSE: {
        const double d = (double)x - y;
        return d * d;
    }
    case L_HUBER: {
        const double d = fabs((double)x - y);
        return d < delta ? 0.5 * d * d : delta * (d - 0.5 * delta);
    }
    default: return (x > 0 ? (double)x : 0.0) - (double)x * y + log1p(exp(-fabs((double)x)));
    }
}

static int ew_loss_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    const ew_saved *sv = n->saved;
    if (!dx || sv->denom == 0.0) return MTFT_OK;
    const int kind = (int)n->i[0];
    const float delta = n->f[0];
    const float *x = n->in[0]->data;
    const float s = (float)(n->out->grad[0] / sv->denom);
    const int64_t N = mtft__numel(n->in[0]);
#pragma omp parallel for schedule(static) if (N > 32768)
    for (int64_t i = 0; i < N; i++) {
        if (sv->mask && sv->mask[i] == 0.0f) continue;
        dx[i] += s * ew_grad(kind, x[i], sv->targets[i], delta);
    }
    return MTFT_OK;
}
static const mtft_op_def mse_op = {"mse", ew_loss_backward};
static const mtft_op_def huber_op = {"huber", ew_loss_backward};
static const mtft_op_def bce_op = {"bce_logits", ew_loss_backward};

#define EW_CHUNK 8192

static mtft_tensor *ew_loss_common(mtft_graph *g, int kind, const mtft_op_def *op, mtft_tensor *pred,
                                   const float *targets, const float *mask, float delta) {
    if (!mtft__op_begin(g, 1, pred)) return NULL;
    if (!targets) return mtft__op_fail(g, MTFT_EINVAL, "%s: targets is NULL", op->name);
    if (kind == L_HUBER && !(delta > 0.0f))
        return mtft__op_fail(g, MTFT_ERANGE, "huber: delta %g must be > 0", (double)delta);
    mtft_tensor *x = pred;
    if (!mtft__contig(x)) {
        x = mtft_contiguous(g, x);
        if (!x) return NULL;
    }
    const int64_t N = mtft__numel(x);
    ew_saved *sv = mtft__scratch(g, sizeof *sv);
    float *tg = mtft__scratch(g, (size_t)N * sizeof(float));
    float *mk = mask ? mtft__scratch(g, (size_t)N * sizeof(float)) : NULL;
    const int64_t nc = (N + EW_CHUNK - 1) / EW_CHUNK;
    double *part = mtft__scratch(g, (size_t)nc * sizeof(double));
    if (!sv || !tg || (mask && !mk) || !part) return NULL;
    memcpy(tg, targets, (size_t)N * sizeof(float));
    double denom = (double)N;
    if (mask) {
        memcpy(mk, mask, (size_t)N * sizeof(float));
        denom = 0.0;
        for (int64_t i = 0; i < N; i++) {
            if (mk[i] != 0.0f && mk[i] != 1.0f)
                return mtft__op_fail(g, MTFT_ERANGE, "%s: mask[%lld] = %g is not 0 or 1", op->name, (long long)i,
                                     (double)mk[i]);
            denom += mk[i];
        }
    }
#pragma omp parallel for schedule(static) if (nc > 4)
    for (int64_t c = 0; c < nc; c++) {
        const int64_t lo = c * EW_CHUNK, hi = lo + EW_CHUNK < N ? lo + EW_CHUNK : N;
        double s = 0.0;
        for (int64_t i = lo; i < hi; i++)
            if (!mk || mk[i] != 0.0f) s += ew_loss(kind, x->data[i], tg[i], delta);
        part[c] = s;
    }
    mtft_tensor *y = scalar(g, denom > 0.0 ? ordered_sum(part, nc) / denom : 0.0);
    if (!y) return NULL;
    mtft_node *n = mtft__record(g, op, y, 1, x);
    if (n) {
        sv->targets = tg;
        sv->mask = mk;
        sv->denom = denom;
        n->saved = sv;
        n->i[0] = kind;
        n->f[0] = delta;
    }
    return y;
}

mtft_tensor *mtft_mse(mtft_graph *g, mtft_tensor *pred, const float *targets) {
    return ew_loss_common(g, L_MSE, &mse_op, pred, targets, NULL, 0.0f);
}
mtft_tensor *mtft_huber(mtft_graph *g, mtft_tensor *pred, const float *targets, float delta) {
    return ew_loss_common(g, L_HUBER, &huber_op, pred, targets, NULL, delta);
}
mtft_tensor *mtft_bce_logits(mtft_graph *g, mtft_tensor *logits, const float *targets, const float *mask) {
    return ew_loss_common(g, L_BCE, &bce_op, logits, targets, mask, 0.0f);
}
