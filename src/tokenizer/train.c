/* Byte-level BPE training and saving in Hugging Face's vocab.json +
 * merges.txt format.
 *
 * Training: the text is cut at special tokens, split into GPT-2 words and
 * counted; each distinct word becomes a symbol sequence (byte ids). Pair
 * counts (weighted by word counts) live in a hash map; each pair keeps a list
 * of the words it occurs in, so a merge touches only those words: their old
 * pairs are subtracted, the pair merged, the new pairs added. The best pair
 * comes from a max-heap with lazy updates: counts of existing pairs only
 * fall (a merge creates only pairs with the new id), so a popped entry whose
 * count is stale is pushed back with its current count, and a current one is
 * the true maximum. Ties: smaller left id, then smaller right id. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/tokenizer_impl.h"

/* ---- word counting --------------------------------------------------------- */

typedef struct word_ent {
    uint64_t hash;
    uint32_t off, len;   /* bytes in words.bytes */
    int64_t count;
} word_ent;

typedef struct word_table {
    word_ent *ents;
    size_t n, cap_ents;
    int32_t *slots; /* index into ents or -1 */
    size_t slot_cap;
    char *bytes;
    size_t bytes_len, bytes_cap;
} word_table;

static int wt_grow_slots(word_table *wt) {
    size_t cap = wt->slot_cap ? wt->slot_cap * 2 : 1 << 12;
    int32_t *s = mtft__malloc(cap * sizeof *s);
    if (!s) return mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
    for (size_t i = 0; i < cap; i++) s[i] = -1;
    for (size_t k = 0; k < wt->n; k++) {
        size_t i = (size_t)wt->ents[k].hash & (cap - 1);
        while (s[i] >= 0) i = (i + 1) & (cap - 1);
        s[i] = (int32_t)k;
    }
    mtft__free(wt->slots);
    wt->slots = s;
    wt->slot_cap = cap;
    return MTFT_OK;
}

static int wt_add(word_table *wt, const uint8_t *w, size_t n) {
    int rc;
    if ((wt->n + 1) * 2 > wt->slot_cap && (rc = wt_grow_slots(wt)) < 0) return rc;
    uint64_t h = mtft_tokenizer__hash_bytes(w, n);
    size_t i = (size_t)h & (wt->slot_cap - 1);
    while (wt->slots[i] >= 0) {
        word_ent *e = &wt->ents[wt->slots[i]];
        if (e->hash == h && e->len == n && memcmp(wt->bytes + e->off, w, n) == 0) {
            e->count++;
            return MTFT_OK;
        }
        i = (i + 1) & (wt->slot_cap - 1);
    }
    if (wt->n == wt->cap_ents) {
        size_t cap = wt->cap_ents ? wt->cap_ents * 2 : 1024;
        word_ent *e = mtft__realloc(wt->ents, cap * sizeof *e);
        if (!e) return mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
        wt->ents = e;
        wt->cap_ents = cap;
    }
    if (wt->bytes_len + n > wt->bytes_cap) {
        size_t cap = wt->bytes_cap ? wt->bytes_cap : 1 << 16;
        while (cap < wt->bytes_len + n) cap *= 2;
        if (cap > UINT32_MAX) return mtft__err(MTFT_ERANGE, "tokenizer: train: more than 4 GiB of distinct words");
        char *b = mtft__realloc(wt->bytes, cap);
        if (!b) return mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
        wt->bytes = b;
        wt->bytes_cap = cap;
    }
    memcpy(wt->bytes + wt->bytes_len, w, n);
    wt->ents[wt->n] = (word_ent){h, (uint32_t)wt->bytes_len, (uint32_t)n, 1};
    wt->bytes_len += n;
    wt->slots[i] = (int32_t)wt->n++;
    return MTFT_OK;
}

static void wt_dispose(word_table *wt) {
    mtft__free(wt->ents);
    mtft__free(wt->slots);
    mtft__free(wt->bytes);
}

/* ---- pairs ----------------------------------------------------------------- */

typedef struct pair_ent {
    int32_t a, b;
    int64_t count;
    int32_t head;   /* first node of the where-list, -1 none */
    int32_t stamp;  /* last merge that queued it */
} pair_ent;

typedef struct where_node {
    int32_t word, next;
} where_node;

typedef struct heap_item {
    int64_t count;
    int32_t a, b;
} heap_item;

typedef struct trainer {
    pair_ent *pairs;
    size_t n_pairs, cap_pairs;
    int32_t *slots;
    size_t slot_cap;
    where_node *nodes;
    size_t n_nodes, cap_nodes;
    heap_item *heap;
    size_t n_heap, cap_heap;
    int32_t *touched; /* pairs created by the current merge */
    size_t n_touched, cap_touched;
} trainer;

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return MTFT_OK;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = mtft__realloc(*p, c * elem);
    if (!q) return mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
    *p = q;
    *cap = c;
    return MTFT_OK;
}

static int tr_grow_slots(trainer *tr) {
    size_t cap = tr->slot_cap ? tr->slot_cap * 2 : 1 << 14;
    int32_t *s = mtft__malloc(cap * sizeof *s);
    if (!s) return mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
    for (size_t i = 0; i < cap; i++) s[i] = -1;
    for (size_t k = 0; k < tr->n_pairs; k++) {
        size_t i = (size_t)mtft_tokenizer__hash_u64(pair_key(tr->pairs[k].a, tr->pairs[k].b)) & (cap - 1);
        while (s[i] >= 0) i = (i + 1) & (cap - 1);
        s[i] = (int32_t)k;
    }
    mtft__free(tr->slots);
    tr->slots = s;
    tr->slot_cap = cap;
    return MTFT_OK;
}

/* Index of an existing pair (a, b), or -1. */
static int64_t tr_find(const trainer *tr, int32_t a, int32_t b) {
    if (!tr->slot_cap) return -1;
    size_t i = (size_t)mtft_tokenizer__hash_u64(pair_key(a, b)) & (tr->slot_cap - 1);
    while (tr->slots[i] >= 0) {
        const pair_ent *p = &tr->pairs[tr->slots[i]];
        if (p->a == a && p->b == b) return tr->slots[i];
        i = (i + 1) & (tr->slot_cap - 1);
    }
    return -1;
}

/* Index of pair (a, b), created (count 0) when absent; negative on error. */
static int64_t tr_pair(trainer *tr, int32_t a, int32_t b) {
    int64_t have = tr_find(tr, a, b);
    if (have >= 0) return have;
    int rc;
    if ((tr->n_pairs + 1) * 2 > tr->slot_cap && (rc = tr_grow_slots(tr)) < 0) return rc;
    size_t i = (size_t)mtft_tokenizer__hash_u64(pair_key(a, b)) & (tr->slot_cap - 1);
    while (tr->slots[i] >= 0) {
        pair_ent *p = &tr->pairs[tr->slots[i]];
        if (p->a == a && p->b == b) return tr->slots[i];
        i = (i + 1) & (tr->slot_cap - 1);
    }
    if ((rc = grow((void **)&tr->pairs, &tr->cap_pairs, tr->n_pairs + 1, sizeof *tr->pairs)) < 0) return rc;
    if (tr->n_pairs >= INT32_MAX) return mtft__err(MTFT_ERANGE, "tokenizer: train: too many pairs");
    tr->pairs[tr->n_pairs] = (pair_ent){a, b, 0, -1, -1};
    tr->slots[i] = (int32_t)tr->n_pairs;
    return (int64_t)tr->n_pairs++;
}

static int tr_where(trainer *tr, int32_t pair, int32_t word) {
    pair_ent *p = &tr->pairs[pair];
    if (p->head >= 0 && tr->nodes[p->head].word == word) return MTFT_OK; /* just added */
    int rc = grow((void **)&tr->nodes, &tr->cap_nodes, tr->n_nodes + 1, sizeof *tr->nodes);
    if (rc < 0) return rc;
    if (tr->n_nodes >= INT32_MAX) return mtft__err(MTFT_ERANGE, "tokenizer: train: corpus too large");
    tr->nodes[tr->n_nodes] = (where_node){word, p->head};
    p->head = (int32_t)tr->n_nodes++;
    return MTFT_OK;
}

/* max-heap: larger count first, then smaller a, then smaller b */
static int item_before(const heap_item *x, const heap_item *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int tr_push(trainer *tr, heap_item it) {
    int rc = grow((void **)&tr->heap, &tr->cap_heap, tr->n_heap + 1, sizeof *tr->heap);
    if (rc < 0) return rc;
    size_t i = tr->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_before(&it, &tr->heap[p])) break;
        tr->heap[i] = tr->heap[p];
        i = p;
    }
    tr->heap[i] = it;
    return MTFT_OK;
}

static heap_item tr_pop(trainer *tr) {
    heap_item top = tr->heap[0], last = tr->heap[--tr->n_heap];
    size_t i = 0, n = tr->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && item_before(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!item_before(&tr->heap[c], &last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n) tr->heap[i] = last;
    return top;
}

static void tr_dispose(trainer *tr) {
    mtft__free(tr->pairs);
    mtft__free(tr->slots);
    mtft__free(tr->nodes);
    mtft__free(tr->heap);
    mtft__free(tr->touched);
}

/* ---- training -------------------------------------------------------------- */

/* Count the words of text, skipping occurrences of the special tokens. */
static int count_words(word_table *wt, const uint8_t *s, size_t n, const mtft_bpe_train_options *o) {
    size_t start = 0, i = 0;
    int rc;
    while (i <= n) {
        size_t skip = 0;
        if (i < n) {
            for (int k = 0; k < o->n_special_tokens; k++) {
                size_t l = strlen(o->special_tokens[k]);
                if (l > skip && l <= n - i && memcmp(s + i, o->special_tokens[k], l) == 0) skip = l;
            }
            if (!skip) {
                i++;
                continue;
            }
        }
        for (size_t p = start; p < i;) {
            size_t q = mtft_tokenizer__next_word(s, i, p);
            if ((rc = wt_add(wt, s + p, q - p)) < 0) return rc;
            p = q;
        }
        if (i == n) break;
        i += skip;
        start = i;
    }
    return MTFT_OK;
}

static int train_merges(mtft_tokenizer *t, word_table *wt, int32_t n_merges_max, int64_t min_freq) {
    int rc = MTFT_OK;
    trainer tr;
    memset(&tr, 0, sizeof tr);
    size_t n_words = wt->n;
    /* symbols of every distinct word, back to back; lengths shrink in place */
    uint32_t *wlen = mtft__malloc((n_words ? n_words : 1) * sizeof *wlen);
    int32_t *wstamp = mtft__malloc((n_words ? n_words : 1) * sizeof *wstamp);
    int32_t *sym = mtft__malloc((wt->bytes_len ? wt->bytes_len : 1) * sizeof *sym);
    if (!wlen || !wstamp || !sym) {
        rc = mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
        goto done;
    }
    for (size_t w = 0; w < n_words; w++) {
        const word_ent *e = &wt->ents[w];
        wlen[w] = e->len;
        wstamp[w] = -1;
        for (uint32_t k = 0; k < e->len; k++) sym[e->off + k] = t->byte_id[(uint8_t)wt->bytes[e->off + k]];
        for (uint32_t k = 0; k + 1 < e->len; k++) {
            int64_t p = tr_pair(&tr, sym[e->off + k], sym[e->off + k + 1]);
            if (p < 0 || (rc = tr_where(&tr, (int32_t)p, (int32_t)w)) < 0) {
                rc = p < 0 ? (int)p : rc;
                goto done;
            }
            tr.pairs[p].count += e->count;
        }
    }
    for (size_t p = 0; p < tr.n_pairs; p++)
        if ((rc = tr_push(&tr, (heap_item){tr.pairs[p].count, tr.pairs[p].a, tr.pairs[p].b})) < 0) goto done;

    for (int32_t m = 0; m < n_merges_max && tr.n_heap > 0;) {
        heap_item top = tr_pop(&tr);
        int64_t pi = tr_find(&tr, top.a, top.b);
        int64_t cur = tr.pairs[pi].count;
        if (cur != top.count) {
            if (cur > 0 && (rc = tr_push(&tr, (heap_item){cur, top.a, top.b})) < 0) goto done;
            continue;
        }
        if (cur < min_freq || cur <= 0) break;
        /* new token */
        int32_t a = top.a, b = top.b, nid = t->n_ids;
        size_t la = t->raw_len[a], lb = t->raw_len[b];
        char small[512] = {0};
        char *raw = la + lb <= sizeof small ? small : mtft__malloc(la + lb);
        if (!raw) {
            rc = mtft__err(MTFT_ENOMEM, "tokenizer: train: out of memory");
            goto done;
        }
        memcpy(raw, t->raw.data + t->raw_off[a], la);
        memcpy(raw + la, t->raw.data + t->raw_off[b], lb);
        rc = mtft_tokenizer__set_token_raw(t, nid, raw, la + lb);
        if (raw != small) mtft__free(raw);
        if (rc < 0 || (rc = mtft_tokenizer__add_merge_ids(t, a, b, nid)) < 0) goto done;
        tr.n_touched = 0;
        for (int32_t node = tr.pairs[pi].head; node >= 0; node = tr.nodes[node].next) {
            int32_t w = tr.nodes[node].word;
            if (wstamp[w] == m) continue;
            wstamp[w] = m;
            int32_t *s = sym + wt->ents[w].off;
            uint32_t n = wlen[w];
            int64_t c = wt->ents[w].count;
            int found = 0;
            for (uint32_t k = 0; k + 1 < n; k++)
                if (s[k] == a && s[k + 1] == b) found = 1;
            if (!found) continue;
            for (uint32_t k = 0; k + 1 < n; k++) tr.pairs[tr_find(&tr, s[k], s[k + 1])].count -= c;
            uint32_t j = 0;
            for (uint32_t k = 0; k < n;) {
                if (k + 1 < n && s[k] == a && s[k + 1] == b) {
                    s[j++] = nid;
                    k += 2;
                } else {
                    s[j++] = s[k++];
                }
            }
            wlen[w] = n = j;
            for (uint32_t k = 0; k + 1 < n; k++) {
                int64_t p = tr_pair(&tr, s[k], s[k + 1]);
                if (p < 0) {
                    rc = (int)p;
                    goto done;
                }
                tr.pairs[p].count += c;
                if (s[k] == nid || s[k + 1] == nid) {
                    if ((rc = tr_where(&tr, (int32_t)p, w)) < 0) goto done;
                    if (tr.pairs[p].stamp != m) {
                        tr.pairs[p].stamp = m;
                        if ((rc = grow((void **)&tr.touched, &tr.cap_touched, tr.n_touched + 1,
                                       sizeof *tr.touched)) < 0)
                            goto done;
                        tr.touched[tr.n_touched++] = (int32_t)p;
                    }
                }
            }
        }
        tr.pairs[pi].head = -1;
        for (size_t k = 0; k < tr.n_touched; k++) {
            pair_ent *p = &tr.pairs[tr.touched[k]];
            if (p->count > 0 && (rc = tr_push(&tr, (heap_item){p->count, p->a, p->b})) < 0) goto done;
        }
        m++;
    }
done:
    mtft__free(wlen);
    mtft__free(wstamp);
    mtft__free(sym);
    tr_dispose(&tr);
    return rc;
}

MTFT_API int mtft_tokenizer_train(mtft_tokenizer **out, const char *text, size_t len, const mtft_bpe_train_options *o) {
    MTFT_CHECK_ARG(out != NULL);
    MTFT_CHECK_ARG(text != NULL || len == 0);
    *out = NULL;
    mtft_bpe_train_options def = MTFT_BPE_TRAIN_OPTIONS_INIT;
    if (!o) o = &def;
    if (o->version != MTFT_BPE_TRAIN_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "tokenizer: train: options version %d, expected %d (use MTFT_BPE_TRAIN_OPTIONS_INIT)",
                         o->version, MTFT_BPE_TRAIN_OPTIONS_VERSION);
    if (o->n_special_tokens < 0 || (o->n_special_tokens > 0 && !o->special_tokens))
        return mtft__err(MTFT_EINVAL, "tokenizer: train: %d special tokens but special_tokens is NULL",
                         o->n_special_tokens);
    for (int k = 0; k < o->n_special_tokens; k++) {
        size_t l = o->special_tokens[k] ? strlen(o->special_tokens[k]) : 0;
        if (l == 0 || l > MTFT_TOK_MAX_SPECIAL_LEN)
            return mtft__err(MTFT_EINVAL, "tokenizer: train: special_tokens[%d] must have 1 to %d bytes", k,
                             MTFT_TOK_MAX_SPECIAL_LEN);
    }
    int64_t min_vocab = 256 + (int64_t)o->n_special_tokens;
    if (o->vocab_size < min_vocab || o->vocab_size > (1 << 24))
        return mtft__err(MTFT_EINVAL, "tokenizer: train: vocab_size %d must be in [%lld, %d] (256 bytes + %d specials)",
                         (int)o->vocab_size, (long long)min_vocab, 1 << 24, o->n_special_tokens);
    if (o->min_frequency < 1)
        return mtft__err(MTFT_EINVAL, "tokenizer: train: min_frequency %lld must be >= 1", (long long)o->min_frequency);

    mtft_tokenizer *t = NULL;
    word_table wt;
    memset(&wt, 0, sizeof wt);
    int rc = mtft_tokenizer__new(&t);
    for (int k = 0; rc == MTFT_OK && k < 256; k++) {
        char b = (char)mtft_tokenizer__byte_order(k);
        rc = mtft_tokenizer__set_token_raw(t, k, &b, 1);
    }
    if (rc == MTFT_OK) rc = mtft_tokenizer__finish_vocab(t);
    if (rc == MTFT_OK) rc = count_words(&wt, (const uint8_t *)text, len, o);
    if (rc == MTFT_OK) rc = train_merges(t, &wt, o->vocab_size - (int32_t)min_vocab, o->min_frequency);
    for (int k = 0; rc == MTFT_OK && k < o->n_special_tokens; k++) {
        const char *s = o->special_tokens[k];
        int32_t have = mtft_tokenizer__lookup(t, s, strlen(s));
        if (have >= 0 && t->special[have]) continue; /* listed twice */
        if (have >= 0)
            rc = mtft__err(MTFT_EINVAL, "tokenizer: train: special token '%s' is spelled like learned token %d", s,
                           (int)have);
        else
            rc = mtft_tokenizer__set_special(t, t->n_ids, s, strlen(s));
    }
    wt_dispose(&wt);
    if (rc < 0) {
        mtft_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return MTFT_OK;
}

/* ---- save ------------------------------------------------------------------ */

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p, f);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* Write via path.tmp, fsync, rename. */
static int finish_file(FILE *f, const char *tmp, const char *path) {
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        remove(tmp);
        return mtft__err(MTFT_EIO, "cannot write '%s': %s", path, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        remove(tmp);
        return mtft__err(MTFT_EIO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(err));
    }
    return MTFT_OK;
}

static FILE *open_tmp(const char *path, char **tmp) {
    size_t n = strlen(path) + 5;
    *tmp = mtft__malloc(n);
    if (!*tmp) {
        mtft__err(MTFT_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(*tmp, n, "%s.tmp", path);
    FILE *f = fopen(*tmp, "wb");
    if (!f) mtft__err(MTFT_EIO, "cannot create '%s': %s", *tmp, strerror(errno));
    return f;
}

MTFT_API int mtft_tokenizer_save_hf(const mtft_tokenizer *tok, const char *vocab_json_path, const char *merges_txt_path) {
    MTFT_CHECK_ARG(tok != NULL);
    MTFT_CHECK_ARG(vocab_json_path != NULL);
    MTFT_CHECK_ARG(merges_txt_path != NULL);
    char *tmp = NULL;
    FILE *f = open_tmp(vocab_json_path, &tmp);
    if (!f) {
        mtft__free(tmp);
        return mtft_error_last()->code;
    }
    fputs("{", f);
    int first = 1;
    for (int32_t id = 0; id < tok->n_ids; id++) {
        if (tok->disp_off[id] == MTFT_TOK_NONE) continue;
        fputs(first ? "\n  " : ",\n  ", f);
        first = 0;
        put_json_string(f, tok->disp.data + tok->disp_off[id]);
        fprintf(f, ": %d", (int)id);
    }
    fputs("\n}\n", f);
    int rc = finish_file(f, tmp, vocab_json_path);
    mtft__free(tmp);
    if (rc < 0) return rc;
    f = open_tmp(merges_txt_path, &tmp);
    if (!f) {
        mtft__free(tmp);
        return mtft_error_last()->code;
    }
    fputs("#version: 0.2\n", f);
    for (int32_t r = 0; r < tok->n_merges; r++)
        fprintf(f, "%s %s\n", tok->disp.data + tok->disp_off[tok->merge_a[r]],
                tok->disp.data + tok->disp_off[tok->merge_b[r]]);
    rc = finish_file(f, tmp, merges_txt_path);
    mtft__free(tmp);
    return rc;
}
