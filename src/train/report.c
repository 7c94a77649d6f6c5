/* The end-of-run report: reads the trainer's metrics JSONL log and writes a
 * self-contained HTML page with hand-written SVG charts (svg.c), or a
 * plain-text summary table. The log format is described in mtft/report.h. */
#include "mtft/report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "io/atomic.h"
#include "io/json.h"
#include "mtft/metrics.h"
#include "mtft/version.h"
#include "train/svg.h"

#define FINAL_WINDOW 10 /* final train loss: mean of a task's last logged losses */

/* ---- the parsed log ---------------------------------------------------------- */

typedef struct series {
    double *x, *y;
    size_t n, cap;
} series;

typedef struct named_series {
    char *name;
    series s;
} named_series;

typedef struct named_val {
    char *name;
    double v;
} named_val;

typedef struct rtask {
    char *name;
    series loss, weight, rate;
    named_series *dev; /* one per metric, in order of first appearance */
    int n_dev, cap_dev;
    named_val *test;   /* the last test evaluation */
    int n_test, cap_test;
    named_val *floors;
    int n_floors, cap_floors;
    char *primary;     /* from the log, or NULL */
} rtask;

typedef struct run {
    rtask *tasks;
    int n_tasks, cap_tasks;
    series total, lr, tokens, skipped, score;
    double elapsed;      /* of the last step event */
    int64_t test_step;   /* step of the last test evaluation, -1: none */
    int n_resumes;       /* step numbers that went back */
    int64_t n_malformed; /* skipped lines */
    int64_t first_malformed;
} run;

static void series_free(series *s) {
    mtft__free(s->x);
    mtft__free(s->y);
    memset(s, 0, sizeof *s);
}

static int series_push(series *s, double x, double y) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *nx = mtft__realloc(s->x, cap * sizeof *nx);
        if (!nx) return mtft__err(MTFT_ENOMEM, "report: out of memory");
        s->x = nx;
        double *ny = mtft__realloc(s->y, cap * sizeof *ny);
        if (!ny) return mtft__err(MTFT_ENOMEM, "report: out of memory");
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return MTFT_OK;
}

/* Drop the points at step >= x (a resumed run replaces them). */
static void series_cut(series *s, double x) {
    while (s->n > 0 && s->x[s->n - 1] >= x) s->n--;
}

static void nv_free(named_val *v, int n) {
    for (int i = 0; i < n; i++) mtft__free(v[i].name);
    mtft__free(v);
}

static void run_free(run *r) {
    for (int k = 0; k < r->n_tasks; k++) {
        rtask *t = &r->tasks[k];
        mtft__free(t->name);
        mtft__free(t->primary);
        series_free(&t->loss);
        series_free(&t->weight);
        series_free(&t->rate);
        for (int i = 0; i < t->n_dev; i++) {
            mtft__free(t->dev[i].name);
            series_free(&t->dev[i].s);
        }
        mtft__free(t->dev);
        nv_free(t->test, t->n_test);
        nv_free(t->floors, t->n_floors);
    }
    mtft__free(r->tasks);
    series_free(&r->total);
    series_free(&r->lr);
    series_free(&r->tokens);
    series_free(&r->skipped);
    series_free(&r->score);
    memset(r, 0, sizeof *r);
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return MTFT_OK;
    int c = *cap ? *cap * 2 : 8;
    while (c < need) c *= 2;
    void *q = mtft__realloc(*p, (size_t)c * elem);
    if (!q) return mtft__err(MTFT_ENOMEM, "report: out of memory");
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(c - *cap) * elem);
    *p = q;
    *cap = c;
    return MTFT_OK;
}

static rtask *task_get(run *r, const char *name) {
    for (int k = 0; k < r->n_tasks; k++)
        if (strcmp(r->tasks[k].name, name) == 0) return &r->tasks[k];
    if (grow((void **)&r->tasks, &r->cap_tasks, r->n_tasks + 1, sizeof *r->tasks) < 0) return NULL;
    rtask *t = &r->tasks[r->n_tasks];
    memset(t, 0, sizeof *t);
    t->name = mtft__strdup(name);
    if (!t->name) {
        mtft__err(MTFT_ENOMEM, "report: out of memory");
        return NULL;
    }
    r->n_tasks++;
    return t;
}

static series *dev_get(rtask *t, const char *metric) {
    for (int i = 0; i < t->n_dev; i++)
        if (strcmp(t->dev[i].name, metric) == 0) return &t->dev[i].s;
    if (grow((void **)&t->dev, &t->cap_dev, t->n_dev + 1, sizeof *t->dev) < 0) return NULL;
    named_series *d = &t->dev[t->n_dev];
    memset(d, 0, sizeof *d);
    d->name = mtft__strdup(metric);
    if (!d->name) {
        mtft__err(MTFT_ENOMEM, "report: out of memory");
        return NULL;
    }
    t->n_dev++;
    return &d->s;
}

/* Set name = v in a list (replacing an existing entry). */
static int nv_set(named_val **v, int *n, int *cap, const char *name, double val) {
    for (int i = 0; i < *n; i++)
        if (strcmp((*v)[i].name, name) == 0) {
            (*v)[i].v = val;
            return MTFT_OK;
        }
    if (grow((void **)v, cap, *n + 1, sizeof **v) < 0) return MTFT_ENOMEM;
    (*v)[*n].name = mtft__strdup(name);
    if (!(*v)[*n].name) return mtft__err(MTFT_ENOMEM, "report: out of memory");
    (*v)[*n].v = val;
    (*n)++;
    return MTFT_OK;
}

static const named_val *nv_find(const named_val *v, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) return &v[i];
    return NULL;
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct line_ctx {
    const char *path;
    int64_t line;
    const char *text;
    size_t len;
} line_ctx;

static int bad_line(const line_ctx *lc, const char *key, const char *what) {
    int ln = 1, col = 1;
    size_t off = key ? mtft_json__find_key(lc->text, lc->len, key) : 0;
    if (off) mtft_json__line_col(lc->text, lc->len, off, &ln, &col);
    return mtft__err(MTFT_EFORMAT, "report: %s:%lld:%d: %s", lc->path, (long long)lc->line, col, what);
}

/* A number member: finite value, NaN for null/absent; -1 for another type. */
static int num_member(const mtft_json *obj, const char *key, double *out) {
    const mtft_json *v = mtft_json__get(obj, key);
    switch (mtft_json__type(v)) {
    case MTFT_JSON_NONE:
    case MTFT_JSON_NULL: *out = NAN; return 0;
    case MTFT_JSON_NUMBER: *out = mtft_json__number(v); return 0;
    default: return -1;
    }
}

static int parse_step(run *r, const line_ctx *lc, const mtft_json *j, int64_t step) {
    const double x = (double)step;
    if (r->total.n > 0 && r->total.x[r->total.n - 1] >= x) {
        /* a resumed run: its steps replace the ones logged after its checkpoint */
        r->n_resumes++;
        series_cut(&r->total, x);
        series_cut(&r->lr, x);
        series_cut(&r->tokens, x);
        series_cut(&r->skipped, x);
        for (int k = 0; k < r->n_tasks; k++) {
            series_cut(&r->tasks[k].loss, x);
            series_cut(&r->tasks[k].weight, x);
            series_cut(&r->tasks[k].rate, x);
        }
    }
    double loss, lr, tokens, skipped, elapsed;
    if (num_member(j, "loss", &loss) < 0) return bad_line(lc, "loss", "\"loss\" must be a number or null");
    if (num_member(j, "lr", &lr) < 0) return bad_line(lc, "lr", "\"lr\" must be a number or null");
    if (num_member(j, "tokens", &tokens) < 0) return bad_line(lc, "tokens", "\"tokens\" must be a number");
    if (num_member(j, "skipped", &skipped) < 0) return bad_line(lc, "skipped", "\"skipped\" must be a number");
    if (num_member(j, "elapsed", &elapsed) < 0) return bad_line(lc, "elapsed", "\"elapsed\" must be a number");
    int rc;
    if ((rc = series_push(&r->total, x, loss)) < 0 || (rc = series_push(&r->lr, x, lr)) < 0 ||
        (rc = series_push(&r->tokens, x, isfinite(tokens) ? tokens : 0)) < 0 ||
        (rc = series_push(&r->skipped, x, isfinite(skipped) ? skipped : 0)) < 0)
        return rc;
    if (isfinite(elapsed)) r->elapsed = elapsed;
    const mtft_json *tasks = mtft_json__get(j, "tasks");
    if (!tasks) return MTFT_OK;
    if (mtft_json__type(tasks) != MTFT_JSON_OBJECT) return bad_line(lc, "tasks", "\"tasks\" must be an object");
    for (const mtft_json *m = mtft_json__first(tasks); m; m = mtft_json__next(m)) {
        if (mtft_json__type(m) != MTFT_JSON_OBJECT) return bad_line(lc, "tasks", "each task under \"tasks\" must be an object");
        rtask *t = task_get(r, mtft_json__key(m));
        if (!t) return MTFT_ENOMEM;
        double tl, tw, tr;
        if (num_member(m, "loss", &tl) < 0 || num_member(m, "weight", &tw) < 0 || num_member(m, "rate", &tr) < 0)
            return bad_line(lc, "tasks", "a task's \"loss\", \"weight\" and \"rate\" must be numbers or null");
        /* the trainer logs weight 0 for a task absent from the batch: no point */
        double rows;
        if (num_member(m, "rows", &rows) < 0) return bad_line(lc, "tasks", "a task's \"rows\" must be a number");
        if (!isfinite(tl) || rows == 0) tw = NAN;
        if ((rc = series_push(&t->loss, x, tl)) < 0 || (rc = series_push(&t->weight, x, tw)) < 0 ||
            (rc = series_push(&t->rate, x, tr)) < 0)
            return rc;
    }
    return MTFT_OK;
}

static int parse_eval(run *r, const line_ctx *lc, const mtft_json *j, int64_t step) {
    const char *split = mtft_json__string(mtft_json__get(j, "split"));
    if (mtft_json__get(j, "split") && !split) return bad_line(lc, "split", "\"split\" must be a string");
    int test;
    if (!split || strcmp(split, "dev") == 0)
        test = 0;
    else if (strcmp(split, "test") == 0)
        test = 1;
    else
        return MTFT_OK; /* another split: not charted */
    const double x = (double)step;
    int rc;
    if (!test) {
        if (r->score.n > 0 && r->score.x[r->score.n - 1] >= x) {
            series_cut(&r->score, x);
            for (int k = 0; k < r->n_tasks; k++)
                for (int i = 0; i < r->tasks[k].n_dev; i++) series_cut(&r->tasks[k].dev[i].s, x);
        }
        double score;
        if (num_member(j, "score", &score) < 0) return bad_line(lc, "score", "\"score\" must be a number or null");
        if ((rc = series_push(&r->score, x, score)) < 0) return rc;
    } else {
        r->test_step = step;
        /* the last test evaluation replaces earlier ones */
        for (int k = 0; k < r->n_tasks; k++) {
            nv_free(r->tasks[k].test, r->tasks[k].n_test);
            r->tasks[k].test = NULL;
            r->tasks[k].n_test = r->tasks[k].cap_test = 0;
        }
    }
    const mtft_json *tasks = mtft_json__get(j, "tasks");
    if (!tasks) return MTFT_OK;
    if (mtft_json__type(tasks) != MTFT_JSON_OBJECT) return bad_line(lc, "tasks", "\"tasks\" must be an object");
    for (const mtft_json *m = mtft_json__first(tasks); m; m = mtft_json__next(m)) {
        if (mtft_json__type(m) != MTFT_JSON_OBJECT) return bad_line(lc, "tasks", "each task under \"tasks\" must be an object");
        rtask *t = task_get(r, mtft_json__key(m));
        if (!t) return MTFT_ENOMEM;
        for (const mtft_json *v = mtft_json__first(m); v; v = mtft_json__next(v)) {
            const char *key = mtft_json__key(v);
            mtft_json_type ty = mtft_json__type(v);
            if (strcmp(key, "primary") == 0) {
                if (ty != MTFT_JSON_STRING) return bad_line(lc, "primary", "\"primary\" must be a metric name");
                char *p = mtft__strdup(mtft_json__string(v));
                if (!p) return mtft__err(MTFT_ENOMEM, "report: out of memory");
                mtft__free(t->primary);
                t->primary = p;
            } else if (strcmp(key, "floors") == 0) {
                if (ty != MTFT_JSON_OBJECT) return bad_line(lc, "floors", "\"floors\" must be an object of numbers");
                for (const mtft_json *f = mtft_json__first(v); f; f = mtft_json__next(f)) {
                    if (mtft_json__type(f) != MTFT_JSON_NUMBER)
                        return bad_line(lc, "floors", "\"floors\" must be an object of numbers");
                    if ((rc = nv_set(&t->floors, &t->n_floors, &t->cap_floors, mtft_json__key(f),
                                     mtft_json__number(f))) < 0)
                        return rc;
                }
            } else if (strcmp(key, "n") == 0) {
                /* examples evaluated, not a metric */
            } else if (ty == MTFT_JSON_NUMBER || ty == MTFT_JSON_NULL) {
                double val = ty == MTFT_JSON_NUMBER ? mtft_json__number(v) : NAN;
                if (test) {
                    if ((rc = nv_set(&t->test, &t->n_test, &t->cap_test, key, val)) < 0) return rc;
                } else {
                    series *s = dev_get(t, key);
                    if (!s) return MTFT_ENOMEM;
                    if ((rc = series_push(s, x, val)) < 0) return rc;
                }
            } /* other members are not metrics */
        }
    }
    return MTFT_OK;
}

static int parse_line(run *r, const line_ctx *lc) {
    size_t err_off = 0;
    mtft_json *j = mtft_json__parse(lc->text, lc->len, &err_off);
    if (!j) {
        int ln = 1, col = 1;
        mtft_json__line_col(lc->text, lc->len, err_off, &ln, &col);
        return mtft__err(MTFT_EFORMAT, "report: %s:%lld:%d: malformed JSON", lc->path, (long long)lc->line, col);
    }
    int rc = MTFT_OK;
    if (mtft_json__type(j) != MTFT_JSON_OBJECT) {
        rc = bad_line(lc, NULL, "expected a JSON object");
        goto done;
    }
    const char *ev = mtft_json__string(mtft_json__get(j, "event"));
    if (!ev) {
        rc = bad_line(lc, "event", "missing \"event\" (a string)");
        goto done;
    }
    if (strcmp(ev, "step") != 0 && strcmp(ev, "eval") != 0) goto done; /* other events are not charted */
    int64_t step = 0;
    if (!mtft_json__int(mtft_json__get(j, "step"), &step) || step < 0) {
        rc = bad_line(lc, "step", "\"step\" must be a non-negative integer");
        goto done;
    }
    rc = ev[0] == 's' ? parse_step(r, lc, j, step) : parse_eval(r, lc, j, step);
done:
    mtft_json__free(j);
    return rc;
}

static int read_log(run *r, const char *path, int skip_malformed) {
    memset(r, 0, sizeof *r);
    r->test_step = -1;
    char *text = NULL;
    size_t len = 0;
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) {
        mtft__err_prefix("report");
        return rc;
    }
    size_t pos = 0;
    int64_t line = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        line++;
        size_t a = pos, z = end;
        while (a < z && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r')) a++;
        while (z > a && (text[z - 1] == ' ' || text[z - 1] == '\t' || text[z - 1] == '\r')) z--;
        if (z > a) {
            line_ctx lc = {path, line, text + pos, end - pos};
            rc = parse_line(r, &lc);
            if (rc == MTFT_EFORMAT && skip_malformed) {
                if (r->n_malformed++ == 0) r->first_malformed = line;
                mtft_error_clear();
                rc = MTFT_OK;
            }
            if (rc < 0) break;
        }
        pos = end + 1;
    }
    mtft__free(text);
    if (rc < 0) run_free(r);
    return rc;
}

/* Floors from a baselines.json: [{"task": name, "<floor>": number, ...}, ...]. */
static int read_baselines(run *r, const char *path) {
    char *text = NULL;
    size_t len = 0;
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) {
        mtft__err_prefix("report: baselines");
        return rc;
    }
    size_t off = 0;
    mtft_json *j = mtft_json__parse(text, len, &off);
    if (!j) {
        int ln = 1, col = 1;
        mtft_json__line_col(text, len, off, &ln, &col);
        mtft__free(text);
        return mtft__err(MTFT_EFORMAT, "report: %s:%d:%d: malformed JSON", path, ln, col);
    }
    mtft__free(text);
    if (mtft_json__type(j) != MTFT_JSON_ARRAY) {
        rc = mtft__err(MTFT_EFORMAT, "report: %s: expected an array of {\"task\": ...} objects", path);
        goto done;
    }
    for (const mtft_json *e = mtft_json__first(j); e; e = mtft_json__next(e)) {
        const char *name = mtft_json__string(mtft_json__get(e, "task"));
        if (!name) continue;
        for (int k = 0; k < r->n_tasks; k++) {
            rtask *t = &r->tasks[k];
            if (strcmp(t->name, name) != 0) continue;
            for (const mtft_json *f = mtft_json__first(e); f; f = mtft_json__next(f)) {
                if (mtft_json__type(f) != MTFT_JSON_NUMBER || strcmp(mtft_json__key(f), "n_test") == 0) continue;
                if (nv_find(t->floors, t->n_floors, mtft_json__key(f))) continue; /* the log's value wins */
                if ((rc = nv_set(&t->floors, &t->n_floors, &t->cap_floors, mtft_json__key(f), mtft_json__number(f))) < 0)
                    goto done;
            }
        }
    }
done:
    mtft_json__free(j);
    return rc;
}

/* ---- per-task figures ---------------------------------------------------------- */

static int lower_is_better(const char *metric) {
    mtft_metric m;
    if (mtft_metric_from_name(metric, &m) == MTFT_OK) {
        mtft_error_clear();
        return mtft_metric_lower_is_better(m);
    }
    mtft_error_clear();
    return strcmp(metric, "loss") == 0;
}

static const series *dev_find(const rtask *t, const char *metric) {
    for (int i = 0; i < t->n_dev; i++)
        if (strcmp(t->dev[i].name, metric) == 0) return &t->dev[i].s;
    return NULL;
}

static const char *task_primary(const rtask *t) {
    if (t->primary) return t->primary;
    static const char *const order[] = {"accuracy", "token_accuracy", "pearson", "perplexity"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (dev_find(t, order[i]) || nv_find(t->test, t->n_test, order[i])) return order[i];
    if (t->n_dev > 0) return t->dev[0].name;
    if (t->n_test > 0) return t->test[0].name;
    return NULL;
}

/* Mean of the last FINAL_WINDOW finite losses; NaN when none. */
static double final_loss(const rtask *t) {
    double s = 0;
    int n = 0;
    for (size_t i = t->loss.n; i-- > 0 && n < FINAL_WINDOW;)
        if (isfinite(t->loss.y[i])) s += t->loss.y[i], n++;
    return n ? s / n : NAN;
}

/* Best dev value of the primary metric and its (first) step. */
static int best_dev(const rtask *t, double *val, int64_t *step) {
    const char *pm = task_primary(t);
    const series *s = pm ? dev_find(t, pm) : NULL;
    if (!s) return 0;
    int low = lower_is_better(pm), found = 0;
    for (size_t i = 0; i < s->n; i++) {
        double v = s->y[i];
        if (!isfinite(v)) continue;
        if (!found || (low ? v < *val : v > *val)) {
            *val = v;
            *step = (int64_t)s->x[i];
            found = 1;
        }
    }
    return found;
}

static double test_primary(const rtask *t) {
    const char *pm = task_primary(t);
    const named_val *v = pm ? nv_find(t->test, t->n_test, pm) : NULL;
    return v ? v->v : NAN;
}

static void fmt_num(char *buf, size_t n, double v) {
    if (!isfinite(v))
        snprintf(buf, n, "-");
    else if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3))
        snprintf(buf, n, "%.3e", v);
    else
        snprintf(buf, n, "%.4f", v);
}

/* ---- summary ------------------------------------------------------------------ */

int mtft_report_summary(const char *metrics_jsonl_path, FILE *out) {
    MTFT_CHECK_ARG(metrics_jsonl_path != NULL);
    MTFT_CHECK_ARG(out != NULL);
    run r;
    int rc = read_log(&r, metrics_jsonl_path, 0);
    if (rc < 0) return rc;
    int wn = 4, wm = 7;
    for (int k = 0; k < r.n_tasks; k++) {
        int l = (int)strlen(r.tasks[k].name);
        if (l > wn) wn = l;
        const char *pm = task_primary(&r.tasks[k]);
        if (pm && (int)strlen(pm) > wm) wm = (int)strlen(pm);
    }
    int64_t last = r.total.n ? (int64_t)r.total.x[r.total.n - 1] : 0;
    fprintf(out, "summary of %s: %lld steps, %d tasks\n", metrics_jsonl_path, (long long)last, r.n_tasks);
    fprintf(out, "%-*s  %10s  %-*s  %10s  %6s  %10s\n", wn, "task", "train loss", wm, "primary", "best dev", "@step",
            "test");
    for (int k = 0; k < r.n_tasks; k++) {
        const rtask *t = &r.tasks[k];
        char a[32], b[32], c[32], st[32];
        double bv = NAN;
        int64_t bs = 0;
        int have = best_dev(t, &bv, &bs);
        fmt_num(a, sizeof a, final_loss(t));
        fmt_num(b, sizeof b, have ? bv : NAN);
        fmt_num(c, sizeof c, test_primary(t));
        if (have)
            snprintf(st, sizeof st, "%lld", (long long)bs);
        else
            snprintf(st, sizeof st, "-");
        const char *pm = task_primary(t);
        fprintf(out, "%-*s  %10s  %-*s  %10s  %6s  %10s", wn, t->name, a, wm, pm ? pm : "-", b, st, c);
        for (int i = 0; i < t->n_floors; i++) {
            fmt_num(a, sizeof a, t->floors[i].v);
            fprintf(out, "%s%s %s", i ? ", " : "  floors: ", t->floors[i].name, a);
        }
        fputc('\n', out);
    }
    fprintf(out, "(train loss: mean of the last %d logged losses; best dev and test: the primary metric)\n",
            FINAL_WINDOW);
    run_free(&r);
    if (fflush(out) != 0 || ferror(out)) return mtft__err(MTFT_EIO, "report: writing the summary failed");
    return MTFT_OK;
}

/* ---- HTML ---------------------------------------------------------------------- */

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1180px;"
    "color:#222;padding:0 12px}\n"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;"
    "padding-bottom:4px}\n"
    ".meta{color:#555;font-size:13px;margin:2px 0}\n"
    ".charts{display:flex;flex-wrap:wrap;gap:14px}\n"
    ".charts svg{border:1px solid #e3e3e3;border-radius:4px;background:#fff}\n"
    "svg text{font:12px sans-serif;fill:#333}svg .ct{font-size:14px;font-weight:600}svg .al{fill:#555}\n"
    "svg .grid line{stroke:#ececec;stroke-width:1}svg line.ax{stroke:#444;stroke-width:1}\n"
    "table{border-collapse:collapse;font-size:13px;margin:6px 0}\n"
    "th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\n"
    "th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".sw{display:inline-block;width:22px;height:0;vertical-align:middle;margin-right:6px}\n"
    ".note{color:#666;font-size:12px}\n"
    "footer{margin-top:32px;color:#888;font-size:12px}\n";

typedef struct html_ctx {
    mtft_svg_buf *b;
    const mtft_report_options *o;
    const run *r;
} html_ctx;

static void smooth(const series *s, double alpha, double *y) {
    double last = 0, wsum = 0;
    for (size_t i = 0; i < s->n; i++) {
        double v = s->y[i];
        if (!isfinite(v)) {
            y[i] = NAN;
            continue;
        }
        if (alpha <= 0) {
            y[i] = v;
            continue;
        }
        last = alpha * last + (1 - alpha) * v;
        wsum = alpha * wsum + (1 - alpha);
        y[i] = last / wsum; /* debiased, as TensorBoard */
    }
}

/* A chart of one step series per task (which: 0 loss, 1 weight, 2 rate). */
static int task_chart(html_ctx *h, int which, const char *title, const char *ylabel, int log_y, int y_zero) {
    const run *r = h->r;
    int K = r->n_tasks;
    if (K == 0) return MTFT_OK;
    mtft_svg_line *lines = mtft__calloc((size_t)K, sizeof *lines);
    double **ys = mtft__calloc((size_t)K, sizeof *ys);
    int rc = MTFT_OK;
    if (!lines || !ys) {
        rc = mtft__err(MTFT_ENOMEM, "report: out of memory");
        goto done;
    }
    for (int k = 0; k < K; k++) {
        const rtask *t = &r->tasks[k];
        const series *s = which == 0 ? &t->loss : which == 1 ? &t->weight : &t->rate;
        lines[k].name = t->name;
        lines[k].x = s->x;
        lines[k].y = s->y;
        lines[k].n = s->n;
        lines[k].color = k;
        if (which == 0 && h->o->smoothing > 0 && s->n > 0) {
            ys[k] = mtft__malloc(s->n * sizeof *ys[k]);
            if (!ys[k]) {
                rc = mtft__err(MTFT_ENOMEM, "report: out of memory");
                goto done;
            }
            smooth(s, h->o->smoothing, ys[k]);
            lines[k].y = ys[k];
        }
    }
    mtft_svg_chart c = {title, "step", ylabel, h->o->chart_width, h->o->chart_height, log_y, y_zero,
                        (size_t)h->o->max_points};
    rc = mtft_svg__chart(h->b, &c, lines, K);
done:
    if (ys)
        for (int k = 0; k < K; k++) mtft__free(ys[k]);
    mtft__free(ys);
    mtft__free(lines);
    return rc;
}

/* sm: 1 smooth (a loss), 0 raw; markers only on evaluation series (eval = 1). */
static int single_chart_ex(html_ctx *h, const series *s, const char *title, const char *ylabel, int log_y, int sm,
                           int eval) {
    double *y = NULL;
    mtft_svg_line line = {NULL, s->x, s->y, s->n, 0, 0};
    if (sm && h->o->smoothing > 0 && s->n > 0) {
        y = mtft__malloc(s->n * sizeof *y);
        if (!y) return mtft__err(MTFT_ENOMEM, "report: out of memory");
        smooth(s, h->o->smoothing, y);
        line.y = y;
    }
    line.markers = eval && s->n <= 60;
    mtft_svg_chart c = {title, "step", ylabel, h->o->chart_width, h->o->chart_height, log_y, 0,
                        (size_t)h->o->max_points};
    int rc = mtft_svg__chart(h->b, &c, &line, 1);
    mtft__free(y);
    return rc;
}

static int single_chart(html_ctx *h, const series *s, const char *title, const char *ylabel, int log_y, int sm) {
    return single_chart_ex(h, s, title, ylabel, log_y, sm, 0);
}

/* One chart per dev metric, with a line for each task that reports it. */
static int metric_charts(html_ctx *h) {
    const run *r = h->r;
    int K = r->n_tasks, rc = MTFT_OK;
    if (K == 0) return MTFT_OK;
    mtft_svg_line *lines = mtft__calloc((size_t)K, sizeof *lines);
    if (!lines) return mtft__err(MTFT_ENOMEM, "report: out of memory");
    for (int k = 0; k < K && rc == MTFT_OK; k++) {
        for (int i = 0; i < r->tasks[k].n_dev && rc == MTFT_OK; i++) {
            const char *metric = r->tasks[k].dev[i].name;
            int seen = 0; /* charted already with an earlier task */
            for (int k2 = 0; k2 < k && !seen; k2++) seen = dev_find(&r->tasks[k2], metric) != NULL;
            if (seen) continue;
            int n = 0;
            for (int k2 = k; k2 < K; k2++) {
                const series *s = dev_find(&r->tasks[k2], metric);
                if (!s) continue;
                mtft_svg_line ln = {r->tasks[k2].name, s->x, s->y, s->n, k2, s->n <= 60};
                lines[n++] = ln;
            }
            char title[160];
            snprintf(title, sizeof title, "dev %s%s", metric, lower_is_better(metric) ? " (lower is better)" : "");
            mtft_svg_chart c = {title, "step", metric, h->o->chart_width, h->o->chart_height, 0, 0,
                                (size_t)h->o->max_points};
            rc = mtft_svg__chart(h->b, &c, lines, n);
        }
    }
    mtft__free(lines);
    return rc;
}

static void td_num(mtft_svg_buf *b, double v) {
    char s[32];
    fmt_num(s, sizeof s, v);
    mtft_svg__printf(b, "<td class=\"n\">%s</td>", s);
}

static void results_table(html_ctx *h) {
    mtft_svg_buf *b = h->b;
    const run *r = h->r;
    char s[32];
    mtft_svg__puts(b, "<table>\n<tr><th>task</th><th>train loss</th><th>primary metric</th><th>best dev</th>"
                      "<th>at step</th><th>test</th><th>all test metrics</th><th>floors</th></tr>\n");
    for (int k = 0; k < r->n_tasks; k++) {
        const rtask *t = &r->tasks[k];
        const char *pm = task_primary(t);
        double bv = NAN;
        int64_t bs = 0;
        int have = best_dev(t, &bv, &bs);
        const char *dash = mtft_svg__dash(k);
        mtft_svg__printf(b, "<tr><td><span class=\"sw\" style=\"border-top:3px %s %s\"></span>",
                         !dash ? "solid" : dash[0] == '6' ? "dashed" : "dotted", mtft_svg__color(k));
        mtft_svg__escape(b, t->name);
        mtft_svg__puts(b, "</td>");
        td_num(b, final_loss(t));
        mtft_svg__puts(b, "<td>");
        mtft_svg__escape(b, pm ? pm : "-");
        mtft_svg__puts(b, "</td>");
        td_num(b, have ? bv : NAN);
        if (have)
            mtft_svg__printf(b, "<td class=\"n\">%lld</td>", (long long)bs);
        else
            mtft_svg__puts(b, "<td class=\"n\">-</td>");
        td_num(b, test_primary(t));
        mtft_svg__puts(b, "<td>");
        for (int i = 0; i < t->n_test; i++) {
            fmt_num(s, sizeof s, t->test[i].v);
            if (i) mtft_svg__puts(b, "<br/>");
            mtft_svg__escape(b, t->test[i].name);
            mtft_svg__printf(b, " %s", s);
        }
        if (t->n_test == 0) mtft_svg__puts(b, "-");
        mtft_svg__puts(b, "</td><td>");
        for (int i = 0; i < t->n_floors; i++) {
            fmt_num(s, sizeof s, t->floors[i].v);
            if (i) mtft_svg__puts(b, "<br/>");
            mtft_svg__escape(b, t->floors[i].name);
            mtft_svg__printf(b, " %s", s);
        }
        if (t->n_floors == 0) mtft_svg__puts(b, "-");
        mtft_svg__puts(b, "</td></tr>\n");
    }
    mtft_svg__puts(b, "</table>\n");
    mtft_svg__printf(b, "<p class=\"note\">train loss: mean of the task's last %d logged losses. best dev: the "
                        "task's primary metric over the dev evaluations. ", FINAL_WINDOW);
    if (r->test_step >= 0)
        mtft_svg__printf(b, "test: the evaluation logged at step %lld.</p>\n", (long long)r->test_step);
    else
        mtft_svg__puts(b, "The log holds no test evaluation.</p>\n");
}

static int write_html(mtft_svg_buf *b, const run *r, const char *src, const mtft_report_options *o) {
    html_ctx h = {b, o, r};
    const char *title = o->title && o->title[0] ? o->title : "mtft training report";
    mtft_svg__puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>");
    mtft_svg__escape(b, title);
    mtft_svg__puts(b, "</title>\n<style>\n");
    mtft_svg__puts(b, css);
    mtft_svg__puts(b, "</style>\n</head>\n<body>\n<h1>");
    mtft_svg__escape(b, title);
    mtft_svg__puts(b, "</h1>\n<p class=\"meta\">log: ");
    mtft_svg__escape(b, src);
    mtft_svg__puts(b, "</p>\n");

    int64_t last = r->total.n ? (int64_t)r->total.x[r->total.n - 1] : 0;
    double tokens = 0, skipped = 0;
    for (size_t i = 0; i < r->tokens.n; i++) tokens += r->tokens.y[i];
    for (size_t i = 0; i < r->skipped.n; i++) skipped += r->skipped.y[i] != 0;
    mtft_svg__printf(b, "<p class=\"meta\">%zu steps logged (last step %lld), %d tasks, %zu dev evaluations, "
                        "%.0f tokens, %.1f s",
                     r->total.n, (long long)last, r->n_tasks, r->score.n, tokens, r->elapsed);
    if (r->elapsed > 0) mtft_svg__printf(b, " (%.0f tokens/s)", tokens / r->elapsed);
    mtft_svg__printf(b, ", %.0f skipped (non-finite) steps", skipped);
    if (r->n_resumes) mtft_svg__printf(b, ", %d resumed run%s", r->n_resumes, r->n_resumes > 1 ? "s" : "");
    mtft_svg__puts(b, ".</p>\n");
    if (r->n_malformed)
        mtft_svg__printf(b, "<p class=\"meta\"><b>%lld malformed line%s skipped</b> (the first: line %lld).</p>\n",
                         (long long)r->n_malformed, r->n_malformed > 1 ? "s" : "", (long long)r->first_malformed);

    mtft_svg__puts(b, "<h2>Results per task</h2>\n");
    results_table(&h);

    int rc;
    mtft_svg__puts(b, "<h2>Training loss</h2>\n");
    if (o->smoothing > 0)
        mtft_svg__printf(b, "<p class=\"note\">losses smoothed by an exponential moving average (%.2f).</p>\n",
                         o->smoothing);
    mtft_svg__puts(b, "<div class=\"charts\">\n");
    if ((rc = single_chart(&h, &r->total, "total loss (weighted sum)", "loss", o->log_loss, 1)) < 0) return rc;
    if ((rc = task_chart(&h, 0, "training loss per task", "loss", o->log_loss, 0)) < 0) return rc;
    if ((rc = single_chart(&h, &r->lr, "learning rate", "lr", 0, 0)) < 0) return rc;
    mtft_svg__puts(b, "</div>\n<h2>Balancer weights and sampling rates</h2>\n<div class=\"charts\">\n");
    if ((rc = task_chart(&h, 1, "balancer weight per task", "weight", 0, 1)) < 0) return rc;
    if ((rc = task_chart(&h, 2, "sampling rate per task", "rate", 0, 1)) < 0) return rc;
    mtft_svg__puts(b, "</div>\n<h2>Evaluation on dev</h2>\n");
    if (r->score.n == 0) {
        mtft_svg__puts(b, "<p class=\"note\">The log holds no dev evaluation.</p>\n");
    } else {
        mtft_svg__puts(b, "<div class=\"charts\">\n");
        if ((rc = single_chart_ex(&h, &r->score, "dev selection score (mean of primary metrics)", "score", 0, 0, 1)) < 0)
            return rc;
        if ((rc = metric_charts(&h)) < 0) return rc;
        mtft_svg__puts(b, "</div>\n");
    }
    mtft_svg__printf(b, "<footer>generated by mtft %s from the metrics log; no scripts, no external "
                        "resources.</footer>\n</body>\n</html>\n",
                     mtft_version_string());
    return b->oom ? mtft__err(MTFT_ENOMEM, "report: out of memory writing the HTML") : MTFT_OK;
}

static int write_atomic(const char *path, const char *data, size_t n) {
    int rc = mtft_io__write_atomic(path, data, n, 0);
    if (rc < 0) mtft__err_prefix("report");
    return rc;
}

int mtft_report_html(const char *metrics_jsonl_path, const char *html_out_path, const mtft_report_options *o) {
    MTFT_CHECK_ARG(metrics_jsonl_path != NULL);
    MTFT_CHECK_ARG(html_out_path != NULL && html_out_path[0] != '\0');
    mtft_report_options def = MTFT_REPORT_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version != MTFT_REPORT_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "report: options version %d, expected %d (use MTFT_REPORT_OPTIONS_INIT)",
                         o->version, MTFT_REPORT_OPTIONS_VERSION);
    if (o->max_points < 16) return mtft__err(MTFT_EINVAL, "report: max_points %d < 16", o->max_points);
    if (!(o->smoothing >= 0 && o->smoothing < 1))
        return mtft__err(MTFT_EINVAL, "report: smoothing %g outside [0, 1)", o->smoothing);
    if (o->chart_width < 200 || o->chart_height < 120 || o->chart_width > 10000 || o->chart_height > 10000)
        return mtft__err(MTFT_EINVAL, "report: chart size %dx%d outside [200, 10000] x [120, 10000]", o->chart_width,
                         o->chart_height);
    run r;
    int rc = read_log(&r, metrics_jsonl_path, o->skip_malformed);
    if (rc < 0) return rc;
    mtft_svg_buf b = {0};
    if (o->baselines_path && o->baselines_path[0]) rc = read_baselines(&r, o->baselines_path);
    if (rc == MTFT_OK) rc = write_html(&b, &r, metrics_jsonl_path, o);
    if (rc == MTFT_OK) rc = write_atomic(html_out_path, b.p, b.n);
    mtft_svg__buf_free(&b);
    run_free(&r);
    return rc;
}
