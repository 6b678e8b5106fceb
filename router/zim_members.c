/*  zim_members.c: the cluster map (zim_members.h): one entry per node that
    sent HELLO, with its role, endpoints, instance, last counters and the
    routing id of its shell's DEALER, through which the map goes back.
*/
#include "router/zim_members.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

//  One cluster member, as its heartbeats describe it.
typedef struct {
    char *name;        //  node name
    char *role;        //  gateway, broker, router, store
    char *endpoint;    //  its service endpoint (WebSocket URL for gateways)
    char *admin;       //  its admin endpoint, "" if none
    char *stats;       //  its counters, a JSON object
    uint64_t instance; //  random per process start
    uint64_t seen_ms;  //  last heartbeat (caller's monotonic ms)
    bool alive;        //  heard within member_timeout
    zframe_t *peer;    //  routing id of its shell's DEALER
} s_member_t;

struct _zim_members_t {
    zhashx_t *members; //  name -> s_member_t
    uint64_t version;  //  bumped on every change
};

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

zim_members_t *zim_members_new (void)
{
    zim_members_t *self = zim_calloc (1, sizeof *self);
    self->members = zhashx_new ();
    zhashx_set_destructor (self->members, s_member_destroy);
    return self;
}

void zim_members_destroy (zim_members_t **self_p)
{
    zim_members_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->members);
    free (self);
    *self_p = NULL;
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

bool zim_members_hello (zim_members_t *self, const zim_hello_t *h, zframe_t *peer, uint64_t now_ms,
                        const char *who)
{
    char name[ZIM_ID_MAX + 1];
    zim_str_copy (h->name, name, sizeof name);
    s_member_t *m = (s_member_t *)zhashx_lookup (self->members, name);
    bool changed = false;
    if (!m) {
        m = (s_member_t *)zim_calloc (1, sizeof (s_member_t));
        m->name = zim_strdup (name);
        zhashx_insert (self->members, name, m);
        changed = true;
        zsys_info ("%s: %.*s %s joined (%.*s)", who, (int)h->role.len, h->role.ptr, name,
                   (int)h->endpoint.len, h->endpoint.ptr);
    } else if (!m->alive || m->instance != h->instance) {
        changed = true;
        zsys_info ("%s: %s %s", who, name, m->instance != h->instance ? "restarted" : "is back");
    }
    changed |= s_set_field (&m->role, h->role);
    changed |= s_set_field (&m->endpoint, h->endpoint);
    changed |= s_set_field (&m->admin, h->admin);
    s_set_field (&m->stats, h->stats);
    m->instance = h->instance;
    m->seen_ms = now_ms;
    m->alive = true;
    if (!m->peer || !zframe_eq (m->peer, peer)) {
        zframe_destroy (&m->peer);
        m->peer = zframe_dup (peer);
    }
    if (changed)
        self->version++;
    return changed;
}

size_t zim_members_expire (zim_members_t *self, uint64_t now_ms, uint64_t timeout_ms, zlist_t *gone,
                           const char *who)
{
    size_t changed = 0;
    zlist_t *leaving = zlist_new ();
    for (s_member_t *m = zhashx_first (self->members); m; m = zhashx_next (self->members)) {
        if (!m->alive || now_ms < m->seen_ms + timeout_ms)
            continue;
        bool store = streq (m->role, "store");
        zsys_warning ("%s: %s %s silent for %" PRIu64 " ms: %s", who, m->role, m->name,
                      now_ms - m->seen_ms, store ? "marked down" : "removed from the map");
        if (store)
            m->alive = false;
        else
            zlist_append (leaving, m->name);
        if (streq (m->role, "gateway"))
            zlist_append (gone, m->name); //  copied: the list is autofree
        changed++;
    }
    for (char *name = zlist_first (leaving); name; name = zlist_next (leaving))
        zhashx_delete (self->members, name);
    zlist_destroy (&leaving);
    if (changed)
        self->version++;
    return changed;
}

void zim_members_stalled (zim_members_t *self, uint64_t gap_ms)
{
    for (s_member_t *m = zhashx_first (self->members); m; m = zhashx_next (self->members))
        m->seen_ms += gap_ms;
}

static int s_member_cmp (const void *a, const void *b)
{
    return strcmp ((*(s_member_t *const *)a)->name, (*(s_member_t *const *)b)->name);
}

void zim_members_map (zim_members_t *self, zim_wr_t *wr, zim_str_t router, uint64_t instance,
                      uint64_t now_ms)
{
    size_t n = zhashx_size (self->members);
    s_member_t **list = (s_member_t **)zim_calloc (n + 1, sizeof (s_member_t *));
    size_t i = 0;
    for (s_member_t *m = zhashx_first (self->members); m; m = zhashx_next (self->members))
        list[i++] = m;
    qsort (list, n, sizeof (s_member_t *), s_member_cmp);
    zim_wr_reset (wr);
    zim_map_begin (wr, router, instance, self->version, (uint32_t)n);
    for (i = 0; i < n; i++) {
        s_member_t *m = list[i];
        //  A heartbeat forgiven for a stall can lie in the future.
        uint64_t age = now_ms > m->seen_ms ? now_ms - m->seen_ms : 0;
        zim_member_t item = {zim_str (m->name),
                             zim_str (m->role),
                             zim_str (m->endpoint),
                             m->instance,
                             zim_str (m->admin),
                             m->alive,
                             age,
                             zim_str (m->stats)};
        zim_member_pack (wr, &item);
    }
    free (list);
}

size_t zim_members_send (zim_members_t *self, zsock_t *sock, const zim_wr_t *wr)
{
    size_t sent = 0;
    void *handle = zsock_resolve (sock);
    for (s_member_t *m = zhashx_first (self->members); m; m = zhashx_next (self->members)) {
        if (!m->alive || !m->peer)
            continue;
        if (zmq_send (handle, zframe_data (m->peer), zframe_size (m->peer),
                      ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
            continue;
        zmq_send (handle, wr->data, wr->size, ZMQ_DONTWAIT);
        sent++;
    }
    return sent;
}

size_t zim_members_size (zim_members_t *self)
{
    return zhashx_size (self->members);
}

uint64_t zim_members_version (zim_members_t *self)
{
    return self->version;
}

//  -------------------------------------------------------------------------
//  Selftest

//  A HELLO of name/role at now.
static bool s_test_hello (zim_members_t *self, const char *name, const char *role,
                          uint64_t instance, uint64_t now)
{
    zim_hello_t h = {zim_str (name), zim_str (role), zim_str ("tcp://h:1"),
                     instance,       zim_str (""),   zim_str ("{}")};
    zframe_t *peer = zframe_from (name);
    bool changed = zim_members_hello (self, &h, peer, now, "members-test");
    zframe_destroy (&peer);
    return changed;
}

//  Decodes the map in wr: how many members, how many alive; whether name is
//  listed.
static uint32_t s_test_map (const zim_wr_t *wr, uint32_t *alive, const char *name, bool *listed)
{
    zim_rd_t rd;
    zim_rd_init (&rd, wr->data, wr->size);
    int kind;
    uint32_t fields;
    zim_map_t map;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_MAP);
    assert (zim_map_unpack (&rd, fields, &map) == 0);
    *alive = 0;
    *listed = false;
    char prev[ZIM_ID_MAX + 1] = "";
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t m;
        assert (zim_member_unpack (&map.members, &m) == 0);
        char this_name[ZIM_ID_MAX + 1];
        zim_str_copy (m.name, this_name, sizeof this_name);
        assert (strcmp (prev, this_name) < 0); //  sorted by name
        snprintf (prev, sizeof prev, "%s", this_name);
        *alive += m.alive;
        if (streq (this_name, name))
            *listed = true;
    }
    return map.nmembers;
}

void zim_members_test (bool verbose)
{
    zim_members_t *members = zim_members_new ();
    zlist_t *gone = zlist_new ();
    zlist_autofree (gone);
    uint64_t now = 10000;
    assert (s_test_hello (members, "gw-1", "gateway", 1, now));
    assert (s_test_hello (members, "store-1", "store", 1, now));
    assert (s_test_hello (members, "broker-1", "broker", 1, now));
    assert (!s_test_hello (members, "gw-1", "gateway", 1, now + 500)); //  a refresh
    assert (s_test_hello (members, "gw-1", "gateway", 2, now + 600));  //  a restart
    uint64_t version = zim_members_version (members);
    assert (zim_members_size (members) == 3);

    //  Within the timeout nothing expires.
    assert (zim_members_expire (members, now + 2900, 3000, gone, "members-test") == 0);
    //  The broker and the store fall silent; the gateway beats on.
    assert (!s_test_hello (members, "gw-1", "gateway", 2, now + 2900));
    assert (zim_members_expire (members, now + 3000, 3000, gone, "members-test") == 2);
    assert (zlist_size (gone) == 0 && zim_members_version (members) > version);
    zim_wr_t wr;
    zim_wr_init (&wr);
    uint32_t alive;
    bool listed;
    zim_members_map (members, &wr, zim_str ("router-1"), 7, now + 3000);
    //  The store stays, marked down; the broker left.
    assert (s_test_map (&wr, &alive, "broker-1", &listed) == 2 && alive == 1 && !listed);
    assert (s_test_map (&wr, &alive, "store-1", &listed) == 2 && listed);

    //  A stall of the router itself: 5 s of not running are not the
    //  members' silence. The gateway's last beat was at now + 2900; the
    //  router wakes at now + 8000, reads nothing yet, and must keep it.
    zim_members_stalled (members, 5000);
    assert (zim_members_expire (members, now + 8000, 3000, gone, "members-test") == 0);
    zim_members_map (members, &wr, zim_str ("router-1"), 7, now + 8000);
    assert (s_test_map (&wr, &alive, "gw-1", &listed) == 2 && listed && alive == 1);
    //  ... but a gateway silent for the timeout of awake time goes, and is
    //  reported so that its routes can be dropped.
    assert (zim_members_expire (members, now + 10900, 3000, gone, "members-test") == 1);
    assert (zlist_size (gone) == 1 && streq ((char *)zlist_first (gone), "gw-1"));
    //  The store comes back.
    assert (s_test_hello (members, "store-1", "store", 1, now + 11000));
    zim_members_map (members, &wr, zim_str ("router-1"), 7, now + 11000);
    assert (s_test_map (&wr, &alive, "store-1", &listed) == 1 && alive == 1);

    //  The map goes to live members through a ROUTER, by routing id.
    zsock_t *router = zsock_new_router ("inproc://members-test");
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_identity (dealer, "store-1");
    zsock_connect (dealer, "inproc://members-test");
    zstr_send (dealer, "hi"); //  the ROUTER learns the routing id
    zmsg_t *hello = zmsg_recv (router);
    assert (hello && zmsg_size (hello) == 2);
    zmsg_destroy (&hello);
    assert (zim_members_send (members, router, &wr) == 1);
    zsock_set_rcvtimeo (dealer, 1000);
    zframe_t *frame = zframe_recv (dealer);
    assert (frame && zframe_size (frame) == wr.size);
    zframe_destroy (&frame);
    zsock_destroy (&dealer);
    zsock_destroy (&router);

    zim_wr_free (&wr);
    zlist_destroy (&gone);
    zim_members_destroy (&members);
    zim_members_destroy (&members);
    if (verbose)
        zsys_info ("members: join, restart, expiry, store down, stall forgiven");
}
