/*  zim_membership.h: a cluster node's membership. One DEALER (identity
    "m:NAME") per router joined: a HELLO with this node's description and
    counters goes to every router once a second, and each router's MAP
    comes back, to be passed to the actor and kept for status.
*/
#ifndef ZIM_MEMBERSHIP_H_INCLUDED
#define ZIM_MEMBERSHIP_H_INCLUDED

#include "msg/zim_curve.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Routers a node can join.
#define ZIM_MAX_ROUTERS 8

typedef struct _zim_membership_t zim_membership_t;

//  A node called name with role; curve (borrowed, may be NULL) secures its
//  sockets. Caller owns return value.
zim_membership_t *zim_membership_new (const char *name, const char *role, const zim_curve_t *curve);
void zim_membership_destroy (zim_membership_t **self_p);

//  Joins one more router (a second join of the same endpoint is a no-op).
//  Returns 0, or -1 (bad endpoint, too many routers; logged).
int zim_membership_join (zim_membership_t *self, const char *endpoint);

//  Routers joined, and the endpoint and socket of router i.
size_t zim_membership_size (zim_membership_t *self);
const char *zim_membership_endpoint (zim_membership_t *self, size_t i);
zsock_t *zim_membership_sock (zim_membership_t *self, size_t i);

//  Sends HELLO to every router now: this node's service address, admin
//  endpoint ("" if none) and counters (borrowed). Returns when the next
//  one is due (monotonic ms).
int64_t zim_membership_beat (zim_membership_t *self, const char *address, const char *admin,
                             json_t *stats);

//  Reads one message from router socket sock. Returns the MAP it held, for
//  the actor (caller owns return value), or NULL if it was not one (logged,
//  counted).
zframe_t *zim_membership_recv (zim_membership_t *self, zsock_t *sock);

//  The nodes of the newest map, as status lists them: a JSON array of
//  {"name","role","address","alive","stats"}; NULL before any map. Caller
//  owns return value.
json_t *zim_membership_nodes (zim_membership_t *self);

//  Messages from routers that were not a MAP.
uint64_t zim_membership_bad (zim_membership_t *self);

//  Self test of this class.
void zim_membership_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
