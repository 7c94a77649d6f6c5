/* Trainer checkpoints: a directory with
 *   trainable.safetensors  every trainable group's tensors as "<group>/<tensor>"
 *   state.bin              counters, AdamW moments and steps, sampler and
 *                          balancer state (magic, version, FNV-1a checksum)
 *   head.<task>/           each head as mtft_head_save writes it (for export)
 *   trainer.json           the sidecar: step, seed, tasks, groups, files
 * written into "<dir>.tmp" (each file fsync'ed), which then replaces dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mtft/io.h"
#include "io/atomic.h"
#include "trainer_impl.h"

#define CKPT_MAGIC "MTFTCKPT"
#define CKPT_VERSION 1u

/* ---- a growable byte buffer --------------------------------------------------------- */
typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = mtft__realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u64(wbuf *b, uint64_t v) {
    unsigned char x[8];
    for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
    put(b, x, 8);
}
static void put_f64(wbuf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(b, u);
}
static void put_f32s(wbuf *b, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        unsigned char x[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        put(b, x, 4);
    }
}

typedef struct rbuf {
    const unsigned char *p;
    size_t n, at;
    int bad;
} rbuf;
static int get(rbuf *r, void *dst, size_t n) {
    if (r->bad || r->at + n > r->n) {
        r->bad = 1;
        return -1;
    }
    memcpy(dst, r->p + r->at, n);
    r->at += n;
    return 0;
}
static uint64_t get_u64(rbuf *r) {
    unsigned char x[8] = {0};
    get(r, x, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)x[i] << (8 * i);
    return v;
}
static double get_f64(rbuf *r) {
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
static void get_f32s(rbuf *r, float *v, size_t n) {
    for (size_t i = 0; i < n && !r->bad; i++) {
        unsigned char x[4];
        if (get(r, x, 4) < 0) return;
        uint32_t u = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
        memcpy(&v[i], &u, 4);
    }
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---- files ---------------------------------------------------------------------------- */

static int write_file_atomic(const char *path, const void *data, size_t n) {
    int rc = mtft_io__write_atomic(path, data, n, 0);
    if (rc < 0) mtft__err_prefix("checkpoint");
    return rc;
}

/* Remove a directory tree of plain files and directories. */
void mtft_trainer__rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            mtft_trainer__rm_tree(sub);
        else
            unlink(sub);
    }
    closedir(d);
    rmdir(path);
}

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* ---- save ------------------------------------------------------------------------------ */

static int save_weights(mtft_trainer *tr, const char *path) {
    int n = 0;
    for (int i = 0; i < tr->n_groups; i++) n += mtft_param_group_count(tr->groups[i]);
    char **names = mtft__calloc((size_t)(n ? n : 1), sizeof *names);
    mtft_tensor **ts = mtft__calloc((size_t)(n ? n : 1), sizeof *ts);
    int rc = MTFT_OK, j = 0;
    if (!names || !ts) rc = mtft__err(MTFT_ENOMEM, "checkpoint: out of memory");
    for (int i = 0; i < tr->n_groups && rc == MTFT_OK; i++) {
        mtft_param_group *pg = tr->groups[i];
        for (int t = 0; t < mtft_param_group_count(pg); t++, j++) {
            mtft_tensor *x = mtft_param_group_tensor(pg, t);
            size_t len = strlen(mtft_param_group_name(pg)) + strlen(mtft_tensor_name(x)) + 2;
            names[j] = mtft__malloc(len);
            if (!names[j]) {
                rc = mtft__err(MTFT_ENOMEM, "checkpoint: out of memory");
                break;
            }
            snprintf(names[j], len, "%s/%s", mtft_param_group_name(pg), mtft_tensor_name(x));
            ts[j] = x;
        }
    }
    if (rc == MTFT_OK) {
        const char *meta[] = {"format", "mtft-trainer-checkpoint", NULL};
        rc = mtft_safetensors_save(path, n, (const char *const *)names, ts, meta);
    }
    for (int i = 0; names && i < n; i++) mtft__free(names[i]);
    mtft__free(names);
    mtft__free(ts);
    return rc;
}

static int save_state(mtft_trainer *tr, wbuf *b) {
    put(b, CKPT_MAGIC, 8);
    put_u64(b, CKPT_VERSION);
    put_u64(b, (uint64_t)tr->n_tasks);
    put_u64(b, (uint64_t)tr->n_groups);
    put_u64(b, (uint64_t)tr->step);
    put_u64(b, (uint64_t)tr->n_skipped);
    put_u64(b, (uint64_t)tr->tokens_total);
    put_f64(b, tr->train_seconds);
    put_f32s(b, tr->last_w, (size_t)tr->n_tasks);
    for (int i = 0; i < tr->n_groups; i++) {
        float *m = NULL, *v = NULL;
        size_t n = 0;
        int64_t st = 0;
        /* SGD: the momentum buffer stands in for both moments (v a copy) */
        int rc = tr->sgd ? mtft_sgd_group_state(tr->sgd, i, &m, &n, &st)
                         : mtft_adamw_group_state(tr->opt, i, &m, &v, &n, &st);
        if (rc < 0) return rc;
        if (tr->sgd) v = m;
        put_u64(b, (uint64_t)st);
        put_u64(b, m && v ? (uint64_t)n : 0);
        if (m && v) {
            put_f32s(b, m, n);
            put_f32s(b, v, n);
        }
    }
    int64_t ns = mtft_sampler_state_save(tr->sampler, NULL, 0);
    if (ns < 0) return (int)ns;
    void *sb = mtft__malloc((size_t)ns);
    if (!sb) return mtft__err(MTFT_ENOMEM, "checkpoint: out of memory");
    int64_t rc = mtft_sampler_state_save(tr->sampler, sb, (size_t)ns);
    if (rc >= 0) {
        put_u64(b, (uint64_t)ns);
        put(b, sb, (size_t)ns);
    }
    mtft__free(sb);
    if (rc < 0) return (int)rc;
    size_t nb = mtft_balancer_state_size(tr->bal);
    void *bb = mtft__malloc(nb ? nb : 1);
    if (!bb) return mtft__err(MTFT_ENOMEM, "checkpoint: out of memory");
    int r2 = mtft_balancer_state_save(tr->bal, bb, nb, NULL);
    if (r2 >= 0) {
        put_u64(b, (uint64_t)nb);
        put(b, bb, nb);
    }
    mtft__free(bb);
    if (r2 < 0) return r2;
    put_u64(b, fnv1a(b->p, b->n));
    return b->oom ? mtft__err(MTFT_ENOMEM, "checkpoint: out of memory") : MTFT_OK;
}

static int save_sidecar(mtft_trainer *tr, const char *path) {
    wbuf b = {0};
    char line[1024];
    snprintf(line, sizeof line,
             "{\n  \"format\": \"mtft-trainer-checkpoint\",\n  \"version\": %u,\n  \"step\": %lld,\n"
             "  \"seed\": %llu,\n  \"skipped_steps\": %lld,\n  \"balancer\": \"%s\",\n  \"files\": "
             "{\"weights\": \"trainable.safetensors\", \"state\": \"state.bin\"},\n  \"tasks\": [",
             CKPT_VERSION, (long long)tr->step, (unsigned long long)tr->o.seed, (long long)tr->n_skipped,
             mtft_balance_method_name(mtft_balancer_method(tr->bal)));
    put(&b, line, strlen(line));
    for (int k = 0; k < tr->n_tasks; k++) {
        snprintf(line, sizeof line, "%s\n    {\"name\": \"%s\", \"type\": \"%s\", \"head\": \"head.%s\"}", k ? "," : "",
                 tr->names[k], mtft_task_type_name(mtft_task_type_of(tr->tasks[k])), tr->names[k]);
        put(&b, line, strlen(line));
    }
    put(&b, "\n  ],\n  \"groups\": [", 19);
    for (int i = 0; i < tr->n_groups; i++) {
        snprintf(line, sizeof line, "%s\"%s\"", i ? ", " : "", mtft_param_group_name(tr->groups[i]));
        put(&b, line, strlen(line));
    }
    put(&b, "]\n}\n", 4);
    int rc = b.oom ? mtft__err(MTFT_ENOMEM, "checkpoint: out of memory") : write_file_atomic(path, b.p, b.n);
    mtft__free(b.p);
    return rc;
}

int mtft_trainer_save(mtft_trainer *tr, const char *dir) {
    MTFT_CHECK_ARG(tr && dir && *dir);
    int rc = mtft_trainer__prepare(tr);
    if (rc < 0) return rc;
    char tmp[4096], old[4096], path[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    snprintf(old, sizeof old, "%s.old", dir);
    mtft_trainer__rm_tree(tmp);
    if (mkdir(tmp, 0777) != 0) return mtft__err(MTFT_EIO, "checkpoint: cannot create '%s': %s", tmp, strerror(errno));
    snprintf(path, sizeof path, "%s/trainable.safetensors", tmp);
    if ((rc = save_weights(tr, path)) < 0) goto fail;
    wbuf b = {0};
    rc = save_state(tr, &b);
    if (rc >= 0) {
        snprintf(path, sizeof path, "%s/state.bin", tmp);
        rc = write_file_atomic(path, b.p, b.n);
    }
    mtft__free(b.p);
    if (rc < 0) goto fail;
    for (int k = 0; k < tr->n_tasks; k++) {
        snprintf(path, sizeof path, "%s/head.%s", tmp, tr->names[k]);
        if (mkdir(path, 0777) != 0) {
            rc = mtft__err(MTFT_EIO, "checkpoint: cannot create '%s': %s", path, strerror(errno));
            goto fail;
        }
        if ((rc = mtft_head_save(tr->heads[k], path)) < 0) goto fail;
    }
    snprintf(path, sizeof path, "%s/trainer.json", tmp);
    if ((rc = save_sidecar(tr, path)) < 0) goto fail;
    fsync_dir(tmp);
    mtft_trainer__rm_tree(old);
    struct stat st;
    if (stat(dir, &st) == 0 && rename(dir, old) != 0) {
        rc = mtft__err(MTFT_EIO, "checkpoint: cannot move the previous '%s' aside: %s", dir, strerror(errno));
        goto fail;
    }
    if (rename(tmp, dir) != 0) {
        rc = mtft__err(MTFT_EIO, "checkpoint: rename '%s' -> '%s': %s", tmp, dir, strerror(errno));
        rename(old, dir);
        goto fail;
    }
    mtft_trainer__rm_tree(old);
    return MTFT_OK;
fail:
    mtft__err_prefix("trainer: saving checkpoint '%s'", dir);
    mtft_trainer__rm_tree(tmp);
    return rc;
}

/* ---- load ------------------------------------------------------------------------------- */

int mtft_trainer_load(mtft_trainer *tr, const char *dir) {
    MTFT_CHECK_ARG(tr && dir);
    int rc = mtft_trainer__prepare(tr);
    if (rc < 0) return rc;
    char path[4200];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return mtft__err(MTFT_EIO, "checkpoint: cannot open '%s': %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = len > 0 ? mtft__malloc((size_t)len) : NULL;
    if (!data || fread(data, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        mtft__free(data);
        return mtft__err(len > 0 && !data ? MTFT_ENOMEM : MTFT_EIO, "checkpoint: cannot read '%s'", path);
    }
    fclose(f);
    rbuf r = {data, (size_t)len, 0, 0};
    char magic[8];
    rc = MTFT_OK;
    if (len < 16 || get(&r, magic, 8) < 0 || memcmp(magic, CKPT_MAGIC, 8) != 0) {
        rc = mtft__err(MTFT_EFORMAT, "checkpoint: '%s' is not an mtft trainer state (bad magic)", path);
        goto done;
    }
    uint64_t sum = 0;
    memcpy(&sum, data + len - 8, 8);
    {
        uint64_t s2 = 0;
        for (int i = 0; i < 8; i++) s2 |= (uint64_t)data[len - 8 + i] << (8 * i);
        sum = s2;
    }
    if (fnv1a(data, (size_t)len - 8) != sum) {
        rc = mtft__err(MTFT_EFORMAT, "checkpoint: '%s' is corrupt (checksum mismatch)", path);
        goto done;
    }
    r.n = (size_t)len - 8;
    const uint64_t ver = get_u64(&r), nt = get_u64(&r), ng = get_u64(&r);
    if (ver != CKPT_VERSION || nt != (uint64_t)tr->n_tasks || ng != (uint64_t)tr->n_groups) {
        rc = mtft__err(MTFT_EINVAL,
                       "checkpoint: '%s' (version %llu, %llu tasks, %llu trainable groups) does not fit this trainer "
                       "(version %u, %d tasks, %d groups)",
                       path, (unsigned long long)ver, (unsigned long long)nt, (unsigned long long)ng, CKPT_VERSION,
                       tr->n_tasks, tr->n_groups);
        goto done;
    }
    /* the weights first (all or nothing per group) */
    {
        char wp[4200];
        snprintf(wp, sizeof wp, "%s/trainable.safetensors", dir);
        mtft_safetensors *st = NULL;
        if ((rc = mtft_safetensors_open(&st, wp)) < 0) goto done;
        for (int i = 0; i < tr->n_groups && rc >= 0; i++) {
            char pre[512];
            snprintf(pre, sizeof pre, "%s/", mtft_param_group_name(tr->groups[i]));
            rc = mtft_safetensors_load_group(st, tr->groups[i], pre, 1);
        }
        mtft_safetensors_close(st);
        if (rc < 0) goto done;
        rc = MTFT_OK;
    }
    const int64_t step = (int64_t)get_u64(&r);
    const int64_t nsk = (int64_t)get_u64(&r);
    const int64_t tok = (int64_t)get_u64(&r);
    const double secs = get_f64(&r);
    get_f32s(&r, tr->last_w, (size_t)tr->n_tasks);
    for (int i = 0; i < tr->n_groups && !r.bad; i++) {
        const int64_t gst = (int64_t)get_u64(&r);
        const uint64_t n = get_u64(&r);
        if (n) {
            float *m = NULL, *v = NULL;
            size_t gn = 0;
            int64_t s0;
            if (tr->sgd) {
                if ((rc = mtft_sgd_group_state_alloc(tr->sgd, i)) < 0) goto done;
                if ((rc = mtft_sgd_group_state(tr->sgd, i, &m, &gn, &s0)) < 0) goto done;
                v = m; /* written twice: the second read leaves the same values */
            } else {
                if ((rc = mtft_adamw_group_state_alloc(tr->opt, i)) < 0) goto done;
                if ((rc = mtft_adamw_group_state(tr->opt, i, &m, &v, &gn, &s0)) < 0) goto done;
            }
            if (gn != n) {
                rc = mtft__err(MTFT_EINVAL, "checkpoint: '%s': group '%s' has %llu moments, the trainer %zu", path,
                               mtft_param_group_name(tr->groups[i]), (unsigned long long)n, gn);
                goto done;
            }
            get_f32s(&r, m, n);
            get_f32s(&r, v, n);
        }
        if ((rc = tr->sgd ? mtft_sgd_set_group_step(tr->sgd, i, gst) : mtft_adamw_set_group_step(tr->opt, i, gst)) < 0)
            goto done;
    }
    const uint64_t ns = get_u64(&r);
    if (r.bad || r.at + ns > r.n) {
        rc = mtft__err(MTFT_EFORMAT, "checkpoint: '%s' is truncated", path);
        goto done;
    }
    if ((rc = mtft_sampler_state_load(tr->sampler, r.p + r.at, (size_t)ns)) < 0) goto done;
    r.at += ns;
    const uint64_t nb = get_u64(&r);
    if (r.bad || r.at + nb > r.n) {
        rc = mtft__err(MTFT_EFORMAT, "checkpoint: '%s' is truncated", path);
        goto done;
    }
    if ((rc = mtft_balancer_state_load(tr->bal, r.p + r.at, (size_t)nb)) < 0) goto done;
    tr->step = step;
    tr->n_skipped = nsk;
    tr->tokens_total = tok;
    tr->train_seconds = secs;
    /* best-weight selection starts afresh after a resume */
    tr->best_score = -INFINITY;
    tr->have_best = 0;
    tr->bad_evals = 0;
done:
    mtft__free(data);
    if (rc < 0) mtft__err_prefix("trainer: loading checkpoint '%s'", dir);
    return rc;
}

/* ---- periodic checkpoints ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The best dev weights so far (the trainer's current state, right after an
 * evaluation that improved the score) as the checkpoint ckpt_dir/best. */
int mtft_trainer__save_best(mtft_trainer *tr) {
    const char *root = tr->o.ckpt_dir;
    if (mkdir(root, 0777) != 0 && errno != EEXIST)
        return mtft__err(MTFT_EIO, "checkpoint: cannot create '%s': %s", root, strerror(errno));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/best", root);
    return mtft_trainer_save(tr, dir);
}

int mtft_trainer__save_periodic(mtft_trainer *tr) {
    const char *root = tr->o.ckpt_dir;
    if (mkdir(root, 0777) != 0 && errno != EEXIST)
        return mtft__err(MTFT_EIO, "checkpoint: cannot create '%s': %s", root, strerror(errno));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/step-%08lld", root, (long long)tr->step);
    int rc = mtft_trainer_save(tr, dir);
    if (rc < 0 || tr->o.keep_last <= 0) return rc;
    DIR *d = opendir(root);
    if (!d) return MTFT_OK;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strncmp(nm, "step-", 5) != 0 || strlen(nm) != 13 || strchr(nm, '.')) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **n2 = mtft__realloc(names, cap * sizeof *n2);
            if (!n2) break;
            names = n2;
        }
        names[n] = mtft__strdup(nm);
        if (names[n]) n++;
    }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i + (size_t)tr->o.keep_last < n; i++) {
        char old[4200];
        snprintf(old, sizeof old, "%s/%s", root, names[i]);
        mtft_trainer__rm_tree(old);
    }
    for (size_t i = 0; i < n; i++) mtft__free(names[i]);
    mtft__free(names);
    return MTFT_OK;
}
