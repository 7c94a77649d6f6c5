/* Training-step time of a GPT-2 or LLaMA model: forward, cross-entropy,
 * backward, AdamW. Compare with tools/bench_model_torch.py (same shapes).
 *
 *   bench_model [gpt2|llama] [B] [T] [n_layer] [steps]
 * Defaults: gpt2 4 128 4 5 with C 768, H 12 (LLaMA: Hkv 4, F 2048), V 50257. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/model.h"
#include "mtft/optim.h"
#include "mtft/tensor.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const char *arch = argc > 1 ? argv[1] : "gpt2";
    int B = argc > 2 ? atoi(argv[2]) : 4, T = argc > 3 ? atoi(argv[3]) : 128;
    int L = argc > 4 ? atoi(argv[4]) : 4, steps = argc > 5 ? atoi(argv[5]) : 5;
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.n_layer = L;
    c.n_ctx = T > 1024 ? T : 1024;
    if (strcmp(arch, "llama") == 0) {
        c.arch = MTFT_ARCH_LLAMA;
        c.n_kv_head = 4;
        c.n_ff = 2048;
        c.tie_embeddings = 0;
        c.norm_eps = 1e-6f;
    }
    mtft_model *m = NULL;
    if (mtft_model_new(&m, &c, 1) < 0) {
        fprintf(stderr, "bench_model: %s\n", mtft_error_last()->message);
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T)), *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    mtft_rng r;
    mtft_rng_seed(&r, 2);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)mtft_rng_below(&r, (uint64_t)c.vocab_size);
        tg[i] = (int32_t)mtft_rng_below(&r, (uint64_t)c.vocab_size);
    }
    mtft_graph *g = NULL;
    mtft_graph_new(&g, NULL);
    mtft_adamw *opt = NULL;
    mtft_adamw_new(&opt, NULL);
    mtft_adamw_add_group(opt, mtft_model_base_group(m), NULL);
    double best = 1e30, total = 0, tf = 0, tb = 0, to = 0;
    int rc = 0;
    for (int s = 0; s <= steps && rc == 0; s++) {
        double t0 = now();
        mtft_graph_reset(g);
        mtft_adamw_zero_grad(opt);
        mtft_tensor *loss =
            mtft_cross_entropy(g, mtft_model_logits(m, g, mtft_model_hidden(m, g, ids, B, T, NULL)), tg, -100, 0.0f);
        double t1 = now();
        if (!loss || mtft_graph_backward(g, loss, NULL) < 0) rc = 1;
        double t2 = now();
        if (rc == 0) rc = mtft_adamw_step(opt) < 0;
        double t3 = now();
        if (s == 0) continue; /* warm-up: arena growth, first-touch */
        best = t3 - t0 < best ? t3 - t0 : best;
        total += t3 - t0;
        tf += t1 - t0;
        tb += t2 - t1;
        to += t3 - t2;
        printf("step %d: loss %.4f, %.1f ms\n", s, (double)mtft_tensor_data(loss)[0], 1e3 * (t3 - t0));
    }
    if (rc) fprintf(stderr, "bench_model: %s\n", mtft_error_last()->message);
    else
        printf("%s B=%d T=%d L=%d C=%d threads=%d blas=%s: mean step %.1f ms (forward %.1f, backward %.1f, adamw %.1f), "
               "best %.1f ms, %.0f tokens/s\n",
               arch, B, T, L, c.n_embd, mtft_get_num_threads(), mtft_blas_corename(), 1e3 * total / steps,
               1e3 * tf / steps, 1e3 * tb / steps, 1e3 * to / steps, 1e3 * best, B * T * steps / total);
    mtft_adamw_free(opt);
    mtft_graph_free(g);
    mtft_model_free(m);
    free(ids);
    free(tg);
    return rc;
}
