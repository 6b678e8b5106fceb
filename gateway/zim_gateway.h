/*  zim_gateway.h: the gateway actor, the WebSocket edge. Holds client
    sessions (token check, device, heartbeat, idle timer, send rate limit,
    a lazily allocated output buffer per connection), forwards client
    operations to the brokers and writes what they send back, coalescing
    every frame pending for one connection into one WebSocket message.

    Pipe commands (docs/ARCHITECTURE.md, "Actors"):
        SET name NAME              node name and ZeroMQ routing id (default "gw-1");
                                   give it before CONNECT
        SET port N                 WebSocket/HTTP port (default 7700; 0 = ephemeral)
        SET interface ADDR         listen address (default: all)
        SET max_frame BYTES        largest client message (default 65536)
        SET idle_timeout SECONDS   close after this long without input (default 90; 0 = never)
        SET ping_interval SECONDS  WebSocket PING when the client is quiet (default 30; 0 = none)
        SET send_rate N            sends per second per connection (default 1000)
        SET send_burst N           token bucket size (default 20000)
        SET max_pending BYTES      output queued to one client before it is cut
                                   as a slow consumer (default 1048576)
        SET app NAME SECRET        an app and its token secret (repeatable)
        CONNECT broker ENDPOINT    a DEALER to one more broker
        CONNECT router ENDPOINT    the DEALER to the router
        START                      listen (signal 0, or 1 if the port cannot be bound)
        PORT                       the real WebSocket port
        STATS                      JSON counters: connections, authed, frames_in,
                                   frames_out, writes, sends, errors_sent, bad_frames,
                                   rate_limited, idle_closed, slow_consumer_drops,
                                   auth_failures, too_large, unavailable,
                                   bad_messages, presence_dropped
        $TERM                      close every connection (1001) and exit

    HTTP on the same port: GET /ws upgrades (token and device in the query;
    a bad token gets 403, a bad device 400), GET /healthz answers 200 "ok",
    GET / a small page, anything else 404.
*/
#ifndef ZIM_GATEWAY_H_INCLUDED
#define ZIM_GATEWAY_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The actor function, for zactor_new (zim_gateway_actor, NULL).
void zim_gateway_actor (zsock_t *pipe, void *args);

void zim_gateway_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
