/* GPT-2 pre-tokenisation, by hand:
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * over UTF-8 bytes. A byte that does not start a valid UTF-8 sequence (or an
 * overlong form, a surrogate, a code point above U+10FFFF, a truncated
 * sequence) is one symbol of class "other", so it joins runs of punctuation
 * and every byte string is covered by the words exactly once. Also the
 * GPT-2 byte-to-unicode map. */
#include "tokenizer/tokenizer_impl.h"

/* ASCII classes. */
static const uint8_t ascii_class[128] = {
#define O MTFT_TOK_OTHER
#define S MTFT_TOK_SPACE
#define L MTFT_TOK_LETTER
#define N MTFT_TOK_NUMBER
    O, O, O, O, O, O, O, O, O, S, S, S, S, S, O, O, /* 0x00 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0x10 */
    S, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0x20 */
    N, N, N, N, N, N, N, N, N, N, O, O, O, O, O, O, /* 0x30 */
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* 0x40 */
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O, /* 0x50 */
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* 0x60 */
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O, /* 0x70 */
#undef O
#undef S
#undef L
#undef N
};

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

mtft_tok_class mtft_tokenizer__classify(uint32_t cp) {
    if (cp < 128) return (mtft_tok_class)ascii_class[cp];
    if (cp > 0x10FFFF) return MTFT_TOK_OTHER;
    if (in_ranges(mtft_tokenizer__letter_ranges, mtft_tokenizer__letter_ranges_count, cp))
        return MTFT_TOK_LETTER;
    if (in_ranges(mtft_tokenizer__number_ranges, mtft_tokenizer__number_ranges_count, cp))
        return MTFT_TOK_NUMBER;
    if (in_ranges(mtft_tokenizer__space_ranges, mtft_tokenizer__space_ranges_count, cp))
        return MTFT_TOK_SPACE;
    return MTFT_TOK_OTHER;
}

int mtft_tokenizer__utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0Fu;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07u;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* > U+10FFFF */
    } else {
        *cp = UINT32_MAX;
        return 1;
    }
    if ((size_t)len > n || s[1] < lo || s[1] > hi) {
        *cp = UINT32_MAX;
        return 1;
    }
    v = (v << 6) | (s[1] & 0x3Fu);
    for (int k = 2; k < len; k++) {
        if ((s[k] & 0xC0u) != 0x80u) {
            *cp = UINT32_MAX;
            return 1;
        }
        v = (v << 6) | (s[k] & 0x3Fu);
    }
    *cp = v;
    return len;
}

/* Class and length of the symbol at s[i]. */
static inline mtft_tok_class sym_at(const uint8_t *s, size_t n, size_t i, int *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return (mtft_tok_class)ascii_class[c];
    }
    uint32_t cp;
    *len = mtft_tokenizer__utf8_decode(s + i, n - i, &cp);
    return cp == UINT32_MAX ? MTFT_TOK_OTHER : mtft_tokenizer__classify(cp);
}

/* End of the run of class k that starts at j. */
static inline size_t run_end(const uint8_t *s, size_t n, size_t j, mtft_tok_class k) {
    while (j < n) {
        int len;
        if (sym_at(s, n, j, &len) != k) break;
        j += (size_t)len;
    }
    return j;
}

size_t mtft_tokenizer__next_word(const uint8_t *s, size_t n, size_t i) {
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    int len;
    mtft_tok_class k = sym_at(s, n, i, &len);
    /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' with the optional space */
    if (s[i] == ' ' && i + 1 < n) {
        int len1;
        mtft_tok_class k1 = sym_at(s, n, i + 1, &len1);
        if (k1 != MTFT_TOK_SPACE) return run_end(s, n, i + 1 + (size_t)len1, k1);
    }
    if (k != MTFT_TOK_SPACE) return run_end(s, n, i + (size_t)len, k);
    /* '\s+(?!\S)' then '\s+': a whitespace run; when a non-space follows a
     * run of two or more, the last whitespace symbol is left for the next
     * word (it becomes the optional space, or a lone whitespace word). */
    size_t last = i, j = i + (size_t)len;
    int count = 1;
    while (j < n) {
        int l2;
        if (sym_at(s, n, j, &l2) != MTFT_TOK_SPACE) break;
        last = j;
        j += (size_t)l2;
        count++;
    }
    if (j == n || count == 1) return j;
    return last;
}

/* ---- GPT-2 byte-to-unicode --------------------------------------------------
 * Printable bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to themselves; the
 * other 68 bytes map to 256, 257, ... in increasing byte order. */
static int byte_printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t mtft_tokenizer__byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    /* number of non-printable bytes below b */
    uint32_t k;
    if (b <= 0x20) k = b;                       /* 0x00..0x20: 33 bytes */
    else if (b <= 0xA0) k = 33u + (b - 0x7Fu);  /* 0x7F..0xA0: 34 bytes */
    else k = 67;                                /* 0xAD */
    return 256u + k;
}

int mtft_tokenizer__cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_printable((int)cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 0x7F);
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

uint8_t mtft_tokenizer__byte_order(int k) {
    /* printable bytes in increasing order (188 of them), then the rest */
    if (k < 94) return (uint8_t)('!' + k);
    if (k < 94 + 12) return (uint8_t)(0xA1 + (k - 94));
    if (k < 188) return (uint8_t)(0xAE + (k - 106));
    k -= 188;
    if (k < 33) return (uint8_t)k;
    if (k < 67) return (uint8_t)(0x7F + (k - 33));
    return 0xAD;
}
