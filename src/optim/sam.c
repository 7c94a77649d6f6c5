/* SAM (Foret et al. 2021) on parameter groups as a two-phase API, and
 * per-task SAM toward task-based flat regions (Phan et al. 2022) on flat
 * per-task gradient vectors. The formulas are in include/mtft/optim.h and
 * docs/optim.md. */
#include <math.h>
#include <string.h>

#include "optim_impl.h"

/* ---- SAM ------------------------------------------------------------------- */
typedef struct sam_slot {
    mtft_param_group *pg;
    float *backup; /* the weights before perturb (pg->n_floats) */
    size_t cap;    /* floats allocated */
} sam_slot;

struct mtft_sam {
    int adaptive;
    int perturbed;
    int n_active; /* slots in use by the current perturbation */
    int cap;
    sam_slot *slots;
};

int mtft_sam_new(mtft_sam **out, const mtft_sam_options *o) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    mtft_sam_options def = MTFT_SAM_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version < 1 || o->version > MTFT_SAM_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "sam options: unknown version %d", o->version);
    mtft_sam *s = mtft__calloc(1, sizeof *s);
    if (!s) return MTFT_ENOMEM;
    s->adaptive = o->adaptive != 0;
    *out = s;
    return MTFT_OK;
}

void mtft_sam_free(mtft_sam *s) {
    if (!s) return;
    for (int i = 0; i < s->cap; i++) mtft__aligned_free(s->slots[i].backup);
    mtft__free(s->slots);
    mtft__free(s);
}

int mtft_sam_is_perturbed(const mtft_sam *s) { return s ? s->perturbed : 0; }

/* || |w| g ||^2 for adaptive SAM. */
static double adaptive_sq(mtft_param_group *const *groups, int n_groups) {
    double s = 0.0;
    for (int gi = 0; gi < n_groups; gi++) {
        mtft_param_group *pg = groups[gi];
        if (!mtft_optim__active(pg)) continue;
        for (int ti = 0; ti < pg->n; ti++) {
            const mtft_tensor *t = pg->tensors[ti];
            const float *g = pg->grad + t->offset, *w = pg->data + t->offset;
            int64_t n = mtft__numel(t);
            for (int64_t i = 0; i < n; i++) {
                double x = fabs((double)w[i]) * (double)g[i];
                s += x * x;
            }
        }
    }
    return s;
}

int mtft_sam_perturb(mtft_sam *s, mtft_param_group *const *groups, int n_groups, float rho, double *grad_norm) {
    MTFT_CHECK_ARG(s);
    int rc = mtft_optim__check_groups("sam_perturb", groups, n_groups);
    if (rc < 0) return rc;
    if (s->perturbed) return mtft__err(MTFT_ESTATE, "sam_perturb: already perturbed (call mtft_sam_restore first)");
    if (!(rho >= 0.0f) || !isfinite(rho)) return mtft__err(MTFT_EINVAL, "sam_perturb: rho %g must be >= 0", (double)rho);
    double norm = sqrt(s->adaptive ? adaptive_sq(groups, n_groups) : mtft_optim__grad_sq(groups, n_groups));
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) return mtft_optim__nonfinite_err("sam_perturb", groups, n_groups, norm);
    /* all memory first, so that a failure changes no weight */
    int n_active = 0;
    for (int gi = 0; gi < n_groups; gi++) n_active += mtft_optim__active(groups[gi]);
    if (n_active > s->cap) {
        sam_slot *ns = mtft__realloc(s->slots, (size_t)n_active * sizeof *ns);
        if (!ns) return MTFT_ENOMEM;
        memset(ns + s->cap, 0, (size_t)(n_active - s->cap) * sizeof *ns);
        s->slots = ns;
        s->cap = n_active;
    }
    int j = 0;
    for (int gi = 0; gi < n_groups; gi++) {
        mtft_param_group *pg = groups[gi];
        if (!mtft_optim__active(pg)) continue;
        sam_slot *sl = &s->slots[j++];
        if (sl->cap < pg->n_floats) {
            mtft__aligned_free(sl->backup);
            sl->cap = 0;
            sl->backup = mtft__aligned_alloc(pg->n_floats * sizeof(float));
            if (!sl->backup)
                return mtft__err(MTFT_ENOMEM, "sam_perturb: no memory to save group '%s' (%zu floats)", pg->name,
                                 pg->n_floats);
            sl->cap = pg->n_floats;
        }
        sl->pg = pg;
    }
    double scale = (double)rho / (norm + 1e-12);
    for (j = 0; j < n_active; j++) {
        mtft_param_group *pg = s->slots[j].pg;
        memcpy(s->slots[j].backup, pg->data, pg->n_floats * sizeof(float));
        for (int ti = 0; ti < pg->n; ti++) {
            const mtft_tensor *t = pg->tensors[ti];
            float *w = pg->data + t->offset;
            const float *g = pg->grad + t->offset;
            int64_t n = mtft__numel(t);
            const int adaptive = s->adaptive;
#pragma omp parallel for if (n > 65536)
            for (int64_t i = 0; i < n; i++) {
                double e = adaptive ? scale * (double)w[i] * (double)w[i] * g[i] : scale * (double)g[i];
                w[i] = w[i] + (float)e;
            }
        }
    }
    s->n_active = n_active;
    s->perturbed = 1;
    return MTFT_OK;
}

int mtft_sam_restore(mtft_sam *s) {
    MTFT_CHECK_ARG(s);
    if (!s->perturbed) return mtft__err(MTFT_ESTATE, "sam_restore: not perturbed (call mtft_sam_perturb first)");
    for (int j = 0; j < s->n_active; j++)
        memcpy(s->slots[j].pg->data, s->slots[j].backup, s->slots[j].pg->n_floats * sizeof(float));
    s->perturbed = 0;
    s->n_active = 0;
    return MTFT_OK;
}

/* ---- per-task SAM ---------------------------------------------------------- */
enum { TS_NONE = 0, TS_GRAD = 1, TS_BOTH = 2 };

struct mtft_task_sam {
    int K;
    size_t n;
    float rho;
    float *g;   /* K x n: g_k */
    float *h;   /* K x n: g_k^SAM - g_k */
    float *tmp; /* n: A(h) with a callback */
    const float **ptrs; /* K */
    unsigned char *state;
};

int mtft_task_sam_new(mtft_task_sam **out, int n_tasks, size_t n, float rho) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    if (n_tasks < 1) return mtft__err(MTFT_EINVAL, "task_sam: n_tasks %d must be >= 1", n_tasks);
    if (n < 1) return mtft__err(MTFT_EINVAL, "task_sam: the gradient length must be >= 1");
    if (!(rho >= 0.0f) || !isfinite(rho)) return mtft__err(MTFT_EINVAL, "task_sam: rho %g must be >= 0", (double)rho);
    if (n > ((size_t)-1) / sizeof(float) / (size_t)n_tasks / 2)
        return mtft__err(MTFT_ERANGE, "task_sam: %d tasks x %zu floats is too large", n_tasks, n);
    mtft_task_sam *s = mtft__calloc(1, sizeof *s);
    if (!s) return MTFT_ENOMEM;
    s->K = n_tasks;
    s->n = n;
    s->rho = rho;
    s->g = mtft__aligned_alloc((size_t)n_tasks * n * sizeof(float));
    s->h = mtft__aligned_alloc((size_t)n_tasks * n * sizeof(float));
    s->tmp = mtft__aligned_alloc(n * sizeof(float));
    s->ptrs = mtft__calloc((size_t)n_tasks, sizeof *s->ptrs);
    s->state = mtft__calloc((size_t)n_tasks, 1);
    if (!s->g || !s->h || !s->tmp || !s->ptrs || !s->state) {
        mtft_task_sam_free(s);
        return MTFT_ENOMEM;
    }
    *out = s;
    return MTFT_OK;
}

void mtft_task_sam_free(mtft_task_sam *s) {
    if (!s) return;
    mtft__aligned_free(s->g);
    mtft__aligned_free(s->h);
    mtft__aligned_free(s->tmp);
    mtft__free(s->ptrs);
    mtft__free(s->state);
    mtft__free(s);
}

void mtft_task_sam_clear(mtft_task_sam *s) {
    if (s) memset(s->state, 0, (size_t)s->K);
}

static int task_arg(const mtft_task_sam *s, int k, const void *v, const char *what) {
    if (k < 0 || k >= s->K) return mtft__err(MTFT_ERANGE, "%s: task %d outside [0, %d)", what, k, s->K);
    if (!v) return mtft__err(MTFT_EINVAL, "%s: task %d: NULL gradient", what, k);
    return MTFT_OK;
}

static int finite_vec(const float *v, size_t n, int k, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return mtft__err(MTFT_ENUMERIC, "%s: task %d: gradient element %zu is %g", what, k, i, (double)v[i]);
    return MTFT_OK;
}

int mtft_task_sam_set_grad(mtft_task_sam *s, int k, const float *g, double own_sq_norm, float *e_out,
                           double *scale) {
    MTFT_CHECK_ARG(s);
    int rc = task_arg(s, k, g, "task_sam_set_grad");
    if (rc == MTFT_OK) rc = finite_vec(g, s->n, k, "task_sam_set_grad");
    if (rc < 0) return rc;
    if (!(own_sq_norm >= 0.0) || !isfinite(own_sq_norm))
        return mtft__err(MTFT_ENUMERIC, "task_sam_set_grad: task %d: own_sq_norm %g must be finite and >= 0", k,
                         own_sq_norm);
    double sq = own_sq_norm;
    for (size_t i = 0; i < s->n; i++) sq += (double)g[i] * (double)g[i];
    double sc = (double)s->rho / (sqrt(sq) + 1e-12);
    memcpy(s->g + (size_t)k * s->n, g, s->n * sizeof(float));
    if (e_out)
        for (size_t i = 0; i < s->n; i++) e_out[i] = (float)(sc * (double)g[i]);
    if (scale) *scale = sc;
    s->state[k] = TS_GRAD;
    return MTFT_OK;
}

int mtft_task_sam_set_perturbed_grad(mtft_task_sam *s, int k, const float *g_sam) {
    MTFT_CHECK_ARG(s);
    int rc = task_arg(s, k, g_sam, "task_sam_set_perturbed_grad");
    if (rc == MTFT_OK) rc = finite_vec(g_sam, s->n, k, "task_sam_set_perturbed_grad");
    if (rc < 0) return rc;
    if (s->state[k] == TS_NONE)
        return mtft__err(MTFT_ESTATE, "task_sam_set_perturbed_grad: task %d has no gradient at w yet "
                                      "(call mtft_task_sam_set_grad first)", k);
    const float *g = s->g + (size_t)k * s->n;
    float *h = s->h + (size_t)k * s->n;
    for (size_t i = 0; i < s->n; i++) h[i] = g_sam[i] - g[i];
    s->state[k] = TS_BOTH;
    return MTFT_OK;
}

int mtft_task_sam_combine(mtft_task_sam *s, mtft_task_sam_aggregate_fn agg, void *payload, float *out) {
    MTFT_CHECK_ARG(s && out);
    int m = 0;
    for (int k = 0; k < s->K; k++) {
        if (s->state[k] == TS_GRAD)
            return mtft__err(MTFT_ESTATE, "task_sam_combine: task %d has no perturbed gradient", k);
        m += s->state[k] == TS_BOTH;
    }
    if (m == 0) return mtft__err(MTFT_ESTATE, "task_sam_combine: no task has both gradients");
    if (!agg) {
        for (size_t i = 0; i < s->n; i++) {
            double sg = 0.0, sh = 0.0;
            for (int k = 0; k < s->K; k++) {
                if (s->state[k] != TS_BOTH) continue;
                sg += s->g[(size_t)k * s->n + i];
                sh += s->h[(size_t)k * s->n + i];
            }
            out[i] = (float)(sg / m + sh / m);
        }
        return MTFT_OK;
    }
    int j = 0;
    for (int k = 0; k < s->K; k++)
        if (s->state[k] == TS_BOTH) s->ptrs[j++] = s->g + (size_t)k * s->n;
    if (agg(s->ptrs, m, s->n, out, payload) != 0)
        return mtft__err(MTFT_EUSER, "task_sam_combine: the aggregation callback stopped (loss part)");
    j = 0;
    for (int k = 0; k < s->K; k++)
        if (s->state[k] == TS_BOTH) s->ptrs[j++] = s->h + (size_t)k * s->n;
    if (agg(s->ptrs, m, s->n, s->tmp, payload) != 0)
        return mtft__err(MTFT_EUSER, "task_sam_combine: the aggregation callback stopped (flatness part)");
    for (size_t i = 0; i < s->n; i++) out[i] += s->tmp[i];
    return MTFT_OK;
}
