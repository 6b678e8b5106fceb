/*  zim_broker.h: the broker actor. Holds nothing durable: validates client
    operations forwarded by gateways, assigns message ids, persists through
    the store shards, resolves recipients through the router and dispatches
    acks and deliveries back to gateways.

    The broker's parts, one file pair each (docs/ARCHITECTURE.md, "Layout"):
        zim_broker   the actor: its loop, sockets, settings and STATS
        zim_sendq    sends: batches, ids, first writes, routes, completion
        zim_xshard   second halves of cross-shard sends, in order, repaired
        zim_reads    sync, history and cursors; pages held behind sends
        zim_shards   the store shards: map, ring placement, links
        zim_deliver  OUTs to gateways: acks, messages, errors, byte budget
        zim_notify   receipts, conversation lists, offline push records
        zim_gfan     groups and channels: posts, fan-out jobs, csync, groups

    Pipe commands (msg/zim_shell.h; docs/ARCHITECTURE.md, "Actors"):
        SET node_id N              0..1023, part of every message id (default 1)
        SET max_inflight N         sends waiting for the store before new
                                   sends get 5030 (default 65536)
        SET max_batch N            sends per store/router batch (default 2048)
        SET max_batch_bytes N      bytes of sends per batch (default 8 MiB)
        SET store_timeout MS       a send the store has not answered fails
                                   with 5040 (default 5000)
        SET route_timeout MS       acks go out without live delivery when the
                                   router has not answered (default 1000)
        SET max_parked N           bytes of pages held behind sends (64 MiB)
        SET max_out_bytes N        bytes of large OUTs queued to one gateway
                                   before more are dropped (default 64 MiB)
        SET shards NAME,NAME..     the cluster's store shard names
        BIND ENDPOINT              ROUTER socket the gateways connect to
        CONNECT store ENDPOINT     DEALER to zim-server's one store
        CONNECT router ENDPOINT    DEALER to a router
        MAP FRAME                  a cluster map: its store shards
        START, PORT, STATS, $TERM  as every actor
*/
#ifndef ZIM_BROKER_H_INCLUDED
#define ZIM_BROKER_H_INCLUDED

#include "msg/zim_metrics.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The broker's settings, read live by its parts (a SET takes effect at
//  once). Fields are uint64_t for the shell's settings table.
typedef struct {
    uint64_t node_id;          //  0..1023, in every message id
    uint64_t max_inflight;     //  sends in batches in flight, at most
    uint64_t max_batch;        //  sends per batch
    uint64_t max_batch_bytes;  //  bytes of SEND frames per batch
    uint64_t store_timeout_us; //  store answer deadline
    uint64_t route_timeout_us; //  router answer deadline
    uint64_t max_parked;       //  bytes of pages held behind sends
    uint64_t max_out_bytes;    //  bytes of large OUTs queued to one gateway
} zim_broker_limits_t;

//  The broker's STATS counters, counted by its parts. The JSON keys are in
//  the counters table of zim_broker.c.
typedef struct {
    uint64_t sends;          //  SENDs taken
    uint64_t acks;           //  acks sent
    uint64_t duplicates;     //  sends answered from a stored message (same cid)
    uint64_t cid_conflicts;  //  sends refused: cid names another message (4009)
    uint64_t deliveries;     //  connections a message was sent to live
    uint64_t send_errors;    //  sends answered with an error
    uint64_t rejected_full;  //  sends refused: max_inflight reached (5030)
    uint64_t store_timeouts; //  batches or reads the store did not answer in time
    uint64_t route_timeouts; //  batches the router did not answer in time
    uint64_t unroutable;     //  OUTs no gateway took (gone, or its queue full)
    uint64_t out_dropped;    //  OUTs not sent: the gateway's byte budget was spent
    uint64_t reads;          //  sync and history requests relayed
    uint64_t cursors;        //  cursor updates relayed
    uint64_t bad;            //  undecodable messages dropped
    uint64_t cross_shard;    //  sends written to two shards
    uint64_t no_shard;       //  sends refused: the sender's shard is not known
    uint64_t parked_refused; //  reads refused: max_parked reached (5030)
    uint64_t order_held;     //  sends refused while an earlier second half to the
                             //  recipient's shard is being repaired (5030)
    uint64_t repaired;       //  second halves the broker completed itself
    uint64_t receipts;       //  read, delivered and mute requests taken (zim_notify)
    uint64_t pushes;         //  push records sent to the stores for offline recipients
    uint64_t push_lost;      //  push records a store shard could not take
    zim_histo_t ack_us;      //  SEND batch to the stores -> its answers out, µs per send
} zim_broker_stats_t;

//  The actor function, for zactor_new (zim_broker_actor, NULL).
void zim_broker_actor (zsock_t *pipe, void *args);

//  Self test of this class.
void zim_broker_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
