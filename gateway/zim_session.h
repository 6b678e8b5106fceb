/*  zim_session.h: one client connection of the gateway. It holds who the
    client is (app, uid, device, once authenticated), what waits to be
    written to it and what it is sending in fragments, its send and read
    token buckets, its reads in flight, and its timers (idle and auth
    deadlines, the next PING).

    Output is one buffer per connection, written as one WebSocket message
    at the end of the loop turn that queued it (zim_session_flush_all), or
    from the writable callback when the socket was full. It is accounted in two parts: answers to
    the client's own reads (pages, and errors naming a read's rid), which
    are bounded by max_reads_inflight and never make a slow consumer; and
    everything else (live deliveries, acks, errors), which beyond
    max_pending cuts the connection with 4090.

    A read holds its slot from the moment it is forwarded until its answer
    has been handed to the socket, so a client that asks without reading
    cannot pile pages up in the gateway.
*/
#ifndef ZIM_SESSION_H_INCLUDED
#define ZIM_SESSION_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/zim_edge.h"
#include "gateway/zim_timers.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lws;
typedef struct _zim_session_t zim_session_t;

//  Creates a session for the WebSocket wsi (NULL in selftests: output is
//  then kept, never written). Not yet authenticated; device "default".
//  Caller owns return value.
zim_session_t *zim_session_new (zim_edge_t *edge, uint64_t id, struct lws *wsi);
//  Destroys the session and its buffers (its timers are stopped).
void zim_session_destroy (zim_session_t **self_p);

//  A transport other than libwebsockets (raw TCP, zim_tcp.h): what the
//  session calls where it would call lws. A session on one sends no PING
//  (the transport has its own heartbeat) and no close frame: it returns -1
//  from zim_session_writable once its output went out.
typedef struct {
    //  Asks for a call of zim_session_writable soon.
    void (*want_write) (void *arg);
    //  Writes size bytes: whole frames back to back. 0, or -1 when the
    //  connection is to close now.
    int (*write) (void *arg, const uint8_t *data, size_t size);
} zim_session_io_t;
//  Puts a session made without a wsi on the transport io (borrowed) with
//  its argument arg.
void zim_session_set_io (zim_session_t *self, const zim_session_io_t *io, void *arg);

//  Accessors.
uint64_t zim_session_id (const zim_session_t *self);
bool zim_session_authed (const zim_session_t *self);
const char *zim_session_app (const zim_session_t *self);
const char *zim_session_uid (const zim_session_t *self);
const char *zim_session_device (const zim_session_t *self);
//  The idle and auth deadlines (zim_sessions queues them).
zim_timer_t *zim_session_idle_timer (zim_session_t *self);
zim_timer_t *zim_session_auth_timer (zim_session_t *self);
zim_timer_t *zim_session_ping_timer (zim_session_t *self);

//  Input arrived at now_ms (a message, a fragment or a PONG): the peer is
//  alive. zim_sessions hangs up on a session not heard from for long.
void zim_session_heard (zim_session_t *self, int64_t now_ms);
int64_t zim_session_heard_ms (const zim_session_t *self);
//  Sends a WebSocket PING at the next writable callback (after pending
//  output; never once closing).
void zim_session_ping (zim_session_t *self);
bool zim_session_ping_due (const zim_session_t *self);

//  Sets the device name (a valid cid: 1..64 printable ASCII bytes).
void zim_session_set_device (zim_session_t *self, const char *device);
//  Whether the app said it is in the background (op state): its routes
//  carry the flag, so its messages are pushed as well as delivered.
bool zim_session_background (const zim_session_t *self);
void zim_session_set_background (zim_session_t *self, bool background);
//  Marks the session authenticated as (app, uid), both valid ids.
void zim_session_set_identity (zim_session_t *self, const char *app, const char *uid);
//  Counts one more failed auth attempt; returns how many there were.
uint32_t zim_session_auth_failed (zim_session_t *self);

//  Queues bytes (whole client frames) to the client. reply is true for the
//  answer to one of its reads. Past max_pending of other output the
//  connection is cut: pending output is dropped, a 4090 error queued alone,
//  and the connection closes with 4090 once it went out.
void zim_session_write (zim_session_t *self, const void *data, size_t size, bool reply);
//  Queues an error frame; cid/rid name the request if it had one.
void zim_session_error (zim_session_t *self, int code, const char *text, zim_str_t cid,
                        bool has_rid, uint64_t rid);
//  Queues an error frame, then closes with status once output went out.
void zim_session_fail (zim_session_t *self, int code, const char *text, int status);
//  Closes with status once output went out, without an error frame.
void zim_session_close (zim_session_t *self, int status);
//  True once the session is closing: nothing more is read or queued.
bool zim_session_closing (const zim_session_t *self);
//  Bytes queued: all of them, and those answering reads.
size_t zim_session_pending (const zim_session_t *self);
size_t zim_session_pending_replies (const zim_session_t *self);
//  The bytes queued (for selftests).
const uint8_t *zim_session_output (const zim_session_t *self, size_t *size);

//  The socket is writable: writes what is queued as one WebSocket message
//  (or the close). Returns -1 when the connection is to close now.
int zim_session_writable (zim_session_t *self);
//  Once per loop turn, after its input was handled: writes the output of
//  every WebSocket session that queued some, each as one WebSocket message
//  straight to its socket, unless lws still holds part of an earlier
//  write (then, and for a PING or a close, it asks for the writable
//  callback, which does the rest).
void zim_session_flush_all (zim_edge_t *edge);

//  Takes in one fragment of a client message. Returns 1 with *msg/*size
//  set when the message is complete (valid until the next call), 0 when
//  more fragments must come, -1 when it grew over max_frame (the session
//  then fails with 4002 and a 1009 close).
int zim_session_receive (zim_session_t *self, const void *in, size_t len, bool final,
                         const uint8_t **msg, size_t *size);

//  Takes one token of the send bucket; false if over send_rate.
bool zim_session_take_send (zim_session_t *self, int64_t now_ms);
//  Admits one read (sync or history): 0, or ZIM_ERR_TOO_MANY_READS when
//  max_reads_inflight are unanswered, ZIM_ERR_RATE_LIMITED when over
//  read_rate. An admitted read holds a slot until its answer is written
//  (or zim_session_read_cancel).
int zim_session_read_begin (zim_session_t *self, int64_t now_ms);
//  Gives back the slot of a read that was not forwarded after all.
void zim_session_read_cancel (zim_session_t *self);
//  Reads holding a slot.
uint32_t zim_session_reads (const zim_session_t *self);

//  Self test of this class.
void zim_session_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
