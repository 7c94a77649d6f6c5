/* Gradient-level balancing in a training step: what per-task gradients from
 * ONE backward (ARCHITECTURE.md decision 4) cost, against an equal-weights
 * step and against the "Python way" (one backward per task).
 *
 *   bench_balance [rounds] [n_layer] [T] [threads]   (defaults 7, 4, 128, the
 *                                                     library's default)
 *
 * Model: GPT-2 style, V 4096, C 256, 4 heads, F 1024, random frozen base;
 * K = 8 tasks, B = 8 rows of T tokens, one row per task. Each task has its
 * own LoRA (r 8, alpha 16, on attn.c_attn, attn.c_proj, mlp.c_fc,
 * mlp.c_proj) and its own head (tasks 0-3 LM on the tied LM head with a
 * 32-token prompt masked, 4-5 classification, 6 regression, 7 token
 * tagging); one SHARED LoRA (same targets, r 8) is the parameter block whose
 * per-task gradients feed the balancer. AdamW over every trainable group.
 *
 * Configurations, one training step each (forward with one loss per task,
 * backward, balancer, AdamW):
 *   equal        loss = sum of task losses, shared LoRA not split (a plain
 *                step; the EQUAL balancer gives the weights)
 *   equal_split  the same with the shared LoRA split by task (cost of the
 *                per-task blocks alone)
 *   <method>     gradient level: split shared LoRA, one backward of the sum,
 *                mtft_balancer_step on the K per-task blocks, the combined
 *                gradient replaces the shared LoRA's gradient (as the
 *                trainer does); pcgrad, cagrad, imtl_g, mgda_ub,
 *                aligned_mtl, nash_mtl, gradnorm
 *   python_pcgrad  the per-task gradients as Python libraries get them: one
 *                forward, then K backward passes over the whole graph (one
 *                per task loss, like loss_k.backward(retain_graph=True)),
 *                copying the shared LoRA's gradient after each; then PCGrad
 *                and AdamW
 * Before timing, the per-task gradients of python_pcgrad and of the split
 * are compared (same parameters): printed as "check".
 *
 * Timing: configurations are interleaved step by step (round r runs every
 * configuration once, starting at a rotating position) after one warm-up
 * round; medians over rounds. ratio_vs_equal is the median over rounds of
 * the step time divided by the same round's equal step (paired, so a load
 * change on the shared machine hits both); cpu_ratio the same for process
 * CPU time. One JSON line per configuration:
 *   {"name", "method", "median_s", "ratio_vs_equal", "cpu_s", "cpu_ratio",
 *    "fwd_s", "bwd_s", "bal_s", "opt_s", "threads", "load", ...}
 * load is the 1-minute load average (/proc/loadavg) at the end of the run
 * (load_start at its start). */
#ifndef _POSIX_C_SOURCE
#endif
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/balance.h"
#include "mtft/head.h"
#include "mtft/model.h"
#include "mtft/optim.h"
#include "mtft/peft.h"
#include "mtft/tensor.h"
#include "tensor/tensor_impl.h"

enum { K = 8, MAX_CFG = 16, PROMPT = 32 };

static int fail(const char *what) {
    fprintf(stderr, "bench_balance: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

typedef struct bench {
    mtft_model *m;
    mtft_peft *p;
    mtft_param_group *shared;
    mtft_head *heads[K];
    mtft_adamw *opt;
    mtft_graph *g;
    int B, T;
    int32_t *ids, *task, *len, *lm, *tags, *cls, off[K + 1];
    float *vals;
    size_t P;          /* shared LoRA floats */
    float *pt;         /* K x P per-task gradients (python way) */
    float *comb;       /* P: combined gradient */
    mtft_tensor *tl[K];
    mtft_tensor *total;
} bench;

typedef struct cfg {
    const char *name;
    const char *method_name;
    mtft_balance_method method; /* EQUAL for the loss-level baselines */
    int split;                  /* shared LoRA split by task */
    int python;                 /* K backward passes */
    mtft_balancer *bal;
    double *t, *cpu, *fwd, *bwd, *balt, *optt, *ratio, *cratio;
} cfg;

/* Forward of the whole mixed batch: one loss per task. */
static int forward(bench *b) {
    mtft_graph_reset(b->g);
    if (mtft_peft_set_batch(b->p, b->g, b->off) < 0) return -1;
    mtft_multitask_batch mb = {b->ids, b->B, b->T, b->len, b->task};
    mtft_head_targets tg[K];
    for (int k = 0; k < K; k++) {
        memset(&tg[k], 0, sizeof tg[k]);
        tg[k].class_ids = b->cls;
        tg[k].token_ids = k < 4 ? b->lm : b->tags;
        tg[k].values = b->vals;
    }
    return mtft_multitask_forward(b->m, b->g, &mb, b->heads, tg, K, NULL, b->tl, &b->total, NULL);
}

/* Before the backward of `loss` on an already back-propagated graph: like
 * PyTorch's loss_k.backward(retain_graph=True), run only the nodes that loss
 * reaches, from zero activation gradients. Reachability is marked on the
 * tape in reverse with a scratch flag bit; a reached tensor's gradient
 * buffer is zeroed (reused), an unreached one is detached (set to NULL, so
 * its node is skipped; it gets a fresh buffer if a later loss reaches it).
 * Parameters keep their gradients. */
#define BENCH_MARK (1u << 31)
static void prepare_backward(mtft_graph *g, mtft_tensor *loss) {
    for (int i = 0; i < g->n_nodes; i++) {
        mtft_node *n = &g->nodes[i];
        n->out->flags &= ~BENCH_MARK;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) n->in[j]->flags &= ~BENCH_MARK;
    }
    loss->flags |= BENCH_MARK;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        mtft_node *n = &g->nodes[i];
        if (!(n->out->flags & BENCH_MARK)) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) n->in[j]->flags |= BENCH_MARK;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        mtft_node *n = &g->nodes[i];
        mtft_tensor *ts[MTFT_NODE_MAX_IN + 1];
        int nt = 0;
        ts[nt++] = n->out;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) ts[nt++] = n->in[j];
        for (int j = 0; j < nt; j++) {
            mtft_tensor *t = ts[j];
            if ((t->flags & MTFT_TF_PARAM) || !t->grad) continue;
            if (t->flags & BENCH_MARK)
                memset(t->grad, 0, (size_t)mtft__numel(t) * sizeof(float));
            else
                t->grad = NULL;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        mtft_node *n = &g->nodes[i];
        n->out->flags &= ~BENCH_MARK;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) n->in[j]->flags &= ~BENCH_MARK;
    }
}

/* The K per-task gradients of the shared LoRA by K backward passes (group
 * not split), into b->pt. Task LoRAs and heads accumulate their gradients
 * over the passes, each from its own loss. */
static int python_backward(bench *b) {
    float *gs = mtft_param_group_grad(b->shared, NULL);
    for (int k = 0; k < K; k++) {
        if (k > 0) prepare_backward(b->g, b->tl[k]);
        memset(gs, 0, b->P * sizeof(float));
        if (mtft_graph_backward(b->g, b->tl[k], NULL) < 0) return -1;
        memcpy(b->pt + (size_t)k * b->P, gs, b->P * sizeof(float));
    }
    return 0;
}

/* One training step of configuration c; times into c's arrays at index i
 * (i < 0: warm-up, not recorded). */
static int step(bench *b, cfg *c, int i) {
    if (mtft_param_group_set_split(b->shared, c->split ? K : 0) < 0) return fail("set_split");
    double t0 = bench_now(), c0 = bench_cpu_now();
    mtft_adamw_zero_grad(b->opt);
    if (forward(b) < 0) return fail("forward");
    double t1 = bench_now();
    float losses[K], w[K];
    for (int k = 0; k < K; k++) losses[k] = mtft_tensor_data(b->tl[k])[0];
    int grad_level = mtft_balancer_is_gradient_level(c->method) == 1;
    if (c->python) {
        if (python_backward(b) < 0) return fail("backward (python way)");
    } else if (mtft_graph_backward(b->g, b->total, NULL) < 0) {
        return fail("backward");
    }
    double t2 = bench_now();
    mtft_balance_input in = MTFT_BALANCE_INPUT_INIT;
    in.losses = losses;
    mtft_balance_output out = {w, NULL};
    if (grad_level) {
        const float *gk[K];
        for (int k = 0; k < K; k++)
            gk[k] = c->python ? b->pt + (size_t)k * b->P : mtft_param_group_split_grad(b->shared, k, NULL);
        in.grads = gk;
        in.n_params = (int64_t)b->P;
        out.grad = b->comb;
        if (mtft_balancer_step(c->bal, &in, &out) < 0) return fail(c->name);
        memcpy(mtft_param_group_grad(b->shared, NULL), b->comb, b->P * sizeof(float));
    } else if (mtft_balancer_step(c->bal, &in, &out) < 0) {
        return fail(c->name);
    }
    double t3 = bench_now();
    if (mtft_adamw_step(b->opt) < 0) return fail("adamw");
    double t4 = bench_now(), c4 = bench_cpu_now();
    for (int k = 0; k < K; k++)
        if (!isfinite(losses[k])) {
            fprintf(stderr, "bench_balance: %s: loss of task %d is %g\n", c->name, k, (double)losses[k]);
            return 1;
        }
    if (i >= 0) {
        c->t[i] = t4 - t0;
        c->cpu[i] = c4 - c0;
        c->fwd[i] = t1 - t0;
        c->bwd[i] = t2 - t1;
        c->balt[i] = t3 - t2;
        c->optt[i] = t4 - t3;
    }
    return 0;
}

/* Per-task gradients of the split (one backward) against the python way (K
 * backwards), same parameters: worst relative difference in norm. */
static int check(bench *b, double *worst) {
    mtft_adamw_zero_grad(b->opt);
    if (mtft_param_group_set_split(b->shared, K) < 0) return fail("set_split");
    if (forward(b) < 0) return fail("forward");
    if (mtft_graph_backward(b->g, b->total, NULL) < 0) return fail("backward");
    float *split = malloc((size_t)K * b->P * sizeof(float));
    if (!split) return fail("out of memory");
    for (int k = 0; k < K; k++)
        memcpy(split + (size_t)k * b->P, mtft_param_group_split_grad(b->shared, k, NULL), b->P * sizeof(float));
    mtft_adamw_zero_grad(b->opt);
    if (mtft_param_group_set_split(b->shared, 0) < 0) return fail("set_split");
    if (forward(b) < 0 || python_backward(b) < 0) {
        free(split);
        return fail("python way");
    }
    *worst = 0.0;
    for (int k = 0; k < K; k++) {
        double d = 0.0, s = 0.0;
        for (size_t j = 0; j < b->P; j++) {
            double a = split[(size_t)k * b->P + j], r = b->pt[(size_t)k * b->P + j];
            d += (a - r) * (a - r);
            s += r * r;
        }
        double rel = s > 0.0 ? sqrt(d / s) : (d > 0.0 ? INFINITY : 0.0);
        if (!(rel <= *worst)) *worst = rel;
        if (!(s > 0.0)) {
            free(split);
            fprintf(stderr, "bench_balance: task %d's shared-LoRA gradient is zero\n", k);
            return 1;
        }
    }
    free(split);
    mtft_adamw_zero_grad(b->opt);
    return 0;
}

int main(int argc, char **argv) {
    mtft_blas_ensure_fast_kernel(argc, argv);
    int rounds = argc > 1 ? atoi(argv[1]) : 7, L = argc > 2 ? atoi(argv[2]) : 4, T = argc > 3 ? atoi(argv[3]) : 128;
    int threads = argc > 4 ? atoi(argv[4]) : 0;
    if (rounds < 1 || L < 1 || T <= PROMPT || threads < 0) {
        fprintf(stderr, "usage: bench_balance [rounds >= 1] [n_layer >= 1] [T > %d] [threads >= 0]\n", PROMPT);
        return 2;
    }
    if (threads > 0) mtft_set_num_threads(threads);
    double load0 = bench_loadavg();
    bench b;
    memset(&b, 0, sizeof b);
    b.B = K;
    b.T = T;
    mtft_model_config mc = MTFT_MODEL_CONFIG_INIT;
    mc.vocab_size = 4096;
    mc.n_ctx = T;
    mc.n_embd = 256;
    mc.n_layer = L;
    mc.n_head = 4;
    mc.n_kv_head = 4;
    mc.n_ff = 1024;
    if (mtft_model_new(&b.m, &mc, 1) < 0) return fail("model");
    mtft_param_group_set_trainable(mtft_model_base_group(b.m), 0);
    if (mtft_peft_new(&b.p, b.m, K) < 0) return fail("peft");
    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = 1e-4f;
    if (mtft_adamw_new(&b.opt, &ao) < 0) return fail("adamw");
    mtft_lora_options lo = MTFT_LORA_OPTIONS_INIT;
    lo.rank = 8;
    lo.alpha = 16.0f;
    lo.target_modules = "attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj";
    for (int k = -1; k < K; k++) {
        mtft_param_group *pg = NULL;
        lo.seed = (uint64_t)(k + 10);
        if (mtft_peft_add_lora(b.p, k < 0 ? MTFT_PEFT_SHARED : k, &lo, &pg) < 0) return fail("lora");
        /* non-zero B, as after some training */
        size_t n;
        float *d = mtft_param_group_data(pg, &n);
        mtft_rng r;
        mtft_rng_seed(&r, (uint64_t)(k + 100));
        for (size_t i = 0; i < n; i++) d[i] = 0.02f * (float)(mtft_rng_uniform(&r) - 0.5);
        if (mtft_adamw_add_group(b.opt, pg, NULL) < 0) return fail("adamw group");
        if (k < 0) b.shared = pg;
    }
    for (int k = 0; k < K; k++) {
        mtft_head_options ho = MTFT_HEAD_OPTIONS_INIT;
        char name[16];
        snprintf(name, sizeof name, "task%d", k);
        ho.name = name;
        if (k < 4) {
            ho.kind = MTFT_HEAD_LM;
            ho.n_labels = 0;
        } else if (k < 6) {
            ho.kind = MTFT_HEAD_CLASSIFICATION;
            ho.n_labels = 4;
            ho.hidden_size = 256;
        } else if (k == 6) {
            ho.kind = MTFT_HEAD_REGRESSION;
            ho.n_labels = 1;
        } else {
            ho.kind = MTFT_HEAD_TOKEN_CLASSIFICATION;
            ho.n_labels = 9;
        }
        if (mtft_head_new(&b.heads[k], 256, &ho, (uint64_t)(k + 50)) < 0) return fail("head");
        if (mtft_param_group_count(mtft_head_group(b.heads[k])) > 0 &&
            mtft_adamw_add_group(b.opt, mtft_head_group(b.heads[k]), NULL) < 0)
            return fail("adamw head group");
    }
    mtft_param_group_data(b.shared, &b.P);
    size_t BT = (size_t)K * (size_t)T;
    b.ids = malloc(BT * sizeof(int32_t));
    b.lm = malloc(BT * sizeof(int32_t));
    b.tags = malloc(BT * sizeof(int32_t));
    b.task = malloc(K * sizeof(int32_t));
    b.len = malloc(K * sizeof(int32_t));
    b.cls = malloc(K * sizeof(int32_t));
    b.vals = malloc(K * sizeof(float));
    b.pt = malloc((size_t)K * b.P * sizeof(float));
    b.comb = malloc(b.P * sizeof(float));
    if (!b.ids || !b.lm || !b.tags || !b.task || !b.len || !b.cls || !b.vals || !b.pt || !b.comb) {
        fprintf(stderr, "bench_balance: out of memory\n");
        return 1;
    }
    mtft_rng r;
    mtft_rng_seed(&r, 2);
    for (int i = 0; i < K; i++) {
        b.task[i] = i; /* one row per task, already grouped */
        b.len[i] = T;
        b.cls[i] = (int32_t)mtft_rng_below(&r, 4);
        b.vals[i] = (float)mtft_rng_normal(&r);
        for (int t = 0; t < T; t++) {
            size_t j = (size_t)i * T + (size_t)t;
            b.ids[j] = (int32_t)mtft_rng_below(&r, 4096);
            b.lm[j] = t < PROMPT ? MTFT_HEAD_IGNORE_INDEX : (int32_t)mtft_rng_below(&r, 4096);
            b.tags[j] = (int32_t)mtft_rng_below(&r, 9);
        }
    }
    if (mtft_peft_group_rows(b.task, K, K, NULL, NULL, b.off) < 0) return fail("group rows");
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.arena_bytes = (size_t)64 << 20;
    if (mtft_graph_new(&b.g, &go) < 0) return fail("graph");

    double worst = 0.0;
    if (check(&b, &worst)) return 1;
    printf("{\"name\": \"check\", \"what\": \"per-task shared-LoRA gradients, split (1 backward) vs %d backwards\", "
           "\"max_rel_diff\": %.3g, \"P\": %zu}\n", K, worst, b.P);
    fflush(stdout);
    if (!(worst <= 1e-4)) {
        fprintf(stderr, "bench_balance: split and per-task backward gradients differ (%.3g)\n", worst);
        return 1;
    }

    cfg cf[MAX_CFG];
    int nc = 0;
    memset(cf, 0, sizeof cf);
    cf[nc++] = (cfg){"balance_step", "equal", MTFT_BALANCE_EQUAL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    cf[nc++] = (cfg){"balance_step", "equal_split", MTFT_BALANCE_EQUAL, 1, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    const mtft_balance_method gm[] = {MTFT_BALANCE_PCGRAD,  MTFT_BALANCE_CAGRAD,      MTFT_BALANCE_IMTL_G,
                                      MTFT_BALANCE_MGDA_UB, MTFT_BALANCE_ALIGNED_MTL, MTFT_BALANCE_NASH_MTL,
                                      MTFT_BALANCE_GRADNORM};
    for (size_t i = 0; i < sizeof gm / sizeof gm[0]; i++)
        cf[nc++] = (cfg){"balance_step", mtft_balance_method_name(gm[i]), gm[i], 1, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    cf[nc++] = (cfg){"python_way", "pcgrad", MTFT_BALANCE_PCGRAD, 0, 1, NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int c = 0; c < nc; c++) {
        mtft_balancer_options bo = MTFT_BALANCER_OPTIONS_INIT;
        bo.method = cf[c].method;
        bo.seed = 3;
        if (mtft_balancer_new(&cf[c].bal, K, &bo) < 0) return fail("balancer");
        double **arr[] = {&cf[c].t, &cf[c].cpu, &cf[c].fwd, &cf[c].bwd, &cf[c].balt, &cf[c].optt, &cf[c].ratio,
                          &cf[c].cratio};
        for (size_t a = 0; a < sizeof arr / sizeof arr[0]; a++) {
            *arr[a] = calloc((size_t)rounds, sizeof(double));
            if (!*arr[a]) return fail("out of memory");
        }
    }
    /* warm-up round (arena growth, first-touch, optimizer moments) */
    for (int c = 0; c < nc; c++)
        if (step(&b, &cf[c], -1)) return 1;
    for (int i = 0; i < rounds; i++)
        for (int j = 0; j < nc; j++) {
            int c = (j + i) % nc;
            if (step(&b, &cf[c], i)) return 1;
        }
    double load1 = bench_loadavg();
    for (int i = 0; i < rounds; i++)
        for (int c = 0; c < nc; c++) {
            cf[c].ratio[i] = cf[c].t[i] / cf[0].t[i];
            cf[c].cratio[i] = cf[c].cpu[i] / cf[0].cpu[i];
        }
    for (int c = 0; c < nc; c++) {
        printf("{\"name\": \"%s\", \"method\": \"%s\", \"median_s\": %.4f, \"ratio_vs_equal\": %.3f, "
               "\"cpu_s\": %.4f, \"cpu_ratio\": %.3f, \"fwd_s\": %.4f, \"bwd_s\": %.4f, \"bal_s\": %.5f, "
               "\"opt_s\": %.5f, \"rounds\": %d, \"tasks\": %d, \"B\": %d, \"T\": %d, \"n_layer\": %d, "
               "\"P_shared\": %zu, \"threads\": %d, \"blas\": \"%s\", \"load\": %.2f, \"load_start\": %.2f}\n",
               cf[c].name, cf[c].method_name, bench_median(cf[c].t, rounds), bench_median(cf[c].ratio, rounds),
               bench_median(cf[c].cpu, rounds), bench_median(cf[c].cratio, rounds), bench_median(cf[c].fwd, rounds),
               bench_median(cf[c].bwd, rounds), bench_median(cf[c].balt, rounds), bench_median(cf[c].optt, rounds), rounds, K, K, T,
               L, b.P, mtft_get_num_threads(), mtft_blas_corename(), load1, load0);
    }
    fprintf(stderr, "bench_balance: arena %.1f MB\n", (double)mtft_graph_arena_capacity(b.g) / (1 << 20));
    for (int c = 0; c < nc; c++) {
        mtft_balancer_free(cf[c].bal);
        free(cf[c].t);
        free(cf[c].cpu);
        free(cf[c].fwd);
        free(cf[c].bwd);
        free(cf[c].balt);
        free(cf[c].optt);
        free(cf[c].ratio);
        free(cf[c].cratio);
    }
    mtft_graph_free(b.g);
    mtft_adamw_free(b.opt);
    for (int k = 0; k < K; k++) mtft_head_free(b.heads[k]);
    mtft_peft_free(b.p);
    mtft_model_free(b.m);
    free(b.ids);
    free(b.lm);
    free(b.tags);
    free(b.task);
    free(b.len);
    free(b.cls);
    free(b.vals);
    free(b.pt);
    free(b.comb);
    return 0;
}
