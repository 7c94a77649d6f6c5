/* mtft: f32 tensors, parameter groups, the autograd tape and its ops.
 *
 * Shapes are row-major like PyTorch: dim ndim-1 is the innermost. Letters in
 * comments: B batch, T time, C channels, H heads, D head size, V vocabulary,
 * N rows (B*T), R LoRA rank.
 *
 * A graph (mtft_graph) owns one step's activations in an arena and records
 * the ops that need gradients on a tape. Ops run eagerly: each builder
 * computes its output at once and, when any input requires a gradient,
 * appends a node whose backward kernel accumulates (+=) into its inputs'
 * gradients. mtft_graph_backward() walks the tape in reverse.
 *
 * Errors: a builder returns NULL and sets the thread's last error and the
 * graph's sticky status. A builder given a NULL input returns NULL without a
 * new message, so a chain of ops can be checked once at its end. */
#ifndef MTFT_TENSOR_H
#define MTFT_TENSOR_H

#include "mtft/common.h"
#include "mtft/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MTFT_MAX_DIMS 4

typedef struct mtft_tensor mtft_tensor;
typedef struct mtft_graph mtft_graph;
typedef struct mtft_param_group mtft_param_group;

/* ---- tensor accessors ---------------------------------------------------- */
MTFT_API int mtft_tensor_ndim(const mtft_tensor *t);
MTFT_API int64_t mtft_tensor_dim(const mtft_tensor *t, int i); /* i < 0 counts from the end */
MTFT_API int64_t mtft_tensor_numel(const mtft_tensor *t);
/* Element stride of dim i (a view may be strided). */
MTFT_API int64_t mtft_tensor_stride(const mtft_tensor *t, int i);
MTFT_API int mtft_tensor_is_contiguous(const mtft_tensor *t);
/* Borrowed pointer to the first element (strided as the tensor's strides). */
MTFT_API float *mtft_tensor_data(mtft_tensor *t);
/* Gradient, contiguous in logical order, or NULL if none was allocated. */
MTFT_API float *mtft_tensor_grad(mtft_tensor *t);
MTFT_API int mtft_tensor_requires_grad(const mtft_tensor *t);
MTFT_API const char *mtft_tensor_name(const mtft_tensor *t);
/* Copies up to 4 dims into shape[]; returns ndim. */
MTFT_API int mtft_tensor_shape(const mtft_tensor *t, int64_t shape[MTFT_MAX_DIMS]);

/* ---- parameter groups ---------------------------------------------------- */
/* A group (the base model, one task's adapter, one task's head) holds its
 * tensors in one aligned block. Gradient memory exists only while the group
 * is trainable; a frozen group has none. */
MTFT_API int mtft_param_group_new(mtft_param_group **out, const char *name);
MTFT_API void mtft_param_group_free(mtft_param_group *pg);
/* Declare a tensor; valid until the group is freed. Data is allocated (and
 * zeroed) by mtft_param_group_alloc(). Returns NULL on error. */
MTFT_API mtft_tensor *mtft_param_group_add(mtft_param_group *pg, const char *name, int ndim,
                                           const int64_t *shape);
/* Allocate the data block (after all adds). */
MTFT_API int mtft_param_group_alloc(mtft_param_group *pg);
/* Trainable groups get a gradient block (allocated on first need, zeroed);
 * making a group frozen frees it. */
MTFT_API int mtft_param_group_set_trainable(mtft_param_group *pg, int trainable);
MTFT_API int mtft_param_group_trainable(const mtft_param_group *pg);
MTFT_API void mtft_param_group_zero_grad(mtft_param_group *pg);
MTFT_API const char *mtft_param_group_name(const mtft_param_group *pg);
MTFT_API int mtft_param_group_count(const mtft_param_group *pg);
MTFT_API mtft_tensor *mtft_param_group_tensor(mtft_param_group *pg, int i);
MTFT_API mtft_tensor *mtft_param_group_find(mtft_param_group *pg, const char *name);
/* The flat blocks: all tensors back to back (each 16-float aligned). */
MTFT_API float *mtft_param_group_data(mtft_param_group *pg, size_t *n_floats);
MTFT_API float *mtft_param_group_grad(mtft_param_group *pg, size_t *n_floats);

/* ---- per-part (per-task) gradients ------------------------------------------
 * When the rows of a batch are grouped by task (part k = units
 * [offsets[k], offsets[k+1]), e.g. sequences), the weight gradient of a
 * row-wise op dW = X^T dY is the sum of the parts X_k^T dY_k. A group split
 * into n parts gets n extra gradient blocks (each the size of the group's
 * block, while the group is trainable); the split-aware ops (linear,
 * linear_t, matmul with a shared 2-D weight, and the PEFT ops) write each
 * part's contribution into its block, at no extra FLOPs, and at the end of
 * mtft_graph_backward the group's gradient block is set to the sum of its
 * parts. Any other op that reaches a tensor of a split group fails the
 * backward with MTFT_EUNSUPPORTED naming the tensor. zero_grad clears the
 * parts too. */
/* Split a group's gradients into n_parts (0: no split; frees the parts). */
MTFT_API int mtft_param_group_set_split(mtft_param_group *pg, int n_parts);
MTFT_API int mtft_param_group_split_count(const mtft_param_group *pg);
/* Part `part`'s gradient block (same layout as mtft_param_group_grad), or
 * NULL when the group is not split or frozen. */
MTFT_API float *mtft_param_group_split_grad(mtft_param_group *pg, int part, size_t *n_floats);

/* ---- graphs ---------------------------------------------------------------- */
typedef struct mtft_graph_options {
    int version;
    size_t arena_bytes; /* first arena block; grows as needed, then is reused */
    uint64_t seed;      /* seeds dropout and other stochastic ops */
    int training;       /* 0: dropout is the identity */
} mtft_graph_options;
#define MTFT_GRAPH_OPTIONS_VERSION 1
#define MTFT_GRAPH_OPTIONS_INIT {MTFT_GRAPH_OPTIONS_VERSION, (size_t)64 << 20, 0, 1}

MTFT_API int mtft_graph_new(mtft_graph **out, const mtft_graph_options *opts);
MTFT_API void mtft_graph_free(mtft_graph *g);
/* Drop all activations and the tape; the arena is kept so that the next step
 * allocates nothing from the system. Clears the sticky status. */
MTFT_API void mtft_graph_reset(mtft_graph *g);
/* MTFT_OK or the first error any builder on this graph raised since reset. */
MTFT_API int mtft_graph_status(const mtft_graph *g);
/* With 0, builders record nothing (inference / evaluation). Default 1. */
MTFT_API void mtft_graph_set_grad_enabled(mtft_graph *g, int enabled);
MTFT_API void mtft_graph_set_training(mtft_graph *g, int training);
/* Set the seed of the stochastic ops (dropout) for the ops built from now on.
 * A training loop sets it per step (e.g. base_seed + step): the dropout masks
 * are a pure function of (seed, call number since reset, element), so a step
 * with the same seed repeats its masks exactly (what exact resume needs) and
 * different steps get different masks. */
MTFT_API void mtft_graph_set_seed(mtft_graph *g, uint64_t seed);
MTFT_API uint64_t mtft_graph_seed(const mtft_graph *g);
/* Seed the gradient of a scalar loss with 1 (or of any tensor with `seed`
 * when not NULL, numel floats) and run the tape backward. Parameter
 * gradients accumulate into their groups' gradient blocks. */
MTFT_API int mtft_graph_backward(mtft_graph *g, mtft_tensor *loss, const float *seed);
/* Row partition for split groups: n_parts ranges of units given by
 * offsets[0..n_parts] (offsets[0] == 0, non-decreasing, offsets[n_parts] =
 * total units, e.g. sequences). An op input of N rows (its leading dims
 * folded, N a multiple of the total) maps part k to rows
 * [offsets[k]*N/total, offsets[k+1]*N/total): a [B,T,C] input has T rows per
 * sequence, a pooled [B,C] one 1. The offsets are copied; mtft_graph_reset
 * (or n_parts = 0) clears the partition. */
MTFT_API int mtft_graph_set_row_partition(mtft_graph *g, int n_parts, const int64_t *offsets);
/* Number of nodes on the tape, and node i's op name (for tests and tracing). */
MTFT_API int mtft_graph_n_nodes(const mtft_graph *g);
MTFT_API const char *mtft_graph_node_op(const mtft_graph *g, int i);
/* Bytes the arena holds from the system, and how many times it asked. */
MTFT_API size_t mtft_graph_arena_capacity(const mtft_graph *g);
MTFT_API uint64_t mtft_graph_arena_sys_allocs(const mtft_graph *g);

/* New tensors owned by the graph (freed at reset). */
MTFT_API mtft_tensor *mtft_new(mtft_graph *g, int ndim, const int64_t *shape);  /* uninitialised */
MTFT_API mtft_tensor *mtft_zeros(mtft_graph *g, int ndim, const int64_t *shape);
/* A graph tensor with a copy of data (numel floats). */
MTFT_API mtft_tensor *mtft_from_data(mtft_graph *g, int ndim, const int64_t *shape, const float *data);
/* Mark a graph tensor as a leaf that requires a gradient (tests, inputs). */
MTFT_API int mtft_tensor_set_requires_grad(mtft_graph *g, mtft_tensor *t, int requires);

/* ---- ops ------------------------------------------------------------------- */
/* Each op is a forward/backward kernel pair in src/tensor/ops/. */

/* Matrix products. a: [..., M, K] (or [..., K, M] with trans_a), b likewise;
 * leading dims (up to 2) are batch dims, equal in a and b, or b is 2-D and
 * shared by all batches. Through cblas_sgemm. Output [..., M, N], contiguous.
 * The matrix part of a or b may be a transposed view (mtft_transpose) or a
 * row/column slice: it goes to BLAS with the transpose flag flipped, no copy.
 * Strides with no unit stride in either of the last two dims fail with
 * MTFT_EINVAL asking for mtft_contiguous. */
MTFT_API mtft_tensor *mtft_matmul(mtft_graph *g, mtft_tensor *a, mtft_tensor *b, int trans_a, int trans_b);
/* y = x W^T + b (PyTorch nn.Linear): x [..., in], w [out, in], b [out] or NULL.
 * x's leading dims must fold into rows (contiguous, or a 2-D row slice);
 * w may be a transposed view (e.g. a tied embedding table). */
MTFT_API mtft_tensor *mtft_linear(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b);
/* y = x W + b (GPT-2 Conv1D layout): x [..., in], w [in, out], b [out] or NULL. */
MTFT_API mtft_tensor *mtft_linear_t(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b);

/* Elementwise; b broadcasts when its shape is a suffix of a's shape. */
MTFT_API mtft_tensor *mtft_add(mtft_graph *g, mtft_tensor *a, mtft_tensor *b);
MTFT_API mtft_tensor *mtft_sub(mtft_graph *g, mtft_tensor *a, mtft_tensor *b);
MTFT_API mtft_tensor *mtft_mul(mtft_graph *g, mtft_tensor *a, mtft_tensor *b);
MTFT_API mtft_tensor *mtft_scale(mtft_graph *g, mtft_tensor *a, float s);
/* a [..., C] + bias [C]. */
MTFT_API mtft_tensor *mtft_bias(mtft_graph *g, mtft_tensor *a, mtft_tensor *bias);

/* Embedding gather: table [V, C], ids (n int32 in [0, V)) -> [n, C] reshaped
 * to `ndim`/`shape` + C when shape is given (e.g. {B, T}; n = product of
 * shape, ndim <= 3). When shape is NULL, ndim is n and the output is [n, C].
 * An id outside [0, V) fails with MTFT_ERANGE naming the id and its position.
 * The ids are copied. Backward scatter-adds into the table (deterministic). */
MTFT_API mtft_tensor *mtft_embedding(mtft_graph *g, mtft_tensor *table, const int32_t *ids, int ndim,
                                     const int64_t *shape);

/* Norms over the last dim of a contiguous x. weight/bias [C] may be NULL.
 * layernorm: (x - mean) / sqrt(var + eps) * w + b (biased variance);
 * rmsnorm: x / sqrt(mean(x^2) + eps) * w. */
MTFT_API mtft_tensor *mtft_layernorm(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b, float eps);
MTFT_API mtft_tensor *mtft_rmsnorm(mtft_graph *g, mtft_tensor *x, mtft_tensor *w, float eps);

/* Activations (contiguous x). gelu_tanh: 0.5 x (1 + tanh(sqrt(2/pi)(x +
 * 0.044715 x^3))) (GPT-2); gelu_erf: 0.5 x (1 + erf(x / sqrt 2)) (BERT);
 * silu: x sigmoid(x). */
MTFT_API mtft_tensor *mtft_gelu_tanh(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_gelu_erf(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_silu(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_sigmoid(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_relu(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_tanh(mtft_graph *g, mtft_tensor *x);
/* silu(gate) * up, same shapes. */
MTFT_API mtft_tensor *mtft_swiglu(mtft_graph *g, mtft_tensor *gate, mtft_tensor *up);

/* Over the last dim, numerically stable (row max subtracted, sums in
 * double): finite for logits of any finite magnitude. A strided input is
 * copied first (as by mtft_contiguous). The same holds for dropout, sum,
 * mean, pool and the losses below. */
MTFT_API mtft_tensor *mtft_softmax(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_log_softmax(mtft_graph *g, mtft_tensor *x);

/* Fused scaled-dot-product attention.
 * q [B, H, T, D], k and v [B, Hkv, T, D] with H % Hkv == 0 (grouped-query).
 * causal: position t attends to s <= t. valid_len: NULL, or B ints: keys at
 * s >= valid_len[b] are padding and masked out (right padding). scale <= 0
 * means 1/sqrt(D). Output [B, H, T, D]. Works one (b, h, query block) at a
 * time: no T x T matrix per head is kept for the whole batch; backward
 * recomputes the probabilities from the saved log-sum-exp.
 * Query head h uses kv head h / (H / Hkv) (PyTorch repeat_interleave order).
 * Query positions t >= valid_len[b] are padding too: their output rows are
 * zeros (never NaN, also for valid_len[b] == 0) and they get no gradient.
 * valid_len[b] must be in 0..T (MTFT_ERANGE otherwise). q, k, v may be
 * strided views (e.g. a transpose of [B, T, H, D]) whose last dim is
 * contiguous; they are read in place. Deterministic: the same bits for any
 * thread count. */
MTFT_API mtft_tensor *mtft_attention(mtft_graph *g, mtft_tensor *q, mtft_tensor *k, mtft_tensor *v, int causal,
                                     const int32_t *valid_len, float scale);

/* Dropout with probability p, scaled by 1/(1-p); the identity when the graph
 * is not training or p == 0. The mask is a pure function of (graph seed, a
 * per-graph call counter, element index): same seed, same bits, any threads.
 * The counter restarts at mtft_graph_reset, so a repeated step draws the
 * same masks. p outside [0, 1) is MTFT_ERANGE. */
MTFT_API mtft_tensor *mtft_dropout(mtft_graph *g, mtft_tensor *x, float p);

/* Reductions to a scalar (shape [1]), accumulated in double in a fixed order
 * (the same bits for any thread count). */
MTFT_API mtft_tensor *mtft_sum(mtft_graph *g, mtft_tensor *x);
MTFT_API mtft_tensor *mtft_mean(mtft_graph *g, mtft_tensor *x);

/* Pooling of x [B, T, C] to [B, C] with per-row valid lengths (B ints, right
 * padding; NULL means all T valid). valid_len[b] must be in 1..T. */
typedef enum mtft_pool_mode {
    MTFT_POOL_MEAN = 0,  /* mean over the first valid_len[b] tokens */
    MTFT_POOL_LAST = 1,  /* token valid_len[b]-1 */
    MTFT_POOL_FIRST = 2  /* token 0 */
} mtft_pool_mode;
MTFT_API mtft_tensor *mtft_pool(mtft_graph *g, mtft_tensor *x, const int32_t *valid_len, mtft_pool_mode mode);

/* Losses, each a scalar mean (shape [1]).
 * cross-entropy: logits [N, V] (any leading dims flatten to N), targets N
 * int32; rows whose target == ignore_index are excluded from the mean
 * (mean over the rest; 0 if none). label_smoothing in [0, 1), as PyTorch:
 * loss = (1-ls) * nll + ls * mean_j(-log p_j). A target outside [0, V) that
 * is not ignore_index is MTFT_ERANGE, naming the row and the value. */
MTFT_API mtft_tensor *mtft_cross_entropy(mtft_graph *g, mtft_tensor *logits, const int32_t *targets,
                                         int32_t ignore_index, float label_smoothing);
/* Mean squared error and Huber (delta > 0) against targets (numel floats).
 * Huber as PyTorch's HuberLoss: 0.5 d^2 if |d| < delta, else
 * delta (|d| - delta/2). Targets (and the bce mask) are copied. */
MTFT_API mtft_tensor *mtft_mse(mtft_graph *g, mtft_tensor *pred, const float *targets);
MTFT_API mtft_tensor *mtft_huber(mtft_graph *g, mtft_tensor *pred, const float *targets, float delta);
/* Binary cross-entropy with logits, mean over elements; mask (numel floats,
 * 0/1) or NULL selects which elements count (mean over the selected ones, 0
 * if none). Stable form max(x,0) - x y + log1p(exp(-|x|)). */
MTFT_API mtft_tensor *mtft_bce_logits(mtft_graph *g, mtft_tensor *logits, const float *targets,
                                      const float *mask);

/* Shape ops. reshape, slice and transpose return views that share data with
 * their input (no copy); each has its own gradient buffer, which backward
 * adds into the input's gradient through the view's strides. reshape needs a
 * contiguous input (MTFT_EINVAL otherwise: call mtft_contiguous). Negative
 * dims count from the end. */
MTFT_API mtft_tensor *mtft_reshape(mtft_graph *g, mtft_tensor *x, int ndim, const int64_t *shape); /* -1 infers one dim */
/* Elements [start, start+len) of dim `dim`. */
MTFT_API mtft_tensor *mtft_slice(mtft_graph *g, mtft_tensor *x, int dim, int64_t start, int64_t len);
/* Swap two dims (a strided view). */
MTFT_API mtft_tensor *mtft_transpose(mtft_graph *g, mtft_tensor *x, int dim0, int dim1);
/* A contiguous copy (returns x itself when already contiguous). */
MTFT_API mtft_tensor *mtft_contiguous(mtft_graph *g, mtft_tensor *x);
/* Concatenate n >= 1 tensors (any number, strided ones too) along dim; other
 * dims equal. The result is a new contiguous tensor. */
MTFT_API mtft_tensor *mtft_concat(mtft_graph *g, mtft_tensor *const *xs, int n, int dim);

#ifdef __cplusplus
}
#endif
#endif
