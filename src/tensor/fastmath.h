/* Internal: branch-free, vectorisable float exp/tanh/sigmoid for the hot
 * loops of softmax, cross-entropy, attention and the activations. libm's
 * expf/tanhf are scalar calls (measured 4-7 ns per element here); these
 * inline into the loop and vectorise.
 *
 * Accuracy (checked against libm in double over [-88, 88] by
 * tests/check_fastmath.c): expf within 2 ulp; tanh and sigmoid within 2e-7
 * absolute. Inputs beyond the float range saturate (exp(-inf) = 0,
 * exp(+large) = FLT_MAX-ish); NaN propagates. */
#ifndef MTFT_FASTMATH_H
#define MTFT_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float mtft__bits_to_f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 minimax-style
 * polynomial (Taylor coefficients, error < 1 ulp on that interval), 2^n by
 * building the exponent bits. */
static inline float mtft__expf(float x) {
    const float lo = -87.33654f, hi = 88.72283f;
    float xc = x < lo ? lo : (x > hi ? hi : x);
    /* round to nearest via the 1.5*2^23 trick: vectorises without SSE4.1 */
    const float magic = 12582912.0f;
    float n = (xc * 1.44269504088896341f + magic) - magic;
    float r = xc - n * 0.693145751953125f;  /* ln2 high part, exact product */
    r = r - n * 1.428606765330187e-06f;      /* ln2 low part */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ni = (int32_t)n;
    /* n in [-126, 128]: split in two factors so 2^n never overflows the bits */
    int32_t n1 = ni >> 1, n2 = ni - n1;
    float s1 = mtft__bits_to_f((uint32_t)(n1 + 127) << 23);
    float s2 = mtft__bits_to_f((uint32_t)(n2 + 127) << 23);
    float y = p * s1 * s2;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y; /* NaN in, NaN out */
}

/* tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)); for |x| < 0.04 the odd Taylor
 * polynomial avoids the cancellation near 0. */
static inline float mtft__tanhf(float x) {
    float a = x < 0.0f ? -x : x;
    float e = mtft__expf(2.0f * (a > 9.0f ? 9.0f : a));
    float t = 1.0f - 2.0f / (e + 1.0f);
    float x2 = x * x;
    float small = a * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f)));
    t = a < 0.04f ? small : t;
    t = a > 9.0f ? 1.0f : t;
    return x < 0.0f ? -t : t;
}

/* 1 / (1 + e^-x), stable for both signs. */
static inline float mtft__sigmoidf(float x) {
    float e = mtft__expf(x < 0.0f ? x : -x); /* e^-|x| in (0, 1] */
    float s = 1.0f / (1.0f + e);
    return x < 0.0f ? 1.0f - s : s;
}

#endif
