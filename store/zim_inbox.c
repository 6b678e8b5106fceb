/*  zim_inbox.c: APPEND items into inboxes, history and idempotency keys
    (see zim_inbox.h). On the hot path: one idempotency lookup, cached seq
    counters (zim_seqs.h) and the record written in place (MDB_RESERVE),
    appended at the end of msgs when its id is the greatest so far, which
    time-ordered ids usually are.
*/
#include "store/zim_inbox.h"
#include "store/zim_convs.h"
#include "store/zim_idem.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "store/zim_seqs.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <string.h>

struct _zim_inbox_t {
    zim_db_t *db;         //  the environment (borrowed)
    const zim_dbs_t *dbs; //  its databases
    zim_shell_t *shell;   //  for warnings, or NULL (borrowed)
    zim_seqs_t *seqs;     //  seq counters of the transaction
    zim_convs_t *convs;   //  conversation states of the transaction
    MDB_txn *txn;         //  the write transaction (borrowed)
    uint64_t last_id;     //  greatest message id committed
    uint64_t last_id_txn; //  greatest message id in the transaction
};

zim_inbox_t *zim_inbox_new (zim_db_t *db, zim_shell_t *shell)
{
    zim_inbox_t *self = zim_calloc (1, sizeof *self);
    self->db = db;
    self->dbs = zim_db_dbs (db);
    self->shell = shell;
    self->seqs = zim_seqs_new (self->dbs->seqs);
    self->convs = zim_convs_new (db);
    self->last_id = zim_db_last_id (db);
    return self;
}

void zim_inbox_destroy (zim_inbox_t **self_p)
{
    zim_inbox_t *self = *self_p;
    if (!self)
        return;
    zim_seqs_destroy (&self->seqs);
    zim_convs_destroy (&self->convs);
    free (self);
    *self_p = NULL;
}

void zim_inbox_begin (zim_inbox_t *self, MDB_txn *txn)
{
    self->txn = txn;
    self->last_id_txn = self->last_id;
    zim_seqs_reset (self->seqs);
    zim_convs_begin (self->convs, txn);
}

zim_convs_t *zim_inbox_convs (zim_inbox_t *self)
{
    return self->convs;
}

//  True if the item can be stored at all.
static bool s_valid (const zim_append_item_t *it)
{
    return it->id != 0 && zim_uid_valid (it->app) && zim_uid_valid (it->from) &&
           zim_uid_valid (it->to) && zim_cid_valid (it->cid) && it->body.len > 0 &&
           it->sides >= ZIM_SIDE_FROM && it->sides <= ZIM_SIDE_BOTH;
}

//  Puts an inbox entry [app][uid] seq -> id; 0 or an LMDB error.
static int s_put_entry (zim_inbox_t *self, zim_key_t *user, uint64_t seq, MDB_val *idv)
{
    zim_key_u64 (user, seq);
    MDB_val k = zim_key_val (user);
    return mdb_put (self->txn, self->dbs->inbox, &k, idv, 0);
}

int zim_inbox_append (zim_inbox_t *self, const zim_append_item_t *it, zim_appended_item_t *res)
{
    *res = (zim_appended_item_t){ZIM_EVALUE, it->id, 0, 0, it->ts};
    if (!s_valid (it))
        return 0;
    zim_idem_t found;
    int rc = zim_idem_check (self->dbs, self->txn, it, &found, res);
    if (rc || found != ZIM_IDEM_NEW)
        return rc;

    //  Next seqs, not taken until the record is in.
    bool to_self = zim_str_same (it->from, it->to);
    bool do_from = to_self || (it->sides & ZIM_SIDE_FROM);
    bool do_to = !to_self && (it->sides & ZIM_SIDE_TO);
    zim_key_t fk, tk;
    size_t fslot = 0, tslot = 0;
    uint64_t from_seq = 0, to_seq = 0;
    zim_seqs_reserve (self->seqs, 2);
    if (do_from) {
        zim_key_user (&fk, it->app, it->from);
        if ((rc = zim_seqs_find (self->seqs, self->txn, &fk, &fslot)))
            return rc;
        from_seq = zim_seqs_get (self->seqs, fslot) + 1;
    }
    if (do_to) {
        zim_key_user (&tk, it->app, it->to);
        if ((rc = zim_seqs_find (self->seqs, self->txn, &tk, &tslot)))
            return rc;
        to_seq = zim_seqs_get (self->seqs, tslot) + 1;
    }

    //  The record.
    uint8_t idb[8];
    zim_be64_put (idb, it->id);
    MDB_val rk = {8, idb}, rv = {zim_msgrec_size (it), NULL};
    MDB_dbi msgs = self->dbs->msgs;
    if (it->id > self->last_id_txn) {
        rc = mdb_put (self->txn, msgs, &rk, &rv, MDB_RESERVE | MDB_APPEND);
        if (rc == MDB_KEYEXIST)
            rc = mdb_put (self->txn, msgs, &rk, &rv, MDB_RESERVE | MDB_NOOVERWRITE);
    } else
        rc = mdb_put (self->txn, msgs, &rk, &rv, MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        const char *text = "message id %" PRIu64 " already stored under another cid; item "
                           "refused (are two brokers using the same node id?)";
        if (self->shell)
            zim_shell_warn (self->shell, text, it->id);
        else
            zsys_warning (text, it->id);
        return 0;
    }
    if (rc)
        return rc;
    zim_msgrec_write (rv.mv_data, it, from_seq, to_seq);
    if (it->id > self->last_id_txn)
        self->last_id_txn = it->id;
    if (do_from)
        zim_seqs_set (self->seqs, fslot, from_seq);
    if (do_to)
        zim_seqs_set (self->seqs, tslot, to_seq);

    //  Inbox entries, history entry, idempotency key.
    MDB_val idv = {8, idb};
    if (do_from && (rc = s_put_entry (self, &fk, from_seq, &idv)))
        return rc;
    if (do_to && (rc = s_put_entry (self, &tk, to_seq, &idv)))
        return rc;
    zim_key_t hk;
    zim_key_conv (&hk, it->app, it->from, it->to);
    //  Each side's conversation state and list (the key's conv part).
    zim_str_t conv = {(const char *)hk.buf + 2 + it->app.len, hk.buf[1 + it->app.len]};
    if (do_from &&
        (rc = zim_convs_note (self->convs, it->app, it->from, conv, from_seq, it->id, true, 0)))
        return rc;
    if (do_to &&
        (rc = zim_convs_note (self->convs, it->app, it->to, conv, to_seq, it->id, false, 0)))
        return rc;
    zim_key_u64 (&hk, it->id);
    MDB_val k = zim_key_val (&hk), empty = {0, idb};
    if ((rc = mdb_put (self->txn, self->dbs->hist, &k, &empty, 0)))
        return rc;
    if ((rc = zim_idem_put (self->dbs, self->txn, it, it->id)))
        return rc;
    *res = (zim_appended_item_t){ZIM_APPEND_STORED, it->id, from_seq, to_seq, it->ts};
    return 0;
}

int zim_inbox_group (zim_inbox_t *self, const zim_append_item_t *it, uint64_t gseq,
                     const zim_str_t *members, size_t n, uint64_t *seqs, uint64_t *from_seq,
                     bool idem)
{
    *from_seq = 0;
    uint8_t idb[8];
    zim_be64_put (idb, it->id);
    MDB_val rk = {8, idb}, rv;
    int rc = mdb_get (self->txn, self->dbs->msgs, &rk, &rv);
    if (rc == 0)
        return ZIM_EVALUE; //  the id names another message
    if (rc != MDB_NOTFOUND)
        return rc;
    MDB_val idv = {8, idb};
    for (size_t i = 0; i < n; i++) {
        zim_key_t uk;
        size_t slot;
        zim_seqs_reserve (self->seqs, 1);
        zim_key_user (&uk, it->app, members[i]);
        if ((rc = zim_seqs_find (self->seqs, self->txn, &uk, &slot)))
            return rc;
        uint64_t seq = zim_seqs_get (self->seqs, slot) + 1;
        zim_seqs_set (self->seqs, slot, seq);
        seqs[i] = seq;
        bool mine = zim_str_same (members[i], it->from);
        if (mine)
            *from_seq = seq;
        if ((rc = s_put_entry (self, &uk, seq, &idv)))
            return rc;
        if ((rc = zim_convs_note (self->convs, it->app, members[i], it->to, seq, it->id, mine,
                                  gseq)))
            return rc;
    }
    //  The record last, when the sender's seq is known; filled at once (a
    //  reserved value is valid until the next write).
    rv = (MDB_val){zim_msgrec_size (it), NULL};
    rc = mdb_put (self->txn, self->dbs->msgs, &rk, &rv,
                  MDB_RESERVE | (it->id > self->last_id_txn ? MDB_APPEND : MDB_NOOVERWRITE));
    if (rc == MDB_KEYEXIST)
        rc = mdb_put (self->txn, self->dbs->msgs, &rk, &rv, MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc)
        return rc;
    zim_msgrec_write (rv.mv_data, it, *from_seq, gseq);
    if (it->id > self->last_id_txn)
        self->last_id_txn = it->id;
    return idem ? zim_idem_put (self->dbs, self->txn, it, it->id) : 0;
}

int zim_inbox_last_seq (zim_inbox_t *self, zim_str_t app, zim_str_t uid, uint64_t *seq)
{
    zim_key_t uk;
    size_t slot;
    zim_seqs_reserve (self->seqs, 1);
    zim_key_user (&uk, app, uid);
    int rc = zim_seqs_find (self->seqs, self->txn, &uk, &slot);
    *seq = rc ? 0 : zim_seqs_get (self->seqs, slot);
    return rc;
}

int zim_inbox_finish (zim_inbox_t *self)
{
    int rc = zim_seqs_flush (self->seqs, self->txn);
    return rc ? rc : zim_convs_finish (self->convs);
}

void zim_inbox_committed (zim_inbox_t *self)
{
    self->last_id = self->last_id_txn;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Appends one message with a string body; returns its result.
static zim_appended_item_t s_test_add (zim_inbox_t *inbox, uint64_t id, const char *from,
                                       const char *to, const char *cid, const char *text,
                                       uint64_t sides)
{
    char body[64];
    size_t len = strlen (text);
    assert (len < 32);
    body[0] = (char)(0xa0 | len);
    memcpy (body + 1, text, len);
    zim_append_item_t it = {id,           1000 + id,     zim_str ("demo"), zim_str (from),
                            zim_str (to), zim_str (cid), {body, len + 1},  sides};
    zim_appended_item_t res;
    assert (zim_inbox_append (inbox, &it, &res) == 0);
    return res;
}

//  The ids in the inbox of uid, in seq order; returns how many, and checks
//  the seqs are 1..n.
static size_t s_test_inbox (zim_db_t *db, MDB_txn *txn, const char *uid, uint64_t *ids, size_t max)
{
    zim_key_t prefix, start;
    zim_key_user (&prefix, zim_str ("demo"), zim_str (uid));
    start = prefix;
    zim_key_u64 (&start, 0);
    MDB_cursor *cur;
    assert (mdb_cursor_open (txn, zim_db_dbs (db)->inbox, &cur) == 0);
    MDB_val k = zim_key_val (&start), v;
    size_t n = 0;
    int rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && zim_key_has_prefix (&k, &prefix, 8)) {
        assert (n < max);
        assert (zim_be64_get ((uint8_t *)k.mv_data + prefix.len) == n + 1);
        ids[n++] = zim_be64_get (v.mv_data);
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close (cur);
    return n;
}

void zim_inbox_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 22);
    zim_inbox_t *inbox = zim_inbox_new (db, NULL);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    zim_appended_item_t res;

    //  alice -> bob, bob -> alice: both inboxes count 1, 2, 3, 4.
    for (uint64_t i = 1; i <= 3; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "a-%" PRIu64, i);
        res = s_test_add (inbox, 100 + i, "alice", "bob", cid, "hi", ZIM_SIDE_BOTH);
        assert (res.status == ZIM_APPEND_STORED && res.from_seq == i && res.to_seq == i);
        assert (res.id == 100 + i && res.ts == 1100 + i);
    }
    res = s_test_add (inbox, 104, "bob", "alice", "b-1", "yo", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_APPEND_STORED && res.from_seq == 4 && res.to_seq == 4);
    //  To oneself: one inbox entry, to_seq 0. An id below the greatest.
    res = s_test_add (inbox, 50, "alice", "alice", "note", "me", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_APPEND_STORED && res.from_seq == 5 && res.to_seq == 0);

    //  Duplicate and conflict: nothing written, no seq taken.
    res = s_test_add (inbox, 200, "alice", "bob", "a-2", "hi", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_APPEND_DUPLICATE && res.id == 102 && res.from_seq == 2);
    res = s_test_add (inbox, 201, "alice", "carol", "a-2", "hi", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_APPEND_CONFLICT && res.id == 0);
    res = s_test_add (inbox, 202, "alice", "bob", "a-2", "changed", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_APPEND_CONFLICT);

    //  Invalid items; an id that names another message.
    assert (s_test_add (inbox, 0, "alice", "bob", "z-1", "x", 3).status == ZIM_EVALUE);
    assert (s_test_add (inbox, 300, "alice", "b:b", "z-2", "x", 3).status == ZIM_EVALUE);
    assert (s_test_add (inbox, 301, "alice", "bob", "", "x", 3).status == ZIM_EVALUE);
    assert (s_test_add (inbox, 302, "alice", "bob", "z-3", "x", 0).status == ZIM_EVALUE);
    assert (s_test_add (inbox, 303, "alice", "bob", "z-4", "x", 4).status == ZIM_EVALUE);
    res = s_test_add (inbox, 103, "alice", "bob", "z-5", "x", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_EVALUE);

    //  Cross-shard halves: sides 1 takes the sender's seq only, sides 2 the
    //  recipient's only.
    res = s_test_add (inbox, 400, "kim", "lee", "k-1", "half", ZIM_SIDE_FROM);
    assert (res.status == ZIM_APPEND_STORED && res.from_seq == 1 && res.to_seq == 0);
    res = s_test_add (inbox, 401, "max", "kim", "m-1", "half", ZIM_SIDE_TO);
    assert (res.status == ZIM_APPEND_STORED && res.from_seq == 0 && res.to_seq == 2);
    res = s_test_add (inbox, 401, "max", "kim", "m-1", "half", ZIM_SIDE_TO);
    assert (res.status == ZIM_APPEND_DUPLICATE && res.to_seq == 2);
    uint64_t last;
    assert (zim_inbox_last_seq (inbox, zim_str ("demo"), zim_str ("kim"), &last) == 0);
    assert (last == 2);
    assert (zim_inbox_last_seq (inbox, zim_str ("demo"), zim_str ("max"), &last) == 0);
    assert (last == 0);
    assert (zim_inbox_finish (inbox) == 0);
    assert (mdb_txn_commit (txn) == 0);
    zim_inbox_committed (inbox);

    //  What is stored: gap-free inboxes, the history of each conversation.
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    uint64_t ids[16];
    assert (s_test_inbox (db, txn, "alice", ids, 16) == 5);
    assert (ids[0] == 101 && ids[3] == 104 && ids[4] == 50);
    assert (s_test_inbox (db, txn, "bob", ids, 16) == 4 && ids[2] == 103);
    assert (s_test_inbox (db, txn, "carol", ids, 16) == 0);
    assert (s_test_inbox (db, txn, "lee", ids, 16) == 0);
    assert (s_test_inbox (db, txn, "kim", ids, 16) == 2 && ids[1] == 401);
    MDB_stat st;
    assert (mdb_stat (txn, zim_db_dbs (db)->hist, &st) == 0 && st.ms_entries == 7);
    assert (mdb_stat (txn, zim_db_dbs (db)->msgs, &st) == 0 && st.ms_entries == 7);
    assert (mdb_stat (txn, zim_db_dbs (db)->idem, &st) == 0 && st.ms_entries == 7);
    mdb_txn_abort (txn);

    //  An aborted transaction leaves the counters as they were.
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    res = s_test_add (inbox, 500, "alice", "bob", "a-9", "hi", ZIM_SIDE_BOTH);
    assert (res.from_seq == 6 && res.to_seq == 5);
    mdb_txn_abort (txn);
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    res = s_test_add (inbox, 500, "alice", "bob", "a-9", "hi", ZIM_SIDE_BOTH);
    assert (res.status == ZIM_APPEND_STORED && res.from_seq == 6 && res.to_seq == 5);
    mdb_txn_abort (txn);

    zim_inbox_destroy (&inbox);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("inbox: seqs, records, history, keys and halves hold");
}
