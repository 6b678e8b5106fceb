/*  zim_metricsrv.h: a node program's metrics endpoint (--metrics
    ADDR:PORT, server/metrics): a small HTTP/1.x responder on a ZeroMQ
    STREAM socket, served by the process shell's loop beside the admin
    endpoint. GET /metrics answers the Prometheus text from a callback
    (the process shell collects every actor's METRICS); any other path is
    404, another method 405, a request that is not HTTP 400, one too large
    or too slow is closed. Every refusal is logged through a rate limiter
    and counted. One request per connection: the answer says Connection:
    close and the client closes after reading it (else it is closed 5 s
    later); at most 16 connections are open at once (more are closed at
    once).
*/
#ifndef ZIM_METRICSRV_H_INCLUDED
#define ZIM_METRICSRV_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_metricsrv_t zim_metricsrv_t;

//  The exposition text to answer with. Caller owns return value.
typedef char *(zim_metricsrv_text_fn)(void *arg);

//  Binds address, "HOST:PORT" ("127.0.0.1:9100", "0.0.0.0:9100", "*:9100",
//  "[::1]:9100"; port 0 picks a free one). Returns NULL if it cannot
//  (logged). Caller owns return value.
zim_metricsrv_t *zim_metricsrv_new (const char *program, const char *address,
                                    zim_metricsrv_text_fn *text, void *arg);
void zim_metricsrv_destroy (zim_metricsrv_t **self_p);

//  The socket, to poll.
zsock_t *zim_metricsrv_sock (zim_metricsrv_t *self);
//  The bound port, and the URL to scrape (http://HOST:PORT/metrics).
int zim_metricsrv_port (zim_metricsrv_t *self);
const char *zim_metricsrv_url (zim_metricsrv_t *self);

//  Reads one message of the socket and answers what is complete (call
//  when it is readable); closes requests older than their deadline.
void zim_metricsrv_handle (zim_metricsrv_t *self);
//  Closes requests older than their deadline (call now and then).
void zim_metricsrv_sweep (zim_metricsrv_t *self);

//  Scrapes answered (200), and requests refused or closed unanswered.
uint64_t zim_metricsrv_scrapes (zim_metricsrv_t *self);
uint64_t zim_metricsrv_refused (zim_metricsrv_t *self);

//  Self test of this class.
void zim_metricsrv_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
