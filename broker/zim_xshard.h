/*  zim_xshard.h: the second halves of cross-shard sends. A message whose
    sender and recipient live on different shards is written twice: the
    sender's shard first (zim_sendq), which fixes its id, then the
    recipient's shard with that id, here.

    Order. The recipient's inbox must take a sender's messages in the order
    the sender's inbox did. So, per recipient shard:
    - second halves are written one APPEND at a time, in the order their
      first halves committed; what becomes due meanwhile goes in the next;
    - a half whose write failed (refused, an error, no answer in time) is
      kept here and written again by the broker itself, first, until the
      shard has it ("repair"); until then every later half due for that
      shard joins the repairs behind it, and new cross-shard sends to its
      users are refused with 5030 (zim_xshard_blocked) so that none can
      overtake it. Their clients retry with the same cid and, once the
      repair is done, get the original ack.
    Repairs are bounded: at most max_inflight halves; beyond that every
    cross-shard send is refused until they drain. They are soft state: a
    broker that dies with repairs pending leaves them to the clients'
    retries (as a broker dying between the two writes always has).
*/
#ifndef ZIM_XSHARD_H_INCLUDED
#define ZIM_XSHARD_H_INCLUDED

#include "broker/zim_broker.h"
#include "broker/zim_shards.h"
#include "msg/zim_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_xshard_t zim_xshard_t;

//  The outcome of a queued half: err 0 (the recipient's shard has it;
//  to_seq is the recipient's seq), ZIM_ERR_CID_CONFLICT (that shard holds
//  another message under this cid), or a retryable code (ZIM_ERR_UNAVAILABLE,
//  ZIM_ERR_TIMEOUT): the half failed and is being repaired.
typedef void (zim_xshard_done_fn) (void *ctx, void *owner, void *item, int err, uint64_t to_seq);

//  Creates the second-half writer over shards; done (with ctx) hears the
//  outcome of each half given to zim_xshard_add. Caller owns return value.
zim_xshard_t *zim_xshard_new (zim_shell_t *shell, zim_shards_t *shards,
                              const zim_broker_limits_t *limits, zim_broker_stats_t *stats,
                              zim_xshard_done_fn *done, void *ctx);
void zim_xshard_destroy (zim_xshard_t **self_p);

//  True when a new cross-shard send to a user on shard must be refused:
//  the shard has halves being repaired, or repairs are at their bound.
bool zim_xshard_blocked (zim_xshard_t *self, int shard);

//  Queues the second half ai (sides ZIM_SIDE_TO, the first half's id and
//  ts) of item, which belongs to owner, for shard. ai's views must stay
//  valid until done is called for item or owner is forgotten. Returns 0,
//  or ZIM_ERR_UNAVAILABLE when the shard is being repaired: the half joined
//  the repairs (a copy) and done will not be called.
int zim_xshard_add (zim_xshard_t *self, int shard, void *owner, void *item,
                    const zim_append_item_t *ai);

//  Makes ai (copied) a repair for shard: a half whose first write
//  committed after its send had been answered already.
void zim_xshard_repair (zim_xshard_t *self, int shard, const zim_append_item_t *ai);

//  Keeps the second halves of a first write (request req to a sender's
//  shard) still unanswered when its sends were answered already (their
//  batch timed out): if it is answered after all, the halves of the items
//  it stored become repairs, written before anything later to their
//  shards. Item i needs halves[i] (copied) on shards[i], or nothing when
//  shards[i] is -1. Given up after ten store_timeouts.
void zim_xshard_adopt (zim_xshard_t *self, uint64_t req, uint32_t n, const int *shards,
                       const zim_append_item_t *halves);

//  Sends one APPEND to each shard that has none in flight and halves due.
void zim_xshard_flush (zim_xshard_t *self, uint64_t now_us);

//  Takes an APPENDED (rd at its first field, the request id read as req).
//  Returns 0 if it answered a write of this class or an adopted one, -1 if
//  not.
int zim_xshard_appended (zim_xshard_t *self, uint64_t req, zim_rd_t *rd, uint32_t fields);

//  owner goes away: its halves still queued or in flight become repairs
//  (copies), and done is not called for them.
void zim_xshard_forget (zim_xshard_t *self, void *owner);

//  Abandons writes unanswered after store_timeout (their halves become
//  repairs) and retries repairs that are due.
void zim_xshard_tick (zim_xshard_t *self, uint64_t now_us);

//  Halves being repaired.
size_t zim_xshard_repairs (zim_xshard_t *self);
//  True while writes are in flight or repairs wait (timers to run).
bool zim_xshard_waiting (zim_xshard_t *self);

//  Copies the bytes ai's views point into into one buffer and points them
//  there. Caller owns return value (free it when done with ai).
char *zim_xshard_hold (zim_append_item_t *ai);

//  Self test of this class.
void zim_xshard_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
