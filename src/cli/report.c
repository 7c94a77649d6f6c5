/* A self-contained HTML report with SVG charts from the trainer's JSONL log:
 * per-task training loss (smoothed), balancer weights and sampling rates
 * over steps, and the dev metric of every evaluation. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct series {
    double *x, *y;
    int n, cap;
} series;

static void push(series *s, double x, double y) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *x2 = realloc(s->x, (size_t)cap * sizeof *x2);
        if (!x2) return;
        s->x = x2;
        double *y2 = realloc(s->y, (size_t)cap * sizeof *y2);
        if (!y2) return;
        s->y = y2;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

/* The number after "key": inside [s, end), or 0 with *ok = 0 (absent or null). */
static double num_after(const char *s, const char *end, const char *key, int *ok) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    *ok = 0;
    if (!p || (end && p >= end)) return 0;
    p += strlen(pat);
    if (!strncmp(p, "null", 4)) return 0;
    char *e;
    double v = strtod(p, &e);
    if (e == p) return 0;
    *ok = 1;
    return v;
}

static const char *k_colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void chart(FILE *f, const char *title, series *ss, int n, const char *const *names) {
    const double W = 640, H = 260, L = 56, R = 12, T = 28, B = 34;
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < ss[k].n; i++) {
            if (ss[k].x[i] < x0) x0 = ss[k].x[i];
            if (ss[k].x[i] > x1) x1 = ss[k].x[i];
            if (ss[k].y[i] < y0) y0 = ss[k].y[i];
            if (ss[k].y[i] > y1) y1 = ss[k].y[i];
        }
    fprintf(f, "<figure><svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='11'>\n<text x='%.0f' y='16' font-size='13' font-weight='bold'>%s</text>\n",
            W + 170, H, L, title);
    if (x0 > x1) {
        fprintf(f, "<text x='%.0f' y='%.0f'>no data</text></svg></figure>\n", L, H / 2);
        return;
    }
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1, y0 -= 1;
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#888'/>\n", L, T, W - L - R,
            H - T - B);
    for (int i = 0; i <= 4; i++) {
        const double yv = y0 + (y1 - y0) * i / 4.0, py = H - B - (H - T - B) * i / 4.0;
        const double xv = x0 + (x1 - x0) * i / 4.0, px = L + (W - L - R) * i / 4.0;
        fprintf(f, "<text x='%.0f' y='%.1f' text-anchor='end'>%.3g</text>\n", L - 4, py + 4, yv);
        fprintf(f, "<text x='%.1f' y='%.0f' text-anchor='middle'>%.0f</text>\n", px, H - B + 14, xv);
    }
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>step</text>\n", (L + W - R) / 2, H - 4);
    for (int k = 0; k < n; k++) {
        const char *c = k_colors[k % 10];
        if (ss[k].n) {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", c);
            for (int i = 0; i < ss[k].n; i++)
                fprintf(f, "%.1f,%.1f ", L + (W - L - R) * (ss[k].x[i] - x0) / (x1 - x0),
                        H - B - (H - T - B) * (ss[k].y[i] - y0) / (y1 - y0));
            fputs("'/>\n", f);
        }
        fprintf(f, "<rect x='%.0f' y='%.0f' width='10' height='10' fill='%s'/><text x='%.0f' y='%.0f'>%s</text>\n",
                W + 4, T + 16.0 * k, c, W + 18, T + 16.0 * k + 9, names[k]);
    }
    fputs("</svg></figure>\n", f);
}

int cli_write_report(const char *log_path, const char *html_path, mtft_trainer *tr, const char *title) {
    FILE *in = fopen(log_path, "r");
    if (!in) return -1;
    const int K = mtft_trainer_n_tasks(tr);
    series *loss = calloc((size_t)K, sizeof *loss), *wt = calloc((size_t)K, sizeof *wt),
           *rate = calloc((size_t)K, sizeof *rate), *dev = calloc((size_t)K, sizeof *dev);
    series total = {0};
    const char **names = calloc((size_t)K, sizeof *names);
    double *ema = calloc((size_t)K, sizeof *ema);
    int *have = calloc((size_t)K, sizeof *have);
    char *line = NULL;
    size_t cap = 0;
    int ret = -1;
    if (!loss || !wt || !rate || !dev || !names || !ema || !have) goto done;
    for (int k = 0; k < K; k++) names[k] = mtft_trainer_task_name(tr, k);
    double last_step = -1;
    while (getline(&line, &cap, in) >= 0) {
        int ok;
        const double step = num_after(line, NULL, "step", &ok);
        if (!ok) continue;
        if (step <= last_step && strstr(line, "\"event\":\"step\"")) { /* a new run appended: start over */
            for (int k = 0; k < K; k++) loss[k].n = wt[k].n = rate[k].n = dev[k].n = have[k] = 0;
            total.n = 0;
        }
        if (strstr(line, "\"event\":\"step\"")) {
            last_step = step;
            const double tl = num_after(line, NULL, "loss", &ok);
            if (ok) push(&total, step, tl);
        }
        const int is_eval = strstr(line, "\"event\":\"eval\"") != NULL;
        for (int k = 0; k < K; k++) {
            char pat[300];
            snprintf(pat, sizeof pat, "\"%s\":{", names[k]);
            const char *p = strstr(line, pat);
            if (!p) continue;
            const char *e = strchr(p + strlen(pat), '}');
            if (is_eval) {
                const char *mn = mtft_metric_name(mtft_trainer_primary_metric(tr, k));
                const double v = num_after(p, e, mn, &ok);
                if (ok) push(&dev[k], step, v);
                continue;
            }
            double v = num_after(p, e, "loss", &ok);
            if (ok) {
                ema[k] = have[k] ? 0.9 * ema[k] + 0.1 * v : v;
                have[k] = 1;
                push(&loss[k], step, ema[k]);
            }
            v = num_after(p, e, "weight", &ok);
            if (ok && v > 0) push(&wt[k], step, v);
            v = num_after(p, e, "rate", &ok);
            if (ok) push(&rate[k], step, v);
        }
    }
    FILE *f = fopen(html_path, "w");
    if (!f) goto done;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>mtft report</title>\n<style>body{font-family:"
               "sans-serif;margin:24px;max-width:900px}figure{margin:12px 0}td,th{padding:2px 10px;text-align:right}"
               "th:first-child,td:first-child{text-align:left}</style></head><body>\n<h1>mtft training report</h1>\n"
               "<p>%s. Log: <code>%s</code>, %lld steps.</p>\n",
            title, log_path, (long long)mtft_trainer_step(tr));
    const char *tot[1] = {"total (weighted)"};
    chart(f, "Training loss per task (EMA 0.9)", loss, K, names);
    chart(f, "Weighted total loss", &total, 1, tot);
    chart(f, "Balancer weight per task (steps where the task is present)", wt, K, names);
    chart(f, "Sampling rate per task", rate, K, names);
    chart(f, "Dev primary metric per task", dev, K, names);
    fputs("<h2>Last evaluation</h2>\n<table><tr><th>task</th><th>metric</th><th>dev</th><th>test</th></tr>\n", f);
    for (int k = 0; k < K; k++) {
        const mtft_metric pm = mtft_trainer_primary_metric(tr, k);
        double dv = 0, tv = 0;
        const int hd = mtft_trainer_eval_value(tr, k, MTFT_SPLIT_DEV, pm, &dv, NULL) == MTFT_OK;
        const int ht = mtft_trainer_eval_value(tr, k, MTFT_SPLIT_TEST, pm, &tv, NULL) == MTFT_OK;
        fprintf(f, "<tr><td>%s</td><td>%s</td>", names[k], mtft_metric_name(pm));
        if (hd) fprintf(f, "<td>%.4f</td>", dv); else fputs("<td>-</td>", f);
        if (ht) fprintf(f, "<td>%.4f</td></tr>\n", tv); else fputs("<td>-</td></tr>\n", f);
    }
    mtft_error_clear();
    fputs("</table>\n</body></html>\n", f);
    ret = fclose(f) == 0 ? 0 : -1;
done:
    fclose(in);
    free(line);
    for (int k = 0; k < K; k++) {
        if (loss) free(loss[k].x), free(loss[k].y);
        if (wt) free(wt[k].x), free(wt[k].y);
        if (rate) free(rate[k].x), free(rate[k].y);
        if (dev) free(dev[k].x), free(dev[k].y);
    }
    free(total.x);
    free(total.y);
    free(loss);
    free(wt);
    free(rate);
    free(dev);
    free(names);
    free(ema);
    free(have);
    return ret;
}
