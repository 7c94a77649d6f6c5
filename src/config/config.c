/* Config: the schema table of tasks: (with each task's head:), the root
 * walk over every section, and the public mtft_config API. The other
 * sections' tables are in sections.c. */
#include <stdio.h>
#include <string.h>

#include "config_impl.h"
#include "io/json.h"
#include "mtft/config.h"

#define N_KEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define DESCRIBED MTFT_CFG_DESCRIBED

/* ---- tasks: ------------------------------------------------------------------------ */

static const char *const k_task_types[] = {"classification", "multilabel", "regression", "tagging", "generation", NULL};
static const char *const k_formats[] = {"auto", "jsonl", "csv", "tsv", NULL};
static const char *const k_on_bad[] = {"error", "skip", NULL};

#define TO(f) offsetof(mtft_cfg_task, task.f)

static const mtft_cfg_key k_files_keys[] = {
    {"train", MTFT_CK_PATH, TO(train_file), 0, "", MTFT_CFG_REQUIRED, 0, 0, NULL, NULL,
     "Training data: JSONL, or CSV/TSV with a header row."},
    {"dev", MTFT_CK_PATH, TO(dev_file), 0, "", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "Development split file (or use split.dev_fraction)."},
    {"test", MTFT_CK_PATH, TO(test_file), 0, "", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "Test split file (or use split.test_fraction)."},
};
static const mtft_cfg_section k_files = {"files", k_files_keys, N_KEYS(k_files_keys), "Data files of each split."};

static const mtft_cfg_key k_split_keys[] = {
    {"dev_fraction", MTFT_CK_DOUBLE, TO(dev_fraction), 0, "0", MTFT_CFG_RANGE | MTFT_CFG_MAX_OPEN, 0, 1, NULL, NULL,
     "Share of the train file moved to dev (seeded permutation; exact count round(f*n))."},
    {"test_fraction", MTFT_CK_DOUBLE, TO(test_fraction), 0, "0", MTFT_CFG_RANGE | MTFT_CFG_MAX_OPEN, 0, 1, NULL,
     NULL, "Share of the train file moved to test; dev_fraction + test_fraction < 1."},
    {"seed", MTFT_CK_U64, TO(split_seed), 0, "0", 0, 0, 0, NULL, NULL,
     "Seed of the split permutation: same seed, same split."},
};
static const mtft_cfg_section k_split = {"split", k_split_keys, N_KEYS(k_split_keys),
                                         "Splits carved out of the train file by fractions."};

static const mtft_cfg_key k_fields_keys[] = {
    {"input", MTFT_CK_STRING, TO(input_field), 0, "text (input for generation)", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0,
     NULL, NULL, "Field holding the input text."},
    {"label", MTFT_CK_STRING, TO(label_field), 0, "label", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0, NULL, NULL,
     "Field holding the label (string or integer; a list for multilabel)."},
    {"value", MTFT_CK_STRING, TO(value_field), 0, "value", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0, NULL, NULL,
     "Field holding the regression target (a number)."},
    {"target", MTFT_CK_STRING, TO(target_field), 0, "target", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0, NULL, NULL,
     "Field holding the generation target text."},
    {"tokens", MTFT_CK_STRING, TO(tokens_field), 0, "tokens", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0, NULL, NULL,
     "Field holding the words of a tagging example (a list)."},
    {"tags", MTFT_CK_STRING, TO(tags_field), 0, "tags", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0, NULL, NULL,
     "Field holding one tag per word (a list of the same length)."},
};
static const mtft_cfg_section k_fields = {"fields", k_fields_keys, N_KEYS(k_fields_keys),
                                          "Which record fields hold what."};

/* tasks[].head: offsets into mtft_head_options */
static const char *const k_head_kinds[] = {"classification", "multilabel", "regression", "token_classification", "lm",
                                           NULL};
static const char *const k_head_pool[] = {"mean", "last", "first", NULL};
static const char *const k_head_act[] = {"tanh", "gelu", "gelu_tanh", "relu", NULL};
static const char *const k_head_loss[] = {"mse", "huber", NULL};

#define HO(f) offsetof(mtft_head_options, f)
static const mtft_cfg_key k_head_keys[] = {
    {"type", MTFT_CK_ENUM, HO(kind), 0, "from the task type", DESCRIBED, 0, 0, k_head_kinds, NULL,
     "Head kind; must suit the task type (classification, multilabel, regression, token_classification for "
     "tagging, lm for generation)."},
    {"pool", MTFT_CK_ENUM, HO(pool), 0, "heads.pool", DESCRIBED, 0, 0, k_head_pool, NULL,
     "Pooling of sequence-level heads."},
    {"hidden_size", MTFT_CK_INT, HO(hidden_size), 0, "heads.hidden_size", DESCRIBED | MTFT_CFG_RANGE, 0, 65536, NULL,
     NULL, "Dense layer + activation before the output; 0: none (not for lm)."},
    {"activation", MTFT_CK_ENUM, HO(activation), 0, "tanh", 0, 0, 0, k_head_act, NULL,
     "Activation of the dense layer."},
    {"dropout", MTFT_CK_FLOAT, HO(dropout), 0, "0", MTFT_CFG_RANGE | MTFT_CFG_MAX_OPEN, 0, 1, NULL, NULL,
     "Dropout before the output (training only)."},
    {"label_smoothing", MTFT_CK_FLOAT, HO(label_smoothing), 0, "0", MTFT_CFG_RANGE | MTFT_CFG_MAX_OPEN, 0, 1, NULL,
     NULL, "Label smoothing (classification, token_classification, lm)."},
    {"loss", MTFT_CK_ENUM, HO(loss), 0, "mse", 0, 0, 0, k_head_loss, NULL, "Regression loss."},
    {"huber_delta", MTFT_CK_FLOAT, HO(huber_delta), 0, "1", MTFT_CFG_RANGE, 1e-6, 1e6, NULL, NULL,
     "Huber loss delta."},
    {"standardize", MTFT_CK_BOOL, HO(standardize), 0, "true", 0, 0, 0, NULL, NULL,
     "Regression: train on targets standardised by the training values."},
    {"threshold", MTFT_CK_FLOAT, HO(threshold), 0, "0.5", MTFT_CFG_RANGE, 0, 1, NULL, NULL,
     "Multilabel: a label is on when its probability is >= threshold."},
};
static const mtft_cfg_section k_head = {"head", k_head_keys, N_KEYS(k_head_keys), "The task's head."};

static const mtft_cfg_key k_task_keys[] = {
    {"name", MTFT_CK_STRING, TO(name), 0, "", MTFT_CFG_REQUIRED, 0, 0, NULL, NULL,
     "Task name: letters, digits, '_', '-', '.'; unique in the run."},
    {"type", MTFT_CK_ENUM, TO(type), 0, "classification", 0, 0, 0, k_task_types, NULL, "Task type."},
    {"format", MTFT_CK_ENUM, TO(format), 0, "auto", 0, 0, 0, k_formats, NULL,
     "File format; auto: by extension (.csv, .tsv, else JSONL)."},
    {"files", MTFT_CK_SECTION, 0, 0, "", 0, 0, 0, NULL, &k_files, "Data files of each split."},
    {"split", MTFT_CK_SECTION, 0, 0, "", 0, 0, 0, NULL, &k_split, "Fractional splits of the train file."},
    {"fields", MTFT_CK_SECTION, 0, 0, "", 0, 0, 0, NULL, &k_fields, "Field mapping."},
    {"template", MTFT_CK_STRING, TO(prompt_template), 0, "", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "Prompt template with {field} placeholders ({{ and }} for literal braces); none: the input field as is."},
    {"labels", MTFT_CK_STRLIST, TO(labels), TO(n_labels), "", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "The label (tag) set in id order; none: collected from the data in order of first appearance."},
    {"metrics", MTFT_CK_STRLIST, TO(metrics), TO(n_metrics), "", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "Metrics the progress line and `mtft train`'s table show, in this order (all are computed and logged); "
     "each must be one the task type reports (see below)."},
    {"select_metric", MTFT_CK_STRING, TO(select_metric), 0, "from the type", MTFT_CFG_NULLABLE | DESCRIBED, 0, 0, NULL, NULL,
     "Metric for best-checkpoint selection and early stopping (see below); none: accuracy, pearson, "
     "token_accuracy or nll by type. rmse, mae, perplexity and nll count negated (lower is better)."},
    {"on_bad_example", MTFT_CK_ENUM, TO(on_bad_example), 0, "error", 0, 0, 0, k_on_bad, NULL,
     "error: stop at the first bad record; skip: drop it, count it per reason and log the counts."},
    {"head", MTFT_CK_SECTION, offsetof(mtft_cfg_task, head), 0, "", 0, 0, 0, NULL, &k_head,
     "This task's head (default: made from the task type with the heads: options)."},
};
static const mtft_cfg_section k_task = {"tasks[]", k_task_keys, N_KEYS(k_task_keys), "One task definition."};

/* ---- root ------------------------------------------------------------------------------ */

#define MAX_ROOTS 32

struct mtft_config {
    mtft_cfg_ctx ctx;
    char *file;
    char *base_dir;
    mtft_cfg_task *tasks;
    int n_tasks;
    mtft_cfg_run run;
    unsigned present;       /* bit per root entry (bit 0: tasks, bit 1 + r: roots[r]) */
};

void mtft_cfg__init_task(mtft_cfg_task *t) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    mtft_head_options h = MTFT_HEAD_OPTIONS_INIT;
    memset(t, 0, sizeof *t);
    t->task = o;
    t->head = h;
}

/* "a, b, c": the metric names a task type reports (mtft_task_type_metric). */
static void metric_list(mtft_task_type type, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = '\0';
    for (int c = 0; mtft_task_type_metric(type, c) && off < cap; c++) {
        int n = snprintf(buf + off, cap - off, "%s%s", off ? ", " : "", mtft_task_type_metric(type, c));
        if (n < 0) break;
        off += (size_t)n;
    }
}

/* Cross-key checks of one task: metrics and select_metric for its type, then
 * everything mtft_task_new() checks, located at the task. */
static int check_task(mtft_config *cfg, const mtft_cnode *node, int idx, const char *path) {
    mtft_task_options *o = &cfg->tasks[idx].task;
    const mtft_cnode *mnode = mtft_cfg__get(node, "metrics");
    if (o->select_metric && !mtft_task_metric_valid(o->type, o->select_metric)) {
        char p2[300], listbuf[300];
        snprintf(p2, sizeof p2, "%s.select_metric", path);
        metric_list(o->type, listbuf, sizeof listbuf);
        return mtft_cfg__errat(&cfg->ctx, mtft_cfg__get(node, "select_metric"), MTFT_ENOTFOUND, p2,
                               "'%s' is not a %s metric (expected one of: %s)", o->select_metric,
                               mtft_task_type_name(o->type), listbuf);
    }
    for (int i = 0; i < o->n_metrics; i++) {
        if (!mtft_task_metric_valid(o->type, o->metrics[i])) {
            char p2[300];
            snprintf(p2, sizeof p2, "%s.metrics[%d]", path, i);
            char listbuf[300];
            metric_list(o->type, listbuf, sizeof listbuf);
            return mtft_cfg__errat(&cfg->ctx, mnode->items[i], MTFT_ENOTFOUND, p2, "'%s' is not a %s metric (expected one of: %s)",
                                   o->metrics[i], mtft_task_type_name(o->type), listbuf);
        }
    }
    for (int j = 0; j < idx; j++)
        if (!strcmp(cfg->tasks[j].task.name, o->name)) {
            char p2[300];
            snprintf(p2, sizeof p2, "%s.name", path);
            return mtft_cfg__errat(&cfg->ctx, mtft_cfg__get(node, "name"), MTFT_EINVAL, p2,
                                   "task name '%s' is already used by tasks[%d]", o->name, j);
        }
    mtft_task *t = NULL;
    int rc = mtft_task_new(&t, o);
    mtft_task_free(t);
    if (rc < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mtft_error_last()->message);
        return mtft_cfg__errat(&cfg->ctx, node, rc, path, "%s", msg);
    }
    return MTFT_OK;
}

/* A task's head: entry: kind from the type (a given kind must match), pool
 * and hidden size from heads:, name and n_labels from the task. */
static int finish_head(mtft_config *cfg, const mtft_cnode *node, int idx, const char *path) {
    mtft_cfg_task *t = &cfg->tasks[idx];
    const mtft_cnode *hn = mtft_cfg__get(node, "head");
    if (!hn) return MTFT_OK;
    t->has_head = 1;
    static const mtft_head_kind by_type[] = {MTFT_HEAD_CLASSIFICATION, MTFT_HEAD_MULTILABEL, MTFT_HEAD_REGRESSION,
                                             MTFT_HEAD_TOKEN_CLASSIFICATION, MTFT_HEAD_LM};
    mtft_head_kind want = by_type[t->task.type];
    const mtft_cfg_written *w = mtft_cfg__where(&cfg->ctx, &t->head.kind);
    if (w && t->head.kind != want)
        return mtft_cfg__errat(&cfg->ctx, w->node, MTFT_EINVAL, w->path,
                               "head type '%s' does not suit a %s task (expected %s)", k_head_kinds[t->head.kind],
                               mtft_task_type_name(t->task.type), k_head_kinds[want]);
    t->head.kind = want;
    if (!mtft_cfg__where(&cfg->ctx, &t->head.pool)) t->head.pool = cfg->run.trainer.head_pool;
    if (!mtft_cfg__where(&cfg->ctx, &t->head.hidden_size))
        t->head.hidden_size = want == MTFT_HEAD_LM ? 0 : cfg->run.trainer.head_hidden;
    w = mtft_cfg__where(&cfg->ctx, &t->head.hidden_size);
    if (want == MTFT_HEAD_LM && t->head.hidden_size > 0)
        return mtft_cfg__errat(&cfg->ctx, w ? w->node : hn, MTFT_EINVAL, w ? w->path : path,
                               "an lm head has no hidden layer (hidden_size must be 0)");
    t->head.name = t->task.name;
    switch (want) {
    case MTFT_HEAD_REGRESSION: t->head.n_labels = 1; break;
    case MTFT_HEAD_LM: t->head.n_labels = 0; break;
    default: t->head.n_labels = t->task.n_labels; break;
    }
    return MTFT_OK;
}

static int apply_tasks(mtft_config *cfg, const mtft_cnode *v) {
    if (mtft_cfg__is_null(v)) return MTFT_OK; /* "tasks:" with nothing: no tasks */
    if (v->kind != MTFT_CN_SEQ)
        return mtft_cfg__errat(&cfg->ctx, v, MTFT_EFORMAT, "tasks", "expected a list of tasks, got %s",
                               mtft_cfg__kind_name(v));
    if (v->n > 0) {
        cfg->tasks = mtft__calloc((size_t)v->n, sizeof *cfg->tasks);
        if (!cfg->tasks) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    }
    for (int t = 0; t < v->n; t++) {
        char path[64];
        snprintf(path, sizeof path, "tasks[%d]", t);
        mtft_cfg__init_task(&cfg->tasks[t]);
        cfg->n_tasks = t + 1;
        int rc = mtft_cfg__apply(&cfg->ctx, v->items[t], &k_task, &cfg->tasks[t], path);
        if (!rc) rc = check_task(cfg, v->items[t], t, path);
        if (rc) return rc;
    }
    return MTFT_OK;
}

static int apply_root(mtft_config *cfg, const mtft_cnode *root) {
    int n_roots = 0;
    const mtft_cfg_root *roots = mtft_cfg__roots(&n_roots);
    const char *names[MAX_ROOTS + 1];
    names[0] = "tasks";
    for (int r = 0; r < n_roots && r < MAX_ROOTS; r++) names[r + 1] = roots[r].name;
    const int n_names = (n_roots < MAX_ROOTS ? n_roots : MAX_ROOTS) + 1;
    if (root->kind != MTFT_CN_MAP)
        return mtft_cfg__errat(&cfg->ctx, root, MTFT_EFORMAT, "", "expected a mapping of sections (tasks, model, ...), got %s",
                               mtft_cfg__kind_name(root));
    const mtft_cnode *tasks_node = NULL;
    for (int i = 0; i < root->n; i++) {
        const char *key = root->keys[i]->value;
        const mtft_cnode *v = root->items[i];
        int which = -1;
        for (int r = 0; r < n_names; r++)
            if (!strcmp(key, names[r])) which = r;
        if (which < 0) {
            const char *best = mtft_cfg__suggest(key, names, n_names);
            if (best)
                return mtft_cfg__errat(&cfg->ctx, root->keys[i], MTFT_ENOTFOUND, key,
                                       "unknown section '%s' (did you mean '%s'?)", key, best);
            char list[512];
            size_t off = 0;
            list[0] = '\0';
            for (int r = 0; r < n_names && off < sizeof list; r++)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", r ? ", " : "", names[r]);
            return mtft_cfg__errat(&cfg->ctx, root->keys[i], MTFT_ENOTFOUND, key,
                                   "unknown section '%s' (valid sections: %s)", key, list);
        }
        cfg->present |= 1u << which;
        int rc;
        if (which == 0) {
            tasks_node = v;
            rc = apply_tasks(cfg, v);
        } else {
            if (mtft_cfg__is_null(v)) continue;
            rc = mtft_cfg__apply(&cfg->ctx, v, roots[which - 1].sec, &cfg->run, key);
        }
        if (rc) return rc;
    }
    int rc = mtft_cfg__finish_run(&cfg->ctx, &cfg->run, cfg->n_tasks);
    for (int t = 0; t < cfg->n_tasks && rc == MTFT_OK; t++) {
        char path[64];
        snprintf(path, sizeof path, "tasks[%d]", t);
        rc = finish_head(cfg, tasks_node->items[t], t, path);
    }
    return rc;
}

int mtft_config_load_string(mtft_config **out, const char *text, size_t len, const char *name, const char *base_dir) {
    MTFT_CHECK_ARG(out != NULL);
    *out = NULL;
    MTFT_CHECK_ARG(text != NULL || len == 0);
    mtft_config *cfg = mtft__calloc(1, sizeof *cfg);
    if (!cfg) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    cfg->file = mtft__strdup(name ? name : "<config>");
    cfg->base_dir = base_dir ? mtft__strdup(base_dir) : NULL;
    mtft_cfg__init_run(&cfg->run);
    if (!cfg->file || (base_dir && !cfg->base_dir)) {
        mtft_config_free(cfg);
        return mtft__err(MTFT_ENOMEM, "config: out of memory");
    }
    cfg->ctx.file = cfg->file;
    cfg->ctx.base_dir = cfg->base_dir;
    mtft_cnode *root = NULL;
    int rc = mtft_cfg__parse(text ? text : "", len, cfg->file, &root);
    if (rc == MTFT_OK) rc = apply_root(cfg, root);
    mtft_cfg__free(root);
    /* the records point into the tree: drop them with it */
    mtft__free(cfg->ctx.written);
    cfg->ctx.written = NULL;
    cfg->ctx.n_written = cfg->ctx.cap_written = 0;
    if (rc != MTFT_OK) {
        mtft_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return MTFT_OK;
}

int mtft_config_load_file(mtft_config **out, const char *path) {
    MTFT_CHECK_ARG(out != NULL);
    *out = NULL;
    MTFT_CHECK_ARG(path != NULL);
    char *text = NULL;
    size_t len = 0;
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) {
        mtft__err_prefix("config");
        return rc;
    }
    char *dir = mtft__strdup(path);
    if (!dir) {
        mtft__free(text);
        return mtft__err(MTFT_ENOMEM, "config: out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash) {
        if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
    }
    rc = mtft_config_load_string(out, text, len, path, slash ? dir : NULL);
    mtft__free(dir);
    mtft__free(text);
    return rc;
}

void mtft_config_free(mtft_config *cfg) {
    if (!cfg) return;
    mtft_cfg__ctx_dispose(&cfg->ctx);
    mtft__free(cfg->tasks);
    mtft__free(cfg->file);
    mtft__free(cfg->base_dir);
    mtft__free(cfg);
}

int mtft_config_n_tasks(const mtft_config *cfg) { return cfg ? cfg->n_tasks : 0; }

const mtft_task_options *mtft_config_task(const mtft_config *cfg, int i) {
    if (!cfg || i < 0 || i >= cfg->n_tasks) return NULL;
    return &cfg->tasks[i].task;
}

const mtft_head_options *mtft_config_task_head(const mtft_config *cfg, int i) {
    if (!cfg || i < 0 || i >= cfg->n_tasks || !cfg->tasks[i].has_head) return NULL;
    return &cfg->tasks[i].head;
}

int mtft_config_task_head_for(const mtft_config *cfg, int i, const mtft_task *task, mtft_head_options *out) {
    MTFT_CHECK_ARG(cfg != NULL);
    MTFT_CHECK_ARG(out != NULL);
    if (i < 0 || i >= cfg->n_tasks)
        return mtft__err(MTFT_ERANGE, "config: task index %d outside [0, %d)", i, cfg->n_tasks);
    const mtft_head_options *h = mtft_config_task_head(cfg, i);
    if (!h) return 0;
    *out = *h;
    if (task && h->kind != MTFT_HEAD_REGRESSION && h->kind != MTFT_HEAD_LM) {
        int n = mtft_task_n_labels(task);
        if (n < 0) return n;
        out->n_labels = n;
    }
    return 1;
}

const mtft_data_options *mtft_config_data(const mtft_config *cfg) { return cfg ? &cfg->run.data : NULL; }
const mtft_loader_options *mtft_config_loader(const mtft_config *cfg) { return cfg ? &cfg->run.loader : NULL; }
const mtft_collate_options *mtft_config_collate(const mtft_config *cfg) { return cfg ? &cfg->run.collate : NULL; }
const mtft_model_config *mtft_config_model(const mtft_config *cfg) { return cfg ? &cfg->run.model : NULL; }
const mtft_run_options *mtft_config_run(const mtft_config *cfg) { return cfg ? &cfg->run.run : NULL; }
const mtft_lora_options *mtft_config_lora(const mtft_config *cfg) { return cfg ? &cfg->run.lora : NULL; }
const mtft_adapter_options *mtft_config_adapter(const mtft_config *cfg) { return cfg ? &cfg->run.adapter : NULL; }
const mtft_trainer_options *mtft_config_trainer(const mtft_config *cfg) { return cfg ? &cfg->run.trainer : NULL; }
const mtft_sampler_options *mtft_config_sampler(const mtft_config *cfg) {
    return cfg ? &cfg->run.trainer.sampler : NULL;
}
const mtft_balancer_options *mtft_config_balancer(const mtft_config *cfg) {
    return cfg ? &cfg->run.trainer.balancer : NULL;
}
const mtft_adamw_options *mtft_config_adamw(const mtft_config *cfg) { return cfg ? &cfg->run.adamw : NULL; }
const mtft_schedule_options *mtft_config_schedule(const mtft_config *cfg) { return cfg ? &cfg->run.schedule : NULL; }
const mtft_pretrain_options *mtft_config_pretrain(const mtft_config *cfg) { return cfg ? &cfg->run.pretrain : NULL; }
const char *const *mtft_config_pretrain_texts(const mtft_config *cfg, int *n_out) {
    if (n_out) *n_out = cfg ? cfg->run.n_pretrain_texts : 0;
    return cfg ? cfg->run.pretrain_texts : NULL;
}

int mtft_config_has_section(const mtft_config *cfg, const char *name) {
    if (!cfg || !name) return 0;
    if (!strcmp(name, "tasks")) return (int)(cfg->present & 1u);
    int n_roots = 0;
    const mtft_cfg_root *roots = mtft_cfg__roots(&n_roots);
    for (int r = 0; r < n_roots && r < MAX_ROOTS; r++)
        if (!strcmp(name, roots[r].name)) return (int)((cfg->present >> (r + 1)) & 1u);
    return 0;
}

/* ---- reference docs ------------------------------------------------------------------------ */

static int md_append(char **md, size_t *len, size_t *cap, const char *s) {
    size_t l = strlen(s);
    if (*len + l + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 8192;
        while (nc < *len + l + 1) nc *= 2;
        char *nb = mtft__realloc(*md, nc);
        if (!nb) return -1;
        *md = nb;
        *cap = nc;
    }
    memcpy(*md + *len, s, l + 1);
    *len += l;
    return 0;
}

static int md_section(char **md, size_t *len, size_t *cap, const char *title, const char *intro,
                      const mtft_cfg_section *sec, const char *prefix) {
    static const char head[] = "| key | type | default | range / values | meaning |\n| --- | --- | --- | --- | --- |\n";
    if (md_append(md, len, cap, "### ") || md_append(md, len, cap, title) || md_append(md, len, cap, "\n\n"))
        return -1;
    if (intro && (md_append(md, len, cap, intro) || md_append(md, len, cap, "\n\n"))) return -1;
    if (md_append(md, len, cap, head)) return -1;
    return mtft_cfg__section_markdown(sec, prefix, md, len, cap);
}

int mtft_config_reference_markdown(char *buf, size_t cap, size_t *len_out) {
    MTFT_CHECK_ARG(buf != NULL || cap == 0);
    char *md = NULL;
    size_t len = 0, mcap = 0;
    int bad = md_section(&md, &len, &mcap, "`tasks:` (a list; each item is one task -> `mtft_task_options`, "
                                           "its `head:` -> `mtft_head_options`)",
                         NULL, &k_task, "tasks[].");
    /* metric names per type, from the data module's own table */
    for (int ty = 0; ty <= MTFT_TASK_GENERATION && !bad; ty++) {
        char line[512];
        size_t off = (size_t)snprintf(line, sizeof line, "%s`%s` metrics: ", ty == 0 ? "\n" : "",
                                      mtft_task_type_name((mtft_task_type)ty));
        for (int c = 0; mtft_task_type_metric((mtft_task_type)ty, c) && off < sizeof line; c++) {
            int n = snprintf(line + off, sizeof line - off, "%s`%s`", c ? ", " : "",
                             mtft_task_type_metric((mtft_task_type)ty, c));
            if (n > 0) off += (size_t)n;
        }
        if (off < sizeof line) snprintf(line + off, sizeof line - off, ".  \n");
        bad = md_append(&md, &len, &mcap, line);
    }
    if (!bad)
        bad = md_append(&md, &len, &mcap,
                        "span_f1 is reported for BIO/IOBES tag sets only; exact_match and chrf when the trainer has "
                        "a tokenizer (`mtft train` sets it). Older spellings are accepted as aliases: `f1_macro` "
                        "(macro_f1; tag_macro_f1 for tagging), `f1_micro` (tag_micro_f1, tagging), `loss` (nll, "
                        "generation). The selection score is the mean over tasks of each task's select_metric.\n");
    int n_roots = 0;
    const mtft_cfg_root *roots = mtft_cfg__roots(&n_roots);
    for (int r = 0; r < n_roots && !bad; r++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s.", roots[r].name);
        bad = md_append(&md, &len, &mcap, "\n") ||
              md_section(&md, &len, &mcap, roots[r].title, roots[r].intro, roots[r].sec, prefix);
    }
    if (bad) {
        mtft__free(md);
        return mtft__err(MTFT_ENOMEM, "config: out of memory");
    }
    if (len_out) *len_out = len;
    if (cap > len) {
        memcpy(buf, md, len + 1);
        mtft__free(md);
        return MTFT_OK;
    }
    if (cap > 0) {
        memcpy(buf, md, cap - 1);
        buf[cap - 1] = '\0';
    }
    mtft__free(md);
    return mtft__err(MTFT_ERANGE, "config reference needs %zu bytes plus a NUL, buffer has %zu", len, cap);
}

/* For the tests: the task tables. */
const mtft_cfg_section *mtft_cfg__task_section(void) { return &k_task; }
const mtft_cfg_section *mtft_cfg__head_section(void) { return &k_head; }
