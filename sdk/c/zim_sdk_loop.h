/*  zim_sdk_loop.h: the C SDK's event loop, private to libzimclient. Holds
    the lws context behind the public zim_loop_* calls, the one-shot timers
    every SDK class runs on it, the connections it services and the memory
    it frees once no callback can be using it any more.
*/
#ifndef ZIM_SDK_LOOP_H_INCLUDED
#define ZIM_SDK_LOOP_H_INCLUDED

#include "sdk/c/zim_client.h"
#include <libwebsockets.h>

typedef struct _zim_sdk_conn_t zim_sdk_conn_t;

//  What a timer calls when its time comes.
typedef void (zim_sdk_timer_fn) (void *arg);

//  A one-shot timer, embedded in its owner. The loop knows every timer
//  made on it, so destroying the loop first leaves no timer behind.
typedef struct {
    lws_sorted_usec_list_t sul; //  the lws timer
    lws_dll2_t member;          //  in the loop's list of timers
    zim_loop_t *loop;           //  the loop, NULL once it is destroyed
    zim_sdk_timer_fn *fn;       //  called when it runs
    void *arg;                  //  fn's argument
    bool armed;                 //  scheduled and not yet run
    uint64_t due_us;            //  when it runs (mono clock), if armed
} zim_sdk_timer_t;

//  Makes a stopped timer on loop that calls fn (arg).
void zim_sdk_timer_init (zim_sdk_timer_t *self, zim_loop_t *loop, zim_sdk_timer_fn *fn, void *arg);

//  Stops the timer and forgets its loop. Call before freeing its memory.
void zim_sdk_timer_fini (zim_sdk_timer_t *self);

//  Runs the timer us microseconds from now (re-arming it if it was armed).
//  Does nothing once the loop is gone or being destroyed.
void zim_sdk_timer_start (zim_sdk_timer_t *self, uint64_t us);

//  As zim_sdk_timer_start, but an armed timer that runs sooner stays as
//  it is: a deadline that later events must not push back.
void zim_sdk_timer_start_by (zim_sdk_timer_t *self, uint64_t us);

//  Stops the timer if it is armed.
void zim_sdk_timer_stop (zim_sdk_timer_t *self);

//  True if the timer is armed.
bool zim_sdk_timer_armed (const zim_sdk_timer_t *self);

//  The lws context of the loop.
struct lws_context *zim_sdk_loop_context (zim_loop_t *self);

//  The client vhost that trusts the certificate authorities of ca_file
//  (PEM) for wss://, made at the first call for that file and kept until
//  the loop goes; NULL if lws cannot load the file.
struct lws_vhost *zim_sdk_loop_vhost (zim_loop_t *self, const char *ca_file);

//  Counts one event for zim_loop_run (which returns once one happened).
void zim_sdk_loop_event (zim_loop_t *self);

//  True while the loop is inside zim_loop_run or zim_loop_destroy: memory
//  a callback may still use must not be freed now.
bool zim_sdk_loop_busy (zim_loop_t *self);

//  True while zim_loop_destroy runs: nothing is reported any more.
bool zim_sdk_loop_destroying (zim_loop_t *self);

//  Frees ptr with fn now, or when the loop is no longer busy.
void zim_sdk_loop_defer (zim_loop_t *self, void (*fn) (void *), void *ptr);

//  Adds a connection (member: its list link) that the loop detaches when it
//  is destroyed and reaps when it is dead (zim_sdk_conn_reap).
void zim_sdk_loop_add_conn (zim_loop_t *self, lws_dll2_t *member);

//  Selftest.
void zim_sdk_loop_test (bool verbose);

#endif
