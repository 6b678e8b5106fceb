/*  zim_broker.c: the message actor. Every SEND it drains from the gateways
    in one go becomes one batch: one APPEND to the store and, in parallel,
    one ROUTE_Q to the router. A batch completes, strictly in arrival order,
    when the store has committed it and the routes are known; then the
    senders get their acks and the recipients (and the senders' other
    devices) their deliveries. Sync, history and cursor requests are relayed
    to the store and their pages returned to the asking connection.
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
    zframe_t *gw;    //  routing id of the gateway it came from
    zframe_t *frame; //  the SEND message
    zim_send_t m;    //  decoded SEND
    uint64_t id;     //  assigned message id
    uint64_t ts;     //  assigned timestamp (ms)
} s_item_t;

//  A batch of sends on its way through store and router.
typedef struct {
    uint64_t req;       //  request id used for both APPEND and ROUTE_Q
    s_item_t *items;    //  the sends, in arrival order
    size_t count;       //  number of items
    zframe_t *appended; //  store answer, once it came
    zframe_t *routes;   //  router answer, once it came
    uint64_t born_us;   //  when it was sent (monotonic)
} s_batch_t;

//  A sync or history request waiting for its PAGE.
typedef struct {
    uint64_t req;     //  store request id
    zframe_t *gw;     //  gateway routing id
    uint64_t conn;    //  connection on that gateway
    uint64_t rid;     //  client's request id
    bool has_rid;     //  client gave a rid
    uint64_t born_us; //  when it was sent
} s_read_t;

typedef struct {
    zsock_t *pipe;     //  actor pipe
    zsock_t *front;    //  ROUTER for gateways
    zsock_t *store;    //  DEALER to the store
    zsock_t *router;   //  DEALER to the router
    char *name;        //  node name
    uint64_t node_id;  //  0..1023
    bool has_store;    //  CONNECT store was given
    bool has_router;   //  CONNECT router was given
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
    size_t inflight;          //  sends in batches in flight
    zim_wr_t wr;              //  encode buffer for backbone messages
    zim_wr_t fr;              //  encode buffer for client frames
    //  Counters (STATS)
    uint64_t sends, acks, duplicates, deliveries, send_errors, rejected_full;
    uint64_t store_timeouts, route_timeouts, unroutable, reads_n, cursors, bad;
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
    zframe_destroy (&batch->appended);
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
    zim_appended_t ap = {0};
    zim_route_r_t rr = {0};
    bool have_results = false, have_routes = false;
    if (batch->appended) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (batch->appended), zframe_size (batch->appended));
        have_results = zim_msg_kind (&rd, &kind, &fields) == 0 &&
                       zim_appended_decode (&rd, fields, &ap) == 0 && ap.nitems == batch->count;
        if (!have_results) {
            self->bad++;
            zsys_error ("broker %s: store answered batch %" PRIu64 " with a bad APPENDED",
                        self->name, batch->req);
        }
    }
    if (batch->routes) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (batch->routes), zframe_size (batch->routes));
        have_routes = zim_msg_kind (&rd, &kind, &fields) == 0 &&
                      zim_route_r_decode (&rd, fields, &rr) == 0 &&
                      rr.nlists == 2 * batch->count;
        if (!have_routes && batch->routes) {
            self->bad++;
            zsys_warning ("broker %s: router answered batch %" PRIu64 " with a bad ROUTE_R",
                          self->name, batch->req);
        }
    }
    for (size_t i = 0; i < batch->count; i++) {
        s_item_t *item = &batch->items[i];
        zim_appended_item_t res = {0};
        int err = 0;
        if (!batch->appended)
            err = ZIM_ERR_TIMEOUT;
        else if (!have_results || zim_appended_item_next (&ap.items, &res))
            err = ZIM_ERR_INTERNAL;
        else if (res.status == ZIM_EFULL)
            err = ZIM_ERR_UNAVAILABLE;
        else if (res.status < 0)
            err = ZIM_ERR_INTERNAL;
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

//  Completes batches from the head of the queue while they are ready, so
//  that acks and deliveries leave in the order the sends came in.
static void s_batches_drain (s_broker_t *self, uint64_t now_us)
{
    s_batch_t *batch;
    while ((batch = zlistx_first (self->batches))) {
        uint64_t age = now_us - batch->born_us;
        bool store_late = !batch->appended && age > self->store_timeout_us;
        bool route_late = !batch->routes && age > self->route_timeout_us;
        if (store_late) {
            self->store_timeouts++;
            zsys_error ("broker %s: store did not answer batch %" PRIu64 " (%zu sends) in %" PRIu64
                        " ms; senders get 5040 and may retry",
                        self->name, batch->req, batch->count, age / 1000);
        }
        else if (!batch->appended || (!batch->routes && !route_late))
            break;
        if (batch->appended && !batch->routes) {
            self->route_timeouts++;
            zsys_warning ("broker %s: router did not answer batch %" PRIu64
                          "; acked without live delivery",
                          self->name, batch->req);
        }
        zlistx_detach (self->batches, NULL);
        s_batch_complete (self, batch);
        s_batch_destroy (&batch);
    }
}

//  Sends the open batch to the store and the router.
static void s_batch_flush (s_broker_t *self)
{
    s_batch_t *batch = self->open;
    if (!batch)
        return;
    self->open = NULL;
    batch->born_us = zim_mono_us ();
    zim_wr_reset (&self->wr);
    zim_append_begin (&self->wr, batch->req, (uint32_t) batch->count);
    for (size_t i = 0; i < batch->count; i++) {
        s_item_t *item = &batch->items[i];
        zim_append_item_t ai = {item->id,       item->ts,    item->m.who.app, item->m.who.uid,
                                item->m.to,     item->m.cid, item->m.body,   ZIM_SIDE_BOTH};
        zim_append_item (&self->wr, &ai);
    }
    //  A full store pipe means the store is far behind: the batch times out
    //  and its senders retry, rather than this actor blocking.
    if (zmq_send (zsock_resolve (self->store), self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1)
        zsys_warning ("broker %s: store queue full, batch %" PRIu64 " will time out", self->name,
                      batch->req);
    zim_wr_reset (&self->wr);
    zim_route_q_begin (&self->wr, batch->req, (uint32_t) (2 * batch->count));
    for (size_t i = 0; i < batch->count; i++) {
        zim_route_key (&self->wr, batch->items[i].m.who.app, batch->items[i].m.to);
        zim_route_key (&self->wr, batch->items[i].m.who.app, batch->items[i].m.who.uid);
    }
    if (!self->has_router ||
        zmq_send (zsock_resolve (self->router), self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1)
        batch->routes = NULL; //  completes on route_timeout without live delivery
    zlistx_add_end (self->batches, batch);
    self->inflight += batch->count;
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
    item->gw = *gw;
    item->frame = *frame;
    *gw = *frame = NULL;
    item->m = m;
    item->ts = zim_now_ms ();
    item->id = s_next_id (self, item->ts);
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
    if (zmq_send (zsock_resolve (self->store), self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1) {
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
    zmq_send (zsock_resolve (self->store), self->wr.data, self->wr.size, ZMQ_DONTWAIT);
    self->cursors++;
}

//  Drains the gateways' socket: up to a few batches' worth per call, so the
//  store and router answers are not starved.
static void s_handle_front (s_broker_t *self)
{
    size_t budget = 4 * self->max_batch;
    while (budget-- && (zsock_events (self->front) & ZMQ_POLLIN)) {
        zframe_t *gw = zframe_recv (self->front);
        zframe_t *frame = gw && zsock_rcvmore (self->front) ? zframe_recv (self->front) : NULL;
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
static void s_handle_store (s_broker_t *self)
{
    while (zsock_events (self->store) & ZMQ_POLLIN) {
        zframe_t *frame = zframe_recv (self->store);
        if (!frame)
            break;
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        uint64_t req;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        zim_rd_t at = rd;
        if (zim_msg_kind (&rd, &kind, &fields) || fields < 1 || zim_rd_uint (&rd, &req))
            goto bad;
        if (kind == ZIM_MSG_APPENDED) {
            s_batch_t *batch;
            for (batch = zlistx_first (self->batches); batch; batch = zlistx_next (self->batches))
                if (batch->req == req)
                    break;
            if (batch && !batch->appended) {
                batch->appended = frame;
                frame = NULL;
            }
            //  Else the batch timed out already: its senders will retry and
            //  get the stored message back as a duplicate.
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
                    s_out (self, zframe_data (read->gw), zframe_size (read->gw), &read->conn, 1);
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
    while (zsock_events (self->router) & ZMQ_POLLIN) {
        zframe_t *frame = zframe_recv (self->router);
        if (!frame)
            break;
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
    else if (streq (key, "max_batch") && num && n > 0 && n <= 65536)
        self->max_batch = n;
    else if (streq (key, "store_timeout") && num && n > 0)
        self->store_timeout_us = n * 1000;
    else if (streq (key, "route_timeout") && num && n > 0)
        self->route_timeout_us = n * 1000;
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
        zsock_t *sock = a1 && streq (a1, "store")    ? self->store
                        : a1 && streq (a1, "router") ? self->router
                                                     : NULL;
        int rc = sock && a2 ? zsock_connect (sock, "%s", a2) : -1;
        if (rc == -1)
            zsys_error ("broker %s: cannot connect %s %s", self->name, a1 ? a1 : "?",
                        a2 ? a2 : "?");
        else if (sock == self->store)
            self->has_store = true;
        else
            self->has_router = true;
        zsock_signal (self->pipe, rc == -1 ? 1 : 0);
    }
    else if (streq (cmd, "START")) {
        if (!self->has_store)
            zsys_error ("broker %s: START without CONNECT store", self->name);
        if (!self->has_router)
            zsys_warning ("broker %s: no router: messages are stored but not delivered live",
                          self->name);
        self->started = self->has_store;
        zsock_signal (self->pipe, self->started ? 0 : 1);
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
                    ",\"inflight\":%zu}",
                    self->sends, self->acks, self->duplicates, self->deliveries,
                    self->send_errors, self->rejected_full, self->store_timeouts,
                    self->route_timeouts, self->unroutable, self->reads_n, self->cursors,
                    self->bad, self->inflight);
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
    self->max_batch = 2048;
    self->store_timeout_us = 5000 * 1000;
    self->route_timeout_us = 1000 * 1000;
    self->front = zsock_new (ZMQ_ROUTER);
    self->store = zsock_new (ZMQ_DEALER);
    self->router = zsock_new (ZMQ_DEALER);
    assert (self->front && self->store && self->router);
    //  Unroutable OUTs fail fast instead of vanishing silently.
    zsock_set_router_mandatory (self->front, 1);
    zsock_set_linger (self->front, 0);
    zsock_set_linger (self->router, 0);
    zsock_set_linger (self->store, 1000);
    zsock_set_sndhwm (self->front, 100000);
    zsock_set_rcvhwm (self->front, 100000);
    zsock_set_sndhwm (self->store, 10000);
    self->batches = zlistx_new ();
    self->reads = zlistx_new ();
    zim_wr_init (&self->wr);
    zim_wr_init (&self->fr);
    zsock_signal (pipe, 0);

    zmq_pollitem_t items[] = {{zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve (self->front), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve (self->store), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve (self->router), 0, ZMQ_POLLIN, 0}};
    while (!self->terminated) {
        bool waiting = zlistx_size (self->batches) || zlistx_size (self->reads);
        int n = zmq_poll (items, self->started ? 4 : 1, waiting ? 100 : -1);
        if (n == -1 && zmq_errno () != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        if (!self->started)
            continue;
        if (items[2].revents & ZMQ_POLLIN)
            s_handle_store (self);
        if (items[3].revents & ZMQ_POLLIN)
            s_handle_router (self);
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_front (self);
        uint64_t now = zim_mono_us ();
        s_batches_drain (self, now);
        s_reads_expire (self, now);
    }
    s_batch_t *batch;
    while ((batch = zlistx_detach (self->batches, NULL)))
        s_batch_destroy (&batch);
    s_batch_destroy (&self->open);
    s_read_t *read;
    while ((read = zlistx_detach (self->reads, NULL)))
        s_read_destroy (&read);
    zlistx_destroy (&self->batches);
    zlistx_destroy (&self->reads);
    zsock_destroy (&self->front);
    zsock_destroy (&self->store);
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
    zactor_t *broker = zactor_new (zim_broker_actor, NULL);
    zstr_sendx (broker, "BIND", "inproc://bt-broker", NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "CONNECT", "store", "inproc://bt-store", NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "CONNECT", "router", "inproc://bt-router", NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "START", NULL);
    assert (zsock_wait (broker) == 0);

    //  The fake gateway: bob is online as conn 2, alice sends from conn 1
    //  and has a second device as conn 3.
    zsock_t *gw = zsock_new (ZMQ_DEALER);
    zsock_set_identity (gw, "gw-t");
    zsock_set_rcvtimeo (gw, 3000);
    zsock_connect (gw, "inproc://bt-broker");
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

    //  Garbage does not stop it.
    zmq_send (zsock_resolve (gw), "\x93\x01", 2, 0);
    zstr_sendx (broker, "STATS", NULL);
    char *stats = zstr_recv (broker);
    assert (strstr (stats, "\"duplicates\":1"));
    if (verbose)
        printf ("(%s) ", stats);
    free (stats);

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
