/* Internal definition of the model, its blocks and the KV cache. Not
 * installed. Letters: B batch, T time, C n_embd, H heads, Hkv key/value
 * heads, D head size, F n_ff, V vocab, L layers. */
#ifndef MTFT_NN_IMPL_H
#define MTFT_NN_IMPL_H

#include "../tensor/tensor_impl.h"
#include "mtft/model.h"

/* One layer's weights. GPT-2 uses qkv_w/qkv_b (fused c_attn, Conv1D [C,3C]),
 * o_*, fc_* (c_fc), down_* (mlp.c_proj), both norms with biases. LLaMA uses
 * q_w/k_w/v_w/o_w, gate_w/up_w/down_w ([out,in]) and norm weights only. */
typedef struct mtft_nn_layer {
    mtft_tensor *attn_norm_w, *attn_norm_b;
    mtft_tensor *qkv_w, *qkv_b;
    mtft_tensor *q_w, *k_w, *v_w;
    mtft_tensor *q_b, *k_b, *v_b; /* LLaMA family with attn_bias (Qwen2), else NULL */
    mtft_tensor *o_w, *o_b;
    mtft_tensor *mlp_norm_w, *mlp_norm_b;
    mtft_tensor *fc_w, *fc_b;
    mtft_tensor *gate_w, *up_w;
    mtft_tensor *down_w, *down_b;
} mtft_nn_layer;

typedef struct mtft_nn_ctx mtft_nn_ctx;

/* Called by mtft_nn__proj after the base projection y = proj(x): returns the
 * tensor to use instead (e.g. y + LoRA(x) for the rows of each task), or NULL
 * on error. `name` is the HF module name inside the layer ("attn.c_attn",
 * "self_attn.q_proj", "mlp.down_proj", ...); ctx->layer says which layer. */
typedef mtft_tensor *(*mtft_nn_proj_hook)(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, mtft_tensor *y,
                                          void *payload);

/* Called by mtft_nn__proj before the base projection (added for PEFT: (IA)3
 * scales the input of the MLP down projection): returns the input to use
 * instead, or NULL on error. Shares proj_payload with proj_hook. */
typedef mtft_tensor *(*mtft_nn_proj_in_hook)(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, void *payload);

struct mtft_model {
    mtft_model_config cfg;
    mtft_param_group *base;
    mtft_tensor *wte;      /* [V,C] token embeddings (GPT-2 wte / LLaMA embed_tokens) */
    mtft_tensor *wpe;      /* [n_ctx,C] GPT-2 positions; NULL for LLaMA */
    mtft_tensor *norm_w, *norm_b; /* final norm (ln_f / model.norm) */
    mtft_tensor *lm_head;  /* [V,C]: wte when tied */
    mtft_nn_layer *layers; /* n_layer */
    mtft_nn_proj_hook proj_hook;
    mtft_nn_proj_in_hook proj_in_hook;
    void *proj_payload;
};

/* KV cache for one sequence: k and v [L][Hkv][n_ctx][D] where n_ctx is the
 * capacity in positions (<= the model's n_ctx); len positions filled. */
typedef struct mtft_nn_kv {
    int n_layer, n_kv_head, n_ctx, head_dim;
    float *k, *v;
    int len;
} mtft_nn_kv;

/* What a block needs besides its weights. */
struct mtft_nn_ctx {
    mtft_model *m;
    mtft_graph *g;
    int layer;
    int B, T;
    const int32_t *valid_len; /* NULL or B ints */
    mtft_nn_kv *kv;           /* NULL: training/full forward through mtft_attention */
    int pos0;                 /* absolute position of token 0 (KV-cache path) */
};

/* Every projection of a block goes through here: Conv1D layout (x W + b) for
 * GPT-2, nn.Linear layout (x W^T + b) for LLaMA, then the model's hook. */
mtft_tensor *mtft_nn__proj(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b);
/* One transformer block: x [B,T,C] -> [B,T,C]. */
mtft_tensor *mtft_nn__block(mtft_nn_ctx *ctx, mtft_tensor *x);
/* Embeddings, all blocks and the final norm: ids [B,T] -> [B,T,C]. */
mtft_tensor *mtft_nn__forward(mtft_nn_ctx *ctx, const int32_t *ids);

/* Causal (or bidirectional) attention straight from a fused projection
 * qkv [B,T,3C] (contiguous; q | k | v, n_head heads of D = C/n_head each) to
 * y [B,T,C], with sgemm reading and writing in place: no head views, no
 * copies. valid_len: NULL or B ints in 0..T (right padding, as
 * mtft_attention). Scale 1/sqrt(D). See attn_qkv.c. */
mtft_tensor *mtft_nn__attention_qkv(mtft_graph *g, mtft_tensor *qkv, int n_head, int causal,
                                    const int32_t *valid_len);

/* RoPE (HF LLaMA rotate_half convention) on x [B,H,T,D] (any strides, D
 * even): position of t is pos0 + t, frequencies theta^(-2i/D). Output is a
 * new contiguous [B,H,T,D]; backward applies the inverse rotation. */
mtft_tensor *mtft_nn__rope(mtft_graph *g, mtft_tensor *x, int pos0, float theta);

/* A model with its parameters declared and zeroed, not initialised (for loaders). */
int mtft_nn__model_alloc(mtft_model **out, const mtft_model_config *cfg);

int mtft_nn__kv_init(mtft_nn_kv *kv, const mtft_model_config *cfg, int capacity);
/* ids[0..n) (one sequence) at positions kv->len.. through the cache: final-
 * normed hidden [1,n,C]; kv->len advances on success (src/nn/kv_cache.c). */
mtft_tensor *mtft_nn__kv_forward(mtft_model *m, mtft_graph *g, mtft_nn_kv *kv, const int32_t *ids, int n);
void mtft_nn__kv_dispose(mtft_nn_kv *kv);
/* Run ids[0..n) through the KV-cache path in chunks of `chunk` tokens (<= 0:
 * one chunk) starting from an empty cache; logits_out gets n rows of V. */
int mtft_nn__cached_logits(mtft_model *m, const int32_t *ids, int n, int chunk, float *logits_out);

#endif
