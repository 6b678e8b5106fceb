/*  zim_roomtab.h: the router's side of rooms and live signals. Which
    gateways have connections in which room, and how many (learnt from the
    gateways' ROOMS reports: soft state, announced again after a router
    restart); room totals summed over the gateways and sent back to the
    gateways with members (ROOM_COUNTS, at most once a second per room);
    a published room message (ROOM_PUB) encoded once as a client `room`
    frame and sent once to each gateway with members (ROOM_OUT); a SIGNAL
    encoded once and sent as an OUT to each gateway where the recipient is
    connected (the presence table says where).

    Live traffic goes through the router, not a broker: it is stored
    nowhere and needs no id, only the routes and room interest the router
    holds, so it takes one hop fewer (docs/ARCHITECTURE.md, "Rooms and live
    traffic").
*/
#ifndef ZIM_ROOMTAB_H_INCLUDED
#define ZIM_ROOMTAB_H_INCLUDED

#include "msg/zim_msg.h"
#include "router/zim_routes.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_roomtab_t zim_roomtab_t;

//  Creates an empty table. Caller owns return value.
zim_roomtab_t *zim_roomtab_new (void);
void zim_roomtab_destroy (zim_roomtab_t **self_p);

//  Handles a ROOMS, ROOM_USERS (zim_usertab.h), ROOM_PUB or SIGNAL message
//  from a gateway, or an API_Q from a node's API endpoint (answered to
//  peer with API_R); kind already
//  read from rd. Sends what it makes on sock (the router's ROUTER,
//  resolved) by routing id. Returns false if kind is none of those.
//  A malformed message changes nothing and is counted (STATS).
bool zim_roomtab_handle (zim_roomtab_t *self, zim_routes_t *routes, void *sock, zframe_t *peer,
                         int kind, zim_rd_t *rd, uint32_t fields);
//  Forgets every room of gateway (it restarted, re-announces, or left).
void zim_roomtab_reset (zim_roomtab_t *self, zim_str_t gateway);
//  Sends the totals that changed, at most once a second per room
//  (now_ms monotonic), to the gateways with members of each.
void zim_roomtab_tick (zim_roomtab_t *self, void *sock, uint64_t now_ms);

//  Connections in (app, room) over every gateway; 0 if none.
uint64_t zim_roomtab_total (zim_roomtab_t *self, zim_str_t app, zim_str_t room);
//  Rooms with members.
size_t zim_roomtab_size (zim_roomtab_t *self);
//  Adds its counters to a STATS object.
void zim_roomtab_stats (zim_roomtab_t *self, json_t *stats);

//  Self test of this class.
void zim_roomtab_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
