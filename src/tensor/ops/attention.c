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
 * scratch K^T [D, Tp] (Tp = T rounded up to 16, zero padded), then handles
 * blocks of QB = 4 query rows: scores in 4 x 16 register tiles, a two-pass
 * softmax per row over a scratch block of 4 x Tp, P V in 4 x 16 tiles.
 * Saved: O (the output) and lse_t = max + log(sum exp) per row; no T x T
 * matrix is kept.
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


/* kt[d*Tp + j] = head[j*st + d] for j < L, 0 for L <= j < Tp */
static inline void transpose_head(float *kt, const float *head, int64_t st, int64_t L, int64_t Tp, int64_t D) {
    for (int64_t j = 0; j < L; j++) {
        const float *row = head + j * st;
        for (int64_t d = 0; d < D; d++) kt[d * Tp + j] = row[d];
    }
    for (int64_t d = 0; d < D; d++)
        for (int64_t j = L; j < Tp; j++) kt[d * Tp + j] = 0.0f;
}

static inline int64_t n_keys(const attn_dims *a, int64_t t, int64_t L) {
    return a->causal ? (t + 1 < L ? t + 1 : L) : L;
}

/* ---- micro-kernels -------------------------------------------------------------
 * Queries go QB rows at a time, in register tiles of QB rows x VW floats
 * (GCC/Clang vector extensions: one AVX-512 register, two AVX2, four SSE), so
 * each row of K^T, V, K, dK, dV is loaded once per QB queries. Every sum runs
 * over d (or j) in increasing order, exactly as a scalar loop would, so the
 * bits do not depend on the ISA. */
#define QB 4
#define VW 16
typedef float vf16 __attribute__((vector_size(VW * sizeof(float))));
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(vf16))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(vf16))

/* out[i*T + j] = scale * sum_d x_i[d] mt[d*T + j], i < QB, j < n rounded up
 * to VW (T, the row stride of mt and out, is a multiple of VW; the columns
 * past n are finite padding the callers ignore) */
static inline void mk_scores(float *out, const float *const x[QB], const float *mt, int64_t T, int64_t n, int64_t D,
                             float scale) {
    for (int64_t j0 = 0; j0 < n; j0 += VW) {
        vf16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t d = 0; d < D; d++) {
            vf16 kv;
            VLOAD(kv, mt + d * T + j0);
            a0 += x[0][d] * kv;
            a1 += x[1][d] * kv;
            a2 += x[2][d] * kv;
            a3 += x[3][d] * kv;
        }
        a0 *= scale, a1 *= scale, a2 *= scale, a3 *= scale;
        VSTORE(out + j0, a0);
        VSTORE(out + T + j0, a1);
        VSTORE(out + 2 * T + j0, a2);
        VSTORE(out + 3 * T + j0, a3);
    }
}

/* Row stride of the scratch K^T, V^T and score rows: T rounded up to VW. */
static inline int64_t padded(int64_t T) { return (T + VW - 1) / VW * VW; }

/* y_i[d] (+)= sum_{j<n} w[i*T + j] m[j*mst + d], i < QB, d < D; acc = 0 stores */
static inline void mk_wrows(float *const y[QB], const float *w, int64_t T, const float *m, int64_t mst, int64_t n,
                            int64_t D, int acc) {
    int64_t d0 = 0;
    for (; d0 + VW <= D; d0 += VW) {
        vf16 a[QB] = {{0}};
        for (int64_t j = 0; j < n; j++) {
            vf16 mv;
            VLOAD(mv, m + j * mst + d0);
            a[0] += w[j] * mv;
            a[1] += w[T + j] * mv;
            a[2] += w[2 * T + j] * mv;
            a[3] += w[3 * T + j] * mv;
        }
        for (int i = 0; i < QB; i++) {
            if (acc) {
                vf16 yv;
                VLOAD(yv, y[i] + d0);
                a[i] = yv + a[i];
            }
            VSTORE(y[i] + d0, a[i]);
        }
    }
    for (; d0 < D; d0++)
        for (int i = 0; i < QB; i++) {
            float sum = 0.0f;
            for (int64_t j = 0; j < n; j++) sum += w[i * T + j] * m[j * mst + d0];
            y[i][d0] = acc ? y[i][d0] + sum : sum;
        }
}

/* g[j*D + d] += w[j] x_0[d] + w[T+j] x_1[d] + ... (in that order), j < n */
static inline void mk_outer(float *g, const float *w, int64_t T, const float *const x[QB], int64_t n, int64_t D) {
    for (int64_t j = 0; j < n; j++) {
        float *gr = g + j * D;
        const float c0 = w[j], c1 = w[T + j], c2 = w[2 * T + j], c3 = w[3 * T + j];
        int64_t d0 = 0;
        for (; d0 + VW <= D; d0 += VW) {
            vf16 gv, xv;
            VLOAD(gv, gr + d0);
            VLOAD(xv, x[0] + d0);
            gv += c0 * xv;
            VLOAD(xv, x[1] + d0);
            gv += c1 * xv;
            VLOAD(xv, x[2] + d0);
            gv += c2 * xv;
            VLOAD(xv, x[3] + d0);
            gv += c3 * xv;
            VSTORE(gr + d0, gv);
        }
        for (; d0 < D; d0++) {
            float v = gr[d0];
            v += c0 * x[0][d0];
            v += c1 * x[1][d0];
            v += c2 * x[2][d0];
            v += c3 * x[3][d0];
            gr[d0] = v;
        }
    }
}

/* Row pointers of rows t0 .. t0+nq-1, padded to QB with the last one. */
static inline void block_rows(const float *x[QB], const float *base, int64_t st, int64_t t0, int nq) {
    for (int i = 0; i < QB; i++) x[i] = base + (t0 + (i < nq ? i : nq - 1)) * st;
}

/* Hot per-head kernels are built for several ISAs (MTFT_SIMD_CLONES, ops_simd.h):
 * the default build targets baseline x86-64 (SSE2); these loops run wider
 * with AVX2 / AVX-512 and give the same bits. */

/* One (b, h): o [T, D], lse [T]. Scratch (Tp = padded(T)): kt D*Tp, s and e
 * QB*Tp each, dummy D. */
MTFT_SIMD_CLONES
static void fwd_head(const attn_dims *a, int64_t L, const float *qb, int64_t qst, const float *kb, int64_t kst,
                     const float *vb, int64_t vst, float *ob, float *lb, float *scratch) {
    const int64_t T = a->T, D = a->D, Tp = padded(T);
    float *kt = scratch, *s = kt + D * Tp, *e = s + QB * Tp, *dummy = e + QB * Tp;
    transpose_head(kt, kb, kst, L, Tp, D);
    for (int64_t t = L; t < T; t++) {
        memset(ob + t * D, 0, (size_t)D * sizeof(float)); /* padded query row: zeros */
        lb[t] = 0.0f;                                     /* never read back */
    }
    for (int64_t t0 = 0; t0 < L; t0 += QB) {
        const int nq = (int)(L - t0 < QB ? L - t0 : QB);
        const int64_t nkmax = n_keys(a, t0 + nq - 1, L);
        const float *x[QB];
        float *y[QB], inv[QB];
        block_rows(x, qb, qst, t0, nq);
        mk_scores(s, x, kt, Tp, nkmax, D, a->scale);
        for (int i = 0; i < QB; i++) {
            float *si = s + i * Tp, *ei = e + i * Tp;
            y[i] = i < nq ? ob + (t0 + i) * D : dummy;
            int64_t nk = 0;
            if (i < nq) {
                nk = n_keys(a, t0 + i, L);
                const float m = mtft__row_max(si, nk);
                const float sum = (float)mtft__row_sum_exp(si, nk, m, ei);
                inv[i] = 1.0f / sum;
                lb[t0 + i] = m + logf(sum);
            }
            for (int64_t j = nk; j < nkmax; j++) ei[j] = 0.0f; /* masked in this block */
        }
        mk_wrows(y, e, Tp, vb, vst, nkmax, D, 0);
        for (int i = 0; i < nq; i++)
            for (int64_t d = 0; d < D; d++) y[i][d] *= inv[i];
    }
}

/* One query head h of kv group (b, hk), rows t < L. The caller owns dk/dv of
 * the kv head (dkb, dvb [T, D]) and dq of the query head (dqb [T, D]).
 * kt, vt: the group's K^T, V^T (row stride Tp = padded(T)); sc, p, ds: QB*Tp
 * each; dummy: D. */
MTFT_SIMD_CLONES
static void bwd_head(const attn_dims *a, int64_t L, const float *qb, int64_t qst, const float *kb, int64_t kst,
                     const float *kt, const float *vt, const float *ob, const float *dob, const float *lb,
                     float *dqb, float *dkb, float *dvb, float *sc, float *p, float *ds, float *dummy) {
    const int64_t D = a->D, Tp = padded(a->T);
    for (int64_t t0 = 0; t0 < L; t0 += QB) {
        const int nq = (int)(L - t0 < QB ? L - t0 : QB);
        const int64_t nkmax = n_keys(a, t0 + nq - 1, L);
        const float *x[QB], *dox[QB], *ox[QB];
        block_rows(x, qb, qst, t0, nq);
        block_rows(dox, dob, D, t0, nq);
        block_rows(ox, ob, D, t0, nq);
        mk_scores(sc, x, kt, Tp, nkmax, D, a->scale); /* S */
        mk_scores(ds, dox, vt, Tp, nkmax, D, 1.0f);   /* dP = dO V^T */
        for (int i = 0; i < QB; i++) {
            float *pi = p + i * Tp, *di = ds + i * Tp;
            int64_t nk = 0;
            if (i < nq) {
                nk = n_keys(a, t0 + i, L);
                mtft__vexp_sub(pi, sc + i * Tp, nk, lb[t0 + i]);
                float Dt = 0.0f;
                for (int64_t d = 0; d < D; d++) Dt += dox[i][d] * ox[i][d];
                for (int64_t j = 0; j < nk; j++) di[j] = pi[j] * (di[j] - Dt) * a->scale;
            }
            for (int64_t j = nk; j < nkmax; j++) pi[j] = di[j] = 0.0f;
        }
        if (dqb) {
            float *y[QB];
            for (int i = 0; i < QB; i++) y[i] = i < nq ? dqb + (t0 + i) * D : dummy;
            mk_wrows(y, ds, Tp, kb, kst, nkmax, D, 1); /* dQ += dS K */
        }
        if (dkb) mk_outer(dkb, ds, Tp, x, nkmax, D);  /* dK += dS^T Q */
        if (dvb) mk_outer(dvb, p, Tp, dox, nkmax, D); /* dV += P^T dO */
    }
}

static void attention_forward(const attn_dims *a, const mtft_tensor *q, const mtft_tensor *k, const mtft_tensor *v,
                              const int32_t *len, float *o, float *lse, float *scratch) {
    const int64_t B = a->B, H = a->H, T = a->T, D = a->D;
    const int64_t per = D * padded(T) + 2 * QB * padded(T) + D;
#pragma omp parallel for schedule(dynamic, 1) if (B * H > 1 && B * H * T * T * D > 65536)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H, hk = h / a->rep;
        fwd_head(a, len[b], q->data + b * q->st[0] + h * q->st[1], q->st[2], k->data + b * k->st[0] + hk * k->st[1],
                 k->st[2], v->data + b * v->st[0] + hk * v->st[1], v->st[2], o + bh * T * D, lse + bh * T,
                 scratch + mtft__worker_id() * per);
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
    const int64_t Tp = padded(T), per = 2 * D * Tp + 3 * QB * Tp + D;
    float *scratch = mtft__scratch(g, (size_t)(mtft__n_workers() * per) * sizeof(float));
    if (!scratch) return g->status ? g->status : MTFT_ENOMEM;
    const float *o = n->out->data, *dout = n->out->grad;
#pragma omp parallel for schedule(dynamic, 1) if (B * Hkv > 1 && B * H * T * T * D > 65536)
    for (int64_t bg = 0; bg < B * Hkv; bg++) {
        const int64_t b = bg / Hkv, hk = bg % Hkv, L = sv->len[b];
        float *kt = scratch + mtft__worker_id() * per, *vt = kt + D * Tp, *sc = vt + D * Tp, *p = sc + QB * Tp;
        float *ds = p + QB * Tp, *dummy = ds + QB * Tp;
        const float *kb = k->data + b * k->st[0] + hk * k->st[1];
        transpose_head(kt, kb, k->st[2], L, Tp, D);
        transpose_head(vt, v->data + b * v->st[0] + hk * v->st[1], v->st[2], L, Tp, D);
        for (int64_t r = 0; r < a.rep; r++) {
            const int64_t h = hk * a.rep + r, bh = b * H + h;
            bwd_head(&a, L, q->data + b * q->st[0] + h * q->st[1], q->st[2], kb, k->st[2], kt, vt, o + bh * T * D,
                     dout + bh * T * D, sv->lse + bh * T, dq ? dq + bh * T * D : NULL, dk ? dk + bg * T * D : NULL,
                     dv ? dv + bg * T * D : NULL, sc, p, ds, dummy);
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
    float *scratch = mtft__scratch(g, (size_t)(mtft__n_workers() * (a.D * padded(a.T) + 2 * QB * padded(a.T) + a.D)) *
                                          sizeof(float));
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
