/*  zim_convs.c: users' conversations (see zim_convs.h). States and totals
    are cached per write transaction (zim_txcache, as zim_seqs does);
    zim_convs_finish writes the changed ones and moves their list entries.
*/
#include "store/zim_convs.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "store/zim_txcache.h"
#include "msg/zim_conv.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

#define S_STATE_SIZE (11 * 8) //  a state, stored
#define S_CIDX_SIZE 25        //  id, cum, pos, flags

//  One cached state ([app][uid][conv]) or total ([app][uid]); the two
//  kinds of keys never hold the same bytes (a state's has a third string).
typedef struct {
    bool total;         //  a total, not a state
    bool dirty;         //  changed: written back by zim_convs_finish
    uint64_t listed;    //  state: the last_id its list entry has (0: none)
    uint64_t value;     //  total: unread in every conversation
    zim_convstate_t st; //  state
} s_entry_t;

struct _zim_convs_t {
    const zim_dbs_t *dbs; //  the databases (borrowed)
    MDB_txn *txn;         //  the write transaction (borrowed)
    zim_txcache_t *cache; //  its states and totals
};

//  -------------------------------------------------------------------------
//  Keys and values

//  Sets k to [app][uid][conv]: a state key, the prefix of cidx entries.
static void s_key_conv (zim_key_t *k, zim_str_t app, zim_str_t uid, zim_str_t conv)
{
    zim_key_user (k, app, uid);
    zim_key_str (k, conv);
}

static void s_state_put (uint8_t *p, const zim_convstate_t *st)
{
    const uint64_t *v = &st->last_seq;
    for (int i = 0; i < 11; i++)
        zim_be64_put (p + 8 * i, v[i]);
}

static void s_state_get (const uint8_t *p, zim_convstate_t *st)
{
    uint64_t *v = &st->last_seq;
    for (int i = 0; i < 11; i++)
        v[i] = zim_be64_get (p + 8 * i);
}

//  Reads a state from dbs; *found false (zeroed) if none or unreadable.
static int s_state_load (const zim_dbs_t *dbs, MDB_txn *txn, const zim_key_t *k,
                         zim_convstate_t *st, bool *found)
{
    memset (st, 0, sizeof *st);
    MDB_val kv = zim_key_val (k), v;
    int rc = mdb_get (txn, dbs->cstate, &kv, &v);
    *found = rc == 0 && v.mv_size == S_STATE_SIZE;
    if (*found)
        s_state_get (v.mv_data, st);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int s_state_store (const zim_dbs_t *dbs, MDB_txn *txn, const zim_key_t *k,
                          const zim_convstate_t *st)
{
    uint8_t buf[S_STATE_SIZE];
    s_state_put (buf, st);
    MDB_val kv = zim_key_val (k), v = {sizeof buf, buf};
    return mdb_put (txn, dbs->cstate, &kv, &v, 0);
}

//  The list entry [app][uid] id [conv] of the state key k = [app][uid][conv]
//  into out. The uid ends where the conv's length byte is.
static void s_list_key (const uint8_t *k, size_t len, uint64_t id, zim_key_t *out)
{
    size_t user = 1 + k[0];
    user += 1 + k[user];
    memcpy (out->buf, k, user);
    zim_be64_put (out->buf + user, id);
    memcpy (out->buf + user + 8, k + user, len - user);
    out->len = len + 8;
}

//  Moves the list entry of state key k from id `from` to id `to` (0: none).
static int s_list_move (const zim_dbs_t *dbs, MDB_txn *txn, const uint8_t *k, size_t len,
                        uint64_t from, uint64_t to)
{
    zim_key_t lk;
    MDB_val kv, empty = {0, ""};
    int rc = 0;
    if (from) {
        s_list_key (k, len, from, &lk);
        kv = zim_key_val (&lk);
        rc = mdb_del (txn, dbs->crecent, &kv, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc == 0 && to) {
        s_list_key (k, len, to, &lk);
        kv = zim_key_val (&lk);
        rc = mdb_put (txn, dbs->crecent, &kv, &empty, 0);
    }
    return rc;
}

//  One entry of cidx.
typedef struct {
    uint64_t seq; //  in the user's inbox
    uint64_t id;  //  the message
    uint64_t cum; //  messages of others up to it
    uint64_t pos; //  group position
} s_msg_t;

static int s_cidx_parse (const MDB_val *k, const MDB_val *v, s_msg_t *m)
{
    if (v->mv_size != S_CIDX_SIZE)
        return -1;
    const uint8_t *p = v->mv_data;
    m->seq = zim_be64_get ((const uint8_t *)k->mv_data + k->mv_size - 8);
    m->id = zim_be64_get (p);
    m->cum = zim_be64_get (p + 8);
    m->pos = zim_be64_get (p + 16);
    return 0;
}

//  The newest entry of conv (prefix) at or below seq (a real seq, below
//  UINT64_MAX) into *m, read through cur; *found false if none. The cursor
//  stays there, so MDB_PREV walks on from it.
static int s_cidx_at (MDB_cursor *cur, const zim_key_t *prefix, uint64_t seq, s_msg_t *m,
                      bool *found)
{
    *found = false;
    assert (seq < UINT64_MAX);
    zim_key_t k = *prefix;
    zim_key_u64 (&k, seq + 1);
    MDB_val kv = zim_key_val (&k), v;
    int rc = mdb_cursor_get (cur, &kv, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get (cur, &kv, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get (cur, &kv, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    *found = zim_key_has_prefix (&kv, prefix, 8) && s_cidx_parse (&kv, &v, m) == 0;
    return 0;
}

//  -------------------------------------------------------------------------
//  The cache

zim_convs_t *zim_convs_new (zim_db_t *db)
{
    zim_convs_t *self = zim_calloc (1, sizeof *self);
    self->dbs = zim_db_dbs (db);
    self->cache = zim_txcache_new (sizeof (s_entry_t));
    return self;
}

void zim_convs_destroy (zim_convs_t **self_p)
{
    zim_convs_t *self = *self_p;
    if (!self)
        return;
    zim_txcache_destroy (&self->cache);
    free (self);
    *self_p = NULL;
}

void zim_convs_begin (zim_convs_t *self, MDB_txn *txn)
{
    self->txn = txn;
    zim_txcache_reset (self->cache);
}

//  The cached entry of key k (a state, or a total when total), loaded from
//  the transaction the first time. Call zim_txcache_reserve first. NULL
//  with *rc set on an LMDB error.
static s_entry_t *s_find (zim_convs_t *self, const zim_key_t *k, bool total, int *rc)
{
    *rc = 0;
    size_t slot;
    s_entry_t *e = zim_txcache_find (self->cache, k->buf, k->len, &slot), loaded = {.total = total};
    if (e)
        return e;
    if (total) {
        MDB_val kv = zim_key_val (k), v;
        *rc = mdb_get (self->txn, self->dbs->utotal, &kv, &v);
        if (*rc == 0 && v.mv_size == 8)
            loaded.value = zim_be64_get (v.mv_data);
        *rc = *rc == MDB_NOTFOUND ? 0 : *rc;
    } else {
        bool found;
        *rc = s_state_load (self->dbs, self->txn, k, &loaded.st, &found);
        loaded.listed = loaded.st.last_id;
    }
    if (*rc)
        return NULL;
    e = zim_txcache_add (self->cache, slot, k->buf, k->len);
    *e = loaded;
    return e;
}

//  The cached state of (app, uid, conv) and, if total is not NULL, the
//  user's total. NULL with *rc set on an LMDB error.
static s_entry_t *s_state (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv,
                           s_entry_t **total, int *rc)
{
    zim_txcache_reserve (self->cache, 2);
    zim_key_t k;
    s_key_conv (&k, app, uid, conv);
    s_entry_t *e = s_find (self, &k, false, rc);
    if (e && total) {
        zim_key_user (&k, app, uid);
        *total = s_find (self, &k, true, rc);
        if (!*total)
            return NULL;
    }
    return e;
}

//  Adds delta (may be negative) to a total, never below zero.
static void s_total_add (s_entry_t *total, int64_t delta)
{
    if (delta < 0 && (uint64_t)-delta > total->value)
        total->value = 0;
    else
        total->value += (uint64_t)delta;
    total->dirty = true;
}

int zim_convs_finish (zim_convs_t *self)
{
    int rc = 0;
    for (size_t i = 0; i < zim_txcache_size (self->cache) && rc == 0; i++) {
        const void *key;
        size_t len;
        s_entry_t *e = zim_txcache_at (self->cache, i, &key, &len);
        if (!e->dirty)
            continue;
        zim_key_t k;
        memcpy (k.buf, key, len);
        k.len = len;
        MDB_val kv = zim_key_val (&k);
        if (e->total) {
            uint8_t buf[8];
            zim_be64_put (buf, e->value);
            MDB_val v = {8, buf};
            rc = mdb_put (self->txn, self->dbs->utotal, &kv, &v, 0);
        } else {
            rc = s_state_store (self->dbs, self->txn, &k, &e->st);
            if (rc == 0 && e->listed != e->st.last_id)
                rc = s_list_move (self->dbs, self->txn, k.buf, k.len, e->listed, e->st.last_id);
            e->listed = e->st.last_id;
        }
        e->dirty = false;
    }
    return rc;
}

//  -------------------------------------------------------------------------
//  Writes

int zim_convs_note (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, uint64_t seq,
                    uint64_t id, bool mine, uint64_t pos)
{
    int rc;
    s_entry_t *total = NULL, *e = s_state (self, app, uid, conv, mine ? NULL : &total, &rc);
    if (!e)
        return rc;
    zim_convstate_t *st = &e->st;
    if (seq <= st->last_seq)
        return 0; //  seqs only grow: not a new message
    st->last_seq = seq;
    st->last_id = id;
    st->last_pos = pos;
    e->dirty = true;
    if (mine)
        return 0; //  the user's own: never unread, not in the index
    st->others++;
    s_total_add (total, 1);
    zim_key_t k;
    s_key_conv (&k, app, uid, conv);
    zim_key_u64 (&k, seq);
    uint8_t val[S_CIDX_SIZE];
    zim_be64_put (val, id);
    zim_be64_put (val + 8, st->others);
    zim_be64_put (val + 16, pos);
    val[24] = 0; //  flags, none yet
    MDB_val kv = zim_key_val (&k), v = {sizeof val, val};
    //  (Not MDB_APPEND: keys grow per user, not across the database.)
    return mdb_put (self->txn, self->dbs->cidx, &kv, &v, 0);
}

//  The moved record of a state.
static void s_moved (const zim_convstate_t *st, bool moved, zim_convs_moved_t *out)
{
    out->moved = moved;
    out->read = st->read;
    out->delivered = st->delivered;
    out->unread = st->others - st->read_others;
}

int zim_convs_mark (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, int what,
                    uint64_t value, zim_convs_moved_t *out)
{
    memset (out, 0, sizeof *out);
    int rc;
    s_entry_t *total, *e = s_state (self, app, uid, conv, &total, &rc);
    if (!e)
        return rc;
    zim_convstate_t *st = &e->st;
    if (what == ZIM_MARK_MUTE) {
        bool changed = st->muted != value;
        st->muted = value;
        e->dirty |= changed;
        s_moved (st, changed, out);
        return 0;
    }
    uint64_t seq = value < st->last_seq ? value : st->last_seq;
    uint64_t *cursor = what == ZIM_MARK_READ ? &st->read : &st->delivered;
    uint64_t was = *cursor;
    if (seq <= was) {
        s_moved (st, false, out);
        return 0;
    }
    zim_key_t prefix;
    s_key_conv (&prefix, app, uid, conv);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open (self->txn, self->dbs->cidx, &cur)))
        return rc;
    s_msg_t m;
    bool found;
    rc = s_cidx_at (cur, &prefix, seq, &m, &found);
    if (rc == 0 && found && m.seq > was) {
        *cursor = m.seq;
        if (what == ZIM_MARK_READ) {
            uint64_t unread = st->others - st->read_others;
            st->read_others = m.cum;
            st->read_pos = m.pos;
            s_total_add (total, -(int64_t)(unread - (st->others - m.cum)));
            if (st->delivered < st->read)
                st->delivered = st->read;
        }
        e->dirty = true;
        out->moved = true;
        out->peer_id = m.id; //  the newest message of others the move covered
    }
    mdb_cursor_close (cur);
    bool moved = out->moved;
    uint64_t peer_id = out->peer_id;
    s_moved (st, moved, out);
    out->peer_id = peer_id;
    return rc;
}

int zim_convs_peer_mark (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv, int what,
                         uint64_t seq, zim_convs_moved_t *out)
{
    memset (out, 0, sizeof *out);
    int rc;
    s_entry_t *e = s_state (self, app, uid, conv, NULL, &rc);
    if (!e)
        return rc;
    zim_convstate_t *st = &e->st;
    bool moved = false;
    if (what == ZIM_MARK_PEER_READ && seq > st->peer_read) {
        st->peer_read = seq;
        moved = true;
    }
    if (seq > st->peer_delivered) {
        st->peer_delivered = seq;
        moved = true;
    }
    e->dirty |= moved;
    out->moved = moved;
    out->read = st->peer_read;
    out->delivered = st->peer_delivered;
    return 0;
}

int zim_convs_state (zim_convs_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv,
                     zim_convstate_t *st, bool *found)
{
    int rc;
    s_entry_t *e = s_state (self, app, uid, conv, NULL, &rc);
    if (!e)
        return rc;
    *st = e->st;
    *found = e->st.last_seq || e->st.muted;
    return 0;
}

int zim_convs_badge (zim_convs_t *self, zim_str_t app, zim_str_t uid, uint64_t *total)
{
    zim_txcache_reserve (self->cache, 1);
    zim_key_t k;
    zim_key_user (&k, app, uid);
    int rc;
    s_entry_t *e = s_find (self, &k, true, &rc);
    *total = e ? e->value : 0;
    return rc;
}

//  -------------------------------------------------------------------------
//  Reads and the purge

int zim_convs_page (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                    uint64_t limit, uint64_t before, size_t max_bytes, zim_wr_t *items,
                    uint32_t *count, bool *more)
{
    *count = 0;
    *more = false;
    zim_key_t prefix, k;
    zim_key_user (&prefix, app, uid);
    k = prefix;
    zim_key_u64 (&k, before ? before : UINT64_MAX);
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, dbs->crecent, &cur);
    if (rc)
        return rc;
    MDB_val kv = zim_key_val (&k), v;
    rc = mdb_cursor_get (cur, &kv, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get (cur, &kv, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get (cur, &kv, &v, MDB_LAST);
    zim_wr_t one;
    zim_wr_init (&one);
    while (rc == 0 && kv.mv_size > prefix.len + 9 &&
           memcmp (kv.mv_data, prefix.buf, prefix.len) == 0) {
        const uint8_t *p = (const uint8_t *)kv.mv_data + prefix.len;
        uint64_t id = zim_be64_get (p);
        zim_str_t conv = {(const char *)p + 9, p[8]};
        if (conv.len + prefix.len + 9 != kv.mv_size)
            break; //  not a list key of this user (cannot happen short of corruption)
        if (*count == limit) {
            *more = true;
            break;
        }
        zim_convstate_t st;
        bool found;
        zim_key_t sk;
        s_key_conv (&sk, app, uid, conv);
        uint8_t idb[8];
        zim_be64_put (idb, id);
        MDB_val rk = {8, idb}, rv;
        zim_msgrec_t rec;
        if ((rc = s_state_load (dbs, txn, &sk, &st, &found)))
            break;
        int got = mdb_get (txn, dbs->msgs, &rk, &rv);
        if (got && got != MDB_NOTFOUND) {
            rc = got;
            break;
        }
        if (found && got == 0 && zim_msgrec_parse (&rv, &rec) == 0) {
            zim_sconv_t c = {conv,
                             id,
                             rec.from,
                             rec.ts,
                             rec.body,
                             st.last_seq,
                             st.others - st.read_others,
                             st.read,
                             st.delivered,
                             st.peer_read,
                             st.peer_delivered,
                             st.muted};
            zim_wr_reset (&one);
            zim_sconv_pack (&one, &c);
            if (*count > 0 && items->size + one.size > max_bytes) {
                *more = true;
                break;
            }
            zim_wr_raw (items, one.data, one.size);
            (*count)++;
        }
        rc = mdb_cursor_get (cur, &kv, &v, MDB_PREV);
    }
    zim_wr_free (&one);
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int zim_convs_forget (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t uid,
                      zim_str_t conv, uint64_t seq, uint64_t id)
{
    zim_key_t sk, ek;
    s_key_conv (&sk, app, uid, conv);
    ek = sk;
    zim_key_u64 (&ek, seq);
    MDB_val kv = zim_key_val (&ek), v;
    s_msg_t m;
    bool entry = false; //  a message of others: it has an index entry
    int rc = mdb_get (txn, dbs->cidx, &kv, &v);
    if (rc == 0) {
        entry = s_cidx_parse (&kv, &v, &m) == 0;
        rc = mdb_del (txn, dbs->cidx, &kv, NULL);
    }
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    zim_convstate_t st;
    bool found;
    if ((rc = s_state_load (dbs, txn, &sk, &st, &found)) || !found)
        return rc;
    uint64_t unread = st.others - st.read_others;
    if (st.last_id == id) {
        //  The newest is gone, so is everything before it: the conversation
        //  leaves the list, and its unread the badge.
        rc = s_list_move (dbs, txn, sk.buf, sk.len, id, 0);
        st.read_others = st.others;
        if (rc == 0 && st.muted) {
            st.last_id = 0;
            rc = s_state_store (dbs, txn, &sk, &st);
        } else if (rc == 0) {
            kv = zim_key_val (&sk);
            rc = mdb_del (txn, dbs->cstate, &kv, NULL);
        }
    } else if (entry && seq > st.read) {
        st.read = seq;
        st.read_others = m.cum;
        st.read_pos = m.pos;
        if (st.delivered < seq)
            st.delivered = seq;
        rc = s_state_store (dbs, txn, &sk, &st);
    }
    uint64_t gone = unread - (st.others - st.read_others);
    if (rc || !gone)
        return rc;
    zim_key_t tk;
    zim_key_user (&tk, app, uid);
    kv = zim_key_val (&tk);
    uint64_t total = 0;
    rc = mdb_get (txn, dbs->utotal, &kv, &v);
    if (rc == 0 && v.mv_size == 8)
        total = zim_be64_get (v.mv_data);
    else if (rc && rc != MDB_NOTFOUND)
        return rc;
    uint8_t buf[8];
    zim_be64_put (buf, total > gone ? total - gone : 0);
    v = (MDB_val){8, buf};
    return mdb_put (txn, dbs->utotal, &kv, &v, 0);
}

int zim_convs_readers (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t conv,
                       const zim_str_t *members, size_t n, uint64_t pos, uint64_t *count)
{
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        zim_key_t k;
        s_key_conv (&k, app, members[i], conv);
        zim_convstate_t st;
        bool found;
        int rc = s_state_load (dbs, txn, &k, &st, &found);
        if (rc)
            return rc;
        if (found && st.read && st.read_pos >= pos)
            (*count)++;
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Notes a message from -> to in conv p:from:to in one transaction: the
//  sender's copy at fseq, the recipient's at tseq (0: none).
static void s_test_msg (zim_db_t *db, zim_convs_t *convs, uint64_t id, const char *from,
                        const char *to, uint64_t fseq, uint64_t tseq)
{
    char conv[ZIM_CONV_MAX + 1];
    zim_conv_peer (zim_str (from), zim_str (to), conv, sizeof conv);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_convs_begin (convs, txn);
    zim_str_t app = zim_str ("demo");
    if (fseq)
        assert (zim_convs_note (convs, app, zim_str (from), zim_str (conv), fseq, id, true, 0) ==
                0);
    if (tseq)
        assert (zim_convs_note (convs, app, zim_str (to), zim_str (conv), tseq, id, false, 0) == 0);
    assert (zim_convs_finish (convs) == 0 && mdb_txn_commit (txn) == 0);
}

//  One mark in its own transaction.
static zim_convs_moved_t s_test_mark (zim_db_t *db, zim_convs_t *convs, const char *uid,
                                      const char *conv, int what, uint64_t value)
{
    MDB_txn *txn;
    zim_convs_moved_t out;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_convs_begin (convs, txn);
    if (what >= ZIM_MARK_PEER_READ)
        assert (zim_convs_peer_mark (convs, zim_str ("demo"), zim_str (uid), zim_str (conv), what,
                                     value, &out) == 0);
    else
        assert (zim_convs_mark (convs, zim_str ("demo"), zim_str (uid), zim_str (conv), what, value,
                                &out) == 0);
    assert (zim_convs_finish (convs) == 0 && mdb_txn_commit (txn) == 0);
    return out;
}

//  uid's state of conv, its badge, and its list's size, from a read.
static zim_convstate_t s_test_state (zim_db_t *db, zim_convs_t *convs, const char *uid,
                                     const char *conv, uint64_t *badge, uint32_t *listed)
{
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_convs_begin (convs, txn);
    zim_convstate_t st;
    bool found, more;
    assert (zim_convs_state (convs, zim_str ("demo"), zim_str (uid), zim_str (conv), &st, &found) ==
            0);
    assert (zim_convs_badge (convs, zim_str ("demo"), zim_str (uid), badge) == 0);
    zim_wr_t items;
    zim_wr_init (&items);
    assert (zim_convs_page (zim_db_dbs (db), txn, zim_str ("demo"), zim_str (uid), 100, 0, 1 << 20,
                            &items, listed, &more) == 0);
    zim_wr_free (&items);
    mdb_txn_abort (txn);
    return st;
}

//  Writes the message records of the test (the list reads them).
static void s_test_records (zim_db_t *db, const uint64_t *ids, const char *const *from,
                            const char *const *to, size_t n)
{
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    for (size_t i = 0; i < n; i++) {
        zim_append_item_t it = {ids[i],          1000 + ids[i], zim_str ("demo"), zim_str (from[i]),
                                zim_str (to[i]), zim_str ("c"), {"\xa1x", 2},     ZIM_SIDE_BOTH};
        uint8_t idb[8];
        zim_be64_put (idb, ids[i]);
        MDB_val k = {8, idb}, v = {zim_msgrec_size (&it), NULL};
        assert (mdb_put (txn, zim_db_dbs (db)->msgs, &k, &v, MDB_RESERVE) == 0);
        zim_msgrec_write (v.mv_data, &it, 1, 1);
    }
    assert (mdb_txn_commit (txn) == 0);
}

void zim_convs_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 22);
    zim_convs_t *convs = zim_convs_new (db);
    const char *ab = "p:alice:bob";
    uint64_t badge;
    uint32_t listed;

    //  bob's inbox: 1 a->b, 2 b->a, 3 a->b, 4 c->b (another conv), 5 a->b.
    s_test_msg (db, convs, 101, "alice", "bob", 1, 1);
    s_test_msg (db, convs, 102, "bob", "alice", 2, 2);
    s_test_msg (db, convs, 103, "alice", "bob", 3, 3);
    s_test_msg (db, convs, 104, "carol", "bob", 1, 4);
    s_test_msg (db, convs, 105, "alice", "bob", 4, 5);
    const uint64_t ids[] = {101, 102, 103, 104, 105, 106};
    const char *from[] = {"alice", "bob", "alice", "carol", "alice", "bob"};
    const char *to[] = {"bob", "alice", "bob", "bob", "bob", "alice"};
    s_test_records (db, ids, from, to, 6);
    zim_convstate_t st = s_test_state (db, convs, "bob", ab, &badge, &listed);
    assert (st.last_seq == 5 && st.last_id == 105 && st.others == 3 && st.read == 0);
    assert (badge == 4 && listed == 2);
    //  alice's own messages are never unread for her.
    st = s_test_state (db, convs, "alice", ab, &badge, &listed);
    assert (st.others == 1 && badge == 1 && listed == 1);

    //  bob reads up to his seq 4 (carol's message, another conv): his
    //  cursor names the newest message of the conv below it, 3; alice's
    //  message 103 is the newest of hers it covered.
    zim_convs_moved_t mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_READ, 4);
    assert (mv.moved && mv.read == 3 && mv.delivered == 3 && mv.unread == 1 && mv.peer_id == 103);
    st = s_test_state (db, convs, "bob", ab, &badge, &listed);
    assert (badge == 2 && st.read_others == 2);
    //  Backwards or the same: nothing moves; delivered below read neither.
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_READ, 2);
    assert (!mv.moved && mv.read == 3 && mv.peer_id == 0);
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_DELIVERED, 3);
    assert (!mv.moved && mv.delivered == 3);
    //  delivered alone; then read beyond the head: capped at it.
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_DELIVERED, 5);
    assert (mv.moved && mv.delivered == 5 && mv.read == 3 && mv.peer_id == 105);
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_READ, 1000);
    assert (mv.moved && mv.read == 5 && mv.unread == 0 && mv.peer_id == 105);
    st = s_test_state (db, convs, "bob", ab, &badge, &listed);
    assert (badge == 1 && st.read == 5);
    //  bob answers, then reads up to his own message: his own are not
    //  what a cursor names, so nothing moves (and alice hears nothing).
    s_test_msg (db, convs, 106, "bob", "alice", 6, 5);
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_READ, 6);
    assert (!mv.moved && mv.read == 5 && mv.unread == 0 && mv.peer_id == 0);
    //  alice read bob's 106 (bob's seq 6): bob's peer cursors move, once.
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_PEER_READ, 6);
    assert (mv.moved && mv.read == 6 && mv.delivered == 6);
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_PEER_DELIVERED, 2);
    assert (!mv.moved && mv.read == 6);
    //  A conversation without messages: nothing to read; mute works.
    mv = s_test_mark (db, convs, "bob", "p:bob:dave", ZIM_MARK_READ, 3);
    assert (!mv.moved && mv.read == 0);
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_MUTE, 5000);
    assert (mv.moved);
    mv = s_test_mark (db, convs, "bob", ab, ZIM_MARK_MUTE, 5000);
    assert (!mv.moved);

    //  The list, most recent first, paged by last message id.
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    zim_wr_t items;
    zim_wr_init (&items);
    uint32_t count;
    bool more;
    assert (zim_convs_page (zim_db_dbs (db), txn, zim_str ("demo"), zim_str ("bob"), 1, 0, 1 << 20,
                            &items, &count, &more) == 0);
    assert (count == 1 && more);
    zim_rd_t rd;
    zim_rd_init (&rd, items.data, items.size);
    zim_sconv_t c;
    assert (zim_sconv_unpack (&rd, &c) == 0);
    assert (zim_str_eq (c.conv, ab) && c.id == 106 && c.seq == 6 && c.unread == 0);
    assert (c.peer_read == 6 && c.muted == 5000 && zim_str_eq (c.from, "bob") && c.ts == 1106);
    zim_wr_reset (&items);
    assert (zim_convs_page (zim_db_dbs (db), txn, zim_str ("demo"), zim_str ("bob"), 10, c.id,
                            1 << 20, &items, &count, &more) == 0);
    assert (count == 1 && !more);
    zim_rd_init (&rd, items.data, items.size);
    assert (zim_sconv_unpack (&rd, &c) == 0 && zim_str_eq (c.conv, "p:bob:carol") && c.unread == 1);
    zim_wr_free (&items);
    mdb_txn_abort (txn);

    //  Retention: alice's 101 and carol's 104 go. 104 was the newest of
    //  p:bob:carol: that conversation leaves bob's list, its unread his
    //  badge. alice's list keeps p:alice:bob.
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    const zim_dbs_t *dbs = zim_db_dbs (db);
    zim_str_t app = zim_str ("demo");
    assert (zim_convs_forget (dbs, txn, app, zim_str ("bob"), zim_str (ab), 1, 101) == 0);
    assert (zim_convs_forget (dbs, txn, app, zim_str ("alice"), zim_str (ab), 1, 101) == 0);
    assert (zim_convs_forget (dbs, txn, app, zim_str ("bob"), zim_str ("p:bob:carol"), 4, 104) ==
            0);
    assert (zim_convs_forget (dbs, txn, app, zim_str ("carol"), zim_str ("p:bob:carol"), 1, 104) ==
            0);
    assert (mdb_txn_commit (txn) == 0);
    st = s_test_state (db, convs, "bob", ab, &badge, &listed);
    assert (badge == 0 && listed == 1 && st.last_id == 106);
    st = s_test_state (db, convs, "carol", "p:bob:carol", &badge, &listed);
    assert (listed == 0 && st.last_seq == 0);
    //  An unread message that expires counts as read: alice has bob's 102
    //  and 106 unread; 102 goes.
    st = s_test_state (db, convs, "alice", ab, &badge, &listed);
    assert (badge == 2 && st.others == 2);
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    assert (zim_convs_forget (dbs, txn, app, zim_str ("alice"), zim_str (ab), 2, 102) == 0);
    assert (mdb_txn_commit (txn) == 0);
    st = s_test_state (db, convs, "alice", ab, &badge, &listed);
    assert (badge == 1 && st.read == 2 && st.others - st.read_others == 1);

    //  Groups: positions, and the readers of one.
    const char *members[] = {"m1", "m2", "m3"};
    zim_str_t mv3[3];
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_convs_begin (convs, txn);
    for (int i = 0; i < 3; i++) {
        mv3[i] = zim_str (members[i]);
        for (uint64_t p = 1; p <= 4; p++)
            assert (zim_convs_note (convs, app, mv3[i], zim_str ("g:team"), p, 200 + p, i == 0,
                                    p) == 0);
    }
    assert (zim_convs_finish (convs) == 0 && mdb_txn_commit (txn) == 0);
    s_test_mark (db, convs, "m2", "g:team", ZIM_MARK_READ, 3);
    s_test_mark (db, convs, "m3", "g:team", ZIM_MARK_READ, 1);
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    uint64_t readers;
    assert (zim_convs_readers (dbs, txn, app, zim_str ("g:team"), mv3, 3, 1, &readers) == 0);
    assert (readers == 2);
    assert (zim_convs_readers (dbs, txn, app, zim_str ("g:team"), mv3, 3, 2, &readers) == 0);
    assert (readers == 1);
    mdb_txn_abort (txn);

    //  Aborted work leaves nothing behind; the cache starts afresh.
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_convs_begin (convs, txn);
    assert (zim_convs_note (convs, app, zim_str ("bob"), zim_str (ab), 7, 107, false, 0) == 0);
    mdb_txn_abort (txn);
    st = s_test_state (db, convs, "bob", ab, &badge, &listed);
    assert (st.last_seq == 6 && badge == 0);

    zim_convs_destroy (&convs);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("convs: cursors forward only, unread exact, list paged, retention, readers");
}
