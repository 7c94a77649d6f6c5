/* Prompt templates: literal text with {field} placeholders; "{{" and "}}"
 * are literal braces. Positions in messages are 1-based characters (bytes)
 * of the template. */
#include <stdio.h>
#include <string.h>

#include "mtft/task.h"
#include "template.h"

static int name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

int mtft_tmpl__walk(const char *tmpl, mtft_tmpl_cb cb, void *ctx) {
    const char *p = tmpl;
    const char *lit = p;
    int rc;
    while (*p) {
        if (*p == '{' && p[1] == '{') {
            if ((rc = cb(ctx, 0, lit, (size_t)(p - lit) + 1, (int)(lit - tmpl) + 1)) != 0) return rc;
            p += 2;
            lit = p;
        } else if (*p == '}' && p[1] == '}') {
            if ((rc = cb(ctx, 0, lit, (size_t)(p - lit) + 1, (int)(lit - tmpl) + 1)) != 0) return rc;
            p += 2;
            lit = p;
        } else if (*p == '}') {
            return mtft__err(MTFT_EINVAL, "template position %d: unmatched '}' (write '}}' for a literal brace)",
                             (int)(p - tmpl) + 1);
        } else if (*p == '{') {
            const char *open = p;
            const char *q = p + 1;
            while (*q && name_char(*q)) q++;
            if (*q != '}') {
                if (!*q)
                    return mtft__err(MTFT_EINVAL, "template position %d: unclosed '{' (write '{{' for a literal brace)",
                                     (int)(open - tmpl) + 1);
                return mtft__err(MTFT_EINVAL,
                                 "template position %d: invalid character '%c' in placeholder (names use "
                                 "letters, digits, '_', '-', '.')",
                                 (int)(q - tmpl) + 1, *q);
            }
            if (q == open + 1)
                return mtft__err(MTFT_EINVAL, "template position %d: empty placeholder '{}'", (int)(open - tmpl) + 1);
            if (p > lit && (rc = cb(ctx, 0, lit, (size_t)(p - lit), (int)(lit - tmpl) + 1)) != 0) return rc;
            if ((rc = cb(ctx, 1, open + 1, (size_t)(q - open - 1), (int)(open - tmpl) + 1)) != 0) return rc;
            p = q + 1;
            lit = p;
        } else {
            p++;
        }
    }
    if (p > lit && (rc = cb(ctx, 0, lit, (size_t)(p - lit), (int)(lit - tmpl) + 1)) != 0) return rc;
    return 0;
}

typedef struct check_ctx {
    const char *const *allowed;
    int n_allowed;
    int n_fields;
} check_ctx;

static int check_cb(void *vctx, int is_field, const char *s, size_t len, int pos) {
    check_ctx *c = vctx;
    if (!is_field) return 0;
    c->n_fields++;
    if (!c->allowed) return 0;
    for (int i = 0; i < c->n_allowed; i++)
        if (c->allowed[i] && strlen(c->allowed[i]) == len && memcmp(c->allowed[i], s, len) == 0) return 0;
    char list[512];
    size_t off = 0;
    list[0] = '\0';
    for (int i = 0; i < c->n_allowed && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", c->allowed[i] ? c->allowed[i] : "");
    return mtft__err(MTFT_ENOTFOUND, "template position %d: unknown placeholder '{%.*s}' (fields: %s)", pos, (int)len,
                     s, list);
}

int mtft_template_check(const char *tmpl, const char *const *allowed, int n_allowed) {
    MTFT_CHECK_ARG(tmpl != NULL);
    MTFT_CHECK_ARG(n_allowed >= 0);
    check_ctx c = {allowed, n_allowed, 0};
    return mtft_tmpl__walk(tmpl, check_cb, &c);
}

typedef struct render_ctx {
    const char *const *names;
    const char *const *values;
    int n;
    char *buf;
    size_t cap, len;
} render_ctx;

static void emit(render_ctx *c, const char *s, size_t len) {
    if (c->len < c->cap) {
        size_t k = c->cap - c->len < len ? c->cap - c->len : len;
        memcpy(c->buf + c->len, s, k);
    }
    c->len += len;
}

static int render_cb(void *vctx, int is_field, const char *s, size_t len, int pos) {
    render_ctx *c = vctx;
    if (!is_field) {
        emit(c, s, len);
        return 0;
    }
    for (int i = 0; i < c->n; i++) {
        if (c->names[i] && strlen(c->names[i]) == len && memcmp(c->names[i], s, len) == 0) {
            if (!c->values[i]) break;
            emit(c, c->values[i], strlen(c->values[i]));
            return 0;
        }
    }
    return mtft__err(MTFT_ENOTFOUND, "template position %d: no value for placeholder '{%.*s}'", pos, (int)len, s);
}

int mtft_template_render(const char *tmpl, const char *const *names, const char *const *values, int n, char *buf,
                         size_t cap, size_t *len_out) {
    MTFT_CHECK_ARG(tmpl != NULL);
    MTFT_CHECK_ARG(n == 0 || (names && values));
    MTFT_CHECK_ARG(buf != NULL || cap == 0);
    render_ctx c = {names, values, n, buf, cap, 0};
    int rc = mtft_tmpl__walk(tmpl, render_cb, &c);
    if (len_out) *len_out = c.len;
    if (rc != 0) return rc;
    if (c.len < cap) {
        buf[c.len] = '\0';
        return MTFT_OK;
    }
    return mtft__err(MTFT_ERANGE, "template result needs %zu bytes plus a NUL, buffer has %zu", c.len, cap);
}
