/*  zim_adminsrv.h: a node's admin endpoint, a ROUTER socket where zimctl,
    zim-bench and tests ask for tokens and status (msg/zim_admin.h). Every
    request must carry the admin key; a wrong one is refused (4030), logged
    through a rate limiter and counted. With CURVE, only the cluster key
    and the client certificates of the keys directory complete a handshake
    (ZAP domain "zim-admin", msg/zim_zap.h).

    Status comes from a callback of the process shell: the nodes it knows
    (this process's actors, or the whole cluster map), as a JSON array of
    {"name","role","address","alive","stats"}; this class wraps it into the
    status document and renders the table for people.
*/
#ifndef ZIM_ADMINSRV_H_INCLUDED
#define ZIM_ADMINSRV_H_INCLUDED

#include "tools/zim_datadir.h"
#include "msg/zim_msg.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_adminsrv_t zim_adminsrv_t;

//  The nodes a status shows, as a JSON array. Caller owns return value.
typedef json_t *(zim_adminsrv_nodes_fn)(void *arg);

//  Binds the admin endpoint. datadir gives the admin key, the app secrets
//  for tokens and the CURVE keys (borrowed: it must outlive this). Returns
//  NULL if the endpoint cannot be bound (logged). Caller owns return value.
zim_adminsrv_t *zim_adminsrv_new (const char *program, const char *endpoint, zim_datadir_t *datadir,
                                  zim_adminsrv_nodes_fn *nodes, void *arg);
void zim_adminsrv_destroy (zim_adminsrv_t **self_p);

//  More verbs, answered by fn (the store's: tools/zim_storeadmin.h): it
//  returns the result (caller owns), or NULL with *code and text set;
//  code ZIM_ERR_UNKNOWN_OP means the verb is not one of its own.
typedef char *(zim_adminsrv_verb_fn)(void *arg, const zim_admin_req_t *req, int *code, char *text,
                                     size_t size);
void zim_adminsrv_set_verbs (zim_adminsrv_t *self, zim_adminsrv_verb_fn *fn, void *arg);

//  The socket, to poll; its bound endpoint.
zsock_t *zim_adminsrv_sock (zim_adminsrv_t *self);
const char *zim_adminsrv_endpoint (zim_adminsrv_t *self);

//  Reads and answers one request (call when the socket is readable).
void zim_adminsrv_handle (zim_adminsrv_t *self);

//  Requests refused for a bad admin key.
uint64_t zim_adminsrv_bad_keys (zim_adminsrv_t *self);

//  The status document: {"program","version","uptime_s","nodes":[...]}.
//  Caller owns return value (json_decref).
json_t *zim_adminsrv_status (zim_adminsrv_t *self);
//  The same as a table for people. Caller owns return value.
char *zim_adminsrv_status_text (zim_adminsrv_t *self);

//  Self test of this class.
void zim_adminsrv_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
