/* Config sections: the schema tables of tasks: and data:, the root table,
 * and the public mtft_config API. */
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
static const char *const k_truncation[] = {"right", "left", NULL};

#define TO(f) offsetof(mtft_task_options, f)

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
     "Metrics to report; each must suit the task type (see below)."},
    {"on_bad_example", MTFT_CK_ENUM, TO(on_bad_example), 0, "error", 0, 0, 0, k_on_bad, NULL,
     "error: stop at the first bad record; skip: drop it, count it per reason and log the counts."},
};
static const mtft_cfg_section k_task = {"tasks[]", k_task_keys, N_KEYS(k_task_keys), "One task definition."};

/* ---- data: --------------------------------------------------------------------------- */

typedef struct cfg_data {
    mtft_data_options data;
    mtft_loader_options loader;
    mtft_collate_options collate;
} cfg_data;

#define DO(f) offsetof(cfg_data, f)

static const mtft_cfg_key k_data_keys[] = {
    {"cache_dir", MTFT_CK_PATH, DO(data.cache_dir), 0, "", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "Directory of tokenized caches (created if missing); none: tokenize in memory on every load."},
    {"eos_token", MTFT_CK_STRING, DO(data.eos_token), 0, "<|endoftext|>", MTFT_CFG_NULLABLE, 0, 0, NULL, NULL,
     "Token appended to generation targets; null: none."},
    {"log_progress", MTFT_CK_BOOL, DO(data.log_progress), 0, "true", 0, 0, 0, NULL, NULL,
     "Log one line per loaded task."},
    {"batch_size", MTFT_CK_INT, DO(loader.batch_size), 0, "16", MTFT_CFG_RANGE, 1, 1048576, NULL, NULL,
     "Examples per batch."},
    {"shuffle", MTFT_CK_BOOL, DO(loader.shuffle), 0, "true", 0, 0, 0, NULL, NULL,
     "Shuffle the examples every epoch (seeded)."},
    {"seed", MTFT_CK_U64, DO(loader.seed), 0, "0", 0, 0, 0, NULL, NULL, "Seed of the batch order."},
    {"bucket_window", MTFT_CK_INT, DO(loader.bucket_window), 0, "0", MTFT_CFG_RANGE, 0, 1048576, NULL, NULL,
     "Sort by length within windows of this many batches (less padding); 0 or 1: off."},
    {"drop_last", MTFT_CK_BOOL, DO(loader.drop_last), 0, "false", 0, 0, 0, NULL, NULL,
     "Drop a last batch smaller than batch_size."},
    {"max_len", MTFT_CK_INT, DO(collate.max_len), 0, "512", MTFT_CFG_RANGE, 1, 1048576, NULL, NULL,
     "Longest row in tokens; longer examples are truncated."},
    {"truncation", MTFT_CK_ENUM, DO(collate.truncation), 0, "right", 0, 0, 0, k_truncation, NULL,
     "right: keep the first max_len tokens; left: keep the last ones."},
    {"pad_id", MTFT_CK_INT32, DO(collate.pad_id), 0, "0", MTFT_CFG_RANGE, 0, 2147483647.0, NULL, NULL,
     "Token id written at padding positions."},
    {"pack", MTFT_CK_BOOL, DO(collate.pack), 0, "false", 0, 0, 0, NULL, NULL,
     "Pack several generation examples into each row (segments restart positions)."},
    {"pad_to_multiple", MTFT_CK_INT, DO(collate.pad_to_multiple), 0, "1", MTFT_CFG_RANGE, 1, 4096, NULL, NULL,
     "Round the padded length up to a multiple of this."},
};
static const mtft_cfg_section k_data = {"data", k_data_keys, N_KEYS(k_data_keys), "Data pipeline options."};

/* ---- root ------------------------------------------------------------------------------ */

struct mtft_config {
    mtft_cfg_ctx ctx;
    char *file;
    char *base_dir;
    mtft_task_options *tasks;
    int n_tasks;
    cfg_data data;
    unsigned present; /* bit per root entry */
};

static void init_task(void *p) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    *(mtft_task_options *)p = o;
}

static void init_data(void *p) {
    cfg_data d;
    mtft_data_options a = MTFT_DATA_OPTIONS_INIT;
    mtft_loader_options b = MTFT_LOADER_OPTIONS_INIT;
    mtft_collate_options c = MTFT_COLLATE_OPTIONS_INIT;
    d.data = a;
    d.loader = b;
    d.collate = c;
    *(cfg_data *)p = d;
}

static const char *const k_all_metrics[] = {"accuracy", "f1_macro", "f1_micro", "mcc", "exact_match", "hamming",
                                            "rmse", "mae", "pearson", "spearman", "r2", "token_accuracy",
                                            "span_f1", "loss", "perplexity", "chrf"};

static void metric_list(mtft_task_type type, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = '\0';
    for (size_t c = 0; c < sizeof k_all_metrics / sizeof k_all_metrics[0] && off < cap; c++)
        if (mtft_task_metric_valid(type, k_all_metrics[c]))
            off += (size_t)snprintf(buf + off, cap - off, "%s%s", off ? ", " : "", k_all_metrics[c]);
}

/* Cross-key checks of one task: metrics for its type, then everything
 * mtft_task_new() checks, located at the task. */
static int check_task(mtft_config *cfg, const mtft_cnode *node, int idx, const char *path) {
    mtft_task_options *o = &cfg->tasks[idx];
    const mtft_cnode *mnode = mtft_cfg__get(node, "metrics");
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
        if (!strcmp(cfg->tasks[j].name, o->name)) {
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

static const char *const k_root_names[] = {"tasks", "data"};
enum { ROOT_TASKS = 0, ROOT_DATA = 1, N_ROOT = 2 };

static int apply_root(mtft_config *cfg, const mtft_cnode *root) {
    if (root->kind != MTFT_CN_MAP)
        return mtft_cfg__errat(&cfg->ctx, root, MTFT_EFORMAT, "", "expected a mapping of sections (%s, %s), got %s",
                               k_root_names[0], k_root_names[1], mtft_cfg__kind_name(root));
    for (int i = 0; i < root->n; i++) {
        const char *key = root->keys[i]->value;
        const mtft_cnode *v = root->items[i];
        int which = -1;
        for (int r = 0; r < N_ROOT; r++)
            if (!strcmp(key, k_root_names[r])) which = r;
        if (which < 0) {
            const char *best = mtft_cfg__suggest(key, k_root_names, N_ROOT);
            if (best)
                return mtft_cfg__errat(&cfg->ctx, root->keys[i], MTFT_ENOTFOUND, key,
                                       "unknown section '%s' (did you mean '%s'?)", key, best);
            return mtft_cfg__errat(&cfg->ctx, root->keys[i], MTFT_ENOTFOUND, key,
                                   "unknown section '%s' (this version knows: tasks, data)", key);
        }
        cfg->present |= 1u << which;
        if (which == ROOT_DATA) {
            if (mtft_cfg__is_null(v)) continue;
            int rc = mtft_cfg__apply(&cfg->ctx, v, &k_data, &cfg->data, "data");
            if (rc) return rc;
        } else {
            if (mtft_cfg__is_null(v)) continue; /* "tasks:" with nothing: no tasks */
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
                init_task(&cfg->tasks[t]);
                cfg->n_tasks = t + 1;
                int rc = mtft_cfg__apply(&cfg->ctx, v->items[t], &k_task, &cfg->tasks[t], path);
                if (!rc) rc = check_task(cfg, v->items[t], t, path);
                if (rc) return rc;
            }
        }
    }
    return MTFT_OK;
}

int mtft_config_load_string(mtft_config **out, const char *text, size_t len, const char *name, const char *base_dir) {
    MTFT_CHECK_ARG(out != NULL);
    *out = NULL;
    MTFT_CHECK_ARG(text != NULL || len == 0);
    mtft_config *cfg = mtft__calloc(1, sizeof *cfg);
    if (!cfg) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    cfg->file = mtft__strdup(name ? name : "<config>");
    cfg->base_dir = base_dir ? mtft__strdup(base_dir) : NULL;
    init_data(&cfg->data);
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
    return &cfg->tasks[i];
}

const mtft_data_options *mtft_config_data(const mtft_config *cfg) { return cfg ? &cfg->data.data : NULL; }
const mtft_loader_options *mtft_config_loader(const mtft_config *cfg) { return cfg ? &cfg->data.loader : NULL; }
const mtft_collate_options *mtft_config_collate(const mtft_config *cfg) { return cfg ? &cfg->data.collate : NULL; }

int mtft_config_has_section(const mtft_config *cfg, const char *name) {
    if (!cfg || !name) return 0;
    for (int r = 0; r < N_ROOT; r++)
        if (!strcmp(name, k_root_names[r])) return (cfg->present >> r) & 1u;
    return 0;
}

/* ---- reference docs ------------------------------------------------------------------------ */

int mtft_config_reference_markdown(char *buf, size_t cap, size_t *len_out) {
    MTFT_CHECK_ARG(buf != NULL || cap == 0);
    char *md = NULL;
    size_t len = 0, mcap = 0;
    static const char head[] = "| key | type | default | range / values | meaning |\n| --- | --- | --- | --- | --- |\n";
    const mtft_cfg_section *secs[] = {&k_task, &k_data};
    const char *prefixes[] = {"tasks[].", "data."};
    const char *titles[] = {"### `tasks:` (a list; each item is one task -> `mtft_task_options`)\n\n",
                            "### `data:` (-> `mtft_data_options`, `mtft_loader_options`, `mtft_collate_options`)\n\n"};
    int rc = MTFT_OK;
    for (int s = 0; s < 2 && rc == MTFT_OK; s++) {
        size_t need = strlen(titles[s]) + sizeof head;
        char *nb = mtft__realloc(md, len + need + 1);
        if (!nb) {
            rc = MTFT_ENOMEM;
            break;
        }
        md = nb;
        mcap = len + need + 1;
        memcpy(md + len, titles[s], strlen(titles[s]));
        len += strlen(titles[s]);
        memcpy(md + len, head, sizeof head - 1);
        len += sizeof head - 1;
        md[len] = '\0';
        if (mtft_cfg__section_markdown(secs[s], prefixes[s], &md, &len, &mcap) < 0) rc = MTFT_ENOMEM;
        if (rc == MTFT_OK && s == 0) {
            /* metric names per type, from the data module's own check */
            char line[512];
            for (int ty = 0; ty <= MTFT_TASK_GENERATION && rc == MTFT_OK; ty++) {
                size_t off = (size_t)snprintf(line, sizeof line, "%s`%s` metrics: ", ty == 0 ? "\n" : "",
                                              mtft_task_type_name((mtft_task_type)ty));
                int first = 1;
                for (size_t c = 0; c < sizeof k_all_metrics / sizeof k_all_metrics[0]; c++)
                    if (mtft_task_metric_valid((mtft_task_type)ty, k_all_metrics[c])) {
                        off += (size_t)snprintf(line + off, sizeof line - off, "%s`%s`", first ? "" : ", ",
                                                k_all_metrics[c]);
                        first = 0;
                    }
                snprintf(line + off, sizeof line - off, ".%s\n", ty == MTFT_TASK_GENERATION ? "" : "  ");
                nb = mtft__realloc(md, len + strlen(line) + 1);
                if (!nb) {
                    rc = MTFT_ENOMEM;
                    break;
                }
                md = nb;
                mcap = len + strlen(line) + 1;
                memcpy(md + len, line, strlen(line) + 1);
                len += strlen(line);
            }
        }
        if (rc == MTFT_OK && s == 0) {
            nb = mtft__realloc(md, len + 2);
            if (!nb) rc = MTFT_ENOMEM;
            else {
                md = nb;
                mcap = len + 2;
                md[len++] = '\n';
                md[len] = '\0';
            }
        }
    }
    if (rc != MTFT_OK) {
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

/* For the tests: the schema tables, to check defaults against the _INIT
 * macros. */
const mtft_cfg_section *mtft_cfg__task_section(void);
const mtft_cfg_section *mtft_cfg__data_section(void);
const mtft_cfg_section *mtft_cfg__task_section(void) { return &k_task; }
const mtft_cfg_section *mtft_cfg__data_section(void) { return &k_data; }
size_t mtft_cfg__data_struct_size(void);
size_t mtft_cfg__data_struct_size(void) { return sizeof(cfg_data); }
void mtft_cfg__init_data(void *p);
void mtft_cfg__init_data(void *p) { init_data(p); }
