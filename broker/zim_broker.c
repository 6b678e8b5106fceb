/*  zim_broker.c: the broker actor: its settings and counters (msg/zim_shell),
    its sockets and its loop. It reads the gateways' front socket, the
    routers' answers and each store shard's answers, and hands each
    message to the part that owns it: sends to zim_sendq, reads and cursors
    to zim_reads, maps to zim_shards. Everything it sends to gateways goes
    through zim_deliver.
*/
#include "broker/zim_broker.h"
#include "broker/zim_deliver.h"
#include "broker/zim_gfan.h"
#include "broker/zim_notify.h"
#include "broker/zim_reads.h"
#include "broker/zim_sendq.h"
#include "broker/zim_shards.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

typedef struct {
    zim_shell_t *shell;         //  pipe, settings, STATS, peer warnings
    zim_broker_limits_t limits; //  settings, read live by the parts
    zim_broker_stats_t stats;   //  counters, counted by the parts
    zsock_t *front;             //  ROUTER the gateways connect to
    zsock_t *router;            //  DEALER to the routers, NULL until CONNECT
    zim_shards_t *shards;       //  store shards and placement
    zim_deliver_t *deliver;     //  OUTs to gateways
    zim_reads_t *reads;         //  sync, history, cursors
    zim_sendq_t *sendq;         //  sends
    zim_notify_t *notify;       //  receipts, conversation lists, offline push
    zim_gfan_t *gfan;           //  groups and channels
    uint64_t turn_us;           //  most µs from one busy loop turn to the next
    uint64_t turn_at;           //  when the last turn began (zim_mono_us)
    size_t took;                //  messages the last turn took from the gateways
} s_broker_t;

//  `shards`: the cluster's store names, before any map.
static int s_set_shards (void *self, const char *value, const char *value2, const char **why)
{
    (void)value2;
    if (zim_shards_add_names (((s_broker_t *)self)->shards, value) == 0)
        return 0;
    *why = "a broker with one store, or too many shards";
    return -1;
}

#define S_TURN_US 1000 //  default most µs between busy loop turns
#define S_TURN_FULL 8  //  messages from the gateways a turn takes to be
                       //  followed by all of turn_us (fewer: that share of it)

//  µs from the beginning of a turn that took `took` messages from the
//  gateways to the beginning of the next: took/S_TURN_FULL of turn_us, all
//  of it from S_TURN_FULL messages on. A light load (one send per turn)
//  gets a short pause, so the store's answer to it is not kept waiting; a
//  heavy one, where each turn finds many sends, the whole pause.
static uint64_t s_turn_gap (uint64_t turn_us, size_t took)
{
    return took >= S_TURN_FULL ? turn_us : turn_us * took / S_TURN_FULL;
}

#define S_LIMIT(field) offsetof (s_broker_t, limits.field)
static const zim_setting_t s_settings[] = {
    {"node_id", ZIM_SET_U64, S_LIMIT (node_id), 0, 1023, 1, 0, NULL,
     "0..1023, unique per broker: part of every message id (1)"},
    {"max_inflight", ZIM_SET_U64, S_LIMIT (max_inflight), 1, 0, 1, 0, NULL,
     "sends waiting for the stores before new ones get 5030 (65536)"},
    {"max_batch", ZIM_SET_U64, S_LIMIT (max_batch), 1, 65536, 1, 0, NULL,
     "sends per store batch (2048)"},
    {"max_batch_bytes", ZIM_SET_U64, S_LIMIT (max_batch_bytes), 4096, 32 << 20, 1, 0, NULL,
     "bytes of sends per store batch, well below max_msg_size (8 MiB)"},
    {"store_timeout", ZIM_SET_U64, S_LIMIT (store_timeout_us), 1, 0, 1000, 0, NULL,
     "ms; a send the store has not answered fails with 5040 (5000)"},
    {"route_timeout", ZIM_SET_U64, S_LIMIT (route_timeout_us), 1, 0, 1000, 0, NULL,
     "ms; without routes, acks go out and recipients sync (1000)"},
    {"max_parked", ZIM_SET_U64, S_LIMIT (max_parked), 1, 0, 1, 0, NULL,
     "bytes of pages held behind earlier sends; beyond, reads get 5030 (64 MiB)"},
    {"max_out_bytes", ZIM_SET_U64, S_LIMIT (max_out_bytes), 4096, 0, 1, 0, NULL,
     "bytes of large OUTs queued to one gateway; beyond, they are dropped (64 MiB)"},
    {"turn_us", ZIM_SET_U64, offsetof (s_broker_t, turn_us), 0, 100000, 1, 0, NULL,
     "most µs from one busy loop turn to the next, so one wakeup takes more messages; a turn "
     "that took fewer than 8 messages from the gateways is followed by that share of it "
     "(1000; 0 = none)"},
    {"shards", ZIM_SET_FN, 0, 0, 0, 0, 0, s_set_shards,
     "comma-separated names of every store shard of the cluster"},
    {NULL}};

#define S_STAT(name, field)                                                                        \
    {                                                                                              \
        name, offsetof (s_broker_t, stats.field)                                                   \
    }
static const zim_counter_t s_counters[] = {S_STAT ("sends", sends),
                                           S_STAT ("acks", acks),
                                           S_STAT ("duplicates", duplicates),
                                           S_STAT ("cid_conflicts", cid_conflicts),
                                           S_STAT ("deliveries", deliveries),
                                           S_STAT ("send_errors", send_errors),
                                           S_STAT ("rejected_full", rejected_full),
                                           S_STAT ("store_timeouts", store_timeouts),
                                           S_STAT ("route_timeouts", route_timeouts),
                                           S_STAT ("unroutable", unroutable),
                                           S_STAT ("out_dropped", out_dropped),
                                           S_STAT ("reads", reads),
                                           S_STAT ("cursors", cursors),
                                           S_STAT ("bad_messages", bad),
                                           S_STAT ("cross_shard", cross_shard),
                                           S_STAT ("no_shard", no_shard),
                                           S_STAT ("parked_refused", parked_refused),
                                           S_STAT ("order_held", order_held),
                                           S_STAT ("repaired", repaired),
                                           S_STAT ("receipts", receipts),
                                           S_STAT ("pushes", pushes),
                                           S_STAT ("push_lost", push_lost),
                                           {NULL}};

static const zim_histogram_t s_histograms[] = {
    {"send_ack_seconds", offsetof (s_broker_t, stats.ack_us), zim_histo_latency_us,
     ZIM_HISTO_LATENCY_N, 1e-6,
     "sends from their batch leaving for the store to their ack (or error) leaving, seconds"},
    {NULL}};

//  The gateways' ROUTER, made on first use: an OUT to a gateway that has
//  gone fails fast (ROUTER_MANDATORY) instead of vanishing silently.
static zsock_t *s_front (s_broker_t *self)
{
    if (!self->front) {
        self->front = zim_shell_socket (self->shell, ZMQ_ROUTER, true);
        assert (self->front);
        zsock_set_router_mandatory (self->front, 1);
        zsock_set_sndhwm (self->front, 100000);
        zsock_set_rcvhwm (self->front, 100000);
        zim_deliver_use (self->deliver, self->front);
    }
    return self->front;
}

static int s_bind (void *self_, const char *endpoint)
{
    s_broker_t *self = (s_broker_t *)self_;
    int port = zsock_bind (s_front (self), "%s", endpoint);
    if (port == -1)
        zsys_error ("%s: cannot bind %s: %s", zim_shell_name (self->shell), endpoint,
                    zmq_strerror (zmq_errno ()));
    return port;
}

static int s_connect (void *self_, const char *role, const char *endpoint)
{
    s_broker_t *self = (s_broker_t *)self_;
    if (streq (role, "store"))
        return zim_shards_connect (self->shards, endpoint);
    if (!streq (role, "router")) {
        zsys_error ("%s: CONNECT %s: a broker connects to store and router",
                    zim_shell_name (self->shell), role);
        return -1;
    }
    if (!self->router) {
        self->router = zim_shell_socket (self->shell, ZMQ_DEALER, false);
        assert (self->router);
        //  Over tcp, ROUTE_Qs go only to routers that are up (a dead one
        //  would swallow its share until route_timeout).
        if (strncmp (endpoint, "tcp://", 6) == 0)
            zsock_set_immediate (self->router, 1);
    }
    if (zsock_connect (self->router, "%s", endpoint) == -1) {
        zsys_error ("%s: cannot connect router %s", zim_shell_name (self->shell), endpoint);
        return -1;
    }
    zim_sendq_use_router (self->sendq, self->router);
    zim_notify_use_router (self->notify, self->router);
    zim_gfan_use_router (self->gfan, self->router);
    return 0;
}

static int s_start (void *self_)
{
    s_broker_t *self = (s_broker_t *)self_;
    s_front (self);
    if (zim_shards_size (self->shards) == 0)
        zsys_info ("%s: no CONNECT store: store shards come from the cluster map (sends get "
                   "5030 until one is known)",
                   zim_shell_name (self->shell));
    if (!self->router)
        zsys_warning ("%s: no router: messages are stored but not delivered live",
                      zim_shell_name (self->shell));
    return 0;
}

static void s_gauges (void *self_, json_t *stats)
{
    s_broker_t *self = (s_broker_t *)self_;
    json_object_set_new (stats, "inflight",
                         json_integer ((json_int_t)zim_sendq_inflight (self->sendq)));
    json_object_set_new (stats, "shards",
                         json_integer ((json_int_t)zim_shards_size (self->shards)));
    json_object_set_new (stats, "repairs",
                         json_integer ((json_int_t)zim_sendq_repairs (self->sendq)));
    json_object_set_new (stats, "out_bytes",
                         json_integer ((json_int_t)zim_deliver_queued (self->deliver)));
}

static void s_map (void *self_, zframe_t *frame)
{
    s_broker_t *self = (s_broker_t *)self_;
    if (zim_shards_map (self->shards, zframe_data (frame), zframe_size (frame))) {
        self->stats.bad++;
        zim_shell_warn (self->shell, "dropped a malformed cluster map");
    }
}

static const zim_shell_class_t s_class = {
    .role = "broker",
    .settings = s_settings,
    .counters = s_counters,
    .histograms = s_histograms,
    .bind = s_bind,
    .connect = s_connect,
    .start = s_start,
    .stats = s_gauges,
    .map = s_map,
};

//  Completes what is ready: batches in order (acks and deliveries leave
//  now), then the pages that waited for them.
static void s_complete (s_broker_t *self)
{
    zim_sendq_drain (self->sendq, zim_mono_us ());
    zim_notify_flush (self->notify);
    zim_reads_release (self->reads, zim_sendq_head (self->sendq));
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

//  Drains the gateways' socket: up to a few batches' worth per call, so the
//  store and router answers are not starved. The sends of one drain make
//  one batch.
static size_t s_handle_front (s_broker_t *self)
{
    uint64_t budget = 4 * self->limits.max_batch;
    size_t taken = 0;
    while (budget--) {
        zframe_t *gw = s_recv_nowait (self->front);
        if (!gw)
            break;
        taken++;
        zframe_t *frame = zsock_rcvmore (self->front) ? zframe_recv (self->front) : NULL;
        if (!frame || zsock_rcvmore (self->front)) {
            while (zsock_rcvmore (self->front)) {
                zframe_t *junk = zframe_recv (self->front);
                zframe_destroy (&junk);
            }
            self->stats.bad++;
            zim_shell_warn (self->shell, "dropped a message with a wrong frame count");
            zframe_destroy (&gw);
            zframe_destroy (&frame);
            continue;
        }
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        if (zim_msg_kind (&rd, &kind, &fields)) {
            self->stats.bad++;
            zim_shell_warn (self->shell, "dropped an undecodable message from gateway %.*s",
                            (int)zframe_size (gw), (const char *)zframe_data (gw));
        } else if (kind == ZIM_MSG_SEND)
            zim_sendq_send (self->sendq, &gw, &frame, &rd, fields);
        else if (kind == ZIM_MSG_SYNC || kind == ZIM_MSG_HISTORY)
            zim_reads_request (self->reads, gw, kind, &rd, fields);
        else if (kind == ZIM_MSG_CURSOR)
            zim_reads_cursor (self->reads, &rd, fields);
        else if (kind == ZIM_MSG_RECEIPT || kind == ZIM_MSG_CONVS)
            zim_notify_request (self->notify, gw, kind, &rd, fields);
        else if (kind == ZIM_MSG_GSEND || kind == ZIM_MSG_GGET)
            zim_gfan_request (self->gfan, gw, frame, kind);
        else {
            self->stats.bad++;
            zim_shell_warn (self->shell, "dropped a message of unknown kind %d", kind);
        }
        zframe_destroy (&gw);
        zframe_destroy (&frame);
    }
    zim_sendq_flush (self->sendq);
    return taken;
}

//  Hands each store answer (APPENDED or PAGE) to what waits for it.
static void s_handle_store (s_broker_t *self, zsock_t *sock)
{
    zframe_t *frame;
    while ((frame = s_recv_nowait (sock))) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        uint64_t req;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        bool ok = zim_msg_kind (&rd, &kind, &fields) == 0 && fields >= 1;
        zim_rd_t first = rd;
        ok = ok && zim_rd_uint (&rd, &req) == 0;
        if (ok && kind == ZIM_MSG_APPENDED)
            zim_sendq_appended (self->sendq, req, &first, fields);
        else if (ok && kind == ZIM_MSG_PAGE)
            ok = zim_reads_page (self->reads, req, &first, fields, zim_sendq_last (self->sendq)) ==
                 0;
        else if (ok && (kind == ZIM_MSG_MARKED || kind == ZIM_MSG_CONVS_R))
            ok = zim_notify_store (self->notify, kind, &first, fields) == 0;
        else if (ok && (kind == ZIM_MSG_GPOSTED || kind == ZIM_MSG_GFANNED ||
                         kind == ZIM_MSG_GREAD_R))
            ok = zim_gfan_store (self->gfan, kind, &first, fields) == 0;
        else
            ok = false;
        if (!ok) {
            self->stats.bad++;
            zim_shell_warn (self->shell, "dropped an undecodable store answer");
        }
        zframe_destroy (&frame);
    }
    s_complete (self);
}

//  Hands each router answer (ROUTE_R) to its batch.
static void s_handle_router (s_broker_t *self)
{
    zframe_t *frame;
    while ((frame = s_recv_nowait (self->router))) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        uint64_t req;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        int undecodable = zim_msg_kind (&rd, &kind, &fields);
        if (!undecodable && kind == ZIM_MSG_API_R)
            ; //  the answer to a channel's room order (zim_gfan): nothing to do
        else if (undecodable || kind != ZIM_MSG_ROUTE_R || fields < 1 || zim_rd_uint (&rd, &req)) {
            self->stats.bad++;
            zim_shell_warn (self->shell, "dropped an undecodable router answer");
        } else if (req & ZIM_NOTIFY_REQ)
            zim_notify_routed (self->notify, req, frame);
        else if (req & ZIM_GFAN_REQ)
            zim_gfan_routed (self->gfan, req, frame);
        else
            zim_sendq_routed (self->sendq, req, &frame);
        zframe_destroy (&frame);
    }
    //  Before the front is read: acks do not wait behind the next drain.
    s_complete (self);
}

void zim_broker_actor (zsock_t *pipe, void *args)
{
    (void)args;
    s_broker_t self_s = {0}, *self = &self_s;
    self->limits = (zim_broker_limits_t){.node_id = 1,
                                         .max_inflight = 65536,
                                         .max_batch = 2048,
                                         .max_batch_bytes = 8 << 20,
                                         .store_timeout_us = 5000 * 1000,
                                         .route_timeout_us = 1000 * 1000,
                                         .max_parked = 64 << 20,
                                         .max_out_bytes = 64 << 20};
    self->turn_us = S_TURN_US;
    self->shell = zim_shell_new (pipe, &s_class, self, "broker-1");
    self->shards = zim_shards_new (self->shell);
    self->deliver = zim_deliver_new (self->shell, &self->limits, &self->stats);
    self->reads =
        zim_reads_new (self->shell, self->shards, self->deliver, &self->limits, &self->stats);
    self->sendq =
        zim_sendq_new (self->shell, self->shards, self->deliver, &self->limits, &self->stats);
    self->notify =
        zim_notify_new (self->shell, self->shards, self->deliver, &self->limits, &self->stats);
    zim_sendq_on_sent (self->sendq, zim_notify_sent, self->notify);
    self->gfan = zim_gfan_new (self->shell, self->shards, self->deliver, self->sendq, self->notify,
                               &self->limits, &self->stats);
    zsock_signal (pipe, 0);

    //  pipe, front, router, then one item per shard (the shards can change
    //  with every map, so the set is rebuilt each time round).
    zmq_pollitem_t items[3 + ZIM_SHARDS_MAX];
    while (!zim_shell_terminated (self->shell)) {
        bool started = zim_shell_started (self->shell);
        bool waiting = zim_sendq_waiting (self->sendq) || zim_reads_waiting (self->reads) ||
                       zim_notify_waiting (self->notify) || zim_gfan_waiting (self->gfan);
        size_t nitems = 1, front = 0, router = 0;
        items[0] = (zmq_pollitem_t){zsock_resolve (pipe), 0, ZMQ_POLLIN, 0};
        if (started) {
            front = nitems;
            items[nitems++] = (zmq_pollitem_t){zsock_resolve (self->front), 0, ZMQ_POLLIN, 0};
            if (self->router) {
                router = nitems;
                items[nitems++] = (zmq_pollitem_t){zsock_resolve (self->router), 0, ZMQ_POLLIN, 0};
            }
        }
        size_t first_shard = nitems;
        for (size_t i = 0; started && i < zim_shards_size (self->shards); i++) {
            zsock_t *sock = zim_shards_sock (self->shards, (int)i);
            if (sock)
                items[nitems++] = (zmq_pollitem_t){zsock_resolve (sock), 0, ZMQ_POLLIN, 0};
        }
        if (started && self->took && self->turn_us) {
            //  Under load (the last turn took messages from the gateways),
            //  a turn begins a gap after the previous one (s_turn_gap:
            //  turn_us if that took S_TURN_FULL or more, else that share
            //  of it) and reads every socket without blocking first: what
            //  came meanwhile is taken in one turn, and the threads that
            //  send here do not pay to wake this one (a thread blocked in
            //  poll costs its writer a cross-CPU wakeup; one in usleep
            //  costs nothing). A receive that finds nothing is one look at
            //  the socket's mailbox, as a poll's would be. After a turn
            //  that took nothing from the gateways the loop blocks again:
            //  a message that finds the broker idle is taken at once, and
            //  only an answer that comes back within the gap of the turn
            //  that asked waits (turn_us at most).
            zim_mono_pace (self->turn_at, s_turn_gap (self->turn_us, self->took));
            if (zmq_poll (items, 1, 0) == -1 && zmq_errno () != EINTR)
                break;
            for (size_t i = 1; i < nitems; i++)
                items[i].revents = ZMQ_POLLIN;
        } else if (zmq_poll (items, (int)nitems, waiting ? 100 : -1) == -1 &&
                   zmq_errno () != EINTR)
            break;
        self->turn_at = zim_mono_us ();
        if ((items[0].revents & ZMQ_POLLIN) && zim_shell_handle (self->shell) == -1)
            break;
        if (!started)
            continue;
        //  A map handled above may have replaced a shard's socket: only
        //  sockets still in the table are read.
        for (size_t i = first_shard; i < nitems; i++)
            if (items[i].revents & ZMQ_POLLIN)
                for (size_t j = 0; j < zim_shards_size (self->shards); j++) {
                    zsock_t *sock = zim_shards_sock (self->shards, (int)j);
                    if (sock && zsock_resolve (sock) == items[i].socket)
                        s_handle_store (self, sock);
                }
        if (router && (items[router].revents & ZMQ_POLLIN))
            s_handle_router (self);
        self->took = (items[front].revents & ZMQ_POLLIN) ? s_handle_front (self) : 0;
        s_complete (self);
        zim_reads_expire (self->reads, zim_mono_us ());
        zim_notify_expire (self->notify, zim_mono_us ());
        zim_gfan_expire (self->gfan, zim_mono_us ());
    }
    zim_sendq_destroy (&self->sendq);
    zim_gfan_destroy (&self->gfan);
    zim_notify_destroy (&self->notify);
    zim_reads_destroy (&self->reads);
    zim_deliver_destroy (&self->deliver);
    zim_shards_destroy (&self->shards);
    zsock_destroy (&self->front);
    zsock_destroy (&self->router);
    zim_shell_destroy (&self->shell);
}
//  -------------------------------------------------------------------------
//  Selftest: a real store and router, and a DEALER playing the gateway.

#include "router/zim_router.h"
#include "store/zim_store.h"

//  Receives one OUT on the fake gateway: the first connection it lists and
//  its first frame's op. Returns 0 or -1.
static int s_test_out (zsock_t *gw, uint64_t *conn, char *op, size_t size)
{
    zim_deliver_peek_t peek;
    if (zim_deliver_recv (gw, &peek, NULL, 0))
        return -1;
    *conn = peek.conn;
    snprintf (op, size, "%s", peek.op);
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

//  Waits until an actor's counter reaches at least value (3 s at most).
static void s_test_wait_stat (zactor_t *actor, const char *name, uint64_t value)
{
    for (int i = 0; i < 3000 && s_test_stat (actor, name) < value; i++)
        zclock_sleep (1);
    assert (s_test_stat (actor, name) >= value);
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
    assert (s_test_out (gw, &got, what, sizeof what) == 0);
    if (got != conn || !streq (what, op))
        zsys_error ("broker test: expected %s to %" PRIu64 ", got %s to %" PRIu64, op, conn, what,
                    got);
    assert (got == conn && streq (what, op));
}

//  Sharding: two store shards from a cluster map, a message between users
//  on different shards written to both before the ack, reads from the
//  user's shard, and 5030 while no shard is known.
static void s_test_shards (const char *dir, zsock_t *gwr, zactor_t *router, bool verbose)
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
    zim_presence_item_t p = {true, 4, zim_str ("demo"), zim_str (peer), zim_str ("d"), false};
    zim_presence_item_pack (&wr, &p);
    zmq_send (zsock_resolve (gwr), wr.data, wr.size, 0);
    s_test_wait_stat (router, "presence", 4);

    //  No shard known yet: 5030 at once.
    zim_send_t send = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")},
                       zim_str ("s1"),
                       zim_str (peer),
                       {"\xa2hi", 3}};
    zim_wr_reset (&wr);
    zim_send_pack (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 1, "error");
    assert (s_test_stat (broker, "no_shard") == 1);

    //  The map brings both shards (and a gateway, which is not one).
    zim_wr_reset (&wr);
    zim_map_begin (&wr, zim_str ("router-1"), 1, 1, 3);
    zim_member_t member = {
        zim_str ("gw-1"), zim_str ("gateway"), zim_str (""), 1, zim_str (""), true, 0,
        zim_str ("{}")};
    zim_member_pack (&wr, &member);
    member = (zim_member_t){zim_str ("store-a"),
                            zim_str ("store"),
                            zim_str ("inproc://store-a"),
                            1,
                            zim_str (""),
                            true,
                            0,
                            zim_str ("{}")};
    zim_member_pack (&wr, &member);
    member.name = zim_str ("store-b");
    member.endpoint = zim_str ("inproc://store-b");
    zim_member_pack (&wr, &member);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "MAP");
    zmsg_addmem (msg, wr.data, wr.size);
    zmsg_send (&msg, broker);
    //  The pipe and the front are two queues: the SEND could be read
    //  before the MAP. STATS comes after the MAP on the pipe, so once it
    //  is answered the map is in.
    assert (s_test_stat (broker, "shards") == 2);
    zim_wr_reset (&wr);
    zim_send_pack (&wr, &send);
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
    zim_sync_pack (&wr, &sync);
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

//  No room for a waiting page: a sync whose page comes back while a send
//  of the same gateway still waits for its routes gets 5030 (the client
//  syncs again), the send goes through. The test plays the router, so the
//  batch waits until the test answers its ROUTE_Q: the page surely finds it
//  in flight, whatever the timing.
static void s_test_parked (const char *store, bool verbose)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (zsock_bind (router, "inproc://bt-router3") == 0);
    zsock_set_rcvtimeo (router, 3000);
    zactor_t *broker = zactor_new (zim_broker_actor, NULL);
    zstr_sendx (broker, "SET", "name", "broker-3", NULL);
    zstr_sendx (broker, "SET", "node_id", "3", NULL);
    zstr_sendx (broker, "SET", "max_parked", "1", NULL);
    zstr_sendx (broker, "BIND", "inproc://bt-broker3", NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "CONNECT", "store", store, NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "CONNECT", "router", "inproc://bt-router3", NULL);
    assert (zsock_wait (broker) == 0);
    zstr_sendx (broker, "START", NULL);
    assert (zsock_wait (broker) == 0);
    zsock_t *gw = s_test_gateway ("inproc://bt-broker3");

    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_send_t send = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")},
                       zim_str ("p1"),
                       zim_str ("bob"),
                       {"\xa2hi", 3}};
    zim_send_pack (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    //  The send is stored: its batch asks for routes (and waits for them).
    zim_route_q_t q = {0};
    zmsg_t *msg;
    while ((msg = zmsg_recv (router))) {
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (zmsg_last (msg)), zframe_size (zmsg_last (msg)));
        if (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_ROUTE_Q) {
            assert (zim_route_q_unpack (&rd, fields, &q) == 0);
            break;
        }
        zmsg_destroy (&msg);
    }
    assert (msg);
    //  Now the sync: its page has no room to wait.
    zim_sync_t sync = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")}, 9, 0, 0};
    zim_wr_reset (&wr);
    zim_sync_pack (&wr, &sync);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 1, "error");
    assert (s_test_stat (broker, "parked_refused") == 1);
    //  The routes (nobody online): the send is acked.
    zim_wr_reset (&wr);
    zim_route_r_begin (&wr, q.req, q.nkeys);
    for (uint32_t i = 0; i < q.nkeys; i++)
        zim_route_list_begin (&wr, 0);
    zframe_t *peer = zmsg_pop (msg);
    zmsg_destroy (&msg);
    msg = zmsg_new ();
    zmsg_append (msg, &peer);
    zmsg_addmem (msg, wr.data, wr.size);
    zmsg_send (&msg, router);
    s_test_expect (gw, 1, "ack");
    if (verbose)
        zsys_info ("broker test: a page with no room to wait got 5030, the send its ack");

    zim_wr_free (&wr);
    zsock_destroy (&gw);
    zactor_destroy (&broker);
    zsock_destroy (&router);
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
    zim_presence_item_t p = {true, 2, zim_str ("demo"), zim_str ("bob"), zim_str ("d"), false};
    zim_presence_item_pack (&wr, &p);
    p.conn = 1;
    p.uid = zim_str ("alice");
    zim_presence_item_pack (&wr, &p);
    p.conn = 3;
    zim_presence_item_pack (&wr, &p);
    zmq_send (zsock_resolve (gwr), wr.data, wr.size, 0);
    s_test_wait_stat (router, "presence", 3);

    zim_send_t send = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")},
                       zim_str ("c1"),
                       zim_str ("bob"),
                       {"\xa2hi", 3}};
    zim_wr_reset (&wr);
    zim_send_pack (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);

    //  Expect: ack to conn 1, msg to conn 2, msg to conn 3 (in that order).
    uint64_t conn;
    char op[16];
    s_test_expect (gw, 1, "ack");
    s_test_expect (gw, 2, "msg");
    s_test_expect (gw, 3, "msg");

    //  The same cid again: an ack (duplicate), nothing stored twice.
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 1, "ack");
    zclock_sleep (100);

    //  Sync for bob returns a page with the one message.
    zim_sync_t sync = {{2, zim_str ("demo"), zim_str ("bob"), zim_str ("d")}, 9, 0, 0};
    zim_wr_reset (&wr);
    zim_sync_pack (&wr, &sync);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    for (int tries = 0; tries < 5; tries++) {
        assert (s_test_out (gw, &conn, op, sizeof op) == 0);
        bool page = streq (op, "page");
        if (page)
            break;
    }
    assert (conn == 2 && streq (op, "page"));

    //  A send and, right behind it, a sync on the same connection: the
    //  page, which may hold the message, never overtakes the send's ack
    //  (nor its deliveries: the batch completes first).
    send.cid = zim_str ("c2");
    zim_wr_reset (&wr);
    zim_send_pack (&wr, &send);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    sync.who = send.who;
    zim_wr_reset (&wr);
    zim_sync_pack (&wr, &sync);
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    char order[4][16];
    for (int i = 0; i < 4; i++) {
        assert (s_test_out (gw, &conn, order[i], sizeof order[i]) == 0);
    }
    assert (streq (order[0], "ack") && streq (order[3], "page"));

    //  The same with no room for a waiting page (a broker of its own,
    //  whose router the test plays, so that the batch is surely waiting).
    s_test_parked ("inproc://bt-store", verbose);

    //  Pacing (turn_us): the gap after a turn is turn_us once the turn
    //  took S_TURN_FULL messages from the gateways, that share of it below.
    assert (s_turn_gap (1000, 0) == 0 && s_turn_gap (1000, 1) == 125);
    assert (s_turn_gap (1000, 7) == 875 && s_turn_gap (1000, S_TURN_FULL) == 1000);
    assert (s_turn_gap (1000, 500) == 1000 && s_turn_gap (0, 500) == 0);
    //  A send that finds the broker idle is taken at once, but the store's
    //  answer, back sooner than the gap, waits for the next turn: with
    //  turn_us = 100 ms, one send alone is followed by a gap of 12.5 ms,
    //  so its ack comes after that, and long before 100 ms.
    zstr_sendx (broker, "SET", "turn_us", "100000", NULL);
    s_test_stat (broker, "sends"); //  the pipe is read in order: SET is in
    send.cid = zim_str ("c-paced");
    zim_wr_reset (&wr);
    zim_send_pack (&wr, &send);
    uint64_t sent_at = zim_mono_us ();
    zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    s_test_expect (gw, 1, "ack");
    uint64_t took_us = zim_mono_us () - sent_at;
    assert (took_us >= 12500 && took_us < 90 * 1000);
    s_test_expect (gw, 2, "msg");
    s_test_expect (gw, 3, "msg");
    //  Many sends at once: the last of them is taken by a turn that took
    //  S_TURN_FULL or more (the first, or the one 12.5 ms to 87.5 ms
    //  after it that takes the rest), or by one 100 ms after the first,
    //  so its ack comes no sooner than 100 ms after the sends.
    enum { S_HEAVY = 2 * S_TURN_FULL + 1 };
    char cid[16];
    sent_at = zim_mono_us ();
    for (int i = 0; i < S_HEAVY; i++) {
        snprintf (cid, sizeof cid, "c-heavy-%d", i);
        send.cid = zim_str (cid);
        zim_wr_reset (&wr);
        zim_send_pack (&wr, &send);
        zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
    }
    for (int i = 0; i < 3 * S_HEAVY; i++) //  an ack and two msgs each
        assert (s_test_out (gw, &conn, op, sizeof op) == 0);
    assert (zim_mono_us () - sent_at >= 100 * 1000);

    //  Paced turns still read the pipe: while 8 sends come every 20 ms,
    //  so that every turn takes S_TURN_FULL or more and is followed by
    //  all of the 100 ms, and the loop never blocks, STATS is answered
    //  (the sends are answered after the loop).
    bool answered = false;
    for (int i = 0; i < 51 && !answered; i++) {
        for (int j = 0; j < S_TURN_FULL; j++) {
            snprintf (cid, sizeof cid, "c-busy-%d-%d", i, j);
            send.cid = zim_str (cid);
            zim_wr_reset (&wr);
            zim_send_pack (&wr, &send);
            zmq_send (zsock_resolve (gw), wr.data, wr.size, 0);
        }
        if (i == 0) { //  busy from now
            zclock_sleep (5);
            zstr_sendx (broker, "STATS", NULL);
            continue;
        }
        zpoller_t *poller = zpoller_new (broker, NULL);
        answered = zpoller_wait (poller, 20) == broker;
        zpoller_destroy (&poller);
    }
    assert (answered);
    char *busy_stats = zstr_recv (broker);
    free (busy_stats);
    zsock_set_rcvtimeo (gw, 500);
    while (s_test_out (gw, &conn, op, sizeof op) == 0)
        ; //  the acks and deliveries of those sends
    zsock_set_rcvtimeo (gw, 3000);
    zstr_sendx (broker, "SET", "turn_us", "1000", NULL);

    //  Garbage does not stop it, and is counted.
    zmq_send (zsock_resolve (gw), "\x93\x01", 2, 0);
    s_test_wait_stat (broker, "bad_messages", 1);
    assert (s_test_stat (broker, "bad_messages") == 1);
    //  Every STATS key of before the shell is still there.
    zstr_sendx (broker, "STATS", NULL);
    char *stats = zstr_recv (broker);
    const char *keys[] = {"sends",         "acks",          "duplicates",     "deliveries",
                          "send_errors",   "rejected_full", "store_timeouts", "route_timeouts",
                          "unroutable",    "reads",         "cursors",        "bad_messages",
                          "inflight",      "shards",        "cross_shard",    "no_shard",
                          "parked_refused"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char key[64];
        snprintf (key, sizeof key, "\"%s\":", keys[i]);
        assert (strstr (stats, key));
    }
    assert (strstr (stats, "\"duplicates\":1"));
    if (verbose)
        printf ("(%s) ", stats);
    free (stats);

    s_test_shards (dir, gwr, router, verbose);

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
