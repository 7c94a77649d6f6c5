/* mtft: evaluation metrics per task, and the multitask summary Δm.
 *
 * Metrics work on plain arrays (no tensors). Two ways to use them:
 *
 *   one-shot:   double acc;  mtft_metric_accuracy(pred, gold, n, &acc);
 *
 *   streaming:  mtft_metrics_options o = MTFT_METRICS_OPTIONS_INIT;
 *               o.kind = MTFT_METRICS_CLASSIFICATION;  o.n_classes = 3;
 *               mtft_metrics *m;  mtft_metrics_new(&m, &o);
 *               for (each eval batch) mtft_metrics_add_labels(m, pred, gold, n);
 *               mtft_metrics_compute(m);
 *               double f1;  int defined;
 *               mtft_metrics_value(m, MTFT_METRIC_MACRO_F1, &f1, &defined);
 *               mtft_metrics_free(m);
 *
 * Definitions (docs/metrics.md has the details and the reference each one
 * follows):
 *   accuracy      correct / n
 *   macro_f1      mean over the labels present in gold or pred of
 *                 2tp / (2tp + fp + fn)                (sklearn average='macro')
 *   mcc           multi-class Matthews correlation (Gorodkin's R_K), as
 *                 sklearn's matthews_corrcoef; 0 and undefined when a
 *                 denominator is zero (constant gold or constant pred)
 *   pearson       sample correlation; NaN and undefined when pred or gold is
 *                 constant (or n < 2), as scipy.stats.pearsonr
 *   spearman      Pearson of average ranks (ties share the mean rank); NaN
 *                 and undefined as pearson
 *   rmse, mae     sqrt(mean (p-g)^2), mean |p-g|
 *   token_accuracy  over tokens whose gold tag is not ignore_index (-100)
 *   tag_micro_f1, tag_macro_f1  token-level F1 per tag, micro/macro over
 *                 the tags other than the outside tag "O"
 *   span_f1       entity-level micro F1 over chunks, as seqeval's default
 *                 (non-strict) mode, reported only when every tag name is
 *                 "O" or starts with "B-", "I-", "E-" or "S-"
 *   exact_match   fraction of hypotheses equal to their reference
 *   chrf          corpus chrF as sacrebleu 2.x's default CHRF(): character
 *                 n-grams 1..6 of Unicode code points with whitespace
 *                 removed, beta = 2, statistics summed over the corpus,
 *                 effective-order averaging; on a 0..100 scale
 *   perplexity    exp(mean token NLL), natural log
 * Empty input (n == 0, or every token ignored) is an error (MTFT_EINVAL).
 *
 * Thread-compatible: one thread at a time per accumulator. */
#ifndef MTFT_METRICS_H
#define MTFT_METRICS_H

#include "mtft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Metric identifiers. Append only. */
typedef enum mtft_metric {
    MTFT_METRIC_ACCURACY = 0,
    MTFT_METRIC_MACRO_F1 = 1,
    MTFT_METRIC_MCC = 2,
    MTFT_METRIC_PEARSON = 3,
    MTFT_METRIC_SPEARMAN = 4,
    MTFT_METRIC_RMSE = 5,
    MTFT_METRIC_MAE = 6,
    MTFT_METRIC_TOKEN_ACCURACY = 7,
    MTFT_METRIC_TAG_MICRO_F1 = 8,
    MTFT_METRIC_TAG_MACRO_F1 = 9,
    MTFT_METRIC_SPAN_F1 = 10,
    MTFT_METRIC_EXACT_MATCH = 11,
    MTFT_METRIC_CHRF = 12,
    MTFT_METRIC_PERPLEXITY = 13,
    MTFT_METRIC_NLL = 14, /* mean token NLL (the log of perplexity) */
    MTFT_METRIC_COUNT_ = 15
} mtft_metric;

/* "accuracy", "macro_f1", "mcc", "pearson", "spearman", "rmse", "mae",
 * "token_accuracy", "tag_micro_f1", "tag_macro_f1", "span_f1",
 * "exact_match", "chrf", "perplexity", "nll"; NULL for an unknown id. */
MTFT_API const char *mtft_metric_name(mtft_metric m);
/* The id of a name above (MTFT_ENOTFOUND otherwise). */
MTFT_API int mtft_metric_from_name(const char *name, mtft_metric *out);
/* 1 for rmse, mae, perplexity and nll (lower is better), else 0. */
MTFT_API int mtft_metric_lower_is_better(mtft_metric m);

/* ---- one-shot metrics ---------------------------------------------------- */
/* `out` receives the value. accuracy compares the labels as given; the
 * functions taking n_classes need labels in [0, n_classes) (MTFT_ERANGE
 * naming the index otherwise). */
MTFT_API int mtft_metric_accuracy(const int32_t *pred, const int32_t *gold, size_t n, double *out);
MTFT_API int mtft_metric_macro_f1(const int32_t *pred, const int32_t *gold, size_t n, int n_classes, double *out);
/* Undefined (constant gold or pred): *out = 0, as sklearn. */
MTFT_API int mtft_metric_mcc(const int32_t *pred, const int32_t *gold, size_t n, int n_classes, double *out);
/* Undefined (a constant input, or n < 2): *out = NaN and MTFT_OK, as scipy.
 * Non-finite inputs are MTFT_ENUMERIC naming the index. */
MTFT_API int mtft_metric_pearson(const float *pred, const float *gold, size_t n, double *out);
MTFT_API int mtft_metric_spearman(const float *pred, const float *gold, size_t n, double *out);
MTFT_API int mtft_metric_rmse(const float *pred, const float *gold, size_t n, double *out);
MTFT_API int mtft_metric_mae(const float *pred, const float *gold, size_t n, double *out);
/* Over positions where gold != ignore_index (pred is not range-checked). */
MTFT_API int mtft_metric_token_accuracy(const int32_t *pred, const int32_t *gold, size_t n, int32_t ignore_index,
                                        double *out);
/* seqeval span F1 of n_seqs sequences of seq_len tags each (row-major);
 * positions whose gold tag is ignore_index are dropped from both sequences
 * (sub-word continuations, padding). tag_names: n_tags BIO/IOBES names
 * (MTFT_EUNSUPPORTED when they are not). 0 when there are no spans at all. */
MTFT_API int mtft_metric_span_f1(const int32_t *pred, const int32_t *gold, size_t n_seqs, size_t seq_len,
                                 const char *const *tag_names, int n_tags, int32_t ignore_index, double *out);
/* Exact string equality (normalize = 1: ASCII case folded, leading/trailing
 * whitespace dropped and inner runs of whitespace collapsed to one space). */
MTFT_API int mtft_metric_exact_match(const char *const *hyp, const char *const *ref, size_t n, int normalize,
                                     double *out);
/* Corpus chrF (0..100) of n UTF-8 hypothesis/reference pairs, sacrebleu's
 * default. Invalid UTF-8 is MTFT_EFORMAT naming the pair and byte offset. */
MTFT_API int mtft_metric_chrf(const char *const *hyp, const char *const *ref, size_t n, double *out);
/* exp(mean of n per-token NLLs). */
MTFT_API int mtft_metric_perplexity(const float *nll, size_t n, double *out);

/* Δm (Maninis et al. 2019; Vandenhende et al. 2021):
 *   Δm = (1/K) Σ_k (-1)^{l_k} (mtl_k - single_k) / single_k
 * l_k = lower_is_better[k] (0 or 1). A fraction: multiply by 100 for the
 * usual percent. Positive means multitask beats the single-task baselines.
 * A zero or non-finite baseline is MTFT_ERANGE naming k. */
MTFT_API int mtft_delta_m(const double *mtl, const double *single, const int *lower_is_better, int k,
                          double *out);

/* ---- streaming accumulators ---------------------------------------------- */
typedef struct mtft_metrics mtft_metrics;

typedef enum mtft_metrics_kind {
    MTFT_METRICS_CLASSIFICATION = 0, /* add_labels: accuracy, macro_f1, mcc */
    MTFT_METRICS_REGRESSION = 1,     /* add_values: pearson, spearman, rmse, mae */
    MTFT_METRICS_TAGGING = 2,        /* add_tags: token_accuracy, tag_micro_f1, tag_macro_f1, span_f1 (BIO) */
    MTFT_METRICS_GENERATION = 3,     /* add_text: exact_match, chrf */
    MTFT_METRICS_LM = 4              /* add_nll: perplexity, nll */
} mtft_metrics_kind;

typedef struct mtft_metrics_options {
    int version;
    int kind;                     /* an mtft_metrics_kind */
    int n_classes;                /* CLASSIFICATION and TAGGING: labels/tags in [0, n_classes) */
    const char *const *tag_names; /* TAGGING: n_classes names or NULL (copied by _new). With names,
                                     the tag "O" is left out of tag F1, and span_f1 is reported
                                     when the names are BIO/IOBES-shaped */
    int32_t ignore_index;         /* TAGGING: gold value of positions to skip (default -100) */
    int normalize_text;           /* GENERATION: exact match after normalisation (see above) */
} mtft_metrics_options;
#define MTFT_METRICS_OPTIONS_VERSION 1
#define MTFT_METRICS_OPTIONS_INIT {MTFT_METRICS_OPTIONS_VERSION, MTFT_METRICS_CLASSIFICATION, 0, NULL, -100, 0}

MTFT_API int mtft_metrics_new(mtft_metrics **out, const mtft_metrics_options *o);
MTFT_API void mtft_metrics_free(mtft_metrics *m);
/* Forget everything added (keeps the options). */
MTFT_API void mtft_metrics_reset(mtft_metrics *m);
MTFT_API int mtft_metrics_kind_of(const mtft_metrics *m);

/* Add a batch. Each call checks its kind (MTFT_ESTATE for the wrong kind)
 * and its values; a failing call adds nothing. */
MTFT_API int mtft_metrics_add_labels(mtft_metrics *m, const int32_t *pred, const int32_t *gold, size_t n);
MTFT_API int mtft_metrics_add_values(mtft_metrics *m, const float *pred, const float *gold, size_t n);
/* n_seqs sequences of seq_len tags (row-major, e.g. [B, T]); gold ==
 * ignore_index drops the position. Spans never cross sequences. */
MTFT_API int mtft_metrics_add_tags(mtft_metrics *m, const int32_t *pred, const int32_t *gold, size_t n_seqs,
                                   size_t seq_len);
MTFT_API int mtft_metrics_add_text(mtft_metrics *m, const char *const *hyp, const char *const *ref, size_t n);
/* nll_sum: sum of per-token NLLs (natural log) over n_tokens tokens. */
MTFT_API int mtft_metrics_add_nll(mtft_metrics *m, double nll_sum, int64_t n_tokens);

/* Examples (classification, regression, generation), scored tokens
 * (tagging, LM) added since new/reset. */
MTFT_API int64_t mtft_metrics_n(const mtft_metrics *m);
/* Compute every metric of the kind from all that was added. MTFT_EINVAL
 * when nothing was added. */
MTFT_API int mtft_metrics_compute(mtft_metrics *m);
/* After compute: how many metrics this accumulator reports, and the i-th. */
MTFT_API int mtft_metrics_count(const mtft_metrics *m);
MTFT_API int mtft_metrics_metric(const mtft_metrics *m, int i, mtft_metric *out);
/* A computed value. defined (may be NULL) is 0 when the metric is undefined
 * on this data (pearson/spearman NaN, mcc 0). MTFT_ENOTFOUND when the kind
 * does not report `which`, MTFT_ESTATE before compute. */
MTFT_API int mtft_metrics_value(const mtft_metrics *m, mtft_metric which, double *value, int *defined);

#ifdef __cplusplus
}
#endif
#endif
