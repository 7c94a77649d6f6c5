/* Internal helpers shared by the metric files. Not installed. */
#ifndef MTFT_METRICS_IMPL_H
#define MTFT_METRICS_IMPL_H

#include <stdint.h>

#include "../core/core.h"
#include "mtft/metrics.h"

/* chrF as sacrebleu 2.x's default CHRF(): character orders 1..6, beta 2. */
#define MTFT_CHRF_ORDER 6
#define MTFT_CHRF_BETA 2.0

/* Add the statistics of one hypothesis/reference pair to stats[3*n + {0,1,2}]
 * = {hypothesis n-grams, reference n-grams, matches} for n-gram order n+1.
 * `pair` names the pair in errors (invalid UTF-8 is MTFT_EFORMAT). */
int mtft_metrics__chrf_add(int64_t stats[3 * MTFT_CHRF_ORDER], const char *hyp, const char *ref, size_t pair);
/* The chrF score (0..100) of summed statistics. */
double mtft_metrics__chrf_score(const int64_t stats[3 * MTFT_CHRF_ORDER]);

/* Span extraction in seqeval's default mode. prefix[t] is the scheme letter
 * of tag t ('B', 'I', 'E', 'S' or 'O') and type[t] its entity type id (a
 * small integer; -1 for O). Calls back for each chunk (type, start, end
 * inclusive) of seq[0..n). */
typedef void (*mtft_metrics__span_cb)(int type, size_t start, size_t end, void *payload);
void mtft_metrics__spans(const int32_t *seq, size_t n, const char *prefix, const int *type,
                         mtft_metrics__span_cb cb, void *payload);

#endif
