/*  zim_roomusers.h: which users are in each room on this gateway, for the
    routers' exact count of a room's distinct users (a user with several
    connections in a room counts once, over every gateway). Each (app,
    room, uid) counts the user's connections in the room here; when it
    goes from 0 to 1 or back to 0 an event is queued, and the events go to
    the routers in order as ROOM_USERS (with the room counts, at most once
    a second, or sooner when many wait). After a router forgot this
    gateway, every user present is announced again.
*/
#ifndef ZIM_ROOMUSERS_H_INCLUDED
#define ZIM_ROOMUSERS_H_INCLUDED

#include "msg/zim_msg.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_roomusers_t zim_roomusers_t;

//  Events that make a ROOM_USERS at once rather than at the next tick.
#define ZIM_ROOMUSERS_CHUNK 1000

//  Creates an empty table. Caller owns return value.
zim_roomusers_t *zim_roomusers_new (void);
void zim_roomusers_destroy (zim_roomusers_t **self_p);

//  A connection of uid came into (app, room) here, or left it.
void zim_roomusers_join (zim_roomusers_t *self, const char *app, zim_str_t room, const char *uid);
void zim_roomusers_leave (zim_roomusers_t *self, const char *app, zim_str_t room, const char *uid);

//  Events queued.
uint32_t zim_roomusers_pending (zim_roomusers_t *self);
//  Encodes ROOM_USERS of gateway with the queued events into wr (reset
//  first) and forgets them. Returns how many (0: nothing written).
uint32_t zim_roomusers_take (zim_roomusers_t *self, zim_wr_t *wr, const char *gateway);
//  Encodes ROOM_USERS of gateway with every user present (up) into wr
//  (reset first). Returns how many (0: nothing written).
uint32_t zim_roomusers_all (zim_roomusers_t *self, zim_wr_t *wr, const char *gateway);

//  Distinct users in (app, room) here.
uint64_t zim_roomusers_present (zim_roomusers_t *self, const char *app, zim_str_t room,
                                const char *uid);

//  Self test of this class.
void zim_roomusers_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
