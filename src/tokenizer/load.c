/* Loading vocabularies and merges: OpenAI's encoder.json + vocab.bpe, HF's
 * vocab.json + merges.txt, and HF's tokenizer.json (BPE model).
 *
 * vocab.json / encoder.json are read by a small flat-object JSON parser so
 * that every error names file:line:col. tokenizer.json goes through cJSON:
 * syntax errors name file:line:col, content errors the JSON path. */
#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

static int read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return mtft__err(MTFT_EIO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = mtft__malloc(cap + 1);
    if (!b) {
        fclose(f);
        return mtft__err(MTFT_ENOMEM, "out of memory reading '%s'", path);
    }
    for (;;) {
        if (n == cap) {
            cap *= 2;
            char *nb = mtft__realloc(b, cap + 1);
            if (!nb) {
                mtft__free(b);
                fclose(f);
                return mtft__err(MTFT_ENOMEM, "out of memory reading '%s' (%zu bytes)", path, cap);
            }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        mtft__free(b);
        return mtft__err(MTFT_EIO, "cannot read '%s'", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MTFT_OK;
}

/* 1-based line and column (in characters) of byte offset at in s. */
static void line_col(const char *s, size_t at, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < at; i++) {
        if (s[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static int err_at(int code, const char *path, const char *s, size_t at, const char *fmt, ...) MTFT_PRINTF(5, 6);
static int err_at(int code, const char *path, const char *s, size_t at, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line, col;
    line_col(s, at, &line, &col);
    return mtft__err(code, "%s:%zu:%zu: %s", path, line, col, msg);
}

/* ---- flat JSON object {"token": id, ...} ----------------------------------- */

typedef struct jp {
    const char *path;
    const char *s;
    size_t n, i;
    char *str; /* decoded string */
    size_t str_len, str_cap;
} jp;

static void jp_ws(jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jp_putc(jp *p, char c) {
    if (p->str_len + 1 >= p->str_cap) {
        size_t cap = p->str_cap ? p->str_cap * 2 : 256;
        char *b = mtft__realloc(p->str, cap);
        if (!b) return mtft__err(MTFT_ENOMEM, "out of memory");
        p->str = b;
        p->str_cap = cap;
    }
    p->str[p->str_len++] = c;
    return MTFT_OK;
}

static int jp_put_utf8(jp *p, uint32_t cp) {
    int rc = MTFT_OK;
    if (cp < 0x80) {
        rc = jp_putc(p, (char)cp);
    } else if (cp < 0x800) {
        if ((rc = jp_putc(p, (char)(0xC0 | (cp >> 6)))) == MTFT_OK) rc = jp_putc(p, (char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        if ((rc = jp_putc(p, (char)(0xE0 | (cp >> 12)))) == MTFT_OK &&
            (rc = jp_putc(p, (char)(0x80 | ((cp >> 6) & 0x3F)))) == MTFT_OK)
            rc = jp_putc(p, (char)(0x80 | (cp & 0x3F)));
    } else {
        if ((rc = jp_putc(p, (char)(0xF0 | (cp >> 18)))) == MTFT_OK &&
            (rc = jp_putc(p, (char)(0x80 | ((cp >> 12) & 0x3F)))) == MTFT_OK &&
            (rc = jp_putc(p, (char)(0x80 | ((cp >> 6) & 0x3F)))) == MTFT_OK)
            rc = jp_putc(p, (char)(0x80 | (cp & 0x3F)));
    }
    return rc;
}

static int jp_hex4(jp *p, uint32_t *v) {
    if (p->n - p->i < 4) return err_at(MTFT_EFORMAT, p->path, p->s, p->i, "truncated \\u escape");
    uint32_t x = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + (size_t)k];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (uint32_t)(c - 'A' + 10);
        else return err_at(MTFT_EFORMAT, p->path, p->s, p->i + (size_t)k, "bad hex digit in \\u escape");
    }
    p->i += 4;
    *v = x;
    return MTFT_OK;
}

/* At '"': decode the string into p->str (NUL-terminated). */
static int jp_string(jp *p) {
    if (p->i >= p->n || p->s[p->i] != '"')
        return err_at(MTFT_EFORMAT, p->path, p->s, p->i, "expected a string (\"token\")");
    p->i++;
    p->str_len = 0;
    int rc;
    for (;;) {
        if (p->i >= p->n) return err_at(MTFT_EFORMAT, p->path, p->s, p->i, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20) return err_at(MTFT_EFORMAT, p->path, p->s, p->i, "control character 0x%02X in string", c);
        if (c != '\\') {
            if ((rc = jp_putc(p, (char)c)) < 0) return rc;
            p->i++;
            continue;
        }
        size_t esc = p->i;
        p->i++;
        if (p->i >= p->n) return err_at(MTFT_EFORMAT, p->path, p->s, esc, "unterminated escape");
        char e = p->s[p->i++];
        char out = 0;
        switch (e) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            uint32_t v;
            if ((rc = jp_hex4(p, &v)) < 0) return rc;
            if (v >= 0xD800 && v <= 0xDBFF) {
                uint32_t lo;
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return err_at(MTFT_EFORMAT, p->path, p->s, esc, "unpaired surrogate \\u%04X", (unsigned)v);
                p->i += 2;
                if ((rc = jp_hex4(p, &lo)) < 0) return rc;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return err_at(MTFT_EFORMAT, p->path, p->s, esc, "unpaired surrogate \\u%04X", (unsigned)v);
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            } else if (v >= 0xDC00 && v <= 0xDFFF) {
                return err_at(MTFT_EFORMAT, p->path, p->s, esc, "unpaired surrogate \\u%04X", (unsigned)v);
            }
            if (v == 0) return err_at(MTFT_EFORMAT, p->path, p->s, esc, "NUL character in token");
            if ((rc = jp_put_utf8(p, v)) < 0) return rc;
            continue;
        }
        default:
            return err_at(MTFT_EFORMAT, p->path, p->s, esc, "invalid escape '\\%c'", e);
        }
        if ((rc = jp_putc(p, out)) < 0) return rc;
    }
    if ((rc = jp_putc(p, '\0')) < 0) return rc;
    p->str_len--;
    return MTFT_OK;
}

/* Non-negative integer id. */
static int jp_id(jp *p, int32_t *id) {
    size_t start = p->i;
    if (p->i < p->n && p->s[p->i] == '-')
        return err_at(MTFT_EFORMAT, p->path, p->s, start, "negative id");
    int64_t v = 0;
    size_t d = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        if (v < ((int64_t)1 << 40)) v = v * 10 + (p->s[p->i] - '0');
        p->i++;
        d++;
    }
    if (d == 0) return err_at(MTFT_EFORMAT, p->path, p->s, start, "expected an integer id");
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return err_at(MTFT_EFORMAT, p->path, p->s, start, "id is not an integer");
    /* a vocabulary with id v has (unless sparse) v entries of at least 6 bytes */
    if (v >= INT32_MAX || (size_t)v > p->n)
        return err_at(MTFT_ERANGE, p->path, p->s, start, "id %lld is too large for a %zu-byte vocabulary file",
                      (long long)v, p->n);
    *id = (int32_t)v;
    return MTFT_OK;
}

static int is_special_spelling(const char *s, size_t n) {
    return n >= 4 && s[0] == '<' && s[1] == '|' && s[n - 2] == '|' && s[n - 1] == '>';
}

static int parse_vocab_json(mtft_tokenizer *t, const char *path, const char *s, size_t n) {
    jp p = {path, s, n, 0, NULL, 0, 0};
    int rc = MTFT_OK;
    if (n >= 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
        p.i = 3; /* BOM */
    jp_ws(&p);
    if (p.i >= n || s[p.i] != '{') {
        rc = err_at(MTFT_EFORMAT, path, s, p.i, "expected '{' (a JSON object of token: id)");
        goto done;
    }
    p.i++;
    jp_ws(&p);
    if (p.i < n && s[p.i] == '}') {
        p.i++;
    } else {
        for (;;) {
            jp_ws(&p);
            size_t at = p.i;
            if ((rc = jp_string(&p)) < 0) goto done;
            jp_ws(&p);
            if (p.i >= n || s[p.i] != ':') {
                rc = err_at(MTFT_EFORMAT, path, s, p.i, "expected ':' after the token");
                goto done;
            }
            p.i++;
            jp_ws(&p);
            int32_t id = 0;
            if ((rc = jp_id(&p, &id)) < 0) goto done;
            if (p.str_len == 0) {
                rc = err_at(MTFT_EFORMAT, path, s, at, "empty token");
                goto done;
            }
            if (is_special_spelling(p.str, p.str_len))
                rc = mtft_tokenizer__set_special(t, id, p.str, p.str_len);
            else
                rc = mtft_tokenizer__set_token(t, id, p.str, p.str_len);
            if (rc < 0) {
                size_t line, col;
                line_col(s, at, &line, &col);
                mtft__err_prefix("%s:%zu:%zu", path, line, col);
                goto done;
            }
            jp_ws(&p);
            if (p.i < n && s[p.i] == ',') {
                p.i++;
                continue;
            }
            if (p.i < n && s[p.i] == '}') {
                p.i++;
                break;
            }
            rc = err_at(MTFT_EFORMAT, path, s, p.i, "expected ',' or '}'");
            goto done;
        }
    }
    jp_ws(&p);
    if (p.i != n) rc = err_at(MTFT_EFORMAT, path, s, p.i, "unexpected text after the JSON object");
done:
    mtft__free(p.str);
    return rc;
}

/* Add merge (a, b) given in display form; MTFT_EFORMAT naming what is
 * missing, with `where` ("file:line:col" style prefix from the caller). */
static int add_merge_disp(mtft_tokenizer *t, const char *a, size_t an, const char *b, size_t bn, int *which) {
    int32_t ia = mtft_tokenizer__lookup(t, a, an);
    if (ia < 0) {
        *which = 0;
        return mtft__err(MTFT_EFORMAT, "merge token '%.*s' is not in the vocabulary", (int)an, a);
    }
    int32_t ib = mtft_tokenizer__lookup(t, b, bn);
    if (ib < 0) {
        *which = 1;
        return mtft__err(MTFT_EFORMAT, "merge token '%.*s' is not in the vocabulary", (int)bn, b);
    }
    char small[512] = {0};
    char *ab = an + bn <= sizeof small ? small : mtft__malloc(an + bn);
    if (!ab) return mtft__err(MTFT_ENOMEM, "out of memory");
    memcpy(ab, a, an);
    memcpy(ab + an, b, bn);
    int32_t im = mtft_tokenizer__lookup(t, ab, an + bn);
    int rc = MTFT_OK;
    if (im < 0) {
        *which = 0;
        rc = mtft__err(MTFT_EFORMAT, "merged token '%.*s' is not in the vocabulary", (int)(an + bn), ab);
    }
    if (ab != small) mtft__free(ab);
    if (rc < 0) return rc;
    return mtft_tokenizer__add_merge_ids(t, ia, ib, im);
}

static int parse_merges_txt(mtft_tokenizer *t, const char *path, const char *s, size_t n) {
    size_t i = 0;
    if (n >= 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF) i = 3;
    int first = 1;
    while (i < n) {
        size_t ls = i, le = i;
        while (le < n && s[le] != '\n') le++;
        i = le < n ? le + 1 : le;
        size_t end = le;
        if (end > ls && s[end - 1] == '\r') end--;
        if (first && end - ls >= 8 && memcmp(s + ls, "#version", 8) == 0) {
            first = 0;
            continue;
        }
        first = 0;
        if (end == ls) continue; /* blank line */
        const char *sp = memchr(s + ls, ' ', end - ls);
        if (!sp) return err_at(MTFT_EFORMAT, path, s, ls, "expected two tokens separated by one space");
        size_t a0 = ls, an = (size_t)(sp - s) - ls, b0 = (size_t)(sp - s) + 1, bn = end - b0;
        if (an == 0) return err_at(MTFT_EFORMAT, path, s, ls, "empty first token (line starts with a space)");
        if (bn == 0) return err_at(MTFT_EFORMAT, path, s, b0, "missing second token");
        if (memchr(s + b0, ' ', bn)) {
            const char *sp2 = memchr(s + b0, ' ', bn);
            return err_at(MTFT_EFORMAT, path, s, (size_t)(sp2 - s), "more than two tokens on the line");
        }
        int which = 0;
        int rc = add_merge_disp(t, s + a0, an, s + b0, bn, &which);
        if (rc < 0) {
            size_t line, col;
            line_col(s, which ? b0 : a0, &line, &col);
            mtft__err_prefix("%s:%zu:%zu", path, line, col);
            return rc;
        }
    }
    return MTFT_OK;
}

static int load_pair(mtft_tokenizer **out, const char *vocab_path, const char *merges_path) {
    MTFT_CHECK_ARG(out != NULL);
    MTFT_CHECK_ARG(vocab_path != NULL);
    MTFT_CHECK_ARG(merges_path != NULL);
    *out = NULL;
    mtft_tokenizer *t = NULL;
    char *vb = NULL, *mb = NULL;
    size_t vn = 0, mn = 0;
    int rc = read_file(vocab_path, &vb, &vn);
    if (rc == MTFT_OK) rc = read_file(merges_path, &mb, &mn);
    if (rc == MTFT_OK) rc = mtft_tokenizer__new(&t);
    if (rc == MTFT_OK) rc = parse_vocab_json(t, vocab_path, vb, vn);
    if (rc == MTFT_OK && (rc = mtft_tokenizer__finish_vocab(t)) < 0) mtft__err_prefix("%s", vocab_path);
    if (rc == MTFT_OK) rc = parse_merges_txt(t, merges_path, mb, mn);
    mtft__free(vb);
    mtft__free(mb);
    if (rc < 0) {
        mtft_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return MTFT_OK;
}

MTFT_API int mtft_tokenizer_load_gpt2(mtft_tokenizer **out, const char *encoder_json_path, const char *vocab_bpe_path) {
    return load_pair(out, encoder_json_path, vocab_bpe_path);
}

MTFT_API int mtft_tokenizer_load_hf(mtft_tokenizer **out, const char *vocab_json_path, const char *merges_txt_path) {
    return load_pair(out, vocab_json_path, merges_txt_path);
}

/* ---- tokenizer.json -------------------------------------------------------- */

static int json_id(const cJSON *v, int64_t limit, int32_t *id) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d >= (double)limit || d != (double)(int64_t)d) return -1;
    *id = (int32_t)d;
    return 0;
}

static int load_json_model(mtft_tokenizer *t, const char *path, const cJSON *root, int64_t id_limit) {
    int rc;
    if (!cJSON_IsObject(root)) return mtft__err(MTFT_EFORMAT, "%s: top level is not a JSON object", path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return mtft__err(MTFT_EFORMAT, "%s: no \"model\" object", path);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(type)) return mtft__err(MTFT_EFORMAT, "%s: model.type is missing or not a string", path);
    if (strcmp(type->valuestring, "BPE") != 0)
        return mtft__err(MTFT_EUNSUPPORTED, "%s: model.type is '%s'; only 'BPE' (byte-level) models are supported",
                         path, type->valuestring);
    static const char *const unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, unsupported[k]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return mtft__err(MTFT_EUNSUPPORTED, "%s: model.%s '%s' is not supported (byte-level BPE only)", path,
                             unsupported[k], v->valuestring);
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges")))
        mtft__log(MTFT_LOG_WARN, "%s: model.ignore_merges is not supported; words are always merged by rank", path);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")))
        mtft__log(MTFT_LOG_WARN, "%s: model.byte_fallback is ignored (the vocabulary is byte-level)", path);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (cJSON_IsObject(pre)) {
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
        if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "ByteLevel") != 0)
            mtft__log(MTFT_LOG_WARN, "%s: pre_tokenizer is '%s', not ByteLevel; GPT-2 pre-tokenisation is used", path,
                      cJSON_IsString(pt) ? pt->valuestring : "?");
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return mtft__err(MTFT_EFORMAT, "%s: model.vocab is missing or not an object", path);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = 0;
        if (json_id(e, id_limit, &id) < 0)
            return mtft__err(MTFT_EFORMAT, "%s: model.vocab[\"%s\"]: id must be an integer in [0, %lld)", path,
                             e->string, (long long)id_limit);
        if (!e->string[0]) return mtft__err(MTFT_EFORMAT, "%s: model.vocab: empty token (id %d)", path, (int)id);
        if ((rc = mtft_tokenizer__set_token(t, id, e->string, strlen(e->string))) < 0) {
            mtft__err_prefix("%s: model.vocab[\"%s\"]", path, e->string);
            return rc;
        }
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return mtft__err(MTFT_EFORMAT, "%s: added_tokens is not an array", path);
    int k = 0;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next, k++) {
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        int32_t id = 0;
        if (json_id(jid, id_limit, &id) < 0 || !cJSON_IsString(content) || !content->valuestring[0])
            return mtft__err(MTFT_EFORMAT, "%s: added_tokens[%d]: needs an integer \"id\" and a non-empty \"content\"",
                             path, k);
        const char *c = content->valuestring;
        const char *have = mtft_tokenizer_id_to_token(t, id);
        if (have) {
            if (strcmp(have, c) != 0)
                return mtft__err(MTFT_EFORMAT, "%s: added_tokens[%d]: id %d is '%s' in model.vocab, not '%s'", path, k,
                                 (int)id, have, c);
            /* the special token stands for its own text */
            size_t cn = strlen(c), rl;
            const char *raw = mtft_tokenizer_token_bytes(t, id, &rl);
            if (rl != cn || memcmp(raw, c, cn) != 0) {
                uint32_t off;
                if ((rc = mtft_tokenizer__pool_put(&t->raw, c, cn, 0, &off)) < 0) return rc;
                t->raw_off[id] = off;
                t->raw_len[id] = (uint32_t)cn;
            }
            rc = mtft_tokenizer__mark_special(t, id);
        } else {
            rc = mtft_tokenizer__set_special(t, id, c, strlen(c));
        }
        if (rc < 0) {
            mtft__err_prefix("%s: added_tokens[%d]", path, k);
            return rc;
        }
    }
    if ((rc = mtft_tokenizer__finish_vocab(t)) < 0) {
        mtft__err_prefix("%s: model.vocab", path);
        return rc;
    }
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return mtft__err(MTFT_EFORMAT, "%s: model.merges is missing or not an array", path);
    k = 0;
    for (const cJSON *e = merges->child; e; e = e->next, k++) {
        const char *a = NULL, *b = NULL;
        size_t an = 0, bn = 0;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            if (sp && sp != s && sp[1] && !strchr(sp + 1, ' ')) {
                a = s;
                an = (size_t)(sp - s);
                b = sp + 1;
                bn = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next) && e->child->valuestring[0] && e->child->next->valuestring[0]) {
            a = e->child->valuestring;
            an = strlen(a);
            b = e->child->next->valuestring;
            bn = strlen(b);
        }
        if (!a) return mtft__err(MTFT_EFORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", path, k);
        int which;
        if ((rc = add_merge_disp(t, a, an, b, bn, &which)) < 0) {
            mtft__err_prefix("%s: model.merges[%d]", path, k);
            return rc;
        }
    }
    return MTFT_OK;
}

MTFT_API int mtft_tokenizer_load_json(mtft_tokenizer **out, const char *path) {
    MTFT_CHECK_ARG(out != NULL);
    MTFT_CHECK_ARG(path != NULL);
    *out = NULL;
    char *buf = NULL;
    size_t n = 0;
    int rc = read_file(path, &buf, &n);
    if (rc < 0) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root) {
        size_t at = end && end >= buf && end <= buf + n ? (size_t)(end - buf) : 0;
        rc = err_at(MTFT_EFORMAT, path, buf, at, "JSON syntax error");
        mtft__free(buf);
        return rc;
    }
    mtft_tokenizer *t = NULL;
    rc = mtft_tokenizer__new(&t);
    if (rc == MTFT_OK) rc = load_json_model(t, path, root, (int64_t)n < INT32_MAX ? (int64_t)n : INT32_MAX);
    cJSON_Delete(root);
    mtft__free(buf);
    if (rc < 0) {
        mtft_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return MTFT_OK;
}
