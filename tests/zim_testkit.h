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

#include "msg/zim_curve.h"
#include "msg/zim_mp.h"

#include <check.h>

//  A zim-server child process.
typedef struct {
    pid_t pid;                //  child pid, 0 when not running
    int ws_port;              //  its client port
    int api_port;             //  its push API port (0: none)
    char apikey[128];         //  the demo app's API key (dev defaults), or ""
    char admin[64];           //  its admin endpoint
    char data[256];           //  its data directory
    char key[128];            //  its admin key
    char log[300];            //  its stdout/stderr log file
    const zim_curve_t *curve; //  CURVE client keys of its admin endpoint, or
                              //  NULL (borrowed)
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
//  Counts the sanitizer reports (ASan, LSan, UBSan, TSan lines) in the log
//  at path, printing each; 0 if there is no such file.
int tk_log_reports (const char *path);

//  One decoded server frame.
typedef struct {
    char op[16];    //  ack, msg, page, error, pong, auth_ok
    int64_t code;   //  error code
    char text[128]; //  error text
    char cid[72];   //  ack/error cid
    uint64_t id, seq, ts, rid;
    bool more; //  page
    char from[72], to[72];
    char body[256];      //  body if it was a msgpack string, else ""
    uint32_t nmsgs;      //  page: number of messages
    uint64_t seqs[1024]; //  page: their seqs (first 1024)
    uint64_t ids[1024];  //  page: their ids
    char bodies[64][64]; //  page: first 64 string bodies
    const uint8_t *raw;  //  the frame's bytes, for keys not decoded here: valid
    size_t raw_len;      //  until the next receive on its client
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
//  The same to another destination field: "group" for a group send.
void tk_enc_send_at (zim_wr_t *wr, const char *field, const char *dest, const char *cid,
                     const char *text);
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
//  tk_login, then its auth_ok; a failed Check assertion otherwise (for
//  the tests' setup: the client is known to be authenticated).
tk_client_t *tk_login_ok (tk_server_t *srv, const char *uid, const char *device);

//  Sends {"op":"ping"} on c (its pong comes after every frame queued before).
void tk_ping (tk_client_t *c);
//  Runs the shell command cmd; its output (up to size - 1 bytes) into out,
//  0-terminated. Returns its wait status (pclose).
int tk_shell (const char *cmd, char *out, size_t size);
//  Runs every test of suite s (CK_NORMAL); returns the exit status of a
//  test program: 0 if all passed, else 1.
int tk_run (Suite *s);

//  The status of the close frame the server sent c (e.g. 4090: slow
//  consumer), or -1 if none came.
int tk_close_status (tk_client_t *c);

//  A free TCP port on 127.0.0.1 (bound to port 0 and closed again), below
//  czmq's dynamic range (49152 up) so that "tcp://...:*" binds elsewhere do
//  not take it. -1 if none was found.
int tk_free_port (void);
//  A free port P as tk_free_port, with P+1 .. P+n-1 free too (for a node
//  whose workers take PORT+K). -1 if none was found.
int tk_free_ports (int n);
//  The children of process pid (e.g. a supervisor's workers), up to max,
//  into kids. Returns how many.
int tk_children (pid_t pid, pid_t *kids, int max);
//  In a forked child: stdout and stderr to log (truncated), then execv of
//  program; never returns (exit 127 if the exec failed).
void tk_exec_logged (const char *log, const char *program, const char *const *argv);
//  Sends sig to the child *pid (if > 0), reaps it and sets *pid to 0.
void tk_reap (pid_t *pid, int sig);
//  Reads a whole small file into buf; returns bytes or -1.
ssize_t tk_read_file (const char *path, char *buf, size_t size);

#include "tests/zim_tkcluster.h"

#endif
