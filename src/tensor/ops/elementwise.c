/* Elementwise binary ops with suffix broadcasting, scale and bias.
 * a [..., S] op b [S'] where b's shape is a suffix of a's (b repeats over the
 * leading rows of a). Backward reduces over the repeats. */
#include <string.h>

#include "../tensor_impl.h"

enum { EW_ADD, EW_SUB, EW_MUL };

static int suffix_of(const mtft_tensor *b, const mtft_tensor *a) {
    if (b->ndim > a->ndim) return 0;
    for (int i = 1; i <= b->ndim; i++)
        if (b->ne[b->ndim - i] != a->ne[a->ndim - i]) return 0;
    return 1;
}

/* forward: y[r*S + j] = a[r*S + j] (op) b[j], R rows of S. */
static void ew_forward(int kind, float *y, const float *a, const float *b, int64_t R, int64_t S) {
#pragma omp parallel for if (R * S > 32768)
    for (int64_t r = 0; r < R; r++) {
        const float *ar = a + r * S;
        float *yr = y + r * S;
        switch (kind) {
        case EW_ADD: for (int64_t j = 0; j < S; j++) yr[j] = ar[j] + b[j]; break;
        case EW_SUB: for (int64_t j = 0; j < S; j++) yr[j] = ar[j] - b[j]; break;
        default: for (int64_t j = 0; j < S; j++) yr[j] = ar[j] * b[j]; break;
        }
    }
}

static int ew_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *a = n->in[0], *b = n->in[1];
    int kind = (int)n->i[0];
    int64_t S = mtft__numel(b), R = mtft__numel(a) / S;
    const float *dy = n->out->grad;
    float *da = mtft__grad(g, a), *db = mtft__grad(g, b);
    if (da) {
#pragma omp parallel for if (R * S > 32768)
        for (int64_t r = 0; r < R; r++) {
            const float *dyr = dy + r * S;
            float *dar = da + r * S;
            if (kind == EW_MUL)
                for (int64_t j = 0; j < S; j++) dar[j] += dyr[j] * b->data[j];
            else
                for (int64_t j = 0; j < S; j++) dar[j] += dyr[j];
        }
    }
    if (db) {
        /* reduce over rows; parallel over columns so each thread owns what it writes */
#pragma omp parallel for if (R * S > 32768)
        for (int64_t j = 0; j < S; j++) {
            float acc = 0.0f;
            for (int64_t r = 0; r < R; r++) {
                float d = dy[r * S + j];
                acc += kind == EW_MUL ? d * a->data[r * S + j] : d;
            }
            db[j] += kind == EW_SUB ? -acc : acc;
        }
    }
    return MTFT_OK;
}

static const mtft_op_def add_op = {"add", ew_backward};
static const mtft_op_def sub_op = {"sub", ew_backward};
static const mtft_op_def mul_op = {"mul", ew_backward};

static mtft_tensor *ew(mtft_graph *g, int kind, const mtft_op_def *op, mtft_tensor *a, mtft_tensor *b) {
    if (!mtft__op_begin(g, 2, a, b)) return NULL;
    char sa[64], sb[64];
    if (!mtft__contig(a) || !mtft__contig(b))
        return mtft__op_fail(g, MTFT_EINVAL, "%s: inputs must be contiguous (use mtft_contiguous)", op->name);
    if (!suffix_of(b, a))
        return mtft__op_fail(g, MTFT_ESHAPE, "%s: shape %s does not broadcast onto %s", op->name,
                             mtft__shape_str(b, sb, sizeof sb), mtft__shape_str(a, sa, sizeof sa));
    mtft_tensor *y = mtft__new(g, a->ndim, a->ne);
    if (!y) return NULL;
    int64_t S = mtft__numel(b);
    ew_forward(kind, y->data, a->data, b->data, mtft__numel(a) / S, S);
    mtft_node *n = mtft__record(g, op, y, 2, a, b);
    if (n) n->i[0] = kind;
    return y;
}

mtft_tensor *mtft_add(mtft_graph *g, mtft_tensor *a, mtft_tensor *b) { return ew(g, EW_ADD, &add_op, a, b); }
mtft_tensor *mtft_sub(mtft_graph *g, mtft_tensor *a, mtft_tensor *b) { return ew(g, EW_SUB, &sub_op, a, b); }
mtft_tensor *mtft_mul(mtft_graph *g, mtft_tensor *a, mtft_tensor *b) { return ew(g, EW_MUL, &mul_op, a, b); }

/* bias: a [..., C] + bias [C] */
mtft_tensor *mtft_bias(mtft_graph *g, mtft_tensor *a, mtft_tensor *bias) {
    if (!mtft__op_begin(g, 2, a, bias)) return NULL;
    if (bias->ndim != 1 || bias->ne[0] != a->ne[a->ndim - 1]) {
        char sa[64], sb[64];
        return mtft__op_fail(g, MTFT_ESHAPE, "bias: bias %s does not match the last dim of %s",
                             mtft__shape_str(bias, sb, sizeof sb), mtft__shape_str(a, sa, sizeof sa));
    }
    return ew(g, EW_ADD, &add_op, a, bias);
}

static int scale_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const float *dy = n->out->grad;
    float s = n->f[0];
    int64_t N = mtft__numel(n->out);
#pragma omp parallel for if (N > 32768)
    for (int64_t i = 0; i < N; i++) dx[i] += s * dy[i];
    return MTFT_OK;
}
static const mtft_op_def scale_op = {"scale", scale_backward};

mtft_tensor *mtft_scale(mtft_graph *g, mtft_tensor *a, float s) {
    if (!mtft__op_begin(g, 1, a)) return NULL;
    if (!mtft__contig(a)) return mtft__op_fail(g, MTFT_EINVAL, "scale: input must be contiguous");
    mtft_tensor *y = mtft__new(g, a->ndim, a->ne);
    if (!y) return NULL;
    int64_t N = mtft__numel(a);
#pragma omp parallel for if (N > 32768)
    for (int64_t i = 0; i < N; i++) y->data[i] = s * a->data[i];
    mtft_node *n = mtft__record(g, &scale_op, y, 1, a);
    if (n) n->f[0] = s;
    return y;
}
