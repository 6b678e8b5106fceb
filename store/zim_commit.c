/*  zim_commit.c: the group commit (see zim_commit.h). On the hot path: per
    drain one transaction, one commit, one fsync; per item the work of
    zim_inbox_append and nothing else.
*/
#include "store/zim_commit.h"
#include "store/zim_cursor.h"
#include "store/zim_inbox.h"
#include "store/zim_key.h"
#include "store/zim_receipts.h"
#include "store/zim_wal.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define S_GROW_TRIES 4       //  map doublings tried for one transaction
#define S_WINDOW_ITEMS 32768 //  APPEND items logged in a window before it is checkpointed
#define S_RETRY_MS 100       //  between attempts to open a lost window again

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
    //  The log (sync = batch, checkpoint_ms > 0): see zim_commit.h.
    zim_wal_t *wal;         //  the write-ahead log, or NULL
    uint64_t checkpoint_ms; //  age of a window when it is checkpointed
    //  The window itself (the open write transaction) and whether it was
    //  lost are zim_db's (zim_db_window): its reads use them too.
    uint64_t window_since;        //  mono ms it was opened
    uint64_t window_items;        //  APPEND items logged in it
    uint64_t checkpoint_lsn;      //  the log's last record in LMDB
    uint64_t retry_at;            //  mono ms: a lost window is opened again
    int replay_rc;                //  why the last batch applied again failed
    zim_appended_item_t *scratch; //  answers of batches applied again
    size_t scratch_alloc;         //  allocated
};

static int s_checkpoint_fn (void *arg);

zim_commit_t *zim_commit_new (zim_db_t *db, zim_shell_t *shell, zim_commit_stats_t *stats)
{
    zim_commit_t *self = zim_calloc (1, sizeof *self);
    self->db = db;
    self->shell = shell;
    self->stats = stats;
    self->inbox = zim_inbox_new (db, shell);
    self->receipts = zim_receipts_new (db, self->inbox, shell);
    zim_db_set_checkpointer (db, s_checkpoint_fn, self);
    return self;
}

void zim_commit_destroy (zim_commit_t **self_p)
{
    zim_commit_t *self = *self_p;
    if (!self)
        return;
    zim_commit_checkpoint (self);
    zim_db_set_checkpointer (self->db, NULL, NULL);
    zim_wal_destroy (&self->wal);
    free (self->scratch);
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

//  Applies [lo..hi) (see s_apply) in txn, with the inbox's and receipts'
//  state for it. Returns 0 or an LMDB error.
static int s_apply_txn (zim_commit_t *self, MDB_txn *txn, size_t lo, size_t hi, int64_t only)
{
    zim_inbox_begin (self->inbox, txn);
    zim_receipts_begin (self->receipts, txn);
    int rc = s_apply (self, txn, lo, hi, only);
    if (rc == 0)
        rc = zim_inbox_finish (self->inbox);
    if (rc == 0)
        rc = zim_receipts_finish (self->receipts);
    return rc;
}

//  The write attempt (begun at t0, its durable write at t1) is durable:
//  the caches move on, the counters and histograms count it.
static void s_counted (zim_commit_t *self, uint64_t t0, uint64_t t1)
{
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
        rc = s_apply_txn (self, txn, lo, hi, only);
        uint64_t t1 = zim_mono_us ();
        if (rc == 0)
            rc = mdb_txn_commit (txn);
        else
            mdb_txn_abort (txn);
        if (rc == 0) {
            s_counted (self, t0, t1);
            if (self->unit.wrote) {
                if (zim_db_sync_mode (self->db) == ZIM_FSYNC_NONE)
                    zim_db_wrote (self->db);
                else
                    self->stats->fsyncs++;
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

//  Sets up the write of msgs[0..n): what each message is, where its
//  answers go, the receipts' answers cleared.
static void s_prepare (zim_commit_t *self, const zim_str_t *msgs, size_t n,
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
}

//  -------------------------------------------------------------------------
//  The log and its window

static const char *s_name (zim_commit_t *self)
{
    return self->shell ? zim_shell_name (self->shell) : "store";
}

//  Applies msgs[0..n) in the window, answers to scratch: a batch logged
//  before, applied again. Returns 0 or an LMDB error.
static int s_again (zim_commit_t *self, const zim_str_t *msgs, size_t n)
{
    size_t items = 0;
    s_prepare (self, msgs, n, NULL);
    for (size_t p = 0; p < n; p++)
        items += self->msgs[p].count;
    if (items > self->scratch_alloc) {
        self->scratch_alloc = items * 2;
        free (self->scratch);
        self->scratch = zim_malloc (self->scratch_alloc * sizeof *self->scratch);
    }
    self->results = self->scratch;
    self->unit = (s_unit_t){0};
    int rc = s_apply_txn (self, zim_db_window (self->db), 0, n, -1);
    if (rc == 0) {
        zim_inbox_committed (self->inbox);
        zim_receipts_committed (self->receipts);
    }
    return rc;
}

//  The batches logged since the last checkpoint: the log's records since
//  its rewind, applied again after the window was dropped.
static bool s_logged_since (zim_commit_t *self)
{
    return zim_wal_used (self->wal) > 0;
}

//  Drops the window (its writes undone); the log keeps its batches.
static void s_window_abort (zim_commit_t *self)
{
    MDB_txn *window = zim_db_window (self->db);
    if (!window)
        return;
    mdb_txn_abort (window);
    self->retry_at = 0;
    zim_db_set_window (self->db, NULL, s_logged_since (self));
}

static int s_replay_fn (void *arg, uint64_t lsn, const zim_str_t *msgs, size_t n);

//  Opens the window: a write transaction, with the batches logged since
//  the last checkpoint applied again if an abort lost them. Returns 0 or
//  an LMDB error (no window then).
static int s_window_open (zim_commit_t *self)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (zim_db_env (self->db), NULL, 0, &txn);
    if (rc)
        return rc;
    bool again = s_logged_since (self);
    zim_db_set_window (self->db, txn, false);
    self->window_since = zim_mono_us () / 1000;
    self->replay_rc = 0;
    if (again && zim_wal_replay (self->wal, self->checkpoint_lsn, s_replay_fn, self) < 0) {
        rc = self->replay_rc ? self->replay_rc : EIO;
        s_window_abort (self);
        zsys_error ("%s: cannot apply the batches of the write-ahead log again (%s): writes and "
                    "reads fail until it succeeds; check the disk",
                    s_name (self), mdb_strerror (rc));
        return rc;
    }
    return 0;
}

int zim_commit_checkpoint (zim_commit_t *self)
{
    MDB_txn *window = zim_db_window (self->db);
    if (!window)
        return 0;
    uint64_t t0 = zim_mono_us ();
    uint8_t lsn[8];
    zim_be64_put (lsn, zim_wal_lsn (self->wal));
    MDB_val k = {7, "wal_lsn"}, v = {8, lsn};
    int rc = mdb_put (window, zim_db_dbs (self->db)->meta, &k, &v, 0);
    if (rc == 0)
        rc = mdb_txn_commit (window);
    else
        mdb_txn_abort (window);
    zim_commit_stats_t *st = self->stats;
    if (rc) {
        self->retry_at = 0;
        zim_db_set_window (self->db, NULL, s_logged_since (self));
        st->errors++;
        zsys_error ("%s: checkpoint failed (%s): the write-ahead log keeps every acknowledged "
                    "write, the checkpoint is tried again; check the disk",
                    s_name (self), mdb_strerror (rc));
        return rc;
    }
    zim_db_set_window (self->db, NULL, false);
    self->checkpoint_lsn = zim_wal_lsn (self->wal);
    zim_wal_rewind (self->wal);
    self->window_items = 0;
    st->checkpoints++;
    if (zim_db_sync_mode (self->db) == ZIM_FSYNC_NONE)
        zim_db_wrote (self->db);
    else
        st->fsyncs++;
    zim_histo_observe (&st->checkpoint_us, zim_mono_us () - t0);
    return 0;
}

static int s_checkpoint_fn (void *arg)
{
    zim_commit_t *self = (zim_commit_t *)arg;
    int rc = zim_db_window_lost (self->db) ? s_window_open (self) : 0;
    return rc ? rc : zim_commit_checkpoint (self);
}

//  True if the batch may be logged: every kind in it is applied the same
//  way again (a group's admin and the push bridge's queue read the clock).
static bool s_loggable (zim_commit_t *self, size_t n)
{
    for (size_t p = 0; p < n; p++)
        if (self->msgs[p].kind == ZIM_MSG_GADMIN || self->msgs[p].kind == ZIM_MSG_PUSH_Q)
            return false;
    return true;
}

//  Makes the batch just applied in the window durable: logged, or with
//  the window checkpointed when it cannot be logged. Returns 0 or the
//  error (the window is dropped then, the batch with it).
static int s_durable (zim_commit_t *self, size_t n)
{
    if (!self->unit.wrote)
        return 0;
    int rc = ENOSPC;
    if (s_loggable (self, n) && self->window_items + self->unit.items < S_WINDOW_ITEMS)
        rc = zim_wal_append (self->wal, self->bodies, n);
    if (rc == 0) {
        self->window_items += self->unit.items;
        self->stats->fsyncs++;
        return 0;
    }
    if (rc == ENOSPC || rc == EFBIG)
        return zim_commit_checkpoint (self);
    zsys_error ("%s: cannot write the write-ahead log (%s): check the disk", s_name (self),
                strerror (rc));
    s_window_abort (self);
    return rc;
}

//  The batch msgs[0..n) (s_prepare'd) through the log: applied in the
//  window and logged. A failure drops the window; the batches logged since
//  the last checkpoint are applied again from the log and checkpointed,
//  and the batch tried once more alone (a full map grows first); failing
//  alone, its items are answered ZIM_ESTORE.
static void s_logged (zim_commit_t *self, const zim_str_t *msgs, size_t n,
                      zim_appended_item_t *results)
{
    int rc = 0;
    uint64_t t0 = zim_mono_us ();
    for (int attempt = 0;; attempt++) {
        if (!zim_db_window (self->db) && (rc = s_window_open (self)))
            break;
        bool alone = !s_logged_since (self);
        s_prepare (self, msgs, n, results);
        self->unit = (s_unit_t){0};
        rc = s_apply_txn (self, zim_db_window (self->db), 0, n, -1);
        uint64_t t1 = zim_mono_us ();
        if (rc == 0 && (rc = s_durable (self, n)) == 0) {
            s_counted (self, t0, t1);
            return;
        }
        s_window_abort (self);
        if (attempt >= S_GROW_TRIES || (alone && rc != MDB_MAP_FULL))
            break;
        if (rc == MDB_MAP_FULL && zim_db_grow (self->db))
            break;
        //  The logged batches applied again and checkpointed, so the batch
        //  is tried in a window of its own.
        if (!alone && ((rc = s_window_open (self)) || (rc = zim_commit_checkpoint (self))))
            break;
    }
    s_prepare (self, msgs, n, results);
    s_failed (self, 0, n, -1, rc);
}

void zim_commit_write (zim_commit_t *self, const zim_str_t *msgs, size_t n,
                       zim_appended_item_t *results)
{
    if (self->wal) {
        s_logged (self, msgs, n, results);
        return;
    }
    s_prepare (self, msgs, n, results);
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

uint64_t zim_commit_due_ms (zim_commit_t *self)
{
    if (zim_db_window_lost (self->db))
        return self->retry_at;
    return zim_db_window (self->db) ? self->window_since + self->checkpoint_ms : UINT64_MAX;
}

void zim_commit_tick (zim_commit_t *self, uint64_t now_ms)
{
    if (zim_db_window_lost (self->db)) {
        if (now_ms < self->retry_at)
            return;
        if (s_window_open (self)) {
            self->retry_at = now_ms + S_RETRY_MS;
            return;
        }
    }
    if (zim_db_window (self->db) && now_ms >= self->window_since + self->checkpoint_ms)
        zim_commit_checkpoint (self);
}

//  Replays one record of the log into the window (zim_wal_fn).
static int s_replay_fn (void *arg, uint64_t lsn, const zim_str_t *msgs, size_t n)
{
    (void)lsn;
    zim_commit_t *self = (zim_commit_t *)arg;
    for (size_t p = 0; p < n; p++) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, msgs[p].ptr, msgs[p].len);
        if (zim_msg_kind (&rd, &kind, &fields)) {
            self->replay_rc = MDB_CORRUPTED;
            return self->replay_rc;
        }
    }
    self->replay_rc = s_again (self, msgs, n);
    return self->replay_rc;
}

int zim_commit_recover (zim_commit_t *self, uint64_t checkpoint_ms, uint64_t wal_bytes)
{
    const char *name = s_name (self);
    bool use = zim_db_sync_mode (self->db) == ZIM_FSYNC_BATCH && checkpoint_ms > 0;
    char *path = zsys_sprintf ("%s/wal", zim_db_dir (self->db));
    bool exists = zsys_file_exists (path);
    zstr_free (&path);
    if (!use && !exists)
        return 0;
    uint64_t after = 0;
    int rc;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin (zim_db_env (self->db), NULL, MDB_RDONLY, &txn)) == 0) {
        MDB_val k = {7, "wal_lsn"}, v;
        rc = mdb_get (txn, zim_db_dbs (self->db)->meta, &k, &v);
        if (rc == 0 && v.mv_size == 8)
            after = zim_be64_get (v.mv_data);
        mdb_txn_abort (txn);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    self->wal = rc ? NULL : zim_wal_open (name, zim_db_dir (self->db), use ? wal_bytes : 0);
    if (!self->wal) {
        if (rc)
            zsys_error ("%s: cannot read the store's checkpoint (%s)", name, mdb_strerror (rc));
        return -1;
    }
    self->checkpoint_ms = checkpoint_ms;
    self->checkpoint_lsn = after;
    long count = -1;
    for (int attempt = 0; attempt <= S_GROW_TRIES; attempt++) {
        if ((rc = s_window_open (self)))
            break;
        self->replay_rc = 0;
        count = zim_wal_replay (self->wal, after, s_replay_fn, self);
        if (count >= 0)
            break;
        s_window_abort (self);
        if (self->replay_rc != MDB_MAP_FULL || zim_db_grow (self->db))
            break;
    }
    if (count == 0)
        s_window_abort (self); //  nothing to apply: nothing written
    if (count < 0 || (count > 0 && zim_commit_checkpoint (self))) {
        zsys_error ("%s: cannot apply the write-ahead log of %s: the store does not start "
                    "(its acknowledged writes are kept there); check the disk and map_size",
                    name, zim_db_dir (self->db));
        s_window_abort (self);
        zim_wal_destroy (&self->wal);
        return -1;
    }
    if (count > 0)
        zsys_info ("%s: applied %ld batches from the write-ahead log (up to lsn %" PRIu64 ")", name,
                   count, zim_wal_lsn (self->wal));
    if (!use)
        zim_wal_destroy (&self->wal);
    return 0;
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

//  The last inbox seq of uid (app "demo") as txn sees it.
static uint64_t s_test_last (zim_db_t *db, MDB_txn *txn, const char *uid)
{
    zim_key_t k;
    zim_key_user (&k, zim_str ("demo"), zim_str (uid));
    MDB_val kv = zim_key_val (&k), v;
    if (mdb_get (txn, zim_db_dbs (db)->seqs, &kv, &v) || v.mv_size != 8)
        return 0;
    return zim_be64_get (v.mv_data);
}

//  The same through a read transaction of its own: what another process
//  (a backup) sees, the last checkpoint.
static uint64_t s_test_last_committed (zim_db_t *db, const char *uid)
{
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    uint64_t last = s_test_last (db, txn, uid);
    mdb_txn_abort (txn);
    return last;
}

//  A crash: the window dropped, nothing checkpointed, the log as it is.
static void s_test_crash (zim_commit_t **commit, zim_db_t **db)
{
    if (zim_db_window (*db))
        mdb_txn_abort (zim_db_window (*db));
    zim_db_set_window (*db, NULL, false);
    zim_commit_destroy (commit);
    zim_db_destroy (db);
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

    //  sync = batch through the log (checkpoints far apart here): a batch
    //  is durable once logged, one sync; reads see the window, another
    //  process only the last checkpoint.
    for (int a = 0; a < 3; a++) {
        char tag[8];
        snprintf (tag, sizeof tag, "a%d", a);
        zim_wr_reset (&wr[a]);
        s_test_append (&wr[a], 100 + 20 * (uint64_t)a, tag, "alice", "bob", 20, 8);
        msgs[a] = (zim_str_t){wr[a].data, wr[a].size};
    }
    zim_wr_reset (&wr[3]);
    zim_setcursor_pack (&wr[3], &sc);
    msgs[3] = (zim_str_t){wr[3].data, wr[3].size};
    commit = s_test_open (top, "log", ZIM_FSYNC_BATCH, 1 << 22, &db, &st);
    assert (zim_commit_recover (commit, 3600 * 1000, 1 << 16) == 0);
    zim_commit_write (commit, msgs, 2, res);
    assert (res[39].status == ZIM_APPEND_STORED && res[39].to_seq == 40);
    assert (st.commits == 1 && st.fsyncs == 1 && st.checkpoints == 0 && st.appended == 40);
    int rc;
    MDB_txn *txn = zim_db_read_begin (db, &rc);
    assert (txn && rc == 0 && s_test_last (db, txn, "bob") == 40);
    zim_db_read_end (db);
    assert (s_test_last_committed (db, "bob") == 0);
    //  A batch of duplicates only writes nothing and logs nothing.
    zim_commit_write (commit, msgs, 1, res);
    assert (res[19].status == ZIM_APPEND_DUPLICATE && st.fsyncs == 1 && st.commits == 2);
    //  A lost window (an abort) is opened again with its batches before
    //  anything reads it; meanwhile reads fail.
    s_window_abort (commit);
    assert (zim_db_read_begin (db, &rc) == NULL && rc == EIO);
    assert (zim_commit_due_ms (commit) == 0);
    zim_commit_tick (commit, zim_mono_us () / 1000);
    txn = zim_db_read_begin (db, &rc);
    assert (txn && s_test_last (db, txn, "bob") == 40);
    zim_db_read_end (db);
    //  The crash: the window is gone, the log is not. Reopened, the log is
    //  applied again: the same seqs, the resend a duplicate, the next
    //  message after them.
    s_test_crash (&commit, &db);
    char path[300];
    snprintf (path, sizeof path, "%s/log", top);
    db = zim_db_new ("test", path, ZIM_FSYNC_BATCH, 1 << 22);
    assert (db && s_test_last_committed (db, "bob") == 0);
    memset (&st, 0, sizeof st);
    commit = zim_commit_new (db, NULL, &st);
    assert (zim_commit_recover (commit, 3600 * 1000, 1 << 16) == 0);
    assert (st.checkpoints == 1 && s_test_last_committed (db, "bob") == 40);
    zim_commit_write (commit, msgs, 4, res);
    assert (res[39].status == ZIM_APPEND_DUPLICATE && res[39].to_seq == 40);
    assert (res[59].status == ZIM_APPEND_STORED && res[59].to_seq == 60 && st.cursors == 1);
    //  Another writer (retention, the push queue) checkpoints the window
    //  first; the tick checkpoints a window of checkpoint_ms.
    assert (zim_db_write_begin (db, &txn) == 0 && st.checkpoints == 2);
    mdb_txn_abort (txn);
    assert (s_test_last_committed (db, "bob") == 60);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);
    db = zim_db_new ("test", path, ZIM_FSYNC_BATCH, 1 << 22);
    memset (&st, 0, sizeof st);
    commit = zim_commit_new (db, NULL, &st);
    assert (zim_commit_recover (commit, 1, 1 << 16) == 0 && st.checkpoints == 0);
    zim_wr_reset (&wr[0]);
    s_test_append (&wr[0], 500, "tick", "alice", "bob", 5, 8);
    msgs[0] = (zim_str_t){wr[0].data, wr[0].size};
    zim_commit_write (commit, msgs, 1, res);
    assert (res[4].to_seq == 65 && zim_commit_due_ms (commit) != UINT64_MAX);
    zim_commit_tick (commit, zim_commit_due_ms (commit));
    assert (st.checkpoints == 1 && zim_commit_due_ms (commit) == UINT64_MAX);
    assert (s_test_last_committed (db, "bob") == 65);
    //  A batch larger than the log is made durable by a checkpoint.
    zim_wr_reset (&wr[0]);
    s_test_append (&wr[0], 600, "wide", "alice", "bob", 4, 32768);
    msgs[0] = (zim_str_t){wr[0].data, wr[0].size};
    zim_commit_write (commit, msgs, 1, res);
    assert (res[3].status == ZIM_APPEND_STORED && st.checkpoints == 2);
    assert (s_test_last_committed (db, "bob") == 69);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);

    //  A full map with batches in the window: they are checkpointed, the
    //  map grows, the batch stored; one that can never fit fails alone,
    //  and the logged ones stay.
    commit = s_test_open (top, "logsmall", ZIM_FSYNC_BATCH, 262144, &db, &st);
    assert (zim_commit_recover (commit, 3600 * 1000, 1 << 20) == 0);
    zim_wr_reset (&wr[0]);
    s_test_append (&wr[0], 700, "first", "frank", "gina", 3, 8);
    msgs[0] = (zim_str_t){wr[0].data, wr[0].size};
    zim_commit_write (commit, msgs, 1, res);
    assert (res[2].to_seq == 3 && st.checkpoints == 0);
    zim_wr_reset (&wr[1]);
    s_test_append (&wr[1], 1000, "big", "frank", "gina", 20, 32768);
    msgs[1] = (zim_str_t){wr[1].data, wr[1].size};
    zim_commit_write (commit, &msgs[1], 1, res);
    assert (res[19].status == ZIM_APPEND_STORED && res[19].to_seq == 23);
    assert (zim_db_map_size (db) > 262144 && st.errors == 0 && st.checkpoints >= 1);
    zim_wr_reset (&wr[1]);
    s_test_append (&wr[1], 2000, "huge", "frank", "gina", 40, 1 << 20);
    msgs[1] = (zim_str_t){wr[1].data, wr[1].size};
    zim_commit_write (commit, &msgs[1], 1, res);
    assert (res[39].status == ZIM_ESTORE && st.errors == 1);
    zim_wr_reset (&wr[1]);
    s_test_append (&wr[1], 3000, "after", "frank", "gina", 1, 8);
    msgs[1] = (zim_str_t){wr[1].data, wr[1].size};
    zim_commit_write (commit, &msgs[1], 1, res);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].to_seq == 24);
    zim_commit_write (commit, msgs, 1, res);
    assert (res[2].status == ZIM_APPEND_DUPLICATE && res[2].to_seq == 3);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);

    for (int i = 0; i < 4; i++)
        zim_wr_free (&wr[i]);
    zim_db_test_rmtree (top);
    free (top);
    if (verbose)
        zsys_info ("commit: one transaction per drain, per message with always, growth; the "
                   "log: window reads, crash, checkpoints, growth");
}
