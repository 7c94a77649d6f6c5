/* Atomic small-file writes: temporary file, fsync, rename (see atomic.h). */
#include "atomic.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

int mtft_io__write_atomic(const char *path, const void *data, size_t len, int add_newline) {
    MTFT_CHECK_ARG(path && *path && (data || len == 0));
    size_t pn = strlen(path);
    char *tmp = mtft__malloc(pn + 5);
    if (!tmp) return mtft__err(MTFT_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, pn);
    memcpy(tmp + pn, ".tmp", 5);
    int rc = MTFT_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = mtft__err(MTFT_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    int bad = fwrite(data, 1, len, f) != len;
    if (!bad && add_newline) bad = fputc('\n', f) == EOF;
    if (!bad) bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        remove(tmp);
        rc = mtft__err(MTFT_EIO, "error writing '%s'", tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        rc = mtft__err(MTFT_EIO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(e));
    }
done:
    mtft__free(tmp);
    return rc;
}
