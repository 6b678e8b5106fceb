/*  zim_store.h: the store actor. The only owner of the LMDB environment:
    inboxes, conversation history, idempotency keys, device cursors and user
    seq counters, written with group commit (many messages per transaction).

    Pipe commands (docs/ARCHITECTURE.md, "Actors"):
        SET data DIR            directory of the LMDB environment (required;
                                created with its parents)
        SET sync MODE           batch (default): one fsync per group commit,
                                before any ack of it; always: one transaction
                                and one fsync per message (max_batch is 1);
                                none: no fsync on the ack path (survives a
                                process crash, not a power loss), an fsync
                                about once a second and at $TERM
        SET map_size BYTES      LMDB map size (default 4 GiB); doubled on
                                demand when the map is full, with a log line
        SET max_batch N         APPEND items per write transaction (4096)
        SET retention SECONDS   messages older than this are purged about
                                once a minute (604800; 0 keeps them forever)
        SET purge_interval S    seconds between purge runs (60)
        SET name NAME           node name for logs (default "store")
        BIND ENDPOINT           ROUTER socket for brokers (signal 0/1)
        START                   opens the environment (signal 0/1)
        PORT                    TCP port of the last BIND
        STATS                   JSON: appended, duplicates, commits, fsyncs,
                                reads, cursors, errors, bad_messages,
                                batch_max, purged, reply_drops, map_size,
                                map_used
        $TERM                   commits what was received, syncs, exits

    Backbone (msg/zim_msg.h): APPEND -> APPENDED, READ -> PAGE, SETCURSOR
    (no reply). Replies go to the sender's routing id with the request's req.
    An APPENDED is sent only after its transaction committed (and, with sync
    batch or always, was fsynced). A failed commit answers every item of the
    transaction with ZIM_ESTORE. A READ sees every APPEND received before it.

    LMDB layout. One environment, seven named databases. All integers are
    8-byte big-endian (so memcmp order is numeric order); "[s]" is a string
    preceded by one length byte (app, uid, device, cid <= 64 bytes; conv
    <= 131), so no separator character is reserved and a key prefix names
    exactly one (app, user) or (app, conversation).

        msgs     id -> ts, from_seq, to_seq, alen, flen, tlen, clen (1 byte
                 each), app, from, to, cid, body (raw msgpack)
                 The message record, stored once. Ids are time-ordered, so
                 new ids are usually appended (MDB_APPEND) and retention
                 purges from the front. to_seq is 0 when from == to.
        inbox    [app][uid] seq -> id
                 Each user's inbox: one entry per message sent or received,
                 seq 1, 2, 3... with no gaps. Sync reads a range of it.
        hist     [app][conv] id -> (empty)
                 Peer conversation history; conv = zim_conv_peer (from, to)
                 ("p:" + smaller uid + ":" + larger uid). History reads it
                 backwards from an id.
        idem     [app][from][cid] -> id
                 Idempotency key: a second APPEND of (app, from, cid) gets
                 the first one's id, seqs and ts and stores nothing.
        seqs     [app][uid] -> last seq
                 The last seq given in the user's inbox; kept after the
                 inbox entries are purged, so seqs never restart.
        cursors  [app][uid][device] -> seq
                 The device has everything up to seq; it only grows, and
                 never beyond the user's last seq.
        meta     "version" -> 1 (8 bytes)
                 Layout version; START refuses a store of another version.

    Retention deletes, for each message record whose ts is older than
    `retention`, the record, its inbox entries, its history entry and its
    idempotency key (all located from the record, no scan).
*/
#ifndef ZIM_STORE_H_INCLUDED
#define ZIM_STORE_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The actor function, for zactor_new (zim_store_actor, NULL).
//  @param pipe the actor pipe (commands above)
//  @param args unused
void zim_store_actor (zsock_t *pipe, void *args);

//  Selftest: a real actor over a real LMDB environment in a temporary
//  directory under the current directory, spoken to over a DEALER socket.
void zim_store_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
