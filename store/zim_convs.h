/*  zim_convs.h: each user's conversations: the state of every conversation
    it has (its newest message, its read and delivered cursors, what the
    other side has read, its mute), the conversation's messages in the
    user's inbox, the list most recent first, and the user's total unread.
    Kept at append time in the append's write transaction (no scan when the
    list is read), with a cache per transaction like zim_seqs: a user with
    many messages in one group commit costs one write of its state.

    Cursors are seqs of the user's own inbox: "read = S" means every
    message of the conversation whose seq in this user's inbox is at most S
    is read (the user's own are, always). A cursor only moves forward and
    always names a message of others in the conversation. Unread = messages
    of others after the read cursor: each message of others is indexed
    with the number of messages of others up to it (cum), so unread =
    others - cum at the read cursor, exact whatever the reader skips, never
    negative, the user's own messages never counted (nor indexed: a
    cursor move needs only the messages it can name). What the other side of "p:A:B" has read is
   kept in this user's seqs too (peer_read): "the other side read my messages up to my seq B".

    Databases (zim_db.h):
        cstate   [app][uid][conv] -> state (11 x 8 bytes, zim_convstate_t)
        cidx     [app][uid][conv] seq -> id, cum, pos (8 bytes each), flags
                 (1 byte, 0): the conversation's messages of others in
                 the user's inbox
        crecent  [app][uid] last_id [conv] -> empty: the list, read
                 backwards (ids grow with time)
        utotal   [app][uid] -> unread in every conversation (the badge)

    Groups: a group message lands in each member's inbox like a 1:1 one;
    the code that writes it calls zim_convs_note for each member with the
    message's position in the group (the same for every member), so that
    zim_convs_readers can count the members who read it.
*/
#ifndef ZIM_CONVS_H_INCLUDED
#define ZIM_CONVS_H_INCLUDED

#include "store/zim_db.h"
#include "msg/zim_msg.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  A user's state of one conversation (the value of cstate).
typedef struct {
    uint64_t last_seq;       //  the newest message's seq in the user's inbox; 0: none
    uint64_t last_id;        //  its id
    uint64_t last_pos;       //  its position in a group (0 for 1:1)
    uint64_t others;         //  messages of others so far
    uint64_t read;           //  read cursor: a seq of a message of the conversation, 0 none
    uint64_t read_others;    //  others up to the read cursor
    uint64_t read_pos;       //  group position at the read cursor
    uint64_t delivered;      //  delivered cursor (>= read)
    uint64_t peer_read;      //  "p:": the other side's read cursor, in this user's seqs
    uint64_t peer_delivered; //  and its delivered cursor
    uint64_t muted;          //  push muted until this time (ms since the epoch), 0 not
} zim_convstate_t;

//  What a cursor move did (zim_convs_mark, zim_convs_peer_mark).
typedef struct {
    bool moved;         //  a cursor moved (mute: the mute changed)
    uint64_t read;      //  the cursors now
    uint64_t delivered; //
    uint64_t unread;    //  unread now
    uint64_t peer_id;   //  read/delivered: the message the cursor moved to, the
                        //  newest of others it covers (0: it did not move)
} zim_convs_moved_t;

typedef struct _zim_convs_t zim_convs_t;

//  Creates the writer of db's conversation states. Caller owns return value.
zim_convs_t *zim_convs_new (zim_db_t *db);
void zim_convs_destroy (zim_convs_t **self_p);

//  Starts work in a new write transaction: the cache is emptied.
void zim_convs_begin (zim_convs_t *self, MDB_txn *txn);
//  Writes the cached states, list entries and totals into the
//  transaction; call before its commit. @return 0 or an LMDB error
int zim_convs_finish (zim_convs_t *self);

//  A message entered uid's inbox at seq: it becomes the newest of conv
//  for uid; mine: uid sent it (never unread); pos: its position in a group
//  (0 for 1:1). Seqs must grow per user. @return 0 or an LMDB error
int zim_convs_note (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, uint64_t seq,
                    uint64_t id, bool mine, uint64_t pos);

//  Moves uid's read (ZIM_MARK_READ, which moves delivered too) or
//  delivered cursor of conv forward to the newest message of others in
//  conv at or below seq (value), or sets its mute (ZIM_MARK_MUTE: until value, 0
//  unmutes). A cursor that would not move forward is left (moved false).
//  A conversation uid has no message of is left alone (mute excepted).
//  @return 0 or an LMDB error
int zim_convs_mark (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, int what,
                    uint64_t value, zim_convs_moved_t *out);

//  The other side of conv read (ZIM_MARK_PEER_READ) or got
//  (ZIM_MARK_PEER_DELIVERED) uid's messages up to uid's seq: uid's
//  peer_read / peer_delivered move forward; out gets them as read and
//  delivered. @return 0 or an LMDB error
int zim_convs_peer_mark (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, int what,
                         uint64_t seq, zim_convs_moved_t *out);

//  uid's state of conv as the transaction sees it; *found false (and a
//  zeroed state) if it has none. @return 0 or an LMDB error
int zim_convs_state (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv,
                     zim_convstate_t *st, bool *found);
//  uid's unread in every conversation (the badge). @return 0 or an LMDB error
int zim_convs_badge (zim_convs_t *self, zim_str_t app, zim_str_t uid, uint64_t *total);

//  Writes one page of uid's list into items: sconv maps (msg/zim_catalog.def),
//  most recent first, those whose last message id is below before (0: all),
//  at most limit and, unless empty, max_bytes; *count and *more say what
//  it holds. The last message's from, ts and body come from its record.
//  Reads through txn (a read transaction). @return 0 or an LMDB error
int zim_convs_page (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                    uint64_t limit, uint64_t before, size_t max_bytes, zim_wr_t *items,
                    uint32_t *count, bool *more);

//  Retention purged message id, at seq of uid's inbox in conv (mine: uid
//  sent it): its entry goes; if it was conv's newest the conversation
//  leaves the list (its state stays only for a mute); an unread message of
//  others counts as read from now on (the read cursor moves past it), so
//  unread and the badge never count what can no longer be read. Writes
//  through txn directly (the purge's own transaction).
//  @return 0 or an LMDB error
int zim_convs_forget (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                      zim_str_t conv, uint64_t seq, uint64_t id);

//  Groups (<= 200 members): how many of members[0..n) have read the group
//  conversation conv up to position pos or beyond (each member's read
//  cursor's position, as zim_convs_note was given it). n point reads.
//  @return 0 or an LMDB error
int zim_convs_readers (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t conv,
                       const zim_str_t *members, size_t n, uint64_t pos, uint64_t *count);

//  Self test of this class.
void zim_convs_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
