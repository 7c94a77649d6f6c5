/* Internal template walker shared by mtft_template_* and the task loader. */
#ifndef MTFT_DATA_TEMPLATE_H
#define MTFT_DATA_TEMPLATE_H

#include <stddef.h>

#include "core/core.h"

/* Called for each piece of the template in order: is_field 0 gives literal
 * bytes (braces already unescaped), 1 gives a placeholder name; pos is the
 * 1-based position of the piece in the template. A non-zero return stops
 * the walk and is returned. */
typedef int (*mtft_tmpl_cb)(void *ctx, int is_field, const char *s, size_t len, int pos);

/* Walk tmpl; syntax errors return MTFT_EINVAL with the position set in the
 * thread's error. */
int mtft_tmpl__walk(const char *tmpl, mtft_tmpl_cb cb, void *ctx);

#endif
