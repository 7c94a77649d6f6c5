/* mtft: a seeded, deterministic random number generator (xoshiro256**,
 * seeded through splitmix64). The same seed gives the same sequence on every
 * platform and thread count. */
#ifndef MTFT_RNG_H
#define MTFT_RNG_H

#include "mtft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caller-allocated; copy it to save and restore the exact stream position. */
typedef struct mtft_rng {
    uint64_t s[4];
} mtft_rng;

MTFT_API void mtft_rng_seed(mtft_rng *rng, uint64_t seed);
MTFT_API uint64_t mtft_rng_u64(mtft_rng *rng);
/* Uniform in [0, 1), 24 bits of mantissa. */
MTFT_API float mtft_rng_uniform(mtft_rng *rng);
/* Uniform in [0, 1), 53 bits. */
MTFT_API double mtft_rng_uniform_f64(mtft_rng *rng);
/* Uniform integer in [0, n), unbiased; n must be > 0. */
MTFT_API uint64_t mtft_rng_below(mtft_rng *rng, uint64_t n);
/* Standard normal (Box-Muller, no cached second value so state is the u64s only). */
MTFT_API double mtft_rng_normal(mtft_rng *rng);
/* Stateless hash of (seed, counter) to a uniform float in [0, 1): used where
 * each element needs its own draw regardless of thread scheduling (dropout). */
MTFT_API float mtft_rng_hash_uniform(uint64_t seed, uint64_t counter);

#ifdef __cplusplus
}
#endif
#endif
