/*  zim_apikit.h: what the push API tests share (tests/test_api.c,
    tests/test_api_pipe.c): a zim-server per test case with its API, calls
    through libcurl on one kept-alive connection, the refusals' JSON, and
    clients that check what the backend pushed to them.
*/
#ifndef ZIM_APIKIT_H_INCLUDED
#define ZIM_APIKIT_H_INCLUDED

#include "tests/zim_testkit.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

//  The server of the running test case, and the curl handle the calls use.
extern tk_server_t ak_srv;
extern CURL *ak_curl;

//  Check fixture: starts ak_srv (with its API and the demo app's key) and
//  ak_curl.
void ak_setup (void);
//  Check fixture: stops ak_srv cleanly; fails on a sanitizer report in its
//  log.
void ak_teardown (void);

//  What an answer held.
typedef struct {
    char *data; //  its bytes, 0-terminated (malloc'd)
    size_t len; //  how many
} ak_buf_t;

//  Appends size * n bytes at ptr to the ak_buf_t arg (a curl write
//  function). Returns size * n.
size_t ak_collect (char *ptr, size_t size, size_t n, void *arg);

//  Calls method path on ak_srv's API with body (NULL: none) of blen bytes
//  and Content-Type type, and key (NULL: no Authorization); returns the
//  status, *doc the JSON answer (a failed check if it is not JSON).
long ak_call_typed (const char *method, const char *path, const char *body, size_t blen,
                    const char *type, const char *key, json_t **doc);

//  ak_call_typed with a JSON body (or NULL) and the app's API key.
long ak_call (const char *method, const char *path, const char *body, json_t **doc);

//  Expects a refusal with status and error code (and a text); frees *doc_p.
void ak_refused (long status, json_t **doc_p, long want, const char *code);

//  Expects a refusal of the groups endpoints: status, code and the store's
//  wire code (0: none); frees *doc_p.
void ak_group_refused (long status, json_t **doc_p, long want, const char *code, int zim);

//  Sends {"op":"join","room":room} and waits for the answer.
void ak_join (tk_client_t *c, const char *room);

//  The next frame of c with op: its body's bytes are body (size), it has a
//  ts and no sender (the backend pushed it).
void ak_expect_body (tk_client_t *c, const char *op, const char *body, size_t size);

//  Pings c; no frame with op may come before the pong.
void ak_nothing (tk_client_t *c, const char *op);

#endif
