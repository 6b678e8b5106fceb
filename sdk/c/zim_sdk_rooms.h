/*  zim_sdk_rooms.h: the rooms a C SDK client is in (docs/PROTOCOL.md,
    "Rooms and live signals"), private to libzimclient: the set the client
    joins again after every reconnect, and the encoders of join, leave,
    publish and signal (byte for byte tests/vectors/rooms/).
*/
#ifndef ZIM_SDK_ROOMS_H_INCLUDED
#define ZIM_SDK_ROOMS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg/zim_mp.h"

typedef struct _zim_sdk_rooms_t zim_sdk_rooms_t;

//  Creates an empty set. Caller owns return value.
zim_sdk_rooms_t *zim_sdk_rooms_new (void);
void zim_sdk_rooms_destroy (zim_sdk_rooms_t **self_p);

//  Adds room (with its counts wish) or updates it; removes it. Return 0, or
//  -1 if room is not a valid room name (or not there, for remove).
int zim_sdk_rooms_add (zim_sdk_rooms_t *self, const char *room, bool counts);
int zim_sdk_rooms_remove (zim_sdk_rooms_t *self, const char *room);
//  How many rooms; the name and counts wish of the one at index.
size_t zim_sdk_rooms_size (zim_sdk_rooms_t *self);
const char *zim_sdk_rooms_name (zim_sdk_rooms_t *self, size_t index, bool *counts);

//  True if room is 1..128 bytes of A-Z a-z 0-9 _ . : @ / -.
bool zim_sdk_room_valid (const char *room);

//  {"op":"join","room":R[,"rid":N][,"counts":true]} (rid 0: none)
void zim_sdk_frame_join (zim_wr_t *wr, const char *room, uint64_t rid, bool counts);
//  {"op":"leave","room":R[,"rid":N]}
void zim_sdk_frame_leave (zim_wr_t *wr, const char *room, uint64_t rid);
//  {"op":"publish","room":R,"body":B[,"rid":N]}
void zim_sdk_frame_publish (zim_wr_t *wr, const char *room, const void *body, size_t len,
                            uint64_t rid);
//  {"op":"signal","to":U,"body":B}
void zim_sdk_frame_signal (zim_wr_t *wr, const char *to, const void *body, size_t len);

//  Self test of this class.
void zim_sdk_rooms_test (bool verbose);

#endif
