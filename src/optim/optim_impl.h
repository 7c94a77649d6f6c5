/* Internal helpers of the optim files that act on lists of parameter
 * groups (clip.c, sam.c). Not installed. */
#ifndef MTFT_OPTIM_IMPL_H
#define MTFT_OPTIM_IMPL_H

#include "../tensor/tensor_impl.h"
#include "mtft/optim.h"

/* Checks a group list: non-NULL, allocated, each group at most once.
 * `what` names the caller in errors. */
int mtft_optim__check_groups(const char *what, mtft_param_group *const *groups, int n_groups);

/* 1 when the group has a gradient block to act on. */
static inline int mtft_optim__active(const mtft_param_group *pg) { return pg->trainable && pg->grad; }

/* Sum of squares of the gradients of the active groups (tensor ranges only),
 * in double. */
double mtft_optim__grad_sq(mtft_param_group *const *groups, int n_groups);

/* Names the first non-finite gradient element in an error with `code`. */
int mtft_optim__nonfinite_err(const char *what, mtft_param_group *const *groups, int n_groups, double norm);

#endif
