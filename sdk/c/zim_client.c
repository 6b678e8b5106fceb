/*  zim_client.c: the C SDK's client object and its public API
    (zim_client.h), the façade of the client class (zim_sdk_client.h; its
    answers to the server's frames are zim_sdk_recv.c). A client is one user
    and device over one connection at a time; it composes the SDK's parts:
    - zim_sdk_conn: the WebSocket transport, its attempts and reconnects;
    - zim_sdk_outq: frames waiting for the next write, one message per chunk;
    - zim_sdk_sendq: sends from zim_client_send until their ack (retries
      with the same cid, ack timeouts);
    - zim_sdk_inbox: auto_sync's seq order (syncs, gaps, duplicates);
    - zim_sdk_reqs: request ids, and the application's requests in flight;
    - zim_sdk_rooms, zim_sdk_chans: rooms joined, channel positions;
    - zim_sdk_frame: the frames' encoders and decoders.
    The loop (zim_sdk_loop) runs their timers and frees a client destroyed
    inside a callback once the callback has returned.
*/
#include "config.h"
#include "sdk/c/zim_sdk_client.h"
#include "sdk/c/zim_sdk_frame.h"
#include "sdk/c/zim_sdk_json.h"
#include "msg/zim_conv.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define S_DEFAULT_URL "ws://127.0.0.1:7700/ws"

//  ---------------------------------------------------------------------
//  Reporting.

//  True when the application must hear nothing more from this client.
bool zim_sdk_client_quiet (zim_client_t *self)
{
    return self->dead || zim_sdk_conn_quiet (self->conn);
}

//  Reports a state change (and remembers it).
void zim_sdk_client_emit_state (zim_client_t *self, zim_client_state_t state, int code)
{
    self->state = state;
    if (!zim_sdk_client_quiet (self) && self->cfg.on_state)
        self->cfg.on_state (self, state, code, self->cfg.arg);
}

//  Reports an error.
void zim_sdk_client_emit_error (zim_client_t *self, int code, const char *text, const char *cid,
                                bool has_rid, uint64_t rid)
{
    if (zim_sdk_client_quiet (self) || !self->cfg.on_error)
        return;
    zim_client_error_t e = {code, text ? text : "", cid, has_rid, rid};
    self->cfg.on_error (self, &e, self->cfg.arg);
}

//  Fails the sends added before mark that match which, each with an error.
static void s_fail_sends (zim_client_t *self, zim_sdk_sendq_which_t which, uint64_t age, int code,
                          const char *text)
{
    uint64_t mark = zim_sdk_sendq_mark (self->sendq);
    uint64_t now = zim_mono_us ();
    char cid[ZIM_CLIENT_CID_SIZE];
    while (!self->dead && zim_sdk_sendq_take (self->sendq, mark, which, now, age, cid))
        zim_sdk_client_emit_error (self, code, text, cid, false, 0);
}

bool zim_sdk_client_token_refused (int code)
{
    return code == ZIM_ERR_BAD_TOKEN || code == ZIM_ERR_TOKEN_EXPIRED ||
           code == ZIM_ERR_TOKEN_NOT_YET || code == ZIM_ERR_TOKEN_CLAIMS ||
           code == ZIM_ERR_TOKEN_ALG;
}

//  ---------------------------------------------------------------------
//  Writing.

//  Asks for a writable callback if the connection is authenticated.
static void s_want_write (zim_client_t *self)
{
    if (self->state == ZIM_CLIENT_AUTHED)
        zim_sdk_conn_want_write (self->conn);
}

//  Queues what the scratch writer holds; returns 0 or -1 (queue full).
int zim_sdk_client_queue (zim_client_t *self, bool force)
{
    int rc = zim_sdk_outq_push (self->outq, self->wr.data, self->wr.size, force);
    zim_wr_reset (&self->wr);
    if (rc == 0)
        s_want_write (self);
    return rc;
}

//  zim_sdk_sendq_dispatch's writer: into the output queue.
static void s_queue_send (void *arg, const void *frame, size_t len)
{
    zim_client_t *self = arg;
    zim_sdk_outq_push (self->outq, frame, len, true);
}

//  Puts every send that waits for a connection into the queue, in order.
void zim_sdk_client_queue_waiting (zim_client_t *self)
{
    zim_sdk_sendq_dispatch (self->sendq, zim_mono_us (), s_queue_send, self);
    s_want_write (self);
}

//  ---------------------------------------------------------------------
//  The inbox's hooks.

static bool s_inbox_deliver (void *arg, const zim_client_msg_t *m)
{
    zim_client_t *self = arg;
    if (!zim_sdk_client_quiet (self) && self->cfg.on_msg)
        self->cfg.on_msg (self, m, self->cfg.arg);
    return !self->dead;
}

static uint64_t s_inbox_sync (void *arg, int64_t since, uint32_t limit)
{
    zim_client_t *self = arg;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_sync (&self->wr, since, limit, rid);
    zim_sdk_client_queue (self, true);
    return rid;
}

//  ---------------------------------------------------------------------
//  Timers.

//  The ping timer: ping, and give up on a server that went silent.
static void s_ping_timer (void *arg)
{
    zim_client_t *self = arg;
    if (!zim_sdk_conn_open (self->conn) || self->state != ZIM_CLIENT_AUTHED)
        return;
    uint64_t now = zim_mono_us ();
    uint64_t interval = (uint64_t)self->cfg.ping_interval_ms * 1000;
    uint64_t silent = now - zim_sdk_conn_last_rx (self->conn);
    if (silent > 2 * interval) {
        char text[64];
        snprintf (text, sizeof text, "server silent for %u ms", (unsigned)(silent / 1000));
        zim_sdk_conn_fail (self->conn, ZIM_CLIENT_ERR_TIMEOUT, text);
        return;
    }
    zim_sdk_frame_ping (&self->wr, now);
    zim_sdk_client_queue (self, true);
    zim_sdk_timer_start (&self->t_ping, interval);
}

//  The retry timer: resend every send that waits.
static void s_retry_timer (void *arg)
{
    zim_client_t *self = arg;
    if (self->state == ZIM_CLIENT_AUTHED)
        zim_sdk_client_queue_waiting (self);
}

//  The ack timer: a send in flight for longer than ack_timeout_ms is resent
//  with its cid (retry) or fails with ZIM_CLIENT_ERR_TIMEOUT.
static void s_ack_timer (void *arg)
{
    zim_client_t *self = arg;
    if (self->state != ZIM_CLIENT_AUTHED || !zim_sdk_conn_open (self->conn))
        return;
    uint64_t age = (uint64_t)self->cfg.ack_timeout_ms * 1000;
    if (!self->cfg.retry)
        s_fail_sends (self, ZIM_SDK_SENDQ_EXPIRED, age, ZIM_CLIENT_ERR_TIMEOUT, "no ack in time");
    else if (zim_sdk_sendq_expire (self->sendq, zim_mono_us (), age))
        zim_sdk_client_queue_waiting (self);
    if (self->dead || self->state != ZIM_CLIENT_AUTHED || !zim_sdk_conn_open (self->conn))
        return;
    zim_sdk_timer_start (&self->t_ack, age / 4 > 10000 ? age / 4 : 10000);
}

//  The notify timer: report CLOSED for a close without a connection.
static void s_notify_timer (void *arg)
{
    zim_client_t *self = arg;
    if (zim_sdk_conn_live (self->conn) || self->state == ZIM_CLIENT_CLOSED)
        return;
    self->closing = false;
    if (!self->cfg.retry)
        s_fail_sends (self, ZIM_SDK_SENDQ_ALL, 0, ZIM_CLIENT_ERR_LOST, "client closed");
    if (!self->dead)
        zim_sdk_client_emit_state (self, ZIM_CLIENT_CLOSED, 0);
}

//  ---------------------------------------------------------------------
//  The connection's hooks.

static void s_on_connecting (void *arg)
{
    zim_client_t *self = arg;
    self->auth_sent = false;
    zim_sdk_client_emit_state (self, ZIM_CLIENT_CONNECTING, 0);
}

static int s_on_open (void *arg)
{
    zim_client_t *self = arg;
    zim_sdk_client_emit_state (self, ZIM_CLIENT_OPEN, 0);
    if (self->dead || self->closing)
        return -1;
    if (!self->cfg.token_in_url)
        zim_sdk_conn_want_write (self->conn); //  for the auth frame
    return 0;
}

//  Writes the auth frame, or the cursor and the head of the queue.
static int s_on_writable (void *arg)
{
    zim_client_t *self = arg;
    if (self->state == ZIM_CLIENT_OPEN) {
        if (self->cfg.token_in_url || self->auth_sent)
            return 0;
        zim_sdk_frame_auth (&self->wr, self->token, self->device);
        size_t n = self->wr.size, pre = zim_sdk_conn_headroom ();
        unsigned char *buf = zim_malloc (pre + n);
        memcpy (buf + pre, self->wr.data, n);
        zim_wr_reset (&self->wr);
        int rc = zim_sdk_conn_write (self->conn, buf + pre, n);
        free (buf);
        self->auth_sent = rc == 0;
        return rc;
    }
    if (self->state != ZIM_CLIENT_AUTHED)
        return 0;
    if (self->cursor_want > self->cursor_sent) {
        zim_sdk_frame_cursor (&self->wr, self->cursor_want);
        zim_sdk_outq_push (self->outq, self->wr.data, self->wr.size, true);
        zim_wr_reset (&self->wr);
        self->cursor_sent = self->cursor_want;
    }
    size_t len;
    unsigned char *chunk = zim_sdk_outq_front (self->outq, &len);
    if (chunk) {
        int rc = zim_sdk_conn_write (self->conn, chunk, len);
        zim_sdk_outq_pop (self->outq);
        if (rc)
            return -1;
        if (zim_sdk_outq_size (self->outq) || self->closing)
            zim_sdk_conn_want_write (self->conn);
        return 0;
    }
    if (self->closing) {
        zim_sdk_conn_bye (self->conn);
        return -1;
    }
    return 0;
}

//  The connection (or the attempt) is over: fail or keep what was in
//  flight, then reconnect or close for good.
static void s_on_closed (void *arg, int code, const char *text, bool refused)
{
    zim_client_t *self = arg;
    if (refused)
        zim_sdk_client_emit_error (self, code, text, NULL, false, 0);
    if (self->closing && code == ZIM_CLIENT_ERR_LOST)
        code = 0;
    zim_sdk_timer_stop (&self->t_ping);
    zim_sdk_timer_stop (&self->t_retry);
    zim_sdk_timer_stop (&self->t_ack);
    zim_sdk_outq_clear (self->outq);
    self->cursor_sent = 0; //  resend the cursor on the next connection
    zim_sdk_inbox_disconnected (self->inbox);
    zim_sdk_chans_disconnected (self->chans);

    //  Requests in flight will get no answer now (those the callbacks make
    //  are for the next connection).
    char why[320];
    snprintf (why, sizeof why, "connection closed before the answer%s%s%s", *text ? " (" : "", text,
              *text ? ")" : "");
    uint64_t mark = zim_sdk_reqs_rid (self->reqs), rid;
    while (!self->dead && zim_sdk_reqs_take (self->reqs, mark, &rid))
        zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_LOST, why, NULL, true, rid);
    bool fatal = zim_sdk_client_token_refused (code) || code == ZIM_ERR_AUTH_REQUIRED;
    bool again = self->cfg.reconnect && !self->closing && !fatal && !zim_sdk_client_quiet (self);
    if (self->cfg.retry)
        zim_sdk_sendq_requeue_all (self->sendq);
    else {
        snprintf (why, sizeof why, "connection closed before the ack%s%s%s", *text ? " (" : "",
                  text, *text ? ")" : "");
        s_fail_sends (self, again ? ZIM_SDK_SENDQ_INFLIGHT : ZIM_SDK_SENDQ_ALL, 0,
                      ZIM_CLIENT_ERR_LOST, why);
    }
    if (self->dead)
        return;
    if (again) {
        zim_sdk_conn_reconnect (self->conn);
        zim_sdk_client_emit_state (self, ZIM_CLIENT_WAITING, code);
    } else {
        self->closing = false;
        zim_sdk_client_emit_state (self, ZIM_CLIENT_CLOSED, code);
    }
}

//  ---------------------------------------------------------------------
//  The client.

//  Fills buf with random bytes from the kernel, or from the clock if that fails.
static void s_random_bytes (void *buf, size_t len)
{
    if (getrandom (buf, len, GRND_NONBLOCK) == (ssize_t)len)
        return;
    uint64_t x = zim_mono_us () ^ ((uint64_t)getpid () << 32) ^ (uint64_t)(uintptr_t)buf;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (unsigned char)(x >> 56);
    }
}

//  Frees a client's memory; its connection is destroyed already.
static void s_free (void *arg)
{
    zim_client_t *self = arg;
    zim_sdk_timer_fini (&self->t_ping);
    zim_sdk_timer_fini (&self->t_retry);
    zim_sdk_timer_fini (&self->t_ack);
    zim_sdk_timer_fini (&self->t_notify);
    zim_sdk_conn_destroy (&self->conn);
    zim_sdk_outq_destroy (&self->outq);
    zim_sdk_sendq_destroy (&self->sendq);
    zim_sdk_inbox_destroy (&self->inbox);
    zim_sdk_reqs_destroy (&self->reqs);
    zim_sdk_rooms_destroy (&self->rooms);
    zim_sdk_chans_destroy (&self->chans);
    free (self->page_msgs);
    free (self->convs);
    free (self->groups);
    zim_wr_free (&self->wr);
    free (self->url);
    free (self->token);
    free (self->device);
    free (self);
}

//  Applies the defaults of zim_client.h to a zeroed config.
static void s_defaults (zim_client_config_t *cfg)
{
    if (!cfg->max_queue)
        cfg->max_queue = 1u << 20;
    if (!cfg->max_unacked)
        cfg->max_unacked = 10000;
    if (!cfg->max_message)
        cfg->max_message = 65536;
    if (cfg->max_message < 256)
        cfg->max_message = 256;
    if (!cfg->connect_timeout_ms)
        cfg->connect_timeout_ms = 10000;
    if (!cfg->ping_interval_ms)
        cfg->ping_interval_ms = 30000;
    if (!cfg->backoff_min_ms)
        cfg->backoff_min_ms = 250;
    if (!cfg->backoff_max_ms)
        cfg->backoff_max_ms = 30000;
    if (cfg->backoff_max_ms < cfg->backoff_min_ms)
        cfg->backoff_max_ms = cfg->backoff_min_ms;
    if (!cfg->sync_limit)
        cfg->sync_limit = 1000;
}

zim_client_t *zim_client_new (zim_loop_t *loop, const zim_client_config_t *cfg)
{
    if (!loop || !cfg || !cfg->token || !*cfg->token)
        return NULL;
    if (cfg->device && !zim_cid_valid (zim_str (cfg->device)))
        return NULL;
    if (cfg->token_in_url && cfg->url && strncmp (cfg->url, "tcp://", 6) == 0)
        return NULL; //  raw TCP has no URL to carry it: the auth frame does
    uint8_t rnd[16];
    s_random_bytes (rnd, sizeof rnd);
    static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
    char prefix[13];
    for (int i = 0; i < 12; i++)
        prefix[i] = digits[rnd[i] & 31];
    prefix[12] = 0;
    uint64_t seed;
    memcpy (&seed, rnd + 8, 8);

    zim_client_t *self = zim_calloc (1, sizeof *self);
    self->cfg = *cfg;
    s_defaults (&self->cfg);
    self->url = zim_strdup (cfg->url ? cfg->url : S_DEFAULT_URL);
    self->token = zim_strdup (cfg->token);
    self->device = cfg->device ? zim_strdup (cfg->device) : NULL;
    self->cfg.url = self->url;
    self->cfg.token = self->token;
    self->cfg.device = self->device;
    zim_sdk_conn_config_t ccfg = {self->url,
                                  self->cfg.connect_timeout_ms,
                                  self->cfg.backoff_min_ms,
                                  self->cfg.backoff_max_ms,
                                  seed,
                                  cfg->tls_ca_file};
    self->cfg.tls_ca_file = NULL; //  the connection keeps its own copy
    zim_sdk_conn_hooks_t hooks = {s_on_connecting, s_on_open, zim_sdk_recv_message, s_on_writable,
                                  s_on_closed};
    self->conn = zim_sdk_conn_new (loop, &ccfg, &hooks, self);
    if (!self->conn) {
        s_free (self);
        return NULL;
    }
    if (self->cfg.token_in_url)
        zim_sdk_conn_set_query (self->conn, self->token, self->device);
    self->outq =
        zim_sdk_outq_new (zim_sdk_conn_headroom (), self->cfg.max_message, self->cfg.max_queue);
    self->sendq = zim_sdk_sendq_new (self->cfg.max_unacked, prefix);
    self->reqs = zim_sdk_reqs_new ();
    self->rooms = zim_sdk_rooms_new ();
    self->chans = zim_sdk_chans_new ();
    zim_sdk_inbox_hooks_t ihooks = {s_inbox_deliver, s_inbox_sync};
    int64_t start = self->cfg.has_since ? (int64_t)self->cfg.since : -1;
    self->inbox =
        zim_sdk_inbox_new (loop, self->cfg.auto_sync, start, self->cfg.sync_limit, &ihooks, self);
    zim_wr_init (&self->wr);
    zim_sdk_timer_init (&self->t_ping, loop, s_ping_timer, self);
    zim_sdk_timer_init (&self->t_retry, loop, s_retry_timer, self);
    zim_sdk_timer_init (&self->t_ack, loop, s_ack_timer, self);
    zim_sdk_timer_init (&self->t_notify, loop, s_notify_timer, self);
    self->state = ZIM_CLIENT_CLOSED;
    zim_sdk_conn_start (self->conn);
    return self;
}

void zim_client_destroy (zim_client_t **self_p)
{
    zim_client_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->dead = true;
    zim_sdk_timer_stop (&self->t_ping);
    zim_sdk_timer_stop (&self->t_retry);
    zim_sdk_timer_stop (&self->t_ack);
    zim_sdk_timer_stop (&self->t_notify);
    zim_sdk_inbox_disconnected (self->inbox);
    zim_loop_t *loop = zim_sdk_conn_loop (self->conn);
    zim_sdk_conn_destroy (&self->conn);
    //  inside a callback, our caller still uses us: freed after zim_loop_run
    zim_sdk_loop_defer (loop, s_free, self);
}

int zim_client_connect (zim_client_t *self)
{
    if (self->dead || zim_sdk_conn_live (self->conn) || self->state != ZIM_CLIENT_CLOSED)
        return -1;
    zim_sdk_timer_stop (&self->t_notify);
    self->closing = false;
    return zim_sdk_conn_start (self->conn);
}

void zim_client_set_token (zim_client_t *self, const char *token)
{
    if (!token || !*token)
        return;
    free (self->token);
    self->token = zim_strdup (token);
    self->cfg.token = self->token;
    if (self->cfg.token_in_url)
        zim_sdk_conn_set_query (self->conn, self->token, self->device);
}

void zim_client_close (zim_client_t *self)
{
    if (self->dead || !zim_sdk_conn_loop (self->conn))
        return;
    self->closing = true;
    zim_sdk_conn_cancel (self->conn);
    zim_sdk_timer_stop (&self->t_retry);
    if (zim_sdk_conn_open (self->conn) && self->state == ZIM_CLIENT_AUTHED)
        zim_sdk_conn_want_write (self->conn); //  flush, then close
    else if (zim_sdk_conn_live (self->conn))
        zim_sdk_conn_fail (self->conn, ZIM_CLIENT_ERR_LOST, "closed by the client");
    else if (self->state != ZIM_CLIENT_CLOSED)
        zim_sdk_timer_start (&self->t_notify, 0);
}

zim_client_state_t zim_client_state (zim_client_t *self)
{
    //  a loop destroyed under a client closes it
    return zim_sdk_conn_loop (self->conn) ? self->state : ZIM_CLIENT_CLOSED;
}

const char *zim_client_uid (zim_client_t *self)
{
    return self->uid;
}

//  Queues a send to a user (group false) or a group.
static int s_send (zim_client_t *self, bool group, const char *to, const char *cid,
                   const void *body, size_t len, char *cid_out)
{
    if (self->dead || !to || !body || len == 0 || !zim_uid_valid (zim_str (to)))
        return -1;
    if (!zim_sdk_sendq_room (self->sendq))
        return -1;
    char gen[ZIM_CLIENT_CID_SIZE];
    if (cid) {
        if (!zim_cid_valid (zim_str (cid)))
            return -1;
    } else {
        zim_sdk_sendq_new_cid (self->sendq, gen);
        cid = gen;
    }
    //  the body must be exactly one msgpack value
    zim_rd_t rd;
    zim_rd_init (&rd, body, len);
    if (zim_rd_skip (&rd, NULL) || zim_rd_left (&rd) != 0)
        return -1;
    if (group)
        zim_sdk_frame_send_group (&self->wr, to, cid, body, len);
    else
        zim_sdk_frame_send (&self->wr, to, cid, body, len);
    size_t n = self->wr.size;
    bool now = self->state == ZIM_CLIENT_AUTHED && zim_sdk_conn_open (self->conn);
    if (n > self->cfg.max_message || (now && !zim_sdk_outq_fits (self->outq, n))) {
        zim_wr_reset (&self->wr);
        return -1;
    }
    zim_sdk_sendq_add (self->sendq, cid, self->wr.data, n, now ? zim_mono_us () : 0);
    if (now) {
        zim_sdk_outq_push (self->outq, self->wr.data, n, false);
        zim_sdk_conn_want_write (self->conn);
    }
    zim_wr_reset (&self->wr);
    if (cid_out)
        memcpy (cid_out, cid, strlen (cid) + 1);
    return 0;
}

int zim_client_send (zim_client_t *self, const char *to, const char *cid, const void *body,
                     size_t len, char *cid_out)
{
    return s_send (self, false, to, cid, body, len, cid_out);
}

int zim_client_send_group (zim_client_t *self, const char *group, const char *cid, const void *body,
                           size_t len, char *cid_out)
{
    return s_send (self, true, group, cid, body, len, cid_out);
}

int zim_client_send_text (zim_client_t *self, const char *to, const char *cid, const char *text,
                          char *cid_out)
{
    if (!text)
        return -1;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_cstr (&wr, text);
    int rc = zim_client_send (self, to, cid, wr.data, wr.size, cid_out);
    zim_wr_free (&wr);
    return rc;
}

//  Queues the request the scratch writer holds and remembers its rid until
//  the answer (or the connection's end). Returns 0 or -1 (queue full).
static int s_request (zim_client_t *self, uint64_t rid, uint64_t *rid_out)
{
    if (zim_sdk_client_queue (self, false))
        return -1;
    zim_sdk_reqs_add (self->reqs, rid);
    if (rid_out)
        *rid_out = rid;
    return 0;
}

int zim_client_sync (zim_client_t *self, int64_t since, uint32_t limit, uint64_t *rid_out)
{
    if (self->dead)
        return -1;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_sync (&self->wr, since < 0 ? -1 : since, limit, rid);
    return s_request (self, rid, rid_out);
}

int zim_client_cursor (zim_client_t *self, uint64_t seq)
{
    if (self->dead || seq == 0)
        return -1;
    if (seq > self->cursor_want) {
        self->cursor_want = seq;
        s_want_write (self);
    }
    return 0;
}

int zim_client_history (zim_client_t *self, const char *peer, uint64_t before, uint32_t limit,
                        uint64_t *rid_out)
{
    if (self->dead || !peer || !zim_uid_valid (zim_str (peer)))
        return -1;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_history (&self->wr, peer, before, limit, rid);
    return s_request (self, rid, rid_out);
}

int zim_client_ping (zim_client_t *self, uint64_t t)
{
    if (self->dead)
        return -1;
    zim_sdk_frame_ping (&self->wr, t);
    return zim_sdk_client_queue (self, false);
}

int zim_client_join (zim_client_t *self, const char *room, bool counts)
{
    if (self->dead || zim_sdk_rooms_add (self->rooms, room, counts))
        return -1;
    if (self->state != ZIM_CLIENT_AUTHED)
        return 0; //  joined at auth_ok
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_join (&self->wr, room, rid, counts);
    if (zim_sdk_client_queue (self, false))
        return -1;
    zim_sdk_reqs_add (self->reqs, rid);
    return 0;
}

int zim_client_leave (zim_client_t *self, const char *room)
{
    if (self->dead || zim_sdk_rooms_remove (self->rooms, room))
        return -1;
    if (self->state != ZIM_CLIENT_AUTHED)
        return 0;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_leave (&self->wr, room, rid);
    if (zim_sdk_client_queue (self, false))
        return -1;
    zim_sdk_reqs_add (self->reqs, rid);
    return 0;
}

int zim_client_publish (zim_client_t *self, const char *room, const void *body, size_t len,
                        uint64_t *rid_out)
{
    zim_rd_t rd;
    zim_rd_init (&rd, body, len);
    if (self->dead || self->state != ZIM_CLIENT_AUTHED || !zim_sdk_room_valid (room) || !body ||
        zim_rd_skip (&rd, NULL) || zim_rd_left (&rd))
        return -1;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_publish (&self->wr, room, body, len, rid);
    return s_request (self, rid, rid_out);
}

int zim_client_signal (zim_client_t *self, const char *to, const void *body, size_t len)
{
    zim_rd_t rd;
    zim_rd_init (&rd, body, len);
    if (self->dead || self->state != ZIM_CLIENT_AUTHED || !to || !zim_uid_valid (zim_str (to)) ||
        !body || zim_rd_skip (&rd, NULL) || zim_rd_left (&rd))
        return -1;
    zim_sdk_frame_signal (&self->wr, to, body, len);
    return zim_sdk_client_queue (self, false);
}

//  Queues a read or delivered frame (op) for conv up to seq.
static int s_mark (zim_client_t *self, const char *op, const char *conv, uint64_t seq)
{
    zim_conv_t parsed;
    if (self->dead || seq == 0 || !conv || zim_conv_parse (zim_str (conv), &parsed))
        return -1;
    zim_sdk_frame_read (&self->wr, op, conv, seq);
    return zim_sdk_client_queue (self, false);
}

int zim_client_read (zim_client_t *self, const char *conv, uint64_t seq)
{
    return s_mark (self, "read", conv, seq);
}

int zim_client_delivered (zim_client_t *self, const char *conv, uint64_t seq)
{
    return s_mark (self, "delivered", conv, seq);
}

int zim_client_convs (zim_client_t *self, uint32_t limit, uint64_t before, uint64_t *rid_out)
{
    if (self->dead)
        return -1;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_convs (&self->wr, limit, before, rid);
    return s_request (self, rid, rid_out);
}

int zim_client_groups (zim_client_t *self, uint64_t *rid_out)
{
    if (self->dead)
        return -1;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_groups (&self->wr, rid);
    return s_request (self, rid, rid_out);
}

int zim_client_csync (zim_client_t *self, const char *group, int64_t since, uint32_t limit,
                      uint64_t *rid_out)
{
    if (self->dead || !group || !zim_uid_valid (zim_str (group)))
        return -1;
    uint64_t from = since < 0 ? zim_sdk_chans_pos (self->chans, group) : (uint64_t)since;
    uint64_t rid = zim_sdk_reqs_rid (self->reqs);
    zim_sdk_frame_csync (&self->wr, group, from, limit, rid);
    if (s_request (self, rid, rid_out))
        return -1;
    zim_sdk_chans_ask (self->chans, rid, group);
    return 0;
}

uint64_t zim_client_channel_pos (zim_client_t *self, const char *group)
{
    return zim_sdk_chans_pos (self->chans, group);
}

size_t zim_client_unacked (zim_client_t *self)
{
    return zim_sdk_sendq_size (self->sendq);
}

int64_t zim_client_last_seq (zim_client_t *self)
{
    return zim_sdk_inbox_last_seq (self->inbox);
}

//  ---------------------------------------------------------------------
//  Selftests.

void zim_client_test (bool verbose)
{
    zim_sdk_loop_test (verbose);
    zim_sdk_conn_test (verbose);
    zim_sdk_outq_test (verbose);
    zim_sdk_sendq_test (verbose);
    zim_sdk_reqs_test (verbose);
    zim_sdk_frame_test (verbose);
    zim_sdk_rooms_test (verbose);
    zim_sdk_chans_test (verbose);
    zim_sdk_inbox_test (verbose);
    zim_sdk_json_test (verbose);
    zim_sdk_client_test (verbose);
    zim_sdk_recv_test (verbose);
}

#include <assert.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)

//  What the selftest's callbacks saw.
typedef struct {
    int acks, errors, msgs, pages, states, waiting;
    uint64_t ack_seq, ack_id, last_msg_seq, page_rid, error_rid;
    char last_cid[ZIM_CLIENT_CID_SIZE];
    char last_body[64];
    int last_error;
    zim_client_state_t state;
    bool destroy_on_error; //  destroy the client from inside on_error
} s_seen_t;

static void s_t_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->acks++;
    s->ack_seq = a->seq;
    s->ack_id = a->id;
    snprintf (s->last_cid, sizeof s->last_cid, "%s", a->cid);
}

static void s_t_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    s_seen_t *s = arg;
    s->errors++;
    s->last_error = e->code;
    s->error_rid = e->has_rid ? e->rid : 0;
    snprintf (s->last_cid, sizeof s->last_cid, "%s", e->cid ? e->cid : "");
    if (s->destroy_on_error)
        zim_client_destroy (&c);
}

static void s_t_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->msgs++;
    s->last_msg_seq = m->seq;
    char *json = zim_body_to_json (m->body, m->body_len);
    snprintf (s->last_body, sizeof s->last_body, "%s", json ? json : "?");
    free (json);
}

static void s_t_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->pages++;
    s->page_rid = p->rid;
}

static void s_t_state (zim_client_t *c, zim_client_state_t state, int code, void *arg)
{
    (void)c, (void)code;
    s_seen_t *s = arg;
    s->states++;
    s->waiting += state == ZIM_CLIENT_WAITING;
    s->state = state;
}

//  Feeds what the writer holds to the client, as if it had arrived.
static void s_t_feed (zim_client_t *c, zim_wr_t *wr)
{
    zim_sdk_recv_message (c, (const unsigned char *)wr->data, wr->size);
    zim_wr_reset (wr);
}

void zim_sdk_client_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_loop_t *loop = zim_loop_new ();
    assert (loop);
    s_seen_t seen;
    memset (&seen, 0, sizeof seen);
    zim_client_config_t cfg = {0};
    cfg.on_ack = s_t_ack;
    cfg.on_error = s_t_error;
    cfg.on_msg = s_t_msg;
    cfg.on_page = s_t_page;
    cfg.on_state = s_t_state;
    cfg.arg = &seen;

    //  Refused configurations.
    assert (zim_client_new (loop, &cfg) == NULL); //  no token
    cfg.token = "tok";
    cfg.url = "http://x/ws";
    assert (zim_client_new (loop, &cfg) == NULL);
    cfg.url = "ws://127.0.0.1:1/ws";
    cfg.device = "my phone";
    assert (zim_client_new (loop, &cfg) == NULL);
    cfg.device = NULL;

    //  A client that never connects: frames are fed to it directly.
    zim_client_t *c = zim_client_new (loop, &cfg);
    assert (c && zim_client_state (c) == ZIM_CLIENT_CLOSED && zim_client_last_seq (c) == -1);
    assert (zim_sdk_conn_cancel (c->conn)); //  its first attempt waited for the loop
    assert (zim_client_send_text (c, "bad uid!", NULL, "x", NULL) == -1);
    assert (zim_client_send_text (c, "bob", "bad cid", "x", NULL) == -1);
    assert (zim_client_send (c, "bob", NULL, "\x92\x01", 2, NULL) == -1); //  truncated body
    assert (zim_client_send (c, "bob", NULL, "\x01\x02", 2, NULL) == -1); //  two values
    char cid[ZIM_CLIENT_CID_SIZE], cid2[ZIM_CLIENT_CID_SIZE];
    assert (zim_client_send_text (c, "bob", NULL, "x", cid) == 0);
    assert (zim_client_send_text (c, "bob", NULL, "y", cid2) == 0);
    assert (strlen (cid) > 12 && !streq (cid, cid2) && zim_cid_valid (zim_str (cid)));
    assert (zim_client_send_text (c, "bob", "c1", "hi", NULL) == 0);
    //  not connected: waiting, nothing queued for the wire yet
    assert (zim_client_unacked (c) == 3 && zim_sdk_outq_size (c->outq) == 0);

    //  An ack and a msg in one WebSocket message; a duplicate ack is ignored.
    zim_item_t item = {
        1, 250772402995204096ull, 1, zim_str ("alice"), zim_str ("bob"), {"\xa2hi", 3}};
    zim_cframe_ack (&wr, zim_str ("c1"), item.id, 1, 1);
    zim_cframe_msg (&wr, &item);
    size_t vlen = wr.size;
    unsigned char vec[256];
    memcpy (vec, wr.data, vlen);
    s_t_feed (c, &wr);
    assert (seen.acks == 1 && streq (seen.last_cid, "c1") && seen.ack_seq == 1);
    assert (seen.ack_id == 250772402995204096ull && zim_client_unacked (c) == 2);
    assert (seen.msgs == 1 && seen.last_msg_seq == 1 && streq (seen.last_body, "\"hi\""));
    zim_sdk_recv_message (c, vec, vlen);
    assert (seen.acks == 1 && zim_client_last_seq (c) == 1);

    //  An error for a pending send fails it; a truncated message stops at
    //  the broken frame with a protocol error.
    zim_cframe_error (&wr, ZIM_ERR_BAD_RECIPIENT, "bad recipient", zim_str (cid), false, 0);
    s_t_feed (c, &wr);
    assert (seen.errors == 1 && seen.last_error == ZIM_ERR_BAD_RECIPIENT &&
            streq (seen.last_cid, cid));
    assert (zim_client_unacked (c) == 1);
    zim_sdk_recv_message (c, vec, 20);
    assert (seen.errors == 2 && seen.last_error == ZIM_CLIENT_ERR_PROTOCOL);

    //  Losing the connection fails the sends in flight (retry off), and the
    //  requests waiting for an answer.
    c->state = ZIM_CLIENT_AUTHED;
    zim_sdk_client_queue_waiting (c);
    assert (zim_sdk_outq_size (c->outq) > 0);
    uint64_t rid = 0;
    assert (zim_client_history (c, "alice", 0, 10, &rid) == 0 && rid);
    int errors = seen.errors;
    s_on_closed (c, ZIM_CLIENT_ERR_LOST, "test", false);
    assert (seen.errors == errors + 2 && seen.last_error == ZIM_CLIENT_ERR_LOST);
    assert (zim_client_unacked (c) == 0 && seen.state == ZIM_CLIENT_CLOSED);
    assert (zim_sdk_outq_size (c->outq) == 0);
    zim_client_destroy (&c);

    //  A refused connection reports CLOSED, failing the send with ERR_LOST;
    //  with reconnect on, WAITING, then attempts again, keeping the send.
    memset (&seen, 0, sizeof seen);
    cfg.auto_sync = false;
    c = zim_client_new (loop, &cfg);
    assert (zim_client_send_text (c, "bob", NULL, "x", NULL) == 0);
    for (int i = 0; i < 100 && seen.state != ZIM_CLIENT_CLOSED; i++)
        zim_loop_run (loop, 20);
    assert (seen.state == ZIM_CLIENT_CLOSED && seen.last_error == ZIM_CLIENT_ERR_LOST);
    assert (zim_client_unacked (c) == 0);
    zim_client_destroy (&c);
    memset (&seen, 0, sizeof seen);
    cfg.reconnect = true;
    cfg.retry = true;
    cfg.backoff_min_ms = 10;
    cfg.backoff_max_ms = 40;
    c = zim_client_new (loop, &cfg);
    assert (zim_client_send_text (c, "bob", NULL, "x", NULL) == 0);
    for (int i = 0; i < 100 && seen.waiting < 3; i++)
        zim_loop_run (loop, 20);
    if (verbose)
        printf ("\nreconnect: %d waits, state %d, %d states\n", seen.waiting, seen.state,
                seen.states);
    assert (seen.waiting >= 3 && seen.state != ZIM_CLIENT_CLOSED);
    assert (zim_client_unacked (c) == 1); //  kept for the retry
    zim_client_close (c);
    for (int i = 0; i < 100 && seen.state != ZIM_CLIENT_CLOSED; i++)
        zim_loop_run (loop, 20);
    assert (seen.state == ZIM_CLIENT_CLOSED && zim_client_unacked (c) == 1);
    assert (zim_client_connect (c) == 0);
    zim_client_close (c);
    for (int i = 0; i < 100 && seen.state != ZIM_CLIENT_CLOSED; i++)
        zim_loop_run (loop, 20);

    //  A client destroyed inside its own callback is freed once the loop
    //  returns; one the loop outlives is left closed.
    memset (&seen, 0, sizeof seen);
    seen.destroy_on_error = true;
    cfg.reconnect = false;
    zim_client_t *d = zim_client_new (loop, &cfg);
    for (int i = 0; i < 100 && seen.errors == 0; i++)
        zim_loop_run (loop, 20);
    assert (seen.errors == 1);
    zim_loop_run (loop, 10);
    (void)d; //  freed by the loop: LSan would see it leak otherwise
    zim_loop_destroy (&loop);
    assert (zim_client_state (c) == ZIM_CLIENT_CLOSED);
    zim_client_close (c);
    zim_client_destroy (&c);
    zim_wr_free (&wr);
}
