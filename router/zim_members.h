/*  zim_members.h: the router's cluster map. Every node's process shell
    sends HELLO once a second; a member silent for member_timeout leaves the
    map (a store shard stays, marked down). The router publishes the map to
    every live member once a second and on every change.

    Time is given by the caller (monotonic ms), so that the selftest can
    drive it, and so that the router can tell its own stalls (a SIGSTOP, a
    VM pause) from its members' silence: zim_members_stalled forgives the
    time the router itself did not run.
*/
#ifndef ZIM_MEMBERS_H_INCLUDED
#define ZIM_MEMBERS_H_INCLUDED

#include "msg/zim_msg.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_members_t zim_members_t;

//  Creates an empty map. Caller owns return value.
zim_members_t *zim_members_new (void);
void zim_members_destroy (zim_members_t **self_p);

//  A heartbeat, received from the routing id peer (borrowed): adds,
//  refreshes or notes the restart of a member. who prefixes log lines.
//  Returns true if the map changed (a member joined, restarted, came back
//  or moved), so that it goes out at once.
bool zim_members_hello (zim_members_t *self, const zim_hello_t *hello, zframe_t *peer,
                        uint64_t now_ms, const char *who);

//  Expires the members silent for timeout_ms or more: they leave the map,
//  except store shards, which stay with alive false. Appends the name of
//  each gateway that left to gone (caller owns the list; autofree), so the
//  caller can drop its routes. Returns how many members changed.
size_t zim_members_expire (zim_members_t *self, uint64_t now_ms, uint64_t timeout_ms, zlist_t *gone,
                           const char *who);

//  The router itself did not run for gap_ms: its members' heartbeats of
//  that time were not read, so that time is not counted as their silence.
void zim_members_stalled (zim_members_t *self, uint64_t gap_ms);

//  Encodes the map (members sorted by name) into wr, which it resets.
void zim_members_map (zim_members_t *self, zim_wr_t *wr, zim_str_t router, uint64_t instance,
                      uint64_t now_ms);

//  Sends the encoded map in wr to every live member through sock (a
//  ROUTER), without blocking. Returns how many it went to.
size_t zim_members_send (zim_members_t *self, zsock_t *sock, const zim_wr_t *wr);

//  Members in the map (alive or down).
size_t zim_members_size (zim_members_t *self);
//  Bumped on every change of the map.
uint64_t zim_members_version (zim_members_t *self);

//  Self test of this class.
void zim_members_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
