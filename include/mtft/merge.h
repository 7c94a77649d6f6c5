/* mtft: merging task models and task adapters into one model.
 *
 * A task vector is tau_t = theta_t - theta_base, per tensor. It comes from a
 * full finetuned checkpoint (safetensors with the base's names and shapes)
 * or from a PEFT LoRA adapter (delta W = scale * B A, scale = alpha / r or
 * alpha / sqrt(r) with use_rslora; transposed onto GPT-2's Conv1D weights,
 * which are stored [in, out]). The methods combine the task vectors of each
 * tensor as flat vectors (docs/merge.md gives every formula):
 *
 *   linear            theta = base + lambda * sum_t w_t tau_t / (sum_t w_t if normalize)
 *                     (with normalize, the weighted average of the models)
 *   task_arithmetic   theta = base + lambda * sum_t w_t tau_t          (Ilharco et al. 2023)
 *   ties              trim each tau_t to its top density fraction by |.|, elect the sign of
 *                     sum_t w_t trim(tau_t), mean over the agreeing entries (Yadav et al. 2023)
 *   dare_linear       drop entries with p = 1 - density, rescale by 1/(1-p), task arithmetic
 *   dare_ties         DARE, then TIES's sign election and disjoint mean    (Yu et al. 2024)
 *   breadcrumbs       per tensor drop the largest beta and smallest gamma fraction of |tau_t|,
 *                     then task arithmetic                       (Davari & Belilovsky 2023)
 *   pcb               intra- and inter-task balancing scores, drop all but the top density
 *                     fraction per task, rescale by the normalised scores (Du et al. 2024)
 *   AdaMerging        task- or layer-wise lambda learned by entropy minimisation on unlabeled
 *                     inputs through the autograd (mtft_adamerge)     (Yang et al. 2024)
 *
 * Parameters (MTFT_MERGE_P_*) may differ per model and per tensor: a setting
 * applies to one model or all, and to the tensors whose name matches a
 * pattern (a pattern with '*' or '?' is a glob over the whole name, any other
 * pattern matches as a substring, like mergekit's filters). When several
 * settings apply, the one made last wins. */
#ifndef MTFT_MERGE_H
#define MTFT_MERGE_H

#include "mtft/common.h"
#include "mtft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only. */
typedef enum mtft_merge_method {
    MTFT_MERGE_LINEAR = 0,
    MTFT_MERGE_TASK_ARITHMETIC = 1,
    MTFT_MERGE_TIES = 2,
    MTFT_MERGE_DARE_LINEAR = 3,
    MTFT_MERGE_DARE_TIES = 4,
    MTFT_MERGE_BREADCRUMBS = 5,
    MTFT_MERGE_PCB = 6
} mtft_merge_method;

/* "linear", "task_arithmetic", "ties", "dare_linear", "dare_ties",
 * "breadcrumbs", "pcb" ("?" for an unknown value). */
MTFT_API const char *mtft_merge_method_name(mtft_merge_method m);
/* The method called `name`, or MTFT_ENOTFOUND (error lists the names). */
MTFT_API int mtft_merge_method_from_name(const char *name, mtft_merge_method *out);

/* Parameters of one model for one tensor. */
typedef struct mtft_merge_model_params {
    float weight;  /* w_t (default 1) */
    float density; /* ties: fraction kept by magnitude; dare_*: keep probability 1 - p;
                      pcb: fraction of balanced scores kept (drop ratio r = 1 - density).
                      In (0, 1]. Defaults: ties 0.2, dare 0.1, pcb 0.1, others 1 */
    float beta;    /* breadcrumbs: fraction of the largest |tau| dropped (default 0.01) */
    float gamma;   /* breadcrumbs: fraction of the smallest |tau| dropped (default 0.9) */
} mtft_merge_model_params;

/* The defaults of a method (see above). */
MTFT_API mtft_merge_model_params mtft_merge_default_params(mtft_merge_method m);

/* Merge n_models task vectors of one tensor (n floats each) into out (n
 * floats): out = lambda * merged task vector (add the base yourself).
 * normalize != 0 divides linear / task_arithmetic / dare_linear /
 * breadcrumbs sums by sum_t w_t. DARE draws, for model t and element k,
 * u = mtft_rng_hash_uniform(seed + t * 0x9E3779B97F4A7C15, k) and drops the
 * entry when u < p = 1 - density (so masks are reproducible). Counts of kept
 * or dropped entries are floor(fraction * n); ties in magnitude keep the
 * lower index. Errors: MTFT_ERANGE naming the model and parameter. */
MTFT_API int mtft_merge_deltas(mtft_merge_method method, int n_models, int64_t n, const float *const *deltas,
                               const mtft_merge_model_params *params, float lambda, int normalize, uint64_t seed,
                               float *out);

/* ---- merging checkpoints and adapters ------------------------------------------- */

typedef struct mtft_merger mtft_merger;

/* Parameter names for mtft_merger_set_param. WEIGHT..GAMMA are per model;
 * LAMBDA and NORMALIZE (0 / 1) apply to the merged vector. */
typedef enum mtft_merge_param {
    MTFT_MERGE_P_WEIGHT = 0,
    MTFT_MERGE_P_DENSITY = 1,
    MTFT_MERGE_P_BETA = 2,
    MTFT_MERGE_P_GAMMA = 3,
    MTFT_MERGE_P_LAMBDA = 4,
    MTFT_MERGE_P_NORMALIZE = 5
} mtft_merge_param;
/* "weight", "density", "beta", "gamma", "lambda", "normalize". */
MTFT_API const char *mtft_merge_param_name(mtft_merge_param p);
MTFT_API int mtft_merge_param_from_name(const char *name, mtft_merge_param *out);

typedef struct mtft_merge_options {
    int version;
    mtft_merge_method method;
    uint64_t seed;         /* DARE masks: tensor X uses seed ^ fnv1a64(X) in mtft_merge_deltas */
    float lambda;          /* default lambda (1) */
    int normalize;         /* -1: the method's default (linear 1, others 0); 0 or 1 */
    const char *base_name; /* when set, an adapter whose base_model_name_or_path is set and
                              differs is an error; NULL: no check */
} mtft_merge_options;
#define MTFT_MERGE_OPTIONS_VERSION 1
#define MTFT_MERGE_OPTIONS_INIT {MTFT_MERGE_OPTIONS_VERSION, MTFT_MERGE_TASK_ARITHMETIC, 0, 1.0f, -1, NULL}

MTFT_API int mtft_merger_new(mtft_merger **out, const mtft_merge_options *o);
MTFT_API void mtft_merger_free(mtft_merger *m); /* NULL-safe */

/* The base: a .safetensors file, or a directory holding model.safetensors
 * (and config.json, copied to a directory output). Needed by every method
 * except linear over full models (no base: the plain weighted average). A
 * base whose __metadata__ has "mtft.fingerprint" uses it; otherwise the
 * fingerprint is FNV-1a 64 over the tensor names, shapes and bytes. */
MTFT_API int mtft_merger_set_base(mtft_merger *m, const char *path);
/* A full finetuned checkpoint (file or directory as for the base) with the
 * base's tensor names (a "transformer." prefix may differ) and shapes; a
 * missing or extra tensor, a different shape (both named), or a
 * "mtft.base_fingerprint" metadata value that differs from the base's is an
 * error (when the call that finds it runs). Returns the model's index (>= 0). */
MTFT_API int mtft_merger_add_model(mtft_merger *m, const char *path, float weight);
/* A PEFT LoRA adapter directory (adapter_config.json +
 * adapter_model.safetensors). Each lora_A/lora_B pair maps onto the base
 * weight "<module>.weight"; fan_in_fan_out (or, when absent, the shapes and
 * GPT-2 Conv1D names) says whether delta W is transposed. Returns the index. */
MTFT_API int mtft_merger_add_adapter(mtft_merger *m, const char *dir, float weight);
MTFT_API int mtft_merger_n_models(const mtft_merger *m);

/* Set a parameter for model `model` (-1: all models) on the tensors matching
 * `pattern` (NULL or "": all). Later settings win over earlier ones. */
MTFT_API int mtft_merger_set_param(mtft_merger *m, int model, const char *pattern, mtft_merge_param p, double value);

/* The task vector of model `model` for base tensor `name` (numel floats, in
 * the base's layout): full models theta - base, adapters scale * B A (zeros
 * for tensors the adapter does not touch). */
MTFT_API int mtft_merger_task_vector(mtft_merger *m, int model, const char *name, float *out, int64_t numel);

/* Merge and write the full weights: `path` ending in ".safetensors" is the
 * file; otherwise a directory (created) receiving model.safetensors and, when
 * the base is a directory with config.json, a copy of it. F32, atomic. The
 * metadata records the method and "mtft.base_fingerprint". */
MTFT_API int mtft_merger_save(mtft_merger *m, const char *path);
/* Merge adapters only, and write the merged delta of every touched weight
 * re-factored to rank `rank` by truncated SVD as a PEFT adapter directory
 * (lora_alpha = rank, so scale 1; B = U sqrt(S), A = sqrt(S) V^T). */
MTFT_API int mtft_merger_save_lora(mtft_merger *m, const char *dir, int rank);
/* Merge into a parameter group (e.g. mtft_model_base_group): every base
 * tensor must exist in pg with the same shape (a "transformer." prefix may
 * differ); group tensors the base lacks keep their values. */
MTFT_API int mtft_merger_merge_into(mtft_merger *m, mtft_param_group *pg);

/* Read a mergekit-style YAML merge config (docs/merge.md) into a merger.
 * *output receives the configured output path and *lora_rank the configured
 * output_lora_rank (0: full weights); both borrowed from the merger. Errors
 * give file:line:col and the key path. */
MTFT_API int mtft_merger_from_yaml(mtft_merger **out, const char *path, const char **output, int *lora_rank);

/* ---- AdaMerging ------------------------------------------------------------------- */

/* Builds the unsupervised loss (e.g. mtft_merge_entropy of the model's
 * logits on a batch of unlabeled inputs) on g, from a model whose weights
 * (the group given to mtft_adamerge) hold the current merge. `step` counts
 * from 0. Return MTFT_OK with *loss set, or an error. */
typedef int (*mtft_adamerge_loss_fn)(mtft_graph *g, int step, void *payload, mtft_tensor **loss);

typedef struct mtft_adamerge_options {
    int version;
    int layerwise;      /* 0: one lambda per task; 1: one per task and tensor */
    int steps;          /* optimisation steps */
    float lr;           /* Adam learning rate (betas 0.9, 0.999, eps 1e-8) */
    float init_lambda;  /* initial coefficients (0.3 as in the paper) */
    float lambda_min;   /* coefficients are clipped into [lambda_min, lambda_max] */
    float lambda_max;
} mtft_adamerge_options;
#define MTFT_ADAMERGE_OPTIONS_VERSION 1
#define MTFT_ADAMERGE_OPTIONS_INIT {MTFT_ADAMERGE_OPTIONS_VERSION, 1, 100, 1e-3f, 0.3f, 0.0f, 1.0f}

/* Learn the coefficients: each step sets pg's tensors to base + sum_t
 * lambda_{t,l} tau_{t,l}, runs fn on a reset graph, backpropagates (pg is
 * made trainable for the call; its previous state is restored), and
 * updates lambda by Adam with dL/dlambda_{t,l} = <dL/dtheta_l, tau_{t,l}>.
 * At the end pg holds the merge with the final coefficients. lambdas
 * (may be NULL) receives n_models * n_coef values (n_coef = 1, or the number
 * of base tensors in base file order when layerwise), model-major; losses
 * (may be NULL) receives the loss of each step. Uses the merger's inputs
 * only (its method and parameters are ignored). */
MTFT_API int mtft_adamerge(mtft_merger *m, mtft_param_group *pg, mtft_adamerge_loss_fn fn, void *payload,
                           const mtft_adamerge_options *o, float *lambdas, float *losses);
/* Number of base tensors (the layer-wise coefficient count). */
MTFT_API int mtft_merger_n_tensors(const mtft_merger *m);
/* Mean over rows of the entropy -sum_j p_j log p_j of softmax(logits [N, V]),
 * built from differentiable ops (a scalar [1]). */
MTFT_API mtft_tensor *mtft_merge_entropy(mtft_graph *g, mtft_tensor *logits);

#ifdef __cplusplus
}
#endif
#endif
