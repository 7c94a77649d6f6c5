/* mtft: parameter-efficient finetuning on a shared trunk, per task.
 *
 * An mtft_peft object attaches to a model (mtft_model) and holds any mix of:
 *   - LoRA: one shared (task-agnostic, task = MTFT_PEFT_SHARED) and one per
 *     task, active at once (MTLoRA); PEFT's maths and names;
 *   - bottleneck adapters per task (Houlsby: after attention and after the
 *     MLP; Pfeiffer: after the MLP);
 *   - (IA)3 scaling vectors per task (keys, values, MLP intermediate);
 *   - Poly / MHR: one inventory of LoRA skills with learned per-task routing;
 *   - ScaLearn: a target task's learned scaling of source tasks' adapters.
 * Each module lives in its own parameter group (one per task and kind, one
 * for the shared LoRA), so a frozen base has no gradient memory.
 *
 * Mixed-task batches. The rows (sequences) of a batch are grouped by task:
 * task k owns rows [row_offsets[k], row_offsets[k+1]). mtft_peft_group_rows
 * computes the permutation that groups any batch (and its inverse). Before a
 * forward, mtft_peft_set_batch tells the modules the ranges (and sets the
 * graph's row partition, so split groups get per-task gradients). Shared
 * layers run once over all rows; a task's module runs on its own rows only
 * (one small GEMM per task on a row slice, never a mask).
 *
 * Module names are HF module names inside a layer: GPT-2 "attn.c_attn",
 * "attn.c_proj", "mlp.c_fc", "mlp.c_proj"; LLaMA "self_attn.q_proj",
 * "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
 * "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj". */
#ifndef MTFT_PEFT_H
#define MTFT_PEFT_H

#include "mtft/common.h"
#include "mtft/model.h"
#include "mtft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_peft mtft_peft;

/* The task id of the shared (task-agnostic) LoRA. */
#define MTFT_PEFT_SHARED (-1)

/* Attach to m (installs the model's projection hooks; one mtft_peft per
 * model at a time) for n_tasks >= 1 tasks. The model must outlive it. */
MTFT_API int mtft_peft_new(mtft_peft **out, mtft_model *m, int n_tasks);
/* Detach from the model and free every module group. NULL-safe. Merged
 * LoRAs stay merged (unmerge first to restore the base). */
MTFT_API void mtft_peft_free(mtft_peft *p);
MTFT_API int mtft_peft_n_tasks(const mtft_peft *p);

/* ---- mixed-task batches ------------------------------------------------- */
/* Group B rows by task (stable within a task): perm[i] is the original row
 * placed at grouped position i, inv[r] the grouped position of original row
 * r (either may be NULL), row_offsets[n_tasks+1] the grouped ranges. A task
 * id outside [0, n_tasks) is MTFT_ERANGE naming the row. */
MTFT_API int mtft_peft_group_rows(const int32_t *task_ids, int B, int n_tasks, int32_t *perm, int32_t *inv,
                                  int32_t *row_offsets);
/* Use these grouped ranges (n_tasks+1 ints, in sequences, row_offsets[0] =
 * 0, non-decreasing; the forward's B must equal row_offsets[n_tasks]) for
 * the forwards that follow, and set g's row partition to them (for split
 * groups). g may be NULL. Call again after mtft_graph_reset (which clears
 * the graph's partition). */
MTFT_API int mtft_peft_set_batch(mtft_peft *p, mtft_graph *g, const int32_t *row_offsets);
/* All B rows belong to `task` (e.g. generation with B = 1). */
MTFT_API int mtft_peft_set_task(mtft_peft *p, mtft_graph *g, int task, int B);

/* ---- LoRA ------------------------------------------------------------------ */
typedef struct mtft_lora_options {
    int version;
    int rank;                   /* r >= 1 */
    float alpha;                /* scale = alpha / r, or alpha / sqrt(r) with use_rslora */
    float dropout;              /* on the LoRA input, training graphs only; [0, 1) */
    int use_rslora;
    /* Which projections: '|'-separated alternatives, '*' matches any run of
     * characters; an alternative matches a module name in full or as a
     * suffix after a '.' (PEFT's rule: "q_proj" matches "self_attn.q_proj").
     * E.g. "attn.c_attn", "q_proj|v_proj", "mlp.*". */
    const char *target_modules;
    /* Layers: NULL or "" for all, else a list like "0,2-3". */
    const char *layers;
    uint64_t seed;              /* A: Kaiming-uniform (a = sqrt 5) from this stream; B: zeros */
} mtft_lora_options;
#define MTFT_LORA_OPTIONS_VERSION 1
#define MTFT_LORA_OPTIONS_INIT {MTFT_LORA_OPTIONS_VERSION, 8, 8.0f, 0.0f, 0, "attn.c_attn", NULL, 0}

/* Add the LoRA of `task` (0..n_tasks-1, or MTFT_PEFT_SHARED for all rows).
 * Its group (trainable) is returned in *group (borrowed; may be NULL). Per
 * projection: lora_A [r, in], lora_B [out, r] (nn.Linear orientation, as
 * PEFT stores them also for GPT-2's Conv1D); y += scale * drop(x) A^T B^T. */
MTFT_API int mtft_peft_add_lora(mtft_peft *p, int task, const mtft_lora_options *o, mtft_param_group **group);
/* Fold the LoRA into the base weights (W += scale B A, transposed for
 * Conv1D); the original weights are kept so that unmerge restores them bit
 * for bit. While merged the LoRA is not applied by the hooks, so its effect
 * covers all rows (merge a task's LoRA only for single-task use). */
MTFT_API int mtft_peft_lora_merge(mtft_peft *p, int task);
MTFT_API int mtft_peft_lora_unmerge(mtft_peft *p, int task);
/* PEFT interchange: dir/adapter_model.safetensors with
 * base_model.model.<module path>.lora_{A,B}.weight (GPT-2:
 * transformer.h.N.attn.c_attn; LLaMA: model.layers.N.self_attn.q_proj) and
 * dir/adapter_config.json (dir must exist). base_model may be NULL. */
MTFT_API int mtft_peft_lora_save(mtft_peft *p, int task, const char *dir, const char *base_model);
/* Add the LoRA of `task` from a PEFT adapter directory (config + weights). */
MTFT_API int mtft_peft_lora_load(mtft_peft *p, int task, const char *dir, mtft_param_group **group);

/* ---- bottleneck adapters ------------------------------------------------------ */
typedef enum mtft_adapter_placement {
    MTFT_ADAPTER_HOULSBY = 0,  /* after the attention output projection and after the MLP */
    MTFT_ADAPTER_PFEIFFER = 1  /* after the MLP only */
} mtft_adapter_placement;

typedef enum mtft_peft_act {
    MTFT_PEFT_ACT_RELU = 0,
    MTFT_PEFT_ACT_GELU = 1,    /* tanh approximation */
    MTFT_PEFT_ACT_SILU = 2
} mtft_peft_act;

typedef struct mtft_adapter_options {
    int version;
    mtft_adapter_placement placement;
    int reduction_factor;      /* bottleneck size = n_embd / reduction_factor (at least 1) */
    mtft_peft_act act;
    float down_std;            /* down projection ~ N(0, down_std), bias 0 */
    float up_std;              /* up projection ~ N(0, up_std), bias 0; 0: exact identity at init */
    uint64_t seed;
} mtft_adapter_options;
#define MTFT_ADAPTER_OPTIONS_VERSION 1
#define MTFT_ADAPTER_OPTIONS_INIT \
    {MTFT_ADAPTER_OPTIONS_VERSION, MTFT_ADAPTER_HOULSBY, 16, MTFT_PEFT_ACT_RELU, 0.02f, 0.0f, 0}

/* Task's adapter: at each placement h -> h + up(act(down(h))) on the output
 * of the sub-layer (before the residual add). Tensors "<l>.<attn|mlp>.down.weight"
 * [m, C], ".down.bias" [m], ".up.weight" [C, m], ".up.bias" [C]. */
MTFT_API int mtft_peft_add_adapter(mtft_peft *p, int task, const mtft_adapter_options *o, mtft_param_group **group);

/* ---- (IA)3 -------------------------------------------------------------------- */
/* Task's (IA)3 vectors, ones at init: keys and values are scaled after
 * their projection ("<l>.ia3_k" / "<l>.ia3_v", width of k/v), the MLP
 * intermediate at the input of the down projection ("<l>.ia3_ff" [F]). */
MTFT_API int mtft_peft_add_ia3(mtft_peft *p, int task, mtft_param_group **group);

/* ---- Poly / MHR --------------------------------------------------------------- */
typedef enum mtft_poly_routing {
    MTFT_POLY_SIGMOID = 0,     /* PEFT Poly (eval): sigmoid(logits) / sum over skills */
    MTFT_POLY_SOFTMAX = 1      /* softmax over skills */
} mtft_poly_routing;

typedef struct mtft_poly_options {
    int version;
    int rank;                  /* r per skill */
    int n_skills;
    int n_splits;              /* MHR heads: in and out features split into n_splits parts */
    mtft_poly_routing routing;
    const char *target_modules;/* as in mtft_lora_options */
    const char *layers;
    uint64_t seed;
} mtft_poly_options;
#define MTFT_POLY_OPTIONS_VERSION 1
#define MTFT_POLY_OPTIONS_INIT \
    {MTFT_POLY_OPTIONS_VERSION, 8, 4, 1, MTFT_POLY_SIGMOID, "attn.c_attn", NULL, 0}

/* One Poly inventory for all tasks (at most one per mtft_peft). Per
 * projection, as PEFT: poly_lora_A [n_splits, n_skills, in/n_splits, r]
 * (Kaiming-uniform), poly_lora_B [n_splits, n_skills, r, out/n_splits]
 * (zeros), router logits [n_tasks, n_splits*n_skills] ~ U(-1e-3, 1e-3). Task
 * k's rows get y += x A_k B_k / r with A_k, B_k the skills mixed by k's
 * routing weights. (PEFT samples a relaxed Bernoulli while training; we use
 * its deterministic eval-mode weights throughout.) */
MTFT_API int mtft_peft_add_poly(mtft_peft *p, const mtft_poly_options *o, mtft_param_group **group);

/* ---- ScaLearn ----------------------------------------------------------------- */
/* Target task's rows at each adapter placement: h -> sum_j w_j * (h +
 * adapter_j(h)) over the source tasks' bottleneck adapters (added before,
 * all with the same placement), w_j [C] learned per layer and placement
 * ("<l>.<attn|mlp>.scale" [n_sources, C], 1/n_sources at init). The target
 * must have no adapter of its own; freeze the sources' groups as usual. */
MTFT_API int mtft_peft_add_scalearn(mtft_peft *p, int target_task, const int *sources, int n_sources,
                                    mtft_param_group **group);

/* ---- saving any module group apart from the base ---------------------------- */
/* Write a group's tensors to a safetensors file (atomic) / read them back
 * into a group of the same structure (names and shapes must match). */
MTFT_API int mtft_peft_group_save(mtft_param_group *pg, const char *path);
MTFT_API int mtft_peft_group_load(mtft_param_group *pg, const char *path);

#ifdef __cplusplus
}
#endif
#endif
