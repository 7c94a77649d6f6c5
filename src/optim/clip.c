/* Global gradient norm, clipping (torch.nn.utils.clip_grad_norm_) and the
 * gradient accumulation average, over lists of parameter groups. */
#include <math.h>

#include "optim_impl.h"

int mtft_optim__check_groups(const char *what, mtft_param_group *const *groups, int n_groups) {
    if (n_groups < 0 || (n_groups > 0 && !groups))
        return mtft__err(MTFT_EINVAL, "%s: invalid group list (%d groups)", what, n_groups);
    for (int i = 0; i < n_groups; i++) {
        if (!groups[i]) return mtft__err(MTFT_EINVAL, "%s: group %d is NULL", what, i);
        if (!groups[i]->allocated)
            return mtft__err(MTFT_ESTATE, "%s: group '%s' has no data yet", what, groups[i]->name);
        for (int j = 0; j < i; j++)
            if (groups[j] == groups[i])
                return mtft__err(MTFT_EINVAL, "%s: group '%s' is listed twice", what, groups[i]->name);
    }
    return MTFT_OK;
}

/* Sum of squares in double over a fixed number of chunks, so that the result
 * has the same bits for any thread count. */
#define SQ_CHUNKS 64
static double sum_sq(const float *g, int64_t n) {
    if (n <= 65536) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
        return s;
    }
    double part[SQ_CHUNKS];
    int64_t per = (n + SQ_CHUNKS - 1) / SQ_CHUNKS;
#pragma omp parallel for
    for (int c = 0; c < SQ_CHUNKS; c++) {
        int64_t i0 = (int64_t)c * per, i1 = i0 + per < n ? i0 + per : n;
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) s += (double)g[i] * (double)g[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < SQ_CHUNKS; c++) s += part[c];
    return s;
}

double mtft_optim__grad_sq(mtft_param_group *const *groups, int n_groups) {
    double s = 0.0;
    for (int gi = 0; gi < n_groups; gi++) {
        mtft_param_group *pg = groups[gi];
        if (!mtft_optim__active(pg)) continue;
        for (int ti = 0; ti < pg->n; ti++) {
            const mtft_tensor *t = pg->tensors[ti];
            s += sum_sq(pg->grad + t->offset, mtft__numel(t));
        }
    }
    return s;
}

int mtft_optim__nonfinite_err(const char *what, mtft_param_group *const *groups, int n_groups, double norm) {
    for (int gi = 0; gi < n_groups; gi++) {
        mtft_param_group *pg = groups[gi];
        if (!mtft_optim__active(pg)) continue;
        for (int ti = 0; ti < pg->n; ti++) {
            const mtft_tensor *t = pg->tensors[ti];
            const float *g = pg->grad + t->offset;
            int64_t n = mtft__numel(t);
            for (int64_t i = 0; i < n; i++)
                if (!isfinite(g[i]))
                    return mtft__err(MTFT_ENUMERIC,
                                     "%s: gradient norm is %g: group '%s' tensor '%s' element %lld is %g", what,
                                     norm, pg->name, t->name, (long long)i, (double)g[i]);
        }
    }
    /* finite elements whose squares overflowed the double sum: impossible for
     * float inputs, kept for completeness */
    return mtft__err(MTFT_ENUMERIC, "%s: gradient norm is %g", what, norm);
}

int mtft_grad_norm(mtft_param_group *const *groups, int n_groups, double *out) {
    MTFT_CHECK_ARG(out);
    int rc = mtft_optim__check_groups("grad_norm", groups, n_groups);
    if (rc < 0) return rc;
    *out = sqrt(mtft_optim__grad_sq(groups, n_groups));
    return MTFT_OK;
}

/* g *= s, or g /= s when div (the exactly rounded mean for accumulation). */
static void scale_all(mtft_param_group *const *groups, int n_groups, float s, int div) {
    for (int gi = 0; gi < n_groups; gi++) {
        mtft_param_group *pg = groups[gi];
        if (!mtft_optim__active(pg)) continue;
        for (int ti = 0; ti < pg->n; ti++) {
            const mtft_tensor *t = pg->tensors[ti];
            float *g = pg->grad + t->offset;
            int64_t n = mtft__numel(t);
#pragma omp parallel for if (n > 65536)
            for (int64_t i = 0; i < n; i++) g[i] = div ? g[i] / s : g[i] * s;
        }
    }
}

int mtft_clip_grad_norm(mtft_param_group *const *groups, int n_groups, float max_norm, double *total_norm) {
    int rc = mtft_optim__check_groups("clip_grad_norm", groups, n_groups);
    if (rc < 0) return rc;
    if (!(max_norm > 0.0f))
        return mtft__err(MTFT_EINVAL, "clip_grad_norm: max_norm %g must be > 0", (double)max_norm);
    double norm = sqrt(mtft_optim__grad_sq(groups, n_groups));
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm)) return mtft_optim__nonfinite_err("clip_grad_norm", groups, n_groups, norm);
    double coef = (double)max_norm / (norm + 1e-6);
    if (coef < 1.0) scale_all(groups, n_groups, (float)coef, 0);
    return MTFT_OK;
}

int mtft_grad_scale(mtft_param_group *const *groups, int n_groups, float scale) {
    int rc = mtft_optim__check_groups("grad_scale", groups, n_groups);
    if (rc < 0) return rc;
    if (!isfinite(scale)) return mtft__err(MTFT_EINVAL, "grad_scale: scale %g is not finite", (double)scale);
    scale_all(groups, n_groups, scale, 0);
    return MTFT_OK;
}

int mtft_grad_accum_average(mtft_param_group *const *groups, int n_groups, int n_accum) {
    int rc = mtft_optim__check_groups("grad_accum_average", groups, n_groups);
    if (rc < 0) return rc;
    if (n_accum < 1) return mtft__err(MTFT_EINVAL, "grad_accum_average: n_accum %d must be >= 1", n_accum);
    if (n_accum > 1) scale_all(groups, n_groups, (float)n_accum, 1);
    return MTFT_OK;
}
