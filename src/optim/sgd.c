/* SGD with momentum as torch.optim.SGD (single-tensor path, maximize off),
 * over parameter groups. The momentum buffer of a group is one block the
 * size of its parameter block, allocated at the first step that finds the
 * group trainable (only when momentum != 0). The weight decay rule is
 * AdamW's: 1-D tensors get none unless decay_1d. */
#include <math.h>
#include <string.h>

#include "../tensor/tensor_impl.h"
#include "mtft/optim.h"

typedef struct sgd_group {
    mtft_param_group *pg;
    float lr_scale;
    float weight_decay; /* < 0: the optimizer's */
    float *buf;         /* momentum buffer, pg->n_floats */
    int64_t step;
} sgd_group;

struct mtft_sgd {
    mtft_sgd_options o;
    sgd_group *groups;
    int n, cap;
};

static int check_options(const mtft_sgd_options *o) {
    if (o->version < 1 || o->version > MTFT_SGD_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "sgd options: unknown version %d", o->version);
    if (!(o->lr >= 0.0f) || !isfinite(o->lr)) return mtft__err(MTFT_EINVAL, "sgd: lr %g must be >= 0", (double)o->lr);
    if (!(o->momentum >= 0.0f) || !isfinite(o->momentum))
        return mtft__err(MTFT_EINVAL, "sgd: momentum %g must be >= 0", (double)o->momentum);
    if (!(o->dampening >= 0.0f && o->dampening <= 1.0f))
        return mtft__err(MTFT_EINVAL, "sgd: dampening %g must be in [0, 1]", (double)o->dampening);
    if (!(o->weight_decay >= 0.0f) || !isfinite(o->weight_decay))
        return mtft__err(MTFT_EINVAL, "sgd: weight_decay %g must be >= 0", (double)o->weight_decay);
    if (o->nesterov && (o->momentum <= 0.0f || o->dampening != 0.0f))
        return mtft__err(MTFT_EINVAL, "sgd: nesterov needs momentum > 0 and dampening 0 (got %g, %g)",
                         (double)o->momentum, (double)o->dampening);
    return MTFT_OK;
}

int mtft_sgd_new(mtft_sgd **out, const mtft_sgd_options *o) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    mtft_sgd_options def = MTFT_SGD_OPTIONS_INIT;
    if (!o) o = &def;
    int rc = check_options(o);
    if (rc < 0) return rc;
    mtft_sgd *opt = mtft__calloc(1, sizeof *opt);
    if (!opt) return MTFT_ENOMEM;
    opt->o = *o;
    *out = opt;
    return MTFT_OK;
}

void mtft_sgd_free(mtft_sgd *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) mtft__aligned_free(opt->groups[i].buf);
    mtft__free(opt->groups);
    mtft__free(opt);
}

int mtft_sgd_add_group(mtft_sgd *opt, mtft_param_group *pg, const mtft_sgd_group_options *go) {
    MTFT_CHECK_ARG(opt && pg);
    mtft_sgd_group_options def = MTFT_SGD_GROUP_OPTIONS_INIT;
    if (!go) go = &def;
    if (go->version < 1 || go->version > MTFT_SGD_GROUP_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "sgd group options: unknown version %d", go->version);
    if (!(go->lr_scale >= 0.0f) || !isfinite(go->lr_scale))
        return mtft__err(MTFT_EINVAL, "sgd: group '%s': lr_scale %g must be >= 0", pg->name, (double)go->lr_scale);
    if (!isfinite(go->weight_decay))
        return mtft__err(MTFT_EINVAL, "sgd: group '%s': weight_decay %g is not finite", pg->name,
                         (double)go->weight_decay);
    if (!pg->allocated)
        return mtft__err(MTFT_ESTATE, "sgd: group '%s' has no data yet (call mtft_param_group_alloc)", pg->name);
    for (int i = 0; i < opt->n; i++)
        if (opt->groups[i].pg == pg) return mtft__err(MTFT_EINVAL, "sgd: group '%s' added twice", pg->name);
    if (opt->n == opt->cap) {
        int nc = opt->cap ? 2 * opt->cap : 4;
        sgd_group *ng = mtft__realloc(opt->groups, (size_t)nc * sizeof *ng);
        if (!ng) return MTFT_ENOMEM;
        opt->groups = ng;
        opt->cap = nc;
    }
    sgd_group *gr = &opt->groups[opt->n++];
    memset(gr, 0, sizeof *gr);
    gr->pg = pg;
    gr->lr_scale = go->lr_scale;
    gr->weight_decay = go->weight_decay;
    return MTFT_OK;
}

int mtft_sgd_remove_group(mtft_sgd *opt, mtft_param_group *pg) {
    MTFT_CHECK_ARG(opt && pg);
    for (int i = 0; i < opt->n; i++) {
        if (opt->groups[i].pg != pg) continue;
        mtft__aligned_free(opt->groups[i].buf);
        memmove(&opt->groups[i], &opt->groups[i + 1], (size_t)(opt->n - i - 1) * sizeof *opt->groups);
        opt->n--;
        return MTFT_OK;
    }
    return mtft__err(MTFT_ENOTFOUND, "sgd: group '%s' was not added", pg->name);
}

static int buf_alloc(sgd_group *gr) {
    if (gr->buf) return MTFT_OK;
    gr->buf = mtft__aligned_alloc(gr->pg->n_floats * sizeof(float));
    if (!gr->buf)
        return mtft__err(MTFT_ENOMEM, "sgd: no memory for the momentum of group '%s' (%zu floats)", gr->pg->name,
                         gr->pg->n_floats);
    return MTFT_OK;
}

/* One contiguous range; first: the buffer starts as d (PyTorch clones d_p). */
static void sgd_range(float *p, const float *g, float *b, int64_t n, float wd, float lr, float mom, float damp,
                      int nesterov, int first) {
    const float omd = 1.0f - damp;
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        if (b) {
            float bi = first ? d : mom * b[i] + omd * d;
            b[i] = bi;
            d = nesterov ? d + mom * bi : bi;
        }
        p[i] = p[i] - lr * d;
    }
}

int mtft_sgd_step(mtft_sgd *opt) {
    MTFT_CHECK_ARG(opt);
    const mtft_sgd_options *o = &opt->o;
    for (int gi = 0; gi < opt->n; gi++) {
        sgd_group *gr = &opt->groups[gi];
        mtft_param_group *pg = gr->pg;
        if (!pg->trainable || !pg->grad) continue;
        if (o->momentum != 0.0f) {
            int rc = buf_alloc(gr);
            if (rc < 0) return rc;
        }
        int first = gr->step == 0;
        gr->step++;
        float lr = (float)((double)o->lr * (double)gr->lr_scale);
        float wd = gr->weight_decay >= 0.0f ? gr->weight_decay : o->weight_decay;
        for (int ti = 0; ti < pg->n; ti++) {
            mtft_tensor *t = pg->tensors[ti];
            float twd = (t->ndim >= 2 || o->decay_1d) ? wd : 0.0f;
            size_t off = t->offset;
            sgd_range(pg->data + off, pg->grad + off, o->momentum != 0.0f ? gr->buf + off : NULL, mtft__numel(t), twd,
                      lr, o->momentum, o->dampening, o->nesterov, first);
        }
    }
    return MTFT_OK;
}

void mtft_sgd_zero_grad(mtft_sgd *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n; i++)
        if (opt->groups[i].pg->trainable) mtft_param_group_zero_grad(opt->groups[i].pg);
}

int mtft_sgd_set_lr(mtft_sgd *opt, float lr) {
    MTFT_CHECK_ARG(opt);
    if (!(lr >= 0.0f) || !isfinite(lr)) return mtft__err(MTFT_EINVAL, "sgd: lr %g must be >= 0", (double)lr);
    opt->o.lr = lr;
    return MTFT_OK;
}

float mtft_sgd_get_lr(const mtft_sgd *opt) { return opt ? opt->o.lr : 0.0f; }
int mtft_sgd_n_groups(const mtft_sgd *opt) { return opt ? opt->n : 0; }

static int group_index(const mtft_sgd *opt, int i) {
    if (i < 0 || i >= opt->n) return mtft__err(MTFT_ERANGE, "sgd: group index %d outside [0, %d)", i, opt->n);
    return MTFT_OK;
}

int mtft_sgd_group_state(mtft_sgd *opt, int i, float **buf, size_t *n, int64_t *step) {
    MTFT_CHECK_ARG(opt);
    int rc = group_index(opt, i);
    if (rc < 0) return rc;
    sgd_group *gr = &opt->groups[i];
    if (buf) *buf = gr->buf;
    if (n) *n = gr->buf ? gr->pg->n_floats : 0;
    if (step) *step = gr->step;
    return MTFT_OK;
}

int mtft_sgd_group_state_alloc(mtft_sgd *opt, int i) {
    MTFT_CHECK_ARG(opt);
    int rc = group_index(opt, i);
    if (rc < 0) return rc;
    if (opt->o.momentum == 0.0f)
        return mtft__err(MTFT_ESTATE, "sgd: group %d: no momentum buffer without momentum", i);
    return buf_alloc(&opt->groups[i]);
}

int mtft_sgd_set_group_step(mtft_sgd *opt, int i, int64_t step) {
    MTFT_CHECK_ARG(opt);
    int rc = group_index(opt, i);
    if (rc < 0) return rc;
    if (step < 0) return mtft__err(MTFT_EINVAL, "sgd: step %lld must be >= 0", (long long)step);
    opt->groups[i].step = step;
    return MTFT_OK;
}
