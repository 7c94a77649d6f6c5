/* ctest-labels: unit */
/* mtft_task_encode_input: one raw record encodes to exactly the ids (and
 * tags, labels, value) the loader stored for the same record, for every task
 * type, templates with numeric fields, non-ASCII text, multi-token tagging
 * words, CSV-trained tasks, a cache hit and generation with and without eos;
 * and bad records fail naming the field instead of being skipped. Uses
 * GPT-2's tokenizer from data/tokenizer/gpt2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mtft/data.h"
#include "mtft/task.h"
#include "mtft_test.h"

static mtft_tokenizer *g_tok;
static char g_dir[256];

static void setup_all(void) {
    g_tok = mtft_test_gpt2_tokenizer();
    snprintf(g_dir, sizeof g_dir, "/tmp/mtft_check_encode_XXXXXX");
    if (!mkdtemp(g_dir)) exit(1);
}

static void teardown_all(void) {
    mtft_tokenizer_free(g_tok);
    g_tok = NULL;
    mtft_test_rm_rf(g_dir);
}

/* Write the n lines to <tmp>/name, one per line; returns the path. */
static const char *wlines(const char *name, const char *const *lines, int n) {
    static char bufs[4][512];
    static int k;
    char *p = bufs[k++ % 4];
    snprintf(p, 512, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
    return p;
}

static mtft_task *load_task(const mtft_task_options *o, const mtft_data_options *d_in) {
    mtft_data_options d = MTFT_DATA_OPTIONS_INIT;
    if (d_in) d = *d_in;
    d.log_progress = 0;
    mtft_task *t = NULL;
    ck_assert_msg(mtft_task_new(&t, o) == MTFT_OK, "%s", mtft_error_last()->message);
    ck_assert_msg(mtft_task_load(t, g_tok, &d) == MTFT_OK, "%s", mtft_error_last()->message);
    return t;
}

static int encode(const mtft_task *t, const char *json, mtft_encoded *e) {
    return mtft_task_encode_input(t, g_tok, json, strlen(json), e);
}

static void same_i32(const int32_t *got, const int32_t *want, int n, const char *what, int rec) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "record %d: %s[%d] is %d, the loader stored %d", rec, what, i, got[i],
                      want[i]);
}

/* Every train record (file order, no fractions) encodes to what the loader
 * stored: ids, n_prompt, tags, labels, value, and has_target. */
static void check_all_equal(const mtft_task *t, const char *const *recs, int n) {
    ck_assert_int_eq(mtft_task_count(t, MTFT_SPLIT_TRAIN), n);
    mtft_encoded e;
    mtft_encoded_init(&e);
    for (int i = 0; i < n; i++) {
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, i, &ex), MTFT_OK);
        ck_assert_int_eq(ex.line, i + 1);
        ck_assert_msg(encode(t, recs[i], &e) == MTFT_OK, "record %d: %s", i, mtft_error_last()->message);
        ck_assert_int_eq(e.has_target, 1);
        ck_assert_msg(e.n_ids == ex.n_ids, "record %d: %d ids, the loader stored %d", i, e.n_ids, ex.n_ids);
        ck_assert_int_eq(e.n_prompt, ex.n_prompt);
        same_i32(e.ids, ex.ids, ex.n_ids, "ids", i);
        if (ex.tags) {
            ck_assert_ptr_nonnull(e.tags);
            same_i32(e.tags, ex.tags, ex.n_ids, "tags", i);
        } else {
            ck_assert_ptr_null(e.tags);
        }
        ck_assert_int_eq(e.n_labels, ex.n_labels);
        if (ex.n_labels) same_i32(e.labels, ex.labels, ex.n_labels, "labels", i);
        ck_assert_msg(e.value == ex.value, "record %d: value %g, the loader stored %g", i, (double)e.value,
                      (double)ex.value);
    }
    mtft_encoded_dispose(&e);
}

#define ASSERT_ERR(rc, code, ...)                                                                   \
    do {                                                                                            \
        ck_assert_int_eq((rc), (code));                                                             \
        const char *subs_[] = {__VA_ARGS__};                                                        \
        for (size_t i_ = 0; i_ < sizeof subs_ / sizeof subs_[0]; i_++)                              \
            ck_assert_msg(strstr(mtft_error_last()->message, subs_[i_]) != NULL,                    \
                          "message '%s' lacks '%s'", mtft_error_last()->message, subs_[i_]);        \
    } while (0)

/* ---- equal to the loader, per task type -------------------------------------------- */

static const char *const k_cls[] = {
    "{\"text\": \"A fine film, truly.\", \"stars\": 5, \"label\": \"pos\"}",
    ("{\"stars\": 1.5, \"text\": \"Caf\\u00e9 au lait \\u65e5\\u672c\\u8a9e \\ud83d\\ude00 na\\u00efve\", \"label\": "
     "\"neg\"}"),
    "{\"text\": \"  leading and trailing spaces  \", \"stars\": -2, \"label\": 7, \"extra\": [1, {\"x\": null}]}",
    "{\"text\": \"Zürich – Ελληνικά, Кириллица\\tand a tab\", \"stars\": 3, \"label\": \"pos\"}",
};

START_TEST(test_encode_classification_template) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "cls";
    o.type = MTFT_TASK_CLASSIFICATION;
    o.train_file = wlines("cls.jsonl", k_cls, 4);
    o.prompt_template = "Review ({stars} stars): {text} {{ok}} =>";
    mtft_task *t = load_task(&o, NULL);
    ck_assert_int_eq(mtft_task_n_labels(t), 3); /* pos, neg, "7" */
    check_all_equal(t, k_cls, 4);
    /* without a label: the same ids, no labels */
    mtft_encoded e;
    mtft_encoded_init(&e);
    ck_assert_int_eq(encode(t, "{\"text\": \"A fine film, truly.\", \"stars\": 5}", &e), MTFT_OK);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    ck_assert_int_eq(e.has_target, 0);
    ck_assert_ptr_null(e.labels);
    ck_assert_int_eq(e.n_labels, 0);
    ck_assert_ptr_null(e.word_first);
    ck_assert_int_eq(e.n_ids, ex.n_ids);
    same_i32(e.ids, ex.ids, ex.n_ids, "ids", 0);
    /* the same record with a BOM and a CRLF line end */
    ck_assert_int_eq(encode(t, "\xEF\xBB\xBF{\"text\": \"A fine film, truly.\", \"stars\": 5}\r\n", &e), MTFT_OK);
    ck_assert_int_eq(e.n_ids, ex.n_ids);
    same_i32(e.ids, ex.ids, ex.n_ids, "ids", 0);
    mtft_encoded_dispose(&e);
    mtft_task_free(t);
}
END_TEST

static const char *const k_reg[] = {
    "{\"text\": \"abandon\", \"value\": -2}",
    "{\"text\": \"überwältigend gut\", \"value\": 3.25}",
    "{\"text\": \"neutral-ish words here\", \"value\": 0}",
};

START_TEST(test_encode_regression) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "reg";
    o.type = MTFT_TASK_REGRESSION;
    o.train_file = wlines("reg.jsonl", k_reg, 3);
    mtft_task *t = load_task(&o, NULL);
    check_all_equal(t, k_reg, 3);
    mtft_encoded e;
    mtft_encoded_init(&e);
    ck_assert_int_eq(encode(t, "{\"text\": \"überwältigend gut\"}", &e), MTFT_OK);
    ck_assert_int_eq(e.has_target, 0);
    ck_assert(e.value == 0.0f);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_int_eq(e.n_ids, ex.n_ids);
    same_i32(e.ids, ex.ids, ex.n_ids, "ids", 1);
    mtft_encoded_dispose(&e);
    mtft_task_free(t);
}
END_TEST

static const char *const k_tag[] = {
    ("{\"tokens\": [\"Nebuchadnezzar\", \"the\", \"king\", \"of\", \"Babylon\"], \"tags\": [\"PER\", \"O\", \"O\", \"O\", "
     "\"LOC\"]}"),
    "{\"tags\": [\"LOC\", \"O\", \"O\"], \"tokens\": [\"Zürich\", \"unbelievably\", \"\\u00e9t\\u00e9\"]}",
    "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\", \"O\"]}",
};

START_TEST(test_encode_tagging_words) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "tag";
    o.type = MTFT_TASK_TAGGING;
    o.train_file = wlines("tag.jsonl", k_tag, 3);
    mtft_task *t = load_task(&o, NULL);
    check_all_equal(t, k_tag, 3);
    mtft_encoded e;
    mtft_encoded_init(&e);
    for (int i = 0; i < 3; i++) {
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, i, &ex), MTFT_OK);
        ck_assert_int_eq(encode(t, k_tag[i], &e), MTFT_OK);
        /* word starts are exactly the positions that carry a tag */
        int n_tagged = 0;
        for (int k = 0; k < ex.n_ids; k++) n_tagged += ex.tags[k] != MTFT_IGNORE_INDEX;
        ck_assert_int_eq(e.n_words, n_tagged);
        ck_assert_int_eq(e.word_first[0], 0);
        for (int w = 0; w < e.n_words; w++) {
            ck_assert_int_ne(ex.tags[e.word_first[w]], MTFT_IGNORE_INDEX);
            if (w) ck_assert_int_gt(e.word_first[w], e.word_first[w - 1]);
        }
        if (i < 2) ck_assert_int_gt(e.n_ids, e.n_words); /* some word has several sub-tokens */
    }
    /* record 0 word by word: "Nebuchadnezzar" then " the" ... */
    ck_assert_int_eq(encode(t, k_tag[0], &e), MTFT_OK);
    int32_t want[64];
    size_t nw = 0;
    ck_assert_int_eq(mtft_tokenizer_encode(g_tok, "Nebuchadnezzar", 14, want, 64, &nw), MTFT_OK);
    ck_assert_int_gt((int)nw, 1);
    ck_assert_int_eq(e.word_first[1], (int)nw);
    same_i32(e.ids, want, (int)nw, "ids", 0);
    ck_assert_int_eq(mtft_tokenizer_encode(g_tok, " the", 4, want, 64, &nw), MTFT_OK);
    ck_assert_int_eq((int)nw, 1);
    ck_assert_int_eq(e.ids[e.word_first[1]], want[0]);
    /* prediction input: no tags field */
    ck_assert_int_eq(encode(t, "{\"tokens\": [\"Zürich\", \"unbelievably\", \"\\u00e9t\\u00e9\"]}", &e), MTFT_OK);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 1, &ex), MTFT_OK);
    ck_assert_int_eq(e.has_target, 0);
    ck_assert_ptr_null(e.tags);
    ck_assert_int_eq(e.n_words, 3);
    ck_assert_int_eq(e.n_ids, ex.n_ids);
    same_i32(e.ids, ex.ids, ex.n_ids, "ids", 1);
    mtft_encoded_dispose(&e);
    mtft_task_free(t);
}
END_TEST

static const char *const k_gen[] = {
    "{\"input\": \"NASA\", \"n\": 4, \"target\": \"National Aeronautics and Space Administration\"}",
    "{\"input\": \"\\u00e9t\\u00e9 \\u2192 summer\", \"n\": 2, \"target\": \"l'\\u00e9t\\u00e9\"}",
};

START_TEST(test_encode_generation) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "gen";
    o.type = MTFT_TASK_GENERATION;
    o.train_file = wlines("gen.jsonl", k_gen, 2);
    o.prompt_template = "Expand ({n} letters) {input}:";
    /* with the default eos, and with none */
    for (int with_eos = 1; with_eos >= 0; with_eos--) {
        mtft_data_options d = MTFT_DATA_OPTIONS_INIT;
        if (!with_eos) d.eos_token = "";
        mtft_task *t = load_task(&o, &d);
        check_all_equal(t, k_gen, 2);
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
        const int32_t eos = mtft_tokenizer_token_to_id(g_tok, "<|endoftext|>");
        ck_assert_int_eq(ex.ids[ex.n_ids - 1] == eos, with_eos);
        /* the prompt alone, as prediction gives it */
        mtft_encoded e;
        mtft_encoded_init(&e);
        ck_assert_int_eq(encode(t, "{\"input\": \"NASA\", \"n\": 4}", &e), MTFT_OK);
        ck_assert_int_eq(e.has_target, 0);
        ck_assert_int_eq(e.n_ids, ex.n_prompt);
        ck_assert_int_eq(e.n_prompt, ex.n_prompt);
        ck_assert_int_lt(ex.n_prompt, ex.n_ids);
        same_i32(e.ids, ex.ids, ex.n_prompt, "ids", 0);
        mtft_encoded_dispose(&e);
        mtft_task_free(t);
    }
}
END_TEST

static const char *const k_ml[] = {
    "{\"text\": \"red and blue\", \"label\": [\"red\", \"blue\", \"red\"]}",
    "{\"text\": \"just green\", \"label\": [\"green\"]}",
};

START_TEST(test_encode_multilabel) {
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "ml";
    o.type = MTFT_TASK_MULTILABEL;
    o.train_file = wlines("ml.jsonl", k_ml, 2);
    mtft_task *t = load_task(&o, NULL);
    check_all_equal(t, k_ml, 2);
    mtft_encoded e;
    mtft_encoded_init(&e);
    ck_assert_int_eq(encode(t, k_ml[0], &e), MTFT_OK);
    ck_assert_int_eq(e.n_labels, 2); /* a set: the repeat is dropped */
    mtft_encoded_dispose(&e);
    mtft_task_free(t);
}
END_TEST

/* A task trained from CSV: the same columns given as JSON strings encode to
 * the stored ids (tagging words as a JSON array). */
START_TEST(test_encode_csv_task) {
    char p[512];
    snprintf(p, sizeof p, "%s/c.csv", g_dir);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("text,stars,label\n\"Great, \"\"really\"\" great\",4,pos\nmeh,2,neg\n", f);
    fclose(f);
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "csv";
    o.type = MTFT_TASK_CLASSIFICATION;
    o.train_file = p;
    o.prompt_template = "{text} ({stars})";
    mtft_task *t = load_task(&o, NULL);
    const char *recs[] = {"{\"text\": \"Great, \\\"really\\\" great\", \"stars\": \"4\", \"label\": \"pos\"}",
                          "{\"text\": \"meh\", \"stars\": 2, \"label\": \"neg\"}"};
    mtft_encoded e;
    mtft_encoded_init(&e);
    for (int i = 0; i < 2; i++) {
        mtft_example ex;
        ck_assert_int_eq(mtft_task_example(t, MTFT_SPLIT_TRAIN, i, &ex), MTFT_OK);
        ck_assert_msg(encode(t, recs[i], &e) == MTFT_OK, "%s", mtft_error_last()->message);
        ck_assert_int_eq(e.n_ids, ex.n_ids);
        same_i32(e.ids, ex.ids, ex.n_ids, "ids", i);
        ck_assert_int_eq(e.labels[0], ex.labels[0]);
    }
    mtft_encoded_dispose(&e);
    mtft_task_free(t);
}
END_TEST

/* A cache hit (no build ran) encodes the same; a long input is not cut. */
START_TEST(test_encode_cache_hit_and_long) {
    static char big[40000];
    size_t off = (size_t)snprintf(big, sizeof big, "{\"text\": \"");
    for (int i = 0; i < 1500; i++) off += (size_t)snprintf(big + off, sizeof big - off, "word%d ", i);
    snprintf(big + off, sizeof big - off, "\", \"label\": \"x\"}");
    const char *recs[] = {big, "{\"text\": \"short\", \"label\": \"y\"}"};
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "cached";
    o.type = MTFT_TASK_CLASSIFICATION;
    o.train_file = wlines("cached.jsonl", recs, 2);
    char cdir[512];
    snprintf(cdir, sizeof cdir, "%s/cache", g_dir);
    mtft_data_options d = MTFT_DATA_OPTIONS_INIT;
    d.cache_dir = cdir;
    mtft_task *t1 = load_task(&o, &d);
    ck_assert_int_eq(mtft_task_cache_hit(t1), 0);
    mtft_task *t2 = load_task(&o, &d);
    ck_assert_int_eq(mtft_task_cache_hit(t2), 1);
    check_all_equal(t2, recs, 2);
    mtft_example ex;
    ck_assert_int_eq(mtft_task_example(t2, MTFT_SPLIT_TRAIN, 0, &ex), MTFT_OK);
    ck_assert_int_gt(ex.n_ids, 3000); /* far past any max_len: stored and encoded whole */
    mtft_task_free(t1);
    mtft_task_free(t2);
}
END_TEST

/* ---- bad records -------------------------------------------------------------------- */

START_TEST(test_encode_errors) {
    mtft_encoded e;
    mtft_encoded_init(&e);
    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = "cls";
    o.type = MTFT_TASK_CLASSIFICATION;
    o.train_file = wlines("cls_e.jsonl", k_cls, 4);
    o.prompt_template = "Review ({stars} stars): {text} =>";
    o.on_bad_example = MTFT_ON_BAD_SKIP; /* the loader would skip; encoding one record never does */
    mtft_task *t = NULL;
    ck_assert_int_eq(mtft_task_new(&t, &o), MTFT_OK);
    /* before the load */
    ASSERT_ERR(encode(t, k_cls[0], &e), MTFT_ESTATE, "'cls'", "not loaded");
    mtft_task_free(t);
    t = load_task(&o, NULL);
    /* a good record first: errors later must reset the output */
    ck_assert_int_eq(encode(t, k_cls[0], &e), MTFT_OK);
    ck_assert_int_gt(e.n_ids, 0);
    ASSERT_ERR(encode(t, "{\"stars\": 3}", &e), MTFT_EFORMAT, "task 'cls'", "missing field 'text'",
               "prompt_template position");
    ck_assert_int_eq(e.n_ids, 0);
    ck_assert_ptr_null(e.ids);
    ASSERT_ERR(encode(t, "{\"text\": \"ok\"}", &e), MTFT_EFORMAT, "missing field 'stars'");
    ASSERT_ERR(encode(t, "{\"text\": [\"a\"], \"stars\": 1}", &e), MTFT_EFORMAT, "field 'text'", "got array");
    ASSERT_ERR(encode(t, "{\"text\": \"  \", \"stars\": 1}", &e), MTFT_EFORMAT, "field 'text'", "empty");
    ASSERT_ERR(encode(t, "{\"text\": \"ok\", \"stars\": 1, \"label\": \"nope\"}", &e), MTFT_EFORMAT,
               "field 'label'", "'nope' is not in the label set");
    ASSERT_ERR(encode(t, "{\"text\": \"ok\", \"stars\": 1, \"label\": 1.5}", &e), MTFT_EFORMAT, "field 'label'",
               "non-integer");
    ASSERT_ERR(encode(t, "{\"text\": \"ok\", \"stars\": true}", &e), MTFT_EFORMAT, "field 'stars'", "got boolean");
    ASSERT_ERR(encode(t, "{\"text\": \"ok\" \"stars\": 1}", &e), MTFT_EFORMAT, "input column 15", "malformed JSON",
               "\"stars\"");
    ASSERT_ERR(encode(t, "{\"text\": \"ok\",\n \"stars\": }", &e), MTFT_EFORMAT, "line 2 column 11", "malformed JSON");
    ASSERT_ERR(encode(t, "{\"text\": \"ok", &e), MTFT_EFORMAT, "malformed JSON");
    ASSERT_ERR(encode(t, "[1, 2]", &e), MTFT_EFORMAT, "expected a JSON object, got array");
    ASSERT_ERR(encode(t, "  \n", &e), MTFT_EFORMAT, "empty");
    ASSERT_ERR(mtft_task_encode_input(t, g_tok, NULL, 3, &e), MTFT_EINVAL, "invalid argument");
    ASSERT_ERR(mtft_task_encode_input(t, g_tok, k_cls[0], strlen(k_cls[0]), NULL), MTFT_EINVAL, "invalid argument");
    ck_assert_int_eq(mtft_task_skipped(t, MTFT_BAD_N_REASONS), 0); /* encoding counts nothing */
    /* another tokenizer (one more token) */
    char ep[512], vp[512];
    mtft_test_path(ep, sizeof ep, "data/tokenizer/gpt2/encoder.json");
    mtft_test_path(vp, sizeof vp, "data/tokenizer/gpt2/vocab.bpe");
    mtft_tokenizer *tok2 = NULL;
    ck_assert_int_eq(mtft_tokenizer_load_gpt2(&tok2, ep, vp), MTFT_OK);
    int32_t sid = -1;
    ck_assert_int_eq(mtft_tokenizer_add_special(tok2, "<|sep|>", &sid), MTFT_OK);
    ASSERT_ERR(mtft_task_encode_input(t, tok2, k_cls[0], strlen(k_cls[0]), &e), MTFT_EINVAL, "tokenizer", "50258",
               "50257");
    mtft_tokenizer_free(tok2);
    mtft_task_free(t);

    /* tagging */
    mtft_task_options ot = MTFT_TASK_OPTIONS_INIT;
    ot.name = "tag";
    ot.type = MTFT_TASK_TAGGING;
    ot.train_file = wlines("tag_e.jsonl", k_tag, 3);
    t = load_task(&ot, NULL);
    ASSERT_ERR(encode(t, "{\"words\": [\"a\"]}", &e), MTFT_EFORMAT, "task 'tag'", "missing field 'tokens'");
    ASSERT_ERR(encode(t, "{\"tokens\": \"a b\"}", &e), MTFT_EFORMAT, "field 'tokens'", "list of strings", "string");
    ASSERT_ERR(encode(t, "{\"tokens\": [\"a\", \"b\", 3]}", &e), MTFT_EFORMAT, "field 'tokens'", "element 2",
               "got number");
    ASSERT_ERR(encode(t, "{\"tokens\": []}", &e), MTFT_EFORMAT, "field 'tokens'", "empty token list");
    ASSERT_ERR(encode(t, "{\"tokens\": [\"a\", \" \"]}", &e), MTFT_EFORMAT, "field 'tokens'", "element 1 is empty");
    ASSERT_ERR(encode(t, "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}", &e), MTFT_EFORMAT, "'tokens' and 'tags'",
               "2 tokens but 1 tags");
    ASSERT_ERR(encode(t, "{\"tokens\": [\"a\"], \"tags\": [\"ORG\"]}", &e), MTFT_EFORMAT, "field 'tags'",
               "tag 'ORG' is not in the label set");
    ASSERT_ERR(encode(t, "{\"tokens\": [\"a\"], \"tags\": \"O\"}", &e), MTFT_EFORMAT, "field 'tags'",
               "list of strings");
    mtft_task_free(t);

    /* regression and generation */
    mtft_task_options orr = MTFT_TASK_OPTIONS_INIT;
    orr.name = "reg";
    orr.type = MTFT_TASK_REGRESSION;
    orr.train_file = wlines("reg_e.jsonl", k_reg, 3);
    t = load_task(&orr, NULL);
    ASSERT_ERR(encode(t, "{\"text\": \"a\", \"value\": \"high\"}", &e), MTFT_EFORMAT, "field 'value'",
               "expected a number, got string");
    ASSERT_ERR(encode(t, "{\"text\": 5, \"value\": 1}", &e), MTFT_EFORMAT, "field 'text'", "got number");
    mtft_task_free(t);
    mtft_task_options og = MTFT_TASK_OPTIONS_INIT;
    og.name = "gen";
    og.type = MTFT_TASK_GENERATION;
    og.train_file = wlines("gen_e.jsonl", k_gen, 2);
    t = load_task(&og, NULL);
    ASSERT_ERR(encode(t, "{\"text\": \"NASA\"}", &e), MTFT_EFORMAT, "missing field 'input'");
    ASSERT_ERR(encode(t, "{\"input\": \"NASA\", \"target\": 3}", &e), MTFT_EFORMAT, "field 'target'",
               "got number");
    ASSERT_ERR(encode(t, "{\"input\": \"NASA\", \"target\": \"\"}", &e), MTFT_EFORMAT, "field 'target'",
               "empty target");
    mtft_task_free(t);
    mtft_encoded_dispose(&e);
    mtft_encoded_dispose(NULL);
}
END_TEST

Suite *mtft_test_encode_suite(void) {
    Suite *s = suite_create("encode");
    TCase *tc = tcase_create("api");
    tcase_add_unchecked_fixture(tc, setup_all, teardown_all);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_encode_classification_template);
    tcase_add_test(tc, test_encode_regression);
    tcase_add_test(tc, test_encode_tagging_words);
    tcase_add_test(tc, test_encode_generation);
    tcase_add_test(tc, test_encode_multilabel);
    tcase_add_test(tc, test_encode_csv_task);
    tcase_add_test(tc, test_encode_cache_hit_and_long);
    tcase_add_test(tc, test_encode_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mtft_test_run(mtft_test_encode_suite()); }
