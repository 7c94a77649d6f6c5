/* The public KV cache (mtft_kv_cache_*, mtft_model_hidden_cached): one
 * sequence's keys and values for incremental decoding through the same
 * forward, projection hooks (PEFT) and final norm as mtft_model_hidden. */
#include <string.h>

#include "nn_impl.h"

struct mtft_kv_cache {
    mtft_nn_kv kv;
    mtft_model_config cfg; /* the model's shape, to refuse another model */
};

int mtft_kv_cache_new(mtft_kv_cache **out, const mtft_model *m, int capacity) {
    MTFT_CHECK_ARG(out && m);
    *out = NULL;
    if (!m->cfg.causal) return mtft__err(MTFT_EUNSUPPORTED, "kv cache: the model is bidirectional (causal = 0)");
    if (capacity < 1 || capacity > m->cfg.n_ctx)
        return mtft__err(MTFT_ERANGE, "kv cache: capacity %d outside [1, n_ctx %d]", capacity, m->cfg.n_ctx);
    mtft_kv_cache *c = mtft__calloc(1, sizeof *c);
    if (!c) return mtft__err(MTFT_ENOMEM, "kv cache: out of memory");
    int rc = mtft_nn__kv_init(&c->kv, &m->cfg, capacity);
    if (rc < 0) {
        mtft__free(c);
        return rc;
    }
    c->cfg = m->cfg;
    *out = c;
    return MTFT_OK;
}

void mtft_kv_cache_free(mtft_kv_cache *c) {
    if (!c) return;
    mtft_nn__kv_dispose(&c->kv);
    mtft__free(c);
}

void mtft_kv_cache_reset(mtft_kv_cache *c) {
    if (c) c->kv.len = 0;
}

int mtft_kv_cache_len(const mtft_kv_cache *c) { return c ? c->kv.len : 0; }

mtft_tensor *mtft_model_hidden_cached(mtft_model *m, mtft_graph *g, mtft_kv_cache *c, const int32_t *ids, int n) {
    if (!g) {
        mtft__err(MTFT_EINVAL, "model_hidden_cached: NULL graph");
        return NULL;
    }
    if (mtft_graph_status(g) < 0) return NULL;
    if (!m || !c || !ids) return mtft__op_fail(g, MTFT_EINVAL, "model_hidden_cached: NULL model, cache or ids");
    if (g->grad_enabled)
        return mtft__op_fail(g, MTFT_ESTATE, "model_hidden_cached: the graph records gradients; the cached path has "
                                             "none (mtft_graph_set_grad_enabled(g, 0))");
    if (c->cfg.n_layer != m->cfg.n_layer || c->cfg.n_kv_head != m->cfg.n_kv_head || c->cfg.n_embd != m->cfg.n_embd ||
        c->cfg.n_head != m->cfg.n_head)
        return mtft__op_fail(g, MTFT_ESHAPE, "model_hidden_cached: the cache was made for another model shape "
                                             "(%d layers x %d wide)", c->cfg.n_layer, c->cfg.n_embd);
    if (n < 1 || c->kv.len + n > c->kv.n_ctx)
        return mtft__op_fail(g, MTFT_ERANGE, "model_hidden_cached: %d new positions after %d exceed the capacity %d",
                             n, c->kv.len, c->kv.n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return mtft__op_fail(g, MTFT_ERANGE, "model_hidden_cached: ids[%d] = %d outside [0, %d)", i, (int)ids[i],
                                 m->cfg.vocab_size);
    return mtft_nn__kv_forward(m, g, &c->kv, ids, n);
}

mtft_tensor *mtft_nn__kv_forward(mtft_model *m, mtft_graph *g, mtft_nn_kv *kv, const int32_t *ids, int n) {
    mtft_nn_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.m = m;
    ctx.g = g;
    ctx.B = 1;
    ctx.T = n;
    ctx.kv = kv;
    ctx.pos0 = kv->len;
    mtft_tensor *h = mtft_nn__forward(&ctx, ids);
    if (h) kv->len += n; /* a failed forward leaves len; entries past it are ignored */
    return h;
}
