/* ctest-labels: unit */
/* Data: task definitions, JSONL/CSV/TSV parsing, templates, every bad-input
 * path (error and skip), splits, caching, loader order and bucketing,
 * padding, truncation and packing. Uses GPT-2's tokenizer from
 * data/tokenizer/gpt2 and small real fixtures from tests/fixtures/data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_impl.h"
#include "mtft/data.h"
#include "mtft/task.h"
#include "mtft_test.h"

static mtft_tokenizer *g_tok;
static char g_dir[256];

static void setup_all(void) {
    g_tok = mtft_test_gpt2_tokenizer();
    snprintf(g_dir, sizeof g_dir, "/tmp/mtft_check_data_XXXXXX");
    if (!mkdtemp(g_dir)) exit(1);
}

static void teardown_all(void) {
    mtft_tokenizer_free(g_tok);
    g_tok = NULL;
    mtft_test_rm_rf(g_dir);
}

/* Write content to <tmp>/name; returns the path (static ring of buffers). */
static const char *wfile(const char *name, const char *content) {
    static char bufs[8][512];
    static int k;
    char *p = bufs[k++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
    return p;
}

static const char *fixture(const char *name) {
    static char bufs[4][512];
    static int k;
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/data/%s", name);
    return mtft_test_path(bufs[k++ % 4], 512, rel);
}

static mtft_data_options quiet(void) {
    mtft_data_options d = MTFT_DATA_OPTIONS_INIT;
    d.log_progress = 0;
    return d;
}

/* Load a task; returns the status (the task stays in *out even on error). */
static int load(const mtft_task_options *o, mtft_task **out) {
    mtft_data_options d = quiet();
    int rc = mtft_task_new(out, o);
    if (rc < 0) return rc;
    return mtft_task_load(*out, g_tok, &d);
}

static int enc(const char *text, int32_t *ids, size_t cap) {
    size_t n = 0;
    ck_assert_int_eq(mtft_tokenizer_encode(g_tok, text, strlen(text), ids, cap, &n), MTFT_OK);
    return (int)n;
}

static void assert_ids(const int32_t *got, int n_got, const char *text) {
    int32_t want[512];
    int n = enc(text, want, 512);
    ck_assert_msg(n == n_got, "'%s': %d ids, expected %d", text, n_got, n);
    for (int i = 0; i < n; i++) ck_assert_msg(got[i] == want[i], "'%s': id %d is %d, expected %d", text, i, got[i], want[i]);
}

#define ASSERT_ERR(rc, code, ...)                                                                   \
    do {                                                                                            \
        ck_assert_int_eq((rc), (code));                                                             \
        const char *subs_[] = {__VA_ARGS__};                                                        \
        for (size_t i_ = 0; i_ < sizeof subs_ / sizeof subs_[0]; i_++)                              \
            ck_assert_msg(strstr(mtft_error_last()->message, subs_[i_]) != NULL,                    \
                          "message '%s' lacks '%s'", mtft_error_last()->message, subs_[i_]);        \
    } while (0)

/* ---- templates --------------------------------------------------------------------- */

START_TEST(test_data_template) {
    const char *names[] = {"text", "n"};
    const char *vals[] = {"Anna", "3"};
    char buf[64];
    size_t len = 0;
    ck_assert_int_eq(mtft_template_render("Name: {text} ({n}) {{x}} }}", names, vals, 2, buf, sizeof buf, &len), MTFT_OK);
    ck_assert_str_eq(buf, "Name: Anna (3) {x} }");
    ck_assert_uint_eq(len, strlen("Name: Anna (3) {x} }"));
    /* too small: ERANGE with the needed length */
    ck_assert_int_eq(mtft_template_render("Name: {text}", names, vals, 2, buf, 5, &len), MTFT_ERANGE);
    ck_assert_uint_eq(len, 10);
    /* no value */
    ASSERT_ERR(mtft_template_render("ab{zzz}", names, vals, 2, buf, sizeof buf, &len), MTFT_ENOTFOUND, "position 3",
               "{zzz}");
    /* syntax errors name the position */
    ASSERT_ERR(mtft_template_check("abc {text", NULL, 0), MTFT_EINVAL, "position 5", "unclosed");
    ASSERT_ERR(mtft_template_check("a}b", NULL, 0), MTFT_EINVAL, "position 2", "unmatched");
    ASSERT_ERR(mtft_template_check("x{}", NULL, 0), MTFT_EINVAL, "position 2", "empty placeholder");
    ASSERT_ERR(mtft_template_check("{a b}", NULL, 0), MTFT_EINVAL, "position 3", "invalid character");
    /* unknown placeholder against a field list */
    ASSERT_ERR(mtft_template_check("Q: {text} {lable}", names, 2), MTFT_ENOTFOUND, "position 11", "'{lable}'",
               "text, n");
    ck_assert_int_eq(mtft_template_check("Q: {text} {n}", names, 2), MTFT_OK);
}
END_TEST

/* ---- parsing real fixtures ---------------------------------------------------------- */

START_TEST(test_data_jsonl_classification) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "name_gender";
    o.train_file = fixture("name_gender_train.jsonl");
    o.dev_file = fixture("name_gender_dev.jsonl");
    const char *metrics[] = {"accuracy", "f1_macro"};
    o.metrics = metrics;
    o.n_metrics = 2;
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 40);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_DEV), 12);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TEST), 0);
    ck_assert_int_eq(mtft_task_n_labels(t), 2);
    /* first appearance order: the file starts with "Moses", male */
    ck_assert_str_eq(mtft_task_label(t, 0), "male");
    ck_assert_str_eq(mtft_task_label(t, 1), "female");
    ck_assert_int_eq(mtft_task_label_id(t, "female"), 1);
    ck_assert_int_eq(mtft_task_n_metrics(t), 2);
    ck_assert_str_eq(mtft_task_metric(t, 1), "macro_f1"); /* the alias f1_macro, stored canonical */
    ck_assert_ptr_null(mtft_task_select_metric(t));         /* the type default */
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    assert_ids(ex.ids, ex.n_ids, "Moses");
    ck_assert_int_eq(ex.n_labels, 1);
    ck_assert_int_eq(ex.labels[0], 0);
    ck_assert_int_eq(ex.line, 1);
    ck_assert_ptr_null(ex.tags);
    /* every example's label matches the file, checked against a reparse */
    FILE *f = fopen(o.train_file, "r");
    char line[512];
    int64_t i = 0, n_female = 0;
    while (fgets(line, sizeof line, f)) {
        ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, i, &ex), MTFT_OK);
        int female = strstr(line, "\"label\":\"female\"") != NULL;
        n_female += female;
        ck_assert_int_eq(ex.labels[0], female ? 1 : 0);
        ck_assert_int_eq(ex.line, i + 1);
        i++;
    }
    fclose(f);
    ck_assert_int_eq(i, 40);
    ck_assert_int_gt(n_female, 0);
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_DEV, 11, &ex), MTFT_OK);
    ck_assert_int_eq(ex.file, 1);
    ASSERT_ERR(mtft_task_example(t, MTFT_SPLIT_DEV, 12, &ex), MTFT_ERANGE, "dev");
    mtft_task_free(t);
}
END_TEST

START_TEST(test_data_regression) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "afinn";
    o.type = MTFT_TASK_REGRESSION;
    o.train_file = fixture("afinn_valence_train.jsonl");
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 30);
    ck_assert_int_eq(mtft_task_n_labels(t), 0);
    mtft_example ex;
    /* {"text":"danger","value":-2.0} then {"text":"gun","value":-1.0} */
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    ck_assert_float_eq(ex.value, -2.0f);
    assert_ids(ex.ids, ex.n_ids, "danger");
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_float_eq(ex.value, -1.0f);
    ck_assert_ptr_null(ex.labels);
    mtft_task_free(t);
}
END_TEST

START_TEST(test_data_tagging_alignment) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "kjv";
    o.type = MTFT_TASK_TAGGING;
    o.train_file = fixture("kjv_word_alignment_train.jsonl");
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 20);
    ck_assert_int_eq(mtft_task_n_labels(t), 3); /* W, O, ADD */
    ck_assert_int_ge(mtft_task_label_id(t, "ADD"), 0);
    /* example 0: "Woe be unto the pastors ..." 19 words, tags W O O O W ... */
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    assert_ids(ex.ids, ex.n_ids,
               "Woe be unto the pastors that destroy and scatter the sheep of my pasture ! saith the LORD .");
    int words = 0;
    for (int i = 0; i < ex.n_ids; i++) words += ex.tags[i] != MTFT_IGNORE_INDEX;
    ck_assert_int_eq(words, 19);
    ck_assert_int_eq(ex.tags[0], mtft_task_label_id(t, "W"));
    ck_assert_int_eq(ex.tags[1] == MTFT_IGNORE_INDEX || ex.tags[1] == mtft_task_label_id(t, "O"), 1);
    mtft_task_free(t);

    /* a word of several sub-tokens: only the first carries the tag */
    const char *p = wfile("tag.jsonl", "{\"tokens\":[\"Unbelievably\",\"ok\"],\"tags\":[\"B\",\"O\"]}\n");
    o.name = "tag";
    o.train_file = p;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    int32_t w0[16], w1[16];
    int n0 = enc("Unbelievably", w0, 16), n1 = enc(" ok", w1, 16);
    ck_assert_int_gt(n0, 1);
    ck_assert_int_eq(ex.n_ids, n0 + n1);
    ck_assert_int_eq(ex.tags[0], 0);
    for (int i = 1; i < n0; i++) ck_assert_int_eq(ex.tags[i], MTFT_IGNORE_INDEX);
    ck_assert_int_eq(ex.tags[n0], 1);
    mtft_task_free(t);
}
END_TEST

START_TEST(test_data_generation_and_template) {
    const char *p = wfile("gen.jsonl", "{\"input\":\"NASA\",\"target\":\"National Aeronautics\"}\n"
                                       "\n"
                                       "{\"input\":\"CPU\",\"target\":\"Central Processing Unit\",\"n\":3}\n");
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "acro";
    o.type = MTFT_TASK_GENERATION;
    o.train_file = p;
    o.prompt_template = "Expand {input}:";
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 2);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_int_eq(ex.line, 3); /* the blank line counts */
    int32_t pr[64], tg[64];
    int np = enc("Expand CPU:", pr, 64), nt = enc("Central Processing Unit", tg, 64);
    ck_assert_int_eq(ex.n_prompt, np);
    ck_assert_int_eq(ex.n_ids, np + nt + 1);
    assert_ids(ex.ids, np, "Expand CPU:");
    assert_ids(ex.ids + np, nt, "Central Processing Unit");
    ck_assert_int_eq(ex.ids[np + nt], mtft_tokenizer_token_to_id(g_tok, "<|endoftext|>"));
    mtft_task_free(t);

    /* a number field in the template is written as text; no eos when disabled */
    o.prompt_template = "{input} x{n}";
    o.on_bad_example = MTFT_ON_BAD_SKIP;
    mtft_data_options d = quiet();
    d.eos_token = NULL;
    ck_assert_int_eq(mtft_task_new(&t, &o), MTFT_OK);
    ck_assert_int_eq(mtft_task_load(t, g_tok, &d), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 1); /* line 1 has no n */
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_MISSING_FIELD), 1);
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    np = enc("CPU x3", pr, 64);
    ck_assert_int_eq(ex.n_prompt, np);
    ck_assert_int_eq(ex.n_ids, np + nt);
    /* an unknown eos token is an error */
    d.eos_token = "<|nope|>";
    ASSERT_ERR(mtft_task_load(t, g_tok, &d), MTFT_ENOTFOUND, "<|nope|>");
    mtft_task_free(t);
}
END_TEST

START_TEST(test_data_multilabel) {
    const char *p = wfile("ml.jsonl", "{\"text\":\"a\",\"label\":[\"x\",\"y\",\"x\"]}\n"
                                      "{\"text\":\"b\",\"label\":[]}\n"
                                      "{\"text\":\"c\",\"label\":[\"z\"]}\n");
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ml";
    o.type = MTFT_TASK_MULTILABEL;
    o.train_file = p;
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_n_labels(t), 3);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    ck_assert_int_eq(ex.n_labels, 2); /* repeats dropped */
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_int_eq(ex.n_labels, 0);
    mtft_batch b;
    mtft_batch_init(&b);
    mtft_example_ref refs[3] = {{0, 0, 0}, {0, 0, 1}, {0, 0, 2}};
    mtft_collate_options co = MTFT_COLLATE_OPTIONS_INIT;
    ck_assert_int_eq(mtft_batch_collate(&b, &t, 1, refs, 3, &co), MTFT_OK);
    ck_assert_int_eq(b.label_width, 3);
    float want[9] = {1, 1, 0, 0, 0, 0, 0, 0, 1};
    mtft_assert_close(b.multi_labels, want, 9, 0, 0, "multi-hot");
    ck_assert_int_eq(b.labels[0], -1);
    mtft_batch_dispose(&b);
    mtft_task_free(t);
}
END_TEST

START_TEST(test_data_csv_tsv) {
    /* RFC 4180: quoted separators, doubled quotes, a line break inside quotes, CRLF */
    const char *p = wfile("c.csv", "text,label\r\n"
                                   "\"Hello, world\",pos\r\n"
                                   "\"He said \"\"no\"\"\",neg\r\n"
                                   "\"two\nlines\",pos\r\n"
                                   "\r\n"
                                   "plain,neg\r\n");
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "csv";
    o.train_file = p;
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 4);
    mtft_example ex;
    const char *texts[] = {"Hello, world", "He said \"no\"", "two\nlines", "plain"};
    const int lines[] = {2, 3, 4, 7};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, i, &ex), MTFT_OK);
        assert_ids(ex.ids, ex.n_ids, texts[i]);
        ck_assert_int_eq(ex.line, lines[i]);
        ck_assert_int_eq(ex.labels[0], i % 2 == 0 ? 0 : 1);
    }
    mtft_task_free(t);

    /* TSV with lists split on spaces, and a template over the header */
    p = wfile("c.tsv", "id\tsentence\ttags\n7\tIn the beginning\tO O W\n");
    o.name = "tsv";
    o.type = MTFT_TASK_TAGGING;
    o.train_file = p;
    o.tokens_field = "sentence";
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    assert_ids(ex.ids, ex.n_ids, "In the beginning");
    ck_assert_int_eq(mtft_task_n_labels(t), 2);
    mtft_task_free(t);

    /* regression values from CSV cells, template placeholder checked against the header */
    p = wfile("r.csv", "word,score\ngood,3\nbad,-2.5\n");
    mtft_task_options r = MTFT_TASK_OPTIONS_INIT;
    r.name = "reg";
    r.type = MTFT_TASK_REGRESSION;
    r.train_file = p;
    r.value_field = "score";
    r.prompt_template = "Word: {word}";
    ck_assert_int_eq(load(&r, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_float_eq(ex.value, -2.5f);
    assert_ids(ex.ids, ex.n_ids, "Word: bad");
    mtft_task_free(t);
    r.prompt_template = "Word: {wrod}";
    ASSERT_ERR(load(&r, &t), MTFT_ENOTFOUND, "position 7", "{wrod}", "word, score", "r.csv");
    mtft_task_free(t);
}
END_TEST

START_TEST(test_data_csv_errors) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "csv";
    mtft_task *t = NULL;
    o.train_file = wfile("e1.csv", "text,label\nok,a\n\"never closed,b\nmore,c\n");
    ASSERT_ERR(load(&o, &t), MTFT_EFORMAT, "e1.csv:3:1:", "unterminated");
    mtft_task_free(t);
    o.train_file = wfile("e2.csv", "text,label\nok,a\nbad\"quote,b\n");
    ASSERT_ERR(load(&o, &t), MTFT_EFORMAT, "e2.csv:3:4:", "quote inside an unquoted field");
    mtft_task_free(t);
    o.train_file = wfile("e3.csv", "text,label\nok,a\none,two,three\n");
    ASSERT_ERR(load(&o, &t), MTFT_EFORMAT, "e3.csv:3:", "3 fields", "header has 2");
    mtft_task_free(t);
    o.train_file = wfile("e4.csv", "text,label\n\"x\"y,a\n");
    ASSERT_ERR(load(&o, &t), MTFT_EFORMAT, "e4.csv:2:4:", "after a closing quote");
    mtft_task_free(t);
    o.train_file = wfile("e5.csv", "");
    ASSERT_ERR(load(&o, &t), MTFT_EFORMAT, "e5.csv", "no header");
    mtft_task_free(t);
    /* with skip, a bad row is counted and the reader resumes on the next line */
    o.train_file = wfile("e6.csv", "text,label\nok,a\nbad\"quote,b\nfine,b\n");
    o.on_bad_example = MTFT_ON_BAD_SKIP;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 2);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_SYNTAX), 1);
    mtft_task_free(t);
}
END_TEST

/* ---- bad input, each case --------------------------------------------------------- */

static void expect_bad(mtft_task_type type, const char *content, const char *const *labels, int n_labels,
                       const char *s1, const char *s2) {
    if (!s2) s2 = s1;
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "bad";
    o.type = type;
    o.labels = labels;
    o.n_labels = n_labels;
    o.train_file = wfile("bad.jsonl", content);
    mtft_task *t = NULL;
    ASSERT_ERR(load(&o, &t), MTFT_EFORMAT, s1, s2);
    mtft_task_free(t);
}

START_TEST(test_data_bad_each) {
    const char *ok = "{\"text\":\"fine\",\"label\":\"a\"}\n";
    char buf[512];
    /* malformed JSON: line and column */
    snprintf(buf, sizeof buf, "%s%s{\"text\": \"x\", \"label\" \"a\"}\n", ok, ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:3:23: malformed JSON near '\"a\"}'", NULL);
    expect_bad(MTFT_TASK_CLASSIFICATION, "{\"text\":\"x\",\"label\":\"a\"\n", NULL, 0, "bad.jsonl:1:",
               "malformed JSON");
    expect_bad(MTFT_TASK_CLASSIFICATION, "[1,2]\n", NULL, 0, "bad.jsonl:1:", "expected a JSON object");
    /* the column points into the line */
    snprintf(buf, sizeof buf, "%s{\"text\":\"x\",,}\n", ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:2:1", "malformed");
    /* missing field */
    snprintf(buf, sizeof buf, "%s{\"txt\":\"x\",\"label\":\"a\"}\n", ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:2:", "missing field 'text'");
    snprintf(buf, sizeof buf, "%s{\"text\":\"x\"}\n", ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:2:", "missing field 'label'");
    /* wrong type */
    snprintf(buf, sizeof buf, "%s{\"text\":5,\"label\":\"a\"}\n", ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:2:", "field 'text': expected a string, got number");
    snprintf(buf, sizeof buf, "%s{\"text\":\"x\",\"label\":[\"a\"]}\n", ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:2:", "field 'label'");
    expect_bad(MTFT_TASK_CLASSIFICATION, "{\"text\":\"x\",\"label\":1.5}\n", NULL, 0, "bad.jsonl:1:",
               "field 'label': expected a string or an integer label, got a non-integer number");
    expect_bad(MTFT_TASK_REGRESSION, "{\"text\":\"x\",\"value\":\"high\"}\n", NULL, 0, "bad.jsonl:1:",
               "field 'value': expected a number, got string");
    expect_bad(MTFT_TASK_TAGGING, "{\"tokens\":[\"a\",3],\"tags\":[\"O\",\"O\"]}\n", NULL, 0, "bad.jsonl:1:",
               "field 'tokens': element 1");
    /* label outside the label set */
    const char *labels[] = {"a", "b"};
    snprintf(buf, sizeof buf, "%s{\"text\":\"x\",\"label\":\"c\"}\n", ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, labels, 2, "bad.jsonl:2:", "label 'c' is not in the label set (a, b)");
    expect_bad(MTFT_TASK_TAGGING, "{\"tokens\":[\"x\"],\"tags\":[\"c\"]}\n", labels, 2, "bad.jsonl:1:",
               "field 'tags': tag 'c'");
    /* empty text */
    snprintf(buf, sizeof buf, "%s%s{\"text\":\"  \",\"label\":\"a\"}\n", ok, ok);
    expect_bad(MTFT_TASK_CLASSIFICATION, buf, NULL, 0, "bad.jsonl:3:", "field 'text': empty text");
    expect_bad(MTFT_TASK_GENERATION, "{\"input\":\"x\",\"target\":\"\"}\n", NULL, 0, "bad.jsonl:1:",
               "field 'target': empty target");
    expect_bad(MTFT_TASK_TAGGING, "{\"tokens\":[],\"tags\":[]}\n", NULL, 0, "bad.jsonl:1:", "empty token list");
    /* tags/tokens length mismatch */
    expect_bad(MTFT_TASK_TAGGING, "{\"tokens\":[\"a\",\"b\",\"c\"],\"tags\":[\"O\",\"O\"]}\n", NULL, 0,
               "bad.jsonl:1:", "fields 'tokens' and 'tags': 3 tokens but 2 tags");
}
END_TEST

START_TEST(test_data_missing_file) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "gone";
    o.train_file = fixture("name_gender_train.jsonl");
    o.dev_file = "/nonexistent/dir/dev.jsonl";
    mtft_task *t = NULL;
    ASSERT_ERR(load(&o, &t), MTFT_EIO, "task 'gone'", "dev_file", "/nonexistent/dir/dev.jsonl", "cannot open");
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 0);
    /* with a cache the key computation reads the files: the same error */
    mtft_data_options d = quiet();
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache_missing", g_dir);
    d.cache_dir = cache;
    ASSERT_ERR(mtft_task_load(t, g_tok, &d), MTFT_EIO, "dev_file", "/nonexistent/dir/dev.jsonl");
    mtft_task_free(t);
}
END_TEST

typedef struct logcap {
    int n_warn;
    char last[1024];
} logcap;

static void capture(mtft_log_level level, const char *msg, void *payload) {
    logcap *c = payload;
    if (level == MTFT_LOG_WARN) {
        c->n_warn++;
        snprintf(c->last, sizeof c->last, "%s", msg);
    }
}

START_TEST(test_data_skip_counts) {
    const char *content = "{\"text\":\"good one\",\"label\":\"a\"}\n"
                          "{\"text\":\"x\",\"label\" \"a\"}\n"      /* syntax */
                          "{\"label\":\"a\"}\n"                     /* missing */
                          "{\"text\":1,\"label\":\"a\"}\n"          /* wrong type */
                          "{\"text\":\"x\",\"label\":\"zzz\"}\n"    /* unknown label */
                          "{\"text\":\"\",\"label\":\"b\"}\n"       /* empty */
                          "{\"text\":\"\",\"label\":\"b\"}\n"       /* empty */
                          "{\"text\":\"good two\",\"label\":\"b\"}\n";
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "skippy";
    o.train_file = wfile("skip.jsonl", content);
    const char *labels[] = {"a", "b"};
    o.labels = labels;
    o.n_labels = 2;
    o.on_bad_example = MTFT_ON_BAD_SKIP;
    logcap c = {0, ""};
    mtft_log_set(capture, &c);
    mtft_task *t = NULL;
    int rc = load(&o, &t);
    mtft_log_set(NULL, NULL);
    ck_assert_int_eq(rc, MTFT_OK);
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), 2);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_SYNTAX), 1);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_MISSING_FIELD), 1);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_WRONG_TYPE), 1);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_UNKNOWN_LABEL), 1);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_EMPTY), 2);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_LENGTH), 0);
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_N_REASONS), 6);
    /* one summary line plus the first five skips, each named */
    ck_assert_int_eq(c.n_warn, 6);
    ck_assert_msg(strstr(c.last, "skipped 6 bad examples") && strstr(c.last, "empty: 2") &&
                      strstr(c.last, "unknown_label: 1"),
                  "summary: %s", c.last);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_int_eq(ex.line, 8);
    ck_assert_int_eq(ex.labels[0], 1);
    mtft_task_free(t);
    ck_assert_str_eq(mtft_bad_reason_name(MTFT_BAD_LENGTH), "length_mismatch");
}
END_TEST

START_TEST(test_data_options_errors) {
    mtft_task *t = NULL;
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.train_file = "x.jsonl";
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "name");
    o.name = "bad name!";
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "bad name!");
    o.name = "t";
    o.train_file = NULL;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "train_file is required");
    o.train_file = "x.jsonl";
    const char *m[] = {"accuracy", "rmse"};
    o.metrics = m;
    o.n_metrics = 2;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_ENOTFOUND, "metrics[1] 'rmse'", "(expected one of: accuracy, macro_f1, mcc)");
    /* names the trainer never computes for the type are errors, not silent */
    const char *m2[] = {"f1_micro"};
    o.metrics = m2;
    o.n_metrics = 1;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_ENOTFOUND, "metrics[0] 'f1_micro' is not a classification metric",
               "accuracy, macro_f1, mcc");
    o.metrics = m;
    o.select_metric = "r2";
    o.n_metrics = 1;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_ENOTFOUND, "task 't': select_metric 'r2' is not a classification metric",
               "accuracy, macro_f1, mcc");
    o.select_metric = NULL;
    o.n_metrics = 1;
    o.dev_fraction = 1.5;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_ERANGE, "dev_fraction 1.5");
    o.dev_fraction = 0.6;
    o.test_fraction = 0.4;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_ERANGE, "leaves no training data");
    o.test_fraction = 0;
    o.dev_file = "d.jsonl";
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "dev_file and as dev_fraction");
    o.dev_file = NULL;
    o.dev_fraction = 0;
    o.prompt_template = "Q: {text";
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "prompt_template", "position 4");
    o.prompt_template = NULL;
    const char *dup[] = {"a", "a"};
    o.labels = dup;
    o.n_labels = 2;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "'a' appears twice");
    o.n_labels = 0;
    o.type = MTFT_TASK_TAGGING;
    o.n_metrics = 0;
    o.prompt_template = "{text}";
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "tagging tasks take no prompt_template");
    o.prompt_template = NULL;
    o.version = 99;
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_EINVAL, "version 99");
    ck_assert_ptr_null(t);
    ck_assert_int_eq(mtft_task_metric_valid(MTFT_TASK_REGRESSION, "rmse"), 1);
    ck_assert_int_eq(mtft_task_metric_valid(MTFT_TASK_REGRESSION, "accuracy"), 0);
}
END_TEST

/* One metric vocabulary: canonical names per type, aliases, select_metric. */
START_TEST(test_data_metric_names) {
    /* the table, in order */
    ck_assert_str_eq(mtft_task_type_metric(MTFT_TASK_CLASSIFICATION, 0), "accuracy");
    ck_assert_str_eq(mtft_task_type_metric(MTFT_TASK_CLASSIFICATION, 2), "mcc");
    ck_assert_ptr_null(mtft_task_type_metric(MTFT_TASK_CLASSIFICATION, 3));
    ck_assert_ptr_null(mtft_task_type_metric(MTFT_TASK_CLASSIFICATION, -1));
    ck_assert_ptr_null(mtft_task_type_metric((mtft_task_type)99, 0));
    ck_assert_str_eq(mtft_task_type_metric(MTFT_TASK_TAGGING, 3), "span_f1");
    ck_assert_str_eq(mtft_task_type_metric(MTFT_TASK_GENERATION, 4), "chrf");
    /* aliases with an exact equivalent */
    ck_assert_str_eq(mtft_task_metric_canonical(MTFT_TASK_CLASSIFICATION, "f1_macro"), "macro_f1");
    ck_assert_str_eq(mtft_task_metric_canonical(MTFT_TASK_MULTILABEL, "f1_macro"), "macro_f1");
    ck_assert_str_eq(mtft_task_metric_canonical(MTFT_TASK_TAGGING, "f1_macro"), "tag_macro_f1");
    ck_assert_str_eq(mtft_task_metric_canonical(MTFT_TASK_TAGGING, "f1_micro"), "tag_micro_f1");
    ck_assert_str_eq(mtft_task_metric_canonical(MTFT_TASK_GENERATION, "loss"), "nll");
    ck_assert_str_eq(mtft_task_metric_canonical(MTFT_TASK_REGRESSION, "rmse"), "rmse");
    /* no computed equivalent: invalid */
    const struct {
        mtft_task_type ty;
        const char *name;
    } bad[] = {{MTFT_TASK_CLASSIFICATION, "f1_micro"}, {MTFT_TASK_MULTILABEL, "hamming"},
               {MTFT_TASK_MULTILABEL, "exact_match"},  {MTFT_TASK_MULTILABEL, "f1_micro"},
               {MTFT_TASK_REGRESSION, "r2"},           {MTFT_TASK_REGRESSION, "loss"},
               {MTFT_TASK_TAGGING, "macro_f1"},        {MTFT_TASK_GENERATION, "accuracy"},
               {MTFT_TASK_CLASSIFICATION, NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(!mtft_task_metric_valid(bad[i].ty, bad[i].name), "%s valid for %s", bad[i].name,
                      mtft_task_type_name(bad[i].ty));
        ck_assert_ptr_null(mtft_task_metric_canonical(bad[i].ty, bad[i].name));
    }
    /* normalised at mtft_task_new: metrics and select_metric */
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ner";
    o.type = MTFT_TASK_TAGGING;
    o.train_file = "x.jsonl";
    const char *ms[] = {"f1_micro", "span_f1", "f1_macro"};
    o.metrics = ms;
    o.n_metrics = 3;
    o.select_metric = "f1_macro";
    mtft_task *t = NULL;
    ck_assert_msg(mtft_task_new(&t, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_str_eq(mtft_task_metric(t, 0), "tag_micro_f1");
    ck_assert_str_eq(mtft_task_metric(t, 1), "span_f1");
    ck_assert_str_eq(mtft_task_metric(t, 2), "tag_macro_f1");
    ck_assert_str_eq(mtft_task_select_metric(t), "tag_macro_f1");
    mtft_task_free(t);
    t = NULL;
    o.select_metric = "accuracy";
    ASSERT_ERR(mtft_task_new(&t, &o), MTFT_ENOTFOUND, "select_metric 'accuracy' is not a tagging metric",
               "token_accuracy, tag_micro_f1, tag_macro_f1, span_f1");
    ck_assert_ptr_null(t);
    o.type = MTFT_TASK_GENERATION;
    o.n_metrics = 0;
    o.select_metric = "loss";
    ck_assert_msg(mtft_task_new(&t, &o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_str_eq(mtft_task_select_metric(t), "nll");
    mtft_task_free(t);
    ck_assert_ptr_null(mtft_task_select_metric(NULL));
}
END_TEST

/* ---- splits ------------------------------------------------------------------------ */

static void split_lines(const mtft_task *t, int *mark /* [41] */) {
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++)
        for (int64_t i = 0; i < mtft_task_count(t, (mtft_split)s); i++) {
            mtft_example ex;
            ck_assert_int_eq(mtft_task_example(t, (mtft_split)s, i, &ex), MTFT_OK);
            ck_assert_int_eq(mark[ex.line], -1); /* disjoint */
            mark[ex.line] = s;
        }
}

START_TEST(test_data_splits_fraction) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ng";
    o.train_file = fixture("name_gender_train.jsonl");
    o.dev_fraction = 0.25;
    o.test_fraction = 0.125;
    o.split_seed = 7;
    mtft_task *a = NULL, *b = NULL, *c = NULL;
    ck_assert_int_eq(load(&o, &a), MTFT_OK);
    ck_assert_int_eq(load(&o, &b), MTFT_OK);
    o.split_seed = 8;
    ck_assert_int_eq(load(&o, &c), MTFT_OK);
    ck_assert_int_eq(mtft_task_count(a, MTFT_SPLIT_TRAIN), 25);
    ck_assert_int_eq(mtft_task_count(a, MTFT_SPLIT_DEV), 10);
    ck_assert_int_eq(mtft_task_count(a, MTFT_SPLIT_TEST), 5);
    int ma[41], mb[41], mc[41];
    for (int i = 0; i < 41; i++) ma[i] = mb[i] = mc[i] = -1;
    split_lines(a, ma);
    split_lines(b, mb);
    split_lines(c, mc);
    int diff = 0;
    for (int i = 1; i <= 40; i++) {
        ck_assert_int_ge(ma[i], 0); /* every line lands in exactly one split */
        ck_assert_int_eq(ma[i], mb[i]); /* same seed, same split */
        diff += ma[i] != mc[i];
    }
    ck_assert_int_gt(diff, 0); /* another seed, another split */
    /* file order is kept inside a split */
    mtft_example e0, e1;
    ck_assert_int_eq(mtft_task_example(a, MTFT_SPLIT_DEV, 0, &e0), MTFT_OK);
    ck_assert_int_eq(mtft_task_example(a, MTFT_SPLIT_DEV, 1, &e1), MTFT_OK);
    ck_assert_int_lt(e0.line, e1.line);
    mtft_task_free(a);
    mtft_task_free(b);
    mtft_task_free(c);
}
END_TEST

/* ---- cache ------------------------------------------------------------------------- */

START_TEST(test_data_cache) {
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache/sub", g_dir);
    char content[4096] = "";
    FILE *f = fopen(fixture("name_gender_train.jsonl"), "r");
    ck_assert_int_eq((int)fread(content, 1, sizeof content - 1, f) > 0, 1);
    fclose(f);
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ngc";
    o.train_file = wfile("cached.jsonl", content);
    o.dev_fraction = 0.1;
    mtft_data_options d = quiet();
    d.cache_dir = cache;
    mtft_task *a = NULL, *b = NULL;
    ck_assert_int_eq(mtft_task_new(&a, &o), MTFT_OK);
    ck_assert_int_eq(mtft_task_load(a, g_tok, &d), MTFT_OK);
    ck_assert_int_eq(mtft_task_cache_hit(a), 0);
    ck_assert_ptr_nonnull(mtft_task_cache_path(a));
    char path1[512];
    snprintf(path1, sizeof path1, "%s", mtft_task_cache_path(a));
    struct stat st;
    ck_assert_int_eq(stat(path1, &st), 0);
    /* a second load (another task object) maps the same file */
    ck_assert_int_eq(mtft_task_new(&b, &o), MTFT_OK);
    ck_assert_int_eq(mtft_task_load(b, g_tok, &d), MTFT_OK);
    ck_assert_int_eq(mtft_task_cache_hit(b), 1);
    ck_assert_str_eq(mtft_task_cache_path(b), path1);
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(mtft_task_count(a, (mtft_split)s), mtft_task_count(b, (mtft_split)s));
        for (int64_t i = 0; i < mtft_task_count(a, (mtft_split)s); i++) {
            mtft_example x, y;
            mtft_task_example(a, (mtft_split)s, i, &x);
            mtft_task_example(b, (mtft_split)s, i, &y);
            ck_assert_int_eq(x.n_ids, y.n_ids);
            ck_assert_int_eq(memcmp(x.ids, y.ids, (size_t)x.n_ids * 4), 0);
            ck_assert_int_eq(x.labels[0], y.labels[0]);
            ck_assert_int_eq(x.line, y.line);
        }
    }
    ck_assert_str_eq(mtft_task_label(b, 1), mtft_task_label(a, 1));
    /* a changed data file misses (another key, another file) */
    ck_assert_int_eq(memcmp(content, "{\"text\":\"Moses", 14), 0);
    content[10] = 'x'; /* Moses -> Mxses */
    wfile("cached.jsonl", content);
    ck_assert_int_eq(mtft_task_load(b, g_tok, &d), MTFT_OK);
    ck_assert_int_eq(mtft_task_cache_hit(b), 0);
    ck_assert_str_ne(mtft_task_cache_path(b), path1);
    ck_assert_int_eq(mtft_task_load(b, g_tok, &d), MTFT_OK);
    ck_assert_int_eq(mtft_task_cache_hit(b), 1);
    /* so does a changed template */
    mtft_task_free(b);
    o.prompt_template = "Name: {text}";
    ck_assert_int_eq(mtft_task_new(&b, &o), MTFT_OK);
    ck_assert_int_eq(mtft_task_load(b, g_tok, &d), MTFT_OK);
    ck_assert_int_eq(mtft_task_cache_hit(b), 0);
    /* a corrupt cache file is rebuilt, with a warning */
    char path2[512];
    snprintf(path2, sizeof path2, "%s", mtft_task_cache_path(b));
    mtft_task_free(b);
    f = fopen(path2, "r+b");
    fseek(f, 40, SEEK_SET);
    fputc(0x7f, f);
    fputc(0x7f, f);
    fclose(f);
    logcap c = {0, ""};
    mtft_log_set(capture, &c);
    ck_assert_int_eq(mtft_task_new(&b, &o), MTFT_OK);
    int rc = mtft_task_load(b, g_tok, &d);
    mtft_log_set(NULL, NULL);
    ck_assert_int_eq(rc, MTFT_OK);
    ck_assert_int_eq(mtft_task_cache_hit(b), 0);
    ck_assert_int_eq(c.n_warn, 1);
    ck_assert_msg(strstr(c.last, "rebuilding") != NULL, "%s", c.last);
    mtft_task_free(a);
    mtft_task_free(b);
}
END_TEST

/* A cache file written in many small chunks while tokenizing holds exactly
 * what an in-memory build holds. */
START_TEST(test_data_cache_streamed) {
    size_t saved = mtft_data__flush_words;
    mtft_data__flush_words = 7;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache_streamed", g_dir);
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "kjvs";
    o.type = MTFT_TASK_TAGGING;
    o.train_file = fixture("kjv_word_alignment_train.jsonl");
    o.test_fraction = 0.2;
    o.split_seed = 5;
    mtft_task *mem = NULL, *file = NULL;
    ck_assert_int_eq(load(&o, &mem), MTFT_OK);
    mtft_data_options d = quiet();
    d.cache_dir = cache;
    ck_assert_int_eq(mtft_task_new(&file, &o), MTFT_OK);
    ck_assert_int_eq(mtft_task_load(file, g_tok, &d), MTFT_OK);
    mtft_data__flush_words = saved;
    ck_assert_int_eq(mtft_task_cache_hit(file), 0);
    ck_assert_int_eq(mtft_task_n_labels(file), mtft_task_n_labels(mem));
    int64_t total = 0;
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) {
        ck_assert_int_eq(mtft_task_count(file, (mtft_split)s), mtft_task_count(mem, (mtft_split)s));
        for (int64_t i = 0; i < mtft_task_count(mem, (mtft_split)s); i++) {
            mtft_example x, y;
            ck_assert_int_eq(mtft_task_example(mem, (mtft_split)s, i, &x), MTFT_OK);
            ck_assert_int_eq(mtft_task_example(file, (mtft_split)s, i, &y), MTFT_OK);
            ck_assert_int_eq(x.n_ids, y.n_ids);
            ck_assert_int_eq(x.line, y.line);
            ck_assert_int_eq(memcmp(x.ids, y.ids, (size_t)x.n_ids * 4), 0);
            ck_assert_int_eq(memcmp(x.tags, y.tags, (size_t)x.n_ids * 4), 0);
            total += x.n_ids;
        }
    }
    ck_assert_int_gt(total, 7 * 20); /* the pool went out in many chunks */
    ck_assert_int_eq(mtft_task_count(mem, MTFT_SPLIT_TEST), 4);
    mtft_task_free(mem);
    mtft_task_free(file);
}
END_TEST

/* ---- batches ------------------------------------------------------------------------- */

static mtft_task *gen_task(void) {
    const char *p = wfile("g.jsonl", "{\"input\":\"a\",\"target\":\"b c\"}\n"
                                     "{\"input\":\"one two three\",\"target\":\"four\"}\n"
                                     "{\"input\":\"x\",\"target\":\"y\"}\n");
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "gen";
    o.type = MTFT_TASK_GENERATION;
    o.train_file = p;
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    return t;
}

START_TEST(test_data_padding_truncation) {
    mtft_task *g = gen_task();
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ng";
    o.train_file = fixture("name_gender_train.jsonl");
    mtft_task *c = NULL;
    ck_assert_int_eq(load(&o, &c), MTFT_OK);
    mtft_task *tasks[2] = {c, g};
    mtft_example e0, e1, g1;
    mtft_task_example(c, MTFT_SPLIT_TRAIN, 0, &e0);
    mtft_task_example(c, MTFT_SPLIT_TRAIN, 1, &e1);
    mtft_task_example(g, MTFT_SPLIT_TRAIN, 1, &g1); /* "one two three" + "four" + eos: 3 + 1 + 1 */
    ck_assert_int_eq(g1.n_ids, 5);
    ck_assert_int_eq(g1.n_prompt, 3);
    mtft_example_ref refs[3] = {{0, 0, 0}, {1, 0, 1}, {0, 0, 1}};
    mtft_collate_options co = MTFT_COLLATE_OPTIONS_INIT;
    co.pad_id = 99999;
    mtft_batch b;
    mtft_batch_init(&b);
    ck_assert_int_eq(mtft_batch_collate(&b, tasks, 2, refs, 3, &co), MTFT_OK);
    ck_assert_int_eq(b.n_rows, 3);
    int maxlen = e0.n_ids > e1.n_ids ? e0.n_ids : e1.n_ids;
    if (g1.n_ids > maxlen) maxlen = g1.n_ids;
    ck_assert_int_eq(b.seq_len, maxlen); /* dynamic padding: the longest row */
    int T = b.seq_len;
    ck_assert_int_eq(b.valid_len[0], e0.n_ids);
    ck_assert_int_eq(b.valid_len[1], 5);
    ck_assert_int_eq(b.task_id[0], 0);
    ck_assert_int_eq(b.task_id[1], 1);
    ck_assert_int_eq(b.labels[0], e0.labels[0]);
    ck_assert_int_eq(b.labels[1], -1);
    ck_assert_int_eq(b.labels[2], e1.labels[0]);
    for (int t = 0; t < T; t++) {
        ck_assert_int_eq(b.ids[t], t < e0.n_ids ? e0.ids[t] : 99999);
        ck_assert_int_eq(b.segment[t], t < e0.n_ids ? 0 : -1);
        ck_assert_int_eq(b.targets[t], MTFT_IGNORE_INDEX); /* classification: no token targets */
    }
    /* generation row: targets are the next token on the target part only */
    const int32_t *tg = b.targets + T;
    ck_assert_int_eq(tg[0], MTFT_IGNORE_INDEX);
    ck_assert_int_eq(tg[1], MTFT_IGNORE_INDEX);
    ck_assert_int_eq(tg[2], g1.ids[3]); /* predicts "four" from the last prompt token */
    ck_assert_int_eq(tg[3], g1.ids[4]); /* then eos */
    ck_assert_int_eq(tg[4], MTFT_IGNORE_INDEX);
    ck_assert_int_eq(b.n_truncated, 0);

    /* truncation to 3 tokens, right and left */
    co.max_len = 3;
    ck_assert_int_eq(mtft_batch_collate(&b, tasks, 2, refs + 1, 1, &co), MTFT_OK);
    ck_assert_int_eq(b.seq_len, 3);
    ck_assert_int_eq(b.n_truncated, 1);
    ck_assert_int_eq(b.ids[0], g1.ids[0]);
    ck_assert_int_eq(b.ids[2], g1.ids[2]);
    ck_assert_int_eq(b.targets[2], MTFT_IGNORE_INDEX); /* its next token was cut */
    co.truncation = MTFT_TRUNCATE_LEFT;
    ck_assert_int_eq(mtft_batch_collate(&b, tasks, 2, refs + 1, 1, &co), MTFT_OK);
    ck_assert_int_eq(b.ids[0], g1.ids[2]);
    ck_assert_int_eq(b.ids[2], g1.ids[4]);
    ck_assert_int_eq(b.targets[0], g1.ids[3]);
    ck_assert_int_eq(b.targets[1], g1.ids[4]);
    ck_assert_int_eq(b.position[0], 0);
    /* pad_to_multiple */
    co.max_len = 64;
    co.pad_to_multiple = 8;
    ck_assert_int_eq(mtft_batch_collate(&b, tasks, 2, refs, 3, &co), MTFT_OK);
    ck_assert_int_eq(b.seq_len, 8);
    /* bad refs are named */
    mtft_example_ref badref = {1, 0, 3};
    ASSERT_ERR(mtft_batch_collate(&b, tasks, 2, &badref, 1, &co), MTFT_ERANGE, "refs[0]", "'gen'");
    badref.task = 2;
    ASSERT_ERR(mtft_batch_collate(&b, tasks, 2, &badref, 1, &co), MTFT_ERANGE, "refs[0].task = 2");
    mtft_batch_dispose(&b);
    mtft_task_free(c);
    mtft_task_free(g);
}
END_TEST

START_TEST(test_data_packing) {
    mtft_task *g = gen_task();
    mtft_example ex[3];
    for (int i = 0; i < 3; i++) mtft_task_example(g, MTFT_SPLIT_TRAIN, i, &ex[i]);
    /* lengths: "a"+"b c"+eos = 1+2+1 = 4, 5, "x"+"y"+eos = 3 */
    ck_assert_int_eq(ex[0].n_ids, 4);
    ck_assert_int_eq(ex[2].n_ids, 3);
    mtft_example_ref refs[3] = {{0, 0, 0}, {0, 0, 1}, {0, 0, 2}};
    mtft_collate_options co = MTFT_COLLATE_OPTIONS_INIT;
    co.pack = 1;
    co.max_len = 9;
    mtft_batch b;
    mtft_batch_init(&b);
    ck_assert_int_eq(mtft_batch_collate(&b, &g, 1, refs, 3, &co), MTFT_OK);
    /* next fit: row 0 = ex0 (4) + ex1 (5) = 9; row 1 = ex2 (3) */
    ck_assert_int_eq(b.n_rows, 2);
    ck_assert_int_eq(b.seq_len, 9);
    ck_assert_int_eq(b.valid_len[0], 9);
    ck_assert_int_eq(b.valid_len[1], 3);
    int T = b.seq_len;
    for (int t = 0; t < 9; t++) {
        int seg = t < 4 ? 0 : 1;
        int k = t < 4 ? t : t - 4;
        ck_assert_int_eq(b.segment[t], seg);
        ck_assert_int_eq(b.position[t], k);
        ck_assert_int_eq(b.ids[t], ex[seg == 0 ? 0 : 1].ids[k]);
    }
    /* the last token of segment 0 does not predict the first of segment 1 */
    ck_assert_int_eq(b.targets[3], MTFT_IGNORE_INDEX);
    ck_assert_int_eq(b.targets[0], ex[0].ids[1]);
    ck_assert_int_eq(b.targets[4 + 2], ex[1].ids[3]);
    ck_assert_int_eq(b.segment[T + 3], -1);
    ck_assert_int_eq(b.example[1], 2);
    /* all tokens are kept: packed count equals the sum of lengths */
    int total = 0;
    for (int r = 0; r < b.n_rows; r++) total += b.valid_len[r];
    ck_assert_int_eq(total, 4 + 5 + 3);
    /* packing is for generation tasks only */
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ng";
    o.train_file = fixture("name_gender_train.jsonl");
    mtft_task *c = NULL;
    ck_assert_int_eq(load(&o, &c), MTFT_OK);
    ASSERT_ERR(mtft_batch_collate(&b, &c, 1, refs, 1, &co), MTFT_EINVAL, "packing", "'ng'");
    mtft_task_free(c);
    mtft_batch_dispose(&b);
    mtft_task_free(g);
}
END_TEST

static int64_t padded_tokens(mtft_task *t, const mtft_loader_options *lo, int64_t *seen, int64_t n) {
    mtft_loader *ld = NULL;
    ck_assert_int_eq(mtft_loader_new(&ld, t, MTFT_SPLIT_TRAIN, lo), MTFT_OK);
    int64_t idx[64], pad = 0;
    int m;
    for (int64_t i = 0; i < n; i++) seen[i] = 0;
    while ((m = mtft_loader_next(ld, idx)) > 0) {
        int mx = 0;
        int lens[64];
        for (int k = 0; k < m; k++) {
            mtft_example ex;
            ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, idx[k], &ex), MTFT_OK);
            lens[k] = ex.n_ids;
            if (ex.n_ids > mx) mx = ex.n_ids;
            seen[idx[k]]++;
        }
        for (int k = 0; k < m; k++) pad += mx - lens[k];
    }
    ck_assert_int_eq(mtft_loader_epoch(ld), 1);
    mtft_loader_free(ld);
    return pad;
}

START_TEST(test_data_loader_bucketing) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "kjv";
    o.type = MTFT_TASK_TAGGING;
    o.train_file = fixture("kjv_word_alignment_train.jsonl");
    mtft_task *t = NULL;
    ck_assert_int_eq(load(&o, &t), MTFT_OK);
    mtft_loader_options lo = MTFT_LOADER_OPTIONS_INIT;
    lo.batch_size = 4;
    lo.seed = 3;
    int64_t seen[20];
    int64_t pad_plain = padded_tokens(t, &lo, seen, 20);
    for (int i = 0; i < 20; i++) ck_assert_int_eq(seen[i], 1);
    lo.bucket_window = 5; /* the whole split in one window */
    int64_t pad_bucket = padded_tokens(t, &lo, seen, 20);
    for (int i = 0; i < 20; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_msg(pad_bucket < pad_plain, "bucketing pads %lld tokens, plain %lld", (long long)pad_bucket,
                  (long long)pad_plain);
    /* same seed, same order; the next epoch differs */
    mtft_loader *a = NULL, *b = NULL;
    ck_assert_int_eq(mtft_loader_new(&a, t, MTFT_SPLIT_TRAIN, &lo), MTFT_OK);
    ck_assert_int_eq(mtft_loader_new(&b, t, MTFT_SPLIT_TRAIN, &lo), MTFT_OK);
    ck_assert_int_eq(mtft_loader_n_batches(a), 5);
    int64_t ia[64], ib[64], first[4];
    int ma = mtft_loader_next(a, ia), mb = mtft_loader_next(b, ib);
    ck_assert_int_eq(ma, 4);
    ck_assert_int_eq(mb, 4);
    ck_assert_int_eq(memcmp(ia, ib, 4 * sizeof ia[0]), 0);
    memcpy(first, ia, sizeof first);
    while (mtft_loader_next(a, ia) > 0) {
    }
    int differs = 0;
    for (int e = 0; e < 3 && !differs; e++) {
        ck_assert_int_eq(mtft_loader_next(a, ia), 4);
        differs = memcmp(ia, first, sizeof first) != 0;
        while (mtft_loader_next(a, ia) > 0) {
        }
    }
    ck_assert_int_eq(differs, 1);
    mtft_loader_free(a);
    mtft_loader_free(b);
    /* drop_last and bad options */
    lo.batch_size = 6;
    lo.drop_last = 1;
    ck_assert_int_eq(mtft_loader_new(&a, t, MTFT_SPLIT_TRAIN, &lo), MTFT_OK);
    ck_assert_int_eq(mtft_loader_n_batches(a), 3);
    mtft_loader_free(a);
    lo.batch_size = 0;
    ASSERT_ERR(mtft_loader_new(&a, t, MTFT_SPLIT_TRAIN, &lo), MTFT_ERANGE, "batch_size 0");
    lo.batch_size = 4;
    ASSERT_ERR(mtft_loader_new(&a, t, MTFT_SPLIT_DEV, &lo), MTFT_ESTATE, "no dev examples");
    mtft_task_free(t);
}
END_TEST

Suite *mtft_test_data_suite(void) {
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("api");
    tcase_add_unchecked_fixture(tc, setup_all, teardown_all);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_data_template);
    tcase_add_test(tc, test_data_jsonl_classification);
    tcase_add_test(tc, test_data_regression);
    tcase_add_test(tc, test_data_tagging_alignment);
    tcase_add_test(tc, test_data_generation_and_template);
    tcase_add_test(tc, test_data_multilabel);
    tcase_add_test(tc, test_data_csv_tsv);
    tcase_add_test(tc, test_data_csv_errors);
    tcase_add_test(tc, test_data_bad_each);
    tcase_add_test(tc, test_data_missing_file);
    tcase_add_test(tc, test_data_skip_counts);
    tcase_add_test(tc, test_data_options_errors);
    tcase_add_test(tc, test_data_metric_names);
    tcase_add_test(tc, test_data_splits_fraction);
    tcase_add_test(tc, test_data_cache);
    tcase_add_test(tc, test_data_cache_streamed);
    tcase_add_test(tc, test_data_padding_truncation);
    tcase_add_test(tc, test_data_packing);
    tcase_add_test(tc, test_data_loader_bucketing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_data_suite()); }
