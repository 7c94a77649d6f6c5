/* Dropout: y = x * keep / (1 - p), keep_i = [u_i >= p],
 *   u_i = mtft_rng_hash_uniform(stream, i), i the element's logical index,
 *   stream = graph seed ^ mix(per-graph call counter).
 * The mask is a pure function of (seed, call number, index): the same bits for
 * any thread count. Nothing is saved: backward recomputes the mask from the
 * stream (node i[0]). Identity (x itself, no node) when the graph is not
 * training or p == 0. */
#include <math.h>

#include "../tensor_impl.h"
#include "ops_simd.h"

/* splitmix64 finaliser: decorrelates consecutive call numbers */
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t mtft__graph_stream(mtft_graph *g) { return g->seed ^ mix64(++g->dropout_calls); }

/* keep_i = [mtft_rng_hash_uniform(stream, i) >= p], inlined: that function
 * returns (splitmix64(stream ^ i * C) >> 40) * 2^-24 exactly, so the test is
 * the integer (h >> 40) >= thr with thr = ceil(p * 2^24). The tests check
 * it against mtft_rng_hash_uniform bit for bit. */
static inline int keep_elem(uint64_t stream, uint64_t i, uint64_t thr) {
    uint64_t z = (stream ^ (i * 0xd1b54a32d192ed03ULL)) + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (z >> 40) >= thr;
}

/* dst[i] (+)= src[i] * keep_i * scale over [lo, hi) */
MTFT_SIMD_CLONES
static void dropout_range(float *dst, const float *src, int64_t lo, int64_t hi, uint64_t stream, uint64_t thr,
                          float scale, int acc) {
    if (acc)
        for (int64_t i = lo; i < hi; i++) dst[i] += keep_elem(stream, (uint64_t)i, thr) ? src[i] * scale : 0.0f;
    else
        for (int64_t i = lo; i < hi; i++) dst[i] = keep_elem(stream, (uint64_t)i, thr) ? src[i] * scale : 0.0f;
}

#define DROP_CHUNK 16384

static void dropout_apply(float *dst, const float *src, int64_t N, uint64_t stream, float p, float scale, int acc) {
    const uint64_t thr = (uint64_t)ceil((double)p * 16777216.0);
    const int64_t nc = (N + DROP_CHUNK - 1) / DROP_CHUNK;
#pragma omp parallel for schedule(static) if (nc > 1)
    for (int64_t c = 0; c < nc; c++)
        dropout_range(dst, src, c * DROP_CHUNK, c * DROP_CHUNK + DROP_CHUNK < N ? c * DROP_CHUNK + DROP_CHUNK : N,
                      stream, thr, scale, acc);
}

static int dropout_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    dropout_apply(dx, n->out->grad, mtft__numel(n->out), (uint64_t)n->i[0], n->f[0], n->f[1], 1);
    return MTFT_OK;
}
static const mtft_op_def dropout_op = {"dropout", dropout_backward};

mtft_tensor *mtft_dropout(mtft_graph *g, mtft_tensor *x, float p) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!(p >= 0.0f && p < 1.0f)) return mtft__op_fail(g, MTFT_ERANGE, "dropout: p = %g outside [0, 1)", (double)p);
    if (!g->training || p == 0.0f) return x;
    if (!mtft__contig(x)) {
        x = mtft_contiguous(g, x);
        if (!x) return NULL;
    }
    const uint64_t stream = mtft__graph_stream(g);
    const float scale = 1.0f / (1.0f - p);
    mtft_tensor *y = mtft__new(g, x->ndim, x->ne);
    if (!y) return NULL;
    dropout_apply(y->data, x->data, mtft__numel(x), stream, p, scale, 0);
    mtft_node *n = mtft__record(g, &dropout_op, y, 1, x);
    if (n) {
        n->i[0] = (int64_t)stream;
        n->f[0] = p;
        n->f[1] = scale;
    }
    return y;
}
