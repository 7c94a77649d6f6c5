/* mtft: the task mixture sampler. Given the number of examples n_k of each
 * of K tasks, it decides which task fills each row of the next batch and which
 * example of that task each row gets. Works on sizes and scalars only (no
 * tensors). See docs/sampler.md for the formulas and an example.
 *
 * Rates (probability of drawing task k), before masking:
 *   PROPORTIONAL  r_k = n_k / sum_j n_j
 *   CAPPED        r_k = min(n_k, cap) / sum_j min(n_j, cap)        (T5, cap = K)
 *   TEMPERATURE   r_k = n_k^(1/T) / sum_j n_j^(1/T)               (mT5: T = 1/0.3)
 *   UNIFORM       r_k = 1 / K
 *   WEIGHTS       r_k = w_k / sum_j w_j
 * With anneal_steps > 0 the rates move linearly from `start` to `end`:
 *   r(t) = (1 - s) r_start + s r_end,  s = min(t / anneal_steps, 1),
 * t being the number of batches drawn so far. Rates set with
 * mtft_sampler_set_rates replace r(t) while they last. Finally rates are
 * restricted to tasks that are active (mask) and not stopped, and
 * renormalised to sum to 1.
 *
 * Thread-compatible: one thread at a time per sampler. */
#ifndef MTFT_SAMPLER_H
#define MTFT_SAMPLER_H

#include "mtft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_sampler mtft_sampler;

/* How per-task rates follow from the dataset sizes. */
typedef enum mtft_sampler_strategy {
    MTFT_SAMPLER_PROPORTIONAL = 0, /* r_k prop. to n_k */
    MTFT_SAMPLER_CAPPED = 1,       /* r_k prop. to min(n_k, cap) (T5's examples-proportional with limit K) */
    MTFT_SAMPLER_TEMPERATURE = 2,  /* r_k prop. to n_k^(1/T) */
    MTFT_SAMPLER_UNIFORM = 3,      /* r_k = 1/K */
    MTFT_SAMPLER_WEIGHTS = 4       /* r_k prop. to w_k, given explicitly */
} mtft_sampler_strategy;

/* How a batch is composed. */
typedef enum mtft_sampler_batch_mode {
    MTFT_SAMPLER_MIXED = 0,      /* every row draws its own task by the rates */
    MTFT_SAMPLER_SINGLE_TASK = 1 /* one task per batch, drawn by the rates, fills all rows */
} mtft_sampler_batch_mode;

/* What happens when a task has handed out every example once. */
typedef enum mtft_sampler_epoch_policy {
    MTFT_SAMPLER_RESHUFFLE = 0, /* a new permutation starts the next epoch */
    MTFT_SAMPLER_STOP = 1       /* the task leaves the mixture; the others are renormalised */
} mtft_sampler_epoch_policy;

/* One distribution over tasks. */
typedef struct mtft_sampler_dist {
    int strategy;          /* an mtft_sampler_strategy */
    double temperature;    /* TEMPERATURE: T > 0 (1 = proportional, large = uniform); alpha = 1/T */
    double cap;            /* CAPPED: the limit K > 0, in examples (T5 tried 2^16 .. 2^21) */
    const double *weights; /* WEIGHTS: n_tasks values >= 0 with a positive sum; copied by _new */
} mtft_sampler_dist;

#define MTFT_SAMPLER_DIST_INIT {MTFT_SAMPLER_PROPORTIONAL, 1.0, 0.0, NULL}

typedef struct mtft_sampler_options {
    int version;
    uint64_t seed;            /* seeds task draws and every task's permutations */
    mtft_sampler_dist start;  /* the mixture (its start when anneal_steps > 0) */
    mtft_sampler_dist end;    /* the mixture after anneal_steps batches; unused when anneal_steps == 0 */
    int64_t anneal_steps;     /* 0: constant `start`; > 0: linear from `start` to `end` */
    int batch_mode;           /* an mtft_sampler_batch_mode; default MIXED */
    int epoch_policy;         /* an mtft_sampler_epoch_policy; default RESHUFFLE */
} mtft_sampler_options;

#define MTFT_SAMPLER_OPTIONS_VERSION 1
#define MTFT_SAMPLER_OPTIONS_INIT                                                                  \
    {MTFT_SAMPLER_OPTIONS_VERSION, 0, MTFT_SAMPLER_DIST_INIT, MTFT_SAMPLER_DIST_INIT, 0, MTFT_SAMPLER_MIXED, \
     MTFT_SAMPLER_RESHUFFLE}

/* Per-task accounting. */
typedef struct mtft_sampler_task_stats {
    int64_t size;     /* n_k */
    int64_t epochs;   /* completed passes over all n_k examples */
    int64_t position; /* examples handed out in the current pass (0 .. n_k) */
    int64_t drawn;    /* examples handed out in total */
    int stopped;      /* 1 once exhausted under MTFT_SAMPLER_STOP */
    int active;       /* the mask bit (mtft_sampler_set_mask) */
} mtft_sampler_task_stats;

/* The rates of distribution `d` for tasks of the given sizes (all > 0), into
 * rates[n_tasks]; they sum to 1. No sampler needed: for previews and tests. */
MTFT_API int mtft_sampler_compute_rates(int n_tasks, const int64_t *sizes, const mtft_sampler_dist *d,
                                        double *rates);

/* A sampler over n_tasks tasks of sizes[k] > 0 examples. opts may be NULL
 * (defaults). Options are validated with messages naming the bad field. */
MTFT_API int mtft_sampler_new(mtft_sampler **out, int n_tasks, const int64_t *sizes,
                              const mtft_sampler_options *opts);
/* NULL-safe. */
MTFT_API void mtft_sampler_free(mtft_sampler *s);

/* Draw the next batch of batch_size rows: task_ids[r] is the row's task and
 * example_idx[r] the index of the example within that task (0 .. n_k - 1).
 * Returns the number of rows filled, batch_size unless tasks stop under
 * MTFT_SAMPLER_STOP during this batch (a single-task batch ends with its task;
 * a mixed batch ends when no task is left); rows past that get -1 and -1.
 * Each call is one step (annealing and set_rates durations count calls).
 * Errors: MTFT_ESTATE when every task is stopped (end of data: nothing is
 * drawn, mtft_sampler_finished() returns 1); MTFT_ERANGE when tasks remain
 * but the active ones have zero total rate (all masked out or given rate 0). */
MTFT_API int mtft_sampler_next_batch(mtft_sampler *s, int batch_size, int32_t *task_ids, int64_t *example_idx);

/* The rates the next batch will be drawn with, into rates_out[n_tasks]:
 * schedule or override, restricted to active, unstopped tasks, summing to 1
 * (all 0 when no active task has a positive rate). */
MTFT_API int mtft_sampler_rates(const mtft_sampler *s, double *rates_out);

/* Override the schedule with rates[n_tasks] (>= 0, positive sum; normalised)
 * for the next n_steps batches, or until replaced or cleared when n_steps == 0.
 * rates == NULL clears the override. The mask and stopped tasks still apply.
 * This is how a loss balancer's task weights can drive the sampler. */
MTFT_API int mtft_sampler_set_rates(mtft_sampler *s, const double *rates, int64_t n_steps);

/* Set which tasks may be drawn from the next batch on: active[k] != 0.
 * NULL makes every task active. At least one task must be active. */
MTFT_API int mtft_sampler_set_mask(mtft_sampler *s, const int *active);

MTFT_API int mtft_sampler_get_task_stats(const mtft_sampler *s, int task, mtft_sampler_task_stats *out);
MTFT_API int mtft_sampler_n_tasks(const mtft_sampler *s);
/* Batches drawn so far (the t of the annealing schedule). */
MTFT_API int64_t mtft_sampler_step(const mtft_sampler *s);
/* 1 when every task is stopped (end of data), else 0. */
MTFT_API int mtft_sampler_finished(const mtft_sampler *s);

/* Serialise the whole state (RNGs, permutation seeds, cursors, epochs, step,
 * stopped flags, mask, override) into buf[size]. Returns the number of bytes
 * needed; writes only when size is at least that (buf may be NULL with size
 * 0 to ask). Negative status on error. The format is versioned, has a magic
 * and a checksum, and is the same on every platform (little endian). */
MTFT_API int64_t mtft_sampler_state_save(const mtft_sampler *s, void *buf, size_t size);
/* Restore a state saved by a sampler built with the same task sizes and
 * options; afterwards it draws exactly what the saved one would have drawn.
 * A truncated or corrupt buffer (MTFT_EFORMAT), or one from a different
 * configuration (MTFT_EINVAL: number of tasks, sizes, rates, batch mode,
 * epoch policy, annealing), is rejected with a message saying what differs,
 * and the sampler is left unchanged. */
MTFT_API int mtft_sampler_state_load(mtft_sampler *s, const void *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
