/* PEFT ops with hand-written backward: combining per-task row ranges into a
 * projection output, and Poly's skill mixing. Both accumulate (+=) into
 * their inputs' gradients like every op in src/tensor/ops. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "../tensor/blas.h"
#include "mtft/rng.h"
#include "peft_impl.h"

/* ---- rows_combine -------------------------------------------------------------- */

typedef struct rc_saved {
    int n;
    mtft_tensor **src;
    int64_t *u0, *nu;
    int *add;
} rc_saved;

static int rows_combine_backward(mtft_graph *g, mtft_node *nd) {
    rc_saved *s = nd->saved;
    mtft_tensor *y = nd->in[0];
    const float *dout = nd->out->grad;
    int64_t B = y->ne[0], U = mtft__numel(y) / B;
    float *dy = mtft__grad(g, y);
    if (dy) {
        unsigned char *rep = mtft__scratch(g, (size_t)B);
        if (!rep) return MTFT_ENOMEM;
        memset(rep, 0, (size_t)B);
        for (int e = 0; e < s->n; e++)
            if (!s->add[e]) memset(rep + s->u0[e], 1, (size_t)s->nu[e]);
#pragma omp parallel for if (B * U > 65536)
        for (int64_t b = 0; b < B; b++) {
            if (rep[b]) continue;
            float *d = dy + b * U;
            const float *o = dout + b * U;
            for (int64_t i = 0; i < U; i++) d[i] += o[i];
        }
    }
    for (int e = 0; e < s->n; e++) {
        float *ds = mtft__grad(g, s->src[e]);
        if (!ds) continue;
        int64_t n = s->nu[e] * U;
        const float *o = dout + s->u0[e] * U;
#pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; i++) ds[i] += o[i];
    }
    return g->status;
}
static const mtft_op_def rows_combine_op = {"peft_rows_combine", rows_combine_backward};

mtft_tensor *mtft_peft__rows_combine(mtft_graph *g, mtft_tensor *y, int n, mtft_tensor **src, const int64_t *u0,
                                     const int64_t *nu, const int *add) {
    if (!mtft__op_begin(g, 1, y)) return NULL;
    for (int e = 0; e < n; e++)
        if (!mtft__op_begin(g, 1, src[e])) return NULL;
    if (n == 0) return y;
    char sy[64], ss[64];
    mtft__shape_str(y, sy, sizeof sy);
    if (!mtft__contig(y)) return mtft__op_fail(g, MTFT_EINVAL, "peft rows_combine: y %s is not contiguous", sy);
    int64_t B = y->ne[0], U = mtft__numel(y) / B;
    for (int e = 0; e < n; e++) {
        mtft_tensor *t = src[e];
        mtft__shape_str(t, ss, sizeof ss);
        if (u0[e] < 0 || nu[e] < 1 || u0[e] + nu[e] > B || t->ne[0] != nu[e] || mtft__numel(t) != nu[e] * U ||
            !mtft__contig(t))
            return mtft__op_fail(g, MTFT_ESHAPE,
                                 "peft rows_combine: entry %d %s does not fit rows [%lld, %lld) of y %s (contiguous, "
                                 "same row size)",
                                 e, ss, (long long)u0[e], (long long)(u0[e] + nu[e]), sy);
    }
    mtft_tensor *out = mtft__new(g, y->ndim, y->ne);
    if (!out) return NULL;
    memcpy(out->data, y->data, (size_t)(B * U) * sizeof(float));
    for (int e = 0; e < n; e++) {
        float *o = out->data + u0[e] * U;
        const float *sd = src[e]->data;
        int64_t m = nu[e] * U;
        if (add[e]) {
#pragma omp parallel for if (m > 65536)
            for (int64_t i = 0; i < m; i++) o[i] += sd[i];
        } else {
            memcpy(o, sd, (size_t)m * sizeof(float));
        }
    }
    /* The tape node lists y and one source that needs a gradient (so that
     * it is recorded when any does); all sources are in `saved`. */
    mtft_tensor *any = NULL;
    for (int e = 0; e < n && !any; e++)
        if (mtft__needs_grad(src[e])) any = src[e];
    mtft_node *nd = any ? mtft__record(g, &rows_combine_op, out, 2, y, any)
                        : mtft__record(g, &rows_combine_op, out, 1, y);
    if (nd) {
        rc_saved *s = mtft__scratch(g, sizeof *s);
        if (!s) return NULL;
        s->n = n;
        s->src = mtft__scratch(g, (size_t)n * sizeof *s->src);
        s->u0 = mtft__scratch(g, (size_t)n * sizeof *s->u0);
        s->nu = mtft__scratch(g, (size_t)n * sizeof *s->nu);
        s->add = mtft__scratch(g, (size_t)n * sizeof *s->add);
        if (!s->src || !s->u0 || !s->nu || !s->add) return NULL;
        memcpy(s->src, src, (size_t)n * sizeof *s->src);
        memcpy(s->u0, u0, (size_t)n * sizeof *s->u0);
        memcpy(s->nu, nu, (size_t)n * sizeof *s->nu);
        memcpy(s->add, add, (size_t)n * sizeof *s->add);
        nd->saved = s;
        nd->in[0] = y; /* backward reads y from in[0] */
    }
    return out;
}

/* ---- poly_mix -------------------------------------------------------------------- */

/* Logistic noise log u - log(1 - u), u uniform clamped to [eps, 1 - eps]
 * as torch's clamp_probs: a relaxed Bernoulli sample at temperature 1 is
 * sigmoid(logit + noise) (torch.distributions.RelaxedBernoulli.rsample). */
static void logistic_noise(uint64_t stream, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        double u = mtft_rng_hash_uniform(stream, (uint64_t)i);
        if (u < FLT_EPSILON) u = FLT_EPSILON;
        if (u > 1.0 - FLT_EPSILON) u = 1.0 - FLT_EPSILON;
        out[i] = (float)(log(u) - log1p(-u));
    }
}

/* Routing weights w [S, Q] of logits row l (S*Q floats); noise (S*Q, or
 * NULL) is added to the logits of sigmoid routing. */
static void poly_weights(const float *l, const float *noise, int64_t S, int64_t Q, int routing, float *w) {
    for (int64_t s = 0; s < S; s++) {
        const float *ls = l + s * Q;
        const float *ns = noise ? noise + s * Q : NULL;
        float *ws = w + s * Q;
        if (routing == MTFT_POLY_SOFTMAX) {
            float mx = ls[0];
            for (int64_t q = 1; q < Q; q++) mx = ls[q] > mx ? ls[q] : mx;
            double z = 0.0;
            for (int64_t q = 0; q < Q; q++) z += exp((double)(ls[q] - mx));
            for (int64_t q = 0; q < Q; q++) ws[q] = (float)(exp((double)(ls[q] - mx)) / z);
        } else {
            double z = 1e-12; /* PEFT's EPS */
            for (int64_t q = 0; q < Q; q++) {
                ws[q] = (float)(1.0 / (1.0 + exp(-((double)ls[q] + (ns ? (double)ns[q] : 0.0)))));
                z += ws[q];
            }
            for (int64_t q = 0; q < Q; q++) ws[q] = (float)(ws[q] / z);
        }
    }
}

static int poly_mix_backward(mtft_graph *g, mtft_node *nd) {
    mtft_tensor *logits = nd->in[0], *skills = nd->in[1];
    int64_t task = nd->i[0], routing = nd->i[1];
    int64_t S = skills->ne[0], Q = skills->ne[1], D = skills->ne[2];
    const float *dout = nd->out->grad;
    const float *w = nd->saved;
    const float *noise = nd->i[2] ? w + S * Q : NULL; /* training-time routing: saved after w */
    float *dsk = mtft__grad(g, skills), *dl = mtft__grad(g, logits);
    if (dsk)
        for (int64_t s = 0; s < S; s++)
            for (int64_t q = 0; q < Q; q++) {
                float ww = w[s * Q + q];
                float *d = dsk + (s * Q + q) * D;
                const float *o = dout + s * D;
                for (int64_t i = 0; i < D; i++) d[i] += ww * o[i];
            }
    if (dl) {
        const float *l = logits->data + task * S * Q;
        float *dlr = dl + task * S * Q;
        for (int64_t s = 0; s < S; s++) {
            double dw[64];
            double *dwp = dw;
            double *big = NULL;
            if (Q > 64) {
                big = mtft__scratch(g, (size_t)Q * sizeof(double));
                if (!big) return MTFT_ENOMEM;
                dwp = big;
            }
            for (int64_t q = 0; q < Q; q++) {
                const float *sk = skills->data + (s * Q + q) * D;
                const float *o = dout + s * D;
                double acc = 0.0;
                for (int64_t i = 0; i < D; i++) acc += (double)o[i] * sk[i];
                dwp[q] = acc;
            }
            const float *ws = w + s * Q;
            if (routing == MTFT_POLY_SOFTMAX) {
                double dot = 0.0;
                for (int64_t q = 0; q < Q; q++) dot += dwp[q] * ws[q];
                for (int64_t q = 0; q < Q; q++) dlr[s * Q + q] += (float)(ws[q] * (dwp[q] - dot));
            } else {
                /* w = a / Z, a = sigmoid(l), Z = sum a + eps:
                 * da_j = dw_j / Z - sum_q dw_q a_q / Z^2, dl_j = da_j a_j (1 - a_j) */
                double a[64], *ap = a, z = 1e-12, dot = 0.0;
                if (Q > 64) {
                    ap = mtft__scratch(g, (size_t)Q * sizeof(double));
                    if (!ap) return MTFT_ENOMEM;
                }
                for (int64_t q = 0; q < Q; q++) {
                    const double zq = (double)l[s * Q + q] + (noise ? (double)noise[s * Q + q] : 0.0);
                    ap[q] = 1.0 / (1.0 + exp(-zq));
                    z += ap[q];
                }
                for (int64_t q = 0; q < Q; q++) dot += dwp[q] * ap[q];
                for (int64_t q = 0; q < Q; q++) {
                    double da = dwp[q] / z - dot / (z * z);
                    dlr[s * Q + q] += (float)(da * ap[q] * (1.0 - ap[q]));
                }
            }
        }
    }
    return g->status;
}
static const mtft_op_def poly_mix_op = {"peft_poly_mix", poly_mix_backward};

mtft_tensor *mtft_peft__poly_mix(mtft_graph *g, mtft_tensor *logits, int task, mtft_tensor *skills,
                                 mtft_poly_routing routing) {
    if (!mtft__op_begin(g, 2, logits, skills)) return NULL;
    char sl[64], ss[64];
    mtft__shape_str(logits, sl, sizeof sl);
    mtft__shape_str(skills, ss, sizeof ss);
    if (skills->ndim != 3 || logits->ndim != 2 || logits->ne[1] != skills->ne[0] * skills->ne[1] || task < 0 ||
        task >= logits->ne[0] || !mtft__contig(logits) || !mtft__contig(skills))
        return mtft__op_fail(g, MTFT_ESHAPE, "peft poly_mix: logits %s (task %d) and skills %s do not fit "
                             "([K, S*Q] and [S, Q, D], contiguous)", sl, task, ss);
    int64_t S = skills->ne[0], Q = skills->ne[1], D = skills->ne[2];
    /* PEFT's router samples a relaxed Bernoulli while training (sigmoid
     * routing): one sample per call, i.e. per task and forward */
    const int sample = g->training && routing == MTFT_POLY_SIGMOID;
    float *w = mtft__scratch(g, (size_t)(S * Q) * (sample ? 2 : 1) * sizeof(float));
    int64_t shp[2] = {S, D};
    mtft_tensor *out = mtft__zeros(g, 2, shp);
    if (!w || !out) return NULL;
    float *noise = sample ? w + S * Q : NULL;
    if (noise) logistic_noise(mtft__graph_stream(g), S * Q, noise);
    poly_weights(logits->data + (int64_t)task * S * Q, noise, S, Q, (int)routing, w);
    for (int64_t s = 0; s < S; s++)
        for (int64_t q = 0; q < Q; q++) {
            float ww = w[s * Q + q];
            const float *sk = skills->data + (s * Q + q) * D;
            float *o = out->data + s * D;
            for (int64_t i = 0; i < D; i++) o[i] += ww * sk[i];
        }
    mtft_node *nd = mtft__record(g, &poly_mix_op, out, 2, logits, skills);
    if (nd) {
        nd->saved = w;
        nd->i[0] = task;
        nd->i[1] = routing;
        nd->i[2] = sample;
    }
    return out;
}

/* ---- lora_add (in place) ------------------------------------------------------------ */

typedef struct la_saved {
    int n;
    mtft_tensor **h, **w;
    int64_t *u0, *nu;
    float *scale;
    int *wt;
} la_saved;

static int lora_add_backward(mtft_graph *g, mtft_node *nd) {
    la_saved *s = nd->saved;
    mtft_tensor *y = nd->out;
    const float *dy = y->grad;
    int64_t O = y->ne[y->ndim - 1], rpu = mtft__numel(y) / (y->ne[0] * O), Ntot = y->ne[0] * rpu;
    for (int e = 0; e < s->n; e++) {
        mtft_tensor *h = s->h[e], *w = s->w[e];
        int64_t R = h->ne[h->ndim - 1], r0 = s->u0[e] * rpu, n = s->nu[e] * rpu;
        const float *dye = dy + r0 * O;
        float sc = s->scale[e];
        int wt = s->wt[e], rc = MTFT_OK;
        float *dh = mtft__grad(g, h);
        /* y_rows += sc * h op(w), op(w) = w^T ([out, R] stored) or w ([R, out]) */
        if (dh) rc = mtft__sgemm(0, !wt, n, R, O, sc, dye, O, w->data, wt ? R : O, 1.0f, dh, R);
        if (rc < 0) return rc;
        if (mtft__is_split(w)) {
            for (int k = 0; k < g->n_parts || k == 0; k++) {
                int64_t p0, p1;
                if ((rc = mtft__part_rows(g, w, Ntot, k, &p0, &p1)) < 0) return rc;
                p0 = p0 > r0 ? p0 : r0;
                p1 = p1 < r0 + n ? p1 : r0 + n;
                float *dwk = mtft__split_grad(g, w, k);
                if (!dwk) return g->status;
                if (p1 <= p0) continue;
                const float *hk = h->data + (p0 - r0) * R, *dyk = dy + p0 * O;
                rc = wt ? mtft__sgemm(1, 0, O, R, p1 - p0, sc, dyk, O, hk, R, 1.0f, dwk, R)
                        : mtft__sgemm(1, 0, R, O, p1 - p0, sc, hk, R, dyk, O, 1.0f, dwk, O);
                if (rc < 0) return rc;
            }
        } else {
            float *dw = mtft__grad(g, w);
            if (dw) rc = wt ? mtft__sgemm(1, 0, O, R, n, sc, dye, O, h->data, R, 1.0f, dw, R)
                            : mtft__sgemm(1, 0, R, O, n, sc, h->data, R, dye, O, 1.0f, dw, O);
            if (rc < 0) return rc;
        }
    }
    return g->status;
}
static const mtft_op_def lora_add_op = {"peft_lora_add", lora_add_backward};

mtft_tensor *mtft_peft__lora_add(mtft_graph *g, mtft_tensor *y, int n, mtft_tensor **h, mtft_tensor **w,
                                 const int64_t *u0, const int64_t *nu, const float *scale, const int *wt) {
    if (!mtft__op_begin(g, 1, y)) return NULL;
    for (int e = 0; e < n; e++)
        if (!mtft__op_begin(g, 2, h[e], w[e])) return NULL;
    if (n == 0) return y;
    char sy[64], sh[64], sw[64];
    mtft__shape_str(y, sy, sizeof sy);
    if (!mtft__contig(y) || y->ndim < 2)
        return mtft__op_fail(g, MTFT_EINVAL, "peft lora_add: y %s must be contiguous with >= 2 dims", sy);
    int64_t O = y->ne[y->ndim - 1], rpu = mtft__numel(y) / (y->ne[0] * O);
    for (int e = 0; e < n; e++) {
        int64_t R = h[e]->ne[h[e]->ndim - 1];
        mtft__shape_str(h[e], sh, sizeof sh);
        mtft__shape_str(w[e], sw, sizeof sw);
        int wok = w[e]->ndim == 2 && mtft__contig(w[e]) &&
                  (wt[e] ? (w[e]->ne[0] == O && w[e]->ne[1] == R) : (w[e]->ne[0] == R && w[e]->ne[1] == O));
        if (u0[e] < 0 || nu[e] < 1 || u0[e] + nu[e] > y->ne[0] || !mtft__contig(h[e]) ||
            mtft__numel(h[e]) != nu[e] * rpu * R || !wok)
            return mtft__op_fail(g, MTFT_ESHAPE,
                                 "peft lora_add: entry %d: h %s and weight %s do not fit rows [%lld, %lld) of y %s",
                                 e, sh, sw, (long long)u0[e], (long long)(u0[e] + nu[e]), sy);
    }
    for (int e = 0; e < n; e++) {
        int64_t R = h[e]->ne[h[e]->ndim - 1];
        int rc = mtft__sgemm(0, wt[e], nu[e] * rpu, O, R, scale[e], h[e]->data, R, w[e]->data, wt[e] ? R : O, 1.0f,
                             y->data + u0[e] * rpu * O, O);
        if (rc < 0) return mtft__op_fail(g, rc, "%s", mtft_error_last()->message);
    }
    mtft_tensor *any = NULL;
    for (int e = 0; e < n && !any; e++)
        if (mtft__needs_grad(h[e])) any = h[e];
        else if (mtft__needs_grad(w[e])) any = w[e];
    if (!any) return y;
    mtft_node *nd = mtft__record(g, &lora_add_op, y, 1, any);
    if (nd) {
        la_saved *s = mtft__scratch(g, sizeof *s);
        if (!s) return NULL;
        s->n = n;
        s->h = mtft__scratch(g, (size_t)n * sizeof *s->h);
        s->w = mtft__scratch(g, (size_t)n * sizeof *s->w);
        s->u0 = mtft__scratch(g, (size_t)n * sizeof *s->u0);
        s->nu = mtft__scratch(g, (size_t)n * sizeof *s->nu);
        s->scale = mtft__scratch(g, (size_t)n * sizeof *s->scale);
        s->wt = mtft__scratch(g, (size_t)n * sizeof *s->wt);
        if (!s->h || !s->w || !s->u0 || !s->nu || !s->scale || !s->wt) return NULL;
        memcpy(s->h, h, (size_t)n * sizeof *h);
        memcpy(s->w, w, (size_t)n * sizeof *w);
        memcpy(s->u0, u0, (size_t)n * sizeof *u0);
        memcpy(s->nu, nu, (size_t)n * sizeof *nu);
        memcpy(s->scale, scale, (size_t)n * sizeof *scale);
        memcpy(s->wt, wt, (size_t)n * sizeof *wt);
        nd->saved = s;
    }
    return y;
}

/* ---- lora_down ---------------------------------------------------------------------- */

static int lora_down_backward(mtft_graph *g, mtft_node *nd) {
    mtft_tensor *x = nd->in[0], *A = nd->in[1], *h = nd->out;
    int64_t u0 = nd->i[0], in = x->ne[x->ndim - 1], R = A->ne[0];
    int64_t rpu = mtft__numel(x) / (x->ne[0] * in), r0 = u0 * rpu, n = mtft__numel(h) / R, Ntot = x->ne[0] * rpu;
    const float *dh = h->grad;
    float *dx = mtft__grad(g, x);
    int rc = MTFT_OK;
    if (dx) rc = mtft__sgemm(0, 0, n, in, R, 1.0f, dh, R, A->data, in, 1.0f, dx + r0 * in, in);
    if (rc < 0) return rc;
    if (mtft__is_split(A)) {
        for (int k = 0; k < g->n_parts || k == 0; k++) {
            int64_t p0, p1;
            if ((rc = mtft__part_rows(g, A, Ntot, k, &p0, &p1)) < 0) return rc;
            p0 = p0 > r0 ? p0 : r0;
            p1 = p1 < r0 + n ? p1 : r0 + n;
            float *dak = mtft__split_grad(g, A, k);
            if (!dak) return g->status;
            if (p1 > p0 &&
                (rc = mtft__sgemm(1, 0, R, in, p1 - p0, 1.0f, dh + (p0 - r0) * R, R, x->data + p0 * in, in, 1.0f,
                                  dak, in)) < 0)
                return rc;
        }
    } else {
        float *dA = mtft__grad(g, A);
        if (dA) rc = mtft__sgemm(1, 0, R, in, n, 1.0f, dh, R, x->data + r0 * in, in, 1.0f, dA, in);
    }
    return rc < 0 ? rc : g->status;
}
static const mtft_op_def lora_down_op = {"peft_lora_down", lora_down_backward};

mtft_tensor *mtft_peft__lora_down(mtft_graph *g, mtft_tensor *x, mtft_tensor *A, int64_t u0, int64_t nu) {
    if (!mtft__op_begin(g, 2, x, A)) return NULL;
    char sx[64], sa[64];
    mtft__shape_str(x, sx, sizeof sx);
    mtft__shape_str(A, sa, sizeof sa);
    int64_t in = x->ne[x->ndim - 1];
    if (!mtft__contig(x) || x->ndim < 2 || A->ndim != 2 || A->ne[1] != in || !mtft__contig(A) || u0 < 0 || nu < 1 ||
        u0 + nu > x->ne[0])
        return mtft__op_fail(g, MTFT_ESHAPE, "peft lora_down: x %s (contiguous), A %s [R, in], rows [%lld, %lld)", sx,
                             sa, (long long)u0, (long long)(u0 + nu));
    int64_t R = A->ne[0], rpu = mtft__numel(x) / (x->ne[0] * in), n = nu * rpu;
    int64_t shp[2] = {n, R};
    mtft_tensor *h = mtft__new(g, 2, shp);
    if (!h) return NULL;
    int rc = mtft__sgemm(0, 1, n, R, in, 1.0f, x->data + u0 * rpu * in, in, A->data, in, 0.0f, h->data, R);
    if (rc < 0) return mtft__op_fail(g, rc, "%s", mtft_error_last()->message);
    mtft_node *nd = mtft__record(g, &lora_down_op, h, 2, x, A);
    if (nd) nd->i[0] = u0;
    return h;
}
