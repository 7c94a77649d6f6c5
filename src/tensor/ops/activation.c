/* Activations: gelu_tanh, gelu_erf, silu, sigmoid, relu, tanh, and swiglu
 * (silu(gate) * up). Elementwise over contiguous inputs; one tight loop per
 * kind (the switch is outside the loops), parallel over elements. Backward
 * reads the saved input (and, for sigmoid and tanh, the output). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../tensor_impl.h"
#include "ops_grad.h"
#include "ops_simd.h"

/* Let GCC if-convert the clamps in exp_approx so these loops vectorise: we
 * never read floating-point exception flags. Results are unchanged (this is
 * not -ffast-math: no reassociation, no finite-math assumptions). Clang
 * already defaults to this. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

enum { ACT_GELU_TANH, ACT_GELU_ERF, ACT_SILU, ACT_SIGMOID, ACT_RELU, ACT_TANH };

#define ACT_PAR 8192
#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* 1 / (1 + e^-x): relative error ~3e-7 for all x (no cancellation). */
__attribute__((always_inline)) static inline float sigmoidf(float x) { return 1.0f / (1.0f + mtft__vexpf(-x)); }

/* 1 + erf(x), branch-free: Abramowitz & Stegun 7.1.26 (|erf error| <= 1.5e-7)
 * with erfc(z) = P(t) e^{-z^2}, t = 1 / (1 + p z), z = |x|. For x < 0 this is
 * erfc(z) itself, so the left tail keeps its relative accuracy. */
__attribute__((always_inline)) static inline float one_plus_erf(float x) {
    float z = x < 0.0f ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float erfc = p * t * mtft__vexpf(-z * z);
    return x < 0.0f ? erfc : 2.0f - erfc;
}

MTFT_SIMD_CLONES static void act_forward(int kind, float *y, const float *x, int64_t N) {
    switch (kind) {
    case ACT_GELU_TANH:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) {
            /* 0.5 (1 + tanh(u)) = sigmoid(2u): no tanhf, no cancellation */
            float v = x[i];
            y[i] = v * sigmoidf(2.0f * GELU_K * (v + GELU_C * v * v * v));
        }
        break;
    case ACT_GELU_ERF:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) y[i] = 0.5f * x[i] * one_plus_erf(x[i] * INV_SQRT2);
        break;
    case ACT_SILU:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) y[i] = x[i] * sigmoidf(x[i]);
        break;
    case ACT_SIGMOID:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) y[i] = sigmoidf(x[i]);
        break;
    case ACT_RELU:
#pragma omp parallel for if (N > 32768)
        for (int64_t i = 0; i < N; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN stays NaN */
        break;
    default:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) y[i] = tanhf(x[i]);
        break;
    }
}

/* d/dx [x s(2u)] = s + 2 x s (1 - s) u', s = sigmoid(2u) */
__attribute__((always_inline)) static inline float gelu_tanh_grad(float v) {
    float s = sigmoidf(2.0f * GELU_K * (v + GELU_C * v * v * v));
    float du = GELU_K * (1.0f + 3.0f * GELU_C * v * v);
    return s + 2.0f * v * s * (1.0f - s) * du;
}

/* dx = dy * gelu_tanh'(x), dx fresh (stored, not accumulated) */
MTFT_SIMD_CLONES static void gelu_tanh_bwd_write(float *dx, const float *dy, const float *x, int64_t N) {
#pragma omp parallel for if (N > ACT_PAR)
    for (int64_t i = 0; i < N; i++) dx[i] = dy[i] * gelu_tanh_grad(x[i]);
}

/* dx += dy * f'(x) */
MTFT_SIMD_CLONES static void act_backward_k(int kind, float *dx, const float *dy, const float *x, const float *y, int64_t N) {
    switch (kind) {
    case ACT_GELU_TANH:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) dx[i] += dy[i] * gelu_tanh_grad(x[i]);
        break;
    case ACT_GELU_ERF:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) {
            float v = x[i];
            dx[i] += dy[i] * (0.5f * one_plus_erf(v * INV_SQRT2) + v * INV_SQRT_2PI * mtft__vexpf(-0.5f * v * v));
        }
        break;
    case ACT_SILU:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) {
            float s = sigmoidf(x[i]);
            dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case ACT_SIGMOID:
#pragma omp parallel for if (N > 32768)
        for (int64_t i = 0; i < N; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case ACT_RELU:
#pragma omp parallel for if (N > 32768)
        for (int64_t i = 0; i < N; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    default:
#pragma omp parallel for if (N > 32768)
        for (int64_t i = 0; i < N; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

static int act_backward(mtft_graph *g, mtft_node *n) {
    const int kind = (int)n->i[0];
    int fresh = 0;
    /* GELU (the MLP's): a fresh gradient is stored, not added to zeros */
    float *dx = kind == ACT_GELU_TANH ? mtft__grad_w(g, n->in[0], &fresh) : mtft__grad(g, n->in[0]);
    if (!dx) return g->status < 0 ? g->status : MTFT_OK;
    if (fresh) gelu_tanh_bwd_write(dx, n->out->grad, n->in[0]->data, mtft__numel(n->out));
    else act_backward_k(kind, dx, n->out->grad, n->in[0]->data, n->out->data, mtft__numel(n->out));
    return MTFT_OK;
}

static const mtft_op_def gelu_tanh_op = {"gelu_tanh", act_backward};
static const mtft_op_def gelu_erf_op = {"gelu_erf", act_backward};
static const mtft_op_def silu_op = {"silu", act_backward};
static const mtft_op_def sigmoid_op = {"sigmoid", act_backward};
static const mtft_op_def relu_op = {"relu", act_backward};
static const mtft_op_def tanh_op = {"tanh", act_backward};

static mtft_tensor *act(mtft_graph *g, int kind, const mtft_op_def *op, mtft_tensor *x) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!mtft__contig(x)) {
        char sx[64];
        return mtft__op_fail(g, MTFT_EINVAL, "%s: x %s must be contiguous (use mtft_contiguous)", op->name,
                             mtft__shape_str(x, sx, sizeof sx));
    }
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    if (!y) return NULL;
    act_forward(kind, y->data, x->data, mtft__numel(x));
    mtft_node *n = mtft__record(g, op, y, 1, x);
    if (n) n->i[0] = kind;
    return y;
}

mtft_tensor *mtft_gelu_tanh(mtft_graph *g, mtft_tensor *x) { return act(g, ACT_GELU_TANH, &gelu_tanh_op, x); }
mtft_tensor *mtft_gelu_erf(mtft_graph *g, mtft_tensor *x) { return act(g, ACT_GELU_ERF, &gelu_erf_op, x); }
mtft_tensor *mtft_silu(mtft_graph *g, mtft_tensor *x) { return act(g, ACT_SILU, &silu_op, x); }
mtft_tensor *mtft_sigmoid(mtft_graph *g, mtft_tensor *x) { return act(g, ACT_SIGMOID, &sigmoid_op, x); }
mtft_tensor *mtft_relu(mtft_graph *g, mtft_tensor *x) { return act(g, ACT_RELU, &relu_op, x); }
mtft_tensor *mtft_tanh(mtft_graph *g, mtft_tensor *x) { return act(g, ACT_TANH, &tanh_op, x); }

/* ---- bias + gelu_tanh: y = gelu_tanh(x + b) -------------------------------- */

#define BG_RCHUNK 32 /* rows per partial sum of db */

MTFT_SIMD_CLONES static void bias_gelu_fwd_k(float *y, const float *x, const float *b, int64_t N, int64_t F) {
#pragma omp parallel for if (N * F > ACT_PAR)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * F;
        float *yr = y + r * F;
        for (int64_t j = 0; j < F; j++) {
            float v = xr[j] + b[j];
            yr[j] = v * sigmoidf(2.0f * GELU_K * (v + GELU_C * v * v * v));
        }
    }
}

/* d = dy * gelu'(x + b) per element: dx (+)= d (dx may be NULL; store when
 * dx_write); part[c * F + j] = sum of d over the rows of chunk c (when part).
 * Then db[j] += sum over chunks in order. One parallel region. */
MTFT_SIMD_CLONES static void bias_gelu_bwd_k(float *dx, int dx_write, float *part, float *db, const float *dy,
                                             const float *x, const float *b, int64_t N, int64_t F) {
    const int64_t nchunk = (N + BG_RCHUNK - 1) / BG_RCHUNK;
#pragma omp parallel if (N * F > ACT_PAR)
    {
#pragma omp for schedule(static)
        for (int64_t c = 0; c < nchunk; c++) {
            const int64_t r1 = (c + 1) * BG_RCHUNK < N ? (c + 1) * BG_RCHUNK : N;
            float *pc = part ? part + c * F : NULL;
            if (pc) memset(pc, 0, (size_t)F * sizeof(float));
            for (int64_t r = c * BG_RCHUNK; r < r1; r++) {
                const float *xr = x + r * F, *dyr = dy + r * F;
                float *dxr = dx ? dx + r * F : NULL;
                if (dxr && dx_write && pc)
                    for (int64_t j = 0; j < F; j++) {
                        const float d = dyr[j] * gelu_tanh_grad(xr[j] + b[j]);
                        dxr[j] = d;
                        pc[j] += d;
                    }
                else if (dxr && dx_write)
                    for (int64_t j = 0; j < F; j++) dxr[j] = dyr[j] * gelu_tanh_grad(xr[j] + b[j]);
                else if (dxr && pc)
                    for (int64_t j = 0; j < F; j++) {
                        const float d = dyr[j] * gelu_tanh_grad(xr[j] + b[j]);
                        dxr[j] += d;
                        pc[j] += d;
                    }
                else if (dxr)
                    for (int64_t j = 0; j < F; j++) dxr[j] += dyr[j] * gelu_tanh_grad(xr[j] + b[j]);
                else if (pc)
                    for (int64_t j = 0; j < F; j++) pc[j] += dyr[j] * gelu_tanh_grad(xr[j] + b[j]);
            }
        }
        if (part) {
#pragma omp for schedule(static)
            for (int64_t j0 = 0; j0 < F; j0 += 64) {
                const int64_t j1 = j0 + 64 < F ? j0 + 64 : F;
                for (int64_t c = 0; c < nchunk; c++)
                    for (int64_t j = j0; j < j1; j++) db[j] += part[c * F + j];
            }
        }
    }
}

static int bias_gelu_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0], *b = n->in[1];
    int dx_write = 0;
    float *dx = mtft__grad_w(g, x, &dx_write), *db = mtft__grad(g, b);
    if (g->status < 0) return g->status;
    if (!dx && !db) return MTFT_OK;
    const int64_t F = b->ne[0], N = mtft__numel(x) / F, nchunk = (N + BG_RCHUNK - 1) / BG_RCHUNK;
    float *part = db ? mtft__scratch(g, (size_t)(nchunk * F) * sizeof(float)) : NULL;
    if (db && !part)
        return mtft__err(MTFT_ENOMEM, "bias_gelu_tanh backward: no memory for [%lld, %lld] partial sums",
                         (long long)nchunk, (long long)F);
    bias_gelu_bwd_k(dx, dx_write, part, db, n->out->grad, x->data, b->data, N, F);
    return MTFT_OK;
}
static const mtft_op_def bias_gelu_op = {"bias_gelu_tanh", bias_gelu_backward};

mtft_tensor *mtft__bias_gelu_tanh(mtft_graph *g, mtft_tensor *x, mtft_tensor *b) {
    if (!mtft__op_begin(g, 2, x, b)) return NULL;
    char sx[64], sb[64];
    mtft__shape_str(x, sx, sizeof sx);
    mtft__shape_str(b, sb, sizeof sb);
    if (b->ndim != 1 || b->ne[0] != x->ne[x->ndim - 1] || !mtft__contig(b))
        return mtft__op_fail(g, MTFT_ESHAPE, "bias_gelu_tanh: bias '%s' %s does not match the last dim of x %s",
                             b->name, sb, sx);
    if (!mtft__contig(x))
        return mtft__op_fail(g, MTFT_EINVAL, "bias_gelu_tanh: x %s must be contiguous (use mtft_contiguous)", sx);
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    if (!y) return NULL;
    bias_gelu_fwd_k(y->data, x->data, b->data, mtft__rows(x), b->ne[0]);
    mtft__record(g, &bias_gelu_op, y, 2, x, b);
    return y;
}

/* ---- swiglu: y = silu(gate) * up ------------------------------------------ */

MTFT_SIMD_CLONES static void swiglu_fwd_k(float *yd, const float *gd, const float *ud, int64_t N) {
#pragma omp parallel for if (N > ACT_PAR)
    for (int64_t i = 0; i < N; i++) yd[i] = gd[i] * sigmoidf(gd[i]) * ud[i];
}

MTFT_SIMD_CLONES static void swiglu_bwd_k(float *dg, float *du, const float *dy, const float *gd, const float *ud,
                                     int64_t N) {
    if (dg) {
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) {
            float s = sigmoidf(gd[i]);
            dg[i] += dy[i] * ud[i] * s * (1.0f + gd[i] * (1.0f - s));
        }
    }
    if (du) {
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) du[i] += dy[i] * gd[i] * sigmoidf(gd[i]);
    }
}

static int swiglu_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *gate = n->in[0], *up = n->in[1];
    float *dg = mtft__grad(g, gate), *du = mtft__grad(g, up);
    swiglu_bwd_k(dg, du, n->out->grad, gate->data, up->data, mtft__numel(n->out));
    return MTFT_OK;
}
static const mtft_op_def swiglu_op = {"swiglu", swiglu_backward};

mtft_tensor *mtft_swiglu(mtft_graph *g, mtft_tensor *gate, mtft_tensor *up) {
    if (!mtft__op_begin(g, 2, gate, up)) return NULL;
    char sg[64], su[64];
    mtft__shape_str(gate, sg, sizeof sg);
    mtft__shape_str(up, su, sizeof su);
    int same = gate->ndim == up->ndim;
    for (int d = 0; same && d < gate->ndim; d++) same = gate->ne[d] == up->ne[d];
    if (!same) return mtft__op_fail(g, MTFT_ESHAPE, "swiglu: gate %s and up %s must have the same shape", sg, su);
    if (!mtft__contig(gate) || !mtft__contig(up))
        return mtft__op_fail(g, MTFT_EINVAL, "swiglu: gate %s and up %s must be contiguous (use mtft_contiguous)", sg,
                             su);
    mtft_tensor *y = mtft__new(g, gate->ndim, gate->ne);
    if (!y) return NULL;
    swiglu_fwd_k(y->data, gate->data, up->data, mtft__numel(y));
    mtft__record(g, &swiglu_op, y, 2, gate, up);
    return y;
}
