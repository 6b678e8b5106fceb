/*  zim_sessions.h: every client connection of one gateway: the table by
    connection id (what a broker's OUT names), how many connections each
    user has here (max_conns_per_user), and the deadlines that close a
    connection: idle_timeout without input (4080), auth_timeout without a
    valid token (4014); and the heartbeats (a WebSocket PING each
    ping_interval, a hang-up when not even a PONG came back for two
    intervals and 10 s). Admitting a session as a user and closing it tell
    the routers (PRESENCE up and down, through zim_links).
*/
#ifndef ZIM_SESSIONS_H_INCLUDED
#define ZIM_SESSIONS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/zim_edge.h"
#include "gateway/zim_session.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Creates the table of edge. Caller owns return value.
zim_sessions_t *zim_sessions_new (zim_edge_t *edge);
//  Destroys the table and every session left in it (without PRESENCE).
void zim_sessions_destroy (zim_sessions_t **self_p);

//  A new connection: a session with the next id, counted, its idle and
//  auth deadlines running. The table owns it.
zim_session_t *zim_sessions_open (zim_sessions_t *self, struct lws *wsi);
//  The same for a connection on another transport (raw TCP: zim_tcp.h),
//  without the PING timer: that transport's heartbeat is its own.
zim_session_t *zim_sessions_open_io (zim_sessions_t *self, const zim_session_io_t *io, void *arg);
//  A connection ended: PRESENCE down if it was authenticated, uncounted,
//  destroyed. Sets *session_p to NULL.
void zim_sessions_close (zim_sessions_t *self, zim_session_t **session_p);
//  The session with id, or NULL.
zim_session_t *zim_sessions_lookup (zim_sessions_t *self, uint64_t id);
//  A message arrived on session: its idle deadline starts again (and it
//  was heard from, zim_session_heard).
void zim_sessions_touch (zim_sessions_t *self, zim_session_t *session);

//  Authenticates session as (app, uid) unless the user already has
//  max_conns_per_user connections here: then returns ZIM_ERR_TOO_MANY_CONNS
//  (counted, logged) and changes nothing. On success the auth deadline
//  stops, the routers hear PRESENCE up, and it returns 0.
int zim_sessions_admit (zim_sessions_t *self, zim_session_t *session, const char *app,
                        const char *uid);
//  Connections of (app, uid) on this gateway.
size_t zim_sessions_user_count (zim_sessions_t *self, const char *app, const char *uid);

//  Closes what is past its deadline at now_ms (monotonic): 4080 for idle
//  connections, 4014 for unauthenticated ones; sends the PINGs due and
//  hangs up (1001) on peers that stopped answering them.
void zim_sessions_sweep (zim_sessions_t *self, int64_t now_ms);
//  When the next deadline or PING is due (monotonic ms), INT64_MAX if none.
int64_t zim_sessions_next_due (zim_sessions_t *self);

//  Iterates over every session (in no particular order); NULL at the end.
//  The table must not change during an iteration.
zim_session_t *zim_sessions_first (zim_sessions_t *self);
zim_session_t *zim_sessions_next (zim_sessions_t *self);
//  How many sessions there are.
size_t zim_sessions_size (zim_sessions_t *self);

//  Self test of this class.
void zim_sessions_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
