/*  zim_cursor.h: device cursors, the cursors database ([app][uid][device]
    -> seq): the device has everything of the user's inbox up to seq. A
    cursor only grows, and never beyond the user's last seq; a sync without
    `since` starts after it.
*/
#ifndef ZIM_CURSOR_H_INCLUDED
#define ZIM_CURSOR_H_INCLUDED

#include "store/zim_db.h"
#include "msg/zim_mp.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Moves the cursor of (app, uid, device) to min (seq, last) if that is
//  ahead of it; last is the user's last seq. Sets *moved.
//  @return 0 or an LMDB error
int zim_cursor_set (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                    zim_str_t device, uint64_t seq, uint64_t last, bool *moved);

//  Reads the cursor of (app, uid, device) into *seq (0 when it has none).
//  @return 0 or an LMDB error
int zim_cursor_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                    zim_str_t device, uint64_t *seq);

//  Self test of this class.
void zim_cursor_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
