/* Timing and resource helpers shared by the benchmarks in bench/.
 *
 * Include this header FIRST in a benchmark (before any system header): it
 * asks for POSIX.1-2008 so that clock_gettime and getrusage are declared
 * under -std=c11.
 *
 *   bench_now()        wall clock, seconds (CLOCK_MONOTONIC)
 *   bench_cpu_now()    CPU time of the whole process, seconds
 *                      (CLOCK_PROCESS_CPUTIME_ID: all threads)
 *   bench_median()     median of n values; sorts a copy, the input is unchanged
 *   bench_best()       smallest of n values
 *   bench_cmp_double() qsort comparator for doubles, ascending
 *   bench_peak_rss_mb() peak resident set size of this process in MiB
 *                      (getrusage; ru_maxrss is in KiB on Linux)
 *   bench_loadavg()    1-minute load average from /proc/loadavg, -1 if unknown
 */
#ifndef MTFT_BENCH_UTIL_H
#define MTFT_BENCH_UTIL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double bench_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (n >= 1); sorts a copy. NAN if n < 1 or out of memory. */
static inline double bench_median(const double *x, int n) {
    if (n < 1) return NAN;
    double *c = malloc(sizeof(double) * (size_t)n);
    if (!c) return NAN;
    memcpy(c, x, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* Smallest of n values (n >= 1); NAN if n < 1. */
static inline double bench_best(const double *x, int n) {
    if (n < 1) return NAN;
    double b = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] < b) b = x[i];
    return b;
}

static inline double bench_peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

static inline double bench_loadavg(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

#endif /* MTFT_BENCH_UTIL_H */
