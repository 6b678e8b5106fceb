/*  zim_reads.h: a broker's sync, history and cursor requests. SYNC and
    HISTORY go to the user's store shard as READ; its PAGE comes back as
    the client's page frame. CURSOR becomes SETCURSOR (no answer).

    A page that comes back while batches of sends received before it are
    still in flight is held until they have completed: the store may run a
    READ after an APPEND that reached it later, and a client must never see
    its own message in a page before that send's ack. Held pages are
    bounded (max_parked bytes); a read that finds no room gets 5030.
    Every error answer to a read carries the request's rid.
*/
#ifndef ZIM_READS_H_INCLUDED
#define ZIM_READS_H_INCLUDED

#include "broker/zim_broker.h"
#include "broker/zim_deliver.h"
#include "broker/zim_shards.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_reads_t zim_reads_t;

//  Creates the read relay over shards, answering through deliver; limits
//  and stats are the actor's. Caller owns return value.
zim_reads_t *zim_reads_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                            const zim_broker_limits_t *limits, zim_broker_stats_t *stats);
void zim_reads_destroy (zim_reads_t **self_p);

//  Relays a SYNC or HISTORY (kind; rd at its first field) from gateway gw.
//  A request that cannot be relayed is answered at once: 5030 when the
//  user's shard cannot take it, 5000 when it is malformed (when its
//  connection can be read at all; then it is counted and logged).
void zim_reads_request (zim_reads_t *self, zframe_t *gw, int kind, zim_rd_t *rd, uint32_t fields);

//  Relays a CURSOR (rd at its first field). Malformed: counted and logged.
void zim_reads_cursor (zim_reads_t *self, zim_rd_t *rd, uint32_t fields);

//  Takes a PAGE (rd at its first field, the request id read as req). last
//  is the request id of the newest batch of sends in flight (0: none): the
//  page waits for it. Returns 0, or -1 when the PAGE is malformed (the
//  client gets 5000; the caller counts and logs). A PAGE for no read in
//  flight (it timed out) is dropped.
int zim_reads_page (zim_reads_t *self, uint64_t req, zim_rd_t *rd, uint32_t fields, uint64_t last);

//  Sends the held pages that wait for no batch still in flight; head is
//  the request id of the oldest batch in flight (0: none).
void zim_reads_release (zim_reads_t *self, uint64_t head);

//  Answers 5040 to reads the store has not answered within store_timeout.
void zim_reads_expire (zim_reads_t *self, uint64_t now_us);

//  True while reads wait for a store (their deadlines need a timer).
bool zim_reads_waiting (zim_reads_t *self);

//  Self test of this class.
void zim_reads_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
