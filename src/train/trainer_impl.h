/* Internal state of the trainer (src/train/trainer*.c). Not installed. */
#ifndef MTFT_TRAINER_IMPL_H
#define MTFT_TRAINER_IMPL_H

#include <stdio.h>

#include "../core/core.h"
#include "mtft/optim.h"
#include "mtft/peft.h"
#include "mtft/trainer.h"

/* One task's metrics on one split. */
typedef struct mtft_trainer_res {
    double v[MTFT_METRIC_COUNT_];
    unsigned char def[MTFT_METRIC_COUNT_];
    unsigned char have[MTFT_METRIC_COUNT_];
    int64_t n;
    int done;
} mtft_trainer_res;

struct mtft_trainer {
    mtft_trainer_options o;
    char *lora_targets, *log_path, *ckpt_dir;
    mtft_model *m;
    int n_tasks, cap;
    mtft_task **tasks;
    mtft_head **heads;
    char **names;
    mtft_metric *primary;
    int prepared;
    /* what trains */
    mtft_peft *peft;
    mtft_param_group *shared;  /* the shared LoRA group, or NULL */
    mtft_param_group **groups; /* every trainable group, in optimizer order */
    float *group_scale;
    float **best;              /* copies of the groups' data at the best dev score */
    int n_groups;
    mtft_adamw *opt;           /* optimizer == adamw */
    mtft_sgd *sgd;             /* optimizer == sgd */
    mtft_sam *sam;             /* sam_rho > 0, whole-batch SAM */
    /* per-task SAM (sam_per_task): group_task[i] = -1 for a shared group
     * (base, shared LoRA), else the task owning group i; n_shared floats of
     * shared trainable parameters; tsam keeps g_k and h_k (NULL when there
     * is no shared trainable parameter); tsam_vec / tsam_e: n_shared
     * scratch; tsam_save: weights saved before a perturbation; sub: one
     * task's rows of the batch; sub_off: its row offsets. */
    int tsam_on;
    int *group_task;
    size_t n_shared, n_save;
    mtft_task_sam *tsam;
    float *tsam_vec, *tsam_e, *tsam_save, *tsam_w; /* tsam_w: K weights of the flatness-part aggregation */
    void *bal_state2;
    mtft_batch sub;
    int32_t *sub_off;
    const mtft_tokenizer *gen_tok; /* set: generation tasks are decoded and scored as text */
    int32_t gen_eos;
    mtft_kv_cache *gen_kv;     /* greedy decoding of generation tasks (causal models), max_len positions */
    mtft_sampler *sampler;
    mtft_balancer *bal;
    int grad_level;
    void *bal_state;
    size_t bal_state_n;
    float *gsum;
    mtft_graph *g;
    mtft_batch batch;
    /* per-step scratch (one block) */
    void *buf;
    float *losses, *weights, *last_w, *w_out;
    double *rates;
    int *rows;
    uint8_t *mask;
    int64_t *n_tok, *n_smp;
    int32_t *row_off, *task_ids;
    int64_t *ex_idx;
    mtft_example_ref *refs;
    int32_t *pred_ids;
    float *pred_vals;
    /* counters */
    int64_t step, n_skipped, tokens_total;
    double train_seconds, run_t0, eval_seconds;
    int64_t run_step0;
    /* evaluation and selection */
    mtft_trainer_res *res[MTFT_SPLIT_COUNT];
    double score[MTFT_SPLIT_COUNT];
    int have_score[MTFT_SPLIT_COUNT];
    double best_score;
    int64_t best_step;
    int bad_evals, have_best;
    FILE *log;
};

int mtft_trainer__prepare(mtft_trainer *tr);
void mtft_trainer__rm_tree(const char *path);
/* Save ckpt_dir/step-NNNNNNNN and drop all but the newest keep_last. */
int mtft_trainer__save_periodic(mtft_trainer *tr);
int mtft_trainer__save_best(mtft_trainer *tr);
double mtft_trainer__now(void);

#endif
