/*  zim_db.h: the store's LMDB environment: its directory, its named
    databases and their layout version, map growth, the read transaction
    reused between drains, and durability outside the commit (the
    background fsync of sync = none, the directory fsync at creation). Only
    the store actor opens one (docs/ARCHITECTURE.md). What each database
    holds is in zim_store.h.
*/
#ifndef ZIM_DB_H_INCLUDED
#define ZIM_DB_H_INCLUDED

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  fsync policy (docs/OPERATIONS.md, "fsync policy").
typedef enum {
    ZIM_FSYNC_BATCH,  //  one fsync per group commit, before its acks
    ZIM_FSYNC_ALWAYS, //  one transaction and fsync per message
    ZIM_FSYNC_NONE    //  no fsync on the ack path; one about once a second
} zim_fsync_t;

//  Reads "batch", "always" or "none"; returns 0 or -1.
int zim_fsync_parse (const char *text, zim_fsync_t *mode);
//  The name of a mode.
const char *zim_fsync_name (zim_fsync_t mode);

//  The databases of an environment (names as in zim_store.h).
typedef struct {
    MDB_dbi msgs;    //  id -> message record (zim_msgrec.h)
    MDB_dbi inbox;   //  [app][uid] seq -> id (zim_inbox.h)
    MDB_dbi hist;    //  [app][conv] id -> empty (zim_inbox.h)
    MDB_dbi idem;    //  [app][from][cid] -> id (zim_idem.h)
    MDB_dbi seqs;    //  [app][uid] -> last seq (zim_seqs.h)
    MDB_dbi cursors; //  [app][uid][device] -> seq (zim_cursor.h)
    MDB_dbi meta;    //  "version" -> layout version
    //  Receipts, the conversation list, the push queue (zim_convs.h, zim_pushq.h).
    MDB_dbi cstate;  //  [app][uid][conv] -> the user's state of the conversation
    MDB_dbi cidx;    //  [app][uid][conv] seq -> the conversation's messages in the inbox
    MDB_dbi crecent; //  [app][uid] last id [conv] -> empty: most recent first
    MDB_dbi utotal;  //  [app][uid] -> unread messages in all conversations
    MDB_dbi pushk;   //  [app][uid][conv] -> the push record (coalesced)
    MDB_dbi pushq;   //  qid -> [app][uid][conv]: the push queue in order
    //  Groups and channels (zim_groups.h).
    MDB_dbi groups;   //  [app][group] -> kind, flags, head gseq, member count
    MDB_dbi gmembers; //  [app][group][uid] -> the gseq the member joined after
    MDB_dbi ugroups;  //  [app][uid][group] -> the same, by user
    MDB_dbi glog;     //  [app][group] gseq -> message id
    MDB_dbi gjobs;    //  id -> uids on other shards a group message must reach (a job)
    MDB_dbi gfan;     //  id -> the gmember list a job's part wrote on this shard
} zim_dbs_t;

typedef struct _zim_db_t zim_db_t;

//  Opens the environment in dir, creating the directory (and its parents)
//  and the databases if needed, checks the layout version, and fsyncs the
//  directory and its parent so the files' entries survive a crash. name
//  prefixes the log lines. Caller owns return value; NULL on failure
//  (logged: the path, the step, what to do).
zim_db_t *zim_db_new (const char *name, const char *dir, zim_fsync_t sync, uint64_t map_size);
//  Closes the environment (without a final sync: see zim_db_sync).
void zim_db_destroy (zim_db_t **self_p);

//  Accessors.
MDB_env *zim_db_env (zim_db_t *self);
const zim_dbs_t *zim_db_dbs (zim_db_t *self);
zim_fsync_t zim_db_sync_mode (zim_db_t *self);
//  The greatest message id stored when the environment was opened.
uint64_t zim_db_last_id (zim_db_t *self);
//  Map size in bytes, and bytes in use (gauges for STATS).
uint64_t zim_db_map_size (zim_db_t *self);
uint64_t zim_db_map_used (zim_db_t *self);

//  Doubles the map after MDB_MAP_FULL. No transaction of the caller may be
//  open (the read transaction is dropped here).
//  @return 0, or -1 (logged: raise store/map_size)
int zim_db_grow (zim_db_t *self);

//  The read transaction of a drain: renewed here, reset by
//  zim_db_read_end. While the group commit holds a window open (see
//  zim_db_set_window) it is that write transaction instead, so that reads
//  see every write already acknowledged. NULL with *rc set on failure.
MDB_txn *zim_db_read_begin (zim_db_t *self, int *rc);
void zim_db_read_end (zim_db_t *self);

//  The group commit's open write transaction (zim_commit.h), or NULL when
//  it closes it; lost: it was dropped with acknowledged writes in it, so
//  reads fail (EIO) until it is opened again. Any other writer must have
//  it checkpointed first (zim_db_write_begin).
void zim_db_set_window (zim_db_t *self, MDB_txn *txn, bool lost);
//  The window, or NULL; and whether it was lost.
MDB_txn *zim_db_window (zim_db_t *self);
bool zim_db_window_lost (zim_db_t *self);
//  Who checkpoints the window before another writer begins: fn (arg)
//  returns 0 or an LMDB error.
void zim_db_set_checkpointer (zim_db_t *self, int (*fn) (void *arg), void *arg);
//  Begins a write transaction outside the group commit (retention, push
//  queue expiry) after the window, if any, is checkpointed. Returns 0 or
//  an LMDB error.
int zim_db_write_begin (zim_db_t *self, MDB_txn **txn);
//  The environment's directory.
const char *zim_db_dir (zim_db_t *self);
//  fsyncs a directory so the entries made in it survive a crash (a
//  filesystem that cannot sync directories is not an error). Returns 0 or
//  -1 with errno set.
int zim_db_sync_dir (const char *path);

//  A write transaction committed changes: with sync = none, a background
//  sync is now owed.
void zim_db_wrote (zim_db_t *self);
//  Runs the background sync when it is due (now_ms: monotonic ms). A sync
//  that fails is logged and tried again a second later: the changes stay
//  owed until one succeeds.
//  @return 1 synced, 0 nothing due, -1 the sync failed
int zim_db_tick (zim_db_t *self, uint64_t now_ms);
//  Monotonic ms when zim_db_tick has work, or UINT64_MAX.
uint64_t zim_db_due_ms (zim_db_t *self);
//  Syncs now (at $TERM). @return 0 or -1 (logged)
int zim_db_sync (zim_db_t *self);

//  For selftests: a fresh directory under the current one (caller owns
//  the name), and removing it with its content.
char *zim_db_test_dir (void);
void zim_db_test_rmtree (const char *dir);
//  For selftests: an environment (sync none) in a fresh directory, whose
//  name goes to *dir; and closing it, removing the directory.
zim_db_t *zim_db_test_new (char **dir, uint64_t map_size);
void zim_db_test_destroy (zim_db_t **self_p, char **dir);

//  Self test of this class.
void zim_db_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
