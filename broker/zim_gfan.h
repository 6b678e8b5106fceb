/*  zim_gfan.h: a broker's groups and channels.

    Group send (GSEND from a gateway: a member's send {group, cid, body}):
        1. A message id and timestamp (the send pipeline's generator), and
           a GPOST to the group's shard (the ring places "g:GROUP" like a
           user). The store writes, in one transaction of its group
           commit, the message, its gseq in the group's log and, for a
           group, every member's inbox entry with that member's own seq
           (store/zim_groups.h). A crash before the commit leaves nothing;
           after it, everything: the fan-out is never half done.
        2. GPOSTED: the ack goes to the sender at once (its seq and the
           gseq), or the refusal (4040 not a member, 4041 no such group,
           4009 cid conflict, 5000); a duplicate (same cid) is acked with
           the original ids and delivers nothing again.
        3. A ROUTE_Q for the members, then each member's `msg` (its own
           seq, group, conv "g:GROUP") to its connections, one OUT per
           gateway, the sender's asking connection excepted; members with
           no foreground connection get a push record (zim_notify).
        A channel's message is stored once (its log); members read it with
        csync, and those online get it live in the channel's room
        "g:GROUP": a successful csync puts the asking connection there (a
        CONN_CTL to its gateway), the message is published there once
        (ROOM_PUB, after the ack), and those who left since the previous
        message are taken out first (an API_Q room leave to a router).

    Group reads (GGET: csync or groups): a GREAD to the group's shard
    (csync) or to every shard (groups, the answers merged), answered as a
    `page` (with `reset` when the reader was too far behind) or a `groups`
    frame with the request's rid; refusals name the rid.

    Requests in flight are at most ZIM_GFAN_SLOTS (beyond: 5030), bounded
    in time by store_timeout (5040) and route_timeout (acked, not
    delivered live: members sync). Request ids have bit 62 set
    (ZIM_GFAN_REQ): ROUTE_R answers with it come here.
*/
#ifndef ZIM_GFAN_H_INCLUDED
#define ZIM_GFAN_H_INCLUDED

#include "broker/zim_broker.h"
#include "broker/zim_deliver.h"
#include "broker/zim_notify.h"
#include "broker/zim_sendq.h"
#include "broker/zim_shards.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Bit 62 of this part's request ids.
#define ZIM_GFAN_REQ ((uint64_t)1 << 62)
//  Requests in flight, at most.
#define ZIM_GFAN_SLOTS 4096

typedef struct _zim_gfan_t zim_gfan_t;

//  Creates the part; ids come from sendq, push records go through notify
//  (both borrowed). Caller owns return value.
zim_gfan_t *zim_gfan_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                          zim_sendq_t *sendq, zim_notify_t *notify,
                          const zim_broker_limits_t *limits, zim_broker_stats_t *stats);
void zim_gfan_destroy (zim_gfan_t **self_p);

//  The DEALER to the routers (borrowed); without one, nothing is
//  delivered live (members sync).
void zim_gfan_use_router (zim_gfan_t *self, zsock_t *router);

//  Takes a GSEND or GGET (the whole frame) from gateway gw. A request
//  that cannot go on is answered at once.
void zim_gfan_request (zim_gfan_t *self, zframe_t *gw, zframe_t *frame, int kind);

//  Takes a GPOSTED or GREAD_R (rd at its first field). Returns 0, or -1
//  when it is malformed (the caller counts and logs).
int zim_gfan_store (zim_gfan_t *self, int kind, zim_rd_t *rd, uint32_t fields);

//  Takes a ROUTE_R for request req (ZIM_GFAN_REQ set).
void zim_gfan_routed (zim_gfan_t *self, uint64_t req, zframe_t *frame);

//  Answers or gives up the requests past their deadlines.
void zim_gfan_expire (zim_gfan_t *self, uint64_t now_us);

//  True while requests wait (their deadlines need a timer).
bool zim_gfan_waiting (zim_gfan_t *self);

//  Self test of this class.
void zim_gfan_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
