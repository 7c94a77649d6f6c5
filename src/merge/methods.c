/* The merge methods on flat per-tensor task vectors (mtft_merge_deltas).
 *
 * Notation: T models, tensor of n entries, tau_t[k] the task vector of model
 * t, w_t its weight, lambda the scale of the merged vector. Sums and means
 * are accumulated in double. Every method returns out = lambda * tau_m. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "merge_impl.h"

static const char *const k_methods[] = {"linear", "task_arithmetic", "ties", "dare_linear",
                                        "dare_ties", "breadcrumbs", "pcb"};
#define N_METHODS ((int)(sizeof k_methods / sizeof k_methods[0]))

const char *mtft_merge_method_name(mtft_merge_method m) {
    return (int)m >= 0 && (int)m < N_METHODS ? k_methods[m] : "?";
}

int mtft_merge_method_from_name(const char *name, mtft_merge_method *out) {
    MTFT_CHECK_ARG(name && out);
    for (int i = 0; i < N_METHODS; i++)
        if (!strcmp(name, k_methods[i])) {
            *out = (mtft_merge_method)i;
            return MTFT_OK;
        }
    return mtft__err(MTFT_ENOTFOUND,
                     "unknown merge method '%s' (expected one of: linear, task_arithmetic, ties, dare_linear, "
                     "dare_ties, breadcrumbs, pcb)",
                     name);
}

mtft_merge_model_params mtft_merge_default_params(mtft_merge_method m) {
    mtft_merge_model_params p = {1.0f, 1.0f, 0.01f, 0.9f};
    if (m == MTFT_MERGE_TIES) p.density = 0.2f;
    if (m == MTFT_MERGE_DARE_LINEAR || m == MTFT_MERGE_DARE_TIES || m == MTFT_MERGE_PCB) p.density = 0.1f;
    return p;
}

/* ---- ordering by magnitude ------------------------------------------------------ */

typedef struct {
    double key;
    int64_t idx;
} keyed;

/* Descending key, then ascending index: a total order, so equal magnitudes
 * are resolved the same way on every platform. */
static int cmp_desc(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key > y->key) return -1;
    if (x->key < y->key) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* order[0..n) = indices sorted by key descending (ties: lower index first). */
static int sort_desc(const double *key, int64_t n, keyed *tmp) {
    for (int64_t k = 0; k < n; k++) {
        tmp[k].key = key[k];
        tmp[k].idx = k;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_desc);
    return MTFT_OK;
}

static int64_t count_of(double frac, int64_t n) {
    double c = floor(frac * (double)n + 1e-9); /* floor, robust to 0.3 * 10 = 2.9999... */
    if (c < 0) c = 0;
    if (c > (double)n) c = (double)n;
    return (int64_t)c;
}

/* ---- the methods ---------------------------------------------------------------------- */

/* sum_t w_t v_t, divided by sum_t w_t when normalize. */
static int weighted_sum(int T, int64_t n, const float *const *v, const mtft_merge_model_params *p, float lambda,
                        int normalize, float *out) {
    double wsum = 0;
    for (int t = 0; t < T; t++) wsum += p[t].weight;
    if (normalize && wsum == 0)
        return mtft__err(MTFT_ERANGE, "merge: normalize needs a non-zero sum of weights (it is 0)");
    double div = normalize ? wsum : 1.0;
    for (int64_t k = 0; k < n; k++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += (double)p[t].weight * v[t][k];
        out[k] = (float)((double)lambda * s / div);
    }
    return MTFT_OK;
}

/* TIES steps 2-3 on (already sparsified) vectors v_t:
 *   elect  gamma[k] = sgn(sum_t w_t v_t[k])            (the sign of the total mass)
 *   mean   tau_m[k] = sum_{t in A_k} w_t v_t[k] / sum_{t in A_k} w_t,
 *          A_k = {t : v_t[k] != 0 and sgn(v_t[k]) = gamma[k]}   (0 when A_k is empty). */
static void elect_disjoint_mean(int T, int64_t n, const float *const *v, const mtft_merge_model_params *p,
                                float lambda, float *out) {
    for (int64_t k = 0; k < n; k++) {
        double mass = 0;
        for (int t = 0; t < T; t++) mass += (double)p[t].weight * v[t][k];
        double num = 0, den = 0;
        if (mass != 0) {
            for (int t = 0; t < T; t++) {
                float x = v[t][k];
                if (x != 0 && ((x > 0) == (mass > 0))) {
                    num += (double)p[t].weight * x;
                    den += p[t].weight;
                }
            }
        }
        out[k] = den != 0 ? (float)((double)lambda * num / den) : 0.0f;
    }
}

/* TIES trim: keep the floor(density * n) entries of largest |v| (ties: lower
 * index), zero the rest. */
static void trim_topk(const float *v, int64_t n, float density, float *dst, double *key, keyed *tmp) {
    int64_t keep = count_of(density, n);
    for (int64_t k = 0; k < n; k++) key[k] = fabs((double)v[k]);
    sort_desc(key, n, tmp);
    memset(dst, 0, (size_t)n * sizeof *dst);
    for (int64_t r = 0; r < keep; r++) dst[tmp[r].idx] = v[tmp[r].idx];
}

/* DARE: m_k ~ Bernoulli(1 - p) from mtft_rng_hash_uniform(stream, k) (drop
 * when u < p), v~ = m * v / (1 - p), p = 1 - density. */
static void dare(const float *v, int64_t n, float density, uint64_t stream, float *dst) {
    float p = 1.0f - density;
    double inv = 1.0 / (double)density;
    for (int64_t k = 0; k < n; k++) {
        float u = mtft_rng_hash_uniform(stream, (uint64_t)k);
        dst[k] = u < p ? 0.0f : (float)((double)v[k] * inv);
    }
}

/* Breadcrumbs: in the order of |v| descending, drop the first floor(beta n)
 * (outliers) and the last floor(gamma n) (small perturbations). */
static void breadcrumbs(const float *v, int64_t n, float beta, float gamma, float *dst, double *key, keyed *tmp) {
    int64_t top = count_of(beta, n), bottom = count_of(gamma, n);
    for (int64_t k = 0; k < n; k++) key[k] = fabs((double)v[k]);
    sort_desc(key, n, tmp);
    memset(dst, 0, (size_t)n * sizeof *dst);
    for (int64_t r = top; r < n - bottom; r++) dst[tmp[r].idx] = v[tmp[r].idx];
}

/* Min-max normalisation over the n entries: (x - min) / (max - min); all
 * zeros when max == min. */
static void minmax(double *x, int64_t n) {
    double lo = x[0], hi = x[0];
    for (int64_t k = 1; k < n; k++) {
        if (x[k] < lo) lo = x[k];
        if (x[k] > hi) hi = x[k];
    }
    double d = hi - lo;
    for (int64_t k = 0; k < n; k++) x[k] = d > 0 ? (x[k] - lo) / d : 0.0;
}

/* Softmax over the n entries, in place. */
static void softmax(double *x, int64_t n) {
    double mx = x[0], s = 0;
    for (int64_t k = 1; k < n; k++)
        if (x[k] > mx) mx = x[k];
    for (int64_t k = 0; k < n; k++) s += (x[k] = exp(x[k] - mx));
    for (int64_t k = 0; k < n; k++) x[k] /= s;
}

/* PCB-merging (Du et al. 2024, "Parameter Competition Balancing for Model
 * Merging", Sec. 3), per tensor, T tasks:
 *   intra-balancing  b_intra_i = Softmax(T * Norm(tau_i (.) tau_i))        (over the n entries)
 *   inter-balancing  b_inter_i = sum_j Softmax(Norm(tau_i (.) tau_j))     (j = 1..T, i included)
 *   balance          b_i = b_intra_i (.) b_inter_i
 *   drop             keep the top m = floor(density n) scores of b_i (drop ratio r = 1 - density),
 *   rescale          s_i = (b_i - lo_i) / (hi_i - lo_i) on kept entries, 0 on dropped ones, where
 *                    hi_i = max b_i and lo_i = the largest dropped score (0 when none is dropped),
 *                    as the reference code clamps at the quantile and min-max normalises;
 *   merge            tau_m = sum_i w_i s_i (.) tau_i / max(sum_i s_i, 1e-12).
 * Norm is min-max normalisation over the entries. The reference code also
 * clamps |tau| at its 0.01% quantiles and uses tanh(tau_i (.) sum_j tau_j)
 * for the inter term; we follow the paper's softmax form. */
static int pcb(int T, int64_t n, const float *const *v, const mtft_merge_model_params *p, float lambda, float *out) {
    double *score = mtft__malloc((size_t)T * (size_t)n * sizeof *score);
    double *tmp = mtft__malloc((size_t)n * sizeof *tmp);
    keyed *ord = mtft__malloc((size_t)n * sizeof *ord);
    if (!score || !tmp || !ord) {
        mtft__free(score);
        mtft__free(tmp);
        mtft__free(ord);
        return mtft__err(MTFT_ENOMEM, "merge pcb: out of memory");
    }
    for (int i = 0; i < T; i++) {
        double *b = score + (size_t)i * (size_t)n;
        for (int64_t k = 0; k < n; k++) b[k] = (double)v[i][k] * v[i][k];
        minmax(b, n);
        for (int64_t k = 0; k < n; k++) b[k] *= (double)T;
        softmax(b, n); /* b = intra */
        double *inter = tmp;
        double *acc = (double *)ord; /* reuse: n doubles fit in n keyed */
        memset(acc, 0, (size_t)n * sizeof *acc);
        for (int j = 0; j < T; j++) {
            for (int64_t k = 0; k < n; k++) inter[k] = (double)v[i][k] * v[j][k];
            minmax(inter, n);
            softmax(inter, n);
            for (int64_t k = 0; k < n; k++) acc[k] += inter[k];
        }
        for (int64_t k = 0; k < n; k++) b[k] *= acc[k];
        /* drop and rescale */
        int64_t m = count_of(p[i].density, n);
        memcpy(tmp, b, (size_t)n * sizeof *tmp);
        sort_desc(tmp, n, ord);
        double hi = ord[0].key, lo = m < n ? ord[m].key : 0.0;
        for (int64_t k = 0; k < n; k++) tmp[k] = 0;
        for (int64_t r = 0; r < m; r++) {
            double x = ord[r].key;
            tmp[ord[r].idx] = hi > lo ? (x - lo) / (hi - lo) : 1.0;
        }
        memcpy(b, tmp, (size_t)n * sizeof *b);
    }
    for (int64_t k = 0; k < n; k++) {
        double num = 0, den = 0;
        for (int i = 0; i < T; i++) {
            double s = score[(size_t)i * (size_t)n + (size_t)k];
            num += (double)p[i].weight * s * v[i][k];
            den += s;
        }
        out[k] = (float)((double)lambda * num / (den > 1e-12 ? den : 1e-12));
    }
    mtft__free(score);
    mtft__free(tmp);
    mtft__free(ord);
    return MTFT_OK;
}

static int check_params(mtft_merge_method method, int T, const mtft_merge_model_params *p, float lambda) {
    if (!isfinite(lambda)) return mtft__err(MTFT_ERANGE, "merge: lambda must be finite (got %g)", (double)lambda);
    for (int t = 0; t < T; t++) {
        if (!isfinite(p[t].weight))
            return mtft__err(MTFT_ERANGE, "merge: model %d: weight must be finite (got %g)", t, (double)p[t].weight);
        int uses_density = method == MTFT_MERGE_TIES || method == MTFT_MERGE_DARE_LINEAR ||
                           method == MTFT_MERGE_DARE_TIES || method == MTFT_MERGE_PCB;
        if (uses_density && !(p[t].density > 0 && p[t].density <= 1))
            return mtft__err(MTFT_ERANGE, "merge %s: model %d: density must be in (0, 1] (got %g)",
                             mtft_merge_method_name(method), t, (double)p[t].density);
        if (method == MTFT_MERGE_BREADCRUMBS &&
            !(p[t].beta >= 0 && p[t].gamma >= 0 && (double)p[t].beta + p[t].gamma <= 1.0 + 1e-7))
            return mtft__err(MTFT_ERANGE,
                             "merge breadcrumbs: model %d: beta (%g) and gamma (%g) must be >= 0 with beta + gamma "
                             "<= 1",
                             t, (double)p[t].beta, (double)p[t].gamma);
    }
    return MTFT_OK;
}

int mtft_merge_deltas(mtft_merge_method method, int n_models, int64_t n, const float *const *deltas,
                      const mtft_merge_model_params *params, float lambda, int normalize, uint64_t seed, float *out) {
    MTFT_CHECK_ARG(n_models >= 1 && n >= 0 && deltas && params && out);
    if ((int)method < 0 || (int)method >= N_METHODS)
        return mtft__err(MTFT_EINVAL, "merge: unknown method %d", (int)method);
    for (int t = 0; t < n_models; t++)
        if (!deltas[t]) return mtft__err(MTFT_EINVAL, "merge: deltas[%d] is NULL", t);
    int rc = check_params(method, n_models, params, lambda);
    if (rc < 0 || n == 0) return rc;
    if (method == MTFT_MERGE_LINEAR || method == MTFT_MERGE_TASK_ARITHMETIC)
        return weighted_sum(n_models, n, deltas, params, lambda, normalize, out);
    if (method == MTFT_MERGE_PCB) return pcb(n_models, n, deltas, params, lambda, out);

    /* sparsified copies */
    float *buf = mtft__malloc((size_t)n_models * (size_t)n * sizeof *buf);
    const float **v = mtft__malloc((size_t)n_models * sizeof *v);
    double *key = NULL;
    keyed *tmp = NULL;
    if (method != MTFT_MERGE_DARE_LINEAR && method != MTFT_MERGE_DARE_TIES) {
        key = mtft__malloc((size_t)n * sizeof *key);
        tmp = mtft__malloc((size_t)n * sizeof *tmp);
    }
    if (!buf || !v || (method != MTFT_MERGE_DARE_LINEAR && method != MTFT_MERGE_DARE_TIES && (!key || !tmp))) {
        rc = mtft__err(MTFT_ENOMEM, "merge %s: out of memory for %d x %lld floats", mtft_merge_method_name(method),
                       n_models, (long long)n);
        goto done;
    }
    for (int t = 0; t < n_models; t++) {
        float *dst = buf + (size_t)t * (size_t)n;
        v[t] = dst;
        switch (method) {
        case MTFT_MERGE_TIES: trim_topk(deltas[t], n, params[t].density, dst, key, tmp); break;
        case MTFT_MERGE_DARE_LINEAR:
        case MTFT_MERGE_DARE_TIES:
            dare(deltas[t], n, params[t].density, seed + (uint64_t)t * 0x9E3779B97F4A7C15ull, dst);
            break;
        default: breadcrumbs(deltas[t], n, params[t].beta, params[t].gamma, dst, key, tmp); break;
        }
    }
    if (method == MTFT_MERGE_TIES || method == MTFT_MERGE_DARE_TIES)
        elect_disjoint_mean(n_models, n, v, params, lambda, out);
    else
        rc = weighted_sum(n_models, n, v, params, lambda, normalize, out);
done:
    mtft__free(buf);
    mtft__free((void *)v);
    mtft__free(key);
    mtft__free(tmp);
    return rc;
}
