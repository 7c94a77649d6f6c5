/* The PEFT object: attach/detach, mixed-task batches, name patterns, and
 * the projection hooks that run each task's modules on its own rows.
 *
 * At each projection (mtft_nn__proj) of layer l, module name n:
 *   in-hook:  (IA)3 ff: x rows of task k *= l_ff_k            (MLP down projection input)
 *   hook:     1. y += shared LoRA(x) on all rows; y rows of task k += LoRA_k(x_k)
 *                (one in-place fused node, lora_fused.c: small-rank kernels per task's
 *                rows, where they have AVX-512 kernels for the rank); other ranks, LoRAs
 *                with active dropout and Poly_k(x_k) go through the in-place lora_add
 *                node (a GEMM per task)
 *             2. (IA)3: y rows of task k *= (1, l_k, l_v)  (k/v projections)
 *             3. adapters at the attention / MLP output: y_k += up(act(down(y_k)));
 *                ScaLearn targets: y_t = sum_j w_j (y_t + adapter_j(y_t))
 * x_k, y_k are row slices (views) of the task's sequences; every per-task
 * GEMM runs on those rows only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_impl.h"

static const char *const gpt2_mods[] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
static const char *const llama_mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};

/* ---- names and layers ---------------------------------------------------- */

/* Glob with '*' over [p, pe) against [s, se). */
static int glob(const char *p, const char *pe, const char *s, const char *se) {
    while (p < pe) {
        if (*p == '*') {
            p++;
            for (const char *t = s; t <= se; t++)
                if (glob(p, pe, t, se)) return 1;
            return 0;
        }
        if (s == se || *p != *s) return 0;
        p++;
        s++;
    }
    return s == se;
}

int mtft_peft__match(const char *pattern, const char *name) {
    if (!pattern || !name) return 0;
    const char *se = name + strlen(name);
    const char *a = pattern;
    for (;;) {
        const char *b = strchr(a, '|');
        const char *ae = b ? b : a + strlen(a);
        if (ae > a) {
            if (glob(a, ae, name, se)) return 1;
            for (const char *d = name; *d; d++) /* suffix after a '.' */
                if (*d == '.' && glob(a, ae, d + 1, se)) return 1;
        }
        if (!b) return 0;
        a = b + 1;
    }
}

int mtft_peft__layer_selected(const char *layers, int l, int n_layer) {
    if (!layers || !*layers) return 1;
    const char *s = layers;
    int hit = 0;
    while (*s) {
        char *e;
        long a = strtol(s, &e, 10), b = a;
        if (e == s) goto bad;
        s = e;
        if (*s == '-') {
            s++;
            b = strtol(s, &e, 10);
            if (e == s) goto bad;
            s = e;
        }
        if (a < 0 || b < a || b >= n_layer) goto bad;
        if (l >= a && l <= b) hit = 1;
        if (*s == ',') s++;
        else if (*s) goto bad;
    }
    return hit;
bad:
    mtft__err(MTFT_EINVAL, "peft: layer list '%s' is malformed at offset %d (want e.g. \"0,2-3\" with layers < %d)",
              layers, (int)(s - layers), n_layer);
    return -1;
}

int mtft_peft__mod_index(const mtft_peft *p, const char *name) {
    for (int i = 0; i < p->n_mod; i++)
        if (strcmp(p->mod_names[i], name) == 0) return i;
    return -1;
}

void mtft_peft__mod_dims(const mtft_peft *p, int mi, int64_t *in, int64_t *out) {
    const mtft_model_config *c = &p->m->cfg;
    int64_t C = c->n_embd, F = c->n_ff, Dkv = (int64_t)(c->n_embd / c->n_head) * c->n_kv_head;
    if (c->arch == MTFT_ARCH_GPT2) {
        static const int ins[] = {0, 0, 0, 1}, outs[] = {3, 0, 1, 0}; /* 0: C, 1: F, 3: 3C */
        *in = ins[mi] ? F : C;
        *out = outs[mi] == 3 ? 3 * C : outs[mi] == 1 ? F : C;
        return;
    }
    switch (mi) {
    case 0: case 3: *in = C; *out = C; break;
    case 1: case 2: *in = C; *out = Dkv; break;
    case 4: case 5: *in = C; *out = F; break;
    default: *in = F; *out = C; break;
    }
}

mtft_tensor *mtft_peft__base_weight(const mtft_peft *p, int l, int mi) {
    const mtft_nn_layer *L = &p->m->layers[l];
    if (p->m->cfg.arch == MTFT_ARCH_GPT2) {
        mtft_tensor *w[] = {L->qkv_w, L->o_w, L->fc_w, L->down_w};
        return w[mi];
    }
    mtft_tensor *w[] = {L->q_w, L->k_w, L->v_w, L->o_w, L->gate_w, L->up_w, L->down_w};
    return w[mi];
}

void mtft_peft__kaiming(float *w, int64_t n, int64_t fan_in, mtft_rng *rng) {
    /* kaiming_uniform_(a=sqrt(5)): gain = sqrt(2/(1+a^2)) = sqrt(1/3),
     * bound = gain * sqrt(3/fan_in) = 1/sqrt(fan_in) */
    float bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < n; i++) w[i] = (2.0f * mtft_rng_uniform(rng) - 1.0f) * bound;
}

mtft_param_group *mtft_peft__group(const char *name) {
    mtft_param_group *pg = NULL;
    if (mtft_param_group_new(&pg, name) < 0) return NULL;
    return pg;
}

int mtft_peft__check_task(const mtft_peft *p, int task, int allow_shared, const char *what) {
    if (!p) return mtft__err(MTFT_EINVAL, "%s: NULL peft", what);
    if (task == MTFT_PEFT_SHARED && allow_shared) return MTFT_OK;
    if (task < 0 || task >= p->n_tasks)
        return mtft__err(MTFT_ERANGE, "%s: task %d outside 0..%d%s", what, task, p->n_tasks - 1,
                         allow_shared ? " (or MTFT_PEFT_SHARED)" : "");
    return MTFT_OK;
}

/* ---- object ------------------------------------------------------------------- */

int mtft_peft_new(mtft_peft **out, mtft_model *m, int n_tasks) {
    MTFT_CHECK_ARG(out && m);
    *out = NULL;
    if (n_tasks < 1 || n_tasks > 65536) return mtft__err(MTFT_ERANGE, "peft: n_tasks %d outside 1..65536", n_tasks);
    if (m->proj_hook || m->proj_in_hook)
        return mtft__err(MTFT_ESTATE, "peft: the model already has projection hooks (another mtft_peft?)");
    mtft_peft *p = mtft__calloc(1, sizeof *p);
    if (!p) return MTFT_ENOMEM;
    p->m = m;
    p->n_tasks = n_tasks;
    p->n_layer = m->cfg.n_layer;
    if (m->cfg.arch == MTFT_ARCH_GPT2) {
        p->mod_names = gpt2_mods;
        p->n_mod = 4;
    } else {
        p->mod_names = llama_mods;
        p->n_mod = 7;
    }
    size_t K = (size_t)n_tasks;
    p->lora = mtft__calloc(K, sizeof *p->lora);
    p->adapter = mtft__calloc(K, sizeof *p->adapter);
    p->ia3 = mtft__calloc(K, sizeof *p->ia3);
    p->scalearn = mtft__calloc(K, sizeof *p->scalearn);
    p->offsets = mtft__calloc(K + 1, sizeof *p->offsets);
    p->off64 = mtft__calloc(K + 1, sizeof *p->off64);
    if (!p->lora || !p->adapter || !p->ia3 || !p->scalearn || !p->offsets || !p->off64) {
        mtft_peft_free(p);
        return MTFT_ENOMEM;
    }
    m->proj_hook = mtft_peft__proj_hook;
    m->proj_in_hook = mtft_peft__proj_in_hook;
    m->proj_payload = p;
    *out = p;
    return MTFT_OK;
}

void mtft_peft_free(mtft_peft *p) {
    if (!p) return;
    if (p->m && p->m->proj_payload == p) {
        p->m->proj_hook = NULL;
        p->m->proj_in_hook = NULL;
        p->m->proj_payload = NULL;
    }
    int slots = p->n_layer * p->n_mod;
    mtft_peft__lora_free(p->shared, slots);
    for (int k = 0; k < p->n_tasks; k++) {
        if (p->lora) mtft_peft__lora_free(p->lora[k], slots);
        if (p->adapter) mtft_peft__adapter_free(p->adapter[k]);
        if (p->ia3) mtft_peft__ia3_free(p->ia3[k]);
        if (p->scalearn) mtft_peft__scalearn_free(p->scalearn[k]);
    }
    mtft_peft__poly_free(p->poly);
    mtft__free(p->lora);
    mtft__free(p->adapter);
    mtft__free(p->ia3);
    mtft__free(p->scalearn);
    mtft__free(p->offsets);
    mtft__free(p->off64);
    mtft__free(p);
}

int mtft_peft_n_tasks(const mtft_peft *p) { return p ? p->n_tasks : 0; }

/* ---- batches ------------------------------------------------------------------ */

int mtft_peft_group_rows(const int32_t *task_ids, int B, int n_tasks, int32_t *perm, int32_t *inv,
                         int32_t *row_offsets) {
    MTFT_CHECK_ARG(task_ids && row_offsets);
    if (B < 0 || n_tasks < 1) return mtft__err(MTFT_EINVAL, "peft group_rows: B %d, n_tasks %d", B, n_tasks);
    for (int b = 0; b < B; b++)
        if (task_ids[b] < 0 || task_ids[b] >= n_tasks)
            return mtft__err(MTFT_ERANGE, "peft group_rows: row %d has task id %d outside 0..%d", b, task_ids[b],
                             n_tasks - 1);
    for (int k = 0; k <= n_tasks; k++) row_offsets[k] = 0;
    for (int b = 0; b < B; b++) row_offsets[task_ids[b] + 1]++;
    for (int k = 0; k < n_tasks; k++) row_offsets[k + 1] += row_offsets[k];
    /* stable counting sort: fill positions in order */
    for (int k = 0, b = 0; k < n_tasks; k++) {
        int pos = row_offsets[k];
        for (b = 0; b < B; b++)
            if (task_ids[b] == k) {
                if (perm) perm[pos] = b;
                if (inv) inv[b] = pos;
                pos++;
            }
    }
    return MTFT_OK;
}

int mtft_peft_set_batch(mtft_peft *p, mtft_graph *g, const int32_t *row_offsets) {
    MTFT_CHECK_ARG(p && row_offsets);
    int K = p->n_tasks;
    if (row_offsets[0] != 0) return mtft__err(MTFT_EINVAL, "peft set_batch: row_offsets[0] = %d, must be 0", row_offsets[0]);
    for (int k = 0; k < K; k++)
        if (row_offsets[k + 1] < row_offsets[k])
            return mtft__err(MTFT_EINVAL, "peft set_batch: row_offsets[%d] = %d < row_offsets[%d] = %d", k + 1,
                             row_offsets[k + 1], k, row_offsets[k]);
    if (row_offsets[K] < 1) return mtft__err(MTFT_EINVAL, "peft set_batch: no rows (row_offsets[%d] = 0)", K);
    if (g) {
        for (int k = 0; k <= K; k++) p->off64[k] = row_offsets[k];
        int rc = mtft_graph_set_row_partition(g, K, p->off64);
        if (rc < 0) return rc;
    }
    memcpy(p->offsets, row_offsets, (size_t)(K + 1) * sizeof *p->offsets);
    p->have_batch = 1;
    return MTFT_OK;
}

int mtft_peft_set_task(mtft_peft *p, mtft_graph *g, int task, int B) {
    int rc = mtft_peft__check_task(p, task, 0, "peft set_task");
    if (rc < 0) return rc;
    if (B < 1) return mtft__err(MTFT_EINVAL, "peft set_task: B %d must be >= 1", B);
    int32_t *off = mtft__malloc((size_t)(p->n_tasks + 1) * sizeof *off);
    if (!off) return MTFT_ENOMEM;
    for (int k = 0; k <= p->n_tasks; k++) off[k] = k <= task ? 0 : B;
    rc = mtft_peft_set_batch(p, g, off);
    mtft__free(off);
    return rc;
}

/* ---- hooks -------------------------------------------------------------------- */

/* The current batch ranges for a forward of ctx->B rows, or NULL (error
 * raised on the graph). */
static const int32_t *batch_rows(mtft_peft *p, mtft_nn_ctx *ctx) {
    if (!p->have_batch) {
        mtft__op_fail(ctx->g, MTFT_ESTATE, "peft: per-task modules need the batch's task ranges "
                      "(mtft_peft_set_batch or mtft_peft_set_task) before the forward");
        return NULL;
    }
    if (p->offsets[p->n_tasks] != ctx->B) {
        mtft__op_fail(ctx->g, MTFT_ESHAPE, "peft: the batch ranges cover %d rows but the forward has B = %d",
                      p->offsets[p->n_tasks], ctx->B);
        return NULL;
    }
    return p->offsets;
}

static mtft_tensor *rows(mtft_graph *g, mtft_tensor *x, int64_t u0, int64_t n) {
    if (!x) return NULL;
    if (u0 == 0 && n == x->ne[0]) return x;
    return mtft_slice(g, x, 0, u0, n);
}

/* LoRA's first half on rows [u0, u0+nu) of x: h = drop(x_rows) A^T [.., R].
 * Without dropout the rows are read in place (lora_down); with it, through
 * a slice and the dropout op. */
static mtft_tensor *lora_h(mtft_graph *g, mtft_tensor *x, mtft_tensor *A, float dropout, int64_t u0, int64_t nu) {
    if (dropout > 0.0f && g->training) return mtft_linear(g, mtft_dropout(g, rows(g, x, u0, nu), dropout), A, NULL);
    return mtft_peft__lora_down(g, x, A, u0, nu);
}

/* Poly for task k on x (its rows): h = x A_k [.., R] and *Bk [R, out], the
 * skills mixed by k's routing; y += h B_k / R is done by lora_add. */
static mtft_tensor *poly_h(mtft_peft *p, mtft_graph *g, mtft_tensor *x, int slot, int k, int64_t in, int64_t out,
                           mtft_tensor **Bk) {
    mtft_peft_poly *po = p->poly;
    int64_t S = po->o.n_splits, R = po->o.rank;
    mtft_tensor *A = mtft_peft__poly_mix(g, po->logits[slot], k, po->A[slot], po->o.routing); /* [S, in/S*R] */
    mtft_tensor *B = mtft_peft__poly_mix(g, po->logits[slot], k, po->B[slot], po->o.routing); /* [S, R*out/S] */
    int64_t sa[2] = {in, R}, sb[3] = {S, R, out / S}, sb2[2] = {R, out};
    A = mtft_reshape(g, A, 2, sa);
    /* PEFT: B.transpose(1, 2).reshape(r, out) of [S, R, out/S] */
    *Bk = mtft_reshape(g, mtft_contiguous(g, mtft_transpose(g, mtft_reshape(g, B, 3, sb), 0, 1)), 2, sb2);
    return mtft_linear_t(g, x, A, NULL);
}

static mtft_tensor *act(mtft_graph *g, mtft_tensor *x, mtft_peft_act a) {
    switch (a) {
    case MTFT_PEFT_ACT_GELU: return mtft_gelu_tanh(g, x);
    case MTFT_PEFT_ACT_SILU: return mtft_silu(g, x);
    default: return mtft_relu(g, x);
    }
}

static mtft_tensor *adapter_delta(mtft_graph *g, mtft_peft_adapter *a, int l, int pos, mtft_tensor *y) {
    mtft_tensor *h = act(g, mtft_linear(g, y, a->down_w[l][pos], a->down_b[l][pos]), a->o.act);
    return mtft_linear(g, h, a->up_w[l][pos], a->up_b[l][pos]);
}

typedef struct entries {
    int n;
    mtft_tensor **src;
    int64_t *u0, *nu;
    int *add;
} entries;

static int entries_init(mtft_graph *g, entries *e, int cap) {
    e->n = 0;
    e->src = mtft__scratch(g, (size_t)cap * sizeof *e->src);
    e->u0 = mtft__scratch(g, (size_t)cap * sizeof *e->u0);
    e->nu = mtft__scratch(g, (size_t)cap * sizeof *e->nu);
    e->add = mtft__scratch(g, (size_t)cap * sizeof *e->add);
    return e->src && e->u0 && e->nu && e->add;
}
static int entries_push(entries *e, mtft_tensor *t, int64_t u0, int64_t nu, int add) {
    if (!t) return 0;
    e->src[e->n] = t;
    e->u0[e->n] = u0;
    e->nu[e->n] = nu;
    e->add[e->n] = add;
    e->n++;
    return 1;
}

/* The IA3 scaling vector of task k for module mi of layer l, or NULL when
 * none; *ok = 0 on error. */
static mtft_tensor *ia3_vec(mtft_peft *p, mtft_graph *g, int k, int l, int mi, int *ok) {
    mtft_peft_ia3 *ia = p->ia3[k];
    *ok = 1;
    if (!ia) return NULL;
    if (p->m->cfg.arch == MTFT_ARCH_GPT2) {
        if (mi != 0) return NULL;
        int64_t C = p->m->cfg.n_embd;
        mtft_tensor *ones = mtft__new(g, 1, &C);
        if (!ones) {
            *ok = 0;
            return NULL;
        }
        for (int64_t i = 0; i < C; i++) ones->data[i] = 1.0f;
        mtft_tensor *parts[3] = {ones, ia->k[l], ia->v[l]};
        mtft_tensor *v = mtft_concat(g, parts, 3, 0);
        if (!v) *ok = 0;
        return v;
    }
    if (mi == 1) return ia->k[l];
    if (mi == 2) return ia->v[l];
    return NULL;
}

mtft_tensor *mtft_peft__proj_hook(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, mtft_tensor *y, void *payload) {
    mtft_peft *p = payload;
    mtft_graph *g = ctx->g;
    int mi = mtft_peft__mod_index(p, name);
    if (mi < 0 || !y) return y;
    int l = ctx->layer, slot = l * p->n_mod + mi, K = p->n_tasks;
    int64_t in, out;
    mtft_peft__mod_dims(p, mi, &in, &out);
    const int32_t *off = NULL;
    entries e;

    /* 1. LoRA (shared, per task) and Poly: in place on the fresh y, one
     * GEMM per task on its rows */
    int need = 0, any = 0;
    if (p->shared && !p->shared->merged && p->shared->A[slot]) any = 1;
    for (int k = 0; k < K; k++)
        if (p->lora[k] && !p->lora[k]->merged && p->lora[k]->A[slot]) need = 1;
    if (p->poly && p->poly->A[slot]) need = 1;
    if (need && !(off = batch_rows(p, ctx))) return NULL;
    if (need || any) {
        int cap = 2 * K + 1, n = 0, nf = 0;
        mtft_tensor **hs = mtft__scratch(g, (size_t)cap * sizeof *hs), **ws = mtft__scratch(g, (size_t)cap * sizeof *ws);
        int64_t *u0s = mtft__scratch(g, (size_t)cap * sizeof *u0s), *nus = mtft__scratch(g, (size_t)cap * sizeof *nus);
        float *scs = mtft__scratch(g, (size_t)cap * sizeof *scs);
        int *wts = mtft__scratch(g, (size_t)cap * sizeof *wts);
        /* LoRAs without active dropout go to one fused node */
        mtft_tensor **fa = mtft__scratch(g, (size_t)cap * sizeof *fa), **fb = mtft__scratch(g, (size_t)cap * sizeof *fb);
        int64_t *fu0 = mtft__scratch(g, (size_t)cap * sizeof *fu0), *fnu = mtft__scratch(g, (size_t)cap * sizeof *fnu);
        float *fsc = mtft__scratch(g, (size_t)cap * sizeof *fsc);
        if (!hs || !ws || !u0s || !nus || !scs || !wts || !fa || !fb || !fu0 || !fnu || !fsc) return NULL;
        const int fusable = mtft__contig(x) && mtft__contig(y) && x->ndim >= 2 && x->ne[0] == y->ne[0] &&
                            mtft__rows(x) == mtft__rows(y);
#define PUSH(h_, w_, u0_, nu_, sc_, wt_)                                                            \
    do {                                                                                            \
        hs[n] = (h_), ws[n] = (w_), u0s[n] = (u0_), nus[n] = (nu_), scs[n] = (sc_), wts[n] = (wt_); \
        if (!hs[n] || !ws[n]) return NULL;                                                          \
        n++;                                                                                        \
    } while (0)
#define PUSH_LORA(lo_, u0_, nu_)                                                                     \
    do {                                                                                             \
        if (fusable && !((lo_)->dropout > 0.0f && g->training) && mtft_peft__lora_fused_fast((lo_)->rank)) { \
            fa[nf] = (lo_)->A[slot], fb[nf] = (lo_)->B[slot], fu0[nf] = (u0_), fnu[nf] = (nu_);       \
            fsc[nf++] = (lo_)->scale;                                                                \
        } else {                                                                                     \
            PUSH(lora_h(g, x, (lo_)->A[slot], (lo_)->dropout, (u0_), (nu_)), (lo_)->B[slot], (u0_), (nu_), \
                 (lo_)->scale, 1);                                                                   \
        }                                                                                            \
    } while (0)
        if (any) PUSH_LORA(p->shared, 0, ctx->B);
        for (int k = 0; k < K && need; k++) {
            int64_t u0 = off[k], nk = off[k + 1] - off[k];
            if (nk == 0) continue;
            mtft_peft_lora *lo = p->lora[k];
            if (lo && !lo->merged && lo->A[slot]) PUSH_LORA(lo, u0, nk);
            if (p->poly && p->poly->A[slot]) {
                mtft_tensor *Bk = NULL;
                mtft_tensor *h = poly_h(p, g, rows(g, x, u0, nk), slot, k, in, out, &Bk);
                PUSH(h, Bk, u0, nk, 1.0f / (float)p->poly->o.rank, 0);
            }
        }
#undef PUSH_LORA
#undef PUSH
        if (nf > 0 && !(y = mtft_peft__lora_fused(g, x, y, nf, fa, fb, fu0, fnu, fsc))) return NULL;
        if (n > 0 && !(y = mtft_peft__lora_add(g, y, n, hs, ws, u0s, nus, scs, wts))) return NULL;
    }

    /* 2. (IA)3 on keys and values */
    need = 0;
    for (int k = 0; k < K; k++)
        if (p->ia3[k]) need = 1;
    int is_kv = p->m->cfg.arch == MTFT_ARCH_GPT2 ? mi == 0 : (mi == 1 || mi == 2);
    if (need && is_kv) {
        if (!(off = batch_rows(p, ctx)) || !entries_init(g, &e, K)) return NULL;
        for (int k = 0; k < K; k++) {
            int64_t u0 = off[k], nk = off[k + 1] - off[k];
            int ok;
            mtft_tensor *v = ia3_vec(p, g, k, l, mi, &ok);
            if (!ok) return NULL;
            if (!v || nk == 0) continue;
            if (!entries_push(&e, mtft_mul(g, rows(g, y, u0, nk), v), u0, nk, 0)) return NULL;
        }
        y = mtft_peft__rows_combine(g, y, e.n, e.src, e.u0, e.nu, e.add);
        if (!y) return NULL;
    }

    /* 3. bottleneck adapters and ScaLearn at the attention / MLP outputs */
    int pos = -1;
    if (p->m->cfg.arch == MTFT_ARCH_GPT2) pos = mi == 1 ? 0 : mi == 3 ? 1 : -1;
    else pos = mi == 3 ? 0 : mi == 6 ? 1 : -1;
    if (pos < 0) return y;
    need = 0;
    for (int k = 0; k < K; k++)
        if ((p->adapter[k] && p->adapter[k]->down_w[l][pos]) || p->scalearn[k]) need = 1;
    if (!need) return y;
    if (!(off = batch_rows(p, ctx)) || !entries_init(g, &e, K)) return NULL;
    for (int k = 0; k < K; k++) {
        int64_t u0 = off[k], nk = off[k + 1] - off[k];
        if (nk == 0) continue;
        mtft_tensor *yk = rows(g, y, u0, nk);
        if (p->adapter[k] && p->adapter[k]->down_w[l][pos]) {
            if (!entries_push(&e, adapter_delta(g, p->adapter[k], l, pos, yk), u0, nk, 1)) return NULL;
        } else if (p->scalearn[k] && p->scalearn[k]->scale[l][pos]) {
            mtft_peft_scalearn *sl = p->scalearn[k];
            mtft_tensor *acc = NULL;
            int64_t C = p->m->cfg.n_embd;
            for (int j = 0; j < sl->n_sources; j++) {
                mtft_peft_adapter *a = p->adapter[sl->sources[j]];
                mtft_tensor *aj = mtft_add(g, yk, adapter_delta(g, a, l, pos, yk));
                mtft_tensor *w = mtft_reshape(g, mtft_slice(g, sl->scale[l][pos], 0, j, 1), 1, &C);
                mtft_tensor *t = mtft_mul(g, aj, w);
                acc = acc ? mtft_add(g, acc, t) : t;
            }
            if (!entries_push(&e, acc, u0, nk, 0)) return NULL;
        }
    }
    return mtft_peft__rows_combine(g, y, e.n, e.src, e.u0, e.nu, e.add);
}

mtft_tensor *mtft_peft__proj_in_hook(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, void *payload) {
    mtft_peft *p = payload;
    mtft_graph *g = ctx->g;
    int mi = mtft_peft__mod_index(p, name);
    int down = p->m->cfg.arch == MTFT_ARCH_GPT2 ? 3 : 6;
    if (mi != down || !x) return x;
    int need = 0, K = p->n_tasks;
    for (int k = 0; k < K; k++)
        if (p->ia3[k]) need = 1;
    if (!need) return x;
    const int32_t *off = batch_rows(p, ctx);
    entries e;
    if (!off || !entries_init(g, &e, K)) return NULL;
    for (int k = 0; k < K; k++) {
        int64_t u0 = off[k], nk = off[k + 1] - off[k];
        if (!p->ia3[k] || nk == 0) continue;
        if (!entries_push(&e, mtft_mul(g, rows(g, x, u0, nk), p->ia3[k]->ff[ctx->layer]), u0, nk, 0)) return NULL;
    }
    return mtft_peft__rows_combine(g, x, e.n, e.src, e.u0, e.nu, e.add);
}
