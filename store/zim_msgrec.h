/*  zim_msgrec.h: the message record, the value of the msgs database: a
    message stored once, with the seqs it took and everything needed to find
    its other entries (inbox, history, idempotency key) without a scan.

        ts, from_seq, to_seq        8 bytes big-endian each
        alen, flen, tlen, clen      1 byte each
        app, from, to, cid          the strings, back to back
        body                        the raw msgpack value, to the end
*/
#ifndef ZIM_MSGREC_H_INCLUDED
#define ZIM_MSGREC_H_INCLUDED

#include "msg/zim_msg.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  A parsed record: views into LMDB memory, valid while its transaction is.
typedef struct {
    uint64_t ts;         //  server time, ms since the epoch
    uint64_t from_seq;   //  seq in the sender's inbox, 0 if this shard does
                         //  not hold the sender's inbox (sides 2)
    uint64_t to_seq;     //  seq in the recipient's inbox, 0 if to == from or
                         //  this shard does not hold it (sides 1)
    zim_str_t app, from; //  app and sender
    zim_str_t to, cid;   //  recipient and client message id
    zim_str_t body;      //  raw msgpack value
} zim_msgrec_t;

//  Bytes the record of it takes.
size_t zim_msgrec_size (const zim_append_item_t *it);

//  Writes the record of it with its seqs into dest (zim_msgrec_size bytes).
void zim_msgrec_write (void *dest, const zim_append_item_t *it, uint64_t from_seq, uint64_t to_seq);

//  Parses a record; returns 0 or -1 if it is corrupt.
int zim_msgrec_parse (const MDB_val *v, zim_msgrec_t *r);

//  True if a and b hold the same bytes.
bool zim_str_same (zim_str_t a, zim_str_t b);

//  Self test of this class.
void zim_msgrec_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
