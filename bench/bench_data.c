/* Data pipeline throughput on a bundled task: tokenizing every example once
 * (in memory and into a cache file), mapping the cache again, and turning
 * examples into padded batches (loader + collate, with and without length
 * bucketing). Prints one JSON line.
 *
 *   bench_data [tasks_dir] [task] [tokenizer_dir]
 *   defaults:  data/tasks  spam_assassin  data/tokenizer/gpt2
 * The task directory holds train.jsonl, dev.jsonl, test.jsonl. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mtft/data.h"
#include "mtft/task.h"

typedef struct known {
    const char *name;
    mtft_task_type type;
    const char *tmpl;
} known;

static const known k_tasks[] = {
    {"spam_assassin", MTFT_TASK_CLASSIFICATION, NULL},
    {"fortunes_langid", MTFT_TASK_CLASSIFICATION, NULL},
    {"wordnet_supersense", MTFT_TASK_CLASSIFICATION, "Word and gloss: {text}\nSupersense:"},
    {"name_gender", MTFT_TASK_CLASSIFICATION, NULL},
    {"afinn_valence", MTFT_TASK_REGRESSION, NULL},
    {"kjv_word_alignment", MTFT_TASK_TAGGING, NULL},
    {"cmudict_g2p", MTFT_TASK_GENERATION, "Pronounce: {input}\nPhonemes:"},
    {"acronym_expansion", MTFT_TASK_GENERATION, "Expand the acronym {input}:"},
};

static int fail(const char *what) {
    fprintf(stderr, "bench_data: %s: %s\n", what, mtft_error_last()->message);
    return 1;
}

/* Batches over the train split until at least min_seconds have passed;
 * returns examples/s and the share of padding tokens. */
static int run_batches(mtft_task *t, int bucket_window, double min_seconds, double *ex_per_s, double *pad_frac,
                       int64_t *n_batches) {
    mtft_loader_options lo = MTFT_LOADER_OPTIONS_INIT;
    lo.batch_size = 32;
    lo.seed = 1;
    lo.bucket_window = bucket_window;
    mtft_collate_options co = MTFT_COLLATE_OPTIONS_INIT;
    co.max_len = 256;
    mtft_loader *ld = NULL;
    if (mtft_loader_new(&ld, t, MTFT_SPLIT_TRAIN, &lo) < 0) return -1;
    mtft_batch b;
    mtft_batch_init(&b);
    int64_t idx[32];
    mtft_example_ref refs[32];
    int64_t examples = 0, tokens = 0, slots = 0, batches = 0;
    double t0 = bench_now(), el = 0;
    do {
        int m = mtft_loader_next(ld, idx);
        if (m < 0) return -1;
        if (m == 0) continue;
        for (int i = 0; i < m; i++) {
            refs[i].task = 0;
            refs[i].split = MTFT_SPLIT_TRAIN;
            refs[i].index = idx[i];
        }
        if (mtft_batch_collate(&b, &t, 1, refs, m, &co) < 0) return -1;
        examples += m;
        batches++;
        slots += (int64_t)b.n_rows * b.seq_len;
        for (int r = 0; r < b.n_rows; r++) tokens += b.valid_len[r];
        el = bench_now() - t0;
    } while (el < min_seconds);
    *ex_per_s = (double)examples / el;
    *pad_frac = slots ? 1.0 - (double)tokens / (double)slots : 0.0;
    *n_batches = batches;
    mtft_batch_dispose(&b);
    mtft_loader_free(ld);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data/tasks";
    const char *name = argc > 2 ? argv[2] : "spam_assassin";
    const char *tokdir = argc > 3 ? argv[3] : "data/tokenizer/gpt2";
    const known *k = NULL;
    for (size_t i = 0; i < sizeof k_tasks / sizeof k_tasks[0]; i++)
        if (!strcmp(k_tasks[i].name, name)) k = &k_tasks[i];
    if (!k) {
        fprintf(stderr, "bench_data: unknown task '%s'\n", name);
        return 2;
    }
    char enc[1024], bpe[1024], train[1024], dev[1024], test[1024];
    snprintf(enc, sizeof enc, "%s/encoder.json", tokdir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", tokdir);
    snprintf(train, sizeof train, "%s/%s/train.jsonl", dir, name);
    snprintf(dev, sizeof dev, "%s/%s/dev.jsonl", dir, name);
    snprintf(test, sizeof test, "%s/%s/test.jsonl", dir, name);
    struct stat st;
    if (stat(train, &st) != 0) {
        fprintf(stderr, "bench_data: no data at %s (pass the tasks directory as the first argument)\n", train);
        return 77;
    }
    mtft_log_set_level(MTFT_LOG_WARN);
    mtft_tokenizer *tok = NULL;
    if (mtft_tokenizer_load_gpt2(&tok, enc, bpe) < 0) return fail("tokenizer");

    mtft_task_options o = MTFT_TASK_OPTIONS_INIT;
    o.name = name;
    o.type = k->type;
    o.train_file = train;
    o.dev_file = dev;
    o.test_file = test;
    o.prompt_template = k->tmpl;
    mtft_task *t = NULL;
    if (mtft_task_new(&t, &o) < 0) return fail("task");

    /* 1. tokenize in memory */
    mtft_data_options d = MTFT_DATA_OPTIONS_INIT;
    d.log_progress = 0;
    double t0 = bench_now();
    if (mtft_task_load(t, tok, &d) < 0) return fail("load");
    double t_tok = bench_now() - t0;
    int64_t n = 0, n_tokens = 0;
    for (int s = 0; s < MTFT_SPLIT_COUNT; s++) {
        n += mtft_task_count(t, (mtft_split)s);
        for (int64_t i = 0; i < mtft_task_count(t, (mtft_split)s); i++) {
            mtft_example ex;
            mtft_task_example(t, (mtft_split)s, i, &ex);
            n_tokens += ex.n_ids;
        }
    }

    /* 2. the same into a cache file, then 3. mapped back */
    char cache[] = "/tmp/mtft_bench_data_XXXXXX";
    if (!mkdtemp(cache)) return 1;
    d.cache_dir = cache;
    t0 = bench_now();
    if (mtft_task_load(t, tok, &d) < 0 || mtft_task_cache_hit(t)) return fail("cache write");
    double t_write = bench_now() - t0;
    char cache_file[1024];
    snprintf(cache_file, sizeof cache_file, "%s", mtft_task_cache_path(t));
    t0 = bench_now();
    if (mtft_task_load(t, tok, &d) < 0 || !mtft_task_cache_hit(t)) return fail("cache hit");
    double t_hit = bench_now() - t0;

    /* 4. batches from the mapped cache */
    double eps_plain, pad_plain, eps_bucket, pad_bucket;
    int64_t nb_plain, nb_bucket;
    if (run_batches(t, 0, 1.0, &eps_plain, &pad_plain, &nb_plain) < 0) return fail("batches");
    if (run_batches(t, 8, 1.0, &eps_bucket, &pad_bucket, &nb_bucket) < 0) return fail("batches (bucketed)");

    printf("{\"bench\":\"data\",\"task\":\"%s\",\"type\":\"%s\",\"examples\":%lld,\"tokens\":%lld,"
           "\"tokenize_s\":%.3f,\"tokenize_examples_per_s\":%.0f,\"cache_write_s\":%.3f,\"cache_hit_load_ms\":%.2f,"
           "\"batch_size\":32,\"max_len\":256,\"batch_examples_per_s\":%.0f,\"pad_fraction\":%.3f,"
           "\"batch_examples_per_s_bucketed\":%.0f,\"pad_fraction_bucketed\":%.3f}\n",
           name, mtft_task_type_name(k->type), (long long)n, (long long)n_tokens, t_tok, (double)n / t_tok, t_write,
           1e3 * t_hit, eps_plain, pad_plain, eps_bucket, pad_bucket);

    mtft_task_free(t);
    mtft_tokenizer_free(tok);
    unlink(cache_file);
    rmdir(cache);
    return 0;
}
