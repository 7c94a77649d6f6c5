/* safetensors: a validating reader over a read-only private mmap, and an
 * atomic F32 writer.
 *
 * The whole header is checked at open, so that every later access is a plain
 * bounds-checked read of the mapping: the header length against the file, the
 * JSON, each entry's fields, dtype sizes against shapes and byte ranges, and
 * the ranges against each other (they must tile the data buffer exactly, as
 * the reference implementation requires; this also defeats aliasing through
 * duplicate names). */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/core.h"
#include "json.h"
#include "mtft/io.h"

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct st_entry {
    char *name;
    mtft_st_dtype dtype;
    int ndim;
    int64_t shape[MTFT_SAFETENSORS_MAX_DIMS];
    uint64_t begin, end; /* relative to the data buffer */
} st_entry;

struct mtft_safetensors {
    char *path;
    unsigned char *map;
    size_t map_size;
    const unsigned char *data; /* map + 8 + header_len */
    uint64_t data_size;
    uint64_t header_len;
    st_entry *e; /* sorted by begin offset */
    int n;
    int *by_name; /* indices into e sorted by name */
    char **meta_k, **meta_v;
    int n_meta;
};

/* ---- dtypes ---------------------------------------------------------------- */
static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [MTFT_ST_BOOL] = {"BOOL", 1},      [MTFT_ST_U8] = {"U8", 1},        [MTFT_ST_I8] = {"I8", 1},
    [MTFT_ST_F8_E5M2] = {"F8_E5M2", 1}, [MTFT_ST_F8_E4M3] = {"F8_E4M3", 1}, [MTFT_ST_I16] = {"I16", 2},
    [MTFT_ST_U16] = {"U16", 2},        [MTFT_ST_F16] = {"F16", 2},      [MTFT_ST_BF16] = {"BF16", 2},
    [MTFT_ST_I32] = {"I32", 4},        [MTFT_ST_U32] = {"U32", 4},      [MTFT_ST_F32] = {"F32", 4},
    [MTFT_ST_F64] = {"F64", 8},        [MTFT_ST_I64] = {"I64", 8},      [MTFT_ST_U64] = {"U64", 8},
    [MTFT_ST_F8_E8M0] = {"F8_E8M0", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char *mtft_st_dtype_name(mtft_st_dtype d) {
    return ((int)d >= 0 && (int)d < N_DTYPES) ? dtypes[d].name : "?";
}
size_t mtft_st_dtype_size(mtft_st_dtype d) { return ((int)d >= 0 && (int)d < N_DTYPES) ? dtypes[d].size : 0; }

static int dtype_parse(const char *s, mtft_st_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (mtft_st_dtype)i;
            return 1;
        }
    return 0;
}

/* ---- f16 / bf16 ------------------------------------------------------------ */
static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float mtft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf, or NaN keeping its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal: man * 2^-24; normalise so the leading 1 becomes implicit */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
    }
    return f32_from_bits(bits);
}

float mtft_bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

static float f64_to_f32(double d) {
    /* IEEE round to nearest, without relying on out-of-range casts */
    if (d > FLT_MAX || d < -FLT_MAX) {
        double a = fabs(d);
        float r = (a >= 0x1.ffffffp127) ? INFINITY : FLT_MAX; /* halfway to 2^128 rounds up */
        return d < 0 ? -r : r;
    }
    return (float)d;
}

static int host_is_le(void) {
    uint16_t x = 1;
    unsigned char c;
    memcpy(&c, &x, 1);
    return c == 1;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- open ------------------------------------------------------------------ */
static void st_free(mtft_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    for (int i = 0; i < st->n; i++) mtft__free(st->e[i].name);
    mtft__free(st->e);
    mtft__free(st->by_name);
    for (int i = 0; i < st->n_meta; i++) {
        mtft__free(st->meta_k[i]);
        mtft__free(st->meta_v[i]);
    }
    mtft__free(st->meta_k);
    mtft__free(st->meta_v);
    mtft__free(st->path);
    mtft__free(st);
}

void mtft_safetensors_close(mtft_safetensors *st) { st_free(st); }

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Parse one tensor entry (member `m` of the header object). */
static int parse_entry(const mtft_safetensors *st, const mtft_json *m, st_entry *e) {
    const char *name = mtft_json__key(m);
    const char *p = st->path;
    if (mtft_json__type(m) != MTFT_JSON_OBJECT)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': header entry must be an object, got %s", p, name,
                         mtft_json__type_name(m));
    const mtft_json *jd = mtft_json__get(m, "dtype");
    const mtft_json *js = mtft_json__get(m, "shape");
    const mtft_json *jo = mtft_json__get(m, "data_offsets");
    if (!jd) return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': missing field 'dtype'", p, name);
    if (!js) return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': missing field 'shape'", p, name);
    if (!jo) return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': missing field 'data_offsets'", p, name);
    if (mtft_json__type(jd) != MTFT_JSON_STRING)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': field 'dtype' must be a string, got %s", p, name,
                         mtft_json__type_name(jd));
    if (!dtype_parse(mtft_json__string(jd), &e->dtype))
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", p, name, mtft_json__string(jd));
    if (mtft_json__type(js) != MTFT_JSON_ARRAY)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': field 'shape' must be an array, got %s", p, name,
                         mtft_json__type_name(js));
    int nd = mtft_json__size(js);
    if (nd > MTFT_SAFETENSORS_MAX_DIMS)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': %d dims, more than the %d supported", p, name, nd,
                         MTFT_SAFETENSORS_MAX_DIMS);
    e->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    int k = 0;
    for (const mtft_json *d = mtft_json__first(js); d; d = mtft_json__next(d), k++) {
        int64_t v;
        if (!mtft_json__int(d, &v) || v < 0)
            return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': shape[%d] must be a non-negative integer", p, name,
                             k);
        e->shape[k] = v;
        if (v != 0 && numel > UINT64_MAX / (uint64_t)v) overflow = 1;
        numel *= (uint64_t)v;
    }
    if (mtft_json__type(jo) != MTFT_JSON_ARRAY || mtft_json__size(jo) != 2)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': field 'data_offsets' must be an array [begin, end]", p,
                         name);
    int64_t b, en;
    if (!mtft_json__int(mtft_json__at(jo, 0), &b) || !mtft_json__int(mtft_json__at(jo, 1), &en) || b < 0 ||
        en < 0)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", p, name);
    if (en < b)
        return mtft__err(MTFT_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", p, name,
                         (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    size_t es = dtypes[e->dtype].size;
    if (numel > UINT64_MAX / es) overflow = 1;
    char sh[160];
    shape_str(sh, sizeof sh, e->ndim, e->shape);
    if (overflow || numel * es != e->end - e->begin)
        return mtft__err(MTFT_EFORMAT,
                         "%s: tensor '%s': shape %s of %s needs %s%llu bytes but data_offsets [%llu, %llu] hold %llu",
                         p, name, sh, dtypes[e->dtype].name, overflow ? "more than " : "",
                         overflow ? (unsigned long long)UINT64_MAX : (unsigned long long)(numel * es),
                         (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)(e->end - e->begin));
    if (e->end > st->data_size)
        return mtft__err(MTFT_EFORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] extend past the end of the data buffer "
                         "(%llu bytes): file truncated?",
                         p, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)st->data_size);
    e->name = mtft__strdup(name);
    if (!e->name) return MTFT_ENOMEM;
    return MTFT_OK;
}

static int parse_metadata(mtft_safetensors *st, const mtft_json *m) {
    if (mtft_json__type(m) != MTFT_JSON_OBJECT)
        return mtft__err(MTFT_EFORMAT, "%s: '__metadata__' must be an object of strings, got %s", st->path,
                         mtft_json__type_name(m));
    int n = mtft_json__size(m);
    st->meta_k = mtft__calloc((size_t)n + 1, sizeof *st->meta_k);
    st->meta_v = mtft__calloc((size_t)n + 1, sizeof *st->meta_v);
    if (!st->meta_k || !st->meta_v) return MTFT_ENOMEM;
    for (const mtft_json *kv = mtft_json__first(m); kv; kv = mtft_json__next(kv)) {
        const char *v = mtft_json__string(kv);
        if (!v)
            return mtft__err(MTFT_EFORMAT, "%s: '__metadata__': value of '%s' must be a string, got %s", st->path,
                             mtft_json__key(kv), mtft_json__type_name(kv));
        st->meta_k[st->n_meta] = mtft__strdup(mtft_json__key(kv));
        st->meta_v[st->n_meta] = mtft__strdup(v);
        st->n_meta++;
        if (!st->meta_k[st->n_meta - 1] || !st->meta_v[st->n_meta - 1]) return MTFT_ENOMEM;
    }
    return MTFT_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sort name indices (qsort's comparator cannot take the entry array without
 * a global, which would not be thread-safe): a small merge sort. */
static void sort_names(const st_entry *e, int *idx, int *tmp, int n) {
    if (n < 2) return;
    int h = n / 2;
    sort_names(e, idx, tmp, h);
    sort_names(e, idx + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = strcmp(e[idx[i]].name, e[idx[j]].name) <= 0 ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

static int parse_header(mtft_safetensors *st) {
    const char *p = st->path;
    const char *text = (const char *)st->map + 8;
    size_t len = (size_t)st->header_len;
    size_t eoff = 0;
    mtft_json *root = mtft_json__parse(text, len, &eoff);
    if (!root) {
        int line, col;
        mtft_json__line_col(text, len, eoff, &line, &col);
        return mtft__err(MTFT_EFORMAT,
                         "%s: header is not valid JSON: syntax error at or just before header byte %zu (file offset "
                         "%zu, header line %d col %d)",
                         p, eoff, eoff + 8, line, col);
    }
    int rc = MTFT_OK;
    if (mtft_json__type(root) != MTFT_JSON_OBJECT) {
        rc = mtft__err(MTFT_EFORMAT, "%s: header must be a JSON object, got %s", p, mtft_json__type_name(root));
        goto done;
    }
    int total = mtft_json__size(root);
    st->e = mtft__calloc((size_t)total + 1, sizeof *st->e);
    if (!st->e) {
        rc = MTFT_ENOMEM;
        goto done;
    }
    int seen_meta = 0;
    for (const mtft_json *m = mtft_json__first(root); m; m = mtft_json__next(m)) {
        if (strcmp(mtft_json__key(m), "__metadata__") == 0) {
            if (seen_meta++) {
                rc = mtft__err(MTFT_EFORMAT, "%s: '__metadata__' appears twice in the header", p);
                goto done;
            }
            if ((rc = parse_metadata(st, m)) < 0) goto done;
            continue;
        }
        st_entry *e = &st->e[st->n];
        rc = parse_entry(st, m, e);
        if (rc < 0) goto done;
        st->n++;
    }
    /* unique names */
    st->by_name = mtft__malloc(((size_t)st->n + 1) * sizeof *st->by_name);
    int *tmp = mtft__malloc(((size_t)st->n + 1) * sizeof *tmp);
    if (!st->by_name || !tmp) {
        mtft__free(tmp);
        rc = MTFT_ENOMEM;
        goto done;
    }
    for (int i = 0; i < st->n; i++) st->by_name[i] = i;
    sort_names(st->e, st->by_name, tmp, st->n);
    mtft__free(tmp);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->e[st->by_name[i]].name, st->e[st->by_name[i - 1]].name) == 0) {
            rc = mtft__err(MTFT_EFORMAT, "%s: tensor '%s' appears twice in the header", p,
                           st->e[st->by_name[i]].name);
            goto done;
        }
    /* tensors tile the buffer: sorted by offset, each begins where the last ended */
    qsort(st->e, (size_t)st->n, sizeof *st->e, cmp_offset);
    uint64_t at = 0;
    for (int i = 0; i < st->n; i++) {
        const st_entry *e = &st->e[i];
        if (e->begin < at) {
            rc = mtft__err(MTFT_EFORMAT, "%s: tensor '%s' (bytes [%llu, %llu]) overlaps tensor '%s' (bytes [%llu, %llu])",
                           p, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, st->e[i - 1].name,
                           (unsigned long long)st->e[i - 1].begin, (unsigned long long)st->e[i - 1].end);
            goto done;
        }
        if (e->begin > at) {
            rc = mtft__err(MTFT_EFORMAT, "%s: tensor '%s' begins at byte %llu of the data buffer, leaving a hole "
                           "after byte %llu",
                           p, e->name, (unsigned long long)e->begin, (unsigned long long)at);
            goto done;
        }
        at = e->end;
    }
    if (at != st->data_size) {
        rc = mtft__err(MTFT_EFORMAT,
                       "%s: the data buffer has %llu bytes but the tensors cover %llu (extra bytes at the end)", p,
                       (unsigned long long)st->data_size, (unsigned long long)at);
        goto done;
    }
    /* the name index was built before the offset sort: rebuild it */
    for (int i = 0; i < st->n; i++) st->by_name[i] = i;
    tmp = mtft__malloc(((size_t)st->n + 1) * sizeof *tmp);
    if (!tmp) {
        rc = MTFT_ENOMEM;
        goto done;
    }
    sort_names(st->e, st->by_name, tmp, st->n);
    mtft__free(tmp);
done:
    mtft_json__free(root);
    return rc;
}

int mtft_safetensors_open(mtft_safetensors **out, const char *path) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    MTFT_CHECK_ARG(path);
    if (!host_is_le())
        return mtft__err(MTFT_EUNSUPPORTED, "%s: safetensors needs a little-endian host", path);
    mtft_safetensors *st = mtft__calloc(1, sizeof *st);
    if (!st) return MTFT_ENOMEM;
    st->path = mtft__strdup(path);
    if (!st->path) {
        st_free(st);
        return MTFT_ENOMEM;
    }
    int rc = MTFT_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = mtft__err(errno == ENOENT ? MTFT_ENOTFOUND : MTFT_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        rc = mtft__err(MTFT_EIO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = mtft__err(MTFT_EIO, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        close(fd);
        rc = mtft__err(MTFT_EFORMAT, "%s: file has %llu bytes, fewer than the 8-byte header length", path,
                       (unsigned long long)size);
        goto fail;
    }
    if (size > (uint64_t)SIZE_MAX) {
        close(fd);
        rc = mtft__err(MTFT_EUNSUPPORTED, "%s: file too large to map", path);
        goto fail;
    }
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int merr = errno;
    close(fd);
    if (m == MAP_FAILED) {
        rc = mtft__err(MTFT_EIO, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                       strerror(merr));
        goto fail;
    }
    st->map = m;
    st->map_size = (size_t)size;
    st->header_len = le64(st->map);
    if (st->header_len > size - 8) {
        rc = mtft__err(MTFT_EFORMAT,
                       "%s: header length %llu exceeds the %llu bytes after the length field (truncated file, or "
                       "not a safetensors file)",
                       path, (unsigned long long)st->header_len, (unsigned long long)(size - 8));
        goto fail;
    }
    if (st->header_len > ST_MAX_HEADER) {
        rc = mtft__err(MTFT_EFORMAT, "%s: header length %llu is above the 100 MB limit", path,
                       (unsigned long long)st->header_len);
        goto fail;
    }
    if (st->header_len < 2) {
        rc = mtft__err(MTFT_EFORMAT, "%s: header length %llu is too small for a JSON object", path,
                       (unsigned long long)st->header_len);
        goto fail;
    }
    st->data = st->map + 8 + st->header_len;
    st->data_size = size - 8 - st->header_len;
    if ((rc = parse_header(st)) < 0) goto fail;
    *out = st;
    return MTFT_OK;
fail:
    st_free(st);
    return rc;
}

/* ---- access ------------------------------------------------------------------ */
const char *mtft_safetensors_path(const mtft_safetensors *st) { return st ? st->path : NULL; }
int mtft_safetensors_count(const mtft_safetensors *st) { return st ? st->n : 0; }
const char *mtft_safetensors_name(const mtft_safetensors *st, int i) {
    return (st && i >= 0 && i < st->n) ? st->e[i].name : NULL;
}

static int find_idx(const mtft_safetensors *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->e[st->by_name[mid]].name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int mtft_safetensors_find(const mtft_safetensors *st, const char *name) {
    MTFT_CHECK_ARG(st);
    MTFT_CHECK_ARG(name);
    int i = find_idx(st, name);
    if (i < 0) return mtft__err(MTFT_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
    return i;
}

int mtft_safetensors_info(const mtft_safetensors *st, int i, mtft_st_dtype *dtype, int *ndim,
                          int64_t shape[MTFT_SAFETENSORS_MAX_DIMS]) {
    MTFT_CHECK_ARG(st);
    if (i < 0 || i >= st->n)
        return mtft__err(MTFT_ERANGE, "%s: tensor index %d outside 0..%d", st->path, i, st->n - 1);
    const st_entry *e = &st->e[i];
    if (dtype) *dtype = e->dtype;
    if (ndim) *ndim = e->ndim;
    if (shape)
        for (int k = 0; k < e->ndim; k++) shape[k] = e->shape[k];
    return MTFT_OK;
}

const char *mtft_safetensors_metadata(const mtft_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_k[i], key) == 0) return st->meta_v[i];
    return NULL;
}

int mtft_safetensors_metadata_count(const mtft_safetensors *st) { return st ? st->n_meta : 0; }

int mtft_safetensors_metadata_at(const mtft_safetensors *st, int i, const char **key, const char **value) {
    MTFT_CHECK_ARG(st);
    if (i < 0 || i >= st->n_meta)
        return mtft__err(MTFT_ERANGE, "%s: metadata index %d outside 0..%d", st->path, i, st->n_meta - 1);
    if (key) *key = st->meta_k[i];
    if (value) *value = st->meta_v[i];
    return MTFT_OK;
}

const void *mtft_safetensors_data(const mtft_safetensors *st, int i, size_t *nbytes) {
    if (nbytes) *nbytes = 0;
    if (!st) {
        mtft__err(MTFT_EINVAL, "invalid argument: 'st' (%s)", __func__);
        return NULL;
    }
    if (i < 0 || i >= st->n) {
        mtft__err(MTFT_ERANGE, "%s: tensor index %d outside 0..%d", st->path, i, st->n - 1);
        return NULL;
    }
    const st_entry *e = &st->e[i];
    const unsigned char *ptr = st->data + e->begin;
    if ((uintptr_t)ptr % dtypes[e->dtype].size != 0) {
        mtft__err(MTFT_EUNSUPPORTED, "%s: tensor '%s': data at file offset %llu is not aligned to its %zu-byte %s "
                  "elements; use mtft_safetensors_read_f32",
                  st->path, e->name, (unsigned long long)(8 + st->header_len + e->begin), dtypes[e->dtype].size,
                  dtypes[e->dtype].name);
        return NULL;
    }
    if (nbytes) *nbytes = (size_t)(e->end - e->begin);
    return ptr;
}

static int convert(const st_entry *e, const unsigned char *src, float *dst, const char *path) {
    uint64_t n = (e->end - e->begin) / dtypes[e->dtype].size;
    switch (e->dtype) {
    case MTFT_ST_F32:
        if (n) memcpy(dst, src, (size_t)n * 4);
        return MTFT_OK;
    case MTFT_ST_F16:
    case MTFT_ST_BF16:
        for (uint64_t k = 0; k < n; k++) {
            uint16_t h = (uint16_t)(src[2 * k] | (src[2 * k + 1] << 8));
            dst[k] = e->dtype == MTFT_ST_F16 ? mtft_f16_to_f32(h) : mtft_bf16_to_f32(h);
        }
        return MTFT_OK;
    case MTFT_ST_F64:
        for (uint64_t k = 0; k < n; k++) {
            double d;
            memcpy(&d, src + 8 * k, sizeof d);
            dst[k] = f64_to_f32(d);
        }
        return MTFT_OK;
    default:
        return mtft__err(MTFT_EUNSUPPORTED, "%s: tensor '%s': dtype %s cannot be read as f32 (F32, F16, BF16, F64 can)",
                         path, e->name, dtypes[e->dtype].name);
    }
}

static int is_float_dtype(mtft_st_dtype d) {
    return d == MTFT_ST_F32 || d == MTFT_ST_F16 || d == MTFT_ST_BF16 || d == MTFT_ST_F64;
}

/* 1 when e has exactly the expected shape. */
static int shape_matches(const st_entry *e, int ndim, const int64_t *shape) {
    if (e->ndim != ndim) return 0;
    for (int k = 0; k < ndim; k++)
        if (e->shape[k] != shape[k]) return 0;
    return 1;
}

static int shape_error(const mtft_safetensors *st, const st_entry *e, int ndim, const int64_t *shape,
                       const char *what) {
    char a[160], b[160];
    shape_str(a, sizeof a, ndim, shape);
    shape_str(b, sizeof b, e->ndim, e->shape);
    return mtft__err(MTFT_ESHAPE, "%s: tensor '%s'%s: expected shape %s, file has %s", st->path, e->name, what, a,
                     b);
}

int mtft_safetensors_read_f32(const mtft_safetensors *st, const char *name, float *dst, int ndim,
                              const int64_t *expected_shape) {
    MTFT_CHECK_ARG(st);
    MTFT_CHECK_ARG(name);
    MTFT_CHECK_ARG(dst);
    MTFT_CHECK_ARG(ndim <= 0 || expected_shape);
    int i = find_idx(st, name);
    if (i < 0) return mtft__err(MTFT_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
    const st_entry *e = &st->e[i];
    if (ndim >= 0 && !shape_matches(e, ndim, expected_shape)) return shape_error(st, e, ndim, expected_shape, "");
    return convert(e, st->data + e->begin, dst, st->path);
}

/* ---- parameter groups ------------------------------------------------------ */
#define LIST_MAX 600

static void list_add(char *buf, size_t *o, int *listed, const char *name) {
    if (*o >= LIST_MAX - 8) {
        if (*listed >= 0) {
            snprintf(buf + *o, LIST_MAX - *o, ", ...");
            *o = LIST_MAX;
            *listed = -1;
        }
        return;
    }
    int w = snprintf(buf + *o, LIST_MAX - *o, "%s'%s'", *listed ? ", " : "", name);
    if (w < 0 || *o + (size_t)w >= LIST_MAX - 8) {
        buf[*o] = '\0';
        snprintf(buf + *o, LIST_MAX - *o, "%s...", *listed ? ", " : "");
        *o = LIST_MAX;
        *listed = -1;
        return;
    }
    *o += (size_t)w;
    (*listed)++;
}

int mtft_safetensors_load_group(const mtft_safetensors *st, mtft_param_group *pg, const char *prefix, int strict) {
    MTFT_CHECK_ARG(st);
    MTFT_CHECK_ARG(pg);
    if (!prefix) prefix = "";
    size_t plen = strlen(prefix);
    const char *gname = mtft_param_group_name(pg);
    int n = mtft_param_group_count(pg);
    char *full = NULL;
    size_t full_cap = 0;
    int *idx = mtft__malloc(((size_t)n + 1) * sizeof *idx);
    char *missing = mtft__malloc(LIST_MAX + 1);
    int rc = MTFT_OK, n_missing = 0, listed = 0, n_loaded = 0;
    size_t mo = 0;
    if (!idx || !missing) {
        rc = MTFT_ENOMEM;
        goto done;
    }
    missing[0] = '\0';
    /* pass 1: resolve and check everything before touching the group */
    for (int t = 0; t < n; t++) {
        mtft_tensor *x = mtft_param_group_tensor(pg, t);
        const char *tn = mtft_tensor_name(x);
        if (!mtft_tensor_data(x)) {
            rc = mtft__err(MTFT_ESTATE, "%s: group '%s': tensor '%s' has no data (call mtft_param_group_alloc first)",
                           st->path, gname, tn);
            goto done;
        }
        size_t need = plen + strlen(tn) + 1;
        if (need > full_cap) {
            char *nf = mtft__realloc(full, need);
            if (!nf) {
                rc = MTFT_ENOMEM;
                goto done;
            }
            full = nf;
            full_cap = need;
        }
        memcpy(full, prefix, plen);
        memcpy(full + plen, tn, strlen(tn) + 1);
        idx[t] = find_idx(st, full);
        if (idx[t] < 0) {
            n_missing++;
            list_add(missing, &mo, &listed, full);
            continue;
        }
        const st_entry *e = &st->e[idx[t]];
        int64_t shape[MTFT_MAX_DIMS];
        int nd = mtft_tensor_shape(x, shape);
        if (!shape_matches(e, nd, shape)) {
            char what[160];
            snprintf(what, sizeof what, " (for tensor '%s' of group '%s')", tn, gname);
            rc = shape_error(st, e, nd, shape, what);
            goto done;
        }
        if (!is_float_dtype(e->dtype)) {
            rc = mtft__err(MTFT_EUNSUPPORTED, "%s: tensor '%s' (for group '%s'): dtype %s cannot be read as f32",
                           st->path, e->name, gname, dtypes[e->dtype].name);
            goto done;
        }
    }
    if (strict && n_missing) {
        rc = mtft__err(MTFT_ENOTFOUND, "%s: group '%s': %d of %d tensors missing from the file (prefix '%s'): %s",
                       st->path, gname, n_missing, n, prefix, missing);
        goto done;
    }
    /* pass 2: load (contiguous parameter tensors, so a flat copy) */
    for (int t = 0; t < n; t++) {
        if (idx[t] < 0) continue;
        mtft_tensor *x = mtft_param_group_tensor(pg, t);
        const st_entry *e = &st->e[idx[t]];
        if ((rc = convert(e, st->data + e->begin, mtft_tensor_data(x), st->path)) < 0) goto done;
        n_loaded++;
    }
    /* file tensors under the prefix that nobody asked for */
    int n_unused = 0, ulisted = 0;
    size_t uo = 0;
    missing[0] = '\0';
    for (int i = 0; i < st->n; i++) {
        const char *fn = st->e[i].name;
        if (strncmp(fn, prefix, plen) != 0) continue;
        if (mtft_param_group_find(pg, fn + plen)) continue;
        n_unused++;
        list_add(missing, &uo, &ulisted, fn);
    }
    if (n_unused)
        mtft__log(MTFT_LOG_WARN, "%s: group '%s': loaded %d of %d tensors (prefix '%s'); %d missing; %d file tensors unused: %s",
                  st->path, gname, n_loaded, n, prefix, n_missing, n_unused, missing);
    else if (n_missing)
        mtft__log(MTFT_LOG_WARN, "%s: group '%s': loaded %d of %d tensors (prefix '%s'); %d missing", st->path,
                  gname, n_loaded, n, prefix, n_missing);
    else
        mtft__log(MTFT_LOG_DEBUG, "%s: group '%s': loaded %d tensors (prefix '%s')", st->path, gname, n_loaded,
                  prefix);
    rc = n_loaded;
done:
    mtft__free(full);
    mtft__free(idx);
    mtft__free(missing);
    return rc;
}

/* ---- writer ------------------------------------------------------------------- */
typedef struct w_entry {
    const char *name;
    int ndim;
    int64_t shape[MTFT_SAFETENSORS_MAX_DIMS];
    uint64_t nbytes;
    const float *raw; /* contiguous source, or */
    mtft_tensor *t;   /* a tensor (maybe strided) */
} w_entry;

static int write_all(int fd, const void *buf, size_t n, const char *tmp) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mtft__err(MTFT_EIO, "%s: write failed: %s", tmp, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return MTFT_OK;
}

/* Write a tensor's values in logical order, gathering strided views. */
#define W_CHUNK 4096
static int write_tensor(int fd, const w_entry *e, const char *tmp) {
    uint64_t numel = e->nbytes / 4;
    if (numel == 0) return MTFT_OK;
    if (e->raw) return write_all(fd, e->raw, (size_t)e->nbytes, tmp);
    const float *base = mtft_tensor_data(e->t);
    if (mtft_tensor_is_contiguous(e->t)) return write_all(fd, base, (size_t)e->nbytes, tmp);
    int nd = e->ndim;
    int64_t st[MTFT_MAX_DIMS], ix[MTFT_MAX_DIMS] = {0};
    for (int k = 0; k < nd; k++) st[k] = mtft_tensor_stride(e->t, k);
    float buf[W_CHUNK];
    int nb = 0;
    for (uint64_t c = 0; c < numel; c++) {
        int64_t off = 0;
        for (int k = 0; k < nd; k++) off += ix[k] * st[k];
        buf[nb++] = base[off];
        if (nb == W_CHUNK) {
            int rc = write_all(fd, buf, sizeof buf, tmp);
            if (rc < 0) return rc;
            nb = 0;
        }
        for (int k = nd - 1; k >= 0; k--) {
            if (++ix[k] < e->shape[k]) break;
            ix[k] = 0;
        }
    }
    return nb ? write_all(fd, buf, (size_t)nb * sizeof(float), tmp) : MTFT_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_names(const char *path, int n, const char *const *names) {
    const char **s = mtft__malloc(((size_t)n + 1) * sizeof *s);
    if (!s) return MTFT_ENOMEM;
    int rc = MTFT_OK;
    for (int i = 0; i < n; i++) {
        if (!names[i] || !names[i][0]) {
            rc = mtft__err(MTFT_EINVAL, "%s: tensor %d has an empty name", path, i);
            goto done;
        }
        if (strcmp(names[i], "__metadata__") == 0) {
            rc = mtft__err(MTFT_EINVAL, "%s: tensor %d: the name '__metadata__' is reserved", path, i);
            goto done;
        }
        s[i] = names[i];
    }
    qsort(s, (size_t)n, sizeof *s, cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (strcmp(s[i], s[i - 1]) == 0) {
            rc = mtft__err(MTFT_EINVAL, "%s: tensor name '%s' given twice", path, s[i]);
            goto done;
        }
done:
    mtft__free(s);
    return rc;
}

static int build_header(const char *path, int n, const w_entry *e, const char *const *meta_kv, char **out,
                        size_t *out_len) {
    char *b = NULL;
    size_t pos = 0, cap = 0;
    int rc = MTFT_OK;
    char num[96];
#define PUT(s)                                                                          \
    do {                                                                                \
        size_t l_ = strlen(s);                                                          \
        if (pos + l_ + 1 > cap) {                                                       \
            size_t nc_ = cap ? cap * 2 : 1024;                                          \
            while (nc_ < pos + l_ + 1) nc_ *= 2;                                        \
            char *nb_ = mtft__realloc(b, nc_);                                          \
            if (!nb_) { rc = MTFT_ENOMEM; goto fail; }                                  \
            b = nb_;                                                                    \
            cap = nc_;                                                                  \
        }                                                                               \
        memcpy(b + pos, s, l_ + 1);                                                     \
        pos += l_;                                                                      \
    } while (0)
#define QUOTE(s)                                                                        \
    do {                                                                                \
        if (mtft_json__append_quoted(&b, &pos, &cap, s) < 0) { rc = MTFT_ENOMEM; goto fail; } \
    } while (0)
    PUT("{");
    int first = 1;
    if (meta_kv && meta_kv[0]) {
        PUT("\"__metadata__\":{");
        for (int k = 0; meta_kv[k]; k += 2) {
            if (!meta_kv[k + 1]) {
                rc = mtft__err(MTFT_EINVAL, "%s: metadata key '%s' has no value", path, meta_kv[k]);
                goto fail;
            }
            for (int j = 0; j < k; j += 2)
                if (strcmp(meta_kv[j], meta_kv[k]) == 0) {
                    rc = mtft__err(MTFT_EINVAL, "%s: metadata key '%s' given twice", path, meta_kv[k]);
                    goto fail;
                }
            if (k) PUT(",");
            QUOTE(meta_kv[k]);
            PUT(":");
            QUOTE(meta_kv[k + 1]);
        }
        PUT("}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (!first) PUT(",");
        first = 0;
        QUOTE(e[i].name);
        PUT(":{\"dtype\":\"F32\",\"shape\":[");
        for (int k = 0; k < e[i].ndim; k++) {
            snprintf(num, sizeof num, k ? ",%lld" : "%lld", (long long)e[i].shape[k]);
            PUT(num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + e[i].nbytes));
        PUT(num);
        off += e[i].nbytes;
    }
    PUT("}");
    while (pos % 8) PUT(" "); /* the data starts at 8 + pos: keep it 8-aligned */
#undef PUT
#undef QUOTE
    *out = b;
    *out_len = pos;
    return MTFT_OK;
fail:
    mtft__free(b);
    return rc;
}

static int fsync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (!slash) dir = mtft__strdup(".");
    else if (slash == path) dir = mtft__strdup("/");
    else {
        dir = mtft__malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    if (!dir) return MTFT_ENOMEM;
    int rc = MTFT_OK;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = mtft__err(MTFT_EIO, "%s: cannot open directory '%s' to sync it: %s", path, dir, strerror(errno));
    } else {
        if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
            rc = mtft__err(MTFT_EIO, "%s: fsync of directory '%s' failed: %s", path, dir, strerror(errno));
        close(fd);
    }
    mtft__free(dir);
    return rc;
}

static int save_entries(const char *path, int n, const w_entry *e, const char *const *meta_kv) {
    char *hdr = NULL, *tmp = NULL;
    size_t hlen = 0;
    int fd = -1;
    int rc = build_header(path, n, e, meta_kv, &hdr, &hlen);
    if (rc < 0) return rc;
    size_t plen = strlen(path);
    tmp = mtft__malloc(plen + 5);
    if (!tmp) {
        rc = MTFT_ENOMEM;
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = mtft__err(MTFT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char lenb[8];
    for (int k = 0; k < 8; k++) lenb[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
    if ((rc = write_all(fd, lenb, 8, tmp)) < 0) goto done;
    if ((rc = write_all(fd, hdr, hlen, tmp)) < 0) goto done;
    for (int i = 0; i < n; i++)
        if ((rc = write_tensor(fd, &e[i], tmp)) < 0) goto done;
    if (fsync(fd) < 0) {
        rc = mtft__err(MTFT_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto done;
    }
    int cr = close(fd);
    fd = -1;
    if (cr < 0) {
        rc = mtft__err(MTFT_EIO, "%s: close failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) < 0) {
        rc = mtft__err(MTFT_EIO, "%s: cannot rename '%s' over it: %s", path, tmp, strerror(errno));
        goto done;
    }
    rc = fsync_dir(path);
    mtft__free(tmp);
    tmp = NULL;
done:
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        mtft__free(tmp);
    }
    mtft__free(hdr);
    return rc;
}

static int entry_size(const char *path, w_entry *e) {
    uint64_t numel = 1;
    for (int k = 0; k < e->ndim; k++) {
        if (e->shape[k] < 0)
            return mtft__err(MTFT_EINVAL, "%s: tensor '%s': negative size %lld in dim %d", path, e->name,
                             (long long)e->shape[k], k);
        if (e->shape[k] && numel > (UINT64_MAX / 8) / (uint64_t)e->shape[k])
            return mtft__err(MTFT_ERANGE, "%s: tensor '%s': too many elements", path, e->name);
        numel *= (uint64_t)e->shape[k];
    }
    e->nbytes = numel * 4;
    return MTFT_OK;
}

int mtft_safetensors_save(const char *path, int n, const char *const *names, mtft_tensor *const *tensors,
                          const char *const *meta_kv) {
    MTFT_CHECK_ARG(path);
    MTFT_CHECK_ARG(n >= 0);
    MTFT_CHECK_ARG(n == 0 || (names && tensors));
    int rc = check_names(path, n, names);
    if (rc < 0) return rc;
    w_entry *e = mtft__calloc((size_t)n + 1, sizeof *e);
    if (!e) return MTFT_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (!tensors[i] || !mtft_tensor_data(tensors[i])) {
            rc = mtft__err(MTFT_EINVAL, "%s: tensor '%s' is NULL or has no data", path, names[i]);
            goto done;
        }
        e[i].name = names[i];
        e[i].t = tensors[i];
        e[i].ndim = mtft_tensor_shape(tensors[i], e[i].shape);
        if ((rc = entry_size(path, &e[i])) < 0) goto done;
    }
    rc = save_entries(path, n, e, meta_kv);
done:
    mtft__free(e);
    return rc;
}

int mtft_safetensors_save_raw(const char *path, int n, const char *const *names, const float *const *data,
                              const int *ndims, const int64_t *const *shapes, const char *const *meta_kv) {
    MTFT_CHECK_ARG(path);
    MTFT_CHECK_ARG(n >= 0);
    MTFT_CHECK_ARG(n == 0 || (names && data && ndims && shapes));
    int rc = check_names(path, n, names);
    if (rc < 0) return rc;
    w_entry *e = mtft__calloc((size_t)n + 1, sizeof *e);
    if (!e) return MTFT_ENOMEM;
    for (int i = 0; i < n; i++) {
        e[i].name = names[i];
        if (ndims[i] < 0 || ndims[i] > MTFT_SAFETENSORS_MAX_DIMS || (ndims[i] > 0 && !shapes[i])) {
            rc = mtft__err(MTFT_EINVAL, "%s: tensor '%s': ndim %d outside 0..%d (or shape NULL)", path, names[i],
                           ndims[i], MTFT_SAFETENSORS_MAX_DIMS);
            goto done;
        }
        e[i].ndim = ndims[i];
        for (int k = 0; k < ndims[i]; k++) e[i].shape[k] = shapes[i][k];
        if ((rc = entry_size(path, &e[i])) < 0) goto done;
        if (e[i].nbytes && !data[i]) {
            rc = mtft__err(MTFT_EINVAL, "%s: tensor '%s': data is NULL", path, names[i]);
            goto done;
        }
        e[i].raw = data[i];
    }
    rc = save_entries(path, n, e, meta_kv);
done:
    mtft__free(e);
    return rc;
}
