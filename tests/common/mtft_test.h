/* Shared test helpers: closeness assertions and a central-difference
 * gradient checker for graph ops. */
#ifndef MTFT_TEST_H
#define MTFT_TEST_H

#include <check.h>
#include <stdint.h>

#include "mtft/mtft.h"

/* Fails the current Check test (ck_abort) naming `what`, the first
 * offending index and both values, unless |a-b| <= atol + rtol*|b| for all. */
void mtft_assert_close(const float *a, const float *b, int64_t n, float rtol, float atol, const char *what);

/* Builds the op under test from its inputs; returns the output (any shape). */
typedef mtft_tensor *(*mtft_test_fn)(mtft_graph *g, mtft_tensor **in, void *ctx);

typedef struct mtft_gradcheck_input {
    int ndim;
    int64_t shape[4];
    float *data;     /* numel floats; perturbed in place during the check, restored after */
    int needs_grad;  /* check the gradient of this input */
} mtft_gradcheck_input;

typedef struct mtft_gradcheck_result {
    double max_abs_err;  /* worst |analytic - numeric| */
    double max_rel_err;  /* at the same element: |a-n| / max(|n|, 1e-3) */
    int worst_input;
    int64_t worst_index;
    int64_t checked;     /* elements compared */
} mtft_gradcheck_result;

/* Central differences on L = sum(out .* R), R a fixed random tensor, in
 * double. Checks at most max_elems elements per input (spread over it; 0 = all).
 * Fails the test (ck_abort) naming the op, input and element if any element
 * has |a - n| > atol + rtol*|n|. Returns the result for reporting. */
mtft_gradcheck_result mtft_gradcheck(const char *name, mtft_test_fn fn, void *ctx, mtft_gradcheck_input *in,
                                     int n_in, float eps, float atol, float rtol, int64_t max_elems);

/* Fill with uniform values in [lo, hi) from a seeded stream. */
void mtft_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* Path of a file under the source tree (static buffer per call site is not
 * kept: copy it). */
const char *mtft_test_path(char *buf, size_t n, const char *rel);

/* Remove a directory tree (no shell); missing paths are ignored. */
void mtft_test_rm_rf(const char *dir);

/* GPT-2's tokenizer from data/tokenizer/gpt2 (encoder.json + vocab.bpe);
 * exits the test program when it cannot be loaded. */
mtft_tokenizer *mtft_test_gpt2_tokenizer(void);

/* Run one suite with Check; returns 0 when all passed (for main()). */
int mtft_test_run(Suite *s);

#endif
