/*  zim_pushq.c: the offline-push queue (see zim_pushq.h).
 */
#include "store/zim_pushq.h"
#include "store/zim_key.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

#define S_FIXED 41 //  qid, seq, id, ts, count, mention

struct _zim_pushq_t {
    zim_db_t *db;             //  the environment (borrowed)
    const zim_dbs_t *dbs;     //  its databases
    zim_pushq_stats_t *stats; //  counters (borrowed)
    MDB_txn *txn;             //  the write transaction (borrowed)
    uint64_t next_qid;        //  committed
    uint64_t next_qid_txn;    //  in the transaction
};

//  A parsed record: views into LMDB memory.
typedef struct {
    uint64_t qid, seq, id, ts, count;
    bool mention;
    zim_str_t from, preview;
} s_rec_t;

static const MDB_val s_counter_key = {7, "pushqid"};

zim_pushq_t *zim_pushq_new (zim_db_t *db, zim_pushq_stats_t *stats)
{
    zim_pushq_t *self = zim_calloc (1, sizeof *self);
    self->db = db;
    self->dbs = zim_db_dbs (db);
    self->stats = stats;
    self->next_qid = 1;
    MDB_txn *txn;
    if (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0) {
        MDB_val v;
        if (mdb_get (txn, self->dbs->meta, (MDB_val *)&s_counter_key, &v) == 0 && v.mv_size == 8)
            self->next_qid = zim_be64_get (v.mv_data);
        mdb_txn_abort (txn);
    }
    return self;
}

void zim_pushq_destroy (zim_pushq_t **self_p)
{
    zim_free (self_p);
}

void zim_pushq_begin (zim_pushq_t *self, MDB_txn *txn)
{
    self->txn = txn;
    self->next_qid_txn = self->next_qid;
}

int zim_pushq_finish (zim_pushq_t *self)
{
    if (self->next_qid_txn == self->next_qid)
        return 0;
    uint8_t buf[8];
    zim_be64_put (buf, self->next_qid_txn);
    MDB_val v = {8, buf};
    return mdb_put (self->txn, self->dbs->meta, (MDB_val *)&s_counter_key, &v, 0);
}

void zim_pushq_committed (zim_pushq_t *self)
{
    self->next_qid = self->next_qid_txn;
}

static int s_parse (const MDB_val *v, s_rec_t *r)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < S_FIXED + 1)
        return -1;
    uint64_t *f = &r->qid;
    for (int i = 0; i < 5; i++)
        f[i] = zim_be64_get (p + 8 * i);
    r->mention = p[40] != 0;
    size_t flen = p[41];
    if (v->mv_size < S_FIXED + 1 + flen + 2)
        return -1;
    r->from = (zim_str_t){(const char *)p + 42, flen};
    size_t plen = ((size_t)p[42 + flen] << 8) | p[43 + flen];
    if (v->mv_size != S_FIXED + 1 + flen + 2 + plen)
        return -1;
    r->preview = (zim_str_t){(const char *)p + 44 + flen, plen};
    return 0;
}

//  Sets k to [app][uid][conv]: the record's key.
static void s_key (zim_key_t *k, zim_str_t app, zim_str_t uid, zim_str_t conv)
{
    zim_key_user (k, app, uid);
    zim_key_str (k, conv);
}

//  Deletes queue entry qid; a missing one is not an error.
static int s_unqueue (zim_pushq_t *self, uint64_t qid)
{
    uint8_t qb[8];
    zim_be64_put (qb, qid);
    MDB_val qk = {8, qb};
    int rc = mdb_del (self->txn, self->dbs->pushq, &qk, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int zim_pushq_add (zim_pushq_t *self, const zim_push_item_t *it, uint64_t read)
{
    if (it->seq <= read)
        return 0;
    zim_key_t k;
    s_key (&k, it->app, it->uid, it->conv);
    MDB_val kv = zim_key_val (&k), v;
    uint64_t count = 1;
    bool mention = it->mention;
    int rc = mdb_get (self->txn, self->dbs->pushk, &kv, &v);
    s_rec_t old;
    if (rc == 0 && s_parse (&v, &old) == 0) {
        if (old.seq >= it->seq)
            return 0; //  this message or a newer one is queued
        count = old.count + 1;
        mention |= old.mention;
        if ((rc = s_unqueue (self, old.qid)))
            return rc;
        self->stats->coalesced++;
    } else if (rc && rc != MDB_NOTFOUND)
        return rc;
    else
        self->stats->added++;
    uint64_t qid = self->next_qid_txn++;
    size_t plen = it->preview.len > 65535 ? 65535 : it->preview.len;
    v = (MDB_val){S_FIXED + 1 + it->from.len + 2 + plen, NULL};
    if ((rc = mdb_put (self->txn, self->dbs->pushk, &kv, &v, MDB_RESERVE)))
        return rc;
    uint8_t *p = v.mv_data;
    uint64_t fixed[5] = {qid, it->seq, it->id, it->ts, count};
    for (int i = 0; i < 5; i++)
        zim_be64_put (p + 8 * i, fixed[i]);
    p[40] = mention;
    p[41] = (uint8_t)it->from.len;
    memcpy (p + 42, it->from.ptr, it->from.len);
    p[42 + it->from.len] = (uint8_t)(plen >> 8);
    p[43 + it->from.len] = (uint8_t)plen;
    if (plen)
        memcpy (p + 44 + it->from.len, it->preview.ptr, plen);
    uint8_t qb[8];
    zim_be64_put (qb, qid);
    MDB_val qk = {8, qb};
    return mdb_put (self->txn, self->dbs->pushq, &qk, &kv, MDB_APPEND);
}

int zim_pushq_read (zim_pushq_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, uint64_t seq)
{
    zim_key_t k;
    s_key (&k, app, uid, conv);
    MDB_val kv = zim_key_val (&k), v;
    s_rec_t r;
    int rc = mdb_get (self->txn, self->dbs->pushk, &kv, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && s_parse (&v, &r) == 0 && r.seq > seq))
        return 0;
    if (rc)
        return rc;
    uint64_t qid = r.qid;
    if ((rc = mdb_del (self->txn, self->dbs->pushk, &kv, NULL)) == 0)
        rc = s_unqueue (self, qid);
    self->stats->read++;
    return rc;
}

//  The JSON object of the record under key (a pushk key), or NULL if there
//  is none of version qid.
static json_t *s_json (zim_pushq_t *self, zim_convs_t *convs, const MDB_val *key, uint64_t qid,
                       uint64_t now_ms, int *rc)
{
    MDB_val v;
    s_rec_t r;
    *rc = mdb_get (self->txn, self->dbs->pushk, (MDB_val *)key, &v);
    if (*rc == MDB_NOTFOUND || (*rc == 0 && (s_parse (&v, &r) || r.qid != qid))) {
        *rc = 0;
        return NULL;
    }
    if (*rc)
        return NULL;
    //  The key's strings: [app][uid][conv].
    const char *p = key->mv_data;
    zim_str_t app = {p + 1, (uint8_t)p[0]};
    zim_str_t uid = {app.ptr + app.len + 1, (uint8_t)app.ptr[app.len]};
    zim_str_t conv = {uid.ptr + uid.len + 1, (uint8_t)uid.ptr[uid.len]};
    json_t *preview = json_stringn (r.preview.ptr, r.preview.len);
    json_t *o =
        json_pack ("{s:I, s:s%, s:s%, s:s%, s:I, s:I, s:I, s:s%, s:I, s:o, s:b}", "qid",
                   (json_int_t)qid, "app", app.ptr, app.len, "uid", uid.ptr, uid.len, "conv",
                   conv.ptr, conv.len, "seq", (json_int_t)r.seq, "id", (json_int_t)r.id, "ts",
                   (json_int_t)r.ts, "from", r.from.ptr, r.from.len, "count", (json_int_t)r.count,
                   "preview", preview ? preview : json_string (""), "mention", r.mention);
    //  (key is the caller's copy: its views outlive what convs reads.)
    zim_convstate_t st;
    bool found;
    uint64_t badge = 0;
    if ((*rc = zim_convs_state (convs, app, uid, conv, &st, &found)) == 0)
        *rc = zim_convs_badge (convs, app, uid, &badge);
    json_object_set_new (o, "muted", json_boolean (found && st.muted > now_ms));
    json_object_set_new (o, "badge", json_integer ((json_int_t)badge));
    return o;
}

int zim_pushq_take (zim_pushq_t *self, zim_convs_t *convs, uint64_t after, uint64_t max,
                    uint64_t now_ms, json_t *records)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open (self->txn, self->dbs->pushq, &cur);
    if (rc)
        return rc;
    uint8_t qb[8];
    zim_be64_put (qb, after == UINT64_MAX ? after : after + 1);
    MDB_val qk = {8, qb}, kv;
    rc = mdb_cursor_get (cur, &qk, &kv, MDB_SET_RANGE);
    for (uint64_t n = 0; rc == 0 && n < max;) {
        uint64_t qid = zim_be64_get (qk.mv_data);
        //  The record's key, copied: the JSON reads more than this entry.
        uint8_t key[320];
        MDB_val k = {kv.mv_size < sizeof key ? kv.mv_size : sizeof key, key};
        memcpy (key, kv.mv_data, k.mv_size);
        json_t *o = s_json (self, convs, &k, qid, now_ms, &rc);
        if (o) {
            json_array_append_new (records, o);
            n++;
        }
        if (rc == 0)
            rc = mdb_cursor_get (cur, &qk, &kv, MDB_NEXT);
    }
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int zim_pushq_ack (zim_pushq_t *self, zim_rd_t *qids, uint32_t n, int outcome, uint64_t *removed)
{
    *removed = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t qid;
        if (zim_rd_uint (qids, &qid))
            break;
        uint8_t qb[8], key[320];
        zim_be64_put (qb, qid);
        MDB_val qk = {8, qb}, kv, v;
        int rc = mdb_get (self->txn, self->dbs->pushq, &qk, &kv);
        if (rc == MDB_NOTFOUND)
            continue; //  replaced, read, expired or acked already
        if (rc)
            return rc;
        MDB_val k = {kv.mv_size < sizeof key ? kv.mv_size : sizeof key, key};
        memcpy (key, kv.mv_data, k.mv_size);
        if ((rc = mdb_del (self->txn, self->dbs->pushq, &qk, NULL)))
            return rc;
        s_rec_t r;
        rc = mdb_get (self->txn, self->dbs->pushk, &k, &v);
        if (rc == 0 && s_parse (&v, &r) == 0 && r.qid == qid)
            rc = mdb_del (self->txn, self->dbs->pushk, &k, NULL);
        else if (rc == MDB_NOTFOUND)
            rc = 0;
        if (rc)
            return rc;
        (*removed)++;
    }
    uint64_t *counter = outcome == ZIM_PUSHQ_DELIVERED ? &self->stats->delivered
                        : outcome == ZIM_PUSHQ_DROPPED ? &self->stats->dropped
                                                       : &self->stats->muted;
    *counter += *removed;
    return 0;
}

int zim_pushq_stat (zim_pushq_t *self, zim_convs_t *convs, uint64_t now_ms, json_t *out)
{
    MDB_stat st;
    int rc = mdb_stat (self->txn, self->dbs->pushq, &st);
    if (rc)
        return rc;
    json_object_set_new (out, "depth", json_integer ((json_int_t)st.ms_entries));
    json_t *first = json_array ();
    rc = zim_pushq_take (self, convs, 0, 1, now_ms, first);
    json_object_set (out, "oldest",
                     json_array_size (first) ? json_array_get (first, 0) : json_null ());
    json_decref (first);
    return rc;
}

int zim_pushq_expire (zim_pushq_t *self, uint64_t cutoff_ms, size_t max, size_t *removed)
{
    *removed = 0;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    int rc = zim_db_write_begin (self->db, &txn);
    if (rc)
        return rc;
    self->txn = txn;
    rc = mdb_cursor_open (txn, self->dbs->pushq, &cur);
    while (rc == 0 && *removed < max) {
        MDB_val qk, kv, v;
        if ((rc = mdb_cursor_get (cur, &qk, &kv, MDB_FIRST)))
            break;
        uint8_t key[320];
        MDB_val k = {kv.mv_size < sizeof key ? kv.mv_size : sizeof key, key};
        memcpy (key, kv.mv_data, k.mv_size);
        s_rec_t r;
        rc = mdb_get (txn, self->dbs->pushk, &k, &v);
        bool ours = rc == 0 && s_parse (&v, &r) == 0 && r.qid == zim_be64_get (qk.mv_data);
        if (rc && rc != MDB_NOTFOUND)
            break;
        if (ours && r.ts >= cutoff_ms) {
            rc = 0;
            break;
        }
        rc = mdb_cursor_del (cur, 0);
        if (rc == 0 && ours)
            rc = mdb_del (txn, self->dbs->pushk, &k, NULL);
        (*removed)++;
    }
    if (cur)
        mdb_cursor_close (cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0 && *removed)
        rc = mdb_txn_commit (txn);
    else
        mdb_txn_abort (txn);
    self->txn = NULL;
    if (rc)
        *removed = 0;
    self->stats->expired += *removed;
    return rc;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Runs fn in a write transaction with the queue and a convs writer.
typedef struct {
    zim_db_t *db;
    zim_pushq_t *q;
    zim_convs_t *convs;
    MDB_txn *txn;
} s_test_t;

static void s_test_begin (s_test_t *t)
{
    assert (mdb_txn_begin (zim_db_env (t->db), NULL, 0, &t->txn) == 0);
    zim_pushq_begin (t->q, t->txn);
    zim_convs_begin (t->convs, t->txn);
}

static void s_test_commit (s_test_t *t)
{
    assert (zim_pushq_finish (t->q) == 0 && zim_convs_finish (t->convs) == 0);
    assert (mdb_txn_commit (t->txn) == 0);
    zim_pushq_committed (t->q);
}

static zim_push_item_t s_test_item (const char *uid, const char *conv, uint64_t seq, uint64_t ts,
                                    const char *preview, bool mention)
{
    zim_push_item_t it = {zim_str ("demo"),  zim_str (uid),     zim_str (conv), seq, 1000 + seq, ts,
                          zim_str ("alice"), zim_str (preview), mention};
    return it;
}

//  Takes up to max after after; returns how many, their qids in qids.
static size_t s_test_take (s_test_t *t, uint64_t after, uint64_t max, uint64_t *qids,
                           json_t **records)
{
    s_test_begin (t);
    *records = json_array ();
    assert (zim_pushq_take (t->q, t->convs, after, max, 10, *records) == 0);
    mdb_txn_abort (t->txn);
    size_t i;
    json_t *o;
    json_array_foreach (*records, i, o) qids[i] =
        (uint64_t)json_integer_value (json_object_get (o, "qid"));
    return json_array_size (*records);
}

void zim_pushq_test (bool verbose)
{
    char *dir;
    zim_pushq_stats_t stats = {0};
    s_test_t t = {.db = zim_db_test_new (&dir, 1 << 22)};
    t.q = zim_pushq_new (t.db, &stats);
    t.convs = zim_convs_new (t.db);
    uint64_t qids[16];
    json_t *records;

    //  bob: two messages of alice coalesce into one record (count 2, the
    //  newer preview, mention kept); carol: one record, read already.
    s_test_begin (&t);
    zim_push_item_t it = s_test_item ("bob", "p:alice:bob", 1, 100, "hi", true);
    assert (zim_pushq_add (t.q, &it, 0) == 0);
    it = s_test_item ("bob", "p:alice:bob", 2, 101, "h\xc3\xa9llo", false);
    assert (zim_pushq_add (t.q, &it, 0) == 0);
    it = s_test_item ("bob", "p:alice:bob", 2, 101, "again", false); //  a retry: nothing new
    assert (zim_pushq_add (t.q, &it, 0) == 0);
    it = s_test_item ("carol", "p:alice:carol", 5, 102, "x", false);
    assert (zim_pushq_add (t.q, &it, 5) == 0);
    it = s_test_item ("dave", "p:alice:dave", 1, 103, "\xff bad utf-8", false);
    assert (zim_pushq_add (t.q, &it, 0) == 0);
    assert (zim_convs_note (t.convs, zim_str ("demo"), zim_str ("bob"), zim_str ("p:alice:bob"), 2,
                            1002, false, 0) == 0);
    assert (zim_convs_mark (t.convs, zim_str ("demo"), zim_str ("bob"), zim_str ("p:alice:bob"),
                            ZIM_MARK_MUTE, 50, &(zim_convs_moved_t){0}) == 0);
    s_test_commit (&t);
    assert (stats.added == 2 && stats.coalesced == 1);
    assert (s_test_take (&t, 0, 10, qids, &records) == 2);
    json_t *bob = json_array_get (records, 0);
    assert (streq (json_string_value (json_object_get (bob, "uid")), "bob"));
    assert (streq (json_string_value (json_object_get (bob, "conv")), "p:alice:bob"));
    assert (json_integer_value (json_object_get (bob, "count")) == 2);
    assert (json_integer_value (json_object_get (bob, "seq")) == 2);
    assert (streq (json_string_value (json_object_get (bob, "preview")), "h\xc3\xa9llo"));
    assert (json_is_true (json_object_get (bob, "mention")));
    assert (json_is_true (json_object_get (bob, "muted")));
    assert (json_integer_value (json_object_get (bob, "badge")) == 1);
    assert (
        streq (json_string_value (json_object_get (json_array_get (records, 1), "preview")), ""));
    json_decref (records);
    //  After the first: only the second; at most one.
    assert (s_test_take (&t, qids[0], 10, qids + 2, &records) == 1 && qids[2] == qids[1]);
    json_decref (records);
    assert (s_test_take (&t, 0, 1, qids + 2, &records) == 1 && qids[2] == qids[0]);
    json_decref (records);

    //  A new message while bob's record is taken: a new version, queued at
    //  the end; the ack of the old one removes nothing.
    s_test_begin (&t);
    it = s_test_item ("bob", "p:alice:bob", 3, 104, "third", false);
    assert (zim_pushq_add (t.q, &it, 0) == 0);
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_uint (&wr, qids[0]);
    zim_rd_t rd;
    zim_rd_init (&rd, wr.data, wr.size);
    uint64_t removed;
    assert (zim_pushq_ack (t.q, &rd, 1, ZIM_PUSHQ_DELIVERED, &removed) == 0 && removed == 0);
    s_test_commit (&t);
    assert (s_test_take (&t, qids[1], 10, qids + 2, &records) == 1);
    assert (json_integer_value (json_object_get (json_array_get (records, 0), "count")) == 3);
    json_decref (records);
    //  Acked: gone; the qid counter survives a reopen.
    s_test_begin (&t);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_wr_reset (&wr);
    zim_wr_uint (&wr, qids[2]);
    zim_wr_uint (&wr, qids[2]);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_pushq_ack (t.q, &rd, 2, ZIM_PUSHQ_MUTED, &removed) == 0 && removed == 1);
    s_test_commit (&t);
    assert (stats.muted == 1);
    uint64_t next = qids[2] + 1;
    zim_pushq_destroy (&t.q);
    t.q = zim_pushq_new (t.db, &stats);
    s_test_begin (&t);
    it = s_test_item ("erin", "p:alice:erin", 1, 105, "e", false);
    assert (zim_pushq_add (t.q, &it, 0) == 0);
    s_test_commit (&t);
    assert (s_test_take (&t, 0, 10, qids, &records) == 2 && qids[1] == next);
    json_decref (records);

    //  Read up to it: erin's record goes; stat shows the oldest (dave's).
    s_test_begin (&t);
    assert (zim_pushq_read (t.q, zim_str ("demo"), zim_str ("erin"), zim_str ("p:alice:erin"), 0) ==
            0);
    assert (zim_pushq_read (t.q, zim_str ("demo"), zim_str ("erin"), zim_str ("p:alice:erin"), 1) ==
            0);
    json_t *stat = json_object ();
    assert (zim_pushq_stat (t.q, t.convs, 10, stat) == 0);
    s_test_commit (&t);
    assert (json_integer_value (json_object_get (stat, "depth")) == 1 && stats.read == 1);
    assert (streq (json_string_value (json_object_get (json_object_get (stat, "oldest"), "uid")),
                   "dave"));
    json_decref (stat);
    //  Expiry from the front.
    size_t gone;
    assert (zim_pushq_expire (t.q, 103, 10, &gone) == 0 && gone == 0);
    assert (zim_pushq_expire (t.q, 104, 10, &gone) == 0 && gone == 1 && stats.expired == 1);
    assert (s_test_take (&t, 0, 10, qids, &records) == 0);
    json_decref (records);

    zim_wr_free (&wr);
    zim_convs_destroy (&t.convs);
    zim_pushq_destroy (&t.q);
    zim_db_test_destroy (&t.db, &dir);
    if (verbose)
        zsys_info ("pushq: coalesced, taken at least once, acked by version, read, expired");
}
