/*  zim_sendq.h: a broker's sends, from SEND to ack. Every SEND drained from
    the gateways in one go joins one batch (bounded in sends and in bytes):
    each gets a message id and a timestamp, and the batch goes out as one
    APPEND per store shard of its senders. A send whose recipient lives on
    another shard is written there too, once the sender's shard has fixed
    its id (zim_xshard). When every write of a batch has answered, one
    ROUTE_Q asks a router where its recipients and senders are connected
    (only after the commit: a device that connects later syncs later, and
    finds the message). Batches complete strictly in arrival order: the
    senders get their acks and the recipients and the senders' other
    devices their messages (zim_deliver).

    What the store answers decides: stored or a duplicate (the same cid,
    recipient and body as a stored message) is acked with the stored id and
    seqs and delivered again; a conflict (the cid names a message with
    another recipient or body) is refused with 4009 and nothing is
    delivered or written anywhere else.
*/
#ifndef ZIM_SENDQ_H_INCLUDED
#define ZIM_SENDQ_H_INCLUDED

#include "broker/zim_broker.h"
#include "broker/zim_deliver.h"
#include "broker/zim_shards.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_sendq_t zim_sendq_t;

//  Creates the send pipeline over shards, answering through deliver;
//  limits and stats are the actor's. Caller owns return value.
zim_sendq_t *zim_sendq_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                            const zim_broker_limits_t *limits, zim_broker_stats_t *stats);
void zim_sendq_destroy (zim_sendq_t **self_p);

//  The DEALER to the routers (borrowed); NULL (the default): no router,
//  sends are acked without live delivery.
void zim_sendq_use_router (zim_sendq_t *self, zsock_t *router);

//  Called for each send stored and acked (stored now or a duplicate), after
//  its deliveries: m and the store's answer res, and the recipient's routes
//  when the router answered (routes NULL, n 0: it did not). The offline
//  push hangs here (zim_notify).
typedef void (zim_sendq_sent_fn) (void *arg, const zim_send_t *m, const zim_appended_item_t *res,
                                  const zim_route_t *routes, uint32_t n);
void zim_sendq_on_sent (zim_sendq_t *self, zim_sendq_sent_fn *fn, void *arg);

//  Takes one SEND (rd at its first field) from gateway *gw; *gw and *frame
//  (the message, which the send's views point into) are taken over when
//  the send joins a batch, else left to the caller. A send that cannot
//  join is answered at once (4004, 5030) or, malformed, counted and logged.
void zim_sendq_send (zim_sendq_t *self, zframe_t **gw, zframe_t **frame, zim_rd_t *rd,
                     uint32_t fields);

//  Sends the open batch to the stores (the end of a drain).
void zim_sendq_flush (zim_sendq_t *self);

//  Takes an APPENDED (rd at its first field, the request id read as req).
void zim_sendq_appended (zim_sendq_t *self, uint64_t req, zim_rd_t *rd, uint32_t fields);

//  Takes a ROUTE_R for request req; *frame is taken over if it answers a
//  batch in flight.
void zim_sendq_routed (zim_sendq_t *self, uint64_t req, zframe_t **frame);

//  Completes the batches at the head that are ready or late, in order,
//  and runs the second halves' timers.
void zim_sendq_drain (zim_sendq_t *self, uint64_t now_us);

//  Request ids of the oldest and the newest batch in flight (0: none).
uint64_t zim_sendq_head (zim_sendq_t *self);
uint64_t zim_sendq_last (zim_sendq_t *self);
//  Sends in batches in flight.
size_t zim_sendq_inflight (zim_sendq_t *self);
//  Second halves being repaired (zim_xshard).
size_t zim_sendq_repairs (zim_sendq_t *self);
//  True while anything waits for a store or a router (timers to run).
bool zim_sendq_waiting (zim_sendq_t *self);

//  Self test of this class.
//  A new message id (now), from the same generator as the sends': the
//  group pipeline's ids never collide with them.
uint64_t zim_sendq_next_id (zim_sendq_t *self);

void zim_sendq_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
