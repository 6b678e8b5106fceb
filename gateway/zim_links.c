/*  zim_links.c: brokers, routers, maps and presence (see zim_links.h).
 */
#include "gateway/zim_links.h"
#include "gateway/zim_rooms.h"
#include "gateway/zim_sessions.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <jansson.h>

#define S_MAX_BROKERS 64
#define S_MAX_ROUTERS 8
#define S_PRESENCE_CHUNK 1000
//  A router's maps count for this long after the last one.
#define S_MAP_STALE_MS 3000
//  A router that just (re)started lists only the nodes it has heard from:
//  for this long its maps add brokers but do not remove any.
#define S_MAP_YOUNG_MS 2500
//  Two gateway_routes samples closer than this are the same sample (maps
//  go out every second and on every change; a router samples its own
//  counters once a second).
#define S_SAMPLE_SAME_MS 300
//  Samples taken this soon after an announce may predate its arrival.
#define S_ANNOUNCE_SETTLE_MS 2000
//  A gap this long between two ticks (1 s apart) means this gateway
//  stalled: long enough that a router may have dropped it (member_timeout
//  is 3 s by default), short of what a busy loop delays a tick by.
#define S_STALL_MS 2500

//  A broker this gateway can send to.
typedef struct {
    char *name;     //  its node name (the endpoint for CONNECT broker)
    char *endpoint; //  where it listens
    zsock_t *sock;  //  DEALER, our name as routing id
    bool live;      //  in the cluster map (always, when given by CONNECT)
} s_broker_t;

//  A router we send PRESENCE to.
typedef struct {
    char *endpoint; //  as given to CONNECT router
    zsock_t *sock;  //  DEALER, our name as routing id
} s_router_t;

//  A router known by its maps: the brokers they list, and what they say
//  about this gateway's routes. A broker is live while any router heard
//  from in the last S_MAP_STALE_MS lists it: routers may disagree for a
//  moment (one has not yet timed a broker out, or has just restarted).
typedef struct {
    char *name;               //  the router's node name
    uint64_t instance;        //  its instance in its last map: a change means it restarted
    int64_t since_ms;         //  when that instance was first seen
    int64_t map_ms;           //  when its last map came
    bool seen[S_MAX_BROKERS]; //  brokers (by index) its maps list alive
    int router;               //  index of our socket to it, -1 if not known
    bool absent;              //  its last map did not list us (announced once)
    int64_t sample_ms;        //  when its last gateway_routes sample was taken
    int mismatches;           //  fresh samples in a row that disagree with us
    uint64_t lo[2], hi[2];    //  our authed count: [1] since the last sample, [0] before
    int64_t announced_ms;     //  when we last announced every session to it
} s_mapsrc_t;

struct _zim_links_t {
    zim_edge_t *edge;                  //  shell, settings, counters, sessions
    s_broker_t brokers[S_MAX_BROKERS]; //  every broker ever connected
    size_t nbrokers;                   //  how many
    size_t live[S_MAX_BROKERS];        //  indexes of the live ones, sorted by name
    size_t nlive;                      //  how many
    s_router_t routers[S_MAX_ROUTERS]; //  DEALERs to the routers
    size_t nrouters;                   //  how many
    s_mapsrc_t maps[S_MAX_ROUTERS];    //  the routers heard from
    size_t nmaps;                      //  how many
    int sent;                          //  ZIM_LINKS_* sent on since the last take
    zim_links_socket_fn *on_socket;    //  new sockets after START
    void *on_socket_arg;               //  its argument
    int64_t tick_ms;                   //  the last tick (monotonic), 0 before the first
};

zim_links_t *zim_links_new (zim_edge_t *edge)
{
    zim_links_t *self = (zim_links_t *)zim_calloc (1, sizeof *self);
    self->edge = edge;
    return self;
}

void zim_links_destroy (zim_links_t **self_p)
{
    zim_links_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nbrokers; i++) {
        zsock_destroy (&self->brokers[i].sock);
        free (self->brokers[i].name);
        free (self->brokers[i].endpoint);
    }
    for (size_t i = 0; i < self->nrouters; i++) {
        zsock_destroy (&self->routers[i].sock);
        free (self->routers[i].endpoint);
    }
    for (size_t i = 0; i < self->nmaps; i++)
        free (self->maps[i].name);
    free (self);
    *self_p = NULL;
}

void zim_links_on_socket (zim_links_t *self, zim_links_socket_fn *fn, void *arg)
{
    self->on_socket = fn;
    self->on_socket_arg = arg;
}

//  Makes a DEALER with our routing id connected to endpoint. A broker's
//  has ZMQ_IMMEDIATE: while it is down, sends fail at once (5030) rather
//  than wait in a queue for a broker that may never return.
static zsock_t *s_dealer (zim_links_t *self, const char *endpoint, bool immediate)
{
    zim_shell_t *shell = self->edge->shell;
    zsock_t *sock = zim_shell_socket (shell, ZMQ_DEALER, false);
    if (!sock)
        return NULL;
    if (immediate)
        zsock_set_immediate (sock, 1);
    zsock_set_identity (sock, zim_shell_name (shell));
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    if (zsock_connect (sock, "%s", endpoint)) {
        zsys_error ("%s: cannot connect to %s", zim_shell_name (shell), endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

//  Adds a broker and its DEALER (handed to the loop if running).
static s_broker_t *s_broker_add (zim_links_t *self, const char *name, const char *endpoint)
{
    if (self->nbrokers == S_MAX_BROKERS) {
        zim_shell_warn (self->edge->shell, "more than %d brokers: %s ignored", S_MAX_BROKERS, name);
        return NULL;
    }
    zsock_t *sock = s_dealer (self, endpoint, true);
    if (!sock)
        return NULL;
    s_broker_t *broker = &self->brokers[self->nbrokers++];
    broker->name = zim_strdup (name);
    broker->endpoint = zim_strdup (endpoint);
    broker->sock = sock;
    if (self->on_socket)
        self->on_socket (self->on_socket_arg, sock);
    return broker;
}

static int s_live_cmp (const void *a, const void *b, void *arg)
{
    zim_links_t *self = (zim_links_t *)arg;
    return strcmp (self->brokers[*(const size_t *)a].name, self->brokers[*(const size_t *)b].name);
}

//  Rebuilds the sorted list of live brokers.
static void s_broker_relist (zim_links_t *self)
{
    self->nlive = 0;
    for (size_t i = 0; i < self->nbrokers; i++)
        if (self->brokers[i].live)
            self->live[self->nlive++] = i;
    qsort_r (self->live, self->nlive, sizeof (size_t), s_live_cmp, self);
}

int zim_links_connect (zim_links_t *self, const char *role, const char *endpoint)
{
    const char *name = zim_shell_name (self->edge->shell);
    if (zim_shell_started (self->edge->shell)) {
        zsys_error ("%s: CONNECT %s after START refused", name, role);
        return -1;
    }
    if (streq (role, "broker")) {
        s_broker_t *broker = s_broker_add (self, endpoint, endpoint);
        if (!broker)
            return -1;
        broker->live = true;
        s_broker_relist (self);
        return 0;
    }
    if (streq (role, "router") && self->nrouters < S_MAX_ROUTERS) {
        zsock_t *sock = s_dealer (self, endpoint, false);
        if (!sock)
            return -1;
        self->routers[self->nrouters].sock = sock;
        self->routers[self->nrouters++].endpoint = zim_strdup (endpoint);
        return 0;
    }
    zsys_error ("%s: CONNECT %s: unknown role, or more than %d routers", name, role, S_MAX_ROUTERS);
    return -1;
}

//  Sends edge->wr on sock without blocking. Returns 0 or -1 (queue full or
//  no peer).
static int s_send (zim_links_t *self, zsock_t *sock, int bit)
{
    zim_wr_t *wr = &self->edge->wr;
    self->sent |= bit;
    return zmq_send (zsock_resolve (sock), wr->data, wr->size, ZMQ_DONTWAIT) == (int)wr->size ? 0
                                                                                              : -1;
}

int zim_links_forward (zim_links_t *self, const char *app, const char *uid)
{
    if (self->nlive == 0)
        return -1;
    uint64_t h = zim_user_hash (zim_str (app), zim_str (uid));
    return s_send (self, self->brokers[self->live[h % self->nlive]].sock, ZIM_LINKS_BROKERS);
}

//  Sends edge->wr to router index, or to every router if index is -1.
static void s_to_routers (zim_links_t *self, int index)
{
    for (size_t i = 0; i < self->nrouters; i++) {
        if (index >= 0 && (size_t)index != i)
            continue;
        if (s_send (self, self->routers[i].sock, ZIM_LINKS_ROUTERS)) {
            self->edge->presence_dropped++;
            zim_shell_warn (self->edge->shell,
                            "presence update dropped: router queue full or router unreachable");
        }
    }
}

int zim_links_to_router (zim_links_t *self, int index)
{
    int rc = self->nrouters ? 0 : -1;
    for (size_t i = 0; i < self->nrouters; i++)
        if ((index < 0 || (size_t)index == i) && s_send (self, self->routers[i].sock, ZIM_LINKS_ROUTERS))
            rc = -1;
    return rc;
}

//  Our authed count changed: every router's range takes it in.
static void s_track_count (zim_links_t *self)
{
    uint64_t n = self->edge->authed;
    for (size_t r = 0; r < self->nmaps; r++) {
        s_mapsrc_t *src = &self->maps[r];
        src->lo[1] = n < src->lo[1] ? n : src->lo[1];
        src->hi[1] = n > src->hi[1] ? n : src->hi[1];
    }
}

void zim_links_presence (zim_links_t *self, zim_session_t *session, bool up)
{
    zim_edge_t *edge = self->edge;
    zim_wr_reset (&edge->wr);
    zim_presence_begin (&edge->wr, zim_str (zim_shell_name (edge->shell)), false, 1);
    zim_presence_item_t item = {up,
                                zim_session_id (session),
                                zim_str (zim_session_app (session)),
                                zim_str (zim_session_uid (session)),
                                zim_str (zim_session_device (session)),
                                zim_session_background (session)};
    zim_presence_item_pack (&edge->wr, &item);
    s_to_routers (self, -1);
    s_track_count (self);
}

void zim_links_reset (zim_links_t *self)
{
    zim_edge_t *edge = self->edge;
    zim_wr_reset (&edge->wr);
    zim_presence_begin (&edge->wr, zim_str (zim_shell_name (edge->shell)), true, 0);
    s_to_routers (self, -1);
}

//  Tells router index (-1: every router) every session this gateway holds,
//  after a reset: what a router that lost them needs to have them whole.
static void s_announce (zim_links_t *self, int index, const char *why)
{
    zim_edge_t *edge = self->edge;
    zim_sessions_t *sessions = edge->sessions;
    size_t total = 0, sent = 0;
    for (zim_session_t *s = zim_sessions_first (sessions); s; s = zim_sessions_next (sessions))
        total += zim_session_authed (s);
    zim_session_t *s = zim_sessions_first (sessions);
    do {
        uint32_t n = (uint32_t)(total - sent > S_PRESENCE_CHUNK ? S_PRESENCE_CHUNK : total - sent);
        zim_wr_reset (&edge->wr);
        zim_presence_begin (&edge->wr, zim_str (zim_shell_name (edge->shell)), sent == 0, n);
        for (uint32_t i = 0; i < n; s = zim_sessions_next (sessions)) {
            if (!zim_session_authed (s))
                continue;
            zim_presence_item_t item = {true,
                                        zim_session_id (s),
                                        zim_str (zim_session_app (s)),
                                        zim_str (zim_session_uid (s)),
                                        zim_str (zim_session_device (s)),
                                        zim_session_background (s)};
            zim_presence_item_pack (&edge->wr, &item);
            i++;
        }
        s_to_routers (self, index);
        sent += n;
    } while (sent < total);
    zim_rooms_announce (edge, index); //  and every room with members here
    edge->reannounces++;
    //  Maps (a peer) trigger it: through the rate-limited log.
    zim_shell_warn (edge->shell, "%s: announced %zu sessions to %s", why, total,
                    index >= 0 ? self->routers[index].endpoint : "every router");
}

//  The index of our socket to the router whose own map entry says it
//  listens at endpoint; -1 if none matches (then we send to every router).
static int s_router_index (zim_links_t *self, zim_str_t endpoint)
{
    for (size_t i = 0; i < self->nrouters; i++)
        if (zim_str_eq (endpoint, self->routers[i].endpoint))
            return (int)i;
    return -1;
}

//  The record of the router a map came from, made if new; NULL if full.
static s_mapsrc_t *s_mapsrc (zim_links_t *self, const zim_map_t *map, int64_t now)
{
    for (size_t r = 0; r < self->nmaps; r++)
        if (zim_str_eq (map->router, self->maps[r].name))
            return &self->maps[r];
    if (self->nmaps == S_MAX_ROUTERS) {
        zim_shell_warn (self->edge->shell, "maps from more than %d routers: one ignored",
                        S_MAX_ROUTERS);
        return NULL;
    }
    s_mapsrc_t *src = &self->maps[self->nmaps++];
    memset (src, 0, sizeof *src);
    src->name = zim_str_dup (map->router);
    src->instance = map->instance;
    src->since_ms = now;
    src->router = -1;
    src->lo[0] = src->lo[1] = src->hi[0] = src->hi[1] = self->edge->authed;
    return src;
}

//  A broker a map lists alive: found or added. Returns its index or -1.
static int s_map_broker (zim_links_t *self, const zim_member_t *m)
{
    char name[ZIM_ID_MAX + 1], endpoint[300];
    zim_str_copy (m->name, name, sizeof name);
    zim_str_copy (m->endpoint, endpoint, sizeof endpoint);
    for (size_t b = 0; b < self->nbrokers; b++)
        if (streq (self->brokers[b].name, name) && streq (self->brokers[b].endpoint, endpoint))
            return (int)b;
    s_broker_t *broker = s_broker_add (self, name, endpoint);
    if (!broker)
        return -1;
    zsys_info ("%s: broker %s at %s", zim_shell_name (self->edge->shell), name, endpoint);
    return (int)(broker - self->brokers);
}

//  Recomputes which brokers are live after src's map listed seen.
static void s_brokers_update (zim_links_t *self, s_mapsrc_t *src, const bool *seen, int64_t now)
{
    bool young = now - src->since_ms < S_MAP_YOUNG_MS;
    for (size_t b = 0; b < self->nbrokers; b++)
        src->seen[b] = seen[b] || (young && src->seen[b]);
    bool changed = false;
    for (size_t b = 0; b < self->nbrokers; b++) {
        //  Configured with CONNECT broker (name = endpoint): always live.
        bool live = streq (self->brokers[b].name, self->brokers[b].endpoint);
        for (size_t r = 0; r < self->nmaps && !live; r++)
            live = self->maps[r].seen[b] && now - self->maps[r].map_ms < S_MAP_STALE_MS;
        if (live != self->brokers[b].live) {
            changed = true;
            self->brokers[b].live = live;
            zim_shell_warn (self->edge->shell, "broker %s is %s", self->brokers[b].name,
                            live ? "live" : "gone: its senders move to the others");
        }
    }
    if (changed)
        s_broker_relist (self);
}

//  Reads the router's gateway_routes sample from its own map entry and
//  announces again after two fresh samples that disagree with us.
static void s_reconcile (zim_links_t *self, s_mapsrc_t *src, const zim_member_t *own, int64_t now)
{
    zim_edge_t *edge = self->edge;
    json_t *stats = json_loadb (own->stats.ptr, own->stats.len, 0, NULL);
    json_t *routes = json_object_get (stats, "gateway_routes");
    if (!json_is_object (routes)) { //  a router without the gauge
        json_decref (stats);
        return;
    }
    json_t *value = json_object_get (routes, zim_shell_name (edge->shell));
    json_int_t held = json_is_integer (value) ? json_integer_value (value) : 0;
    json_decref (stats);
    int64_t sample = now - (int64_t)own->age_ms;
    if (src->sample_ms && sample - src->sample_ms < S_SAMPLE_SAME_MS)
        return; //  a sample already judged
    src->sample_ms = sample;
    uint64_t lo = src->lo[0] < src->lo[1] ? src->lo[0] : src->lo[1];
    uint64_t hi = src->hi[0] > src->hi[1] ? src->hi[0] : src->hi[1];
    src->lo[0] = src->lo[1];
    src->hi[0] = src->hi[1];
    src->lo[1] = src->hi[1] = edge->authed;
    if ((src->announced_ms && sample < src->announced_ms + S_ANNOUNCE_SETTLE_MS) ||
        (held >= 0 && (uint64_t)held >= lo && (uint64_t)held <= hi)) {
        src->mismatches = 0;
        return;
    }
    if (++src->mismatches < 2)
        return;
    char why[160];
    snprintf (why, sizeof why,
              "router %s holds %" PRId64 " routes of ours, we have %" PRIu64 " sessions", src->name,
              (int64_t)held, edge->authed);
    s_announce (self, src->router, why);
    src->mismatches = 0;
    src->announced_ms = now;
}

void zim_links_map (zim_links_t *self, zframe_t *frame)
{
    zim_edge_t *edge = self->edge;
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    zim_map_t map;
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_unpack (&rd, fields, &map)) {
        edge->bad_messages++;
        zim_shell_warn (edge->shell, "dropped an undecodable MAP");
        return;
    }
    int64_t now = zim_edge_now_ms ();
    s_mapsrc_t *src = s_mapsrc (self, &map, now);
    if (!src)
        return;
    bool restarted = src->instance != map.instance;
    if (restarted) {
        src->instance = map.instance;
        src->since_ms = now;
    }
    src->map_ms = now;
    bool seen[S_MAX_BROKERS] = {false}, listed = false, own_found = false;
    size_t others = 0;
    zim_member_t own = {0};
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t m;
        if (zim_member_unpack (&map.members, &m)) {
            edge->bad_messages++;
            zim_shell_warn (edge->shell, "dropped an undecodable MAP");
            return;
        }
        if (zim_str_eq (m.name, zim_shell_name (edge->shell)))
            listed = true;
        else
            others++;
        if (zim_str_eq (m.name, src->name)) {
            own = m;
            own_found = true;
            src->router = s_router_index (self, m.endpoint);
        }
        if (zim_str_eq (m.role, "broker") && m.alive) {
            int b = s_map_broker (self, &m);
            if (b >= 0)
                seen[b] = true;
        }
    }
    s_brokers_update (self, src, seen, now);
    //  A router that restarted lost every route.
    if (restarted) {
        char why[128];
        snprintf (why, sizeof why, "router %s restarted", src->name);
        s_announce (self, src->router, why);
        src->announced_ms = now;
    }
    //  A router that does not list us dropped our routes (we or it
    //  stalled past its member_timeout): once, until it lists us again.
    bool absent = !listed && others > 0;
    if (absent && !src->absent && !restarted) {
        char why[128];
        snprintf (why, sizeof why, "router %s's map does not list this gateway", src->name);
        s_announce (self, src->router, why);
        src->announced_ms = now;
    }
    src->absent = absent;
    if (!absent && own_found)
        s_reconcile (self, src, &own, now);
}

void zim_links_tick (zim_links_t *self, int64_t now_ms)
{
    int64_t gap = self->tick_ms ? now_ms - self->tick_ms : 0;
    self->tick_ms = now_ms;
    if (gap < S_STALL_MS || self->nrouters == 0)
        return;
    char why[96];
    snprintf (why, sizeof why, "this gateway stalled for %" PRId64 " ms", gap);
    s_announce (self, -1, why);
    for (size_t r = 0; r < self->nmaps; r++)
        self->maps[r].announced_ms = now_ms;
}

size_t zim_links_live (zim_links_t *self)
{
    return self->nlive;
}

int zim_links_take_sent (zim_links_t *self)
{
    int sent = self->sent;
    self->sent = 0;
    return sent;
}

size_t zim_links_brokers (zim_links_t *self)
{
    return self->nbrokers;
}

zsock_t *zim_links_broker (zim_links_t *self, size_t index)
{
    return index < self->nbrokers ? self->brokers[index].sock : NULL;
}

size_t zim_links_routers (zim_links_t *self)
{
    return self->nrouters;
}

zsock_t *zim_links_router (zim_links_t *self, size_t index)
{
    return index < self->nrouters ? self->routers[index].sock : NULL;
}

//  -------------------------------------------------------------------------
//  Selftest: fake routers (ROUTER sockets) and fake maps.

//  Sends links a MAP from router (instance) listing the given members.
static void s_test_map (zim_links_t *links, const char *router, uint64_t instance,
                        const zim_member_t *members, uint32_t n)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_map_begin (&wr, zim_str (router), instance, 1, n);
    for (uint32_t i = 0; i < n; i++)
        zim_member_pack (&wr, &members[i]);
    zframe_t *frame = zframe_new (wr.data, wr.size);
    zim_links_map (links, frame);
    zframe_destroy (&frame);
    zim_wr_free (&wr);
}

//  Receives PRESENCE messages at a fake router for up to timeout ms;
//  returns how many were resets (announces), and adds items to *items.
static int s_test_presence (zsock_t *router, int timeout, uint32_t *items)
{
    int resets = 0;
    zpoller_t *poller = zpoller_new (router, NULL);
    while (zpoller_wait (poller, timeout)) {
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *body = zmsg_last (msg);
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (body), zframe_size (body));
        int kind;
        uint32_t fields;
        zim_presence_t p;
        assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PRESENCE);
        assert (zim_presence_unpack (&rd, fields, &p) == 0);
        resets += p.reset;
        *items += p.nitems;
        zmsg_destroy (&msg);
        timeout = 50;
    }
    zpoller_destroy (&poller);
    return resets;
}

void zim_links_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    zim_links_t *links = edge->links;
    assert (zim_shell_set (edge->shell, "name", "gw-7", NULL) == 0);
    zsock_t *r1 = zsock_new (ZMQ_ROUTER), *r2 = zsock_new (ZMQ_ROUTER);
    int p1 = zsock_bind (r1, "tcp://127.0.0.1:*"), p2 = zsock_bind (r2, "tcp://127.0.0.1:*");
    char ep1[64], ep2[64];
    snprintf (ep1, sizeof ep1, "tcp://127.0.0.1:%d", p1);
    snprintf (ep2, sizeof ep2, "tcp://127.0.0.1:%d", p2);
    assert (zim_links_connect (links, "router", ep1) == 0);
    assert (zim_links_connect (links, "router", ep2) == 0);
    assert (zim_links_connect (links, "broker", "inproc://b1") == 0);
    assert (zim_links_connect (links, "store", "inproc://x") == -1);
    assert (zim_links_live (links) == 1 && zim_links_routers (links) == 2);

    //  Three authenticated sessions: PRESENCE up reaches both routers.
    zim_session_t *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = zim_sessions_open (edge->sessions, NULL);
        char uid[16];
        snprintf (uid, sizeof uid, "u%d", i);
        assert (zim_sessions_admit (edge->sessions, s[i], "demo", uid) == 0);
    }
    uint32_t items = 0;
    assert (s_test_presence (r1, 2000, &items) == 0 && items == 3);
    items = 0;
    assert (s_test_presence (r2, 2000, &items) == 0 && items == 3);

    //  router-1's entry names its endpoint, so announces go to it alone.
    char stats[128];
    zim_member_t members[3] = {{zim_str ("broker-1"), zim_str ("broker"),
                                zim_str ("tcp://127.0.0.1:9"), 1, zim_str (""), true, 0,
                                zim_str ("{}")},
                               {zim_str ("gw-7"), zim_str ("gateway"), zim_str ("ws://x"), 1,
                                zim_str (""), true, 0, zim_str ("{}")},
                               {zim_str ("router-1"), zim_str ("router"), zim_str (ep1), 1,
                                zim_str (""), true, 0, zim_str (stats)}};
    snprintf (stats, sizeof stats, "{\"routes\":3,\"gateway_routes\":{\"gw-7\":3,\"gw-8\":5}}");
    members[2].stats = zim_str (stats);
    s_test_map (links, "router-1", 11, members, 3);
    assert (zim_links_live (links) == 2); //  broker-1 joined
    items = 0;
    assert (s_test_presence (r1, 200, &items) == 0); //  in agreement: nothing

    //  (a) A map that lists others but not us: one announce, to router-1.
    zim_member_t without[2] = {members[0], members[2]};
    s_test_map (links, "router-1", 11, without, 2);
    items = 0;
    assert (s_test_presence (r1, 2000, &items) == 1 && items == 3);
    assert (s_test_presence (r2, 200, &items) == 0);
    s_test_map (links, "router-1", 11, without, 2); //  still absent: no second one
    assert (s_test_presence (r1, 200, &items) == 0);
    s_test_map (links, "router-1", 11, members, 3); //  listed again ...
    s_test_map (links, "router-1", 11, without, 2); //  ... and gone again: announce
    items = 0;
    assert (s_test_presence (r1, 2000, &items) == 1 && items == 3);
    assert (edge->reannounces == 2);

    //  (b) Reconciliation: the router says it holds 1 route of ours. One
    //  fresh sample is not enough; a repeat of the same sample is not
    //  fresh; the second fresh one is. Samples are dated by age_ms.
    snprintf (stats, sizeof stats, "{\"gateway_routes\":{\"gw-7\":1}}");
    members[2].stats = zim_str (stats);
    members[2].age_ms = 5000; //  long before the last announce: not judged
    s_test_map (links, "router-1", 11, members, 3);
    assert (s_test_presence (r1, 200, &items) == 0);
    zclock_sleep (S_ANNOUNCE_SETTLE_MS + 100);
    members[2].age_ms = 0;
    int64_t first = zim_edge_now_ms ();
    s_test_map (links, "router-1", 11, members, 3); //  first fresh mismatch
    members[2].age_ms = (uint64_t)(zim_edge_now_ms () - first);
    s_test_map (links, "router-1", 11, members, 3); //  the same sample again
    members[2].age_ms = 5000;
    s_test_map (links, "router-1", 11, members, 3); //  an older sample: not judged
    assert (s_test_presence (r1, 200, &items) == 0);
    zclock_sleep (S_SAMPLE_SAME_MS + 50);
    members[2].age_ms = 0;
    s_test_map (links, "router-1", 11, members, 3); //  second fresh mismatch
    items = 0;
    assert (s_test_presence (r1, 2000, &items) == 1 && items == 3);
    assert (s_test_presence (r2, 200, &items) == 0 && edge->reannounces == 3);

    //  A count within what we had around the sample is no mismatch: a
    //  session closed between the router's sample and the map.
    zclock_sleep (S_ANNOUNCE_SETTLE_MS + 100);
    zim_sessions_close (edge->sessions, &s[2]);
    assert (s_test_presence (r1, 2000, &items) == 0); //  PRESENCE down only
    snprintf (stats, sizeof stats, "{\"gateway_routes\":{\"gw-7\":3}}");
    members[2].stats = zim_str (stats);
    for (int i = 0; i < 3; i++) {
        s_test_map (links, "router-1", 11, members, 3);
        zclock_sleep (S_SAMPLE_SAME_MS + 50);
    }
    assert (s_test_presence (r1, 200, &items) == 0 && edge->reannounces == 3);
    //  A router without the gauge is never judged.
    snprintf (stats, sizeof stats, "{\"routes\":0}");
    members[2].stats = zim_str (stats);
    for (int i = 0; i < 3; i++) {
        s_test_map (links, "router-1", 11, members, 3);
        zclock_sleep (S_SAMPLE_SAME_MS + 50);
    }
    assert (s_test_presence (r1, 200, &items) == 0 && edge->reannounces == 3);

    //  A restart (new instance): announce. An unknown router endpoint
    //  (router-2's entry is missing) means every router hears it.
    s_test_map (links, "router-1", 12, members, 3);
    items = 0;
    assert (s_test_presence (r1, 2000, &items) == 1 && items == 2);
    s_test_map (links, "router-2", 5, members, 2); //  new: no announce
    s_test_map (links, "router-2", 6, members, 2); //  restarted
    items = 0;
    assert (s_test_presence (r1, 2000, &items) == 1 && s_test_presence (r2, 2000, &items) == 1);
    assert (edge->reannounces == 5);

    //  A stall of our own loop: every router hears every session.
    int64_t now = zim_edge_now_ms ();
    zim_links_tick (links, now);
    zim_links_tick (links, now + 1000);
    assert (s_test_presence (r1, 200, &items) == 0);
    zim_links_tick (links, now + 1000 + S_STALL_MS);
    items = 0;
    assert (s_test_presence (r1, 2000, &items) == 1 && s_test_presence (r2, 2000, &items) == 1);
    assert (edge->reannounces == 6);

    //  Garbage is counted.
    zframe_t *junk = zframe_new ("\x93\x01", 2);
    zim_links_map (links, junk);
    zframe_destroy (&junk);
    assert (edge->bad_messages == 1);
    assert (zim_links_take_sent (links) & ZIM_LINKS_ROUTERS);
    assert (zim_links_take_sent (links) == 0);
    zim_edge_destroy (&edge);
    zsock_destroy (&r1);
    zsock_destroy (&r2);
}
