/* AdaMerging (Yang et al. 2024, "AdaMerging: Adaptive Model Merging for
 * Multi-Task Learning"): merging coefficients learned by minimising the
 * entropy of the merged model's predictions on unlabeled inputs.
 *
 *   theta_l(lambda) = base_l + sum_t lambda_{t,c(l)} tau_{t,l}
 *   c(l) = 0 (task-wise) or l (layer-wise: one coefficient per tensor)
 *   dL/dlambda_{t,c} = sum_{l : c(l) = c} <dL/dtheta_l, tau_{t,l}>       (chain rule)
 *
 * The model code never sees lambda: the caller's callback builds the loss
 * from a model whose weights (a parameter group) hold theta(lambda), the
 * autograd gives dL/dtheta, and the coefficient gradients follow from the
 * chain rule above. lambda is updated by Adam and clipped to a box. */
#include <math.h>
#include <string.h>

#include "merger_impl.h"

mtft_tensor *mtft_merge_entropy(mtft_graph *g, mtft_tensor *logits) {
    if (!g || !logits) return NULL;
    int nd = mtft_tensor_ndim(logits);
    int64_t V = mtft_tensor_dim(logits, nd - 1), N = mtft_tensor_numel(logits) / (V > 0 ? V : 1);
    /* H = -(1/N) sum_rows sum_j p_j log p_j */
    mtft_tensor *p = mtft_softmax(g, logits);
    mtft_tensor *lp = mtft_log_softmax(g, logits);
    mtft_tensor *s = mtft_sum(g, mtft_mul(g, p, lp));
    return mtft_scale(g, s, -1.0f / (float)(N > 0 ? N : 1));
}

int mtft_adamerge(mtft_merger *m, mtft_param_group *pg, mtft_adamerge_loss_fn fn, void *payload,
                  const mtft_adamerge_options *o, float *lambdas, float *losses) {
    MTFT_CHECK_ARG(m && pg && fn);
    mtft_adamerge_options d = MTFT_ADAMERGE_OPTIONS_INIT;
    if (!o) o = &d;
    if (o->version != MTFT_ADAMERGE_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "adamerge options: version %d, expected %d", o->version,
                         MTFT_ADAMERGE_OPTIONS_VERSION);
    if (o->steps < 0 || !(o->lr >= 0) || !isfinite(o->init_lambda) || !(o->lambda_min <= o->lambda_max))
        return mtft__err(MTFT_ERANGE, "adamerge options: steps >= 0, lr >= 0, finite init_lambda and lambda_min <= "
                                      "lambda_max are required");
    int rc = mtft_merge__prepare(m);
    if (rc < 0) return rc;
    const mtft_safetensors *ref = mtft_merge__ref(m);
    int nt = mtft_safetensors_count(ref), T = m->n_in;
    int n_coef = o->layerwise ? nt : 1;
    size_t total = 0;
    mtft_tensor **dst = mtft__calloc((size_t)nt + 1, sizeof *dst);
    size_t *off = mtft__calloc((size_t)nt + 1, sizeof *off);
    double *lam = mtft__calloc((size_t)T * (size_t)n_coef, sizeof *lam);
    double *gl = mtft__calloc((size_t)T * (size_t)n_coef, sizeof *gl);
    double *m1 = mtft__calloc((size_t)T * (size_t)n_coef, sizeof *m1);
    double *m2 = mtft__calloc((size_t)T * (size_t)n_coef, sizeof *m2);
    float *base = NULL, *tau = NULL;
    mtft_graph *g = NULL;
    int was_trainable = mtft_param_group_trainable(pg);
    if (!dst || !off || !lam || !gl || !m1 || !m2) {
        rc = mtft__err(MTFT_ENOMEM, "adamerge: out of memory");
        goto done;
    }
    if ((rc = mtft_merge__map_group(m, pg, dst)) < 0) goto done;
    for (int i = 0; i < nt; i++) {
        off[i] = total;
        total += (size_t)mtft_tensor_numel(dst[i]);
    }
    off[nt] = total;
    base = mtft__malloc((total + 1) * sizeof *base);
    tau = mtft__malloc(((size_t)T * total + 1) * sizeof *tau);
    if (!base || !tau) {
        rc = mtft__err(MTFT_ENOMEM, "adamerge: out of memory for %d task vectors of %zu floats", T, total);
        goto done;
    }
    for (int i = 0; i < nt && rc == MTFT_OK; i++) {
        int64_t n = (int64_t)(off[i + 1] - off[i]);
        if (m->base) rc = mtft_safetensors_read_f32(m->base, mtft_safetensors_name(m->base, i), base + off[i], -1, NULL);
        else memset(base + off[i], 0, (size_t)n * sizeof *base);
        for (int t = 0; t < T && rc == MTFT_OK; t++) {
            int touched = 0;
            rc = mtft_merge__delta(m, t, i, m->base ? base + off[i] : NULL, tau + (size_t)t * total + off[i], n,
                                   &touched);
        }
    }
    if (rc < 0) goto done;
    for (size_t k = 0; k < (size_t)T * (size_t)n_coef; k++) lam[k] = o->init_lambda;
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = (size_t)4 << 20;
    go.training = 0;
    if ((rc = mtft_graph_new(&g, &go)) < 0) goto done;
    if ((rc = mtft_param_group_set_trainable(pg, 1)) < 0) goto done;
    for (int step = 0; step <= o->steps; step++) {
        /* theta = base + sum_t lambda tau */
        for (int i = 0; i < nt; i++) {
            float *w = mtft_tensor_data(dst[i]);
            size_t n = off[i + 1] - off[i];
            int c = o->layerwise ? i : 0;
            for (size_t k = 0; k < n; k++) {
                double s = base[off[i] + k];
                for (int t = 0; t < T; t++) s += lam[(size_t)t * (size_t)n_coef + (size_t)c] * tau[(size_t)t * total + off[i] + k];
                w[k] = (float)s;
            }
        }
        if (step == o->steps) break; /* the final merge */
        mtft_graph_reset(g);
        mtft_param_group_zero_grad(pg);
        mtft_tensor *loss = NULL;
        rc = fn(g, step, payload, &loss);
        if (rc == MTFT_OK && !loss) rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : mtft__err(MTFT_EINVAL, "adamerge: the loss callback returned no loss");
        if (rc < 0) {
            mtft__err_prefix("adamerge step %d", step);
            goto done;
        }
        if (mtft_tensor_numel(loss) != 1) {
            rc = mtft__err(MTFT_ESHAPE, "adamerge: the loss must be a scalar (it has %lld elements)",
                           (long long)mtft_tensor_numel(loss));
            goto done;
        }
        float lv = mtft_tensor_data(loss)[0];
        if (!isfinite(lv)) {
            rc = mtft__err(MTFT_ENUMERIC, "adamerge step %d: the loss is %g", step, (double)lv);
            goto done;
        }
        if (losses) losses[step] = lv;
        if ((rc = mtft_graph_backward(g, loss, NULL)) < 0) goto done;
        memset(gl, 0, (size_t)T * (size_t)n_coef * sizeof *gl);
        for (int i = 0; i < nt; i++) {
            const float *gr = mtft_tensor_grad(dst[i]);
            if (!gr) continue;
            size_t n = off[i + 1] - off[i];
            int c = o->layerwise ? i : 0;
            for (int t = 0; t < T; t++) {
                const float *tv = tau + (size_t)t * total + off[i];
                double s = 0;
                for (size_t k = 0; k < n; k++) s += (double)gr[k] * tv[k];
                gl[(size_t)t * (size_t)n_coef + (size_t)c] += s;
            }
        }
        /* Adam (bias-corrected), then clip to [lambda_min, lambda_max] */
        double b1 = 0.9, b2 = 0.999, eps = 1e-8;
        double c1 = 1 - pow(b1, step + 1), c2 = 1 - pow(b2, step + 1);
        for (size_t k = 0; k < (size_t)T * (size_t)n_coef; k++) {
            m1[k] = b1 * m1[k] + (1 - b1) * gl[k];
            m2[k] = b2 * m2[k] + (1 - b2) * gl[k] * gl[k];
            lam[k] -= o->lr * (m1[k] / c1) / (sqrt(m2[k] / c2) + eps);
            if (lam[k] < o->lambda_min) lam[k] = o->lambda_min;
            if (lam[k] > o->lambda_max) lam[k] = o->lambda_max;
        }
    }
    if (lambdas)
        for (size_t k = 0; k < (size_t)T * (size_t)n_coef; k++) lambdas[k] = (float)lam[k];
done:
    if (g) mtft_graph_free(g);
    if (!was_trainable) mtft_param_group_set_trainable(pg, 0);
    mtft__free(dst);
    mtft__free(off);
    mtft__free(lam);
    mtft__free(gl);
    mtft__free(m1);
    mtft__free(m2);
    mtft__free(base);
    mtft__free(tau);
    return rc;
}
