/*  zim_util.h: the few helpers every folder shares: the allocator wrapper
    that aborts on out-of-memory, the clock, and the actor command
    conventions (see docs/ARCHITECTURE.md, "Actors").
*/
#ifndef ZIM_UTIL_H_INCLUDED
#define ZIM_UTIL_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Allocate or abort: out of memory is not an error we can answer.
void *zim_malloc (size_t size);
void *zim_calloc (size_t count, size_t size);
void *zim_realloc (void *ptr, size_t size);
//  Caller owns return value.
char *zim_strdup (const char *s);
//  Frees *p and sets it to NULL.
#define zim_free(p)                                                                                \
    do {                                                                                           \
        free (*(p));                                                                               \
        *(p) = NULL;                                                                               \
    } while (0)

//  Wall clock in milliseconds since the epoch (message timestamps).
uint64_t zim_now_ms (void);
//  Monotonic clock in microseconds (latency, timers).
uint64_t zim_mono_us (void);
//  Sleeps until gap_us after since (a zim_mono_us time), if that is still
//  ahead; returns zim_mono_us () after. The pacing of busy loops under
//  load: the store's group commits, the broker's turns.
uint64_t zim_mono_pace (uint64_t since, uint64_t gap_us);

//  Parses a decimal unsigned integer that must fill the whole string;
//  returns 0 or -1 (empty, junk, overflow).
int zim_parse_u64 (const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
