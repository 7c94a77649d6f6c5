/* ctest-labels: unit */
/* ctest-timeout: 600 */
/* Tokenizer: GPT-2 byte-level BPE against reference ids from gpt-3-encoder
 * (tests/fixtures/tokenizer, made by tools/gen_tokenizer_fixtures.sh),
 * pre-tokenisation against Python's `regex`, round trips of arbitrary bytes,
 * special tokens, the three loaders and their error messages, training
 * against a brute-force trainer, and saving. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mtft/tokenizer.h"
#include "mtft_test.h"
#include "tokenizer/tokenizer_impl.h"

/* ---- helpers ---------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    if (len) *len = (size_t)n;
    return b;
}

static char *fixture(const char *name, size_t *len) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "tests/fixtures/tokenizer/%s", name);
    return read_all(mtft_test_path(path, sizeof path, rel), len);
}

static int32_t *read_ids(const char *name, size_t *n) {
    size_t len;
    char *s = fixture(name, &len);
    size_t cap = len / 2 + 1, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *p = s, *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ck_assert(k < cap);
        ids[k++] = (int32_t)v;
        p = end;
    }
    free(s);
    *n = k;
    return ids;
}

static mtft_tokenizer *load_gpt2(void) {
    char e[1024], v[1024];
    mtft_tokenizer *tok = NULL;
    int rc = mtft_tokenizer_load_gpt2(&tok, mtft_test_path(e, sizeof e, "data/tokenizer/gpt2/encoder.json"),
                                      mtft_test_path(v, sizeof v, "data/tokenizer/gpt2/vocab.bpe"));
    ck_assert_msg(rc == MTFT_OK, "load_gpt2: %s", mtft_error_last()->message);
    ck_assert_ptr_nonnull(tok);
    return tok;
}

/* Encode into a malloc'ed array. */
static int32_t *encode(mtft_tokenizer *tok, const char *s, size_t len, size_t *n) {
    size_t need = 0;
    int rc = mtft_tokenizer_encode(tok, s, len, NULL, 0, &need);
    ck_assert(rc == MTFT_OK || rc == MTFT_ERANGE);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    rc = mtft_tokenizer_encode(tok, s, len, ids, need, n);
    ck_assert_msg(rc == MTFT_OK, "encode: %s", mtft_error_last()->message);
    ck_assert_uint_eq(*n, need);
    return ids;
}

static void assert_roundtrip(mtft_tokenizer *tok, const char *s, size_t len, const char *what) {
    size_t n, got;
    int32_t *ids = encode(tok, s, len, &n);
    char *buf = malloc(len + 1);
    int rc = mtft_tokenizer_decode(tok, ids, n, buf, len + 1, &got);
    ck_assert_msg(rc == MTFT_OK, "%s: decode: %s", what, mtft_error_last()->message);
    ck_assert_msg(got == len, "%s: decoded %zu bytes, expected %zu", what, got, len);
    ck_assert_msg(memcmp(buf, s, len) == 0, "%s: round trip changed the bytes", what);
    ck_assert_int_eq(buf[len], '\0');
    free(buf);
    free(ids);
}

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/tok_test_%ld_%s", MTFT_BINARY_DIR, (long)getpid(), name);
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(s, f);
    fclose(f);
}

static void assert_msg_has(const char *needle) {
    const char *m = mtft_error_last()->message;
    ck_assert_msg(strstr(m, needle) != NULL, "error message '%s' lacks '%s'", m, needle);
}

/* ---- GPT-2 reference ids ------------------------------------------------------ */

static void check_reference(mtft_tokenizer *tok, const char *txt, const char *idsf) {
    size_t len, n_ref, n;
    char *text = fixture(txt, &len);
    int32_t *ref = read_ids(idsf, &n_ref);
    ck_assert_uint_gt(n_ref, 100);
    int32_t *ids = encode(tok, text, len, &n);
    size_t k = 0;
    while (k < n && k < n_ref && ids[k] == ref[k]) k++;
    ck_assert_msg(k == n && n == n_ref, "%s: ids differ from gpt-3-encoder at %zu (ours %d, ref %d; %zu vs %zu ids)",
                  txt, k, k < n ? ids[k] : -1, k < n_ref ? ref[k] : -1, n, n_ref);
    assert_roundtrip(tok, text, len, txt);
    free(ids);
    free(ref);
    free(text);
}

START_TEST(test_tok_gpt2_reference_ids) {
    mtft_tokenizer *tok = load_gpt2();
    ck_assert_int_eq(mtft_tokenizer_vocab_size(tok), 50257);
    ck_assert_int_eq(mtft_tokenizer_n_merges(tok), 50000);
    check_reference(tok, "mixed.txt", "mixed.ids");
    check_reference(tok, "moby_dick_50k.txt", "moby_dick_50k.ids");
    check_reference(tok, "jargon_file_16k.txt", "jargon_file_16k.ids");
    /* again, now from the word cache */
    check_reference(tok, "mixed.txt", "mixed.ids");
    ck_assert_uint_gt(tok->cache.hits, 1000);
    mtft_tokenizer_free(tok);
}
END_TEST

START_TEST(test_tok_known_tokens) {
    mtft_tokenizer *tok = load_gpt2();
    size_t n;
    int32_t *ids = encode(tok, "Hello world", 11, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 15496);
    ck_assert_int_eq(ids[1], 995);
    free(ids);
    ck_assert_int_eq(mtft_tokenizer_token_to_id(tok, "\xc4\xa0the"), 262); /* "Ġthe" */
    ck_assert_str_eq(mtft_tokenizer_id_to_token(tok, 262), "\xc4\xa0the");
    size_t bl;
    const char *b = mtft_tokenizer_token_bytes(tok, 262, &bl);
    ck_assert_uint_eq(bl, 4);
    ck_assert(memcmp(b, " the", 4) == 0);
    ck_assert_int_eq(mtft_tokenizer_token_to_id(tok, "!"), 0);
    ck_assert_int_eq(mtft_tokenizer_token_to_id(tok, "no such token xyz"), -1);
    ck_assert_ptr_null(mtft_tokenizer_id_to_token(tok, 50257));
    ck_assert_ptr_null(mtft_tokenizer_id_to_token(tok, -1));
    ck_assert_ptr_null(mtft_tokenizer_token_bytes(tok, 99999, &bl));
    ck_assert_uint_eq(bl, 0);
    ck_assert_int_eq(mtft_tokenizer_token_to_id(tok, "<|endoftext|>"), 50256);
    ck_assert(mtft_tokenizer_is_special(tok, 50256));
    ck_assert(!mtft_tokenizer_is_special(tok, 262));
    /* every byte has its own token */
    for (int c = 0; c < 256; c++) {
        char s = (char)c;
        ids = encode(tok, &s, 1, &n);
        ck_assert_uint_eq(n, 1);
        b = mtft_tokenizer_token_bytes(tok, ids[0], &bl);
        ck_assert_uint_eq(bl, 1);
        ck_assert_int_eq((unsigned char)b[0], c);
        free(ids);
    }
    mtft_tokenizer_free(tok);
}
END_TEST

/* Where gpt-3-encoder's JavaScript regex differs from the Python `regex`
 * module GPT-2 was made with: JS \s includes U+FEFF and excludes U+0085 (NEL);
 * Unicode White_Space is the other way round. We follow Python. Expected ids
 * from OpenAI's algorithm (tools/gen_tokenizer_fixtures.py's Encoder); the JS
 * ids are given for contrast. */
START_TEST(test_tok_python_not_js_whitespace) {
    mtft_tokenizer *tok = load_gpt2();
    static const struct {
        const char *text;
        int32_t py[12], js[12];
        size_t n_py, n_js;
    } cases[] = {
        {"x  \xef\xbb\xbfy", {87, 220, 27332, 119, 123, 88}, {87, 220, 220, 171, 119, 123, 88}, 6, 7},
        {"x\xc2\x85\xc2\x85y  \xc2\x85z", {87, 126, 227, 126, 227, 88, 220, 220, 126, 227, 89},
         {87, 126, 227, 126, 227, 88, 220, 1587, 227, 89}, 11, 10},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n;
        int32_t *ids = encode(tok, cases[c].text, strlen(cases[c].text), &n);
        ck_assert_uint_eq(n, cases[c].n_py);
        int same_as_js = n == cases[c].n_js;
        for (size_t k = 0; k < n; k++) {
            ck_assert_int_eq(ids[k], cases[c].py[k]);
            if (k < cases[c].n_js && ids[k] != cases[c].js[k]) same_as_js = 0;
        }
        ck_assert(!same_as_js);
        free(ids);
    }
    mtft_tokenizer_free(tok);
}
END_TEST

/* ---- pre-tokenisation ---------------------------------------------------------- */

START_TEST(test_tok_pretok_python_regex) {
    size_t len, wl;
    char *text = fixture("pretok_cases.text", &len);
    char *words = fixture("pretok_cases.words", &wl);
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, k = 0;
    char *p = words, *end;
    for (;; k++) {
        long w = strtol(p, &end, 10);
        if (end == p) break;
        p = end;
        ck_assert_msg(i < len, "text ended before word %zu", k);
        size_t j = mtft_tokenizer__next_word(s, len, i);
        ck_assert_msg(j - i == (size_t)w, "word %zu at byte %zu: %zu bytes, Python regex says %ld ('%.*s')", k, i,
                      j - i, w, (int)(j - i > (size_t)w ? j - i : (size_t)w), text + i);
        i = j;
    }
    ck_assert_uint_eq(i, len);
    ck_assert_uint_gt(k, 5000);
    free(text);
    free(words);
}
END_TEST

static void assert_words(const char *s, size_t n, const char *const *expect, int n_expect) {
    size_t i = 0;
    int k = 0;
    while (i < n) {
        size_t j = mtft_tokenizer__next_word((const uint8_t *)s, n, i);
        ck_assert_msg(k < n_expect, "more words than expected at byte %zu", i);
        size_t el = strlen(expect[k]);
        ck_assert_msg(j - i == el && memcmp(s + i, expect[k], el) == 0, "word %d: got '%.*s', expected '%s'", k,
                      (int)(j - i), s + i, expect[k]);
        i = j;
        k++;
    }
    ck_assert_int_eq(k, n_expect);
}

START_TEST(test_tok_pretok_cases) {
    const char *const a[] = {"Hello", "'s", " world", "  ", " foo", "\t", "bar", "\n\n"};
    static const char as[] = "Hello's world   foo\tbar\n\n";
    assert_words(as, sizeof as - 1, a, 8);
    /* invalid UTF-8 bytes are "other" symbols: they join punctuation runs */
    const char *const b[] = {"a", "\xff", "b", " \xfe\xff!", " \xe4\xb8", "x\xc3\xa9t\xc3\xa9", "\xe4\xb8!"};
    static const char bs[] = "a\xff" "b \xfe\xff! \xe4\xb8x\xc3\xa9t\xc3\xa9\xe4\xb8!";
    assert_words(bs, sizeof bs - 1, b, 7);
    /* NUL is a control character: "other" */
    const char *const c[] = {"x", "\0\0", " y"};
    const char nul[] = {'x', 0, 0, ' ', 'y'};
    size_t i = 0;
    for (int k = 0; k < 3; k++) {
        size_t j = mtft_tokenizer__next_word((const uint8_t *)nul, 5, i);
        size_t el = k == 1 ? 2 : strlen(c[k]);
        ck_assert_uint_eq(j - i, el);
        i = j;
    }
    /* overlong, surrogate and out-of-range encodings are invalid bytes, not letters */
    uint32_t cp;
    ck_assert_int_eq(mtft_tokenizer__utf8_decode((const uint8_t *)"\xc0\xaf", 2, &cp), 1);
    ck_assert_uint_eq(cp, UINT32_MAX);
    ck_assert_int_eq(mtft_tokenizer__utf8_decode((const uint8_t *)"\xed\xa0\x80", 3, &cp), 1);
    ck_assert_int_eq(mtft_tokenizer__utf8_decode((const uint8_t *)"\xf4\x90\x80\x80", 4, &cp), 1);
    ck_assert_int_eq(mtft_tokenizer__utf8_decode((const uint8_t *)"\xf0\x9f\x98\x80", 4, &cp), 4);
    ck_assert_uint_eq(cp, 0x1F600);
    ck_assert_int_eq(mtft_tokenizer__classify(0x4E2D), MTFT_TOK_LETTER);  /* 中 */
    ck_assert_int_eq(mtft_tokenizer__classify(0x0663), MTFT_TOK_NUMBER);  /* ٣ */
    ck_assert_int_eq(mtft_tokenizer__classify(0x2167), MTFT_TOK_NUMBER);  /* Ⅷ (Nl) */
    ck_assert_int_eq(mtft_tokenizer__classify(0x0085), MTFT_TOK_SPACE);   /* NEL */
    ck_assert_int_eq(mtft_tokenizer__classify(0xFEFF), MTFT_TOK_OTHER);   /* BOM: Cf */
    ck_assert_int_eq(mtft_tokenizer__classify(0x0301), MTFT_TOK_OTHER);   /* combining acute: Mn */
    /* byte-to-unicode is a bijection onto its 256 code points */
    int seen[324] = {0};
    for (int k = 0; k < 256; k++) {
        uint32_t u = mtft_tokenizer__byte_to_cp((uint8_t)k);
        ck_assert_uint_lt(u, 324);
        ck_assert_int_eq(seen[u]++, 0);
        ck_assert_int_eq(mtft_tokenizer__cp_to_byte(u), k);
    }
    ck_assert_uint_eq(mtft_tokenizer__byte_to_cp(' '), 0x120); /* Ġ */
}
END_TEST

/* ---- round trips -------------------------------------------------------------- */

START_TEST(test_tok_roundtrip_any_bytes) {
    mtft_tokenizer *tok = load_gpt2();
    mtft_rng r;
    mtft_rng_seed(&r, 42);
    static const char *const frags[] = {"a", "Z", " ", "  ", "\t", "\n", "'s", "'", "9", "\xc3\xa9", "\xe4\xb8\xad",
                                        "\xf0\x9f\x98\x80", "\xe2\x80\xa8", "\xc2\x85", "\xef\xbb\xbf", "!", ",",
                                        "\xcc\x81", "<|endoftext|>"};
    char buf[4096];
    for (int trial = 0; trial < 300; trial++) {
        size_t n = (size_t)mtft_rng_below(&r, 600);
        size_t k = 0;
        int mode = trial % 3;
        while (k < n) {
            if (mode == 0) { /* raw random bytes: mostly invalid UTF-8, NULs */
                buf[k++] = (char)mtft_rng_below(&r, 256);
            } else { /* fragments plus stray bytes: valid and broken UTF-8 mixed */
                const char *f = frags[mtft_rng_below(&r, sizeof frags / sizeof frags[0])];
                size_t fl = strlen(f);
                if (mode == 2 && mtft_rng_below(&r, 4) == 0) fl = fl > 1 ? fl - 1 : fl; /* truncate */
                for (size_t q = 0; q < fl && k < n; q++) buf[k++] = f[q];
                if (mtft_rng_below(&r, 8) == 0 && k < n) buf[k++] = (char)(0x80 + mtft_rng_below(&r, 128));
            }
        }
        assert_roundtrip(tok, buf, n, "random bytes");
    }
    assert_roundtrip(tok, "", 0, "empty");
    const char nul[] = {0, 0, 'a', 0, ' ', 0};
    assert_roundtrip(tok, nul, sizeof nul, "NULs");
    mtft_tokenizer_free(tok);
}
END_TEST

START_TEST(test_tok_bpe_heap_matches_reference) {
    mtft_tokenizer *tok = load_gpt2();
    mtft_rng r;
    mtft_rng_seed(&r, 7);
    static const char alpha[] = "aeinrst";
    uint8_t w[700];
    int32_t a[700], b[700];
    for (int trial = 0; trial < 200; trial++) {
        size_t n = 48 + (size_t)mtft_rng_below(&r, 600);
        for (size_t k = 0; k < n; k++)
            w[k] = trial % 4 == 3 ? (uint8_t)mtft_rng_below(&r, 256) : (uint8_t)alpha[mtft_rng_below(&r, 7)];
        if (trial % 5 == 0) w[0] = ' ';
        int na = mtft_tokenizer__bpe_word(tok, w, n, a);
        int nb = mtft_tokenizer__bpe_word_reference(tok, w, n, b);
        ck_assert_int_eq(na, nb);
        ck_assert_int_lt(na, (int)n); /* merges happened */
        for (int k = 0; k < na; k++) ck_assert_int_eq(a[k], b[k]);
    }
    mtft_tokenizer_free(tok);
}
END_TEST

/* ---- buffers and errors ------------------------------------------------------- */

START_TEST(test_tok_encode_decode_buffers) {
    mtft_tokenizer *tok = load_gpt2();
    const char *s = "The quick brown fox jumps over the lazy dog.";
    size_t n = 99, full_n;
    int32_t full[64], part[4] = {-1, -1, -1, -1};
    ck_assert_int_eq(mtft_tokenizer_encode(tok, s, strlen(s), full, 64, &full_n), MTFT_OK);
    ck_assert_uint_eq(full_n, 10);
    ck_assert_int_eq(mtft_tokenizer_encode(tok, s, strlen(s), NULL, 0, &n), MTFT_ERANGE);
    ck_assert_uint_eq(n, 10);
    ck_assert_int_eq(mtft_tokenizer_encode(tok, s, strlen(s), part, 3, &n), MTFT_ERANGE);
    ck_assert_uint_eq(n, 10);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(part[k], full[k]);
    ck_assert_int_eq(part[3], -1);
    ck_assert_int_eq(mtft_tokenizer_encode(tok, "", 0, NULL, 0, &n), MTFT_OK);
    ck_assert_uint_eq(n, 0);

    char buf[64];
    size_t len = 0;
    memset(buf, 'X', sizeof buf);
    ck_assert_int_eq(mtft_tokenizer_decode(tok, full, full_n, buf, 10, &len), MTFT_ERANGE);
    ck_assert_uint_eq(len, strlen(s));
    ck_assert(memcmp(buf, s, 10) == 0);
    ck_assert_int_eq(buf[10], 'X');
    ck_assert_int_eq(mtft_tokenizer_decode(tok, full, full_n, buf, strlen(s), &len), MTFT_OK); /* exact: no NUL */
    ck_assert_int_eq(buf[strlen(s)], 'X');
    ck_assert_int_eq(mtft_tokenizer_decode(tok, full, full_n, buf, sizeof buf, &len), MTFT_OK);
    ck_assert_str_eq(buf, s);

    int32_t bad[3] = {464, 50257, 1};
    ck_assert_int_eq(mtft_tokenizer_decode(tok, bad, 3, buf, sizeof buf, &len), MTFT_EINVAL);
    assert_msg_has("id 50257 at position 1");
    bad[1] = -5;
    ck_assert_int_eq(mtft_tokenizer_decode(tok, bad, 3, buf, sizeof buf, &len), MTFT_EINVAL);
    assert_msg_has("id -5 at position 1");

    ck_assert_int_eq(mtft_tokenizer_encode(NULL, s, 1, full, 64, &n), MTFT_EINVAL);
    ck_assert_int_eq(mtft_tokenizer_encode(tok, NULL, 5, full, 64, &n), MTFT_EINVAL);
    ck_assert_int_eq(mtft_tokenizer_encode(tok, s, 5, NULL, 4, &n), MTFT_EINVAL);
    ck_assert_int_eq(mtft_tokenizer_decode(tok, NULL, 2, buf, 4, &len), MTFT_EINVAL);
    mtft_tokenizer_free(NULL);
    mtft_tokenizer_free(tok);
}
END_TEST

/* ---- special tokens ----------------------------------------------------------- */

START_TEST(test_tok_special_tokens) {
    mtft_tokenizer *tok = load_gpt2();
    const char *s = "Hi<|endoftext|>there";
    size_t n, na, nb;
    /* off by default: the text is ordinary bytes */
    int32_t *plain = encode(tok, s, strlen(s), &n);
    ck_assert_uint_gt(n, 3);
    for (size_t k = 0; k < n; k++) ck_assert_int_ne(plain[k], 50256);
    free(plain);

    ck_assert_int_eq(mtft_tokenizer_parse_special(tok), 0);
    mtft_tokenizer_set_parse_special(tok, 1);
    ck_assert_int_eq(mtft_tokenizer_parse_special(tok), 1);
    int32_t *ids = encode(tok, s, strlen(s), &n);
    int32_t *a = encode(tok, "Hi", 2, &na);
    int32_t *b = encode(tok, "there", 5, &nb);
    ck_assert_uint_eq(n, na + 1 + nb);
    for (size_t k = 0; k < na; k++) ck_assert_int_eq(ids[k], a[k]);
    ck_assert_int_eq(ids[na], 50256);
    for (size_t k = 0; k < nb; k++) ck_assert_int_eq(ids[na + 1 + k], b[k]);
    assert_roundtrip(tok, s, strlen(s), "special");
    free(ids);
    free(a);
    free(b);

    /* user-added specials get new ids after the vocabulary */
    int32_t pad = -1, pad2 = -1, eot = -1, longer = -1;
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "<|pad|>", &pad), MTFT_OK);
    ck_assert_int_eq(pad, 50257);
    ck_assert_int_eq(mtft_tokenizer_vocab_size(tok), 50258);
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "<|pad|>", &pad2), MTFT_OK);
    ck_assert_int_eq(pad2, pad);
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "<|endoftext|>", &eot), MTFT_OK);
    ck_assert_int_eq(eot, 50256);
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "<|pad|>x y", &longer), MTFT_OK); /* longest match wins */
    ck_assert_int_eq(longer, 50258);
    ck_assert_str_eq(mtft_tokenizer_id_to_token(tok, longer), "<|pad|>x y");
    const char *t = " <|pad|><|pad|>x y<|pad|>x<|endoftext|>";
    ids = encode(tok, t, strlen(t), &n);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(ids[1], pad);
    ck_assert_int_eq(ids[2], longer);
    ck_assert_int_eq(ids[3], pad);
    ck_assert_int_eq(ids[5], eot);
    assert_roundtrip(tok, t, strlen(t), "added specials");
    free(ids);
    /* a vocabulary token spelled like the special text keeps its id */
    int32_t hello = -1;
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "hello", &hello), MTFT_OK);
    ck_assert_int_eq(hello, 31373);
    ck_assert(mtft_tokenizer_is_special(tok, hello));
    /* "Ġthe" stands for " the": it cannot become a special token */
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "\xc4\xa0the", NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_tokenizer_add_special(tok, "", NULL), MTFT_EINVAL);
    ck_assert_int_eq(mtft_tokenizer_add_special(NULL, "x", NULL), MTFT_EINVAL);
    mtft_tokenizer_free(tok);
}
END_TEST

/* ---- loaders -------------------------------------------------------------------- */

/* tokenizer.json made from GPT-2's files (half the merges as "a b", half as
 * pairs) must encode like the GPT-2 loader. */
START_TEST(test_tok_load_tokenizer_json) {
    char e[1024], v[1024], out[1024];
    size_t el, vl;
    char *enc = read_all(mtft_test_path(e, sizeof e, "data/tokenizer/gpt2/encoder.json"), &el);
    char *bpe = read_all(mtft_test_path(v, sizeof v, "data/tokenizer/gpt2/vocab.bpe"), &vl);
    cJSON *root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddItemToObject(model, "vocab", cJSON_Parse(enc));
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    char *line = strchr(bpe, '\n') + 1;
    int k = 0;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (*line) {
            if (k++ % 2) {
                cJSON_AddItemToArray(merges, cJSON_CreateString(line));
            } else {
                char *sp = strchr(line, ' ');
                *sp = '\0';
                const char *pair[2] = {line, sp + 1};
                cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *t0 = cJSON_CreateObject(), *t1 = cJSON_CreateObject();
    cJSON_AddNumberToObject(t0, "id", 50256);
    cJSON_AddStringToObject(t0, "content", "<|endoftext|>");
    cJSON_AddNumberToObject(t1, "id", 50257);
    cJSON_AddStringToObject(t1, "content", "[MASK here]");
    cJSON_AddItemToArray(added, t0);
    cJSON_AddItemToArray(added, t1);
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    char *json = cJSON_PrintUnformatted(root);
    tmp_path(out, sizeof out, "tokenizer.json");
    write_file(out, json);
    cJSON_free(json);
    cJSON_Delete(root);
    free(enc);
    free(bpe);

    mtft_tokenizer *tok = NULL;
    ck_assert_msg(mtft_tokenizer_load_json(&tok, out) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(k, 50000);
    ck_assert_int_eq(mtft_tokenizer_n_merges(tok), 50000);
    ck_assert_int_eq(mtft_tokenizer_vocab_size(tok), 50258);
    ck_assert(mtft_tokenizer_is_special(tok, 50256));
    ck_assert(mtft_tokenizer_is_special(tok, 50257));
    check_reference(tok, "mixed.txt", "mixed.ids");
    mtft_tokenizer_set_parse_special(tok, 1);
    size_t n;
    int32_t *ids = encode(tok, "a[MASK here]", 12, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[1], 50257);
    free(ids);
    mtft_tokenizer_free(tok);
    remove(out);
}
END_TEST

static int load_hf_text(const char *vocab, const char *merges, mtft_tokenizer **tok, char *vp, char *mp) {
    tmp_path(vp, 1024, "vocab.json");
    tmp_path(mp, 1024, "merges.txt");
    write_file(vp, vocab);
    write_file(mp, merges);
    int rc = mtft_tokenizer_load_hf(tok, vp, mp);
    remove(vp);
    remove(mp);
    return rc;
}

/* A valid small vocab.json: the 256 byte tokens plus "ab", "abc", " a". */
static char *small_vocab(const char *extra) {
    size_t cap = 8192, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\n");
    for (int b = 0; b < 256; b++) {
        uint32_t cp = mtft_tokenizer__byte_to_cp((uint8_t)b);
        char u[3] = {0};
        if (cp < 0x80) {
            u[0] = (char)cp;
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
        }
        const char *esc = (u[0] == '"' || u[0] == '\\') ? "\\" : "";
        n += (size_t)snprintf(s + n, cap - n, "\"%s%s\": %d,\n", esc, u, b);
    }
    n += (size_t)snprintf(s + n, cap - n, "\"ab\": 256, \"abc\": 257, \"\\u0120a\": 258%s\n}\n", extra);
    return s;
}

START_TEST(test_tok_load_errors) {
    mtft_tokenizer *tok = NULL;
    char vp[1024], mp[1024];
    char *v = small_vocab("");
    /* a good pair first */
    ck_assert_msg(load_hf_text(v, "#version: 0.2\na b\nab c\n\xc4\xa0 a\n", &tok, vp, mp) == MTFT_OK, "%s",
                  mtft_error_last()->message);
    size_t n;
    int32_t *ids = encode(tok, "abc ab a", 8, &n);
    /* "abc" | " ab" -> " " + "ab" (rank 0 beats " a", rank 2) | " a" */
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ids[0], 257);
    ck_assert_int_eq(ids[1], ' ');
    ck_assert_int_eq(ids[2], 256);
    ck_assert_int_eq(ids[3], 258);
    free(ids);
    mtft_tokenizer_free(tok);
    tok = NULL;

    /* merges.txt: unknown token, at line:col */
    ck_assert_int_eq(load_hf_text(v, "#version: 0.2\na b\nab zz\n", &tok, vp, mp), MTFT_EFORMAT);
    ck_assert_ptr_null(tok);
    assert_msg_has("merges.txt:3:4:");
    assert_msg_has("'zz'");
    /* merge result missing from the vocabulary */
    ck_assert_int_eq(load_hf_text(v, "a b\nb c\n", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("merges.txt:2:1:");
    assert_msg_has("'bc'");
    ck_assert_int_eq(load_hf_text(v, "a b c\n", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("merges.txt:1:4: more than two tokens");
    ck_assert_int_eq(load_hf_text(v, "a b\nab\n", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("merges.txt:2:1: expected two tokens");
    free(v);

    /* vocab.json syntax and content errors, at line:col */
    char bad[256];
    snprintf(bad, sizeof bad, "{\n  \"a\": 1,\n  \"b\" 2\n}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:3:7: expected ':'");
    snprintf(bad, sizeof bad, "{\"a\": 1,\n \"b\": 2.5}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:2:7: id is not an integer");
    snprintf(bad, sizeof bad, "{\"a\": 1,\n \"a\": 2}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:2:2:");
    assert_msg_has("given twice");
    snprintf(bad, sizeof bad, "{\"a\": 1,\n \"b\": 1}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:2:2: id 1 is given twice");
    snprintf(bad, sizeof bad, "{\"a\": 0, \"b\": -3}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:1:15: negative id");
    snprintf(bad, sizeof bad, "{\"a\": 0, \"b\\q\": 1}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:1:12: invalid escape");
    snprintf(bad, sizeof bad, "{\"a\": 0, \"b\": 1");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:1:16: expected ',' or '}'");
    snprintf(bad, sizeof bad, "{\"a\": 0} x");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("vocab.json:1:10: unexpected text");
    /* well-formed but not byte-level: names the missing byte */
    snprintf(bad, sizeof bad, "{\"a\": 0, \"b\": 1}");
    ck_assert_int_eq(load_hf_text(bad, "", &tok, vp, mp), MTFT_EFORMAT);
    assert_msg_has("no token for byte 0x00");

    /* missing files */
    ck_assert_int_eq(mtft_tokenizer_load_gpt2(&tok, "/nonexistent/encoder.json", "/nonexistent/vocab.bpe"), MTFT_EIO);
    assert_msg_has("/nonexistent/encoder.json");
    ck_assert_int_eq(mtft_tokenizer_load_json(&tok, "/nonexistent/tokenizer.json"), MTFT_EIO);
    ck_assert_int_eq(mtft_tokenizer_load_hf(NULL, "a", "b"), MTFT_EINVAL);

    /* tokenizer.json */
    char jp[1024];
    tmp_path(jp, sizeof jp, "bad_tokenizer.json");
    write_file(jp, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    ck_assert_int_eq(mtft_tokenizer_load_json(&tok, jp), MTFT_EUNSUPPORTED);
    assert_msg_has("model.type is 'WordPiece'");
    write_file(jp, "{\n  \"model\": {\n    \"type\": \"BPE\",\n    \"vocab\": {\"a\": 0,, }\n  }\n}");
    ck_assert_int_eq(mtft_tokenizer_load_json(&tok, jp), MTFT_EFORMAT);
    assert_msg_has("bad_tokenizer.json:4:");
    assert_msg_has("JSON syntax error");
    write_file(jp, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}");
    ck_assert_int_eq(mtft_tokenizer_load_json(&tok, jp), MTFT_EFORMAT);
    assert_msg_has("model.vocab[\"a\"]");
    write_file(jp, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
    ck_assert_int_eq(mtft_tokenizer_load_json(&tok, jp), MTFT_EFORMAT);
    assert_msg_has("no token for byte");
    ck_assert_ptr_null(tok);
    remove(jp);
}
END_TEST

/* Corrupted files (truncated, bytes changed) load or fail cleanly, and a
 * failure names the file. */
START_TEST(test_tok_load_fuzz) {
    char *v = small_vocab("");
    const char *m = "#version: 0.2\na b\nab c\n\xc4\xa0 a\n";
    size_t vl = strlen(v), ml = strlen(m);
    char *vb = malloc(vl + 1), *mb = malloc(ml + 1), vp[1024], mp[1024];
    mtft_rng r;
    mtft_rng_seed(&r, 99);
    int ok = 0, failed = 0;
    for (int trial = 0; trial < 400; trial++) {
        memcpy(vb, v, vl + 1);
        memcpy(mb, m, ml + 1);
        int which = (int)mtft_rng_below(&r, 2);
        char *b = which ? mb : vb;
        size_t bl = which ? ml : vl;
        if (trial % 2) {
            b[mtft_rng_below(&r, bl)] = '\0'; /* truncate */
        } else {
            for (int k = 0; k < 3; k++) {
                static const char pick[] = "\"{}:,\\ \n0123456789abu\xc4\xa0";
                b[mtft_rng_below(&r, bl)] = pick[mtft_rng_below(&r, sizeof pick - 1)];
            }
        }
        mtft_tokenizer *tok = NULL;
        int rc = load_hf_text(vb, mb, &tok, vp, mp);
        if (rc == MTFT_OK) {
            ok++;
            assert_roundtrip(tok, "abc ab a\xff", 9, "fuzzed vocabulary");
            mtft_tokenizer_free(tok);
        } else {
            failed++;
            ck_assert_ptr_null(tok);
            ck_assert_msg(strstr(mtft_error_last()->message, which ? "merges.txt" : "vocab.json") != NULL,
                          "error does not name the file: %s", mtft_error_last()->message);
        }
    }
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(failed, 100);
    free(vb);
    free(mb);
    free(v);
}
END_TEST

/* ---- training ------------------------------------------------------------------- */

/* Brute-force trainer: recount every pair for every merge. Returns the raw
 * bytes of the learned tokens (merge m -> tokens[m]), stopping at max merges
 * or when the best count < min_freq. */
typedef struct ref_tok {
    char bytes[256];
    size_t len;
} ref_tok;

static int reference_train(const char *text, size_t len, int max_merges, int64_t min_freq, ref_tok *out) {
    /* words and counts */
    size_t cap = len + 1, nw = 0;
    int32_t **sym = calloc(cap, sizeof *sym);
    size_t *wn = calloc(cap, sizeof *wn);
    int64_t *wc = calloc(cap, sizeof *wc);
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t j = mtft_tokenizer__next_word(s, len, i);
        size_t w = 0;
        for (; w < nw; w++)
            if (wn[w] == j - i) {
                size_t q = 0;
                while (q < wn[w] && sym[w][q] == s[i + q]) q++;
                if (q == wn[w]) break;
            }
        if (w == nw) {
            sym[nw] = malloc((j - i) * sizeof **sym);
            for (size_t q = 0; q < j - i; q++) sym[nw][q] = s[i + q]; /* symbol = byte value for now */
            wn[nw++] = j - i;
        }
        wc[w]++;
        i = j;
    }
    /* symbols: 0..255 bytes, 256+m merges; raw bytes per symbol */
    int V = 256 + max_merges;
    ref_tok *tk = calloc((size_t)V, sizeof *tk);
    for (int b = 0; b < 256; b++) {
        tk[b].bytes[0] = (char)b;
        tk[b].len = 1;
    }
    /* tie-break must use the library's ids: byte b has id = its GPT-2 order */
    int id_of[256];
    for (int k = 0; k < 256; k++) id_of[mtft_tokenizer__byte_order(k)] = k;
    int64_t *cnt = malloc((size_t)V * (size_t)V * sizeof *cnt);
    int m = 0;
    for (; m < max_merges; m++) {
        memset(cnt, 0, (size_t)V * (size_t)V * sizeof *cnt);
        for (size_t w = 0; w < nw; w++)
            for (size_t q = 0; q + 1 < wn[w]; q++) cnt[(size_t)sym[w][q] * (size_t)V + (size_t)sym[w][q + 1]] += wc[w];
        int64_t best = 0;
        int ba = -1, bb = -1, bia = 0, bib = 0;
        for (int a = 0; a < 256 + m; a++)
            for (int b = 0; b < 256 + m; b++) {
                int64_t c = cnt[(size_t)a * (size_t)V + (size_t)b];
                if (c <= 0) continue;
                int ia = a < 256 ? id_of[a] : a, ib = b < 256 ? id_of[b] : b;
                if (c > best || (c == best && (ia < bia || (ia == bia && ib < bib)))) {
                    best = c;
                    ba = a;
                    bb = b;
                    bia = ia;
                    bib = ib;
                }
            }
        if (ba < 0 || best < min_freq) break;
        int nid = 256 + m;
        memcpy(tk[nid].bytes, tk[ba].bytes, tk[ba].len);
        memcpy(tk[nid].bytes + tk[ba].len, tk[bb].bytes, tk[bb].len);
        tk[nid].len = tk[ba].len + tk[bb].len;
        out[m] = tk[nid];
        for (size_t w = 0; w < nw; w++) {
            size_t j = 0;
            for (size_t q = 0; q < wn[w];) {
                if (q + 1 < wn[w] && sym[w][q] == ba && sym[w][q + 1] == bb) {
                    sym[w][j++] = nid;
                    q += 2;
                } else {
                    sym[w][j++] = sym[w][q++];
                }
            }
            wn[w] = j;
        }
    }
    for (size_t w = 0; w < nw; w++) free(sym[w]);
    free(sym);
    free(wn);
    free(wc);
    free(tk);
    free(cnt);
    return m;
}

START_TEST(test_tok_train_matches_brute_force) {
    size_t len;
    char *text = fixture("moby_dick_50k.txt", &len);
    len = 6000;
    enum { MERGES = 120 };
    ref_tok ref[MERGES];
    int nref = reference_train(text, len, MERGES, 2, ref);
    ck_assert_int_eq(nref, MERGES);
    mtft_bpe_train_options o = MTFT_BPE_TRAIN_OPTIONS_INIT;
    o.vocab_size = 256 + MERGES;
    mtft_tokenizer *tok = NULL;
    ck_assert_msg(mtft_tokenizer_train(&tok, text, len, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tokenizer_vocab_size(tok), 256 + MERGES);
    ck_assert_int_eq(mtft_tokenizer_n_merges(tok), MERGES);
    for (int m = 0; m < MERGES; m++) {
        size_t bl;
        const char *b = mtft_tokenizer_token_bytes(tok, 256 + m, &bl);
        ck_assert_msg(bl == ref[m].len && memcmp(b, ref[m].bytes, bl) == 0,
                      "merge %d: learned '%.*s', brute force '%.*s'", m, (int)bl, b, (int)ref[m].len, ref[m].bytes);
    }
    mtft_tokenizer_free(tok);
    /* min_frequency stops training early */
    o.vocab_size = 4096;
    o.min_frequency = 40;
    ck_assert_int_eq(mtft_tokenizer_train(&tok, text, len, &o), MTFT_OK);
    ref_tok *ref2 = malloc(300 * sizeof *ref2);
    int n2 = reference_train(text, len, 300, 40, ref2);
    ck_assert_int_lt(n2, 300);
    ck_assert_int_gt(n2, 5);
    ck_assert_int_eq(mtft_tokenizer_n_merges(tok), n2);
    ck_assert_int_eq(mtft_tokenizer_vocab_size(tok), 256 + n2);
    free(ref2);
    mtft_tokenizer_free(tok);
    free(text);
}
END_TEST

static int files_equal(const char *a, const char *b) {
    size_t la, lb;
    char *x = read_all(a, &la), *y = read_all(b, &lb);
    int eq = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return eq;
}

START_TEST(test_tok_train_save_load) {
    size_t len, mlen;
    char *text = fixture("moby_dick_50k.txt", &len);
    char *mixed = fixture("mixed.txt", &mlen);
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    mtft_bpe_train_options o = MTFT_BPE_TRAIN_OPTIONS_INIT;
    o.vocab_size = 1024;
    o.special_tokens = specials;
    o.n_special_tokens = 2;
    mtft_tokenizer *tok = NULL;
    ck_assert_msg(mtft_tokenizer_train(&tok, text, len, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tokenizer_vocab_size(tok), 1024);
    ck_assert_int_eq(mtft_tokenizer_n_merges(tok), 1024 - 256 - 2);
    ck_assert_int_eq(mtft_tokenizer_token_to_id(tok, "<|endoftext|>"), 1022);
    ck_assert_int_eq(mtft_tokenizer_token_to_id(tok, "<|pad|>"), 1023);
    ck_assert(mtft_tokenizer_is_special(tok, 1022));
    int32_t the = mtft_tokenizer_token_to_id(tok, "\xc4\xa0the"); /* " the" is an early merge */
    ck_assert_int_ge(the, 256);
    ck_assert_int_lt(the, 300);

    size_t n;
    int32_t *ids = encode(tok, text, len, &n);
    ck_assert_msg(n * 2 < len, "compression: %zu ids for %zu bytes", n, len); /* > 2 bytes per token */
    free(ids);
    assert_roundtrip(tok, text, len, "training text");
    assert_roundtrip(tok, mixed, mlen, "mixed text with the trained tokenizer");

    char vp[1024], mp[1024], vp2[1024], mp2[1024];
    tmp_path(vp, sizeof vp, "trained_vocab.json");
    tmp_path(mp, sizeof mp, "trained_merges.txt");
    ck_assert_msg(mtft_tokenizer_save_hf(tok, vp, mp) == MTFT_OK, "%s", mtft_error_last()->message);
    mtft_tokenizer *back = NULL;
    ck_assert_msg(mtft_tokenizer_load_hf(&back, vp, mp) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_int_eq(mtft_tokenizer_vocab_size(back), 1024);
    ck_assert_int_eq(mtft_tokenizer_n_merges(back), 766);
    ck_assert(mtft_tokenizer_is_special(back, 1022)); /* "<|...|>" spelling */
    size_t na, nb;
    int32_t *a = encode(tok, mixed, mlen, &na);
    int32_t *b = encode(back, mixed, mlen, &nb);
    ck_assert_uint_eq(na, nb);
    for (size_t k = 0; k < na; k++) ck_assert_int_eq(a[k], b[k]);
    free(a);
    free(b);
    for (int32_t id = 0; id < 1024; id++)
        ck_assert_str_eq(mtft_tokenizer_id_to_token(tok, id), mtft_tokenizer_id_to_token(back, id));

    /* deterministic: training again writes the same files */
    mtft_tokenizer *again = NULL;
    ck_assert_int_eq(mtft_tokenizer_train(&again, text, len, &o), MTFT_OK);
    tmp_path(vp2, sizeof vp2, "trained_vocab2.json");
    tmp_path(mp2, sizeof mp2, "trained_merges2.txt");
    ck_assert_int_eq(mtft_tokenizer_save_hf(again, vp2, mp2), MTFT_OK);
    ck_assert(files_equal(vp, vp2));
    ck_assert(files_equal(mp, mp2));
    size_t ml;
    char *merges = read_all(mp, &ml);
    ck_assert(strncmp(merges, "#version: 0.2\n", 14) == 0);
    free(merges);

    /* special tokens in the training text are not learned from */
    char *with = malloc(len * 2);
    size_t wl = 0;
    for (int r = 0; r < 200; r++) {
        memcpy(with + wl, "<|endoftext|>", 13);
        wl += 13;
        memcpy(with + wl, text + r * 100, 100);
        wl += 100;
    }
    mtft_tokenizer *sp = NULL;
    o.vocab_size = 400;
    ck_assert_int_eq(mtft_tokenizer_train(&sp, with, wl, &o), MTFT_OK);
    for (int32_t id = 256; id < 398; id++) {
        size_t bl;
        const char *bb = mtft_tokenizer_token_bytes(sp, id, &bl);
        ck_assert_msg(!memchr(bb, '|', bl), "learned token '%.*s' comes from a special token", (int)bl, bb);
    }
    free(with);
    mtft_tokenizer_free(sp);
    sp = NULL;

    o.vocab_size = 100;
    ck_assert_int_eq(mtft_tokenizer_train(&sp, text, len, &o), MTFT_EINVAL);
    o.vocab_size = 1000;
    o.version = 99;
    ck_assert_int_eq(mtft_tokenizer_train(&sp, text, len, &o), MTFT_EINVAL);
    ck_assert_int_eq(mtft_tokenizer_save_hf(tok, "/nonexistent/dir/v.json", mp), MTFT_EIO);
    assert_msg_has("/nonexistent/dir/v.json");

    mtft_tokenizer_free(sp);
    mtft_tokenizer_free(again);
    mtft_tokenizer_free(back);
    mtft_tokenizer_free(tok);
    remove(vp);
    remove(mp);
    remove(vp2);
    remove(mp2);
    free(text);
    free(mixed);
}
END_TEST

static Suite *tokenizer_suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_tok_gpt2_reference_ids);
    tcase_add_test(tc, test_tok_known_tokens);
    tcase_add_test(tc, test_tok_python_not_js_whitespace);
    tcase_add_test(tc, test_tok_pretok_python_regex);
    tcase_add_test(tc, test_tok_pretok_cases);
    tcase_add_test(tc, test_tok_roundtrip_any_bytes);
    tcase_add_test(tc, test_tok_bpe_heap_matches_reference);
    tcase_add_test(tc, test_tok_encode_decode_buffers);
    tcase_add_test(tc, test_tok_special_tokens);
    tcase_add_test(tc, test_tok_load_tokenizer_json);
    tcase_add_test(tc, test_tok_load_errors);
    tcase_add_test(tc, test_tok_load_fuzz);
    tcase_add_test(tc, test_tok_train_matches_brute_force);
    tcase_add_test(tc, test_tok_train_save_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(tokenizer_suite()); }
