/* mtft: the end-of-run report. Reads the trainer's metrics JSONL log
 * (mtft_trainer_options.log_path) and writes
 *   - one self-contained HTML file (inline CSS and hand-written SVG charts,
 *     no JavaScript, no external resources): the total loss, per-task
 *     training losses, balancer weights and sampling rates over the steps,
 *     the dev selection score and one chart per dev metric (one line per
 *     task), and a table of per-task results with floors when present;
 *   - a plain-text summary table: per task the final training loss, the best
 *     dev value of its primary metric and its step, and the test value.
 *
 *   mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
 *   o.title = "glue-mini";
 *   if (mtft_report_html("run/metrics.jsonl", "run/report.html", &o) < 0)
 *       fprintf(stderr, "%s\n", mtft_error_last()->message);
 *   mtft_report_summary("run/metrics.jsonl", stdout);
 *
 * The log (one JSON object per line; blank lines are ignored):
 *   {"event":"step","step":N,"loss":L,"lr":..,"skipped":0,"tokens":T,
 *    "elapsed":S,"tasks":{"<task>":{"loss":l,"weight":w,"rate":r,"rows":n},..}}
 *   {"event":"eval","step":N,"split":"dev"|"test","score":s,
 *    "tasks":{"<task>":{"<metric>":v,..,"primary":"<metric>",
 *                       "floors":{"<floor name>":v,..}},..}}
 * Numbers may be null (a task absent from a batch, a non-finite value): such
 * points are left out, and so is the weight of a task whose loss is null or
 * whose "rows" is 0 (the trainer logs weight 0 for a task absent from the
 * batch). "primary" and "floors" are optional; without
 * "primary" a task's primary metric is the first of accuracy,
 * token_accuracy, pearson, perplexity it reports (the trainer's rule), else
 * its first metric. Unknown events and members are ignored. A step (or
 * evaluation) number not above the previous one starts a resumed run: the
 * points from that step on are replaced by the new ones. */
#ifndef MTFT_REPORT_H
#define MTFT_REPORT_H

#include <stdio.h>

#include "mtft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_report_options {
    int version;
    const char *title;          /* page title; NULL: "mtft training report" */
    int log_loss;               /* 1: loss charts on a log10 y axis (linear when a loss is <= 0) */
    int max_points;             /* points per line before downsampling (min/max per bucket); >= 16 */
    double smoothing;           /* [0, 1): exponential moving average of the step curves (0: raw) */
    int skip_malformed;         /* 1: skip malformed lines and count them; 0: fail naming file:line:col */
    const char *baselines_path; /* NULL or "": none; else a baselines.json
                                   ([{"task":..,"<floor>":number,..},..]) whose numbers (but
                                   n_test) are shown as floors beside the test metrics */
    int chart_width;            /* SVG size in pixels (>= 200 x >= 120) */
    int chart_height;
} mtft_report_options;

#define MTFT_REPORT_OPTIONS_VERSION 1
#define MTFT_REPORT_OPTIONS_INIT {MTFT_REPORT_OPTIONS_VERSION, NULL, 1, 2000, 0.0, 0, NULL, 560, 300}

/* Read the metrics log and write the HTML report atomically (html_out_path
 * + ".tmp", then rename). o may be NULL (defaults). MTFT_EIO when a file
 * cannot be read or written, MTFT_EFORMAT naming file:line:col for a
 * malformed line (unless skip_malformed), MTFT_EINVAL for bad options. */
MTFT_API int mtft_report_html(const char *metrics_jsonl_path, const char *html_out_path,
                              const mtft_report_options *o);

/* Write the plain-text summary table of the log to out (one row per task).
 * Malformed lines fail as in mtft_report_html. */
MTFT_API int mtft_report_summary(const char *metrics_jsonl_path, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
