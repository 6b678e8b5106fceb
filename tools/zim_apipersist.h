/*  zim_apipersist.h: persisted pushes of the backend API (POST
    /v1/push/users with "persist": true; docs/API.md, "Persisted pushes").
    Each named user gets the push as a message in its own inbox, through
    the broker's normal send pipeline: one SEND per user from the app's
    reserved system sender (ZIM_SYSTEM_UID, "_system") to that user, on a
    DEALER connected to one broker like a gateway's (zim-server: broker-1;
    a cluster: the first live broker of the map, so one sender's sends keep
    their order). The store's group commit, idempotency keys, live
    delivery as a msg frame, the offline push record and sync are the ones
    1:1 chat uses. The broker acks a send of the system sender with the
    recipient's inbox seq (broker/zim_deliver.c), which the answer gives:

        {"users": {UID: SEQ, ...}}

    The idempotency key of each user's message is derived from the
    request's id and the user (cid "api-" + 40 hex digits of SHA-256): a
    retry with the same id stores nothing twice and is answered with the
    original seqs; without an id a random one is used.
*/
#ifndef ZIM_APIPERSIST_H_INCLUDED
#define ZIM_APIPERSIST_H_INCLUDED

#include "msg/zim_curve.h"
#include "msg/zim_msg.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Users of one persisted push.
#define ZIM_APIPERSIST_MAX_USERS 1000
//  A persisted push not answered by its broker by then gets 503.
#define ZIM_APIPERSIST_TIMEOUT_MS 10000

typedef struct _zim_apipersist_t zim_apipersist_t;

//  Makes the DEALER (with the cluster keys curve, or NULL), connected to
//  no broker yet. Caller owns return value.
zim_apipersist_t *zim_apipersist_new (const char *program, const zim_curve_t *curve);
void zim_apipersist_destroy (zim_apipersist_t **self_p);

//  Connects to the broker at endpoint (instead of the one before).
void zim_apipersist_use_broker (zim_apipersist_t *self, const char *endpoint);
//  Takes a cluster MAP: uses its first live broker if it is another.
void zim_apipersist_map (zim_apipersist_t *self, zframe_t *map);

//  The DEALER, to poll.
zsock_t *zim_apipersist_sock (zim_apipersist_t *self);

//  Checks a persisted push (users: an array of user ids; id: the
//  idempotency id, NULL for none). Returns NULL, or why it is refused.
const char *zim_apipersist_check (json_t *users, json_t *id);

//  Sends the persisted push req of app: body (msgpack) to users (checked
//  by zim_apipersist_check), keyed by id (NULL: none). Returns 0, or -1
//  with *why set (no broker yet).
int zim_apipersist_start (zim_apipersist_t *self, uint64_t req, const char *app, const char *id,
                          json_t *users, zim_str_t body, const char **why);

//  Reads one message of the broker. Returns the req of a push it
//  completed (0: none), with its HTTP status and *json (caller owns).
uint64_t zim_apipersist_handle (zim_apipersist_t *self, int *status, char **json);

//  A push past its deadline: its req (0: none), answered 503 in *json.
uint64_t zim_apipersist_late (zim_apipersist_t *self, int64_t now_ms, int *status, char **json);

//  Pushes in flight.
size_t zim_apipersist_inflight (zim_apipersist_t *self);

//  Self test of this class.
void zim_apipersist_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
