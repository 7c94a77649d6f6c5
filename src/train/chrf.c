/* chrF (Popović 2015) as sacrebleu 2.x computes it by default
 * (CHRF(char_order=6, word_order=0, beta=2, whitespace=False,
 * eps_smoothing=False)):
 *   - a sentence is a sequence of Unicode code points; whitespace (Python's
 *     str.split() set) is removed first;
 *   - for n = 1..6: hyp = number of hypothesis n-grams (0 when the reference
 *     has no n-gram of that order), ref = number of reference n-grams,
 *     match = sum over distinct n-grams of min(count in hyp, count in ref);
 *   - corpus statistics are the sums over sentences;
 *   - precision and recall are averaged over the orders where hyp > 0 and
 *     ref > 0 ("effective order"), then F_beta = (1+b^2) P R / (b^2 P + R),
 *     times 100 (0 when P + R == 0). */
#include <string.h>

#include "metrics_impl.h"

/* Python's str.isspace() code points (what str.split() splits on). */
static int is_py_space(uint32_t c) {
    if (c >= 0x09 && c <= 0x0D) return 1;
    if (c >= 0x1C && c <= 0x20) return 1;
    if (c == 0x85 || c == 0xA0 || c == 0x1680) return 1;
    if (c >= 0x2000 && c <= 0x200A) return 1;
    return c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Strict UTF-8 decode of s into cp (room for strlen(s) code points), dropping
 * whitespace. Returns the count, or -1 with *bad the byte offset of the first
 * invalid sequence. */
static int64_t decode_nows(const char *s, uint32_t *cp, size_t *bad) {
    const unsigned char *p = (const unsigned char *)s;
    int64_t n = 0;
    size_t i = 0;
    while (p[i]) {
        uint32_t c = p[i];
        int len;
        uint32_t min;
        if (c < 0x80) { len = 1; min = 0; }
        else if ((c & 0xE0) == 0xC0) { len = 2; c &= 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; c &= 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; c &= 0x07; min = 0x10000; }
        else { *bad = i; return -1; }
        for (int k = 1; k < len; k++) {
            if ((p[i + (size_t)k] & 0xC0) != 0x80) { *bad = i; return -1; }
            c = (c << 6) | (p[i + (size_t)k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) { *bad = i; return -1; }
        if (!is_py_space(c)) cp[n++] = c;
        i += (size_t)len;
    }
    return n;
}

/* Merge sort of n-gram start positions by their content (n code points of
 * buf), with a context, which qsort cannot take. */
static int ngram_cmp(const uint32_t *buf, int n, uint32_t a, uint32_t b) {
    for (int k = 0; k < n; k++) {
        uint32_t x = buf[a + (uint32_t)k], y = buf[b + (uint32_t)k];
        if (x != y) return x < y ? -1 : 1;
    }
    return 0;
}

static void msort(uint32_t *v, uint32_t *tmp, size_t len, const uint32_t *buf, int n) {
    if (len < 2) return;
    size_t h = len / 2;
    msort(v, tmp, h, buf, n);
    msort(v + h, tmp, len - h, buf, n);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < len) tmp[k++] = ngram_cmp(buf, n, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < len) tmp[k++] = v[j++];
    memcpy(v, tmp, len * sizeof *v);
}

int mtft_metrics__chrf_add(int64_t stats[3 * MTFT_CHRF_ORDER], const char *hyp, const char *ref, size_t pair) {
    size_t lh = strlen(hyp), lr = strlen(ref), cap = lh + lr + 1;
    if (cap > UINT32_MAX / 2) return mtft__err(MTFT_ERANGE, "chrf: pair %zu: texts too long (%zu bytes)", pair, cap);
    uint32_t *buf = mtft__malloc(3 * cap * sizeof *buf);
    if (!buf) return MTFT_ENOMEM;
    uint32_t *pos = buf + cap, *tmp = pos + cap;
    size_t bad = 0;
    int64_t nh = decode_nows(hyp, buf, &bad);
    if (nh < 0) {
        mtft__free(buf);
        return mtft__err(MTFT_EFORMAT, "chrf: pair %zu: hypothesis is not valid UTF-8 at byte %zu", pair, bad);
    }
    int64_t nr = decode_nows(ref, buf + nh, &bad);
    if (nr < 0) {
        mtft__free(buf);
        return mtft__err(MTFT_EFORMAT, "chrf: pair %zu: reference is not valid UTF-8 at byte %zu", pair, bad);
    }
    for (int n = 1; n <= MTFT_CHRF_ORDER; n++) {
        int64_t ch = nh >= n ? nh - n + 1 : 0, cr = nr >= n ? nr - n + 1 : 0;
        size_t m = 0;
        for (int64_t i = 0; i < ch; i++) pos[m++] = (uint32_t)i;
        for (int64_t i = 0; i < cr; i++) pos[m++] = (uint32_t)(nh + i);
        msort(pos, tmp, m, buf, n);
        int64_t match = 0;
        for (size_t i = 0; i < m;) {
            size_t j = i;
            int64_t a = 0, b = 0;
            while (j < m && ngram_cmp(buf, n, pos[i], pos[j]) == 0) {
                if ((int64_t)pos[j] < nh) a++;
                else b++;
                j++;
            }
            match += a < b ? a : b;
            i = j;
        }
        /* sacrebleu counts no hypothesis n-grams when the reference has none */
        stats[3 * (n - 1) + 0] += cr > 0 ? ch : 0;
        stats[3 * (n - 1) + 1] += cr;
        stats[3 * (n - 1) + 2] += match;
    }
    mtft__free(buf);
    return MTFT_OK;
}

double mtft_metrics__chrf_score(const int64_t stats[3 * MTFT_CHRF_ORDER]) {
    double p = 0.0, r = 0.0;
    int eff = 0;
    for (int n = 0; n < MTFT_CHRF_ORDER; n++) {
        int64_t h = stats[3 * n], f = stats[3 * n + 1], m = stats[3 * n + 2];
        if (h > 0 && f > 0) {
            p += (double)m / (double)h;
            r += (double)m / (double)f;
            eff++;
        }
    }
    if (eff == 0) return 0.0;
    p /= eff;
    r /= eff;
    if (p + r == 0.0) return 0.0;
    double b2 = MTFT_CHRF_BETA * MTFT_CHRF_BETA;
    return 100.0 * (1.0 + b2) * p * r / (b2 * p + r);
}
