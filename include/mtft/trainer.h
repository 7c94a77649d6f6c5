/* mtft: the multitask trainer, evaluation, checkpoints and small-model
 * pretraining.
 *
 *   mtft_trainer_options o = MTFT_TRAINER_OPTIONS_INIT;
 *   o.max_steps = 500;  o.progress = on_step;  o.payload = &ui;
 *   o.balancer.method = MTFT_BALANCE_DWA;
 *   mtft_trainer *tr;
 *   if (mtft_trainer_new(&tr, model, &o) < 0) report(mtft_error_last()->message);
 *   mtft_trainer_add_task(tr, task_a, NULL);   // head chosen from the task type
 *   mtft_trainer_add_task(tr, task_b, NULL);
 *   rc = mtft_trainer_run(tr);                 // MTFT_EUSER if on_step returned non-zero
 *   mtft_trainer_evaluate(tr, MTFT_SPLIT_TEST, 0);
 *   mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_TEST, MTFT_METRIC_ACCURACY, &acc, NULL);
 *   mtft_trainer_free(tr);
 *
 * One training step: the mixture sampler draws batch_size (task, example)
 * rows; rows are grouped by task and collated (right padding, truncation to
 * max_len); one forward runs the trunk once with each task's LoRA on its own
 * rows and each task's head on its rows (mtft_multitask_forward); the
 * balancer turns the per-task losses (loss level) or per-task gradients of
 * the shared LoRA (gradient level, from the same single backward) into
 * weights or a combined gradient; the global gradient norm is clipped and
 * the optimizer (AdamW, or SGD with momentum) steps with the scheduled
 * learning rate. Options: gradient accumulation over micro-batches and SAM
 * (see grad_accum_steps and sam_rho below), and per-task SAM
 * (sam_per_task). A step whose loss or
 * gradient is not finite changes nothing (no update, no balancer or sampler
 * state beyond the draw) and is reported (progress.skipped, the log, a
 * warning).
 *
 * Evaluation per task (no dropout, no tape), by type:
 *   classification  accuracy, macro_f1, mcc
 *   regression      rmse, mae, pearson, spearman
 *   tagging         token_accuracy, tag_micro_f1, tag_macro_f1 (+ span_f1 for BIO tags)
 *   generation      perplexity, nll and teacher-forced token_accuracy of the target;
 *                   with mtft_trainer_set_tokenizer also exact_match and chrf of greedy decodes
 * The selection score is the mean over tasks of each task's primary metric:
 * the task's select_metric (mtft_task_options; lower-is-better metrics rmse,
 * mae, perplexity and nll count negated), by default accuracy,
 * token_accuracy, pearson or -nll by type. The best dev
 * score keeps a copy of the trainable weights, early stopping counts
 * evaluations without improvement, and at the end of run() the best weights
 * are restored.
 *
 * Determinism: the same seed, data, options and thread count give the same
 * bits. Dropout is off by default (graph dropout masks repeat each step). */
#ifndef MTFT_TRAINER_H
#define MTFT_TRAINER_H

#include "mtft/balance.h"
#include "mtft/common.h"
#include "mtft/data.h"
#include "mtft/head.h"
#include "mtft/metrics.h"
#include "mtft/model.h"
#include "mtft/sampler.h"
#include "mtft/task.h"
#include "mtft/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_trainer mtft_trainer;

typedef enum mtft_lr_schedule {
    MTFT_LR_CONSTANT = 0, /* lr after warmup */
    MTFT_LR_LINEAR = 1,   /* linear warmup, then linear decay to min_lr_ratio * lr */
    MTFT_LR_COSINE = 2    /* linear warmup, then cosine decay to min_lr_ratio * lr */
} mtft_lr_schedule;

typedef enum mtft_optimizer_kind {
    MTFT_OPTIM_ADAMW = 0, /* AdamW (beta1, beta2, eps, decoupled weight decay) */
    MTFT_OPTIM_SGD = 1    /* SGD with momentum (weight decay added to the gradient, as mtft_sgd) */
} mtft_optimizer_kind;

typedef enum mtft_progress_event {
    MTFT_PROGRESS_STEP = 0, /* after an optimizer step (or a skipped one) */
    MTFT_PROGRESS_EVAL = 1  /* after an evaluation; score and best_score are set */
} mtft_progress_event;

/* What the progress callback sees. Arrays have n_tasks entries and are
 * valid during the call only. */
typedef struct mtft_progress {
    int event;                 /* an mtft_progress_event */
    int64_t step;              /* steps done, this one included */
    int64_t max_steps;
    int n_tasks;
    const char *const *task_names;
    const float *task_loss;    /* this step's mean loss per task; NaN for tasks absent from the batch */
    const float *task_weights; /* the balancer's weight per task this step (0 when absent) */
    const double *task_rates;  /* the sampler's rates this batch was drawn with */
    const int *task_rows;      /* rows of each task in this batch */
    float loss;                /* sum_k weight_k * loss_k */
    float lr;
    float grad_norm;           /* global norm of the trainable gradient before clipping */
    int skipped;               /* 1: non-finite loss or gradient, the step changed nothing */
    int64_t n_skipped;         /* skipped steps so far */
    int64_t tokens;            /* non-padding tokens in this batch */
    double tokens_per_sec;     /* over the whole run so far */
    double elapsed_sec;
    double eta_sec;            /* by max_steps and, when set, max_seconds */
    double score;              /* EVAL: selection score of this evaluation (dev) */
    double best_score;         /* EVAL: best so far */
} mtft_progress;

/* Return non-zero to stop: the call then fails with MTFT_EUSER. */
typedef int (*mtft_progress_cb)(const mtft_progress *info, void *payload);

typedef struct mtft_trainer_options {
    int version;
    uint64_t seed;            /* heads, LoRA init, sampler (when its own seed is 0), balancer */
    int64_t max_steps;        /* optimizer steps (>= 1) */
    double max_seconds;       /* > 0: also stop after this much training time (not deterministic) */
    int batch_size;           /* rows per step */
    int max_len;              /* rows are truncated to this many tokens */
    mtft_truncation truncation;
    int32_t pad_id;
    /* optimizer (AdamW) and schedule */
    float lr;
    float weight_decay;
    float beta1, beta2, eps;
    int64_t warmup_steps;
    mtft_lr_schedule schedule;
    float min_lr_ratio;       /* decay floor as a fraction of lr */
    float grad_clip;          /* > 0: clip the global gradient norm to this */
    /* what trains */
    int train_base;           /* 1: the base trunk trains too (lr * base_lr_scale) */
    float base_lr_scale;
    int lora_rank;            /* per-task LoRA rank; 0: no per-task LoRA */
    float lora_alpha;
    const char *lora_targets; /* mtft_lora_options.target_modules; NULL: all four GPT-2 projections */
    int shared_lora_rank;     /* > 0: a task-agnostic LoRA too (required by gradient-level balancers) */
    /* heads made by add_task when no head options are given */
    int head_hidden;          /* dense layer before the output (0: none) */
    mtft_pool_mode head_pool;
    /* the mixture and the balancer */
    mtft_sampler_options sampler;
    mtft_balancer_options balancer;
    int balancer_drives_sampler; /* 1: sampling rates follow the balancer's weights (loss-level methods) */
    /* evaluation */
    int64_t eval_every;       /* > 0: evaluate on dev every this many steps (and at the end) */
    int64_t eval_max_examples;/* > 0: at most this many examples per task and split in evaluation */
    int eval_batch_size;
    int early_stop_patience;  /* > 0: stop after this many evaluations without a better score */
    /* output */
    const char *log_path;     /* NULL or "": no JSONL log; else one JSON object per step / evaluation */
    int print_every;          /* > 0: a progress line (or bar on a terminal) to stdout every n steps */
    mtft_progress_cb progress;
    void *payload;
    /* periodic checkpoints: every save_every steps (> 0) into
     * ckpt_dir/step-NNNNNNNN (mtft_trainer_save), keeping the newest keep_last
     * (> 0; 0 keeps all). With ckpt_dir set, every evaluation in run() that
     * improves the best dev score also saves the checkpoint ckpt_dir/best
     * (never pruned). */
    const char *ckpt_dir;
    int64_t save_every;
    int keep_last;
    /* optimizer kind, accumulation and SAM.
     * grad_accum_steps N > 1: one optimizer step takes N micro-batches of
     * batch_size rows each, drawn one after the other from the sampler; each
     * micro-batch's weighted loss is scaled by 1/N and its gradients add up,
     * so with equal weights N micro-batches of b rows give the gradient of
     * one batch of N*b rows (per-task mean losses). The (loss-level)
     * balancer steps once per micro-batch on that micro-batch's losses; the
     * sampler's rates change only after the optimizer step. Gradient-level
     * balancers need N == 1.
     * sam_rho > 0: SAM (Foret et al. 2021): after the backward the trainable
     * weights move by e = rho g / ||g||, the same batch runs forward and
     * backward again with the balancer's weights of the first pass, the
     * weights are restored exactly and the optimizer steps with the second
     * gradient. Needs grad_accum_steps == 1 and a loss-level balancer
     * (unless sam_per_task).
     * sam_per_task 1 (with sam_rho > 0): per-task SAM toward task-based flat
     * minima (Phan et al. 2022, mtft_task_sam_* in optim.h). Each task of
     * the batch runs on its own rows: its gradient g_k at w (shared and its
     * own parameters), the perturbation e_k = rho g_k / ||g_k||, its
     * gradient g_k^SAM at w + e_k, then exact restore. The shared trainable
     * parameters (the base when train_base, the shared LoRA) take
     * A(g_1..g_K) + A(g_1^SAM - g_1, ..): with a loss-level balancer A is
     * the balancer's weighted sum (so the update is sum_k w_k g_k^SAM);
     * with a gradient-level balancer A is that balancer (its state advances
     * once per step, on the g_k). Task k's own parameters (its LoRA and
     * head) take w_k g_k^SAM. Costs two forward-backward passes over the
     * batch (split by task) and 2 K copies of the shared trainable
     * gradient. Needs grad_accum_steps == 1. */
    int optimizer;            /* an mtft_optimizer_kind */
    float momentum;           /* SGD momentum */
    int grad_accum_steps;     /* >= 1 */
    float sam_rho;            /* > 0: SAM radius; 0: off */
    int sam_per_task;         /* 1: per-task SAM (needs sam_rho > 0); 0: SAM over the whole batch */
} mtft_trainer_options;

#define MTFT_TRAINER_OPTIONS_VERSION 1
#define MTFT_TRAINER_OPTIONS_INIT                                                                           \
    {MTFT_TRAINER_OPTIONS_VERSION, 1, 1000, 0.0, 16, 128, MTFT_TRUNCATE_RIGHT, 0, 1e-3f, 0.01f, 0.9f, 0.999f, \
     1e-8f, 0, MTFT_LR_LINEAR, 0.0f, 1.0f, 0, 0.1f, 8, 16.0f, NULL, 0, 0, MTFT_POOL_LAST,                   \
     MTFT_SAMPLER_OPTIONS_INIT, MTFT_BALANCER_OPTIONS_INIT, 0, 0, 0, 32, 0, NULL, 0, NULL, NULL, NULL, 0, 3,                    \
     MTFT_OPTIM_ADAMW, 0.9f, 1, 0.0f, 0}

/* A trainer for the model m (borrowed; it must outlive the trainer). The
 * options are copied (strings too), except the per-task weight arrays of
 * sampler.start/end.weights and balancer.static_weights: those are read when
 * the trainer starts (first run, evaluate, save or load) and must stay valid
 * until then. Unless train_base is set the model's base group is frozen
 * (made non-trainable) when the trainer starts. */
MTFT_API int mtft_trainer_new(mtft_trainer **out, mtft_model *m, const mtft_trainer_options *o);
/* NULL-safe. Detaches the trainer's LoRA from the model. */
MTFT_API void mtft_trainer_free(mtft_trainer *tr);

/* Add a loaded task (borrowed: it must stay loaded while the trainer
 * lives) with a new head. head NULL: the head follows the task type
 * (classification, multilabel, regression with targets standardised by the
 * training values, token classification, LM on the model's LM head) with
 * the trainer's head_hidden and head_pool. A regression head with one
 * target (given or not) gets its target mean and std fitted on the training
 * values. Returns the task's index, or an error. Tasks must be added before the first run/evaluate/load. */
MTFT_API int mtft_trainer_add_task(mtft_trainer *tr, mtft_task *task, const mtft_head_options *head);
MTFT_API int mtft_trainer_n_tasks(const mtft_trainer *tr);
MTFT_API const char *mtft_trainer_task_name(const mtft_trainer *tr, int task);
MTFT_API mtft_head *mtft_trainer_head(mtft_trainer *tr, int task);

/* Train until max_steps (counting steps of earlier runs and of a loaded
 * checkpoint), max_seconds or early stopping. May be called again after
 * raising max_steps with mtft_trainer_set_max_steps. */
MTFT_API int mtft_trainer_run(mtft_trainer *tr);
MTFT_API int mtft_trainer_set_max_steps(mtft_trainer *tr, int64_t max_steps);
MTFT_API int64_t mtft_trainer_step(const mtft_trainer *tr);
/* The last step's loss per task (NaN when absent) into out[n_tasks]. */
MTFT_API int mtft_trainer_last_losses(const mtft_trainer *tr, float *out);

/* Evaluate every task on a split (max_examples > 0 caps the examples per
 * task; 0: the option eval_max_examples). The results stay until the next
 * evaluation of that split. With a log, a test or train evaluation appends
 * an "eval" line with that split's metrics (dev ones come from run()). */
MTFT_API int mtft_trainer_evaluate(mtft_trainer *tr, mtft_split split, int64_t max_examples);
/* A metric of the last evaluation of `split`: MTFT_ENOTFOUND when the task
 * type does not report it, MTFT_ESTATE before an evaluation of the split.
 * defined (may be NULL) as in mtft_metrics_value. */
MTFT_API int mtft_trainer_eval_value(const mtft_trainer *tr, int task, mtft_split split, mtft_metric metric,
                                     double *value, int *defined);
/* The primary (selection) metric of a task (see above) and the selection score of the
 * last evaluation of a split. */
MTFT_API mtft_metric mtft_trainer_primary_metric(const mtft_trainer *tr, int task);
/* Examples of `task` the last evaluation of `split` read (0 when it had none
 * to score), -1 before an evaluation of that split. The JSONL log's eval
 * lines give it as "n" per task. */
MTFT_API int64_t mtft_trainer_eval_examples(const mtft_trainer *tr, int task, mtft_split split);
MTFT_API int mtft_trainer_eval_score(const mtft_trainer *tr, mtft_split split, double *score);

/* Predict for one example of `task` given its token ids (tokenized as the
 * task's data is: template applied; tagging: word i > 0 preceded by a space),
 * with the task's LoRA and head, as mtft_head_predict describes. Inputs
 * longer than max_len are cut as training cuts them: the first max_len
 * tokens, or the last ones with truncation left; per-token outputs stay
 * indexed by position in ids, and cut-off positions get
 * MTFT_HEAD_IGNORE_INDEX (and NaN values). Room needed: out_ids n_ids ints (1 for
 * classification), out_values n_labels floats (sequence heads) or n_ids *
 * n_labels (tagging). Either output may be NULL. */
MTFT_API int mtft_trainer_predict(mtft_trainer *tr, int task, const int32_t *ids, int n_ids, int32_t *out_ids,
                                  float *out_values);

/* Give the trainer a tokenizer (borrowed; it must outlive the trainer) and
 * the eos id appended to generation targets (< 0: none). Evaluation of a
 * generation task then also decodes each example greedily with the task's
 * LoRA and head (the prompt, then one token at a time with a full forward,
 * up to the target length + 4 tokens, within max_len, stopping at eos) and
 * reports exact_match (exact string equality) and chrf of the decoded text
 * against the target without its eos. Without a tokenizer only perplexity,
 * nll and token_accuracy are reported. */
MTFT_API int mtft_trainer_set_tokenizer(mtft_trainer *tr, const mtft_tokenizer *tok, int32_t eos_id);

/* Checkpoints: a directory holding trainer.json (the sidecar: step, seed,
 * tasks, files), trainable.safetensors (every trainable group's weights),
 * head.<task>/ (mtft_head_save) and state.bin (optimizer moments and steps,
 * sampler and balancer state, skip counters), each file written atomically
 * into "<dir>.tmp" that then replaces dir. Loading into a trainer built with
 * the same model, options and tasks continues exactly: a resumed run
 * reproduces the loss curve of an uninterrupted one bit for bit. */
MTFT_API int mtft_trainer_save(mtft_trainer *tr, const char *dir);
MTFT_API int mtft_trainer_load(mtft_trainer *tr, const char *dir);

/* ---- pretraining a small causal LM on raw text ---------------------------- */
typedef struct mtft_pretrain_options {
    int version;
    uint64_t seed;
    int64_t max_steps;
    double max_seconds;   /* > 0: stop after this much time too */
    int batch_size;       /* sequences per step */
    int seq_len;          /* tokens per sequence (<= the model's n_ctx) */
    float lr;
    float weight_decay;
    int64_t warmup_steps;
    float grad_clip;
    double holdout;       /* fraction of the tokens (the end) kept out for the held-out loss */
    int print_every;
    mtft_progress_cb progress; /* n_tasks = 1, task "lm" */
    void *payload;
} mtft_pretrain_options;
#define MTFT_PRETRAIN_OPTIONS_VERSION 1
#define MTFT_PRETRAIN_OPTIONS_INIT \
    {MTFT_PRETRAIN_OPTIONS_VERSION, 1, 1000, 0.0, 16, 128, 1e-3f, 0.1f, 50, 1.0f, 0.05, 0, NULL, NULL}

/* Train m as a causal LM on n_ids token ids (random windows of seq_len + 1
 * tokens, cosine schedule). *heldout_loss (may be NULL) receives the mean
 * next-token loss on the held-out tail after training. */
MTFT_API int mtft_pretrain(mtft_model *m, const int32_t *ids, int64_t n_ids, const mtft_pretrain_options *o,
                           double *heldout_loss);

#ifdef __cplusplus
}
#endif
#endif
