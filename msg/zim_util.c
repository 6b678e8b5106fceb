/*  zim_util.c: allocator wrapper, clocks and number parsing shared by all
    folders.
*/
#include "msg/zim_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  One place decides what out-of-memory does: log and abort.
static void s_oom (size_t size)
{
    fprintf (stderr, "zim: out of memory allocating %zu bytes\n", size);
    abort ();
}

void *zim_malloc (size_t size)
{
    void *p = malloc (size ? size : 1);
    if (!p)
        s_oom (size);
    return p;
}

void *zim_calloc (size_t count, size_t size)
{
    void *p = calloc (count ? count : 1, size ? size : 1);
    if (!p)
        s_oom (count * size);
    return p;
}

void *zim_realloc (void *ptr, size_t size)
{
    void *p = realloc (ptr, size ? size : 1);
    if (!p)
        s_oom (size);
    return p;
}

char *zim_strdup (const char *s)
{
    size_t n = strlen (s) + 1;
    char *p = zim_malloc (n);
    memcpy (p, s, n);
    return p;
}

uint64_t zim_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t zim_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t zim_mono_pace (uint64_t since, uint64_t gap_us)
{
    uint64_t now = zim_mono_us ();
    if (now - since >= gap_us)
        return now;
    usleep ((useconds_t)(gap_us - (now - since)));
    return zim_mono_us ();
}

int zim_parse_u64 (const char *s, uint64_t *out)
{
    if (!s || !*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull (s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}
