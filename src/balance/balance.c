/* The loss balancer object: options, the loss-level methods, and state
 * save/load. Gradient-level methods are dispatched to balance_grad.c.
 * All arithmetic is in double; weights are handed out as floats. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "balance/balance_impl.h"
#include "core/core.h"

/* ---- names ------------------------------------------------------------- */

static const char *const method_names[MTFT_BALANCE_METHOD_COUNT] = {
    "equal",          "static", "uncertainty", "dwa",      "rlw",    "gls",
    "famo",           "mftcoder_token", "mftcoder_sample", "mftcoder_task", "coba",
    "gradnorm",       "pcgrad", "cagrad",      "imtl_g",   "mgda_ub", "aligned_mtl",
    "nash_mtl"};

const char *mtft_balance_method_name(mtft_balance_method method) {
    if ((int)method < 0 || (int)method >= MTFT_BALANCE_METHOD_COUNT) return "unknown";
    return method_names[method];
}

int mtft_balance_method_from_name(const char *name, mtft_balance_method *out) {
    MTFT_CHECK_ARG(name != NULL);
    MTFT_CHECK_ARG(out != NULL);
    char low[32];
    size_t n = strlen(name);
    if (n < sizeof low) {
        for (size_t i = 0; i <= n; i++) {
            char c = (char)tolower((unsigned char)name[i]);
            low[i] = c == '-' ? '_' : c;
        }
        for (int m = 0; m < MTFT_BALANCE_METHOD_COUNT; m++) {
            if (strcmp(low, method_names[m]) == 0) {
                *out = (mtft_balance_method)m;
                return MTFT_OK;
            }
        }
    }
    char list[512];
    size_t pos = 0;
    list[0] = '\0';
    for (int m = 0; m < MTFT_BALANCE_METHOD_COUNT; m++) {
        int w = snprintf(list + pos, sizeof list - pos, "%s%s", m ? ", " : "", method_names[m]);
        if (w < 0 || (size_t)w >= sizeof list - pos) break;
        pos += (size_t)w;
    }
    return mtft__err(MTFT_ENOTFOUND, "balancer: unknown method '%s' (valid: %s)", name, list);
}

int mtft_balancer_is_gradient_level(mtft_balance_method method) {
    if ((int)method < 0 || (int)method >= MTFT_BALANCE_METHOD_COUNT) return -1;
    return method >= MTFT_BALANCE_GRADNORM;
}

/* ---- options ------------------------------------------------------------ */

void mtft_balancer_options_init(mtft_balancer_options *o) {
    if (!o) return;
    mtft_balancer_options d = MTFT_BALANCER_OPTIONS_INIT;
    *o = d;
}

static int check_options(const mtft_balancer_options *o, int K) {
    if (o->version != MTFT_BALANCER_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "balancer options: version %d, this library supports %d "
                         "(initialise with MTFT_BALANCER_OPTIONS_INIT)", o->version, MTFT_BALANCER_OPTIONS_VERSION);
    if ((int)o->method < 0 || (int)o->method >= MTFT_BALANCE_METHOD_COUNT)
        return mtft__err(MTFT_EINVAL, "balancer options: method %d is not a mtft_balance_method", (int)o->method);
#define FIN_POS(field)                                                                                    \
    if (!(isfinite(o->field) && o->field > 0.0f))                                                         \
    return mtft__err(MTFT_ERANGE, "balancer options: " #field " = %g, must be finite and > 0", (double)o->field)
#define FIN_NONNEG(field)                                                                                 \
    if (!(isfinite(o->field) && o->field >= 0.0f))                                                        \
    return mtft__err(MTFT_ERANGE, "balancer options: " #field " = %g, must be finite and >= 0", (double)o->field)
    switch (o->method) {
    case MTFT_BALANCE_STATIC:
    case MTFT_BALANCE_MFTCODER_TASK:
        if (o->static_weights) {
            double sum = 0.0;
            for (int k = 0; k < K; k++) {
                float w = o->static_weights[k];
                if (!(isfinite(w) && w >= 0.0f))
                    return mtft__err(MTFT_ERANGE, "balancer options: static_weights[%d] = %g, must be finite and >= 0",
                                     k, (double)w);
                sum += w;
            }
            if (o->method == MTFT_BALANCE_MFTCODER_TASK && !(sum > 0.0))
                return mtft__err(MTFT_ERANGE, "balancer options: static_weights sum to 0 (mftcoder_task normalises by the sum)");
        }
        break;
    case MTFT_BALANCE_UNCERTAINTY:
        FIN_POS(uncertainty_lr);
        if (!isfinite(o->uncertainty_init))
            return mtft__err(MTFT_ERANGE, "balancer options: uncertainty_init = %g, must be finite",
                             (double)o->uncertainty_init);
        if (o->uncertainty_adam != 0 && o->uncertainty_adam != 1)
            return mtft__err(MTFT_ERANGE, "balancer options: uncertainty_adam = %d, must be 0 (SGD) or 1 (Adam)",
                             o->uncertainty_adam);
        break;
    case MTFT_BALANCE_DWA:
        FIN_POS(dwa_temperature);
        if (o->dwa_period < 1)
            return mtft__err(MTFT_ERANGE, "balancer options: dwa_period = %d, must be >= 1", o->dwa_period);
        break;
    case MTFT_BALANCE_FAMO:
        FIN_POS(famo_lr);
        FIN_NONNEG(famo_gamma);
        break;
    case MTFT_BALANCE_COBA:
        if (o->coba_warmup < 0)
            return mtft__err(MTFT_ERANGE, "balancer options: coba_warmup = %d, must be >= 0", o->coba_warmup);
        if (o->coba_window < 2 || o->coba_window > (1 << 20))
            return mtft__err(MTFT_ERANGE, "balancer options: coba_window = %d, must be in [2, 1048576]",
                             o->coba_window);
        FIN_POS(coba_tau);
        if (o->coba_normalize != 0 && o->coba_normalize != 1)
            return mtft__err(MTFT_ERANGE, "balancer options: coba_normalize = %d, must be 0 or 1", o->coba_normalize);
        break;
    case MTFT_BALANCE_CAGRAD:
        if (!(isfinite(o->cagrad_c) && o->cagrad_c >= 0.0f && o->cagrad_c < 1.0f))
            return mtft__err(MTFT_ERANGE, "balancer options: cagrad_c = %g, must be in [0, 1)", (double)o->cagrad_c);
        if (o->cagrad_rescale != 0 && o->cagrad_rescale != 1)
            return mtft__err(MTFT_ERANGE, "balancer options: cagrad_rescale = %d, must be 0 or 1", o->cagrad_rescale);
        break;
    case MTFT_BALANCE_GRADNORM:
        FIN_NONNEG(gradnorm_alpha);
        FIN_POS(gradnorm_lr);
        break;
    case MTFT_BALANCE_NASH_MTL:
        if (o->nash_max_iter < 1)
            return mtft__err(MTFT_ERANGE, "balancer options: nash_max_iter = %d, must be >= 1", o->nash_max_iter);
        break;
    case MTFT_BALANCE_MGDA_UB:
        if (o->mgda_norm < 0 || o->mgda_norm > 3)
            return mtft__err(MTFT_ERANGE, "balancer options: mgda_norm = %d, must be 0 (none), 1 (l2), 2 (loss) or 3 (loss+)",
                             o->mgda_norm);
        break;
    default: break;
    }
#undef FIN_POS
#undef FIN_NONNEG
    return MTFT_OK;
}

/* ---- lifetime ------------------------------------------------------------- */

static void dispose_fields(mtft_balancer *b) {
    void *ptrs[] = {b->static_w, b->weights, b->p, b->m, b->v, b->t, b->dwa_sum, b->dwa_cnt, b->dwa_l1, b->dwa_l2,
                    b->dwa_nhist, b->famo_prev, b->famo_prev_mask, b->cb_first, b->cb_has_first, b->cb_hstep,
                    b->cb_hval, b->cb_hcount, b->cb_mstep, b->cb_mval, b->cb_slope, b->cb_scount, b->cb_total,
                    b->cb_xy, b->gn_w, b->gn_init, b->gn_has_init, b->nash_alpha, b->dscr, b->uscr, b->fscr, b->iscr,
                    (void *)b->gscr};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) mtft__free(ptrs[i]);
}

static void *zalloc(size_t n, size_t size, int *fail) {
    void *p = mtft__calloc(n, size);
    if (!p) *fail = 1;
    return p;
}

/* Allocate and initialise a balancer with validated options (static weights
 * copied from o->static_weights). */
static int create(mtft_balancer **out, int K, const mtft_balancer_options *o) {
    mtft_balancer *b = mtft__calloc(1, sizeof *b);
    if (!b) return mtft__err(MTFT_ENOMEM, "balancer: out of memory");
    int fail = 0;
    size_t k = (size_t)K;
    b->o = *o;
    b->K = K;
    b->static_w = zalloc(k, sizeof(float), &fail);
    b->weights = zalloc(k, sizeof(float), &fail);
    mtft_balance_method m = o->method;
    if (m == MTFT_BALANCE_UNCERTAINTY || m == MTFT_BALANCE_FAMO) {
        b->p = zalloc(k, sizeof(double), &fail);
        b->m = zalloc(k, sizeof(double), &fail);
        b->v = zalloc(k, sizeof(double), &fail);
        b->t = zalloc(k, sizeof(uint64_t), &fail);
    }
    if (m == MTFT_BALANCE_DWA) {
        b->dwa_sum = zalloc(k, sizeof(double), &fail);
        b->dwa_cnt = zalloc(k, sizeof(uint64_t), &fail);
        b->dwa_l1 = zalloc(k, sizeof(double), &fail);
        b->dwa_l2 = zalloc(k, sizeof(double), &fail);
        b->dwa_nhist = zalloc(k, sizeof(uint64_t), &fail);
    }
    if (m == MTFT_BALANCE_FAMO) {
        b->famo_prev = zalloc(k, sizeof(double), &fail);
        b->famo_prev_mask = zalloc(k, 1, &fail);
    }
    if (m == MTFT_BALANCE_COBA) {
        size_t N = (size_t)o->coba_window;
        b->N = o->coba_window;
        b->cb_first = zalloc(k, sizeof(double), &fail);
        b->cb_has_first = zalloc(k, 1, &fail);
        b->cb_hstep = zalloc(k * N, sizeof(int64_t), &fail);
        b->cb_hval = zalloc(k * N, sizeof(double), &fail);
        b->cb_hcount = zalloc(k, sizeof(uint64_t), &fail);
        b->cb_mstep = zalloc(N, sizeof(int64_t), &fail);
        b->cb_mval = zalloc(N, sizeof(double), &fail);
        b->cb_slope = zalloc(k * N, sizeof(double), &fail);
        b->cb_scount = zalloc(k, sizeof(uint64_t), &fail);
        b->cb_xy = zalloc(2 * N, sizeof(double), &fail);
    }
    if (m == MTFT_BALANCE_GRADNORM) {
        b->gn_w = zalloc(k, sizeof(float), &fail);
        b->gn_init = zalloc(k, sizeof(float), &fail);
        b->gn_has_init = zalloc(k, 1, &fail);
    }
    if (m == MTFT_BALANCE_NASH_MTL) b->nash_alpha = zalloc(k, sizeof(float), &fail);
    b->dscr = zalloc(8 * k, sizeof(double), &fail);
    b->uscr = zalloc(2 * k, 1, &fail);
    if (mtft_balancer_is_gradient_level(m)) {
        b->fscr = zalloc(4 * k, sizeof(float), &fail);
        b->iscr = zalloc(k, sizeof(int), &fail);
        b->gscr = zalloc(k, sizeof(float *), &fail);
    }
    if (fail) {
        dispose_fields(b);
        mtft__free(b);
        return mtft__err(MTFT_ENOMEM, "balancer: out of memory for %d tasks", K);
    }
    for (int i = 0; i < K; i++) b->static_w[i] = o->static_weights ? o->static_weights[i] : 1.0f;
    b->o.static_weights = b->static_w;
    mtft_rng_seed(&b->rng, o->seed);

    /* initial parameters and the weights the method starts from */
    for (int i = 0; i < K; i++) {
        double w = 1.0;
        switch (m) {
        case MTFT_BALANCE_STATIC: w = b->static_w[i]; break;
        case MTFT_BALANCE_UNCERTAINTY:
            b->p[i] = o->uncertainty_init;
            w = exp(-b->p[i]);
            break;
        case MTFT_BALANCE_FAMO:
        case MTFT_BALANCE_COBA:
        case MTFT_BALANCE_MFTCODER_TOKEN:
        case MTFT_BALANCE_MFTCODER_SAMPLE: w = 1.0 / K; break;
        case MTFT_BALANCE_MFTCODER_TASK: {
            double s = 0.0;
            for (int j = 0; j < K; j++) s += b->static_w[j];
            w = b->static_w[i] / s;
            break;
        }
        case MTFT_BALANCE_GRADNORM: b->gn_w[i] = 1.0f; break;
        default: break;
        }
        b->weights[i] = (float)w;
    }
    b->cb_last_df = 1.0;
    *out = b;
    return MTFT_OK;
}

int mtft_balancer_new(mtft_balancer **out, int n_tasks, const mtft_balancer_options *opts) {
    MTFT_CHECK_ARG(out != NULL);
    *out = NULL;
    if (n_tasks < 1 || n_tasks > 1024)
        return mtft__err(MTFT_EINVAL, "balancer: n_tasks = %d, must be in [1, 1024]", n_tasks);
    mtft_balancer_options d = MTFT_BALANCER_OPTIONS_INIT;
    const mtft_balancer_options *o = opts ? opts : &d;
    int rc = check_options(o, n_tasks);
    if (rc < 0) return rc;
    return create(out, n_tasks, o);
}

void mtft_balancer_free(mtft_balancer *b) {
    if (!b) return;
    dispose_fields(b);
    mtft__free(b);
}

mtft_balance_method mtft_balancer_method(const mtft_balancer *b) { return b ? b->o.method : MTFT_BALANCE_EQUAL; }
int mtft_balancer_n_tasks(const mtft_balancer *b) { return b ? b->K : 0; }
const float *mtft_balancer_weights(const mtft_balancer *b) { return b ? b->weights : NULL; }
uint64_t mtft_balancer_steps(const mtft_balancer *b) { return b ? b->step : 0; }

/* ---- helpers ---------------------------------------------------------------- */

/* out[k] = scale * softmax over present tasks of x (0 for absent). */
static void softmax_present(int K, const double *x, const uint8_t *present, double scale, double *out) {
    double mx = -INFINITY, sum = 0.0;
    for (int k = 0; k < K; k++)
        if (present[k] && x[k] > mx) mx = x[k];
    for (int k = 0; k < K; k++) {
        out[k] = present[k] ? exp(x[k] - mx) : 0.0;
        sum += out[k];
    }
    for (int k = 0; k < K; k++) out[k] = out[k] * scale / sum;
}

/* One Adam step (PyTorch's torch.optim.Adam: L2 weight decay added to the
 * gradient, betas 0.9/0.999, eps 1e-8, bias correction with a per-task
 * step count so masked tasks keep their own count). */
static void adam_step(mtft_balancer *b, int k, double g, double lr, double weight_decay) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    g += weight_decay * b->p[k];
    b->t[k] += 1;
    b->m[k] = b1 * b->m[k] + (1.0 - b1) * g;
    b->v[k] = b2 * b->v[k] + (1.0 - b2) * g * g;
    double mhat = b->m[k] / (1.0 - pow(b1, (double)b->t[k]));
    double vhat = b->v[k] / (1.0 - pow(b2, (double)b->t[k]));
    b->p[k] -= lr * mhat / (sqrt(vhat) + eps);
}

/* Ordinary least-squares slope of y on x (n points); 0 when n < 2 or all x
 * are equal. Centred sums in double. */
static double ols_slope(int n, const double *x, const double *y) {
    if (n < 2) return 0.0;
    double mx = 0.0, my = 0.0;
    for (int i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= n;
    my /= n;
    double sxy = 0.0, sxx = 0.0;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
    }
    return sxx > 0.0 ? sxy / sxx : 0.0;
}

/* Slope over the ring entries (step, value) whose step is in
 * (now - N, now]. count = values ever pushed. */
static double ring_slope(int N, const int64_t *steps, const double *vals, uint64_t count, int64_t now, double *xs,
                         double *ys) {
    int n = 0;
    uint64_t have = count < (uint64_t)N ? count : (uint64_t)N;
    for (uint64_t i = 0; i < have; i++) {
        uint64_t idx = (count - have + i) % (uint64_t)N;
        if (steps[idx] > now - N) {
            xs[n] = (double)steps[idx];
            ys[n] = vals[idx];
            n++;
        }
    }
    return ols_slope(n, xs, ys);
}

/* ---- the FAMO logits update -------------------------------------------------- */

/* Authors' FAMO.update (Cranial-XIX/FAMO famo.py), with min_losses = 0:
 *   delta_k = log(L_old_k + 1e-8) - log(L_new_k + 1e-8)
 *   d = (d softmax(xi) / d xi)^T delta,  i.e.  d_k = z_k (delta_k - sum_j z_j delta_j),  z = softmax(xi)
 *   xi <- Adam(lr = famo_lr, weight_decay = famo_gamma) step on gradient d
 * restricted to the tasks present in both calls (softmax over those). */
static void famo_update(mtft_balancer *b, const float *new_losses, const uint8_t *mask2) {
    int K = b->K;
    uint8_t *S = b->uscr + K; /* uscr[0..K) holds the step's present flags */
    double *z = b->dscr + 6 * (size_t)K, *delta = b->dscr + 7 * (size_t)K;
    int n = 0;
    for (int k = 0; k < K; k++) {
        S[k] = (uint8_t)(b->famo_prev_mask[k] && (!mask2 || mask2[k]));
        n += S[k];
    }
    b->famo_pending = 0;
    if (n == 0) return;
    softmax_present(K, b->p, S, 1.0, z);
    double zd = 0.0;
    for (int k = 0; k < K; k++) {
        if (!S[k]) continue;
        delta[k] = log(b->famo_prev[k] + 1e-8) - log((double)new_losses[k] + 1e-8);
        zd += z[k] * delta[k];
    }
    for (int k = 0; k < K; k++) {
        if (!S[k]) continue;
        double d = z[k] * (delta[k] - zd);
        adam_step(b, k, d, b->o.famo_lr, b->o.famo_gamma);
    }
}

int mtft_balancer_update_after_step(mtft_balancer *b, const float *new_losses, const uint8_t *mask) {
    MTFT_CHECK_ARG(b != NULL);
    if (b->o.method != MTFT_BALANCE_FAMO) return MTFT_OK;
    MTFT_CHECK_ARG(new_losses != NULL);
    if (!b->famo_pending)
        return mtft__err(MTFT_ESTATE, "balancer famo: update_after_step called without a step since the last update");
    for (int k = 0; k < b->K; k++) {
        if (!b->famo_prev_mask[k] || (mask && !mask[k])) continue;
        if (!(isfinite(new_losses[k]) && new_losses[k] >= 0.0f))
            return mtft__err(MTFT_ENUMERIC, "balancer famo: new_losses[%d] = %g, must be finite and >= 0", k,
                             (double)new_losses[k]);
    }
    famo_update(b, new_losses, mask);
    return MTFT_OK;
}

/* ---- CoBa ------------------------------------------------------------------------ */

/* CoBa (Gong et al. 2024, arXiv:2410.06741, Sec. 3 "Methodology": RCS, ACS
 * and DF; the formulas below follow the authors' reference code,
 * codefuse-ai/MFTCoder mftcoder_accelerate/src/utils/loss_utils.py,
 * CoBaStatus.compute_per_task_weight, whose defaults we take). Per step t,
 * with l_i the validation loss of task i (divided by its first value when
 * coba_normalize, as the code divides by the loss at the beginning):
 *   alpha_i(t)   slope of the least-squares line through task i's points
 *                in the last N steps; alpha_max(t) the same for the curve
 *                max_i l_i
 *   RCS_i(t) = softmax_i( K alpha_i(t) / sum_j |alpha_j(t)| )
 *   ACS_i(t) = softmax_i( -N_i alpha_i(t) / sum_{s in last N_i} |alpha_i(s)| )
 *   DF(t)    = min( t' softmax_s( -tau t' alpha_max(s) / sum_{r<=t'} |alpha_max(r)| )_{s=t'}, 1 )
 *              over the t' slopes of the max curve since the warm-up
 *   w_i(t)   = DF(t) RCS_i(t) + (1 - DF(t)) ACS_i(t)
 * K counts the present tasks; weights sum to 1 over them. During the first
 * coba_warmup steps the weights are uniform (1/K) while history accrues.
 * Differences from the authors' code: the code does not clamp DF and then
 * applies softmax(K w) and a floor of 1/(10K) to w; we clamp DF to 1 so that
 * w is a convex combination of RCS and ACS, and return it as is. A slope
 * needs 2 points; with fewer it is 0. */
static void coba_weights(mtft_balancer *b, const double *val, const uint8_t *present, int Kp, double *w) {
    int K = b->K, N = b->N;
    int64_t now = (int64_t)b->step;
    /* record this step */
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) {
        if (!present[k]) continue;
        if (b->o.coba_normalize && !b->cb_has_first[k]) {
            b->cb_first[k] = val[k];
            b->cb_has_first[k] = 1;
        }
        double y = b->o.coba_normalize ? val[k] / b->cb_first[k] : val[k];
        uint64_t idx = b->cb_hcount[k] % (uint64_t)N;
        b->cb_hstep[(size_t)k * N + idx] = now;
        b->cb_hval[(size_t)k * N + idx] = y;
        b->cb_hcount[k]++;
        if (y > mx) mx = y;
    }
    uint64_t midx = b->cb_mcount % (uint64_t)N;
    b->cb_mstep[midx] = now;
    b->cb_mval[midx] = mx;
    b->cb_mcount++;

    if (now < b->o.coba_warmup) {
        for (int k = 0; k < K; k++) w[k] = present[k] ? 1.0 / Kp : 0.0;
        return;
    }
    /* dscr: [0, K) w, [K, 2K) val (the caller's), then alpha, rcs, acs, x */
    double *alpha = b->dscr + 2 * (size_t)K, *rcs = b->dscr + 3 * (size_t)K, *acs = b->dscr + 4 * (size_t)K,
           *x = b->dscr + 5 * (size_t)K;
    double *xs = b->cb_xy, *ys = b->cb_xy + N;
    double asum = 0.0;
    for (int k = 0; k < K; k++) {
        alpha[k] = 0.0;
        if (!present[k]) continue;
        alpha[k] = ring_slope(N, b->cb_hstep + (size_t)k * N, b->cb_hval + (size_t)k * N, b->cb_hcount[k], now, xs, ys);
        asum += fabs(alpha[k]);
        uint64_t sidx = b->cb_scount[k] % (uint64_t)N;
        b->cb_slope[(size_t)k * N + sidx] = alpha[k];
        b->cb_scount[k]++;
    }
    double amax = ring_slope(N, b->cb_mstep, b->cb_mval, b->cb_mcount, now, xs, ys);
    b->cb_total[b->cb_tcount++] = amax; /* capacity ensured by the caller */

    /* RCS */
    for (int k = 0; k < K; k++) x[k] = (present[k] && asum > 0.0) ? Kp * alpha[k] / asum : 0.0;
    softmax_present(K, x, present, 1.0, rcs);
    /* ACS: each task's slope against its own last N slopes */
    for (int k = 0; k < K; k++) {
        x[k] = 0.0;
        if (!present[k]) continue;
        uint64_t cnt = b->cb_scount[k], have = cnt < (uint64_t)N ? cnt : (uint64_t)N;
        double s = 0.0;
        for (uint64_t i = 0; i < have; i++) s += fabs(b->cb_slope[(size_t)k * N + (cnt - have + i) % (uint64_t)N]);
        if (s > 0.0) x[k] = -(double)have * alpha[k] / s;
    }
    softmax_present(K, x, present, 1.0, acs);
    /* DF over all max-curve slopes so far */
    uint64_t T = b->cb_tcount;
    double df = 1.0;
    if (T > 0) {
        double s = 0.0, mxu = -INFINITY, den = 0.0;
        for (uint64_t i = 0; i < T; i++) s += fabs(b->cb_total[i]);
        /* u_i = -tau T a_i / s (0 when s == 0); softmax, take the last */
        for (uint64_t i = 0; i < T; i++) {
            double u = s > 0.0 ? -b->o.coba_tau * (double)T * b->cb_total[i] / s : 0.0;
            if (u > mxu) mxu = u;
        }
        for (uint64_t i = 0; i < T; i++) {
            double u = s > 0.0 ? -b->o.coba_tau * (double)T * b->cb_total[i] / s : 0.0;
            den += exp(u - mxu);
        }
        double ulast = s > 0.0 ? -b->o.coba_tau * (double)T * b->cb_total[T - 1] / s : 0.0;
        df = (double)T * exp(ulast - mxu) / den;
        if (df > 1.0) df = 1.0;
    }
    b->cb_last_df = df;
    for (int k = 0; k < K; k++) w[k] = present[k] ? df * rcs[k] + (1.0 - df) * acs[k] : 0.0;
}

/* ---- the step ------------------------------------------------------------------- */

static int validate_counts(const char *what, const int64_t *c, const uint8_t *present, int K) {
    if (!c) return mtft__err(MTFT_EINVAL, "balancer: input.%s is required by this method", what);
    int64_t sum = 0;
    for (int k = 0; k < K; k++) {
        if (!present[k]) continue;
        if (c[k] < 0) return mtft__err(MTFT_ERANGE, "balancer: input.%s[%d] = %lld, must be >= 0", what, k, (long long)c[k]);
        sum += c[k];
    }
    if (sum <= 0) return mtft__err(MTFT_ERANGE, "balancer: input.%s sum to 0 over the present tasks", what);
    return MTFT_OK;
}

int mtft_balancer_step(mtft_balancer *b, const mtft_balance_input *in, mtft_balance_output *out) {
    MTFT_CHECK_ARG(b != NULL);
    MTFT_CHECK_ARG(in != NULL);
    MTFT_CHECK_ARG(in->losses != NULL);
    int K = b->K;
    mtft_balance_method m = b->o.method;
    const char *mname = method_names[m];
    uint8_t *present = b->uscr;
    int Kp = 0;
    for (int k = 0; k < K; k++) {
        present[k] = (uint8_t)(!in->mask || in->mask[k]);
        Kp += present[k];
    }
    if (Kp == 0) return mtft__err(MTFT_EINVAL, "balancer %s: no task is present this step (mask all 0)", mname);
    int positive = m == MTFT_BALANCE_GLS;
    int nonneg = m == MTFT_BALANCE_FAMO;
    for (int k = 0; k < K; k++) {
        if (!present[k]) continue;
        float L = in->losses[k];
        if (!isfinite(L)) return mtft__err(MTFT_ENUMERIC, "balancer %s: losses[%d] = %g is not finite", mname, k, (double)L);
        if (positive && !(L > 0.0f))
            return mtft__err(MTFT_ERANGE, "balancer %s: losses[%d] = %g, must be > 0 (geometric mean)", mname, k, (double)L);
        if (nonneg && !(L >= 0.0f))
            return mtft__err(MTFT_ERANGE, "balancer %s: losses[%d] = %g, must be >= 0 (log of the loss)", mname, k, (double)L);
    }

    double *w = b->dscr; /* dscr layout: see coba_weights */
    int rc = MTFT_OK;
    if (mtft_balancer_is_gradient_level(m)) {
        if (!in->grads) return mtft__err(MTFT_EINVAL, "balancer %s: input.grads is required (gradient-level method)", mname);
        if (in->n_params < 1)
            return mtft__err(MTFT_EINVAL, "balancer %s: input.n_params = %lld, must be >= 1", mname, (long long)in->n_params);
        if (!out || !out->grad)
            return mtft__err(MTFT_EINVAL, "balancer %s: output.grad (n_params floats) is required (gradient-level method)", mname);
        for (int k = 0; k < K; k++)
            if (present[k] && !in->grads[k])
                return mtft__err(MTFT_EINVAL, "balancer %s: grads[%d] is NULL but task %d is present", mname, k, k);
        rc = mtft_balance__grad_step(b, in, present, out->grad);
        if (rc < 0) return rc;
        b->step++;
        if (out->weights) memcpy(out->weights, b->weights, sizeof(float) * (size_t)K);
        return MTFT_OK;
    }

    /* method-specific validation before any state changes */
    const double *val = NULL;
    double *valbuf = b->dscr + K;
    switch (m) {
    case MTFT_BALANCE_MFTCODER_TOKEN: rc = validate_counts("n_tokens", in->n_tokens, present, K); break;
    case MTFT_BALANCE_MFTCODER_SAMPLE: rc = validate_counts("n_samples", in->n_samples, present, K); break;
    case MTFT_BALANCE_MFTCODER_TASK: {
        double s = 0.0;
        for (int k = 0; k < K; k++)
            if (present[k]) s += b->static_w[k];
        if (!(s > 0.0))
            rc = mtft__err(MTFT_ERANGE, "balancer mftcoder_task: the static weights of the present tasks sum to 0");
        break;
    }
    case MTFT_BALANCE_COBA: {
        const float *v = in->val_losses ? in->val_losses : in->losses;
        const char *vn = in->val_losses ? "val_losses" : "losses";
        for (int k = 0; k < K; k++) {
            valbuf[k] = 0.0;
            if (!present[k]) continue;
            if (!isfinite(v[k]))
                return mtft__err(MTFT_ENUMERIC, "balancer coba: %s[%d] = %g is not finite", vn, k, (double)v[k]);
            if (b->o.coba_normalize && !b->cb_has_first[k] && !(v[k] > 0.0f))
                return mtft__err(MTFT_ERANGE, "balancer coba: first %s[%d] = %g, must be > 0 (coba_normalize divides by it)",
                                 vn, k, (double)v[k]);
            valbuf[k] = v[k];
        }
        val = valbuf;
        /* room for this step's max-curve slope, before any state changes */
        if ((int64_t)b->step >= b->o.coba_warmup && b->cb_tcount == b->cb_tcap) {
            uint64_t cap = b->cb_tcap ? b->cb_tcap * 2 : 64;
            double *nt = mtft__realloc(b->cb_total, sizeof(double) * (size_t)cap);
            if (!nt) return mtft__err(MTFT_ENOMEM, "balancer coba: out of memory for the slope history (%llu entries)",
                                      (unsigned long long)cap);
            b->cb_total = nt;
            b->cb_tcap = cap;
        }
        break;
    }
    case MTFT_BALANCE_FAMO:
        break;
    default: break;
    }
    if (rc < 0) return rc;

    switch (m) {
    case MTFT_BALANCE_EQUAL:
        for (int k = 0; k < K; k++) w[k] = present[k] ? 1.0 : 0.0;
        break;
    case MTFT_BALANCE_STATIC:
        for (int k = 0; k < K; k++) w[k] = present[k] ? b->static_w[k] : 0.0;
        break;
    case MTFT_BALANCE_MFTCODER_TASK:
    case MTFT_BALANCE_MFTCODER_TOKEN:
    case MTFT_BALANCE_MFTCODER_SAMPLE: {
        /* MFTCoder loss_func_mft: case1 = sum of token losses / all tokens
         * = sum_k (n_k / N) L_k with L_k the token mean of task k; case2 =
         * mean over samples of per-sample means = sum_k (s_k / S) L_k with
         * L_k the mean over task k's samples of their per-sample means;
         * case3 = sum_k u_k L_k / sum_k u_k over the tasks in the batch. */
        double s = 0.0;
        for (int k = 0; k < K; k++) {
            w[k] = 0.0;
            if (!present[k]) continue;
            w[k] = m == MTFT_BALANCE_MFTCODER_TOKEN    ? (double)in->n_tokens[k]
                   : m == MTFT_BALANCE_MFTCODER_SAMPLE ? (double)in->n_samples[k]
                                                       : (double)b->static_w[k];
            s += w[k];
        }
        for (int k = 0; k < K; k++) w[k] /= s;
        break;
    }
    case MTFT_BALANCE_UNCERTAINTY:
        /* Kendall et al. 2018, regression form: total = sum_k exp(-s_k) L_k + s_k
         * (s_k = log sigma_k^2; the 1/2 factors dropped, as most code does).
         * Weights use the current s; then s takes one optimiser step on
         * dtotal/ds_k = -exp(-s_k) L_k + 1. */
        for (int k = 0; k < K; k++) {
            w[k] = 0.0;
            if (!present[k]) continue;
            w[k] = exp(-b->p[k]);
            double g = -w[k] * in->losses[k] + 1.0;
            if (b->o.uncertainty_adam)
                adam_step(b, k, g, b->o.uncertainty_lr, 0.0);
            else
                b->p[k] -= b->o.uncertainty_lr * g;
        }
        break;
    case MTFT_BALANCE_DWA: {
        /* Liu et al. 2019 (MTAN), eq. 7: w_k = K exp(r_k / T) / sum_i exp(r_i / T),
         * r_k = Lbar_k(n-1) / Lbar_k(n-2), Lbar = mean loss of a period of
         * dwa_period steps; r_k = 1 while fewer than two periods are
         * complete for task k (so all weights are 1 at the start). */
        double *r = b->dscr + 2 * (size_t)K;
        for (int k = 0; k < K; k++) {
            r[k] = 1.0;
            if (present[k] && b->dwa_nhist[k] >= 2 && b->dwa_l2[k] > 0.0) r[k] = b->dwa_l1[k] / b->dwa_l2[k];
            r[k] /= b->o.dwa_temperature;
        }
        softmax_present(K, r, present, (double)Kp, w);
        for (int k = 0; k < K; k++) {
            if (!present[k]) continue;
            b->dwa_sum[k] += in->losses[k];
            b->dwa_cnt[k]++;
        }
        if (++b->dwa_in_period >= (uint64_t)b->o.dwa_period) {
            for (int k = 0; k < K; k++) {
                if (!b->dwa_cnt[k]) continue;
                b->dwa_l2[k] = b->dwa_l1[k];
                b->dwa_l1[k] = b->dwa_sum[k] / (double)b->dwa_cnt[k];
                b->dwa_nhist[k]++;
                b->dwa_sum[k] = 0.0;
                b->dwa_cnt[k] = 0;
            }
            b->dwa_in_period = 0;
        }
        break;
    }
    case MTFT_BALANCE_RLW: {
        /* Lin et al. 2021: w = K softmax(z), z_k ~ N(0, 1) fresh each step.
         * All K normals are drawn every step so that the stream does not
         * depend on the mask; absent tasks' draws are discarded. */
        double *z = b->dscr + 2 * (size_t)K;
        for (int k = 0; k < K; k++) z[k] = mtft_rng_normal(&b->rng);
        softmax_present(K, z, present, (double)Kp, w);
        break;
    }
    case MTFT_BALANCE_GLS: {
        /* Chennupati et al. 2019: total = (prod_k L_k)^(1/K); its gradient is
         * sum_k total / (K L_k) grad L_k, so w_k = total / (K L_k). */
        double lsum = 0.0;
        for (int k = 0; k < K; k++)
            if (present[k]) lsum += log((double)in->losses[k]);
        double total = exp(lsum / Kp);
        for (int k = 0; k < K; k++) w[k] = present[k] ? total / (Kp * (double)in->losses[k]) : 0.0;
        break;
    }
    case MTFT_BALANCE_FAMO: {
        /* Liu et al. 2023 (authors' get_weighted_loss): z = softmax(xi),
         * D_k = L_k + 1e-8, loss = sum_k z_k log D_k / c with c = sum_i z_i / D_i
         * held constant, so the gradient weights are c_k = (z_k / D_k) / c,
         * which sum to 1. First, the pending update of the previous step
         * with this step's losses when update_after_step was not called. */
        if (b->famo_pending) famo_update(b, in->losses, present);
        double *z = b->dscr + 2 * (size_t)K, c = 0.0;
        softmax_present(K, b->p, present, 1.0, z);
        for (int k = 0; k < K; k++) {
            w[k] = present[k] ? z[k] / ((double)in->losses[k] + 1e-8) : 0.0;
            c += w[k];
        }
        for (int k = 0; k < K; k++) {
            w[k] /= c;
            b->famo_prev[k] = present[k] ? in->losses[k] : 0.0;
            b->famo_prev_mask[k] = present[k];
        }
        b->famo_pending = 1;
        break;
    }
    case MTFT_BALANCE_COBA: coba_weights(b, val, present, Kp, w); break;
    default: return mtft__err(MTFT_ERROR, "balancer: method %d not handled", (int)m);
    }
    for (int k = 0; k < K; k++) b->weights[k] = (float)w[k];
    b->step++;
    if (out && out->weights) memcpy(out->weights, b->weights, sizeof(float) * (size_t)K);
    return MTFT_OK;
}

/* ---- state save / load --------------------------------------------------------------
 * Layout (little endian):
 *   0  8 bytes magic "MTFTBAL\0"
 *   8  u32 format version (1)
 *  12  u32 method
 *  16  u32 n_tasks
 *  20  u32 0 (reserved)
 *  24  u64 payload bytes
 *  32  payload
 *  ..  u64 FNV-1a 64 of everything before it
 * The payload is written and read by the same field walk (ser_state). */

#define STATE_MAGIC "MTFTBAL"
#define STATE_VERSION 1u
#define STATE_HEADER 32u

typedef struct ser {
    int load;
    uint8_t *out;      /* save: destination or NULL to count */
    const uint8_t *in; /* load: source */
    size_t pos, len;   /* load: len = payload end */
    int err;
} ser;

static void ser_bytes(ser *s, void *p, size_t n) {
    if (s->err) return;
    if (s->load) {
        if (s->len - s->pos < n) {
            s->err = 1;
            return;
        }
        memcpy(p, s->in + s->pos, n);
    } else if (s->out) {
        memcpy(s->out + s->pos, p, n);
    }
    s->pos += n;
}

static void ser_u64(ser *s, uint64_t *x) {
    uint8_t b8[8];
    if (!s->load)
        for (int i = 0; i < 8; i++) b8[i] = (uint8_t)(*x >> (8 * i));
    ser_bytes(s, b8, 8);
    if (s->load && !s->err) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v |= (uint64_t)b8[i] << (8 * i);
        *x = v;
    }
}

static void ser_u32(ser *s, uint32_t *x) {
    uint64_t v = *x;
    ser_u64(s, &v); /* keep the walk simple: 8 bytes each */
    if (s->load && !s->err) {
        if (v > UINT32_MAX) s->err = 2;
        *x = (uint32_t)v;
    }
}

static void ser_f64(ser *s, double *x) {
    uint64_t u;
    memcpy(&u, x, 8);
    ser_u64(s, &u);
    if (s->load && !s->err) memcpy(x, &u, 8);
}

static void ser_f32(ser *s, float *x) {
    double d = *x;
    ser_f64(s, &d);
    if (s->load && !s->err) *x = (float)d;
}

static void ser_i64(ser *s, int64_t *x) {
    uint64_t u = (uint64_t)*x;
    ser_u64(s, &u);
    if (s->load && !s->err) *x = (int64_t)u;
}

static void ser_u8s(ser *s, uint8_t *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t v = x[i];
        ser_u32(s, &v);
        if (s->load && !s->err) {
            if (v > 1) s->err = 2;
            x[i] = (uint8_t)v;
        }
    }
}

#define SER_ARR(fn, arr, n)                                           \
    do {                                                              \
        for (size_t i_ = 0; i_ < (size_t)(n); i_++) fn(s, &(arr)[i_]); \
    } while (0)

static void ser_state(ser *s, mtft_balancer *b) {
    size_t K = (size_t)b->K;
    ser_u64(s, &b->step);
    SER_ARR(ser_f32, b->weights, K);
    SER_ARR(ser_u64, b->rng.s, 4);
    mtft_balance_method m = b->o.method;
    if (b->p) {
        SER_ARR(ser_f64, b->p, K);
        SER_ARR(ser_f64, b->m, K);
        SER_ARR(ser_f64, b->v, K);
        SER_ARR(ser_u64, b->t, K);
    }
    if (m == MTFT_BALANCE_DWA) {
        SER_ARR(ser_f64, b->dwa_sum, K);
        SER_ARR(ser_u64, b->dwa_cnt, K);
        SER_ARR(ser_f64, b->dwa_l1, K);
        SER_ARR(ser_f64, b->dwa_l2, K);
        SER_ARR(ser_u64, b->dwa_nhist, K);
        ser_u64(s, &b->dwa_in_period);
    }
    if (m == MTFT_BALANCE_FAMO) {
        uint32_t pend = (uint32_t)b->famo_pending;
        ser_u32(s, &pend);
        if (s->load && !s->err) {
            if (pend > 1) s->err = 2;
            b->famo_pending = (int)pend;
        }
        SER_ARR(ser_f64, b->famo_prev, K);
        ser_u8s(s, b->famo_prev_mask, K);
    }
    if (m == MTFT_BALANCE_COBA) {
        size_t N = (size_t)b->N;
        uint32_t n32 = (uint32_t)b->N;
        ser_u32(s, &n32);
        if (s->load && !s->err && n32 != (uint32_t)b->N) s->err = 3; /* window differs from the options */
        SER_ARR(ser_f64, b->cb_first, K);
        ser_u8s(s, b->cb_has_first, K);
        SER_ARR(ser_i64, b->cb_hstep, K * N);
        SER_ARR(ser_f64, b->cb_hval, K * N);
        SER_ARR(ser_u64, b->cb_hcount, K);
        SER_ARR(ser_i64, b->cb_mstep, N);
        SER_ARR(ser_f64, b->cb_mval, N);
        ser_u64(s, &b->cb_mcount);
        SER_ARR(ser_f64, b->cb_slope, K * N);
        SER_ARR(ser_u64, b->cb_scount, K);
        ser_f64(s, &b->cb_last_df);
        uint64_t T = b->cb_tcount;
        ser_u64(s, &T);
        if (s->load && !s->err) {
            if (T > (s->len - s->pos) / 8) {
                s->err = 1;
                return;
            }
            if (T > b->cb_tcap) {
                double *nt = mtft__realloc(b->cb_total, sizeof(double) * (size_t)(T ? T : 1));
                if (!nt) {
                    s->err = 4;
                    return;
                }
                b->cb_total = nt;
                b->cb_tcap = T;
            }
            b->cb_tcount = T;
        }
        SER_ARR(ser_f64, b->cb_total, T);
    }
    if (m == MTFT_BALANCE_GRADNORM) {
        SER_ARR(ser_f32, b->gn_w, K);
        SER_ARR(ser_f32, b->gn_init, K);
        ser_u8s(s, b->gn_has_init, K);
    }
    if (m == MTFT_BALANCE_NASH_MTL) SER_ARR(ser_f32, b->nash_alpha, K);
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static size_t payload_size(const mtft_balancer *b) {
    ser s = {0, NULL, NULL, 0, 0, 0};
    ser_state(&s, (mtft_balancer *)b); /* counting only: nothing is written */
    return s.pos;
}

size_t mtft_balancer_state_size(const mtft_balancer *b) {
    if (!b) return 0;
    return STATE_HEADER + payload_size(b) + 8;
}

int mtft_balancer_state_save(const mtft_balancer *b, void *buf, size_t cap, size_t *written) {
    MTFT_CHECK_ARG(b != NULL);
    MTFT_CHECK_ARG(buf != NULL);
    size_t pl = payload_size(b), total = STATE_HEADER + pl + 8;
    if (written) *written = 0;
    if (cap < total)
        return mtft__err(MTFT_ERANGE, "balancer state_save: buffer of %zu bytes, the state needs %zu "
                         "(mtft_balancer_state_size)", cap, total);
    uint8_t *p = buf;
    memset(p, 0, STATE_HEADER);
    memcpy(p, STATE_MAGIC, sizeof STATE_MAGIC);
    put_u32(p + 8, STATE_VERSION);
    put_u32(p + 12, (uint32_t)b->o.method);
    put_u32(p + 16, (uint32_t)b->K);
    put_u64(p + 24, (uint64_t)pl);
    ser s = {0, p + STATE_HEADER, NULL, 0, 0, 0};
    ser_state(&s, (mtft_balancer *)b);
    put_u64(p + STATE_HEADER + pl, fnv1a(p, STATE_HEADER + pl));
    if (written) *written = total;
    return MTFT_OK;
}

int mtft_balancer_state_load(mtft_balancer *b, const void *buf, size_t len) {
    MTFT_CHECK_ARG(b != NULL);
    MTFT_CHECK_ARG(buf != NULL);
    const uint8_t *p = buf;
    if (len < STATE_HEADER + 8)
        return mtft__err(MTFT_EFORMAT, "balancer state_load: %zu bytes, shorter than the %u-byte header and checksum",
                         len, STATE_HEADER + 8);
    if (memcmp(p, STATE_MAGIC, sizeof STATE_MAGIC) != 0)
        return mtft__err(MTFT_EFORMAT, "balancer state_load: bad magic (bytes 0-7 are not \"MTFTBAL\\0\"): not a balancer state");
    uint32_t ver = get_u32(p + 8), meth = get_u32(p + 12), nt = get_u32(p + 16);
    uint64_t pl = get_u64(p + 24);
    if (ver != STATE_VERSION)
        return mtft__err(MTFT_EFORMAT, "balancer state_load: format version %u, this library reads version %u", ver,
                         STATE_VERSION);
    if (pl > len - STATE_HEADER - 8)
        return mtft__err(MTFT_EFORMAT, "balancer state_load: truncated: header says %llu payload bytes, only %zu present",
                         (unsigned long long)pl, len - STATE_HEADER - 8);
    if (pl != len - STATE_HEADER - 8)
        return mtft__err(MTFT_EFORMAT, "balancer state_load: %zu bytes given, the header describes %llu",
                         len, (unsigned long long)(pl + STATE_HEADER + 8));
    uint64_t want = get_u64(p + STATE_HEADER + pl), got = fnv1a(p, STATE_HEADER + (size_t)pl);
    if (want != got)
        return mtft__err(MTFT_EFORMAT, "balancer state_load: checksum mismatch (stored %016llx, computed %016llx): corrupt data",
                         (unsigned long long)want, (unsigned long long)got);
    if (meth != (uint32_t)b->o.method)
        return mtft__err(MTFT_EINVAL, "balancer state_load: state of method '%s', this balancer is '%s'",
                         mtft_balance_method_name((mtft_balance_method)meth), method_names[b->o.method]);
    if (nt != (uint32_t)b->K)
        return mtft__err(MTFT_EINVAL, "balancer state_load: state for %u tasks, this balancer has %d", nt, b->K);

    mtft_balancer *tmp = NULL;
    int rc = create(&tmp, b->K, &b->o);
    if (rc < 0) return rc;
    ser s = {1, NULL, p + STATE_HEADER, 0, (size_t)pl, 0};
    ser_state(&s, tmp);
    if (!s.err && s.pos != (size_t)pl) s.err = 5;
    if (s.err) {
        mtft_balancer_free(tmp);
        switch (s.err) {
        case 1: return mtft__err(MTFT_EFORMAT, "balancer state_load: payload ends early (%llu bytes)", (unsigned long long)pl);
        case 3:
            return mtft__err(MTFT_EINVAL, "balancer state_load: state saved with another coba_window than this balancer's %d",
                             b->N);
        case 4: return mtft__err(MTFT_ENOMEM, "balancer state_load: out of memory");
        case 5:
            return mtft__err(MTFT_EFORMAT, "balancer state_load: %llu payload bytes, %zu expected for this method",
                             (unsigned long long)pl, s.pos);
        default: return mtft__err(MTFT_EFORMAT, "balancer state_load: a field is out of range (corrupt data)");
        }
    }
    /* swap the loaded fields in; the options (and static weights) stay */
    dispose_fields(b);
    *b = *tmp;
    b->o.static_weights = b->static_w;
    mtft__free(tmp);
    return MTFT_OK;
}
