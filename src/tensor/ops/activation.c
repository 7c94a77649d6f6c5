/* Activations: gelu_tanh, gelu_erf, silu, sigmoid, relu, tanh, and swiglu
 * (silu(gate) * up). Elementwise over contiguous inputs; one tight loop per
 * kind (the switch is outside the loops), parallel over elements. Backward
 * reads the saved input (and, for sigmoid and tanh, the output). */
#include <math.h>
#include <stdint.h>

#include "../tensor_impl.h"
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

/* dx += dy * f'(x) */
MTFT_SIMD_CLONES static void act_backward_k(int kind, float *dx, const float *dy, const float *x, const float *y, int64_t N) {
    switch (kind) {
    case ACT_GELU_TANH:
#pragma omp parallel for if (N > ACT_PAR)
        for (int64_t i = 0; i < N; i++) {
            /* d/dx [x s(2u)] = s + 2 x s (1 - s) u', s = sigmoid(2u) */
            float v = x[i];
            float s = sigmoidf(2.0f * GELU_K * (v + GELU_C * v * v * v));
            float du = GELU_K * (1.0f + 3.0f * GELU_C * v * v);
            dx[i] += dy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
        }
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
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    act_backward_k((int)n->i[0], dx, n->out->grad, n->in[0]->data, n->out->data, mtft__numel(n->out));
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
