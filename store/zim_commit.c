/*  zim_commit.c: the group commit (see zim_commit.h). On the hot path: per
    drain one transaction, one commit, one fsync; per item the work of
    zim_inbox_append and nothing else.
*/
#include "store/zim_commit.h"
#include "store/zim_cursor.h"
#include "store/zim_inbox.h"
#include "store/zim_receipts.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <string.h>

#define S_GROW_TRIES 4 //  map doublings tried for one transaction

//  Counters of one write attempt, added to the stats only if it commits.
typedef struct {
    uint64_t appended;   //  items stored
    uint64_t duplicates; //  items answered as duplicates
    uint64_t conflicts;  //  items refused as conflicts
    uint64_t cursors;    //  cursors moved
    uint64_t items;      //  APPEND items in the transaction
    bool wrote;          //  anything was put
} s_unit_t;

//  One message of the write.
typedef struct {
    int kind;     //  ZIM_MSG_APPEND or ZIM_MSG_SETCURSOR
    size_t first; //  APPEND: index of its first result
    size_t count; //  APPEND: its items
} s_msg_t;

struct _zim_commit_t {
    zim_db_t *db;                 //  the environment (borrowed)
    zim_shell_t *shell;           //  for warnings, or NULL (borrowed)
    zim_commit_stats_t *stats;    //  where counters go (borrowed)
    zim_inbox_t *inbox;           //  writes APPEND items
    zim_receipts_t *receipts;     //  writes MARK, PUSH_ADD, PUSH_Q
    const zim_str_t *bodies;      //  the messages of the write (borrowed)
    s_msg_t *msgs;                //  what they are
    size_t msgs_alloc;            //  allocated
    zim_appended_item_t *results; //  the answers (borrowed)
    s_unit_t unit;                //  counters of the write attempt
};

zim_commit_t *zim_commit_new (zim_db_t *db, zim_shell_t *shell, zim_commit_stats_t *stats)
{
    zim_commit_t *self = zim_calloc (1, sizeof *self);
    self->db = db;
    self->shell = shell;
    self->stats = stats;
    self->inbox = zim_inbox_new (db, shell);
    self->receipts = zim_receipts_new (db, self->inbox, shell);
    return self;
}

void zim_commit_destroy (zim_commit_t **self_p)
{
    zim_commit_t *self = *self_p;
    if (!self)
        return;
    zim_receipts_destroy (&self->receipts);
    zim_inbox_destroy (&self->inbox);
    free (self->msgs);
    free (self);
    *self_p = NULL;
}

//  Opens message p: its kind and fields in rd.
static void s_open (zim_commit_t *self, size_t p, zim_rd_t *rd, int *kind, uint32_t *fields)
{
    zim_rd_init (rd, self->bodies[p].ptr, self->bodies[p].len);
    //  Decoding cannot fail: the caller checked the whole message.
    int bad = zim_msg_kind (rd, kind, fields);
    assert (bad == 0);
}

//  Applies one SETCURSOR in txn. Returns 0 or an LMDB error.
static int s_cursor_one (zim_commit_t *self, MDB_txn *txn, const zim_setcursor_t *m)
{
    if (!zim_uid_valid (m->app) || !zim_uid_valid (m->uid))
        return 0;
    uint64_t last;
    bool moved;
    int rc = zim_inbox_last_seq (self->inbox, m->app, m->uid, &last);
    if (rc == 0)
        rc = zim_cursor_set (zim_db_dbs (self->db), txn, m->app, m->uid, m->device, m->seq, last,
                             &moved);
    if (rc == 0 && moved) {
        self->unit.wrote = true;
        self->unit.cursors++;
    }
    return rc;
}

//  Stores one APPEND item and counts its outcome. Returns 0 or an LMDB
//  error.
static int s_append_one (zim_commit_t *self, const zim_append_item_t *it, zim_appended_item_t *res)
{
    self->unit.items++;
    int rc = zim_inbox_append (self->inbox, it, res);
    if (rc)
        return rc;
    if (res->status == ZIM_APPEND_STORED) {
        self->unit.appended++;
        self->unit.wrote = true;
    } else if (res->status == ZIM_APPEND_DUPLICATE)
        self->unit.duplicates++;
    else if (res->status == ZIM_APPEND_CONFLICT) {
        self->unit.conflicts++;
        const char *text = "cid '%.*s' of %.*s names another message (recipient or body "
                           "differ): refused";
        if (self->shell)
            zim_shell_warn (self->shell, text, (int)it->cid.len, it->cid.ptr, (int)it->from.len,
                            it->from.ptr);
        else
            zsys_warning (text, (int)it->cid.len, it->cid.ptr, (int)it->from.len, it->from.ptr);
    }
    return 0;
}

//  Applies messages [lo..hi) (only item `only` of an APPEND when only >= 0)
//  in txn. Returns 0 or an LMDB error.
static int s_apply (zim_commit_t *self, MDB_txn *txn, size_t lo, size_t hi, int64_t only)
{
    for (size_t p = lo; p < hi; p++) {
        zim_rd_t rd;
        int kind, rc = 0, bad;
        uint32_t fields;
        s_open (self, p, &rd, &kind, &fields);
        if (kind == ZIM_MSG_APPEND) {
            zim_append_t m;
            bad = zim_append_unpack (&rd, fields, &m);
            assert (bad == 0);
            for (size_t i = 0; i < self->msgs[p].count; i++) {
                zim_append_item_t item;
                bad = zim_append_item_unpack (&m.items, &item);
                assert (bad == 0);
                if (only >= 0 && (size_t)only != i) {
                    if ((size_t)only < i)
                        break;
                    continue;
                }
                zim_appended_item_t *res = &self->results[self->msgs[p].first + i];
                if ((rc = s_append_one (self, &item, res)))
                    return rc;
            }
        } else if (kind == ZIM_MSG_SETCURSOR) {
            zim_setcursor_t m;
            bad = zim_setcursor_unpack (&rd, fields, &m);
            assert (bad == 0);
            if ((rc = s_cursor_one (self, txn, &m)))
                return rc;
        } else if (zim_receipts_kind (kind) == ZIM_RECEIPTS_WRITE) {
            bool wrote;
            if ((rc = zim_receipts_apply (self->receipts, p, kind, &rd, fields, &wrote)))
                return rc;
            self->unit.wrote |= wrote;
        }
    }
    return 0;
}

//  Answers every item of [lo..hi) (see s_apply) with ZIM_ESTORE after a
//  failed transaction, and logs why.
static void s_failed (zim_commit_t *self, size_t lo, size_t hi, int64_t only, int rc)
{
    size_t failed = 0;
    for (size_t p = lo; p < hi; p++)
        if (self->msgs[p].kind != ZIM_MSG_APPEND && self->msgs[p].kind != ZIM_MSG_SETCURSOR)
            zim_receipts_failed (self->receipts, p, self->bodies[p]);
    for (size_t p = lo; p < hi; p++)
        for (size_t i = 0; i < self->msgs[p].count; i++)
            if (only < 0 || (size_t)only == i) {
                zim_appended_item_t *res = &self->results[self->msgs[p].first + i];
                *res = (zim_appended_item_t){ZIM_ESTORE, 0, 0, 0, 0};
                failed++;
            }
    self->stats->errors++;
    const char *name = self->shell ? zim_shell_name (self->shell) : "store";
    if (rc == MDB_MAP_FULL)
        zsys_error ("%s: store full at map_size %" PRIu64 ", %zu messages refused: raise "
                    "store/map_size",
                    name, zim_db_map_size (self->db), failed);
    else if (rc == MDB_TXN_FULL)
        zsys_error ("%s: transaction too large, %zu messages refused: lower store/max_batch", name,
                    failed);
    else
        zsys_error ("%s: write failed (%s), %zu messages refused: check the disk (space, "
                    "permissions, I/O errors)",
                    name, mdb_strerror (rc), failed);
}

//  One write transaction over [lo..hi) (see s_apply): begin, apply, commit;
//  on a full map grow it and try again; on failure answer every item of the
//  range with ZIM_ESTORE.
static void s_unit (zim_commit_t *self, size_t lo, size_t hi, int64_t only)
{
    int rc = 0;
    uint64_t t0 = zim_mono_us ();
    for (int attempt = 0;; attempt++) {
        self->unit = (s_unit_t){0};
        MDB_txn *txn;
        if ((rc = mdb_txn_begin (zim_db_env (self->db), NULL, 0, &txn)))
            break;
        zim_inbox_begin (self->inbox, txn);
        zim_receipts_begin (self->receipts, txn);
        rc = s_apply (self, txn, lo, hi, only);
        if (rc == 0)
            rc = zim_inbox_finish (self->inbox);
        if (rc == 0)
            rc = zim_receipts_finish (self->receipts);
        uint64_t t1 = zim_mono_us ();
        if (rc == 0)
            rc = mdb_txn_commit (txn);
        else
            mdb_txn_abort (txn);
        if (rc == 0) {
            zim_commit_stats_t *st = self->stats;
            uint64_t t2 = zim_mono_us ();
            zim_histo_observe (&st->write_us, t2 - t1);
            zim_inbox_committed (self->inbox);
            zim_receipts_committed (self->receipts);
            st->appended += self->unit.appended;
            st->duplicates += self->unit.duplicates;
            st->conflicts += self->unit.conflicts;
            st->cursors += self->unit.cursors;
            st->commits++;
            zim_histo_observe (&st->commit_us, t2 - t0);
            zim_histo_observe (&st->batch, self->unit.items);
            if (self->unit.items > st->batch_max)
                st->batch_max = self->unit.items;
            if (self->unit.wrote) {
                if (zim_db_sync_mode (self->db) == ZIM_FSYNC_NONE)
                    zim_db_wrote (self->db);
                else
                    st->fsyncs++;
            }
            return;
        }
        if (rc != MDB_MAP_FULL || attempt >= S_GROW_TRIES || zim_db_grow (self->db))
            break;
    }
    s_failed (self, lo, hi, only, rc);
}

zim_receipts_t *zim_commit_receipts (zim_commit_t *self)
{
    return self->receipts;
}

void zim_commit_write (zim_commit_t *self, const zim_str_t *msgs, size_t n,
                       zim_appended_item_t *results)
{
    if (n > self->msgs_alloc) {
        self->msgs_alloc = n * 2;
        free (self->msgs);
        self->msgs = zim_malloc (self->msgs_alloc * sizeof *self->msgs);
    }
    self->bodies = msgs;
    self->results = results;
    zim_receipts_start (self->receipts, n);
    size_t first = 0;
    for (size_t p = 0; p < n; p++) {
        zim_rd_t rd;
        uint32_t fields;
        s_msg_t *msg = &self->msgs[p];
        s_open (self, p, &rd, &msg->kind, &fields);
        msg->first = first;
        msg->count = 0;
        zim_append_t m;
        if (msg->kind == ZIM_MSG_APPEND && zim_append_unpack (&rd, fields, &m) == 0)
            msg->count = m.nitems;
        first += msg->count;
    }
    if (zim_db_sync_mode (self->db) != ZIM_FSYNC_ALWAYS) {
        s_unit (self, 0, n, -1);
        return;
    }
    for (size_t p = 0; p < n; p++) {
        if (self->msgs[p].kind != ZIM_MSG_APPEND)
            s_unit (self, p, p + 1, -1);
        for (size_t i = 0; i < self->msgs[p].count; i++)
            s_unit (self, p, p + 1, (int64_t)i);
    }
}

//  -------------------------------------------------------------------------
//  Selftest

//  Encodes an APPEND of n messages from -> to with cids "<tag>-i" and bin
//  bodies of size bytes, ids from id0, into wr.
static void s_test_append (zim_wr_t *wr, uint64_t id0, const char *tag, const char *from,
                           const char *to, int n, size_t size)
{
    char *blob = zim_calloc (1, size);
    zim_wr_t body;
    zim_wr_init (&body);
    zim_wr_bin (&body, (zim_str_t){blob, size});
    zim_append_begin (wr, 1, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        char cid[32];
        snprintf (cid, sizeof cid, "%s-%d", tag, i);
        zim_append_item_t it = {id0 + (uint64_t)i,      1,
                                zim_str ("demo"),       zim_str (from),
                                zim_str (to),           zim_str (cid),
                                {body.data, body.size}, ZIM_SIDE_BOTH};
        zim_append_item_pack (wr, &it);
    }
    zim_wr_free (&body);
    free (blob);
}

//  Opens a fresh environment under top with sync mode and map size, and its
//  group commit counting into *stats.
static zim_commit_t *s_test_open (const char *top, const char *name, zim_fsync_t sync,
                                  uint64_t map_size, zim_db_t **db, zim_commit_stats_t *stats)
{
    char path[300];
    snprintf (path, sizeof path, "%s/%s", top, name);
    *db = zim_db_new ("test", path, sync, map_size);
    assert (*db);
    memset (stats, 0, sizeof *stats);
    return zim_commit_new (*db, NULL, stats);
}

void zim_commit_test (bool verbose)
{
    char *top = zim_db_test_dir ();
    zim_db_t *db;
    zim_commit_stats_t st;
    zim_appended_item_t res[64];
    zim_wr_t wr[4];
    zim_str_t msgs[4];
    for (int i = 0; i < 4; i++)
        zim_wr_init (&wr[i]);

    //  sync = batch: three APPENDs and a SETCURSOR are one transaction and
    //  one fsync; the answers follow the items in order.
    zim_commit_t *commit = s_test_open (top, "batch", ZIM_FSYNC_BATCH, 1 << 22, &db, &st);
    for (int a = 0; a < 3; a++) {
        char tag[8];
        snprintf (tag, sizeof tag, "a%d", a);
        s_test_append (&wr[a], 100 + 20 * (uint64_t)a, tag, "alice", "bob", 20, 8);
    }
    zim_setcursor_t sc = {zim_str ("demo"), zim_str ("bob"), zim_str ("phone"), 50};
    zim_setcursor_pack (&wr[3], &sc);
    for (int i = 0; i < 4; i++)
        msgs[i] = (zim_str_t){wr[i].data, wr[i].size};
    zim_commit_write (commit, msgs, 4, res);
    for (int i = 0; i < 60; i++)
        assert (res[i].status == ZIM_APPEND_STORED && res[i].from_seq == (uint64_t)i + 1 &&
                res[i].id == 100 + (uint64_t)i);
    assert (st.commits == 1 && st.fsyncs == 1 && st.appended == 60 && st.batch_max == 60);
    //  The commit's write is timed apart, and is part of the whole.
    assert (st.write_us.count == 1 && st.commit_us.count == 1);
    assert (st.write_us.sum <= st.commit_us.sum);
    assert (st.cursors == 1 && st.errors == 0);
    //  The same again: duplicates only; a transaction that wrote nothing
    //  needs no fsync.
    zim_commit_write (commit, msgs, 3, res);
    assert (res[59].status == ZIM_APPEND_DUPLICATE && res[59].to_seq == 60);
    assert (st.commits == 2 && st.fsyncs == 1 && st.duplicates == 60);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);

    //  sync = always: a transaction and an fsync per message.
    commit = s_test_open (top, "always", ZIM_FSYNC_ALWAYS, 1 << 22, &db, &st);
    zim_commit_write (commit, msgs, 4, res);
    assert (res[59].status == ZIM_APPEND_STORED && res[59].to_seq == 60);
    assert (st.commits == 61 && st.fsyncs == 61 && st.batch_max == 1 && st.cursors == 1);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);

    //  sync = none: no fsync on the ack path, a background one owed.
    commit = s_test_open (top, "none", ZIM_FSYNC_NONE, 1 << 22, &db, &st);
    zim_commit_write (commit, msgs, 4, res);
    assert (st.commits == 1 && st.fsyncs == 0 && zim_db_due_ms (db) != UINT64_MAX);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);

    //  A full map grows and the batch is stored; one that cannot grow
    //  enough fails whole, every item answered ZIM_ESTORE.
    commit = s_test_open (top, "small", ZIM_FSYNC_BATCH, 262144, &db, &st);
    zim_wr_reset (&wr[0]);
    s_test_append (&wr[0], 1000, "big", "frank", "gina", 20, 32768);
    msgs[0] = (zim_str_t){wr[0].data, wr[0].size};
    zim_commit_write (commit, msgs, 1, res);
    assert (res[19].status == ZIM_APPEND_STORED && res[19].to_seq == 20);
    assert (zim_db_map_size (db) > 262144 && st.errors == 0);
    zim_wr_reset (&wr[0]);
    s_test_append (&wr[0], 2000, "huge", "frank", "gina", 40, 1 << 20);
    msgs[0] = (zim_str_t){wr[0].data, wr[0].size};
    zim_commit_write (commit, msgs, 1, res);
    for (int i = 0; i < 40; i++)
        assert (res[i].status == ZIM_ESTORE && res[i].id == 0 && res[i].to_seq == 0);
    assert (st.errors == 1 && st.appended == 20 && st.commits == 1);
    //  ... and nothing of it was kept: the next message takes seq 21.
    zim_wr_reset (&wr[0]);
    s_test_append (&wr[0], 3000, "after", "frank", "gina", 1, 8);
    msgs[0] = (zim_str_t){wr[0].data, wr[0].size};
    zim_commit_write (commit, msgs, 1, res);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].to_seq == 21);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);

    for (int i = 0; i < 4; i++)
        zim_wr_free (&wr[i]);
    zim_db_test_rmtree (top);
    free (top);
    if (verbose)
        zsys_info ("commit: one transaction per drain, per message with always, growth");
}
