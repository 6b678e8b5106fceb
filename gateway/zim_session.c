/*  zim_session.c: one client connection (see zim_session.h): identity,
    output buffer and its accounting, fragment reassembly, token buckets,
    reads in flight, and the libwebsockets calls that write and close.
*/
#include "gateway/zim_session.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <libwebsockets.h>

//  A read unanswered this long is taken as lost (a broker died holding
//  it; brokers answer 5040 after their store_timeout, 5 s by default), so
//  its slot comes back.
#define S_READ_LOST_MS 30000

//  A token bucket: rate tokens a second, at most burst.
typedef struct {
    double tokens;     //  tokens left
    int64_t refill_ms; //  monotonic ms of the last refill
} s_bucket_t;

struct _zim_session_t {
    uint64_t id;                 //  gateway-local connection id
    struct lws *wsi;             //  the WebSocket, NULL in selftests
    zim_edge_t *edge;            //  settings and counters
    bool authed;                 //  a valid token was presented
    char app[ZIM_ID_MAX + 1];    //  app from the token
    char uid[ZIM_ID_MAX + 1];    //  user id from the token
    char device[ZIM_ID_MAX + 1]; //  device name (query, auth frame, or "default")
    uint32_t auth_failures;      //  failed auth frames so far
    bool background;             //  the app said it is in the background (state)
    uint8_t *out;                //  output buffer; LWS_PRE bytes of headroom first
    size_t out_len;              //  payload bytes pending after the headroom
    size_t out_cap;              //  allocated payload capacity
    size_t out_replies;          //  of out_len, bytes answering reads
    uint32_t replies;            //  read answers in out
    uint8_t *rx;                 //  fragments of the message being received
    size_t rx_len;               //  bytes in rx
    size_t rx_cap;               //  allocated size of rx
    int close_code;              //  nonzero: close with this status after flushing
    bool close_sent;             //  the close frame went out: hang up next
    s_bucket_t send_bucket;      //  send_rate / send_burst
    s_bucket_t read_bucket;      //  read_rate / read_burst
    uint32_t reads;              //  reads forwarded, answer not yet written
    int64_t reads_ms;            //  last read forwarded or answered (monotonic)
    zim_timer_t idle;            //  idle deadline
    zim_timer_t auth;            //  auth deadline, stopped once authenticated
    zim_timer_t ping;            //  next WebSocket PING (ping_interval)
    int64_t heard_ms;            //  last input, PONGs included (monotonic)
    bool ping_due;               //  a PING waits for the next writable callback
    bool write_asked;            //  a writable callback was asked for and has not come
    bool write_failed;           //  a direct write failed: hang up at the callback
    bool listed;                 //  on the edge's flush list
    zim_session_t *flush_prev;   //  the flush list (zim_session_flush_all)
    zim_session_t *flush_next;
    const zim_session_io_t *io;  //  another transport (raw TCP), or NULL
    void *io_arg;                //  its argument
};

//  Takes the session off its edge's flush list if it is on it.
static void s_unlist (zim_session_t *self)
{
    if (!self->listed)
        return;
    if (self->flush_prev)
        self->flush_prev->flush_next = self->flush_next;
    else
        self->edge->flush_list = self->flush_next;
    if (self->flush_next)
        self->flush_next->flush_prev = self->flush_prev;
    self->flush_prev = self->flush_next = NULL;
    self->listed = false;
}

//  Asks lws for a writable callback.
static void s_ask (zim_session_t *self)
{
    self->write_asked = true;
    self->edge->write_requests++;
    lws_callback_on_writable (self->wsi);
}

zim_session_t *zim_session_new (zim_edge_t *edge, uint64_t id, struct lws *wsi)
{
    zim_session_t *self = (zim_session_t *)zim_calloc (1, sizeof *self);
    int64_t now = zim_edge_now_ms ();
    self->id = id;
    self->wsi = wsi;
    self->edge = edge;
    self->heard_ms = now;
    strcpy (self->device, "default");
    self->send_bucket = (s_bucket_t){(double)edge->send_burst, now};
    self->read_bucket = (s_bucket_t){(double)edge->read_burst, now};
    return self;
}

void zim_session_destroy (zim_session_t **self_p)
{
    zim_session_t *self = *self_p;
    if (!self)
        return;
    s_unlist (self);
    zim_timer_stop (&self->idle);
    zim_timer_stop (&self->auth);
    zim_timer_stop (&self->ping);
    free (self->out);
    free (self->rx);
    free (self);
    *self_p = NULL;
}

void zim_session_set_io (zim_session_t *self, const zim_session_io_t *io, void *arg)
{
    self->io = io;
    self->io_arg = arg;
}

uint64_t zim_session_id (const zim_session_t *self)
{
    return self->id;
}

bool zim_session_authed (const zim_session_t *self)
{
    return self->authed;
}

const char *zim_session_app (const zim_session_t *self)
{
    return self->app;
}

const char *zim_session_uid (const zim_session_t *self)
{
    return self->uid;
}

const char *zim_session_device (const zim_session_t *self)
{
    return self->device;
}

zim_timer_t *zim_session_idle_timer (zim_session_t *self)
{
    return &self->idle;
}

zim_timer_t *zim_session_auth_timer (zim_session_t *self)
{
    return &self->auth;
}

zim_timer_t *zim_session_ping_timer (zim_session_t *self)
{
    return &self->ping;
}

void zim_session_heard (zim_session_t *self, int64_t now_ms)
{
    self->heard_ms = now_ms;
}

int64_t zim_session_heard_ms (const zim_session_t *self)
{
    return self->heard_ms;
}

void zim_session_ping (zim_session_t *self)
{
    if (self->close_code || self->io)
        return; //  a raw TCP session has no PING (its heartbeat: zim_tcp.h)
    self->ping_due = true;
    if (self->wsi)
        //  Asked even if a request is out: should lws ever have dropped
        //  one (a path that drops POLLOUT), output moves on at the next
        //  PING at the latest.
        s_ask (self);
}

bool zim_session_ping_due (const zim_session_t *self)
{
    return self->ping_due;
}

void zim_session_set_device (zim_session_t *self, const char *device)
{
    snprintf (self->device, sizeof self->device, "%s", device);
}

bool zim_session_background (const zim_session_t *self)
{
    return self->background;
}

void zim_session_set_background (zim_session_t *self, bool background)
{
    self->background = background;
}

void zim_session_set_identity (zim_session_t *self, const char *app, const char *uid)
{
    snprintf (self->app, sizeof self->app, "%s", app);
    snprintf (self->uid, sizeof self->uid, "%s", uid);
    self->authed = true;
}

uint32_t zim_session_auth_failed (zim_session_t *self)
{
    return ++self->auth_failures;
}

//  Output is waiting. A WebSocket session goes on the edge's flush list
//  (once), written at the end of the loop turn by zim_session_flush_all
//  without asking lws for a writable callback: on libuv every
//  lws_callback_on_writable costs epoll_ctl calls (libuv's uv_poll_start
//  deletes the descriptor from epoll first, and lws drops POLLOUT again
//  after the callback: docs/BENCHMARKS.md, sections 9 and 10). Nothing to
//  do while a callback is already asked for: it writes everything.
static void s_want_write (zim_session_t *self)
{
    if (self->wsi) {
        if (self->write_asked || self->listed)
            return;
        self->listed = true;
        self->flush_prev = NULL;
        self->flush_next = self->edge->flush_list;
        if (self->flush_next)
            self->flush_next->flush_prev = self;
        self->edge->flush_list = self;
    } else if (self->io)
        self->io->want_write (self->io_arg);
}

//  Appends bytes to the output buffer.
static void s_append (zim_session_t *self, const void *data, size_t size)
{
    if (self->out_len + size > self->out_cap) {
        size_t cap = self->out_cap ? self->out_cap : 512;
        while (cap < self->out_len + size)
            cap *= 2;
        self->out = (uint8_t *)zim_realloc (self->out, LWS_PRE + cap);
        self->out_cap = cap;
    }
    memcpy (self->out + LWS_PRE + self->out_len, data, size);
    self->out_len += size;
    self->edge->frames_out++;
    s_want_write (self);
}

void zim_session_write (zim_session_t *self, const void *data, size_t size, bool reply)
{
    zim_edge_t *edge = self->edge;
    if (self->close_code) {
        edge->out_closing++;
        return; //  closing: nothing more goes out but what is queued
    }
    if (reply) {
        //  Bounded by max_reads_inflight pages: never a slow consumer.
        self->replies++;
        self->out_replies += size;
        self->reads_ms = zim_edge_now_ms ();
        s_append (self, data, size);
        return;
    }
    size_t live = self->out_len - self->out_replies;
    if (live + size > edge->max_pending) {
        edge->slow_consumer_drops++;
        zim_shell_warn (edge->shell,
                        "connection %" PRIu64 " (%s/%s) cut as slow consumer: %zu bytes pending "
                        "(max_pending %" PRIu64 ")",
                        self->id, self->app, self->uid, live, edge->max_pending);
        self->out_len = self->out_replies = 0;
        self->replies = 0;
        zim_wr_reset (&edge->fr);
        zim_cframe_error (&edge->fr, ZIM_ERR_SLOW_CONSUMER, "slow consumer: reconnect and sync",
                          (zim_str_t){NULL, 0}, false, 0);
        edge->errors_sent++;
        s_append (self, edge->fr.data, edge->fr.size);
        self->close_code = ZIM_ERR_SLOW_CONSUMER;
        zim_timer_stop (&self->idle);
        zim_timer_stop (&self->auth);
        zim_timer_stop (&self->ping);
        return;
    }
    s_append (self, data, size);
}

void zim_session_error (zim_session_t *self, int code, const char *text, zim_str_t cid,
                        bool has_rid, uint64_t rid)
{
    zim_edge_t *edge = self->edge;
    zim_wr_reset (&edge->fr);
    zim_cframe_error (&edge->fr, code, text, cid, has_rid, rid);
    zim_session_write (self, edge->fr.data, edge->fr.size, false);
    edge->errors_sent++;
}

void zim_session_close (zim_session_t *self, int status)
{
    if (!self->close_code)
        self->close_code = status;
    zim_timer_stop (&self->idle);
    zim_timer_stop (&self->auth);
    zim_timer_stop (&self->ping);
    self->write_asked = false; //  a close always asks (see zim_session_ping)
    s_want_write (self);
}

void zim_session_fail (zim_session_t *self, int code, const char *text, int status)
{
    zim_session_error (self, code, text, (zim_str_t){NULL, 0}, false, 0);
    zim_session_close (self, status);
}

bool zim_session_closing (const zim_session_t *self)
{
    return self->close_code != 0;
}

size_t zim_session_pending (const zim_session_t *self)
{
    return self->out_len;
}

size_t zim_session_pending_replies (const zim_session_t *self)
{
    return self->out_replies;
}

const uint8_t *zim_session_output (const zim_session_t *self, size_t *size)
{
    *size = self->out_len;
    return self->out ? self->out + LWS_PRE : NULL;
}

//  Writes what is queued as one WebSocket message (or hands it to the
//  other transport). Returns -1 when the connection is to close now.
static int s_write_out (zim_session_t *self)
{
    if (self->wsi &&
        lws_write (self->wsi, self->out + LWS_PRE, self->out_len, LWS_WRITE_BINARY) < 0)
        return -1;
    if (self->io && self->io->write (self->io_arg, self->out + LWS_PRE, self->out_len) < 0)
        return -1;
    self->edge->writes++;
    //  The answers went to the socket: their reads' slots come back.
    self->reads -= self->replies < self->reads ? self->replies : self->reads;
    self->replies = 0;
    self->out_replies = 0;
    self->out_len = 0;
    if (self->out_cap > 65536) { //  give back what a burst needed
        zim_free (&self->out);
        self->out_cap = 0;
    }
    return 0;
}

void zim_session_flush_all (zim_edge_t *edge)
{
    zim_session_t *self;
    while ((self = edge->flush_list)) {
        s_unlist (self);
        if (self->write_asked || self->write_failed)
            continue; //  the callback writes (or hangs up)
        //  lws still holds the tail of an earlier write (the socket was
        //  full): it drains that first, then calls back; our output waits
        //  here, bounded by max_pending.
        if (lws_partial_buffered (self->wsi)) {
            s_ask (self);
            continue;
        }
        if (self->out_len && s_write_out (self) < 0) {
            //  Not in a callback: lws hangs up when it returns -1.
            self->write_failed = true;
            s_ask (self);
            continue;
        }
        //  A PING or the close frame go from the callback (it may close).
        if (self->close_code || self->ping_due)
            s_ask (self);
    }
}

int zim_session_writable (zim_session_t *self)
{
    self->write_asked = false;
    if (self->write_failed)
        return -1;
    if (self->out_len) {
        s_unlist (self); //  written now
        if (s_write_out (self) < 0)
            return -1;
        if (self->close_code || self->ping_due)
            s_want_write (self); //  close, or ping, once that went out
        return 0;
    }
    if (self->ping_due && !self->close_code) {
        //  One lws_write per callback: the PING goes alone.
        //  With a payload: lws 4.1 gives no RECEIVE_PONG for an empty
        //  PONG, and a client that answers PINGs but sends nothing else
        //  would be cut as unresponsive after two intervals + 10 s.
        uint8_t ping[LWS_PRE + 4] = {0};
        memcpy (ping + LWS_PRE, "zim", 4);
        self->ping_due = false;
        if (self->wsi && lws_write (self->wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 0)
            return -1;
        return 0;
    }
    if (self->close_code && self->wsi && !self->close_sent) {
        //  The close frame is written here, not left to lws_close_reason:
        //  on a libuv loop lws 4.1 hangs up without sending it.
        //  A server frame is unmasked: FIN + opcode 8, length, status, reason.
        uint8_t frame[LWS_PRE + 127];
        uint8_t *p = frame + LWS_PRE;
        const char *why = zim_strerror (self->close_code);
        size_t n = strlen (why) < 123 ? strlen (why) : 123;
        p[0] = 0x88;
        p[1] = (uint8_t)(n + 2);
        p[2] = (uint8_t)(self->close_code >> 8);
        p[3] = (uint8_t)self->close_code;
        memcpy (p + 4, why, n);
        self->close_sent = true;
        if (lws_write (self->wsi, p, n + 4, LWS_WRITE_RAW) < 0)
            return -1;
        s_want_write (self); //  hang up at the next callback
        return 0;
    }
    return self->close_code ? -1 : 0;
}

int zim_session_receive (zim_session_t *self, const void *in, size_t len, bool final,
                         const uint8_t **msg, size_t *size)
{
    zim_edge_t *edge = self->edge;
    if (self->close_code)
        return 0;
    if (self->rx_len == 0 && self->rx_cap > 65536) { //  the last message was big
        zim_free (&self->rx);
        self->rx_cap = 0;
    }
    if (self->rx_len + len > edge->max_frame) {
        edge->too_large++;
        zim_shell_warn (edge->shell,
                        "connection %" PRIu64 " (%s): message over max_frame (%" PRIu64
                        " bytes): closed",
                        self->id, self->authed ? self->uid : "unauthenticated", edge->max_frame);
        self->rx_len = 0;
        zim_session_fail (self, ZIM_ERR_TOO_LARGE, "message too large",
                          LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
        return -1;
    }
    if (final && self->rx_len == 0) { //  the common case: one fragment
        *msg = (const uint8_t *)in;
        *size = len;
        return 1;
    }
    if (self->rx_len + len > self->rx_cap) {
        size_t cap = self->rx_cap ? self->rx_cap : 4096;
        while (cap < self->rx_len + len)
            cap *= 2;
        self->rx = (uint8_t *)zim_realloc (self->rx, cap);
        self->rx_cap = cap;
    }
    memcpy (self->rx + self->rx_len, in, len);
    self->rx_len += len;
    if (!final)
        return 0;
    *msg = self->rx;
    *size = self->rx_len;
    self->rx_len = 0; //  the bytes stay until the next call
    return 1;
}

//  Takes one token from b; false if none is left.
static bool s_bucket_take (s_bucket_t *b, uint64_t rate, uint64_t burst, int64_t now_ms)
{
    if (now_ms > b->refill_ms) {
        b->tokens += (double)(now_ms - b->refill_ms) * (double)rate / 1000.0;
        b->refill_ms = now_ms;
    }
    if (b->tokens > (double)burst)
        b->tokens = (double)burst;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

bool zim_session_take_send (zim_session_t *self, int64_t now_ms)
{
    return s_bucket_take (&self->send_bucket, self->edge->send_rate, self->edge->send_burst,
                          now_ms);
}

int zim_session_read_begin (zim_session_t *self, int64_t now_ms)
{
    zim_edge_t *edge = self->edge;
    if (self->reads >= edge->max_reads_inflight && self->reads > self->replies &&
        now_ms - self->reads_ms > S_READ_LOST_MS) {
        zim_shell_warn (edge->shell,
                        "connection %" PRIu64 " (%s/%s): %" PRIu32 " reads unanswered for %d s: "
                        "taken as lost",
                        self->id, self->app, self->uid, self->reads - self->replies,
                        S_READ_LOST_MS / 1000);
        self->reads = self->replies;
    }
    if (self->reads >= edge->max_reads_inflight)
        return ZIM_ERR_TOO_MANY_READS;
    if (!s_bucket_take (&self->read_bucket, edge->read_rate, edge->read_burst, now_ms))
        return ZIM_ERR_RATE_LIMITED;
    self->reads++;
    self->reads_ms = now_ms;
    return 0;
}

void zim_session_read_cancel (zim_session_t *self)
{
    if (self->reads > self->replies)
        self->reads--;
}

uint32_t zim_session_reads (const zim_session_t *self)
{
    return self->reads;
}

//  -------------------------------------------------------------------------
//  Selftest: a session without a socket (what is "written" is dropped).

void zim_session_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    edge->max_pending = 4096;
    edge->max_frame = 1000;
    edge->max_reads_inflight = 2;
    edge->read_burst = 3;
    edge->read_rate = 1;
    edge->send_burst = 2;
    edge->send_rate = 1000;
    zim_session_t *s = zim_session_new (edge, 7, NULL);
    assert (zim_session_id (s) == 7 && !zim_session_authed (s));
    assert (streq (zim_session_device (s), "default"));
    zim_session_set_device (s, "phone");
    zim_session_set_identity (s, "demo", "alice");
    assert (zim_session_authed (s) && streq (zim_session_uid (s), "alice"));
    assert (streq (zim_session_app (s), "demo") && streq (zim_session_device (s), "phone"));
    assert (zim_session_auth_failed (s) == 1 && zim_session_auth_failed (s) == 2);
    assert (!zim_session_background (s));
    zim_session_set_background (s, true);
    assert (zim_session_background (s));

    //  Send bucket: burst 2, then refilled at 1000/s.
    int64_t now = zim_edge_now_ms ();
    assert (zim_session_take_send (s, now) && zim_session_take_send (s, now));
    assert (!zim_session_take_send (s, now));
    assert (zim_session_take_send (s, now + 2));

    //  Reads: two in flight at most; the answers free their slots once
    //  written; the bucket (3, 1/s) limits the rest.
    assert (zim_session_read_begin (s, now) == 0);
    assert (zim_session_read_begin (s, now) == 0);
    assert (zim_session_read_begin (s, now) == ZIM_ERR_TOO_MANY_READS);
    zim_session_read_cancel (s); //  one was not forwarded after all
    assert (zim_session_reads (s) == 1);
    //  A page far over max_pending is an answer: no cut.
    uint8_t page[10000];
    memset (page, 0x90, sizeof page);
    zim_session_write (s, page, sizeof page, true);
    assert (!zim_session_closing (s) && zim_session_pending_replies (s) == sizeof page);
    //  Still holding its slot until written.
    assert (zim_session_read_begin (s, now) == 0);
    assert (zim_session_read_begin (s, now) == ZIM_ERR_TOO_MANY_READS);
    assert (zim_session_writable (s) == 0 && zim_session_pending (s) == 0);
    assert (zim_session_reads (s) == 1);
    assert (zim_session_read_begin (s, now) == ZIM_ERR_RATE_LIMITED); //  bucket empty
    assert (zim_session_read_begin (s, now + 1001) == 0);
    //  Reads unanswered for long are taken as lost.
    assert (zim_session_read_begin (s, now + 2000) == ZIM_ERR_TOO_MANY_READS);
    assert (zim_session_read_begin (s, now + 1001 + S_READ_LOST_MS + 1) == 0);
    assert (zim_session_reads (s) == 1);

    //  Live output: fine below max_pending, even with a big answer queued...
    zim_session_write (s, page, sizeof page, true);
    zim_session_write (s, page, 4000, false);
    assert (!zim_session_closing (s) && zim_session_pending (s) == sizeof page + 4000);
    //  ... beyond it the connection is cut: only the 4090 error is left.
    zim_session_write (s, page, 100, false);
    assert (zim_session_closing (s) && edge->slow_consumer_drops == 1);
    assert (zim_session_pending (s) > 0 && zim_session_pending (s) < 64);
    assert (zim_session_pending_replies (s) == 0);
    zim_session_write (s, page, 10, false); //  closing: dropped, counted
    assert (zim_session_pending (s) < 64 && edge->out_closing == 1);
    assert (zim_session_writable (s) == 0);  //  the error goes out
    assert (zim_session_writable (s) == -1); //  then the close
    zim_session_destroy (&s);

    //  Fragments are reassembled; over max_frame fails with 4002.
    s = zim_session_new (edge, 8, NULL);
    const uint8_t *msg;
    size_t size;
    assert (zim_session_receive (s, "ab", 2, true, &msg, &size) == 1);
    assert (size == 2 && memcmp (msg, "ab", 2) == 0);
    assert (zim_session_receive (s, "cd", 2, false, &msg, &size) == 0);
    assert (zim_session_receive (s, "ef", 2, true, &msg, &size) == 1);
    assert (size == 4 && memcmp (msg, "cdef", 4) == 0);
    assert (zim_session_receive (s, page, 600, false, &msg, &size) == 0);
    assert (zim_session_receive (s, page, 600, true, &msg, &size) == -1);
    assert (zim_session_closing (s) && edge->too_large == 1);
    assert (zim_session_receive (s, "x", 1, true, &msg, &size) == 0); //  closing: ignored
    zim_session_destroy (&s);
    zim_session_destroy (&s);
    zim_edge_destroy (&edge);
}
