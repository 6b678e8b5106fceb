/*  zim_txcache.h: what one write transaction has read and changed, by key:
    an open-addressing table of fixed-size values whose entries all expire
    together when a new transaction starts (its generation moves on, so
    starting costs no clearing). The seq counters (zim_seqs) and the
    conversation states (zim_convs) keep their values here, so a user with
    many messages in one group commit is read and written once.
*/
#ifndef ZIM_TXCACHE_H_INCLUDED
#define ZIM_TXCACHE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_txcache_t zim_txcache_t;

//  Creates an empty cache of values of value_size bytes. Caller owns
//  return value.
zim_txcache_t *zim_txcache_new (size_t value_size);
void zim_txcache_destroy (zim_txcache_t **self_p);

//  Forgets every entry: a new transaction.
void zim_txcache_reset (zim_txcache_t *self);
//  Makes room for n more entries, so values found meanwhile stay where
//  they are (a value's address holds until the next reserve that grows).
void zim_txcache_reserve (zim_txcache_t *self, size_t n);

//  The value of key (len bytes, at most 65535), or NULL if it has none
//  yet; *slot gets where it is, or where it goes (for zim_txcache_add).
//  Call zim_txcache_reserve first.
void *zim_txcache_find (zim_txcache_t *self, const void *key, size_t len, size_t *slot);
//  Adds key at slot (from a zim_txcache_find that found nothing, with no
//  add in between); returns its value, zeroed.
void *zim_txcache_add (zim_txcache_t *self, size_t slot, const void *key, size_t len);

//  The value at slot (from zim_txcache_find or _add; valid until the next
//  reserve that grows).
void *zim_txcache_value (zim_txcache_t *self, size_t slot);

//  Entries of this transaction, in the order they were added: how many,
//  and entry i's value (its key into *key, *len).
size_t zim_txcache_size (zim_txcache_t *self);
void *zim_txcache_at (zim_txcache_t *self, size_t i, const void **key, size_t *len);

//  Self test of this class.
void zim_txcache_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
