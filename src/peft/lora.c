/* LoRA: creation (PEFT init), merge / exact unmerge, and PEFT's on-disk
 * format (adapter_model.safetensors + adapter_config.json). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/atomic.h"
#include "../io/json.h"
#include "mtft/io.h"
#include "lora_shared.h"
#include "peft_impl.h"

void mtft_peft__lora_free(mtft_peft_lora *lo, int n_slots) {
    if (!lo) return;
    if (lo->orig)
        for (int i = 0; i < n_slots; i++) mtft__free(lo->orig[i]);
    mtft__free(lo->orig);
    mtft__free(lo->A);
    mtft__free(lo->B);
    mtft__free(lo->targets);
    mtft__free(lo->layers);
    mtft_param_group_free(lo->pg);
    mtft__free(lo);
}

static mtft_peft_lora **lora_slot(mtft_peft *p, int task) { return task == MTFT_PEFT_SHARED ? &p->shared : &p->lora[task]; }

int mtft_peft_add_lora(mtft_peft *p, int task, const mtft_lora_options *o, mtft_param_group **group) {
    int rc = mtft_peft__check_task(p, task, 1, "peft add_lora");
    if (rc < 0) return rc;
    if (group) *group = NULL;
    mtft_lora_options def = MTFT_LORA_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version < 1 || o->version > MTFT_LORA_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "lora options: unknown version %d", o->version);
    if (o->rank < 1) return mtft__err(MTFT_EINVAL, "lora options: rank %d must be >= 1", o->rank);
    if (!isfinite(o->alpha)) return mtft__err(MTFT_EINVAL, "lora options: alpha is not finite");
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f))
        return mtft__err(MTFT_EINVAL, "lora options: dropout %g outside [0, 1)", (double)o->dropout);
    if (!o->target_modules || !*o->target_modules)
        return mtft__err(MTFT_EINVAL, "lora options: target_modules is empty");
    mtft_peft_lora **slotp = lora_slot(p, task);
    if (*slotp) return mtft__err(MTFT_ESTATE, "peft add_lora: task %d already has a LoRA", task);

    int n_slots = p->n_layer * p->n_mod;
    mtft_peft_lora *lo = mtft__calloc(1, sizeof *lo);
    if (!lo) return MTFT_ENOMEM;
    char gname[48];
    if (task == MTFT_PEFT_SHARED) snprintf(gname, sizeof gname, "lora.shared");
    else snprintf(gname, sizeof gname, "lora.task%d", task);
    lo->pg = mtft_peft__group(gname);
    lo->A = mtft__calloc((size_t)n_slots, sizeof *lo->A);
    lo->B = mtft__calloc((size_t)n_slots, sizeof *lo->B);
    lo->orig = mtft__calloc((size_t)n_slots, sizeof *lo->orig);
    lo->targets = mtft__strdup(o->target_modules);
    lo->layers = o->layers ? mtft__strdup(o->layers) : NULL;
    if (!lo->pg || !lo->A || !lo->B || !lo->orig || !lo->targets || (o->layers && !lo->layers)) {
        rc = MTFT_ENOMEM;
        goto fail;
    }
    lo->rank = o->rank;
    lo->alpha = o->alpha;
    lo->dropout = o->dropout;
    lo->use_rslora = o->use_rslora ? 1 : 0;
    lo->scale = mtft_peft__lora_scale(o->alpha, o->rank, lo->use_rslora);
    int found = 0;
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
            char name[64];
            int64_t sa[2] = {o->rank, in}, sb[2] = {out, o->rank};
            snprintf(name, sizeof name, "%d.%s.lora_A", l, p->mod_names[mi]);
            lo->A[l * p->n_mod + mi] = mtft_param_group_add(lo->pg, name, 2, sa);
            snprintf(name, sizeof name, "%d.%s.lora_B", l, p->mod_names[mi]);
            lo->B[l * p->n_mod + mi] = mtft_param_group_add(lo->pg, name, 2, sb);
            if (!lo->A[l * p->n_mod + mi] || !lo->B[l * p->n_mod + mi]) {
                rc = mtft_error_last()->code;
                goto fail;
            }
            found++;
        }
    }
    if (!found) {
        char list[256] = "";
        for (int mi = 0; mi < p->n_mod; mi++) {
            strncat(list, mi ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, p->mod_names[mi], sizeof list - strlen(list) - 1);
        }
        rc = mtft__err(MTFT_ENOTFOUND, "lora options: target_modules '%s' (layers '%s') matches none of the modules "
                       "(%s)", o->target_modules, o->layers ? o->layers : "", list);
        goto fail;
    }
    if ((rc = mtft_param_group_alloc(lo->pg)) < 0) goto fail;
    mtft_rng rng;
    mtft_rng_seed(&rng, o->seed);
    for (int i = 0; i < n_slots; i++)
        if (lo->A[i]) mtft_peft__kaiming(lo->A[i]->data, mtft__numel(lo->A[i]), lo->A[i]->ne[1], &rng);
    *slotp = lo;
    if (group) *group = lo->pg;
    return MTFT_OK;
fail:
    mtft_peft__lora_free(lo, n_slots);
    return rc < 0 ? rc : MTFT_ERROR;
}

/* ---- merge ------------------------------------------------------------------------ */

float mtft_peft__lora_scale(float alpha, int64_t rank, int rslora) {
    return rslora ? alpha / sqrtf((float)rank) : alpha / (float)rank;
}

void mtft_peft__lora_delta_add(float *W, const float *A, const float *B, int64_t R, int64_t in, int64_t out,
                               float scale, int conv1d) {
#pragma omp parallel for if (in * out * R > 1000000)
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < in; j++) {
            double acc = 0.0;
            for (int64_t r = 0; r < R; r++) acc += (double)B[o * R + r] * A[r * in + j];
            W[conv1d ? j * out + o : o * in + j] += (float)(acc * scale);
        }
}

static int get_lora(mtft_peft *p, int task, const char *what, mtft_peft_lora **out) {
    int rc = mtft_peft__check_task(p, task, 1, what);
    if (rc < 0) return rc;
    *out = *lora_slot(p, task);
    if (!*out) return mtft__err(MTFT_ENOTFOUND, "%s: task %d has no LoRA", what, task);
    return MTFT_OK;
}

int mtft_peft_lora_merge(mtft_peft *p, int task) {
    mtft_peft_lora *lo;
    int rc = get_lora(p, task, "peft lora_merge", &lo);
    if (rc < 0) return rc;
    if (lo->merged) return mtft__err(MTFT_ESTATE, "peft lora_merge: the LoRA of task %d is already merged", task);
    int n_slots = p->n_layer * p->n_mod, gpt2 = p->m->cfg.arch == MTFT_ARCH_GPT2;
    for (int i = 0; i < n_slots; i++) {
        if (!lo->A[i]) continue;
        mtft_tensor *W = mtft_peft__base_weight(p, i / p->n_mod, i % p->n_mod);
        size_t n = (size_t)mtft__numel(W);
        lo->orig[i] = mtft__malloc(n * sizeof(float));
        if (!lo->orig[i]) {
            for (int j = 0; j < i; j++) {
                if (!lo->orig[j]) continue;
                mtft_tensor *Wj = mtft_peft__base_weight(p, j / p->n_mod, j % p->n_mod);
                memcpy(Wj->data, lo->orig[j], (size_t)mtft__numel(Wj) * sizeof(float));
                mtft__free(lo->orig[j]);
                lo->orig[j] = NULL;
            }
            return MTFT_ENOMEM;
        }
        memcpy(lo->orig[i], W->data, n * sizeof(float));
    }
    for (int i = 0; i < n_slots; i++) {
        if (!lo->A[i]) continue;
        mtft_tensor *W = mtft_peft__base_weight(p, i / p->n_mod, i % p->n_mod);
        /* GPT-2 Conv1D W [in, out]; nn.Linear W [out, in] */
        mtft_peft__lora_delta_add(W->data, lo->A[i]->data, lo->B[i]->data, lo->A[i]->ne[0], lo->A[i]->ne[1],
                                  lo->B[i]->ne[0], lo->scale, gpt2);
    }
    lo->merged = 1;
    return MTFT_OK;
}

int mtft_peft_lora_unmerge(mtft_peft *p, int task) {
    mtft_peft_lora *lo;
    int rc = get_lora(p, task, "peft lora_unmerge", &lo);
    if (rc < 0) return rc;
    if (!lo->merged) return mtft__err(MTFT_ESTATE, "peft lora_unmerge: the LoRA of task %d is not merged", task);
    for (int i = 0; i < p->n_layer * p->n_mod; i++) {
        if (!lo->orig[i]) continue;
        mtft_tensor *W = mtft_peft__base_weight(p, i / p->n_mod, i % p->n_mod);
        memcpy(W->data, lo->orig[i], (size_t)mtft__numel(W) * sizeof(float));
        mtft__free(lo->orig[i]);
        lo->orig[i] = NULL;
    }
    lo->merged = 0;
    return MTFT_OK;
}

/* ---- PEFT format ---------------------------------------------------------------- */

/* "base_model.model.<module path>.lora_<A|B>.weight" */
static void peft_name(const mtft_peft *p, int l, int mi, const char *ab, int alt, char *buf, size_t n) {
    if (p->m->cfg.arch == MTFT_ARCH_GPT2)
        snprintf(buf, n, "base_model.model.%sh.%d.%s.lora_%s.weight", alt ? "" : "transformer.", l, p->mod_names[mi],
                 ab);
    else
        snprintf(buf, n, "base_model.model.model.layers.%d.%s.lora_%s.weight", l, p->mod_names[mi], ab);
}

int mtft_peft__lora_write_config(const char *dir, const mtft_peft__lora_config *c) {
    size_t pl = strlen(dir) + 32;
    char *path = mtft__malloc(pl), *text = NULL;
    mtft_json *cfg = mtft_json__new_object(), *tm = mtft_json__new_array(), *layers = NULL;
    int rc = MTFT_OK;
    if (!path || !cfg || !tm) goto oom;
    for (int k = 0; k < c->n_targets; k++)
        if (mtft_json__append(tm, mtft_json__new_string(c->targets[k])) < 0) goto oom;
    if (c->layer_mask) {
        if (!(layers = mtft_json__new_array())) goto oom;
        for (int l = 0; l < c->n_mask; l++)
            if (c->layer_mask[l] && mtft_json__append(layers, mtft_json__new_number(l)) < 0) goto oom;
    }
    if (mtft_json__add(cfg, "peft_type", mtft_json__new_string("LORA")) < 0 ||
        mtft_json__add(cfg, "task_type", mtft_json__new_string("CAUSAL_LM")) < 0 ||
        mtft_json__add(cfg, "base_model_name_or_path",
                       c->base_model ? mtft_json__new_string(c->base_model) : mtft_json__new_null()) < 0 ||
        mtft_json__add(cfg, "r", mtft_json__new_number(c->r)) < 0 ||
        mtft_json__add(cfg, "lora_alpha", mtft_json__new_number(c->alpha)) < 0 ||
        mtft_json__add(cfg, "lora_dropout", mtft_json__new_number(c->dropout)) < 0 ||
        mtft_json__add(cfg, "use_rslora", mtft_json__new_bool(c->use_rslora)) < 0)
        goto oom;
    rc = mtft_json__add(cfg, "target_modules", tm); /* cfg owns tm from here on, even on failure */
    tm = NULL;
    if (rc < 0) goto oom;
    rc = mtft_json__add(cfg, "layers_to_transform", layers ? layers : mtft_json__new_null());
    layers = NULL;
    if (rc < 0 || mtft_json__add(cfg, "fan_in_fan_out", mtft_json__new_bool(c->fan_in_fan_out)) < 0 ||
        mtft_json__add(cfg, "bias", mtft_json__new_string("none")) < 0 ||
        mtft_json__add(cfg, "init_lora_weights", mtft_json__new_bool(1)) < 0 ||
        mtft_json__add(cfg, "inference_mode", mtft_json__new_bool(1)) < 0 ||
        mtft_json__add(cfg, "modules_to_save", mtft_json__new_null()) < 0)
        goto oom;
    if (!(text = mtft_json__print(cfg, 1))) goto oom;
    snprintf(path, pl, "%s/adapter_config.json", dir);
    rc = mtft_io__write_atomic(path, text, strlen(text), 1);
    goto done;
oom:
    rc = mtft__err(MTFT_ENOMEM, "%s: out of memory", c->what);
done:
    mtft__free(text);
    mtft_json__free(cfg);
    mtft_json__free(tm);
    mtft_json__free(layers);
    mtft__free(path);
    return rc;
}

int mtft_peft_lora_save(mtft_peft *p, int task, const char *dir, const char *base_model) {
    mtft_peft_lora *lo;
    int rc = get_lora(p, task, "peft lora_save", &lo);
    if (rc < 0) return rc;
    MTFT_CHECK_ARG(dir);
    int n_slots = p->n_layer * p->n_mod, n = 0;
    char **names = mtft__calloc((size_t)(2 * n_slots), sizeof *names);
    mtft_tensor **ts = mtft__calloc((size_t)(2 * n_slots), sizeof *ts);
    char *buf = mtft__malloc((size_t)(2 * n_slots) * 96);
    int *has_layer = mtft__calloc((size_t)p->n_layer + 1, sizeof *has_layer);
    if (!names || !ts || !buf || !has_layer) {
        rc = mtft__err(MTFT_ENOMEM, "peft lora_save: out of memory");
        goto done;
    }
    int used_mod[MTFT_PEFT_MAX_MOD] = {0}, all_layers = 1;
    for (int l = 0; l < p->n_layer; l++) {
        for (int mi = 0; mi < p->n_mod; mi++) {
            int i = l * p->n_mod + mi;
            if (!lo->A[i]) continue;
            has_layer[l] = used_mod[mi] = 1;
            names[n] = buf + (size_t)n * 96;
            peft_name(p, l, mi, "A", 0, names[n], 96);
            ts[n++] = lo->A[i];
            names[n] = buf + (size_t)n * 96;
            peft_name(p, l, mi, "B", 0, names[n], 96);
            ts[n++] = lo->B[i];
        }
        if (!has_layer[l]) all_layers = 0;
    }
    const char *targets[MTFT_PEFT_MAX_MOD];
    int n_targets = 0;
    for (int mi = 0; mi < p->n_mod; mi++)
        if (used_mod[mi]) targets[n_targets++] = p->mod_names[mi];
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    const char *meta[] = {"format", "pt", NULL};
    rc = mtft_safetensors_save(path, n, (const char *const *)names, ts, meta);
    if (rc < 0) goto done;
    mtft_peft__lora_config c = {base_model, lo->rank, lo->alpha, lo->dropout, lo->use_rslora, targets, n_targets,
                                all_layers ? NULL : has_layer, p->n_layer, p->m->cfg.arch == MTFT_ARCH_GPT2,
                                "peft lora_save"};
    rc = mtft_peft__lora_write_config(dir, &c);
done:
    mtft__free(has_layer);
    mtft__free(buf);
    mtft__free(names);
    mtft__free(ts);
    return rc;
}

int mtft_peft_lora_load(mtft_peft *p, int task, const char *dir, mtft_param_group **group) {
    int rc = mtft_peft__check_task(p, task, 1, "peft lora_load");
    if (rc < 0) return rc;
    MTFT_CHECK_ARG(dir);
    if (group) *group = NULL;
    char path[4096], targets[512] = "", layers[512] = "";
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text = NULL;
    size_t len = 0;
    mtft_json *cfg = NULL;
    mtft_safetensors *st = NULL;
    if ((rc = mtft_io__read_file(path, &text, &len)) < 0) return rc;
    size_t eoff = 0;
    cfg = mtft_json__parse(text, len, &eoff);
    if (!cfg) {
        int line, col;
        mtft_json__line_col(text, len, eoff, &line, &col);
        rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: JSON syntax error", path, line, col);
        goto done;
    }
#define CFG_ERR(code, key, ...)                                                                         \
    do {                                                                                                \
        int line_, col_;                                                                                \
        mtft_json__line_col(text, len, mtft_json__find_key(text, len, key), &line_, &col_);            \
        rc = mtft__err(code, "%s:%d:%d: " __VA_ARGS__);                                                 \
        goto done;                                                                                      \
    } while (0)
    const char *pt = mtft_json__string(mtft_json__get(cfg, "peft_type"));
    if (!pt || strcmp(pt, "LORA") != 0)
        CFG_ERR(MTFT_EUNSUPPORTED, "peft_type", "peft_type is '%s', only \"LORA\" loads here", path, line_, col_,
                pt ? pt : "(missing)");
    mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
    int64_t r;
    if (!mtft_json__int(mtft_json__get(cfg, "r"), &r) || r < 1 || r > 1 << 20)
        CFG_ERR(MTFT_EFORMAT, "r", "r must be a positive integer", path, line_, col_);
    o.rank = (int)r;
    mtft_json *a = mtft_json__get(cfg, "lora_alpha");
    if (mtft_json__type(a) != MTFT_JSON_NUMBER) CFG_ERR(MTFT_EFORMAT, "lora_alpha", "lora_alpha must be a number", path, line_, col_);
    o.alpha = (float)mtft_json__number(a);
    a = mtft_json__get(cfg, "lora_dropout");
    if (a && mtft_json__type(a) == MTFT_JSON_NUMBER) o.dropout = (float)mtft_json__number(a);
    o.use_rslora = mtft_json__bool(mtft_json__get(cfg, "use_rslora"));
    const char *bias = mtft_json__string(mtft_json__get(cfg, "bias"));
    if (bias && strcmp(bias, "none") != 0)
        CFG_ERR(MTFT_EUNSUPPORTED, "bias", "bias \"%s\" is not supported (only \"none\")", path, line_, col_, bias);
    mtft_json *tmj = mtft_json__get(cfg, "target_modules");
    if (mtft_json__type(tmj) != MTFT_JSON_ARRAY || mtft_json__size(tmj) == 0)
        CFG_ERR(MTFT_EUNSUPPORTED, "target_modules",
                "target_modules must be a non-empty list of module names (regex strings are not supported)", path,
                line_, col_);
    for (mtft_json *t = mtft_json__first(tmj); t; t = mtft_json__next(t)) {
        const char *s = mtft_json__string(t);
        if (!s || !*s || strlen(targets) + strlen(s) + 2 > sizeof targets)
            CFG_ERR(MTFT_EFORMAT, "target_modules", "target_modules holds a non-string, empty or too long entry", path,
                    line_, col_);
        if (*targets) strcat(targets, "|");
        strcat(targets, s);
    }
    mtft_json *lt = mtft_json__get(cfg, "layers_to_transform");
    int64_t li;
    if (mtft_json__int(lt, &li)) {
        snprintf(layers, sizeof layers, "%lld", (long long)li);
    } else if (mtft_json__type(lt) == MTFT_JSON_ARRAY) {
        for (mtft_json *t = mtft_json__first(lt); t; t = mtft_json__next(t)) {
            if (!mtft_json__int(t, &li) || strlen(layers) + 24 > sizeof layers)
                CFG_ERR(MTFT_EFORMAT, "layers_to_transform", "layers_to_transform must be integers", path, line_, col_);
            size_t o2 = strlen(layers);
            snprintf(layers + o2, sizeof layers - o2, "%s%lld", o2 ? "," : "", (long long)li);
        }
    } else if (lt && mtft_json__type(lt) != MTFT_JSON_NULL) {
        CFG_ERR(MTFT_EFORMAT, "layers_to_transform", "layers_to_transform must be null, an integer or a list", path,
                line_, col_);
    }
#undef CFG_ERR
    o.target_modules = targets;
    o.layers = layers;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = mtft_safetensors_open(&st, path)) < 0) goto done;
    mtft_param_group *pg = NULL;
    if ((rc = mtft_peft_add_lora(p, task, &o, &pg)) < 0) {
        mtft__err_prefix("%s/adapter_config.json", dir);
        goto done;
    }
    mtft_peft_lora *lo = *lora_slot(p, task);
    int used = 0;
    for (int i = 0; i < p->n_layer * p->n_mod && rc == MTFT_OK; i++) {
        if (!lo->A[i]) continue;
        for (int ab = 0; ab < 2 && rc == MTFT_OK; ab++) {
            mtft_tensor *t = ab ? lo->B[i] : lo->A[i];
            char name[128];
            peft_name(p, i / p->n_mod, i % p->n_mod, ab ? "B" : "A", 0, name, sizeof name);
            if (p->m->cfg.arch == MTFT_ARCH_GPT2 && mtft_safetensors_find(st, name) < 0)
                peft_name(p, i / p->n_mod, i % p->n_mod, ab ? "B" : "A", 1, name, sizeof name);
            mtft_error_clear();
            rc = mtft_safetensors_read_f32(st, name, t->data, 2, t->ne);
            used++;
        }
    }
    if (rc == MTFT_OK) {
        int in_file = 0;
        for (int i = 0; i < mtft_safetensors_count(st); i++)
            if (strstr(mtft_safetensors_name(st, i), ".lora_")) in_file++;
        if (in_file != used)
            rc = mtft__err(MTFT_EFORMAT, "%s: holds %d LoRA tensors but adapter_config.json targets %d", path, in_file,
                           used);
    }
    if (rc < 0) {
        mtft_peft__lora_free(lo, p->n_layer * p->n_mod);
        *lora_slot(p, task) = NULL;
        goto done;
    }
    if (group) *group = pg;
done:
    mtft_safetensors_close(st);
    mtft_json__free(cfg);
    mtft__free(text);
    return rc;
}

/* ---- any group ------------------------------------------------------------------- */

int mtft_peft_group_save(mtft_param_group *pg, const char *path) {
    MTFT_CHECK_ARG(pg && path);
    int n = mtft_param_group_count(pg);
    const char **names = mtft__calloc((size_t)n + 1, sizeof *names);
    mtft_tensor **ts = mtft__calloc((size_t)n + 1, sizeof *ts);
    if (!names || !ts) {
        mtft__free(names);
        mtft__free(ts);
        return MTFT_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        ts[i] = mtft_param_group_tensor(pg, i);
        names[i] = mtft_tensor_name(ts[i]);
    }
    const char *meta[] = {"format", "pt", "mtft_group", mtft_param_group_name(pg), NULL};
    int rc = mtft_safetensors_save(path, n, names, ts, meta);
    mtft__free(names);
    mtft__free(ts);
    return rc;
}

int mtft_peft_group_load(mtft_param_group *pg, const char *path) {
    MTFT_CHECK_ARG(pg && path);
    mtft_safetensors *st = NULL;
    int rc = mtft_safetensors_open(&st, path);
    if (rc < 0) return rc;
    rc = mtft_safetensors_load_group(st, pg, NULL, 1);
    mtft_safetensors_close(st);
    return rc < 0 ? rc : MTFT_OK;
}
