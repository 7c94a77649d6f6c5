/* Process-wide logging callback with a stderr default. */
#include <stdatomic.h>
#include <stdio.h>

#include "core.h"

static void log_stderr(mtft_log_level level, const char *msg, void *payload) {
    static const char *names[] = {"debug", "info", "warning", "error"};
    (void)payload;
    fprintf(stderr, "mtft %s: %s\n", names[level < 4 ? level : 3], msg);
}

static mtft_log_cb g_cb = log_stderr;
static void *g_payload = NULL;
static _Atomic int g_level = MTFT_LOG_INFO;

void mtft_log_set(mtft_log_cb cb, void *payload) {
    g_cb = cb ? cb : log_stderr;
    g_payload = cb ? payload : NULL;
}

void mtft_log_set_level(mtft_log_level level) { atomic_store(&g_level, (int)level); }
mtft_log_level mtft_log_get_level(void) { return (mtft_log_level)atomic_load(&g_level); }

void mtft__log(mtft_log_level level, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    if ((int)level < atomic_load(&g_level) || level >= MTFT_LOG_NONE) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_cb(level, buf, g_payload);
}
