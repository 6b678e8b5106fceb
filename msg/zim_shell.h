/*  zim_shell.h: the one shell every node actor runs in. It owns what all
    actors do the same way: the pipe commands (SET, BIND, CONNECT, START,
    PORT, STATS, METRICS, MAP, $TERM), the settings table, the STATS
    counters and the metrics made of them (msg/zim_metrics.h), the
    rate-limited log for what peers can trigger, and the socket options of
    every backbone socket. An actor supplies a class (its settings, its
    counters and a few hooks) and keeps its own event loop: it calls
    zim_shell_handle () whenever the pipe is readable.

    The pipe protocol (docs/ARCHITECTURE.md, "Actors"):
        SET key value [value2]   a setting from the table (no reply)
        BIND endpoint            signal 0 ok / 1 failed
        CONNECT role endpoint    signal 0 ok / 1 failed
        START                    signal 0 ok / 1 failed
        PORT                     string: the port of the last BIND
        STATS                    string: one JSON object of counters
        METRICS                  one frame per metric family, Prometheus
                                 text (zim_metrics_merge joins them)
        MAP frame                the cluster map, a binary MAP message
        $TERM                    the actor leaves its loop
*/
#ifndef ZIM_SHELL_H_INCLUDED
#define ZIM_SHELL_H_INCLUDED

#include "msg/zim_metrics.h"

#include <czmq.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_shell_t zim_shell_t;

//  Backbone messages larger than this are refused by libzmq (the peer is
//  disconnected): far above the largest legitimate message (a broker batch
//  is bounded in bytes well below it), far below what would hurt. The
//  default of max_msg_size, and of the process shell's own sockets.
#define ZIM_SHELL_MAX_MSG_SIZE (64ll << 20)

//  How a setting's value is read.
typedef enum {
    ZIM_SET_U64 = 1, //  decimal within [min, max], times scale, into a uint64_t
    ZIM_SET_STR,     //  a string into a char * the shell owns (freed on replace
                     //  and in zim_shell_destroy); "" stores NULL
    ZIM_SET_BOOL,    //  1/0, true/false, yes/no, on/off into a bool
    ZIM_SET_FN,      //  the setting's own parser: fn (self, value, value2)
} zim_set_type_t;

//  Settings flags.
#define ZIM_SET_BEFORE_START 1 //  refused (logged) after START

//  One row of an actor's settings table; the table ends with a NULL key.
typedef struct {
    const char *key;     //  config key and SET name
    zim_set_type_t type; //  how the value is read
    size_t offset;       //  offsetof the field in the actor's state
    uint64_t min, max;   //  ZIM_SET_U64: accepted range (max 0: no upper bound)
    uint64_t scale;      //  ZIM_SET_U64: stored = value * scale (0 means 1)
    unsigned flags;      //  ZIM_SET_*
    //  ZIM_SET_FN: parses value (and value2, NULL when absent) into the
    //  actor's state; returns 0, or -1 with *why set to a static text.
    int (*fn) (void *self, const char *value, const char *value2, const char **why);
    const char *help; //  one line: what it does, its unit and default
} zim_setting_t;

//  One STATS counter: a uint64_t field of the actor's state. The table ends
//  with a NULL name.
typedef struct {
    const char *name; //  JSON key
    size_t offset;    //  offsetof the uint64_t field
} zim_counter_t;

//  One histogram of an actor: a zim_histo_t field of its state, exported
//  as zim_<role>_<name>. The table ends with a NULL name. zim_shell_new
//  sets each field's bounds: make the shell after zeroing the state.
typedef struct {
    const char *name;       //  metric name after zim_<role>_, e.g. "ack_seconds"
    size_t offset;          //  offsetof the zim_histo_t field
    const uint64_t *bounds; //  bucket bounds, in observed units (static)
    size_t nbounds;         //  how many
    double scale;           //  observed units to exported ones (1e-6: µs to s)
    const char *help;       //  one line for # HELP
} zim_histogram_t;

//  What an actor supplies. Hooks may be NULL when the actor has no use for
//  them; self is the actor's state as given to zim_shell_new.
typedef struct {
    const char *role;              //  "gateway", "broker", "router", "store"
    const zim_setting_t *settings; //  table, or NULL
    const zim_counter_t *counters; //  table, or NULL
    //  Metrics (METRICS): every counter is a Prometheus counter and every
    //  number the stats hook adds a gauge, except the names listed here.
    const char *const *gauges;         //  counters that are levels, NULL-ended, or NULL
    const char *const *totals;         //  stats hook numbers that only grow, or NULL
    const zim_histogram_t *histograms; //  table, or NULL
    //  BIND: returns the bound port (0 for inproc) or -1 (logged by the hook).
    int (*bind) (void *self, const char *endpoint);
    //  CONNECT role endpoint: returns 0 or -1 (logged by the hook).
    int (*connect) (void *self, const char *role, const char *endpoint);
    //  START: returns 0 or -1 (logged by the hook).
    int (*start) (void *self);
    //  STATS: adds gauges to the object after the counters.
    void (*stats) (void *self, json_t *stats);
    //  MAP: a cluster map (the frame is borrowed).
    void (*map) (void *self, zframe_t *frame);
} zim_shell_class_t;

//  Creates the shell of one actor. name is the default node name (SET name
//  replaces it). Caller owns return value.
zim_shell_t *zim_shell_new (zsock_t *pipe, const zim_shell_class_t *cls, void *self,
                            const char *name);
//  Destroys the shell and frees every ZIM_SET_STR field it set.
void zim_shell_destroy (zim_shell_t **self_p);

//  Reads and handles one command from the pipe (call when it is readable).
//  Returns 0, or -1 once the actor must stop ($TERM or a closed pipe).
int zim_shell_handle (zim_shell_t *self);

//  Applies one setting as SET would; returns 0 or -1 (logged).
int zim_shell_set (zim_shell_t *self, const char *key, const char *value, const char *value2);

//  Accessors.
const char *zim_shell_name (zim_shell_t *self);
zsock_t *zim_shell_pipe (zim_shell_t *self);
bool zim_shell_started (zim_shell_t *self);
bool zim_shell_terminated (zim_shell_t *self);
//  Marks the actor as stopping (a fatal error in its loop).
void zim_shell_terminate (zim_shell_t *self);
//  The port PORT answers (the bind hook's result, or set here).
void zim_shell_set_port (zim_shell_t *self, int port);

//  The STATS object: counters, then the stats hook's gauges. Caller owns
//  return value (json_decref).
json_t *zim_shell_stats (zim_shell_t *self);

//  Adds this actor's metrics to m: zim_<role>_<counter>_total for each
//  counter, zim_<role>_<name> gauges for the stats hook's numbers (true
//  and false as 1 and 0; strings and objects are left out), and the
//  histograms; every sample labelled node="<name>".
void zim_shell_metrics (zim_shell_t *self, zim_metrics_t *m);

//  Logs a warning that a peer (a client, another node, an admin caller) can
//  cause, through one limiter per actor: at most 10 lines per 10 s, then one
//  line saying how many were suppressed. Prefixed with the actor's name.
void zim_shell_warn (zim_shell_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Makes a socket of type for backbone traffic with the shell's common
//  options: linger 0, ZMQ_MAXMSGSIZE (max_msg_size), and CURVE when the
//  settings curve_public_key and curve_secret_key give the cluster key pair
//  (msg/zim_curve.h): a server then takes only peers holding the cluster
//  key (ZAP domain "zim", msg/zim_zap.h), a client presents it. server is true for a socket that binds (it
//  authenticates its peers), false for one that connects. Every socket an
//  actor opens to another node comes from here. Caller owns return value;
//  NULL if it cannot be made (logged).
zsock_t *zim_shell_socket (zim_shell_t *self, int type, bool server);

//  Self test of this class.
void zim_shell_test (bool verbose);

//  ---------------------------------------------------------------------
//  A rate limiter for log lines, usable outside an actor (the process
//  shell's admin endpoint). At most burst lines per window_ms; the first
//  line after a window with drops says how many were dropped.
typedef struct {
    int64_t window_start; //  monotonic ms when the current window began
    uint32_t lines;       //  lines logged in this window
    uint32_t dropped;     //  lines dropped in this window
    uint32_t burst;       //  lines allowed per window (0 means 10)
    uint32_t window_ms;   //  window length (0 means 10000)
} zim_ratelog_t;

//  Logs one warning through rl, prefixed with who.
void zim_ratelog_warn (zim_ratelog_t *rl, const char *who, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
void zim_ratelog_vwarn (zim_ratelog_t *rl, const char *who, const char *format, va_list args);

#ifdef __cplusplus
}
#endif
#endif
