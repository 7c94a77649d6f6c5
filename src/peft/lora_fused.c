/* The fused LoRA op: y_rows += s (x_rows A^T) B^T for one or more row
 * ranges (tasks), in place on a projection's fresh output y, as one tape
 * node with a hand-written backward.
 *
 * Why not BLAS: the LoRA products are thin (one dimension is the rank R,
 * 8 at GPT-2 124M: [1024 x 768] x [768 x 8], [1024 x 8] x [8 x 3072], ...),
 * and OpenBLAS runs them at 20-80 GFLOP/s (packing dominates; measured with
 * an sgemm shim at the 124M shape: 0.23 s of a 3.4 s LoRA step for 7 GFLOP).
 * The kernels below stream each row once with the R accumulators in
 * registers.
 *
 * Letters: N rows of the entry, I input features (in), O output features
 * (out), R rank. A [R, I] and B [O, R] (PEFT's lora_A / lora_B).
 *   forward   h = x A^T [N, R] (saved), y += s h B^T        (row tiles in parallel)
 *   backward  one pass per fixed chunk of rows (chunks in parallel), tile by tile:
 *             dh = s dy B; dx += dh A; PA_c += dh^T x; PB_c += h^T dy
 *             then dA += sum_c PA_c, dB += s sum_c PB_c^T   (columns in parallel)
 * so x, y, dy and dx are each streamed once per pass, and dA and dB go to
 * each part's block of the row partition when the LoRA's group is split
 * (mtft__is_split), at no extra FLOPs (chunks never cross a part).
 *
 * Kernels. Three shapes serve all the products:
 *   rows_down   h[n, r] = alpha sum_k x[n, k] W[r, k]      (W [R, K])
 *   rows_up     y[n, j] += sum_r h[n, r] W[r, j]           (W [R, J])
 *   outer       P[r, c] += sum_n h[n, r] X[n, c]           (a tile of rows)
 * Each has an AVX-512 version (x86-64, R a multiple of 8, chosen at run time
 * by the CPU's features) and a portable one. Every output element is summed
 * in a fixed order that does not depend on the thread count or the
 * schedule (row tiles and chunks are fixed; chunk partials are added in
 * order). The AVX-512 and portable versions may differ in the last bits
 * (FMA, lane order). */
#include <stdatomic.h>
#include <string.h>

#include "../tensor/ops/ops_grad.h"
#include "peft_impl.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(MTFT_NO_CLONES)
#define LF_X86 1
#include <immintrin.h>
#define LF_AVX512 __attribute__((target("avx512f")))
#else
#define LF_X86 0
#endif

/* Row tiles of the row passes (even, so the 2-row kernels pair the same
 * rows for any thread count), the fixed row chunks of the backward (one
 * partial dA, dB each) and the column blocks of its final reduction. */
#define LF_ROWS 16
#define LF_CHUNK 128
#define LF_COLS 256

static _Atomic int lf_force_generic = 0;

void mtft_peft__lora_force_generic(int on) { atomic_store(&lf_force_generic, on ? 1 : 0); }

/* 1 when the AVX-512 kernels serve rank R on this CPU. */
static int lf_use_avx512(int64_t R) {
#if LF_X86
    if (atomic_load(&lf_force_generic) || R % 8 != 0) return 0;
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    (void)R;
    return 0;
#endif
}

int mtft_peft__lora_fused_fast(int64_t R) { return lf_use_avx512(R); }

/* ---- portable kernels ------------------------------------------------------------ */

/* h[n*R + r] = alpha * sum_k x[n*ldx + k] W[r*ldw + k], rows [0, N). */
static void down_generic(int64_t N, int64_t K, int64_t R, const float *x, int64_t ldx, const float *W, int64_t ldw,
                         float alpha, float *h) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * ldx;
        for (int64_t r = 0; r < R; r++) {
            const float *w = W + r * ldw;
            float acc[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int q = 0; q < 8; q++) acc[q] += xr[k + q] * w[k + q];
            for (int q = 0; k + q < K; q++) acc[q] += xr[k + q] * w[k + q];
            float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            h[n * R + r] = alpha * s;
        }
    }
}

/* y[n*ldy + j] += sum_r h[n*R + r] W[r*ldw + j], rows [0, N), j < J
 * (with add = 0: y = that sum; y's old values are not read). */
static void up_generic(int64_t N, int64_t J, int64_t R, const float *h, const float *W, int64_t ldw, float *y,
                       int64_t ldy, int add) {
    for (int64_t n = 0; n < N; n++) {
        float *yr = y + n * ldy;
        if (!add) memset(yr, 0, (size_t)J * sizeof(float));
        const float *hr = h + n * R;
        for (int64_t r = 0; r < R; r++) {
            const float hv = hr[r];
            const float *w = W + r * ldw;
            for (int64_t j = 0; j < J; j++) yr[j] += hv * w[j];
        }
    }
}

/* P[r*C + c] += sum_{n<M} h[n*R + r] X[n*ldx + c], all c < C. */
static void outer_generic(int64_t M, int64_t C, int64_t R, const float *h, const float *X, int64_t ldx, float *P) {
    for (int64_t n = 0; n < M; n++) {
        const float *xr = X + n * ldx;
        for (int64_t r = 0; r < R; r++) {
            const float hv = h[n * R + r];
            float *pr = P + r * C;
            for (int64_t c = 0; c < C; c++) pr[c] += hv * xr[c];
        }
    }
}

/* ---- AVX-512 kernels (R a multiple of 8) ------------------------------------------- */
#if LF_X86

static LF_AVX512 inline __mmask16 lf_mask(int64_t rem) {
    return rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1u);
}

/* Two rows at a time, 8 ranks at a time: 16 accumulators in registers.
 * Whole vectors in the main loops, a masked one for the tail only (masked
 * loads and stores in the main loop cost 2-3x on the EPYC here). */
#define LF_DOWN_STEP(v0, v1, W0, k, LOAD)             \
    do {                                              \
        for (int r = 0; r < 8; r++) {                 \
            __m512 w_ = LOAD((W0) + r * ldw + (k));   \
            a0[r] = _mm512_fmadd_ps(v0, w_, a0[r]);   \
            a1[r] = _mm512_fmadd_ps(v1, w_, a1[r]);   \
        }                                             \
    } while (0)
static LF_AVX512 void down_avx512(int64_t N, int64_t K, int64_t R, const float *x, int64_t ldx, const float *W,
                                  int64_t ldw, float alpha, float *h) {
    const int64_t K16 = K & ~(int64_t)15;
    const __mmask16 mt = lf_mask(K - K16);
    for (int64_t n = 0; n < N; n += 2) {
        const int two = n + 1 < N;
        const float *x0 = x + n * ldx, *x1 = two ? x0 + ldx : x0;
        for (int64_t r0 = 0; r0 < R; r0 += 8) {
            __m512 a0[8], a1[8];
            for (int r = 0; r < 8; r++) a0[r] = a1[r] = _mm512_setzero_ps();
            const float *w0 = W + r0 * ldw;
            for (int64_t k = 0; k < K16; k += 16) {
                __m512 v0 = _mm512_loadu_ps(x0 + k), v1 = _mm512_loadu_ps(x1 + k);
#define LF_LD(p) _mm512_loadu_ps(p)
                LF_DOWN_STEP(v0, v1, w0, k, LF_LD);
#undef LF_LD
            }
            if (K16 < K) {
                __m512 v0 = _mm512_maskz_loadu_ps(mt, x0 + K16), v1 = _mm512_maskz_loadu_ps(mt, x1 + K16);
#define LF_LD(p) _mm512_maskz_loadu_ps(mt, p)
                LF_DOWN_STEP(v0, v1, w0, K16, LF_LD);
#undef LF_LD
            }
            for (int r = 0; r < 8; r++) {
                h[n * R + r0 + r] = alpha * _mm512_reduce_add_ps(a0[r]);
                if (two) h[(n + 1) * R + r0 + r] = alpha * _mm512_reduce_add_ps(a1[r]);
            }
        }
    }
}
#undef LF_DOWN_STEP

/* Two rows and 64 columns at a time: 8 independent accumulator chains (one
 * per row and 16-column group), so the FMA latency is hidden (with one
 * chain per row, 8 dependent FMAs per vector ran at half the FMA rate). */
static LF_AVX512 void up_avx512(int64_t N, int64_t J, int64_t R, const float *h, const float *W, int64_t ldw,
                                float *y, int64_t ldy, int add) {
    const int64_t J64 = J & ~(int64_t)63;
    for (int64_t n = 0; n < N; n += 2) {
        const int two = n + 1 < N;
        float *y0 = y + n * ldy, *y1 = y0 + (two ? ldy : 0);
        for (int64_t r0 = 0; r0 < R; r0 += 8) {
            const int ld = add || r0 > 0; /* later rank groups add to the first's sums */
            __m512 b0[8], b1[8];
            for (int r = 0; r < 8; r++) {
                b0[r] = _mm512_set1_ps(h[n * R + r0 + r]);
                b1[r] = _mm512_set1_ps(h[(n + two) * R + r0 + r]);
            }
            const float *w0 = W + r0 * ldw;
            for (int64_t j = 0; j < J64; j += 64) {
                __m512 s0[4], s1[4];
                for (int c = 0; c < 4; c++) {
                    s0[c] = ld ? _mm512_loadu_ps(y0 + j + 16 * c) : _mm512_setzero_ps();
                    s1[c] = ld ? _mm512_loadu_ps(y1 + j + 16 * c) : _mm512_setzero_ps();
                }
                for (int r = 0; r < 8; r++)
                    for (int c = 0; c < 4; c++) {
                        __m512 w = _mm512_loadu_ps(w0 + r * ldw + j + 16 * c);
                        s0[c] = _mm512_fmadd_ps(b0[r], w, s0[c]);
                        s1[c] = _mm512_fmadd_ps(b1[r], w, s1[c]);
                    }
                /* with one row left, y1 == y0: store row 0 last */
                for (int c = 0; c < 4; c++) _mm512_storeu_ps(y1 + j + 16 * c, s1[c]);
                for (int c = 0; c < 4; c++) _mm512_storeu_ps(y0 + j + 16 * c, s0[c]);
            }
            for (int64_t j = J64; j < J; j += 16) {
                const __mmask16 m = lf_mask(J - j);
                __m512 s0 = ld ? _mm512_maskz_loadu_ps(m, y0 + j) : _mm512_setzero_ps();
                __m512 s1 = ld ? _mm512_maskz_loadu_ps(m, y1 + j) : _mm512_setzero_ps();
                for (int r = 0; r < 8; r++) {
                    __m512 w = _mm512_maskz_loadu_ps(m, w0 + r * ldw + j);
                    s0 = _mm512_fmadd_ps(b0[r], w, s0);
                    s1 = _mm512_fmadd_ps(b1[r], w, s1);
                }
                _mm512_mask_storeu_ps(y1 + j, m, s1);
                _mm512_mask_storeu_ps(y0 + j, m, s0);
            }
        }
    }
}

/* P [R, C] += h^T X over M rows (a tile that sits in L2): 8 ranks x 32
 * columns of accumulators in registers, loaded from and stored to P once
 * per tile. */
static LF_AVX512 void outer_avx512(int64_t M, int64_t C, int64_t R, const float *h, const float *X, int64_t ldx,
                                   float *P) {
    for (int64_t r0 = 0; r0 < R; r0 += 8) {
        for (int64_t cb = 0; cb < C; cb += 32) {
            const __mmask16 m0 = lf_mask(C - cb), m1 = C - cb > 16 ? lf_mask(C - cb - 16) : (__mmask16)0;
            const int full = C - cb >= 32;
            float *pc = P + r0 * C + cb;
            __m512 a0[8], a1[8];
            for (int r = 0; r < 8; r++) {
                a0[r] = _mm512_maskz_loadu_ps(m0, pc + r * C);
                a1[r] = _mm512_maskz_loadu_ps(m1, pc + r * C + 16);
            }
            const float *xc = X + cb, *hc = h + r0;
            if (full) {
                for (int64_t n = 0; n < M; n++) {
                    const float *xr = xc + n * ldx, *hr = hc + n * R;
                    __m512 v0 = _mm512_loadu_ps(xr), v1 = _mm512_loadu_ps(xr + 16);
                    for (int r = 0; r < 8; r++) {
                        __m512 hb = _mm512_set1_ps(hr[r]);
                        a0[r] = _mm512_fmadd_ps(hb, v0, a0[r]);
                        a1[r] = _mm512_fmadd_ps(hb, v1, a1[r]);
                    }
                }
            } else {
                for (int64_t n = 0; n < M; n++) {
                    const float *xr = xc + n * ldx, *hr = hc + n * R;
                    __m512 v0 = _mm512_maskz_loadu_ps(m0, xr), v1 = _mm512_maskz_loadu_ps(m1, xr + 16);
                    for (int r = 0; r < 8; r++) {
                        __m512 hb = _mm512_set1_ps(hr[r]);
                        a0[r] = _mm512_fmadd_ps(hb, v0, a0[r]);
                        a1[r] = _mm512_fmadd_ps(hb, v1, a1[r]);
                    }
                }
            }
            for (int r = 0; r < 8; r++) {
                if (full) {
                    _mm512_storeu_ps(pc + r * C, a0[r]);
                    _mm512_storeu_ps(pc + r * C + 16, a1[r]);
                } else {
                    _mm512_mask_storeu_ps(pc + r * C, m0, a0[r]);
                    _mm512_mask_storeu_ps(pc + r * C + 16, m1, a1[r]);
                }
            }
        }
    }
}
#endif

static void k_down(int avx, int64_t N, int64_t K, int64_t R, const float *x, int64_t ldx, const float *W, int64_t ldw,
                   float alpha, float *h) {
#if LF_X86
    if (avx) {
        down_avx512(N, K, R, x, ldx, W, ldw, alpha, h);
        return;
    }
#endif
    (void)avx;
    down_generic(N, K, R, x, ldx, W, ldw, alpha, h);
}

static void k_up(int avx, int64_t N, int64_t J, int64_t R, const float *h, const float *W, int64_t ldw, float *y,
                 int64_t ldy, int add) {
#if LF_X86
    if (avx) {
        up_avx512(N, J, R, h, W, ldw, y, ldy, add);
        return;
    }
#endif
    (void)avx;
    up_generic(N, J, R, h, W, ldw, y, ldy, add);
}

static void k_outer(int avx, int64_t M, int64_t C, int64_t R, const float *h, const float *X, int64_t ldx,
                    float *P) {
#if LF_X86
    if (avx) {
        outer_avx512(M, C, R, h, X, ldx, P);
        return;
    }
#endif
    (void)avx;
    outer_generic(M, C, R, h, X, ldx, P);
}

/* ---- the op ------------------------------------------------------------------------ */

typedef struct lf_entry {
    mtft_tensor *A, *B;
    int64_t r0, n; /* rows of x / y */
    float scale;
    float *h;      /* [n, R] = x_rows A^T (unscaled) */
    float *Bt;     /* [R, O] */
} lf_entry;

typedef struct lf_saved {
    int n;
    lf_entry *e;
} lf_saved;

/* Bt [R, O] = B^T of B [O, R]. */
static void transpose_b(const float *B, int64_t O, int64_t R, float *Bt) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t r = 0; r < R; r++) Bt[r * O + o] = B[o * R + r];
}

/* Where rows [r0, r0+n) of an entry send their dA and dB: one segment
 * (the whole gradients) when neither weight's group is split, else one per
 * non-empty part of the row partition (the part's block for a split weight,
 * the whole gradient otherwise). NULL destinations: no gradient wanted. */
typedef struct lf_seg {
    int64_t p0, p1;
    float *dA, *dB;
} lf_seg;

static float *part_grad(mtft_graph *g, mtft_tensor *w, int k) {
    if (!mtft__needs_grad(w)) return NULL;
    return mtft__is_split(w) ? mtft__split_grad(g, w, k) : mtft__grad(g, w);
}

/* Returns the segment count or a negative status. */
static int segments(mtft_graph *g, mtft_tensor *A, mtft_tensor *B, int64_t Ntot, int64_t r0, int64_t n, lf_seg *seg,
                    int cap) {
    if (!mtft__is_split(A) && !mtft__is_split(B)) {
        seg[0].p0 = r0;
        seg[0].p1 = r0 + n;
        seg[0].dA = part_grad(g, A, 0);
        seg[0].dB = part_grad(g, B, 0);
        return g->status < 0 ? g->status : 1;
    }
    mtft_tensor *w = mtft__is_split(A) ? A : B;
    int c = 0;
    for (int k = 0; k < g->n_parts || k == 0; k++) {
        int64_t a, b;
        int rc = mtft__part_rows(g, w, Ntot, k, &a, &b);
        if (rc < 0) return rc;
        lf_seg t = {a > r0 ? a : r0, b < r0 + n ? b : r0 + n, part_grad(g, A, k), part_grad(g, B, k)};
        if (g->status < 0) return g->status;
        if ((mtft__is_split(A) && !t.dA) || (mtft__is_split(B) && !t.dB)) return MTFT_ENOMEM;
        if (t.p1 <= t.p0) continue;
        if (c == cap) return mtft__err(MTFT_ERANGE, "peft lora_fused: more than %d parts", cap);
        seg[c++] = t;
    }
    return c;
}

/* Waves: consecutive entries whose row ranges are pairwise disjoint (the
 * usual mixed batch: one entry per task) run in one parallel region; an
 * entry that overlaps one of the current wave (a shared LoRA and a task's)
 * starts the next wave. wave[e] = the wave of entry e; returns the count.
 * mark: U ints of scratch. */
static int waves(const lf_entry *es, int n, int64_t rpu, int64_t U, int *mark, int *wave) {
    for (int64_t u = 0; u < U; u++) mark[u] = -1;
    int w = 0;
    for (int e = 0; e < n; e++) {
        const int64_t u0 = es[e].r0 / rpu, u1 = (es[e].r0 + es[e].n) / rpu;
        int clash = 0;
        for (int64_t u = u0; u < u1 && !clash; u++) clash = mark[u] == w;
        if (clash) w++;
        for (int64_t u = u0; u < u1; u++) mark[u] = w;
        wave[e] = w;
    }
    return w + 1;
}

/* Per entry of a backward: its segments and its chunks' range. */
typedef struct lf_bw {
    lf_seg *seg; /* one per part of the row partition (or one) */
    int ns, needA, needB, store;
    int64_t c_first, c_count; /* chunks [c_first, c_first + c_count) */
    float *dh;                /* [n, R] */
} lf_bw;

/* Backward: one pass over each entry's rows, in fixed chunks of LF_CHUNK
 * rows (never across a part boundary), each chunk on one thread, tile by
 * tile:
 *   dh = s dy_tile B; dx_tile += dh A; PA_c += dh^T x_tile; PB_c += h^T dy_tile
 * so dy and x are read once while they sit in L2. Then dA += sum_c PA_c and
 * dB += s sum_c PB_c^T, chunks in order, parallel over columns: the same
 * bits for any thread count. The chunks of a wave's entries share one
 * parallel region, and so do their reductions. */
static int lora_fused_backward(mtft_graph *g, mtft_node *nd) {
    lf_saved *s = nd->saved;
    const int n = s->n;
    const lf_entry *es = s->e;
    mtft_tensor *x = nd->in[0], *y = nd->out;
    const float *dy = y->grad;
    const int64_t I = x->ne[x->ndim - 1], O = y->ne[y->ndim - 1], Ntot = mtft__rows(x), U = x->ne[0];
    const int64_t rpu = Ntot / U;
    /* A fresh dx (no other consumer of x ran yet: the usual case, as this
     * node runs before the base projection's backward) is stored, not
     * zeroed and added to: an entry whose rows no earlier entry covered
     * stores them, rows no entry covers are zeroed, the others add. */
    int fresh = 0;
    float *dx = mtft__grad_w(g, x, &fresh);
    if (g->status < 0) return g->status;
    lf_bw *bw = mtft__scratch(g, (size_t)n * sizeof *bw);
    int *mark = mtft__scratch(g, (size_t)U * sizeof(int)), *wave = mtft__scratch(g, (size_t)n * sizeof(int));
    if (!bw || !mark || !wave) return MTFT_ENOMEM;
    /* mark[u]: 1 covered by an earlier entry, 2 stored by one */
    for (int64_t u = 0; u < U; u++) mark[u] = 0;
    for (int e = 0; e < n; e++) {
        const int64_t u0 = es[e].r0 / rpu, u1 = (es[e].r0 + es[e].n) / rpu;
        bw[e].store = fresh;
        for (int64_t u = u0; u < u1; u++) bw[e].store &= !mark[u];
        for (int64_t u = u0; u < u1; u++) mark[u] = bw[e].store ? 2 : mark[u] ? mark[u] : 1;
    }
    if (fresh)
        for (int64_t u = 0; u < U; u++)
            if (mark[u] != 2) memset(dx + u * rpu * I, 0, (size_t)(rpu * I) * sizeof(float));
    const int nw = waves(es, n, rpu, U, mark, wave);
    /* segments, chunks and scratch per entry */
    int64_t nch = 0, psum = 0;
    for (int e = 0; e < n; e++) {
        lf_bw *b = &bw[e];
        const int64_t R = es[e].A->ne[0];
        const int cap = g->n_parts > 1 ? g->n_parts : 1;
        b->seg = mtft__scratch(g, (size_t)cap * sizeof *b->seg);
        if (!b->seg) return MTFT_ENOMEM;
        b->ns = segments(g, es[e].A, es[e].B, Ntot, es[e].r0, es[e].n, b->seg, cap);
        if (b->ns < 0) return b->ns;
        b->needA = b->needB = 0;
        b->c_first = nch;
        for (int k = 0; k < b->ns; k++) {
            b->needA |= b->seg[k].dA != NULL;
            b->needB |= b->seg[k].dB != NULL;
            nch += (b->seg[k].p1 - b->seg[k].p0 + LF_CHUNK - 1) / LF_CHUNK;
        }
        b->c_count = nch - b->c_first;
        b->dh = NULL;
        if (dx || b->needA) {
            b->dh = mtft__scratch(g, (size_t)(es[e].n * R) * sizeof(float));
            if (!b->dh) return MTFT_ENOMEM;
        }
        if (b->needA || b->needB) psum += b->c_count * R * (I + O);
    }
    /* chunk c: rows [c0, c1) of entry ce, segment cs; partials PA [R, I] and
     * PB [R, O] at part + po */
    int64_t *c0 = mtft__scratch(g, (size_t)nch * 3 * sizeof(int64_t));
    int *ce = mtft__scratch(g, (size_t)nch * 2 * sizeof(int));
    float *part = psum ? mtft__scratch(g, (size_t)psum * sizeof(float)) : NULL;
    if (!c0 || !ce || (psum && !part)) return MTFT_ENOMEM;
    int64_t *c1 = c0 + nch, *po = c0 + 2 * nch;
    int *cs = ce + nch;
    for (int e = 0, c = 0; e < n; e++)
        for (int k = 0; k < bw[e].ns; k++)
            for (int64_t a = bw[e].seg[k].p0; a < bw[e].seg[k].p1; a += LF_CHUNK, c++) {
                c0[c] = a;
                c1[c] = a + LF_CHUNK < bw[e].seg[k].p1 ? a + LF_CHUNK : bw[e].seg[k].p1;
                ce[c] = e;
                cs[c] = k;
            }
    for (int64_t c = 0, off = 0; c < nch; c++) {
        const int e = ce[c];
        po[c] = off;
        if (bw[e].needA || bw[e].needB) off += es[e].A->ne[0] * (I + O);
    }
    const int64_t nba = (I + LF_COLS - 1) / LF_COLS, nbb = (O + LF_COLS - 1) / LF_COLS;
    for (int w = 0, e0 = 0; w < nw; w++) {
        int e1 = e0;
        while (e1 < n && wave[e1] == w) e1++;
        const int64_t cf = bw[e0].c_first, cl = bw[e1 - 1].c_first + bw[e1 - 1].c_count;
        int64_t work = 0;
        for (int e = e0; e < e1; e++) work += es[e].n * (I + O) * es[e].A->ne[0];
#pragma omp parallel for schedule(static) if (work > 131072)
        for (int64_t c = cf; c < cl; c++) {
            const int e = ce[c];
            const lf_entry *en = &es[e];
            const lf_bw *b = &bw[e];
            const int64_t R = en->A->ne[0], r0 = en->r0;
            const int avx = lf_use_avx512(R);
            const int np = b->needA || b->needB;
            float *PA = np ? part + po[c] : NULL, *PB = np ? PA + R * I : NULL;
            if (np) memset(PA, 0, (size_t)(R * (I + O)) * sizeof(float));
            for (int64_t a = c0[c]; a < c1[c]; a += LF_ROWS) {
                const int64_t m = c1[c] - a < LF_ROWS ? c1[c] - a : LF_ROWS;
                float *dht = b->dh ? b->dh + (a - r0) * R : NULL;
                if (dht) k_down(avx, m, O, R, dy + a * O, O, en->Bt, O, en->scale, dht);
                if (dx) k_up(avx, m, I, R, dht, en->A->data, I, dx + a * I, I, !b->store);
                if (b->needA) k_outer(avx, m, I, R, dht, x->data + a * I, I, PA);
                if (b->needB) k_outer(avx, m, O, R, en->h + (a - r0) * R, dy + a * O, O, PB);
            }
        }
        /* reduction: column blocks of dA (I) then of dB (O); each block runs
         * over the wave's entries in order (two entries may share a weight) */
        if (part) {
#pragma omp parallel for schedule(static) if (work > 131072)
            for (int64_t blk = 0; blk < nba + nbb; blk++) {
                const int isA = blk < nba;
                const int64_t C = isA ? I : O, q0 = (isA ? blk : blk - nba) * LF_COLS;
                const int64_t q1 = q0 + LF_COLS < C ? q0 + LF_COLS : C;
                float acc[LF_COLS];
                for (int e = e0; e < e1; e++) {
                    const lf_bw *b = &bw[e];
                    const int64_t R = es[e].A->ne[0];
                    if (isA ? !b->needA : !b->needB) continue;
                    const int64_t cend = b->c_first + b->c_count;
                    for (int64_t r = 0; r < R; r++) {
                        /* chunks of one segment are consecutive: sum them, then add */
                        for (int64_t c = b->c_first; c < cend;) {
                            const int k = cs[c];
                            float *dst = isA ? b->seg[k].dA : b->seg[k].dB;
                            for (int64_t q = q0; q < q1; q++) acc[q - q0] = 0.0f;
                            for (; c < cend && cs[c] == k; c++) {
                                const float *pc = part + po[c] + (isA ? r * I : R * I + r * O);
                                for (int64_t q = q0; q < q1; q++) acc[q - q0] += pc[q];
                            }
                            if (!dst) continue;
                            if (isA)
                                for (int64_t q = q0; q < q1; q++) dst[r * I + q] += acc[q - q0];
                            else
                                for (int64_t q = q0; q < q1; q++) dst[q * R + r] += es[e].scale * acc[q - q0];
                        }
                    }
                }
            }
        }
        e0 = e1;
    }
    return g->status;
}
static const mtft_op_def lora_fused_op = {"peft_lora_fused", lora_fused_backward};
mtft_tensor *mtft_peft__lora_fused(mtft_graph *g, mtft_tensor *x, mtft_tensor *y, int n, mtft_tensor **A,
                                   mtft_tensor **B, const int64_t *u0, const int64_t *nu, const float *scale) {
    if (!mtft__op_begin(g, 2, x, y)) return NULL;
    for (int e = 0; e < n; e++)
        if (!mtft__op_begin(g, 2, A[e], B[e])) return NULL;
    if (n == 0) return y;
    char sx[64], sy[64], sa[64], sb[64];
    mtft__shape_str(x, sx, sizeof sx);
    mtft__shape_str(y, sy, sizeof sy);
    if (!mtft__contig(x) || !mtft__contig(y) || x->ndim < 2 || y->ndim < 2 || x->ne[0] != y->ne[0] ||
        mtft__rows(x) != mtft__rows(y))
        return mtft__op_fail(g, MTFT_ESHAPE,
                             "peft lora_fused: x %s and y %s must be contiguous with the same rows (>= 2 dims)", sx,
                             sy);
    const int64_t I = x->ne[x->ndim - 1], O = y->ne[y->ndim - 1], U = x->ne[0], rpu = mtft__rows(x) / U;
    for (int e = 0; e < n; e++) {
        mtft__shape_str(A[e], sa, sizeof sa);
        mtft__shape_str(B[e], sb, sizeof sb);
        int ok = A[e]->ndim == 2 && B[e]->ndim == 2 && mtft__contig(A[e]) && mtft__contig(B[e]) &&
                 A[e]->ne[1] == I && B[e]->ne[0] == O && B[e]->ne[1] == A[e]->ne[0];
        if (!ok || u0[e] < 0 || nu[e] < 1 || u0[e] + nu[e] > U)
            return mtft__op_fail(g, MTFT_ESHAPE,
                                 "peft lora_fused: entry %d: A %s [R, %lld] and B %s [%lld, R] do not fit x %s -> y "
                                 "%s, or rows [%lld, %lld) are outside its %lld units",
                                 e, sa, (long long)I, sb, (long long)O, sx, sy, (long long)u0[e],
                                 (long long)(u0[e] + nu[e]), (long long)U);
    }
    int rec = mtft__needs_grad(x);
    mtft_tensor *any = NULL;
    for (int e = 0; e < n && !any; e++)
        if (mtft__needs_grad(A[e])) any = A[e];
        else if (mtft__needs_grad(B[e])) any = B[e];
    rec = g->grad_enabled && (rec || any);
    lf_entry *es = mtft__scratch(g, (size_t)n * sizeof *es);
    float **Bs = mtft__scratch(g, (size_t)n * sizeof *Bs);
    int64_t *t_first = mtft__scratch(g, (size_t)(n + 1) * sizeof *t_first);
    int *mark = mtft__scratch(g, (size_t)U * sizeof(int)), *wave = mtft__scratch(g, (size_t)n * sizeof(int));
    if (!es || !Bs || !t_first || !mark || !wave) return NULL;
    t_first[0] = 0;
    for (int e = 0; e < n; e++) {
        const int64_t R = A[e]->ne[0], N = nu[e] * rpu;
        lf_entry *t = &es[e];
        t->A = A[e];
        t->B = B[e];
        t->r0 = u0[e] * rpu;
        t->n = N;
        t->scale = scale[e];
        t->h = mtft__scratch(g, (size_t)(N * R) * sizeof(float));
        t->Bt = mtft__scratch(g, (size_t)(R * O) * sizeof(float));
        /* s B^T for the forward; the saved Bt is unscaled */
        Bs[e] = mtft__scratch(g, (size_t)(R * O) * sizeof(float));
        if (!t->h || !t->Bt || !Bs[e]) return NULL;
        transpose_b(B[e]->data, O, R, t->Bt);
        for (int64_t i = 0; i < R * O; i++) Bs[e][i] = scale[e] * t->Bt[i];
        t_first[e + 1] = t_first[e] + (N + LF_ROWS - 1) / LF_ROWS; /* row tiles */
    }
    /* h = x A^T and y += h (s B^T), tile by tile; a wave's tiles in one region */
    const int nw = waves(es, n, rpu, U, mark, wave);
    for (int w = 0, e0 = 0; w < nw; w++) {
        int e1 = e0;
        int64_t work = 0;
        for (; e1 < n && wave[e1] == w; e1++) work += es[e1].n * (I + O) * A[e1]->ne[0];
        const int64_t tf = t_first[e0], tl = t_first[e1];
#pragma omp parallel for schedule(static) if (work > 131072)
        for (int64_t ti = tf; ti < tl; ti++) {
            int e = e0;
            while (t_first[e + 1] <= ti) e++;
            const lf_entry *t = &es[e];
            const int64_t R = t->A->ne[0], a = t->r0 + (ti - t_first[e]) * LF_ROWS;
            const int64_t m = t->r0 + t->n - a < LF_ROWS ? t->r0 + t->n - a : LF_ROWS;
            const int avx = lf_use_avx512(R);
            float *h = t->h + (a - t->r0) * R;
            k_down(avx, m, I, R, x->data + a * I, I, t->A->data, I, 1.0f, h);
            k_up(avx, m, O, R, h, Bs[e], O, y->data + a * O, O, 1);
        }
        e0 = e1;
    }
    if (!rec) return y;
    mtft_node *nd = any ? mtft__record(g, &lora_fused_op, y, 2, x, any) : mtft__record(g, &lora_fused_op, y, 1, x);
    if (nd) {
        lf_saved *s = mtft__scratch(g, sizeof *s);
        if (!s) return NULL;
        s->n = n;
        s->e = es;
        nd->saved = s;
    }
    return y;
}
