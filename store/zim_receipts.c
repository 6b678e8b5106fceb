/*  zim_receipts.c: the store's side of receipts, the conversation list
    and offline push (see zim_receipts.h).
*/
#include "store/zim_receipts.h"
#include "store/zim_convs.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "store/zim_pushq.h"
#include "msg/zim_conv.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

#define S_CONVS_LIMIT 20      //  conversations per page by default
#define S_CONVS_LIMIT_MAX 100 //  and at most
#define S_TAKE_MAX 1000       //  push records per take, at most

//  Where the answer of one write is, in answers.
typedef struct {
    size_t off; //  its first byte
    size_t len; //  its bytes; 0: none
} s_answer_t;

struct _zim_receipts_t {
    zim_db_t *db;            //  the environment (borrowed)
    const zim_dbs_t *dbs;    //  its databases
    zim_inbox_t *inbox;      //  the commit's appends and their states (borrowed)
    zim_shell_t *shell;      //  warnings, or NULL (borrowed)
    zim_pushq_t *pushq;      //  the push queue
    zim_pushq_stats_t stats; //  its counters
    uint64_t marks;          //  cursors that moved
    MDB_txn *txn;            //  the write transaction (borrowed)
    zim_wr_t answers;        //  the drain's answers, back to back
    s_answer_t *slots;       //  one per write of the drain
    size_t nslots;           //  writes in the drain
    size_t alloc;            //  room in slots
    zim_wr_t wr;             //  one answer being built
    zim_groups_t *groups;    //  GPOST, GADMIN, GREAD
};

zim_receipts_t *zim_receipts_new (zim_db_t *db, zim_inbox_t *inbox, zim_shell_t *shell)
{
    zim_receipts_t *self = zim_calloc (1, sizeof *self);
    self->db = db;
    self->dbs = zim_db_dbs (db);
    self->inbox = inbox;
    self->shell = shell;
    self->pushq = zim_pushq_new (db, &self->stats);
    self->groups = zim_groups_new (db, inbox, shell);
    zim_wr_init (&self->answers);
    zim_wr_init (&self->wr);
    return self;
}

void zim_receipts_destroy (zim_receipts_t **self_p)
{
    zim_receipts_t *self = *self_p;
    if (!self)
        return;
    zim_pushq_destroy (&self->pushq);
    zim_groups_destroy (&self->groups);
    zim_wr_free (&self->answers);
    zim_wr_free (&self->wr);
    free (self->slots);
    free (self);
    *self_p = NULL;
}

int zim_receipts_kind (int kind)
{
    if (kind == ZIM_MSG_MARK || kind == ZIM_MSG_PUSH_ADD || kind == ZIM_MSG_PUSH_Q ||
        kind == ZIM_MSG_GPOST || kind == ZIM_MSG_GADMIN || kind == ZIM_MSG_GFAN ||
        kind == ZIM_MSG_GDONE)
        return ZIM_RECEIPTS_WRITE;
    return kind == ZIM_MSG_CONVS_Q || kind == ZIM_MSG_GREAD ? ZIM_RECEIPTS_READ
                                                            : ZIM_RECEIPTS_NONE;
}

int zim_receipts_check (int kind, zim_rd_t *rd, uint32_t fields, const char **why)
{
    _Alignas(max_align_t) char m[ZIM_MSG_MAX_SIZE];
    const zim_record_t *rec = zim_msg_record (kind);
    *why = "bad receipts message";
    if (!rec || zim_receipts_kind (kind) == ZIM_RECEIPTS_NONE ||
        zim_codec_unpack_fields (rd, fields, rec, m) || zim_codec_check (rec, m))
        return -1;
    //  A list that ends the message was checked to its end; anything else
    //  must leave nothing behind.
    bool list_last = kind == ZIM_MSG_PUSH_ADD || kind == ZIM_MSG_PUSH_Q;
    return list_last || zim_rd_left (rd) == 0 ? 0 : -1;
}

void zim_receipts_start (zim_receipts_t *self, size_t n)
{
    if (n > self->alloc) {
        self->alloc = n * 2;
        free (self->slots);
        self->slots = zim_malloc (self->alloc * sizeof *self->slots);
    }
    memset (self->slots, 0, n * sizeof *self->slots);
    self->nslots = n;
    zim_wr_reset (&self->answers);
}

void zim_receipts_begin (zim_receipts_t *self, MDB_txn *txn)
{
    self->txn = txn;
    zim_pushq_begin (self->pushq, txn);
}

int zim_receipts_finish (zim_receipts_t *self)
{
    return zim_pushq_finish (self->pushq);
}

void zim_receipts_committed (zim_receipts_t *self)
{
    zim_pushq_committed (self->pushq);
}

//  Keeps self->wr as the answer of write w.
static void s_keep (zim_receipts_t *self, size_t w)
{
    assert (w < self->nslots);
    self->slots[w] = (s_answer_t){self->answers.size, self->wr.size};
    zim_wr_raw (&self->answers, self->wr.data, self->wr.size);
}

zim_str_t zim_receipts_reply (zim_receipts_t *self, size_t w)
{
    if (w >= self->nslots || self->slots[w].len == 0)
        return (zim_str_t){NULL, 0};
    return (zim_str_t){(const char *)self->answers.data + self->slots[w].off, self->slots[w].len};
}

//  Counts and logs (rate-limited) a request this store refuses.
static void s_refused (zim_receipts_t *self, const char *what)
{
    if (self->shell)
        zim_shell_warn (self->shell, "%s: refused (ZIM_EVALUE)", what);
}

//  -------------------------------------------------------------------------
//  MARK

//  The record of message id: its sender's seq when the record holds the
//  sender's side, and whether it went from `from` to `to`.
static int s_record (zim_receipts_t *self, uint64_t id, zim_str_t from, zim_str_t to,
                     uint64_t *from_seq)
{
    *from_seq = 0;
    uint8_t idb[8];
    zim_be64_put (idb, id);
    MDB_val k = {8, idb}, v;
    zim_msgrec_t rec;
    int rc = mdb_get (self->txn, self->dbs->msgs, &k, &v);
    if (rc == 0 && zim_msgrec_parse (&v, &rec) == 0 && zim_str_same (rec.from, from) &&
        zim_str_same (rec.to, to))
        *from_seq = rec.from_seq;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int s_mark (zim_receipts_t *self, const zim_mark_t *m, bool *wrote)
{
    zim_convs_t *convs = zim_inbox_convs (self->inbox);
    zim_marked_t out = {m->req, 0, false, 0, 0, 0, 0};
    zim_convs_moved_t mv;
    zim_str_t peer;
    int rc = 0;
    bool peer_mark = m->what == ZIM_MARK_PEER_READ || m->what == ZIM_MARK_PEER_DELIVERED;
    if (zim_conv_check (m->conv, m->uid, &peer) || (peer_mark && !zim_uid_valid (m->reader))) {
        out.status = ZIM_EVALUE;
        s_refused (self, "MARK of a conversation the user takes no part in");
    } else if (peer_mark) {
        //  The reader's shard found the newest of uid's messages it read:
        //  uid's seq of it is in its record here.
        if ((rc = s_record (self, m->value, m->uid, m->reader, &out.peer_seq)))
            return rc;
        out.peer_id = m->value;
        if (out.peer_seq == 0) {
            out.status = ZIM_EVALUE;
            s_refused (self, "peer MARK of a message this shard does not hold as sent");
        } else if ((rc = zim_convs_peer_mark (convs, m->app, m->uid, m->conv, (int)m->what,
                                              out.peer_seq, &mv)))
            return rc;
        else
            out.moved = mv.moved, out.read = mv.read, out.delivered = mv.delivered;
    } else {
        if ((rc = zim_convs_mark (convs, m->app, m->uid, m->conv, (int)m->what, m->value, &mv)))
            return rc;
        out.moved = mv.moved, out.read = mv.read, out.delivered = mv.delivered;
        out.peer_id = mv.peer_id;
        if (mv.moved && m->what == ZIM_MARK_READ &&
            (rc = zim_pushq_read (self->pushq, m->app, m->uid, m->conv, mv.read)))
            return rc;
        //  This shard holds the other side too: its peer cursors move here.
        if (mv.peer_id && peer.len && !zim_str_same (peer, m->uid)) {
            if ((rc = s_record (self, mv.peer_id, peer, m->uid, &out.peer_seq)))
                return rc;
            int what = m->what == ZIM_MARK_READ ? ZIM_MARK_PEER_READ : ZIM_MARK_PEER_DELIVERED;
            zim_convs_moved_t pm;
            if (out.peer_seq &&
                (rc = zim_convs_peer_mark (convs, m->app, peer, m->conv, what, out.peer_seq, &pm)))
                return rc;
        }
    }
    if (out.moved)
        self->marks++;
    *wrote = out.moved;
    zim_wr_reset (&self->wr);
    zim_marked_pack (&self->wr, &out);
    return 0;
}

//  -------------------------------------------------------------------------
//  PUSH_ADD, PUSH_Q

static int s_push_add (zim_receipts_t *self, zim_push_add_t *m, bool *wrote)
{
    zim_convs_t *convs = zim_inbox_convs (self->inbox);
    for (uint32_t i = 0; i < m->nitems; i++) {
        zim_push_item_t it;
        if (zim_push_item_unpack (&m->items, &it))
            break; //  checked whole on arrival
        zim_conv_t c;
        if (zim_conv_parse (it.conv, &c)) {
            s_refused (self, "PUSH_ADD item with a bad conversation");
            continue;
        }
        zim_convstate_t st;
        bool found;
        int rc = zim_convs_state (convs, it.app, it.uid, it.conv, &st, &found);
        if (rc == 0)
            rc = zim_pushq_add (self->pushq, &it, st.read);
        if (rc)
            return rc;
        *wrote = true;
    }
    zim_wr_reset (&self->wr);
    return 0;
}

//  Adds the queue's counters to a JSON object.
static void s_counters (zim_receipts_t *self, json_t *o)
{
    const zim_pushq_stats_t *s = &self->stats;
    const char *names[] = {"push_added",   "push_coalesced", "push_read",   "push_delivered",
                           "push_dropped", "push_muted",     "push_expired"};
    const uint64_t *v = &s->added;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        json_object_set_new (o, names[i], json_integer ((json_int_t)v[i]));
}

static int s_push_q (zim_receipts_t *self, zim_push_q_t *m, bool *wrote)
{
    zim_convs_t *convs = zim_inbox_convs (self->inbox);
    json_t *o = json_object ();
    uint64_t now = zim_now_ms ();
    int rc = 0;
    if (m->op == ZIM_PUSHQ_STAT) {
        rc = zim_pushq_stat (self->pushq, convs, now, o);
        s_counters (self, o);
    } else if (m->op == ZIM_PUSHQ_TAKE) {
        json_t *records = json_array ();
        uint64_t max = m->max && m->max < S_TAKE_MAX ? m->max : S_TAKE_MAX;
        rc = zim_pushq_take (self->pushq, convs, m->after, max, now, records);
        json_object_set_new (o, "records", records);
    } else {
        uint64_t removed;
        int outcome = m->outcome ? (int)m->outcome : ZIM_PUSHQ_DELIVERED;
        rc = zim_pushq_ack (self->pushq, &m->qids, m->nqids, outcome, &removed);
        json_object_set_new (o, "removed", json_integer ((json_int_t)removed));
        *wrote = removed > 0;
    }
    char *text = rc ? NULL : json_dumps (o, JSON_COMPACT);
    json_decref (o);
    if (rc)
        return rc;
    zim_push_r_t r = {m->req, 0, zim_str (text)};
    zim_wr_reset (&self->wr);
    zim_push_r_pack (&self->wr, &r);
    free (text);
    return 0;
}

int zim_receipts_apply (zim_receipts_t *self, size_t w, int kind, zim_rd_t *rd, uint32_t fields,
                        bool *wrote)
{
    _Alignas(max_align_t) char m[ZIM_MSG_MAX_SIZE];
    *wrote = false;
    int bad = zim_codec_unpack_fields (rd, fields, zim_msg_record (kind), m), rc;
    assert (bad == 0); //  checked whole on arrival
    if (kind == ZIM_MSG_MARK)
        rc = s_mark (self, (zim_mark_t *)m, wrote);
    else if (kind == ZIM_MSG_GPOST || kind == ZIM_MSG_GADMIN || kind == ZIM_MSG_GFAN ||
             kind == ZIM_MSG_GDONE)
        rc = zim_groups_apply (self->groups, self->txn, kind, m, &self->wr, wrote);
    else if (kind == ZIM_MSG_PUSH_ADD)
        rc = s_push_add (self, (zim_push_add_t *)m, wrote);
    else
        rc = s_push_q (self, (zim_push_q_t *)m, wrote);
    if (rc == 0)
        s_keep (self, w);
    return rc;
}

void zim_receipts_failed (zim_receipts_t *self, size_t w, zim_str_t msg)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    uint64_t req = 0;
    zim_rd_init (&rd, msg.ptr, msg.len);
    if (zim_msg_kind (&rd, &kind, &fields) || kind == ZIM_MSG_PUSH_ADD || kind == ZIM_MSG_GDONE ||
        zim_rd_uint (&rd, &req))
        return;
    zim_wr_reset (&self->wr);
    if (kind == ZIM_MSG_MARK)
        zim_marked_pack (&self->wr, &(zim_marked_t){req, ZIM_ESTORE, false, 0, 0, 0, 0});
    else if (kind == ZIM_MSG_GPOST || kind == ZIM_MSG_GADMIN || kind == ZIM_MSG_GFAN)
        zim_groups_failed (kind, req, &self->wr);
    else
        zim_push_r_pack (&self->wr, &(zim_push_r_t){req, ZIM_ESTORE, zim_str ("")});
    s_keep (self, w);
}

//  -------------------------------------------------------------------------
//  Reads, expiry, counters

int zim_receipts_read (zim_receipts_t *self, MDB_txn *txn, int kind, zim_rd_t *rd, uint32_t fields,
                       uint64_t max_bytes, zim_wr_t *out)
{
    if (kind == ZIM_MSG_GREAD) {
        zim_gread_t g;
        int bad = zim_gread_unpack (rd, fields, &g);
        assert (bad == 0);
        return zim_groups_read (self->groups, txn, &g, max_bytes, out);
    }
    assert (kind == ZIM_MSG_CONVS_Q);
    zim_convs_q_t m;
    int bad = zim_convs_q_unpack (rd, fields, &m);
    assert (bad == 0);
    uint64_t limit = m.limit ? m.limit : S_CONVS_LIMIT;
    limit = limit > S_CONVS_LIMIT_MAX ? S_CONVS_LIMIT_MAX : limit;
    zim_wr_t items;
    zim_wr_init (&items);
    uint32_t count = 0;
    bool more = false;
    int rc = 0;
    if (!txn)
        rc = ZIM_ESTORE;
    else
        rc = zim_convs_page (self->dbs, txn, m.app, m.uid, limit, m.before,
                             max_bytes > 64 ? max_bytes - 64 : max_bytes, &items, &count, &more);
    zim_wr_reset (out);
    zim_convs_r_pack (
        out,
        &(zim_convs_r_t){m.req, rc ? ZIM_ESTORE : 0, more && !rc, {NULL, NULL}, rc ? 0 : count});
    if (rc == 0)
        zim_wr_raw (out, items.data, items.size);
    zim_wr_free (&items);
    return rc == ZIM_ESTORE ? 0 : rc;
}

int zim_receipts_expire (zim_receipts_t *self, uint64_t cutoff_ms, size_t max, size_t *removed)
{
    return zim_pushq_expire (self->pushq, cutoff_ms, max, removed);
}

zim_groups_t *zim_receipts_groups (zim_receipts_t *self)
{
    return self->groups;
}

void zim_receipts_stats (zim_receipts_t *self, json_t *stats)
{
    zim_groups_stats (self->groups, stats);
    s_counters (self, stats);
    json_object_set_new (stats, "receipts", json_integer ((json_int_t)self->marks));
    MDB_txn *txn;
    MDB_stat st = {0};
    if (mdb_txn_begin (zim_db_env (self->db), NULL, MDB_RDONLY, &txn) == 0) {
        mdb_stat (txn, self->dbs->pushq, &st);
        mdb_txn_abort (txn);
    }
    json_object_set_new (stats, "push_depth", json_integer ((json_int_t)st.ms_entries));
}

//  -------------------------------------------------------------------------
//  Selftest: appends through zim_inbox and the kinds of this class applied
//  the way the group commit does, one transaction each.

typedef struct {
    zim_db_t *db;
    zim_inbox_t *inbox;
    zim_receipts_t *r;
    zim_wr_t wr;
} s_test_t;

//  Applies the message in t->wr as write 0 in one transaction.
static zim_str_t s_test_apply (s_test_t *t)
{
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (t->db), NULL, 0, &txn) == 0);
    zim_inbox_begin (t->inbox, txn);
    zim_receipts_start (t->r, 1);
    zim_receipts_begin (t->r, txn);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    const char *why;
    zim_rd_init (&rd, t->wr.data, t->wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_rd_t check = rd;
    assert (zim_receipts_check (kind, &check, fields, &why) == 0);
    bool wrote;
    assert (zim_receipts_apply (t->r, 0, kind, &rd, fields, &wrote) == 0);
    assert (zim_inbox_finish (t->inbox) == 0 && zim_receipts_finish (t->r) == 0);
    assert (mdb_txn_commit (txn) == 0);
    zim_inbox_committed (t->inbox);
    zim_receipts_committed (t->r);
    return zim_receipts_reply (t->r, 0);
}

static zim_marked_t s_test_mark (s_test_t *t, const char *uid, const char *conv, int what,
                                 uint64_t value, const char *reader)
{
    zim_wr_reset (&t->wr);
    zim_mark_pack (&t->wr, &(zim_mark_t){7, zim_str ("demo"), zim_str (uid), zim_str (conv),
                                         (uint64_t)what, value, zim_str (reader)});
    zim_str_t answer = s_test_apply (t);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_marked_t m;
    zim_rd_init (&rd, answer.ptr, answer.len);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_MARKED);
    assert (zim_marked_unpack (&rd, fields, &m) == 0 && m.req == 7);
    return m;
}

//  A PUSH_Q; returns its JSON (caller owns).
static json_t *s_test_push_q (s_test_t *t, int op, uint64_t after, uint64_t qid)
{
    zim_wr_t qids;
    zim_wr_init (&qids);
    zim_wr_uint (&qids, qid);
    zim_wr_reset (&t->wr);
    zim_push_q_pack (
        &t->wr,
        &(zim_push_q_t){
            9, (uint64_t)op, after, 10, ZIM_PUSHQ_DELIVERED, {NULL, NULL}, op == ZIM_PUSHQ_ACK});
    if (op == ZIM_PUSHQ_ACK)
        zim_wr_raw (&t->wr, qids.data, qids.size);
    zim_wr_free (&qids);
    zim_str_t answer = s_test_apply (t);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_push_r_t m;
    zim_rd_init (&rd, answer.ptr, answer.len);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PUSH_R);
    assert (zim_push_r_unpack (&rd, fields, &m) == 0 && m.req == 9 && m.status == 0);
    return json_loadb (m.json.ptr, m.json.len, 0, NULL);
}

void zim_receipts_test (bool verbose)
{
    char *dir;
    s_test_t t = {.db = zim_db_test_new (&dir, 1 << 22)};
    t.inbox = zim_inbox_new (t.db, NULL);
    t.r = zim_receipts_new (t.db, t.inbox, NULL);
    zim_wr_init (&t.wr);
    const char *ab = "p:alice:bob";

    //  alice -> bob twice, bob -> alice once, through the appends.
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (t.db), NULL, 0, &txn) == 0);
    zim_inbox_begin (t.inbox, txn);
    const char *from[] = {"alice", "alice", "bob"}, *to[] = {"bob", "bob", "alice"};
    for (int i = 0; i < 3; i++) {
        char cid[8];
        snprintf (cid, sizeof cid, "c%d", i);
        zim_append_item_t it = {
            100 + (uint64_t)i, 5000,          zim_str ("demo"), zim_str (from[i]),
            zim_str (to[i]),   zim_str (cid), {"\xa2hi", 3},    ZIM_SIDE_BOTH};
        zim_appended_item_t res;
        assert (zim_inbox_append (t.inbox, &it, &res) == 0 && res.status == ZIM_APPEND_STORED);
    }
    assert (zim_inbox_finish (t.inbox) == 0 && mdb_txn_commit (txn) == 0);
    zim_inbox_committed (t.inbox);

    //  The push bridge's records for bob: one, of the second message.
    zim_wr_reset (&t.wr);
    zim_push_add_pack (&t.wr, &(zim_push_add_t){{NULL, NULL}, 2});
    for (uint64_t seq = 1; seq <= 2; seq++)
        zim_push_item_pack (&t.wr, &(zim_push_item_t){zim_str ("demo"), zim_str ("bob"),
                                                      zim_str (ab), seq, 99 + seq, 5000,
                                                      zim_str ("alice"), zim_str ("hi"), false});
    assert (s_test_apply (&t).len == 0);
    json_t *o = s_test_push_q (&t, ZIM_PUSHQ_STAT, 0, 0);
    assert (json_integer_value (json_object_get (o, "depth")) == 1);
    assert (json_integer_value (json_object_get (o, "push_coalesced")) == 1);
    json_decref (o);

    //  bob reads up to his seq 1: alice's seq of message 100 is 1, and this
    //  shard holds her inbox: her peer cursor moves in the same write. The
    //  push record (seq 2) stays; reading seq 2 removes it.
    zim_marked_t m = s_test_mark (&t, "bob", ab, ZIM_MARK_READ, 1, "");
    assert (m.status == 0 && m.moved && m.read == 1 && m.peer_id == 100 && m.peer_seq == 1);
    m = s_test_mark (&t, "alice", ab, ZIM_MARK_PEER_READ, 100, "bob"); //  again: no move
    assert (m.status == 0 && !m.moved && m.read == 1 && m.peer_seq == 1);
    o = s_test_push_q (&t, ZIM_PUSHQ_TAKE, 0, 0);
    assert (json_array_size (json_object_get (o, "records")) == 1);
    json_decref (o);
    m = s_test_mark (&t, "bob", ab, ZIM_MARK_READ, 2, "");
    assert (m.moved && m.read == 2 && m.peer_id == 101 && m.peer_seq == 2);
    o = s_test_push_q (&t, ZIM_PUSHQ_STAT, 0, 0);
    assert (json_integer_value (json_object_get (o, "depth")) == 0);
    assert (json_integer_value (json_object_get (o, "push_read")) == 1);
    json_decref (o);
    //  Refused: a conversation without the user, a peer mark of a message
    //  that is not the user's.
    m = s_test_mark (&t, "carol", ab, ZIM_MARK_READ, 1, "");
    assert (m.status == ZIM_EVALUE && !m.moved);
    m = s_test_mark (&t, "bob", ab, ZIM_MARK_PEER_READ, 100, "alice");
    assert (m.status == ZIM_EVALUE);
    //  A failed write answers ZIM_ESTORE with its req.
    zim_receipts_start (t.r, 1);
    zim_receipts_failed (t.r, 0, (zim_str_t){(const char *)t.wr.data, t.wr.size});
    zim_str_t answer = zim_receipts_reply (t.r, 0);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, answer.ptr, answer.len);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_marked_unpack (&rd, fields, &m) == 0);
    assert (m.status == ZIM_ESTORE && m.req == 7);

    //  The list, from a read transaction.
    zim_wr_reset (&t.wr);
    zim_convs_q_pack (&t.wr, &(zim_convs_q_t){3, zim_str ("demo"), zim_str ("alice"), 0, 0});
    zim_rd_init (&rd, t.wr.data, t.wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_receipts_kind (kind) == 2);
    assert (mdb_txn_begin (zim_db_env (t.db), NULL, MDB_RDONLY, &txn) == 0);
    zim_wr_t out;
    zim_wr_init (&out);
    assert (zim_receipts_read (t.r, txn, kind, &rd, fields, 262144, &out) == 0);
    mdb_txn_abort (txn);
    zim_rd_init (&rd, out.data, out.size);
    zim_convs_r_t page;
    zim_sconv_t c;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 &&
            zim_convs_r_unpack (&rd, fields, &page) == 0);
    assert (page.req == 3 && page.status == 0 && page.nitems == 1 && !page.more);
    assert (zim_sconv_unpack (&page.items, &c) == 0);
    assert (zim_str_eq (c.conv, ab) && c.id == 102 && c.seq == 3 && c.unread == 1);
    assert (c.peer_read == 2 && zim_str_eq (c.from, "bob"));
    json_t *stats = json_object ();
    zim_receipts_stats (t.r, stats);
    assert (json_integer_value (json_object_get (stats, "receipts")) == 2);
    json_decref (stats);

    zim_wr_free (&out);
    zim_wr_free (&t.wr);
    zim_receipts_destroy (&t.r);
    zim_inbox_destroy (&t.inbox);
    zim_db_test_destroy (&t.db, &dir);
    if (verbose)
        zsys_info ("receipts: marks both sides, push records removed on read, the list");
}
