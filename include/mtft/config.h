/* mtft config: a YAML file (libyaml) turned into the same option structs a C
 * program fills by hand. Nothing in the C API needs a file: every struct
 * returned here can be built with its MTFT_*_OPTIONS_INIT macro instead.
 *
 * A file describes a whole run; every section is optional (docs/config.md
 * lists every key with its type, default and range):
 *   tasks:      task definitions, each with an optional head:
 *                                       -> mtft_task_options, mtft_head_options
 *   data:       pipeline options        -> mtft_data_options, mtft_loader_options,
 *                                          mtft_collate_options (mtft/data.h)
 *   model:      base model directory and architecture -> mtft_model_config
 *   tokenizer:  tokenizer files         -> mtft_run_options
 *   lora:, adapter:                     -> mtft_lora_options, mtft_adapter_options
 *   heads:, sampler:, balancer:, optimizer:, schedule:, eval:, output:, train:
 *                                       -> mtft_trainer_options (sampler and
 *                                          balancer options are inside it),
 *                                          mtft_adamw_options, mtft_schedule_options
 *   checkpoint:, output:, eval:         -> mtft_run_options (paths), mtft_trainer_options
 *   pretrain:                           -> mtft_pretrain_options + mtft_model_config
 * The flat train: keys of earlier configs (lr, sampler, balancer, ...) set
 * the same fields as the sections; one option set twice is an error.
 * Errors give file:line:column and the key path, e.g.
 *   run.yaml:12:7: tasks[2].type: unknown value 'ner2' (expected one of: classification, ...)
 *   run.yaml:4:5: tasks[0].lables: unknown key 'lables' (did you mean 'labels'?)
 * Unknown keys are rejected (with the nearest valid key suggested), values
 * are type- and range-checked, and each task goes through the same checks as
 * mtft_task_new(). Relative paths are relative to the config file. */
#ifndef MTFT_CONFIG_H
#define MTFT_CONFIG_H

#include <stdint.h>

#include "mtft/common.h"
#include "mtft/data.h"
#include "mtft/head.h"
#include "mtft/model.h"
#include "mtft/optim.h"
#include "mtft/peft.h"
#include "mtft/task.h"
#include "mtft/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_config mtft_config;

/* What a run reads and writes besides the option structs of the library.
 * Paths are NULL when not given. */
typedef struct mtft_run_options {
    int version;
    const char *base_model;       /* model.base (or train.base): HF model directory */
    const char *tokenizer_vocab;  /* tokenizer.vocab; default <base_model>/vocab.json */
    const char *tokenizer_merges; /* tokenizer.merges; default <base_model>/merges.txt */
    const char *tokenizer_json;   /* tokenizer.json: an HF tokenizer.json instead of vocab + merges */
    const char *checkpoint_dir;   /* checkpoint.dir (or train.out): where the trained state is saved */
    const char *resume_from;      /* checkpoint.resume: a checkpoint to load before training */
    const char *log_path;         /* output.log (or train.log): JSONL log (also the trainer's log_path) */
    const char *report_path;      /* output.report: HTML report; default: the log path with .html */
    const char *baselines;        /* eval.baselines (or train.baselines): floors to print beside results */
    int threads;                  /* train.threads: 0 = the library default */
    int64_t test_max_examples;    /* eval.test_max_examples: 0 = every test example */
} mtft_run_options;
#define MTFT_RUN_OPTIONS_VERSION 1
#define MTFT_RUN_OPTIONS_INIT {MTFT_RUN_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0}

/* Parse and validate a YAML file. On error *out is NULL and the thread's
 * error holds "path:line:col: key.path: what". */
MTFT_API int mtft_config_load_file(mtft_config **out, const char *path);
/* The same from memory. name is used in messages; base_dir (may be NULL)
 * is the directory relative paths are resolved against. */
MTFT_API int mtft_config_load_string(mtft_config **out, const char *text, size_t len, const char *name,
                                     const char *base_dir);
MTFT_API void mtft_config_free(mtft_config *cfg);

/* The tasks: section (borrowed; valid until mtft_config_free). */
MTFT_API int mtft_config_n_tasks(const mtft_config *cfg);
MTFT_API const mtft_task_options *mtft_config_task(const mtft_config *cfg, int i);
/* The data: section; defaults (the _INIT values) when the file has none. */
MTFT_API const mtft_data_options *mtft_config_data(const mtft_config *cfg);
MTFT_API const mtft_loader_options *mtft_config_loader(const mtft_config *cfg);
MTFT_API const mtft_collate_options *mtft_config_collate(const mtft_config *cfg);
/* 1 when the file has the top-level section `name` ("model", "train", ...). */
MTFT_API int mtft_config_has_section(const mtft_config *cfg, const char *name);

/* The head of task i from its head: entry (kind from the task type, pool
 * and hidden_size from heads: unless given, name = the task name, n_labels
 * from the listed labels: 0 when they come from the data), or NULL when the
 * task has no head: entry (then mtft_trainer_add_task(tr, task, NULL)
 * chooses the head from the type and the trainer's head options). */
MTFT_API const mtft_head_options *mtft_config_task_head(const mtft_config *cfg, int i);
/* The same copied into *out with n_labels taken from the loaded task
 * (mtft_task_n_labels; 1 for regression, 0 for generation). Returns 1 when
 * the task has a head: entry, 0 when it has none (*out untouched), or a
 * negative status. */
MTFT_API int mtft_config_task_head_for(const mtft_config *cfg, int i, const mtft_task *task,
                                       mtft_head_options *out);

/* The run sections (borrowed; the _INIT values where the file says
 * nothing). */
MTFT_API const mtft_model_config *mtft_config_model(const mtft_config *cfg);
MTFT_API const mtft_run_options *mtft_config_run(const mtft_config *cfg);
MTFT_API const mtft_lora_options *mtft_config_lora(const mtft_config *cfg);
MTFT_API const mtft_adapter_options *mtft_config_adapter(const mtft_config *cfg);
/* Everything the trainer takes: sampler, balancer, optimizer, schedule,
 * heads, eval, output and train keys. progress and payload are NULL. */
MTFT_API const mtft_trainer_options *mtft_config_trainer(const mtft_config *cfg);
MTFT_API const mtft_sampler_options *mtft_config_sampler(const mtft_config *cfg);   /* = &trainer->sampler */
MTFT_API const mtft_balancer_options *mtft_config_balancer(const mtft_config *cfg); /* = &trainer->balancer */
/* AdamW and schedule options with the trainer's lr, betas, eps, weight
 * decay, warmup, schedule kind, min_lr_ratio and total_steps = max_steps. */
MTFT_API const mtft_adamw_options *mtft_config_adamw(const mtft_config *cfg);
MTFT_API const mtft_schedule_options *mtft_config_schedule(const mtft_config *cfg);
/* pretrain: options (the architecture is in mtft_config_model) and its
 * text files (*n_out may be NULL). */
MTFT_API const mtft_pretrain_options *mtft_config_pretrain(const mtft_config *cfg);
MTFT_API const char *const *mtft_config_pretrain_texts(const mtft_config *cfg, int *n_out);

/* The key reference (Markdown tables generated from the schema tables, as
 * in docs/config.md). Writes up to cap bytes (NUL-terminated when it fits),
 * sets *len_out to the full length; MTFT_ERANGE when cap <= *len_out. */
MTFT_API int mtft_config_reference_markdown(char *buf, size_t cap, size_t *len_out);

#ifdef __cplusplus
}
#endif
#endif
