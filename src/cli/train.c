/* `mtft train CONFIG` and `mtft eval CONFIG --checkpoint DIR`.
 *
 * The config's tasks: and data: sections go to mtft_config (the library's
 * YAML reader). Its train: and pretrain: sections are read here: each a flat
 * block of "key: value" lines indented under the section name (values are
 * numbers, words, quoted strings, or [a, b] lists), with errors naming
 * file:line:col and the key. Those lines are blanked before the rest goes to
 * mtft_config_load_string, so line numbers in its errors stay true. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
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

/* ---- config: train: and pretrain: sections ----------------------------------------- */

static void rel_path(char *out, size_t cap, const char *dir, const char *p) {
    int n = (p[0] == '/' || !dir[0]) ? snprintf(out, cap, "%s", p) : snprintf(out, cap, "%s/%s", dir, p);
    if (n < 0 || (size_t)n >= cap) out[0] = 0; /* too long: treated as missing */
}

static int bad(const char *file, int line, int col, const char *sec, const char *key, const char *what) {
    fprintf(stderr, "mtft: %s:%d:%d: %s.%s: %s\n", file, line, col, sec, key, what);
    return -1;
}

static int parse_i64(const char *v, int64_t *out) {
    char *e;
    errno = 0;
    long long x = strtoll(v, &e, 10);
    if (errno || e == v || *e) return -1;
    *out = x;
    return 0;
}
static int parse_f(const char *v, double *out) {
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    if (errno || e == v || *e || !isfinite(x)) return -1;
    *out = x;
    return 0;
}
static int parse_bool(const char *v, int *out) {
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) return *out = 1, 0;
    if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) return *out = 0, 0;
    return -1;
}

static const char *k_train_keys =
    "base, baselines, out, log, ckpt_dir, save_every, keep_last, threads, seed, steps, seconds, batch_size, max_len, lr, weight_decay, "
    "warmup_steps, schedule, min_lr_ratio, grad_clip, train_base, base_lr_scale, lora_rank, lora_alpha, "
    "lora_targets, shared_lora_rank, head_hidden, head_pool, sampler, sampler_temperature, sampler_cap, "
    "batch_mode, balancer, balancer_drives_sampler, dwa_temperature, dwa_period, uncertainty_lr, famo_lr, "
    "cagrad_c, eval_every, eval_max_examples, test_max_examples, "
    "eval_batch_size, early_stop_patience, print_every";
static const char *k_pretrain_keys =
    "texts, vocab_size, n_layer, n_embd, n_head, n_ctx, steps, seconds, batch_size, lr, seed, print_every";

#define KEY(name) (!strcmp(key, name))
#define NUM_I(field)                                                                       \
    do {                                                                                   \
        int64_t x_;                                                                        \
        if (parse_i64(val, &x_)) return bad(file, line, col, sec, key, "expected an integer"); \
        field = x_;                                                                        \
    } while (0)
#define NUM_F(field)                                                                     \
    do {                                                                                 \
        double x_;                                                                       \
        if (parse_f(val, &x_)) return bad(file, line, col, sec, key, "expected a number"); \
        field = x_;                                                                      \
    } while (0)
#define BOOL(field)                                                                           \
    do {                                                                                      \
        if (parse_bool(val, &field)) return bad(file, line, col, sec, key, "expected true or false"); \
    } while (0)

static int set_train(cli_config *cc, const char *file, const char *dir, int line, int col, const char *key,
                     const char *val) {
    const char *sec = "train";
    mtft_trainer_options *o = &cc->topt;
    if (KEY("base")) rel_path(cc->base_dir, sizeof cc->base_dir, dir, val);
    else if (KEY("baselines")) rel_path(cc->baselines, sizeof cc->baselines, dir, val);
    else if (KEY("out")) rel_path(cc->out_dir, sizeof cc->out_dir, dir, val);
    else if (KEY("log")) rel_path(cc->log_path, sizeof cc->log_path, dir, val);
    else if (KEY("ckpt_dir")) rel_path(cc->ckpt_dir, sizeof cc->ckpt_dir, dir, val);
    else if (KEY("save_every")) NUM_I(o->save_every);
    else if (KEY("keep_last")) NUM_I(o->keep_last);
    else if (KEY("threads")) NUM_I(cc->threads);
    else if (KEY("seed")) NUM_I(o->seed);
    else if (KEY("steps")) NUM_I(o->max_steps);
    else if (KEY("seconds")) NUM_F(o->max_seconds);
    else if (KEY("batch_size")) NUM_I(o->batch_size);
    else if (KEY("max_len")) NUM_I(o->max_len);
    else if (KEY("lr")) NUM_F(o->lr);
    else if (KEY("weight_decay")) NUM_F(o->weight_decay);
    else if (KEY("warmup_steps")) NUM_I(o->warmup_steps);
    else if (KEY("min_lr_ratio")) NUM_F(o->min_lr_ratio);
    else if (KEY("grad_clip")) NUM_F(o->grad_clip);
    else if (KEY("train_base")) BOOL(o->train_base);
    else if (KEY("base_lr_scale")) NUM_F(o->base_lr_scale);
    else if (KEY("lora_rank")) NUM_I(o->lora_rank);
    else if (KEY("lora_alpha")) NUM_F(o->lora_alpha);
    else if (KEY("lora_targets")) snprintf(cc->lora_targets, sizeof cc->lora_targets, "%s", val);
    else if (KEY("shared_lora_rank")) NUM_I(o->shared_lora_rank);
    else if (KEY("head_hidden")) NUM_I(o->head_hidden);
    else if (KEY("sampler_temperature")) NUM_F(o->sampler.start.temperature);
    else if (KEY("sampler_cap")) NUM_F(o->sampler.start.cap);
    else if (KEY("balancer_drives_sampler")) BOOL(o->balancer_drives_sampler);
    else if (KEY("dwa_temperature")) NUM_F(o->balancer.dwa_temperature);
    else if (KEY("dwa_period")) NUM_I(o->balancer.dwa_period);
    else if (KEY("uncertainty_lr")) NUM_F(o->balancer.uncertainty_lr);
    else if (KEY("famo_lr")) NUM_F(o->balancer.famo_lr);
    else if (KEY("cagrad_c")) NUM_F(o->balancer.cagrad_c);
    else if (KEY("eval_every")) NUM_I(o->eval_every);
    else if (KEY("eval_max_examples")) NUM_I(o->eval_max_examples);
    else if (KEY("test_max_examples")) NUM_I(cc->test_max_examples);
    else if (KEY("eval_batch_size")) NUM_I(o->eval_batch_size);
    else if (KEY("early_stop_patience")) NUM_I(o->early_stop_patience);
    else if (KEY("print_every")) NUM_I(o->print_every);
    else if (KEY("schedule")) {
        if (!strcmp(val, "constant")) o->schedule = MTFT_LR_CONSTANT;
        else if (!strcmp(val, "linear")) o->schedule = MTFT_LR_LINEAR;
        else if (!strcmp(val, "cosine")) o->schedule = MTFT_LR_COSINE;
        else return bad(file, line, col, sec, key, "expected constant, linear or cosine");
    } else if (KEY("head_pool")) {
        if (!strcmp(val, "last")) o->head_pool = MTFT_POOL_LAST;
        else if (!strcmp(val, "mean")) o->head_pool = MTFT_POOL_MEAN;
        else if (!strcmp(val, "first")) o->head_pool = MTFT_POOL_FIRST;
        else return bad(file, line, col, sec, key, "expected last, mean or first");
    } else if (KEY("sampler")) {
        if (!strcmp(val, "proportional")) o->sampler.start.strategy = MTFT_SAMPLER_PROPORTIONAL;
        else if (!strcmp(val, "temperature")) o->sampler.start.strategy = MTFT_SAMPLER_TEMPERATURE;
        else if (!strcmp(val, "uniform")) o->sampler.start.strategy = MTFT_SAMPLER_UNIFORM;
        else if (!strcmp(val, "capped")) o->sampler.start.strategy = MTFT_SAMPLER_CAPPED;
        else return bad(file, line, col, sec, key, "expected proportional, temperature, uniform or capped");
    } else if (KEY("batch_mode")) {
        if (!strcmp(val, "mixed")) o->sampler.batch_mode = MTFT_SAMPLER_MIXED;
        else if (!strcmp(val, "single_task")) o->sampler.batch_mode = MTFT_SAMPLER_SINGLE_TASK;
        else return bad(file, line, col, sec, key, "expected mixed or single_task");
    } else if (KEY("balancer")) {
        mtft_balance_method m;
        if (mtft_balance_method_from_name(val, &m) < 0)
            return bad(file, line, col, sec, key, mtft_error_last()->message);
        o->balancer.method = m;
    } else {
        char msg[1024];
        snprintf(msg, sizeof msg, "unknown key (known: %s)", k_train_keys);
        return bad(file, line, col, sec, key, msg);
    }
    return 0;
}

static int set_pretrain(cli_config *cc, const char *file, const char *dir, int line, int col, const char *key,
                        const char *val) {
    const char *sec = "pretrain";
    cli_pretrain *p = &cc->pre;
    if (KEY("texts")) {
        /* [a, b, c] */
        const char *s = val;
        if (*s != '[') return bad(file, line, col, sec, key, "expected a list [file, ...]");
        s++;
        p->n_texts = 0;
        while (*s && *s != ']') {
            while (*s == ' ' || *s == ',') s++;
            const char *e = s;
            while (*e && *e != ',' && *e != ']') e++;
            const char *t = e;
            while (t > s && t[-1] == ' ') t--;
            if (t > s) {
                if (p->n_texts >= CLI_MAX_TEXTS) return bad(file, line, col, sec, key, "too many files");
                char one[CLI_PATH];
                snprintf(one, sizeof one, "%.*s", (int)(t - s), s);
                rel_path(p->texts[p->n_texts++], sizeof p->texts[0], dir, one);
            }
            s = e;
        }
        if (*s != ']') return bad(file, line, col, sec, key, "unterminated list (missing ']')");
    } else if (KEY("vocab_size")) NUM_I(p->vocab_size);
    else if (KEY("n_layer")) NUM_I(p->n_layer);
    else if (KEY("n_embd")) NUM_I(p->n_embd);
    else if (KEY("n_head")) NUM_I(p->n_head);
    else if (KEY("n_ctx")) {
        NUM_I(p->n_ctx);
        p->seq_len = p->n_ctx;
    } else if (KEY("steps")) NUM_I(p->steps);
    else if (KEY("seconds")) NUM_F(p->seconds);
    else if (KEY("batch_size")) NUM_I(p->batch_size);
    else if (KEY("lr")) NUM_F(p->lr);
    else if (KEY("seed")) NUM_I(p->seed);
    else if (KEY("print_every")) NUM_I(p->print_every);
    else {
        char msg[512];
        snprintf(msg, sizeof msg, "unknown key (known: %s)", k_pretrain_keys);
        return bad(file, line, col, sec, key, msg);
    }
    return 0;
}

void cli_config_free(cli_config *cc) {
    mtft_config_free(cc->cfg);
    cc->cfg = NULL;
}

int cli_config_load(cli_config *cc, const char *path) {
    memset(cc, 0, sizeof *cc);
    mtft_trainer_options d = MTFT_TRAINER_OPTIONS_INIT;
    cc->topt = d;
    cli_pretrain_defaults(&cc->pre);
    size_t len = 0;
    char *text = cli_read_file(path, &len);
    if (!text) {
        fprintf(stderr, "mtft: cannot read config '%s': %s\n", path, strerror(errno));
        return -1;
    }
    char dir[CLI_PATH];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int section = 0; /* 0 other, 1 train, 2 pretrain */
    int line = 0, rc = 0;
    int max_len_set = 0;
    for (char *ln = text; ln && *ln && rc == 0; line++) {
        char *nl = strchr(ln, '\n');
        const size_t n = nl ? (size_t)(nl - ln) : strlen(ln);
        char buf[8192];
        snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf - 1 ? n : sizeof buf - 1), ln);
        if (buf[0] && buf[0] != ' ' && buf[0] != '#' && buf[0] != '\t' && buf[0] != '\r') {
            section = !strncmp(buf, "train:", 6) ? 1 : !strncmp(buf, "pretrain:", 9) ? 2 : 0;
            if (section == 2) cc->has_pretrain = 1;
        }
        if (section) {
            /* key: value, indented */
            char *s = buf;
            while (*s == ' ') s++;
            if (s != buf && *s && *s != '#' && *s != '\r') {
                const int col = (int)(s - buf) + 1;
                char *colon = strchr(s, ':');
                if (!colon) {
                    rc = bad(path, line + 1, col, section == 1 ? "train" : "pretrain", s, "expected 'key: value'");
                    break;
                }
                *colon = 0;
                char *key = s, *val = colon + 1;
                char *ke = colon;
                while (ke > key && ke[-1] == ' ') *--ke = 0;
                while (*val == ' ') val++;
                /* strip a comment and trailing space, then quotes */
                if (*val == '"' || *val == '\'') {
                    const char q = *val++;
                    char *e = strchr(val, q);
                    if (!e) {
                        rc = bad(path, line + 1, (int)(val - buf), section == 1 ? "train" : "pretrain", key,
                                 "unterminated quoted string");
                        break;
                    }
                    *e = 0;
                } else {
                    char *hash = strstr(val, " #");
                    if (hash) *hash = 0;
                    size_t vl = strlen(val);
                    while (vl && (val[vl - 1] == ' ' || val[vl - 1] == '\r')) val[--vl] = 0;
                }
                const int vcol = (int)(val - buf) + 1;
                if (section == 1 && !strcmp(key, "max_len")) max_len_set = 1;
                rc = section == 1 ? set_train(cc, path, dir, line + 1, vcol, key, val)
                                  : set_pretrain(cc, path, dir, line + 1, vcol, key, val);
            }
            memset(ln, ' ', n); /* hide the line from the library's reader; keep line numbers */
            if (n && ln[n - 1] == '\r') ln[n - 1] = '\r';
        }
        ln = nl ? nl + 1 : NULL;
    }
    if (rc == 0) {
        rc = mtft_config_load_string(&cc->cfg, text, len, path, dir);
        if (rc < 0) {
            fprintf(stderr, "mtft: %s\n", mtft_error_last()->message);
            rc = -1;
        }
    }
    free(text);
    if (rc != 0) return -1;
    if (!max_len_set) cc->topt.max_len = mtft_config_collate(cc->cfg)->max_len;
    cc->topt.truncation = mtft_config_collate(cc->cfg)->truncation;
    if (cc->lora_targets[0]) cc->topt.lora_targets = cc->lora_targets;
    if (cc->log_path[0]) cc->topt.log_path = cc->log_path;
    if (cc->ckpt_dir[0]) cc->topt.ckpt_dir = cc->ckpt_dir;
    if (cc->has_pretrain && cc->base_dir[0]) snprintf(cc->pre.out, sizeof cc->pre.out, "%s", cc->base_dir);
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
        mtft_metric ms[3];
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
        for (int i = 0; i < nm; i++) {
            double v = NAN, f1 = NAN, f2 = NAN;
            if (mtft_trainer_eval_value(tr, k, split, ms[i], &v, NULL) < 0) continue;
            char s1[32] = "", s2[32] = "", sn[32] = "";
            /* the floors are test-split numbers */
            if (split == MTFT_SPLIT_TEST && i == 0 && fk1 && baseline(bj, name, fk1, &f1) == 0)
                snprintf(s1, sizeof s1, "%.4f", f1);
            if (split == MTFT_SPLIT_TEST && i == 0 && fk2 && baseline(bj, name, fk2, &f2) == 0)
                snprintf(s2, sizeof s2, "%.4f", f2);
            if (i == 0) snprintf(sn, sizeof sn, "%lld", (long long)mtft_task_count(tasks[k], split));
            printf("%-20s %-15s %-15s %9.4f %10s %12s %8s\n", i == 0 ? name : "", i == 0 ? mtft_task_type_name(ty) : "",
                   mtft_metric_name(ms[i]), v, s1, s2, sn);
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
    snprintf(p1, sizeof p1, "%s/vocab.json", cc.base_dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", cc.base_dir);
    if ((rc = mtft_tokenizer_load_hf(&tok, p1, p2)) < 0) {
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
    for (int k = 0; k < nt; k++)
        if ((rc = mtft_trainer_add_task(tr, tasks[k], NULL)) < 0) {
            ret = cli_fail("adding a task");
            goto done;
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
    if ((rc = mtft_trainer_evaluate(tr, split, cc.test_max_examples)) < 0) {
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
    free(sel);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    cli_config_free(&cc);
    return ret;
}
