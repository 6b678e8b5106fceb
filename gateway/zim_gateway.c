/*  zim_gateway.c: the gateway actor's loop. One thread runs a libuv loop:
    libwebsockets serves the clients on it (a foreign loop, epoll through
    libuv instead of lws's own poll()), zim_uvzmq watches the actor pipe
    and the ZeroMQ sockets to the brokers and routers, and one uv_timer_t
    drives every deadline of every connection (zim_sessions' queues: auth,
    idle, PINGs) and the links' once-a-second tick. libwebsockets keeps no
    timer per connection (the vhost's validity policy is all zeros).
    This file owns only the loop: the context and callbacks, reading the
    ZeroMQ sockets, the timer, start and shutdown. What happens to a
    client frame, a broker answer or a map is in the classes
    zim_gateway.h lists.
*/
#include "gateway/zim_gateway.h"
#include "gateway/zim_edge.h"
#include "gateway/zim_frames.h"
#include "gateway/zim_http.h"
#include "gateway/zim_links.h"
#include "gateway/zim_listener.h"
#include "gateway/zim_rooms.h"
#include "gateway/zim_sessions.h"
#include "gateway/zim_tcp.h"
#include "gateway/zim_uvzmq.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <uv.h> //  before libwebsockets.h: its libuv glue needs the types
#include <libwebsockets.h>
#include <unistd.h>

//  libwebsockets' receive buffer per connection. Client messages longer
//  than this arrive in fragments, which zim_session reassembles up to
//  max_frame; most client frames (sends, acks, pings) fit in one.
#define S_RX_BUFFER 512
//  Connections in their HTTP handshake at once (each holds a header
//  table of about 5 KB plus max_http_header_data until it upgrades); more
//  wait to be accepted.
#define S_HEADER_POOL 256
//  Largest single send() of one connection's output (lws otherwise caps
//  it at the receive buffer size).
#define S_TX_PACKET 65536
//  Messages read from one backbone socket before the loop looks at its
//  clients again (zim_uvzmq comes back while more is waiting).
#define S_BATCH 256
//  How long $TERM waits for connections to take their 1001 close.
#define S_SHUTDOWN_MS 500

//  The loop's state.
typedef struct {
    zim_edge_t *edge;           //  settings, counters, sessions, links
    uv_loop_t loop;             //  the loop
    zim_uvzmq_t *uz;            //  the pipe and the backbone sockets on it
    zim_listener_t *shared;     //  reuse_port: our own listening socket, or NULL
    uv_timer_t timer;           //  deadlines, PINGs, the links' tick
    uv_prepare_t flush;         //  end of each loop turn: the sessions' output
    struct lws_context *ctx;    //  libwebsockets context on loop
    struct lws_vhost *vhost;    //  the listening vhost
    struct lws_vhost *tls;      //  the WSS vhost beside it (tls_port), or NULL
    zim_listener_t *shared_tls; //  reuse_port: the WSS port's listening socket, or NULL
    zim_tcp_t *tcp;             //  raw TCP clients (tcp_port), or NULL
    lws_retry_bo_t retry;       //  all zero: no lws validity timer per connection
    int64_t tick_ms;            //  when the links' next tick is due
    int64_t stop_ms;            //  $TERM: when to stop waiting for closes
    bool stopping;              //  $TERM came: connections are closing
    bool stopped;               //  the context is being destroyed
} s_loop_t;

//  What libwebsockets keeps per connection: a pointer to ours.
typedef struct {
    zim_session_t *session;
} s_pss_t;

static int s_callback_ws (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len);

static const struct lws_protocols s_protocols[] = {
    {"zim", s_callback_ws, sizeof (s_pss_t), S_RX_BUFFER, 0, NULL, S_TX_PACKET},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void s_arm (s_loop_t *self);
static void s_stop_begin (s_loop_t *self);

//  ---------------------------------------------------------------------
//  Backbone sockets on the loop

//  Tells zim_uvzmq which sockets were sent on since the last call: a send
//  can swallow the ZMQ_FD signal, so their ZMQ_EVENTS is read again.
static void s_kick_sent (s_loop_t *self)
{
    zim_links_t *links = self->edge->links;
    int sent = zim_links_take_sent (links);
    for (size_t i = 0; (sent & ZIM_LINKS_BROKERS) && i < zim_links_brokers (links); i++)
        zim_uvzmq_kick (self->uz, zim_links_broker (links, i));
    for (size_t i = 0; (sent & ZIM_LINKS_ROUTERS) && i < zim_links_routers (links); i++)
        zim_uvzmq_kick (self->uz, zim_links_router (links, i));
}

//  Whether sock is one of the routers' sockets (what they send is live
//  traffic: room messages, room counts, signals).
static bool s_is_router (s_loop_t *self, zsock_t *sock)
{
    zim_links_t *links = self->edge->links;
    for (size_t i = 0; i < zim_links_routers (links); i++)
        if (zim_links_router (links, i) == sock)
            return true;
    return false;
}

//  zim_uvzmq's reader: one pipe command, or a batch of backbone messages.
static void s_read (void *arg, zsock_t *sock)
{
    s_loop_t *self = (s_loop_t *)arg;
    zim_edge_t *edge = self->edge;
    zim_shell_t *shell = edge->shell;
    if (sock == zim_shell_pipe (shell)) {
        if (!zim_shell_terminated (shell))
            zim_shell_handle (shell);
        if (zim_shell_terminated (shell))
            s_stop_begin (self);
    } else {
        bool from_broker = !s_is_router (self, sock);
        void *handle = zsock_resolve (sock);
        for (int n = 0; n < S_BATCH; n++) {
            zmq_msg_t msg;
            zmq_msg_init (&msg);
            if (zmq_msg_recv (&msg, handle, ZMQ_DONTWAIT) == -1) {
                zmq_msg_close (&msg);
                break;
            }
            if (from_broker && !zim_rooms_is_ctl (zmq_msg_data (&msg), zmq_msg_size (&msg)))
                zim_frames_out (edge, zmq_msg_data (&msg), zmq_msg_size (&msg));
            else //  room messages, counts and signals (zim_rooms); a broker's
                 //  CONN_CTL: a channel reader's connection joins its room
                zim_rooms_backbone (edge, zmq_msg_data (&msg), zmq_msg_size (&msg));
            zmq_msg_close (&msg);
        }
    }
    s_kick_sent (self);
}

//  A broker socket made after START (a map named a new broker).
static void s_on_socket (void *arg, zsock_t *sock)
{
    s_loop_t *self = (s_loop_t *)arg;
    if (zim_uvzmq_watch (self->uz, sock))
        zsys_error ("%s: cannot watch a new broker socket", zim_shell_name (self->edge->shell));
}

//  ---------------------------------------------------------------------
//  Client connections

//  A connection accepted on the shared port (reuse_port): lws takes it as
//  if its own listener had.
static void s_on_accept (void *arg, int fd)
{
    s_loop_t *self = (s_loop_t *)arg;
    if (self->stopping)
        close (fd);
    else if (!lws_adopt_socket_vhost (self->vhost, fd))
        zsys_warning ("%s: cannot adopt an accepted connection",
                      zim_shell_name (self->edge->shell)); //  lws closed it
}

//  The same for the WSS port (lws does the TLS handshake).
static void s_on_accept_tls (void *arg, int fd)
{
    s_loop_t *self = (s_loop_t *)arg;
    if (self->stopping)
        close (fd);
    else if (!lws_adopt_socket_vhost (self->tls, fd))
        zsys_warning ("%s: cannot adopt an accepted WSS connection",
                      zim_shell_name (self->edge->shell)); //  lws closed it
}

//  After raw TCP input or a closed raw TCP session: it may have sent.
static void s_tcp_kick (void *arg)
{
    s_kick_sent ((s_loop_t *)arg);
}

//  A WebSocket session began: make its session; authenticate it by the
//  query token if there is one (it passed the upgrade check, but may have
//  expired since, or be one connection too many for its user).
static void s_established (s_loop_t *self, struct lws *wsi, s_pss_t *pss)
{
    zim_edge_t *edge = self->edge;
    zim_session_t *session = zim_sessions_open (edge->sessions, wsi);
    pss->session = session;
    char buf[ZIM_TOKEN_MAX + 16], dbuf[128];
    const char *device = zim_http_query_arg (wsi, "device=", dbuf, sizeof dbuf);
    if (device && zim_cid_valid (zim_str (device)))
        zim_session_set_device (session, device);
    const char *token = zim_http_query_arg (wsi, "token=", buf, sizeof buf);
    if (token) {
        int rc = zim_frames_auth (edge, session, token, strlen (token), NULL);
        if (rc)
            zim_session_fail (session, rc, zim_strerror (rc), rc);
    }
    if (self->stopping)
        zim_session_close (session, LWS_CLOSE_STATUS_GOINGAWAY);
}

//  A fragment of a client message (the receive buffer is S_RX_BUFFER
//  bytes): the whole message is handled once it is complete.
static int s_receive (s_loop_t *self, struct lws *wsi, zim_session_t *session, const void *in,
                      size_t len)
{
    zim_edge_t *edge = self->edge;
    zim_sessions_touch (edge->sessions, session);
    const uint8_t *msg;
    size_t size;
    if (zim_session_receive (session, in, len, lws_is_final_fragment (wsi), &msg, &size) == 1)
        zim_frames_message (edge, session, msg, size, lws_frame_is_binary (wsi));
    return 0;
}

static int s_callback_ws (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    s_loop_t *self = (s_loop_t *)lws_context_user (lws_get_context (wsi));
    if (!self)
        return lws_callback_http_dummy (wsi, reason, user, in, len);
    zim_edge_t *edge = self->edge;
    s_pss_t *pss = (s_pss_t *)user;
    int rc = 0;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return zim_http_confirm_upgrade (edge, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        s_established (self, wsi, pss);
        break;
    case LWS_CALLBACK_RECEIVE:
        if (pss->session)
            rc = s_receive (self, wsi, pss->session, in, len);
        break;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss->session)
            zim_session_heard (pss->session, zim_edge_now_ms ());
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (pss->session)
            rc = zim_session_writable (pss->session);
        break;
    case LWS_CALLBACK_CLOSED:
        zim_sessions_close (edge->sessions, &pss->session);
        break;
    case LWS_CALLBACK_HTTP:
        return zim_http_request (edge, wsi, (const char *)in);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return lws_http_transaction_completed (wsi) ? -1 : 0;
    default:
        return lws_callback_http_dummy (wsi, reason, user, in, len);
    }
    //  Whatever a client did may have sent on the backbone.
    s_kick_sent (self);
    return rc;
}

//  ---------------------------------------------------------------------
//  The timer and shutdown

//  Ends the loop: every handle closes, so uv_run returns (then the actor
//  destroys the context a second time, as a foreign loop requires).
static void s_stop_finish (s_loop_t *self)
{
    self->stopped = true;
    if (self->shared)
        zim_listener_close (self->shared);
    if (self->shared_tls)
        zim_listener_close (self->shared_tls);
    if (self->tcp)
        zim_tcp_close (self->tcp);
    uv_timer_stop (&self->timer);
    uv_close ((uv_handle_t *)&self->timer, NULL);
    uv_prepare_stop (&self->flush);
    uv_close ((uv_handle_t *)&self->flush, NULL);
    zim_uvzmq_close (self->uz);
    lws_context_destroy (self->ctx);
}

//  The one timer: sessions past a deadline, PINGs due, the links' tick,
//  the end of a shutdown.
static void s_on_timer (uv_timer_t *handle)
{
    s_loop_t *self = (s_loop_t *)handle->data;
    int64_t now = zim_edge_now_ms ();
    if (now >= self->tick_ms) {
        zim_links_tick (self->edge->links, now);
        zim_rooms_tick (self->edge);
        self->tick_ms = now + 1000;
        zim_uvzmq_kick (self->uz, NULL); //  a safety net, once a second
    }
    zim_sessions_sweep (self->edge->sessions, now);
    s_kick_sent (self);
    if (self->stopping && (now >= self->stop_ms || zim_sessions_size (self->edge->sessions) == 0))
        s_stop_finish (self);
    else
        s_arm (self);
}

//  Before the loop polls again, after everything this turn ran (timers,
//  lws's callbacks, the backbone reads of zim_uvzmq's check and prepare):
//  every session that queued output writes it, one message each, straight
//  to its socket (zim_session_flush_all).
static void s_on_flush (uv_prepare_t *handle)
{
    s_loop_t *self = (s_loop_t *)handle->data;
    zim_session_flush_all (self->edge);
}

//  Sets the timer for the first of: a session's deadline or PING, the
//  links' tick, a look at how a shutdown goes (every 20 ms).
static void s_arm (s_loop_t *self)
{
    int64_t due = zim_sessions_next_due (self->edge->sessions);
    if (self->tick_ms < due)
        due = self->tick_ms;
    int64_t now = zim_edge_now_ms ();
    if (self->stopping && now + 20 < due)
        due = now + 20;
    uv_timer_start (&self->timer, s_on_timer, due > now ? (uint64_t)(due - now) : 0, 0);
}

//  $TERM: every connection closes with 1001 (going away); the timer ends
//  the loop once they are gone or after S_SHUTDOWN_MS.
static void s_stop_begin (s_loop_t *self)
{
    if (self->stopping)
        return;
    self->stopping = true;
    self->stop_ms = zim_edge_now_ms () + S_SHUTDOWN_MS;
    if (self->tcp)
        zim_tcp_stop_accepting (self->tcp);
    zim_sessions_t *sessions = self->edge->sessions;
    for (zim_session_t *s = zim_sessions_first (sessions); s; s = zim_sessions_next (sessions))
        zim_session_close (s, LWS_CLOSE_STATUS_GOINGAWAY);
    s_arm (self);
}

//  ---------------------------------------------------------------------
//  The actor

//  Destroys a context on the loop that is not running: the first call
//  starts closing lws's handles, the loop runs their close callbacks,
//  the second call frees it.
static void s_destroy_context (s_loop_t *self)
{
    lws_context_destroy (self->ctx);
    while (uv_run (&self->loop, UV_RUN_NOWAIT))
        ;
    lws_context_destroy (self->ctx);
    self->ctx = NULL;
    self->vhost = NULL;
    self->tls = NULL;
}

//  Closes the listeners START made before it failed, runs the loop until
//  their handles are gone, and frees them with the context.
static void s_start_undo (s_loop_t *self)
{
    if (self->shared)
        zim_listener_close (self->shared);
    if (self->shared_tls)
        zim_listener_close (self->shared_tls);
    if (self->tcp)
        zim_tcp_close (self->tcp);
    s_destroy_context (self); //  runs the loop
    zim_listener_destroy (&self->shared);
    zim_listener_destroy (&self->shared_tls);
    zim_tcp_destroy (&self->tcp);
}

//  Creates a listening vhost on port (CONTEXT_PORT_NO_LISTEN_SERVER when
//  a zim_listener accepts for it), with TLS if tls. NULL if it cannot.
static struct lws_vhost *s_vhost (s_loop_t *self, const char *name, int port, bool tls)
{
    zim_edge_t *edge = self->edge;
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.port = port;
    info.iface = edge->iface;
    info.protocols = s_protocols;
    info.vhost_name = name;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = self;
    info.keepalive_timeout = 5;
    info.timeout_secs = 20;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = edge->tls_cert;
        info.ssl_private_key_filepath = edge->tls_key;
    }
    //  No validity timer per connection (a sorted list, O(n) to insert):
    //  PINGs and hang-ups are zim_sessions' heartbeat queue.
    info.retry_and_idle_policy = &self->retry;
    return lws_create_vhost (self->ctx, &info);
}

//  START: listen, watch the sockets, tell the routers to forget what an
//  earlier run of this gateway had. Returns 0 or -1 (logged).
static int s_start (void *arg)
{
    zim_edge_t *edge = (zim_edge_t *)arg;
    s_loop_t *self = (s_loop_t *)edge->loop;
    const char *name = zim_shell_name (edge->shell);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6 |
                   LWS_SERVER_OPTION_LIBUV;
    void *foreign_loops[] = {&self->loop};
    info.foreign_loops = foreign_loops;
    info.user = self;
    info.count_threads = 1;
    info.fd_limit_per_thread = 0; //  the process limit (never less: lookups turn linear)
    //  A token in the query can be ZIM_TOKEN_MAX bytes.
    info.max_http_header_data = 2 * ZIM_TOKEN_MAX;
    info.max_http_header_pool = S_HEADER_POOL;
    if (!edge->tls_cert != !edge->tls_key) {
        zsys_error ("%s: tls_cert and tls_key go together: set both or neither", name);
        return -1;
    }
    if (edge->tls_cert)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    self->ctx = lws_create_context (&info);
    if (!self->ctx) {
        zsys_error ("%s: cannot create the libwebsockets context (libuv plugin missing?)", name);
        return -1;
    }
    //  TLS: on a port of its own beside the plain one (tls_port), or on
    //  the client port itself.
    bool tls = edge->tls_cert != NULL;
    bool tls_beside = tls && edge->tls_port >= 0;
    memset (&self->retry, 0, sizeof self->retry);
    self->vhost = s_vhost (self, "zim",
                           edge->reuse_port ? CONTEXT_PORT_NO_LISTEN_SERVER
                                            : (int)edge->port, //  0: ephemeral
                           tls && !tls_beside);
    if (self->vhost && edge->reuse_port) //  zim_listener accepts, the vhost adopts
        self->shared =
            zim_listener_new (&self->loop, edge->iface, (int)edge->port, s_on_accept, self);
    if (!self->vhost || (edge->reuse_port && !self->shared)) {
        zsys_error ("%s: cannot listen on %s:%d (port in use, address not local, or the TLS "
                    "certificate or key not readable)",
                    name, edge->iface ? edge->iface : "*", (int)edge->port);
        s_start_undo (self);
        return -1;
    }
    if (tls_beside) {
        self->tls =
            s_vhost (self, "zim-tls",
                     edge->reuse_port ? CONTEXT_PORT_NO_LISTEN_SERVER : (int)edge->tls_port, true);
        if (self->tls && edge->reuse_port)
            self->shared_tls = zim_listener_new (&self->loop, edge->iface, (int)edge->tls_port,
                                                 s_on_accept_tls, self);
        if (!self->tls || (edge->reuse_port && !self->shared_tls)) {
            zsys_error ("%s: cannot listen for WSS on %s:%d (port in use, address not local, or "
                        "the TLS certificate or key not readable)",
                        name, edge->iface ? edge->iface : "*", (int)edge->tls_port);
            s_start_undo (self);
            return -1;
        }
    }
    if (edge->tcp_port >= 0) {
        self->tcp = zim_tcp_new (edge, &self->loop, edge->iface, (int)edge->tcp_port,
                                 edge->reuse_port, s_tcp_kick, self);
        if (!self->tcp) {
            zsys_error ("%s: cannot listen for raw TCP on %s:%d (port in use or address not "
                        "local)",
                        name, edge->iface ? edge->iface : "*", (int)edge->tcp_port);
            s_start_undo (self);
            return -1;
        }
    }
    //  Started before zim_uvzmq's prepare handle so that it runs after it
    //  (libuv runs the handles of a phase newest first): the backbone
    //  messages read there are written in the same turn.
    uv_prepare_init (&self->loop, &self->flush);
    self->flush.data = self;
    uv_prepare_start (&self->flush, s_on_flush);
    self->uz = zim_uvzmq_new (&self->loop, s_read, self);
    bool watched = zim_uvzmq_watch (self->uz, zim_shell_pipe (edge->shell)) == 0;
    for (size_t i = 0; watched && i < zim_links_routers (edge->links); i++)
        watched = zim_uvzmq_watch (self->uz, zim_links_router (edge->links, i)) == 0;
    for (size_t i = 0; watched && i < zim_links_brokers (edge->links); i++)
        watched = zim_uvzmq_watch (self->uz, zim_links_broker (edge->links, i)) == 0;
    if (!watched) {
        zsys_error ("%s: cannot watch the ZeroMQ sockets on the loop", name);
        uv_close ((uv_handle_t *)&self->flush, NULL);
        zim_uvzmq_close (self->uz);
        s_start_undo (self);
        zim_uvzmq_destroy (&self->uz);
        return -1;
    }
    uv_timer_init (&self->loop, &self->timer);
    self->timer.data = self;
    self->tick_ms = zim_edge_now_ms () + 1000;
    s_arm (self);
    edge->port = self->shared ? (uint64_t)zim_listener_port (self->shared)
                              : (uint64_t)lws_get_vhost_listen_port (self->vhost);
    zim_shell_set_port (edge->shell, (int)edge->port);
    if (self->tls)
        edge->tls_port = self->shared_tls ? (int64_t)zim_listener_port (self->shared_tls)
                                          : (int64_t)lws_get_vhost_listen_port (self->tls);
    if (self->tcp)
        edge->tcp_port = zim_tcp_port (self->tcp);
    zim_links_on_socket (edge->links, s_on_socket, self);
    zim_links_reset (edge->links);
    char extra[128] = "";
    if (self->tls)
        snprintf (extra, sizeof extra, ", WSS on %d", (int)edge->tls_port);
    if (self->tcp)
        snprintf (extra + strlen (extra), sizeof extra - strlen (extra), ", raw TCP on %d",
                  (int)edge->tcp_port);
    zsys_info ("%s: listening on %s:%d (%s /ws%s), %zu broker(s)%s%s", name,
               edge->iface ? edge->iface : "*", (int)edge->port,
               tls && !tls_beside ? "WSS" : "WebSocket", extra, zim_links_live (edge->links),
               edge->www ? ", files from " : "", edge->www ? edge->www : "");
    return 0;
}

static int s_connect (void *arg, const char *role, const char *endpoint)
{
    return zim_links_connect (((zim_edge_t *)arg)->links, role, endpoint);
}

static void s_map (void *arg, zframe_t *frame)
{
    zim_links_map (((zim_edge_t *)arg)->links, frame);
}

static void s_stats (void *arg, json_t *stats)
{
    zim_edge_t *edge = (zim_edge_t *)arg;
    json_object_set_new (stats, "brokers", json_integer ((json_int_t)zim_links_live (edge->links)));
    if (edge->tcp_port >= 0)
        json_object_set_new (stats, "tcp_port", json_integer ((json_int_t)edge->tcp_port));
    if (edge->tls_cert && edge->tls_port >= 0)
        json_object_set_new (stats, "tls_port", json_integer ((json_int_t)edge->tls_port));
}

static const zim_shell_class_t s_class = {
    .role = "gateway",
    .settings = zim_edge_settings,
    .counters = zim_edge_counters,
    .gauges = zim_edge_gauges,
    .connect = s_connect,
    .start = s_start,
    .stats = s_stats,
    .map = s_map,
};

void zim_gateway_actor (zsock_t *pipe, void *args)
{
    (void)args;
    s_loop_t self;
    memset (&self, 0, sizeof self);
    int rc = uv_loop_init (&self.loop);
    assert (rc == 0);
    zim_edge_t *edge = zim_edge_new (pipe, &s_class);
    edge->loop = &self;
    self.edge = edge;
    zim_shell_t *shell = edge->shell;
    lws_set_log_level (LLL_ERR, NULL);
    zsock_signal (pipe, 0);

    //  Until START, commands come one by one on the pipe.
    while (!zim_shell_started (shell) && zim_shell_handle (shell) == 0)
        ;
    if (zim_shell_started (shell)) {
        //  Runs until $TERM: s_stop_finish closes every handle.
        uv_run (&self.loop, UV_RUN_DEFAULT);
        lws_context_destroy (self.ctx);
        zim_uvzmq_destroy (&self.uz);
        zim_listener_destroy (&self.shared);
        zim_listener_destroy (&self.shared_tls);
        zim_tcp_destroy (&self.tcp);
    }
    rc = uv_loop_close (&self.loop);
    if (rc)
        zsys_error ("%s: the loop still had handles at exit", zim_shell_name (shell));
    zim_edge_destroy (&edge);
}
//  ---------------------------------------------------------------------
//  Selftest: a real gateway with a ROUTER playing the broker, another
//  playing the router, and raw WebSocket and HTTP clients over TCP.

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
                    *code = (int)c;
            } else if (zim_rd_skip (&rd, NULL))
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

//  Expects op (with code, if not 0) as the next message on ws.
static void s_test_expect (zim_rawws_t *ws, const char *op, int code)
{
    int got = 0;
    char *actual = s_test_recv_op (ws, &got);
    assert (actual && streq (actual, op) && (!code || got == code));
    zstr_free (&actual);
}

//  Sends the gateway a MAP from router (instance, version) listing member,
//  or no one.
static void s_test_map (zactor_t *gw, const char *router, uint64_t instance, uint64_t version,
                        const zim_member_t *member)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_map_begin (&wr, zim_str (router), instance, version, member ? 1 : 0);
    if (member)
        zim_member_pack (&wr, member);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "MAP");
    zmsg_addmem (msg, wr.data, wr.size);
    zmsg_send (&msg, gw);
    zim_wr_free (&wr);
}

//  GET path with extra headers; returns the status.
static int s_test_http (int port, const char *path, const char *headers)
{
    return zim_rawws_http_get ("127.0.0.1", port, path, headers, NULL, 0);
}

//  Asks STATS for one counter.
static long s_test_stat (zactor_t *gw, const char *name)
{
    zstr_sendx (gw, "STATS", NULL);
    char *text = zstr_recv (gw);
    json_t *stats = json_loads (text, 0, NULL);
    assert (stats);
    long v = (long)json_integer_value (json_object_get (stats, name));
    json_decref (stats);
    zstr_free (&text);
    return v;
}

void zim_gateway_test (bool verbose)
{
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
    zstr_sendx (gw, "SET", "auth_timeout", "2", NULL);
    zstr_sendx (gw, "SET", "ping_interval", "1", NULL);
    zstr_sendx (gw, "SET", "max_pending", "65536", NULL);
    zstr_sendx (gw, "SET", "dev_tokens", "1", NULL);
    zstr_sendx (gw, "SET", "app_secret", "demo", secret, NULL);
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

    //  A first (empty) map from router-1: its instance is new, so for a
    //  moment its maps may add brokers but not remove them.
    s_test_map (gw, "router-1", 1, 1, NULL);
    int64_t first_map_ms = zclock_mono ();

    //  HTTP: health, dev tokens (not through a proxy), 404.
    assert (s_test_http (port, "/healthz", NULL) == 200);
    assert (s_test_http (port, "/dev/token?uid=dan", NULL) == 200);
    assert (s_test_http (port, "/dev/token?uid=dan", "X-Forwarded-For: 10.1.1.1\r\n") == 404);
    assert (s_test_http (port, "/dev/token?uid=dan", "Forwarded: for=10.1.1.1\r\n") == 404);
    assert (s_test_http (port, "/dev/token?uid=dan", "X-Real-IP: 10.1.1.1\r\n") == 404);
    assert (s_test_http (port, "/nothing.html", NULL) == 404);
    assert (s_test_stat (gw, "dev_tokens_served") == 1 &&
            s_test_stat (gw, "dev_tokens_refused") == 3);

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
    s_test_expect (ws, "auth_ok", 0);
    msg = zmsg_recv (router);
    assert (msg);
    zframe_t *body = zmsg_last (msg);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    int kind;
    uint32_t fields;
    zim_presence_t pres;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PRESENCE);
    assert (zim_presence_unpack (&rd, fields, &pres) == 0 && pres.nitems == 1);
    zim_presence_item_t item;
    assert (zim_presence_item_unpack (&pres.items, &item) == 0);
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
    assert (zim_send_unpack (&rd, fields, &send) == 0);
    assert (zim_str_eq (send.who.uid, "alice") && zim_str_eq (send.to, "bob"));
    assert (send.who.conn == conn_id);
    zmsg_destroy (&msg);

    //  OUT from the broker: two frames in one message, written as one.
    zim_wr_t fr;
    zim_wr_init (&fr);
    zim_cframe_ack (&fr, zim_str ("c1"), 7, 1, 1000);
    zim_cframe_pong (&fr, (zim_str_t){NULL, 0});
    zim_wr_reset (&wr);
    zim_out_encode (&wr, &conn_id, 1, (zim_str_t){(const char *)fr.data, fr.size});
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
        zim_out_encode (&wr, &conn_id, 1, (zim_str_t){(const char *)fr.data, fr.size});
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
            char *op = s_test_recv_op_buf (data, len, &code);
            assert (op && streq (op, "error") && code == ZIM_ERR_SLOW_CONSUMER);
            zstr_free (&op);
        }
        free (data);
    }
    assert (cut);
    s_test_expect (ws, "close", 0);
    assert (zim_rawws_close_status (ws) == ZIM_ERR_SLOW_CONSUMER);
    zim_rawws_destroy (&ws);
    msg = zmsg_recv (router); //  PRESENCE down
    assert (msg);
    zmsg_destroy (&msg);

    //  Oversized: 4002, then closed with 1009.
    ws = zim_rawws_connect ("127.0.0.1", port, path, &status);
    assert (ws);
    s_test_expect (ws, "auth_ok", 0);
    msg = zmsg_recv (router); //  PRESENCE up
    assert (msg);
    zmsg_destroy (&msg);
    char big[2000];
    memset (big, 0, sizeof big);
    assert (zim_rawws_send (ws, ZIM_WS_BINARY, big, sizeof big) == 0);
    s_test_expect (ws, "error", ZIM_ERR_TOO_LARGE);
    s_test_expect (ws, "close", 0);
    assert (zim_rawws_close_status (ws) == 1009);
    zim_rawws_destroy (&ws);
    msg = zmsg_recv (router); //  ... and the router hears it went down
    assert (msg);
    zmsg_destroy (&msg);

    //  Deadlines, at once: a connection that never authenticates is closed
    //  after auth_timeout (2 s) with 4014, although it pings; a quiet
    //  authenticated one after idle_timeout (3 s) with 4080.
    zim_rawws_t *unauth = zim_rawws_connect ("127.0.0.1", port, "/ws", &status);
    ws = zim_rawws_connect ("127.0.0.1", port, path, &status);
    assert (unauth && ws);
    s_test_expect (ws, "auth_ok", 0);
    assert (zim_rawws_send (unauth, ZIM_WS_BINARY, "\x81\xa2op\xa4ping", 9) == 0);
    s_test_expect (unauth, "pong", 0);
    s_test_expect (unauth, "error", ZIM_ERR_AUTH_TIMEOUT);
    s_test_expect (unauth, "close", 0);
    assert (zim_rawws_close_status (unauth) == ZIM_ERR_AUTH_TIMEOUT);
    s_test_expect (ws, "error", ZIM_ERR_IDLE_TIMEOUT);
    s_test_expect (ws, "close", 0);
    assert (zim_rawws_close_status (ws) == ZIM_ERR_IDLE_TIMEOUT);
    assert (zim_rawws_pings (ws) >= 1); //  WebSocket pings every second
    zim_rawws_destroy (&ws);
    zim_rawws_destroy (&unauth);
    zmsg_t *up = zmsg_recv (router), *down = zmsg_recv (router);
    zmsg_destroy (&up);
    zmsg_destroy (&down);

    //  A map adds its live brokers (the CONNECTed one stays) ...
    if (zclock_mono () - first_map_ms < 2600)
        zclock_sleep ((int)(2600 - (zclock_mono () - first_map_ms)));
    zim_member_t member = {zim_str ("broker-9"),
                           zim_str ("broker"),
                           zim_str ("tcp://127.0.0.1:9"),
                           1,
                           zim_str (""),
                           true,
                           0,
                           zim_str ("{}")};
    s_test_map (gw, "router-1", 1, 2, &member);
    assert (s_test_stat (gw, "brokers") == 2);
    //  ... a second router whose map does not list it does not remove it:
    //  a broker is live while any router lists it ...
    s_test_map (gw, "router-2", 7, 1, NULL);
    assert (s_test_stat (gw, "brokers") == 2);
    //  ... and once the old router's map drops it, it is gone (router-2
    //  never listed it).
    s_test_map (gw, "router-1", 1, 3, NULL);
    assert (s_test_stat (gw, "brokers") == 1);
    assert (s_test_stat (gw, "too_large") == 1 && s_test_stat (gw, "idle_closed") == 1);
    assert (s_test_stat (gw, "auth_timeouts") == 1 && s_test_stat (gw, "token_malformed") == 1);
    if (verbose) {
        zstr_sendx (gw, "STATS", NULL);
        char *stats = zstr_recv (gw);
        zsys_info ("gateway: %s", stats);
        zstr_free (&stats);
    }

    zim_wr_free (&wr);
    zim_wr_free (&fr);
    free (token);
    free (secret);
    zactor_destroy (&gw);
    zsock_destroy (&broker);
    zsock_destroy (&router);
}
