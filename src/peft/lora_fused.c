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
 *   forward   h = x A^T [N, R] (saved), y += s h B^T        (rows in parallel)
 *   backward  dh = s dy B [N, R]; dx += dh A                (rows in parallel)
 *             dA += dh^T x [R, I]; dB += s dy^T h [O, R]    (columns in parallel)
 * dA and dB go to each part's block of the row partition when the LoRA's
 * group is split (mtft__is_split), at no extra FLOPs.
 *
 * Kernels. Three shapes serve all six products:
 *   rows_down   h[n, r] = alpha sum_k x[n, k] W[r, k]      (W [R, K])
 *   rows_up     y[n, j] += sum_r h[n, r] W[r, j]           (W [R, J])
 *   cols_outer  D[r, c] (or D[c, r]) += alpha sum_n h[n, r] X[n, c]
 * Each has an AVX-512 version (x86-64, R a multiple of 8, chosen at run time
 * by the CPU's features) and a portable one. Every output element is summed
 * in a fixed order that does not depend on the thread count or the
 * schedule: rows_* work row by row, cols_outer runs each column over all
 * rows in order. The AVX-512 and portable versions may differ in the last
 * bits (FMA, lane order). */
#include <stdatomic.h>
#include <string.h>

#include "peft_impl.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(MTFT_NO_CLONES)
#define LF_X86 1
#include <immintrin.h>
#define LF_AVX512 __attribute__((target("avx512f")))
#else
#define LF_X86 0
#endif

/* Row blocks of the row-parallel passes (even, so the 2-row kernels pair
 * the same rows for any thread count), column blocks of cols_outer (a
 * multiple of 32) and its row tiles. */
#define LF_ROWS 16
#define LF_COLS 256
#define LF_TILE 64

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

/* y[n*ldy + j] += sum_r h[n*R + r] W[r*ldw + j], rows [0, N), j < J. */
static void up_generic(int64_t N, int64_t J, int64_t R, const float *h, const float *W, int64_t ldw, float *y,
                       int64_t ldy) {
    for (int64_t n = 0; n < N; n++) {
        float *yr = y + n * ldy;
        const float *hr = h + n * R;
        for (int64_t r = 0; r < R; r++) {
            const float hv = hr[r];
            const float *w = W + r * ldw;
            for (int64_t j = 0; j < J; j++) yr[j] += hv * w[j];
        }
    }
}

/* Columns [c0, c1): D[r*ldd + c] += alpha * sum_{n<N} h[n*R + r] X[n*ldx + c]
 * (trans_d: D[c*ldd + r]). */
static void outer_generic(int64_t c0, int64_t c1, int64_t N, int64_t R, const float *h, const float *X, int64_t ldx,
                          float alpha, float *D, int64_t ldd, int trans_d) {
    enum { CB = 16 };
    for (int64_t cb = c0; cb < c1; cb += CB) {
        int64_t nc = c1 - cb < CB ? c1 - cb : CB;
        for (int64_t r = 0; r < R; r++) {
            float acc[CB] = {0};
            for (int64_t n = 0; n < N; n++) {
                const float hv = h[n * R + r];
                const float *xr = X + n * ldx + cb;
                for (int64_t q = 0; q < nc; q++) acc[q] += hv * xr[q];
            }
            for (int64_t q = 0; q < nc; q++) {
                float *d = trans_d ? D + (cb + q) * ldd + r : D + r * ldd + cb + q;
                *d += alpha * acc[q];
            }
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

static LF_AVX512 void up_avx512(int64_t N, int64_t J, int64_t R, const float *h, const float *W, int64_t ldw,
                                float *y, int64_t ldy) {
    const int64_t J16 = J & ~(int64_t)15;
    const __mmask16 mt = lf_mask(J - J16);
    for (int64_t n = 0; n < N; n += 2) {
        const int two = n + 1 < N;
        float *y0 = y + n * ldy, *y1 = y0 + (two ? ldy : 0);
        for (int64_t r0 = 0; r0 < R; r0 += 8) {
            __m512 b0[8], b1[8];
            for (int r = 0; r < 8; r++) {
                b0[r] = _mm512_set1_ps(h[n * R + r0 + r]);
                b1[r] = _mm512_set1_ps(h[(n + two) * R + r0 + r]);
            }
            const float *w0 = W + r0 * ldw;
            for (int64_t j = 0; j < J16; j += 16) {
                __m512 s0 = _mm512_loadu_ps(y0 + j), s1 = _mm512_loadu_ps(y1 + j);
                for (int r = 0; r < 8; r++) {
                    __m512 w = _mm512_loadu_ps(w0 + r * ldw + j);
                    s0 = _mm512_fmadd_ps(b0[r], w, s0);
                    s1 = _mm512_fmadd_ps(b1[r], w, s1);
                }
                /* with one row left, y1 == y0: store row 0 last */
                _mm512_storeu_ps(y1 + j, s1);
                _mm512_storeu_ps(y0 + j, s0);
            }
            if (J16 < J) {
                __m512 s0 = _mm512_maskz_loadu_ps(mt, y0 + J16), s1 = _mm512_maskz_loadu_ps(mt, y1 + J16);
                for (int r = 0; r < 8; r++) {
                    __m512 w = _mm512_maskz_loadu_ps(mt, w0 + r * ldw + J16);
                    s0 = _mm512_fmadd_ps(b0[r], w, s0);
                    s1 = _mm512_fmadd_ps(b1[r], w, s1);
                }
                _mm512_mask_storeu_ps(y1 + J16, mt, s1);
                _mm512_mask_storeu_ps(y0 + J16, mt, s0);
            }
        }
    }
}

/* Columns [c0, c1) (at most LF_COLS): rows in tiles of LF_TILE, each tile's
 * rows read once per 32-column group while they sit in L2 (sequential reads
 * of c1 - c0 floats per row, which the prefetchers follow); 8 ranks x 32
 * columns of accumulators in registers, carried over the tiles in t. */
static LF_AVX512 void outer_avx512(int64_t c0, int64_t c1, int64_t N, int64_t R, const float *h, const float *X,
                                   int64_t ldx, float alpha, float *D, int64_t ldd, int trans_d) {
    float t[8][LF_COLS];
    const int64_t nc = c1 - c0;
    for (int64_t r0 = 0; r0 < R; r0 += 8) {
        memset(t, 0, sizeof t);
        for (int64_t n0 = 0; n0 < N; n0 += LF_TILE) {
            const int64_t n1 = n0 + LF_TILE < N ? n0 + LF_TILE : N;
            for (int64_t cb = 0; cb < nc; cb += 32) {
                const __mmask16 m0 = lf_mask(nc - cb), m1 = nc - cb > 16 ? lf_mask(nc - cb - 16) : (__mmask16)0;
                __m512 a0[8], a1[8];
                for (int r = 0; r < 8; r++) {
                    a0[r] = _mm512_loadu_ps(t[r] + cb);
                    a1[r] = _mm512_loadu_ps(t[r] + cb + 16);
                }
                const float *xc = X + c0 + cb, *hc = h + r0;
                if (nc - cb >= 32) {
                    for (int64_t n = n0; n < n1; n++) {
                        const float *xr = xc + n * ldx, *hr = hc + n * R;
                        __m512 v0 = _mm512_loadu_ps(xr), v1 = _mm512_loadu_ps(xr + 16);
                        for (int r = 0; r < 8; r++) {
                            __m512 hb = _mm512_set1_ps(hr[r]);
                            a0[r] = _mm512_fmadd_ps(hb, v0, a0[r]);
                            a1[r] = _mm512_fmadd_ps(hb, v1, a1[r]);
                        }
                    }
                } else {
                    for (int64_t n = n0; n < n1; n++) {
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
                    _mm512_storeu_ps(t[r] + cb, a0[r]);
                    _mm512_storeu_ps(t[r] + cb + 16, a1[r]);
                }
            }
        }
        if (!trans_d) {
            for (int r = 0; r < 8; r++) {
                float *d = D + (r0 + r) * ldd + c0;
                for (int64_t q = 0; q < nc; q++) d[q] += alpha * t[r][q];
            }
        } else {
            for (int64_t q = 0; q < nc; q++) {
                float *d = D + (c0 + q) * ldd + r0;
                for (int r = 0; r < 8; r++) d[r] += alpha * t[r][q];
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
                 int64_t ldy) {
#if LF_X86
    if (avx) {
        up_avx512(N, J, R, h, W, ldw, y, ldy);
        return;
    }
#endif
    (void)avx;
    up_generic(N, J, R, h, W, ldw, y, ldy);
}

static void k_outer(int avx, int64_t c0, int64_t c1, int64_t N, int64_t R, const float *h, const float *X,
                    int64_t ldx, float alpha, float *D, int64_t ldd, int trans_d) {
#if LF_X86
    if (avx) {
        outer_avx512(c0, c1, N, R, h, X, ldx, alpha, D, ldd, trans_d);
        return;
    }
#endif
    (void)avx;
    outer_generic(c0, c1, N, R, h, X, ldx, alpha, D, ldd, trans_d);
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

/* Destinations of one weight's gradient: the whole tensor, or each part of
 * the row partition intersected with rows [r0, r0+n). Returns the count
 * (0: no gradient wanted) or a negative status. */
static int grad_dests(mtft_graph *g, mtft_tensor *w, int64_t Ntot, int64_t r0, int64_t n, float **dst, int64_t *p0,
                      int64_t *p1, int cap) {
    if (!mtft__needs_grad(w)) return 0;
    if (!mtft__is_split(w)) {
        float *d = mtft__grad(g, w);
        if (!d) return 0;
        dst[0] = d;
        p0[0] = r0;
        p1[0] = r0 + n;
        return 1;
    }
    int c = 0;
    for (int k = 0; k < g->n_parts || k == 0; k++) {
        int64_t a, b;
        int rc = mtft__part_rows(g, w, Ntot, k, &a, &b);
        if (rc < 0) return rc;
        float *d = mtft__split_grad(g, w, k);
        if (!d) return g->status < 0 ? g->status : MTFT_ENOMEM;
        a = a > r0 ? a : r0;
        b = b < r0 + n ? b : r0 + n;
        if (b <= a) continue;
        if (c == cap) return mtft__err(MTFT_ERANGE, "peft lora: more than %d parts", cap);
        dst[c] = d;
        p0[c] = a;
        p1[c] = b;
        c++;
    }
    return c;
}

static int lora_fused_backward(mtft_graph *g, mtft_node *nd) {
    lf_saved *s = nd->saved;
    mtft_tensor *x = nd->in[0], *y = nd->out;
    const float *dy = y->grad;
    const int64_t I = x->ne[x->ndim - 1], O = y->ne[y->ndim - 1], Ntot = mtft__rows(x);
    float *dx = mtft__grad(g, x);
    if (g->status < 0) return g->status;
    for (int ei = 0; ei < s->n; ei++) {
        const lf_entry *e = &s->e[ei];
        const int64_t R = e->A->ne[0], r0 = e->r0, N = e->n;
        const int avx = lf_use_avx512(R);
        const float *A = e->A->data, *Bt = e->Bt, *h = e->h, *dye = dy + r0 * O;
        const float sc = e->scale;
        enum { CAP = 64 };
        float *dA[CAP], *dB[CAP];
        int64_t a0[CAP], a1[CAP], b0[CAP], b1[CAP];
        int na = grad_dests(g, e->A, Ntot, r0, N, dA, a0, a1, CAP);
        if (na < 0) return na;
        int nb = grad_dests(g, e->B, Ntot, r0, N, dB, b0, b1, CAP);
        if (nb < 0) return nb;
        float *dxe = dx ? dx + r0 * I : NULL, *dh = NULL;
        if (dxe || na > 0) {
            /* dh = s dy B (rows), then dx += dh A on the same rows */
            dh = mtft__scratch(g, (size_t)(N * R) * sizeof(float));
            if (!dh) return MTFT_ENOMEM;
            const int64_t nrb = (N + LF_ROWS - 1) / LF_ROWS;
#pragma omp parallel for schedule(static) if (N * (I + O) * R > 131072)
            for (int64_t rb = 0; rb < nrb; rb++) {
                int64_t a = rb * LF_ROWS, m = N - a < LF_ROWS ? N - a : LF_ROWS;
                k_down(avx, m, O, R, dye + a * O, O, Bt, O, sc, dh + a * R);
                if (dxe) k_up(avx, m, I, R, dh + a * R, A, I, dxe + a * I, I);
            }
        }
        /* dA += dh^T x and dB += s dy^T h, over column blocks (per part) */
        const int64_t nca = na ? (I + LF_COLS - 1) / LF_COLS : 0, ncb = nb ? (O + LF_COLS - 1) / LF_COLS : 0;
#pragma omp parallel for schedule(static) if (N * (I + O) * R > 131072)
        for (int64_t cb = 0; cb < nca + ncb; cb++) {
            if (cb < nca) {
                int64_t c0 = cb * LF_COLS, c1 = c0 + LF_COLS < I ? c0 + LF_COLS : I;
                for (int k = 0; k < na; k++)
                    k_outer(avx, c0, c1, a1[k] - a0[k], R, dh + (a0[k] - r0) * R, x->data + a0[k] * I, I, 1.0f,
                            dA[k], I, 0);
            } else {
                int64_t c0 = (cb - nca) * LF_COLS, c1 = c0 + LF_COLS < O ? c0 + LF_COLS : O;
                for (int k = 0; k < nb; k++)
                    k_outer(avx, c0, c1, b1[k] - b0[k], R, h + (b0[k] - r0) * R, dy + b0[k] * O, O, sc, dB[k], R,
                            1);
            }
        }
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
    if (!es) return NULL;
    for (int e = 0; e < n; e++) {
        const int64_t R = A[e]->ne[0], r0 = u0[e] * rpu, N = nu[e] * rpu;
        const int avx = lf_use_avx512(R);
        lf_entry *t = &es[e];
        t->A = A[e];
        t->B = B[e];
        t->r0 = r0;
        t->n = N;
        t->scale = scale[e];
        t->h = mtft__scratch(g, (size_t)(N * R) * sizeof(float));
        t->Bt = mtft__scratch(g, (size_t)(R * O) * sizeof(float));
        /* s B^T for the forward; the saved Bt is unscaled */
        float *Bs = mtft__scratch(g, (size_t)(R * O) * sizeof(float));
        if (!t->h || !t->Bt || !Bs) return NULL;
        transpose_b(B[e]->data, O, R, t->Bt);
        for (int64_t i = 0; i < R * O; i++) Bs[i] = scale[e] * t->Bt[i];
        const float *xe = x->data + r0 * I, *Ad = A[e]->data;
        float *ye = y->data + r0 * O, *h = t->h;
        const int64_t nrb = (N + LF_ROWS - 1) / LF_ROWS;
#pragma omp parallel for schedule(static) if (N * (I + O) * R > 131072)
        for (int64_t rb = 0; rb < nrb; rb++) {
            int64_t a = rb * LF_ROWS, m = N - a < LF_ROWS ? N - a : LF_ROWS;
            k_down(avx, m, I, R, xe + a * I, I, Ad, I, 1.0f, h + a * R);
            k_up(avx, m, O, R, h + a * R, Bs, O, ye + a * O, O);
        }
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
