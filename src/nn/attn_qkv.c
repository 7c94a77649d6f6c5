/* Attention straight from a fused QKV projection, for the training /
 * full-sequence path of GPT-2 blocks.
 *
 *   qkv [B, T, 3C] (row of 3C: q | k | v, head h at columns h*D of each third)
 *   y   [B, T, C]  (head h at columns h*D): the layout c_proj reads
 *
 * Nothing is copied around the op: every product is one sgemm that reads q,
 * k, v in place (leading dimension 3C) and writes y (leading dimension C);
 * backward writes dq, dk, dv straight into qkv's gradient the same way. The
 * generic path (views into qkv, mtft_attention, a transpose copy back to
 * [B, T, C]) kept three view gradients of qkv's size, the [B, H, T, D] output,
 * its copy and their gradients for every layer: about 46 MB per layer of
 * GPT-2 124M at B 4, T 256.
 *
 * Per (b, h), L = valid_len[b] (T when NULL); rows t >= L are padding: zero
 * output, no gradient; row t sees keys [0, n_t), n_t = causal ? t+1 : L.
 *   S = scale Q K^T [L, L], P = softmax over the visible keys, Y = P V.
 * Causal products run in blocks of AQ_BLK query (or key) rows and skip the
 * masked blocks above the diagonal. Saved: y and P ([B, H, T, T]: 2 MB a
 * layer at B 8, T 128, H 4; 12.6 MB at GPT-2 124M's B 4, T 256), so
 * backward needs no recomputation of S:
 *   dP = dY V^T,  Dt = dY_t . Y_t,  dS = P (dP - Dt)
 *   dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dY
 * (stored with beta 0 instead when qkv's gradient is fresh: each element is
 * written by exactly one product, padding rows are zeroed).
 * Heads run in parallel, one thread each, with single-threaded sgemm calls
 * when OpenBLAS is its OpenMP build (see heads_in_parallel); otherwise one
 * after another, each GEMM on all BLAS threads. Per-thread [T, T] scratch
 * (forward S, and P when not kept; backward dP) comes from the graph's
 * arena. The same bits for a given BLAS thread count. */
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor/blas.h"
#include "../tensor/ops/ops_grad.h"
#include "../tensor/ops/ops_simd.h"
#include "nn_impl.h"

typedef struct attn_qkv_saved {
    float *p;     /* [B, H, T, T]: P of each (b, h), row-major, ld T */
    int32_t *len; /* [B] */
} attn_qkv_saved;

typedef struct aq_dims {
    int64_t B, T, C, H, D;
    int causal;
    float scale;
} aq_dims;

static inline int64_t visible(const aq_dims *a, int64_t t, int64_t L) { return a->causal ? t + 1 : L; }

/* Causal attention in blocks of AQ_BLK query rows: block [i0, i1) needs the
 * keys [0, i1) only, so the products skip the masked upper blocks of S (at
 * T = 128: 3/4 of the work; T = 256: 5/8). Non-causal: one block of L. */
#define AQ_BLK 64
static inline int64_t blk_end(const aq_dims *a, int64_t i0, int64_t L) {
    return a->causal && i0 + AQ_BLK < L ? i0 + AQ_BLK : L;
}

/* p [L, L] (ld T) = row-wise softmax of s (ld T) over the visible keys (the
 * rest of each row 0). */
MTFT_SIMD_CLONES
static void softmax_rows(const aq_dims *a, const float *s, float *p, int64_t L) {
    const int64_t T = a->T;
    for (int64_t t = 0; t < L; t++) {
        const float *r = s + t * T;
        float *pr = p + t * T;
        const int64_t n = visible(a, t, L);
        const float m = mtft__row_max(r, n);
        const double sum = mtft__row_sum_exp(r, n, m, pr);
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++) pr[j] *= inv;
        for (int64_t j = n; j < L; j++) pr[j] = 0.0f;
    }
}

/* sum_d x[d] y[d] over 16 float lanes added in a fixed order (vectorises;
 * the same bits on every ISA and thread count) */
static inline float dot16(const float *x, const float *y, int64_t n) {
    float acc[16] = {0};
    int64_t d = 0;
    for (; d + 16 <= n; d += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[d + k] * y[d + k];
    for (int k = 0; d + k < n; k++) acc[k] += x[d + k] * y[d + k];
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

/* From P (p) and dP (dp) of one head: dp = dS = P (dP - Dt), Dt = dY_t . Y_t;
 * 0 beyond the visible keys. */
MTFT_SIMD_CLONES
static void backward_rows(const aq_dims *a, const float *p, float *dp, int64_t L, const float *y, const float *dy,
                          int64_t ld) {
    const int64_t T = a->T;
    for (int64_t t = 0; t < L; t++) {
        const int64_t nk = visible(a, t, L);
        const float *pr = p + t * T;
        float *dr = dp + t * T;
        const float Dt = dot16(dy + t * ld, y + t * ld, a->D);
        for (int64_t j = 0; j < nk; j++) dr[j] = pr[j] * (dr[j] - Dt);
        for (int64_t j = nk; j < L; j++) dr[j] = 0.0f;
    }
}

/* Heads in parallel, each sgemm on one thread, when OpenBLAS is its OpenMP
 * build: inside a parallel region that build runs single-threaded, so the
 * heads share no thread pool. (A pthread build would start its own threads
 * from every caller; there the heads run one after another, each GEMM on
 * all BLAS threads.) Measured on 2 cores: T x T x D GEMMs are too small to
 * split well over threads, while heads split perfectly. */
static int heads_in_parallel(int64_t n_heads) {
#ifdef _OPENMP
    return mtft__blas_nests_serially() && n_heads > 1 && omp_get_max_threads() > 1;
#else
    (void)n_heads;
    return 0;
#endif
}

/* sgemm cannot fail here: the sizes were checked to fit BLAS's int. */
#define GEMM(...) (void)mtft__sgemm(__VA_ARGS__)

/* One (b, h) forward: s scratch and p (P, kept for backward when recorded)
 * [T, T]. */
static void fwd_head(const aq_dims *a, int64_t L, const float *q, float *y, float *s, float *p) {
    const int64_t C = a->C, D = a->D, C3 = 3 * C, T = a->T;
    const float *k = q + C, *v = q + 2 * C;
    for (int64_t i0 = 0, i1; i0 < L; i0 = i1) {
        i1 = blk_end(a, i0, L);
        const int64_t nk = a->causal ? i1 : L;
        GEMM(0, 1, i1 - i0, nk, D, a->scale, q + i0 * C3, C3, k, C3, 0.0f, s + i0 * T, T);
    }
    softmax_rows(a, s, p, L);
    for (int64_t i0 = 0, i1; i0 < L; i0 = i1) {
        i1 = blk_end(a, i0, L);
        GEMM(0, 0, i1 - i0, D, a->causal ? i1 : L, 1.0f, p + i0 * T, T, v, C3, 0.0f, y + i0 * C, C);
    }
}

/* One (b, h) backward into dq (dk, dv at +C, +2C), rows [0, L): added to
 * (beta 1), or stored when the gradient is fresh (beta 0). p: the saved P;
 * dp: [T, T] scratch. */
static void bwd_head(const aq_dims *a, int64_t L, const float *q, float *dq, const float *y, const float *dy,
                     const float *p, float *dp, float beta) {
    const int64_t C = a->C, D = a->D, C3 = 3 * C, T = a->T;
    const float *k = q + C, *v = q + 2 * C;
    for (int64_t i0 = 0, i1; i0 < L; i0 = i1) { /* dP = dY V^T */
        i1 = blk_end(a, i0, L);
        GEMM(0, 1, i1 - i0, a->causal ? i1 : L, D, 1.0f, dy + i0 * C, C, v, C3, 0.0f, dp + i0 * T, T);
    }
    backward_rows(a, p, dp, L, y, dy, C);
    for (int64_t i0 = 0, i1; i0 < L; i0 = i1) { /* dQ = scale dS K, by query rows */
        i1 = blk_end(a, i0, L);
        GEMM(0, 0, i1 - i0, D, a->causal ? i1 : L, a->scale, dp + i0 * T, T, k, C3, beta, dq + i0 * C3, C3);
    }
    for (int64_t j0 = 0, j1; j0 < L; j0 = j1) { /* by key rows: queries t >= j0 see them (causal) */
        j1 = blk_end(a, j0, L);
        const int64_t r0 = a->causal ? j0 : 0;
        GEMM(1, 0, j1 - j0, D, L - r0, a->scale, dp + r0 * T + j0, T, q + r0 * C3, C3, beta,
             dq + C + j0 * C3, C3); /* dK = scale dS^T Q */
        GEMM(1, 0, j1 - j0, D, L - r0, 1.0f, p + r0 * T + j0, T, dy + r0 * C, C, beta, dq + 2 * C + j0 * C3,
             C3); /* dV = P^T dY */
    }
}

static int aq_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *qkv = n->in[0];
    int fresh = 0;
    float *dqkv = mtft__grad_w(g, qkv, &fresh);
    if (g->status < 0) return g->status;
    if (!dqkv) return MTFT_OK;
    const attn_qkv_saved *sv = n->saved;
    aq_dims a;
    a.B = qkv->ne[0], a.T = qkv->ne[1], a.C = qkv->ne[2] / 3, a.H = n->i[0], a.D = a.C / a.H;
    a.causal = (int)n->i[1], a.scale = n->f[0];
    const int64_t T = a.T, C = a.C, C3 = 3 * C, BH = a.B * a.H;
    const float *y = n->out->data, *dy = n->out->grad;
    const int par = heads_in_parallel(BH);
    const int64_t per = T * T;
    float *scratch = mtft__scratch(g, (size_t)((par ? mtft__n_workers() : 1) * per) * sizeof(float));
    if (!scratch)
        return mtft__err(MTFT_ENOMEM, "attention (qkv) backward: no memory for a [%lld, %lld] scratch per thread",
                         (long long)T, (long long)T);
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        const int64_t b = bh / a.H, h = bh % a.H, L = sv->len[b], off = b * T * C3 + h * a.D;
        float *dp = scratch + (par ? mtft__worker_id() : 0) * per;
        if (L > 0)
            bwd_head(&a, L, qkv->data + off, dqkv + off, y + b * T * C + h * a.D, dy + b * T * C + h * a.D,
                     sv->p + bh * per, dp, fresh ? 0.0f : 1.0f);
        if (fresh) /* padding rows get no gradient: this head's columns of q, k and v */
            for (int64_t t = L; t < T; t++)
                for (int w = 0; w < 3; w++) memset(dqkv + off + t * C3 + w * C, 0, (size_t)a.D * sizeof(float));
    }
    return MTFT_OK;
}
static const mtft_op_def aq_op = {"attention_qkv", aq_backward};

mtft_tensor *mtft_nn__attention_qkv(mtft_graph *g, mtft_tensor *qkv, int n_head, int causal,
                                    const int32_t *valid_len) {
    if (!mtft__op_begin(g, 1, qkv)) return NULL;
    char sq[64];
    mtft__shape_str(qkv, sq, sizeof sq);
    if (qkv->ndim != 3 || qkv->ne[2] % 3 != 0 || n_head <= 0 || (qkv->ne[2] / 3) % n_head != 0)
        return mtft__op_fail(g, MTFT_ESHAPE, "attention (qkv): qkv %s must be [B, T, 3C] with C a multiple of %d heads",
                             sq, n_head);
    if (!mtft__contig(qkv) && !(qkv = mtft_contiguous(g, qkv))) return NULL;
    aq_dims a;
    a.B = qkv->ne[0], a.T = qkv->ne[1], a.C = qkv->ne[2] / 3, a.H = n_head, a.D = a.C / n_head;
    a.causal = causal ? 1 : 0, a.scale = 1.0f / sqrtf((float)a.D);
    const int64_t T = a.T, C = a.C, D = a.D, C3 = 3 * C;
    for (int64_t b = 0; valid_len && b < a.B; b++)
        if (valid_len[b] < 0 || valid_len[b] > T)
            return mtft__op_fail(g, MTFT_ERANGE, "attention (qkv): valid_len[%lld] = %d outside 0..%lld (qkv %s)",
                                 (long long)b, (int)valid_len[b], (long long)T, sq);
    int64_t shp[3] = {a.B, T, C};
    mtft_tensor *y = mtft__new(g, 3, shp);
    attn_qkv_saved *sv = mtft__scratch(g, sizeof *sv);
    int32_t *len = mtft__scratch(g, (size_t)a.B * sizeof(int32_t));
    if (!y || !sv || !len) return NULL;
    if (3 * C > INT_MAX || T > INT_MAX)
        return mtft__op_fail(g, MTFT_ERANGE, "attention (qkv): qkv %s exceeds the BLAS integer range", sq);
    const int64_t BH = a.B * a.H, per = T * T;
    const int par = heads_in_parallel(BH), nw = par ? mtft__n_workers() : 1;
    /* P is kept for backward when the op will be recorded (as mtft__record
     * decides), so backward does not recompute S and its exps */
    const int keep = g->grad_enabled && mtft__needs_grad(qkv);
    float *scratch = mtft__scratch(g, (size_t)((keep ? 1 : 2) * nw * per) * sizeof(float));
    float *pk = keep ? mtft__scratch(g, (size_t)(BH * per) * sizeof(float)) : NULL;
    if (!scratch || (keep && !pk))
        return mtft__op_fail(g, MTFT_ENOMEM, "attention (qkv): no memory for the [%lld, %lld] scores of %lld heads",
                             (long long)T, (long long)T, (long long)(keep ? BH : nw));
    for (int64_t b = 0; b < a.B; b++) {
        const int64_t L = valid_len ? valid_len[b] : T;
        len[b] = (int32_t)L;
        for (int64_t t = L; t < T; t++) memset(y->data + (b * T + t) * C, 0, (size_t)C * sizeof(float));
    }
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        const int64_t b = bh / a.H, h = bh % a.H, L = len[b];
        float *s = scratch + (par ? mtft__worker_id() : 0) * (keep ? 1 : 2) * per;
        float *p = keep ? pk + bh * per : s + per;
        if (L > 0) fwd_head(&a, L, qkv->data + b * T * C3 + h * D, y->data + b * T * C + h * D, s, p);
    }
    mtft_node *n = mtft__record(g, &aq_op, y, 1, qkv);
    if (n) {
        sv->p = pk;
        sv->len = len;
        n->saved = sv;
        n->i[0] = a.H;
        n->i[1] = a.causal;
        n->f[0] = a.scale;
    }
    return y;
}
