/* Internal: the balancer object, shared by balance.c (loss-level methods,
 * options, state save/load) and balance_grad.c (gradient-level methods,
 * which call the pure functions of gradbal.h). Not installed. */
#ifndef MTFT_BALANCE_IMPL_H
#define MTFT_BALANCE_IMPL_H

#include <stdint.h>

#include "mtft/balance.h"
#include "mtft/rng.h"

struct mtft_balancer {
    mtft_balancer_options o; /* o.static_weights points at static_w */
    int K;
    float *static_w;   /* K: STATIC / MFTCODER_TASK weights */
    uint64_t step;     /* completed steps */
    float *weights;    /* K: last weights */
    mtft_rng rng;      /* RLW draws, PCGrad order */

    /* UNCERTAINTY (p = log-variances s) and FAMO (p = logits xi): the
     * learnt per-task parameter and its Adam moments and per-task counts. */
    double *p, *m, *v;
    uint64_t *t;

    /* DWA: running sums of the open period, and the last two period means. */
    double *dwa_sum;
    uint64_t *dwa_cnt;
    double *dwa_l1, *dwa_l2; /* l1 = most recent period mean, l2 = the one before */
    uint64_t *dwa_nhist;     /* completed periods in which the task was present */
    uint64_t dwa_in_period;  /* steps in the open period */

    /* FAMO: losses of the last step, awaiting the update. */
    int famo_pending;
    double *famo_prev;
    uint8_t *famo_prev_mask;

    /* CoBa: per-task rings of (step, normalised validation loss) and of
     * fitted slopes (N = coba_window entries each), the ring of the max
     * curve, and the full list of max-curve slopes (the divergence factor
     * normalises over all of it). */
    int N;
    double *cb_first;
    uint8_t *cb_has_first;
    int64_t *cb_hstep;   /* K*N */
    double *cb_hval;     /* K*N */
    uint64_t *cb_hcount; /* K: values ever pushed */
    int64_t *cb_mstep;   /* N */
    double *cb_mval;     /* N */
    uint64_t cb_mcount;
    double *cb_slope;    /* K*N */
    uint64_t *cb_scount; /* K */
    double *cb_total;    /* cb_tcount slopes of the max curve */
    uint64_t cb_tcount, cb_tcap;
    double cb_last_df;   /* divergence factor of the last step (for tests / metrics) */
    double *cb_xy;       /* 2*N scratch for the slope fits (no allocation per step) */

    /* GRADNORM: task weights and initial losses. NASH_MTL: alpha. */
    float *gn_w;
    float *gn_init;
    uint8_t *gn_has_init;
    float *nash_alpha;

    /* Scratch, sized at creation so that a step allocates nothing:
     * dscr 8*K doubles, uscr 2*K bytes; gradient level: fscr 4*K floats,
     * iscr K ints, gscr K pointers. */
    double *dscr;
    uint8_t *uscr;
    float *fscr;
    int *iscr;
    const float **gscr;
};

/* Gradient-level step (balance_grad.c). Inputs were validated by the
 * caller (present tasks have finite losses; grads/n_params/out->grad are
 * set). present: K flags. Writes b->weights on success and leaves the
 * state unchanged on error. */
int mtft_balance__grad_step(mtft_balancer *b, const mtft_balance_input *in, const uint8_t *present,
                            float *grad_out);

#endif
