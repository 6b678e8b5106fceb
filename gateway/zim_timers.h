/*  zim_timers.h: a deadline queue for timers that all share one timeout
    (every connection's idle deadline, every unauthenticated connection's
    auth deadline): restarting a timer moves it to the tail, so the queue
    stays in due order and finding what expired costs nothing per timer
    that did not. Timers are embedded in their owner (intrusive), so
    starting and stopping never allocate.

    A gateway keeps three queues (zim_sessions: idle, auth, ping), and one
    libuv timer fires at the earliest head of them (zim_timers_next_due),
    so a connection costs no timer of libwebsockets or libuv: starting,
    restarting and expiring are O(1) whatever the number of connections.
*/
#ifndef ZIM_TIMERS_H_INCLUDED
#define ZIM_TIMERS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_timers_t zim_timers_t;

//  One timer, a field of its owner. Zero it before first use.
typedef struct zim_timer_t {
    struct zim_timer_t *prev, *next; //  neighbours in the queue
    zim_timers_t *queue;             //  the queue it is on, NULL when stopped
    int64_t due_ms;                  //  monotonic ms when it expires
    void *arg;                       //  its owner, for whoever sweeps
} zim_timer_t;

//  Creates an empty queue. Caller owns return value.
zim_timers_t *zim_timers_new (void);
//  Destroys the queue; timers still on it are stopped.
void zim_timers_destroy (zim_timers_t **self_p);

//  (Re)starts timer on self to expire at due_ms, as the newest. due_ms must
//  not be before the due time of the timers already queued (one timeout per
//  queue, a monotonic clock); if the timeout shrinks at run time, the
//  timers queued before expire no later than their old due time.
void zim_timers_start (zim_timers_t *self, zim_timer_t *timer, int64_t due_ms, void *arg);
//  Takes timer off its queue, if it is on one.
void zim_timer_stop (zim_timer_t *timer);
//  True if timer is on a queue.
bool zim_timer_active (const zim_timer_t *timer);

//  The oldest timer due at or before now_ms, still queued; NULL if none.
//  Stop (or restart) it before asking again.
zim_timer_t *zim_timers_expired (zim_timers_t *self, int64_t now_ms);
//  The due time of the oldest timer, INT64_MAX if none is queued.
int64_t zim_timers_next_due (const zim_timers_t *self);
//  How many timers are queued.
size_t zim_timers_size (const zim_timers_t *self);

//  Self test of this class.
void zim_timers_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
