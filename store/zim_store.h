/*  zim_store.h: the store actor. The only owner of the LMDB environment:
    inboxes, conversation history, idempotency keys, device cursors and user
    seq counters, written with group commit (many messages per transaction).
    It runs in the actor shell (msg/zim_shell.h).

    Settings (SET key value; every one is a store/KEY config key):
        data DIR                directory of the LMDB environment (required;
                                created with its parents; before START)
        sync MODE               batch (default): one fsync per group commit,
                                before any ack of it; always: one transaction
                                and one fsync per message (max_batch is 1);
                                none: no fsync on the ack path (survives a
                                process crash, not a power loss), an fsync
                                about once a second, retried until it works,
                                and at $TERM (before START)
        map_size BYTES          LMDB map size (default 4 GiB); doubled on
                                demand when the map is full, with a log line
                                (before START)
        max_batch N             APPEND items per write transaction (4096)
        retention SECONDS       messages older than this are purged about
                                once a minute (604800; 0 keeps them forever)
        purge_interval S        seconds between purge runs (60)
        max_page_bytes BYTES    longest PAGE, encoded (262144): well below
                                the gateway's max_pending; a page holds at
                                least one message whatever its size
        push_ttl SECONDS        push records older than this leave the
                                queue (86400; 0 keeps them until taken)
        max_group_size N        members of a group, at most (500)
        max_channel_size N      members of a channel, at most (100000)
        csync_max_behind N      a channel read further behind gets the
                                newest page and reset (10000)
        name NAME, max_msg_size as every actor (msg/zim_shell.h)
    Commands: BIND ENDPOINT (the ROUTER for brokers), START (opens the
    environment), PORT, STATS, $TERM (commits what was received, syncs,
    exits). STATS: appended, duplicates, conflicts, commits, fsyncs, reads,
    cursors, errors, bad_messages, batch_max, purged, reply_drops, receipts,
    push_added, push_coalesced, push_read, push_delivered, push_dropped,
    push_muted, push_expired, and the gauges map_size, map_used, push_depth.

    Backbone (msg/zim_msg.h): APPEND -> APPENDED, READ -> PAGE, SETCURSOR
    (no reply); MARK -> MARKED, CONVS_Q -> CONVS_R, PUSH_ADD (no reply),
    PUSH_Q -> PUSH_R (zim_receipts.h); GPOST -> GPOSTED, GFAN -> GFANNED,
    GDONE (no reply), GADMIN -> GADMIN_R, GREAD -> GREAD_R (zim_groups.h). Replies go to the sender's routing id with the request's req.
    An APPENDED is sent only after its transaction committed (and, with sync
    batch or always, was fsynced). A failed commit answers every item of the
    transaction with ZIM_ESTORE. A READ sees every APPEND received before it.
    An APPEND item whose (app, from, cid) is stored already is answered
    ZIM_APPEND_DUPLICATE with the original id, seqs and ts when its
    recipient and body bytes are the stored ones (and, for sides 2, its id),
    else ZIM_APPEND_CONFLICT with id, seqs and ts 0; neither writes anything.

    The classes of the store, one file pair each:
        zim_store      this actor: loop, drain, replies, timers
        zim_commit     the group commit: one write transaction per drain
        zim_db         the environment, its databases, map growth, syncs
        zim_key        key encoding;  zim_msgrec  the message record
        zim_seqs       seq counters cached per write transaction
        zim_inbox      APPEND items: seqs, records, inbox and history entries
        zim_idem       idempotency keys: duplicate or conflict
        zim_cursor     device cursors
        zim_reader     READ: sync and history pages, bounded in bytes
        zim_retention  the purge of old messages
        zim_convs      conversations: states, cursors, the list, unread
        zim_pushq      the offline-push queue
        zim_receipts   MARK, CONVS_Q, PUSH_ADD, PUSH_Q (and hands on the groups' kinds)
        zim_groups     GPOST, GFAN, GDONE, GADMIN, GREAD: groups and channels
        zim_storekit   a test kit: this actor and a DEALER speaking as a broker

    LMDB layout. One environment, nineteen named databases. All integers are
    8-byte big-endian (so memcmp order is numeric order); "[s]" is a string
    preceded by one length byte (app, uid, device, cid <= 64 bytes; conv
    <= 131), so no separator character is reserved and a key prefix names
    exactly one (app, user) or (app, conversation) (zim_key).

        msgs     id -> ts, from_seq, to_seq, alen, flen, tlen, clen (1 byte
                 each), app, from, to, cid, body (raw msgpack)
                 The message record, stored once (zim_msgrec, written by
                 zim_inbox). Ids are time-ordered, so new ids are usually
                 appended (MDB_APPEND) and retention purges from the front.
                 to_seq is 0 when from == to.
        inbox    [app][uid] seq -> id
                 Each user's inbox: one entry per message sent or received,
                 seq 1, 2, 3... with no gaps (zim_inbox; read by
                 zim_reader). Sync reads a range of it.
        hist     [app][conv] id -> (empty)
                 Peer conversation history; conv = zim_conv_peer (from, to)
                 ("p:" + smaller uid + ":" + larger uid). History reads it
                 backwards from an id (zim_inbox; read by zim_reader).
        idem     [app][from][cid] -> id
                 Idempotency key (zim_idem): a second APPEND of (app, from,
                 cid) is a duplicate or a conflict and stores nothing.
        seqs     [app][uid] -> last seq
                 The last seq given in the user's inbox (zim_seqs); kept
                 after the inbox entries are purged, so seqs never restart.
        cursors  [app][uid][device] -> seq
                 The device has everything up to seq (zim_cursor); it only
                 grows, and never beyond the user's last seq.
        meta     "version" -> 1 (8 bytes)
                 Layout version; START refuses a store of another version
                 (zim_db). "pushqid" -> the next push queue position.
        cstate, cidx, crecent, utotal
                 Each user's conversations: state, the conversation's
                 messages in the inbox, the list by last message id, the
                 unread total (zim_convs.h has their keys and values).
        pushk, pushq
                 The push queue: one record per (app, uid, conv), and the
                 queue in order (zim_pushq.h).
        groups, gmembers, ugroups, glog, gjobs, gfan
                 Groups and channels: each group, its members (by group and
                 by user), its log by gseq, the fan-out jobs of messages
                 with members on other shards, and what a job's part wrote
                 here (zim_groups.h has their keys and values). A group
                 message's record has to = "g:GROUP" and to_seq its gseq.
                 A store written before these databases existed opens
                 with them empty: lists and unread counts start with the
                 next messages.

    Retention (zim_retention) deletes, for each message record whose ts is
    older than `retention`, the record, its inbox entries, its history entry
    its idempotency key and its conversation entries (all located from the
    record, no scan).
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

//  Selftest: real actors over real LMDB environments in a temporary
//  directory under the current directory, spoken to over DEALER sockets.
void zim_store_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
