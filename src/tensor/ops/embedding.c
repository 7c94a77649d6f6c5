/* Embedding gather: table [V, C], ids -> out [..., C].
 * Backward scatter-adds dY rows into the table gradient. It is parallel over
 * blocks of the C columns: every thread walks all ids in order for its own
 * columns, so no two threads write the same element and the summation order
 * per element is fixed (deterministic, any thread count). */
#include <string.h>

#include "../tensor_impl.h"

typedef struct emb_saved {
    int32_t *ids; /* n ids, copied: the caller's buffer may change before backward */
    int64_t n;
} emb_saved;

static int embedding_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *table = n->in[0];
    float *dt = mtft__grad(g, table);
    if (!dt) return MTFT_OK;
    const emb_saved *s = n->saved;
    const float *dy = n->out->grad;
    const int32_t *ids = s->ids;
    int64_t N = s->n, C = table->ne[1];
    enum { CB = 64 };
    int64_t nblk = (C + CB - 1) / CB;
#pragma omp parallel for if (N * C > 32768 && nblk > 1)
    for (int64_t bk = 0; bk < nblk; bk++) {
        int64_t j0 = bk * CB, j1 = j0 + CB < C ? j0 + CB : C;
        for (int64_t i = 0; i < N; i++) {
            float *drow = dt + (int64_t)ids[i] * C;
            const float *dyr = dy + i * C;
            for (int64_t j = j0; j < j1; j++) drow[j] += dyr[j];
        }
    }
    return MTFT_OK;
}
static const mtft_op_def embedding_op = {"embedding", embedding_backward};

mtft_tensor *mtft_embedding(mtft_graph *g, mtft_tensor *table, const int32_t *ids, int ndim,
                            const int64_t *shape) {
    if (!mtft__op_begin(g, 1, table)) return NULL;
    char st[64];
    mtft__shape_str(table, st, sizeof st);
    if (!ids) return mtft__op_fail(g, MTFT_EINVAL, "embedding: ids is NULL (table '%s' %s)", table->name, st);
    if (table->ndim != 2)
        return mtft__op_fail(g, MTFT_ESHAPE, "embedding: table '%s' %s must be 2-D [V, C]", table->name, st);
    if (!mtft__contig(table))
        return mtft__op_fail(g, MTFT_EINVAL, "embedding: table '%s' %s must be contiguous (use mtft_contiguous)",
                             table->name, st);
    int64_t oshape[MTFT_MAX_DIMS];
    int ond;
    int64_t N = 1;
    if (shape) {
        if (ndim < 1 || ndim > MTFT_MAX_DIMS - 1)
            return mtft__op_fail(g, MTFT_ESHAPE, "embedding: ids shape has %d dims; 1..%d allowed", ndim,
                                 MTFT_MAX_DIMS - 1);
        for (int d = 0; d < ndim; d++) {
            if (shape[d] <= 0)
                return mtft__op_fail(g, MTFT_ESHAPE, "embedding: ids shape dim %d is %lld", d, (long long)shape[d]);
            oshape[d] = shape[d];
            N *= shape[d];
        }
        ond = ndim + 1;
    } else {
        if (ndim < 1) return mtft__op_fail(g, MTFT_ESHAPE, "embedding: %d ids (shape NULL: ndim is the id count)", ndim);
        N = ndim;
        oshape[0] = N;
        ond = 2;
    }
    int64_t V = table->ne[0], C = table->ne[1];
    oshape[ond - 1] = C;
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return mtft__op_fail(g, MTFT_ERANGE, "embedding: id %ld at position %lld is outside [0, %lld) of table '%s' %s",
                                 (long)ids[i], (long long)i, (long long)V, table->name, st);
    mtft_tensor *y = mtft__new(g, ond, oshape);
    if (!y) return NULL;
    const float *td = table->data;
    float *yd = y->data;
#pragma omp parallel for if (N * C > 32768)
    for (int64_t i = 0; i < N; i++) memcpy(yd + i * C, td + (int64_t)ids[i] * C, (size_t)C * sizeof(float));
    mtft_node *n = mtft__record(g, &embedding_op, y, 1, table);
    if (n) {
        emb_saved *s = mtft__scratch(g, sizeof *s);
        int32_t *cp = s ? mtft__scratch(g, (size_t)N * sizeof(int32_t)) : NULL;
        if (!cp) return mtft__op_fail(g, MTFT_ENOMEM, "embedding: out of memory saving %lld ids", (long long)N);
        memcpy(cp, ids, (size_t)N * sizeof(int32_t));
        s->ids = cp;
        s->n = N;
        n->saved = s;
    }
    return y;
}
