/* mtft: transformer models. GPT-2 style (pre-LN, learned positions, GELU
 * tanh, Conv1D weights, tied head) and LLaMA style (RMSNorm, RoPE, SwiGLU,
 * grouped-query attention, no biases) decoders, or bidirectional encoders
 * of either shape (causal = 0).
 *
 * Parameters live in one parameter group (mtft_model_base_group) under
 * Hugging Face names, so that HF checkpoints (config.json +
 * model.safetensors) load without conversion:
 *   GPT-2: wte.weight [V,C], wpe.weight [n_ctx,C], h.N.ln_1.{weight,bias},
 *          h.N.attn.c_attn.{weight [C,3C],bias}, h.N.attn.c_proj.{weight,bias},
 *          h.N.ln_2.*, h.N.mlp.c_fc.{weight [C,F],bias}, h.N.mlp.c_proj.*,
 *          ln_f.{weight,bias}
 *   LLaMA: model.embed_tokens.weight, model.layers.N.input_layernorm.weight,
 *          model.layers.N.self_attn.{q,k,v,o}_proj.weight ([out,in]),
 *          model.layers.N.self_attn.{q,k,v}_proj.bias (attn_bias only),
 *          model.layers.N.post_attention_layernorm.weight,
 *          model.layers.N.mlp.{gate,up,down}_proj.weight, model.norm.weight,
 *          lm_head.weight (absent when tied)
 * Letters: B batch, T time, C n_embd, V vocab, F n_ff, H heads, D = C/H. */
#ifndef MTFT_MODEL_H
#define MTFT_MODEL_H

#include "mtft/common.h"
#include "mtft/io.h"
#include "mtft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mtft_arch {
    MTFT_ARCH_GPT2 = 0,
    MTFT_ARCH_LLAMA = 1
} mtft_arch;

/* Caller-allocated; start from MTFT_MODEL_CONFIG_INIT (GPT-2 small). */
typedef struct mtft_model_config {
    int version;
    mtft_arch arch;
    int vocab_size;     /* V */
    int n_ctx;          /* longest sequence (GPT-2: rows of wpe) */
    int n_embd;         /* C */
    int n_layer;
    int n_head;         /* H; n_embd % n_head == 0 */
    int n_kv_head;      /* key/value heads (GQA), n_head % n_kv_head == 0; GPT-2: = n_head */
    int n_ff;           /* MLP intermediate size F */
    float norm_eps;     /* LayerNorm / RMSNorm epsilon */
    float rope_theta;   /* LLaMA RoPE base */
    int tie_embeddings; /* 1: the LM head is the token embedding matrix */
    int causal;         /* 1: decoder (causal attention); 0: bidirectional encoder */
    float embd_pdrop;   /* dropout after the embeddings (training graphs only) */
    float resid_pdrop;  /* dropout on each residual branch (training graphs only) */
    int attn_bias;      /* LLaMA family: q/k/v projections have biases (Qwen2); GPT-2: must be 0 */
} mtft_model_config;

#define MTFT_MODEL_CONFIG_VERSION 1
#define MTFT_MODEL_CONFIG_INIT                                                                      \
    {MTFT_MODEL_CONFIG_VERSION, MTFT_ARCH_GPT2, 50257, 1024, 768, 12, 12, 12, 3072, 1e-5f, 10000.0f, 1, \
     1, 0.0f, 0.0f, 0}

typedef struct mtft_model mtft_model;

/* Fill cfg from a Hugging Face config (mtft_hf_config_load). GPT-2 and
 * LLaMA-family configs map directly; features mtft does not implement
 * (MLP biases in LLaMA-family models, RoPE scaling, a head_dim
 * other than hidden/heads, activations other than gelu_new / silu) are
 * MTFT_EUNSUPPORTED naming the key. A sliding window limits n_ctx to the
 * window (where the model is exact). causal = 1 unless the file sets
 * "mtft_causal": false, which mtft_model_save_hf writes for a bidirectional
 * model. Attention-probability dropout (attn_pdrop) is not applied. */
MTFT_API int mtft_model_config_from_hf(mtft_model_config *cfg, const mtft_hf_config *hf);

/* Check a config; MTFT_EINVAL with a message naming the field otherwise. */
MTFT_API int mtft_model_config_validate(const mtft_model_config *cfg);

/* A new model with freshly initialised weights (HF-style: normal(0, 0.02),
 * GPT-2 residual projections (attn.c_proj, mlp.c_proj) scaled by
 * 1/sqrt(2*n_layer); LLaMA: every matrix normal(0, 0.02) as in HF; norms
 * ones, biases zeros), drawn from mtft_rng seeded with `seed`. The base group
 * is trainable. */
MTFT_API int mtft_model_new(mtft_model **out, const mtft_model_config *cfg, uint64_t seed);
MTFT_API void mtft_model_free(mtft_model *m);
/* The config the model was built with (borrowed). */
MTFT_API const mtft_model_config *mtft_model_get_config(const mtft_model *m);
/* The group holding every base weight (borrowed; freed with the model). */
MTFT_API mtft_param_group *mtft_model_base_group(mtft_model *m);

/* Load dir/config.json and dir/model.safetensors (names with or without a
 * "transformer." prefix for GPT-2). Errors name the file, the tensor and the
 * shapes. */
MTFT_API int mtft_model_load_hf(mtft_model **out, const char *dir);
/* Write dir/config.json and dir/model.safetensors (dir must exist). */
MTFT_API int mtft_model_save_hf(mtft_model *m, const char *dir);

/* Forward: ids [B,T] (int32 in [0,V)), valid_len NULL or B ints (right
 * padding: keys at t >= valid_len[b] are masked out) -> final-normed hidden
 * states [B,T,C] in g. T <= n_ctx. Returns NULL on error (last error set). */
MTFT_API mtft_tensor *mtft_model_hidden(mtft_model *m, mtft_graph *g, const int32_t *ids, int B, int T,
                                        const int32_t *valid_len);
/* hidden [..., C] -> logits [..., V] through the LM head (tied: wte). */
MTFT_API mtft_tensor *mtft_model_logits(mtft_model *m, mtft_graph *g, mtft_tensor *hidden);

/* Generation. */
typedef struct mtft_generate_options {
    int version;
    float temperature; /* <= 0: greedy (argmax) */
    int top_k;         /* > 0: sample among the k most likely tokens only */
    float top_p;       /* in (0,1): nucleus sampling; >= 1: off */
    uint64_t seed;     /* sampling stream */
    int32_t eos_id;    /* stop after emitting this token; < 0: none */
} mtft_generate_options;
#define MTFT_GENERATE_OPTIONS_VERSION 1
#define MTFT_GENERATE_OPTIONS_INIT {MTFT_GENERATE_OPTIONS_VERSION, 0.0f, 0, 1.0f, 0, -1}

/* Continue `prompt` (n_prompt >= 1 ids) by up to max_new tokens with a KV
 * cache (prompt once, then one token per step; no gradient). out receives
 * the new tokens only (room for max_new); *n_out how many (fewer when eos
 * was emitted, which is included). n_prompt + max_new <= n_ctx. o NULL
 * means greedy. */
MTFT_API int mtft_model_generate(mtft_model *m, const int32_t *prompt, int n_prompt, int max_new,
                                 const mtft_generate_options *o, int32_t *out, int *n_out);

/* Incremental decoding with adapters and heads. A KV cache holds the keys
 * and values of one sequence (B = 1) for up to `capacity` positions (at
 * most n_ctx). mtft_model_hidden_cached runs ids[0..n) at positions
 * len .. len+n-1 against the cache, appends their keys and values, and
 * returns their final-normed hidden states [1,n,C] in g, exactly as rows
 * len .. len+n-1 of mtft_model_hidden over the whole sequence (to float
 * rounding). It goes through the same projection hooks as the full forward,
 * so a task's LoRA / adapters set with mtft_peft_set_task(p, g, task, 1)
 * apply, and the result can feed a task head. No gradient: g must have
 * gradients disabled (MTFT_ESTATE otherwise). Causal models only. On error
 * the cache is left as it was. Reset the cache for a new sequence. */
typedef struct mtft_kv_cache mtft_kv_cache;
MTFT_API int mtft_kv_cache_new(mtft_kv_cache **out, const mtft_model *m, int capacity);
MTFT_API void mtft_kv_cache_free(mtft_kv_cache *c);
MTFT_API void mtft_kv_cache_reset(mtft_kv_cache *c);
/* Positions filled. */
MTFT_API int mtft_kv_cache_len(const mtft_kv_cache *c);
MTFT_API mtft_tensor *mtft_model_hidden_cached(mtft_model *m, mtft_graph *g, mtft_kv_cache *c, const int32_t *ids,
                                               int n);

#ifdef __cplusplus
}
#endif
#endif
