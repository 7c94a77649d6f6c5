/* Encoding (pre-tokenisation, BPE by merge rank, word cache) and decoding. */
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

/* ---- word cache ------------------------------------------------------------ */

#define CACHE_SLOTS (1u << 15)
#define CACHE_KEY_BYTES ((size_t)1 << 20)
#define CACHE_IDS ((size_t)1 << 18)

void mtft_tokenizer__cache_dispose(mtft_tok_cache *c) {
    mtft__free(c->slots);
    mtft__free(c->keys);
    mtft__free(c->ids);
    memset(c, 0, sizeof *c);
}

void mtft_tokenizer__cache_clear(mtft_tok_cache *c) {
    if (c->slots) memset(c->slots, 0, (size_t)c->cap * sizeof *c->slots);
    c->count = 0;
    c->keys_len = 0;
    c->ids_len = 0;
}

static int cache_init(mtft_tok_cache *c) {
    c->slots = mtft__calloc(CACHE_SLOTS, sizeof *c->slots);
    c->keys = mtft__malloc(CACHE_KEY_BYTES);
    c->ids = mtft__malloc(CACHE_IDS * sizeof *c->ids);
    if (!c->slots || !c->keys || !c->ids) {
        mtft_tokenizer__cache_dispose(c);
        return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory (word cache)");
    }
    c->cap = CACHE_SLOTS;
    c->keys_cap = CACHE_KEY_BYTES;
    c->ids_cap = CACHE_IDS;
    return MTFT_OK;
}

/* The slot holding word w, or the empty slot where it would go. */
static mtft_tok_cache_slot *cache_slot(mtft_tok_cache *c, const uint8_t *w, size_t n, uint64_t h) {
    uint32_t mask = c->cap - 1, i = (uint32_t)h & mask;
    for (;;) {
        mtft_tok_cache_slot *s = &c->slots[i];
        if (!s->hash) return s;
        if (s->hash == h && s->key_len == n && memcmp(c->keys + s->key_off, w, n) == 0) return s;
        i = (i + 1) & mask;
    }
}

static void cache_put(mtft_tok_cache *c, const uint8_t *w, size_t n, uint64_t h, const int32_t *ids, int m) {
    if ((c->count + 1) * 4 > c->cap * 3 || c->keys_len + n > c->keys_cap || c->ids_len + (size_t)m > c->ids_cap) {
        mtft_tokenizer__cache_clear(c);
        c->clears++;
    }
    mtft_tok_cache_slot *s = cache_slot(c, w, n, h);
    if (s->hash) return;
    s->hash = h;
    s->key_off = (uint32_t)c->keys_len;
    s->key_len = (uint16_t)n;
    s->ids_off = (uint32_t)c->ids_len;
    s->n_ids = (uint16_t)m;
    memcpy(c->keys + c->keys_len, w, n);
    c->keys_len += n;
    memcpy(c->ids + c->ids_len, ids, (size_t)m * sizeof *ids);
    c->ids_len += (size_t)m;
    c->count++;
}

/* ---- BPE ------------------------------------------------------------------- */

/* GPT-2's algorithm: find the lowest-ranked adjacent pair, merge all its
 * occurrences left to right, repeat. O(n) per pass; used for short words. */
int mtft_tokenizer__bpe_word_reference(const mtft_tokenizer *t, const uint8_t *w, size_t n, int32_t *sym) {
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    while (m > 1) {
        int32_t best = -1, a = 0, b = 0, merged = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            int32_t nw;
            int32_t r = mtft_tokenizer__merge_rank(t, sym[i], sym[i + 1], &nw);
            if (r >= 0 && (best < 0 || r < best)) {
                best = r;
                a = sym[i];
                b = sym[i + 1];
                merged = nw;
            }
        }
        if (best < 0) break;
        size_t j = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == a && sym[i + 1] == b) {
                sym[j++] = merged;
                i += 2;
            } else {
                sym[j++] = sym[i++];
            }
        }
        m = j;
    }
    return (int)m;
}

/* The same result with a heap of (rank, position): O(n log n) for long
 * words. Symbols form a linked list over positions; an entry is valid while
 * its pair still sits at its position. All entries of one rank are applied
 * (left to right, as GPT-2's pass does) before pairs they create are
 * queued, so even a merges list whose later merges have lower ranks gives
 * GPT-2's result. */
typedef struct heap_ent {
    int32_t rank;
    int32_t pos;
    int32_t a, b;
} heap_ent;

static int ent_less(const heap_ent *x, const heap_ent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && ent_less(&h[c + 1], &h[c])) c++;
        if (!ent_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int bpe_heap(const mtft_tokenizer *t, const uint8_t *w, size_t n, int32_t *out) {
    /* sym, next, prev per position; heap up to 3 entries per merge + n */
    int32_t *sym = mtft__malloc(n * 3 * sizeof *sym);
    size_t hcap = 3 * n + 8, hn = 0, pn = 0;
    heap_ent *heap = mtft__malloc(hcap * sizeof *heap);
    heap_ent *pend = mtft__malloc(hcap * sizeof *pend);
    if (!sym || !heap || !pend) {
        mtft__free(sym);
        mtft__free(heap);
        mtft__free(pend);
        return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory (word of %zu bytes)", n);
    }
    int32_t *next = sym + n, *prev = sym + 2 * n;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[w[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t nw, r = mtft_tokenizer__merge_rank(t, sym[i], sym[i + 1], &nw);
        if (r >= 0) heap_push(heap, &hn, (heap_ent){r, (int32_t)i, sym[i], sym[i + 1]});
    }
    while (hn > 0) {
        int32_t rank = heap[0].rank;
        while (hn > 0 && heap[0].rank == rank) {
            heap_ent e = heap_pop(heap, &hn);
            int32_t p = e.pos, q = next[p];
            if (sym[p] != e.a || q < 0 || sym[q] != e.b) continue; /* stale */
            int32_t merged;
            mtft_tokenizer__merge_rank(t, e.a, e.b, &merged);
            sym[p] = merged;
            sym[q] = -1;
            next[p] = next[q];
            if (next[q] >= 0) prev[next[q]] = p;
            int32_t nw, r;
            if (prev[p] >= 0 && (r = mtft_tokenizer__merge_rank(t, sym[prev[p]], merged, &nw)) >= 0)
                pend[pn++] = (heap_ent){r, prev[p], sym[prev[p]], merged};
            if (next[p] >= 0 && (r = mtft_tokenizer__merge_rank(t, merged, sym[next[p]], &nw)) >= 0)
                pend[pn++] = (heap_ent){r, p, merged, sym[next[p]]};
        }
        for (size_t k = 0; k < pn; k++) heap_push(heap, &hn, pend[k]);
        pn = 0;
    }
    int m = 0;
    for (int32_t p = 0; p >= 0; p = next[p]) out[m++] = sym[p];
    mtft__free(sym);
    mtft__free(heap);
    mtft__free(pend);
    return m;
}

#define BPE_HEAP_MIN 48

int mtft_tokenizer__bpe_word(const mtft_tokenizer *t, const uint8_t *w, size_t n, int32_t *out) {
    if (n < BPE_HEAP_MIN) return mtft_tokenizer__bpe_word_reference(t, w, n, out);
    return bpe_heap(t, w, n, out);
}

/* ---- encode ---------------------------------------------------------------- */

typedef struct emitter {
    int32_t *ids;
    size_t cap, n;
} emitter;

static inline void emit(emitter *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static int encode_word(mtft_tokenizer *t, const uint8_t *w, size_t n, emitter *e) {
    if (n == 1) {
        emit(e, t->byte_id[w[0]]);
        return MTFT_OK;
    }
    mtft_tok_cache *c = &t->cache;
    uint64_t h = 0;
    if (n <= MTFT_TOK_CACHE_MAX_WORD) {
        if (!c->slots) {
            int rc = cache_init(c);
            if (rc < 0) return rc;
        }
        h = mtft_tokenizer__hash_bytes(w, n);
        mtft_tok_cache_slot *s = cache_slot(c, w, n, h);
        if (s->hash) {
            c->hits++;
            const int32_t *ids = c->ids + s->ids_off;
            for (int k = 0; k < s->n_ids; k++) emit(e, ids[k]);
            return MTFT_OK;
        }
        c->misses++;
        int32_t buf[MTFT_TOK_CACHE_MAX_WORD];
        int m = mtft_tokenizer__bpe_word(t, w, n, buf);
        if (m < 0) return m;
        for (int k = 0; k < m; k++) emit(e, buf[k]);
        cache_put(c, w, n, h, buf, m);
        return MTFT_OK;
    }
    int32_t *buf = mtft__malloc(n * sizeof *buf);
    if (!buf) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory (word of %zu bytes)", n);
    int m = mtft_tokenizer__bpe_word(t, w, n, buf);
    for (int k = 0; k < m; k++) emit(e, buf[k]);
    mtft__free(buf);
    return m < 0 ? m : MTFT_OK;
}

static int encode_plain(mtft_tokenizer *t, const uint8_t *s, size_t n, emitter *e) {
    size_t i = 0;
    while (i < n) {
        size_t j = mtft_tokenizer__next_word(s, n, i);
        int rc = encode_word(t, s + i, j - i, e);
        if (rc < 0) return rc;
        i = j;
    }
    return MTFT_OK;
}

/* Longest special token starting at s[i], or -1. */
static int32_t special_at(const mtft_tokenizer *t, const uint8_t *s, size_t n, size_t i) {
    for (int k = 0; k < t->n_spec; k++) {
        int32_t id = t->spec_ids[k];
        size_t len = t->raw_len[id];
        if (len <= n - i && memcmp(s + i, t->raw.data + t->raw_off[id], len) == 0) return id;
    }
    return -1;
}

MTFT_API int mtft_tokenizer_encode(mtft_tokenizer *tok, const char *text, size_t len, int32_t *ids, size_t cap,
                                   size_t *n_out) {
    MTFT_CHECK_ARG(tok != NULL);
    MTFT_CHECK_ARG(n_out != NULL);
    MTFT_CHECK_ARG(text != NULL || len == 0);
    MTFT_CHECK_ARG(ids != NULL || cap == 0);
    *n_out = 0;
    if (tok->byte_id[0] < 0) return mtft__err(MTFT_ESTATE, "tokenizer: vocabulary has no byte tokens");
    emitter e = {ids, cap, 0};
    const uint8_t *s = (const uint8_t *)text;
    int rc = MTFT_OK;
    if (!tok->parse_special || tok->n_spec == 0) {
        rc = encode_plain(tok, s, len, &e);
    } else {
        size_t start = 0;
        for (size_t i = 0; i < len && rc == MTFT_OK; i++) {
            if (!tok->spec_first[s[i]]) continue;
            int32_t id = special_at(tok, s, len, i);
            if (id < 0) continue;
            rc = encode_plain(tok, s + start, i - start, &e);
            emit(&e, id);
            i += tok->raw_len[id] - 1;
            start = i + 1;
        }
        if (rc == MTFT_OK && start < len) rc = encode_plain(tok, s + start, len - start, &e);
    }
    if (rc < 0) return rc;
    *n_out = e.n;
    if (e.n > cap)
        return mtft__err(MTFT_ERANGE, "tokenizer: encode needs %zu ids, buffer holds %zu", e.n, cap);
    return MTFT_OK;
}

MTFT_API int mtft_tokenizer_decode(const mtft_tokenizer *tok, const int32_t *ids, size_t n, char *buf,
                                   size_t cap, size_t *len_out) {
    MTFT_CHECK_ARG(tok != NULL);
    MTFT_CHECK_ARG(len_out != NULL);
    MTFT_CHECK_ARG(ids != NULL || n == 0);
    MTFT_CHECK_ARG(buf != NULL || cap == 0);
    *len_out = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || tok->disp_off[id] == MTFT_TOK_NONE) {
            if (id >= 0 && id < tok->n_ids)
                return mtft__err(MTFT_EINVAL, "tokenizer: decode: id %d at position %zu has no token", (int)id, i);
            return mtft__err(MTFT_EINVAL, "tokenizer: decode: id %d at position %zu is out of range [0, %d)",
                             (int)id, i, (int)tok->n_ids);
        }
        size_t l = tok->raw_len[id];
        if (total < cap) {
            size_t k = cap - total < l ? cap - total : l;
            memcpy(buf + total, tok->raw.data + tok->raw_off[id], k);
        }
        total += l;
    }
    *len_out = total;
    if (total < cap) buf[total] = '\0';
    if (total > cap)
        return mtft__err(MTFT_ERANGE, "tokenizer: decode needs %zu bytes, buffer holds %zu", total, cap);
    return MTFT_OK;
}
