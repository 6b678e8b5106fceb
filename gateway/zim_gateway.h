/*  zim_gateway.h: the gateway actor, the WebSocket edge. One thread runs a
    libwebsockets loop that serves the clients, the actor pipe and the
    ZeroMQ sockets to the brokers and routers alike.

    The pipe speaks the actor shell's protocol (msg/zim_shell.h,
    docs/ARCHITECTURE.md "Actors"):
        SET key value [value2]     a setting: port, interface, www, max_frame,
                                   idle_timeout, ping_interval, send_rate,
                                   send_burst, read_rate, read_burst,
                                   max_reads_inflight, max_pending,
                                   auth_timeout, max_auth_failures,
                                   max_conns_per_user, token_leeway,
                                   app_secret NAME SECRET, app_public_key NAME
                                   PATH, app_audience NAME AUD, app_issuer
                                   NAME ISS (gateway/zim_edge.c has the table,
                                   docs/OPERATIONS.md the meaning); SET name
                                   NAME (default gw-1) before CONNECT
        CONNECT broker ENDPOINT    a DEALER to one more broker
        CONNECT router ENDPOINT    a DEALER to one more router
        START                      listen (signal 0, or 1 if the port cannot be bound)
        PORT                       the real WebSocket port
        STATS                      JSON counters (gateway/zim_edge.c) and "brokers"
        MAP frame                  a router's cluster map
        $TERM                      close every connection (1001) and exit

    The parts, one per file: zim_edge (settings, counters, shared state),
    zim_sessions and zim_session (connections, deadlines, output), zim_frames
    (client frames to backbone requests and back), zim_links (brokers,
    routers, maps, presence), zim_http (HTTP, /dev/token, upgrade checks),
    zim_apps and zim_token (token keys and verification), zim_timers.
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

//  Self test of this class.
void zim_gateway_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
