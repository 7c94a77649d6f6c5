/* A mergekit-style YAML merge config into a merger (mtft_merger_from_yaml),
 * through the config module's YAML tree (file:line:col marks, unknown-key
 * suggestions). docs/merge.md describes the format:
 *
 *   merge_method: ties
 *   base_model: base/              # a directory with model.safetensors, or a .safetensors file
 *   base_model_name: gpt2-tiny     # optional; checked against adapters' base_model_name_or_path
 *   models:
 *     - model: task_a/             # full finetuned checkpoint
 *       parameters: {weight: 1.0, density: 0.5}
 *     - adapter: lora_b/           # PEFT LoRA adapter directory
 *       parameters:
 *         weight:
 *           - filter: attn         # first matching filter wins
 *             value: 0.5
 *           - value: 1.0
 *   parameters: {lambda: 1.0}
 *   seed: 0
 *   dtype: float32
 *   output: merged/
 *   output_lora_rank: 0            # > 0: write a rank-r PEFT adapter instead */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"
#include "io/json.h"
#include "merge/merger_impl.h"

typedef struct yctx {
    mtft_cfg_ctx c;
    const char *dir; /* the config's directory, or NULL */
} yctx;

static const char *const k_root[] = {"merge_method", "base_model", "base_model_name", "models", "parameters",
                                     "seed", "dtype", "output", "output_lora_rank"};
static const char *const k_item[] = {"model", "adapter", "parameters"};
static const char *const k_param_names[] = {"weight", "density", "beta", "gamma", "lambda", "normalize"};
static const char *const k_filter[] = {"filter", "value"};
/* Key paths and messages may be cut short; written through vsnprintf
 * (gcc -O2 flags possible truncation of snprintf). */
static void pathf(char *buf, size_t n, const char *fmt, ...) MTFT_PRINTF(3, 4);
static void pathf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}
#define PATHF(buf, ...) pathf(buf, sizeof buf, __VA_ARGS__)
#define NK(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int unknown_key(yctx *y, const mtft_cnode *key, const char *path, const char *const *cands, int n) {
    const char *best = mtft_cfg__suggest(key->value, cands, n);
    char list[300];
    size_t o = 0;
    list[0] = '\0';
    for (int i = 0; i < n && o < sizeof list; i++) o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", cands[i]);
    if (best)
        return mtft_cfg__errat(&y->c, key, MTFT_ENOTFOUND, path, "unknown key '%s' (did you mean '%s'?)", key->value, best);
    return mtft_cfg__errat(&y->c, key, MTFT_ENOTFOUND, path, "unknown key '%s' (expected one of: %s)", key->value, list);
}

static int check_keys(yctx *y, const mtft_cnode *map, const char *path, const char *const *cands, int n) {
    if (map->kind != MTFT_CN_MAP)
        return mtft_cfg__errat(&y->c, map, MTFT_EFORMAT, path, "expected a mapping, got %s", mtft_cfg__kind_name(map));
    for (int i = 0; i < map->n; i++) {
        int ok = 0;
        for (int k = 0; k < n; k++)
            if (!strcmp(map->keys[i]->value, cands[k])) ok = 1;
        if (!ok) {
            char p2[300];
            PATHF(p2, "%s%s%s", path, *path ? "." : "", map->keys[i]->value);
            return unknown_key(y, map->keys[i], p2, cands, n);
        }
    }
    return MTFT_OK;
}

static int scalar_str(yctx *y, const mtft_cnode *v, const char *path, const char **out) {
    if (!v || v->kind != MTFT_CN_SCALAR || mtft_cfg__is_null(v))
        return mtft_cfg__errat(&y->c, v, MTFT_EFORMAT, path, "expected a string, got %s",
                               v && v->kind == MTFT_CN_SCALAR ? "null" : mtft_cfg__kind_name(v));
    *out = v->value;
    return MTFT_OK;
}

static int number(yctx *y, const mtft_cnode *v, const char *path, double *out) {
    if (!v || v->kind != MTFT_CN_SCALAR || mtft_cfg__is_null(v))
        return mtft_cfg__errat(&y->c, v, MTFT_EFORMAT, path, "expected a number, got %s",
                               v && v->kind == MTFT_CN_SCALAR ? "null" : mtft_cfg__kind_name(v));
    if (!strcmp(v->value, "true") || !strcmp(v->value, "false")) {
        *out = v->value[0] == 't';
        return MTFT_OK;
    }
    char *end = NULL;
    double d = strtod(v->value, &end);
    if (!end || *end || end == v->value || !isfinite(d))
        return mtft_cfg__errat(&y->c, v, MTFT_EFORMAT, path, "expected a number, got '%s'", v->value);
    *out = d;
    return MTFT_OK;
}

/* Resolve a path relative to the config's directory. */
static const char *rel(yctx *y, const char *p) {
    if (!y->dir || p[0] == '/') return mtft_cfg__keep(&y->c, p);
    size_t n = strlen(y->dir) + strlen(p) + 2;
    char *s = mtft__malloc(n);
    if (!s) return NULL;
    snprintf(s, n, "%s/%s", y->dir, p);
    const char *k = mtft_cfg__keep(&y->c, s);
    mtft__free(s);
    return k;
}

/* A parameter value: a number, or a list of {filter, value} (first match
 * wins: the entries are set in reverse order, the merger's last setting wins). */
static int apply_param(yctx *y, mtft_merger *m, int model, const mtft_cnode *key, const mtft_cnode *v,
                       const char *path) {
    mtft_merge_param p;
    if (mtft_merge_param_from_name(key->value, &p) < 0) return unknown_key(y, key, path, k_param_names, NK(k_param_names));
    if (model >= 0 && (p == MTFT_MERGE_P_LAMBDA || p == MTFT_MERGE_P_NORMALIZE))
        return mtft_cfg__errat(&y->c, key, MTFT_EINVAL, path,
                               "'%s' applies to the merged vector: set it under the top-level parameters", key->value);
    int rc;
    if (v->kind == MTFT_CN_SCALAR) {
        double d;
        if ((rc = number(y, v, path, &d)) < 0) return rc;
        if ((rc = mtft_merger_set_param(m, model, NULL, p, d)) < 0)
            return mtft_cfg__errat(&y->c, v, rc, path, "%s", mtft_error_last()->message);
        return MTFT_OK;
    }
    if (v->kind != MTFT_CN_SEQ)
        return mtft_cfg__errat(&y->c, v, MTFT_EFORMAT, path, "expected a number or a list of {filter, value}, got %s",
                               mtft_cfg__kind_name(v));
    for (int i = v->n - 1; i >= 0; i--) {
        char p2[300];
        PATHF(p2, "%s[%d]", path, i);
        const mtft_cnode *it = v->items[i];
        if ((rc = check_keys(y, it, p2, k_filter, NK(k_filter))) < 0) return rc;
        const mtft_cnode *fv = mtft_cfg__get(it, "filter"), *vv = mtft_cfg__get(it, "value");
        const char *filter = NULL;
        double d;
        if (!vv) return mtft_cfg__errat(&y->c, it, MTFT_EFORMAT, p2, "missing key 'value'");
        if (fv && (rc = scalar_str(y, fv, p2, &filter)) < 0) return rc;
        if ((rc = number(y, vv, p2, &d)) < 0) return rc;
        if ((rc = mtft_merger_set_param(m, model, filter, p, d)) < 0)
            return mtft_cfg__errat(&y->c, vv, rc, p2, "%s", mtft_error_last()->message);
    }
    return MTFT_OK;
}

static int apply_params(yctx *y, mtft_merger *m, int model, const mtft_cnode *map, const char *path) {
    if (!map || mtft_cfg__is_null(map)) return MTFT_OK;
    if (map->kind != MTFT_CN_MAP)
        return mtft_cfg__errat(&y->c, map, MTFT_EFORMAT, path, "expected a mapping of parameters, got %s",
                               mtft_cfg__kind_name(map));
    for (int i = 0; i < map->n; i++) {
        char p2[300];
        PATHF(p2, "%s.%s", path, map->keys[i]->value);
        int rc = apply_param(y, m, model, map->keys[i], map->items[i], p2);
        if (rc < 0) return rc;
    }
    return MTFT_OK;
}

static int build(yctx *y, const mtft_cnode *root, mtft_merger **out) {
    int rc = check_keys(y, root, "", k_root, NK(k_root));
    if (rc < 0) return rc;
    const mtft_cnode *v;
    mtft_merge_options o = MTFT_MERGE_OPTIONS_INIT;
    const char *s = NULL;
    if (!(v = mtft_cfg__get(root, "merge_method")))
        return mtft_cfg__errat(&y->c, root, MTFT_EINVAL, "merge_method", "missing key (linear, task_arithmetic, ties, "
                                                                         "dare_linear, dare_ties, breadcrumbs, pcb)");
    if ((rc = scalar_str(y, v, "merge_method", &s)) < 0) return rc;
    if ((rc = mtft_merge_method_from_name(s, &o.method)) < 0)
        return mtft_cfg__errat(&y->c, v, rc, "merge_method", "%s", mtft_error_last()->message);
    if ((v = mtft_cfg__get(root, "seed"))) {
        double d;
        if ((rc = number(y, v, "seed", &d)) < 0) return rc;
        if (d < 0 || d != floor(d) || d > 9007199254740992.0)
            return mtft_cfg__errat(&y->c, v, MTFT_ERANGE, "seed", "expected a non-negative integer");
        o.seed = (uint64_t)d;
    }
    if ((v = mtft_cfg__get(root, "base_model_name")) && !mtft_cfg__is_null(v)) {
        if ((rc = scalar_str(y, v, "base_model_name", &s)) < 0) return rc;
        o.base_name = s;
    }
    if ((v = mtft_cfg__get(root, "dtype")) && !mtft_cfg__is_null(v)) {
        if ((rc = scalar_str(y, v, "dtype", &s)) < 0) return rc;
        if (strcmp(s, "float32") && strcmp(s, "f32") && strcmp(s, "fp32"))
            return mtft_cfg__errat(&y->c, v, MTFT_EUNSUPPORTED, "dtype",
                                   "dtype '%s' is not supported: merges are written as float32", s);
    }
    mtft_merger *m = NULL;
    if ((rc = mtft_merger_new(&m, &o)) < 0) return rc;
    *out = m;
    if ((v = mtft_cfg__get(root, "base_model")) && !mtft_cfg__is_null(v)) {
        if ((rc = scalar_str(y, v, "base_model", &s)) < 0) return rc;
        const char *p = rel(y, s);
        if (!p) return mtft__err(MTFT_ENOMEM, "merge config: out of memory");
        if ((rc = mtft_merger_set_base(m, p)) < 0)
            return mtft_cfg__errat(&y->c, v, rc, "base_model", "%s", mtft_error_last()->message);
    }
    if (!(v = mtft_cfg__get(root, "models")))
        return mtft_cfg__errat(&y->c, root, MTFT_EINVAL, "models", "missing key (a list of model: or adapter: entries)");
    if (v->kind != MTFT_CN_SEQ || v->n == 0)
        return mtft_cfg__errat(&y->c, v, MTFT_EFORMAT, "models", "expected a non-empty list of models, got %s",
                               mtft_cfg__kind_name(v));
    const mtft_cnode *models = v;
    for (int i = 0; i < models->n; i++) {
        char path[64];
        PATHF(path, "models[%d]", i);
        const mtft_cnode *it = models->items[i];
        if ((rc = check_keys(y, it, path, k_item, NK(k_item))) < 0) return rc;
        const mtft_cnode *mv = mtft_cfg__get(it, "model"), *av = mtft_cfg__get(it, "adapter");
        if (!!mv == !!av)
            return mtft_cfg__errat(&y->c, it, MTFT_EINVAL, path, "give exactly one of 'model' (a full checkpoint) and "
                                                                 "'adapter' (a PEFT LoRA directory)");
        char p2[80];
        PATHF(p2, "%s.%s", path, mv ? "model" : "adapter");
        if ((rc = scalar_str(y, mv ? mv : av, p2, &s)) < 0) return rc;
        const char *p = rel(y, s);
        if (!p) return mtft__err(MTFT_ENOMEM, "merge config: out of memory");
        rc = mv ? mtft_merger_add_model(m, p, 1.0f) : mtft_merger_add_adapter(m, p, 1.0f);
        if (rc < 0) return mtft_cfg__errat(&y->c, mv ? mv : av, rc, p2, "%s", mtft_error_last()->message);
    }
    /* global parameters first, then per model (so a model's own setting wins) */
    if ((rc = apply_params(y, m, -1, mtft_cfg__get(root, "parameters"), "parameters")) < 0) return rc;
    for (int i = 0; i < models->n; i++) {
        char path[64];
        PATHF(path, "models[%d].parameters", i);
        if ((rc = apply_params(y, m, i, mtft_cfg__get(models->items[i], "parameters"), path)) < 0) return rc;
    }
    if (!(v = mtft_cfg__get(root, "output")))
        return mtft_cfg__errat(&y->c, root, MTFT_EINVAL, "output", "missing key (where to write the merge)");
    if ((rc = scalar_str(y, v, "output", &s)) < 0) return rc;
    const char *op = rel(y, s);
    if (!op || !(m->yaml_output = mtft__strdup(op))) return mtft__err(MTFT_ENOMEM, "merge config: out of memory");
    if ((v = mtft_cfg__get(root, "output_lora_rank")) && !mtft_cfg__is_null(v)) {
        double d;
        if ((rc = number(y, v, "output_lora_rank", &d)) < 0) return rc;
        if (d < 0 || d != floor(d) || d > 1e6)
            return mtft_cfg__errat(&y->c, v, MTFT_ERANGE, "output_lora_rank", "expected an integer >= 0 (0: full weights)");
        m->yaml_rank = (int)d;
    }
    return MTFT_OK;
}

int mtft_merger_from_yaml(mtft_merger **out, const char *path, const char **output, int *lora_rank) {
    MTFT_CHECK_ARG(out && path);
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) {
        mtft__err_prefix("merge config");
        return rc;
    }
    yctx y;
    memset(&y, 0, sizeof y);
    y.c.file = path;
    char *dir = mtft__strdup(path);
    if (!dir) {
        mtft__free(text);
        return mtft__err(MTFT_ENOMEM, "merge config: out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash) {
        if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
        y.dir = dir;
    }
    mtft_cnode *root = NULL;
    mtft_merger *m = NULL;
    rc = mtft_cfg__parse(text, len, path, &root);
    if (rc == MTFT_OK) rc = build(&y, root, &m);
    mtft_cfg__free(root);
    mtft_cfg__ctx_dispose(&y.c);
    mtft__free(dir);
    mtft__free(text);
    if (rc < 0) {
        mtft_merger_free(m);
        return rc;
    }
    *out = m;
    if (output) *output = m->yaml_output;
    if (lora_rank) *lora_rank = m->yaml_rank;
    return MTFT_OK;
}
