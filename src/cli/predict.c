/* `mtft predict CONFIG --checkpoint DIR --task NAME [--in FILE] [--out FILE]`:
 * JSONL in, JSONL out, for classification, regression and tagging tasks.
 * Input records have the task's input field (text tasks) or tokens field
 * (tagging); each output line is the input's line number and the prediction:
 *   {"line": 3, "label": "spam", "probs": {"ham": 0.1, "spam": 0.9}}
 *   {"line": 4, "value": -1.73}
 *   {"line": 5, "tags": ["O", "W", "ADD"]}
 * Each record is encoded by mtft_task_encode_input, the loader's own code
 * path (template, tagging words, checks), so a record gets the ids training
 * gave it; label fields, when present, are checked but not used. Inputs
 * longer than the trainer's max_len are cut as training cuts them: the
 * first max_len tokens, or with truncation "left" the last; tagging words
 * whose first sub-token is cut off get null. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- output ---------------------------------------------------------------------------- */

static void put_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* ---- the command ------------------------------------------------------------------------ */

int cli_cmd_predict(int argc, char **argv) {
    const char *cfg_path = NULL, *ckpt = NULL, *task_name = NULL, *in_path = NULL, *out_path = NULL, *base = NULL, *only = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: mtft predict CONFIG --checkpoint DIR --task NAME [--in FILE] [--out FILE] [--base DIR]\n"
                   "       [--only TASK,...]   (the tasks the checkpoint was trained on, when not all of the config's)\n"
                   "  reads JSONL (stdin by default) with the task's input field (tagging: its tokens field) and\n"
                   "  writes one JSON object per input line: label and probs, value, or tags\n");
            return 0;
        }
        if (a[0] != '-') {
            cfg_path = a;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "mtft predict: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--task")) task_name = v;
        else if (!strcmp(a, "--in")) in_path = v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--base")) base = v;
        else if (!strcmp(a, "--only")) only = v;
        else {
            fprintf(stderr, "mtft predict: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!cfg_path || !ckpt || !task_name) {
        fprintf(stderr, "mtft predict: CONFIG, --checkpoint DIR and --task NAME are required\n");
        return 2;
    }
    cli_config cc;
    if (cli_config_load(&cc, cfg_path) != 0) return 2;
    if (base) snprintf(cc.base_dir, sizeof cc.base_dir, "%s", base);
    const int n_cfg = mtft_config_n_tasks(cc.cfg);
    int sel[256], nt = 0, which = -1;
    for (int k = 0; k < n_cfg && nt < 256; k++) {
        const char *nm = mtft_config_task(cc.cfg, k)->name;
        int take = !only;
        for (const char *q = only; q && *q && !take;) {
            const char *e = strchr(q, ',');
            const size_t l = e ? (size_t)(e - q) : strlen(q);
            take = strlen(nm) == l && !strncmp(nm, q, l);
            q = e ? e + 1 : NULL;
        }
        if (!take) continue;
        if (!strcmp(nm, task_name)) which = nt;
        sel[nt++] = k;
    }
    if (which < 0) {
        fprintf(stderr, "mtft predict: no task '%s' in %s\n", task_name, cfg_path);
        cli_config_free(&cc);
        return 2;
    }
    const mtft_task_options *to = mtft_config_task(cc.cfg, sel[which]);
    if (to->type == MTFT_TASK_GENERATION || to->type == MTFT_TASK_MULTILABEL) {
        fprintf(stderr, "mtft predict: task '%s' is %s; predict handles classification, regression and tagging\n",
                task_name, mtft_task_type_name(to->type));
        cli_config_free(&cc);
        return 2;
    }
    int ret = 0;
    mtft_tokenizer *tok = NULL;
    mtft_model *m = NULL;
    mtft_trainer *tr = NULL;
    mtft_task **tasks = calloc((size_t)(nt > 0 ? nt : 1), sizeof *tasks);
    FILE *fin = stdin, *fout = stdout;
    char *line = NULL;
    size_t lcap = 0;
    mtft_encoded enc;
    mtft_encoded_init(&enc);
    int32_t *pred = NULL;
    float *vals = NULL;
    size_t pred_cap = 0;
    if (!tasks) {
        fprintf(stderr, "mtft predict: out of memory\n");
        ret = 1;
        goto done;
    }
    char p1[CLI_PATH + 32], p2[CLI_PATH + 32];
    snprintf(p1, sizeof p1, "%s/vocab.json", cc.base_dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", cc.base_dir);
    if (mtft_tokenizer_load_hf(&tok, p1, p2) < 0) {
        ret = cli_fail("loading the base tokenizer");
        goto done;
    }
    if (mtft_model_load_hf(&m, cc.base_dir) < 0) {
        ret = cli_fail("loading the base model");
        goto done;
    }
    for (int k = 0; k < nt; k++)
        if (mtft_task_new(&tasks[k], mtft_config_task(cc.cfg, sel[k])) < 0 ||
            mtft_task_load(tasks[k], tok, mtft_config_data(cc.cfg)) < 0) {
            ret = cli_fail("loading a task");
            goto done;
        }
    if (mtft_trainer_new(&tr, m, &cc.topt) < 0) {
        ret = cli_fail("trainer options");
        goto done;
    }
    for (int k = 0; k < nt; k++) {
        /* the head the config gives the task, as `mtft train` built it, so the
         * checkpoint's head shapes match */
        mtft_head_options ho;
        int has_head = mtft_config_task_head_for(cc.cfg, sel[k], tasks[k], &ho);
        if (has_head < 0 || mtft_trainer_add_task(tr, tasks[k], has_head == 1 ? &ho : NULL) < 0) {
            ret = cli_fail("adding a task");
            goto done;
        }
    }
    if (mtft_trainer_load(tr, ckpt) < 0) {
        ret = cli_fail("loading the checkpoint");
        goto done;
    }
    if (in_path && !(fin = fopen(in_path, "r"))) {
        fprintf(stderr, "mtft predict: cannot open '%s'\n", in_path);
        ret = 1;
        goto done;
    }
    if (out_path && !(fout = fopen(out_path, "w"))) {
        fprintf(stderr, "mtft predict: cannot create '%s'\n", out_path);
        ret = 1;
        goto done;
    }
    const mtft_task *task = tasks[which];
    const int L = mtft_task_n_labels(task);
    const int tagging = to->type == MTFT_TASK_TAGGING;
    const int max_len = cc.topt.max_len;
    /* sequence heads write one value per output (class probabilities, regression values) */
    int n_vals = mtft_head_output_dim(mtft_trainer_head(tr, which), m);
    if (n_vals < L) n_vals = L;
    if (n_vals < 1) n_vals = 1;
    if (!tagging && !(vals = malloc(sizeof(float) * (size_t)n_vals))) {
        fprintf(stderr, "mtft predict: out of memory\n");
        ret = 1;
        goto done;
    }
    const char *where = in_path ? in_path : "<stdin>";
    int lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, fin)) >= 0) {
        lineno++;
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\n' || *s == '\r' || !*s) continue;
        if (mtft_task_encode_input(task, tok, line, (size_t)got, &enc) < 0) {
            fprintf(stderr, "mtft predict: %s:%d: %s\n", where, lineno, mtft_error_last()->message);
            ret = 1;
            goto done;
        }
        /* the window training keeps (mtft_batch_collate): first max_len, or last with truncation left */
        int off = 0, n_pass = enc.n_ids;
        if (max_len > 0 && n_pass > max_len) {
            if (cc.topt.truncation == MTFT_TRUNCATE_LEFT) off = n_pass - max_len;
            n_pass = max_len;
        }
        if ((size_t)n_pass > pred_cap) {
            int32_t *np = realloc(pred, sizeof *np * (size_t)n_pass);
            if (!np) {
                fprintf(stderr, "mtft predict: out of memory\n");
                ret = 1;
                goto done;
            }
            pred = np;
            pred_cap = (size_t)n_pass;
        }
        if (mtft_trainer_predict(tr, which, enc.ids + off, n_pass, pred, tagging ? NULL : vals) < 0) {
            ret = cli_fail("predict");
            goto done;
        }
        fprintf(fout, "{\"line\": %d, ", lineno);
        if (to->type == MTFT_TASK_CLASSIFICATION) {
            fputs("\"label\": ", fout);
            put_json_str(fout, mtft_task_label(task, pred[0]));
            fputs(", \"probs\": {", fout);
            for (int l = 0; l < L; l++) {
                if (l) fputs(", ", fout);
                put_json_str(fout, mtft_task_label(task, l));
                fprintf(fout, ": %.6g", (double)vals[l]);
            }
            fputs("}}\n", fout);
        } else if (to->type == MTFT_TASK_REGRESSION) {
            fprintf(fout, "\"value\": %.6g}\n", (double)vals[0]);
        } else {
            fputs("\"tags\": [", fout);
            for (int w = 0; w < enc.n_words; w++) {
                if (w) fputs(", ", fout);
                const int k = enc.word_first[w] - off;
                const int32_t t = k >= 0 && k < n_pass ? pred[k] : -1;
                if (t >= 0 && t < L) put_json_str(fout, mtft_task_label(task, t));
                else fputs("null", fout); /* cut off by max_len */
            }
            fputs("]}\n", fout);
        }
    }
done:
    if (fin && fin != stdin) fclose(fin);
    if (fout && fout != stdout) fclose(fout);
    free(line);
    mtft_encoded_dispose(&enc);
    free(pred);
    free(vals);
    mtft_trainer_free(tr);
    for (int k = 0; tasks && k < nt; k++) mtft_task_free(tasks[k]);
    free(tasks);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    cli_config_free(&cc);
    return ret;
}
