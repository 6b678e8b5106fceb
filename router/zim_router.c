/*  zim_router.c: presence routes and cluster membership. A hash from
    "app/uid" to the small list of that user's live connections (gateway,
    conn, device); gateways add and remove entries with PRESENCE, brokers
    look users up with ROUTE_Q. Every node's shell sends HELLO once a second;
    the router answers everyone with the cluster MAP once a second and
    whenever a member joins, restarts or leaves.
*/
#include "router/zim_router.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>
#include <unistd.h>

//  One live connection of a user.
typedef struct {
    char *gateway; //  gateway node name (its ZeroMQ routing id)
    uint64_t conn; //  connection id on that gateway
    char *device;  //  device name the session authenticated with
} s_route_t;

//  All live connections of one user.
typedef struct {
    s_route_t *routes; //  array of count entries
    size_t count;      //  live connections
    size_t alloc;      //  allocated entries
} s_user_t;

//  One cluster member, as its heartbeats describe it.
typedef struct {
    char *name;        //  node name
    char *role;        //  gateway, broker, router, store
    char *endpoint;    //  its service endpoint (WebSocket URL for gateways)
    char *admin;       //  its admin endpoint, "" if none
    char *stats;       //  its counters, a JSON object
    uint64_t instance; //  random per process start
    uint64_t seen_ms;  //  last heartbeat (monotonic ms)
    bool alive;        //  heard within member_timeout
    zframe_t *peer;    //  routing id of its shell's DEALER
} s_member_t;

typedef struct {
    zsock_t *pipe;     //  our actor pipe
    zsock_t *sock;     //  ROUTER for gateways and brokers
    zpoller_t *poller; //  pipe + sock
    char *name;        //  node name
    zhashx_t *users;   //  "app/uid" -> s_user_t
    zim_wr_t wr;       //  reusable encode buffer
    int port;          //  port of the last tcp BIND
    bool started;      //  START was received
    bool terminated;   //  $TERM was received
    uint64_t routes;   //  live routes in the table
    uint64_t presence; //  PRESENCE items applied
    uint64_t queries;  //  ROUTE_Q keys answered
    uint64_t bad;      //  undecodable messages dropped
    zhashx_t *members; //  name -> s_member_t
    uint64_t instance; //  random per start: members see a restart
    uint64_t version;  //  bumped on every membership change
    uint64_t member_timeout_ms; //  silence after which a member leaves
    uint64_t next_map_ms;       //  when the next periodic MAP goes out
    uint64_t hellos;            //  heartbeats received
} s_router_t;

static void s_member_destroy (void **item)
{
    s_member_t *m = *item;
    if (!m)
        return;
    free (m->name);
    free (m->role);
    free (m->endpoint);
    free (m->admin);
    free (m->stats);
    zframe_destroy (&m->peer);
    free (m);
    *item = NULL;
}

static uint64_t s_mono_ms (void)
{
    return zim_mono_us () / 1000;
}

//  Replaces *field with a copy of v; true if it changed.
static bool s_set_field (char **field, zim_str_t v)
{
    if (*field && strlen (*field) == v.len && memcmp (*field, v.ptr, v.len) == 0)
        return false;
    free (*field);
    *field = zim_str_dup (v);
    return true;
}

static int s_member_cmp (const void *a, const void *b)
{
    return strcmp ((*(s_member_t *const *) a)->name, (*(s_member_t *const *) b)->name);
}

//  Sends the map to every member that has a routing id.
static void s_publish_map (s_router_t *self)
{
    size_t n = zhashx_size (self->members);
    s_member_t **list = (s_member_t **) zim_calloc (n + 1, sizeof (s_member_t *));
    size_t i = 0;
    for (s_member_t *m = zhashx_first (self->members); m; m = zhashx_next (self->members))
        list[i++] = m;
    qsort (list, n, sizeof (s_member_t *), s_member_cmp);
    uint64_t now = s_mono_ms ();
    zim_wr_reset (&self->wr);
    zim_map_begin (&self->wr, zim_str (self->name), self->instance, self->version, (uint32_t) n);
    for (i = 0; i < n; i++) {
        s_member_t *m = list[i];
        zim_member_t item = {zim_str (m->name), zim_str (m->role), zim_str (m->endpoint),
                             m->instance, zim_str (m->admin), m->alive, now - m->seen_ms,
                             zim_str (m->stats)};
        zim_member (&self->wr, &item);
    }
    for (i = 0; i < n; i++) {
        if (!list[i]->alive || !list[i]->peer)
            continue;
        zmq_send (zsock_resolve (self->sock), zframe_data (list[i]->peer),
                  zframe_size (list[i]->peer), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (zsock_resolve (self->sock), self->wr.data, self->wr.size, ZMQ_DONTWAIT);
    }
    free (list);
    self->next_map_ms = now + 1000;
}

//  A heartbeat: add, refresh or note the restart of a member.
static void s_handle_hello (s_router_t *self, zframe_t *peer, zim_rd_t *rd, uint32_t fields)
{
    zim_hello_t h;
    if (zim_hello_decode (rd, fields, &h)) {
        self->bad++;
        zsys_warning ("router %s: dropped a malformed HELLO", self->name);
        return;
    }
    self->hellos++;
    char name[ZIM_ID_MAX + 1];
    zim_str_copy (h.name, name, sizeof name);
    s_member_t *m = (s_member_t *) zhashx_lookup (self->members, name);
    bool changed = false;
    if (!m) {
        m = (s_member_t *) zim_calloc (1, sizeof (s_member_t));
        m->name = zim_strdup (name);
        zhashx_insert (self->members, name, m);
        changed = true;
        zsys_info ("router %s: %.*s %s joined (%.*s)", self->name, (int) h.role.len, h.role.ptr,
                   name, (int) h.endpoint.len, h.endpoint.ptr);
    }
    else if (!m->alive || m->instance != h.instance) {
        changed = true;
        zsys_info ("router %s: %s %s", self->name, name,
                   m->instance != h.instance ? "restarted" : "is back");
    }
    changed |= s_set_field (&m->role, h.role);
    changed |= s_set_field (&m->endpoint, h.endpoint);
    changed |= s_set_field (&m->admin, h.admin);
    s_set_field (&m->stats, h.stats);
    m->instance = h.instance;
    m->seen_ms = s_mono_ms ();
    m->alive = true;
    zframe_destroy (&m->peer);
    m->peer = zframe_dup (peer);
    if (changed) {
        self->version++;
        s_publish_map (self);
    }
}

static void s_gateway_reset (s_router_t *self, zim_str_t gateway);

//  Drops members silent for member_timeout (stores stay, marked down); the
//  routes of a gateway that goes are dropped with it, so deliveries stop
//  going to a dead gateway (its clients reconnect elsewhere and announce
//  new routes).
static void s_expire_members (s_router_t *self)
{
    uint64_t now = s_mono_ms ();
    zlist_t *gone = zlist_new ();
    for (s_member_t *m = zhashx_first (self->members); m; m = zhashx_next (self->members)) {
        if (!m->alive || now - m->seen_ms < self->member_timeout_ms)
            continue;
        self->version++;
        zsys_warning ("router %s: %s %s silent for %" PRIu64 " ms: %s", self->name, m->role,
                      m->name, now - m->seen_ms,
                      streq (m->role, "store") ? "marked down" : "removed from the map");
        if (streq (m->role, "store"))
            m->alive = false;
        else
            zlist_append (gone, m->name);
        if (streq (m->role, "gateway"))
            s_gateway_reset (self, zim_str (m->name));
    }
    for (char *name = zlist_first (gone); name; name = zlist_next (gone))
        zhashx_delete (self->members, name);
    zlist_destroy (&gone);
}

static void s_user_destroy (void **item)
{
    s_user_t *user = *item;
    if (!user)
        return;
    for (size_t i = 0; i < user->count; i++) {
        free (user->routes[i].gateway);
        free (user->routes[i].device);
    }
    free (user->routes);
    free (user);
    *item = NULL;
}

//  Writes "app/uid" into buf (both ids exclude '/').
static void s_key (char *buf, zim_str_t app, zim_str_t uid)
{
    memcpy (buf, app.ptr, app.len);
    buf[app.len] = '/';
    memcpy (buf + app.len + 1, uid.ptr, uid.len);
    buf[app.len + 1 + uid.len] = 0;
}

//  Removes route i from user, keeping the others.
static void s_user_remove (s_router_t *self, s_user_t *user, size_t i)
{
    free (user->routes[i].gateway);
    free (user->routes[i].device);
    user->routes[i] = user->routes[--user->count];
    self->routes--;
}

static void s_presence_apply (s_router_t *self, zim_str_t gateway, const zim_presence_item_t *it)
{
    char key[2 * ZIM_ID_MAX + 2];
    s_key (key, it->app, it->uid);
    s_user_t *user = zhashx_lookup (self->users, key);
    //  Drop any entry for this (gateway, conn): an up replaces it, a down ends it.
    if (user)
        for (size_t i = 0; i < user->count; i++)
            if (user->routes[i].conn == it->conn && zim_str_eq (gateway, user->routes[i].gateway)) {
                s_user_remove (self, user, i);
                break;
            }
    if (it->up) {
        if (!user) {
            user = zim_calloc (1, sizeof *user);
            zhashx_insert (self->users, key, user);
        }
        if (user->count == user->alloc) {
            user->alloc = user->alloc ? user->alloc * 2 : 2;
            user->routes = zim_realloc (user->routes, user->alloc * sizeof *user->routes);
        }
        s_route_t *route = &user->routes[user->count++];
        route->gateway = zim_str_dup (gateway);
        route->conn = it->conn;
        route->device = zim_str_dup (it->device);
        self->routes++;
    }
    else if (user && user->count == 0)
        zhashx_delete (self->users, key);
}

//  Forgets every route of one gateway (it restarted or re-announces).
static void s_gateway_reset (s_router_t *self, zim_str_t gateway)
{
    zlistx_t *keys = zhashx_keys (self->users);
    for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        s_user_t *user = zhashx_lookup (self->users, key);
        for (size_t i = 0; i < user->count;)
            if (zim_str_eq (gateway, user->routes[i].gateway))
                s_user_remove (self, user, i);
            else
                i++;
        if (user->count == 0)
            zhashx_delete (self->users, key);
    }
    zlistx_destroy (&keys);
}

static void s_handle_presence (s_router_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_presence_t m;
    if (zim_presence_decode (rd, fields, &m))
        goto malformed;
    if (m.reset)
        s_gateway_reset (self, m.gateway);
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_presence_item_t item;
        if (zim_presence_item_next (&m.items, &item))
            goto malformed;
        s_presence_apply (self, m.gateway, &item);
        self->presence++;
    }
    return;
malformed:
    self->bad++;
    zsys_warning ("router %s: dropped a malformed PRESENCE", self->name);
}

static void s_handle_route_q (s_router_t *self, zframe_t *peer, zim_rd_t *rd, uint32_t fields)
{
    zim_route_q_t q;
    if (zim_route_q_decode (rd, fields, &q))
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
        char key[2 * ZIM_ID_MAX + 2];
        s_key (key, app, uid);
        s_user_t *user = zhashx_lookup (self->users, key);
        size_t count = user ? user->count : 0;
        zim_route_list_begin (&self->wr, (uint32_t) count);
        for (size_t r = 0; r < count; r++) {
            zim_route_t route = {zim_str (user->routes[r].gateway), user->routes[r].conn,
                                 zim_str (user->routes[r].device)};
            zim_route (&self->wr, &route);
        }
    }
    self->queries += q.nkeys;
    void *sock = zsock_resolve (self->sock);
    zmq_send (sock, zframe_data (peer), zframe_size (peer), ZMQ_SNDMORE);
    zmq_send (sock, self->wr.data, self->wr.size, 0);
    return;
malformed:
    self->bad++;
    zsys_warning ("router %s: dropped a malformed ROUTE_Q", self->name);
}

//  Reads one message from the ROUTER socket and handles it.
static void s_handle_sock (s_router_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sock);
    if (!msg)
        return;
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
    else if (kind == ZIM_MSG_ROUTE_Q)
        s_handle_route_q (self, peer, &rd, fields);
    else if (kind == ZIM_MSG_HELLO)
        s_handle_hello (self, peer, &rd, fields);
    else
        goto malformed;
    zmsg_destroy (&msg);
    return;
malformed:
    self->bad++;
    zsys_warning ("router %s: dropped an undecodable message", self->name);
    zmsg_destroy (&msg);
}

static void s_handle_pipe (s_router_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;
        return;
    }
    char *cmd = zmsg_popstr (msg);
    if (!cmd)
        cmd = zim_strdup ("");
    if (streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "SET")) {
        char *key = zmsg_popstr (msg);
        char *value = zmsg_popstr (msg);
        uint64_t v;
        if (key && value && streq (key, "name")) {
            free (self->name);
            self->name = zim_strdup (value);
        }
        else if (key && value && streq (key, "member_timeout") &&
                 zim_parse_u64 (value, &v) == 0 && v >= 1)
            self->member_timeout_ms = v * 1000;
        else
            zsys_warning ("router: unknown setting '%s'", key ? key : "");
        free (key);
        free (value);
    }
    else if (streq (cmd, "BIND")) {
        char *endpoint = zmsg_popstr (msg);
        int port = endpoint ? zsock_bind (self->sock, "%s", endpoint) : -1;
        if (port == -1)
            zsys_error ("router %s: cannot bind %s: %s", self->name, endpoint ? endpoint : "",
                        zmq_strerror (zmq_errno ()));
        else if (port > 0)
            self->port = port;
        zsock_signal (self->pipe, port == -1 ? 1 : 0);
        free (endpoint);
    }
    else if (streq (cmd, "START")) {
        self->started = true;
        zsock_signal (self->pipe, 0);
    }
    else if (streq (cmd, "PORT"))
        zstr_sendf (self->pipe, "%d", self->port);
    else if (streq (cmd, "STATS"))
        zstr_sendf (self->pipe,
                    "{\"users\":%zu,\"routes\":%" PRIu64 ",\"presence\":%" PRIu64
                    ",\"queries\":%" PRIu64 ",\"bad_messages\":%" PRIu64
                    ",\"members\":%zu,\"map_version\":%" PRIu64 ",\"hellos\":%" PRIu64 "}",
                    zhashx_size (self->users), self->routes, self->presence, self->queries,
                    self->bad, zhashx_size (self->members), self->version, self->hellos);
    else
        zsys_warning ("router: unknown command '%s'", cmd);
    free (cmd);
    zmsg_destroy (&msg);
}

void zim_router_actor (zsock_t *pipe, void *args)
{
    s_router_t self_s = {0}, *self = &self_s;
    self->pipe = pipe;
    self->name = zim_strdup ("router-1");
    self->sock = zsock_new (ZMQ_ROUTER);
    assert (self->sock);
    zsock_set_linger (self->sock, 0);
    self->users = zhashx_new ();
    zhashx_set_destructor (self->users, s_user_destroy);
    zim_wr_init (&self->wr);
    self->members = zhashx_new ();
    zhashx_set_destructor (self->members, s_member_destroy);
    self->instance = ((uint64_t) randof (0x7fffffff) << 32) ^ zim_mono_us () ^ (uint64_t) getpid ();
    self->member_timeout_ms = 3000;
    self->poller = zpoller_new (pipe, self->sock, NULL);
    zpoller_set_nonstop (self->poller, true); //  the process shell decides when to stop
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        if (self->started && s_mono_ms () >= self->next_map_ms) {
            s_expire_members (self);
            if (zhashx_size (self->members))
                s_publish_map (self);
            else
                self->next_map_ms = s_mono_ms () + 1000;
        }
        void *which = zpoller_wait (self->poller, 250);
        if (which == pipe)
            s_handle_pipe (self);
        else if (which == self->sock && self->started)
            s_handle_sock (self);
        else if (which == self->sock)
            zclock_sleep (1); //  not started: leave messages queued
        else if (zpoller_terminated (self->poller))
            break;
    }
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->sock);
    zhashx_destroy (&self->users);
    zhashx_destroy (&self->members);
    zim_wr_free (&self->wr);
    free (self->name);
}

//  -------------------------------------------------------------------------
//  Selftest

//  Sends one encoded backbone message from a DEALER.
static void s_test_send (zsock_t *sock, zim_wr_t *wr)
{
    zmq_send (zsock_resolve (sock), wr->data, wr->size, 0);
    zim_wr_reset (wr);
}

//  Asks the router where uid is; returns the number of routes and fills
//  conns (up to 8).
static uint32_t s_test_lookup (zsock_t *broker, zim_wr_t *wr, const char *uid, uint64_t *conns)
{
    static uint64_t req = 0;
    zim_route_q_begin (wr, ++req, 1);
    zim_route_key (wr, zim_str ("demo"), zim_str (uid));
    s_test_send (broker, wr);
    zframe_t *frame = zframe_recv (broker);
    assert (frame);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields, n;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_ROUTE_R);
    zim_route_r_t r;
    assert (zim_route_r_decode (&rd, fields, &r) == 0 && r.req == req && r.nlists == 1);
    assert (zim_rd_array (&r.lists, &n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        zim_route_t route;
        assert (zim_route_next (&r.lists, &route) == 0);
        if (i < 8)
            conns[i] = route.conn;
    }
    zframe_destroy (&frame);
    return n;
}

void zim_router_test (bool verbose)
{
    zactor_t *router = zactor_new (zim_router_actor, NULL);
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
    zim_presence_item_t up = {true, 1, zim_str ("demo"), zim_str ("alice"), zim_str ("phone")};
    zim_presence_item (&wr, &up);
    up.conn = 2;
    up.uid = zim_str ("bob");
    zim_presence_item (&wr, &up);
    s_test_send (gw1, &wr);
    zim_presence_begin (&wr, zim_str ("gw-2"), true, 1);
    up.conn = 7;
    up.uid = zim_str ("alice");
    zim_presence_item (&wr, &up);
    s_test_send (gw2, &wr);
    zclock_sleep (100);

    uint64_t conns[8];
    assert (s_test_lookup (broker, &wr, "alice", conns) == 2);
    assert (s_test_lookup (broker, &wr, "bob", conns) == 1 && conns[0] == 2);
    assert (s_test_lookup (broker, &wr, "carol", conns) == 0);

    //  A disconnect removes exactly that route.
    zim_presence_begin (&wr, zim_str ("gw-1"), false, 1);
    zim_presence_item_t down = {false, 1, zim_str ("demo"), zim_str ("alice"), zim_str ("phone")};
    zim_presence_item (&wr, &down);
    s_test_send (gw1, &wr);
    zclock_sleep (50);
    assert (s_test_lookup (broker, &wr, "alice", conns) == 1 && conns[0] == 7);

    //  Garbage is dropped and the router keeps answering.
    zmq_send (zsock_resolve (gw1), "\xc1\xff", 2, 0);
    zim_wr_array (&wr, 3);
    zim_wr_uint (&wr, ZIM_MSG_ROUTE_Q);
    zim_wr_cstr (&wr, "not a number");
    zim_wr_nil (&wr);
    s_test_send (broker, &wr);

    //  A gateway reset forgets all its routes.
    zim_presence_begin (&wr, zim_str ("gw-2"), true, 0);
    s_test_send (gw2, &wr);
    zclock_sleep (50);
    assert (s_test_lookup (broker, &wr, "alice", conns) == 0);
    assert (s_test_lookup (broker, &wr, "bob", conns) == 1);

    zstr_sendx (router, "STATS", NULL);
    char *stats = zstr_recv (router);
    assert (strstr (stats, "\"routes\":1") && strstr (stats, "\"bad_messages\":2"));
    if (verbose)
        printf ("(%s) ", stats);
    free (stats);

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
                         zim_str (""), zim_str ("{}")};
    zim_wr_reset (&wr);
    zim_hello_encode (&wr, &hello);
    s_test_send (mg, &wr);
    hello.name = zim_str ("store-9");
    hello.role = zim_str ("store");
    zim_hello_encode (&wr, &hello);
    s_test_send (ms, &wr);
    //  Read maps at the store until both members are in one.
    int members = 0;
    for (int tries = 0; tries < 10 && members < 2; tries++) {
        zframe_t *frame = zframe_recv (ms);
        assert (frame);
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        int kind;
        uint32_t fields;
        zim_map_t map;
        assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_MAP);
        assert (zim_map_decode (&rd, fields, &map) == 0);
        members = (int) map.nmembers;
        zframe_destroy (&frame);
    }
    assert (members == 2);
    //  zed is online on gw-9.
    zim_presence_begin (&wr, zim_str ("gw-9"), false, 1);
    up = (zim_presence_item_t){true, 9, zim_str ("demo"), zim_str ("zed"), zim_str ("phone")};
    zim_presence_item (&wr, &up);
    s_test_send (gw1, &wr);
    zclock_sleep (50);
    assert (s_test_lookup (broker, &wr, "zed", conns) == 1 && conns[0] == 9);
    //  The gateway goes silent; the store keeps beating: after the timeout
    //  the gateway is gone from the map.
    bool gw_gone = false;
    zsock_set_rcvtimeo (ms, 100);
    for (int beat = 0; beat < 50 && !gw_gone; beat++) {
        zim_hello_encode (&wr, &hello);
        s_test_send (ms, &wr);
        zframe_t *frame = zframe_recv (ms); //  a map comes about once a second
        if (!frame)
            continue;
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        int kind;
        uint32_t fields;
        zim_map_t map;
        assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_map_decode (&rd, fields, &map) == 0);
        zim_member_t m;
        gw_gone = true;
        for (uint32_t i = 0; i < map.nmembers; i++) {
            assert (zim_member_next (&map.members, &m) == 0);
            if (zim_str_eq (m.name, "gw-9"))
                gw_gone = false;
        }
        zframe_destroy (&frame);
    }
    assert (gw_gone);
    //  ... and its routes went with it.
    assert (s_test_lookup (broker, &wr, "zed", conns) == 0);
    //  Now the store goes silent: it stays in the map, marked down, as the
    //  gateway sees when it comes back.
    zclock_sleep (1500);
    hello.name = zim_str ("gw-9");
    hello.role = zim_str ("gateway");
    zim_hello_encode (&wr, &hello);
    s_test_send (mg, &wr);
    bool store_down = false;
    for (int tries = 0; tries < 5 && !store_down; tries++) {
        zframe_t *frame = zframe_recv (mg);
        assert (frame);
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        int kind;
        uint32_t fields;
        zim_map_t map;
        assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_map_decode (&rd, fields, &map) == 0);
        zim_member_t m;
        for (uint32_t i = 0; i < map.nmembers; i++) {
            assert (zim_member_next (&map.members, &m) == 0);
            if (zim_str_eq (m.name, "store-9") && !m.alive)
                store_down = true;
        }
        zframe_destroy (&frame);
    }
    assert (store_down);
    zsock_destroy (&mg);
    zsock_destroy (&ms);

    zim_wr_free (&wr);
    zsock_destroy (&gw1);
    zsock_destroy (&gw2);
    zsock_destroy (&broker);
    zactor_destroy (&router);
}
