/*  zim_router.c: the router actor (zim_router.h): its loop, its socket and
    the dispatch of PRESENCE, ROUTE_Q and HELLO to the presence table
    (zim_routes) and the cluster map (zim_members).

    A stall of the router (SIGSTOP, a VM pause, a long swap) must not look
    like the silence of every member: before expiring anyone it reads every
    message already waiting, and the time it did not run is not counted as
    its members' silence (zim_members_stalled).
*/
#include "router/zim_router.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"
#include "router/zim_members.h"
#include "router/zim_roomtab.h"
#include "router/zim_routes.h"

#include <assert.h>
#include <inttypes.h>
#include <unistd.h>

//  The loop wakes at least this often to time the map and expiry.
#define S_POLL_MS 250
//  A loop turn longer than this means the router did not run (a stall).
#define S_STALL_MS 1000
//  Messages read in one go before expiring members; more waiting postpones
//  expiry (their HELLOs may be among them).
#define S_DRAIN_MAX 100000

typedef struct {
    zim_shell_t *shell;         //  pipe commands, settings, STATS
    zsock_t *sock;              //  ROUTER for every node; made at BIND or START
    zpoller_t *poller;          //  pipe, then sock once started
    zim_routes_t *routes;       //  presence
    zim_members_t *members;     //  the cluster map
    zim_roomtab_t *rooms;       //  room interest and totals, room messages, signals
    uint64_t rooms_ms;          //  when room counts were last looked at
    zim_wr_t wr;                //  reusable encode buffer
    zlist_t *held;              //  ROUTE_Qs read this turn, answered at its end
    uint64_t instance;          //  random per start: members see a restart
    uint64_t member_timeout_ms; //  silence after which a member leaves
    uint64_t next_map_ms;       //  when the next periodic MAP goes out
    uint64_t presence;          //  PRESENCE items applied
    uint64_t queries;           //  ROUTE_Q keys answered
    uint64_t misses;            //  of which with no connection (no live delivery)
    uint64_t bad;               //  undecodable messages dropped
    uint64_t hellos;            //  heartbeats received
    uint64_t stalls;            //  loop turns long enough to be a stall
} s_router_t;

static uint64_t s_mono_ms (void)
{
    return zim_mono_us () / 1000;
}

//  Makes the ROUTER socket on first use, with the shell's backbone options
//  (set before BIND by SET). Returns 0 or -1 (logged).
static int s_socket (s_router_t *self)
{
    if (self->sock)
        return 0;
    self->sock = zim_shell_socket (self->shell, ZMQ_ROUTER, true);
    return self->sock ? 0 : -1;
}

//  Sends the map to every live member.
static void s_publish_map (s_router_t *self)
{
    uint64_t now = s_mono_ms ();
    zim_members_map (self->members, &self->wr, zim_str (zim_shell_name (self->shell)),
                     self->instance, now);
    zim_members_send (self->members, self->sock, &self->wr);
    self->next_map_ms = now + 1000;
}

static void s_handle_hello (s_router_t *self, zframe_t *peer, zim_rd_t *rd, uint32_t fields)
{
    zim_hello_t h;
    if (zim_hello_unpack (rd, fields, &h)) {
        self->bad++;
        zim_shell_warn (self->shell, "dropped a malformed HELLO");
        return;
    }
    self->hellos++;
    if (zim_members_hello (self->members, &h, peer, s_mono_ms (), zim_shell_name (self->shell)))
        s_publish_map (self);
}

static void s_handle_presence (s_router_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_presence_t m;
    if (zim_presence_unpack (rd, fields, &m))
        goto malformed;
    //  Check every item first, so a bad message changes nothing.
    zim_rd_t items = m.items;
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_presence_item_t item;
        if (zim_presence_item_unpack (&items, &item))
            goto malformed;
    }
    if (m.reset) {
        zim_routes_reset (self->routes, m.gateway);
        zim_roomtab_reset (self->rooms, m.gateway); //  it announces its rooms after
    }
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_presence_item_t item;
        zim_presence_item_unpack (&m.items, &item);
        zim_routes_apply (self->routes, m.gateway, &item);
        self->presence++;
    }
    return;
malformed:
    self->bad++;
    zim_shell_warn (self->shell, "dropped a malformed PRESENCE");
}

static void s_handle_route_q (s_router_t *self, zframe_t *peer, zim_rd_t *rd, uint32_t fields)
{
    zim_route_q_t q;
    if (zim_route_q_unpack (rd, fields, &q))
        goto malformed;
    //  Validate all keys first so that a bad query gets no partial answer.
    zim_rd_t keys = q.keys;
    for (uint32_t i = 0; i < q.nkeys; i++) {
        zim_str_t app, uid;
        if (zim_route_key_next (&keys, &app, &uid))
            goto malformed;
    }
    zim_wr_reset (&self->wr);
    zim_route_r_begin (&self->wr, q.req, q.nkeys);
    for (uint32_t i = 0; i < q.nkeys; i++) {
        zim_str_t app, uid;
        zim_route_key_next (&q.keys, &app, &uid);
        if (zim_routes_encode (self->routes, &self->wr, app, uid) == 0)
            self->misses++; //  offline, or a PRESENCE not read yet
    }
    self->queries += q.nkeys;
    void *sock = zsock_resolve (self->sock);
    if (zmq_send (sock, zframe_data (peer), zframe_size (peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1)
        zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT);
    return;
malformed:
    self->bad++;
    zim_shell_warn (self->shell, "dropped a malformed ROUTE_Q");
}

//  Reads one message from the ROUTER socket, if one is waiting, and handles
//  it. Returns false when none was waiting.
static bool s_handle_sock (s_router_t *self)
{
    zmsg_t *msg = NULL;
    if (!(zsock_events (self->sock) & ZMQ_POLLIN) || !(msg = zmsg_recv (self->sock)))
        return false;
    zframe_t *peer = zmsg_first (msg);
    zframe_t *body = zmsg_next (msg);
    int kind;
    uint32_t fields;
    zim_rd_t rd;
    if (!body || zmsg_size (msg) != 2)
        goto malformed;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    if (zim_msg_kind (&rd, &kind, &fields))
        goto malformed;
    if (kind == ZIM_MSG_PRESENCE)
        s_handle_presence (self, &rd, fields);
    else if (kind == ZIM_MSG_ROUTE_Q) {
        zlist_append (self->held, msg); //  after every PRESENCE waiting (s_drain)
        return true;
    } else if (kind == ZIM_MSG_HELLO)
        s_handle_hello (self, peer, &rd, fields);
    else if (!zim_roomtab_handle (self->rooms, self->routes, zsock_resolve (self->sock), peer, kind,
                                  &rd, fields))
        goto malformed;
    zmsg_destroy (&msg);
    return true;
malformed:
    self->bad++;
    zim_shell_warn (self->shell, "dropped an undecodable message");
    zmsg_destroy (&msg);
    return true;
}

//  Answers the ROUTE_Qs held back by s_drain, in the order they came.
static void s_answer_held (s_router_t *self)
{
    zmsg_t *msg;
    while ((msg = (zmsg_t *)zlist_pop (self->held))) {
        zframe_t *peer = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_rd_init (&rd, zframe_data (body), zframe_size (body));
        zim_msg_kind (&rd, &kind, &fields); //  decoded once already
        s_handle_route_q (self, peer, &rd, fields);
        zmsg_destroy (&msg);
    }
}

//  Reads up to max waiting messages; true if none is left waiting.
//  PRESENCE is applied as it is read, but every ROUTE_Q is answered only
//  at the end, once the socket is drained: the ROUTER fair-queues its
//  peers, so a query from a broker can be read before a PRESENCE that a
//  gateway sent earlier (the gateway's pipe holding another message ahead
//  of it); answered at once, the query would miss that connection, whose
//  sync may also have run before the message was stored, and the message
//  would reach it by no way at all. Anything sent before the query is
//  waiting by the time the query is read, so it is read in this turn.
static bool s_drain (s_router_t *self, size_t max)
{
    bool drained = false;
    for (size_t i = 0; i < max && !drained; i++)
        drained = !s_handle_sock (self);
    s_answer_held (self);
    return drained;
}

//  Once a second: expire silent members (after reading every message
//  already waiting: a member whose HELLO waits is not silent), drop the
//  routes of the gateways that left, and send the map.
static void s_tick (s_router_t *self)
{
    if (s_drain (self, S_DRAIN_MAX)) {
        zlist_t *gone = zlist_new ();
        zlist_autofree (gone);
        zim_members_expire (self->members, s_mono_ms (), self->member_timeout_ms, gone,
                            zim_shell_name (self->shell));
        //  Deliveries must stop going to a dead gateway: its clients
        //  reconnect elsewhere and announce new routes.
        for (char *name = zlist_first (gone); name; name = zlist_next (gone))
        {
            zim_routes_reset (self->routes, zim_str (name));
            zim_roomtab_reset (self->rooms, zim_str (name));
        }
        zlist_destroy (&gone);
    }
    if (zim_members_size (self->members))
        s_publish_map (self);
    else
        self->next_map_ms = s_mono_ms () + 1000;
}

static int s_bind (void *arg, const char *endpoint)
{
    s_router_t *self = (s_router_t *)arg;
    if (s_socket (self))
        return -1;
    int port = zsock_bind (self->sock, "%s", endpoint);
    if (port == -1)
        zsys_error ("%s: cannot bind %s: %s", zim_shell_name (self->shell), endpoint,
                    zmq_strerror (zmq_errno ()));
    return port;
}

static int s_start (void *arg)
{
    s_router_t *self = (s_router_t *)arg;
    if (s_socket (self))
        return -1;
    zpoller_add (self->poller, self->sock);
    return 0;
}

static void s_stats (void *arg, json_t *stats)
{
    s_router_t *self = (s_router_t *)arg;
    json_object_set_new (stats, "users",
                         json_integer ((json_int_t)zim_routes_users (self->routes)));
    json_object_set_new (stats, "routes",
                         json_integer ((json_int_t)zim_routes_count (self->routes)));
    json_object_set_new (stats, "members",
                         json_integer ((json_int_t)zim_members_size (self->members)));
    json_object_set_new (stats, "map_version",
                         json_integer ((json_int_t)zim_members_version (self->members)));
    json_object_set_new (stats, "gateway_routes", zim_routes_per_gateway (self->routes));
    zim_roomtab_stats (self->rooms, stats);
}

static const zim_setting_t s_settings[] = {
    {"member_timeout", ZIM_SET_U64, offsetof (s_router_t, member_timeout_ms), 1, 3600, 1000, 0,
     NULL, "seconds of silence after which a member leaves the map (3); a store stays, down"},
    {NULL}};

static const zim_counter_t s_counters[] = {
    {"presence", offsetof (s_router_t, presence)}, {"queries", offsetof (s_router_t, queries)},
    {"route_misses", offsetof (s_router_t, misses)},
    {"bad_messages", offsetof (s_router_t, bad)},  {"hellos", offsetof (s_router_t, hellos)},
    {"stalls", offsetof (s_router_t, stalls)},     {NULL}};

static const zim_shell_class_t s_class = {
    .role = "router",
    .settings = s_settings,
    .counters = s_counters,
    .bind = s_bind,
    .start = s_start,
    .stats = s_stats,
};

void zim_router_actor (zsock_t *pipe, void *args)
{
    (void)args;
    s_router_t self_s = {0}, *self = &self_s;
    self->shell = zim_shell_new (pipe, &s_class, self, "router-1");
    self->routes = zim_routes_new ();
    self->members = zim_members_new ();
    self->rooms = zim_roomtab_new ();
    zim_wr_init (&self->wr);
    self->held = zlist_new ();
    self->instance = ((uint64_t)randof (0x7fffffff) << 32) ^ zim_mono_us () ^ (uint64_t)getpid ();
    self->member_timeout_ms = 3000;
    self->poller = zpoller_new (pipe, NULL);
    zpoller_set_nonstop (self->poller, true); //  the process shell decides when to stop
    zsock_signal (pipe, 0);
    while (!zim_shell_terminated (self->shell)) {
        uint64_t start = s_mono_ms ();
        if (zim_shell_started (self->shell) && start >= self->next_map_ms)
            s_tick (self);
        if (zim_shell_started (self->shell) && start >= self->rooms_ms + S_POLL_MS) {
            zim_roomtab_tick (self->rooms, zsock_resolve (self->sock), start);
            self->rooms_ms = start;
        }
        void *which = zpoller_wait (self->poller, S_POLL_MS);
        if (which == pipe)
            zim_shell_handle (self->shell);
        else if (which && which == self->sock)
            s_drain (self, 1000);
        else if (zpoller_terminated (self->poller))
            break;
        //  A turn far longer than the poll wait: the router did not run.
        //  Its members' heartbeats of that time wait unread, so that time
        //  is not their silence (the next tick reads them before expiring).
        uint64_t turn = s_mono_ms () - start;
        if (turn > S_POLL_MS + S_STALL_MS) {
            self->stalls++;
            zim_members_stalled (self->members, turn - S_POLL_MS);
            zsys_warning ("%s: did not run for %" PRIu64 " ms (a stall): that time does not "
                          "count as its members' silence",
                          zim_shell_name (self->shell), turn);
        }
    }
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->sock);
    zim_routes_destroy (&self->routes);
    zim_members_destroy (&self->members);
    zim_roomtab_destroy (&self->rooms);
    zmsg_t *held;
    while ((held = (zmsg_t *)zlist_pop (self->held)))
        zmsg_destroy (&held);
    zlist_destroy (&self->held);
    zim_wr_free (&self->wr);
    zim_shell_destroy (&self->shell);
}

//  -------------------------------------------------------------------------
//  Selftest: the actor over tcp, spoken to as gateways, brokers and node
//  shells do.

//  Sends one encoded backbone message from a DEALER.
static void s_test_send (zsock_t *sock, zim_wr_t *wr)
{
    zmq_send (zsock_resolve (sock), wr->data, wr->size, 0);
    zim_wr_reset (wr);
}

//  Asks the router where uid is; returns the number of routes and fills
//  conns (up to 8).
static uint64_t s_test_req = 0;

//  Sends a ROUTE_Q for uid (request s_test_req).
static void s_test_ask (zsock_t *broker, zim_wr_t *wr, const char *uid)
{
    zim_route_q_begin (wr, ++s_test_req, 1);
    zim_route_key (wr, zim_str ("demo"), zim_str (uid));
    s_test_send (broker, wr);
}

//  Receives the ROUTE_R to the last s_test_ask; returns the number of
//  routes and fills conns (up to 8).
static uint32_t s_test_answer (zsock_t *broker, uint64_t *conns)
{
    uint64_t req = s_test_req;
    zframe_t *frame = zframe_recv (broker);
    assert (frame);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields, n;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_ROUTE_R);
    zim_route_r_t r;
    assert (zim_route_r_unpack (&rd, fields, &r) == 0 && r.req == req && r.nlists == 1);
    assert (zim_rd_array (&r.lists, &n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        zim_route_t route;
        assert (zim_route_unpack (&r.lists, &route) == 0);
        if (i < 8)
            conns[i] = route.conn;
    }
    zframe_destroy (&frame);
    return n;
}

static uint32_t s_test_lookup (zsock_t *broker, zim_wr_t *wr, const char *uid, uint64_t *conns)
{
    s_test_ask (broker, wr, uid);
    return s_test_answer (broker, conns);
}

//  A gateway announces alice then bob; a broker, later, asks for bob; all
//  three wait at the ROUTER before the router reads anything (its socket
//  is bound, not yet polled). The ROUTER fair-queues: alice's PRESENCE
//  from the gateway's pipe, then the query from the broker's, then bob's
//  PRESENCE. The answer must still name bob's connection.
static void s_test_presence_first (void)
{
    zactor_t *router = zactor_new (zim_router_actor, NULL);
    zstr_sendx (router, "BIND", "inproc://zim-router-test-order", NULL);
    assert (zsock_wait (router) == 0);
    zsock_t *gw = zsock_new (ZMQ_DEALER);
    zsock_set_identity (gw, "gw-1");
    assert (zsock_connect (gw, "inproc://zim-router-test-order") == 0);
    zsock_t *broker = zsock_new_dealer (">inproc://zim-router-test-order");
    zsock_set_rcvtimeo (broker, 5000);
    zim_wr_t wr;
    zim_wr_init (&wr);
    const char *uids[] = {"alice", "bob"};
    for (int i = 0; i < 2; i++) {
        zim_presence_begin (&wr, zim_str ("gw-1"), false, 1);
        zim_presence_item_t up = {true, (uint64_t)i + 1, zim_str ("demo"), zim_str (uids[i]),
                                  zim_str ("phone"), false};
        zim_presence_item_pack (&wr, &up);
        s_test_send (gw, &wr);
    }
    s_test_ask (broker, &wr, "bob");
    zstr_sendx (router, "START", NULL);
    assert (zsock_wait (router) == 0);
    uint64_t conns[8];
    assert (s_test_answer (broker, conns) == 1 && conns[0] == 2);
    zim_wr_free (&wr);
    zsock_destroy (&gw);
    zsock_destroy (&broker);
    zactor_destroy (&router);
}

//  The router's STATS. Caller owns return value.
static json_t *s_test_stats (zactor_t *router)
{
    zstr_sendx (router, "STATS", NULL);
    char *text = zstr_recv (router);
    json_t *stats = json_loads (text, 0, NULL);
    assert (stats);
    zstr_free (&text);
    return stats;
}

//  Receives one MAP on sock (within its timeout) and says whether name is
//  listed and alive; returns false if no map came.
static bool s_test_map (zsock_t *sock, const char *name, bool *listed, bool *alive,
                        uint32_t *members)
{
    zframe_t *frame = zframe_recv (sock);
    if (!frame)
        return false;
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    zim_map_t map;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_MAP);
    assert (zim_map_unpack (&rd, fields, &map) == 0);
    *listed = *alive = false;
    *members = map.nmembers;
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t m;
        assert (zim_member_unpack (&map.members, &m) == 0);
        if (zim_str_eq (m.name, name)) {
            *listed = true;
            *alive = m.alive;
        }
    }
    zframe_destroy (&frame);
    return true;
}

void zim_router_test (bool verbose)
{
    zactor_t *router = zactor_new (zim_router_actor, NULL);
    zstr_sendx (router, "SET", "member_timeout", "0", NULL); //  out of range: ignored
    zstr_sendx (router, "BIND", "tcp://127.0.0.1:*", NULL);
    assert (zsock_wait (router) == 0);
    zstr_sendx (router, "PORT", NULL);
    char *port = zstr_recv (router);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%s", port);
    free (port);
    zstr_sendx (router, "START", NULL);
    assert (zsock_wait (router) == 0);

    zsock_t *gw1 = zsock_new (ZMQ_DEALER), *gw2 = zsock_new (ZMQ_DEALER);
    zsock_set_identity (gw1, "gw-1");
    zsock_set_identity (gw2, "gw-2");
    zsock_connect (gw1, "%s", endpoint);
    zsock_connect (gw2, "%s", endpoint);
    zsock_t *broker = zsock_new_dealer (endpoint);
    zsock_set_rcvtimeo (broker, 2000);
    zim_wr_t wr;
    zim_wr_init (&wr);

    //  alice on two gateways, bob on one.
    zim_presence_begin (&wr, zim_str ("gw-1"), true, 2);
    zim_presence_item_t up = {true, 1, zim_str ("demo"), zim_str ("alice"), zim_str ("phone"),
                              false};
    zim_presence_item_pack (&wr, &up);
    up.conn = 2;
    up.uid = zim_str ("bob");
    zim_presence_item_pack (&wr, &up);
    s_test_send (gw1, &wr);
    zim_presence_begin (&wr, zim_str ("gw-2"), true, 1);
    up.conn = 7;
    up.uid = zim_str ("alice");
    zim_presence_item_pack (&wr, &up);
    s_test_send (gw2, &wr);

    //  A query answers after the PRESENCE it follows on one socket only;
    //  across sockets, wait until the router has both.
    uint64_t conns[8];
    for (int tries = 0; tries < 100 && s_test_lookup (broker, &wr, "alice", conns) < 2; tries++)
        zclock_sleep (10);
    assert (s_test_lookup (broker, &wr, "alice", conns) == 2);
    assert (s_test_lookup (broker, &wr, "bob", conns) == 1 && conns[0] == 2);
    assert (s_test_lookup (broker, &wr, "carol", conns) == 0);
    json_t *stats = s_test_stats (router);
    json_t *per = json_object_get (stats, "gateway_routes");
    assert (json_integer_value (json_object_get (per, "gw-1")) == 2);
    assert (json_integer_value (json_object_get (per, "gw-2")) == 1);
    //  carol has no connection: a miss (alice may have missed while waiting)
    json_int_t misses = json_integer_value (json_object_get (stats, "route_misses"));
    assert (misses >= 1);
    json_decref (stats);

    //  A disconnect removes exactly that route.
    zim_presence_begin (&wr, zim_str ("gw-1"), false, 1);
    zim_presence_item_t down = {false, 1, zim_str ("demo"), zim_str ("alice"), zim_str ("phone"),
                                false};
    zim_presence_item_pack (&wr, &down);
    s_test_send (gw1, &wr);
    for (int tries = 0; tries < 100 && s_test_lookup (broker, &wr, "alice", conns) > 1; tries++)
        zclock_sleep (10);
    assert (s_test_lookup (broker, &wr, "alice", conns) == 1 && conns[0] == 7);

    //  Garbage is dropped and the router keeps answering: not msgpack, a
    //  ROUTE_Q with a bad req, and a PRESENCE whose second item is bad
    //  (its good first item must not be applied either).
    zmq_send (zsock_resolve (gw1), "\xc1\xff", 2, 0);
    zim_wr_array (&wr, 3);
    zim_wr_uint (&wr, ZIM_MSG_ROUTE_Q);
    zim_wr_cstr (&wr, "not a number");
    zim_wr_nil (&wr);
    s_test_send (broker, &wr);
    zim_presence_begin (&wr, zim_str ("gw-2"), false, 2);
    up = (zim_presence_item_t){true, 8, zim_str ("demo"), zim_str ("dave"), zim_str ("phone"),
                               false};
    zim_presence_item_pack (&wr, &up);
    zim_wr_cstr (&wr, "not an item");
    s_test_send (gw2, &wr);

    //  A gateway reset forgets all its routes.
    zim_presence_begin (&wr, zim_str ("gw-2"), true, 0);
    s_test_send (gw2, &wr);
    for (int tries = 0; tries < 100 && s_test_lookup (broker, &wr, "alice", conns) > 0; tries++)
        zclock_sleep (10);
    assert (s_test_lookup (broker, &wr, "alice", conns) == 0);
    assert (s_test_lookup (broker, &wr, "bob", conns) == 1);
    assert (s_test_lookup (broker, &wr, "dave", conns) == 0);
    stats = s_test_stats (router);
    assert (json_integer_value (json_object_get (stats, "routes")) == 1);
    assert (json_integer_value (json_object_get (stats, "bad_messages")) == 3);
    assert (json_integer_value (json_object_get (stats, "route_misses")) >= misses + 2);
    per = json_object_get (stats, "gateway_routes");
    assert (json_is_object (per) && json_object_size (per) == 1);
    if (verbose) {
        char *text = json_dumps (stats, JSON_COMPACT);
        zsys_info ("router stats: %s", text);
        free (text);
    }
    json_decref (stats);

    //  Membership: a gateway and a store say HELLO and get the map.
    zstr_sendx (router, "SET", "member_timeout", "1", NULL);
    zsock_t *mg = zsock_new (ZMQ_DEALER), *ms = zsock_new (ZMQ_DEALER);
    zsock_set_identity (mg, "m:gw-9");
    zsock_set_identity (ms, "m:store-9");
    zsock_set_rcvtimeo (mg, 3000);
    zsock_set_rcvtimeo (ms, 3000);
    zsock_connect (mg, "%s", endpoint);
    zsock_connect (ms, "%s", endpoint);
    zim_hello_t hello = {zim_str ("gw-9"), zim_str ("gateway"), zim_str ("ws://h:1/ws"), 5,
                         zim_str (""),     zim_str ("{}")};
    zim_hello_pack (&wr, &hello);
    s_test_send (mg, &wr);
    hello.name = zim_str ("store-9");
    hello.role = zim_str ("store");
    zim_hello_pack (&wr, &hello);
    s_test_send (ms, &wr);
    //  Read maps at the store until both members are in one.
    bool listed, alive;
    uint32_t members = 0;
    for (int tries = 0; tries < 10 && members < 2; tries++)
        assert (s_test_map (ms, "gw-9", &listed, &alive, &members));
    assert (members == 2);
    //  zed is online on gw-9.
    zim_presence_begin (&wr, zim_str ("gw-9"), false, 1);
    up =
        (zim_presence_item_t){true, 9, zim_str ("demo"), zim_str ("zed"), zim_str ("phone"), false};
    zim_presence_item_pack (&wr, &up);
    s_test_send (gw1, &wr);
    for (int tries = 0; tries < 100 && s_test_lookup (broker, &wr, "zed", conns) == 0; tries++)
        zclock_sleep (10);
    assert (s_test_lookup (broker, &wr, "zed", conns) == 1 && conns[0] == 9);
    //  The gateway goes silent; the store keeps beating: after the timeout
    //  the gateway is gone from the map, and its routes with it.
    bool gw_gone = false;
    zsock_set_rcvtimeo (ms, 100);
    for (int beat = 0; beat < 50 && !gw_gone; beat++) {
        zim_hello_pack (&wr, &hello);
        s_test_send (ms, &wr);
        if (s_test_map (ms, "gw-9", &listed, &alive, &members))
            gw_gone = !listed;
    }
    assert (gw_gone);
    assert (s_test_lookup (broker, &wr, "zed", conns) == 0);
    //  Now the store goes silent: it stays in the map, marked down, as the
    //  gateway sees when it comes back.
    zclock_sleep (1500);
    hello.name = zim_str ("gw-9");
    hello.role = zim_str ("gateway");
    zim_hello_pack (&wr, &hello);
    s_test_send (mg, &wr);
    bool store_down = false;
    for (int tries = 0; tries < 5 && !store_down; tries++) {
        assert (s_test_map (mg, "store-9", &listed, &alive, &members));
        store_down = listed && !alive;
    }
    assert (store_down);
    zsock_destroy (&mg);
    zsock_destroy (&ms);

    zim_wr_free (&wr);
    zsock_destroy (&gw1);
    zsock_destroy (&gw2);
    zsock_destroy (&broker);
    zactor_destroy (&router);
    s_test_presence_first ();
}
