/* mtft data pipeline: tokenized caches, batch order (shuffling, length
 * bucketing), collation with dynamic padding, truncation and packing.
 *
 * Tokenized examples belong to their task (mtft/task.h). With a cache
 * directory, mtft_task_load() writes the tokenized task to
 *   <cache_dir>/<task name>-<16 hex digits>.mtftds
 * where the digits are a 64-bit FNV-1a hash of: the bytes of every data
 * file, the tokenizer (every token's bytes, the merge count and the encoding
 * of a probe text), the template, the field mapping, the task type, the
 * given labels, the split fractions and seed, the eos token and the cache
 * format version. A later load with the same key maps that file read-only
 * (mmap) instead of parsing and tokenizing, so a dataset larger than memory
 * is paged in as batches touch it. Any change to these inputs gives another
 * file name (a miss). */
#ifndef MTFT_DATA_H
#define MTFT_DATA_H

#include "mtft/common.h"
#include "mtft/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The id marking positions that carry no loss (PyTorch's ignore_index). */
#define MTFT_IGNORE_INDEX (-100)

typedef struct mtft_data_options {
    int version;
    const char *cache_dir;  /* NULL or "": no cache file (tokenize in memory) */
    /* Appended to each generation target (so the model learns to stop);
     * NULL or "": none. Must be a token of the tokenizer. */
    const char *eos_token;
    int log_progress;       /* 1: one info log line per loaded task (counts, skips, cache) */
} mtft_data_options;
#define MTFT_DATA_OPTIONS_VERSION 1
#define MTFT_DATA_OPTIONS_INIT {MTFT_DATA_OPTIONS_VERSION, NULL, "<|endoftext|>", 1}

/* ---- batch order ---------------------------------------------------------------
 * A loader walks one split of one task in batches of example indices:
 * shuffled per epoch (seeded), then, with bucket_window > 1, sorted by
 * length inside each window of bucket_window batches and the batches of a
 * window shuffled again, so each batch holds examples of similar length
 * (less padding) while the order stays random. Same seed, same order. */
typedef struct mtft_loader_options {
    int version;
    int batch_size;      /* >= 1 */
    int shuffle;         /* 0: file order */
    uint64_t seed;
    int bucket_window;   /* batches per length-sorting window; <= 1: no bucketing */
    int drop_last;       /* 1: drop a final batch smaller than batch_size */
} mtft_loader_options;
#define MTFT_LOADER_OPTIONS_VERSION 1
#define MTFT_LOADER_OPTIONS_INIT {MTFT_LOADER_OPTIONS_VERSION, 16, 1, 0, 0, 0}

typedef struct mtft_loader mtft_loader;

/* The task must stay loaded (and not reloaded) while the loader lives. */
MTFT_API int mtft_loader_new(mtft_loader **out, const mtft_task *task, mtft_split split,
                             const mtft_loader_options *o);
MTFT_API void mtft_loader_free(mtft_loader *ld);
/* The next batch's example indices (at most batch_size into idx). Returns
 * the number written; 0 at the end of an epoch (the next call starts the
 * next epoch, with a new order). */
MTFT_API int mtft_loader_next(mtft_loader *ld, int64_t *idx);
MTFT_API int64_t mtft_loader_epoch(const mtft_loader *ld);
/* Batches per epoch. */
MTFT_API int64_t mtft_loader_n_batches(const mtft_loader *ld);

/* ---- collation ------------------------------------------------------------------ */
typedef enum mtft_truncation {
    MTFT_TRUNCATE_RIGHT = 0, /* keep the first max_len tokens */
    MTFT_TRUNCATE_LEFT = 1   /* keep the last max_len tokens (the end of a prompt and its target) */
} mtft_truncation;

typedef struct mtft_collate_options {
    int version;
    int max_len;              /* longest row; longer examples are truncated (>= 1) */
    mtft_truncation truncation;
    int32_t pad_id;           /* id written at padding positions */
    /* Packing (generation tasks only): examples are placed in order into rows
     * of max_len tokens (next fit); a row holds several segments. */
    int pack;
    int pad_to_multiple;      /* round the padded length up to a multiple (>= 1) */
} mtft_collate_options;
#define MTFT_COLLATE_OPTIONS_VERSION 1
#define MTFT_COLLATE_OPTIONS_INIT {MTFT_COLLATE_OPTIONS_VERSION, 512, MTFT_TRUNCATE_RIGHT, 0, 0, 1}

/* One row source: example `index` of split `split` of tasks[task]. */
typedef struct mtft_example_ref {
    int32_t task;
    int32_t split;
    int64_t index;
} mtft_example_ref;

/* A padded batch, B rows of T tokens, right padded. Caller-allocated:
 * mtft_batch_init() then mtft_batch_collate() any number of times (buffers
 * grow and are reused), then mtft_batch_dispose(). Arrays are row-major
 * [B, T] or [B]. */
typedef struct mtft_batch {
    int n_rows;             /* B */
    int seq_len;            /* T: the longest row after truncation, rounded to pad_to_multiple */
    int32_t *ids;           /* [B, T] token ids, pad_id after valid_len */
    int32_t *valid_len;     /* [B] tokens in use per row */
    int32_t *task_id;       /* [B] the ref's task (index into the tasks array); for packed rows, of all segments */
    /* Token targets [B, T]: tagging: the tag id at each word's first
     * sub-token, MTFT_IGNORE_INDEX elsewhere; generation: the NEXT token id
     * where that next token is part of the target (targets[t] = ids[t+1]),
     * MTFT_IGNORE_INDEX on the prompt, at segment ends and on padding, so
     * cross-entropy over logits[t] learns the target only; other types: all
     * MTFT_IGNORE_INDEX. */
    int32_t *targets;
    int32_t *labels;        /* [B] classification label id; -1 for other types */
    /* [B, label_width] multi-hot labels (multi-label rows; 0 elsewhere),
     * label_width = the largest n_labels of the multi-label tasks present. */
    float *multi_labels;
    int label_width;
    float *values;          /* [B] regression targets; 0 for other types */
    /* [B, T] segment of each token: 0 .. n-1 inside a packed row (always 0
     * without packing), -1 on padding. Positions restart at 0 per segment.
     * The fused attention op masks padding only, so with packing tokens
     * can attend to earlier segments of their row unless the model masks
     * by segment. */
    int32_t *segment;
    int32_t *position;      /* [B, T] position id inside its segment */
    int64_t *example;       /* [B] the first ref of each row's index */
    int n_truncated;        /* examples cut to fit max_len */
    int n_examples;         /* refs collated */
    /* private: capacities */
    size_t cap_bt, cap_b, cap_ml;
} mtft_batch;

MTFT_API void mtft_batch_init(mtft_batch *b);
MTFT_API void mtft_batch_dispose(mtft_batch *b);
/* Build a batch from n refs into tasks[0..n_tasks-1] (loaded). Without
 * packing B = n. With packing every ref must be of a generation task and
 * B is the number of rows needed. Errors: MTFT_EINVAL (bad options, packing
 * a non-generation task), MTFT_ERANGE (a ref out of range, named). */
MTFT_API int mtft_batch_collate(mtft_batch *b, mtft_task *const *tasks, int n_tasks,
                                const mtft_example_ref *refs, int n, const mtft_collate_options *o);

#ifdef __cplusplus
}
#endif
#endif
