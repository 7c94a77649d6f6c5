/* Internal core services: error raising, logging, aligned allocation and
 * arenas. Not installed. */
#ifndef MTFT_CORE_H
#define MTFT_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mtft/common.h"
#include "mtft/rng.h"

#if defined(__GNUC__) || defined(__clang__)
#define MTFT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MTFT_UNUSED __attribute__((unused))
#else
#define MTFT_PRINTF(a, b)
#define MTFT_UNUSED
#endif

/* Set this thread's last error and return `code` (so: return mtft__err(...)). */
int mtft__err(int code, const char *fmt, ...) MTFT_PRINTF(2, 3);
int mtft__verr(int code, const char *fmt, va_list ap);
/* Prefix the current message with "prefix: " (adds context while unwinding). */
void mtft__err_prefix(const char *fmt, ...) MTFT_PRINTF(1, 2);

/* Argument check in libgit2's assert_safe style: never aborts. */
#define MTFT_CHECK_ARG(expr)                                                          \
    do {                                                                              \
        if (!(expr)) return mtft__err(MTFT_EINVAL, "invalid argument: '%s' (%s:%d)", #expr, \
                                      __func__, __LINE__);                            \
    } while (0)

void mtft__log(mtft_log_level level, const char *fmt, ...) MTFT_PRINTF(2, 3);

/* Allocation. All library allocations go through these so tests can count
 * them. Aligned blocks are 64-byte aligned. */
void *mtft__malloc(size_t n);
void *mtft__calloc(size_t n, size_t size);
void *mtft__realloc(void *p, size_t n);
void mtft__free(void *p);
void *mtft__aligned_alloc(size_t n); /* zeroed, 64-byte aligned */
void mtft__aligned_free(void *p);
char *mtft__strdup(const char *s);
/* Number of successful allocations so far (process-wide, for tests). */
uint64_t mtft__alloc_count(void);

/* Arena: bump allocation from blocks; reset rewinds. When a step needed more
 * than one block, reset replaces them with one block of the total size, so
 * that a repeated step of the same size allocates nothing from the system. */
typedef struct mtft_arena_block mtft_arena_block;
typedef struct mtft_arena {
    mtft_arena_block *head;   /* current block (list of blocks, newest first) */
    size_t block_bytes;       /* size of the next block to ask for */
    size_t used_total;        /* bytes handed out since reset, over all blocks */
    size_t capacity;          /* bytes held from the system */
    uint64_t sys_allocs;      /* number of blocks ever asked for */
} mtft_arena;

void mtft_arena_init(mtft_arena *a, size_t first_block_bytes);
/* 64-byte aligned, uninitialised; NULL (with error set) when out of memory. */
void *mtft_arena_alloc(mtft_arena *a, size_t bytes);
void *mtft_arena_calloc(mtft_arena *a, size_t bytes);
void mtft_arena_reset(mtft_arena *a);
void mtft_arena_dispose(mtft_arena *a);

/* One-time process setup (threads defaults, ...). */
void mtft__init_once(void);
int mtft__num_threads(void);
/* 1 when `core` names one of the generic kernels OpenBLAS falls back to. */
int mtft__blas_core_is_generic(const char *core);

#endif
