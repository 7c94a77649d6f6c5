/* mtft: checkpoint I/O. safetensors files (read through mmap, written
 * atomically) and Hugging Face config.json files.
 *
 * Errors: every fallible call returns MTFT_OK (or a count, where said) or a
 * negative mtft_status, and sets the thread's last error (mtft_error_last())
 * to a message that names the file, the tensor or key, and what was wrong.
 * Broken input never crashes and never reads outside the file. */
#ifndef MTFT_IO_H
#define MTFT_IO_H

#include "mtft/common.h"
#include "mtft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- safetensors ------------------------------------------------------------
 * Layout: 8-byte little-endian header length N, N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 *    ..., "__metadata__": {"key": "value", ...}}
 * then the data buffer; offsets are relative to the buffer start. */

/* Element types. Values are stable (append only). */
typedef enum mtft_st_dtype {
    MTFT_ST_BOOL = 0,
    MTFT_ST_U8 = 1,
    MTFT_ST_I8 = 2,
    MTFT_ST_F8_E5M2 = 3,
    MTFT_ST_F8_E4M3 = 4,
    MTFT_ST_I16 = 5,
    MTFT_ST_U16 = 6,
    MTFT_ST_F16 = 7,
    MTFT_ST_BF16 = 8,
    MTFT_ST_I32 = 9,
    MTFT_ST_U32 = 10,
    MTFT_ST_F32 = 11,
    MTFT_ST_F64 = 12,
    MTFT_ST_I64 = 13,
    MTFT_ST_U64 = 14,
    MTFT_ST_F8_E8M0 = 15
} mtft_st_dtype;

/* The most dims a safetensors tensor may have here (more is an error). */
#define MTFT_SAFETENSORS_MAX_DIMS 8

typedef struct mtft_safetensors mtft_safetensors;

/* "F32", "BF16", ... ("?" for an unknown value). */
MTFT_API const char *mtft_st_dtype_name(mtft_st_dtype dtype);
/* Bytes per element (0 for an unknown value). */
MTFT_API size_t mtft_st_dtype_size(mtft_st_dtype dtype);

/* Open and memory-map (read-only, private) a safetensors file, and validate
 * its whole header up front: the header length against the file size, the
 * JSON syntax (the error gives the byte offset), every entry's fields and
 * their types, known dtypes, at most MTFT_SAFETENSORS_MAX_DIMS dims, shape
 * product * dtype size == end - begin, offsets inside the file, unique names,
 * and tensors that neither overlap nor leave holes (they tile the buffer).
 * On error *out is NULL and nothing stays open. */
MTFT_API int mtft_safetensors_open(mtft_safetensors **out, const char *path);
/* Unmap and free. NULL-safe. Every pointer obtained from the handle (names,
 * metadata values, mtft_safetensors_data) becomes invalid. */
MTFT_API void mtft_safetensors_close(mtft_safetensors *st);

/* The path given to open (borrowed). */
MTFT_API const char *mtft_safetensors_path(const mtft_safetensors *st);
/* Number of tensors. Tensors are indexed 0..count-1 in order of their data
 * offsets (the order of the bytes in the file). */
MTFT_API int mtft_safetensors_count(const mtft_safetensors *st);
/* Name of tensor i (borrowed, valid until close), NULL when out of range. */
MTFT_API const char *mtft_safetensors_name(const mtft_safetensors *st, int i);
/* Index of the tensor called `name`, or MTFT_ENOTFOUND (error set). */
MTFT_API int mtft_safetensors_find(const mtft_safetensors *st, const char *name);
/* Dtype, number of dims and shape of tensor i. Any out pointer may be NULL;
 * shape receives ndim values (room for MTFT_SAFETENSORS_MAX_DIMS). A scalar
 * has ndim 0. */
MTFT_API int mtft_safetensors_info(const mtft_safetensors *st, int i, mtft_st_dtype *dtype, int *ndim,
                                   int64_t shape[MTFT_SAFETENSORS_MAX_DIMS]);
/* Value of `key` in "__metadata__" (borrowed, valid until close), or NULL
 * when the file has no such key (no error is set then). */
MTFT_API const char *mtft_safetensors_metadata(const mtft_safetensors *st, const char *key);
/* Number of metadata entries, and entry i (key and value, borrowed). */
MTFT_API int mtft_safetensors_metadata_count(const mtft_safetensors *st);
MTFT_API int mtft_safetensors_metadata_at(const mtft_safetensors *st, int i, const char **key,
                                          const char **value);

/* Read tensor `name` as f32 into dst (numel floats), converting F32, F16,
 * BF16 and F64 (F16 and BF16 exactly; F64 rounds to nearest). When ndim >= 0
 * the tensor must have exactly that shape (expected_shape holds ndim values;
 * it may be NULL when ndim == 0), else MTFT_ESHAPE names the tensor, the
 * expected and the actual shape. ndim < 0 skips the check (dst must then hold
 * the numel given by mtft_safetensors_info). Other dtypes: MTFT_EUNSUPPORTED.
 * A missing name: MTFT_ENOTFOUND. */
MTFT_API int mtft_safetensors_read_f32(const mtft_safetensors *st, const char *name, float *dst, int ndim,
                                       const int64_t *expected_shape);
/* Zero-copy access: the bytes of tensor i inside the mapping (any dtype; see
 * mtft_safetensors_info), with their count in *nbytes when not NULL. For F32
 * tensors this is the float data itself, so a frozen base can stay mapped
 * instead of being copied. The pointer stays valid until
 * mtft_safetensors_close() and must not be written (the mapping is
 * read-only). Returns NULL (error set) when i is out of range or the data is
 * not aligned to its element size (possible only with a header length that
 * is not a multiple of 8, which neither mtft nor the HF writers produce); a
 * tensor of zero elements gives a valid non-NULL pointer with *nbytes 0. */
MTFT_API const void *mtft_safetensors_data(const mtft_safetensors *st, int i, size_t *nbytes);

/* Load the tensors of a parameter group (allocated with
 * mtft_param_group_alloc) from the file: tensor "X" of the group reads file
 * tensor prefix + "X" (prefix may be NULL or ""), with an exact shape check
 * (a mismatch is always MTFT_ESHAPE) and dtype conversion as in read_f32.
 * strict != 0: a group tensor missing from the file is MTFT_ENOTFOUND naming
 * the missing ones, and nothing is loaded. strict == 0: missing tensors keep
 * their values. In both modes file tensors that start with the prefix but
 * match no group tensor are reported in a warning through the log, together
 * with the counts. Returns the number of tensors loaded (>= 0) or an error. */
MTFT_API int mtft_safetensors_load_group(const mtft_safetensors *st, mtft_param_group *pg, const char *prefix,
                                         int strict);

/* Write n F32 tensors to `path` atomically: the data goes to "<path>.tmp",
 * which is fsync'ed and renamed over `path`, then the directory is fsync'ed;
 * on failure `path` is untouched and the temporary file is removed. The
 * header is padded with spaces so that the data starts at a multiple of 8
 * bytes; tensors are stored in the order given. Names must be non-empty,
 * unique and not "__metadata__". Strided views are written in logical
 * (row-major) order. meta_kv: NULL, or a NULL-terminated list
 * key0, value0, key1, value1, ..., NULL stored in "__metadata__". */
MTFT_API int mtft_safetensors_save(const char *path, int n, const char *const *names,
                                   mtft_tensor *const *tensors, const char *const *meta_kv);
/* The same from raw contiguous float arrays: tensor i has ndims[i] dims
 * (0..MTFT_SAFETENSORS_MAX_DIMS) with sizes shapes[i][0..ndims[i]-1] and its
 * values at data[i]. */
MTFT_API int mtft_safetensors_save_raw(const char *path, int n, const char *const *names,
                                       const float *const *data, const int *ndims,
                                       const int64_t *const *shapes, const char *const *meta_kv);

/* Exact conversions of one IEEE half (binary16) or bfloat16 value to f32
 * (subnormals, infinities, signed zeros; NaNs stay NaNs with their payload). */
MTFT_API float mtft_f16_to_f32(uint16_t h);
MTFT_API float mtft_bf16_to_f32(uint16_t b);

/* ---- Hugging Face config.json ------------------------------------------------ */

typedef enum mtft_hf_arch {
    MTFT_HF_ARCH_GPT2 = 1,  /* model_type "gpt2" */
    MTFT_HF_ARCH_LLAMA = 2  /* "llama", "mistral", "qwen2": pre-norm RMSNorm, RoPE, SwiGLU */
} mtft_hf_arch;

/* A model's config, caller-allocated; filled by mtft_hf_config_load() with
 * the file's values or, for keys the file does not set (or sets to null),
 * the defaults of the transformers config class of its model_type (listed in
 * docs/io.md and after each field as gpt2 / llama / mistral / qwen2). Names
 * follow the LLaMA keys; the GPT-2 key is given where it differs. */
typedef struct mtft_hf_config {
    char model_type[32];            /* "gpt2", "llama", "mistral", "qwen2" (required key) */
    mtft_hf_arch arch;
    int64_t vocab_size;             /* 50257 / 32000 / 32000 / 151936 */
    int64_t hidden_size;            /* gpt2 n_embd: 768 / 4096 / 4096 / 4096 */
    int64_t intermediate_size;      /* gpt2 n_inner (null: 4*n_embd) / 11008 / 14336 / 22016 */
    int64_t num_hidden_layers;      /* gpt2 n_layer: 12 / 32 / 32 / 32 */
    int64_t num_attention_heads;    /* gpt2 n_head: 12 / 32 / 32 / 32 */
    int64_t num_key_value_heads;    /* gpt2: = heads / null: = heads / 8 / null: = heads */
    int64_t head_dim;               /* hidden_size / heads unless the file sets head_dim */
    int64_t max_position_embeddings;/* gpt2 n_positions: 1024 / 2048 / 131072 / 32768 */
    double norm_eps;                /* gpt2 layer_norm_epsilon 1e-5 / rms_norm_eps 1e-6 (all three) */
    double rope_theta;              /* 0 for gpt2 (no RoPE) / 10000 */
    int tie_word_embeddings;        /* 1 / 0 / 0 / 0 */
    char hidden_act[32];            /* gpt2 activation_function "gelu_new" / "silu" */
    int attention_bias;             /* 1 for gpt2 and qwen2 (q,k,v biases); llama: key attention_bias, 0 */
    int mlp_bias;                   /* 1 for gpt2; llama: key mlp_bias, 0 */
    float resid_pdrop;              /* gpt2 0.1; others 0 */
    float embd_pdrop;               /* gpt2 0.1; others 0 */
    float attn_pdrop;               /* gpt2 0.1; others attention_dropout 0 */
    int64_t sliding_window;         /* 0 = none; mistral 4096 (key sliding_window, null = none);
                                       qwen2 only when use_sliding_window is true */
    int64_t bos_token_id;           /* 50256 / 1 / 1 / -1 (-1: unset or null) */
    int64_t eos_token_id;           /* 50256 / 2 / 2 / -1; the first one when the file gives a list */
    int64_t pad_token_id;           /* -1 unless set */
    char rope_scaling_type[32];     /* "" when rope_scaling is absent or null, else its rope_type/type */
    double rope_scaling_factor;     /* 1 unless rope_scaling sets factor */
    int causal;                     /* 1 unless the file sets "mtft_causal": false (what mtft_model_save_hf
                                       writes for a bidirectional encoder; transformers ignores the key) */
} mtft_hf_config;

/* Read a config.json. Errors name the file (file:line:col where the text
 * allows), the key and the expected type: MTFT_EIO (cannot read),
 * MTFT_EFORMAT (invalid JSON, wrong type), MTFT_EUNSUPPORTED (model_type not
 * one of the above), MTFT_ERANGE (sizes <= 0, heads not dividing hidden_size,
 * kv heads not dividing heads, eps <= 0). On error *out is zeroed. */
MTFT_API int mtft_hf_config_load(mtft_hf_config *out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
