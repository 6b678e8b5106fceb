/*  zim_rooms.h: the rooms of one gateway's connections, and live signals.
    Room membership is soft state held here, like goim's comet: room ->
    this gateway's member connections, connection -> its rooms. The
    routers learn how many of this gateway's connections are in each room
    (ROOMS: at once when a room gains its first member here or loses its
    last, the other changes once a second, everything again after a router
    forgot this gateway), forward a room message once to every gateway
    with members (ROOM_OUT), and send back the room totals they sum over
    the gateways (ROOM_COUNTS). A room frame comes here encoded once and
    is appended to each member's output buffer, which leaves with the rest
    of that connection's pending frames in one write.

    Client ops handled here: join, leave, publish, signal (docs/PROTOCOL.md,
    "Rooms"). Per app: who may join (app_join NAME open|token: token means
    only the rooms the token's "rooms" claim names, exactly or by a prefix
    ending in "*") and who may publish (app_client_publish NAME
    none|members): zim_roompolicy.h. Pushes to all, paced:
    zim_roomcast.h. The users in each room, reported to the routers for
    their distinct count (ROOM_USERS): zim_roomusers.h.
*/
#ifndef ZIM_ROOMS_H_INCLUDED
#define ZIM_ROOMS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/zim_edge.h"
#include "gateway/zim_session.h"
#include "msg/zim_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Longest room name.
#define ZIM_ROOM_MAX 128

//  Creates the room index of edge. Caller owns return value.
zim_rooms_t *zim_rooms_new (zim_edge_t *edge);
//  Destroys the index (sends nothing).
void zim_rooms_destroy (zim_rooms_t **self_p);

//  True if room is 1..128 bytes of A-Z a-z 0-9 _ . : @ / -.
bool zim_room_valid (zim_str_t room);
//  True if the backbone message data is a CONN_CTL (a broker sends them
//  too: a channel reader's connection joins the channel's live room).
bool zim_rooms_is_ctl (const void *data, size_t size);

//  SET app_join NAME open|token, SET app_client_publish NAME none|members.
//  Return 0, or -1 with *why set.
int zim_rooms_set_join (zim_rooms_t *self, const char *app, const char *value, const char **why);
int zim_rooms_set_publish (zim_rooms_t *self, const char *app, const char *value,
                           const char **why);
//  SET app_broadcast_rate NAME N: a push to all of NAME reaches N
//  connections a second on this gateway (default: broadcast_rate).
int zim_rooms_set_broadcast_rate (zim_rooms_t *self, const char *app, const char *value,
                                  const char **why);

//  Handles a join, leave, publish or signal frame of an authenticated
//  session. Returns false if f is none of those.
bool zim_rooms_frame (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f);
//  session was just authenticated with token: keeps its "rooms" claim.
void zim_rooms_on_auth (zim_edge_t *edge, zim_session_t *session, const char *token, size_t len);
//  session is closing: it leaves every room.
void zim_rooms_forget (zim_edge_t *edge, zim_session_t *session);
//  A backbone message from a router: ROOM_OUT, ROOM_COUNTS, or an OUT
//  (signals). Anything else is counted and dropped.
void zim_rooms_backbone (zim_edge_t *edge, const void *data, size_t size);
//  The loop's once-a-second tick: sends the counts that changed.
void zim_rooms_tick (zim_edge_t *edge);
//  Tells router index (-1: every router) every room with members here,
//  after the router forgot this gateway (reset first).
void zim_rooms_announce (zim_edge_t *edge, int index);

//  Rooms with members here, and memberships.
size_t zim_rooms_size (zim_rooms_t *self);
uint64_t zim_rooms_members (zim_rooms_t *self);

//  Self test of this class.
void zim_rooms_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
