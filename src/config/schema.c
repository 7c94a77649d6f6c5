/* The generic schema validator: checks a YAML mapping against a key table
 * (unknown keys with a suggestion, types, ranges, enum values, required
 * keys) and writes the values into an option struct. Also renders a
 * section's table as Markdown for docs/config.md. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"

int mtft_cfg__errat(const mtft_cfg_ctx *ctx, const mtft_cnode *at, int code, const char *path, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mtft__err(code, "%s:%d:%d: %s: %s", ctx->file, at ? at->line : 1, at ? at->col : 1,
                     path && *path ? path : "(top level)", msg);
}

char *mtft_cfg__keep(mtft_cfg_ctx *ctx, const char *s) {
    if (ctx->n_strs == ctx->cap_strs) {
        int cap = ctx->cap_strs ? ctx->cap_strs * 2 : 32;
        char **ns = mtft__realloc(ctx->strs, (size_t)cap * sizeof *ns);
        if (!ns) return NULL;
        ctx->strs = ns;
        ctx->cap_strs = cap;
    }
    char *c = mtft__strdup(s);
    if (c) ctx->strs[ctx->n_strs++] = c;
    return c;
}

/* Zeroed storage of n items of size sz, freed with the context. */
static void *keep_mem(mtft_cfg_ctx *ctx, int n, size_t sz) {
    if (ctx->n_lists == ctx->cap_lists) {
        int cap = ctx->cap_lists ? ctx->cap_lists * 2 : 16;
        const char ***nl = mtft__realloc(ctx->lists, (size_t)cap * sizeof *nl);
        if (!nl) return NULL;
        ctx->lists = nl;
        ctx->cap_lists = cap;
    }
    void *l = mtft__calloc((size_t)(n > 0 ? n : 1), sz);
    if (l) ctx->lists[ctx->n_lists++] = (const char **)l;
    return l;
}

const mtft_cfg_written *mtft_cfg__where(const mtft_cfg_ctx *ctx, const void *addr) {
    for (int i = 0; i < ctx->n_written; i++)
        if (ctx->written[i].addr == addr) return &ctx->written[i];
    return NULL;
}

/* Record that the key at `path` (value node v) sets the field at addr; a
 * field set twice is an error naming both places. */
static int note_write(mtft_cfg_ctx *ctx, const void *addr, const mtft_cnode *v, const char *path) {
    const mtft_cfg_written *w = mtft_cfg__where(ctx, addr);
    if (w)
        return mtft_cfg__errat(ctx, v, MTFT_EINVAL, path, "sets the same option as %s (line %d); give it once",
                               w->path, w->node ? w->node->line : 0);
    if (ctx->n_written == ctx->cap_written) {
        int cap = ctx->cap_written ? ctx->cap_written * 2 : 64;
        mtft_cfg_written *nw = mtft__realloc(ctx->written, (size_t)cap * sizeof *nw);
        if (!nw) return mtft__err(MTFT_ENOMEM, "config: out of memory");
        ctx->written = nw;
        ctx->cap_written = cap;
    }
    const char *p = mtft_cfg__keep(ctx, path);
    if (!p) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    mtft_cfg_written *r = &ctx->written[ctx->n_written++];
    r->addr = addr;
    r->node = v;
    r->path = p;
    return MTFT_OK;
}

void mtft_cfg__ctx_dispose(mtft_cfg_ctx *ctx) {
    for (int i = 0; i < ctx->n_strs; i++) mtft__free(ctx->strs[i]);
    for (int i = 0; i < ctx->n_lists; i++) mtft__free((void *)ctx->lists[i]);
    mtft__free(ctx->strs);
    mtft__free(ctx->lists);
    mtft__free(ctx->written);
    ctx->strs = NULL;
    ctx->lists = NULL;
    ctx->written = NULL;
    ctx->n_strs = ctx->cap_strs = ctx->n_lists = ctx->cap_lists = 0;
    ctx->n_written = ctx->cap_written = 0;
}

int mtft_cfg__edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return (int)(la > lb ? la : lb);
    int prev[256], cur[256];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

const char *mtft_cfg__suggest(const char *s, const char *const *cands, int n) {
    const char *best = NULL;
    int bd = 1 << 30;
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        int d = mtft_cfg__edit_distance(s, cands[i]);
        if (d < bd) {
            bd = d;
            best = cands[i];
        }
    }
    int limit = (int)strlen(s) / 3;
    if (limit < 2) limit = 2;
    return bd <= limit ? best : NULL;
}

static const char *type_word(const mtft_cfg_key *k) {
    switch (k->kind) {
    case MTFT_CK_BOOL: return "boolean";
    case MTFT_CK_INT:
    case MTFT_CK_INT32:
    case MTFT_CK_INT64: return "integer";
    case MTFT_CK_U64: return "unsigned integer";
    case MTFT_CK_DOUBLE:
    case MTFT_CK_FLOAT: return "number";
    case MTFT_CK_STRING: return "string";
    case MTFT_CK_PATH: return "path";
    case MTFT_CK_ENUM: return "enum";
    case MTFT_CK_STRLIST: return "list of strings";
    case MTFT_CK_PATHLIST: return "list of paths";
    case MTFT_CK_FLOATLIST:
    case MTFT_CK_DOUBLELIST: return "list of numbers";
    case MTFT_CK_SECTION: return "mapping";
    }
    return "?";
}

static const char *article(const mtft_cfg_key *k) {
    switch (k->kind) {
    case MTFT_CK_INT:
    case MTFT_CK_INT32:
    case MTFT_CK_INT64:
    case MTFT_CK_U64:
    case MTFT_CK_ENUM: return "an";
    default: return "a";
    }
}

static void enum_list(const mtft_cfg_key *k, char *buf, size_t cap, const char *sep) {
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; k->enum_names[i] && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? sep : "", k->enum_names[i]);
}

static int check_range(const mtft_cfg_ctx *ctx, const mtft_cnode *v, const char *path, const mtft_cfg_key *k,
                       double x) {
    if (!(k->flags & MTFT_CFG_RANGE)) return MTFT_OK;
    int hi_bad = (k->flags & MTFT_CFG_MAX_OPEN) ? !(x < k->max) : !(x <= k->max);
    if (x < k->min || hi_bad)
        return mtft_cfg__errat(ctx, v, MTFT_ERANGE, path, "value %s is outside [%.15g, %.15g%c", v->value, k->min, k->max,
                               (k->flags & MTFT_CFG_MAX_OPEN) ? ')' : ']');
    return MTFT_OK;
}

static int join_path(mtft_cfg_ctx *ctx, const char *s, const char **out) {
    const char *val = s;
    char *joined = NULL;
    if (s[0] != '/' && ctx->base_dir && *ctx->base_dir) {
        size_t n = strlen(ctx->base_dir) + strlen(s) + 2;
        joined = mtft__malloc(n);
        if (!joined) return mtft__err(MTFT_ENOMEM, "config: out of memory");
        snprintf(joined, n, "%s/%s", ctx->base_dir, s);
        val = joined;
    }
    *out = mtft_cfg__keep(ctx, val);
    mtft__free(joined);
    return *out ? MTFT_OK : mtft__err(MTFT_ENOMEM, "config: out of memory");
}

/* A list of strings, paths or numbers. */
static int set_list(mtft_cfg_ctx *ctx, const mtft_cnode *v, const mtft_cfg_key *k, char *field, int *count,
                    const char *path) {
    if (mtft_cfg__is_null(v) && (k->flags & MTFT_CFG_NULLABLE)) {
        *(const void **)field = NULL;
        *count = 0;
        return MTFT_OK;
    }
    int numeric = k->kind == MTFT_CK_FLOATLIST || k->kind == MTFT_CK_DOUBLELIST;
    if (v->kind != MTFT_CN_SEQ)
        return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected a %s, got %s", type_word(k),
                               mtft_cfg__kind_name(v));
    size_t isz = k->kind == MTFT_CK_FLOATLIST ? sizeof(float) : k->kind == MTFT_CK_DOUBLELIST ? sizeof(double)
                                                                                              : sizeof(char *);
    void *l = keep_mem(ctx, v->n, isz);
    if (!l) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    for (int i = 0; i < v->n; i++) {
        const mtft_cnode *it = v->items[i];
        char p2[600];
        snprintf(p2, sizeof p2, "%s[%d]", path, i);
        if (it->kind != MTFT_CN_SCALAR || mtft_cfg__is_null(it))
            return mtft_cfg__errat(ctx, it, MTFT_EFORMAT, p2, "expected a %s, got %s", numeric ? "number" : "string",
                                   mtft_cfg__kind_name(it));
        if (numeric) {
            char *end = NULL;
            double x = strtod(it->value, &end);
            if (!*it->value || *end || !isfinite(x))
                return mtft_cfg__errat(ctx, it, MTFT_EFORMAT, p2, "expected a finite number, got '%s'", it->value);
            if (k->flags & MTFT_CFG_RANGE) {
                int hi_bad = (k->flags & MTFT_CFG_MAX_OPEN) ? !(x < k->max) : !(x <= k->max);
                if (x < k->min || hi_bad)
                    return mtft_cfg__errat(ctx, it, MTFT_ERANGE, p2, "value %s is outside [%.15g, %.15g%c", it->value,
                                           k->min, k->max, (k->flags & MTFT_CFG_MAX_OPEN) ? ')' : ']');
            }
            if (k->kind == MTFT_CK_FLOATLIST) ((float *)l)[i] = (float)x;
            else ((double *)l)[i] = x;
        } else if (k->kind == MTFT_CK_PATHLIST) {
            int rc = join_path(ctx, it->value, &((const char **)l)[i]);
            if (rc) return rc;
        } else if (!(((const char **)l)[i] = mtft_cfg__keep(ctx, it->value))) {
            return mtft__err(MTFT_ENOMEM, "config: out of memory");
        }
    }
    *(const void **)field = v->n > 0 ? l : NULL;
    *count = v->n;
    return MTFT_OK;
}

/* Convert one scalar according to k and store it. */
static int set_value(mtft_cfg_ctx *ctx, const mtft_cnode *v, const mtft_cfg_key *k, void *target, const char *path) {
    char *field = (char *)target + k->offset;
    if (k->kind == MTFT_CK_SECTION) {
        if (v->kind != MTFT_CN_MAP)
            return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected a mapping, got %s", mtft_cfg__kind_name(v));
        return mtft_cfg__apply(ctx, v, k->sub, field, path);
    }
    int rc = note_write(ctx, field, v, path);
    if (rc) return rc;
    if (k->kind == MTFT_CK_STRLIST || k->kind == MTFT_CK_PATHLIST || k->kind == MTFT_CK_FLOATLIST ||
        k->kind == MTFT_CK_DOUBLELIST)
        return set_list(ctx, v, k, field, (int *)((char *)target + k->count_offset), path);
    if (v->kind != MTFT_CN_SCALAR)
        return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected %s %s, got %s", article(k), type_word(k),
                               mtft_cfg__kind_name(v));
    if (mtft_cfg__is_null(v)) {
        if (!(k->flags & MTFT_CFG_NULLABLE))
            return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected %s %s, got null", article(k),
                                   type_word(k));
        if (k->kind == MTFT_CK_STRING || k->kind == MTFT_CK_PATH) *(const char **)field = NULL;
        return MTFT_OK;
    }
    const char *s = v->value;
    char *end = NULL;
    switch (k->kind) {
    case MTFT_CK_BOOL: {
        int b;
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) b = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) b = 0;
        else return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected true or false, got '%s'", s);
        *(int *)field = b;
        return MTFT_OK;
    }
    case MTFT_CK_INT:
    case MTFT_CK_INT32:
    case MTFT_CK_INT64:
    case MTFT_CK_U64: {
        errno = 0;
        if (k->kind == MTFT_CK_U64) {
            if (*s == '-' || !*s)
                return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected an unsigned integer, got '%s'", s);
            unsigned long long u = strtoull(s, &end, 0);
            if (*end || errno == ERANGE)
                return mtft_cfg__errat(ctx, v, errno == ERANGE ? MTFT_ERANGE : MTFT_EFORMAT, path,
                                       "expected an unsigned 64-bit integer, got '%s'", s);
            rc = check_range(ctx, v, path, k, (double)u);
            if (rc) return rc;
            *(uint64_t *)field = (uint64_t)u;
            return MTFT_OK;
        }
        long long x = strtoll(s, &end, 10);
        if (!*s || *end) return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected an integer, got '%s'", s);
        if (k->kind == MTFT_CK_INT64) {
            if (errno == ERANGE)
                return mtft_cfg__errat(ctx, v, MTFT_ERANGE, path, "integer %s does not fit in 64 bits", s);
            rc = check_range(ctx, v, path, k, (double)x);
            if (rc) return rc;
            *(int64_t *)field = (int64_t)x;
            return MTFT_OK;
        }
        if (errno == ERANGE || x < INT32_MIN || x > INT32_MAX)
            return mtft_cfg__errat(ctx, v, MTFT_ERANGE, path, "integer %s does not fit in 32 bits", s);
        rc = check_range(ctx, v, path, k, (double)x);
        if (rc) return rc;
        if (k->kind == MTFT_CK_INT) *(int *)field = (int)x;
        else *(int32_t *)field = (int32_t)x;
        return MTFT_OK;
    }
    case MTFT_CK_DOUBLE:
    case MTFT_CK_FLOAT: {
        errno = 0;
        double x = strtod(s, &end);
        if (!*s || *end || !isfinite(x))
            return mtft_cfg__errat(ctx, v, MTFT_EFORMAT, path, "expected a finite number, got '%s'", s);
        rc = check_range(ctx, v, path, k, x);
        if (rc) return rc;
        if (k->kind == MTFT_CK_DOUBLE) *(double *)field = x;
        else *(float *)field = (float)x;
        return MTFT_OK;
    }
    case MTFT_CK_STRING:
    case MTFT_CK_PATH: {
        const char *c = NULL;
        if (k->kind == MTFT_CK_PATH) {
            rc = join_path(ctx, s, &c);
            if (rc) return rc;
        } else if (!(c = mtft_cfg__keep(ctx, s))) {
            return mtft__err(MTFT_ENOMEM, "config: out of memory");
        }
        *(const char **)field = c;
        return MTFT_OK;
    }
    case MTFT_CK_ENUM: {
        for (int i = 0; k->enum_names[i]; i++)
            if (!strcmp(k->enum_names[i], s)) {
                *(int *)field = i;
                return MTFT_OK;
            }
        char list[512];
        enum_list(k, list, sizeof list, ", ");
        return mtft_cfg__errat(ctx, v, MTFT_EINVAL, path, "unknown value '%s' (expected one of: %s)", s, list);
    }
    default: break;
    }
    return mtft__err(MTFT_ERROR, "config: bad schema kind %d for '%s'", (int)k->kind, k->name);
}

int mtft_cfg__apply(mtft_cfg_ctx *ctx, const mtft_cnode *map, const mtft_cfg_section *sec, void *target,
                    const char *path) {
    if (!map || map->kind != MTFT_CN_MAP)
        return mtft_cfg__errat(ctx, map, MTFT_EFORMAT, path, "expected a mapping of %s keys, got %s", sec->name,
                               mtft_cfg__kind_name(map));
    char sub[512];
    for (int i = 0; i < map->n; i++) {
        const char *key = map->keys[i]->value;
        const mtft_cfg_key *k = NULL;
        for (int j = 0; j < sec->n_keys; j++)
            if (!strcmp(sec->keys[j].name, key)) k = &sec->keys[j];
        snprintf(sub, sizeof sub, "%s%s%s", path && *path ? path : "", path && *path ? "." : "", key);
        if (!k) {
            const char *names[128];
            int n = 0;
            for (int j = 0; j < sec->n_keys && n < 128; j++) names[n++] = sec->keys[j].name;
            const char *best = mtft_cfg__suggest(key, names, n);
            if (best)
                return mtft_cfg__errat(ctx, map->keys[i], MTFT_ENOTFOUND, sub, "unknown key '%s' (did you mean '%s'?)",
                                       key, best);
            char list[1024];
            size_t off = 0;
            list[0] = '\0';
            for (int j = 0; j < n && off < sizeof list; j++)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", j ? ", " : "", names[j]);
            return mtft_cfg__errat(ctx, map->keys[i], MTFT_ENOTFOUND, sub, "unknown key '%s' (valid keys: %s)", key,
                                   list);
        }
        int rc = set_value(ctx, map->items[i], k, target, sub);
        if (rc != MTFT_OK) return rc;
    }
    for (int j = 0; j < sec->n_keys; j++) {
        if (!(sec->keys[j].flags & MTFT_CFG_REQUIRED)) continue;
        if (!mtft_cfg__get(map, sec->keys[j].name))
            return mtft_cfg__errat(ctx, map, MTFT_EINVAL, path, "missing required key '%s'", sec->keys[j].name);
    }
    return MTFT_OK;
}

/* ---- docs ------------------------------------------------------------------------ */

static int md_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) MTFT_PRINTF(4, 5);
static int md_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if (*len + (size_t)n + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        while (nc < *len + (size_t)n + 1) nc *= 2;
        char *nb = mtft__realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
    return 0;
}

/* s for a Markdown table cell: '|' escaped, wrapped in q ("`" or ""). */
static void md_escape(char *out, size_t cap, const char *s, const char *q) {
    size_t o = 0, ql = strlen(q);
    for (size_t i = 0; i < ql && o + 1 < cap; i++) out[o++] = q[i];
    for (; *s && o + 3 < cap; s++) {
        if (*s == '|') out[o++] = '\\';
        out[o++] = *s;
    }
    for (size_t i = 0; i < ql && o + 1 < cap; i++) out[o++] = q[i];
    out[o] = '\0';
}

int mtft_cfg__section_markdown(const mtft_cfg_section *sec, const char *prefix, char **buf, size_t *len,
                               size_t *cap) {
    for (int j = 0; j < sec->n_keys; j++) {
        const mtft_cfg_key *k = &sec->keys[j];
        char full[256];
        snprintf(full, sizeof full, "%s%s", prefix, k->name);
        if (k->kind == MTFT_CK_SECTION) {
            char p2[300];
            snprintf(p2, sizeof p2, "%s.", full);
            if (md_add(buf, len, cap, "| `%s` | mapping | | | %s |\n", full, k->doc) < 0) return -1;
            if (mtft_cfg__section_markdown(k->sub, p2, buf, len, cap) < 0) return -1;
            continue;
        }
        char range[512] = "";
        if (k->kind == MTFT_CK_ENUM) enum_list(k, range, sizeof range, ", ");
        else if (k->flags & MTFT_CFG_RANGE)
            snprintf(range, sizeof range, "%s[%.15g, %.15g%c",
                     (k->kind == MTFT_CK_FLOATLIST || k->kind == MTFT_CK_DOUBLELIST) ? "each in " : "", k->min,
                     k->max, (k->flags & MTFT_CFG_MAX_OPEN) ? ')' : ']');
        char dflt[256], doc[1024];
        if (k->flags & MTFT_CFG_REQUIRED) snprintf(dflt, sizeof dflt, "(required)");
        else if (!k->dflt || !*k->dflt) snprintf(dflt, sizeof dflt, "(none)");
        else if (k->flags & MTFT_CFG_DESCRIBED) md_escape(dflt, sizeof dflt, k->dflt, "");
        else md_escape(dflt, sizeof dflt, k->dflt, "`");
        md_escape(doc, sizeof doc, k->doc, "");
        if (md_add(buf, len, cap, "| `%s` | %s | %s | %s | %s%s |\n", full, type_word(k), dflt, range, doc,
                   (k->kind == MTFT_CK_PATH || k->kind == MTFT_CK_PATHLIST) ? " Relative paths are relative to the config file." : "") < 0)
            return -1;
    }
    return 0;
}
