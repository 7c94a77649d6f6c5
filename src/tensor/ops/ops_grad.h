/* Gradient buffers for backward kernels that write instead of accumulate.
 * Internal (src/tensor, src/nn, src/peft); defined in src/tensor/tensor.c.
 *
 * Every backward accumulates (+=) into its inputs' gradients, which
 * mtft__grad hands out zeroed. Most inputs inside a model have exactly one
 * consumer, so their gradient is written once: a kernel that asks with
 * mtft__grad_w learns whether the buffer is fresh (no earlier contribution)
 * and then stores its result instead of adding it to zeros, which saves the
 * memset and a read of the buffer (the same values: 0 + x == x). */
#ifndef MTFT_OPS_GRAD_H
#define MTFT_OPS_GRAD_H

#include "../tensor_impl.h"

/* As mtft__grad, but a gradient made by this call is NOT zeroed and *fresh
 * is set to 1: the caller must then store all numel(t) elements. When t
 * already has a gradient (*fresh = 0) the caller accumulates as usual.
 * NULL (with *fresh = 0) when t needs no gradient. */
float *mtft__grad_w(mtft_graph *g, mtft_tensor *t, int *fresh);

/* Backward of node n may hand its output's gradient buffer over to the
 * input t instead of copying it (an add, a residual): when n's output is a
 * transient tensor n produced (no caller can read its gradient, and every
 * consumer's backward has run), t needs a gradient and has none yet, is no
 * parameter, and has as many elements, t->grad becomes n->out->grad and the
 * output loses it (returns 1). Else nothing changes (returns 0). */
int mtft__grad_adopt(mtft_graph *g, mtft_node *n, mtft_tensor *t);

/* Give t the gradient buffer buf (numel(t) floats of this step's arena,
 * holding t's complete gradient, which nothing else uses) when t needs a
 * gradient, has none yet and is no parameter (returns 1); else 0. */
int mtft__grad_set(mtft_graph *g, mtft_tensor *t, float *buf);

/* Fused ops of the GPT-2 training step (defined in the op files named).
 *
 * y = gelu_tanh(x + b) (activation.c): x [..., F] contiguous (a linear's
 * output without its bias), b [F]. One pass forward (no bias broadcast
 * before the GEMM); backward computes d(x + b) once and gives it to x and,
 * summed over rows in a fixed chunk order, to b. */
mtft_tensor *mtft__bias_gelu_tanh(mtft_graph *g, mtft_tensor *x, mtft_tensor *b);

#endif
