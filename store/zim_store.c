/*  zim_store.c: the store actor. Drains everything the brokers have sent
    into one LMDB write transaction (group commit), commits and syncs once,
    then answers; reads are served after the commit from a read transaction.
    The key layout of every database is documented in zim_store.h.
*/
#include "store/zim_store.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#define S_MAP_SIZE (4ULL << 30) //  default LMDB map size
#define S_MAX_BATCH 4096        //  default APPEND items per transaction
#define S_RETENTION 604800      //  default retention, seconds
#define S_PURGE_INTERVAL 60     //  default seconds between purge runs
#define S_PURGE_MAX 10000       //  records deleted per purge transaction
#define S_DRAIN_MAX 4096        //  backbone messages taken per drain
#define S_PAGE_DEFAULT 100      //  READ limit 0 means this
#define S_PAGE_MAX 1000         //  READ limits are capped here
#define S_PAGE_BYTES (1 << 20)  //  bodies per PAGE, about
#define S_NOSYNC_INTERVAL 1000  //  ms between syncs with sync = none
#define S_GROW_TRIES 4          //  map doublings tried for one transaction
#define S_REC_HEAD 28           //  fixed part of a message record
#define S_VERSION 1             //  layout version in meta

typedef enum { S_SYNC_BATCH, S_SYNC_ALWAYS, S_SYNC_NONE } s_sync_t;

//  A key under construction: length-prefixed strings and big-endian ints.
typedef struct {
    uint8_t buf[256]; //  longest key: [app][conv] id = 1+64+1+131+8
    size_t len;       //  bytes used
} s_key_t;

//  One received backbone message, kept until the drain is answered.
typedef struct {
    zmq_msg_t rid;  //  ROUTER routing id of the sender
    zmq_msg_t body; //  the msgpack message
    int kind;       //  ZIM_MSG_APPEND, _READ or _SETCURSOR
    uint64_t req;   //  APPEND: request id to echo
    size_t first;   //  APPEND: index of its first result
    size_t count;   //  APPEND: number of items
} s_pending_t;

//  One (app, uid) seq counter cached for the current write transaction.
typedef struct {
    uint64_t hash;    //  FNV-1a of the key
    uint64_t seq;     //  last seq given (in this transaction)
    uint32_t gen;     //  valid when equal to the table's generation
    uint32_t key_off; //  key bytes in seq_keys
    uint16_t key_len; //  key length
    bool dirty;       //  seq changed: write it back before commit
} s_seqent_t;

//  A parsed message record (views into LMDB memory or a copy).
typedef struct {
    uint64_t ts;         //  server time, ms since the epoch
    uint64_t from_seq;   //  seq in the sender's inbox
    uint64_t to_seq;     //  seq in the recipient's inbox, 0 if to == from
    zim_str_t app, from; //  app and sender
    zim_str_t to, cid;   //  recipient and client message id
    zim_str_t body;      //  raw msgpack value
} s_rec_t;

//  Counters of one write attempt, added to the stats only if it commits.
typedef struct {
    uint64_t appended;   //  items stored
    uint64_t duplicates; //  items answered as duplicates
    uint64_t cursors;    //  cursors moved
    uint64_t items;      //  APPEND items in the transaction
    bool wrote;          //  anything was put
} s_unit_t;

typedef struct {
    zsock_t *pipe;        //  actor pipe
    zsock_t *router;      //  ROUTER for brokers, NULL until BIND
    char *name;           //  node name for logs
    char *data;           //  environment directory
    s_sync_t sync;        //  fsync policy
    uint64_t map_size;    //  LMDB map size in bytes
    uint64_t max_batch;   //  APPEND items per write transaction
    uint64_t retention;   //  seconds; 0 keeps messages forever
    uint64_t purge_every; //  seconds between purge runs
    int port;             //  TCP port of the last BIND
    bool started;         //  START succeeded
    bool terminated;      //  $TERM received

    MDB_env *env; //  the environment, after START
    //  The databases (zim_store.h has their layout).
    MDB_dbi db_msgs, db_inbox, db_hist, db_idem, db_seqs, db_cursors, db_meta;
    MDB_txn *txn;         //  write transaction in progress, or NULL
    MDB_txn *rtxn;        //  read transaction, reset between drains
    uint64_t last_id;     //  greatest message id committed
    uint64_t last_id_txn; //  greatest message id in the transaction

    s_seqent_t *seq_tab;   //  open-addressing table, seq_cap slots
    size_t seq_cap;        //  slots, a power of two
    uint32_t *seq_used;    //  slots in use this generation
    size_t seq_nused;      //  entries in seq_used
    uint32_t seq_gen;      //  current generation
    uint8_t *seq_keys;     //  key bytes of the entries
    size_t seq_keys_size;  //  bytes used in seq_keys
    size_t seq_keys_alloc; //  bytes allocated

    s_pending_t *pend;            //  S_DRAIN_MAX received messages
    size_t npend;                 //  in use
    zim_appended_item_t *results; //  one per APPEND item of the drain
    size_t nresults;              //  in use
    size_t results_alloc;         //  allocated
    zim_item_t *items;            //  S_PAGE_MAX items of one PAGE
    zim_wr_t wr;                  //  reply writer, reused
    s_unit_t unit;                //  counters of the write attempt

    bool dirty;             //  sync = none: written since the last sync
    uint64_t next_sync;     //  mono ms of the next sync (sync = none)
    uint64_t next_purge;    //  mono ms of the next purge run
    uint64_t last_bad_log;  //  mono ms of the last bad-message log line
    uint64_t last_drop_log; // mono ms of the last reply-drop log line

    struct {
        uint64_t appended, duplicates, commits, fsyncs, reads, cursors, errors, bad_messages,
            batch_max, purged, reply_drops;
    } stats; //  counters reported by STATS
} s_store_t;

//  -------------------------------------------------------------------------
//  Keys and records

static void s_put_u64 (uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t s_get_u64 (const void *data)
{
    const uint8_t *p = data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

//  Appends a length-prefixed string; callers pass validated lengths.
static void s_key_str (s_key_t *k, const char *ptr, size_t len)
{
    assert (len < 256 && k->len + 1 + len <= sizeof k->buf);
    k->buf[k->len++] = (uint8_t)len;
    if (len)
        memcpy (k->buf + k->len, ptr, len);
    k->len += len;
}

static void s_key_u64 (s_key_t *k, uint64_t v)
{
    assert (k->len + 8 <= sizeof k->buf);
    s_put_u64 (k->buf + k->len, v);
    k->len += 8;
}

//  Key [app][uid]: the prefix of inbox entries, and the seqs key.
static void s_key_user (s_key_t *k, zim_str_t app, zim_str_t uid)
{
    k->len = 0;
    s_key_str (k, app.ptr, app.len);
    s_key_str (k, uid.ptr, uid.len);
}

//  Key [app][conv]: the prefix of a peer conversation's history entries.
static void s_key_conv (s_key_t *k, zim_str_t app, zim_str_t a, zim_str_t b)
{
    char conv[2 + ZIM_ID_MAX + 1 + ZIM_ID_MAX + 1];
    int len = zim_conv_peer (a, b, conv, sizeof conv);
    assert (len > 0);
    k->len = 0;
    s_key_str (k, app.ptr, app.len);
    s_key_str (k, conv, (size_t)len);
}

static bool s_key_has_prefix (const MDB_val *key, const s_key_t *prefix, size_t tail)
{
    return key->mv_size == prefix->len + tail &&
           memcmp (key->mv_data, prefix->buf, prefix->len) == 0;
}

//  Parses a message record; returns 0 or -1 if it is corrupt.
static int s_rec_parse (const MDB_val *v, s_rec_t *r)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < S_REC_HEAD)
        return -1;
    size_t alen = p[24], flen = p[25], tlen = p[26], clen = p[27];
    if (S_REC_HEAD + alen + flen + tlen + clen > v->mv_size)
        return -1;
    r->ts = s_get_u64 (p);
    r->from_seq = s_get_u64 (p + 8);
    r->to_seq = s_get_u64 (p + 16);
    const char *s = (const char *)p + S_REC_HEAD;
    r->app = (zim_str_t){s, alen};
    r->from = (zim_str_t){s + alen, flen};
    r->to = (zim_str_t){s + alen + flen, tlen};
    r->cid = (zim_str_t){s + alen + flen + tlen, clen};
    size_t head = S_REC_HEAD + alen + flen + tlen + clen;
    r->body = (zim_str_t){(const char *)p + head, v->mv_size - head};
    return 0;
}

static bool s_str_same (zim_str_t a, zim_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp (a.ptr, b.ptr, a.len) == 0);
}

static uint64_t s_hash (const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

//  -------------------------------------------------------------------------
//  Seq counters cached for one write transaction, so a user with many
//  messages in one batch costs one read and one write of its counter.

static void s_seq_reset (s_store_t *self)
{
    if (++self->seq_gen == 0) {
        memset (self->seq_tab, 0, self->seq_cap * sizeof *self->seq_tab);
        self->seq_gen = 1;
    }
    self->seq_nused = 0;
    self->seq_keys_size = 0;
}

//  Makes room for n more entries, so slot indices stay valid meanwhile.
static void s_seq_reserve (s_store_t *self, size_t n)
{
    if ((self->seq_nused + n) * 2 <= self->seq_cap)
        return;
    size_t cap = self->seq_cap ? self->seq_cap * 2 : 1024;
    while ((self->seq_nused + n) * 2 > cap)
        cap *= 2;
    s_seqent_t *tab = zim_calloc (cap, sizeof *tab);
    uint32_t *used = zim_calloc (cap, sizeof *used);
    for (size_t u = 0; u < self->seq_nused; u++) {
        s_seqent_t *e = &self->seq_tab[self->seq_used[u]];
        size_t i = e->hash & (cap - 1);
        while (tab[i].gen == self->seq_gen)
            i = (i + 1) & (cap - 1);
        tab[i] = *e;
        used[u] = (uint32_t)i;
    }
    free (self->seq_tab);
    free (self->seq_used);
    self->seq_tab = tab;
    self->seq_used = used;
    self->seq_cap = cap;
}

//  Finds or loads the counter of key; sets *slot. Returns 0 or an LMDB
//  error. Call s_seq_reserve first.
static int s_seq_find (s_store_t *self, const s_key_t *key, size_t *slot)
{
    uint64_t h = s_hash (key->buf, key->len);
    size_t i = h & (self->seq_cap - 1);
    while (self->seq_tab[i].gen == self->seq_gen) {
        s_seqent_t *e = &self->seq_tab[i];
        if (e->hash == h && e->key_len == key->len &&
            memcmp (self->seq_keys + e->key_off, key->buf, key->len) == 0) {
            *slot = i;
            return 0;
        }
        i = (i + 1) & (self->seq_cap - 1);
    }
    MDB_val k = {key->len, (void *)key->buf}, v;
    uint64_t seq = 0;
    int rc = mdb_get (self->txn, self->db_seqs, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        seq = s_get_u64 (v.mv_data);
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (self->seq_keys_size + key->len > self->seq_keys_alloc) {
        self->seq_keys_alloc = (self->seq_keys_alloc + key->len) * 2;
        self->seq_keys = zim_realloc (self->seq_keys, self->seq_keys_alloc);
    }
    memcpy (self->seq_keys + self->seq_keys_size, key->buf, key->len);
    self->seq_tab[i] = (s_seqent_t){
        h, seq, self->seq_gen, (uint32_t)self->seq_keys_size, (uint16_t)key->len, false};
    self->seq_keys_size += key->len;
    self->seq_used[self->seq_nused++] = (uint32_t)i;
    *slot = i;
    return 0;
}

//  Writes the changed counters back; returns 0 or an LMDB error.
static int s_seq_flush (s_store_t *self)
{
    for (size_t u = 0; u < self->seq_nused; u++) {
        s_seqent_t *e = &self->seq_tab[self->seq_used[u]];
        if (!e->dirty)
            continue;
        uint8_t val[8];
        s_put_u64 (val, e->seq);
        MDB_val k = {e->key_len, self->seq_keys + e->key_off}, v = {8, val};
        int rc = mdb_put (self->txn, self->db_seqs, &k, &v, 0);
        if (rc)
            return rc;
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Writes

//  Stores one APPEND item in the write transaction and fills *res.
//  Returns 0 (the item's outcome is in res->status) or an LMDB error that
//  must abort the transaction.
static int s_append_one (s_store_t *self, const zim_append_item_t *it, zim_appended_item_t *res)
{
    *res = (zim_appended_item_t){ZIM_EVALUE, it->id, 0, 0, it->ts};
    self->unit.items++;
    if (!zim_uid_valid (it->app) || !zim_uid_valid (it->from) || !zim_uid_valid (it->to) ||
        !zim_cid_valid (it->cid) || it->body.len == 0)
        return 0;

    //  Idempotency: (app, from, cid) seen before answers the original.
    s_key_t ik;
    ik.len = 0;
    s_key_str (&ik, it->app.ptr, it->app.len);
    s_key_str (&ik, it->from.ptr, it->from.len);
    s_key_str (&ik, it->cid.ptr, it->cid.len);
    MDB_val k = {ik.len, ik.buf}, v;
    int rc = mdb_get (self->txn, self->db_idem, &k, &v);
    if (rc == 0 && v.mv_size == 8) {
        uint8_t idb[8];
        memcpy (idb, v.mv_data, 8);
        MDB_val rk = {8, idb}, rv;
        s_rec_t rec;
        rc = mdb_get (self->txn, self->db_msgs, &rk, &rv);
        if (rc == 0 && s_rec_parse (&rv, &rec) == 0) {
            *res = (zim_appended_item_t){ZIM_APPEND_DUPLICATE, s_get_u64 (idb), rec.from_seq,
                                         rec.to_seq, rec.ts};
            self->unit.duplicates++;
            return 0;
        }
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        //  A key without its record (cannot happen short of corruption):
        //  store the message anew, which rewrites the key.
    } else if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;

    //  Next seqs, not taken until the record is in. A cross-shard item
    //  (sides 1 or 2) takes a seq in the inbox of one side only; the other
    //  shard writes the other side.
    bool to_self = s_str_same (it->from, it->to);
    bool do_from = to_self || (it->sides & ZIM_SIDE_FROM);
    bool do_to = !to_self && (it->sides & ZIM_SIDE_TO);
    s_key_t fk, tk;
    size_t fslot = 0, tslot = 0;
    uint64_t from_seq = 0, to_seq = 0;
    s_seq_reserve (self, 2);
    if (do_from) {
        s_key_user (&fk, it->app, it->from);
        if ((rc = s_seq_find (self, &fk, &fslot)))
            return rc;
        from_seq = self->seq_tab[fslot].seq + 1;
    }
    if (do_to) {
        s_key_user (&tk, it->app, it->to);
        if ((rc = s_seq_find (self, &tk, &tslot)))
            return rc;
        to_seq = self->seq_tab[tslot].seq + 1;
    }

    //  The record, written in place (MDB_RESERVE), appended when the id is
    //  the greatest so far, which time-ordered ids usually are.
    uint8_t idb[8];
    s_put_u64 (idb, it->id);
    size_t head = S_REC_HEAD + it->app.len + it->from.len + it->to.len + it->cid.len;
    MDB_val rk = {8, idb}, rv = {head + it->body.len, NULL};
    if (it->id > self->last_id_txn) {
        rc = mdb_put (self->txn, self->db_msgs, &rk, &rv, MDB_RESERVE | MDB_APPEND);
        if (rc == MDB_KEYEXIST)
            rc = mdb_put (self->txn, self->db_msgs, &rk, &rv, MDB_RESERVE | MDB_NOOVERWRITE);
    } else
        rc = mdb_put (self->txn, self->db_msgs, &rk, &rv, MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        zsys_warning ("store %s: message id %" PRIu64 " already stored under another cid; item "
                      "refused (are two brokers using the same node id?)",
                      self->name, it->id);
        return 0;
    }
    if (rc)
        return rc;
    self->unit.wrote = true;
    uint8_t *p = rv.mv_data;
    s_put_u64 (p, it->ts);
    s_put_u64 (p + 8, from_seq);
    s_put_u64 (p + 16, to_seq);
    p[24] = (uint8_t)it->app.len;
    p[25] = (uint8_t)it->from.len;
    p[26] = (uint8_t)it->to.len;
    p[27] = (uint8_t)it->cid.len;
    p += S_REC_HEAD;
    memcpy (p, it->app.ptr, it->app.len);
    p += it->app.len;
    memcpy (p, it->from.ptr, it->from.len);
    p += it->from.len;
    memcpy (p, it->to.ptr, it->to.len);
    p += it->to.len;
    memcpy (p, it->cid.ptr, it->cid.len);
    p += it->cid.len;
    memcpy (p, it->body.ptr, it->body.len);
    if (it->id > self->last_id_txn)
        self->last_id_txn = it->id;
    if (do_from) {
        self->seq_tab[fslot].seq = from_seq;
        self->seq_tab[fslot].dirty = true;
    }
    if (do_to) {
        self->seq_tab[tslot].seq = to_seq;
        self->seq_tab[tslot].dirty = true;
    }

    //  Inbox entries, history entry, idempotency key.
    MDB_val idv = {8, idb};
    if (do_from) {
        s_key_u64 (&fk, from_seq);
        k = (MDB_val){fk.len, fk.buf};
        if ((rc = mdb_put (self->txn, self->db_inbox, &k, &idv, 0)))
            return rc;
    }
    if (do_to) {
        s_key_u64 (&tk, to_seq);
        k = (MDB_val){tk.len, tk.buf};
        if ((rc = mdb_put (self->txn, self->db_inbox, &k, &idv, 0)))
            return rc;
    }
    s_key_t hk;
    s_key_conv (&hk, it->app, it->from, it->to);
    s_key_u64 (&hk, it->id);
    k = (MDB_val){hk.len, hk.buf};
    MDB_val empty = {0, idb};
    if ((rc = mdb_put (self->txn, self->db_hist, &k, &empty, 0)))
        return rc;
    k = (MDB_val){ik.len, ik.buf};
    if ((rc = mdb_put (self->txn, self->db_idem, &k, &idv, 0)))
        return rc;

    *res = (zim_appended_item_t){ZIM_APPEND_STORED, it->id, from_seq, to_seq, it->ts};
    self->unit.appended++;
    return 0;
}

//  Applies one SETCURSOR: cursor = max (old, min (seq, last seq)).
//  Returns 0 or an LMDB error.
static int s_cursor_one (s_store_t *self, const zim_setcursor_t *m)
{
    if (!zim_uid_valid (m->app) || !zim_uid_valid (m->uid))
        return 0;
    s_key_t uk;
    size_t slot;
    s_seq_reserve (self, 1);
    s_key_user (&uk, m->app, m->uid);
    int rc = s_seq_find (self, &uk, &slot);
    if (rc)
        return rc;
    uint64_t seq = m->seq < self->seq_tab[slot].seq ? m->seq : self->seq_tab[slot].seq;
    s_key_t ck = uk;
    s_key_str (&ck, m->device.ptr, m->device.len);
    MDB_val k = {ck.len, ck.buf}, v;
    rc = mdb_get (self->txn, self->db_cursors, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (rc == 0 && v.mv_size == 8 && s_get_u64 (v.mv_data) >= seq)
        return 0;
    uint8_t val[8];
    s_put_u64 (val, seq);
    v = (MDB_val){8, val};
    if ((rc = mdb_put (self->txn, self->db_cursors, &k, &v, 0)))
        return rc;
    self->unit.wrote = true;
    self->unit.cursors++;
    return 0;
}

//  Applies pending[lo..hi) (only item `only` of an APPEND when only >= 0)
//  in the write transaction. Returns 0 or an LMDB error.
static int s_apply (s_store_t *self, size_t lo, size_t hi, int64_t only)
{
    for (size_t p = lo; p < hi; p++) {
        s_pending_t *pend = &self->pend[p];
        zim_rd_t rd;
        int kind, rc = 0;
        uint32_t fields;
        zim_rd_init (&rd, zmq_msg_data (&pend->body), zmq_msg_size (&pend->body));
        //  Decoding cannot fail: s_accept checked the whole message.
        int bad = zim_msg_kind (&rd, &kind, &fields);
        assert (bad == 0);
        if (kind == ZIM_MSG_APPEND) {
            zim_append_t m;
            bad = zim_append_decode (&rd, fields, &m);
            assert (bad == 0);
            for (size_t i = 0; i < pend->count; i++) {
                zim_append_item_t item;
                bad = zim_append_item_next (&m.items, &item);
                assert (bad == 0);
                if (only >= 0 && (size_t)only != i) {
                    if ((size_t)only < i)
                        break;
                    continue;
                }
                if ((rc = s_append_one (self, &item, &self->results[pend->first + i])))
                    return rc;
            }
        } else if (kind == ZIM_MSG_SETCURSOR) {
            zim_setcursor_t m;
            bad = zim_setcursor_decode (&rd, fields, &m);
            assert (bad == 0);
            if ((rc = s_cursor_one (self, &m)))
                return rc;
        }
    }
    return 0;
}

//  Doubles the map after MDB_MAP_FULL; returns 0 or -1.
static int s_grow_map (s_store_t *self)
{
    if (self->rtxn) {
        mdb_txn_abort (self->rtxn);
        self->rtxn = NULL;
    }
    uint64_t size = self->map_size * 2;
    int rc = mdb_env_set_mapsize (self->env, (size_t)size);
    if (rc) {
        zsys_error ("store %s: store full at map_size %" PRIu64 " and cannot grow it (%s): "
                    "raise store/map_size and restart",
                    self->name, self->map_size, mdb_strerror (rc));
        return -1;
    }
    MDB_envinfo info;
    mdb_env_info (self->env, &info);
    zsys_warning ("store %s: store full at map_size %" PRIu64 ", grew it to %zu: raise "
                  "store/map_size to at least that",
                  self->name, self->map_size, info.me_mapsize);
    self->map_size = info.me_mapsize;
    return 0;
}

//  One write transaction over pending[lo..hi) (see s_apply): begin, apply,
//  commit; on a full map grow it and try again; on failure answer every item
//  of the range with ZIM_ESTORE.
static void s_unit (s_store_t *self, size_t lo, size_t hi, int64_t only)
{
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        self->unit = (s_unit_t){0};
        self->last_id_txn = self->last_id;
        s_seq_reset (self);
        rc = mdb_txn_begin (self->env, NULL, 0, &self->txn);
        if (rc) {
            self->txn = NULL;
            break;
        }
        rc = s_apply (self, lo, hi, only);
        if (rc == 0)
            rc = s_seq_flush (self);
        if (rc == 0)
            rc = mdb_txn_commit (self->txn);
        else
            mdb_txn_abort (self->txn);
        self->txn = NULL;
        if (rc == 0) {
            self->last_id = self->last_id_txn;
            self->stats.appended += self->unit.appended;
            self->stats.duplicates += self->unit.duplicates;
            self->stats.cursors += self->unit.cursors;
            self->stats.commits++;
            if (self->unit.items > self->stats.batch_max)
                self->stats.batch_max = self->unit.items;
            if (self->unit.wrote) {
                if (self->sync == S_SYNC_NONE)
                    self->dirty = true;
                else
                    self->stats.fsyncs++;
            }
            return;
        }
        if (rc != MDB_MAP_FULL || attempt >= S_GROW_TRIES || s_grow_map (self))
            break;
    }
    //  Nothing of this transaction is stored: say so for every item.
    size_t failed = 0;
    for (size_t p = lo; p < hi; p++) {
        s_pending_t *pend = &self->pend[p];
        if (pend->kind != ZIM_MSG_APPEND)
            continue;
        for (size_t i = 0; i < pend->count; i++)
            if (only < 0 || (size_t)only == i) {
                zim_appended_item_t *res = &self->results[pend->first + i];
                res->status = ZIM_ESTORE;
                res->from_seq = res->to_seq = 0;
                failed++;
            }
    }
    self->stats.errors++;
    if (rc == MDB_MAP_FULL)
        zsys_error ("store %s: store full at map_size %" PRIu64 ", %zu messages refused: raise "
                    "store/map_size",
                    self->name, self->map_size, failed);
    else if (rc == MDB_TXN_FULL)
        zsys_error ("store %s: transaction too large, %zu messages refused: lower "
                    "store/max_batch",
                    self->name, failed);
    else
        zsys_error ("store %s: write to %s failed (%s), %zu messages refused: check the disk "
                    "(space, permissions, I/O errors)",
                    self->name, self->data, mdb_strerror (rc), failed);
}

//  Writes everything the drain took: one transaction for all of it, or with
//  sync = always one per message (each committed and fsynced).
static void s_write (s_store_t *self)
{
    if (self->sync != S_SYNC_ALWAYS) {
        s_unit (self, 0, self->npend, -1);
        return;
    }
    for (size_t p = 0; p < self->npend; p++) {
        s_pending_t *pend = &self->pend[p];
        if (pend->kind == ZIM_MSG_APPEND)
            for (size_t i = 0; i < pend->count; i++)
                s_unit (self, p, p + 1, (int64_t)i);
        else if (pend->kind == ZIM_MSG_SETCURSOR)
            s_unit (self, p, p + 1, -1);
    }
}

//  -------------------------------------------------------------------------
//  Reads

//  Fills self->items from the inbox of m->uid after seq from. Returns the
//  count (and *more) or -1 with rc set.
static int s_read_sync (s_store_t *self, const zim_read_t *m, size_t limit, bool *more, int *rc)
{
    s_key_t prefix;
    s_key_user (&prefix, m->app, m->uid);
    uint64_t from = 0;
    if (m->from >= 0)
        from = (uint64_t)m->from;
    else {
        s_key_t ck = prefix;
        s_key_str (&ck, m->device.ptr, m->device.len);
        MDB_val k = {ck.len, ck.buf}, v;
        *rc = mdb_get (self->rtxn, self->db_cursors, &k, &v);
        if (*rc == 0 && v.mv_size == 8)
            from = s_get_u64 (v.mv_data);
        else if (*rc != 0 && *rc != MDB_NOTFOUND)
            return -1;
    }
    if (from == UINT64_MAX)
        return 0;
    MDB_cursor *cur;
    if ((*rc = mdb_cursor_open (self->rtxn, self->db_inbox, &cur)))
        return -1;
    s_key_t start = prefix;
    s_key_u64 (&start, from + 1);
    MDB_val k = {start.len, start.buf}, v;
    int count = 0;
    size_t bytes = 0;
    *rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    while (*rc == 0 && s_key_has_prefix (&k, &prefix, 8)) {
        if ((size_t)count == limit)
            break;
        MDB_val rk = v, rv;
        s_rec_t rec;
        if (v.mv_size != 8)
            goto next;
        int r = mdb_get (self->rtxn, self->db_msgs, &rk, &rv);
        if (r == MDB_NOTFOUND || (r == 0 && s_rec_parse (&rv, &rec)))
            goto next; //  a dangling entry: skip it rather than stall the reader
        if (r) {
            *rc = r;
            break;
        }
        if (count > 0 && bytes + rec.body.len > S_PAGE_BYTES)
            break;
        bytes += rec.body.len;
        self->items[count++] = (zim_item_t){s_get_u64 ((uint8_t *)k.mv_data + prefix.len),
                                            s_get_u64 (v.mv_data),
                                            rec.ts,
                                            rec.from,
                                            rec.to,
                                            rec.body};
    next:
        *rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    *more = *rc == 0 && s_key_has_prefix (&k, &prefix, 8);
    mdb_cursor_close (cur);
    if (*rc != 0 && *rc != MDB_NOTFOUND)
        return -1;
    return count;
}

//  Fills self->items from the conversation of m->uid and m->peer, ids
//  below from (0: newest), newest first. Returns the count or -1.
static int s_read_history (s_store_t *self, const zim_read_t *m, size_t limit, bool *more, int *rc)
{
    s_key_t prefix;
    s_key_conv (&prefix, m->app, m->uid, m->peer);
    uint64_t before = m->from > 0 ? (uint64_t)m->from : UINT64_MAX;
    MDB_cursor *cur;
    if ((*rc = mdb_cursor_open (self->rtxn, self->db_hist, &cur)))
        return -1;
    s_key_t start = prefix;
    s_key_u64 (&start, before);
    MDB_val k = {start.len, start.buf}, v;
    *rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    if (*rc == 0)
        *rc = mdb_cursor_get (cur, &k, &v, MDB_PREV);
    else if (*rc == MDB_NOTFOUND)
        *rc = mdb_cursor_get (cur, &k, &v, MDB_LAST);
    int count = 0;
    size_t bytes = 0;
    while (*rc == 0 && s_key_has_prefix (&k, &prefix, 8)) {
        if ((size_t)count == limit)
            break;
        uint8_t idb[8];
        memcpy (idb, (uint8_t *)k.mv_data + prefix.len, 8);
        MDB_val rk = {8, idb}, rv;
        s_rec_t rec;
        int r = mdb_get (self->rtxn, self->db_msgs, &rk, &rv);
        if (r == MDB_NOTFOUND || (r == 0 && s_rec_parse (&rv, &rec)))
            goto next;
        if (r) {
            *rc = r;
            break;
        }
        if (count > 0 && bytes + rec.body.len > S_PAGE_BYTES)
            break;
        bytes += rec.body.len;
        self->items[count++] = (zim_item_t){0, s_get_u64 (idb), rec.ts, rec.from, rec.to, rec.body};
    next:
        *rc = mdb_cursor_get (cur, &k, &v, MDB_PREV);
    }
    *more = *rc == 0 && s_key_has_prefix (&k, &prefix, 8);
    mdb_cursor_close (cur);
    if (*rc != 0 && *rc != MDB_NOTFOUND)
        return -1;
    return count;
}

//  Sends a reply held in self->wr to the sender of pend.
static void s_reply (s_store_t *self, s_pending_t *pend)
{
    void *sock = zsock_resolve (self->router);
    if (zmq_send (sock, zmq_msg_data (&pend->rid), zmq_msg_size (&pend->rid),
                  ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1) {
        self->stats.reply_drops++;
        uint64_t now = zim_mono_us () / 1000;
        if (now - self->last_drop_log >= 1000) {
            self->last_drop_log = now;
            zsys_warning ("store %s: cannot answer a broker (%s); %" PRIu64
                          " answers dropped so far: the broker is gone or not reading",
                          self->name, zmq_strerror (zmq_errno ()), self->stats.reply_drops);
        }
    }
}

//  Answers one READ from the read transaction.
static void s_serve_read (s_store_t *self, s_pending_t *pend)
{
    zim_rd_t rd;
    int kind, rc = 0, count = 0;
    uint32_t fields;
    zim_read_t m;
    zim_rd_init (&rd, zmq_msg_data (&pend->body), zmq_msg_size (&pend->body));
    int bad = zim_msg_kind (&rd, &kind, &fields) || zim_read_decode (&rd, fields, &m);
    assert (!bad);
    size_t limit = m.limit == 0 ? S_PAGE_DEFAULT : m.limit > S_PAGE_MAX ? S_PAGE_MAX : m.limit;
    bool more = false;
    int64_t status = 0;
    if (!zim_uid_valid (m.app) || !zim_uid_valid (m.uid) ||
        (m.mode == ZIM_READ_HISTORY && !zim_uid_valid (m.peer)))
        status = ZIM_EVALUE;
    else {
        if (m.mode == ZIM_READ_SYNC)
            count = s_read_sync (self, &m, limit, &more, &rc);
        else
            count = s_read_history (self, &m, limit, &more, &rc);
        if (count < 0) {
            status = ZIM_ESTORE;
            self->stats.errors++;
            zsys_error ("store %s: read failed (%s): check the disk", self->name,
                        mdb_strerror (rc));
        }
    }
    if (status) {
        count = 0;
        more = false;
    }
    //  Encoding copies every value out of LMDB memory before the read
    //  transaction ends.
    zim_wr_reset (&self->wr);
    zim_page_begin (&self->wr, m.req, status, more, (uint32_t)count);
    for (int i = 0; i < count; i++)
        zim_page_item (&self->wr, &self->items[i]);
    self->stats.reads++;
    s_reply (self, pend);
}

//  Serves every READ of the drain from one read transaction.
static void s_read_all (s_store_t *self)
{
    int rc;
    if (self->rtxn)
        rc = mdb_txn_renew (self->rtxn);
    else
        rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &self->rtxn);
    if (rc) {
        if (self->rtxn) {
            mdb_txn_abort (self->rtxn);
            self->rtxn = NULL;
        }
        self->stats.errors++;
        zsys_error ("store %s: cannot start a read transaction (%s)", self->name,
                    mdb_strerror (rc));
        for (size_t p = 0; p < self->npend; p++)
            if (self->pend[p].kind == ZIM_MSG_READ) {
                zim_rd_t rd;
                int kind;
                uint32_t fields;
                zim_read_t m;
                zim_rd_init (&rd, zmq_msg_data (&self->pend[p].body),
                             zmq_msg_size (&self->pend[p].body));
                if (zim_msg_kind (&rd, &kind, &fields) || zim_read_decode (&rd, fields, &m))
                    continue;
                zim_wr_reset (&self->wr);
                zim_page_begin (&self->wr, m.req, ZIM_ESTORE, false, 0);
                s_reply (self, &self->pend[p]);
            }
        return;
    }
    for (size_t p = 0; p < self->npend; p++)
        if (self->pend[p].kind == ZIM_MSG_READ)
            s_serve_read (self, &self->pend[p]);
    mdb_txn_reset (self->rtxn);
}

//  -------------------------------------------------------------------------
//  The drain

//  Counts and logs (at most once a second) a malformed backbone message.
static void s_bad (s_store_t *self, const char *why)
{
    self->stats.bad_messages++;
    uint64_t now = zim_mono_us () / 1000;
    if (now - self->last_bad_log >= 1000) {
        self->last_bad_log = now;
        zsys_warning ("store %s: dropped a malformed backbone message (%s); %" PRIu64
                      " so far: check the sender's version",
                      self->name, why, self->stats.bad_messages);
    }
}

//  Checks a received message completely; sets kind, req and count.
//  Returns 0, or -1 with *why set.
static int s_accept (s_pending_t *pend, const char **why)
{
    zim_rd_t rd;
    uint32_t fields;
    zim_rd_init (&rd, zmq_msg_data (&pend->body), zmq_msg_size (&pend->body));
    *why = "not a backbone message";
    if (zim_msg_kind (&rd, &pend->kind, &fields))
        goto malformed;
    if (pend->kind == ZIM_MSG_APPEND) {
        zim_append_t m;
        *why = "bad APPEND";
        if (zim_append_decode (&rd, fields, &m))
            goto malformed;
        for (uint32_t i = 0; i < m.nitems; i++) {
            zim_append_item_t item;
            if (zim_append_item_next (&m.items, &item))
                goto malformed;
        }
        if (zim_rd_left (&m.items))
            goto malformed;
        pend->req = m.req;
        pend->count = m.nitems;
    } else if (pend->kind == ZIM_MSG_READ) {
        zim_read_t m;
        *why = "bad READ";
        if (zim_read_decode (&rd, fields, &m) || zim_rd_left (&rd))
            goto malformed;
    } else if (pend->kind == ZIM_MSG_SETCURSOR) {
        zim_setcursor_t m;
        *why = "bad SETCURSOR";
        if (zim_setcursor_decode (&rd, fields, &m) || zim_rd_left (&rd))
            goto malformed;
    } else {
        *why = "unexpected message kind";
        goto malformed;
    }
    return 0;
malformed:
    return -1;
}

//  Takes everything waiting on the ROUTER (up to max_batch APPEND items),
//  writes it in one go, then answers: APPENDEDs after the commit, READs
//  from a read transaction that sees it.
static void s_drain (s_store_t *self)
{
    void *sock = zsock_resolve (self->router);
    uint64_t max_items = self->sync == S_SYNC_ALWAYS ? 1 : self->max_batch;
    size_t items = 0;
    bool writes = false, reads = false;
    self->npend = 0;
    self->nresults = 0;
    while (items < max_items && self->npend < S_DRAIN_MAX) {
        s_pending_t *pend = &self->pend[self->npend];
        zmq_msg_init (&pend->rid);
        zmq_msg_init (&pend->body);
        if (zmq_msg_recv (&pend->rid, sock, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&pend->rid);
            zmq_msg_close (&pend->body);
            break;
        }
        //  ROUTER delivers a routing id then the whole message at once.
        const char *why = "not one frame";
        bool ok = zmq_msg_more (&pend->rid) && zmq_msg_recv (&pend->body, sock, 0) != -1;
        if (ok && zmq_msg_more (&pend->body)) {
            ok = false;
            zmq_msg_t extra;
            zmq_msg_init (&extra);
            while (zmq_msg_recv (&extra, sock, 0) != -1 && zmq_msg_more (&extra))
                ;
            zmq_msg_close (&extra);
        }
        if (ok && s_accept (pend, &why) == 0) {
            if (pend->kind == ZIM_MSG_APPEND) {
                pend->first = self->nresults;
                self->nresults += pend->count;
                items += pend->count;
                writes = true;
            } else if (pend->kind == ZIM_MSG_SETCURSOR)
                writes = true;
            else
                reads = true;
            self->npend++;
        } else {
            s_bad (self, why);
            zmq_msg_close (&pend->rid);
            zmq_msg_close (&pend->body);
        }
    }
    if (self->nresults > self->results_alloc) {
        self->results_alloc = self->nresults * 2;
        free (self->results);
        self->results = zim_malloc (self->results_alloc * sizeof *self->results);
    }
    if (writes)
        s_write (self);
    for (size_t p = 0; p < self->npend; p++) {
        s_pending_t *pend = &self->pend[p];
        if (pend->kind != ZIM_MSG_APPEND)
            continue;
        zim_wr_reset (&self->wr);
        zim_appended_begin (&self->wr, pend->req, (uint32_t)pend->count);
        for (size_t i = 0; i < pend->count; i++)
            zim_appended_item (&self->wr, &self->results[pend->first + i]);
        s_reply (self, pend);
    }
    if (reads)
        s_read_all (self);
    for (size_t p = 0; p < self->npend; p++) {
        zmq_msg_close (&self->pend[p].rid);
        zmq_msg_close (&self->pend[p].body);
    }
    self->npend = 0;
}

//  -------------------------------------------------------------------------
//  Retention

//  Deletes up to S_PURGE_MAX expired messages in one transaction; returns
//  true if more may be waiting.
static bool s_purge (s_store_t *self)
{
    uint64_t now = zim_now_ms ();
    if (self->retention == 0 || now / 1000 <= self->retention)
        return false;
    uint64_t cutoff = now - self->retention * 1000;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_cursor_open (txn, self->db_msgs, &cur);
    size_t n = 0;
    while (rc == 0 && n < S_PURGE_MAX) {
        MDB_val k, v;
        rc = mdb_cursor_get (cur, &k, &v, MDB_FIRST);
        if (rc)
            break;
        //  Copy what locates the other entries: deletes may move pages.
        s_rec_t rec;
        uint8_t idb[8];
        if (k.mv_size != 8 || s_rec_parse (&v, &rec)) {
            rc = mdb_cursor_del (cur, 0);
            n++;
            continue;
        }
        if (rec.ts >= cutoff)
            break;
        memcpy (idb, k.mv_data, 8);
        s_key_t ik, fk, tk, hk;
        ik.len = 0;
        s_key_str (&ik, rec.app.ptr, rec.app.len);
        s_key_str (&ik, rec.from.ptr, rec.from.len);
        s_key_str (&ik, rec.cid.ptr, rec.cid.len);
        s_key_user (&fk, rec.app, rec.from);
        s_key_u64 (&fk, rec.from_seq);
        s_key_user (&tk, rec.app, rec.to);
        s_key_u64 (&tk, rec.to_seq);
        s_key_conv (&hk, rec.app, rec.from, rec.to);
        s_key_u64 (&hk, s_get_u64 (idb));
        uint64_t to_seq = rec.to_seq;
        if ((rc = mdb_cursor_del (cur, 0)))
            break;
        MDB_val dk = {ik.len, ik.buf}, dv;
        //  The key goes only if it still names this message.
        rc = mdb_get (txn, self->db_idem, &dk, &dv);
        if (rc == 0 && dv.mv_size == 8 && memcmp (dv.mv_data, idb, 8) == 0)
            rc = mdb_del (txn, self->db_idem, &dk, NULL);
        if (rc == 0 || rc == MDB_NOTFOUND) {
            dk = (MDB_val){fk.len, fk.buf};
            rc = mdb_del (txn, self->db_inbox, &dk, NULL);
        }
        if ((rc == 0 || rc == MDB_NOTFOUND) && to_seq) {
            dk = (MDB_val){tk.len, tk.buf};
            rc = mdb_del (txn, self->db_inbox, &dk, NULL);
        }
        if (rc == 0 || rc == MDB_NOTFOUND) {
            dk = (MDB_val){hk.len, hk.buf};
            rc = mdb_del (txn, self->db_hist, &dk, NULL);
        }
        if (rc == MDB_NOTFOUND)
            rc = 0;
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
    if (rc) {
        self->stats.errors++;
        zsys_error ("store %s: retention purge failed (%s): check the disk", self->name,
                    mdb_strerror (rc));
        return false;
    }
    if (n > 0) {
        self->stats.purged += n;
        self->stats.commits++;
        if (self->sync == S_SYNC_NONE)
            self->dirty = true;
        else
            self->stats.fsyncs++;
    }
    return n == S_PURGE_MAX;
}

//  -------------------------------------------------------------------------
//  Lifecycle and commands

//  Opens the databases and reads the greatest message id, in txn.
//  Returns 0 or an LMDB error with *what naming the step; -1 for a store
//  of another layout version.
static int s_open_dbs (s_store_t *self, MDB_txn *txn, const char **what)
{
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"msgs", &self->db_msgs}, {"inbox", &self->db_inbox}, {"hist", &self->db_hist},
               {"idem", &self->db_idem}, {"seqs", &self->db_seqs},   {"cursors", &self->db_cursors},
               {"meta", &self->db_meta}};
    int rc = 0;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        *what = dbs[i].name;
        if ((rc = mdb_dbi_open (txn, dbs[i].name, MDB_CREATE, dbs[i].dbi)))
            return rc;
    }
    *what = "meta";
    MDB_val k = {7, "version"}, v;
    uint8_t ver[8];
    rc = mdb_get (txn, self->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        s_put_u64 (ver, S_VERSION);
        v = (MDB_val){8, ver};
        rc = mdb_put (txn, self->db_meta, &k, &v, 0);
    } else if (rc == 0 && (v.mv_size != 8 || s_get_u64 (v.mv_data) != S_VERSION))
        return -1;
    if (rc)
        return rc;
    *what = "msgs";
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open (txn, self->db_msgs, &cur)))
        return rc;
    rc = mdb_cursor_get (cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        self->last_id = s_get_u64 (k.mv_data);
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Opens the environment and the databases; returns 0 or -1 (logged).
static int s_start (s_store_t *self)
{
    if (self->started)
        return 0;
    if (!self->router) {
        zsys_error ("store %s: START without BIND: nothing could reach the store", self->name);
        return -1;
    }
    if (!self->data) {
        zsys_error ("store %s: no data directory: SET data DIR before START", self->name);
        return -1;
    }
    if (zsys_dir_create ("%s", self->data)) {
        zsys_error ("store %s: cannot create data directory %s: %s", self->name, self->data,
                    strerror (errno));
        return -1;
    }
    unsigned flags = MDB_NOTLS;
    if (self->sync == S_SYNC_NONE)
        flags |= MDB_NOSYNC | MDB_NOMETASYNC;
    MDB_txn *txn = NULL;
    const char *what = "mdb_env_create";
    int rc = mdb_env_create (&self->env);
    if (rc == 0) {
        what = "mdb_env_set_maxdbs";
        rc = mdb_env_set_maxdbs (self->env, 8);
    }
    if (rc == 0) {
        what = "map_size";
        rc = mdb_env_set_mapsize (self->env, (size_t)self->map_size);
    }
    if (rc == 0) {
        what = "mdb_env_open";
        rc = mdb_env_open (self->env, self->data, flags, 0640);
    }
    if (rc == 0) {
        what = "mdb_txn_begin";
        rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    }
    if (rc == 0)
        rc = s_open_dbs (self, txn, &what);
    if (rc == 0) {
        what = "mdb_txn_commit";
        rc = mdb_txn_commit (txn);
        txn = NULL;
    }
    if (rc) {
        if (rc == -1)
            zsys_error ("store %s: %s holds a store of another layout version: use the zim "
                        "version that wrote it",
                        self->name, self->data);
        else
            zsys_error ("store %s: cannot open the store in %s (%s: %s): check the path, its "
                        "permissions and free space",
                        self->name, self->data, what, mdb_strerror (rc));
        if (txn)
            mdb_txn_abort (txn);
        if (self->env)
            mdb_env_close (self->env);
        self->env = NULL;
        return -1;
    }
    MDB_envinfo info;
    mdb_env_info (self->env, &info);
    self->map_size = info.me_mapsize;
    uint64_t now = zim_mono_us () / 1000;
    self->next_sync = now + S_NOSYNC_INTERVAL;
    self->next_purge = now + self->purge_every * 1000;
    self->started = true;
    zsys_info ("store %s: opened %s (sync %s, map_size %" PRIu64 ")", self->name, self->data,
               self->sync == S_SYNC_BATCH    ? "batch"
               : self->sync == S_SYNC_ALWAYS ? "always"
                                             : "none",
               self->map_size);
    return 0;
}

static void s_set (s_store_t *self, const char *key, const char *value)
{
    uint64_t n;
    if (!key || !value)
        zsys_warning ("store %s: SET needs a key and a value", self->name);
    else if (streq (key, "name")) {
        free (self->name);
        self->name = zim_strdup (value);
    } else if (self->started &&
               (streq (key, "data") || streq (key, "sync") || streq (key, "map_size")))
        zsys_warning ("store %s: SET %s after START is ignored", self->name, key);
    else if (streq (key, "data")) {
        free (self->data);
        self->data = zim_strdup (value);
    } else if (streq (key, "sync")) {
        if (streq (value, "batch"))
            self->sync = S_SYNC_BATCH;
        else if (streq (value, "always"))
            self->sync = S_SYNC_ALWAYS;
        else if (streq (value, "none"))
            self->sync = S_SYNC_NONE;
        else
            zsys_warning ("store %s: sync must be always, batch or none, not '%s'; kept the "
                          "previous value",
                          self->name, value);
    } else if (streq (key, "map_size") && zim_parse_u64 (value, &n) == 0 && n >= 65536)
        self->map_size = n;
    else if (streq (key, "max_batch") && zim_parse_u64 (value, &n) == 0 && n >= 1)
        self->max_batch = n;
    else if (streq (key, "retention") && zim_parse_u64 (value, &n) == 0)
        self->retention = n;
    else if (streq (key, "purge_interval") && zim_parse_u64 (value, &n) == 0 && n >= 1)
        self->purge_every = n;
    else
        zsys_warning ("store %s: ignored setting %s = '%s' (unknown key or bad value)", self->name,
                      key, value);
}

static void s_stats (s_store_t *self)
{
    uint64_t used = 0;
    if (self->env) {
        MDB_envinfo info;
        MDB_stat st;
        mdb_env_info (self->env, &info);
        mdb_env_stat (self->env, &st);
        used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    }
    zstr_sendf (
        self->pipe,
        "{\"appended\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"commits\":%" PRIu64
        ",\"fsyncs\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"cursors\":%" PRIu64 ",\"errors\":%" PRIu64
        ",\"bad_messages\":%" PRIu64 ",\"batch_max\":%" PRIu64 ",\"purged\":%" PRIu64
        ",\"reply_drops\":%" PRIu64 ",\"map_size\":%" PRIu64 ",\"map_used\":%" PRIu64 "}",
        self->stats.appended, self->stats.duplicates, self->stats.commits, self->stats.fsyncs,
        self->stats.reads, self->stats.cursors, self->stats.errors, self->stats.bad_messages,
        self->stats.batch_max, self->stats.purged, self->stats.reply_drops, self->map_size, used);
}

static void s_handle_pipe (s_store_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;
        return;
    }
    char *cmd = zmsg_popstr (msg);
    if (!cmd)
        zsys_warning ("store %s: empty command", self->name);
    else if (streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "SET")) {
        char *key = zmsg_popstr (msg), *value = zmsg_popstr (msg);
        s_set (self, key, value);
        free (key);
        free (value);
    } else if (streq (cmd, "BIND")) {
        char *endpoint = zmsg_popstr (msg);
        if (!self->router) {
            self->router = zsock_new (ZMQ_ROUTER);
            assert (self->router);
            zsock_set_linger (self->router, 0);
            zsock_set_rcvhwm (self->router, 10000);
            zsock_set_sndhwm (self->router, 10000);
            zsock_set_router_mandatory (self->router, 1);
        }
        int port = endpoint ? zsock_bind (self->router, "%s", endpoint) : -1;
        if (port == -1)
            zsys_error ("store %s: cannot bind %s: %s", self->name, endpoint ? endpoint : "(none)",
                        zmq_strerror (zmq_errno ()));
        else
            self->port = port;
        zsock_signal (self->pipe, port == -1 ? 1 : 0);
        free (endpoint);
    } else if (streq (cmd, "START"))
        zsock_signal (self->pipe, s_start (self) ? 1 : 0);
    else if (streq (cmd, "PORT"))
        zstr_sendf (self->pipe, "%d", self->port);
    else if (streq (cmd, "STATS"))
        s_stats (self);
    else
        zsys_warning ("store %s: unknown command %s", self->name, cmd);
    free (cmd);
    zmsg_destroy (&msg);
}

//  Runs the timers that are due: the sync of sync = none, and retention.
static void s_timers (s_store_t *self)
{
    uint64_t now = zim_mono_us () / 1000;
    if (self->dirty && now >= self->next_sync) {
        int rc = mdb_env_sync (self->env, 1);
        if (rc) {
            self->stats.errors++;
            zsys_error ("store %s: sync failed (%s): check the disk", self->name,
                        mdb_strerror (rc));
        } else
            self->stats.fsyncs++;
        self->dirty = false;
        self->next_sync = now + S_NOSYNC_INTERVAL;
    }
    if (self->retention && now >= self->next_purge) {
        bool more = s_purge (self);
        self->next_purge = zim_mono_us () / 1000 + (more ? 10 : self->purge_every * 1000);
    }
}

//  Milliseconds until the next timer, for zmq_poll.
static long s_timeout (s_store_t *self)
{
    if (!self->started)
        return -1;
    uint64_t now = zim_mono_us () / 1000, next = UINT64_MAX;
    if (self->dirty)
        next = self->next_sync;
    if (self->retention && self->next_purge < next)
        next = self->next_purge;
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (long)(next - now);
}

void zim_store_actor (zsock_t *pipe, void *args)
{
    s_store_t *self = zim_calloc (1, sizeof *self);
    self->pipe = pipe;
    self->name = zim_strdup ("store");
    self->sync = S_SYNC_BATCH;
    self->map_size = S_MAP_SIZE;
    self->max_batch = S_MAX_BATCH;
    self->retention = S_RETENTION;
    self->purge_every = S_PURGE_INTERVAL;
    self->pend = zim_calloc (S_DRAIN_MAX, sizeof *self->pend);
    self->items = zim_calloc (S_PAGE_MAX, sizeof *self->items);
    zim_wr_init (&self->wr);
    zsock_signal (pipe, 0);

    while (!self->terminated) {
        zmq_pollitem_t items[2] = {
            {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
            {self->router ? zsock_resolve (self->router) : NULL, 0, ZMQ_POLLIN, 0}};
        int n = self->started ? 2 : 1;
        if (zmq_poll (items, n, s_timeout (self)) == -1) {
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        if (n == 2 && (items[1].revents & ZMQ_POLLIN) && !self->terminated)
            s_drain (self);
        if (self->started)
            s_timers (self);
    }

    if (self->started) {
        //  Take what already arrived, so nothing received is left unanswered.
        for (int i = 0; i < 16; i++) {
            zmq_pollitem_t item = {zsock_resolve (self->router), 0, ZMQ_POLLIN, 0};
            if (zmq_poll (&item, 1, 0) <= 0 || !(item.revents & ZMQ_POLLIN))
                break;
            s_drain (self);
        }
        if (self->rtxn)
            mdb_txn_abort (self->rtxn);
        int rc = mdb_env_sync (self->env, 1);
        if (rc)
            zsys_error ("store %s: final sync failed (%s): check the disk", self->name,
                        mdb_strerror (rc));
    }
    if (self->env)
        mdb_env_close (self->env);
    zsock_destroy (&self->router);
    zim_wr_free (&self->wr);
    free (self->pend);
    free (self->items);
    free (self->results);
    free (self->seq_tab);
    free (self->seq_used);
    free (self->seq_keys);
    free (self->name);
    free (self->data);
    free (self);
}

//  -------------------------------------------------------------------------
//  Selftest

//  What the test keeps of one PAGE item.
typedef struct {
    uint64_t seq, id, ts;
    char from[ZIM_ID_MAX + 1], to[ZIM_ID_MAX + 1];
    char body[64]; //  the body when it is a short msgpack string
} s_test_item_t;

//  A test message to append.
typedef struct {
    uint64_t id, ts;
    const char *from, *to, *cid, *text; //  text: body as a msgpack string
    size_t big;                         //  when > 0: a bin body of this size
} s_test_msg_t;

static zactor_t *s_test_start (const char *dir, const char *sync, const char *map_size,
                               const char *retention, char *endpoint, size_t size)
{
    zactor_t *store = zactor_new (zim_store_actor, NULL);
    zstr_sendx (store, "SET", "name", "test", NULL);
    zstr_sendx (store, "SET", "data", dir, NULL);
    zstr_sendx (store, "SET", "sync", sync, NULL);
    if (map_size)
        zstr_sendx (store, "SET", "map_size", map_size, NULL);
    if (retention) {
        zstr_sendx (store, "SET", "retention", retention, NULL);
        zstr_sendx (store, "SET", "purge_interval", "1", NULL);
    }
    zstr_sendx (store, "BIND", "tcp://127.0.0.1:*", NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "PORT", NULL);
    char *port = zstr_recv (store);
    snprintf (endpoint, size, "tcp://127.0.0.1:%s", port);
    free (port);
    return store;
}

static zsock_t *s_test_peer (const char *endpoint)
{
    zsock_t *peer = zsock_new_dealer (endpoint);
    assert (peer);
    zsock_set_rcvtimeo (peer, 5000);
    return peer;
}

//  Reads one counter from STATS.
static uint64_t s_test_stat (zactor_t *store, const char *name)
{
    zstr_sendx (store, "STATS", NULL);
    char *json = zstr_recv (store);
    char pattern[64];
    snprintf (pattern, sizeof pattern, "\"%s\":", name);
    char *at = strstr (json, pattern);
    assert (at);
    uint64_t v = strtoull (at + strlen (pattern), NULL, 10);
    free (json);
    return v;
}

static void s_test_send (zsock_t *peer, zim_wr_t *wr)
{
    int rc = zmq_send (zsock_resolve (peer), wr->data, wr->size, 0);
    assert (rc == (int)wr->size);
}

//  Sends one APPEND of msgs[0..n).
static void s_test_append_sides (zsock_t *peer, uint64_t req, const s_test_msg_t *msgs, size_t n,
                                 uint64_t sides)
{
    zim_wr_t wr, body;
    zim_wr_init (&wr);
    zim_wr_init (&body);
    zim_append_begin (&wr, req, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        zim_wr_reset (&body);
        if (msgs[i].big) {
            char *blob = zim_calloc (1, msgs[i].big);
            zim_wr_bin (&body, (zim_str_t){blob, msgs[i].big});
            free (blob);
        } else
            zim_wr_cstr (&body, msgs[i].text);
        zim_append_item_t item = {msgs[i].id,
                                  msgs[i].ts,
                                  zim_str ("demo"),
                                  zim_str (msgs[i].from),
                                  zim_str (msgs[i].to),
                                  zim_str (msgs[i].cid),
                                  {body.data, body.size},
                                  sides};
        zim_append_item (&wr, &item);
    }
    s_test_send (peer, &wr);
    zim_wr_free (&wr);
    zim_wr_free (&body);
}

static void s_test_append (zsock_t *peer, uint64_t req, const s_test_msg_t *msgs, size_t n)
{
    s_test_append_sides (peer, req, msgs, n, ZIM_SIDE_BOTH);
}

//  Receives one APPENDED for req with n results into res.
static void s_test_appended (zsock_t *peer, uint64_t req, zim_appended_item_t *res, size_t n)
{
    zframe_t *frame = zframe_recv (peer);
    assert (frame);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_appended_t m;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_APPENDED);
    assert (zim_appended_decode (&rd, fields, &m) == 0);
    assert (m.req == req && m.nitems == n);
    for (size_t i = 0; i < n; i++)
        assert (zim_appended_item_next (&m.items, &res[i]) == 0);
    zframe_destroy (&frame);
}

static void s_test_read (zsock_t *peer, uint64_t req, uint64_t mode, const char *uid,
                         const char *device, int64_t from, uint64_t limit, const char *peer_uid)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_read_t r = {req,  mode,  zim_str ("demo"),  zim_str (uid), zim_str (device),
                    from, limit, zim_str (peer_uid)};
    zim_read_encode (&wr, &r);
    s_test_send (peer, &wr);
    zim_wr_free (&wr);
}

//  Receives one PAGE for req; returns its item count (copied into out).
static size_t s_test_page (zsock_t *peer, uint64_t req, s_test_item_t *out, size_t max, bool *more,
                           int64_t *status)
{
    zframe_t *frame = zframe_recv (peer);
    assert (frame);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_page_t m;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PAGE);
    assert (zim_page_decode (&rd, fields, &m) == 0);
    assert (m.req == req && m.nitems <= max);
    *more = m.more;
    if (status)
        *status = m.status;
    else
        assert (m.status == 0);
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_item_t item;
        assert (zim_page_item_next (&m.items, &item) == 0);
        s_test_item_t *t = &out[i];
        memset (t, 0, sizeof *t);
        t->seq = item.seq;
        t->id = item.id;
        t->ts = item.ts;
        zim_str_copy (item.from, t->from, sizeof t->from);
        zim_str_copy (item.to, t->to, sizeof t->to);
        zim_rd_t brd;
        zim_str_t text;
        zim_rd_init (&brd, item.body.ptr, item.body.len);
        if (zim_rd_str (&brd, &text) == 0)
            zim_str_copy (text, t->body, sizeof t->body);
    }
    size_t n = m.nitems;
    zframe_destroy (&frame);
    return n;
}

//  Makes a fresh directory under the current one; caller owns the name.
static char *s_test_mkdtemp (void)
{
    char *dir = zim_strdup ("./selftest-store-XXXXXX");
    assert (mkdtemp (dir));
    return dir;
}

static void s_test_rmtree (const char *path)
{
    zdir_t *dir = zdir_new (path, NULL);
    if (dir) {
        zdir_remove (dir, true);
        zdir_destroy (&dir);
    }
}

void zim_store_test (bool verbose)
{
    char *top = s_test_mkdtemp ();
    char path[256], endpoint[64];
    snprintf (path, sizeof path, "%s/nested/db", top); //  START makes the parents
    s_test_item_t *got = zim_calloc (S_PAGE_MAX, sizeof *got);
    zim_appended_item_t res[64];
    uint64_t now = zim_now_ms ();
    uint64_t base = 1ULL << 40; //  message ids of the test
    char cids[200][16];
    for (int i = 0; i < 200; i++)
        snprintf (cids[i], sizeof cids[i], "c-%d", i);
    char texts[200][16];
    for (int i = 0; i < 200; i++)
        snprintf (texts[i], sizeof texts[i], "m-%d", i);

    zactor_t *store = s_test_start (path, "batch", NULL, NULL, endpoint, sizeof endpoint);
    zsock_t *peer = s_test_peer (endpoint);

    //  Three APPENDs sent back to back (one group commit, most likely):
    //  alice -> bob 60 messages; seqs 1..60 with no gaps for both.
    s_test_msg_t msgs[64];
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < 20; i++) {
            int n = a * 20 + i;
            msgs[i] = (s_test_msg_t){base + (uint64_t)n, now, "alice", "bob", cids[n], texts[n], 0};
        }
        s_test_append (peer, 100 + (uint64_t)a, msgs, 20);
    }
    uint64_t orig_ts = now;
    for (int a = 0; a < 3; a++) {
        s_test_appended (peer, 100 + (uint64_t)a, res, 20);
        for (int i = 0; i < 20; i++) {
            uint64_t seq = (uint64_t)(a * 20 + i + 1);
            assert (res[i].status == ZIM_APPEND_STORED);
            assert (res[i].id == base + seq - 1);
            assert (res[i].from_seq == seq && res[i].to_seq == seq);
            assert (res[i].ts == now);
        }
    }
    //  bob -> alice 10: bob's seqs 61..70, alice's 61..70.
    for (int i = 0; i < 10; i++)
        msgs[i] =
            (s_test_msg_t){base + 60 + (uint64_t)i, now, "bob", "alice", cids[i], texts[60 + i], 0};
    s_test_append (peer, 103, msgs, 10);
    s_test_appended (peer, 103, res, 10);
    for (int i = 0; i < 10; i++)
        assert (res[i].status == ZIM_APPEND_STORED && res[i].from_seq == 61 + (uint64_t)i &&
                res[i].to_seq == 61 + (uint64_t)i);

    //  Duplicates, an id below the greatest, a self message, bad items.
    msgs[0] = (s_test_msg_t){base + 500, now + 5, "alice", "bob", cids[5], "retry", 0};
    msgs[1] = (s_test_msg_t){1000, now, "alice", "bob", "fresh", "fresh", 0};
    msgs[2] = (s_test_msg_t){1001, now, "alice", "bob", "fresh", "fresh again", 0};
    msgs[3] = (s_test_msg_t){base + 70, now, "alice", "alice", "note", "to self", 0};
    msgs[4] = (s_test_msg_t){base + 71, now, "alice", "b:b", "bad-to", "x", 0};
    msgs[5] = (s_test_msg_t){base + 3, now, "alice", "bob", "id-reused", "x", 0};
    s_test_append (peer, 104, msgs, 6);
    s_test_appended (peer, 104, res, 6);
    assert (res[0].status == ZIM_APPEND_DUPLICATE && res[0].id == base + 5 &&
            res[0].from_seq == 6 && res[0].to_seq == 6 && res[0].ts == orig_ts);
    assert (res[1].status == ZIM_APPEND_STORED && res[1].id == 1000 && res[1].from_seq == 71 &&
            res[1].to_seq == 71);
    assert (res[2].status == ZIM_APPEND_DUPLICATE && res[2].id == 1000 && res[2].from_seq == 71 &&
            res[2].to_seq == 71);
    assert (res[3].status == ZIM_APPEND_STORED && res[3].from_seq == 72 && res[3].to_seq == 0);
    assert (res[4].status == ZIM_EVALUE);
    assert (res[5].status == ZIM_EVALUE); //  id already used by c-3
    assert (s_test_stat (store, "appended") == 72);
    assert (s_test_stat (store, "duplicates") == 2);

    //  Sync pages: alice 1..10 with more; then from 65: 66..72, no more.
    bool more;
    s_test_read (peer, 200, ZIM_READ_SYNC, "alice", "phone", 0, 10, "");
    assert (s_test_page (peer, 200, got, S_PAGE_MAX, &more, NULL) == 10 && more);
    for (int i = 0; i < 10; i++)
        assert (got[i].seq == (uint64_t)i + 1 && got[i].id == base + (uint64_t)i);
    assert (streq (got[0].from, "alice") && streq (got[0].to, "bob") && streq (got[0].body, "m-0"));
    assert (got[0].ts == now);
    s_test_read (peer, 201, ZIM_READ_SYNC, "alice", "phone", 65, 0, "");
    assert (s_test_page (peer, 201, got, S_PAGE_MAX, &more, NULL) == 7 && !more);
    assert (got[0].seq == 66 && streq (got[0].from, "bob") && streq (got[0].body, "m-65"));
    assert (got[5].seq == 71 && got[5].id == 1000 && streq (got[5].body, "fresh"));
    assert (got[6].seq == 72 && streq (got[6].to, "alice") && streq (got[6].body, "to self"));
    //  Bob's inbox: 71 entries, seqs 1..71, every message stored once.
    s_test_read (peer, 202, ZIM_READ_SYNC, "bob", "phone", 0, 5000, "");
    assert (s_test_page (peer, 202, got, S_PAGE_MAX, &more, NULL) == 71 && !more);
    for (int i = 0; i < 71; i++)
        assert (got[i].seq == (uint64_t)i + 1);
    //  A limit of 0 means 100.
    for (int i = 0; i < 40; i++)
        msgs[i % 40] = (s_test_msg_t){base + 100 + (uint64_t)i, now, "carol", "bob", cids[100 + i],
                                      texts[100 + i],           0};
    s_test_append (peer, 105, msgs, 40);
    s_test_appended (peer, 105, res, 40);
    s_test_read (peer, 203, ZIM_READ_SYNC, "bob", "phone", 0, 0, "");
    assert (s_test_page (peer, 203, got, S_PAGE_MAX, &more, NULL) == 100 && more);
    assert (got[99].seq == 100);

    //  Cursors: sync from the stored cursor, per device; never backwards;
    //  never past the last seq.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_setcursor_t sc = {zim_str ("demo"), zim_str ("alice"), zim_str ("phone"), 20};
    zim_setcursor_encode (&wr, &sc);
    s_test_send (peer, &wr);
    zim_wr_reset (&wr);
    sc.seq = 5;
    zim_setcursor_encode (&wr, &sc);
    s_test_send (peer, &wr);
    zim_wr_reset (&wr);
    sc.device = zim_str ("watch");
    sc.seq = 1000000;
    zim_setcursor_encode (&wr, &sc);
    s_test_send (peer, &wr);
    s_test_read (peer, 204, ZIM_READ_SYNC, "alice", "phone", -1, 3, "");
    assert (s_test_page (peer, 204, got, S_PAGE_MAX, &more, NULL) == 3 && more);
    assert (got[0].seq == 21);
    s_test_read (peer, 205, ZIM_READ_SYNC, "alice", "tablet", -1, 3, "");
    assert (s_test_page (peer, 205, got, S_PAGE_MAX, &more, NULL) == 3 && got[0].seq == 1);
    s_test_read (peer, 206, ZIM_READ_SYNC, "alice", "watch", -1, 3, "");
    assert (s_test_page (peer, 206, got, S_PAGE_MAX, &more, NULL) == 0 && !more);
    assert (s_test_stat (store, "cursors") == 2);

    //  A READ right behind an APPEND sees it.
    msgs[0] = (s_test_msg_t){base + 200, now, "alice", "bob", "race", "race", 0};
    s_test_append (peer, 106, msgs, 1);
    s_test_read (peer, 207, ZIM_READ_SYNC, "alice", "watch", -1, 10, "");
    s_test_appended (peer, 106, res, 1);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 73);
    assert (s_test_page (peer, 207, got, S_PAGE_MAX, &more, NULL) == 1 && got[0].seq == 73);

    //  History: newest first, paged with before; the same for both sides.
    //  alice and bob share 60 + 10 + fresh + race = 72 messages.
    uint64_t ids[80];
    size_t nids = 0;
    int64_t before = 0;
    do {
        s_test_read (peer, 208, ZIM_READ_HISTORY, "alice", "phone", before, 30, "bob");
        size_t n = s_test_page (peer, 208, got, S_PAGE_MAX, &more, NULL);
        assert (n == 30 || !more);
        for (size_t i = 0; i < n; i++) {
            assert (got[i].seq == 0);
            assert (nids == 0 || got[i].id < ids[nids - 1]);
            assert (nids < 80);
            ids[nids++] = got[i].id;
        }
        before = (int64_t)got[n - 1].id;
    } while (more);
    assert (nids == 72 && ids[0] == base + 200 && ids[71] == 1000);
    s_test_read (peer, 209, ZIM_READ_HISTORY, "bob", "phone", 0, 1000, "alice");
    assert (s_test_page (peer, 209, got, S_PAGE_MAX, &more, NULL) == 72 && !more);
    for (size_t i = 0; i < 72; i++)
        assert (got[i].id == ids[i]);
    s_test_read (peer, 210, ZIM_READ_HISTORY, "alice", "phone", (int64_t)(base + 10), 5, "bob");
    assert (s_test_page (peer, 210, got, S_PAGE_MAX, &more, NULL) == 5 && more);
    assert (got[0].id == base + 9 && got[4].id == base + 5);
    s_test_read (peer, 211, ZIM_READ_HISTORY, "alice", "phone", 0, 10, "alice");
    assert (s_test_page (peer, 211, got, S_PAGE_MAX, &more, NULL) == 1 && !more);
    assert (streq (got[0].body, "to self"));
    s_test_read (peer, 212, ZIM_READ_HISTORY, "carol", "phone", 0, 10, "alice");
    assert (s_test_page (peer, 212, got, S_PAGE_MAX, &more, NULL) == 0 && !more);
    int64_t status;
    s_test_read (peer, 213, ZIM_READ_HISTORY, "carol", "phone", 0, 10, "");
    assert (s_test_page (peer, 213, got, S_PAGE_MAX, &more, &status) == 0 && status == ZIM_EVALUE);

    //  Malformed messages are dropped and counted; the store still answers.
    void *sock = zsock_resolve (peer);
    zmq_send (sock, "garbage", 7, 0);
    zmq_send (sock, "two", 3, ZMQ_SNDMORE);
    zmq_send (sock, "frames", 6, 0);
    zim_wr_reset (&wr);
    zim_append_begin (&wr, 1, 1);
    zim_wr_array (&wr, 2); //  an item of the wrong arity
    zim_wr_uint (&wr, 1);
    zim_wr_uint (&wr, 2);
    s_test_send (peer, &wr);
    zim_wr_reset (&wr);
    zim_wr_array (&wr, 1);
    zim_wr_uint (&wr, 99); //  unknown kind
    s_test_send (peer, &wr);
    zim_wr_reset (&wr);
    zim_append_begin (&wr, 1, 0);
    zim_wr_uint (&wr, 0); //  trailing bytes
    s_test_send (peer, &wr);
    s_test_read (peer, 214, ZIM_READ_SYNC, "alice", "phone", 72, 10, "");
    assert (s_test_page (peer, 214, got, S_PAGE_MAX, &more, NULL) == 1 && got[0].seq == 73);
    assert (s_test_stat (store, "bad_messages") == 5);
    assert (s_test_stat (store, "errors") == 0);

    //  Restart on the same directory: data, seqs, keys and cursors persist.
    zsock_destroy (&peer);
    zactor_destroy (&store);
    store = s_test_start (path, "batch", NULL, NULL, endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    msgs[0] = (s_test_msg_t){base + 300, now, "alice", "bob", "after", "after restart", 0};
    msgs[1] = (s_test_msg_t){base + 301, now, "alice", "bob", cids[0], "dup", 0};
    s_test_append (peer, 107, msgs, 2);
    s_test_appended (peer, 107, res, 2);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 74 && res[0].to_seq == 113);
    assert (res[1].status == ZIM_APPEND_DUPLICATE && res[1].id == base && res[1].from_seq == 1);
    s_test_read (peer, 215, ZIM_READ_SYNC, "alice", "phone", -1, 2, "");
    assert (s_test_page (peer, 215, got, S_PAGE_MAX, &more, NULL) == 2 && got[0].seq == 21);
    assert (streq (got[0].body, "m-20"));

    //  sync = always: one transaction and fsync per message.
    zsock_destroy (&peer);
    zactor_destroy (&store);
    store = s_test_start (path, "always", NULL, NULL, endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    for (int i = 0; i < 5; i++)
        msgs[i] =
            (s_test_msg_t){base + 400 + (uint64_t)i, now, "dave", "erin", cids[i], texts[i], 0};
    s_test_append (peer, 108, msgs, 5);
    s_test_appended (peer, 108, res, 5);
    for (int i = 0; i < 5; i++)
        assert (res[i].status == ZIM_APPEND_STORED && res[i].from_seq == (uint64_t)i + 1);
    assert (s_test_stat (store, "commits") == 5 && s_test_stat (store, "fsyncs") == 5);
    assert (s_test_stat (store, "batch_max") == 1);

    //  sync = none: no fsync on the ack path; $TERM syncs.
    zsock_destroy (&peer);
    zactor_destroy (&store);
    store = s_test_start (path, "none", NULL, NULL, endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    for (int i = 0; i < 5; i++)
        msgs[i] =
            (s_test_msg_t){base + 410 + (uint64_t)i, now, "dave", "erin", cids[5 + i], texts[i], 0};
    s_test_append (peer, 109, msgs, 5);
    s_test_appended (peer, 109, res, 5);
    assert (res[4].status == ZIM_APPEND_STORED && res[4].from_seq == 10);
    assert (s_test_stat (store, "commits") == 1 && s_test_stat (store, "batch_max") == 5);
    zsock_destroy (&peer);
    zactor_destroy (&store);
    store = s_test_start (path, "batch", NULL, NULL, endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    s_test_read (peer, 216, ZIM_READ_SYNC, "erin", "phone", 0, 100, "");
    assert (s_test_page (peer, 216, got, S_PAGE_MAX, &more, NULL) == 10 && got[9].seq == 10);
    zsock_destroy (&peer);
    zactor_destroy (&store);

    //  A full map grows and the batch is stored.
    snprintf (path, sizeof path, "%s/small", top);
    store = s_test_start (path, "batch", "262144", NULL, endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    for (int i = 0; i < 20; i++)
        msgs[i] =
            (s_test_msg_t){base + (uint64_t)i, now, "frank", "gina", cids[i], NULL, 32 * 1024};
    s_test_append (peer, 110, msgs, 20);
    s_test_appended (peer, 110, res, 20);
    for (int i = 0; i < 20; i++)
        assert (res[i].status == ZIM_APPEND_STORED && res[i].to_seq == (uint64_t)i + 1);
    assert (s_test_stat (store, "map_size") > 262144 && s_test_stat (store, "errors") == 0);
    s_test_read (peer, 217, ZIM_READ_SYNC, "gina", "phone", 0, 1000, "");
    assert (s_test_page (peer, 217, got, S_PAGE_MAX, &more, NULL) == 20 && !more);
    //  Bodies are capped near 1 MiB per page: 31 bodies of 32 KiB fit, 32
    //  do not.
    for (int i = 0; i < 20; i++)
        msgs[i] = (s_test_msg_t){
            base + 20 + (uint64_t)i, now, "frank", "gina", cids[20 + i], NULL, 32 * 1024};
    s_test_append (peer, 111, msgs, 20);
    s_test_appended (peer, 111, res, 20);
    assert (res[19].status == ZIM_APPEND_STORED && res[19].to_seq == 40);
    s_test_read (peer, 218, ZIM_READ_SYNC, "gina", "phone", 0, 1000, "");
    assert (s_test_page (peer, 218, got, S_PAGE_MAX, &more, NULL) == 31 && more);
    s_test_read (peer, 219, ZIM_READ_SYNC, "gina", "phone", 31, 1000, "");
    assert (s_test_page (peer, 219, got, S_PAGE_MAX, &more, NULL) == 9 && !more);
    zsock_destroy (&peer);
    zactor_destroy (&store);

    //  Cross-shard halves: sides 1 writes only the sender's inbox, sides 2
    //  only the recipient's; both write history and the idempotency key.
    snprintf (path, sizeof path, "%s/sides", top);
    store = s_test_start (path, "batch", NULL, NULL, endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    msgs[0] = (s_test_msg_t){base + 1, now, "kim", "lee", cids[0], "from-half", 0};
    msgs[1] = (s_test_msg_t){base + 2, now, "max", "kim", cids[1], "to-half", 0};
    s_test_append_sides (peer, 130, msgs, 1, ZIM_SIDE_FROM);
    s_test_appended (peer, 130, res, 1);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 1 && res[0].to_seq == 0);
    s_test_append_sides (peer, 132, msgs + 1, 1, ZIM_SIDE_TO);
    s_test_appended (peer, 132, res + 1, 1);
    assert (res[1].status == ZIM_APPEND_STORED && res[1].from_seq == 0 && res[1].to_seq == 2);
    s_test_read (peer, 230, ZIM_READ_SYNC, "kim", "phone", 0, 100, "");
    assert (s_test_page (peer, 230, got, S_PAGE_MAX, &more, NULL) == 2);
    assert (got[0].seq == 1 && streq (got[0].body, "from-half"));
    assert (got[1].seq == 2 && streq (got[1].body, "to-half"));
    s_test_read (peer, 231, ZIM_READ_SYNC, "lee", "phone", 0, 100, "");
    assert (s_test_page (peer, 231, got, S_PAGE_MAX, &more, NULL) == 0);
    s_test_read (peer, 232, ZIM_READ_SYNC, "max", "phone", 0, 100, "");
    assert (s_test_page (peer, 232, got, S_PAGE_MAX, &more, NULL) == 0);
    s_test_read (peer, 233, ZIM_READ_HISTORY, "lee", "phone", 0, 100, "kim");
    assert (s_test_page (peer, 233, got, S_PAGE_MAX, &more, NULL) == 1);
    s_test_append_sides (peer, 131, msgs + 1, 1, ZIM_SIDE_TO);
    s_test_appended (peer, 131, res, 1);
    assert (res[0].status == ZIM_APPEND_DUPLICATE && res[0].to_seq == 2);
    zsock_destroy (&peer);
    zactor_destroy (&store);

    //  Retention: old messages go with their inbox, history and key
    //  entries; seqs continue.
    snprintf (path, sizeof path, "%s/retention", top);
    store = s_test_start (path, "batch", NULL, "30", endpoint, sizeof endpoint);
    peer = s_test_peer (endpoint);
    for (int i = 0; i < 5; i++)
        msgs[i] = (s_test_msg_t){
            base + (uint64_t)i, now - 3600 * 1000, "hal", "ida", cids[i], texts[i], 0};
    for (int i = 5; i < 7; i++)
        msgs[i] = (s_test_msg_t){base + (uint64_t)i, now, "hal", "ida", cids[i], texts[i], 0};
    s_test_append (peer, 120, msgs, 7);
    s_test_appended (peer, 120, res, 7);
    for (int i = 0; i < 50 && s_test_stat (store, "purged") < 5; i++)
        zclock_sleep (100);
    assert (s_test_stat (store, "purged") == 5);
    s_test_read (peer, 220, ZIM_READ_SYNC, "ida", "phone", 0, 100, "");
    assert (s_test_page (peer, 220, got, S_PAGE_MAX, &more, NULL) == 2 && got[0].seq == 6);
    s_test_read (peer, 221, ZIM_READ_HISTORY, "ida", "phone", 0, 100, "hal");
    assert (s_test_page (peer, 221, got, S_PAGE_MAX, &more, NULL) == 2);
    msgs[0] = (s_test_msg_t){base + 10, now, "hal", "ida", cids[0], "again", 0};
    s_test_append (peer, 112, msgs, 1);
    s_test_appended (peer, 112, res, 1);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 8 && res[0].to_seq == 8);
    zsock_destroy (&peer);
    zactor_destroy (&store);

    //  START fails cleanly without a data directory.
    store = zactor_new (zim_store_actor, NULL);
    zstr_sendx (store, "BIND", "inproc://zim-store-test", NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 1);
    //  ... and when the directory cannot be made; the actor still answers.
    snprintf (path, sizeof path, "%s/file", top);
    FILE *file = fopen (path, "w");
    assert (file);
    fclose (file);
    snprintf (path, sizeof path, "%s/file/db", top);
    zstr_sendx (store, "SET", "data", path, NULL);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 1);
    assert (s_test_stat (store, "appended") == 0);
    zactor_destroy (&store);

    zim_wr_free (&wr);
    free (got);
    s_test_rmtree (top);
    assert (!zsys_file_exists (top));
    free (top);
    if (verbose)
        zsys_info ("store selftest done");
}
