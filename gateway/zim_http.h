/*  zim_http.h: the plain HTTP a gateway answers on its client port, and
    the checks before a WebSocket upgrade. GET /ws upgrades (a token in the
    query is verified first: 403 if refused; a bad device: 400), /healthz
    answers 200 "ok", /metrics the gateway's metrics in the Prometheus
    text format, /dev/token mints demo tokens in the dev defaults only,
    and anything else is a file of the www directory or 404.

    /dev/token hands out tokens signed with a real secret, so it answers
    only when all of these hold, else 404: the process shell asked for it
    (dev_tokens, set only with its dev defaults), the one app is "demo",
    the gateway listens on a loopback interface, the peer is on loopback,
    and the request carries no proxy header (Forwarded, X-Forwarded-*,
    X-Real-IP, Via): behind a reverse proxy on the same host every client
    would look local.
*/
#ifndef ZIM_HTTP_H_INCLUDED
#define ZIM_HTTP_H_INCLUDED

#include <stdbool.h>

#include "gateway/zim_edge.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lws;

//  Answers a plain HTTP request for uri (LWS_CALLBACK_HTTP). Returns what
//  the libwebsockets callback must return.
int zim_http_request (zim_edge_t *edge, struct lws *wsi, const char *uri);
//  Checks an upgrade request (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE): path
//  /ws, a valid device and token if given. Returns 0 to accept, or 1
//  after answering an HTTP error.
int zim_http_confirm_upgrade (zim_edge_t *edge, struct lws *wsi);
//  Finds name=value (name given with its '=') in the request's query and
//  copies value to buf. Returns buf, or NULL if absent or longer than
//  size - 1.
const char *zim_http_query_arg (struct lws *wsi, const char *name, char *buf, int size);

//  Self test of this class.
void zim_http_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
