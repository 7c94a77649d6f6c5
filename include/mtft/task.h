/* mtft tasks: what one task's data is and how to read it.
 *
 * A task is a name, a type, data files (JSONL, CSV or TSV), a field mapping,
 * an optional prompt template, a label set (given or collected from the
 * data), splits (files, or fractions of one file with a seed) and the names
 * of the metrics to report. mtft_task_new() validates the options (no I/O);
 * mtft_task_load() reads the files, tokenizes every example once (or maps a
 * cached copy, see mtft/data.h) and keeps the tokenized splits.
 *
 * Records (one JSON object per line, or one CSV/TSV row under a header row):
 *   classification        {"text": "...", "label": "spam"}        label: string or integer
 *   multi-label           {"text": "...", "label": ["a", "b"]}    list of strings (CSV: space separated)
 *   regression            {"text": "...", "value": -2.0}          number (CSV: a decimal number)
 *   token tagging         {"tokens": ["In", "the"], "tags": ["O", "W"]}  equal lengths (CSV: space separated)
 *   generation            {"input": "...", "target": "..."}
 * Field names are set by the mapping. CSV/TSV follow RFC 4180 quoting
 * (fields in double quotes may hold separators, newlines and "" for a quote).
 *
 * Bad examples (malformed line, missing field, wrong type, label outside the
 * label set, empty text, tokens/tags length mismatch) stop the load with an
 * error "file:line: field 'x': ..." (file:line:col for syntax errors), or,
 * with MTFT_ON_BAD_SKIP, are counted per reason, reported in one log line and
 * through mtft_task_skipped(). A missing file is always an error. */
#ifndef MTFT_TASK_H
#define MTFT_TASK_H

#include "mtft/common.h"
#include "mtft/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mtft_task_type {
    MTFT_TASK_CLASSIFICATION = 0, /* one label per example */
    MTFT_TASK_MULTILABEL = 1,     /* a set of labels per example */
    MTFT_TASK_REGRESSION = 2,     /* one number per example */
    MTFT_TASK_TAGGING = 3,        /* one tag per word (token classification) */
    MTFT_TASK_GENERATION = 4      /* prompt -> target text (seq2seq / instruction) */
} mtft_task_type;

typedef enum mtft_data_format {
    MTFT_FORMAT_AUTO = 0, /* by file extension: .csv, .tsv, else JSONL */
    MTFT_FORMAT_JSONL = 1,
    MTFT_FORMAT_CSV = 2,
    MTFT_FORMAT_TSV = 3
} mtft_data_format;

typedef enum mtft_on_bad {
    MTFT_ON_BAD_ERROR = 0, /* the first bad example fails the load */
    MTFT_ON_BAD_SKIP = 1   /* bad examples are dropped, counted and reported */
} mtft_on_bad;

/* Why an example was bad. Append only. */
typedef enum mtft_bad_reason {
    MTFT_BAD_SYNTAX = 0,        /* malformed JSON line or CSV row */
    MTFT_BAD_MISSING_FIELD = 1, /* a mapped or template field is absent */
    MTFT_BAD_WRONG_TYPE = 2,    /* a field has the wrong JSON type (or is not a number) */
    MTFT_BAD_UNKNOWN_LABEL = 3, /* label or tag outside the given label set */
    MTFT_BAD_EMPTY = 4,         /* empty (or all-space) text, target or token list */
    MTFT_BAD_LENGTH = 5,        /* tokens and tags differ in length */
    MTFT_BAD_N_REASONS = 6
} mtft_bad_reason;

typedef enum mtft_split {
    MTFT_SPLIT_TRAIN = 0,
    MTFT_SPLIT_DEV = 1,
    MTFT_SPLIT_TEST = 2,
    MTFT_SPLIT_COUNT = 3
} mtft_split;

typedef struct mtft_task_options {
    int version;
    const char *name;       /* required; [A-Za-z0-9_.-]+ */
    mtft_task_type type;
    mtft_data_format format;
    /* Splits as files. train_file is required; dev_file / test_file may be
     * NULL. A split without a file can be carved out of train_file by a
     * fraction below. */
    const char *train_file;
    const char *dev_file;
    const char *test_file;
    double dev_fraction;    /* [0, 1): share of train_file's examples moved to dev (dev_file must be NULL) */
    double test_fraction;   /* [0, 1): likewise for test; dev + test < 1 */
    uint64_t split_seed;    /* seeds the permutation behind the fractions */
    /* Field mapping. NULL selects the default of the type: input "text"
     * ("input" for generation), label "label", value "value", target
     * "target", tokens "tokens", tags "tags". */
    const char *input_field;
    const char *label_field;
    const char *value_field;
    const char *target_field;
    const char *tokens_field;
    const char *tags_field;
    /* Prompt template (classification, multi-label, regression, generation):
     * the model input is the template with each {field} replaced by that
     * field of the record ("{{" and "}}" are literal braces). NULL: the input
     * field as is. Tagging tasks take no template. */
    const char *prompt_template;
    /* The label set (tag set for tagging), in id order. NULL: collected from
     * the data in order of first appearance (train file first). */
    const char *const *labels;
    int n_labels;
    /* Metric names to report, in this order (the trainer's progress line and
     * `mtft train`'s table show these; every metric is computed and logged
     * regardless). Each must be one the type reports, see
     * mtft_task_metric_valid; aliases are stored under their canonical name. */
    const char *const *metrics;
    int n_metrics;
    mtft_on_bad on_bad_example;
    /* The metric the trainer selects the best weights and stops early on
     * (validated like metrics). NULL: the type default, accuracy
     * (classification, multilabel), pearson (regression), token_accuracy
     * (tagging), nll (generation). Lower-is-better metrics (rmse, mae,
     * perplexity, nll) enter the selection score negated. */
    const char *select_metric;
} mtft_task_options;

#define MTFT_TASK_OPTIONS_VERSION 1
#define MTFT_TASK_OPTIONS_INIT                                                                    \
    {MTFT_TASK_OPTIONS_VERSION, NULL, MTFT_TASK_CLASSIFICATION, MTFT_FORMAT_AUTO, NULL, NULL, NULL, \
     0.0, 0.0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, MTFT_ON_BAD_ERROR, NULL}

typedef struct mtft_task mtft_task;
/* Forward declaration; the options live in mtft/data.h. */
struct mtft_data_options;

/* Names: "classification", "multilabel", "regression", "tagging",
 * "generation"; "json", "csv", ...; "syntax", "missing_field", ... */
MTFT_API const char *mtft_task_type_name(mtft_task_type type);
MTFT_API const char *mtft_bad_reason_name(mtft_bad_reason reason);
MTFT_API const char *mtft_split_name(mtft_split split);
/* Metric names, one vocabulary with mtft/metrics.h (mtft_metric_name): a
 * task type reports exactly the metrics the trainer computes for it
 *   classification  accuracy, macro_f1, mcc
 *   multilabel      accuracy, macro_f1, mcc (over (example, label) pairs)
 *   regression      pearson, spearman, rmse, mae
 *   tagging         token_accuracy, tag_micro_f1, tag_macro_f1, span_f1
 *                   (span_f1 only when every tag is O or B-/I-/E-/S-)
 *   generation      perplexity, nll, token_accuracy, exact_match, chrf
 *                   (exact_match and chrf only with mtft_trainer_set_tokenizer)
 * Older spellings with an exact equivalent are accepted as aliases:
 * f1_macro (macro_f1; tag_macro_f1 for tagging), f1_micro (tag_micro_f1,
 * tagging only), loss (nll, generation only).
 *
 * mtft_task_metric_valid: 1 when `metric` (a name or an alias) may be given
 * for a task of this type. mtft_task_metric_canonical: its canonical name
 * (a static string), NULL when not valid. mtft_task_type_metric: the i-th
 * canonical name of the type (0-based, in the order above), NULL past the
 * end. */
MTFT_API const char *mtft_task_metric_canonical(mtft_task_type type, const char *metric);
MTFT_API const char *mtft_task_type_metric(mtft_task_type type, int i);
MTFT_API int mtft_task_metric_valid(mtft_task_type type, const char *metric);

/* Validate options and make a task (no file is read). The strings and
 * arrays in o are copied. Errors name the option: MTFT_EINVAL (missing name
 * or train_file, bad field name, template syntax with its position, a file
 * for a split that is also given as a fraction), MTFT_ERANGE (fractions),
 * MTFT_ENOTFOUND (a metric or select_metric the type does not report,
 * listing the valid ones). */
MTFT_API int mtft_task_new(mtft_task **out, const mtft_task_options *o);
MTFT_API void mtft_task_free(mtft_task *task);

/* Read, check and tokenize the data (or map the cache, see mtft/data.h).
 * data_opts may be NULL (defaults). Loading again replaces the data. */
MTFT_API int mtft_task_load(mtft_task *task, mtft_tokenizer *tok, const struct mtft_data_options *data_opts);

MTFT_API const char *mtft_task_name(const mtft_task *task);
MTFT_API mtft_task_type mtft_task_type_of(const mtft_task *task);
/* Examples in a split (0 before load). */
MTFT_API int64_t mtft_task_count(const mtft_task *task, mtft_split split);
/* Size of the label (tag) set; 0 for regression and generation. */
MTFT_API int mtft_task_n_labels(const mtft_task *task);
/* Label i (borrowed), NULL when out of range. */
MTFT_API const char *mtft_task_label(const mtft_task *task, int i);
/* Id of a label, or -1. */
MTFT_API int mtft_task_label_id(const mtft_task *task, const char *label);
/* Examples skipped for `reason` by the last load (reason MTFT_BAD_N_REASONS: all). */
MTFT_API int64_t mtft_task_skipped(const mtft_task *task, mtft_bad_reason reason);
/* 1 when the last load mapped an existing cache file instead of tokenizing. */
MTFT_API int mtft_task_cache_hit(const mtft_task *task);
/* The cache file of the last load, or NULL when caching is off (borrowed). */
MTFT_API const char *mtft_task_cache_path(const mtft_task *task);
/* The metrics option, canonical names (borrowed). */
MTFT_API int mtft_task_n_metrics(const mtft_task *task);
MTFT_API const char *mtft_task_metric(const mtft_task *task, int i);
/* The canonical name of select_metric (static), NULL for the type default. */
MTFT_API const char *mtft_task_select_metric(const mtft_task *task);

/* One tokenized example (pointers borrowed from the task; valid until the
 * next load or free). */
typedef struct mtft_example {
    const int32_t *ids;       /* n_ids token ids: prompt (input) then, for generation, target */
    int32_t n_ids;
    int32_t n_prompt;         /* generation: ids before the target; others: n_ids */
    const int32_t *tags;      /* tagging: n_ids tag ids, -100 on continuation sub-tokens; else NULL */
    const int32_t *labels;    /* classification: 1 id; multi-label: n_labels ids; else NULL */
    int32_t n_labels;
    float value;              /* regression target; 0 otherwise */
    int32_t line;             /* 1-based line of the record in its file */
    int32_t file;             /* 0 train_file, 1 dev_file, 2 test_file */
} mtft_example;

/* Example i of a split. MTFT_ERANGE for a bad index. */
MTFT_API int mtft_task_example(const mtft_task *task, mtft_split split, int64_t i, mtft_example *out);

/* ---- encoding one record as the loader does ---------------------------------------
 * mtft_task_encode_input() turns one raw record (a JSON object, as one line of
 * a JSONL data file) into token ids through the same code the loader uses
 * for the task's files: the prompt template (numbers in template fields are
 * formatted as the loader formats them), tagging words tokenized one by one
 * with a space before every word but the first, no BOS, for generation the
 * eos token after a target, and the same checks, so any record the loader
 * accepts encodes to exactly the ids it stored, and any record it would
 * reject (or skip) is an error here, never a silent change. For a task whose
 * files are CSV/TSV, give the columns as JSON strings (and tagging words as
 * a JSON array).
 *
 * Label fields are optional (prediction inputs have none): when the record
 * has the task's label / value / tags / target field it is decoded and
 * checked against the loaded label set as the loader checks it, and
 * has_target is 1.
 *
 * Nothing is truncated: long inputs give all their ids. Consumers cut to
 * their max_len as training does (mtft_batch_collate keeps the first, or
 * with MTFT_TRUNCATE_LEFT the last, max_len tokens; mtft_trainer_predict
 * keeps the first max_len).
 *
 * Caller-allocated: mtft_encoded_init() once, any number of encodes (the
 * buffers are reused and grow), then mtft_encoded_dispose(). */
typedef struct mtft_encoded {
    int32_t *ids;        /* n_ids token ids: the model input, then (generation with a target) target ids and eos */
    int32_t n_ids;
    int32_t n_prompt;    /* ids of the model input: n_ids unless a generation target follows */
    int32_t *word_first; /* tagging: n_words indices into ids, each word's first sub-token; else NULL */
    int32_t n_words;
    int32_t *tags;       /* tagging with its tags field: n_ids tag ids, -100 on continuation sub-tokens; else NULL */
    int32_t *labels;     /* classification: 1 label id; multi-label: the set of label ids; else NULL */
    int32_t n_labels;
    float value;         /* regression with its value field; else 0 */
    int has_target;      /* 1 when the record had the task's label, value, tags or target field */
    /* private: the buffers behind ids, word_first, tags, labels */
    int32_t *buf_[4];
    size_t cap_[4];
} mtft_encoded;

MTFT_API void mtft_encoded_init(mtft_encoded *e);
/* Free the buffers (NULL-safe; the struct may be init'ed again). */
MTFT_API void mtft_encoded_dispose(mtft_encoded *e);

/* Encode one record of `task` (loaded with mtft_task_load; MTFT_ESTATE
 * otherwise) with tok, the tokenizer the task was loaded with
 * (MTFT_EINVAL when its vocabulary size differs). json: len bytes holding
 * one JSON object (surrounding whitespace, a trailing newline and a UTF-8
 * BOM are allowed). Errors (MTFT_EFORMAT) name the task and what is wrong:
 * "task 'sst': input column 9: malformed JSON near '...'", "task 'sst':
 * input: missing field 'text'", "task 'ner': input: field 'tokens': element
 * 2: expected a string, got number"; on error *out holds no record
 * (n_ids 0). */
MTFT_API int mtft_task_encode_input(const mtft_task *task, mtft_tokenizer *tok, const char *json, size_t len,
                                    mtft_encoded *out);

/* ---- prompt templates ------------------------------------------------------- */
/* Check a template's syntax and, when allowed is not NULL, that every
 * placeholder is one of the n_allowed names. Errors give the 1-based
 * character position: "template position 7: unknown placeholder '{foo}'". */
MTFT_API int mtft_template_check(const char *tmpl, const char *const *allowed, int n_allowed);
/* Render a template with the values of the named fields into buf (cap
 * bytes; NUL-terminated when it fits). *len_out receives the length the
 * whole result needs. MTFT_ERANGE when cap <= *len_out; MTFT_ENOTFOUND
 * naming the placeholder and its position when a field has no value. */
MTFT_API int mtft_template_render(const char *tmpl, const char *const *names, const char *const *values,
                                  int n, char *buf, size_t cap, size_t *len_out);

#ifdef __cplusplus
}
#endif
#endif
