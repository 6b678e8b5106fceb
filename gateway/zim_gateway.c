/*  zim_gateway.c: the WebSocket edge. One thread runs the libwebsockets
    event loop; the actor pipe and the ZeroMQ sockets to the brokers and the
    router are adopted into it as raw file descriptors (ZMQ_FD), so one
    poll() serves clients and backbone alike.

    Client messages are decoded frame by frame (msg/zim_msg.h), checked
    (auth, rate, sender identity, recipient) and forwarded to the broker
    that owns the sender (FNV-1a-64 of "app\0uid"). Whatever the brokers send
    back (OUT) is appended to the connections' output buffers; each buffer
    goes out as one WebSocket message when its socket is writable.
*/
#include "gateway/zim_gateway.h"
#include "gateway/zim_token.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "config.h"

#include <libwebsockets.h>
#include <ctype.h>
#include <inttypes.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_BROKERS 64
#define S_MAX_ROUTERS 8
#define S_PRESENCE_CHUNK 1000
#define S_SYNC_LIMIT_MAX 1000

typedef struct s_gateway_t s_gateway_t;

//  A broker this gateway can send to.
typedef struct {
    char *name;     //  its node name (the endpoint for CONNECT broker)
    char *endpoint; //  where it listens
    zsock_t *sock;  //  DEALER, our name as routing id
    bool live;      //  in the cluster map (always, when given by CONNECT)
} s_broker_t;

//  A router: PRESENCE goes to every one.
typedef struct {
    zsock_t *sock;     //  DEALER
} s_routerconn_t;

//  A router known by its maps, and what they say about the brokers. A
//  broker is live while any router heard from in the last S_MAP_STALE_MS
//  lists it: routers may disagree for a moment (one has not yet timed a
//  broker out, or has just restarted and not yet heard every HELLO).
typedef struct {
    char *name;                 //  the router's node name
    uint64_t instance;          //  its instance in its last map: a change
                                //  means it restarted
    int64_t since_ms;           //  when that instance was first seen
    int64_t map_ms;             //  when its last map came
    bool seen[S_MAX_BROKERS];   //  brokers (by index) its maps list alive
} s_mapsrc_t;

//  A router's maps count for this long after the last one.
#define S_MAP_STALE_MS 3000
//  A router that just (re)started lists only the nodes it has heard from:
//  for this long its maps add brokers but do not remove any.
#define S_MAP_YOUNG_MS 2500

//  One client connection (WebSocket session).
typedef struct s_conn_t {
    uint64_t id;                 //  gateway-local connection id
    struct lws *wsi;             //  the libwebsockets connection
    s_gateway_t *gw;             //  owner
    bool authed;                 //  a valid token was presented
    char app[ZIM_ID_MAX + 1];    //  app from the token
    char uid[ZIM_ID_MAX + 1];    //  user id from the token
    char device[ZIM_ID_MAX + 1]; //  device name (query, auth frame, or "default")
    uint8_t *out;                //  output buffer; LWS_PRE bytes of headroom first
    size_t out_len;              //  payload bytes pending after the headroom
    size_t out_cap;              //  allocated payload capacity
    uint8_t *rx;                 //  fragments of the message being received
    size_t rx_len;               //  bytes in rx
    size_t rx_cap;               //  allocated size of rx
    bool rx_dropping;            //  rest of an oversized message is skipped
    int close_code;              //  nonzero: close with this status after flushing
    double tokens;               //  send rate limit token bucket
    int64_t refill_ms;           //  when the bucket was last refilled
    int64_t last_rx_ms;          //  last input from the client
    struct s_conn_t *prev;       //  idle list (oldest input first)
    struct s_conn_t *next;
    bool in_idle;                //  on the idle list
} s_conn_t;

//  What libwebsockets keeps per connection: a pointer to ours.
typedef struct {
    s_conn_t *conn;
} s_pss_t;

struct s_gateway_t {
    zsock_t *pipe;                      //  actor pipe
    char *name;                         //  node name and ZeroMQ routing id
    int port;                           //  requested, then real, port
    char *iface;                        //  listen address, NULL = all
    char *www;                          //  static files directory, NULL = none
    bool dev_tokens;                    //  serve /dev/token (dev defaults, loopback)
    size_t max_frame;                   //  largest client message
    uint64_t idle_timeout_s;            //  close after this long without input
    uint64_t ping_interval_s;           //  WebSocket ping interval
    double send_rate;                   //  sends per second per connection
    double send_burst;                  //  token bucket size
    size_t max_pending;                 //  output bytes before slow-consumer cut
    zhash_t *apps;                      //  app name -> secret
    s_broker_t brokers[S_MAX_BROKERS];  //  every broker ever connected
    size_t nbrokers;                    //  how many
    size_t live[S_MAX_BROKERS];         //  indexes of the live ones, sorted by name
    size_t nlive;                       //  how many
    s_routerconn_t routers[S_MAX_ROUTERS]; //  DEALERs to the routers
    s_mapsrc_t maps[S_MAX_ROUTERS];     //  the brokers each router's maps list
    size_t nmaps;                       //  routers heard from
    size_t nrouters;                    //  how many
    struct lws_context *ctx;            //  libwebsockets context
    struct lws_vhost *vhost;            //  the listening vhost
    lws_retry_bo_t retry;               //  WebSocket ping policy
    lws_sorted_usec_list_t tick;        //  1 s timer: idle connections
    zhashx_t *conns;                    //  conn id -> s_conn_t
    uint64_t next_conn;                 //  connection id counter
    s_conn_t *idle_head;                //  idle list: oldest input first
    s_conn_t *idle_tail;
    bool started;                       //  START done
    bool terminated;                    //  $TERM received
    int sent;                           //  S_DRAIN_* bits of the sockets sent
                                        //  on since their last drain
    zim_wr_t wr;                        //  encode buffer (backbone)
    zim_wr_t fr;                        //  encode buffer (client frames)
    int64_t log_sec;                    //  warning rate limit: current second
    int log_count;                      //  warnings logged in log_sec
    //  Counters (STATS)
    uint64_t connections, authed, frames_in, frames_out, writes, sends, errors_sent;
    uint64_t bad_frames, rate_limited, idle_closed, slow_consumer_drops, auth_failures;
    uint64_t too_large, unavailable, bad_messages, presence_dropped, http_requests;
};

static int s_callback_ws (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len);
static int s_callback_zmq (struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len);

static const struct lws_protocols s_protocols[] = {
    {"zim", s_callback_ws, sizeof (s_pss_t), 65536, 0, NULL, 0},
    {"zim-zmq", s_callback_zmq, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

//  Logs a warning, at most 20 a second; says when it starts dropping them.
static void s_warn (s_gateway_t *self, const char *format, ...)
{
    int64_t sec = (int64_t) (zim_now_ms () / 1000);
    if (sec != self->log_sec) {
        if (self->log_count > 20)
            zsys_warning ("%s: %d more warnings in the last second were not logged", self->name,
                          self->log_count - 20);
        self->log_sec = sec;
        self->log_count = 0;
    }
    if (++self->log_count > 20)
        return;
    char line[512];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    zsys_warning ("%s: %s", self->name, line);
}

//  ---------------------------------------------------------------------
//  Connection table keyed by uint64 ids stored in the key pointer.

static size_t s_conn_hash (const void *key)
{
    uint64_t k = (uint64_t) (uintptr_t) key;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t) k;
}

static int s_conn_cmp (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) a, y = (uintptr_t) b;
    return x < y ? -1 : x > y;
}

static s_conn_t *s_conn_lookup (s_gateway_t *self, uint64_t id)
{
    return (s_conn_t *) zhashx_lookup (self->conns, (void *) (uintptr_t) id);
}

//  Moves conn to the tail of the idle list (newest input).
static void s_idle_touch (s_gateway_t *self, s_conn_t *conn)
{
    if (conn->in_idle) {
        if (conn == self->idle_tail)
            return;
        if (conn->prev)
            conn->prev->next = conn->next;
        else
            self->idle_head = conn->next;
        conn->next->prev = conn->prev;
    }
    conn->prev = self->idle_tail;
    conn->next = NULL;
    if (self->idle_tail)
        self->idle_tail->next = conn;
    else
        self->idle_head = conn;
    self->idle_tail = conn;
    conn->in_idle = true;
}

//  Takes conn off the idle list.
static void s_idle_remove (s_gateway_t *self, s_conn_t *conn)
{
    if (!conn->in_idle)
        return;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        self->idle_head = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    else
        self->idle_tail = conn->prev;
    conn->prev = conn->next = NULL;
    conn->in_idle = false;
}

//  ---------------------------------------------------------------------
//  Output

//  Appends bytes (whole client frames) to conn's output buffer and asks for
//  a writable callback. Past max_pending the connection is a slow consumer:
//  its pending output is dropped and it is closed with 4090.
static void s_conn_write (s_conn_t *conn, const void *data, size_t size)
{
    s_gateway_t *self = conn->gw;
    if (conn->close_code)
        return; //  closing: nothing more goes out but what is queued
    if (conn->out_len + size > self->max_pending) {
        self->slow_consumer_drops++;
        s_warn (self, "connection %" PRIu64 " (%s/%s) cut as slow consumer: %zu bytes pending "
                      "(max_pending %zu)",
                conn->id, conn->app, conn->uid, conn->out_len, self->max_pending);
        conn->out_len = 0;
        zim_wr_reset (&self->fr);
        zim_cframe_error (&self->fr, ZIM_ERR_SLOW_CONSUMER, "slow consumer: reconnect and sync",
                          (zim_str_t){NULL, 0}, false, 0);
        data = self->fr.data;
        size = self->fr.size;
        conn->close_code = ZIM_ERR_SLOW_CONSUMER;
        self->errors_sent++;
    }
    if (conn->out_len + size > conn->out_cap) {
        size_t cap = conn->out_cap ? conn->out_cap : 512;
        while (cap < conn->out_len + size)
            cap *= 2;
        conn->out = (uint8_t *) zim_realloc (conn->out, LWS_PRE + cap);
        conn->out_cap = cap;
    }
    memcpy (conn->out + LWS_PRE + conn->out_len, data, size);
    conn->out_len += size;
    self->frames_out++;
    lws_callback_on_writable (conn->wsi);
}

//  Queues what is in self->fr to conn.
static void s_conn_flush_fr (s_conn_t *conn)
{
    s_conn_write (conn, conn->gw->fr.data, conn->gw->fr.size);
}

//  Queues an error frame to conn; cid/rid name the request if it had one.
static void s_conn_error (s_conn_t *conn, int code, const char *text, zim_str_t cid,
                          bool has_rid, uint64_t rid)
{
    s_gateway_t *self = conn->gw;
    zim_wr_reset (&self->fr);
    zim_cframe_error (&self->fr, code, text, cid, has_rid, rid);
    s_conn_flush_fr (conn);
    self->errors_sent++;
}

//  Queues an error frame, then closes the connection with status code.
static void s_conn_fail (s_conn_t *conn, int code, const char *text, int status)
{
    s_conn_error (conn, code, text, (zim_str_t){NULL, 0}, false, 0);
    if (!conn->close_code)
        conn->close_code = status;
    s_idle_remove (conn->gw, conn);
}

//  Writes conn's pending output as one WebSocket message. Returns -1 when
//  the connection is to close now.
static int s_conn_writable (s_conn_t *conn)
{
    s_gateway_t *self = conn->gw;
    if (conn->out_len) {
        int rc = lws_write (conn->wsi, conn->out + LWS_PRE, conn->out_len, LWS_WRITE_BINARY);
        if (rc < 0)
            return -1;
        self->writes++;
        conn->out_len = 0;
        if (conn->out_cap > 65536) { //  give back what a burst needed
            free (conn->out);
            conn->out = NULL;
            conn->out_cap = 0;
        }
        if (conn->close_code)
            lws_callback_on_writable (conn->wsi); //  close once that went out
        return 0;
    }
    if (conn->close_code) {
        const char *why = zim_strerror (conn->close_code);
        lws_close_reason (conn->wsi, (enum lws_close_status) conn->close_code,
                          (unsigned char *) why, strlen (why));
        return -1;
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  Backbone

//  Which sockets a drain reads (see s_drain).
#define S_DRAIN_PIPE 1
#define S_DRAIN_BROKERS 2
#define S_DRAIN_ROUTERS 4

//  The S_DRAIN_* bit of a socket.
static int s_drain_bit (s_gateway_t *self, zsock_t *sock)
{
    if (sock == self->pipe)
        return S_DRAIN_PIPE;
    for (size_t i = 0; i < self->nrouters; i++)
        if (self->routers[i].sock == sock)
            return S_DRAIN_ROUTERS;
    return S_DRAIN_BROKERS;
}

//  Sends self->wr on sock without blocking. Returns 0 or -1 (queue full or
//  no peer).
static int s_backbone_send (s_gateway_t *self, zsock_t *sock)
{
    self->sent |= s_drain_bit (self, sock);
    return zmq_send (zsock_resolve (sock), self->wr.data, self->wr.size, ZMQ_DONTWAIT) ==
                   (int) self->wr.size
               ? 0
               : -1;
}

//  Sends self->wr to every router.
static void s_to_routers (s_gateway_t *self)
{
    for (size_t i = 0; i < self->nrouters; i++)
        if (s_backbone_send (self, self->routers[i].sock)) {
            self->presence_dropped++;
            s_warn (self, "presence update dropped: router queue full or router unreachable");
        }
}

//  Tells the routers that conn went up or down.
static void s_presence (s_gateway_t *self, s_conn_t *conn, bool up, bool reset)
{
    zim_wr_reset (&self->wr);
    zim_presence_begin (&self->wr, zim_str (self->name), reset, conn ? 1 : 0);
    if (conn) {
        zim_presence_item_t item = {up, conn->id, zim_str (conn->app), zim_str (conn->uid),
                                    zim_str (conn->device)};
        zim_presence_item (&self->wr, &item);
    }
    s_to_routers (self);
}

//  Tells the routers every session this gateway holds, after a reset: what
//  a restarted router needs to have whole routes again.
static void s_presence_announce (s_gateway_t *self)
{
    size_t total = 0, sent = 0;
    for (s_conn_t *c = zhashx_first (self->conns); c; c = zhashx_next (self->conns))
        total += c->authed;
    s_conn_t *conn = zhashx_first (self->conns);
    do {
        uint32_t n = (uint32_t) (total - sent > S_PRESENCE_CHUNK ? S_PRESENCE_CHUNK
                                                                  : total - sent);
        zim_wr_reset (&self->wr);
        zim_presence_begin (&self->wr, zim_str (self->name), sent == 0, n);
        for (uint32_t i = 0; i < n; conn = zhashx_next (self->conns)) {
            if (!conn->authed)
                continue;
            zim_presence_item_t item = {true, conn->id, zim_str (conn->app),
                                        zim_str (conn->uid), zim_str (conn->device)};
            zim_presence_item (&self->wr, &item);
            i++;
        }
        s_to_routers (self);
        sent += n;
    } while (sent < total);
    zsys_info ("%s: announced %zu sessions to the routers", self->name, total);
}

//  The broker owning (app, uid) among the live ones: FNV-1a-64 of
//  "app\0uid" modulo their number. NULL if none is live.
static zsock_t *s_broker_for (s_gateway_t *self, const char *app, const char *uid)
{
    if (self->nlive == 0)
        return NULL;
    uint64_t h = zim_user_hash (zim_str (app), zim_str (uid));
    return self->brokers[self->live[h % self->nlive]].sock;
}

//  Handles one backbone message from a broker (OUT).
static void s_handle_broker_msg (s_gateway_t *self, const void *data, size_t size)
{
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    int kind;
    uint32_t fields;
    zim_out_t out;
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_OUT ||
        zim_out_decode (&rd, fields, &out)) {
        self->bad_messages++;
        s_warn (self, "dropped an undecodable backbone message (%zu bytes)", size);
        return;
    }
    for (uint32_t i = 0; i < out.nconns; i++) {
        uint64_t id;
        if (zim_rd_uint (&out.conns, &id))
            break;
        s_conn_t *conn = s_conn_lookup (self, id);
        if (conn)
            s_conn_write (conn, out.frames.ptr, out.frames.len);
    }
}

//  Reads everything waiting on a backbone socket.
static void s_drain_socket (s_gateway_t *self, zsock_t *sock, bool from_broker)
{
    void *handle = zsock_resolve (sock);
    while (true) {
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, handle, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&msg);
            break;
        }
        if (from_broker)
            s_handle_broker_msg (self, zmq_msg_data (&msg), zmq_msg_size (&msg));
        zmq_msg_close (&msg);
    }
}

static void s_handle_pipe (s_gateway_t *self);

//  Drains the sockets in mask (S_DRAIN_*), then those sent on meanwhile.
//  ZMQ_FD is edge-like: it signals again only once everything was read, and
//  any operation on a socket, a send too, can consume the edge. So a socket
//  is drained when its fd fires (s_callback_zmq) and after a send on it:
//  each empty check costs system calls, so no other socket is checked.
static void s_drain (s_gateway_t *self, int mask)
{
    while (mask && !self->terminated) {
        self->sent = 0;
        while ((mask & S_DRAIN_PIPE) && !self->terminated &&
               (zsock_events (self->pipe) & ZMQ_POLLIN))
            s_handle_pipe (self);
        for (size_t i = 0; (mask & S_DRAIN_BROKERS) && i < self->nbrokers; i++)
            s_drain_socket (self, self->brokers[i].sock, true);
        for (size_t i = 0; (mask & S_DRAIN_ROUTERS) && i < self->nrouters; i++)
            s_drain_socket (self, self->routers[i].sock, false);
        mask = self->sent;
    }
}

//  Drains every socket (the once-a-second safety net, and at start).
static void s_drain_all (s_gateway_t *self)
{
    s_drain (self, S_DRAIN_PIPE | S_DRAIN_BROKERS | S_DRAIN_ROUTERS);
}

//  ---------------------------------------------------------------------
//  Client frames

//  Takes one token bucket token; false if over the send rate.
static bool s_rate_take (s_gateway_t *self, s_conn_t *conn)
{
    int64_t now = (int64_t) zim_now_ms ();
    conn->tokens += (double) (now - conn->refill_ms) * self->send_rate / 1000.0;
    if (conn->tokens > self->send_burst)
        conn->tokens = self->send_burst;
    conn->refill_ms = now;
    if (conn->tokens < 1.0)
        return false;
    conn->tokens -= 1.0;
    return true;
}

//  Verifies token and, if good, authenticates conn as its subject. Returns
//  0 or the wire error code.
static int s_conn_auth (s_conn_t *conn, const char *token, size_t len, const char *device)
{
    s_gateway_t *self = conn->gw;
    char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1];
    int rc = zim_token_verify (token, len, self->apps, zim_now_ms () / 1000, app, uid);
    if (rc) {
        self->auth_failures++;
        return rc;
    }
    strcpy (conn->app, app);
    strcpy (conn->uid, uid);
    if (device && *device)
        snprintf (conn->device, sizeof conn->device, "%s", device);
    conn->authed = true;
    self->authed++;
    zim_wr_reset (&self->fr);
    zim_cframe_auth_ok (&self->fr, zim_str (conn->app), zim_str (conn->uid),
                        zim_str (conn->device));
    s_conn_flush_fr (conn);
    s_presence (self, conn, true, false);
    return 0;
}

//  Fills the session part of a backbone request.
static zim_who_t s_who (s_conn_t *conn)
{
    zim_who_t who = {conn->id, zim_str (conn->app), zim_str (conn->uid), zim_str (conn->device)};
    return who;
}

//  Forwards self->wr to conn's broker; on a full queue answers 5030.
static void s_forward (s_conn_t *conn, zim_str_t cid, bool has_rid, uint64_t rid)
{
    s_gateway_t *self = conn->gw;
    zsock_t *broker = s_broker_for (self, conn->app, conn->uid);
    if (!broker || s_backbone_send (self, broker)) {
        self->unavailable++;
        s_warn (self, "broker queue full or broker unreachable: answered 5030 to %s/%s",
                conn->app, conn->uid);
        s_conn_error (conn, ZIM_ERR_UNAVAILABLE, "broker unavailable, retry", cid, has_rid, rid);
    }
}

//  Handles one decoded frame from conn.
static void s_handle_frame (s_conn_t *conn, zim_cframe_t *f)
{
    s_gateway_t *self = conn->gw;
    zim_str_t nocid = {NULL, 0};
    if (f->op == ZIM_OP_PING) {
        zim_wr_reset (&self->fr);
        zim_cframe_pong (&self->fr, f->has_t ? f->t : nocid);
        s_conn_flush_fr (conn);
        return;
    }
    if (f->op == ZIM_OP_AUTH) {
        if (conn->authed) {
            s_conn_error (conn, ZIM_ERR_ALREADY_AUTHED, "already authenticated", nocid, false, 0);
            return;
        }
        char device[ZIM_ID_MAX + 1] = "";
        if (f->device.ptr)
            zim_str_copy (f->device, device, sizeof device);
        int rc = s_conn_auth (conn, f->token.ptr, f->token.len, device);
        if (rc) {
            s_warn (self, "connection %" PRIu64 ": auth refused (%s)", conn->id,
                    zim_strerror (rc));
            s_conn_error (conn, rc, rc == ZIM_ERR_TOKEN_EXPIRED ? "token expired" : "bad token",
                          nocid, false, 0);
        }
        return;
    }
    if (!conn->authed) {
        s_conn_error (conn, ZIM_ERR_AUTH_REQUIRED, "authenticate first",
                      f->op == ZIM_OP_SEND ? f->cid : nocid, f->has_rid, f->rid);
        return;
    }
    zim_who_t who = s_who (conn);
    zim_wr_reset (&self->wr);
    switch (f->op) {
    case ZIM_OP_SEND: {
        if (f->has_from && !zim_str_eq (f->from, conn->uid)) {
            s_warn (self, "%s/%s tried to send as \"%.*s\": refused (4030)", conn->app, conn->uid,
                    (int) (f->from.len > 64 ? 64 : f->from.len), f->from.ptr);
            s_conn_error (conn, ZIM_ERR_FORBIDDEN, "from names another user", f->cid, false, 0);
            return;
        }
        if (!zim_uid_valid (f->to)) {
            s_conn_error (conn, ZIM_ERR_BAD_RECIPIENT, "to is not a valid user id", f->cid, false,
                          0);
            return;
        }
        if (!s_rate_take (self, conn)) {
            self->rate_limited++;
            s_warn (self, "%s/%s over the send rate (%.0f/s): answered 4029", conn->app,
                    conn->uid, self->send_rate);
            s_conn_error (conn, ZIM_ERR_RATE_LIMITED, "rate limited", f->cid, false, 0);
            return;
        }
        zim_send_t m = {who, f->cid, f->to, f->body};
        zim_send_encode (&self->wr, &m);
        self->sends++;
        s_forward (conn, f->cid, false, 0);
        break;
    }
    case ZIM_OP_SYNC: {
        zim_sync_t m = {who, f->rid, f->since,
                        f->limit > S_SYNC_LIMIT_MAX ? S_SYNC_LIMIT_MAX : f->limit};
        zim_sync_encode (&self->wr, &m);
        s_forward (conn, nocid, f->has_rid, f->rid);
        break;
    }
    case ZIM_OP_HISTORY: {
        if (!zim_uid_valid (f->peer)) {
            s_conn_error (conn, ZIM_ERR_BAD_RECIPIENT, "peer is not a valid user id", nocid,
                          f->has_rid, f->rid);
            return;
        }
        zim_history_t m = {who, f->rid, f->peer, f->before,
                           f->limit > S_SYNC_LIMIT_MAX ? S_SYNC_LIMIT_MAX : f->limit};
        zim_history_encode (&self->wr, &m);
        s_forward (conn, nocid, f->has_rid, f->rid);
        break;
    }
    case ZIM_OP_CURSOR: {
        zim_cursor_t m = {who, f->seq};
        zim_cursor_encode (&self->wr, &m);
        s_forward (conn, nocid, false, 0);
        break;
    }
    default:
        s_conn_error (conn, ZIM_ERR_UNKNOWN_OP, "unknown op", nocid, false, 0);
        break;
    }
}

//  Handles one complete client message: one or more frames back to back.
static void s_handle_message (s_conn_t *conn, const uint8_t *data, size_t size, bool binary)
{
    s_gateway_t *self = conn->gw;
    zim_str_t nocid = {NULL, 0};
    if (!binary) {
        self->bad_frames++;
        s_conn_error (conn, ZIM_ERR_MALFORMED, "text messages are not accepted: send msgpack "
                                               "in binary messages",
                      nocid, false, 0);
        return;
    }
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    while (zim_rd_left (&rd) > 0 && !conn->close_code) {
        zim_cframe_t f;
        const char *why = NULL;
        int rc = zim_cframe_decode (&rd, &f, &why);
        self->frames_in++;
        if (rc == 0) {
            s_handle_frame (conn, &f);
            continue;
        }
        self->bad_frames++;
        s_warn (self, "connection %" PRIu64 " (%s): bad frame: %s (%d)", conn->id,
                conn->authed ? conn->uid : "unauthenticated", why ? why : zim_strerror (rc), rc);
        s_conn_error (conn, rc, why ? why : zim_strerror (rc), f.cid, false, 0);
        if (rc == ZIM_ERR_MALFORMED)
            break; //  cannot find the next frame
    }
}

//  Receives a fragment of a client message; handles it when complete.
static int s_conn_receive (s_conn_t *conn, const void *in, size_t len)
{
    s_gateway_t *self = conn->gw;
    bool final = lws_is_final_fragment (conn->wsi);
    conn->last_rx_ms = (int64_t) zim_now_ms ();
    if (conn->close_code)
        return 0;
    s_idle_touch (self, conn);
    if (conn->rx_len + len > self->max_frame) {
        self->too_large++;
        s_warn (self, "connection %" PRIu64 " (%s): message over max_frame (%zu bytes): closed",
                conn->id, conn->authed ? conn->uid : "unauthenticated", self->max_frame);
        conn->rx_len = 0;
        s_conn_fail (conn, ZIM_ERR_TOO_LARGE, "message too large", LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
        return 0;
    }
    if (final && conn->rx_len == 0) { //  the common case: one fragment
        s_handle_message (conn, (const uint8_t *) in, len, lws_frame_is_binary (conn->wsi));
        return 0;
    }
    if (conn->rx_len + len > conn->rx_cap) {
        size_t cap = conn->rx_cap ? conn->rx_cap : 4096;
        while (cap < conn->rx_len + len)
            cap *= 2;
        conn->rx = (uint8_t *) zim_realloc (conn->rx, cap);
        conn->rx_cap = cap;
    }
    memcpy (conn->rx + conn->rx_len, in, len);
    conn->rx_len += len;
    if (final) {
        s_handle_message (conn, conn->rx, conn->rx_len, lws_frame_is_binary (conn->wsi));
        conn->rx_len = 0;
        if (conn->rx_cap > 65536) {
            free (conn->rx);
            conn->rx = NULL;
            conn->rx_cap = 0;
        }
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  HTTP

//  Finds name=value in the request's query and copies value to buf.
//  Returns buf, or NULL if absent or longer than size - 1.
static const char *s_query_arg (struct lws *wsi, const char *name, char *buf, int size)
{
    char frag[ZIM_TOKEN_MAX + 256];
    size_t nlen = strlen (name);
    for (int n = 0;; n++) {
        //  Fails on a fragment longer than frag: that ends the search.
        int len = lws_hdr_copy_fragment (wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, n);
        if (len < 0)
            return NULL;
        if ((size_t) len >= nlen && memcmp (frag, name, nlen) == 0) {
            if (len - (int) nlen >= size)
                return NULL;
            memcpy (buf, frag + nlen, (size_t) len - nlen + 1);
            return buf;
        }
    }
}

//  Answers a small HTTP response. Returns what the callback should return.
static int s_http_reply (struct lws *wsi, unsigned int status, const char *type, const char *body)
{
    size_t blen = strlen (body);
    uint8_t buf[LWS_PRE + 2048];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers (wsi, status, type, (lws_filepos_t) blen, &p, end) ||
        lws_add_http_header_by_token (wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                      (const unsigned char *) "no-store", 8, &p, end) ||
        lws_finalize_write_http_header (wsi, start, &p, end))
        return -1;
    uint8_t *out = (uint8_t *) zim_malloc (LWS_PRE + blen + 1);
    memcpy (out + LWS_PRE, body, blen);
    int rc = lws_write (wsi, out + LWS_PRE, blen, LWS_WRITE_HTTP_FINAL);
    free (out);
    if (rc < 0)
        return -1;
    return lws_http_transaction_completed (wsi) ? -1 : 0;
}

//  True if the peer of wsi is on the loopback interface.
static bool s_peer_loopback (struct lws *wsi)
{
    char addr[64] = "";
    lws_get_peer_simple (wsi, addr, sizeof addr);
    return strncmp (addr, "127.", 4) == 0 || streq (addr, "::1") ||
           strncmp (addr, "::ffff:127.", 11) == 0;
}

//  GET /dev/token?uid=U: a token for U in the app "demo" (dev mode only).
static int s_http_dev_token (s_gateway_t *self, struct lws *wsi)
{
    const char *secret = (const char *) zhash_lookup (self->apps, "demo");
    if (!self->dev_tokens || !secret || !s_peer_loopback (wsi))
        return s_http_reply (wsi, 404, "text/plain", "not found\n");
    char buf[128];
    const char *uid = s_query_arg (wsi, "uid=", buf, sizeof buf);
    if (!uid || !zim_uid_valid (zim_str (uid)))
        return s_http_reply (wsi, 400, "text/plain",
                             "uid must be 1..64 characters of A-Z a-z 0-9 _ . @ -\n");
    char *token = zim_token_sign (secret, "demo", uid, zim_now_ms () / 1000 + 24 * 3600);
    char body[1024];
    snprintf (body, sizeof body, "{\"app\":\"demo\",\"uid\":\"%s\",\"token\":\"%s\"}", uid,
              token);
    free (token);
    return s_http_reply (wsi, 200, "application/json", body);
}

//  The content type for a file name.
static const char *s_mime (const char *path)
{
    const char *dot = strrchr (path, '.');
    static const char *types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"}};
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (streq (dot, types[i][0]))
                return types[i][1];
    return NULL;
}

//  Serves a file of the www directory, or 404.
static int s_http_file (s_gateway_t *self, struct lws *wsi, const char *uri)
{
    if (!self->www)
        return streq (uri, "/") ? s_http_reply (wsi, 200, "text/plain",
                                                "zim gateway: WebSocket at /ws\n")
                                : s_http_reply (wsi, 404, "text/plain", "not found\n");
    if (streq (uri, "/"))
        uri = "/index.html";
    const char *mime = s_mime (uri);
    //  Plain names only: no "..", no hidden files, no odd characters.
    bool ok = mime && uri[0] == '/' && !strstr (uri, "..") && !strstr (uri, "/.");
    for (const char *s = uri; ok && *s; s++)
        ok = isalnum ((unsigned char) *s) || strchr ("/._-", *s);
    char path[1024];
    struct stat st;
    if (!ok || snprintf (path, sizeof path, "%s%s", self->www, uri) >= (int) sizeof path ||
        stat (path, &st) || !S_ISREG (st.st_mode))
        return s_http_reply (wsi, 404, "text/plain", "not found\n");
    int n = lws_serve_http_file (wsi, path, mime, NULL, 0);
    if (n < 0 || (n > 0 && lws_http_transaction_completed (wsi)))
        return -1;
    return 0;
}

//  Answers a plain HTTP request.
static int s_http (s_gateway_t *self, struct lws *wsi, const char *uri)
{
    self->http_requests++;
    if (lws_hdr_total_length (wsi, WSI_TOKEN_GET_URI) <= 0)
        return s_http_reply (wsi, 405, "text/plain", "only GET\n");
    if (streq (uri, "/healthz"))
        return s_http_reply (wsi, 200, "text/plain", "ok\n");
    if (streq (uri, "/dev/token"))
        return s_http_dev_token (self, wsi);
    if (streq (uri, "/ws"))
        return s_http_reply (wsi, 426, "text/plain", "this is a WebSocket endpoint\n");
    return s_http_file (self, wsi, uri);
}

//  Checks an upgrade request: path /ws, a valid device and token if given.
//  Returns 0 to accept, or 1 after answering an HTTP error.
static int s_confirm_upgrade (s_gateway_t *self, struct lws *wsi)
{
    char uri[256] = "", buf[ZIM_TOKEN_MAX + 16], dbuf[128];
    lws_hdr_copy (wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (!streq (uri, "/ws")) {
        lws_return_http_status (wsi, 404, NULL);
        return 1;
    }
    const char *device = s_query_arg (wsi, "device=", dbuf, sizeof dbuf);
    if (device && !zim_cid_valid (zim_str (device))) {
        s_warn (self, "upgrade refused: bad device name");
        lws_return_http_status (wsi, 400, "device must be 1..64 printable characters");
        return 1;
    }
    const char *token = s_query_arg (wsi, "token=", buf, sizeof buf);
    if (token) {
        int rc = zim_token_verify (token, strlen (token), self->apps, zim_now_ms () / 1000, NULL,
                                   NULL);
        if (rc) {
            self->auth_failures++;
            char addr[64] = "";
            lws_get_peer_simple (wsi, addr, sizeof addr);
            s_warn (self, "upgrade from %s refused with 403: %s", addr, zim_strerror (rc));
            lws_return_http_status (wsi, 403, rc == ZIM_ERR_TOKEN_EXPIRED ? "token expired"
                                                                          : "bad token");
            return 1;
        }
    }
    return 0;
}

//  A WebSocket session began: make its connection, authenticate by the
//  query token if there is one.
static int s_established (s_gateway_t *self, struct lws *wsi, s_pss_t *pss)
{
    s_conn_t *conn = (s_conn_t *) zim_calloc (1, sizeof (s_conn_t));
    conn->id = ++self->next_conn;
    conn->wsi = wsi;
    conn->gw = self;
    conn->tokens = self->send_burst;
    conn->refill_ms = conn->last_rx_ms = (int64_t) zim_now_ms ();
    strcpy (conn->device, "default");
    pss->conn = conn;
    zhashx_insert (self->conns, (void *) (uintptr_t) conn->id, conn);
    s_idle_touch (self, conn);
    self->connections++;
    char buf[ZIM_TOKEN_MAX + 16], dbuf[128];
    const char *device = s_query_arg (wsi, "device=", dbuf, sizeof dbuf);
    if (device && zim_cid_valid (zim_str (device)))
        snprintf (conn->device, sizeof conn->device, "%s", device);
    const char *token = s_query_arg (wsi, "token=", buf, sizeof buf);
    if (token && s_conn_auth (conn, token, strlen (token), NULL)) {
        //  It was good at the upgrade: it expired in between.
        s_conn_fail (conn, ZIM_ERR_TOKEN_EXPIRED, "token expired", 4012);
    }
    return 0;
}

//  A session ended: forget it.
static void s_closed (s_gateway_t *self, s_pss_t *pss)
{
    s_conn_t *conn = pss->conn;
    if (!conn)
        return;
    pss->conn = NULL;
    if (conn->authed) {
        s_presence (self, conn, false, false);
        self->authed--;
    }
    s_idle_remove (self, conn);
    zhashx_delete (self->conns, (void *) (uintptr_t) conn->id);
    self->connections--;
    free (conn->out);
    free (conn->rx);
    free (conn);
}

//  Drains the sockets sent on since their last drain (see s_drain).
static void s_drain_sent (s_gateway_t *self)
{
    if (self->sent)
        s_drain (self, self->sent);
}

static int s_callback_ws (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    s_gateway_t *self = (s_gateway_t *) lws_context_user (lws_get_context (wsi));
    s_pss_t *pss = (s_pss_t *) user;
    int rc = 0;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return s_confirm_upgrade (self, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        rc = s_established (self, wsi, pss);
        break;
    case LWS_CALLBACK_RECEIVE:
        if (pss->conn)
            rc = s_conn_receive (pss->conn, in, len);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (pss->conn)
            rc = s_conn_writable (pss->conn);
        break;
    case LWS_CALLBACK_CLOSED:
        s_closed (self, pss);
        break;
    case LWS_CALLBACK_HTTP:
        return s_http (self, wsi, (const char *) in);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return lws_http_transaction_completed (wsi) ? -1 : 0;
    default:
        return lws_callback_http_dummy (wsi, reason, user, in, len);
    }
    //  Whatever a client did may have sent on the backbone, which can
    //  consume the ZMQ_FD edge: look for input now.
    s_drain_sent (self);
    return rc;
}

static int s_callback_zmq (struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len)
{
    s_gateway_t *self = (s_gateway_t *) lws_context_user (lws_get_context (wsi));
    if (reason == LWS_CALLBACK_RAW_RX_FILE && self) {
        zsock_t *sock = (zsock_t *) lws_get_opaque_user_data (wsi);
        s_drain (self, sock ? s_drain_bit (self, sock) | self->sent
                            : S_DRAIN_PIPE | S_DRAIN_BROKERS | S_DRAIN_ROUTERS);
    }
    return 0;
}

//  Every second: close connections idle for idle_timeout.
static void s_tick (lws_sorted_usec_list_t *sul)
{
    s_gateway_t *self = lws_container_of (sul, s_gateway_t, tick);
    int64_t now = (int64_t) zim_now_ms ();
    while (self->idle_timeout_s && self->idle_head &&
           now - self->idle_head->last_rx_ms >= (int64_t) self->idle_timeout_s * 1000) {
        s_conn_t *conn = self->idle_head;
        self->idle_closed++;
        s_conn_fail (conn, ZIM_ERR_IDLE_TIMEOUT, "idle timeout: nothing received", 4080);
    }
    s_drain_all (self);
    lws_sul_schedule (self->ctx, 0, &self->tick, s_tick, LWS_US_PER_SEC);
}

//  ---------------------------------------------------------------------
//  The actor

//  Builds the STATS JSON. Caller owns return value.
static char *s_stats (s_gateway_t *self)
{
    return zsys_sprintf (
        "{\"connections\":%" PRIu64 ",\"authed\":%" PRIu64 ",\"frames_in\":%" PRIu64
        ",\"frames_out\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"sends\":%" PRIu64
        ",\"errors_sent\":%" PRIu64 ",\"bad_frames\":%" PRIu64 ",\"rate_limited\":%" PRIu64
        ",\"idle_closed\":%" PRIu64 ",\"slow_consumer_drops\":%" PRIu64
        ",\"auth_failures\":%" PRIu64 ",\"too_large\":%" PRIu64 ",\"unavailable\":%" PRIu64
        ",\"bad_messages\":%" PRIu64 ",\"presence_dropped\":%" PRIu64
        ",\"http_requests\":%" PRIu64 ",\"brokers\":%zu}",
        self->connections, self->authed, self->frames_in, self->frames_out, self->writes,
        self->sends, self->errors_sent, self->bad_frames, self->rate_limited, self->idle_closed,
        self->slow_consumer_drops, self->auth_failures, self->too_large, self->unavailable,
        self->bad_messages, self->presence_dropped, self->http_requests, self->nlive);
}

//  Parses a SET value as an unsigned number; logs and returns -1 if bad.
static int s_set_u64 (s_gateway_t *self, const char *key, const char *value, uint64_t *out)
{
    if (value && zim_parse_u64 (value, out) == 0)
        return 0;
    zsys_error ("%s: SET %s: \"%s\" is not a non-negative integer", self->name, key,
                value ? value : "");
    return -1;
}

//  Adopts a ZeroMQ socket's descriptor into the event loop. lws gets a
//  dup of it, since it closes what it adopted when it ends.
static int s_adopt (s_gateway_t *self, zsock_t *sock)
{
    lws_sock_file_fd_type fd;
    fd.filefd = (lws_filefd_type) dup (zsock_fd (sock));
    if (fd.filefd < 0)
        return -1;
    struct lws *wsi =
        lws_adopt_descriptor_vhost (self->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "zim-zmq", NULL);
    if (wsi) {
        lws_set_opaque_user_data (wsi, sock); //  which socket its events are for
        return 0;
    }
    close (fd.filefd);
    return -1;
}

//  Starts listening. Returns 0 or -1.
static int s_start (s_gateway_t *self)
{
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = self;
    info.count_threads = 1;
    info.fd_limit_per_thread = 0;
    self->ctx = lws_create_context (&info);
    if (!self->ctx) {
        zsys_error ("%s: cannot create the libwebsockets context", self->name);
        return -1;
    }
    memset (&info, 0, sizeof info);
    info.port = self->port; //  0: an ephemeral port
    info.iface = self->iface;
    info.protocols = s_protocols;
    info.vhost_name = "zim";
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = self;
    info.keepalive_timeout = 5;
    info.timeout_secs = 20;
    memset (&self->retry, 0, sizeof self->retry);
    if (self->ping_interval_s) {
        self->retry.secs_since_valid_ping = (uint16_t) self->ping_interval_s;
        self->retry.secs_since_valid_hangup = (uint16_t) (self->ping_interval_s * 2 + 10);
        info.retry_and_idle_policy = &self->retry;
    }
    self->vhost = lws_create_vhost (self->ctx, &info);
    if (!self->vhost) {
        zsys_error ("%s: cannot listen on %s:%d (port in use or address not local)", self->name,
                    self->iface ? self->iface : "*", info.port);
        return -1;
    }
    self->port = lws_get_vhost_listen_port (self->vhost);
    bool adopted = s_adopt (self, self->pipe) == 0;
    for (size_t i = 0; i < self->nrouters; i++)
        adopted &= s_adopt (self, self->routers[i].sock) == 0;
    for (size_t i = 0; i < self->nbrokers; i++)
        adopted &= s_adopt (self, self->brokers[i].sock) == 0;
    if (!adopted) {
        zsys_error ("%s: cannot adopt the ZeroMQ sockets into the event loop", self->name);
        return -1;
    }
    //  The router forgets whatever an earlier run of this gateway had.
    s_presence (self, NULL, false, true);
    lws_sul_schedule (self->ctx, 0, &self->tick, s_tick, LWS_US_PER_SEC);
    self->started = true;
    zsys_info ("%s: listening on %s:%d (WebSocket /ws), %zu broker(s)%s%s", self->name,
               self->iface ? self->iface : "*", self->port, self->nlive,
               self->www ? ", files from " : "", self->www ? self->www : "");
    return 0;
}

//  Makes a DEALER with our routing id connected to endpoint. A broker's
//  has ZMQ_IMMEDIATE: while it is down, sends fail at once (5030) rather
//  than wait in a queue for a broker that may never return.
static zsock_t *s_dealer (s_gateway_t *self, const char *endpoint, bool immediate)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (immediate)
        zsock_set_immediate (sock, 1);
    zsock_set_identity (sock, self->name);
    zsock_set_linger (sock, 0);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    if (zsock_connect (sock, "%s", endpoint)) {
        zsys_error ("%s: cannot connect to %s", self->name, endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

//  Adds a broker and its DEALER (adopted into the loop if running).
static s_broker_t *s_broker_add (s_gateway_t *self, const char *name, const char *endpoint)
{
    if (self->nbrokers == S_MAX_BROKERS) {
        s_warn (self, "more than %d brokers: %s ignored", S_MAX_BROKERS, name);
        return NULL;
    }
    zsock_t *sock = s_dealer (self, endpoint, true);
    if (!sock)
        return NULL;
    if (self->started && s_adopt (self, sock)) {
        zsys_error ("%s: cannot adopt the socket to broker %s", self->name, name);
        zsock_destroy (&sock);
        return NULL;
    }
    s_broker_t *broker = &self->brokers[self->nbrokers++];
    broker->name = zim_strdup (name);
    broker->endpoint = zim_strdup (endpoint);
    broker->sock = sock;
    return broker;
}

static int s_live_cmp (const void *a, const void *b, void *arg)
{
    s_gateway_t *self = (s_gateway_t *) arg;
    return strcmp (self->brokers[*(const size_t *) a].name,
                   self->brokers[*(const size_t *) b].name);
}

//  Rebuilds the sorted list of live brokers.
static void s_broker_relist (s_gateway_t *self)
{
    self->nlive = 0;
    for (size_t i = 0; i < self->nbrokers; i++)
        if (self->brokers[i].live)
            self->live[self->nlive++] = i;
    qsort_r (self->live, self->nlive, sizeof (size_t), s_live_cmp, self);
}

//  A cluster map: live brokers to send to; a restarted router gets every
//  session again.
static void s_handle_map (s_gateway_t *self, zframe_t *frame)
{
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    zim_map_t map;
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_decode (&rd, fields, &map)) {
        self->bad_messages++;
        s_warn (self, "dropped an undecodable MAP");
        return;
    }
    //  The router it came from.
    int64_t now = zclock_mono ();
    s_mapsrc_t *src = NULL;
    for (size_t r = 0; r < self->nmaps && !src; r++)
        if (zim_str_eq (map.router, self->maps[r].name))
            src = &self->maps[r];
    if (!src && self->nmaps < S_MAX_ROUTERS) {
        src = &self->maps[self->nmaps++];
        src->name = zim_calloc (1, map.router.len + 1);
        memcpy (src->name, map.router.ptr, map.router.len);
        src->instance = map.instance;
        src->since_ms = now;
    }
    if (!src) {
        s_warn (self, "maps from more than %d routers: one ignored", S_MAX_ROUTERS);
        return;
    }
    bool restarted = src->instance != map.instance;
    if (restarted) {
        src->instance = map.instance;
        src->since_ms = now;
    }
    src->map_ms = now;
    bool seen[S_MAX_BROKERS] = {false};
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t m;
        if (zim_member_next (&map.members, &m)) {
            self->bad_messages++;
            s_warn (self, "dropped an undecodable MAP");
            return;
        }
        if (!zim_str_eq (m.role, "broker") || !m.alive)
            continue;
        char name[ZIM_ID_MAX + 1], endpoint[300];
        zim_str_copy (m.name, name, sizeof name);
        zim_str_copy (m.endpoint, endpoint, sizeof endpoint);
        s_broker_t *broker = NULL;
        for (size_t b = 0; b < self->nbrokers; b++)
            if (streq (self->brokers[b].name, name) && streq (self->brokers[b].endpoint, endpoint))
                broker = &self->brokers[b];
        if (!broker) {
            broker = s_broker_add (self, name, endpoint);
            if (!broker)
                continue;
            zsys_info ("%s: broker %s at %s", self->name, name, endpoint);
        }
        seen[broker - self->brokers] = true;
    }
    bool young = now - src->since_ms < S_MAP_YOUNG_MS;
    for (size_t b = 0; b < self->nbrokers; b++)
        src->seen[b] = seen[b] || (young && src->seen[b]);
    bool changed = false;
    for (size_t b = 0; b < self->nbrokers; b++) {
        //  Configured with CONNECT broker (name = endpoint): always live.
        bool live = streq (self->brokers[b].name, self->brokers[b].endpoint);
        for (size_t r = 0; r < self->nmaps && !live; r++)
            live = self->maps[r].seen[b] && now - self->maps[r].map_ms < S_MAP_STALE_MS;
        if (live != self->brokers[b].live) {
            changed = true;
            self->brokers[b].live = live;
            zsys_info ("%s: broker %s is %s", self->name, self->brokers[b].name,
                       live ? "live" : "gone: its senders move to the others");
        }
    }
    if (changed)
        s_broker_relist (self);
    //  A router that restarted lost every route: announce them all again.
    if (restarted) {
        zsys_info ("%s: router %s restarted: announcing every session again", self->name,
                   src->name);
        s_presence_announce (self);
    }
}

//  Handles one command from the pipe.
static void s_handle_pipe (s_gateway_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;
        return;
    }
    char *cmd = zmsg_popstr (msg);
    if (cmd && streq (cmd, "MAP")) {
        //  Its one frame is a binary MAP message, not a string.
        zframe_t *frame = zmsg_pop (msg);
        if (frame)
            s_handle_map (self, frame);
        zframe_destroy (&frame);
        free (cmd);
        zmsg_destroy (&msg);
        return;
    }
    char *a = zmsg_popstr (msg);
    char *b = zmsg_popstr (msg);
    char *c = zmsg_popstr (msg);
    uint64_t v;
    if (!cmd)
        ;
    else if (streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "SET") && a) {
        if (streq (a, "name")) {
            free (self->name);
            self->name = zim_strdup (b ? b : "gw-1");
        }
        else if (streq (a, "port") && !s_set_u64 (self, a, b, &v) && v < 65536)
            self->port = (int) v;
        else if (streq (a, "interface")) {
            free (self->iface);
            self->iface = b && *b && !streq (b, "*") ? zim_strdup (b) : NULL;
        }
        else if (streq (a, "www")) {
            free (self->www);
            self->www = b && *b ? zim_strdup (b) : NULL;
        }
        else if (streq (a, "dev_tokens"))
            self->dev_tokens = b && streq (b, "1");
        else if (streq (a, "max_frame") && !s_set_u64 (self, a, b, &v) && v >= 256)
            self->max_frame = v;
        else if (streq (a, "idle_timeout") && !s_set_u64 (self, a, b, &v))
            self->idle_timeout_s = v;
        else if (streq (a, "ping_interval") && !s_set_u64 (self, a, b, &v) && v < 30000)
            self->ping_interval_s = v;
        else if (streq (a, "send_rate") && !s_set_u64 (self, a, b, &v) && v > 0)
            self->send_rate = (double) v;
        else if (streq (a, "send_burst") && !s_set_u64 (self, a, b, &v) && v > 0)
            self->send_burst = (double) v;
        else if (streq (a, "max_pending") && !s_set_u64 (self, a, b, &v) && v >= 4096)
            self->max_pending = v;
        else if (streq (a, "app") && b && c && zim_uid_valid (zim_str (b)) && *c)
            zhash_update (self->apps, b, c); //  autofree copies
        else
            zsys_error ("%s: SET %s: unknown key or bad value (ignored)", self->name, a);
    }
    else if (streq (cmd, "CONNECT") && a && b) {
        int rc = 1;
        if (streq (a, "broker") && self->nbrokers < S_MAX_BROKERS && !self->started) {
            s_broker_t *broker = s_broker_add (self, b, b);
            if (broker) {
                broker->live = true;
                s_broker_relist (self);
                rc = 0;
            }
        }
        else if (streq (a, "router") && self->nrouters < S_MAX_ROUTERS && !self->started) {
            zsock_t *sock = s_dealer (self, b, false);
            if (sock) {
                self->routers[self->nrouters++].sock = sock;
                rc = 0;
            }
        }
        else
            zsys_error ("%s: CONNECT %s: unknown role, too many, or already started", self->name,
                        a);
        zsock_signal (self->pipe, (byte) rc);
    }
    else if (streq (cmd, "START"))
        zsock_signal (self->pipe, self->started ? 0 : (s_start (self) ? 1 : 0));
    else if (streq (cmd, "PORT"))
        zstr_sendf (self->pipe, "%d", self->port);
    else if (streq (cmd, "STATS")) {
        char *stats = s_stats (self);
        zstr_send (self->pipe, stats);
        zstr_free (&stats);
    }
    else
        zsys_error ("%s: unknown command %s", self->name, cmd);
    free (cmd);
    free (a);
    free (b);
    free (c);
    zmsg_destroy (&msg);
}

//  Closes every connection with 1001 (going away), giving them a moment.
static void s_shutdown (s_gateway_t *self)
{
    if (!self->ctx)
        return;
    for (s_conn_t *conn = (s_conn_t *) zhashx_first (self->conns); conn;
         conn = (s_conn_t *) zhashx_next (self->conns)) {
        conn->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
        lws_callback_on_writable (conn->wsi);
    }
    int64_t until = (int64_t) zim_now_ms () + 500;
    while (zhashx_size (self->conns) && (int64_t) zim_now_ms () < until)
        lws_service (self->ctx, 50);
}

void zim_gateway_actor (zsock_t *pipe, void *args)
{
    s_gateway_t *self = (s_gateway_t *) zim_calloc (1, sizeof (s_gateway_t));
    self->pipe = pipe;
    self->name = zim_strdup ("gw-1");
    self->port = 7700;
    self->max_frame = 65536;
    self->idle_timeout_s = 90;
    self->ping_interval_s = 30;
    self->send_rate = 1000;
    self->send_burst = 20000;
    self->max_pending = 1048576;
    self->apps = zhash_new ();
    zhash_autofree (self->apps);
    self->conns = zhashx_new ();
    zhashx_set_key_hasher (self->conns, s_conn_hash);
    zhashx_set_key_comparator (self->conns, s_conn_cmp);
    zhashx_set_key_duplicator (self->conns, NULL);
    zhashx_set_key_destructor (self->conns, NULL);
    zim_wr_init (&self->wr);
    zim_wr_init (&self->fr);
    lws_set_log_level (LLL_ERR, NULL);
    zsock_signal (pipe, 0);

    //  Until START, commands come one by one on the pipe.
    while (!self->terminated && !self->started)
        s_handle_pipe (self);
    s_drain_all (self);
    while (!self->terminated) {
        s_drain_sent (self);
        if (!self->terminated && lws_service (self->ctx, 0) < 0)
            break;
    }
    s_shutdown (self);
    if (self->ctx) {
        lws_sul_cancel (&self->tick);
        lws_context_destroy (self->ctx);
    }
    for (size_t i = 0; i < self->nbrokers; i++) {
        zsock_destroy (&self->brokers[i].sock);
        free (self->brokers[i].name);
        free (self->brokers[i].endpoint);
    }
    for (size_t i = 0; i < self->nmaps; i++)
        free (self->maps[i].name);
    for (size_t i = 0; i < self->nrouters; i++)
        zsock_destroy (&self->routers[i].sock);
    zhashx_destroy (&self->conns);
    zhash_destroy (&self->apps);
    zim_wr_free (&self->wr);
    zim_wr_free (&self->fr);
    free (self->name);
    free (self->iface);
    free (self->www);
    free (self);
}

//  ---------------------------------------------------------------------
//  Selftest: a real gateway with a DEALER-playing broker (a ROUTER) and a
//  raw WebSocket client over TCP.

#include "tests/zim_rawws.h"

//  Decodes op (and code, if any) of the first frame in a client message.
static char *s_test_recv_op_buf (const char *data, size_t len, int *code)
{
    char *op = NULL;
    zim_rd_t rd;
    zim_rd_init (&rd, data, len);
    uint32_t n;
    if (zim_rd_map (&rd, &n) == 0)
        for (uint32_t i = 0; i < n; i++) {
            zim_str_t key, val;
            if (zim_rd_str (&rd, &key))
                break;
            if (zim_str_eq (key, "op") && zim_rd_str (&rd, &val) == 0)
                op = zim_str_dup (val);
            else if (zim_str_eq (key, "code") && code) {
                uint64_t c;
                if (zim_rd_uint (&rd, &c) == 0)
                    *code = (int) c;
            }
            else if (zim_rd_skip (&rd, NULL))
                break;
        }
    return op;
}

//  Receives one client message from ws and decodes its first frame op.
static char *s_test_recv_op (zim_rawws_t *ws, int *code)
{
    int opcode;
    char *data = NULL;
    size_t len;
    if (zim_rawws_recv (ws, 5000, &opcode, &data, &len) != 0)
        return NULL;
    char *op = opcode == ZIM_WS_BINARY ? s_test_recv_op_buf (data, len, code) : NULL;
    free (data);
    return op ? op : zim_strdup (opcode == ZIM_WS_CLOSE ? "close" : "?");
}

//  Selftest: sends the gateway a MAP from router (instance, version)
//  listing member, or no one.
static void s_test_map (zactor_t *gw, const char *router, uint64_t instance, uint64_t version,
                        const zim_member_t *member)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_map_begin (&wr, zim_str (router), instance, version, member ? 1 : 0);
    if (member)
        zim_member (&wr, member);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "MAP");
    zmsg_addmem (msg, wr.data, wr.size);
    zmsg_send (&msg, gw);
    zim_wr_free (&wr);
}

void zim_gateway_test (bool verbose)
{
    printf (" * zim_gateway: ");
    zsock_t *broker = zsock_new (ZMQ_ROUTER);
    int bport = zsock_bind (broker, "tcp://127.0.0.1:*");
    assert (bport > 0);
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int rport = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (rport > 0);
    char *secret = zim_token_secret_new ();

    zactor_t *gw = zactor_new (zim_gateway_actor, NULL);
    zstr_sendx (gw, "SET", "name", "gw-test", NULL);
    zstr_sendx (gw, "SET", "port", "0", NULL);
    zstr_sendx (gw, "SET", "interface", "127.0.0.1", NULL);
    zstr_sendx (gw, "SET", "max_frame", "1024", NULL);
    zstr_sendx (gw, "SET", "idle_timeout", "3", NULL);
    zstr_sendx (gw, "SET", "ping_interval", "1", NULL);
    zstr_sendx (gw, "SET", "max_pending", "65536", NULL);
    zstr_sendx (gw, "SET", "app", "demo", secret, NULL);
    char ep[64];
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", bport);
    zstr_sendx (gw, "CONNECT", "broker", ep, NULL);
    assert (zsock_wait (gw) == 0);
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", rport);
    zstr_sendx (gw, "CONNECT", "router", ep, NULL);
    assert (zsock_wait (gw) == 0);
    zstr_sendx (gw, "START", NULL);
    assert (zsock_wait (gw) == 0);
    zstr_sendx (gw, "PORT", NULL);
    char *port_s = zstr_recv (gw);
    int port = atoi (port_s);
    assert (port > 0);
    zstr_free (&port_s);

    //  The router first hears a reset.
    zmsg_t *msg = zmsg_recv (router);
    assert (msg && zmsg_size (msg) == 2);
    zmsg_destroy (&msg);

    //  A first (empty) map from router-1: its instance is new, so for
    //  S_MAP_YOUNG_MS its maps may add brokers but not remove them.
    s_test_map (gw, "router-1", 1, 1, NULL);
    int64_t first_map_ms = zclock_mono ();

    //  A bad token is refused at the upgrade.
    int status = 0;
    assert (zim_rawws_connect ("127.0.0.1", port, "/ws?token=nope", &status) == NULL);
    assert (status == 403);

    //  A good one: auth_ok, then PRESENCE up at the router.
    char *token = zim_token_sign (secret, "demo", "alice", zim_now_ms () / 1000 + 60);
    char path[2048];
    snprintf (path, sizeof path, "/ws?token=%s&device=phone", token);
    zim_rawws_t *ws = zim_rawws_connect ("127.0.0.1", port, path, &status);
    assert (ws);
    char *op = s_test_recv_op (ws, NULL);
    assert (op && streq (op, "auth_ok"));
    zstr_free (&op);
    msg = zmsg_recv (router);
    assert (msg);
    zframe_t *body = zmsg_last (msg);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    int kind;
    uint32_t fields;
    zim_presence_t pres;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PRESENCE);
    assert (zim_presence_decode (&rd, fields, &pres) == 0 && pres.nitems == 1);
    zim_presence_item_t item;
    assert (zim_presence_item_next (&pres.items, &item) == 0);
    if (verbose)
        fprintf (stderr, "presence up=%d uid=%.*s device=%.*s ", item.up, (int) item.uid.len, item.uid.ptr,
                (int) item.device.len, item.device.ptr);
    assert (item.up && zim_str_eq (item.uid, "alice") && zim_str_eq (item.device, "phone"));
    uint64_t conn_id = item.conn;
    zmsg_destroy (&msg);

    //  A send reaches the broker as SEND with the token's identity.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "bob");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "c1");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "hi");
    assert (zim_rawws_send (ws, ZIM_WS_BINARY, wr.data, wr.size) == 0);
    msg = zmsg_recv (broker);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *gwid = zmsg_pop (msg);
    assert (zframe_streq (gwid, "gw-test"));
    body = zmsg_first (msg);
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    zim_send_t send;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_SEND);
    assert (zim_send_decode (&rd, fields, &send) == 0);
    assert (zim_str_eq (send.who.uid, "alice") && zim_str_eq (send.to, "bob"));
    assert (send.who.conn == conn_id);
    zmsg_destroy (&msg);

    //  OUT from the broker: two frames in one message, written as one.
    zim_wr_t fr;
    zim_wr_init (&fr);
    zim_cframe_ack (&fr, zim_str ("c1"), 7, 1, 1000);
    zim_cframe_pong (&fr, (zim_str_t){NULL, 0});
    zim_wr_reset (&wr);
    zim_out_encode (&wr, &conn_id, 1, (zim_str_t){(const char *) fr.data, fr.size});
    msg = zmsg_new ();
    zmsg_append (msg, &gwid);
    zmsg_addmem (msg, wr.data, wr.size);
    zmsg_send (&msg, broker);
    int opcode;
    char *data;
    size_t len;
    assert (zim_rawws_recv (ws, 5000, &opcode, &data, &len) == 0);
    assert (opcode == ZIM_WS_BINARY && len == fr.size && memcmp (data, fr.data, len) == 0);
    free (data);

    //  A client that stops reading is cut as a slow consumer (4090) once
    //  more than max_pending waits for it, beyond what the kernel buffers.
    zim_wr_reset (&fr);
    char chunk[8000];
    memset (chunk, 'x', sizeof chunk);
    zim_wr_bin (&fr, (zim_str_t){chunk, sizeof chunk});
    for (int i = 0; i < 3000; i++) {
        zim_wr_reset (&wr);
        zim_out_encode (&wr, &conn_id, 1, (zim_str_t){(const char *) fr.data, fr.size});
        msg = zmsg_new ();
        zmsg_addstr (msg, "gw-test");
        zmsg_addmem (msg, wr.data, wr.size);
        zmsg_send (&msg, broker);
    }
    int code = 0;
    bool cut = false;
    while (!cut && zim_rawws_recv (ws, 5000, &opcode, &data, &len) == 0) {
        zim_rd_t frd;
        zim_rd_init (&frd, data, len);
        while (zim_rd_left (&frd) > 0) {
            if (zim_rd_peek (&frd) == ZIM_MP_MAP) {
                cut = true;
                break;
            }
            assert (zim_rd_skip (&frd, NULL) == 0);
        }
        if (cut) {
            //  The error frame comes alone, after the last full write.
            op = s_test_recv_op_buf (data, len, &code);
            assert (op && streq (op, "error") && code == ZIM_ERR_SLOW_CONSUMER);
            zstr_free (&op);
        }
        free (data);
    }
    assert (cut);
    op = s_test_recv_op (ws, NULL);
    assert (op && streq (op, "close"));
    zstr_free (&op);
    assert (zim_rawws_close_status (ws) == ZIM_ERR_SLOW_CONSUMER);
    zim_rawws_destroy (&ws);
    msg = zmsg_recv (router); //  PRESENCE down
    assert (msg);
    zmsg_destroy (&msg);

    //  Oversized: 4002, then closed with 1009.
    ws = zim_rawws_connect ("127.0.0.1", port, path, &status);
    assert (ws);
    op = s_test_recv_op (ws, NULL);
    assert (op && streq (op, "auth_ok"));
    zstr_free (&op);
    msg = zmsg_recv (router); //  PRESENCE up
    assert (msg);
    zmsg_destroy (&msg);
    char big[2000];
    memset (big, 0, sizeof big);
    assert (zim_rawws_send (ws, ZIM_WS_BINARY, big, sizeof big) == 0);
    code = 0;
    op = s_test_recv_op (ws, &code);
    assert (op && streq (op, "error") && code == ZIM_ERR_TOO_LARGE);
    zstr_free (&op);
    op = s_test_recv_op (ws, NULL);
    assert (op && streq (op, "close"));
    zstr_free (&op);
    assert (zim_rawws_close_status (ws) == 1009);
    zim_rawws_destroy (&ws);
    //  ... and the router hears it went down.
    msg = zmsg_recv (router);
    assert (msg);
    zmsg_destroy (&msg);

    //  Idle: an unauthenticated connection is closed with 4080.
    ws = zim_rawws_connect ("127.0.0.1", port, "/ws", &status);
    assert (ws);
    code = 0;
    op = s_test_recv_op (ws, &code);
    assert (op && streq (op, "error") && code == ZIM_ERR_IDLE_TIMEOUT);
    zstr_free (&op);
    op = s_test_recv_op (ws, NULL);
    assert (op && streq (op, "close"));
    zstr_free (&op);
    assert (zim_rawws_close_status (ws) == 4080);
    assert (zim_rawws_pings (ws) >= 1); //  WebSocket pings every second
    zim_rawws_destroy (&ws);

    //  A map adds its live brokers (the CONNECTed one stays) ...
    if (zclock_mono () - first_map_ms < S_MAP_YOUNG_MS + 100)
        zclock_sleep ((int) (S_MAP_YOUNG_MS + 100 - (zclock_mono () - first_map_ms)));
    zim_member_t member = {zim_str ("broker-9"), zim_str ("broker"), zim_str ("tcp://127.0.0.1:9"),
                           1, zim_str (""), true, 0, zim_str ("{}")};
    s_test_map (gw, "router-1", 1, 2, &member);
    zstr_sendx (gw, "STATS", NULL);
    char *stats = zstr_recv (gw);
    assert (stats && strstr (stats, "\"brokers\":2"));
    zstr_free (&stats);

    //  ... a second router whose map does not list it does not remove
    //  it: a broker is live while any router lists it ...
    s_test_map (gw, "router-2", 7, 1, NULL);
    zstr_sendx (gw, "STATS", NULL);
    stats = zstr_recv (gw);
    assert (stats && strstr (stats, "\"brokers\":2"));
    zstr_free (&stats);

    //  ... and once the old router's map drops it, it is gone (router-2
    //  never listed it).
    s_test_map (gw, "router-1", 1, 3, NULL);

    zstr_sendx (gw, "STATS", NULL);
    stats = zstr_recv (gw);
    assert (stats && strstr (stats, "\"too_large\":1") && strstr (stats, "\"idle_closed\":1"));
    assert (strstr (stats, "\"brokers\":1"));
    if (verbose)
        printf ("%s ", stats);
    zstr_free (&stats);

    zim_wr_free (&wr);
    zim_wr_free (&fr);
    free (token);
    free (secret);
    zactor_destroy (&gw);
    zsock_destroy (&broker);
    zsock_destroy (&router);
    printf ("OK\n");
}
