/* Evaluation metrics: one-shot functions and streaming accumulators.
 * Classification and tagging keep a confusion matrix; regression keeps the
 * values (Spearman needs ranks); generation keeps chrF statistics and an
 * exact-match count; LM keeps the NLL sum. All sums are in double or int64.
 * Formulas and the references they follow are in include/mtft/metrics.h and
 * docs/metrics.md. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_impl.h"

/* ---- names ----------------------------------------------------------------- */
static const char *const k_names[MTFT_METRIC_COUNT_] = {
    "accuracy", "macro_f1",     "mcc",          "pearson", "spearman",    "rmse", "mae",        "token_accuracy",
    "tag_micro_f1", "tag_macro_f1", "span_f1", "exact_match", "chrf", "perplexity", "nll"};

const char *mtft_metric_name(mtft_metric m) {
    return (int)m >= 0 && (int)m < MTFT_METRIC_COUNT_ ? k_names[m] : NULL;
}

int mtft_metric_from_name(const char *name, mtft_metric *out) {
    MTFT_CHECK_ARG(name && out);
    for (int i = 0; i < MTFT_METRIC_COUNT_; i++)
        if (strcmp(name, k_names[i]) == 0) {
            *out = (mtft_metric)i;
            return MTFT_OK;
        }
    return mtft__err(MTFT_ENOTFOUND, "metrics: unknown metric '%s'", name);
}

int mtft_metric_lower_is_better(mtft_metric m) {
    return m == MTFT_METRIC_RMSE || m == MTFT_METRIC_MAE || m == MTFT_METRIC_PERPLEXITY || m == MTFT_METRIC_NLL;
}

/* ---- checks ---------------------------------------------------------------- */
static int check_labels(const char *what, const int32_t *pred, const int32_t *gold, size_t n, int k) {
    for (size_t i = 0; i < n; i++) {
        if (gold[i] < 0 || gold[i] >= k)
            return mtft__err(MTFT_ERANGE, "%s: gold label %d at index %zu outside [0, %d)", what, (int)gold[i], i, k);
        if (pred[i] < 0 || pred[i] >= k)
            return mtft__err(MTFT_ERANGE, "%s: predicted label %d at index %zu outside [0, %d)", what, (int)pred[i],
                             i, k);
    }
    return MTFT_OK;
}

static int check_finite(const char *what, const float *pred, const float *gold, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(pred[i]))
            return mtft__err(MTFT_ENUMERIC, "%s: prediction %g at index %zu is not finite", what, (double)pred[i], i);
        if (!isfinite(gold[i]))
            return mtft__err(MTFT_ENUMERIC, "%s: gold value %g at index %zu is not finite", what, (double)gold[i], i);
    }
    return MTFT_OK;
}

#define CHECK_NONEMPTY(what, n)                                                   \
    do {                                                                          \
        if ((n) == 0) return mtft__err(MTFT_EINVAL, "%s: empty input", (what));   \
    } while (0)

/* ---- confusion-matrix metrics ---------------------------------------------- */
/* conf[g*k + p]: gold g predicted as p. skip: a label left out of F1 (-1: none). */
static double conf_accuracy(const int64_t *conf, int k) {
    int64_t ok = 0, all = 0;
    for (int g = 0; g < k; g++)
        for (int p = 0; p < k; p++) {
            all += conf[(size_t)g * (size_t)k + (size_t)p];
            if (g == p) ok += conf[(size_t)g * (size_t)k + (size_t)p];
        }
    return all ? (double)ok / (double)all : 0.0;
}

static void conf_tp_fp_fn(const int64_t *conf, int k, int c, int64_t *tp, int64_t *fp, int64_t *fn) {
    int64_t row = 0, col = 0;
    for (int j = 0; j < k; j++) {
        row += conf[(size_t)c * (size_t)k + (size_t)j];
        col += conf[(size_t)j * (size_t)k + (size_t)c];
    }
    *tp = conf[(size_t)c * (size_t)k + (size_t)c];
    *fn = row - *tp;
    *fp = col - *tp;
}

/* Mean over labels present in gold or pred (sklearn's unique_labels). */
static double conf_macro_f1(const int64_t *conf, int k, int skip, int *defined) {
    double sum = 0.0;
    int present = 0;
    for (int c = 0; c < k; c++) {
        if (c == skip) continue;
        int64_t tp, fp, fn;
        conf_tp_fp_fn(conf, k, c, &tp, &fp, &fn);
        if (tp + fp + fn == 0) continue;
        sum += 2.0 * (double)tp / (double)(2 * tp + fp + fn);
        present++;
    }
    *defined = present > 0;
    return present ? sum / present : 0.0;
}

static double conf_micro_f1(const int64_t *conf, int k, int skip, int *defined) {
    int64_t TP = 0, FP = 0, FN = 0;
    for (int c = 0; c < k; c++) {
        if (c == skip) continue;
        int64_t tp, fp, fn;
        conf_tp_fp_fn(conf, k, c, &tp, &fp, &fn);
        TP += tp;
        FP += fp;
        FN += fn;
    }
    *defined = 2 * TP + FP + FN > 0;
    return *defined ? 2.0 * (double)TP / (double)(2 * TP + FP + FN) : 0.0;
}

/* sklearn.metrics.matthews_corrcoef:
 *   cov(yt,yp) = c*s - t.p,  cov(yp,yp) = s^2 - p.p,  cov(yt,yt) = s^2 - t.t
 * with t, p the per-class true and predicted counts, c correct, s samples. */
static double conf_mcc(const int64_t *conf, int k, int *defined) {
    double c = 0, s = 0, tp = 0, pp = 0, tt = 0;
    for (int i = 0; i < k; i++) {
        double ti = 0, pi = 0;
        for (int j = 0; j < k; j++) {
            ti += (double)conf[(size_t)i * (size_t)k + (size_t)j];
            pi += (double)conf[(size_t)j * (size_t)k + (size_t)i];
        }
        c += (double)conf[(size_t)i * (size_t)k + (size_t)i];
        s += ti;
        tp += ti * pi;
        pp += pi * pi;
        tt += ti * ti;
    }
    double cov_tp = c * s - tp, cov_pp = s * s - pp, cov_tt = s * s - tt;
    if (cov_pp * cov_tt == 0.0) {
        *defined = 0;
        return 0.0;
    }
    *defined = 1;
    return cov_tp / sqrt(cov_tt * cov_pp);
}

static int64_t *conf_build(const int32_t *pred, const int32_t *gold, size_t n, int k) {
    int64_t *conf = mtft__calloc((size_t)k * (size_t)k, sizeof *conf);
    if (!conf) return NULL;
    for (size_t i = 0; i < n; i++) conf[(size_t)gold[i] * (size_t)k + (size_t)pred[i]]++;
    return conf;
}

int mtft_metric_accuracy(const int32_t *pred, const int32_t *gold, size_t n, double *out) {
    MTFT_CHECK_ARG(pred && gold && out);
    CHECK_NONEMPTY("accuracy", n);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += pred[i] == gold[i];
    *out = (double)ok / (double)n;
    return MTFT_OK;
}

static int label_metric(const char *what, const int32_t *pred, const int32_t *gold, size_t n, int k, double *out,
                        int mcc) {
    MTFT_CHECK_ARG(pred && gold && out);
    CHECK_NONEMPTY(what, n);
    if (k < 1) return mtft__err(MTFT_EINVAL, "%s: n_classes %d must be >= 1", what, k);
    int rc = check_labels(what, pred, gold, n, k);
    if (rc < 0) return rc;
    int64_t *conf = conf_build(pred, gold, n, k);
    if (!conf) return MTFT_ENOMEM;
    int def = 0;
    *out = mcc ? conf_mcc(conf, k, &def) : conf_macro_f1(conf, k, -1, &def);
    mtft__free(conf);
    return MTFT_OK;
}

int mtft_metric_macro_f1(const int32_t *pred, const int32_t *gold, size_t n, int n_classes, double *out) {
    return label_metric("macro_f1", pred, gold, n, n_classes, out, 0);
}

int mtft_metric_mcc(const int32_t *pred, const int32_t *gold, size_t n, int n_classes, double *out) {
    return label_metric("mcc", pred, gold, n, n_classes, out, 1);
}

/* ---- regression ------------------------------------------------------------ */
static double pearson_d(const double *x, const double *y, size_t n, int *defined) {
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (n < 2 || sxx == 0.0 || syy == 0.0) {
        *defined = 0;
        return NAN;
    }
    *defined = 1;
    double r = sxy / sqrt(sxx * syy);
    return r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
}

typedef struct vi {
    double v;
    size_t i;
} vi;

static int vi_cmp(const void *a, const void *b) {
    double x = ((const vi *)a)->v, y = ((const vi *)b)->v;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Average ranks (1-based), as scipy.stats.rankdata(method='average'). */
static int rank_avg(const double *x, size_t n, double *rank) {
    vi *t = mtft__malloc(n * sizeof *t);
    if (!t) return MTFT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        t[i].v = x[i];
        t[i].i = i;
    }
    qsort(t, n, sizeof *t, vi_cmp);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && t[j].v == t[i].v) j++;
        double r = 0.5 * (double)(i + 1 + j); /* mean of ranks i+1 .. j */
        for (size_t k = i; k < j; k++) rank[t[k].i] = r;
        i = j;
    }
    mtft__free(t);
    return MTFT_OK;
}

static int spearman_d(const double *x, const double *y, size_t n, double *out, int *defined) {
    double *r = mtft__malloc(2 * n * sizeof *r);
    if (!r) return MTFT_ENOMEM;
    int rc = rank_avg(x, n, r);
    if (rc == MTFT_OK) rc = rank_avg(y, n, r + n);
    if (rc == MTFT_OK) *out = pearson_d(r, r + n, n, defined);
    mtft__free(r);
    return rc;
}

static void err_d(const double *x, const double *y, size_t n, double *rmse, double *mae) {
    double s2 = 0, s1 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - y[i];
        s2 += d * d;
        s1 += fabs(d);
    }
    *rmse = sqrt(s2 / (double)n);
    *mae = s1 / (double)n;
}

/* Copies two float arrays to doubles after checks. */
static int to_doubles(const char *what, const float *pred, const float *gold, size_t n, double **out) {
    if (!pred || !gold || !out) return mtft__err(MTFT_EINVAL, "%s: NULL argument", what);
    CHECK_NONEMPTY(what, n);
    int rc = check_finite(what, pred, gold, n);
    if (rc < 0) return rc;
    double *d = mtft__malloc(2 * n * sizeof *d);
    if (!d) return MTFT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        d[i] = pred[i];
        d[n + i] = gold[i];
    }
    *out = d;
    return MTFT_OK;
}

enum { REG_PEARSON, REG_SPEARMAN, REG_RMSE, REG_MAE };

static int reg_metric(const char *what, int which, const float *pred, const float *gold, size_t n, double *out) {
    double *d = NULL;
    int rc = to_doubles(what, pred, gold, n, &d);
    if (rc < 0) return rc;
    int def = 0;
    double rmse, mae;
    switch (which) {
    case REG_PEARSON: *out = pearson_d(d, d + n, n, &def); break;
    case REG_SPEARMAN: rc = spearman_d(d, d + n, n, out, &def); break;
    default:
        err_d(d, d + n, n, &rmse, &mae);
        *out = which == REG_RMSE ? rmse : mae;
    }
    mtft__free(d);
    return rc;
}

int mtft_metric_pearson(const float *pred, const float *gold, size_t n, double *out) {
    return reg_metric("pearson", REG_PEARSON, pred, gold, n, out);
}
int mtft_metric_spearman(const float *pred, const float *gold, size_t n, double *out) {
    return reg_metric("spearman", REG_SPEARMAN, pred, gold, n, out);
}
int mtft_metric_rmse(const float *pred, const float *gold, size_t n, double *out) {
    return reg_metric("rmse", REG_RMSE, pred, gold, n, out);
}
int mtft_metric_mae(const float *pred, const float *gold, size_t n, double *out) {
    return reg_metric("mae", REG_MAE, pred, gold, n, out);
}

/* ---- tokens ---------------------------------------------------------------- */
int mtft_metric_token_accuracy(const int32_t *pred, const int32_t *gold, size_t n, int32_t ignore_index,
                               double *out) {
    MTFT_CHECK_ARG(pred && gold && out);
    size_t ok = 0, all = 0;
    for (size_t i = 0; i < n; i++) {
        if (gold[i] == ignore_index) continue;
        all++;
        ok += pred[i] == gold[i];
    }
    if (all == 0)
        return mtft__err(MTFT_EINVAL, "token_accuracy: empty input (%zu tokens, all gold == %d)", n,
                         (int)ignore_index);
    *out = (double)ok / (double)all;
    return MTFT_OK;
}

int mtft_metric_perplexity(const float *nll, size_t n, double *out) {
    MTFT_CHECK_ARG(nll && out);
    CHECK_NONEMPTY("perplexity", n);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(nll[i]))
            return mtft__err(MTFT_ENUMERIC, "perplexity: NLL %g at index %zu is not finite", (double)nll[i], i);
        s += nll[i];
    }
    *out = exp(s / (double)n);
    return MTFT_OK;
}

/* ---- text ------------------------------------------------------------------ */
static int is_ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Next normalised byte of s at *i: whitespace runs become one ' ', leading
 * and trailing whitespace vanish, ASCII letters are lowercased. 0 at end. */
static int norm_next(const unsigned char *s, size_t *i) {
    if (*i == 0)
        while (is_ascii_space(s[*i])) (*i)++;
    if (!s[*i]) return 0;
    if (is_ascii_space(s[*i])) {
        while (is_ascii_space(s[*i])) (*i)++;
        return s[*i] ? ' ' : 0;
    }
    return tolower(s[(*i)++]);
}

static int text_equal(const char *a, const char *b, int normalize) {
    if (!normalize) return strcmp(a, b) == 0;
    size_t i = 0, j = 0;
    for (;;) {
        int x = norm_next((const unsigned char *)a, &i), y = norm_next((const unsigned char *)b, &j);
        if (x != y) return 0;
        if (!x) return 1;
    }
}

static int check_texts(const char *what, const char *const *hyp, const char *const *ref, size_t n) {
    if (!hyp || !ref) return mtft__err(MTFT_EINVAL, "%s: NULL argument", what);
    for (size_t i = 0; i < n; i++)
        if (!hyp[i] || !ref[i])
            return mtft__err(MTFT_EINVAL, "%s: %s %zu is NULL", what, hyp[i] ? "reference" : "hypothesis", i);
    return MTFT_OK;
}

int mtft_metric_exact_match(const char *const *hyp, const char *const *ref, size_t n, int normalize, double *out) {
    MTFT_CHECK_ARG(out);
    int rc = check_texts("exact_match", hyp, ref, n);
    if (rc < 0) return rc;
    CHECK_NONEMPTY("exact_match", n);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += (size_t)text_equal(hyp[i], ref[i], normalize);
    *out = (double)ok / (double)n;
    return MTFT_OK;
}

int mtft_metric_chrf(const char *const *hyp, const char *const *ref, size_t n, double *out) {
    MTFT_CHECK_ARG(out);
    int rc = check_texts("chrf", hyp, ref, n);
    if (rc < 0) return rc;
    CHECK_NONEMPTY("chrf", n);
    int64_t st[3 * MTFT_CHRF_ORDER] = {0};
    for (size_t i = 0; i < n; i++)
        if ((rc = mtft_metrics__chrf_add(st, hyp[i], ref[i], i)) < 0) return rc;
    *out = mtft_metrics__chrf_score(st);
    return MTFT_OK;
}

/* ---- Δm -------------------------------------------------------------------- */
int mtft_delta_m(const double *mtl, const double *single, const int *lower_is_better, int k, double *out) {
    MTFT_CHECK_ARG(mtl && single && lower_is_better && out);
    if (k < 1) return mtft__err(MTFT_EINVAL, "delta_m: need at least one task (k = %d)", k);
    double s = 0;
    for (int i = 0; i < k; i++) {
        if (!isfinite(single[i]) || single[i] == 0.0)
            return mtft__err(MTFT_ERANGE, "delta_m: single-task baseline %d is %g (must be finite and non-zero)", i,
                             single[i]);
        if (!isfinite(mtl[i]))
            return mtft__err(MTFT_ERANGE, "delta_m: multitask value %d is %g (must be finite)", i, mtl[i]);
        double rel = (mtl[i] - single[i]) / single[i];
        s += lower_is_better[i] ? -rel : rel;
    }
    *out = s / k;
    return MTFT_OK;
}

/* ---- accumulators ---------------------------------------------------------- */
#define MAX_RES 8

struct mtft_metrics {
    mtft_metrics_options o;
    char **names;  /* tagging: copies of the tag names, or NULL */
    char *prefix;  /* tagging: scheme letter per tag (BIO/IOBES names) */
    int *type;     /* tagging: entity type id per tag (-1 for O) */
    int bio;       /* tagging: names are BIO/IOBES-shaped, span_f1 reported */
    int o_tag;     /* tagging: index of "O" or -1 */
    int64_t *conf; /* classification, tagging: n_classes^2 */
    double *pv, *gv;
    size_t nv, capv;
    int64_t span_tp, span_pred, span_gold;
    int64_t chrf[3 * MTFT_CHRF_ORDER];
    int64_t em_hits;
    double nll_sum;
    int64_t n;
    int computed, n_res;
    mtft_metric res_id[MAX_RES];
    double res_val[MAX_RES];
    int res_def[MAX_RES];
};

/* Parse tag names: BIO/IOBES when every name is "O" or "<B|I|E|S>-type". */
static int parse_tags(mtft_metrics *m) {
    int k = m->o.n_classes;
    m->names = mtft__calloc((size_t)k, sizeof *m->names);
    m->prefix = mtft__calloc((size_t)k, 1);
    m->type = mtft__calloc((size_t)k, sizeof *m->type);
    if (!m->names || !m->prefix || !m->type) return MTFT_ENOMEM;
    m->bio = 1;
    m->o_tag = -1;
    for (int t = 0; t < k; t++) {
        const char *s = m->o.tag_names[t];
        if (!s) return mtft__err(MTFT_EINVAL, "metrics: tag_names[%d] is NULL", t);
        if (!(m->names[t] = mtft__strdup(s))) return MTFT_ENOMEM;
        if (strcmp(s, "O") == 0) {
            if (m->o_tag < 0) m->o_tag = t;
            m->prefix[t] = 'O';
            m->type[t] = -1;
        } else if (strchr("BIES", s[0]) && s[0] && s[1] == '-' && s[2]) {
            m->prefix[t] = s[0];
            m->type[t] = t; /* provisional: the first tag with the same type names it */
            for (int u = 0; u < t; u++)
                if (m->prefix[u] && m->prefix[u] != 'O' && strcmp(m->names[u] + 2, s + 2) == 0) {
                    m->type[t] = m->type[u];
                    break;
                }
        } else {
            m->bio = 0;
        }
    }
    return MTFT_OK;
}

int mtft_metrics_new(mtft_metrics **out, const mtft_metrics_options *o) {
    MTFT_CHECK_ARG(out && o);
    *out = NULL;
    if (o->version < 1 || o->version > MTFT_METRICS_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "metrics options: unknown version %d", o->version);
    if (o->kind < MTFT_METRICS_CLASSIFICATION || o->kind > MTFT_METRICS_LM)
        return mtft__err(MTFT_EINVAL, "metrics options: unknown kind %d", o->kind);
    int labelled = o->kind == MTFT_METRICS_CLASSIFICATION || o->kind == MTFT_METRICS_TAGGING;
    if (labelled && (o->n_classes < 1 || o->n_classes > 65536))
        return mtft__err(MTFT_EINVAL, "metrics options: n_classes %d must be in [1, 65536]", o->n_classes);
    mtft_metrics *m = mtft__calloc(1, sizeof *m);
    if (!m) return MTFT_ENOMEM;
    m->o = *o;
    m->o.tag_names = NULL;
    m->o_tag = -1;
    int rc = MTFT_OK;
    if (labelled) {
        m->conf = mtft__calloc((size_t)o->n_classes * (size_t)o->n_classes, sizeof *m->conf);
        if (!m->conf) rc = MTFT_ENOMEM;
    }
    if (rc == MTFT_OK && o->kind == MTFT_METRICS_TAGGING && o->tag_names) {
        m->o.tag_names = o->tag_names; /* read by parse_tags only */
        rc = parse_tags(m);
        m->o.tag_names = NULL;
    }
    if (rc < 0) {
        mtft_metrics_free(m);
        return rc;
    }
    *out = m;
    return MTFT_OK;
}

void mtft_metrics_free(mtft_metrics *m) {
    if (!m) return;
    if (m->names)
        for (int t = 0; t < m->o.n_classes; t++) mtft__free(m->names[t]);
    mtft__free(m->names);
    mtft__free(m->prefix);
    mtft__free(m->type);
    mtft__free(m->conf);
    mtft__free(m->pv);
    mtft__free(m->gv);
    mtft__free(m);
}

void mtft_metrics_reset(mtft_metrics *m) {
    if (!m) return;
    if (m->conf) memset(m->conf, 0, (size_t)m->o.n_classes * (size_t)m->o.n_classes * sizeof *m->conf);
    m->nv = 0;
    m->span_tp = m->span_pred = m->span_gold = 0;
    memset(m->chrf, 0, sizeof m->chrf);
    m->em_hits = 0;
    m->nll_sum = 0;
    m->n = 0;
    m->computed = 0;
    m->n_res = 0;
}

int mtft_metrics_kind_of(const mtft_metrics *m) { return m ? m->o.kind : -1; }
int64_t mtft_metrics_n(const mtft_metrics *m) { return m ? m->n : 0; }

static int want_kind(const mtft_metrics *m, int kind, const char *fn) {
    if (m->o.kind != kind)
        return mtft__err(MTFT_ESTATE, "metrics: %s does not fit an accumulator of kind %d", fn, m->o.kind);
    return MTFT_OK;
}

int mtft_metrics_add_labels(mtft_metrics *m, const int32_t *pred, const int32_t *gold, size_t n) {
    MTFT_CHECK_ARG(m && (n == 0 || (pred && gold)));
    int rc = want_kind(m, MTFT_METRICS_CLASSIFICATION, "add_labels");
    if (rc == MTFT_OK) rc = check_labels("metrics: add_labels", pred, gold, n, m->o.n_classes);
    if (rc < 0) return rc;
    size_t k = (size_t)m->o.n_classes;
    for (size_t i = 0; i < n; i++) m->conf[(size_t)gold[i] * k + (size_t)pred[i]]++;
    m->n += (int64_t)n;
    m->computed = 0;
    return MTFT_OK;
}

int mtft_metrics_add_values(mtft_metrics *m, const float *pred, const float *gold, size_t n) {
    MTFT_CHECK_ARG(m && (n == 0 || (pred && gold)));
    int rc = want_kind(m, MTFT_METRICS_REGRESSION, "add_values");
    if (rc == MTFT_OK) rc = check_finite("metrics: add_values", pred, gold, n);
    if (rc < 0) return rc;
    if (m->nv + n > m->capv) {
        size_t cap = m->capv ? m->capv : 256;
        while (cap < m->nv + n) cap *= 2;
        double *p = mtft__realloc(m->pv, cap * sizeof *p);
        if (!p) return MTFT_ENOMEM;
        m->pv = p;
        double *g = mtft__realloc(m->gv, cap * sizeof *g);
        if (!g) return MTFT_ENOMEM;
        m->gv = g;
        m->capv = cap;
    }
    for (size_t i = 0; i < n; i++) {
        m->pv[m->nv + i] = pred[i];
        m->gv[m->nv + i] = gold[i];
    }
    m->nv += n;
    m->n += (int64_t)n;
    m->computed = 0;
    return MTFT_OK;
}

/* Spans of one sequence, collected for matching. */
typedef struct span {
    size_t s, e;
    int type;
} span;
typedef struct span_list {
    span *v;
    size_t n;
} span_list;

static void span_push(int type, size_t start, size_t end, void *payload) {
    span_list *l = payload;
    l->v[l->n].s = start;
    l->v[l->n].e = end;
    l->v[l->n].type = type;
    l->n++;
}

/* Exact (type, start, end) matches between two start-ordered, disjoint lists. */
static int64_t span_matches(const span_list *a, const span_list *b) {
    size_t i = 0, j = 0;
    int64_t tp = 0;
    while (i < a->n && j < b->n) {
        if (a->v[i].s < b->v[j].s) i++;
        else if (a->v[i].s > b->v[j].s) j++;
        else {
            tp += a->v[i].e == b->v[j].e && a->v[i].type == b->v[j].type;
            i++;
            j++;
        }
    }
    return tp;
}

int mtft_metrics_add_tags(mtft_metrics *m, const int32_t *pred, const int32_t *gold, size_t n_seqs,
                          size_t seq_len) {
    MTFT_CHECK_ARG(m && (n_seqs == 0 || seq_len == 0 || (pred && gold)));
    int rc = want_kind(m, MTFT_METRICS_TAGGING, "add_tags");
    if (rc < 0) return rc;
    int k = m->o.n_classes;
    size_t total = n_seqs * seq_len;
    if (seq_len && total / seq_len != n_seqs) return mtft__err(MTFT_ERANGE, "metrics: add_tags: size overflow");
    for (size_t i = 0; i < total; i++) {
        if (gold[i] == m->o.ignore_index) continue;
        if (gold[i] < 0 || gold[i] >= k)
            return mtft__err(MTFT_ERANGE, "metrics: add_tags: gold tag %d at sequence %zu position %zu outside [0, %d)",
                             (int)gold[i], i / seq_len, i % seq_len, k);
        if (pred[i] < 0 || pred[i] >= k)
            return mtft__err(MTFT_ERANGE,
                             "metrics: add_tags: predicted tag %d at sequence %zu position %zu outside [0, %d)",
                             (int)pred[i], i / seq_len, i % seq_len, k);
    }
    int32_t *cp = NULL;
    span *sv = NULL;
    if (m->bio && total) {
        cp = mtft__malloc(2 * seq_len * sizeof *cp);
        sv = mtft__malloc(2 * seq_len * sizeof *sv);
        if (!cp || !sv) {
            mtft__free(cp);
            mtft__free(sv);
            return MTFT_ENOMEM;
        }
    }
    for (size_t b = 0; b < n_seqs; b++) {
        const int32_t *p = pred + b * seq_len, *g = gold + b * seq_len;
        size_t len = 0;
        for (size_t t = 0; t < seq_len; t++) {
            if (g[t] == m->o.ignore_index) continue;
            m->conf[(size_t)g[t] * (size_t)k + (size_t)p[t]]++;
            m->n++;
            if (cp) {
                cp[len] = p[t];
                cp[seq_len + len] = g[t];
            }
            len++;
        }
        if (cp && len) {
            span_list lp = {sv, 0}, lg = {sv + seq_len, 0};
            mtft_metrics__spans(cp, len, m->prefix, m->type, span_push, &lp);
            mtft_metrics__spans(cp + seq_len, len, m->prefix, m->type, span_push, &lg);
            m->span_pred += (int64_t)lp.n;
            m->span_gold += (int64_t)lg.n;
            m->span_tp += span_matches(&lp, &lg);
        }
    }
    mtft__free(cp);
    mtft__free(sv);
    m->computed = 0;
    return MTFT_OK;
}

int mtft_metrics_add_text(mtft_metrics *m, const char *const *hyp, const char *const *ref, size_t n) {
    MTFT_CHECK_ARG(m);
    int rc = want_kind(m, MTFT_METRICS_GENERATION, "add_text");
    if (rc == MTFT_OK && n) rc = check_texts("metrics: add_text", hyp, ref, n);
    if (rc < 0) return rc;
    int64_t st[3 * MTFT_CHRF_ORDER] = {0};
    int64_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = mtft_metrics__chrf_add(st, hyp[i], ref[i], i)) < 0) return rc;
        hits += text_equal(hyp[i], ref[i], m->o.normalize_text);
    }
    for (int j = 0; j < 3 * MTFT_CHRF_ORDER; j++) m->chrf[j] += st[j];
    m->em_hits += hits;
    m->n += (int64_t)n;
    m->computed = 0;
    return MTFT_OK;
}

int mtft_metrics_add_nll(mtft_metrics *m, double nll_sum, int64_t n_tokens) {
    MTFT_CHECK_ARG(m);
    int rc = want_kind(m, MTFT_METRICS_LM, "add_nll");
    if (rc < 0) return rc;
    if (n_tokens < 0) return mtft__err(MTFT_EINVAL, "metrics: add_nll: n_tokens %lld < 0", (long long)n_tokens);
    if (!isfinite(nll_sum)) return mtft__err(MTFT_ENUMERIC, "metrics: add_nll: NLL sum %g is not finite", nll_sum);
    m->nll_sum += nll_sum;
    m->n += n_tokens;
    m->computed = 0;
    return MTFT_OK;
}

static void res(mtft_metrics *m, mtft_metric id, double v, int defined) {
    m->res_id[m->n_res] = id;
    m->res_val[m->n_res] = v;
    m->res_def[m->n_res] = defined;
    m->n_res++;
}

int mtft_metrics_compute(mtft_metrics *m) {
    MTFT_CHECK_ARG(m);
    if (m->n == 0) return mtft__err(MTFT_EINVAL, "metrics: compute on empty input (nothing was added)");
    m->n_res = 0;
    m->computed = 0;
    int k = m->o.n_classes, def = 0;
    double v;
    switch (m->o.kind) {
    case MTFT_METRICS_CLASSIFICATION:
        res(m, MTFT_METRIC_ACCURACY, conf_accuracy(m->conf, k), 1);
        v = conf_macro_f1(m->conf, k, -1, &def);
        res(m, MTFT_METRIC_MACRO_F1, v, def);
        v = conf_mcc(m->conf, k, &def);
        res(m, MTFT_METRIC_MCC, v, def);
        break;
    case MTFT_METRICS_REGRESSION: {
        double rmse, mae;
        v = pearson_d(m->pv, m->gv, m->nv, &def);
        res(m, MTFT_METRIC_PEARSON, v, def);
        int rc = spearman_d(m->pv, m->gv, m->nv, &v, &def);
        if (rc < 0) {
            m->n_res = 0;
            return rc;
        }
        res(m, MTFT_METRIC_SPEARMAN, v, def);
        err_d(m->pv, m->gv, m->nv, &rmse, &mae);
        res(m, MTFT_METRIC_RMSE, rmse, 1);
        res(m, MTFT_METRIC_MAE, mae, 1);
        break;
    }
    case MTFT_METRICS_TAGGING:
        res(m, MTFT_METRIC_TOKEN_ACCURACY, conf_accuracy(m->conf, k), 1);
        v = conf_micro_f1(m->conf, k, m->o_tag, &def);
        res(m, MTFT_METRIC_TAG_MICRO_F1, v, def);
        v = conf_macro_f1(m->conf, k, m->o_tag, &def);
        res(m, MTFT_METRIC_TAG_MACRO_F1, v, def);
        if (m->bio) {
            double p = m->span_pred ? (double)m->span_tp / (double)m->span_pred : 0.0;
            double r = m->span_gold ? (double)m->span_tp / (double)m->span_gold : 0.0;
            res(m, MTFT_METRIC_SPAN_F1, p + r > 0 ? 2 * p * r / (p + r) : 0.0, m->span_pred + m->span_gold > 0);
        }
        break;
    case MTFT_METRICS_GENERATION:
        res(m, MTFT_METRIC_EXACT_MATCH, (double)m->em_hits / (double)m->n, 1);
        res(m, MTFT_METRIC_CHRF, mtft_metrics__chrf_score(m->chrf), 1);
        break;
    default: /* LM */
        res(m, MTFT_METRIC_PERPLEXITY, exp(m->nll_sum / (double)m->n), 1);
        res(m, MTFT_METRIC_NLL, m->nll_sum / (double)m->n, 1);
    }
    m->computed = 1;
    return MTFT_OK;
}

int mtft_metrics_count(const mtft_metrics *m) { return m && m->computed ? m->n_res : 0; }

int mtft_metrics_metric(const mtft_metrics *m, int i, mtft_metric *out) {
    MTFT_CHECK_ARG(m && out);
    if (!m->computed) return mtft__err(MTFT_ESTATE, "metrics: call mtft_metrics_compute first");
    if (i < 0 || i >= m->n_res) return mtft__err(MTFT_ERANGE, "metrics: index %d outside [0, %d)", i, m->n_res);
    *out = m->res_id[i];
    return MTFT_OK;
}

int mtft_metrics_value(const mtft_metrics *m, mtft_metric which, double *value, int *defined) {
    MTFT_CHECK_ARG(m && value);
    if (!m->computed) return mtft__err(MTFT_ESTATE, "metrics: call mtft_metrics_compute first");
    for (int i = 0; i < m->n_res; i++)
        if (m->res_id[i] == which) {
            *value = m->res_val[i];
            if (defined) *defined = m->res_def[i];
            return MTFT_OK;
        }
    const char *name = mtft_metric_name(which);
    return mtft__err(MTFT_ENOTFOUND, "metrics: '%s' is not reported by an accumulator of kind %d%s",
                     name ? name : "?", m->o.kind,
                     which == MTFT_METRIC_SPAN_F1 ? " (span_f1 needs BIO/IOBES tag_names)" : "");
}

/* One-shot span F1 through a tagging accumulator. */
int mtft_metric_span_f1(const int32_t *pred, const int32_t *gold, size_t n_seqs, size_t seq_len,
                        const char *const *tag_names, int n_tags, int32_t ignore_index, double *out) {
    MTFT_CHECK_ARG(pred && gold && tag_names && out);
    mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
    o.kind = MTFT_METRICS_TAGGING;
    o.n_classes = n_tags;
    o.tag_names = tag_names;
    o.ignore_index = ignore_index;
    mtft_metrics *m = NULL;
    int rc = mtft_metrics_new(&m, &o);
    if (rc < 0) return rc;
    if (!m->bio) rc = mtft__err(MTFT_EUNSUPPORTED, "span_f1: tag names are not BIO/IOBES-shaped (\"O\", \"B-x\", ...)");
    if (rc == MTFT_OK) rc = mtft_metrics_add_tags(m, pred, gold, n_seqs, seq_len);
    if (rc == MTFT_OK && m->n == 0) rc = mtft__err(MTFT_EINVAL, "span_f1: empty input");
    if (rc == MTFT_OK) rc = mtft_metrics_compute(m);
    if (rc == MTFT_OK) rc = mtft_metrics_value(m, MTFT_METRIC_SPAN_F1, out, NULL);
    mtft_metrics_free(m);
    return rc;
}
