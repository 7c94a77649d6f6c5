/* Trainer step time by balancer: 8 tasks in mixed batches, per-task LoRA
 * plus a shared LoRA on a frozen trunk. Gradient-level balancers (PCGrad,
 * CAGrad, ...) get per-task gradients of the shared LoRA from the same single
 * backward (split parameter groups), so their step should cost little more
 * than an equal-weights step (issue 6: at most 1.25x).
 *
 *   bench_trainer [--gpt2-small] [--steps N] [--batch B] [--len T]
 *
 * Default shape: the quickstart base (4 layers x 192, vocab 4096). Prints the
 * median step time of each balancer and its ratio to equal weights. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mtft/mtft.h"
#include "mtft/trainer.h"

#define N_TASKS 8
#define MAX_STEPS 256

typedef struct timing {
    double t[MAX_STEPS + 1];
    int n;
} timing;

static int on_step(const mtft_progress *p, void *payload) {
    timing *tm = payload;
    if (p->event == MTFT_PROGRESS_STEP && tm->n <= MAX_STEPS) tm->t[tm->n++] = bench_now();
    return 0;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    int small = 0, steps = 6, batch = 16, len = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gpt2-small")) small = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--len") && i + 1 < argc) len = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_trainer [--gpt2-small] [--steps N] [--batch B] [--len T]\n");
            return 2;
        }
    }
    if (steps < 2 || steps > MAX_STEPS - 2) steps = 6;
    /* synthetic tasks: random words, 8 classification tasks of 2-5 labels */
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/mtft_bench_trainer_%d", (int)getpid());
    mkdir(dir, 0777);
    static const char *words[] = {"alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "ember",
                                  "north", "south", "maple", "cedar", "quartz", "amber", "violet", "indigo"};
    uint64_t s = 99;
    char text[1 << 16];
    size_t tl = 0;
    for (int i = 0; i < 2000 && tl + 16 < sizeof text; i++) tl += (size_t)snprintf(text + tl, sizeof text - tl, " %s", words[i % 16]);
    for (int k = 0; k < N_TASKS; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/t%d.jsonl", dir, k);
        FILE *f = fopen(p, "w");
        if (!f) return 1;
        for (int i = 0; i < 400; i++) {
            fprintf(f, "{\"text\": \"");
            const int nw = 8 + (int)(i % (len > 16 ? len / 2 : 8));
            for (int w = 0; w < nw; w++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                fprintf(f, "%s%s", w ? " " : "", words[(s >> 33) % 16]);
            }
            fprintf(f, "\", \"label\": \"l%d\"}\n", (int)((s >> 40) % (uint64_t)(2 + k % 4)));
        }
        fclose(f);
    }
    const char *sp[1] = {"<|endoftext|>"};
    mtft_bpe_train_options bo = MTFT_BPE_TRAIN_OPTIONS_INIT;
    bo.vocab_size = 300;
    bo.special_tokens = sp;
    bo.n_special_tokens = 1;
    mtft_tokenizer *tok = NULL;
    if (mtft_tokenizer_train(&tok, text, tl, &bo) < 0) return 1;
    mtft_task *tasks[N_TASKS] = {0};
    mtft_data_options dopt = MTFT_DATA_OPTIONS_INIT;
    dopt.log_progress = 0;
    for (int k = 0; k < N_TASKS; k++) {
        char name[16], p[512];
        snprintf(name, sizeof name, "task%d", k);
        snprintf(p, sizeof p, "%s/t%d.jsonl", dir, k);
        mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
        o.name = name;
        o.train_file = p;
        if (mtft_task_new(&tasks[k], &o) < 0 || mtft_task_load(tasks[k], tok, &dopt) < 0) {
            fprintf(stderr, "%s\n", mtft_error_last()->message);
            return 1;
        }
    }
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT; /* GPT-2 small */
    if (!small) {
        c.vocab_size = 4096;
        c.n_ctx = 128;
        c.n_embd = 192;
        c.n_layer = 4;
        c.n_head = 6;
        c.n_kv_head = 6;
        c.n_ff = 768;
    }
    if (len > c.n_ctx) len = c.n_ctx;
    mtft_model *m = NULL;
    if (mtft_model_new(&m, &c, 1) < 0) return 1;
    printf("bench_trainer: %s shape (%d layers x %d, vocab %d), %d tasks, batch %d x <= %d tokens, per-task LoRA r8 "
           "+ shared LoRA r8 on all projections, frozen trunk, %d timed steps, %d threads, BLAS %s\n",
           small ? "GPT-2 small" : "quickstart", c.n_layer, c.n_embd, c.vocab_size, N_TASKS, batch, len, steps,
           mtft_get_num_threads(), mtft_blas_corename());
    const mtft_balance_method methods[] = {MTFT_BALANCE_EQUAL, MTFT_BALANCE_PCGRAD, MTFT_BALANCE_CAGRAD,
                                           MTFT_BALANCE_IMTL_G, MTFT_BALANCE_DWA};
    double base = 0.0;
    int ret = 0;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        static timing tm;
        memset(&tm, 0, sizeof tm);
        mtft_trainer_options o = MTFT_TRAINER_OPTIONS_INIT;
        o.seed = 5;
        o.max_steps = steps + 2;
        o.batch_size = batch;
        o.max_len = len;
        o.lora_rank = 8;
        o.shared_lora_rank = 8;
        o.train_base = 0;
        o.sampler.start.strategy = MTFT_SAMPLER_UNIFORM;
        o.balancer.method = methods[i];
        o.progress = on_step;
        o.payload = &tm;
        mtft_trainer *tr = NULL;
        if (mtft_trainer_new(&tr, m, &o) < 0) goto fail;
        for (int k = 0; k < N_TASKS; k++)
            if (mtft_trainer_add_task(tr, tasks[k], NULL) < 0) goto fail;
        const double t0 = bench_now();
        if (mtft_trainer_run(tr) < 0) goto fail;
        (void)t0;
        mtft_trainer_free(tr);
        /* step times after 2 warm-up steps */
        double d[MAX_STEPS];
        int nd = 0;
        for (int j = 2; j < tm.n; j++) d[nd++] = tm.t[j] - tm.t[j - 1];
        qsort(d, (size_t)nd, sizeof d[0], bench_cmp_double);
        const double med = nd ? d[nd / 2] : 0.0;
        if (i == 0) base = med;
        printf("  %-12s median step %8.2f ms   x%.2f of equal\n", mtft_balance_method_name(methods[i]), 1e3 * med,
               base > 0 ? med / base : 0.0);
        continue;
    fail:
        fprintf(stderr, "bench_trainer: %s\n", mtft_error_last()->message);
        mtft_trainer_free(tr);
        ret = 1;
        break;
    }
    mtft_model_free(m);
    for (int k = 0; k < N_TASKS; k++) mtft_task_free(tasks[k]);
    mtft_tokenizer_free(tok);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_trainer: could not remove %s\n", dir);
    return ret;
}
