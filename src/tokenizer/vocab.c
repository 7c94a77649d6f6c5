/* Tokenizer handle: ids, display/raw forms, the display -> id map, merges
 * table, special tokens and the public accessors. */
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

int mtft_tokenizer__pool_put(mtft_tok_pool *p, const char *s, size_t n, int nul, uint32_t *off) {
    size_t need = p->len + n + (nul ? 1 : 0);
    if (need > (size_t)UINT32_MAX - 1)
        return mtft__err(MTFT_ERANGE, "tokenizer: token storage exceeds 4 GiB");
    if (need > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < need) cap *= 2;
        char *d = mtft__realloc(p->data, cap);
        if (!d) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory (%zu bytes)", cap);
        p->data = d;
        p->cap = cap;
    }
    *off = (uint32_t)p->len;
    if (n) memcpy(p->data + p->len, s, n);
    p->len += n;
    if (nul) p->data[p->len++] = '\0';
    return MTFT_OK;
}

int mtft_tokenizer__new(mtft_tokenizer **out) {
    mtft_tokenizer *t = mtft__calloc(1, sizeof *t);
    if (!t) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    *out = t;
    return MTFT_OK;
}

MTFT_API void mtft_tokenizer_free(mtft_tokenizer *tok) {
    if (!tok) return;
    mtft__free(tok->disp_off);
    mtft__free(tok->raw_off);
    mtft__free(tok->raw_len);
    mtft__free(tok->special);
    mtft__free(tok->disp.data);
    mtft__free(tok->raw.data);
    mtft__free(tok->map);
    mtft__free(tok->merge_a);
    mtft__free(tok->merge_b);
    mtft__free(tok->merge_new);
    mtft__free(tok->mm_keys);
    mtft__free(tok->mm_rank);
    mtft__free(tok->spec_ids);
    mtft_tokenizer__cache_dispose(&tok->cache);
    mtft__free(tok);
}

/* Grow the per-id arrays so that id < n_ids; new ids are holes. */
static int ensure_id(mtft_tokenizer *t, int32_t id) {
    if (id < 0) return mtft__err(MTFT_ERANGE, "tokenizer: negative id %d", (int)id);
    if (id >= t->cap_ids) {
        int64_t cap = t->cap_ids ? t->cap_ids : 1024;
        while (cap <= id) cap *= 2;
        if (cap > INT32_MAX) cap = (int64_t)INT32_MAX;
        uint32_t *d = mtft__realloc(t->disp_off, (size_t)cap * sizeof *d);
        if (d) t->disp_off = d;
        uint32_t *r = mtft__realloc(t->raw_off, (size_t)cap * sizeof *r);
        if (r) t->raw_off = r;
        uint32_t *l = mtft__realloc(t->raw_len, (size_t)cap * sizeof *l);
        if (l) t->raw_len = l;
        uint8_t *s = mtft__realloc(t->special, (size_t)cap);
        if (s) t->special = s;
        if (!d || !r || !l || !s) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory (%lld ids)", (long long)cap);
        t->cap_ids = (int32_t)cap;
    }
    for (int32_t k = t->n_ids; k <= id; k++) {
        t->disp_off[k] = MTFT_TOK_NONE;
        t->raw_off[k] = 0;
        t->raw_len[k] = 0;
        t->special[k] = 0;
    }
    if (id >= t->n_ids) t->n_ids = id + 1;
    return MTFT_OK;
}

static int map_grow(mtft_tokenizer *t);

static uint32_t map_find_slot(const mtft_tokenizer *t, const char *s, size_t n, uint64_t h) {
    uint32_t mask = t->map_cap - 1;
    uint32_t i = (uint32_t)h & mask;
    for (;;) {
        int32_t id = t->map[i];
        if (id < 0) return i;
        const char *d = t->disp.data + t->disp_off[id];
        if (strlen(d) == n && memcmp(d, s, n) == 0) return i;
        i = (i + 1) & mask;
    }
}

int32_t mtft_tokenizer__lookup(const mtft_tokenizer *t, const char *s, size_t n) {
    if (!t->map_cap) return -1;
    return t->map[map_find_slot(t, s, n, mtft_tokenizer__hash_bytes(s, n))];
}

static int map_grow(mtft_tokenizer *t) {
    uint32_t cap = t->map_cap ? t->map_cap * 2 : 4096;
    int32_t *m = mtft__malloc((size_t)cap * sizeof *m);
    if (!m) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
    for (uint32_t i = 0; i < cap; i++) m[i] = -1;
    int32_t *old = t->map;
    uint32_t old_cap = t->map_cap;
    t->map = m;
    t->map_cap = cap;
    for (uint32_t i = 0; i < old_cap; i++) {
        int32_t id = old[i];
        if (id < 0) continue;
        const char *d = t->disp.data + t->disp_off[id];
        size_t n = strlen(d);
        t->map[map_find_slot(t, d, n, mtft_tokenizer__hash_bytes(d, n))] = id;
    }
    mtft__free(old);
    return MTFT_OK;
}

/* Store both forms for id and index the display form. */
static int put_token(mtft_tokenizer *t, int32_t id, const char *disp, size_t dn, const char *raw, size_t rn) {
    int rc = ensure_id(t, id);
    if (rc < 0) return rc;
    if (t->disp_off[id] != MTFT_TOK_NONE)
        return mtft__err(MTFT_EFORMAT, "id %d is given twice (already '%s')", (int)id,
                         t->disp.data + t->disp_off[id]);
    if (memchr(disp, '\0', dn)) return mtft__err(MTFT_EFORMAT, "token for id %d contains a NUL character", (int)id);
    if ((t->map_count + 1) * 2 > t->map_cap && (rc = map_grow(t)) < 0) return rc;
    uint32_t slot = map_find_slot(t, disp, dn, mtft_tokenizer__hash_bytes(disp, dn));
    if (t->map[slot] >= 0)
        return mtft__err(MTFT_EFORMAT, "token '%.*s' is given twice (ids %d and %d)", (int)dn, disp,
                         (int)t->map[slot], (int)id);
    uint32_t doff, roff;
    if ((rc = mtft_tokenizer__pool_put(&t->disp, disp, dn, 1, &doff)) < 0) return rc;
    if ((rc = mtft_tokenizer__pool_put(&t->raw, raw, rn, 0, &roff)) < 0) return rc;
    t->disp_off[id] = doff;
    t->raw_off[id] = roff;
    t->raw_len[id] = (uint32_t)rn;
    t->map[slot] = id;
    t->map_count++;
    return MTFT_OK;
}

int mtft_tokenizer__set_token(mtft_tokenizer *t, int32_t id, const char *disp, size_t dn) {
    /* display -> raw: every code point must be one of the 256 byte symbols */
    char small[256] = {0};
    char *raw = dn <= sizeof small ? small : mtft__malloc(dn);
    if (!raw) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
    size_t rn = 0, i = 0;
    int ok = dn > 0;
    while (i < dn) {
        uint32_t cp;
        int len = mtft_tokenizer__utf8_decode((const uint8_t *)disp + i, dn - i, &cp);
        int b = cp == UINT32_MAX ? -1 : mtft_tokenizer__cp_to_byte(cp);
        if (b < 0) {
            ok = 0;
            break;
        }
        raw[rn++] = (char)b;
        i += (size_t)len;
    }
    int rc = ok ? put_token(t, id, disp, dn, raw, rn) : put_token(t, id, disp, dn, disp, dn);
    if (raw != small) mtft__free(raw);
    return rc;
}

int mtft_tokenizer__set_token_raw(mtft_tokenizer *t, int32_t id, const char *raw, size_t rn) {
    char small[512] = {0};
    size_t cap = rn * 2;
    char *disp = cap <= sizeof small ? small : mtft__malloc(cap);
    if (!disp) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
    size_t dn = 0;
    for (size_t i = 0; i < rn; i++) {
        uint32_t cp = mtft_tokenizer__byte_to_cp((uint8_t)raw[i]);
        if (cp < 0x80) {
            disp[dn++] = (char)cp;
        } else {
            disp[dn++] = (char)(0xC0 | (cp >> 6));
            disp[dn++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    int rc = put_token(t, id, disp, dn, raw, rn);
    if (disp != small) mtft__free(disp);
    return rc;
}

static int spec_register(mtft_tokenizer *t, int32_t id) {
    if (t->special[id]) return MTFT_OK;
    if (t->raw_len[id] == 0 || t->raw_len[id] > MTFT_TOK_MAX_SPECIAL_LEN)
        return mtft__err(MTFT_EINVAL, "special token for id %d must have 1 to %d bytes (has %u)", (int)id,
                         MTFT_TOK_MAX_SPECIAL_LEN, (unsigned)t->raw_len[id]);
    if (t->n_spec == t->cap_spec) {
        int cap = t->cap_spec ? t->cap_spec * 2 : 8;
        int32_t *s = mtft__realloc(t->spec_ids, (size_t)cap * sizeof *s);
        if (!s) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
        t->spec_ids = s;
        t->cap_spec = cap;
    }
    /* keep longest first (then lowest id) so the first match is the longest */
    int k = t->n_spec;
    while (k > 0) {
        int32_t o = t->spec_ids[k - 1];
        if (t->raw_len[o] > t->raw_len[id] || (t->raw_len[o] == t->raw_len[id] && o < id)) break;
        t->spec_ids[k] = o;
        k--;
    }
    t->spec_ids[k] = id;
    t->n_spec++;
    t->special[id] = 1;
    t->spec_first[(uint8_t)t->raw.data[t->raw_off[id]]] = 1;
    return MTFT_OK;
}

int mtft_tokenizer__set_special(mtft_tokenizer *t, int32_t id, const char *text, size_t len) {
    int rc = put_token(t, id, text, len, text, len);
    return rc < 0 ? rc : spec_register(t, id);
}

int mtft_tokenizer__mark_special(mtft_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || t->disp_off[id] == MTFT_TOK_NONE)
        return mtft__err(MTFT_ERANGE, "tokenizer: no token with id %d", (int)id);
    return spec_register(t, id);
}

int mtft_tokenizer__finish_vocab(mtft_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char d[3];
        uint32_t cp = mtft_tokenizer__byte_to_cp((uint8_t)b);
        size_t dn;
        if (cp < 0x80) {
            d[0] = (char)cp;
            dn = 1;
        } else {
            d[0] = (char)(0xC0 | (cp >> 6));
            d[1] = (char)(0x80 | (cp & 0x3F));
            dn = 2;
        }
        int32_t id = mtft_tokenizer__lookup(t, d, dn);
        if (id < 0 || t->special[id])
            return mtft__err(MTFT_EFORMAT,
                             "not a byte-level BPE vocabulary: no token for byte 0x%02X (spelled '%.*s')", b,
                             (int)dn, d);
        t->byte_id[b] = id;
    }
    return MTFT_OK;
}

static uint32_t mm_slot(const mtft_tokenizer *t, uint64_t key) {
    uint32_t mask = t->mm_cap - 1;
    uint32_t i = (uint32_t)mtft_tokenizer__hash_u64(key) & mask;
    while (t->mm_keys[i] && t->mm_keys[i] != key) i = (i + 1) & mask;
    return i;
}

int32_t mtft_tokenizer__merge_rank(const mtft_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    if (!t->mm_cap) return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = mm_slot(t, key);
    if (!t->mm_keys[i]) return -1;
    int32_t r = t->mm_rank[i];
    *merged = t->merge_new[r];
    return r;
}

int mtft_tokenizer__add_merge_ids(mtft_tokenizer *t, int32_t a, int32_t b, int32_t merged) {
    if ((uint64_t)(t->n_merges + 1) * 2 > t->mm_cap) {
        uint32_t cap = t->mm_cap ? t->mm_cap * 2 : 4096;
        uint64_t *k = mtft__calloc(cap, sizeof *k);
        int32_t *r = mtft__malloc((size_t)cap * sizeof *r);
        if (!k || !r) {
            mtft__free(k);
            mtft__free(r);
            return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
        }
        uint64_t *ok = t->mm_keys;
        int32_t *orank = t->mm_rank;
        uint32_t ocap = t->mm_cap;
        t->mm_keys = k;
        t->mm_rank = r;
        t->mm_cap = cap;
        for (uint32_t i = 0; i < ocap; i++) {
            if (!ok[i]) continue;
            uint32_t s = mm_slot(t, ok[i]);
            t->mm_keys[s] = ok[i];
            t->mm_rank[s] = orank[i];
        }
        mtft__free(ok);
        mtft__free(orank);
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t s = mm_slot(t, key);
    if (t->mm_keys[s]) return MTFT_OK; /* duplicate pair: the first rank wins */
    if (t->n_merges == t->cap_merges) {
        int32_t cap = t->cap_merges ? t->cap_merges * 2 : 1024;
        int32_t *ma = mtft__realloc(t->merge_a, (size_t)cap * sizeof *ma);
        if (ma) t->merge_a = ma;
        int32_t *mb = mtft__realloc(t->merge_b, (size_t)cap * sizeof *mb);
        if (mb) t->merge_b = mb;
        int32_t *mn = mtft__realloc(t->merge_new, (size_t)cap * sizeof *mn);
        if (mn) t->merge_new = mn;
        if (!ma || !mb || !mn) return mtft__err(MTFT_ENOMEM, "tokenizer: out of memory");
        t->cap_merges = cap;
    }
    int32_t r = t->n_merges++;
    t->merge_a[r] = a;
    t->merge_b[r] = b;
    t->merge_new[r] = merged;
    t->mm_keys[s] = key;
    t->mm_rank[s] = r;
    return MTFT_OK;
}

/* ---- public accessors ---------------------------------------------------- */

MTFT_API int32_t mtft_tokenizer_vocab_size(const mtft_tokenizer *tok) { return tok ? tok->n_ids : 0; }

MTFT_API int32_t mtft_tokenizer_n_merges(const mtft_tokenizer *tok) { return tok ? tok->n_merges : 0; }

MTFT_API int32_t mtft_tokenizer_token_to_id(const mtft_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return mtft_tokenizer__lookup(tok, token, strlen(token));
}

MTFT_API const char *mtft_tokenizer_id_to_token(const mtft_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_ids || tok->disp_off[id] == MTFT_TOK_NONE) return NULL;
    return tok->disp.data + tok->disp_off[id];
}

MTFT_API const char *mtft_tokenizer_token_bytes(const mtft_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_ids || tok->disp_off[id] == MTFT_TOK_NONE) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = tok->raw_len[id];
    return tok->raw.data + tok->raw_off[id];
}

MTFT_API int mtft_tokenizer_is_special(const mtft_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_ids && tok->special[id];
}

MTFT_API void mtft_tokenizer_set_parse_special(mtft_tokenizer *tok, int on) {
    if (tok) tok->parse_special = on != 0;
}

MTFT_API int mtft_tokenizer_parse_special(const mtft_tokenizer *tok) { return tok ? tok->parse_special : 0; }

MTFT_API int mtft_tokenizer_add_special(mtft_tokenizer *tok, const char *text, int32_t *id) {
    MTFT_CHECK_ARG(tok != NULL);
    MTFT_CHECK_ARG(text != NULL);
    size_t n = strlen(text);
    if (n == 0 || n > MTFT_TOK_MAX_SPECIAL_LEN)
        return mtft__err(MTFT_EINVAL, "tokenizer: special token must have 1 to %d bytes (has %zu)",
                         MTFT_TOK_MAX_SPECIAL_LEN, n);
    int32_t have = mtft_tokenizer__lookup(tok, text, n);
    int rc;
    if (have >= 0) {
        /* reuse the id only when the token stands for exactly these bytes
         * (a special token decodes to its own text) */
        if (tok->raw_len[have] != n || memcmp(tok->raw.data + tok->raw_off[have], text, n) != 0)
            return mtft__err(MTFT_EINVAL,
                             "tokenizer: '%s' is the spelling of vocabulary token %d, which stands for other "
                             "bytes; choose another special token text",
                             text, (int)have);
        if ((rc = mtft_tokenizer__mark_special(tok, have)) < 0) return rc;
        mtft_tokenizer__cache_clear(&tok->cache);
        if (id) *id = have;
        return MTFT_OK;
    }
    if (tok->n_ids == INT32_MAX) return mtft__err(MTFT_ERANGE, "tokenizer: no ids left");
    int32_t nid = tok->n_ids;
    if ((rc = mtft_tokenizer__set_special(tok, nid, text, n)) < 0) return rc;
    mtft_tokenizer__cache_clear(&tok->cache);
    if (id) *id = nid;
    return MTFT_OK;
}
