/* The one file of mtft that includes cJSON: parsing, access and building
 * behind the internal API of json.h. cJSON keeps its own allocator (its hooks
 * are process-wide and may belong to the application); everything this file
 * hands out to the rest of mtft comes from mtft__malloc. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/core.h"
#include "json.h"

/* mtft_json is cJSON itself, opaque to the rest of the library. */
#define CJ(j) ((cJSON *)(j))
#define MJ(c) ((mtft_json *)(c))

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

mtft_json *mtft_json__parse(const char *text, size_t len, size_t *err_offset) {
    if (err_offset) *err_offset = 0;
    if (!text) return NULL;
    /* a NUL byte is never valid JSON text, and would cut cJSON's strings */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        if (err_offset) *err_offset = (size_t)(nul - text);
        return NULL;
    }
    /* cJSON wants a NUL-terminated buffer to be safe at its edges. */
    char *copy = mtft__malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, text, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(copy, len, &end, 0) : NULL;
    size_t off = end ? (size_t)(end - copy) : 0;
    if (root) {
        /* only whitespace may follow the value */
        while (off < len && is_ws(copy[off])) off++;
        if (off < len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root && err_offset) *err_offset = off;
    mtft__free(copy);
    return MJ(root);
}

void mtft_json__free(mtft_json *root) {
    if (root) cJSON_Delete(CJ(root));
}

void mtft_json__line_col(const char *text, size_t len, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; text && i < off && i < len; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    if (line) *line = l;
    if (col) *col = c;
}

size_t mtft_json__find_key(const char *text, size_t len, const char *key) {
    if (!text || !key) return 0;
    size_t klen = strlen(key);
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            depth--;
        } else if (ch == '"') {
            size_t start = i++;
            while (i < len && text[i] != '"') {
                if (text[i] == '\\') i++;
                i++;
            }
            if (i >= len) return 0;
            if (depth == 1 && i - start - 1 == klen && memcmp(text + start + 1, key, klen) == 0) {
                size_t k = i + 1;
                while (k < len && is_ws(text[k])) k++;
                if (k < len && text[k] == ':') return start;
            }
        }
    }
    return 0;
}

mtft_json_type mtft_json__type(const mtft_json *j) {
    if (!j) return MTFT_JSON_NONE;
    switch (CJ(j)->type & 0xFF) {
    case cJSON_NULL: return MTFT_JSON_NULL;
    case cJSON_False:
    case cJSON_True: return MTFT_JSON_BOOL;
    case cJSON_Number: return MTFT_JSON_NUMBER;
    case cJSON_String: return MTFT_JSON_STRING;
    case cJSON_Array: return MTFT_JSON_ARRAY;
    case cJSON_Object: return MTFT_JSON_OBJECT;
    default: return MTFT_JSON_NONE;
    }
}

const char *mtft_json__type_name(const mtft_json *j) {
    switch (mtft_json__type(j)) {
    case MTFT_JSON_NULL: return "null";
    case MTFT_JSON_BOOL: return "boolean";
    case MTFT_JSON_NUMBER: return "number";
    case MTFT_JSON_STRING: return "string";
    case MTFT_JSON_ARRAY: return "array";
    case MTFT_JSON_OBJECT: return "object";
    default: return "missing";
    }
}

static int is_container(const mtft_json *j) {
    mtft_json_type t = mtft_json__type(j);
    return t == MTFT_JSON_ARRAY || t == MTFT_JSON_OBJECT;
}

int mtft_json__size(const mtft_json *j) { return is_container(j) ? cJSON_GetArraySize(CJ(j)) : 0; }
mtft_json *mtft_json__at(const mtft_json *j, int i) {
    return is_container(j) && i >= 0 ? MJ(cJSON_GetArrayItem(CJ(j), i)) : NULL;
}
mtft_json *mtft_json__first(const mtft_json *j) { return is_container(j) ? MJ(CJ(j)->child) : NULL; }
mtft_json *mtft_json__next(const mtft_json *j) { return j ? MJ(CJ(j)->next) : NULL; }
const char *mtft_json__key(const mtft_json *member) { return member ? CJ(member)->string : NULL; }

mtft_json *mtft_json__get(const mtft_json *obj, const char *key) {
    if (mtft_json__type(obj) != MTFT_JSON_OBJECT || !key) return NULL;
    return MJ(cJSON_GetObjectItemCaseSensitive(CJ(obj), key));
}

const char *mtft_json__string(const mtft_json *j) {
    return mtft_json__type(j) == MTFT_JSON_STRING ? CJ(j)->valuestring : NULL;
}
double mtft_json__number(const mtft_json *j) {
    return mtft_json__type(j) == MTFT_JSON_NUMBER ? CJ(j)->valuedouble : 0.0;
}
int mtft_json__bool(const mtft_json *j) { return j && (CJ(j)->type & 0xFF) == cJSON_True; }

int mtft_json__int(const mtft_json *j, int64_t *v) {
    if (mtft_json__type(j) != MTFT_JSON_NUMBER) return 0;
    double d = CJ(j)->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) return 0;
    if (v) *v = (int64_t)d;
    return 1;
}

mtft_json *mtft_json__new_object(void) { return MJ(cJSON_CreateObject()); }
mtft_json *mtft_json__new_array(void) { return MJ(cJSON_CreateArray()); }
mtft_json *mtft_json__new_string(const char *s) { return MJ(cJSON_CreateString(s ? s : "")); }
mtft_json *mtft_json__new_number(double v) { return MJ(cJSON_CreateNumber(v)); }
mtft_json *mtft_json__new_bool(int v) { return MJ(cJSON_CreateBool(v != 0)); }
mtft_json *mtft_json__new_null(void) { return MJ(cJSON_CreateNull()); }

int mtft_json__add(mtft_json *obj, const char *key, mtft_json *child) {
    if (!child) return -1;
    if (mtft_json__type(obj) != MTFT_JSON_OBJECT || !key || !cJSON_AddItemToObject(CJ(obj), key, CJ(child))) {
        cJSON_Delete(CJ(child));
        return -1;
    }
    return 0;
}

int mtft_json__append(mtft_json *arr, mtft_json *child) {
    if (!child) return -1;
    if (mtft_json__type(arr) != MTFT_JSON_ARRAY || !cJSON_AddItemToArray(CJ(arr), CJ(child))) {
        cJSON_Delete(CJ(child));
        return -1;
    }
    return 0;
}

char *mtft_json__print(const mtft_json *j, int pretty) {
    if (!j) return NULL;
    char *s = pretty ? cJSON_Print(CJ(j)) : cJSON_PrintUnformatted(CJ(j));
    if (!s) {
        mtft__err(MTFT_ENOMEM, "json: out of memory while printing");
        return NULL;
    }
    char *r = mtft__strdup(s);
    cJSON_free(s);
    return r;
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    char *nb = mtft__realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

int mtft_json__append_quoted(char **buf, size_t *pos, size_t *cap, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    if (grow(buf, cap, *pos + 6 * n + 3) < 0) return -1;
    char *o = *buf;
    size_t p = *pos;
    o[p++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            o[p++] = '\\';
            o[p++] = (char)c;
        } else if (c == '\n') {
            o[p++] = '\\';
            o[p++] = 'n';
        } else if (c == '\t') {
            o[p++] = '\\';
            o[p++] = 't';
        } else if (c == '\r') {
            o[p++] = '\\';
            o[p++] = 'r';
        } else if (c < 0x20) {
            o[p++] = '\\';
            o[p++] = 'u';
            o[p++] = '0';
            o[p++] = '0';
            o[p++] = hex[c >> 4];
            o[p++] = hex[c & 15];
        } else {
            o[p++] = (char)c;
        }
    }
    o[p++] = '"';
    o[p] = '\0';
    *pos = p;
    return 0;
}

int mtft_io__read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mtft__err(MTFT_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (grow(&buf, &cap, n + 65536 + 1) < 0) {
            fclose(f);
            mtft__free(buf);
            return mtft__err(MTFT_ENOMEM, "%s: out of memory while reading", path);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        mtft__free(buf);
        return mtft__err(MTFT_EIO, "%s: read error: %s", path, strerror(e));
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return MTFT_OK;
}
