/* Gradient-level methods of the balancer: compact away the masked tasks,
 * call the pure functions of gradbal.h with the options, keep their state
 * (GradNorm weights and initial losses, Nash-MTL alpha, PCGrad's RNG) and
 * scatter the per-task weights back. State changes only on success. */
#include <math.h>
#include <string.h>

#include "balance/balance_impl.h"
#include "balance/gradbal.h"
#include "core/core.h"

int mtft_balance__grad_step(mtft_balancer *b, const mtft_balance_input *in, const uint8_t *present,
                            float *grad_out) {
    int K = b->K, Kp = 0;
    int *idx = b->iscr;
    const float **g = b->gscr;
    float *loss = b->fscr, *wc = b->fscr + K, *aux = b->fscr + 2 * K, *init = b->fscr + 3 * K;
    for (int k = 0; k < K; k++) {
        if (!present[k]) continue;
        idx[Kp] = k;
        g[Kp] = in->grads[k];
        loss[Kp] = in->losses[k];
        wc[Kp] = 0.0f;
        Kp++;
    }
    int64_t P = in->n_params;
    const char *mname = mtft_balance_method_name(b->o.method);
    int rc;
    switch (b->o.method) {
    case MTFT_BALANCE_GRADNORM:
        /* initial losses: the first loss seen for each task */
        for (int i = 0; i < Kp; i++) {
            int k = idx[i];
            init[i] = b->gn_has_init[k] ? b->gn_init[k] : loss[i];
            if (!(init[i] > 0.0f))
                return mtft__err(MTFT_ERANGE, "balancer gradnorm: initial loss of task %d = %g, must be > 0 "
                                 "(GradNorm divides by it)", k, (double)init[i]);
            aux[i] = b->gn_w[k];
            wc[i] = aux[i]; /* this step's weights: before the update */
        }
        rc = mtft__gradnorm(Kp, P, g, loss, init, b->o.gradnorm_alpha, b->o.gradnorm_lr, aux, grad_out);
        if (rc < 0) break;
        for (int i = 0; i < Kp; i++) {
            int k = idx[i];
            b->gn_w[k] = aux[i];
            if (!b->gn_has_init[k]) {
                b->gn_init[k] = init[i];
                b->gn_has_init[k] = 1;
            }
        }
        break;
    case MTFT_BALANCE_PCGRAD: {
        mtft_rng r = b->rng;
        rc = mtft__pcgrad(Kp, P, g, &r, grad_out, wc);
        if (rc >= 0) b->rng = r;
        break;
    }
    case MTFT_BALANCE_CAGRAD: rc = mtft__cagrad(Kp, P, g, b->o.cagrad_c, b->o.cagrad_rescale, grad_out, wc); break;
    case MTFT_BALANCE_IMTL_G: rc = mtft__imtl_g(Kp, P, g, grad_out, wc); break;
    case MTFT_BALANCE_MGDA_UB: rc = mtft__mgda(Kp, P, g, loss, b->o.mgda_norm, grad_out, wc); break;
    case MTFT_BALANCE_ALIGNED_MTL: rc = mtft__aligned_mtl(Kp, P, g, NULL, grad_out, wc); break;
    case MTFT_BALANCE_NASH_MTL:
        for (int i = 0; i < Kp; i++) aux[i] = b->nash_alpha[idx[i]];
        rc = mtft__nash_mtl(Kp, P, g, aux, b->o.nash_max_iter, grad_out, wc);
        if (rc >= 0)
            for (int i = 0; i < Kp; i++) b->nash_alpha[idx[i]] = aux[i];
        break;
    default: return mtft__err(MTFT_ERROR, "balancer: %s is not a gradient-level method", mname);
    }
    if (rc < 0) {
        mtft__err_prefix("balancer %s", mname);
        return rc;
    }
    for (int k = 0; k < K; k++) b->weights[k] = 0.0f;
    for (int i = 0; i < Kp; i++) b->weights[idx[i]] = wc[i];
    return MTFT_OK;
}
