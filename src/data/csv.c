/* CSV / TSV records with RFC 4180 quoting: a field in double quotes may hold
 * the separator, line breaks and "" for one quote; a quote inside an
 * unquoted field, text after a closing quote and an unterminated quote are
 * errors with line:column. */
#include <stdio.h>
#include <string.h>

#include "data_impl.h"

void mtft_csv__init(mtft_csv *r, const char *text, size_t len, char sep) {
    memset(r, 0, sizeof *r);
    r->p = r->base = r->line_start = text;
    r->end = text + len;
    r->sep = sep;
    r->line = 1;
}

void mtft_csv__dispose(mtft_csv *r) {
    mtft__free(r->buf);
    mtft__free(r->cell);
    memset(r, 0, sizeof *r);
}

static int put(mtft_csv *r, char c) {
    if (r->buf_len + 1 > r->buf_cap) {
        size_t cap = r->buf_cap ? r->buf_cap * 2 : 256;
        char *nb = mtft__realloc(r->buf, cap);
        if (!nb) return -1;
        r->buf = nb;
        r->buf_cap = cap;
    }
    r->buf[r->buf_len++] = c;
    return 0;
}

static int new_cell(mtft_csv *r) {
    if (r->n_cells == r->cap_cells) {
        int cap = r->cap_cells ? r->cap_cells * 2 : 16;
        size_t *nc = mtft__realloc(r->cell, (size_t)cap * sizeof *nc);
        if (!nc) return -1;
        r->cell = nc;
        r->cap_cells = cap;
    }
    r->cell[r->n_cells++] = r->buf_len;
    return 0;
}

static int col_of(const mtft_csv *r, const char *p) { return (int)(p - r->line_start) + 1; }

/* Skip to just after the next line break (error recovery). */
static void skip_line(mtft_csv *r) {
    while (r->p < r->end && *r->p != '\n') r->p++;
    if (r->p < r->end) {
        r->p++;
        r->line++;
        r->line_start = r->p;
    }
}

int mtft_csv__next(mtft_csv *r, int *rec_line, char *err, size_t errcap) {
    /* skip blank lines */
    for (;;) {
        if (r->p >= r->end) return 0;
        if (*r->p == '\n') {
            r->p++;
            r->line++;
            r->line_start = r->p;
        } else if (*r->p == '\r' && r->p + 1 < r->end && r->p[1] == '\n') {
            r->p += 2;
            r->line++;
            r->line_start = r->p;
        } else {
            break;
        }
    }
    *rec_line = r->line;
    r->buf_len = 0;
    r->n_cells = 0;
    for (;;) { /* one field per iteration */
        if (new_cell(r) < 0) return MTFT_ENOMEM;
        if (r->p < r->end && *r->p == '"') {
            const char *open = r->p;
            int open_line = r->line, open_col = col_of(r, open);
            r->p++;
            for (;;) {
                if (r->p >= r->end) {
                    snprintf(err, errcap, "%d:%d: unterminated quoted field (reached the end of the file)",
                             open_line, open_col);
                    return -1;
                }
                char c = *r->p;
                if (c == '"') {
                    if (r->p + 1 < r->end && r->p[1] == '"') {
                        if (put(r, '"') < 0) return MTFT_ENOMEM;
                        r->p += 2;
                        continue;
                    }
                    r->p++;
                    break;
                }
                if (c == '\n') {
                    r->line++;
                    r->line_start = r->p + 1;
                }
                if (put(r, c) < 0) return MTFT_ENOMEM;
                r->p++;
            }
            if (r->p < r->end && *r->p != r->sep && *r->p != '\n' &&
                !(*r->p == '\r' && (r->p + 1 == r->end || r->p[1] == '\n'))) {
                snprintf(err, errcap, "%d:%d: unexpected character '%c' after a closing quote", r->line,
                         col_of(r, r->p), *r->p);
                skip_line(r);
                return -1;
            }
        } else {
            while (r->p < r->end && *r->p != r->sep && *r->p != '\n') {
                if (*r->p == '\r' && (r->p + 1 == r->end || r->p[1] == '\n')) break;
                if (*r->p == '"') {
                    snprintf(err, errcap, "%d:%d: quote inside an unquoted field (quote the whole field and double the quote)",
                             r->line, col_of(r, r->p));
                    skip_line(r);
                    return -1;
                }
                if (put(r, *r->p) < 0) return MTFT_ENOMEM;
                r->p++;
            }
        }
        if (put(r, '\0') < 0) return MTFT_ENOMEM;
        if (r->p < r->end && *r->p == r->sep) {
            r->p++;
            continue;
        }
        /* end of record */
        if (r->p < r->end && *r->p == '\r') r->p++;
        if (r->p < r->end && *r->p == '\n') {
            r->p++;
            r->line++;
            r->line_start = r->p;
        }
        return 1;
    }
}
