/* Transformer blocks on the autograd ops.
 *
 * GPT-2 (pre-LN):  x += drop(c_proj(attn(split(c_attn(ln_1(x))))))
 *                  x += drop(mlp.c_proj(gelu_tanh(c_fc(ln_2(x)))))
 * LLaMA:           x += o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))), n = rmsnorm(x)
 *                  x += down_proj(silu(gate_proj(n)) * up_proj(n)),             n = rmsnorm(x)
 *                  (q/k/v projections have biases with attn_bias, as in Qwen2)
 *
 * GPT-2 runs one fused QKV GEMM; in training and full forwards its output
 * goes straight to mtft_nn__attention_qkv (attn_qkv.c), which reads q, k, v
 * and writes [B,T,C] in place with sgemm. Otherwise (LLaMA, the KV-cache
 * path) heads are split out of a projection [B,T,n*D] with views (reshape to
 * [B,T,n,D], transpose to [B,n,T,D], slice) that mtft_attention reads in
 * place; RoPE (LLaMA q, k) writes a contiguous copy, and the attention
 * output is copied once back to [B,T,C]. */
#include <math.h>
#include <string.h>

#include "../tensor/ops/ops_grad.h"
#include "nn_impl.h"

mtft_tensor *mtft_nn__proj(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, mtft_tensor *w, mtft_tensor *b) {
    if (x && ctx->m->proj_in_hook) x = ctx->m->proj_in_hook(ctx, name, x, ctx->m->proj_payload);
    mtft_tensor *y = ctx->m->cfg.arch == MTFT_ARCH_GPT2 ? mtft_linear_t(ctx->g, x, w, b) : mtft_linear(ctx->g, x, w, b);
    if (y && ctx->m->proj_hook) y = ctx->m->proj_hook(ctx, name, x, y, ctx->m->proj_payload);
    return y;
}

/* x [B,T,n*D] -> view [B,cnt,T,D] of heads [off, off+cnt). x is a
 * projection's output, contiguous unless a hook returned a view. */
static mtft_tensor *heads_view(mtft_graph *g, mtft_tensor *x, int64_t n, int64_t D, int64_t off, int64_t cnt) {
    x = mtft_contiguous(g, x);
    if (!x) return NULL;
    int64_t shp[4] = {x->ne[0], x->ne[1], n, D};
    mtft_tensor *v = mtft_reshape(g, x, 4, shp);
    v = mtft_transpose(g, v, 1, 2);
    if (off == 0 && cnt == n) return v;
    return mtft_slice(g, v, 1, off, cnt);
}

/* a [B,H,T,D] -> [B,T,H*D] */
static mtft_tensor *merge_heads(mtft_graph *g, mtft_tensor *a) {
    if (!a) return NULL;
    int64_t shp[3] = {a->ne[0], a->ne[2], a->ne[1] * a->ne[3]};
    mtft_tensor *t = mtft_contiguous(g, mtft_transpose(g, a, 1, 2));
    return mtft_reshape(g, t, 3, shp);
}

/* Attention of T new queries (positions pos0..pos0+T-1) against the cache
 * after appending this chunk's keys and values. No gradient: the cached path
 * serves generation only. q [1,H,T,D], k/v [1,Hkv,T,D]. */
static mtft_tensor *cached_attention(mtft_nn_ctx *ctx, mtft_tensor *q, mtft_tensor *k, mtft_tensor *v) {
    mtft_graph *g = ctx->g;
    mtft_nn_kv *kv = ctx->kv;
    q = mtft_contiguous(g, q);
    k = mtft_contiguous(g, k);
    v = mtft_contiguous(g, v);
    if (!q || !k || !v) return NULL;
    int64_t H = q->ne[1], T = q->ne[2], D = q->ne[3], Hkv = k->ne[1];
    int64_t pos0 = ctx->pos0, n_ctx = kv->n_ctx;
    if (pos0 + T > n_ctx)
        return mtft__op_fail(g, MTFT_ERANGE, "kv cache: positions %lld..%lld beyond n_ctx %lld", (long long)pos0,
                             (long long)(pos0 + T - 1), (long long)n_ctx);
    size_t lstride = (size_t)(Hkv * n_ctx * D);
    float *kc = kv->k + (size_t)ctx->layer * lstride, *vc = kv->v + (size_t)ctx->layer * lstride;
    for (int64_t h = 0; h < Hkv; h++) {
        memcpy(kc + (h * n_ctx + pos0) * D, k->data + h * T * D, (size_t)(T * D) * sizeof(float));
        memcpy(vc + (h * n_ctx + pos0) * D, v->data + h * T * D, (size_t)(T * D) * sizeof(float));
    }
    mtft_tensor *y = mtft__new(g, 4, q->ne);
    int64_t S = pos0 + T;
    float *p = mtft__scratch(g, (size_t)(H * S) * sizeof(float));
    if (!y || !p) return NULL;
    float scale = 1.0f / sqrtf((float)D);
    int64_t grp = H / Hkv;
#pragma omp parallel for if (H * T * S * D > 65536)
    for (int64_t h = 0; h < H; h++) {
        const float *kh = kc + (h / grp) * n_ctx * D, *vh = vc + (h / grp) * n_ctx * D;
        float *ph = p + h * S;
        for (int64_t t = 0; t < T; t++) {
            const float *qr = q->data + (h * T + t) * D;
            float *yr = y->data + (h * T + t) * D;
            int64_t ns = pos0 + t + 1; /* causal: keys 0..pos0+t */
            float mx = -INFINITY;
            for (int64_t s = 0; s < ns; s++) {
                float acc = 0.0f;
                for (int64_t d = 0; d < D; d++) acc += qr[d] * kh[s * D + d];
                ph[s] = acc * scale;
                if (ph[s] > mx) mx = ph[s];
            }
            double sum = 0.0;
            for (int64_t s = 0; s < ns; s++) {
                ph[s] = expf(ph[s] - mx);
                sum += ph[s];
            }
            float inv = (float)(1.0 / sum);
            for (int64_t d = 0; d < D; d++) yr[d] = 0.0f;
            for (int64_t s = 0; s < ns; s++) {
                float w = ph[s] * inv;
                for (int64_t d = 0; d < D; d++) yr[d] += w * vh[s * D + d];
            }
        }
    }
    return y;
}

static mtft_tensor *attend(mtft_nn_ctx *ctx, mtft_tensor *q, mtft_tensor *k, mtft_tensor *v) {
    if (ctx->kv) return cached_attention(ctx, q, k, v);
    return mtft_attention(ctx->g, q, k, v, ctx->m->cfg.causal, ctx->valid_len, 0.0f);
}

static mtft_tensor *resid_dropout(mtft_nn_ctx *ctx, mtft_tensor *x) {
    float p = ctx->m->cfg.resid_pdrop;
    return (p > 0.0f && ctx->g->training && !ctx->kv) ? mtft_dropout(ctx->g, x, p) : x;
}

static mtft_tensor *gpt2_block(mtft_nn_ctx *ctx, mtft_tensor *x) {
    mtft_graph *g = ctx->g;
    const mtft_model_config *c = &ctx->m->cfg;
    const mtft_nn_layer *L = &ctx->m->layers[ctx->layer];
    int64_t H = c->n_head, D = c->n_embd / c->n_head;

    mtft_tensor *h = mtft_layernorm(g, x, L->attn_norm_w, L->attn_norm_b, c->norm_eps);
    mtft_tensor *qkv = mtft_nn__proj(ctx, "attn.c_attn", h, L->qkv_w, L->qkv_b); /* [B,T,3C] */
    mtft_tensor *a;
    if (!ctx->kv) {
        /* [B,T,3C] -> [B,T,C] in place, no head views or copies */
        a = mtft_nn__attention_qkv(g, qkv, (int)H, c->causal, ctx->valid_len);
    } else {
        /* strided views: the cached path reads them in place */
        mtft_tensor *q = heads_view(g, qkv, 3 * H, D, 0, H);
        mtft_tensor *k = heads_view(g, qkv, 3 * H, D, H, H);
        mtft_tensor *v = heads_view(g, qkv, 3 * H, D, 2 * H, H);
        a = merge_heads(g, attend(ctx, q, k, v));
    }
    a = resid_dropout(ctx, mtft_nn__proj(ctx, "attn.c_proj", a, L->o_w, L->o_b));
    x = mtft_add(g, x, a);

    h = mtft_layernorm(g, x, L->mlp_norm_w, L->mlp_norm_b, c->norm_eps);
    if (!ctx->m->proj_hook && !ctx->m->proj_in_hook) /* bias added in the GELU pass */
        h = mtft__bias_gelu_tanh(g, mtft_linear_t(g, h, L->fc_w, NULL), L->fc_b);
    else /* a hook sees the projection with its bias, as in HF */
        h = mtft_gelu_tanh(g, mtft_nn__proj(ctx, "mlp.c_fc", h, L->fc_w, L->fc_b));
    h = resid_dropout(ctx, mtft_nn__proj(ctx, "mlp.c_proj", h, L->down_w, L->down_b));
    return mtft_add(g, x, h);
}

static mtft_tensor *llama_block(mtft_nn_ctx *ctx, mtft_tensor *x) {
    mtft_graph *g = ctx->g;
    const mtft_model_config *c = &ctx->m->cfg;
    const mtft_nn_layer *L = &ctx->m->layers[ctx->layer];
    int64_t H = c->n_head, Hkv = c->n_kv_head, D = c->n_embd / c->n_head;

    mtft_tensor *h = mtft_rmsnorm(g, x, L->attn_norm_w, c->norm_eps);
    mtft_tensor *q = mtft_nn__proj(ctx, "self_attn.q_proj", h, L->q_w, L->q_b); /* [B,T,H*D] */
    mtft_tensor *k = mtft_nn__proj(ctx, "self_attn.k_proj", h, L->k_w, L->k_b); /* [B,T,Hkv*D] */
    mtft_tensor *v = mtft_nn__proj(ctx, "self_attn.v_proj", h, L->v_w, L->v_b);
    q = mtft_nn__rope(g, heads_view(g, q, H, D, 0, H), ctx->pos0, c->rope_theta);
    k = mtft_nn__rope(g, heads_view(g, k, Hkv, D, 0, Hkv), ctx->pos0, c->rope_theta);
    v = heads_view(g, v, Hkv, D, 0, Hkv);
    mtft_tensor *a = merge_heads(g, attend(ctx, q, k, v));
    a = resid_dropout(ctx, mtft_nn__proj(ctx, "self_attn.o_proj", a, L->o_w, NULL));
    x = mtft_add(g, x, a);

    h = mtft_rmsnorm(g, x, L->mlp_norm_w, c->norm_eps);
    mtft_tensor *gate = mtft_nn__proj(ctx, "mlp.gate_proj", h, L->gate_w, NULL);
    mtft_tensor *up = mtft_nn__proj(ctx, "mlp.up_proj", h, L->up_w, NULL);
    h = resid_dropout(ctx, mtft_nn__proj(ctx, "mlp.down_proj", mtft_swiglu(g, gate, up), L->down_w, NULL));
    return mtft_add(g, x, h);
}

mtft_tensor *mtft_nn__block(mtft_nn_ctx *ctx, mtft_tensor *x) {
    return ctx->m->cfg.arch == MTFT_ARCH_GPT2 ? gpt2_block(ctx, x) : llama_block(ctx, x);
}

mtft_tensor *mtft_nn__forward(mtft_nn_ctx *ctx, const int32_t *ids) {
    mtft_graph *g = ctx->g;
    mtft_model *m = ctx->m;
    const mtft_model_config *c = &m->cfg;
    int64_t bt[2] = {ctx->B, ctx->T};
    const int n0 = g->n_nodes;
    mtft_tensor *x = mtft_embedding(g, m->wte, ids, 2, bt); /* [B,T,C] */
    if (c->arch == MTFT_ARCH_GPT2) {
        int32_t *pos = mtft__scratch(g, (size_t)ctx->T * sizeof(int32_t));
        if (!pos) return NULL;
        for (int t = 0; t < ctx->T; t++) pos[t] = ctx->pos0 + t;
        int64_t tt[1] = {ctx->T};
        x = mtft_add(g, x, mtft_embedding(g, m->wpe, pos, 1, tt)); /* + [T,C] over B */
    }
    if (c->embd_pdrop > 0.0f && g->training && !ctx->kv) x = mtft_dropout(g, x, c->embd_pdrop);
    for (int l = 0; l < c->n_layer && x; l++) {
        ctx->layer = l;
        x = mtft_nn__block(ctx, x);
    }
    if (c->arch == MTFT_ARCH_GPT2) x = mtft_layernorm(g, x, m->norm_w, m->norm_b, c->norm_eps);
    else x = mtft_rmsnorm(g, x, m->norm_w, c->norm_eps);
    /* Every activation recorded since n0 is internal to the model (only x
     * is handed out): backward may recycle their gradient buffers once
     * their producers ran, so the step holds about two layers' activation
     * gradients instead of all of them (about 1 GB less for GPT-2 124M at
     * B 4, T 256). */
    for (int i = n0; x && i < g->n_nodes; i++)
        if (g->nodes[i].out != x) g->nodes[i].out->flags |= MTFT_TF_TRANSIENT;
    return x;
}
