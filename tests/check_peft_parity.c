/* ctest-labels: parity */
/* ctest-timeout: 300 */
/* PEFT parity with PyTorch (tools/gen_peft_fixtures.py): a tiny GPT-2 with
 * two task LoRAs (on attn.c_attn and mlp.c_fc) saved in PEFT's format load
 * into mtft; a mixed batch (rows of both tasks, not grouped) in one forward
 * and one backward gives each task's loss and every LoRA gradient of the
 * PyTorch reference. Our own save of the loaded adapters reproduces PEFT's
 * names, shapes and values. Tolerance: |got - ref| <= 1e-4 + 1e-3 |ref|.
 * Exits 77 (skip) when the fixture is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mtft/io.h"
#include "mtft/peft.h"
#include "mtft_test.h"

#define PAR_RTOL 1e-3f
#define PAR_ATOL 1e-4f

static char g_dir[1024];

static void fixture(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", g_dir, rel); }

START_TEST(test_peft_parity_mixed_batch) {
    char path[1200];
    mtft_model *m = NULL;
    fixture(path, sizeof path, "gpt2");
    ck_assert_int_eq(mtft_model_load_hf(&m, path), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_set_trainable(mtft_model_base_group(m), 0), MTFT_OK);
    mtft_peft *p = NULL;
    ck_assert_int_eq(mtft_peft_new(&p, m, 2), MTFT_OK);
    mtft_param_group *pg[2] = {0};
    for (int k = 0; k < 2; k++) {
        char d[1200];
        snprintf(d, sizeof d, "%s/task%d", g_dir, k);
        if (mtft_peft_lora_load(p, k, d, &pg[k]) != MTFT_OK) ck_abort_msg("%s", mtft_error_last()->message);
        ck_assert_int_eq(mtft_param_group_count(pg[k]), 8);
    }
    mtft_safetensors *ref = NULL;
    fixture(path, sizeof path, "ref.safetensors");
    ck_assert_int_eq(mtft_safetensors_open(&ref, path), MTFT_OK);
    enum { B = 4, T = 8, V = 64 };
    float idsf[B * T], taskf[B], tgtf[B * T], loss_ref[2];
    int64_t s_bt[2] = {B, T}, s_b[1] = {B}, s_1[1] = {1};
    ck_assert_int_eq(mtft_safetensors_read_f32(ref, "ids", idsf, 2, s_bt), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(ref, "task_ids", taskf, 1, s_b), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(ref, "targets", tgtf, 2, s_bt), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(ref, "loss0", &loss_ref[0], 1, s_1), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(ref, "loss1", &loss_ref[1], 1, s_1), MTFT_OK);

    /* group the rows by task */
    int32_t task[B], perm[B], off[3], ids[B * T], tgt[B * T];
    for (int b = 0; b < B; b++) task[b] = (int32_t)taskf[b];
    ck_assert_int_eq(mtft_peft_group_rows(task, B, 2, perm, NULL, off), MTFT_OK);
    for (int i = 0; i < B; i++)
        for (int t = 0; t < T; t++) {
            ids[i * T + t] = (int32_t)idsf[perm[i] * T + t];
            tgt[i * T + t] = (int32_t)tgtf[perm[i] * T + t];
        }

    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_peft_set_batch(p, g, off), MTFT_OK);
    mtft_tensor *h = mtft_model_hidden(m, g, ids, B, T, NULL);
    mtft_tensor *logits = mtft_model_logits(m, g, h);
    mtft_tensor *loss[2], *total = NULL;
    for (int k = 0; k < 2; k++) {
        mtft_tensor *lk = mtft_slice(g, logits, 0, off[k], off[k + 1] - off[k]);
        loss[k] = mtft_cross_entropy(g, lk, tgt + off[k] * T, -100, 0.0f);
        ck_assert_ptr_nonnull(loss[k]);
        total = total ? mtft_add(g, total, loss[k]) : loss[k];
    }
    ck_assert_int_eq(mtft_graph_backward(g, total, NULL), MTFT_OK);
    for (int k = 0; k < 2; k++)
        mtft_assert_close(mtft_tensor_data(loss[k]), &loss_ref[k], 1, PAR_RTOL, PAR_ATOL, k ? "loss task1" : "loss task0");

    /* every LoRA gradient */
    int checked = 0;
    for (int k = 0; k < 2; k++)
        for (int l = 0; l < 2; l++)
            for (int mi = 0; mi < 2; mi++)
                for (int ab = 0; ab < 2; ab++) {
                    const char *mod = mi ? "mlp.c_fc" : "attn.c_attn";
                    char ours[64], theirs[160];
                    snprintf(ours, sizeof ours, "%d.%s.lora_%s", l, mod, ab ? "B" : "A");
                    snprintf(theirs, sizeof theirs, "grad.task%d.base_model.model.transformer.h.%d.%s.lora_%s.weight",
                             k, l, mod, ab ? "B" : "A");
                    mtft_tensor *t = mtft_param_group_find(pg[k], ours);
                    ck_assert_ptr_nonnull(t);
                    int64_t shp[2] = {mtft_tensor_dim(t, 0), mtft_tensor_dim(t, 1)};
                    float *r = malloc((size_t)(shp[0] * shp[1]) * sizeof(float));
                    ck_assert_int_eq(mtft_safetensors_read_f32(ref, theirs, r, 2, shp), MTFT_OK);
                    mtft_assert_close(mtft_tensor_grad(t), r, shp[0] * shp[1], PAR_RTOL, PAR_ATOL, theirs);
                    free(r);
                    checked++;
                }
    ck_assert_int_eq(checked, 16);

    /* our save of task 1 reproduces PEFT's file tensor by tensor */
    char tmp[] = "/tmp/mtft_peft_parity_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    ck_assert_int_eq(mtft_peft_lora_save(p, 1, tmp, "tiny-gpt2"), MTFT_OK);
    mtft_safetensors *a = NULL, *b = NULL;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    ck_assert_int_eq(mtft_safetensors_open(&a, path), MTFT_OK);
    fixture(path, sizeof path, "task1/adapter_model.safetensors");
    ck_assert_int_eq(mtft_safetensors_open(&b, path), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(a), mtft_safetensors_count(b));
    for (int i = 0; i < mtft_safetensors_count(b); i++) {
        const char *name = mtft_safetensors_name(b, i);
        int j = mtft_safetensors_find(a, name);
        ck_assert_msg(j >= 0, "our file lacks %s", name);
        size_t na, nb;
        const void *da = mtft_safetensors_data(a, j, &na), *db = mtft_safetensors_data(b, i, &nb);
        ck_assert_uint_eq(na, nb);
        ck_assert_int_eq(memcmp(da, db, na), 0);
    }
    mtft_safetensors_close(a);
    mtft_safetensors_close(b);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    unlink(path);
    rmdir(tmp);

    mtft_safetensors_close(ref);
    mtft_graph_free(g);
    mtft_peft_free(p);
    mtft_model_free(m);
}
END_TEST

Suite *mtft_test_peft_parity_suite(void) {
    Suite *s = suite_create("peft_parity");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_peft_parity_mixed_batch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    mtft_test_path(g_dir, sizeof g_dir, "tests/fixtures/peft");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/ref.safetensors", g_dir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "check_peft_parity: %s missing (run tools/gen_peft_fixtures.py); skipping\n", probe);
        return 77;
    }
    return mtft_test_run(mtft_test_peft_parity_suite());
}
