/* mtft config: a YAML file (libyaml) turned into the same option structs a C
 * program fills by hand. Nothing in the C API needs a file: every struct
 * returned here can be built with its MTFT_*_OPTIONS_INIT macro instead.
 *
 * Sections implemented so far (docs/config.md lists every key with its
 * type, default and range):
 *   tasks:  a list of task definitions  -> mtft_task_options (mtft/task.h)
 *   data:   pipeline options            -> mtft_data_options, mtft_loader_options,
 *                                          mtft_collate_options (mtft/data.h)
 * Errors give file:line:column and the key path, e.g.
 *   run.yaml:12:7: tasks[2].type: unknown value 'ner2' (expected one of: classification, ...)
 *   run.yaml:4:5: tasks[0].lables: unknown key 'lables' (did you mean 'labels'?)
 * Unknown keys are rejected (with the nearest valid key suggested), values
 * are type- and range-checked, and each task goes through the same checks as
 * mtft_task_new(). Relative paths are relative to the config file. */
#ifndef MTFT_CONFIG_H
#define MTFT_CONFIG_H

#include "mtft/common.h"
#include "mtft/data.h"
#include "mtft/task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_config mtft_config;

/* Parse and validate a YAML file. On error *out is NULL and the thread's
 * error holds "path:line:col: key.path: what". */
MTFT_API int mtft_config_load_file(mtft_config **out, const char *path);
/* The same from memory. name is used in messages; base_dir (may be NULL)
 * is the directory relative paths are resolved against. */
MTFT_API int mtft_config_load_string(mtft_config **out, const char *text, size_t len, const char *name,
                                     const char *base_dir);
MTFT_API void mtft_config_free(mtft_config *cfg);

/* The tasks: section (borrowed; valid until mtft_config_free). */
MTFT_API int mtft_config_n_tasks(const mtft_config *cfg);
MTFT_API const mtft_task_options *mtft_config_task(const mtft_config *cfg, int i);
/* The data: section; defaults (the _INIT values) when the file has none. */
MTFT_API const mtft_data_options *mtft_config_data(const mtft_config *cfg);
MTFT_API const mtft_loader_options *mtft_config_loader(const mtft_config *cfg);
MTFT_API const mtft_collate_options *mtft_config_collate(const mtft_config *cfg);
/* 1 when the file has the top-level section `name`. */
MTFT_API int mtft_config_has_section(const mtft_config *cfg, const char *name);

/* The key reference (Markdown tables generated from the schema tables, as
 * in docs/config.md). Writes up to cap bytes (NUL-terminated when it fits),
 * sets *len_out to the full length; MTFT_ERANGE when cap <= *len_out. */
MTFT_API int mtft_config_reference_markdown(char *buf, size_t cap, size_t *len_out);

#ifdef __cplusplus
}
#endif
#endif
