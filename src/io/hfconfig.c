/* Hugging Face config.json for GPT-2 and LLaMA-family models. Keys the file
 * does not set (or sets to null) take the defaults of the transformers
 * config class of the model_type (GPT2Config, LlamaConfig, MistralConfig,
 * Qwen2Config). Errors give file:line:col of the offending key. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/core.h"
#include "json.h"
#include "mtft/io.h"

typedef struct cfg_ctx {
    const char *path;
    const char *text;
    size_t len;
    const mtft_json *root;
} cfg_ctx;

/* "path:line:col" of a top-level key (or just "path"). */
static const char *where(const cfg_ctx *c, const char *key, char *buf, size_t n) {
    size_t off = mtft_json__find_key(c->text, c->len, key);
    if (!off) { /* offset 0 is the '{', never a key */
        snprintf(buf, n, "%s", c->path);
        return buf;
    }
    int line, col;
    mtft_json__line_col(c->text, c->len, off, &line, &col);
    snprintf(buf, n, "%s:%d:%d", c->path, line, col);
    return buf;
}

static int type_err(const cfg_ctx *c, const char *key, const char *expected, const mtft_json *got) {
    char w[512];
    return mtft__err(MTFT_EFORMAT, "%s: key '%s': expected %s, got %s", where(c, key, w, sizeof w), key, expected,
                     mtft_json__type_name(got));
}

/* Present and not null. */
static const mtft_json *val(const cfg_ctx *c, const char *key) {
    const mtft_json *j = mtft_json__get(c->root, key);
    return mtft_json__type(j) == MTFT_JSON_NULL ? NULL : j;
}

static int get_int(const cfg_ctx *c, const char *key, int64_t *dst) {
    const mtft_json *j = val(c, key);
    if (!j) return 0;
    if (!mtft_json__int(j, dst)) return type_err(c, key, "an integer", j);
    return 1;
}

/* bos/eos: an integer or a list of integers (the first is kept). */
static int get_token_id(const cfg_ctx *c, const char *key, int64_t *dst) {
    const mtft_json *j = val(c, key);
    if (!j) return 0;
    if (mtft_json__type(j) == MTFT_JSON_ARRAY) {
        if (mtft_json__size(j) == 0) return type_err(c, key, "an integer or a non-empty list of integers", j);
        for (const mtft_json *x = mtft_json__first(j); x; x = mtft_json__next(x))
            if (!mtft_json__int(x, NULL)) return type_err(c, key, "a list of integers", j);
        mtft_json__int(mtft_json__first(j), dst);
        return 1;
    }
    if (!mtft_json__int(j, dst)) return type_err(c, key, "an integer or a list of integers", j);
    return 1;
}

static int get_num(const cfg_ctx *c, const char *key, double *dst) {
    const mtft_json *j = val(c, key);
    if (!j) return 0;
    if (mtft_json__type(j) != MTFT_JSON_NUMBER) return type_err(c, key, "a number", j);
    *dst = mtft_json__number(j);
    return 1;
}

static int get_float(const cfg_ctx *c, const char *key, float *dst) {
    double d = *dst;
    int rc = get_num(c, key, &d);
    if (rc > 0) *dst = (float)d;
    return rc;
}

static int get_bool(const cfg_ctx *c, const char *key, int *dst) {
    const mtft_json *j = val(c, key);
    if (!j) return 0;
    if (mtft_json__type(j) != MTFT_JSON_BOOL) return type_err(c, key, "a boolean (true/false)", j);
    *dst = mtft_json__bool(j);
    return 1;
}

static int copy_str(const cfg_ctx *c, const char *key, const char *s, char *dst, size_t n) {
    if (strlen(s) >= n) {
        char w[512];
        return mtft__err(MTFT_ERANGE, "%s: key '%s': value '%.40s' longer than %zu characters",
                         where(c, key, w, sizeof w), key, s, n - 1);
    }
    memcpy(dst, s, strlen(s) + 1);
    return 1;
}

static int get_str(const cfg_ctx *c, const char *key, char *dst, size_t n) {
    const mtft_json *j = val(c, key);
    if (!j) return 0;
    if (mtft_json__type(j) != MTFT_JSON_STRING) return type_err(c, key, "a string", j);
    return copy_str(c, key, mtft_json__string(j), dst, n);
}

static int range_err(const cfg_ctx *c, const char *key, const char *what) {
    char w[512];
    return mtft__err(MTFT_ERANGE, "%s: key '%s': %s", where(c, key, w, sizeof w), key, what);
}

#define TRY(x)                  \
    do {                        \
        int rc_ = (x);          \
        if (rc_ < 0) return rc_; \
    } while (0)

static int load_gpt2(const cfg_ctx *c, mtft_hf_config *o) {
    o->arch = MTFT_HF_ARCH_GPT2;
    o->vocab_size = 50257;
    o->max_position_embeddings = 1024;
    o->hidden_size = 768;
    o->num_hidden_layers = 12;
    o->num_attention_heads = 12;
    o->intermediate_size = 0; /* n_inner: null means 4 * n_embd */
    snprintf(o->hidden_act, sizeof o->hidden_act, "gelu_new");
    o->resid_pdrop = o->embd_pdrop = o->attn_pdrop = 0.1f;
    o->norm_eps = 1e-5;
    o->bos_token_id = o->eos_token_id = 50256;
    o->tie_word_embeddings = 1;
    o->attention_bias = o->mlp_bias = 1;
    o->rope_theta = 0;
    TRY(get_int(c, "vocab_size", &o->vocab_size));
    TRY(get_int(c, "n_positions", &o->max_position_embeddings));
    TRY(get_int(c, "n_embd", &o->hidden_size));
    TRY(get_int(c, "n_layer", &o->num_hidden_layers));
    TRY(get_int(c, "n_head", &o->num_attention_heads));
    TRY(get_int(c, "n_inner", &o->intermediate_size));
    if (!val(c, "n_inner")) o->intermediate_size = 4 * o->hidden_size;
    TRY(get_str(c, "activation_function", o->hidden_act, sizeof o->hidden_act));
    TRY(get_float(c, "resid_pdrop", &o->resid_pdrop));
    TRY(get_float(c, "embd_pdrop", &o->embd_pdrop));
    TRY(get_float(c, "attn_pdrop", &o->attn_pdrop));
    TRY(get_num(c, "layer_norm_epsilon", &o->norm_eps));
    TRY(get_token_id(c, "bos_token_id", &o->bos_token_id));
    TRY(get_token_id(c, "eos_token_id", &o->eos_token_id));
    TRY(get_token_id(c, "pad_token_id", &o->pad_token_id));
    TRY(get_bool(c, "tie_word_embeddings", &o->tie_word_embeddings));
    o->num_key_value_heads = o->num_attention_heads;
    return MTFT_OK;
}

static int load_llama(const cfg_ctx *c, mtft_hf_config *o) {
    const char *mt = o->model_type;
    int mistral = strcmp(mt, "mistral") == 0, qwen2 = strcmp(mt, "qwen2") == 0;
    o->arch = MTFT_HF_ARCH_LLAMA;
    o->vocab_size = qwen2 ? 151936 : 32000;
    o->hidden_size = 4096;
    o->intermediate_size = mistral ? 14336 : qwen2 ? 22016 : 11008;
    o->num_hidden_layers = 32;
    o->num_attention_heads = 32;
    o->num_key_value_heads = mistral ? 8 : 0; /* 0: = heads, set below */
    snprintf(o->hidden_act, sizeof o->hidden_act, "silu");
    o->max_position_embeddings = mistral ? 4096 * 32 : qwen2 ? 32768 : 2048;
    o->norm_eps = 1e-6;
    o->rope_theta = 10000.0;
    o->tie_word_embeddings = 0;
    o->attention_bias = qwen2 ? 1 : 0;
    o->mlp_bias = 0;
    o->bos_token_id = qwen2 ? -1 : 1;
    o->eos_token_id = qwen2 ? -1 : 2;
    o->sliding_window = mistral ? 4096 : 0;
    TRY(get_int(c, "vocab_size", &o->vocab_size));
    TRY(get_int(c, "hidden_size", &o->hidden_size));
    TRY(get_int(c, "intermediate_size", &o->intermediate_size));
    TRY(get_int(c, "num_hidden_layers", &o->num_hidden_layers));
    TRY(get_int(c, "num_attention_heads", &o->num_attention_heads));
    TRY(get_int(c, "num_key_value_heads", &o->num_key_value_heads));
    if (!val(c, "num_key_value_heads") && !mistral) o->num_key_value_heads = o->num_attention_heads;
    if (mistral && mtft_json__type(mtft_json__get(c->root, "num_key_value_heads")) == MTFT_JSON_NULL)
        o->num_key_value_heads = o->num_attention_heads;
    TRY(get_int(c, "head_dim", &o->head_dim));
    TRY(get_str(c, "hidden_act", o->hidden_act, sizeof o->hidden_act));
    TRY(get_int(c, "max_position_embeddings", &o->max_position_embeddings));
    TRY(get_num(c, "rms_norm_eps", &o->norm_eps));
    TRY(get_num(c, "rope_theta", &o->rope_theta));
    TRY(get_bool(c, "tie_word_embeddings", &o->tie_word_embeddings));
    if (!qwen2) TRY(get_bool(c, "attention_bias", &o->attention_bias));
    if (!qwen2 && !mistral) TRY(get_bool(c, "mlp_bias", &o->mlp_bias));
    TRY(get_float(c, "attention_dropout", &o->attn_pdrop));
    TRY(get_token_id(c, "bos_token_id", &o->bos_token_id));
    TRY(get_token_id(c, "eos_token_id", &o->eos_token_id));
    TRY(get_token_id(c, "pad_token_id", &o->pad_token_id));
    if (mistral) {
        if (mtft_json__type(mtft_json__get(c->root, "sliding_window")) == MTFT_JSON_NULL) o->sliding_window = 0;
        TRY(get_int(c, "sliding_window", &o->sliding_window));
    } else if (qwen2) {
        int use = 0;
        int64_t sw = 4096;
        TRY(get_bool(c, "use_sliding_window", &use));
        TRY(get_int(c, "sliding_window", &sw));
        o->sliding_window = use ? sw : 0;
    }
    const mtft_json *rs = val(c, "rope_scaling");
    if (rs) {
        if (mtft_json__type(rs) != MTFT_JSON_OBJECT) return type_err(c, "rope_scaling", "an object or null", rs);
        const mtft_json *t = mtft_json__get(rs, "rope_type");
        if (!t) t = mtft_json__get(rs, "type");
        if (t) {
            if (mtft_json__type(t) != MTFT_JSON_STRING) return type_err(c, "rope_scaling", "a string rope_type", t);
            TRY(copy_str(c, "rope_scaling", mtft_json__string(t), o->rope_scaling_type, sizeof o->rope_scaling_type));
        }
        const mtft_json *f = mtft_json__get(rs, "factor");
        if (f) {
            if (mtft_json__type(f) != MTFT_JSON_NUMBER) return type_err(c, "rope_scaling", "a numeric factor", f);
            o->rope_scaling_factor = mtft_json__number(f);
        }
    }
    return MTFT_OK;
}

static int validate(const cfg_ctx *c, mtft_hf_config *o) {
    int gpt2 = o->arch == MTFT_HF_ARCH_GPT2;
    struct {
        const char *key;
        int64_t v;
    } pos[] = {
        {"vocab_size", o->vocab_size},
        {gpt2 ? "n_embd" : "hidden_size", o->hidden_size},
        {gpt2 ? "n_inner" : "intermediate_size", o->intermediate_size},
        {gpt2 ? "n_layer" : "num_hidden_layers", o->num_hidden_layers},
        {gpt2 ? "n_head" : "num_attention_heads", o->num_attention_heads},
        {"num_key_value_heads", o->num_key_value_heads},
        {gpt2 ? "n_positions" : "max_position_embeddings", o->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "must be > 0, is %lld", (long long)pos[i].v);
            return range_err(c, pos[i].key, msg);
        }
    const char *hk = gpt2 ? "n_head" : "num_attention_heads";
    if (o->head_dim <= 0) {
        if (val(c, "head_dim")) return range_err(c, "head_dim", "must be > 0");
        if (o->hidden_size % o->num_attention_heads) {
            char msg[160];
            snprintf(msg, sizeof msg, "%lld heads do not divide hidden size %lld", (long long)o->num_attention_heads,
                     (long long)o->hidden_size);
            return range_err(c, hk, msg);
        }
        o->head_dim = o->hidden_size / o->num_attention_heads;
    }
    if (o->num_attention_heads % o->num_key_value_heads) {
        char msg[160];
        snprintf(msg, sizeof msg, "%lld key/value heads do not divide %lld attention heads",
                 (long long)o->num_key_value_heads, (long long)o->num_attention_heads);
        return range_err(c, "num_key_value_heads", msg);
    }
    if (!(o->norm_eps > 0) || !isfinite(o->norm_eps))
        return range_err(c, gpt2 ? "layer_norm_epsilon" : "rms_norm_eps", "must be a finite number > 0");
    if (!gpt2 && (!(o->rope_theta > 0) || !isfinite(o->rope_theta)))
        return range_err(c, "rope_theta", "must be a finite number > 0");
    struct {
        const char *key;
        float p;
    } drops[] = {{gpt2 ? "resid_pdrop" : "attention_dropout", gpt2 ? o->resid_pdrop : o->attn_pdrop},
                 {"embd_pdrop", o->embd_pdrop},
                 {"attn_pdrop", o->attn_pdrop}};
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
        if (!(drops[i].p >= 0 && drops[i].p < 1)) return range_err(c, drops[i].key, "must be in [0, 1)");
    if (o->sliding_window < 0) return range_err(c, "sliding_window", "must be >= 0");
    if (!(o->rope_scaling_factor > 0) || !isfinite(o->rope_scaling_factor))
        return range_err(c, "rope_scaling", "factor must be a finite number > 0");
    return MTFT_OK;
}

int mtft_hf_config_load(mtft_hf_config *out, const char *path) {
    MTFT_CHECK_ARG(out);
    memset(out, 0, sizeof *out);
    MTFT_CHECK_ARG(path);
    char *text = NULL;
    size_t len = 0;
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) return rc;
    size_t eoff = 0;
    mtft_json *root = mtft_json__parse(text, len, &eoff);
    cfg_ctx c = {path, text, len, root};
    if (!root) {
        int line, col;
        mtft_json__line_col(text, len, eoff, &line, &col);
        rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: invalid JSON: syntax error at or just before byte %zu", path, line, col, eoff);
        goto done;
    }
    if (mtft_json__type(root) != MTFT_JSON_OBJECT) {
        rc = mtft__err(MTFT_EFORMAT, "%s: expected a JSON object, got %s", path, mtft_json__type_name(root));
        goto done;
    }
    const mtft_json *mt = mtft_json__get(root, "model_type");
    if (!mt) {
        rc = mtft__err(MTFT_EFORMAT, "%s: key 'model_type': missing (expected a string such as \"gpt2\" or \"llama\")",
                       path);
        goto done;
    }
    if (mtft_json__type(mt) != MTFT_JSON_STRING) {
        rc = type_err(&c, "model_type", "a string", mt);
        goto done;
    }
    if ((rc = copy_str(&c, "model_type", mtft_json__string(mt), out->model_type, sizeof out->model_type)) < 0)
        goto done;
    out->pad_token_id = -1;
    out->rope_scaling_factor = 1.0;
    if (strcmp(out->model_type, "gpt2") == 0) {
        rc = load_gpt2(&c, out);
    } else if (strcmp(out->model_type, "llama") == 0 || strcmp(out->model_type, "mistral") == 0 ||
               strcmp(out->model_type, "qwen2") == 0) {
        rc = load_llama(&c, out);
    } else {
        char w[512];
        rc = mtft__err(MTFT_EUNSUPPORTED,
                       "%s: key 'model_type': '%s' is not supported (supported: gpt2, llama, mistral, qwen2)",
                       where(&c, "model_type", w, sizeof w), out->model_type);
    }
    out->causal = 1;
    if (rc >= 0) rc = get_bool(&c, "mtft_causal", &out->causal);
    if (rc >= 0) rc = validate(&c, out);
done:
    if (rc < 0) memset(out, 0, sizeof *out);
    mtft_json__free(root);
    mtft__free(text);
    return rc < 0 ? rc : MTFT_OK;
}
