/*  zim_cursor.c: device cursors (see zim_cursor.h).
 */
#include "store/zim_cursor.h"
#include "store/zim_key.h"

#include <assert.h>
#include <czmq.h>

//  Sets k to [app][uid][device].
static void s_key (zim_key_t *k, zim_str_t app, zim_str_t uid, zim_str_t device)
{
    zim_key_user (k, app, uid);
    zim_key_str (k, device);
}

int zim_cursor_set (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                    zim_str_t device, uint64_t seq, uint64_t last, bool *moved)
{
    *moved = false;
    if (seq > last)
        seq = last;
    zim_key_t ck;
    s_key (&ck, app, uid, device);
    MDB_val k = zim_key_val (&ck), v;
    int rc = mdb_get (txn, dbs->cursors, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (rc == 0 && v.mv_size == 8 && zim_be64_get (v.mv_data) >= seq)
        return 0;
    uint8_t val[8];
    zim_be64_put (val, seq);
    v = (MDB_val){8, val};
    if ((rc = mdb_put (txn, dbs->cursors, &k, &v, 0)))
        return rc;
    *moved = true;
    return 0;
}

int zim_cursor_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                    zim_str_t device, uint64_t *seq)
{
    *seq = 0;
    zim_key_t ck;
    s_key (&ck, app, uid, device);
    MDB_val k = zim_key_val (&ck), v;
    int rc = mdb_get (txn, dbs->cursors, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        *seq = zim_be64_get (v.mv_data);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_cursor_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 20);
    const zim_dbs_t *dbs = zim_db_dbs (db);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_str_t app = zim_str ("demo"), alice = zim_str ("alice");
    zim_str_t phone = zim_str ("phone"), watch = zim_str ("watch");
    uint64_t seq;
    bool moved;
    assert (zim_cursor_get (dbs, txn, app, alice, phone, &seq) == 0 && seq == 0);
    //  Forward only; capped at the last seq; one per device.
    assert (zim_cursor_set (dbs, txn, app, alice, phone, 20, 73, &moved) == 0 && moved);
    assert (zim_cursor_set (dbs, txn, app, alice, phone, 5, 73, &moved) == 0 && !moved);
    assert (zim_cursor_set (dbs, txn, app, alice, phone, 20, 73, &moved) == 0 && !moved);
    assert (zim_cursor_get (dbs, txn, app, alice, phone, &seq) == 0 && seq == 20);
    assert (zim_cursor_set (dbs, txn, app, alice, watch, 1000000, 73, &moved) == 0 && moved);
    assert (zim_cursor_get (dbs, txn, app, alice, watch, &seq) == 0 && seq == 73);
    assert (zim_cursor_get (dbs, txn, app, zim_str ("alic"), phone, &seq) == 0 && seq == 0);
    assert (zim_cursor_set (dbs, txn, app, alice, zim_str ("tab"), 3, 0, &moved) == 0);
    assert (moved); //  a first cursor at 0 is written (and moves nothing back)
    mdb_txn_abort (txn);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("cursor: forward only, capped, per device");
}
