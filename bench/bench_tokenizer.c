/* Tokenizer throughput: encode a text with GPT-2's tokenizer on one thread
 * and print one JSON line (median of 5 runs, MB = 1e6 bytes).
 *
 *   bench_tokenizer [text] [encoder.json vocab.bpe] [--train VOCAB]
 *
 * Defaults: the bundled 50 KB Moby-Dick fixture and data/tokenizer/gpt2 from
 * the source tree. "cold" clears the word cache before each run (every
 * distinct word goes through BPE once per run); "warm" runs with the cache
 * already filled. --train also times BPE training on the text to VOCAB. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtft/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

#define RUNS 5

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0, got;
    char *b = malloc(cap);
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    fclose(f);
    *len = n;
    return b;
}

/* The source tree, from this file's path (…/bench/bench_tokenizer.c). */
static void source_path(char *buf, size_t n, const char *rel) {
    const char *file = __FILE__;
    const char *cut = strstr(file, "bench/bench_tokenizer.c");
    int dl = cut ? (int)(cut - file) : 0;
    snprintf(buf, n, "%.*s%s", dl, file, rel);
}

int main(int argc, char **argv) {
    char text_path[1024], enc_path[1024], bpe_path[1024];
    source_path(text_path, sizeof text_path, "tests/fixtures/tokenizer/moby_dick_50k.txt");
    source_path(enc_path, sizeof enc_path, "data/tokenizer/gpt2/encoder.json");
    source_path(bpe_path, sizeof bpe_path, "data/tokenizer/gpt2/vocab.bpe");
    int train_vocab = 0, pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--train") == 0 && i + 1 < argc) {
            train_vocab = atoi(argv[++i]);
        } else if (pos == 0) {
            snprintf(text_path, sizeof text_path, "%s", argv[i]);
            pos++;
        } else if (pos == 1) {
            snprintf(enc_path, sizeof enc_path, "%s", argv[i]);
            pos++;
        } else if (pos == 2) {
            snprintf(bpe_path, sizeof bpe_path, "%s", argv[i]);
            pos++;
        } else {
            fprintf(stderr, "usage: %s [text] [encoder.json vocab.bpe] [--train VOCAB]\n", argv[0]);
            return 2;
        }
    }
    size_t len = 0;
    char *text = read_all(text_path, &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", text_path);
        return 1;
    }
    double t0 = bench_now();
    mtft_tokenizer *tok = NULL;
    if (mtft_tokenizer_load_gpt2(&tok, enc_path, bpe_path) != MTFT_OK) {
        fprintf(stderr, "%s\n", mtft_error_last()->message);
        free(text);
        return 1;
    }
    double load_s = bench_now() - t0;

    size_t need = 0;
    mtft_tokenizer_encode(tok, text, len, NULL, 0, &need);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    double cold[RUNS], warm[RUNS];
    size_t n = 0;
    for (int r = 0; r < RUNS; r++) {
        mtft_tokenizer__cache_clear(&tok->cache);
        t0 = bench_now();
        mtft_tokenizer_encode(tok, text, len, ids, need, &n);
        cold[r] = (double)len / 1e6 / (bench_now() - t0);
    }
    for (int r = 0; r < RUNS; r++) {
        t0 = bench_now();
        mtft_tokenizer_encode(tok, text, len, ids, need, &n);
        warm[r] = (double)len / 1e6 / (bench_now() - t0);
    }
    /* decode */
    char *out = malloc(len + 1);
    double dec[RUNS];
    size_t outlen = 0;
    for (int r = 0; r < RUNS; r++) {
        t0 = bench_now();
        mtft_tokenizer_decode(tok, ids, n, out, len + 1, &outlen);
        dec[r] = (double)len / 1e6 / (bench_now() - t0);
    }
    int ok = outlen == len && memcmp(out, text, len) == 0;

    double train_s = -1;
    int32_t trained = 0;
    if (train_vocab > 0) {
        mtft_bpe_train_options o = MTFT_BPE_TRAIN_OPTIONS_INIT;
        o.vocab_size = train_vocab;
        mtft_tokenizer *tt = NULL;
        t0 = bench_now();
        if (mtft_tokenizer_train(&tt, text, len, &o) != MTFT_OK) {
            fprintf(stderr, "train: %s\n", mtft_error_last()->message);
            return 1;
        }
        train_s = bench_now() - t0;
        trained = mtft_tokenizer_vocab_size(tt);
        mtft_tokenizer_free(tt);
    }
    const char *base = strrchr(text_path, '/');
    printf("{\"bench\": \"tokenizer\", \"text\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, \"bytes_per_token\": %.3f, "
           "\"threads\": 1, \"runs\": %d, \"encode_mbps_cold\": %.2f, \"encode_mbps_warm\": %.2f, "
           "\"decode_mbps\": %.1f, \"load_s\": %.3f, \"roundtrip_ok\": %s",
           base ? base + 1 : text_path, len, n, n ? (double)len / (double)n : 0.0, RUNS, bench_median(cold, RUNS),
           bench_median(warm, RUNS), bench_median(dec, RUNS), load_s, ok ? "true" : "false");
    if (train_vocab > 0) printf(", \"train_vocab\": %d, \"train_s\": %.3f", (int)trained, train_s);
    printf("}\n");
    free(out);
    free(ids);
    free(text);
    mtft_tokenizer_free(tok);
    return ok ? 0 : 1;
}
