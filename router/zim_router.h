/*  zim_router.h: the router actor. Holds presence as soft state: which
    (app, user) is connected on which gateway connection, learnt from the
    gateways' PRESENCE messages and answered to brokers' ROUTE_Q queries.

    Pipe commands (docs/ARCHITECTURE.md, "Actors"):
        SET name NAME       node name (default "router-1")
        BIND ENDPOINT       ROUTER socket for gateways and brokers
        START               start serving (signal 0)
        PORT                TCP port of the last BIND
        STATS               JSON: users, routes, presence, queries, bad_messages
        $TERM
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

void zim_router_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
