/* PEFT training-step benchmark at the GPT-2 124M shape (random weights):
 * forward, LM cross-entropy per task, backward, AdamW over the trainable
 * groups. One configuration per process (peak RSS is per process); print
 * one JSON line. bench/bench_peft_torch.py runs this side by side with the
 * PyTorch counterpart and merges the lines.
 *
 *   bench_peft MODE [B] [T] [n_layer] [steps] [tasks]
 * MODE: full     every base weight trainable (full finetune)
 *       lora     base frozen, one LoRA r=8 (alpha 16) on attn.c_attn,
 *                attn.c_proj, mlp.c_fc, mlp.c_proj, all rows one task
 *       mixed    base frozen, `tasks` task LoRAs (same targets), rows
 *                spread over the tasks (row b -> task b % tasks, grouped),
 *                one LM loss per task on its rows (sum)
 * Defaults: B 4, T 256, 12 layers, 3 timed steps (after 1 warm-up), 8 tasks.
 * Output: {"name", "mtft_s" (median step), "mtft_cpu_s" (median process CPU
 * time per step, all threads: a check when the machine is shared),
 * "mtft_fwd_s" / "mtft_bwd_s" / "mtft_opt_s" (medians of the forward with
 * the losses, the backward, and zero_grad + AdamW), "mtft_rss_mb" (peak RSS),
 * "load" (1-minute load average at the end), ...} */
#ifndef _POSIX_C_SOURCE
#endif
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/model.h"
#include "mtft/optim.h"
#include "mtft/peft.h"
#include "mtft/tensor.h"

static int fail(const char *what) {
    fprintf(stderr, "bench_peft: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const char *mode = argc > 1 ? argv[1] : "lora";
    int B = argc > 2 ? atoi(argv[2]) : 4, T = argc > 3 ? atoi(argv[3]) : 256;
    int L = argc > 4 ? atoi(argv[4]) : 12, steps = argc > 5 ? atoi(argv[5]) : 3;
    int K = argc > 6 ? atoi(argv[6]) : 8;
    int full = strcmp(mode, "full") == 0, mixed = strcmp(mode, "mixed") == 0;
    if (!full && !mixed && strcmp(mode, "lora") != 0) {
        fprintf(stderr, "bench_peft: unknown mode '%s' (full, lora, mixed)\n", mode);
        return 2;
    }
    if (!mixed) K = 1;
    if (B < 1 || T < 1 || L < 1 || steps < 1 || K < 1) {
        fprintf(stderr, "bench_peft: B, T, n_layer, steps and tasks must be >= 1\n");
        return 2;
    }
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    c.n_layer = L;
    mtft_model *m = NULL;
    if (mtft_model_new(&m, &c, 1) < 0) return fail("model");
    mtft_adamw *opt = NULL;
    if (mtft_adamw_new(&opt, NULL) < 0) return fail("adamw");
    mtft_peft *p = NULL;
    if (full) {
        if (mtft_adamw_add_group(opt, mtft_model_base_group(m), NULL) < 0) return fail("adamw group");
    } else {
        mtft_param_group_set_trainable(mtft_model_base_group(m), 0);
        if (mtft_peft_new(&p, m, K) < 0) return fail("peft");
        mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
        lo.rank = 8;
        lo.alpha = 16.0f;
        lo.target_modules = "attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj";
        for (int k = 0; k < K; k++) {
            mtft_param_group *pg = NULL;
            lo.seed = (uint64_t)k;
            if (mtft_peft_add_lora(p, k, &lo, &pg) < 0) return fail("lora");
            /* non-zero B, as after some training */
            size_t n;
            float *d = mtft_param_group_data(pg, &n);
            for (size_t i = 0; i < n; i++) d[i] = 0.01f * (float)((int)((i * 2654435761u) % 200) - 100) / 100.0f;
            if (mtft_adamw_add_group(opt, pg, NULL) < 0) return fail("adamw group");
        }
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T)), *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    int32_t *task = malloc(sizeof(int32_t) * (size_t)B), *off = malloc(sizeof(int32_t) * (size_t)(K + 1));
    mtft_rng r;
    mtft_rng_seed(&r, 2);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)mtft_rng_below(&r, (uint64_t)c.vocab_size);
        tg[i] = (int32_t)mtft_rng_below(&r, (uint64_t)c.vocab_size);
    }
    for (int b = 0; b < B; b++) task[b] = b % K;
    /* rows are generated per task already, so grouping them is the identity
     * up to the order; a real loader applies mtft_peft_group_rows' perm */
    if (mtft_peft_group_rows(task, B, K, NULL, NULL, off) < 0) return fail("group rows");
    mtft_graph *g = NULL;
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = (size_t)256 << 20;
    if (mtft_graph_new(&g, &go) < 0) return fail("graph");
    double *times = malloc(sizeof(double) * (size_t)steps), *cpu = malloc(sizeof(double) * (size_t)steps);
    /* phases: forward (model + losses), backward, optimizer (zero_grad + step) */
    double *t_fwd = malloc(sizeof(double) * (size_t)steps), *t_bwd = malloc(sizeof(double) * (size_t)steps);
    double *t_opt = malloc(sizeof(double) * (size_t)steps);
    double loss_v = 0.0;
    for (int s = 0; s <= steps; s++) {
        double t0 = bench_now(), c0 = bench_cpu_now();
        mtft_graph_reset(g);
        mtft_adamw_zero_grad(opt);
        double tz = bench_now();
        if (p && mtft_peft_set_batch(p, g, off) < 0) return fail("set_batch");
        mtft_tensor *logits = mtft_model_logits(m, g, mtft_model_hidden(m, g, ids, B, T, NULL));
        mtft_tensor *loss = NULL;
        for (int k = 0; k < K; k++) {
            int nk = off[k + 1] - off[k];
            if (nk == 0) continue;
            mtft_tensor *lk = K == 1 ? logits : mtft_slice(g, logits, 0, off[k], nk);
            lk = mtft_cross_entropy(g, lk, tg + (size_t)off[k] * T, -100, 0.0f);
            loss = loss ? mtft_add(g, loss, lk) : lk;
        }
        if (!loss) return fail("forward");
        double tf = bench_now();
        if (mtft_graph_backward(g, loss, NULL) < 0) return fail("backward");
        double tb = bench_now();
        if (mtft_adamw_step(opt) < 0) return fail("adamw step");
        double t1 = bench_now();
        loss_v = mtft_tensor_data(loss)[0];
        if (s > 0) { /* step 0 warms up the arena */
            times[s - 1] = t1 - t0;
            cpu[s - 1] = bench_cpu_now() - c0;
            t_fwd[s - 1] = tf - tz;
            t_bwd[s - 1] = tb - tf;
            t_opt[s - 1] = (tz - t0) + (t1 - tb);
        }
    }
    qsort(times, (size_t)steps, sizeof *times, bench_cmp_double);
    qsort(cpu, (size_t)steps, sizeof *cpu, bench_cmp_double);
    printf("{\"name\": \"%s\", \"B\": %d, \"T\": %d, \"n_layer\": %d, \"tasks\": %d, \"mtft_s\": %.4f, "
           "\"mtft_min_s\": %.4f, \"mtft_cpu_s\": %.4f, \"mtft_fwd_s\": %.4f, \"mtft_bwd_s\": %.4f, "
           "\"mtft_opt_s\": %.4f, \"mtft_rss_mb\": %.1f, \"loss\": %.4f, \"threads\": %d, \"blas\": \"%s\", "
           "\"load\": %.2f}\n",
           mode, B, T, L, K, times[steps / 2], times[0], cpu[steps / 2], bench_median(t_fwd, steps),
           bench_median(t_bwd, steps), bench_median(t_opt, steps), bench_peak_rss_mb(), loss_v,
           mtft_get_num_threads(), mtft_blas_corename(), bench_loadavg());
    free(times);
    free(cpu);
    free(t_fwd);
    free(t_bwd);
    free(t_opt);
    free(ids);
    free(tg);
    free(task);
    free(off);
    mtft_graph_free(g);
    mtft_adamw_free(opt);
    mtft_peft_free(p);
    mtft_model_free(m);
    return 0;
}
