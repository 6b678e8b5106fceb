/*  zim_roomcast.h: pushes to every connection of an app on this gateway
    (the backend's /v1/push/all, a ROOM_OUT with an empty room name),
    paced: at most the app's broadcast rate of connections a second (SET
    app_broadcast_rate NAME N, else the gateway's broadcast_rate), the
    first share at once, the rest a share at each tick; at most 16 are
    paced at once, more are dropped and counted (broadcasts_dropped).
*/
#ifndef ZIM_ROOMCAST_H_INCLUDED
#define ZIM_ROOMCAST_H_INCLUDED

#include "gateway/zim_edge.h"
#include "msg/zim_msg.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_roomcast_t zim_roomcast_t;

//  Creates the pacer of edge's pushes to all. Caller owns return value.
zim_roomcast_t *zim_roomcast_new (zim_edge_t *edge);
void zim_roomcast_destroy (zim_roomcast_t **self_p);

//  SET app_broadcast_rate NAME N: returns 0, or -1 with *why set.
int zim_roomcast_set_rate (zim_roomcast_t *self, const char *app, const char *value,
                           const char **why);

//  Starts a push of frame (an encoded client frame) to every
//  authenticated connection of app here.
void zim_roomcast_start (zim_roomcast_t *self, zim_str_t app, zim_str_t frame);
//  The once-a-second tick: the next share of every push being paced.
void zim_roomcast_tick (zim_roomcast_t *self);
//  Pushes being paced.
size_t zim_roomcast_size (zim_roomcast_t *self);

//  Self test of this class.
void zim_roomcast_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
