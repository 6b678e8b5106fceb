/*  zim_commit.h: the group commit. Everything one drain took from the
    brokers (APPENDs and SETCURSORs) is written in one LMDB write
    transaction, committed and synced once, before any answer leaves; with
    sync = always, one transaction per message instead. A full map is grown
    and the transaction tried again; a transaction that cannot commit
    answers every item in it with ZIM_ESTORE.
*/
#ifndef ZIM_COMMIT_H_INCLUDED
#define ZIM_COMMIT_H_INCLUDED

#include "store/zim_db.h"
#include "store/zim_receipts.h"
#include "msg/zim_metrics.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  What committed writes add up to (STATS counters of the store).
typedef struct {
    uint64_t appended;   //  APPEND items stored
    uint64_t duplicates; //  items answered as duplicates
    uint64_t conflicts;  //  items refused: the cid names another message
    uint64_t cursors;    //  cursors moved
    uint64_t commits;    //  write transactions committed
    uint64_t fsyncs;     //  of them, synced before their answers
    uint64_t errors;     //  write transactions that failed
    uint64_t batch_max;  //  most APPEND items in one transaction
    zim_histo_t commit_us; //  time of each committed transaction (begin to
                           //  commit and its fsync), µs
    zim_histo_t write_us;  //  of it, the commit itself: the dirty pages
                           //  written and synced (mdb_txn_commit), µs
    zim_histo_t batch;     //  APPEND items per committed transaction
} zim_commit_stats_t;

typedef struct _zim_commit_t zim_commit_t;

//  Creates the group commit of db. Counters go to *stats (borrowed);
//  shell (or NULL) takes the warnings a peer can cause. Caller owns
//  return value.
zim_commit_t *zim_commit_new (zim_db_t *db, zim_shell_t *shell, zim_commit_stats_t *stats);
//  Destroys it.
void zim_commit_destroy (zim_commit_t **self_p);

//  The writer of the receipts' kinds (MARK, PUSH_ADD, PUSH_Q): their
//  answers after zim_commit_write, its reads and counters (borrowed).
zim_receipts_t *zim_commit_receipts (zim_commit_t *self);

//  Writes msgs[0..n): whole backbone messages, each an APPEND, a
//  SETCURSOR or a write of zim_receipts, already checked to decode.
//  results gets one answer per APPEND item, the items of msgs[0] first, in
//  order; the receipts' answers are zim_receipts_reply (.., p). Returns
//  when the writes are committed (and synced, unless sync = none) or have
//  failed.
void zim_commit_write (zim_commit_t *self, const zim_str_t *msgs, size_t n,
                       zim_appended_item_t *results);

//  Self test of this class.
void zim_commit_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
