#include "mtft/version.h"

int mtft_version(int *major, int *minor, int *patch) {
    if (major) *major = MTFT_VERSION_MAJOR;
    if (minor) *minor = MTFT_VERSION_MINOR;
    if (patch) *patch = MTFT_VERSION_PATCH;
    return MTFT_VERSION_NUMBER;
}

const char *mtft_version_string(void) { return MTFT_VERSION_STRING; }
