/* Internal JSON access for mtft: a thin layer over cJSON so that cJSON is
 * included by src/io/json.c only. Not installed.
 *
 * A parsed document is a tree of mtft_json nodes owned by its root; free the
 * root with mtft_json__free(). Getters are NULL-safe: a NULL node (or a node
 * of the wrong kind) yields NULL / 0 / MTFT_JSON_NONE, so lookups can be
 * chained and checked once. */
#ifndef MTFT_IO_JSON_H
#define MTFT_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct mtft_json mtft_json;

typedef enum mtft_json_type {
    MTFT_JSON_NONE = 0, /* NULL node */
    MTFT_JSON_NULL,
    MTFT_JSON_BOOL,
    MTFT_JSON_NUMBER,
    MTFT_JSON_STRING,
    MTFT_JSON_ARRAY,
    MTFT_JSON_OBJECT
} mtft_json_type;

/* Parse len bytes of text (no NUL needed: the text is copied). The value
 * may be followed by whitespace only. On a syntax error (or when out of
 * memory, which cJSON does not tell apart) returns NULL, sets *err_offset
 * (when not NULL) to the byte offset of the error inside text, and sets no
 * mtft error: the caller knows the file name and reports it (see
 * mtft_json__line_col). */
mtft_json *mtft_json__parse(const char *text, size_t len, size_t *err_offset);
void mtft_json__free(mtft_json *root);

/* 1-based line and column of byte offset `off` in text. */
void mtft_json__line_col(const char *text, size_t len, size_t off, int *line, int *col);
/* Where the member `key` of the top-level object starts in the text (its
 * opening quote), for error messages; 0 when not found. */
size_t mtft_json__find_key(const char *text, size_t len, const char *key);

mtft_json_type mtft_json__type(const mtft_json *j);
/* "null", "boolean", "number", "string", "array", "object" ("missing" for NULL). */
const char *mtft_json__type_name(const mtft_json *j);

/* Objects and arrays. */
int mtft_json__size(const mtft_json *j);                 /* members / elements; 0 otherwise */
mtft_json *mtft_json__at(const mtft_json *j, int i);     /* i-th member / element (O(i)) */
mtft_json *mtft_json__first(const mtft_json *j);         /* first member / element */
mtft_json *mtft_json__next(const mtft_json *j);          /* next sibling */
const char *mtft_json__key(const mtft_json *member);     /* member name; NULL outside objects */
/* First member called key (case-sensitive); NULL if none. */
mtft_json *mtft_json__get(const mtft_json *obj, const char *key);

/* Scalars. */
const char *mtft_json__string(const mtft_json *j);       /* NULL unless a string */
double mtft_json__number(const mtft_json *j);            /* 0 unless a number */
int mtft_json__bool(const mtft_json *j);                 /* 1 for true, 0 otherwise */
/* 1 when j is a number with an integral value in [-2^53, 2^53] (stored in *v). */
int mtft_json__int(const mtft_json *j, int64_t *v);

/* Building (for sidecar files). Each returns NULL when out of memory; the
 * add functions take ownership of `child` (freed on failure) and return 0 or
 * -1. */
mtft_json *mtft_json__new_object(void);
mtft_json *mtft_json__new_array(void);
mtft_json *mtft_json__new_string(const char *s);
mtft_json *mtft_json__new_number(double v);
mtft_json *mtft_json__new_bool(int v);
mtft_json *mtft_json__new_null(void);
int mtft_json__add(mtft_json *obj, const char *key, mtft_json *child);
int mtft_json__append(mtft_json *arr, mtft_json *child);
/* Render; the string is from mtft__malloc (free with mtft__free). */
char *mtft_json__print(const mtft_json *j, int pretty);

/* Append s as a JSON string literal (quotes and escapes) to buf at *pos,
 * growing buf (mtft__realloc) as needed. Returns 0 or -1 (out of memory). */
int mtft_json__append_quoted(char **buf, size_t *pos, size_t *cap, const char *s);

/* Read a whole file into a NUL-terminated mtft__malloc'ed buffer. MTFT_OK or
 * MTFT_EIO / MTFT_ENOMEM with the error set naming `path`. */
int mtft_io__read_file(const char *path, char **out, size_t *len);

#endif
