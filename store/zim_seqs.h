/*  zim_seqs.h: the users' last inbox seqs (the seqs database, [app][uid] ->
    last seq), cached for one write transaction, so a user with many messages
    in one group commit costs one read and one write of its counter.
*/
#ifndef ZIM_SEQS_H_INCLUDED
#define ZIM_SEQS_H_INCLUDED

#include "store/zim_key.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_seqs_t zim_seqs_t;

//  Creates the cache of the seqs database dbi. Caller owns return value.
zim_seqs_t *zim_seqs_new (MDB_dbi dbi);
//  Destroys the cache.
void zim_seqs_destroy (zim_seqs_t **self_p);

//  Forgets every entry: a new write transaction.
void zim_seqs_reset (zim_seqs_t *self);
//  Makes room for n more entries, so slots found meanwhile stay valid.
void zim_seqs_reserve (zim_seqs_t *self, size_t n);
//  Finds the counter of user key [app][uid], reading it from txn the first
//  time; sets *slot. Call zim_seqs_reserve first.
//  @return 0 or an LMDB error
int zim_seqs_find (zim_seqs_t *self, MDB_txn *txn, const zim_key_t *user, size_t *slot);
//  The last seq of a slot (0 for a user who never had one).
uint64_t zim_seqs_get (zim_seqs_t *self, size_t slot);
//  Sets the last seq of a slot; it is written back by zim_seqs_flush.
void zim_seqs_set (zim_seqs_t *self, size_t slot, uint64_t seq);
//  Writes the changed counters into txn (before its commit).
//  @return 0 or an LMDB error
int zim_seqs_flush (zim_seqs_t *self, MDB_txn *txn);

//  Self test of this class.
void zim_seqs_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
