/*  =========================================================================
    zim_benchkit - what zim-bench and mqtt-bench share: the clock, the
    --rate schedule, the stamp in each message, and the report, so that the
    two tools compute and print their figures the same way (tools/bench-compare
    sets them side by side).
    =========================================================================
*/

#ifndef ZIM_BENCHKIT_H_INCLUDED
#define ZIM_BENCHKIT_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  Bytes of the stamp at the start of each message body: the send time
//  (8 bytes), the pair's index (4) and the message's number (4), little
//  endian.
#define ZIM_BENCHKIT_STAMP 16

//  One run's figures. Times are monotonic microseconds.
typedef struct {
    const char *program;    //  "zim-bench"
    const char *what;       //  the header's end: "512-byte bodies, ws://..."
    const char *setup;      //  the setup line's text
    uint32_t pairs, messages, window, size, rate;
    uint64_t acked, delivered, errors, duplicates, out_of_order, seq_gaps, unexpected;
    uint64_t t_first_send, t_last_ack, t_last_delivery;
    uint32_t *latency;      //  send (or scheduled send) to delivery, µs;
    uint64_t nlatency;      //  sorted in place by the report
    uint32_t *lag;          //  --rate: how late each send left, µs; sorted
    uint64_t nlag;          //  in place too
    double cpu_s;           //  this process's CPU seconds during the run
    double connect_s;       //  seconds to connect everything
} zim_benchkit_t;

//  Monotonic clock, microseconds.
uint64_t zim_benchkit_now_us (void);
//  CPU seconds (user + system) this process used so far.
double zim_benchkit_cpu_s (void);
//  Sleeps us microseconds.
void zim_benchkit_sleep_us (uint64_t us);
//  When message n of pair index is due under --rate (messages per second
//  over all pairs, pairs interleaved), counted from t_first_send.
uint64_t zim_benchkit_due_us (uint64_t t_first_send, uint32_t rate, uint32_t pairs,
                              uint32_t index, uint32_t n);
//  Writes the stamp (ZIM_BENCHKIT_STAMP bytes) into p.
void zim_benchkit_stamp (uint8_t *p, uint64_t t_us, uint32_t index, uint32_t n);
//  Reads a stamp from p.
void zim_benchkit_unstamp (const uint8_t *p, uint64_t *t_us, uint32_t *index, uint32_t *n);
//  Parses a decimal number from 1 to max. Returns 0 or -1.
int zim_benchkit_parse_num (const char *s, uint32_t max, uint32_t *out);
//  Prints the report (one JSON line if json, else a few lines for people)
//  and returns true if anything was lost, duplicated, reordered or wrong.
bool zim_benchkit_report (zim_benchkit_t *r, bool json);

//  A latency histogram for runs too large to keep every sample (room and
//  push fan-out): exact below 256 µs, then 128 buckets per power of two
//  (under 0.8 % error), up to 2^32 µs. Plain counters, so that processes
//  can each fill one in shared memory and the parent sum them.
#define ZIM_BENCHKIT_HIST 3328
typedef struct {
    uint64_t n;                          //  samples
    uint64_t bucket[ZIM_BENCHKIT_HIST];  //  samples per bucket
} zim_benchkit_hist_t;

//  Counts one sample of us microseconds.
void zim_benchkit_hist_add (zim_benchkit_hist_t *h, uint64_t us);
//  Adds every sample of from to h.
void zim_benchkit_hist_merge (zim_benchkit_hist_t *h, const zim_benchkit_hist_t *from);
//  The p-th percentile (0..100) in ms: the lower bound of its bucket; 0
//  without samples.
double zim_benchkit_hist_pct_ms (const zim_benchkit_hist_t *h, double p);

#endif
