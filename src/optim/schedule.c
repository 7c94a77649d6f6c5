/* Learning-rate schedules as functions of the step (Hugging Face's
 * get_{constant,linear,cosine}_schedule_with_warmup and
 * get_cosine_with_min_lr_schedule_with_warmup); formulas in optim.h. */
#include <math.h>
#include <string.h>

#include "../core/core.h"
#include "mtft/optim.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

int mtft_schedule_check(const mtft_schedule_options *o) {
    MTFT_CHECK_ARG(o);
    if (o->version < 1 || o->version > MTFT_SCHEDULE_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "schedule options: unknown version %d", o->version);
    if (o->kind < MTFT_SCHEDULE_CONSTANT || o->kind > MTFT_SCHEDULE_COSINE)
        return mtft__err(MTFT_EINVAL, "schedule: unknown kind %d", o->kind);
    if (o->warmup_steps < 0)
        return mtft__err(MTFT_EINVAL, "schedule: warmup_steps %lld must be >= 0", (long long)o->warmup_steps);
    if (o->kind != MTFT_SCHEDULE_CONSTANT) {
        if (o->total_steps <= 0)
            return mtft__err(MTFT_EINVAL, "schedule: total_steps %lld must be > 0 for a decaying schedule",
                             (long long)o->total_steps);
        if (!(o->min_lr_ratio >= 0.0 && o->min_lr_ratio <= 1.0))
            return mtft__err(MTFT_EINVAL, "schedule: min_lr_ratio %g must be in [0, 1]", o->min_lr_ratio);
    }
    if (o->kind == MTFT_SCHEDULE_COSINE && !(o->num_cycles > 0.0 && isfinite(o->num_cycles)))
        return mtft__err(MTFT_EINVAL, "schedule: num_cycles %g must be > 0", o->num_cycles);
    return MTFT_OK;
}

int mtft_schedule_factor(const mtft_schedule_options *o, int64_t step, double *out) {
    MTFT_CHECK_ARG(o && out);
    int rc = mtft_schedule_check(o);
    if (rc < 0) return rc;
    if (step < 0) return mtft__err(MTFT_EINVAL, "schedule: step %lld must be >= 0", (long long)step);
    int64_t W = o->warmup_steps, N = o->total_steps;
    if (step < W) {
        *out = (double)step / (double)(W > 1 ? W : 1);
        return MTFT_OK;
    }
    double m = o->min_lr_ratio, span = (double)(N - W > 1 ? N - W : 1);
    switch (o->kind) {
    case MTFT_SCHEDULE_CONSTANT: *out = 1.0; break;
    case MTFT_SCHEDULE_LINEAR: {
        double f = (double)(N - step) / span;
        *out = m + (1.0 - m) * (f > 0.0 ? f : 0.0);
        break;
    }
    default: {
        double p = (double)(step - W) / span;
        if (p > 1.0) p = 1.0;
        double c = 0.5 * (1.0 + cos(M_PI * o->num_cycles * 2.0 * p));
        double f = m + (1.0 - m) * c;
        *out = f > 0.0 ? f : 0.0;
    }
    }
    return MTFT_OK;
}

int mtft_schedule_lr(const mtft_schedule_options *o, float base_lr, int64_t step, float *out) {
    MTFT_CHECK_ARG(out);
    if (!(base_lr >= 0.0f) || !isfinite(base_lr))
        return mtft__err(MTFT_EINVAL, "schedule: base lr %g must be >= 0", (double)base_lr);
    double f;
    int rc = mtft_schedule_factor(o, step, &f);
    if (rc < 0) return rc;
    *out = (float)((double)base_lr * f);
    return MTFT_OK;
}

int mtft_schedule_kind_from_name(const char *name, int *kind) {
    MTFT_CHECK_ARG(name && kind);
    static const char *const names[] = {"constant", "linear", "cosine"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *kind = i;
            return MTFT_OK;
        }
    return mtft__err(MTFT_ENOTFOUND, "schedule: unknown kind '%s' (constant, linear, cosine)", name);
}
