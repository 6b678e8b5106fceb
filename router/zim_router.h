/*  zim_router.h: the router actor. Holds presence (zim_routes) and the
    cluster map (zim_members) as soft state, on one ROUTER socket where
    gateways send PRESENCE, brokers ROUTE_Q, and every node's process shell
    HELLO; it answers ROUTE_R, and sends every member the MAP.

    Pipe commands: those of msg/zim_shell.h (SET, BIND, START, PORT, STATS,
    $TERM). Settings: member_timeout (seconds, 3), and the shell's common
    ones (max_msg_size, the CURVE keys). STATS: users, routes, presence,
    queries, bad_messages, members, map_version, hellos, stalls, and
    gateway_routes, an object {"GATEWAY": routes held for it}.
    Nothing here is durable: after a restart, gateways re-announce their
    sessions (PRESENCE with reset) and the table is whole again.
*/
#ifndef ZIM_ROUTER_H_INCLUDED
#define ZIM_ROUTER_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The actor function, for zactor_new (zim_router_actor, NULL).
void zim_router_actor (zsock_t *pipe, void *args);

//  Self test of this class.
void zim_router_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
