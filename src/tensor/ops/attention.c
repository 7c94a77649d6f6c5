/* Fused scaled-dot-product attention, FlashAttention-2 style memory use.
 *
 *   q [B, H, T, D], k, v [B, Hkv, T, D], H % Hkv == 0: query head h reads kv
 *   head h / (H / Hkv) (PyTorch's repeat_interleave / LLaMA repeat_kv order).
 *   L_b = valid_len[b] (T when NULL): keys s >= L_b are padding; query rows
 *   t >= L_b are padding too and produce zeros (no NaN) and get no gradient.
 *   causal: row t sees keys s <= t. Row t sees keys [0, n_t), n_t = causal ?
 *   min(t+1, L_b) : L_b.
 *     S_ts = scale * q_t . k_s,  P = softmax_s(S),  O_t = sum_s P_ts v_s
 *
 * q, k, v may be strided views (e.g. a transpose of [B, T, H, D]) as long as
 * their last dim is contiguous; otherwise they are copied first.
 *
 * Forward: parallel over (b, h). A thread transposes its K head once into
 * scratch K^T [D, T] (so scores for one query are D axpys over keys: plain
 * vectorisable loops, no reductions), then handles one query row at a time
 * with a two-pass softmax over a scratch row of T scores. Saved: O (the
 * output) and lse_t = max + log(sum exp) per row; no T x T matrix is kept.
 *
 * Backward (recomputes P from lse): parallel over (b, kv head) so a thread
 * owns the dK/dV rows it writes and the dQ rows of the query heads of its
 * group; per row:
 *   D_t = dO_t . O_t,  dP_ts = dO_t . v_s,  dS_ts = P_ts (dP_ts - D_t)
 *   dQ_t += scale sum_s dS_ts k_s,  dK_s += scale dS_ts q_t,  dV_s += P_ts dO_t
 * Every element is accumulated by one thread in a fixed order: results do not
 * depend on the thread count or scheduling. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor_impl.h"
#include "ops_simd.h"

typedef struct attn_saved {
    float *lse;      /* [B, H, T] */
    int32_t *len;    /* [B] valid lengths (T when none given) */
} attn_saved;

typedef struct attn_dims {
    int64_t B, H, Hkv, T, D, rep;
    float scale;
    int causal;
} attn_dims;

static int n_workers(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int worker_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* kt[d*T + j] = head[j*st + d] for j < L */
static inline void transpose_head(float *kt, const float *head, int64_t st, int64_t L, int64_t T, int64_t D) {
    for (int64_t j = 0; j < L; j++) {
        const float *row = head + j * st;
        for (int64_t d = 0; d < D; d++) kt[d * T + j] = row[d];
    }
}

/* s[j] = scale * q . k_j for j < nk, through K^T */
static inline void scores_row(float *s, const float *qrow, const float *kt, int64_t nk, int64_t T, int64_t D, float scale) {
    for (int64_t j = 0; j < nk; j++) s[j] = 0.0f;
    for (int64_t d = 0; d < D; d++) {
        const float qd = qrow[d];
        const float *kr = kt + d * T;
        for (int64_t j = 0; j < nk; j++) s[j] += qd * kr[j];
    }
    for (int64_t j = 0; j < nk; j++) s[j] *= scale;
}

static inline int64_t n_keys(const attn_dims *a, int64_t t, int64_t L) {
    return a->causal ? (t + 1 < L ? t + 1 : L) : L;
}

/* Hot per-head kernels are built for several ISAs (MTFT_SIMD_CLONES, ops_simd.h):
 * the default build targets baseline x86-64 (SSE2); these loops run wider
 * with AVX2 / AVX-512 and give the same bits. */
/* One (b, h): o [T, D], lse [T]. Scratch: kt D*T, s and e T each. */
MTFT_SIMD_CLONES
static void fwd_head(const attn_dims *a, int64_t L, const float *qb, int64_t qst, const float *kb, int64_t kst,
                     const float *vb, int64_t vst, float *ob, float *lb, float *scratch) {
    const int64_t T = a->T, D = a->D;
    float *kt = scratch, *s = kt + D * T, *e = s + T;
    transpose_head(kt, kb, kst, L, T, D);
    for (int64_t t = 0; t < T; t++) {
        float *orow = ob + t * D;
        for (int64_t d = 0; d < D; d++) orow[d] = 0.0f;
        if (t >= L) {
            lb[t] = 0.0f; /* padded query row: output 0, never read back */
            continue;
        }
        const int64_t nk = n_keys(a, t, L);
        scores_row(s, qb + t * qst, kt, nk, T, D, a->scale);
        const float m = mtft__row_max(s, nk);
        const float sum = (float)mtft__row_sum_exp(s, nk, m, e);
        for (int64_t j = 0; j < nk; j++) {
            const float p = e[j];
            const float *vr = vb + j * vst;
            for (int64_t d = 0; d < D; d++) orow[d] += p * vr[d];
        }
        const float inv = 1.0f / sum;
        for (int64_t d = 0; d < D; d++) orow[d] *= inv;
        lb[t] = m + logf(sum);
    }
}

/* One query head h of kv group (b, hk), rows t < L. The caller owns dk/dv of
 * the kv head (dkb, dvb [T, D]) and dq of the query head (dqb [T, D]).
 * kt, vt: the group's K^T, V^T; sc, p, ds: scratch rows of T. */
MTFT_SIMD_CLONES
static void bwd_head(const attn_dims *a, int64_t L, const float *qb, int64_t qst, const float *kb, int64_t kst,
                     const float *kt, const float *vt, const float *ob, const float *dob, const float *lb,
                     float *dqb, float *dkb, float *dvb, float *sc, float *p, float *ds) {
    const int64_t T = a->T, D = a->D;
    for (int64_t t = 0; t < L; t++) {
        const int64_t nk = n_keys(a, t, L);
        const float *qrow = qb + t * qst, *orow = ob + t * D, *dorow = dob + t * D;
        scores_row(sc, qrow, kt, nk, T, D, a->scale);
        mtft__vexp_sub(p, sc, nk, lb[t]);
        float Dt = 0.0f;
        for (int64_t d = 0; d < D; d++) Dt += dorow[d] * orow[d];
        /* dP through V^T, then dS (times scale) in place */
        for (int64_t j = 0; j < nk; j++) ds[j] = 0.0f;
        for (int64_t d = 0; d < D; d++) {
            const float gd = dorow[d];
            const float *vr = vt + d * T;
            for (int64_t j = 0; j < nk; j++) ds[j] += gd * vr[j];
        }
        for (int64_t j = 0; j < nk; j++) ds[j] = p[j] * (ds[j] - Dt) * a->scale;
        if (dqb) {
            float *dqrow = dqb + t * D;
            for (int64_t j = 0; j < nk; j++) {
                const float c = ds[j];
                const float *kr = kb + j * kst;
                for (int64_t d = 0; d < D; d++) dqrow[d] += c * kr[d];
            }
        }
        if (dkb)
            for (int64_t j = 0; j < nk; j++) {
                const float c = ds[j];
                float *dkr = dkb + j * D;
                for (int64_t d = 0; d < D; d++) dkr[d] += c * qrow[d];
            }
        if (dvb)
            for (int64_t j = 0; j < nk; j++) {
                const float c = p[j];
                float *dvr = dvb + j * D;
                for (int64_t d = 0; d < D; d++) dvr[d] += c * dorow[d];
            }
    }
}

static void attention_forward(const attn_dims *a, const mtft_tensor *q, const mtft_tensor *k, const mtft_tensor *v,
                              const int32_t *len, float *o, float *lse, float *scratch) {
    const int64_t B = a->B, H = a->H, T = a->T, D = a->D;
    const int64_t per = D * T + 2 * T;
#pragma omp parallel for schedule(dynamic, 1) if (B * H > 1 && B * H * T * T * D > 65536)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H, hk = h / a->rep;
        fwd_head(a, len[b], q->data + b * q->st[0] + h * q->st[1], q->st[2], k->data + b * k->st[0] + hk * k->st[1],
                 k->st[2], v->data + b * v->st[0] + hk * v->st[1], v->st[2], o + bh * T * D, lse + bh * T,
                 scratch + worker_id() * per);
    }
}

static int attention_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    float *dq = mtft__grad(g, q), *dk = mtft__grad(g, k), *dv = mtft__grad(g, v);
    if (g->status < 0) return g->status;
    if (!dq && !dk && !dv) return MTFT_OK;
    const attn_saved *sv = n->saved;
    attn_dims a;
    a.B = q->ne[0], a.H = q->ne[1], a.Hkv = k->ne[1], a.T = q->ne[2], a.D = q->ne[3];
    a.rep = a.H / a.Hkv, a.scale = n->f[0], a.causal = (int)n->i[0];
    const int64_t B = a.B, H = a.H, Hkv = a.Hkv, T = a.T, D = a.D;
    const int64_t per = 2 * D * T + 3 * T;
    float *scratch = mtft__scratch(g, (size_t)(n_workers() * per) * sizeof(float));
    if (!scratch) return g->status ? g->status : MTFT_ENOMEM;
    const float *o = n->out->data, *dout = n->out->grad;
#pragma omp parallel for schedule(dynamic, 1) if (B * Hkv > 1 && B * H * T * T * D > 65536)
    for (int64_t bg = 0; bg < B * Hkv; bg++) {
        const int64_t b = bg / Hkv, hk = bg % Hkv, L = sv->len[b];
        float *kt = scratch + worker_id() * per, *vt = kt + D * T, *sc = vt + D * T, *p = sc + T, *ds = p + T;
        const float *kb = k->data + b * k->st[0] + hk * k->st[1];
        transpose_head(kt, kb, k->st[2], L, T, D);
        transpose_head(vt, v->data + b * v->st[0] + hk * v->st[1], v->st[2], L, T, D);
        for (int64_t r = 0; r < a.rep; r++) {
            const int64_t h = hk * a.rep + r, bh = b * H + h;
            bwd_head(&a, L, q->data + b * q->st[0] + h * q->st[1], q->st[2], kb, k->st[2], kt, vt, o + bh * T * D,
                     dout + bh * T * D, sv->lse + bh * T, dq ? dq + bh * T * D : NULL, dk ? dk + bg * T * D : NULL,
                     dv ? dv + bg * T * D : NULL, sc, p, ds);
        }
    }
    return MTFT_OK;
}
static const mtft_op_def attention_op = {"attention", attention_backward};

mtft_tensor *mtft_attention(mtft_graph *g, mtft_tensor *q, mtft_tensor *k, mtft_tensor *v, int causal,
                            const int32_t *valid_len, float scale) {
    if (!mtft__op_begin(g, 3, q, k, v)) return NULL;
    char sq[64], sk[64], sv_[64];
    mtft__shape_str(q, sq, sizeof sq);
    mtft__shape_str(k, sk, sizeof sk);
    mtft__shape_str(v, sv_, sizeof sv_);
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        return mtft__op_fail(g, MTFT_ESHAPE, "attention: q %s, k %s, v %s must all be [B, H, T, D]", sq, sk, sv_);
    for (int i = 0; i < 4; i++)
        if (k->ne[i] != v->ne[i])
            return mtft__op_fail(g, MTFT_ESHAPE, "attention: k %s and v %s differ", sk, sv_);
    if (q->ne[0] != k->ne[0] || q->ne[2] != k->ne[2] || q->ne[3] != k->ne[3])
        return mtft__op_fail(g, MTFT_ESHAPE, "attention: q %s and k %s differ in B, T or D", sq, sk);
    if (q->ne[1] % k->ne[1] != 0)
        return mtft__op_fail(g, MTFT_ESHAPE, "attention: q heads %lld not a multiple of kv heads %lld (q %s, k %s)",
                             (long long)q->ne[1], (long long)k->ne[1], sq, sk);
    attn_dims a;
    a.B = q->ne[0], a.H = q->ne[1], a.Hkv = k->ne[1], a.T = q->ne[2], a.D = q->ne[3];
    a.rep = a.H / a.Hkv, a.causal = causal ? 1 : 0;
    a.scale = scale > 0.0f ? scale : 1.0f / sqrtf((float)a.D);
    for (int64_t b = 0; valid_len && b < a.B; b++)
        if (valid_len[b] < 0 || valid_len[b] > a.T)
            return mtft__op_fail(g, MTFT_ERANGE, "attention: valid_len[%lld] = %d outside 0..%lld (q %s)", (long long)b,
                                 (int)valid_len[b], (long long)a.T, sq);
    /* rows must be contiguous; other strides are free */
    if (q->st[3] != 1 && !(q = mtft_contiguous(g, q))) return NULL;
    if (k->st[3] != 1 && !(k = mtft_contiguous(g, k))) return NULL;
    if (v->st[3] != 1 && !(v = mtft_contiguous(g, v))) return NULL;

    attn_saved *sv = mtft__scratch(g, sizeof *sv);
    int32_t *len = mtft__scratch(g, (size_t)a.B * sizeof *len);
    float *lse = mtft__scratch(g, (size_t)(a.B * a.H * a.T) * sizeof(float));
    float *scratch = mtft__scratch(g, (size_t)(n_workers() * (a.D * a.T + 2 * a.T)) * sizeof(float));
    mtft_tensor *o = mtft__new(g, 4, q->ne);
    if (!sv || !len || !lse || !scratch || !o) return NULL;
    for (int64_t b = 0; b < a.B; b++) len[b] = valid_len ? valid_len[b] : (int32_t)a.T;
    attention_forward(&a, q, k, v, len, o->data, lse, scratch);
    mtft_node *n = mtft__record(g, &attention_op, o, 3, q, k, v);
    if (n) {
        sv->lse = lse;
        sv->len = len;
        n->saved = sv;
        n->f[0] = a.scale;
        n->i[0] = a.causal;
    }
    return o;
}
