/*  zim_key.h: how the store builds its LMDB keys. Integers are 8-byte
    big-endian, so memcmp order is numeric order; strings are preceded by one
    length byte, so no separator character is reserved and a key prefix names
    exactly one (app, user) or (app, conversation). zim_store.h lists the
    keys of every database.
*/
#ifndef ZIM_KEY_H_INCLUDED
#define ZIM_KEY_H_INCLUDED

#include "msg/zim_mp.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  A key under construction, on the caller's stack.
typedef struct {
    uint8_t buf[320]; //  longest key: [app][uid][conv] seq = 1+64+1+64+1+131+8
    size_t len;       //  bytes used
} zim_key_t;

//  Writes v big-endian into the 8 bytes at p.
void zim_be64_put (uint8_t *p, uint64_t v);
//  Reads 8 big-endian bytes.
uint64_t zim_be64_get (const void *p);

//  Appends a length-prefixed string (callers pass validated ids, < 256).
void zim_key_str (zim_key_t *k, zim_str_t s);
//  Appends a big-endian integer.
void zim_key_u64 (zim_key_t *k, uint64_t v);
//  Sets k to [app][uid]: a user's inbox prefix, seqs key, cursors prefix.
void zim_key_user (zim_key_t *k, zim_str_t app, zim_str_t uid);
//  Sets k to [app][conv] for the peer conversation of a and b (either
//  order): the prefix of its history entries.
void zim_key_conv (zim_key_t *k, zim_str_t app, zim_str_t a, zim_str_t b);
//  Sets k to [app][from][cid]: an idempotency key.
void zim_key_idem (zim_key_t *k, zim_str_t app, zim_str_t from, zim_str_t cid);
//  The key as an MDB_val (borrowing k's buffer).
MDB_val zim_key_val (const zim_key_t *k);
//  True if key is prefix followed by exactly tail more bytes.
bool zim_key_has_prefix (const MDB_val *key, const zim_key_t *prefix, size_t tail);

//  Self test of this class.
void zim_key_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
