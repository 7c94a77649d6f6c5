/* Bottleneck adapters, (IA)3, Poly / MHR and ScaLearn: creation and
 * initialisation. Their forward lives in the hooks (peft.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peft_impl.h"

static void fill_normal(mtft_tensor *t, float std, mtft_rng *rng) {
    int64_t n = mtft__numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = std == 0.0f ? 0.0f : (float)(mtft_rng_normal(rng) * std);
}

/* ---- freeing (NULL-safe; used by the failure paths below and mtft_peft_free) ---- */

void mtft_peft__adapter_free(mtft_peft_adapter *a) {
    if (!a) return;
    mtft_param_group_free(a->pg);
    mtft__free(a->down_w);
    mtft__free(a->down_b);
    mtft__free(a->up_w);
    mtft__free(a->up_b);
    mtft__free(a);
}

void mtft_peft__ia3_free(mtft_peft_ia3 *ia) {
    if (!ia) return;
    mtft_param_group_free(ia->pg);
    mtft__free(ia->k);
    mtft__free(ia->v);
    mtft__free(ia->ff);
    mtft__free(ia);
}

void mtft_peft__poly_free(mtft_peft_poly *po) {
    if (!po) return;
    mtft_param_group_free(po->pg);
    mtft__free(po->A);
    mtft__free(po->B);
    mtft__free(po->logits);
    mtft__free(po);
}

void mtft_peft__scalearn_free(mtft_peft_scalearn *sl) {
    if (!sl) return;
    mtft_param_group_free(sl->pg);
    mtft__free(sl->sources);
    mtft__free(sl->scale);
    mtft__free(sl);
}

/* ---- bottleneck adapters ---------------------------------------------------------- */

int mtft_peft_add_adapter(mtft_peft *p, int task, const mtft_adapter_options *o, mtft_param_group **group) {
    int rc = mtft_peft__check_task(p, task, 0, "peft add_adapter");
    if (rc < 0) return rc;
    if (group) *group = NULL;
    mtft_adapter_options def = MTFT_ADAPTER_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version < 1 || o->version > MTFT_ADAPTER_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "adapter options: unknown version %d", o->version);
    if (o->placement != MTFT_ADAPTER_HOULSBY && o->placement != MTFT_ADAPTER_PFEIFFER)
        return mtft__err(MTFT_EINVAL, "adapter options: unknown placement %d", (int)o->placement);
    if (o->act != MTFT_PEFT_ACT_RELU && o->act != MTFT_PEFT_ACT_GELU && o->act != MTFT_PEFT_ACT_SILU)
        return mtft__err(MTFT_EINVAL, "adapter options: unknown nonlinearity %d", (int)o->act);
    if (o->reduction_factor < 1)
        return mtft__err(MTFT_EINVAL, "adapter options: reduction_factor %d must be >= 1", o->reduction_factor);
    if (!(o->down_std >= 0.0f) || !(o->up_std >= 0.0f))
        return mtft__err(MTFT_EINVAL, "adapter options: init std must be >= 0");
    if (p->adapter[task]) return mtft__err(MTFT_ESTATE, "peft add_adapter: task %d already has an adapter", task);
    if (p->scalearn[task])
        return mtft__err(MTFT_ESTATE, "peft add_adapter: task %d is a ScaLearn target (no adapter of its own)", task);
    int64_t C = p->m->cfg.n_embd, Mb = C / o->reduction_factor;
    if (Mb < 1) Mb = 1;
    mtft_peft_adapter *a = mtft__calloc(1, sizeof *a);
    if (!a) return MTFT_ENOMEM;
    char gname[48];
    snprintf(gname, sizeof gname, "adapter.task%d", task);
    a->o = *o;
    a->pg = mtft_peft__group(gname);
    size_t L = (size_t)p->n_layer;
    a->down_w = mtft__calloc(L, sizeof *a->down_w);
    a->down_b = mtft__calloc(L, sizeof *a->down_b);
    a->up_w = mtft__calloc(L, sizeof *a->up_w);
    a->up_b = mtft__calloc(L, sizeof *a->up_b);
    rc = MTFT_ENOMEM;
    if (!a->pg || !a->down_w || !a->down_b || !a->up_w || !a->up_b) goto fail;
    static const char *const where[2] = {"attn", "mlp"};
    for (int l = 0; l < p->n_layer; l++)
        for (int pos = o->placement == MTFT_ADAPTER_HOULSBY ? 0 : 1; pos < 2; pos++) {
            char name[64];
            int64_t sd[2] = {Mb, C}, su[2] = {C, Mb};
            snprintf(name, sizeof name, "%d.%s.down.weight", l, where[pos]);
            a->down_w[l][pos] = mtft_param_group_add(a->pg, name, 2, sd);
            snprintf(name, sizeof name, "%d.%s.down.bias", l, where[pos]);
            a->down_b[l][pos] = mtft_param_group_add(a->pg, name, 1, &Mb);
            snprintf(name, sizeof name, "%d.%s.up.weight", l, where[pos]);
            a->up_w[l][pos] = mtft_param_group_add(a->pg, name, 2, su);
            snprintf(name, sizeof name, "%d.%s.up.bias", l, where[pos]);
            a->up_b[l][pos] = mtft_param_group_add(a->pg, name, 1, &C);
            if (!a->down_w[l][pos] || !a->down_b[l][pos] || !a->up_w[l][pos] || !a->up_b[l][pos]) {
                rc = mtft_error_last()->code;
                goto fail;
            }
        }
    if ((rc = mtft_param_group_alloc(a->pg)) < 0) goto fail;
    mtft_rng rng;
    mtft_rng_seed(&rng, o->seed);
    for (int l = 0; l < p->n_layer; l++)
        for (int pos = 0; pos < 2; pos++)
            if (a->down_w[l][pos]) {
                fill_normal(a->down_w[l][pos], o->down_std, &rng);
                fill_normal(a->up_w[l][pos], o->up_std, &rng);
            }
    p->adapter[task] = a;
    if (group) *group = a->pg;
    return MTFT_OK;
fail:
    mtft_peft__adapter_free(a);
    return rc < 0 ? rc : MTFT_ERROR;
}

/* ---- (IA)3 -------------------------------------------------------------------------- */

int mtft_peft_add_ia3(mtft_peft *p, int task, mtft_param_group **group) {
    int rc = mtft_peft__check_task(p, task, 0, "peft add_ia3");
    if (rc < 0) return rc;
    if (group) *group = NULL;
    if (p->ia3[task]) return mtft__err(MTFT_ESTATE, "peft add_ia3: task %d already has (IA)3 vectors", task);
    const mtft_model_config *c = &p->m->cfg;
    int64_t Dkv = (int64_t)(c->n_embd / c->n_head) * c->n_kv_head, F = c->n_ff;
    mtft_peft_ia3 *ia = mtft__calloc(1, sizeof *ia);
    if (!ia) return MTFT_ENOMEM;
    char gname[48];
    snprintf(gname, sizeof gname, "ia3.task%d", task);
    ia->pg = mtft_peft__group(gname);
    ia->k = mtft__calloc((size_t)p->n_layer, sizeof *ia->k);
    ia->v = mtft__calloc((size_t)p->n_layer, sizeof *ia->v);
    ia->ff = mtft__calloc((size_t)p->n_layer, sizeof *ia->ff);
    rc = MTFT_ENOMEM;
    if (!ia->pg || !ia->k || !ia->v || !ia->ff) goto fail;
    for (int l = 0; l < p->n_layer; l++) {
        char name[64];
        snprintf(name, sizeof name, "%d.ia3_k", l);
        ia->k[l] = mtft_param_group_add(ia->pg, name, 1, &Dkv);
        snprintf(name, sizeof name, "%d.ia3_v", l);
        ia->v[l] = mtft_param_group_add(ia->pg, name, 1, &Dkv);
        snprintf(name, sizeof name, "%d.ia3_ff", l);
        ia->ff[l] = mtft_param_group_add(ia->pg, name, 1, &F);
        if (!ia->k[l] || !ia->v[l] || !ia->ff[l]) {
            rc = mtft_error_last()->code;
            goto fail;
        }
    }
    if ((rc = mtft_param_group_alloc(ia->pg)) < 0) goto fail;
    size_t n;
    float *d = mtft_param_group_data(ia->pg, &n);
    for (size_t i = 0; i < n; i++) d[i] = 1.0f;
    p->ia3[task] = ia;
    if (group) *group = ia->pg;
    return MTFT_OK;
fail:
    mtft_peft__ia3_free(ia);
    return rc < 0 ? rc : MTFT_ERROR;
}

/* ---- Poly ---------------------------------------------------------------------------- */

int mtft_peft_add_poly(mtft_peft *p, const mtft_poly_options *o, mtft_param_group **group) {
    MTFT_CHECK_ARG(p);
    if (group) *group = NULL;
    mtft_poly_options def = MTFT_POLY_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version < 1 || o->version > MTFT_POLY_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "poly options: unknown version %d", o->version);
    if (o->rank < 1 || o->n_skills < 1 || o->n_splits < 1)
        return mtft__err(MTFT_EINVAL, "poly options: rank %d, n_skills %d, n_splits %d must be >= 1", o->rank,
                         o->n_skills, o->n_splits);
    if (o->routing != MTFT_POLY_SIGMOID && o->routing != MTFT_POLY_SOFTMAX)
        return mtft__err(MTFT_EINVAL, "poly options: unknown routing %d", (int)o->routing);
    if (!o->target_modules || !*o->target_modules) return mtft__err(MTFT_EINVAL, "poly options: target_modules is empty");
    if (p->poly) return mtft__err(MTFT_ESTATE, "peft add_poly: a Poly inventory exists already");
    int n_slots = p->n_layer * p->n_mod;
    mtft_peft_poly *po = mtft__calloc(1, sizeof *po);
    if (!po) return MTFT_ENOMEM;
    po->o = *o;
    po->o.target_modules = NULL; /* not kept */
    po->o.layers = NULL;
    po->pg = mtft_peft__group("poly");
    po->A = mtft__calloc((size_t)n_slots, sizeof *po->A);
    po->B = mtft__calloc((size_t)n_slots, sizeof *po->B);
    po->logits = mtft__calloc((size_t)n_slots, sizeof *po->logits);
    int rc = MTFT_ENOMEM, found = 0;
    if (!po->pg || !po->A || !po->B || !po->logits) goto fail;
    int64_t S = o->n_splits, Q = o->n_skills, R = o->rank;
    for (int l = 0; l < p->n_layer; l++) {
        int sel = mtft_peft__layer_selected(o->layers, l, p->n_layer);
        if (sel < 0) {
            rc = MTFT_EINVAL;
            goto fail;
        }
        for (int mi = 0; mi < p->n_mod && sel; mi++) {
            if (!mtft_peft__match(o->target_modules, p->mod_names[mi])) continue;
            int64_t in, out;
            mtft_peft__mod_dims(p, mi, &in, &out);
            if (in % S || out % S) {
                rc = mtft__err(MTFT_EINVAL, "poly options: n_splits %lld does not divide %s's in (%lld) and out (%lld) "
                               "features", (long long)S, p->mod_names[mi], (long long)in, (long long)out);
                goto fail;
            }
            int i = l * p->n_mod + mi;
            char name[64];
            /* stored as [S, Q, D]: D = in/S*R (A) and R*out/S (B), PEFT's
             * [S, Q, in/S, R] and [S, Q, R, out/S] flattened */
            int64_t sa[3] = {S, Q, in / S * R}, sb[3] = {S, Q, R * (out / S)}, sl[2] = {p->n_tasks, S * Q};
            snprintf(name, sizeof name, "%d.%s.poly_lora_A", l, p->mod_names[mi]);
            po->A[i] = mtft_param_group_add(po->pg, name, 3, sa);
            snprintf(name, sizeof name, "%d.%s.poly_lora_B", l, p->mod_names[mi]);
            po->B[i] = mtft_param_group_add(po->pg, name, 3, sb);
            snprintf(name, sizeof name, "%d.%s.module_logits", l, p->mod_names[mi]);
            po->logits[i] = mtft_param_group_add(po->pg, name, 2, sl);
            if (!po->A[i] || !po->B[i] || !po->logits[i]) {
                rc = mtft_error_last()->code;
                goto fail;
            }
            found++;
        }
    }
    if (!found) {
        rc = mtft__err(MTFT_ENOTFOUND, "poly options: target_modules '%s' matches no module", o->target_modules);
        goto fail;
    }
    if ((rc = mtft_param_group_alloc(po->pg)) < 0) goto fail;
    mtft_rng rng;
    mtft_rng_seed(&rng, o->seed);
    for (int i = 0; i < n_slots; i++) {
        if (!po->A[i]) continue;
        int64_t in, out;
        mtft_peft__mod_dims(p, i % p->n_mod, &in, &out);
        /* PEFT: per split and skill, kaiming_uniform_(a=sqrt(5)) of an [r, in/S]
         * matrix stored transposed: iid U(-b, b), b = 1/sqrt(in/S) */
        int64_t per = in / S * R;
        for (int64_t sq = 0; sq < S * Q; sq++) mtft_peft__kaiming(po->A[i]->data + sq * per, per, in / S, &rng);
        int64_t nl = mtft__numel(po->logits[i]);
        for (int64_t j = 0; j < nl; j++) po->logits[i]->data[j] = (2.0f * mtft_rng_uniform(&rng) - 1.0f) * 1e-3f;
    }
    p->poly = po;
    if (group) *group = po->pg;
    return MTFT_OK;
fail:
    mtft_peft__poly_free(po);
    return rc < 0 ? rc : MTFT_ERROR;
}

/* ---- ScaLearn --------------------------------------------------------------------------- */

int mtft_peft_add_scalearn(mtft_peft *p, int target_task, const int *sources, int n_sources,
                           mtft_param_group **group) {
    int rc = mtft_peft__check_task(p, target_task, 0, "peft add_scalearn");
    if (rc < 0) return rc;
    if (group) *group = NULL;
    if (!sources || n_sources < 1) return mtft__err(MTFT_EINVAL, "peft add_scalearn: no source tasks");
    if (p->scalearn[target_task])
        return mtft__err(MTFT_ESTATE, "peft add_scalearn: task %d already has ScaLearn", target_task);
    if (p->adapter[target_task])
        return mtft__err(MTFT_ESTATE, "peft add_scalearn: target task %d has an adapter of its own", target_task);
    int placement = -1;
    for (int j = 0; j < n_sources; j++) {
        int s = sources[j];
        if (s < 0 || s >= p->n_tasks || s == target_task || !p->adapter[s])
            return mtft__err(MTFT_EINVAL, "peft add_scalearn: source %d (task %d) is not another task with a "
                             "bottleneck adapter", j, s);
        if (placement >= 0 && (int)p->adapter[s]->o.placement != placement)
            return mtft__err(MTFT_EINVAL, "peft add_scalearn: the source adapters mix Houlsby and Pfeiffer placements");
        placement = (int)p->adapter[s]->o.placement;
    }
    mtft_peft_scalearn *sl = mtft__calloc(1, sizeof *sl);
    if (!sl) return MTFT_ENOMEM;
    char gname[48];
    snprintf(gname, sizeof gname, "scalearn.task%d", target_task);
    sl->pg = mtft_peft__group(gname);
    sl->sources = mtft__malloc((size_t)n_sources * sizeof *sl->sources);
    sl->scale = mtft__calloc((size_t)p->n_layer, sizeof *sl->scale);
    sl->n_sources = n_sources;
    rc = MTFT_ENOMEM;
    if (!sl->pg || !sl->sources || !sl->scale) goto fail;
    memcpy(sl->sources, sources, (size_t)n_sources * sizeof *sources);
    static const char *const where[2] = {"attn", "mlp"};
    int64_t shp[2] = {n_sources, p->m->cfg.n_embd};
    for (int l = 0; l < p->n_layer; l++)
        for (int pos = placement == MTFT_ADAPTER_HOULSBY ? 0 : 1; pos < 2; pos++) {
            char name[64];
            snprintf(name, sizeof name, "%d.%s.scale", l, where[pos]);
            if (!(sl->scale[l][pos] = mtft_param_group_add(sl->pg, name, 2, shp))) {
                rc = mtft_error_last()->code;
                goto fail;
            }
        }
    if ((rc = mtft_param_group_alloc(sl->pg)) < 0) goto fail;
    size_t n;
    float *d = mtft_param_group_data(sl->pg, &n);
    for (size_t i = 0; i < n; i++) d[i] = 1.0f / (float)n_sources;
    p->scalearn[target_task] = sl;
    if (group) *group = sl->pg;
    return MTFT_OK;
fail:
    mtft_peft__scalearn_free(sl);
    return rc < 0 ? rc : MTFT_ERROR;
}
