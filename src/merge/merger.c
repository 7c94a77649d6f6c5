/* The merger object: inputs (base, full checkpoints, PEFT LoRA adapters),
 * per-model / per-tensor parameters, task vectors, and the outputs (full
 * weights, a rank-r LoRA, or a parameter group in memory). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic.h"
#include "io/json.h"
#include "merger_impl.h"
#include "peft/lora_shared.h" /* peft sits below merge */
#include "mtft/io.h"

/* ---- small helpers ------------------------------------------------------------------ */

uint64_t mtft_merge__fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int glob(const char *p, const char *s) {
    for (;;) {
        if (*p == '\0') return *s == '\0';
        if (*p == '*') {
            while (*p == '*') p++;
            if (*p == '\0') return 1;
            for (; *s; s++)
                if (glob(p, s)) return 1;
            return 0;
        }
        if (*s == '\0') return 0;
        if (*p != '?' && *p != *s) return 0;
        p++;
        s++;
    }
}

int mtft_merge__match(const char *pattern, const char *name) {
    if (!pattern || !*pattern) return 1;
    if (strpbrk(pattern, "*?")) return glob(pattern, name);
    return strstr(name, pattern) != NULL;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *s = mtft__malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, file);
    return s;
}

static const char *shape_str(int nd, const int64_t *sh, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)sh[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* Index of `name` in st, also trying it with / without a "transformer."
 * prefix; -1 (no error left set) when absent. */
int mtft_merge__find(const mtft_safetensors *st, const char *name) {
    int n = mtft_safetensors_count(st);
    for (int i = 0; i < n; i++)
        if (!strcmp(mtft_safetensors_name(st, i), name)) return i;
    const char *pre = "transformer.";
    size_t pl = strlen(pre);
    for (int i = 0; i < n; i++) {
        const char *s = mtft_safetensors_name(st, i);
        if (!strncmp(name, pre, pl) && !strcmp(s, name + pl)) return i;
        if (!strncmp(s, pre, pl) && !strcmp(s + pl, name)) return i;
    }
    return -1;
}

/* A .safetensors path, or dir/model.safetensors. */
static int open_st(const char *path, const char *what, mtft_safetensors **st, char **dir) {
    char *file = NULL;
    *dir = NULL;
    if (is_dir(path)) {
        file = join(path, "model.safetensors");
        *dir = mtft__strdup(path);
        if (!file || !*dir) {
            mtft__free(file);
            mtft__free(*dir);
            *dir = NULL;
            return mtft__err(MTFT_ENOMEM, "merge: out of memory");
        }
    } else {
        file = mtft__strdup(path);
        if (!file) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    }
    int rc = mtft_safetensors_open(st, file);
    if (rc < 0) mtft__err_prefix("merge %s '%s'", what, path);
    mtft__free(file);
    if (rc < 0) {
        mtft__free(*dir);
        *dir = NULL;
    }
    return rc;
}

/* ---- life cycle ---------------------------------------------------------------------- */

int mtft_merger_new(mtft_merger **out, const mtft_merge_options *o) {
    MTFT_CHECK_ARG(out);
    *out = NULL;
    mtft_merge_options d = MTFT_MERGE_OPTIONS_INIT;
    if (!o) o = &d;
    if (o->version != MTFT_MERGE_OPTIONS_VERSION)
        return mtft__err(MTFT_EINVAL, "merge options: version %d, expected %d", o->version, MTFT_MERGE_OPTIONS_VERSION);
    if ((int)o->method < 0 || (int)o->method > MTFT_MERGE_PCB)
        return mtft__err(MTFT_EINVAL, "merge options: unknown method %d", (int)o->method);
    if (!isfinite(o->lambda)) return mtft__err(MTFT_ERANGE, "merge options: lambda must be finite");
    if (o->normalize < -1 || o->normalize > 1)
        return mtft__err(MTFT_ERANGE, "merge options: normalize must be -1, 0 or 1 (got %d)", o->normalize);
    mtft_merger *m = mtft__calloc(1, sizeof *m);
    if (!m) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    m->o = *o;
    if (o->base_name) {
        m->base_name = mtft__strdup(o->base_name);
        if (!m->base_name) {
            mtft__free(m);
            return mtft__err(MTFT_ENOMEM, "merge: out of memory");
        }
    }
    m->o.base_name = m->base_name;
    *out = m;
    return MTFT_OK;
}

void mtft_merger_free(mtft_merger *m) {
    if (!m) return;
    mtft_safetensors_close(m->base);
    mtft__free(m->base_path);
    mtft__free(m->base_dir);
    for (int i = 0; i < m->n_in; i++) {
        merge_input *in = &m->in[i];
        mtft_safetensors_close(in->st);
        mtft__free(in->path);
        mtft__free(in->dir);
        mtft__free(in->base_model);
        for (int j = 0; j < in->n_pairs; j++) mtft__free(in->pairs[j].module);
        mtft__free(in->pairs);
    }
    mtft__free(m->in);
    for (int i = 0; i < m->n_set; i++) mtft__free(m->set[i].pattern);
    mtft__free(m->set);
    mtft__free(m->base_name);
    mtft__free(m->yaml_output);
    mtft__free(m);
}

int mtft_merger_set_base(mtft_merger *m, const char *path) {
    MTFT_CHECK_ARG(m && path);
    if (m->base) return mtft__err(MTFT_ESTATE, "merge: the base is already set ('%s')", m->base_path);
    char *dir = NULL;
    int rc = open_st(path, "base", &m->base, &dir);
    if (rc < 0) return rc;
    m->base_dir = dir;
    m->base_path = mtft__strdup(path);
    if (!m->base_path) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    /* fingerprint */
    const char *fp = mtft_safetensors_metadata(m->base, "mtft.fingerprint");
    if (fp) {
        snprintf(m->fingerprint, sizeof m->fingerprint, "%s", fp);
    } else {
        uint64_t h = MTFT_MERGE_FNV_INIT;
        for (int i = 0; i < mtft_safetensors_count(m->base); i++) {
            const char *nm = mtft_safetensors_name(m->base, i);
            int nd = 0;
            int64_t sh[MTFT_SAFETENSORS_MAX_DIMS];
            mtft_safetensors_info(m->base, i, NULL, &nd, sh);
            size_t nb = 0;
            const void *data = mtft_safetensors_data(m->base, i, &nb);
            h = mtft_merge__fnv1a(h, nm, strlen(nm) + 1);
            h = mtft_merge__fnv1a(h, sh, (size_t)nd * sizeof sh[0]);
            if (data) h = mtft_merge__fnv1a(h, data, nb);
        }
        snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx", (unsigned long long)h);
    }
    return MTFT_OK;
}

static merge_input *new_input(mtft_merger *m, const char *path, float weight) {
    if (m->n_in == m->cap_in) {
        int cap = m->cap_in ? 2 * m->cap_in : 4;
        merge_input *n2 = mtft__realloc(m->in, (size_t)cap * sizeof *n2);
        if (!n2) return NULL;
        m->in = n2;
        m->cap_in = cap;
    }
    merge_input *in = &m->in[m->n_in];
    memset(in, 0, sizeof *in);
    in->path = mtft__strdup(path);
    if (!in->path) return NULL;
    m->n_in++;
    if (mtft_merger_set_param(m, m->n_in - 1, NULL, MTFT_MERGE_P_WEIGHT, weight) < 0) {
        m->n_in--;
        mtft__free(in->path);
        return NULL;
    }
    return in;
}

int mtft_merger_add_model(mtft_merger *m, const char *path, float weight) {
    MTFT_CHECK_ARG(m && path);
    if (!isfinite(weight)) return mtft__err(MTFT_ERANGE, "merge: model '%s': weight must be finite", path);
    mtft_safetensors *st = NULL;
    char *dir = NULL;
    int rc = open_st(path, "model", &st, &dir);
    if (rc < 0) return rc;
    merge_input *in = new_input(m, path, weight);
    if (!in) {
        mtft_safetensors_close(st);
        mtft__free(dir);
        return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    }
    in->st = st;
    in->dir = dir;
    return m->n_in - 1;
}

/* ---- adapters ---------------------------------------------------------------------------- */

static int read_adapter_config(merge_input *in, const char *dir) {
    char *path = join(dir, "adapter_config.json");
    if (!path) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    char *text = NULL;
    size_t len = 0;
    int rc = mtft_io__read_file(path, &text, &len);
    if (rc < 0) {
        mtft__free(path);
        return rc;
    }
    size_t eoff = 0;
    mtft_json *cfg = mtft_json__parse(text, len, &eoff);
    int line = 0, col = 0;
    if (!cfg) {
        mtft_json__line_col(text, len, eoff, &line, &col);
        rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: JSON syntax error", path, line, col);
        goto done;
    }
#define AT(key) (mtft_json__line_col(text, len, mtft_json__find_key(text, len, key), &line, &col), path), line, col
    const char *pt = mtft_json__string(mtft_json__get(cfg, "peft_type"));
    if (pt && strcmp(pt, "LORA") != 0) {
        rc = mtft__err(MTFT_EUNSUPPORTED, "%s:%d:%d: peft_type is '%s'; only LORA adapters merge", AT("peft_type"), pt);
        goto done;
    }
    int64_t r = 0;
    if (!mtft_json__int(mtft_json__get(cfg, "r"), &r) || r < 1 || r > (1 << 20)) {
        rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: r must be a positive integer", AT("r"));
        goto done;
    }
    mtft_json *a = mtft_json__get(cfg, "lora_alpha");
    double alpha = (double)r;
    if (a) {
        if (mtft_json__type(a) != MTFT_JSON_NUMBER) {
            rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: lora_alpha must be a number", AT("lora_alpha"));
            goto done;
        }
        alpha = mtft_json__number(a);
    }
    mtft_json *rp = mtft_json__get(cfg, "rank_pattern");
    if (mtft_json__size(rp) > 0 || mtft_json__size(mtft_json__get(cfg, "alpha_pattern")) > 0) {
        rc = mtft__err(MTFT_EUNSUPPORTED, "%s:%d:%d: rank_pattern / alpha_pattern are not supported",
                       AT("rank_pattern"));
        goto done;
    }
    int rslora = mtft_json__bool(mtft_json__get(cfg, "use_rslora"));
    in->rank = (int)r;
    in->scale = mtft_peft__lora_scale((float)alpha, r, rslora);
    mtft_json *ff = mtft_json__get(cfg, "fan_in_fan_out");
    in->fan_in_fan_out = mtft_json__type(ff) == MTFT_JSON_BOOL ? mtft_json__bool(ff) : -1;
    const char *bm = mtft_json__string(mtft_json__get(cfg, "base_model_name_or_path"));
    if (bm && *bm) {
        in->base_model = mtft__strdup(bm);
        if (!in->base_model) rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
    }
#undef AT
done:
    mtft_json__free(cfg);
    mtft__free(text);
    mtft__free(path);
    return rc;
}

int mtft_merger_add_adapter(mtft_merger *m, const char *dir, float weight) {
    MTFT_CHECK_ARG(m && dir);
    if (!isfinite(weight)) return mtft__err(MTFT_ERANGE, "merge: adapter '%s': weight must be finite", dir);
    merge_input tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = read_adapter_config(&tmp, dir);
    if (rc < 0) return rc;
    if (m->base_name && tmp.base_model && strcmp(m->base_name, tmp.base_model) != 0) {
        rc = mtft__err(MTFT_EINVAL,
                       "merge: adapter '%s' was trained on base '%s' but the merge's base is '%s' "
                       "(adapter_config.json base_model_name_or_path)",
                       dir, tmp.base_model, m->base_name);
        mtft__free(tmp.base_model);
        return rc;
    }
    char *file = join(dir, "adapter_model.safetensors");
    if (!file) {
        mtft__free(tmp.base_model);
        return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    }
    rc = mtft_safetensors_open(&tmp.st, file);
    mtft__free(file);
    if (rc < 0) {
        mtft__free(tmp.base_model);
        return rc;
    }
    merge_input *in = new_input(m, dir, weight);
    if (!in) {
        mtft_safetensors_close(tmp.st);
        mtft__free(tmp.base_model);
        return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    }
    char *path = in->path;
    *in = tmp;
    in->path = path;
    in->is_adapter = 1;
    return m->n_in - 1;
}

int mtft_merger_n_models(const mtft_merger *m) { return m ? m->n_in : 0; }

/* ---- parameters ------------------------------------------------------------------------------ */

static const char *const k_params[] = {"weight", "density", "beta", "gamma", "lambda", "normalize"};

const char *mtft_merge_param_name(mtft_merge_param p) { return (int)p >= 0 && (int)p < 6 ? k_params[p] : "?"; }

int mtft_merge_param_from_name(const char *name, mtft_merge_param *out) {
    MTFT_CHECK_ARG(name && out);
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, k_params[i])) {
            *out = (mtft_merge_param)i;
            return MTFT_OK;
        }
    return mtft__err(MTFT_ENOTFOUND,
                     "unknown merge parameter '%s' (expected one of: weight, density, beta, gamma, lambda, normalize)",
                     name);
}

int mtft_merger_set_param(mtft_merger *m, int model, const char *pattern, mtft_merge_param p, double value) {
    MTFT_CHECK_ARG(m);
    if ((int)p < 0 || (int)p > MTFT_MERGE_P_NORMALIZE) return mtft__err(MTFT_EINVAL, "merge: unknown parameter %d", (int)p);
    if (model < -1 || model >= m->n_in)
        return mtft__err(MTFT_ERANGE, "merge: parameter '%s' for model %d, but there are %d models", k_params[p], model,
                         m->n_in);
    if (model >= 0 && (p == MTFT_MERGE_P_LAMBDA || p == MTFT_MERGE_P_NORMALIZE))
        return mtft__err(MTFT_EINVAL, "merge: '%s' applies to the merged vector, not to one model (use model -1)",
                         k_params[p]);
    if (!isfinite(value)) return mtft__err(MTFT_ERANGE, "merge: parameter '%s' must be finite", k_params[p]);
    if ((p == MTFT_MERGE_P_DENSITY && !(value > 0 && value <= 1)) ||
        ((p == MTFT_MERGE_P_BETA || p == MTFT_MERGE_P_GAMMA) && !(value >= 0 && value <= 1)) ||
        (p == MTFT_MERGE_P_NORMALIZE && value != 0 && value != 1))
        return mtft__err(MTFT_ERANGE, "merge: parameter '%s' = %g is out of range (%s)", k_params[p], value,
                         p == MTFT_MERGE_P_DENSITY ? "(0, 1]" : p == MTFT_MERGE_P_NORMALIZE ? "0 or 1" : "[0, 1]");
    if (m->n_set == m->cap_set) {
        int cap = m->cap_set ? 2 * m->cap_set : 8;
        merge_setting *s2 = mtft__realloc(m->set, (size_t)cap * sizeof *s2);
        if (!s2) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
        m->set = s2;
        m->cap_set = cap;
    }
    merge_setting *s = &m->set[m->n_set];
    s->model = model;
    s->p = p;
    s->value = value;
    s->pattern = NULL;
    if (pattern && *pattern && !(s->pattern = mtft__strdup(pattern))) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    m->n_set++;
    return MTFT_OK;
}

void mtft_merge__resolve(const mtft_merger *m, const char *name, mtft_merge_model_params *p, float *lambda,
                         int *normalize) {
    mtft_merge_model_params d = mtft_merge_default_params(m->o.method);
    for (int t = 0; t < m->n_in; t++) p[t] = d;
    *lambda = m->o.lambda;
    *normalize = m->o.normalize >= 0 ? m->o.normalize : m->o.method == MTFT_MERGE_LINEAR;
    for (int i = 0; i < m->n_set; i++) {
        const merge_setting *s = &m->set[i];
        if (!mtft_merge__match(s->pattern, name)) continue;
        if (s->p == MTFT_MERGE_P_LAMBDA) *lambda = (float)s->value;
        else if (s->p == MTFT_MERGE_P_NORMALIZE) *normalize = s->value != 0;
        else
            for (int t = 0; t < m->n_in; t++) {
                if (s->model >= 0 && s->model != t) continue;
                float v = (float)s->value;
                if (s->p == MTFT_MERGE_P_WEIGHT) p[t].weight = v;
                else if (s->p == MTFT_MERGE_P_DENSITY) p[t].density = v;
                else if (s->p == MTFT_MERGE_P_BETA) p[t].beta = v;
                else p[t].gamma = v;
            }
    }
}

/* ---- checking the inputs against the base ------------------------------------------------------ */

static int check_model(mtft_merger *m, merge_input *in) {
    const mtft_safetensors *ref = mtft_merge__ref(m);
    const char *ref_path = mtft_safetensors_path(ref);
    const char *mfile = mtft_safetensors_path(in->st);
    if (in->st == ref) return MTFT_OK;
    const char *fp = mtft_safetensors_metadata(in->st, "mtft.base_fingerprint");
    if (fp && m->base && strcmp(fp, m->fingerprint) != 0)
        return mtft__err(MTFT_EINVAL,
                         "merge: model '%s' was finetuned from a different base: its mtft.base_fingerprint is %s, "
                         "the base '%s' has %s",
                         mfile, fp, ref_path, m->fingerprint);
    int nref = mtft_safetensors_count(ref), matched = 0;
    for (int i = 0; i < nref; i++) {
        const char *nm = mtft_safetensors_name(ref, i);
        int j = mtft_merge__find(in->st, nm);
        int nd = 0, nd2 = 0;
        int64_t a[MTFT_SAFETENSORS_MAX_DIMS], b[MTFT_SAFETENSORS_MAX_DIMS];
        mtft_safetensors_info(ref, i, NULL, &nd, a);
        char s1[128], s2[128];
        if (j < 0)
            return mtft__err(MTFT_ENOTFOUND, "merge: model '%s' has no tensor '%s' (the base '%s' has it, shape %s)",
                             mfile, nm, ref_path, shape_str(nd, a, s1, sizeof s1));
        mtft_safetensors_info(in->st, j, NULL, &nd2, b);
        if (nd != nd2 || memcmp(a, b, (size_t)nd * sizeof a[0]) != 0)
            return mtft__err(MTFT_ESHAPE, "merge: tensor '%s': the base '%s' has shape %s but model '%s' has %s", nm,
                             ref_path, shape_str(nd, a, s1, sizeof s1), mfile, shape_str(nd2, b, s2, sizeof s2));
        matched++;
    }
    if (matched != mtft_safetensors_count(in->st)) {
        for (int j = 0; j < mtft_safetensors_count(in->st); j++) {
            const char *nm = mtft_safetensors_name(in->st, j);
            if (mtft_merge__find(ref, nm) < 0)
                return mtft__err(MTFT_EINVAL, "merge: model '%s' has tensor '%s', which the base '%s' does not have",
                                 mfile, nm, ref_path);
        }
    }
    return MTFT_OK;
}

static int is_conv1d_name(const char *nm) {
    return strstr(nm, "c_attn.") || strstr(nm, "c_proj.") || strstr(nm, "c_fc.") || strstr(nm, "q_attn.");
}

static int check_adapter(mtft_merger *m, merge_input *in) {
    const mtft_safetensors *ref = m->base;
    const char *afile = mtft_safetensors_path(in->st);
    if (!ref) return mtft__err(MTFT_EINVAL, "merge: adapter '%s' needs a base model (set base_model)", in->path);
    int n = mtft_safetensors_count(in->st);
    static const char pre[] = "base_model.model.", sufA[] = ".lora_A.weight", sufB[] = ".lora_B.weight";
    in->pairs = mtft__calloc((size_t)(n > 0 ? n : 1), sizeof *in->pairs);
    if (!in->pairs) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    for (int i = 0; i < n; i++) {
        const char *nm = mtft_safetensors_name(in->st, i);
        if (ends_with(nm, sufB)) continue;
        if (!ends_with(nm, sufA))
            return mtft__err(MTFT_EUNSUPPORTED,
                             "merge: adapter '%s' holds tensor '%s', which is not a LoRA A/B weight "
                             "(modules_to_save, biases and other PEFT types do not merge)",
                             afile, nm);
        size_t len = strlen(nm) - (sizeof sufA - 1);
        const char *mod0 = !strncmp(nm, pre, sizeof pre - 1) ? nm + sizeof pre - 1 : nm;
        size_t mlen = len - (size_t)(mod0 - nm);
        merge_pair *pr = &in->pairs[in->n_pairs];
        pr->module = mtft__malloc(mlen + 1);
        if (!pr->module) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
        memcpy(pr->module, mod0, mlen);
        pr->module[mlen] = '\0';
        in->n_pairs++;
        char bname[600], wname[600];
        snprintf(bname, sizeof bname, "%.*s%s", (int)len, nm, sufB);
        snprintf(wname, sizeof wname, "%s.weight", pr->module);
        pr->a_idx = i;
        pr->b_idx = mtft_merge__find(in->st, bname);
        if (pr->b_idx < 0) return mtft__err(MTFT_EFORMAT, "merge: adapter '%s' has '%s' but no '%s'", afile, nm, bname);
        pr->base_idx = mtft_merge__find(ref, wname);
        if (pr->base_idx < 0)
            return mtft__err(MTFT_ENOTFOUND, "merge: adapter '%s': module '%s' has no base weight '%s' in '%s'", afile,
                             pr->module, wname, mtft_safetensors_path(ref));
        int nda = 0, ndb = 0, ndw = 0;
        int64_t sa[MTFT_SAFETENSORS_MAX_DIMS], sb[MTFT_SAFETENSORS_MAX_DIMS], sw[MTFT_SAFETENSORS_MAX_DIMS];
        mtft_safetensors_info(in->st, pr->a_idx, NULL, &nda, sa);
        mtft_safetensors_info(in->st, pr->b_idx, NULL, &ndb, sb);
        mtft_safetensors_info(ref, pr->base_idx, NULL, &ndw, sw);
        char s1[128], s2[128], s3[128];
        if (nda != 2 || ndb != 2 || sa[0] != sb[1] || sa[0] != in->rank)
            return mtft__err(MTFT_ESHAPE,
                             "merge: adapter '%s': module '%s': lora_A %s and lora_B %s do not form a rank-%d pair "
                             "(expected [r, in] and [out, r], r from adapter_config.json)",
                             afile, pr->module, shape_str(nda, sa, s1, sizeof s1), shape_str(ndb, sb, s2, sizeof s2),
                             in->rank);
        pr->in_f = sa[1];
        pr->out_f = sb[0];
        int lin_fits = ndw == 2 && sw[0] == pr->out_f && sw[1] == pr->in_f;
        int conv_fits = ndw == 2 && sw[0] == pr->in_f && sw[1] == pr->out_f;
        if (in->fan_in_fan_out >= 0) pr->conv1d = in->fan_in_fan_out;
        else if (lin_fits && conv_fits) pr->conv1d = is_conv1d_name(wname);
        else pr->conv1d = conv_fits;
        if (pr->conv1d ? !conv_fits : !lin_fits) {
            int64_t want[2] = {pr->conv1d ? pr->in_f : pr->out_f, pr->conv1d ? pr->out_f : pr->in_f};
            return mtft__err(MTFT_ESHAPE,
                             "merge: adapter '%s': module '%s': B A gives %s (%s orientation) but the base weight '%s' in "
                             "'%s' has shape %s",
                             afile, pr->module, shape_str(2, want, s1, sizeof s1),
                             pr->conv1d ? "Conv1D [in, out]" : "Linear [out, in]", wname, mtft_safetensors_path(ref),
                             shape_str(ndw, sw, s3, sizeof s3));
        }
        for (int q = 0; q < in->n_pairs - 1; q++)
            if (in->pairs[q].base_idx == pr->base_idx)
                return mtft__err(MTFT_EFORMAT, "merge: adapter '%s' has two LoRA pairs on '%s'", afile, wname);
    }
    return MTFT_OK;
}

int mtft_merge__prepare(mtft_merger *m) {
    if (m->prepared) return MTFT_OK;
    if (m->n_in < 1) return mtft__err(MTFT_ESTATE, "merge: no models or adapters were added");
    if (!m->base && m->o.method != MTFT_MERGE_LINEAR)
        return mtft__err(MTFT_ESTATE, "merge %s: needs a base model (task vectors are computed against it)",
                         mtft_merge_method_name(m->o.method));
    if (!m->base && m->in[0].is_adapter)
        return mtft__err(MTFT_ESTATE, "merge: adapters need a base model");
    for (int i = 0; i < m->n_in; i++) {
        merge_input *in = &m->in[i];
        int rc = in->is_adapter ? check_adapter(m, in) : check_model(m, in);
        if (rc < 0) return rc;
    }
    m->prepared = 1;
    return MTFT_OK;
}

const mtft_safetensors *mtft_merge__ref(const mtft_merger *m) { return m->base ? m->base : m->in[0].st; }

int mtft_merger_n_tensors(const mtft_merger *m) {
    if (!m || (!m->base && m->n_in == 0)) return 0;
    return mtft_safetensors_count(mtft_merge__ref(m));
}

/* ---- task vectors -------------------------------------------------------------------------------- */

int mtft_merge__delta(mtft_merger *m, int t, int ti, const float *base, float *out, int64_t n, int *touched) {
    merge_input *in = &m->in[t];
    const mtft_safetensors *ref = mtft_merge__ref(m);
    *touched = 0;
    if (!in->is_adapter) {
        const char *nm = mtft_safetensors_name(ref, ti);
        int j = mtft_merge__find(in->st, nm);
        int rc = mtft_safetensors_read_f32(in->st, mtft_safetensors_name(in->st, j), out, -1, NULL);
        if (rc < 0) return rc;
        if (base)
            for (int64_t k = 0; k < n; k++) out[k] -= base[k];
        *touched = 1;
        return MTFT_OK;
    }
    memset(out, 0, (size_t)n * sizeof *out);
    for (int q = 0; q < in->n_pairs; q++) {
        const merge_pair *pr = &in->pairs[q];
        if (pr->base_idx != ti) continue;
        int64_t r = in->rank, I = pr->in_f, O = pr->out_f;
        float *A = mtft__malloc((size_t)(r * I) * sizeof *A), *B = mtft__malloc((size_t)(O * r) * sizeof *B);
        int rc = A && B ? MTFT_OK : mtft__err(MTFT_ENOMEM, "merge: out of memory");
        if (rc == MTFT_OK) rc = mtft_safetensors_read_f32(in->st, mtft_safetensors_name(in->st, pr->a_idx), A, -1, NULL);
        if (rc == MTFT_OK) rc = mtft_safetensors_read_f32(in->st, mtft_safetensors_name(in->st, pr->b_idx), B, -1, NULL);
        if (rc == MTFT_OK) {
            /* delta W [O, I] = scale * B [O, r] A [r, I]; Conv1D stores W^T [I, O] (out is zero) */
            mtft_peft__lora_delta_add(out, A, B, r, I, O, in->scale, pr->conv1d);
            *touched = 1;
        }
        mtft__free(A);
        mtft__free(B);
        return rc;
    }
    return MTFT_OK;
}

int mtft_merger_task_vector(mtft_merger *m, int model, const char *name, float *out, int64_t numel) {
    MTFT_CHECK_ARG(m && name && out);
    if (model < 0 || model >= m->n_in) return mtft__err(MTFT_ERANGE, "merge: model %d of %d", model, m->n_in);
    int rc = mtft_merge__prepare(m);
    if (rc < 0) return rc;
    const mtft_safetensors *ref = mtft_merge__ref(m);
    int ti = mtft_merge__find(ref, name);
    if (ti < 0) return mtft__err(MTFT_ENOTFOUND, "merge: the base has no tensor '%s'", name);
    int nd = 0;
    int64_t sh[MTFT_SAFETENSORS_MAX_DIMS], n = 1;
    mtft_safetensors_info(ref, ti, NULL, &nd, sh);
    for (int i = 0; i < nd; i++) n *= sh[i];
    if (n != numel)
        return mtft__err(MTFT_ESHAPE, "merge: tensor '%s' has %lld elements, the buffer %lld", name, (long long)n,
                         (long long)numel);
    float *base = NULL;
    if (m->base) {
        base = mtft__malloc((size_t)(n > 0 ? n : 1) * sizeof *base);
        if (!base) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
        rc = mtft_safetensors_read_f32(m->base, mtft_safetensors_name(m->base, ti), base, -1, NULL);
        if (rc < 0) {
            mtft__free(base);
            return rc;
        }
    }
    int touched = 0;
    rc = mtft_merge__delta(m, model, ti, base, out, n, &touched);
    mtft__free(base);
    return rc;
}

/* Merge tensor ti into out (n floats): base + merged deltas; *touched = 0
 * when no input changes it (out = base). delta_only: out = merged delta. */
int mtft_merge__tensor(mtft_merger *m, int ti, float *out, int64_t n, int delta_only, int *touched, float *work) {
    const mtft_safetensors *ref = mtft_merge__ref(m);
    const char *nm = mtft_safetensors_name(ref, ti);
    int T = m->n_in, rc = MTFT_OK, any = 0;
    float *base = work;                      /* n */
    float *D = work + n;                     /* T x n */
    const float **dp = mtft__malloc((size_t)T * sizeof *dp);
    mtft_merge_model_params *p = mtft__malloc((size_t)T * sizeof *p);
    if (!dp || !p) {
        rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
        goto done;
    }
    if (m->base) rc = mtft_safetensors_read_f32(m->base, nm, base, -1, NULL);
    else memset(base, 0, (size_t)n * sizeof *base);
    for (int t = 0; t < T && rc == MTFT_OK; t++) {
        int tch = 0;
        dp[t] = D + (size_t)t * (size_t)n;
        rc = mtft_merge__delta(m, t, ti, m->base ? base : NULL, D + (size_t)t * (size_t)n, n, &tch);
        any |= tch;
    }
    if (rc < 0) goto done;
    *touched = any;
    if (!any) {
        if (delta_only) memset(out, 0, (size_t)n * sizeof *out);
        else memcpy(out, base, (size_t)n * sizeof *out);
        goto done;
    }
    float lambda;
    int normalize;
    mtft_merge__resolve(m, nm, p, &lambda, &normalize);
    uint64_t seed = m->o.seed ^ mtft_merge__fnv1a(MTFT_MERGE_FNV_INIT, nm, strlen(nm));
    rc = mtft_merge_deltas(m->o.method, T, n, dp, p, lambda, normalize, seed, out);
    if (rc < 0) {
        mtft__err_prefix("tensor '%s'", nm);
        goto done;
    }
    if (!delta_only)
        for (int64_t k = 0; k < n; k++) out[k] += base[k];
done:
    mtft__free((void *)dp);
    mtft__free(p);
    return rc;
}

/* Largest tensor of the reference, in elements. */
int64_t mtft_merge__max_numel(const mtft_merger *m) {
    const mtft_safetensors *ref = mtft_merge__ref(m);
    int64_t mx = 1;
    for (int i = 0; i < mtft_safetensors_count(ref); i++) {
        int nd = 0;
        int64_t sh[MTFT_SAFETENSORS_MAX_DIMS], n = 1;
        mtft_safetensors_info(ref, i, NULL, &nd, sh);
        for (int d = 0; d < nd; d++) n *= sh[d];
        if (n > mx) mx = n;
    }
    return mx;
}

/* ---- outputs ------------------------------------------------------------------------------------ */

static int mkdirs(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return mtft__err(MTFT_EINVAL, "path too long: %s", path);
    for (char *q = tmp + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return mtft__err(MTFT_EIO, "cannot create directory '%s'", tmp);
        *q = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return mtft__err(MTFT_EIO, "cannot create directory '%s'", tmp);
    return MTFT_OK;
}

int mtft_merger_save(mtft_merger *m, const char *path) {
    MTFT_CHECK_ARG(m && path && *path);
    int rc = mtft_merge__prepare(m);
    if (rc < 0) return rc;
    const mtft_safetensors *ref = mtft_merge__ref(m);
    int nt = mtft_safetensors_count(ref);
    int64_t mx = mtft_merge__max_numel(m);
    float **data = mtft__calloc((size_t)nt + 1, sizeof *data);
    const char **names = mtft__calloc((size_t)nt + 1, sizeof *names);
    int *ndims = mtft__calloc((size_t)nt + 1, sizeof *ndims);
    int64_t *shapes = mtft__calloc(((size_t)nt + 1) * MTFT_SAFETENSORS_MAX_DIMS, sizeof *shapes);
    const int64_t **shp = mtft__calloc((size_t)nt + 1, sizeof *shp);
    float *work = mtft__malloc((size_t)(m->n_in + 1) * (size_t)mx * sizeof *work);
    char *file = NULL, *cfg_src = NULL, *cfg_dst = NULL;
    if (!data || !names || !ndims || !shapes || !shp || !work) {
        rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
        goto done;
    }
    for (int i = 0; i < nt && rc == MTFT_OK; i++) {
        names[i] = mtft_safetensors_name(ref, i);
        int64_t *sh = shapes + (size_t)i * MTFT_SAFETENSORS_MAX_DIMS, n = 1;
        mtft_safetensors_info(ref, i, NULL, &ndims[i], sh);
        shp[i] = sh;
        for (int d = 0; d < ndims[i]; d++) n *= sh[d];
        data[i] = mtft__malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (!data[i]) {
            rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
            break;
        }
        int touched = 0;
        rc = mtft_merge__tensor(m, i, data[i], n, 0, &touched, work);
    }
    if (rc < 0) goto done;
    int as_dir = !ends_with(path, ".safetensors");
    if (as_dir) {
        if ((rc = mkdirs(path)) < 0) goto done;
        file = join(path, "model.safetensors");
        if (!file) {
            rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
            goto done;
        }
    }
    const char *meta[] = {"format", "pt", "mtft.merge_method", mtft_merge_method_name(m->o.method),
                          m->base ? "mtft.base_fingerprint" : NULL, m->fingerprint, NULL};
    rc = mtft_safetensors_save_raw(as_dir ? file : path, nt, names, (const float *const *)data, ndims, shp, meta);
    if (rc < 0) goto done;
    if (as_dir && m->base_dir) {
        cfg_src = join(m->base_dir, "config.json");
        cfg_dst = join(path, "config.json");
        if (!cfg_src || !cfg_dst) {
            rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
            goto done;
        }
        struct stat st;
        if (stat(cfg_src, &st) == 0) {
            char *text = NULL;
            size_t len = 0;
            rc = mtft_io__read_file(cfg_src, &text, &len);
            if (rc == MTFT_OK) rc = mtft_io__write_atomic(cfg_dst, text, len, 0);
            mtft__free(text);
        }
    }
done:
    for (int i = 0; data && i < nt; i++) mtft__free(data[i]);
    mtft__free(data);
    mtft__free((void *)names);
    mtft__free(ndims);
    mtft__free(shapes);
    mtft__free((void *)shp);
    mtft__free(work);
    mtft__free(file);
    mtft__free(cfg_src);
    mtft__free(cfg_dst);
    return rc;
}

int mtft_merger_merge_into(mtft_merger *m, mtft_param_group *pg) {
    MTFT_CHECK_ARG(m && pg);
    int rc = mtft_merge__prepare(m);
    if (rc < 0) return rc;
    const mtft_safetensors *ref = mtft_merge__ref(m);
    int nt = mtft_safetensors_count(ref);
    mtft_tensor **dst = mtft__calloc((size_t)nt + 1, sizeof *dst);
    float *work = NULL;
    if (!dst) return mtft__err(MTFT_ENOMEM, "merge: out of memory");
    rc = mtft_merge__map_group(m, pg, dst);
    if (rc == MTFT_OK) {
        work = mtft__malloc((size_t)(m->n_in + 1) * (size_t)mtft_merge__max_numel(m) * sizeof *work);
        if (!work) rc = mtft__err(MTFT_ENOMEM, "merge: out of memory");
    }
    for (int i = 0; i < nt && rc == MTFT_OK; i++) {
        int touched = 0;
        rc = mtft_merge__tensor(m, i, mtft_tensor_data(dst[i]), mtft_tensor_numel(dst[i]), 0, &touched, work);
    }
    mtft__free(work);
    mtft__free(dst);
    return rc;
}

int mtft_merge__map_group(mtft_merger *m, mtft_param_group *pg, mtft_tensor **dst) {
    const mtft_safetensors *ref = mtft_merge__ref(m);
    int nt = mtft_safetensors_count(ref);
    for (int i = 0; i < nt; i++) {
        const char *nm = mtft_safetensors_name(ref, i);
        mtft_tensor *t = NULL;
        for (int j = 0; j < mtft_param_group_count(pg) && !t; j++) {
            mtft_tensor *c = mtft_param_group_tensor(pg, j);
            const char *cn = mtft_tensor_name(c);
            if (!strcmp(cn, nm) || (!strncmp(nm, "transformer.", 12) && !strcmp(cn, nm + 12)) ||
                (!strncmp(cn, "transformer.", 12) && !strcmp(cn + 12, nm)))
                t = c;
        }
        int nd = 0;
        int64_t sh[MTFT_SAFETENSORS_MAX_DIMS], gs[MTFT_MAX_DIMS];
        char s1[128], s2[128];
        mtft_safetensors_info(ref, i, NULL, &nd, sh);
        if (!t)
            return mtft__err(MTFT_ENOTFOUND, "merge: group '%s' has no tensor '%s' (shape %s in '%s')",
                             mtft_param_group_name(pg), nm, shape_str(nd, sh, s1, sizeof s1), mtft_safetensors_path(ref));
        int gnd = mtft_tensor_shape(t, gs);
        if (gnd != nd || memcmp(gs, sh, (size_t)nd * sizeof sh[0]) != 0)
            return mtft__err(MTFT_ESHAPE, "merge: tensor '%s': '%s' has shape %s but group '%s' has %s", nm,
                             mtft_safetensors_path(ref), shape_str(nd, sh, s1, sizeof s1), mtft_param_group_name(pg),
                             shape_str(gnd, gs, s2, sizeof s2));
        dst[i] = t;
    }
    return MTFT_OK;
}
