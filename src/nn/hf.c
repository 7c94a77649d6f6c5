/* Hugging Face checkpoints: config.json <-> mtft_model_config, and
 * model.safetensors <-> the base parameter group (through mtft/io.h). */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mtft/io.h"
#include "nn_impl.h"

static int to_int(int64_t v, const char *key, int *out) {
    if (v <= 0 || v > INT_MAX) return mtft__err(MTFT_ERANGE, "hf config: %s = %lld outside 1..%d", key, (long long)v, INT_MAX);
    *out = (int)v;
    return MTFT_OK;
}

int mtft_model_config_from_hf(mtft_model_config *cfg, const mtft_hf_config *hf) {
    MTFT_CHECK_ARG(cfg && hf);
    mtft_model_config c = MTFT_MODEL_CONFIG_INIT;
    int rc = MTFT_OK;
    if (hf->arch == MTFT_HF_ARCH_GPT2) {
        c.arch = MTFT_ARCH_GPT2;
        if (strcmp(hf->hidden_act, "gelu_new") != 0 && strcmp(hf->hidden_act, "gelu_pytorch_tanh") != 0)
            return mtft__err(MTFT_EUNSUPPORTED, "hf config: gpt2 activation_function '%s' (only gelu_new)",
                             hf->hidden_act);
        c.embd_pdrop = hf->embd_pdrop;
        c.resid_pdrop = hf->resid_pdrop;
    } else if (hf->arch == MTFT_HF_ARCH_LLAMA) {
        c.arch = MTFT_ARCH_LLAMA;
        if (strcmp(hf->hidden_act, "silu") != 0)
            return mtft__err(MTFT_EUNSUPPORTED, "hf config: %s hidden_act '%s' (only silu)", hf->model_type,
                             hf->hidden_act);
        c.attn_bias = hf->attention_bias ? 1 : 0; /* q/k/v biases (Qwen2) */
        if (hf->mlp_bias) return mtft__err(MTFT_EUNSUPPORTED, "hf config: %s mlp_bias is not supported", hf->model_type);
        if (hf->rope_scaling_type[0] && strcmp(hf->rope_scaling_type, "default") != 0)
            return mtft__err(MTFT_EUNSUPPORTED, "hf config: rope_scaling type '%s' is not supported",
                             hf->rope_scaling_type);
        c.embd_pdrop = 0.0f;
        c.resid_pdrop = 0.0f;
    } else {
        return mtft__err(MTFT_EUNSUPPORTED, "hf config: model_type '%s' is not supported", hf->model_type);
    }
    if (rc == MTFT_OK) rc = to_int(hf->vocab_size, "vocab_size", &c.vocab_size);
    if (rc == MTFT_OK) rc = to_int(hf->max_position_embeddings, "max_position_embeddings", &c.n_ctx);
    if (rc == MTFT_OK) rc = to_int(hf->hidden_size, "hidden_size", &c.n_embd);
    if (rc == MTFT_OK) rc = to_int(hf->num_hidden_layers, "num_hidden_layers", &c.n_layer);
    if (rc == MTFT_OK) rc = to_int(hf->num_attention_heads, "num_attention_heads", &c.n_head);
    if (rc == MTFT_OK) rc = to_int(hf->num_key_value_heads, "num_key_value_heads", &c.n_kv_head);
    if (rc == MTFT_OK) rc = to_int(hf->intermediate_size, "intermediate_size", &c.n_ff);
    if (rc < 0) return rc;
    if (hf->head_dim > 0 && hf->head_dim * hf->num_attention_heads != hf->hidden_size)
        return mtft__err(MTFT_EUNSUPPORTED, "hf config: head_dim %lld != hidden_size %lld / heads %lld",
                         (long long)hf->head_dim, (long long)hf->hidden_size, (long long)hf->num_attention_heads);
    if (hf->sliding_window > 0 && hf->sliding_window < c.n_ctx) c.n_ctx = (int)hf->sliding_window;
    c.norm_eps = (float)hf->norm_eps;
    c.rope_theta = c.arch == MTFT_ARCH_LLAMA ? (float)hf->rope_theta : 10000.0f;
    c.tie_embeddings = hf->tie_word_embeddings ? 1 : 0;
    c.causal = hf->causal ? 1 : 0;
    rc = mtft_model_config_validate(&c);
    if (rc < 0) {
        mtft__err_prefix("hf config (%s)", hf->model_type);
        return rc;
    }
    *cfg = c;
    return MTFT_OK;
}

static int join(char *buf, size_t n, const char *dir, const char *file) {
    int k = snprintf(buf, n, "%s/%s", dir, file);
    if (k < 0 || (size_t)k >= n) return mtft__err(MTFT_EINVAL, "path too long: '%s/%s'", dir, file);
    return MTFT_OK;
}

/* The weights: dir/model.safetensors, or HF's shards
 * dir/model-00001-of-0000N.safetensors ... (opened in name order). */
typedef struct shards {
    mtft_safetensors **st;
    int n;
} shards;

static void shards_close(shards *sh) {
    for (int i = 0; i < sh->n; i++) mtft_safetensors_close(sh->st[i]);
    mtft__free(sh->st);
    sh->st = NULL;
    sh->n = 0;
}

static int is_shard(const char *s) {
    int a = 0, b = 0, k = -1;
    return sscanf(s, "model-%d-of-%d.safetensors%n", &a, &b, &k) == 2 && k == (int)strlen(s) && a >= 1 && a <= b;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int shards_open(shards *sh, const char *dir) {
    char path[4096];
    memset(sh, 0, sizeof *sh);
    int rc = join(path, sizeof path, dir, "model.safetensors");
    if (rc < 0) return rc;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        sh->st = mtft__calloc(1, sizeof *sh->st);
        if (!sh->st) return MTFT_ENOMEM;
        rc = mtft_safetensors_open(&sh->st[0], path);
        if (rc == MTFT_OK) sh->n = 1;
        return rc;
    }
    DIR *d = opendir(dir);
    if (!d) return mtft__err(MTFT_EIO, "cannot open directory '%s'", dir);
    char **names = NULL;
    int n = 0, cap = 0;
    rc = MTFT_OK;
    for (struct dirent *e; rc == MTFT_OK && (e = readdir(d)) != NULL;) {
        if (!is_shard(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            char **nn = mtft__realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) rc = MTFT_ENOMEM;
            else names = nn;
        }
        if (rc == MTFT_OK && !(names[n++] = mtft__strdup(e->d_name))) rc = MTFT_ENOMEM;
    }
    closedir(d);
    if (rc == MTFT_OK && n == 0)
        rc = mtft__err(MTFT_ENOTFOUND, "no model.safetensors nor model-*-of-*.safetensors shards in '%s'", dir);
    if (rc == MTFT_OK) {
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        sh->st = mtft__calloc((size_t)n, sizeof *sh->st);
        if (!sh->st) rc = MTFT_ENOMEM;
    }
    for (int i = 0; rc == MTFT_OK && i < n; i++) {
        rc = join(path, sizeof path, dir, names[i]);
        if (rc == MTFT_OK) rc = mtft_safetensors_open(&sh->st[i], path);
        if (rc == MTFT_OK) sh->n = i + 1;
    }
    for (int i = 0; i < n; i++) mtft__free(names[i]);
    mtft__free(names);
    if (rc < 0) shards_close(sh);
    return rc;
}

/* The shard holding `name`, or NULL (no error set). */
static const mtft_safetensors *locate(const shards *sh, const char *name) {
    for (int i = 0; i < sh->n; i++)
        if (mtft_safetensors_find(sh->st[i], name) >= 0) return sh->st[i];
    mtft_error_clear(); /* probing is not an error */
    return NULL;
}

/* Read every base tensor. GPT-2 names may carry "transformer." (as
 * GPT2LMHeadModel saves them), except lm_head.weight. Extra file tensors
 * (GPT-2's attn.bias masks, a tied lm_head.weight) are ignored. */
static int load_weights(mtft_model *m, const shards *sh, const char *dir) {
    const char *prefix = "";
    if (m->cfg.arch == MTFT_ARCH_GPT2 && !locate(sh, "wte.weight") && locate(sh, "transformer.wte.weight"))
        prefix = "transformer.";
    int n = mtft_param_group_count(m->base);
    for (int i = 0; i < n; i++) {
        mtft_tensor *t = mtft_param_group_tensor(m->base, i);
        char name[128];
        int is_head = strcmp(t->name, "lm_head.weight") == 0;
        snprintf(name, sizeof name, "%s%s", is_head ? "" : prefix, t->name);
        const mtft_safetensors *st = locate(sh, name);
        if (!st) {
            char shp[64];
            return mtft__err(MTFT_ENOTFOUND, "%s: no tensor '%s' (expected shape %s) in %s", dir, name,
                             mtft__shape_str(t, shp, sizeof shp),
                             sh->n == 1 ? mtft_safetensors_path(sh->st[0]) : "the model-*-of-* shards");
        }
        /* io's message names the file, the tensor and both shapes */
        int rc = mtft_safetensors_read_f32(st, name, t->data, t->ndim, t->ne);
        if (rc < 0) return rc;
    }
    return MTFT_OK;
}

int mtft_model_load_hf(mtft_model **out, const char *dir) {
    MTFT_CHECK_ARG(out && dir);
    *out = NULL;
    char path[4096];
    int rc = join(path, sizeof path, dir, "config.json");
    if (rc < 0) return rc;
    mtft_hf_config hf;
    rc = mtft_hf_config_load(&hf, path);
    if (rc < 0) return rc;
    mtft_model_config cfg;
    rc = mtft_model_config_from_hf(&cfg, &hf);
    if (rc < 0) {
        mtft__err_prefix("%s", path);
        return rc;
    }
    mtft_model *m = NULL;
    rc = mtft_nn__model_alloc(&m, &cfg);
    if (rc < 0) return rc;
    shards sh;
    rc = shards_open(&sh, dir);
    if (rc == MTFT_OK) rc = load_weights(m, &sh, dir);
    shards_close(&sh);
    if (rc < 0) {
        mtft_model_free(m);
        return rc;
    }
    *out = m;
    return MTFT_OK;
}

static int write_config(const mtft_model *m, const char *path) {
    const mtft_model_config *c = &m->cfg;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return mtft__err(MTFT_EIO, "cannot write '%s'", tmp);
    /* an encoder (bidirectional) says so in a key of its own: HF configs have none */
    if (!c->causal) fputs("{\n  \"mtft_causal\": false,\n", f);
    else fputs("{\n", f);
    if (c->arch == MTFT_ARCH_GPT2) {
        fprintf(f,
                "  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                "  \"vocab_size\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n  \"n_embd\": %d,\n"
                "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_inner\": %d,\n  \"layer_norm_epsilon\": %.9g,\n"
                "  \"activation_function\": \"gelu_new\",\n  \"embd_pdrop\": %.9g,\n  \"resid_pdrop\": %.9g,\n"
                "  \"attn_pdrop\": 0.0,\n  \"tie_word_embeddings\": %s\n}\n",
                c->vocab_size, c->n_ctx, c->n_ctx, c->n_embd, c->n_layer, c->n_head, c->n_ff, (double)c->norm_eps,
                (double)c->embd_pdrop, (double)c->resid_pdrop, c->tie_embeddings ? "true" : "false");
    } else {
        fprintf(f,
                "  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"hidden_size\": %d,\n"
                "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
                "  \"num_key_value_heads\": %d,\n  \"rms_norm_eps\": %.9g,\n  \"rope_theta\": %.9g,\n"
                "  \"hidden_act\": \"silu\",\n  \"attention_bias\": %s,\n  \"tie_word_embeddings\": %s\n}\n",
                c->vocab_size, c->n_ctx, c->n_embd, c->n_ff, c->n_layer, c->n_head, c->n_kv_head,
                (double)c->norm_eps, (double)c->rope_theta, c->attn_bias ? "true" : "false",
                c->tie_embeddings ? "true" : "false");
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return mtft__err(MTFT_EIO, "error writing '%s'", tmp);
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return mtft__err(MTFT_EIO, "cannot rename '%s' to '%s'", tmp, path);
    }
    return MTFT_OK;
}

int mtft_model_save_hf(mtft_model *m, const char *dir) {
    MTFT_CHECK_ARG(m && dir);
    char path[4096];
    int n = mtft_param_group_count(m->base);
    const char **names = mtft__malloc((size_t)n * sizeof *names);
    mtft_tensor **ts = mtft__malloc((size_t)n * sizeof *ts);
    int rc = names && ts ? MTFT_OK : MTFT_ENOMEM;
    for (int i = 0; rc == MTFT_OK && i < n; i++) {
        ts[i] = mtft_param_group_tensor(m->base, i);
        names[i] = ts[i]->name;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if (rc == MTFT_OK) rc = join(path, sizeof path, dir, "model.safetensors");
    if (rc == MTFT_OK) rc = mtft_safetensors_save(path, n, names, ts, meta);
    if (rc == MTFT_OK) rc = join(path, sizeof path, dir, "config.json");
    if (rc == MTFT_OK) rc = write_config(m, path);
    mtft__free(names);
    mtft__free(ts);
    return rc;
}
