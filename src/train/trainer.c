/* The multitask trainer: sampler -> grouped batch -> one forward (shared
 * trunk, per-task LoRA and heads) -> balancer -> one backward -> clipping ->
 * AdamW with a schedule; per-task evaluation, best-weight selection, early
 * stopping, progress callback, JSONL log. Checkpoints are in trainer_ckpt.c. */
#include <math.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trainer_impl.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

double mtft_trainer__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *dup_or_null(const char *s) { return s && *s ? mtft__strdup(s) : NULL; }

/* ---- lifetime ------------------------------------------------------------------ */

int mtft_trainer_new(mtft_trainer **out, mtft_model *m, const mtft_trainer_options *o) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    MTFT_CHECK_ARG(m);
    mtft_trainer_options d = MTFT_TRAINER_OPTIONS_INIT;
    if (!o) o = &d;
    if (o->version != MTFT_TRAINER_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "trainer: options version %d, expected %d (start from MTFT_TRAINER_OPTIONS_INIT)",
                         o->version, MTFT_TRAINER_OPTIONS_VERSION);
#define RQ(cond, ...) \
    do {              \
        if (!(cond)) return mtft__err(MTFT_ERANGE, __VA_ARGS__); \
    } while (0)
    RQ(o->max_steps >= 1, "trainer: max_steps %lld must be >= 1", (long long)o->max_steps);
    RQ(o->batch_size >= 1, "trainer: batch_size %d must be >= 1", o->batch_size);
    RQ(o->max_len >= 2 && o->max_len <= mtft_model_get_config(m)->n_ctx,
       "trainer: max_len %d must be in [2, %d] (the model's n_ctx)", o->max_len, mtft_model_get_config(m)->n_ctx);
    RQ(isfinite(o->lr) && o->lr > 0.0f, "trainer: lr %g must be > 0", (double)o->lr);
    RQ(isfinite(o->weight_decay) && o->weight_decay >= 0.0f, "trainer: weight_decay %g must be >= 0",
       (double)o->weight_decay);
    RQ(o->warmup_steps >= 0, "trainer: warmup_steps %lld must be >= 0", (long long)o->warmup_steps);
    RQ(o->schedule >= MTFT_LR_CONSTANT && o->schedule <= MTFT_LR_COSINE, "trainer: unknown schedule %d",
       (int)o->schedule);
    RQ(o->min_lr_ratio >= 0.0f && o->min_lr_ratio <= 1.0f, "trainer: min_lr_ratio %g must be in [0, 1]",
       (double)o->min_lr_ratio);
    RQ(o->grad_clip >= 0.0f, "trainer: grad_clip %g must be >= 0 (0: off)", (double)o->grad_clip);
    RQ(o->lora_rank >= 0 && o->shared_lora_rank >= 0, "trainer: lora ranks must be >= 0 (got %d and %d)",
       o->lora_rank, o->shared_lora_rank);
    RQ(o->base_lr_scale >= 0.0f, "trainer: base_lr_scale %g must be >= 0", (double)o->base_lr_scale);
    RQ(o->eval_batch_size >= 1, "trainer: eval_batch_size %d must be >= 1", o->eval_batch_size);
    RQ(o->max_seconds >= 0.0, "trainer: max_seconds %g must be >= 0", o->max_seconds);
    RQ(o->head_hidden >= 0, "trainer: head_hidden %d must be >= 0", o->head_hidden);
    RQ(o->save_every >= 0 && o->keep_last >= 0, "trainer: save_every %lld and keep_last %d must be >= 0",
       (long long)o->save_every, o->keep_last);
    if (o->save_every > 0 && !(o->ckpt_dir && *o->ckpt_dir))
        return mtft__err(MTFT_EINVAL, "trainer: save_every %lld needs ckpt_dir", (long long)o->save_every);
    RQ(o->optimizer == MTFT_OPTIM_ADAMW || o->optimizer == MTFT_OPTIM_SGD,
       "trainer: unknown optimizer %d (adamw or sgd)", o->optimizer);
    RQ(isfinite(o->momentum) && o->momentum >= 0.0f && o->momentum < 1.0f,
       "trainer: momentum %g must be in [0, 1)", (double)o->momentum);
    RQ(o->grad_accum_steps >= 1, "trainer: grad_accum_steps %d must be >= 1", o->grad_accum_steps);
    RQ(isfinite(o->sam_rho) && o->sam_rho >= 0.0f, "trainer: sam_rho %g must be >= 0 (0: off)", (double)o->sam_rho);
    RQ(o->sam_per_task == 0 || o->sam_per_task == 1, "trainer: sam_per_task %d must be 0 or 1", o->sam_per_task);
#undef RQ
    const int grad_level = mtft_balancer_is_gradient_level(o->balancer.method) == 1;
    if (o->sam_per_task && !(o->sam_rho > 0.0f))
        return mtft__err(MTFT_EINVAL, "trainer: sam_per_task needs sam_rho > 0 (the perturbation radius)");
    if (grad_level && (o->grad_accum_steps > 1 || (o->sam_rho > 0.0f && !o->sam_per_task)))
        return mtft__err(MTFT_EINVAL,
                         "trainer: balancer '%s' is gradient-level: grad_accum_steps (%d) must be 1 and sam_rho (%g) 0 "
                         "(or per-task SAM: sam_per_task)",
                         mtft_balance_method_name(o->balancer.method), o->grad_accum_steps, (double)o->sam_rho);
    if (o->sam_rho > 0.0f && o->grad_accum_steps > 1)
        return mtft__err(MTFT_EINVAL, "trainer: sam_rho %g needs grad_accum_steps 1 (got %d)", (double)o->sam_rho,
                         o->grad_accum_steps);
    if (!o->train_base && !o->lora_rank && !o->shared_lora_rank)
        mtft__log(MTFT_LOG_WARN, "trainer: base frozen and no LoRA: only the heads train");
    if (grad_level && o->shared_lora_rank < 1 && !(o->sam_per_task && o->train_base))
        return mtft__err(MTFT_EINVAL,
                         "trainer: balancer '%s' works on per-task gradients of shared trainable parameters: set "
                         "shared_lora_rank > 0 (a task-agnostic LoRA whose gradient it balances; with per-task SAM "
                         "a trained base also counts)",
                         mtft_balance_method_name(o->balancer.method));
    mtft_trainer *tr = mtft__calloc(1, sizeof *tr);
    if (!tr) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    tr->o = *o;
    tr->lora_targets = dup_or_null(o->lora_targets);
    tr->log_path = dup_or_null(o->log_path);
    tr->ckpt_dir = dup_or_null(o->ckpt_dir);
    tr->o.ckpt_dir = tr->ckpt_dir;
    tr->o.lora_targets = tr->lora_targets;
    tr->o.log_path = tr->log_path;
    tr->m = m;
    mtft_batch_init(&tr->batch);
    mtft_batch_init(&tr->sub);
    tr->best_score = -INFINITY;
    *out = tr;
    return MTFT_OK;
}

void mtft_trainer_free(mtft_trainer *tr) {
    if (!tr) return;
    if (tr->log) fclose(tr->log);
    mtft_adamw_free(tr->opt);
    mtft_sgd_free(tr->sgd);
    mtft_sam_free(tr->sam);
    mtft_sampler_free(tr->sampler);
    mtft_balancer_free(tr->bal);
    mtft_peft_free(tr->peft);
    mtft_graph_free(tr->g);
    mtft_batch_dispose(&tr->batch);
    mtft_batch_dispose(&tr->sub);
    mtft_kv_cache_free(tr->gen_kv);
    mtft_task_sam_free(tr->tsam);
    mtft__free(tr->group_task);
    mtft__free(tr->tsam_vec);
    mtft__free(tr->tsam_e);
    mtft__free(tr->tsam_save);
    mtft__free(tr->bal_state2);
    mtft__free(tr->sub_off);
    mtft__free(tr->tsam_w);
    for (int k = 0; k < tr->n_tasks; k++) {
        mtft_head_free(tr->heads[k]);
        mtft__free(tr->names[k]);
    }
    for (int i = 0; i < tr->n_groups; i++) mtft__free(tr->best[i]);
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) mtft__free(tr->res[s]);
    mtft__free(tr->best);
    mtft__free(tr->groups);
    mtft__free(tr->group_scale);
    mtft__free(tr->tasks);
    mtft__free(tr->heads);
    mtft__free(tr->names);
    mtft__free(tr->primary);
    mtft__free(tr->buf);
    mtft__free(tr->bal_state);
    mtft__free(tr->gsum);
    mtft__free(tr->lora_targets);
    mtft__free(tr->log_path);
    mtft__free(tr->ckpt_dir);
    mtft__free(tr);
}

/* ---- tasks ----------------------------------------------------------------------- */

/* The selection metric of a task: its select_metric, else the type default. */
static int primary_of(const mtft_task *task, mtft_metric *out) {
    const char *sel = mtft_task_select_metric(task);
    if (sel) {
        if (mtft_metric_from_name(sel, out) < 0)
            return mtft__err(MTFT_ENOTFOUND, "trainer: task '%s': select_metric '%s' is not a metric name",
                             mtft_task_name(task), sel);
        if (*out == MTFT_METRIC_SPAN_F1) { /* reported for BIO/IOBES tag sets only */
            for (int i = 0; i < mtft_task_n_labels(task); i++) {
                const char *t = mtft_task_label(task, i);
                if (!t) t = "";
                if (strcmp(t, "O") != 0 && !(t[0] && strchr("BIES", t[0]) && t[1] == '-'))
                    return mtft__err(MTFT_EINVAL,
                                     "trainer: task '%s': select_metric span_f1 needs BIO/IOBES tags (O, B-x, I-x, "
                                     "E-x, S-x), but tag %d is '%s'; choose token_accuracy, tag_micro_f1 or "
                                     "tag_macro_f1",
                                     mtft_task_name(task), i, t);
            }
        }
        return MTFT_OK;
    }
    switch (mtft_task_type_of(task)) {
    case MTFT_TASK_REGRESSION: *out = MTFT_METRIC_PEARSON; break;
    case MTFT_TASK_TAGGING: *out = MTFT_METRIC_TOKEN_ACCURACY; break;
    case MTFT_TASK_GENERATION: *out = MTFT_METRIC_NLL; break;
    default: *out = MTFT_METRIC_ACCURACY; break;
    }
    return MTFT_OK;
}

/* exact_match and chrf come from greedy decodes, which need the tokenizer. */
static int check_select(const mtft_trainer *tr) {
    for (int k = 0; k < tr->n_tasks; k++)
        if ((tr->primary[k] == MTFT_METRIC_EXACT_MATCH || tr->primary[k] == MTFT_METRIC_CHRF) && !tr->gen_tok)
            return mtft__err(MTFT_ESTATE,
                             "trainer: task '%s': select_metric %s is computed from greedy decodes; call "
                             "mtft_trainer_set_tokenizer first",
                             tr->names[k], mtft_metric_name(tr->primary[k]));
    return MTFT_OK;
}

int mtft_trainer_add_task(mtft_trainer *tr, mtft_task *task, const mtft_head_options *head) {
    MTFT_CHECK_ARG(tr && task);
    if (tr->prepared)
        return mtft__err(MTFT_ESTATE, "trainer: add_task('%s') after the trainer started; add every task first",
                         mtft_task_name(task));
    const char *name = mtft_task_name(task);
    const mtft_task_type type = mtft_task_type_of(task);
    if (mtft_task_count(task, MTFT_SPLIT_TRAIN) < 1)
        return mtft__err(MTFT_EINVAL, "trainer: task '%s' has no training examples (load it first)", name);
    mtft_metric pm;
    int rc = primary_of(task, &pm);
    if (rc < 0) return rc;
    for (int k = 0; k < tr->n_tasks; k++)
        if (!strcmp(tr->names[k], name)) return mtft__err(MTFT_EINVAL, "trainer: task '%s' added twice", name);
    if (tr->n_tasks == tr->cap) {
        int cap = tr->cap ? 2 * tr->cap : 8;
        mtft_task **t2 = mtft__realloc(tr->tasks, (size_t)cap * sizeof *t2);
        if (t2) tr->tasks = t2;
        mtft_head **h2 = mtft__realloc(tr->heads, (size_t)cap * sizeof *h2);
        if (h2) tr->heads = h2;
        char **n2 = mtft__realloc(tr->names, (size_t)cap * sizeof *n2);
        if (n2) tr->names = n2;
        mtft_metric *p2 = mtft__realloc(tr->primary, (size_t)cap * sizeof *p2);
        if (p2) tr->primary = p2;
        if (!t2 || !h2 || !n2 || !p2) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
        tr->cap = cap;
    }
    mtft_head_options ho = MTFT_HEAD_OPTIONS_INIT;
    if (head) {
        ho = *head;
    } else {
        ho.pool = tr->o.head_pool;
        ho.hidden_size = tr->o.head_hidden;
        switch (type) {
        case MTFT_TASK_CLASSIFICATION: ho.kind = MTFT_HEAD_CLASSIFICATION; ho.n_labels = mtft_task_n_labels(task); break;
        case MTFT_TASK_MULTILABEL: ho.kind = MTFT_HEAD_MULTILABEL; ho.n_labels = mtft_task_n_labels(task); break;
        case MTFT_TASK_REGRESSION: ho.kind = MTFT_HEAD_REGRESSION; ho.n_labels = 1; break;
        case MTFT_TASK_TAGGING: ho.kind = MTFT_HEAD_TOKEN_CLASSIFICATION; ho.n_labels = mtft_task_n_labels(task); break;
        case MTFT_TASK_GENERATION: ho.kind = MTFT_HEAD_LM; ho.n_labels = 0; ho.hidden_size = 0; break;
        }
    }
    ho.name = name;
    mtft_head *h = NULL;
    rc = mtft_head_new(&h, mtft_model_get_config(tr->m)->n_embd, &ho, tr->o.seed * 1000003u + 17u + (uint64_t)tr->n_tasks);
    if (rc < 0) {
        mtft__err_prefix("trainer: head of task '%s'", name);
        return rc;
    }
    if (ho.kind == MTFT_HEAD_REGRESSION && ho.n_labels == 1) {
        int64_t n = mtft_task_count(task, MTFT_SPLIT_TRAIN);
        float *v = mtft__malloc((size_t)n * sizeof *v);
        if (!v) {
            mtft_head_free(h);
            return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
        }
        for (int64_t i = 0; i < n; i++) {
            mtft_example ex;
            mtft_task_example(task, MTFT_SPLIT_TRAIN, i, &ex);
            v[i] = ex.value;
        }
        rc = mtft_head_fit_target_stats(h, v, n, 1);
        mtft__free(v);
        if (rc < 0) {
            mtft_head_free(h);
            return rc;
        }
    }
    char *nm = mtft__strdup(name);
    if (!nm) {
        mtft_head_free(h);
        return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    }
    const int k = tr->n_tasks++;
    tr->tasks[k] = task;
    tr->heads[k] = h;
    tr->names[k] = nm;
    tr->primary[k] = pm;
    return k;
}

int mtft_trainer_n_tasks(const mtft_trainer *tr) { return tr ? tr->n_tasks : 0; }
const char *mtft_trainer_task_name(const mtft_trainer *tr, int task) {
    return tr && task >= 0 && task < tr->n_tasks ? tr->names[task] : NULL;
}
mtft_head *mtft_trainer_head(mtft_trainer *tr, int task) {
    return tr && task >= 0 && task < tr->n_tasks ? tr->heads[task] : NULL;
}
mtft_metric mtft_trainer_primary_metric(const mtft_trainer *tr, int task) {
    return tr && task >= 0 && task < tr->n_tasks ? tr->primary[task] : MTFT_METRIC_ACCURACY;
}
int64_t mtft_trainer_step(const mtft_trainer *tr) { return tr ? tr->step : 0; }
int mtft_trainer_set_max_steps(mtft_trainer *tr, int64_t max_steps) {
    MTFT_CHECK_ARG(tr);
    if (max_steps < 1) return mtft__err(MTFT_ERANGE, "trainer: max_steps %lld must be >= 1", (long long)max_steps);
    tr->o.max_steps = max_steps;
    return MTFT_OK;
}
int mtft_trainer_last_losses(const mtft_trainer *tr, float *out) {
    MTFT_CHECK_ARG(tr && out);
    if (!tr->prepared) return mtft__err(MTFT_ESTATE, "trainer: no step was run yet");
    memcpy(out, tr->losses, (size_t)tr->n_tasks * sizeof *out);
    return MTFT_OK;
}

/* ---- preparation -------------------------------------------------------------- */

/* task: the task owning the group, or -1 for a shared one. */
static int add_group(mtft_trainer *tr, mtft_param_group *pg, float scale, int task) {
    if (!pg || mtft_param_group_count(pg) == 0) return MTFT_OK;
    int *t2 = mtft__realloc(tr->group_task, (size_t)(tr->n_groups + 1) * sizeof *t2);
    if (!t2) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    tr->group_task = t2;
    tr->group_task[tr->n_groups] = task;
    mtft_param_group **g2 = mtft__realloc(tr->groups, (size_t)(tr->n_groups + 1) * sizeof *g2);
    if (!g2) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    tr->groups = g2;
    float *s2 = mtft__realloc(tr->group_scale, (size_t)(tr->n_groups + 1) * sizeof *s2);
    if (!s2) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    tr->group_scale = s2;
    float **b2 = mtft__realloc(tr->best, (size_t)(tr->n_groups + 1) * sizeof *b2);
    if (!b2) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    tr->best = b2;
    tr->groups[tr->n_groups] = pg;
    tr->group_scale[tr->n_groups] = scale;
    tr->best[tr->n_groups] = NULL;
    tr->n_groups++;
    int rc = mtft_param_group_set_trainable(pg, 1);
    if (rc < 0) return rc;
    if (tr->sgd) {
        mtft_sgd_group_options so = MTFT_SGD_GROUP_OPTIONS_INIT;
        so.lr_scale = scale;
        return mtft_sgd_add_group(tr->sgd, pg, &so);
    }
    mtft_adamw_group_options go = MTFT_ADAMW_GROUP_OPTIONS_INIT;
    go.lr_scale = scale;
    return mtft_adamw_add_group(tr->opt, pg, &go);
}

/* The configured optimizer (AdamW or SGD). */
static void opt_zero_grad(mtft_trainer *tr) {
    if (tr->sgd) mtft_sgd_zero_grad(tr->sgd);
    else mtft_adamw_zero_grad(tr->opt);
}
static int opt_step(mtft_trainer *tr, float lr) {
    int rc;
    if (tr->sgd) {
        if ((rc = mtft_sgd_set_lr(tr->sgd, lr)) < 0) return rc;
        return mtft_sgd_step(tr->sgd);
    }
    if ((rc = mtft_adamw_set_lr(tr->opt, lr)) < 0) return rc;
    return mtft_adamw_step(tr->opt);
}

static const char *default_targets(const mtft_model *m) {
    return mtft_model_get_config(m)->arch == MTFT_ARCH_LLAMA
               ? "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
               : "attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj";
}

/* Per-task SAM: the sizes of the shared and per-task trainable groups and
 * the scratch of a step (allocated once). */
static int task_sam_prepare(mtft_trainer *tr) {
    const int K = tr->n_tasks;
    size_t n_shared = 0, own_max = 0;
    size_t *own = mtft__calloc((size_t)K, sizeof *own);
    if (!own) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    for (int i = 0; i < tr->n_groups; i++) {
        size_t n = 0;
        mtft_param_group_grad(tr->groups[i], &n);
        if (tr->group_task[i] < 0)
            n_shared += n;
        else
            own[tr->group_task[i]] += n;
    }
    for (int k = 0; k < K; k++) own_max = own[k] > own_max ? own[k] : own_max;
    mtft__free(own);
    if (tr->grad_level && n_shared == 0)
        return mtft__err(MTFT_EINVAL, "trainer: per-task SAM with balancer '%s' needs shared trainable parameters",
                         mtft_balance_method_name(tr->o.balancer.method));
    tr->n_shared = n_shared;
    tr->n_save = n_shared + own_max;
    int rc;
    if (n_shared > 0) {
        if ((rc = mtft_task_sam_new(&tr->tsam, K, n_shared, tr->o.sam_rho)) < 0) {
            mtft__err_prefix("trainer: per-task SAM over %zu shared trainable floats and %d tasks", n_shared, K);
            return rc;
        }
    }
    const size_t bs = mtft_balancer_state_size(tr->bal);
    tr->tsam_vec = mtft__malloc((n_shared ? n_shared : 1) * sizeof *tr->tsam_vec);
    tr->tsam_e = mtft__malloc((n_shared ? n_shared : 1) * sizeof *tr->tsam_e);
    tr->tsam_save = mtft__malloc((tr->n_save ? tr->n_save : 1) * sizeof *tr->tsam_save);
    tr->bal_state2 = mtft__malloc(bs ? bs : 1);
    tr->sub_off = mtft__malloc((size_t)(K + 1) * sizeof *tr->sub_off);
    tr->tsam_w = mtft__malloc((size_t)K * sizeof *tr->tsam_w);
    if (!tr->tsam_vec || !tr->tsam_e || !tr->tsam_save || !tr->bal_state2 || !tr->sub_off || !tr->tsam_w)
        return mtft__err(MTFT_ENOMEM, "trainer: out of memory (per-task SAM scratch)");
    return MTFT_OK;
}

int mtft_trainer__prepare(mtft_trainer *tr) {
    if (tr->prepared) return MTFT_OK;
    if (tr->n_tasks < 1) return mtft__err(MTFT_ESTATE, "trainer: no tasks (mtft_trainer_add_task first)");
    const int K = tr->n_tasks;
    int rc;
    /* one scratch block for the per-step arrays */
    const int B = tr->o.batch_size > tr->o.eval_batch_size ? tr->o.batch_size : tr->o.eval_batch_size;
    const int T = tr->o.max_len;
    size_t bytes = (size_t)K * (sizeof(float) * 4 + sizeof(double) + sizeof(int) + sizeof(uint8_t) + 2 * sizeof(int64_t)) +
                   (size_t)(K + 1) * sizeof(int32_t) + (size_t)B * (sizeof(int32_t) + sizeof(int64_t) + sizeof(mtft_example_ref)) +
                   (size_t)B * (size_t)T * sizeof(int32_t) + (size_t)K * sizeof(int32_t) + (size_t)B * (size_t)T * sizeof(float) + 256;
    tr->buf = mtft__calloc(1, bytes);
    if (!tr->buf) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    char *p = tr->buf;
#define TAKE(ptr, n) (ptr = (void *)p, p += (((size_t)(n) * sizeof *(ptr)) + 7) & ~(size_t)7)
    TAKE(tr->losses, K);
    TAKE(tr->weights, K);
    TAKE(tr->last_w, K);
    TAKE(tr->w_out, K);
    TAKE(tr->rates, K);
    TAKE(tr->rows, K);
    TAKE(tr->mask, K);
    TAKE(tr->n_tok, K);
    TAKE(tr->n_smp, K);
    TAKE(tr->row_off, K + 1);
    TAKE(tr->task_ids, B);
    TAKE(tr->ex_idx, B);
    TAKE(tr->refs, B);
    TAKE(tr->pred_ids, (size_t)B * T > (size_t)K ? (size_t)B * T : (size_t)K);
    TAKE(tr->pred_vals, (size_t)B * T);
#undef TAKE
    for (int k = 0; k < K; k++) tr->last_w[k] = 1.0f, tr->losses[k] = NAN;
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) {
        tr->res[s] = mtft__calloc((size_t)K, sizeof *tr->res[s]);
        if (!tr->res[s]) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    }
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.seed = tr->o.seed;
    go.arena_bytes = (size_t)16 << 20;
    if ((rc = mtft_graph_new(&tr->g, &go)) < 0) return rc;
    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = tr->o.lr;
    ao.weight_decay = tr->o.weight_decay;
    ao.beta1 = tr->o.beta1;
    ao.beta2 = tr->o.beta2;
    ao.eps = tr->o.eps;
    if (tr->o.optimizer == MTFT_OPTIM_SGD) {
        mtft_sgd_options so = MTFT_SGD_OPTIONS_INIT;
        so.lr = tr->o.lr;
        so.weight_decay = tr->o.weight_decay;
        so.momentum = tr->o.momentum;
        if ((rc = mtft_sgd_new(&tr->sgd, &so)) < 0) return rc;
    } else if ((rc = mtft_adamw_new(&tr->opt, &ao)) < 0) {
        return rc;
    }
    tr->tsam_on = tr->o.sam_rho > 0.0f && tr->o.sam_per_task;
    if (tr->o.sam_rho > 0.0f && !tr->tsam_on && (rc = mtft_sam_new(&tr->sam, NULL)) < 0) return rc;
    /* what trains: the base (optional), LoRA per task and shared, the heads */
    mtft_param_group *base = mtft_model_base_group(tr->m);
    if (tr->o.train_base) {
        if ((rc = add_group(tr, base, tr->o.base_lr_scale, -1)) < 0) return rc;
    } else {
        mtft_param_group_set_trainable(base, 0);
    }
    if (tr->o.lora_rank > 0 || tr->o.shared_lora_rank > 0) {
        if ((rc = mtft_peft_new(&tr->peft, tr->m, K)) < 0) return rc;
        mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
        lo.target_modules = tr->lora_targets ? tr->lora_targets : default_targets(tr->m);
        if (tr->o.shared_lora_rank > 0) {
            lo.rank = tr->o.shared_lora_rank;
            lo.alpha = tr->o.lora_alpha * (float)tr->o.shared_lora_rank / (float)(tr->o.lora_rank > 0 ? tr->o.lora_rank : tr->o.shared_lora_rank);
            lo.seed = tr->o.seed * 7919u + 1u;
            if ((rc = mtft_peft_add_lora(tr->peft, MTFT_PEFT_SHARED, &lo, &tr->shared)) < 0) return rc;
            if ((rc = add_group(tr, tr->shared, 1.0f, -1)) < 0) return rc;
        }
        if (tr->o.lora_rank > 0) {
            for (int k = 0; k < K; k++) {
                mtft_param_group *pg = NULL;
                lo.rank = tr->o.lora_rank;
                lo.alpha = tr->o.lora_alpha;
                lo.seed = tr->o.seed * 7919u + 101u + (uint64_t)k;
                if ((rc = mtft_peft_add_lora(tr->peft, k, &lo, &pg)) < 0) {
                    mtft__err_prefix("trainer: LoRA of task '%s'", tr->names[k]);
                    return rc;
                }
                if ((rc = add_group(tr, pg, 1.0f, k)) < 0) return rc;
            }
        }
    }
    for (int k = 0; k < K; k++)
        if ((rc = add_group(tr, mtft_head_group(tr->heads[k]), 1.0f, k)) < 0) return rc;
    if (tr->n_groups == 0) return mtft__err(MTFT_EINVAL, "trainer: nothing to train (no trainable parameters)");
    /* sampler over the training splits */
    int64_t *sizes = mtft__malloc((size_t)K * sizeof *sizes);
    if (!sizes) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    for (int k = 0; k < K; k++) sizes[k] = mtft_task_count(tr->tasks[k], MTFT_SPLIT_TRAIN);
    mtft_sampler_options so = tr->o.sampler;
    if (!so.seed) so.seed = tr->o.seed * 2654435761u + 3u;
    rc = mtft_sampler_new(&tr->sampler, K, sizes, &so);
    mtft__free(sizes);
    if (rc < 0) {
        mtft__err_prefix("trainer: sampler");
        return rc;
    }
    mtft_balancer_options bo = tr->o.balancer;
    if (!bo.seed) bo.seed = tr->o.seed * 40503u + 5u;
    if ((rc = mtft_balancer_new(&tr->bal, K, &bo)) < 0) {
        mtft__err_prefix("trainer: balancer");
        return rc;
    }
    tr->grad_level = mtft_balancer_is_gradient_level(bo.method) == 1;
    if (tr->tsam_on && (rc = task_sam_prepare(tr)) < 0) return rc;
    if (tr->grad_level && !tr->tsam_on) {
        if ((rc = mtft_param_group_set_split(tr->shared, K)) < 0) return rc;
        size_t n = 0;
        mtft_param_group_grad(tr->shared, &n);
        tr->gsum = mtft__malloc((n ? n : 1) * sizeof *tr->gsum);
        if (!tr->gsum) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    }
    tr->bal_state_n = mtft_balancer_state_size(tr->bal);
    tr->bal_state = mtft__malloc(tr->bal_state_n ? tr->bal_state_n : 1);
    if (!tr->bal_state) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    if (tr->log_path) {
        tr->log = fopen(tr->log_path, "a");
        if (!tr->log)
            return mtft__err(MTFT_EIO, "trainer: cannot open the log '%s' for appending: %s", tr->log_path,
                             strerror(errno));
    }
    tr->prepared = 1;
    return MTFT_OK;
}

/* ---- one step ------------------------------------------------------------------- */

static float lr_at(const mtft_trainer_options *o, int64_t s) {
    if (o->warmup_steps > 0 && s < o->warmup_steps) return o->lr * (float)(s + 1) / (float)o->warmup_steps;
    if (o->schedule == MTFT_LR_CONSTANT) return o->lr;
    const int64_t span = o->max_steps - o->warmup_steps;
    double q = span > 0 ? (double)(s - o->warmup_steps) / (double)span : 1.0;
    if (q > 1.0) q = 1.0;
    const double f = o->schedule == MTFT_LR_LINEAR ? 1.0 - q : 0.5 * (1.0 + cos(M_PI * q));
    return (float)((double)o->lr * ((double)o->min_lr_ratio + (1.0 - (double)o->min_lr_ratio) * f));
}

static void fill_targets(mtft_trainer *tr, const mtft_batch *b, mtft_head_targets *t) {
    for (int k = 0; k < tr->n_tasks; k++) {
        memset(&t[k], 0, sizeof t[k]);
        switch (mtft_task_type_of(tr->tasks[k])) {
        case MTFT_TASK_CLASSIFICATION: t[k].class_ids = b->labels; break;
        case MTFT_TASK_MULTILABEL: t[k].values = b->multi_labels; t[k].values_stride = b->label_width; break;
        case MTFT_TASK_REGRESSION: t[k].values = b->values; t[k].values_stride = 1; break;
        default: t[k].token_ids = b->targets; break;
        }
    }
}

/* Collate refs already grouped by task. */
static int collate(mtft_trainer *tr, int n) {
    mtft_collate_options co = MTFT_COLLATE_OPTIONS_INIT;
    co.max_len = tr->o.max_len;
    co.truncation = tr->o.truncation;
    co.pad_id = tr->o.pad_id;
    return mtft_batch_collate(&tr->batch, tr->tasks, tr->n_tasks, tr->refs, n, &co);
}

/* Sum of squares of every trainable gradient, in double. */
static double grad_sumsq(mtft_trainer *tr) {
    double s = 0.0;
    for (int i = 0; i < tr->n_groups; i++) {
        size_t n = 0;
        const float *gr = mtft_param_group_grad(tr->groups[i], &n);
        if (!gr) continue;
        for (size_t j = 0; j < n; j++) s += (double)gr[j] * (double)gr[j];
    }
    return s;
}

static void grad_scale(mtft_trainer *tr, float f) {
    for (int i = 0; i < tr->n_groups; i++) {
        size_t n = 0;
        float *gr = mtft_param_group_grad(tr->groups[i], &n);
        if (!gr) continue;
        for (size_t j = 0; j < n; j++) gr[j] *= f;
    }
}

static int report(mtft_trainer *tr, mtft_progress *pr);

/* Draw one micro-batch of batch_size rows from the sampler, group it by task
 * and collate it; set rows, row_off, mask, n_tok, n_smp. Returns 1 when the
 * sampler ran out of data, 0 on success. */
static int draw_batch(mtft_trainer *tr, int64_t *tokens) {
    const int K = tr->n_tasks;
    int rc = mtft_sampler_next_batch(tr->sampler, tr->o.batch_size, tr->task_ids, tr->ex_idx);
    if (rc == MTFT_ESTATE && mtft_sampler_finished(tr->sampler)) {
        mtft_error_clear();
        return 1;
    }
    if (rc < 0) return rc;
    const int n = rc;
    if (n < 1) return 1;
    /* group rows by task (stable) */
    for (int k = 0; k < K; k++) tr->rows[k] = 0;
    for (int r = 0; r < n; r++) tr->rows[tr->task_ids[r]]++;
    tr->row_off[0] = 0;
    for (int k = 0; k < K; k++) tr->row_off[k + 1] = tr->row_off[k] + tr->rows[k];
    {
        int32_t *pos = tr->pred_ids; /* scratch: K ints */
        for (int k = 0; k < K; k++) pos[k] = tr->row_off[k];
        for (int r = 0; r < n; r++) {
            const int k = tr->task_ids[r];
            mtft_example_ref *f = &tr->refs[pos[k]++];
            f->task = k;
            f->split = MTFT_SPLIT_TRAIN;
            f->index = tr->ex_idx[r];
        }
    }
    if ((rc = collate(tr, n)) < 0) return rc;
    const mtft_batch *b = &tr->batch;
    for (int r = 0; r < b->n_rows; r++) *tokens += b->valid_len[r];
    for (int k = 0; k < K; k++) {
        tr->mask[k] = tr->rows[k] > 0;
        tr->n_smp[k] = tr->rows[k];
        int64_t c = 0;
        const mtft_task_type ty = mtft_task_type_of(tr->tasks[k]);
        if (ty == MTFT_TASK_TAGGING || ty == MTFT_TASK_GENERATION) {
            for (int r = tr->row_off[k]; r < tr->row_off[k + 1]; r++)
                for (int t = 0; t < b->seq_len; t++) c += b->targets[(int64_t)r * b->seq_len + t] != MTFT_IGNORE_INDEX;
        } else {
            c = tr->rows[k];
        }
        tr->n_tok[k] = c;
    }
    return 0;
}

/* Training forward of the collated batch b, grouped by task with row
 * offsets row_off (each task's LoRA on its rows); tl[k] gets task k's mean
 * loss (NULL when absent). */
static int forward_rows(mtft_trainer *tr, const mtft_batch *b, const int32_t *row_off, mtft_tensor **tl) {
    const int K = tr->n_tasks;
    mtft_graph *g = tr->g;
    int rc;
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, 1);
    mtft_graph_set_training(g, 1);
    if (tr->peft && (rc = mtft_peft_set_batch(tr->peft, g, row_off)) < 0) return rc;
    mtft_head_targets tg[64];
    mtft_head_targets *tgp = K <= 64 ? tg : mtft__malloc((size_t)K * sizeof *tgp);
    if (!tgp) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    fill_targets(tr, b, tgp);
    mtft_multitask_batch mb = {b->ids, b->n_rows, b->seq_len, b->valid_len, b->task_id};
    rc = mtft_multitask_forward(tr->m, g, &mb, tr->heads, tgp, K, NULL, tl, NULL, NULL);
    if (tgp != tg) mtft__free(tgp);
    if (rc < 0) mtft__err_prefix("trainer: step %lld", (long long)tr->step + 1);
    return rc;
}

static int forward_batch(mtft_trainer *tr, mtft_tensor **tl) { return forward_rows(tr, &tr->batch, tr->row_off, tl); }

/* sum_k scale * w_k * loss_k as a graph node (NULL when no task is present). */
static mtft_tensor *weighted_total(mtft_trainer *tr, mtft_tensor **tl, float scale) {
    mtft_tensor *total = NULL;
    for (int k = 0; k < tr->n_tasks; k++) {
        if (!tl[k]) continue;
        const float w = tr->w_out[k] * scale;
        mtft_tensor *wl = w == 1.0f ? tl[k] : mtft_scale(tr->g, tl[k], w);
        total = total ? mtft_add(tr->g, total, wl) : wl;
    }
    return total;
}

static int backward_total(mtft_trainer *tr, mtft_tensor *total) {
    int rc;
    if (!total) return mtft_graph_status(tr->g) < 0 ? mtft_graph_status(tr->g) : MTFT_ERROR;
    if ((rc = mtft_graph_backward(tr->g, total, NULL)) < 0)
        mtft__err_prefix("trainer: backward of step %lld", (long long)tr->step + 1);
    return rc;
}

/* SAM's second pass: perturb the trainable weights along the gradient, run
 * the same batch forward and backward again (the first pass's weights),
 * restore the weights bit for bit. *finite is cleared when the perturbed
 * loss is not finite. */
static int sam_pass(mtft_trainer *tr, mtft_tensor **tl, int *finite) {
    int rc = mtft_sam_perturb(tr->sam, tr->groups, tr->n_groups, tr->o.sam_rho, NULL);
    if (rc == MTFT_ENUMERIC) {
        mtft_error_clear();
        *finite = 0;
        return MTFT_OK;
    }
    if (rc < 0) return rc;
    opt_zero_grad(tr);
    rc = forward_batch(tr, tl);
    if (rc >= 0) {
        for (int k = 0; k < tr->n_tasks; k++)
            if (tl[k] && !isfinite(mtft_tensor_data(tl[k])[0])) *finite = 0;
        if (*finite) rc = backward_total(tr, weighted_total(tr, tl, 1.0f));
    }
    const int rr = mtft_sam_restore(tr->sam);
    return rc < 0 ? rc : rr;
}

/* ---- per-task SAM ----------------------------------------------------------------- */

/* Zero the gradients of the shared groups and of task k's own groups. */
static void tsam_zero(mtft_trainer *tr, int k) {
    for (int i = 0; i < tr->n_groups; i++)
        if (tr->group_task[i] < 0 || tr->group_task[i] == k) mtft_param_group_zero_grad(tr->groups[i]);
}

/* Copy the shared groups' gradients into v (n_shared floats). */
static void tsam_gather(mtft_trainer *tr, float *v) {
    for (int i = 0; i < tr->n_groups; i++) {
        if (tr->group_task[i] >= 0) continue;
        size_t n = 0;
        const float *gr = mtft_param_group_grad(tr->groups[i], &n);
        memcpy(v, gr, n * sizeof *v);
        v += n;
    }
}

/* Save the weights of the shared groups and of task k's groups, then move
 * them: shared += e (n_shared floats), own += scale * own gradient. */
static void tsam_perturb(mtft_trainer *tr, int k, const float *e, float scale) {
    float *sv = tr->tsam_save;
    for (int i = 0; i < tr->n_groups; i++) {
        const int t = tr->group_task[i];
        if (t >= 0 && t != k) continue;
        size_t n = 0;
        float *w = mtft_param_group_data(tr->groups[i], &n);
        const float *gr = mtft_param_group_grad(tr->groups[i], NULL);
        memcpy(sv, w, n * sizeof *w);
        sv += n;
        if (t < 0) {
            for (size_t j = 0; j < n; j++) w[j] += e[j];
            e += n;
        } else {
            for (size_t j = 0; j < n; j++) w[j] += scale * gr[j];
        }
    }
}

/* Restore what tsam_perturb saved, bit for bit. */
static void tsam_restore(mtft_trainer *tr, int k) {
    const float *sv = tr->tsam_save;
    for (int i = 0; i < tr->n_groups; i++) {
        const int t = tr->group_task[i];
        if (t >= 0 && t != k) continue;
        size_t n = 0;
        float *w = mtft_param_group_data(tr->groups[i], &n);
        memcpy(w, sv, n * sizeof *w);
        sv += n;
    }
}

/* Sum of squares of task k's own gradients. */
static double tsam_own_sumsq(mtft_trainer *tr, int k) {
    double s = 0.0;
    for (int i = 0; i < tr->n_groups; i++) {
        if (tr->group_task[i] != k) continue;
        size_t n = 0;
        const float *gr = mtft_param_group_grad(tr->groups[i], &n);
        for (size_t j = 0; j < n; j++) s += (double)gr[j] * (double)gr[j];
    }
    return s;
}

/* The aggregation A of mtft_task_sam_combine: the balancer's weighted sum
 * (loss level) or the gradient-level balancer itself. The balancer's state
 * advances on the first call (the gradients at w) only. */
typedef struct tsam_agg {
    mtft_trainer *tr;
    mtft_balance_input *in;
    float *w_scratch;
    int calls;
    int rc;
    char msg[512]; /* the balancer's message when it failed */
} tsam_agg;

static int tsam_aggregate(const float *const *vecs, int n_vec, size_t n, float *out, void *payload) {
    tsam_agg *a = payload;
    mtft_trainer *tr = a->tr;
    const int K = tr->n_tasks;
    const int call = a->calls++;
    if (!tr->grad_level) {
        int j = 0;
        memset(out, 0, n * sizeof *out);
        for (int k = 0; k < K && j < n_vec; k++) {
            if (!tr->mask[k]) continue;
            const float w = tr->w_out[k];
            const float *v = vecs[j++];
            for (size_t i = 0; i < n; i++) out[i] += w * v[i];
        }
        return 0;
    }
    const float *gk[64];
    const float **gp = K <= 64 ? gk : mtft__malloc((size_t)K * sizeof *gp);
    if (!gp) {
        a->rc = MTFT_ENOMEM;
        snprintf(a->msg, sizeof a->msg, "out of memory");
        return 1;
    }
    int j = 0;
    for (int k = 0; k < K; k++) gp[k] = tr->mask[k] && j < n_vec ? vecs[j++] : NULL;
    a->in->grads = gp;
    a->in->n_params = (int64_t)n;
    int rc;
    if (call == 0) {
        mtft_balance_output bo = {tr->w_out, out};
        rc = mtft_balancer_step(tr->bal, a->in, &bo);
    } else {
        const size_t bs = mtft_balancer_state_size(tr->bal);
        mtft_balancer_state_save(tr->bal, tr->bal_state2, bs, NULL);
        mtft_balance_output bo = {a->w_scratch, out};
        rc = mtft_balancer_step(tr->bal, a->in, &bo);
        const int lr = mtft_balancer_state_load(tr->bal, tr->bal_state2, bs);
        if (rc >= 0) rc = lr;
    }
    a->in->grads = NULL;
    if (gp != gk) mtft__free(gp);
    if (rc < 0) {
        a->rc = rc;
        snprintf(a->msg, sizeof a->msg, "%s", mtft_error_last()->message);
        return 1;
    }
    return 0;
}

/* One per-task SAM pass over the drawn batch (rows grouped by task): for
 * each task present, its rows alone forward and backward at w (loss and
 * gradient g_k), the perturbation, forward and backward at w + e_k, exact
 * restore. Then the balancer, and the gradients of the step: shared groups
 * A(g) + A(g^SAM - g), task k's own groups w_k g_k^SAM. Sets tr->losses
 * (unperturbed), tr->w_out; clears *finite on a non-finite loss or
 * gradient (nothing changed then but the gradient buffers). */
static int task_sam_pass(mtft_trainer *tr, mtft_tensor **tl, int *finite) {
    const int K = tr->n_tasks;
    const float rho = tr->o.sam_rho;
    int rc = MTFT_OK;
    if (tr->tsam) mtft_task_sam_clear(tr->tsam);
    mtft_collate_options co = MTFT_COLLATE_OPTIONS_INIT;
    co.max_len = tr->o.max_len;
    co.truncation = tr->o.truncation;
    co.pad_id = tr->o.pad_id;
    for (int k = 0; k < K; k++) {
        tr->losses[k] = NAN;
        tr->w_out[k] = 0.0f;
    }
    for (int k = 0; k < K && *finite; k++) {
        if (!tr->rows[k]) continue;
        const int n = tr->rows[k];
        if ((rc = mtft_batch_collate(&tr->sub, tr->tasks, K, tr->refs + tr->row_off[k], n, &co)) < 0) return rc;
        for (int j = 0; j <= K; j++) tr->sub_off[j] = j <= k ? 0 : n;
        /* 1. task k at w */
        tsam_zero(tr, k);
        if ((rc = forward_rows(tr, &tr->sub, tr->sub_off, tl)) < 0) return rc;
        if (!tl[k]) return mtft__err(MTFT_ERROR, "trainer: per-task SAM: task '%s' has no loss", tr->names[k]);
        tr->losses[k] = mtft_tensor_data(tl[k])[0];
        if (!isfinite(tr->losses[k])) {
            *finite = 0;
            break;
        }
        if ((rc = backward_total(tr, tl[k])) < 0) return rc;
        const double own_sq = tsam_own_sumsq(tr, k);
        double scale = 0.0;
        if (!isfinite(own_sq)) {
            *finite = 0;
            break;
        }
        if (tr->tsam) {
            tsam_gather(tr, tr->tsam_vec);
            rc = mtft_task_sam_set_grad(tr->tsam, k, tr->tsam_vec, own_sq, tr->tsam_e, &scale);
            if (rc == MTFT_ENUMERIC) {
                mtft_error_clear();
                *finite = 0;
                break;
            }
            if (rc < 0) return rc;
        } else {
            scale = (double)rho / (sqrt(own_sq) + 1e-12);
        }
        /* 2. task k at w + e_k */
        tsam_perturb(tr, k, tr->tsam_e, (float)scale);
        tsam_zero(tr, k);
        rc = forward_rows(tr, &tr->sub, tr->sub_off, tl);
        if (rc >= 0 && !isfinite(mtft_tensor_data(tl[k])[0])) *finite = 0;
        if (rc >= 0 && *finite) rc = backward_total(tr, tl[k]);
        tsam_restore(tr, k);
        if (rc < 0) return rc;
        if (!*finite) break;
        if (tr->tsam) {
            tsam_gather(tr, tr->tsam_vec);
            rc = mtft_task_sam_set_perturbed_grad(tr->tsam, k, tr->tsam_vec);
            if (rc == MTFT_ENUMERIC) {
                mtft_error_clear();
                *finite = 0;
                break;
            }
            if (rc < 0) return rc;
        } else if (!isfinite(tsam_own_sumsq(tr, k))) {
            *finite = 0;
        }
    }
    if (!*finite) return MTFT_OK;
    /* the balancer and the step's gradients */
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    in.mask = tr->mask;
    in.n_tokens = tr->n_tok;
    in.n_samples = tr->n_smp;
    float *masked = tr->weights;
    for (int k = 0; k < K; k++) masked[k] = tr->mask[k] ? tr->losses[k] : 0.0f;
    in.losses = masked;
    if (!tr->grad_level) {
        mtft_balance_output bo = {tr->w_out, NULL};
        if ((rc = mtft_balancer_step(tr->bal, &in, &bo)) < 0) return rc;
    }
    if (tr->tsam) {
        tsam_agg a = {tr, &in, tr->tsam_w, 0, MTFT_OK, ""};
        rc = mtft_task_sam_combine(tr->tsam, tsam_aggregate, &a, tr->tsam_vec);
        if (a.rc < 0)
            return mtft__err(a.rc, "trainer: per-task SAM at step %lld: balancer: %s", (long long)tr->step + 1, a.msg);
        if (rc < 0) {
            mtft__err_prefix("trainer: per-task SAM at step %lld", (long long)tr->step + 1);
            return rc;
        }
        /* scatter into the shared groups' gradients */
        const float *v = tr->tsam_vec;
        for (int i = 0; i < tr->n_groups; i++) {
            if (tr->group_task[i] >= 0) continue;
            size_t n = 0;
            float *gr = mtft_param_group_grad(tr->groups[i], &n);
            memcpy(gr, v, n * sizeof *gr);
            v += n;
        }
    } else if (tr->grad_level) {
        return mtft__err(MTFT_ESTATE, "trainer: per-task SAM with a gradient-level balancer needs shared parameters");
    }
    /* task k's own parameters: w_k g_k^SAM (gradient level: g_k^SAM) */
    if (!tr->grad_level)
        for (int i = 0; i < tr->n_groups; i++) {
            const int t = tr->group_task[i];
            if (t < 0 || tr->w_out[t] == 1.0f) continue;
            size_t n = 0;
            float *gr = mtft_param_group_grad(tr->groups[i], &n);
            for (size_t j = 0; j < n; j++) gr[j] *= tr->w_out[t];
        }
    return MTFT_OK;
}

/* One optimizer step over grad_accum_steps micro-batches. Returns 1 when the
 * sampler ran out of data (nothing done), 0 after a step (or a skipped
 * step), < 0 on error. */
static int train_step(mtft_trainer *tr) {
    const int K = tr->n_tasks;
    const int A = tr->o.grad_accum_steps;
    int rc = mtft_sampler_rates(tr->sampler, tr->rates);
    if (rc < 0) return rc;
    mtft_tensor **tl = mtft__malloc((size_t)K * sizeof *tl);
    double *acc = mtft__calloc((size_t)K * 3, sizeof *acc); /* loss sum, weight sum, presence count */
    int *rows = mtft__calloc((size_t)K, sizeof *rows);
    if (!tl || !acc || !rows) {
        rc = mtft__err(MTFT_ENOMEM, "trainer: out of memory");
        goto out;
    }
    const float lr = lr_at(&tr->o, tr->step);
    float total_loss = NAN, gnorm = NAN;
    int64_t tokens = 0;
    int finite = 1, done = 0;
    double tl_sum = 0.0;
    opt_zero_grad(tr);
    /* the balancer's state is kept so that a skipped step leaves no trace */
    mtft_balancer_state_save(tr->bal, tr->bal_state, tr->bal_state_n, NULL);
    for (int mi = 0; mi < A && finite; mi++) {
        rc = draw_batch(tr, &tokens);
        if (rc == 1) break;
        if (rc < 0) goto out;
        if (tr->tsam_on) {
            done++;
            for (int k = 0; k < K; k++) rows[k] += tr->rows[k];
            if ((rc = task_sam_pass(tr, tl, &finite)) < 0) goto out;
            if (!finite) break;
            for (int k = 0; k < K; k++) {
                if (!tr->mask[k]) continue;
                /* as the plain path: the gradient-level total is the unweighted sum */
                tl_sum += (tr->grad_level ? 1.0 : (double)tr->w_out[k]) * (double)tr->losses[k];
                acc[k] += (double)tr->losses[k];
                acc[K + k] += (double)tr->w_out[k];
                acc[2 * K + k] += 1.0;
            }
            continue;
        }
        if ((rc = forward_batch(tr, tl)) < 0) goto out;
        done++;
        for (int k = 0; k < K; k++) {
            tr->losses[k] = tl[k] ? mtft_tensor_data(tl[k])[0] : NAN;
            if (tl[k] && !isfinite(tr->losses[k])) finite = 0;
            tr->w_out[k] = 0.0f;
            rows[k] += tr->rows[k];
        }
        if (!finite) break;
        mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
        in.mask = tr->mask;
        in.n_tokens = tr->n_tok;
        in.n_samples = tr->n_smp;
        float *masked = tr->weights; /* losses with 0 for absent tasks (the balancer wants finite values) */
        for (int k = 0; k < K; k++) masked[k] = tr->mask[k] ? tr->losses[k] : 0.0f;
        in.losses = masked;
        if (!tr->grad_level) {
            mtft_balance_output bo = {tr->w_out, NULL};
            if ((rc = mtft_balancer_step(tr->bal, &in, &bo)) < 0) goto out;
        } else {
            for (int k = 0; k < K; k++) tr->w_out[k] = tr->mask[k] ? 1.0f : 0.0f;
        }
        for (int k = 0; k < K; k++) {
            if (!tl[k]) continue;
            tl_sum += (double)tr->w_out[k] * (double)tr->losses[k] / (double)A;
            acc[k] += (double)tr->losses[k];
            acc[K + k] += (double)tr->w_out[k];
            acc[2 * K + k] += 1.0;
        }
        if ((rc = backward_total(tr, weighted_total(tr, tl, 1.0f / (float)A))) < 0) goto out;
        if (tr->grad_level) {
            size_t np = 0;
            float *gs = mtft_param_group_grad(tr->shared, &np);
            const float **gk = mtft__malloc((size_t)K * sizeof *gk);
            if (!gk) {
                rc = mtft__err(MTFT_ENOMEM, "trainer: out of memory");
                goto out;
            }
            int gfinite = 1;
            for (int k = 0; k < K; k++) {
                gk[k] = tr->mask[k] ? mtft_param_group_split_grad(tr->shared, k, NULL) : NULL;
                if (gk[k])
                    for (size_t j = 0; j < np && gfinite; j++) gfinite = isfinite(gk[k][j]);
            }
            if (gfinite) {
                in.grads = gk;
                in.n_params = (int64_t)np;
                mtft_balance_output bo = {tr->w_out, tr->gsum};
                rc = mtft_balancer_step(tr->bal, &in, &bo);
                if (rc >= 0) memcpy(gs, tr->gsum, np * sizeof *gs);
            }
            mtft__free(gk);
            if (rc < 0) goto out;
            for (int k = 0; k < K; k++) acc[K + k] = tr->w_out[k];
        }
    }
    if (done == 0) {
        rc = 1;
        goto out;
    }
    /* the step's per-task figures: mean over the micro-batches a task was in */
    for (int k = 0; k < K; k++) {
        tr->rows[k] = rows[k];
        if (!finite) continue;
        tr->mask[k] = acc[2 * K + k] > 0.0;
        tr->losses[k] = tr->mask[k] ? (float)(acc[k] / acc[2 * K + k]) : NAN;
        tr->w_out[k] = tr->mask[k] ? (float)(acc[K + k] / acc[2 * K + k]) : 0.0f;
    }
    int skipped = !finite;
    if (finite) {
        if (done < A) grad_scale(tr, (float)A / (float)done); /* the sampler ran out mid-step */
        total_loss = (float)(tl_sum * (double)A / (double)done);
        double ss = grad_sumsq(tr);
        if (isfinite(ss) && tr->sam) {
            if ((rc = sam_pass(tr, tl, &finite)) < 0) goto out;
            ss = finite ? grad_sumsq(tr) : NAN;
        }
        gnorm = (float)sqrt(ss);
        if (!isfinite(ss)) skipped = 1;
    }
    if (skipped) {
        mtft_balancer_state_load(tr->bal, tr->bal_state, tr->bal_state_n);
        tr->n_skipped++;
        opt_zero_grad(tr);
        mtft__log(MTFT_LOG_WARN, "trainer: step %lld skipped: non-finite %s (%lld skipped so far)",
                  (long long)tr->step + 1, finite ? "gradient" : "loss", (long long)tr->n_skipped);
    } else {
        if (tr->o.grad_clip > 0.0f && gnorm > tr->o.grad_clip) grad_scale(tr, tr->o.grad_clip / gnorm);
        if ((rc = opt_step(tr, lr)) < 0) goto out;
        for (int k = 0; k < K; k++)
            if (tr->mask[k]) tr->last_w[k] = tr->w_out[k];
        if (tr->o.balancer_drives_sampler && !tr->grad_level) {
            double *r = mtft__malloc((size_t)K * sizeof *r);
            if (!r) {
                rc = mtft__err(MTFT_ENOMEM, "trainer: out of memory");
                goto out;
            }
            double s = 0.0;
            for (int k = 0; k < K; k++) s += r[k] = tr->last_w[k] > 0.0f ? (double)tr->last_w[k] : 0.0;
            rc = s > 0.0 ? mtft_sampler_set_rates(tr->sampler, r, 0) : MTFT_OK;
            mtft__free(r);
            if (rc < 0) goto out;
        }
    }
    tr->step++;
    tr->tokens_total += tokens;
    mtft_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.event = MTFT_PROGRESS_STEP;
    pr.loss = total_loss;
    pr.lr = lr;
    pr.grad_norm = gnorm;
    pr.skipped = skipped;
    pr.tokens = tokens;
    rc = report(tr, &pr);
out:
    mtft__free(tl);
    mtft__free(acc);
    mtft__free(rows);
    return rc;
}


/* ---- progress output ----------------------------------------------------------- */

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

/* One "eval" line of the JSONL log: the split's score and every metric of
 * every task (best_score null when not a selection evaluation). */
static void log_eval(mtft_trainer *tr, mtft_split split, double score, double best) {
    FILE *f = tr->log;
    if (!f) return;
    fprintf(f, "{\"event\":\"eval\",\"step\":%lld,\"split\":\"%s\",\"score\":", (long long)tr->step,
            mtft_split_name(split));
    json_num(f, score);
    fputs(",\"best_score\":", f);
    json_num(f, best);
    fputs(",\"tasks\":{", f);
    for (int k = 0; k < tr->n_tasks; k++) {
        if (k) fputc(',', f);
        json_str(f, tr->names[k]);
        const mtft_trainer_res *r = &tr->res[split][k];
        fprintf(f, ":{\"n\":%lld", (long long)r->n);
        int first = 0;
        for (int mi = 0; mi < MTFT_METRIC_COUNT_; mi++) {
            if (!r->have[mi]) continue;
            if (!first) fputc(',', f);
            first = 0;
            json_str(f, mtft_metric_name((mtft_metric)mi));
            fputc(':', f);
            json_num(f, r->v[mi]);
        }
        fputc('}', f);
    }
    fputs("}}\n", f);
}

static int report(mtft_trainer *tr, mtft_progress *pr) {
    const int K = tr->n_tasks;
    const double el = tr->train_seconds + (mtft_trainer__now() - tr->run_t0);
    pr->step = tr->step;
    pr->max_steps = tr->o.max_steps;
    pr->n_tasks = K;
    pr->task_names = (const char *const *)tr->names;
    pr->task_loss = tr->losses;
    pr->task_weights = tr->w_out;
    pr->task_rates = tr->rates;
    pr->task_rows = tr->rows;
    pr->n_skipped = tr->n_skipped;
    pr->elapsed_sec = el;
    pr->tokens_per_sec = el > 0 ? (double)tr->tokens_total / el : 0.0;
    const int64_t done = tr->step - tr->run_step0;
    double eta = done > 0 ? (el - tr->train_seconds) / (double)done * (double)(tr->o.max_steps - tr->step) : 0.0;
    if (tr->o.max_seconds > 0 && tr->o.max_seconds - el < eta) eta = tr->o.max_seconds - el;
    pr->eta_sec = eta > 0 ? eta : 0;
    if (tr->log) {
        FILE *f = tr->log;
        if (pr->event == MTFT_PROGRESS_STEP) {
            fprintf(f, "{\"event\":\"step\",\"step\":%lld,\"loss\":", (long long)pr->step);
            json_num(f, pr->loss);
            fputs(",\"lr\":", f);
            json_num(f, pr->lr);
            fputs(",\"grad_norm\":", f);
            json_num(f, pr->grad_norm);
            fprintf(f, ",\"skipped\":%d,\"tokens\":%lld,\"elapsed\":%.3f,\"tasks\":{", pr->skipped,
                    (long long)pr->tokens, el);
            for (int k = 0; k < K; k++) {
                if (k) fputc(',', f);
                json_str(f, tr->names[k]);
                fputs(":{\"loss\":", f);
                json_num(f, tr->losses[k]);
                fputs(",\"weight\":", f);
                json_num(f, tr->w_out[k]);
                fputs(",\"rate\":", f);
                json_num(f, tr->rates[k]);
                fprintf(f, ",\"rows\":%d}", tr->rows[k]);
            }
            fputs("}}\n", f);
        } else {
            log_eval(tr, MTFT_SPLIT_DEV, pr->score, pr->best_score);
        }
        fflush(f);
    }
    if (tr->o.print_every > 0) {
        const int tty = isatty(fileno(stdout));
        char e1[32], e2[32];
        fmt_time(e1, sizeof e1, el);
        fmt_time(e2, sizeof e2, pr->eta_sec);
        if (pr->event == MTFT_PROGRESS_EVAL) {
            if (tty) fputs("\r\033[K", stdout);
            printf("eval step %lld: dev score %.4f (best %.4f)", (long long)pr->step, pr->score, pr->best_score);
            for (int k = 0; k < K; k++) {
                const mtft_trainer_res *r = &tr->res[MTFT_SPLIT_DEV][k];
                const int nm = mtft_task_n_metrics(tr->tasks[k]);
                if (nm > 0) { /* the task's metrics: list, in its order */
                    printf(" | %s", tr->names[k]);
                    for (int i = 0; i < nm; i++) {
                        mtft_metric mi;
                        if (mtft_metric_from_name(mtft_task_metric(tr->tasks[k], i), &mi) < 0) continue;
                        if (r->have[mi])
                            printf(" %s %.4f", mtft_metric_name(mi), r->v[mi]);
                        else
                            printf(" %s -", mtft_metric_name(mi));
                    }
                    continue;
                }
                printf(" | %s %s %.4f", tr->names[k], mtft_metric_name(tr->primary[k]), r->v[tr->primary[k]]);
                if (r->have[MTFT_METRIC_EXACT_MATCH])
                    printf(" em %.4f chrf %.2f", r->v[MTFT_METRIC_EXACT_MATCH], r->v[MTFT_METRIC_CHRF]);
            }
            printf("\n");
            fflush(stdout);
        } else if (pr->step % tr->o.print_every == 0 || pr->step == tr->o.max_steps || pr->skipped) {
            if (tty) {
                const int W = 20;
                int fill = (int)((double)W * (double)pr->step / (double)(pr->max_steps ? pr->max_steps : 1));
                if (fill > W) fill = W;
                printf("\r\033[K[");
                for (int i = 0; i < W; i++) putchar(i < fill ? '#' : '.');
                printf("] %lld/%lld loss %.4f", (long long)pr->step, (long long)pr->max_steps, (double)pr->loss);
                for (int k = 0; k < K; k++)
                    if (tr->mask[k]) printf(" %.8s %.3f", tr->names[k], (double)tr->losses[k]);
                printf(" | %.0f tok/s eta %s", pr->tokens_per_sec, e2);
                if (pr->skipped) printf(" (skipped: non-finite)\n");
            } else {
                printf("step %lld/%lld loss %.4f lr %.2e gnorm %.3f%s |", (long long)pr->step,
                       (long long)pr->max_steps, (double)pr->loss, (double)pr->lr, (double)pr->grad_norm,
                       pr->skipped ? " SKIPPED (non-finite)" : "");
                for (int k = 0; k < K; k++) {
                    if (tr->mask[k])
                        printf(" %s %.3f w%.2f r%.2f", tr->names[k], (double)tr->losses[k], (double)tr->w_out[k],
                               tr->rates[k]);
                    else
                        printf(" %s - r%.2f", tr->names[k], tr->rates[k]);
                }
                printf(" | %.0f tok/s %s eta %s\n", pr->tokens_per_sec, e1, e2);
            }
            fflush(stdout);
        }
    }
    if (tr->o.progress && tr->o.progress(pr, tr->o.payload) != 0)
        return mtft__err(MTFT_EUSER, "trainer: the progress callback asked to stop at step %lld", (long long)pr->step);
    return 0;
}

/* ---- evaluation ------------------------------------------------------------------ */

static void set_res(mtft_trainer_res *r, mtft_metric mi, double v, int defined) {
    r->v[mi] = v;
    r->def[mi] = defined;
    r->have[mi] = 1;
}

/* ---- generation: greedy decoding scored by exact match and chrF ---------------- */

int mtft_trainer_set_tokenizer(mtft_trainer *tr, const mtft_tokenizer *tok, int32_t eos_id) {
    MTFT_CHECK_ARG(tr);
    tr->gen_tok = tok;
    tr->gen_eos = eos_id;
    return MTFT_OK;
}

/* Decode n ids into a fresh NUL-terminated string (*out, mtft__free). */
static int decode_str(const mtft_tokenizer *tok, const int32_t *ids, int n, char **out) {
    size_t len = 0;
    *out = NULL;
    int rc = mtft_tokenizer_decode(tok, ids, (size_t)n, NULL, 0, &len);
    if (rc < 0 && rc != MTFT_ERANGE) return rc;
    mtft_error_clear();
    char *s = mtft__malloc(len + 1);
    if (!s) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    if ((rc = mtft_tokenizer_decode(tok, ids, (size_t)n, s, len + 1, &len)) < 0) {
        mtft__free(s);
        return rc;
    }
    s[len] = '\0';
    *out = s;
    return MTFT_OK;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), 0 when s does not start one. */
static int utf8_len(const unsigned char *s) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* A model may decode to bytes that are not UTF-8 (byte-level BPE pieces of a
 * character): each such byte becomes '?' so chrF can score the hypothesis. */
static void utf8_scrub(char *str) {
    unsigned char *s = (unsigned char *)str;
    while (*s) {
        const int n = utf8_len(s);
        if (n == 0) *s++ = '?';
        else s += n;
    }
}

/* Greedy continuation of ex's prompt with task k's LoRA and head, up to the
 * reference length + 4 tokens (and max_len), stopping at eos; the decoded
 * hypothesis and reference (target without its eos) go to acc. seq and pred
 * hold max_len ints. */
static int gen_example(mtft_trainer *tr, int k, const mtft_example *ex, mtft_metrics *acc, int32_t *seq,
                       int32_t *pred) {
    const int T = tr->o.max_len;
    int L = ex->n_prompt < T ? ex->n_prompt : T - 1;
    if (L < 1) return MTFT_OK; /* no prompt: nothing to continue */
    int nref = ex->n_ids - ex->n_prompt;
    const int32_t *ref = ex->ids + ex->n_prompt;
    if (nref > 0 && ref[nref - 1] == tr->gen_eos) nref--;
    const int max_new = nref + 4;
    memcpy(seq, ex->ids, (size_t)L * sizeof *seq);
    const int L0 = L;
    int rc = MTFT_OK;
    mtft_graph *g = tr->g;
    /* causal models decode through a KV cache (the prompt once, then one
     * token per step, the task's LoRA and head applied as in training);
     * a bidirectional trunk re-reads the whole sequence every token */
    mtft_kv_cache *kv = mtft_model_get_config(tr->m)->causal ? tr->gen_kv : NULL;
    if (kv) mtft_kv_cache_reset(kv);
    int n_in = L; /* tokens not yet in the cache */
    while (L - L0 < max_new && L < T) {
        mtft_graph_reset(g);
        mtft_graph_set_grad_enabled(g, 0);
        mtft_graph_set_training(g, 0);
        if (tr->peft && (rc = mtft_peft_set_task(tr->peft, g, k, 1)) < 0) return rc;
        const int32_t vl = kv ? n_in : L;
        mtft_tensor *hid = kv ? mtft_model_hidden_cached(tr->m, g, kv, seq + L - n_in, n_in)
                              : mtft_model_hidden(tr->m, g, seq, 1, L, &vl);
        if (!hid) return mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
        if ((rc = mtft_head_predict(tr->heads[k], g, tr->m, hid, &vl, pred, NULL)) < 0) return rc;
        const int32_t id = pred[vl - 1];
        if (id == tr->gen_eos) break;
        seq[L++] = id;
        n_in = 1;
    }
    char *hs = NULL, *rs = NULL;
    if ((rc = decode_str(tr->gen_tok, seq + L0, L - L0, &hs)) >= 0 &&
        (rc = decode_str(tr->gen_tok, ref, nref, &rs)) >= 0) {
        utf8_scrub(hs);
        const char *h1 = hs, *r1 = rs;
        rc = mtft_metrics_add_text(acc, &h1, &r1, 1);
    }
    mtft__free(hs);
    mtft__free(rs);
    return rc;
}

/* Exact match and chrF of greedy decodes of the first n examples of a split. */
static int gen_eval(mtft_trainer *tr, int k, mtft_split split, int64_t n, mtft_trainer_res *r) {
    mtft_metrics *acc = NULL;
    mtft_metrics_options mo = MTFT_METRICS_OPTIONS_INIT;
    mo.kind = MTFT_METRICS_GENERATION;
    const mtft_model_config *mc = mtft_model_get_config(tr->m);
    int rc;
    if (mc->causal && !tr->gen_kv &&
        (rc = mtft_kv_cache_new(&tr->gen_kv, tr->m, tr->o.max_len < mc->n_ctx ? tr->o.max_len : mc->n_ctx)) < 0)
        return rc;
    rc = mtft_metrics_new(&acc, &mo);
    if (rc < 0) return rc;
    int32_t *seq = mtft__malloc((size_t)tr->o.max_len * 2 * sizeof *seq);
    if (!seq) {
        mtft_metrics_free(acc);
        return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
    }
    for (int64_t i = 0; i < n && rc >= 0; i++) {
        mtft_example ex;
        if ((rc = mtft_task_example(tr->tasks[k], split, i, &ex)) < 0) break;
        rc = gen_example(tr, k, &ex, acc, seq, seq + tr->o.max_len);
    }
    if (rc >= 0 && mtft_metrics_n(acc) > 0 && (rc = mtft_metrics_compute(acc)) >= 0) {
        double v;
        int def = 0;
        if (mtft_metrics_value(acc, MTFT_METRIC_EXACT_MATCH, &v, &def) >= 0) set_res(r, MTFT_METRIC_EXACT_MATCH, v, def);
        if (mtft_metrics_value(acc, MTFT_METRIC_CHRF, &v, &def) >= 0) set_res(r, MTFT_METRIC_CHRF, v, def);
    }
    mtft__free(seq);
    mtft_metrics_free(acc);
    mtft_graph_reset(tr->g);
    mtft_graph_set_grad_enabled(tr->g, 1);
    mtft_graph_set_training(tr->g, 1);
    return rc;
}

static int eval_task(mtft_trainer *tr, int k, mtft_split split, int64_t cap) {
    mtft_task *task = tr->tasks[k];
    const mtft_task_type ty = mtft_task_type_of(task);
    mtft_head *h = tr->heads[k];
    mtft_trainer_res *r = &tr->res[split][k];
    memset(r, 0, sizeof *r);
    int64_t n = mtft_task_count(task, split);
    if (cap > 0 && n > cap) n = cap;
    if (n < 1) return MTFT_OK; /* nothing to evaluate: no metrics */
    const int nl = mtft_task_n_labels(task);
    mtft_metrics *acc = NULL;
    mtft_metrics_options mo = MTFT_METRICS_OPTIONS_INIT;
    const char **tag_names = NULL;
    int rc = MTFT_OK;
    switch (ty) {
    case MTFT_TASK_CLASSIFICATION: mo.kind = MTFT_METRICS_CLASSIFICATION; mo.n_classes = nl; break;
    case MTFT_TASK_MULTILABEL: mo.kind = MTFT_METRICS_CLASSIFICATION; mo.n_classes = 2; break;
    case MTFT_TASK_REGRESSION: mo.kind = MTFT_METRICS_REGRESSION; break;
    case MTFT_TASK_TAGGING:
        mo.kind = MTFT_METRICS_TAGGING;
        mo.n_classes = nl;
        tag_names = mtft__malloc((size_t)(nl > 0 ? nl : 1) * sizeof *tag_names);
        if (!tag_names) return mtft__err(MTFT_ENOMEM, "trainer: out of memory");
        for (int i = 0; i < nl; i++) tag_names[i] = mtft_task_label(task, i);
        mo.tag_names = tag_names;
        break;
    case MTFT_TASK_GENERATION: mo.kind = MTFT_METRICS_LM; break;
    }
    rc = mtft_metrics_new(&acc, &mo);
    mtft__free(tag_names);
    if (rc < 0) return rc;
    mtft_graph *g = tr->g;
    const int EB = tr->o.eval_batch_size;
    int64_t tok_ok = 0, tok_n = 0;
    for (int64_t i0 = 0; i0 < n && rc >= 0; i0 += EB) {
        const int nb = (int)(n - i0 < EB ? n - i0 : EB);
        for (int j = 0; j < nb; j++) {
            tr->refs[j].task = k;
            tr->refs[j].split = split;
            tr->refs[j].index = i0 + j;
        }
        if ((rc = collate(tr, nb)) < 0) break;
        const mtft_batch *b = &tr->batch;
        const int B = b->n_rows, T = b->seq_len;
        mtft_graph_reset(g);
        mtft_graph_set_grad_enabled(g, 0);
        mtft_graph_set_training(g, 0);
        if (tr->peft && (rc = mtft_peft_set_task(tr->peft, g, k, B)) < 0) break;
        mtft_tensor *hid = mtft_model_hidden(tr->m, g, b->ids, B, T, b->valid_len);
        if (!hid) {
            rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
            break;
        }
        if (ty == MTFT_TASK_GENERATION) {
            mtft_head_targets t;
            memset(&t, 0, sizeof t);
            t.token_ids = b->targets;
            mtft_tensor *l = mtft_head_loss(h, g, tr->m, hid, b->valid_len, &t);
            if (!l) {
                rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
                break;
            }
            const double lv = mtft_tensor_data(l)[0];
            if ((rc = mtft_head_predict(h, g, tr->m, hid, b->valid_len, tr->pred_ids, NULL)) < 0) break;
            int64_t c = 0;
            for (int64_t q = 0; q < (int64_t)B * T; q++) {
                if (b->targets[q] == MTFT_IGNORE_INDEX) continue;
                c++;
                tok_ok += tr->pred_ids[q] == b->targets[q];
            }
            tok_n += c;
            if (c > 0) rc = mtft_metrics_add_nll(acc, lv * (double)c, c);
        } else if (ty == MTFT_TASK_REGRESSION) {
            if ((rc = mtft_head_predict(h, g, tr->m, hid, b->valid_len, NULL, tr->pred_vals)) < 0) break;
            rc = mtft_metrics_add_values(acc, tr->pred_vals, b->values, (size_t)B);
        } else if (ty == MTFT_TASK_CLASSIFICATION) {
            if ((rc = mtft_head_predict(h, g, tr->m, hid, b->valid_len, tr->pred_ids, NULL)) < 0) break;
            rc = mtft_metrics_add_labels(acc, tr->pred_ids, b->labels, (size_t)B);
        } else if (ty == MTFT_TASK_MULTILABEL) {
            if ((rc = mtft_head_predict(h, g, tr->m, hid, b->valid_len, tr->pred_ids, NULL)) < 0) break;
            const int L = nl, W = b->label_width;
            for (int rr = 0; rr < B && rc >= 0; rr++) {
                int32_t gold[256];
                const int LL = L < 256 ? L : 256;
                for (int l = 0; l < LL; l++) gold[l] = b->multi_labels[(int64_t)rr * W + l] >= 0.5f;
                rc = mtft_metrics_add_labels(acc, tr->pred_ids + (int64_t)rr * L, gold, (size_t)LL);
            }
        } else {
            if ((rc = mtft_head_predict(h, g, tr->m, hid, b->valid_len, tr->pred_ids, NULL)) < 0) break;
            rc = mtft_metrics_add_tags(acc, tr->pred_ids, b->targets, (size_t)B, (size_t)T);
        }
    }
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, 1);
    mtft_graph_set_training(g, 1);
    if (rc >= 0 && mtft_metrics_n(acc) > 0 && (rc = mtft_metrics_compute(acc)) >= 0) {
        const int cnt = mtft_metrics_count(acc);
        for (int i = 0; i < cnt; i++) {
            mtft_metric mi;
            double v;
            int def = 0;
            if (mtft_metrics_metric(acc, i, &mi) < 0) continue;
            if (mtft_metrics_value(acc, mi, &v, &def) < 0) continue;
            set_res(r, mi, v, def);
        }
        if (ty == MTFT_TASK_GENERATION && tok_n > 0) set_res(r, MTFT_METRIC_TOKEN_ACCURACY, (double)tok_ok / (double)tok_n, 1);
        if (ty == MTFT_TASK_GENERATION && tr->gen_tok) rc = gen_eval(tr, k, split, n, r);
        r->n = n;
        r->done = 1;
    }
    if (rc == MTFT_EINVAL && mtft_metrics_n(acc) == 0) rc = MTFT_OK; /* nothing scorable */
    mtft_metrics_free(acc);
    if (rc < 0) mtft__err_prefix("trainer: evaluating task '%s' on %s", tr->names[k], mtft_split_name(split));
    return rc;
}

int mtft_trainer_evaluate(mtft_trainer *tr, mtft_split split, int64_t max_examples) {
    MTFT_CHECK_ARG(tr);
    if (split < MTFT_SPLIT_TRAIN || split >= MTFT_SPLIT_COUNT)
        return mtft__err(MTFT_EINVAL, "trainer: unknown split %d", (int)split);
    int rc = mtft_trainer__prepare(tr);
    if (rc < 0) return rc;
    if ((rc = check_select(tr)) < 0) return rc;
    const int64_t cap = max_examples > 0 ? max_examples : tr->o.eval_max_examples;
    double score = 0.0;
    int ns = 0;
    for (int k = 0; k < tr->n_tasks; k++) {
        if ((rc = eval_task(tr, k, split, cap)) < 0) return rc;
        const mtft_trainer_res *r = &tr->res[split][k];
        if (!r->done) continue;
        const mtft_metric pm = tr->primary[k];
        if (!r->have[pm])
            return mtft__err(MTFT_ESTATE, "trainer: task '%s': the selection metric %s was not computed on %s",
                             tr->names[k], mtft_metric_name(pm), mtft_split_name(split));
        double v = r->v[pm];
        if (mtft_metric_lower_is_better(pm)) {
            /* a non-finite error (diverged predictions) must never look best */
            v = isfinite(v) && r->def[pm] ? -v : -INFINITY;
        } else if (!isfinite(v) || !r->def[pm]) {
            v = 0.0; /* undefined (pearson of a constant prediction): no signal */
        }
        score += v;
        ns++;
    }
    tr->score[split] = ns ? score / ns : NAN;
    tr->have_score[split] = 1;
    /* dev evaluations of run() are logged with the best score by report() */
    if (split != MTFT_SPLIT_DEV && tr->log) {
        log_eval(tr, split, tr->score[split], NAN);
        fflush(tr->log);
    }
    return MTFT_OK;
}

int mtft_trainer_eval_value(const mtft_trainer *tr, int task, mtft_split split, mtft_metric metric, double *value,
                            int *defined) {
    MTFT_CHECK_ARG(tr && value);
    if (task < 0 || task >= tr->n_tasks)
        return mtft__err(MTFT_ERANGE, "trainer: task %d outside [0, %d)", task, tr->n_tasks);
    if (split < MTFT_SPLIT_TRAIN || split >= MTFT_SPLIT_COUNT || (int)metric < 0 || metric >= MTFT_METRIC_COUNT_)
        return mtft__err(MTFT_EINVAL, "trainer: bad split %d or metric %d", (int)split, (int)metric);
    if (!tr->prepared || !tr->have_score[split])
        return mtft__err(MTFT_ESTATE, "trainer: no evaluation on %s yet", mtft_split_name(split));
    const mtft_trainer_res *r = &tr->res[split][task];
    if (!r->have[metric])
        return mtft__err(MTFT_ENOTFOUND, "trainer: task '%s' has no %s on %s", tr->names[task],
                         mtft_metric_name(metric), mtft_split_name(split));
    *value = r->v[metric];
    if (defined) *defined = r->def[metric];
    return MTFT_OK;
}

int64_t mtft_trainer_eval_examples(const mtft_trainer *tr, int task, mtft_split split) {
    if (!tr || !tr->prepared || task < 0 || task >= tr->n_tasks || split < MTFT_SPLIT_TRAIN ||
        split >= MTFT_SPLIT_COUNT || !tr->have_score[split])
        return -1;
    return tr->res[split][task].done ? tr->res[split][task].n : 0;
}

int mtft_trainer_eval_score(const mtft_trainer *tr, mtft_split split, double *score) {
    MTFT_CHECK_ARG(tr && score);
    if (split < MTFT_SPLIT_TRAIN || split >= MTFT_SPLIT_COUNT || !tr->have_score[split])
        return mtft__err(MTFT_ESTATE, "trainer: no evaluation on split %d yet", (int)split);
    *score = tr->score[split];
    return MTFT_OK;
}

/* ---- best weights ---------------------------------------------------------------- */

static int keep_best(mtft_trainer *tr) {
    for (int i = 0; i < tr->n_groups; i++) {
        size_t n = 0;
        const float *d = mtft_param_group_data(tr->groups[i], &n);
        if (!tr->best[i]) {
            tr->best[i] = mtft__malloc((n ? n : 1) * sizeof(float));
            if (!tr->best[i]) return mtft__err(MTFT_ENOMEM, "trainer: out of memory (best weights)");
        }
        memcpy(tr->best[i], d, n * sizeof(float));
    }
    tr->have_best = 1;
    return MTFT_OK;
}

static void restore_best(mtft_trainer *tr) {
    if (!tr->have_best) return;
    for (int i = 0; i < tr->n_groups; i++) {
        size_t n = 0;
        float *d = mtft_param_group_data(tr->groups[i], &n);
        if (tr->best[i]) memcpy(d, tr->best[i], n * sizeof(float));
    }
}

static int eval_and_select(mtft_trainer *tr) {
    const double t0 = mtft_trainer__now();
    int rc = mtft_trainer_evaluate(tr, MTFT_SPLIT_DEV, 0);
    tr->eval_seconds += mtft_trainer__now() - t0;
    if (rc < 0) return rc;
    const double s = tr->score[MTFT_SPLIT_DEV];
    if (isfinite(s) && s > tr->best_score) {
        tr->best_score = s;
        tr->best_step = tr->step;
        tr->bad_evals = 0;
        if ((rc = keep_best(tr)) < 0) return rc;
        if (tr->o.ckpt_dir && (rc = mtft_trainer__save_best(tr)) < 0) return rc;
    } else {
        tr->bad_evals++;
    }
    mtft_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.event = MTFT_PROGRESS_EVAL;
    pr.score = s;
    pr.best_score = tr->best_score;
    pr.loss = NAN;
    pr.lr = NAN;
    pr.grad_norm = NAN;
    return report(tr, &pr);
}

int mtft_trainer_run(mtft_trainer *tr) {
    MTFT_CHECK_ARG(tr);
    int rc = mtft_trainer__prepare(tr);
    if (rc < 0) return rc;
    if ((rc = check_select(tr)) < 0) return rc;
    tr->run_t0 = mtft_trainer__now();
    tr->run_step0 = tr->step;
    tr->eval_seconds = 0.0;
    int stop = 0;
    while (tr->step < tr->o.max_steps && !stop) {
        rc = train_step(tr);
        if (rc < 0) break;
        if (rc == 1) {
            mtft__log(MTFT_LOG_INFO, "trainer: every task is exhausted (sampler epoch policy 'stop') at step %lld",
                      (long long)tr->step);
            rc = 0;
            break;
        }
        if (tr->o.eval_every > 0 && tr->step % tr->o.eval_every == 0 && tr->step < tr->o.max_steps) {
            if ((rc = eval_and_select(tr)) < 0) break;
            if (tr->o.early_stop_patience > 0 && tr->bad_evals >= tr->o.early_stop_patience) {
                mtft__log(MTFT_LOG_INFO, "trainer: early stop at step %lld (%d evaluations without improvement; best "
                          "%.4f at step %lld)", (long long)tr->step, tr->bad_evals, tr->best_score,
                          (long long)tr->best_step);
                stop = 1;
            }
        }
        if (tr->o.save_every > 0 && tr->step % tr->o.save_every == 0 && (rc = mtft_trainer__save_periodic(tr)) < 0)
            break;
        const double el = mtft_trainer__now() - tr->run_t0 - tr->eval_seconds;
        if (tr->o.max_seconds > 0 && tr->train_seconds + el >= tr->o.max_seconds) {
            mtft__log(MTFT_LOG_INFO, "trainer: time budget of %.0f s reached at step %lld", tr->o.max_seconds,
                      (long long)tr->step);
            stop = 1;
        }
    }
    tr->train_seconds += mtft_trainer__now() - tr->run_t0 - tr->eval_seconds;
    if (rc < 0) return rc;
    if (tr->o.eval_every > 0) {
        if ((rc = eval_and_select(tr)) < 0) return rc;
        if (tr->have_best && tr->best_step != tr->step) {
            mtft__log(MTFT_LOG_INFO, "trainer: restoring the best weights (dev score %.4f at step %lld)",
                      tr->best_score, (long long)tr->best_step);
            restore_best(tr);
        }
    }
    return MTFT_OK;
}

/* ---- prediction ------------------------------------------------------------------ */

int mtft_trainer_predict(mtft_trainer *tr, int task, const int32_t *ids, int n_ids, int32_t *out_ids,
                         float *out_values) {
    MTFT_CHECK_ARG(tr && ids);
    if (task < 0 || task >= tr->n_tasks)
        return mtft__err(MTFT_ERANGE, "trainer: predict for task %d outside [0, %d)", task, tr->n_tasks);
    if (n_ids < 1) return mtft__err(MTFT_EINVAL, "trainer: predict for task '%s' got no tokens", tr->names[task]);
    int rc = mtft_trainer__prepare(tr);
    if (rc < 0) return rc;
    /* cut as training cuts (mtft_batch_collate): the first max_len tokens,
     * or the last ones with truncation left */
    const int T = n_ids < tr->o.max_len ? n_ids : tr->o.max_len;
    const int off = tr->o.truncation == MTFT_TRUNCATE_LEFT ? n_ids - T : 0;
    const int32_t vl = T;
    mtft_graph *g = tr->g;
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, 0);
    mtft_graph_set_training(g, 0);
    if (tr->peft && (rc = mtft_peft_set_task(tr->peft, g, task, 1)) < 0) goto done;
    mtft_tensor *hid = mtft_model_hidden(tr->m, g, ids + off, 1, T, &vl);
    if (!hid) {
        rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
        goto done;
    }
    rc = mtft_head_predict(tr->heads[task], g, tr->m, hid, &vl, out_ids, out_values);
    const mtft_head_kind kind = mtft_head_get_options(tr->heads[task])->kind;
    if (rc >= 0 && T < n_ids && (kind == MTFT_HEAD_TOKEN_CLASSIFICATION || kind == MTFT_HEAD_LM)) {
        /* per-token outputs by position in ids; cut-off tokens get no prediction */
        if (out_ids) {
            memmove(out_ids + off, out_ids, (size_t)T * sizeof *out_ids);
            for (int t = 0; t < n_ids; t++)
                if (t < off || t >= off + T) out_ids[t] = MTFT_HEAD_IGNORE_INDEX;
        }
        if (out_values && kind == MTFT_HEAD_TOKEN_CLASSIFICATION) {
            const size_t L = (size_t)mtft_head_output_dim(tr->heads[task], tr->m);
            memmove(out_values + (size_t)off * L, out_values, (size_t)T * L * sizeof *out_values);
            for (int t = 0; t < n_ids; t++)
                if (t < off || t >= off + T)
                    for (size_t l = 0; l < L; l++) out_values[(size_t)t * L + l] = NAN;
        }
    }
done:
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, 1);
    mtft_graph_set_training(g, 1);
    if (rc < 0) mtft__err_prefix("trainer: predict for task '%s'", tr->names[task]);
    return rc;
}
