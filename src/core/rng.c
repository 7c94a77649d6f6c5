/* xoshiro256** seeded through splitmix64 (Blackman & Vigna). */
#include <math.h>

#include "mtft/rng.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void mtft_rng_seed(mtft_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

uint64_t mtft_rng_u64(mtft_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

float mtft_rng_uniform(mtft_rng *rng) { return (float)(mtft_rng_u64(rng) >> 40) * 0x1.0p-24f; }
double mtft_rng_uniform_f64(mtft_rng *rng) { return (double)(mtft_rng_u64(rng) >> 11) * 0x1.0p-53; }

uint64_t mtft_rng_below(mtft_rng *rng, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = mtft_rng_u64(rng);
    while (x >= lim);
    return x % n;
}

double mtft_rng_normal(mtft_rng *rng) {
    double u1 = 1.0 - mtft_rng_uniform_f64(rng); /* (0, 1] */
    double u2 = mtft_rng_uniform_f64(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

float mtft_rng_hash_uniform(uint64_t seed, uint64_t counter) {
    uint64_t x = seed ^ (counter * 0xd1b54a32d192ed03ULL);
    uint64_t r = splitmix64(&x);
    return (float)(r >> 40) * 0x1.0p-24f;
}
