/*  zim_fanout.h: the receiving side of the fan-out benchmarks (zim-bench
    room and push, mqtt-bench fanout): N subscriber connections spread
    over client processes (a process here may hold 20,000 descriptors), each
    process one epoll loop over raw sockets, speaking either zim's WebSocket
    protocol (token in the URL, auth_ok, optionally a join) or MQTT 3.1.1
    (CONNECT, SUBSCRIBE at QoS 0). Every counted frame carries a benchkit
    stamp; each process checks it (each message once per connection, in
    order) and fills its latency histogram in memory shared with the parent,
    which sums them. One publishing connection of the same kinds is
    offered too (zim_fanout_pub_*), run by the caller's own loop.
*/
#ifndef ZIM_FANOUT_H_INCLUDED
#define ZIM_FANOUT_H_INCLUDED

#include "tools/zim_benchkit.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ZIM_FANOUT_WS,  //  zim over WebSocket
    ZIM_FANOUT_MQTT //  MQTT 3.1.1, QoS 0
} zim_fanout_proto_t;

typedef struct {
    zim_fanout_proto_t proto; //  the protocol
    const char *host;         //  IPv4 address of the server
    int port;                 //  its port
    const char *path;         //  WS: the path ("/ws")
    uint32_t count;           //  connections
    uint32_t procs;           //  client processes (0: one per 18,000 connections)
    uint32_t sources;         //  loopback source addresses 127.0.0.1.. (0: 1)
    char *const *tokens;      //  WS: connection i authenticates with tokens[i / per_token]
    uint32_t per_token;       //  WS: connections per token (at least 1)
    const char *room;         //  WS: join this room once authenticated (NULL: none);
                              //  MQTT: the topic to subscribe to (or publish on)
    const char *op;           //  WS: op of the frames counted ("room" or "push")
    uint32_t messages;        //  stamps numbered 0..messages-1 expected per connection
} zim_fanout_config_t;

//  What the receivers saw, summed over the processes.
typedef struct {
    uint64_t up;              //  connections that became ready
    uint64_t failed;          //  connections that never did
    uint64_t closed;          //  ready connections lost before the end
    uint64_t delivered;       //  distinct stamped messages received
    uint64_t duplicates;      //  a message a connection had already
    uint64_t out_of_order;    //  a message older than the one before it
    uint64_t unexpected;      //  a frame of the counted op that is not ours
    uint64_t errors;          //  error frames from the server
    uint64_t t_first;         //  µs (monotonic) of the first delivery, 0 none
    uint64_t t_last;          //  µs of the last delivery, 0 none
    uint64_t min_conn;        //  fewest messages one connection received
    uint64_t retried;         //  handshakes that failed and were tried again
    zim_benchkit_hist_t hist; //  publish (scheduled) to delivery, µs
} zim_fanout_result_t;

typedef struct _zim_fanout_t zim_fanout_t;

//  Forks the client processes, which start connecting at once. Returns
//  NULL if it could not (a message says why). The config and its strings
//  must stay valid until zim_fanout_destroy.
zim_fanout_t *zim_fanout_new (const zim_fanout_config_t *cfg);
//  Waits until every connection is ready or failed, at most timeout_ms.
//  Returns the number ready.
uint64_t zim_fanout_wait_ready (zim_fanout_t *self, uint32_t timeout_ms);
//  Messages delivered so far, over all connections (for the caller's loop).
uint64_t zim_fanout_delivered (zim_fanout_t *self);
//  Client processes that exited early (a crash, a failure).
uint32_t zim_fanout_dead (zim_fanout_t *self);
//  Stops the processes (they close their connections) and sums what they
//  saw into r.
void zim_fanout_stop (zim_fanout_t *self, zim_fanout_result_t *r);
//  Stops the processes if still running and frees everything.
void zim_fanout_destroy (zim_fanout_t **self_p);

//  One publishing connection in the calling process, on the receivers'
//  config (count and procs are ignored; with a WS room it joins it, as
//  client publish needs). Returns NULL if it did not become ready within
//  timeout_ms.
typedef struct _zim_fanout_pub_t zim_fanout_pub_t;
zim_fanout_pub_t *zim_fanout_pub_new (const zim_fanout_config_t *cfg, const char *token,
                                      uint32_t timeout_ms);
//  Publishes body (len bytes: a msgpack value for WS, the payload for MQTT)
//  to the room or topic. Returns 0, or -1 if the connection is gone.
int zim_fanout_pub_send (zim_fanout_pub_t *self, const uint8_t *body, size_t len);
//  Reads what came (acks, its own copies, errors) for up to timeout_ms.
void zim_fanout_pub_poll (zim_fanout_pub_t *self, int timeout_ms);
//  Publishes acknowledged (WS `published`), errors, and whether it is open.
void zim_fanout_pub_counts (zim_fanout_pub_t *self, uint64_t *acked, uint64_t *errors, bool *open);
void zim_fanout_pub_destroy (zim_fanout_pub_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
