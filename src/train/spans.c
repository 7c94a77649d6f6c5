/* Chunk extraction for span F1, following seqeval's default (non-strict)
 * mode: a chunk ends before tag `t` when the previous tag is E or S, when a
 * B or I is followed by B, S or O, or when the entity type changes after a
 * non-O tag; a chunk starts at B or S, at E or I after E, S or O, and at any
 * non-O tag whose type differs from the previous one. So an I after O (or an
 * I of another type) opens a new chunk, as conlleval does. */
#include "metrics_impl.h"

static int end_of_chunk(char pt, char t, int ptype, int type) {
    if (pt == 'E' || pt == 'S') return 1;
    if ((pt == 'B' || pt == 'I') && (t == 'B' || t == 'S' || t == 'O')) return 1;
    return pt != 'O' && ptype != type;
}

static int start_of_chunk(char pt, char t, int ptype, int type) {
    if (t == 'B' || t == 'S') return 1;
    if ((pt == 'E' || pt == 'S' || pt == 'O') && (t == 'E' || t == 'I')) return 1;
    return t != 'O' && ptype != type;
}

void mtft_metrics__spans(const int32_t *seq, size_t n, const char *prefix, const int *type,
                         mtft_metrics__span_cb cb, void *payload) {
    char pt = 'O';
    int ptype = -1;
    size_t begin = 0;
    for (size_t i = 0; i <= n; i++) {
        char t = i < n ? prefix[seq[i]] : 'O'; /* a final O closes the last chunk */
        int ty = i < n ? type[seq[i]] : -1;
        if (end_of_chunk(pt, t, ptype, ty)) cb(ptype, begin, i - 1, payload);
        if (start_of_chunk(pt, t, ptype, ty)) begin = i;
        pt = t;
        ptype = ty;
    }
}
