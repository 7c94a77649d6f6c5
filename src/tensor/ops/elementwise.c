/* Elementwise binary ops with suffix broadcasting, scale and bias.
 * a [..., S] op b [S'] where b's shape is a suffix of a's (b repeats over the
 * leading rows of a). Backward reduces over the repeats. */
#include <string.h>

#include "../tensor_impl.h"
#include "ops_grad.h"

enum { EW_ADD, EW_SUB, EW_MUL };

static int suffix_of(const mtft_tensor *b, const mtft_tensor *a) {
    if (b->ndim > a->ndim) return 0;
    for (int i = 1; i <= b->ndim; i++)
        if (b->ne[b->ndim - i] != a->ne[a->ndim - i]) return 0;
    return 1;
}

/* Elementwise work is parallel over flat chunks of EW_CHUNK elements (so a
 * same-shape op, one "row" of S, still splits over threads) when it has more
 * than EW_PAR elements. */
#define EW_PAR 32768
#define EW_CHUNK 16384

/* forward: y[r*S + j] = a[r*S + j] (op) b[j], R rows of S. */
static void ew_forward(int kind, float *y, const float *a, const float *b, int64_t R, int64_t S) {
    const int64_t n = R * S, nch = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for if (n > EW_PAR)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t i1 = (c + 1) * EW_CHUNK < n ? (c + 1) * EW_CHUNK : n;
        for (int64_t i = c * EW_CHUNK; i < i1;) {
            /* the run of this chunk inside one row of b */
            const int64_t j0 = i % S, m = (S - j0 < i1 - i) ? S - j0 : i1 - i;
            const float *ar = a + i, *br = b + j0;
            float *yr = y + i;
            switch (kind) {
            case EW_ADD: for (int64_t j = 0; j < m; j++) yr[j] = ar[j] + br[j]; break;
            case EW_SUB: for (int64_t j = 0; j < m; j++) yr[j] = ar[j] - br[j]; break;
            default: for (int64_t j = 0; j < m; j++) yr[j] = ar[j] * br[j]; break;
            }
            i += m;
        }
    }
}

/* da (+)= dy (times b for mul), over R rows of S; write: store instead of add
 * (da was fresh). */
static void ew_grad_a(int kind, int write, float *da, const float *dy, const float *b, int64_t R, int64_t S) {
    const int64_t n = R * S, nch = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for if (n > EW_PAR)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t i1 = (c + 1) * EW_CHUNK < n ? (c + 1) * EW_CHUNK : n;
        if (kind != EW_MUL) {
            if (write) memcpy(da + c * EW_CHUNK, dy + c * EW_CHUNK, (size_t)(i1 - c * EW_CHUNK) * sizeof(float));
            else
                for (int64_t i = c * EW_CHUNK; i < i1; i++) da[i] += dy[i];
            continue;
        }
        for (int64_t i = c * EW_CHUNK; i < i1;) {
            const int64_t j0 = i % S, m = (S - j0 < i1 - i) ? S - j0 : i1 - i;
            const float *br = b + j0, *dyr = dy + i;
            float *dr = da + i;
            if (write)
                for (int64_t j = 0; j < m; j++) dr[j] = dyr[j] * br[j];
            else
                for (int64_t j = 0; j < m; j++) dr[j] += dyr[j] * br[j];
            i += m;
        }
    }
}

/* db[j] (+)= sum over rows r of dy[r*S + j] (times a[r*S + j] for mul;
 * negated for sub), in row order; parallel over column blocks so each thread
 * owns what it writes. */
static void ew_grad_b(int kind, int write, float *db, const float *dy, const float *a, int64_t R, int64_t S) {
    enum { CB = 256 };
    const int64_t nblk = (S + CB - 1) / CB;
#pragma omp parallel for if (R * S > EW_PAR && nblk > 1)
    for (int64_t bk = 0; bk < nblk; bk++) {
        const int64_t j0 = bk * CB, m = j0 + CB < S ? CB : S - j0;
        float acc[CB];
        for (int64_t j = 0; j < m; j++) acc[j] = 0.0f;
        for (int64_t r = 0; r < R; r++) {
            const float *d = dy + r * S + j0;
            if (kind == EW_MUL) {
                const float *ar = a + r * S + j0;
                for (int64_t j = 0; j < m; j++) acc[j] += d[j] * ar[j];
            } else {
                for (int64_t j = 0; j < m; j++) acc[j] += d[j];
            }
        }
        float *o = db + j0;
        if (kind == EW_SUB)
            for (int64_t j = 0; j < m; j++) o[j] = write ? -acc[j] : o[j] - acc[j];
        else
            for (int64_t j = 0; j < m; j++) o[j] = write ? acc[j] : o[j] + acc[j];
    }
}

static int ew_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *a = n->in[0], *b = n->in[1];
    int kind = (int)n->i[0];
    int64_t S = mtft__numel(b), R = mtft__numel(a) / S;
    const float *dy = n->out->grad;
    int fresh = 0;
    /* b first: its gradient reads dy, which a may take over below */
    float *db = mtft__grad_w(g, b, &fresh);
    if (db && R == 1 && kind == EW_ADD) ew_grad_a(EW_ADD, fresh, db, dy, NULL, 1, S); /* same shape: a copy */
    else if (db) ew_grad_b(kind, fresh, db, dy, a->data, R, S);
    if (g->status < 0) return g->status;
    /* a residual add: a takes dy's buffer as its gradient (no copy) */
    if (kind != EW_MUL && mtft__grad_adopt(g, n, a)) return MTFT_OK;
    float *da = mtft__grad_w(g, a, &fresh);
    if (da) ew_grad_a(kind, fresh, da, dy, b->data, R, S);
    return g->status < 0 ? g->status : MTFT_OK;
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
