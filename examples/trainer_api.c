/* The trainer from C, without YAML: two tasks and their heads defined in
 * code, a tiny GPT-2 style model trained from scratch on them with per-task
 * LoRA, temperature sampling and uncertainty weighting, a progress callback
 * that prints the per-task weights and sampling rates, then test metrics.
 *
 *   ./example_trainer_api [PROJECT_DIR]     (default ".": run from the project root)
 *
 * Uses the bundled name_gender and afinn_valence tasks and GPT-2's BPE. */
#include <stdio.h>
#include <string.h>

#include "mtft/mtft.h"
#include "mtft/trainer.h"

static int on_progress(const mtft_progress *p, void *payload) {
    (void)payload;
    if (p->event == MTFT_PROGRESS_EVAL) {
        printf("  eval at step %lld: dev score %.4f (best %.4f)\n", (long long)p->step, p->score, p->best_score);
    } else if (p->step % 50 == 0) {
        printf("  step %4lld loss %.4f |", (long long)p->step, (double)p->loss);
        for (int k = 0; k < p->n_tasks; k++)
            printf(" %s: loss %.3f weight %.2f rate %.2f", p->task_names[k], (double)p->task_loss[k],
                   (double)p->task_weights[k], p->task_rates[k]);
        printf("\n");
    }
    return 0; /* non-zero would stop the run with MTFT_EUSER */
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, mtft_error_last()->message);
    return 1;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const char *root = argc > 1 ? argv[1] : ".";
    char enc[1024], bpe[1024], files[6][1024];
    snprintf(enc, sizeof enc, "%s/data/tokenizer/gpt2/encoder.json", root);
    snprintf(bpe, sizeof bpe, "%s/data/tokenizer/gpt2/vocab.bpe", root);
    const char *names[2] = {"name_gender", "afinn_valence"};
    const char *splits[3] = {"train", "dev", "test"};
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 3; s++) snprintf(files[3 * k + s], sizeof files[0], "%s/data/tasks/%s/%s.jsonl", root, names[k], splits[s]);

    mtft_tokenizer *tok = NULL;
    mtft_task *tasks[2] = {NULL, NULL};
    mtft_model *m = NULL;
    mtft_trainer *tr = NULL;
    int ret = 1;
    if (mtft_tokenizer_load_gpt2(&tok, enc, bpe) < 0) return fail("tokenizer");

    /* Tasks in code: what the tasks: section of a config would say. */
    const char *genders[2] = {"female", "male"};
    mtft_task_options to = MTFT_TASK_OPTIONS_INIT;
    to.name = names[0];
    to.type = MTFT_TASK_CLASSIFICATION;
    to.train_file = files[0];
    to.dev_file = files[1];
    to.test_file = files[2];
    to.prompt_template = "Name: {text}";
    to.labels = genders;
    to.n_labels = 2;
    if (mtft_task_new(&tasks[0], &to) < 0) goto done;
    mtft_task_options tv = MTFT_TASK_OPTIONS_INIT;
    tv.name = names[1];
    tv.type = MTFT_TASK_REGRESSION;
    tv.train_file = files[3];
    tv.dev_file = files[4];
    tv.test_file = files[5];
    if (mtft_task_new(&tasks[1], &tv) < 0) goto done;
    for (int k = 0; k < 2; k++)
        if (mtft_task_load(tasks[k], tok, NULL) < 0) goto done;

    /* A tiny model from scratch (mtft_model_load_hf would load a pretrained one). */
    mtft_model_config mc = MTFT_MODEL_CONFIG_INIT;
    mc.vocab_size = mtft_tokenizer_vocab_size(tok);
    mc.n_ctx = 32;
    mc.n_embd = 64;
    mc.n_layer = 2;
    mc.n_head = 4;
    mc.n_kv_head = 4;
    mc.n_ff = 256;
    if (mtft_model_new(&m, &mc, 42) < 0) goto done;

    mtft_trainer_options o = MTFT_TRAINER_OPTIONS_INIT;
    o.seed = 42;
    o.max_steps = 300;
    o.batch_size = 32;
    o.max_len = 32;
    o.pad_id = mtft_tokenizer_token_to_id(tok, "<|endoftext|>");
    o.lr = 2e-3f;
    o.warmup_steps = 20;
    o.train_base = 1;          /* from scratch: the trunk must learn too */
    o.base_lr_scale = 1.0f;
    o.lora_rank = 4;           /* plus a LoRA per task */
    o.sampler.start.strategy = MTFT_SAMPLER_TEMPERATURE;
    o.sampler.start.temperature = 2.0;
    o.balancer.method = MTFT_BALANCE_UNCERTAINTY;
    o.eval_every = 100;
    o.progress = on_progress;
    if (mtft_trainer_new(&tr, m, &o) < 0) goto done;

    /* Heads in code: a classification head with a hidden layer on mean-pooled
     * states, and a Huber regression head on standardised targets. */
    mtft_head_options hc = MTFT_HEAD_OPTIONS_INIT;
    hc.kind = MTFT_HEAD_CLASSIFICATION;
    hc.n_labels = 2;
    hc.pool = MTFT_POOL_MEAN;
    hc.hidden_size = 64;
    hc.activation = MTFT_HEAD_ACT_GELU;
    mtft_head_options hr = MTFT_HEAD_OPTIONS_INIT;
    hr.kind = MTFT_HEAD_REGRESSION;
    hr.n_labels = 1;
    hr.pool = MTFT_POOL_MEAN;
    hr.loss = MTFT_HEAD_LOSS_HUBER;
    hr.huber_delta = 1.0f;
    if (mtft_trainer_add_task(tr, tasks[0], &hc) < 0 || mtft_trainer_add_task(tr, tasks[1], &hr) < 0) goto done;
    /* (the trainer fits the regression head's target mean and std on the training values) */

    printf("training %d tasks for %lld steps\n", mtft_trainer_n_tasks(tr), (long long)o.max_steps);
    if (mtft_trainer_run(tr) < 0) goto done;
    if (mtft_trainer_evaluate(tr, MTFT_SPLIT_TEST, 0) < 0) goto done;
    double acc = 0, rmse = 0, pearson = 0;
    mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_TEST, MTFT_METRIC_ACCURACY, &acc, NULL);
    mtft_trainer_eval_value(tr, 1, MTFT_SPLIT_TEST, MTFT_METRIC_RMSE, &rmse, NULL);
    mtft_trainer_eval_value(tr, 1, MTFT_SPLIT_TEST, MTFT_METRIC_PEARSON, &pearson, NULL);
    printf("test: name_gender accuracy %.4f (majority 0.5382) | afinn_valence rmse %.4f (mean 2.1365), pearson %.4f\n",
           acc, rmse, pearson);
    ret = 0;
done:
    if (ret) fail("trainer example");
    mtft_trainer_free(tr);
    mtft_model_free(m);
    for (int k = 0; k < 2; k++) mtft_task_free(tasks[k]);
    mtft_tokenizer_free(tok);
    return ret;
}
