/*  zim_sendqkit.h: a send pipeline test kit. A real zim_sendq with its
    shards and deliverer, and the sockets around it played by hand over
    inproc: ROUTERs as the store shards and as the router, a DEALER as the
    gateway gw-t. The sendq selftest (zim_sendq.c) drives its cases
    through it.
*/
#ifndef ZIM_SENDQKIT_H_INCLUDED
#define ZIM_SENDQKIT_H_INCLUDED

#include "broker/zim_sendq.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_sendqkit_t zim_sendqkit_t;

//  A sendq over one fake store shard, or two (sa and sb, as a router's
//  map names them), acking to gw-t, with a router. Caller owns return
//  value.
zim_sendqkit_t *zim_sendqkit_new (bool two_shards);
void zim_sendqkit_destroy (zim_sendqkit_t **self_p);

//  The sendq under test, its settings (the test may change them between
//  steps), its counters and its shards (all borrowed).
zim_sendq_t *zim_sendqkit_sendq (zim_sendqkit_t *self);
zim_broker_limits_t *zim_sendqkit_limits (zim_sendqkit_t *self);
zim_broker_stats_t *zim_sendqkit_stats (zim_sendqkit_t *self);
zim_shards_t *zim_sendqkit_shards (zim_sendqkit_t *self);

//  The ROUTER playing store shard s, and the one playing the router
//  (borrowed), to read what reaches them by hand.
zsock_t *zim_sendqkit_store (zim_sendqkit_t *self, int s);
zsock_t *zim_sendqkit_routes (zim_sendqkit_t *self);

//  Hands the sendq a SEND from conn of uid (app "demo", device "d") to to.
void zim_sendqkit_send (zim_sendqkit_t *self, uint64_t conn, const char *uid, const char *to,
                        const char *cid, const char *body);

//  The next APPEND on fake shard s within 1 s: its req, and per item its
//  id and sides. Returns how many items, -1 if none came.
int zim_sendqkit_append (zim_sendqkit_t *self, int s, uint64_t *req, uint64_t *ids,
                         uint64_t *sides);

//  Answers an APPEND with one result per item.
void zim_sendqkit_appended (zim_sendqkit_t *self, uint64_t req, const zim_appended_item_t *res,
                            int n);

//  Takes the next ROUTE_Q and answers it: each send's recipient on conn 2
//  and its sender on conns 1 and 3, all on gw-t.
void zim_sendqkit_route (zim_sendqkit_t *self);

//  Expects the gateway's next frame: op for conn, and code, seq and id
//  when not 0 (asserts, after a log line of what came instead).
void zim_sendqkit_expect (zim_sendqkit_t *self, const char *op, uint64_t conn, int64_t code,
                          uint64_t seq, uint64_t id);

//  True if the gateway gets nothing more within 30 ms.
bool zim_sendqkit_quiet (zim_sendqkit_t *self);

//  Completes what is ready now, and waits for nothing.
void zim_sendqkit_drain (zim_sendqkit_t *self);

//  Answers the next ROUTE_Q (zim_sendqkit_route), completes what is
//  ready, and expects the send acked on conn 1 with from_seq and id, and
//  the message on the recipient's conn 2 (to_seq) and on the sender's
//  other device, conn 3 (from_seq).
void zim_sendqkit_delivered (zim_sendqkit_t *self, uint64_t from_seq, uint64_t to_seq, uint64_t id);

//  Selftest: the kit's own sockets and answers.
void zim_sendqkit_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
