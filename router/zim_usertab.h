/*  zim_usertab.h: the distinct users of each room over every gateway, for
    the push API's room count (GET /v1/rooms/NAME: "users"). Gateways
    report, in order, when a user comes into a room there (its first
    connection in it) or leaves it (its last one): ROOM_USERS
    (gateway/zim_roomusers.h). A user counts once per room however many
    connections and gateways it is in the room on. Soft state like the
    room counts: a gateway's part is forgotten with its rooms and
    announced again.
*/
#ifndef ZIM_USERTAB_H_INCLUDED
#define ZIM_USERTAB_H_INCLUDED

#include "msg/zim_msg.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_usertab_t zim_usertab_t;

//  Creates an empty table. Caller owns return value.
zim_usertab_t *zim_usertab_new (void);
void zim_usertab_destroy (zim_usertab_t **self_p);

//  uid is in (app, room) on gateway (up), or no longer. Idempotent.
void zim_usertab_set (zim_usertab_t *self, zim_str_t gateway, zim_str_t app, zim_str_t room,
                      zim_str_t uid, bool up);
//  Takes a ROOM_USERS (rd at its first field). Returns false if it is
//  malformed (nothing applied).
bool zim_usertab_handle (zim_usertab_t *self, zim_rd_t *rd, uint32_t fields);
//  Forgets every user gateway reported.
void zim_usertab_reset (zim_usertab_t *self, zim_str_t gateway);

//  Distinct users in (app, room).
uint64_t zim_usertab_count (zim_usertab_t *self, zim_str_t app, zim_str_t room);

//  Self test of this class.
void zim_usertab_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
