/* ctest-labels: unit */
/* The public KV cache (mtft_kv_cache_*, mtft_model_hidden_cached): a prompt
 * then single tokens through the cache give the same hidden states as the
 * full forward over the whole sequence, for GPT-2 and LLaMA (GQA), with a
 * per-task LoRA active (the projection hooks apply on the cached path, so
 * generation with a task's adapter is exact); errors leave the cache as it
 * was. Tolerance: 2e-5 absolute + 1e-4 relative (different summation
 * order in the cached attention). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/model.h"
#include "mtft/peft.h"
#include "mtft_test.h"

static mtft_model_config tiny(mtft_arch arch) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.arch = arch;
    c.vocab_size = 50;
    c.n_ctx = 12;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = arch == MTFT_ARCH_LLAMA ? 2 : 4;
    c.n_ff = 64;
    c.tie_embeddings = arch == MTFT_ARCH_GPT2;
    return c;
}

static mtft_graph *eval_graph(void) {
    mtft_graph *g = NULL;
    mtft_graph_options o = MTFT_GRAPH_OPTIONS_INIT;
    o.arena_bytes = (size_t)4 << 20;
    ck_assert_int_eq(mtft_graph_new(&g, &o), MTFT_OK);
    mtft_graph_set_grad_enabled(g, 0);
    mtft_graph_set_training(g, 0);
    return g;
}

/* A model with two task LoRAs whose B matrices are random (PEFT starts
 * them at zero, which would hide a LoRA missing from the cached path). */
static void setup(mtft_arch arch, mtft_model **m, mtft_peft **p) {
    mtft_model_config c = tiny(arch);
    ck_assert_int_eq(mtft_model_new(m, &c, 11), MTFT_OK);
    ck_assert_int_eq(mtft_peft_new(p, *m, 2), MTFT_OK);
    for (int k = 0; k < 2; k++) {
        mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
        lo.rank = 4;
        lo.alpha = 8.0f;
        lo.seed = 100 + (uint64_t)k;
        lo.target_modules = arch == MTFT_ARCH_LLAMA ? "q_proj|v_proj|down_proj" : "attn.c_attn|mlp.c_proj";
        mtft_param_group *pg = NULL;
        ck_assert_msg(mtft_peft_add_lora(*p, k, &lo, &pg) == MTFT_OK, "%s", mtft_error_last()->message);
        size_t n = 0;
        float *d = mtft_param_group_data(pg, &n);
        ck_assert_ptr_nonnull(d);
        for (size_t j = 0; j < n; j++) d[j] = 0.3f * sinf(0.7f * (float)j + (float)k);
    }
}

static void check_arch(mtft_arch arch) {
    mtft_model *m = NULL;
    mtft_peft *p = NULL;
    setup(arch, &m, &p);
    const int32_t ids[9] = {3, 17, 42, 8, 8, 29, 1, 49, 12};
    const int N = 9, P = 4;
    mtft_graph *g = eval_graph();
    float full[2][9 * 32];
    for (int k = 0; k < 2; k++) {
        mtft_graph_reset(g);
        ck_assert_int_eq(mtft_peft_set_task(p, g, k, 1), MTFT_OK);
        mtft_tensor *h = mtft_model_hidden(m, g, ids, 1, N, NULL);
        ck_assert_msg(h != NULL, "%s", mtft_error_last()->message);
        memcpy(full[k], mtft_tensor_data(h), sizeof full[k]);
    }
    double task_gap = 0;
    for (int j = 0; j < N * 32; j++) task_gap = fmax(task_gap, fabs((double)full[0][j] - (double)full[1][j]));
    ck_assert_msg(task_gap > 1e-2, "the two task LoRAs give the same hidden states (%g)", task_gap);
    mtft_kv_cache *kv = NULL;
    ck_assert_int_eq(mtft_kv_cache_new(&kv, m, 10), MTFT_OK);
    for (int k = 0; k < 2; k++) {
        mtft_kv_cache_reset(kv);
        ck_assert_int_eq(mtft_kv_cache_len(kv), 0);
        int pos = 0;
        while (pos < N) {
            const int n = pos == 0 ? P : 1;
            mtft_graph_reset(g);
            ck_assert_int_eq(mtft_peft_set_task(p, g, k, 1), MTFT_OK);
            mtft_tensor *h = mtft_model_hidden_cached(m, g, kv, ids + pos, n);
            ck_assert_msg(h != NULL, "%s", mtft_error_last()->message);
            ck_assert_int_eq(mtft_tensor_ndim(h), 3);
            ck_assert_int_eq(mtft_tensor_dim(h, 1), n);
            const float *d = mtft_tensor_data(h);
            for (int t = 0; t < n; t++)
                for (int c = 0; c < 32; c++) {
                    const double want = full[k][(pos + t) * 32 + c], got = d[t * 32 + c];
                    ck_assert_msg(fabs(got - want) <= 2e-5 + 1e-4 * fabs(want), "arch %d task %d pos %d ch %d: %.8g vs %.8g",
                                  (int)arch, k, pos + t, c, got, want);
                }
            pos += n;
            ck_assert_int_eq(mtft_kv_cache_len(kv), pos);
        }
    }
    /* errors: beyond the capacity (10), a gradient-recording graph, bad ids;
     * the cache keeps its length */
    mtft_graph_reset(g);
    ck_assert_ptr_null(mtft_model_hidden_cached(m, g, kv, ids, 2));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ERANGE);
    ck_assert_int_eq(mtft_kv_cache_len(kv), N);
    mtft_graph_reset(g);
    const int32_t bad = 50;
    ck_assert_ptr_null(mtft_model_hidden_cached(m, g, kv, &bad, 1));
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "ids[0] = 50"));
    ck_assert_int_eq(mtft_kv_cache_len(kv), N);
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, 1);
    ck_assert_ptr_null(mtft_model_hidden_cached(m, g, kv, ids, 1));
    ck_assert_int_eq(mtft_graph_status(g), MTFT_ESTATE);
    mtft_kv_cache *kv2 = NULL;
    ck_assert_int_eq(mtft_kv_cache_new(&kv2, m, 13), MTFT_ERANGE); /* > n_ctx */
    ck_assert_int_eq(mtft_kv_cache_new(&kv2, m, 0), MTFT_ERANGE);
    ck_assert_ptr_null(kv2);
    mtft_kv_cache_free(kv);
    mtft_kv_cache_free(NULL);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}

START_TEST(test_kv_cache_gpt2) { check_arch(MTFT_ARCH_GPT2); }
END_TEST

START_TEST(test_kv_cache_llama) { check_arch(MTFT_ARCH_LLAMA); }
END_TEST

START_TEST(test_kv_cache_bidirectional_refused) {
    mtft_model_config c = tiny(MTFT_ARCH_GPT2);
    c.causal = 0;
    mtft_model *m = NULL;
    ck_assert_int_eq(mtft_model_new(&m, &c, 1), MTFT_OK);
    mtft_kv_cache *kv = NULL;
    ck_assert_int_eq(mtft_kv_cache_new(&kv, m, 4), MTFT_EUNSUPPORTED);
    ck_assert_ptr_null(kv);
    mtft_model_free(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("kv_cache");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_kv_cache_gpt2);
    tcase_add_test(tc, test_kv_cache_llama);
    tcase_add_test(tc, test_kv_cache_bidirectional_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(suite()); }
