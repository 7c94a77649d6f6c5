/* ctest-labels: parity */
/* ctest-timeout: 900 */
/* Models: config checks, HF names and init, RoPE (forward against a direct
 * formula, gradcheck), parity with PyTorch (tools/gen_model_fixtures.py:
 * logits, loss, every parameter gradient, 10 AdamW losses, bidirectional
 * logits) for GPT-2 and LLaMA, HF load/save, and the KV-cache path against
 * the full forward. Parity tolerance: |got - ref| <= 1e-4 + 1e-3 |ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mtft/io.h"
#include "mtft/model.h"
#include "mtft/optim.h"
#include "mtft_test.h"
#include "nn/nn_impl.h"

#define PAR_RTOL 1e-3f
#define PAR_ATOL 1e-4f

static mtft_model_config tiny_config(mtft_arch arch) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.arch = arch;
    c.vocab_size = 64;
    c.n_ctx = 16;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = arch == MTFT_ARCH_LLAMA ? 2 : 4;
    c.n_ff = arch == MTFT_ARCH_LLAMA ? 64 : 128;
    c.norm_eps = arch == MTFT_ARCH_LLAMA ? 1e-6f : 1e-5f;
    c.tie_embeddings = arch == MTFT_ARCH_GPT2;
    return c;
}

static mtft_graph *new_graph(void) {
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = (size_t)8 << 20;
    ck_assert_int_eq(mtft_graph_new(&g, &o), 0);
    return g;
}

/* ---- config and construction ------------------------------------------------ */
START_TEST(test_model_config_validate) {
    mtft_model_config c = tiny_config(MTFT_ARCH_GPT2);
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_OK);
    c.n_head = 5;
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "n_head"));
    c = tiny_config(MTFT_ARCH_GPT2);
    c.n_kv_head = 2; /* GPT-2 has no GQA */
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_EINVAL);
    c = tiny_config(MTFT_ARCH_LLAMA);
    c.n_kv_head = 3;
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "n_kv_head"));
    c = tiny_config(MTFT_ARCH_LLAMA);
    c.vocab_size = 0;
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "vocab_size"));
    c = tiny_config(MTFT_ARCH_GPT2);
    c.attn_bias = 1;
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_EINVAL);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "attn_bias"));
    c = tiny_config(MTFT_ARCH_LLAMA);
    c.resid_pdrop = 1.0f;
    ck_assert_int_eq(mtft_model_config_validate(&c), MTFT_EINVAL);
    mtft_model *m = (mtft_model *)&c; /* must be overwritten with NULL on failure */
    ck_assert_int_eq(mtft_model_new(&m, &c, 1), MTFT_EINVAL);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_model_names_and_init) {
    mtft_model_config c = tiny_config(MTFT_ARCH_GPT2);
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 7), 0);
    mtft_param_group *pg = mtft_model_base_group(m);
    ck_assert_int_eq(mtft_param_group_count(pg), 2 + 12 * 2 + 2);
    struct {
        const char *name;
        int ndim;
        int64_t d0, d1;
    } want[] = {{"wte.weight", 2, 64, 32},          {"wpe.weight", 2, 16, 32},
                {"h.0.ln_1.weight", 1, 32, 0},      {"h.1.attn.c_attn.weight", 2, 32, 96},
                {"h.1.attn.c_attn.bias", 1, 96, 0}, {"h.0.attn.c_proj.weight", 2, 32, 32},
                {"h.0.mlp.c_fc.weight", 2, 32, 128}, {"h.1.mlp.c_proj.weight", 2, 128, 32},
                {"ln_f.bias", 1, 32, 0}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        mtft_tensor *t = mtft_param_group_find(pg, want[i].name);
        ck_assert_msg(t != NULL, "missing %s", want[i].name);
        ck_assert_int_eq(mtft_tensor_ndim(t), want[i].ndim);
        ck_assert_int_eq(mtft_tensor_dim(t, 0), want[i].d0);
        if (want[i].ndim == 2) ck_assert_int_eq(mtft_tensor_dim(t, 1), want[i].d1);
    }
    ck_assert_ptr_null(mtft_param_group_find(pg, "lm_head.weight")); /* tied */
    /* init: norms 1, biases 0, wte ~ N(0, 0.02), c_proj ~ N(0, 0.02/sqrt(2L)) */
    const float *lw = mtft_tensor_data(mtft_param_group_find(pg, "h.1.ln_2.weight"));
    const float *lb = mtft_tensor_data(mtft_param_group_find(pg, "h.1.ln_2.bias"));
    for (int i = 0; i < 32; i++) {
        ck_assert_float_eq(lw[i], 1.0f);
        ck_assert_float_eq(lb[i], 0.0f);
    }
    const char *mats[] = {"wte.weight", "h.0.attn.c_proj.weight"};
    double want_std[] = {0.02, 0.02 / 2.0};
    for (int k = 0; k < 2; k++) {
        mtft_tensor *t = mtft_param_group_find(pg, mats[k]);
        int64_t n = mtft_tensor_numel(t);
        const float *d = mtft_tensor_data(t);
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) {
            s += d[i];
            s2 += (double)d[i] * d[i];
        }
        double mean = s / n, sd = sqrt(s2 / n - mean * mean);
        ck_assert_msg(fabs(sd / want_std[k] - 1.0) < 0.1, "%s: std %g, want %g", mats[k], sd, want_std[k]);
        ck_assert_msg(fabs(mean) < 4 * want_std[k] / sqrt((double)n), "%s: mean %g", mats[k], mean);
    }
    /* same seed, same weights; another seed, other weights */
    mtft_model *m2 = NULL, *m3 = NULL;
    ck_assert_int_eq(mtft_model_new(&m2, &c, 7), 0);
    ck_assert_int_eq(mtft_model_new(&m3, &c, 8), 0);
    size_t n1, n2, n3;
    float *d1 = mtft_param_group_data(pg, &n1), *d2 = mtft_param_group_data(mtft_model_base_group(m2), &n2);
    float *d3 = mtft_param_group_data(mtft_model_base_group(m3), &n3);
    ck_assert_uint_eq(n1, n2);
    ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(d1, d3, n1 * sizeof(float)), 0);
    mtft_model_free(m);
    mtft_model_free(m2);
    mtft_model_free(m3);

    c = tiny_config(MTFT_ARCH_LLAMA);
    ck_assert_int_eq(mtft_model_new(&m, &c, 7), 0);
    pg = mtft_model_base_group(m);
    ck_assert_int_eq(mtft_param_group_count(pg), 1 + 9 * 2 + 1 + 1);
    ck_assert_int_eq(mtft_tensor_dim(mtft_param_group_find(pg, "model.layers.1.self_attn.k_proj.weight"), 0), 16);
    ck_assert_int_eq(mtft_tensor_dim(mtft_param_group_find(pg, "model.layers.0.mlp.down_proj.weight"), 1), 64);
    ck_assert_ptr_nonnull(mtft_param_group_find(pg, "lm_head.weight"));
    ck_assert_ptr_nonnull(mtft_param_group_find(pg, "model.norm.weight"));
    mtft_model_free(m);
    mtft_model_free(NULL);
}
END_TEST

/* ---- RoPE ------------------------------------------------------------------ */
static mtft_tensor *rope_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    /* in [B,T,H,D] -> transposed view [B,H,T,D] -> rope */
    return mtft_nn__rope(g, mtft_transpose(g, in[0], 1, 2), *(int *)ctx, 10000.0f);
}

START_TEST(test_model_rope) {
    enum { B = 2, T = 5, H = 3, D = 8 };
    float x[B * T * H * D];
    mtft_test_fill(x, B * T * H * D, 3, -1.0f, 1.0f);
    mtft_graph *g = new_graph();
    int64_t shp[4] = {B, T, H, D};
    int pos0 = 2;
    mtft_tensor *xt = mtft_from_data(g, 4, shp, x);
    mtft_tensor *y = rope_fn(g, &xt, &pos0);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(mtft_tensor_dim(y, 1), H);
    ck_assert(mtft_tensor_is_contiguous(y));
    /* direct formula in double: rotate pairs (i, i+D/2) by (pos0+t) theta^(-2i/D) */
    const float *yd = mtft_tensor_data(y);
    double maxerr = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < D / 2; i++) {
                    double ang = (pos0 + t) * pow(10000.0, -2.0 * i / D);
                    double a = x[((b * T + t) * H + h) * D + i], c = x[((b * T + t) * H + h) * D + i + D / 2];
                    double y0 = a * cos(ang) - c * sin(ang), y1 = c * cos(ang) + a * sin(ang);
                    const float *yr = yd + ((b * H + h) * T + t) * D;
                    maxerr = fmax(maxerr, fmax(fabs(yr[i] - y0), fabs(yr[i + D / 2] - y1)));
                }
    ck_assert_msg(maxerr < 1e-5, "rope forward max error %g", maxerr);
    /* a rotation keeps the norm of each pair: position 0 is the identity */
    mtft_graph_reset(g);
    int zero = 0;
    xt = mtft_from_data(g, 4, shp, x);
    y = rope_fn(g, &xt, &zero);
    ck_assert_ptr_nonnull(y);
    ck_assert_float_eq_tol(mtft_tensor_data(y)[3], x[3], 1e-7f); /* b0 h0 t0 */
    /* errors: odd D, 3-D input */
    mtft_graph_reset(g);
    int64_t odd[4] = {1, 1, 2, 3};
    ck_assert_ptr_null(mtft_nn__rope(g, mtft_zeros(g, 4, odd), 0, 10000.0f));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESHAPE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "[1, 1, 2, 3]"));
    mtft_graph_free(g);

    /* gradient through the strided view: central differences, eps 1e-2,
     * atol 1e-3, rtol 1e-2 (rope is linear in x, so errors are rounding only) */
    mtft_gradcheck_input in = {4, {B, T, H, D}, x, 1};
    mtft_gradcheck_result r = mtft_gradcheck("rope", rope_fn, &pos0, &in, 1, 1e-2f, 1e-3f, 1e-2f, 0);
    ck_assert_int_eq(r.checked, B * T * H * D);
}
END_TEST

/* ---- fixtures ---------------------------------------------------------------- */
typedef struct fixture {
    mtft_safetensors *ref;
    mtft_model *m;
    int B, T;
    int32_t ids[64], targets[64], valid_len[4];
} fixture;

static const float *ref_data(fixture *f, const char *name, int64_t *n) {
    int i = mtft_safetensors_find(f->ref, name);
    ck_assert_msg(i >= 0, "fixture: %s: %s", name, mtft_error_last()->message);
    size_t nb = 0;
    const float *d = mtft_safetensors_data(f->ref, i, &nb);
    ck_assert_ptr_nonnull(d);
    if (n) *n = (int64_t)(nb / sizeof(float));
    return d;
}

static void fixture_open(fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    char rel[256], dir[1024], path[1100];
    snprintf(rel, sizeof rel, "tests/fixtures/model/%s", name);
    mtft_test_path(dir, sizeof dir, rel);
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    ck_assert_msg(mtft_safetensors_open(&f->ref, path) == 0, "%s", mtft_error_last()->message);
    ck_assert_msg(mtft_model_load_hf(&f->m, dir) == 0, "load %s: %s", dir, mtft_error_last()->message);
    int64_t n;
    const float *ids = ref_data(f, "ids", &n);
    int64_t shp[8];
    int nd = 0;
    ck_assert_int_eq(mtft_safetensors_info(f->ref, mtft_safetensors_find(f->ref, "ids"), NULL, &nd, shp), 0);
    ck_assert_int_eq(nd, 2);
    f->B = (int)shp[0];
    f->T = (int)shp[1];
    const float *tg = ref_data(f, "targets", NULL), *vl = ref_data(f, "valid_len", NULL);
    for (int64_t i = 0; i < n; i++) {
        f->ids[i] = (int32_t)ids[i];
        f->targets[i] = (int32_t)tg[i];
    }
    for (int b = 0; b < f->B; b++) f->valid_len[b] = (int32_t)vl[b];
    ck_assert_int_lt(f->valid_len[1], f->T); /* the padding case is exercised */
}

static void fixture_close(fixture *f) {
    mtft_model_free(f->m);
    mtft_safetensors_close(f->ref);
}

/* Compare and return the worst absolute and relative error. */
static void compare(const float *got, const float *want, int64_t n, const char *what, double *max_abs,
                    double *max_rel) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > *max_abs) *max_abs = d;
        if (fabs(want[i]) > 1e-3 && d / fabs(want[i]) > *max_rel) *max_rel = d / fabs(want[i]);
    }
    mtft_assert_close(got, want, n, PAR_RTOL, PAR_ATOL, what);
}

static mtft_tensor *fixture_loss(fixture *f, mtft_graph *g, mtft_tensor **logits) {
    mtft_tensor *h = mtft_model_hidden(f->m, g, f->ids, f->B, f->T, f->valid_len);
    mtft_tensor *lg = mtft_model_logits(f->m, g, h);
    ck_assert_msg(lg != NULL, "forward: %s", mtft_error_last()->message);
    if (logits) *logits = lg;
    mtft_tensor *loss = mtft_cross_entropy(g, lg, f->targets, -100, 0.0f);
    ck_assert_msg(loss != NULL, "loss: %s", mtft_error_last()->message);
    return loss;
}

static void parity(const char *name) {
    fixture f;
    fixture_open(&f, name);
    mtft_param_group *pg = mtft_model_base_group(f.m);
    mtft_graph *g = new_graph();
    double ea = 0, er = 0;

    /* logits, loss, gradients */
    mtft_param_group_zero_grad(pg);
    mtft_tensor *lg = NULL;
    mtft_tensor *loss = fixture_loss(&f, g, &lg);
    int64_t n;
    const float *want = ref_data(&f, "logits", &n);
    ck_assert_int_eq(n, mtft_tensor_numel(lg));
    compare(mtft_tensor_data(lg), want, n, "logits", &ea, &er);
    compare(mtft_tensor_data(loss), ref_data(&f, "loss", NULL), 1, "loss", &ea, &er);
    ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), 0);
    int np = mtft_param_group_count(pg);
    for (int i = 0; i < np; i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", mtft_tensor_name(t));
        const float *gw = ref_data(&f, gname, &n);
        ck_assert_int_eq(n, mtft_tensor_numel(t));
        compare(mtft_tensor_grad(t), gw, n, gname, &ea, &er);
    }
    printf("%s parity (logits, loss, %d gradients): max abs err %.3g, max rel err %.3g\n", name, np, ea, er);

    /* 10 AdamW steps from the same weights */
    const float *losses = ref_data(&f, "losses", &n);
    ck_assert_int_eq(n, 10);
    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = 1e-2f;
    ao.weight_decay = 0.01f;
    mtft_adamw *opt = NULL;
    ck_assert_int_eq(mtft_adamw_new(&opt, &ao), 0);
    ck_assert_int_eq(mtft_adamw_add_group(opt, pg, NULL), 0);
    float got[10];
    for (int s = 0; s < 10; s++) {
        mtft_graph_reset(g);
        mtft_adamw_zero_grad(opt);
        loss = fixture_loss(&f, g, NULL);
        got[s] = mtft_tensor_data(loss)[0];
        ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), 0);
        ck_assert_int_eq(mtft_adamw_step(opt), 0);
    }
    double sa = 0, sr = 0;
    compare(got, losses, 10, "adamw losses", &sa, &sr);
    ck_assert_float_lt(got[9], 0.5f * got[0]); /* it learned */
    printf("%s 10 AdamW steps: losses %.5f .. %.5f, max abs err %.3g, max rel err %.3g\n", name, (double)got[0],
           (double)got[9], sa, sr);
    mtft_adamw_free(opt);
    mtft_graph_free(g);
    fixture_close(&f);
}

START_TEST(test_model_parity_gpt2) { parity("gpt2"); }
END_TEST
START_TEST(test_model_parity_llama) { parity("llama"); }
END_TEST
/* LLaMA with q/k/v biases, tied embeddings, theta 1e6 (Qwen2), loaded
 * from a config.json with model_type "qwen2". */
START_TEST(test_model_parity_qwen2) {
    parity("qwen2");
    fixture f;
    fixture_open(&f, "qwen2");
    const mtft_model_config *c = mtft_model_get_config(f.m);
    ck_assert_int_eq(c->attn_bias, 1);
    ck_assert_int_eq(c->tie_embeddings, 1);
    ck_assert_float_eq(c->rope_theta, 1e6f);
    mtft_param_group *pg = mtft_model_base_group(f.m);
    ck_assert_int_eq(mtft_tensor_dim(mtft_param_group_find(pg, "model.layers.1.self_attn.k_proj.bias"), 0), 16);
    ck_assert_ptr_null(mtft_param_group_find(pg, "lm_head.weight"));
    fixture_close(&f);
}
END_TEST

/* The same weights as a bidirectional encoder (causal = 0). */
static void parity_bidir(const char *name) {
    fixture f;
    fixture_open(&f, name);
    f.m->cfg.causal = 0;
    mtft_graph *g = new_graph();
    mtft_graph_set_grad_enabled(g, 0);
    mtft_tensor *lg = mtft_model_logits(f.m, g, mtft_model_hidden(f.m, g, f.ids, f.B, f.T, f.valid_len));
    ck_assert_msg(lg != NULL, "%s", mtft_error_last()->message);
    int64_t n;
    const float *want = ref_data(&f, "logits_bidir", &n);
    double ea = 0, er = 0;
    compare(mtft_tensor_data(lg), want, n, "bidirectional logits", &ea, &er);
    /* and it really differs from the causal logits */
    const float *causal = ref_data(&f, "logits", NULL);
    double diff = 0;
    for (int64_t i = 0; i < n; i++) diff = fmax(diff, fabs((double)want[i] - causal[i]));
    ck_assert(diff > 1e-2);
    printf("%s bidirectional parity: max abs err %.3g, max rel err %.3g\n", name, ea, er);
    ck_assert_int_eq(mtft_graph_n_nodes(g), 0); /* no tape without grad */
    mtft_graph_free(g);
    fixture_close(&f);
}

START_TEST(test_model_parity_bidir) {
    parity_bidir("gpt2");
    parity_bidir("llama");
    parity_bidir("qwen2");
}
END_TEST

/* ---- HF load and save ------------------------------------------------------ */
/* A bidirectional model (encoder) keeps causal = 0 through save and load:
 * config.json carries "mtft_causal": false (HF has no key for it). */
START_TEST(test_model_hf_bidirectional_roundtrip) {
    for (int a = 0; a < 2; a++) {
        mtft_model_config c = tiny_config(a ? MTFT_ARCH_LLAMA : MTFT_ARCH_GPT2);
        c.causal = 0;
        mtft_model *m = NULL, *m2 = NULL;
        ck_assert_int_eq(mtft_model_new(&m, &c, 5), MTFT_OK);
        char dir[] = "/tmp/mtft_model_XXXXXX", path[256];
        ck_assert_ptr_nonnull(mkdtemp(dir));
        ck_assert_msg(mtft_model_save_hf(m, dir) == 0, "%s", mtft_error_last()->message);
        snprintf(path, sizeof path, "%s/config.json", dir);
        mtft_hf_config hf;
        ck_assert_int_eq(mtft_hf_config_load(&hf, path), MTFT_OK);
        ck_assert_int_eq(hf.causal, 0);
        ck_assert_msg(mtft_model_load_hf(&m2, dir) == 0, "%s", mtft_error_last()->message);
        ck_assert_int_eq(mtft_model_get_config(m2)->causal, 0);
        ck_assert_int_eq(memcmp(&c, mtft_model_get_config(m2), sizeof c), 0);
        mtft_model_free(m2);
        /* causal models do not get the key; a wrong type is an error naming it */
        FILE *fp = fopen(path, "w");
        ck_assert_ptr_nonnull(fp);
        fputs("{\"model_type\": \"gpt2\", \"mtft_causal\": \"no\"}\n", fp);
        fclose(fp);
        ck_assert_int_eq(mtft_hf_config_load(&hf, path), MTFT_EFORMAT);
        ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "mtft_causal"));
        unlink(path);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        unlink(path);
        rmdir(dir);
        mtft_model_free(m);
    }
}
END_TEST

START_TEST(test_model_hf_roundtrip) {
    const char *names[] = {"gpt2", "llama", "qwen2"};
    for (int k = 0; k < 3; k++) {
        fixture f;
        fixture_open(&f, names[k]);
        const mtft_model_config *c = mtft_model_get_config(f.m);
        if (k == 2) { /* round trip only */
            char dir[] = "/tmp/mtft_model_XXXXXX", path[256];
            ck_assert_ptr_nonnull(mkdtemp(dir));
            ck_assert_msg(mtft_model_save_hf(f.m, dir) == 0, "%s", mtft_error_last()->message);
            mtft_model *m2 = NULL;
            ck_assert_msg(mtft_model_load_hf(&m2, dir) == 0, "%s", mtft_error_last()->message);
            ck_assert_int_eq(memcmp(c, mtft_model_get_config(m2), sizeof *c), 0);
            size_t n1, n2;
            const float *d1 = mtft_param_group_data(mtft_model_base_group(f.m), &n1);
            const float *d2 = mtft_param_group_data(mtft_model_base_group(m2), &n2);
            ck_assert_uint_eq(n1, n2);
            ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
            mtft_model_free(m2);
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
            unlink(path);
            snprintf(path, sizeof path, "%s/config.json", dir);
            unlink(path);
            rmdir(dir);
            fixture_close(&f);
            continue;
        }
        ck_assert_int_eq(c->arch, k == 0 ? MTFT_ARCH_GPT2 : MTFT_ARCH_LLAMA);
        ck_assert_int_eq(c->n_kv_head, k == 0 ? 4 : 2);
        ck_assert_int_eq(c->tie_embeddings, k == 0);
        char dir[] = "/tmp/mtft_model_XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        ck_assert_msg(mtft_model_save_hf(f.m, dir) == 0, "%s", mtft_error_last()->message);
        mtft_model *m2 = NULL;
        ck_assert_msg(mtft_model_load_hf(&m2, dir) == 0, "%s", mtft_error_last()->message);
        const mtft_model_config *c2 = mtft_model_get_config(m2);
        ck_assert_int_eq(memcmp(c, c2, sizeof *c), 0);
        size_t n1, n2;
        const float *d1 = mtft_param_group_data(mtft_model_base_group(f.m), &n1);
        const float *d2 = mtft_param_group_data(mtft_model_base_group(m2), &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
        mtft_model_free(m2);

        /* a config whose sizes disagree with the weights: the error names the tensor and shapes */
        char path[256];
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *fp = fopen(path, "w");
        ck_assert_ptr_nonnull(fp);
        if (k == 0)
            fprintf(fp, "{\"model_type\": \"gpt2\", \"vocab_size\": 64, \"n_positions\": 16, \"n_embd\": 32, "
                        "\"n_layer\": 2, \"n_head\": 4, \"n_inner\": 96}\n");
        else
            fprintf(fp, "{\"model_type\": \"llama\", \"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": "
                        "64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, "
                        "\"max_position_embeddings\": 16}\n");
        fclose(fp);
        m2 = (mtft_model *)dir;
        ck_assert_int_eq(mtft_model_load_hf(&m2, dir), MTFT_ESHAPE);
        ck_assert_ptr_null(m2);
        const char *msg = mtft_error_last()->message;
        ck_assert_msg(strstr(msg, k == 0 ? "h.0.mlp.c_fc.weight" : "model.layers.0.self_attn.k_proj.weight"), "%s",
                      msg);
        ck_assert_msg(strstr(msg, k == 0 ? "[32, 96]" : "[32, 32]"), "expected shape: %s", msg);
        ck_assert_msg(strstr(msg, k == 0 ? "[32, 128]" : "[16, 32]"), "file shape: %s", msg);
        ck_assert_msg(strstr(msg, "model.safetensors"), "file: %s", msg);
        /* no weights at all */
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_lt(mtft_model_load_hf(&m2, dir), 0);
        ck_assert_ptr_null(m2);
        snprintf(path, sizeof path, "%s/config.json", dir);
        unlink(path);
        rmdir(dir);
        fixture_close(&f);
    }
    mtft_model *m = NULL;
    ck_assert_int_lt(mtft_model_load_hf(&m, "/nonexistent/dir"), 0);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "/nonexistent/dir/config.json"));
}
END_TEST

START_TEST(test_model_from_hf) {
    mtft_hf_config hf;
    memset(&hf, 0, sizeof hf);
    snprintf(hf.model_type, sizeof hf.model_type, "qwen2");
    hf.arch = MTFT_HF_ARCH_LLAMA;
    hf.vocab_size = 100;
    hf.hidden_size = 64;
    hf.intermediate_size = 128;
    hf.num_hidden_layers = 2;
    hf.num_attention_heads = 8;
    hf.num_key_value_heads = 2;
    hf.head_dim = 8;
    hf.max_position_embeddings = 4096;
    hf.sliding_window = 512;
    hf.norm_eps = 1e-6;
    hf.rope_theta = 1e6;
    snprintf(hf.hidden_act, sizeof hf.hidden_act, "silu");
    mtft_model_config c;
    ck_assert_int_eq(mtft_model_config_from_hf(&c, &hf), 0);
    ck_assert_int_eq(c.arch, MTFT_ARCH_LLAMA);
    ck_assert_int_eq(c.n_kv_head, 2);
    ck_assert_int_eq(c.n_ctx, 512); /* exact within the sliding window */
    ck_assert_float_eq(c.rope_theta, 1e6f);
    ck_assert_int_eq(c.attn_bias, 0);
    hf.attention_bias = 1; /* Qwen2 */
    ck_assert_int_eq(mtft_model_config_from_hf(&c, &hf), 0);
    ck_assert_int_eq(c.attn_bias, 1);
    hf.mlp_bias = 1;
    ck_assert_int_eq(mtft_model_config_from_hf(&c, &hf), MTFT_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "mlp_bias"));
    hf.mlp_bias = 0;
    snprintf(hf.hidden_act, sizeof hf.hidden_act, "gelu");
    ck_assert_int_eq(mtft_model_config_from_hf(&c, &hf), MTFT_EUNSUPPORTED);
    snprintf(hf.hidden_act, sizeof hf.hidden_act, "silu");
    hf.num_key_value_heads = 3;
    ck_assert_int_eq(mtft_model_config_from_hf(&c, &hf), MTFT_EINVAL);
}
END_TEST

/* GPT2LMHeadModel checkpoints name tensors "transformer.h.0..." and may carry
 * extra buffers (h.N.attn.bias); both load. */
START_TEST(test_model_hf_prefixed) {
    fixture f;
    fixture_open(&f, "gpt2");
    mtft_param_group *pg = mtft_model_base_group(f.m);
    int n = mtft_param_group_count(pg);
    char dir[] = "/tmp/mtft_model_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(mtft_model_save_hf(f.m, dir), 0); /* for config.json */
    char(*names)[96] = calloc((size_t)n + 1, sizeof *names);
    const char **np = calloc((size_t)n + 1, sizeof *np);
    mtft_tensor **ts = calloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; i < n; i++) {
        ts[i] = mtft_param_group_tensor(pg, i);
        snprintf(names[i], sizeof names[i], "transformer.%s", mtft_tensor_name(ts[i]));
        np[i] = names[i];
    }
    mtft_graph *g = new_graph();
    int64_t mshape[2] = {16, 16};
    ts[n] = mtft_zeros(g, 2, mshape);
    np[n] = "transformer.h.0.attn.bias";
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(mtft_safetensors_save(path, n + 1, np, ts, NULL) == 0, "%s", mtft_error_last()->message);
    mtft_model *m2 = NULL;
    ck_assert_msg(mtft_model_load_hf(&m2, dir) == 0, "%s", mtft_error_last()->message);
    size_t n1, n2;
    const float *d1 = mtft_param_group_data(pg, &n1), *d2 = mtft_param_group_data(mtft_model_base_group(m2), &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
    mtft_model_free(m2);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    mtft_graph_free(g);
    free(names);
    free(np);
    free(ts);
    fixture_close(&f);
}
END_TEST

/* Sharded checkpoints (model-0000K-of-0000N.safetensors) load; a tensor
 * missing from every shard is named in the error. */
START_TEST(test_model_hf_sharded) {
    fixture f;
    fixture_open(&f, "llama");
    mtft_param_group *pg = mtft_model_base_group(f.m);
    int n = mtft_param_group_count(pg), half = n / 2;
    char dir[] = "/tmp/mtft_model_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(mtft_model_save_hf(f.m, dir), 0);
    char path[256], p1[256], p2[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_int_eq(unlink(path), 0);
    const char **np = calloc((size_t)n, sizeof *np);
    mtft_tensor **ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++) {
        ts[i] = mtft_param_group_tensor(pg, i);
        np[i] = mtft_tensor_name(ts[i]);
    }
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    /* the second shard first in name order would not matter either */
    ck_assert_int_eq(mtft_safetensors_save(p2, n - half, np + half, ts + half, NULL), 0);
    ck_assert_int_eq(mtft_safetensors_save(p1, half, np, ts, NULL), 0);
    mtft_model *m2 = NULL;
    ck_assert_msg(mtft_model_load_hf(&m2, dir) == 0, "%s", mtft_error_last()->message);
    size_t n1, n2;
    const float *d1 = mtft_param_group_data(pg, &n1), *d2 = mtft_param_group_data(mtft_model_base_group(m2), &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
    mtft_model_free(m2);
    /* drop the last tensor (lm_head.weight) from shard 2 */
    ck_assert_int_eq(mtft_safetensors_save(p2, n - half - 1, np + half, ts + half, NULL), 0);
    ck_assert_int_eq(mtft_model_load_hf(&m2, dir), MTFT_ENOTFOUND);
    ck_assert_ptr_null(m2);
    ck_assert_msg(strstr(mtft_error_last()->message, np[n - 1]) != NULL, "%s", mtft_error_last()->message);
    unlink(p1);
    unlink(p2);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    free(np);
    free(ts);
    fixture_close(&f);
}
END_TEST

/* ---- errors ------------------------------------------------------------------ */
START_TEST(test_model_forward_errors) {
    mtft_model_config c = tiny_config(MTFT_ARCH_LLAMA);
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 1), 0);
    mtft_graph *g = new_graph();
    int32_t ids[32] = {0};
    ck_assert_ptr_null(mtft_model_hidden(m, g, ids, 1, 17, NULL)); /* T > n_ctx */
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "n_ctx"));
    mtft_graph_reset(g);
    int32_t vl[2] = {4, 0};
    ck_assert_ptr_null(mtft_model_hidden(m, g, ids, 2, 4, vl));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "valid_len[1]"));
    mtft_graph_reset(g);
    ids[3] = 64; /* out of the vocabulary */
    ck_assert_ptr_null(mtft_model_hidden(m, g, ids, 1, 4, NULL));
    ck_assert_int_lt(mtft_graph_status(g), 0);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "64"));
    mtft_graph_free(g);
    int32_t out[4];
    int n_out = -1;
    ck_assert_int_eq(mtft_model_generate(m, ids, 10, 8, NULL, out, &n_out), MTFT_ERANGE);
    mtft_model_free(m);
}
END_TEST

/* ---- KV cache and generation ---------------------------------------------------- */
static void full_logits(mtft_model *m, const int32_t *ids, int n, float *out) {
    mtft_graph *g = new_graph();
    mtft_graph_set_grad_enabled(g, 0);
    mtft_tensor *lg = mtft_model_logits(m, g, mtft_model_hidden(m, g, ids, 1, n, NULL));
    ck_assert_msg(lg != NULL, "%s", mtft_error_last()->message);
    memcpy(out, mtft_tensor_data(lg), (size_t)mtft_tensor_numel(lg) * sizeof(float));
    mtft_graph_free(g);
}

START_TEST(test_model_kv_cache) {
    const char *names[] = {"gpt2", "llama"};
    int32_t ids[13];
    mtft_rng r;
    mtft_rng_seed(&r, 5);
    for (int i = 0; i < 13; i++) ids[i] = (int32_t)mtft_rng_below(&r, 64);
    static float full[13 * 64], cached[13 * 64];
    for (int k = 0; k < 2; k++) {
        fixture f;
        fixture_open(&f, names[k]);
        full_logits(f.m, ids, 13, full);
        int chunks[] = {0, 1, 4};
        for (int c = 0; c < 3; c++) {
            memset(cached, 0, sizeof cached);
            ck_assert_msg(mtft_nn__cached_logits(f.m, ids, 13, chunks[c], cached) == 0, "%s",
                          mtft_error_last()->message);
            char what[64];
            snprintf(what, sizeof what, "%s cached logits, chunk %d", names[k], chunks[c]);
            mtft_assert_close(cached, full, 13 * 64, 1e-4f, 1e-4f, what);
        }
        /* greedy generation equals argmax of a full forward each step */
        int32_t seq[16], out[8];
        int n_out = 0;
        memcpy(seq, ids, 5 * sizeof(int32_t));
        ck_assert_int_eq(mtft_model_generate(f.m, ids, 5, 8, NULL, out, &n_out), 0);
        ck_assert_int_eq(n_out, 8);
        for (int s = 0; s < 8; s++) {
            full_logits(f.m, seq, 5 + s, full);
            const float *row = full + (4 + s) * 64;
            int best = 0;
            for (int v = 1; v < 64; v++)
                if (row[v] > row[best]) best = v;
            ck_assert_int_eq(out[s], best);
            seq[5 + s] = best;
        }
        /* eos stops generation and is included */
        mtft_generate_options o = MTFT_GENERATE_OPTIONS_INIT;
        o.eos_id = out[2];
        int32_t out2[8];
        ck_assert_int_eq(mtft_model_generate(f.m, ids, 5, 8, &o, out2, &n_out), 0);
        int first = 0;
        while (out[first] != o.eos_id) first++;
        ck_assert_int_eq(n_out, first + 1);
        ck_assert_int_eq(out2[n_out - 1], o.eos_id);
        /* sampling: same seed same tokens; top_k 1 is greedy */
        o = (mtft_generate_options)MTFT_GENERATE_OPTIONS_INIT;
        o.temperature = 1.0f;
        o.top_p = 0.9f;
        o.seed = 11;
        int32_t s1[8], s2[8], s3[8];
        int n1, n2, n3;
        ck_assert_int_eq(mtft_model_generate(f.m, ids, 5, 8, &o, s1, &n1), 0);
        ck_assert_int_eq(mtft_model_generate(f.m, ids, 5, 8, &o, s2, &n2), 0);
        ck_assert_int_eq(n1, 8);
        ck_assert_int_eq(memcmp(s1, s2, sizeof s1), 0);
        for (int i = 0; i < 8; i++) ck_assert(s1[i] >= 0 && s1[i] < 64);
        o.top_k = 1;
        ck_assert_int_eq(mtft_model_generate(f.m, ids, 5, 8, &o, s3, &n3), 0);
        ck_assert_int_eq(memcmp(s3, out, sizeof s3), 0);
        /* a bidirectional model cannot generate */
        f.m->cfg.causal = 0;
        ck_assert_int_eq(mtft_model_generate(f.m, ids, 5, 8, NULL, out, &n_out), MTFT_EUNSUPPORTED);
        fixture_close(&f);
    }
}
END_TEST

/* Sampling reaches more than one token at a high temperature, and different
 * seeds give different streams. */
START_TEST(test_model_sampling_spread) {
    mtft_model_config c = tiny_config(MTFT_ARCH_GPT2);
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 3), 0);
    int32_t prompt[1] = {1}, a[12], b[12];
    int na, nb;
    mtft_generate_options o = MTFT_GENERATE_OPTIONS_INIT;
    o.temperature = 2.0f;
    o.seed = 1;
    ck_assert_int_eq(mtft_model_generate(m, prompt, 1, 12, &o, a, &na), 0);
    o.seed = 2;
    ck_assert_int_eq(mtft_model_generate(m, prompt, 1, 12, &o, b, &nb), 0);
    ck_assert_int_ne(memcmp(a, b, sizeof a), 0);
    int distinct = 0;
    for (int i = 0; i < 12; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= a[j] == a[i];
        distinct += !seen;
    }
    ck_assert_int_gt(distinct, 3); /* near-uniform logits at init */
    mtft_model_free(m);
}
END_TEST

/* Dropout on: a training graph differs from eval, the same seed repeats. */
START_TEST(test_model_dropout) {
    mtft_model_config c = tiny_config(MTFT_ARCH_GPT2);
    c.resid_pdrop = 0.2f;
    c.embd_pdrop = 0.1f;
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 3), 0);
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float h[3][8 * 32];
    for (int k = 0; k < 3; k++) {
        mtft_graph *g = NULL;
        mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
        o.seed = 9;
        o.training = k < 2;
        ck_assert_int_eq(mtft_graph_new(&g, &o), 0);
        mtft_tensor *t = mtft_model_hidden(m, g, ids, 1, 8, NULL);
        ck_assert_ptr_nonnull(t);
        memcpy(h[k], mtft_tensor_data(t), sizeof h[k]);
        mtft_graph_free(g);
    }
    ck_assert_int_eq(memcmp(h[0], h[1], sizeof h[0]), 0);
    ck_assert_int_ne(memcmp(h[0], h[2], sizeof h[0]), 0);
    mtft_model_free(m);
}
END_TEST

/* End to end for both architectures: train from scratch on a repeating
 * pattern (period 7), then greedy generation continues it. */
START_TEST(test_model_learns_pattern) {
    for (int a = 0; a < 2; a++) {
        mtft_model_config c = tiny_config(a == 0 ? MTFT_ARCH_GPT2 : MTFT_ARCH_LLAMA);
        c.vocab_size = 16;
        mtft_model *m = NULL;
        ck_assert_int_eq(mtft_model_new(&m, &c, 1), 0);
        mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
        ao.lr = 1e-2f;
        mtft_adamw *opt = NULL;
        ck_assert_int_eq(mtft_adamw_new(&opt, &ao), 0);
        ck_assert_int_eq(mtft_adamw_add_group(opt, mtft_model_base_group(m), NULL), 0);
        mtft_graph *g = new_graph();
        int32_t ids[4 * 16], tg[4 * 16];
        for (int b = 0; b < 4; b++)
            for (int t = 0; t < 16; t++) {
                ids[b * 16 + t] = (b * 2 + t) % 7;
                tg[b * 16 + t] = (b * 2 + t + 1) % 7;
            }
        float first = 0, last = 0;
        for (int s = 0; s < 60; s++) {
            mtft_graph_reset(g);
            mtft_adamw_zero_grad(opt);
            mtft_tensor *loss = mtft_cross_entropy(
                g, mtft_model_logits(m, g, mtft_model_hidden(m, g, ids, 4, 16, NULL)), tg, -100, 0.0f);
            ck_assert_ptr_nonnull(loss);
            ck_assert_int_eq(mtft_graph_backward(g, loss, NULL), 0);
            ck_assert_int_eq(mtft_adamw_step(opt), 0);
            last = mtft_tensor_data(loss)[0];
            if (s == 0) first = last;
        }
        ck_assert_msg(last < 0.2f * first, "arch %d: loss %g -> %g", a, (double)first, (double)last);
        int32_t prompt[3] = {3, 4, 5}, out[12];
        int n_out = 0;
        ck_assert_int_eq(mtft_model_generate(m, prompt, 3, 12, NULL, out, &n_out), 0);
        ck_assert_int_eq(n_out, 12);
        for (int i = 0; i < 12; i++) ck_assert_msg(out[i] == (6 + i) % 7, "arch %d: token %d is %d", a, i, out[i]);
        mtft_graph_free(g);
        mtft_adamw_free(opt);
        mtft_model_free(m);
    }
}
END_TEST

static Suite *mtft_test_model_suite(void) {
    Suite *s = suite_create("model");
    TCase *api = tcase_create("api");
    tcase_add_test(api, test_model_config_validate);
    tcase_add_test(api, test_model_names_and_init);
    tcase_add_test(api, test_model_from_hf);
    tcase_add_test(api, test_model_forward_errors);
    tcase_add_test(api, test_model_dropout);
    suite_add_tcase(s, api);
    TCase *grad = tcase_create("grad");
    tcase_add_test(grad, test_model_rope);
    suite_add_tcase(s, grad);
    TCase *par = tcase_create("parity");
    tcase_set_timeout(par, 300);
    tcase_add_test(par, test_model_parity_gpt2);
    tcase_add_test(par, test_model_parity_llama);
    tcase_add_test(par, test_model_parity_qwen2);
    tcase_add_test(par, test_model_parity_bidir);
    tcase_add_test(par, test_model_hf_roundtrip);
    tcase_add_test(par, test_model_hf_bidirectional_roundtrip);
    tcase_add_test(par, test_model_hf_prefixed);
    tcase_add_test(par, test_model_hf_sharded);
    tcase_add_test(par, test_model_kv_cache);
    tcase_add_test(par, test_model_sampling_spread);
    tcase_add_test(par, test_model_learns_pattern);
    suite_add_tcase(s, par);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_model_suite()); }
