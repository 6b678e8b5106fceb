/*  zim_apihttp.h: the HTTP side of the backend API (docs/API.md): HTTP/1.1
    with keep-alive on a ZeroMQ STREAM socket, served by the process
    shell's loop. It reads every complete request a connection has sent
    (pipelined requests are served concurrently: up to 64 per connection
    and 4096 in all between parse and written answer), checks the request
    line, the sizes (16 KiB of headers, the target included, 1 MiB of
    body: 413) and the "Authorization: Bearer KEY" of an app (401, 403),
    then hands the request to the API's handler with a ticket; the handler
    answers it now or later with that ticket. Answers are written in
    request order. A request not answered in time gets 503; an idle
    connection is closed after 60 s.
*/
#ifndef ZIM_APIHTTP_H_INCLUDED
#define ZIM_APIHTTP_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_apihttp_t zim_apihttp_t;

//  One request, as the handler sees it (views valid during the call).
typedef struct {
    uint64_t ticket;    //  answer with it; unique in this process, never 0
    const char *method; //  GET, POST, DELETE...
    const char *path;   //  the target without its query
    const char *query;  //  after '?', or ""
    const char *app;    //  the app whose key the request carries
    const char *type;   //  Content-Type, or NULL
    const char *body;   //  the body (NUL-terminated after blen bytes)
    size_t blen;        //  its length
} zim_apihttp_req_t;

//  The handler: answers req now or later (zim_apihttp_answer), or lets it
//  wait (zim_apihttp_wait).
typedef void (zim_apihttp_fn) (void *arg, const zim_apihttp_req_t *req);

//  Binds address ("HOST:PORT"; port 0 picks a free one); requests go to fn
//  with arg. Returns NULL if it cannot (logged). Caller owns return value.
zim_apihttp_t *zim_apihttp_new (const char *program, const char *address, zim_apihttp_fn *fn,
                                void *arg);
void zim_apihttp_destroy (zim_apihttp_t **self_p);

//  Adds the API key of app (16 to 256 characters, 64 apps). Returns 0 or -1.
int zim_apihttp_add_key (zim_apihttp_t *self, const char *app, const char *key);
//  The dev defaults' key of app: read from path, or made (64 hex
//  characters, mode 0600) if the file does not exist. Returns 0 or -1.
int zim_apihttp_key_file (zim_apihttp_t *self, const char *app, const char *path);

//  The STREAM socket, to poll; the bound port; the base URL.
zsock_t *zim_apihttp_sock (zim_apihttp_t *self);
int zim_apihttp_port (zim_apihttp_t *self);
const char *zim_apihttp_url (zim_apihttp_t *self);

//  Reads one message of the socket (call when readable).
void zim_apihttp_handle (zim_apihttp_t *self);

//  Answers request ticket with status and a JSON document (an error
//  document when status is not 200: logged, counted). Returns false if
//  the request is gone (its connection closed, or it was answered 503).
bool zim_apihttp_answer (zim_apihttp_t *self, uint64_t ticket, int status, const char *json);
//  Refuses request ticket: {"error":{"code","text"}}, logged and counted.
void zim_apihttp_refuse (zim_apihttp_t *self, uint64_t ticket, int status, const char *code,
                         const char *text);
//  Request ticket is answered later: 503 if not within timeout_ms (the
//  default, without this call: 5 s).
void zim_apihttp_wait (zim_apihttp_t *self, uint64_t ticket, int64_t timeout_ms);

//  Answers 503 to requests past their time, closes idle connections (call
//  now and then).
void zim_apihttp_sweep (zim_apihttp_t *self);

//  Requests answered with 200, and refused.
uint64_t zim_apihttp_requests (zim_apihttp_t *self);
uint64_t zim_apihttp_refused (zim_apihttp_t *self);

//  Self test of this class.
void zim_apihttp_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
