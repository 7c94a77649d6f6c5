/* ctest-labels: unit */
/* Config: YAML into option structs; every error with file:line:col and key
 * path; unknown keys with suggestions; ranges; schema defaults equal the
 * _INIT macros; docs/config.md equals the generated reference; the
 * examples/configs file covers all eight bundled tasks; a config-built task
 * loads real data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_impl.h"
#include "mtft/config.h"
#include "mtft_test.h"

const char *const *mtft_cfg__balance_names(void);

static int load_str(mtft_config **cfg, const char *yaml) {
    return mtft_config_load_string(cfg, yaml, strlen(yaml), "run.yaml", "/base");
}

/* The load fails with `code` and the message contains every substring. */
static void expect_err(const char *yaml, int code, const char *s1, const char *s2) {
    mtft_config *cfg = (mtft_config *)1;
    int rc = load_str(&cfg, yaml);
    ck_assert_msg(rc == code, "rc %d, expected %d (%s) for:\n%s", rc, code, mtft_error_last()->message, yaml);
    ck_assert_ptr_null(cfg);
    const char *m = mtft_error_last()->message;
    ck_assert_msg(strstr(m, s1) != NULL, "message '%s' lacks '%s'", m, s1);
    if (s2) ck_assert_msg(strstr(m, s2) != NULL, "message '%s' lacks '%s'", m, s2);
}

START_TEST(test_config_fill) {
    const char *yaml = "# a run\n"
                       "data:\n"
                       "  cache_dir: cache\n"
                       "  eos_token: null\n"
                       "  batch_size: 8\n"
                       "  seed: 0x10\n"
                       "  bucket_window: 4\n"
                       "  truncation: left\n"
                       "  pad_to_multiple: 8\n"
                       "  pack: true\n"
                       "tasks:\n"
                       "  - name: sst\n"
                       "    files: {train: d/train.jsonl, test: /abs/test.csv}\n"
                       "    fields: {input: sentence}\n"
                       "    template: \"Review: {sentence}\\nSentiment:\"\n"
                       "    labels: [neg, pos]\n"
                       "    metrics: [accuracy, mcc]\n"
                       "    select_metric: mcc\n"
                       "    on_bad_example: skip\n"
                       "  - name: gen\n"
                       "    type: generation\n"
                       "    format: tsv\n"
                       "    files:\n"
                       "      train: g.tsv\n"
                       "    split: {dev_fraction: 0.1, test_fraction: 0.05, seed: 9}\n";
    mtft_config *cfg = NULL;
    ck_assert_msg(load_str(&cfg, yaml) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_config_n_tasks(cfg), 2);
    ck_assert_int_eq(mtft_config_has_section(cfg, "data"), 1);
    ck_assert_int_eq(mtft_config_has_section(cfg, "model"), 0);
    const mtft_task_options *a = mtft_config_task(cfg, 0), *b = mtft_config_task(cfg, 1);
    ck_assert_ptr_null(mtft_config_task(cfg, 2));
    ck_assert_int_eq(a->version, MTFT_TASK_OPTIONS_VERSION);
    ck_assert_str_eq(a->name, "sst");
    ck_assert_int_eq(a->type, MTFT_TASK_CLASSIFICATION);
    ck_assert_str_eq(a->train_file, "/base/d/train.jsonl"); /* relative to the config */
    ck_assert_str_eq(a->test_file, "/abs/test.csv");
    ck_assert_ptr_null(a->dev_file);
    ck_assert_str_eq(a->input_field, "sentence");
    ck_assert_ptr_null(a->label_field);
    ck_assert_str_eq(a->prompt_template, "Review: {sentence}\nSentiment:");
    ck_assert_int_eq(a->n_labels, 2);
    ck_assert_str_eq(a->labels[1], "pos");
    ck_assert_int_eq(a->n_metrics, 2);
    ck_assert_str_eq(a->metrics[1], "mcc");
    ck_assert_str_eq(a->select_metric, "mcc");
    ck_assert_int_eq(a->on_bad_example, MTFT_ON_BAD_SKIP);
    ck_assert_int_eq(b->type, MTFT_TASK_GENERATION);
    ck_assert_int_eq(b->format, MTFT_FORMAT_TSV);
    ck_assert_double_eq(b->dev_fraction, 0.1);
    ck_assert_double_eq(b->test_fraction, 0.05);
    ck_assert_uint_eq(b->split_seed, 9);
    ck_assert_int_eq(b->n_labels, 0);
    ck_assert_int_eq(b->on_bad_example, MTFT_ON_BAD_ERROR);
    ck_assert_ptr_null(b->select_metric); /* the type default */
    const mtft_data_options *d = mtft_config_data(cfg);
    ck_assert_str_eq(d->cache_dir, "/base/cache");
    ck_assert_ptr_null(d->eos_token);
    ck_assert_int_eq(d->log_progress, 1);
    const mtft_loader_options *l = mtft_config_loader(cfg);
    ck_assert_int_eq(l->batch_size, 8);
    ck_assert_uint_eq(l->seed, 16);
    ck_assert_int_eq(l->bucket_window, 4);
    ck_assert_int_eq(l->shuffle, 1);
    const mtft_collate_options *c = mtft_config_collate(cfg);
    ck_assert_int_eq(c->truncation, MTFT_TRUNCATE_LEFT);
    ck_assert_int_eq(c->pad_to_multiple, 8);
    ck_assert_int_eq(c->pack, 1);
    ck_assert_int_eq(c->max_len, 512); /* default kept */
    mtft_config_free(cfg);

    /* empty sections are allowed */
    ck_assert_int_eq(load_str(&cfg, "tasks:\ndata:\n"), MTFT_OK);
    ck_assert_int_eq(mtft_config_n_tasks(cfg), 0);
    ck_assert_int_eq(mtft_config_has_section(cfg, "tasks"), 1);
    mtft_config_free(cfg);
    /* an empty file is an empty run with the defaults */
    ck_assert_int_eq(load_str(&cfg, ""), MTFT_OK);
    ck_assert_int_eq(mtft_config_n_tasks(cfg), 0);
    ck_assert_int_eq(mtft_config_loader(cfg)->batch_size, 16);
    mtft_config_free(cfg);
    mtft_config_free(NULL);
}
END_TEST

START_TEST(test_config_errors) {
    /* the example: unknown enum value, with file:line:col and key path */
    expect_err("tasks:\n"
               "  - name: a\n"
               "    files: {train: a.jsonl}\n"
               "  - name: b\n"
               "    files: {train: b.jsonl}\n"
               "  - name: c\n"
               "    files: {train: c.jsonl}\n"
               "    type: ner2\n",
               MTFT_EINVAL, "run.yaml:8:11: tasks[2].type: unknown value 'ner2'",
               "(expected one of: classification, multilabel, regression, tagging, generation)");
    /* unknown key: nearest valid key suggested */
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    lables: [x]\n", MTFT_ENOTFOUND,
               "run.yaml:4:5: tasks[0].lables: unknown key 'lables'", "(did you mean 'labels'?)");
    expect_err("data:\n  batchsize: 3\n", MTFT_ENOTFOUND, "run.yaml:2:3: data.batchsize", "did you mean 'batch_size'");
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl, tset: b}\n", MTFT_ENOTFOUND,
               "run.yaml:3:29: tasks[0].files.tset", "did you mean 'test'");
    /* nothing close: the valid keys are listed */
    expect_err("data:\n  zzzzzzzzzz: 1\n", MTFT_ENOTFOUND, "unknown key 'zzzzzzzzzz' (valid keys: cache_dir,",
               "pad_to_multiple");
    /* unknown section */
    expect_err("taks: []\n", MTFT_ENOTFOUND, "run.yaml:1:1: taks: unknown section 'taks'", "did you mean 'tasks'");
    expect_err("modle: {}\n", MTFT_ENOTFOUND, "run.yaml:1:1: modle: unknown section 'modle'", "did you mean 'model'");
    expect_err("zzzzzzzzzz: {}\n", MTFT_ENOTFOUND, "valid sections: tasks, data, model, tokenizer, lora,", "pretrain");
    /* ranges */
    expect_err("data:\n  batch_size: 0\n", MTFT_ERANGE, "run.yaml:2:15: data.batch_size: value 0 is outside [1, 1048576]",
               NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    split: {dev_fraction: 1}\n", MTFT_ERANGE,
               "tasks[0].split.dev_fraction: value 1 is outside [0, 1)", NULL);
    expect_err("data:\n  pad_id: -1\n", MTFT_ERANGE, "data.pad_id", "[0, 2147483647]");
    expect_err("data:\n  max_len: 99999999999\n", MTFT_ERANGE, "data.max_len: integer 99999999999 does not fit", NULL);
    /* types */
    expect_err("data:\n  batch_size: many\n", MTFT_EFORMAT, "run.yaml:2:15: data.batch_size: expected an integer, got 'many'",
               NULL);
    expect_err("data:\n  shuffle: maybe\n", MTFT_EFORMAT, "data.shuffle: expected true or false", NULL);
    expect_err("data:\n  seed: -3\n", MTFT_EFORMAT, "data.seed: expected an unsigned integer", NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    labels: x\n", MTFT_EFORMAT,
               "run.yaml:4:13: tasks[0].labels: expected a list of strings, got a scalar", NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    labels: [x, [y]]\n", MTFT_EFORMAT,
               "tasks[0].labels[1]: expected a string, got a sequence", NULL);
    expect_err("tasks:\n  - name: a\n    files: a.jsonl\n", MTFT_EFORMAT,
               "run.yaml:3:12: tasks[0].files: expected a mapping, got a scalar", NULL);
    expect_err("tasks: {name: a}\n", MTFT_EFORMAT, "tasks: expected a list of tasks, got a mapping", NULL);
    expect_err("data:\n  batch_size: [1]\n", MTFT_EFORMAT, "data.batch_size: expected an integer, got a sequence", NULL);
    expect_err("data:\n  batch_size: ~\n", MTFT_EFORMAT, "data.batch_size: expected an integer, got null", NULL);
    /* required keys */
    expect_err("tasks:\n  - type: regression\n    files: {train: a.jsonl}\n", MTFT_EINVAL,
               "run.yaml:2:5: tasks[0]: missing required key 'name'", NULL);
    expect_err("tasks:\n  - name: a\n    files: {dev: a.jsonl}\n", MTFT_EINVAL,
               "tasks[0].files: missing required key 'train'", NULL);
    /* YAML itself */
    expect_err("tasks:\n  - name: a\n   bad: [\n", MTFT_EFORMAT, "run.yaml:", "YAML syntax error");
    expect_err("data:\n  seed: 1\n  seed: 2\n", MTFT_EFORMAT, "run.yaml:3:3: duplicate key 'seed' (first at line 2)",
               NULL);
    expect_err("data: {}\n---\ndata: {}\n", MTFT_EFORMAT, "second YAML document", NULL);
    expect_err("- 1\n- 2\n", MTFT_EFORMAT, "expected a mapping of sections", NULL);
    /* cross-key checks, located: metrics for the type, unique names, mtft_task_new's checks */
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    metrics: [accuracy, rmse]\n", MTFT_ENOTFOUND,
               "run.yaml:4:25: tasks[0].metrics[1]: 'rmse' is not a classification metric",
               "(expected one of: accuracy, macro_f1, mcc)");
    expect_err("tasks:\n  - name: a\n    type: regression\n    files: {train: a.jsonl}\n    select_metric: r2\n",
               MTFT_ENOTFOUND, "run.yaml:5:20: tasks[0].select_metric: 'r2' is not a regression metric",
               "(expected one of: pearson, spearman, rmse, mae)");
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    metrics: [accuracy, f1_micro]\n", MTFT_ENOTFOUND,
               "run.yaml:4:25: tasks[0].metrics[1]: 'f1_micro' is not a classification metric", NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n  - name: a\n    files: {train: b.jsonl}\n",
               MTFT_EINVAL, "run.yaml:4:11: tasks[1].name: task name 'a' is already used by tasks[0]", NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl, dev: d.jsonl}\n    split: {dev_fraction: 0.2}\n",
               MTFT_EINVAL, "run.yaml:2:5: tasks[0]: task 'a': dev split given both", NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    template: \"Q: {text\"\n", MTFT_EINVAL,
               "tasks[0]: task 'a': prompt_template: template position 4: unclosed", NULL);
    expect_err("tasks:\n  - name: \"a b\"\n    files: {train: a.jsonl}\n", MTFT_EINVAL, "tasks[0]", "'a b'");
    /* a missing file */
    mtft_config *cfg = (mtft_config *)1;
    ck_assert_int_eq(mtft_config_load_file(&cfg, "/nonexistent/run.yaml"), MTFT_EIO);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "/nonexistent/run.yaml"));
}
END_TEST

START_TEST(test_config_suggest) {
    ck_assert_int_eq(mtft_cfg__edit_distance("kitten", "sitting"), 3);
    ck_assert_int_eq(mtft_cfg__edit_distance("", "abc"), 3);
    ck_assert_int_eq(mtft_cfg__edit_distance("same", "same"), 0);
    const char *c[] = {"labels", "metrics", "template"};
    ck_assert_str_eq(mtft_cfg__suggest("lable", c, 3), "labels");
    ck_assert_str_eq(mtft_cfg__suggest("metrix", c, 3), "metrics");
    ck_assert_ptr_null(mtft_cfg__suggest("qqqqqq", c, 3));
}
END_TEST

/* Set every key of a section to its documented default and check that the
 * struct equals the one the _INIT macro gives. */
static int key_size(const mtft_cfg_key *k) {
    switch (k->kind) {
    case MTFT_CK_BOOL:
    case MTFT_CK_INT:
    case MTFT_CK_INT32:
    case MTFT_CK_ENUM:
    case MTFT_CK_FLOAT: return 4;
    case MTFT_CK_U64:
    case MTFT_CK_INT64:
    case MTFT_CK_DOUBLE: return 8;
    default: return 0;
    }
}

static int check_defaults(const mtft_cfg_section *sec, const void *init, size_t size) {
    int checked = 0;
    for (int i = 0; i < sec->n_keys; i++) {
        const mtft_cfg_key *k = &sec->keys[i];
        if (k->kind == MTFT_CK_SECTION) {
            checked += check_defaults(k->sub, (const char *)init + k->offset, size - k->offset);
            continue;
        }
        if (k->flags & MTFT_CFG_DESCRIBED) continue; /* described in words */
        char yaml[256];
        mtft_cnode *root = NULL;
        mtft_cfg_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.file = "defaults";
        void *s = malloc(size);
        memcpy(s, init, size);
        if (k->dflt && *k->dflt) {
            snprintf(yaml, sizeof yaml, "%s: \"%s\"\n", k->name, k->dflt);
            if (key_size(k)) snprintf(yaml, sizeof yaml, "%s: %s\n", k->name, k->dflt);
            ck_assert_int_eq(mtft_cfg__parse(yaml, strlen(yaml), "defaults", &root), MTFT_OK);
            /* fill a zeroed struct: the default text alone must give the INIT value */
            memset(s, 0, size);
            mtft_cfg_section one = {sec->name, k, 1, ""}; /* this key alone: no required-key check */
            ck_assert_msg(mtft_cfg__apply(&ctx, root, &one, s, "") == MTFT_OK, "%s: %s", k->name,
                          mtft_error_last()->message);
            if (key_size(k)) {
                ck_assert_msg(memcmp((char *)s + k->offset, (const char *)init + k->offset, (size_t)key_size(k)) == 0,
                              "key '%s': documented default '%s' differs from the _INIT value", k->name, k->dflt);
            } else {
                const char *got = *(const char **)((char *)s + k->offset);
                const char *want = *(const char *const *)((const char *)init + k->offset);
                ck_assert_msg(want && got && strcmp(got, want) == 0, "key '%s': documented default '%s', _INIT '%s'",
                              k->name, k->dflt, want ? want : "(null)");
            }
        } else {
            /* no default: the INIT value is NULL / empty */
            if (k->kind == MTFT_CK_STRING || k->kind == MTFT_CK_PATH || k->kind == MTFT_CK_STRLIST ||
                k->kind == MTFT_CK_PATHLIST || k->kind == MTFT_CK_FLOATLIST || k->kind == MTFT_CK_DOUBLELIST)
                ck_assert_msg(*(const void *const *)((const char *)init + k->offset) == NULL,
                              "key '%s' documents no default but _INIT sets one", k->name);
            else
                ck_abort_msg("key '%s' has no documented default", k->name);
        }
        mtft_cfg__free(root);
        mtft_cfg__ctx_dispose(&ctx);
        free(s);
        checked++;
    }
    return checked;
}

START_TEST(test_config_defaults_match_init) {
    mtft_cfg_task t;
    mtft_cfg__init_task(&t);
    int n = check_defaults(mtft_cfg__task_section(), &t, sizeof t);
    ck_assert_int_ge(n, 15); /* task keys and the head's non-derived keys */
    /* every run section against the _INIT macros of the structs it fills */
    mtft_cfg_run *r = malloc(sizeof *r);
    mtft_cfg__init_run(r);
    int n_roots = 0, total = 0;
    const mtft_cfg_root *roots = mtft_cfg__roots(&n_roots);
    ck_assert_int_eq(n_roots, 15);
    for (int i = 0; i < n_roots; i++) {
        int c = check_defaults(roots[i].sec, r, sizeof *r);
        ck_assert_msg(c > 0 || !strcmp(roots[i].name, "tokenizer"), "section %s checked no key", roots[i].name);
        total += c;
    }
    ck_assert_int_ge(total, 140);
    free(r);
    /* balancer method names are the balance module's own */
    const char *const *names = mtft_cfg__balance_names();
    for (int m = 0; m < MTFT_BALANCE_METHOD_COUNT; m++) {
        ck_assert_ptr_nonnull(names[m]);
        ck_assert_str_eq(names[m], mtft_balance_method_name((mtft_balance_method)m));
    }
    ck_assert_ptr_null(names[MTFT_BALANCE_METHOD_COUNT]);
}
END_TEST

START_TEST(test_config_docs_agree) {
    size_t len = 0;
    ck_assert_int_eq(mtft_config_reference_markdown(NULL, 0, &len), MTFT_ERANGE);
    char *ref = malloc(len + 1);
    ck_assert_int_eq(mtft_config_reference_markdown(ref, len + 1, &len), MTFT_OK);
    ck_assert_ptr_nonnull(strstr(ref, "| `tasks[].split.dev_fraction` | number | `0` | [0, 1) |"));
    ck_assert_ptr_nonnull(strstr(ref, "| `data.batch_size` | integer | `16` | [1, 1048576] |"));
    char path[512];
    mtft_test_path(path, sizeof path, "docs/config.md");
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    const char *begin_mark = "<!-- BEGIN GENERATED: mtft_config_reference_markdown() -->\n";
    const char *end_mark = "<!-- END GENERATED -->";
    char *b = strstr(doc, begin_mark), *e = strstr(doc, end_mark);
    ck_assert_msg(b && e && e > b, "docs/config.md lacks the generated-section markers");
    b += strlen(begin_mark);
    int same = (size_t)(e - b) == len && memcmp(b, ref, len) == 0;
    if (!same) {
        char out[512];
#ifdef MTFT_BINARY_DIR
        snprintf(out, sizeof out, "%s/config_reference.md", MTFT_BINARY_DIR);
#else
        snprintf(out, sizeof out, "config_reference.md");
#endif
        FILE *o = fopen(out, "wb");
        if (o) {
            fwrite(ref, 1, len, o);
            fclose(o);
        }
        ck_abort_msg("docs/config.md differs from the schema tables; the generated text is in %s", out);
    }
    free(ref);
}
END_TEST

START_TEST(test_config_example_all_tasks) {
    char path[512];
    mtft_test_path(path, sizeof path, "examples/configs/all_tasks.yaml");
    mtft_config *cfg = NULL;
    ck_assert_msg(mtft_config_load_file(&cfg, path) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_config_n_tasks(cfg), 8);
    const char *names[8] = {"spam_assassin", "fortunes_langid", "wordnet_supersense", "name_gender",
                            "afinn_valence", "kjv_word_alignment", "cmudict_g2p", "acronym_expansion"};
    const mtft_task_type types[8] = {MTFT_TASK_CLASSIFICATION, MTFT_TASK_CLASSIFICATION, MTFT_TASK_CLASSIFICATION,
                                     MTFT_TASK_CLASSIFICATION, MTFT_TASK_REGRESSION,     MTFT_TASK_TAGGING,
                                     MTFT_TASK_GENERATION,     MTFT_TASK_GENERATION};
    for (int i = 0; i < 8; i++) {
        const mtft_task_options *t = mtft_config_task(cfg, i);
        ck_assert_str_eq(t->name, names[i]);
        ck_assert_int_eq(t->type, types[i]);
        ck_assert_ptr_nonnull(strstr(t->train_file, names[i]));
        ck_assert_ptr_nonnull(t->dev_file);
        ck_assert_ptr_nonnull(t->test_file);
        ck_assert_int_gt(t->n_metrics, 0);
        /* the real field mapping of each record shape */
        switch (t->type) {
        case MTFT_TASK_CLASSIFICATION:
            ck_assert_str_eq(t->input_field, "text");
            ck_assert_str_eq(t->label_field, "label");
            break;
        case MTFT_TASK_REGRESSION:
            ck_assert_str_eq(t->input_field, "text");
            ck_assert_str_eq(t->value_field, "value");
            break;
        case MTFT_TASK_TAGGING:
            ck_assert_str_eq(t->tokens_field, "tokens");
            ck_assert_str_eq(t->tags_field, "tags");
            break;
        default:
            ck_assert_str_eq(t->input_field, "input");
            ck_assert_str_eq(t->target_field, "target");
            ck_assert_ptr_nonnull(t->prompt_template);
            break;
        }
    }
    ck_assert_int_eq(mtft_config_task(cfg, 1)->n_labels, 12);
    ck_assert_int_eq(mtft_config_loader(cfg)->batch_size, 32);
    ck_assert_int_eq(mtft_config_collate(cfg)->max_len, 64);
    /* a whole run: every section but adapter: and tokenizer: (derived from the base) */
    const char *secs[] = {"tasks", "data", "model", "pretrain", "lora", "heads", "sampler", "balancer",
                          "optimizer", "schedule", "eval", "checkpoint", "output", "train"};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++)
        ck_assert_msg(mtft_config_has_section(cfg, secs[i]) == 1, "section %s", secs[i]);
    const mtft_run_options *ro = mtft_config_run(cfg);
    ck_assert_ptr_nonnull(strstr(ro->tokenizer_vocab, "out/quickstart/base/vocab.json"));
    ck_assert_ptr_nonnull(strstr(ro->checkpoint_dir, "out/all_tasks/checkpoint"));
    ck_assert_ptr_nonnull(strstr(ro->report_path, "out/all_tasks/metrics.html"));
    const mtft_trainer_options *t = mtft_config_trainer(cfg);
    ck_assert_int_eq(t->max_len, 64);
    ck_assert_int_eq(t->batch_size, 32);
    ck_assert_int_eq(t->lora_rank, 8);
    ck_assert_float_eq(t->lora_alpha, 16.0f);
    ck_assert_int_eq(t->sampler.start.strategy, MTFT_SAMPLER_TEMPERATURE);
    ck_assert_int_eq(t->sampler.end.strategy, MTFT_SAMPLER_UNIFORM);
    ck_assert_int_eq(t->balancer.method, MTFT_BALANCE_DWA);
    ck_assert_int_eq(t->eval_every, 100);
    ck_assert_int_eq(mtft_config_model(cfg)->n_layer, 4);
    ck_assert_int_eq(mtft_config_pretrain(cfg)->max_steps, 300);
    ck_assert_int_eq(mtft_config_task_head(cfg, 0)->hidden_size, 64);
    ck_assert_int_eq(mtft_config_task_head(cfg, 4)->kind, MTFT_HEAD_REGRESSION);
    ck_assert_ptr_null(mtft_config_task_head(cfg, 5));
    mtft_config_free(cfg);
}
END_TEST


/* Every section of a whole-run file lands in the right struct field. */
START_TEST(test_config_whole_run) {
    char path[512], dir[512], want[700];
    mtft_test_path(path, sizeof path, "tests/fixtures/config/full_run.yaml");
    mtft_test_path(dir, sizeof dir, "tests/fixtures/config");
    mtft_config *cfg = NULL;
    ck_assert_msg(mtft_config_load_file(&cfg, path) == MTFT_OK, "%s", mtft_error_last()->message);
    const char *secs[] = {"tasks", "data", "model", "tokenizer", "lora", "adapter", "heads", "sampler",
                          "balancer", "optimizer", "schedule", "eval", "checkpoint", "output", "train"};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++)
        ck_assert_msg(mtft_config_has_section(cfg, secs[i]) == 1, "section %s", secs[i]);
    ck_assert_int_eq(mtft_config_has_section(cfg, "pretrain"), 0);
    ck_assert_int_eq(mtft_config_has_section(cfg, "nonsense"), 0);
    /* model */
    const mtft_model_config *m = mtft_config_model(cfg);
    ck_assert_int_eq(m->version, MTFT_MODEL_CONFIG_VERSION);
    ck_assert_int_eq(m->arch, MTFT_ARCH_GPT2);
    ck_assert_int_eq(m->n_ctx, 256);
    ck_assert_int_eq(m->n_embd, 128);
    ck_assert_int_eq(m->n_layer, 2);
    ck_assert_int_eq(m->n_head, 4);
    ck_assert_int_eq(m->n_kv_head, 4);  /* derived: n_head */
    ck_assert_int_eq(m->n_ff, 512);     /* derived: 4 * n_embd */
    ck_assert_int_eq(m->vocab_size, 50257);
    ck_assert_float_eq(m->resid_pdrop, 0.1f);
    /* paths, relative to the file */
    const mtft_run_options *ro = mtft_config_run(cfg);
    snprintf(want, sizeof want, "%s/models/tiny", dir);
    ck_assert_str_eq(ro->base_model, want);
    snprintf(want, sizeof want, "%s/tok/merges.txt", dir);
    ck_assert_str_eq(ro->tokenizer_merges, want);
    ck_assert_ptr_null(ro->tokenizer_json);
    snprintf(want, sizeof want, "%s/out/ckpt", dir);
    ck_assert_str_eq(ro->checkpoint_dir, want);
    snprintf(want, sizeof want, "%s/out/old", dir);
    ck_assert_str_eq(ro->resume_from, want);
    snprintf(want, sizeof want, "%s/out/metrics.html", dir);
    ck_assert_str_eq(ro->report_path, want); /* derived from the log */
    ck_assert_int_eq(ro->threads, 2);
    ck_assert_int_eq(ro->test_max_examples, 500);
    ck_assert_ptr_nonnull(strstr(ro->baselines, "/baselines.json"));
    /* lora + adapter */
    const mtft_lora_options *lo = mtft_config_lora(cfg);
    ck_assert_int_eq(lo->rank, 4);
    ck_assert_float_eq(lo->alpha, 8.0f);
    ck_assert_float_eq(lo->dropout, 0.05f);
    ck_assert_str_eq(lo->target_modules, "attn.c_attn|mlp.c_fc");
    ck_assert_str_eq(lo->layers, "0-1");
    ck_assert_uint_eq(lo->seed, 7);
    const mtft_adapter_options *ad = mtft_config_adapter(cfg);
    ck_assert_int_eq(ad->placement, MTFT_ADAPTER_PFEIFFER);
    ck_assert_int_eq(ad->reduction_factor, 8);
    ck_assert_int_eq(ad->act, MTFT_PEFT_ACT_GELU);
    ck_assert_float_eq(ad->down_std, 0.02f);
    /* trainer: lora:, heads:, optimizer:, schedule:, eval:, output:, train: */
    const mtft_trainer_options *t = mtft_config_trainer(cfg);
    ck_assert_int_eq(t->version, MTFT_TRAINER_OPTIONS_VERSION);
    ck_assert_int_eq(t->lora_rank, 4);
    ck_assert_float_eq(t->lora_alpha, 8.0f);
    ck_assert_str_eq(t->lora_targets, "attn.c_attn|mlp.c_fc");
    ck_assert_int_eq(t->shared_lora_rank, 2);
    ck_assert_int_eq(t->head_hidden, 16);
    ck_assert_int_eq(t->head_pool, MTFT_POOL_FIRST);
    ck_assert_float_eq(t->lr, 3e-4f);
    ck_assert_float_eq(t->sam_rho, 0.05f);
    ck_assert_int_eq(t->sam_per_task, 1);
    ck_assert_float_eq(t->weight_decay, 0.05f);
    ck_assert_float_eq(t->beta1, 0.9f);
    ck_assert_float_eq(t->beta2, 0.98f);
    ck_assert_float_eq(t->grad_clip, 0.5f);
    ck_assert_int_eq(t->schedule, MTFT_LR_COSINE);
    ck_assert_int_eq(t->warmup_steps, 20);
    ck_assert_float_eq(t->min_lr_ratio, 0.1f);
    ck_assert_int_eq(t->eval_every, 50);
    ck_assert_int_eq(t->eval_max_examples, 100);
    ck_assert_int_eq(t->eval_batch_size, 64);
    ck_assert_int_eq(t->early_stop_patience, 3);
    ck_assert_int_eq(t->print_every, 10);
    ck_assert_str_eq(t->log_path, ro->log_path);
    ck_assert_ptr_nonnull(strstr(t->ckpt_dir, "/out/steps"));
    ck_assert_int_eq(t->save_every, 40);
    ck_assert_int_eq(t->keep_last, 2);
    ck_assert_uint_eq(t->seed, 3);
    ck_assert_int_eq(t->max_steps, 200);
    ck_assert_int_eq(t->batch_size, 24);
    ck_assert_int_eq(t->train_base, 1);
    ck_assert_int_eq(t->max_len, 96); /* derived: data.max_len */
    ck_assert_int_eq(t->truncation, MTFT_TRUNCATE_LEFT);
    ck_assert_int_eq(t->pad_id, 7); /* derived: data.pad_id */
    ck_assert_int_eq(mtft_config_collate(cfg)->pad_id, 7);
    ck_assert_ptr_null(t->progress);
    /* sampler + balancer inside the trainer options */
    const mtft_sampler_options *so = mtft_config_sampler(cfg);
    ck_assert_ptr_eq(so, &t->sampler);
    ck_assert_int_eq(so->start.strategy, MTFT_SAMPLER_WEIGHTS);
    ck_assert_double_eq(so->start.weights[1], 2.0);
    ck_assert_int_eq(so->anneal_steps, 50);
    ck_assert_int_eq(so->end.strategy, MTFT_SAMPLER_TEMPERATURE);
    ck_assert_double_eq(so->end.temperature, 3.0);
    ck_assert_ptr_null(so->end.weights);
    ck_assert_int_eq(so->batch_mode, MTFT_SAMPLER_SINGLE_TASK);
    ck_assert_int_eq(so->epoch_policy, MTFT_SAMPLER_STOP);
    ck_assert_uint_eq(so->seed, 11);
    const mtft_balancer_options *bo = mtft_config_balancer(cfg);
    ck_assert_int_eq(bo->method, MTFT_BALANCE_PCGRAD);
    ck_assert_uint_eq(bo->seed, 5);
    ck_assert_float_eq(bo->static_weights[2], 2.0f);
    ck_assert_float_eq(bo->dwa_temperature, 2.0f);
    /* optim.h structs follow the trainer's values */
    const mtft_adamw_options *aw = mtft_config_adamw(cfg);
    ck_assert_float_eq(aw->lr, 3e-4f);
    ck_assert_float_eq(aw->beta2, 0.98f);
    ck_assert_float_eq(aw->weight_decay, 0.05f);
    ck_assert_int_eq(aw->decay_1d, 1);
    const mtft_schedule_options *sc = mtft_config_schedule(cfg);
    ck_assert_int_eq(sc->kind, MTFT_SCHEDULE_COSINE);
    ck_assert_int_eq(sc->warmup_steps, 20);
    ck_assert_int_eq(sc->total_steps, 200);
    ck_assert_double_eq_tol(sc->min_lr_ratio, 0.1, 1e-7);
    /* heads per task */
    const mtft_head_options *h0 = mtft_config_task_head(cfg, 0), *h1 = mtft_config_task_head(cfg, 1);
    ck_assert_ptr_null(mtft_config_task_head(cfg, 2)); /* no head: entry */
    ck_assert_ptr_null(mtft_config_task_head(cfg, 3));
    ck_assert_int_eq(h0->kind, MTFT_HEAD_CLASSIFICATION);
    ck_assert_str_eq(h0->name, "sent");
    ck_assert_int_eq(h0->n_labels, 2);
    ck_assert_int_eq(h0->pool, MTFT_POOL_MEAN);
    ck_assert_int_eq(h0->hidden_size, 32);
    ck_assert_float_eq(h0->label_smoothing, 0.1f);
    ck_assert_int_eq(h1->kind, MTFT_HEAD_REGRESSION);
    ck_assert_int_eq(h1->n_labels, 1);
    ck_assert_int_eq(h1->pool, MTFT_POOL_FIRST); /* from heads: */
    ck_assert_int_eq(h1->hidden_size, 16);
    ck_assert_int_eq(h1->loss, MTFT_HEAD_LOSS_HUBER);
    ck_assert_float_eq(h1->huber_delta, 0.5f);
    ck_assert_int_eq(h1->standardize, 1);
    mtft_head_options ho;
    ck_assert_int_eq(mtft_config_task_head_for(cfg, 2, NULL, &ho), 0);
    ck_assert_int_eq(mtft_config_task_head_for(cfg, 1, NULL, &ho), 1);
    ck_assert_int_eq(ho.kind, MTFT_HEAD_REGRESSION);
    ck_assert_int_eq(mtft_config_task_head_for(cfg, 9, NULL, &ho), MTFT_ERANGE);
    /* pretrain: not given, so its _INIT values */
    const mtft_pretrain_options *po = mtft_config_pretrain(cfg);
    ck_assert_int_eq(po->max_steps, 1000);
    ck_assert_int_eq(po->seq_len, 128);
    int nt = -1;
    ck_assert_ptr_null(mtft_config_pretrain_texts(cfg, &nt));
    ck_assert_int_eq(nt, 0);
    mtft_config_free(cfg);
}
END_TEST

/* The flat train: and pretrain: keys of the first configs (as the
 * quickstart uses them). */
START_TEST(test_config_legacy_train) {
    char path[512];
    mtft_config *cfg = NULL;
    /* the quickstart itself loads */
    mtft_test_path(path, sizeof path, "examples/configs/quickstart.yaml");
    ck_assert_msg(mtft_config_load_file(&cfg, path) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_config_has_section(cfg, "train"), 1);
    ck_assert_int_eq(mtft_config_has_section(cfg, "pretrain"), 1);
    ck_assert_int_ge(mtft_config_n_tasks(cfg), 6);
    mtft_config_free(cfg);
    mtft_test_path(path, sizeof path, "tests/fixtures/config/legacy_train.yaml");
    ck_assert_msg(mtft_config_load_file(&cfg, path) == MTFT_OK, "%s", mtft_error_last()->message);
    const mtft_trainer_options *t = mtft_config_trainer(cfg);
    ck_assert_int_eq(t->max_steps, 600);
    ck_assert_double_eq(t->max_seconds, 240.0);
    ck_assert_int_eq(t->batch_size, 32);
    ck_assert_int_eq(t->max_len, 64);
    ck_assert_float_eq(t->lr, 0.002f);
    ck_assert_int_eq(t->warmup_steps, 30);
    ck_assert_int_eq(t->schedule, MTFT_LR_LINEAR);
    ck_assert_int_eq(t->train_base, 1);
    ck_assert_float_eq(t->base_lr_scale, 0.25f);
    ck_assert_int_eq(t->lora_rank, 8);
    ck_assert_float_eq(t->lora_alpha, 16.0f);
    ck_assert_ptr_null(t->lora_targets);
    ck_assert_int_eq(t->head_pool, MTFT_POOL_MEAN);
    ck_assert_int_eq(t->sampler.start.strategy, MTFT_SAMPLER_TEMPERATURE);
    ck_assert_double_eq(t->sampler.start.temperature, 2.0);
    ck_assert_int_eq(t->balancer.method, MTFT_BALANCE_DWA);
    ck_assert_float_eq(t->balancer.dwa_temperature, 1.5f);
    ck_assert_int_eq(t->eval_every, 100);
    ck_assert_int_eq(t->eval_max_examples, 300);
    ck_assert_int_eq(t->print_every, 20);
    ck_assert_ptr_nonnull(strstr(t->ckpt_dir, "/out/quickstart/steps"));
    ck_assert_int_eq(t->save_every, 200);
    ck_assert_int_eq(t->keep_last, 1);
    const mtft_run_options *ro = mtft_config_run(cfg);
    ck_assert_ptr_nonnull(strstr(ro->base_model, "/out/quickstart/base"));
    ck_assert_ptr_nonnull(strstr(ro->tokenizer_vocab, "/out/quickstart/base/vocab.json"));
    ck_assert_ptr_nonnull(strstr(ro->checkpoint_dir, "/out/quickstart/checkpoint"));
    ck_assert_ptr_nonnull(strstr(ro->baselines, "/data/baselines.json"));
    ck_assert_ptr_nonnull(strstr(ro->report_path, "/out/quickstart/metrics.html"));
    ck_assert_int_eq(mtft_config_has_section(cfg, "pretrain"), 1);
    int n = 0;
    const char *const *texts = mtft_config_pretrain_texts(cfg, &n);
    ck_assert_int_eq(n, 2);
    ck_assert_ptr_nonnull(strstr(texts[1], "/data/pretrain/en_devils_dictionary.txt"));
    const mtft_model_config *m = mtft_config_model(cfg);
    ck_assert_int_eq(m->vocab_size, 4096);
    ck_assert_int_eq(m->n_layer, 4);
    ck_assert_int_eq(m->n_embd, 192);
    ck_assert_int_eq(m->n_head, 6);
    ck_assert_int_eq(m->n_ctx, 128);
    ck_assert_int_eq(m->n_ff, 768);
    const mtft_pretrain_options *p = mtft_config_pretrain(cfg);
    ck_assert_int_eq(p->max_steps, 300);
    ck_assert_int_eq(p->batch_size, 16);
    ck_assert_int_eq(p->seq_len, 128); /* derived: n_ctx */
    ck_assert_float_eq(p->lr, 0.002f);
    ck_assert_int_eq(p->print_every, 25);
    ck_assert_int_eq(mtft_config_collate(cfg)->max_len, 128); /* train.max_len given: not data's */
    mtft_config_free(cfg);
}
END_TEST

/* Each error kind in several sections, with file:line:col and key path. */
START_TEST(test_config_run_errors) {
    /* unknown keys, nearest key suggested */
    expect_err("optimizer:\n  lrr: 0.1\n", MTFT_ENOTFOUND, "run.yaml:2:3: optimizer.lrr: unknown key 'lrr'",
               "(did you mean 'lr'?)");
    expect_err("balancer:\n  metod: dwa\n", MTFT_ENOTFOUND, "run.yaml:2:3: balancer.metod", "did you mean 'method'");
    expect_err("sampler:\n  end: {strategy: uniform, temprature: 2}\n", MTFT_ENOTFOUND,
               "run.yaml:2:28: sampler.end.temprature", "did you mean 'temperature'");
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    head: {pol: mean}\n", MTFT_ENOTFOUND,
               "run.yaml:4:12: tasks[0].head.pol: unknown key 'pol'", "did you mean 'pool'");
    expect_err("train:\n  lora_rnak: 4\n", MTFT_ENOTFOUND, "run.yaml:2:3: train.lora_rnak", "did you mean 'lora_rank'");
    /* out of range */
    expect_err("optimizer:\n  beta1: 1\n", MTFT_ERANGE, "run.yaml:2:10: optimizer.beta1: value 1 is outside [0, 1)",
               NULL);
    expect_err("lora:\n  rank: 0\n", MTFT_ERANGE, "run.yaml:2:9: lora.rank: value 0 is outside [1, 4096]", NULL);
    expect_err("model:\n  n_layer: 5000\n", MTFT_ERANGE, "model.n_layer: value 5000 is outside [1, 1024]", NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n    head:\n      dropout: 1.5\n", MTFT_ERANGE,
               "run.yaml:5:16: tasks[0].head.dropout: value 1.5 is outside [0, 1)", NULL);
    expect_err("balancer:\n  static_weights: [1, -2]\n", MTFT_ERANGE,
               "run.yaml:2:23: balancer.static_weights[1]: value -2 is outside", NULL);
    expect_err("train:\n  steps: 0\n", MTFT_ERANGE, "train.steps: value 0 is outside [1, ", NULL);
    /* wrong type */
    expect_err("train:\n  steps: many\n", MTFT_EFORMAT, "run.yaml:2:10: train.steps: expected an integer, got 'many'",
               NULL);
    expect_err("schedule:\n  warmup_steps: 1.5\n", MTFT_EFORMAT, "schedule.warmup_steps: expected an integer", NULL);
    expect_err("model:\n  causal: yes\n", MTFT_EFORMAT, "run.yaml:2:11: model.causal: expected true or false", NULL);
    expect_err("pretrain:\n  texts: a.txt\n", MTFT_EFORMAT,
               "run.yaml:2:10: pretrain.texts: expected a list of paths, got a scalar", NULL);
    expect_err("sampler:\n  weights: [1, x]\n", MTFT_EFORMAT,
               "run.yaml:2:16: sampler.weights[1]: expected a finite number, got 'x'", NULL);
    expect_err("lora: 4\n", MTFT_EFORMAT, "run.yaml:1:7: lora: expected a mapping of lora keys, got a scalar", NULL);
    /* unknown enum values list the valid ones */
    expect_err("balancer:\n  method: pcgard\n", MTFT_EINVAL, "run.yaml:2:11: balancer.method: unknown value 'pcgard'",
               "(expected one of: equal, static, uncertainty, dwa, rlw, gls, famo, mftcoder_token");
    expect_err("schedule:\n  type: step\n", MTFT_EINVAL, "schedule.type: unknown value 'step'",
               "(expected one of: constant, linear, cosine)");
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\n  - name: b\n    files: {train: b.jsonl}\n"
               "  - name: c\n    files: {train: c.jsonl}\n    head: {type: ner2}\n",
               MTFT_EINVAL, "run.yaml:8:18: tasks[2].head.type: unknown value 'ner2'",
               "(expected one of: classification, multilabel, regression, token_classification, lm)");
    expect_err("train:\n  head_pool: max\n", MTFT_EINVAL, "train.head_pool: unknown value 'max'",
               "(expected one of: mean, last, first)");
    /* missing required keys */
    expect_err("pretrain:\n  steps: 10\n", MTFT_EINVAL, "run.yaml:2:3: pretrain: missing required key 'texts'", NULL);
    /* the same option given twice */
    expect_err("train:\n  lr: 0.1\noptimizer:\n  lr: 0.2\n", MTFT_EINVAL,
               "run.yaml:4:7: optimizer.lr: sets the same option as train.lr (line 2); give it once", NULL);
    expect_err("model: {base: a}\ntrain: {base: b}\n", MTFT_EINVAL, "train.base: sets the same option as model.base",
               NULL);
    expect_err("lora: {rank: 4}\ntrain: {lora_rank: 8}\n", MTFT_EINVAL,
               "run.yaml:2:20: train.lora_rank: the per-task LoRA is set by the lora: section", NULL);
    /* cross-key checks, located at the key that breaks them */
    expect_err("tasks:\n  - name: a\n    type: regression\n    files: {train: a.jsonl}\n    head: {type: lm}\n",
               MTFT_EINVAL, "run.yaml:5:18: tasks[0].head.type: head type 'lm' does not suit a regression task "
                            "(expected regression)", NULL);
    expect_err("tasks:\n  - name: g\n    type: generation\n    files: {train: a.jsonl}\n    head: {hidden_size: 8}\n",
               MTFT_EINVAL, "tasks[0].head.hidden_size: an lm head has no hidden layer", NULL);
    expect_err("sampler:\n  strategy: capped\n", MTFT_EINVAL, "run.yaml:2:13: sampler.strategy: strategy capped needs sampler.cap > 0",
               NULL);
    expect_err("tasks:\n  - name: a\n    files: {train: a.jsonl}\nsampler:\n  strategy: weights\n  weights: [1, 2]\n",
               MTFT_EINVAL, "run.yaml:6:12: sampler.weights: 2 weights for 1 tasks", NULL);
    expect_err("balancer:\n  method: cagrad\n", MTFT_EINVAL,
               "run.yaml:2:11: balancer.method: a gradient-level balancer needs a shared LoRA", NULL);
    expect_err("model:\n  n_embd: 100\n  n_head: 3\n", MTFT_EINVAL, "run.yaml:3:11: model.n_head: n_head 3 does not divide n_embd 100",
               NULL);
    expect_err("tokenizer:\n  vocab: v.json\n", MTFT_EINVAL, "tokenizer.vocab: tokenizer.vocab and tokenizer.merges go together",
               NULL);
    expect_err("checkpoint:\n  save_every: 10\n", MTFT_EINVAL,
               "run.yaml:2:15: checkpoint.save_every: periodic checkpoints need checkpoint.periodic_dir", NULL);
    expect_err("train:\n  dwa_temperature: 2\nbalancer:\n  dwa_temperature: 3\n", MTFT_EINVAL,
               "run.yaml:4:20: balancer.dwa_temperature: sets the same option as train.dwa_temperature (line 2)", NULL);
    expect_err("pretrain:\n  texts: [a.txt]\n  n_ctx: 64\n  seq_len: 65\n", MTFT_ERANGE,
               "run.yaml:4:12: pretrain.seq_len: seq_len 65 exceeds n_ctx 64", NULL);
    expect_err("tokenizer: {json: t.json, vocab: v.json, merges: m.txt}\n", MTFT_EINVAL,
               "run.yaml:1:19: tokenizer.json: give either tokenizer.json or tokenizer.vocab + tokenizer.merges", NULL);
    /* tokenizer.json alone: no vocab/merges derived from the base */
    mtft_config *tc = NULL;
    ck_assert_int_eq(load_str(&tc, "model: {base: m}\ntokenizer: {json: t.json}\n"), MTFT_OK);
    ck_assert_str_eq(mtft_config_run(tc)->tokenizer_json, "/base/t.json");
    ck_assert_ptr_null(mtft_config_run(tc)->tokenizer_vocab);
    mtft_config_free(tc);
    /* a good gradient-level setup passes */
    mtft_config *cfg = NULL;
    ck_assert_int_eq(load_str(&cfg, "lora: {shared_rank: 4}\nbalancer: {method: cagrad, cagrad_c: 0.4}\n"), MTFT_OK);
    ck_assert_int_eq(mtft_config_trainer(cfg)->shared_lora_rank, 4);
    ck_assert_float_eq(mtft_config_balancer(cfg)->cagrad_c, 0.4f);
    /* lora: with shared_rank alone leaves the per-task LoRA to the trainer's values */
    ck_assert_float_eq(mtft_config_trainer(cfg)->lora_alpha, 16.0f);
    mtft_config_free(cfg);
    ck_assert_int_eq(load_str(&cfg, "lora: {dropout: 0.1}\n"), MTFT_OK);
    ck_assert_float_eq(mtft_config_trainer(cfg)->lora_alpha, 8.0f); /* lora.alpha's default */
    ck_assert_str_eq(mtft_config_trainer(cfg)->lora_targets, "attn.c_attn");
    mtft_config_free(cfg);
}
END_TEST

/* A config-built task loads real data (fixtures) through the data API. */
START_TEST(test_config_to_task) {
    char e[512], v[512], base[512];
    mtft_test_path(e, sizeof e, "data/tokenizer/gpt2/encoder.json");
    mtft_test_path(v, sizeof v, "data/tokenizer/gpt2/vocab.bpe");
    mtft_test_path(base, sizeof base, "tests/fixtures/data");
    mtft_tokenizer *tok = NULL;
    ck_assert_int_eq(mtft_tokenizer_load_gpt2(&tok, e, v), MTFT_OK);
    const char *yaml = "data: {log_progress: false, batch_size: 4, bucket_window: 2, max_len: 8}\n"
                       "tasks:\n"
                       "  - name: ng\n"
                       "    files: {train: name_gender_train.jsonl, dev: name_gender_dev.jsonl}\n"
                       "    template: \"Name: {text}\"\n"
                       "    labels: [female, male]\n"
                       "  - name: kjv\n"
                       "    type: tagging\n"
                       "    files: {train: kjv_word_alignment_train.jsonl}\n"
                       "    split: {test_fraction: 0.25, seed: 1}\n"
                       "    head: {label_smoothing: 0.05}\n";
    mtft_config *cfg = NULL;
    ck_assert_msg(mtft_config_load_string(&cfg, yaml, strlen(yaml), "inline.yaml", base) == MTFT_OK, "%s",
                  mtft_error_last()->message);
    mtft_task *tasks[2];
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(mtft_task_new(&tasks[i], mtft_config_task(cfg, i)), MTFT_OK);
        ck_assert_msg(mtft_task_load(tasks[i], tok, mtft_config_data(cfg)) == MTFT_OK, "%s",
                      mtft_error_last()->message);
    }
    ck_assert_int_eq(mtft_task_count(tasks[0], MTFT_SPLIT_TRAIN), 40);
    ck_assert_int_eq(mtft_task_count(tasks[0], MTFT_SPLIT_DEV), 12);
    ck_assert_str_eq(mtft_task_label(tasks[0], 0), "female");
    ck_assert_int_eq(mtft_task_count(tasks[1], MTFT_SPLIT_TEST), 5);
    /* the tag set comes from the data: the head's n_labels from the loaded task */
    ck_assert_int_eq(mtft_config_task_head(cfg, 1)->n_labels, 0);
    ck_assert_int_eq(mtft_config_task_head(cfg, 1)->kind, MTFT_HEAD_TOKEN_CLASSIFICATION);
    mtft_head_options ho;
    ck_assert_int_eq(mtft_config_task_head_for(cfg, 1, tasks[1], &ho), 1);
    ck_assert_int_ge(mtft_task_n_labels(tasks[1]), 2);
    ck_assert_int_eq(ho.n_labels, mtft_task_n_labels(tasks[1]));
    ck_assert_float_eq(ho.label_smoothing, 0.05f);
    ck_assert_str_eq(ho.name, "kjv");
    ck_assert_int_eq(mtft_config_task_head_for(cfg, 0, tasks[0], &ho), 0);
    mtft_loader *ld = NULL;
    ck_assert_int_eq(mtft_loader_new(&ld, tasks[1], MTFT_SPLIT_TRAIN, mtft_config_loader(cfg)), MTFT_OK);
    int64_t idx[4];
    ck_assert_int_eq(mtft_loader_n_batches(ld), 4); /* 15 examples in batches of 4 */
    int m = mtft_loader_next(ld, idx);
    ck_assert_int_ge(m, 3);
    mtft_example_ref refs[4];
    int longer = 0;
    for (int i = 0; i < m; i++) {
        refs[i].task = 1;
        refs[i].split = MTFT_SPLIT_TRAIN;
        refs[i].index = idx[i];
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(tasks[1], MTFT_SPLIT_TRAIN, idx[i], &ex), MTFT_OK);
        longer += ex.n_ids > 8;
    }
    ck_assert_int_gt(longer, 0);
    mtft_batch b;
    mtft_batch_init(&b);
    ck_assert_int_eq(mtft_batch_collate(&b, tasks, 2, refs, m, mtft_config_collate(cfg)), MTFT_OK);
    ck_assert_int_eq(b.seq_len, 8); /* verses are longer than max_len 8 */
    ck_assert_int_eq(b.n_truncated, longer);
    ck_assert_int_eq(b.task_id[m - 1], 1);
    mtft_batch_dispose(&b);
    mtft_loader_free(ld);
    for (int i = 0; i < 2; i++) mtft_task_free(tasks[i]);
    mtft_config_free(cfg);
    mtft_tokenizer_free(tok);
}
END_TEST

Suite *mtft_test_config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_config_fill);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_config_suggest);
    tcase_add_test(tc, test_config_defaults_match_init);
    tcase_add_test(tc, test_config_docs_agree);
    tcase_add_test(tc, test_config_example_all_tasks);
    tcase_add_test(tc, test_config_to_task);
    tcase_add_test(tc, test_config_whole_run);
    tcase_add_test(tc, test_config_legacy_train);
    tcase_add_test(tc, test_config_run_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_config_suite()); }
