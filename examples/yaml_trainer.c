/* The YAML-driven trainer in a few lines of the public API: read a run
 * config, load the base model, tokenizer and tasks it names, train, and print
 * each task's test metric. The `mtft train` command is this plus the
 * pretraining step, progress display, resume and reporting.
 *
 *   ./build/example_yaml_trainer examples/configs/quickstart.yaml [max_steps]
 *
 * (the quickstart config needs its base model: run `sh scripts/quickstart.sh`
 * once, or `mtft pretrain`, so that model.base exists). */
#include <stdio.h>
#include <stdlib.h>

#include <mtft/mtft.h>

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, mtft_error_last()->message);
    return 1;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONFIG.yaml [max_steps]\n", argv[0]);
        return 2;
    }
    int rc = 1, nt = 0;
    mtft_config *cfg = NULL;
    mtft_tokenizer *tok = NULL;
    mtft_model *m = NULL;
    mtft_trainer *tr = NULL;
    mtft_task **tasks = NULL;

    if (mtft_config_load_file(&cfg, argv[1]) < 0) return fail("config"); /* file:line:col: key.path: ... */
    const mtft_run_options *run = mtft_config_run(cfg);
    if (!run->base_model || !run->tokenizer_vocab || !run->tokenizer_merges) {
        fprintf(stderr, "%s: the config names no base model (model.base) and tokenizer\n", argv[1]);
        goto done;
    }
    if (mtft_tokenizer_load_hf(&tok, run->tokenizer_vocab, run->tokenizer_merges) < 0) {
        rc = fail("tokenizer");
        goto done;
    }
    if (mtft_model_load_hf(&m, run->base_model) < 0) {
        rc = fail("base model");
        goto done;
    }
    /* the trainer options come straight from the config: the same struct a C
     * program would fill by hand */
    mtft_trainer_options topt = *mtft_config_trainer(cfg);
    if (argc > 2) topt.max_steps = atoll(argv[2]);
    if (mtft_trainer_new(&tr, m, &topt) < 0) {
        rc = fail("trainer");
        goto done;
    }
    nt = mtft_config_n_tasks(cfg);
    tasks = calloc((size_t)nt, sizeof *tasks);
    for (int k = 0; tasks && k < nt; k++) {
        mtft_head_options ho;
        if (mtft_task_new(&tasks[k], mtft_config_task(cfg, k)) < 0 ||
            mtft_task_load(tasks[k], tok, mtft_config_data(cfg)) < 0) {
            rc = fail("task");
            goto done;
        }
        int has_head = mtft_config_task_head_for(cfg, k, tasks[k], &ho);
        if (has_head < 0 || mtft_trainer_add_task(tr, tasks[k], has_head == 1 ? &ho : NULL) < 0) {
            rc = fail("adding a task");
            goto done;
        }
    }
    if (!tasks) goto done;
    if (mtft_trainer_run(tr) < 0 || mtft_trainer_evaluate(tr, MTFT_SPLIT_TEST, 300) < 0) {
        rc = fail("training");
        goto done;
    }
    printf("%-22s %-16s %s\n", "task", "metric", "test (first 300 examples)");
    for (int k = 0; k < nt; k++) {
        mtft_metric metric = mtft_trainer_primary_metric(tr, k);
        double v = 0;
        if (mtft_trainer_eval_value(tr, k, MTFT_SPLIT_TEST, metric, &v, NULL) < 0) {
            rc = fail("metric");
            goto done;
        }
        printf("%-22s %-16s %.4f\n", mtft_trainer_task_name(tr, k), mtft_metric_name(metric), v);
    }
    rc = 0;
done:
    mtft_trainer_free(tr);
    for (int k = 0; tasks && k < nt; k++) mtft_task_free(tasks[k]);
    free(tasks);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    mtft_config_free(cfg);
    return rc;
}
