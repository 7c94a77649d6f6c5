/* Task heads: construction, forward, losses and predictions.
 *
 * Forward of a head on hidden [b, T, C]:
 *   sequence-level (CLASSIFICATION, MULTILABEL, REGRESSION):
 *     x = pool(hidden, valid_len)            [b, C]
 *   per-token (TOKEN_CLASSIFICATION, LM):
 *     x = hidden                             [b, T, C]
 *   x = dropout(x)
 *   with a hidden layer: x = dropout(act(x dense.W^T + dense.b))   [.., H]
 *   out = x out_proj.W^T + out_proj.b        [.., L]
 *   LM: out = x lm_head.W^T (own projection) or the model's LM head  [b, T, V]
 * The LM loss computes logits only at the target tokens: their rows of x
 * are gathered first (gather.c), so prompt and padding cost no [V, C]
 * product.
 *
 * Losses are built from the tensor ops (cross_entropy, bce_logits, mse,
 * huber), so their gradients come from the ops' backward kernels. The class
 * weighted cross-entropy is sum(log_softmax(out) .* M) with a constant M:
 *   M[i, c] = -((1-ls) w[y_i] [c == y_i] + ls/L w[c]) / sum_i w[y_i]
 * on counted rows (0 on ignored rows), which is PyTorch's
 * CrossEntropyLoss(weight=w, label_smoothing=ls), mean reduction. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "head_impl.h"

const char *mtft_head__kind_name(mtft_head_kind k) {
    switch (k) {
    case MTFT_HEAD_CLASSIFICATION: return "classification";
    case MTFT_HEAD_MULTILABEL: return "multilabel";
    case MTFT_HEAD_REGRESSION: return "regression";
    case MTFT_HEAD_TOKEN_CLASSIFICATION: return "token_classification";
    case MTFT_HEAD_LM: return "lm";
    }
    return NULL;
}
const char *mtft_head__pool_name(mtft_pool_mode p) {
    switch (p) {
    case MTFT_POOL_MEAN: return "mean";
    case MTFT_POOL_LAST: return "last";
    case MTFT_POOL_FIRST: return "first";
    }
    return NULL;
}
const char *mtft_head__act_name(mtft_head_activation a) {
    switch (a) {
    case MTFT_HEAD_ACT_TANH: return "tanh";
    case MTFT_HEAD_ACT_GELU: return "gelu";
    case MTFT_HEAD_ACT_GELU_TANH: return "gelu_tanh";
    case MTFT_HEAD_ACT_RELU: return "relu";
    }
    return NULL;
}
const char *mtft_head__loss_name(mtft_head_loss_kind l) {
    switch (l) {
    case MTFT_HEAD_LOSS_MSE: return "mse";
    case MTFT_HEAD_LOSS_HUBER: return "huber";
    }
    return NULL;
}

static int seq_level(mtft_head_kind k) {
    return k == MTFT_HEAD_CLASSIFICATION || k == MTFT_HEAD_MULTILABEL || k == MTFT_HEAD_REGRESSION;
}
static int ce_kind(mtft_head_kind k) {
    return k == MTFT_HEAD_CLASSIFICATION || k == MTFT_HEAD_TOKEN_CLASSIFICATION || k == MTFT_HEAD_LM;
}

int mtft_head__validate(int n_embd, const mtft_head_options *o) {
    if (!o) return mtft__err(MTFT_EINVAL, "head options: NULL");
    if (o->version != MTFT_HEAD_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "head options: version %d, expected %d (start from MTFT_HEAD_OPTIONS_INIT)",
                         o->version, MTFT_HEAD_OPTIONS_VERSION);
    const char *nm = o->name ? o->name : "head";
    if (o->name && (o->name[0] == '\0' || strlen(o->name) > 200))
        return mtft__err(MTFT_EINVAL, "head options: name must have 1 to 200 characters");
    if (n_embd <= 0) return mtft__err(MTFT_EINVAL, "head '%s': n_embd %d must be > 0", nm, n_embd);
    const char *kn = mtft_head__kind_name(o->kind);
    if (!kn) return mtft__err(MTFT_EINVAL, "head '%s': unknown kind %d", nm, (int)o->kind);
    int min_labels = o->kind == MTFT_HEAD_CLASSIFICATION ? 2 : o->kind == MTFT_HEAD_LM ? 0 : 1;
    if (o->n_labels < min_labels)
        return mtft__err(MTFT_ERANGE, "head '%s': n_labels %d must be >= %d for a %s head", nm, o->n_labels,
                         min_labels, kn);
    if (!mtft_head__pool_name(o->pool)) return mtft__err(MTFT_EINVAL, "head '%s': unknown pool mode %d", nm, (int)o->pool);
    if (o->hidden_size < 0)
        return mtft__err(MTFT_ERANGE, "head '%s': hidden_size %d must be >= 0", nm, o->hidden_size);
    if (o->kind == MTFT_HEAD_LM && o->hidden_size > 0)
        return mtft__err(MTFT_EINVAL, "head '%s': an lm head has no hidden layer (hidden_size %d)", nm, o->hidden_size);
    if (!mtft_head__act_name(o->activation))
        return mtft__err(MTFT_EINVAL, "head '%s': unknown activation %d", nm, (int)o->activation);
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f))
        return mtft__err(MTFT_ERANGE, "head '%s': dropout %g outside [0, 1)", nm, (double)o->dropout);
    if (!(o->label_smoothing >= 0.0f && o->label_smoothing < 1.0f))
        return mtft__err(MTFT_ERANGE, "head '%s': label_smoothing %g outside [0, 1)", nm, (double)o->label_smoothing);
    if (o->label_smoothing > 0.0f && !ce_kind(o->kind))
        return mtft__err(MTFT_EINVAL, "head '%s': label_smoothing applies to cross-entropy heads, not %s", nm, kn);
    if (o->class_weights) {
        if (o->kind != MTFT_HEAD_CLASSIFICATION && o->kind != MTFT_HEAD_TOKEN_CLASSIFICATION)
            return mtft__err(MTFT_EINVAL, "head '%s': class_weights apply to classification and token_classification "
                                          "heads, not %s", nm, kn);
        double s = 0.0;
        for (int i = 0; i < o->n_labels; i++) {
            float w = o->class_weights[i];
            if (!(isfinite(w) && w >= 0.0f))
                return mtft__err(MTFT_ERANGE, "head '%s': class_weights[%d] = %g must be finite and >= 0", nm, i,
                                 (double)w);
            s += w;
        }
        if (!(s > 0.0)) return mtft__err(MTFT_ERANGE, "head '%s': class_weights are all 0", nm);
    }
    if (!mtft_head__loss_name(o->loss)) return mtft__err(MTFT_EINVAL, "head '%s': unknown loss %d", nm, (int)o->loss);
    if (o->kind == MTFT_HEAD_REGRESSION && o->loss == MTFT_HEAD_LOSS_HUBER && !(o->huber_delta > 0.0f && isfinite(o->huber_delta)))
        return mtft__err(MTFT_ERANGE, "head '%s': huber_delta %g must be > 0", nm, (double)o->huber_delta);
    if (!(o->threshold >= 0.0f && o->threshold <= 1.0f))
        return mtft__err(MTFT_ERANGE, "head '%s': threshold %g outside [0, 1]", nm, (double)o->threshold);
    return MTFT_OK;
}

static void init_normal(mtft_tensor *t, mtft_rng *r, double sd) {
    float *d = mtft_tensor_data(t);
    for (int64_t i = 0, n = mtft_tensor_numel(t); i < n; i++) d[i] = (float)(sd * mtft_rng_normal(r));
}

int mtft_head_new(mtft_head **out, int n_embd, const mtft_head_options *o, uint64_t seed) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    int rc = mtft_head__validate(n_embd, o);
    if (rc < 0) return rc;
    mtft_head *h = mtft__calloc(1, sizeof *h);
    if (!h) return mtft__err(MTFT_ENOMEM, "head: out of memory");
    h->o = *o;
    h->n_embd = n_embd;
    const int L = o->n_labels;
    h->name = mtft__strdup(o->name ? o->name : "head");
    char *gname = h->name ? mtft__malloc(strlen(h->name) + 6) : NULL;
    rc = gname ? MTFT_OK : MTFT_ENOMEM;
    if (rc == MTFT_OK && o->class_weights) {
        h->class_weights = mtft__malloc((size_t)L * sizeof(float));
        if (h->class_weights) memcpy(h->class_weights, o->class_weights, (size_t)L * sizeof(float));
        else rc = MTFT_ENOMEM;
    }
    if (rc == MTFT_OK && o->kind == MTFT_HEAD_REGRESSION) {
        h->mean = mtft__calloc((size_t)L, sizeof(float));
        h->std = mtft__malloc((size_t)L * sizeof(float));
        if (h->mean && h->std)
            for (int i = 0; i < L; i++) h->std[i] = 1.0f;
        else rc = MTFT_ENOMEM;
    }
    if (rc == MTFT_OK) {
        snprintf(gname, strlen(h->name) + 6, "head.%s", h->name);
        rc = mtft_param_group_new(&h->pg, gname);
    }
    mtft__free(gname);
    if (rc == MTFT_OK) {
        const int64_t C = n_embd, H = o->hidden_size;
        int64_t in = C;
        if (o->kind == MTFT_HEAD_LM) {
            if (L > 0) {
                const int64_t s[2] = {L, C};
                if (!(h->lm_w = mtft_param_group_add(h->pg, "lm_head.weight", 2, s))) rc = mtft_error_last()->code;
            }
        } else {
            if (H > 0) {
                const int64_t s[2] = {H, C}, sb[1] = {H};
                h->dense_w = mtft_param_group_add(h->pg, "dense.weight", 2, s);
                h->dense_b = h->dense_w ? mtft_param_group_add(h->pg, "dense.bias", 1, sb) : NULL;
                if (!h->dense_b) rc = mtft_error_last()->code;
                in = H;
            }
            const int64_t s[2] = {L, in}, sb[1] = {L};
            if (rc == MTFT_OK) {
                h->out_w = mtft_param_group_add(h->pg, "out_proj.weight", 2, s);
                h->out_b = h->out_w ? mtft_param_group_add(h->pg, "out_proj.bias", 1, sb) : NULL;
                if (!h->out_b) rc = mtft_error_last()->code;
            }
        }
    }
    if (rc == MTFT_OK) rc = mtft_param_group_alloc(h->pg);
    if (rc == MTFT_OK) rc = mtft_param_group_set_trainable(h->pg, 1);
    if (rc < 0) {
        if (rc == MTFT_ENOMEM) mtft__err(MTFT_ENOMEM, "head '%s': out of memory", o->name ? o->name : "head");
        mtft_head_free(h);
        return rc;
    }
    mtft_rng r;
    mtft_rng_seed(&r, seed);
    if (h->dense_w) init_normal(h->dense_w, &r, 0.02);
    if (h->out_w) init_normal(h->out_w, &r, 0.02);
    if (h->lm_w) init_normal(h->lm_w, &r, 0.02);
    h->o.name = h->name;
    h->o.class_weights = h->class_weights;
    *out = h;
    return MTFT_OK;
}

void mtft_head_free(mtft_head *h) {
    if (!h) return;
    mtft_param_group_free(h->pg);
    mtft__free(h->name);
    mtft__free(h->class_weights);
    mtft__free(h->mean);
    mtft__free(h->std);
    mtft__free(h);
}

const mtft_head_options *mtft_head_get_options(const mtft_head *h) { return h ? &h->o : NULL; }
int mtft_head_n_embd(const mtft_head *h) { return h ? h->n_embd : 0; }
mtft_param_group *mtft_head_group(mtft_head *h) { return h ? h->pg : NULL; }

int mtft_head_output_dim(const mtft_head *h, const mtft_model *m) {
    if (!h) return mtft__err(MTFT_EINVAL, "head_output_dim: NULL head");
    if (h->o.kind != MTFT_HEAD_LM || h->o.n_labels > 0) return h->o.n_labels;
    if (!m) return mtft__err(MTFT_EINVAL, "head '%s': an lm head on the model's LM head needs the model", h->name);
    return mtft_model_get_config(m)->vocab_size;
}

/* ---- regression target statistics ------------------------------------------ */
int mtft_head_set_target_stats(mtft_head *h, const float *mean, const float *std, int n) {
    MTFT_CHECK_ARG(h && mean && std);
    if (h->o.kind != MTFT_HEAD_REGRESSION)
        return mtft__err(MTFT_ESTATE, "head '%s': target stats exist for regression heads only (this one is %s)",
                         h->name, mtft_head__kind_name(h->o.kind));
    if (n != h->o.n_labels)
        return mtft__err(MTFT_ESHAPE, "head '%s': %d target stats given, the head has %d targets", h->name, n,
                         h->o.n_labels);
    for (int i = 0; i < n; i++) {
        if (!isfinite(mean[i]))
            return mtft__err(MTFT_ENUMERIC, "head '%s': mean[%d] = %g is not finite", h->name, i, (double)mean[i]);
        if (!(isfinite(std[i]) && std[i] > 0.0f))
            return mtft__err(MTFT_ERANGE, "head '%s': std[%d] = %g must be finite and > 0", h->name, i, (double)std[i]);
    }
    memcpy(h->mean, mean, (size_t)n * sizeof(float));
    memcpy(h->std, std, (size_t)n * sizeof(float));
    return MTFT_OK;
}

int mtft_head_fit_target_stats(mtft_head *h, const float *targets, int64_t n_rows, int64_t stride) {
    MTFT_CHECK_ARG(h && targets);
    if (h->o.kind != MTFT_HEAD_REGRESSION)
        return mtft__err(MTFT_ESTATE, "head '%s': target stats exist for regression heads only (this one is %s)",
                         h->name, mtft_head__kind_name(h->o.kind));
    const int L = h->o.n_labels;
    if (stride == 0) stride = L;
    if (n_rows < 1) return mtft__err(MTFT_ERANGE, "head '%s': fit_target_stats needs >= 1 row, got %lld", h->name,
                                     (long long)n_rows);
    if (stride < L)
        return mtft__err(MTFT_ERANGE, "head '%s': stride %lld < %d targets per row", h->name, (long long)stride, L);
    for (int j = 0; j < L; j++) {
        double s = 0.0;
        for (int64_t r = 0; r < n_rows; r++) {
            const float v = targets[r * stride + j];
            if (!isfinite(v))
                return mtft__err(MTFT_ENUMERIC, "head '%s': target %d of row %lld is %g", h->name, j, (long long)r,
                                 (double)v);
            s += v;
        }
        const double mu = s / (double)n_rows;
        double ss = 0.0;
        for (int64_t r = 0; r < n_rows; r++) {
            const double d = (double)targets[r * stride + j] - mu;
            ss += d * d;
        }
        const double sd = sqrt(ss / (double)n_rows);
        h->mean[j] = (float)mu;
        h->std[j] = (sd > 1e-12 * (fabs(mu) > 1.0 ? fabs(mu) : 1.0) && (float)sd > 0.0f) ? (float)sd : 1.0f;
    }
    return MTFT_OK;
}

int mtft_head_get_target_stats(const mtft_head *h, float *mean, float *std, int n) {
    MTFT_CHECK_ARG(h);
    if (h->o.kind != MTFT_HEAD_REGRESSION)
        return mtft__err(MTFT_ESTATE, "head '%s': target stats exist for regression heads only (this one is %s)",
                         h->name, mtft_head__kind_name(h->o.kind));
    if (n != h->o.n_labels)
        return mtft__err(MTFT_ESHAPE, "head '%s': room for %d target stats, the head has %d targets", h->name, n,
                         h->o.n_labels);
    if (mean) memcpy(mean, h->mean, (size_t)n * sizeof(float));
    if (std) memcpy(std, h->std, (size_t)n * sizeof(float));
    return MTFT_OK;
}

/* ---- forward -------------------------------------------------------------------- */
static mtft_tensor *hfail(const mtft_head *h, mtft_graph *g, int code, const char *fmt, ...) MTFT_PRINTF(4, 5);
static mtft_tensor *hfail(const mtft_head *h, mtft_graph *g, int code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mtft__op_fail(g, code, "head '%s': %s", h->name, msg);
}

/* Checks shared by forward, loss and predict; 0 when the call must return NULL. */
static int check_call(mtft_head *h, mtft_graph *g, mtft_tensor *hidden, const int32_t *valid_len, int row0) {
    if (!g) {
        mtft__err(MTFT_EINVAL, "head: NULL graph");
        return 0;
    }
    if (!h) {
        mtft__op_fail(g, MTFT_EINVAL, "head: NULL head");
        return 0;
    }
    if (g->status < 0 || !hidden) return 0; /* an earlier error already says why */
    char sx[64];
    if (hidden->ndim != 3 || hidden->ne[2] != h->n_embd) {
        hfail(h, g, MTFT_ESHAPE, "hidden %s does not fit the head (expected [b, T, %d])",
              mtft__shape_str(hidden, sx, sizeof sx), h->n_embd);
        return 0;
    }
    const int64_t b = hidden->ne[0], T = hidden->ne[1];
    for (int64_t r = 0; valid_len && r < b; r++)
        if (valid_len[r] < 1 || valid_len[r] > T) {
            hfail(h, g, MTFT_ERANGE, "valid_len %d of row %lld outside 1..%lld (hidden %s)", (int)valid_len[r],
                  (long long)(row0 + r), (long long)T, mtft__shape_str(hidden, sx, sizeof sx));
            return 0;
        }
    return 1;
}

static mtft_tensor *activation(mtft_graph *g, mtft_tensor *x, mtft_head_activation a) {
    switch (a) {
    case MTFT_HEAD_ACT_TANH: return mtft_tanh(g, x);
    case MTFT_HEAD_ACT_GELU: return mtft_gelu_erf(g, x);
    case MTFT_HEAD_ACT_GELU_TANH: return mtft_gelu_tanh(g, x);
    case MTFT_HEAD_ACT_RELU: return mtft_relu(g, x);
    }
    return NULL;
}

/* The input of the output layer after check_call: pooled or per-token,
 * dropout, optional hidden layer. */
static mtft_tensor *head_input(mtft_head *h, mtft_graph *g, mtft_tensor *hidden, const int32_t *valid_len) {
    mtft_tensor *x = hidden;
    if (seq_level(h->o.kind)) x = mtft_pool(g, x, valid_len, h->o.pool);
    else if (!mtft__contig(x)) x = mtft_contiguous(g, x);
    if (h->o.dropout > 0.0f) x = mtft_dropout(g, x, h->o.dropout);
    if (h->dense_w) {
        x = activation(g, mtft_linear(g, x, h->dense_w, h->dense_b), h->o.activation);
        if (h->o.dropout > 0.0f) x = mtft_dropout(g, x, h->o.dropout);
    }
    return x;
}

/* The output layer on x [..., C or H]. */
static mtft_tensor *head_proj(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *x) {
    if (!x) return NULL;
    if (h->o.kind != MTFT_HEAD_LM) return mtft_linear(g, x, h->out_w, h->out_b);
    if (h->lm_w) return mtft_linear(g, x, h->lm_w, NULL);
    if (!m) return hfail(h, g, MTFT_EINVAL, "an lm head on the model's LM head needs the model (m is NULL)");
    const int C = mtft_model_get_config(m)->n_embd;
    if (C != h->n_embd)
        return hfail(h, g, MTFT_ESHAPE, "head n_embd %d does not match the model's n_embd %d", h->n_embd, C);
    return mtft_model_logits(m, g, x);
}

/* The output after check_call. */
static mtft_tensor *head_out(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                             const int32_t *valid_len) {
    return head_proj(h, g, m, head_input(h, g, hidden, valid_len));
}

mtft_tensor *mtft_head_forward(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                               const int32_t *valid_len) {
    if (!check_call(h, g, hidden, valid_len, 0)) return NULL;
    return head_out(h, g, m, hidden, valid_len);
}

/* ---- losses ---------------------------------------------------------------------- */
/* PyTorch CrossEntropyLoss(weight=w, ignore_index=-100, label_smoothing=ls),
 * mean: logits [N, L] (leading dims flatten), tg N ints. */
static mtft_tensor *weighted_ce(mtft_graph *g, mtft_tensor *logits, const int32_t *tg, const float *w, float ls) {
    const int64_t L = logits->ne[logits->ndim - 1], N = mtft__rows(logits);
    mtft_tensor *lp = mtft_log_softmax(g, logits);
    if (!lp) return NULL;
    mtft_tensor *M = mtft__zeros(g, lp->ndim, lp->ne);
    if (!M) return NULL;
    double wsum = 0.0;
    for (int64_t i = 0; i < N; i++)
        if (tg[i] != MTFT_HEAD_IGNORE_INDEX) wsum += w[tg[i]];
    if (wsum > 0.0) {
        const double on = (1.0 - ls) / wsum, uni = (double)ls / (double)L / wsum;
        for (int64_t i = 0; i < N; i++) {
            const int32_t y = tg[i];
            if (y == MTFT_HEAD_IGNORE_INDEX) continue;
            float *mr = M->data + i * L;
            for (int64_t c = 0; c < L; c++) mr[c] = (float)(-uni * w[c]);
            mr[y] = (float)(mr[y] - on * w[y]);
        }
    }
    return mtft_sum(g, mtft_mul(g, lp, M));
}

/* Copy b rows of L floats (row stride `stride`) into arena memory, checking
 * each value; lo/hi bound the values when check_range. */
static float *gather_values(mtft_head *h, mtft_graph *g, const float *v, int64_t b, int L, int64_t stride,
                            int check_range, int row0) {
    if (stride == 0) stride = L;
    if (stride < L) {
        hfail(h, g, MTFT_ERANGE, "targets values_stride %lld < %d values per row", (long long)stride, L);
        return NULL;
    }
    float *dst = mtft__scratch(g, (size_t)(b * L) * sizeof(float));
    if (!dst) return NULL;
    for (int64_t r = 0; r < b; r++)
        for (int j = 0; j < L; j++) {
            const float x = v[r * stride + j];
            if (!isfinite(x) || (check_range && !(x >= 0.0f && x <= 1.0f))) {
                hfail(h, g, check_range ? MTFT_ERANGE : MTFT_ENUMERIC, "target %g at row %lld, label %d %s",
                      (double)x, (long long)(row0 + r), j, check_range ? "outside [0, 1]" : "is not finite");
                return NULL;
            }
            dst[r * L + j] = x;
        }
    return dst;
}

mtft_tensor *mtft_head__loss(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                             const int32_t *valid_len, const mtft_head_targets *t, int row0) {
    if (!check_call(h, g, hidden, valid_len, row0)) return NULL;
    if (!t) return hfail(h, g, MTFT_EINVAL, "targets is NULL");
    const int64_t b = hidden->ne[0], T = hidden->ne[1];
    const int L = h->o.n_labels;
    const char *kn = mtft_head__kind_name(h->o.kind);
    switch (h->o.kind) {
    case MTFT_HEAD_CLASSIFICATION: {
        if (!t->class_ids) return hfail(h, g, MTFT_EINVAL, "targets.class_ids is NULL (needed by a %s head)", kn);
        for (int64_t r = 0; r < b; r++) {
            const int32_t y = t->class_ids[r];
            if (y != MTFT_HEAD_IGNORE_INDEX && (y < 0 || y >= L))
                return hfail(h, g, MTFT_ERANGE, "label %d at row %lld outside [0, %d)", (int)y, (long long)(row0 + r), L);
        }
        mtft_tensor *out = head_out(h, g, m, hidden, valid_len);
        if (!out) return NULL;
        if (h->class_weights) return weighted_ce(g, out, t->class_ids, h->class_weights, h->o.label_smoothing);
        return mtft_cross_entropy(g, out, t->class_ids, MTFT_HEAD_IGNORE_INDEX, h->o.label_smoothing);
    }
    case MTFT_HEAD_MULTILABEL:
    case MTFT_HEAD_REGRESSION: {
        if (!t->values) return hfail(h, g, MTFT_EINVAL, "targets.values is NULL (needed by a %s head)", kn);
        const int multi = h->o.kind == MTFT_HEAD_MULTILABEL;
        float *y = gather_values(h, g, t->values, b, L, t->values_stride, multi, row0);
        if (!y) return NULL;
        mtft_tensor *out = head_out(h, g, m, hidden, valid_len);
        if (!out) return NULL;
        if (multi) return mtft_bce_logits(g, out, y, NULL);
        if (h->o.standardize)
            for (int64_t r = 0; r < b; r++)
                for (int j = 0; j < L; j++) y[r * L + j] = (y[r * L + j] - h->mean[j]) / h->std[j];
        if (h->o.loss == MTFT_HEAD_LOSS_HUBER) return mtft_huber(g, out, y, h->o.huber_delta);
        return mtft_mse(g, out, y);
    }
    case MTFT_HEAD_TOKEN_CLASSIFICATION:
    case MTFT_HEAD_LM: {
        if (!t->token_ids) return hfail(h, g, MTFT_EINVAL, "targets.token_ids is NULL (needed by a %s head)", kn);
        const int lm = h->o.kind == MTFT_HEAD_LM;
        int V = L;
        if (lm && V == 0) {
            if (!m) return hfail(h, g, MTFT_EINVAL, "an lm head on the model's LM head needs the model (m is NULL)");
            V = mtft_model_get_config(m)->vocab_size;
        }
        int32_t *tg = mtft__scratch(g, (size_t)(b * T) * sizeof(int32_t));
        if (!tg) return NULL;
        int64_t M = 0;
        for (int64_t r = 0; r < b; r++) {
            const int64_t len = valid_len ? valid_len[r] : T;
            for (int64_t s = 0; s < T; s++) {
                const int32_t y = t->token_ids[r * T + s];
                if (s >= len) {
                    tg[r * T + s] = MTFT_HEAD_IGNORE_INDEX;
                    continue;
                }
                if (y != MTFT_HEAD_IGNORE_INDEX && (y < 0 || y >= V))
                    return hfail(h, g, MTFT_ERANGE, "%s %d at row %lld, token %lld outside [0, %d)",
                                 lm ? "target token id" : "tag", (int)y, (long long)(row0 + r), (long long)s, V);
                tg[r * T + s] = y;
                M += y != MTFT_HEAD_IGNORE_INDEX;
            }
        }
        if (lm && M > 0 && M < b * T) {
            /* logits at the target tokens only: gather their rows, then the [V, C] projection */
            int32_t *idx = mtft__scratch(g, (size_t)M * sizeof(int32_t));
            int32_t *ty = mtft__scratch(g, (size_t)M * sizeof(int32_t));
            if (!idx || !ty) return NULL;
            int64_t j = 0;
            for (int64_t i = 0; i < b * T; i++)
                if (tg[i] != MTFT_HEAD_IGNORE_INDEX) {
                    idx[j] = (int32_t)i;
                    ty[j++] = tg[i];
                }
            mtft_tensor *x = head_input(h, g, hidden, valid_len);
            mtft_tensor *out = head_proj(h, g, m, x ? mtft_heads__gather_rows(g, x, idx, M) : NULL);
            if (!out) return NULL;
            return mtft_cross_entropy(g, out, ty, MTFT_HEAD_IGNORE_INDEX, h->o.label_smoothing);
        }
        mtft_tensor *out = head_out(h, g, m, hidden, valid_len);
        if (!out) return NULL;
        if (h->class_weights) return weighted_ce(g, out, tg, h->class_weights, h->o.label_smoothing);
        return mtft_cross_entropy(g, out, tg, MTFT_HEAD_IGNORE_INDEX, h->o.label_smoothing);
    }
    }
    return hfail(h, g, MTFT_EINVAL, "unknown kind %d", (int)h->o.kind);
}

mtft_tensor *mtft_head_loss(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden,
                            const int32_t *valid_len, const mtft_head_targets *targets) {
    return mtft_head__loss(h, g, m, hidden, valid_len, targets, 0);
}

/* ---- predictions ------------------------------------------------------------------- */
/* Softmax of n values into p (double accumulation); returns the argmax. */
static int32_t softmax_row(const float *x, int64_t n, float *p) {
    int64_t am = 0;
    for (int64_t j = 1; j < n; j++)
        if (x[j] > x[am]) am = j;
    if (p) {
        double s = 0.0;
        for (int64_t j = 0; j < n; j++) s += exp((double)x[j] - (double)x[am]);
        for (int64_t j = 0; j < n; j++) p[j] = (float)(exp((double)x[j] - (double)x[am]) / s);
    }
    return (int32_t)am;
}

int mtft_head_predict(mtft_head *h, mtft_graph *g, mtft_model *m, mtft_tensor *hidden, const int32_t *valid_len,
                      int32_t *ids, float *values) {
    if (!g || !h || !hidden) return mtft__err(MTFT_EINVAL, "head_predict: NULL graph, head or hidden");
    if (g->status < 0)
        return mtft__err(MTFT_ESTATE, "head '%s': predict on a graph holding an earlier error (%s); reset it first",
                         h->name, mtft_status_str(g->status));
    const int ge = g->grad_enabled, tr = g->training;
    g->grad_enabled = 0;
    g->training = 0;
    mtft_tensor *out = check_call(h, g, hidden, valid_len, 0) ? head_out(h, g, m, hidden, valid_len) : NULL;
    g->grad_enabled = ge;
    g->training = tr;
    if (!out) return g->status < 0 ? g->status : MTFT_ERROR;
    const int64_t b = hidden->ne[0], T = hidden->ne[1];
    const int64_t n = out->ne[out->ndim - 1];
    const float *o = out->data; /* linear outputs are contiguous */
    switch (h->o.kind) {
    case MTFT_HEAD_CLASSIFICATION:
        for (int64_t r = 0; r < b; r++) {
            int32_t a = softmax_row(o + r * n, n, values ? values + r * n : NULL);
            if (ids) ids[r] = a;
        }
        break;
    case MTFT_HEAD_MULTILABEL:
        for (int64_t i = 0; i < b * n; i++) {
            const double p = 1.0 / (1.0 + exp(-(double)o[i]));
            if (values) values[i] = (float)p;
            if (ids) ids[i] = (float)p >= h->o.threshold;
        }
        break;
    case MTFT_HEAD_REGRESSION:
        for (int64_t r = 0; values && r < b; r++)
            for (int64_t j = 0; j < n; j++)
                values[r * n + j] = h->o.standardize ? o[r * n + j] * h->std[j] + h->mean[j] : o[r * n + j];
        break;
    case MTFT_HEAD_TOKEN_CLASSIFICATION:
    case MTFT_HEAD_LM: {
        const int lm = h->o.kind == MTFT_HEAD_LM;
        for (int64_t r = 0; r < b; r++) {
            const int64_t len = valid_len ? valid_len[r] : T;
            for (int64_t s = 0; s < T; s++) {
                const float *x = o + (r * T + s) * n;
                float *v = values ? values + (r * T + s) * n : NULL;
                int32_t a;
                if (lm) {
                    if (v) memcpy(v, x, (size_t)n * sizeof(float));
                    a = softmax_row(x, n, NULL);
                } else {
                    a = softmax_row(x, n, v);
                }
                if (ids) ids[r * T + s] = s < len ? a : MTFT_HEAD_IGNORE_INDEX;
            }
        }
        break;
    }
    }
    return MTFT_OK;
}
