/*  zim_metrics.h: the metric model every node exports to Prometheus. A
    histogram (zim_histo_t) is a plain struct of fixed buckets that an
    actor observes in its hot path: no allocation, no lock (each actor is
    single-threaded and renders its own metrics on its own thread). A
    zim_metrics_t collects families of samples and renders them in the
    Prometheus text exposition format 0.0.4 (# HELP, # TYPE, counters
    named *_total, gauges, histograms with _bucket{le=..}, _sum, _count),
    one block per family even when several actors add samples to it.

    The text of one family is also what an actor answers on its pipe
    (METRICS, msg/zim_shell.h): the process shell merges those blocks
    with zim_metrics_merge, so two brokers in one process give one family
    with two samples.
*/
#ifndef ZIM_METRICS_H_INCLUDED
#define ZIM_METRICS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Most finite buckets a histogram has (+Inf comes on top).
#define ZIM_HISTO_BUCKETS 16

//  One histogram: cumulative only when rendered; here each bucket counts
//  the observations that fell in it alone.
typedef struct {
    const uint64_t *bounds;                 //  upper bounds, ascending (static)
    uint32_t nbounds;                       //  how many (<= ZIM_HISTO_BUCKETS)
    uint64_t counts[ZIM_HISTO_BUCKETS + 1]; //  per bucket; [nbounds] is +Inf
    uint64_t count;                         //  observations
    uint64_t sum;                           //  their total, in observed units
} zim_histo_t;

//  Sets the bucket bounds (a static array, ascending) and clears the counts.
void zim_histo_init (zim_histo_t *self, const uint64_t *bounds, size_t nbounds);

//  Counts n observations of value (in the histogram's units, e.g. µs).
static inline void zim_histo_observe_n (zim_histo_t *self, uint64_t value, uint64_t n)
{
    uint32_t i = 0;
    while (i < self->nbounds && value > self->bounds[i])
        i++;
    self->counts[i] += n;
    self->count += n;
    self->sum += value * n;
}

//  Counts one observation of value.
static inline void zim_histo_observe (zim_histo_t *self, uint64_t value)
{
    zim_histo_observe_n (self, value, 1);
}

//  Bounds shared by the nodes' histograms: latencies in microseconds
//  (100 µs .. 10 s) and sizes in items (1 .. 8192).
#define ZIM_HISTO_LATENCY_N 16
#define ZIM_HISTO_SIZES_N 14
extern const uint64_t zim_histo_latency_us[ZIM_HISTO_LATENCY_N];
extern const uint64_t zim_histo_sizes[ZIM_HISTO_SIZES_N];

typedef struct _zim_metrics_t zim_metrics_t;

//  Creates an empty collection. Caller owns return value.
zim_metrics_t *zim_metrics_new (void);
//  Destroys it.
void zim_metrics_destroy (zim_metrics_t **self_p);

//  Adds a counter sample: family name + "_total" (name must not end in
//  _total), labels the text inside the braces (e.g. node="broker-1", made
//  with zim_metrics_label) or NULL. help is used when the family is new.
void zim_metrics_counter (zim_metrics_t *self, const char *name, const char *help,
                          const char *labels, uint64_t value);
//  Adds a gauge sample.
void zim_metrics_gauge (zim_metrics_t *self, const char *name, const char *help, const char *labels,
                        double value);
//  Adds a histogram: its buckets (cumulative, le in exported units), +Inf,
//  _sum and _count. scale turns observed units into exported ones (1e-6:
//  microseconds into seconds).
void zim_metrics_histo (zim_metrics_t *self, const char *name, const char *help, const char *labels,
                        const zim_histo_t *histo, double scale);

//  Writes name="value" into buf with value escaped as the format wants
//  (backslash, double quote, newline). Returns buf ("" if it did not fit).
char *zim_metrics_label (char *buf, size_t size, const char *name, const char *value);

//  Number of families.
size_t zim_metrics_size (zim_metrics_t *self);
//  The text of family i (# HELP, # TYPE and its samples). Caller owns
//  return value.
char *zim_metrics_family (zim_metrics_t *self, size_t i);
//  Merges the text of one family (as zim_metrics_family gives it): its
//  samples join the family of that name. Returns 0, or -1 if the text
//  does not start with # HELP and # TYPE lines (nothing added).
int zim_metrics_merge (zim_metrics_t *self, const char *text, size_t len);

//  The whole exposition text. Caller owns return value.
char *zim_metrics_text (zim_metrics_t *self);

//  The content type of that text.
#define ZIM_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

//  Self test of this class.
void zim_metrics_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
