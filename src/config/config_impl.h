/* Internal config machinery: a YAML tree with line/column marks (yaml.c is
 * the only file that sees libyaml), schema tables, and the generic
 * validator that fills option structs from a tree. Not installed.
 *
 * Adding a section: write an mtft_cfg_key table for its option struct
 * (kind, offset, default text, range or enum names, doc), wrap it in an
 * mtft_cfg_section, and add an mtft_cfg_root entry in config.c (plus a
 * public accessor). Validation, unknown-key suggestions, range checks,
 * error marks and docs/config.md then come for free. */
#ifndef MTFT_CONFIG_IMPL_H
#define MTFT_CONFIG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "mtft/config.h"

/* ---- tree ------------------------------------------------------------------- */
typedef enum mtft_cnode_kind { MTFT_CN_SCALAR = 0, MTFT_CN_SEQ = 1, MTFT_CN_MAP = 2 } mtft_cnode_kind;

typedef struct mtft_cnode mtft_cnode;
struct mtft_cnode {
    mtft_cnode_kind kind;
    int line, col;    /* 1-based, where the node starts */
    char *value;      /* scalar text (NUL-terminated) */
    int plain;        /* scalar written without quotes or block style */
    int n;            /* sequence items / mapping pairs */
    mtft_cnode **items; /* sequence items, or mapping values */
    mtft_cnode **keys;  /* mapping keys (scalars) */
};

/* Parse YAML text (the first and only document) into a tree. name is used
 * in messages ("run.yaml:3:5: ..."). An empty document gives an empty map.
 * Errors: MTFT_EFORMAT with libyaml's problem and position, non-scalar or
 * duplicate mapping keys, more than one document, nesting deeper than 64. */
int mtft_cfg__parse(const char *text, size_t len, const char *name, mtft_cnode **out);
void mtft_cfg__free(mtft_cnode *n);
/* Value of key in a mapping, or NULL. */
const mtft_cnode *mtft_cfg__get(const mtft_cnode *map, const char *key);
/* A plain scalar spelling null ("", "~", "null"). */
int mtft_cfg__is_null(const mtft_cnode *n);
const char *mtft_cfg__kind_name(const mtft_cnode *n);

/* ---- schema --------------------------------------------------------------------- */
typedef enum mtft_cfg_kind {
    MTFT_CK_BOOL = 0,    /* int: true / false */
    MTFT_CK_INT,         /* int */
    MTFT_CK_INT32,       /* int32_t */
    MTFT_CK_U64,         /* uint64_t */
    MTFT_CK_DOUBLE,      /* double */
    MTFT_CK_FLOAT,       /* float */
    MTFT_CK_STRING,      /* const char * (owned by the config) */
    MTFT_CK_PATH,        /* const char *, relative to the config file's directory */
    MTFT_CK_ENUM,        /* int-sized enum: the index of the name */
    MTFT_CK_STRLIST,     /* const char *const * at offset, int count at count_offset */
    MTFT_CK_SECTION,     /* a nested mapping; its keys' offsets are relative to target + offset */
    MTFT_CK_INT64,       /* int64_t */
    MTFT_CK_PATHLIST,    /* as STRLIST, each item a path relative to the config file */
    MTFT_CK_FLOATLIST,   /* const float * at offset, int count at count_offset; min/max per item */
    MTFT_CK_DOUBLELIST   /* const double * at offset, int count at count_offset; min/max per item */
} mtft_cfg_kind;

typedef struct mtft_cfg_section mtft_cfg_section;

#define MTFT_CFG_RANGE 1       /* min/max apply */
#define MTFT_CFG_MAX_OPEN 2    /* max is exclusive */
#define MTFT_CFG_REQUIRED 4
#define MTFT_CFG_NULLABLE 8    /* null (~) is allowed and stores NULL / keeps the default */
#define MTFT_CFG_DESCRIBED 16  /* dflt describes the default in words (not a YAML value) */

typedef struct mtft_cfg_key {
    const char *name;
    mtft_cfg_kind kind;
    size_t offset;
    size_t count_offset;
    const char *dflt;                 /* the default, as YAML text ("" = none / NULL) */
    int flags;
    double min, max;
    const char *const *enum_names;    /* NULL-terminated */
    const mtft_cfg_section *sub;
    const char *doc;
} mtft_cfg_key;

struct mtft_cfg_section {
    const char *name;
    const mtft_cfg_key *keys;
    int n_keys;
    const char *doc;
};

/* Where a field was set: its address, the value node and the key path
 * (owned by the context). Cross-key checks locate their errors with it,
 * and a field set by two keys (train.lr and optimizer.lr) is an error. */
typedef struct mtft_cfg_written {
    const void *addr;
    const mtft_cnode *node;
    const char *path;
} mtft_cfg_written;

/* Fill-in context: the file name for messages, the directory for relative
 * paths, and the string storage (freed with the config). Zero-initialise. */
typedef struct mtft_cfg_ctx {
    const char *file;
    const char *base_dir;  /* NULL: paths as given */
    char **strs;
    int n_strs, cap_strs;
    const char ***lists;   /* string arrays and number arrays */
    int n_lists, cap_lists;
    mtft_cfg_written *written; /* valid while the tree lives */
    int n_written, cap_written;
} mtft_cfg_ctx;

/* Validate `map` against `sec` and write the values into target (which
 * holds the defaults already). path is the key path of the map
 * ("tasks[2]"). Errors: "file:line:col: path.key: what". */
int mtft_cfg__apply(mtft_cfg_ctx *ctx, const mtft_cnode *map, const mtft_cfg_section *sec, void *target,
                    const char *path);
/* Raise an error located at a node. */
int mtft_cfg__errat(const mtft_cfg_ctx *ctx, const mtft_cnode *at, int code, const char *path, const char *fmt, ...)
    MTFT_PRINTF(5, 6);
char *mtft_cfg__keep(mtft_cfg_ctx *ctx, const char *s);
/* The record of the field at addr, or NULL when no key set it. */
const mtft_cfg_written *mtft_cfg__where(const mtft_cfg_ctx *ctx, const void *addr);
void mtft_cfg__ctx_dispose(mtft_cfg_ctx *ctx);

/* Levenshtein distance (bytes). */
int mtft_cfg__edit_distance(const char *a, const char *b);
/* The candidate nearest to s, or NULL when none is close
 * (distance > max(2, strlen(s) / 3)). */
const char *mtft_cfg__suggest(const char *s, const char *const *cands, int n);

/* Markdown table of a section (rows for nested sections use dotted paths). */
int mtft_cfg__section_markdown(const mtft_cfg_section *sec, const char *prefix, char **buf, size_t *len, size_t *cap);

/* ---- the run -------------------------------------------------------------------- */

/* Every option struct a config fills: all root sections other than tasks:
 * write into one of these (so two keys setting the same field are caught). */
typedef struct mtft_cfg_run {
    mtft_model_config model;
    mtft_run_options run;
    mtft_lora_options lora;
    mtft_adapter_options adapter;
    mtft_trainer_options trainer;
    mtft_adamw_options adamw;
    mtft_schedule_options schedule;
    mtft_pretrain_options pretrain;
    mtft_data_options data;
    mtft_loader_options loader;
    mtft_collate_options collate;
    const char *const *pretrain_texts;
    int n_pretrain_texts;
    int n_sampler_weights, n_sampler_end_weights, n_static_weights;
} mtft_cfg_run;

/* One entry of tasks:. */
typedef struct mtft_cfg_task {
    mtft_task_options task;
    mtft_head_options head;
    int has_head;
} mtft_cfg_task;

/* A top-level section (tasks: is handled apart). */
typedef struct mtft_cfg_root {
    const char *name;
    const mtft_cfg_section *sec;
    const char *title; /* heading in the reference */
    const char *intro; /* a paragraph under the heading, or NULL */
} mtft_cfg_root;

void mtft_cfg__init_run(mtft_cfg_run *r);
void mtft_cfg__init_task(mtft_cfg_task *t);
/* The root sections in reference order. */
const mtft_cfg_root *mtft_cfg__roots(int *n);
const mtft_cfg_section *mtft_cfg__task_section(void);
const mtft_cfg_section *mtft_cfg__head_section(void);
/* Cross-key checks and derived values after every section is applied,
 * with errors located through ctx->written; n_tasks for per-task lists. */
int mtft_cfg__finish_run(mtft_cfg_ctx *ctx, mtft_cfg_run *r, int n_tasks);

#endif
