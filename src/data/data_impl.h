/* Internal structures of the data module: the tokenized-task blob (the same
 * layout in memory and in a cache file), CSV reading, hashing. Not installed. */
#ifndef MTFT_DATA_IMPL_H
#define MTFT_DATA_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"
#include "mtft/data.h"
#include "mtft/task.h"

/* ---- the tokenized blob ------------------------------------------------------
 * header | pool int32[n_pool] (padded to 8 bytes) | entries[n_train + n_dev
 * + n_test] | labels. The pool comes first so that a cache file can be
 * written while tokenizing (the header is written last). Entries of a split
 * are consecutive (train, dev, test). An example's pool words are
 * ids[n_ids], then tags[n_ids] (tagging), then labels[n_labels]. */
#define MTFT_DS_MAGIC "MTFTDS\0\1"
#define MTFT_DS_FORMAT 2
#define mtft_ds_pool_bytes(n_pool) (((size_t)(n_pool) * 4 + 7) & ~(size_t)7)

typedef struct mtft_ds_header {
    char magic[8];
    uint64_t key;
    uint32_t format;
    uint32_t type;
    int64_t n_split[MTFT_SPLIT_COUNT];
    int64_t n_pool;        /* int32 words */
    uint32_t n_labels;
    uint32_t labels_bytes; /* NUL-terminated names back to back */
    int64_t skipped[MTFT_BAD_N_REASONS];
} mtft_ds_header;

typedef struct mtft_ds_entry {
    int64_t off; /* first pool word */
    int32_t n_ids;
    int32_t n_prompt;
    int32_t n_labels;
    float value;
    int32_t line;
    int32_t file;
} mtft_ds_entry;

struct mtft_task {
    /* options (deep copies) */
    mtft_task_options o;
    char **strs;       /* every copied string, freed at the end */
    int n_strs, cap_strs;
    char **labels_copy;
    char **metrics_copy;
    /* loaded data */
    void *blob;        /* malloc'ed blob, or NULL when mapped */
    void *map;         /* mmap'ed cache file, or NULL */
    size_t blob_size;
    const mtft_ds_header *hdr;
    const mtft_ds_entry *entries;
    const int32_t *pool;
    const char **label_names; /* n_labels pointers into the blob */
    int64_t split_start[MTFT_SPLIT_COUNT];
    int cache_hit;
    char *cache_path;
    /* set by mtft_task_load for mtft_task_encode_input */
    int32_t eos_id;    /* generation: the eos id appended to targets, or -1 */
    int32_t tok_vocab; /* vocabulary size of the tokenizer of the last load */
};

/* Open and validate a blob (memory or mapping) into task's pointers. */
int mtft_data__attach(mtft_task *task, const void *blob, size_t size, const char *what);
void mtft_data__detach(mtft_task *task);

/* Load path (task.c) and cache (cache.c). */
/* Build the blob: into memory (*blob_out, out_path NULL), or streamed into
 * the cache file out_path (written as a temporary file, fsync'ed and
 * renamed; *blob_out stays NULL). */
int mtft_data__build(mtft_task *task, mtft_tokenizer *tok, const mtft_data_options *o, uint64_t key,
                     const char *out_path, void **blob_out, size_t *size_out);
int mtft_data__key(const mtft_task *task, mtft_tokenizer *tok, const mtft_data_options *o, uint64_t *key);
/* Pool words buffered before a cache build writes them out (default 2^20). */
extern size_t mtft_data__flush_words;
/* mmap a cache file; MTFT_ENOTFOUND when it does not exist. */
int mtft_data__map_file(const char *path, void **map, size_t *size);
void mtft_data__unmap(void *map, size_t size);

/* ---- hashing ---------------------------------------------------------------- */
#define MTFT_FNV_OFFSET 0xcbf29ce484222325ULL
#define MTFT_FNV_PRIME 0x100000001b3ULL
static inline uint64_t mtft_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= MTFT_FNV_PRIME;
    }
    return h;
}
static inline uint64_t mtft_fnv1a_str(uint64_t h, const char *s) {
    /* NULL and "" differ; the terminator separates consecutive strings */
    if (!s) return mtft_fnv1a(h, "\xff\xfe", 2);
    return mtft_fnv1a(h, s, strlen(s) + 1);
}

/* ---- CSV / TSV (RFC 4180) ------------------------------------------------------ */
typedef struct mtft_csv {
    const char *p, *end, *base;
    char sep;
    int line;           /* current line (1-based) */
    const char *line_start;
    char *buf;          /* cell bytes, NUL-terminated cells */
    size_t buf_len, buf_cap;
    size_t *cell;       /* offsets into buf */
    int n_cells, cap_cells;
} mtft_csv;

void mtft_csv__init(mtft_csv *r, const char *text, size_t len, char sep);
void mtft_csv__dispose(mtft_csv *r);
/* Next record: 1 (cells in r), 0 at the end, or -1 with a message
 * "line:col: what" in err (the reader then resumes after the bad line),
 * or MTFT_ENOMEM. *rec_line: the line the record starts on. Blank lines are
 * skipped. */
int mtft_csv__next(mtft_csv *r, int *rec_line, char *err, size_t errcap);
static inline const char *mtft_csv__cell(const mtft_csv *r, int i) { return r->buf + r->cell[i]; }

#endif
