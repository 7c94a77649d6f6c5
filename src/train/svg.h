/* Internal: a growable text buffer, XML escaping, axis ticks, downsampling
 * and hand-written SVG line charts for the HTML report. Not installed. */
#ifndef MTFT_TRAIN_SVG_H
#define MTFT_TRAIN_SVG_H

#include <stddef.h>

#include "core/core.h"

/* Text buffer. On allocation failure `oom` is set and later appends do
 * nothing, so a writer checks once at the end. */
typedef struct mtft_svg_buf {
    char *p;
    size_t n, cap;
    int oom;
} mtft_svg_buf;

void mtft_svg__buf_free(mtft_svg_buf *b);
void mtft_svg__puts(mtft_svg_buf *b, const char *s);
void mtft_svg__printf(mtft_svg_buf *b, const char *fmt, ...) MTFT_PRINTF(2, 3);
/* Append s escaped for XML/HTML text and attribute values: & < > " ' become
 * entities, control bytes (but tab and newline) and invalid UTF-8 become
 * U+FFFD. */
void mtft_svg__escape(mtft_svg_buf *b, const char *s);

#define MTFT_SVG_MAX_TICKS 64

typedef struct mtft_svg_axis {
    double lo, hi;   /* axis range: the first and last tick */
    double step;     /* linear: tick spacing; log: 0 */
    int log;         /* 1: log10 scale */
    int n_ticks;
    double ticks[MTFT_SVG_MAX_TICKS];
    int decimals;    /* linear: digits after the point for tick labels */
} mtft_svg_axis;

/* Heckbert's "nice numbers": the nice number (1, 2, 5 or 10 times a power of
 * ten) nearest x (round = 1) or not below x (round = 0). x > 0. */
double mtft_svg__nice_num(double x, int round);
/* Linear ticks covering [min, max] with about `target` (>= 2) ticks at a
 * nice spacing; the axis runs from the tick at or below min to the one at
 * or above max. min == max is widened. MTFT_EINVAL for non-finite input. */
int mtft_svg__nice_ticks(double min, double max, int target, mtft_svg_axis *ax);
/* Log ticks for 0 < min <= max: the sparsest of {1}, {1,2,5}, {1..9} x 10^e
 * with at least 3 ticks inside [min, max] (else {1..9}); the axis runs from the tick at or below min to
 * the one at or above max. MTFT_EINVAL unless 0 < min <= max, finite. */
int mtft_svg__log_ticks(double min, double max, mtft_svg_axis *ax);
/* A tick label ("0.25", "100", "1e-05") into buf. */
void mtft_svg__tick_label(const mtft_svg_axis *ax, double v, char *buf, size_t n);

/* Keep at most max_points (>= 4) of the n points, in order: the first and
 * the last point, and the points between cut into (max_points-2)/2 buckets
 * of consecutive indices, each keeping its minimum and its maximum y (once
 * when the same point), so spikes survive. n <= max_points copies. ox/oy hold max_points (or n)
 * values. Returns the number kept. */
size_t mtft_svg__downsample(const double *x, const double *y, size_t n, size_t max_points, double *ox, double *oy);

/* Colour of series k ("#4e79a7", ...: a fixed 10-colour palette that
 * repeats) and its dash pattern (NULL for k < 10). */
const char *mtft_svg__color(int k);
const char *mtft_svg__dash(int k);

typedef struct mtft_svg_line {
    const char *name;     /* legend text (escaped when written) */
    const double *x, *y;  /* n points; non-finite y (or x) are left out */
    size_t n;
    int color;            /* palette index */
    int markers;          /* 1: a circle with a tooltip at every point */
} mtft_svg_line;

typedef struct mtft_svg_chart {
    const char *title, *xlabel, *ylabel;
    int width, height;    /* plot + axes; the legend adds rows below */
    int log_y;            /* 1: log10 y axis when every value is > 0 */
    int y_zero;           /* 1: the y range includes 0 */
    size_t max_points;    /* downsample lines longer than this */
} mtft_svg_chart;

/* Append one <svg> element: title, grid, axes with nice ticks and labels,
 * one <polyline> per line with at least one point (with markers when asked),
 * and a legend. MTFT_ENOMEM when out of memory. */
int mtft_svg__chart(mtft_svg_buf *b, const mtft_svg_chart *c, const mtft_svg_line *lines, int n_lines);

#endif
