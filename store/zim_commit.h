/*  zim_commit.h: the group commit. Everything one drain took from the
    brokers (APPENDs, SETCURSORs, the receipts' and groups' writes) is
    made durable at once, before any answer leaves.

    With sync = batch and store/checkpoint_ms > 0 (the default) through the
    write-ahead log (zim_wal.h): the batch is applied in a write transaction
    that stays open across batches (the window), then appended to the log
    and the log alone synced; every checkpoint_ms the window is committed
    and synced (a checkpoint), the log rewound. Reads are served from the
    window (zim_db_read_begin), so they see every acknowledged write. A
    crash loses the window, not the log: at start zim_commit_recover
    applies the records after the last checkpoint again. This writes each
    B-tree page a user's tail dirties once per checkpoint instead of once
    per batch (docs/BENCHMARKS.md section 15). A batch with a kind that
    reads the clock (GADMIN, PUSH_Q), or one the log cannot hold, is made
    durable by a checkpoint instead.

    Otherwise (checkpoint_ms 0, sync = none): one LMDB transaction per
    batch, committed (and synced unless none); with sync = always, one
    transaction per message.

    A full map is grown and the batch tried again; a batch that cannot be
    made durable answers every item in it with ZIM_ESTORE, and leaves what
    was acknowledged before it as it was.
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
    uint64_t commits;    //  group commits: batches made durable
    uint64_t fsyncs;     //  syncs: of batches (the log, or LMDB), of checkpoints
    uint64_t errors;     //  write transactions that failed
    uint64_t batch_max;  //  most APPEND items in one transaction
    zim_histo_t commit_us; //  time of each committed transaction (begin to
                           //  commit and its fsync), µs
    zim_histo_t write_us;  //  of it, the commit itself: the dirty pages
                           //  written and synced (mdb_txn_commit), µs
    zim_histo_t batch;     //  APPEND items per committed transaction
    uint64_t checkpoints;  //  windows committed (the log's mode)
    zim_histo_t checkpoint_us; //  time of each checkpoint, µs
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

//  Applies the write-ahead log's records after the last checkpoint (a
//  crash's), checkpoints them, and keeps the log for the writes to come if
//  sync = batch and checkpoint_ms > 0 (wal_bytes: its size). Call once,
//  before the first write. Returns 0, or -1 (logged) if the log cannot be
//  made or applied: the store must not start then.
int zim_commit_recover (zim_commit_t *self, uint64_t checkpoint_ms, uint64_t wal_bytes);
//  Commits the window now (before other writers, at a clean stop).
//  Returns 0 or an LMDB error (logged; the log keeps the writes).
int zim_commit_checkpoint (zim_commit_t *self);
//  Monotonic ms when zim_commit_tick has work (a window due for its
//  checkpoint, a lost window to open again), or UINT64_MAX.
uint64_t zim_commit_due_ms (zim_commit_t *self);
void zim_commit_tick (zim_commit_t *self, uint64_t now_ms);

//  Self test of this class.
void zim_commit_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
