/* The run sections of a config (everything but tasks: and data:): schema
 * tables into mtft_cfg_run, and the cross-key checks and derived values
 * applied once every section is read. The flat train: keys of the first
 * configs stay valid and set the same fields as the sections. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config_impl.h"

#define N_KEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define R(f) offsetof(mtft_cfg_run, f)
#define RANGE MTFT_CFG_RANGE
#define OPEN (MTFT_CFG_RANGE | MTFT_CFG_MAX_OPEN)
#define NUL MTFT_CFG_NULLABLE
#define DESC MTFT_CFG_DESCRIBED

#define KB(n, off, d, doc) {n, MTFT_CK_BOOL, off, 0, d, 0, 0, 0, NULL, NULL, doc}
#define KI(n, off, d, lo, hi, doc) {n, MTFT_CK_INT, off, 0, d, RANGE, lo, hi, NULL, NULL, doc}
#define KID(n, off, d, lo, hi, doc) {n, MTFT_CK_INT, off, 0, d, RANGE | DESC, lo, hi, NULL, NULL, doc}
#define KL(n, off, d, lo, hi, doc) {n, MTFT_CK_INT64, off, 0, d, RANGE, lo, hi, NULL, NULL, doc}
#define KF(n, off, d, lo, hi, doc) {n, MTFT_CK_FLOAT, off, 0, d, RANGE, lo, hi, NULL, NULL, doc}
#define KFO(n, off, d, lo, hi, doc) {n, MTFT_CK_FLOAT, off, 0, d, OPEN, lo, hi, NULL, NULL, doc}
#define KD(n, off, d, lo, hi, doc) {n, MTFT_CK_DOUBLE, off, 0, d, RANGE, lo, hi, NULL, NULL, doc}
#define KDO(n, off, d, lo, hi, doc) {n, MTFT_CK_DOUBLE, off, 0, d, OPEN, lo, hi, NULL, NULL, doc}
#define KU(n, off, d, doc) {n, MTFT_CK_U64, off, 0, d, 0, 0, 0, NULL, NULL, doc}
#define KE(n, off, d, names, doc) {n, MTFT_CK_ENUM, off, 0, d, 0, 0, 0, names, NULL, doc}
#define KP(n, off, doc) {n, MTFT_CK_PATH, off, 0, "", NUL, 0, 0, NULL, NULL, doc}
#define KPD(n, off, d, doc) {n, MTFT_CK_PATH, off, 0, d, NUL | DESC, 0, 0, NULL, NULL, doc}
#define KS(n, off, d, doc) {n, MTFT_CK_STRING, off, 0, d, NUL, 0, 0, NULL, NULL, doc}

#define BIG 1e15
#define IMAX 2147483647.0

static const char *const k_arch[] = {"gpt2", "llama", NULL};
static const char *const k_placement[] = {"houlsby", "pfeiffer", NULL};
static const char *const k_peft_act[] = {"relu", "gelu", "silu", NULL};
static const char *const k_pool[] = {"mean", "last", "first", NULL};
static const char *const k_strategy[] = {"proportional", "capped", "temperature", "uniform", "weights", NULL};
static const char *const k_batch_mode[] = {"mixed", "single_task", NULL};
static const char *const k_epoch[] = {"reshuffle", "stop", NULL};
static const char *const k_optimizer[] = {"adamw", "sgd", NULL}; /* mtft_optimizer_kind order */
static const char *const k_schedule[] = {"constant", "linear", "cosine", NULL};
static const char *const k_mgda_norm[] = {"none", "l2", "loss", "loss+", NULL};
/* mtft_balance_method order (check_config compares with mtft_balance_method_name) */
static const char *const k_method[] = {"equal",         "static",         "uncertainty",   "dwa",      "rlw",
                                       "gls",           "famo",           "mftcoder_token", "mftcoder_sample",
                                       "mftcoder_task", "coba",           "gradnorm",      "pcgrad",   "cagrad",
                                       "imtl_g",        "mgda_ub",        "aligned_mtl",   "nash_mtl", NULL};

const char *const *mtft_cfg__balance_names(void);
const char *const *mtft_cfg__balance_names(void) { return k_method; }

/* ---- model: and tokenizer: ------------------------------------------------------------- */

#define MC(f) R(model.f)
static const mtft_cfg_key k_model_keys[] = {
    KP("base", R(run.base_model),
       "Pretrained model directory (HF layout: config.json, model.safetensors); its config.json then gives the "
       "architecture. Same as train.base."),
    KE("arch", MC(arch), "gpt2", k_arch, "Architecture of a model built from scratch (pretrain:)."),
    KI("vocab_size", MC(vocab_size), "50257", 1, 16777216, "Vocabulary size V."),
    KI("n_ctx", MC(n_ctx), "1024", 1, 1048576, "Longest sequence (rows of the position table)."),
    KI("n_embd", MC(n_embd), "768", 1, 65536, "Width C."),
    KI("n_layer", MC(n_layer), "12", 1, 1024, "Transformer blocks."),
    KI("n_head", MC(n_head), "12", 1, 1024, "Attention heads; must divide n_embd."),
    KID("n_kv_head", MC(n_kv_head), "n_head", 1, 1024, "Key/value heads (GQA); must divide n_head."),
    KID("n_ff", MC(n_ff), "4 * n_embd", 1, 1048576, "MLP inner width."),
    KF("norm_eps", MC(norm_eps), "1e-5", 1e-12, 1, "LayerNorm / RMSNorm epsilon."),
    KF("rope_theta", MC(rope_theta), "10000", 1, 1e9, "RoPE base (llama)."),
    KB("tie_embeddings", MC(tie_embeddings), "true", "The LM head is the token embedding matrix."),
    KB("causal", MC(causal), "true", "Causal attention (decoder); false: bidirectional encoder."),
    KFO("embd_pdrop", MC(embd_pdrop), "0", 0, 1, "Dropout after the embeddings (training only)."),
    KFO("resid_pdrop", MC(resid_pdrop), "0", 0, 1, "Dropout on each residual branch (training only)."),
    KB("attn_bias", MC(attn_bias), "false", "q/k/v biases (llama family, e.g. Qwen2); gpt2: false."),
};
static const mtft_cfg_section k_model = {"model", k_model_keys, N_KEYS(k_model_keys), "The model."};

static const mtft_cfg_key k_tok_keys[] = {
    KPD("vocab", R(run.tokenizer_vocab), "<model.base>/vocab.json", "GPT-2 style vocab.json (with merges)."),
    KPD("merges", R(run.tokenizer_merges), "<model.base>/merges.txt", "GPT-2 style merges.txt (with vocab)."),
    KP("json", R(run.tokenizer_json), "An HF tokenizer.json instead of vocab + merges."),
};
static const mtft_cfg_section k_tok = {"tokenizer", k_tok_keys, N_KEYS(k_tok_keys), "Tokenizer files."};

/* ---- lora: and adapter: ----------------------------------------------------------------------- */

static const mtft_cfg_key k_lora_keys[] = {
    KI("rank", R(lora.rank), "8", 1, 4096, "Rank r of each task's LoRA."),
    KF("alpha", R(lora.alpha), "8", 0, 1e6, "Scale = alpha / r (alpha / sqrt(r) with use_rslora)."),
    KFO("dropout", R(lora.dropout), "0", 0, 1, "Dropout on the LoRA input (training only)."),
    KB("use_rslora", R(lora.use_rslora), "false", "Rank-stabilised scaling alpha / sqrt(r)."),
    KS("target_modules", R(lora.target_modules), "attn.c_attn",
       "Projections: '|'-separated patterns, '*' wildcard, suffix match (\"q_proj|v_proj\", \"mlp.*\")."),
    KS("layers", R(lora.layers), "", "Layers, e.g. \"0,2-3\"; none: all."),
    KU("seed", R(lora.seed), "0", "Seed of the A matrices (B starts at zero)."),
    KI("shared_rank", R(trainer.shared_lora_rank), "0", 0, 4096,
       "Rank of a task-agnostic LoRA on all rows too (gradient-level balancers need one); 0: none. Same as "
       "train.shared_lora_rank."),
};
static const mtft_cfg_section k_lora = {"lora", k_lora_keys, N_KEYS(k_lora_keys), "LoRA."};

static const mtft_cfg_key k_adapter_keys[] = {
    KE("placement", R(adapter.placement), "houlsby", k_placement,
       "houlsby: after attention and MLP; pfeiffer: after the MLP only."),
    KI("reduction_factor", R(adapter.reduction_factor), "16", 1, 65536, "Bottleneck = n_embd / reduction_factor."),
    KE("act", R(adapter.act), "relu", k_peft_act, "Bottleneck activation (gelu: tanh approximation)."),
    KF("down_std", R(adapter.down_std), "0.02", 0, 10, "Init std of the down projection."),
    KF("up_std", R(adapter.up_std), "0", 0, 10, "Init std of the up projection; 0: identity at init."),
    KU("seed", R(adapter.seed), "0", "Init seed."),
};
static const mtft_cfg_section k_adapter = {"adapter", k_adapter_keys, N_KEYS(k_adapter_keys),
                                           "Bottleneck adapters."};

/* ---- heads:, sampler:, balancer: ------------------------------------------------------------------ */

static const mtft_cfg_key k_heads_keys[] = {
    KI("hidden_size", R(trainer.head_hidden), "0", 0, 65536,
       "Dense layer + tanh before each head's output; 0: none. Same as train.head_hidden."),
    KE("pool", R(trainer.head_pool), "last", k_pool,
       "How sequence heads pool the tokens. Same as train.head_pool."),
};
static const mtft_cfg_section k_heads = {"heads", k_heads_keys, N_KEYS(k_heads_keys),
                                         "Defaults of every task's head."};

#define SD(f) offsetof(mtft_sampler_dist, f)
static const mtft_cfg_key k_end_keys[] = {
    KE("strategy", SD(strategy), "proportional", k_strategy, "As sampler.strategy."),
    KD("temperature", SD(temperature), "1", 1e-3, 1e6, "As sampler.temperature."),
    KD("cap", SD(cap), "0", 0, BIG, "As sampler.cap."),
    {"weights", MTFT_CK_DOUBLELIST, SD(weights), R(n_sampler_end_weights) - R(trainer.sampler.end), "", NUL | RANGE,
     0, BIG, NULL, NULL, "As sampler.weights."},
};
static const mtft_cfg_section k_end = {"end", k_end_keys, N_KEYS(k_end_keys), "The mixture after annealing."};

#define SO(f) R(trainer.sampler.f)
static const mtft_cfg_key k_sampler_keys[] = {
    KE("strategy", SO(start.strategy), "proportional", k_strategy,
       "Rates by task size n_k: proportional n_k; capped min(n_k, cap); temperature n_k^(1/T); uniform; weights "
       "(given). Same as train.sampler."),
    KD("temperature", SO(start.temperature), "1", 1e-3, 1e6,
       "T of the temperature strategy. Same as train.sampler_temperature."),
    KD("cap", SO(start.cap), "0", 0, BIG, "Examples limit of the capped strategy (> 0). Same as train.sampler_cap."),
    {"weights", MTFT_CK_DOUBLELIST, SO(start.weights), R(n_sampler_weights), "", NUL | RANGE, 0, BIG, NULL, NULL,
     "One weight per task, in tasks: order (strategy weights)."},
    KL("anneal_steps", SO(anneal_steps), "0", 0, BIG, "> 0: rates move linearly to end: over this many batches."),
    {"end", MTFT_CK_SECTION, SO(end), 0, "", 0, 0, 0, NULL, &k_end, "The mixture after anneal_steps batches."},
    KE("batch_mode", SO(batch_mode), "mixed", k_batch_mode,
       "mixed: each row draws its task; single_task: one task per batch. Same as train.batch_mode."),
    KE("epoch_policy", SO(epoch_policy), "reshuffle", k_epoch,
       "When a task has handed out every example: reshuffle it, or stop drawing it."),
    KU("seed", SO(seed), "0", "Seed of the draws; 0: the trainer's seed."),
};
static const mtft_cfg_section k_sampler = {"sampler", k_sampler_keys, N_KEYS(k_sampler_keys),
                                           "The task mixture."};

#define BO(f) R(trainer.balancer.f)
static const mtft_cfg_key k_balancer_keys[] = {
    KE("method", BO(method), "equal", k_method,
       "Loss balancer (equal .. coba) or gradient-level (gradnorm .. nash_mtl, which need lora.shared_rank > 0). "
       "Same as train.balancer."),
    KB("drives_sampler", R(trainer.balancer_drives_sampler), "false",
       "Sampling rates follow the balancer's weights. Same as train.balancer_drives_sampler."),
    KU("seed", BO(seed), "0", "Seed of RLW draws and PCGrad's task order."),
    {"static_weights", MTFT_CK_FLOATLIST, BO(static_weights), R(n_static_weights), "", NUL | RANGE, 0, BIG, NULL,
     NULL, "static and mftcoder_task: one weight per task in tasks: order; none: all 1."},
    KF("uncertainty_lr", BO(uncertainty_lr), "1e-3", 0, 10, "uncertainty: learning rate of s_k."),
    KB("uncertainty_adam", BO(uncertainty_adam), "true", "uncertainty: Adam (else SGD) on s_k."),
    KF("uncertainty_init", BO(uncertainty_init), "0", -100, 100, "uncertainty: initial s_k."),
    KF("dwa_temperature", BO(dwa_temperature), "2", 1e-3, 1e6, "dwa: temperature T."),
    KI("dwa_period", BO(dwa_period), "1", 1, 1000000, "dwa: steps averaged into one DWA epoch."),
    KF("famo_lr", BO(famo_lr), "0.025", 0, 10, "famo: learning rate of the task logits."),
    KF("famo_gamma", BO(famo_gamma), "0.001", 0, 10, "famo: weight decay of the task logits."),
    KI("coba_warmup", BO(coba_warmup), "100", 0, 1000000000, "coba: warm-up steps with uniform weights."),
    KI("coba_window", BO(coba_window), "200", 1, 1000000000, "coba: slope-fitting window in steps."),
    KF("coba_tau", BO(coba_tau), "5", 1e-6, 1e6, "coba: divergence temperature."),
    KB("coba_normalize", BO(coba_normalize), "true", "coba: divide each validation loss by its first value."),
    KFO("cagrad_c", BO(cagrad_c), "0.5", 0, 1, "cagrad: c."),
    KB("cagrad_rescale", BO(cagrad_rescale), "true", "cagrad: divide by 1 + c^2."),
    KF("gradnorm_alpha", BO(gradnorm_alpha), "1.5", 0, 100, "gradnorm: asymmetry alpha."),
    KF("gradnorm_lr", BO(gradnorm_lr), "0.025", 0, 10, "gradnorm: weight learning rate."),
    KI("nash_max_iter", BO(nash_max_iter), "20", 1, 100000, "nash_mtl: inner iterations."),
    KE("mgda_norm", BO(mgda_norm), "l2", k_mgda_norm, "mgda_ub: gradient normalisation."),
};
static const mtft_cfg_section k_balancer = {"balancer", k_balancer_keys, N_KEYS(k_balancer_keys),
                                            "The loss balancer."};

/* ---- optimizer:, schedule:, eval:, checkpoint:, output: ------------------------------------------ */

#define TR(f) R(trainer.f)
static const mtft_cfg_key k_optim_keys[] = {
    KF("lr", TR(lr), "1e-3", 0, 10, "AdamW learning rate. Same as train.lr."),
    KF("weight_decay", TR(weight_decay), "0.01", 0, 10, "Decoupled weight decay. Same as train.weight_decay."),
    KFO("beta1", TR(beta1), "0.9", 0, 1, "AdamW beta1."),
    KFO("beta2", TR(beta2), "0.999", 0, 1, "AdamW beta2."),
    KF("eps", TR(eps), "1e-8", 0, 1, "AdamW epsilon."),
    KF("grad_clip", TR(grad_clip), "1", 0, 1e9, "Clip the global gradient norm to this; 0: off. Same as train.grad_clip."),
    KB("decay_1d", R(adamw.decay_1d), "false", "Decay 1-D tensors (biases, norms) too (mtft_adamw_options only)."),
    KE("type", TR(optimizer), "adamw", k_optimizer,
       "adamw, or sgd (SGD with momentum; weight_decay is then added to the gradient)."),
    KF("momentum", TR(momentum), "0.9", 0, 0.999, "SGD momentum (type: sgd)."),
    KI("grad_accum_steps", TR(grad_accum_steps), "1", 1, 1048576,
       "Micro-batches of batch_size rows per optimizer step, each loss scaled by 1/N; the loss balancer steps on "
       "each micro-batch, the sampler's rates change after the optimizer step. Gradient-level balancers need 1."),
    KF("sam_rho", TR(sam_rho), "0", 0, 100,
       "> 0: SAM with this radius (a second forward-backward at the perturbed weights, which are then restored). "
       "Needs grad_accum_steps 1 and a loss-level balancer (unless sam_per_task)."),
    KB("sam_per_task", TR(sam_per_task), "false",
       "With sam_rho > 0: per-task SAM toward task-based flat minima (Phan et al. 2022): each task's rows get their "
       "own perturbation rho g_k/||g_k||; the shared parameters take A(g) + A(g_SAM - g) with the balancer's "
       "aggregation A (loss- or gradient-level), each task's own LoRA and head its perturbed gradient."),
};
static const mtft_cfg_section k_optim = {"optimizer", k_optim_keys, N_KEYS(k_optim_keys),
                                         "AdamW or SGD with momentum, gradient accumulation, SAM."};

static const mtft_cfg_key k_sched_keys[] = {
    KE("type", TR(schedule), "linear", k_schedule,
       "Learning-rate schedule after the warmup: constant, or linear / cosine decay to min_lr_ratio * lr at the "
       "last step. Same as train.schedule."),
    KL("warmup_steps", TR(warmup_steps), "0", 0, BIG, "Linear warmup steps. Same as train.warmup_steps."),
    KF("min_lr_ratio", TR(min_lr_ratio), "0", 0, 1, "Decay floor as a fraction of lr. Same as train.min_lr_ratio."),
};
static const mtft_cfg_section k_sched = {"schedule", k_sched_keys, N_KEYS(k_sched_keys), "LR schedule."};

static const mtft_cfg_key k_eval_keys[] = {
    KL("every", TR(eval_every), "0", 0, BIG,
       "Evaluate on dev every this many steps and at the end (best dev score kept); 0: never. Same as "
       "train.eval_every."),
    KL("max_examples", TR(eval_max_examples), "0", 0, BIG,
       "At most this many dev examples per task; 0: all. Same as train.eval_max_examples."),
    KI("batch_size", TR(eval_batch_size), "32", 1, 1048576, "Rows per evaluation batch. Same as train.eval_batch_size."),
    KI("early_stop_patience", TR(early_stop_patience), "0", 0, 1000000,
       "Stop after this many evaluations without a better dev score; 0: never. Same as train.early_stop_patience."),
    KL("test_max_examples", R(run.test_max_examples), "0", 0, BIG,
       "At most this many test examples per task in the final evaluation; 0: all. Same as train.test_max_examples."),
    KP("baselines", R(run.baselines), "JSON file of per-task floors printed beside the results. Same as train.baselines."),
};
static const mtft_cfg_section k_eval = {"eval", k_eval_keys, N_KEYS(k_eval_keys), "Evaluation."};

static const mtft_cfg_key k_ckpt_keys[] = {
    KP("dir", R(run.checkpoint_dir),
       "Directory the trained state is saved to at the end; none: not saved. Same as train.out."),
    KP("periodic_dir", TR(ckpt_dir),
       "Directory of periodic checkpoints (step-NNNNNNNN inside) and, with eval.every > 0, of the best dev "
       "checkpoint (best/). Same as train.ckpt_dir."),
    KL("save_every", TR(save_every), "0", 0, BIG,
       "Save into periodic_dir every this many steps; 0: no periodic checkpoints. Same as train.save_every."),
    KI("keep_last", TR(keep_last), "3", 0, 1000000,
       "Keep the newest this many periodic checkpoints; 0: all. Same as train.keep_last."),
    KP("resume", R(run.resume_from), "A checkpoint to continue (mtft_trainer_load before training)."),
};
static const mtft_cfg_section k_ckpt = {"checkpoint", k_ckpt_keys, N_KEYS(k_ckpt_keys), "Checkpoints."};

static const mtft_cfg_key k_output_keys[] = {
    KP("log", R(run.log_path), "JSONL log, one object per step and evaluation; none: no log. Same as train.log."),
    KPD("report", R(run.report_path), "the log path with .html", "HTML report with charts made from the log."),
    KI("print_every", TR(print_every), "0", 0, 1000000000,
       "A progress line every this many steps; 0: none. Same as train.print_every."),
};
static const mtft_cfg_section k_output = {"output", k_output_keys, N_KEYS(k_output_keys), "Outputs."};

/* ---- train: (the flat keys of the first configs) ---------------------------------------------------- */

static const mtft_cfg_key k_train_keys[] = {
    KP("base", R(run.base_model), "Same as model.base."),
    KP("baselines", R(run.baselines), "Same as eval.baselines."),
    KP("out", R(run.checkpoint_dir), "Same as checkpoint.dir."),
    KP("log", R(run.log_path), "Same as output.log."),
    KP("ckpt_dir", TR(ckpt_dir), "Same as checkpoint.periodic_dir."),
    KL("save_every", TR(save_every), "0", 0, BIG, "Same as checkpoint.save_every."),
    KI("keep_last", TR(keep_last), "3", 0, 1000000, "Same as checkpoint.keep_last."),
    KI("threads", R(run.threads), "0", 0, 4096, "Threads (OpenMP and BLAS); 0: the library default."),
    KU("seed", TR(seed), "1", "Seed of heads, LoRA init, sampler and balancer (when their own seed is 0)."),
    KL("steps", TR(max_steps), "1000", 1, BIG, "Optimizer steps."),
    KD("seconds", TR(max_seconds), "0", 0, 1e9, "> 0: also stop after this much training time (not deterministic)."),
    KI("batch_size", TR(batch_size), "16", 1, 1048576, "Rows per step."),
    KID("max_len", TR(max_len), "data.max_len", 1, 1048576, "Rows are cut to this many tokens."),
    KF("lr", TR(lr), "1e-3", 0, 10, "Same as optimizer.lr."),
    KF("weight_decay", TR(weight_decay), "0.01", 0, 10, "Same as optimizer.weight_decay."),
    KL("warmup_steps", TR(warmup_steps), "0", 0, BIG, "Same as schedule.warmup_steps."),
    KE("schedule", TR(schedule), "linear", k_schedule, "Same as schedule.type."),
    KF("min_lr_ratio", TR(min_lr_ratio), "0", 0, 1, "Same as schedule.min_lr_ratio."),
    KF("grad_clip", TR(grad_clip), "1", 0, 1e9, "Same as optimizer.grad_clip."),
    KB("train_base", TR(train_base), "false", "The base trunk trains too, at lr * base_lr_scale."),
    KF("base_lr_scale", TR(base_lr_scale), "0.1", 0, 100, "Learning-rate factor of the trunk."),
    KI("lora_rank", TR(lora_rank), "8", 0, 4096, "Per-task LoRA rank; 0: none. With lora: use lora.rank."),
    KF("lora_alpha", TR(lora_alpha), "16", 0, 1e6, "Per-task LoRA alpha. With lora: use lora.alpha."),
    KS("lora_targets", TR(lora_targets), "",
       "Per-task LoRA projections; none: all four GPT-2 projections. With lora: use lora.target_modules."),
    KI("shared_lora_rank", TR(shared_lora_rank), "0", 0, 4096, "Same as lora.shared_rank."),
    KI("head_hidden", TR(head_hidden), "0", 0, 65536, "Same as heads.hidden_size."),
    KE("head_pool", TR(head_pool), "last", k_pool, "Same as heads.pool."),
    KE("sampler", SO(start.strategy), "proportional", k_strategy, "Same as sampler.strategy."),
    KD("sampler_temperature", SO(start.temperature), "1", 1e-3, 1e6, "Same as sampler.temperature."),
    KD("sampler_cap", SO(start.cap), "0", 0, BIG, "Same as sampler.cap."),
    KE("batch_mode", SO(batch_mode), "mixed", k_batch_mode, "Same as sampler.batch_mode."),
    KE("balancer", BO(method), "equal", k_method, "Same as balancer.method."),
    KB("balancer_drives_sampler", R(trainer.balancer_drives_sampler), "false", "Same as balancer.drives_sampler."),
    KF("dwa_temperature", BO(dwa_temperature), "2", 1e-3, 1e6, "Same as balancer.dwa_temperature."),
    KI("dwa_period", BO(dwa_period), "1", 1, 1000000, "Same as balancer.dwa_period."),
    KF("uncertainty_lr", BO(uncertainty_lr), "1e-3", 0, 10, "Same as balancer.uncertainty_lr."),
    KF("famo_lr", BO(famo_lr), "0.025", 0, 10, "Same as balancer.famo_lr."),
    KFO("cagrad_c", BO(cagrad_c), "0.5", 0, 1, "Same as balancer.cagrad_c."),
    KL("eval_every", TR(eval_every), "0", 0, BIG, "Same as eval.every."),
    KL("eval_max_examples", TR(eval_max_examples), "0", 0, BIG, "Same as eval.max_examples."),
    KL("test_max_examples", R(run.test_max_examples), "0", 0, BIG, "Same as eval.test_max_examples."),
    KI("eval_batch_size", TR(eval_batch_size), "32", 1, 1048576, "Same as eval.batch_size."),
    KI("early_stop_patience", TR(early_stop_patience), "0", 0, 1000000, "Same as eval.early_stop_patience."),
    KI("print_every", TR(print_every), "0", 0, 1000000000, "Same as output.print_every."),
};
static const mtft_cfg_section k_train = {"train", k_train_keys, N_KEYS(k_train_keys), "The training run."};

/* ---- pretrain: -------------------------------------------------------------------------------------- */

#define PO(f) R(pretrain.f)
static const mtft_cfg_key k_pretrain_keys[] = {
    {"texts", MTFT_CK_PATHLIST, R(pretrain_texts), R(n_pretrain_texts), "", MTFT_CFG_REQUIRED, 0, 0, NULL, NULL,
     "Plain-text files: the BPE tokenizer is trained on them, then the model."},
    KI("vocab_size", MC(vocab_size), "50257", 1, 16777216, "Same as model.vocab_size (the BPE vocabulary)."),
    KI("n_layer", MC(n_layer), "12", 1, 1024, "Same as model.n_layer."),
    KI("n_embd", MC(n_embd), "768", 1, 65536, "Same as model.n_embd."),
    KI("n_head", MC(n_head), "12", 1, 1024, "Same as model.n_head."),
    KI("n_ctx", MC(n_ctx), "1024", 1, 1048576, "Same as model.n_ctx."),
    KL("steps", PO(max_steps), "1000", 1, BIG, "Optimizer steps."),
    KD("seconds", PO(max_seconds), "0", 0, 1e9, "> 0: also stop after this much time."),
    KI("batch_size", PO(batch_size), "16", 1, 1048576, "Sequences per step."),
    KID("seq_len", PO(seq_len), "model n_ctx", 1, 1048576, "Tokens per sequence (<= n_ctx)."),
    KF("lr", PO(lr), "1e-3", 0, 10, "Peak learning rate (cosine schedule)."),
    KF("weight_decay", PO(weight_decay), "0.1", 0, 10, "AdamW weight decay."),
    KL("warmup_steps", PO(warmup_steps), "50", 0, BIG, "Linear warmup steps."),
    KF("grad_clip", PO(grad_clip), "1", 0, 1e9, "Global gradient-norm clip; 0: off."),
    KDO("holdout", PO(holdout), "0.05", 0, 1, "Fraction of the tokens (the end) kept for the held-out loss."),
    KU("seed", PO(seed), "1", "Seed."),
    KI("print_every", PO(print_every), "0", 0, 1000000000, "A progress line every this many steps; 0: none."),
};
static const mtft_cfg_section k_pretrain = {"pretrain", k_pretrain_keys, N_KEYS(k_pretrain_keys),
                                            "Pretraining a small model."};

/* ---- data: ----------------------------------------------------------------------------------------- */

static const char *const k_truncation[] = {"right", "left", NULL};

static const mtft_cfg_key k_data_keys[] = {
    {"cache_dir", MTFT_CK_PATH, R(data.cache_dir), 0, "", NUL, 0, 0, NULL, NULL,
     "Directory of tokenized caches (created if missing); none: tokenize in memory on every load."},
    KS("eos_token", R(data.eos_token), "<|endoftext|>", "Token appended to generation targets; null: none."),
    KB("log_progress", R(data.log_progress), "true", "Log one line per loaded task."),
    KI("batch_size", R(loader.batch_size), "16", 1, 1048576,
       "Examples per batch; also the trainer's rows per step unless train.batch_size is given."),
    KB("shuffle", R(loader.shuffle), "true",
       "Shuffle the examples every epoch (seeded). mtft_loader only: the trainer's mixture sampler draws the rows."),
    KU("seed", R(loader.seed), "0", "Seed of the batch order (mtft_loader only)."),
    KI("bucket_window", R(loader.bucket_window), "0", 0, 1048576,
       "Sort by length within windows of this many batches (less padding); 0 or 1: off. mtft_loader only."),
    KB("drop_last", R(loader.drop_last), "false", "Drop a last batch smaller than batch_size (mtft_loader only)."),
    KI("max_len", R(collate.max_len), "512", 1, 1048576, "Longest row in tokens; longer examples are truncated."),
    KE("truncation", R(collate.truncation), "right", k_truncation,
       "right: keep the first max_len tokens; left: keep the last ones."),
    {"pad_id", MTFT_CK_INT32, R(collate.pad_id), 0, "0", RANGE, 0, IMAX, NULL, NULL,
     "Token id written at padding positions (the trainer's pad_id too)."},
    KB("pack", R(collate.pack), "false",
       "Pack several generation examples into each row (segments restart positions); mtft_batch_collate only: "
       "mtft train refuses it (packed segments would attend to each other)."),
    KI("pad_to_multiple", R(collate.pad_to_multiple), "1", 1, 4096,
       "Round the padded length up to a multiple of this (mtft_batch_collate; mtft train refuses values > 1)."),
};
static const mtft_cfg_section k_data = {"data", k_data_keys, N_KEYS(k_data_keys), "Data pipeline options."};

/* ---- the roots ------------------------------------------------------------------------------------- */

static const mtft_cfg_root k_roots[] = {
    {"data", &k_data, "`data:` (-> `mtft_data_options`, `mtft_loader_options`, `mtft_collate_options`)", NULL},
    {"model", &k_model, "`model:` (-> `mtft_model_config`; `base` -> `mtft_run_options`)",
     "With `base` the architecture comes from the model's config.json; the other keys describe a model built "
     "from scratch (pretrain:). Unset, n_kv_head is n_head and n_ff is 4 * n_embd."},
    {"tokenizer", &k_tok, "`tokenizer:` (-> `mtft_run_options`)",
     "Either vocab + merges or json. With none of them and a model.base, vocab.json and merges.txt of the base "
     "directory."},
    {"lora", &k_lora, "`lora:` (-> `mtft_lora_options`; `shared_rank` -> `mtft_trainer_options`)",
     "When this section is present the trainer's per-task LoRA takes rank, alpha and target_modules from it "
     "(then train.lora_rank, lora_alpha and lora_targets must not be given)."},
    {"adapter", &k_adapter, "`adapter:` (-> `mtft_adapter_options`)",
     "For programs that attach bottleneck adapters (mtft_peft_add_adapter); the trainer uses LoRA."},
    {"heads", &k_heads, "`heads:` (-> `mtft_trainer_options`: head_hidden, head_pool)",
     "Defaults of the heads made from each task's type; `tasks[].head` overrides them per task."},
    {"sampler", &k_sampler, "`sampler:` (-> `mtft_trainer_options.sampler`, an `mtft_sampler_options`)",
     "See docs/sampler.md for the formulas. weights lists have one entry per task."},
    {"balancer", &k_balancer, "`balancer:` (-> `mtft_trainer_options.balancer`, an `mtft_balancer_options`)",
     "See docs/balance.md. Each hyperparameter applies to its method only."},
    {"optimizer", &k_optim, "`optimizer:` (-> `mtft_trainer_options`, `mtft_adamw_options`)", NULL},
    {"schedule", &k_sched, "`schedule:` (-> `mtft_trainer_options`, `mtft_schedule_options`)",
     "The schedule runs over train.steps steps."},
    {"eval", &k_eval, "`eval:` (-> `mtft_trainer_options`, `mtft_run_options`)", NULL},
    {"checkpoint", &k_ckpt, "`checkpoint:` (-> `mtft_run_options`, `mtft_trainer_options`)", NULL},
    {"output", &k_output, "`output:` (-> `mtft_run_options`, `mtft_trainer_options`)", NULL},
    {"train", &k_train, "`train:` (-> `mtft_trainer_options`, `mtft_run_options`)",
     "The flat keys of the first configs; each one not described here sets the same option as the section "
     "key it names, and giving both is an error."},
    {"pretrain", &k_pretrain, "`pretrain:` (-> `mtft_pretrain_options`; the architecture -> `mtft_model_config`)",
     "Trains a BPE tokenizer and a small causal LM from scratch on plain text, written to model.base. The "
     "architecture keys are the model: keys (give each once); unset ones are GPT-2 small's."},
};

const mtft_cfg_root *mtft_cfg__roots(int *n) {
    *n = N_KEYS(k_roots);
    return k_roots;
}

void mtft_cfg__init_run(mtft_cfg_run *r) {
    memset(r, 0, sizeof *r);
    mtft_model_config m = MTFT_MODEL_CONFIG_INIT;
    mtft_run_options ro = MTFT_RUN_OPTIONS_INIT;
    mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
    mtft_adapter_options ao = MTFT_ADAPTER_OPTIONS_INIT;
    mtft_trainer_options to = MTFT_TRAINER_OPTIONS_INIT;
    mtft_adamw_options wo = MTFT_ADAMW_OPTIONS_INIT;
    mtft_schedule_options so = MTFT_SCHEDULE_OPTIONS_INIT;
    mtft_pretrain_options po = MTFT_PRETRAIN_OPTIONS_INIT;
    mtft_data_options d = MTFT_DATA_OPTIONS_INIT;
    mtft_loader_options l = MTFT_LOADER_OPTIONS_INIT;
    mtft_collate_options c = MTFT_COLLATE_OPTIONS_INIT;
    r->model = m;
    r->run = ro;
    r->lora = lo;
    r->adapter = ao;
    r->trainer = to;
    r->adamw = wo;
    r->schedule = so;
    r->pretrain = po;
    r->data = d;
    r->loader = l;
    r->collate = c;
}

/* ---- cross-key checks ------------------------------------------------------------------------------ */

#define SET(field) (mtft_cfg__where(ctx, &(field)) != NULL)
#define AT(field) mtft_cfg__where(ctx, &(field))

static int err_at(const mtft_cfg_ctx *ctx, const mtft_cfg_written *w, int code, const char *fmt, ...)
    MTFT_PRINTF(4, 5);
static int err_at(const mtft_cfg_ctx *ctx, const mtft_cfg_written *w, int code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mtft_cfg__errat(ctx, w ? w->node : NULL, code, w ? w->path : "", "%s", msg);
}

static int check_weights(const mtft_cfg_ctx *ctx, const void *field, int n, int n_tasks) {
    const mtft_cfg_written *w = AT(*(const void *const *)field);
    if (!w || n == n_tasks) return MTFT_OK;
    return err_at(ctx, w, MTFT_EINVAL, "%d weights for %d tasks (one per task, in tasks: order)", n, n_tasks);
}

static int check_dist(const mtft_cfg_ctx *ctx, const mtft_sampler_dist *d, const void *strategy_field,
                      const char *which) {
    const mtft_cfg_written *w = AT(*(const int *)strategy_field);
    if (d->strategy == MTFT_SAMPLER_CAPPED && !(d->cap > 0))
        return err_at(ctx, w, MTFT_EINVAL, "strategy capped needs %s.cap > 0", which);
    if (d->strategy == MTFT_SAMPLER_WEIGHTS && !d->weights)
        return err_at(ctx, w, MTFT_EINVAL, "strategy weights needs %s.weights (one per task)", which);
    return MTFT_OK;
}

int mtft_cfg__finish_run(mtft_cfg_ctx *ctx, mtft_cfg_run *r, int n_tasks) {
    mtft_model_config *m = &r->model;
    mtft_trainer_options *t = &r->trainer;
    int rc;
    /* model: derived sizes and divisibility */
    if (!SET(m->n_kv_head)) m->n_kv_head = m->n_head;
    if (!SET(m->n_ff)) m->n_ff = 4 * m->n_embd;
    if (m->n_embd % m->n_head)
        return err_at(ctx, SET(m->n_head) ? AT(m->n_head) : AT(m->n_embd), MTFT_EINVAL,
                      "n_head %d does not divide n_embd %d", m->n_head, m->n_embd);
    if (m->n_head % m->n_kv_head)
        return err_at(ctx, SET(m->n_kv_head) ? AT(m->n_kv_head) : AT(m->n_head), MTFT_EINVAL,
                      "n_kv_head %d does not divide n_head %d", m->n_kv_head, m->n_head);
    if (m->arch == MTFT_ARCH_GPT2 && m->attn_bias)
        return err_at(ctx, AT(m->attn_bias), MTFT_EINVAL, "attn_bias is for the llama family, not gpt2");
    /* tokenizer: either json or vocab + merges; defaults from the base */
    mtft_run_options *ro = &r->run;
    if (ro->tokenizer_json && (ro->tokenizer_vocab || ro->tokenizer_merges))
        return err_at(ctx, AT(ro->tokenizer_json), MTFT_EINVAL,
                      "give either tokenizer.json or tokenizer.vocab + tokenizer.merges");
    if (!ro->tokenizer_vocab != !ro->tokenizer_merges) {
        const mtft_cfg_written *w = ro->tokenizer_vocab ? AT(ro->tokenizer_vocab) : AT(ro->tokenizer_merges);
        return err_at(ctx, w, MTFT_EINVAL, "tokenizer.vocab and tokenizer.merges go together");
    }
    if (!ro->tokenizer_json && !ro->tokenizer_vocab && ro->base_model) {
        char buf[4200];
        snprintf(buf, sizeof buf, "%s/vocab.json", ro->base_model);
        ro->tokenizer_vocab = mtft_cfg__keep(ctx, buf);
        snprintf(buf, sizeof buf, "%s/merges.txt", ro->base_model);
        ro->tokenizer_merges = mtft_cfg__keep(ctx, buf);
        if (!ro->tokenizer_vocab || !ro->tokenizer_merges) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    }
    /* lora: drives the trainer's per-task LoRA when given */
    int lora_given = SET(r->lora.rank) || SET(r->lora.alpha) || SET(r->lora.target_modules) ||
                     SET(r->lora.dropout) || SET(r->lora.use_rslora) || SET(r->lora.layers) || SET(r->lora.seed);
    if (lora_given) {
        const mtft_cfg_written *w = SET(t->lora_rank)     ? AT(t->lora_rank)
                                    : SET(t->lora_alpha)  ? AT(t->lora_alpha)
                                    : SET(t->lora_targets) ? AT(t->lora_targets)
                                                          : NULL;
        if (w)
            return err_at(ctx, w, MTFT_EINVAL,
                          "the per-task LoRA is set by the lora: section; give rank, alpha and target_modules "
                          "there");
        t->lora_rank = r->lora.rank;
        t->lora_alpha = r->lora.alpha;
        t->lora_targets = r->lora.target_modules;
    }
    /* gradient-level balancers combine per-task gradients of a shared LoRA */
    if ((int)t->balancer.method >= (int)MTFT_BALANCE_GRADNORM && t->shared_lora_rank <= 0 &&
        !(t->sam_per_task && t->train_base))
        return err_at(ctx, AT(t->balancer.method), MTFT_EINVAL,
                      "a gradient-level balancer needs a shared LoRA (lora.shared_rank > 0), or per-task SAM "
                      "(optimizer.sam_per_task) with a trained base");
    /* sampler and balancer lists: one entry per task */
    if ((rc = check_dist(ctx, &t->sampler.start, &t->sampler.start.strategy, "sampler"))) return rc;
    if (t->sampler.anneal_steps > 0 &&
        (rc = check_dist(ctx, &t->sampler.end, &t->sampler.end.strategy, "sampler.end")))
        return rc;
    if ((rc = check_weights(ctx, &t->sampler.start.weights, r->n_sampler_weights, n_tasks))) return rc;
    if ((rc = check_weights(ctx, &t->sampler.end.weights, r->n_sampler_end_weights, n_tasks))) return rc;
    if ((rc = check_weights(ctx, &t->balancer.static_weights, r->n_static_weights, n_tasks))) return rc;
    /* trainer: rows follow the data pipeline unless given */
    if (!SET(t->max_len)) t->max_len = r->collate.max_len;
    if (!SET(t->batch_size) && SET(r->loader.batch_size)) t->batch_size = r->loader.batch_size;
    t->truncation = r->collate.truncation;
    t->pad_id = r->collate.pad_id;
    /* periodic checkpoints need their directory */
    if (t->save_every > 0 && !t->ckpt_dir)
        return err_at(ctx, AT(t->save_every), MTFT_EINVAL,
                      "periodic checkpoints need checkpoint.periodic_dir (train.ckpt_dir)");
    /* outputs */
    t->log_path = ro->log_path;
    if (!ro->report_path && ro->log_path) {
        size_t l = strlen(ro->log_path);
        char buf[4200];
        if (l > 6 && !strcmp(ro->log_path + l - 6, ".jsonl"))
            snprintf(buf, sizeof buf, "%.*s.html", (int)(l - 6), ro->log_path);
        else
            snprintf(buf, sizeof buf, "%s.html", ro->log_path);
        if (!(ro->report_path = mtft_cfg__keep(ctx, buf))) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    }
    /* optimizer and schedule structs of optim.h, from the trainer's values */
    r->adamw.lr = t->lr;
    r->adamw.beta1 = t->beta1;
    r->adamw.beta2 = t->beta2;
    r->adamw.eps = t->eps;
    r->adamw.weight_decay = t->weight_decay;
    r->schedule.kind = (int)t->schedule; /* the same numbering: constant, linear, cosine */
    r->schedule.warmup_steps = t->warmup_steps;
    r->schedule.total_steps = t->max_steps;
    r->schedule.min_lr_ratio = t->min_lr_ratio;
    /* pretrain: windows default to the context */
    if (r->n_pretrain_texts > 0) {
        mtft_pretrain_options *p = &r->pretrain;
        if (!SET(p->seq_len)) p->seq_len = m->n_ctx;
        if (p->seq_len > m->n_ctx)
            return err_at(ctx, AT(p->seq_len), MTFT_ERANGE, "seq_len %d exceeds n_ctx %d", p->seq_len,
                          m->n_ctx);
    }
    return MTFT_OK;
}
