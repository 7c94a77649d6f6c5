/* Internal tokenizer state shared by the src/tokenizer/ sources. Not installed.
 *
 * Ids: 0 .. n_ids-1. Each id has a display form (vocabulary-file spelling,
 * NUL-terminated in disp pool) and raw bytes (raw pool); an id with no token
 * (a hole in a sparse vocabulary) has disp_off == MTFT_TOK_NONE. */
#ifndef MTFT_TOKENIZER_IMPL_H
#define MTFT_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "mtft/tokenizer.h"

#define MTFT_TOK_NONE UINT32_MAX
#define MTFT_TOK_MAX_SPECIAL_LEN 256
/* Words up to this many bytes are cached. */
#define MTFT_TOK_CACHE_MAX_WORD 64

/* Growable byte pool addressed by offsets (stable across growth). */
typedef struct mtft_tok_pool {
    char *data;
    size_t len, cap;
} mtft_tok_pool;

/* Bounded word cache: open addressing over slots; keys and ids in pools.
 * When either pool or the slot table is 3/4 full it is cleared. */
typedef struct mtft_tok_cache_slot {
    uint64_t hash;   /* 0: empty */
    uint32_t key_off;
    uint32_t ids_off;
    uint16_t key_len;
    uint16_t n_ids;
} mtft_tok_cache_slot;

typedef struct mtft_tok_cache {
    mtft_tok_cache_slot *slots;
    uint32_t cap;    /* power of two */
    uint32_t count;
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
    uint64_t hits, misses, clears;
} mtft_tok_cache;

struct mtft_tokenizer {
    int32_t n_ids, cap_ids;
    uint32_t *disp_off;  /* per id, into disp */
    uint32_t *raw_off;   /* per id, into raw */
    uint32_t *raw_len;
    uint8_t *special;    /* per id: 1 when special */
    mtft_tok_pool disp, raw;

    /* display form -> id */
    int32_t *map;        /* slots hold ids, -1 empty */
    uint32_t map_cap, map_count;

    int32_t byte_id[256]; /* id of each single byte; -1 when absent */

    /* merges, rank = index */
    int32_t n_merges, cap_merges;
    int32_t *merge_a, *merge_b, *merge_new;
    uint64_t *mm_keys;   /* (a << 32 | b) + 1; 0 empty */
    int32_t *mm_rank;
    uint32_t mm_cap;

    /* special tokens, longest first */
    int32_t *spec_ids;
    int n_spec, cap_spec;
    uint8_t spec_first[256]; /* 1 when some special token starts with this byte */
    int parse_special;

    mtft_tok_cache cache;
};

/* ---- unicode (unicode_tables.c, generated) -------------------------------- */
extern const char mtft_tokenizer__unicode_version[];
extern const uint32_t mtft_tokenizer__letter_ranges[][2];
extern const size_t mtft_tokenizer__letter_ranges_count;
extern const uint32_t mtft_tokenizer__number_ranges[][2];
extern const size_t mtft_tokenizer__number_ranges_count;
extern const uint32_t mtft_tokenizer__space_ranges[][2];
extern const size_t mtft_tokenizer__space_ranges_count;

/* ---- pretok.c -------------------------------------------------------------- */
typedef enum mtft_tok_class {
    MTFT_TOK_LETTER = 0,
    MTFT_TOK_NUMBER = 1,
    MTFT_TOK_SPACE = 2,
    MTFT_TOK_OTHER = 3  /* also every byte of invalid UTF-8 */
} mtft_tok_class;

/* Class of code point cp. */
mtft_tok_class mtft_tokenizer__classify(uint32_t cp);
/* Decode one code point at s[0..n) (n >= 1). Returns its byte length (1..4);
 * an invalid sequence yields length 1 and *cp = UINT32_MAX. */
int mtft_tokenizer__utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* End (exclusive) of the pre-tokenisation word that starts at s[i], i < n. */
size_t mtft_tokenizer__next_word(const uint8_t *s, size_t n, size_t i);
/* GPT-2's byte-to-unicode map: byte -> code point (< 324), and back
 * (-1 when the code point is not one of the 256). */
uint32_t mtft_tokenizer__byte_to_cp(uint8_t b);
int mtft_tokenizer__cp_to_byte(uint32_t cp);
/* Byte b at position k (0..255) of GPT-2's byte order (printable first). */
uint8_t mtft_tokenizer__byte_order(int k);

/* ---- vocab.c --------------------------------------------------------------- */
int mtft_tokenizer__new(mtft_tokenizer **out);
/* Set id's token from its display form. Bytes that are all GPT-2
 * byte-alphabet characters decode to raw bytes; other strings (e.g. special
 * tokens with spaces) stand for themselves. MTFT_EFORMAT when the id already
 * has a token or the display form is already used by another id (the caller
 * adds the location). */
int mtft_tokenizer__set_token(mtft_tokenizer *tok, int32_t id, const char *disp, size_t disp_len);
/* Set id's token from raw bytes (display form computed). */
int mtft_tokenizer__set_token_raw(mtft_tokenizer *tok, int32_t id, const char *raw, size_t raw_len);
/* Set id as a special token with text (display == raw == text). */
int mtft_tokenizer__set_special(mtft_tokenizer *tok, int32_t id, const char *text, size_t len);
/* Mark an existing id special. */
int mtft_tokenizer__mark_special(mtft_tokenizer *tok, int32_t id);
int32_t mtft_tokenizer__lookup(const mtft_tokenizer *tok, const char *disp, size_t len);
/* Fill byte_id[]; MTFT_EFORMAT naming the missing byte token. */
int mtft_tokenizer__finish_vocab(mtft_tokenizer *tok);
/* Register merge (a, b) -> new with the next rank. A pair that already has a
 * rank keeps it (returns MTFT_OK). */
int mtft_tokenizer__add_merge_ids(mtft_tokenizer *tok, int32_t a, int32_t b, int32_t merged);
/* Rank of (a, b) or -1; *merged set when found. */
int32_t mtft_tokenizer__merge_rank(const mtft_tokenizer *tok, int32_t a, int32_t b, int32_t *merged);

int mtft_tokenizer__pool_put(mtft_tok_pool *p, const char *s, size_t n, int nul, uint32_t *off);

/* ---- encode.c -------------------------------------------------------------- */
void mtft_tokenizer__cache_dispose(mtft_tok_cache *c);
void mtft_tokenizer__cache_clear(mtft_tok_cache *c);
/* BPE of one word (raw bytes) into out (n bytes at most ids); returns the
 * number of ids or a negative status. Exposed for tests. */
int mtft_tokenizer__bpe_word(const mtft_tokenizer *tok, const uint8_t *w, size_t n, int32_t *out);
/* Same, with the reference algorithm (GPT-2's: repeatedly merge every
 * occurrence of the lowest-ranked pair); for tests. */
int mtft_tokenizer__bpe_word_reference(const mtft_tokenizer *tok, const uint8_t *w, size_t n, int32_t *out);

/* ---- hashing --------------------------------------------------------------- */
static inline uint64_t mtft_tokenizer__hash_bytes(const void *p, size_t n) {
    /* FNV-1a 64, then a final mix; never 0. */
    const uint8_t *s = (const uint8_t *)p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h ? h : 1;
}

static inline uint64_t mtft_tokenizer__hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif
