/*  zim_sendqkit.c: a zim_sendq between hand-played stores, router and
    gateway, for tests (see zim_sendqkit.h).
*/
#include "broker/zim_sendqkit.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>
#include <string.h>

struct _zim_sendqkit_t {
    zim_shell_t *shell;         //  log lines of the pipeline
    zim_broker_limits_t limits; //  the pipeline's settings
    zim_broker_stats_t stats;   //  the pipeline's counters
    zim_shards_t *shards;       //  the fake shards, by name
    zim_deliver_t *deliver;     //  answers to the gateway
    zim_sendq_t *sq;            //  under test
    zsock_t *store[2];          //  ROUTERs playing the shards (one for zim-server's store)
    zsock_t *front;             //  the broker's front ROUTER
    zsock_t *gw;                //  DEALER playing the gateway gw-t
    zsock_t *router;            //  the broker's DEALER to the router
    zsock_t *routes;            //  ROUTER playing the router
    zim_wr_t wr;                //  what the kit encodes
};

zim_sendqkit_t *zim_sendqkit_new (bool two_shards)
{
    static const zim_shell_class_t cls = {.role = "broker"};
    zim_sendqkit_t *self = zim_calloc (1, sizeof *self);
    self->shell = zim_shell_new (NULL, &cls, NULL, "broker-t");
    self->limits =
        (zim_broker_limits_t){1, 1000, 2048, 1 << 20, 60000000, 60000000, 1 << 20, 1 << 20};
    //  Fresh endpoints each time: a closed socket's inproc name is freed
    //  a moment later, by libzmq's reaper.
    static int setups = 0;
    setups++;
    char names[2][64], front[64], router[64];
    snprintf (names[0], sizeof names[0], "inproc://sendq-test-a%d", setups);
    snprintf (names[1], sizeof names[1], "inproc://sendq-test-b%d", setups);
    snprintf (front, sizeof front, "inproc://sendq-test-front%d", setups);
    snprintf (router, sizeof router, "inproc://sendq-test-router%d", setups);
    for (int s = 0; s < (two_shards ? 2 : 1); s++) {
        self->store[s] = zsock_new (ZMQ_ROUTER);
        assert (zsock_bind (self->store[s], "%s", names[s]) == 0);
    }
    self->front = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (self->front, 1);
    assert (zsock_bind (self->front, "%s", front) == 0);
    self->gw = zsock_new (ZMQ_DEALER);
    zsock_set_identity (self->gw, "gw-t");
    zsock_set_rcvtimeo (self->gw, 2000);
    zsock_connect (self->gw, "%s", front);
    zstr_send (self->gw, "hello");
    zmsg_t *hello = zmsg_recv (self->front);
    zmsg_destroy (&hello);
    self->routes = zsock_new (ZMQ_ROUTER);
    assert (zsock_bind (self->routes, "%s", router) == 0);
    zsock_set_rcvtimeo (self->routes, 1000);
    self->router = zsock_new (ZMQ_DEALER);
    zsock_connect (self->router, "%s", router);
    zim_wr_init (&self->wr);
    self->shards = zim_shards_new (self->shell);
    if (two_shards) {
        zim_map_begin (&self->wr, zim_str ("router-1"), 1, 1, 2);
        for (int s = 0; s < 2; s++) {
            zim_member_t m = {zim_str (s ? "sb" : "sa"),
                              zim_str ("store"),
                              zim_str (names[s]),
                              1,
                              zim_str (""),
                              true,
                              0,
                              zim_str ("{}")};
            zim_member_pack (&self->wr, &m);
        }
        assert (zim_shards_map (self->shards, self->wr.data, self->wr.size) == 0);
    } else
        assert (zim_shards_connect (self->shards, names[0]) == 0);
    self->deliver = zim_deliver_new (self->shell, &self->limits, &self->stats);
    zim_deliver_use (self->deliver, self->front);
    self->sq =
        zim_sendq_new (self->shell, self->shards, self->deliver, &self->limits, &self->stats);
    zim_sendq_use_router (self->sq, self->router);
    return self;
}

void zim_sendqkit_destroy (zim_sendqkit_t **self_p)
{
    zim_sendqkit_t *self = *self_p;
    if (!self)
        return;
    zim_sendq_destroy (&self->sq);
    zim_sendq_destroy (&self->sq);
    zim_deliver_destroy (&self->deliver);
    zim_shards_destroy (&self->shards);
    for (int s = 0; s < 2; s++)
        zsock_destroy (&self->store[s]);
    zsock_destroy (&self->gw);
    zsock_destroy (&self->front);
    zsock_destroy (&self->router);
    zsock_destroy (&self->routes);
    zim_wr_free (&self->wr);
    zim_shell_destroy (&self->shell);
    zim_free (self_p);
}

zim_sendq_t *zim_sendqkit_sendq (zim_sendqkit_t *self)
{
    return self->sq;
}

zim_broker_limits_t *zim_sendqkit_limits (zim_sendqkit_t *self)
{
    return &self->limits;
}

zim_broker_stats_t *zim_sendqkit_stats (zim_sendqkit_t *self)
{
    return &self->stats;
}

zim_shards_t *zim_sendqkit_shards (zim_sendqkit_t *self)
{
    return self->shards;
}

zsock_t *zim_sendqkit_store (zim_sendqkit_t *self, int s)
{
    assert (s == 0 || s == 1);
    return self->store[s];
}

zsock_t *zim_sendqkit_routes (zim_sendqkit_t *self)
{
    return self->routes;
}

//  Hands sq a SEND from conn of uid to to.
void zim_sendqkit_send (zim_sendqkit_t *self, uint64_t conn, const char *uid, const char *to,
                        const char *cid, const char *body)
{
    zim_wr_reset (&self->wr);
    zim_wr_cstr (&self->wr, body);
    char raw[512];
    assert (self->wr.size <= sizeof raw);
    memcpy (raw, self->wr.data, self->wr.size);
    zim_send_t m = {{conn, zim_str ("demo"), zim_str (uid), zim_str ("d")},
                    zim_str (cid),
                    zim_str (to),
                    {raw, self->wr.size}};
    zim_wr_reset (&self->wr);
    zim_send_pack (&self->wr, &m);
    zframe_t *gw = zframe_new ("gw-t", 4), *frame = zframe_new (self->wr.data, self->wr.size);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_sendq_send (self->sq, &gw, &frame, &rd, fields);
    zframe_destroy (&gw);
    zframe_destroy (&frame);
}

//  The next APPEND on fake shard s within 1 s: its req, and per item its id
//  and sides. Returns how many items, -1 if none came.
int zim_sendqkit_append (zim_sendqkit_t *self, int s, uint64_t *req, uint64_t *ids, uint64_t *sides)
{
    zsock_set_rcvtimeo (self->store[s], 1000);
    zmsg_t *msg = zmsg_recv (self->store[s]);
    if (!msg)
        return -1;
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_append_t ap;
    zim_rd_init (&rd, zframe_data (zmsg_last (msg)), zframe_size (zmsg_last (msg)));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_APPEND);
    assert (zim_append_unpack (&rd, fields, &ap) == 0);
    *req = ap.req;
    for (uint32_t i = 0; i < ap.nitems; i++) {
        zim_append_item_t ai;
        assert (zim_append_item_unpack (&ap.items, &ai) == 0);
        ids[i] = ai.id;
        sides[i] = ai.sides;
    }
    zmsg_destroy (&msg);
    return (int)ap.nitems;
}

//  Answers an APPEND with one result per item.
void zim_sendqkit_appended (zim_sendqkit_t *self, uint64_t req, const zim_appended_item_t *res,
                            int n)
{
    zim_wr_reset (&self->wr);
    zim_appended_begin (&self->wr, req, (uint32_t)n);
    for (int i = 0; i < n; i++)
        zim_appended_item_pack (&self->wr, &res[i]);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, self->wr.data, self->wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_sendq_appended (self->sq, req, &rd, fields);
}

//  Takes the next ROUTE_Q and answers it: each send's recipient on conn 2
//  and its sender on conns 1 and 3, all on gw-t.
void zim_sendqkit_route (zim_sendqkit_t *self)
{
    zmsg_t *msg = zmsg_recv (self->routes);
    assert (msg);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_route_q_t q;
    zim_rd_init (&rd, zframe_data (zmsg_last (msg)), zframe_size (zmsg_last (msg)));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_route_q_unpack (&rd, fields, &q) == 0);
    zmsg_destroy (&msg);
    zim_wr_reset (&self->wr);
    zim_route_r_begin (&self->wr, q.req, q.nkeys);
    for (uint32_t i = 0; i < q.nkeys; i++) {
        uint64_t conns[2][2] = {{2, 0}, {1, 3}};
        zim_route_list_begin (&self->wr, i % 2 ? 2 : 1);
        for (uint32_t j = 0; j < (i % 2 ? 2u : 1u); j++) {
            zim_route_t r = {zim_str ("gw-t"), conns[i % 2][j], zim_str ("d"), false};
            zim_route_pack (&self->wr, &r);
        }
    }
    zframe_t *frame = zframe_new (self->wr.data, self->wr.size);
    zim_sendq_routed (self->sq, q.req, &frame);
    zframe_destroy (&frame);
}

//  Expects the gateway's next frame: op for conn, and code, seq and id
//  when not 0.
void zim_sendqkit_expect (zim_sendqkit_t *self, const char *op, uint64_t conn, int64_t code,
                          uint64_t seq, uint64_t id)
{
    zim_deliver_peek_t got;
    assert (zim_deliver_recv (self->gw, &got, NULL, 0) == 0);
    if (!streq (got.op, op) || got.conn != conn || got.code != code || (seq && got.seq != seq) ||
        (id && got.id != id))
        zsys_error ("sendq test: got %s to %" PRIu64 " code %" PRId64 " seq %" PRIu64, got.op,
                    got.conn, got.code, got.seq);
    assert (streq (got.op, op) && got.conn == conn && got.code == code);
    assert ((!seq || got.seq == seq) && (!id || got.id == id));
}

//  True if the gateway gets nothing more within 30 ms.
bool zim_sendqkit_quiet (zim_sendqkit_t *self)
{
    zsock_set_rcvtimeo (self->gw, 30);
    zframe_t *frame = zframe_recv (self->gw);
    zsock_set_rcvtimeo (self->gw, 2000);
    zframe_destroy (&frame);
    return frame == NULL;
}

//  Completes what is ready and waits for nothing.
void zim_sendqkit_drain (zim_sendqkit_t *self)
{
    zim_sendq_drain (self->sq, zim_mono_us ());
}

void zim_sendqkit_delivered (zim_sendqkit_t *self, uint64_t from_seq, uint64_t to_seq, uint64_t id)
{
    zim_sendqkit_route (self);
    zim_sendqkit_drain (self);
    zim_sendqkit_expect (self, "ack", 1, 0, from_seq, id);
    zim_sendqkit_expect (self, "msg", 2, 0, to_seq, id);
    zim_sendqkit_expect (self, "msg", 3, 0, from_seq, id);
}

//  -------------------------------------------------------------------------
//  Selftest: the kit's map, its fake shards and router, and the gateway's
//  view, on which the sendq selftest relies.

void zim_sendqkit_test (bool verbose)
{
    //  One shard: connected by endpoint, no name.
    zim_sendqkit_t *kit = zim_sendqkit_new (false);
    assert (zim_shards_size (zim_sendqkit_shards (kit)) == 1);
    assert (zim_sendqkit_store (kit, 0) && !zim_sendqkit_store (kit, 1));
    assert (zim_sendqkit_quiet (kit));
    zim_sendqkit_destroy (&kit);
    zim_sendqkit_destroy (&kit);
    assert (!kit);

    //  Two shards, sa and sb, from a map; a send between two users of the
    //  same shard is one APPEND there, both sides, and the route the kit
    //  answers reaches the gateway: recipient on 2, the sender's other
    //  device on 3.
    kit = zim_sendqkit_new (true);
    zim_shards_t *shards = zim_sendqkit_shards (kit);
    assert (zim_shards_size (shards) == 2);
    assert (streq (zim_shards_name (shards, 0), "sa") || streq (zim_shards_name (shards, 1), "sa"));
    int home = zim_shards_of (shards, zim_str ("demo"), zim_str ("kim"));
    char peer[16];
    for (int i = 0;; i++) {
        snprintf (peer, sizeof peer, "kp%d", i);
        if (zim_shards_of (shards, zim_str ("demo"), zim_str (peer)) == home)
            break;
    }
    int s = streq (zim_shards_name (shards, home), "sa") ? 0 : 1;
    zim_sendqkit_send (kit, 1, "kim", peer, "kc", "hello");
    zim_sendq_flush (zim_sendqkit_sendq (kit));
    uint64_t req, ids[4], sides[4];
    assert (zim_sendqkit_append (kit, s, &req, ids, sides) == 1 && sides[0] == ZIM_SIDE_BOTH);
    zim_appended_item_t res = {ZIM_APPEND_STORED, ids[0], 4, 9, 1000};
    zim_sendqkit_appended (kit, req, &res, 1);
    zim_sendqkit_delivered (kit, 4, 9, ids[0]);
    assert (zim_sendqkit_quiet (kit) && zim_sendqkit_stats (kit)->cross_shard == 0);
    assert (zim_sendqkit_limits (kit)->max_inflight == 1000);
    assert (zim_sendq_inflight (zim_sendqkit_sendq (kit)) == 0);
    zim_sendqkit_destroy (&kit);
    if (verbose)
        zsys_info ("sendqkit: fake shards, router and gateway answer as a sendq expects");
}
