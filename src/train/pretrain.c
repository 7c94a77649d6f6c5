/* Pretraining a small causal LM on a token stream: random windows, AdamW,
 * linear warmup then cosine decay to 10%, global-norm clipping, a held-out
 * loss on the tail of the stream. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "trainer_impl.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static float lr_at(const mtft_pretrain_options *o, int64_t s) {
    if (o->warmup_steps > 0 && s < o->warmup_steps) return o->lr * (float)(s + 1) / (float)o->warmup_steps;
    const int64_t span = o->max_steps - o->warmup_steps;
    double q = span > 0 ? (double)(s - o->warmup_steps) / (double)span : 1.0;
    if (q > 1.0) q = 1.0;
    return (float)((double)o->lr * (0.1 + 0.9 * 0.5 * (1.0 + cos(M_PI * q))));
}

/* Mean next-token loss over non-overlapping windows of [lo, hi). */
static int heldout(mtft_model *m, mtft_graph *g, const int32_t *ids, int64_t lo, int64_t hi, int T, int B,
                   int32_t *tg, double *out) {
    double sum = 0.0;
    int64_t nwin = 0;
    int rc = MTFT_OK;
    mtft_graph_set_grad_enabled(g, 0);
    mtft_graph_set_training(g, 0);
    for (int64_t s = lo; s + T + 1 <= hi && nwin < 256; s += (int64_t)T * B) {
        int b = 0;
        while (b < B && s + (int64_t)(b + 1) * T + 1 <= hi) b++;
        if (b == 0) break;
        for (int r = 0; r < b; r++) memcpy(tg + (size_t)r * T, ids + s + (int64_t)r * T + 1, (size_t)T * sizeof *tg);
        mtft_graph_reset(g);
        mtft_tensor *h = mtft_model_hidden(m, g, ids + s, b, T, NULL);
        mtft_tensor *lg = mtft_model_logits(m, g, h);
        mtft_tensor *l = mtft_cross_entropy(g, lg, tg, -100, 0.0f);
        if (!l) {
            rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
            break;
        }
        sum += (double)mtft_tensor_data(l)[0] * b;
        nwin += b;
    }
    mtft_graph_reset(g);
    mtft_graph_set_grad_enabled(g, 1);
    mtft_graph_set_training(g, 1);
    *out = nwin ? sum / (double)nwin : NAN;
    return rc;
}

int mtft_pretrain(mtft_model *m, const int32_t *ids, int64_t n_ids, const mtft_pretrain_options *o,
                  double *heldout_loss) {
    MTFT_CHECK_ARG(m && ids);
    mtft_pretrain_options d = MTFT_PRETRAIN_OPTIONS_INIT;
    if (!o) o = &d;
    if (o->version != MTFT_PRETRAIN_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "pretrain: options version %d, expected %d", o->version,
                         MTFT_PRETRAIN_OPTIONS_VERSION);
    const mtft_model_config *cfg = mtft_model_get_config(m);
    const int B = o->batch_size, T = o->seq_len;
    if (B < 1 || T < 2 || T > cfg->n_ctx)
        return mtft__err(MTFT_ERANGE, "pretrain: batch_size %d must be >= 1 and seq_len %d in [2, %d]", B, T, cfg->n_ctx);
    if (o->max_steps < 1) return mtft__err(MTFT_ERANGE, "pretrain: max_steps %lld must be >= 1", (long long)o->max_steps);
    if (!(o->holdout >= 0.0 && o->holdout < 0.5))
        return mtft__err(MTFT_ERANGE, "pretrain: holdout %g must be in [0, 0.5)", o->holdout);
    if (!(o->lr > 0.0f)) return mtft__err(MTFT_ERANGE, "pretrain: lr %g must be > 0", (double)o->lr);
    const int64_t n_train = n_ids - (int64_t)((double)n_ids * o->holdout);
    if (n_train < T + 2)
        return mtft__err(MTFT_EINVAL, "pretrain: %lld training tokens, fewer than one window of %d", (long long)n_train,
                         T + 1);
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return mtft__err(MTFT_ERANGE, "pretrain: token %lld is id %d, outside the model's vocabulary [0, %d)",
                             (long long)i, ids[i], cfg->vocab_size);
    mtft_param_group *base = mtft_model_base_group(m);
    int rc = mtft_param_group_set_trainable(base, 1);
    if (rc < 0) return rc;
    mtft_graph *g = NULL;
    mtft_adamw *opt = NULL;
    mtft_graph_options go = MTFT_GRAPH_OPTIONS_INIT;
    go.seed = o->seed;
    int32_t *in = mtft__malloc((size_t)B * T * sizeof *in);
    int32_t *tg = mtft__malloc((size_t)B * T * sizeof *tg);
    if (!in || !tg) {
        rc = mtft__err(MTFT_ENOMEM, "pretrain: out of memory");
        goto done;
    }
    if ((rc = mtft_graph_new(&g, &go)) < 0) goto done;
    mtft_adamw_options ao = MTFT_ADAMW_OPTIONS_INIT;
    ao.lr = o->lr;
    ao.weight_decay = o->weight_decay;
    ao.beta2 = 0.95f;
    if ((rc = mtft_adamw_new(&opt, &ao)) < 0) goto done;
    if ((rc = mtft_adamw_add_group(opt, base, NULL)) < 0) goto done;
    mtft_rng rng;
    mtft_rng_seed(&rng, o->seed ^ 0x9e3779b97f4a7c15ull);
    const double t0 = mtft_trainer__now();
    const int tty = isatty(fileno(stdout));
    const char *names[1] = {"lm"};
    float tloss = 0.0f, tw = 1.0f;
    double rate = 1.0;
    int rows = B;
    for (int64_t step = 0; step < o->max_steps; step++) {
        for (int r = 0; r < B; r++) {
            const int64_t s = (int64_t)mtft_rng_below(&rng, (uint64_t)(n_train - T - 1));
            memcpy(in + (size_t)r * T, ids + s, (size_t)T * sizeof *in);
            memcpy(tg + (size_t)r * T, ids + s + 1, (size_t)T * sizeof *tg);
        }
        mtft_graph_reset(g);
        mtft_tensor *h = mtft_model_hidden(m, g, in, B, T, NULL);
        mtft_tensor *lg = mtft_model_logits(m, g, h);
        mtft_tensor *l = mtft_cross_entropy(g, lg, tg, -100, 0.0f);
        if (!l) {
            rc = mtft_graph_status(g) < 0 ? mtft_graph_status(g) : MTFT_ERROR;
            mtft__err_prefix("pretrain: step %lld", (long long)step + 1);
            goto done;
        }
        tloss = mtft_tensor_data(l)[0];
        mtft_adamw_zero_grad(opt);
        int skipped = !isfinite(tloss);
        double ss = 0.0;
        size_t ng = 0;
        float *gr = NULL;
        if (!skipped) {
            if ((rc = mtft_graph_backward(g, l, NULL)) < 0) goto done;
            gr = mtft_param_group_grad(base, &ng);
            for (size_t j = 0; j < ng; j++) ss += (double)gr[j] * (double)gr[j];
            skipped = !isfinite(ss);
        }
        const float gn = (float)sqrt(ss);
        const float lr = lr_at(o, step);
        if (skipped) {
            mtft__log(MTFT_LOG_WARN, "pretrain: step %lld skipped (non-finite loss or gradient)", (long long)step + 1);
        } else {
            if (o->grad_clip > 0 && gn > o->grad_clip)
                for (size_t j = 0; j < ng; j++) gr[j] *= o->grad_clip / gn;
            mtft_adamw_set_lr(opt, lr);
            if ((rc = mtft_adamw_step(opt)) < 0) goto done;
        }
        const double el = mtft_trainer__now() - t0;
        const int last = step + 1 == o->max_steps || (o->max_seconds > 0 && el >= o->max_seconds);
        if (o->print_every > 0 && ((step + 1) % o->print_every == 0 || last)) {
            const double tps = (double)(step + 1) * B * T / (el > 0 ? el : 1e-9);
            printf("%spretrain step %lld/%lld loss %.4f lr %.2e gnorm %.2f | %.0f tok/s %.0fs%s", tty ? "\r\033[K" : "",
                   (long long)step + 1, (long long)o->max_steps, (double)tloss, (double)lr, (double)gn, tps, el,
                   tty && !last ? "" : "\n");
            fflush(stdout);
        }
        if (o->progress) {
            mtft_progress pr;
            memset(&pr, 0, sizeof pr);
            pr.event = MTFT_PROGRESS_STEP;
            pr.step = step + 1;
            pr.max_steps = o->max_steps;
            pr.n_tasks = 1;
            pr.task_names = names;
            pr.task_loss = &tloss;
            pr.task_weights = &tw;
            pr.task_rates = &rate;
            pr.task_rows = &rows;
            pr.loss = tloss;
            pr.lr = lr;
            pr.grad_norm = gn;
            pr.skipped = skipped;
            pr.tokens = (int64_t)B * T;
            pr.elapsed_sec = el;
            pr.tokens_per_sec = (double)(step + 1) * B * T / (el > 0 ? el : 1e-9);
            pr.eta_sec = el / (double)(step + 1) * (double)(o->max_steps - step - 1);
            if (o->progress(&pr, o->payload) != 0) {
                rc = mtft__err(MTFT_EUSER, "pretrain: the progress callback asked to stop at step %lld",
                               (long long)step + 1);
                goto done;
            }
        }
        if (last) break;
    }
    if (heldout_loss) {
        *heldout_loss = NAN;
        if (n_ids - n_train >= T + 1) rc = heldout(m, g, ids, n_train, n_ids, T, B, tg, heldout_loss);
    }
done:
    mtft__free(in);
    mtft__free(tg);
    mtft_adamw_free(opt);
    mtft_graph_free(g);
    return rc;
}
