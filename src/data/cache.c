/* Tokenized-task blobs: the cache key, validation of a blob (from memory or
 * a mapped file), atomic writing and read-only mapping of cache files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_impl.h"

/* ---- key ---------------------------------------------------------------------- */

static int hash_file(uint64_t *h, const char *path, const char *what, const char *task) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return mtft__err(MTFT_EIO, "task '%s': %s '%s': cannot open: %s", task, what, path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t n;
    uint64_t len = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        *h = mtft_fnv1a(*h, buf, n);
        len += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return mtft__err(MTFT_EIO, "task '%s': %s '%s': read error", task, what, path);
    *h = mtft_fnv1a(*h, &len, sizeof len);
    return MTFT_OK;
}

int mtft_data__key(const mtft_task *t, mtft_tokenizer *tok, const mtft_data_options *o, uint64_t *key) {
    const mtft_task_options *to = &t->o;
    uint64_t h = MTFT_FNV_OFFSET;
    uint32_t fmt = MTFT_DS_FORMAT;
    h = mtft_fnv1a(h, MTFT_DS_MAGIC, 8);
    h = mtft_fnv1a(h, &fmt, sizeof fmt);
    /* data */
    const char *files[3] = {to->train_file, to->dev_file, to->test_file};
    const char *what[3] = {"train_file", "dev_file", "test_file"};
    for (int i = 0; i < 3; i++) {
        h = mtft_fnv1a_str(h, files[i] ? "file" : NULL);
        if (files[i]) {
            int rc = hash_file(&h, files[i], what[i], to->name);
            if (rc < 0) return rc;
        }
    }
    /* task definition */
    int32_t ints[4] = {(int32_t)to->type, (int32_t)to->format, (int32_t)to->on_bad_example, to->n_labels};
    h = mtft_fnv1a(h, ints, sizeof ints);
    h = mtft_fnv1a(h, &to->dev_fraction, sizeof to->dev_fraction);
    h = mtft_fnv1a(h, &to->test_fraction, sizeof to->test_fraction);
    h = mtft_fnv1a(h, &to->split_seed, sizeof to->split_seed);
    const char *strs[] = {to->input_field, to->label_field, to->value_field, to->target_field,
                          to->tokens_field, to->tags_field, to->prompt_template, o->eos_token};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) h = mtft_fnv1a_str(h, strs[i]);
    for (int i = 0; i < to->n_labels; i++) h = mtft_fnv1a_str(h, to->labels[i]);
    /* tokenizer identity: every token's bytes and kind, the merge count, and
     * the encoding of a probe text (which depends on the merge order) */
    int32_t v = mtft_tokenizer_vocab_size(tok), nm = mtft_tokenizer_n_merges(tok);
    h = mtft_fnv1a(h, &v, sizeof v);
    h = mtft_fnv1a(h, &nm, sizeof nm);
    for (int32_t id = 0; id < v; id++) {
        size_t len = 0;
        const char *b = mtft_tokenizer_token_bytes(tok, id, &len);
        uint32_t l32 = (uint32_t)len;
        int sp = mtft_tokenizer_is_special(tok, id);
        h = mtft_fnv1a(h, &l32, sizeof l32);
        if (b) h = mtft_fnv1a(h, b, len);
        h = mtft_fnv1a(h, &sp, sizeof sp);
    }
    static const char probe[] = "The quick brown fox jumps over the lazy dog's 1234 back; unbelievably, "
                                "Tokenization isn't trivial -- naïve café résumé 東京 ...!?";
    int32_t ids[256];
    size_t n = 0;
    if (mtft_tokenizer_encode(tok, probe, sizeof probe - 1, ids, 256, &n) == MTFT_OK)
        h = mtft_fnv1a(h, ids, n * sizeof ids[0]);
    mtft_error_clear();
    *key = h;
    return MTFT_OK;
}

/* ---- blob validation -------------------------------------------------------------- */

void mtft_data__detach(mtft_task *t) {
    mtft__free(t->label_names);
    t->label_names = NULL;
    t->hdr = NULL;
    t->entries = NULL;
    t->pool = NULL;
    if (t->blob) mtft__free(t->blob);
    if (t->map) mtft_data__unmap(t->map, t->blob_size);
    t->blob = t->map = NULL;
    t->blob_size = 0;
    t->cache_hit = 0;
    mtft__free(t->cache_path);
    t->cache_path = NULL;
}

int mtft_data__attach(mtft_task *t, const void *blob, size_t size, const char *what) {
    const mtft_ds_header *h = blob;
    if (size < sizeof *h || memcmp(h->magic, MTFT_DS_MAGIC, 8) != 0)
        return mtft__err(MTFT_EFORMAT, "%s: not an mtft dataset (bad magic or too short)", what);
    if (h->format != MTFT_DS_FORMAT)
        return mtft__err(MTFT_EFORMAT, "%s: format %u, expected %u", what, h->format, MTFT_DS_FORMAT);
    if (h->type != (uint32_t)t->o.type)
        return mtft__err(MTFT_EFORMAT, "%s: task type %u, expected %d", what, h->type, (int)t->o.type);
    uint64_t n_ent = 0;
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) {
        if (h->n_split[s] < 0) return mtft__err(MTFT_EFORMAT, "%s: negative split size", what);
        n_ent += (uint64_t)h->n_split[s];
    }
    if (h->n_pool < 0) return mtft__err(MTFT_EFORMAT, "%s: negative pool size", what);
    uint64_t need = sizeof *h;
    if ((uint64_t)h->n_pool > (size - need) / 4) return mtft__err(MTFT_EFORMAT, "%s: truncated token pool", what);
    need += mtft_ds_pool_bytes(h->n_pool);
    if (need > size || n_ent > (size - need) / sizeof(mtft_ds_entry))
        return mtft__err(MTFT_EFORMAT, "%s: truncated entries", what);
    need += n_ent * sizeof(mtft_ds_entry);
    if (h->labels_bytes != size - need) return mtft__err(MTFT_EFORMAT, "%s: size does not match its header", what);
    const int32_t *pool = (const int32_t *)(h + 1);
    const mtft_ds_entry *e = (const mtft_ds_entry *)((const char *)pool + mtft_ds_pool_bytes(h->n_pool));
    const char *lab = (const char *)(e + n_ent);
    int tagging = t->o.type == MTFT_TASK_TAGGING;
    for (uint64_t i = 0; i < n_ent; i++) {
        int64_t words = (int64_t)e[i].n_ids * (tagging ? 2 : 1) + e[i].n_labels;
        if (e[i].n_ids < 0 || e[i].n_labels < 0 || e[i].n_prompt < 0 || e[i].n_prompt > e[i].n_ids || e[i].off < 0 ||
            e[i].off > h->n_pool || words > h->n_pool - e[i].off)
            return mtft__err(MTFT_EFORMAT, "%s: example entry %llu is out of bounds", what, (unsigned long long)i);
    }
    const char **names = NULL;
    if (h->n_labels > 0) {
        names = mtft__calloc(h->n_labels, sizeof *names);
        if (!names) return mtft__err(MTFT_ENOMEM, "out of memory");
        size_t off = 0;
        for (uint32_t i = 0; i < h->n_labels; i++) {
            const char *z = off < h->labels_bytes ? memchr(lab + off, '\0', h->labels_bytes - off) : NULL;
            if (!z) {
                mtft__free(names);
                return mtft__err(MTFT_EFORMAT, "%s: label table is truncated", what);
            }
            names[i] = lab + off;
            off = (size_t)(z - lab) + 1;
        }
    }
    /* label ids in the pool must be inside the label set */
    for (uint64_t i = 0; i < n_ent; i++) {
        const int32_t *w = pool + e[i].off + (int64_t)e[i].n_ids * (tagging ? 2 : 1);
        for (int32_t k = 0; k < e[i].n_labels; k++)
            if (w[k] < 0 || (uint32_t)w[k] >= h->n_labels) {
                mtft__free(names);
                return mtft__err(MTFT_EFORMAT, "%s: example entry %llu has label id %d outside the label set", what,
                                 (unsigned long long)i, w[k]);
            }
    }
    t->hdr = h;
    t->entries = e;
    t->pool = pool;
    t->label_names = names;
    t->split_start[0] = 0;
    t->split_start[1] = h->n_split[0];
    t->split_start[2] = h->n_split[0] + h->n_split[1];
    return MTFT_OK;
}

/* ---- files ---------------------------------------------------------------------- */

int mtft_data__map_file(const char *path, void **map, size_t *size) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return MTFT_ENOTFOUND;
        return mtft__err(MTFT_EIO, "cache file '%s': cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return mtft__err(MTFT_EFORMAT, "cache file '%s': empty or unreadable", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return mtft__err(MTFT_EIO, "cache file '%s': mmap failed: %s", path, strerror(errno));
    *map = m;
    *size = (size_t)st.st_size;
    return MTFT_OK;
}

void mtft_data__unmap(void *map, size_t size) {
    if (map) munmap(map, size);
}
