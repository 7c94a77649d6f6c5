/* Internal definition of tensors, graphs and tape nodes, and the helpers
 * every op file uses. Not installed.
 *
 * Writing an op (src/tensor/ops/<op>.c):
 *   static int foo_backward(mtft_graph *g, mtft_node *n);      // accumulates
 *   static const mtft_op_def foo_op = {"foo", foo_backward};
 *   mtft_tensor *mtft_foo(mtft_graph *g, mtft_tensor *x) {
 *       if (!mtft__op_begin(g, x)) return NULL;                 // NULL in -> NULL out
 *       mtft_tensor *y = mtft__new(g, x->ndim, x->ne);          // arena, contiguous
 *       ...forward kernel...
 *       mtft_node *n = mtft__record(g, &foo_op, y, 1, x);       // no-op if no grad needed
 *       if (n) { n->saved = ...; n->f[0] = ...; }
 *       return y;
 *   }
 *   backward: float *dy = n->out->grad; float *dx = mtft__grad(g, n->in[0]);
 *             (dx is NULL when that input needs no gradient; skip it).
 */
#ifndef MTFT_TENSOR_IMPL_H
#define MTFT_TENSOR_IMPL_H

#include "../core/core.h"
#include "mtft/tensor.h"

enum {
    MTFT_TF_REQUIRES_GRAD = 1u << 0,
    MTFT_TF_PARAM = 1u << 1,   /* lives in a parameter group */
    MTFT_TF_VIEW = 1u << 2,    /* data aliases another tensor's data */
    /* An intermediate no caller can reach (set by library code, e.g. on the
     * activations inside a model forward): mtft_graph_backward recycles its
     * gradient buffer once its producer's backward has run, and its grad is
     * NULL afterwards. */
    MTFT_TF_TRANSIENT = 1u << 3,
};

struct mtft_tensor {
    int ndim;
    int64_t ne[MTFT_MAX_DIMS]; /* shape; ne[ndim-1] innermost; unused dims are 1 */
    int64_t st[MTFT_MAX_DIMS]; /* strides in elements */
    float *data;
    float *grad;               /* contiguous, logical order; NULL until needed */
    uint32_t flags;
    mtft_param_group *group;   /* for parameters */
    size_t offset;             /* parameters: float offset inside the group block */
    char name[64];
};

typedef struct mtft_node mtft_node;
typedef struct mtft_op_def {
    const char *name;
    int (*backward)(mtft_graph *g, mtft_node *n);
} mtft_op_def;

#define MTFT_NODE_MAX_IN 4
struct mtft_node {
    const mtft_op_def *op;
    mtft_tensor *out;
    mtft_tensor *in[MTFT_NODE_MAX_IN];
    int n_in;
    void *saved;    /* op-specific, arena memory */
    int64_t i[8];   /* op integer parameters */
    float f[4];     /* op float parameters */
    int produces;   /* 1: this node made out (not an in-place op on an earlier node's output) */
};

struct mtft_graph {
    mtft_arena arena;
    mtft_node *nodes;
    int n_nodes, cap_nodes;
    int status;
    int grad_enabled;
    int training;
    uint64_t seed;
    uint64_t dropout_calls; /* per-reset counter: each random op call gets its own stream */
    /* Row partition (mtft_graph_set_row_partition): n_parts ranges of units,
     * part_off[n_parts+1] in arena memory (cleared by reset). */
    int n_parts;
    int64_t *part_off;
    /* Split groups written by the current backward (summed into their
     * gradient blocks at its end). */
    mtft_param_group *split_touched[64];
    int n_split_touched;
    /* Gradient buffers of transient tensors whose producer's backward has
     * run (arena memory, numel floats each): mtft__grad takes the smallest
     * that fits before asking the arena. Emptied at each backward's start. */
    float *pool_p[32];
    int64_t pool_n[32];
    int n_pool;
};

struct mtft_param_group {
    char *name;
    mtft_tensor **tensors;
    int n, cap;
    float *data, *grad;
    size_t n_floats;
    int trainable;
    int allocated;
    int n_split;       /* > 0: gradients split by row partition (mtft_param_group_set_split) */
    float *split_grad; /* n_split blocks of n_floats while trainable, else NULL */
};

/* Begin an op: returns 0 (and the op must return NULL) if the graph is in
 * error or any of the given inputs is NULL. Pass exactly n_in tensors. */
int mtft__op_begin(mtft_graph *g, int n_in, ...);
/* Raise an error on the graph: sets the last error and the sticky status. */
mtft_tensor *mtft__op_fail(mtft_graph *g, int code, const char *fmt, ...) MTFT_PRINTF(3, 4);
/* A new contiguous tensor in the graph's arena (uninitialised / zeroed). */
mtft_tensor *mtft__new(mtft_graph *g, int ndim, const int64_t *shape);
mtft_tensor *mtft__zeros(mtft_graph *g, int ndim, const int64_t *shape);
/* A view sharing x's data: caller fills ne/st/data. */
mtft_tensor *mtft__view(mtft_graph *g, mtft_tensor *x);
/* Arena scratch memory for the current step. */
void *mtft__scratch(mtft_graph *g, size_t bytes);
/* Append a node when grad is enabled and any input requires a gradient; then
 * out is marked as requiring a gradient. Returns NULL when nothing was
 * recorded (or on allocation failure, which also sets the graph status). */
mtft_node *mtft__record(mtft_graph *g, const mtft_op_def *op, mtft_tensor *out, int n_in, ...);
/* Gradient buffer of t for accumulation, allocated zeroed on first use;
 * NULL when t does not require a gradient. For a tensor of a split group
 * (mtft__is_split) it fails the graph and returns NULL: only ops that split
 * their weight gradient by rows (mtft__split_grad) may write those. */
float *mtft__grad(mtft_graph *g, mtft_tensor *t);

/* Per-part gradients (ARCHITECTURE.md decision 4). A split-aware backward
 * computes, for a weight t with mtft__is_split(t), the contribution of each
 * part's rows into mtft__split_grad(g, t, k) instead of mtft__grad(g, t);
 * mtft_graph_backward sums the parts into the group's gradient at the end.
 * mtft__part_rows maps part k of the graph's row partition onto an input of
 * N rows (N a multiple of the partition's total units): [*r0, *r1). It fails
 * the graph (returning the error) when no partition is set, its part count
 * differs from the group's, or N does not fit. */
static inline int mtft__is_split(const mtft_tensor *t) {
    return t && (t->flags & MTFT_TF_PARAM) && (t->flags & MTFT_TF_REQUIRES_GRAD) && t->group &&
           t->group->n_split > 0 && t->group->split_grad;
}
float *mtft__split_grad(mtft_graph *g, mtft_tensor *t, int k);
int mtft__part_rows(mtft_graph *g, const mtft_tensor *t, int64_t N, int k, int64_t *r0, int64_t *r1);

static inline int64_t mtft__numel(const mtft_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}
static inline int mtft__contig(const mtft_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->ne[i] != 1 && t->st[i] != s) return 0;
        s *= t->ne[i];
    }
    return 1;
}
/* Rows of the last dim: numel / ne[ndim-1]. */
static inline int64_t mtft__rows(const mtft_tensor *t) { return mtft__numel(t) / t->ne[t->ndim - 1]; }
static inline int mtft__needs_grad(const mtft_tensor *t) { return t && (t->flags & MTFT_TF_REQUIRES_GRAD); }
/* OpenMP worker of the calling thread and the number of workers a parallel
 * region may have (0 and 1 in a serial build): per-thread scratch slots. */
int mtft__worker_id(void);
int mtft__n_workers(void);

/* "[2, 3, 4]" into buf. */
const char *mtft__shape_str(const mtft_tensor *t, char *buf, size_t n);

/* A fresh random stream of the graph for one op call: a pure function of
 * (graph seed, calls since the last reset), so a step repeats its random
 * numbers on any thread count. Draw with mtft_rng_hash_uniform(stream, i).
 * Dropout and Poly's training-time routing use it (src/tensor/ops/dropout.c). */
uint64_t mtft__graph_stream(mtft_graph *g);

#endif
