/*  zim_broker.h: the broker actor. Holds nothing durable: validates client
    operations forwarded by gateways, assigns message ids, persists through
    the store, resolves recipients through the router and dispatches acks
    and deliveries back to gateways.

    Pipe commands (docs/ARCHITECTURE.md, "Actors"):
        SET name NAME              node name (default "broker-1")
        SET node_id N              0..1023, part of every message id (default 1)
        SET max_inflight N         messages waiting for the store before new
                                   sends get 5030 unavailable (default 65536)
        SET max_batch N            sends per store/router batch (default 2048)
        SET store_timeout MS       a batch the store has not answered fails
                                   with 5040 (default 5000)
        SET route_timeout MS       acks go out without live delivery when the
                                   router has not answered (default 1000)
        BIND ENDPOINT              ROUTER socket the gateways connect to
        CONNECT store ENDPOINT     DEALER to the store
        CONNECT router ENDPOINT    DEALER to the router
        START                      (signal 0, or 1 if store/router missing)
        PORT                       TCP port of the last BIND
        STATS                      JSON counters
        $TERM
*/
#ifndef ZIM_BROKER_H_INCLUDED
#define ZIM_BROKER_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The actor function, for zactor_new (zim_broker_actor, NULL).
void zim_broker_actor (zsock_t *pipe, void *args);

void zim_broker_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
