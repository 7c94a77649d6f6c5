/* Writing a merge of LoRA adapters back as a rank-r PEFT adapter: the merged
 * delta of each touched weight, in nn.Linear orientation [out, in], is
 * factored by truncated SVD, delta ~= U_r S_r V_r^T, as B = U_r S_r^(1/2)
 * [out, r] and A = S_r^(1/2) V_r^T [r, in] with lora_alpha = r (scale 1). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peft/lora_shared.h" /* PEFT's adapter_config.json; peft sits below merge */
#include "merger_impl.h"

/* The part of a module path after its last all-digit component (the layer
 * index): "transformer.h.3.attn.c_attn" -> "attn.c_attn", layer 3. Without
 * a numeric component: the last component, layer -1. */
static const char *module_target(const char *mod, int *layer) {
    const char *best = NULL;
    *layer = -1;
    const char *p = mod;
    while (*p) {
        const char *e = strchr(p, '.');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int digits = len > 0;
        for (size_t i = 0; i < len; i++)
            if (p[i] < '0' || p[i] > '9') digits = 0;
        if (digits && e) {
            best = e + 1;
            *layer = atoi(p);
        }
        if (!e) break;
        p = e + 1;
    }
    if (best) return best;
    const char *dot = strrchr(mod, '.');
    return dot ? dot + 1 : mod;
}

int mtft_merger_save_lora(mtft_merger *m, const char *dir, int rank) {
    MTFT_CHECK_ARG(m && dir && *dir);
    if (rank < 1) return mtft__err(MTFT_ERANGE, "merge save_lora: rank must be >= 1 (got %d)", rank);
    int rc = mtft_merge__prepare(m);
    if (rc < 0) return rc;
    for (int t = 0; t < m->n_in; t++)
        if (!m->in[t].is_adapter)
            return mtft__err(MTFT_EINVAL,
                             "merge save_lora: input %d ('%s') is a full model; a LoRA output needs adapters only "
                             "(write full weights with mtft_merger_save)",
                             t, m->in[t].path);
    const mtft_safetensors *ref = m->base;
    int nt = mtft_safetensors_count(ref);
    /* which base tensors are touched, and by which pair first */
    const merge_pair **first = mtft__calloc((size_t)nt + 1, sizeof *first);
    if (!first) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    int n_touched = 0;
    for (int t = 0; t < m->n_in; t++)
        for (int q = 0; q < m->in[t].n_pairs; q++) {
            const merge_pair *pr = &m->in[t].pairs[q];
            if (!first[pr->base_idx]) {
                first[pr->base_idx] = pr;
                n_touched++;
            }
        }
    int64_t mx = mtft_merge__max_numel(m);
    size_t nn = (size_t)(2 * n_touched + 1);
    float **data = mtft__calloc(nn, sizeof *data);
    char **names = mtft__calloc(nn, sizeof *names);
    int *ndims = mtft__calloc(nn, sizeof *ndims);
    int64_t *shapes = mtft__calloc(nn * 2, sizeof *shapes);
    const int64_t **shp = mtft__calloc(nn, sizeof *shp);
    float *work = mtft__malloc((size_t)(m->n_in + 1) * (size_t)mx * sizeof *work);
    float *delta = mtft__malloc((size_t)mx * sizeof *delta), *lin = mtft__malloc((size_t)mx * sizeof *lin);
    char *path = NULL;
    int n_out = 0, any_conv = 0;
    int layer_seen[4096] = {0}, max_layer_base = -1, max_layer = -1;
    if (!data || !names || !ndims || !shapes || !shp || !work || !delta || !lin) {
        rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
        goto done;
    }
    const char *targets[256];
    int n_targets = 0;
    for (int i = 0; i < nt && rc == MTFT_OK; i++) {
        int lay;
        module_target(mtft_safetensors_name(ref, i), &lay);
        if (lay > max_layer_base) max_layer_base = lay;
        const merge_pair *pr = first[i];
        if (!pr) continue;
        int64_t O = pr->out_f, I = pr->in_f, mn = O < I ? O : I;
        if (rank > mn) {
            rc = mtft__err(MTFT_ERANGE, "merge save_lora: rank %d exceeds min(out %lld, in %lld) of '%s'", rank,
                           (long long)O, (long long)I, mtft_safetensors_name(ref, i));
            break;
        }
        int touched = 0;
        if ((rc = mtft_merge__tensor(m, i, delta, O * I, 1, &touched, work)) < 0) break;
        /* Linear orientation [O, I] */
        for (int64_t o = 0; o < O; o++)
            for (int64_t c = 0; c < I; c++) lin[o * I + c] = pr->conv1d ? delta[c * O + o] : delta[o * I + c];
        any_conv |= pr->conv1d;
        float *A = mtft__malloc((size_t)(rank * I) * sizeof *A), *B = mtft__malloc((size_t)(O * rank) * sizeof *B);
        float *S = mtft__malloc((size_t)rank * sizeof *S);
        size_t ml = strlen(pr->module) + 40;
        char *na = mtft__malloc(ml), *nb = mtft__malloc(ml);
        data[n_out] = A;
        data[n_out + 1] = B;
        names[n_out] = na;
        names[n_out + 1] = nb;
        if (!A || !B || !S || !na || !nb) {
            mtft__free(S);
            rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
            n_out += 2;
            break;
        }
        snprintf(na, ml, "base_model.model.%s.lora_A.weight", pr->module);
        snprintf(nb, ml, "base_model.model.%s.lora_B.weight", pr->module);
        /* SVD into U (in B's place) and Vt (in A's place), then split sqrt(S) */
        rc = mtft_merge__svd(lin, O, I, rank, m->o.seed ^ (uint64_t)i, B, S, A);
        if (rc == MTFT_OK)
            for (int j = 0; j < rank; j++) {
                float s = sqrtf(S[j]);
                for (int64_t c = 0; c < I; c++) A[(int64_t)j * I + c] *= s;
                for (int64_t o = 0; o < O; o++) B[o * rank + j] *= s;
            }
        mtft__free(S);
        int64_t *sa = shapes + (size_t)n_out * 2, *sb = sa + 2;
        sa[0] = rank, sa[1] = I, sb[0] = O, sb[1] = rank;
        ndims[n_out] = ndims[n_out + 1] = 2;
        shp[n_out] = sa;
        shp[n_out + 1] = sb;
        n_out += 2;
        const char *tg = module_target(pr->module, &lay);
        if (lay > max_layer) max_layer = lay;
        if (lay >= 0 && lay < 4096) layer_seen[lay] = 1;
        int dup = 0;
        for (int k = 0; k < n_targets; k++)
            if (!strcmp(targets[k], tg)) dup = 1;
        if (!dup && n_targets < 256) targets[n_targets++] = tg;
    }
    if (rc < 0) goto done;
    if (n_out == 0) {
        rc = mtft__err(MTFT_EINVAL, "merge save_lora: the adapters touch no base weight");
        goto done;
    }
    if ((rc = mkdir(dir, 0777)) != 0 && errno != EEXIST) {
        rc = mtft__err(MTFT_EIO, "merge save_lora: cannot create directory '%s'", dir);
        goto done;
    }
    rc = MTFT_OK;
    size_t pl = strlen(dir) + 40;
    path = mtft__malloc(pl);
    if (!path) goto oom;
    snprintf(path, pl, "%s/adapter_model.safetensors", dir);
    const char *meta[] = {"format", "pt", "mtft.merge_method", mtft_merge_method_name(m->o.method),
                          "mtft.base_fingerprint", m->fingerprint, NULL};
    if ((rc = mtft_safetensors_save_raw(path, n_out, (const char *const *)names, (const float *const *)data, ndims, shp,
                                        meta)) < 0)
        goto done;
    int all_layers = max_layer_base >= 0 && max_layer_base < 4096;
    for (int l = 0; all_layers && l <= max_layer_base; l++)
        if (!layer_seen[l]) all_layers = 0;
    const char *bm = m->base_name;
    for (int t = 0; !bm && t < m->n_in; t++) bm = m->in[t].base_model;
    mtft_peft__lora_config c = {bm, rank, rank, 0.0, 0, targets, n_targets,
                                all_layers || max_layer < 0 ? NULL : layer_seen, max_layer < 4096 ? max_layer + 1 : 4096,
                                any_conv, "merge save_lora"};
    rc = mtft_peft__lora_write_config(dir, &c);
    goto done;
oom:
    rc = mtft__err(MTFT_ENOMEM, "merge save_lora: out of memory");
done:
    for (int i = 0; i < n_out; i++) {
        mtft__free(data[i]);
        mtft__free(names[i]);
    }
    mtft__free(data);
    mtft__free(names);
    mtft__free(ndims);
    mtft__free(shapes);
    mtft__free((void *)shp);
    mtft__free(work);
    mtft__free(delta);
    mtft__free(lin);
    mtft__free((void *)first);
    mtft__free(path);
    return rc;
}
