/*  zim_gateway.c: the gateway actor's loop. One thread runs the
    libwebsockets event loop; the actor pipe and the ZeroMQ sockets to the
    brokers and routers are adopted into it as raw file descriptors
    (ZMQ_FD), so one poll() serves clients and backbone alike. This file
    owns only the loop: the libwebsockets context and callbacks, draining
    the ZeroMQ sockets, the once-a-second tick, start and shutdown.
    What happens to a client frame, a broker answer or a map is in the
    classes zim_gateway.h lists.
*/
#include "gateway/zim_gateway.h"
#include "gateway/zim_edge.h"
#include "gateway/zim_frames.h"
#include "gateway/zim_http.h"
#include "gateway/zim_links.h"
#include "gateway/zim_sessions.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <libwebsockets.h>
#include <unistd.h>

//  Which sockets a drain reads (ZIM_LINKS_BROKERS and _ROUTERS too).
#define S_DRAIN_PIPE 1
#define S_DRAIN_ALL (S_DRAIN_PIPE | ZIM_LINKS_BROKERS | ZIM_LINKS_ROUTERS)

//  The loop's state.
typedef struct {
    zim_edge_t *edge;            //  settings, counters, sessions, links
    struct lws_context *ctx;     //  libwebsockets context
    struct lws_vhost *vhost;     //  the listening vhost
    lws_retry_bo_t retry;        //  WebSocket ping policy
    lws_sorted_usec_list_t tick; //  1 s timer: deadlines, safety-net drain
} s_loop_t;

//  What libwebsockets keeps per connection: a pointer to ours.
typedef struct {
    zim_session_t *session;
} s_pss_t;

static int s_callback_ws (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len);
static int s_callback_zmq (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len);

static const struct lws_protocols s_protocols[] = {
    {"zim", s_callback_ws, sizeof (s_pss_t), 65536, 0, NULL, 0},
    {"zim-zmq", s_callback_zmq, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

//  ---------------------------------------------------------------------
//  Backbone sockets in the loop

//  Reads everything waiting on a backbone socket.
static void s_drain_socket (zim_edge_t *edge, zsock_t *sock, bool from_broker)
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
            zim_frames_out (edge, zmq_msg_data (&msg), zmq_msg_size (&msg));
        zmq_msg_close (&msg);
    }
}

//  Drains the sockets in mask (S_DRAIN_PIPE, ZIM_LINKS_*), then those sent
//  on meanwhile. ZMQ_FD is edge-like: it signals again only once everything
//  was read, and any operation on a socket, a send too, can consume the
//  edge. So a socket is drained when its fd fires (s_callback_zmq) and
//  after a send on it: each empty check costs system calls, so no other
//  socket is checked.
static void s_drain (s_loop_t *self, int mask)
{
    zim_edge_t *edge = self->edge;
    zim_shell_t *shell = edge->shell;
    while (mask && !zim_shell_terminated (shell)) {
        while ((mask & S_DRAIN_PIPE) && !zim_shell_terminated (shell) &&
               (zsock_events (zim_shell_pipe (shell)) & ZMQ_POLLIN))
            zim_shell_handle (shell);
        for (size_t i = 0; (mask & ZIM_LINKS_BROKERS) && i < zim_links_brokers (edge->links); i++)
            s_drain_socket (edge, zim_links_broker (edge->links, i), true);
        for (size_t i = 0; (mask & ZIM_LINKS_ROUTERS) && i < zim_links_routers (edge->links); i++)
            s_drain_socket (edge, zim_links_router (edge->links, i), false);
        mask = zim_links_take_sent (edge->links);
    }
}

//  Drains the sockets sent on since their last drain.
static void s_drain_sent (s_loop_t *self)
{
    int sent = zim_links_take_sent (self->edge->links);
    if (sent)
        s_drain (self, sent);
}

//  The S_DRAIN_* / ZIM_LINKS_* bit of a socket.
static int s_drain_bit (s_loop_t *self, zsock_t *sock)
{
    zim_links_t *links = self->edge->links;
    if (sock == zim_shell_pipe (self->edge->shell))
        return S_DRAIN_PIPE;
    for (size_t i = 0; i < zim_links_routers (links); i++)
        if (zim_links_router (links, i) == sock)
            return ZIM_LINKS_ROUTERS;
    return ZIM_LINKS_BROKERS;
}

//  Adopts a ZeroMQ socket's descriptor into the event loop. lws gets a
//  dup of it, since it closes what it adopted when it ends.
static int s_adopt (s_loop_t *self, zsock_t *sock)
{
    lws_sock_file_fd_type fd;
    fd.filefd = (lws_filefd_type)dup (zsock_fd (sock));
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

//  A broker socket made after START (a map named a new broker).
static void s_on_socket (void *arg, zsock_t *sock)
{
    s_loop_t *self = (s_loop_t *)arg;
    if (s_adopt (self, sock))
        zsys_error ("%s: cannot watch a new broker socket", zim_shell_name (self->edge->shell));
}

static int s_callback_zmq (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    s_loop_t *self = (s_loop_t *)lws_context_user (lws_get_context (wsi));
    if (reason == LWS_CALLBACK_RAW_RX_FILE && self) {
        zsock_t *sock = (zsock_t *)lws_get_opaque_user_data (wsi);
        s_drain (self, (sock ? s_drain_bit (self, sock) : S_DRAIN_ALL) |
                           zim_links_take_sent (self->edge->links));
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  Client connections

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
}

//  A fragment of a client message: the whole message is handled once it
//  is complete.
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
    //  Whatever a client did may have sent on the backbone, which can
    //  consume the ZMQ_FD edge: look for input now.
    s_drain_sent (self);
    return rc;
}

//  Every second: close what is past its deadline, drain every socket.
static void s_tick (lws_sorted_usec_list_t *sul)
{
    s_loop_t *self = lws_container_of (sul, s_loop_t, tick);
    int64_t now = zim_edge_now_ms ();
    zim_links_tick (self->edge->links, now);
    zim_sessions_sweep (self->edge->sessions, now);
    s_drain (self, S_DRAIN_ALL);
    lws_sul_schedule (self->ctx, 0, &self->tick, s_tick, LWS_US_PER_SEC);
}

//  ---------------------------------------------------------------------
//  The actor

//  START: listen, adopt the sockets, tell the routers to forget what an
//  earlier run of this gateway had. Returns 0 or -1 (logged).
static int s_start (void *arg)
{
    zim_edge_t *edge = (zim_edge_t *)arg;
    s_loop_t *self = (s_loop_t *)edge->loop;
    const char *name = zim_shell_name (edge->shell);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = self;
    info.count_threads = 1;
    info.fd_limit_per_thread = 0;
    //  A token in the query can be ZIM_TOKEN_MAX bytes.
    info.max_http_header_data = 2 * ZIM_TOKEN_MAX;
    self->ctx = lws_create_context (&info);
    if (!self->ctx) {
        zsys_error ("%s: cannot create the libwebsockets context", name);
        return -1;
    }
    memset (&info, 0, sizeof info);
    info.port = (int)edge->port; //  0: an ephemeral port
    info.iface = edge->iface;
    info.protocols = s_protocols;
    info.vhost_name = "zim";
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = self;
    info.keepalive_timeout = 5;
    info.timeout_secs = 20;
    memset (&self->retry, 0, sizeof self->retry);
    if (edge->ping_interval_s) {
        self->retry.secs_since_valid_ping = (uint16_t)edge->ping_interval_s;
        self->retry.secs_since_valid_hangup = (uint16_t)(edge->ping_interval_s * 2 + 10);
        info.retry_and_idle_policy = &self->retry;
    }
    self->vhost = lws_create_vhost (self->ctx, &info);
    bool adopted = self->vhost && s_adopt (self, zim_shell_pipe (edge->shell)) == 0;
    for (size_t i = 0; adopted && i < zim_links_routers (edge->links); i++)
        adopted = s_adopt (self, zim_links_router (edge->links, i)) == 0;
    for (size_t i = 0; adopted && i < zim_links_brokers (edge->links); i++)
        adopted = s_adopt (self, zim_links_broker (edge->links, i)) == 0;
    if (!adopted) {
        if (!self->vhost)
            zsys_error ("%s: cannot listen on %s:%d (port in use or address not local)", name,
                        edge->iface ? edge->iface : "*", info.port);
        else
            zsys_error ("%s: cannot adopt the ZeroMQ sockets into the event loop", name);
        lws_context_destroy (self->ctx);
        self->ctx = NULL;
        self->vhost = NULL;
        return -1;
    }
    edge->port = (uint64_t)lws_get_vhost_listen_port (self->vhost);
    zim_shell_set_port (edge->shell, (int)edge->port);
    zim_links_on_socket (edge->links, s_on_socket, self);
    zim_links_reset (edge->links);
    lws_sul_schedule (self->ctx, 0, &self->tick, s_tick, LWS_US_PER_SEC);
    zsys_info ("%s: listening on %s:%d (WebSocket /ws), %zu broker(s)%s%s", name,
               edge->iface ? edge->iface : "*", (int)edge->port, zim_links_live (edge->links),
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

//  Closes every connection with 1001 (going away), giving them a moment.
static void s_shutdown (s_loop_t *self)
{
    zim_sessions_t *sessions = self->edge->sessions;
    for (zim_session_t *s = zim_sessions_first (sessions); s; s = zim_sessions_next (sessions))
        zim_session_close (s, LWS_CLOSE_STATUS_GOINGAWAY);
    int64_t until = zim_edge_now_ms () + 500;
    while (zim_sessions_size (sessions) && zim_edge_now_ms () < until)
        lws_service (self->ctx, 50);
}

void zim_gateway_actor (zsock_t *pipe, void *args)
{
    (void)args;
    s_loop_t self = {0};
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
        s_drain (&self, S_DRAIN_ALL);
        while (!zim_shell_terminated (shell)) {
            s_drain_sent (&self);
            if (!zim_shell_terminated (shell) && lws_service (self.ctx, 0) < 0)
                break;
        }
        s_shutdown (&self);
        lws_sul_cancel (&self.tick);
        lws_context_destroy (self.ctx);
    }
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
