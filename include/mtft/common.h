/* mtft: export macro, status codes, the thread-local last error, logging,
 * threads and the BLAS runtime. Every other public header includes this. */
#ifndef MTFT_COMMON_H
#define MTFT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(MTFT_STATIC)
#define MTFT_API
#elif defined(_WIN32)
#if defined(MTFT_BUILDING)
#define MTFT_API __declspec(dllexport)
#else
#define MTFT_API __declspec(dllimport)
#endif
#else
#define MTFT_API __attribute__((visibility("default")))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MTFT_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#define MTFT_DEPRECATED(msg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Fallible calls return MTFT_OK or one of these negative codes.
 * Append only: a value, once released, never changes meaning. */
typedef enum mtft_status {
    MTFT_OK = 0,
    MTFT_ERROR = -1,        /* unclassified failure */
    MTFT_EINVAL = -2,       /* invalid argument or option */
    MTFT_ENOMEM = -3,       /* allocation failed */
    MTFT_EIO = -4,          /* file could not be opened, read or written */
    MTFT_EFORMAT = -5,      /* malformed or corrupt input (JSON, YAML, safetensors, ...) */
    MTFT_ESHAPE = -6,       /* tensor shapes do not fit together */
    MTFT_ENOTFOUND = -7,    /* a named thing (tensor, key, task, file) does not exist */
    MTFT_EUSER = -8,        /* a user callback asked to stop */
    MTFT_ERANGE = -9,       /* value outside its allowed range */
    MTFT_EUNSUPPORTED = -10,/* valid but not supported (dtype, feature, platform) */
    MTFT_ENUMERIC = -11,    /* non-finite value where a finite one is required */
    MTFT_ESTATE = -12       /* call not valid in the object's current state */
} mtft_status;

/* The last error raised on the calling thread. */
typedef struct mtft_error {
    int code;            /* an mtft_status */
    const char *message; /* never NULL; "" when there is no error */
} mtft_error;

/* The last error of this thread. The pointer and its message stay valid until
 * the next mtft call on this thread. Never NULL. */
MTFT_API const mtft_error *mtft_error_last(void);
/* Forget this thread's last error. */
MTFT_API void mtft_error_clear(void);
/* Static description of a status code ("invalid argument", ...). */
MTFT_API const char *mtft_status_str(int code);

/* Logging. One process-wide callback; the default writes to stderr. */
typedef enum mtft_log_level {
    MTFT_LOG_DEBUG = 0,
    MTFT_LOG_INFO = 1,
    MTFT_LOG_WARN = 2,
    MTFT_LOG_ERROR = 3,
    MTFT_LOG_NONE = 4
} mtft_log_level;

typedef void (*mtft_log_cb)(mtft_log_level level, const char *msg, void *payload);

/* Install a log callback (NULL restores the stderr default). */
MTFT_API void mtft_log_set(mtft_log_cb cb, void *payload);
/* Messages below this level are dropped (default MTFT_LOG_INFO). */
MTFT_API void mtft_log_set_level(mtft_log_level level);
MTFT_API mtft_log_level mtft_log_get_level(void);

/* Threads. n > 0 sets the thread count of mtft's OpenMP loops and of
 * OpenBLAS (process-wide); n <= 0 restores the default (all cores). */
MTFT_API void mtft_set_num_threads(int n);
MTFT_API int mtft_get_num_threads(void);

/* The OpenBLAS kernel in use ("SkylakeX", "Haswell", "Prescott", ...). */
MTFT_API const char *mtft_blas_corename(void);
/* The thread model OpenBLAS was built with: "openmp", "pthread" or "serial". */
MTFT_API const char *mtft_blas_threading(void);
/* The best OpenBLAS core type for this CPU by its features
 * ("SKYLAKEX", "HASWELL", ...), or NULL when none is better than the default. */
MTFT_API const char *mtft_cpu_best_blas_coretype(void);
/* 1 when the kernel in use is a generic fallback (Prescott, Core2, ...) on a
 * CPU that supports a faster one. */
MTFT_API int mtft_blas_is_fallback(void);

/* Make a program end up on the fast OpenBLAS kernel. OpenBLAS picks its
 * kernel in its load-time constructor, so the only remedy is to restart the
 * program with OPENBLAS_CORETYPE set. Call first thing in main():
 * when OPENBLAS_CORETYPE is unset and the kernel in use is a generic fallback,
 * it sets OPENBLAS_CORETYPE to the best core type for this CPU and re-executes
 * the program (it does not return then). A value that the environment already
 * sets is never overridden, and MTFT_NO_REEXEC=1 disables the restart.
 * Returns MTFT_OK when no restart was needed, or an error if exec failed (the
 * program may continue on the slow kernel). */
MTFT_API int mtft_blas_ensure_fast_kernel(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
