/*  zim_retention.c: the retention purge (see zim_retention.h).
 */
#include "store/zim_retention.h"
#include "store/zim_convs.h"
#include "store/zim_groups.h"
#include "store/zim_idem.h"
#include "store/zim_inbox.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

//  Deletes key from dbi; a missing key is not an error.
static int s_del (MDB_txn *txn, MDB_dbi dbi, const zim_key_t *key)
{
    MDB_val k = zim_key_val (key);
    int rc = mdb_del (txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  A group message's entries on this shard (message id, of group in app,
//  at gseq): every member's inbox entry gfan lists (its conversation
//  list follows), the list, the log entry and a job left over. Returns 0
//  or an LMDB error; *found: whether the list was there (a message stored
//  before the lists were kept has none: its members' entries stay).
static int s_purge_group (const zim_dbs_t *dbs, MDB_txn *txn, uint64_t id, zim_str_t app,
                          zim_str_t conv, uint64_t gseq, bool *found)
{
    uint8_t idb[8];
    zim_be64_put (idb, id);
    MDB_val k = {8, idb}, v;
    int rc = mdb_get (txn, dbs->gfan, &k, &v);
    *found = rc == 0;
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (rc == 0) {
        //  A copy: the writes below may move the page.
        char *list = zim_malloc (v.mv_size);
        memcpy (list, v.mv_data, v.mv_size);
        zim_rd_t rd;
        zim_rd_init (&rd, list, v.mv_size);
        zim_gmember_t gm;
        rc = 0;
        while (rc == 0 && zim_rd_left (&rd) && zim_gmember_unpack (&rd, &gm) == 0) {
            zim_key_t uk;
            zim_key_user (&uk, app, gm.uid);
            zim_key_u64 (&uk, gm.seq);
            rc = zim_convs_forget (dbs, txn, app, gm.uid, conv, gm.seq, id);
            if (rc == 0)
                rc = s_del (txn, dbs->inbox, &uk);
        }
        free (list);
        if (rc == 0)
            rc = mdb_del (txn, dbs->gfan, &k, NULL);
        if (rc)
            return rc;
    }
    rc = mdb_del (txn, dbs->gjobs, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    zim_key_t lk;
    zim_key_user (&lk, app, (zim_str_t){conv.ptr + 2, conv.len - 2});
    zim_key_u64 (&lk, gseq);
    return s_del (txn, dbs->glog, &lk);
}

//  Deletes the entries that point at the record under the cursor, then the
//  record. Returns 0 or an LMDB error.
static int s_purge_one (const zim_dbs_t *dbs, MDB_txn *txn, MDB_cursor *cur, uint64_t id,
                        const zim_msgrec_t *rec)
{
    //  Build every key first: deleting may move the record's page.
    zim_key_t fk, tk, hk, ik;
    zim_key_user (&fk, rec->app, rec->from);
    zim_key_u64 (&fk, rec->from_seq);
    zim_key_user (&tk, rec->app, rec->to);
    zim_key_u64 (&tk, rec->to_seq);
    zim_key_conv (&hk, rec->app, rec->from, rec->to);
    zim_key_u64 (&hk, id);
    zim_key_idem (&ik, rec->app, rec->from, rec->cid);
    bool from_entry = rec->from_seq != 0, to_entry = rec->to_seq != 0;
    //  A group message (to "g:GROUP", to_seq its gseq): its members'
    //  entries on this shard are listed in gfan (s_purge_group); the
    //  sender's is found from the record when the list is not there.
    bool group = rec->to.len > 2 && rec->to.ptr[0] == 'g' && rec->to.ptr[1] == ':';
    if (group)
        to_entry = false;
    //  The conversation lists, from copies: a write may move the record.
    uint64_t from_seq = rec->from_seq, to_seq = rec->to_seq;
    char app[ZIM_ID_MAX], from[ZIM_ID_MAX], to[ZIM_ID_MAX];
    zim_str_t appv = {app, rec->app.len}, fromv = {from, rec->from.len}, tov = {to, rec->to.len};
    memcpy (app, rec->app.ptr, appv.len);
    memcpy (from, rec->from.ptr, fromv.len);
    memcpy (to, rec->to.ptr, tov.len);
    zim_str_t conv = {(const char *)hk.buf + 2 + appv.len, hk.buf[1 + appv.len]};
    if (group)
        conv = tov;
    int rc = mdb_cursor_del (cur, 0);
    if (rc == 0 && group) {
        bool listed;
        rc = s_purge_group (dbs, txn, id, appv, conv, to_seq, &listed);
        from_entry = from_entry && !listed;
    }
    if (rc == 0 && from_entry)
        rc = zim_convs_forget (dbs, txn, appv, fromv, conv, from_seq, id);
    if (rc == 0 && to_entry)
        rc = zim_convs_forget (dbs, txn, appv, tov, conv, to_seq, id);
    if (rc == 0 && from_entry)
        rc = s_del (txn, dbs->inbox, &fk);
    if (rc == 0 && to_entry)
        rc = s_del (txn, dbs->inbox, &tk);
    if (rc == 0)
        rc = s_del (txn, dbs->hist, &hk);
    if (rc == 0)
        rc = zim_idem_drop (dbs, txn, &ik, id);
    return rc;
}

int zim_retention_purge (zim_db_t *db, uint64_t cutoff_ms, size_t max, size_t *purged)
{
    const zim_dbs_t *dbs = zim_db_dbs (db);
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    size_t n = 0;
    int rc = zim_db_write_begin (db, &txn);
    if (rc == 0)
        rc = mdb_cursor_open (txn, dbs->msgs, &cur);
    while (rc == 0 && n < max) {
        MDB_val k, v;
        if ((rc = mdb_cursor_get (cur, &k, &v, MDB_FIRST)))
            break;
        zim_msgrec_t rec;
        if (k.mv_size != 8 || zim_msgrec_parse (&v, &rec))
            rc = mdb_cursor_del (cur, 0);
        else if (rec.ts >= cutoff_ms)
            break;
        else
            rc = s_purge_one (dbs, txn, cur, zim_be64_get (k.mv_data), &rec);
        n++;
    }
    if (cur)
        mdb_cursor_close (cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (txn && rc == 0 && n > 0)
        rc = mdb_txn_commit (txn);
    else if (txn)
        mdb_txn_abort (txn);
    *purged = rc ? 0 : n;
    return rc;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Appends one message at time ts in its own transaction; returns the result.
static zim_appended_item_t s_test_add (zim_db_t *db, zim_inbox_t *inbox, uint64_t id, uint64_t ts,
                                       const char *from, const char *to, const char *cid)
{
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    zim_append_item_t it = {
        id,          ts,           zim_str ("demo"), zim_str (from), zim_str (to), zim_str (cid),
        {"\xc3", 1}, ZIM_SIDE_BOTH};
    zim_appended_item_t res;
    assert (zim_inbox_append (inbox, &it, &res) == 0);
    assert (zim_inbox_finish (inbox) == 0 && mdb_txn_commit (txn) == 0);
    zim_inbox_committed (inbox);
    return res;
}

//  Entries in each database: msgs, inbox, hist, idem, seqs.
static void s_test_counts (zim_db_t *db, size_t *n)
{
    const zim_dbs_t *dbs = zim_db_dbs (db);
    MDB_dbi dbi[5] = {dbs->msgs, dbs->inbox, dbs->hist, dbs->idem, dbs->seqs};
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    for (int i = 0; i < 5; i++) {
        MDB_stat st;
        assert (mdb_stat (txn, dbi[i], &st) == 0);
        n[i] = st.ms_entries;
    }
    mdb_txn_abort (txn);
}

//  Entries in a database.
static size_t s_test_entries (zim_db_t *db, MDB_dbi dbi)
{
    MDB_txn *txn;
    MDB_stat st;
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    assert (mdb_stat (txn, dbi, &st) == 0);
    mdb_txn_abort (txn);
    return st.ms_entries;
}

//  Applies one GPOST or GADMIN in its own transaction.
static void s_test_group_op (zim_db_t *db, zim_inbox_t *inbox, zim_groups_t *g, int kind,
                             const void *m)
{
    MDB_txn *txn;
    zim_wr_t out;
    bool wrote;
    zim_wr_init (&out);
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    assert (zim_groups_apply (g, txn, kind, m, &out, &wrote) == 0 && wrote);
    assert (zim_inbox_finish (inbox) == 0 && mdb_txn_commit (txn) == 0);
    zim_inbox_committed (inbox);
    zim_wr_free (&out);
}

//  A group's old messages go with every member's inbox entry, their
//  conversation lists and their log entries; the new one stays.
static void s_test_groups (void)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 22);
    zim_inbox_t *inbox = zim_inbox_new (db, NULL);
    zim_groups_t *g = zim_groups_new (db, inbox, NULL);
    const zim_dbs_t *dbs = zim_db_dbs (db);
    zim_gadmin_t create = {1,     ZIM_GADMIN_CREATE, zim_str ("demo"),  zim_str ("crew"),
                           ZIM_GROUP_GROUP, false,   zim_str ("amy,bo,cy"), zim_str (""), 0};
    s_test_group_op (db, inbox, g, ZIM_MSG_GADMIN, &create);
    const uint64_t ts[3] = {100, 101, 9000};
    for (uint64_t i = 0; i < 3; i++) {
        char cid[8];
        snprintf (cid, sizeof cid, "g%d", (int)i);
        zim_gpost_t post = {2,  40 + i, ts[i], zim_str ("demo"), zim_str ("amy"), zim_str (cid),
                            zim_str ("crew"), {"\xc3", 1}, {NULL, 0}, {NULL, 0}};
        s_test_group_op (db, inbox, g, ZIM_MSG_GPOST, &post);
    }
    assert (s_test_entries (db, dbs->inbox) == 9 && s_test_entries (db, dbs->glog) == 3);
    assert (s_test_entries (db, dbs->gfan) == 3 && s_test_entries (db, dbs->msgs) == 3);
    size_t purged;
    assert (zim_retention_purge (db, 5000, 100, &purged) == 0 && purged == 2);
    assert (s_test_entries (db, dbs->inbox) == 3 && s_test_entries (db, dbs->glog) == 1);
    assert (s_test_entries (db, dbs->gfan) == 1 && s_test_entries (db, dbs->msgs) == 1);
    zim_groups_destroy (&g);
    zim_inbox_destroy (&inbox);
    zim_db_test_destroy (&db, &dir);
}

void zim_retention_test (bool verbose)
{
    s_test_groups ();
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 22);
    zim_inbox_t *inbox = zim_inbox_new (db, NULL);
    //  Five old messages (ts 100..104), a self message, two new ones.
    for (uint64_t i = 0; i < 5; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "old-%d", (int)i);
        s_test_add (db, inbox, 10 + i, 100 + i, "hal", "ida", cid);
    }
    s_test_add (db, inbox, 15, 105, "hal", "hal", "self");
    s_test_add (db, inbox, 20, 5000, "hal", "ida", "new-1");
    s_test_add (db, inbox, 21, 5000, "ida", "hal", "new-2");
    size_t n[5];
    s_test_counts (db, n);
    assert (n[0] == 8 && n[1] == 15 && n[2] == 8 && n[3] == 8 && n[4] == 2);

    //  At most max per run; the rest in the next run; the new ones stay.
    size_t purged;
    assert (zim_retention_purge (db, 1000, 4, &purged) == 0 && purged == 4);
    assert (zim_retention_purge (db, 1000, 4, &purged) == 0 && purged == 2);
    assert (zim_retention_purge (db, 1000, 4, &purged) == 0 && purged == 0);
    s_test_counts (db, n);
    assert (n[0] == 2 && n[1] == 4 && n[2] == 2 && n[3] == 2 && n[4] == 2);

    //  Seqs continue; a purged cid may be used again.
    zim_appended_item_t res = s_test_add (db, inbox, 30, 6000, "hal", "ida", "old-0");
    assert (res.status == ZIM_APPEND_STORED && res.from_seq == 9 && res.to_seq == 8);

    //  A key that names another message is left alone; a corrupt record goes.
    const zim_dbs_t *dbs = zim_db_dbs (db);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_key_t ik;
    zim_key_idem (&ik, zim_str ("demo"), zim_str ("hal"), zim_str ("new-1"));
    uint8_t idb[8];
    zim_be64_put (idb, 30);
    MDB_val k = zim_key_val (&ik), v = {8, idb};
    assert (mdb_put (txn, dbs->idem, &k, &v, 0) == 0);
    zim_be64_put (idb, 1);
    k = (MDB_val){8, idb};
    v = (MDB_val){3, "bad"};
    assert (mdb_put (txn, dbs->msgs, &k, &v, 0) == 0);
    assert (mdb_txn_commit (txn) == 0);
    assert (zim_retention_purge (db, 5500, 10, &purged) == 0 && purged == 3);
    s_test_counts (db, n);
    assert (n[0] == 1 && n[1] == 2 && n[2] == 1 && n[3] == 2);

    zim_inbox_destroy (&inbox);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("retention: old messages go with every entry (group members' too); seqs stay");
}
