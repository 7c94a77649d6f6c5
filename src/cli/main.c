/* The `mtft` command: a client of the public API only.
 *
 *   mtft train CONFIG [options]     multitask finetuning from a YAML config
 *   mtft eval CONFIG --checkpoint DIR
 *   mtft predict CONFIG --checkpoint DIR --task NAME [--in FILE] [--out FILE]
 *   mtft generate --model DIR --prompt TEXT [options]
 *   mtft pretrain --text FILE... --out DIR [options]
 *   mtft info [CONFIG | CHECKPOINT_DIR]
 *   mtft merge CONFIG [--output PATH] [--lora-rank R]   (cmd_merge.c)
 *
 * Exit codes: 0 success, 1 runtime failure (I/O, data, numerics), 2 usage
 * error (bad arguments or config), 3 stopped early by a signal or callback. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mtft/mtft.h"
#include "mtft/trainer.h"

#include "cli.h"

/* cmd_merge.c (owned by merge): mtft merge CONFIG */
int cli_cmd_merge(int argc, char **argv);

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define EXIT_STOPPED 3

static volatile sig_atomic_t g_stop = 0;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

int cli_fail(const char *what) {
    const mtft_error *e = mtft_error_last();
    fprintf(stderr, "mtft: %s: %s\n", what, e->message[0] ? e->message : mtft_status_str(e->code));
    if (e->code == MTFT_EUSER) return EXIT_STOPPED;
    return e->code == MTFT_EINVAL || e->code == MTFT_ERANGE || e->code == MTFT_ENOTFOUND ? EXIT_USAGE : EXIT_RUNTIME;
}

/* ---- small helpers -------------------------------------------------------------- */

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *b2 = realloc(buf, 2 * cap + 1);
        if (!b2) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b2;
        cap *= 2;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int cli_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cli_mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int progress_stop(const mtft_progress *info, void *payload) {
    (void)info;
    (void)payload;
    return g_stop != 0;
}

/* ---- pretrain --------------------------------------------------------------------- */

/* Train a BPE on the texts, a GPT-2 style model on them, save both to out. */
int cli_pretrain_run(const cli_pretrain *p) {
    size_t total = 0;
    char *text = NULL;
    int rc = 0, ret = 0;
    mtft_tokenizer *tok = NULL;
    mtft_model *m = NULL;
    int32_t *ids = NULL;
    for (int i = 0; i < p->n_texts; i++) {
        size_t n = 0;
        char *t = cli_read_file(p->texts[i], &n);
        if (!t) {
            fprintf(stderr, "mtft pretrain: cannot read '%s': %s\n", p->texts[i], strerror(errno));
            free(text);
            return EXIT_RUNTIME;
        }
        char *t2 = realloc(text, total + n + 3);
        if (!t2) {
            free(t);
            free(text);
            return EXIT_RUNTIME;
        }
        text = t2;
        memcpy(text + total, t, n);
        total += n;
        memcpy(text + total, "\n\n", 3);
        total += 2;
        free(t);
    }
    if (!text) {
        fprintf(stderr, "mtft pretrain: no text given (--text FILE)\n");
        return EXIT_USAGE;
    }
    if (cli_mkdirs(p->out) != 0) {
        fprintf(stderr, "mtft pretrain: cannot create '%s': %s\n", p->out, strerror(errno));
        free(text);
        return EXIT_RUNTIME;
    }
    printf("pretrain: %zu bytes of text from %d file(s); training a %d-token BPE\n", total, p->n_texts, p->vocab_size);
    const char *specials[1] = {"<|endoftext|>"};
    mtft_bpe_train_options bo = MTFT_BPE_TRAIN_OPTIONS_INIT;
    bo.vocab_size = p->vocab_size;
    bo.special_tokens = specials;
    bo.n_special_tokens = 1;
    if ((rc = mtft_tokenizer_train(&tok, text, total, &bo)) < 0) {
        ret = cli_fail("pretrain: BPE training");
        goto done;
    }
    size_t n_ids = 0;
    mtft_tokenizer_encode(tok, text, total, NULL, 0, &n_ids);
    ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    if (!ids || (rc = mtft_tokenizer_encode(tok, text, total, ids, n_ids, &n_ids)) < 0) {
        ret = cli_fail("pretrain: encoding the text");
        goto done;
    }
    mtft_model_config cfg = MTFT_MODEL_CONFIG_INIT;
    cfg.vocab_size = mtft_tokenizer_vocab_size(tok);
    cfg.n_ctx = p->n_ctx;
    cfg.n_embd = p->n_embd;
    cfg.n_layer = p->n_layer;
    cfg.n_head = p->n_head;
    cfg.n_kv_head = p->n_head;
    cfg.n_ff = 4 * p->n_embd;
    if ((rc = mtft_model_new(&m, &cfg, p->seed)) < 0) {
        ret = cli_fail("pretrain: model");
        goto done;
    }
    printf("pretrain: %zu tokens, vocab %d, GPT-2 style %d layers x %d wide, %d heads, context %d\n", n_ids,
           cfg.vocab_size, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_ctx);
    mtft_pretrain_options po = MTFT_PRETRAIN_OPTIONS_INIT;
    po.seed = p->seed;
    po.max_steps = p->steps;
    po.max_seconds = p->seconds;
    po.batch_size = p->batch_size;
    po.seq_len = p->seq_len < cfg.n_ctx ? p->seq_len : cfg.n_ctx;
    po.lr = p->lr;
    po.warmup_steps = p->steps / 20 > 0 ? p->steps / 20 : 1;
    po.print_every = p->print_every;
    po.progress = progress_stop;
    double hl = NAN;
    rc = mtft_pretrain(m, ids, (int64_t)n_ids, &po, &hl);
    if (rc < 0) {
        ret = cli_fail("pretrain");
        goto done;
    }
    printf("pretrain: held-out next-token loss %.4f nats\n", hl);
    char v[4200], mg[4200];
    snprintf(v, sizeof v, "%s/vocab.json", p->out);
    snprintf(mg, sizeof mg, "%s/merges.txt", p->out);
    if ((rc = mtft_model_save_hf(m, p->out)) < 0 || (rc = mtft_tokenizer_save_hf(tok, v, mg)) < 0) {
        ret = cli_fail("pretrain: saving");
        goto done;
    }
    printf("pretrain: saved the base model and its tokenizer to %s\n", p->out);
done:
    free(text);
    free(ids);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    return ret;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: mtft <command> [options]\n"
            "\n"
            "commands:\n"
            "  train CONFIG [--steps N] [--seconds S] [--seed N] [--balancer NAME] [--log FILE]\n"
            "               [--out DIR] [--base DIR] [--only TASK,...] [--resume DIR] [--threads N]\n"
            "        multitask finetuning as the YAML config says (sections tasks:, data:, train:,\n"
            "        pretrain:); pretrains the base first when train.base has none yet; prints\n"
            "        per-task test metrics beside the floors of train.baselines\n"
            "  eval CONFIG --checkpoint DIR [--split dev|test]\n"
            "        evaluate a saved checkpoint on the config's tasks\n"
            "  predict CONFIG --checkpoint DIR --task NAME [--in FILE] [--out FILE]\n"
            "        JSONL in, JSONL out: label and probabilities, value, or tags per input line\n"
            "  generate --model DIR --prompt TEXT [--max N] [--temperature T] [--top-k K] [--seed N]\n"
            "        continue a prompt with a base model (e.g. one made by pretrain)\n"
            "  pretrain --text FILE [--text FILE...] --out DIR [--vocab N] [--layers N] [--embd N]\n"
            "           [--heads N] [--ctx N] [--steps N] [--seconds S] [--batch N] [--lr X] [--seed N]\n"
            "           [--threads N] [--print-every N]\n"
            "        train a byte-level BPE and a small GPT-2 style causal LM on raw text\n"
            "  merge CONFIG [--output PATH] [--lora-rank R]\n"
            "        merge task models or LoRA adapters as a mergekit-style YAML says (docs/merge.md)\n"
            "  info [CONFIG | CHECKPOINT_DIR]\n"
            "        version, OpenBLAS kernel and threads; what a config or checkpoint holds\n"
            "\n"
            "exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 stopped (Ctrl-C)\n"
            "docs/trainer.md describes every train: and pretrain: key.\n");
}

static int cmd_info(int argc, char **argv) {
    printf("mtft %s\n", mtft_version_string());
    printf("OpenBLAS kernel: %s (%s threading)%s\n", mtft_blas_corename(), mtft_blas_threading(),
           mtft_blas_is_fallback() ? " [generic fallback: set OPENBLAS_CORETYPE]" : "");
    printf("threads: %d\n", mtft_get_num_threads());
    if (argc < 1) return 0;
    const char *path = argv[0];
    char sidecar[4200];
    snprintf(sidecar, sizeof sidecar, "%s/trainer.json", path);
    if (cli_exists(sidecar)) {
        char *s = cli_read_file(sidecar, NULL);
        if (!s) {
            fprintf(stderr, "mtft info: cannot read %s\n", sidecar);
            return EXIT_RUNTIME;
        }
        printf("checkpoint %s:\n%s\n", path, s);
        free(s);
        return 0;
    }
    snprintf(sidecar, sizeof sidecar, "%s/config.json", path);
    if (cli_exists(sidecar)) {
        char *s = cli_read_file(sidecar, NULL);
        if (s) printf("model %s:\n%s\n", path, s);
        free(s);
        return 0;
    }
    cli_config cc;
    if (cli_config_load(&cc, path) != 0) return EXIT_USAGE;
    printf("config %s: %d task(s)\n", path, mtft_config_n_tasks(cc.cfg));
    for (int i = 0; i < mtft_config_n_tasks(cc.cfg); i++) {
        const mtft_task_options *t = mtft_config_task(cc.cfg, i);
        printf("  %-22s %-15s %s\n", t->name, mtft_task_type_name(t->type), t->train_file);
    }
    printf("train: %lld steps, batch %d, max_len %d, lr %g, lora rank %d, balancer %s, base %s\n",
           (long long)cc.topt.max_steps, cc.topt.batch_size, cc.topt.max_len, (double)cc.topt.lr, cc.topt.lora_rank,
           mtft_balance_method_name(cc.topt.balancer.method), cc.base_dir[0] ? cc.base_dir : "(none)");
    cli_config_free(&cc);
    return 0;
}

static int cmd_pretrain(int argc, char **argv) {
    cli_pretrain p;
    cli_pretrain_defaults(&p);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "mtft pretrain: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        i++;
        if (!strcmp(a, "--text")) {
            if (p.n_texts >= CLI_MAX_TEXTS) return fprintf(stderr, "mtft pretrain: too many --text\n"), EXIT_USAGE;
            snprintf(p.texts[p.n_texts++], sizeof p.texts[0], "%s", v);
        } else if (!strcmp(a, "--out")) snprintf(p.out, sizeof p.out, "%s", v);
        else if (!strcmp(a, "--vocab")) p.vocab_size = atoi(v);
        else if (!strcmp(a, "--layers")) p.n_layer = atoi(v);
        else if (!strcmp(a, "--embd")) p.n_embd = atoi(v);
        else if (!strcmp(a, "--heads")) p.n_head = atoi(v);
        else if (!strcmp(a, "--ctx")) p.n_ctx = p.seq_len = atoi(v);
        else if (!strcmp(a, "--steps")) p.steps = atoll(v);
        else if (!strcmp(a, "--seconds")) p.seconds = atof(v);
        else if (!strcmp(a, "--batch")) p.batch_size = atoi(v);
        else if (!strcmp(a, "--lr")) p.lr = (float)atof(v);
        else if (!strcmp(a, "--seed")) p.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--print-every")) p.print_every = atoi(v);
        else if (!strcmp(a, "--threads")) mtft_set_num_threads(atoi(v));
        else {
            fprintf(stderr, "mtft pretrain: unknown option '%s' (see mtft --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!p.n_texts || !p.out[0]) {
        fprintf(stderr, "mtft pretrain: --text FILE and --out DIR are required\n");
        return EXIT_USAGE;
    }
    return cli_pretrain_run(&p);
}

/* ---- generate ------------------------------------------------------------------------ */

static int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL;
    int max_new = 40;
    mtft_generate_options go = MTFT_GENERATE_OPTIONS_INIT;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: mtft generate --model DIR --prompt TEXT [--max N] [--temperature T] [--top-k K] "
                   "[--top-p P] [--seed N]\n  DIR holds config.json, model.safetensors, vocab.json, merges.txt "
                   "(e.g. what mtft pretrain wrote); greedy unless --temperature > 0\n");
            return 0;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "mtft generate: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--max")) max_new = atoi(v);
        else if (!strcmp(a, "--temperature")) go.temperature = (float)atof(v);
        else if (!strcmp(a, "--top-k")) go.top_k = atoi(v);
        else if (!strcmp(a, "--top-p")) go.top_p = (float)atof(v);
        else if (!strcmp(a, "--seed")) go.seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "mtft generate: unknown option '%s'\n", a);
            return EXIT_USAGE;
        }
    }
    if (!model_dir || !prompt || !*prompt || max_new < 1) {
        fprintf(stderr, "mtft generate: --model DIR, a non-empty --prompt TEXT and --max >= 1 are required\n");
        return EXIT_USAGE;
    }
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/vocab.json", model_dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", model_dir);
    mtft_tokenizer *tok = NULL;
    mtft_model *m = NULL;
    int32_t *ids = NULL, *out = NULL;
    char *text = NULL;
    int ret = 0;
    if (mtft_tokenizer_load_hf(&tok, p1, p2) < 0) {
        ret = cli_fail("generate: tokenizer");
        goto done;
    }
    if (mtft_model_load_hf(&m, model_dir) < 0) {
        ret = cli_fail("generate: model");
        goto done;
    }
    go.eos_id = mtft_tokenizer_token_to_id(tok, "<|endoftext|>");
    size_t n = 0;
    mtft_tokenizer_encode(tok, prompt, strlen(prompt), NULL, 0, &n);
    const int ctx = mtft_model_get_config(m)->n_ctx;
    if ((int)n + max_new > ctx) {
        if ((int)n >= ctx) {
            fprintf(stderr, "mtft generate: the prompt is %zu tokens, the model's context %d\n", n, ctx);
            ret = EXIT_USAGE;
            goto done;
        }
        max_new = ctx - (int)n;
    }
    ids = malloc((n ? n : 1) * sizeof *ids);
    out = malloc((size_t)max_new * sizeof *out);
    if (!ids || !out) {
        ret = EXIT_RUNTIME;
        goto done;
    }
    mtft_tokenizer_encode(tok, prompt, strlen(prompt), ids, n, &n);
    int n_out = 0;
    if (mtft_model_generate(m, ids, (int)n, max_new, &go, out, &n_out) < 0) {
        ret = cli_fail("generate");
        goto done;
    }
    size_t len = 0;
    mtft_tokenizer_decode(tok, out, (size_t)n_out, NULL, 0, &len);
    text = malloc(len + 1);
    if (!text || mtft_tokenizer_decode(tok, out, (size_t)n_out, text, len + 1, &len) < 0) {
        ret = cli_fail("generate: decoding");
        goto done;
    }
    printf("%s%s\n", prompt, text);
done:
    free(ids);
    free(out);
    free(text);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    return ret;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("mtft %s\n", mtft_version_string());
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    cli_stop_flag = &g_stop;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "pretrain")) return cmd_pretrain(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return cli_cmd_train(argc - 2, argv + 2, 0);
    if (!strcmp(cmd, "eval")) return cli_cmd_train(argc - 2, argv + 2, 1);
    if (!strcmp(cmd, "predict")) return cli_cmd_predict(argc - 2, argv + 2);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(cmd, "merge")) return cli_cmd_merge(argc - 2, argv + 2);
    fprintf(stderr, "mtft: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
