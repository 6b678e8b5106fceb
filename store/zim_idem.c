/*  zim_idem.c: idempotency keys (see zim_idem.h).
 */
#include "store/zim_idem.h"
#include "store/zim_msgrec.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

int zim_idem_check (const zim_dbs_t *dbs, MDB_txn *txn, const zim_append_item_t *it,
                    zim_idem_t *found, zim_appended_item_t *res)
{
    *found = ZIM_IDEM_NEW;
    zim_key_t ik;
    zim_key_idem (&ik, it->app, it->from, it->cid);
    MDB_val k = zim_key_val (&ik), v;
    int rc = mdb_get (txn, dbs->idem, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != 8))
        return 0;
    if (rc)
        return rc;
    uint8_t idb[8];
    memcpy (idb, v.mv_data, 8);
    MDB_val rk = {8, idb}, rv;
    zim_msgrec_t rec;
    rc = mdb_get (txn, dbs->msgs, &rk, &rv);
    //  A key without its record (cannot happen short of corruption): the
    //  message is stored anew, which rewrites the key.
    if (rc == MDB_NOTFOUND || (rc == 0 && zim_msgrec_parse (&rv, &rec)))
        return 0;
    if (rc)
        return rc;
    uint64_t id = zim_be64_get (idb);
    bool same = zim_str_same (rec.to, it->to) && zim_str_same (rec.body, it->body);
    //  A second phase carries the id its first phase fixed: another id is
    //  another message, even with the same words.
    if (it->sides == ZIM_SIDE_TO && id != it->id)
        same = false;
    if (same) {
        *found = ZIM_IDEM_SAME;
        *res = (zim_appended_item_t){ZIM_APPEND_DUPLICATE, id, rec.from_seq, rec.to_seq, rec.ts};
    } else {
        *found = ZIM_IDEM_CONFLICT;
        *res = (zim_appended_item_t){ZIM_APPEND_CONFLICT, 0, 0, 0, 0};
    }
    return 0;
}

int zim_idem_put (const zim_dbs_t *dbs, MDB_txn *txn, const zim_append_item_t *it, uint64_t id)
{
    zim_key_t ik;
    zim_key_idem (&ik, it->app, it->from, it->cid);
    uint8_t idb[8];
    zim_be64_put (idb, id);
    MDB_val k = zim_key_val (&ik), v = {8, idb};
    return mdb_put (txn, dbs->idem, &k, &v, 0);
}

int zim_idem_drop (const zim_dbs_t *dbs, MDB_txn *txn, const zim_key_t *ik, uint64_t id)
{
    MDB_val k = zim_key_val (ik), v;
    int rc = mdb_get (txn, dbs->idem, &k, &v);
    if (rc == 0 && v.mv_size == 8 && zim_be64_get (v.mv_data) == id)
        rc = mdb_del (txn, dbs->idem, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Stores a record for it under its id and its key, as an APPEND would.
static void s_test_store (const zim_dbs_t *dbs, MDB_txn *txn, const zim_append_item_t *it,
                          uint64_t from_seq, uint64_t to_seq)
{
    uint8_t idb[8], rec[256];
    zim_be64_put (idb, it->id);
    zim_msgrec_write (rec, it, from_seq, to_seq);
    MDB_val k = {8, idb}, v = {zim_msgrec_size (it), rec};
    assert (mdb_put (txn, dbs->msgs, &k, &v, 0) == 0);
    assert (zim_idem_put (dbs, txn, it, it->id) == 0);
}

void zim_idem_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 20);
    const zim_dbs_t *dbs = zim_db_dbs (db);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);

    zim_append_item_t orig = {100,
                              5000,
                              zim_str ("demo"),
                              zim_str ("alice"),
                              zim_str ("bob"),
                              zim_str ("x2"),
                              {"\xa3one", 4},
                              ZIM_SIDE_BOTH};
    zim_idem_t found;
    zim_appended_item_t res;
    assert (zim_idem_check (dbs, txn, &orig, &found, &res) == 0 && found == ZIM_IDEM_NEW);
    s_test_store (dbs, txn, &orig, 3, 7);

    //  The same words under a new id (a retry through any broker): the
    //  original's answer.
    zim_append_item_t retry = orig;
    retry.id = 200;
    retry.ts = 6000;
    assert (zim_idem_check (dbs, txn, &retry, &found, &res) == 0 && found == ZIM_IDEM_SAME);
    assert (res.status == ZIM_APPEND_DUPLICATE && res.id == 100 && res.from_seq == 3 &&
            res.to_seq == 7 && res.ts == 5000);

    //  Another recipient, another body, a body that only starts the same, a
    //  shorter one: conflicts, described by nothing.
    zim_append_item_t other = retry;
    other.to = zim_str ("carol");
    assert (zim_idem_check (dbs, txn, &other, &found, &res) == 0 && found == ZIM_IDEM_CONFLICT);
    assert (res.status == ZIM_APPEND_CONFLICT && res.id == 0 && res.from_seq == 0 &&
            res.to_seq == 0 && res.ts == 0);
    other = retry;
    other.body = (zim_str_t){"\xa3two", 4};
    assert (zim_idem_check (dbs, txn, &other, &found, &res) == 0 && found == ZIM_IDEM_CONFLICT);
    other.body = (zim_str_t){"\xa3one\xc0", 5};
    assert (zim_idem_check (dbs, txn, &other, &found, &res) == 0 && found == ZIM_IDEM_CONFLICT);
    other.body = (zim_str_t){"\xa3on", 3};
    assert (zim_idem_check (dbs, txn, &other, &found, &res) == 0 && found == ZIM_IDEM_CONFLICT);
    //  The key is per sender and per cid.
    other = retry;
    other.from = zim_str ("dave");
    assert (zim_idem_check (dbs, txn, &other, &found, &res) == 0 && found == ZIM_IDEM_NEW);
    other = retry;
    other.cid = zim_str ("x3");
    assert (zim_idem_check (dbs, txn, &other, &found, &res) == 0 && found == ZIM_IDEM_NEW);

    //  A second phase (sides 2) must carry the stored id as well.
    zim_append_item_t half = orig;
    half.sides = ZIM_SIDE_TO;
    assert (zim_idem_check (dbs, txn, &half, &found, &res) == 0 && found == ZIM_IDEM_SAME);
    assert (res.id == 100 && res.to_seq == 7);
    half.id = 101;
    assert (zim_idem_check (dbs, txn, &half, &found, &res) == 0 && found == ZIM_IDEM_CONFLICT);

    //  drop removes the key only while it names the given message.
    zim_key_t ik;
    zim_key_idem (&ik, orig.app, orig.from, orig.cid);
    assert (zim_idem_drop (dbs, txn, &ik, 999) == 0);
    assert (zim_idem_check (dbs, txn, &retry, &found, &res) == 0 && found == ZIM_IDEM_SAME);
    assert (zim_idem_drop (dbs, txn, &ik, 100) == 0);
    assert (zim_idem_check (dbs, txn, &retry, &found, &res) == 0 && found == ZIM_IDEM_NEW);
    assert (zim_idem_drop (dbs, txn, &ik, 100) == 0);

    //  A key whose record is gone is treated as new.
    assert (zim_idem_put (dbs, txn, &orig, 12345) == 0);
    assert (zim_idem_check (dbs, txn, &retry, &found, &res) == 0 && found == ZIM_IDEM_NEW);
    mdb_txn_abort (txn);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("idem: duplicates and conflicts are told apart");
}
