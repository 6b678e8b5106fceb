/*  zim_deliver.c: OUT messages from a broker to its gateways (see
    zim_deliver.h), with a byte account per gateway kept by libzmq's free
    callbacks.
*/
#include "broker/zim_deliver.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>

//  At most this many gateways are accounted; one that has nothing queued
//  makes room for a new one.
#define S_GATES_MAX 1024

//  One gateway's account. Shared with libzmq's threads (free callbacks),
//  hence the atomics; freed by whoever drops the last reference.
typedef struct {
    atomic_size_t bytes; //  bytes of OUTs to it that libzmq holds
    atomic_uint refs;    //  the table's reference, plus one per such OUT
    bool over;           //  a large OUT found the budget spent (logged)
    size_t id_len;       //  length of its routing id
    uint8_t id[];        //  its routing id
} s_gate_t;

//  What travels with an OUT's bytes, for its free callback.
typedef struct {
    s_gate_t *gate; //  whose account it is on
    size_t size;    //  its bytes
} s_held_t;

struct _zim_deliver_t {
    zim_shell_t *shell;                //  log lines
    const zim_broker_limits_t *limits; //  max_out_bytes
    zim_broker_stats_t *stats;         //  counters
    void *front;                       //  the gateways' ROUTER (libzmq handle)
    zim_wr_t fr;                       //  client frames being built
    zim_wr_t wr;                       //  the OUT around them
    s_gate_t *gates[S_GATES_MAX];      //  accounted gateways
    size_t ngates;                     //  how many
    s_gate_t *last;                    //  the one used last
    zim_route_t *routes[2];            //  scratch: a send's two route lists
    uint32_t nroutes[2];               //  their lengths
    uint32_t alloc[2];                 //  their room
    uint64_t *conns;                   //  scratch: connections of one gateway
    bool *taken;                       //  scratch: routes already grouped
    uint32_t scratch;                  //  room in conns and taken
};

static void s_gate_release (s_gate_t *gate)
{
    if (atomic_fetch_sub (&gate->refs, 1) == 1)
        free (gate);
}

//  libzmq is done with an OUT (written to the gateway, dropped, or, in one
//  process, closed by the gateway): runs in whichever thread that was.
static void s_held_free (void *data, void *hint)
{
    (void)data;
    s_held_t *held = (s_held_t *)hint;
    atomic_fetch_sub (&held->gate->bytes, held->size);
    s_gate_release (held->gate);
    free (held);
}

zim_deliver_t *zim_deliver_new (zim_shell_t *shell, const zim_broker_limits_t *limits,
                                zim_broker_stats_t *stats)
{
    zim_deliver_t *self = zim_calloc (1, sizeof *self);
    self->shell = shell;
    self->limits = limits;
    self->stats = stats;
    zim_wr_init (&self->fr);
    zim_wr_init (&self->wr);
    return self;
}

void zim_deliver_destroy (zim_deliver_t **self_p)
{
    zim_deliver_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->ngates; i++)
        s_gate_release (self->gates[i]);
    zim_wr_free (&self->fr);
    zim_wr_free (&self->wr);
    free (self->routes[0]);
    free (self->routes[1]);
    free (self->conns);
    free (self->taken);
    free (self);
    *self_p = NULL;
}

void zim_deliver_use (zim_deliver_t *self, zsock_t *front)
{
    self->front = front ? zsock_resolve (front) : NULL;
}

zim_wr_t *zim_deliver_frame (zim_deliver_t *self)
{
    zim_wr_reset (&self->fr);
    return &self->fr;
}

//  The account of gateway gw, made if new; NULL when the table is full of
//  gateways that all have bytes queued.
static s_gate_t *s_gate (zim_deliver_t *self, const void *gw, size_t len)
{
    s_gate_t *gate = self->last;
    if (gate && gate->id_len == len && memcmp (gate->id, gw, len) == 0)
        return gate;
    for (size_t i = 0; i < self->ngates; i++) {
        gate = self->gates[i];
        if (gate->id_len == len && memcmp (gate->id, gw, len) == 0)
            return self->last = gate;
    }
    if (self->ngates == S_GATES_MAX) {
        size_t kept = 0;
        for (size_t i = 0; i < self->ngates; i++)
            if (atomic_load (&self->gates[i]->bytes) == 0)
                s_gate_release (self->gates[i]);
            else
                self->gates[kept++] = self->gates[i];
        self->ngates = kept;
        self->last = NULL;
        if (kept == S_GATES_MAX)
            return NULL;
    }
    gate = zim_calloc (1, sizeof *gate + len);
    atomic_init (&gate->bytes, 0);
    atomic_init (&gate->refs, 1);
    gate->id_len = len;
    memcpy (gate->id, gw, len);
    self->gates[self->ngates++] = gate;
    return self->last = gate;
}

//  An OUT that did not leave: counted and logged (rate-limited), so that a
//  delivery lost here is never silent. err is errno of the failed send, or
//  0 (no front socket, no room for the gateway's entry).
static int s_unroutable (zim_deliver_t *self, const void *gw, size_t gw_len, uint32_t n, int err)
{
    self->stats->unroutable++;
    if (self->shell)
        zim_shell_warn (self->shell,
                        "OUT to gateway %.*s (%" PRIu32 " connection(s)) dropped: %s: "
                        "those clients get it by sync",
                        (int)gw_len, (const char *)gw, n,
                        err == EHOSTUNREACH ? "gateway not connected"
                        : err == EAGAIN     ? "its queue is full"
                        : err               ? zmq_strerror (err)
                                            : "no front socket, or no room for the gateway");
    return -1;
}

int zim_deliver_out (zim_deliver_t *self, const void *gw, size_t gw_len, const uint64_t *conns,
                     uint32_t n)
{
    zim_wr_reset (&self->wr);
    zim_out_encode (&self->wr, conns, n, (zim_str_t){self->fr.data, self->fr.size});
    size_t size = self->wr.size;
    if (!self->front)
        return s_unroutable (self, gw, gw_len, n, 0);
    //  Small OUTs (acks, errors, short messages: most of them) are bounded
    //  by the socket's message HWM alone, and sent as they always were.
    if (size <= ZIM_DELIVER_SMALL) {
        if (zmq_send (self->front, gw, gw_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
            zmq_send (self->front, self->wr.data, size, ZMQ_DONTWAIT) == -1)
            return s_unroutable (self, gw, gw_len, n, zmq_errno ());
        return 0;
    }
    s_gate_t *gate = s_gate (self, gw, gw_len);
    if (!gate)
        return s_unroutable (self, gw, gw_len, n, 0);
    size_t queued = atomic_load_explicit (&gate->bytes, memory_order_relaxed);
    //  Spent once max_out_bytes are queued: one OUT may overshoot it, so
    //  that one larger than the whole budget still goes when the gateway
    //  has taken everything else.
    bool over = queued >= self->limits->max_out_bytes;
    if (over != gate->over) {
        gate->over = over;
        if (over)
            zim_shell_warn (self->shell,
                            "gateway %.*s has %zu bytes of OUTs queued (max_out_bytes): larger "
                            "ones to it are dropped until it takes them",
                            (int)gw_len, (const char *)gw, queued);
        else
            //  Through the limiter too: a gateway may hover at its budget.
            zim_shell_warn (self->shell, "gateway %.*s takes its OUTs again", (int)gw_len,
                            (const char *)gw);
    }
    if (over) {
        self->stats->out_dropped++;
        return ZIM_EFULL;
    }
    if (zmq_send (self->front, gw, gw_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return s_unroutable (self, gw, gw_len, n, zmq_errno ());
    //  Zero-copy, so that libzmq tells (s_held_free) when the bytes are gone.
    s_held_t *held = zim_malloc (sizeof *held + size);
    *held = (s_held_t){gate, size};
    memcpy (held + 1, self->wr.data, size);
    atomic_fetch_add (&gate->refs, 1);
    atomic_fetch_add_explicit (&gate->bytes, size, memory_order_relaxed);
    zmq_msg_t msg;
    zmq_msg_init_data (&msg, held + 1, size, s_held_free, held);
    if (zmq_msg_send (&msg, self->front, ZMQ_DONTWAIT) == -1) {
        int err = zmq_errno ();
        zmq_msg_close (&msg);
        return s_unroutable (self, gw, gw_len, n, err);
    }
    return 0;
}

int zim_deliver_ctl (zim_deliver_t *self, const void *gw, size_t gw_len, const void *msg,
                     size_t size)
{
    if (!self->front || zmq_send (self->front, gw, gw_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send (self->front, msg, size, ZMQ_DONTWAIT) == -1)
        return s_unroutable (self, gw, gw_len, 1, self->front ? zmq_errno () : 0);
    return 0;
}

void zim_deliver_error (zim_deliver_t *self, const void *gw, size_t gw_len, uint64_t conn, int code,
                        zim_str_t cid, bool has_rid, uint64_t rid)
{
    zim_wr_reset (&self->fr);
    zim_cframe_error (&self->fr, code, NULL, cid, has_rid, rid);
    zim_deliver_out (self, gw, gw_len, &conn, 1);
}

//  Makes room for n entries in the grouping scratch.
static void s_scratch (zim_deliver_t *self, uint32_t n)
{
    if (n <= self->scratch)
        return;
    self->scratch = n;
    self->conns = zim_realloc (self->conns, n * sizeof *self->conns);
    self->taken = zim_realloc (self->taken, n * sizeof *self->taken);
}

//  Reads one route list of a ROUTE_R into routes[which], all of it.
static int s_read_list (zim_deliver_t *self, zim_rd_t *lists, int which)
{
    uint32_t count;
    if (zim_rd_array (lists, &count) || count > zim_rd_left (lists))
        return -1;
    if (count > self->alloc[which]) {
        self->alloc[which] = count;
        self->routes[which] = zim_realloc (self->routes[which], count * sizeof (zim_route_t));
    }
    for (uint32_t i = 0; i < count; i++)
        if (zim_route_unpack (lists, &self->routes[which][i]))
            return -1;
    self->nroutes[which] = count;
    return 0;
}

//  True if route r is connection conn on gateway gw.
static bool s_is (const zim_route_t *r, zframe_t *gw, uint64_t conn)
{
    return gw && r->conn == conn && r->gateway.len == zframe_size (gw) &&
           memcmp (r->gateway.ptr, zframe_data (gw), r->gateway.len) == 0;
}

//  Sends the frame buffer to every route of list which except (skip_gw,
//  skip_conn): one OUT per gateway, listing its connections.
static void s_fan_out (zim_deliver_t *self, int which, zframe_t *skip_gw, uint64_t skip_conn)
{
    zim_route_t *routes = self->routes[which];
    uint32_t n = self->nroutes[which];
    if (n == 0)
        return; //  taken is NULL until a list had routes: no memset (NULL, 0, 0)
    s_scratch (self, n);
    memset (self->taken, 0, n * sizeof *self->taken);
    for (uint32_t i = 0; i < n; i++) {
        if (self->taken[i])
            continue;
        zim_str_t gw = routes[i].gateway;
        uint32_t nconns = 0;
        for (uint32_t j = i; j < n; j++) {
            if (self->taken[j] || routes[j].gateway.len != gw.len ||
                memcmp (routes[j].gateway.ptr, gw.ptr, gw.len) != 0)
                continue;
            self->taken[j] = true;
            if (!s_is (&routes[j], skip_gw, skip_conn))
                self->conns[nconns++] = routes[j].conn;
        }
        if (nconns && zim_deliver_out (self, gw.ptr, gw.len, self->conns, nconns) == 0)
            self->stats->deliveries += nconns;
    }
}

int zim_deliver_sent (zim_deliver_t *self, zframe_t *gw, const zim_send_t *m,
                      const zim_appended_item_t *res, zim_rd_t *lists)
{
    zim_wr_reset (&self->fr);
    //  The backend's persisted push (tools/zim_apipersist.h) learns the
    //  recipient's seq; the system sender's own is of no use to anyone.
    bool system = zim_str_eq (m->who.uid, ZIM_SYSTEM_UID);
    zim_cframe_ack (&self->fr, m->cid, res->id, system ? res->to_seq : res->from_seq, res->ts);
    zim_deliver_out (self, zframe_data (gw), zframe_size (gw), &m->who.conn, 1);
    self->stats->acks++;
    if (!lists)
        return 0;
    if (s_read_list (self, lists, 0) || s_read_list (self, lists, 1))
        return -1;
    zim_item_t msg = {0, res->id, res->ts, m->who.uid, m->to, m->body};
    bool self_send =
        m->to.len == m->who.uid.len && memcmp (m->to.ptr, m->who.uid.ptr, m->to.len) == 0;
    //  The recipient's connections, with the recipient's seq.
    if (!self_send && self->nroutes[0]) {
        msg.seq = res->to_seq;
        zim_wr_reset (&self->fr);
        zim_cframe_msg (&self->fr, &msg);
        s_fan_out (self, 0, NULL, 0);
    }
    //  The sender's other connections, with the sender's seq.
    bool others = false;
    for (uint32_t i = 0; i < self->nroutes[1] && !others; i++)
        others = !s_is (&self->routes[1][i], gw, m->who.conn);
    if (others) {
        msg.seq = res->from_seq;
        zim_wr_reset (&self->fr);
        zim_cframe_msg (&self->fr, &msg);
        s_fan_out (self, 1, gw, m->who.conn);
    }
    return 0;
}

int zim_deliver_fan (zim_deliver_t *self, zim_rd_t *lists, const void *skip_gw, size_t skip_len,
                     uint64_t skip_conn)
{
    if (s_read_list (self, lists, 0))
        return -1;
    zframe_t *skip = skip_gw ? zframe_new (skip_gw, skip_len) : NULL;
    s_fan_out (self, 0, skip, skip_conn);
    zframe_destroy (&skip);
    return 0;
}

const zim_route_t *zim_deliver_routes (zim_deliver_t *self, uint32_t *n)
{
    *n = self->nroutes[0];
    return self->routes[0];
}

uint64_t zim_deliver_queued (zim_deliver_t *self)
{
    uint64_t total = 0;
    for (size_t i = 0; i < self->ngates; i++)
        total += atomic_load (&self->gates[i]->bytes);
    return total;
}

int zim_deliver_recv (zsock_t *gw, zim_deliver_peek_t *peek, uint64_t *conns, uint32_t max)
{
    zframe_t *frame = zframe_recv (gw);
    if (!frame)
        return -1;
    memset (peek, 0, sizeof *peek);
    zim_rd_t rd, fr;
    int kind;
    uint32_t fields, pairs;
    zim_out_t out;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int rc = zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_OUT ||
                     zim_out_unpack (&rd, fields, &out)
                 ? -1
                 : 0;
    for (uint32_t i = 0; rc == 0 && i < out.nconns; i++) {
        uint64_t conn;
        rc = zim_rd_uint (&out.conns, &conn);
        if (i == 0)
            peek->conn = conn;
        if (conns && i < max)
            conns[i] = conn;
    }
    if (rc == 0) {
        peek->nconns = out.nconns;
        zim_rd_init (&fr, out.frames.ptr, out.frames.len);
        rc = zim_rd_map (&fr, &pairs);
    }
    for (uint32_t i = 0; rc == 0 && i < pairs; i++) {
        zim_str_t key, val;
        if (zim_rd_str (&fr, &key))
            rc = -1;
        else if (zim_str_eq (key, "op") && zim_rd_str (&fr, &val) == 0)
            zim_str_copy (val, peek->op, sizeof peek->op);
        else if (zim_str_eq (key, "code"))
            rc = zim_rd_int (&fr, &peek->code);
        else if (zim_str_eq (key, "seq"))
            rc = zim_rd_uint (&fr, &peek->seq);
        else if (zim_str_eq (key, "id"))
            rc = zim_rd_uint (&fr, &peek->id);
        else if (zim_str_eq (key, "rid"))
            rc = zim_rd_uint (&fr, &peek->rid);
        else
            rc = zim_rd_skip (&fr, NULL);
    }
    zframe_destroy (&frame);
    return rc ? -1 : 0;
}

//  -------------------------------------------------------------------------
//  Selftest: a ROUTER front and DEALERs playing gateways, over inproc.

//  Receives one OUT on a fake gateway: its connections (up to max) and the
//  op of its first client frame. Returns the number of connections.
static uint32_t s_test_recv (zsock_t *gw, uint64_t *conns, uint32_t max, char *op, size_t size)
{
    zim_deliver_peek_t peek;
    assert (zim_deliver_recv (gw, &peek, conns, max) == 0);
    snprintf (op, size, "%s", peek.op);
    return peek.nconns;
}

//  A DEALER playing gateway name.
static zsock_t *s_test_gateway (const char *name)
{
    zsock_t *gw = zsock_new (ZMQ_DEALER);
    zsock_set_identity (gw, name);
    zsock_set_rcvtimeo (gw, 2000);
    zsock_connect (gw, "inproc://deliver-test");
    //  The ROUTER knows a peer by its identity once it has heard from it.
    zstr_send (gw, "hello");
    return gw;
}

void zim_deliver_test (bool verbose)
{
    static const zim_shell_class_t cls = {.role = "broker"};
    zim_shell_t *shell = zim_shell_new (NULL, &cls, NULL, "broker-t");
    zim_broker_limits_t limits = {.max_out_bytes = 8192};
    zim_broker_stats_t stats = {0};
    zim_deliver_t *deliver = zim_deliver_new (shell, &limits, &stats);
    zsock_t *front = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (front, 1);
    assert (zsock_bind (front, "inproc://deliver-test") == 0);
    zsock_t *gw1 = s_test_gateway ("gw-1"), *gw2 = s_test_gateway ("gw-2");
    for (int i = 0; i < 2; i++) {
        zmsg_t *hello = zmsg_recv (front);
        zmsg_destroy (&hello);
    }

    //  Unset front, or an unknown gateway: unroutable.
    zim_wr_t *fr = zim_deliver_frame (deliver);
    zim_cframe_pong (fr, (zim_str_t){NULL, 0});
    uint64_t conn = 1;
    assert (zim_deliver_out (deliver, "gw-1", 4, &conn, 1) == -1);
    zim_deliver_use (deliver, front);
    assert (zim_deliver_out (deliver, "gw-x", 4, &conn, 1) == -1);
    assert (stats.unroutable == 2);

    //  A send stored, with 300 live connections of the recipient over two
    //  gateways (none is cut), and the sender on conns 1 (sending) and 2.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_route_r_begin (&wr, 1, 2);
    zim_route_list_begin (&wr, 300);
    for (uint64_t i = 0; i < 300; i++) {
        zim_route_t r = {zim_str (i % 3 ? "gw-1" : "gw-2"), 1000 + i, zim_str ("d"), false};
        zim_route_pack (&wr, &r);
    }
    zim_route_list_begin (&wr, 2);
    for (uint64_t i = 1; i <= 2; i++) {
        zim_route_t r = {zim_str ("gw-1"), i, zim_str ("d"), false};
        zim_route_pack (&wr, &r);
    }
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_route_r_t rr;
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_route_r_unpack (&rd, fields, &rr) == 0);
    zframe_t *from = zframe_new ("gw-1", 4);
    zim_send_t m = {{1, zim_str ("demo"), zim_str ("alice"), zim_str ("d")},
                    zim_str ("c1"),
                    zim_str ("bob"),
                    {"\xa2hi", 3}};
    zim_appended_item_t res = {ZIM_APPEND_STORED, 77, 5, 9, 1000};
    assert (zim_deliver_sent (deliver, from, &m, &res, &rr.lists) == 0);
    uint64_t conns[300];
    char op[16];
    assert (s_test_recv (gw1, conns, 300, op, sizeof op) == 1 && conns[0] == 1);
    assert (streq (op, "ack"));
    assert (s_test_recv (gw1, conns, 300, op, sizeof op) == 200 && streq (op, "msg"));
    assert (conns[0] == 1001 && conns[199] == 1299);
    assert (s_test_recv (gw2, conns, 300, op, sizeof op) == 100 && streq (op, "msg"));
    assert (s_test_recv (gw1, conns, 300, op, sizeof op) == 1 && conns[0] == 2);
    assert (stats.acks == 1 && stats.deliveries == 301);

    //  A stalled gateway: large OUTs stop at the byte budget, small ones go
    //  on; once it reads, its account is back to zero and large ones go.
    fr = zim_deliver_frame (deliver);
    char big[1000];
    memset (big, 'x', sizeof big);
    zim_wr_t body;
    zim_wr_init (&body);
    zim_wr_str (&body, (zim_str_t){big, sizeof big});
    zim_item_t item = {1, 2, 3, zim_str ("a"), zim_str ("b"), {body.data, body.size}};
    zim_cframe_msg (fr, &item);
    int sent = 0;
    while (zim_deliver_out (deliver, "gw-2", 4, &conn, 1) == 0)
        sent++;
    assert (sent == 8 && stats.out_dropped == 1);
    assert (zim_deliver_queued (deliver) > 8192 && zim_deliver_queued (deliver) < 8192 + 1100);
    zim_deliver_error (deliver, "gw-2", 4, 5, ZIM_ERR_UNAVAILABLE, (zim_str_t){NULL, 0}, true, 9);
    for (int i = 0; i < sent; i++)
        assert (s_test_recv (gw2, conns, 1, op, sizeof op) == 1 && streq (op, "msg"));
    assert (s_test_recv (gw2, conns, 1, op, sizeof op) == 1 && streq (op, "error"));
    assert (zim_deliver_queued (deliver) == 0);
    fr = zim_deliver_frame (deliver);
    zim_cframe_msg (fr, &item);
    assert (zim_deliver_out (deliver, "gw-2", 4, &conn, 1) == 0);

    //  The deliverer goes first: what libzmq still holds frees its account.
    zim_deliver_destroy (&deliver);
    zim_deliver_destroy (&deliver);
    assert (s_test_recv (gw2, conns, 1, op, sizeof op) == 1);
    zframe_destroy (&from);
    zim_wr_free (&body);
    zim_wr_free (&wr);
    zsock_destroy (&gw1);
    zsock_destroy (&gw2);
    zsock_destroy (&front);
    zim_shell_destroy (&shell);
    if (verbose)
        zsys_info ("deliver: grouping, no cut, byte budget and accounts behave");
}
