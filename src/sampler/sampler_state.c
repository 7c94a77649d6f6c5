/* Sampler state save/load. Byte layout (all integers little endian, doubles
 * as their IEEE-754 bit pattern in a u64):
 *
 *   8  magic "MTFTSMPL"
 *   u32 format version (1)      u32 n_tasks
 *   u32 batch_mode              u32 epoch_policy
 *   i64 anneal_steps            i64 step
 *   u64 rng[4]                  (task draws)
 *   u8  has_override            i64 override_left
 *   per task, n_tasks times:
 *     f64 p_start  f64 p_end  f64 override_rate
 *     i64 size  i64 epochs  i64 cursor  i64 drawn
 *     u8 stopped  u8 active
 *     u64 perm_rng[4]  u64 rng[4]
 *   u64 FNV-1a 64 checksum of every byte before it
 *
 * Permutations are not stored: perm_rng is the stream state that generated
 * the current one, so load regenerates it (and checks that it ends at rng),
 * which keeps the state O(n_tasks) however large the datasets are. */
#include <math.h>
#include <string.h>

#include "sampler/sampler_impl.h"

#define STATE_MAGIC "MTFTSMPL"
#define STATE_VERSION 1u
#define HEADER_BYTES ((size_t)(8 + 4 * 4 + 8 + 8 + 32 + 1 + 8))
#define TASK_BYTES ((size_t)(3 * 8 + 4 * 8 + 2 + 32 + 32))
#define CHECKSUM_BYTES ((size_t)8)

static uint64_t state_bytes(uint32_t n_tasks) {
    return (uint64_t)HEADER_BYTES + (uint64_t)n_tasks * TASK_BYTES + CHECKSUM_BYTES;
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- writer ---------------------------------------------------------------- */
typedef struct {
    unsigned char *p;
} wbuf;

static void put_u8(wbuf *w, unsigned v) { *w->p++ = (unsigned char)v; }
static void put_u32(wbuf *w, uint32_t v) {
    for (int i = 0; i < 4; i++) *w->p++ = (unsigned char)(v >> (8 * i));
}
static void put_u64(wbuf *w, uint64_t v) {
    for (int i = 0; i < 8; i++) *w->p++ = (unsigned char)(v >> (8 * i));
}
static void put_i64(wbuf *w, int64_t v) { put_u64(w, (uint64_t)v); }
static void put_f64(wbuf *w, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_u64(w, u);
}
static void put_rng(wbuf *w, const mtft_rng *r) {
    for (int i = 0; i < 4; i++) put_u64(w, r->s[i]);
}

int64_t mtft_sampler_state_save(const mtft_sampler *s, void *buf, size_t size) {
    MTFT_CHECK_ARG(s);
    size_t need = (size_t)state_bytes((uint32_t)s->n_tasks);
    if (size < need) return (int64_t)need;
    MTFT_CHECK_ARG(buf);
    wbuf w = {(unsigned char *)buf};
    memcpy(w.p, STATE_MAGIC, 8);
    w.p += 8;
    put_u32(&w, STATE_VERSION);
    put_u32(&w, (uint32_t)s->n_tasks);
    put_u32(&w, (uint32_t)s->batch_mode);
    put_u32(&w, (uint32_t)s->epoch_policy);
    put_i64(&w, s->anneal_steps);
    put_i64(&w, s->step);
    put_rng(&w, &s->rng);
    put_u8(&w, (unsigned)s->has_override);
    put_i64(&w, s->override_left);
    for (int k = 0; k < s->n_tasks; k++) {
        const mtft_sampler_task *t = &s->tasks[k];
        put_f64(&w, s->p_start[k]);
        put_f64(&w, s->p_end[k]);
        put_f64(&w, s->override_rates[k]);
        put_i64(&w, t->size);
        put_i64(&w, t->epochs);
        put_i64(&w, t->cursor);
        put_i64(&w, t->drawn);
        put_u8(&w, (unsigned)t->stopped);
        put_u8(&w, (unsigned)t->active);
        put_rng(&w, &t->perm_rng);
        put_rng(&w, &t->rng);
    }
    put_u64(&w, fnv1a((const unsigned char *)buf, need - CHECKSUM_BYTES));
    return (int64_t)need;
}

/* ---- reader ---------------------------------------------------------------- */
typedef struct {
    const unsigned char *p;
} rbuf;

static unsigned get_u8(rbuf *r) { return *r->p++; }
static uint32_t get_u32(rbuf *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)(*r->p++) << (8 * i);
    return v;
}
static uint64_t get_u64(rbuf *r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)(*r->p++) << (8 * i);
    return v;
}
static int64_t get_i64(rbuf *r) { return (int64_t)get_u64(r); }
static double get_f64(rbuf *r) {
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}
static void get_rng(rbuf *r, mtft_rng *g) {
    for (int i = 0; i < 4; i++) g->s[i] = get_u64(r);
}

static const char *mode_name(unsigned m) { return m == MTFT_SAMPLER_SINGLE_TASK ? "single-task" : "mixed"; }
static const char *policy_name(unsigned p) { return p == MTFT_SAMPLER_STOP ? "stop" : "reshuffle"; }

#define LOAD "sampler state"

int mtft_sampler_state_load(mtft_sampler *s, const void *buf, size_t size) {
    MTFT_CHECK_ARG(s);
    MTFT_CHECK_ARG(buf);
    const unsigned char *b = (const unsigned char *)buf;
    if (size < HEADER_BYTES + CHECKSUM_BYTES)
        return mtft__err(MTFT_EFORMAT, LOAD ": truncated: %zu bytes, a state has at least %zu", size,
                         HEADER_BYTES + CHECKSUM_BYTES);
    if (memcmp(b, STATE_MAGIC, 8) != 0)
        return mtft__err(MTFT_EFORMAT, LOAD ": bad magic: not a sampler state (expected \"%s\")", STATE_MAGIC);
    rbuf r = {b + 8};
    uint32_t version = get_u32(&r);
    if (version != STATE_VERSION)
        return mtft__err(MTFT_EFORMAT, LOAD ": format version %u is not supported (this library reads %u)",
                         (unsigned)version, STATE_VERSION);
    uint32_t n_tasks = get_u32(&r);
    uint64_t expect = state_bytes(n_tasks);
    if ((uint64_t)size < expect)
        return mtft__err(MTFT_EFORMAT, LOAD ": truncated: %zu bytes, a state of %u tasks has %llu", size,
                         (unsigned)n_tasks, (unsigned long long)expect);
    if ((uint64_t)size > expect)
        return mtft__err(MTFT_EFORMAT, LOAD ": %zu bytes, but a state of %u tasks has %llu (trailing bytes)", size,
                         (unsigned)n_tasks, (unsigned long long)expect);
    uint64_t sum = fnv1a(b, size - CHECKSUM_BYTES);
    rbuf tail = {b + size - CHECKSUM_BYTES};
    if (get_u64(&tail) != sum) return mtft__err(MTFT_EFORMAT, LOAD ": checksum mismatch: the buffer is corrupt");

    /* from here the bytes are as written: check they fit this sampler */
    if (n_tasks != (uint32_t)s->n_tasks)
        return mtft__err(MTFT_EINVAL, LOAD ": saved with %u tasks, this sampler has %d", (unsigned)n_tasks,
                         s->n_tasks);
    uint32_t batch_mode = get_u32(&r), epoch_policy = get_u32(&r);
    if (batch_mode != (uint32_t)s->batch_mode)
        return mtft__err(MTFT_EINVAL, LOAD ": saved with %s batches, this sampler makes %s batches",
                         mode_name(batch_mode), mode_name((unsigned)s->batch_mode));
    if (epoch_policy != (uint32_t)s->epoch_policy)
        return mtft__err(MTFT_EINVAL, LOAD ": saved with epoch policy %s, this sampler has %s",
                         policy_name(epoch_policy), policy_name((unsigned)s->epoch_policy));
    int64_t anneal_steps = get_i64(&r);
    if (anneal_steps != s->anneal_steps)
        return mtft__err(MTFT_EINVAL, LOAD ": saved with anneal_steps %lld, this sampler has %lld",
                         (long long)anneal_steps, (long long)s->anneal_steps);
    int64_t step = get_i64(&r);
    mtft_rng rng;
    get_rng(&r, &rng);
    unsigned has_override = get_u8(&r);
    int64_t override_left = get_i64(&r);
    if (step < 0 || has_override > 1 || override_left < 0)
        return mtft__err(MTFT_EFORMAT, LOAD ": invalid header values (step %lld, override %u, override_left %lld)",
                         (long long)step, has_override, (long long)override_left);

    /* sizes first: a different dataset explains any rate difference */
    for (uint32_t k = 0; k < n_tasks; k++) {
        rbuf q = {b + HEADER_BYTES + (size_t)k * TASK_BYTES + 3 * 8};
        int64_t n_k = get_i64(&q);
        if (n_k != s->tasks[k].size)
            return mtft__err(MTFT_EINVAL, LOAD ": task %u was saved with %lld examples, this sampler's has %lld",
                             (unsigned)k, (long long)n_k, (long long)s->tasks[k].size);
    }

    /* validate every task and regenerate its permutation into a new buffer;
     * nothing in `s` changes until all of it checked out */
    int rc = MTFT_OK;
    int any_active = 0;
    double override_sum = 0.0;
    mtft_sampler_task *nt = mtft__calloc(n_tasks, sizeof *nt);
    double *ov = mtft__calloc(n_tasks, sizeof *ov);
    if (!nt || !ov) {
        rc = mtft__err(MTFT_ENOMEM, LOAD ": out of memory");
        goto done;
    }
    for (uint32_t k = 0; k < n_tasks; k++) {
        mtft_sampler_task *t = &nt[k];
        double ps = get_f64(&r), pe = get_f64(&r);
        ov[k] = get_f64(&r);
        t->size = get_i64(&r);
        t->epochs = get_i64(&r);
        t->cursor = get_i64(&r);
        t->drawn = get_i64(&r);
        unsigned stopped = get_u8(&r), active = get_u8(&r);
        get_rng(&r, &t->perm_rng);
        get_rng(&r, &t->rng);
        if (memcmp(&ps, &s->p_start[k], sizeof ps) != 0) {
            rc = mtft__err(MTFT_EINVAL, LOAD ": task %u: saved start rate %.17g, this sampler's is %.17g "
                           "(different strategy or parameters)",
                           (unsigned)k, ps, s->p_start[k]);
            goto done;
        }
        if (memcmp(&pe, &s->p_end[k], sizeof pe) != 0) {
            rc = mtft__err(MTFT_EINVAL, LOAD ": task %u: saved end rate %.17g, this sampler's is %.17g "
                           "(different annealing target)",
                           (unsigned)k, pe, s->p_end[k]);
            goto done;
        }
        int stop_ok = epoch_policy == MTFT_SAMPLER_STOP;
        int cursor_ok = stopped ? t->cursor == t->size : (t->cursor >= 0 && t->cursor < t->size);
        if (stopped > 1 || active > 1 || (stopped && !stop_ok) || !cursor_ok || t->epochs < 0 || t->drawn < 0 ||
            !isfinite(ov[k]) || ov[k] < 0.0) {
            rc = mtft__err(MTFT_EFORMAT,
                           LOAD ": task %u: invalid values (cursor %lld of %lld, epochs %lld, drawn %lld, "
                           "stopped %u, active %u, override rate %g)",
                           (unsigned)k, (long long)t->cursor, (long long)t->size, (long long)t->epochs,
                           (long long)t->drawn, stopped, active, ov[k]);
            goto done;
        }
        t->stopped = (int)stopped;
        t->active = (int)active;
        any_active |= t->active;
        override_sum += ov[k];
        t->perm = mtft__malloc((size_t)t->size * sizeof(int64_t));
        if (!t->perm) {
            rc = mtft__err(MTFT_ENOMEM, LOAD ": out of memory for the permutation of task %u", (unsigned)k);
            goto done;
        }
        mtft_rng g = t->perm_rng;
        mtft_sampler__shuffle(t->perm, t->size, &g);
        if (memcmp(&g, &t->rng, sizeof g) != 0) {
            rc = mtft__err(MTFT_EFORMAT, LOAD ": task %u: the permutation stream does not match its saved end state",
                           (unsigned)k);
            goto done;
        }
    }
    if (!any_active) {
        rc = mtft__err(MTFT_EFORMAT, LOAD ": the mask has no active task");
        goto done;
    }
    if (has_override && !(override_sum > 0.0)) {
        rc = mtft__err(MTFT_EFORMAT, LOAD ": the rate override has total %g", override_sum);
        goto done;
    }

    /* commit */
    for (int k = 0; k < s->n_tasks; k++) {
        int64_t *old = s->tasks[k].perm;
        s->tasks[k] = nt[k];
        nt[k].perm = old; /* freed below */
    }
    memcpy(s->override_rates, ov, (size_t)n_tasks * sizeof(double));
    s->has_override = (int)has_override;
    s->override_left = override_left;
    s->step = step;
    s->rng = rng;
done:
    if (nt)
        for (uint32_t k = 0; k < n_tasks; k++) mtft__free(nt[k].perm);
    mtft__free(nt);
    mtft__free(ov);
    return rc;
}
