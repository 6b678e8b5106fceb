/*  zim_rooms.c: rooms and signals on one gateway (see zim_rooms.h).
 */
#include "gateway/zim_rooms.h"
#include "gateway/zim_frames.h"
#include "gateway/zim_links.h"
#include "gateway/zim_roomcast.h"
#include "gateway/zim_roompolicy.h"
#include "gateway/zim_roomusers.h"
#include "gateway/zim_sessions.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <jansson.h>

//  Rooms per ROOMS message.
#define S_CHUNK 1000
typedef struct s_room s_room_t;
typedef struct s_conn s_conn_t;

//  One member connection of a room, and where the room sits in its list.
typedef struct {
    s_conn_t *conn; //  the member
    uint32_t slot;  //  index of this room in conn->rooms
} s_member_t;

//  A room with members on this gateway.
struct s_room {
    char *key;             //  "app room" (neither holds a space): the index key
    char app[ZIM_ID_MAX + 1]; //  its app
    char *name;            //  its name
    s_member_t *members;   //  member connections
    uint32_t n, alloc;     //  how many, room for
    uint32_t ncounts;      //  members that asked for count frames
    uint64_t total;        //  the cluster's count, as the routers last summed it
    uint64_t reported;     //  our count as last reported to the routers
    uint64_t shown;        //  the last online value sent in count frames
    bool dirty;            //  n changed since the last report
};

//  One room of a connection.
typedef struct {
    s_room_t *room; //  the room
    uint32_t idx;   //  index of this connection in room->members
    bool counts;    //  it asked for count frames
} s_entry_t;

//  What this class keeps of one connection (made at its first join, or at
//  auth when its token names rooms).
struct s_conn {
    zim_session_t *session; //  the connection
    s_entry_t *rooms;       //  its rooms
    uint32_t n, alloc;      //  how many, room for
    char **claims;          //  the token's "rooms" claim (NULL: none)
    uint32_t nclaims;       //  how many
    double tokens;          //  signal bucket
    int64_t refill_ms;      //  its last refill
    uint64_t stamp;         //  the last ROOM_OUT written to it (one copy per connection)
};

struct _zim_rooms_t {
    zim_edge_t *edge;            //  settings, counters, sessions, links
    zhashx_t *rooms;             //  "app room" -> s_room_t
    zhashx_t *conns;             //  connection id -> s_conn_t
    zim_roompolicy_t *policy;    //  who may join and publish, revoked tokens
    uint64_t members;            //  memberships
    uint64_t stamp;              //  ROOM_OUTs handled
    zim_wr_t fr;                 //  scratch: client frames
    zim_roomcast_t *cast;        //  pushes to all being paced
    zim_roomusers_t *users;      //  users per room, for the routers' distinct counts
};

static const zim_str_t s_nocid = {NULL, 0};

static void s_room_free (s_room_t **room_p)
{
    s_room_t *room = *room_p;
    if (!room)
        return;
    free (room->key);
    free (room->name);
    free (room->members);
    free (room);
    *room_p = NULL;
}

static void s_conn_free (s_conn_t **conn_p)
{
    s_conn_t *conn = *conn_p;
    if (!conn)
        return;
    for (uint32_t i = 0; i < conn->nclaims; i++)
        free (conn->claims[i]);
    free (conn->claims);
    free (conn->rooms);
    free (conn);
    *conn_p = NULL;
}

//  The index key of a connection.
static void s_conn_key (char *buf, size_t size, uint64_t id)
{
    snprintf (buf, size, "%" PRIx64, id);
}

zim_rooms_t *zim_rooms_new (zim_edge_t *edge)
{
    zim_rooms_t *self = (zim_rooms_t *)zim_calloc (1, sizeof *self);
    self->edge = edge;
    self->rooms = zhashx_new ();
    self->conns = zhashx_new ();
    self->policy = zim_roompolicy_new ();
    zim_wr_init (&self->fr);
    self->cast = zim_roomcast_new (edge);
    self->users = zim_roomusers_new ();
    return self;
}

void zim_rooms_destroy (zim_rooms_t **self_p)
{
    zim_rooms_t *self = *self_p;
    if (!self)
        return;
    for (s_room_t *r = zhashx_first (self->rooms); r; r = zhashx_next (self->rooms))
        s_room_free (&r);
    for (s_conn_t *c = zhashx_first (self->conns); c; c = zhashx_next (self->conns))
        s_conn_free (&c);
    zhashx_destroy (&self->rooms);
    zhashx_destroy (&self->conns);
    zim_roompolicy_destroy (&self->policy);
    zim_wr_free (&self->fr);
    zim_roomcast_destroy (&self->cast);
    zim_roomusers_destroy (&self->users);
    free (self);
    *self_p = NULL;
}

bool zim_room_valid (zim_str_t room)
{
    if (!room.ptr || room.len == 0 || room.len > ZIM_ROOM_MAX)
        return false;
    for (size_t i = 0; i < room.len; i++) {
        unsigned char c = (unsigned char)room.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '@' || c == '/' || c == '-'))
            return false;
    }
    return true;
}

//  -------------------------------------------------------------------------
//  Per-app policy

int zim_rooms_set_join (zim_rooms_t *self, const char *app, const char *value, const char **why)
{
    return zim_roompolicy_set_join (self->policy, app, value, why);
}

int zim_rooms_set_publish (zim_rooms_t *self, const char *app, const char *value,
                           const char **why)
{
    return zim_roompolicy_set_publish (self->policy, app, value, why);
}

int zim_rooms_set_broadcast_rate (zim_rooms_t *self, const char *app, const char *value,
                                  const char **why)
{
    return zim_roomcast_set_rate (self->cast, app, value, why);
}

//  -------------------------------------------------------------------------
//  Connections and memberships

static s_conn_t *s_conn (zim_rooms_t *self, zim_session_t *session, bool make)
{
    char key[24];
    s_conn_key (key, sizeof key, zim_session_id (session));
    s_conn_t *conn = (s_conn_t *)zhashx_lookup (self->conns, key);
    if (conn || !make)
        return conn;
    conn = (s_conn_t *)zim_calloc (1, sizeof *conn);
    conn->session = session;
    conn->tokens = (double)self->edge->signal_burst;
    conn->refill_ms = zim_edge_now_ms ();
    zhashx_insert (self->conns, key, conn);
    return conn;
}

//  The room's count as this gateway knows it: its own members now, the
//  others' as the routers last summed them.
static uint64_t s_online (const s_room_t *room)
{
    uint64_t others = room->total > room->reported ? room->total - room->reported : 0;
    return others + room->n;
}

//  Sends ROOMS with one room's count to every router (a room appeared here
//  or is gone: the routers must know at once where to forward).
static void s_report_one (zim_rooms_t *self, s_room_t *room)
{
    zim_edge_t *edge = self->edge;
    zim_wr_reset (&edge->wr);
    zim_room_report_pack (&edge->wr, &(zim_room_report_t){zim_str (zim_shell_name (edge->shell)), false,
                                                   {NULL, NULL}, 1});
    zim_room_count_t item = {zim_str (room->app), zim_str (room->name), room->n};
    zim_room_count_pack (&edge->wr, &item);
    zim_links_to_router (edge->links, -1);
    room->reported = room->n;
    room->dirty = false;
}

//  Sends the users who came into or left rooms since the last time, in
//  order, to every router (after the counts: a room is known there first).
static void s_report_users (zim_rooms_t *self)
{
    zim_edge_t *edge = self->edge;
    if (zim_roomusers_take (self->users, &edge->wr, zim_shell_name (edge->shell)))
        zim_links_to_router (edge->links, -1);
}

//  Adds conn to the room (app, name), made if new.
static s_room_t *s_join (zim_rooms_t *self, s_conn_t *conn, const char *app, zim_str_t name,
                         bool counts)
{
    char key[ZIM_ID_MAX + ZIM_ROOM_MAX + 2];
    snprintf (key, sizeof key, "%s %.*s", app, (int)name.len, name.ptr);
    s_room_t *room = (s_room_t *)zhashx_lookup (self->rooms, key);
    if (!room) {
        room = (s_room_t *)zim_calloc (1, sizeof *room);
        room->key = zim_strdup (key);
        snprintf (room->app, sizeof room->app, "%s", app);
        room->name = zim_str_dup (name);
        zhashx_insert (self->rooms, key, room);
    }
    if (room->n == room->alloc) {
        room->alloc = room->alloc ? room->alloc * 2 : 4;
        room->members = (s_member_t *)zim_realloc (room->members, room->alloc * sizeof (s_member_t));
    }
    if (conn->n == conn->alloc) {
        conn->alloc = conn->alloc ? conn->alloc * 2 : 4;
        conn->rooms = (s_entry_t *)zim_realloc (conn->rooms, conn->alloc * sizeof (s_entry_t));
    }
    room->members[room->n] = (s_member_t){conn, conn->n};
    conn->rooms[conn->n++] = (s_entry_t){room, room->n, counts};
    room->n++;
    room->ncounts += counts;
    self->members++;
    if (room->n == 1)
        s_report_one (self, room);
    else
        room->dirty = true;
    zim_roomusers_join (self->users, app, name, zim_session_uid (conn->session));
    if (zim_roomusers_pending (self->users) >= ZIM_ROOMUSERS_CHUNK)
        s_report_users (self);
    return room;
}

//  Removes conn's entry at slot (its room loses the member).
static void s_leave (zim_rooms_t *self, s_conn_t *conn, uint32_t slot)
{
    s_entry_t e = conn->rooms[slot];
    s_room_t *room = e.room;
    //  Out of the room's members: the last one takes its place.
    s_member_t last = room->members[--room->n];
    if (e.idx != room->n) {
        room->members[e.idx] = last;
        last.conn->rooms[last.slot].idx = e.idx;
    }
    room->ncounts -= e.counts;
    //  Out of the connection's rooms: the same.
    s_entry_t moved = conn->rooms[--conn->n];
    if (slot != conn->n) {
        conn->rooms[slot] = moved;
        moved.room->members[moved.idx].slot = slot;
    }
    self->members--;
    zim_roomusers_leave (self->users, room->app, zim_str (room->name),
                         zim_session_uid (conn->session));
    if (zim_roomusers_pending (self->users) >= ZIM_ROOMUSERS_CHUNK)
        s_report_users (self);
    if (room->n == 0) {
        s_report_one (self, room);
        zhashx_delete (self->rooms, room->key);
        s_room_free (&room);
    } else
        room->dirty = true;
}

//  The slot of room name in conn's rooms, or -1.
static int s_find (const s_conn_t *conn, zim_str_t name)
{
    for (uint32_t i = 0; conn && i < conn->n; i++)
        if (zim_str_eq (name, conn->rooms[i].room->name))
            return (int)i;
    return -1;
}

void zim_rooms_forget (zim_edge_t *edge, zim_session_t *session)
{
    zim_rooms_t *self = edge->rooms;
    s_conn_t *conn = s_conn (self, session, false);
    if (!conn)
        return;
    while (conn->n > 0)
        s_leave (self, conn, conn->n - 1);
    char key[24];
    s_conn_key (key, sizeof key, zim_session_id (session));
    zhashx_delete (self->conns, key);
    s_conn_free (&conn);
}

//  -------------------------------------------------------------------------
//  Client ops

//  Rooms "g:GROUP" are channels' live rooms (broker/zim_gfan.c): the
//  server joins a member's connections after a csync; clients may leave
//  them, never join or publish.
#define S_CHANNEL_ROOM "g: rooms are channels' live rooms: a member's csync joins them"
static bool s_channel_room (zim_str_t room)
{
    return room.len > 2 && room.ptr[0] == 'g' && room.ptr[1] == ':';
}

//  A refusal: counted, logged, answered with its code (naming the rid).
static void s_refuse (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f, int code,
                      const char *text)
{
    edge->room_refused++;
    zim_shell_warn (edge->shell, "%s/%s: %.*s refused: %s (%d)", zim_session_app (session),
                    zim_session_uid (session), (int)f->op_name.len, f->op_name.ptr, text, code);
    zim_session_error (session, code, text, s_nocid, f->has_rid, f->rid);
}

static void s_join_op (zim_rooms_t *self, zim_session_t *session, const zim_cframe_t *f)
{
    zim_edge_t *edge = self->edge;
    const char *app = zim_session_app (session);
    if (!zim_room_valid (f->room)) {
        s_refuse (edge, session, f, ZIM_ERR_BAD_ROOM,
                  "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
        return;
    }
    if (s_channel_room (f->room)) {
        s_refuse (edge, session, f, ZIM_ERR_ROOM_DENIED, S_CHANNEL_ROOM);
        return;
    }
    s_conn_t *conn = s_conn (self, session, false);
    int slot = s_find (conn, f->room);
    s_room_t *room;
    if (slot >= 0) { //  joined already: the answer again, counts as asked now
        s_entry_t *e = &conn->rooms[slot];
        room = e->room;
        room->ncounts += (uint32_t)f->counts - (uint32_t)e->counts;
        e->counts = f->counts;
    } else {
        if (conn && conn->n >= edge->max_rooms_per_conn) {
            s_refuse (edge, session, f, ZIM_ERR_TOO_MANY_ROOMS,
                      "in max_rooms_per_conn rooms already: leave one first");
            return;
        }
        if (zim_roompolicy_join_by_token (self->policy, app) &&
            !(conn && zim_roompolicy_claimed (conn->claims, conn->nclaims, f->room))) {
            s_refuse (edge, session, f, ZIM_ERR_ROOM_DENIED,
                      "the token's rooms claim does not name this room");
            return;
        }
        conn = s_conn (self, session, true);
        room = s_join (self, conn, app, f->room, f->counts);
        edge->room_joins++;
    }
    zim_wr_reset (&edge->fr);
    uint64_t online = s_online (room);
    zim_sframe_pack (&edge->fr, &(zim_sframe_t){.op = ZIM_SOP_JOINED,
                                                .room = zim_str (room->name),
                                                .has_rid = f->has_rid,
                                                .rid = f->rid,
                                                .online = online});
    zim_session_write (session, edge->fr.data, edge->fr.size, false);
}

static void s_leave_op (zim_rooms_t *self, zim_session_t *session, const zim_cframe_t *f)
{
    zim_edge_t *edge = self->edge;
    if (!zim_room_valid (f->room)) {
        s_refuse (edge, session, f, ZIM_ERR_BAD_ROOM,
                  "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
        return;
    }
    s_conn_t *conn = s_conn (self, session, false);
    int slot = s_find (conn, f->room);
    if (slot < 0) {
        s_refuse (edge, session, f, ZIM_ERR_NOT_IN_ROOM, "not in this room");
        return;
    }
    s_leave (self, conn, (uint32_t)slot);
    edge->room_leaves++;
    zim_wr_reset (&edge->fr);
    zim_sframe_pack (&edge->fr, &(zim_sframe_t){.op = ZIM_SOP_LEFT,
                                                .room = f->room,
                                                .has_rid = f->has_rid,
                                                .rid = f->rid});
    zim_session_write (session, edge->fr.data, edge->fr.size, false);
}

//  The router a room's or a user's live traffic goes through: one of
//  them by hash, so that one publisher's messages keep their order.
static int s_router_for (zim_edge_t *edge, zim_str_t app, zim_str_t key)
{
    size_t n = zim_links_routers (edge->links);
    return n ? (int)(zim_user_hash (app, key) % n) : -1;
}

static void s_publish_op (zim_rooms_t *self, zim_session_t *session, const zim_cframe_t *f)
{
    zim_edge_t *edge = self->edge;
    const char *app = zim_session_app (session);
    if (!zim_room_valid (f->room)) {
        s_refuse (edge, session, f, ZIM_ERR_BAD_ROOM,
                  "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
        return;
    }
    if (s_channel_room (f->room)) {
        s_refuse (edge, session, f, ZIM_ERR_ROOM_DENIED, S_CHANNEL_ROOM);
        return;
    }
    if (zim_roompolicy_publish_none (self->policy, app)) {
        s_refuse (edge, session, f, ZIM_ERR_PUBLISH_DENIED,
                  "this app does not let clients publish (client_publish none)");
        return;
    }
    if (s_find (s_conn (self, session, false), f->room) < 0) {
        s_refuse (edge, session, f, ZIM_ERR_NOT_IN_ROOM, "join the room before publishing");
        return;
    }
    if (!zim_session_take_send (session, zim_edge_now_ms ())) {
        edge->rate_limited++;
        zim_shell_warn (edge->shell, "%s/%s over the send rate: publish answered 4029", app,
                        zim_session_uid (session));
        zim_session_error (session, ZIM_ERR_RATE_LIMITED, "rate limited", s_nocid, f->has_rid,
                           f->rid);
        return;
    }
    zim_wr_reset (&edge->wr);
    zim_room_pub_pack (&edge->wr, &(zim_room_pub_t){zim_str (app), zim_str (zim_session_uid (session)),
                                                    f->body, {NULL, NULL}, 1});
    zim_room_name_pack (&edge->wr, &(zim_room_name_t){f->room});
    if (zim_links_to_router (edge->links, s_router_for (edge, zim_str (app), f->room))) {
        edge->unavailable++;
        zim_shell_warn (edge->shell, "no router took a publish of %s/%s: answered 5030", app,
                        zim_session_uid (session));
        zim_session_error (session, ZIM_ERR_UNAVAILABLE, "router unavailable, retry", s_nocid,
                           f->has_rid, f->rid);
        return;
    }
    edge->room_publishes++;
    zim_wr_reset (&edge->fr);
    zim_sframe_pack (&edge->fr, &(zim_sframe_t){.op = ZIM_SOP_PUBLISHED,
                                                .has_rid = f->has_rid,
                                                .rid = f->rid});
    zim_session_write (session, edge->fr.data, edge->fr.size, false);
}

//  Takes one token of conn's signal bucket at now.
static bool s_take_signal (zim_edge_t *edge, s_conn_t *conn, int64_t now)
{
    double burst = (double)edge->signal_burst;
    conn->tokens += (double)(now - conn->refill_ms) * (double)edge->signal_rate / 1000.0;
    if (conn->tokens > burst)
        conn->tokens = burst;
    conn->refill_ms = now;
    if (conn->tokens < 1.0)
        return false;
    conn->tokens -= 1.0;
    return true;
}

static void s_signal_op (zim_rooms_t *self, zim_session_t *session, const zim_cframe_t *f)
{
    zim_edge_t *edge = self->edge;
    const char *app = zim_session_app (session), *uid = zim_session_uid (session);
    if (!zim_uid_valid (f->to)) {
        edge->signals_refused++;
        zim_session_error (session, ZIM_ERR_BAD_RECIPIENT, "to is not a valid user id", s_nocid,
                           false, 0);
        return;
    }
    s_conn_t *conn = s_conn (self, session, true);
    if (!s_take_signal (edge, conn, zim_edge_now_ms ())) {
        edge->signals_refused++;
        zim_shell_warn (edge->shell, "%s/%s over the signal rate (%" PRIu64 "/s): 4055", app, uid,
                        edge->signal_rate);
        zim_session_error (session, ZIM_ERR_SIGNAL_RATE, "signal rate limited", s_nocid, false, 0);
        return;
    }
    zim_wr_reset (&edge->wr);
    zim_signal_pack (&edge->wr, &(zim_signal_t){zim_str (app), zim_str (uid), f->to, f->body});
    if (zim_links_to_router (edge->links, s_router_for (edge, zim_str (app), f->to))) {
        edge->unavailable++;
        zim_session_error (session, ZIM_ERR_UNAVAILABLE, "router unavailable, retry", s_nocid,
                           false, 0);
        return;
    }
    edge->signals++;
}

bool zim_rooms_frame (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    switch (f->op) {
    case ZIM_OP_JOIN:
        s_join_op (edge->rooms, session, f);
        return true;
    case ZIM_OP_LEAVE:
        s_leave_op (edge->rooms, session, f);
        return true;
    case ZIM_OP_PUBLISH:
        s_publish_op (edge->rooms, session, f);
        return true;
    case ZIM_OP_SIGNAL:
        s_signal_op (edge->rooms, session, f);
        return true;
    default:
        return false;
    }
}

void zim_rooms_on_auth (zim_edge_t *edge, zim_session_t *session, const char *token, size_t len)
{
    zim_rooms_t *self = edge->rooms;
    json_t *claims = zim_roompolicy_claims (token, len); //  NULL: none
    //  A token of a user the backend disconnected, issued (iat) until then,
    //  is refused.
    if (zim_roompolicy_revoked (self->policy, zim_session_app (session), zim_session_uid (session),
                                claims)) {
        edge->room_refused++;
        zim_shell_warn (edge->shell, "%s/%s: a token issued before its disconnect: closed (4056)",
                        zim_session_app (session), zim_session_uid (session));
        zim_session_fail (session, ZIM_ERR_DISCONNECTED, "this token was revoked by the app",
                          ZIM_ERR_DISCONNECTED);
        json_decref (claims);
        return;
    }
    json_t *rooms = json_object_get (claims, "rooms");
    if (json_is_array (rooms) && json_array_size (rooms) > 0) {
        s_conn_t *conn = s_conn (self, session, true);
        size_t count = json_array_size (rooms), max = ZIM_ROOMPOLICY_MAX_CLAIMS;
        conn->claims = (char **)zim_calloc (count < max ? count : max, sizeof (char *));
        for (size_t i = 0; i < count && conn->nclaims < max; i++) {
            const char *p = json_string_value (json_array_get (rooms, i));
            if (p && *p && strlen (p) <= ZIM_ROOM_MAX + 1)
                conn->claims[conn->nclaims++] = zim_strdup (p);
        }
    }
    json_decref (claims);
}

//  -------------------------------------------------------------------------
//  From the routers

//  Writes frame to every member of room not written to in this ROOM_OUT.
static void s_deliver (zim_rooms_t *self, s_room_t *room, zim_str_t frame)
{
    zim_edge_t *edge = self->edge;
    uint64_t budget = edge->max_pending / 2;
    for (uint32_t i = 0; i < room->n; i++) {
        s_conn_t *conn = room->members[i].conn;
        if (conn->stamp == self->stamp)
            continue;
        conn->stamp = self->stamp;
        zim_session_t *s = conn->session;
        //  Live room traffic to a slow connection is dropped and counted:
        //  it never makes the connection a slow consumer (4090), nor holds
        //  back the other members.
        size_t live = zim_session_pending (s) - zim_session_pending_replies (s);
        if (live + frame.len > budget || zim_session_closing (s)) {
            edge->room_dropped++;
            continue;
        }
        zim_session_write (s, frame.ptr, frame.len, false);
        edge->room_deliveries++;
    }
}

static void s_room_out (zim_rooms_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_room_out_t m;
    if (zim_room_out_unpack (rd, fields, &m))
        goto malformed;
    self->stamp++;
    char key[ZIM_ID_MAX + ZIM_ROOM_MAX + 2];
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_frame_t item;
        if (zim_room_frame_unpack (&m.items, &item))
            goto malformed;
        if (item.room.len == 0) { //  push to all (the backend's /v1/push/all)
            zim_roomcast_start (self->cast, m.app, item.frame);
            continue;
        }
        snprintf (key, sizeof key, "%.*s %.*s", (int)m.app.len, m.app.ptr, (int)item.room.len,
                  item.room.ptr);
        s_room_t *room = (s_room_t *)zhashx_lookup (self->rooms, key);
        if (room)
            s_deliver (self, room, item.frame);
    }
    return;
malformed:
    self->edge->bad_messages++;
    zim_shell_warn (self->edge->shell, "dropped an undecodable ROOM_OUT");
}

//  Sends count frames to the members of room that asked, if its count
//  moved since the last ones.
static void s_show_count (zim_rooms_t *self, s_room_t *room)
{
    uint64_t online = s_online (room);
    if (room->ncounts == 0 || online == room->shown)
        return;
    room->shown = online;
    zim_wr_reset (&self->fr);
    zim_sframe_pack (&self->fr, &(zim_sframe_t){.op = ZIM_SOP_COUNT,
                                                .room = zim_str (room->name),
                                                .online = online});
    for (uint32_t i = 0; i < room->n; i++) {
        s_conn_t *conn = room->members[i].conn;
        if (conn->rooms[room->members[i].slot].counts && !zim_session_closing (conn->session))
            zim_session_write (conn->session, self->fr.data, self->fr.size, false);
    }
}

static void s_room_counts (zim_rooms_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_room_counts_t m;
    if (zim_room_counts_unpack (rd, fields, &m))
        goto malformed;
    char key[ZIM_ID_MAX + ZIM_ROOM_MAX + 2];
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_count_t item;
        if (zim_room_count_unpack (&m.items, &item))
            goto malformed;
        snprintf (key, sizeof key, "%.*s %.*s", (int)item.app.len, item.app.ptr,
                  (int)item.room.len, item.room.ptr);
        s_room_t *room = (s_room_t *)zhashx_lookup (self->rooms, key);
        if (!room)
            continue;
        room->total = item.count;
        s_show_count (self, room);
    }
    return;
malformed:
    self->edge->bad_messages++;
    zim_shell_warn (self->edge->shell, "dropped an undecodable ROOM_COUNTS");
}

//  The backend's order (CONN_CTL): listed connections join or leave a
//  room, or are closed (and the user's tokens issued until now refused).
static void s_conn_ctl (zim_rooms_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_edge_t *edge = self->edge;
    zim_conn_ctl_t m;
    if (zim_conn_ctl_unpack (rd, fields, &m) ||
        (m.what != ZIM_CTL_CLOSE && !zim_room_valid (m.room))) {
        edge->bad_messages++;
        zim_shell_warn (edge->shell, "dropped an undecodable CONN_CTL");
        return;
    }
    if (m.what == ZIM_CTL_CLOSE && m.uid.len)
        zim_roompolicy_revoke (self->policy, m.app, m.uid, zim_now_ms () / 1000);
    for (uint32_t i = 0; i < m.nconns; i++) {
        uint64_t id;
        if (zim_rd_uint (&m.conns, &id))
            break;
        zim_session_t *s = zim_sessions_lookup (edge->sessions, id);
        if (!s || zim_session_closing (s) || !zim_str_eq (m.app, zim_session_app (s)))
            continue;
        if (m.what == ZIM_CTL_CLOSE) {
            zim_session_fail (s, ZIM_ERR_DISCONNECTED, "disconnected by the app",
                              ZIM_ERR_DISCONNECTED);
            continue;
        }
        s_conn_t *conn = s_conn (self, s, m.what == ZIM_CTL_JOIN);
        int slot = s_find (conn, m.room);
        zim_wr_reset (&edge->fr);
        if (m.what == ZIM_CTL_JOIN && slot < 0) {
            if (conn->n >= edge->max_rooms_per_conn) {
                edge->room_refused++;
                continue;
            }
            s_room_t *room = s_join (self, conn, zim_session_app (s), m.room, false);
            edge->room_joins++;
            zim_sframe_pack (&edge->fr, &(zim_sframe_t){.op = ZIM_SOP_JOINED,
                                                        .room = zim_str (room->name),
                                                        .online = s_online (room)});
        } else if (m.what == ZIM_CTL_LEAVE && slot >= 0) {
            s_leave (self, conn, (uint32_t)slot);
            edge->room_leaves++;
            zim_sframe_pack (&edge->fr, &(zim_sframe_t){.op = ZIM_SOP_LEFT, .room = m.room});
        }
        if (edge->fr.size)
            zim_session_write (s, edge->fr.data, edge->fr.size, false);
    }
}

bool zim_rooms_is_ctl (const void *data, size_t size)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, data, size);
    return zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_CONN_CTL;
}

void zim_rooms_backbone (zim_edge_t *edge, const void *data, size_t size)
{
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    int kind;
    uint32_t fields;
    if (zim_msg_kind (&rd, &kind, &fields) == 0) {
        if (kind == ZIM_MSG_ROOM_OUT) {
            s_room_out (edge->rooms, &rd, fields);
            return;
        }
        if (kind == ZIM_MSG_ROOM_COUNTS) {
            s_room_counts (edge->rooms, &rd, fields);
            return;
        }
        if (kind == ZIM_MSG_OUT) {
            zim_frames_out (edge, data, size);
            return;
        }
        if (kind == ZIM_MSG_CONN_CTL) {
            s_conn_ctl (edge->rooms, &rd, fields);
            return;
        }
    }
    edge->bad_messages++;
    zim_shell_warn (edge->shell, "dropped an undecodable message from a router (%zu bytes)", size);
}

//  -------------------------------------------------------------------------
//  Reports to the routers

//  Sends rooms (dirty ones only unless all) to router index; the first
//  message resets when reset is true.
static void s_report (zim_rooms_t *self, int index, bool all, bool reset)
{
    zim_edge_t *edge = self->edge;
    size_t total = 0;
    for (s_room_t *r = zhashx_first (self->rooms); r; r = zhashx_next (self->rooms))
        total += all || r->dirty;
    //  Nothing to say: a router that forgot this gateway forgot its rooms
    //  with its PRESENCE reset.
    if (total == 0)
        return;
    size_t sent = 0;
    s_room_t *r = zhashx_first (self->rooms);
    do {
        uint32_t n = (uint32_t)(total - sent > S_CHUNK ? S_CHUNK : total - sent);
        zim_wr_reset (&edge->wr);
        zim_room_report_pack (&edge->wr, &(zim_room_report_t){zim_str (zim_shell_name (edge->shell)),
                                                       reset && sent == 0, {NULL, NULL}, n});
        for (uint32_t i = 0; i < n; r = zhashx_next (self->rooms)) {
            if (!all && !r->dirty)
                continue;
            zim_room_count_t item = {zim_str (r->app), zim_str (r->name), r->n};
            zim_room_count_pack (&edge->wr, &item);
            r->reported = r->n;
            r->dirty = false;
            i++;
        }
        zim_links_to_router (edge->links, index);
        sent += n;
    } while (sent < total);
}

void zim_rooms_tick (zim_edge_t *edge)
{
    zim_rooms_t *self = edge->rooms;
    s_report (self, -1, false, false);
    s_report_users (self);
    zim_roomcast_tick (self->cast);
}

void zim_rooms_announce (zim_edge_t *edge, int index)
{
    s_report (edge->rooms, index, true, true);
    //  Every user present, after the counts (the reset forgot them too).
    if (zim_roomusers_all (edge->rooms->users, &edge->wr, zim_shell_name (edge->shell)))
        zim_links_to_router (edge->links, index);
}

size_t zim_rooms_size (zim_rooms_t *self)
{
    return zhashx_size (self->rooms);
}

uint64_t zim_rooms_members (zim_rooms_t *self)
{
    return self->members;
}

//  -------------------------------------------------------------------------
//  Selftest: sessions without sockets, a ROUTER playing the router.

//  The ops (and error codes) queued to session, then written away.
static int s_test_take (zim_session_t *session, char ops[][16], int *codes, uint64_t *online)
{
    size_t size;
    const uint8_t *data = zim_session_output (session, &size);
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    int n = 0;
    while (zim_rd_left (&rd) > 0 && n < 8) {
        zim_sframe_t m;
        const char *why;
        assert (zim_sframe_unpack (&rd, &m, &why) == 0);
        zim_str_copy (m.op_name, ops[n], 16);
        codes[n] = (int)m.code;
        online[n] = m.online;
        n++;
    }
    zim_session_writable (session);
    return n;
}

//  Receives backbone messages at the router until a ROOMS; returns the
//  count of its first item.
static uint64_t s_test_router (zsock_t *router)
{
    while (true) {
        zmsg_t *msg = zmsg_recv (router);
        assert (msg);
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (zmsg_last (msg)), zframe_size (zmsg_last (msg)));
        int kind;
        uint32_t fields;
        assert (zim_msg_kind (&rd, &kind, &fields) == 0);
        if (kind == ZIM_MSG_ROOMS) {
            zim_room_report_t m;
            zim_room_count_t item;
            assert (zim_room_report_unpack (&rd, fields, &m) == 0 && m.nitems >= 1);
            assert (zim_room_count_unpack (&m.items, &item) == 0);
            zmsg_destroy (&msg);
            return item.count;
        }
        zmsg_destroy (&msg);
    }
}

//  Encodes {"op":op,"room":room[,"rid":rid]} into wr and feeds it.
static void s_test_op (zim_edge_t *edge, zim_session_t *s, const char *op, const char *room,
                       bool counts)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    bool pub = streq (op, "publish");
    zim_wr_map (&wr, 3 + pub + counts);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, op);
    zim_wr_cstr (&wr, "room");
    zim_wr_cstr (&wr, room);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 7);
    if (pub) {
        zim_wr_cstr (&wr, "body");
        zim_wr_cstr (&wr, "hi");
    }
    if (counts) {
        zim_wr_cstr (&wr, "counts");
        zim_wr_bool (&wr, true);
    }
    zim_frames_message (edge, s, (const uint8_t *)wr.data, wr.size, true);
    zim_wr_free (&wr);
}

void zim_rooms_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    const char *secret = "rooms-secret-rooms-secret";
    assert (zim_shell_set (edge->shell, "app_secret", "demo", secret) == 0);
    assert (zim_shell_set (edge->shell, "app_secret", "strict", secret) == 0);
    assert (zim_shell_set (edge->shell, "app_join", "strict", "token") == 0);
    assert (zim_shell_set (edge->shell, "app_client_publish", "strict", "none") == 0);
    assert (zim_shell_set (edge->shell, "app_join", "strict", "closed") == -1);
    edge->max_rooms_per_conn = 2;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    char ep[64];
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    assert (zim_links_connect (edge->links, "router", ep) == 0);
    zsock_set_rcvtimeo (router, 5000);

    assert (zim_room_valid (zim_str ("lobby")) && zim_room_valid (zim_str ("a:b/c@d.e-f_g")));
    assert (!zim_room_valid (zim_str ("")) && !zim_room_valid (zim_str ("sp ace")));
    char longname[ZIM_ROOM_MAX + 2];
    memset (longname, 'r', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert (!zim_room_valid (zim_str (longname)));

    uint64_t now = zim_now_ms () / 1000;
    char *ta = zim_token_sign (secret, "demo", "alice", now + 60);
    char *tb = zim_token_sign (secret, "demo", "bob", now + 60);
    zim_session_t *a = zim_sessions_open (edge->sessions, NULL);
    zim_session_t *b = zim_sessions_open (edge->sessions, NULL);
    assert (zim_frames_auth (edge, a, ta, strlen (ta), NULL) == 0);
    assert (zim_frames_auth (edge, b, tb, strlen (tb), NULL) == 0);
    char ops[8][16];
    int codes[8];
    uint64_t online[8];
    s_test_take (a, ops, codes, online);
    s_test_take (b, ops, codes, online);

    //  alice joins lobby (with counts): joined, online 1; the router hears.
    s_test_op (edge, a, "join", "lobby", true);
    assert (s_test_take (a, ops, codes, online) == 1 && streq (ops[0], "joined") && online[0] == 1);
    assert (s_test_router (router) == 1); //  after the two PRESENCE up
    //  bob joins: online 2, reported at the tick.
    s_test_op (edge, b, "join", "lobby", false);
    assert (s_test_take (b, ops, codes, online) == 1 && online[0] == 2);
    zim_rooms_tick (edge);
    assert (s_test_router (router) == 2);
    assert (zim_rooms_size (edge->rooms) == 1 && zim_rooms_members (edge->rooms) == 2);
    //  Refusals: a bad name, too many rooms, publish and leave outside.
    s_test_op (edge, a, "join", "bad name", false);
    s_test_op (edge, a, "join", "second", false);
    s_test_op (edge, a, "join", "third", false);
    s_test_op (edge, a, "publish", "third", false);
    s_test_op (edge, a, "leave", "third", false);
    assert (s_test_take (a, ops, codes, online) == 5);
    assert (codes[0] == ZIM_ERR_BAD_ROOM && streq (ops[1], "joined"));
    assert (codes[2] == ZIM_ERR_TOO_MANY_ROOMS && codes[3] == ZIM_ERR_NOT_IN_ROOM);
    assert (codes[4] == ZIM_ERR_NOT_IN_ROOM);
    //  A ROOM_OUT naming both rooms reaches alice once, bob once.
    zim_wr_t wr, fr;
    zim_wr_init (&wr);
    zim_wr_init (&fr);
    zim_sframe_pack (&fr, &(zim_sframe_t){.op = ZIM_SOP_ROOM,
                                          .room = zim_str ("lobby"),
                                          .body = zim_str ("\xa2hi"),
                                          .ts = 1});
    zim_room_out_pack (&wr, &(zim_room_out_t){zim_str ("demo"), {NULL, NULL}, 2});
    zim_room_frame_pack (&wr, &(zim_room_frame_t){zim_str ("lobby"),
                                                  (zim_str_t){(const char *)fr.data, fr.size}});
    zim_room_frame_pack (&wr, &(zim_room_frame_t){zim_str ("second"),
                                                  (zim_str_t){(const char *)fr.data, fr.size}});
    zim_rooms_backbone (edge, wr.data, wr.size);
    assert (s_test_take (a, ops, codes, online) == 1 && streq (ops[0], "room"));
    assert (s_test_take (b, ops, codes, online) == 1 && streq (ops[0], "room"));
    //  Counts from the router: alice (counts) hears the change once.
    zim_wr_reset (&wr);
    zim_room_counts_pack (&wr, &(zim_room_counts_t){{NULL, NULL}, 1});
    zim_room_count_pack (&wr, &(zim_room_count_t){zim_str ("demo"), zim_str ("lobby"), 5});
    zim_rooms_backbone (edge, wr.data, wr.size);
    zim_rooms_backbone (edge, wr.data, wr.size);
    assert (s_test_take (a, ops, codes, online) == 1 && streq (ops[0], "count") && online[0] == 5);
    assert (s_test_take (b, ops, codes, online) == 0);
    //  Garbage from a router is counted.
    uint64_t bad = edge->bad_messages;
    zim_rooms_backbone (edge, "\x92\x70\x01", 3);
    assert (edge->bad_messages == bad + 1);
    //  Leaving, and closing, take the memberships away.
    s_test_op (edge, a, "leave", "second", false);
    assert (s_test_take (a, ops, codes, online) == 1 && streq (ops[0], "left"));
    zim_sessions_close (edge->sessions, &a);
    assert (zim_rooms_members (edge->rooms) == 1);

    //  An app whose joins follow the token's claim; publish not allowed.
    json_t *claims = json_pack ("{s:s, s:s, s:I, s:[s,s]}", "sub", "carol", "app", "strict",
                                "exp", (json_int_t)(now + 60), "rooms", "game:*", "news");
    char *tc = zim_token_sign_json (secret, claims);
    json_decref (claims);
    zim_session_t *c = zim_sessions_open (edge->sessions, NULL);
    assert (zim_frames_auth (edge, c, tc, strlen (tc), NULL) == 0);
    s_test_take (c, ops, codes, online);
    s_test_op (edge, c, "join", "game:42", false);
    s_test_op (edge, c, "join", "newsroom", false);
    s_test_op (edge, c, "join", "news", false);
    s_test_op (edge, c, "publish", "news", false);
    assert (s_test_take (c, ops, codes, online) == 4);
    assert (streq (ops[0], "joined") && codes[1] == ZIM_ERR_ROOM_DENIED);
    assert (streq (ops[2], "joined") && codes[3] == ZIM_ERR_PUBLISH_DENIED);
    zim_sessions_close (edge->sessions, &c);

    zim_wr_free (&wr);
    zim_wr_free (&fr);
    free (ta);
    free (tb);
    free (tc);
    zim_edge_destroy (&edge);
    zsock_destroy (&router);
}
