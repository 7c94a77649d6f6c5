/* `mtft train CONFIG` and `mtft eval CONFIG --checkpoint DIR`.
 *
 * The whole config (tasks, data, model, tokenizer, lora, heads, sampler,
 * balancer, optimizer, schedule, eval, checkpoint, output, train, pretrain)
 * is read by the library (mtft_config_load_file, docs/config.md) into the
 * option structs; this file copies what the command needs from them. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

volatile sig_atomic_t *cli_stop_flag = NULL;

/* Ctrl-C: the trainer stops after the current step (MTFT_EUSER). */
static int stop_cb(const mtft_progress *info, void *payload) {
    (void)info;
    (void)payload;
    return cli_stop_flag && *cli_stop_flag;
}

void cli_pretrain_defaults(cli_pretrain *p) {
    memset(p, 0, sizeof *p);
    p->vocab_size = 4096;
    p->n_layer = 4;
    p->n_embd = 192;
    p->n_head = 6;
    p->n_ctx = 128;
    p->seq_len = 128;
    p->batch_size = 16;
    p->print_every = 25;
    p->steps = 600;
    p->seconds = 0;
    p->lr = 2e-3f;
    p->seed = 1;
}

/* ---- config ------------------------------------------------------------------------ */

static void copy_str(char *dst, size_t cap, const char *src) {
    int n = snprintf(dst, cap, "%s", src ? src : "");
    if (n < 0 || (size_t)n >= cap) dst[0] = 0; /* too long: treated as missing */
}

void cli_config_free(cli_config *cc) {
    mtft_config_free(cc->cfg);
    cc->cfg = NULL;
}

int cli_config_load(cli_config *cc, const char *path) {
    memset(cc, 0, sizeof *cc);
    cli_pretrain_defaults(&cc->pre);
    if (mtft_config_load_file(&cc->cfg, path) < 0) {
        fprintf(stderr, "mtft: %s\n", mtft_error_last()->message);
        return -1;
    }
    const mtft_config *cfg = cc->cfg;
    /* strings and weight arrays stay owned by cc->cfg (freed by cli_config_free) */
    cc->topt = *mtft_config_trainer(cfg);
    const mtft_run_options *ro = mtft_config_run(cfg);
    copy_str(cc->base_dir, sizeof cc->base_dir, ro->base_model);
    copy_str(cc->out_dir, sizeof cc->out_dir, ro->checkpoint_dir);
    copy_str(cc->log_path, sizeof cc->log_path, ro->log_path);
    copy_str(cc->ckpt_dir, sizeof cc->ckpt_dir, cc->topt.ckpt_dir);
    copy_str(cc->baselines, sizeof cc->baselines, ro->baselines);
    cc->threads = ro->threads;
    cc->test_max_examples = ro->test_max_examples;
    cc->topt.log_path = cc->log_path[0] ? cc->log_path : NULL;
    cc->topt.ckpt_dir = cc->ckpt_dir[0] ? cc->ckpt_dir : NULL;
    /* collation options the trainer does not apply are refused, not ignored */
    const mtft_collate_options *co = mtft_config_collate(cfg);
    if (co->pack || co->pad_to_multiple != 1) {
        fprintf(stderr,
                "mtft: %s: data.%s is an option of the data API (mtft_batch_collate); mtft train pads each step's "
                "rows to the longest one and does not pack (packed segments would attend to each other: the "
                "fused attention masks padding only). Remove it.\n",
                path, co->pack ? "pack" : "pad_to_multiple");
        cli_config_free(cc);
        return -1;
    }
    cc->has_pretrain = mtft_config_has_section(cfg, "pretrain");
    if (cc->has_pretrain) {
        const mtft_model_config *mc = mtft_config_model(cfg);
        const mtft_pretrain_options *po = mtft_config_pretrain(cfg);
        int n = 0;
        const char *const *texts = mtft_config_pretrain_texts(cfg, &n);
        if (n > CLI_MAX_TEXTS) {
            fprintf(stderr, "mtft: %s: pretrain.texts: at most %d files\n", path, CLI_MAX_TEXTS);
            cli_config_free(cc);
            return -1;
        }
        for (int i = 0; i < n; i++) copy_str(cc->pre.texts[i], sizeof cc->pre.texts[i], texts[i]);
        cc->pre.n_texts = n;
        cc->pre.vocab_size = mc->vocab_size;
        cc->pre.n_layer = mc->n_layer;
        cc->pre.n_embd = mc->n_embd;
        cc->pre.n_head = mc->n_head;
        cc->pre.n_ctx = mc->n_ctx;
        cc->pre.seq_len = po->seq_len;
        cc->pre.batch_size = po->batch_size;
        cc->pre.print_every = po->print_every;
        cc->pre.steps = po->max_steps;
        cc->pre.seconds = po->max_seconds;
        cc->pre.lr = po->lr;
        cc->pre.seed = po->seed;
        copy_str(cc->pre.out, sizeof cc->pre.out, cc->base_dir);
    }
    return 0;
}

/* ---- baselines.json (a list of flat objects per task) --------------------------- */

static int baseline(const char *json, const char *task, const char *key, double *out) {
    if (!json) return -1;
    char pat[256];
    snprintf(pat, sizeof pat, "\"task\": \"%s\"", task);
    const char *s = strstr(json, pat);
    if (!s) return -1;
    const char *end = strstr(s + 1, "\"task\":");
    char kp[128];
    snprintf(kp, sizeof kp, "\"%s\":", key);
    const char *k = strstr(s, kp);
    if (!k || (end && k > end)) return -1;
    *out = strtod(k + strlen(kp), NULL);
    return 0;
}

static void print_table(mtft_trainer *tr, mtft_task **tasks, int n, const char *baselines_path, mtft_split split) {
    char *bj = baselines_path && baselines_path[0] ? cli_read_file(baselines_path, NULL) : NULL;
    printf("\nper-task %s results (%s)\n", mtft_split_name(split), bj ? "floors from the baselines file" : "no baselines file");
    printf("%-20s %-15s %-15s %9s %10s %12s %8s\n", "task", "type", "metric", "score", "majority", "naive-Bayes", "n");
    printf("-------------------- --------------- --------------- --------- ---------- ------------ --------\n");
    for (int k = 0; k < n; k++) {
        const mtft_task_type ty = mtft_task_type_of(tasks[k]);
        const char *name = mtft_task_name(tasks[k]);
        mtft_metric ms[16];
        int nm = 0;
        const char *fk1 = NULL, *fk2 = NULL;
        switch (ty) {
        case MTFT_TASK_CLASSIFICATION:
            ms[nm++] = MTFT_METRIC_ACCURACY;
            ms[nm++] = MTFT_METRIC_MACRO_F1;
            fk1 = "majority_acc";
            fk2 = "char_nb_acc";
            break;
        case MTFT_TASK_REGRESSION:
            ms[nm++] = MTFT_METRIC_RMSE;
            ms[nm++] = MTFT_METRIC_PEARSON;
            fk1 = "mean_rmse";
            fk2 = "char_nb_binned_rmse";
            break;
        case MTFT_TASK_TAGGING:
            ms[nm++] = MTFT_METRIC_TOKEN_ACCURACY;
            ms[nm++] = MTFT_METRIC_TAG_MACRO_F1;
            fk1 = "majority_tag_acc";
            fk2 = "per_token_tag_acc";
            break;
        case MTFT_TASK_GENERATION:
            ms[nm++] = MTFT_METRIC_PERPLEXITY;
            ms[nm++] = MTFT_METRIC_TOKEN_ACCURACY;
            break;
        default:
            ms[nm++] = MTFT_METRIC_ACCURACY;
            break;
        }
        const mtft_metric floor_metric = ms[0]; /* the metric the baseline floors measure */
        const int listed = mtft_task_n_metrics(tasks[k]);
        if (listed > 0) { /* the task's metrics: list, in its order */
            nm = 0;
            for (int i = 0; i < listed && nm < (int)(sizeof ms / sizeof ms[0]); i++)
                if (mtft_metric_from_name(mtft_task_metric(tasks[k], i), &ms[nm]) == 0) nm++;
        }
        int rows = 0;
        for (int i = 0; i < nm; i++) {
            double v = NAN, f1 = NAN, f2 = NAN;
            char sv[32] = "-", s1[32] = "", s2[32] = "", sn[32] = "";
            if (mtft_trainer_eval_value(tr, k, split, ms[i], &v, NULL) == 0)
                snprintf(sv, sizeof sv, "%.4f", v);
            else if (listed == 0)
                continue; /* not reported for this task (and not asked for) */
            /* the floors are test-split numbers */
            if (split == MTFT_SPLIT_TEST && ms[i] == floor_metric && fk1 && baseline(bj, name, fk1, &f1) == 0)
                snprintf(s1, sizeof s1, "%.4f", f1);
            if (split == MTFT_SPLIT_TEST && ms[i] == floor_metric && fk2 && baseline(bj, name, fk2, &f2) == 0)
                snprintf(s2, sizeof s2, "%.4f", f2);
            if (rows == 0) snprintf(sn, sizeof sn, "%lld", (long long)mtft_trainer_eval_examples(tr, k, split));
            printf("%-20s %-15s %-15s %9s %10s %12s %8s\n", rows == 0 ? name : "", rows == 0 ? mtft_task_type_name(ty) : "",
                   mtft_metric_name(ms[i]), sv, s1, s2, sn);
            rows++;
        }
    }
    printf("(majority/naive-Bayes: the floors of %s; for regression the RMSE of predicting the mean and of a\n"
           " binned char n-gram NB; for tagging the majority tag and a per-token lookup)\n",
           bj ? baselines_path : "-");
    free(bj);
}

/* ---- the commands -------------------------------------------------------------------- */

int cli_cmd_train(int argc, char **argv, int eval_only) {
    const char *cfg_path = NULL, *ckpt = NULL, *split_name = "test";
    const char *bal = NULL, *log = NULL, *out = NULL, *base = NULL, *only = NULL, *resume = NULL;
    int64_t steps = -1, seed = -1;
    double seconds = -1;
    int threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: mtft %s CONFIG [--steps N] [--seconds S] [--seed N] [--balancer NAME] [--log FILE] "
                   "[--out DIR] [--base DIR] [--only TASK,..] [--resume DIR] [--threads N] [--checkpoint DIR] [--split dev|test]\n",
                   eval_only ? "eval" : "train");
            return 0;
        }
        if (a[0] != '-') {
            if (cfg_path) {
                fprintf(stderr, "mtft: more than one config given ('%s' and '%s')\n", cfg_path, a);
                return 2;
            }
            cfg_path = a;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "mtft: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--steps")) steps = atoll(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--seed")) seed = atoll(v);
        else if (!strcmp(a, "--balancer")) bal = v;
        else if (!strcmp(a, "--log")) log = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--base")) base = v;
        else if (!strcmp(a, "--only")) only = v;
        else if (!strcmp(a, "--resume")) resume = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--split")) split_name = v;
        else {
            fprintf(stderr, "mtft: unknown option '%s' (see mtft --help)\n", a);
            return 2;
        }
    }
    if (!cfg_path) {
        fprintf(stderr, "mtft %s: a CONFIG file is required\n", eval_only ? "eval" : "train");
        return 2;
    }
    if (eval_only && !ckpt) {
        fprintf(stderr, "mtft eval: --checkpoint DIR is required\n");
        return 2;
    }
    mtft_split split = !strcmp(split_name, "dev") ? MTFT_SPLIT_DEV : MTFT_SPLIT_TEST;
    if (strcmp(split_name, "dev") && strcmp(split_name, "test")) {
        fprintf(stderr, "mtft: --split must be dev or test, not '%s'\n", split_name);
        return 2;
    }
    cli_config cc;
    if (cli_config_load(&cc, cfg_path) != 0) return 2;
    if (steps > 0) cc.topt.max_steps = steps;
    if (seconds >= 0) cc.topt.max_seconds = seconds;
    if (seed >= 0) cc.topt.seed = (uint64_t)seed;
    if (log) snprintf(cc.log_path, sizeof cc.log_path, "%s", log), cc.topt.log_path = cc.log_path;
    if (out) snprintf(cc.out_dir, sizeof cc.out_dir, "%s", out);
    if (base) {
        snprintf(cc.base_dir, sizeof cc.base_dir, "%s", base);
        snprintf(cc.pre.out, sizeof cc.pre.out, "%s", base);
    }
    if (threads > 0) cc.threads = threads;
    if (cc.threads > 0) mtft_set_num_threads(cc.threads);
    /* checkpoint.resume in the config, unless --resume says otherwise */
    if (!resume && !eval_only) {
        const char *from = mtft_config_run(cc.cfg)->resume_from;
        if (from && from[0]) resume = from;
    }
    if (bal) {
        mtft_balance_method m;
        if (mtft_balance_method_from_name(bal, &m) < 0) {
            cli_config_free(&cc);
            return cli_fail("--balancer");
        }
        cc.topt.balancer.method = m;
    }
    if (!cc.base_dir[0]) {
        fprintf(stderr, "mtft: %s: train.base is required (a directory with config.json, model.safetensors, "
                        "vocab.json and merges.txt, or where pretrain: writes one)\n", cfg_path);
        cli_config_free(&cc);
        return 2;
    }
    int ret = 0, rc;
    char p1[CLI_PATH + 32], p2[CLI_PATH + 32];
    snprintf(p1, sizeof p1, "%s/config.json", cc.base_dir);
    if (!cli_exists(p1)) {
        if (!cc.has_pretrain || eval_only) {
            fprintf(stderr, "mtft: no base model in '%s' (no config.json) and no pretrain: section to make one\n",
                    cc.base_dir);
            cli_config_free(&cc);
            return 1;
        }
        printf("== pretraining a base model into %s (cached for later runs)\n", cc.base_dir);
        if ((ret = cli_pretrain_run(&cc.pre)) != 0) {
            cli_config_free(&cc);
            return ret;
        }
    } else {
        printf("== base model: %s (cached; delete it to pretrain again)\n", cc.base_dir);
    }
    mtft_tokenizer *tok = NULL;
    mtft_model *m = NULL;
    mtft_trainer *tr = NULL;
    /* --only a,b: train on those tasks of the config (e.g. single-task baselines) */
    const int n_cfg = mtft_config_n_tasks(cc.cfg);
    int *sel = calloc((size_t)(n_cfg > 0 ? n_cfg : 1), sizeof *sel);
    int nt = 0;
    for (int k = 0; sel && k < n_cfg; k++) {
        const char *nm = mtft_config_task(cc.cfg, k)->name;
        int take = !only;
        for (const char *q = only; q && *q && !take;) {
            const char *e = strchr(q, ',');
            const size_t l = e ? (size_t)(e - q) : strlen(q);
            take = strlen(nm) == l && !strncmp(nm, q, l);
            q = e ? e + 1 : NULL;
        }
        if (take) sel[nt++] = k;
    }
    if (only && nt == 0) {
        fprintf(stderr, "mtft: --only %s matches no task of %s\n", only, cfg_path);
        free(sel);
        cli_config_free(&cc);
        return 2;
    }
    mtft_task **tasks = calloc((size_t)(nt > 0 ? nt : 1), sizeof *tasks);
    double *wsel[2] = {calloc((size_t)(nt > 0 ? nt : 1), sizeof(double)), calloc((size_t)(nt > 0 ? nt : 1), sizeof(double))};
    float *wself = calloc((size_t)(nt > 0 ? nt : 1), sizeof(float));
    if (!tasks || !wsel[0] || !wsel[1] || !wself) {
        fprintf(stderr, "mtft: out of memory\n");
        free(tasks);
        free(wsel[0]);
        free(wsel[1]);
        free(wself);
        free(sel);
        cli_config_free(&cc);
        return 1;
    }
    snprintf(p1, sizeof p1, "%s/vocab.json", cc.base_dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", cc.base_dir);
    /* tokenizer: of the config, else the base model's files */
    const mtft_run_options *ro = mtft_config_run(cc.cfg);
    if (mtft_config_has_section(cc.cfg, "tokenizer") && ro->tokenizer_json)
        rc = mtft_tokenizer_load_json(&tok, ro->tokenizer_json);
    else if (mtft_config_has_section(cc.cfg, "tokenizer") && ro->tokenizer_vocab)
        rc = mtft_tokenizer_load_hf(&tok, ro->tokenizer_vocab, ro->tokenizer_merges);
    else
        rc = mtft_tokenizer_load_hf(&tok, p1, p2);
    if (rc < 0) {
        ret = cli_fail("loading the base tokenizer");
        goto done;
    }
    if ((rc = mtft_model_load_hf(&m, cc.base_dir)) < 0) {
        ret = cli_fail("loading the base model");
        goto done;
    }
    {
        const int32_t eos = mtft_tokenizer_token_to_id(tok, "<|endoftext|>");
        cc.topt.pad_id = eos >= 0 ? eos : 0;
    }
    for (int k = 0; k < nt; k++) {
        if ((rc = mtft_task_new(&tasks[k], mtft_config_task(cc.cfg, sel[k]))) < 0 ||
            (rc = mtft_task_load(tasks[k], tok, mtft_config_data(cc.cfg))) < 0) {
            ret = cli_fail("loading a task");
            goto done;
        }
    }
    cc.topt.progress = stop_cb;
    /* per-task weight lists of the config follow the --only selection */
    for (int w = 0; w < 3 && only; w++) {
        const double *src = w == 0 ? cc.topt.sampler.start.weights : w == 1 ? cc.topt.sampler.end.weights : NULL;
        const float *srcf = w == 2 ? cc.topt.balancer.static_weights : NULL;
        if (!src && !srcf) continue;
        if (w < 2) {
            for (int k = 0; k < nt; k++) wsel[w][k] = src[sel[k]];
            if (w == 0) cc.topt.sampler.start.weights = wsel[0];
            else cc.topt.sampler.end.weights = wsel[1];
        } else {
            for (int k = 0; k < nt; k++) wself[k] = srcf[sel[k]];
            cc.topt.balancer.static_weights = wself;
        }
    }
    /* the directories the log and the checkpoint go to */
    for (int i = 0; i < 2 && !eval_only; i++) {
        const char *pth = i ? cc.out_dir : cc.log_path;
        char parent[CLI_PATH];
        snprintf(parent, sizeof parent, "%s", pth);
        char *sl = strrchr(parent, '/');
        if (!pth[0] || !sl || sl == parent) continue;
        *sl = 0;
        if (cli_mkdirs(parent) != 0) {
            fprintf(stderr, "mtft: cannot create the directory '%s' for '%s'\n", parent, pth);
            ret = 1;
            goto done;
        }
    }
    if ((rc = mtft_trainer_new(&tr, m, &cc.topt)) < 0) {
        ret = cli_fail("trainer options");
        goto done;
    }
    {
        /* generation tasks are also scored by exact match and chrF of greedy decodes */
        const char *et = mtft_config_data(cc.cfg)->eos_token;
        const int32_t geos = et && *et ? mtft_tokenizer_token_to_id(tok, et) : -1;
        mtft_trainer_set_tokenizer(tr, tok, geos);
    }
    for (int k = 0; k < nt; k++) {
        /* tasks[].head of the config, else the head follows the task type */
        mtft_head_options ho;
        int has_head = mtft_config_task_head_for(cc.cfg, sel[k], tasks[k], &ho);
        if (has_head < 0 || (rc = mtft_trainer_add_task(tr, tasks[k], has_head == 1 ? &ho : NULL)) < 0) {
            ret = cli_fail("adding a task");
            goto done;
        }
    }
    if (eval_only) {
        if ((rc = mtft_trainer_load(tr, ckpt)) < 0) {
            ret = cli_fail("loading the checkpoint");
            goto done;
        }
    } else {
        if (resume) {
            if ((rc = mtft_trainer_load(tr, resume)) < 0) {
                ret = cli_fail("resuming from the checkpoint");
                goto done;
            }
            printf("== resumed from %s at step %lld\n", resume, (long long)mtft_trainer_step(tr));
        }
        printf("== multitask finetuning: %d tasks, %lld steps of %d rows, LoRA rank %d per task%s, balancer %s, "
               "sampler %s\n",
               nt, (long long)cc.topt.max_steps, cc.topt.batch_size, cc.topt.lora_rank,
               cc.topt.train_base ? " + trainable trunk" : "", mtft_balance_method_name(cc.topt.balancer.method),
               cc.topt.sampler.start.strategy == MTFT_SAMPLER_TEMPERATURE ? "temperature" : "as configured");
        rc = mtft_trainer_run(tr);
        if (rc < 0) {
            ret = cli_fail("training");
            if (rc != MTFT_EUSER) goto done;
            printf("stopped at step %lld\n", (long long)mtft_trainer_step(tr));
        }
        if (cc.out_dir[0]) {
            if (mtft_trainer_save(tr, cc.out_dir) < 0) {
                ret = cli_fail("saving the checkpoint");
                goto done;
            }
            printf("== checkpoint: %s\n", cc.out_dir);
        }
        if (rc == MTFT_EUSER) goto done;
    }
    printf("== evaluating on %s\n", mtft_split_name(split));
    /* the test split in full unless test_max_examples caps it (0 passed to
     * mtft_trainer_evaluate would mean the dev cap, eval.max_examples); dev
     * as during training */
    const int64_t cap = split == MTFT_SPLIT_TEST ? (cc.test_max_examples > 0 ? cc.test_max_examples : INT64_MAX)
                        : cc.topt.eval_max_examples > 0 ? cc.topt.eval_max_examples
                                                        : INT64_MAX;
    if ((rc = mtft_trainer_evaluate(tr, split, cap)) < 0) {
        ret = cli_fail("evaluation");
        goto done;
    }
    print_table(tr, tasks, nt, cc.baselines, split);
    if (!eval_only && cc.log_path[0]) {
        char html[CLI_PATH + 16];
        size_t l = strlen(cc.log_path);
        if (l > 6 && !strcmp(cc.log_path + l - 6, ".jsonl"))
            snprintf(html, sizeof html, "%.*s.html", (int)(l - 6), cc.log_path);
        else
            snprintf(html, sizeof html, "%s.html", cc.log_path);
        char title[CLI_PATH + 64];
        snprintf(title, sizeof title, "mtft train %s (balancer %s)", cfg_path,
                 mtft_balance_method_name(cc.topt.balancer.method));
        if (cli_write_report(cc.log_path, html, tr, title) == 0)
            printf("== report: %s (charts of per-task loss, weights, rates and dev metrics)\n== log: %s\n", html,
                   cc.log_path);
        else
            fprintf(stderr, "mtft: could not write the report %s\n", html);
    }
done:
    mtft_trainer_free(tr);
    for (int k = 0; k < nt; k++) mtft_task_free(tasks[k]);
    free(tasks);
    free(wsel[0]);
    free(wsel[1]);
    free(wself);
    free(sel);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    cli_config_free(&cc);
    return ret;
}
