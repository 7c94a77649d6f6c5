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
 * Saved: y and lse_t = max_t + log sum_s exp(S_ts - max_t). Backward
 * recomputes S (one more GEMM; no T x T matrix is kept between passes):
 *   dP = dY V^T,  Dt = dY_t . Y_t,  dS = P (dP - Dt)
 *   dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dY.
 * Heads run in parallel, one thread each, with single-threaded sgemm calls
 * when OpenBLAS is its OpenMP build (see heads_in_parallel); otherwise one
 * after another, each GEMM on all BLAS threads. Scratch is two (backward:
 * three) [T, T] buffers per thread,
 * allocated with mtft__malloc and freed before returning, so it does not sit
 * in the step's arena. The same bits for a given BLAS thread count. */
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor/blas.h"
#include "../tensor/ops/ops_simd.h"
#include "nn_impl.h"

typedef struct attn_qkv_saved {
    float *lse;   /* [B, H, T] */
    int32_t *len; /* [B] */
} attn_qkv_saved;

typedef struct aq_dims {
    int64_t B, T, C, H, D;
    int causal;
    float scale;
} aq_dims;

static inline int64_t visible(const aq_dims *a, int64_t t, int64_t L) { return a->causal ? t + 1 : L; }

/* p [L, L] = row-wise softmax of s [L, L] over the visible keys (the rest
 * 0); lse[t] = max + log(sum). */
MTFT_SIMD_CLONES
static void softmax_rows(const aq_dims *a, const float *s, float *p, int64_t L, float *lse) {
    for (int64_t t = 0; t < L; t++) {
        const float *r = s + t * L;
        float *pr = p + t * L;
        const int64_t n = visible(a, t, L);
        const float m = mtft__row_max(r, n);
        const double sum = mtft__row_sum_exp(r, n, m, pr);
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++) pr[j] *= inv;
        for (int64_t j = n; j < L; j++) pr[j] = 0.0f;
        lse[t] = m + (float)log(sum);
    }
}

/* From S (s) and dP (dp) of one head: p = P, dp = dS = P (dP - Dt). */
MTFT_SIMD_CLONES
static void backward_rows(const aq_dims *a, const float *s, float *p, float *dp, int64_t L, const float *lse,
                          const float *y, const float *dy, int64_t ld) {
    for (int64_t t = 0; t < L; t++) {
        const int64_t nk = visible(a, t, L);
        float *pr = p + t * L, *dr = dp + t * L;
        mtft__vexp_sub(pr, s + t * L, nk, lse[t]);
        float Dt = 0.0f;
        for (int64_t d = 0; d < a->D; d++) Dt += dy[t * ld + d] * y[t * ld + d];
        for (int64_t j = 0; j < nk; j++) dr[j] = pr[j] * (dr[j] - Dt);
        for (int64_t j = nk; j < L; j++) pr[j] = dr[j] = 0.0f;
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

/* One (b, h) forward. s, p: [T, T] scratch. */
static void fwd_head(const aq_dims *a, int64_t L, const float *q, float *y, float *lse, float *s, float *p) {
    const int64_t C = a->C, D = a->D, C3 = 3 * C;
    const float *k = q + C, *v = q + 2 * C;
    GEMM(0, 1, L, L, D, a->scale, q, C3, k, C3, 0.0f, s, L);
    softmax_rows(a, s, p, L, lse);
    GEMM(0, 0, L, D, L, 1.0f, p, L, v, C3, 0.0f, y, C);
}

/* One (b, h) backward into dq (dk, dv at +C, +2C). s, p, dp: [T, T] scratch. */
static void bwd_head(const aq_dims *a, int64_t L, const float *q, float *dq, const float *y, const float *dy,
                     const float *lse, float *s, float *p, float *dp) {
    const int64_t C = a->C, D = a->D, C3 = 3 * C;
    const float *k = q + C, *v = q + 2 * C;
    GEMM(0, 1, L, L, D, a->scale, q, C3, k, C3, 0.0f, s, L); /* S */
    GEMM(0, 1, L, L, D, 1.0f, dy, C, v, C3, 0.0f, dp, L);    /* dP */
    backward_rows(a, s, p, dp, L, lse, y, dy, C);
    GEMM(0, 0, L, D, L, a->scale, dp, L, k, C3, 1.0f, dq, C3);    /* dQ += scale dS K */
    GEMM(1, 0, L, D, L, a->scale, dp, L, q, C3, 1.0f, dq + C, C3); /* dK += scale dS^T Q */
    GEMM(1, 0, L, D, L, 1.0f, p, L, dy, C, 1.0f, dq + 2 * C, C3);  /* dV += P^T dY */
}

static int aq_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *qkv = n->in[0];
    float *dqkv = mtft__grad(g, qkv);
    if (g->status < 0) return g->status;
    if (!dqkv) return MTFT_OK;
    const attn_qkv_saved *sv = n->saved;
    aq_dims a;
    a.B = qkv->ne[0], a.T = qkv->ne[1], a.C = qkv->ne[2] / 3, a.H = n->i[0], a.D = a.C / a.H;
    a.causal = (int)n->i[1], a.scale = n->f[0];
    const int64_t T = a.T, C = a.C, C3 = 3 * C, BH = a.B * a.H;
    const float *y = n->out->data, *dy = n->out->grad;
    const int par = heads_in_parallel(BH);
    const int64_t per = 3 * T * T;
    float *scratch = mtft__scratch(g, (size_t)((par ? mtft__n_workers() : 1) * per) * sizeof(float));
    if (!scratch)
        return mtft__err(MTFT_ENOMEM, "attention (qkv) backward: no memory for 3 x [%lld, %lld] scratch per thread",
                         (long long)T, (long long)T);
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        const int64_t b = bh / a.H, h = bh % a.H, L = sv->len[b], off = b * T * C3 + h * a.D;
        float *s = scratch + (par ? mtft__worker_id() : 0) * per;
        if (L > 0)
            bwd_head(&a, L, qkv->data + off, dqkv + off, y + b * T * C + h * a.D, dy + b * T * C + h * a.D,
                     sv->lse + bh * T, s, s + T * T, s + 2 * T * T);
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
    float *lse = mtft__scratch(g, (size_t)(a.B * a.H * T) * sizeof(float));
    int32_t *len = mtft__scratch(g, (size_t)a.B * sizeof(int32_t));
    if (!y || !sv || !lse || !len) return NULL;
    if (3 * C > INT_MAX || T > INT_MAX)
        return mtft__op_fail(g, MTFT_ERANGE, "attention (qkv): qkv %s exceeds the BLAS integer range", sq);
    const int64_t BH = a.B * a.H;
    const int par = heads_in_parallel(BH);
    const int64_t per = 2 * T * T;
    float *scratch = mtft__scratch(g, (size_t)((par ? mtft__n_workers() : 1) * per) * sizeof(float));
    if (!scratch)
        return mtft__op_fail(g, MTFT_ENOMEM, "attention (qkv): no memory for 2 x [%lld, %lld] scratch per thread",
                             (long long)T, (long long)T);
    for (int64_t b = 0; b < a.B; b++) {
        const int64_t L = valid_len ? valid_len[b] : T;
        len[b] = (int32_t)L;
        for (int64_t t = L; t < T; t++) memset(y->data + (b * T + t) * C, 0, (size_t)C * sizeof(float));
        for (int64_t t = L; t < T; t++)
            for (int64_t h = 0; h < a.H; h++) lse[(b * a.H + h) * T + t] = 0.0f; /* padding rows: never read */
    }
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        const int64_t b = bh / a.H, h = bh % a.H, L = len[b];
        float *s = scratch + (par ? mtft__worker_id() : 0) * per;
        if (L > 0)
            fwd_head(&a, L, qkv->data + b * T * C3 + h * D, y->data + b * T * C + h * D, lse + bh * T, s, s + T * T);
    }
    mtft_node *n = mtft__record(g, &aq_op, y, 1, qkv);
    if (n) {
        sv->lse = lse;
        sv->len = len;
        n->saved = sv;
        n->i[0] = a.H;
        n->i[1] = a.causal;
        n->f[0] = a.scale;
    }
    return y;
}
