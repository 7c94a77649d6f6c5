/* mtft: task heads and mixed-task batches.
 *
 * Each task has its own head, with its own parameter group ("head.<name>"),
 * on top of the shared transformer trunk (mtft/model.h). A head maps the
 * trunk's hidden states of its task's rows, hidden [b, T, C], to a loss or to
 * predictions:
 *
 *   kind                    output            loss
 *   CLASSIFICATION          [b, L] logits     softmax cross-entropy (label
 *                                             smoothing, class weights)
 *   MULTILABEL              [b, L] logits     sigmoid BCE per label
 *   REGRESSION              [b, L] values     MSE or Huber on standardised
 *                                             targets (L targets per row)
 *   TOKEN_CLASSIFICATION    [b, T, L] logits  per-token cross-entropy,
 *                                             MTFT_HEAD_IGNORE_INDEX skipped
 *   LM                      [b, T, V] logits  per-token cross-entropy on the
 *                                             target tokens only
 *
 * Sequence-level heads (the first three) pool the hidden states first (last
 * non-pad token, mean over non-pad tokens, or the first token). Every head
 * but LM may add a hidden layer (dense C -> H, tanh or GELU) as Hugging
 * Face's classification heads do; dropout (training graphs only) is applied
 * to the head's input and, with a hidden layer, again before the output
 * layer. The LM head uses the model's LM head (the tied embedding) and holds
 * no weights, or optionally its own output projection [V, C].
 *
 * Parameter names (group "head.<name>"): dense.weight [H, C], dense.bias
 * [H], out_proj.weight [L, H or C], out_proj.bias [L]; an LM head with its
 * own projection: lm_head.weight [V, C]. Weights are drawn from N(0, 0.02)
 * (seeded), biases are zero.
 *
 * Right padding throughout: row r's tokens are 0 .. valid_len[r]-1
 * (valid_len NULL: all T). Positions at or past valid_len never count in a
 * per-token loss, whatever their labels say.
 *
 * Errors: a loss or forward call returns NULL and sets the last error (and
 * the graph's sticky status); a label out of range names the head, the row
 * (and token) and the value; a shape mismatch names the shapes. */
#ifndef MTFT_HEAD_H
#define MTFT_HEAD_H

#include "mtft/common.h"
#include "mtft/model.h"
#include "mtft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-token labels with this value carry no loss (PyTorch's ignore_index):
 * prompt tokens, padding, continuation sub-tokens. */
#define MTFT_HEAD_IGNORE_INDEX (-100)

typedef enum mtft_head_kind {
    MTFT_HEAD_CLASSIFICATION = 0,       /* single-label, softmax */
    MTFT_HEAD_MULTILABEL = 1,           /* multi-label, sigmoid per label */
    MTFT_HEAD_REGRESSION = 2,           /* n_labels real targets per row */
    MTFT_HEAD_TOKEN_CLASSIFICATION = 3, /* one tag per token */
    MTFT_HEAD_LM = 4                    /* causal LM / seq2seq-as-prompt */
} mtft_head_kind;

typedef enum mtft_head_activation {
    MTFT_HEAD_ACT_TANH = 0,      /* HF RobertaClassificationHead */
    MTFT_HEAD_ACT_GELU = 1,      /* erf GELU (BERT) */
    MTFT_HEAD_ACT_GELU_TANH = 2, /* tanh approximation (GPT-2) */
    MTFT_HEAD_ACT_RELU = 3
} mtft_head_activation;

typedef enum mtft_head_loss_kind {
    MTFT_HEAD_LOSS_MSE = 0,
    MTFT_HEAD_LOSS_HUBER = 1
} mtft_head_loss_kind;

typedef struct mtft_head_options {
    int version;
    const char *name;          /* task name; the group is "head.<name>" (NULL: "head") */
    mtft_head_kind kind;
    /* CLASSIFICATION / MULTILABEL / TOKEN_CLASSIFICATION: number of classes,
     * labels or tags (>= 1; >= 2 for CLASSIFICATION). REGRESSION: targets per
     * row (>= 1). LM: 0 uses the model's LM head; > 0 gives the head its own
     * output projection of that many tokens (the model's vocab size). */
    int n_labels;
    mtft_pool_mode pool;       /* sequence-level heads */
    int hidden_size;           /* > 0: dense C -> hidden_size + activation first; 0: none (not for LM) */
    mtft_head_activation activation;
    float dropout;             /* in [0, 1) */
    float label_smoothing;     /* CLASSIFICATION, TOKEN_CLASSIFICATION, LM: in [0, 1) */
    /* CLASSIFICATION / TOKEN_CLASSIFICATION: NULL or n_labels positive
     * weights (copied), as PyTorch's CrossEntropyLoss(weight=...): the mean
     * is sum_i w[y_i] loss_i / sum_i w[y_i]. */
    const float *class_weights;
    mtft_head_loss_kind loss;  /* REGRESSION */
    float huber_delta;         /* REGRESSION with HUBER: > 0 */
    int standardize;           /* REGRESSION: 1 trains on (y - mean) / std (see target stats) */
    float threshold;           /* MULTILABEL prediction: label on when probability >= threshold */
} mtft_head_options;

#define MTFT_HEAD_OPTIONS_VERSION 1
#define MTFT_HEAD_OPTIONS_INIT                                                                              \
    {MTFT_HEAD_OPTIONS_VERSION, NULL, MTFT_HEAD_CLASSIFICATION, 2, MTFT_POOL_LAST, 0, MTFT_HEAD_ACT_TANH, 0.0f, \
     0.0f, NULL, MTFT_HEAD_LOSS_MSE, 1.0f, 1, 0.5f}

/* Labels of b rows (or, in mtft_multitask_forward, of a whole batch: see
 * there). Fields a kind does not use are ignored.
 *   CLASSIFICATION:        class_ids, b ints in [0, L), or
 *                          MTFT_HEAD_IGNORE_INDEX for a row that does not count.
 *   MULTILABEL:            values, b rows of L floats in [0, 1] (multi-hot or
 *                          soft), row r at values + r * values_stride.
 *   REGRESSION:            values, b rows of L floats in original units.
 *   TOKEN_CLASSIFICATION:  token_ids, [b, T] ints in [0, L) or
 *                          MTFT_HEAD_IGNORE_INDEX.
 *   LM:                    token_ids, [b, T]: at position t the id of the
 *                          token that FOLLOWS t (already shifted, as
 *                          mtft_batch.targets), MTFT_HEAD_IGNORE_INDEX on the
 *                          prompt and on padding. */
typedef struct mtft_head_targets {
    const int32_t *class_ids;
    const int32_t *token_ids;
    const float *values;
    int64_t values_stride;     /* floats between rows of values; 0 means L */
} mtft_head_targets;

typedef struct mtft_head mtft_head;

/* A new head for hidden states of width n_embd (the model's C), weights
 * drawn from mtft_rng seeded with `seed`. Its group is trainable. */
MTFT_API int mtft_head_new(mtft_head **out, int n_embd, const mtft_head_options *o, uint64_t seed);
MTFT_API void mtft_head_free(mtft_head *h);
/* The options the head was built with (borrowed; name and class_weights
 * point at the head's own copies). */
MTFT_API const mtft_head_options *mtft_head_get_options(const mtft_head *h);
MTFT_API int mtft_head_n_embd(const mtft_head *h);
/* The head's parameter group (borrowed; an LM head on the model's LM head
 * has a group with no tensors). */
MTFT_API mtft_param_group *mtft_head_group(mtft_head *h);
/* Width of the head's output: n_labels, or for an LM head the vocab size
 * (its own projection's, else m's; m may be NULL otherwise). */
MTFT_API int mtft_head_output_dim(const mtft_head *h, const mtft_model *m);

/* Regression target statistics (n = n_labels values each). Defaults: mean 0,
 * std 1. set: std must be finite and > 0. fit: from n_rows training rows of
 * n_labels targets (row r at targets + r * stride, stride 0 = n_labels):
 * mean and population std (ddof 0) per target; a constant target gets std 1.
 * Both fail with MTFT_ESTATE on other kinds. */
MTFT_API int mtft_head_set_target_stats(mtft_head *h, const float *mean, const float *std, int n);
MTFT_API int mtft_head_fit_target_stats(mtft_head *h, const float *targets, int64_t n_rows, int64_t stride);
MTFT_API int mtft_head_get_target_stats(const mtft_head *h, float *mean, float *std, int n);

/* The head's raw output on hidden [b, T, C] (any tensor of that shape, e.g. a
 * row slice of the trunk's output): see the table above (REGRESSION:
 * standardised units). m is needed only by an LM head on the model's LM
 * head. Returns NULL on error. */
MTFT_API mtft_tensor *mtft_head_forward(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                                        const int32_t *valid_len);
/* The head's loss on hidden [b, T, C] against targets for those b rows: a
 * scalar tensor (mean over the counted rows / tokens; 0 when none count).
 * The LM loss computes logits at the target tokens only (their rows are
 * gathered before the [V, C] projection). Labels are checked before any
 * work: one out of range is MTFT_ERANGE naming the row (and token). */
MTFT_API mtft_tensor *mtft_head_loss(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                                     const int32_t *valid_len, const mtft_head_targets *targets);
/* Predictions in evaluation mode (no dropout, nothing recorded on the tape).
 * Either output may be NULL.
 *   CLASSIFICATION:       ids [b] argmax class; values [b, L] probabilities.
 *   MULTILABEL:           ids [b, L] 0/1 (probability >= threshold); values [b, L] probabilities.
 *   REGRESSION:           values [b, L] in original units; ids unused.
 *   TOKEN_CLASSIFICATION: ids [b, T] argmax tag (-100 past valid_len); values [b, T, L] probabilities.
 *   LM:                   ids [b, T] argmax next token (-100 past valid_len); values [b, T, V] logits. */
MTFT_API int mtft_head_predict(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                               const int32_t *valid_len, int32_t *ids, float *values);

/* Save to dir (which must exist): dir/head.safetensors (the parameters, plus
 * "target_mean" / "target_std" for regression heads) and dir/head_config.json
 * (kind, sizes and options), both written atomically. */
MTFT_API int mtft_head_save(const mtft_head *h, const char *dir);
/* A new head from what mtft_head_save wrote. Errors name the file (with
 * line:col for JSON syntax errors), the key or the tensor. */
MTFT_API int mtft_head_load(mtft_head **out, const char *dir);

/* ---- mixed-task batches ----------------------------------------------------
 * A batch of B rows of T tokens where row r belongs to task task_id[r] in
 * [0, n_tasks). Rows must be grouped: all rows of a task contiguous (tasks in
 * any order). */
typedef struct mtft_multitask_batch {
    const int32_t *ids;        /* [B, T] */
    int B, T;
    const int32_t *valid_len;  /* [B] or NULL */
    const int32_t *task_id;    /* [B] */
} mtft_multitask_batch;

/* Row range of every task: start[k], count[k] (count 0 for an absent task).
 * MTFT_EINVAL when rows are not grouped, naming the task and the rows;
 * MTFT_ERANGE for a task id outside [0, n_tasks), naming the row. */
MTFT_API int mtft_multitask_rows(const int32_t *task_id, int B, int n_tasks, int *start, int *count);

/* One forward for a mixed batch: the trunk runs once over all B rows
 * (mtft_model_hidden), then each present task's head runs on its rows only
 * (a row slice, a view) giving task_loss[k]; absent tasks get NULL.
 * targets[k] is indexed by BATCH row (row r of the batch is row r of every
 * array, e.g. the arrays of an mtft_batch); the rows of task k are taken from
 * it. weights: NULL (all 1) or n_tasks floats; *total (when total is not
 * NULL) is sum_k weights[k] * task_loss[k] over the present tasks, the
 * tensor to run backward on. hidden_out (may be NULL) receives the trunk's
 * output [B, T, C]. Returns MTFT_OK or an error (last error set).
 * With per-task PEFT modules (mtft/peft.h), group the rows in task order
 * (mtft_peft_group_rows) and call mtft_peft_set_batch(p, g, row_offsets)
 * after mtft_graph_reset and before this call. */
MTFT_API int mtft_multitask_forward(mtft_model *m, mtft_graph *g, const mtft_multitask_batch *batch,
                                    mtft_head *const *heads, const mtft_head_targets *targets, int n_tasks,
                                    const float *weights, mtft_tensor **task_loss, mtft_tensor **total,
                                    mtft_tensor **hidden_out);

#ifdef __cplusplus
}
#endif
#endif
