/*  zim_seqs.c: per-transaction cache of the users' last seqs (see
    zim_seqs.h), kept in a zim_txcache.
*/
#include "store/zim_seqs.h"
#include "store/zim_db.h"
#include "store/zim_txcache.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

//  One (app, uid) counter cached for the current write transaction.
typedef struct {
    uint64_t seq; //  last seq given (in this transaction)
    bool dirty;   //  seq changed: write it back before commit
} s_value_t;

struct _zim_seqs_t {
    MDB_dbi dbi;          //  the seqs database
    zim_txcache_t *cache; //  the counters of the transaction
};

zim_seqs_t *zim_seqs_new (MDB_dbi dbi)
{
    zim_seqs_t *self = zim_calloc (1, sizeof *self);
    self->dbi = dbi;
    self->cache = zim_txcache_new (sizeof (s_value_t));
    return self;
}

void zim_seqs_destroy (zim_seqs_t **self_p)
{
    zim_seqs_t *self = *self_p;
    if (!self)
        return;
    zim_txcache_destroy (&self->cache);
    free (self);
    *self_p = NULL;
}

void zim_seqs_reset (zim_seqs_t *self)
{
    zim_txcache_reset (self->cache);
}

void zim_seqs_reserve (zim_seqs_t *self, size_t n)
{
    zim_txcache_reserve (self->cache, n);
}

int zim_seqs_find (zim_seqs_t *self, MDB_txn *txn, const zim_key_t *user, size_t *slot)
{
    if (zim_txcache_find (self->cache, user->buf, user->len, slot))
        return 0;
    MDB_val k = zim_key_val (user), v;
    uint64_t seq = 0;
    int rc = mdb_get (txn, self->dbi, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        seq = zim_be64_get (v.mv_data);
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    s_value_t *value = zim_txcache_add (self->cache, *slot, user->buf, user->len);
    value->seq = seq;
    return 0;
}

uint64_t zim_seqs_get (zim_seqs_t *self, size_t slot)
{
    return ((s_value_t *)zim_txcache_value (self->cache, slot))->seq;
}

void zim_seqs_set (zim_seqs_t *self, size_t slot, uint64_t seq)
{
    s_value_t *value = zim_txcache_value (self->cache, slot);
    value->seq = seq;
    value->dirty = true;
}

int zim_seqs_flush (zim_seqs_t *self, MDB_txn *txn)
{
    for (size_t i = 0; i < zim_txcache_size (self->cache); i++) {
        const void *key;
        size_t len;
        s_value_t *value = zim_txcache_at (self->cache, i, &key, &len);
        if (!value->dirty)
            continue;
        uint8_t val[8];
        zim_be64_put (val, value->seq);
        MDB_val k = {len, (void *)key}, v = {8, val};
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
