/*  zim_apisrv.h: the backend push API of a node program (--api ADDR:PORT,
    server/api; zim-server listens on 127.0.0.1:7701 by default). HTTP/1.1
    with keep-alive on a ZeroMQ STREAM socket, served by the process
    shell's loop beside the admin endpoint; JSON through jansson. Each
    request carries "Authorization: Bearer KEY": the key names the app it
    acts within (apps/NAME/api_key, or with the dev defaults the key in
    DATA/app-demo.apikey). A request becomes one API_Q to a router, which
    pushes or answers (router/zim_roomtab.h); its API_R becomes the HTTP
    answer. docs/API.md describes every endpoint. The parts: the HTTP side
    (zim_apihttp.h), bodies (zim_apibody.h), groups (zim_apigroups.h),
    persisted pushes (zim_apipersist.h); this class routes the requests
    and holds the push, online, room and stats handlers.

    Refusals are JSON {"error":{"code":"...","text":"..."}} with 400, 401,
    403, 404, 405, 409, 413 (or 503 when no router answered within 5 s),
    logged through a rate limiter and counted; a request refused changes
    nothing.
*/
#ifndef ZIM_APISRV_H_INCLUDED
#define ZIM_APISRV_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "msg/zim_admin.h"
#include "msg/zim_curve.h"
#include "tools/zim_adminsrv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_apisrv_t zim_apisrv_t;

//  The default address of zim-server's API.
#define ZIM_API_ADDRESS "127.0.0.1:7701"

//  Binds address ("HOST:PORT"; port 0 picks a free one) and connects a
//  DEALER to each router endpoint of routers (comma-separated), with the
//  cluster keys curve (NULL: none). Returns NULL if it cannot (logged).
//  Caller owns return value.
zim_apisrv_t *zim_apisrv_new (const char *program, const char *address, const char *routers,
                              const zim_curve_t *curve);
void zim_apisrv_destroy (zim_apisrv_t **self_p);

//  Adds the API key of app (at least 16 characters). Returns 0 or -1.
int zim_apisrv_add_key (zim_apisrv_t *self, const char *app, const char *key);
//  The dev defaults' key of app: read from path, or made (64 hex
//  characters, mode 0600) if the file does not exist. Returns 0 or -1.
int zim_apisrv_key_file (zim_apisrv_t *self, const char *app, const char *path);

//  The groups endpoints (/v1/groups..., zim_apigroups.h) go through the
//  store's admin verbs fn with arg (zim_storeadmin_verb); without them
//  (a node with no store) they answer 503.
void zim_apisrv_use_store (zim_apisrv_t *self, zim_adminsrv_verb_fn *fn, void *arg);

//  Persisted pushes (zim_apipersist.h) go to the broker at endpoint
//  (zim-server), or to the first live broker of each cluster MAP taken.
void zim_apisrv_use_broker (zim_apisrv_t *self, const char *endpoint);
void zim_apisrv_map (zim_apisrv_t *self, zframe_t *map);

//  The sockets, to poll: the HTTP side, the routers' and the broker's.
zsock_t *zim_apisrv_sock (zim_apisrv_t *self);
zsock_t *zim_apisrv_routers (zim_apisrv_t *self);
zsock_t *zim_apisrv_brokers (zim_apisrv_t *self);
//  The bound port, and the base URL (http://HOST:PORT).
int zim_apisrv_port (zim_apisrv_t *self);
const char *zim_apisrv_url (zim_apisrv_t *self);

//  Reads one message of the HTTP socket (call when readable).
void zim_apisrv_handle (zim_apisrv_t *self);
//  Reads one answer of a router (call when readable).
void zim_apisrv_handle_router (zim_apisrv_t *self);
//  Reads one answer of the broker (call when readable).
void zim_apisrv_handle_broker (zim_apisrv_t *self);
//  The same operations for the admin endpoint (a zim_adminsrv_verb_fn;
//  arg is the zim_apisrv_t): push APP users|rooms|all TARGETS DATA (targets
//  comma-separated, "" for all; data JSON), online APP USERS, rooms APP
//  NAME TOP (NAME "": the TOP rooms). Returns the router's JSON answer
//  (caller owns), or NULL with *code (ZIM_ERR_UNKNOWN_OP for another verb,
//  ZIM_ERR_BAD_FIELD, ZIM_ERR_UNAVAILABLE) and text set. Blocks up to 5 s.
char *zim_apisrv_admin (void *arg, const zim_admin_req_t *req, int *code, char *text, size_t size);
//  Answers 503 to requests a router did not answer in time, closes idle
//  connections (call now and then).
void zim_apisrv_sweep (zim_apisrv_t *self);

//  Requests answered with 200, and refused.
uint64_t zim_apisrv_requests (zim_apisrv_t *self);
uint64_t zim_apisrv_refused (zim_apisrv_t *self);

//  Self test of this class.
void zim_apisrv_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
