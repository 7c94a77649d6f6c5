/* Row gather for the LM head: the loss needs logits only at target tokens,
 * so the hidden rows of those tokens are gathered first and only they go
 * through the [V, C] output projection (for seq2seq-as-prompt the prompt and
 * the padding are usually most of the tokens).
 *
 * x [..., C] (leading dims flatten to N rows), idx M distinct row indices in
 * [0, N) -> y [M, C]; backward: dx[idx[i]] += dy[i] (rows distinct, so
 * parallel over i writes disjoint rows). */
#include <string.h>

#include "head_impl.h"

static int gather_backward(mtft_graph *g, mtft_node *n) {
    float *dx = mtft__grad(g, n->in[0]);
    if (!dx) return MTFT_OK;
    const int32_t *idx = n->saved;
    const int64_t M = n->out->ne[0], C = n->out->ne[1];
    const float *dy = n->out->grad;
#pragma omp parallel for schedule(static) if (M * C > 65536)
    for (int64_t i = 0; i < M; i++) {
        float *d = dx + (int64_t)idx[i] * C;
        const float *s = dy + i * C;
        for (int64_t c = 0; c < C; c++) d[c] += s[c];
    }
    return MTFT_OK;
}
static const mtft_op_def gather_op = {"head_gather_rows", gather_backward};

mtft_tensor *mtft_heads__gather_rows(mtft_graph *g, mtft_tensor *x, const int32_t *idx, int64_t M) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    if (!mtft__contig(x) && !(x = mtft_contiguous(g, x))) return NULL;
    const int64_t C = x->ne[x->ndim - 1], N = mtft__rows(x);
    for (int64_t i = 0; i < M; i++)
        if (idx[i] < 0 || idx[i] >= N)
            return mtft__op_fail(g, MTFT_ERANGE, "gather_rows: index %d at %lld outside [0, %lld)", (int)idx[i],
                                 (long long)i, (long long)N);
    const int64_t shape[2] = {M, C};
    mtft_tensor *y = mtft__new(g, 2, shape);
    int32_t *saved = mtft__scratch(g, (size_t)M * sizeof(int32_t));
    if (!y || !saved) return NULL;
    memcpy(saved, idx, (size_t)M * sizeof(int32_t));
    for (int64_t i = 0; i < M; i++) memcpy(y->data + i * C, x->data + (int64_t)idx[i] * C, (size_t)C * sizeof(float));
    mtft_node *n = mtft__record(g, &gather_op, y, 1, x);
    if (n) n->saved = saved;
    return y;
}
