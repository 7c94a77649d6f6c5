/* Tensors, parameter groups and the graph (tape, arena, backward). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tensor_impl.h"
#include "ops/ops_grad.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int mtft__worker_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int mtft__n_workers(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- accessors ----------------------------------------------------------- */
int mtft_tensor_ndim(const mtft_tensor *t) { return t ? t->ndim : 0; }
int64_t mtft_tensor_dim(const mtft_tensor *t, int i) {
    if (!t) return 0;
    if (i < 0) i += t->ndim;
    return (i >= 0 && i < t->ndim) ? t->ne[i] : 0;
}
int64_t mtft_tensor_numel(const mtft_tensor *t) { return t ? mtft__numel(t) : 0; }
int64_t mtft_tensor_stride(const mtft_tensor *t, int i) {
    if (!t) return 0;
    if (i < 0) i += t->ndim;
    return (i >= 0 && i < t->ndim) ? t->st[i] : 0;
}
int mtft_tensor_is_contiguous(const mtft_tensor *t) { return t ? mtft__contig(t) : 0; }
float *mtft_tensor_data(mtft_tensor *t) { return t ? t->data : NULL; }
float *mtft_tensor_grad(mtft_tensor *t) { return t ? t->grad : NULL; }
int mtft_tensor_requires_grad(const mtft_tensor *t) { return mtft__needs_grad(t); }
const char *mtft_tensor_name(const mtft_tensor *t) { return t ? t->name : ""; }
int mtft_tensor_shape(const mtft_tensor *t, int64_t shape[MTFT_MAX_DIMS]) {
    if (!t) return 0;
    for (int i = 0; i < t->ndim; i++) shape[i] = t->ne[i];
    return t->ndim;
}

const char *mtft__shape_str(const mtft_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; t && i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->ne[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static int check_shape(int ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > MTFT_MAX_DIMS || !shape)
        return mtft__err(MTFT_EINVAL, "tensor: ndim %d outside 1..%d", ndim, MTFT_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) return mtft__err(MTFT_ESHAPE, "tensor: dim %d has size %lld", i, (long long)shape[i]);
    return MTFT_OK;
}

static void set_contig(mtft_tensor *t, int ndim, const int64_t *shape) {
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = MTFT_MAX_DIMS - 1; i >= 0; i--) {
        t->ne[i] = i < ndim ? shape[i] : 1;
        t->st[i] = i < ndim ? s : 1;
        if (i < ndim) s *= shape[i];
    }
}

/* ---- parameter groups ---------------------------------------------------- */
int mtft_param_group_new(mtft_param_group **out, const char *name) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    mtft_param_group *pg = mtft__calloc(1, sizeof *pg);
    if (!pg) return MTFT_ENOMEM;
    pg->name = mtft__strdup(name ? name : "");
    if (!pg->name) {
        mtft__free(pg);
        return MTFT_ENOMEM;
    }
    pg->trainable = 1;
    *out = pg;
    return MTFT_OK;
}

void mtft_param_group_free(mtft_param_group *pg) {
    if (!pg) return;
    for (int i = 0; i < pg->n; i++) mtft__free(pg->tensors[i]);
    mtft__free(pg->tensors);
    mtft__aligned_free(pg->data);
    mtft__aligned_free(pg->grad);
    mtft__aligned_free(pg->split_grad);
    mtft__free(pg->name);
    mtft__free(pg);
}

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

mtft_tensor *mtft_param_group_add(mtft_param_group *pg, const char *name, int ndim, const int64_t *shape) {
    if (!pg || !name) {
        mtft__err(MTFT_EINVAL, "param_group_add: NULL argument");
        return NULL;
    }
    if (pg->allocated) {
        mtft__err(MTFT_ESTATE, "param group '%s': cannot add '%s' after alloc", pg->name, name);
        return NULL;
    }
    if (check_shape(ndim, shape) < 0) {
        mtft__err_prefix("param group '%s', tensor '%s'", pg->name, name);
        return NULL;
    }
    if (mtft_param_group_find(pg, name)) {
        mtft__err(MTFT_EINVAL, "param group '%s': duplicate tensor name '%s'", pg->name, name);
        return NULL;
    }
    if (pg->n == pg->cap) {
        int nc = pg->cap ? pg->cap * 2 : 16;
        mtft_tensor **nt = mtft__realloc(pg->tensors, (size_t)nc * sizeof *nt);
        if (!nt) return NULL;
        pg->tensors = nt;
        pg->cap = nc;
    }
    mtft_tensor *t = mtft__calloc(1, sizeof *t);
    if (!t) return NULL;
    set_contig(t, ndim, shape);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->flags = MTFT_TF_PARAM;
    t->group = pg;
    t->offset = pg->n_floats;
    pg->n_floats += pad16((size_t)mtft__numel(t));
    pg->tensors[pg->n++] = t;
    return t;
}

int mtft_param_group_alloc(mtft_param_group *pg) {
    MTFT_CHECK_ARG(pg);
    if (pg->allocated) return mtft__err(MTFT_ESTATE, "param group '%s' already allocated", pg->name);
    pg->data = mtft__aligned_alloc(pg->n_floats * sizeof(float));
    if (!pg->data) return MTFT_ENOMEM;
    for (int i = 0; i < pg->n; i++) pg->tensors[i]->data = pg->data + pg->tensors[i]->offset;
    pg->allocated = 1;
    return mtft_param_group_set_trainable(pg, pg->trainable);
}

int mtft_param_group_set_trainable(mtft_param_group *pg, int trainable) {
    MTFT_CHECK_ARG(pg);
    pg->trainable = trainable ? 1 : 0;
    if (!pg->allocated) return MTFT_OK;
    if (pg->trainable && !pg->grad) {
        pg->grad = mtft__aligned_alloc(pg->n_floats * sizeof(float));
        if (!pg->grad) return MTFT_ENOMEM;
    } else if (!pg->trainable && pg->grad) {
        mtft__aligned_free(pg->grad);
        pg->grad = NULL;
    }
    if (pg->trainable && pg->n_split > 0 && !pg->split_grad) {
        pg->split_grad = mtft__aligned_alloc((size_t)pg->n_split * pg->n_floats * sizeof(float));
        if (!pg->split_grad) return MTFT_ENOMEM;
    } else if ((!pg->trainable || pg->n_split == 0) && pg->split_grad) {
        mtft__aligned_free(pg->split_grad);
        pg->split_grad = NULL;
    }
    for (int i = 0; i < pg->n; i++) {
        mtft_tensor *t = pg->tensors[i];
        t->grad = pg->grad ? pg->grad + t->offset : NULL;
        if (pg->trainable) t->flags |= MTFT_TF_REQUIRES_GRAD;
        else t->flags &= ~(uint32_t)MTFT_TF_REQUIRES_GRAD;
    }
    return MTFT_OK;
}

int mtft_param_group_trainable(const mtft_param_group *pg) { return pg ? pg->trainable : 0; }
/* memset over threads in blocks of 64K floats: one thread does not reach
 * the memory bandwidth (zeroing a 4.5M-parameter model's gradients: 4.4 ms
 * on one thread). */
static void zero_floats(float *p, size_t n) {
    const size_t blk = (size_t)1 << 16, nblk = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (nblk >= 4)
    for (size_t c = 0; c < nblk; c++) memset(p + c * blk, 0, (c + 1 < nblk ? blk : n - c * blk) * sizeof(float));
}

void mtft_param_group_zero_grad(mtft_param_group *pg) {
    if (pg && pg->grad) zero_floats(pg->grad, pg->n_floats);
    if (pg && pg->split_grad) zero_floats(pg->split_grad, (size_t)pg->n_split * pg->n_floats);
}

/* ---- per-part gradients ---------------------------------------------------- */
int mtft_param_group_set_split(mtft_param_group *pg, int n_parts) {
    MTFT_CHECK_ARG(pg);
    if (n_parts < 0 || n_parts > 4096)
        return mtft__err(MTFT_ERANGE, "param group '%s': split into %d parts (0..4096)", pg->name, n_parts);
    if (n_parts != pg->n_split && pg->split_grad) {
        mtft__aligned_free(pg->split_grad);
        pg->split_grad = NULL;
    }
    pg->n_split = n_parts;
    return mtft_param_group_set_trainable(pg, pg->trainable);
}
int mtft_param_group_split_count(const mtft_param_group *pg) { return pg ? pg->n_split : 0; }
float *mtft_param_group_split_grad(mtft_param_group *pg, int part, size_t *n) {
    if (n) *n = 0;
    if (!pg || !pg->split_grad || part < 0 || part >= pg->n_split) return NULL;
    if (n) *n = pg->n_floats;
    return pg->split_grad + (size_t)part * pg->n_floats;
}

int mtft_graph_set_row_partition(mtft_graph *g, int n_parts, const int64_t *offsets) {
    MTFT_CHECK_ARG(g);
    if (n_parts == 0) {
        g->n_parts = 0;
        g->part_off = NULL;
        return MTFT_OK;
    }
    if (n_parts < 0 || !offsets) return mtft__err(MTFT_EINVAL, "row partition: %d parts, offsets %p", n_parts,
                                                  (const void *)offsets);
    if (offsets[0] != 0) return mtft__err(MTFT_EINVAL, "row partition: offsets[0] is %lld, must be 0",
                                          (long long)offsets[0]);
    for (int k = 0; k < n_parts; k++)
        if (offsets[k + 1] < offsets[k])
            return mtft__err(MTFT_EINVAL, "row partition: offsets[%d] = %lld < offsets[%d] = %lld", k + 1,
                             (long long)offsets[k + 1], k, (long long)offsets[k]);
    if (offsets[n_parts] <= 0) return mtft__err(MTFT_EINVAL, "row partition: no rows (offsets[%d] = 0)", n_parts);
    int64_t *o = mtft_arena_alloc(&g->arena, (size_t)(n_parts + 1) * sizeof *o);
    if (!o) return MTFT_ENOMEM;
    memcpy(o, offsets, (size_t)(n_parts + 1) * sizeof *o);
    g->part_off = o;
    g->n_parts = n_parts;
    return MTFT_OK;
}

int mtft__part_rows(mtft_graph *g, const mtft_tensor *t, int64_t N, int k, int64_t *r0, int64_t *r1) {
    const mtft_param_group *pg = t->group;
    if (g->n_parts == 0) {
        mtft__op_fail(g, MTFT_ESTATE, "tensor '%s' (group '%s') is split into %d parts but the graph has no "
                             "row partition (mtft_graph_set_row_partition)", t->name, pg->name, pg->n_split);
        return g->status;
    }
    if (g->n_parts != pg->n_split) {
        mtft__op_fail(g, MTFT_ESHAPE, "tensor '%s' (group '%s') is split into %d parts but the graph's row "
                             "partition has %d", t->name, pg->name, pg->n_split, g->n_parts);
        return g->status;
    }
    int64_t total = g->part_off[g->n_parts];
    if (N % total != 0) {
        mtft__op_fail(g, MTFT_ESHAPE, "tensor '%s': an input of %lld rows cannot be split by a row partition "
                             "of %lld units", t->name, (long long)N, (long long)total);
        return g->status;
    }
    int64_t per = N / total;
    *r0 = g->part_off[k] * per;
    *r1 = g->part_off[k + 1] * per;
    return MTFT_OK;
}

float *mtft__split_grad(mtft_graph *g, mtft_tensor *t, int k) {
    mtft_param_group *pg = t->group;
    int seen = 0;
    for (int i = 0; i < g->n_split_touched; i++)
        if (g->split_touched[i] == pg) seen = 1;
    if (!seen) {
        if (g->n_split_touched == (int)(sizeof g->split_touched / sizeof g->split_touched[0])) {
            mtft__op_fail(g, MTFT_ERANGE, "backward: more than %d split parameter groups",
                          (int)(sizeof g->split_touched / sizeof g->split_touched[0]));
            return NULL;
        }
        g->split_touched[g->n_split_touched++] = pg;
    }
    return pg->split_grad + (size_t)k * pg->n_floats + t->offset;
}

/* A split group's gradient is the sum of its parts. */
static void split_reduce(mtft_param_group *pg) {
    size_t n = pg->n_floats;
    float *gr = pg->grad;
    const float *sp = pg->split_grad;
    int K = pg->n_split;
#pragma omp parallel for if (n * (size_t)K > 65536)
    for (size_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int k = 0; k < K; k++) acc += sp[(size_t)k * n + i];
        gr[i] = acc;
    }
}
const char *mtft_param_group_name(const mtft_param_group *pg) { return pg ? pg->name : ""; }
int mtft_param_group_count(const mtft_param_group *pg) { return pg ? pg->n : 0; }
mtft_tensor *mtft_param_group_tensor(mtft_param_group *pg, int i) {
    return (pg && i >= 0 && i < pg->n) ? pg->tensors[i] : NULL;
}
mtft_tensor *mtft_param_group_find(mtft_param_group *pg, const char *name) {
    if (!pg || !name) return NULL;
    for (int i = 0; i < pg->n; i++)
        if (strcmp(pg->tensors[i]->name, name) == 0) return pg->tensors[i];
    return NULL;
}
float *mtft_param_group_data(mtft_param_group *pg, size_t *n) {
    if (n) *n = pg ? pg->n_floats : 0;
    return pg ? pg->data : NULL;
}
float *mtft_param_group_grad(mtft_param_group *pg, size_t *n) {
    if (n) *n = (pg && pg->grad) ? pg->n_floats : 0;
    return pg ? pg->grad : NULL;
}

/* ---- graph --------------------------------------------------------------- */
int mtft_graph_new(mtft_graph **out, const mtft_graph_options *opts) {
    MTFT_CHECK_ARG(out);
    mtft_graph_options def = MTFT_GRAPH_OPTIONS_INIT;
    if (!opts) opts = &def;
    if (opts->version < 1 || opts->version > MTFT_GRAPH_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "graph options: unknown version %d", opts->version);
    *out = NULL;
    mtft__init_once();
    mtft_graph *g = mtft__calloc(1, sizeof *g);
    if (!g) return MTFT_ENOMEM;
    mtft_arena_init(&g->arena, opts->arena_bytes ? opts->arena_bytes : (size_t)1 << 20);
    g->grad_enabled = 1;
    g->training = opts->training;
    g->seed = opts->seed;
    *out = g;
    return MTFT_OK;
}

void mtft_graph_free(mtft_graph *g) {
    if (!g) return;
    mtft_arena_dispose(&g->arena);
    mtft__free(g->nodes);
    mtft__free(g);
}

void mtft_graph_reset(mtft_graph *g) {
    if (!g) return;
    mtft_arena_reset(&g->arena);
    g->n_nodes = 0;
    g->status = MTFT_OK;
    g->dropout_calls = 0;
    g->n_parts = 0;
    g->part_off = NULL;
    g->n_pool = 0;
}

int mtft_graph_status(const mtft_graph *g) { return g ? g->status : MTFT_EINVAL; }
void mtft_graph_set_grad_enabled(mtft_graph *g, int enabled) {
    if (g) g->grad_enabled = enabled ? 1 : 0;
}
void mtft_graph_set_seed(mtft_graph *g, uint64_t seed) {
    if (g) g->seed = seed;
}
uint64_t mtft_graph_seed(const mtft_graph *g) { return g ? g->seed : 0; }
void mtft_graph_set_training(mtft_graph *g, int training) {
    if (g) g->training = training ? 1 : 0;
}
int mtft_graph_n_nodes(const mtft_graph *g) { return g ? g->n_nodes : 0; }
const char *mtft_graph_node_op(const mtft_graph *g, int i) {
    return (g && i >= 0 && i < g->n_nodes) ? g->nodes[i].op->name : NULL;
}
size_t mtft_graph_arena_capacity(const mtft_graph *g) { return g ? g->arena.capacity : 0; }
uint64_t mtft_graph_arena_sys_allocs(const mtft_graph *g) { return g ? g->arena.sys_allocs : 0; }

int mtft__op_begin(mtft_graph *g, int n_in, ...) {
    if (!g) {
        mtft__err(MTFT_EINVAL, "op: NULL graph");
        return 0;
    }
    if (g->status < 0) return 0;
    va_list ap;
    va_start(ap, n_in);
    int ok = 1;
    for (int i = 0; i < n_in; i++)
        if (!va_arg(ap, mtft_tensor *)) ok = 0;
    va_end(ap);
    if (!ok) {
        /* NULL input: an earlier builder failed (its message stands), or the
         * caller passed NULL; record that once. */
        if (g->status == MTFT_OK) {
            if (mtft_error_last()->code == MTFT_OK) mtft__err(MTFT_EINVAL, "op: NULL input tensor");
            g->status = mtft_error_last()->code;
        }
    }
    return ok;
}

mtft_tensor *mtft__op_fail(mtft_graph *g, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mtft__verr(code, fmt, ap);
    va_end(ap);
    if (g && g->status == MTFT_OK) g->status = code;
    return NULL;
}

void *mtft__scratch(mtft_graph *g, size_t bytes) {
    void *p = mtft_arena_alloc(&g->arena, bytes);
    if (!p && g->status == MTFT_OK) g->status = MTFT_ENOMEM;
    return p;
}

mtft_tensor *mtft__new(mtft_graph *g, int ndim, const int64_t *shape) {
    if (check_shape(ndim, shape) < 0) {
        g->status = g->status ? g->status : mtft_error_last()->code;
        return NULL;
    }
    mtft_tensor *t = mtft__scratch(g, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    set_contig(t, ndim, shape);
    t->data = mtft__scratch(g, (size_t)mtft__numel(t) * sizeof(float));
    return t->data ? t : NULL;
}

mtft_tensor *mtft__zeros(mtft_graph *g, int ndim, const int64_t *shape) {
    mtft_tensor *t = mtft__new(g, ndim, shape);
    if (t) memset(t->data, 0, (size_t)mtft__numel(t) * sizeof(float));
    return t;
}

mtft_tensor *mtft__view(mtft_graph *g, mtft_tensor *x) {
    mtft_tensor *t = mtft__scratch(g, sizeof *t);
    if (!t) return NULL;
    *t = *x;
    t->grad = NULL;
    t->flags = MTFT_TF_VIEW;
    t->group = NULL;
    t->name[0] = '\0';
    return t;
}

mtft_tensor *mtft_new(mtft_graph *g, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    return mtft__new(g, ndim, shape);
}
mtft_tensor *mtft_zeros(mtft_graph *g, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    return mtft__zeros(g, ndim, shape);
}
mtft_tensor *mtft_from_data(mtft_graph *g, int ndim, const int64_t *shape, const float *data) {
    if (!g || !data) {
        mtft__err(MTFT_EINVAL, "from_data: NULL argument");
        return NULL;
    }
    mtft_tensor *t = mtft__new(g, ndim, shape);
    if (t) memcpy(t->data, data, (size_t)mtft__numel(t) * sizeof(float));
    return t;
}

int mtft_tensor_set_requires_grad(mtft_graph *g, mtft_tensor *t, int requires) {
    MTFT_CHECK_ARG(g && t);
    if (t->flags & MTFT_TF_PARAM)
        return mtft__err(MTFT_EINVAL, "tensor '%s': a parameter's gradient follows its group", t->name);
    if (requires) t->flags |= MTFT_TF_REQUIRES_GRAD;
    else t->flags &= ~(uint32_t)MTFT_TF_REQUIRES_GRAD;
    return MTFT_OK;
}

mtft_node *mtft__record(mtft_graph *g, const mtft_op_def *op, mtft_tensor *out, int n_in, ...) {
    if (!g->grad_enabled || n_in > MTFT_NODE_MAX_IN) return NULL;
    mtft_tensor *in[MTFT_NODE_MAX_IN] = {0};
    int any = 0;
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in; i++) {
        in[i] = va_arg(ap, mtft_tensor *);
        if (mtft__needs_grad(in[i])) any = 1;
    }
    va_end(ap);
    if (!any) return NULL;
    if (g->n_nodes == g->cap_nodes) {
        /* grows during the first steps only; kept across resets */
        int nc = g->cap_nodes ? g->cap_nodes * 2 : 256;
        mtft_node *nn = mtft__realloc(g->nodes, (size_t)nc * sizeof *nn);
        if (!nn) {
            g->status = MTFT_ENOMEM;
            return NULL;
        }
        g->nodes = nn;
        g->cap_nodes = nc;
    }
    mtft_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->produces = !(out->flags & MTFT_TF_REQUIRES_GRAD); /* else an in-place op (e.g. PEFT's lora_add) */
    out->flags |= MTFT_TF_REQUIRES_GRAD;
    return n;
}

/* The gradient buffer of t, zeroed when it is made here unless !zero
 * (then *fresh = 1). */
static float *grad_get(mtft_graph *g, mtft_tensor *t, int zero, int *fresh) {
    if (fresh) *fresh = 0;
    if (!mtft__needs_grad(t)) return NULL;
    if (mtft__is_split(t)) {
        mtft__op_fail(g, MTFT_EUNSUPPORTED, "tensor '%s' is in group '%s', whose gradient is split by rows; this op "
                      "cannot split its gradient (only linear, linear_t, matmul with a shared 2-D weight and the "
                      "PEFT ops can)", t->name, t->group->name);
        return NULL;
    }
    if (t->grad) return t->grad;
    if (t->flags & MTFT_TF_PARAM) return NULL; /* frozen group */
    const int64_t n = mtft__numel(t);
    int best = -1;
    for (int i = 0; i < g->n_pool; i++)
        if (g->pool_n[i] >= n && (best < 0 || g->pool_n[i] < g->pool_n[best])) best = i;
    if (best >= 0) {
        t->grad = g->pool_p[best];
        g->n_pool--;
        g->pool_p[best] = g->pool_p[g->n_pool];
        g->pool_n[best] = g->pool_n[g->n_pool];
    } else {
        t->grad = mtft__scratch(g, (size_t)n * sizeof(float));
        if (!t->grad) return NULL;
    }
    if (zero) memset(t->grad, 0, (size_t)n * sizeof(float));
    else if (fresh) *fresh = 1;
    return t->grad;
}

float *mtft__grad(mtft_graph *g, mtft_tensor *t) { return grad_get(g, t, 1, NULL); }

float *mtft__grad_w(mtft_graph *g, mtft_tensor *t, int *fresh) { return grad_get(g, t, 0, fresh); }

int mtft__grad_set(mtft_graph *g, mtft_tensor *t, float *buf) {
    if (!buf || !mtft__needs_grad(t) || t->grad || (t->flags & MTFT_TF_PARAM) || g->status < 0) return 0;
    t->grad = buf;
    return 1;
}

int mtft__grad_adopt(mtft_graph *g, mtft_node *n, mtft_tensor *t) {
    mtft_tensor *o = n->out;
    if (!n->produces || !(o->flags & MTFT_TF_TRANSIENT) || (o->flags & MTFT_TF_PARAM) || !o->grad) return 0;
    if (!mtft__needs_grad(t) || t->grad || (t->flags & MTFT_TF_PARAM) || t == o) return 0;
    if (mtft__numel(t) != mtft__numel(o) || g->status < 0) return 0;
    t->grad = o->grad;
    o->grad = NULL;
    return 1;
}

int mtft_graph_backward(mtft_graph *g, mtft_tensor *loss, const float *seed) {
    MTFT_CHECK_ARG(g && loss);
    if (g->status < 0)
        return mtft__err(g->status, "backward: the graph is in error (%s); reset it", mtft_status_str(g->status));
    if (!mtft__needs_grad(loss))
        return mtft__err(MTFT_EINVAL, "backward: the loss does not depend on any tensor that requires a gradient "
                                      "(are all parameter groups frozen?)");
    if (!seed && mtft__numel(loss) != 1)
        return mtft__err(MTFT_ESHAPE, "backward: loss has %lld elements; pass a seed gradient for a non-scalar",
                         (long long)mtft__numel(loss));
    g->n_split_touched = 0;
    g->n_pool = 0;
    float *dl = mtft__grad(g, loss);
    if (!dl) return g->status ? g->status : MTFT_ENOMEM;
    int64_t n = mtft__numel(loss);
    for (int64_t i = 0; i < n; i++) dl[i] += seed ? seed[i] : 1.0f;
    /* The tape is in execution order, a topological order: every consumer of
     * a tensor comes after its producer, so in reverse every gradient is
     * complete before it is propagated. */
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        mtft_node *nd = &g->nodes[i];
        if (!nd->out->grad) continue; /* nothing flowed into this node */
        int rc = nd->op->backward(g, nd);
        if (rc < 0) {
            g->status = rc;
            mtft__err_prefix("backward of '%s'", nd->op->name);
            return rc;
        }
        if (g->status < 0) return g->status;
        /* every consumer of a transient output ran before its producer: its
         * gradient is dead now, and its buffer can serve the next one */
        mtft_tensor *o = nd->out;
        if (nd->produces && (o->flags & MTFT_TF_TRANSIENT) && !(o->flags & MTFT_TF_PARAM) && o->grad && o != loss &&
            g->n_pool < (int)(sizeof g->pool_p / sizeof g->pool_p[0])) {
            g->pool_p[g->n_pool] = o->grad;
            g->pool_n[g->n_pool++] = mtft__numel(o);
            o->grad = NULL;
        }
    }
    g->n_pool = 0;
    for (int i = 0; i < g->n_split_touched; i++)
        if (g->split_touched[i]->grad && g->split_touched[i]->split_grad) split_reduce(g->split_touched[i]);
    g->n_split_touched = 0;
    return MTFT_OK;
}
