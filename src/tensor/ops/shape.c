/* Shape ops: reshape, slice and transpose are views (no copy) sharing their
 * input's data; contiguous copies; concat joins along one dim.
 *
 * A view has its own gradient buffer, contiguous in the view's logical order.
 * Its backward scatters that buffer into the input's gradient (contiguous in
 * the input's logical order) through "gradient strides": the view transform
 * applied to the input's contiguous strides (node i[0..3] strides, i[4]
 * offset). A slice or transpose of a view routes its gradient straight to
 * the root of the view chain (grad_route). */
#include <string.h>

#include "../tensor_impl.h"

/* Logical (contiguous) strides of a shape. */
static void contig_strides(const mtft_tensor *t, int64_t cs[MTFT_MAX_DIMS]) {
    int64_t s = 1;
    for (int i = MTFT_MAX_DIMS - 1; i >= 0; i--) {
        cs[i] = s;
        s *= (i < t->ndim) ? t->ne[i] : 1;
    }
}

/* dst[idx through dst strides] += src[logical idx of shape ne] (4-D walk). */
static void scatter_add(float *dst, const int64_t dst_st[MTFT_MAX_DIMS], int64_t dst_off, const float *src,
                        const int64_t ne[MTFT_MAX_DIMS]) {
    const int64_t n01 = ne[0] * ne[1];
#pragma omp parallel for schedule(static) if (n01 * ne[2] * ne[3] > 32768)
    for (int64_t ab = 0; ab < n01; ab++) {
        const int64_t a = ab / ne[1], b = ab % ne[1];
        const float *s = src + ab * ne[2] * ne[3];
        float *d = dst + dst_off + a * dst_st[0] + b * dst_st[1];
        for (int64_t c = 0; c < ne[2]; c++)
            for (int64_t e = 0; e < ne[3]; e++) d[c * dst_st[2] + e * dst_st[3]] += s[c * ne[3] + e];
    }
}

/* dst contiguous (logical) = src read through its strides. */
static void gather_copy(float *dst, const float *src, const int64_t src_st[MTFT_MAX_DIMS],
                        const int64_t ne[MTFT_MAX_DIMS]) {
    const int64_t n01 = ne[0] * ne[1];
#pragma omp parallel for schedule(static) if (n01 * ne[2] * ne[3] > 32768)
    for (int64_t ab = 0; ab < n01; ab++) {
        const int64_t a = ab / ne[1], b = ab % ne[1];
        float *d = dst + ab * ne[2] * ne[3];
        const float *s = src + a * src_st[0] + b * src_st[1];
        if (src_st[3] == 1)
            for (int64_t c = 0; c < ne[2]; c++) memcpy(d + c * ne[3], s + c * src_st[2], (size_t)ne[3] * sizeof(float));
        else
            for (int64_t c = 0; c < ne[2]; c++)
                for (int64_t e = 0; e < ne[3]; e++) d[c * ne[3] + e] = s[c * src_st[2] + e * src_st[3]];
    }
}

/* ---- views ------------------------------------------------------------------ */
static int view_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const int64_t gs[MTFT_MAX_DIMS] = {n->i[0], n->i[1], n->i[2], n->i[3]};
    scatter_add(dx, gs, n->i[4], n->out->grad, n->out->ne);
    return MTFT_OK;
}

static const mtft_op_def reshape_op = {"reshape", view_backward};
static const mtft_op_def slice_op = {"slice", view_backward};
static const mtft_op_def transpose_op = {"transpose", view_backward};

static void record_view(mtft_graph *g, const mtft_op_def *op, mtft_tensor *y, mtft_tensor *x,
                        const int64_t gs[MTFT_MAX_DIMS], int64_t off) {
    mtft_node *n = mtft__record(g, op, y, 1, x);
    if (!n) return;
    for (int i = 0; i < MTFT_MAX_DIMS; i++) n->i[i] = gs[i];
    n->i[4] = off;
}

static int norm_dim(int dim, int ndim) { return dim < 0 ? dim + ndim : dim; }

/* Gradient routing for a slice or transpose of x. When x is itself a view
 * made by a recorded reshape/slice/transpose node (found among the last few
 * nodes of the tape), compose with that node's map instead: its gradient
 * strides already take x's multi-index to its own input's logical index, and
 * slice/transpose only permute or shift the multi-index, so the composed map
 * is again strides + offset. The new node then scatters straight into the
 * root's gradient, and chains like reshape -> transpose -> slice (the q, k, v
 * heads of a fused projection) cost one scatter in backward, not three. x's
 * own node still runs if anything else flowed into x. */
static mtft_tensor *grad_route(mtft_graph *g, mtft_tensor *x, int64_t gs[MTFT_MAX_DIMS], int64_t *off) {
    if (x->flags & MTFT_TF_VIEW) {
        const int lo = g->n_nodes > 8 ? g->n_nodes - 8 : 0;
        for (int i = g->n_nodes - 1; i >= lo; i--) {
            const mtft_node *nd = &g->nodes[i];
            if (nd->out != x) continue;
            if (nd->op != &reshape_op && nd->op != &slice_op && nd->op != &transpose_op) break;
            for (int k = 0; k < MTFT_MAX_DIMS; k++) gs[k] = nd->i[k];
            *off = nd->i[4];
            return nd->in[0];
        }
    }
    contig_strides(x, gs);
    *off = 0;
    return x;
}

mtft_tensor *mtft_reshape(mtft_graph *g, mtft_tensor *x, int ndim, const int64_t *shape) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    char sx[64];
    if (ndim < 1 || ndim > MTFT_MAX_DIMS || !shape)
        return mtft__op_fail(g, MTFT_EINVAL, "reshape: ndim %d outside 1..%d (input %s)", ndim, MTFT_MAX_DIMS,
                             mtft__shape_str(x, sx, sizeof sx));
    if (!mtft__contig(x))
        return mtft__op_fail(g, MTFT_EINVAL, "reshape: input %s is not contiguous; call mtft_contiguous first",
                             mtft__shape_str(x, sx, sizeof sx));
    int64_t ne[MTFT_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        ne[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return mtft__op_fail(g, MTFT_ESHAPE, "reshape: more than one -1 in the new shape (dims %d and %d)",
                                     infer, i);
            infer = i;
        } else if (shape[i] <= 0) {
            return mtft__op_fail(g, MTFT_ESHAPE, "reshape: new dim %d has size %lld", i, (long long)shape[i]);
        } else {
            known *= shape[i];
        }
    }
    const int64_t N = mtft__numel(x);
    if (infer >= 0) {
        if (N % known != 0)
            return mtft__op_fail(g, MTFT_ESHAPE, "reshape: cannot infer dim %d: %lld elements of %s are not a multiple of %lld",
                                 infer, (long long)N, mtft__shape_str(x, sx, sizeof sx), (long long)known);
        ne[infer] = N / known;
        known *= ne[infer];
    }
    if (known != N)
        return mtft__op_fail(g, MTFT_ESHAPE, "reshape: %s has %lld elements, the new shape %lld",
                             mtft__shape_str(x, sx, sizeof sx), (long long)N, (long long)known);
    mtft_tensor *y = mtft__view(g, x);
    if (!y) return NULL;
    y->ndim = ndim;
    int64_t s = 1;
    for (int i = MTFT_MAX_DIMS - 1; i >= 0; i--) {
        y->ne[i] = i < ndim ? ne[i] : 1;
        y->st[i] = s;
        s *= y->ne[i];
    }
    int64_t gs[MTFT_MAX_DIMS];
    contig_strides(y, gs); /* same flat order as x's logical order */
    record_view(g, &reshape_op, y, x, gs, 0);
    return y;
}

mtft_tensor *mtft_slice(mtft_graph *g, mtft_tensor *x, int dim, int64_t start, int64_t len) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    char sx[64];
    int d = norm_dim(dim, x->ndim);
    if (d < 0 || d >= x->ndim)
        return mtft__op_fail(g, MTFT_EINVAL, "slice: dim %d out of range for %s", dim, mtft__shape_str(x, sx, sizeof sx));
    if (start < 0 || len < 1 || start + len > x->ne[d])
        return mtft__op_fail(g, MTFT_ERANGE, "slice: [%lld, %lld) of dim %d is outside 0..%lld of %s", (long long)start,
                             (long long)(start + len), d, (long long)x->ne[d], mtft__shape_str(x, sx, sizeof sx));
    mtft_tensor *y = mtft__view(g, x);
    if (!y) return NULL;
    y->ne[d] = len;
    y->data = x->data + start * x->st[d];
    int64_t gs[MTFT_MAX_DIMS], off;
    mtft_tensor *root = grad_route(g, x, gs, &off);
    record_view(g, &slice_op, y, root, gs, off + start * gs[d]);
    return y;
}

mtft_tensor *mtft_transpose(mtft_graph *g, mtft_tensor *x, int dim0, int dim1) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    char sx[64];
    int d0 = norm_dim(dim0, x->ndim), d1 = norm_dim(dim1, x->ndim);
    if (d0 < 0 || d0 >= x->ndim || d1 < 0 || d1 >= x->ndim)
        return mtft__op_fail(g, MTFT_EINVAL, "transpose: dims %d, %d out of range for %s", dim0, dim1,
                             mtft__shape_str(x, sx, sizeof sx));
    mtft_tensor *y = mtft__view(g, x);
    if (!y) return NULL;
    int64_t gs[MTFT_MAX_DIMS], off, t;
    mtft_tensor *root = grad_route(g, x, gs, &off);
    t = y->ne[d0], y->ne[d0] = y->ne[d1], y->ne[d1] = t;
    t = y->st[d0], y->st[d0] = y->st[d1], y->st[d1] = t;
    t = gs[d0], gs[d0] = gs[d1], gs[d1] = t;
    record_view(g, &transpose_op, y, root, gs, off);
    return y;
}

/* ---- contiguous ---------------------------------------------------------- */
static int contiguous_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const float *dy = n->out->grad;
    const int64_t N = mtft__numel(n->out);
#pragma omp parallel for schedule(static) if (N > 32768)
    for (int64_t i = 0; i < N; i++) dx[i] += dy[i]; /* both in logical order */
    return MTFT_OK;
}
static const mtft_op_def contiguous_op = {"contiguous", contiguous_backward};

mtft_tensor *mtft_contiguous(mtft_graph *g, mtft_tensor *x) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (mtft__contig(x)) return x;
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    if (!y) return NULL;
    gather_copy(y->data, x->data, x->st, x->ne);
    mtft__record(g, &contiguous_op, y, 1, x);
    return y;
}

/* ---- concat ---------------------------------------------------------------- */
/* saved: the n input pointers; i[0] = n, i[1] = dim. Input k occupies
 * [off_k, off_k + ne_k[dim]) of the output's dim. */
static int concat_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor **xs = n->saved;
    const int nx = (int)n->i[0], dim = (int)n->i[1];
    const mtft_tensor *y = n->out;
    int64_t ys[MTFT_MAX_DIMS];
    contig_strides(y, ys);
    int64_t off = 0;
    for (int k = 0; k < nx; k++) {
        float *dx = mtft__grad(g, xs[k]);
        if (dx) {
            /* dx (contiguous over xs[k]'s shape) += dy restricted to the slab */
            const float *src = y->grad + off * ys[dim];
            const int64_t *ne = xs[k]->ne;
            const int64_t n01 = ne[0] * ne[1];
#pragma omp parallel for schedule(static) if (n01 * ne[2] * ne[3] > 32768)
            for (int64_t ab = 0; ab < n01; ab++) {
                const int64_t a = ab / ne[1], b = ab % ne[1];
                float *d = dx + ab * ne[2] * ne[3];
                const float *s = src + a * ys[0] + b * ys[1];
                for (int64_t c = 0; c < ne[2]; c++)
                    for (int64_t e = 0; e < ne[3]; e++) d[c * ne[3] + e] += s[c * ys[2] + e * ys[3]];
            }
        } else if (g->status < 0) {
            return g->status;
        }
        off += xs[k]->ne[dim];
    }
    return MTFT_OK;
}
static const mtft_op_def concat_op = {"concat", concat_backward};

mtft_tensor *mtft_concat(mtft_graph *g, mtft_tensor *const *xs, int n, int dim) {
    if (!mtft__op_begin(g, 0)) return NULL;
    if (!xs || n < 1) return mtft__op_fail(g, MTFT_EINVAL, "concat: need at least one tensor (n = %d)", n);
    for (int k = 0; k < n; k++)
        if (!mtft__op_begin(g, 1, xs[k])) return NULL;
    char s0[64], sk[64];
    const mtft_tensor *x0 = xs[0];
    const int d = norm_dim(dim, x0->ndim);
    if (d < 0 || d >= x0->ndim)
        return mtft__op_fail(g, MTFT_EINVAL, "concat: dim %d out of range for %s", dim, mtft__shape_str(x0, s0, sizeof s0));
    int64_t ne[MTFT_MAX_DIMS];
    for (int i = 0; i < MTFT_MAX_DIMS; i++) ne[i] = x0->ne[i];
    ne[d] = 0;
    int any_grad = 0;
    for (int k = 0; k < n; k++) {
        const mtft_tensor *x = xs[k];
        int ok = x->ndim == x0->ndim;
        for (int i = 0; ok && i < x0->ndim; i++)
            if (i != d && x->ne[i] != x0->ne[i]) ok = 0;
        if (!ok)
            return mtft__op_fail(g, MTFT_ESHAPE, "concat: tensor %d has shape %s, tensor 0 %s (must match except dim %d)",
                                 k, mtft__shape_str(x, sk, sizeof sk), mtft__shape_str(x0, s0, sizeof s0), d);
        ne[d] += x->ne[d];
        if (mtft__needs_grad(x)) any_grad = 1;
    }
    mtft_tensor *y = mtft__new(g, x0->ndim, ne);
    if (!y) return NULL;
    int64_t ys[MTFT_MAX_DIMS];
    contig_strides(y, ys);
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        const mtft_tensor *x = xs[k];
        const int64_t n01 = x->ne[0] * x->ne[1];
        float *dst = y->data + off * ys[d];
#pragma omp parallel for schedule(static) if (n01 * x->ne[2] * x->ne[3] > 32768)
        for (int64_t ab = 0; ab < n01; ab++) {
            const int64_t a = ab / x->ne[1], b = ab % x->ne[1];
            float *dd = dst + a * ys[0] + b * ys[1];
            const float *s = x->data + a * x->st[0] + b * x->st[1];
            for (int64_t c = 0; c < x->ne[2]; c++)
                for (int64_t e = 0; e < x->ne[3]; e++) dd[c * ys[2] + e * ys[3]] = s[c * x->st[2] + e * x->st[3]];
        }
        off += x->ne[d];
    }
    if (any_grad && g->grad_enabled) {
        /* the node's in[] holds at most MTFT_NODE_MAX_IN tensors: keep all of
         * them in saved and record against one that needs a gradient */
        mtft_tensor *first = NULL;
        for (int k = 0; k < n && !first; k++)
            if (mtft__needs_grad(xs[k])) first = xs[k];
        mtft_tensor **keep = mtft__scratch(g, (size_t)n * sizeof *keep);
        if (!keep) return NULL;
        memcpy(keep, xs, (size_t)n * sizeof *keep);
        mtft_node *nd = mtft__record(g, &concat_op, y, 1, first);
        if (nd) {
            nd->saved = keep;
            nd->i[0] = n;
            nd->i[1] = d;
        }
    }
    return y;
}
