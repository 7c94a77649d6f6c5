/* Internal definition of mtft_sampler, shared by sampler.c (drawing) and
 * sampler_state.c (save/load). Not installed. */
#ifndef MTFT_SAMPLER_IMPL_H
#define MTFT_SAMPLER_IMPL_H

#include "core/core.h"
#include "mtft/sampler.h"

typedef struct mtft_sampler_task {
    int64_t size;      /* n_k > 0 */
    int64_t epochs;    /* completed passes */
    int64_t cursor;    /* next position in perm; == size only when stopped */
    int64_t drawn;     /* examples handed out in total */
    int stopped;       /* exhausted under MTFT_SAMPLER_STOP */
    int active;        /* mask bit */
    mtft_rng perm_rng; /* the stream state that generated the current perm */
    mtft_rng rng;      /* the stream state after generating it (next shuffle starts here) */
    int64_t *perm;     /* size entries: the order of this epoch */
} mtft_sampler_task;

struct mtft_sampler {
    int n_tasks;
    int batch_mode;
    int epoch_policy;
    int64_t anneal_steps;
    int64_t step;            /* batches drawn */
    mtft_rng rng;            /* task draws */
    double *p_start;         /* n_tasks, sum 1 */
    double *p_end;           /* n_tasks, sum 1 (== p_start without annealing) */
    int has_override;
    int64_t override_left;   /* batches the override still applies; 0 = until cleared */
    double *override_rates;  /* n_tasks, sum 1, valid when has_override */
    double *scratch;         /* n_tasks: effective rates during a draw */
    mtft_sampler_task *tasks;
};

/* Fill perm[0..n) with a Fisher-Yates permutation of 0..n-1 drawn from rng. */
void mtft_sampler__shuffle(int64_t *perm, int64_t n, mtft_rng *rng);

#endif
