/*  zim_notify.h: a broker's receipts, conversation lists and offline push.

    Receipts (RECEIPT from a gateway: read, delivered, mute):
        1. MARK to the reader's shard: its cursor moves (forward only);
           MARKED says the cursors now and the newest message of the other
           side the move covered (peer_id), with that side's seq of it
           when the same shard holds the other side (then its peer cursor
           moved too).
        2. Otherwise a MARK PEER_READ/PEER_DELIVERED with that id to the
           other side's shard, which finds its seq in the message record.
        3. A ROUTE_Q for the reader and the other side, then `receipt`
           frames: to the asking connection and the reader's other devices
           (the reader's cursors, in its seqs), and to the other side's
           devices (the reader's cursor in that side's seqs).
        A cursor that did not move is answered to the asking connection
        alone (the cursors as they are); a mute has no answer.

    Lists (CONVS): CONVS_Q to the user's shard, its CONVS_R becomes the
    client's convs frame (with the rid; errors name it too).

    Offline push: the send pipeline tells this part of every acked send
    (zim_sendq_on_sent) with the recipient's routes; a recipient with no
    route, or only routes in the background, gets a push record (preview
    and mention from the body, docs/PROTOCOL.md) in a PUSH_ADD to its
    shard, one per shard per drain (zim_notify_flush). Groups: the group
    pipeline calls zim_notify_offline for each member it found offline.

    Requests in flight are at most ZIM_NOTIFY_SLOTS (beyond: 5030), each
    bounded in time by store_timeout and route_timeout. Request ids of
    this part have the top bit set (ZIM_NOTIFY_REQ): ROUTE_R answers with
    it come here.
*/
#ifndef ZIM_NOTIFY_H_INCLUDED
#define ZIM_NOTIFY_H_INCLUDED

#include "broker/zim_broker.h"
#include "broker/zim_deliver.h"
#include "broker/zim_shards.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The top bit of this part's request ids.
#define ZIM_NOTIFY_REQ ((uint64_t)1 << 63)
//  Requests in flight, at most.
#define ZIM_NOTIFY_SLOTS 4096

typedef struct _zim_notify_t zim_notify_t;

//  Creates the part over shards, answering through deliver; limits and
//  stats are the actor's. Caller owns return value.
zim_notify_t *zim_notify_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                              const zim_broker_limits_t *limits, zim_broker_stats_t *stats);
void zim_notify_destroy (zim_notify_t **self_p);

//  The DEALER to the routers (borrowed); without one, receipts go to the
//  asking connection only.
void zim_notify_use_router (zim_notify_t *self, zsock_t *router);

//  Takes a RECEIPT or CONVS (rd at its first field) from gateway gw.
//  A request that cannot go on is answered at once (5030; malformed:
//  counted, logged, 4001).
void zim_notify_request (zim_notify_t *self, zframe_t *gw, int kind, zim_rd_t *rd, uint32_t fields);

//  Takes a MARKED or CONVS_R (rd at its first field). Returns 0, or -1
//  when it is malformed (the caller counts and logs).
int zim_notify_store (zim_notify_t *self, int kind, zim_rd_t *rd, uint32_t fields);

//  Takes a ROUTE_R for request req (ZIM_NOTIFY_REQ set).
void zim_notify_routed (zim_notify_t *self, uint64_t req, zframe_t *frame);

//  The send pipeline's hook (zim_sendq_sent_fn): arg is the zim_notify_t.
void zim_notify_sent (void *arg, const zim_send_t *m, const zim_appended_item_t *res,
                      const zim_route_t *routes, uint32_t n);

//  Queues a push record for uid (offline or in the background), message
//  id at seq of uid's inbox in conv, from `from`, with body (its preview
//  and mentions are read here).
void zim_notify_offline (zim_notify_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv,
                         uint64_t seq, uint64_t id, uint64_t ts, zim_str_t from, zim_str_t body);

//  Sends the queued push records, one PUSH_ADD per shard.
void zim_notify_flush (zim_notify_t *self);

//  Answers or moves on the requests past their deadlines (at most every
//  100 ms of now_us).
void zim_notify_expire (zim_notify_t *self, uint64_t now_us);

//  True while requests wait (their deadlines need a timer).
bool zim_notify_waiting (zim_notify_t *self);

//  The preview of a message body (a msgpack string, or a map's "text"),
//  cut at a character boundary within max bytes, into *preview (a view of
//  body); and whether its "mentions" (a map's array of user ids) name uid
//  or "all".
void zim_notify_preview (zim_str_t body, zim_str_t uid, size_t max, zim_str_t *preview,
                         bool *mention);

//  Self test of this class.
void zim_notify_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
