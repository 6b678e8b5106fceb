/*  zim_ring.h: where users live. The store shard of a user comes from a
    consistent hash ring with 64 points per shard (FNV-1a-64 of "NAME#i"),
    looked up with FNV-1a-64 of "app\0uid"; a gateway picks a sender's
    broker with the same user hash. Every node computes the same placement
    from the same set of shard names, in any order.
*/
#ifndef ZIM_RING_H_INCLUDED
#define ZIM_RING_H_INCLUDED

#include "msg/zim_mp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zim_ring_t zim_ring_t;

//  A ring over the shard names (any order: placement depends on the names
//  only). Caller owns return value.
zim_ring_t *zim_ring_new (const char *const *shards, size_t nshards);
void zim_ring_destroy (zim_ring_t **self_p);
//  The index into the constructor's shards of the user's shard, or -1 if
//  there are none (or self is NULL).
int zim_ring_lookup (const zim_ring_t *self, zim_str_t app, zim_str_t uid);

//  FNV-1a-64 of "app\0uid": how gateways pick a sender's broker.
uint64_t zim_user_hash (zim_str_t app, zim_str_t uid);

void zim_ring_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
