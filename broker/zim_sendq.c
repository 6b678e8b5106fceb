/*  zim_sendq.c: batches of sends through the store shards and the router,
    completed in arrival order (see zim_sendq.h).
*/
#include "broker/zim_sendq.h"
#include "broker/zim_sendqkit.h"
#include "broker/zim_xshard.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

//  Message ids: milliseconds since 2024-01-01 (41 bits), node id (10 bits),
//  a counter within the millisecond (12 bits). Ids grow with time, so the
//  store can page history by id and purge by age.
#define S_ID_EPOCH_MS 1704067200000ULL
//  A first write whose batch timed out is kept this many store_timeouts
//  for a late answer, then given up.
#define S_ORPHAN_TIMEOUTS 10

typedef struct s_batch_t s_batch_t;

//  One send inside a batch. The views in m point into frame.
typedef struct {
    zframe_t *gw;            //  routing id of the gateway it came from
    zframe_t *frame;         //  the SEND message
    zim_send_t m;            //  decoded SEND
    uint64_t id;             //  assigned message id
    uint64_t ts;             //  assigned timestamp (ms)
    int shard_from;          //  the sender's shard
    int shard_to;            //  the recipient's shard
    bool resolved;           //  every write it needs has answered (or failed)
    int err;                 //  client error code once failed, else 0
    zim_appended_item_t res; //  the store's answer: canonical id and ts,
                             //  from_seq, and to_seq (from the second
                             //  shard for a cross-shard send)
} s_item_t;

//  A batch of sends on its way through stores and router.
struct s_batch_t {
    uint64_t req;       //  request id of its ROUTE_Q; batches are ordered by it
    s_item_t *items;    //  the sends, in arrival order
    uint32_t count;     //  how many
    uint32_t alloc;     //  room in items
    size_t bytes;       //  bytes of their SEND frames
    uint32_t pending;   //  items not resolved yet
    zframe_t *routes;   //  router answer, once it came
    bool routing;       //  its ROUTE_Q went out
    bool unrouted;      //  no ROUTE_Q went out or none could: no answer comes
    uint64_t born_us;   //  when it went to the stores (monotonic)
    uint64_t routed_us; //  when its ROUTE_Q went out
};

//  One first write: an APPEND to the sender's shard for items of a batch.
typedef struct {
    uint64_t req;     //  its request id
    s_batch_t *batch; //  the batch it belongs to
    int shard;        //  the shard it went to
    uint32_t *idx;    //  the items, as indexes into batch->items; NULL: all
    uint32_t n;       //  how many
} s_write_t;

struct _zim_sendq_t {
    zim_shell_t *shell;                //  log lines
    zim_shards_t *shards;              //  where users live
    zim_deliver_t *deliver;            //  acks and messages
    zim_xshard_t *xshard;              //  second halves
    const zim_broker_limits_t *limits; //  the actor's settings
    zim_broker_stats_t *stats;         //  the actor's counters
    void *router;                      //  DEALER to the routers; NULL: none
    bool router_down;                  //  the last ROUTE_Q found no router
    s_batch_t *open;                   //  batch being filled by this drain
    zlistx_t *batches;                 //  s_batch_t in flight, oldest first
    zlistx_t *writes;                  //  s_write_t in flight
    size_t inflight;                   //  sends in batches in flight
    uint64_t next_req;                 //  request id counter
    uint64_t last_ms;                  //  id generator: millisecond of the last id
    uint64_t id_seq;                   //  id generator: counter within last_ms
    zim_wr_t wr;                       //  APPEND and ROUTE_Q being encoded
    zim_sendq_sent_fn *on_sent;        //  told of every send acked, or NULL
    void *on_sent_arg;                 //  its argument
};

static void s_half_done (void *ctx, void *owner, void *item, int err, uint64_t to_seq);

static void s_batch_destroy (s_batch_t **batch_p)
{
    s_batch_t *batch = *batch_p;
    if (!batch)
        return;
    for (uint32_t i = 0; i < batch->count; i++) {
        zframe_destroy (&batch->items[i].gw);
        zframe_destroy (&batch->items[i].frame);
    }
    free (batch->items);
    zframe_destroy (&batch->routes);
    free (batch);
    *batch_p = NULL;
}

static void s_write_destroy (s_write_t **write_p)
{
    s_write_t *write = *write_p;
    if (!write)
        return;
    free (write->idx);
    zim_free (write_p);
}

zim_sendq_t *zim_sendq_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                            const zim_broker_limits_t *limits, zim_broker_stats_t *stats)
{
    zim_sendq_t *self = zim_calloc (1, sizeof *self);
    self->shell = shell;
    self->shards = shards;
    self->deliver = deliver;
    self->limits = limits;
    self->stats = stats;
    self->xshard = zim_xshard_new (shell, shards, limits, stats, s_half_done, self);
    self->batches = zlistx_new ();
    zlistx_set_destructor (self->batches, (zlistx_destructor_fn *)s_batch_destroy);
    self->writes = zlistx_new ();
    zlistx_set_destructor (self->writes, (zlistx_destructor_fn *)s_write_destroy);
    zim_wr_init (&self->wr);
    return self;
}

void zim_sendq_destroy (zim_sendq_t **self_p)
{
    zim_sendq_t *self = *self_p;
    if (!self)
        return;
    s_batch_destroy (&self->open);
    zlistx_destroy (&self->writes);
    zlistx_destroy (&self->batches);
    zim_xshard_destroy (&self->xshard);
    zim_wr_free (&self->wr);
    free (self);
    *self_p = NULL;
}

void zim_sendq_on_sent (zim_sendq_t *self, zim_sendq_sent_fn *fn, void *arg)
{
    self->on_sent = fn;
    self->on_sent_arg = arg;
}

void zim_sendq_use_router (zim_sendq_t *self, zsock_t *router)
{
    self->router = router ? zsock_resolve (router) : NULL;
}

//  The next message id at now_ms.
static uint64_t s_next_id (zim_sendq_t *self, uint64_t now_ms)
{
    if (now_ms > self->last_ms) {
        self->last_ms = now_ms;
        self->id_seq = 0;
    } else if (++self->id_seq >= 4096) {
        //  More than 4096 ids in one millisecond: borrow the next one.
        self->last_ms++;
        self->id_seq = 0;
    }
    return ((self->last_ms - S_ID_EPOCH_MS) << 22) | ((self->limits->node_id & 1023) << 12) |
           self->id_seq;
}

uint64_t zim_sendq_next_id (zim_sendq_t *self)
{
    return s_next_id (self, zim_now_ms ());
}

//  Asks a router where the recipients and the senders' other devices are,
//  once every write of the batch has answered. Asking only after the commit
//  closes a race: a device whose PRESENCE reaches the router after this
//  query syncs after it too, and by then the message is committed and in
//  its sync page; asked in parallel with the write, the route could miss the
//  device while its sync still missed the uncommitted message.
static void s_route (zim_sendq_t *self, s_batch_t *batch)
{
    if (batch->routing || batch->unrouted)
        return;
    bool any = false;
    for (uint32_t i = 0; i < batch->count && !any; i++)
        any = !batch->items[i].err;
    if (!any) {
        batch->unrouted = true; //  nothing to deliver
        return;
    }
    zim_wr_reset (&self->wr);
    zim_route_q_begin (&self->wr, batch->req, 2 * batch->count);
    for (uint32_t i = 0; i < batch->count; i++) {
        zim_route_key (&self->wr, batch->items[i].m.who.app, batch->items[i].m.to);
        zim_route_key (&self->wr, batch->items[i].m.who.app, batch->items[i].m.who.uid);
    }
    //  Without a router the batch completes at once, with no live delivery:
    //  the recipients get it by sync.
    batch->unrouted =
        !self->router || zmq_send (self->router, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1;
    batch->routing = !batch->unrouted;
    batch->routed_us = zim_mono_us ();
    if (self->router && batch->unrouted != self->router_down) {
        self->router_down = batch->unrouted;
        if (batch->unrouted)
            zim_shell_warn (self->shell, "no router reachable: sends are stored and acked "
                                         "without live delivery (recipients sync) until one is "
                                         "back");
        else
            zsys_info ("%s: a router is reachable again: live delivery resumes",
                       zim_shell_name (self->shell));
    }
}

//  An item's writes are over (err 0: stored); the batch asks for routes
//  once none is left.
static void s_resolve (zim_sendq_t *self, s_batch_t *batch, s_item_t *item, int err)
{
    if (item->resolved)
        return;
    item->resolved = true;
    item->err = err;
    if (--batch->pending == 0)
        s_route (self, batch);
}

//  The outcome of an item's second half (zim_xshard).
static void s_half_done (void *ctx, void *owner, void *item, int err, uint64_t to_seq)
{
    zim_sendq_t *self = (zim_sendq_t *)ctx;
    s_item_t *it = (s_item_t *)item;
    it->res.to_seq = to_seq;
    if (err == ZIM_ERR_CID_CONFLICT)
        self->stats->cid_conflicts++;
    s_resolve (self, (s_batch_t *)owner, it, err);
}

//  Answers a send at once, without a batch.
static void s_refuse (zim_sendq_t *self, zframe_t *gw, const zim_send_t *m, int code)
{
    self->stats->send_errors++;
    zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), m->who.conn, code, m->cid,
                       false, 0);
}

void zim_sendq_send (zim_sendq_t *self, zframe_t **gw, zframe_t **frame, zim_rd_t *rd,
                     uint32_t fields)
{
    zim_send_t m;
    if (zim_send_unpack (rd, fields, &m) || zim_rd_left (rd)) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "dropped a malformed SEND from gateway %.*s",
                        (int)zframe_size (*gw), (const char *)zframe_data (*gw));
        return;
    }
    self->stats->sends++;
    if (!zim_uid_valid (m.to) || !zim_uid_valid (m.who.uid)) {
        s_refuse (self, *gw, &m, ZIM_ERR_BAD_RECIPIENT);
        return;
    }
    if (self->inflight + (self->open ? self->open->count : 0) >= self->limits->max_inflight) {
        self->stats->rejected_full++;
        s_refuse (self, *gw, &m, ZIM_ERR_UNAVAILABLE);
        return;
    }
    int from = zim_shards_of (self->shards, m.who.app, m.who.uid);
    int to = zim_shards_of (self->shards, m.who.app, m.to);
    if (from == -1 || to == -1) {
        self->stats->no_shard++;
        s_refuse (self, *gw, &m, ZIM_ERR_UNAVAILABLE);
        return;
    }
    if (from != to && zim_xshard_blocked (self->xshard, to)) {
        //  An earlier second half to that shard is being repaired: this
        //  one must not overtake it.
        self->stats->order_held++;
        s_refuse (self, *gw, &m, ZIM_ERR_UNAVAILABLE);
        return;
    }
    size_t size = zframe_size (*frame);
    if (self->open && self->open->bytes + size > self->limits->max_batch_bytes)
        zim_sendq_flush (self);
    if (!self->open) {
        self->open = zim_calloc (1, sizeof (s_batch_t));
        self->open->req = ++self->next_req;
    }
    s_batch_t *batch = self->open;
    if (batch->count == batch->alloc) {
        //  Room for what the batch holds, not for max_batch sends.
        batch->alloc = batch->alloc ? 2 * batch->alloc : 16;
        batch->items = zim_realloc (batch->items, batch->alloc * sizeof (s_item_t));
    }
    uint64_t now_ms = zim_now_ms ();
    batch->items[batch->count++] =
        (s_item_t){*gw, *frame, m, s_next_id (self, now_ms), now_ms, from, to, false, 0, {0}};
    batch->bytes += size;
    *gw = *frame = NULL;
    if (batch->count >= self->limits->max_batch)
        zim_sendq_flush (self);
}

//  Sends one first write for the items idx[0..n) of a batch (idx NULL: all
//  of them) to their senders' shard. Items it could not send fail with
//  5030. Takes idx.
static void s_write_send (zim_sendq_t *self, s_batch_t *batch, int shard, uint32_t *idx, uint32_t n)
{
    s_write_t *write = zim_calloc (1, sizeof *write);
    *write = (s_write_t){++self->next_req, batch, shard, idx, n};
    zim_wr_reset (&self->wr);
    zim_append_begin (&self->wr, write->req, n);
    for (uint32_t i = 0; i < n; i++) {
        s_item_t *item = &batch->items[idx ? idx[i] : i];
        zim_append_item_t ai = {
            item->id,        item->ts,
            item->m.who.app, item->m.who.uid,
            item->m.to,      item->m.cid,
            item->m.body,    item->shard_to != item->shard_from ? ZIM_SIDE_FROM : ZIM_SIDE_BOTH};
        zim_append_item_pack (&self->wr, &ai);
    }
    if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size) == -1) {
        //  A full or absent shard pipe: fail fast, the senders retry.
        zim_shell_warn (self->shell,
                        "store shard %s cannot take %u sends now (down or far behind): "
                        "senders get 5030",
                        zim_shards_name (self->shards, shard), n);
        for (uint32_t i = 0; i < n; i++)
            s_resolve (self, batch, &batch->items[idx ? idx[i] : i], ZIM_ERR_UNAVAILABLE);
        s_write_destroy (&write);
        return;
    }
    zlistx_add_end (self->writes, write);
}

void zim_sendq_flush (zim_sendq_t *self)
{
    s_batch_t *batch = self->open;
    if (!batch)
        return;
    self->open = NULL;
    batch->born_us = zim_mono_us ();
    batch->pending = batch->count;
    zlistx_add_end (self->batches, batch);
    self->inflight += batch->count;
    for (uint32_t i = 0; i < batch->count; i++)
        if (batch->items[i].shard_from != batch->items[i].shard_to)
            self->stats->cross_shard++;
    //  One write per senders' shard; with one store, one for the batch.
    int shard = batch->items[0].shard_from;
    uint32_t same = 1;
    while (same < batch->count && batch->items[same].shard_from == shard)
        same++;
    if (same == batch->count) {
        s_write_send (self, batch, shard, NULL, batch->count);
        return;
    }
    bool *sent = zim_calloc (batch->count, sizeof (bool));
    for (uint32_t i = 0; i < batch->count; i++) {
        if (sent[i])
            continue;
        shard = batch->items[i].shard_from;
        uint32_t *idx = zim_malloc ((batch->count - i) * sizeof (uint32_t));
        uint32_t n = 0;
        for (uint32_t j = i; j < batch->count; j++)
            if (!sent[j] && batch->items[j].shard_from == shard) {
                sent[j] = true;
                idx[n++] = j;
            }
        s_write_send (self, batch, shard, idx, n);
    }
    free (sent);
}

//  Takes the results of a first write: a same-shard item is done, a
//  cross-shard one goes on to its recipient's shard.
static void s_first_answered (zim_sendq_t *self, s_write_t *write, zim_rd_t *rd, uint32_t fields)
{
    s_batch_t *batch = write->batch;
    zim_appended_t ap;
    bool ok = zim_appended_unpack (rd, fields, &ap) == 0 && ap.nitems == write->n;
    if (ok) {
        zim_rd_t items = ap.items;
        zim_appended_item_t res;
        for (uint32_t i = 0; ok && i < write->n; i++)
            ok = zim_appended_item_unpack (&items, &res) == 0;
    }
    if (!ok) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "store shard %s answered with a bad APPENDED",
                        zim_shards_name (self->shards, write->shard));
    }
    for (uint32_t i = 0; i < write->n; i++) {
        s_item_t *item = &batch->items[write->idx ? write->idx[i] : i];
        zim_appended_item_t res;
        if (!ok || zim_appended_item_unpack (&ap.items, &res))
            s_resolve (self, batch, item, ZIM_ERR_INTERNAL);
        else if (res.status == ZIM_APPEND_STORED || res.status == ZIM_APPEND_DUPLICATE) {
            item->res = res;
            if (item->shard_to == item->shard_from) {
                s_resolve (self, batch, item, 0);
                continue;
            }
            //  The second half carries the id and time the first one fixed
            //  (the original ones for a duplicate).
            zim_append_item_t ai = {res.id,     res.ts,      item->m.who.app, item->m.who.uid,
                                    item->m.to, item->m.cid, item->m.body,    ZIM_SIDE_TO};
            int err = zim_xshard_add (self->xshard, item->shard_to, batch, item, &ai);
            if (err)
                s_resolve (self, batch, item, err);
        } else if (res.status == ZIM_APPEND_CONFLICT) {
            //  The cid names another message: nothing is written anywhere
            //  else and nothing delivered.
            self->stats->cid_conflicts++;
            s_resolve (self, batch, item, ZIM_ERR_CID_CONFLICT);
        } else
            s_resolve (self, batch, item,
                       res.status == ZIM_EFULL ? ZIM_ERR_UNAVAILABLE : ZIM_ERR_INTERNAL);
    }
}

void zim_sendq_appended (zim_sendq_t *self, uint64_t req, zim_rd_t *rd, uint32_t fields)
{
    if (zim_xshard_appended (self->xshard, req, rd, fields) == 0)
        return;
    s_write_t *write;
    for (write = zlistx_first (self->writes); write; write = zlistx_next (self->writes))
        if (write->req == req)
            break;
    //  None: given up long ago; the senders retried.
    if (!write)
        return;
    zlistx_detach_cur (self->writes);
    s_first_answered (self, write, rd, fields);
    s_write_destroy (&write);
    zim_xshard_flush (self->xshard, zim_mono_us ());
}

void zim_sendq_routed (zim_sendq_t *self, uint64_t req, zframe_t **frame)
{
    s_batch_t *batch;
    for (batch = zlistx_first (self->batches); batch; batch = zlistx_next (self->batches))
        if (batch->req == req)
            break;
    if (batch && !batch->routes) {
        batch->routes = *frame;
        *frame = NULL;
    }
}

//  A batch the stores have not answered in time: its unanswered sends get
//  5040 (their clients retry with the same cid). Its first writes still in
//  flight leave their cross-shard items' second halves to zim_xshard, so
//  that a late answer still gets them written in order; its second halves
//  still queued are written all the same (zim_xshard_forget).
static void s_timeout (zim_sendq_t *self, s_batch_t *batch, uint64_t age)
{
    self->stats->store_timeouts++;
    zim_shell_warn (self->shell,
                    "a store did not answer batch %" PRIu64 " (%u sends) in %" PRIu64
                    " ms; senders get 5040 and may retry",
                    batch->req, batch->count, age / 1000);
    //  What was stored is acked; its recipients sync.
    if (!batch->routing)
        batch->unrouted = true;
    for (s_write_t *write = zlistx_first (self->writes); write;
         write = zlistx_next (self->writes)) {
        if (write->batch != batch)
            continue;
        //  Its cross-shard items' second halves go to zim_xshard; a late
        //  answer needs nothing else (the senders' retries find what it
        //  stored).
        int *shards = zim_malloc (write->n * sizeof (int));
        zim_append_item_t *halves = zim_malloc (write->n * sizeof (zim_append_item_t));
        bool cross = false;
        for (uint32_t i = 0; i < write->n; i++) {
            s_item_t *item = &batch->items[write->idx ? write->idx[i] : i];
            shards[i] = item->shard_to != item->shard_from ? item->shard_to : -1;
            halves[i] =
                (zim_append_item_t){0,          0,           item->m.who.app, item->m.who.uid,
                                    item->m.to, item->m.cid, item->m.body,    ZIM_SIDE_TO};
            cross = cross || shards[i] >= 0;
        }
        if (cross)
            zim_xshard_adopt (self->xshard, write->req, write->n, shards, halves);
        free (shards);
        free (halves);
        zlistx_detach_cur (self->writes);
        s_write_destroy (&write);
    }
    zim_xshard_forget (self->xshard, batch);
    for (uint32_t i = 0; i < batch->count; i++)
        s_resolve (self, batch, &batch->items[i], ZIM_ERR_TIMEOUT);
}

//  Answers every send of a completed batch: acks and deliveries, or errors.
static void s_complete (zim_sendq_t *self, s_batch_t *batch)
{
    zim_route_r_t rr;
    bool routes = false;
    if (batch->routes) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (batch->routes), zframe_size (batch->routes));
        routes = zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_ROUTE_R &&
                 zim_route_r_unpack (&rd, fields, &rr) == 0 && rr.nlists == 2 * batch->count;
    }
    bool bad = batch->routes && !routes;
    zim_histo_observe_n (&self->stats->ack_us, zim_mono_us () - batch->born_us, batch->count);
    for (uint32_t i = 0; i < batch->count; i++) {
        s_item_t *item = &batch->items[i];
        if (item->err) {
            self->stats->send_errors++;
            zim_deliver_error (self->deliver, zframe_data (item->gw), zframe_size (item->gw),
                               item->m.who.conn, item->err, item->m.cid, false, 0);
            if (routes && (zim_rd_skip (&rr.lists, NULL) || zim_rd_skip (&rr.lists, NULL)))
                routes = false, bad = true;
            continue;
        }
        if (item->res.status == ZIM_APPEND_DUPLICATE)
            self->stats->duplicates++;
        if (zim_deliver_sent (self->deliver, item->gw, &item->m, &item->res,
                              routes ? &rr.lists : NULL))
            routes = false, bad = true;
        else if (self->on_sent) {
            uint32_t n = 0;
            const zim_route_t *to = routes ? zim_deliver_routes (self->deliver, &n) : NULL;
            self->on_sent (self->on_sent_arg, &item->m, &item->res, to, n);
        }
    }
    if (bad) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "router answered batch %" PRIu64 " with a bad ROUTE_R",
                        batch->req);
    }
    self->inflight -= batch->count;
}

void zim_sendq_drain (zim_sendq_t *self, uint64_t now_us)
{
    zim_xshard_tick (self->xshard, now_us);
    s_batch_t *batch;
    while ((batch = zlistx_first (self->batches))) {
        uint64_t age = now_us - batch->born_us;
        if (batch->pending && age > self->limits->store_timeout_us)
            s_timeout (self, batch, age);
        else if (batch->pending)
            break;
        bool route_late =
            !batch->routes &&
            (batch->unrouted ||
             (batch->routing && now_us - batch->routed_us > self->limits->route_timeout_us));
        if (!batch->routes && !route_late)
            break;
        if (!batch->routes && !batch->unrouted) {
            self->stats->route_timeouts++;
            zim_shell_warn (self->shell,
                            "router did not answer batch %" PRIu64 "; acked without live delivery",
                            batch->req);
        }
        zlistx_detach (self->batches, NULL);
        s_complete (self, batch);
        s_batch_destroy (&batch);
    }
}

uint64_t zim_sendq_head (zim_sendq_t *self)
{
    s_batch_t *batch = zlistx_first (self->batches);
    return batch ? batch->req : 0;
}

uint64_t zim_sendq_last (zim_sendq_t *self)
{
    s_batch_t *batch = zlistx_last (self->batches);
    return batch ? batch->req : 0;
}

size_t zim_sendq_inflight (zim_sendq_t *self)
{
    return self->inflight;
}

size_t zim_sendq_repairs (zim_sendq_t *self)
{
    return zim_xshard_repairs (self->xshard);
}

bool zim_sendq_waiting (zim_sendq_t *self)
{
    return zlistx_size (self->batches) || zim_xshard_waiting (self->xshard);
}

//  -------------------------------------------------------------------------
//  Selftest: ROUTERs playing the stores and the router, a DEALER playing
//  the gateway gw-t, all driven by hand over inproc (zim_sendqkit).

//  One store: what the store answers decides what the clients get.
static void s_test_one_store (void)
{
    zim_sendqkit_t *t = zim_sendqkit_new (false);
    zim_sendq_t *sq = zim_sendqkit_sendq (t);
    zim_broker_limits_t *limits = zim_sendqkit_limits (t);
    zim_broker_stats_t *stats = zim_sendqkit_stats (t);
    uint64_t req, ids[64], sides[64];

    //  Stored: ack, the message to the recipient and to the other device.
    zim_sendqkit_send (t, 1, "alice", "bob", "c1", "hi");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, 0, &req, ids, sides) == 1 && sides[0] == ZIM_SIDE_BOTH);
    zim_appended_item_t res = {ZIM_APPEND_STORED, ids[0], 1, 1, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    zim_sendqkit_delivered (t, 1, 1, ids[0]);
    uint64_t first = ids[0];

    //  A duplicate: the stored id and seqs, not the new ones.
    zim_sendqkit_send (t, 1, "alice", "bob", "c1", "hi");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, 0, &req, ids, sides) == 1 && ids[0] != first);
    res = (zim_appended_item_t){ZIM_APPEND_DUPLICATE, first, 1, 1, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    zim_sendqkit_delivered (t, 1, 1, first);
    assert (stats->duplicates == 1);

    //  A conflict: 4009, nothing delivered, no route asked. An unknown
    //  status: 5000.
    zim_sendqkit_send (t, 1, "alice", "carol", "c1", "other");
    zim_sendqkit_send (t, 1, "alice", "carol", "c9", "other");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, 0, &req, ids, sides) == 2);
    zim_appended_item_t two[2] = {{ZIM_APPEND_CONFLICT, 0, 0, 0, 0}, {7, 0, 0, 0, 0}};
    zim_sendqkit_appended (t, req, two, 2);
    zim_sendqkit_drain (t);
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_CID_CONFLICT, 0, 0);
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_INTERNAL, 0, 0);
    assert (zim_sendqkit_quiet (t) && stats->cid_conflicts == 1 && stats->send_errors == 2);
    zsock_set_rcvtimeo (zim_sendqkit_routes (t), 30);
    zmsg_t *none = zmsg_recv (zim_sendqkit_routes (t));
    assert (!none);

    //  Refused at once: a bad recipient, no room in flight.
    zim_sendqkit_send (t, 1, "alice", "b/b", "c2", "x");
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_BAD_RECIPIENT, 0, 0);
    //  An empty cid is not a SEND (the catalogue wants an id; the gateway
    //  answers it with 4001 before it gets here): dropped and counted.
    uint64_t bad = stats->bad;
    zim_sendqkit_send (t, 1, "alice", "bob", "", "x");
    assert (zim_sendqkit_quiet (t) && stats->bad == bad + 1);
    limits->max_inflight = 1;
    zim_sendqkit_send (t, 1, "alice", "bob", "c3", "x");
    zim_sendqkit_send (t, 1, "alice", "bob", "c4", "x");
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_UNAVAILABLE, 0, 0);
    assert (stats->rejected_full == 1);
    limits->max_inflight = 1000;

    //  No answer in time: 5040.
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, 0, &req, ids, sides) == 1);
    limits->store_timeout_us = 1000;
    zclock_sleep (2);
    zim_sendqkit_drain (t);
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_TIMEOUT, 0, 0);
    assert (zim_sendq_inflight (sq) == 0 && !zim_sendq_waiting (sq));
    limits->store_timeout_us = 60000000;

    //  Batches hold what they are given, bounded in sends and in bytes.
    limits->max_batch_bytes = 4096;
    limits->route_timeout_us = 1;
    char body[300];
    memset (body, 'b', sizeof body - 1);
    body[sizeof body - 1] = 0;
    for (int i = 0; i < 40; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "m%d", i);
        zim_sendqkit_send (t, 1, "alice", "bob", cid, body);
    }
    zim_sendq_flush (sq);
    int items = 0, appends = 0;
    while (items < 40) {
        int n = zim_sendqkit_append (t, 0, &req, ids, sides);
        assert (n > 0 && n <= 12);
        zim_appended_item_t many[12];
        for (int i = 0; i < n; i++)
            many[i] =
                (zim_appended_item_t){ZIM_APPEND_STORED, ids[i], 2 + (uint64_t)(items + i), 0, 1};
        zim_sendqkit_appended (t, req, many, n);
        items += n;
        appends++;
    }
    assert (appends >= 4);
    for (int i = 0; i < 40; i++) {
        zim_sendq_drain (sq, zim_mono_us () + 1000);
        zim_sendqkit_expect (t, "ack", 1, 0, 2 + (uint64_t)i, 0);
        //  Its ROUTE_Q was asked; the answer is late and the ack goes on.
    }
    assert (stats->route_timeouts == (uint64_t)appends);
    zim_sendqkit_destroy (&t);
}

//  Two shards: second halves, conflicts that stop at the first shard, and
//  order kept when a second half fails.
static void s_test_two_shards (void)
{
    zim_sendqkit_t *t = zim_sendqkit_new (true);
    zim_sendq_t *sq = zim_sendqkit_sendq (t);
    zim_broker_limits_t *limits = zim_sendqkit_limits (t);
    zim_broker_stats_t *stats = zim_sendqkit_stats (t);
    //  alice on one shard, a peer on the other.
    int sa = zim_shards_of (zim_sendqkit_shards (t), zim_str ("demo"), zim_str ("alice"));
    char peer[16] = "";
    for (int i = 0; !*peer; i++) {
        snprintf (peer, sizeof peer, "p%d", i);
        if (zim_shards_of (zim_sendqkit_shards (t), zim_str ("demo"), zim_str (peer)) == sa)
            *peer = 0;
    }
    int fs = streq (zim_shards_name (zim_sendqkit_shards (t), sa), "sa") ? 0 : 1, ts = 1 - fs;
    uint64_t req, ids[8], sides[8];

    //  The sender's shard first, then the peer's with the same id.
    zim_sendqkit_send (t, 1, "alice", peer, "x1", "hi");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, fs, &req, ids, sides) == 1 && sides[0] == ZIM_SIDE_FROM);
    uint64_t id = ids[0];
    zim_appended_item_t res = {ZIM_APPEND_STORED, id, 5, 0, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    assert (zim_sendqkit_append (t, ts, &req, ids, sides) == 1 && sides[0] == ZIM_SIDE_TO);
    assert (ids[0] == id);
    res = (zim_appended_item_t){ZIM_APPEND_STORED, id, 0, 4, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    zim_sendqkit_delivered (t, 5, 4, id);
    assert (stats->cross_shard == 1);

    //  A conflict on the sender's shard never reaches the peer's.
    zim_sendqkit_send (t, 1, "alice", peer, "x1", "another");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, fs, &req, ids, sides) == 1);
    res = (zim_appended_item_t){ZIM_APPEND_CONFLICT, 0, 0, 0, 0};
    zim_sendqkit_appended (t, req, &res, 1);
    zim_sendqkit_drain (t);
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_CID_CONFLICT, 0, 0);
    zsock_set_rcvtimeo (zim_sendqkit_store (t, ts), 30);
    zmsg_t *none = zmsg_recv (zim_sendqkit_store (t, ts));
    assert (!none);

    //  The peer's shard fails the second half of x2: x2 gets 5030 and is
    //  repaired by the broker; x3 to that shard is held (5030) until then.
    limits->route_timeout_us = 1;
    zim_sendqkit_send (t, 1, "alice", peer, "x2", "two");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, fs, &req, ids, sides) == 1);
    uint64_t x2 = ids[0];
    res = (zim_appended_item_t){ZIM_APPEND_STORED, x2, 6, 0, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    assert (zim_sendqkit_append (t, ts, &req, ids, sides) == 1);
    res = (zim_appended_item_t){ZIM_ESTORE, x2, 0, 0, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    zim_sendqkit_drain (t);
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_UNAVAILABLE, 0, 0);
    zim_sendqkit_send (t, 1, "alice", peer, "x3", "three");
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_UNAVAILABLE, 0, 0);
    assert (stats->order_held == 1 && zim_sendq_repairs (sq) == 1);
    zim_sendq_drain (sq, zim_mono_us () + 3000000);
    assert (zim_sendqkit_append (t, ts, &req, ids, sides) == 1 && ids[0] == x2);
    res = (zim_appended_item_t){ZIM_APPEND_STORED, x2, 0, 5, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    assert (zim_sendq_repairs (sq) == 0 && stats->repaired == 1);
    zim_sendqkit_send (t, 1, "alice", peer, "x3", "three");
    zim_sendq_flush (sq);
    assert (zim_sendqkit_append (t, fs, &req, ids, sides) == 1);

    //  x3's first write answered after its deadline: its second half is
    //  still written (a repair) before anything later to that shard.
    limits->store_timeout_us = 1000;
    zclock_sleep (2);
    zim_sendqkit_drain (t);
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_TIMEOUT, 0, 0);
    limits->store_timeout_us = 60000000;
    res = (zim_appended_item_t){ZIM_APPEND_STORED, ids[0], 7, 0, 1000};
    uint64_t x3 = ids[0];
    zim_sendqkit_appended (t, req, &res, 1);
    zim_sendqkit_send (t, 1, "alice", peer, "x4", "four");
    zim_sendqkit_expect (t, "error", 1, ZIM_ERR_UNAVAILABLE, 0, 0);
    zim_sendqkit_drain (t);
    assert (zim_sendqkit_append (t, ts, &req, ids, sides) == 1 && ids[0] == x3);
    res = (zim_appended_item_t){ZIM_APPEND_STORED, x3, 0, 6, 1000};
    zim_sendqkit_appended (t, req, &res, 1);
    assert (zim_sendq_repairs (sq) == 0 && stats->repaired == 2);
    zim_sendqkit_destroy (&t);
}

void zim_sendq_test (bool verbose)
{
    s_test_one_store ();
    s_test_two_shards ();
    if (verbose)
        zsys_info ("sendq: store answers, batches, second halves and order behave");
}
