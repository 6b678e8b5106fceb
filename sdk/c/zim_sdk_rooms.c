/*  zim_sdk_rooms.c: the rooms of a client and their frames (see
    zim_sdk_rooms.h).
*/
#include "sdk/c/zim_sdk_rooms.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One room.
typedef struct {
    char *name;  //  its name
    bool counts; //  count frames wanted
} s_room_t;

struct _zim_sdk_rooms_t {
    s_room_t *rooms;   //  in join order
    size_t n, alloc;   //  how many, room for
};

zim_sdk_rooms_t *zim_sdk_rooms_new (void)
{
    return (zim_sdk_rooms_t *)zim_calloc (1, sizeof (zim_sdk_rooms_t));
}

void zim_sdk_rooms_destroy (zim_sdk_rooms_t **self_p)
{
    zim_sdk_rooms_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n; i++)
        free (self->rooms[i].name);
    free (self->rooms);
    free (self);
    *self_p = NULL;
}

bool zim_sdk_room_valid (const char *room)
{
    size_t len = room ? strlen (room) : 0;
    return len > 0 && len <= 128 &&
           strspn (room, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-") ==
               len;
}

int zim_sdk_rooms_add (zim_sdk_rooms_t *self, const char *room, bool counts)
{
    if (!zim_sdk_room_valid (room))
        return -1;
    for (size_t i = 0; i < self->n; i++)
        if (strcmp (self->rooms[i].name, room) == 0) {
            self->rooms[i].counts = counts;
            return 0;
        }
    if (self->n == self->alloc) {
        self->alloc = self->alloc ? 2 * self->alloc : 4;
        self->rooms = (s_room_t *)zim_realloc (self->rooms, self->alloc * sizeof (s_room_t));
    }
    self->rooms[self->n++] = (s_room_t){zim_strdup (room), counts};
    return 0;
}

int zim_sdk_rooms_remove (zim_sdk_rooms_t *self, const char *room)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp (self->rooms[i].name, room) == 0) {
            free (self->rooms[i].name);
            memmove (&self->rooms[i], &self->rooms[i + 1], (self->n - i - 1) * sizeof (s_room_t));
            self->n--;
            return 0;
        }
    return -1;
}

size_t zim_sdk_rooms_size (zim_sdk_rooms_t *self)
{
    return self->n;
}

const char *zim_sdk_rooms_name (zim_sdk_rooms_t *self, size_t index, bool *counts)
{
    if (index >= self->n)
        return NULL;
    if (counts)
        *counts = self->rooms[index].counts;
    return self->rooms[index].name;
}

void zim_sdk_frame_join (zim_wr_t *wr, const char *room, uint64_t rid, bool counts)
{
    zim_wr_map (wr, 2 + (rid > 0) + counts);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "join");
    zim_wr_cstr (wr, "room");
    zim_wr_cstr (wr, room);
    if (rid) {
        zim_wr_cstr (wr, "rid");
        zim_wr_uint (wr, rid);
    }
    if (counts) {
        zim_wr_cstr (wr, "counts");
        zim_wr_bool (wr, true);
    }
}

void zim_sdk_frame_leave (zim_wr_t *wr, const char *room, uint64_t rid)
{
    zim_wr_map (wr, 2 + (rid > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "leave");
    zim_wr_cstr (wr, "room");
    zim_wr_cstr (wr, room);
    if (rid) {
        zim_wr_cstr (wr, "rid");
        zim_wr_uint (wr, rid);
    }
}

void zim_sdk_frame_publish (zim_wr_t *wr, const char *room, const void *body, size_t len,
                            uint64_t rid)
{
    zim_wr_map (wr, 3 + (rid > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "publish");
    zim_wr_cstr (wr, "room");
    zim_wr_cstr (wr, room);
    zim_wr_cstr (wr, "body");
    zim_wr_raw (wr, body, len);
    if (rid) {
        zim_wr_cstr (wr, "rid");
        zim_wr_uint (wr, rid);
    }
}

void zim_sdk_frame_signal (zim_wr_t *wr, const char *to, const void *body, size_t len)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "signal");
    zim_wr_cstr (wr, "to");
    zim_wr_cstr (wr, to);
    zim_wr_cstr (wr, "body");
    zim_wr_raw (wr, body, len);
}

//  -------------------------------------------------------------------------
//  Selftest

//  True if wr holds exactly the bytes of hex (then resets wr).
static bool s_t_same (zim_wr_t *wr, const char *hex)
{
    char buf[512] = "";
    size_t pos = 0;
    for (size_t i = 0; i < wr->size && pos + 4 < sizeof buf; i++)
        pos += (size_t)snprintf (buf + pos, sizeof buf - pos, i ? " %02x" : "%02x",
                                 (unsigned char)wr->data[i]);
    zim_wr_reset (wr);
    return strcmp (buf, hex) == 0;
}

void zim_sdk_rooms_test (bool verbose)
{
    (void)verbose;
    zim_wr_t wr;
    zim_wr_init (&wr);
    //  The vectors of tests/vectors/rooms/, byte for byte.
    zim_sdk_frame_join (&wr, "lobby", 1, true);
    assert (s_t_same (&wr, "84 a2 6f 70 a4 6a 6f 69 6e a4 72 6f 6f 6d a5 6c 6f 62 62 79 a3 72 69 "
                           "64 01 a6 63 6f 75 6e 74 73 c3"));
    zim_sdk_frame_leave (&wr, "lobby", 2);
    assert (s_t_same (&wr, "83 a2 6f 70 a5 6c 65 61 76 65 a4 72 6f 6f 6d a5 6c 6f 62 62 79 a3 72 "
                           "69 64 02"));
    zim_sdk_frame_publish (&wr, "lobby", "\xa2hi", 3, 3);
    assert (s_t_same (&wr, "84 a2 6f 70 a7 70 75 62 6c 69 73 68 a4 72 6f 6f 6d a5 6c 6f 62 62 79 "
                           "a4 62 6f 64 79 a2 68 69 a3 72 69 64 03"));
    zim_sdk_frame_signal (&wr, "bob", "\xa6typing", 7);
    assert (s_t_same (&wr, "83 a2 6f 70 a6 73 69 67 6e 61 6c a2 74 6f a3 62 6f 62 a4 62 6f 64 79 "
                           "a6 74 79 70 69 6e 67"));
    zim_wr_free (&wr);
    //  The set: added once, updated, removed.
    zim_sdk_rooms_t *rooms = zim_sdk_rooms_new ();
    assert (zim_sdk_rooms_add (rooms, "lobby", false) == 0);
    assert (zim_sdk_rooms_add (rooms, "news", true) == 0);
    assert (zim_sdk_rooms_add (rooms, "lobby", true) == 0);
    assert (zim_sdk_rooms_add (rooms, "bad room", false) == -1);
    bool counts = false;
    assert (zim_sdk_rooms_size (rooms) == 2);
    assert (strcmp (zim_sdk_rooms_name (rooms, 0, &counts), "lobby") == 0 && counts);
    assert (zim_sdk_rooms_remove (rooms, "lobby") == 0 && zim_sdk_rooms_remove (rooms, "x") == -1);
    assert (strcmp (zim_sdk_rooms_name (rooms, 0, NULL), "news") == 0);
    zim_sdk_rooms_destroy (&rooms);
}
