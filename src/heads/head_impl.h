/* Internal definition of task heads. Not installed. Letters: b rows of the
 * task, T time, C n_embd, H hidden_size, L n_labels, V vocab. */
#ifndef MTFT_HEAD_IMPL_H
#define MTFT_HEAD_IMPL_H

#include "../tensor/tensor_impl.h"
#include "mtft/model.h"
#include "mtft/head.h"

struct mtft_head {
    mtft_head_options o;   /* name and class_weights point at the copies below */
    char *name;
    float *class_weights;  /* n_labels or NULL */
    int n_embd;            /* C */
    mtft_param_group *pg;  /* "head.<name>" */
    mtft_tensor *dense_w, *dense_b; /* [H, C], [H] (hidden_size > 0) */
    mtft_tensor *out_w, *out_b;     /* [L, H or C], [L] (all kinds but LM) */
    mtft_tensor *lm_w;              /* [V, C] (LM with its own projection) */
    float *mean, *std;              /* REGRESSION: n_labels each */
};

/* Kind names used in messages and in head_config.json. */
const char *mtft_head__kind_name(mtft_head_kind k);
const char *mtft_head__pool_name(mtft_pool_mode p);
const char *mtft_head__act_name(mtft_head_activation a);
const char *mtft_head__loss_name(mtft_head_loss_kind l);

/* Check options against n_embd; MTFT_EINVAL / MTFT_ERANGE naming the field. */
int mtft_head__validate(int n_embd, const mtft_head_options *o);

/* The loss with row numbers in messages counted from row0 (the task's first
 * row inside a mixed batch). targets already point at this task's rows. */
mtft_tensor *mtft_head__loss(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                             const int32_t *valid_len, const mtft_head_targets *t, int row0);

/* Rows idx[0..M-1] (distinct, in [0, N)) of x [..., C] viewed as [N, C] ->
 * [M, C]; backward scatter-adds (gather.c). */
mtft_tensor *mtft_heads__gather_rows(mtft_graph *g, mtft_tensor *x, const int32_t *idx, int64_t M);

#endif
