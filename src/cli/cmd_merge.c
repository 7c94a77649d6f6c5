/* `mtft merge CONFIG [--output PATH] [--lora-rank R]`: merge task models or
 * task adapters as a mergekit-style YAML config says (docs/merge.md). A
 * client of the public API only (mtft/merge.h).
 *
 * Exit codes as the rest of the command: 0 success, 1 runtime failure
 * (I/O, numerics), 2 usage or config error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtft/merge.h"

int cli_cmd_merge(int argc, char **argv);

static void merge_usage(FILE *f) {
    fprintf(f, "usage: mtft merge CONFIG [--output PATH] [--lora-rank R]\n"
               "  merge full finetuned checkpoints and/or PEFT LoRA adapters into one model as the\n"
               "  YAML config says (merge_method: linear, task_arithmetic, ties, dare_linear, dare_ties,\n"
               "  breadcrumbs, pcb; see docs/merge.md)\n"
               "  --output PATH    override the config's output (a directory, or a .safetensors file)\n"
               "  --lora-rank R    write a rank-R PEFT adapter (adapters only) instead of full weights\n");
}

static int merge_fail(const char *what) {
    const mtft_error *e = mtft_error_last();
    fprintf(stderr, "mtft merge: %s: %s\n", what, e->message[0] ? e->message : mtft_status_str(e->code));
    return e->code == MTFT_EINVAL || e->code == MTFT_ERANGE || e->code == MTFT_ENOTFOUND ||
                   e->code == MTFT_EFORMAT || e->code == MTFT_ESHAPE || e->code == MTFT_EUNSUPPORTED ||
                   e->code == MTFT_ESTATE
               ? 2
               : 1;
}

int cli_cmd_merge(int argc, char **argv) {
    const char *config = NULL, *output = NULL;
    int rank = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            merge_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--output") || !strcmp(a, "--lora-rank")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mtft merge: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (a[2] == 'o') {
                output = v;
            } else {
                char *end = NULL;
                long r = strtol(v, &end, 10);
                if (!end || *end || r < 0 || r > 1000000) {
                    fprintf(stderr, "mtft merge: --lora-rank needs an integer >= 0, got '%s'\n", v);
                    return 2;
                }
                rank = (int)r;
            }
            continue;
        }
        if (a[0] == '-') {
            fprintf(stderr, "mtft merge: unknown option '%s'\n", a);
            merge_usage(stderr);
            return 2;
        }
        if (config) {
            fprintf(stderr, "mtft merge: one CONFIG only ('%s' and '%s')\n", config, a);
            return 2;
        }
        config = a;
    }
    if (!config) {
        merge_usage(stderr);
        return 2;
    }
    mtft_merger *m = NULL;
    const char *cfg_out = NULL;
    int cfg_rank = 0;
    if (mtft_merger_from_yaml(&m, config, &cfg_out, &cfg_rank) < 0) return merge_fail("config");
    if (!output) output = cfg_out;
    if (rank < 0) rank = cfg_rank;
    printf("merge: %d input(s), %d base tensor(s) -> %s%s\n", mtft_merger_n_models(m), mtft_merger_n_tensors(m),
           output, rank > 0 ? " (LoRA)" : "");
    int rc = rank > 0 ? mtft_merger_save_lora(m, output, rank) : mtft_merger_save(m, output);
    if (rc < 0) {
        int ex = merge_fail("merging");
        mtft_merger_free(m);
        return ex;
    }
    if (rank > 0) printf("merge: wrote a rank-%d PEFT adapter to %s\n", rank, output);
    else printf("merge: wrote the merged weights to %s\n", output);
    mtft_merger_free(m);
    return 0;
}
