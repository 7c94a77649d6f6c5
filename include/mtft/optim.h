/* mtft: optimizers. AdamW exactly as torch.optim.AdamW (decoupled weight
 * decay, bias correction), over parameter groups.
 *
 *   mtft_adamw_options o = MTFT_ADAMW_OPTIONS_INIT;  o.lr = 3e-4f;
 *   mtft_adamw *opt;  mtft_adamw_new(&opt, &o);
 *   mtft_adamw_add_group(opt, mtft_model_base_group(m), NULL);
 *   for (...) { mtft_adamw_zero_grad(opt); forward; backward; mtft_adamw_step(opt); }
 *   mtft_adamw_free(opt);
 *
 * Per step and element, with lr_g = lr * lr_scale of the group, wd the
 * tensor's weight decay and t the group's step count:
 *   p -= lr_g * wd * p
 *   m = b1*m + (1-b1)*g;   v = b2*v + (1-b2)*g*g
 *   p -= (lr_g / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * No-decay rule: unless decay_1d is set, tensors with one dimension (biases,
 * LayerNorm/RMSNorm weights) get no weight decay. Moments exist only for
 * trainable groups: they are allocated at the first step that finds the
 * group trainable, and a frozen group is skipped. */
#ifndef MTFT_OPTIM_H
#define MTFT_OPTIM_H

#include "mtft/common.h"
#include "mtft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_adamw mtft_adamw;

typedef struct mtft_adamw_options {
    int version;
    float lr;
    float beta1, beta2;
    float eps;
    float weight_decay; /* default for groups that do not set their own */
    int decay_1d;       /* 1: decay 1-D tensors (biases, norms) too; 0 (default): exclude them */
} mtft_adamw_options;
#define MTFT_ADAMW_OPTIONS_VERSION 1
#define MTFT_ADAMW_OPTIONS_INIT {MTFT_ADAMW_OPTIONS_VERSION, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0}

typedef struct mtft_adamw_group_options {
    int version;
    float lr_scale;     /* this group's lr = optimizer lr * lr_scale (default 1) */
    float weight_decay; /* < 0: the optimizer's weight_decay */
} mtft_adamw_group_options;
#define MTFT_ADAMW_GROUP_OPTIONS_VERSION 1
#define MTFT_ADAMW_GROUP_OPTIONS_INIT {MTFT_ADAMW_GROUP_OPTIONS_VERSION, 1.0f, -1.0f}

MTFT_API int mtft_adamw_new(mtft_adamw **out, const mtft_adamw_options *o);
MTFT_API void mtft_adamw_free(mtft_adamw *opt);
/* Add a parameter group (borrowed: it must outlive the optimizer, or be
 * removed first). go NULL means defaults. A group may be added once. */
MTFT_API int mtft_adamw_add_group(mtft_adamw *opt, mtft_param_group *pg, const mtft_adamw_group_options *go);
MTFT_API int mtft_adamw_remove_group(mtft_adamw *opt, mtft_param_group *pg);
/* One update of every trainable group from its gradient block. */
MTFT_API int mtft_adamw_step(mtft_adamw *opt);
/* Zero the gradients of every added trainable group. */
MTFT_API void mtft_adamw_zero_grad(mtft_adamw *opt);
/* The base learning rate (schedules set it before each step). */
MTFT_API int mtft_adamw_set_lr(mtft_adamw *opt, float lr);
MTFT_API float mtft_adamw_get_lr(const mtft_adamw *opt);
MTFT_API int mtft_adamw_n_groups(const mtft_adamw *opt);
/* State of group i (for checkpoints): first and second moments (NULL when
 * not yet allocated), their length in floats (the group's block size) and
 * the group's step count. Pointers are borrowed and writable, so a resumed
 * run can restore them; set the step with mtft_adamw_set_group_step. */
MTFT_API int mtft_adamw_group_state(mtft_adamw *opt, int i, float **m, float **v, size_t *n, int64_t *step);
/* Allocate group i's moments now if missing (for restoring a checkpoint). */
MTFT_API int mtft_adamw_group_state_alloc(mtft_adamw *opt, int i);
MTFT_API int mtft_adamw_set_group_step(mtft_adamw *opt, int i, int64_t step);


/* ==========================================================================
 * SGD, learning-rate schedules, gradient clipping and accumulation, SAM and
 * per-task SAM (src/optim/sgd.c, schedule.c, clip.c, sam.c).
 * ========================================================================== */

/* ---- SGD with momentum, as torch.optim.SGD --------------------------------
 * Per step and element, with lr_g = lr * lr_scale of the group and wd the
 * tensor's weight decay:
 *   d = g + wd * p
 *   if momentum != 0:
 *       b = d                                  (the group's first step)
 *       b = momentum * b + (1 - dampening) * d (later steps)
 *       d = nesterov ? d + momentum * b : b
 *   p -= lr_g * d
 * Weight decay follows AdamW's no-decay rule (1-D tensors excluded unless
 * decay_1d). nesterov needs momentum > 0 and dampening == 0 (as PyTorch).
 * The momentum buffer exists only when momentum != 0, and only for groups
 * that were trainable at a step. */
typedef struct mtft_sgd mtft_sgd;

typedef struct mtft_sgd_options {
    int version;
    float lr;
    float momentum;
    float dampening;
    float weight_decay; /* default for groups that do not set their own */
    int nesterov;
    int decay_1d;       /* 1: decay 1-D tensors too; 0 (default): exclude them */
} mtft_sgd_options;
#define MTFT_SGD_OPTIONS_VERSION 1
#define MTFT_SGD_OPTIONS_INIT {MTFT_SGD_OPTIONS_VERSION, 1e-2f, 0.0f, 0.0f, 0.0f, 0, 0}

typedef struct mtft_sgd_group_options {
    int version;
    float lr_scale;     /* this group's lr = optimizer lr * lr_scale (default 1) */
    float weight_decay; /* < 0: the optimizer's weight_decay */
} mtft_sgd_group_options;
#define MTFT_SGD_GROUP_OPTIONS_VERSION 1
#define MTFT_SGD_GROUP_OPTIONS_INIT {MTFT_SGD_GROUP_OPTIONS_VERSION, 1.0f, -1.0f}

MTFT_API int mtft_sgd_new(mtft_sgd **out, const mtft_sgd_options *o);
MTFT_API void mtft_sgd_free(mtft_sgd *opt);
/* Borrowed group (must outlive the optimizer or be removed); go NULL: defaults. */
MTFT_API int mtft_sgd_add_group(mtft_sgd *opt, mtft_param_group *pg, const mtft_sgd_group_options *go);
MTFT_API int mtft_sgd_remove_group(mtft_sgd *opt, mtft_param_group *pg);
MTFT_API int mtft_sgd_step(mtft_sgd *opt);
MTFT_API void mtft_sgd_zero_grad(mtft_sgd *opt);
MTFT_API int mtft_sgd_set_lr(mtft_sgd *opt, float lr);
MTFT_API float mtft_sgd_get_lr(const mtft_sgd *opt);
MTFT_API int mtft_sgd_n_groups(const mtft_sgd *opt);
/* Group i's momentum buffer (NULL while not allocated or momentum == 0), its
 * length in floats and the group's step count (for checkpoints). */
MTFT_API int mtft_sgd_group_state(mtft_sgd *opt, int i, float **buf, size_t *n, int64_t *step);
/* Allocate group i's momentum buffer now (restoring a checkpoint). */
MTFT_API int mtft_sgd_group_state_alloc(mtft_sgd *opt, int i);
MTFT_API int mtft_sgd_set_group_step(mtft_sgd *opt, int i, int64_t step);

/* ---- learning-rate schedules ------------------------------------------------
 * The factor multiplying the base lr at optimizer step `step` (0-based: the
 * first update uses step 0), as Hugging Face's LambdaLR schedules, W warmup
 * and N total steps, m = min_lr_ratio:
 *   warmup (step < W):  step / max(1, W)
 *   CONSTANT:           1                      (get_constant_schedule_with_warmup)
 *   LINEAR:             m + (1-m) max(0, (N - step) / max(1, N - W))
 *                                              (get_linear_schedule_with_warmup at m = 0)
 *   COSINE:             p = (step - W) / max(1, N - W), clamped to [0, 1];
 *                       c = 0.5 (1 + cos(2 pi num_cycles p));
 *                       max(0, m + (1-m) c)    (get_cosine_schedule_with_warmup at m = 0,
 *                                              get_cosine_with_min_lr_schedule_with_warmup
 *                                              with min_lr_rate = m)
 * Past N the factor stays at its value at N (HF's cosine would rise again). */
typedef enum mtft_schedule_kind {
    MTFT_SCHEDULE_CONSTANT = 0,
    MTFT_SCHEDULE_LINEAR = 1,
    MTFT_SCHEDULE_COSINE = 2
} mtft_schedule_kind;

typedef struct mtft_schedule_options {
    int version;
    int kind;              /* an mtft_schedule_kind */
    int64_t warmup_steps;  /* >= 0 */
    int64_t total_steps;   /* LINEAR, COSINE: > 0 */
    double min_lr_ratio;   /* LINEAR, COSINE: in [0, 1] */
    double num_cycles;     /* COSINE: default 0.5 (one half cosine down to the minimum) */
} mtft_schedule_options;
#define MTFT_SCHEDULE_OPTIONS_VERSION 1
#define MTFT_SCHEDULE_OPTIONS_INIT {MTFT_SCHEDULE_OPTIONS_VERSION, MTFT_SCHEDULE_CONSTANT, 0, 0, 0.0, 0.5}

/* Validate options (the error names the field). */
MTFT_API int mtft_schedule_check(const mtft_schedule_options *o);
MTFT_API int mtft_schedule_factor(const mtft_schedule_options *o, int64_t step, double *out);
/* base_lr * factor. */
MTFT_API int mtft_schedule_lr(const mtft_schedule_options *o, float base_lr, int64_t step, float *out);
/* "constant", "linear", "cosine" -> kind (MTFT_ENOTFOUND otherwise). */
MTFT_API int mtft_schedule_kind_from_name(const char *name, int *kind);

/* ---- gradient norm, clipping, accumulation ----------------------------------
 * These take a list of parameter groups (each at most once) and act on the
 * gradient blocks of the trainable ones (frozen groups are skipped), tensor
 * by tensor. Per-part (split) gradient blocks are not touched. Norms are
 * accumulated in double. */
/* Global L2 norm of all gradients. */
MTFT_API int mtft_grad_norm(mtft_param_group *const *groups, int n_groups, double *out);
/* As torch.nn.utils.clip_grad_norm_: total = global L2 norm (written to
 * *total_norm, may be NULL); when max_norm / (total + 1e-6) < 1 every
 * gradient is multiplied by that coefficient. A non-finite total is
 * MTFT_ENUMERIC naming the first non-finite gradient, and the gradients are
 * left unchanged. max_norm must be > 0 (+inf: never clip). */
MTFT_API int mtft_clip_grad_norm(mtft_param_group *const *groups, int n_groups, float max_norm,
                                 double *total_norm);
/* Multiply every gradient by scale. */
MTFT_API int mtft_grad_scale(mtft_param_group *const *groups, int n_groups, float scale);
/* Gradient accumulation: after n_accum micro-batch backward passes summed
 * into the gradients, divide them by n_accum (the mean over micro-batches,
 * as if each loss had been scaled by 1/n_accum). n_accum == 1 is a no-op. */
MTFT_API int mtft_grad_accum_average(mtft_param_group *const *groups, int n_groups, int n_accum);

/* ---- SAM (Foret et al. 2021), two phases ------------------------------------
 *   backward at w;  mtft_sam_perturb(sam, groups, n, rho, NULL);   // w += e_w
 *   zero_grad; forward + backward at w + e_w;
 *   mtft_sam_restore(sam);                                         // back to w
 *   base optimizer step with the gradient taken at w + e_w
 * e_w = rho g / (||g|| + 1e-12), ||g|| the global L2 norm over the groups'
 * gradients. Adaptive SAM (Kwon et al. 2021, as the widely used PyTorch SAM
 * with adaptive=True): e_w = rho w^2 g / (|| |w| g || + 1e-12).
 * restore copies back the weights saved by perturb, so it is bit-exact
 * (subtracting e_w again would round). The saved copies are kept for the
 * next step (no allocation after the first). */
typedef struct mtft_sam mtft_sam;

typedef struct mtft_sam_options {
    int version;
    int adaptive; /* 1: ASAM scaling by w^2 */
} mtft_sam_options;
#define MTFT_SAM_OPTIONS_VERSION 1
#define MTFT_SAM_OPTIONS_INIT {MTFT_SAM_OPTIONS_VERSION, 0}

MTFT_API int mtft_sam_new(mtft_sam **out, const mtft_sam_options *o);
MTFT_API void mtft_sam_free(mtft_sam *s);
/* Phase 1. Trainable groups of the list are perturbed (frozen ones are
 * skipped). rho >= 0. *grad_norm (may be NULL) gets the norm used. A
 * non-finite norm is MTFT_ENUMERIC and nothing changes. MTFT_ESTATE when
 * already perturbed. */
MTFT_API int mtft_sam_perturb(mtft_sam *s, mtft_param_group *const *groups, int n_groups, float rho,
                              double *grad_norm);
/* Phase 2: restore the weights of the groups perturbed last (MTFT_ESTATE
 * when not perturbed). */
MTFT_API int mtft_sam_restore(mtft_sam *s);
MTFT_API int mtft_sam_is_perturbed(const mtft_sam *s);

/* ---- per-task SAM toward task-based flat minima -------------------------------
 * Phan et al. 2022, "Improving Multi-task Learning via Seeking Task-based
 * Flat Regions" (Algorithm 1; their code, FS-MTL). On flat vectors of the
 * n shared trainable parameters, for K tasks:
 *   1. g_k = gradient of task k's loss at w. Task k's perturbation
 *      e_k = rho g_k / (||(g_k, g_k^own)|| + 1e-12), where g_k^own is task
 *      k's gradient of its own (task-specific) parameters, which are
 *      perturbed by the same scale.
 *   2. g_k^SAM = gradient of task k's loss at w + e_k (own params perturbed
 *      too); h_k = g_k^SAM - g_k, the "flatness" part.
 *   3. the shared update direction is A(g_1..g_K) + A(h_1..h_K), A being
 *      the gradient aggregation of the MTL method (equal weights: the mean;
 *      or PCGrad, MGDA, CAGrad, ... through a callback). Task-specific
 *      parameters take their own g_k^SAM (plain SAM), handled by the caller.
 * With the mean, the result is the mean of the g_k^SAM. The object keeps
 * g_k and h_k (2 K n floats). */
typedef struct mtft_task_sam mtft_task_sam;

/* Aggregate n_vec vectors of n floats into out. Non-zero return stops
 * (mtft_task_sam_combine then fails with MTFT_EUSER). */
typedef int (*mtft_task_sam_aggregate_fn)(const float *const *vecs, int n_vec, size_t n, float *out,
                                          void *payload);

MTFT_API int mtft_task_sam_new(mtft_task_sam **out, int n_tasks, size_t n, float rho);
MTFT_API void mtft_task_sam_free(mtft_task_sam *s);
/* Step 1 for task k: copies g (n floats). own_sq_norm: squared L2 norm of
 * g_k^own (0 when the task has no own parameters). Writes e_k to e_out (n
 * floats, may be NULL) and rho / (norm + 1e-12) to *scale (may be NULL), the
 * factor for g_k^own. A non-finite gradient is MTFT_ENUMERIC. */
MTFT_API int mtft_task_sam_set_grad(mtft_task_sam *s, int k, const float *g, double own_sq_norm, float *e_out,
                                    double *scale);
/* Step 2 for task k (after step 1): g_sam, its gradient at w + e_k. */
MTFT_API int mtft_task_sam_set_perturbed_grad(mtft_task_sam *s, int k, const float *g_sam);
/* Step 3: out (n floats) = A(g) + A(h) over the tasks that completed both
 * steps since the last clear (tasks absent from the batch are left out);
 * agg NULL means the mean. MTFT_ESTATE when no task completed, or a task did
 * step 1 only. */
MTFT_API int mtft_task_sam_combine(mtft_task_sam *s, mtft_task_sam_aggregate_fn agg, void *payload, float *out);
/* Forget the gradients of this step. */
MTFT_API void mtft_task_sam_clear(mtft_task_sam *s);

#ifdef __cplusplus
}
#endif
#endif
