/* Internal: LoRA pieces shared by src/peft/lora.c and src/merge (which sits
 * above peft): the weight delta and scale (PEFT merge and the adapter merger)
 * and PEFT's adapter_config.json (mtft_peft_lora_save and
 * mtft_merger_save_lora). All defined in src/peft/lora.c.
 *
 * Shapes: A [R, in], B [out, R] (PEFT's lora_A / lora_B in nn.Linear
 * orientation); W is [out, in] (nn.Linear) or, with conv1d, GPT-2's Conv1D
 * layout [in, out]. */
#ifndef MTFT_PEFT_LORA_SHARED_H
#define MTFT_PEFT_LORA_SHARED_H

#include <stdint.h>

/* PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA (use_rslora),
 * in float arithmetic (the value the LoRA forward has always used; the
 * peft gradient checks are tuned to it). rank >= 1. */
float mtft_peft__lora_scale(float alpha, int64_t rank, int rslora);

/* W += scale * B A (dot products accumulated in double, each entry rounded
 * once); with conv1d the delta is added transposed (W [in, out]). Runs its
 * output rows in parallel (OpenMP) when the product is large; the result
 * does not depend on the thread count. */
void mtft_peft__lora_delta_add(float *W, const float *A, const float *B, int64_t R, int64_t in, int64_t out,
                               float scale, int conv1d);

/* What PEFT's adapter_config.json of a LoRA says. */
typedef struct mtft_peft__lora_config {
    const char *base_model; /* NULL: written as null */
    int r;
    double alpha, dropout;
    int use_rslora;
    const char *const *targets; /* target_modules, n_targets names */
    int n_targets;
    const int *layer_mask; /* layers_to_transform: every l < n_mask with layer_mask[l];
                              NULL: null (all layers) */
    int n_mask;
    int fan_in_fan_out; /* GPT-2 Conv1D weights */
    const char *what;   /* error prefix, e.g. "peft lora_save" */
} mtft_peft__lora_config;

/* Write dir/adapter_config.json (atomically, mtft_io__write_atomic) with
 * PEFT's keys in PEFT's order. */
int mtft_peft__lora_write_config(const char *dir, const mtft_peft__lora_config *c);

#endif
