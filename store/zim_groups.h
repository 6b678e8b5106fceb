/*  zim_groups.h: the store's side of groups and channels: membership, the
    group's log, and a group message's write fan-out, all in the group
    commit's transaction (a message and every member's inbox entry commit
    together, or nothing does).

    Databases (zim_db.h):
        groups    [app][group] -> kind, flags, head gseq, member count
                  (4 x 8 bytes big-endian; flags bit 0: history_for_new)
        gmembers  [app][group][uid] -> joined: the member reads the log
                  after this gseq (0 with history_for_new)
        ugroups   [app][uid][group] -> joined, the same, by user
        glog      [app][group] gseq -> message id: the group's log,
                  1, 2, 3... with no gaps
        gjobs     id -> the uids (comma-separated) of members on other
                  shards a message must still reach: a fan-out job, written
                  with the message, removed by GDONE
        gfan      id -> the gmember list (uid, seq) of the inbox entries a
                  GPOST, an event or a GFAN wrote on this shard: a repeated
                  GFAN is answered from it, retention deletes them with it

    A group message's record (msgs) has to = "g:GROUP" (its conversation
    key), from_seq the sender's inbox seq and to_seq its gseq; its
    idempotency key is the sender's (app, from, cid), so a retry is found
    whatever became of the group since.

        GPOST      a group: the next gseq, the log entry, and each member's
                   inbox entry with its own seq (zim_inbox_group), all in
                   this transaction; a channel: the log entry and the
                   record only (members read the log). GPOSTED lists the
                   members and their seqs, for live delivery; a channel's
                   those who left since its previous message (seq 0), for
                   its live room. A duplicate
                   (same cid, recipient and body) answers the original ids
                   and lists nobody.
        GFAN       a job's part on a member's shard: the record and these
                   members' inbox entries, once (GFANNED lists their seqs)
        GDONE      the job is finished: forget it; the sender's seq goes
                   into the record (a later retry's ack names it)
        GADMIN     create, members (add/remove), get, delete, upgrade:
                   GADMIN_R with a JSON document. A members change is
                   also one event per direction at the head of the log:
                   a record from "$leave" or "$join" with body
                   {"users": [...]}, for a group in the inbox of every
                   member (and of those who left)
        GREAD      LOG: a group's or channel's log after a gseq (a member
                   only, from its join on; too far behind: the newest page
                   and reset; GREAD_R says the kind);
                   LIST: the reader's groups; JOBS: unfinished jobs of
                   messages older than a time (brokers poll for them)
    In a cluster a GPOST names the shards: members placed on another shard
    than this one are left to a job instead of written here.
*/
#ifndef ZIM_GROUPS_H_INCLUDED
#define ZIM_GROUPS_H_INCLUDED

#include "store/zim_db.h"
#include "store/zim_inbox.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Defaults of the limits (store settings).
#define ZIM_GROUPS_MAX_GROUP 500       //  max_group_size
#define ZIM_GROUPS_MAX_CHANNEL 100000  //  max_channel_size
#define ZIM_GROUPS_MAX_BEHIND 10000    //  csync_max_behind

typedef struct _zim_groups_t zim_groups_t;

//  The limits, read live (the store's settings; borrowed).
typedef struct {
    const uint64_t *max_group;   //  members of a group, at most
    const uint64_t *max_channel; //  members of a channel, at most
    const uint64_t *max_behind;  //  a csync further behind gets the newest page and reset
} zim_groups_limits_t;

//  Creates the handler over db, writing inboxes through inbox (borrowed);
//  shell (or NULL) takes the warnings. Caller owns return value.
zim_groups_t *zim_groups_new (zim_db_t *db, zim_inbox_t *inbox, zim_shell_t *shell);
void zim_groups_destroy (zim_groups_t **self_p);

//  Sets the limits (pointers to the store's settings); until then the
//  defaults hold.
void zim_groups_limits (zim_groups_t *self, const zim_groups_limits_t *limits);

//  Applies a GPOST, GFAN, GDONE or GADMIN in the write transaction txn;
//  the answer (GPOSTED, GFANNED, none, GADMIN_R) goes into out; *wrote says whether anything was
//  written. @return 0 or an LMDB error (the transaction must be aborted)
int zim_groups_apply (zim_groups_t *self, MDB_txn *txn, int kind, const void *m, zim_wr_t *out,
                      bool *wrote);

//  The answer to a GPOST, GFAN or GADMIN with request id req whose transaction
//  failed: status ZIM_ESTORE.
void zim_groups_failed (int kind, uint64_t req, zim_wr_t *out);

//  Answers a GREAD from txn (NULL: the store failed) into out, bounded by
//  max_bytes. @return 0 or an LMDB error (out holds an error answer)
int zim_groups_read (zim_groups_t *self, MDB_txn *txn, const zim_gread_t *m, uint64_t max_bytes,
                     zim_wr_t *out);

//  Adds the counters (group_posts, group_fanout, group_refused, group_jobs,
//  group_jobs_done) to STATS.
void zim_groups_stats (zim_groups_t *self, json_t *stats);

//  Self test of this class.
void zim_groups_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
