/*  zim_pushq.h: the offline-push queue of a store shard. A message for a
    recipient none of whose devices had it live (or all of them in the
    background) is queued for the push bridge (tools/zim_push.c), one
    record per (user, conversation): a newer message of the same
    conversation replaces the record (its count grows) and moves it to the
    end of the queue. A record leaves when the bridge acknowledges it
    (delivered, dropped after its attempts, or muted), when the user reads
    the conversation up to it, or when it expires (store/push_ttl).

    Delivery to the bridge is at least once: TAKE hands out the records
    after a queue position (qid) without removing them; only ACK removes
    one, and only the version it names (a record replaced meanwhile has a
    new qid and is taken again). qids grow for ever (the counter is kept in
    meta), so a bridge that remembers the last qid it took never skips one.

    Databases (zim_db.h):
        pushk   [app][uid][conv] -> qid, seq, id, ts, count (8 bytes each),
                mention (1), from ([s]), preview (2-byte length, bytes)
        pushq   qid -> [app][uid][conv]: the queue in order
        meta    "pushqid" -> the next qid
*/
#ifndef ZIM_PUSHQ_H_INCLUDED
#define ZIM_PUSHQ_H_INCLUDED

#include "store/zim_convs.h"
#include "store/zim_db.h"
#include "msg/zim_msg.h"

#include <jansson.h>
#include <lmdb.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Counters of the queue (store STATS push_*).
typedef struct {
    uint64_t added;     //  records made
    uint64_t coalesced; //  messages folded into a record already queued
    uint64_t read;      //  records removed because the user read them
    uint64_t delivered; //  records the bridge posted
    uint64_t dropped;   //  records the bridge gave up on
    uint64_t muted;     //  records the bridge did not post: muted
    uint64_t expired;   //  records removed by push_ttl
} zim_pushq_stats_t;

typedef struct _zim_pushq_t zim_pushq_t;

//  Creates the queue of db; counters go to *stats (borrowed). Caller owns
//  return value.
zim_pushq_t *zim_pushq_new (zim_db_t *db, zim_pushq_stats_t *stats);
void zim_pushq_destroy (zim_pushq_t **self_p);

//  Starts work in a write transaction; zim_pushq_finish before its commit
//  (writes the qid counter), zim_pushq_committed after it.
void zim_pushq_begin (zim_pushq_t *self, MDB_txn *txn);
int zim_pushq_finish (zim_pushq_t *self);
void zim_pushq_committed (zim_pushq_t *self);

//  Queues it unless the recipient read it already (read: the user's read
//  cursor of the conversation) or a record of the same or a newer message
//  is queued. @return 0 or an LMDB error
int zim_pushq_add (zim_pushq_t *self, const zim_push_item_t *it, uint64_t read);

//  uid read conv up to seq: a record at or below it leaves.
//  @return 0 or an LMDB error
int zim_pushq_read (zim_pushq_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, uint64_t seq);

//  Appends to records (a JSON array) up to max records queued after qid
//  after, oldest first, each {"qid","app","uid","conv","seq","id","ts",
//  "from","count","preview","mention","muted","badge"}: muted and badge
//  from convs, as of now_ms. @return 0 or an LMDB error
int zim_pushq_take (zim_pushq_t *self, zim_convs_t *convs, uint64_t after, uint64_t max,
                    uint64_t now_ms, json_t *records);

//  Removes the records qids (a reader over n uints) that are still those
//  versions, counting them as outcome (ZIM_PUSHQ_DELIVERED, _DROPPED or
//  _MUTED); *removed says how many. @return 0 or an LMDB error
int zim_pushq_ack (zim_pushq_t *self, zim_rd_t *qids, uint32_t n, int outcome, uint64_t *removed);

//  Sets in out: "depth" (records queued) and "oldest" (the first record as
//  take shows it, or null). @return 0 or an LMDB error
int zim_pushq_stat (zim_pushq_t *self, zim_convs_t *convs, uint64_t now_ms, json_t *out);

//  Removes up to max records whose message is older than cutoff_ms, from
//  the front of the queue, in a transaction of its own; *removed says how
//  many. @return 0 or an LMDB error
int zim_pushq_expire (zim_pushq_t *self, uint64_t cutoff_ms, size_t max, size_t *removed);

//  Self test of this class.
void zim_pushq_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
