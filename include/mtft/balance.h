/* mtft: loss balancers. One object wraps every method that turns per-task
 * losses (and, for gradient-level methods, per-task gradients of the shared
 * trainable parameters) into per-task loss weights or a combined gradient.
 * No tensors: per-task numbers and flat float vectors only.
 *
 *   mtft_balancer_options o = MTFT_BALANCER_OPTIONS_INIT;
 *   o.method = MTFT_BALANCE_DWA;
 *   o.dwa_temperature = 2.0f;
 *   mtft_balancer *b = NULL;
 *   if (mtft_balancer_new(&b, n_tasks, &o) < 0) report(mtft_error_last()->message);
 *   for each step:
 *       mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
 *       in.losses = losses; in.mask = present;       (mask NULL: all present)
 *       mtft_balance_output out = {weights, NULL};
 *       mtft_balancer_step(b, &in, &out);            total = sum_k weights[k] * losses[k]
 *       (FAMO only, optional) mtft_balancer_update_after_step(b, new_losses, present);
 *   mtft_balancer_free(b);
 *
 * Masks (partial labels): a task whose mask is 0 gets weight 0 and none of
 * its state (histories, learnable parameters, initial losses) changes.
 * Methods that normalise over tasks (DWA, RLW, GLS, FAMO, CoBa, MFTCoder)
 * normalise over the tasks present this step. See docs/balance.md for the
 * formula, defaults and weight scale of each method. */
#ifndef MTFT_BALANCE_H
#define MTFT_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "mtft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only. */
typedef enum mtft_balance_method {
    /* loss level: the step returns per-task weights */
    MTFT_BALANCE_EQUAL = 0,           /* w_k = 1 */
    MTFT_BALANCE_STATIC = 1,          /* w_k = static_weights[k] */
    MTFT_BALANCE_UNCERTAINTY = 2,     /* Kendall et al. 2018: w_k = exp(-s_k), s learnt */
    MTFT_BALANCE_DWA = 3,             /* Liu et al. 2019, dynamic weight average */
    MTFT_BALANCE_RLW = 4,             /* Lin et al. 2021, random loss weighting */
    MTFT_BALANCE_GLS = 5,             /* Chennupati et al. 2019, geometric loss strategy */
    MTFT_BALANCE_FAMO = 6,            /* Liu et al. 2023, fast adaptive multitask optimisation */
    MTFT_BALANCE_MFTCODER_TOKEN = 7,  /* MFTCoder: mean over all tokens of the batch */
    MTFT_BALANCE_MFTCODER_SAMPLE = 8, /* MFTCoder: mean over samples of per-sample means */
    MTFT_BALANCE_MFTCODER_TASK = 9,   /* MFTCoder: weighted mean of per-task means */
    MTFT_BALANCE_COBA = 10,           /* Gong et al. 2024, convergence balancer */
    /* gradient level: the step returns a combined gradient (and weights) */
    MTFT_BALANCE_GRADNORM = 11,       /* Chen et al. 2018 */
    MTFT_BALANCE_PCGRAD = 12,         /* Yu et al. 2020 */
    MTFT_BALANCE_CAGRAD = 13,         /* Liu et al. 2021 */
    MTFT_BALANCE_IMTL_G = 14,         /* Liu et al. 2021 (gradient part of IMTL) */
    MTFT_BALANCE_MGDA_UB = 15,        /* Sener & Koltun 2018 */
    MTFT_BALANCE_ALIGNED_MTL = 16,    /* Senushkin et al. 2023 */
    MTFT_BALANCE_NASH_MTL = 17,       /* Navon et al. 2022 */
    MTFT_BALANCE_METHOD_COUNT = 18
} mtft_balance_method;

/* Options. Each hyperparameter defaults to its paper's value. */
typedef struct mtft_balancer_options {
    int version;                 /* MTFT_BALANCER_OPTIONS_VERSION */
    mtft_balance_method method;  /* default EQUAL */
    uint64_t seed;               /* RLW draws and PCGrad's task order (default 0) */
    /* STATIC and MFTCODER_TASK: n_tasks weights >= 0 (copied by _new);
     * NULL means all 1. */
    const float *static_weights;

    /* UNCERTAINTY: w_k = exp(-s_k); s_k starts at uncertainty_init (0) and
     * is updated by the balancer on d/ds_k [exp(-s_k) L_k + s_k], with Adam
     * (uncertainty_adam = 1, default) or plain SGD, learning rate
     * uncertainty_lr (default 1e-3). */
    float uncertainty_lr;
    int uncertainty_adam;
    float uncertainty_init;

    /* DWA: temperature T (default 2) and the number of steps whose losses
     * are averaged into one DWA "epoch" (default 1: per step). */
    float dwa_temperature;
    int dwa_period;

    /* FAMO: learning rate of the task logits (0.025) and their weight
     * decay gamma (0.001); Adam as in the authors' code. */
    float famo_lr;
    float famo_gamma;

    /* CoBa: warm-up steps with uniform weights (100), slope-fitting window
     * N in steps (200), divergence temperature tau (5), and whether each
     * task's validation loss is divided by its first value (1). */
    int coba_warmup;
    int coba_window;
    float coba_tau;
    int coba_normalize;

    /* Gradient level. */
    float cagrad_c;      /* CAGrad c in [0, 1) (0.5) */
    int cagrad_rescale;  /* 1: divide by 1 + c^2 as the authors' code does (1) */
    float gradnorm_alpha;/* GradNorm asymmetry alpha (1.5) */
    float gradnorm_lr;   /* GradNorm weight learning rate (0.025) */
    int nash_max_iter;   /* Nash-MTL inner iterations (20) */
    int mgda_norm;       /* MGDA-UB gradient normalisation: 0 none, 1 L2 (default), 2 loss, 3 loss+ */
} mtft_balancer_options;

#define MTFT_BALANCER_OPTIONS_VERSION 1
#define MTFT_BALANCER_OPTIONS_INIT                                                                 \
    {MTFT_BALANCER_OPTIONS_VERSION, MTFT_BALANCE_EQUAL, 0, NULL, 1e-3f, 1, 0.0f, 2.0f, 1, 0.025f,   \
     0.001f, 100, 200, 5.0f, 1, 0.5f, 1, 1.5f, 0.025f, 20, 1}

/* The same defaults, for code that prefers a call to the macro. */
MTFT_API void mtft_balancer_options_init(mtft_balancer_options *o);

typedef struct mtft_balancer mtft_balancer;

/* Per-step input. Arrays have n_tasks entries. */
typedef struct mtft_balance_input {
    const float *losses;        /* required: this step's mean loss per task (finite) */
    const uint8_t *mask;        /* 1 = task present/labelled this step; NULL = all present */
    const int64_t *n_tokens;    /* MFTCODER_TOKEN: tokens counted in each task's mean loss */
    const int64_t *n_samples;   /* MFTCODER_SAMPLE: samples of each task in the batch */
    const float *val_losses;    /* COBA: this step's validation loss per task; NULL = losses */
    const float *const *grads;  /* gradient level: grads[k] = n_params floats (may be NULL when masked) */
    int64_t n_params;           /* gradient level: length of each gradient */
} mtft_balance_input;
#define MTFT_BALANCE_INPUT_INIT {NULL, NULL, NULL, NULL, NULL, NULL, 0}

/* Per-step output; buffers belong to the caller. */
typedef struct mtft_balance_output {
    float *weights; /* n_tasks floats or NULL: this step's weights (0 for masked tasks) */
    float *grad;    /* gradient level: n_params floats, the combined gradient (required there) */
} mtft_balance_output;

/* Create a balancer for n_tasks >= 1 tasks. opts NULL means defaults (EQUAL).
 * Invalid options fail with MTFT_EINVAL / MTFT_ERANGE naming the option. */
MTFT_API int mtft_balancer_new(mtft_balancer **out, int n_tasks, const mtft_balancer_options *opts);
MTFT_API void mtft_balancer_free(mtft_balancer *b);

/* One training step: computes this step's weights (and, for gradient-level
 * methods, the combined gradient) and advances the method's state. At least
 * one task must be present. */
MTFT_API int mtft_balancer_step(mtft_balancer *b, const mtft_balance_input *in, mtft_balance_output *out);

/* FAMO: after the optimizer step, the losses of the same batch under the
 * new parameters; updates the task logits as the authors' FAMO.update. When
 * it is not called, the next mtft_balancer_step uses its own losses as the
 * "new" losses of the previous step (one-batch-late update). Tasks must be
 * present both in the step and here to take part. For other methods this
 * is a no-op returning MTFT_OK. mask NULL: all present. */
MTFT_API int mtft_balancer_update_after_step(mtft_balancer *b, const float *new_losses, const uint8_t *mask);

/* 1 for gradient-level methods, 0 for loss-level ones, -1 if unknown. */
MTFT_API int mtft_balancer_is_gradient_level(mtft_balance_method method);
MTFT_API mtft_balance_method mtft_balancer_method(const mtft_balancer *b);
MTFT_API int mtft_balancer_n_tasks(const mtft_balancer *b);
/* Weights of the last step (n_tasks floats, valid until the next call on b);
 * before the first step, the weights the method starts from. */
MTFT_API const float *mtft_balancer_weights(const mtft_balancer *b);
/* Number of completed steps. */
MTFT_API uint64_t mtft_balancer_steps(const mtft_balancer *b);

/* "equal", "static", "uncertainty", "dwa", "rlw", "gls", "famo",
 * "mftcoder_token", "mftcoder_sample", "mftcoder_task", "coba", "gradnorm",
 * "pcgrad", "cagrad", "imtl_g", "mgda_ub", "aligned_mtl", "nash_mtl";
 * "unknown" for other values. */
MTFT_API const char *mtft_balance_method_name(mtft_balance_method method);
/* Case-insensitive; '-' is accepted for '_'. MTFT_ENOTFOUND (listing the
 * valid names) when the name is unknown. */
MTFT_API int mtft_balance_method_from_name(const char *name, mtft_balance_method *out);

/* State: everything a resumed run needs to continue exactly (step count,
 * histories, learnt parameters, RNG). The format is versioned, starts with
 * a magic, records the method and task count, and ends with a checksum.
 * Hyperparameters are not saved: they come from the options. */
MTFT_API size_t mtft_balancer_state_size(const mtft_balancer *b);
/* Writes mtft_balancer_state_size(b) bytes; MTFT_ERANGE if cap is smaller.
 * written may be NULL. */
MTFT_API int mtft_balancer_state_save(const mtft_balancer *b, void *buf, size_t cap, size_t *written);
/* Rejects (MTFT_EFORMAT / MTFT_EINVAL) wrong magic, version, method, task
 * count, truncated or corrupt data; on error b is unchanged. */
MTFT_API int mtft_balancer_state_load(mtft_balancer *b, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
