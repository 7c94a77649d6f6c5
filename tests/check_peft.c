/* ctest-labels: unit */
/* ctest-timeout: 600 */
/* PEFT: name patterns and layer lists, grouping a mixed batch, per-part
 * (per-task) weight gradients from one backward (tensor level and through
 * the model), LoRA (init, rsLoRA, mixed batch == separate batches, shared +
 * per-task, merge / exact unmerge, PEFT save/load), bottleneck adapters,
 * (IA)3, Poly and ScaLearn (identity at init where applicable, finite
 * difference gradient checks, mixed == separate).
 *
 * Tolerances. Mixed vs separate batches and split vs separate gradients:
 * |a - b| <= 1e-5 + 1e-5 |b| (same maths, different GEMM row counts).
 * Merged vs unmerged forward: 1e-5 + 1e-5 |b|. Unmerge: bitwise.
 * Gradient checks: central differences (eps 3e-3) of L = sum(h .* R) in
 * double from the float forward, |a - n| <= 2e-3 + 2e-2 |n|; a 5% error in
 * any gradient term fails them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mtft/io.h"
#include "mtft/peft.h"
#include "mtft_test.h"
#include "peft/peft_impl.h"

#define EQ_ATOL 1e-5f
#define EQ_RTOL 1e-5f

static mtft_model *tiny_model(mtft_arch arch, uint64_t seed) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.arch = arch;
    c.vocab_size = 32;
    c.n_ctx = 16;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = arch == MTFT_ARCH_LLAMA ? 1 : 2;
    c.n_ff = arch == MTFT_ARCH_LLAMA ? 24 : 32;
    c.norm_eps = 1e-5f;
    c.tie_embeddings = arch == MTFT_ARCH_GPT2;
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, seed), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_trainable(mtft_model_base_group(m), 0), MTFT_OK);
    return m;
}

static mtft_graph *new_graph(void) {
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = (size_t)4 << 20;
    ck_assert_int_eq(mtft_graph_new(&g, &o), MTFT_OK);
    return g;
}

/* Every tensor of the group gets U(lo, hi) values. */
static void rand_group(mtft_param_group *pg, uint64_t seed, float lo, float hi) {
    for (int i = 0; i < mtft_param_group_count(pg); i++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, i);
        mtft_test_fill(mtft_tensor_data(t), mtft_tensor_numel(t), seed + (uint64_t)i, lo, hi);
    }
}

static void rand_ids(int32_t *ids, int n, uint64_t seed) {
    float f[256];
    mtft_test_fill(f, n, seed, 0.0f, 32.0f);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)f[i] % 32;
}

/* Forward B x T rows (ranges `off`, or NULL for no batch), h [B,T,C] into
 * h_out (may be NULL), backward with seed R when R != NULL. Returns L =
 * sum(h .* R) in double (0 when R is NULL). */
static double run(mtft_model *m, mtft_peft *p, mtft_graph *g, const int32_t *ids, int B, int T, const int32_t *off,
                  const float *R, float *h_out) {
    mtft_graph_reset(g);
    if (off) ck_assert_int_eq(mtft_peft_set_batch(p, g, off), MTFT_OK);
    mtft_tensor *h = mtft_model_hidden(m, g, ids, B, T, NULL);
    if (!h) ck_abort_msg("forward failed: %s", mtft_error_last()->message);
    int64_t n = mtft_tensor_numel(h);
    const float *hd = mtft_tensor_data(h);
    if (h_out) memcpy(h_out, hd, (size_t)n * sizeof(float));
    double L = 0.0;
    if (R) {
        for (int64_t i = 0; i < n; i++) L += (double)hd[i] * R[i];
        int rc = mtft_graph_backward(g, h, R);
        if (rc != MTFT_OK) ck_abort_msg("backward failed: %s", mtft_error_last()->message);
    }
    return L;
}

/* Central-difference check of a group's gradient (at most max_elems
 * elements spread over the group, padding skipped). */
static void check_group_grad(const char *what, mtft_model *m, mtft_peft *p, mtft_param_group *pg, const int32_t *ids,
                             int B, int T, const int32_t *off, const float *R, int max_elems) {
    mtft_graph *g = new_graph();
    mtft_param_group_zero_grad(pg);
    run(m, p, g, ids, B, T, off, R, NULL);
    size_t nf;
    float *grad = mtft_param_group_grad(pg, &nf);
    ck_assert_ptr_nonnull(grad);
    float *an = malloc(nf * sizeof(float));
    memcpy(an, grad, nf * sizeof(float));
    mtft_graph_set_grad_enabled(g, 0);
    int checked = 0;
    double worst = 0.0;
    for (int ti = 0; ti < mtft_param_group_count(pg); ti++) {
        mtft_tensor *t = mtft_param_group_tensor(pg, ti);
        float *d = mtft_tensor_data(t);
        int64_t n = mtft_tensor_numel(t), step = n / max_elems + 1;
        size_t off0 = (size_t)(d - mtft_param_group_data(pg, NULL));
        for (int64_t i = (int64_t)(ti % 3); i < n; i += step) {
            /* eps 1e-3: at 3e-3 one rsLoRA element of the LLaMA model sat at 87% of
             * the tolerance from curvature (numeric 0.094 at 3e-3, 0.0905 at 1e-3,
             * analytic 0.0907); at 1e-3 the worst element over all modules is at 41%. */
            const float eps = 1e-3f;
            float keep = d[i];
            int64_t nh = (int64_t)B * T * m->cfg.n_embd;
            float *hb = malloc((size_t)nh * sizeof(float));
            double lp = 0.0, lm = 0.0;
            d[i] = keep + eps;
            run(m, p, g, ids, B, T, off, NULL, hb);
            for (int64_t j = 0; j < nh; j++) lp += (double)hb[j] * R[j];
            d[i] = keep - eps;
            run(m, p, g, ids, B, T, off, NULL, hb);
            for (int64_t j = 0; j < nh; j++) lm += (double)hb[j] * R[j];
            free(hb);
            d[i] = keep;
            double num = (lp - lm) / (2.0 * eps), a = an[off0 + (size_t)i];
            double err = fabs(a - num);
            if (err > worst) worst = err;
            if (err > 2e-3 + 2e-2 * fabs(num))
                ck_abort_msg("%s: gradient of %s[%lld]: analytic %.6g, numeric %.6g", what, mtft_tensor_name(t),
                             (long long)i, a, num);
            checked++;
        }
    }
    ck_assert_int_gt(checked, 0);
    free(an);
    mtft_graph_free(g);
}

/* ---- patterns, layers, grouping ---------------------------------------------------- */
START_TEST(test_peft_match) {
    ck_assert(mtft_peft__match("attn.c_attn", "attn.c_attn"));
    ck_assert(mtft_peft__match("c_attn", "attn.c_attn"));
    ck_assert(!mtft_peft__match("attn", "attn.c_attn"));
    ck_assert(!mtft_peft__match("c_att", "attn.c_attn"));
    ck_assert(mtft_peft__match("q_proj|v_proj", "self_attn.v_proj"));
    ck_assert(!mtft_peft__match("q_proj|v_proj", "self_attn.k_proj"));
    ck_assert(mtft_peft__match("mlp.*", "mlp.c_fc"));
    ck_assert(!mtft_peft__match("mlp.*", "attn.c_proj"));
    ck_assert(mtft_peft__match("*proj", "mlp.c_proj"));
    ck_assert(mtft_peft__match("*", "mlp.c_proj"));
    ck_assert(mtft_peft__match("a*c*e", "abcde"));
    ck_assert(!mtft_peft__match("a*c*f", "abcde"));
    ck_assert(!mtft_peft__match("", "x"));
    ck_assert_int_eq(mtft_peft__layer_selected(NULL, 3, 4), 1);
    ck_assert_int_eq(mtft_peft__layer_selected("0,2-3", 2, 4), 1);
    ck_assert_int_eq(mtft_peft__layer_selected("0,2-3", 1, 4), 0);
    ck_assert_int_eq(mtft_peft__layer_selected("0,2-3", 3, 4), 1);
    ck_assert_int_eq(mtft_peft__layer_selected("0,5", 0, 4), -1);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "0,5"));
    ck_assert_int_eq(mtft_peft__layer_selected("1-x", 0, 4), -1);
}
END_TEST

START_TEST(test_peft_group_rows) {
    int32_t ids[7] = {2, 0, 2, 1, 0, 2, 0}, perm[7], inv[7], off[4];
    ck_assert_int_eq(mtft_peft_group_rows(ids, 7, 3, perm, inv, off), MTFT_OK);
    int32_t eperm[7] = {1, 4, 6, 3, 0, 2, 5}, eoff[4] = {0, 3, 4, 7};
    for (int i = 0; i < 7; i++) ck_assert_int_eq(perm[i], eperm[i]);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(off[i], eoff[i]);
    for (int i = 0; i < 7; i++) ck_assert_int_eq(inv[perm[i]], i);
    ids[3] = 3;
    ck_assert_int_eq(mtft_peft_group_rows(ids, 7, 3, perm, inv, off), MTFT_ERANGE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "row 3"));
}
END_TEST

/* ---- per-part gradients at the tensor level --------------------------------------- */
START_TEST(test_peft_split_linear) {
    /* rows of 3 parts (units of 2 rows each): per-part dW, db from one
     * backward equal separate backwards of each part's rows; linear,
     * linear_t and matmul (shared 2-D b, a folded) */
    enum { U = 5, RPU = 2, IN = 6, OUT = 4 };
    int64_t off[4] = {0, 2, 2, 5};
    for (int kind = 0; kind < 3; kind++) {
        mtft_param_group *pg = NULL;
        ck_assert_int_eq(mtft_param_group_new(&pg, "w"), MTFT_OK);
        int64_t ws[2] = {kind == 0 ? OUT : IN, kind == 0 ? IN : OUT}, bs[1] = {OUT};
        mtft_tensor *w = mtft_param_group_add(pg, "w", 2, ws), *b = mtft_param_group_add(pg, "b", 1, bs);
        ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
        ck_assert_int_eq(mtft_param_group_set_split(pg, 3), MTFT_OK);
        ck_assert_int_eq(mtft_param_group_split_count(pg), 3);
        rand_group(pg, 11, -1.0f, 1.0f);
        float x[U * RPU * IN], dy[U * RPU * OUT];
        mtft_test_fill(x, U * RPU * IN, 5, -1.0f, 1.0f);
        mtft_test_fill(dy, U * RPU * OUT, 6, -1.0f, 1.0f);
        mtft_graph *g = new_graph();
        size_t nf;
        float *ref = NULL;
        for (int pass = 0; pass < 4; pass++) {
            /* pass 0: all rows, split; pass 1..3: part k only */
            mtft_graph_reset(g);
            mtft_param_group_zero_grad(pg);
            int64_t r0 = pass ? off[pass - 1] * RPU : 0, r1 = pass ? off[pass] * RPU : U * RPU;
            if (r1 == r0) continue;
            int64_t part_off[4];
            for (int k = 0; k < 4; k++)
                part_off[k] = pass == 0 ? off[k] : (k <= pass - 1 ? 0 : off[pass] - off[pass - 1]);
            ck_assert_int_eq(mtft_graph_set_row_partition(g, 3, part_off), MTFT_OK);
            int64_t xs[3] = {(r1 - r0) / RPU, RPU, IN};
            mtft_tensor *xt = mtft_from_data(g, 3, xs, x + r0 * IN), *y;
            if (kind == 0) y = mtft_linear(g, xt, w, b);
            else if (kind == 1) y = mtft_linear_t(g, xt, w, b);
            else y = mtft_matmul(g, xt, w, 0, 0);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(mtft_graph_backward(g, y, dy + r0 * OUT), MTFT_OK);
            if (pass == 0) {
                ref = malloc(3 * pg->n_floats * sizeof(float));
                for (int k = 0; k < 3; k++) {
                    const float *part = mtft_param_group_split_grad(pg, k, &nf);
                    ck_assert_ptr_nonnull(part);
                    memcpy(ref + k * pg->n_floats, part, nf * sizeof(float));
                }
                /* the total is the sum of the parts */
                float *tot = mtft_param_group_grad(pg, &nf);
                for (size_t i = 0; i < nf; i++)
                    ck_assert_msg(fabsf(tot[i] - (ref[i] + ref[nf + i] + ref[2 * nf + i])) < 1e-5f,
                                  "kind %d: total[%zu] %g is not the sum of the parts %g", kind, i, (double)tot[i],
                                  (double)(ref[i] + ref[nf + i] + ref[2 * nf + i]));
            } else {
                float *gk = mtft_param_group_grad(pg, &nf);
                mtft_assert_close(ref + (pass - 1) * nf, gk, (int64_t)nf, EQ_RTOL, EQ_ATOL, "split part");
            }
        }
        ck_assert_ptr_nonnull(ref);
        /* part 1 is empty: its block stays zero */
        for (size_t i = 0; i < pg->n_floats; i++) ck_assert_float_eq(ref[pg->n_floats + i], 0.0f);
        free(ref);
        mtft_graph_free(g);
        mtft_param_group_free(pg);
        (void)b;
    }
}
END_TEST

START_TEST(test_peft_split_errors) {
    mtft_model *m = tiny_model(MTFT_ARCH_GPT2, 3);
    mtft_param_group *base = mtft_model_base_group(m);
    ck_assert_int_eq(mtft_param_group_set_trainable(base, 1), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_split(base, 2), MTFT_OK);
    mtft_graph *g = new_graph();
    int32_t ids[8];
    rand_ids(ids, 8, 1);
    float R[2 * 4 * 16];
    mtft_test_fill(R, 2 * 4 * 16, 2, -1.0f, 1.0f);
    /* a norm weight in a split group cannot be split: named */
    int64_t off[3] = {0, 1, 2};
    ck_assert_int_eq(mtft_graph_set_row_partition(g, 2, off), MTFT_OK);
    mtft_tensor *h = mtft_model_hidden(m, g, ids, 2, 4, NULL);
    ck_assert_int_eq(mtft_graph_backward(g, h, R), MTFT_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "ln_f."));
    int64_t bad[3] = {0, 2, 1};
    ck_assert_int_eq(mtft_graph_set_row_partition(g, 2, bad), MTFT_EINVAL);
    /* frozen: no split memory */
    ck_assert_int_eq(mtft_param_group_set_trainable(base, 0), MTFT_OK);
    ck_assert_ptr_null(mtft_param_group_split_grad(base, 0, NULL));
    ck_assert_int_eq(mtft_param_group_set_split(base, 0), MTFT_OK);
    /* a split LoRA group without a row partition, or with a different
     * part count */
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
    mtft_param_group *sg = NULL;
    ck_assert_int_eq(mtft_peft_add_lora(p, MTFT_PEFT_SHARED, NULL, &sg), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_split(sg, 2), MTFT_OK);
    mtft_graph_reset(g);
    h = mtft_model_hidden(m, g, ids, 2, 4, NULL);
    ck_assert_int_eq(mtft_graph_backward(g, h, R), MTFT_ESTATE);
    ck_assert_msg(strstr(mtft_error_last()->message, "row partition") != NULL, "%s", mtft_error_last()->message);
    mtft_graph_reset(g);
    int64_t off3[4] = {0, 1, 1, 2};
    ck_assert_int_eq(mtft_graph_set_row_partition(g, 3, off3), MTFT_OK);
    h = mtft_model_hidden(m, g, ids, 2, 4, NULL);
    ck_assert_int_eq(mtft_graph_backward(g, h, R), MTFT_ESHAPE);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "has 3"));
    mtft_peft_free(p);
    mtft_graph_free(g);
    mtft_model_free(m);
}
END_TEST

/* ---- LoRA ---------------------------------------------------------------------------- */
START_TEST(test_peft_lora_init) {
    mtft_model *m = tiny_model(MTFT_ARCH_GPT2, 1);
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
    mtft_peft *p2 = NULL;
    ck_assert_int_eq(mtft_peft_new(&p2, m, 2), MTFT_ESTATE); /* one per model */
    mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
    o.rank = 4;
    o.alpha = 8.0f;
    o.target_modules = "c_attn|mlp.*";
    o.layers = "1";
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_peft_add_lora(p, 0, &o, &pg), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_count(pg), 6); /* layer 1: c_attn, c_fc, mlp.c_proj x (A, B) */
    mtft_tensor *A = mtft_param_group_find(pg, "1.attn.c_attn.lora_A");
    mtft_tensor *Bt = mtft_param_group_find(pg, "1.mlp.c_proj.lora_B");
    ck_assert_ptr_nonnull(A);
    ck_assert_ptr_nonnull(Bt);
    ck_assert_ptr_null(mtft_param_group_find(pg, "0.attn.c_attn.lora_A"));
    ck_assert_int_eq(mtft_tensor_dim(A, 0), 4);
    ck_assert_int_eq(mtft_tensor_dim(A, 1), 16);
    ck_assert_int_eq(mtft_tensor_dim(Bt, 0), 16);
    ck_assert_int_eq(mtft_tensor_dim(Bt, 1), 4);
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)), spread out; B zero */
    float mx = 0.0f, mn = 0.0f;
    for (int i = 0; i < 64; i++) {
        float v = mtft_tensor_data(A)[i];
        mx = v > mx ? v : mx;
        mn = v < mn ? v : mn;
    }
    ck_assert(mx <= 0.25f && mx > 0.15f && mn >= -0.25f && mn < -0.15f);
    for (int i = 0; i < 64; i++) ck_assert_float_eq(mtft_tensor_data(Bt)[i], 0.0f);
    ck_assert_float_eq(p->lora[0]->scale, 2.0f);
    o.use_rslora = 1;
    ck_assert_int_eq(mtft_peft_add_lora(p, 1, &o, NULL), MTFT_OK);
    ck_assert_float_eq(p->lora[1]->scale, 4.0f); /* 8 / sqrt(4) */
    ck_assert_int_eq(mtft_peft_add_lora(p, 1, &o, NULL), MTFT_ESTATE);
    o.target_modules = "q_proj";
    ck_assert_int_eq(mtft_peft_add_lora(p, MTFT_PEFT_SHARED, &o, NULL), MTFT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "q_proj"));
    o.target_modules = "c_attn";
    o.rank = 0;
    ck_assert_int_eq(mtft_peft_add_lora(p, MTFT_PEFT_SHARED, &o, NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_peft_add_lora(p, 2, NULL, NULL), MTFT_ERANGE);

    /* zero B: the forward equals the base forward, bit for bit */
    int32_t ids[12], off[3] = {0, 2, 3};
    rand_ids(ids, 12, 4);
    float h0[3 * 4 * 16], h1[3 * 4 * 16];
    mtft_graph *g = new_graph();
    mtft_graph_reset(g);
    mtft_peft_free(p);
    run(m, NULL, g, ids, 3, 4, NULL, NULL, h0);
    ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
    o.rank = 4;
    o.use_rslora = 0;
    ck_assert_int_eq(mtft_peft_add_lora(p, 0, &o, NULL), MTFT_OK);
    /* without a batch, per-task modules fail the forward with a message */
    mtft_graph_reset(g);
    ck_assert_ptr_null(mtft_model_hidden(m, g, ids, 3, 4, NULL));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "mtft_peft_set_batch"));
    run(m, p, g, ids, 3, 4, off, NULL, h1);
    ck_assert_int_eq(memcmp(h0, h1, sizeof h0), 0);
    /* a batch of the wrong size */
    mtft_graph_reset(g);
    ck_assert_int_eq(mtft_peft_set_batch(p, g, off), MTFT_OK);
    ck_assert_ptr_null(mtft_model_hidden(m, g, ids, 2, 4, NULL));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "B = 2"));
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}
END_TEST

/* A mixed batch (tasks in any order, grouped with the permutation) gives the
 * hidden states and LoRA gradients of separate single-task batches, and the
 * shared LoRA's per-task gradients (split group) equal the single-task
 * gradients. */
static void mixed_vs_separate(mtft_arch arch, int kind, int rank) {
    enum { K = 3, B = 6, T = 4 };
    mtft_model *m = tiny_model(arch, 7);
    int C = m->cfg.n_embd;
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, K), MTFT_OK);
    mtft_param_group *tg[K] = {0}, *sg = NULL;
    mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
    o.rank = rank;
    o.alpha = 4.0f;
    o.target_modules = arch == MTFT_ARCH_GPT2 ? "*" : "q_proj|v_proj|mlp.*";
    for (int k = 0; k < K; k++) {
        o.seed = (uint64_t)k;
        if (kind == 0) {
            ck_assert_int_eq(mtft_peft_add_lora(p, k, &o, &tg[k]), MTFT_OK);
        } else if (kind == 1) {
            mtft_adapter_options ao = MTFT_ADAPTER_OPTIONS_INIT;
            ao.reduction_factor = 4;
            ao.placement = k == 1 ? MTFT_ADAPTER_PFEIFFER : MTFT_ADAPTER_HOULSBY;
            ao.act = (mtft_peft_act)k;
            ck_assert_int_eq(mtft_peft_add_adapter(p, k, &ao, &tg[k]), MTFT_OK);
        } else {
            ck_assert_int_eq(mtft_peft_add_ia3(p, k, &tg[k]), MTFT_OK);
        }
        rand_group(tg[k], 100 + (uint64_t)k, -0.3f, 0.3f);
        if (kind == 2) rand_group(tg[k], 100 + (uint64_t)k, 0.5f, 1.5f);
    }
    o.seed = 9;
    o.target_modules = arch == MTFT_ARCH_GPT2 ? "c_attn|c_fc" : "k_proj|down_proj";
    ck_assert_int_eq(mtft_peft_add_lora(p, MTFT_PEFT_SHARED, &o, &sg), MTFT_OK);
    rand_group(sg, 200, -0.3f, 0.3f);
    ck_assert_int_eq(mtft_param_group_set_split(sg, K), MTFT_OK);

    int32_t task_ids[B] = {2, 0, 2, 1, 0, 2}, perm[B], off[K + 1];
    ck_assert_int_eq(mtft_peft_group_rows(task_ids, B, K, perm, NULL, off), MTFT_OK);
    int32_t ids0[B * T], ids[B * T];
    rand_ids(ids0, B * T, 33);
    for (int i = 0; i < B; i++) memcpy(ids + i * T, ids0 + perm[i] * T, T * sizeof(int32_t));
    float *R = malloc((size_t)B * T * C * sizeof(float)), *hm = malloc((size_t)B * T * C * sizeof(float)),
          *hs = malloc((size_t)B * T * C * sizeof(float));
    mtft_test_fill(R, (int64_t)B * T * C, 44, -1.0f, 1.0f);
    mtft_graph *g = new_graph();

    /* mixed */
    for (int k = 0; k < K; k++) mtft_param_group_zero_grad(tg[k]);
    mtft_param_group_zero_grad(sg);
    run(m, p, g, ids, B, T, off, R, hm);
    size_t nt[K], ns;
    float *gt[K], *gs[K];
    for (int k = 0; k < K; k++) {
        float *src = mtft_param_group_grad(tg[k], &nt[k]);
        gt[k] = malloc(nt[k] * sizeof(float));
        memcpy(gt[k], src, nt[k] * sizeof(float));
        src = mtft_param_group_split_grad(sg, k, &ns);
        ck_assert_ptr_nonnull(src);
        gs[k] = malloc(ns * sizeof(float));
        memcpy(gs[k], src, ns * sizeof(float));
    }
    /* separate: task k's rows alone */
    for (int k = 0; k < K; k++) {
        int nk = off[k + 1] - off[k];
        for (int j = 0; j < K; j++) mtft_param_group_zero_grad(tg[j]);
        mtft_param_group_zero_grad(sg);
        mtft_graph_reset(g);
        ck_assert_int_eq(mtft_peft_set_task(p, g, k, nk), MTFT_OK);
        mtft_tensor *h = mtft_model_hidden(m, g, ids + off[k] * T, nk, T, NULL);
        ck_assert_ptr_nonnull(h);
        memcpy(hs, mtft_tensor_data(h), (size_t)nk * T * C * sizeof(float));
        ck_assert_int_eq(mtft_graph_backward(g, h, R + (size_t)off[k] * T * C), MTFT_OK);
        mtft_assert_close(hm + (size_t)off[k] * T * C, hs, (int64_t)nk * T * C, EQ_RTOL, EQ_ATOL, "hidden rows");
        mtft_assert_close(gt[k], mtft_param_group_grad(tg[k], NULL), (int64_t)nt[k], EQ_RTOL, EQ_ATOL,
                          "task module gradient");
        mtft_assert_close(gs[k], mtft_param_group_grad(sg, NULL), (int64_t)ns, EQ_RTOL, EQ_ATOL,
                          "shared LoRA per-task gradient");
        /* other tasks' modules got nothing */
        for (int j = 0; j < K; j++) {
            if (j == k) continue;
            size_t nj;
            float *gj = mtft_param_group_grad(tg[j], &nj);
            for (size_t i = 0; i < nj; i++) ck_assert_float_eq(gj[i], 0.0f);
        }
        /* the gradients are not trivially zero */
        double s = 0.0;
        for (size_t i = 0; i < nt[k]; i++) s += fabs(gt[k][i]);
        ck_assert(s > 1e-3);
    }
    for (int k = 0; k < K; k++) {
        free(gt[k]);
        free(gs[k]);
    }
    free(R);
    free(hm);
    free(hs);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}

START_TEST(test_peft_lora_mixed_vs_separate) {
    /* rank 2: the BLAS path (lora_down + lora_add); rank 8: the fused op
     * where the CPU has its AVX-512 kernels */
    for (int rank = 2; rank <= 8; rank += 6) {
        mixed_vs_separate(MTFT_ARCH_GPT2, 0, rank);
        mixed_vs_separate(MTFT_ARCH_LLAMA, 0, rank);
    }
}
END_TEST

START_TEST(test_peft_adapter_ia3_mixed_vs_separate) {
    mixed_vs_separate(MTFT_ARCH_GPT2, 1, 2);
    mixed_vs_separate(MTFT_ARCH_LLAMA, 1, 2);
    mixed_vs_separate(MTFT_ARCH_GPT2, 2, 2);
    mixed_vs_separate(MTFT_ARCH_LLAMA, 2, 2);
}
END_TEST

START_TEST(test_peft_lora_grad) {
    /* rank 2: the BLAS path; rank 8: the fused op (where AVX-512 serves it) */
    for (int arch = 0; arch < 4; arch++) {
        mtft_model *m = tiny_model((mtft_arch)(arch % 2), 5);
        mtft_peft *p = NULL;
        ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
        mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
        o.rank = arch < 2 ? 2 : 8;
        o.alpha = 3.0f;
        o.target_modules = "*";
        mtft_param_group *t0 = NULL, *sh = NULL;
        ck_assert_int_eq(mtft_peft_add_lora(p, 0, &o, &t0), MTFT_OK);
        o.use_rslora = 1;
        ck_assert_int_eq(mtft_peft_add_lora(p, MTFT_PEFT_SHARED, &o, &sh), MTFT_OK);
        rand_group(t0, 1, -0.5f, 0.5f);
        rand_group(sh, 2, -0.5f, 0.5f);
        int32_t ids[12], off[3] = {0, 2, 3};
        rand_ids(ids, 12, 6);
        float R[3 * 4 * 16];
        mtft_test_fill(R, 3 * 4 * 16, 8, -1.0f, 1.0f);
        check_group_grad("lora task 0", m, p, t0, ids, 3, 4, off, R, 4);
        check_group_grad("lora shared", m, p, sh, ids, 3, 4, off, R, 4);
        mtft_peft_free(p);
        mtft_model_free(m);
    }
}
END_TEST

START_TEST(test_peft_lora_dropout) {
    mtft_model *m = tiny_model(MTFT_ARCH_GPT2, 5);
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, 1), MTFT_OK);
    mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
    o.dropout = 0.5f;
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_peft_add_lora(p, 0, &o, &pg), MTFT_OK);
    rand_group(pg, 3, -0.5f, 0.5f);
    int32_t ids[8], off[2] = {0, 2};
    rand_ids(ids, 8, 1);
    float h_train[128], h_eval[128], h_eval2[128];
    mtft_graph *g = new_graph();
    run(m, p, g, ids, 2, 4, off, NULL, h_train);
    mtft_graph_set_training(g, 0);
    run(m, p, g, ids, 2, 4, off, NULL, h_eval);
    /* eval: dropout is the identity -> equals the no-dropout LoRA */
    p->lora[0]->dropout = 0.0f;
    mtft_graph_set_training(g, 1);
    run(m, p, g, ids, 2, 4, off, NULL, h_eval2);
    ck_assert_int_eq(memcmp(h_eval, h_eval2, sizeof h_eval), 0);
    ck_assert_int_ne(memcmp(h_train, h_eval, sizeof h_eval), 0);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}
END_TEST

START_TEST(test_peft_lora_merge) {
    for (int arch = 0; arch < 2; arch++) {
        mtft_model *m = tiny_model((mtft_arch)arch, 9);
        mtft_peft *p = NULL;
        ck_assert_int_eq(mtft_peft_new(&p, m, 1), MTFT_OK);
        mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
        o.rank = 3;
        o.alpha = 5.0f;
        o.target_modules = "*";
        mtft_param_group *pg = NULL;
        ck_assert_int_eq(mtft_peft_add_lora(p, MTFT_PEFT_SHARED, &o, &pg), MTFT_OK);
        rand_group(pg, 4, -0.5f, 0.5f);
        size_t nb;
        float *base = mtft_param_group_data(mtft_model_base_group(m), &nb);
        float *copy = malloc(nb * sizeof(float));
        memcpy(copy, base, nb * sizeof(float));
        int32_t ids[8];
        rand_ids(ids, 8, 2);
        float h0[128], h1[128];
        mtft_graph *g = new_graph();
        run(m, p, g, ids, 2, 4, NULL, NULL, h0);
        ck_assert_int_eq(mtft_peft_lora_unmerge(p, MTFT_PEFT_SHARED), MTFT_ESTATE);
        ck_assert_int_eq(mtft_peft_lora_merge(p, MTFT_PEFT_SHARED), MTFT_OK);
        ck_assert_int_eq(mtft_peft_lora_merge(p, MTFT_PEFT_SHARED), MTFT_ESTATE);
        ck_assert_int_ne(memcmp(base, copy, nb * sizeof(float)), 0);
        run(m, p, g, ids, 2, 4, NULL, NULL, h1);
        mtft_assert_close(h1, h0, 128, 1e-5f, 1e-5f, "merged vs unmerged forward");
        ck_assert_int_eq(mtft_peft_lora_unmerge(p, MTFT_PEFT_SHARED), MTFT_OK);
        ck_assert_int_eq(memcmp(base, copy, nb * sizeof(float)), 0);
        run(m, p, g, ids, 2, 4, NULL, NULL, h1);
        ck_assert_int_eq(memcmp(h0, h1, sizeof h0), 0);
        ck_assert_int_eq(mtft_peft_lora_merge(p, 0), MTFT_ENOTFOUND);
        free(copy);
        mtft_graph_free(g);
        mtft_peft_free(p);
        mtft_model_free(m);
    }
}
END_TEST

static void tmpdir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/mtft_peft_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

static void rm_dir(const char *dir) {
    char path[512];
    const char *files[] = {"adapter_model.safetensors", "adapter_config.json", "group.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

START_TEST(test_peft_lora_save_load) {
    for (int arch = 0; arch < 2; arch++) {
        mtft_model *m = tiny_model((mtft_arch)arch, 9);
        mtft_peft *p = NULL;
        ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
        mtft_lora_options o = MTFT_LORA_OPTIONS_INIT;
        o.rank = 2;
        o.alpha = 6.0f;
        o.use_rslora = 1;
        o.target_modules = arch == 0 ? "c_attn|c_fc" : "q_proj|v_proj";
        o.layers = "1";
        mtft_param_group *pg = NULL, *pg2 = NULL;
        ck_assert_int_eq(mtft_peft_add_lora(p, 0, &o, &pg), MTFT_OK);
        rand_group(pg, 4, -0.5f, 0.5f);
        char dir[64], path[128];
        tmpdir(dir, sizeof dir);
        ck_assert_int_eq(mtft_peft_lora_save(p, 0, dir, "tiny"), MTFT_OK);
        /* PEFT names and config */
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        mtft_safetensors *st = NULL;
        ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
        ck_assert_int_eq(mtft_safetensors_count(st), 4);
        ck_assert_int_ge(mtft_safetensors_find(st, arch == 0 ? "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"
                                                             : "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"),
                         0);
        mtft_safetensors_close(st);
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        FILE *f = fopen(path, "r");
        char text[2048] = "";
        ck_assert_ptr_nonnull(f);
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        size_t w = 0; /* drop whitespace */
        for (size_t i = 0; i < len; i++)
            if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n') text[w++] = text[i];
        text[w] = '\0';
        ck_assert_ptr_nonnull(strstr(text, "\"peft_type\":\"LORA\""));
        ck_assert_ptr_nonnull(strstr(text, "\"r\":2,"));
        ck_assert_ptr_nonnull(strstr(text, "\"lora_alpha\":6,"));
        ck_assert_ptr_nonnull(strstr(text, "\"use_rslora\":true"));
        ck_assert_ptr_nonnull(strstr(text, arch == 0 ? "\"fan_in_fan_out\":true" : "\"fan_in_fan_out\":false"));
        ck_assert_ptr_nonnull(strstr(text, "\"layers_to_transform\":[1]"));
        ck_assert_ptr_nonnull(strstr(text, arch == 0 ? "\"target_modules\":[\"attn.c_attn\",\"mlp.c_fc\"]"
                                                     : "\"target_modules\":[\"self_attn.q_proj\",\"self_attn.v_proj\"]"));
        /* load into task 1: same tensors, same forward */
        ck_assert_int_eq(mtft_peft_lora_load(p, 1, dir, &pg2), MTFT_OK);
        ck_assert_int_eq(mtft_param_group_count(pg2), mtft_param_group_count(pg));
        size_t n1, n2;
        float *d1 = mtft_param_group_data(pg, &n1), *d2 = mtft_param_group_data(pg2, &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
        ck_assert_float_eq(p->lora[1]->scale, p->lora[0]->scale);
        ck_assert_int_eq(mtft_peft_lora_load(p, 1, dir, NULL), MTFT_ESTATE);
        /* a non-LoRA config is refused with file:line:col */
        f = fopen(path, "w");
        fputs("{\n  \"peft_type\": \"IA3\"\n}\n", f);
        fclose(f);
        ck_assert_int_eq(mtft_peft_lora_load(p, MTFT_PEFT_SHARED, dir, NULL), MTFT_EUNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "adapter_config.json:2:3"));
        ck_assert_ptr_null(p->shared);
        /* any group round-trips through mtft_peft_group_save/load */
        snprintf(path, sizeof path, "%s/group.safetensors", dir);
        ck_assert_int_eq(mtft_peft_group_save(pg, path), MTFT_OK);
        rand_group(pg2, 77, -1.0f, 1.0f);
        ck_assert_int_eq(mtft_peft_group_load(pg2, path), MTFT_OK);
        d2 = mtft_param_group_data(pg2, &n2);
        ck_assert_int_eq(memcmp(d1, d2, n1 * sizeof(float)), 0);
        rm_dir(dir);
        mtft_peft_free(p);
        mtft_model_free(m);
    }
}
END_TEST

/* ---- adapters, IA3, Poly, ScaLearn ----------------------------------------------------- */
START_TEST(test_peft_adapter) {
    for (int arch = 0; arch < 2; arch++)
        for (int act = 0; act < 3; act++) {
            mtft_model *m = tiny_model((mtft_arch)arch, 2);
            int32_t ids[12], off[3] = {0, 1, 3};
            rand_ids(ids, 12, 3);
            float h0[192], h1[192], R[192];
            mtft_test_fill(R, 192, 8, -1.0f, 1.0f);
            mtft_graph *g = new_graph();
            run(m, NULL, g, ids, 3, 4, NULL, NULL, h0);
            mtft_peft *p = NULL;
            ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
            mtft_adapter_options o = MTFT_ADAPTER_OPTIONS_INIT;
            o.act = (mtft_peft_act)act;
            o.reduction_factor = 4;
            o.placement = act == 1 ? MTFT_ADAPTER_PFEIFFER : MTFT_ADAPTER_HOULSBY;
            mtft_param_group *pg = NULL;
            ck_assert_int_eq(mtft_peft_add_adapter(p, 1, &o, &pg), MTFT_OK);
            ck_assert_int_eq(mtft_param_group_count(pg), act == 1 ? 8 : 16);
            ck_assert_ptr_nonnull(mtft_param_group_find(pg, "1.mlp.up.weight"));
            ck_assert_int_eq(mtft_tensor_dim(mtft_param_group_find(pg, "1.mlp.down.weight"), 0), 4);
            /* up = 0: exactly the base */
            run(m, p, g, ids, 3, 4, off, NULL, h1);
            ck_assert_int_eq(memcmp(h0, h1, sizeof h0), 0);
            rand_group(pg, 5, -0.5f, 0.5f);
            run(m, p, g, ids, 3, 4, off, NULL, h1);
            /* task 0's row is untouched, task 1's rows change */
            ck_assert_int_eq(memcmp(h0, h1, 64 * sizeof(float)), 0);
            ck_assert_int_ne(memcmp(h0 + 64, h1 + 64, 128 * sizeof(float)), 0);
            check_group_grad("adapter", m, p, pg, ids, 3, 4, off, R, 3);
            o.reduction_factor = 0;
            ck_assert_int_eq(mtft_peft_add_adapter(p, 0, &o, NULL), MTFT_EINVAL);
            mtft_graph_free(g);
            mtft_peft_free(p);
            mtft_model_free(m);
        }
}
END_TEST

START_TEST(test_peft_ia3) {
    for (int arch = 0; arch < 2; arch++) {
        mtft_model *m = tiny_model((mtft_arch)arch, 2);
        int32_t ids[12], off[3] = {0, 2, 3};
        rand_ids(ids, 12, 3);
        float h0[192], h1[192], R[192];
        mtft_test_fill(R, 192, 8, -1.0f, 1.0f);
        mtft_graph *g = new_graph();
        run(m, NULL, g, ids, 3, 4, NULL, NULL, h0);
        mtft_peft *p = NULL;
        ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
        mtft_param_group *pg = NULL;
        ck_assert_int_eq(mtft_peft_add_ia3(p, 0, &pg), MTFT_OK);
        ck_assert_int_eq(mtft_param_group_count(pg), 6);
        ck_assert_int_eq(mtft_tensor_dim(mtft_param_group_find(pg, "0.ia3_ff"), 0), m->cfg.n_ff);
        ck_assert_int_eq(mtft_tensor_dim(mtft_param_group_find(pg, "0.ia3_k"), 0), arch ? 8 : 16);
        run(m, p, g, ids, 3, 4, off, NULL, h1); /* ones: identity */
        mtft_assert_close(h1, h0, 192, 0.0f, 0.0f, "ia3 at init");
        rand_group(pg, 5, 0.5f, 1.5f);
        run(m, p, g, ids, 3, 4, off, NULL, h1);
        ck_assert_int_ne(memcmp(h0, h1, 128 * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(h0 + 128, h1 + 128, 64 * sizeof(float)), 0); /* task 1 row untouched */
        check_group_grad("ia3", m, p, pg, ids, 3, 4, off, R, 4);
        mtft_graph_free(g);
        mtft_peft_free(p);
        mtft_model_free(m);
    }
}
END_TEST

START_TEST(test_peft_poly) {
    for (int routing = 0; routing < 2; routing++) {
        mtft_model *m = tiny_model(routing ? MTFT_ARCH_LLAMA : MTFT_ARCH_GPT2, 2);
        int32_t ids[12], off[4] = {0, 1, 1, 3};
        rand_ids(ids, 12, 3);
        float h0[192], h1[192], R[192];
        mtft_test_fill(R, 192, 8, -1.0f, 1.0f);
        mtft_graph *g = new_graph();
        run(m, NULL, g, ids, 3, 4, NULL, NULL, h0);
        mtft_peft *p = NULL;
        ck_assert_int_eq(mtft_peft_new(&p, m, 3), MTFT_OK);
        mtft_poly_options o = MTFT_POLY_OPTIONS_INIT;
        o.rank = 2;
        o.n_skills = 3;
        o.n_splits = 2;
        o.routing = (mtft_poly_routing)routing;
        o.target_modules = routing ? "q_proj|mlp.up_proj" : "c_attn|mlp.c_proj";
        mtft_param_group *pg = NULL;
        ck_assert_int_eq(mtft_peft_add_poly(p, &o, &pg), MTFT_OK);
        ck_assert_int_eq(mtft_param_group_count(pg), 12);
        mtft_tensor *lg = mtft_param_group_find(pg, routing ? "0.self_attn.q_proj.module_logits" : "0.attn.c_attn.module_logits");
        ck_assert_ptr_nonnull(lg);
        ck_assert_int_eq(mtft_tensor_dim(lg, 0), 3);
        ck_assert_int_eq(mtft_tensor_dim(lg, 1), 6);
        run(m, p, g, ids, 3, 4, off, NULL, h1); /* B = 0 at init */
        ck_assert_int_eq(memcmp(h0, h1, sizeof h0), 0);
        ck_assert_int_eq(mtft_peft_add_poly(p, &o, NULL), MTFT_ESTATE);
        rand_group(pg, 5, -0.5f, 0.5f);
        check_group_grad("poly", m, p, pg, ids, 3, 4, off, R, 4);
        mtft_graph_free(g);
        mtft_peft_free(p);
        mtft_model_free(m);
    }
}
END_TEST

/* With one skill and one split, Poly is a LoRA with scale 1/r and A, B the
 * skill's (A^T stored as [in, r], B as [r, out]). */
START_TEST(test_peft_poly_one_skill_is_lora) {
    mtft_model *m = tiny_model(MTFT_ARCH_GPT2, 2);
    int32_t ids[8], off[2] = {0, 2};
    rand_ids(ids, 8, 3);
    float h0[128], h1[128];
    mtft_graph *g = new_graph();
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, 1), MTFT_OK);
    mtft_poly_options o = MTFT_POLY_OPTIONS_INIT;
    o.rank = 2;
    o.n_skills = 1;
    o.target_modules = "c_fc";
    o.layers = "0";
    mtft_param_group *pg = NULL, *lg = NULL;
    ck_assert_int_eq(mtft_peft_add_poly(p, &o, &pg), MTFT_OK);
    rand_group(pg, 5, -0.5f, 0.5f);
    run(m, p, g, ids, 2, 4, off, NULL, h0);
    mtft_tensor *pa = mtft_param_group_find(pg, "0.mlp.c_fc.poly_lora_A"), *pb = mtft_param_group_find(pg, "0.mlp.c_fc.poly_lora_B");
    int64_t in = 16, out = 32, r = 2;
    float *Ad = malloc(sizeof(float) * (size_t)(in * r)), *Bd = malloc(sizeof(float) * (size_t)(out * r));
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = 0; j < r; j++) Ad[j * in + i] = mtft_tensor_data(pa)[i * r + j];
    for (int64_t j = 0; j < r; j++)
        for (int64_t o2 = 0; o2 < out; o2++) Bd[o2 * r + j] = mtft_tensor_data(pb)[j * out + o2];
    mtft_peft_free(p);
    ck_assert_int_eq(mtft_peft_new(&p, m, 1), MTFT_OK);
    mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
    lo.rank = 2;
    lo.alpha = 1.0f; /* scale 1/2 = 1/r */
    lo.target_modules = "c_fc";
    lo.layers = "0";
    ck_assert_int_eq(mtft_peft_add_lora(p, 0, &lo, &lg), MTFT_OK);
    memcpy(mtft_tensor_data(mtft_param_group_find(lg, "0.mlp.c_fc.lora_A")), Ad, sizeof(float) * (size_t)(in * r));
    memcpy(mtft_tensor_data(mtft_param_group_find(lg, "0.mlp.c_fc.lora_B")), Bd, sizeof(float) * (size_t)(out * r));
    run(m, p, g, ids, 2, 4, off, NULL, h1);
    mtft_assert_close(h1, h0, 128, 1e-5f, 1e-6f, "poly with one skill vs lora");
    free(Ad);
    free(Bd);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}
END_TEST

START_TEST(test_peft_scalearn) {
    mtft_model *m = tiny_model(MTFT_ARCH_GPT2, 2);
    int32_t ids[12], off[4] = {0, 1, 1, 3};
    rand_ids(ids, 12, 3);
    float h0[192], h1[192], R[192];
    mtft_test_fill(R, 192, 8, -1.0f, 1.0f);
    mtft_graph *g = new_graph();
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, 3), MTFT_OK);
    mtft_adapter_options ao = MTFT_ADAPTER_OPTIONS_INIT;
    ao.reduction_factor = 4;
    mtft_param_group *a0 = NULL, *a1 = NULL, *sg = NULL;
    ck_assert_int_eq(mtft_peft_add_adapter(p, 0, &ao, &a0), MTFT_OK);
    ck_assert_int_eq(mtft_peft_add_adapter(p, 1, &ao, &a1), MTFT_OK);
    rand_group(a0, 5, -0.5f, 0.5f);
    rand_group(a1, 6, -0.5f, 0.5f);
    int src[2] = {0, 1}, bad[1] = {2};
    ck_assert_int_eq(mtft_peft_add_scalearn(p, 2, bad, 1, NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_peft_add_scalearn(p, 0, src + 1, 1, NULL), MTFT_ESTATE);
    ck_assert_int_eq(mtft_peft_add_scalearn(p, 2, src, 2, &sg), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_count(sg), 4);
    ck_assert_int_eq(mtft_peft_add_adapter(p, 2, &ao, NULL), MTFT_ESTATE);
    /* weights (1, 0): task 2's rows equal task 0's adapter on them */
    for (int i = 0; i < 4; i++) {
        float *d = mtft_tensor_data(mtft_param_group_tensor(sg, i));
        for (int c = 0; c < 16; c++) {
            d[c] = 1.0f;
            d[16 + c] = 0.0f;
        }
    }
    run(m, p, g, ids, 3, 4, off, NULL, h0);
    int32_t off0[4] = {0, 3, 3, 3};
    run(m, p, g, ids, 3, 4, off0, NULL, h1);
    mtft_assert_close(h0 + 64, h1 + 64, 128, 1e-6f, 1e-6f, "scalearn (1, 0) vs source adapter 0");
    rand_group(sg, 9, 0.0f, 1.0f);
    check_group_grad("scalearn", m, p, sg, ids, 3, 4, off, R, 4);
    /* sources' gradients flow too (when trainable) */
    check_group_grad("scalearn source", m, p, a1, ids, 3, 4, off, R, 2);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}
END_TEST

static mtft_tensor *fn_poly_mix(mtft_graph *g, mtft_tensor **in, void *ctx) {
    mtft_graph_set_training(g, *(int *)ctx);
    return mtft_peft__poly_mix(g, in[0], 1, in[1], MTFT_POLY_SIGMOID);
}

START_TEST(test_peft_poly_mix_op) {
    /* the mixing op alone, through mtft_gradcheck on its skills input */
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "poly"), MTFT_OK);
    int64_t sl[2] = {2, 6};
    mtft_tensor *lg = mtft_param_group_add(pg, "logits", 2, sl);
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    mtft_test_fill(mtft_tensor_data(lg), 12, 3, -2.0f, 2.0f);
    mtft_graph *g = new_graph();
    int64_t ss[3] = {2, 3, 5};
    float sk[30];
    mtft_test_fill(sk, 30, 4, -1.0f, 1.0f);
    /* out[s] = sum_q w[s,q] skills[s,q] with w = a / (sum a + 1e-12): in
     * eval mode a = sigmoid(l) (PEFT's router in eval), while training
     * a = sigmoid(l + log u - log(1 - u)), a relaxed Bernoulli sample
     * (PEFT's router in training), u from the graph's stream of that call */
    for (int training = 0; training < 2; training++) {
        mtft_graph_reset(g);
        mtft_graph_set_training(g, training);
        const uint64_t stream = mtft__graph_stream(g); /* the stream the op's call will get after a reset */
        mtft_graph_reset(g);
        mtft_tensor *skt = mtft_from_data(g, 3, ss, sk);
        mtft_tensor *o = mtft_peft__poly_mix(g, lg, 1, skt, MTFT_POLY_SIGMOID);
        ck_assert_ptr_nonnull(o);
        for (int s = 0; s < 2; s++) {
            double a[3], z = 1e-12;
            for (int q = 0; q < 3; q++) {
                double noise = 0.0;
                if (training) {
                    double u = mtft_rng_hash_uniform(stream, (uint64_t)(s * 3 + q));
                    u = u < 1.1920929e-7 ? 1.1920929e-7 : u > 1.0 - 1.1920929e-7 ? 1.0 - 1.1920929e-7 : u;
                    noise = log(u) - log(1.0 - u);
                }
                a[q] = 1.0 / (1.0 + exp(-((double)mtft_tensor_data(lg)[6 + s * 3 + q] + noise)));
                z += a[q];
            }
            for (int i = 0; i < 5; i++) {
                double e = 0.0;
                for (int q = 0; q < 3; q++) e += a[q] / z * sk[(s * 3 + q) * 5 + i];
                ck_assert_double_eq_tol(mtft_tensor_data(o)[s * 5 + i], e, 1e-6);
            }
        }
        /* the gradients of logits and skills through the sampled routing */
        int64_t sl2[2] = {2, 6};
        float lgd[12];
        memcpy(lgd, mtft_tensor_data(lg), sizeof lgd);
        mtft_gradcheck_input in[2] = {{2, {sl2[0], sl2[1]}, lgd, 1}, {3, {ss[0], ss[1], ss[2]}, sk, 1}};
        mtft_gradcheck(training ? "poly_mix (training)" : "poly_mix (eval)", fn_poly_mix, &training, in, 2, 1e-2f,
                       3e-4f, 3e-3f, 0);
    }
    mtft_tensor *skt = mtft_from_data(g, 3, ss, sk);
    ck_assert_ptr_null(mtft_peft__poly_mix(g, lg, 2, skt, MTFT_POLY_SIGMOID));
    ck_assert_int_eq(mtft_error_last()->code, MTFT_ESHAPE);
    mtft_graph_free(g);
    mtft_param_group_free(pg);
}
END_TEST

/* ---- the fused LoRA op ----------------------------------------------------------- */

/* Three LoRAs in one group on a batch of U units (RPU rows each): entry 0
 * on units [1, 3), entry 1 on all units (disjoint: on unit 0 only), entry 2
 * on [3, U) (so the first entry, which stores a fresh dx, covers only some
 * rows; disjoint entries run as one wave); y0 + the LoRAs
 * through the fused op (fused = 1) or through lora_down + lora_add (the
 * BLAS path, fused = 0). With split, the group's gradient is split in 3
 * parts at units {0, 1, 3, U}. Outputs: y, dx and the gradient blocks
 * (3 parts back to back when split, else the total). */
typedef struct lf_case {
    int64_t U, RPU, I, O, R;
    int split;
    int disjoint; /* entry 1 on unit 0 only: the three entries are disjoint (one wave) */
} lf_case;

static size_t lf_run(const lf_case *c, int fused, float *y_out, float *dx_out, float *g_out) {
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "lf"), MTFT_OK);
    mtft_tensor *A[3], *B[3];
    for (int e = 0; e < 3; e++) {
        char na[8], nb[8];
        snprintf(na, sizeof na, "A%d", e);
        snprintf(nb, sizeof nb, "B%d", e);
        int64_t sa[2] = {c->R, c->I}, sb[2] = {c->O, c->R};
        A[e] = mtft_param_group_add(pg, na, 2, sa);
        B[e] = mtft_param_group_add(pg, nb, 2, sb);
    }
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_trainable(pg, 1), MTFT_OK);
    if (c->split) ck_assert_int_eq(mtft_param_group_set_split(pg, 3), MTFT_OK);
    rand_group(pg, 21, -0.5f, 0.5f);
    mtft_graph *g = new_graph();
    int64_t part[4] = {0, 1, 3, c->U};
    if (c->split) ck_assert_int_eq(mtft_graph_set_row_partition(g, 3, part), MTFT_OK);
    const int64_t N = c->U * c->RPU;
    float *xd = malloc((size_t)(N * c->I) * sizeof(float)), *yd = malloc((size_t)(N * c->O) * sizeof(float));
    float *dy = malloc((size_t)(N * c->O) * sizeof(float));
    mtft_test_fill(xd, N * c->I, 31, -1.0f, 1.0f);
    mtft_test_fill(yd, N * c->O, 32, -1.0f, 1.0f);
    mtft_test_fill(dy, N * c->O, 33, -1.0f, 1.0f);
    int64_t sx[3] = {c->U, c->RPU, c->I}, sy[3] = {c->U, c->RPU, c->O};
    mtft_tensor *x = mtft_from_data(g, 3, sx, xd), *y0 = mtft_from_data(g, 3, sy, yd), *y;
    ck_assert_int_eq(mtft_tensor_set_requires_grad(g, x, 1), MTFT_OK);
    int64_t u0[3] = {1, 0, 3}, nu[3] = {2, c->disjoint ? 1 : c->U, c->U - 3};
    float sc[3] = {2.0f, 0.5f, 1.25f};
    if (fused) {
        y = mtft_peft__lora_fused(g, x, y0, 3, A, B, u0, nu, sc);
    } else {
        mtft_tensor *h[3];
        int wt[3] = {1, 1, 1};
        for (int e = 0; e < 3; e++) h[e] = mtft_peft__lora_down(g, x, A[e], u0[e], nu[e]);
        y = mtft_peft__lora_add(g, y0, 3, h, B, u0, nu, sc, wt);
    }
    if (!y) ck_abort_msg("lora forward failed: %s", mtft_error_last()->message);
    memcpy(y_out, mtft_tensor_data(y), (size_t)(N * c->O) * sizeof(float));
    ck_assert_int_eq(mtft_graph_backward(g, y, dy), MTFT_OK);
    memcpy(dx_out, mtft_tensor_grad(x), (size_t)(N * c->I) * sizeof(float));
    size_t nf = 0;
    if (c->split) {
        for (int k = 0; k < 3; k++) {
            const float *gk = mtft_param_group_split_grad(pg, k, &nf);
            ck_assert_ptr_nonnull(gk);
            memcpy(g_out + (size_t)k * nf, gk, nf * sizeof(float));
        }
        nf *= 3;
    } else {
        const float *gt = mtft_param_group_grad(pg, &nf);
        ck_assert_ptr_nonnull(gt);
        memcpy(g_out, gt, nf * sizeof(float));
    }
    free(xd);
    free(yd);
    free(dy);
    mtft_graph_free(g);
    mtft_param_group_free(pg);
    return nf;
}

START_TEST(test_peft_lora_fused_vs_blas) {
    /* the fused op equals the BLAS path (forward, dx, dA and dB, per part
     * when split), with its AVX-512 kernels (R 8, 16 where the CPU has
     * them) and its portable ones (R 3, and any R when forced); I and O
     * not multiples of 16 exercise the tails. Large enough (N (I+O) R >
     * 131072) that the kernels run on several threads: the result has the
     * same bits on 1 and 2 threads. Tolerance 2e-5 + 1e-4 |ref| (different
     * summation order and FMA). */
    const lf_case cases[] = {
        {4, 3, 21, 37, 8, 1, 0},     {4, 3, 21, 37, 3, 0, 0},      {5, 2, 48, 80, 16, 1, 0},
        {5, 40, 101, 300, 8, 1, 0}, {5, 40, 101, 300, 3, 0, 0}, {6, 24, 64, 256, 8, 0, 0},
        {5, 40, 101, 300, 8, 1, 1}, {6, 24, 64, 256, 3, 0, 1},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const lf_case *c = &cases[ci];
        const int64_t N = c->U * c->RPU, ny = N * c->O, nx = N * c->I, ngr = 3 * 3 * c->R * (c->I + c->O) + 3 * 64;
        float *y[4], *dx[4], *gr[4];
        size_t nf[4];
        for (int v = 0; v < 4; v++) {
            y[v] = malloc((size_t)ny * sizeof(float));
            dx[v] = malloc((size_t)nx * sizeof(float));
            gr[v] = calloc((size_t)ngr, sizeof(float));
        }
        /* 0: BLAS reference; 1: fused; 2: fused, portable kernels; 3: fused, 1 thread */
        nf[0] = lf_run(c, 0, y[0], dx[0], gr[0]);
        nf[1] = lf_run(c, 1, y[1], dx[1], gr[1]);
        mtft_peft__lora_force_generic(1);
        nf[2] = lf_run(c, 1, y[2], dx[2], gr[2]);
        mtft_peft__lora_force_generic(0);
        int nt = mtft_get_num_threads();
        mtft_set_num_threads(1);
        nf[3] = lf_run(c, 1, y[3], dx[3], gr[3]);
        mtft_set_num_threads(nt);
        for (int v = 1; v < 3; v++) {
            char what[96];
            ck_assert_uint_eq(nf[v], nf[0]);
            snprintf(what, sizeof what, "case %zu (R %lld) %s: y", ci, (long long)c->R, v == 1 ? "fused" : "portable");
            mtft_assert_close(y[v], y[0], ny, 1e-4f, 2e-5f, what);
            snprintf(what, sizeof what, "case %zu (R %lld) %s: dx", ci, (long long)c->R, v == 1 ? "fused" : "portable");
            mtft_assert_close(dx[v], dx[0], nx, 1e-4f, 2e-5f, what);
            snprintf(what, sizeof what, "case %zu (R %lld) %s: dA, dB", ci, (long long)c->R,
                     v == 1 ? "fused" : "portable");
            mtft_assert_close(gr[v], gr[0], (int64_t)nf[0], 1e-4f, 2e-5f, what);
        }
        /* the gradients are not all zero (a test that can fail) */
        double gs = 0.0;
        for (size_t i = 0; i < nf[0]; i++) gs += fabs(gr[1][i]);
        ck_assert_double_gt(gs, 1.0);
        ck_assert_msg(memcmp(y[1], y[3], (size_t)ny * sizeof(float)) == 0 &&
                          memcmp(dx[1], dx[3], (size_t)nx * sizeof(float)) == 0 &&
                          memcmp(gr[1], gr[3], nf[0] * sizeof(float)) == 0,
                      "case %zu: the fused op gives other bits on 1 thread than on %d", ci, nt);
        for (int v = 0; v < 4; v++) {
            free(y[v]);
            free(dx[v]);
            free(gr[v]);
        }
    }
}
END_TEST

/* Gradients split over 70 parts (more than one per task is ever needed in
 * practice, but the op must take any count): one LoRA on all rows, fused
 * vs the BLAS path, every part's block; 2e-5 + 1e-4 |ref|. */
static void lf_many_parts(int fused, float *out, size_t *nf_out) {
    enum { P = 70, RPU = 2, I = 16, O = 24, R = 8 };
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "lf"), MTFT_OK);
    int64_t sa[2] = {R, I}, sb[2] = {O, R};
    mtft_tensor *A = mtft_param_group_add(pg, "A", 2, sa), *B = mtft_param_group_add(pg, "B", 2, sb);
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_trainable(pg, 1), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_split(pg, P), MTFT_OK);
    rand_group(pg, 51, -0.5f, 0.5f);
    mtft_graph *g = new_graph();
    int64_t part[P + 1];
    for (int k = 0; k <= P; k++) part[k] = k;
    ck_assert_int_eq(mtft_graph_set_row_partition(g, P, part), MTFT_OK);
    float *xd = malloc(P * RPU * I * sizeof(float)), *yd = malloc(P * RPU * O * sizeof(float));
    float *dy = malloc(P * RPU * O * sizeof(float));
    mtft_test_fill(xd, P * RPU * I, 52, -1.0f, 1.0f);
    mtft_test_fill(yd, P * RPU * O, 53, -1.0f, 1.0f);
    mtft_test_fill(dy, P * RPU * O, 54, -1.0f, 1.0f);
    int64_t sx[3] = {P, RPU, I}, sy[3] = {P, RPU, O}, u0 = 0, nu = P;
    float sc = 0.75f;
    mtft_tensor *x = mtft_from_data(g, 3, sx, xd), *y = mtft_from_data(g, 3, sy, yd);
    if (fused) {
        y = mtft_peft__lora_fused(g, x, y, 1, &A, &B, &u0, &nu, &sc);
    } else {
        int wt = 1;
        mtft_tensor *h = mtft_peft__lora_down(g, x, A, u0, nu);
        y = mtft_peft__lora_add(g, y, 1, &h, &B, &u0, &nu, &sc, &wt);
    }
    if (!y) ck_abort_msg("lora forward failed: %s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_graph_backward(g, y, dy), MTFT_OK);
    size_t nf = 0;
    for (int k = 0; k < P; k++) {
        const float *gk = mtft_param_group_split_grad(pg, k, &nf);
        ck_assert_ptr_nonnull(gk);
        memcpy(out + (size_t)k * nf, gk, nf * sizeof(float));
    }
    *nf_out = nf * P;
    free(xd);
    free(yd);
    free(dy);
    mtft_graph_free(g);
    mtft_param_group_free(pg);
}

START_TEST(test_peft_lora_fused_many_parts) {
    float *a = calloc(70 * 512, sizeof(float)), *b = calloc(70 * 512, sizeof(float));
    size_t na = 0, nb = 0;
    lf_many_parts(1, a, &na);
    lf_many_parts(0, b, &nb);
    ck_assert_uint_eq(na, nb);
    mtft_assert_close(a, b, (int64_t)na, 1e-4f, 2e-5f, "70 parts: per-part dA, dB");
    double sum = 0.0;
    for (size_t i = 0; i < na; i++) sum += fabs(b[i]);
    ck_assert_double_gt(sum, 1.0);
    free(a);
    free(b);
}
END_TEST

typedef struct lf_gc {
    int64_t U, RPU, I, O;
    const float *y0;
} lf_gc;

static mtft_tensor *lf_gc_fn(mtft_graph *g, mtft_tensor **in, void *ctx) {
    const lf_gc *c = ctx;
    int64_t sy[3] = {c->U, c->RPU, c->O}, u0 = 1, nu = c->U - 1;
    float sc = 1.5f;
    mtft_tensor *y = mtft_from_data(g, 3, sy, c->y0);
    return mtft_peft__lora_fused(g, in[0], y, 1, &in[1], &in[2], &u0, &nu, &sc);
}

START_TEST(test_peft_lora_fused_grad) {
    /* finite differences through the fused op alone: x, A and B, entry on
     * units [1, U) (rows of unit 0 untouched), R 8 (AVX-512 kernels where
     * available) and R 3 (portable); eps 3e-3, |a - n| <= 2e-3 + 2e-2 |n| */
    const int64_t ranks[2] = {8, 3};
    for (int ri = 0; ri < 2; ri++) {
        const int64_t U = 3, RPU = 2, I = 19, O = 35, R = ranks[ri];
        float x[3 * 2 * 19], A[8 * 19], B[35 * 8], y0[3 * 2 * 35];
        mtft_test_fill(x, U * RPU * I, 41, -1.0f, 1.0f);
        mtft_test_fill(A, R * I, 42, -0.5f, 0.5f);
        mtft_test_fill(B, O * R, 43, -0.5f, 0.5f);
        mtft_test_fill(y0, U * RPU * O, 44, -1.0f, 1.0f);
        lf_gc c = {U, RPU, I, O, y0};
        mtft_gradcheck_input in[3] = {{3, {U, RPU, I, 1}, x, 1}, {2, {R, I, 1, 1}, A, 1}, {2, {O, R, 1, 1}, B, 1}};
        mtft_gradcheck_result r = mtft_gradcheck("lora_fused", lf_gc_fn, &c, in, 3, 3e-3f, 2e-3f, 2e-2f, 0);
        ck_assert_int_gt(r.checked, 0);
    }
}
END_TEST

Suite *mtft_test_peft_suite(void) {
    Suite *s = suite_create("peft");
    TCase *api = tcase_create("api");
    tcase_add_test(api, test_peft_match);
    tcase_add_test(api, test_peft_group_rows);
    tcase_add_test(api, test_peft_split_linear);
    tcase_add_test(api, test_peft_split_errors);
    tcase_add_test(api, test_peft_lora_init);
    tcase_add_test(api, test_peft_lora_merge);
    tcase_add_test(api, test_peft_lora_save_load);
    tcase_add_test(api, test_peft_lora_dropout);
    tcase_add_test(api, test_peft_poly_mix_op);
    tcase_add_test(api, test_peft_poly_one_skill_is_lora);
    tcase_add_test(api, test_peft_lora_fused_vs_blas);
    tcase_add_test(api, test_peft_lora_fused_many_parts);
    suite_add_tcase(s, api);
    TCase *mixed = tcase_create("mixed");
    tcase_set_timeout(mixed, 120);
    tcase_add_test(mixed, test_peft_lora_mixed_vs_separate);
    tcase_add_test(mixed, test_peft_adapter_ia3_mixed_vs_separate);
    suite_add_tcase(s, mixed);
    TCase *grad = tcase_create("grad");
    tcase_set_timeout(grad, 300);
    tcase_add_test(grad, test_peft_lora_grad);
    tcase_add_test(grad, test_peft_adapter);
    tcase_add_test(grad, test_peft_ia3);
    tcase_add_test(grad, test_peft_poly);
    tcase_add_test(grad, test_peft_scalearn);
    tcase_add_test(grad, test_peft_lora_fused_grad);
    suite_add_tcase(s, grad);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_peft_suite()); }
