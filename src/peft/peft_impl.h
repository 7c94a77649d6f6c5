/* Internal definition of the PEFT state and its ops. Not installed.
 * Letters: B sequences, T time, C n_embd, F n_ff, R LoRA rank, K tasks,
 * L layers, M projection modules per layer (GPT-2 4, LLaMA 7). */
#ifndef MTFT_PEFT_IMPL_H
#define MTFT_PEFT_IMPL_H

#include "../nn/nn_impl.h"
#include "mtft/peft.h"

#define MTFT_PEFT_MAX_MOD 7

/* One LoRA (shared or one task's). */
typedef struct mtft_peft_lora {
    mtft_param_group *pg;
    int rank;
    float alpha, dropout, scale;
    int use_rslora;
    char *targets, *layers; /* the options' strings (copies; layers may be NULL) */
    int merged;
    mtft_tensor **A, **B;   /* [L*M]: NULL where not targeted */
    float **orig;           /* [L*M]: base weight copies while merged */
} mtft_peft_lora;

typedef struct mtft_peft_adapter {
    mtft_param_group *pg;
    mtft_adapter_options o;
    /* [L][2] (0: after attention, 1: after the MLP): NULL where absent */
    mtft_tensor *(*down_w)[2], *(*down_b)[2], *(*up_w)[2], *(*up_b)[2];
} mtft_peft_adapter;

typedef struct mtft_peft_ia3 {
    mtft_param_group *pg;
    mtft_tensor **k, **v, **ff; /* [L] */
} mtft_peft_ia3;

typedef struct mtft_peft_poly {
    mtft_param_group *pg;
    mtft_poly_options o;
    mtft_tensor **A, **B, **logits; /* [L*M] */
} mtft_peft_poly;

typedef struct mtft_peft_scalearn {
    mtft_param_group *pg;
    int n_sources;
    int *sources;
    mtft_tensor *(*scale)[2]; /* [L][2]: [n_sources, C] */
} mtft_peft_scalearn;

struct mtft_peft {
    mtft_model *m;
    int n_tasks, n_layer, n_mod;
    const char *const *mod_names; /* n_mod HF module names inside a layer */
    mtft_peft_lora *shared;       /* NULL or the shared LoRA */
    mtft_peft_lora **lora;        /* [K] */
    mtft_peft_adapter **adapter;  /* [K] */
    mtft_peft_ia3 **ia3;          /* [K] */
    mtft_peft_scalearn **scalearn;/* [K] */
    mtft_peft_poly *poly;
    int32_t *offsets;             /* [K+1] current batch ranges (sequences) */
    int64_t *off64;               /* [K+1] the same for the graph's row partition */
    int have_batch;
};

/* Does `name` match the pattern (see mtft_lora_options.target_modules)? */
int mtft_peft__match(const char *pattern, const char *name);
/* Is layer l selected by the list ("", NULL: all; "0,2-3")? Returns -1 on a
 * malformed list (error set). */
int mtft_peft__layer_selected(const char *layers, int l, int n_layer);
/* Index of a module name, or -1. */
int mtft_peft__mod_index(const mtft_peft *p, const char *name);
/* in / out features of module mi. */
void mtft_peft__mod_dims(const mtft_peft *p, int mi, int64_t *in, int64_t *out);
/* The base weight of module mi in layer l. */
mtft_tensor *mtft_peft__base_weight(const mtft_peft *p, int l, int mi);
/* Kaiming-uniform with a = sqrt(5) (nn.Linear's default): U(-b, b), b = 1/sqrt(fan_in). */
void mtft_peft__kaiming(float *w, int64_t n, int64_t fan_in, mtft_rng *rng);
/* A new group named name, or NULL (error set). */
mtft_param_group *mtft_peft__group(const char *name);
/* Task id check (allow_shared: MTFT_PEFT_SHARED too). */
int mtft_peft__check_task(const mtft_peft *p, int task, int allow_shared, const char *what);

/* ---- ops ----------------------------------------------------------------------- */
/* Combine per-row-range updates into y (any shape; rows = dim 0 units of
 * y->ne[0] each holding numel/ne[0] floats). Entry e covers units
 * [u0[e], u0[e]+nu[e]) of dim 0; src[e] has that many units. add[e] = 1:
 * out rows += src; 0: out rows = src (ranges of replace entries must not
 * overlap other entries). Returns a new tensor. */
mtft_tensor *mtft_peft__rows_combine(mtft_graph *g, mtft_tensor *y, int n, mtft_tensor **src, const int64_t *u0,
                                     const int64_t *nu, const int *add);
/* In place on y (the fresh output of a base projection, which no recorded
 * op has saved): for each entry, y rows [u0*rpu, (u0+nu)*rpu) += scale *
 * h op(w), h [.., R] holding those rows, op(w) = w^T for w [out, R] (wt 1,
 * LoRA's B) or w for w [R, out] (wt 0, Poly's mixed B). No copy and no delta
 * tensor: one GEMM with beta = 1 per entry. Backward: dh += scale dy op(w)^T
 * and dw per entry (per part of the row partition when w's group is split).
 * Returns y. */
mtft_tensor *mtft_peft__lora_add(mtft_graph *g, mtft_tensor *y, int n, mtft_tensor **h, mtft_tensor **w,
                                 const int64_t *u0, const int64_t *nu, const float *scale, const int *wt);
/* h = x_rows A^T [nu*rpu, R] for rows [u0*rpu, (u0+nu)*rpu) of x (rpu =
 * rows per dim-0 unit), read in place: no slice view, so the backward adds
 * dx straight into x's gradient rows (and dA, per part when A is split). */
mtft_tensor *mtft_peft__lora_down(mtft_graph *g, mtft_tensor *x, mtft_tensor *A, int64_t u0, int64_t nu);
/* Fused LoRA (src/peft/lora_fused.c), in place on y (a projection's fresh
 * output, which no recorded op has saved) for n entries: y rows [u0*rpu,
 * (u0+nu)*rpu) += scale * (x_rows A^T) B^T, A [R, in], B [out, R], x
 * [.., in] and y [.., out] contiguous with the same rows (rpu rows per dim-0
 * unit). One node; h = x A^T is kept for the backward, which adds dx
 * without temporaries of x's size and writes dA and dB per part of the row
 * partition when their group is split. Returns y. */
mtft_tensor *mtft_peft__lora_fused(mtft_graph *g, mtft_tensor *x, mtft_tensor *y, int n, mtft_tensor **A,
                                   mtft_tensor **B, const int64_t *u0, const int64_t *nu, const float *scale);
/* 1 when the fused op has its fast (AVX-512) kernels for rank R on this CPU
 * (x86-64 with AVX-512, R a multiple of 8). The hooks use the fused op only
 * then: for other ranks OpenBLAS's thin GEMMs (lora_down + lora_add) beat
 * its portable kernels. */
int mtft_peft__lora_fused_fast(int64_t R);
/* Tests: 1 makes the fused LoRA op use its portable kernels even where the
 * AVX-512 ones would serve. */
void mtft_peft__lora_force_generic(int on);
/* Poly skill mixing: logits [K, S*Q] (row `task`), skills [S, Q, D] ->
 * [S, D]: out[s] = sum_q w[s,q] skills[s,q], w = routing of logits[task]
 * viewed as [S, Q] (S splits, Q skills). */
mtft_tensor *mtft_peft__poly_mix(mtft_graph *g, mtft_tensor *logits, int task, mtft_tensor *skills,
                                 mtft_poly_routing routing);

/* Hooks (installed on the model). */
mtft_tensor *mtft_peft__proj_hook(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, mtft_tensor *y, void *payload);
mtft_tensor *mtft_peft__proj_in_hook(mtft_nn_ctx *ctx, const char *name, mtft_tensor *x, void *payload);

void mtft_peft__lora_free(mtft_peft_lora *lo, int n_slots);
/* src/peft/modules.c; each NULL-safe */
void mtft_peft__adapter_free(mtft_peft_adapter *a);
void mtft_peft__ia3_free(mtft_peft_ia3 *ia);
void mtft_peft__poly_free(mtft_peft_poly *po);
void mtft_peft__scalearn_free(mtft_peft_scalearn *sl);

#endif
