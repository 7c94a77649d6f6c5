/* ctest-labels: unit */
/* ctest-timeout: 600 */
/* Trainer: a tiny model learns three synthetic tasks (classification,
 * regression, tagging) in mixed batches; progress callback and JSONL log
 * contents; stopping by callback; non-finite steps are skipped and change
 * nothing; a resumed run reproduces the loss curve bit for bit; gradient-level
 * balancing on a shared LoRA; pretraining lowers the LM loss; errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mtft/config.h"
#include "mtft/trainer.h"
#include "mtft_test.h"

static char g_dir[512];

static const char *k_words[] = {"red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "rock", "fish",
                                "bird", "star", "rain", "snow", "wind", "fire"};
#define N_WORDS 16

static int write_tasks(void) {
    snprintf(g_dir, sizeof g_dir, "%s/trainer_test_%d", MTFT_BINARY_DIR, (int)getpid());
    mkdir(g_dir, 0777);
    const char *splits[3] = {"train", "dev", "test"};
    const int counts[3] = {240, 60, 60};
    uint64_t s = 12345;
    for (int sp = 0; sp < 3; sp++) {
        char p[700];
        FILE *fc, *fr, *ft;
        snprintf(p, sizeof p, "%s/cls_%s.jsonl", g_dir, splits[sp]);
        fc = fopen(p, "w");
        snprintf(p, sizeof p, "%s/reg_%s.jsonl", g_dir, splits[sp]);
        fr = fopen(p, "w");
        snprintf(p, sizeof p, "%s/tag_%s.jsonl", g_dir, splits[sp]);
        ft = fopen(p, "w");
        if (!fc || !fr || !ft) return -1;
        for (int i = 0; i < counts[sp]; i++) {
            int w[4];
            for (int j = 0; j < 4; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                w[j] = (int)((s >> 33) % N_WORDS);
            }
            /* classification: is the first word an animal-ish word (index 3..5 or 9..10)? */
            const int pos = (w[0] >= 3 && w[0] <= 5) || w[0] == 9 || w[0] == 10;
            fprintf(fc, "{\"text\": \"%s %s %s\", \"label\": \"%s\"}\n", k_words[w[0]], k_words[w[1]], k_words[w[2]],
                    pos ? "yes" : "no");
            /* regression: the first word's index / 4 */
            fprintf(fr, "{\"text\": \"%s %s\", \"value\": %.2f}\n", k_words[w[0]], k_words[w[1]], w[0] / 4.0);
            /* tagging: a word is X when its index is even */
            fprintf(ft, "{\"tokens\": [\"%s\", \"%s\", \"%s\", \"%s\"], \"tags\": [\"%s\", \"%s\", \"%s\", \"%s\"]}\n",
                    k_words[w[0]], k_words[w[1]], k_words[w[2]], k_words[w[3]], w[0] % 2 ? "O" : "X",
                    w[1] % 2 ? "O" : "X", w[2] % 2 ? "O" : "X", w[3] % 2 ? "O" : "X");
        }
        fclose(fc);
        fclose(fr);
        fclose(ft);
    }
    return 0;
}

/* A fixture: tokenizer, tasks, a tiny model. */
typedef struct fx {
    mtft_tokenizer *tok;
    mtft_task *tasks[3];
    mtft_model *m;
} fx;

static void fx_init(fx *f, uint64_t seed) {
    memset(f, 0, sizeof *f);
    char text[4096] = "";
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < N_WORDS; i++) {
            strcat(text, " ");
            strcat(text, k_words[i]);
        }
    const char *sp[1] = {"<|endoftext|>"};
    mtft_bpe_train_options bo = MTFT_BPE_TRAIN_OPTIONS_INIT;
    bo.vocab_size = 300;
    bo.special_tokens = sp;
    bo.n_special_tokens = 1;
    ck_assert_int_eq(mtft_tokenizer_train(&f->tok, text, strlen(text), &bo), MTFT_OK);
    const char *names[3] = {"cls", "reg", "tag"};
    const mtft_task_type types[3] = {MTFT_TASK_CLASSIFICATION, MTFT_TASK_REGRESSION, MTFT_TASK_TAGGING};
    mtft_data_options dopt = MTFT_DATA_OPTIONS_INIT;
    dopt.log_progress = 0;
    for (int k = 0; k < 3; k++) {
        char tr[700], dv[700], te[700];
        snprintf(tr, sizeof tr, "%s/%s_train.jsonl", g_dir, names[k]);
        snprintf(dv, sizeof dv, "%s/%s_dev.jsonl", g_dir, names[k]);
        snprintf(te, sizeof te, "%s/%s_test.jsonl", g_dir, names[k]);
        mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
        o.name = names[k];
        o.type = types[k];
        o.train_file = tr;
        o.dev_file = dv;
        o.test_file = te;
        ck_assert_msg(mtft_task_new(&f->tasks[k], &o) == MTFT_OK, "%s", mtft_error_last()->message);
        ck_assert_msg(mtft_task_load(f->tasks[k], f->tok, &dopt) == MTFT_OK, "%s", mtft_error_last()->message);
    }
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.vocab_size = mtft_tokenizer_vocab_size(f->tok);
    c.n_ctx = 16;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = 2;
    c.n_ff = 64;
    ck_assert_int_eq(mtft_model_new(&f->m, &c, seed), MTFT_OK);
}

static void fx_free(fx *f) {
    mtft_model_free(f->m);
    for (int k = 0; k < 3; k++) mtft_task_free(f->tasks[k]);
    mtft_tokenizer_free(f->tok);
}

static mtft_trainer_options base_opts(void) {
    mtft_trainer_options o = MTFT_TRAINER_OPTIONS_INIT;
    o.seed = 7;
    o.max_steps = 30;
    o.batch_size = 12;
    o.max_len = 16;
    o.lr = 3e-3f;
    o.warmup_steps = 3;
    o.lora_rank = 4;
    o.lora_alpha = 8.0f;
    o.train_base = 1;
    o.base_lr_scale = 1.0f;
    o.head_pool = MTFT_POOL_MEAN;
    o.sampler.start.strategy = MTFT_SAMPLER_TEMPERATURE;
    o.sampler.start.temperature = 2.0;
    o.eval_batch_size = 16;
    return o;
}

static mtft_trainer *new_trainer(fx *f, const mtft_trainer_options *o) {
    mtft_trainer *tr = NULL;
    ck_assert_msg(mtft_trainer_new(&tr, f->m, o) == MTFT_OK, "%s", mtft_error_last()->message);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(mtft_trainer_add_task(tr, f->tasks[k], NULL), k);
    return tr;
}

/* ---- progress recording ------------------------------------------------------ */
typedef struct rec {
    int n_steps, n_evals, stop_at, bad;
    float loss[256];
    float task_loss[256][3];
    int64_t skipped_total;
    int skipped_steps;
} rec;

static int on_progress(const mtft_progress *p, void *payload) {
    rec *r = payload;
    if (p->event == MTFT_PROGRESS_EVAL) {
        r->n_evals++;
        if (!isfinite(p->score)) r->bad = 1;
        return 0;
    }
    if (p->n_tasks != 3 || !p->task_names || strcmp(p->task_names[1], "reg") != 0) r->bad = 1;
    double rs = 0;
    int rows = 0;
    for (int k = 0; k < 3; k++) {
        rs += p->task_rates[k];
        rows += p->task_rows[k];
        if (p->task_rows[k] == 0 && (p->task_weights[k] != 0.0f || !isnan(p->task_loss[k]))) r->bad = 2;
        if (p->task_rows[k] > 0 && !p->skipped && !(p->task_weights[k] > 0.0f)) r->bad = 3;
    }
    if (fabs(rs - 1.0) > 1e-9 || rows != 12) r->bad = 4;
    if (p->step != r->n_steps + 1) r->bad = 5;
    if (r->n_steps < 256) {
        r->loss[r->n_steps] = p->loss;
        for (int k = 0; k < 3; k++) r->task_loss[r->n_steps][k] = p->task_loss[k];
    }
    r->n_steps++;
    r->skipped_total = p->n_skipped;
    r->skipped_steps += p->skipped;
    return r->stop_at && p->step == r->stop_at;
}

/* Mean over steps [a, b) of the finite losses of task k. */
static double mean_loss(const rec *r, int k, int a, int b) {
    double s = 0;
    int n = 0;
    for (int i = a; i < b; i++)
        if (isfinite(r->task_loss[i][k])) s += r->task_loss[i][k], n++;
    return n ? s / n : NAN;
}

START_TEST(test_trainer_learns_and_logs) {
    fx f;
    fx_init(&f, 1);
    rec r;
    memset(&r, 0, sizeof r);
    char log[700];
    snprintf(log, sizeof log, "%s/log.jsonl", g_dir);
    unlink(log);
    mtft_trainer_options o = base_opts();
    o.max_steps = 120;
    o.eval_every = 40;
    o.progress = on_progress;
    o.payload = &r;
    o.log_path = log;
    o.balancer.method = MTFT_BALANCE_DWA;
    mtft_trainer *tr = new_trainer(&f, &o);
    ck_assert_msg(mtft_trainer_run(tr) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(r.bad, 0);
    ck_assert_int_eq(r.n_steps, 120);
    ck_assert_int_eq(r.n_evals, 3); /* steps 40, 80 and the final one */
    ck_assert_int_eq(mtft_trainer_step(tr), 120);
    /* every task's loss falls */
    for (int k = 0; k < 3; k++) {
        const double a = mean_loss(&r, k, 0, 15), b = mean_loss(&r, k, 105, 120);
        ck_assert_msg(b < 0.7 * a, "task %d: loss %.4f -> %.4f", k, a, b);
    }
    ck_assert_int_eq(mtft_trainer_evaluate(tr, MTFT_SPLIT_TEST, 0), MTFT_OK);
    double acc = 0, tacc = 0, pear = 0, rmse = 0;
    int def = 0;
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_TEST, MTFT_METRIC_ACCURACY, &acc, &def), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 1, MTFT_SPLIT_TEST, MTFT_METRIC_PEARSON, &pear, &def), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 1, MTFT_SPLIT_TEST, MTFT_METRIC_RMSE, &rmse, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 2, MTFT_SPLIT_TEST, MTFT_METRIC_TOKEN_ACCURACY, &tacc, NULL), MTFT_OK);
    /* the rules are simple functions of the words: far above chance (0.5-0.65 majority) */
    ck_assert_msg(acc >= 0.85, "classification accuracy %.3f", acc);
    ck_assert_msg(pear >= 0.8, "regression pearson %.3f", pear);
    ck_assert_msg(tacc >= 0.85, "tagging token accuracy %.3f", tacc);
    /* one-example prediction agrees with the gold labels like the evaluation does */
    int agree = 0;
    for (int i = 0; i < 40; i++) {
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(f.tasks[0], MTFT_SPLIT_TEST, i, &ex), MTFT_OK);
        int32_t lab = -1;
        float probs[2] = {0, 0};
        ck_assert_int_eq(mtft_trainer_predict(tr, 0, ex.ids, ex.n_ids, &lab, probs), MTFT_OK);
        ck_assert(lab == 0 || lab == 1);
        ck_assert(fabsf(probs[0] + probs[1] - 1.0f) < 1e-4f && probs[lab] >= 0.5f);
        agree += lab == ex.labels[0];
    }
    ck_assert_msg(agree >= 34, "predict agrees with gold on %d of 40", agree);
    {
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(f.tasks[2], MTFT_SPLIT_TEST, 0, &ex), MTFT_OK);
        int32_t tags[64];
        ck_assert_int_eq(mtft_trainer_predict(tr, 2, ex.ids, ex.n_ids, tags, NULL), MTFT_OK);
        int ok = 0, n = 0;
        for (int t = 0; t < ex.n_ids; t++)
            if (ex.tags[t] != -100) n++, ok += tags[t] == ex.tags[t];
        ck_assert_int_eq(n, 4);
        ck_assert_int_ge(ok, 3);
        ck_assert_int_eq(mtft_trainer_predict(tr, 3, ex.ids, ex.n_ids, tags, NULL), MTFT_ERANGE);
    }
    /* a metric a type does not report */
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_TEST, MTFT_METRIC_RMSE, &rmse, NULL), MTFT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "cls"));
    /* the log: one line per step and per evaluation, with per-task weights and rates */
    FILE *fl = fopen(log, "r");
    ck_assert_ptr_nonnull(fl);
    char line[4096];
    int steps = 0, evals = 0, tests = 0;
    while (fgets(line, sizeof line, fl)) {
        tests += strstr(line, "\"event\":\"eval\",\"step\":120,\"split\":\"test\"") != NULL;
        if (strstr(line, "\"event\":\"step\"")) {
            steps++;
            ck_assert_ptr_nonnull(strstr(line, "\"reg\":{\"loss\":"));
            ck_assert_ptr_nonnull(strstr(line, "\"weight\":"));
            ck_assert_ptr_nonnull(strstr(line, "\"rate\":"));
        } else if (strstr(line, "\"event\":\"eval\"")) {
            evals++;
            ck_assert_ptr_nonnull(strstr(line, "\"accuracy\":"));
        }
    }
    fclose(fl);
    ck_assert_int_eq(steps, 120);
    ck_assert_int_eq(evals, 4); /* 3 on dev during the run, the test evaluation above */
    ck_assert_int_eq(tests, 1);
    mtft_trainer_free(tr);
    fx_free(&f);
}
END_TEST

/* Inputs longer than max_len are cut for prediction as training cuts them:
 * the first max_len tokens, or the last with truncation left; per-token
 * outputs stay at their positions, cut-off ones are ignored. */
START_TEST(test_trainer_predict_truncation) {
    for (int left = 0; left < 2; left++) {
        fx f;
        fx_init(&f, 3);
        mtft_trainer_options o = base_opts();
        o.max_len = 8;
        o.truncation = left ? MTFT_TRUNCATE_LEFT : MTFT_TRUNCATE_RIGHT;
        mtft_trainer *tr = NULL;
        ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_OK);
        for (int k = 0; k < 3; k++) ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[k], NULL), k);
        int32_t ids[12], full[12], cut[8];
        float vfull[12 * 2], vcut[8 * 2];
        for (int i = 0; i < 12; i++) ids[i] = 5 + 7 * i % 40;
        const int off = left ? 4 : 0;
        ck_assert_int_eq(mtft_trainer_predict(tr, 2, ids, 12, full, vfull), MTFT_OK);
        ck_assert_int_eq(mtft_trainer_predict(tr, 2, ids + off, 8, cut, vcut), MTFT_OK);
        for (int t = 0; t < 12; t++) {
            if (t < off || t >= off + 8) {
                ck_assert_int_eq(full[t], MTFT_HEAD_IGNORE_INDEX);
                ck_assert(isnan(vfull[2 * t]));
            } else {
                ck_assert_int_eq(full[t], cut[t - off]);
                ck_assert(memcmp(&vfull[2 * t], &vcut[2 * (t - off)], 2 * sizeof(float)) == 0);
            }
        }
        /* a sequence head reads the kept window too */
        int32_t c1 = -1, c2 = -1;
        ck_assert_int_eq(mtft_trainer_predict(tr, 0, ids, 12, &c1, NULL), MTFT_OK);
        ck_assert_int_eq(mtft_trainer_predict(tr, 0, ids + off, 8, &c2, NULL), MTFT_OK);
        ck_assert_int_eq(c1, c2);
        mtft_trainer_free(tr);
        fx_free(&f);
    }
}
END_TEST

START_TEST(test_trainer_callback_stops) {
    fx f;
    fx_init(&f, 2);
    rec r;
    memset(&r, 0, sizeof r);
    r.stop_at = 4;
    mtft_trainer_options o = base_opts();
    o.progress = on_progress;
    o.payload = &r;
    char ck[700], p[800];
    snprintf(ck, sizeof ck, "%s/periodic", g_dir);
    o.ckpt_dir = ck;
    o.save_every = 1;
    o.keep_last = 2;
    mtft_trainer *tr = new_trainer(&f, &o);
    ck_assert_int_eq(mtft_trainer_run(tr), MTFT_EUSER);
    ck_assert_int_eq(r.n_steps, 4);
    /* periodic checkpoints after steps 1..3 (the stop at step 4 comes first), newest two kept */
    struct stat st;
    snprintf(p, sizeof p, "%s/step-00000003/trainer.json", ck);
    ck_assert_int_eq(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/step-00000002/state.bin", ck);
    ck_assert_int_eq(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/step-00000001", ck);
    ck_assert_int_ne(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/step-00000003.tmp", ck);
    ck_assert_int_ne(stat(p, &st), 0);
    ck_assert_int_eq(mtft_trainer_step(tr), 4);
    /* adding a task once started is a state error naming the task */
    ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[0], NULL), MTFT_ESTATE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "cls"));
    mtft_trainer_free(tr);
    fx_free(&f);
}
END_TEST

/* Run to o.max_steps (or stop by callback after step stop_at), recording the
 * loss curve; optionally load a checkpoint first and save one at the end. */
static void run_curve(mtft_trainer_options o, uint64_t seed, int stop_at, const char *load_dir, const char *save_dir,
                      rec *r) {
    fx f;
    fx_init(&f, seed);
    memset(r, 0, sizeof *r);
    r->stop_at = stop_at;
    o.progress = on_progress;
    o.payload = r;
    mtft_trainer *tr = new_trainer(&f, &o);
    if (load_dir) {
        ck_assert_msg(mtft_trainer_load(tr, load_dir) == MTFT_OK, "%s", mtft_error_last()->message);
        r->n_steps = (int)mtft_trainer_step(tr);
    }
    const int rc = mtft_trainer_run(tr);
    ck_assert_msg(rc == (stop_at ? MTFT_EUSER : MTFT_OK), "%s", mtft_error_last()->message);
    if (save_dir) ck_assert_msg(mtft_trainer_save(tr, save_dir) == MTFT_OK, "%s", mtft_error_last()->message);
    mtft_trainer_free(tr);
    fx_free(&f);
}

START_TEST(test_trainer_resume_bit_exact) {
    mtft_trainer_options o = base_opts();
    o.max_steps = 24;
    o.schedule = MTFT_LR_COSINE;
    o.balancer.method = MTFT_BALANCE_UNCERTAINTY; /* a balancer with learnt state */
    o.grad_clip = 0.5f;
    o.balancer_drives_sampler = 1;                /* sampler rate overrides are state too */
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ckpt", g_dir);
    static rec full, first, second;
    run_curve(o, 3, 0, NULL, NULL, &full);
    run_curve(o, 3, 10, NULL, ck, &first); /* interrupted after step 10 */
    /* a fresh model with another init: everything that matters comes from the checkpoint */
    run_curve(o, 99, 0, ck, NULL, &second);
    ck_assert_int_eq(full.n_steps, 24);
    ck_assert_int_eq(first.n_steps, 10);
    ck_assert_int_eq(second.n_steps, 24);
    ck_assert_int_eq(full.bad + first.bad + second.bad, 0);
    for (int i = 0; i < 10; i++) ck_assert_msg(memcmp(&full.loss[i], &first.loss[i], sizeof(float)) == 0, "step %d", i + 1);
    for (int i = 10; i < 24; i++)
        ck_assert_msg(memcmp(&full.loss[i], &second.loss[i], sizeof(float)) == 0, "step %d: %.9g vs %.9g after resume",
                      i + 1, (double)full.loss[i], (double)second.loss[i]);
    for (int i = 10; i < 24; i++)
        for (int k = 0; k < 3; k++)
            ck_assert(memcmp(&full.task_loss[i][k], &second.task_loss[i][k], sizeof(float)) == 0);
    /* the sidecar names the step and the tasks */
    char p[800];
    snprintf(p, sizeof p, "%s/trainer.json", ck);
    FILE *fj = fopen(p, "r");
    ck_assert_ptr_nonnull(fj);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fj);
    buf[n] = 0;
    fclose(fj);
    ck_assert_ptr_nonnull(strstr(buf, "\"step\": 10"));
    ck_assert_ptr_nonnull(strstr(buf, "\"name\": \"tag\""));
    /* a corrupt state is refused, naming the file */
    snprintf(p, sizeof p, "%s/state.bin", ck);
    FILE *fs = fopen(p, "r+b");
    ck_assert_ptr_nonnull(fs);
    fseek(fs, 40, SEEK_SET);
    fputc(0x5a, fs);
    fclose(fs);
    fx f;
    fx_init(&f, 3);
    mtft_trainer *tr = new_trainer(&f, &o);
    ck_assert_int_eq(mtft_trainer_load(tr, ck), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "state.bin"));
    ck_assert_int_eq(mtft_trainer_step(tr), 0);
    mtft_trainer_free(tr);
    fx_free(&f);
}
END_TEST

START_TEST(test_trainer_nonfinite_step_skipped) {
    fx f;
    fx_init(&f, 4);
    rec r;
    memset(&r, 0, sizeof r);
    mtft_trainer_options o = base_opts();
    o.max_steps = 3;
    o.train_base = 0;
    o.progress = on_progress;
    o.payload = &r;
    mtft_trainer *tr = new_trainer(&f, &o);
    /* poison the regression head: every batch with a 'reg' row has a NaN loss */
    mtft_param_group *hg = mtft_head_group(mtft_trainer_head(tr, 1));
    size_t nh = 0;
    float *hd = mtft_param_group_data(hg, &nh);
    hd[0] = NAN;
    mtft_param_group *cg = mtft_head_group(mtft_trainer_head(tr, 0));
    size_t nc = 0;
    float *cd = mtft_param_group_data(cg, &nc);
    float *before = malloc(nc * sizeof *before);
    memcpy(before, cd, nc * sizeof *before);
    ck_assert_int_eq(mtft_trainer_run(tr), MTFT_OK);
    ck_assert_int_eq(r.n_steps, 3);
    ck_assert_int_eq(r.skipped_steps, 3); /* 12 rows drawn at T = 2 always include 'reg' */
    ck_assert_int_eq(r.skipped_total, 3);
    ck_assert_int_eq(memcmp(before, cd, nc * sizeof *before), 0); /* nothing moved */
    free(before);
    mtft_trainer_free(tr);
    fx_free(&f);
}
END_TEST

START_TEST(test_trainer_gradient_level) {
    fx f;
    fx_init(&f, 5);
    mtft_trainer_options o = base_opts();
    o.balancer.method = MTFT_BALANCE_PCGRAD;
    mtft_trainer *tr = NULL;
    /* without shared trainable parameters there is nothing to balance */
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "shared_lora_rank"));
    ck_assert_ptr_null(tr);
    o.shared_lora_rank = 4;
    o.train_base = 0;
    o.max_steps = 40;
    rec r;
    memset(&r, 0, sizeof r);
    o.progress = on_progress;
    o.payload = &r;
    tr = new_trainer(&f, &o);
    ck_assert_msg(mtft_trainer_run(tr) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(r.bad, 0);
    ck_assert_int_eq(r.n_steps, 40);
    for (int k = 0; k < 3; k++) {
        const double a = mean_loss(&r, k, 0, 8), b = mean_loss(&r, k, 32, 40);
        ck_assert_msg(b < a, "task %d: loss %.4f -> %.4f under PCGrad", k, a, b);
    }
    mtft_trainer_free(tr);
    fx_free(&f);
}
END_TEST

START_TEST(test_trainer_options_errors) {
    fx f;
    fx_init(&f, 6);
    mtft_trainer *tr = NULL;
    mtft_trainer_options o = base_opts();
    o.max_len = 999;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "max_len"));
    o = base_opts();
    o.lr = -1;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "lr"));
    o = base_opts();
    o.version = 99;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_EINVAL);
    o = base_opts();
    tr = NULL;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_run(tr), MTFT_ESTATE); /* no tasks */
    ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[0], NULL), 0);
    ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[0], NULL), MTFT_EINVAL); /* twice */
    double v;
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_ACCURACY, &v, NULL), MTFT_ESTATE);
    ck_assert_int_eq(mtft_trainer_load(tr, "/nonexistent/ckpt"), MTFT_EIO);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "/nonexistent/ckpt"));
    mtft_trainer_free(tr);
    mtft_trainer_free(NULL);
    fx_free(&f);
}
END_TEST

START_TEST(test_trainer_pretrain) {
    fx f;
    fx_init(&f, 8);
    int32_t ids[2000];
    for (int i = 0; i < 2000; i++) ids[i] = 1 + (i * 7) % 23; /* a periodic stream: learnable */
    mtft_pretrain_options po = MTFT_PRETRAIN_OPTIONS_INIT;
    po.max_steps = 1;
    po.batch_size = 4;
    po.seq_len = 16;
    po.warmup_steps = 0;
    po.lr = 3e-3f;
    po.holdout = 0.2;
    double before = 0, after = 0;
    ck_assert_int_eq(mtft_pretrain(f.m, ids, 2000, &po, &before), MTFT_OK);
    po.max_steps = 80;
    ck_assert_int_eq(mtft_pretrain(f.m, ids, 2000, &po, &after), MTFT_OK);
    ck_assert_msg(isfinite(after) && after < 0.5 * before, "held-out loss %.4f -> %.4f", before, after);
    ids[5] = 100000;
    ck_assert_int_eq(mtft_pretrain(f.m, ids, 2000, &po, NULL), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "token 5"));
    fx_free(&f);
}
END_TEST

/* ---- optimizer kinds, gradient accumulation, SAM --------------------------- */
typedef struct lrec {
    int n;
    float loss[64];
    int rows[64];
} lrec;

static int on_loss(const mtft_progress *p, void *payload) {
    lrec *r = payload;
    if (p->event == MTFT_PROGRESS_STEP && r->n < 64) {
        int rows = 0;
        for (int k = 0; k < p->n_tasks; k++) rows += p->task_rows[k];
        r->rows[r->n] = rows;
        r->loss[r->n++] = p->loss;
    }
    return 0;
}

/* Train a fresh model (init seed 3) with o on tasks [0, n_tasks); the losses
 * go to *r and a copy of the base weights after training to *w (freed by the
 * caller; NULL: not kept). */
static void train_opts(mtft_trainer_options o, int n_tasks, lrec *r, float **w, size_t *nw) {
    fx f;
    fx_init(&f, 3);
    memset(r, 0, sizeof *r);
    o.progress = on_loss;
    o.payload = r;
    mtft_trainer *tr = NULL;
    ck_assert_msg(mtft_trainer_new(&tr, f.m, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    for (int k = 0; k < n_tasks; k++) ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[k], NULL), k);
    ck_assert_msg(mtft_trainer_run(tr) == MTFT_OK, "%s", mtft_error_last()->message);
    if (w) {
        size_t n = 0;
        const float *d = mtft_param_group_data(mtft_model_base_group(f.m), &n);
        ck_assert_ptr_nonnull(d);
        *w = malloc(n * sizeof **w);
        ck_assert_ptr_nonnull(*w);
        memcpy(*w, d, n * sizeof **w);
        *nw = n;
    }
    mtft_trainer_free(tr);
    fx_free(&f);
}

static double lmean(const lrec *r, int a, int b) {
    double s = 0;
    for (int i = a; i < b; i++) s += r->loss[i];
    return s / (b - a);
}

START_TEST(test_trainer_optimizer_options_train) {
    static lrec r;
    for (int v = 0; v < 3; v++) {
        mtft_trainer_options o = base_opts();
        o.max_steps = 30;
        if (v == 0) {
            o.optimizer = MTFT_OPTIM_SGD;
            o.momentum = 0.9f;
            o.lr = 0.05f;
        } else if (v == 1) {
            o.grad_accum_steps = 2;
            o.max_steps = 20;
        } else {
            o.sam_rho = 0.05f;
        }
        train_opts(o, 3, &r, NULL, NULL);
        ck_assert_int_eq(r.n, (int)o.max_steps);
        ck_assert_int_eq(r.rows[0], o.batch_size * o.grad_accum_steps);
        const double a = lmean(&r, 0, 5), b = lmean(&r, r.n - 5, r.n);
        ck_assert_msg(isfinite(a) && isfinite(b) && b < 0.85 * a, "variant %d: loss %.4f -> %.4f", v, a, b);
    }
}
END_TEST

START_TEST(test_trainer_grad_accum_equals_big_batch) {
    /* one task, equal weights, no dropout: 3 micro-batches of 4 rows == one of 12 */
    mtft_trainer_options o = base_opts();
    o.optimizer = MTFT_OPTIM_SGD; /* linear in the gradient: differences stay at rounding level */
    o.lr = 0.05f;
    o.momentum = 0.5f;
    o.max_steps = 4;
    o.warmup_steps = 0;
    o.sampler.start.strategy = MTFT_SAMPLER_PROPORTIONAL;
    static lrec big, acc;
    float *wb = NULL, *wa = NULL;
    size_t nb = 0, na = 0;
    train_opts(o, 1, &big, &wb, &nb);
    o.batch_size = 4;
    o.grad_accum_steps = 3;
    train_opts(o, 1, &acc, &wa, &na);
    ck_assert_int_eq(big.n, 4);
    ck_assert_int_eq(acc.n, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(acc.rows[i], 12);
        ck_assert_msg(fabs((double)big.loss[i] - (double)acc.loss[i]) <= 1e-5 * (1.0 + fabs((double)big.loss[i])),
                      "step %d: %.9g vs %.9g", i + 1, (double)big.loss[i], (double)acc.loss[i]);
    }
    ck_assert_uint_eq(nb, na);
    double dmax = 0, moved = 0;
    float *w0 = NULL;
    size_t n0 = 0;
    {
        fx f;
        fx_init(&f, 3);
        const float *d = mtft_param_group_data(mtft_model_base_group(f.m), &n0);
        w0 = malloc(n0 * sizeof *w0);
        ck_assert_ptr_nonnull(w0);
        memcpy(w0, d, n0 * sizeof *w0);
        fx_free(&f);
    }
    ck_assert_uint_eq(n0, nb);
    for (size_t j = 0; j < nb; j++) {
        dmax = fmax(dmax, fabs((double)wb[j] - (double)wa[j]));
        moved = fmax(moved, fabs((double)wb[j] - (double)w0[j]));
    }
    ck_assert_msg(dmax <= 1e-5, "weights differ by %g", dmax);
    ck_assert_msg(moved > 1e-4, "the weights did not move (%g)", moved);
    free(w0);
    free(wb);
    free(wa);
}
END_TEST

/* One plain SGD step (no momentum, decay, warmup or clipping): the update
 * is -lr times the gradient, so updates can be compared and added. */
static mtft_trainer_options one_sgd_step_opts(void) {
    mtft_trainer_options o = base_opts();
    o.optimizer = MTFT_OPTIM_SGD;
    o.momentum = 0.0f;
    o.weight_decay = 0.0f;
    o.lr = 0.05f;
    o.max_steps = 1;
    o.warmup_steps = 0;
    o.grad_clip = 0.0f;
    return o;
}

START_TEST(test_trainer_sam_update_and_restore) {
    mtft_trainer_options o = one_sgd_step_opts();
    static lrec r;
    float *w_plain = NULL, *w_sam = NULL, *w_tiny = NULL;
    size_t n1 = 0, n2 = 0, n3 = 0;
    train_opts(o, 3, &r, &w_plain, &n1);
    const float plain_loss = r.loss[0];
    o.sam_rho = 0.1f;
    train_opts(o, 3, &r, &w_sam, &n2);
    /* the first-pass loss is the same: the batch and the weights are */
    ck_assert(memcmp(&plain_loss, &r.loss[0], sizeof plain_loss) == 0);
    ck_assert_uint_eq(n1, n2);
    double d = 0;
    for (size_t j = 0; j < n1; j++) d = fmax(d, fabs((double)w_plain[j] - (double)w_sam[j]));
    ck_assert_msg(d > 1e-6, "SAM did not change the update (max diff %g)", d);
    /* an lr far below rounding: the step leaves the weights as they were, so
     * after SAM's perturb / restore they must be bit-identical to the init */
    o.lr = 1e-30f;
    o.max_steps = 3;
    train_opts(o, 3, &r, &w_tiny, &n3);
    fx f;
    fx_init(&f, 3);
    size_t n0 = 0;
    const float *w0 = mtft_param_group_data(mtft_model_base_group(f.m), &n0);
    ck_assert_uint_eq(n0, n3);
    /* (weights that are 0, such as biases, do take the 1e-30 step) */
    size_t n_cmp = 0, n_diff = 0;
    for (size_t j = 0; j < n0; j++) {
        if (fabsf(w0[j]) < 1e-6f) continue;
        n_cmp++;
        n_diff += memcmp(&w0[j], &w_tiny[j], sizeof *w0) != 0;
    }
    ck_assert_uint_gt(n_cmp, n0 / 2);
    ck_assert_msg(n_diff == 0, "%zu of %zu weights not restored bit for bit", n_diff, n_cmp);
    fx_free(&f);
    /* restrictions are errors */
    mtft_trainer *tr = NULL;
    fx_init(&f, 3);
    o.grad_accum_steps = 2;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "grad_accum_steps"));
    o.grad_accum_steps = 0;
    o.sam_rho = 0.0f;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_ERANGE);
    o.grad_accum_steps = 1;
    o.optimizer = 7;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_ERANGE);
    ck_assert_ptr_null(tr);
    fx_free(&f);
    free(w_plain);
    free(w_sam);
    free(w_tiny);
}
END_TEST

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t j = 0; j < n; j++) d = fmax(d, fabs((double)a[j] - (double)b[j]));
    return d;
}

/* Per-task SAM (Phan et al. 2022) with a loss-level balancer: the update is
 * sum_k w_k grad L_k(w + rho g_k/||g_k||). Checked against whole-batch SAM,
 * which is already tested: (1) rho -> 0 gives the plain step; (2) with one
 * task the two are the same method; (3) with static weights that are
 * one-hot on task k, whole-batch SAM perturbs along task k's gradient alone,
 * so one SGD step of per-task SAM with weights (1, 1, 1) must move the base
 * by the sum of the three one-hot whole-batch SAM steps (SGD without
 * momentum is linear in the gradient); (4) and it differs from whole-batch
 * SAM with weights (1, 1, 1); (5) the perturbations are undone bit for
 * bit. */
START_TEST(test_trainer_task_sam) {
    mtft_trainer_options o = one_sgd_step_opts();
    static lrec r;
    float *w_plain = NULL, *w_t = NULL;
    size_t n = 0, n2 = 0;
    /* (1) */
    train_opts(o, 3, &r, &w_plain, &n);
    const float plain_loss = r.loss[0];
    o.sam_rho = 1e-30f;
    o.sam_per_task = 1;
    train_opts(o, 3, &r, &w_t, &n2);
    ck_assert_uint_eq(n, n2);
    ck_assert_msg(fabs((double)r.loss[0] - (double)plain_loss) <= 1e-6, "loss %.9g vs %.9g", (double)r.loss[0],
                  (double)plain_loss);
    const double tol = 2e-6;
    double d = max_abs_diff(w_plain, w_t, n);
    ck_assert_msg(d <= tol, "per-task SAM with rho 1e-30 differs from the plain step by %g", d);
    free(w_t);
    /* (2) one task */
    float *w_a = NULL, *w_b = NULL;
    o.sam_rho = 0.1f;
    o.sam_per_task = 0;
    train_opts(o, 1, &r, &w_a, &n2);
    o.sam_per_task = 1;
    train_opts(o, 1, &r, &w_b, &n2);
    d = max_abs_diff(w_a, w_b, n);
    ck_assert_msg(d <= tol, "one task: per-task SAM differs from SAM by %g", d);
    ck_assert_msg(max_abs_diff(w_a, w_plain, n) > 100 * tol, "SAM did not change the one-task step");
    free(w_a);
    free(w_b);
    /* (3) linearity over one-hot weights */
    float sw[3] = {1.0f, 1.0f, 1.0f};
    o.balancer.method = MTFT_BALANCE_STATIC;
    o.balancer.static_weights = sw;
    float *w_sum = calloc(n, sizeof *w_sum), *w_hot = NULL, *w_joint = NULL, *w_whole = NULL;
    ck_assert_ptr_nonnull(w_sum);
    fx f;
    fx_init(&f, 3);
    size_t n0 = 0;
    const float *w0 = mtft_param_group_data(mtft_model_base_group(f.m), &n0);
    ck_assert_uint_eq(n0, n);
    for (int k = 0; k < 3; k++) {
        for (int j = 0; j < 3; j++) sw[j] = j == k ? 1.0f : 0.0f;
        o.sam_per_task = 0;
        train_opts(o, 3, &r, &w_hot, &n2);
        for (size_t j = 0; j < n; j++) w_sum[j] += w_hot[j] - w0[j];
        free(w_hot);
    }
    for (int j = 0; j < 3; j++) sw[j] = 1.0f;
    o.sam_per_task = 1;
    train_opts(o, 3, &r, &w_joint, &n2);
    double dmax = 0, moved = 0;
    for (size_t j = 0; j < n; j++) {
        dmax = fmax(dmax, fabs((double)(w_joint[j] - w0[j]) - (double)w_sum[j]));
        moved = fmax(moved, fabs((double)w_sum[j]));
    }
    ck_assert_msg(moved > 1e-3, "the weights did not move (%g)", moved);
    ck_assert_msg(dmax <= 1e-5 * (1.0 + moved) + tol, "per-task SAM update differs from the sum of one-hot SAM "
                  "updates by %g (update size %g)", dmax, moved);
    /* (4) */
    o.sam_per_task = 0;
    train_opts(o, 3, &r, &w_whole, &n2);
    d = max_abs_diff(w_whole, w_joint, n);
    ck_assert_msg(d > 100 * dmax && d > 1e-5, "per-task SAM is not different from whole-batch SAM (%g vs %g)", d,
                  dmax);
    free(w_sum);
    free(w_joint);
    free(w_whole);
    /* (5) an lr far below rounding: weights restored bit for bit */
    o.sam_per_task = 1;
    o.balancer.method = MTFT_BALANCE_EQUAL;
    o.balancer.static_weights = NULL;
    o.lr = 1e-30f;
    o.max_steps = 3;
    float *w_tiny = NULL;
    train_opts(o, 3, &r, &w_tiny, &n2);
    size_t n_cmp = 0, n_diff = 0;
    for (size_t j = 0; j < n; j++) {
        if (fabsf(w0[j]) < 1e-6f) continue;
        n_cmp++;
        n_diff += memcmp(&w0[j], &w_tiny[j], sizeof *w0) != 0;
    }
    ck_assert_uint_gt(n_cmp, n / 2);
    ck_assert_msg(n_diff == 0, "%zu of %zu weights not restored bit for bit", n_diff, n_cmp);
    free(w_tiny);
    free(w_plain);
    /* restrictions */
    mtft_trainer *tr = NULL;
    o = base_opts();
    o.sam_per_task = 1;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_EINVAL); /* no rho */
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "sam_rho"));
    o.sam_rho = 0.05f;
    o.sam_per_task = 2;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_ERANGE);
    o.sam_per_task = 1;
    o.grad_accum_steps = 2;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_EINVAL);
    o.grad_accum_steps = 1;
    o.sam_per_task = 0;
    o.balancer.method = MTFT_BALANCE_PCGRAD;
    o.shared_lora_rank = 4;
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "sam_per_task"));
    ck_assert_ptr_null(tr);
    fx_free(&f);
}
END_TEST

/* Train one step with o on tasks [0, n_tasks) and write task k's predicted
 * values (class probabilities / value / per-token probabilities) for a fixed
 * input to out (n floats): a view of task k's own head and LoRA after the
 * step. */
static void step_and_predict(mtft_trainer_options o, int n_tasks, int k, float *out, int n) {
    fx f;
    fx_init(&f, 3);
    mtft_trainer *tr = NULL;
    ck_assert_msg(mtft_trainer_new(&tr, f.m, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    for (int j = 0; j < n_tasks; j++) ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[j], NULL), j);
    ck_assert_msg(mtft_trainer_run(tr) == MTFT_OK, "%s", mtft_error_last()->message);
    const int32_t ids[4] = {5, 9, 13, 17};
    int32_t pred[4];
    float vals[16];
    ck_assert_int_eq(mtft_trainer_predict(tr, k, ids, 4, pred, vals), MTFT_OK);
    memcpy(out, vals, (size_t)n * sizeof *out);
    mtft_trainer_free(tr);
    fx_free(&f);
}

/* Per-task SAM on each task's own parameters (head, LoRA): task k's own
 * update is w_k grad L_k(w + e_k) at its own perturbation, which is exactly
 * whole-batch SAM's update of them when the weights are one-hot on k (then
 * SAM perturbs along task k's gradient alone, own parameters included). */
START_TEST(test_trainer_task_sam_own_params) {
    mtft_trainer_options o = one_sgd_step_opts();
    o.sam_rho = 0.1f;
    o.lr = 0.5f; /* large enough that the heads' predictions move visibly */
    float sw[3];
    o.balancer.method = MTFT_BALANCE_STATIC;
    o.balancer.static_weights = sw;
    const int nv[3] = {2, 1, 8}; /* cls: 2 probabilities, reg: 1 value, tag: 4 tokens x 2 */
    /* base frozen (no shared parameter): task k's prediction depends on its
     * own parameters only */
    o.train_base = 0;
    for (int k = 0; k < 3; k++) {
        float joint[16], hot[16], plain[16];
        for (int j = 0; j < 3; j++) sw[j] = 1.0f;
        o.sam_per_task = 1;
        step_and_predict(o, 3, k, joint, nv[k]);
        for (int j = 0; j < 3; j++) sw[j] = j == k ? 1.0f : 0.0f;
        o.sam_per_task = 0;
        step_and_predict(o, 3, k, hot, nv[k]);
        for (int j = 0; j < 3; j++) sw[j] = 1.0f;
        step_and_predict(o, 3, k, plain, nv[k]);
        double d_hot = 0, d_plain = 0;
        for (int i = 0; i < nv[k]; i++) {
            d_hot = fmax(d_hot, fabs((double)joint[i] - (double)hot[i]));
            d_plain = fmax(d_plain, fabs((double)joint[i] - (double)plain[i]));
        }
        ck_assert_msg(d_hot <= 1e-5, "task %d: per-task SAM's own update differs from one-hot SAM by %g", k, d_hot);
        ck_assert_msg(d_plain > 10 * d_hot && d_plain > 1e-6,
                      "task %d: per-task SAM's own update equals whole-batch SAM's (%g vs %g)", k, d_plain, d_hot);
    }
}
END_TEST

/* Per-task SAM with gradient-level balancers (the paper pairs it with
 * PCGrad, MGDA, CAGrad...): rho -> 0 reproduces the plain gradient-level
 * run's loss curve, and with rho > 0 training still lowers the loss. */
START_TEST(test_trainer_task_sam_gradient_level) {
    static const mtft_balance_method methods[2] = {MTFT_BALANCE_PCGRAD, MTFT_BALANCE_MGDA_UB};
    for (int mi = 0; mi < 2; mi++) {
        mtft_trainer_options o = base_opts();
        o.train_base = 0;
        o.shared_lora_rank = 4;
        o.balancer.method = methods[mi];
        o.max_steps = 6;
        static lrec plain, tiny, sam;
        train_opts(o, 3, &plain, NULL, NULL);
        o.sam_per_task = 1;
        o.sam_rho = 1e-30f;
        train_opts(o, 3, &tiny, NULL, NULL);
        ck_assert_int_eq(plain.n, 6);
        ck_assert_int_eq(tiny.n, 6);
        for (int i = 0; i < 6; i++)
            ck_assert_msg(fabs((double)plain.loss[i] - (double)tiny.loss[i]) <= 1e-5 * (1.0 + fabs((double)plain.loss[i])),
                          "%s step %d: %.9g vs %.9g", mtft_balance_method_name(methods[mi]), i + 1,
                          (double)plain.loss[i], (double)tiny.loss[i]);
        if (mi > 0) continue; /* training with rho > 0: once is enough */
        o.sam_rho = 0.05f;
        o.max_steps = 30;
        train_opts(o, 3, &sam, NULL, NULL);
        ck_assert_int_eq(sam.n, 30);
        const double a = lmean(&sam, 0, 5), b = lmean(&sam, sam.n - 5, sam.n);
        ck_assert_msg(isfinite(a) && isfinite(b) && b < 0.85 * a, "%s: loss %.4f -> %.4f",
                      mtft_balance_method_name(methods[mi]), a, b);
    }
}
END_TEST

START_TEST(test_trainer_sgd_resume_bit_exact) {
    /* the SGD momentum buffers are checkpointed: a resumed SGD + SAM run
     * (whole-batch, then per-task SAM) reproduces the uninterrupted loss
     * curve bit for bit */
    for (int pt = 0; pt < 2; pt++) {
    mtft_trainer_options o = base_opts();
    o.max_steps = 12;
    o.optimizer = MTFT_OPTIM_SGD;
    o.momentum = 0.9f;
    o.lr = 0.05f;
    o.sam_rho = 0.05f;
    o.sam_per_task = pt;
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ckpt_sgd", g_dir);
    static rec full, first, second;
    run_curve(o, 3, 0, NULL, NULL, &full);
    run_curve(o, 3, 5, NULL, ck, &first);
    run_curve(o, 99, 0, ck, NULL, &second);
    ck_assert_int_eq(full.n_steps, 12);
    ck_assert_int_eq(second.n_steps, 12);
    ck_assert_int_eq(full.bad + first.bad + second.bad, 0);
    for (int i = 5; i < 12; i++)
        ck_assert_msg(memcmp(&full.loss[i], &second.loss[i], sizeof(float)) == 0, "step %d: %.9g vs %.9g after resume",
                      i + 1, (double)full.loss[i], (double)second.loss[i]);
    mtft_test_rm_rf(ck);
    }
}
END_TEST

START_TEST(test_trainer_generation_exact_match) {
    /* a copy task: "<w1> <w2> =" -> "<w1> <w2>" (+ eos); greedy decodes with
     * the task's LoRA must reproduce most targets after training */
    const char *splits[2] = {"train", "dev"};
    uint64_t s = 777;
    for (int sp = 0; sp < 2; sp++) {
        char p[700];
        snprintf(p, sizeof p, "%s/copy_%s.jsonl", g_dir, splits[sp]);
        FILE *fo = fopen(p, "w");
        ck_assert_ptr_nonnull(fo);
        for (int i = 0; i < (sp ? 40 : 400); i++) {
            int w[2];
            for (int j = 0; j < 2; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                w[j] = (int)((s >> 33) % N_WORDS);
            }
            fprintf(fo, "{\"input\": \"%s %s\", \"target\": \" %s %s\"}\n", k_words[w[0]], k_words[w[1]],
                    k_words[w[0]], k_words[w[1]]);
        }
        fclose(fo);
    }
    fx f;
    fx_init(&f, 3);
    char tp[700], dp[700];
    snprintf(tp, sizeof tp, "%s/copy_train.jsonl", g_dir);
    snprintf(dp, sizeof dp, "%s/copy_dev.jsonl", g_dir);
    mtft_task_options to = MTFT_TASK_OPTIONS_INIT;
    to.name = "copy";
    to.type = MTFT_TASK_GENERATION;
    to.train_file = tp;
    to.dev_file = dp;
    to.prompt_template = "{input} =";
    mtft_task *task = NULL;
    mtft_data_options dopt = MTFT_DATA_OPTIONS_INIT;
    dopt.log_progress = 0;
    ck_assert_msg(mtft_task_new(&task, &to) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_msg(mtft_task_load(task, f.tok, &dopt) == MTFT_OK, "%s", mtft_error_last()->message);
    const int32_t eos = mtft_tokenizer_token_to_id(f.tok, "<|endoftext|>");
    ck_assert_int_ge(eos, 0);
    mtft_trainer_options o = base_opts();
    o.max_steps = 250;
    o.batch_size = 16;
    o.lr = 1e-2f;
    o.warmup_steps = 10;
    o.pad_id = eos;
    mtft_trainer *tr = NULL;
    ck_assert_msg(mtft_trainer_new(&tr, f.m, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_trainer_add_task(tr, task, NULL), 0);
    ck_assert_int_eq(mtft_trainer_set_tokenizer(tr, f.tok, eos), MTFT_OK);
    double em0 = -1, em = -1, chrf0 = -1, chrf = -1;
    ck_assert_int_eq(mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 0), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_EXACT_MATCH, &em0, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_CHRF, &chrf0, NULL), MTFT_OK);
    ck_assert_msg(mtft_trainer_run(tr) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 0), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_EXACT_MATCH, &em, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_CHRF, &chrf, NULL), MTFT_OK);
    ck_assert_msg(em0 < 0.2 && em >= 0.8, "exact match %.3f -> %.3f (chrF %.1f -> %.1f)", em0, em, chrf0, chrf);
    ck_assert_msg(chrf > chrf0 && chrf >= 80.0, "chrF %.1f -> %.1f", chrf0, chrf);
    mtft_trainer_free(tr);
    mtft_task_free(task);
    fx_free(&f);
}
END_TEST

typedef struct best_rec {
    double best;
    int n_evals;
} best_rec;

static int on_best(const mtft_progress *p, void *payload) {
    best_rec *b = payload;
    if (p->event == MTFT_PROGRESS_EVAL) {
        b->best = p->best_score;
        b->n_evals++;
    }
    return 0;
}

START_TEST(test_trainer_best_checkpoint_saved) {
    /* ckpt_dir without periodic saves: the best dev weights land in ckpt_dir/best */
    mtft_trainer_options o = base_opts();
    o.max_steps = 24;
    o.eval_every = 8;
    o.eval_max_examples = 20;
    char ck[700], p[800];
    snprintf(ck, sizeof ck, "%s/ckpt_best", g_dir);
    o.ckpt_dir = ck;
    best_rec b = {-1e300, 0};
    o.progress = on_best;
    o.payload = &b;
    fx f;
    fx_init(&f, 3);
    mtft_trainer *tr = new_trainer(&f, &o);
    ck_assert_msg(mtft_trainer_run(tr) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_ge(b.n_evals, 3);
    mtft_trainer_free(tr);
    fx_free(&f);
    snprintf(p, sizeof p, "%s/best/trainer.json", ck);
    ck_assert_msg(access(p, R_OK) == 0, "no %s", p);
    /* a fresh trainer loading it scores the best dev score */
    fx_init(&f, 99);
    o.progress = NULL;
    o.payload = NULL;
    tr = new_trainer(&f, &o);
    snprintf(p, sizeof p, "%s/best", ck);
    ck_assert_msg(mtft_trainer_load(tr, p) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 0), MTFT_OK);
    double s = 0;
    ck_assert_int_eq(mtft_trainer_eval_score(tr, MTFT_SPLIT_DEV, &s), MTFT_OK);
    ck_assert_msg(fabs(s - b.best) <= 1e-9 * (1 + fabs(b.best)), "best %.12g, reloaded %.12g", b.best, s);
    ck_assert_int_gt(mtft_trainer_step(tr), 0);
    mtft_trainer_free(tr);
    fx_free(&f);
    mtft_test_rm_rf(ck);
}
END_TEST

/* ---- metric names and the selection metric -------------------------------------- */

/* Write n records per split of the extra task kinds (multi-label, BIO
 * tagging, generation) under g_dir as <stem>_{train,dev}.jsonl. */
static void write_extra(const char *stem, int kind) {
    const char *splits[2] = {"train", "dev"};
    uint64_t s = 4242u + (uint64_t)kind;
    for (int sp = 0; sp < 2; sp++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s_%s.jsonl", g_dir, stem, splits[sp]);
        FILE *fo = fopen(p, "w");
        ck_assert_ptr_nonnull(fo);
        for (int i = 0; i < (sp ? 24 : 48); i++) {
            int w[4];
            for (int j = 0; j < 4; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                w[j] = (int)((s >> 33) % N_WORDS);
            }
            if (kind == 0) /* multi-label: a set of 0..2 labels */
                fprintf(fo, "{\"text\": \"%s %s\", \"label\": [%s%s%s]}\n", k_words[w[0]], k_words[w[1]],
                        w[0] % 2 ? "\"odd\"" : "", w[0] % 2 && w[1] % 3 == 0 ? ", " : "",
                        w[1] % 3 == 0 ? "\"three\"" : "");
            else if (kind == 1) /* BIO tagging: an entity of one or two words starts at an even word */
                fprintf(fo, "{\"tokens\": [\"%s\", \"%s\", \"%s\", \"%s\"], \"tags\": [\"%s\", \"%s\", \"O\", \"O\"]}\n",
                        k_words[w[0]], k_words[w[1]], k_words[w[2]], k_words[w[3]], w[0] % 2 ? "O" : "B-E",
                        w[0] % 2 ? "O" : (w[1] % 2 ? "O" : "I-E"));
            else /* generation: copy two words */
                fprintf(fo, "{\"input\": \"%s %s\", \"target\": \" %s %s\"}\n", k_words[w[0]], k_words[w[1]],
                        k_words[w[0]], k_words[w[1]]);
        }
        fclose(fo);
    }
}

static mtft_task *extra_task(fx *f, const char *name, const char *stem, mtft_task_type type, const char *select) {
    char tp[700], dp[700];
    snprintf(tp, sizeof tp, "%s/%s_train.jsonl", g_dir, stem);
    snprintf(dp, sizeof dp, "%s/%s_dev.jsonl", g_dir, stem);
    mtft_task_options to = MTFT_TASK_OPTIONS_INIT;
    to.name = name;
    to.type = type;
    to.train_file = tp;
    to.dev_file = dp;
    to.select_metric = select;
    if (type == MTFT_TASK_GENERATION) to.prompt_template = "{input} =";
    mtft_task *task = NULL;
    mtft_data_options dopt = MTFT_DATA_OPTIONS_INIT;
    dopt.log_progress = 0;
    ck_assert_msg(mtft_task_new(&task, &to) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_msg(mtft_task_load(task, f->tok, &dopt) == MTFT_OK, "%s", mtft_error_last()->message);
    return task;
}

/* Every name the task table (src/data) accepts for a type is an mtft_metric
 * name that a trainer evaluation of such a task reports, and every metric
 * the evaluation reports is in the table: the two cannot drift apart. */
START_TEST(test_trainer_metric_names_agree) {
    fx f;
    fx_init(&f, 5);
    write_extra("ml", 0);
    write_extra("bio", 1);
    write_extra("gen", 2);
    mtft_task *extra[3] = {extra_task(&f, "ml", "ml", MTFT_TASK_MULTILABEL, NULL),
                           extra_task(&f, "bio", "bio", MTFT_TASK_TAGGING, NULL),
                           extra_task(&f, "gen", "gen", MTFT_TASK_GENERATION, NULL)};
    ck_assert_int_ge(mtft_task_label_id(extra[1], "B-E"), 0); /* a BIO tag set: span_f1 is reported */
    ck_assert_int_ge(mtft_task_label_id(extra[1], "I-E"), 0);
    const int32_t eos = mtft_tokenizer_token_to_id(f.tok, "<|endoftext|>");
    const struct {
        mtft_task_type ty;
        mtft_task *task;
    } cases[5] = {{MTFT_TASK_CLASSIFICATION, f.tasks[0]},
                  {MTFT_TASK_MULTILABEL, extra[0]},
                  {MTFT_TASK_REGRESSION, f.tasks[1]},
                  {MTFT_TASK_TAGGING, extra[1]},
                  {MTFT_TASK_GENERATION, extra[2]}};
    for (int c = 0; c < 5; c++) {
        const mtft_task_type ty = cases[c].ty;
        ck_assert_int_eq(mtft_task_type_of(cases[c].task), ty);
        mtft_trainer_options o = base_opts();
        o.pad_id = eos;
        mtft_trainer *tr = NULL;
        ck_assert_msg(mtft_trainer_new(&tr, f.m, &o) == MTFT_OK, "%s", mtft_error_last()->message);
        ck_assert_int_eq(mtft_trainer_add_task(tr, cases[c].task, NULL), 0);
        if (ty == MTFT_TASK_GENERATION) ck_assert_int_eq(mtft_trainer_set_tokenizer(tr, f.tok, eos), MTFT_OK);
        ck_assert_msg(mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 8) == MTFT_OK, "%s", mtft_error_last()->message);
        int n_names = 0;
        for (const char *nm; (nm = mtft_task_type_metric(ty, n_names)) != NULL; n_names++) {
            mtft_metric mi;
            ck_assert_msg(mtft_metric_from_name(nm, &mi) == MTFT_OK, "%s: '%s' is no mtft_metric name",
                          mtft_task_type_name(ty), nm);
            ck_assert_str_eq(mtft_metric_name(mi), nm);
            ck_assert_str_eq(mtft_task_metric_canonical(ty, nm), nm);
            double v = NAN;
            ck_assert_msg(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, mi, &v, NULL) == MTFT_OK,
                          "%s: the table accepts '%s' but the evaluation did not report it: %s",
                          mtft_task_type_name(ty), nm, mtft_error_last()->message);
        }
        ck_assert_int_ge(n_names, 3);
        int n_reported = 0;
        for (int m = 0; m < MTFT_METRIC_COUNT_; m++) {
            double v;
            if (mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, (mtft_metric)m, &v, NULL) != MTFT_OK) continue;
            n_reported++;
            ck_assert_msg(mtft_task_metric_valid(ty, mtft_metric_name((mtft_metric)m)),
                          "%s: the evaluation reports '%s' but the table does not accept it", mtft_task_type_name(ty),
                          mtft_metric_name((mtft_metric)m));
        }
        ck_assert_int_eq(n_reported, n_names);
        /* the type default is in the table too */
        ck_assert(mtft_task_metric_valid(ty, mtft_metric_name(mtft_trainer_primary_metric(tr, 0))));
        mtft_trainer_free(tr);
    }
    for (int i = 0; i < 3; i++) mtft_task_free(extra[i]);
    fx_free(&f);
}
END_TEST

typedef struct sel_rec {
    mtft_trainer *tr;
    int n_evals, bad;
    double best;
} sel_rec;

/* At each evaluation: the score is -rmse of that evaluation, the best score
 * the best -rmse so far. */
static int on_select(const mtft_progress *p, void *payload) {
    sel_rec *r = payload;
    if (p->event != MTFT_PROGRESS_EVAL) return 0;
    double rmse = NAN;
    if (mtft_trainer_eval_value(r->tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_RMSE, &rmse, NULL) != MTFT_OK) r->bad = 1;
    if (!(p->score == -rmse)) r->bad = 2;
    if (r->n_evals == 0 || -rmse > r->best) r->best = -rmse;
    if (!(p->best_score == r->best)) r->bad = 3;
    r->n_evals++;
    return 0;
}

START_TEST(test_trainer_select_metric) {
    fx f;
    fx_init(&f, 8);
    /* regression, select_metric rmse: lower is better, so the score is -rmse */
    mtft_task *reg = extra_task(&f, "reg_rmse", "reg", MTFT_TASK_REGRESSION, "rmse");
    ck_assert_str_eq(mtft_task_select_metric(reg), "rmse");
    mtft_trainer_options o = base_opts();
    o.max_steps = 12;
    o.eval_every = 4;
    o.print_every = 0;
    sel_rec r;
    memset(&r, 0, sizeof r);
    o.progress = on_select;
    o.payload = &r;
    ck_assert_msg(mtft_trainer_new(&r.tr, f.m, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_trainer_add_task(r.tr, reg, NULL), 0);
    ck_assert_int_eq(mtft_trainer_primary_metric(r.tr, 0), MTFT_METRIC_RMSE);
    ck_assert_int_eq(mtft_trainer_evaluate(r.tr, MTFT_SPLIT_DEV, 0), MTFT_OK);
    double score = 0, rmse = 0, pearson = 0;
    ck_assert_int_eq(mtft_trainer_eval_score(r.tr, MTFT_SPLIT_DEV, &score), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(r.tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_RMSE, &rmse, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(r.tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_PEARSON, &pearson, NULL), MTFT_OK);
    ck_assert_msg(rmse > 0 && score == -rmse, "score %.17g, rmse %.17g", score, rmse);
    ck_assert_msg(score != pearson, "score %.17g equals pearson", score);
    ck_assert_msg(mtft_trainer_run(r.tr) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_ge(r.n_evals, 3);
    ck_assert_msg(r.bad == 0, "selection did not follow -rmse (check %d)", r.bad);
    mtft_trainer_free(r.tr);
    /* the same task without select_metric selects on pearson, as before */
    mtft_trainer *tr = NULL;
    o = base_opts();
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_add_task(tr, f.tasks[1], NULL), 0);
    ck_assert_int_eq(mtft_trainer_primary_metric(tr, 0), MTFT_METRIC_PEARSON);
    ck_assert_int_eq(mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 0), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_score(tr, MTFT_SPLIT_DEV, &score), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_eval_value(tr, 0, MTFT_SPLIT_DEV, MTFT_METRIC_PEARSON, &pearson, NULL), MTFT_OK);
    ck_assert_msg(score == (isfinite(pearson) ? pearson : 0.0), "score %.17g, pearson %.17g", score, pearson);
    mtft_trainer_free(tr);
    mtft_task_free(reg);
    /* an alias selects its canonical metric */
    mtft_task *cls = extra_task(&f, "cls_f1", "cls", MTFT_TASK_CLASSIFICATION, "f1_macro");
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_add_task(tr, cls, NULL), 0);
    ck_assert_int_eq(mtft_trainer_primary_metric(tr, 0), MTFT_METRIC_MACRO_F1);
    mtft_trainer_free(tr);
    mtft_task_free(cls);
    /* invalid choices are errors naming them */
    mtft_task_options to = MTFT_TASK_OPTIONS_INIT;
    to.name = "r";
    to.type = MTFT_TASK_REGRESSION;
    to.train_file = "x.jsonl";
    to.select_metric = "accuracy";
    mtft_task *bad = NULL;
    ck_assert_int_eq(mtft_task_new(&bad, &to), MTFT_ENOTFOUND);
    ck_assert_ptr_null(bad);
    ck_assert_msg(strstr(mtft_error_last()->message, "select_metric 'accuracy' is not a regression metric") &&
                      strstr(mtft_error_last()->message, "pearson, spearman, rmse, mae"),
                  "%s", mtft_error_last()->message);
    /* span_f1 on a tag set that is not BIO (O/X) is never reported: refused at add_task */
    mtft_task *tag = extra_task(&f, "tag_span", "tag", MTFT_TASK_TAGGING, "span_f1");
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_add_task(tr, tag, NULL), MTFT_EINVAL);
    ck_assert_msg(strstr(mtft_error_last()->message, "select_metric span_f1 needs BIO/IOBES tags"), "%s",
                  mtft_error_last()->message);
    ck_assert_int_eq(mtft_trainer_n_tasks(tr), 0);
    mtft_trainer_free(tr);
    mtft_task_free(tag);
    /* exact_match needs greedy decodes, hence the tokenizer */
    write_extra("gen", 2);
    mtft_task *gen = extra_task(&f, "gen_em", "gen", MTFT_TASK_GENERATION, "exact_match");
    ck_assert_int_eq(mtft_trainer_new(&tr, f.m, &o), MTFT_OK);
    ck_assert_int_eq(mtft_trainer_add_task(tr, gen, NULL), 0);
    ck_assert_int_eq(mtft_trainer_primary_metric(tr, 0), MTFT_METRIC_EXACT_MATCH);
    ck_assert_int_eq(mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 4), MTFT_ESTATE);
    ck_assert_msg(strstr(mtft_error_last()->message, "mtft_trainer_set_tokenizer"), "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_trainer_run(tr), MTFT_ESTATE);
    mtft_trainer_free(tr);
    mtft_task_free(gen);
    fx_free(&f);
}
END_TEST

static Suite *mtft_test_trainer_suite(void) {
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_trainer_learns_and_logs);
    tcase_add_test(tc, test_trainer_callback_stops);
    tcase_add_test(tc, test_trainer_resume_bit_exact);
    tcase_add_test(tc, test_trainer_nonfinite_step_skipped);
    tcase_add_test(tc, test_trainer_gradient_level);
    tcase_add_test(tc, test_trainer_options_errors);
    tcase_add_test(tc, test_trainer_pretrain);
    tcase_add_test(tc, test_trainer_optimizer_options_train);
    tcase_add_test(tc, test_trainer_grad_accum_equals_big_batch);
    tcase_add_test(tc, test_trainer_task_sam);
    tcase_add_test(tc, test_trainer_task_sam_own_params);
    tcase_add_test(tc, test_trainer_predict_truncation);
    tcase_add_test(tc, test_trainer_task_sam_gradient_level);
    tcase_add_test(tc, test_trainer_sam_update_and_restore);
    tcase_add_test(tc, test_trainer_sgd_resume_bit_exact);
    tcase_add_test(tc, test_trainer_generation_exact_match);
    tcase_add_test(tc, test_trainer_best_checkpoint_saved);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("metrics"); /* metric names and the selection metric */
    tcase_set_timeout(tm, 600);
    tcase_add_test(tm, test_trainer_metric_names_agree);
    tcase_add_test(tm, test_trainer_select_metric);
    suite_add_tcase(s, tm);
    return s;
}

int main(void) {
    mtft_log_set_level(MTFT_LOG_ERROR);
    if (write_tasks() != 0) {
        fprintf(stderr, "check_trainer: cannot write the task files under %s\n", g_dir);
        return 1;
    }
    int rc = mtft_test_run(mtft_test_trainer_suite());
    mtft_test_rm_rf(g_dir);
    return rc;
}
