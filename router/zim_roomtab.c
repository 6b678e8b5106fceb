/*  zim_roomtab.c: room interest, room totals, room messages and signals on
    the router (see zim_roomtab.h).
*/
#include "router/zim_roomtab.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>

//  Rooms one ROOM_PUB may name.
#define S_MAX_PUB_ROOMS 256
//  Gateways one message may go to.
#define S_MAX_GATEWAYS 256
//  Counts of one room go out at most this often.
#define S_COUNT_EVERY_MS 1000
//  Items per ROOM_COUNTS message.
#define S_CHUNK 1000

//  One gateway's connections in a room.
typedef struct {
    char *gateway;  //  its node name (routing id)
    uint64_t count; //  its connections in the room
} s_gw_t;

//  A room with members somewhere.
typedef struct {
    char *key;                //  "app room"
    char app[ZIM_ID_MAX + 1]; //  its app
    char *name;               //  its name
    s_gw_t *gws;              //  gateways with members
    size_t n, alloc;          //  how many, room for
    uint64_t total;           //  the sum of their counts
    bool dirty;               //  total or gateways changed since the last count out
    uint64_t sent_ms;         //  when counts last went out
} s_room_t;

struct _zim_roomtab_t {
    zhashx_t *rooms;     //  "app room" -> s_room_t
    zim_wr_t wr;         //  encode buffer: backbone messages
    zim_wr_t fr;         //  encode buffer: client frames
    zim_wr_t scratch;    //  routes of a signal's recipient
    uint64_t reports;    //  ROOMS items applied
    uint64_t publishes;  //  ROOM_PUBs forwarded
    uint64_t room_outs;  //  ROOM_OUTs sent to gateways
    uint64_t signals;    //  SIGNALs forwarded
    uint64_t signal_outs; //  their OUTs to gateways
    uint64_t count_msgs; //  ROOM_COUNTS sent
    uint64_t bad;        //  malformed messages dropped
};

static void s_room_destroy (void **item)
{
    s_room_t *room = (s_room_t *)*item;
    if (!room)
        return;
    for (size_t i = 0; i < room->n; i++)
        free (room->gws[i].gateway);
    free (room->gws);
    free (room->key);
    free (room->name);
    free (room);
    *item = NULL;
}

zim_roomtab_t *zim_roomtab_new (void)
{
    zim_roomtab_t *self = (zim_roomtab_t *)zim_calloc (1, sizeof *self);
    self->rooms = zhashx_new ();
    zhashx_set_destructor (self->rooms, s_room_destroy);
    zim_wr_init (&self->wr);
    zim_wr_init (&self->fr);
    zim_wr_init (&self->scratch);
    return self;
}

void zim_roomtab_destroy (zim_roomtab_t **self_p)
{
    zim_roomtab_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->rooms);
    zim_wr_free (&self->wr);
    zim_wr_free (&self->fr);
    zim_wr_free (&self->scratch);
    free (self);
    *self_p = NULL;
}

static void s_key (char *buf, size_t size, zim_str_t app, zim_str_t room)
{
    snprintf (buf, size, "%.*s %.*s", (int)app.len, app.ptr, (int)room.len, room.ptr);
}

//  Sets gateway's count in (app, room); 0 removes it.
static void s_apply (zim_roomtab_t *self, zim_str_t gateway, zim_str_t app, zim_str_t name,
                     uint64_t count)
{
    char key[ZIM_ID_MAX + 130 + 2];
    s_key (key, sizeof key, app, name);
    s_room_t *room = (s_room_t *)zhashx_lookup (self->rooms, key);
    if (!room) {
        if (count == 0)
            return;
        room = (s_room_t *)zim_calloc (1, sizeof *room);
        room->key = zim_strdup (key);
        zim_str_copy (app, room->app, sizeof room->app);
        room->name = zim_str_dup (name);
        zhashx_insert (self->rooms, key, room);
    }
    size_t i = 0;
    while (i < room->n && !zim_str_eq (gateway, room->gws[i].gateway))
        i++;
    if (i == room->n) {
        if (count == 0)
            return;
        if (room->n == room->alloc) {
            room->alloc = room->alloc ? 2 * room->alloc : 2;
            room->gws = (s_gw_t *)zim_realloc (room->gws, room->alloc * sizeof (s_gw_t));
        }
        room->gws[room->n++] = (s_gw_t){zim_str_dup (gateway), 0};
    }
    room->total = room->total - room->gws[i].count + count;
    room->gws[i].count = count;
    room->dirty = true;
    if (count == 0) {
        free (room->gws[i].gateway);
        room->gws[i] = room->gws[--room->n];
        if (room->n == 0)
            zhashx_delete (self->rooms, key);
    }
}

void zim_roomtab_reset (zim_roomtab_t *self, zim_str_t gateway)
{
    zlist_t *gone = zlist_new ();
    for (s_room_t *room = zhashx_first (self->rooms); room; room = zhashx_next (self->rooms))
        for (size_t i = 0; i < room->n; i++)
            if (zim_str_eq (gateway, room->gws[i].gateway)) {
                room->total -= room->gws[i].count;
                free (room->gws[i].gateway);
                room->gws[i] = room->gws[--room->n];
                room->dirty = true;
                if (room->n == 0)
                    zlist_append (gone, room->key);
                break;
            }
    for (char *key = zlist_first (gone); key; key = zlist_next (gone))
        zhashx_delete (self->rooms, key);
    zlist_destroy (&gone);
}

//  Sends self->wr to gateway over sock. Unroutable or full: dropped (live
//  traffic is at most once).
static void s_send (zim_roomtab_t *self, void *sock, const char *gateway)
{
    if (zmq_send (sock, gateway, strlen (gateway), ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1)
        zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT);
}

static bool s_report (zim_roomtab_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_room_report_t m;
    if (zim_room_report_unpack (rd, fields, &m))
        return false;
    zim_rd_t items = m.items;
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_count_t item;
        if (zim_room_count_unpack (&items, &item))
            return false;
    }
    if (m.reset)
        zim_roomtab_reset (self, m.gateway);
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_count_t item;
        zim_room_count_unpack (&m.items, &item);
        s_apply (self, m.gateway, item.app, item.room, item.count);
        self->reports++;
    }
    return true;
}

static bool s_publish (zim_roomtab_t *self, void *sock, zim_rd_t *rd, uint32_t fields)
{
    zim_room_pub_t m;
    if (zim_room_pub_unpack (rd, fields, &m) || m.nrooms > S_MAX_PUB_ROOMS)
        return false;
    //  Every room is read (and checked) before anything goes out.
    s_room_t *rooms[S_MAX_PUB_ROOMS];
    size_t offsets[S_MAX_PUB_ROOMS + 1];
    uint32_t nrooms = 0;
    uint64_t ts = zim_now_ms ();
    zim_wr_reset (&self->fr);
    for (uint32_t i = 0; i < m.nrooms; i++) {
        zim_room_name_t r;
        if (zim_room_name_unpack (&m.rooms, &r))
            return false;
        char key[ZIM_ID_MAX + 130 + 2];
        s_key (key, sizeof key, m.app, r.room);
        s_room_t *room = (s_room_t *)zhashx_lookup (self->rooms, key);
        if (!room)
            continue;
        offsets[nrooms] = self->fr.size;
        rooms[nrooms++] = room;
        zim_sframe_pack (&self->fr, &(zim_sframe_t){.op = ZIM_SOP_ROOM,
                                                     .room = zim_str (room->name),
                                                     .body = m.body,
                                                     .ts = ts,
                                                     .from = m.from.len ? m.from : (zim_str_t){0}});
    }
    offsets[nrooms] = self->fr.size;
    self->publishes++;
    //  The gateways with members of any of them; each gets one ROOM_OUT
    //  with the rooms it has members in.
    const char *gws[S_MAX_GATEWAYS];
    size_t ngws = 0;
    for (uint32_t r = 0; r < nrooms; r++)
        for (size_t g = 0; g < rooms[r]->n; g++) {
            size_t k = 0;
            while (k < ngws && strcmp (gws[k], rooms[r]->gws[g].gateway))
                k++;
            if (k == ngws && ngws < S_MAX_GATEWAYS)
                gws[ngws++] = rooms[r]->gws[g].gateway;
        }
    for (size_t k = 0; k < ngws; k++) {
        uint32_t items = 0;
        for (uint32_t r = 0; r < nrooms; r++)
            for (size_t g = 0; g < rooms[r]->n; g++)
                items += streq (gws[k], rooms[r]->gws[g].gateway);
        zim_wr_reset (&self->wr);
        zim_room_out_pack (&self->wr, &(zim_room_out_t){m.app, {NULL, NULL}, items});
        for (uint32_t r = 0; r < nrooms; r++)
            for (size_t g = 0; g < rooms[r]->n; g++)
                if (streq (gws[k], rooms[r]->gws[g].gateway)) {
                    zim_str_t frame = {(const char *)self->fr.data + offsets[r],
                                       offsets[r + 1] - offsets[r]};
                    zim_room_frame_pack (&self->wr, &(zim_room_frame_t){zim_str (rooms[r]->name),
                                                                         frame});
                }
        s_send (self, sock, gws[k]);
        self->room_outs++;
    }
    return true;
}

static bool s_signal (zim_roomtab_t *self, zim_routes_t *routes, void *sock, zim_rd_t *rd,
                      uint32_t fields)
{
    zim_signal_t m;
    if (zim_signal_unpack (rd, fields, &m))
        return false;
    self->signals++;
    zim_wr_reset (&self->scratch);
    size_t n = zim_routes_encode (routes, &self->scratch, m.app, m.to);
    if (n == 0)
        return true;
    zim_wr_reset (&self->fr);
    zim_sframe_pack (&self->fr,
                     &(zim_sframe_t){.op = ZIM_SOP_SIGNAL, .from = m.from, .body = m.body});
    zim_str_t frame = {(const char *)self->fr.data, self->fr.size};
    //  The routes grouped by gateway: one OUT each.
    zim_route_t all[64];
    uint32_t count;
    zim_rd_t list;
    zim_rd_init (&list, self->scratch.data, self->scratch.size);
    if (zim_rd_array (&list, &count))
        return true;
    uint32_t taken = 0;
    for (uint32_t i = 0; i < count && taken < 64; i++)
        if (zim_route_unpack (&list, &all[taken]) == 0)
            taken++;
    bool done[64] = {false};
    for (uint32_t i = 0; i < taken; i++) {
        if (done[i])
            continue;
        uint64_t conns[64];
        uint32_t nconns = 0;
        for (uint32_t j = i; j < taken; j++)
            if (!done[j] && all[j].gateway.len == all[i].gateway.len &&
                memcmp (all[j].gateway.ptr, all[i].gateway.ptr, all[i].gateway.len) == 0) {
                done[j] = true;
                conns[nconns++] = all[j].conn;
            }
        char gateway[ZIM_ID_MAX + 1];
        zim_str_copy (all[i].gateway, gateway, sizeof gateway);
        zim_wr_reset (&self->wr);
        zim_out_encode (&self->wr, conns, nconns, frame);
        s_send (self, sock, gateway);
        self->signal_outs++;
    }
    return true;
}

bool zim_roomtab_handle (zim_roomtab_t *self, zim_routes_t *routes, void *sock, int kind,
                         zim_rd_t *rd, uint32_t fields)
{
    bool ok;
    if (kind == ZIM_MSG_ROOMS)
        ok = s_report (self, rd, fields);
    else if (kind == ZIM_MSG_ROOM_PUB)
        ok = s_publish (self, sock, rd, fields);
    else if (kind == ZIM_MSG_SIGNAL)
        ok = s_signal (self, routes, sock, rd, fields);
    else
        return false;
    if (!ok) {
        self->bad++;
        zsys_warning ("router: dropped a malformed room or signal message (kind %d)", kind);
    }
    return true;
}

void zim_roomtab_tick (zim_roomtab_t *self, void *sock, uint64_t now_ms)
{
    //  The rooms due, then per gateway the ones it has members in.
    zlist_t *due = zlist_new ();
    zlist_t *gws = zlist_new ();
    zlist_autofree (gws);
    zlist_comparefn (gws, (zlist_compare_fn *)strcmp);
    for (s_room_t *room = zhashx_first (self->rooms); room; room = zhashx_next (self->rooms)) {
        if (!room->dirty || now_ms - room->sent_ms < S_COUNT_EVERY_MS)
            continue;
        room->dirty = false;
        room->sent_ms = now_ms;
        zlist_append (due, room);
        for (size_t g = 0; g < room->n; g++)
            if (!zlist_exists (gws, room->gws[g].gateway))
                zlist_append (gws, zim_strdup (room->gws[g].gateway));
    }
    for (char *gw = zlist_first (gws); gw; gw = zlist_next (gws)) {
        //  Rooms of gw among the due ones, in chunks.
        s_room_t *room = zlist_first (due);
        while (room) {
            uint32_t n = 0;
            zim_wr_reset (&self->scratch);
            for (; room && n < S_CHUNK; room = zlist_next (due))
                for (size_t g = 0; g < room->n; g++)
                    if (streq (gw, room->gws[g].gateway)) {
                        zim_room_count_pack (&self->scratch,
                                             &(zim_room_count_t){zim_str (room->app),
                                                                 zim_str (room->name), room->total});
                        n++;
                    }
            if (n == 0)
                break;
            zim_wr_reset (&self->wr);
            zim_room_counts_pack (&self->wr, &(zim_room_counts_t){{NULL, NULL}, n});
            zim_wr_raw (&self->wr, self->scratch.data, self->scratch.size);
            s_send (self, sock, gw);
            self->count_msgs++;
        }
    }
    zlist_destroy (&due);
    zlist_destroy (&gws);
}

uint64_t zim_roomtab_total (zim_roomtab_t *self, zim_str_t app, zim_str_t room)
{
    char key[ZIM_ID_MAX + 130 + 2];
    s_key (key, sizeof key, app, room);
    s_room_t *r = (s_room_t *)zhashx_lookup (self->rooms, key);
    return r ? r->total : 0;
}

size_t zim_roomtab_size (zim_roomtab_t *self)
{
    return zhashx_size (self->rooms);
}

void zim_roomtab_stats (zim_roomtab_t *self, json_t *stats)
{
    json_object_set_new (stats, "rooms", json_integer ((json_int_t)zhashx_size (self->rooms)));
    json_object_set_new (stats, "room_reports", json_integer ((json_int_t)self->reports));
    json_object_set_new (stats, "room_publishes", json_integer ((json_int_t)self->publishes));
    json_object_set_new (stats, "room_outs", json_integer ((json_int_t)self->room_outs));
    json_object_set_new (stats, "room_counts_sent", json_integer ((json_int_t)self->count_msgs));
    json_object_set_new (stats, "signals", json_integer ((json_int_t)self->signals));
    json_object_set_new (stats, "signal_outs", json_integer ((json_int_t)self->signal_outs));
    json_object_set_new (stats, "room_bad_messages", json_integer ((json_int_t)self->bad));
}

//  -------------------------------------------------------------------------
//  Selftest: a ROUTER and two DEALERs playing gateways.

//  Receives one message on a gateway DEALER; returns its kind and keeps
//  the frame in *frame (caller destroys).
static int s_test_recv (zsock_t *gw, zframe_t **frame)
{
    *frame = zframe_recv (gw);
    assert (*frame);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (*frame), zframe_size (*frame));
    int kind;
    uint32_t fields;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    return kind;
}

//  Hands a message of wr to the table as if it came on the router.
static void s_test_handle (zim_roomtab_t *self, zim_routes_t *routes, void *sock, zim_wr_t *wr)
{
    zim_rd_t rd;
    zim_rd_init (&rd, wr->data, wr->size);
    int kind;
    uint32_t fields;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    assert (zim_roomtab_handle (self, routes, sock, kind, &rd, fields));
    zim_wr_reset (wr);
}

void zim_roomtab_test (bool verbose)
{
    (void)verbose;
    zim_roomtab_t *tab = zim_roomtab_new ();
    zim_routes_t *routes = zim_routes_new ();
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    zsock_t *g1 = zsock_new (ZMQ_DEALER), *g2 = zsock_new (ZMQ_DEALER);
    zsock_set_identity (g1, "gw-1");
    zsock_set_identity (g2, "gw-2");
    zsock_set_rcvtimeo (g1, 5000);
    zsock_set_rcvtimeo (g2, 5000);
    zsock_connect (g1, "tcp://127.0.0.1:%d", port);
    zsock_connect (g2, "tcp://127.0.0.1:%d", port);
    //  The ROUTER knows a peer once it has heard from it.
    zstr_send (g1, "hi");
    zstr_send (g2, "hi");
    for (int i = 0; i < 2; i++) {
        zmsg_t *hi = zmsg_recv (router);
        zmsg_destroy (&hi);
    }
    void *sock = zsock_resolve (router);
    zim_wr_t wr;
    zim_wr_init (&wr);

    //  gw-1 has 2 in lobby and 1 in news, gw-2 has 3 in lobby.
    zim_room_report_pack (&wr, &(zim_room_report_t){zim_str ("gw-1"), true, {NULL, NULL}, 2});
    zim_room_count_pack (&wr, &(zim_room_count_t){zim_str ("demo"), zim_str ("lobby"), 2});
    zim_room_count_pack (&wr, &(zim_room_count_t){zim_str ("demo"), zim_str ("news"), 1});
    s_test_handle (tab, routes, sock, &wr);
    zim_room_report_pack (&wr, &(zim_room_report_t){zim_str ("gw-2"), false, {NULL, NULL}, 1});
    zim_room_count_pack (&wr, &(zim_room_count_t){zim_str ("demo"), zim_str ("lobby"), 3});
    s_test_handle (tab, routes, sock, &wr);
    assert (zim_roomtab_total (tab, zim_str ("demo"), zim_str ("lobby")) == 5);
    assert (zim_roomtab_size (tab) == 2);
    //  Counts go to each gateway with members: gw-1 two rooms, gw-2 one.
    zim_roomtab_tick (tab, sock, 10000);
    zframe_t *frame;
    assert (s_test_recv (g1, &frame) == ZIM_MSG_ROOM_COUNTS);
    zframe_destroy (&frame);
    assert (s_test_recv (g2, &frame) == ZIM_MSG_ROOM_COUNTS);
    zframe_destroy (&frame);
    //  A publish to lobby and news: one ROOM_OUT per gateway, gw-1's with
    //  both rooms.
    zim_room_pub_pack (&wr, &(zim_room_pub_t){zim_str ("demo"), zim_str ("alice"),
                                              zim_str ("\xa2hi"), {NULL, NULL}, 3});
    zim_room_name_pack (&wr, &(zim_room_name_t){zim_str ("lobby")});
    zim_room_name_pack (&wr, &(zim_room_name_t){zim_str ("news")});
    zim_room_name_pack (&wr, &(zim_room_name_t){zim_str ("empty")});
    s_test_handle (tab, routes, sock, &wr);
    assert (s_test_recv (g1, &frame) == ZIM_MSG_ROOM_OUT);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    zim_room_out_t out;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_room_out_unpack (&rd, fields, &out) == 0);
    assert (out.nitems == 2);
    zframe_destroy (&frame);
    assert (s_test_recv (g2, &frame) == ZIM_MSG_ROOM_OUT);
    zframe_destroy (&frame);
    //  A signal to bob, online on gw-2: an OUT there.
    zim_presence_item_t up = {true, 9, zim_str ("demo"), zim_str ("bob"), zim_str ("phone"), false};
    zim_routes_apply (routes, zim_str ("gw-2"), &up);
    zim_signal_pack (&wr, &(zim_signal_t){zim_str ("demo"), zim_str ("alice"), zim_str ("bob"),
                                          zim_str ("\xa6typing")});
    s_test_handle (tab, routes, sock, &wr);
    assert (s_test_recv (g2, &frame) == ZIM_MSG_OUT);
    zframe_destroy (&frame);
    //  A malformed report changes nothing; a reset of gw-2 leaves lobby 2.
    zim_room_report_pack (&wr, &(zim_room_report_t){zim_str ("gw-1"), true, {NULL, NULL}, 2});
    zim_room_count_pack (&wr, &(zim_room_count_t){zim_str ("demo"), zim_str ("lobby"), 7});
    zim_wr_cstr (&wr, "not an item");
    s_test_handle (tab, routes, sock, &wr);
    assert (zim_roomtab_total (tab, zim_str ("demo"), zim_str ("lobby")) == 5);
    zim_roomtab_reset (tab, zim_str ("gw-2"));
    assert (zim_roomtab_total (tab, zim_str ("demo"), zim_str ("lobby")) == 2);
    //  gw-1 leaves news: the room is gone.
    zim_room_report_pack (&wr, &(zim_room_report_t){zim_str ("gw-1"), false, {NULL, NULL}, 1});
    zim_room_count_pack (&wr, &(zim_room_count_t){zim_str ("demo"), zim_str ("news"), 0});
    s_test_handle (tab, routes, sock, &wr);
    assert (zim_roomtab_size (tab) == 1);
    json_t *stats = json_object ();
    zim_roomtab_stats (tab, stats);
    assert (json_integer_value (json_object_get (stats, "room_bad_messages")) == 1);
    json_decref (stats);

    zim_wr_free (&wr);
    zsock_destroy (&g1);
    zsock_destroy (&g2);
    zsock_destroy (&router);
    zim_routes_destroy (&routes);
    zim_roomtab_destroy (&tab);
}
