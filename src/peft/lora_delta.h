/* Internal: the LoRA weight delta, shared by PEFT merge (src/peft/lora.c) and
 * the adapter merger (src/merge/merger.c, which sits above peft).
 *
 * Shapes: A [R, in], B [out, R] (PEFT's lora_A / lora_B in nn.Linear
 * orientation); W is [out, in] (nn.Linear) or, with conv1d, GPT-2's Conv1D
 * layout [in, out]. */
#ifndef MTFT_PEFT_LORA_DELTA_H
#define MTFT_PEFT_LORA_DELTA_H

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

#endif
