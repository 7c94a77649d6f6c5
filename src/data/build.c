/* Building a tokenized task: read each split file (JSONL, CSV, TSV), check
 * every record, render the template, tokenize once, collect the label set,
 * carve fractional splits, and lay it all out as one blob (data_impl.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_impl.h"
#include "io/json.h"
#include "template.h"

typedef struct vec_i32 {
    int32_t *v;
    size_t n, cap;
} vec_i32;

static int vpush(vec_i32 *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *nv = mtft__realloc(a->v, cap * sizeof *nv);
        if (!nv) return -1;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct strbuf {
    char *s;
    size_t n, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = mtft__realloc(b->s, cap);
        if (!ns) return -1;
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return 0;
}

/* A list item: bytes and length (not NUL-terminated for CSV splits). */
typedef struct item {
    const char *s;
    size_t len;
} item;

typedef struct items {
    item *v;
    int n, cap;
} items;

static int ipush(items *a, const char *s, size_t len) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        item *nv = mtft__realloc(a->v, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n].s = s;
    a->v[a->n].len = len;
    a->n++;
    return 0;
}

typedef struct builder {
    mtft_task *t;
    mtft_tokenizer *tok;
    int32_t eos;
    /* output */
    mtft_ds_entry *ent[MTFT_SPLIT_COUNT];
    int64_t n_ent[MTFT_SPLIT_COUNT], cap_ent[MTFT_SPLIT_COUNT];
    vec_i32 pool;
    FILE *out;          /* cache file being written, or NULL (in memory) */
    const char *out_name;
    int64_t pool_base;  /* pool words already written to out */
    /* label set with an open-addressing index */
    char **lab;
    int n_lab, cap_lab;
    int32_t *ht;
    int ht_cap;
    int labels_fixed;
    int64_t skipped[MTFT_BAD_N_REASONS];
    int64_t first_skip_reported;
    /* mtft_task_encode_input: one record, not from a file; label, value,
     * tags and target fields optional (has_target says whether present) */
    int encode;
    int has_target;
    /* current record */
    const char *path;
    int file;
    int line;
    int is_json;
    mtft_json *json;
    const mtft_csv *csv;
    char **hdr;
    int n_hdr;
    /* scratch */
    strbuf text, target, numfmt;
    vec_i32 seq, firsts, tags;
    int32_t *enc;
    size_t enc_cap;
    items list_a, list_b, labels_in;
    vec_i32 rec_label_ids;
} builder;

/* ---- bad examples ------------------------------------------------------------------ */

/* Report a bad example: with on_bad_example error, set the error and return
 * MTFT_EFORMAT; with skip, count it, log the first few, and return 1. */
static int bad(builder *b, mtft_bad_reason reason, int col, const char *fmt, ...) MTFT_PRINTF(4, 5);
static int bad(builder *b, mtft_bad_reason reason, int col, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->encode) { /* one record given by the caller: always an error */
        if (col > 0) return mtft__err(MTFT_EFORMAT, "task '%s': input column %d: %s", b->t->o.name, col, msg);
        return mtft__err(MTFT_EFORMAT, "task '%s': input: %s", b->t->o.name, msg);
    }
    if (b->t->o.on_bad_example == MTFT_ON_BAD_ERROR) {
        if (col > 0) return mtft__err(MTFT_EFORMAT, "%s:%d:%d: %s", b->path, b->line, col, msg);
        return mtft__err(MTFT_EFORMAT, "%s:%d: %s", b->path, b->line, msg);
    }
    b->skipped[reason]++;
    if (b->first_skip_reported < 5) {
        b->first_skip_reported++;
        if (col > 0)
            mtft__log(MTFT_LOG_WARN, "task '%s': skipping %s:%d:%d: %s", b->t->o.name, b->path, b->line, col, msg);
        else
            mtft__log(MTFT_LOG_WARN, "task '%s': skipping %s:%d: %s", b->t->o.name, b->path, b->line, msg);
    }
    return 1;
}

/* ---- labels ------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) { return mtft_fnv1a(MTFT_FNV_OFFSET, s, n); }

static int lab_find(const builder *b, const char *s, size_t n) {
    if (!b->ht_cap) return -1;
    size_t mask = (size_t)b->ht_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = b->ht[i];
        if (id < 0) return -1;
        if (strlen(b->lab[id]) == n && memcmp(b->lab[id], s, n) == 0) return id;
    }
}

static int ht_insert(builder *b, int id) {
    size_t mask = (size_t)b->ht_cap - 1;
    size_t i = hash_bytes(b->lab[id], strlen(b->lab[id])) & mask;
    while (b->ht[i] >= 0) i = (i + 1) & mask;
    b->ht[i] = id;
    return 0;
}

static int lab_add(builder *b, const char *s, size_t n) {
    if (b->n_lab == b->cap_lab) {
        int cap = b->cap_lab ? b->cap_lab * 2 : 16;
        char **nl = mtft__realloc(b->lab, (size_t)cap * sizeof *nl);
        if (!nl) return MTFT_ENOMEM;
        b->lab = nl;
        b->cap_lab = cap;
    }
    char *c = mtft__malloc(n + 1);
    if (!c) return MTFT_ENOMEM;
    memcpy(c, s, n);
    c[n] = '\0';
    int id = b->n_lab++;
    b->lab[id] = c;
    if ((size_t)b->n_lab * 2 > (size_t)b->ht_cap) {
        int cap = b->ht_cap ? b->ht_cap * 2 : 64;
        while ((size_t)b->n_lab * 2 > (size_t)cap) cap *= 2;
        int32_t *nh = mtft__malloc((size_t)cap * sizeof *nh);
        if (!nh) return MTFT_ENOMEM;
        mtft__free(b->ht);
        b->ht = nh;
        b->ht_cap = cap;
        for (int i = 0; i < cap; i++) b->ht[i] = -1;
        for (int i = 0; i < b->n_lab; i++) ht_insert(b, i);
    } else {
        ht_insert(b, id);
    }
    return id;
}

static void label_list(const builder *b, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < b->n_lab && off + 8 < cap; i++) {
        if (i == 12) {
            snprintf(buf + off, cap - off, ", ... %d in all", b->n_lab);
            return;
        }
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", b->lab[i]);
    }
}

/* Resolve labels[0..n): all must be known when the set is fixed (else a bad
 * example), otherwise unknown ones are added. Ids go to rec_label_ids. */
static int resolve_labels(builder *b, const items *labels, const char *field, const char *what) {
    b->rec_label_ids.n = 0;
    if (b->labels_fixed) {
        for (int i = 0; i < labels->n; i++) {
            if (lab_find(b, labels->v[i].s, labels->v[i].len) < 0) {
                char list[512];
                label_list(b, list, sizeof list);
                return bad(b, MTFT_BAD_UNKNOWN_LABEL, 0, "field '%s': %s '%.*s' is not in the label set (%s)", field,
                           what, (int)labels->v[i].len, labels->v[i].s, list);
            }
        }
    }
    for (int i = 0; i < labels->n; i++) {
        int id = lab_find(b, labels->v[i].s, labels->v[i].len);
        if (id < 0) id = lab_add(b, labels->v[i].s, labels->v[i].len);
        if (id < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        if (vpush(&b->rec_label_ids, id) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- record access ----------------------------------------------------------------- */

enum { GOT_OK = 0, GOT_MISSING = 1, GOT_TYPE = 2 };
enum { ALLOW_NUMBER = 1, ALLOW_INT = 2 }; /* get_text: which JSON numbers count as text */

static int csv_col(const builder *b, const char *field) {
    for (int i = 0; i < b->n_hdr; i++)
        if (strcmp(b->hdr[i], field) == 0) return i;
    return -1;
}

static int all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v'))
            return 0;
    return 1;
}

/* A scalar field as text. allow_num ALLOW_NUMBER: JSON numbers are
 * formatted, ALLOW_INT: integers only (into b->numfmt, so only one such
 * value is live at a time). */
static int get_text(builder *b, const char *field, int allow_num, const char **s, size_t *n, const char **got) {
    *got = "missing";
    if (!b->is_json) {
        int c = csv_col(b, field);
        if (c < 0) return GOT_MISSING;
        *s = mtft_csv__cell(b->csv, c);
        *n = strlen(*s);
        return GOT_OK;
    }
    mtft_json *v = mtft_json__get(b->json, field);
    if (!v) return GOT_MISSING;
    *got = mtft_json__type_name(v);
    if (mtft_json__type(v) == MTFT_JSON_STRING) {
        *s = mtft_json__string(v);
        *n = strlen(*s);
        return GOT_OK;
    }
    if (allow_num && mtft_json__type(v) == MTFT_JSON_NUMBER) {
        char tmp[64];
        int64_t iv;
        if (mtft_json__int(v, &iv)) snprintf(tmp, sizeof tmp, "%lld", (long long)iv);
        else if (allow_num == ALLOW_INT) {
            *got = "a non-integer number";
            return GOT_TYPE;
        } else snprintf(tmp, sizeof tmp, "%.17g", mtft_json__number(v));
        b->numfmt.n = 0;
        if (sb_add(&b->numfmt, tmp, strlen(tmp)) < 0) return -1;
        *s = b->numfmt.s;
        *n = b->numfmt.n;
        return GOT_OK;
    }
    return GOT_TYPE;
}

/* A list field: JSON array of strings, or a CSV cell split on whitespace. */
static int get_list(builder *b, const char *field, items *out, int *bad_index, const char **got) {
    out->n = 0;
    *bad_index = -1;
    *got = "missing";
    if (!b->is_json) {
        int c = csv_col(b, field);
        if (c < 0) return GOT_MISSING;
        const char *p = mtft_csv__cell(b->csv, c);
        while (*p) {
            while (*p == ' ' || *p == '\t') p++;
            const char *q = p;
            while (*q && *q != ' ' && *q != '\t') q++;
            if (q > p && ipush(out, p, (size_t)(q - p)) < 0) return -1;
            p = q;
        }
        return GOT_OK;
    }
    mtft_json *v = mtft_json__get(b->json, field);
    if (!v) return GOT_MISSING;
    *got = mtft_json__type_name(v);
    if (mtft_json__type(v) != MTFT_JSON_ARRAY) return GOT_TYPE;
    int i = 0;
    for (mtft_json *e = mtft_json__first(v); e; e = mtft_json__next(e), i++) {
        if (mtft_json__type(e) != MTFT_JSON_STRING) {
            *bad_index = i;
            *got = mtft_json__type_name(e);
            return GOT_TYPE;
        }
        const char *s = mtft_json__string(e);
        if (ipush(out, s, strlen(s)) < 0) return -1;
    }
    return GOT_OK;
}

/* ---- templates ------------------------------------------------------------------- */

typedef struct tmpl_ctx {
    builder *b;
    strbuf *out;
    int rc; /* 0, 1 (skipped) or negative */
} tmpl_ctx;

static int tmpl_cb(void *vctx, int is_field, const char *s, size_t len, int pos) {
    tmpl_ctx *c = vctx;
    if (!is_field) return sb_add(c->out, s, len) < 0 ? (c->rc = mtft__err(MTFT_ENOMEM, "out of memory")) : 0;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)len, s);
    const char *v;
    size_t n;
    const char *got;
    int g = get_text(c->b, name, ALLOW_NUMBER, &v, &n, &got);
    if (g < 0) return c->rc = mtft__err(MTFT_ENOMEM, "out of memory");
    if (g == GOT_MISSING)
        c->rc = bad(c->b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s' (prompt_template position %d)", name, pos);
    else if (g == GOT_TYPE)
        c->rc = bad(c->b, MTFT_BAD_WRONG_TYPE, 0,
                    "field '%s': expected a string or a number for prompt_template position %d, got %s", name, pos,
                    got);
    else if (all_space(v, n))
        c->rc = bad(c->b, MTFT_BAD_EMPTY, 0, "field '%s': empty text (prompt_template position %d)", name, pos);
    else if (sb_add(c->out, v, n) < 0)
        c->rc = mtft__err(MTFT_ENOMEM, "out of memory");
    return c->rc;
}

/* The model input text of the record into b->text: 0, 1 (skipped), <0. */
static int input_text(builder *b) {
    const mtft_task_options *o = &b->t->o;
    b->text.n = 0;
    if (o->prompt_template) {
        tmpl_ctx c = {b, &b->text, 0};
        int rc = mtft_tmpl__walk(o->prompt_template, tmpl_cb, &c);
        if (c.rc) return c.rc;
        if (rc < 0) return rc;
        if (!b->text.s && sb_add(&b->text, "", 0) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        return 0;
    }
    const char *s, *got;
    size_t n;
    int g = get_text(b, o->input_field, 0, &s, &n, &got);
    if (g < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    if (g == GOT_MISSING) return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->input_field);
    if (g == GOT_TYPE)
        return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a string, got %s", o->input_field, got);
    if (all_space(s, n)) return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': empty text", o->input_field);
    if (sb_add(&b->text, s, n) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    return 0;
}

/* ---- tokenization ------------------------------------------------------------------ */

static int encode_append(builder *b, const char *s, size_t n, vec_i32 *out) {
    size_t cnt = 0;
    int rc = mtft_tokenizer_encode(b->tok, s, n, b->enc, b->enc_cap, &cnt);
    if (rc == MTFT_ERANGE) {
        size_t cap = cnt + 64;
        int32_t *ne = mtft__realloc(b->enc, cap * sizeof *ne);
        if (!ne) return mtft__err(MTFT_ENOMEM, "out of memory");
        b->enc = ne;
        b->enc_cap = cap;
        rc = mtft_tokenizer_encode(b->tok, s, n, b->enc, b->enc_cap, &cnt);
    }
    if (rc < 0) {
        if (b->encode) mtft__err_prefix("task '%s': input: tokenizing", b->t->o.name);
        else mtft__err_prefix("%s:%d: tokenizing", b->path, b->line);
        return rc;
    }
    for (size_t i = 0; i < cnt; i++)
        if (vpush(out, b->enc[i]) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

/* With a cache file, the token pool goes to disk in chunks of this many
 * words, so building never holds more than one chunk of tokens (the tests
 * make it small). */
size_t mtft_data__flush_words = (size_t)1 << 20;

static int write_all(builder *b, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, b->out) != n)
        return mtft__err(MTFT_EIO, "cache file '%s': write failed: %s", b->out_name, strerror(errno));
    return 0;
}

static int flush_pool(builder *b) {
    int rc = write_all(b, b->pool.v, b->pool.n * 4);
    b->pool_base += (int64_t)b->pool.n;
    b->pool.n = 0;
    return rc;
}

/* ---- one record ---------------------------------------------------------------------- */

static int commit(builder *b, int split, int32_t n_prompt, float value, const vec_i32 *tags) {
    if (b->seq.n > INT32_MAX / 2) return bad(b, MTFT_BAD_LENGTH, 0, "example has %zu tokens, too many", b->seq.n);
    if (b->n_ent[split] == b->cap_ent[split]) {
        int64_t cap = b->cap_ent[split] ? b->cap_ent[split] * 2 : 1024;
        mtft_ds_entry *ne = mtft__realloc(b->ent[split], (size_t)cap * sizeof *ne);
        if (!ne) return mtft__err(MTFT_ENOMEM, "out of memory");
        b->ent[split] = ne;
        b->cap_ent[split] = cap;
    }
    mtft_ds_entry *e = &b->ent[split][b->n_ent[split]++];
    memset(e, 0, sizeof *e);
    e->off = b->pool_base + (int64_t)b->pool.n;
    e->n_ids = (int32_t)b->seq.n;
    e->n_prompt = n_prompt;
    e->n_labels = (int32_t)b->rec_label_ids.n;
    e->value = value;
    e->line = b->line;
    e->file = b->file;
    for (size_t i = 0; i < b->seq.n; i++)
        if (vpush(&b->pool, b->seq.v[i]) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    if (tags)
        for (size_t i = 0; i < tags->n; i++)
            if (vpush(&b->pool, tags->v[i]) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->rec_label_ids.n; i++)
        if (vpush(&b->pool, b->rec_label_ids.v[i]) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    if (b->out && b->pool.n >= mtft_data__flush_words) return flush_pool(b);
    return 0;
}

/* Encode the current record (b->json or the CSV row): ids into b->seq,
 * *n_prompt, and the label part: tagging tags per token into b->tags (word
 * starts in b->firsts), label ids into b->rec_label_ids, *value. Loading
 * (b->encode 0) requires every field of the type; encoding one record
 * (b->encode 1) takes the label, value, tags and target fields only when
 * present, and sets b->has_target. Returns 0, 1 (skipped) or < 0. */
static int encode_record(builder *b, int32_t *n_prompt, float *value) {
    const mtft_task_options *o = &b->t->o;
    int rc;
    const char *s, *got;
    size_t n;
    b->seq.n = 0;
    b->firsts.n = 0;
    b->tags.n = 0;
    b->rec_label_ids.n = 0;
    b->has_target = 0;
    *value = 0.0f;
    *n_prompt = 0;
    if (o->type == MTFT_TASK_TAGGING) {
        int bi, g = get_list(b, o->tokens_field, &b->list_a, &bi, &got);
        if (g < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        if (g == GOT_MISSING) return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->tokens_field);
        if (g == GOT_TYPE) {
            if (bi >= 0)
                return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': element %d: expected a string, got %s",
                           o->tokens_field, bi, got);
            return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a list of strings, got %s", o->tokens_field,
                       got);
        }
        g = get_list(b, o->tags_field, &b->list_b, &bi, &got);
        if (g < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        if (g == GOT_MISSING && !b->encode)
            return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->tags_field);
        if (g == GOT_TYPE) {
            if (bi >= 0)
                return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': element %d: expected a string, got %s",
                           o->tags_field, bi, got);
            return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a list of strings, got %s", o->tags_field,
                       got);
        }
        b->has_target = g == GOT_OK;
        if (b->list_a.n == 0) return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': empty token list", o->tokens_field);
        if (b->has_target && b->list_a.n != b->list_b.n)
            return bad(b, MTFT_BAD_LENGTH, 0, "fields '%s' and '%s': %d tokens but %d tags", o->tokens_field,
                       o->tags_field, b->list_a.n, b->list_b.n);
        for (int i = 0; i < b->list_a.n; i++)
            if (all_space(b->list_a.v[i].s, b->list_a.v[i].len))
                return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': element %d is empty", o->tokens_field, i);
        /* tokenize word by word: word i > 0 is preceded by a space, as in the
         * running text; the first sub-token of each word carries its tag */
        for (int i = 0; i < b->list_a.n; i++) {
            size_t before = b->seq.n;
            b->text.n = 0;
            if ((i > 0 && sb_add(&b->text, " ", 1) < 0) ||
                sb_add(&b->text, b->list_a.v[i].s, b->list_a.v[i].len) < 0)
                return mtft__err(MTFT_ENOMEM, "out of memory");
            if ((rc = encode_append(b, b->text.s, b->text.n, &b->seq)) < 0) return rc;
            if (b->seq.n == before)
                return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': element %d gives no tokens", o->tokens_field, i);
            if (vpush(&b->firsts, (int32_t)before) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        }
        *n_prompt = (int32_t)b->seq.n;
        if (!b->has_target) return 0;
        if ((rc = resolve_labels(b, &b->list_b, o->tags_field, "tag")) != 0) return rc;
        for (size_t i = 0; i < b->seq.n; i++)
            if (vpush(&b->tags, MTFT_IGNORE_INDEX) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        for (size_t i = 0; i < b->firsts.n; i++) b->tags.v[b->firsts.v[i]] = b->rec_label_ids.v[i];
        b->rec_label_ids.n = 0; /* tags live in the tag words, not as example labels */
        return 0;
    }

    if ((rc = input_text(b)) != 0) return rc;
    b->labels_in.n = 0;
    switch (o->type) {
    case MTFT_TASK_CLASSIFICATION: {
        int g = get_text(b, o->label_field, ALLOW_INT, &s, &n, &got);
        if (g < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        if (g == GOT_MISSING) {
            if (b->encode) break;
            return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->label_field);
        }
        if (g == GOT_TYPE)
            return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a string or an integer label, got %s",
                       o->label_field, got);
        if (all_space(s, n)) return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': empty label", o->label_field);
        if (ipush(&b->labels_in, s, n) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        b->has_target = 1;
        break;
    }
    case MTFT_TASK_MULTILABEL: {
        int bi, g = get_list(b, o->label_field, &b->labels_in, &bi, &got);
        if (g < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        if (g == GOT_MISSING) {
            if (b->encode) break;
            return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->label_field);
        }
        if (g == GOT_TYPE) {
            if (bi >= 0)
                return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': element %d: expected a string, got %s",
                           o->label_field, bi, got);
            return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a list of labels, got %s", o->label_field,
                       got);
        }
        for (int i = 0; i < b->labels_in.n; i++)
            if (all_space(b->labels_in.v[i].s, b->labels_in.v[i].len))
                return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': element %d is an empty label", o->label_field, i);
        b->has_target = 1;
        break;
    }
    case MTFT_TASK_REGRESSION: {
        double d = 0;
        if (b->is_json) {
            mtft_json *v = mtft_json__get(b->json, o->value_field);
            if (!v) {
                if (b->encode) break;
                return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->value_field);
            }
            if (mtft_json__type(v) != MTFT_JSON_NUMBER)
                return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a number, got %s", o->value_field,
                           mtft_json__type_name(v));
            d = mtft_json__number(v);
        } else {
            int c = csv_col(b, o->value_field);
            if (c < 0) return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->value_field);
            const char *cell = mtft_csv__cell(b->csv, c);
            char *end = NULL;
            errno = 0;
            d = strtod(cell, &end);
            while (end && (*end == ' ' || *end == '\t')) end++;
            if (!*cell || end == cell || *end != '\0')
                return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a number, got '%s'", o->value_field, cell);
        }
        if (!isfinite(d) || fabs(d) > 3.0e38)
            return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': value %g is not a finite float", o->value_field, d);
        *value = (float)d;
        b->has_target = 1;
        break;
    }
    case MTFT_TASK_GENERATION: {
        int g = get_text(b, o->target_field, 0, &s, &n, &got);
        if (g < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        if (g == GOT_MISSING) {
            if (b->encode) break;
            return bad(b, MTFT_BAD_MISSING_FIELD, 0, "missing field '%s'", o->target_field);
        }
        if (g == GOT_TYPE)
            return bad(b, MTFT_BAD_WRONG_TYPE, 0, "field '%s': expected a string, got %s", o->target_field, got);
        if (all_space(s, n)) return bad(b, MTFT_BAD_EMPTY, 0, "field '%s': empty target", o->target_field);
        b->target.n = 0;
        if (sb_add(&b->target, s, n) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
        b->has_target = 1;
        break;
    }
    default: break;
    }
    if ((rc = encode_append(b, b->text.s, b->text.n, &b->seq)) < 0) return rc;
    if (b->seq.n == 0) return bad(b, MTFT_BAD_EMPTY, 0, "input text gives no tokens");
    *n_prompt = (int32_t)b->seq.n;
    if (o->type == MTFT_TASK_GENERATION && b->has_target) {
        if ((rc = encode_append(b, b->target.s, b->target.n, &b->seq)) < 0) return rc;
        if (b->eos >= 0 && vpush(&b->seq, b->eos) < 0) return mtft__err(MTFT_ENOMEM, "out of memory");
    }
    if ((o->type == MTFT_TASK_CLASSIFICATION || o->type == MTFT_TASK_MULTILABEL) && b->has_target) {
        if ((rc = resolve_labels(b, &b->labels_in, o->label_field, "label")) != 0) return rc;
        if (o->type == MTFT_TASK_MULTILABEL) { /* a set: drop repeats, keep first-seen order */
            size_t k = 0;
            for (size_t i = 0; i < b->rec_label_ids.n; i++) {
                size_t j = 0;
                while (j < k && b->rec_label_ids.v[j] != b->rec_label_ids.v[i]) j++;
                if (j == k) b->rec_label_ids.v[k++] = b->rec_label_ids.v[i];
            }
            b->rec_label_ids.n = k;
        }
    }
    return 0;
}

static int record(builder *b, int split) {
    int32_t n_prompt;
    float value;
    int rc = encode_record(b, &n_prompt, &value);
    if (rc != 0) return rc;
    return commit(b, split, n_prompt, value, b->t->o.type == MTFT_TASK_TAGGING ? &b->tags : NULL);
}

/* ---- files ---------------------------------------------------------------------------- */

static mtft_data_format format_of(const mtft_task_options *o, const char *path) {
    if (o->format != MTFT_FORMAT_AUTO) return o->format;
    size_t n = strlen(path);
    if (n >= 4 && (strcmp(path + n - 4, ".csv") == 0 || strcmp(path + n - 4, ".CSV") == 0)) return MTFT_FORMAT_CSV;
    if (n >= 4 && (strcmp(path + n - 4, ".tsv") == 0 || strcmp(path + n - 4, ".TSV") == 0)) return MTFT_FORMAT_TSV;
    return MTFT_FORMAT_JSONL;
}

static int load_file(builder *b, const char *path, int file, int split, const char *what) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mtft__err(MTFT_EIO, "task '%s': %s '%s': cannot open: %s", b->t->o.name, what, path, strerror(errno));
    fclose(f);
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) {
        mtft__err_prefix("task '%s': %s", b->t->o.name, what);
        return rc;
    }
    b->path = path;
    b->file = file;
    mtft_data_format fmt = format_of(&b->t->o, path);
    if (fmt == MTFT_FORMAT_JSONL) {
        b->is_json = 1;
        const char *p = text, *end = text + len;
        int line = 0;
        while (p < end && rc >= 0) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            line++;
            size_t ll = (size_t)(le - p);
            if (ll > 0 && p[ll - 1] == '\r') ll--;
            b->line = line;
            if (line == 1 && ll >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 BOM */
                p += 3;
                ll -= 3;
            }
            if (!all_space(p, ll)) {
                size_t eo = 0;
                mtft_json *j = mtft_json__parse(p, ll, &eo);
                if (!j) {
                    /* show where: up to 16 bytes from the error position */
                    size_t at = eo < ll ? eo : ll;
                    int show = (int)(ll - at < 16 ? ll - at : 16);
                    if (show > 0)
                        rc = bad(b, MTFT_BAD_SYNTAX, (int)eo + 1, "malformed JSON near '%.*s'", show, p + at);
                    else
                        rc = bad(b, MTFT_BAD_SYNTAX, (int)eo + 1, "malformed JSON (the line ends too early)");
                } else if (mtft_json__type(j) != MTFT_JSON_OBJECT) {
                    rc = bad(b, MTFT_BAD_SYNTAX, 0, "expected a JSON object, got %s", mtft_json__type_name(j));
                } else {
                    b->json = j;
                    rc = record(b, split);
                    b->json = NULL;
                }
                mtft_json__free(j);
            }
            p = nl ? nl + 1 : end;
        }
    } else {
        b->is_json = 0;
        mtft_csv r;
        const char *start = text;
        size_t slen = len;
        if (slen >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
            start += 3;
            slen -= 3;
        }
        mtft_csv__init(&r, start, slen, fmt == MTFT_FORMAT_TSV ? '\t' : ',');
        char err[256];
        int rl = 0;
        int got = mtft_csv__next(&r, &rl, err, sizeof err);
        if (got == 0) rc = mtft__err(MTFT_EFORMAT, "%s: empty file: no header row", path);
        else if (got < 0 && got != -1) rc = got;
        else if (got == -1) rc = mtft__err(MTFT_EFORMAT, "%s:%s (in the header row)", path, err);
        else {
            b->n_hdr = r.n_cells;
            b->hdr = mtft__calloc((size_t)r.n_cells, sizeof(char *));
            if (!b->hdr) rc = mtft__err(MTFT_ENOMEM, "out of memory");
            for (int i = 0; rc >= 0 && i < r.n_cells; i++) {
                b->hdr[i] = mtft__strdup(mtft_csv__cell(&r, i));
                if (!b->hdr[i]) rc = mtft__err(MTFT_ENOMEM, "out of memory");
            }
            for (int i = 0; rc >= 0 && i < r.n_cells; i++)
                for (int k = 0; k < i; k++)
                    if (strcmp(b->hdr[i], b->hdr[k]) == 0)
                        rc = mtft__err(MTFT_EFORMAT, "%s:%d: header names column '%s' twice (columns %d and %d)", path,
                                       rl, b->hdr[i], k + 1, i + 1);
            /* a template placeholder must name a column: checked once, here */
            if (rc >= 0 && b->t->o.prompt_template) {
                rc = mtft_template_check(b->t->o.prompt_template, (const char *const *)b->hdr, b->n_hdr);
                if (rc < 0) mtft__err_prefix("task '%s': prompt_template against the header of %s", b->t->o.name, path);
            }
        }
        b->csv = &r;
        while (rc >= 0) {
            got = mtft_csv__next(&r, &rl, err, sizeof err);
            if (got == 0) break;
            if (got < -1) {
                rc = got;
                break;
            }
            if (got == -1) {
                int el = atoi(err), ec = 0;
                const char *colon = strchr(err, ':');
                if (colon) ec = atoi(colon + 1);
                const char *msg = colon ? strchr(colon + 1, ':') : NULL;
                b->line = el > 0 ? el : rl;
                rc = bad(b, MTFT_BAD_SYNTAX, ec, "%s", msg ? msg + 2 : err);
                continue;
            }
            b->line = rl;
            if (r.n_cells != b->n_hdr) {
                rc = bad(b, MTFT_BAD_SYNTAX, 0, "%d fields, but the header has %d", r.n_cells, b->n_hdr);
                continue;
            }
            rc = record(b, split);
        }
        b->csv = NULL;
        mtft_csv__dispose(&r);
        for (int i = 0; i < b->n_hdr; i++) mtft__free(b->hdr ? b->hdr[i] : NULL);
        mtft__free(b->hdr);
        b->hdr = NULL;
        b->n_hdr = 0;
    }
    mtft__free(text);
    return rc < 0 ? rc : 0;
}

/* Move round(fraction * n) examples of the train split, chosen by a seeded
 * permutation, to dev and test (each keeps file order). */
static int carve(builder *b) {
    const mtft_task_options *o = &b->t->o;
    if (o->dev_fraction <= 0 && o->test_fraction <= 0) return 0;
    int64_t n = b->n_ent[0];
    int64_t n_test = (int64_t)floor(o->test_fraction * (double)n + 0.5);
    int64_t n_dev = (int64_t)floor(o->dev_fraction * (double)n + 0.5);
    if (n_test + n_dev > n) n_dev = n - n_test;
    if (n == 0) return 0;
    int64_t *perm = mtft__malloc((size_t)n * sizeof *perm);
    uint8_t *dest = mtft__calloc((size_t)n, 1);
    if (!perm || !dest) {
        mtft__free(perm);
        mtft__free(dest);
        return mtft__err(MTFT_ENOMEM, "out of memory");
    }
    mtft_rng rng;
    mtft_rng_seed(&rng, o->split_seed);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mtft_rng_below(&rng, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int64_t i = 0; i < n_test; i++) dest[perm[i]] = MTFT_SPLIT_TEST;
    for (int64_t i = n_test; i < n_test + n_dev; i++) dest[perm[i]] = MTFT_SPLIT_DEV;
    mtft__free(perm);
    int rc = 0;
    mtft_ds_entry *tr = b->ent[0];
    int64_t k = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        int s = dest[i];
        if (s == MTFT_SPLIT_TRAIN) {
            tr[k++] = tr[i];
            continue;
        }
        if (b->n_ent[s] == b->cap_ent[s]) {
            int64_t cap = b->cap_ent[s] ? b->cap_ent[s] * 2 : 256;
            mtft_ds_entry *ne = mtft__realloc(b->ent[s], (size_t)cap * sizeof *ne);
            if (!ne) {
                rc = mtft__err(MTFT_ENOMEM, "out of memory");
                break;
            }
            b->ent[s] = ne;
            b->cap_ent[s] = cap;
        }
        b->ent[s][b->n_ent[s]++] = tr[i];
    }
    if (rc == 0) b->n_ent[0] = k;
    mtft__free(dest);
    return rc;
}

/* Lay out header | pool | entries | labels, in memory (blob_out) or at the
 * end of the cache file (whose pool is already written), then the header. */
static int finish(builder *b, uint64_t key, void **blob_out, size_t *size_out) {
    mtft_task *t = b->t;
    size_t labels_bytes = 0;
    for (int i = 0; i < b->n_lab; i++) labels_bytes += strlen(b->lab[i]) + 1;
    if (labels_bytes > UINT32_MAX) return mtft__err(MTFT_ERANGE, "task '%s': label names too long", t->o.name);
    int64_t n_ent = b->n_ent[0] + b->n_ent[1] + b->n_ent[2];
    int64_t n_pool = b->pool_base + (int64_t)b->pool.n;
    size_t pool_bytes = mtft_ds_pool_bytes(n_pool);
    mtft_ds_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MTFT_DS_MAGIC, 8);
    h.key = key;
    h.format = MTFT_DS_FORMAT;
    h.type = (uint32_t)t->o.type;
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) h.n_split[s] = b->n_ent[s];
    h.n_pool = n_pool;
    h.n_labels = (uint32_t)b->n_lab;
    h.labels_bytes = (uint32_t)labels_bytes;
    for (int r = 0; r < MTFT_BAD_N_REASONS; r++) h.skipped[r] = b->skipped[r];
    static const char zeros[8] = {0};
    if (b->out) {
        int rc = flush_pool(b);
        if (!rc) rc = write_all(b, zeros, pool_bytes - (size_t)n_pool * 4);
        for (int s = 0; s < MTFT_SPLIT_COUNT && !rc; s++)
            rc = write_all(b, b->ent[s], (size_t)b->n_ent[s] * sizeof(mtft_ds_entry));
        for (int i = 0; i < b->n_lab && !rc; i++) rc = write_all(b, b->lab[i], strlen(b->lab[i]) + 1);
        if (!rc && (fflush(b->out) != 0 || fseek(b->out, 0, SEEK_SET) != 0))
            rc = mtft__err(MTFT_EIO, "cache file '%s': %s", b->out_name, strerror(errno));
        if (!rc) rc = write_all(b, &h, sizeof h);
        return rc;
    }
    size_t size = sizeof h + pool_bytes + (size_t)n_ent * sizeof(mtft_ds_entry) + labels_bytes;
    char *blob = mtft__calloc(1, size);
    if (!blob) return mtft__err(MTFT_ENOMEM, "task '%s': out of memory for %zu bytes of tokenized data", t->o.name, size);
    char *p = blob;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    if (n_pool) memcpy(p, b->pool.v, (size_t)n_pool * 4);
    p += pool_bytes;
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) {
        if (b->n_ent[s]) memcpy(p, b->ent[s], (size_t)b->n_ent[s] * sizeof(mtft_ds_entry));
        p += (size_t)b->n_ent[s] * sizeof(mtft_ds_entry);
    }
    for (int i = 0; i < b->n_lab; i++) {
        size_t l = strlen(b->lab[i]) + 1;
        memcpy(p, b->lab[i], l);
        p += l;
    }
    *blob_out = blob;
    *size_out = size;
    return 0;
}

/* Free what a builder owns (not the cache file). */
static void builder_free(builder *b) {
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) mtft__free(b->ent[s]);
    mtft__free(b->pool.v);
    for (int i = 0; i < b->n_lab; i++) mtft__free(b->lab[i]);
    mtft__free(b->lab);
    mtft__free(b->ht);
    mtft__free(b->text.s);
    mtft__free(b->target.s);
    mtft__free(b->numfmt.s);
    mtft__free(b->seq.v);
    mtft__free(b->firsts.v);
    mtft__free(b->tags.v);
    mtft__free(b->enc);
    mtft__free(b->list_a.v);
    mtft__free(b->list_b.v);
    mtft__free(b->labels_in.v);
    mtft__free(b->rec_label_ids.v);
}

int mtft_data__build(mtft_task *t, mtft_tokenizer *tok, const mtft_data_options *o, uint64_t key,
                     const char *out_path, void **blob_out, size_t *size_out) {
    *blob_out = NULL;
    *size_out = 0;
    builder b;
    memset(&b, 0, sizeof b);
    b.t = t;
    b.tok = tok;
    b.eos = -1;
    int rc = 0;
    char *tmp = NULL;
    if (out_path) {
        size_t n = strlen(out_path) + 32;
        tmp = mtft__malloc(n);
        if (!tmp) return mtft__err(MTFT_ENOMEM, "out of memory");
        snprintf(tmp, n, "%s.tmp%ld", out_path, (long)getpid());
        b.out = fopen(tmp, "wb");
        b.out_name = tmp;
        if (!b.out) {
            rc = mtft__err(MTFT_EIO, "cache file '%s': cannot create: %s", tmp, strerror(errno));
            mtft__free(tmp);
            return rc;
        }
        mtft_ds_header zero;
        memset(&zero, 0, sizeof zero); /* the real header is written last */
        rc = write_all(&b, &zero, sizeof zero);
    }
    if (t->o.type == MTFT_TASK_GENERATION && o->eos_token && *o->eos_token) {
        b.eos = mtft_tokenizer_token_to_id(tok, o->eos_token);
        if (b.eos < 0)
            return mtft__err(MTFT_ENOTFOUND, "task '%s': eos_token '%s' is not a token of the tokenizer", t->o.name,
                             o->eos_token);
    }
    if (t->o.n_labels > 0) {
        b.labels_fixed = 1;
        for (int i = 0; i < t->o.n_labels && rc >= 0; i++)
            if (lab_add(&b, t->o.labels[i], strlen(t->o.labels[i])) < 0) rc = mtft__err(MTFT_ENOMEM, "out of memory");
    }
    if (rc >= 0) rc = load_file(&b, t->o.train_file, 0, MTFT_SPLIT_TRAIN, "train_file");
    if (rc >= 0) rc = carve(&b);
    if (rc >= 0 && t->o.dev_file) rc = load_file(&b, t->o.dev_file, 1, MTFT_SPLIT_DEV, "dev_file");
    if (rc >= 0 && t->o.test_file) rc = load_file(&b, t->o.test_file, 2, MTFT_SPLIT_TEST, "test_file");
    if (rc >= 0 && b.n_ent[0] == 0)
        rc = mtft__err(MTFT_EFORMAT, "task '%s': no usable training examples in '%s'", t->o.name, t->o.train_file);
    if (rc >= 0 && (t->o.type == MTFT_TASK_CLASSIFICATION || t->o.type == MTFT_TASK_MULTILABEL ||
                    t->o.type == MTFT_TASK_TAGGING) && b.n_lab == 0)
        rc = mtft__err(MTFT_EFORMAT, "task '%s': the data has no labels", t->o.name);
    if (rc >= 0) rc = finish(&b, key, blob_out, size_out);
    builder_free(&b);
    if (b.out) {
        /* durable before it becomes visible under its final name */
        if (rc >= 0 && (fflush(b.out) != 0 || fsync(fileno(b.out)) != 0))
            rc = mtft__err(MTFT_EIO, "cache file '%s': fsync failed: %s", tmp, strerror(errno));
        if (fclose(b.out) != 0 && rc >= 0) rc = mtft__err(MTFT_EIO, "cache file '%s': close failed", tmp);
        if (rc >= 0 && rename(tmp, out_path) != 0)
            rc = mtft__err(MTFT_EIO, "cache file '%s': rename to '%s' failed: %s", tmp, out_path, strerror(errno));
        if (rc < 0) unlink(tmp);
        mtft__free(tmp);
    }
    return rc < 0 ? rc : MTFT_OK;
}

/* ---- one record, for prediction -------------------------------------------------- */

void mtft_encoded_init(mtft_encoded *e) {
    if (e) memset(e, 0, sizeof *e);
}

void mtft_encoded_dispose(mtft_encoded *e) {
    if (!e) return;
    for (int i = 0; i < 4; i++) mtft__free(e->buf_[i]);
    memset(e, 0, sizeof *e);
}

/* Copy n words into private buffer k of e (grown as needed); the copy. */
static int32_t *enc_put(mtft_encoded *e, int k, const int32_t *v, size_t n) {
    if (n > e->cap_[k] || !e->buf_[k]) {
        size_t cap = e->cap_[k] * 2 > n ? e->cap_[k] * 2 : n;
        if (cap < 16) cap = 16;
        int32_t *nb = mtft__realloc(e->buf_[k], cap * sizeof *nb);
        if (!nb) return NULL;
        e->buf_[k] = nb;
        e->cap_[k] = cap;
    }
    if (n) memcpy(e->buf_[k], v, n * sizeof *v);
    return e->buf_[k];
}

int mtft_task_encode_input(const mtft_task *task, mtft_tokenizer *tok, const char *json, size_t len,
                           mtft_encoded *out) {
    MTFT_CHECK_ARG(out != NULL);
    out->ids = out->word_first = out->tags = out->labels = NULL;
    out->n_ids = out->n_prompt = out->n_words = out->n_labels = 0;
    out->value = 0.0f;
    out->has_target = 0;
    MTFT_CHECK_ARG(task != NULL && tok != NULL && (json != NULL || len == 0));
    const char *nm = task->o.name;
    if (!task->hdr)
        return mtft__err(MTFT_ESTATE, "task '%s': not loaded (call mtft_task_load before mtft_task_encode_input)", nm);
    if (mtft_tokenizer_vocab_size(tok) != task->tok_vocab)
        return mtft__err(MTFT_EINVAL, "task '%s': the tokenizer has %d tokens, but the task was loaded with one of %d",
                         nm, (int)mtft_tokenizer_vocab_size(tok), (int)task->tok_vocab);
    if (len >= 3 && memcmp(json, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 BOM, as the loader allows */
        json += 3;
        len -= 3;
    }
    while (len > 0 && all_space(json + len - 1, 1)) len--; /* a line end is not part of the record */
    if (len == 0) return mtft__err(MTFT_EFORMAT, "task '%s': input: empty (expected a JSON object)", nm);
    size_t eo = 0;
    mtft_json *j = mtft_json__parse(json, len, &eo);
    if (!j) {
        int line = 1, col = 1;
        size_t at = eo < len ? eo : len;
        mtft_json__line_col(json, len, at, &line, &col);
        char where[64];
        if (line > 1) snprintf(where, sizeof where, "line %d column %d", line, col);
        else snprintf(where, sizeof where, "column %d", col);
        int show = (int)(len - at < 16 ? len - at : 16);
        if (show > 0 && !all_space(json + at, (size_t)show))
            return mtft__err(MTFT_EFORMAT, "task '%s': input %s: malformed JSON near '%.*s'", nm, where, show, json + at);
        return mtft__err(MTFT_EFORMAT, "task '%s': input %s: malformed JSON (the input ends too early)", nm, where);
    }
    if (mtft_json__type(j) != MTFT_JSON_OBJECT) {
        int rc = mtft__err(MTFT_EFORMAT, "task '%s': input: expected a JSON object, got %s", nm,
                           mtft_json__type_name(j));
        mtft_json__free(j);
        return rc;
    }
    builder b;
    memset(&b, 0, sizeof b);
    b.t = (mtft_task *)task; /* read only: the encode path never writes the task */
    b.tok = tok;
    b.eos = task->eos_id;
    b.encode = 1;
    b.is_json = 1;
    b.json = j;
    b.labels_fixed = 1; /* the loaded label set */
    int rc = 0;
    for (uint32_t i = 0; i < task->hdr->n_labels && rc >= 0; i++)
        if (lab_add(&b, task->label_names[i], strlen(task->label_names[i])) < 0)
            rc = mtft__err(MTFT_ENOMEM, "out of memory");
    int32_t n_prompt = 0;
    float value = 0.0f;
    if (rc >= 0) rc = encode_record(&b, &n_prompt, &value);
    if (rc > 0) rc = mtft__err(MTFT_ERROR, "task '%s': input: record rejected", nm); /* bad() never skips here */
    if (rc >= 0 && b.seq.n > (size_t)INT32_MAX)
        rc = mtft__err(MTFT_ERANGE, "task '%s': input: %zu tokens, too many", nm, b.seq.n);
    if (rc >= 0) {
        const mtft_task_type ty = task->o.type;
        int ok = (out->ids = enc_put(out, 0, b.seq.v, b.seq.n)) != NULL;
        if (ok && ty == MTFT_TASK_TAGGING) ok = (out->word_first = enc_put(out, 1, b.firsts.v, b.firsts.n)) != NULL;
        if (ok && ty == MTFT_TASK_TAGGING && b.has_target)
            ok = (out->tags = enc_put(out, 2, b.tags.v, b.tags.n)) != NULL;
        if (ok && (ty == MTFT_TASK_CLASSIFICATION || ty == MTFT_TASK_MULTILABEL) && b.has_target)
            ok = (out->labels = enc_put(out, 3, b.rec_label_ids.v, b.rec_label_ids.n)) != NULL;
        if (!ok) {
            out->ids = out->word_first = out->tags = out->labels = NULL;
            rc = mtft__err(MTFT_ENOMEM, "task '%s': input: out of memory", nm);
        } else {
            out->n_ids = (int32_t)b.seq.n;
            out->n_prompt = n_prompt;
            out->n_words = ty == MTFT_TASK_TAGGING ? (int32_t)b.firsts.n : 0;
            out->n_labels = out->labels ? (int32_t)b.rec_label_ids.n : 0;
            out->value = value;
            out->has_target = b.has_target;
        }
    }
    builder_free(&b);
    mtft_json__free(j);
    return rc < 0 ? rc : MTFT_OK;
}
