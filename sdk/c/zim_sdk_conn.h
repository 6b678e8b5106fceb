/*  zim_sdk_conn.h: the C SDK's transport, private to libzimclient. One
    WebSocket client connection at a time to one URL over libwebsockets:
    connection attempts, the deadline for getting ready, reconnecting after
    a jittered exponential backoff, whole messages in (fragments joined) and
    out, and why a connection ended. What the bytes mean is its owner's
    business (zim_client.c), told through hooks.
*/
#ifndef ZIM_SDK_CONN_H_INCLUDED
#define ZIM_SDK_CONN_H_INCLUDED

#include "sdk/c/zim_sdk_loop.h"

//  What the connection tells its owner. Hooks are never called after
//  zim_sdk_conn_destroy, nor while the loop is being destroyed (closed
//  excepted, so the owner can settle).
typedef struct {
    //  An attempt starts (after zim_sdk_conn_start's delay).
    void (*connecting) (void *arg);
    //  The WebSocket is open. Return -1 to close it.
    int (*open) (void *arg);
    //  One whole message arrived. Return -1 to close the connection.
    int (*message) (void *arg, const unsigned char *data, size_t len);
    //  The connection may write (zim_sdk_conn_write) now. Return -1 to
    //  close it (after zim_sdk_conn_bye for a normal close).
    int (*writable) (void *arg);
    //  The connection or the attempt is over: code and text say why (the
    //  reason recorded by zim_sdk_conn_fail or _note, or the peer's close
    //  status >= 4000, take precedence). refused: the attempt failed before
    //  the WebSocket opened (connect or upgrade refused). The connection is
    //  idle when this runs; zim_sdk_conn_reconnect from here reconnects.
    void (*closed) (void *arg, int code, const char *text, bool refused);
} zim_sdk_conn_hooks_t;

//  Settings; zim_sdk_conn_new copies what it needs.
typedef struct {
    const char *url;             //  ws[s]://host[:port][/path], or tcp://host:port (raw TCP:
                                 //  each frame after its length, 4 bytes big endian)
    uint32_t connect_timeout_ms; //  from the attempt's start to zim_sdk_conn_ready
    uint32_t backoff_min_ms;     //  first reconnect delay
    uint32_t backoff_max_ms;     //  largest reconnect delay
    uint64_t seed;               //  for the jitter
    const char *tls_ca_file;     //  wss://: trust the CAs of this PEM file (NULL: the system's)
} zim_sdk_conn_config_t;

//  Creates an idle connection on loop. Returns NULL if the url is not a
//  ws://, wss:// or tcp:// URL.
zim_sdk_conn_t *zim_sdk_conn_new (zim_loop_t *loop, const zim_sdk_conn_config_t *cfg,
                                  const zim_sdk_conn_hooks_t *hooks, void *arg);

//  Destroys the connection at once, without hooks; the wsi, if any, is
//  closed, and the memory freed when lws has let go of it.
void zim_sdk_conn_destroy (zim_sdk_conn_t **self_p);

//  Sets the query parameters of the request: token= and device= (each may
//  be NULL: not sent). Applies from the next attempt.
void zim_sdk_conn_set_query (zim_sdk_conn_t *self, const char *token, const char *device);

//  Starts an attempt at the next loop turn, with the backoff reset.
//  @return 0, or -1 if an attempt is under way or the loop is gone
int zim_sdk_conn_start (zim_sdk_conn_t *self);

//  Starts an attempt after the backoff delay: backoff_min_ms doubled per
//  attempt since the last zim_sdk_conn_start or _ready, capped at
//  backoff_max_ms, half of it random.
//  @return 0, or -1 if an attempt is under way or the loop is gone
int zim_sdk_conn_reconnect (zim_sdk_conn_t *self);

//  Cancels an attempt that has not started yet.
//  @return true if one was waiting
bool zim_sdk_conn_cancel (zim_sdk_conn_t *self);

//  A backoff delay in microseconds for the nth retry of something, by the
//  reconnect rule.
uint64_t zim_sdk_conn_backoff_us (zim_sdk_conn_t *self, uint32_t n);

//  The connection is ready for use: the deadline is off and the reconnect
//  backoff starts over.
void zim_sdk_conn_ready (zim_sdk_conn_t *self);

//  True while an attempt is under way or the connection is open.
bool zim_sdk_conn_live (zim_sdk_conn_t *self);

//  True while the WebSocket is open (writes possible).
bool zim_sdk_conn_open (zim_sdk_conn_t *self);

//  True once the loop is gone or being destroyed: report nothing more.
bool zim_sdk_conn_quiet (zim_sdk_conn_t *self);

//  The loop, or NULL once it was destroyed.
zim_loop_t *zim_sdk_conn_loop (zim_sdk_conn_t *self);

//  Asks for a writable hook, if the WebSocket is open.
void zim_sdk_conn_want_write (zim_sdk_conn_t *self);

//  Bytes that must be writable before a payload given to zim_sdk_conn_write.
size_t zim_sdk_conn_headroom (void);

//  Writes one binary message; payload has zim_sdk_conn_headroom () bytes
//  before it that lws may use. Only from the writable hook.
//  @return 0, or -1 if the write failed (then close)
int zim_sdk_conn_write (zim_sdk_conn_t *self, unsigned char *payload, size_t len);

//  Records why the connection ends (unless a reason is recorded already)
//  and closes it soon; with no attempt under way, does nothing.
void zim_sdk_conn_fail (zim_sdk_conn_t *self, int code, const char *text);

//  Records why the connection is about to end, unless a reason is
//  recorded already (the server said so before closing).
void zim_sdk_conn_note (zim_sdk_conn_t *self, int code, const char *text);

//  Marks the close the writable hook is about to ask for as a normal one.
void zim_sdk_conn_bye (zim_sdk_conn_t *self);

//  When the server last sent something (mono clock, microseconds).
uint64_t zim_sdk_conn_last_rx (zim_sdk_conn_t *self);

//  For the loop: the protocols of its lws context.
const struct lws_protocols *zim_sdk_conn_protocols (void);

//  For the loop: frees the connection (member: its list link) if it is
//  dead and lws has let go of its wsi.
void zim_sdk_conn_reap (lws_dll2_t *member);

//  For the loop, being destroyed: forgets the wsi and the loop; frees the
//  connection if it is dead.
void zim_sdk_conn_detach (lws_dll2_t *member);

//  Selftest.
void zim_sdk_conn_test (bool verbose);

#endif
