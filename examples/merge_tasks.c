/* Merging single-task models into one multitask model, against the
 * individual models and a jointly trained one (the figures in
 * docs/merge.md). Public API only.
 *
 *   example_merge_tasks CONFIG BASE_DIR OUT_DIR [STEPS] [EVAL_MAX]
 *
 * CONFIG: a YAML with tasks: and data: (e.g. examples/configs/merge_tasks.yaml);
 * BASE_DIR: a base model with its tokenizer (mtft pretrain --out BASE_DIR).
 *   1. per task: full finetuning of the base (trunk + a new head) for STEPS
 *      steps; the model goes to OUT_DIR/<task> (config.json +
 *      model.safetensors), the head to OUT_DIR/<task>/head; test metric;
 *   2. one joint multitask model on all tasks for STEPS * n_tasks steps;
 *   3. each merge method on the task models (mtft_merger_merge_into),
 *      lambda picked on dev from a small grid, then every task's own head
 *      on the merged trunk: test metric;
 *   4. AdaMerging (layer-wise) on unlabeled test inputs.
 * Prints one Markdown table of the primary test metric per task. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mtft/config.h"
#include "mtft/head.h"
#include "mtft/merge.h"
#include "mtft/mtft.h"
#include "mtft/trainer.h"

#define MAX_TASKS 8

static int fail(const char *what) {
    fprintf(stderr, "merge_tasks: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

typedef struct run {
    const char *base_dir, *out_dir;
    int64_t steps, eval_max;
    mtft_task *tasks[MAX_TASKS];
    int nt;
    const mtft_collate_options *collate;
    int32_t pad_id;
    char head_dir[MAX_TASKS][1024 + 8]; /* model_dir + "/head" */
    char model_dir[MAX_TASKS][1024];
} run;

static void options(const run *r, mtft_trainer_options *o, int64_t steps) {
    mtft_trainer_options d = MTFT_TRAINER_OPTIONS_INIT;
    *o = d;
    o->seed = 1;
    o->max_steps = steps;
    o->batch_size = 32;
    o->max_len = r->collate->max_len;
    o->pad_id = r->pad_id;
    o->lr = 1e-3f;
    o->warmup_steps = steps / 10;
    o->train_base = 1;
    o->base_lr_scale = 1.0f;
    o->lora_rank = 0;
    o->head_pool = MTFT_POOL_MEAN;
    o->eval_max_examples = r->eval_max;
}

/* Primary metric of each task of tr on `split` into out (indexed as tasks). */
static int evaluate(mtft_trainer *tr, mtft_split split, int64_t max_ex, double *out, int n) {
    if (mtft_trainer_evaluate(tr, split, max_ex) < 0) return -1;
    for (int k = 0; k < n; k++)
        if (mtft_trainer_eval_value(tr, k, split, mtft_trainer_primary_metric(tr, k), &out[k], NULL) < 0) return -1;
    return 0;
}

/* Task k's own head (from its single-task run) on model m: metric on split. */
static int eval_task_head(run *r, mtft_model *m, int k, mtft_split split, int64_t max_ex, double *out) {
    mtft_trainer_options o;
    options(r, &o, 1);
    mtft_trainer *tr = NULL;
    mtft_head *h = NULL;
    int rc = -1;
    if (mtft_trainer_new(&tr, m, &o) < 0 || mtft_trainer_add_task(tr, r->tasks[k], NULL) < 0 ||
        mtft_head_load(&h, r->head_dir[k]) < 0)
        goto done;
    size_t n1 = 0, n2 = 0;
    float *dst = mtft_param_group_data(mtft_head_group(mtft_trainer_head(tr, 0)), &n1);
    const float *src = mtft_param_group_data(mtft_head_group(h), &n2);
    if (n1 != n2) {
        fprintf(stderr, "merge_tasks: head sizes differ (%zu vs %zu)\n", n1, n2);
        goto done;
    }
    memcpy(dst, src, n1 * sizeof *dst);
    if (evaluate(tr, split, max_ex, out, 1) == 0) rc = 0;
done:
    mtft_head_free(h);
    mtft_trainer_free(tr);
    return rc;
}

static int eval_all_heads(run *r, mtft_model *m, mtft_split split, int64_t max_ex, double *out) {
    for (int k = 0; k < r->nt; k++)
        if (eval_task_head(r, m, k, split, max_ex, &out[k]) < 0) return -1;
    return 0;
}

static double mean(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return s / n;
}

static void print_row(const char *name, const double *v, int n, const char *note) {
    printf("| %s |", name);
    for (int k = 0; k < n; k++) printf(" %.4f |", v[k]);
    printf(" %.4f | %s |\n", mean(v, n), note);
    fflush(stdout);
}

/* ---- AdaMerging: the entropy of each task's head on its unlabeled test inputs ---- */
typedef struct ada {
    run *r;
    mtft_model *m;
    mtft_head *heads[MAX_TASKS];
    mtft_batch batch[MAX_TASKS];
    int rows;
} ada;

static int ada_loss(mtft_graph *g, int step, void *payload, mtft_tensor **loss) {
    ada *a = payload;
    mtft_tensor *total = NULL;
    for (int k = 0; k < a->r->nt; k++) {
        int64_t n = mtft_task_count(a->r->tasks[k], MTFT_SPLIT_TEST);
        mtft_example_ref refs[64];
        for (int i = 0; i < a->rows; i++) {
            refs[i].task = k;
            refs[i].split = MTFT_SPLIT_TEST;
            refs[i].index = ((int64_t)step * a->rows + i) % n;
        }
        mtft_collate_options co = *a->r->collate;
        co.pad_id = a->r->pad_id;
        int rc = mtft_batch_collate(&a->batch[k], a->r->tasks, a->r->nt, refs, a->rows, &co);
        if (rc < 0) return rc;
        mtft_batch *b = &a->batch[k];
        mtft_tensor *hid = mtft_model_hidden(a->m, g, b->ids, b->n_rows, b->seq_len, b->valid_len);
        mtft_tensor *logits = mtft_head_forward(a->heads[k], g, a->m, hid, b->valid_len);
        mtft_tensor *H = mtft_merge_entropy(g, logits);
        total = total ? mtft_add(g, total, H) : H;
    }
    *loss = total;
    return total ? MTFT_OK : mtft_graph_status(g);
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    if (argc < 4) {
        fprintf(stderr, "usage: %s CONFIG BASE_DIR OUT_DIR [STEPS] [EVAL_MAX]\n", argv[0]);
        return 2;
    }
    run r;
    memset(&r, 0, sizeof r);
    r.base_dir = argv[2];
    r.out_dir = argv[3];
    r.steps = argc > 4 ? atoll(argv[4]) : 200;
    r.eval_max = argc > 5 ? atoll(argv[5]) : 500;
    mtft_config *cfg = NULL;
    mtft_tokenizer *tok = NULL;
    mtft_model *m = NULL;
    mtft_trainer *tr = NULL;
    mtft_merger *mg = NULL;
    int ret = 1;
    char p1[1200], p2[1200];
    if (mtft_config_load_file(&cfg, argv[1]) < 0) return fail("config");
    r.collate = mtft_config_collate(cfg);
    snprintf(p1, sizeof p1, "%s/vocab.json", r.base_dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", r.base_dir);
    if (mtft_tokenizer_load_hf(&tok, p1, p2) < 0) {
        fail("tokenizer");
        goto done;
    }
    int32_t eos = mtft_tokenizer_token_to_id(tok, "<|endoftext|>");
    r.pad_id = eos >= 0 ? eos : 0;
    r.nt = mtft_config_n_tasks(cfg);
    if (r.nt < 2 || r.nt > MAX_TASKS) {
        fprintf(stderr, "merge_tasks: the config needs 2..%d tasks\n", MAX_TASKS);
        goto done;
    }
    for (int k = 0; k < r.nt; k++)
        if (mtft_task_new(&r.tasks[k], mtft_config_task(cfg, k)) < 0 ||
            mtft_task_load(r.tasks[k], tok, mtft_config_data(cfg)) < 0) {
            fail("task");
            goto done;
        }
    mkdir(r.out_dir, 0777);
    double indiv[MAX_TASKS], joint[MAX_TASKS], v[MAX_TASKS];
    printf("| model |");
    for (int k = 0; k < r.nt; k++) printf(" %s |", mtft_task_name(r.tasks[k]));
    printf(" mean | notes |\n|---|");
    for (int k = 0; k < r.nt; k++) printf("---|");
    printf("---|---|\n");

    /* 1. single-task models */
    for (int k = 0; k < r.nt; k++) {
        mtft_trainer_options o;
        options(&r, &o, r.steps);
        if (mtft_model_load_hf(&m, r.base_dir) < 0 || mtft_trainer_new(&tr, m, &o) < 0 ||
            mtft_trainer_add_task(tr, r.tasks[k], NULL) < 0 || mtft_trainer_run(tr) < 0 ||
            evaluate(tr, MTFT_SPLIT_TEST, r.eval_max, &indiv[k], 1) < 0) {
            fail("single-task training");
            goto done;
        }
        snprintf(r.model_dir[k], sizeof r.model_dir[k], "%s/%s", r.out_dir, mtft_task_name(r.tasks[k]));
        snprintf(r.head_dir[k], sizeof r.head_dir[k], "%s/head", r.model_dir[k]);
        mkdir(r.model_dir[k], 0777);
        mkdir(r.head_dir[k], 0777);
        if (mtft_model_save_hf(m, r.model_dir[k]) < 0 || mtft_head_save(mtft_trainer_head(tr, 0), r.head_dir[k]) < 0) {
            fail("saving a task model");
            goto done;
        }
        mtft_trainer_free(tr);
        tr = NULL;
        mtft_model_free(m);
        m = NULL;
    }
    print_row("individual task models (each on its own task)", indiv, r.nt, "upper reference");

    /* 2. joint multitask model */
    {
        mtft_trainer_options o;
        options(&r, &o, r.steps * r.nt);
        if (mtft_model_load_hf(&m, r.base_dir) < 0 || mtft_trainer_new(&tr, m, &o) < 0) {
            fail("joint trainer");
            goto done;
        }
        for (int k = 0; k < r.nt; k++)
            if (mtft_trainer_add_task(tr, r.tasks[k], NULL) < 0) {
                fail("joint task");
                goto done;
            }
        if (mtft_trainer_run(tr) < 0 || evaluate(tr, MTFT_SPLIT_TEST, r.eval_max, joint, r.nt) < 0) {
            fail("joint training");
            goto done;
        }
        char note[64];
        snprintf(note, sizeof note, "%lld steps, all tasks", (long long)(r.steps * r.nt));
        print_row("joint multitask model", joint, r.nt, note);
        mtft_trainer_free(tr);
        tr = NULL;
        mtft_model_free(m);
        m = NULL;
    }
    /* the base with each task's head: the floor */
    if (mtft_model_load_hf(&m, r.base_dir) < 0 || eval_all_heads(&r, m, MTFT_SPLIT_TEST, r.eval_max, v) < 0) {
        fail("base evaluation");
        goto done;
    }
    print_row("base + each task's head (no merge)", v, r.nt, "lower reference");

    /* 3. merges */
    static const struct {
        mtft_merge_method method;
        const char *label;
        double density;
        int grid;
    } methods[] = {
        {MTFT_MERGE_LINEAR, "linear (average)", 1.0, 0},
        {MTFT_MERGE_TASK_ARITHMETIC, "task arithmetic", 1.0, 1},
        {MTFT_MERGE_TIES, "TIES (density 0.2)", 0.2, 1},
        {MTFT_MERGE_DARE_LINEAR, "DARE + task arithmetic (p 0.5)", 0.5, 1},
        {MTFT_MERGE_DARE_TIES, "DARE + TIES (p 0.5)", 0.5, 1},
        {MTFT_MERGE_BREADCRUMBS, "breadcrumbs (beta 0.01, gamma 0.5)", 1.0, 1},
        {MTFT_MERGE_PCB, "PCB (density 0.2)", 0.2, 1},
    };
    static const double lambdas[] = {0.3, 0.5, 0.7, 1.0, 1.3};
    for (size_t mi = 0; mi < sizeof methods / sizeof methods[0]; mi++) {
        double best_dev = -INFINITY, best_lam = 1.0;
        int n_lam = methods[mi].grid ? (int)(sizeof lambdas / sizeof lambdas[0]) : 1;
        for (int li = 0; li <= n_lam; li++) {
            /* li < n_lam: a dev point of the grid; li == n_lam: the test run with the best lambda */
            double lam = li < n_lam ? (methods[mi].grid ? lambdas[li] : 1.0) : best_lam;
            mtft_merge_options mo = MTFT_MERGE_OPTIONS_INIT;
            mo.method = methods[mi].method;
            mo.lambda = (float)lam;
            mo.seed = 7;
            if (mtft_merger_new(&mg, &mo) < 0 || mtft_merger_set_base(mg, r.base_dir) < 0) {
                fail("merger");
                goto done;
            }
            for (int k = 0; k < r.nt; k++)
                if (mtft_merger_add_model(mg, r.model_dir[k], 1.0f) < 0) {
                    fail("merger input");
                    goto done;
                }
            if (methods[mi].method != MTFT_MERGE_LINEAR && methods[mi].method != MTFT_MERGE_TASK_ARITHMETIC &&
                methods[mi].method != MTFT_MERGE_BREADCRUMBS)
                mtft_merger_set_param(mg, -1, NULL, MTFT_MERGE_P_DENSITY, methods[mi].density);
            if (methods[mi].method == MTFT_MERGE_BREADCRUMBS) {
                mtft_merger_set_param(mg, -1, NULL, MTFT_MERGE_P_BETA, 0.01);
                mtft_merger_set_param(mg, -1, NULL, MTFT_MERGE_P_GAMMA, 0.5);
            }
            if (mtft_merger_merge_into(mg, mtft_model_base_group(m)) < 0) {
                fail("merge");
                goto done;
            }
            mtft_merger_free(mg);
            mg = NULL;
            if (li < n_lam) {
                if (eval_all_heads(&r, m, MTFT_SPLIT_DEV, r.eval_max, v) < 0) {
                    fail("dev evaluation");
                    goto done;
                }
                if (mean(v, r.nt) > best_dev) best_dev = mean(v, r.nt), best_lam = lam;
            } else {
                if (eval_all_heads(&r, m, MTFT_SPLIT_TEST, r.eval_max, v) < 0) {
                    fail("test evaluation");
                    goto done;
                }
                char note[64];
                snprintf(note, sizeof note, "lambda %.1f%s", best_lam, methods[mi].grid ? " (best on dev)" : "");
                print_row(methods[mi].label, v, r.nt, note);
            }
        }
    }

    /* 4. AdaMerging, layer-wise, on unlabeled test inputs */
    {
        ada a;
        memset(&a, 0, sizeof a);
        a.r = &r;
        a.m = m;
        a.rows = 16;
        for (int k = 0; k < r.nt; k++) {
            mtft_batch_init(&a.batch[k]);
            if (mtft_head_load(&a.heads[k], r.head_dir[k]) < 0) {
                fail("head");
                goto ada_done;
            }
            mtft_param_group_set_trainable(mtft_head_group(a.heads[k]), 0);
        }
        mtft_merge_options mo = MTFT_MERGE_OPTIONS_INIT;
        if (mtft_merger_new(&mg, &mo) < 0 || mtft_merger_set_base(mg, r.base_dir) < 0) {
            fail("merger");
            goto ada_done;
        }
        for (int k = 0; k < r.nt; k++) mtft_merger_add_model(mg, r.model_dir[k], 1.0f);
        mtft_adamerge_options ao = MTFT_ADAMERGE_OPTIONS_INIT;
        ao.steps = 100;
        ao.lr = 5e-3f;
        float losses[100];
        if (mtft_adamerge(mg, mtft_model_base_group(m), ada_loss, &a, &ao, NULL, losses) < 0) {
            fail("adamerging");
            goto ada_done;
        }
        if (eval_all_heads(&r, m, MTFT_SPLIT_TEST, r.eval_max, v) < 0) {
            fail("adamerging evaluation");
            goto ada_done;
        }
        char note[96];
        snprintf(note, sizeof note, "entropy %.3f -> %.3f in %d steps", losses[0], losses[ao.steps - 1], ao.steps);
        print_row("AdaMerging (layer-wise)", v, r.nt, note);
        ret = 0;
    ada_done:
        for (int k = 0; k < r.nt; k++) {
            mtft_batch_dispose(&a.batch[k]);
            mtft_head_free(a.heads[k]);
        }
    }
done:
    mtft_merger_free(mg);
    mtft_trainer_free(tr);
    mtft_model_free(m);
    for (int k = 0; k < r.nt; k++) mtft_task_free(r.tasks[k]);
    mtft_tokenizer_free(tok);
    mtft_config_free(cfg);
    return ret;
}
