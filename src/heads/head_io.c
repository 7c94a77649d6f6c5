/* Saving and loading a head: dir/head.safetensors holds the parameters
 * (HF-style names, see mtft/head.h); dir/head_config.json holds the options
 * and, for regression heads, the target statistics "target_mean" and
 * "target_std" (arrays of L numbers; a float survives the trip through a
 * JSON double exactly):
 *   {"format": "mtft-head", "format_version": 1, "name": "sst2",
 *    "kind": "classification", "n_embd": 768, "n_labels": 2, "pool": "last",
 *    "hidden_size": 0, "activation": "tanh", "dropout": 0.1,
 *    "label_smoothing": 0, "class_weights": null, "loss": "mse",
 *    "huber_delta": 1, "standardize": true, "threshold": 0.5}
 * Both files are written to a temporary name, flushed and renamed. */
#include <stdio.h>
#include <string.h>

#include "../io/atomic.h"
#include "../io/json.h"
#include "head_impl.h"

#define HEAD_FORMAT "mtft-head"
#define HEAD_FORMAT_VERSION 1

static int join(char *buf, size_t n, const char *dir, const char *file) {
    int k = snprintf(buf, n, "%s/%s", dir, file);
    if (k < 0 || (size_t)k >= n) return mtft__err(MTFT_EINVAL, "head: path '%s/%s' is too long", dir, file);
    return MTFT_OK;
}

static char *config_json(const mtft_head *h) {
    const mtft_head_options *o = &h->o;
    mtft_json *j = mtft_json__new_object();
    if (!j) return NULL;
    int bad = 0;
    bad |= mtft_json__add(j, "format", mtft_json__new_string(HEAD_FORMAT));
    bad |= mtft_json__add(j, "format_version", mtft_json__new_number(HEAD_FORMAT_VERSION));
    bad |= mtft_json__add(j, "name", mtft_json__new_string(h->name));
    bad |= mtft_json__add(j, "kind", mtft_json__new_string(mtft_head__kind_name(o->kind)));
    bad |= mtft_json__add(j, "n_embd", mtft_json__new_number(h->n_embd));
    bad |= mtft_json__add(j, "n_labels", mtft_json__new_number(o->n_labels));
    bad |= mtft_json__add(j, "pool", mtft_json__new_string(mtft_head__pool_name(o->pool)));
    bad |= mtft_json__add(j, "hidden_size", mtft_json__new_number(o->hidden_size));
    bad |= mtft_json__add(j, "activation", mtft_json__new_string(mtft_head__act_name(o->activation)));
    bad |= mtft_json__add(j, "dropout", mtft_json__new_number(o->dropout));
    bad |= mtft_json__add(j, "label_smoothing", mtft_json__new_number(o->label_smoothing));
    if (h->class_weights) {
        mtft_json *a = mtft_json__new_array();
        for (int i = 0; a && i < o->n_labels; i++) bad |= mtft_json__append(a, mtft_json__new_number(h->class_weights[i]));
        bad |= mtft_json__add(j, "class_weights", a);
    } else {
        bad |= mtft_json__add(j, "class_weights", mtft_json__new_null());
    }
    bad |= mtft_json__add(j, "loss", mtft_json__new_string(mtft_head__loss_name(o->loss)));
    bad |= mtft_json__add(j, "huber_delta", mtft_json__new_number(o->huber_delta));
    bad |= mtft_json__add(j, "standardize", mtft_json__new_bool(o->standardize));
    bad |= mtft_json__add(j, "threshold", mtft_json__new_number(o->threshold));
    if (o->kind == MTFT_HEAD_REGRESSION) {
        mtft_json *a = mtft_json__new_array(), *b = mtft_json__new_array();
        for (int i = 0; a && b && i < o->n_labels; i++) {
            bad |= mtft_json__append(a, mtft_json__new_number(h->mean[i]));
            bad |= mtft_json__append(b, mtft_json__new_number(h->std[i]));
        }
        bad |= mtft_json__add(j, "target_mean", a);
        bad |= mtft_json__add(j, "target_std", b);
    }
    char *s = bad ? NULL : mtft_json__print(j, 1);
    mtft_json__free(j);
    return s;
}

int mtft_head_save(const mtft_head *h, const char *dir) {
    MTFT_CHECK_ARG(h && dir);
    char path[4096];
    mtft_head *hh = (mtft_head *)h; /* group accessors take non-const handles; nothing is modified */
    const int n = mtft_param_group_count(hh->pg);
    const char **names = mtft__calloc((size_t)n + 1, sizeof *names);
    const float **data = mtft__calloc((size_t)n + 1, sizeof *data);
    int *ndims = mtft__calloc((size_t)n + 1, sizeof *ndims);
    int64_t *shapes = mtft__calloc((size_t)(n + 1) * 2, sizeof *shapes);
    const int64_t **sp = mtft__calloc((size_t)n + 1, sizeof *sp);
    int rc = names && data && ndims && shapes && sp ? MTFT_OK : mtft__err(MTFT_ENOMEM, "head: out of memory");
    for (int i = 0; rc == MTFT_OK && i < n; i++) {
        mtft_tensor *t = mtft_param_group_tensor(hh->pg, i);
        int64_t s[MTFT_MAX_DIMS];
        ndims[i] = mtft_tensor_shape(t, s);
        for (int d = 0; d < ndims[i]; d++) shapes[2 * i + d] = s[d];
        names[i] = mtft_tensor_name(t);
        data[i] = mtft_tensor_data(t);
        sp[i] = shapes + 2 * i;
    }
    static const char *const meta[] = {"format", "pt", "mtft", HEAD_FORMAT, NULL};
    if (rc == MTFT_OK) rc = join(path, sizeof path, dir, "head.safetensors");
    if (rc == MTFT_OK) rc = mtft_safetensors_save_raw(path, n, names, data, ndims, sp, meta);
    char *js = NULL;
    if (rc == MTFT_OK) rc = join(path, sizeof path, dir, "head_config.json");
    if (rc == MTFT_OK && !(js = config_json(h))) rc = mtft__err(MTFT_ENOMEM, "head: out of memory");
    if (rc == MTFT_OK) rc = mtft_io__write_atomic(path, js, strlen(js), 1); /* ends with a newline */
    mtft__free(js);
    mtft__free(names);
    mtft__free(data);
    mtft__free(ndims);
    mtft__free(shapes);
    mtft__free(sp);
    if (rc < 0) mtft__err_prefix("saving head '%s' to '%s'", h->name, dir);
    return rc;
}

/* ---- load ------------------------------------------------------------------------ */
typedef struct cfg_reader {
    const char *path, *text;
    size_t len;
    const mtft_json *root;
} cfg_reader;

/* "path:line:col: key 'k': msg" at the key's position. */
static int key_err(const cfg_reader *r, int code, const char *key, const char *msg, const char *detail) {
    int line = 1, col = 1;
    size_t off = mtft_json__find_key(r->text, r->len, key);
    if (off) mtft_json__line_col(r->text, r->len, off, &line, &col);
    return mtft__err(code, "%s:%d:%d: key '%s': %s%s", r->path, line, col, key, msg, detail ? detail : "");
}

static int get_int(const cfg_reader *r, const char *key, int *out) {
    const mtft_json *v = mtft_json__get(r->root, key);
    int64_t x;
    if (!v) return key_err(r, MTFT_EFORMAT, key, "missing", NULL);
    if (!mtft_json__int(v, &x) || x < -2147483647 || x > 2147483647)
        return key_err(r, MTFT_EFORMAT, key, "expected an integer, got ", mtft_json__type_name(v));
    *out = (int)x;
    return MTFT_OK;
}
static int get_float(const cfg_reader *r, const char *key, float *out) {
    const mtft_json *v = mtft_json__get(r->root, key);
    if (!v) return key_err(r, MTFT_EFORMAT, key, "missing", NULL);
    if (mtft_json__type(v) != MTFT_JSON_NUMBER)
        return key_err(r, MTFT_EFORMAT, key, "expected a number, got ", mtft_json__type_name(v));
    *out = (float)mtft_json__number(v);
    return MTFT_OK;
}
/* A string key that must be one of n names (name i -> value i). */
static int get_enum(const cfg_reader *r, const char *key, const char *(*name)(int), int n, int *out) {
    const mtft_json *v = mtft_json__get(r->root, key);
    if (!v) return key_err(r, MTFT_EFORMAT, key, "missing", NULL);
    const char *s = mtft_json__string(v);
    if (!s) return key_err(r, MTFT_EFORMAT, key, "expected a string, got ", mtft_json__type_name(v));
    for (int i = 0; i < n; i++)
        if (name(i) && strcmp(name(i), s) == 0) {
            *out = i;
            return MTFT_OK;
        }
    return key_err(r, MTFT_EFORMAT, key, "unknown value ", s);
}
/* An array of exactly n numbers into dst. */
static int get_floats(const cfg_reader *r, const char *key, int n, float *dst) {
    const mtft_json *v = mtft_json__get(r->root, key);
    if (!v) return key_err(r, MTFT_EFORMAT, key, "missing", NULL);
    if (mtft_json__type(v) != MTFT_JSON_ARRAY || mtft_json__size(v) != n)
        return key_err(r, MTFT_EFORMAT, key, "expected an array of one number per target", NULL);
    int i = 0;
    for (const mtft_json *e = mtft_json__first(v); e; e = mtft_json__next(e), i++) {
        if (mtft_json__type(e) != MTFT_JSON_NUMBER)
            return key_err(r, MTFT_EFORMAT, key, "expected numbers, got ", mtft_json__type_name(e));
        dst[i] = (float)mtft_json__number(e);
    }
    return MTFT_OK;
}

static const char *kind_i(int i) { return mtft_head__kind_name((mtft_head_kind)i); }
static const char *pool_i(int i) { return mtft_head__pool_name((mtft_pool_mode)i); }
static const char *act_i(int i) { return mtft_head__act_name((mtft_head_activation)i); }
static const char *loss_i(int i) { return mtft_head__loss_name((mtft_head_loss_kind)i); }

int mtft_head_load(mtft_head **out, const char *dir) {
    MTFT_CHECK_ARG(out && dir);
    *out = NULL;
    char path[4096];
    int rc = join(path, sizeof path, dir, "head_config.json");
    if (rc < 0) return rc;
    char *text = NULL;
    size_t len = 0;
    rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) return rc;
    size_t eoff = 0;
    mtft_json *root = mtft_json__parse(text, len, &eoff);
    cfg_reader r = {path, text, len, root};
    float *cw = NULL;
    mtft_head *h = NULL;
    mtft_safetensors *st = NULL;
    if (!root) {
        int line, col;
        mtft_json__line_col(text, len, eoff, &line, &col);
        rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: invalid JSON", path, line, col);
        goto done;
    }
    if (mtft_json__type(root) != MTFT_JSON_OBJECT) {
        rc = mtft__err(MTFT_EFORMAT, "%s:1:1: expected a JSON object, got %s", path, mtft_json__type_name(root));
        goto done;
    }
    const char *fmt = mtft_json__string(mtft_json__get(root, "format"));
    if (!fmt || strcmp(fmt, HEAD_FORMAT) != 0) {
        rc = key_err(&r, MTFT_EFORMAT, "format", "expected \"" HEAD_FORMAT "\"", NULL);
        goto done;
    }
    int fv = 0, n_embd = 0, kind = 0, pool = 0, act = 0, loss = 0;
    if ((rc = get_int(&r, "format_version", &fv)) < 0) goto done;
    if (fv != HEAD_FORMAT_VERSION) {
        rc = key_err(&r, MTFT_EUNSUPPORTED, "format_version", "this mtft reads version 1", NULL);
        goto done;
    }
    mtft_head_options o = MTFT_HEAD_OPTIONS_INIT;
    const char *name = mtft_json__string(mtft_json__get(root, "name"));
    if (!name) {
        rc = key_err(&r, MTFT_EFORMAT, "name", "expected a string, got ", mtft_json__type_name(mtft_json__get(root, "name")));
        goto done;
    }
    o.name = name;
    if ((rc = get_enum(&r, "kind", kind_i, 5, &kind)) < 0) goto done;
    o.kind = (mtft_head_kind)kind;
    if ((rc = get_int(&r, "n_embd", &n_embd)) < 0 || (rc = get_int(&r, "n_labels", &o.n_labels)) < 0 ||
        (rc = get_enum(&r, "pool", pool_i, 3, &pool)) < 0 || (rc = get_int(&r, "hidden_size", &o.hidden_size)) < 0 ||
        (rc = get_enum(&r, "activation", act_i, 4, &act)) < 0 || (rc = get_float(&r, "dropout", &o.dropout)) < 0 ||
        (rc = get_float(&r, "label_smoothing", &o.label_smoothing)) < 0 ||
        (rc = get_enum(&r, "loss", loss_i, 2, &loss)) < 0 || (rc = get_float(&r, "huber_delta", &o.huber_delta)) < 0 ||
        (rc = get_float(&r, "threshold", &o.threshold)) < 0)
        goto done;
    o.pool = (mtft_pool_mode)pool;
    o.activation = (mtft_head_activation)act;
    o.loss = (mtft_head_loss_kind)loss;
    const mtft_json *sd = mtft_json__get(root, "standardize");
    if (mtft_json__type(sd) != MTFT_JSON_BOOL) {
        rc = key_err(&r, MTFT_EFORMAT, "standardize", "expected true or false, got ", mtft_json__type_name(sd));
        goto done;
    }
    o.standardize = mtft_json__bool(sd);
    const mtft_json *w = mtft_json__get(root, "class_weights");
    if (mtft_json__type(w) == MTFT_JSON_ARRAY) {
        if (o.n_labels < 1 || mtft_json__size(w) != o.n_labels) {
            rc = key_err(&r, MTFT_EFORMAT, "class_weights", "expected one number per label", NULL);
            goto done;
        }
        cw = mtft__malloc((size_t)o.n_labels * sizeof(float));
        if (!cw) {
            rc = mtft__err(MTFT_ENOMEM, "head: out of memory");
            goto done;
        }
        int i = 0;
        for (const mtft_json *e = mtft_json__first(w); e; e = mtft_json__next(e), i++) {
            if (mtft_json__type(e) != MTFT_JSON_NUMBER) {
                rc = key_err(&r, MTFT_EFORMAT, "class_weights", "expected numbers, got ", mtft_json__type_name(e));
                goto done;
            }
            cw[i] = (float)mtft_json__number(e);
        }
        o.class_weights = cw;
    } else if (mtft_json__type(w) != MTFT_JSON_NULL && mtft_json__type(w) != MTFT_JSON_NONE) {
        rc = key_err(&r, MTFT_EFORMAT, "class_weights", "expected an array or null, got ", mtft_json__type_name(w));
        goto done;
    }
    rc = mtft_head_new(&h, n_embd, &o, 0);
    if (rc < 0) {
        mtft__err_prefix("%s", path);
        goto done;
    }
    if (o.kind == MTFT_HEAD_REGRESSION) {
        float *ms = mtft__malloc((size_t)o.n_labels * 2 * sizeof(float));
        if (!ms) rc = mtft__err(MTFT_ENOMEM, "head: out of memory");
        if (rc == MTFT_OK) rc = get_floats(&r, "target_mean", o.n_labels, ms);
        if (rc == MTFT_OK) rc = get_floats(&r, "target_std", o.n_labels, ms + o.n_labels);
        if (rc == MTFT_OK && (rc = mtft_head_set_target_stats(h, ms, ms + o.n_labels, o.n_labels)) < 0)
            mtft__err_prefix("%s", path);
        mtft__free(ms);
        if (rc < 0) goto done;
    }
    if ((rc = join(path, sizeof path, dir, "head.safetensors")) < 0) goto done;
    if ((rc = mtft_safetensors_open(&st, path)) < 0) goto done;
    rc = mtft_safetensors_load_group(st, h->pg, NULL, 1); /* its errors name the file */
    if (rc > 0) rc = MTFT_OK;
done:
    mtft_safetensors_close(st);
    mtft_json__free(root);
    mtft__free(text);
    mtft__free(cw);
    if (rc < 0) {
        mtft_head_free(h);
        return rc;
    }
    *out = h;
    return MTFT_OK;
}
