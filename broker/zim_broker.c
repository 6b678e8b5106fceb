/*  zim_broker.c: the message actor. Every SEND it drains from the gateways
    in one go becomes one batch: one APPEND per store shard and, in
    parallel, one ROUTE_Q to a router. A batch completes, strictly in
    arrival order, when the stores have committed it and the routes are
    known; then the senders get their acks and the recipients (and the
    senders' other devices) their deliveries. Sync, history and cursor
    requests are relayed to the user's shard and their pages returned to the
    asking connection.

    Shards: zim-server gives one store (CONNECT store). In a cluster the
    shards are the store nodes of the cluster map (and the `shards` setting),
    and a user lives on zim_ring_lookup (app, uid). A message whose two users
    live on different shards is written in two phases: the sender's shard
    first (sides 1), which fixes its id and timestamp (the original ones for
    a retry), then the recipient's shard (sides 2) with that same id; the
    sender is acked only when both have committed.
*/
#include "broker/zim_broker.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

//  Message ids: milliseconds since 2024-01-01 (41 bits), node id (10 bits),
//  a counter within the millisecond (12 bits). Ids grow with time, so the
//  store can page history by id and purge by age.
#define ZIM_ID_EPOCH_MS 1704067200000ULL

//  One send inside a batch. Views in m point into frame.
typedef struct {
    zframe_t *gw;        //  routing id of the gateway it came from
    zframe_t *frame;     //  the SEND message
    zim_send_t m;        //  decoded SEND
    uint64_t id;         //  assigned message id
    uint64_t ts;         //  assigned timestamp (ms)
    int shard_from;      //  the sender's shard, -1 if none is known
    int shard_to;        //  the recipient's shard, -1 if none is known
    bool done;           //  every write it needs has answered
    int err;             //  client error code once failed, else 0
    zim_appended_item_t res; //  the store's result: canonical id and ts,
                             //  from_seq, and to_seq (from the second
                             //  phase for a cross-shard message)
} s_item_t;

//  A batch of sends on its way through stores and router.
typedef struct {
    uint64_t req;       //  request id of its ROUTE_Q
    s_item_t *items;    //  the sends, in arrival order
    size_t count;       //  number of items
    size_t writes;      //  APPENDs sent and not yet answered
    zframe_t *routes;   //  router answer, once it came
    bool routing;       //  its ROUTE_Q went out (once every write answered)
    bool unrouted;      //  no ROUTE_Q was sent or none could be: no answer comes
    uint64_t born_us;   //  when it was sent (monotonic)
    uint64_t routed_us; //  when its ROUTE_Q went out
} s_batch_t;

//  One APPEND to one shard for some items of a batch.
typedef struct {
    uint64_t req;       //  its request id
    s_batch_t *batch;   //  the batch it belongs to
    int shard;          //  the shard it went to
    int sides;          //  ZIM_SIDE_TO for the second phase, else 0
    uint32_t *idx;      //  the items, as indexes into batch->items
    uint32_t n;         //  how many
} s_write_t;

//  One store shard.
typedef struct {
    char *name;         //  its node name ("" for zim-server's one store)
    char *endpoint;     //  where it is reached, NULL until a map says
    zsock_t *sock;      //  DEALER to it, NULL until then
} s_shard_t;

#define S_SHARDS_MAX 256

//  A sync or history request waiting for its PAGE.
typedef struct {
    uint64_t req;     //  store request id
    zframe_t *gw;     //  gateway routing id
    uint64_t conn;    //  connection on that gateway
    uint64_t rid;     //  client's request id
    bool has_rid;     //  client gave a rid
    uint64_t born_us; //  when it was sent
} s_read_t;

//  A page (or read error) answered by the store while batches received
//  before it were still unanswered: it waits for them, so that the store's
//  answer to a sync never reaches a client before the ack of a send it
//  contains (the client could not tell its own send from one of its other
//  devices'). Holds the client frame and where it goes.
typedef struct {
    uint64_t after;   //  sent once no batch with req <= after is in flight
    zframe_t *gw;     //  gateway routing id
    uint64_t conn;    //  connection on that gateway
    uint8_t *frame;   //  the client frame
    size_t size;      //  its size
} s_parked_t;

typedef struct {
    zsock_t *pipe;     //  actor pipe
    zsock_t *front;    //  ROUTER for gateways
    zsock_t *router;   //  DEALER to the routers (each ROUTE_Q goes to one)
    s_shard_t shards[S_SHARDS_MAX]; //  store shards, in the order first seen
    size_t nshards;    //  how many
    zim_ring_t *ring;  //  placement over the shard names; NULL with one
                       //  store from CONNECT store
    bool has_store;    //  CONNECT store was given (zim-server)
    char *name;        //  node name
    uint64_t node_id;  //  0..1023
    bool has_router;   //  CONNECT router was given
    bool router_down;  //  the last ROUTE_Q found no router to take it
    bool started;      //  START was received
    bool terminated;   //  $TERM was received
    int port;          //  port of the last tcp BIND
    size_t max_inflight;      //  sends waiting for the store, at most
    size_t max_batch;         //  sends per batch
    uint64_t store_timeout_us; //  store answer deadline
    uint64_t route_timeout_us; //  router answer deadline
    uint64_t next_req;        //  request id counter
    uint64_t last_ms;         //  id generator: millisecond of the last id
    uint64_t id_seq;          //  id generator: counter within last_ms
    s_batch_t *open;          //  batch being filled by the current drain
    zlistx_t *batches;        //  s_batch_t in flight, oldest first
    zlistx_t *reads;          //  s_read_t in flight, oldest first
    zlistx_t *writes;         //  s_write_t in flight
    zlistx_t *parked;         //  s_parked_t waiting for batches, oldest first
    size_t parked_bytes;      //  their frames' bytes
    size_t max_parked;        //  at most; a read beyond gets 5030
    bool parked_full;         //  the last read to park found no room (logged)
    size_t inflight;          //  sends in batches in flight
    zim_wr_t wr;              //  encode buffer for backbone messages
    zim_wr_t fr;              //  encode buffer for client frames
    //  Counters (STATS)
    uint64_t sends, acks, duplicates, deliveries, send_errors, rejected_full;
    uint64_t store_timeouts, route_timeouts, unroutable, reads_n, cursors, bad;
    uint64_t cross_shard, no_shard, parked_refused;
} s_broker_t;

static uint64_t s_next_id (s_broker_t *self, uint64_t now_ms)
{
    if (now_ms > self->last_ms) {
        self->last_ms = now_ms;
        self->id_seq = 0;
    }
    else if (++self->id_seq >= 4096) {
        //  More than 4096 ids in one millisecond: borrow the next one.
        self->last_ms++;
        self->id_seq = 0;
    }
    return ((self->last_ms - ZIM_ID_EPOCH_MS) << 22) | ((self->node_id & 1023) << 12) |
           self->id_seq;
}

static void s_batch_destroy (s_batch_t **batch_p)
{
    s_batch_t *batch = *batch_p;
    if (!batch)
        return;
    for (size_t i = 0; i < batch->count; i++) {
        zframe_destroy (&batch->items[i].gw);
        zframe_destroy (&batch->items[i].frame);
    }
    free (batch->items);
    zframe_destroy (&batch->routes);
    free (batch);
    *batch_p = NULL;
}

static void s_read_destroy (s_read_t **read_p)
{
    if (*read_p)
        zframe_destroy (&(*read_p)->gw);
    zim_free (read_p);
}

static void s_parked_destroy (s_parked_t **parked_p)
{
    if (*parked_p) {
        zframe_destroy (&(*parked_p)->gw);
        free ((*parked_p)->frame);
    }
    zim_free (parked_p);
}

static void s_write_destroy (s_write_t **write_p)
{
    if (*write_p)
        free ((*write_p)->idx);
    zim_free (write_p);
}

//  The shard of a user, or -1 when there is none yet.
static int s_shard_of (s_broker_t *self, zim_str_t app, zim_str_t uid)
{
    if (self->ring)
        return zim_ring_lookup (self->ring, app, uid);
    return self->nshards ? 0 : -1;
}

//  The shard called name, added (and the ring rebuilt) if new; -1 when the
//  table is full.
static int s_shard_find (s_broker_t *self, const char *name, size_t len)
{
    for (size_t i = 0; i < self->nshards; i++)
        if (strlen (self->shards[i].name) == len && memcmp (self->shards[i].name, name, len) == 0)
            return (int) i;
    if (self->nshards == S_SHARDS_MAX)
        return -1;
    s_shard_t *shard = &self->shards[self->nshards++];
    *shard = (s_shard_t){zim_calloc (1, len + 1), NULL, NULL};
    memcpy (shard->name, name, len);
    const char *names[S_SHARDS_MAX];
    for (size_t i = 0; i < self->nshards; i++)
        names[i] = self->shards[i].name;
    zim_ring_destroy (&self->ring);
    self->ring = zim_ring_new (names, self->nshards);
    zsys_info ("broker %s: store shard %s joins the placement (%zu shards)", self->name,
               shard->name, self->nshards);
    return (int) self->nshards - 1;
}

//  Points a shard's DEALER at endpoint (a new socket when it moved). A
//  shard that is down makes sends fail at once (ZMQ_IMMEDIATE) instead of
//  queueing behind it; their clients retry.
static void s_shard_connect (s_broker_t *self, int index, const char *endpoint, size_t len)
{
    s_shard_t *shard = &self->shards[index];
    if (shard->endpoint && strlen (shard->endpoint) == len &&
        memcmp (shard->endpoint, endpoint, len) == 0)
        return;
    zsock_destroy (&shard->sock);
    free (shard->endpoint);
    shard->endpoint = zim_calloc (1, len + 1);
    memcpy (shard->endpoint, endpoint, len);
    shard->sock = zsock_new (ZMQ_DEALER);
    assert (shard->sock);
    zsock_set_linger (shard->sock, 0);
    zsock_set_sndhwm (shard->sock, 10000);
    zsock_set_immediate (shard->sock, 1);
    if (zsock_connect (shard->sock, "%s", shard->endpoint) == -1)
        zsys_error ("broker %s: cannot connect store shard %s at %s", self->name, shard->name,
                    shard->endpoint);
    else
        zsys_info ("broker %s: store shard %s at %s", self->name, shard->name, shard->endpoint);
}

//  Sends self->wr to a shard without blocking; -1 when it cannot take it
//  (unknown endpoint, down, or far behind).
static int s_shard_send (s_broker_t *self, int index)
{
    if (index < 0 || !self->shards[index].sock)
        return -1;
    return zmq_send (zsock_resolve (self->shards[index].sock), self->wr.data, self->wr.size,
                     ZMQ_DONTWAIT) == -1
               ? -1
               : 0;
}

//  Takes the store shards of a cluster map: new names join the placement,
//  moved endpoints are reconnected. Shards are never removed: a shard that
//  is down keeps its users, who get 5030 until it is back.
static void s_handle_map (s_broker_t *self, zframe_t *frame)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_map_t map;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_decode (&rd, fields, &map))
        goto malformed;
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t member;
        if (zim_member_next (&map.members, &member))
            goto malformed;
        if (!zim_str_eq (member.role, "store") || member.name.len == 0 ||
            member.endpoint.len == 0)
            continue;
        int index = s_shard_find (self, member.name.ptr, member.name.len);
        if (index == -1) {
            zsys_error ("broker %s: more than %d store shards; %.*s ignored", self->name,
                        S_SHARDS_MAX, (int) member.name.len, member.name.ptr);
            continue;
        }
        s_shard_connect (self, index, member.endpoint.ptr, member.endpoint.len);
    }
    return;
malformed:
    self->bad++;
    zsys_warning ("broker %s: dropped a malformed cluster map", self->name);
}

//  Receives one frame without waiting; NULL when none is there. Cheaper than
//  asking ZMQ_EVENTS first: only the final, empty receive checks the
//  socket's command mailbox (a system call).
static zframe_t *s_recv_nowait (zsock_t *sock)
{
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    if (zmq_msg_recv (&msg, zsock_resolve (sock), ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (&msg);
        return NULL;
    }
    zframe_t *frame = zframe_new (zmq_msg_data (&msg), zmq_msg_size (&msg));
    zmq_msg_close (&msg);
    return frame;
}

//  Sends an OUT holding self->fr's frames to conns on gateway gw. A gateway
//  that is gone or too slow to take it loses it: the client syncs later.
static void s_out (s_broker_t *self, const void *gw, size_t gw_len, const uint64_t *conns,
                   uint32_t nconns)
{
    zim_wr_reset (&self->wr);
    zim_out_encode (&self->wr, conns, nconns, (zim_str_t){self->fr.data, self->fr.size});
    void *sock = zsock_resolve (self->front);
    if (zmq_send (sock, gw, gw_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1)
        self->unroutable++;
}

//  Sends an error frame to one connection.
static void s_error_to (s_broker_t *self, zframe_t *gw, uint64_t conn, int code, zim_str_t cid,
                        bool has_rid, uint64_t rid)
{
    zim_wr_reset (&self->fr);
    zim_cframe_error (&self->fr, code, NULL, cid, has_rid, rid);
    s_out (self, zframe_data (gw), zframe_size (gw), &conn, 1);
}

//  Delivers self->fr to every route in a list except the one excluded,
//  grouping connections by gateway: one OUT per gateway.
static void s_deliver_list (s_broker_t *self, zim_route_t *routes, uint32_t n, zframe_t *skip_gw,
                            uint64_t skip_conn)
{
    uint64_t conns[64];
    bool done[256] = {false};
    if (n > 256)
        n = 256; //  more live devices than that for one user is not served live
    for (uint32_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        uint32_t nconns = 0;
        for (uint32_t j = i; j < n && nconns < 64; j++) {
            if (done[j] || routes[j].gateway.len != routes[i].gateway.len ||
                memcmp (routes[j].gateway.ptr, routes[i].gateway.ptr, routes[i].gateway.len))
                continue;
            done[j] = true;
            if (skip_gw && routes[j].conn == skip_conn &&
                routes[j].gateway.len == zframe_size (skip_gw) &&
                memcmp (routes[j].gateway.ptr, zframe_data (skip_gw), zframe_size (skip_gw)) == 0)
                continue;
            conns[nconns++] = routes[j].conn;
        }
        if (nconns) {
            s_out (self, routes[i].gateway.ptr, routes[i].gateway.len, conns, nconns);
            self->deliveries += nconns;
        }
    }
}

//  Reads one route list from the ROUTE_R reader into routes (at most max).
static int s_route_list (zim_rd_t *lists, zim_route_t *routes, uint32_t max, uint32_t *n)
{
    uint32_t count;
    if (zim_rd_array (lists, &count))
        return -1;
    *n = 0;
    for (uint32_t i = 0; i < count; i++) {
        zim_route_t route;
        if (zim_route_next (lists, &route))
            return -1;
        if (*n < max)
            routes[(*n)++] = route;
    }
    return 0;
}

//  Finishes a batch: acks or errors to senders, deliveries to recipients.
static void s_batch_complete (s_broker_t *self, s_batch_t *batch)
{
    zim_route_r_t rr = {0};
    bool have_routes = false;
    if (batch->routes) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (batch->routes), zframe_size (batch->routes));
        have_routes = zim_msg_kind (&rd, &kind, &fields) == 0 &&
                      zim_route_r_decode (&rd, fields, &rr) == 0 &&
                      rr.nlists == 2 * batch->count;
        if (!have_routes) {
            self->bad++;
            zsys_warning ("broker %s: router answered batch %" PRIu64 " with a bad ROUTE_R",
                          self->name, batch->req);
        }
    }
    for (size_t i = 0; i < batch->count; i++) {
        s_item_t *item = &batch->items[i];
        zim_appended_item_t res = item->res;
        int err = item->err ? item->err : item->done ? 0 : ZIM_ERR_TIMEOUT;
        zim_route_t to_routes[256], from_routes[256];
        uint32_t nto = 0, nfrom = 0;
        if (have_routes && (s_route_list (&rr.lists, to_routes, 256, &nto) ||
                            s_route_list (&rr.lists, from_routes, 256, &nfrom))) {
            have_routes = false;
            nto = nfrom = 0;
        }
        if (err) {
            self->send_errors++;
            s_error_to (self, item->gw, item->m.who.conn, err, item->m.cid, false, 0);
            continue;
        }
        if (res.status == ZIM_APPEND_DUPLICATE)
            self->duplicates++;
        //  Ack the sending connection.
        zim_wr_reset (&self->fr);
        zim_cframe_ack (&self->fr, item->m.cid, res.id, res.from_seq, res.ts);
        s_out (self, zframe_data (item->gw), zframe_size (item->gw), &item->m.who.conn, 1);
        self->acks++;
        //  Deliver to the recipient's connections, with the recipient's seq.
        zim_item_t msg = {0, res.id, res.ts, item->m.who.uid, item->m.to, item->m.body};
        bool self_send = item->m.to.len == item->m.who.uid.len &&
                         memcmp (item->m.to.ptr, item->m.who.uid.ptr, item->m.to.len) == 0;
        if (!self_send && nto) {
            msg.seq = res.to_seq;
            zim_wr_reset (&self->fr);
            zim_cframe_msg (&self->fr, &msg);
            s_deliver_list (self, to_routes, nto, NULL, 0);
        }
        //  And to the sender's other devices, with the sender's seq.
        if (nfrom > 1) {
            msg.seq = res.from_seq;
            zim_wr_reset (&self->fr);
            zim_cframe_msg (&self->fr, &msg);
            s_deliver_list (self, from_routes, nfrom, item->gw, item->m.who.conn);
        }
    }
    self->inflight -= batch->count;
}

//  Forgets the writes of a batch that completes without them: a late answer
//  finds nothing and is dropped (the senders got 5040 and retry).
static void s_writes_forget (s_broker_t *self, s_batch_t *batch)
{
    for (s_write_t *write = zlistx_first (self->writes); write;
         write = zlistx_next (self->writes))
        if (write->batch == batch) {
            zlistx_detach_cur (self->writes);
            s_write_destroy (&write);
        }
    batch->writes = 0;
}

//  Sends the parked pages whose batches have all completed, in order.
static void s_parked_release (s_broker_t *self)
{
    s_batch_t *head = (s_batch_t *) zlistx_first (self->batches);
    s_parked_t *parked;
    while ((parked = (s_parked_t *) zlistx_first (self->parked)) &&
           (!head || parked->after < head->req)) {
        zlistx_detach (self->parked, NULL);
        zim_wr_reset (&self->fr);
        zim_wr_raw (&self->fr, parked->frame, parked->size);
        s_out (self, zframe_data (parked->gw), zframe_size (parked->gw), &parked->conn, 1);
        self->parked_bytes -= parked->size;
        s_parked_destroy (&parked);
    }
}

//  Sends self->fr, the answer to a read, to its connection now, or parks it
//  until the batches in flight (which it may contain sends of) completed.
//  Parked pages are bounded by max_parked bytes: beyond, the read gets 5030
//  and the client syncs again.
static void s_read_answer (s_broker_t *self, s_read_t *read)
{
    s_batch_t *last = (s_batch_t *) zlistx_last (self->batches);
    if (!last && zlistx_size (self->parked) == 0) {
        s_out (self, zframe_data (read->gw), zframe_size (read->gw), &read->conn, 1);
        return;
    }
    bool full = self->parked_bytes + self->fr.size > self->max_parked;
    if (full != self->parked_full) {
        self->parked_full = full;
        if (full)
            zsys_warning ("broker %s: %zu bytes of pages wait for earlier sends (max_parked): "
                          "further syncs get 5030 until they drain",
                          self->name, self->parked_bytes);
        else
            zsys_info ("broker %s: pages waiting for sends are below max_parked again",
                       self->name);
    }
    if (full) {
        self->parked_refused++;
        s_error_to (self, read->gw, read->conn, ZIM_ERR_UNAVAILABLE, (zim_str_t){0},
                    read->has_rid, read->rid);
        return;
    }
    s_parked_t *parked = (s_parked_t *) zim_calloc (1, sizeof *parked);
    s_parked_t *prev = (s_parked_t *) zlistx_last (self->parked);
    parked->after = last ? last->req : 0;
    if (prev && prev->after > parked->after)
        parked->after = prev->after;
    parked->gw = zframe_dup (read->gw);
    parked->conn = read->conn;
    parked->frame = (uint8_t *) zim_calloc (1, self->fr.size ? self->fr.size : 1);
    memcpy (parked->frame, self->fr.data, self->fr.size);
    parked->size = self->fr.size;
    self->parked_bytes += parked->size;
    zlistx_add_end (self->parked, parked);
}

//  Completes batches from the head of the queue while they are ready, so
//  that acks and deliveries leave in the order the sends came in.
static void s_batches_drain (s_broker_t *self, uint64_t now_us)
{
    s_batch_t *batch;
    while ((batch = zlistx_first (self->batches))) {
        uint64_t age = now_us - batch->born_us;
        bool store_late = batch->writes && age > self->store_timeout_us;
        bool route_late = !batch->routes &&
                          (batch->unrouted ||
                           (batch->routing && now_us - batch->routed_us > self->route_timeout_us));
        if (store_late) {
            self->store_timeouts++;
            zsys_error ("broker %s: a store did not answer batch %" PRIu64 " (%zu sends) in %" PRIu64
                        " ms; senders get 5040 and may retry",
                        self->name, batch->req, batch->count, age / 1000);
            s_writes_forget (self, batch);
            if (!batch->routing)
                batch->unrouted = true; //  what was stored is acked, recipients sync
        }
        else if (batch->writes || (!batch->routes && !route_late))
            break;
        if (!batch->routes && !batch->unrouted) {
            self->route_timeouts++;
            zsys_warning ("broker %s: router did not answer batch %" PRIu64
                          "; acked without live delivery",
                          self->name, batch->req);
        }
        zlistx_detach (self->batches, NULL);
        s_batch_complete (self, batch);
        s_batch_destroy (&batch);
    }
    s_parked_release (self);
}

//  Sends one APPEND to a shard for the items idx[0..n) of a batch, with
//  sides ZIM_SIDE_TO (second phase) or as each item needs (first phase).
//  Items it could not send fail with 5030.
static void s_write_send (s_broker_t *self, s_batch_t *batch, int shard, int sides,
                          uint32_t *idx, uint32_t n)
{
    s_write_t *write = zim_calloc (1, sizeof *write);
    *write = (s_write_t){++self->next_req, batch, shard, sides, idx, n};
    zim_wr_reset (&self->wr);
    zim_append_begin (&self->wr, write->req, n);
    for (uint32_t i = 0; i < n; i++) {
        s_item_t *item = &batch->items[idx[i]];
        bool cross = item->shard_to != item->shard_from;
        zim_append_item_t ai = {item->id,   item->ts,    item->m.who.app, item->m.who.uid,
                                item->m.to, item->m.cid, item->m.body,
                                sides ? (uint64_t) sides : cross ? ZIM_SIDE_FROM : ZIM_SIDE_BOTH};
        if (sides) {
            //  The second half carries the id and time the first half fixed.
            ai.id = item->res.id;
            ai.ts = item->res.ts;
        }
        zim_append_item (&self->wr, &ai);
    }
    if (s_shard_send (self, shard) == -1) {
        //  A full or absent shard pipe: fail fast, the senders retry.
        const char *name = shard >= 0 ? self->shards[shard].name : "(none)";
        zsys_warning ("broker %s: store shard %s cannot take %u sends now (down or far "
                      "behind); senders get 5030",
                      self->name, name, n);
        for (uint32_t i = 0; i < n; i++)
            batch->items[idx[i]].err = ZIM_ERR_UNAVAILABLE;
        s_write_destroy (&write);
        return;
    }
    batch->writes++;
    zlistx_add_end (self->writes, write);
}

//  Sends items of a batch to their shards: the first phase (sides 0) groups
//  the given items by sender's shard, the second (ZIM_SIDE_TO) by
//  recipient's shard.
static void s_write_items (s_broker_t *self, s_batch_t *batch, const uint32_t *items, uint32_t n,
                           int sides)
{
    bool *sent = zim_calloc (n ? n : 1, sizeof (bool));
    for (uint32_t i = 0; i < n; i++) {
        if (sent[i])
            continue;
        s_item_t *first = &batch->items[items[i]];
        int shard = sides ? first->shard_to : first->shard_from;
        uint32_t *idx = zim_malloc (n * sizeof (uint32_t));
        uint32_t count = 0;
        for (uint32_t j = i; j < n; j++) {
            s_item_t *item = &batch->items[items[j]];
            if (!sent[j] && (sides ? item->shard_to : item->shard_from) == shard) {
                sent[j] = true;
                idx[count++] = items[j];
            }
        }
        s_write_send (self, batch, shard, sides, idx, count);
    }
    free (sent);
}

//  Asks a router where the recipients and the senders' other devices are,
//  once every write of the batch has answered. Asking only after the commit
//  closes a race: a device whose PRESENCE reaches the router after this
//  query syncs after it too, and by then the message is committed and in
//  its sync page; asked in parallel with the write, the route could miss the
//  device while its sync still missed the uncommitted message.
static void s_batch_route (s_broker_t *self, s_batch_t *batch)
{
    bool any = false;
    for (size_t i = 0; i < batch->count && !any; i++)
        any = batch->items[i].done && !batch->items[i].err;
    if (!any) {
        batch->unrouted = true; //  nothing to deliver
        return;
    }
    zim_wr_reset (&self->wr);
    zim_route_q_begin (&self->wr, batch->req, (uint32_t) (2 * batch->count));
    for (size_t i = 0; i < batch->count; i++) {
        zim_route_key (&self->wr, batch->items[i].m.who.app, batch->items[i].m.to);
        zim_route_key (&self->wr, batch->items[i].m.who.app, batch->items[i].m.who.uid);
    }
    //  Without a router the batch completes at once, with no live delivery:
    //  the recipients get it by sync.
    batch->unrouted = !self->has_router || zmq_send (zsock_resolve (self->router), self->wr.data,
                                                     self->wr.size, ZMQ_DONTWAIT) == -1;
    batch->routing = !batch->unrouted;
    batch->routed_us = zim_mono_us ();
    if (self->has_router && batch->unrouted != self->router_down) {
        self->router_down = batch->unrouted;
        if (batch->unrouted)
            zsys_warning ("broker %s: no router reachable: sends are stored and acked without "
                          "live delivery (recipients sync) until one is back",
                          self->name);
        else
            zsys_info ("broker %s: a router is reachable again: live delivery resumes",
                       self->name);
    }
}

//  Sends the open batch to the stores, then (s_batch_route) to a router.
static void s_batch_flush (s_broker_t *self)
{
    s_batch_t *batch = self->open;
    if (!batch)
        return;
    self->open = NULL;
    batch->born_us = zim_mono_us ();
    uint32_t *all = zim_malloc (batch->count * sizeof (uint32_t));
    for (size_t i = 0; i < batch->count; i++) {
        s_item_t *item = &batch->items[i];
        item->shard_from = s_shard_of (self, item->m.who.app, item->m.who.uid);
        item->shard_to = s_shard_of (self, item->m.who.app, item->m.to);
        if (item->shard_from != item->shard_to)
            self->cross_shard++;
        if (item->shard_from == -1)
            self->no_shard++;
        all[i] = (uint32_t) i;
    }
    s_write_items (self, batch, all, (uint32_t) batch->count, 0);
    free (all);
    zlistx_add_end (self->batches, batch);
    self->inflight += batch->count;
    if (batch->writes == 0)
        s_batch_route (self, batch);
}

//  Takes one APPENDED into its batch: results of the first phase fix each
//  item's id and seqs and start the second phase where the recipient lives
//  on another shard; results of the second add the recipient's seq.
static void s_handle_appended (s_broker_t *self, s_write_t *write, zim_rd_t *rd, uint32_t fields)
{
    s_batch_t *batch = write->batch;
    zim_appended_t ap;
    bool ok = zim_appended_decode (rd, fields, &ap) == 0 && ap.nitems == write->n;
    if (!ok) {
        self->bad++;
        zsys_error ("broker %s: store shard %s answered with a bad APPENDED", self->name,
                    self->shards[write->shard].name);
    }
    uint32_t *second = zim_malloc (write->n * sizeof (uint32_t));
    uint32_t nsecond = 0;
    for (uint32_t i = 0; i < write->n; i++) {
        s_item_t *item = &batch->items[write->idx[i]];
        zim_appended_item_t res;
        if (!ok || zim_appended_item_next (&ap.items, &res)) {
            ok = false;
            item->err = ZIM_ERR_INTERNAL;
            continue;
        }
        if (res.status == ZIM_EFULL)
            item->err = ZIM_ERR_UNAVAILABLE;
        else if (res.status < 0)
            item->err = ZIM_ERR_INTERNAL;
        else if (write->sides == ZIM_SIDE_TO) {
            item->res.to_seq = res.to_seq;
            item->done = true;
        }
        else {
            item->res = res;
            if (item->shard_to == item->shard_from)
                item->done = true;
            else
                second[nsecond++] = write->idx[i];
        }
    }
    if (nsecond)
        s_write_items (self, batch, second, nsecond, ZIM_SIDE_TO);
    free (second);
}

//  Takes one SEND into the open batch; gw and frame are taken over.
static void s_handle_send (s_broker_t *self, zframe_t **gw, zframe_t **frame, zim_rd_t *rd,
                           uint32_t fields)
{
    zim_send_t m;
    if (zim_send_decode (rd, fields, &m) || zim_rd_left (rd)) {
        self->bad++;
        zsys_warning ("broker %s: dropped a malformed SEND", self->name);
        return;
    }
    self->sends++;
    if (!zim_uid_valid (m.to) || !zim_uid_valid (m.who.uid)) {
        self->send_errors++;
        s_error_to (self, *gw, m.who.conn, ZIM_ERR_BAD_RECIPIENT, m.cid, false, 0);
        return;
    }
    if (self->inflight + (self->open ? self->open->count : 0) >= self->max_inflight) {
        self->rejected_full++;
        s_error_to (self, *gw, m.who.conn, ZIM_ERR_UNAVAILABLE, m.cid, false, 0);
        return;
    }
    if (!self->open) {
        self->open = zim_calloc (1, sizeof (s_batch_t));
        self->open->req = ++self->next_req;
        self->open->items = zim_malloc (self->max_batch * sizeof (s_item_t));
    }
    s_batch_t *batch = self->open;
    s_item_t *item = &batch->items[batch->count++];
    uint64_t now_ms = zim_now_ms ();
    *item = (s_item_t){*gw, *frame, m, s_next_id (self, now_ms), now_ms, -1, -1, false, 0, {0}};
    *gw = *frame = NULL;
    if (batch->count == self->max_batch)
        s_batch_flush (self);
}

//  Relays a sync or history request to the store.
static void s_handle_read (s_broker_t *self, zframe_t **gw, int kind, zim_rd_t *rd,
                           uint32_t fields)
{
    zim_read_t r = {0};
    s_read_t *pending = zim_calloc (1, sizeof *pending);
    if (kind == ZIM_MSG_SYNC) {
        zim_sync_t m;
        if (zim_sync_decode (rd, fields, &m))
            goto malformed;
        r = (zim_read_t){0, ZIM_READ_SYNC, m.who.app, m.who.uid, m.who.device,
                         m.since, m.limit, zim_str ("")};
        pending->conn = m.who.conn;
        pending->rid = m.rid;
    }
    else {
        zim_history_t m;
        if (zim_history_decode (rd, fields, &m))
            goto malformed;
        r = (zim_read_t){0,          ZIM_READ_HISTORY, m.who.app, m.who.uid, m.who.device,
                         (int64_t) m.before, m.limit,  m.peer};
        pending->conn = m.who.conn;
        pending->rid = m.rid;
        if ((int64_t) m.before < 0)
            r.from = INT64_MAX;
    }
    pending->has_rid = true;
    pending->req = r.req = ++self->next_req;
    pending->gw = *gw;
    *gw = NULL;
    pending->born_us = zim_mono_us ();
    zim_wr_reset (&self->wr);
    zim_read_encode (&self->wr, &r);
    if (s_shard_send (self, s_shard_of (self, r.app, r.uid)) == -1) {
        s_error_to (self, pending->gw, pending->conn, ZIM_ERR_UNAVAILABLE, (zim_str_t){0}, true,
                    pending->rid);
        s_read_destroy (&pending);
        return;
    }
    self->reads_n++;
    zlistx_add_end (self->reads, pending);
    return;
malformed:
    free (pending);
    self->bad++;
    zsys_warning ("broker %s: dropped a malformed read request", self->name);
}

static void s_handle_cursor (s_broker_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_cursor_t m;
    if (zim_cursor_decode (rd, fields, &m)) {
        self->bad++;
        zsys_warning ("broker %s: dropped a malformed CURSOR", self->name);
        return;
    }
    zim_setcursor_t sc = {m.who.app, m.who.uid, m.who.device, m.seq};
    zim_wr_reset (&self->wr);
    zim_setcursor_encode (&self->wr, &sc);
    if (s_shard_send (self, s_shard_of (self, sc.app, sc.uid)) == -1)
        zsys_warning ("broker %s: store shard of %.*s unavailable, cursor not moved", self->name,
                      (int) sc.uid.len, sc.uid.ptr);
    self->cursors++;
}

//  Drains the gateways' socket: up to a few batches' worth per call, so the
//  store and router answers are not starved.
static void s_handle_front (s_broker_t *self)
{
    size_t budget = 4 * self->max_batch;
    while (budget--) {
        zframe_t *gw = s_recv_nowait (self->front);
        if (!gw)
            break;
        zframe_t *frame = zsock_rcvmore (self->front) ? zframe_recv (self->front) : NULL;
        if (!frame || zsock_rcvmore (self->front)) {
            while (zsock_rcvmore (self->front)) {
                zframe_t *junk = zframe_recv (self->front);
                zframe_destroy (&junk);
            }
            self->bad++;
            zsys_warning ("broker %s: dropped a message with a wrong frame count", self->name);
            zframe_destroy (&gw);
            zframe_destroy (&frame);
            continue;
        }
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        if (zim_msg_kind (&rd, &kind, &fields)) {
            self->bad++;
            zsys_warning ("broker %s: dropped an undecodable message", self->name);
        }
        else if (kind == ZIM_MSG_SEND)
            s_handle_send (self, &gw, &frame, &rd, fields);
        else if (kind == ZIM_MSG_SYNC || kind == ZIM_MSG_HISTORY)
            s_handle_read (self, &gw, kind, &rd, fields);
        else if (kind == ZIM_MSG_CURSOR)
            s_handle_cursor (self, &rd, fields);
        else {
            self->bad++;
            zsys_warning ("broker %s: dropped a message of unknown kind %d", self->name, kind);
        }
        zframe_destroy (&gw);
        zframe_destroy (&frame);
    }
    s_batch_flush (self);
}

//  Matches a store answer (APPENDED or PAGE) to what waits for it.
static void s_handle_store (s_broker_t *self, zsock_t *sock)
{
    zframe_t *frame;
    while ((frame = s_recv_nowait (sock))) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        uint64_t req;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        zim_rd_t at = rd;
        if (zim_msg_kind (&rd, &kind, &fields) || fields < 1 || zim_rd_uint (&rd, &req))
            goto bad;
        if (kind == ZIM_MSG_APPENDED) {
            s_write_t *write;
            for (write = zlistx_first (self->writes); write; write = zlistx_next (self->writes))
                if (write->req == req)
                    break;
            //  None: its batch timed out already; the senders retry and get
            //  the stored message back as a duplicate.
            if (write) {
                zlistx_detach_cur (self->writes);
                rd = at;
                zim_msg_kind (&rd, &kind, &fields);
                s_batch_t *batch = write->batch;
                batch->writes--;
                s_handle_appended (self, write, &rd, fields);
                s_write_destroy (&write);
                if (batch->writes == 0)
                    s_batch_route (self, batch);
            }
        }
        else if (kind == ZIM_MSG_PAGE) {
            s_read_t *read;
            for (read = zlistx_first (self->reads); read; read = zlistx_next (self->reads))
                if (read->req == req)
                    break;
            if (read) {
                zlistx_detach_cur (self->reads);
                zim_page_t page;
                rd = at;
                zim_wr_reset (&self->fr);
                bool ok = zim_msg_kind (&rd, &kind, &fields) == 0 &&
                          zim_page_decode (&rd, fields, &page) == 0 && page.status == 0;
                if (ok) {
                    zim_page_t copy = page;
                    for (uint32_t i = 0; ok && i < page.nitems; i++) {
                        zim_item_t item;
                        ok = zim_page_item_next (&copy.items, &item) == 0;
                    }
                }
                if (ok) {
                    zim_cframe_page_begin (&self->fr, read->rid, page.more, page.nitems);
                    for (uint32_t i = 0; i < page.nitems; i++) {
                        zim_item_t item;
                        zim_page_item_next (&page.items, &item);
                        zim_cframe_page_item (&self->fr, &item);
                    }
                    s_read_answer (self, read);
                }
                else
                    s_error_to (self, read->gw, read->conn, ZIM_ERR_INTERNAL, (zim_str_t){0},
                                read->has_rid, read->rid);
                s_read_destroy (&read);
            }
        }
        else
            goto bad;
        zframe_destroy (&frame);
        continue;
    bad:
        self->bad++;
        zsys_warning ("broker %s: dropped an undecodable store answer", self->name);
        zframe_destroy (&frame);
    }
    s_batches_drain (self, zim_mono_us ());
}

static void s_handle_router (s_broker_t *self)
{
    zframe_t *frame;
    while ((frame = s_recv_nowait (self->router))) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        uint64_t req;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_ROUTE_R || fields < 1 ||
            zim_rd_uint (&rd, &req)) {
            self->bad++;
            zsys_warning ("broker %s: dropped an undecodable router answer", self->name);
            zframe_destroy (&frame);
            continue;
        }
        s_batch_t *batch;
        for (batch = zlistx_first (self->batches); batch; batch = zlistx_next (self->batches))
            if (batch->req == req)
                break;
        if (batch && !batch->routes) {
            batch->routes = frame;
            frame = NULL;
        }
        zframe_destroy (&frame);
    }
    s_batches_drain (self, zim_mono_us ());
}

//  Fails reads the store has not answered in time.
static void s_reads_expire (s_broker_t *self, uint64_t now_us)
{
    s_read_t *read;
    while ((read = zlistx_first (self->reads)) &&
           now_us - read->born_us > self->store_timeout_us) {
        zlistx_detach (self->reads, NULL);
        self->store_timeouts++;
        s_error_to (self, read->gw, read->conn, ZIM_ERR_TIMEOUT, (zim_str_t){0}, read->has_rid,
                    read->rid);
        s_read_destroy (&read);
    }
}

static void s_set (s_broker_t *self, const char *key, const char *value)
{
    uint64_t n = 0;
    bool num = zim_parse_u64 (value, &n) == 0;
    if (streq (key, "name")) {
        free (self->name);
        self->name = zim_strdup (value);
    }
    else if (streq (key, "node_id") && num && n < 1024)
        self->node_id = n;
    else if (streq (key, "max_inflight") && num && n > 0)
        self->max_inflight = n;
    else if (streq (key, "max_parked") && num && n > 0)
        self->max_parked = n;
    else if (streq (key, "max_batch") && num && n > 0 && n <= 65536)
        self->max_batch = n;
    else if (streq (key, "store_timeout") && num && n > 0)
        self->store_timeout_us = n * 1000;
    else if (streq (key, "route_timeout") && num && n > 0)
        self->route_timeout_us = n * 1000;
    else if (streq (key, "shards") && !self->has_store) {
        //  Shard names known before any map: placement does not wait for
        //  (or shift with) which stores the first map happens to list.
        const char *at = value;
        while (*at) {
            size_t len = strcspn (at, ", ");
            if (len)
                s_shard_find (self, at, len);
            at += len;
            at += strspn (at, ", ");
        }
    }
    else
        zsys_warning ("broker %s: ignored setting %s=%s", self->name, key, value);
}

static void s_handle_pipe (s_broker_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;
        return;
    }
    char *cmd = zmsg_popstr (msg);
    if (cmd && streq (cmd, "MAP")) {
        zframe_t *frame = zmsg_pop (msg);
        if (frame && !self->has_store)
            s_handle_map (self, frame);
        zframe_destroy (&frame);
        free (cmd);
        zmsg_destroy (&msg);
        return;
    }
    char *a1 = zmsg_popstr (msg);
    char *a2 = zmsg_popstr (msg);
    if (!cmd || streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "SET") && a1 && a2)
        s_set (self, a1, a2);
    else if (streq (cmd, "BIND")) {
        int port = a1 ? zsock_bind (self->front, "%s", a1) : -1;
        if (port == -1)
            zsys_error ("broker %s: cannot bind %s: %s", self->name, a1 ? a1 : "",
                        zmq_strerror (zmq_errno ()));
        else if (port > 0)
            self->port = port;
        zsock_signal (self->pipe, port == -1 ? 1 : 0);
    }
    else if (streq (cmd, "CONNECT")) {
        int rc = -1;
        if (a1 && a2 && streq (a1, "store") && self->nshards == 0) {
            //  zim-server's one store: every user lives there.
            zsock_t *sock = zsock_new (ZMQ_DEALER);
            assert (sock);
            zsock_set_linger (sock, 1000);
            zsock_set_sndhwm (sock, 10000);
            rc = zsock_connect (sock, "%s", a2);
            if (rc == -1)
                zsock_destroy (&sock);
            else {
                self->shards[self->nshards++] =
                    (s_shard_t){zim_strdup (""), zim_strdup (a2), sock};
                self->has_store = true;
            }
        }
        else if (a1 && a2 && streq (a1, "router")) {
            //  Over tcp, ROUTE_Qs go only to routers that are up (a dead
            //  one would swallow its share until route_timeout).
            if (strncmp (a2, "tcp://", 6) == 0)
                zsock_set_immediate (self->router, 1);
            rc = zsock_connect (self->router, "%s", a2);
            if (rc != -1)
                self->has_router = true;
        }
        if (rc == -1)
            zsys_error ("broker %s: cannot connect %s %s", self->name, a1 ? a1 : "?",
                        a2 ? a2 : "?");
        zsock_signal (self->pipe, rc == -1 ? 1 : 0);
    }
    else if (streq (cmd, "START")) {
        if (!self->has_store)
            zsys_info ("broker %s: no CONNECT store: store shards come from the cluster map "
                       "(sends get 5030 until one is known)",
                       self->name);
        if (!self->has_router)
            zsys_warning ("broker %s: no router: messages are stored but not delivered live",
                          self->name);
        self->started = true;
        zsock_signal (self->pipe, 0);
    }
    else if (streq (cmd, "PORT"))
        zstr_sendf (self->pipe, "%d", self->port);
    else if (streq (cmd, "STATS"))
        zstr_sendf (self->pipe,
                    "{\"sends\":%" PRIu64 ",\"acks\":%" PRIu64 ",\"duplicates\":%" PRIu64
                    ",\"deliveries\":%" PRIu64 ",\"send_errors\":%" PRIu64
                    ",\"rejected_full\":%" PRIu64 ",\"store_timeouts\":%" PRIu64
                    ",\"route_timeouts\":%" PRIu64 ",\"unroutable\":%" PRIu64
                    ",\"reads\":%" PRIu64 ",\"cursors\":%" PRIu64 ",\"bad_messages\":%" PRIu64
                    ",\"inflight\":%zu,\"shards\":%zu,\"cross_shard\":%" PRIu64
                    ",\"no_shard\":%" PRIu64 ",\"parked_refused\":%" PRIu64 "}",
                    self->sends, self->acks, self->duplicates, self->deliveries,
                    self->send_errors, self->rejected_full, self->store_timeouts,
                    self->route_timeouts, self->unroutable, self->reads_n, self->cursors,
                    self->bad, self->inflight, self->nshards, self->cross_shard,
                    self->no_shard, self->parked_refused);
    else
        zsys_warning ("broker %s: unknown command '%s'", self->name, cmd);
    free (cmd);
    free (a1);
    free (a2);
    zmsg_destroy (&msg);
}

void zim_broker_actor (zsock_t *pipe, void *args)
{
    s_broker_t self_s = {0}, *self = &self_s;
    self->pipe = pipe;
    self->name = zim_strdup ("broker-1");
    self->node_id = 1;
    self->max_inflight = 65536;
    self->max_parked = 64 << 20;
    self->max_batch = 2048;
    self->store_timeout_us = 5000 * 1000;
    self->route_timeout_us = 1000 * 1000;
    self->front = zsock_new (ZMQ_ROUTER);
    self->router = zsock_new (ZMQ_DEALER);
    assert (self->front && self->router);
    //  Unroutable OUTs fail fast instead of vanishing silently.
    zsock_set_router_mandatory (self->front, 1);
    zsock_set_linger (self->front, 0);
    zsock_set_linger (self->router, 0);
    zsock_set_sndhwm (self->front, 100000);
    zsock_set_rcvhwm (self->front, 100000);
    self->batches = zlistx_new ();
    self->reads = zlistx_new ();
    self->writes = zlistx_new ();
    self->parked = zlistx_new ();
    zim_wr_init (&self->wr);
    zim_wr_init (&self->fr);
    zsock_signal (pipe, 0);

    //  pipe, front, router, then one item per shard (the shards can change
    //  with every map, so the set is rebuilt each time round).
    zmq_pollitem_t items[3 + S_SHARDS_MAX];
    while (!self->terminated) {
        bool waiting = zlistx_size (self->batches) || zlistx_size (self->reads);
        size_t nitems = 1;
        items[0] = (zmq_pollitem_t){zsock_resolve (pipe), 0, ZMQ_POLLIN, 0};
        if (self->started) {
            items[1] = (zmq_pollitem_t){zsock_resolve (self->front), 0, ZMQ_POLLIN, 0};
            items[2] = (zmq_pollitem_t){zsock_resolve (self->router), 0, ZMQ_POLLIN, 0};
            nitems = 3;
            for (size_t i = 0; i < self->nshards; i++)
                if (self->shards[i].sock)
                    items[nitems++] =
                        (zmq_pollitem_t){zsock_resolve (self->shards[i].sock), 0, ZMQ_POLLIN, 0};
        }
        int n = zmq_poll (items, (int) nitems, waiting ? 100 : -1);
        if (n == -1 && zmq_errno () != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        if (!self->started || nitems == 1)
            continue;
        //  A map handled above may have replaced a shard's socket: only
        //  sockets still in the table are read.
        for (size_t i = 3; i < nitems; i++)
            if (items[i].revents & ZMQ_POLLIN)
                for (size_t j = 0; j < self->nshards; j++)
                    if (self->shards[j].sock &&
                        zsock_resolve (self->shards[j].sock) == items[i].socket)
                        s_handle_store (self, self->shards[j].sock);
        if (items[2].revents & ZMQ_POLLIN)
            s_handle_router (self);
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_front (self);
        uint64_t now = zim_mono_us ();
        s_batches_drain (self, now);
        s_reads_expire (self, now);
    }
    s_batch_t *batch;
    while ((batch = zlistx_detach (self->batches, NULL))) {
        s_writes_forget (self, batch);
        s_batch_destroy (&batch);
    }
    s_batch_destroy (&self->open);
    s_read_t *read;
    while ((read = zlistx_detach (self->reads, NULL)))
        s_read_destroy (&read);
    zlistx_destroy (&self->batches);
    zlistx_destroy (&self->reads);
    s_parked_t *parked;
    while ((parked = zlistx_detach (self->parked, NULL)))
        s_parked_destroy (&parked);
    zlistx_destroy (&self->writes);
    zlistx_destroy (&self->parked);
    for (size_t i = 0; i < self->nshards; i++) {
        zsock_destroy (&self->shards[i].sock);
        free (self->shards[i].name);
        free (self->shards[i].endpoint);
    }
    zim_ring_destroy (&self->ring);
    zsock_destroy (&self->front);
    zsock_destroy (&self->router);
    zim_wr_free (&self->wr);
    zim_wr_free (&self->fr);
    free (self->name);
}

//  -------------------------------------------------------------------------
//  Selftest: a real store and router, and a DEALER playing the gateway.

#include "router/zim_router.h"
#include "store/zim_store.h"

//  Receives one OUT on the fake gateway and decodes its first client frame.
static int s_test_out (zsock_t *gw, uint64_t *conn, zim_cframe_t *unused, char *op, size_t size,
                       zframe_t **keep)
{
    (void) unused;
    zframe_t *frame = zframe_recv (gw);
    if (!frame)
        return -1;
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_out_t out;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_OUT);
    assert (zim_out_decode (&rd, fields, &out) == 0 && out.nconns >= 1);
    assert (zim_rd_uint (&out.conns, conn) == 0);
    //  Client frames are maps; the op is read by key.
    zim_rd_t fr;
    zim_rd_init (&fr, out.frames.ptr, out.frames.len);
    uint32_t pairs;
    assert (zim_rd_map (&fr, &pairs) == 0);
    op[0] = 0;
    for (uint32_t i = 0; i < pairs; i++) {
        zim_str_t key, val;
        assert (zim_rd_str (&fr, &key) == 0);
        if (zim_str_eq (key, "op")) {
            assert (zim_rd_str (&fr, &val) == 0);
            zim_str_copy (val, op, size);
        }
        else
            assert (zim_rd_skip (&fr, NULL) == 0);
    }
    *keep = frame;
    return 0;
}

//  One counter from an actor's STATS.
static uint64_t s_test_stat (zactor_t *actor, const char *name)
{
    zstr_sendx (actor, "STATS", NULL);
    char *json = zstr_recv (actor);
    char pattern[64];
    snprintf (pattern, sizeof pattern, "\"%s\":", name);
    char *at = strstr (json, pattern);
    assert (at);
    uint64_t value = strtoull (at + strlen (pattern), NULL, 10);
    free (json);
    return value;
}

//  A store actor with its data in dir/name, bound at inproc://NAME.
static zactor_t *s_test_store (const char *dir, const char *name)
{
    char path[256], endpoint[64];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    snprintf (endpoint, sizeof endpoint, "inproc://%s", name);
    zactor_t *store = zactor_new (zim_store_actor, NULL);
    zstr_sendx (store, "SET", "name", name, NULL);
    zstr_sendx (store, "SET", "data", path, NULL);
    zstr_sendx (store, "SET", "sync", "none", NULL);
    zstr_sendx (store, "BIND", endpoint, NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 0);
    return store;
}

//  A started broker bound at endpoint, connected to the test router and,
//  unless store is NULL, to one store.
static zactor_t *s_test_broker (const char *name, const char *endpoint, const char *store)
{
    zactor_t *broker = zactor_new (zim_broker_actor, NULL);
    zstr_sendx (broker, "SET", "name", name, NULL);
    zstr_sendx (broker, "SET", "node_id", store ? "1" : "2", NULL);
    zstr_sendx (broker, "BIND", endpoint, NULL);
    assert (zsock_wait (broker) == 0);
    if (store) {
        zstr_sendx (broker, "CONNECT", "store", store, NULL);
        assert (zsock_wait (broker) == 0);
    }
    zstr_sendx (broker, "CONNECT", "router", "inproc://bt-router", NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "START", NULL);
    assert (zsock_wait (broker) == 0);
    return broker;
}

//  A DEALER playing gateway gw-t towards endpoint.
static zsock_t *s_test_gateway (const char *endpoint)
{
    zsock_t *gw = zsock_new (ZMQ_DEALER);
    zsock_set_identity (gw, "gw-t");
    zsock_set_rcvtimeo (gw, 3000);
    zsock_connect (gw, "%s", endpoint);
    return gw;
}

//  Expects the next OUT on gw to be op for conn.
static void s_test_expect (zsock_t *gw, uint64_t conn, const char *op)
{
    uint64_t got;
    char what[16];
    zframe_t *keep;
    assert (s_test_out (gw, &got, NULL, what, sizeof what, &keep) == 0);
    zframe_destroy (&keep);
    if (got != conn || !streq (what, op))
        zsys_error ("broker test: expected %s to %" PRIu64 ", got %s to %" PRIu64, op, conn, what,
                    got);
    assert (got == conn && streq (what, op));
}

//  Sharding: two store shards from a cluster map, a message between users
//  on different shards written to both before the ack, reads from the
//  user's shard, and 5030 while no shard is known.
static void s_test_shards (const char *dir, zsock_t *gwr, bool verbose)
{
    zactor_t *sa = s_test_store (dir, "store-a");
    zactor_t *sb = s_test_store (dir, "store-b");
    zactor_t *broker = s_test_broker ("broker-2", "inproc://bt-broker2", NULL);
    zsock_t *gw = s_test_gateway ("inproc://bt-broker2");

    //  A recipient on the other shard than alice's, online as conn 4.
    const char *names[] = {"store-a", "store-b"};
    zim_ring_t *ring = zim_ring_new (names, 2);
    int alice_shard = zim_ring_lookup (ring, zim_str ("demo"), zim_str ("alice"));
    char peer[16] = "";
    for (int i = 0; i < 100 && !*peer; i++) {
        char uid[16];
        snprintf (uid, sizeof uid, "peer%d", i);
        if (zim_ring_lookup (ring, zim_str ("demo"), zim_str (uid)) != alice_shard)
            memcpy (peer, uid, sizeof uid);
    }
    assert (*peer);
    zim_ring_destroy (&ring);
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_presence_begin (&wr, zim_str ("gw-t"), false, 1);
    zim_presence_item_t p = {true, 4, zim_str ("demo"), zim_str (peer), zim_str ("d")};
    zim_presence_item (&wr, &p);
    zmq_send (zsock_resolve (gwr), wr.data, wr.size, 0);

    //  No shard known yet: 5030 at once.
    zim_send_t send = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")},
                       zim_str ("s1"),
                       zim_str (peer),
                       {"\xa2hi", 3}};
    zim_wr_reset (&wr);
    zim_send_encode (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 1, "error");
    assert (s_test_stat (broker, "no_shard") == 1);

    //  The map brings both shards (and a gateway, which is not one).
    zim_wr_reset (&wr);
    zim_map_begin (&wr, zim_str ("router-1"), 1, 1, 3);
    zim_member_t member = {zim_str ("gw-1"),   zim_str ("gateway"), zim_str (""), 1,
                           zim_str (""),       true,                0,            zim_str ("{}")};
    zim_member (&wr, &member);
    member = (zim_member_t){zim_str ("store-a"), zim_str ("store"), zim_str ("inproc://store-a"),
                            1, zim_str (""), true, 0, zim_str ("{}")};
    zim_member (&wr, &member);
    member.name = zim_str ("store-b");
    member.endpoint = zim_str ("inproc://store-b");
    zim_member (&wr, &member);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "MAP");
    zmsg_addmem (msg, wr.data, wr.size);
    zmsg_send (&msg, broker);
    zim_wr_reset (&wr);
    zim_send_encode (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    //  Ack to alice, the message to the peer and to alice's other device.
    s_test_expect (gw, 1, "ack");
    s_test_expect (gw, 4, "msg");
    s_test_expect (gw, 3, "msg");
    assert (s_test_stat (broker, "shards") == 2);
    assert (s_test_stat (broker, "cross_shard") == 1);
    //  Each shard wrote its half.
    assert (s_test_stat (sa, "appended") == 1 && s_test_stat (sb, "appended") == 1);

    //  A retry is a duplicate on both shards and is acked again (and
    //  delivered again with the same seqs: the first delivery may have been
    //  lost with a broker).
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 1, "ack");
    s_test_expect (gw, 4, "msg");
    s_test_expect (gw, 3, "msg");
    assert (s_test_stat (sa, "duplicates") == 1 && s_test_stat (sb, "duplicates") == 1);
    assert (s_test_stat (sa, "appended") == 1 && s_test_stat (sb, "appended") == 1);

    //  The peer's sync is served by the peer's shard, and has the message.
    zim_sync_t sync = {{4, zim_str ("demo"), zim_str (peer), zim_str ("d")}, 7, 0, 0};
    zim_wr_reset (&wr);
    zim_sync_encode (&wr, &sync);
    uint64_t reads_before = s_test_stat (alice_shard == 0 ? sb : sa, "reads");
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 4, "page");
    assert (s_test_stat (alice_shard == 0 ? sb : sa, "reads") == reads_before + 1);
    if (verbose)
        zsys_info ("broker test: alice on shard %d, %s on the other", alice_shard, peer);

    zim_wr_free (&wr);
    zsock_destroy (&gw);
    zactor_destroy (&broker);
    zactor_destroy (&sa);
    zactor_destroy (&sb);
}

void zim_broker_test (bool verbose)
{
    char dir[] = "./selftest-broker-XXXXXX";
    assert (mkdtemp (dir));
    zactor_t *store = zactor_new (zim_store_actor, NULL);
    zstr_sendx (store, "SET", "data", dir, NULL);
    zstr_sendx (store, "SET", "sync", "none", NULL);
    zstr_sendx (store, "BIND", "inproc://bt-store", NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 0);
    zactor_t *router = zactor_new (zim_router_actor, NULL);
    zstr_sendx (router, "BIND", "inproc://bt-router", NULL);
    assert (zsock_wait (router) == 0);
    zstr_sendx (router, "START", NULL);
    assert (zsock_wait (router) == 0);
    zactor_t *broker = s_test_broker ("broker-1", "inproc://bt-broker", "inproc://bt-store");

    //  The fake gateway: bob is online as conn 2, alice sends from conn 1
    //  and has a second device as conn 3.
    zsock_t *gw = s_test_gateway ("inproc://bt-broker");
    zsock_t *gwr = zsock_new (ZMQ_DEALER);
    zsock_set_identity (gwr, "gw-t");
    zsock_connect (gwr, "inproc://bt-router");
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_presence_begin (&wr, zim_str ("gw-t"), true, 3);
    zim_presence_item_t p = {true, 2, zim_str ("demo"), zim_str ("bob"), zim_str ("d")};
    zim_presence_item (&wr, &p);
    p.conn = 1;
    p.uid = zim_str ("alice");
    zim_presence_item (&wr, &p);
    p.conn = 3;
    zim_presence_item (&wr, &p);
    zmq_send (zsock_resolve (gwr), wr.data, wr.size, 0);
    zclock_sleep (100);

    zim_send_t send = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")},
                       zim_str ("c1"),
                       zim_str ("bob"),
                       {"\xa2hi", 3}};
    zim_wr_reset (&wr);
    zim_send_encode (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);

    //  Expect: ack to conn 1, msg to conn 2, msg to conn 3 (in that order).
    uint64_t conn;
    char op[16];
    zframe_t *keep;
    assert (s_test_out (gw, &conn, NULL, op, sizeof op, &keep) == 0);
    assert (conn == 1 && streq (op, "ack"));
    zframe_destroy (&keep);
    assert (s_test_out (gw, &conn, NULL, op, sizeof op, &keep) == 0);
    assert (conn == 2 && streq (op, "msg"));
    zframe_destroy (&keep);
    assert (s_test_out (gw, &conn, NULL, op, sizeof op, &keep) == 0);
    assert (conn == 3 && streq (op, "msg"));
    zframe_destroy (&keep);

    //  The same cid again: an ack (duplicate), nothing stored twice.
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    assert (s_test_out (gw, &conn, NULL, op, sizeof op, &keep) == 0);
    assert (conn == 1 && streq (op, "ack"));
    zframe_destroy (&keep);
    zclock_sleep (100);

    //  Sync for bob returns a page with the one message.
    zim_sync_t sync = {{2, zim_str ("demo"), zim_str ("bob"), zim_str ("d")}, 9, 0, 0};
    zim_wr_reset (&wr);
    zim_sync_encode (&wr, &sync);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    for (int tries = 0; tries < 5; tries++) {
        assert (s_test_out (gw, &conn, NULL, op, sizeof op, &keep) == 0);
        bool page = streq (op, "page");
        zframe_destroy (&keep);
        if (page)
            break;
    }
    assert (conn == 2 && streq (op, "page"));

    //  A send and, right behind it, a sync on the same connection: the
    //  page, which may hold the message, never overtakes the send's ack
    //  (nor its deliveries: the batch completes first).
    send.cid = zim_str ("c2");
    zim_wr_reset (&wr);
    zim_send_encode (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    sync.who = send.who;
    zim_wr_reset (&wr);
    zim_sync_encode (&wr, &sync);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    char order[4][16];
    for (int i = 0; i < 4; i++) {
        assert (s_test_out (gw, &conn, NULL, order[i], sizeof order[i], &keep) == 0);
        zframe_destroy (&keep);
    }
    assert (streq (order[0], "ack") && streq (order[3], "page"));

    //  The same with no room for a waiting page: the sync gets 5030 (the
    //  client syncs again), the send goes through.
    zstr_sendx (broker, "SET", "max_parked", "1", NULL);
    send.cid = zim_str ("c3");
    zim_wr_reset (&wr);
    zim_send_encode (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    zim_wr_reset (&wr);
    zim_sync_encode (&wr, &sync);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    int acks = 0, errors = 0, pages = 0;
    for (int i = 0; i < 4; i++) {
        assert (s_test_out (gw, &conn, NULL, order[i], sizeof order[i], &keep) == 0);
        zframe_destroy (&keep);
        acks += streq (order[i], "ack");
        errors += streq (order[i], "error");
        pages += streq (order[i], "page");
    }
    assert (acks == 1 && errors == 1 && pages == 0);
    assert (s_test_stat (broker, "parked_refused") == 1);
    zstr_sendx (broker, "SET", "max_parked", "67108864", NULL);

    //  Garbage does not stop it.
    zmq_send (zsock_resolve (gw), "\x93\x01", 2, 0);
    zstr_sendx (broker, "STATS", NULL);
    char *stats = zstr_recv (broker);
    assert (strstr (stats, "\"duplicates\":1"));
    if (verbose)
        printf ("(%s) ", stats);
    free (stats);

    s_test_shards (dir, gwr, verbose);

    zim_wr_free (&wr);
    zsock_destroy (&gw);
    zsock_destroy (&gwr);
    zactor_destroy (&broker);
    zactor_destroy (&router);
    zactor_destroy (&store);
    zsys_dir_delete (dir);
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
        zsys_warning ("broker test: could not remove %s", dir);
}
