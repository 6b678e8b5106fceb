/*  zim_seqs.c: per-transaction cache of the users' last seqs (see
    zim_seqs.h): an open-addressing table whose entries expire together when
    its generation moves on, so a new transaction costs no clearing.
*/
#include "store/zim_seqs.h"
#include "store/zim_db.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

//  One (app, uid) counter cached for the current write transaction.
typedef struct {
    uint64_t hash;    //  FNV-1a of the key
    uint64_t seq;     //  last seq given (in this transaction)
    uint32_t gen;     //  valid when equal to the table's generation
    uint32_t key_off; //  key bytes in keys
    uint16_t key_len; //  key length
    bool dirty;       //  seq changed: write it back before commit
} s_entry_t;

struct _zim_seqs_t {
    MDB_dbi dbi;       //  the seqs database
    s_entry_t *tab;    //  open-addressing table, cap slots
    size_t cap;        //  slots, a power of two (0 before first use)
    uint32_t *used;    //  slots in use this generation
    size_t nused;      //  entries in used
    uint32_t gen;      //  current generation
    uint8_t *keys;     //  key bytes of the entries
    size_t keys_size;  //  bytes used in keys
    size_t keys_alloc; //  bytes allocated
};

static uint64_t s_hash (const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

zim_seqs_t *zim_seqs_new (MDB_dbi dbi)
{
    zim_seqs_t *self = zim_calloc (1, sizeof *self);
    self->dbi = dbi;
    self->gen = 1;
    return self;
}

void zim_seqs_destroy (zim_seqs_t **self_p)
{
    zim_seqs_t *self = *self_p;
    if (!self)
        return;
    free (self->tab);
    free (self->used);
    free (self->keys);
    free (self);
    *self_p = NULL;
}

void zim_seqs_reset (zim_seqs_t *self)
{
    if (++self->gen == 0) {
        memset (self->tab, 0, self->cap * sizeof *self->tab);
        self->gen = 1;
    }
    self->nused = 0;
    self->keys_size = 0;
}

void zim_seqs_reserve (zim_seqs_t *self, size_t n)
{
    if ((self->nused + n) * 2 <= self->cap)
        return;
    size_t cap = self->cap ? self->cap * 2 : 1024;
    while ((self->nused + n) * 2 > cap)
        cap *= 2;
    s_entry_t *tab = zim_calloc (cap, sizeof *tab);
    uint32_t *used = zim_calloc (cap, sizeof *used);
    for (size_t u = 0; u < self->nused; u++) {
        s_entry_t *e = &self->tab[self->used[u]];
        size_t i = e->hash & (cap - 1);
        while (tab[i].gen == self->gen)
            i = (i + 1) & (cap - 1);
        tab[i] = *e;
        used[u] = (uint32_t)i;
    }
    free (self->tab);
    free (self->used);
    self->tab = tab;
    self->used = used;
    self->cap = cap;
}

int zim_seqs_find (zim_seqs_t *self, MDB_txn *txn, const zim_key_t *user, size_t *slot)
{
    assert (self->nused * 2 < self->cap);
    uint64_t h = s_hash (user->buf, user->len);
    size_t i = h & (self->cap - 1);
    while (self->tab[i].gen == self->gen) {
        s_entry_t *e = &self->tab[i];
        if (e->hash == h && e->key_len == user->len &&
            memcmp (self->keys + e->key_off, user->buf, user->len) == 0) {
            *slot = i;
            return 0;
        }
        i = (i + 1) & (self->cap - 1);
    }
    MDB_val k = zim_key_val (user), v;
    uint64_t seq = 0;
    int rc = mdb_get (txn, self->dbi, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        seq = zim_be64_get (v.mv_data);
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (self->keys_size + user->len > self->keys_alloc) {
        self->keys_alloc = (self->keys_alloc + user->len) * 2;
        self->keys = zim_realloc (self->keys, self->keys_alloc);
    }
    memcpy (self->keys + self->keys_size, user->buf, user->len);
    self->tab[i] =
        (s_entry_t){h, seq, self->gen, (uint32_t)self->keys_size, (uint16_t)user->len, false};
    self->keys_size += user->len;
    self->used[self->nused++] = (uint32_t)i;
    *slot = i;
    return 0;
}

uint64_t zim_seqs_get (zim_seqs_t *self, size_t slot)
{
    return self->tab[slot].seq;
}

void zim_seqs_set (zim_seqs_t *self, size_t slot, uint64_t seq)
{
    self->tab[slot].seq = seq;
    self->tab[slot].dirty = true;
}

int zim_seqs_flush (zim_seqs_t *self, MDB_txn *txn)
{
    for (size_t u = 0; u < self->nused; u++) {
        s_entry_t *e = &self->tab[self->used[u]];
        if (!e->dirty)
            continue;
        uint8_t val[8];
        zim_be64_put (val, e->seq);
        MDB_val k = {e->key_len, self->keys + e->key_off}, v = {8, val};
        int rc = mdb_put (txn, self->dbi, &k, &v, 0);
        if (rc)
            return rc;
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_seqs_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 24);
    MDB_env *env = zim_db_env (db);
    zim_seqs_t *seqs = zim_seqs_new (zim_db_dbs (db)->seqs);

    //  2,000 users, more than the first table holds: each counter is found
    //  again after the table grew, and written back once.
    MDB_txn *txn;
    assert (mdb_txn_begin (env, NULL, 0, &txn) == 0);
    zim_seqs_reset (seqs);
    for (int round = 0; round < 3; round++)
        for (int u = 0; u < 2000; u++) {
            char uid[16];
            snprintf (uid, sizeof uid, "u%d", u);
            zim_key_t key;
            zim_key_user (&key, zim_str ("demo"), zim_str (uid));
            size_t slot;
            zim_seqs_reserve (seqs, 1);
            assert (zim_seqs_find (seqs, txn, &key, &slot) == 0);
            assert (zim_seqs_get (seqs, slot) == (uint64_t)round * (uint64_t)u);
            zim_seqs_set (seqs, slot, (uint64_t)(round + 1) * (uint64_t)u);
        }
    assert (zim_seqs_flush (seqs, txn) == 0);
    assert (mdb_txn_commit (txn) == 0);

    //  A new transaction reads what was written; an aborted one leaves it.
    for (int pass = 0; pass < 2; pass++) {
        assert (mdb_txn_begin (env, NULL, 0, &txn) == 0);
        zim_seqs_reset (seqs);
        zim_key_t key;
        zim_key_user (&key, zim_str ("demo"), zim_str ("u1999"));
        size_t slot;
        zim_seqs_reserve (seqs, 1);
        assert (zim_seqs_find (seqs, txn, &key, &slot) == 0);
        assert (zim_seqs_get (seqs, slot) == 3 * 1999);
        zim_seqs_set (seqs, slot, 1);
        assert (zim_seqs_flush (seqs, txn) == 0);
        mdb_txn_abort (txn);
    }
    zim_seqs_destroy (&seqs);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("seqs: cached counters hold across growth and transactions");
}
