/* mtft: version macros and the runtime version query. */
#ifndef MTFT_VERSION_H
#define MTFT_VERSION_H

#include "mtft/common.h"

#define MTFT_VERSION_MAJOR 0
#define MTFT_VERSION_MINOR 1
#define MTFT_VERSION_PATCH 0
#define MTFT_VERSION_STRING "0.1.0"
/* One integer, ordered: 0xMMmmpp. */
#define MTFT_VERSION_NUMBER \
    ((MTFT_VERSION_MAJOR << 16) | (MTFT_VERSION_MINOR << 8) | MTFT_VERSION_PATCH)
/* True when the headers are at least version a.b.c. */
#define MTFT_VERSION_CHECK(a, b, c) (MTFT_VERSION_NUMBER >= (((a) << 16) | ((b) << 8) | (c)))

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually linked; any out-pointer may be NULL.
 * Returns MTFT_VERSION_NUMBER of the library, so a program can compare it
 * with the headers it was compiled against. */
MTFT_API int mtft_version(int *major, int *minor, int *patch);
/* "0.1.0", static storage. */
MTFT_API const char *mtft_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
