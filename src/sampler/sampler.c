/* The task mixture sampler: rate strategies, annealing, masks, overrides,
 * per-task permutations with epoch accounting, and batch composition.
 * State save/load is in sampler_state.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sampler/sampler_impl.h"

static const char *strategy_name(int s) {
    switch (s) {
    case MTFT_SAMPLER_PROPORTIONAL: return "proportional";
    case MTFT_SAMPLER_CAPPED: return "capped";
    case MTFT_SAMPLER_TEMPERATURE: return "temperature";
    case MTFT_SAMPLER_UNIFORM: return "uniform";
    case MTFT_SAMPLER_WEIGHTS: return "weights";
    default: return "?";
    }
}

static int check_sizes(const char *where, int n_tasks, const int64_t *sizes) {
    if (n_tasks < 1) return mtft__err(MTFT_EINVAL, "%s: n_tasks must be >= 1 (got %d)", where, n_tasks);
    if (!sizes) return mtft__err(MTFT_EINVAL, "%s: sizes is NULL", where);
    for (int k = 0; k < n_tasks; k++)
        if (sizes[k] <= 0)
            return mtft__err(MTFT_EINVAL, "%s: sizes[%d] = %lld: every task needs at least one example", where, k,
                             (long long)sizes[k]);
    return MTFT_OK;
}

/* Rates of one distribution, normalised. `where` names it in messages
 * ("sampler options: start"). Sizes are already checked. */
static int dist_rates(const char *where, int n, const int64_t *sizes, const mtft_sampler_dist *d, double *out) {
    double sum = 0.0;
    switch (d->strategy) {
    case MTFT_SAMPLER_PROPORTIONAL:
        for (int k = 0; k < n; k++) out[k] = (double)sizes[k];
        break;
    case MTFT_SAMPLER_CAPPED:
        if (!(d->cap > 0.0) || !isfinite(d->cap))
            return mtft__err(MTFT_EINVAL, "%s.cap = %g: the capped strategy needs a finite cap > 0 (in examples)",
                             where, d->cap);
        for (int k = 0; k < n; k++) out[k] = (double)sizes[k] < d->cap ? (double)sizes[k] : d->cap;
        break;
    case MTFT_SAMPLER_TEMPERATURE: {
        if (!(d->temperature > 0.0) || !isfinite(d->temperature))
            return mtft__err(MTFT_EINVAL,
                             "%s.temperature = %g: the temperature strategy needs a finite T > 0 (alpha = 1/T)",
                             where, d->temperature);
        /* n_k^(1/T) scaled by n_max^(-1/T): same ratios, no overflow for small T */
        int64_t nmax = 0;
        for (int k = 0; k < n; k++)
            if (sizes[k] > nmax) nmax = sizes[k];
        double inv_t = 1.0 / d->temperature;
        for (int k = 0; k < n; k++) out[k] = pow((double)sizes[k] / (double)nmax, inv_t);
        break;
    }
    case MTFT_SAMPLER_UNIFORM:
        for (int k = 0; k < n; k++) out[k] = 1.0;
        break;
    case MTFT_SAMPLER_WEIGHTS:
        if (!d->weights) return mtft__err(MTFT_EINVAL, "%s.weights is NULL: the weights strategy needs %d weights",
                                          where, n);
        for (int k = 0; k < n; k++) {
            if (!isfinite(d->weights[k]) || d->weights[k] < 0.0)
                return mtft__err(MTFT_EINVAL, "%s.weights[%d] = %g: weights must be finite and >= 0", where, k,
                                 d->weights[k]);
            out[k] = d->weights[k];
        }
        break;
    default:
        return mtft__err(MTFT_EINVAL,
                         "%s.strategy = %d: unknown strategy (proportional 0, capped 1, temperature 2, "
                         "uniform 3, weights 4)",
                         where, d->strategy);
    }
    for (int k = 0; k < n; k++) sum += out[k];
    if (!(sum > 0.0) || !isfinite(sum))
        return mtft__err(MTFT_EINVAL, "%s (%s): the rates sum to %g; they need a finite positive sum", where,
                         strategy_name(d->strategy), sum);
    for (int k = 0; k < n; k++) out[k] /= sum;
    return MTFT_OK;
}

int mtft_sampler_compute_rates(int n_tasks, const int64_t *sizes, const mtft_sampler_dist *d, double *rates) {
    MTFT_CHECK_ARG(d);
    MTFT_CHECK_ARG(rates);
    int rc = check_sizes("mtft_sampler_compute_rates", n_tasks, sizes);
    if (rc < 0) return rc;
    return dist_rates("mtft_sampler_compute_rates: dist", n_tasks, sizes, d, rates);
}

void mtft_sampler__shuffle(int64_t *perm, int64_t n, mtft_rng *rng) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mtft_rng_below(rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* splitmix64's finaliser: decorrelates the per-task seeds from the main one. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void mtft_sampler_free(mtft_sampler *s) {
    if (!s) return;
    if (s->tasks)
        for (int k = 0; k < s->n_tasks; k++) mtft__free(s->tasks[k].perm);
    mtft__free(s->tasks);
    mtft__free(s->p_start);
    mtft__free(s->p_end);
    mtft__free(s->override_rates);
    mtft__free(s->scratch);
    mtft__free(s);
}

int mtft_sampler_new(mtft_sampler **out, int n_tasks, const int64_t *sizes, const mtft_sampler_options *opts) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    mtft_sampler_options def = MTFT_SAMPLER_OPTIONS_INIT;
    if (!opts) opts = &def;
    if (opts->version < 1 || opts->version > MTFT_SAMPLER_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "sampler options: unknown version %d (this library knows 1..%d)",
                         opts->version, MTFT_SAMPLER_OPTIONS_VERSION);
    int rc = check_sizes("sampler", n_tasks, sizes);
    if (rc < 0) return rc;
    if (opts->batch_mode != MTFT_SAMPLER_MIXED && opts->batch_mode != MTFT_SAMPLER_SINGLE_TASK)
        return mtft__err(MTFT_EINVAL, "sampler options: batch_mode = %d: expected MIXED (0) or SINGLE_TASK (1)",
                         opts->batch_mode);
    if (opts->epoch_policy != MTFT_SAMPLER_RESHUFFLE && opts->epoch_policy != MTFT_SAMPLER_STOP)
        return mtft__err(MTFT_EINVAL, "sampler options: epoch_policy = %d: expected RESHUFFLE (0) or STOP (1)",
                         opts->epoch_policy);
    if (opts->anneal_steps < 0)
        return mtft__err(MTFT_EINVAL, "sampler options: anneal_steps = %lld: must be >= 0 (0: no annealing)",
                         (long long)opts->anneal_steps);
    for (int k = 0; k < n_tasks; k++)
        if ((uint64_t)sizes[k] > SIZE_MAX / sizeof(int64_t))
            return mtft__err(MTFT_ENOMEM, "sampler: sizes[%d] = %lld: too many examples for a permutation", k,
                             (long long)sizes[k]);

    mtft__init_once();
    mtft_sampler *s = mtft__calloc(1, sizeof *s);
    if (!s) return mtft__err(MTFT_ENOMEM, "sampler: out of memory");
    s->n_tasks = n_tasks;
    s->batch_mode = opts->batch_mode;
    s->epoch_policy = opts->epoch_policy;
    s->anneal_steps = opts->anneal_steps;
    s->p_start = mtft__calloc((size_t)n_tasks, sizeof(double));
    s->p_end = mtft__calloc((size_t)n_tasks, sizeof(double));
    s->override_rates = mtft__calloc((size_t)n_tasks, sizeof(double));
    s->scratch = mtft__calloc((size_t)n_tasks, sizeof(double));
    s->tasks = mtft__calloc((size_t)n_tasks, sizeof(mtft_sampler_task));
    if (!s->p_start || !s->p_end || !s->override_rates || !s->scratch || !s->tasks) {
        rc = mtft__err(MTFT_ENOMEM, "sampler: out of memory for %d tasks", n_tasks);
        goto fail;
    }
    rc = dist_rates("sampler options: start", n_tasks, sizes, &opts->start, s->p_start);
    if (rc < 0) goto fail;
    if (opts->anneal_steps > 0) {
        rc = dist_rates("sampler options: end", n_tasks, sizes, &opts->end, s->p_end);
        if (rc < 0) goto fail;
    } else {
        memcpy(s->p_end, s->p_start, (size_t)n_tasks * sizeof(double));
    }
    mtft_rng_seed(&s->rng, opts->seed);
    for (int k = 0; k < n_tasks; k++) {
        mtft_sampler_task *t = &s->tasks[k];
        t->size = sizes[k];
        t->active = 1;
        t->perm = mtft__malloc((size_t)sizes[k] * sizeof(int64_t));
        if (!t->perm) {
            rc = mtft__err(MTFT_ENOMEM, "sampler: out of memory for the permutation of task %d (%lld examples)", k,
                           (long long)sizes[k]);
            goto fail;
        }
        mtft_rng_seed(&t->rng, mix64(opts->seed ^ mix64(0x7a5c0000ULL + (uint64_t)k)));
        t->perm_rng = t->rng;
        mtft_sampler__shuffle(t->perm, t->size, &t->rng);
    }
    *out = s;
    return MTFT_OK;
fail:
    mtft_sampler_free(s);
    return rc;
}

/* Schedule or override rates for the current step, before masking. */
static void base_rates(const mtft_sampler *s, double *out) {
    int n = s->n_tasks;
    if (s->has_override) {
        memcpy(out, s->override_rates, (size_t)n * sizeof(double));
    } else if (s->anneal_steps > 0) {
        double f = s->step >= s->anneal_steps ? 1.0 : (double)s->step / (double)s->anneal_steps;
        for (int k = 0; k < n; k++) out[k] = (1.0 - f) * s->p_start[k] + f * s->p_end[k];
    } else {
        memcpy(out, s->p_start, (size_t)n * sizeof(double));
    }
}

/* Effective rates: base restricted to active, unstopped tasks, renormalised.
 * Returns the mass before renormalisation (0: nothing can be drawn; out is
 * then all zeros). */
static double effective_rates(const mtft_sampler *s, double *out) {
    base_rates(s, out);
    double sum = 0.0;
    for (int k = 0; k < s->n_tasks; k++) {
        if (!s->tasks[k].active || s->tasks[k].stopped) out[k] = 0.0;
        sum += out[k];
    }
    if (sum > 0.0)
        for (int k = 0; k < s->n_tasks; k++) out[k] /= sum;
    return sum;
}

/* Draw a task from normalised rates (mass > 0): the first k whose
 * cumulative rate exceeds u; a task of rate 0 is never chosen. */
static int pick_task(mtft_sampler *s, const double *rates) {
    double u = mtft_rng_uniform_f64(&s->rng);
    double cum = 0.0;
    int last = -1;
    for (int k = 0; k < s->n_tasks; k++) {
        if (rates[k] <= 0.0) continue;
        cum += rates[k];
        last = k;
        if (u < cum) return k;
    }
    return last; /* rounding left u >= cum: the last task with mass */
}

/* Hand out the next example of task k and do the epoch accounting. */
static int64_t take(mtft_sampler *s, int k) {
    mtft_sampler_task *t = &s->tasks[k];
    int64_t idx = t->perm[t->cursor++];
    t->drawn++;
    if (t->cursor == t->size) {
        t->epochs++;
        if (s->epoch_policy == MTFT_SAMPLER_RESHUFFLE) {
            t->perm_rng = t->rng;
            mtft_sampler__shuffle(t->perm, t->size, &t->rng);
            t->cursor = 0;
        } else {
            t->stopped = 1;
        }
    }
    return idx;
}

int mtft_sampler_finished(const mtft_sampler *s) {
    if (!s) return 0;
    for (int k = 0; k < s->n_tasks; k++)
        if (!s->tasks[k].stopped) return 0;
    return 1;
}

static int no_mass_error(const mtft_sampler *s) {
    char list[256];
    size_t len = 0;
    list[0] = '\0';
    for (int k = 0; k < s->n_tasks && len < sizeof list - 16; k++) {
        const mtft_sampler_task *t = &s->tasks[k];
        if (t->active && !t->stopped) {
            int w = snprintf(list + len, sizeof list - len, "%s%d", len ? ", " : "", k);
            if (w > 0) len += (size_t)w;
        }
    }
    return mtft__err(MTFT_ERANGE,
                     "sampler: step %lld: the available tasks (active and not stopped: %s) have total rate 0; "
                     "change the mask or the rates",
                     (long long)s->step, len ? list : "none");
}

int mtft_sampler_next_batch(mtft_sampler *s, int batch_size, int32_t *task_ids, int64_t *example_idx) {
    MTFT_CHECK_ARG(s);
    MTFT_CHECK_ARG(task_ids);
    MTFT_CHECK_ARG(example_idx);
    if (batch_size < 1) return mtft__err(MTFT_EINVAL, "sampler: batch_size = %d: must be >= 1", batch_size);
    if (mtft_sampler_finished(s))
        return mtft__err(MTFT_ESTATE, "sampler: end of data: all %d tasks are stopped (after %lld batches)",
                         s->n_tasks, (long long)s->step);
    double *rates = s->scratch;
    if (!(effective_rates(s, rates) > 0.0)) return no_mass_error(s);

    int filled = 0;
    if (s->batch_mode == MTFT_SAMPLER_SINGLE_TASK) {
        int k = pick_task(s, rates);
        while (filled < batch_size && !s->tasks[k].stopped) {
            task_ids[filled] = (int32_t)k;
            example_idx[filled] = take(s, k);
            filled++;
        }
    } else {
        while (filled < batch_size) {
            int k = pick_task(s, rates);
            task_ids[filled] = (int32_t)k;
            example_idx[filled] = take(s, k);
            filled++;
            if (s->tasks[k].stopped && !(effective_rates(s, rates) > 0.0)) break;
        }
    }
    for (int r = filled; r < batch_size; r++) {
        task_ids[r] = -1;
        example_idx[r] = -1;
    }
    s->step++;
    if (s->has_override && s->override_left > 0 && --s->override_left == 0) s->has_override = 0;
    return filled;
}

int mtft_sampler_rates(const mtft_sampler *s, double *rates_out) {
    MTFT_CHECK_ARG(s);
    MTFT_CHECK_ARG(rates_out);
    effective_rates(s, rates_out);
    return MTFT_OK;
}

int mtft_sampler_set_rates(mtft_sampler *s, const double *rates, int64_t n_steps) {
    MTFT_CHECK_ARG(s);
    if (!rates) {
        s->has_override = 0;
        s->override_left = 0;
        return MTFT_OK;
    }
    if (n_steps < 0)
        return mtft__err(MTFT_EINVAL, "mtft_sampler_set_rates: n_steps = %lld: must be >= 0 (0: until cleared)",
                         (long long)n_steps);
    double sum = 0.0;
    for (int k = 0; k < s->n_tasks; k++) {
        if (!isfinite(rates[k]) || rates[k] < 0.0)
            return mtft__err(MTFT_EINVAL, "mtft_sampler_set_rates: rates[%d] = %g: rates must be finite and >= 0", k,
                             rates[k]);
        sum += rates[k];
    }
    if (!(sum > 0.0) || !isfinite(sum))
        return mtft__err(MTFT_EINVAL, "mtft_sampler_set_rates: the %d rates sum to %g; they need a finite positive sum",
                         s->n_tasks, sum);
    for (int k = 0; k < s->n_tasks; k++) s->override_rates[k] = rates[k] / sum;
    s->has_override = 1;
    s->override_left = n_steps;
    return MTFT_OK;
}

int mtft_sampler_set_mask(mtft_sampler *s, const int *active) {
    MTFT_CHECK_ARG(s);
    if (active) {
        int any = 0;
        for (int k = 0; k < s->n_tasks; k++) any |= active[k] != 0;
        if (!any) return mtft__err(MTFT_EINVAL, "mtft_sampler_set_mask: the mask leaves none of the %d tasks active",
                                   s->n_tasks);
    }
    for (int k = 0; k < s->n_tasks; k++) s->tasks[k].active = active ? active[k] != 0 : 1;
    return MTFT_OK;
}

int mtft_sampler_get_task_stats(const mtft_sampler *s, int task, mtft_sampler_task_stats *out) {
    MTFT_CHECK_ARG(s);
    MTFT_CHECK_ARG(out);
    if (task < 0 || task >= s->n_tasks)
        return mtft__err(MTFT_ERANGE, "mtft_sampler_get_task_stats: task %d out of range (the sampler has %d tasks)", task,
                         s->n_tasks);
    const mtft_sampler_task *t = &s->tasks[task];
    out->size = t->size;
    out->epochs = t->epochs;
    out->position = t->cursor;
    out->drawn = t->drawn;
    out->stopped = t->stopped;
    out->active = t->active;
    return MTFT_OK;
}

int mtft_sampler_n_tasks(const mtft_sampler *s) { return s ? s->n_tasks : 0; }

int64_t mtft_sampler_step(const mtft_sampler *s) { return s ? s->step : 0; }
