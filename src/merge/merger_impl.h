/* The merger's definition, shared by the files of src/merge. Not installed. */
#ifndef MTFT_MERGER_IMPL_H
#define MTFT_MERGER_IMPL_H

#include "merge_impl.h"
#include "mtft/io.h"

/* One LoRA pair of an adapter, mapped onto a base weight. */
typedef struct merge_pair {
    char *module;   /* "transformer.h.0.attn.c_attn" (PEFT name without base_model.model. and .lora_A.weight) */
    int a_idx, b_idx; /* tensor indices in the adapter file */
    int base_idx;   /* the weight's index in the base file */
    int64_t in_f, out_f;
    int conv1d;     /* the base stores W^T [in, out] (GPT-2 Conv1D) */
} merge_pair;

typedef struct merge_input {
    char *path;     /* as given */
    char *dir;      /* full model given as a directory, else NULL */
    mtft_safetensors *st;
    int is_adapter;
    /* adapters */
    int rank;
    float scale;    /* alpha / r or alpha / sqrt(r) */
    int fan_in_fan_out; /* -1 when adapter_config.json does not say */
    char *base_model;   /* base_model_name_or_path or NULL */
    merge_pair *pairs;
    int n_pairs;
} merge_input;

typedef struct merge_setting {
    int model;      /* -1: all */
    char *pattern;  /* NULL: all tensors */
    mtft_merge_param p;
    double value;
} merge_setting;

struct mtft_merger {
    mtft_merge_options o;
    char *base_name;
    char *base_path, *base_dir;
    mtft_safetensors *base;
    char fingerprint[80];
    merge_input *in;
    int n_in, cap_in;
    merge_setting *set;
    int n_set, cap_set;
    int prepared;
    char *yaml_output; /* mtft_merger_from_yaml */
    int yaml_rank;
};

/* Tensor names and shapes come from the base, or (linear without a base)
 * from the first model. */
const mtft_safetensors *mtft_merge__ref(const mtft_merger *m);
int mtft_merge__find(const mtft_safetensors *st, const char *name);
/* Check every input against the base (once). */
int mtft_merge__prepare(mtft_merger *m);
/* Parameters of every model, lambda and normalize for tensor `name`. */
void mtft_merge__resolve(const mtft_merger *m, const char *name, mtft_merge_model_params *p, float *lambda,
                         int *normalize);
/* Task vector of input t for reference tensor ti (n floats); base is the
 * base tensor (NULL without a base). *touched = 0 when an adapter leaves it. */
int mtft_merge__delta(mtft_merger *m, int t, int ti, const float *base, float *out, int64_t n, int *touched);
/* Merge reference tensor ti; work holds (n_in + 1) * n floats. */
int mtft_merge__tensor(mtft_merger *m, int ti, float *out, int64_t n, int delta_only, int *touched, float *work);
int64_t mtft_merge__max_numel(const mtft_merger *m);
/* dst[i] = the group tensor of reference tensor i (names may differ by a
 * "transformer." prefix; shapes must match). */
int mtft_merge__map_group(mtft_merger *m, mtft_param_group *pg, mtft_tensor **dst);

#endif
