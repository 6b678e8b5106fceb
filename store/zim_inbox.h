/*  zim_inbox.h: APPEND items written into a write transaction. A new message
    takes the next seq in its sender's inbox and in its recipient's (the
    inbox database, [app][uid] seq -> id: seq 1, 2, 3... with no gaps), is
    stored once as a record (msgs, zim_msgrec.h), gets its conversation
    history entry (hist, [app][conv] id -> empty, conv = zim_conv_peer) and
    its idempotency key (zim_idem.h), and each side's conversation state
    and list moves on (zim_convs.h). A cross-shard item (sides 1 or 2)
    takes a seq in one side's inbox only: the other shard writes the other.
*/
#ifndef ZIM_INBOX_H_INCLUDED
#define ZIM_INBOX_H_INCLUDED

#include "store/zim_convs.h"
#include "store/zim_db.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_inbox_t zim_inbox_t;

//  Creates the writer of db's inboxes; shell (or NULL) takes the warnings a
//  misconfigured broker can cause. Caller owns return value.
zim_inbox_t *zim_inbox_new (zim_db_t *db, zim_shell_t *shell);
//  Destroys it.
void zim_inbox_destroy (zim_inbox_t **self_p);

//  Starts work in a new write transaction (borrowed until the next begin).
void zim_inbox_begin (zim_inbox_t *self, MDB_txn *txn);
//  The conversation states this writer keeps in step (zim_convs.h), in
//  the same transaction: a cursor moved in it sees the messages appended
//  before (borrowed).
zim_convs_t *zim_inbox_convs (zim_inbox_t *self);
//  Stores one item and fills *res: ZIM_APPEND_STORED with its seqs,
//  ZIM_APPEND_DUPLICATE or ZIM_APPEND_CONFLICT (zim_idem.h), or ZIM_EVALUE
//  for an invalid item or an id already used by another message.
//  @return 0 (the outcome is in res->status) or an LMDB error, after which
//  the transaction must be aborted
int zim_inbox_append (zim_inbox_t *self, const zim_append_item_t *it, zim_appended_item_t *res);
//  Stores a group message: it->to is the group's conversation key
//  ("g:GROUP"), gseq its place in the group's log. Each of members[0..n)
//  (the sender among them, or none for a channel) gets the next seq of its
//  inbox, into seqs[i], and the conversation moves on for it (position
//  gseq); the record keeps the sender's seq (*from_seq, 0 if the sender is
//  not among them) and gseq; the idempotency key is written. The caller
//  checked the key (zim_idem_check) and the membership.
//  @return 0 or an LMDB error (abort the transaction); ZIM_EVALUE when
//  the id names another message (nothing written)
int zim_inbox_group (zim_inbox_t *self, const zim_append_item_t *it, uint64_t gseq,
                     const zim_str_t *members, size_t n, uint64_t *seqs, uint64_t *from_seq,
                     bool idem);
//  The last seq of (app, uid) as the transaction sees it, into *seq.
//  @return 0 or an LMDB error
int zim_inbox_last_seq (zim_inbox_t *self, zim_str_t app, zim_str_t uid, uint64_t *seq);
//  Writes the seq counters back; call before the commit.
//  @return 0 or an LMDB error
int zim_inbox_finish (zim_inbox_t *self);
//  The transaction committed: what it wrote is now the base.
void zim_inbox_committed (zim_inbox_t *self);

//  Self test of this class.
void zim_inbox_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
