/*  zim_admin.h: the admin protocol between zimctl (or zim-bench, or a test)
    and a node's admin endpoint, a ROUTER socket.

    Request, one frame:  [40, key, verb, arg, ...]   (all strings)
    Reply, one frame:    [41, code, text]
    code 0 means success and text is the result (a token, a JSON document);
    otherwise code is a wire error code and text says why. Verbs:
        token APP UID [TTL]  a token for UID in APP, valid TTL seconds (3600)
        status               JSON: each node, its role, address, liveness
                             and counters
        status text          the same as a table for people
    A request with a wrong key gets 4030 and a log line on the server.
*/
#ifndef ZIM_ADMIN_H_INCLUDED
#define ZIM_ADMIN_H_INCLUDED

#include "msg/zim_curve.h"
#include "msg/zim_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The request and reply are the catalogue's kinds ADMIN (zim_admin_req_t)
//  and ADMIN_REPLY (zim_admin_reply_t), msg/zim_catalog.def.
#define ZIM_ADMIN_MAX_ARGS 8 //  as declared for admin_req's args

//  Default admin endpoint.
#define ZIM_ADMIN_ENDPOINT "tcp://127.0.0.1:7710"

//  Encodes a request; args is a NULL-terminated list of C strings.
void zim_admin_req_encode (zim_wr_t *wr, const char *key, const char *verb,
                           const char *const *args);
//  Decodes a whole request (views borrow the buffer); returns 0, ZIM_EKIND
//  if it is not a request, or another negative ZIM_E* code.
int zim_admin_req_decode (zim_rd_t *rd, zim_admin_req_t *req);
void zim_admin_reply_encode (zim_wr_t *wr, int code, const char *text);
//  Decodes a whole reply into *code and a view of the text; returns 0 or a
//  negative ZIM_E* code.
int zim_admin_reply_decode (zim_rd_t *rd, int *code, zim_str_t *text);

//  Sends one request to endpoint and waits up to timeout_ms for the reply.
//  Returns the reply's code (0 = success) and sets *text to its text (caller
//  owns it), or returns ZIM_ERR_UNAVAILABLE with *text saying why (no answer
//  in time, bad endpoint).
//  @param args NULL-terminated list of string arguments, or NULL
int zim_admin_call (const char *endpoint, const char *key, int timeout_ms, const char *verb,
                    const char *const *args, char **text);

//  The same over CURVE when curve is not NULL (the client's keys and the
//  cluster's public key, msg/zim_curve.h).
int zim_admin_call_curve (const char *endpoint, const zim_curve_t *curve, const char *key,
                          int timeout_ms, const char *verb, const char *const *args,
                          char **text);

//  The CURVE keys directory a tool should use when none was given:
//  $ZIM_KEYS, else $ZIM_DATA/curve, else ./zim-data/curve, the last two
//  only if they hold cluster.cert. NULL if none. Caller owns return value.
char *zim_admin_keys_default (void);

//  The admin key a tool should use when none was given: $ZIM_ADMIN_KEY,
//  else the first line of $ZIM_DATA/admin.key, else of ./zim-data/admin.key.
//  Returns NULL if none is found. Caller owns return value.
char *zim_admin_key_default (void);

void zim_admin_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
