/* ctest-labels: unit */
/* io: safetensors reader/writer (valid, PyTorch-written, and broken files,
 * the latter written byte by byte here), f16/bf16 conversion, parameter
 * group loading, HF config.json. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "io/json.h"
#include "mtft/io.h"
#include "mtft_test.h"

/* ---- temp dir and file helpers ---------------------------------------------------- */
static char g_dir[256];

static void tmp_setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mtft_check_io_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void tmp_teardown(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
        if (rmdir(p) != 0) unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

static const char *tmp(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", g_dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    if (n) ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A safetensors file: 8-byte LE length (hlen, or strlen(header) when
 * hlen == UINT64_MAX), the header text, then n_data bytes 0, 1, 2, ... */
static void write_st(const char *path, const char *header, uint64_t hlen, size_t n_data) {
    size_t hl = strlen(header);
    if (hlen == UINT64_MAX) hlen = hl;
    size_t total = 8 + hl + n_data;
    unsigned char *b = malloc(total);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(hlen >> (8 * k));
    memcpy(b + 8, header, hl);
    for (size_t k = 0; k < n_data; k++) b[8 + hl + k] = (unsigned char)k;
    write_bytes(path, b, total);
    free(b);
}

static void assert_msg_has(const char *needle) {
    const char *m = mtft_error_last()->message;
    ck_assert_msg(strstr(m, needle) != NULL, "error message '%s' lacks '%s'", m, needle);
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- f16 / bf16 ------------------------------------------------------------------- */
START_TEST(test_io_f16_known_bits) {
    static const struct {
        uint16_t h;
        uint32_t f;
    } cases[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000}, /* +-0 */
        {0x3C00, 0x3F800000}, {0xC000, 0xC0000000}, /* 1, -2 */
        {0x7BFF, 0x477FE000},                       /* 65504, largest finite */
        {0x0400, 0x38800000},                       /* 2^-14, smallest normal */
        {0x0001, 0x33800000}, {0x8001, 0xB3800000}, /* +-2^-24, smallest subnormal */
        {0x03FF, 0x387FC000},                       /* largest subnormal 1023 * 2^-24 */
        {0x0200, 0x38000000},                       /* 2^-15 */
        {0x3555, 0x3EAAA000},                       /* 0.333251953125 */
        {0x7C00, 0x7F800000}, {0xFC00, 0xFF800000}, /* +-inf */
        {0x7E00, 0x7FC00000},                       /* quiet NaN */
        {0x7C01, 0x7F802000},                       /* signalling NaN keeps its payload */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(bits_of(mtft_f16_to_f32(cases[i].h)) == cases[i].f, "f16 0x%04x -> 0x%08x, want 0x%08x",
                      cases[i].h, bits_of(mtft_f16_to_f32(cases[i].h)), cases[i].f);
    /* every half value against its definition, computed in double */
    for (uint32_t h = 0; h < 65536; h++) {
        int e = (h >> 10) & 31, m = h & 1023;
        float got = mtft_f16_to_f32((uint16_t)h);
        if (e == 31) {
            ck_assert(m ? isnan(got) : isinf(got));
            ck_assert_int_eq(signbit(got) != 0, (h & 0x8000) != 0);
            continue;
        }
        double v = e ? ldexp(1024.0 + m, e - 25) : ldexp((double)m, -24);
        if (h & 0x8000) v = -v;
        ck_assert_msg((double)got == v && (signbit(got) != 0) == ((h & 0x8000) != 0), "f16 0x%04x: %.9g vs %.9g", h,
                      (double)got, v);
    }
}
END_TEST

START_TEST(test_io_bf16_known_bits) {
    static const struct {
        uint16_t b;
        float f;
    } cases[] = {{0x3F80, 1.0f}, {0x4049, 3.140625f}, {0xC2F7, -123.5f}, {0x0000, 0.0f}, {0x4780, 65536.0f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_float_eq(mtft_bf16_to_f32(cases[i].b), cases[i].f);
    ck_assert_uint_eq(bits_of(mtft_bf16_to_f32(0x0001)), 0x00010000u); /* subnormal */
    ck_assert_uint_eq(bits_of(mtft_bf16_to_f32(0x8000)), 0x80000000u); /* -0 */
    ck_assert(isinf(mtft_bf16_to_f32(0x7F80)) && mtft_bf16_to_f32(0x7F80) > 0);
    ck_assert(isinf(mtft_bf16_to_f32(0xFF80)) && mtft_bf16_to_f32(0xFF80) < 0);
    ck_assert(isnan(mtft_bf16_to_f32(0x7FC0)));
    ck_assert_uint_eq(bits_of(mtft_bf16_to_f32(0xFF81)), 0xFF810000u); /* NaN payload */
}
END_TEST

/* ---- round trips -------------------------------------------------------------------- */
START_TEST(test_io_roundtrip_raw) {
    char path[512], tp[600];
    tmp(path, sizeof path, "raw.safetensors");
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-40f};
    float s = 42.0f;
    float big[2 * 1 * 3 * 1 * 2];
    mtft_test_fill(big, 12, 7, -1, 1);
    a[3] = NAN;
    const char *names[] = {"layer.a", "scalar", "five_d", "empty"};
    const float *data[] = {a, &s, big, NULL};
    int ndims[] = {2, 0, 5, 2};
    int64_t sa[] = {2, 3}, s5[] = {2, 1, 3, 1, 2}, se[] = {0, 4};
    const int64_t *shapes[] = {sa, NULL, s5, se};
    const char *meta[] = {"format", "pt", "note", "quote\" backslash\\ newline\n", NULL};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 4, names, data, ndims, shapes, meta), MTFT_OK);
    snprintf(tp, sizeof tp, "%s.tmp", path);
    ck_assert(!file_exists(tp));

    size_t fsz;
    unsigned char *raw = read_bytes(path, &fsz);
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = (hl << 8) | raw[k];
    ck_assert_uint_eq(hl % 8, 0);                      /* data 8-aligned */
    ck_assert_uint_eq(fsz, 8 + hl + (6 + 1 + 12) * 4); /* exact size */
    free(raw);

    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 4);
    for (int i = 0; i < 4; i++) ck_assert_str_eq(mtft_safetensors_name(st, i), names[i]); /* file order */
    ck_assert_ptr_null(mtft_safetensors_name(st, 4));
    ck_assert_int_eq(mtft_safetensors_find(st, "five_d"), 2);
    ck_assert_int_eq(mtft_safetensors_find(st, "nope"), MTFT_ENOTFOUND);
    assert_msg_has("'nope'");
    mtft_st_dtype dt;
    int nd;
    int64_t sh[MTFT_SAFETENSORS_MAX_DIMS];
    ck_assert_int_eq(mtft_safetensors_info(st, 2, &dt, &nd, sh), MTFT_OK);
    ck_assert_int_eq(dt, MTFT_ST_F32);
    ck_assert_int_eq(nd, 5);
    for (int k = 0; k < 5; k++) ck_assert_int_eq(sh[k], s5[k]);
    ck_assert_int_eq(mtft_safetensors_info(st, 1, NULL, &nd, NULL), MTFT_OK);
    ck_assert_int_eq(nd, 0);
    ck_assert_int_eq(mtft_safetensors_info(st, 9, NULL, NULL, NULL), MTFT_ERANGE);
    ck_assert_str_eq(mtft_safetensors_metadata(st, "format"), "pt");
    ck_assert_str_eq(mtft_safetensors_metadata(st, "note"), "quote\" backslash\\ newline\n");
    ck_assert_ptr_null(mtft_safetensors_metadata(st, "absent"));
    ck_assert_int_eq(mtft_safetensors_metadata_count(st), 2);

    float back[12];
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "layer.a", back, 2, sa), MTFT_OK);
    ck_assert_int_eq(memcmp(back, a, sizeof a), 0); /* bit-exact, NaN and -0 included */
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "scalar", back, 0, NULL), MTFT_OK);
    ck_assert_float_eq(back[0], 42.0f);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "five_d", back, -1, NULL), MTFT_OK);
    ck_assert_int_eq(memcmp(back, big, sizeof big), 0);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "empty", back, 2, se), MTFT_OK);

    /* zero-copy: the mapped bytes are the floats, aligned */
    size_t nb = 0;
    const float *z = mtft_safetensors_data(st, 2, &nb);
    ck_assert_ptr_nonnull(z);
    ck_assert_uint_eq(nb, sizeof big);
    ck_assert_uint_eq((uintptr_t)z % 4, 0);
    ck_assert_int_eq(memcmp(z, big, sizeof big), 0);
    ck_assert_ptr_nonnull(mtft_safetensors_data(st, 3, &nb));
    ck_assert_uint_eq(nb, 0);
    ck_assert_ptr_null(mtft_safetensors_data(st, -1, &nb));
    mtft_safetensors_close(st);
    mtft_safetensors_close(NULL);

    /* overwriting an existing file replaces it */
    const char *n1[] = {"only"};
    const float *d1[] = {&s};
    int nd1[] = {1};
    int64_t s1[] = {1};
    const int64_t *sh1[] = {s1};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 1, n1, d1, nd1, sh1, NULL), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 1);
    ck_assert_int_eq(mtft_safetensors_metadata_count(st), 0);
    mtft_safetensors_close(st);
}
END_TEST

START_TEST(test_io_roundtrip_tensors) {
    char path[512];
    tmp(path, sizeof path, "t.safetensors");
    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "base"), MTFT_OK);
    int64_t s1[] = {3, 4}, s2[] = {5};
    mtft_tensor *w = mtft_param_group_add(pg, "w", 2, s1);
    mtft_tensor *b = mtft_param_group_add(pg, "b", 1, s2);
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    mtft_test_fill(mtft_tensor_data(w), 12, 1, -2, 2);
    mtft_test_fill(mtft_tensor_data(b), 5, 2, -2, 2);
    mtft_graph *g = NULL;
    ck_assert_int_eq(mtft_graph_new(&g, NULL), MTFT_OK);
    mtft_tensor *wt = mtft_transpose(g, w, 0, 1); /* strided [4, 3] view */
    ck_assert_ptr_nonnull(wt);
    ck_assert(!mtft_tensor_is_contiguous(wt));
    const char *names[] = {"w", "b", "w_t"};
    mtft_tensor *ts[] = {w, b, wt};
    ck_assert_int_eq(mtft_safetensors_save(path, 3, names, ts, NULL), MTFT_OK);

    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
    float back[12];
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w", back, 2, s1), MTFT_OK);
    mtft_assert_close(back, mtft_tensor_data(w), 12, 0, 0, "w");
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "b", back, 1, s2), MTFT_OK);
    mtft_assert_close(back, mtft_tensor_data(b), 5, 0, 0, "b");
    int64_t st_shape[] = {4, 3};
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_t", back, 2, st_shape), MTFT_OK);
    const float *wd = mtft_tensor_data(w);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) ck_assert_float_eq(back[i * 3 + j], wd[j * 4 + i]);
    /* a wrong expected shape names the tensor and both shapes */
    int64_t bad[] = {3, 5};
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w", back, 2, bad), MTFT_ESHAPE);
    assert_msg_has("'w'");
    assert_msg_has("expected shape [3, 5]");
    assert_msg_has("file has [3, 4]");
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w", back, 1, s1), MTFT_ESHAPE);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "nope", back, -1, NULL), MTFT_ENOTFOUND);
    assert_msg_has("'nope'");
    mtft_safetensors_close(st);
    mtft_graph_free(g);
    mtft_param_group_free(pg);
}
END_TEST

START_TEST(test_io_save_errors) {
    char path[512], tp[600];
    tmp(path, sizeof path, "bad.safetensors");
    float x = 1;
    const float *d[] = {&x, &x};
    int nd[] = {1, 1};
    int64_t s1[] = {1};
    const int64_t *sh[] = {s1, s1};
    const char *dup[] = {"a", "a"};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 2, dup, d, nd, sh, NULL), MTFT_EINVAL);
    assert_msg_has("'a' given twice");
    const char *empty[] = {"a", ""};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 2, empty, d, nd, sh, NULL), MTFT_EINVAL);
    const char *reserved[] = {"__metadata__"};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 1, reserved, d, nd, sh, NULL), MTFT_EINVAL);
    const char *ok[] = {"a", "b"};
    const char *odd2[] = {"k", "v", "k2", NULL};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 2, ok, d, nd, sh, odd2), MTFT_EINVAL);
    assert_msg_has("'k2' has no value");
    const char *dupmeta[] = {"k", "v", "k", "w", NULL};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 2, ok, d, nd, sh, dupmeta), MTFT_EINVAL);
    int nd9[] = {9, 1};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 2, ok, d, nd9, sh, NULL), MTFT_EINVAL);
    ck_assert(!file_exists(path));
    /* a directory that does not exist */
    char nodir[512];
    tmp(nodir, sizeof nodir, "no/such/dir.safetensors");
    ck_assert_int_eq(mtft_safetensors_save_raw(nodir, 2, ok, d, nd, sh, NULL), MTFT_EIO);
    assert_msg_has("no/such/dir.safetensors.tmp");
    /* the target is a directory: rename fails, the temporary file is removed */
    char dirp[512];
    tmp(dirp, sizeof dirp, "adir");
    ck_assert_int_eq(mkdir(dirp, 0755), 0);
    ck_assert_int_eq(mtft_safetensors_save_raw(dirp, 2, ok, d, nd, sh, NULL), MTFT_EIO);
    assert_msg_has("rename");
    snprintf(tp, sizeof tp, "%s.tmp", dirp);
    ck_assert(!file_exists(tp));
    struct stat sb;
    ck_assert_int_eq(stat(dirp, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    /* zero tensors is a valid file */
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 0, NULL, NULL, NULL, NULL, NULL), MTFT_OK);
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 0);
    mtft_safetensors_close(st);
    ck_assert_int_eq(mtft_safetensors_save(NULL, 0, NULL, NULL, NULL), MTFT_EINVAL);
}
END_TEST

/* ---- a file written by PyTorch (tools/gen_io_fixtures.py) ------------------------------ */
static void assert_same_bits(const float *a, const float *b, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(bits_of(a[i]) == bits_of(b[i]), "%s[%d]: 0x%08x vs torch 0x%08x", what, i, bits_of(a[i]),
                      bits_of(b[i]));
}

START_TEST(test_io_torch_fixture) {
    char path[512];
    mtft_test_path(path, sizeof path, "tests/fixtures/io/torch_mixed.safetensors");
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 10);
    ck_assert_str_eq(mtft_safetensors_metadata(st, "format"), "pt");
    float a[20], r[20];
    int64_t s45[] = {4, 5}, s27[] = {2, 7}, s23[] = {2, 3}, s34[] = {3, 4};
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_f16", a, 2, s45), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_f16_ref", r, 2, s45), MTFT_OK);
    assert_same_bits(a, r, 20, "w_f16");
    int n_inf = 0, n_nan = 0, n_sub = 0;
    for (int i = 0; i < 20; i++) {
        n_inf += isinf(a[i]) != 0;
        n_nan += isnan(a[i]) != 0;
        n_sub += a[i] != 0 && fabsf(a[i]) < 6.1035156e-05f;
    }
    ck_assert_int_eq(n_inf, 2);
    ck_assert_int_eq(n_nan, 1);
    ck_assert_int_ge(n_sub, 2); /* 2^-24, 6e-5, -3e-7 are f16 subnormals */
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_bf16", a, 2, s27), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_bf16_ref", r, 2, s27), MTFT_OK);
    assert_same_bits(a, r, 14, "w_bf16");
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_f64", a, 2, s23), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_f64_ref", r, 2, s23), MTFT_OK);
    assert_same_bits(a, r, 6, "w_f64");
    ck_assert(isinf(a[5])); /* 1e300 */
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_f32", a, 2, s34), MTFT_OK);
    size_t nb;
    const float *z = mtft_safetensors_data(st, mtft_safetensors_find(st, "w_f32"), &nb);
    ck_assert_uint_eq(nb, 48);
    ck_assert_int_eq(memcmp(z, a, 48), 0);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "scalar", a, 0, NULL), MTFT_OK);
    ck_assert_float_eq(a[0], 2.75f);
    mtft_st_dtype dt;
    int nd;
    int64_t sh[8];
    ck_assert_int_eq(mtft_safetensors_info(st, mtft_safetensors_find(st, "ids_i32"), &dt, &nd, sh), MTFT_OK);
    ck_assert_int_eq(dt, MTFT_ST_I32);
    ck_assert_str_eq(mtft_st_dtype_name(dt), "I32");
    ck_assert_uint_eq(mtft_st_dtype_size(dt), 4);
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "ids_i32", a, -1, NULL), MTFT_EUNSUPPORTED);
    assert_msg_has("'ids_i32'");
    assert_msg_has("I32");
    const int32_t *ids = mtft_safetensors_data(st, mtft_safetensors_find(st, "ids_i32"), &nb);
    ck_assert_uint_eq(nb, 24);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(ids[i], i);
    mtft_safetensors_close(st);
}
END_TEST

/* ---- broken files -------------------------------------------------------------------- */
typedef struct bad_case {
    const char *header;
    uint64_t hlen; /* UINT64_MAX: strlen(header) */
    size_t n_data;
    int code;
    const char *needle1, *needle2;
} bad_case;

#define T1(a, b) "{\"" a "\":{\"dtype\":\"F32\",\"shape\":[" b "]"

START_TEST(test_io_corrupt_headers) {
    static const bad_case cases[] = {
        /* header length beyond the file */
        {"{}", 1000, 0, MTFT_EFORMAT, "header length 1000 exceeds", "truncated"},
        {"{}", UINT64_MAX - 3, 0, MTFT_EFORMAT, "exceeds", NULL},
        /* not JSON / not an object */
        {"{\"a\":{\"dtype\":\"F32\",,\"shape\":[]}}", UINT64_MAX, 0, MTFT_EFORMAT, "not valid JSON",
         "before header byte 21 (file offset 29"},
        {"{\"a\":1} x", UINT64_MAX, 0, MTFT_EFORMAT, "not valid JSON", "header byte 8"},
        {"[1, 2]", UINT64_MAX, 0, MTFT_EFORMAT, "must be a JSON object", "array"},
        {"{\"a\":5}", UINT64_MAX, 0, MTFT_EFORMAT, "tensor 'a'", "must be an object, got number"},
        /* fields */
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT, "tensor 'a'",
         "missing field 'dtype'"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT, "tensor 'a'",
         "missing field 'shape'"},
        {T1("a", "1") "}}", UINT64_MAX, 4, MTFT_EFORMAT, "tensor 'a'", "missing field 'data_offsets'"},
        {"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT, "'dtype'",
         "must be a string, got number"},
        {"{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT,
         "tensor 'a'", "unknown dtype 'F17'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT,
         "'shape' must be an array", NULL},
        {T1("a", "-1") ",\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT, "tensor 'a'",
         "shape[0] must be a non-negative integer"},
        {T1("a", "1,2.5") ",\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT, "shape[1]", NULL},
        {T1("a", "1,1,1,1,1,1,1,1,1") ",\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT, "9 dims",
         "more than the 8"},
        {T1("a", "1") ",\"data_offsets\":[0,4,8]}}", UINT64_MAX, 4, MTFT_EFORMAT, "[begin, end]", NULL},
        {T1("a", "1") ",\"data_offsets\":[0,\"4\"]}}", UINT64_MAX, 4, MTFT_EFORMAT, "non-negative integers", NULL},
        {T1("a", "0") ",\"data_offsets\":[4,0]}}", UINT64_MAX, 4, MTFT_EFORMAT, "end before they begin", NULL},
        /* sizes */
        {T1("w", "2,3") ",\"data_offsets\":[0,20]}}", UINT64_MAX, 20, MTFT_EFORMAT, "tensor 'w': shape [2, 3]",
         "needs 24 bytes but data_offsets [0, 20] hold 20"},
        {T1("w", "4294967296,4294967296,16") ",\"data_offsets\":[0,4]}}", UINT64_MAX, 4, MTFT_EFORMAT,
         "needs more than", NULL},
        {T1("w", "2,3") ",\"data_offsets\":[0,24]}}", UINT64_MAX, 16, MTFT_EFORMAT, "tensor 'w'",
         "extend past the end of the data buffer (16 bytes): file truncated?"},
        /* layout */
        {T1("a", "4") ",\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
         UINT64_MAX, 24, MTFT_EFORMAT, "tensor 'b' (bytes [8, 24]) overlaps tensor 'a'", NULL},
        {T1("a", "2") ",\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
         UINT64_MAX, 24, MTFT_EFORMAT, "tensor 'b' begins at byte 16", "hole"},
        {T1("a", "2") ",\"data_offsets\":[0,8]}}", UINT64_MAX, 12, MTFT_EFORMAT, "has 12 bytes",
         "cover 8"},
        {T1("a", "2") ",\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         UINT64_MAX, 16, MTFT_EFORMAT, "tensor 'a' appears twice", NULL},
        /* metadata */
        {"{\"__metadata__\":{\"k\":1}}", UINT64_MAX, 0, MTFT_EFORMAT, "'__metadata__': value of 'k'",
         "must be a string, got number"},
        {"{\"__metadata__\":[\"k\"]}", UINT64_MAX, 0, MTFT_EFORMAT, "'__metadata__' must be an object", NULL},
    };
    char path[512];
    tmp(path, sizeof path, "bad.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        write_st(path, c->header, c->hlen, c->n_data);
        mtft_safetensors *st = (mtft_safetensors *)1;
        int rc = mtft_safetensors_open(&st, path);
        ck_assert_msg(rc == c->code, "case %zu (%s): rc %d, want %d (%s)", i, c->header, rc, c->code,
                      mtft_error_last()->message);
        ck_assert_ptr_null(st);
        const char *m = mtft_error_last()->message;
        ck_assert_msg(strstr(m, path) != NULL, "case %zu: message '%s' does not name the file", i, m);
        ck_assert_msg(strstr(m, c->needle1) != NULL, "case %zu: message '%s' lacks '%s'", i, m, c->needle1);
        if (c->needle2)
            ck_assert_msg(strstr(m, c->needle2) != NULL, "case %zu: message '%s' lacks '%s'", i, m, c->needle2);
    }
    /* shorter than the length field; missing file */
    write_bytes(path, "\x02\x00\x00", 3);
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_EFORMAT);
    assert_msg_has("fewer than the 8-byte header length");
    char missing[512];
    tmp(missing, sizeof missing, "missing.safetensors");
    ck_assert_int_eq(mtft_safetensors_open(&st, missing), MTFT_ENOTFOUND);
    assert_msg_has("missing.safetensors");
    /* a NUL inside the header */
    write_bytes(path, "\x04\0\0\0\0\0\0\0{\0}x", 12);
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_EFORMAT);
    assert_msg_has("header byte 1 ");
    /* valid: header padded with spaces, a zero-size tensor between two others, unknown extra fields */
    write_st(path,
             T1("a", "1") ",\"data_offsets\":[0,4]},\"z\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                          "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8],\"extra\":true}}      ",
             UINT64_MAX, 8);
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_count(st), 3);
    ck_assert_str_eq(mtft_safetensors_name(st, 0), "a");
    ck_assert_str_eq(mtft_safetensors_name(st, 1), "z");
    ck_assert_str_eq(mtft_safetensors_name(st, 2), "b");
    float v[2];
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "b", v, -1, NULL), MTFT_OK);
    ck_assert_float_eq(v[0], mtft_f16_to_f32(0x0504)); /* data bytes 4,5 then 6,7 (little endian) */
    ck_assert_float_eq(v[1], mtft_f16_to_f32(0x0706));
    mtft_safetensors_close(st);
}
END_TEST

/* Every truncation of a valid file fails cleanly, and random byte changes in
 * the header never crash (ASan/UBSan builds check the memory side). */
START_TEST(test_io_truncation_and_fuzz) {
    char path[512], cut[512];
    tmp(path, sizeof path, "good.safetensors");
    tmp(cut, sizeof cut, "cut.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    const char *names[] = {"a", "b"};
    const float *d[] = {a, b};
    int nd[] = {2, 1};
    int64_t sa[] = {2, 3}, sb[] = {2};
    const int64_t *sh[] = {sa, sb};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 2, names, d, nd, sh, NULL), MTFT_OK);
    size_t n;
    unsigned char *good = read_bytes(path, &n);
    mtft_safetensors *st = NULL;
    for (size_t len = 0; len < n; len++) {
        write_bytes(cut, good, len);
        ck_assert_msg(mtft_safetensors_open(&st, cut) == MTFT_EFORMAT, "truncated to %zu bytes: opened", len);
        ck_assert_ptr_null(st);
        ck_assert(mtft_error_last()->message[0] != '\0');
    }
    mtft_rng rng;
    mtft_rng_seed(&rng, 99);
    unsigned char *mut = malloc(n);
    int n_ok = 0, n_err = 0;
    for (int it = 0; it < 600; it++) {
        memcpy(mut, good, n);
        int flips = 1 + (int)mtft_rng_below(&rng, 3);
        for (int f = 0; f < flips; f++) {
            size_t pos = 8 + (size_t)mtft_rng_below(&rng, n - 8 - 32); /* inside the header */
            mut[pos] = (unsigned char)mtft_rng_below(&rng, 256);
        }
        write_bytes(cut, mut, n);
        int rc = mtft_safetensors_open(&st, cut);
        if (rc == MTFT_OK) {
            n_ok++;
            /* whatever was accepted tiles the data buffer, and its bytes are readable */
            uint64_t hl = 0, total = 0;
            for (int k = 7; k >= 0; k--) hl = (hl << 8) | mut[k];
            for (int i = 0; i < mtft_safetensors_count(st); i++) {
                size_t nb = 0;
                const volatile unsigned char *p = mtft_safetensors_data(st, i, &nb);
                if (p && nb) (void)p[nb - 1];
                total += nb;
            }
            ck_assert_uint_eq(total, n - 8 - hl);
            mtft_safetensors_close(st);
        } else {
            n_err++;
            ck_assert_ptr_null(st);
            ck_assert(rc < 0 && mtft_error_last()->message[0] != '\0');
        }
    }
    ck_assert_int_gt(n_err, 0);
    ck_assert_int_eq(n_ok + n_err, 600);
    free(mut);
    free(good);
}
END_TEST

/* ---- parameter groups ---------------------------------------------------------------- */
typedef struct log_capture {
    int n_warn;
    char last[1024];
} log_capture;

static void capture(mtft_log_level level, const char *msg, void *payload) {
    log_capture *c = payload;
    if (level == MTFT_LOG_WARN) {
        c->n_warn++;
        snprintf(c->last, sizeof c->last, "%s", msg);
    }
}

START_TEST(test_io_load_group) {
    char path[512];
    tmp(path, sizeof path, "group.safetensors");
    float wte[12], lnw[3], extra[2] = {9, 9}, other[1] = {5};
    mtft_test_fill(wte, 12, 3, -1, 1);
    mtft_test_fill(lnw, 3, 4, -1, 1);
    const char *names[] = {"model.wte", "model.ln.w", "model.extra", "other.x"};
    const float *d[] = {wte, lnw, extra, other};
    int nd[] = {2, 1, 1, 1};
    int64_t s1[] = {4, 3}, s2[] = {3}, s3[] = {2}, s4[] = {1};
    const int64_t *sh[] = {s1, s2, s3, s4};
    ck_assert_int_eq(mtft_safetensors_save_raw(path, 4, names, d, nd, sh, NULL), MTFT_OK);
    mtft_safetensors *st = NULL;
    ck_assert_int_eq(mtft_safetensors_open(&st, path), MTFT_OK);

    mtft_param_group *pg = NULL;
    ck_assert_int_eq(mtft_param_group_new(&pg, "base"), MTFT_OK);
    mtft_tensor *t1 = mtft_param_group_add(pg, "wte", 2, s1);
    mtft_tensor *t2 = mtft_param_group_add(pg, "ln.w", 1, s2);
    ck_assert_int_eq(mtft_safetensors_load_group(st, pg, "model.", 1), MTFT_ESTATE); /* not allocated */
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);

    log_capture cap = {0, ""};
    mtft_log_set(capture, &cap);
    ck_assert_int_eq(mtft_safetensors_load_group(st, pg, "model.", 1), 2);
    mtft_log_set(NULL, NULL);
    mtft_assert_close(mtft_tensor_data(t1), wte, 12, 0, 0, "wte");
    mtft_assert_close(mtft_tensor_data(t2), lnw, 3, 0, 0, "ln.w");
    ck_assert_int_eq(cap.n_warn, 1); /* model.extra is unused, other.x is outside the prefix */
    ck_assert_ptr_nonnull(strstr(cap.last, "'model.extra'"));
    ck_assert_ptr_null(strstr(cap.last, "other.x"));
    ck_assert_ptr_nonnull(strstr(cap.last, "1 file tensors unused"));
    mtft_param_group_free(pg);

    /* a group tensor missing from the file */
    ck_assert_int_eq(mtft_param_group_new(&pg, "base"), MTFT_OK);
    t1 = mtft_param_group_add(pg, "wte", 2, s1);
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "head.w", 1, s2));
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "head.b", 1, s2));
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    mtft_log_set(capture, &cap);
    ck_assert_int_eq(mtft_safetensors_load_group(st, pg, "model.", 1), MTFT_ENOTFOUND);
    assert_msg_has("2 of 3 tensors missing");
    assert_msg_has("'model.head.w', 'model.head.b'");
    assert_msg_has("group 'base'");
    for (int i = 0; i < 12; i++) ck_assert_float_eq(mtft_tensor_data(t1)[i], 0.0f); /* nothing loaded */
    ck_assert_int_eq(mtft_safetensors_load_group(st, pg, "model.", 0), 1);
    mtft_log_set(NULL, NULL);
    mtft_assert_close(mtft_tensor_data(t1), wte, 12, 0, 0, "wte non-strict");
    ck_assert_ptr_nonnull(strstr(cap.last, "2 missing"));
    mtft_param_group_free(pg);

    /* a shape mismatch is an error in both modes */
    ck_assert_int_eq(mtft_param_group_new(&pg, "base"), MTFT_OK);
    int64_t wrong[] = {3, 4};
    ck_assert_ptr_nonnull(mtft_param_group_add(pg, "wte", 2, wrong));
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    ck_assert_int_eq(mtft_safetensors_load_group(st, pg, "model.", 0), MTFT_ESHAPE);
    assert_msg_has("'model.wte'");
    assert_msg_has("expected shape [3, 4], file has [4, 3]");
    mtft_param_group_free(pg);
    mtft_safetensors_close(st);

    /* conversion from the PyTorch bf16 tensor, no prefix */
    char fx[512];
    mtft_test_path(fx, sizeof fx, "tests/fixtures/io/torch_mixed.safetensors");
    ck_assert_int_eq(mtft_safetensors_open(&st, fx), MTFT_OK);
    ck_assert_int_eq(mtft_param_group_new(&pg, "head"), MTFT_OK);
    int64_t s27[] = {2, 7};
    t1 = mtft_param_group_add(pg, "w_bf16", 2, s27);
    ck_assert_int_eq(mtft_param_group_alloc(pg), MTFT_OK);
    mtft_log_set_level(MTFT_LOG_ERROR); /* many unused tensors here */
    ck_assert_int_eq(mtft_safetensors_load_group(st, pg, NULL, 1), 1);
    mtft_log_set_level(MTFT_LOG_INFO);
    float ref[14];
    ck_assert_int_eq(mtft_safetensors_read_f32(st, "w_bf16_ref", ref, 2, s27), MTFT_OK);
    assert_same_bits(mtft_tensor_data(t1), ref, 14, "w_bf16 via group");
    mtft_param_group_free(pg);
    mtft_safetensors_close(st);
}
END_TEST

/* ---- HF config.json ------------------------------------------------------------------- */
static int load_cfg_text(mtft_hf_config *c, const char *text) {
    char path[512];
    tmp(path, sizeof path, "config.json");
    write_bytes(path, text, strlen(text));
    return mtft_hf_config_load(c, path);
}

START_TEST(test_io_hf_config_files) {
    char path[512];
    mtft_hf_config c;
    ck_assert_int_eq(mtft_hf_config_load(&c, mtft_test_path(path, sizeof path, "tests/fixtures/io/gpt2_config.json")),
                     MTFT_OK);
    ck_assert_str_eq(c.model_type, "gpt2");
    ck_assert_int_eq(c.arch, MTFT_HF_ARCH_GPT2);
    ck_assert_int_eq(c.vocab_size, 50257);
    ck_assert_int_eq(c.hidden_size, 768);
    ck_assert_int_eq(c.intermediate_size, 3072); /* n_inner absent: 4 * n_embd */
    ck_assert_int_eq(c.num_hidden_layers, 12);
    ck_assert_int_eq(c.num_attention_heads, 12);
    ck_assert_int_eq(c.num_key_value_heads, 12);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.max_position_embeddings, 1024);
    ck_assert_double_eq_tol(c.norm_eps, 1e-5, 1e-12);
    ck_assert_str_eq(c.hidden_act, "gelu_new");
    ck_assert_int_eq(c.tie_word_embeddings, 1);
    ck_assert_int_eq(c.attention_bias, 1);
    ck_assert_float_eq_tol(c.attn_pdrop, 0.1f, 1e-7f);
    ck_assert_int_eq(c.eos_token_id, 50256);
    ck_assert_int_eq(c.pad_token_id, -1);
    ck_assert_double_eq(c.rope_theta, 0.0);

    ck_assert_int_eq(
        mtft_hf_config_load(&c, mtft_test_path(path, sizeof path, "tests/fixtures/io/tinyllama_config.json")), MTFT_OK);
    ck_assert_str_eq(c.model_type, "llama");
    ck_assert_int_eq(c.arch, MTFT_HF_ARCH_LLAMA);
    ck_assert_int_eq(c.hidden_size, 2048);
    ck_assert_int_eq(c.intermediate_size, 5632);
    ck_assert_int_eq(c.num_hidden_layers, 22);
    ck_assert_int_eq(c.num_attention_heads, 32);
    ck_assert_int_eq(c.num_key_value_heads, 4);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_double_eq_tol(c.norm_eps, 1e-5, 1e-12);
    ck_assert_double_eq(c.rope_theta, 10000.0);
    ck_assert_int_eq(c.tie_word_embeddings, 0);
    ck_assert_int_eq(c.attention_bias, 0);
    ck_assert_str_eq(c.hidden_act, "silu");
    ck_assert_str_eq(c.rope_scaling_type, "");
    ck_assert_double_eq(c.rope_scaling_factor, 1.0);
    ck_assert_int_eq(c.bos_token_id, 1);

    ck_assert_int_eq(mtft_hf_config_load(&c, mtft_test_path(path, sizeof path, "tests/fixtures/io/qwen2_config.json")),
                     MTFT_OK);
    ck_assert_str_eq(c.model_type, "qwen2");
    ck_assert_int_eq(c.hidden_size, 896);
    ck_assert_int_eq(c.num_key_value_heads, 2);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.attention_bias, 1); /* q, k, v biases */
    ck_assert_int_eq(c.tie_word_embeddings, 1);
    ck_assert_int_eq(c.sliding_window, 0); /* use_sliding_window false */
    ck_assert_double_eq(c.rope_theta, 1000000.0);
    ck_assert_int_eq(c.vocab_size, 151936);
    ck_assert_int_eq(c.eos_token_id, 151643);
}
END_TEST

START_TEST(test_io_hf_config_defaults) {
    mtft_hf_config c;
    ck_assert_int_eq(load_cfg_text(&c, "{\"model_type\": \"llama\"}"), MTFT_OK);
    ck_assert_int_eq(c.vocab_size, 32000);
    ck_assert_int_eq(c.hidden_size, 4096);
    ck_assert_int_eq(c.intermediate_size, 11008);
    ck_assert_int_eq(c.num_hidden_layers, 32);
    ck_assert_int_eq(c.num_key_value_heads, 32);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.max_position_embeddings, 2048);
    ck_assert_double_eq_tol(c.norm_eps, 1e-6, 1e-15);
    ck_assert_int_eq(c.sliding_window, 0);
    ck_assert_int_eq(load_cfg_text(&c, "{\"model_type\": \"mistral\"}"), MTFT_OK);
    ck_assert_int_eq(c.num_key_value_heads, 8);
    ck_assert_int_eq(c.intermediate_size, 14336);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert_int_eq(c.sliding_window, 4096);
    ck_assert_int_eq(load_cfg_text(&c, "{\"model_type\": \"mistral\", \"sliding_window\": null, "
                                       "\"num_key_value_heads\": null}"),
                     MTFT_OK);
    ck_assert_int_eq(c.sliding_window, 0);
    ck_assert_int_eq(c.num_key_value_heads, 32);
    ck_assert_int_eq(load_cfg_text(&c, "{\"model_type\": \"gpt2\", \"n_embd\": 64, \"n_head\": 4, \"n_inner\": null,"
                                       " \"tie_word_embeddings\": false}"),
                     MTFT_OK);
    ck_assert_int_eq(c.intermediate_size, 256);
    ck_assert_int_eq(c.head_dim, 16);
    ck_assert_int_eq(c.tie_word_embeddings, 0);
    ck_assert_int_eq(c.vocab_size, 50257);
    /* LLaMA 3 style: eos list, rope scaling, explicit head_dim */
    ck_assert_int_eq(load_cfg_text(&c, "{\"model_type\": \"llama\", \"hidden_size\": 2048, \"num_attention_heads\": 32,"
                                       " \"num_key_value_heads\": 8, \"head_dim\": 64, \"eos_token_id\": [128001, 128008],"
                                       " \"rope_scaling\": {\"factor\": 32.0, \"rope_type\": \"llama3\"},"
                                       " \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"mlp_bias\": false}"),
                     MTFT_OK);
    ck_assert_int_eq(c.eos_token_id, 128001);
    ck_assert_str_eq(c.rope_scaling_type, "llama3");
    ck_assert_double_eq(c.rope_scaling_factor, 32.0);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_double_eq(c.rope_theta, 500000.0);
}
END_TEST

START_TEST(test_io_hf_config_errors) {
    static const struct {
        const char *text;
        int code;
        const char *needle1, *needle2;
    } cases[] = {
        {"{\n  \"model_type\": \"gpt2\",\n  \"n_embd\": \"768\"\n}", MTFT_EFORMAT, "config.json:3:3: key 'n_embd'",
         "expected an integer, got string"},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 12.5}", MTFT_EFORMAT, ":1:24: key 'n_layer'", "an integer"},
        {"{\"model_type\": \"llama\",\n \"tie_word_embeddings\": \"yes\"}", MTFT_EFORMAT,
         ":2:2: key 'tie_word_embeddings'", "expected a boolean"},
        {"{\"model_type\": \"llama\", \"rms_norm_eps\": [1]}", MTFT_EFORMAT, "key 'rms_norm_eps'",
         "expected a number, got array"},
        {"{\"model_type\": \"llama\", \"hidden_act\": 3}", MTFT_EFORMAT, "key 'hidden_act'", "expected a string"},
        {"{\"model_type\": \"llama\", \"rope_scaling\": 2}", MTFT_EFORMAT, "key 'rope_scaling'", "an object or null"},
        {"{\"model_type\": \"llama\", \"eos_token_id\": [1, \"x\"]}", MTFT_EFORMAT, "key 'eos_token_id'",
         "list of integers"},
        {"{\"n_embd\": 768}", MTFT_EFORMAT, "key 'model_type': missing", NULL},
        {"{\"model_type\": 2}", MTFT_EFORMAT, "key 'model_type'", "expected a string, got number"},
        {"{\"model_type\": \"bert\"}", MTFT_EUNSUPPORTED, "'bert' is not supported", "gpt2, llama"},
        {"{\n\"model_type\": \"gpt2\"\n\"n_embd\": 768}", MTFT_EFORMAT, "config.json:3:1: invalid JSON", NULL},
        {"[]", MTFT_EFORMAT, "expected a JSON object, got array", NULL},
        {"", MTFT_EFORMAT, "invalid JSON", NULL},
        {"{\"model_type\": \"gpt2\", \"n_embd\": 768, \"n_head\": 7}", MTFT_ERANGE, "key 'n_head'",
         "7 heads do not divide hidden size 768"},
        {"{\"model_type\": \"llama\", \"num_key_value_heads\": 5}", MTFT_ERANGE, "key 'num_key_value_heads'",
         "5 key/value heads do not divide 32"},
        {"{\"model_type\": \"llama\", \"num_hidden_layers\": 0}", MTFT_ERANGE, "key 'num_hidden_layers'", "> 0"},
        {"{\"model_type\": \"llama\", \"rms_norm_eps\": 0}", MTFT_ERANGE, "key 'rms_norm_eps'", NULL},
        {"{\"model_type\": \"gpt2\", \"resid_pdrop\": 1.5}", MTFT_ERANGE, "key 'resid_pdrop'", "[0, 1)"},
        {"{\"model_type\": \"gpt2\", \"activation_function\": \"a_very_long_activation_function_name\"}",
         MTFT_ERANGE, "key 'activation_function'", "longer than 31"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mtft_hf_config c;
        memset(&c, 0x5A, sizeof c);
        int rc = load_cfg_text(&c, cases[i].text);
        const char *m = mtft_error_last()->message;
        ck_assert_msg(rc == cases[i].code, "case %zu: rc %d want %d (%s)", i, rc, cases[i].code, m);
        ck_assert_msg(strstr(m, cases[i].needle1) != NULL, "case %zu: '%s' lacks '%s'", i, m, cases[i].needle1);
        if (cases[i].needle2)
            ck_assert_msg(strstr(m, cases[i].needle2) != NULL, "case %zu: '%s' lacks '%s'", i, m, cases[i].needle2);
        ck_assert_msg(strstr(m, "config.json") != NULL, "case %zu: '%s' does not name the file", i, m);
        ck_assert_int_eq(c.model_type[0], 0); /* zeroed on error */
        ck_assert_int_eq(c.hidden_size, 0);
    }
    mtft_hf_config c;
    char path[512];
    ck_assert_int_eq(mtft_hf_config_load(&c, tmp(path, sizeof path, "absent.json")), MTFT_EIO);
    assert_msg_has("absent.json");
    ck_assert_int_eq(mtft_hf_config_load(NULL, path), MTFT_EINVAL);
}
END_TEST


/* ---- the internal JSON layer (src/io/json.h) ------------------------------------------ */
START_TEST(test_io_json_internal) {
    const char *text = "{\"a\": [1, 2.5, \"x\"],\n \"b\": {\"a\": true}, \"n\": null, \"big\": 1e300}  \n";
    size_t eo = 99;
    mtft_json *j = mtft_json__parse(text, strlen(text), &eo);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(mtft_json__type(j), MTFT_JSON_OBJECT);
    ck_assert_int_eq(mtft_json__size(j), 4);
    const mtft_json *a = mtft_json__get(j, "a");
    ck_assert_int_eq(mtft_json__size(a), 3);
    int64_t v = 0;
    ck_assert(mtft_json__int(mtft_json__at(a, 0), &v) && v == 1);
    ck_assert(!mtft_json__int(mtft_json__at(a, 1), &v));
    ck_assert_double_eq(mtft_json__number(mtft_json__at(a, 1)), 2.5);
    ck_assert_str_eq(mtft_json__string(mtft_json__at(a, 2)), "x");
    ck_assert_ptr_null(mtft_json__string(mtft_json__at(a, 0)));
    ck_assert(mtft_json__bool(mtft_json__get(mtft_json__get(j, "b"), "a")));
    ck_assert_int_eq(mtft_json__type(mtft_json__get(j, "n")), MTFT_JSON_NULL);
    ck_assert(!mtft_json__int(mtft_json__get(j, "big"), &v)); /* beyond 2^53 */
    ck_assert_ptr_null(mtft_json__get(j, "zz"));
    ck_assert_str_eq(mtft_json__type_name(mtft_json__get(j, "zz")), "missing");
    ck_assert_str_eq(mtft_json__key(mtft_json__next(mtft_json__first(j))), "b");
    /* the top-level "a", not the nested one; line 2 col 2 for "b" */
    ck_assert_uint_eq(mtft_json__find_key(text, strlen(text), "a"), 1);
    size_t ob = mtft_json__find_key(text, strlen(text), "b");
    int line, col;
    mtft_json__line_col(text, strlen(text), ob, &line, &col);
    ck_assert_int_eq(line, 2);
    ck_assert_int_eq(col, 2);
    ck_assert_uint_eq(mtft_json__find_key(text, strlen(text), "x"), 0); /* a value, not a key */
    mtft_json__free(j);
    ck_assert_ptr_null(mtft_json__parse("{\"a\":1} }", 10, &eo));
    ck_assert_uint_eq(eo, 9);
    ck_assert_ptr_null(mtft_json__parse("", 0, &eo));

    /* building and printing round-trips through the parser */
    mtft_json *o = mtft_json__new_object();
    mtft_json *arr = mtft_json__new_array();
    ck_assert_int_eq(mtft_json__append(arr, mtft_json__new_number(3)), 0);
    ck_assert_int_eq(mtft_json__append(arr, mtft_json__new_bool(0)), 0);
    ck_assert_int_eq(mtft_json__add(o, "list", arr), 0);
    ck_assert_int_eq(mtft_json__add(o, "s", mtft_json__new_string("q\"\n")), 0);
    ck_assert_int_eq(mtft_json__add(o, "z", mtft_json__new_null()), 0);
    ck_assert_int_eq(mtft_json__append(o, mtft_json__new_null()), -1); /* not an array: child freed */
    char *txt = mtft_json__print(o, 0);
    ck_assert_str_eq(txt, "{\"list\":[3,false],\"s\":\"q\\\"\\n\",\"z\":null}");
    mtft_json *back = mtft_json__parse(txt, strlen(txt), NULL);
    ck_assert_str_eq(mtft_json__string(mtft_json__get(back, "s")), "q\"\n");
    mtft_json__free(back);
    mtft__free(txt);
    mtft_json__free(o);

    char *buf = NULL;
    size_t pos = 0, cap = 0;
    ck_assert_int_eq(mtft_json__append_quoted(&buf, &pos, &cap, "a\x01\\"), 0);
    ck_assert_str_eq(buf, "\"a\\u0001\\\\\"");
    ck_assert_uint_eq(pos, strlen(buf));
    mtft__free(buf);
}
END_TEST

static Suite *io_suite(void) {
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_io_f16_known_bits);
    tcase_add_test(tc, test_io_bf16_known_bits);
    tcase_add_test(tc, test_io_roundtrip_raw);
    tcase_add_test(tc, test_io_roundtrip_tensors);
    tcase_add_test(tc, test_io_save_errors);
    tcase_add_test(tc, test_io_torch_fixture);
    tcase_add_test(tc, test_io_load_group);
    tcase_add_test(tc, test_io_hf_config_files);
    tcase_add_test(tc, test_io_hf_config_defaults);
    tcase_add_test(tc, test_io_json_internal);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_checked_fixture(lim, tmp_setup, tmp_teardown);
    tcase_add_test(lim, test_io_corrupt_headers);
    tcase_add_test(lim, test_io_truncation_and_fuzz);
    tcase_add_test(lim, test_io_hf_config_errors);
    suite_add_tcase(s, lim);
    return s;
}

int main(void) { return mtft_test_run(io_suite()); }
