/*  zim_deliver.h: everything a broker sends to gateways, as OUT messages on
    its front ROUTER: acks, live messages grouped by gateway (one OUT per
    gateway, listing its connections), pages and errors.

    Bytes, not only messages, are bounded: each OUT larger than
    ZIM_DELIVER_SMALL is handed to libzmq zero-copy with a free callback, so
    the broker knows how many bytes of them each gateway has not taken yet
    (in the socket's queue and its I/O thread). Once max_out_bytes are
    queued to one gateway, such OUTs are not sent: a message is dropped (the
    recipient sees the seq gap and syncs), a page is answered with 5030
    instead, and each is counted (out_dropped). Small OUTs (acks, errors,
    short messages) are bounded by the socket's message high-water mark
    alone (docs/ARCHITECTURE.md, "Bounded memory").
*/
#ifndef ZIM_DELIVER_H_INCLUDED
#define ZIM_DELIVER_H_INCLUDED

#include "broker/zim_broker.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"

#ifdef __cplusplus
extern "C" {
#endif

//  OUTs of at most this many bytes are neither counted nor held to the
//  byte budget.
#define ZIM_DELIVER_SMALL 256

typedef struct _zim_deliver_t zim_deliver_t;

//  Creates the deliverer; limits and stats are the actor's (borrowed).
//  Caller owns return value.
zim_deliver_t *zim_deliver_new (zim_shell_t *shell, const zim_broker_limits_t *limits,
                                zim_broker_stats_t *stats);
//  Destroys it. OUTs libzmq still holds keep their gateway's account alive
//  until they are freed.
void zim_deliver_destroy (zim_deliver_t **self_p);

//  The ROUTER the gateways connect to (borrowed; ROUTER_MANDATORY set, so
//  an OUT to a gateway that has gone fails at once). Until set, every OUT
//  is unroutable.
void zim_deliver_use (zim_deliver_t *self, zsock_t *front);

//  The client frame buffer, emptied: encode one or more frames into it,
//  then call zim_deliver_out.
zim_wr_t *zim_deliver_frame (zim_deliver_t *self);

//  Sends the frame buffer in one OUT to conns[0..n) on gateway gw (its
//  routing id). Returns 0; -1 when the gateway is gone or its queue is full
//  (counted unroutable: the client syncs or retries); ZIM_EFULL when the
//  OUT is large and the gateway's byte budget is spent (counted
//  out_dropped, logged rate-limited).
int zim_deliver_out (zim_deliver_t *self, const void *gw, size_t gw_len, const uint64_t *conns,
                     uint32_t n);

//  Sends one backbone message other than an OUT (a CONN_CTL: connections
//  of gw join or leave a room) to gateway gw, in order with its OUTs.
//  Returns 0, or -1 when the gateway is gone or its queue is full
//  (counted unroutable).
int zim_deliver_ctl (zim_deliver_t *self, const void *gw, size_t gw_len, const void *msg,
                     size_t size);

//  Sends an error frame to one connection; cid (ptr NULL: none) and rid
//  (has_rid false: none) name the request it answers.
void zim_deliver_error (zim_deliver_t *self, const void *gw, size_t gw_len, uint64_t conn, int code,
                        zim_str_t cid, bool has_rid, uint64_t rid);

//  Answers a stored send m that came from gateway gw: its ack (the store's
//  id, sender's seq and ts), then the message with the recipient's seq to
//  the recipient's connections and with the sender's seq to the sender's
//  other connections. Only what the store confirmed is sent: res is its
//  answer, and m's recipient and body are the stored ones (the store
//  answers a cid holding another message with a conflict, never here).
//  lists points at the send's two route lists in a ROUTE_R (recipient's,
//  then sender's), or is NULL when there are none (acked, not delivered).
//  Returns 0, or -1 when the lists are malformed (acked, not delivered;
//  the reader is then unusable).
int zim_deliver_sent (zim_deliver_t *self, zframe_t *gw, const zim_send_t *m,
                      const zim_appended_item_t *res, zim_rd_t *lists);

//  Sends the frame buffer to every connection of the next route list of a
//  ROUTE_R (lists: its reader, at a list), one OUT per gateway, except
//  connection skip_conn of gateway skip_gw (NULL: none). Returns 0, or -1
//  when the list is malformed (the reader is then unusable).
int zim_deliver_fan (zim_deliver_t *self, zim_rd_t *lists, const void *skip_gw, size_t skip_len,
                     uint64_t skip_conn);

//  The recipient's routes the last zim_deliver_sent read (or the list the
//  last zim_deliver_fan read): valid until the next call of either. *n
//  gets how many.
const zim_route_t *zim_deliver_routes (zim_deliver_t *self, uint32_t *n);

//  Bytes of large OUTs handed to libzmq and not yet taken by their gateways.
uint64_t zim_deliver_queued (zim_deliver_t *self);

//  One OUT as its gateway reads it (for tests).
typedef struct {
    uint32_t nconns; //  connections it lists
    uint64_t conn;   //  the first of them
    char op[16];     //  its first client frame's op
    int64_t code;    //  that frame's code, 0 if none
    uint64_t seq;    //  its seq, 0 if none
    uint64_t id;     //  its id, 0 if none
    uint64_t rid;    //  its rid, 0 if none
} zim_deliver_peek_t;

//  Receives one OUT on a DEALER playing a gateway (within its receive
//  timeout) into peek; its connections go to conns (up to max; conns may
//  be NULL). Returns 0, or -1 if none came or it is not an OUT.
int zim_deliver_recv (zsock_t *gw, zim_deliver_peek_t *peek, uint64_t *conns, uint32_t max);

//  Self test of this class.
void zim_deliver_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
