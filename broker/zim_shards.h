/*  zim_shards.h: the broker's table of store shards. zim-server gives one
    store (CONNECT store): every user lives there. In a cluster the shards
    are the store nodes of the cluster map and of the `shards` setting; a
    user lives on zim_ring_lookup (app, uid) over their names. Each shard
    has one DEALER (ZMQ_IMMEDIATE: a shard that is down refuses at once).
*/
#ifndef ZIM_SHARDS_H_INCLUDED
#define ZIM_SHARDS_H_INCLUDED

#include "msg/zim_mp.h"
#include "msg/zim_shell.h"

#ifdef __cplusplus
extern "C" {
#endif

//  At most this many shards; a map naming more is logged and the rest ignored.
#define ZIM_SHARDS_MAX 256

typedef struct _zim_shards_t zim_shards_t;

//  Creates an empty table; shell makes its sockets and names its log lines.
//  Caller owns return value.
zim_shards_t *zim_shards_new (zim_shell_t *shell);
void zim_shards_destroy (zim_shards_t **self_p);

//  zim-server's one store at endpoint: every user lives there, and maps
//  are ignored. Returns 0, or -1 if shards are known already or the
//  endpoint is bad (logged).
int zim_shards_connect (zim_shards_t *self, const char *endpoint);

//  Adds the shard names of a comma- or space-separated list (the `shards`
//  setting): placement is whole before the first map. Returns 0 or -1 (a
//  fixed store, or more than ZIM_SHARDS_MAX names; logged).
int zim_shards_add_names (zim_shards_t *self, const char *list);

//  Takes the store members of a MAP message: new names join the placement,
//  moved endpoints get a new socket. Shards are never removed (a shard that
//  is down keeps its users, who get 5030 until it is back). Returns 0, or
//  -1 if the frame is not a MAP (nothing changed).
int zim_shards_map (zim_shards_t *self, const void *data, size_t size);

//  The shard of a user, or -1 when none is known yet.
int zim_shards_of (zim_shards_t *self, zim_str_t app, zim_str_t uid);

//  Sends one message to a shard without blocking. Returns 0, or -1 when it
//  cannot take it now (no such shard, endpoint unknown, down, or its queue
//  is full).
int zim_shards_send (zim_shards_t *self, int shard, const void *data, size_t size);

//  How many shards the table holds.
size_t zim_shards_size (zim_shards_t *self);
//  A shard's name ("" for zim-server's one store); "(none)" for -1.
const char *zim_shards_name (zim_shards_t *self, int shard);
//  A shard's socket, NULL until its endpoint is known.
zsock_t *zim_shards_sock (zim_shards_t *self, int shard);

//  Self test of this class.
void zim_shards_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
