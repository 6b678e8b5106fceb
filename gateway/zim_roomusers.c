/*  zim_roomusers.c: users per room on this gateway (zim_roomusers.h). */
#include "gateway/zim_roomusers.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

struct _zim_roomusers_t {
    zhashx_t *present; //  "app room uid" -> the user's connections in it (uintptr_t)
    zim_wr_t events;   //  queued room_user records
    uint32_t nevents;  //  how many
};

zim_roomusers_t *zim_roomusers_new (void)
{
    zim_roomusers_t *self = (zim_roomusers_t *)zim_calloc (1, sizeof *self);
    self->present = zhashx_new ();
    zim_wr_init (&self->events);
    return self;
}

void zim_roomusers_destroy (zim_roomusers_t **self_p)
{
    zim_roomusers_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->present);
    zim_wr_free (&self->events);
    free (self);
    *self_p = NULL;
}

//  The key of (app, room, uid): none of them holds a space.
static void s_key (char *buf, size_t size, const char *app, zim_str_t room, const char *uid)
{
    snprintf (buf, size, "%s %.*s %s", app, (int)room.len, room.ptr, uid);
}

static void s_event (zim_roomusers_t *self, const char *app, zim_str_t room, const char *uid,
                     bool up)
{
    zim_room_user_t item = {zim_str (app), room, zim_str (uid), up};
    zim_room_user_pack (&self->events, &item);
    self->nevents++;
}

void zim_roomusers_join (zim_roomusers_t *self, const char *app, zim_str_t room, const char *uid)
{
    char key[3 * ZIM_ID_MAX + 140];
    s_key (key, sizeof key, app, room, uid);
    uintptr_t n = (uintptr_t)zhashx_lookup (self->present, key);
    zhashx_update (self->present, key, (void *)(n + 1));
    if (n == 0)
        s_event (self, app, room, uid, true);
}

void zim_roomusers_leave (zim_roomusers_t *self, const char *app, zim_str_t room, const char *uid)
{
    char key[3 * ZIM_ID_MAX + 140];
    s_key (key, sizeof key, app, room, uid);
    uintptr_t n = (uintptr_t)zhashx_lookup (self->present, key);
    if (n > 1)
        zhashx_update (self->present, key, (void *)(n - 1));
    else if (n == 1) {
        zhashx_delete (self->present, key);
        s_event (self, app, room, uid, false);
    }
}

uint32_t zim_roomusers_pending (zim_roomusers_t *self)
{
    return self->nevents;
}

uint32_t zim_roomusers_take (zim_roomusers_t *self, zim_wr_t *wr, const char *gateway)
{
    uint32_t n = self->nevents;
    zim_wr_reset (wr);
    if (n == 0)
        return 0;
    zim_room_users_pack (wr, &(zim_room_users_t){zim_str (gateway), {NULL, NULL}, n});
    zim_wr_raw (wr, self->events.data, self->events.size);
    zim_wr_reset (&self->events);
    self->nevents = 0;
    return n;
}

uint32_t zim_roomusers_all (zim_roomusers_t *self, zim_wr_t *wr, const char *gateway)
{
    uint32_t n = (uint32_t)zhashx_size (self->present);
    zim_wr_reset (wr);
    if (n == 0)
        return 0;
    zim_room_users_pack (wr, &(zim_room_users_t){zim_str (gateway), {NULL, NULL}, n});
    for (void *v = zhashx_first (self->present); v; v = zhashx_next (self->present)) {
        const char *key = (const char *)zhashx_cursor (self->present);
        const char *sp1 = strchr (key, ' ');
        const char *sp2 = strchr (sp1 + 1, ' ');
        zim_room_user_t item = {{key, (size_t)(sp1 - key)},
                                {sp1 + 1, (size_t)(sp2 - sp1 - 1)},
                                zim_str (sp2 + 1),
                                true};
        zim_room_user_pack (wr, &item);
    }
    return n;
}

uint64_t zim_roomusers_present (zim_roomusers_t *self, const char *app, zim_str_t room,
                                const char *uid)
{
    char key[3 * ZIM_ID_MAX + 140];
    s_key (key, sizeof key, app, room, uid);
    return (uint64_t)(uintptr_t)zhashx_lookup (self->present, key);
}

//  -------------------------------------------------------------------------
//  Selftest

//  Decodes a ROOM_USERS in wr: its events as "+uid@room" / "-uid@room".
static void s_test_events (zim_wr_t *wr, char *out, size_t size)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_room_users_t m;
    zim_rd_init (&rd, wr->data, wr->size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_ROOM_USERS);
    assert (zim_room_users_unpack (&rd, fields, &m) == 0 && zim_str_eq (m.gateway, "gw"));
    *out = 0;
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_room_user_t item;
        assert (zim_room_user_unpack (&m.items, &item) == 0 && zim_str_eq (item.app, "demo"));
        size_t len = strlen (out);
        snprintf (out + len, size - len, "%c%.*s@%.*s", item.up ? '+' : '-', (int)item.uid.len,
                  item.uid.ptr, (int)item.room.len, item.room.ptr);
    }
}

void zim_roomusers_test (bool verbose)
{
    (void)verbose;
    zim_roomusers_t *self = zim_roomusers_new ();
    zim_wr_t wr;
    zim_wr_init (&wr);
    char events[256];
    //  Two devices of alice and bob's one: alice comes in once.
    zim_roomusers_join (self, "demo", zim_str ("lobby"), "alice");
    zim_roomusers_join (self, "demo", zim_str ("lobby"), "alice");
    zim_roomusers_join (self, "demo", zim_str ("lobby"), "bob");
    assert (zim_roomusers_present (self, "demo", zim_str ("lobby"), "alice") == 2);
    assert (zim_roomusers_take (self, &wr, "gw") == 2);
    s_test_events (&wr, events, sizeof events);
    assert (streq (events, "+alice@lobby+bob@lobby"));
    assert (zim_roomusers_take (self, &wr, "gw") == 0 && wr.size == 0);
    //  One device leaves: still in; the other: out. In order.
    zim_roomusers_leave (self, "demo", zim_str ("lobby"), "alice");
    assert (zim_roomusers_pending (self) == 0);
    zim_roomusers_leave (self, "demo", zim_str ("lobby"), "alice");
    zim_roomusers_join (self, "demo", zim_str ("lobby"), "alice");
    zim_roomusers_leave (self, "demo", zim_str ("lobby"), "carol"); //  never in: nothing
    assert (zim_roomusers_take (self, &wr, "gw") == 2);
    s_test_events (&wr, events, sizeof events);
    assert (streq (events, "-alice@lobby+alice@lobby"));
    //  Everything again, for a router that forgot this gateway.
    assert (zim_roomusers_all (self, &wr, "gw") == 2);
    s_test_events (&wr, events, sizeof events);
    assert (strstr (events, "+alice@lobby") && strstr (events, "+bob@lobby"));
    zim_wr_free (&wr);
    zim_roomusers_destroy (&self);
}
