/*  zim_usertab.c: distinct users per room (zim_usertab.h). */
#include "router/zim_usertab.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

struct _zim_usertab_t {
    zhashx_t *rooms;    //  "app room" -> zhashx_t: uid -> gateways it is in the room on (uintptr_t)
    zhashx_t *gateways; //  gateway -> zhashx_t: "app room uid" it reported present
};

static void s_hash_destroy (void **item)
{
    zhashx_t *h = (zhashx_t *)*item;
    zhashx_destroy (&h);
    *item = NULL;
}

zim_usertab_t *zim_usertab_new (void)
{
    zim_usertab_t *self = (zim_usertab_t *)zim_calloc (1, sizeof *self);
    self->rooms = zhashx_new ();
    zhashx_set_destructor (self->rooms, s_hash_destroy);
    self->gateways = zhashx_new ();
    zhashx_set_destructor (self->gateways, s_hash_destroy);
    return self;
}

void zim_usertab_destroy (zim_usertab_t **self_p)
{
    zim_usertab_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->rooms);
    zhashx_destroy (&self->gateways);
    free (self);
    *self_p = NULL;
}

//  One gateway fewer (or more) has uid in the room "app room".
static void s_count (zim_usertab_t *self, const char *room_key, const char *uid, bool up)
{
    zhashx_t *users = (zhashx_t *)zhashx_lookup (self->rooms, room_key);
    if (!users) {
        if (!up)
            return;
        users = zhashx_new ();
        zhashx_insert (self->rooms, room_key, users);
    }
    uintptr_t n = (uintptr_t)zhashx_lookup (users, uid);
    if (up)
        zhashx_update (users, uid, (void *)(n + 1));
    else if (n > 1)
        zhashx_update (users, uid, (void *)(n - 1));
    else if (n == 1) {
        zhashx_delete (users, uid);
        if (zhashx_size (users) == 0)
            zhashx_delete (self->rooms, room_key);
    }
}

void zim_usertab_set (zim_usertab_t *self, zim_str_t gateway, zim_str_t app, zim_str_t room,
                      zim_str_t uid, bool up)
{
    char gw[ZIM_ID_MAX + 1], key[3 * ZIM_ID_MAX + 140];
    zim_str_copy (gateway, gw, sizeof gw);
    int rlen =
        snprintf (key, sizeof key, "%.*s %.*s", (int)app.len, app.ptr, (int)room.len, room.ptr);
    snprintf (key + rlen, sizeof key - (size_t)rlen, " %.*s", (int)uid.len, uid.ptr);
    zhashx_t *mine = (zhashx_t *)zhashx_lookup (self->gateways, gw);
    if (!mine) {
        if (!up)
            return;
        mine = zhashx_new ();
        zhashx_insert (self->gateways, gw, mine);
    }
    bool there = zhashx_lookup (mine, key) != NULL;
    if (up == there)
        return; //  nothing new (a repeat after an announce)
    if (up)
        zhashx_insert (mine, key, (void *)1);
    else
        zhashx_delete (mine, key);
    key[rlen] = 0; //  "app room"
    s_count (self, key, key + rlen + 1, up);
}

bool zim_usertab_handle (zim_usertab_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_room_users_t m;
    if (zim_room_users_unpack (rd, fields, &m))
        return false;
    zim_rd_t items = m.items;
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_user_t item;
        if (zim_room_user_unpack (&items, &item))
            return false;
    }
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_user_t item;
        zim_room_user_unpack (&m.items, &item);
        zim_usertab_set (self, m.gateway, item.app, item.room, item.uid, item.up);
    }
    return true;
}

void zim_usertab_reset (zim_usertab_t *self, zim_str_t gateway)
{
    char gw[ZIM_ID_MAX + 1];
    zim_str_copy (gateway, gw, sizeof gw);
    zhashx_t *mine = (zhashx_t *)zhashx_lookup (self->gateways, gw);
    if (!mine)
        return;
    for (void *v = zhashx_first (mine); v; v = zhashx_next (mine)) {
        char key[3 * ZIM_ID_MAX + 140];
        snprintf (key, sizeof key, "%s", (const char *)zhashx_cursor (mine));
        char *uid = strrchr (key, ' ');
        *uid++ = 0;
        s_count (self, key, uid, false);
    }
    zhashx_delete (self->gateways, gw);
}

uint64_t zim_usertab_count (zim_usertab_t *self, zim_str_t app, zim_str_t room)
{
    char key[ZIM_ID_MAX + 140];
    snprintf (key, sizeof key, "%.*s %.*s", (int)app.len, app.ptr, (int)room.len, room.ptr);
    zhashx_t *users = (zhashx_t *)zhashx_lookup (self->rooms, key);
    return users ? zhashx_size (users) : 0;
}

void zim_usertab_test (bool verbose)
{
    (void)verbose;
    zim_usertab_t *self = zim_usertab_new ();
    zim_str_t app = zim_str ("demo"), lobby = zim_str ("lobby");
    //  alice on two gateways, bob on one: two users.
    zim_usertab_set (self, zim_str ("gw-1"), app, lobby, zim_str ("alice"), true);
    zim_usertab_set (self, zim_str ("gw-2"), app, lobby, zim_str ("alice"), true);
    zim_usertab_set (self, zim_str ("gw-2"), app, lobby, zim_str ("alice"), true); //  repeat
    zim_usertab_set (self, zim_str ("gw-2"), app, lobby, zim_str ("bob"), true);
    assert (zim_usertab_count (self, app, lobby) == 2);
    assert (zim_usertab_count (self, zim_str ("other"), lobby) == 0);
    //  alice leaves gw-1: still in on gw-2.
    zim_usertab_set (self, zim_str ("gw-1"), app, lobby, zim_str ("alice"), false);
    zim_usertab_set (self, zim_str ("gw-1"), app, lobby, zim_str ("alice"), false);
    assert (zim_usertab_count (self, app, lobby) == 2);
    //  gw-2 forgotten: nobody left.
    zim_usertab_reset (self, zim_str ("gw-2"));
    assert (zim_usertab_count (self, app, lobby) == 0);
    //  A ROOM_USERS message; a malformed one changes nothing.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_room_users_pack (&wr, &(zim_room_users_t){zim_str ("gw-3"), {NULL, NULL}, 2});
    zim_room_user_pack (&wr, &(zim_room_user_t){app, lobby, zim_str ("carol"), true});
    zim_room_user_pack (&wr, &(zim_room_user_t){app, lobby, zim_str ("dave"), true});
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, wr.data, wr.size - 1);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_ROOM_USERS);
    assert (!zim_usertab_handle (self, &rd, fields));
    assert (zim_usertab_count (self, app, lobby) == 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    assert (zim_usertab_handle (self, &rd, fields));
    assert (zim_usertab_count (self, app, lobby) == 2);
    zim_wr_free (&wr);
    zim_usertab_destroy (&self);
}
