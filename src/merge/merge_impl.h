/* Internal declarations of the merge module (src/merge). Not installed. */
#ifndef MTFT_MERGE_IMPL_H
#define MTFT_MERGE_IMPL_H

#include <stdint.h>

#include "core/core.h"
#include "mtft/merge.h"

/* 1 when tensor name `name` matches `pattern`: NULL or "" match all; a
 * pattern with '*' (any run) or '?' (one character) is a glob over the whole
 * name; any other pattern matches as a substring (mergekit's filters). */
int mtft_merge__match(const char *pattern, const char *name);

/* FNV-1a 64 of a string / continue a hash over bytes. */
uint64_t mtft_merge__fnv1a(uint64_t h, const void *data, size_t n);
#define MTFT_MERGE_FNV_INIT 0xcbf29ce484222325ull

/* Truncated SVD of M [rows, cols] (row-major) to rank k <= min(rows, cols):
 * a randomized range finder (k + 8 columns, 2 power iterations, Gram-Schmidt
 * in double) then a cyclic Jacobi eigendecomposition of the small Gram
 * matrix. Outputs U [rows, k], S [k] (descending, >= 0), Vt [k, cols]; any
 * output may be NULL. Exact (to rounding) when the range covers M's column
 * space, e.g. when rank(M) <= k + 8 or k + 8 >= min(rows, cols). */
int mtft_merge__svd(const float *M, int64_t rows, int64_t cols, int k, uint64_t seed, float *U, float *S, float *Vt);

#endif
