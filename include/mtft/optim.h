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

#ifdef __cplusplus
}
#endif
#endif
