/*  zim_membership.c: joins, HELLO and MAP of a cluster node
    (zim_membership.h).
*/
#include "tools/zim_membership.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <assert.h>

//  A router this node has joined.
typedef struct {
    zsock_t *sock;  //  DEALER, identity "m:NAME": HELLO out, MAP in
    char *endpoint; //  the router's endpoint
    zframe_t *map;  //  the last MAP it sent, NULL before the first
    int64_t map_ms; //  when that came (monotonic)
} s_joined_t;

struct _zim_membership_t {
    char *name;                         //  this node's name
    char *role;                         //  and role
    const zim_curve_t *curve;           //  CURVE keys, or NULL (borrowed)
    uint64_t instance;                  //  random per start, in every HELLO
    s_joined_t joined[ZIM_MAX_ROUTERS]; //  routers joined
    size_t njoined;                     //  how many
    uint64_t bad;                       //  messages that were not a MAP
    zim_ratelog_t ratelog;              //  for those
};

zim_membership_t *zim_membership_new (const char *name, const char *role, const zim_curve_t *curve)
{
    zim_membership_t *self = zim_calloc (1, sizeof *self);
    self->name = zim_strdup (name);
    self->role = zim_strdup (role);
    self->curve = curve;
    self->instance = ((uint64_t)randof (0x7fffffff) << 31) ^ (uint64_t)zclock_usecs ();
    return self;
}

void zim_membership_destroy (zim_membership_t **self_p)
{
    zim_membership_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->njoined; i++) {
        zsock_destroy (&self->joined[i].sock);
        zframe_destroy (&self->joined[i].map);
        free (self->joined[i].endpoint);
    }
    free (self->name);
    free (self->role);
    free (self);
    *self_p = NULL;
}

int zim_membership_join (zim_membership_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->njoined; i++)
        if (streq (self->joined[i].endpoint, endpoint))
            return 0;
    if (self->njoined == ZIM_MAX_ROUTERS) {
        zsys_error ("%s: at most %d routers", self->name, ZIM_MAX_ROUTERS);
        return -1;
    }
    zsock_t *sock = zim_curve_socket (self->curve, ZMQ_DEALER, NULL, ZIM_SHELL_MAX_MSG_SIZE);
    if (!sock)
        return -1;
    char identity[ZIM_ID_MAX + 3];
    snprintf (identity, sizeof identity, "m:%s", self->name);
    zsock_set_identity (sock, identity);
    zsock_set_sndhwm (sock, 10);
    if (zsock_connect (sock, "%s", endpoint)) {
        zsys_error ("%s: bad router endpoint '%s'", self->name, endpoint);
        zsock_destroy (&sock);
        return -1;
    }
    s_joined_t *j = &self->joined[self->njoined++];
    j->sock = sock;
    j->endpoint = zim_strdup (endpoint);
    return 0;
}

size_t zim_membership_size (zim_membership_t *self)
{
    return self->njoined;
}

const char *zim_membership_endpoint (zim_membership_t *self, size_t i)
{
    return i < self->njoined ? self->joined[i].endpoint : NULL;
}

zsock_t *zim_membership_sock (zim_membership_t *self, size_t i)
{
    return i < self->njoined ? self->joined[i].sock : NULL;
}

int64_t zim_membership_beat (zim_membership_t *self, const char *address, const char *admin,
                             json_t *stats)
{
    char *text = stats ? json_dumps (stats, JSON_COMPACT) : NULL;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_hello_t hello = {
        zim_str (self->name), zim_str (self->role),         zim_str (address),
        self->instance,       zim_str (admin ? admin : ""), zim_str (text ? text : "{}")};
    zim_hello_pack (&wr, &hello);
    for (size_t i = 0; i < self->njoined; i++)
        zmq_send (zsock_resolve (self->joined[i].sock), wr.data, wr.size, ZMQ_DONTWAIT);
    zim_wr_free (&wr);
    free (text);
    return zclock_mono () + 1000;
}

zframe_t *zim_membership_recv (zim_membership_t *self, zsock_t *sock)
{
    s_joined_t *j = NULL;
    for (size_t i = 0; i < self->njoined; i++)
        if (self->joined[i].sock == sock)
            j = &self->joined[i];
    zframe_t *frame = j ? zframe_recv (sock) : NULL;
    if (!frame)
        return NULL;
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    zim_map_t map;
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_unpack (&rd, fields, &map)) {
        self->bad++;
        zim_ratelog_warn (&self->ratelog, self->name,
                          "dropped an undecodable message from router %s", j->endpoint);
        zframe_destroy (&frame);
        return NULL;
    }
    if (!j->map)
        zsys_info ("%s: joined the cluster through %s (%u members)", self->name, j->endpoint,
                   map.nmembers);
    j->map_ms = zclock_mono ();
    zframe_destroy (&j->map);
    j->map = zframe_dup (frame);
    return frame;
}

//  A JSON string of v; a placeholder if v is not UTF-8.
static json_t *s_json_str (zim_str_t v)
{
    json_t *str = json_stringn (v.ptr, v.len);
    return str ? str : json_string ("(not UTF-8)");
}

json_t *zim_membership_nodes (zim_membership_t *self)
{
    s_joined_t *newest = NULL;
    for (size_t i = 0; i < self->njoined; i++)
        if (self->joined[i].map && (!newest || self->joined[i].map_ms > newest->map_ms))
            newest = &self->joined[i];
    if (!newest)
        return NULL;
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (newest->map), zframe_size (newest->map));
    int kind;
    uint32_t fields;
    zim_map_t map;
    if (zim_msg_kind (&rd, &kind, &fields) || zim_map_unpack (&rd, fields, &map))
        return NULL; //  checked when it came
    json_t *nodes = json_array ();
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t m;
        if (zim_member_unpack (&map.members, &m))
            break;
        //  Names are zim ids, but stats are whatever the member sent: take
        //  them only if they are a JSON object.
        json_t *stats = NULL;
        if (m.alive)
            stats = json_loadb (m.stats.ptr, m.stats.len, 0, NULL);
        if (!json_is_object (stats)) {
            json_decref (stats);
            stats = json_object ();
        }
        json_t *node = json_object ();
        json_object_set_new (node, "name", s_json_str (m.name));
        json_object_set_new (node, "role", s_json_str (m.role));
        json_object_set_new (node, "address", s_json_str (m.endpoint));
        json_object_set_new (node, "alive", json_boolean (m.alive));
        json_object_set_new (node, "stats", stats);
        json_array_append_new (nodes, node);
    }
    return nodes;
}

uint64_t zim_membership_bad (zim_membership_t *self)
{
    return self->bad;
}

//  -------------------------------------------------------------------------
//  Selftest: a fake router (a ROUTER socket) that reads HELLOs and answers
//  with a MAP.

void zim_membership_test (bool verbose)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (port > 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    zim_membership_t *ms = zim_membership_new ("gw-1", "gateway", NULL);
    assert (zim_membership_join (ms, endpoint) == 0);
    assert (zim_membership_join (ms, endpoint) == 0); //  once
    assert (zim_membership_size (ms) == 1);
    assert (zim_membership_nodes (ms) == NULL);

    //  A HELLO carries the counters as JSON.
    json_t *stats = json_pack ("{s:i, s:s}", "sends", 3, "quote", "a \"b\"");
    zim_membership_beat (ms, "ws://127.0.0.1:1/ws", "tcp://127.0.0.1:2", stats);
    json_decref (stats);
    zmsg_t *msg = zmsg_recv (router);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *peer = zmsg_pop (msg);
    assert (zframe_streq (peer, "m:gw-1"));
    zframe_t *body = zmsg_pop (msg);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    int kind;
    uint32_t fields;
    zim_hello_t hello;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_HELLO);
    assert (zim_hello_unpack (&rd, fields, &hello) == 0);
    json_t *sent = json_loadb (hello.stats.ptr, hello.stats.len, 0, NULL);
    assert (sent && streq (json_string_value (json_object_get (sent, "quote")), "a \"b\""));
    json_decref (sent);
    zframe_destroy (&body);
    zmsg_destroy (&msg);

    //  Garbage from a router is dropped; a MAP is passed on and kept. Its
    //  members' stats, whatever they hold, come out as JSON objects.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zframe_send (&peer, router, ZFRAME_MORE + ZFRAME_REUSE);
    zstr_send (router, "not a map");
    zsock_t *sock = zim_membership_sock (ms, 0);
    assert (zim_membership_recv (ms, sock) == NULL && zim_membership_bad (ms) == 1);
    zim_map_begin (&wr, zim_str ("router-1"), 1, 1, 2);
    zim_member_t m = {zim_str ("gw-1"),
                      zim_str ("gateway"),
                      zim_str ("ws://x/ws"),
                      1,
                      zim_str (""),
                      true,
                      5,
                      zim_str ("{\"sends\":3,\"gateway_routes\":{\"gw-1\":2}}")};
    zim_member_pack (&wr, &m);
    m = (zim_member_t){
        zim_str ("store-1"), zim_str ("store"), zim_str ("tcp://y"), 1, zim_str (""), true, 5,
        zim_str ("not json")};
    zim_member_pack (&wr, &m);
    zframe_send (&peer, router, ZFRAME_MORE);
    zmq_send (zsock_resolve (router), wr.data, wr.size, 0);
    zframe_t *map = zim_membership_recv (ms, sock);
    assert (map && zframe_size (map) == wr.size);
    zframe_destroy (&map);
    json_t *nodes = zim_membership_nodes (ms);
    assert (json_array_size (nodes) == 2);
    json_t *gw = json_array_get (nodes, 0), *store = json_array_get (nodes, 1);
    assert (json_integer_value (json_object_get (json_object_get (gw, "stats"), "sends")) == 3);
    assert (json_is_object (json_object_get (store, "stats")));
    assert (json_object_size (json_object_get (store, "stats")) == 0);
    char *text = json_dumps (nodes, JSON_COMPACT);
    assert (text);
    free (text);
    json_decref (nodes);

    zim_wr_free (&wr);
    zim_membership_destroy (&ms);
    zim_membership_destroy (&ms);
    zsock_destroy (&router);
    if (verbose)
        zsys_info ("membership: HELLO out, MAP in, status nodes as JSON");
}
