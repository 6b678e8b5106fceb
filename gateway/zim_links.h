/*  zim_links.h: a gateway's links to the rest of the cluster. It holds a
    DEALER to every broker (those given by CONNECT and those the routers'
    maps list) and picks the broker that owns a user; a DEALER to every
    router, which hears PRESENCE for each session that goes up or down;
    and what each router's maps say.

    Routes must survive stalls. A router forgets this gateway's routes when
    it restarts, or when it does not hear from the gateway for its
    member_timeout (a stalled gateway, a stalled router, a partition). The
    gateway then announces every session again (PRESENCE with reset, then
    all sessions) to that router:
    - when this gateway's own loop was stalled for 2.5 s or more (seen by
      the gap between two ticks on the monotonic clock): to every router,
      since a router stops sending maps to a member it dropped;
    - when the router's instance changes (it restarted);
    - when its map lists other members but not this gateway (once, until a
      map lists it again);
    - when the router's own member entry in its map carries, in its stats,
      "gateway_routes":{"GW-NAME":N,...} (routes it holds per gateway), and
      N lies outside the range of this gateway's authenticated sessions
      around the time of the sample, in two fresh samples in a row. A
      sample is fresh when its time (map arrival minus the entry's age_ms)
      is 300 ms or more after the previous one; samples taken less than
      2 s after an announce to that router are not judged.
*/
#ifndef ZIM_LINKS_H_INCLUDED
#define ZIM_LINKS_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/zim_edge.h"
#include "gateway/zim_session.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Which sockets were sent on (zim_links_take_sent).
#define ZIM_LINKS_BROKERS 2
#define ZIM_LINKS_ROUTERS 4

//  Called for a socket made after START, for the loop to watch.
typedef void (zim_links_socket_fn) (void *arg, zsock_t *sock);

//  Creates the links of edge (no sockets yet). Caller owns return value.
zim_links_t *zim_links_new (zim_edge_t *edge);
//  Closes every socket.
void zim_links_destroy (zim_links_t **self_p);

//  CONNECT broker ENDPOINT / CONNECT router ENDPOINT, before START. A
//  broker given here is always live. Returns 0 or -1 (logged).
int zim_links_connect (zim_links_t *self, const char *role, const char *endpoint);
//  Sets what is called for each broker socket made after this call.
void zim_links_on_socket (zim_links_t *self, zim_links_socket_fn *fn, void *arg);

//  Sends edge->wr to the broker owning (app, uid): FNV-1a-64 of
//  "app\0uid" over the live brokers sorted by name. Returns 0, or -1 if
//  none is live or its queue is full.
int zim_links_forward (zim_links_t *self, const char *app, const char *uid);
//  Sends edge->wr to router index (-1: every router). Returns 0, or -1 if
//  there is no router or a queue did not take it (zim_rooms).
int zim_links_to_router (zim_links_t *self, int index);
//  Tells every router that session went up or down.
void zim_links_presence (zim_links_t *self, zim_session_t *session, bool up);
//  Tells every router to forget this gateway's routes (at START).
void zim_links_reset (zim_links_t *self);
//  A cluster map (MAP): live brokers, and the checks above.
void zim_links_map (zim_links_t *self, zframe_t *frame);
//  The loop's once-a-second tick at now_ms (monotonic): after a stall of
//  the loop, every router hears every session again.
void zim_links_tick (zim_links_t *self, int64_t now_ms);

//  Live brokers.
size_t zim_links_live (zim_links_t *self);
//  The ZIM_LINKS_* bits of the sockets sent on since the last call.
int zim_links_take_sent (zim_links_t *self);
//  The sockets, for the loop to watch and drain.
size_t zim_links_brokers (zim_links_t *self);
zsock_t *zim_links_broker (zim_links_t *self, size_t index);
size_t zim_links_routers (zim_links_t *self);
zsock_t *zim_links_router (zim_links_t *self, size_t index);

//  Self test of this class.
void zim_links_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
