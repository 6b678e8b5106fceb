/*  =========================================================================
    zim_benchkit - what zim-bench and mqtt-bench share (see the header).
    =========================================================================
*/

#include "tools/zim_benchkit.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

uint64_t zim_benchkit_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

double zim_benchkit_cpu_s (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

void zim_benchkit_sleep_us (uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep (&ts, NULL);
}

uint64_t zim_benchkit_due_us (uint64_t t_first_send, uint32_t rate, uint32_t pairs,
                              uint32_t index, uint32_t n)
{
    uint64_t k = (uint64_t)n * pairs + index;
    return t_first_send + (uint64_t)((double)k * 1e6 / rate);
}

//  Writes v little-endian into p.
static void s_put (uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

//  Reads a little-endian number of bytes bytes from p.
static uint64_t s_get (const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void zim_benchkit_stamp (uint8_t *p, uint64_t t_us, uint32_t index, uint32_t n)
{
    s_put (p, t_us, 8);
    s_put (p + 8, index, 4);
    s_put (p + 12, n, 4);
}

void zim_benchkit_unstamp (const uint8_t *p, uint64_t *t_us, uint32_t *index, uint32_t *n)
{
    *t_us = s_get (p, 8);
    *index = (uint32_t)s_get (p + 8, 4);
    *n = (uint32_t)s_get (p + 12, 4);
}

int zim_benchkit_parse_num (const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull (s, &end, 10);
    if (errno || *end || v == 0 || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int s_cmp_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

//  The p-th percentile of n sorted values, in ms.
static double s_pct_ms (const uint32_t *v, uint64_t n, int p)
{
    return n ? v[(n - 1) * (uint64_t)p / 100] / 1000.0 : 0;
}

bool zim_benchkit_report (zim_benchkit_t *r, bool json)
{
    uint64_t total = (uint64_t)r->pairs * r->messages;
    uint64_t missing = total > r->delivered + r->errors ? total - r->delivered - r->errors : 0;
    double span = r->t_last_delivery > r->t_first_send
                      ? (double)(r->t_last_delivery - r->t_first_send) / 1e6
                      : 0;
    double ack_span =
        r->t_last_ack > r->t_first_send ? (double)(r->t_last_ack - r->t_first_send) / 1e6 : 0;
    double rate = span > 0 ? (double)r->delivered / span : 0;
    double ack_rate = ack_span > 0 ? (double)r->acked / ack_span : 0;
    if (r->nlatency)
        qsort (r->latency, r->nlatency, sizeof *r->latency, s_cmp_u32);
    double p50 = s_pct_ms (r->latency, r->nlatency, 50);
    double p99 = s_pct_ms (r->latency, r->nlatency, 99);
    double pmax = s_pct_ms (r->latency, r->nlatency, 100);
    if (r->nlag)
        qsort (r->lag, r->nlag, sizeof *r->lag, s_cmp_u32);
    double lag50 = s_pct_ms (r->lag, r->nlag, 50);
    double lag99 = s_pct_ms (r->lag, r->nlag, 99);
    if (json)
        printf ("{\"scenario\":\"p2p\",\"pairs\":%u,\"messages\":%u,\"window\":%u,\"size\":%u,"
                "\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"delivered\":%" PRIu64
                ",\"errors\":%" PRIu64 ",\"missing\":%" PRIu64 ",\"duplicates\":%" PRIu64
                ",\"out_of_order\":%" PRIu64 ",\"seq_gaps\":%" PRIu64 ",\"unexpected\":%" PRIu64
                ",\"elapsed_s\":%.3f,\"msgs_per_s\":%.1f,\"acks_per_s\":%.1f,"
                "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"client_cpu_s\":%.3f,"
                "\"connect_s\":%.3f,\"rate\":%u,\"behind_p50_ms\":%.3f,"
                "\"behind_p99_ms\":%.3f}\n",
                r->pairs, r->messages, r->window, r->size, total, r->acked, r->delivered,
                r->errors, missing, r->duplicates, r->out_of_order, r->seq_gaps, r->unexpected,
                span, rate, ack_rate, p50, p99, pmax, r->cpu_s, r->connect_s, r->rate, lag50,
                lag99);
    else {
        printf ("%s p2p: %u pairs x %u messages, window %u, %s\n", r->program, r->pairs,
                r->messages, r->window, r->what);
        if (r->rate)
            printf ("  offered    %u msgs/s, paced open-loop; sends behind schedule p50 "
                    "%.2f ms, p99 %.2f ms\n",
                    r->rate, lag50, lag99);
        else
            printf ("  offered    as fast as the window allows (closed-loop)\n");
        printf ("  setup      %s\n", r->setup);
        printf ("  delivered  %" PRIu64 " of %" PRIu64 " in %.3f s: %.0f msgs/s\n", r->delivered,
                total, span, rate);
        printf ("  acked      %" PRIu64 " in %.3f s: %.0f acks/s\n", r->acked, ack_span, ack_rate);
        printf ("  latency    p50 %.2f ms, p99 %.2f ms, max %.2f ms (%s to delivery)\n", p50, p99,
                pmax, r->rate ? "scheduled send" : "send");
        printf ("  problems   %" PRIu64 " errors, %" PRIu64 " missing, %" PRIu64
                " duplicates, %" PRIu64 " out of order, %" PRIu64 " seq gaps, %" PRIu64
                " unexpected\n",
                r->errors, missing, r->duplicates, r->out_of_order, r->seq_gaps, r->unexpected);
        printf ("  client     %.2f s CPU (%.1f us per message)\n", r->cpu_s,
                r->delivered ? r->cpu_s * 1e6 / (double)r->delivered : 0);
    }
    return r->errors || missing || r->duplicates || r->out_of_order || r->seq_gaps ||
           r->unexpected;
}

//  The bucket of a sample: exact below 256, then 7 bits of mantissa.
static uint32_t s_hist_index (uint64_t us)
{
    if (us > UINT32_MAX)
        us = UINT32_MAX;
    if (us < 256)
        return (uint32_t)us;
    int b = 63 - __builtin_clzll (us); //  8..31
    int shift = b - 7;
    return 256 + (uint32_t)(b - 8) * 128 + (uint32_t)((us >> shift) - 128);
}

//  The lowest sample of bucket i.
static uint64_t s_hist_value (uint32_t i)
{
    if (i < 256)
        return i;
    uint32_t b = (i - 256) / 128 + 8, m = (i - 256) % 128 + 128;
    return (uint64_t)m << (b - 7);
}

void zim_benchkit_hist_add (zim_benchkit_hist_t *h, uint64_t us)
{
    h->bucket[s_hist_index (us)]++;
    h->n++;
}

void zim_benchkit_hist_merge (zim_benchkit_hist_t *h, const zim_benchkit_hist_t *from)
{
    for (uint32_t i = 0; i < ZIM_BENCHKIT_HIST; i++)
        h->bucket[i] += from->bucket[i];
    h->n += from->n;
}

double zim_benchkit_hist_pct_ms (const zim_benchkit_hist_t *h, double p)
{
    if (!h->n)
        return 0;
    //  the rank of the sample, as s_pct_ms picks it from a sorted array
    uint64_t rank = (uint64_t)((double)(h->n - 1) * p / 100.0), seen = 0;
    for (uint32_t i = 0; i < ZIM_BENCHKIT_HIST; i++) {
        seen += h->bucket[i];
        if (seen > rank)
            return (double)s_hist_value (i) / 1000.0;
    }
    return (double)s_hist_value (ZIM_BENCHKIT_HIST - 1) / 1000.0;
}
