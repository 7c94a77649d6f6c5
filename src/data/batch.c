/* Batch order (shuffle + length bucketing) and collation (dynamic padding,
 * truncation, packing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"

/* ---- loader ----------------------------------------------------------------------- */

struct mtft_loader {
    const mtft_task *task;
    mtft_split split;
    mtft_loader_options o;
    mtft_rng rng;
    int64_t n;          /* examples in the split */
    int64_t *order;     /* this epoch's example order, batch after batch */
    int64_t *batch_start; /* start of batch k in order[] */
    int64_t n_batches;
    int64_t *batch_perm; /* batch visiting order */
    int64_t cursor;     /* next batch (index into batch_perm) */
    int64_t epoch;
};

static int32_t ex_len(const mtft_loader *ld, int64_t i) {
    const mtft_task *t = ld->task;
    return t->entries[t->split_start[ld->split] + i].n_ids;
}

/* qsort context-free: sort (length, index) pairs. */
typedef struct len_idx {
    int32_t len;
    int64_t idx;
} len_idx;

static int cmp_len_idx(const void *a, const void *b) {
    const len_idx *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void shuffle64(mtft_rng *rng, int64_t *v, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mtft_rng_below(rng, (uint64_t)i + 1);
        int64_t tmp = v[i];
        v[i] = v[j];
        v[j] = tmp;
    }
}

static int plan_epoch(mtft_loader *ld) {
    int64_t n = ld->n, bs = ld->o.batch_size;
    for (int64_t i = 0; i < n; i++) ld->order[i] = i;
    if (ld->o.shuffle) shuffle64(&ld->rng, ld->order, n);
    if (ld->o.bucket_window > 1 && n > 1) {
        int64_t w = bs * ld->o.bucket_window;
        len_idx *tmp = mtft__malloc((size_t)(w < n ? w : n) * sizeof *tmp);
        if (!tmp) return mtft__err(MTFT_ENOMEM, "loader: out of memory");
        for (int64_t s = 0; s < n; s += w) {
            int64_t m = n - s < w ? n - s : w;
            for (int64_t k = 0; k < m; k++) {
                tmp[k].idx = ld->order[s + k];
                tmp[k].len = ex_len(ld, tmp[k].idx);
            }
            qsort(tmp, (size_t)m, sizeof *tmp, cmp_len_idx);
            for (int64_t k = 0; k < m; k++) ld->order[s + k] = tmp[k].idx;
        }
        mtft__free(tmp);
    }
    ld->n_batches = ld->o.drop_last ? n / bs : (n + bs - 1) / bs;
    for (int64_t k = 0; k < ld->n_batches; k++) {
        ld->batch_start[k] = k * bs;
        ld->batch_perm[k] = k;
    }
    /* with bucketing, visit the batches of a window in random order so that
     * lengths do not grow monotonically through the epoch */
    if (ld->o.shuffle && ld->o.bucket_window > 1) {
        int64_t wb = ld->o.bucket_window;
        for (int64_t s = 0; s < ld->n_batches; s += wb) {
            int64_t m = ld->n_batches - s < wb ? ld->n_batches - s : wb;
            shuffle64(&ld->rng, ld->batch_perm + s, m);
        }
        /* and the windows themselves */
        int64_t n_win = (ld->n_batches + wb - 1) / wb;
        if (n_win > 1) {
            int64_t *wperm = mtft__malloc((size_t)n_win * sizeof *wperm);
            int64_t *out = mtft__malloc((size_t)ld->n_batches * sizeof *out);
            if (!wperm || !out) {
                mtft__free(wperm);
                mtft__free(out);
                return mtft__err(MTFT_ENOMEM, "loader: out of memory");
            }
            for (int64_t i = 0; i < n_win; i++) wperm[i] = i;
            shuffle64(&ld->rng, wperm, n_win);
            int64_t k = 0;
            for (int64_t i = 0; i < n_win; i++) {
                int64_t s = wperm[i] * wb;
                int64_t m = ld->n_batches - s < wb ? ld->n_batches - s : wb;
                for (int64_t j = 0; j < m; j++) out[k++] = ld->batch_perm[s + j];
            }
            memcpy(ld->batch_perm, out, (size_t)ld->n_batches * sizeof *out);
            mtft__free(wperm);
            mtft__free(out);
        }
    }
    ld->cursor = 0;
    return MTFT_OK;
}

int mtft_loader_new(mtft_loader **out, const mtft_task *task, mtft_split split, const mtft_loader_options *o) {
    MTFT_CHECK_ARG(out != NULL);
    *out = NULL;
    MTFT_CHECK_ARG(task != NULL && o != NULL);
    if (o->version != MTFT_LOADER_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "loader options: version %d, expected %d (use MTFT_LOADER_OPTIONS_INIT)",
                         o->version, MTFT_LOADER_OPTIONS_VERSION);
    if (!task->hdr) return mtft__err(MTFT_ESTATE, "loader: task '%s' is not loaded", task->o.name);
    if ((unsigned)split >= MTFT_SPLIT_COUNT) return mtft__err(MTFT_EINVAL, "loader: bad split %d", (int)split);
    if (o->batch_size < 1) return mtft__err(MTFT_ERANGE, "loader: batch_size %d < 1", o->batch_size);
    int64_t n = task->hdr->n_split[split];
    if (n == 0)
        return mtft__err(MTFT_ESTATE, "loader: task '%s' has no %s examples", task->o.name, mtft_split_name(split));
    if (o->drop_last && n < o->batch_size)
        return mtft__err(MTFT_ERANGE, "loader: task '%s' %s split has %lld examples, fewer than one batch (%d) with drop_last",
                         task->o.name, mtft_split_name(split), (long long)n, o->batch_size);
    mtft_loader *ld = mtft__calloc(1, sizeof *ld);
    if (!ld) return mtft__err(MTFT_ENOMEM, "loader: out of memory");
    ld->task = task;
    ld->split = split;
    ld->o = *o;
    ld->n = n;
    mtft_rng_seed(&ld->rng, o->seed);
    int64_t nb = (n + o->batch_size - 1) / o->batch_size;
    ld->order = mtft__malloc((size_t)n * sizeof *ld->order);
    ld->batch_start = mtft__malloc((size_t)nb * sizeof *ld->batch_start);
    ld->batch_perm = mtft__malloc((size_t)nb * sizeof *ld->batch_perm);
    int rc = (!ld->order || !ld->batch_start || !ld->batch_perm) ? mtft__err(MTFT_ENOMEM, "loader: out of memory")
                                                                  : plan_epoch(ld);
    if (rc < 0) {
        mtft_loader_free(ld);
        return rc;
    }
    *out = ld;
    return MTFT_OK;
}

void mtft_loader_free(mtft_loader *ld) {
    if (!ld) return;
    mtft__free(ld->order);
    mtft__free(ld->batch_start);
    mtft__free(ld->batch_perm);
    mtft__free(ld);
}

int mtft_loader_next(mtft_loader *ld, int64_t *idx) {
    MTFT_CHECK_ARG(ld != NULL && idx != NULL);
    if (ld->cursor >= ld->n_batches) {
        ld->epoch++;
        int rc = plan_epoch(ld);
        if (rc < 0) return rc;
        return 0;
    }
    int64_t k = ld->batch_perm[ld->cursor++];
    int64_t s = ld->batch_start[k];
    int64_t m = ld->n - s < ld->o.batch_size ? ld->n - s : ld->o.batch_size;
    memcpy(idx, ld->order + s, (size_t)m * sizeof *idx);
    return (int)m;
}

int64_t mtft_loader_epoch(const mtft_loader *ld) { return ld ? ld->epoch : 0; }
int64_t mtft_loader_n_batches(const mtft_loader *ld) { return ld ? ld->n_batches : 0; }

/* ---- collation ------------------------------------------------------------------------ */

void mtft_batch_init(mtft_batch *b) {
    if (b) memset(b, 0, sizeof *b);
}

void mtft_batch_dispose(mtft_batch *b) {
    if (!b) return;
    mtft__free(b->ids);
    mtft__free(b->valid_len);
    mtft__free(b->task_id);
    mtft__free(b->targets);
    mtft__free(b->labels);
    mtft__free(b->multi_labels);
    mtft__free(b->values);
    mtft__free(b->segment);
    mtft__free(b->position);
    mtft__free(b->example);
    memset(b, 0, sizeof *b);
}

static int grow(void **p, size_t n, size_t elem) {
    void *np = mtft__realloc(*p, n * elem);
    if (!np) return -1;
    *p = np;
    return 0;
}

static int reserve(mtft_batch *b, size_t rows, size_t bt, size_t ml) {
    if (rows > b->cap_b) {
        if (grow((void **)&b->valid_len, rows, 4) || grow((void **)&b->task_id, rows, 4) ||
            grow((void **)&b->labels, rows, 4) || grow((void **)&b->values, rows, 4) ||
            grow((void **)&b->example, rows, 8))
            return mtft__err(MTFT_ENOMEM, "batch: out of memory");
        b->cap_b = rows;
    }
    if (bt > b->cap_bt) {
        if (grow((void **)&b->ids, bt, 4) || grow((void **)&b->targets, bt, 4) || grow((void **)&b->segment, bt, 4) ||
            grow((void **)&b->position, bt, 4))
            return mtft__err(MTFT_ENOMEM, "batch: out of memory");
        b->cap_bt = bt;
    }
    if (ml > b->cap_ml) {
        if (grow((void **)&b->multi_labels, ml, 4)) return mtft__err(MTFT_ENOMEM, "batch: out of memory");
        b->cap_ml = ml;
    }
    return MTFT_OK;
}

/* The kept window [*s, *s + *len) of an example of n tokens. */
static int keep_window(int32_t n, const mtft_collate_options *o, int32_t *s) {
    if (n <= o->max_len) {
        *s = 0;
        return n;
    }
    *s = o->truncation == MTFT_TRUNCATE_LEFT ? n - o->max_len : 0;
    return o->max_len;
}

/* Write one example's tokens at row r, column c0. */
static void place(mtft_batch *b, int r, int c0, int seg, const mtft_task *t, const mtft_example *ex, int32_t s,
                  int32_t len) {
    int T = b->seq_len;
    int32_t *ids = b->ids + (size_t)r * T + c0;
    int32_t *tg = b->targets + (size_t)r * T + c0;
    int32_t *sg = b->segment + (size_t)r * T + c0;
    int32_t *ps = b->position + (size_t)r * T + c0;
    for (int32_t k = 0; k < len; k++) {
        int32_t src = s + k;
        ids[k] = ex->ids[src];
        sg[k] = seg;
        ps[k] = k;
        int32_t target = MTFT_IGNORE_INDEX;
        if (t->o.type == MTFT_TASK_TAGGING) {
            target = ex->tags[src];
        } else if (t->o.type == MTFT_TASK_GENERATION) {
            if (k + 1 < len && src + 1 >= ex->n_prompt) target = ex->ids[src + 1];
        }
        tg[k] = target;
    }
}

int mtft_batch_collate(mtft_batch *b, mtft_task *const *tasks, int n_tasks, const mtft_example_ref *refs, int n,
                       const mtft_collate_options *o) {
    MTFT_CHECK_ARG(b != NULL && o != NULL);
    MTFT_CHECK_ARG(tasks != NULL && n_tasks > 0);
    MTFT_CHECK_ARG(refs != NULL && n > 0);
    if (o->version != MTFT_COLLATE_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "collate options: version %d, expected %d (use MTFT_COLLATE_OPTIONS_INIT)",
                         o->version, MTFT_COLLATE_OPTIONS_VERSION);
    if (o->max_len < 1) return mtft__err(MTFT_ERANGE, "collate: max_len %d < 1", o->max_len);
    if (o->pad_to_multiple < 1) return mtft__err(MTFT_ERANGE, "collate: pad_to_multiple %d < 1", o->pad_to_multiple);
    if ((unsigned)o->truncation > MTFT_TRUNCATE_LEFT)
        return mtft__err(MTFT_EINVAL, "collate: truncation %d is neither right (0) nor left (1)", (int)o->truncation);
    /* check refs, find the multi-label width */
    int width = 0;
    for (int i = 0; i < n; i++) {
        const mtft_example_ref *r = &refs[i];
        if (r->task < 0 || r->task >= n_tasks || !tasks[r->task])
            return mtft__err(MTFT_ERANGE, "collate: refs[%d].task = %d outside the %d tasks", i, r->task, n_tasks);
        const mtft_task *t = tasks[r->task];
        if (!t->hdr) return mtft__err(MTFT_ESTATE, "collate: task '%s' is not loaded", t->o.name);
        if (r->split < 0 || r->split >= MTFT_SPLIT_COUNT || r->index < 0 || r->index >= t->hdr->n_split[r->split])
            return mtft__err(MTFT_ERANGE, "collate: refs[%d] (task '%s', split %d, index %lld) is out of range", i,
                             t->o.name, r->split, (long long)r->index);
        if (o->pack && t->o.type != MTFT_TASK_GENERATION)
            return mtft__err(MTFT_EINVAL, "collate: packing is for generation tasks; task '%s' is %s", t->o.name,
                             mtft_task_type_name(t->o.type));
        if (t->o.type == MTFT_TASK_MULTILABEL && (int)t->hdr->n_labels > width) width = (int)t->hdr->n_labels;
    }
    /* row layout: without packing one row per ref; with packing next fit */
    int rows = 0, maxlen = 0, n_trunc = 0;
    int used = 0, row_task = -1;
    mtft_example ex;
    for (int i = 0; i < n; i++) {
        mtft_task_example(tasks[refs[i].task], (mtft_split)refs[i].split, refs[i].index, &ex);
        int32_t s;
        int len = keep_window(ex.n_ids, o, &s);
        if (len < ex.n_ids) n_trunc++;
        if (!o->pack || rows == 0 || used + len > o->max_len || refs[i].task != row_task) {
            rows++;
            used = 0;
            row_task = refs[i].task;
        }
        used += len;
        if (used > maxlen) maxlen = used;
    }
    int T = (maxlen + o->pad_to_multiple - 1) / o->pad_to_multiple * o->pad_to_multiple;
    if (T > o->max_len) T = o->max_len > maxlen ? o->max_len : maxlen;
    int rc = reserve(b, (size_t)rows, (size_t)rows * (size_t)T, (size_t)rows * (size_t)(width > 0 ? width : 1));
    if (rc < 0) return rc;
    b->n_rows = rows;
    b->seq_len = T;
    b->label_width = width;
    b->n_truncated = n_trunc;
    b->n_examples = n;
    size_t bt = (size_t)rows * (size_t)T;
    for (size_t k = 0; k < bt; k++) {
        b->ids[k] = o->pad_id;
        b->targets[k] = MTFT_IGNORE_INDEX;
        b->segment[k] = -1;
        b->position[k] = 0;
    }
    if (width > 0) memset(b->multi_labels, 0, (size_t)rows * (size_t)width * sizeof(float));
    int r = -1, seg = 0;
    used = 0;
    row_task = -1;
    for (int i = 0; i < n; i++) {
        const mtft_task *t = tasks[refs[i].task];
        mtft_task_example(t, (mtft_split)refs[i].split, refs[i].index, &ex);
        int32_t s;
        int len = keep_window(ex.n_ids, o, &s);
        if (!o->pack || r < 0 || used + len > o->max_len || refs[i].task != row_task) {
            r++;
            used = 0;
            seg = 0;
            row_task = refs[i].task;
            b->task_id[r] = refs[i].task;
            b->example[r] = refs[i].index;
            b->labels[r] = t->o.type == MTFT_TASK_CLASSIFICATION && ex.n_labels > 0 ? ex.labels[0] : -1;
            b->values[r] = t->o.type == MTFT_TASK_REGRESSION ? ex.value : 0.0f;
            if (t->o.type == MTFT_TASK_MULTILABEL)
                for (int k = 0; k < ex.n_labels; k++) b->multi_labels[(size_t)r * width + ex.labels[k]] = 1.0f;
        }
        place(b, r, used, seg, t, &ex, s, len);
        used += len;
        seg++;
        b->valid_len[r] = used;
    }
    return MTFT_OK;
}
