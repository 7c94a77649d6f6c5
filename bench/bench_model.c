/* Training-step benchmark of a GPT-2 (or LLaMA) model: forward,
 * cross-entropy over the vocabulary, backward, AdamW. Random weights.
 *
 * Standalone:
 *   bench_model [--shape 124m|small] [--steps N] [--threads N]
 *   bench_model [gpt2|llama] [B] [T] [n_layer] [steps]      (C 768, H 12, V 50257)
 * prints each step and a summary (forward / backward / AdamW split).
 *
 * Worker for bench/compare_model.py (side by side with bench/model_torch.py):
 *   bench_model --serve SHAPE [--threads N]
 *     reads commands from stdin, one per line, answers one JSON line each:
 *       step  -> {"step_s":..,"fwd_s":..,"bwd_s":..,"opt_s":..,"cpu_s":..,"loss":..}
 *                (cpu_s: process CPU time of the step, all threads)
 *       quit  -> {"rss_mb":..} (peak RSS of this process) and exits
 *     the first line it prints describes the model ({"ready":..}).
 *   bench_model --serve-gemm [--threads N]
 *       gemm  -> one pass over bench_core's sgemm shapes of a 768-wide
 *                transformer (1024 tokens): {"gflops":..,"s":..}
 *   bench_model --info   -> {"best_coretype":..,"kernel":..}
 *
 * Shapes: 124m = GPT-2 124M (L 12, C 768, H 12, V 50257) at B 4, T 256;
 *         small = L 4, C 256, H 4, V 4096 at B 8, T 128. */
#include "bench_util.h" /* first: asks for POSIX.1-2008 */

#include "mtft/mtft.h"
#include "tensor/blas.h"

typedef struct bench {
    int B, T;
    mtft_model *m;
    mtft_graph *g;
    mtft_adamw *opt;
    int32_t *ids, *tg;
    double n_params;
} bench;

static int set_shape(const char *shape, mtft_model_config *c, int *B, int *T) {
    *c = (mtft_model_config)MTFT_MODEL_CONFIG_INIT;
    if (strcmp(shape, "124m") == 0) {
        c->n_layer = 12, c->n_embd = 768, c->n_head = c->n_kv_head = 12, c->n_ff = 3072, c->vocab_size = 50257;
        *B = 4, *T = 256;
    } else if (strcmp(shape, "small") == 0) {
        c->n_layer = 4, c->n_embd = 256, c->n_head = c->n_kv_head = 4, c->n_ff = 1024, c->vocab_size = 4096;
        *B = 8, *T = 128;
    } else {
        fprintf(stderr, "bench_model: unknown shape '%s' (124m or small)\n", shape);
        return -1;
    }
    return 0;
}

static int bench_init(bench *b, const mtft_model_config *c, int B, int T) {
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T;
    if (mtft_model_new(&b->m, c, 1) < 0) return -1;
    b->ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    b->tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    if (!b->ids || !b->tg) return -1;
    mtft_rng r;
    mtft_rng_seed(&r, 2);
    for (int i = 0; i < B * T; i++) {
        b->ids[i] = (int32_t)mtft_rng_below(&r, (uint64_t)c->vocab_size);
        b->tg[i] = (int32_t)mtft_rng_below(&r, (uint64_t)c->vocab_size);
    }
    if (mtft_graph_new(&b->g, NULL) < 0 || mtft_adamw_new(&b->opt, NULL) < 0 ||
        mtft_adamw_add_group(b->opt, mtft_model_base_group(b->m), NULL) < 0)
        return -1;
    size_t n = 0;
    mtft_param_group_data(mtft_model_base_group(b->m), &n);
    b->n_params = (double)n;
    return 0;
}

static void bench_dispose(bench *b) {
    mtft_adamw_free(b->opt);
    mtft_graph_free(b->g);
    mtft_model_free(b->m);
    free(b->ids);
    free(b->tg);
}

/* One training step; times in t[0..3] = total, forward, backward, AdamW. */
static int bench_step(bench *b, double t[4], float *loss_out) {
    double t0 = bench_now();
    mtft_graph_reset(b->g);
    mtft_adamw_zero_grad(b->opt);
    mtft_tensor *loss = mtft_cross_entropy(
        b->g, mtft_model_logits(b->m, b->g, mtft_model_hidden(b->m, b->g, b->ids, b->B, b->T, NULL)), b->tg, -100,
        0.0f);
    double t1 = bench_now();
    if (!loss || mtft_graph_backward(b->g, loss, NULL) < 0) return -1;
    double t2 = bench_now();
    if (mtft_adamw_step(b->opt) < 0) return -1;
    double t3 = bench_now();
    t[0] = t3 - t0, t[1] = t1 - t0, t[2] = t2 - t1, t[3] = t3 - t2;
    *loss_out = mtft_tensor_data(loss)[0];
    return 0;
}

/* One pass over bench_core's sgemm shapes (1024 tokens, C 768, F 3072);
 * returns GFLOP/s over the pass. Buffers are the caller's. */
typedef struct gemm_shape {
    int ta, tb, M, N, K;
} gemm_shape;
static const gemm_shape GEMMS[] = {
    {0, 1, 1024, 768, 768},  {0, 1, 1024, 3072, 768}, {0, 1, 1024, 768, 3072}, {0, 0, 1024, 768, 3072},
    {0, 0, 1024, 3072, 768}, {1, 0, 3072, 768, 1024}, {1, 0, 768, 3072, 1024}, {1, 0, 768, 768, 1024},
};
#define N_GEMMS ((int)(sizeof GEMMS / sizeof GEMMS[0]))
static double gemm_pass(float *A, float *Bm, float *Cm, double *secs) {
    double flops = 0, t = 0;
    for (int i = 0; i < N_GEMMS; i++) {
        const gemm_shape *s = &GEMMS[i];
        int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        double t0 = bench_now();
        mtft__sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, Bm, ldb, 0.0f, Cm, s->N);
        t += bench_now() - t0;
        flops += 2.0 * s->M * s->N * s->K;
    }
    *secs = t;
    return flops / t * 1e-9;
}

static int serve_gemm(void) {
    size_t n = (size_t)3072 * 1024;
    float *A = malloc(n * sizeof *A), *Bm = malloc(n * sizeof *Bm), *Cm = malloc(n * sizeof *Cm);
    if (!A || !Bm || !Cm) return 1;
    mtft_rng r;
    mtft_rng_seed(&r, 1);
    for (size_t i = 0; i < n; i++) {
        A[i] = mtft_rng_uniform(&r) - 0.5f;
        Bm[i] = mtft_rng_uniform(&r) - 0.5f;
    }
    double s;
    gemm_pass(A, Bm, Cm, &s); /* warm-up: thread start, first touch */
    printf("{\"ready\":\"gemm\",\"kernel\":\"%s\",\"threading\":\"%s\",\"threads\":%d}\n", mtft_blas_corename(),
           mtft_blas_threading(), mtft_get_num_threads());
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "gemm", 4) == 0) {
            double gf = gemm_pass(A, Bm, Cm, &s);
            printf("{\"gflops\":%.2f,\"s\":%.6f}\n", gf, s);
        } else if (strncmp(line, "quit", 4) == 0) {
            printf("{\"rss_mb\":%.1f}\n", bench_peak_rss_mb());
            fflush(stdout);
            break;
        } else {
            printf("{\"error\":\"unknown command\"}\n");
        }
        fflush(stdout);
    }
    free(A);
    free(Bm);
    free(Cm);
    return 0;
}

static int serve_model(const char *shape) {
    mtft_model_config c;
    int B, T;
    if (set_shape(shape, &c, &B, &T) < 0) return 2;
    bench b;
    if (bench_init(&b, &c, B, T) < 0) {
        fprintf(stderr, "bench_model: %s\n", mtft_error_last()->message);
        bench_dispose(&b);
        return 1;
    }
    printf("{\"ready\":\"mtft\",\"shape\":\"%s\",\"B\":%d,\"T\":%d,\"L\":%d,\"C\":%d,\"H\":%d,\"V\":%d,"
           "\"n_params\":%.0f,\"kernel\":\"%s\",\"threading\":\"%s\",\"threads\":%d}\n",
           shape, B, T, c.n_layer, c.n_embd, c.n_head, c.vocab_size, b.n_params, mtft_blas_corename(),
           mtft_blas_threading(), mtft_get_num_threads());
    fflush(stdout);
    char line[64];
    int rc = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "step", 4) == 0) {
            double t[4];
            float loss;
            const double c0 = bench_cpu_now();
            if (bench_step(&b, t, &loss) < 0) {
                fprintf(stderr, "bench_model: %s\n", mtft_error_last()->message);
                printf("{\"error\":\"step failed\"}\n");
                rc = 1;
                break;
            }
            const double cpu = bench_cpu_now() - c0;
            printf("{\"step_s\":%.6f,\"fwd_s\":%.6f,\"bwd_s\":%.6f,\"opt_s\":%.6f,\"cpu_s\":%.6f,\"loss\":%.5f}\n", t[0],
                   t[1], t[2], t[3], cpu, (double)loss);
        } else if (strncmp(line, "quit", 4) == 0) {
            printf("{\"rss_mb\":%.1f}\n", bench_peak_rss_mb());
            fflush(stdout);
            break;
        } else {
            printf("{\"error\":\"unknown command\"}\n");
        }
        fflush(stdout);
    }
    bench_dispose(&b);
    return rc;
}

static int standalone(const char *arch, const char *shape, int B, int T, int L, int steps) {
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    if (shape) {
        if (set_shape(shape, &c, &B, &T) < 0) return 2;
    } else {
        c.n_layer = L;
        if (strcmp(arch, "llama") == 0) {
            c.arch = MTFT_ARCH_LLAMA;
            c.n_kv_head = 4;
            c.n_ff = 2048;
            c.tie_embeddings = 0;
            c.norm_eps = 1e-6f;
        }
    }
    c.n_ctx = T > 1024 ? T : 1024;
    if (steps < 1 || steps > 1000) steps = 5;
    bench b;
    if (bench_init(&b, &c, B, T) < 0) {
        fprintf(stderr, "bench_model: %s\n", mtft_error_last()->message);
        bench_dispose(&b);
        return 1;
    }
    double *ts = calloc((size_t)steps, sizeof *ts), tf = 0, tb = 0, to = 0;
    int rc = 0;
    for (int s = 0; s <= steps && rc == 0; s++) {
        double t[4];
        float loss;
        if (bench_step(&b, t, &loss) < 0) {
            rc = 1;
            break;
        }
        if (s == 0) continue; /* warm-up: arena growth, first touch */
        ts[s - 1] = t[0];
        tf += t[1], tb += t[2], to += t[3];
        printf("step %d: loss %.4f, %.1f ms (forward %.1f, backward %.1f, adamw %.1f)\n", s, (double)loss,
               1e3 * t[0], 1e3 * t[1], 1e3 * t[2], 1e3 * t[3]);
    }
    if (rc) {
        fprintf(stderr, "bench_model: %s\n", mtft_error_last()->message);
    } else {
        double med = bench_median(ts, steps);
        printf("%s B=%d T=%d L=%d C=%d V=%d params=%.1fM threads=%d blas=%s: median step %.1f ms (mean forward %.1f, "
               "backward %.1f, adamw %.1f), best %.1f ms, %.0f tokens/s, peak RSS %.0f MB\n",
               shape ? shape : arch, B, T, c.n_layer, c.n_embd, c.vocab_size, b.n_params * 1e-6,
               mtft_get_num_threads(), mtft_blas_corename(), 1e3 * med, 1e3 * tf / steps, 1e3 * tb / steps,
               1e3 * to / steps, 1e3 * bench_best(ts, steps), B * T / med, bench_peak_rss_mb());
    }
    free(ts);
    bench_dispose(&b);
    return rc;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    const char *serve = NULL, *shape = NULL;
    int gemm = 0, info = 0, threads = 0, steps = 5, npos = 0;
    const char *pos[5] = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--serve") == 0 && i + 1 < argc) serve = argv[++i];
        else if (strcmp(argv[i], "--serve-gemm") == 0) gemm = 1;
        else if (strcmp(argv[i], "--info") == 0) info = 1;
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) shape = argv[++i];
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (npos < 5) pos[npos++] = argv[i];
        else {
            fprintf(stderr, "bench_model: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (threads > 0) mtft_set_num_threads(threads);
    if (info) {
        const char *best = mtft_cpu_best_blas_coretype();
        printf("{\"best_coretype\":\"%s\",\"kernel\":\"%s\",\"threading\":\"%s\",\"threads\":%d}\n",
               best ? best : "", mtft_blas_corename(), mtft_blas_threading(), mtft_get_num_threads());
        return 0;
    }
    if (gemm) return serve_gemm();
    if (serve) return serve_model(serve);
    const char *arch = npos > 0 ? pos[0] : "gpt2";
    int B = npos > 1 ? atoi(pos[1]) : 4, T = npos > 2 ? atoi(pos[2]) : 128, L = npos > 3 ? atoi(pos[3]) : 4;
    if (npos > 4) steps = atoi(pos[4]);
    if (B < 1 || T < 1 || L < 1) {
        fprintf(stderr, "bench_model: B, T and n_layer must be >= 1\n");
        return 2;
    }
    return standalone(arch, shape, B, T, L, steps);
}
