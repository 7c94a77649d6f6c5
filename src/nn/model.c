/* Model construction (HF names, HF-style init), forward entry points. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_impl.h"

int mtft_model_config_validate(const mtft_model_config *c) {
    MTFT_CHECK_ARG(c);
    if (c->version < 1 || c->version > MTFT_MODEL_CONFIG_VERSION)
        return mtft__err(MTFT_EINVAL, "model config: unknown version %d", c->version);
    if (c->arch != MTFT_ARCH_GPT2 && c->arch != MTFT_ARCH_LLAMA)
        return mtft__err(MTFT_EINVAL, "model config: unknown arch %d", (int)c->arch);
#define POS(f)                                                                                      \
    if (c->f <= 0) return mtft__err(MTFT_EINVAL, "model config: " #f " is %d, must be > 0", c->f)
    POS(vocab_size);
    POS(n_ctx);
    POS(n_embd);
    POS(n_layer);
    POS(n_head);
    POS(n_kv_head);
    POS(n_ff);
#undef POS
    if (c->n_embd % c->n_head != 0)
        return mtft__err(MTFT_EINVAL, "model config: n_embd %d is not a multiple of n_head %d", c->n_embd, c->n_head);
    if (c->n_head % c->n_kv_head != 0)
        return mtft__err(MTFT_EINVAL, "model config: n_head %d is not a multiple of n_kv_head %d", c->n_head,
                         c->n_kv_head);
    if (c->arch == MTFT_ARCH_GPT2 && c->n_kv_head != c->n_head)
        return mtft__err(MTFT_EINVAL, "model config: GPT-2 needs n_kv_head (%d) == n_head (%d)", c->n_kv_head,
                         c->n_head);
    if (c->arch == MTFT_ARCH_LLAMA && ((c->n_embd / c->n_head) % 2 != 0 || !(c->rope_theta > 0.0f)))
        return mtft__err(MTFT_EINVAL, "model config: LLaMA needs an even head size (got %d) and rope_theta > 0 (got %g)",
                         c->n_embd / c->n_head, (double)c->rope_theta);
    if (!(c->norm_eps > 0.0f)) return mtft__err(MTFT_EINVAL, "model config: norm_eps %g must be > 0", (double)c->norm_eps);
    if (!(c->embd_pdrop >= 0.0f && c->embd_pdrop < 1.0f) || !(c->resid_pdrop >= 0.0f && c->resid_pdrop < 1.0f))
        return mtft__err(MTFT_EINVAL, "model config: dropout probabilities must be in [0, 1) (embd %g, resid %g)",
                         (double)c->embd_pdrop, (double)c->resid_pdrop);
    if (c->causal != 0 && c->causal != 1)
        return mtft__err(MTFT_EINVAL, "model config: causal is %d, must be 0 or 1", c->causal);
    if (c->attn_bias != 0 && c->attn_bias != 1)
        return mtft__err(MTFT_EINVAL, "model config: attn_bias is %d, must be 0 or 1", c->attn_bias);
    if (c->arch == MTFT_ARCH_GPT2 && c->attn_bias)
        return mtft__err(MTFT_EINVAL, "model config: attn_bias is for LLaMA-family models (GPT-2 always has biases)");
    if (c->tie_embeddings != 0 && c->tie_embeddings != 1)
        return mtft__err(MTFT_EINVAL, "model config: tie_embeddings is %d, must be 0 or 1", c->tie_embeddings);
    return MTFT_OK;
}

/* Declare "<prefix>N.<name>" (or "<name>" when layer < 0). */
static mtft_tensor *add(mtft_param_group *pg, const char *prefix, int layer, const char *name, int64_t d0,
                        int64_t d1) {
    char full[64];
    if (layer >= 0) snprintf(full, sizeof full, "%s%d.%s", prefix, layer, name);
    else snprintf(full, sizeof full, "%s", name);
    int64_t shp[2] = {d0, d1};
    return mtft_param_group_add(pg, full, d1 > 0 ? 2 : 1, shp);
}

static int declare(mtft_model *m) {
    const mtft_model_config *c = &m->cfg;
    mtft_param_group *pg = m->base;
    int64_t V = c->vocab_size, C = c->n_embd, F = c->n_ff, Dk = (int64_t)(c->n_embd / c->n_head) * c->n_kv_head;
    int ok = 1;
#define CHK(e) ok = ok && ((e) != NULL)
    if (c->arch == MTFT_ARCH_GPT2) {
        CHK(m->wte = add(pg, "", -1, "wte.weight", V, C));
        CHK(m->wpe = add(pg, "", -1, "wpe.weight", c->n_ctx, C));
        for (int l = 0; l < c->n_layer && ok; l++) {
            mtft_nn_layer *L = &m->layers[l];
            const char *p = "h.";
            CHK(L->attn_norm_w = add(pg, p, l, "ln_1.weight", C, 0));
            CHK(L->attn_norm_b = add(pg, p, l, "ln_1.bias", C, 0));
            CHK(L->qkv_w = add(pg, p, l, "attn.c_attn.weight", C, 3 * C));
            CHK(L->qkv_b = add(pg, p, l, "attn.c_attn.bias", 3 * C, 0));
            CHK(L->o_w = add(pg, p, l, "attn.c_proj.weight", C, C));
            CHK(L->o_b = add(pg, p, l, "attn.c_proj.bias", C, 0));
            CHK(L->mlp_norm_w = add(pg, p, l, "ln_2.weight", C, 0));
            CHK(L->mlp_norm_b = add(pg, p, l, "ln_2.bias", C, 0));
            CHK(L->fc_w = add(pg, p, l, "mlp.c_fc.weight", C, F));
            CHK(L->fc_b = add(pg, p, l, "mlp.c_fc.bias", F, 0));
            CHK(L->down_w = add(pg, p, l, "mlp.c_proj.weight", F, C));
            CHK(L->down_b = add(pg, p, l, "mlp.c_proj.bias", C, 0));
        }
        CHK(m->norm_w = add(pg, "", -1, "ln_f.weight", C, 0));
        CHK(m->norm_b = add(pg, "", -1, "ln_f.bias", C, 0));
    } else {
        CHK(m->wte = add(pg, "", -1, "model.embed_tokens.weight", V, C));
        for (int l = 0; l < c->n_layer && ok; l++) {
            mtft_nn_layer *L = &m->layers[l];
            const char *p = "model.layers.";
            CHK(L->attn_norm_w = add(pg, p, l, "input_layernorm.weight", C, 0));
            CHK(L->q_w = add(pg, p, l, "self_attn.q_proj.weight", C, C));
            if (c->attn_bias) CHK(L->q_b = add(pg, p, l, "self_attn.q_proj.bias", C, 0));
            CHK(L->k_w = add(pg, p, l, "self_attn.k_proj.weight", Dk, C));
            if (c->attn_bias) CHK(L->k_b = add(pg, p, l, "self_attn.k_proj.bias", Dk, 0));
            CHK(L->v_w = add(pg, p, l, "self_attn.v_proj.weight", Dk, C));
            if (c->attn_bias) CHK(L->v_b = add(pg, p, l, "self_attn.v_proj.bias", Dk, 0));
            CHK(L->o_w = add(pg, p, l, "self_attn.o_proj.weight", C, C));
            CHK(L->mlp_norm_w = add(pg, p, l, "post_attention_layernorm.weight", C, 0));
            CHK(L->gate_w = add(pg, p, l, "mlp.gate_proj.weight", F, C));
            CHK(L->up_w = add(pg, p, l, "mlp.up_proj.weight", F, C));
            CHK(L->down_w = add(pg, p, l, "mlp.down_proj.weight", C, F));
        }
        CHK(m->norm_w = add(pg, "", -1, "model.norm.weight", C, 0));
    }
    if (c->tie_embeddings) m->lm_head = m->wte;
    else CHK(m->lm_head = add(pg, "", -1, "lm_head.weight", V, C));
#undef CHK
    return ok ? MTFT_OK : (mtft_error_last()->code ? mtft_error_last()->code : MTFT_ENOMEM);
}

/* normal(0, std) in chunks of 64K elements, each from its own stream seeded
 * by (seed, tensor index, chunk): parallel, yet the same bits for any thread
 * count. Box-Muller, both values of each pair used. */
#define INIT_CHUNK 65536
static void fill_normal(mtft_tensor *t, uint64_t seed, int index, double std) {
    int64_t n = mtft__numel(t), nch = (n + INIT_CHUNK - 1) / INIT_CHUNK;
    float *d = t->data;
#pragma omp parallel for if (nch > 1)
    for (int64_t c = 0; c < nch; c++) {
        mtft_rng r;
        mtft_rng_seed(&r, seed ^ (0x9E3779B97F4A7C15ull * (((uint64_t)index << 32) + (uint64_t)c + 1)));
        int64_t i1 = (c + 1) * INIT_CHUNK < n ? (c + 1) * INIT_CHUNK : n;
        for (int64_t i = c * INIT_CHUNK; i < i1; i += 2) {
            double u1 = 1.0 - mtft_rng_uniform_f64(&r), u2 = mtft_rng_uniform_f64(&r); /* u1 in (0, 1] */
            double rad = std * sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
            d[i] = (float)(rad * cos(th));
            if (i + 1 < i1) d[i + 1] = (float)(rad * sin(th));
        }
    }
}
static void fill_const(mtft_tensor *t, float v) {
    if (!t) return;
    int64_t n = mtft__numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = v;
}

/* HF init: every matrix normal(0, 0.02); GPT-2's c_proj weights
 * normal(0, 0.02/sqrt(2 L)); norm weights 1, biases 0. */
static void init_weights(mtft_model *m, uint64_t seed) {
    double std = 0.02, proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    int n = mtft_param_group_count(m->base);
    for (int i = 0; i < n; i++) {
        mtft_tensor *t = mtft_param_group_tensor(m->base, i);
        const char *nm = t->name;
        size_t len = strlen(nm);
        if (t->ndim == 1) {
            int is_bias = len >= 5 && strcmp(nm + len - 5, ".bias") == 0;
            fill_const(t, is_bias ? 0.0f : 1.0f);
        } else if (m->cfg.arch == MTFT_ARCH_GPT2 && strstr(nm, "c_proj.weight")) {
            fill_normal(t, seed, i, proj_std);
        } else {
            fill_normal(t, seed, i, std);
        }
    }
}

static int model_alloc(mtft_model **out, const mtft_model_config *cfg) {
    MTFT_CHECK_ARG(out && cfg);
    *out = NULL;
    int rc = mtft_model_config_validate(cfg);
    if (rc < 0) return rc;
    mtft_model *m = mtft__calloc(1, sizeof *m);
    if (!m) return MTFT_ENOMEM;
    m->cfg = *cfg;
    m->layers = mtft__calloc((size_t)cfg->n_layer, sizeof *m->layers);
    if (!m->layers) rc = MTFT_ENOMEM;
    if (rc == MTFT_OK) rc = mtft_param_group_new(&m->base, "base");
    if (rc == MTFT_OK) rc = declare(m);
    if (rc == MTFT_OK) rc = mtft_param_group_alloc(m->base);
    if (rc < 0) {
        mtft_model_free(m);
        return rc;
    }
    *out = m;
    return MTFT_OK;
}

int mtft_model_new(mtft_model **out, const mtft_model_config *cfg, uint64_t seed) {
    int rc = model_alloc(out, cfg);
    if (rc < 0) return rc;
    init_weights(*out, seed);
    return MTFT_OK;
}

int mtft_nn__model_alloc(mtft_model **out, const mtft_model_config *cfg) { return model_alloc(out, cfg); }

void mtft_model_free(mtft_model *m) {
    if (!m) return;
    mtft_param_group_free(m->base);
    mtft__free(m->layers);
    mtft__free(m);
}

const mtft_model_config *mtft_model_get_config(const mtft_model *m) { return m ? &m->cfg : NULL; }
mtft_param_group *mtft_model_base_group(mtft_model *m) { return m ? m->base : NULL; }

static mtft_tensor *fail(mtft_graph *g, int code, const char *fmt, int a, int b) {
    char msg[160];
    snprintf(msg, sizeof msg, fmt, a, b);
    return mtft__op_fail(g, code, "%s", msg);
}

mtft_tensor *mtft_model_hidden(mtft_model *m, mtft_graph *g, const int32_t *ids, int B, int T,
                               const int32_t *valid_len) {
    if (!m || !g || !ids) {
        mtft__err(MTFT_EINVAL, "model_hidden: NULL model, graph or ids");
        if (g && g->status == MTFT_OK) g->status = MTFT_EINVAL;
        return NULL;
    }
    if (g->status < 0) return NULL;
    if (B <= 0 || T <= 0) return fail(g, MTFT_EINVAL, "model_hidden: B %d and T %d must be > 0", B, T);
    if (T > m->cfg.n_ctx) return fail(g, MTFT_ERANGE, "model_hidden: T %d exceeds n_ctx %d", T, m->cfg.n_ctx);
    if (valid_len)
        for (int b = 0; b < B; b++)
            if (valid_len[b] < 1 || valid_len[b] > T)
                return fail(g, MTFT_ERANGE, "model_hidden: valid_len[%d] = %d outside 1..T", b, valid_len[b]);
    mtft_nn_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.m = m;
    ctx.g = g;
    ctx.B = B;
    ctx.T = T;
    ctx.valid_len = valid_len;
    mtft_tensor *h = mtft_nn__forward(&ctx, ids);
    if (!h && mtft_error_last()->code != MTFT_OK) mtft__err_prefix("model forward (B=%d, T=%d)", B, T);
    return h;
}

mtft_tensor *mtft_model_logits(mtft_model *m, mtft_graph *g, mtft_tensor *hidden) {
    if (!m) {
        mtft__err(MTFT_EINVAL, "model_logits: NULL model");
        return NULL;
    }
    return mtft_linear(g, hidden, m->lm_head, NULL);
}

/* ---- KV cache ------------------------------------------------------------ */
int mtft_nn__kv_init(mtft_nn_kv *kv, const mtft_model_config *c, int capacity) {
    memset(kv, 0, sizeof *kv);
    kv->n_layer = c->n_layer;
    kv->n_kv_head = c->n_kv_head;
    kv->n_ctx = capacity < c->n_ctx ? capacity : c->n_ctx;
    kv->head_dim = c->n_embd / c->n_head;
    size_t n = (size_t)c->n_layer * (size_t)c->n_kv_head * (size_t)kv->n_ctx * (size_t)kv->head_dim;
    kv->k = mtft__malloc(n * sizeof(float));
    kv->v = mtft__malloc(n * sizeof(float));
    if (!kv->k || !kv->v) {
        mtft_nn__kv_dispose(kv);
        return mtft__err(MTFT_ENOMEM, "kv cache: cannot allocate %zu floats", 2 * n);
    }
    return MTFT_OK;
}

void mtft_nn__kv_dispose(mtft_nn_kv *kv) {
    if (!kv) return;
    mtft__free(kv->k);
    mtft__free(kv->v);
    kv->k = kv->v = NULL;
    kv->len = 0;
}

/* Run ids[0..n) at positions kv->len.. through the cache; returns the logits
 * [1,n,V] (of the last token only when last_only). */
static mtft_tensor *cached_step(mtft_model *m, mtft_graph *g, mtft_nn_kv *kv, const int32_t *ids, int n,
                                int last_only) {
    if (kv->len + n > kv->n_ctx)
        return fail(g, MTFT_ERANGE, "kv cache: %d positions exceed its capacity %d", kv->len + n, kv->n_ctx);
    mtft_tensor *h = mtft_nn__kv_forward(m, g, kv, ids, n);
    if (!h) return NULL;
    if (last_only && n > 1) h = mtft_slice(g, h, 1, n - 1, 1);
    return mtft_model_logits(m, g, h);
}

static int new_eval_graph(mtft_graph **g) {
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = (size_t)4 << 20;
    go.training = 0;
    int rc = mtft_graph_new(g, &go);
    if (rc == MTFT_OK) mtft_graph_set_grad_enabled(*g, 0);
    return rc;
}

int mtft_nn__cached_logits(mtft_model *m, const int32_t *ids, int n, int chunk, float *logits_out) {
    MTFT_CHECK_ARG(m && ids && n > 0 && logits_out);
    if (!m->cfg.causal) return mtft__err(MTFT_EUNSUPPORTED, "kv cache: needs a causal model");
    if (chunk <= 0) chunk = n;
    mtft_nn_kv kv;
    int rc = mtft_nn__kv_init(&kv, &m->cfg, n);
    if (rc < 0) return rc;
    mtft_graph *g = NULL;
    rc = new_eval_graph(&g);
    int64_t V = m->cfg.vocab_size;
    for (int i = 0; i < n && rc == MTFT_OK; i += chunk) {
        int len = n - i < chunk ? n - i : chunk;
        mtft_graph_reset(g);
        mtft_tensor *lg = cached_step(m, g, &kv, ids + i, len, 0);
        if (!lg) rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
        else memcpy(logits_out + (int64_t)i * V, lg->data, (size_t)(len * V) * sizeof(float));
    }
    mtft_graph_free(g);
    mtft_nn__kv_dispose(&kv);
    return rc;
}

/* ---- generation ------------------------------------------------------------ */
typedef struct cand {
    float logit;
    int32_t id;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1; /* descending */
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Pick the next token from logits [V]. scratch: V cands. */
static int32_t pick(const float *logits, int V, const mtft_generate_options *o, mtft_rng *rng, cand *cs) {
    if (!(o->temperature > 0.0f)) {
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    for (int i = 0; i < V; i++) {
        cs[i].logit = logits[i] / o->temperature;
        cs[i].id = i;
    }
    qsort(cs, (size_t)V, sizeof *cs, cand_cmp);
    int n = V;
    if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    double mx = cs[0].logit, sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)cs[i].logit - mx);
    if (o->top_p > 0.0f && o->top_p < 1.0f) {
        /* smallest prefix whose probability reaches top_p */
        double acc = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += exp((double)cs[i].logit - mx) / sum;
            if (acc >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += exp((double)cs[i].logit - mx);
    }
    double u = mtft_rng_uniform_f64(rng) * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += exp((double)cs[i].logit - mx);
        if (u < acc) return cs[i].id;
    }
    return cs[n - 1].id;
}

int mtft_model_generate(mtft_model *m, const int32_t *prompt, int n_prompt, int max_new,
                        const mtft_generate_options *o, int32_t *out, int *n_out) {
    MTFT_CHECK_ARG(m && prompt && out && n_out);
    *n_out = 0;
    mtft_generate_options def = MTFT_GENERATE_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version < 1 || o->version > MTFT_GENERATE_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "generate options: unknown version %d", o->version);
    if (n_prompt < 1 || max_new < 0)
        return mtft__err(MTFT_EINVAL, "generate: n_prompt %d must be >= 1 and max_new %d >= 0", n_prompt, max_new);
    if (n_prompt + max_new > m->cfg.n_ctx)
        return mtft__err(MTFT_ERANGE, "generate: n_prompt %d + max_new %d exceeds n_ctx %d", n_prompt, max_new,
                         m->cfg.n_ctx);
    if (!m->cfg.causal) return mtft__err(MTFT_EUNSUPPORTED, "generate: the model is bidirectional (causal = 0)");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size)
            return mtft__err(MTFT_ERANGE, "generate: prompt[%d] = %d outside [0, %d)", i, (int)prompt[i],
                             m->cfg.vocab_size);
    if (max_new == 0) return MTFT_OK;
    int V = m->cfg.vocab_size;
    mtft_nn_kv kv;
    int rc = mtft_nn__kv_init(&kv, &m->cfg, n_prompt + max_new);
    if (rc < 0) return rc;
    cand *cs = mtft__malloc((size_t)V * sizeof *cs);
    mtft_graph *g = NULL;
    if (!cs) rc = MTFT_ENOMEM;
    if (rc == MTFT_OK) rc = new_eval_graph(&g);
    mtft_rng rng;
    mtft_rng_seed(&rng, o->seed);
    const int32_t *next = prompt;
    int n_next = n_prompt;
    while (rc == MTFT_OK && *n_out < max_new) {
        mtft_graph_reset(g);
        mtft_tensor *lg = cached_step(m, g, &kv, next, n_next, 1);
        if (!lg) {
            rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
            break;
        }
        int32_t tok = pick(lg->data, V, o, &rng, cs);
        out[(*n_out)++] = tok;
        if (o->eos_id >= 0 && tok == o->eos_id) break;
        next = &out[*n_out - 1];
        n_next = 1;
    }
    mtft_graph_free(g);
    mtft__free(cs);
    mtft_nn__kv_dispose(&kv);
    return rc;
}
