/* AdamW as torch.optim.AdamW (single-tensor path), over parameter groups.
 * Each group's moments are two blocks the size of its parameter block; the
 * update is a flat loop over each tensor's range of the block (the tensor
 * decides the weight decay: 1-D tensors get none unless decay_1d). */
#include <math.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "../tensor/tensor_impl.h"
#include "mtft/optim.h"

typedef struct adamw_group {
    mtft_param_group *pg;
    float lr_scale;
    float weight_decay; /* < 0: the optimizer's */
    float *m, *v;       /* pg->n_floats each, allocated at the first trainable step */
    int64_t step;
} adamw_group;

/* A piece of one tensor's range, the unit of work of a step. */
typedef struct adamw_item {
    float *p, *m, *v;
    const float *g;
    int64_t n;
    float decay_mul, step_size, bc2_sqrt;
} adamw_item;

struct mtft_adamw {
    mtft_adamw_options o;
    adamw_group *groups;
    int n, cap;
    adamw_item *items; /* kept between steps */
    int64_t n_items_cap;
};

static int check_options(const mtft_adamw_options *o) {
    if (o->version < 1 || o->version > MTFT_ADAMW_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "adamw options: unknown version %d", o->version);
    if (!(o->lr >= 0.0f) || !isfinite(o->lr)) return mtft__err(MTFT_EINVAL, "adamw: lr %g must be >= 0", (double)o->lr);
    if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f))
        return mtft__err(MTFT_EINVAL, "adamw: betas (%g, %g) must be in [0, 1)", (double)o->beta1, (double)o->beta2);
    if (!(o->eps > 0.0f)) return mtft__err(MTFT_EINVAL, "adamw: eps %g must be > 0", (double)o->eps);
    if (!(o->weight_decay >= 0.0f))
        return mtft__err(MTFT_EINVAL, "adamw: weight_decay %g must be >= 0", (double)o->weight_decay);
    return MTFT_OK;
}

int mtft_adamw_new(mtft_adamw **out, const mtft_adamw_options *o) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    mtft_adamw_options def = MTFT_ADAMW_OPTIONS_INIT;
    if (!o) o = &def;
    int rc = check_options(o);
    if (rc < 0) return rc;
    mtft_adamw *opt = mtft__calloc(1, sizeof *opt);
    if (!opt) return MTFT_ENOMEM;
    opt->o = *o;
    *out = opt;
    return MTFT_OK;
}

static void group_dispose(adamw_group *gr) {
    mtft__aligned_free(gr->m);
    mtft__aligned_free(gr->v);
    gr->m = gr->v = NULL;
}

void mtft_adamw_free(mtft_adamw *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) group_dispose(&opt->groups[i]);
    mtft__free(opt->groups);
    mtft__free(opt->items);
    mtft__free(opt);
}

int mtft_adamw_add_group(mtft_adamw *opt, mtft_param_group *pg, const mtft_adamw_group_options *go) {
    MTFT_CHECK_ARG(opt && pg);
    mtft_adamw_group_options def = MTFT_ADAMW_GROUP_OPTIONS_INIT;
    if (!go) go = &def;
    if (go->version < 1 || go->version > MTFT_ADAMW_GROUP_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "adamw group options: unknown version %d", go->version);
    if (!(go->lr_scale >= 0.0f) || !isfinite(go->lr_scale))
        return mtft__err(MTFT_EINVAL, "adamw: group '%s': lr_scale %g must be >= 0", pg->name, (double)go->lr_scale);
    if (!pg->allocated)
        return mtft__err(MTFT_ESTATE, "adamw: group '%s' has no data yet (call mtft_param_group_alloc)", pg->name);
    for (int i = 0; i < opt->n; i++)
        if (opt->groups[i].pg == pg) return mtft__err(MTFT_EINVAL, "adamw: group '%s' added twice", pg->name);
    if (opt->n == opt->cap) {
        int nc = opt->cap ? 2 * opt->cap : 4;
        adamw_group *ng = mtft__realloc(opt->groups, (size_t)nc * sizeof *ng);
        if (!ng) return MTFT_ENOMEM;
        opt->groups = ng;
        opt->cap = nc;
    }
    adamw_group *gr = &opt->groups[opt->n++];
    memset(gr, 0, sizeof *gr);
    gr->pg = pg;
    gr->lr_scale = go->lr_scale;
    gr->weight_decay = go->weight_decay;
    return MTFT_OK;
}

int mtft_adamw_remove_group(mtft_adamw *opt, mtft_param_group *pg) {
    MTFT_CHECK_ARG(opt && pg);
    for (int i = 0; i < opt->n; i++) {
        if (opt->groups[i].pg != pg) continue;
        group_dispose(&opt->groups[i]);
        memmove(&opt->groups[i], &opt->groups[i + 1], (size_t)(opt->n - i - 1) * sizeof *opt->groups);
        opt->n--;
        return MTFT_OK;
    }
    return mtft__err(MTFT_ENOTFOUND, "adamw: group '%s' was not added", pg->name);
}

static int state_alloc(adamw_group *gr) {
    if (gr->m) return MTFT_OK;
    size_t bytes = gr->pg->n_floats * sizeof(float);
    gr->m = mtft__aligned_alloc(bytes);
    gr->v = mtft__aligned_alloc(bytes);
    if (!gr->m || !gr->v) {
        group_dispose(gr);
        return mtft__err(MTFT_ENOMEM, "adamw: no memory for the moments of group '%s' (%zu floats)", gr->pg->name,
                         2 * gr->pg->n_floats);
    }
    return MTFT_OK;
}

/* The update of one contiguous range: p, g, m, v of n floats. The SSE path
 * does the same IEEE operations in the same order as the scalar one (same
 * bits); it exists because sqrtf under the default -fmath-errno keeps
 * compilers from vectorising the loop. */
static inline float adamw_one(float *p, float g, float *m, float *v, float decay_mul, float b1, float b2,
                              float omb1, float omb2, float step_size, float bc2_sqrt, float eps) {
    float mi = *m * b1 + g * omb1;
    float vi = *v * b2 + g * g * omb2;
    *m = mi;
    *v = vi;
    return *p * decay_mul - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
}

static void adamw_range(float *p, const float *g, float *m, float *v, int64_t n, float decay_mul, float b1,
                        float b2, float step_size, float bc2_sqrt, float eps) {
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    int64_t i = 0;
#if defined(__SSE__)
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vomb1 = _mm_set1_ps(omb1), vomb2 = _mm_set1_ps(omb2),
                 vdm = _mm_set1_ps(decay_mul), vss = _mm_set1_ps(step_size), vbc = _mm_set1_ps(bc2_sqrt),
                 veps = _mm_set1_ps(eps);
    for (; i + 4 <= n; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), vb1), _mm_mul_ps(gi, vomb1));
        __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), vb2), _mm_mul_ps(_mm_mul_ps(gi, gi), vomb2));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 den = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc), veps);
        __m128 pi = _mm_mul_ps(_mm_loadu_ps(p + i), vdm);
        _mm_storeu_ps(p + i, _mm_sub_ps(pi, _mm_mul_ps(vss, _mm_div_ps(mi, den))));
    }
#endif
    for (; i < n; i++)
        p[i] = adamw_one(p + i, g[i], m + i, v + i, decay_mul, b1, b2, omb1, omb2, step_size, bc2_sqrt, eps);
}

/* Elements per work item: every tensor of every group is cut into items and
 * one parallel region runs them all (a small model has dozens of tensors
 * below any useful per-tensor threshold; one region per tensor cost a
 * fork/join each). */
#define ADAMW_ITEM 16384

int mtft_adamw_step(mtft_adamw *opt) {
    MTFT_CHECK_ARG(opt);
    const mtft_adamw_options *o = &opt->o;
    int64_t n_items = 0, total = 0;
    for (int gi = 0; gi < opt->n; gi++) {
        adamw_group *gr = &opt->groups[gi];
        mtft_param_group *pg = gr->pg;
        if (!pg->trainable || !pg->grad) continue; /* frozen: no state, no update */
        int rc = state_alloc(gr);
        if (rc < 0) return rc;
        for (int ti = 0; ti < pg->n; ti++) n_items += (mtft__numel(pg->tensors[ti]) + ADAMW_ITEM - 1) / ADAMW_ITEM;
    }
    if (n_items > opt->n_items_cap) {
        adamw_item *ni = mtft__realloc(opt->items, (size_t)n_items * sizeof *ni);
        if (!ni) return mtft__err(MTFT_ENOMEM, "adamw: no memory for %lld work items", (long long)n_items);
        opt->items = ni;
        opt->n_items_cap = n_items;
    }
    int64_t k = 0;
    for (int gi = 0; gi < opt->n; gi++) {
        adamw_group *gr = &opt->groups[gi];
        mtft_param_group *pg = gr->pg;
        if (!pg->trainable || !pg->grad) continue;
        gr->step++;
        double lr = (double)o->lr * (double)gr->lr_scale;
        double wd = gr->weight_decay >= 0.0f ? (double)gr->weight_decay : (double)o->weight_decay;
        double bc1 = 1.0 - pow((double)o->beta1, (double)gr->step);
        double bc2 = 1.0 - pow((double)o->beta2, (double)gr->step);
        float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
        for (int ti = 0; ti < pg->n; ti++) {
            mtft_tensor *t = pg->tensors[ti];
            int decay = t->ndim >= 2 || o->decay_1d;
            float decay_mul = decay ? (float)(1.0 - lr * wd) : 1.0f;
            const int64_t n = mtft__numel(t);
            for (int64_t i0 = 0; i0 < n; i0 += ADAMW_ITEM) {
                const size_t off = t->offset + (size_t)i0;
                adamw_item *it = &opt->items[k++];
                it->p = pg->data + off, it->g = pg->grad + off, it->m = gr->m + off, it->v = gr->v + off;
                it->n = n - i0 < ADAMW_ITEM ? n - i0 : ADAMW_ITEM;
                it->decay_mul = decay_mul, it->step_size = step_size, it->bc2_sqrt = bc2_sqrt;
                total += it->n;
            }
        }
    }
    const adamw_item *items = opt->items;
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
#pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t i = 0; i < k; i++) {
        const adamw_item *it = &items[i];
        adamw_range(it->p, it->g, it->m, it->v, it->n, it->decay_mul, b1, b2, it->step_size, it->bc2_sqrt, eps);
    }
    return MTFT_OK;
}

void mtft_adamw_zero_grad(mtft_adamw *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n; i++)
        if (opt->groups[i].pg->trainable) mtft_param_group_zero_grad(opt->groups[i].pg);
}

int mtft_adamw_set_lr(mtft_adamw *opt, float lr) {
    MTFT_CHECK_ARG(opt);
    if (!(lr >= 0.0f) || !isfinite(lr)) return mtft__err(MTFT_EINVAL, "adamw: lr %g must be >= 0", (double)lr);
    opt->o.lr = lr;
    return MTFT_OK;
}

float mtft_adamw_get_lr(const mtft_adamw *opt) { return opt ? opt->o.lr : 0.0f; }
int mtft_adamw_n_groups(const mtft_adamw *opt) { return opt ? opt->n : 0; }

int mtft_adamw_group_state(mtft_adamw *opt, int i, float **m, float **v, size_t *n, int64_t *step) {
    MTFT_CHECK_ARG(opt);
    if (i < 0 || i >= opt->n) return mtft__err(MTFT_ERANGE, "adamw: group index %d outside [0, %d)", i, opt->n);
    adamw_group *gr = &opt->groups[i];
    if (m) *m = gr->m;
    if (v) *v = gr->v;
    if (n) *n = gr->m ? gr->pg->n_floats : 0;
    if (step) *step = gr->step;
    return MTFT_OK;
}

int mtft_adamw_group_state_alloc(mtft_adamw *opt, int i) {
    MTFT_CHECK_ARG(opt);
    if (i < 0 || i >= opt->n) return mtft__err(MTFT_ERANGE, "adamw: group index %d outside [0, %d)", i, opt->n);
    return state_alloc(&opt->groups[i]);
}

int mtft_adamw_set_group_step(mtft_adamw *opt, int i, int64_t step) {
    MTFT_CHECK_ARG(opt);
    if (i < 0 || i >= opt->n) return mtft__err(MTFT_ERANGE, "adamw: group index %d outside [0, %d)", i, opt->n);
    if (step < 0) return mtft__err(MTFT_EINVAL, "adamw: step %lld must be >= 0", (long long)step);
    opt->groups[i].step = step;
    return MTFT_OK;
}
