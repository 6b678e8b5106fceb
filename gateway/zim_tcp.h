/*  zim_tcp.h: the gateway's raw TCP listener (tcp_port, off by default),
    for clients that do not want WebSocket (mobile apps, as goim's). The
    same client frames as over WebSocket, each framed by its length:

        packet = length (uint32, big endian) + payload of length bytes

    A payload holds what one binary WebSocket message holds: msgpack maps
    back to back. The server sends exactly one map per packet; a client
    may put several in one (docs/PROTOCOL.md, "Raw TCP").

    Every connection is a zim_session on the zim_session_io_t transport
    this class provides, so auth, limits, errors and deadlines are the
    WebSocket ones: a length over max_frame gets 4002 and a close; output
    beyond max_pending cuts with 4090. Where WebSocket ends with a close
    frame, TCP ends after the error frame with a FIN. There is no
    WebSocket PING: the client pings (op ping, or an empty packet) within
    idle_timeout, and the kernel's TCP keepalive probes every
    ping_interval find peers that vanished.

    Output is written once per loop turn per connection (a uv_idle_t
    flushes every connection that has some), frames gathered in one
    writev; what the socket does not take waits for it to be writable.
*/
#ifndef ZIM_TCP_H_INCLUDED
#define ZIM_TCP_H_INCLUDED

#include <stdbool.h>
#include <uv.h>

#include "gateway/zim_edge.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_tcp_t zim_tcp_t;

//  Called after client input was handled (it may have sent on the
//  backbone) and after a session closed.
typedef void (zim_tcp_kick_fn) (void *arg);

//  Listens on iface (NULL: every address) and port (0: ephemeral) on loop
//  for edge's sessions; shares the port with other processes if
//  reuse_port. NULL if it cannot bind. Caller owns return value.
zim_tcp_t *zim_tcp_new (zim_edge_t *edge, uv_loop_t *loop, const char *iface, int port,
                        bool reuse_port, zim_tcp_kick_fn *kick, void *arg);
//  Frees it; zim_tcp_close must have run, and the loop since.
void zim_tcp_destroy (zim_tcp_t **self_p);
//  The port bound.
int zim_tcp_port (zim_tcp_t *self);
//  Stops accepting (shutdown begins; open connections go on).
void zim_tcp_stop_accepting (zim_tcp_t *self);
//  Closes every connection (their sessions too) and every handle.
void zim_tcp_close (zim_tcp_t *self);

//  Self test of this class.
void zim_tcp_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
