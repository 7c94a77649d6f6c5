/* Task definitions: option validation, names, accessors, and the load entry
 * point (cache lookup, else build; see build.c and cache.c). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_impl.h"
#include "template.h"

static const char *const k_type_names[] = {"classification", "multilabel", "regression", "tagging", "generation"};
static const char *const k_reason_names[] = {"syntax", "missing_field", "wrong_type",
                                             "unknown_label", "empty", "length_mismatch"};
static const char *const k_split_names[] = {"train", "dev", "test"};

/* Metrics each task type reports: exactly the mtft_metric names (mtft/metrics.h)
 * that the trainer's evaluation computes for the type (src/train/trainer.c
 * eval_task; tests/check_trainer.c checks the two agree). span_f1 needs a
 * BIO/IOBES tag set, exact_match and chrf a tokenizer on the trainer. The
 * data module may not include train headers, hence the strings. */
static const char *const k_metrics_cls[] = {"accuracy", "macro_f1", "mcc", NULL};
static const char *const k_metrics_ml[] = {"accuracy", "macro_f1", "mcc", NULL};
static const char *const k_metrics_reg[] = {"pearson", "spearman", "rmse", "mae", NULL};
static const char *const k_metrics_tag[] = {"token_accuracy", "tag_micro_f1", "tag_macro_f1", "span_f1", NULL};
static const char *const k_metrics_gen[] = {"perplexity", "nll", "token_accuracy", "exact_match", "chrf", NULL};

/* Old spellings with an exact equivalent, normalised by mtft_task_new. */
typedef struct metric_alias {
    int type; /* an mtft_task_type */
    const char *alias, *name;
} metric_alias;
static const metric_alias k_metric_aliases[] = {
    {MTFT_TASK_CLASSIFICATION, "f1_macro", "macro_f1"},
    {MTFT_TASK_MULTILABEL, "f1_macro", "macro_f1"},
    {MTFT_TASK_TAGGING, "f1_macro", "tag_macro_f1"},
    {MTFT_TASK_TAGGING, "f1_micro", "tag_micro_f1"},
    {MTFT_TASK_GENERATION, "loss", "nll"},
};

static const char *const *metrics_of(mtft_task_type t) {
    switch (t) {
    case MTFT_TASK_CLASSIFICATION: return k_metrics_cls;
    case MTFT_TASK_MULTILABEL: return k_metrics_ml;
    case MTFT_TASK_REGRESSION: return k_metrics_reg;
    case MTFT_TASK_TAGGING: return k_metrics_tag;
    case MTFT_TASK_GENERATION: return k_metrics_gen;
    }
    return NULL;
}

const char *mtft_task_type_name(mtft_task_type type) {
    if ((unsigned)type < sizeof k_type_names / sizeof k_type_names[0]) return k_type_names[type];
    return "?";
}

const char *mtft_bad_reason_name(mtft_bad_reason reason) {
    if ((unsigned)reason < MTFT_BAD_N_REASONS) return k_reason_names[reason];
    return "?";
}

const char *mtft_split_name(mtft_split split) {
    if ((unsigned)split < MTFT_SPLIT_COUNT) return k_split_names[split];
    return "?";
}

const char *mtft_task_metric_canonical(mtft_task_type type, const char *metric) {
    const char *const *m = metrics_of(type);
    if (!m || !metric) return NULL;
    for (; *m; m++)
        if (strcmp(*m, metric) == 0) return *m;
    for (size_t i = 0; i < sizeof k_metric_aliases / sizeof k_metric_aliases[0]; i++)
        if (k_metric_aliases[i].type == (int)type && strcmp(k_metric_aliases[i].alias, metric) == 0)
            return k_metric_aliases[i].name;
    return NULL;
}

int mtft_task_metric_valid(mtft_task_type type, const char *metric) {
    return mtft_task_metric_canonical(type, metric) != NULL;
}

const char *mtft_task_type_metric(mtft_task_type type, int i) {
    const char *const *m = metrics_of(type);
    if (!m || i < 0) return NULL;
    for (int j = 0; j < i; j++)
        if (!m[j]) return NULL;
    return m[i];
}

/* "a, b, c": the names a type reports (into buf, cap bytes). */
static void metric_list(mtft_task_type type, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = '\0';
    const char *const *m = metrics_of(type);
    for (; m && *m && off < cap; m++) {
        int n = snprintf(buf + off, cap - off, "%s%s", off ? ", " : "", *m);
        if (n < 0) break;
        off += (size_t)n;
    }
}

/* ---- construction --------------------------------------------------------------- */

static char *keep(mtft_task *t, const char *s) {
    if (!s) return NULL;
    if (t->n_strs == t->cap_strs) {
        int cap = t->cap_strs ? t->cap_strs * 2 : 16;
        char **ns = mtft__realloc(t->strs, (size_t)cap * sizeof *ns);
        if (!ns) return NULL;
        t->strs = ns;
        t->cap_strs = cap;
    }
    char *c = mtft__strdup(s);
    if (c) t->strs[t->n_strs++] = c;
    return c;
}

static int valid_name(const char *s) {
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.')) return 0;
    return 1;
}

static int valid_field(const char *s) { return s && *s; }

#define KEEP(field)                                                                     \
    do {                                                                                \
        if (o->field && !(t->o.field = keep(t, o->field))) {                            \
            rc = mtft__err(MTFT_ENOMEM, "task: out of memory copying options");         \
            goto fail;                                                                  \
        }                                                                               \
    } while (0)

int mtft_task_new(mtft_task **out, const mtft_task_options *o) {
    MTFT_CHECK_ARG(out != NULL);
    *out = NULL;
    MTFT_CHECK_ARG(o != NULL);
    if (o->version != MTFT_TASK_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "task options: version %d, this library knows %d (use MTFT_TASK_OPTIONS_INIT)",
                         o->version, MTFT_TASK_OPTIONS_VERSION);
    if (!valid_name(o->name))
        return mtft__err(MTFT_EINVAL, "task options: name '%s' is missing or has characters outside [A-Za-z0-9_.-]",
                         o->name ? o->name : "(null)");
    const char *nm = o->name;
    if ((unsigned)o->type > MTFT_TASK_GENERATION)
        return mtft__err(MTFT_EINVAL, "task '%s': unknown type %d", nm, (int)o->type);
    if ((unsigned)o->format > MTFT_FORMAT_TSV)
        return mtft__err(MTFT_EINVAL, "task '%s': unknown format %d", nm, (int)o->format);
    if ((unsigned)o->on_bad_example > MTFT_ON_BAD_SKIP)
        return mtft__err(MTFT_EINVAL, "task '%s': on_bad_example %d is neither error (0) nor skip (1)", nm,
                         (int)o->on_bad_example);
    if (!o->train_file || !*o->train_file)
        return mtft__err(MTFT_EINVAL, "task '%s': train_file is required", nm);
    if (!(o->dev_fraction >= 0.0 && o->dev_fraction < 1.0))
        return mtft__err(MTFT_ERANGE, "task '%s': dev_fraction %g outside [0, 1)", nm, o->dev_fraction);
    if (!(o->test_fraction >= 0.0 && o->test_fraction < 1.0))
        return mtft__err(MTFT_ERANGE, "task '%s': test_fraction %g outside [0, 1)", nm, o->test_fraction);
    if (o->dev_fraction + o->test_fraction >= 1.0)
        return mtft__err(MTFT_ERANGE, "task '%s': dev_fraction + test_fraction = %g leaves no training data", nm,
                         o->dev_fraction + o->test_fraction);
    if (o->dev_fraction > 0 && o->dev_file)
        return mtft__err(MTFT_EINVAL, "task '%s': dev split given both as dev_file and as dev_fraction", nm);
    if (o->test_fraction > 0 && o->test_file)
        return mtft__err(MTFT_EINVAL, "task '%s': test split given both as test_file and as test_fraction", nm);
    const char *fields[] = {o->input_field, o->label_field, o->value_field,
                            o->target_field, o->tokens_field, o->tags_field};
    const char *fnames[] = {"input_field", "label_field", "value_field", "target_field", "tokens_field", "tags_field"};
    for (int i = 0; i < 6; i++)
        if (fields[i] && !valid_field(fields[i]))
            return mtft__err(MTFT_EINVAL, "task '%s': %s is empty", nm, fnames[i]);
    if (o->prompt_template) {
        if (o->type == MTFT_TASK_TAGGING)
            return mtft__err(MTFT_EINVAL, "task '%s': tagging tasks take no prompt_template (words are tagged as given)",
                             nm);
        int rc = mtft_template_check(o->prompt_template, NULL, 0);
        if (rc < 0) {
            mtft__err_prefix("task '%s': prompt_template", nm);
            return rc;
        }
    }
    if (o->n_labels < 0 || (o->n_labels > 0 && !o->labels))
        return mtft__err(MTFT_EINVAL, "task '%s': labels is NULL with n_labels %d", nm, o->n_labels);
    if (o->n_labels > 0 && (o->type == MTFT_TASK_REGRESSION || o->type == MTFT_TASK_GENERATION))
        return mtft__err(MTFT_EINVAL, "task '%s': a %s task takes no label set", nm, mtft_task_type_name(o->type));
    for (int i = 0; i < o->n_labels; i++) {
        if (!o->labels[i] || !*o->labels[i])
            return mtft__err(MTFT_EINVAL, "task '%s': labels[%d] is empty", nm, i);
        for (int j = 0; j < i; j++)
            if (strcmp(o->labels[i], o->labels[j]) == 0)
                return mtft__err(MTFT_EINVAL, "task '%s': label '%s' appears twice in labels (%d and %d)", nm,
                                 o->labels[i], j, i);
    }
    if (o->n_metrics < 0 || (o->n_metrics > 0 && !o->metrics))
        return mtft__err(MTFT_EINVAL, "task '%s': metrics is NULL with n_metrics %d", nm, o->n_metrics);
    for (int i = 0; i < o->n_metrics; i++) {
        if (!mtft_task_metric_valid(o->type, o->metrics[i])) {
            char list[256];
            metric_list(o->type, list, sizeof list);
            return mtft__err(MTFT_ENOTFOUND, "task '%s': metrics[%d] '%s' is not a %s metric (expected one of: %s)",
                             nm, i, o->metrics[i] ? o->metrics[i] : "(null)", mtft_task_type_name(o->type), list);
        }
    }
    if (o->select_metric && !mtft_task_metric_valid(o->type, o->select_metric)) {
        char list[256];
        metric_list(o->type, list, sizeof list);
        return mtft__err(MTFT_ENOTFOUND, "task '%s': select_metric '%s' is not a %s metric (expected one of: %s)", nm,
                         o->select_metric, mtft_task_type_name(o->type), list);
    }

    int rc = MTFT_OK;
    mtft_task *t = mtft__calloc(1, sizeof *t);
    if (!t) return mtft__err(MTFT_ENOMEM, "task: out of memory");
    t->o = *o;
    t->o.name = t->o.train_file = t->o.dev_file = t->o.test_file = NULL;
    t->o.input_field = t->o.label_field = t->o.value_field = NULL;
    t->o.target_field = t->o.tokens_field = t->o.tags_field = t->o.prompt_template = NULL;
    t->o.labels = t->o.metrics = NULL;
    /* canonical names are static strings: no copy needed */
    t->o.select_metric = o->select_metric ? mtft_task_metric_canonical(o->type, o->select_metric) : NULL;
    KEEP(name);
    KEEP(train_file);
    KEEP(dev_file);
    KEEP(test_file);
    KEEP(input_field);
    KEEP(label_field);
    KEEP(value_field);
    KEEP(target_field);
    KEEP(tokens_field);
    KEEP(tags_field);
    KEEP(prompt_template);
    /* type defaults for the field mapping */
    if (!t->o.input_field) t->o.input_field = o->type == MTFT_TASK_GENERATION ? "input" : "text";
    if (!t->o.label_field) t->o.label_field = "label";
    if (!t->o.value_field) t->o.value_field = "value";
    if (!t->o.target_field) t->o.target_field = "target";
    if (!t->o.tokens_field) t->o.tokens_field = "tokens";
    if (!t->o.tags_field) t->o.tags_field = "tags";
    if (o->n_labels > 0) {
        t->labels_copy = mtft__calloc((size_t)o->n_labels, sizeof(char *));
        if (!t->labels_copy) {
            rc = mtft__err(MTFT_ENOMEM, "task: out of memory");
            goto fail;
        }
        for (int i = 0; i < o->n_labels; i++)
            if (!(t->labels_copy[i] = keep(t, o->labels[i]))) {
                rc = mtft__err(MTFT_ENOMEM, "task: out of memory");
                goto fail;
            }
        t->o.labels = (const char *const *)t->labels_copy;
    }
    if (o->n_metrics > 0) {
        t->metrics_copy = mtft__calloc((size_t)o->n_metrics, sizeof(char *));
        if (!t->metrics_copy) {
            rc = mtft__err(MTFT_ENOMEM, "task: out of memory");
            goto fail;
        }
        for (int i = 0; i < o->n_metrics; i++)
            t->metrics_copy[i] = (char *)mtft_task_metric_canonical(o->type, o->metrics[i]);
        t->o.metrics = (const char *const *)t->metrics_copy;
    }
    *out = t;
    return MTFT_OK;
fail:
    mtft_task_free(t);
    return rc;
}

void mtft_task_free(mtft_task *t) {
    if (!t) return;
    mtft_data__detach(t);
    for (int i = 0; i < t->n_strs; i++) mtft__free(t->strs[i]);
    mtft__free(t->strs);
    mtft__free(t->labels_copy);
    mtft__free(t->metrics_copy);
    mtft__free(t);
}

/* ---- load -------------------------------------------------------------------- */

static int mkdir_p(const char *dir);

int mtft_task_load(mtft_task *t, mtft_tokenizer *tok, const mtft_data_options *opts) {
    MTFT_CHECK_ARG(t != NULL);
    MTFT_CHECK_ARG(tok != NULL);
    mtft_data_options dflt = MTFT_DATA_OPTIONS_INIT;
    const mtft_data_options *o = opts ? opts : &dflt;
    if (o->version != MTFT_DATA_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "data options: version %d, this library knows %d (use MTFT_DATA_OPTIONS_INIT)",
                         o->version, MTFT_DATA_OPTIONS_VERSION);
    mtft_data__detach(t);
    int rc;
    void *blob = NULL;
    size_t size = 0;
    if (!o->cache_dir || !*o->cache_dir) {
        rc = mtft_data__build(t, tok, o, 0, NULL, &blob, &size);
        if (rc < 0) return rc;
        rc = mtft_data__attach(t, blob, size, "in-memory dataset");
        if (rc < 0) {
            mtft__free(blob);
            return rc;
        }
        t->blob = blob;
        t->blob_size = size;
    } else {
        uint64_t key = 0;
        if ((rc = mtft_data__key(t, tok, o, &key)) < 0) return rc;
        size_t plen = strlen(o->cache_dir) + strlen(t->o.name) + 32;
        char *path = mtft__malloc(plen);
        if (!path) return mtft__err(MTFT_ENOMEM, "task '%s': out of memory", t->o.name);
        snprintf(path, plen, "%s/%s-%016llx.mtftds", o->cache_dir, t->o.name, (unsigned long long)key);
        void *map = NULL;
        rc = mtft_data__map_file(path, &map, &size);
        if (rc == MTFT_OK) {
            rc = mtft_data__attach(t, map, size, path);
            if (rc == MTFT_OK && t->hdr->key != key) rc = mtft__err(MTFT_EFORMAT, "%s: key does not match", path);
            if (rc == MTFT_OK) {
                t->map = map;
                t->blob_size = size;
                t->cache_hit = 1;
            } else {
                mtft__log(MTFT_LOG_WARN, "task '%s': ignoring unusable cache file (%s); rebuilding", t->o.name,
                          mtft_error_last()->message);
                mtft_data__detach(t);
                mtft_data__unmap(map, size);
                map = NULL;
            }
        } else if (rc != MTFT_ENOTFOUND) {
            mtft__log(MTFT_LOG_WARN, "task '%s': cannot map cache file (%s); rebuilding", t->o.name,
                      mtft_error_last()->message);
        }
        if (!t->cache_hit) {
            rc = mkdir_p(o->cache_dir);
            if (rc == MTFT_OK) rc = mtft_data__build(t, tok, o, key, path, &blob, &size);
            if (rc < 0) { /* its message names the data or the cache file */
                mtft__free(path);
                return rc;
            }
            if (rc == MTFT_OK) rc = mtft_data__map_file(path, &map, &size);
            if (rc == MTFT_OK) {
                rc = mtft_data__attach(t, map, size, path);
                if (rc < 0) mtft_data__unmap(map, size);
                else {
                    t->map = map;
                    t->blob_size = size;
                }
            }
            if (rc < 0) {
                mtft__err_prefix("task '%s': cache", t->o.name);
                mtft__free(path);
                return rc;
            }
        }
        t->cache_path = path;
    }
    /* what mtft_task_encode_input needs to encode as this load did */
    t->tok_vocab = mtft_tokenizer_vocab_size(tok);
    t->eos_id = -1;
    if (t->o.type == MTFT_TASK_GENERATION && o->eos_token && *o->eos_token)
        t->eos_id = mtft_tokenizer_token_to_id(tok, o->eos_token);
    int64_t skipped = mtft_task_skipped(t, MTFT_BAD_N_REASONS);
    if (o->log_progress)
        mtft__log(MTFT_LOG_INFO, "task '%s' (%s): %lld train, %lld dev, %lld test examples, %d labels; %s",
                  t->o.name, mtft_task_type_name(t->o.type), (long long)t->hdr->n_split[0],
                  (long long)t->hdr->n_split[1], (long long)t->hdr->n_split[2], (int)t->hdr->n_labels,
                  !t->cache_path ? "no cache" : t->cache_hit ? "cache hit" : "cache written");
    if (skipped > 0) {
        char msg[512];
        size_t off = 0;
        for (int r = 0; r < MTFT_BAD_N_REASONS; r++)
            if (t->hdr->skipped[r] > 0)
                off += (size_t)snprintf(msg + off, sizeof msg - off, "%s%s: %lld", off ? ", " : "", k_reason_names[r],
                                        (long long)t->hdr->skipped[r]);
        mtft__log(MTFT_LOG_WARN, "task '%s': skipped %lld bad examples (%s)%s", t->o.name, (long long)skipped, msg,
                  t->cache_hit ? " [counts from the cache]" : "");
    }
    return MTFT_OK;
}

static int mkdir_p(const char *dir) {
    char *d = mtft__strdup(dir);
    if (!d) return mtft__err(MTFT_ENOMEM, "out of memory");
    int rc = MTFT_OK;
    for (char *p = d + 1;; p++) {
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (*d && mkdir(d, 0777) != 0 && errno != EEXIST) {
                rc = mtft__err(MTFT_EIO, "cache_dir '%s': cannot create '%s': %s", dir, d, strerror(errno));
                break;
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    mtft__free(d);
    return rc;
}

/* ---- accessors --------------------------------------------------------------- */

const char *mtft_task_name(const mtft_task *t) { return t ? t->o.name : NULL; }
mtft_task_type mtft_task_type_of(const mtft_task *t) { return t ? t->o.type : MTFT_TASK_CLASSIFICATION; }

int64_t mtft_task_count(const mtft_task *t, mtft_split split) {
    if (!t || !t->hdr || (unsigned)split >= MTFT_SPLIT_COUNT) return 0;
    return t->hdr->n_split[split];
}

int mtft_task_n_labels(const mtft_task *t) {
    if (!t) return 0;
    if (t->hdr) return (int)t->hdr->n_labels;
    return t->o.n_labels;
}

const char *mtft_task_label(const mtft_task *t, int i) {
    if (!t || i < 0) return NULL;
    if (t->hdr) return i < (int)t->hdr->n_labels ? t->label_names[i] : NULL;
    return i < t->o.n_labels ? t->o.labels[i] : NULL;
}

int mtft_task_label_id(const mtft_task *t, const char *label) {
    if (!t || !label) return -1;
    int n = mtft_task_n_labels(t);
    for (int i = 0; i < n; i++)
        if (strcmp(mtft_task_label(t, i), label) == 0) return i;
    return -1;
}

int64_t mtft_task_skipped(const mtft_task *t, mtft_bad_reason reason) {
    if (!t || !t->hdr) return 0;
    if (reason == MTFT_BAD_N_REASONS) {
        int64_t s = 0;
        for (int r = 0; r < MTFT_BAD_N_REASONS; r++) s += t->hdr->skipped[r];
        return s;
    }
    if ((unsigned)reason > MTFT_BAD_N_REASONS) return 0;
    return t->hdr->skipped[reason];
}

int mtft_task_cache_hit(const mtft_task *t) { return t ? t->cache_hit : 0; }
const char *mtft_task_cache_path(const mtft_task *t) { return t ? t->cache_path : NULL; }
int mtft_task_n_metrics(const mtft_task *t) { return t ? t->o.n_metrics : 0; }
const char *mtft_task_select_metric(const mtft_task *t) { return t ? t->o.select_metric : NULL; }
const char *mtft_task_metric(const mtft_task *t, int i) {
    if (!t || i < 0 || i >= t->o.n_metrics) return NULL;
    return t->o.metrics[i];
}

int mtft_task_example(const mtft_task *t, mtft_split split, int64_t i, mtft_example *out) {
    MTFT_CHECK_ARG(t != NULL && out != NULL);
    if (!t->hdr) return mtft__err(MTFT_ESTATE, "task '%s': not loaded (call mtft_task_load)", t->o.name);
    if ((unsigned)split >= MTFT_SPLIT_COUNT)
        return mtft__err(MTFT_EINVAL, "task '%s': split %d is not train, dev or test", t->o.name, (int)split);
    if (i < 0 || i >= t->hdr->n_split[split])
        return mtft__err(MTFT_ERANGE, "task '%s': example %lld outside the %s split (%lld examples)", t->o.name,
                         (long long)i, k_split_names[split], (long long)t->hdr->n_split[split]);
    const mtft_ds_entry *e = &t->entries[t->split_start[split] + i];
    const int32_t *w = t->pool + e->off;
    out->ids = w;
    out->n_ids = e->n_ids;
    out->n_prompt = e->n_prompt;
    w += e->n_ids;
    if (t->o.type == MTFT_TASK_TAGGING) {
        out->tags = w;
        w += e->n_ids;
    } else {
        out->tags = NULL;
    }
    out->labels = e->n_labels > 0 ? w : NULL;
    out->n_labels = e->n_labels;
    out->value = e->value;
    out->line = e->line;
    out->file = e->file;
    return MTFT_OK;
}
