/* Counted allocation and arenas. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static _Atomic uint64_t g_allocs;

uint64_t mtft__alloc_count(void) { return atomic_load(&g_allocs); }

static void *counted(void *p) {
    if (p) atomic_fetch_add(&g_allocs, 1);
    else mtft__err(MTFT_ENOMEM, "out of memory");
    return p;
}

void *mtft__malloc(size_t n) { return counted(malloc(n ? n : 1)); }
void *mtft__calloc(size_t n, size_t size) { return counted(calloc(n ? n : 1, size ? size : 1)); }
void *mtft__realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    return q ? counted(q) : counted(NULL);
}
void mtft__free(void *p) { free(p); }

void *mtft__aligned_alloc(size_t n) {
    size_t sz = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (p) memset(p, 0, sz ? sz : 64);
    return counted(p);
}
void mtft__aligned_free(void *p) { free(p); }

char *mtft__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mtft__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

struct mtft_arena_block {
    mtft_arena_block *next;
    size_t size, used;
    /* data follows, 64-byte aligned */
};
#define BLOCK_HDR ((sizeof(mtft_arena_block) + 63) & ~(size_t)63)

void mtft_arena_init(mtft_arena *a, size_t first) {
    memset(a, 0, sizeof *a);
    a->block_bytes = first ? first : (size_t)1 << 20;
}

static mtft_arena_block *new_block(mtft_arena *a, size_t size) {
    mtft_arena_block *b = aligned_alloc(64, BLOCK_HDR + size);
    if (!b) {
        mtft__err(MTFT_ENOMEM, "arena: out of memory asking for %zu bytes", size);
        return NULL;
    }
    atomic_fetch_add(&g_allocs, 1);
    b->next = a->head;
    b->size = size;
    b->used = 0;
    a->head = b;
    a->capacity += size;
    a->sys_allocs++;
    return b;
}

void *mtft_arena_alloc(mtft_arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    mtft_arena_block *b = a->head;
    if (!b || b->used + need > b->size) {
        size_t sz = a->block_bytes;
        while (sz < need) sz *= 2;
        b = new_block(a, sz);
        if (!b) return NULL;
        a->block_bytes = sz * 2; /* geometric growth bounds the block count */
    }
    void *p = (char *)b + BLOCK_HDR + b->used;
    b->used += need;
    a->used_total += need;
    return p;
}

void *mtft_arena_calloc(mtft_arena *a, size_t bytes) {
    void *p = mtft_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void mtft_arena_reset(mtft_arena *a) {
    if (a->head && a->head->next) {
        /* several blocks: replace by one that holds what the step used */
        size_t want = a->used_total;
        mtft_arena_block *b = a->head;
        while (b) {
            mtft_arena_block *n = b->next;
            free(b);
            b = n;
        }
        a->head = NULL;
        a->capacity = 0;
        if (want < a->block_bytes / 2) want = a->block_bytes / 2;
        new_block(a, want); /* on failure the next alloc retries */
    }
    if (a->head) a->head->used = 0;
    a->used_total = 0;
}

void mtft_arena_dispose(mtft_arena *a) {
    mtft_arena_block *b = a->head;
    while (b) {
        mtft_arena_block *n = b->next;
        free(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}
