/*  zim_idem.h: idempotency keys, the idem database ([app][from][cid] -> id).
    A send retried with the same cid is the same message only if it says
    the same thing: same recipient and the same body bytes (and, for the
    second half of a cross-shard write, the same id). Then it is answered
    from the stored record and nothing is written; otherwise it is a
    conflict, refused, and nothing is written either.
*/
#ifndef ZIM_IDEM_H_INCLUDED
#define ZIM_IDEM_H_INCLUDED

#include "store/zim_db.h"
#include "store/zim_key.h"
#include "msg/zim_msg.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  What an APPEND item's (app, from, cid) finds.
typedef enum {
    ZIM_IDEM_NEW = 0, //  never stored (or its record is gone): store it
    ZIM_IDEM_SAME,    //  the same message: *res is the original's answer
    ZIM_IDEM_CONFLICT //  the cid names another message: refuse it
} zim_idem_t;

//  Looks up the item's key in txn and compares the stored message with it:
//  the recipient and the body byte for byte; for a sides 2 item (the second
//  phase of a cross-shard write, which carries the canonical id) the id
//  too. Sets *found and, for ZIM_IDEM_SAME, *res to ZIM_APPEND_DUPLICATE with
//  the original id, seqs and ts; for ZIM_IDEM_CONFLICT to
//  ZIM_APPEND_CONFLICT with id, seqs and ts 0 (the other message is not
//  described to the retry).
//  @return 0 or an LMDB error
int zim_idem_check (const zim_dbs_t *dbs, MDB_txn *txn, const zim_append_item_t *it,
                    zim_idem_t *found, zim_appended_item_t *res);

//  Writes the item's key naming message id.
//  @return 0 or an LMDB error
int zim_idem_put (const zim_dbs_t *dbs, MDB_txn *txn, const zim_append_item_t *it, uint64_t id);

//  Deletes the idempotency key ik (made by zim_key_idem) if it still names
//  message id (retention).
//  @return 0 or an LMDB error (MDB_NOTFOUND is not one)
int zim_idem_drop (const zim_dbs_t *dbs, MDB_txn *txn, const zim_key_t *ik, uint64_t id);

//  Self test of this class.
void zim_idem_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
