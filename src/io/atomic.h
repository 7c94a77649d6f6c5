/* Internal: atomic replacement of a small file (JSON sidecars, configs).
 * Not installed. */
#ifndef MTFT_IO_ATOMIC_H
#define MTFT_IO_ATOMIC_H

#include <stddef.h>

/* Write len bytes of data (and a '\n' after them when add_newline) to
 * "<path>.tmp", flush and fsync it, then rename it over path: readers see the
 * old file or the whole new one. On failure the temporary file is removed,
 * path is left as it was, and MTFT_EIO (MTFT_ENOMEM) is returned with a
 * message naming the file. */
int mtft_io__write_atomic(const char *path, const void *data, size_t len, int add_newline);

#endif
