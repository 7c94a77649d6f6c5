/* Shared declarations of the `mtft` command's files (src/cli). */
#ifndef MTFT_CLI_H
#define MTFT_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "mtft/mtft.h"
#include "mtft/config.h"
#include "mtft/trainer.h"

#define CLI_MAX_TEXTS 16
#define CLI_PATH 4096

typedef struct cli_pretrain {
    char texts[CLI_MAX_TEXTS][CLI_PATH];
    int n_texts;
    char out[CLI_PATH];
    int vocab_size, n_layer, n_embd, n_head, n_ctx, seq_len, batch_size, print_every;
    int64_t steps;
    double seconds;
    float lr;
    uint64_t seed;
} cli_pretrain;

/* A YAML config: tasks:/data: through mtft_config, train:/pretrain: here. */
typedef struct cli_config {
    mtft_config *cfg;
    mtft_trainer_options topt;
    char base_dir[CLI_PATH];   /* train.base: a HF model dir with vocab.json + merges.txt */
    char out_dir[CLI_PATH];    /* train.out: checkpoint dir ("" none) */
    char log_path[CLI_PATH];   /* train.log */
    char ckpt_dir[CLI_PATH];   /* train.ckpt_dir: periodic checkpoints */
    char baselines[CLI_PATH];  /* train.baselines */
    char lora_targets[256];
    int64_t test_max_examples;
    int threads;
    int has_pretrain;
    cli_pretrain pre;
} cli_config;

void cli_pretrain_defaults(cli_pretrain *p);
int cli_pretrain_run(const cli_pretrain *p);
/* Returns 0, or prints the error and returns non-zero. */
int cli_config_load(cli_config *cc, const char *path);
void cli_config_free(cli_config *cc);
int cli_cmd_train(int argc, char **argv, int eval_only);
int cli_cmd_predict(int argc, char **argv);
/* HTML report with SVG charts from the trainer's JSONL log; 0 or -1. */
int cli_write_report(const char *log_path, const char *html_path, mtft_trainer *tr, const char *title);

int cli_fail(const char *what);
char *cli_read_file(const char *path, size_t *len);
int cli_exists(const char *path);
int cli_mkdirs(const char *path);

extern volatile sig_atomic_t *cli_stop_flag;

#endif
