/* Hand-written SVG line charts for the HTML report: nice axis ticks
 * (Heckbert, "Nice numbers for graph labels", Graphics Gems 1990), log
 * ticks, min/max downsampling, XML escaping. */
#include "train/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- text buffer ------------------------------------------------------------ */

void mtft_svg__buf_free(mtft_svg_buf *b) {
    if (!b) return;
    mtft__free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

static int reserve(mtft_svg_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = mtft__realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put_n(mtft_svg_buf *b, const char *s, size_t len) {
    if (reserve(b, len) < 0) return;
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

void mtft_svg__puts(mtft_svg_buf *b, const char *s) { put_n(b, s, strlen(s)); }

void mtft_svg__printf(mtft_svg_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (len < 0) return;
    if ((size_t)len < sizeof small) {
        put_n(b, small, (size_t)len);
        return;
    }
    if (reserve(b, (size_t)len) < 0) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)len + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)len;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    int n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000;
    else return 0;
    unsigned cp = c & (0x7fu >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

void mtft_svg__escape(mtft_svg_buf *b, const char *s) {
    if (!s) return;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        switch (c) {
        case '&': mtft_svg__puts(b, "&amp;"); p++; continue;
        case '<': mtft_svg__puts(b, "&lt;"); p++; continue;
        case '>': mtft_svg__puts(b, "&gt;"); p++; continue;
        case '"': mtft_svg__puts(b, "&quot;"); p++; continue;
        case '\'': mtft_svg__puts(b, "&#39;"); p++; continue;
        default: break;
        }
        if (c < 0x20 && c != '\t' && c != '\n') {
            mtft_svg__puts(b, "\xef\xbf\xbd");
            p++;
            continue;
        }
        int n = utf8_len(p);
        if (n == 0) {
            mtft_svg__puts(b, "\xef\xbf\xbd");
            p++;
            continue;
        }
        put_n(b, (const char *)p, (size_t)n);
        p += n;
    }
}

/* ---- ticks ------------------------------------------------------------------ */

double mtft_svg__nice_num(double x, int round) {
    double e = floor(log10(x));
    double p = pow(10.0, e);
    double f = x / p;
    double nf;
    if (round)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * p;
}

int mtft_svg__nice_ticks(double min, double max, int target, mtft_svg_axis *ax) {
    if (!ax || !isfinite(min) || !isfinite(max) || min > max || target < 2)
        return mtft__err(MTFT_EINVAL, "svg: bad tick request [%g, %g] with %d ticks", min, max, target);
    memset(ax, 0, sizeof *ax);
    if (max - min <= 1e-12 * fmax(fabs(min), fabs(max))) {
        double d = min != 0 ? fabs(min) * 0.1 : 1.0;
        min -= d;
        max += d;
    }
    double range = mtft_svg__nice_num(max - min, 0);
    double step = mtft_svg__nice_num(range / (target - 1), 1);
    double lo_i = floor(min / step + 1e-9), hi_i = ceil(max / step - 1e-9);
    int n = (int)(hi_i - lo_i) + 1;
    if (n > MTFT_SVG_MAX_TICKS) return mtft__err(MTFT_ERANGE, "svg: %d ticks for [%g, %g]", n, min, max);
    for (int i = 0; i < n; i++) {
        /* from integer multiples, so 0.1 * 3 prints as 0.3 and 0 is exact */
        ax->ticks[i] = (lo_i + i) * step;
    }
    ax->n_ticks = n;
    ax->lo = ax->ticks[0];
    ax->hi = ax->ticks[n - 1];
    ax->step = step;
    int dec = (int)-floor(log10(step) + 1e-9);
    ax->decimals = dec > 0 ? dec : 0;
    return MTFT_OK;
}

int mtft_svg__log_ticks(double min, double max, mtft_svg_axis *ax) {
    if (!ax || !isfinite(min) || !isfinite(max) || !(min > 0) || min > max)
        return mtft__err(MTFT_EINVAL, "svg: bad log tick request [%g, %g]", min, max);
    memset(ax, 0, sizeof *ax);
    ax->log = 1;
    if (max <= min * (1 + 1e-12)) {
        min /= 2;
        max *= 2;
    }
    static const int sets[3][10] = {{1, 0}, {1, 2, 5, 0}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 0}};
    const double tol = 1e-9;
    int e0 = (int)floor(log10(min) + tol), e1 = (int)ceil(log10(max) - tol);
    int every = 1; /* decades between ticks when there are many */
    while ((e1 - e0) / every + 1 > 12) every++;
    for (int si = 0; si < 3; si++) {
        if (si > 0 && every > 1) break;
        double cand[MTFT_SVG_MAX_TICKS + 16];
        int nc = 0;
        for (int e = e0 - 1; e <= e1 + every && nc < MTFT_SVG_MAX_TICKS; e++) {
            if (every > 1 && ((e - e0) % every) != 0) continue;
            for (int j = 0; sets[si][j] && nc < MTFT_SVG_MAX_TICKS; j++) cand[nc++] = e < 0 ? sets[si][j] / pow(10.0, -e) : sets[si][j] * pow(10.0, e);
        }
        int ilo = -1, ihi = -1, inside = 0;
        for (int i = 0; i < nc; i++) {
            if (cand[i] <= min * (1 + tol)) ilo = i;
            if (ihi < 0 && cand[i] >= max * (1 - tol)) ihi = i;
            inside += cand[i] >= min * (1 - tol) && cand[i] <= max * (1 + tol);
        }
        if (ilo < 0 || ihi < 0) continue;
        int n = ihi - ilo + 1;
        /* enough ticks inside the data, so the axis grows by at most one
           tick interval at each end */
        if (inside >= 3 || si == 2 || every > 1) {
            for (int i = 0; i < n; i++) ax->ticks[i] = cand[ilo + i];
            ax->n_ticks = n;
            ax->lo = ax->ticks[0];
            ax->hi = ax->ticks[n - 1];
            return MTFT_OK;
        }
    }
    return mtft__err(MTFT_ERANGE, "svg: no log ticks for [%g, %g]", min, max);
}

void mtft_svg__tick_label(const mtft_svg_axis *ax, double v, char *buf, size_t n) {
    if (ax->log || fabs(v) >= 1e6)
        snprintf(buf, n, "%g", v);
    else
        snprintf(buf, n, "%.*f", ax->decimals, v == 0 ? 0.0 : v);
}

/* ---- downsampling -------------------------------------------------------------- */

size_t mtft_svg__downsample(const double *x, const double *y, size_t n, size_t max_points, double *ox, double *oy) {
    if (max_points < 4) max_points = 4;
    if (n <= max_points) {
        memcpy(ox, x, n * sizeof *x);
        memcpy(oy, y, n * sizeof *y);
        return n;
    }
    /* the first and the last point, and min/max buckets over the rest */
    size_t nb = (max_points - 2) / 2, k = 0, m = n - 2;
    ox[k] = x[0];
    oy[k] = y[0];
    k++;
    for (size_t bkt = 0; bkt < nb; bkt++) {
        size_t a = 1 + bkt * m / nb, z = 1 + (bkt + 1) * m / nb;
        if (a >= z) continue;
        size_t imin = a, imax = a;
        for (size_t i = a + 1; i < z; i++) {
            if (y[i] < y[imin]) imin = i;
            if (y[i] > y[imax]) imax = i;
        }
        size_t first = imin < imax ? imin : imax, second = imin < imax ? imax : imin;
        ox[k] = x[first];
        oy[k] = y[first];
        k++;
        if (second != first) {
            ox[k] = x[second];
            oy[k] = y[second];
            k++;
        }
    }
    ox[k] = x[n - 1];
    oy[k] = y[n - 1];
    k++;
    return k;
}

/* ---- charts ------------------------------------------------------------------- */

static const char *const palette[10] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

const char *mtft_svg__color(int k) { return palette[(k < 0 ? -k : k) % 10]; }

const char *mtft_svg__dash(int k) {
    static const char *const dashes[3] = {NULL, "6 3", "2 2"};
    return dashes[((k < 0 ? -k : k) / 10) % 3];
}

typedef struct plot {
    double x0, y0, w, h; /* plot area in pixels (y0 is the top) */
    mtft_svg_axis xa, ya;
} plot;

static double px_x(const plot *p, double v) { return p->x0 + (v - p->xa.lo) / (p->xa.hi - p->xa.lo) * p->w; }

static double px_y(const plot *p, double v) {
    double t = p->ya.log ? (log10(v) - log10(p->ya.lo)) / (log10(p->ya.hi) - log10(p->ya.lo))
                         : (v - p->ya.lo) / (p->ya.hi - p->ya.lo);
    return p->y0 + (1.0 - t) * p->h;
}

static void stroke_attrs(mtft_svg_buf *b, int color) {
    mtft_svg__printf(b, " stroke=\"%s\"", mtft_svg__color(color));
    const char *d = mtft_svg__dash(color);
    if (d) mtft_svg__printf(b, " stroke-dasharray=\"%s\"", d);
}

/* Approximate text width at 12px sans-serif. */
static double text_w(const char *s) {
    double w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xc0) != 0x80) w += 7.0;
    return w;
}

int mtft_svg__chart(mtft_svg_buf *b, const mtft_svg_chart *c, const mtft_svg_line *lines, int n_lines) {
    const double W = c->width, H = c->height;
    const double ml = 64, mr = 14, mt = 30, mb = 44;
    plot p;
    p.x0 = ml;
    p.y0 = mt;
    p.w = W - ml - mr;
    p.h = H - mt - mb;

    /* data ranges over finite points */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    size_t total = 0, longest = 0;
    for (int l = 0; l < n_lines; l++) {
        if (lines[l].n > longest) longest = lines[l].n;
        for (size_t i = 0; i < lines[l].n; i++) {
            double xv = lines[l].x[i], yv = lines[l].y[i];
            if (!isfinite(xv) || !isfinite(yv)) continue;
            total++;
            xmin = fmin(xmin, xv);
            xmax = fmax(xmax, xv);
            ymin = fmin(ymin, yv);
            ymax = fmax(ymax, yv);
        }
    }
    int log_y = c->log_y && total > 0 && ymin > 0;
    if (total == 0) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    if (c->y_zero && !log_y) {
        ymin = fmin(ymin, 0.0);
        ymax = fmax(ymax, 0.0);
    }
    int rc = mtft_svg__nice_ticks(xmin, xmax, 6, &p.xa);
    if (rc == MTFT_OK) rc = log_y ? mtft_svg__log_ticks(ymin, ymax, &p.ya) : mtft_svg__nice_ticks(ymin, ymax, 5, &p.ya);
    if (rc < 0) return rc;

    /* legend layout: entries wrap into rows below the x label */
    int n_named = 0;
    for (int l = 0; l < n_lines; l++) n_named += lines[l].name != NULL;
    int rows = 0;
    double lx = ml;
    if (n_named > 0) {
        rows = 1;
        for (int l = 0; l < n_lines; l++) {
            if (!lines[l].name) continue;
            double ew = 34 + text_w(lines[l].name) + 14;
            if (lx + ew > W - mr && lx > ml) rows++, lx = ml;
            lx += ew;
        }
    }
    const double legend_h = rows ? rows * 18 + 6 : 0;
    const double TH = H + legend_h;

    mtft_svg__printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n",
                     (int)W, (int)TH, (int)W, (int)TH);
    mtft_svg__puts(b, "<title>");
    mtft_svg__escape(b, c->title);
    mtft_svg__puts(b, "</title>\n");
    mtft_svg__printf(b, "<text class=\"ct\" x=\"%.1f\" y=\"18\">", ml);
    mtft_svg__escape(b, c->title);
    if (log_y) mtft_svg__puts(b, " (log scale)");
    mtft_svg__puts(b, "</text>\n");

    /* grid and tick labels */
    char lab[64];
    mtft_svg__puts(b, "<g class=\"grid\">\n");
    for (int i = 0; i < p.ya.n_ticks; i++) {
        double yy = px_y(&p, p.ya.ticks[i]);
        mtft_svg__printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p.x0, yy, p.x0 + p.w, yy);
    }
    for (int i = 0; i < p.xa.n_ticks; i++) {
        double xx = px_x(&p, p.xa.ticks[i]);
        mtft_svg__printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", xx, p.y0, xx, p.y0 + p.h);
    }
    mtft_svg__puts(b, "</g>\n<g class=\"tick\">\n");
    /* a label is left out when it would overlap one already placed; on a
       log axis the 1-2-5 ticks are placed first */
    double placed[MTFT_SVG_MAX_TICKS];
    int n_placed = 0;
    for (int i = 0; i < p.ya.n_ticks; i++) {
        double yy = px_y(&p, p.ya.ticks[i]);
        mtft_svg__printf(b, "<line class=\"ax\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p.x0 - 4, yy, p.x0, yy);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < p.ya.n_ticks; i++) {
            double v = p.ya.ticks[i];
            int major = 1;
            if (p.ya.log) {
                double mant = v / pow(10.0, floor(log10(v) + 1e-9));
                major = fabs(mant - 1) < 1e-6 || fabs(mant - 2) < 1e-6 || fabs(mant - 5) < 1e-6;
            }
            if (major != (pass == 0)) continue;
            double yy = px_y(&p, v);
            int clash = 0;
            for (int j = 0; j < n_placed && !clash; j++) clash = fabs(placed[j] - yy) < 14;
            if (clash) continue;
            placed[n_placed++] = yy;
            mtft_svg__tick_label(&p.ya, v, lab, sizeof lab);
            mtft_svg__printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", p.x0 - 7, yy + 4, lab);
        }
    }
    double last_px = -INFINITY;
    double last_w = 0;
    for (int i = 0; i < p.xa.n_ticks; i++) {
        double xx = px_x(&p, p.xa.ticks[i]);
        mtft_svg__tick_label(&p.xa, p.xa.ticks[i], lab, sizeof lab);
        mtft_svg__printf(b, "<line class=\"ax\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", xx, p.y0 + p.h, xx,
                         p.y0 + p.h + 4);
        double w = text_w(lab);
        if (xx - last_px < (w + last_w) / 2 + 6) continue;
        last_px = xx;
        last_w = w;
        mtft_svg__printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", xx, p.y0 + p.h + 17, lab);
    }
    mtft_svg__puts(b, "</g>\n");
    mtft_svg__printf(b, "<line class=\"ax\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p.x0, p.y0 + p.h,
                     p.x0 + p.w, p.y0 + p.h);
    mtft_svg__printf(b, "<line class=\"ax\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p.x0, p.y0, p.x0,
                     p.y0 + p.h);
    if (c->xlabel) {
        mtft_svg__printf(b, "<text class=\"al\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", p.x0 + p.w / 2,
                         p.y0 + p.h + 35);
        mtft_svg__escape(b, c->xlabel);
        mtft_svg__puts(b, "</text>\n");
    }
    if (c->ylabel) {
        mtft_svg__printf(b, "<text class=\"al\" transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
                         p.y0 + p.h / 2);
        mtft_svg__escape(b, c->ylabel);
        mtft_svg__puts(b, "</text>\n");
    }
    if (total == 0)
        mtft_svg__printf(b, "<text class=\"al\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no data</text>\n",
                         p.x0 + p.w / 2, p.y0 + p.h / 2);

    /* the lines: finite points, then downsampled */
    size_t maxp = c->max_points >= 4 ? c->max_points : 4;
    double *fx = NULL, *fy = NULL, *dx = NULL, *dy = NULL;
    if (longest > 0) {
        fx = mtft__malloc(longest * sizeof *fx);
        fy = mtft__malloc(longest * sizeof *fy);
        dx = mtft__malloc(longest * sizeof *dx);
        dy = mtft__malloc(longest * sizeof *dy);
        if (!fx || !fy || !dx || !dy) {
            mtft__free(fx), mtft__free(fy), mtft__free(dx), mtft__free(dy);
            return mtft__err(MTFT_ENOMEM, "svg: out of memory for a line of %zu points", longest);
        }
    }
    for (int l = 0; l < n_lines; l++) {
        const mtft_svg_line *ln = &lines[l];
        size_t m = 0;
        for (size_t i = 0; i < ln->n; i++)
            if (isfinite(ln->x[i]) && isfinite(ln->y[i])) fx[m] = ln->x[i], fy[m] = ln->y[i], m++;
        if (m == 0) continue;
        size_t k = mtft_svg__downsample(fx, fy, m, maxp, dx, dy);
        mtft_svg__puts(b, "<polyline class=\"s\" fill=\"none\" stroke-width=\"1.6\" stroke-linejoin=\"round\"");
        stroke_attrs(b, ln->color);
        mtft_svg__puts(b, " points=\"");
        for (size_t i = 0; i < k; i++)
            mtft_svg__printf(b, "%s%.1f,%.1f", i ? " " : "", px_x(&p, dx[i]), px_y(&p, dy[i]));
        mtft_svg__puts(b, "\">");
        if (ln->name) {
            mtft_svg__puts(b, "<title>");
            mtft_svg__escape(b, ln->name);
            mtft_svg__puts(b, "</title>");
        }
        mtft_svg__puts(b, "</polyline>\n");
        if (ln->markers || k == 1) {
            for (size_t i = 0; i < k; i++) {
                mtft_svg__printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\"><title>", px_x(&p, dx[i]),
                                 px_y(&p, dy[i]), mtft_svg__color(ln->color));
                if (ln->name) {
                    mtft_svg__escape(b, ln->name);
                    mtft_svg__puts(b, " ");
                }
                mtft_svg__printf(b, "@ %g: %.6g</title></circle>\n", dx[i], dy[i]);
            }
        }
    }
    mtft__free(fx), mtft__free(fy), mtft__free(dx), mtft__free(dy);

    /* legend */
    if (rows) {
        double ly = H + 8;
        lx = ml;
        mtft_svg__puts(b, "<g class=\"legend\">\n");
        for (int l = 0; l < n_lines; l++) {
            if (!lines[l].name) continue;
            double ew = 34 + text_w(lines[l].name) + 14;
            if (lx + ew > W - mr && lx > ml) ly += 18, lx = ml;
            mtft_svg__printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"3\"", lx,
                             ly + 6, lx + 26, ly + 6);
            stroke_attrs(b, lines[l].color);
            mtft_svg__printf(b, "/><text x=\"%.1f\" y=\"%.1f\">", lx + 32, ly + 10);
            mtft_svg__escape(b, lines[l].name);
            mtft_svg__puts(b, "</text>\n");
            lx += ew;
        }
        mtft_svg__puts(b, "</g>\n");
    }
    mtft_svg__puts(b, "</svg>\n");
    return b->oom ? mtft__err(MTFT_ENOMEM, "svg: out of memory writing chart '%s'", c->title ? c->title : "") : MTFT_OK;
}
