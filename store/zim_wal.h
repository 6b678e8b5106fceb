/*  zim_wal.h: the store's write-ahead log. With sync = batch the group
    commit makes a batch durable by appending it here and syncing this one
    file (a small overwrite of a preallocated file: one fdatasync, no
    metadata), and applies it to LMDB in a write transaction that stays open
    across batches; that transaction (the window) is committed and synced
    every store/checkpoint_ms, after which the log starts again at its
    beginning (zim_commit.h).

    The file, DIR/wal beside LMDB's, is preallocated to its capacity with
    zeros and synced once, so a record is written over bytes that exist.
    A record is a 32-byte header and the batch:
        0   magic "ZWL1"
        4   payload length, u32
        8   lsn, u64: 1, 2, 3 ... for the life of the store
        16  reserved, u64, 0
        24  checksum, u64, of bytes 8..24 and the payload (zim_wal_sum)
        32  payload: count u32, then count x (length u32, bytes): the
            backbone messages of the batch as the brokers sent them
    (integers big-endian). Replay reads from the start and takes records
    while each is whole, its checksum right and its lsn the next one; the
    first that is not (a torn write, the zeros, a record of an earlier turn
    of the file) ends the log.
*/
#ifndef ZIM_WAL_H_INCLUDED
#define ZIM_WAL_H_INCLUDED

#include "msg/zim_mp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZIM_WAL_HEADER 32 //  bytes before a record's payload

typedef struct _zim_wal_t zim_wal_t;

//  One replayed record: its lsn and its messages (valid during the call).
//  Returns 0 to go on, anything else to stop the replay with that value.
typedef int (zim_wal_fn) (void *arg, uint64_t lsn, const zim_str_t *msgs, size_t n);

//  Opens DIR/wal, creating it and growing it with zeros to capacity bytes
//  (synced, with the directory) if it is smaller. name is for logs.
//  Returns NULL (logged) if the file cannot be made.
zim_wal_t *zim_wal_open (const char *name, const char *dir, uint64_t capacity);
//  Closes it.
void zim_wal_destroy (zim_wal_t **self_p);

//  Reads the records after lsn `after` in order, calling fn for each; the
//  next append goes after the last one read, numbered after it. Returns
//  the records read, or -1 if fn stopped the replay or the file could not
//  be read (logged).
long zim_wal_replay (zim_wal_t *self, uint64_t after, zim_wal_fn *fn, void *arg);

//  Appends msgs[0..n) as the next record and syncs it. Returns 0, ENOSPC
//  if it does not fit after the records since the last zim_wal_rewind (the
//  caller checkpoints and rewinds), EFBIG if it could not fit even in an
//  empty log, or the errno of the failed write or sync.
int zim_wal_append (zim_wal_t *self, const zim_str_t *msgs, size_t n);

//  The lsn of the last record appended or replayed (0: none ever).
uint64_t zim_wal_lsn (zim_wal_t *self);
//  Bytes used since the last rewind.
uint64_t zim_wal_used (zim_wal_t *self);
//  After a checkpoint made every record durable in LMDB: the next record
//  is written at the beginning of the file (numbering goes on).
void zim_wal_rewind (zim_wal_t *self);

//  The checksum of records: 64 bits over 8-byte words, for torn writes and
//  stale bytes (not an adversary).
uint64_t zim_wal_sum (uint64_t h, const void *data, size_t len);

//  Self test of this class.
void zim_wal_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
