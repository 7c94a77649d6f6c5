/* `mtft predict CONFIG --checkpoint DIR --task NAME [--in FILE] [--out FILE]`:
 * JSONL in, JSONL out, for classification, regression and tagging tasks.
 * Input records have the task's input field (text tasks) or tokens field
 * (tagging); each output line is the input's line number and the prediction:
 *   {"line": 3, "label": "spam", "probs": {"ham": 0.1, "spam": 0.9}}
 *   {"line": 4, "value": -1.73}
 *   {"line": 5, "tags": ["O", "W", "ADD"]} */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- a minimal JSON reader for one flat object --------------------------------------- */

static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return s;
}

/* Parse a JSON string at s (at the opening quote) into out (cap bytes, UTF-8).
 * Returns the position after the closing quote, or NULL. */
static const char *parse_str(const char *s, char *out, size_t cap) {
    if (*s != '"') return NULL;
    s++;
    size_t n = 0;
    while (*s && *s != '"') {
        unsigned c = (unsigned char)*s++;
        if (c == '\\') {
            char e = *s++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case '/': c = '/'; break;
            case '\\': c = '\\'; break;
            case '"': c = '"'; break;
            case 'u': {
                unsigned cp = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *s++;
                    cp <<= 4;
                    if (h >= '0' && h <= '9') cp |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f') cp |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F') cp |= (unsigned)(h - 'A' + 10);
                    else return NULL;
                }
                if (cp >= 0xD800 && cp < 0xDC00 && s[0] == '\\' && s[1] == 'u') {
                    unsigned lo = (unsigned)strtoul((char[5]){s[2], s[3], s[4], s[5], 0}, NULL, 16);
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        s += 6;
                    }
                }
                char u[4];
                int k = 0;
                if (cp < 0x80) u[k++] = (char)cp;
                else if (cp < 0x800) u[k++] = (char)(0xC0 | (cp >> 6)), u[k++] = (char)(0x80 | (cp & 0x3F));
                else if (cp < 0x10000)
                    u[k++] = (char)(0xE0 | (cp >> 12)), u[k++] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                    u[k++] = (char)(0x80 | (cp & 0x3F));
                else
                    u[k++] = (char)(0xF0 | (cp >> 18)), u[k++] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                    u[k++] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[k++] = (char)(0x80 | (cp & 0x3F));
                for (int i = 0; i < k; i++)
                    if (n + 1 < cap) out[n++] = u[i];
                continue;
            }
            default: return NULL;
            }
        }
        if (n + 1 < cap) out[n++] = (char)c;
    }
    if (*s != '"') return NULL;
    out[n] = 0;
    return s + 1;
}

/* The value of top-level key `key` in a flat JSON object line, or NULL. */
static const char *find_key(const char *line, const char *key) {
    char buf[256];
    const char *s = skip_ws(line);
    if (*s != '{') return NULL;
    s++;
    while (*s) {
        s = skip_ws(s);
        if (*s == '}') return NULL;
        if (*s == ',') {
            s++;
            continue;
        }
        const char *after = parse_str(s, buf, sizeof buf);
        if (!after) return NULL;
        s = skip_ws(after);
        if (*s != ':') return NULL;
        s = skip_ws(s + 1);
        if (!strcmp(buf, key)) return s;
        /* skip the value: a string, an array of strings, or a scalar */
        if (*s == '"') {
            static char junk[1 << 16];
            s = parse_str(s, junk, sizeof junk);
            if (!s) return NULL;
        } else if (*s == '[') {
            int depth = 0, in_str = 0;
            for (; *s; s++) {
                if (in_str) {
                    if (*s == '\\' && s[1]) s++;
                    else if (*s == '"') in_str = 0;
                } else if (*s == '"') in_str = 1;
                else if (*s == '[') depth++;
                else if (*s == ']' && --depth == 0) {
                    s++;
                    break;
                }
            }
        } else {
            while (*s && *s != ',' && *s != '}') s++;
        }
    }
    return NULL;
}

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

/* Render a prompt template whose only placeholder is {field}; "{{" and "}}"
 * are literal braces. Returns 0, or -1 naming another placeholder. */
static int render(const char *tmpl, const char *field, const char *value, char *out, size_t cap) {
    size_t n = 0, fl = strlen(field), vl = strlen(value);
    for (const char *s = tmpl; *s;) {
        if ((s[0] == '{' && s[1] == '{') || (s[0] == '}' && s[1] == '}')) {
            if (n + 1 < cap) out[n++] = s[0];
            s += 2;
        } else if (s[0] == '{') {
            const char *e = strchr(s, '}');
            if (!e || (size_t)(e - s - 1) != fl || strncmp(s + 1, field, fl) != 0) {
                fprintf(stderr, "mtft predict: template position %d: placeholder '%.*s' (predict fills only {%s})\n",
                        (int)(s - tmpl) + 1, e ? (int)(e - s + 1) : 1, s, field);
                return -1;
            }
            for (size_t i = 0; i < vl && n + 1 < cap; i++) out[n++] = value[i];
            s = e + 1;
        } else {
            if (n + 1 < cap) out[n++] = *s;
            s++;
        }
    }
    out[n] = 0;
    return 0;
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
    char *text = malloc(1 << 20);
    char *prompt = malloc(1 << 20);
    int32_t *ids = malloc(sizeof(int32_t) << 16);
    int32_t *pred = malloc(sizeof(int32_t) << 16);
    float *vals = malloc(sizeof(float) << 20);
    int *first = malloc(sizeof(int) << 16);
    if (!tasks || !text || !prompt || !ids || !pred || !vals || !first) {
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
    const char *in_field = to->type == MTFT_TASK_TAGGING ? (to->tokens_field ? to->tokens_field : "tokens")
                                                         : (to->input_field ? to->input_field : "text");
    int lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, fin)) >= 0) {
        lineno++;
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\n' || *s == '\r' || !*s) continue;
        const char *v = find_key(line, in_field);
        const char *where = in_path ? in_path : "<stdin>";
        if (!v) {
            fprintf(stderr, "mtft predict: %s:%d: no field '%s'\n", where, lineno, in_field);
            ret = 1;
            goto done;
        }
        size_t n_ids = 0;
        int n_words = 0;
        if (to->type == MTFT_TASK_TAGGING) {
            if (*v != '[') {
                fprintf(stderr, "mtft predict: %s:%d: field '%s' must be a list of words\n", where, lineno, in_field);
                ret = 1;
                goto done;
            }
            v = skip_ws(v + 1);
            while (*v && *v != ']') {
                const char *after = parse_str(v, text + 1, (1 << 20) - 1);
                if (!after) {
                    fprintf(stderr, "mtft predict: %s:%d: bad string in '%s'\n", where, lineno, in_field);
                    ret = 1;
                    goto done;
                }
                text[0] = ' ';
                const char *w = n_words ? text : text + 1;
                size_t nw = 0;
                if (n_words >= (1 << 16) || n_ids >= (1 << 16)) break;
                mtft_tokenizer_encode(tok, w, strlen(w), ids + n_ids, ((size_t)1 << 16) - n_ids, &nw);
                if (n_ids + nw > ((size_t)1 << 16)) break;
                first[n_words++] = (int)n_ids;
                n_ids += nw;
                v = skip_ws(after);
                if (*v == ',') v = skip_ws(v + 1);
            }
        } else {
            if (!parse_str(v, text, 1 << 20)) {
                fprintf(stderr, "mtft predict: %s:%d: field '%s' must be a string\n", where, lineno, in_field);
                ret = 1;
                goto done;
            }
            const char *src = text;
            if (to->prompt_template) {
                if (render(to->prompt_template, in_field, text, prompt, 1 << 20) != 0) {
                    ret = 2;
                    goto done;
                }
                src = prompt;
            }
            if (mtft_tokenizer_encode(tok, src, strlen(src), ids, (size_t)1 << 16, &n_ids) < 0) n_ids = 1 << 16;
        }
        if (n_ids == 0) {
            fprintf(stderr, "mtft predict: %s:%d: empty input\n", where, lineno);
            ret = 1;
            goto done;
        }
        if (mtft_trainer_predict(tr, which, ids, (int)n_ids, pred, vals) < 0) {
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
            for (int w = 0; w < n_words; w++) {
                if (w) fputs(", ", fout);
                const int32_t t = pred[first[w]];
                if (t >= 0 && t < L) put_json_str(fout, mtft_task_label(task, t));
                else fputs("null", fout); /* past max_len */
            }
            fputs("]}\n", fout);
        }
    }
done:
    if (fin && fin != stdin) fclose(fin);
    if (fout && fout != stdout) fclose(fout);
    free(line);
    free(text);
    free(prompt);
    free(ids);
    free(pred);
    free(vals);
    free(first);
    mtft_trainer_free(tr);
    for (int k = 0; tasks && k < nt; k++) mtft_task_free(tasks[k]);
    free(tasks);
    mtft_model_free(m);
    mtft_tokenizer_free(tok);
    cli_config_free(&cc);
    return ret;
}
