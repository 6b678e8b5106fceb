/*  zim_roomtab.c: room interest, room totals, room messages and signals on
    the router (see zim_roomtab.h).
*/
#include "router/zim_roomtab.h"
#include "router/zim_usertab.h"
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
    zim_usertab_t *users; //  distinct users per room (ROOM_USERS)
    zim_wr_t wr;         //  encode buffer: backbone messages
    zim_wr_t fr;         //  encode buffer: client frames
    zim_wr_t scratch;    //  routes of a signal's recipient
    uint64_t reports;    //  ROOMS items applied
    uint64_t publishes;  //  ROOM_PUBs forwarded
    uint64_t room_outs;  //  ROOM_OUTs sent to gateways
    uint64_t signals;    //  SIGNALs forwarded
    uint64_t signal_outs; //  their OUTs to gateways
    uint64_t count_msgs; //  ROOM_COUNTS sent
    uint64_t api_requests; //  API_Qs answered
    uint64_t api_pushes; //  of which pushes
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
    self->users = zim_usertab_new ();
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
    zim_usertab_destroy (&self->users);
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
    zim_usertab_reset (self->users, gateway);
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

//  Sends body as a room frame (from, or none if from is empty) to every
//  gateway with members of any of the rooms named (nrooms views), one
//  ROOM_OUT per gateway with the rooms it has. Returns the rooms found.
static uint32_t s_fanout (zim_roomtab_t *self, void *sock, zim_str_t app, zim_str_t from,
                          zim_str_t body, const zim_str_t *names, uint32_t nnames)
{
    s_room_t *rooms[S_MAX_PUB_ROOMS];
    size_t offsets[S_MAX_PUB_ROOMS + 1];
    uint32_t nrooms = 0;
    uint64_t ts = zim_now_ms ();
    zim_wr_reset (&self->fr);
    for (uint32_t i = 0; i < nnames && i < S_MAX_PUB_ROOMS; i++) {
        char key[ZIM_ID_MAX + 130 + 2];
        s_key (key, sizeof key, app, names[i]);
        s_room_t *room = (s_room_t *)zhashx_lookup (self->rooms, key);
        bool twice = false;
        for (uint32_t r = 0; r < nrooms && !twice; r++)
            twice = rooms[r] == room;
        if (!room || twice)
            continue;
        offsets[nrooms] = self->fr.size;
        rooms[nrooms++] = room;
        zim_sframe_pack (&self->fr, &(zim_sframe_t){.op = ZIM_SOP_ROOM,
                                                     .room = zim_str (room->name),
                                                     .body = body,
                                                     .ts = ts,
                                                     .from = from.len ? from : (zim_str_t){0}});
    }
    offsets[nrooms] = self->fr.size;
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
        zim_room_out_pack (&self->wr, &(zim_room_out_t){app, {NULL, NULL}, items});
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
    return nrooms;
}

static bool s_publish (zim_roomtab_t *self, void *sock, zim_rd_t *rd, uint32_t fields)
{
    zim_room_pub_t m;
    if (zim_room_pub_unpack (rd, fields, &m) || m.nrooms > S_MAX_PUB_ROOMS)
        return false;
    //  Every room is read (and checked) before anything goes out.
    zim_str_t names[S_MAX_PUB_ROOMS];
    for (uint32_t i = 0; i < m.nrooms; i++) {
        zim_room_name_t r;
        if (zim_room_name_unpack (&m.rooms, &r))
            return false;
        names[i] = r.room;
    }
    self->publishes++;
    s_fanout (self, sock, m.app, m.from, m.body, names, m.nrooms);
    return true;
}

//  One connection a frame goes to.
typedef struct {
    char gateway[ZIM_ID_MAX + 1];
    uint64_t conn;
} s_dest_t;

static int s_dest_cmp (const void *a, const void *b)
{
    return strcmp (((const s_dest_t *)a)->gateway, ((const s_dest_t *)b)->gateway);
}

//  Sorts dests by gateway. dests is NULL when nobody is there (a signal to
//  an offline user): qsort with a NULL base is undefined even for n == 0.
static void s_dests_sort (s_dest_t *dests, size_t n)
{
    if (n > 1)
        qsort (dests, n, sizeof *dests, s_dest_cmp);
}

//  Appends the routes of (app, uid) (only device's, unless device is
//  empty) to *dests; returns how many. devices gets their device names
//  (if not NULL).
static size_t s_routes_of (zim_roomtab_t *self, zim_routes_t *routes, zim_str_t app, zim_str_t uid,
                           zim_str_t device, s_dest_t **dests, size_t *n, size_t *alloc,
                           json_t *devices)
{
    zim_wr_reset (&self->scratch);
    if (zim_routes_encode (routes, &self->scratch, app, uid) == 0)
        return 0;
    zim_rd_t list;
    uint32_t count;
    zim_rd_init (&list, self->scratch.data, self->scratch.size);
    if (zim_rd_array (&list, &count))
        return 0;
    size_t found = 0;
    for (uint32_t i = 0; i < count; i++) {
        zim_route_t r;
        if (zim_route_unpack (&list, &r))
            break;
        if (device.len && !(r.device.len == device.len &&
                            memcmp (r.device.ptr, device.ptr, device.len) == 0))
            continue;
        found++;
        if (devices) {
            char name[ZIM_ID_MAX + 1];
            zim_str_copy (r.device, name, sizeof name);
            json_array_append_new (devices, json_string (name));
        }
        if (!dests)
            continue;
        if (*n == *alloc) {
            *alloc = *alloc ? 2 * *alloc : 64;
            *dests = (s_dest_t *)zim_realloc (*dests, *alloc * sizeof (s_dest_t));
        }
        zim_str_copy (r.gateway, (*dests)[*n].gateway, sizeof (*dests)[*n].gateway);
        (*dests)[(*n)++].conn = r.conn;
    }
    return found;
}

//  Sends frame (self->fr) as one OUT per gateway to dests (sorted here).
static void s_send_dests (zim_roomtab_t *self, void *sock, s_dest_t *dests, size_t n)
{
    s_dests_sort (dests, n);
    uint64_t *conns = (uint64_t *)zim_malloc ((n ? n : 1) * sizeof (uint64_t));
    zim_str_t frame = {(const char *)self->fr.data, self->fr.size};
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint32_t k = 0;
        while (j < n && streq (dests[j].gateway, dests[i].gateway))
            conns[k++] = dests[j++].conn;
        zim_wr_reset (&self->wr);
        zim_out_encode (&self->wr, conns, k, frame);
        s_send (self, sock, dests[i].gateway);
        self->signal_outs++;
        i = j;
    }
    free (conns);
}

static bool s_signal (zim_roomtab_t *self, zim_routes_t *routes, void *sock, zim_rd_t *rd,
                      uint32_t fields)
{
    zim_signal_t m;
    if (zim_signal_unpack (rd, fields, &m))
        return false;
    self->signals++;
    s_dest_t *dests = NULL;
    size_t n = 0, alloc = 0;
    s_routes_of (self, routes, m.app, m.to, (zim_str_t){"", 0}, &dests, &n, &alloc, NULL);
    zim_wr_reset (&self->fr);
    zim_sframe_pack (&self->fr,
                     &(zim_sframe_t){.op = ZIM_SOP_SIGNAL, .from = m.from, .body = m.body});
    s_send_dests (self, sock, dests, n);
    free (dests);
    return true;
}

//  -------------------------------------------------------------------------
//  The push API (API_Q from a node's API endpoint)

//  The rooms of app with the most connections, at most n, most first.
static int s_top_cmp (const void *a, const void *b)
{
    uint64_t x = (*(s_room_t *const *)a)->total, y = (*(s_room_t *const *)b)->total;
    return x < y ? 1 : x > y ? -1 : strcmp ((*(s_room_t *const *)a)->name, (*(s_room_t *const *)b)->name);
}

static json_t *s_top (zim_roomtab_t *self, zim_str_t app, uint64_t n)
{
    size_t size = zhashx_size (self->rooms), count = 0;
    s_room_t **all = (s_room_t **)zim_malloc ((size ? size : 1) * sizeof (s_room_t *));
    for (s_room_t *room = zhashx_first (self->rooms); room; room = zhashx_next (self->rooms))
        if (zim_str_eq (app, room->app))
            all[count++] = room;
    qsort (all, count, sizeof *all, s_top_cmp);
    json_t *list = json_array ();
    for (size_t i = 0; i < count && i < n; i++)
        json_array_append_new (
            list, json_pack ("{s:s, s:I, s:I}", "room", all[i]->name, "online",
                             (json_int_t)all[i]->total, "users",
                             (json_int_t)zim_usertab_count (self->users, app,
                                                            zim_str (all[i]->name))));
    free (all);
    return list;
}

//  Sends CONN_CTL what (room, uid) to each gateway of gws (a JSON object
//  whose keys are gateway names; NULL: those of dests), naming the
//  connections of dests (sorted here) on it.
static void s_send_ctl (zim_roomtab_t *self, void *sock, zim_str_t app, int what, zim_str_t room,
                        zim_str_t uid, s_dest_t *dests, size_t n, json_t *gws)
{
    s_dests_sort (dests, n);
    json_t *names = gws ? json_incref (gws) : json_object ();
    for (size_t i = 0; !gws && i < n; i++)
        json_object_set_new (names, dests[i].gateway, json_true ());
    const char *gw;
    json_t *value;
    json_object_foreach (names, gw, value)
    {
        uint32_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += streq (dests[i].gateway, gw);
        zim_wr_reset (&self->wr);
        zim_conn_ctl_pack (&self->wr, &(zim_conn_ctl_t){.app = app,
                                                        .what = (uint64_t)what,
                                                        .room = room,
                                                        .uid = uid,
                                                        .nconns = k});
        for (size_t i = 0; i < n; i++)
            if (streq (dests[i].gateway, gw))
                zim_wr_uint (&self->wr, dests[i].conn);
        s_send (self, sock, gw);
    }
    json_decref (names);
}

//  Answers an API_Q: [peer, API_R].
static void s_api_answer (zim_roomtab_t *self, void *sock, zframe_t *peer, uint64_t req,
                          int status, json_t *doc)
{
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    zim_wr_reset (&self->wr);
    zim_api_r_pack (&self->wr, &(zim_api_r_t){req, status, zim_str (text ? text : "{}")});
    free (text);
    if (zmq_send (sock, zframe_data (peer), zframe_size (peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1)
        zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT);
}

static bool s_api (zim_roomtab_t *self, zim_routes_t *routes, void *sock, zframe_t *peer,
                   zim_rd_t *rd, uint32_t fields)
{
    zim_api_q_t q;
    if (zim_api_q_unpack (rd, fields, &q))
        return false;
    //  Every target is read (and checked) before anything goes out.
    size_t max = q.ntargets ? q.ntargets : 1;
    zim_api_target_t *targets = (zim_api_target_t *)zim_malloc (max * sizeof *targets);
    for (uint32_t i = 0; i < q.ntargets; i++)
        if (zim_api_target_unpack (&q.targets, &targets[i])) {
            free (targets);
            return false;
        }
    self->api_requests++;
    json_t *doc = json_object ();
    uint64_t ts = zim_now_ms ();
    if (q.op == ZIM_API_PUSH_USERS || q.op == ZIM_API_PUSH_CONNS) {
        s_dest_t *dests = NULL;
        size_t n = 0, alloc = 0;
        json_t *per = json_object ();
        for (uint32_t i = 0; i < q.ntargets; i++) {
            size_t found = s_routes_of (self, routes, q.app, targets[i].name,
                                        q.op == ZIM_API_PUSH_CONNS ? targets[i].device
                                                                   : (zim_str_t){"", 0},
                                        &dests, &n, &alloc, NULL);
            char key[200];
            snprintf (key, sizeof key, "%.*s%s%.*s", (int)targets[i].name.len, targets[i].name.ptr,
                      q.op == ZIM_API_PUSH_CONNS ? "/" : "",
                      q.op == ZIM_API_PUSH_CONNS ? (int)targets[i].device.len : 0,
                      targets[i].device.ptr ? targets[i].device.ptr : "");
            json_int_t before = json_integer_value (json_object_get (per, key));
            json_object_set_new (per, key, json_integer (before + (json_int_t)found));
        }
        zim_wr_reset (&self->fr);
        zim_sframe_pack (&self->fr, &(zim_sframe_t){.op = ZIM_SOP_PUSH, .body = q.body, .ts = ts});
        s_send_dests (self, sock, dests, n);
        free (dests);
        self->api_pushes++;
        json_object_set_new (doc, "connections", json_integer ((json_int_t)n));
        json_object_set_new (doc, q.op == ZIM_API_PUSH_CONNS ? "targets" : "users", per);
    } else if (q.op == ZIM_API_PUSH_ROOMS) {
        zim_str_t names[S_MAX_PUB_ROOMS];
        uint32_t n = q.ntargets < S_MAX_PUB_ROOMS ? q.ntargets : S_MAX_PUB_ROOMS;
        json_t *per = json_object ();
        for (uint32_t i = 0; i < n; i++) {
            names[i] = targets[i].name;
            char name[140];
            zim_str_copy (targets[i].name, name, sizeof name);
            json_object_set_new (per, name,
                                 json_integer ((json_int_t)zim_roomtab_total (self, q.app,
                                                                              targets[i].name)));
        }
        s_fanout (self, sock, q.app, (zim_str_t){"", 0}, q.body, names, n);
        self->api_pushes++;
        json_object_set_new (doc, "rooms", per);
    } else if (q.op == ZIM_API_PUSH_ALL) {
        //  Every gateway with routes gets the frame; each paces its
        //  connections of the app (broadcast_rate).
        zim_wr_reset (&self->fr);
        zim_sframe_pack (&self->fr, &(zim_sframe_t){.op = ZIM_SOP_PUSH, .body = q.body, .ts = ts});
        json_t *gws = zim_routes_per_gateway (routes);
        const char *gw;
        json_t *value;
        size_t sent = 0;
        json_object_foreach (gws, gw, value)
        {
            zim_wr_reset (&self->wr);
            zim_room_out_pack (&self->wr, &(zim_room_out_t){q.app, {NULL, NULL}, 1});
            zim_room_frame_pack (&self->wr,
                                 &(zim_room_frame_t){zim_str (""),
                                                     (zim_str_t){(const char *)self->fr.data,
                                                                 self->fr.size}});
            s_send (self, sock, gw);
            sent++;
        }
        json_decref (gws);
        self->api_pushes++;
        json_object_set_new (doc, "gateways", json_integer ((json_int_t)sent));
    } else if (q.op == ZIM_API_ROOM_JOIN || q.op == ZIM_API_ROOM_LEAVE) {
        s_dest_t *dests = NULL;
        size_t n = 0, alloc = 0;
        json_t *per = json_object ();
        for (uint32_t i = 0; i < q.ntargets; i++) {
            size_t found = s_routes_of (self, routes, q.app, targets[i].name, (zim_str_t){"", 0},
                                        &dests, &n, &alloc, NULL);
            char name[140];
            zim_str_copy (targets[i].name, name, sizeof name);
            json_object_set_new (per, name, json_integer ((json_int_t)found));
        }
        s_send_ctl (self, sock, q.app, q.op == ZIM_API_ROOM_JOIN ? ZIM_CTL_JOIN : ZIM_CTL_LEAVE,
                    q.room, (zim_str_t){"", 0}, dests, n, NULL);
        free (dests);
        json_object_set_new (doc, "users", per);
    } else if (q.op == ZIM_API_DISCONNECT && q.ntargets == 1) {
        //  Every gateway hears it (to refuse the user's tokens there too);
        //  those with its connections close them.
        s_dest_t *dests = NULL;
        size_t n = 0, alloc = 0;
        s_routes_of (self, routes, q.app, targets[0].name, targets[0].device, &dests, &n, &alloc,
                     NULL);
        json_t *gws = zim_routes_per_gateway (routes);
        s_send_ctl (self, sock, q.app, ZIM_CTL_CLOSE, (zim_str_t){"", 0},
                    targets[0].device.len ? (zim_str_t){"", 0} : targets[0].name, dests, n, gws);
        json_decref (gws);
        free (dests);
        json_object_set_new (doc, "connections", json_integer ((json_int_t)n));
    } else if (q.op == ZIM_API_ONLINE) {
        json_t *per = json_object ();
        for (uint32_t i = 0; i < q.ntargets; i++) {
            json_t *devices = json_array ();
            s_routes_of (self, routes, q.app, targets[i].name, (zim_str_t){"", 0}, NULL, NULL, NULL,
                         devices);
            char name[140];
            zim_str_copy (targets[i].name, name, sizeof name);
            json_object_set_new (per, name, devices);
        }
        json_object_set_new (doc, "online", per);
    } else if (q.op == ZIM_API_ROOM && q.ntargets == 1) {
        char name[140];
        zim_str_copy (targets[0].name, name, sizeof name);
        json_object_set_new (doc, "room", json_string (name));
        json_object_set_new (doc, "online",
                             json_integer ((json_int_t)zim_roomtab_total (self, q.app,
                                                                          targets[0].name)));
        json_object_set_new (doc, "users",
                             json_integer ((json_int_t)zim_usertab_count (self->users, q.app,
                                                                          targets[0].name)));
    } else if (q.op == ZIM_API_TOP) {
        json_object_set_new (doc, "rooms", s_top (self, q.app, q.n));
    } else if (q.op == ZIM_API_STATS) {
        uint64_t users, conns, rooms = 0;
        zim_routes_app_counts (routes, q.app, &users, &conns);
        for (s_room_t *room = zhashx_first (self->rooms); room; room = zhashx_next (self->rooms))
            rooms += zim_str_eq (q.app, room->app);
        json_object_set_new (doc, "users", json_integer ((json_int_t)users));
        json_object_set_new (doc, "connections", json_integer ((json_int_t)conns));
        json_object_set_new (doc, "rooms", json_integer ((json_int_t)rooms));
    } else {
        free (targets);
        json_decref (doc);
        return false;
    }
    free (targets);
    s_api_answer (self, sock, peer, q.req, 0, doc);
    return true;
}

bool zim_roomtab_handle (zim_roomtab_t *self, zim_routes_t *routes, void *sock, zframe_t *peer,
                         int kind, zim_rd_t *rd, uint32_t fields)
{
    bool ok;
    if (kind == ZIM_MSG_ROOMS)
        ok = s_report (self, rd, fields);
    else if (kind == ZIM_MSG_ROOM_USERS)
        ok = zim_usertab_handle (self->users, rd, fields);
    else if (kind == ZIM_MSG_ROOM_PUB)
        ok = s_publish (self, sock, rd, fields);
    else if (kind == ZIM_MSG_SIGNAL)
        ok = s_signal (self, routes, sock, rd, fields);
    else if (kind == ZIM_MSG_API_Q)
        ok = s_api (self, routes, sock, peer, rd, fields);
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
                zlist_append (gws, room->gws[g].gateway); //  autofree: copied
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
    json_object_set_new (stats, "api_requests", json_integer ((json_int_t)self->api_requests));
    json_object_set_new (stats, "api_pushes", json_integer ((json_int_t)self->api_pushes));
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
    assert (zim_roomtab_handle (self, routes, sock, NULL, kind, &rd, fields));
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
