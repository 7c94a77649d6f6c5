/* ctest-labels: unit */
/* The end-of-run report: nice ticks, log ticks, downsampling, escaping, the
 * HTML page from a 3-task / 50-step / 3-evaluation fixture log (well formed,
 * escaped names, one polyline per task and series), the summary table,
 * resumed logs, malformed lines, floors from a baselines file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "mtft/report.h"
#include "mtft_test.h"
#include "train/svg.h"

#define NEWS "news <topic> & \"genre\""
#define NEWS_ESC "news &lt;topic&gt; &amp; &quot;genre&quot;"

/* ---- helpers ---------------------------------------------------------------- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    return p;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

typedef struct tmpdir {
    char dir[64];
    char out[128];
} tmpdir;

static void tmp_make(tmpdir *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/mtft_report_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->out, sizeof t->out, "%s/report.html", t->dir);
}

static void tmp_remove(tmpdir *t, const char *const *files, int n) {
    char p[192];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", t->dir, files[i]);
        remove(p);
    }
    rmdir(t->dir);
}

static int is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* '&' must start an entity: &name; or &#digits; */
static int entity_ok(const char *p) {
    const char *q = p + 1;
    if (*q == '#') q++;
    const char *s = q;
    while (is_name_char(*q)) q++;
    return q > s && *q == ';';
}

/* XML-ish well-formedness: every tag is closed or self-closed in order,
 * attribute values are quoted without raw '<', every '&' starts an entity,
 * text has no raw '>'. Returns NULL or a description of the first problem. */
static const char *check_well_formed(const char *html, char *why, size_t n) {
    char stack[64][24];
    int depth = 0;
    const char *p = html;
    if (strncmp(p, "<!DOCTYPE html>", 15) != 0) return "no doctype";
    p += 15;
    while (*p) {
        if (*p == '&') {
            if (!entity_ok(p)) return snprintf(why, n, "bare & at %ld", (long)(p - html)), why;
            p++;
            continue;
        }
        if (*p == '>') return snprintf(why, n, "raw > in text at %ld", (long)(p - html)), why;
        if (*p != '<') {
            p++;
            continue;
        }
        p++;
        int closing = *p == '/';
        if (closing) p++;
        char name[24];
        size_t k = 0;
        while (is_name_char(*p) && k < sizeof name - 1) name[k++] = *p++;
        name[k] = '\0';
        if (k == 0) return snprintf(why, n, "bad tag at %ld", (long)(p - html)), why;
        int self = 0;
        while (*p && *p != '>') {
            if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '<') return snprintf(why, n, "< in attribute of <%s>", name), why;
                    if (*p == '&' && !entity_ok(p)) return snprintf(why, n, "bare & in attribute of <%s>", name), why;
                    p++;
                }
                if (!*p) return "unterminated attribute";
            } else if (*p == '<') {
                return snprintf(why, n, "< inside tag <%s>", name), why;
            }
            self = *p == '/';
            p++;
        }
        if (!*p) return "unterminated tag";
        p++;
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], name) != 0)
                return snprintf(why, n, "</%s> closes <%s>", name, depth ? stack[depth - 1] : "(nothing)"), why;
            depth--;
        } else if (!self) {
            if (depth == 64) return "too deep";
            snprintf(stack[depth++], sizeof stack[0], "%s", name);
        }
    }
    if (depth) return snprintf(why, n, "<%s> never closed", stack[depth - 1]), why;
    return NULL;
}

/* ---- ticks ------------------------------------------------------------------- */

static void expect_ticks(const mtft_svg_axis *ax, const double *t, int n) {
    ck_assert_int_eq(ax->n_ticks, n);
    for (int i = 0; i < n; i++) ck_assert_msg(fabs(ax->ticks[i] - t[i]) <= 1e-12 * fmax(1, fabs(t[i])), "tick %d: %g != %g", i, ax->ticks[i], t[i]);
    ck_assert(ax->lo == ax->ticks[0] && ax->hi == ax->ticks[n - 1]);
}

START_TEST(test_report_nice_ticks) {
    ck_assert(mtft_svg__nice_num(97, 0) == 100);
    ck_assert(mtft_svg__nice_num(25, 1) == 20);
    ck_assert(mtft_svg__nice_num(0.25, 1) == 0.2);
    ck_assert(mtft_svg__nice_num(11.1, 0) == 20);
    ck_assert(mtft_svg__nice_num(3.5, 1) == 5);
    ck_assert(mtft_svg__nice_num(8, 1) == 10);
    mtft_svg_axis ax;
    char lab[32];
    ck_assert_int_eq(mtft_svg__nice_ticks(0, 1, 5, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){0, 0.2, 0.4, 0.6, 0.8, 1.0}, 6);
    ck_assert_int_eq(ax.decimals, 1);
    mtft_svg__tick_label(&ax, ax.ticks[3], lab, sizeof lab);
    ck_assert_str_eq(lab, "0.6");
    ck_assert_int_eq(mtft_svg__nice_ticks(0, 97, 5, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){0, 20, 40, 60, 80, 100}, 6);
    ck_assert_int_eq(ax.decimals, 0);
    ck_assert_int_eq(mtft_svg__nice_ticks(-3.2, 7.9, 5, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){-5, 0, 5, 10}, 4);
    ck_assert_int_eq(mtft_svg__nice_ticks(1, 50, 6, &ax), MTFT_OK); /* steps 1..50 */
    expect_ticks(&ax, (const double[]){0, 10, 20, 30, 40, 50}, 6);
    ck_assert_int_eq(mtft_svg__nice_ticks(0.2, 0.6, 5, &ax), MTFT_OK); /* 0.6/0.1 is 5.999...: no extra tick */
    expect_ticks(&ax, (const double[]){0.2, 0.3, 0.4, 0.5, 0.6}, 5);
    mtft_svg__tick_label(&ax, ax.ticks[1], lab, sizeof lab);
    ck_assert_str_eq(lab, "0.3");
    ck_assert_int_eq(mtft_svg__nice_ticks(0.301, 0.3172, 5, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){0.300, 0.305, 0.310, 0.315, 0.320}, 5);
    ck_assert_int_eq(ax.decimals, 3);
    /* a constant series gets a range around it */
    ck_assert_int_eq(mtft_svg__nice_ticks(3, 3, 5, &ax), MTFT_OK);
    ck_assert(ax.lo < 3 && ax.hi > 3 && ax.n_ticks >= 2);
    ck_assert_int_eq(mtft_svg__nice_ticks(0, 0, 5, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){-1, -0.5, 0, 0.5, 1}, 5);
    ck_assert_int_eq(mtft_svg__nice_ticks(NAN, 1, 5, &ax), MTFT_EINVAL);
    ck_assert_int_eq(mtft_svg__nice_ticks(2, 1, 5, &ax), MTFT_EINVAL);
}
END_TEST

START_TEST(test_report_log_ticks) {
    mtft_svg_axis ax;
    char lab[32];
    ck_assert_int_eq(mtft_svg__log_ticks(0.01, 1000, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){0.01, 0.1, 1, 10, 100, 1000}, 6);
    ck_assert_int_eq(ax.log, 1);
    mtft_svg__tick_label(&ax, 0.01, lab, sizeof lab);
    ck_assert_str_eq(lab, "0.01");
    mtft_svg__tick_label(&ax, 1000, lab, sizeof lab);
    ck_assert_str_eq(lab, "1000");
    /* under two decades: 1-2-5 */
    ck_assert_int_eq(mtft_svg__log_ticks(0.05, 3, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){0.05, 0.1, 0.2, 0.5, 1, 2, 5}, 7);
    /* under one decade: every mantissa */
    ck_assert_int_eq(mtft_svg__log_ticks(0.3, 1.1, &ax), MTFT_OK);
    expect_ticks(&ax, (const double[]){0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2}, 9);
    mtft_svg__tick_label(&ax, ax.ticks[0], lab, sizeof lab);
    ck_assert_str_eq(lab, "0.3");
    ck_assert_int_eq(mtft_svg__log_ticks(0, 1, &ax), MTFT_EINVAL);
    ck_assert_int_eq(mtft_svg__log_ticks(-1, 1, &ax), MTFT_EINVAL);
}
END_TEST

/* ---- downsampling ---------------------------------------------------------------- */

START_TEST(test_report_downsample) {
    enum { N = 10000 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *ox = malloc(N * sizeof *ox),
           *oy = malloc(N * sizeof *oy);
    for (int i = 0; i < N; i++) x[i] = i + 1, y[i] = sin(i * 0.01);
    y[4321] = 100;  /* one-point spike */
    y[777] = -50;   /* one-point dip */
    y[9999] = 7;    /* at the very end */
    size_t k = mtft_svg__downsample(x, y, N, 2000, ox, oy);
    ck_assert_uint_le(k, 2000);
    ck_assert_uint_ge(k, 1000); /* every bucket keeps at least one point */
    int spike = 0, dip = 0, end = 0;
    ck_assert(ox[0] == 1 && oy[0] == y[0]); /* the line starts and ends where the data do */
    for (size_t i = 0; i < k; i++) {
        if (i) ck_assert_msg(ox[i] > ox[i - 1], "x not increasing at %zu", i);
        int j = (int)ox[i] - 1; /* each kept point is an input point */
        ck_assert(j >= 0 && j < N && oy[i] == y[j]);
        spike += oy[i] == 100 && ox[i] == 4322;
        dip += oy[i] == -50 && ox[i] == 778;
        end += ox[i] == 10000;
    }
    ck_assert_int_eq(spike, 1);
    ck_assert_int_eq(dip, 1);
    ck_assert_int_eq(end, 1);
    /* short series are copied */
    k = mtft_svg__downsample(x, y, 50, 2000, ox, oy);
    ck_assert_uint_eq(k, 50);
    ck_assert(memcmp(oy, y, 50 * sizeof *y) == 0 && memcmp(ox, x, 50 * sizeof *x) == 0);
    free(x), free(y), free(ox), free(oy);
}
END_TEST

START_TEST(test_report_escape) {
    mtft_svg_buf b = {0};
    mtft_svg__escape(&b, "a<b&c>\"d'e \xc3\xa9 \x01 \xff.");
    ck_assert_str_eq(b.p, "a&lt;b&amp;c&gt;&quot;d&#39;e \xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd.");
    mtft_svg__buf_free(&b);
    /* a truncated UTF-8 sequence and a surrogate are replaced too */
    mtft_svg__escape(&b, "\xe2\x82 \xed\xa0\x80");
    ck_assert_str_eq(b.p, "\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert_int_eq(b.oom, 0);
    mtft_svg__buf_free(&b);
    ck_assert_str_ne(mtft_svg__color(0), mtft_svg__color(1));
    ck_assert_str_eq(mtft_svg__color(10), mtft_svg__color(0));
    ck_assert_ptr_null(mtft_svg__dash(3));
    ck_assert_ptr_nonnull(mtft_svg__dash(12)); /* repeated colours get a dash */
}
END_TEST

/* ---- the HTML page ----------------------------------------------------------------- */

static double g_max_y; /* largest y pixel of the last polyline_points call */
static double g_tv;    /* its total variation in y: sum of |dy| */

/* Points of the n-th polyline (0-based): their count, the smallest y pixel
 * (the highest value) and the largest x pixel. */
static int polyline_points(const char *html, int nth, double *min_y, double *max_x_px) {
    const char *p = html;
    for (int i = 0; i <= nth; i++) {
        p = strstr(p, "<polyline");
        ck_assert_ptr_nonnull(p);
        p++;
    }
    p = strstr(p, "points=\"");
    ck_assert_ptr_nonnull(p);
    p += 8;
    int n = 0;
    *min_y = INFINITY;
    *max_x_px = -INFINITY;
    g_max_y = -INFINITY;
    g_tv = 0;
    double prev = NAN;
    while (*p != '"') {
        double a, c;
        int used = 0;
        ck_assert_int_eq(sscanf(p, "%lf,%lf%n", &a, &c, &used), 2);
        p += used;
        while (*p == ' ') p++;
        if (c < *min_y) *min_y = c;
        if (c > g_max_y) g_max_y = c;
        if (n > 0) g_tv += fabs(c - prev);
        prev = c;
        if (a > *max_x_px) *max_x_px = a;
        n++;
    }
    return n;
}

START_TEST(test_report_html_fixture) {
    char in[512], why[128];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/run3.jsonl");
    tmpdir t;
    tmp_make(&t);
    mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
    o.title = "3 tasks <fixture>";
    ck_assert_msg(mtft_report_html(in, t.out, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", t.out);
    ck_assert_int_ne(access(tmp, F_OK), 0); /* renamed into place */
    char *html = slurp(t.out);
    ck_assert_ptr_nonnull(html);

    const char *bad = check_well_formed(html, why, sizeof why);
    ck_assert_msg(bad == NULL, "not well formed: %s", bad);
    /* 13 charts: total loss, task losses, learning rate, weights, rates, dev
       score, and one per dev metric (accuracy, macro_f1, mcc, pearson,
       spearman, rmse, mae) */
    ck_assert_int_eq(count(html, "<svg "), 13);
    ck_assert_int_eq(count(html, "</svg>"), 13);
    /* polylines: 1 + 3 + 1 + 3 + 3 + 1 + (2 + 2 + 2 + 1 + 1 + 1 + 1) */
    ck_assert_int_eq(count(html, "<polyline "), 22);
    ck_assert_int_eq(count(html, "</polyline>"), 22);
    /* markers on the 3 dev points of the score and of each of the 10 metric lines */
    ck_assert_int_eq(count(html, "<circle "), 3 * 11);
    /* task names: escaped everywhere (legend, tooltips, table), never raw */
    ck_assert_int_eq(count(html, NEWS), 0);
    ck_assert_int_eq(count(html, "<topic>"), 0);
    ck_assert_int_ge(count(html, NEWS_ESC), 7);
    ck_assert_int_ge(count(html, ">sst2<"), 5);
    ck_assert_int_ge(count(html, ">valence<"), 5);
    ck_assert_int_ge(count(html, "3 tasks &lt;fixture&gt;"), 2);
    /* self-contained: no script, no external resource (the only URL is the SVG namespace) */
    ck_assert_int_eq(count(html, "<script"), 0);
    ck_assert_int_eq(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    ck_assert_int_eq(count(html, "<link"), 0);
    ck_assert_int_eq(count(html, "<img"), 0);
    /* the results table: test metrics and floors from the log, best dev at its step */
    ck_assert_ptr_nonnull(strstr(html, "accuracy 0.8312"));
    ck_assert_ptr_nonnull(strstr(html, "majority_acc 0.5092"));
    ck_assert_ptr_nonnull(strstr(html, "mean_rmse 2.1365"));
    ck_assert_ptr_nonnull(strstr(html, "<td class=\"n\">0.6900</td><td class=\"n\">40</td><td class=\"n\">0.6655</td>"));
    ck_assert_ptr_nonnull(strstr(html, "(log scale)")); /* losses are positive: log axis */
    ck_assert_ptr_nonnull(strstr(html, "50 steps logged (last step 50)"));
    ck_assert_ptr_nonnull(strstr(html, "1 skipped (non-finite) steps"));
    /* the total loss line leaves out the skipped step (null loss): 49 points */
    double min_y, max_x;
    ck_assert_int_eq(polyline_points(html, 0, &min_y, &max_x), 49);
    /* the valence loss line (third task, every step) has 50 points, inside the plot */
    ck_assert_int_eq(polyline_points(html, 3, &min_y, &max_x), 50);
    ck_assert(min_y >= 30 - 1e-9 && max_x <= 560 - 14 + 1e-9);

    /* a second run overwrites the page */
    o.log_loss = 0;
    ck_assert_int_eq(mtft_report_html(in, t.out, &o), MTFT_OK);
    char *html2 = slurp(t.out);
    ck_assert_ptr_null(strstr(html2, "(log scale)"));
    free(html2);
    free(html);
    const char *files[] = {"report.html"};
    tmp_remove(&t, files, 1);
}
END_TEST

START_TEST(test_report_summary) {
    char in[512], buf[4096];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/run3.jsonl");
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(mtft_report_summary(in, f) == MTFT_OK, "%s", mtft_error_last()->message);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    /* expected: the mean of the last 10 logged losses; the best dev value of
       the primary metric and its step; the test value */
    struct {
        const char *name, *metric;
        double loss, best;
        int step;
        double test;
    } want[3] = {{"sst2", "accuracy", 0.306961, 0.84, 50, 0.8312},
                 {NEWS, "accuracy", 0.580750, 0.69, 40, 0.6655},
                 {"valence", "pearson", 0.397045, 0.75, 50, 0.7311}};
    for (int i = 0; i < 3; i++) {
        const char *row = strstr(buf, want[i].name);
        ck_assert_msg(row != NULL, "no row for %s in\n%s", want[i].name, buf);
        char metric[32];
        double loss, best, test;
        int step;
        ck_assert_int_eq(sscanf(row + strlen(want[i].name), "%lf %31s %lf %d %lf", &loss, metric, &best, &step, &test), 5);
        ck_assert_msg(fabs(loss - want[i].loss) < 1e-4, "%s loss %f", want[i].name, loss);
        ck_assert_str_eq(metric, want[i].metric);
        ck_assert_msg(fabs(best - want[i].best) < 1e-4, "%s best %f", want[i].name, best);
        ck_assert_int_eq(step, want[i].step);
        ck_assert_msg(fabs(test - want[i].test) < 1e-4, "%s test %f", want[i].name, test);
    }
    ck_assert_ptr_nonnull(strstr(buf, "floors: majority_acc 0.5092, char_nb_acc 0.7821"));
    ck_assert_ptr_nonnull(strstr(buf, "50 steps, 3 tasks"));
}
END_TEST

START_TEST(test_report_resumed) {
    /* a run resumed from step 2's checkpoint after it had logged steps 3-4 and
       an evaluation: the second run's points replace those */
    char in[512], buf[2048];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/resumed.jsonl");
    FILE *f = tmpfile();
    ck_assert_int_eq(mtft_report_summary(in, f), MTFT_OK);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    double la, lb, ba, bb;
    int sa, sb;
    char m[32];
    const char *ra = strstr(buf, "\na ");
    const char *rb = strstr(buf, "\nb ");
    ck_assert(ra && rb);
    ck_assert_int_eq(sscanf(ra + 3, "%lf %31s %lf %d", &la, m, &ba, &sa), 4);
    ck_assert_int_eq(sscanf(rb + 3, "%lf %31s %lf %d", &lb, m, &bb, &sb), 4);
    ck_assert(fabs(la - (1.0 + 0.9 + 0.75 + 0.7) / 4) < 1e-4); /* not the dropped 0.8 and 4.5 */
    ck_assert(fabs(ba - 0.6) < 1e-9 && sa == 4);               /* not the dropped 0.9 */
    ck_assert(fabs(bb - 0.7) < 1e-9 && sb == 4);
    tmpdir t;
    tmp_make(&t);
    ck_assert_int_eq(mtft_report_html(in, t.out, NULL), MTFT_OK);
    char *html = slurp(t.out);
    ck_assert_ptr_nonnull(strstr(html, "1 resumed run"));
    ck_assert_ptr_nonnull(strstr(html, "4 steps logged"));
    ck_assert_ptr_nonnull(strstr(html, "2 dev evaluations"));
    ck_assert_ptr_nonnull(strstr(html, "The log holds no test evaluation."));
    free(html);
    const char *files[] = {"report.html"};
    tmp_remove(&t, files, 1);
}
END_TEST

START_TEST(test_report_malformed) {
    char in[512];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/malformed.jsonl");
    tmpdir t;
    tmp_make(&t);
    ck_assert_int_eq(mtft_report_html(in, t.out, NULL), MTFT_EFORMAT);
    const char *msg = mtft_error_last()->message;
    ck_assert_msg(strstr(msg, "malformed.jsonl:4:") != NULL, "message: %s", msg);
    ck_assert_int_ne(access(t.out, F_OK), 0); /* nothing written */
    ck_assert_int_eq(mtft_report_summary(in, stdout), MTFT_EFORMAT); /* fails before writing */
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "malformed.jsonl:4:"));

    mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
    o.skip_malformed = 1;
    ck_assert_msg(mtft_report_html(in, t.out, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    char *html = slurp(t.out);
    ck_assert_ptr_nonnull(strstr(html, "1 malformed line skipped</b> (the first: line 4)"));
    ck_assert_ptr_nonnull(strstr(html, "7 steps logged"));
    free(html);

    /* a well-formed line that is not a step: the error names its column */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", t.dir);
    FILE *f = fopen(bad, "w");
    fputs("{\"event\":\"step\",\"step\":1,\"loss\":1}\n\n{\"event\":\"step\",\"step\":2,\"loss\":\"high\"}\n", f);
    fclose(f);
    ck_assert_int_eq(mtft_report_html(bad, t.out, NULL), MTFT_EFORMAT);
    ck_assert_msg(strstr(mtft_error_last()->message, "bad.jsonl:3:26: \"loss\" must be") != NULL, "message: %s",
                  mtft_error_last()->message);
    f = fopen(bad, "w");
    fputs("{\"event\":\"step\",\"step\":-1}\n", f);
    fclose(f);
    ck_assert_int_eq(mtft_report_summary(bad, stdout), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "bad.jsonl:1:"));
    const char *files[] = {"report.html", "bad.jsonl"};
    tmp_remove(&t, files, 2);
}
END_TEST

START_TEST(test_report_downsample_chart) {
    /* 5000 steps with a one-step spike: the chart keeps at most max_points
       points per line, and the spike (the top of the y axis) survives */
    tmpdir t;
    tmp_make(&t);
    char in[256];
    snprintf(in, sizeof in, "%s/long.jsonl", t.dir);
    FILE *f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    for (int s = 1; s <= 5000; s++) {
        double l = s == 3001 ? 100.0 : 1.0 + 0.5 * sin(s * 0.05);
        fprintf(f, "{\"event\":\"step\",\"step\":%d,\"loss\":%.6f,\"tasks\":{\"only\":{\"loss\":%.6f,\"weight\":1,"
                   "\"rate\":1}}}\n", s, l, l);
    }
    fclose(f);
    mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
    o.max_points = 200;
    o.log_loss = 0;
    ck_assert_int_eq(mtft_report_html(in, t.out, &o), MTFT_OK);
    char *html = slurp(t.out);
    double min_y, max_x;
    /* the y axis runs to 100 exactly: its top is the plot top, y = 30 px */
    int n = polyline_points(html, 0, &min_y, &max_x);
    ck_assert_int_le(n, 200);
    ck_assert_int_ge(n, 100);
    ck_assert_msg(fabs(min_y - 30.0) < 1e-9, "spike at y %f", min_y);
    n = polyline_points(html, 1, &min_y, &max_x);
    ck_assert_int_le(n, 200);
    ck_assert(fabs(min_y - 30.0) < 1e-9);
    ck_assert(fabs(max_x - (560 - 14)) < 1e-9); /* the last step is kept */
    free(html);
    const char *files[] = {"report.html", "long.jsonl"};
    tmp_remove(&t, files, 2);
}
END_TEST

START_TEST(test_report_baselines) {
    char in[512], bl[512];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/run3.jsonl");
    mtft_test_path(bl, sizeof bl, "tests/fixtures/report/baselines.json");
    tmpdir t;
    tmp_make(&t);
    mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
    o.baselines_path = bl;
    ck_assert_msg(mtft_report_html(in, t.out, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    char *html = slurp(t.out);
    ck_assert_ptr_nonnull(strstr(html, "char_nb_acc 0.6000"));    /* a task without floors in the log */
    ck_assert_ptr_nonnull(strstr(html, "mean_rmse 2.1365"));      /* the log's floor wins */
    ck_assert_ptr_null(strstr(html, "mean_rmse 9.9000"));
    ck_assert_ptr_nonnull(strstr(html, "lookup_exact 0.1234"));   /* added beside the log's floors */
    ck_assert_ptr_null(strstr(html, "n_test"));                   /* not a floor */
    free(html);
    o.baselines_path = in; /* JSONL is not one JSON value */
    ck_assert_int_eq(mtft_report_html(in, t.out, &o), MTFT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "run3.jsonl:2:"));
    const char *files[] = {"report.html"};
    tmp_remove(&t, files, 1);
}
END_TEST

START_TEST(test_report_args) {
    char in[512];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/run3.jsonl");
    ck_assert_int_eq(mtft_report_html(NULL, "/tmp/x.html", NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_report_html(in, NULL, NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_report_summary(in, NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_report_html("/nonexistent/metrics.jsonl", "/tmp/x.html", NULL), MTFT_EIO);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "/nonexistent/metrics.jsonl"));
    ck_assert_int_eq(mtft_report_html(in, "/nonexistent-dir/report.html", NULL), MTFT_EIO);
    ck_assert_ptr_nonnull(strstr(mtft_error_last()->message, "/nonexistent-dir/report.html.tmp"));
    mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
    o.version = 99;
    ck_assert_int_eq(mtft_report_html(in, "/tmp/x.html", &o), MTFT_EINVAL);
    o = (mtft_report_options)MTFT_REPORT_OPTIONS_INIT;
    o.max_points = 5;
    ck_assert_int_eq(mtft_report_html(in, "/tmp/x.html", &o), MTFT_EINVAL);
    o = (mtft_report_options)MTFT_REPORT_OPTIONS_INIT;
    o.smoothing = 1.0;
    ck_assert_int_eq(mtft_report_html(in, "/tmp/x.html", &o), MTFT_EINVAL);
    o = (mtft_report_options)MTFT_REPORT_OPTIONS_INIT;
    o.chart_width = 10;
    ck_assert_int_eq(mtft_report_html(in, "/tmp/x.html", &o), MTFT_EINVAL);
    ck_assert_int_ne(access("/tmp/x.html", F_OK), 0);
}
END_TEST

START_TEST(test_report_smoothing) {
    /* EMA smoothing of the loss curves: the smoothed line of a noisy series
       spans a smaller pixel range than the raw one */
    char in[512];
    mtft_test_path(in, sizeof in, "tests/fixtures/report/run3.jsonl");
    tmpdir t;
    tmp_make(&t);
    mtft_report_options o = MTFT_REPORT_OPTIONS_INIT;
    o.log_loss = 0;
    double raw_min, sm_min, mx;
    (void)raw_min;
    ck_assert_int_eq(mtft_report_html(in, t.out, &o), MTFT_OK);
    char *html = slurp(t.out);
    ck_assert_int_eq(polyline_points(html, 3, &raw_min, &mx), 50);
    double raw_tv = g_tv;
    free(html);
    o.smoothing = 0.9;
    ck_assert_int_eq(mtft_report_html(in, t.out, &o), MTFT_OK);
    html = slurp(t.out);
    ck_assert_int_eq(polyline_points(html, 3, &sm_min, &mx), 50);
    ck_assert_ptr_nonnull(strstr(html, "exponential moving average (0.90)"));
    /* the smoothed curve goes up and down much less */
    ck_assert_msg(g_tv < 0.5 * raw_tv, "total variation smoothed %f vs raw %f", g_tv, raw_tv);
    free(html);
    const char *files[] = {"report.html"};
    tmp_remove(&t, files, 1);
}
END_TEST

START_TEST(test_report_empty_and_many_tasks) {
    tmpdir t;
    tmp_make(&t);
    char in[256], why[128];
    snprintf(in, sizeof in, "%s/log.jsonl", t.dir);
    /* an empty log: a valid page that says so, and an empty summary */
    FILE *f = fopen(in, "w");
    fputs("\n\n", f);
    fclose(f);
    ck_assert_int_eq(mtft_report_html(in, t.out, NULL), MTFT_OK);
    char *html = slurp(t.out);
    ck_assert_msg(check_well_formed(html, why, sizeof why) == NULL, "%s", why);
    ck_assert_ptr_nonnull(strstr(html, "no data"));
    ck_assert_ptr_nonnull(strstr(html, "The log holds no dev evaluation."));
    ck_assert_int_eq(count(html, "<polyline "), 0);
    free(html);
    /* 12 tasks: colours repeat from the 11th task on, with a dash pattern */
    f = fopen(in, "w");
    for (int s = 1; s <= 5; s++) {
        fprintf(f, "{\"event\":\"step\",\"step\":%d,\"loss\":1,\"tasks\":{", s);
        for (int k = 0; k < 12; k++)
            fprintf(f, "%s\"task_%02d\":{\"loss\":%g,\"weight\":1,\"rate\":0.0833,\"rows\":1}", k ? "," : "", k,
                    1.0 + k + 0.1 * s);
        fputs("}}\n", f);
    }
    fclose(f);
    ck_assert_int_eq(mtft_report_html(in, t.out, NULL), MTFT_OK);
    html = slurp(t.out);
    ck_assert_msg(check_well_formed(html, why, sizeof why) == NULL, "%s", why);
    /* 12 lines in each of the loss, weight and rate charts, 2 of them dashed
       (and their 2 legend entries each) */
    ck_assert_int_eq(count(html, "<polyline "), 1 + 12 + 12 + 12); /* no lr logged: no lr line */
    ck_assert_int_eq(count(html, "stroke-dasharray=\"6 3\""), 3 * 2 * 2);
    ck_assert_int_eq(count(html, ">task_11</text>"), 3);
    free(html);
    FILE *o = tmpfile();
    ck_assert_int_eq(mtft_report_summary(in, o), MTFT_OK);
    fclose(o);
    const char *files[] = {"report.html", "log.jsonl"};
    tmp_remove(&t, files, 2);
}
END_TEST

static Suite *mtft_test_report_suite(void) {
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_report_nice_ticks);
    tcase_add_test(tc, test_report_log_ticks);
    tcase_add_test(tc, test_report_downsample);
    tcase_add_test(tc, test_report_escape);
    tcase_add_test(tc, test_report_html_fixture);
    tcase_add_test(tc, test_report_summary);
    tcase_add_test(tc, test_report_resumed);
    tcase_add_test(tc, test_report_malformed);
    tcase_add_test(tc, test_report_downsample_chart);
    tcase_add_test(tc, test_report_baselines);
    tcase_add_test(tc, test_report_args);
    tcase_add_test(tc, test_report_smoothing);
    tcase_add_test(tc, test_report_empty_and_many_tasks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_report_suite()); }
