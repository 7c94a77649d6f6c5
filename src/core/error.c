/* Status strings and the thread-local last error (libgit2's model). */
#include <stdio.h>
#include <string.h>

#include "core.h"

#define MTFT_ERRMSG_MAX 1024

static _Thread_local char tl_msg[MTFT_ERRMSG_MAX];
static _Thread_local mtft_error tl_err = {MTFT_OK, NULL};

const char *mtft_status_str(int code) {
    switch (code) {
    case MTFT_OK: return "ok";
    case MTFT_ERROR: return "error";
    case MTFT_EINVAL: return "invalid argument";
    case MTFT_ENOMEM: return "out of memory";
    case MTFT_EIO: return "input/output error";
    case MTFT_EFORMAT: return "malformed input";
    case MTFT_ESHAPE: return "shape mismatch";
    case MTFT_ENOTFOUND: return "not found";
    case MTFT_EUSER: return "stopped by callback";
    case MTFT_ERANGE: return "value out of range";
    case MTFT_EUNSUPPORTED: return "unsupported";
    case MTFT_ENUMERIC: return "non-finite value";
    case MTFT_ESTATE: return "invalid state";
    default: return "unknown status";
    }
}

const mtft_error *mtft_error_last(void) {
    if (!tl_err.message) tl_err.message = tl_msg;
    return &tl_err;
}

void mtft_error_clear(void) {
    tl_msg[0] = '\0';
    tl_err.code = MTFT_OK;
    tl_err.message = tl_msg;
}

int mtft__verr(int code, const char *fmt, va_list ap) {
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    tl_err.code = code;
    tl_err.message = tl_msg;
    return code;
}

int mtft__err(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mtft__verr(code, fmt, ap);
    va_end(ap);
    return code;
}

void mtft__err_prefix(const char *fmt, ...) {
    char pre[MTFT_ERRMSG_MAX], old[MTFT_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, tl_msg, sizeof old);
    size_t np = strlen(pre);
    if (np > sizeof tl_msg - 3) np = sizeof tl_msg - 3;
    memcpy(tl_msg, pre, np);
    tl_msg[np] = ':';
    tl_msg[np + 1] = ' ';
    size_t room = sizeof tl_msg - np - 3, no = strnlen(old, room);
    memcpy(tl_msg + np + 2, old, no);
    tl_msg[np + 2 + no] = '\0';
    tl_err.message = tl_msg;
}
