/*  zim_receipts.h: the store's side of receipts, the conversation list and
    offline push: the backbone kinds MARK, PUSH_ADD and PUSH_Q (writes,
    applied in the group commit's transaction, after the APPENDs before
    them, answered once it committed) and CONVS_Q (a read, answered from
    the drain's read transaction). What is kept is in zim_convs.h and
    zim_pushq.h.

        MARK      a read/delivered cursor moves (answer MARKED): the read
                  one removes the push record it covers; when this shard
                  also holds the other side of the "p:" conversation (its
                  message record carries the sender's seq), that side's
                  peer cursors move in the same transaction and MARKED
                  says so (peer_seq); PEER_* marks do it on the other
                  side's shard; MUTE sets the push mute
        PUSH_ADD  records for the push bridge (no answer)
        PUSH_Q    stat, take, ack (answer PUSH_R, a JSON document)
        CONVS_Q   a page of the list (answer CONVS_R)
    It also hands the groups' kinds to zim_groups (GPOST and GADMIN in the
    commit, GREAD from the read transaction), so the store and the commit
    know one class for every kind beside APPEND, READ and SETCURSOR.
*/
#ifndef ZIM_RECEIPTS_H_INCLUDED
#define ZIM_RECEIPTS_H_INCLUDED

#include "store/zim_db.h"
#include "store/zim_groups.h"
#include "store/zim_inbox.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

//  What a kind is to this class.
#define ZIM_RECEIPTS_NONE 0  //  not one of its kinds
#define ZIM_RECEIPTS_WRITE 1 //  applied in the group commit
#define ZIM_RECEIPTS_READ 2  //  served from the read transaction

typedef struct _zim_receipts_t zim_receipts_t;

//  Creates the handler over db; inbox gives the conversation states of the
//  commit's transaction (borrowed); shell (or NULL) takes the warnings a
//  peer can cause. Caller owns return value.
zim_receipts_t *zim_receipts_new (zim_db_t *db, zim_inbox_t *inbox, zim_shell_t *shell);
void zim_receipts_destroy (zim_receipts_t **self_p);

//  ZIM_RECEIPTS_WRITE, _READ or _NONE for a backbone kind.
int zim_receipts_kind (int kind);
//  Checks a whole message of one of its kinds (rd after the kind).
//  @return 0, or -1 with *why set
int zim_receipts_check (int kind, zim_rd_t *rd, uint32_t fields, const char **why);

//  The group commit's side (zim_commit.c). A drain of n writes starts
//  with no answers; each transaction is begun, finished before its commit,
//  and told it committed.
void zim_receipts_start (zim_receipts_t *self, size_t n);
void zim_receipts_begin (zim_receipts_t *self, MDB_txn *txn);
int zim_receipts_finish (zim_receipts_t *self);
void zim_receipts_committed (zim_receipts_t *self);
//  Applies write w (kind, rd after the kind) and keeps its answer; *wrote
//  tells whether it changed anything. @return 0 or an LMDB error
int zim_receipts_apply (zim_receipts_t *self, size_t w, int kind, zim_rd_t *rd, uint32_t fields,
                        bool *wrote);
//  Write w (the whole message) failed with its transaction: its answer is
//  ZIM_ESTORE.
void zim_receipts_failed (zim_receipts_t *self, size_t w, zim_str_t msg);
//  The answer to write w, or an empty view for none (PUSH_ADD).
zim_str_t zim_receipts_reply (zim_receipts_t *self, size_t w);

//  Answers a read (kind, rd after the kind) from txn into out: a page
//  bounded by max_bytes. @return 0 or an LMDB error (out then holds an
//  error answer)
int zim_receipts_read (zim_receipts_t *self, MDB_txn *txn, int kind, zim_rd_t *rd, uint32_t fields,
                       uint64_t max_bytes, zim_wr_t *out);

//  Push records older than cutoff_ms leave the queue (at most max, in a
//  transaction of their own); *removed says how many.
//  @return 0 or an LMDB error
int zim_receipts_expire (zim_receipts_t *self, uint64_t cutoff_ms, size_t max, size_t *removed);

//  Adds the push counters (push_added, push_coalesced, push_read,
//  push_delivered, push_dropped, push_muted, push_expired), receipts
//  (marks) and the gauge push_depth to a STATS object.
void zim_receipts_stats (zim_receipts_t *self, json_t *stats);

//  The groups' handler (zim_groups.h), to set its limits (borrowed).
zim_groups_t *zim_receipts_groups (zim_receipts_t *self);

//  Self test of this class.
void zim_receipts_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
