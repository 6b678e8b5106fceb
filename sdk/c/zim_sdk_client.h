/*  zim_sdk_client.h: the client class of libzimclient from the inside. The
    public API is zim_client.h; the class is written in two files that share
    this struct, and nothing outside sdk/c includes this header:
    - zim_client.c: the façade: the object, its life, its timers and
      writes, and every public function;
    - zim_sdk_recv.c: the answers: each frame from the server goes to the
      part it belongs to (sendq, inbox, requests, rooms, channels) and to
      the application's callbacks.
    The public zim_client_test runs every selftest of the SDK;
    tests/zim_selftest runs them one by one.
*/
#ifndef ZIM_SDK_CLIENT_H_INCLUDED
#define ZIM_SDK_CLIENT_H_INCLUDED

#include "sdk/c/zim_client.h"
#include "sdk/c/zim_sdk_chans.h"
#include "sdk/c/zim_sdk_conn.h"
#include "sdk/c/zim_sdk_inbox.h"
#include "sdk/c/zim_sdk_loop.h"
#include "sdk/c/zim_sdk_outq.h"
#include "sdk/c/zim_sdk_reqs.h"
#include "sdk/c/zim_sdk_rooms.h"
#include "sdk/c/zim_sdk_sendq.h"
#include "msg/zim_mp.h"

struct _zim_client_t {
    zim_client_config_t cfg;         //  configuration, defaults applied
    char *url;                       //  our copy of cfg.url
    char *token;                     //  our copy of cfg.token
    char *device;                    //  our copy of cfg.device, or NULL
    zim_sdk_conn_t *conn;            //  the transport
    zim_sdk_outq_t *outq;            //  frames waiting for the next write
    zim_sdk_sendq_t *sendq;          //  sends awaiting their ack
    zim_sdk_inbox_t *inbox;          //  seq order (auto_sync) and last seq
    zim_client_state_t state;        //  as last reported
    bool auth_sent;                  //  the auth frame went out on this connection
    bool closing;                    //  zim_client_close was called
    bool dead;                       //  zim_client_destroy was called: no more callbacks
    uint32_t retry_attempt;          //  retries after retryable errors since the last ack
    uint64_t cursor_want;            //  highest cursor asked for
    uint64_t cursor_sent;            //  highest cursor written on this connection
    zim_sdk_reqs_t *reqs;            //  request ids; the application's in flight
    zim_sdk_rooms_t *rooms;          //  rooms joined: joined again after a reconnect
    zim_sdk_chans_t *chans;          //  channel positions; csyncs in flight
    zim_client_msg_t *page_msgs;     //  decoded page items for on_page
    size_t page_alloc;               //  room in page_msgs
    zim_client_conv_t *convs;        //  decoded convs entries for on_convs
    size_t convs_alloc;              //  room in convs
    zim_client_group_t *groups;      //  decoded groups entries for on_groups
    size_t groups_alloc;             //  room in groups
    char uid[ZIM_CLIENT_ID_MAX + 1]; //  from auth_ok
    zim_wr_t wr;                     //  scratch writer for frames
    zim_sdk_timer_t t_ping;          //  heartbeat
    zim_sdk_timer_t t_retry;         //  resend after a retryable error
    zim_sdk_timer_t t_ack;           //  ack timeout checks
    zim_sdk_timer_t t_notify;        //  deferred CLOSED after zim_client_close
};

//  ---------------------------------------------------------------------
//  zim_client.c, for zim_sdk_recv.c.

//  True when the application must hear nothing more from this client.
bool zim_sdk_client_quiet (zim_client_t *self);

//  Reports a state change (and remembers it).
void zim_sdk_client_emit_state (zim_client_t *self, zim_client_state_t state, int code);

//  Reports an error to on_error.
void zim_sdk_client_emit_error (zim_client_t *self, int code, const char *text, const char *cid,
                                bool has_rid, uint64_t rid);

//  Queues what the scratch writer holds (force: even over max_queue).
//  @return 0, or -1 (queue full; the writer is emptied either way)
int zim_sdk_client_queue (zim_client_t *self, bool force);

//  Puts every send that waits for a connection into the queue, in order.
void zim_sdk_client_queue_waiting (zim_client_t *self);

//  True for the codes of a refused token (4011-4018): this token will not
//  work, so waiting for the server's auth_timeout is pointless.
bool zim_sdk_client_token_refused (int code);

//  ---------------------------------------------------------------------
//  zim_sdk_recv.c.

//  The connection's message hook: one WebSocket message, one or more frames
//  back to back. @return 0, or -1 when the connection should close
int zim_sdk_recv_message (void *arg, const unsigned char *data, size_t len);

//  Selftest of the client class alone (refused connections, a client
//  destroyed inside its callback, a lost connection).
void zim_sdk_client_test (bool verbose);

//  Selftest of the answers (frames fed by hand).
void zim_sdk_recv_test (bool verbose);

#endif
