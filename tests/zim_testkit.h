/*  zim_testkit.h: what black-box tests share: start a real zim-server
    process on ephemeral ports with its own data dir, mint tokens through its
    admin endpoint, and speak the client protocol over a real WebSocket.
*/
#ifndef ZIM_TESTKIT_H_INCLUDED
#define ZIM_TESTKIT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg/zim_mp.h"

//  A zim-server child process.
typedef struct {
    pid_t pid;           //  child pid, 0 when not running
    int ws_port;         //  its client port
    char admin[64];      //  its admin endpoint
    char data[256];      //  its data directory
    char key[128];       //  its admin key
    char log[300];       //  its stdout/stderr log file
} tk_server_t;

//  Starts zim-server with a fresh data dir (or data if not NULL, to restart
//  on the same data); extra are more arguments (NULL-terminated, or NULL).
//  Waits for the ready line. Returns 0 or -1.
int tk_server_start (tk_server_t *srv, const char *data, const char *const *extra);
//  Stops it with sig (SIGTERM: clean; SIGKILL: crash) and waits for it.
void tk_server_stop (tk_server_t *srv, int sig);
//  Mints a token (ttl seconds). Caller owns return value; NULL on failure.
char *tk_token (tk_server_t *srv, const char *uid, int ttl);
//  Removes the data dir.
void tk_server_cleanup (tk_server_t *srv);

//  One decoded server frame.
typedef struct {
    char op[16];        //  ack, msg, page, error, pong, auth_ok
    int64_t code;       //  error code
    char text[128];     //  error text
    char cid[72];       //  ack/error cid
    uint64_t id, seq, ts, rid;
    bool more;          //  page
    char from[72], to[72];
    char body[256];     //  body if it was a msgpack string, else ""
    uint32_t nmsgs;     //  page: number of messages
    uint64_t seqs[1024]; //  page: their seqs (first 1024)
    uint64_t ids[1024];  //  page: their ids
    char bodies[64][64]; //  page: first 64 string bodies
} tk_frame_t;

typedef struct tk_client tk_client_t;

//  Connects to srv's /ws with query (e.g. "token=...&device=phone", or "").
//  Returns NULL and sets *status to the HTTP status if the upgrade failed.
tk_client_t *tk_connect (tk_server_t *srv, const char *query, int *status);
void tk_close (tk_client_t **self_p);
//  Sends raw bytes as one binary message (or text if text is true).
int tk_send_raw (tk_client_t *self, const void *data, size_t len, bool text);
//  Sends one encoded frame from a writer and resets it.
int tk_send_wr (tk_client_t *self, zim_wr_t *wr);
//  Encodes a send with a string body. Appends to wr (for pipelining).
void tk_enc_send (zim_wr_t *wr, const char *to, const char *cid, const char *text);
//  Sends a send op now.
int tk_send_text (tk_client_t *self, const char *to, const char *cid, const char *text);
//  Sends {"op":"sync","since":since,"limit":limit,"rid":rid}; since < 0 omits it.
int tk_sync (tk_client_t *self, int64_t since, uint64_t limit, uint64_t rid);
//  Receives the next frame within timeout_ms. Returns 0 or -1 (timeout or
//  closed; *closed tells which if not NULL).
int tk_recv (tk_client_t *self, int timeout_ms, tk_frame_t *f);
//  Receives frames until one with op arrives (others are dropped); 0 or -1.
int tk_expect (tk_client_t *self, const char *op, int timeout_ms, tk_frame_t *f);
//  True once the server closed the connection.
bool tk_closed (tk_client_t *self);
//  Authenticated client for uid on device (token by query). NULL on failure.
tk_client_t *tk_login (tk_server_t *srv, const char *uid, const char *device);

#endif
