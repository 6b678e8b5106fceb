/*  zim_client.c: the C client SDK over the libwebsockets client API.

    One zim_loop_t is one lws context with no listener; each zim_client_t is
    one client wsi whose user data is the client itself. Outgoing frames are
    appended to a queue of chunks, each holding whole frames and at most
    max_message bytes; every writable event writes one chunk as one binary
    WebSocket message. Sends also live in a list of pending records (with a
    copy of their frame) until their ack, so they can fail cleanly or be
    resent with the same cid after a reconnect.

    Memory is never freed inside an lws callback: a client destroyed while
    the loop is servicing is marked dead and freed by zim_loop_run once lws
    has let go of its wsi.
*/
#include "config.h"
#include "sdk/c/zim_client.h"
#include "msg/zim_mp.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <libwebsockets.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define S_DEFAULT_URL "ws://127.0.0.1:7700/ws"
#define S_MAX_RX (16u << 20)    //  largest server message we accept
#define S_HELD_MAX 4096         //  live messages held back while syncing
#define S_HELD_BYTES (4u << 20) //  and their bytes
#define S_GAP_GRACE_US 300000   //  wait this long for a missing seq before syncing
#define S_CHUNK_MIN 4096        //  first allocation of an output chunk

//  ---------------------------------------------------------------------
//  Internal types.

//  A send awaiting its ack.
typedef struct s_pending {
    struct s_pending *next, *prev; //  list in send order
    bool inflight;                 //  in the output queue or written on this connection
    uint64_t queued_us;            //  when it went into the output queue
    char cid[ZIM_CLIENT_CID_SIZE]; //  its client message id
    size_t len;                    //  bytes of frame
    unsigned char frame[];         //  the encoded send frame
} s_pending_t;

//  One block of the output queue: whole frames, written as one message.
typedef struct s_chunk {
    struct s_chunk *next; //  next chunk in the queue
    size_t size;          //  payload bytes used
    size_t alloc;         //  payload bytes allocated
    unsigned char *buf;   //  LWS_PRE bytes of headroom, then the payload
} s_chunk_t;

//  A live message held back until the seqs before it are in, or an own
//  ack's seq (frame NULL) that fills a place in the inbox order.
typedef struct {
    uint64_t seq;         //  its inbox seq
    unsigned char *frame; //  copy of the raw msg frame, or NULL
    size_t len;           //  bytes of frame
} s_held_t;

//  A decoded server frame; views borrow the received message.
typedef struct {
    zim_str_t op, cid, text, uid, app, device;
    int64_t code;
    uint64_t id, seq, ts, rid, t;
    bool has_rid, has_code, more;
    zim_rd_t msgs;  //  page: reader at the first item
    uint32_t nmsgs; //  page: how many items
} s_sframe_t;

struct _zim_loop_t {
    struct lws_context *ctx;     //  the lws context (client only)
    lws_sorted_usec_list_t wake; //  bounds one zim_loop_run wait
    zim_client_t *clients;       //  every client of this loop
    int depth;                   //  > 0 while lws_service runs
    bool destroying;             //  inside zim_loop_destroy: no timers, no callbacks
    uint64_t events;             //  client events handled so far (ends a zim_loop_run)
};

struct _zim_client_t {
    zim_loop_t *loop;          //  our loop, NULL once it was destroyed
    zim_client_t *next, *prev; //  in the loop's list
    zim_client_config_t cfg;   //  configuration, defaults applied
    char *url;                 //  our copy of cfg.url
    char *token;               //  our copy of cfg.token
    char *device;              //  our copy of cfg.device, or NULL
    char *address;             //  host from the url
    int port;                  //  port from the url
    bool ssl;                  //  wss://
    char *base_path;           //  path (and query) from the url, with leading '/'
    char *path;                //  the request path sent (may carry the token)
    char *host_hdr;            //  Host and Origin header

    struct lws *wsi;          //  the connection, NULL when none
    bool conn_live;           //  a connection attempt is under way or open
    zim_client_state_t state; //  as last reported
    int close_code;           //  why the current connection is ending, 0 if unknown
    char close_text[256];     //  and what it said
    bool auth_sent;           //  the auth frame went out on this connection
    bool closing;             //  zim_client_close was called
    bool dead;                //  zim_client_destroy was called: no more callbacks
    uint32_t attempt;         //  reconnect attempts since the last auth_ok
    uint32_t retry_attempt;   //  retries after retryable errors since the last ack
    uint64_t last_rx_us;      //  when the server last sent something

    s_chunk_t *head, *tail; //  output queue
    s_chunk_t *spare;       //  one free chunk kept for reuse
    size_t queued;          //  payload bytes in the queue
    uint64_t cursor_want;   //  highest cursor asked for
    uint64_t cursor_sent;   //  highest cursor written

    s_pending_t *p_head, *p_tail; //  sends awaiting an ack, in send order
    size_t npending;              //  how many
    char cid_prefix[16];          //  random prefix of generated cids
    uint64_t cid_counter;         //  suffix of generated cids

    uint64_t next_rid; //  next request id
    uint64_t *rids;    //  user sync/history requests in flight
    size_t nrids, rids_alloc;

    int64_t last_seq;  //  highest inbox seq seen in order, -1 unknown
    bool syncing;      //  auto_sync: one of our syncs is in flight
    uint64_t sync_rid; //  its request id
    bool resync;       //  sync again when this one ends (held overflow)
    s_held_t *held;    //  held live messages, sorted by seq
    size_t nheld, held_alloc, held_bytes;

    unsigned char *rx; //  a message arriving in fragments
    size_t rx_size, rx_alloc;
    zim_client_msg_t *page_msgs; //  decoded page items for on_page
    size_t page_alloc;
    char uid[ZIM_CLIENT_ID_MAX + 1]; //  from auth_ok
    zim_wr_t wr;                     //  scratch writer for frames
    uint64_t rng;                    //  xorshift state for jitter

    lws_sorted_usec_list_t sul_connect;  //  (re)connect
    lws_sorted_usec_list_t sul_deadline; //  connect + auth timeout
    lws_sorted_usec_list_t sul_ping;     //  heartbeat
    lws_sorted_usec_list_t sul_retry;    //  resend after a retryable error
    lws_sorted_usec_list_t sul_notify;   //  deferred CLOSED after zim_client_close
    lws_sorted_usec_list_t sul_gap;      //  auto_sync gap grace timer
    lws_sorted_usec_list_t sul_ack;      //  ack timeout checks
};

static int s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);
static void s_conn_end (zim_client_t *self, int code, const char *text);
static void s_start_sync (zim_client_t *self);
static void s_drain_held (zim_client_t *self);
static void s_ping_timer (lws_sorted_usec_list_t *sul);
static void s_ack_timer (lws_sorted_usec_list_t *sul);

static const struct lws_protocols s_protocols[] = {{"zim", s_callback, 0, 16384, 0, NULL, 1u << 20},
                                                   {NULL, NULL, 0, 0, 0, NULL, 0}};

//  ---------------------------------------------------------------------
//  Small helpers.

//  Next pseudo-random number (xorshift64*), for jitter.
static uint64_t s_rand (zim_client_t *self)
{
    uint64_t x = self->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

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

//  Percent-encodes s for a URL query value, appending to out (size bytes).
static void s_url_escape (char *out, size_t size, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen (out);
    for (; *s && n + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            out[n++] = (char)c;
        else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = 0;
}

//  Schedules sul on the loop us microseconds from now.
static void s_schedule (zim_client_t *self, lws_sorted_usec_list_t *sul, sul_cb_t cb, uint64_t us)
{
    if (self->loop && !self->loop->destroying)
        lws_sul_schedule (self->loop->ctx, 0, sul, cb, (lws_usec_t)us);
}

//  Cancels every timer of the client.
static void s_cancel_timers (zim_client_t *self)
{
    if (!self->loop)
        return;
    lws_sul_cancel (&self->sul_connect);
    lws_sul_cancel (&self->sul_deadline);
    lws_sul_cancel (&self->sul_ping);
    lws_sul_cancel (&self->sul_retry);
    lws_sul_cancel (&self->sul_notify);
    lws_sul_cancel (&self->sul_gap);
    lws_sul_cancel (&self->sul_ack);
}

//  Counts an event for zim_loop_run.
static void s_count_event (zim_client_t *self)
{
    if (self->loop)
        self->loop->events++;
}

//  True when the application must hear nothing more from this client.
static bool s_quiet (zim_client_t *self)
{
    return self->dead || !self->loop || self->loop->destroying;
}

//  Reports a state change (and remembers it).
static void s_emit_state (zim_client_t *self, zim_client_state_t state, int code)
{
    self->state = state;
    if (!s_quiet (self) && self->cfg.on_state)
        self->cfg.on_state (self, state, code, self->cfg.arg);
}

//  Reports an error.
static void s_emit_error (zim_client_t *self, int code, const char *text, const char *cid,
                          bool has_rid, uint64_t rid)
{
    if (s_quiet (self) || !self->cfg.on_error)
        return;
    zim_client_error_t e = {code, text ? text : "", cid, has_rid, rid};
    self->cfg.on_error (self, &e, self->cfg.arg);
}

//  Delay before reconnect attempt n: exponential, capped, with "equal
//  jitter" (half fixed, half random) so that clients cut off together do
//  not come back together.
static uint64_t s_backoff_us (zim_client_t *self, uint32_t n)
{
    uint64_t ms = self->cfg.backoff_min_ms;
    for (uint32_t i = 0; i < n && ms < self->cfg.backoff_max_ms; i++)
        ms *= 2;
    if (ms > self->cfg.backoff_max_ms)
        ms = self->cfg.backoff_max_ms;
    uint64_t half = ms / 2;
    return (half + (half ? s_rand (self) % (half + 1) : 0)) * 1000;
}

//  ---------------------------------------------------------------------
//  Client frame encoders. Key order matches docs/PROTOCOL.md's vectors.

static void s_enc_auth (zim_wr_t *wr, const char *token, const char *device)
{
    zim_wr_map (wr, device ? 3 : 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "auth");
    zim_wr_cstr (wr, "token");
    zim_wr_cstr (wr, token);
    if (device) {
        zim_wr_cstr (wr, "device");
        zim_wr_cstr (wr, device);
    }
}

static void s_enc_ping (zim_wr_t *wr, uint64_t t)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "ping");
    zim_wr_cstr (wr, "t");
    zim_wr_uint (wr, t);
}

static void s_enc_send (zim_wr_t *wr, const char *to, const char *cid, const void *body, size_t len)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "to");
    zim_wr_cstr (wr, to);
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, cid);
    zim_wr_cstr (wr, "body");
    zim_wr_raw (wr, body, len);
}

//  since < 0 omits since (the device's cursor); limit 0 omits limit.
static void s_enc_sync (zim_wr_t *wr, int64_t since, uint32_t limit, uint64_t rid)
{
    zim_wr_map (wr, 2 + (since >= 0) + (limit > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "sync");
    if (since >= 0) {
        zim_wr_cstr (wr, "since");
        zim_wr_uint (wr, (uint64_t)since);
    }
    if (limit > 0) {
        zim_wr_cstr (wr, "limit");
        zim_wr_uint (wr, limit);
    }
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

static void s_enc_cursor (zim_wr_t *wr, uint64_t seq)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "cursor");
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, seq);
}

static void s_enc_history (zim_wr_t *wr, const char *peer, uint64_t before, uint32_t limit,
                           uint64_t rid)
{
    zim_wr_map (wr, 4 + (limit > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "history");
    zim_wr_cstr (wr, "peer");
    zim_wr_cstr (wr, peer);
    zim_wr_cstr (wr, "before");
    zim_wr_uint (wr, before);
    if (limit > 0) {
        zim_wr_cstr (wr, "limit");
        zim_wr_uint (wr, limit);
    }
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

//  ---------------------------------------------------------------------
//  Server frame decoders. Unknown keys are skipped (newer servers may add
//  fields); a known key with the wrong type fails the frame.

//  Decodes one server frame from rd. Returns 0 or -1 (malformed; rd is then
//  somewhere inside the frame and the rest of the message must be dropped).
static int s_sframe_decode (zim_rd_t *rd, s_sframe_t *f)
{
    memset (f, 0, sizeof *f);
    uint32_t n;
    if (zim_rd_map (rd, &n))
        goto malformed;
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key;
        if (zim_rd_peek (rd) != ZIM_MP_STR) {
            if (zim_rd_skip (rd, NULL) || zim_rd_skip (rd, NULL))
                goto malformed;
            continue;
        }
        if (zim_rd_str (rd, &key))
            goto malformed;
        int rc = 0;
        if (zim_str_eq (key, "op"))
            rc = zim_rd_str (rd, &f->op);
        else if (zim_str_eq (key, "cid"))
            rc = zim_rd_str (rd, &f->cid);
        else if (zim_str_eq (key, "text"))
            rc = zim_rd_str (rd, &f->text);
        else if (zim_str_eq (key, "uid"))
            rc = zim_rd_str (rd, &f->uid);
        else if (zim_str_eq (key, "app"))
            rc = zim_rd_str (rd, &f->app);
        else if (zim_str_eq (key, "device"))
            rc = zim_rd_str (rd, &f->device);
        else if (zim_str_eq (key, "code")) {
            rc = zim_rd_int (rd, &f->code);
            f->has_code = rc == 0;
        } else if (zim_str_eq (key, "id"))
            rc = zim_rd_uint (rd, &f->id);
        else if (zim_str_eq (key, "seq"))
            rc = zim_rd_uint (rd, &f->seq);
        else if (zim_str_eq (key, "ts"))
            rc = zim_rd_uint (rd, &f->ts);
        else if (zim_str_eq (key, "rid")) {
            rc = zim_rd_uint (rd, &f->rid);
            f->has_rid = rc == 0;
        } else if (zim_str_eq (key, "more"))
            rc = zim_rd_bool (rd, &f->more);
        else if (zim_str_eq (key, "t")) {
            //  t is whatever the ping carried; ours are uints
            if (zim_rd_uint (rd, &f->t))
                rc = zim_rd_skip (rd, NULL);
        } else if (zim_str_eq (key, "msgs")) {
            rc = zim_rd_array (rd, &f->nmsgs);
            f->msgs = *rd;
            for (uint32_t j = 0; rc == 0 && j < f->nmsgs; j++)
                rc = zim_rd_skip (rd, NULL);
        } else
            rc = zim_rd_skip (rd, NULL);
        if (rc)
            goto malformed;
    }
    if (!f->op.ptr)
        goto malformed;
    return 0;
malformed:
    return -1;
}

//  Copies a string view into a fixed buffer; -1 if it does not fit.
static int s_copy (char *buf, size_t size, zim_str_t v)
{
    if (v.len >= size)
        return -1;
    if (v.len)
        memcpy (buf, v.ptr, v.len);
    buf[v.len] = 0;
    return 0;
}

//  Decodes one message map (a live msg frame or a page item) into m.
//  Returns 0 or -1.
static int s_msg_decode (zim_rd_t *rd, zim_client_msg_t *m)
{
    memset (m, 0, sizeof *m);
    uint32_t n;
    bool has_id = false, has_body = false;
    if (zim_rd_map (rd, &n))
        goto malformed;
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key, v;
        if (zim_rd_peek (rd) != ZIM_MP_STR) {
            if (zim_rd_skip (rd, NULL) || zim_rd_skip (rd, NULL))
                goto malformed;
            continue;
        }
        if (zim_rd_str (rd, &key))
            goto malformed;
        int rc;
        if (zim_str_eq (key, "seq"))
            rc = zim_rd_uint (rd, &m->seq);
        else if (zim_str_eq (key, "id")) {
            rc = zim_rd_uint (rd, &m->id);
            has_id = true;
        } else if (zim_str_eq (key, "ts"))
            rc = zim_rd_uint (rd, &m->ts);
        else if (zim_str_eq (key, "from"))
            rc = zim_rd_str (rd, &v) || s_copy (m->from, sizeof m->from, v);
        else if (zim_str_eq (key, "to"))
            rc = zim_rd_str (rd, &v) || s_copy (m->to, sizeof m->to, v);
        else if (zim_str_eq (key, "conv"))
            rc = zim_rd_str (rd, &v) || s_copy (m->conv, sizeof m->conv, v);
        else if (zim_str_eq (key, "body")) {
            rc = zim_rd_skip (rd, &v);
            m->body = v.ptr;
            m->body_len = v.len;
            has_body = true;
        } else
            rc = zim_rd_skip (rd, NULL);
        if (rc)
            goto malformed;
    }
    if (!has_id || !has_body)
        goto malformed;
    return 0;
malformed:
    return -1;
}

//  ---------------------------------------------------------------------
//  Output queue.

//  Appends one encoded frame to the queue, starting a new chunk when the
//  tail would go over max_message. force skips the max_queue bound (for
//  frames the client itself must get out: auth, cursor, resends).
//  Returns 0 or -1 (queue full, or the frame alone is over max_message).
static int s_enqueue (zim_client_t *self, const void *frame, size_t len, bool force)
{
    if (len > self->cfg.max_message)
        return -1;
    if (!force && self->queued + len > self->cfg.max_queue)
        return -1;
    s_chunk_t *c = self->tail;
    if (!c || c->size + len > self->cfg.max_message) {
        c = self->spare;
        if (c)
            self->spare = NULL;
        else {
            c = zim_calloc (1, sizeof *c);
            c->alloc = S_CHUNK_MIN;
            c->buf = zim_malloc (LWS_PRE + c->alloc);
        }
        c->size = 0;
        c->next = NULL;
        if (self->tail)
            self->tail->next = c;
        else
            self->head = c;
        self->tail = c;
    }
    if (c->size + len > c->alloc) {
        size_t alloc = c->alloc;
        while (alloc < c->size + len)
            alloc *= 2;
        if (alloc > self->cfg.max_message)
            alloc = self->cfg.max_message;
        c->buf = zim_realloc (c->buf, LWS_PRE + alloc);
        c->alloc = alloc;
    }
    memcpy (c->buf + LWS_PRE + c->size, frame, len);
    c->size += len;
    self->queued += len;
    return 0;
}

//  Frees one chunk, or keeps it as the spare.
static void s_chunk_release (zim_client_t *self, s_chunk_t *c)
{
    if (!self->spare && c->alloc <= 65536) {
        self->spare = c;
        return;
    }
    free (c->buf);
    free (c);
}

//  Drops everything queued.
static void s_queue_clear (zim_client_t *self)
{
    while (self->head) {
        s_chunk_t *c = self->head;
        self->head = c->next;
        s_chunk_release (self, c);
    }
    self->tail = NULL;
    self->queued = 0;
}

//  Asks for a writable callback if there is a connection that can write.
static void s_want_write (zim_client_t *self)
{
    if (self->wsi && self->state == ZIM_CLIENT_AUTHED)
        lws_callback_on_writable (self->wsi);
}

//  Encodes with the scratch writer and queues; returns 0 or -1.
static int s_queue_wr (zim_client_t *self, bool force)
{
    int rc = s_enqueue (self, self->wr.data, self->wr.size, force);
    zim_wr_reset (&self->wr);
    if (rc == 0)
        s_want_write (self);
    return rc;
}

//  Puts every send that waits for a connection into the queue, in order.
static void s_queue_waiting (zim_client_t *self)
{
    uint64_t now = zim_mono_us ();
    for (s_pending_t *p = self->p_head; p; p = p->next)
        if (!p->inflight) {
            s_enqueue (self, p->frame, p->len, true);
            p->inflight = true;
            p->queued_us = now;
        }
    s_want_write (self);
}

//  ---------------------------------------------------------------------
//  Pending sends and requests.

//  Unlinks and frees one pending send.
static void s_pending_remove (zim_client_t *self, s_pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        self->p_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        self->p_tail = p->prev;
    self->npending--;
    free (p);
}

//  Finds the pending send with this cid. Acks come in send order, so the
//  head is nearly always the one.
static s_pending_t *s_pending_find (zim_client_t *self, zim_str_t cid)
{
    for (s_pending_t *p = self->p_head; p; p = p->next)
        if (zim_str_eq (cid, p->cid))
            return p;
    return NULL;
}

//  Fails pending sends with code: all of them, or only those in flight.
//  Sends that the error callbacks make are new and are left alone.
static void s_pending_fail (zim_client_t *self, bool only_inflight, int code, const char *text)
{
    s_pending_t *p = self->p_head;
    size_t left = self->npending;
    while (p && left-- > 0 && !self->dead) {
        s_pending_t *next = p->next;
        if (!only_inflight || p->inflight) {
            char cid[ZIM_CLIENT_CID_SIZE];
            memcpy (cid, p->cid, sizeof cid);
            s_pending_remove (self, p);
            s_emit_error (self, code, text, cid, false, 0);
        }
        p = next;
    }
}

//  Remembers a user request id until its answer.
static void s_rid_add (zim_client_t *self, uint64_t rid)
{
    if (self->nrids == self->rids_alloc) {
        self->rids_alloc = self->rids_alloc ? self->rids_alloc * 2 : 8;
        self->rids = zim_realloc (self->rids, self->rids_alloc * sizeof *self->rids);
    }
    self->rids[self->nrids++] = rid;
}

//  Forgets a request id; returns true if it was ours and outstanding.
static bool s_rid_remove (zim_client_t *self, uint64_t rid)
{
    for (size_t i = 0; i < self->nrids; i++)
        if (self->rids[i] == rid) {
            self->rids[i] = self->rids[--self->nrids];
            return true;
        }
    return false;
}

//  ---------------------------------------------------------------------
//  Inbox order (auto_sync).

//  Frees every held message.
static void s_held_clear (zim_client_t *self)
{
    for (size_t i = 0; i < self->nheld; i++)
        free (self->held[i].frame);
    self->nheld = 0;
    self->held_bytes = 0;
}

//  Holds a live message (frame) or an own seq (frame NULL) until its turn.
//  On overflow everything held is dropped and a sync will fetch it instead.
static void s_hold (zim_client_t *self, uint64_t seq, const void *frame, size_t len)
{
    for (size_t i = 0; i < self->nheld; i++)
        if (self->held[i].seq == seq)
            return; //  a duplicate
    if (self->nheld >= S_HELD_MAX || self->held_bytes + len > S_HELD_BYTES) {
        s_held_clear (self);
        self->resync = true;
        return;
    }
    if (self->nheld == self->held_alloc) {
        self->held_alloc = self->held_alloc ? self->held_alloc * 2 : 16;
        self->held = zim_realloc (self->held, self->held_alloc * sizeof *self->held);
    }
    size_t i = self->nheld;
    while (i > 0 && self->held[i - 1].seq > seq) {
        self->held[i] = self->held[i - 1];
        i--;
    }
    self->held[i].seq = seq;
    self->held[i].len = len;
    self->held[i].frame = NULL;
    if (frame) {
        self->held[i].frame = zim_malloc (len);
        memcpy (self->held[i].frame, frame, len);
    }
    self->held_bytes += len;
    self->nheld++;
}

//  Hands one message to the application and moves last_seq.
static void s_deliver (zim_client_t *self, const zim_client_msg_t *m)
{
    if (m->seq && (int64_t)m->seq > self->last_seq)
        self->last_seq = (int64_t)m->seq;
    if (!s_quiet (self) && self->cfg.on_msg)
        self->cfg.on_msg (self, m, self->cfg.arg);
}

//  The gap grace timer: a seq is still missing, so fetch it by sync.
static void s_gap_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_gap);
    s_count_event (self);
    if (!self->syncing && self->state == ZIM_CLIENT_AUTHED && (self->nheld > 0 || self->resync))
        s_start_sync (self);
}

//  Delivers held messages that are next in order; if a gap remains, arms
//  the grace timer.
static void s_drain_held (zim_client_t *self)
{
    if (self->last_seq < 0 && self->nheld > 0)
        self->last_seq = (int64_t)self->held[0].seq - 1;
    size_t i = 0;
    while (i < self->nheld && !self->dead) {
        s_held_t *h = &self->held[i];
        if ((int64_t)h->seq <= self->last_seq) {
            i++;
            continue;
        }
        if ((int64_t)h->seq != self->last_seq + 1)
            break;
        if (h->frame) {
            zim_rd_t rd;
            zim_client_msg_t m;
            zim_rd_init (&rd, h->frame, h->len);
            if (s_msg_decode (&rd, &m) == 0)
                s_deliver (self, &m);
        }
        self->last_seq = (int64_t)h->seq;
        i++;
    }
    //  the callback may have destroyed us, or held more: recount from i
    if (i > 0) {
        for (size_t j = 0; j < i && j < self->nheld; j++) {
            self->held_bytes -= self->held[j].len;
            free (self->held[j].frame);
        }
        if (i > self->nheld)
            i = self->nheld;
        memmove (self->held, self->held + i, (self->nheld - i) * sizeof *self->held);
        self->nheld -= i;
    }
    if (self->dead)
        return;
    if ((self->nheld > 0 || self->resync) && !self->syncing)
        s_schedule (self, &self->sul_gap, s_gap_timer, self->resync ? 0 : S_GAP_GRACE_US);
    else if (self->nheld == 0)
        lws_sul_cancel (&self->sul_gap);
}

//  Sends one of our own syncs, from last_seq (or the configured start).
static void s_start_sync (zim_client_t *self)
{
    int64_t since = self->last_seq;
    if (since < 0)
        since = self->cfg.has_since ? (int64_t)self->cfg.since : -1;
    self->sync_rid = self->next_rid++;
    self->syncing = true;
    self->resync = false;
    lws_sul_cancel (&self->sul_gap);
    s_enc_sync (&self->wr, since, self->cfg.sync_limit, self->sync_rid);
    s_queue_wr (self, true);
}

//  A live msg frame arrived (raw is the whole frame, m its decoding).
static void s_on_live (zim_client_t *self, const void *raw, size_t len, const zim_client_msg_t *m)
{
    if (!self->cfg.auto_sync || m->seq == 0) {
        s_deliver (self, m);
        return;
    }
    int64_t seq = (int64_t)m->seq;
    if (self->syncing)
        s_hold (self, m->seq, raw, len);
    else if (self->last_seq < 0 || seq == self->last_seq + 1) {
        s_deliver (self, m);
        s_drain_held (self);
    } else if (seq > self->last_seq) {
        s_hold (self, m->seq, raw, len);
        s_drain_held (self);
    }
    //  else: a duplicate of something delivered; dropped
}

//  An ack's seq is a place in our own inbox that this connection will not
//  get a msg for: account for it so it is not taken for a gap.
static void s_on_own_seq (zim_client_t *self, uint64_t seq)
{
    if (!self->cfg.auto_sync || seq == 0) {
        if ((int64_t)seq > self->last_seq)
            self->last_seq = (int64_t)seq;
        return;
    }
    if (self->syncing || (self->last_seq >= 0 && (int64_t)seq > self->last_seq + 1)) {
        s_hold (self, seq, NULL, 0);
        if (!self->syncing)
            s_drain_held (self);
    } else if ((int64_t)seq > self->last_seq) {
        self->last_seq = (int64_t)seq;
        s_drain_held (self);
    }
}

//  ---------------------------------------------------------------------
//  Incoming frames.

//  auth_ok: the connection is usable.
static void s_on_auth_ok (zim_client_t *self, const s_sframe_t *f)
{
    s_copy (self->uid, sizeof self->uid, f->uid);
    lws_sul_cancel (&self->sul_deadline);
    self->attempt = 0;
    self->state = ZIM_CLIENT_AUTHED;
    if (self->cfg.auto_sync)
        s_start_sync (self);
    s_queue_waiting (self);
    s_want_write (self);
    if (!self->cfg.no_ping)
        s_schedule (self, &self->sul_ping, s_ping_timer,
                    (uint64_t)self->cfg.ping_interval_ms * 1000);
    if (self->cfg.ack_timeout_ms)
        s_schedule (self, &self->sul_ack, s_ack_timer, (uint64_t)self->cfg.ack_timeout_ms * 250);
    s_emit_state (self, ZIM_CLIENT_AUTHED, 0);
}

//  ack: a send is stored.
static void s_on_ack (zim_client_t *self, const s_sframe_t *f)
{
    char cid[ZIM_CLIENT_CID_SIZE];
    if (s_copy (cid, sizeof cid, f->cid))
        return;
    s_pending_t *p = s_pending_find (self, f->cid);
    if (!p)
        return; //  a duplicate ack (a retry raced the first answer)
    s_pending_remove (self, p);
    self->retry_attempt = 0;
    s_on_own_seq (self, f->seq);
    if (!s_quiet (self) && self->cfg.on_ack) {
        zim_client_ack_t a = {cid, f->id, f->seq, f->ts};
        self->cfg.on_ack (self, &a, self->cfg.arg);
    }
}

//  Retryable server errors: the same send may succeed later.
static bool s_retryable (int64_t code)
{
    return code == ZIM_ERR_RATE_LIMITED || code == ZIM_ERR_INTERNAL ||
           code == ZIM_ERR_UNAVAILABLE || code == ZIM_ERR_TIMEOUT;
}

//  The retry timer: resend every send that waits.
static void s_retry_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_retry);
    s_count_event (self);
    if (self->state == ZIM_CLIENT_AUTHED)
        s_queue_waiting (self);
}

//  The ack timer: a send in flight for longer than ack_timeout_ms is resent
//  with its cid (retry) or fails with ZIM_CLIENT_ERR_TIMEOUT.
static void s_ack_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_ack);
    s_count_event (self);
    if (self->state != ZIM_CLIENT_AUTHED || !self->wsi)
        return;
    uint64_t now = zim_mono_us ();
    uint64_t limit = (uint64_t)self->cfg.ack_timeout_ms * 1000;
    bool resend = false;
    s_pending_t *p = self->p_head;
    size_t left = self->npending;
    while (p && left-- > 0 && !self->dead) {
        s_pending_t *next = p->next;
        if (p->inflight && now - p->queued_us > limit) {
            if (self->cfg.retry) {
                p->inflight = false;
                resend = true;
            } else {
                char cid[ZIM_CLIENT_CID_SIZE];
                memcpy (cid, p->cid, sizeof cid);
                s_pending_remove (self, p);
                s_emit_error (self, ZIM_CLIENT_ERR_TIMEOUT, "no ack in time", cid, false, 0);
            }
        }
        p = next;
    }
    if (self->dead || self->state != ZIM_CLIENT_AUTHED || !self->wsi)
        return;
    if (resend)
        s_queue_waiting (self);
    s_schedule (self, &self->sul_ack, s_ack_timer, limit / 4 > 10000 ? limit / 4 : 10000);
}

//  error: a request failed, or the connection is in trouble.
static void s_on_error (zim_client_t *self, const s_sframe_t *f)
{
    char text[256], cid[ZIM_CLIENT_CID_SIZE];
    size_t n = f->text.len < sizeof text - 1 ? f->text.len : sizeof text - 1;
    memcpy (text, f->text.ptr ? f->text.ptr : "", n);
    text[n] = 0;
    int code = (int)f->code;
    if (f->cid.ptr) {
        if (s_copy (cid, sizeof cid, f->cid))
            return;
        s_pending_t *p = s_pending_find (self, f->cid);
        if (!p)
            return;
        if (self->cfg.retry && s_retryable (code)) {
            p->inflight = false;
            s_schedule (self, &self->sul_retry, s_retry_timer,
                        s_backoff_us (self, self->retry_attempt++));
            return;
        }
        s_pending_remove (self, p);
        s_emit_error (self, code, text, cid, false, 0);
        return;
    }
    if (f->has_rid) {
        if (self->syncing && f->rid == self->sync_rid) {
            //  our own sync failed: try again a little later
            self->syncing = false;
            self->resync = true;
            s_schedule (self, &self->sul_gap, s_gap_timer, 1000000);
            return;
        }
        if (!s_rid_remove (self, f->rid))
            return;
        s_emit_error (self, code, text, NULL, true, f->rid);
        return;
    }
    //  A connection-level error. Before auth_ok an auth failure ends the
    //  connection: nothing else can work with this token.
    if (self->state == ZIM_CLIENT_OPEN &&
        (code == ZIM_ERR_BAD_TOKEN || code == ZIM_ERR_TOKEN_EXPIRED ||
         code == ZIM_ERR_AUTH_REQUIRED)) {
        self->close_code = code;
        snprintf (self->close_text, sizeof self->close_text, "%s", text);
        s_emit_error (self, code, text, NULL, false, 0);
        if (self->wsi)
            lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    if (code >= 4000 && !self->close_code) {
        //  the server may be about to close (4080, 4090, 4002): remember why
        if (code == ZIM_ERR_IDLE_TIMEOUT || code == ZIM_ERR_SLOW_CONSUMER ||
            code == ZIM_ERR_TOO_LARGE) {
            self->close_code = code;
            snprintf (self->close_text, sizeof self->close_text, "%s", text);
        }
    }
    s_emit_error (self, code, text, NULL, false, 0);
}

//  page: decode items into page_msgs; returns the count or -1.
static int s_page_decode (zim_client_t *self, const s_sframe_t *f)
{
    if (f->nmsgs > self->page_alloc) {
        self->page_alloc = f->nmsgs;
        self->page_msgs = zim_realloc (self->page_msgs, self->page_alloc * sizeof *self->page_msgs);
    }
    zim_rd_t rd = f->msgs;
    for (uint32_t i = 0; i < f->nmsgs; i++)
        if (s_msg_decode (&rd, &self->page_msgs[i]))
            return -1;
    return (int)f->nmsgs;
}

static void s_on_page (zim_client_t *self, const s_sframe_t *f)
{
    int n = s_page_decode (self, f);
    if (n < 0) {
        s_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed page", NULL, f->has_rid, f->rid);
        return;
    }
    if (self->syncing && f->rid == self->sync_rid) {
        for (int i = 0; i < n && !self->dead; i++) {
            const zim_client_msg_t *m = &self->page_msgs[i];
            if (self->last_seq < 0 || (int64_t)m->seq > self->last_seq)
                s_deliver (self, m);
        }
        self->syncing = false;
        if (self->dead)
            return;
        if (f->more && n > 0)
            s_start_sync (self);
        else {
            s_drain_held (self);
            if (self->resync && !self->syncing && !self->dead)
                s_start_sync (self);
        }
        return;
    }
    if (!s_rid_remove (self, f->rid))
        return;
    if (!s_quiet (self) && self->cfg.on_page) {
        zim_client_page_t p = {f->rid, f->more, self->page_msgs, (size_t)n};
        self->cfg.on_page (self, &p, self->cfg.arg);
    }
}

//  Handles one WebSocket message: one or more frames back to back.
//  Returns 0, or -1 when the connection should close.
static int s_on_message (zim_client_t *self, const unsigned char *data, size_t len)
{
    zim_rd_t rd;
    zim_rd_init (&rd, data, len);
    while (zim_rd_left (&rd) > 0) {
        if (self->dead || !self->conn_live)
            return -1;
        const unsigned char *start = rd.pos;
        s_sframe_t f;
        if (s_sframe_decode (&rd, &f)) {
            s_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed frame from the server", NULL,
                          false, 0);
            return 0;
        }
        if (zim_str_eq (f.op, "msg")) {
            zim_rd_t mr;
            zim_client_msg_t m;
            zim_rd_init (&mr, start, (size_t)(rd.pos - start));
            if (s_msg_decode (&mr, &m) == 0)
                s_on_live (self, start, (size_t)(rd.pos - start), &m);
            else
                s_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed msg", NULL, false, 0);
        } else if (zim_str_eq (f.op, "ack"))
            s_on_ack (self, &f);
        else if (zim_str_eq (f.op, "page"))
            s_on_page (self, &f);
        else if (zim_str_eq (f.op, "error"))
            s_on_error (self, &f);
        else if (zim_str_eq (f.op, "auth_ok"))
            s_on_auth_ok (self, &f);
        else if (zim_str_eq (f.op, "pong")) {
            if (!s_quiet (self) && self->cfg.on_pong)
                self->cfg.on_pong (self, f.t, self->cfg.arg);
        }
        //  other ops: from a newer server; ignored
    }
    return self->dead ? -1 : 0;
}

//  ---------------------------------------------------------------------
//  Connection lifecycle.

//  The deadline timer: no auth_ok in time.
static void s_deadline_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_deadline);
    s_count_event (self);
    if (!self->conn_live || self->state == ZIM_CLIENT_AUTHED)
        return;
    self->close_code = ZIM_CLIENT_ERR_TIMEOUT;
    snprintf (self->close_text, sizeof self->close_text, "no auth_ok within %u ms",
              self->cfg.connect_timeout_ms);
    if (self->wsi)
        lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    else
        s_conn_end (self, ZIM_CLIENT_ERR_TIMEOUT, self->close_text);
}

//  The ping timer: ping, and give up on a server that went silent.
static void s_ping_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_ping);
    s_count_event (self);
    if (!self->wsi || self->state != ZIM_CLIENT_AUTHED)
        return;
    uint64_t now = zim_mono_us ();
    uint64_t interval = (uint64_t)self->cfg.ping_interval_ms * 1000;
    if (now - self->last_rx_us > 2 * interval) {
        self->close_code = ZIM_CLIENT_ERR_TIMEOUT;
        snprintf (self->close_text, sizeof self->close_text, "server silent for %u ms",
                  (unsigned)((now - self->last_rx_us) / 1000));
        lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    s_enc_ping (&self->wr, now);
    s_queue_wr (self, true);
    s_schedule (self, &self->sul_ping, s_ping_timer, interval);
}

//  Starts one connection attempt.
static void s_connect (zim_client_t *self)
{
    if (self->dead || !self->loop || self->conn_live)
        return;
    self->close_code = 0;
    self->close_text[0] = 0;
    self->auth_sent = false;
    self->conn_live = true;
    self->last_rx_us = zim_mono_us ();
    s_schedule (self, &self->sul_deadline, s_deadline_timer,
                (uint64_t)self->cfg.connect_timeout_ms * 1000);
    s_emit_state (self, ZIM_CLIENT_CONNECTING, 0);
    if (self->dead || !self->conn_live)
        return;

    struct lws_client_connect_info ci;
    memset (&ci, 0, sizeof ci);
    ci.context = self->loop->ctx;
    ci.address = self->address;
    ci.port = self->port;
    ci.path = self->path;
    ci.host = self->host_hdr;
    ci.origin = self->host_hdr;
    ci.ssl_connection = self->ssl ? LCCSCF_USE_SSL : 0;
    ci.local_protocol_name = s_protocols[0].name;
    ci.userdata = self;
    ci.opaque_user_data = self;
    ci.pwsi = &self->wsi;
    if (!lws_client_connect_via_info (&ci)) {
        self->wsi = NULL;
        s_conn_end (self, ZIM_CLIENT_ERR_CONNECT, "could not start the connection");
    }
}

static void s_connect_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_connect);
    s_count_event (self);
    s_connect (self);
}

//  The connection (or the attempt) is over: fail or keep what was in
//  flight, then reconnect or close for good. Idempotent per connection.
static void s_conn_end (zim_client_t *self, int code, const char *text)
{
    if (!self->conn_live)
        return;
    self->conn_live = false;
    self->wsi = NULL;
    if (self->close_code) {
        code = self->close_code;
        text = self->close_text;
    }
    if (self->closing && code == ZIM_CLIENT_ERR_LOST)
        code = 0;
    if (!text)
        text = "";
    if (self->loop) {
        lws_sul_cancel (&self->sul_deadline);
        lws_sul_cancel (&self->sul_ping);
        lws_sul_cancel (&self->sul_retry);
        lws_sul_cancel (&self->sul_ack);
    }
    s_queue_clear (self);
    self->cursor_sent = 0; //  resend the cursor on the next connection
    self->syncing = false;
    self->rx_size = 0;

    //  Requests in flight will get no answer now.
    char why[320];
    snprintf (why, sizeof why, "connection closed before the answer%s%s%s", *text ? " (" : "", text,
              *text ? ")" : "");
    //  (requests the callbacks make go into a fresh list, for the next connection)
    uint64_t *rids = self->rids;
    size_t nrids = self->nrids;
    self->rids = NULL;
    self->nrids = self->rids_alloc = 0;
    for (size_t i = 0; i < nrids && !self->dead; i++)
        s_emit_error (self, ZIM_CLIENT_ERR_LOST, why, NULL, true, rids[i]);
    free (rids);
    bool fatal =
        code == ZIM_ERR_BAD_TOKEN || code == ZIM_ERR_TOKEN_EXPIRED || code == ZIM_ERR_AUTH_REQUIRED;
    bool again = self->cfg.reconnect && !self->closing && !fatal && !s_quiet (self);
    if (self->cfg.retry) {
        for (s_pending_t *p = self->p_head; p; p = p->next)
            p->inflight = false;
    } else {
        snprintf (why, sizeof why, "connection closed before the ack%s%s%s", *text ? " (" : "",
                  text, *text ? ")" : "");
        s_pending_fail (self, again, ZIM_CLIENT_ERR_LOST, why);
    }
    if (self->dead)
        return;
    if (again) {
        uint64_t delay = s_backoff_us (self, self->attempt++);
        s_schedule (self, &self->sul_connect, s_connect_timer, delay);
        s_emit_state (self, ZIM_CLIENT_WAITING, code);
    } else {
        self->closing = false;
        s_emit_state (self, ZIM_CLIENT_CLOSED, code);
    }
}

//  The notify timer: report CLOSED for a close without a connection.
static void s_notify_timer (lws_sorted_usec_list_t *sul)
{
    zim_client_t *self = lws_container_of (sul, zim_client_t, sul_notify);
    s_count_event (self);
    if (self->conn_live || self->state == ZIM_CLIENT_CLOSED)
        return;
    self->closing = false;
    if (!self->cfg.retry)
        s_pending_fail (self, false, ZIM_CLIENT_ERR_LOST, "client closed");
    s_emit_state (self, ZIM_CLIENT_CLOSED, 0);
}

//  Writes the auth frame or the head of the queue.
static int s_on_writable (zim_client_t *self, struct lws *wsi)
{
    if (self->dead)
        return -1;
    if (self->state == ZIM_CLIENT_OPEN) {
        if (!self->cfg.token_in_url && !self->auth_sent) {
            s_enc_auth (&self->wr, self->token, self->device);
            size_t n = self->wr.size;
            unsigned char *buf = zim_malloc (LWS_PRE + n);
            memcpy (buf + LWS_PRE, self->wr.data, n);
            zim_wr_reset (&self->wr);
            int rc = lws_write (wsi, buf + LWS_PRE, n, LWS_WRITE_BINARY);
            free (buf);
            if (rc < (int)n)
                return -1;
            self->auth_sent = true;
        }
        return 0;
    }
    if (self->state != ZIM_CLIENT_AUTHED)
        return 0;
    if (self->cursor_want > self->cursor_sent) {
        s_enc_cursor (&self->wr, self->cursor_want);
        s_enqueue (self, self->wr.data, self->wr.size, true);
        zim_wr_reset (&self->wr);
        self->cursor_sent = self->cursor_want;
    }
    s_chunk_t *c = self->head;
    if (c) {
        self->head = c->next;
        if (!self->head)
            self->tail = NULL;
        self->queued -= c->size;
        int rc = lws_write (wsi, c->buf + LWS_PRE, c->size, LWS_WRITE_BINARY);
        size_t size = c->size;
        s_chunk_release (self, c);
        if (rc < (int)size) {
            snprintf (self->close_text, sizeof self->close_text, "write failed");
            return -1;
        }
        if (self->head || self->closing)
            lws_callback_on_writable (wsi);
        return 0;
    }
    if (self->closing) {
        lws_close_reason (wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    return 0;
}

//  Collects fragments; handles the message once it is complete.
static int s_on_receive (zim_client_t *self, struct lws *wsi, const void *in, size_t len)
{
    self->last_rx_us = zim_mono_us ();
    bool complete = lws_is_final_fragment (wsi) && lws_remaining_packet_payload (wsi) == 0;
    if (complete && self->rx_size == 0)
        return s_on_message (self, in, len);
    if (self->rx_size + len > S_MAX_RX) {
        self->close_code = ZIM_CLIENT_ERR_PROTOCOL;
        snprintf (self->close_text, sizeof self->close_text, "server message over %u bytes",
                  S_MAX_RX);
        return -1;
    }
    if (self->rx_size + len > self->rx_alloc) {
        size_t alloc = self->rx_alloc ? self->rx_alloc : 65536;
        while (alloc < self->rx_size + len)
            alloc *= 2;
        self->rx = zim_realloc (self->rx, alloc);
        self->rx_alloc = alloc;
    }
    memcpy (self->rx + self->rx_size, in, len);
    self->rx_size += len;
    if (!complete)
        return 0;
    //  handle a copy of the length: callbacks may start a new message
    size_t size = self->rx_size;
    self->rx_size = 0;
    int rc = s_on_message (self, self->rx, size);
    if (self->rx_alloc > (1u << 20)) {
        free (self->rx);
        self->rx = NULL;
        self->rx_alloc = 0;
    }
    return rc;
}

static int s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    zim_client_t *self = user ? (zim_client_t *)user : NULL;
    if (!self && wsi)
        self = (zim_client_t *)lws_get_opaque_user_data (wsi);
    if (!self)
        return 0;
    if (self->loop)
        self->loop->events++;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        if (wsi != self->wsi && self->wsi)
            return 0;
        int status = (int)lws_http_client_http_response (wsi);
        char text[160];
        snprintf (text, sizeof text, "%s%.*s", status ? "" : "connect failed: ", in ? (int)len : 0,
                  in ? (const char *)in : "");
        int code = ZIM_CLIENT_ERR_CONNECT;
        if (status == 401 || status == 403) {
            code = ZIM_ERR_BAD_TOKEN;
            snprintf (text, sizeof text, "token refused (HTTP %d)", status);
        } else if (status)
            snprintf (text, sizeof text, "WebSocket upgrade refused (HTTP %d)", status);
        if (!self->close_code) {
            self->close_code = code;
            snprintf (self->close_text, sizeof self->close_text, "%s", text);
        }
        s_emit_error (self, self->close_code, self->close_text, NULL, false, 0);
        s_conn_end (self, code, text);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (wsi != self->wsi || self->dead)
            return -1;
        self->last_rx_us = zim_mono_us ();
        s_emit_state (self, ZIM_CLIENT_OPEN, 0);
        if (self->dead || self->closing)
            return -1;
        if (!self->cfg.token_in_url)
            lws_callback_on_writable (wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (wsi != self->wsi || self->dead)
            return -1;
        return s_on_receive (self, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (wsi != self->wsi)
            return -1;
        return s_on_writable (self, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (wsi == self->wsi && len >= 2 && !self->close_code) {
            const unsigned char *p = in;
            int status = (p[0] << 8) | p[1];
            if (status >= 4000) {
                self->close_code = status;
                snprintf (self->close_text, sizeof self->close_text, "%.*s", (int)(len - 2),
                          (const char *)in + 2);
            }
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (wsi == self->wsi)
            s_conn_end (self, ZIM_CLIENT_ERR_LOST, "connection lost");
        return 0;
    default:
        return 0;
    }
}

//  ---------------------------------------------------------------------
//  The loop.

//  The wake timer bounds a wait; if it runs before the wait (its time had
//  already come), it re-arms itself 1 ms later so the wait stays short.
static void s_wake (lws_sorted_usec_list_t *sul)
{
    zim_loop_t *self = lws_container_of (sul, zim_loop_t, wake);
    lws_sul_schedule (self->ctx, 0, &self->wake, s_wake, 1000);
}

zim_loop_t *zim_loop_new (void)
{
    //  lws logs notices to stderr by default; a library keeps quiet unless
    //  something is wrong. ZIM_LWS_LOG=N sets the lws log mask.
    const char *env = getenv ("ZIM_LWS_LOG");
    lws_set_log_level (env ? atoi (env) : LLL_ERR, NULL);

    zim_loop_t *self = zim_calloc (1, sizeof *self);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s_protocols;
    info.gid = -1;
    info.uid = -1;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.pt_serv_buf_size = 65536;
    self->ctx = lws_create_context (&info);
    if (!self->ctx) {
        free (self);
        return NULL;
    }
    return self;
}

//  Frees a client's memory; its wsi is gone and its timers are cancelled.
static void s_free (zim_client_t *self)
{
    if (self->loop) {
        if (self->prev)
            self->prev->next = self->next;
        else
            self->loop->clients = self->next;
        if (self->next)
            self->next->prev = self->prev;
    }
    s_queue_clear (self);
    if (self->spare) {
        free (self->spare->buf);
        free (self->spare);
    }
    while (self->p_head)
        s_pending_remove (self, self->p_head);
    s_held_clear (self);
    free (self->held);
    free (self->rids);
    free (self->rx);
    free (self->page_msgs);
    zim_wr_free (&self->wr);
    free (self->url);
    free (self->token);
    free (self->device);
    free (self->address);
    free (self->base_path);
    free (self->path);
    free (self->host_hdr);
    free (self);
}

//  Frees the dead clients that lws has let go of.
static void s_reap (zim_loop_t *self)
{
    zim_client_t *c = self->clients;
    while (c) {
        zim_client_t *next = c->next;
        if (c->dead && !c->wsi)
            s_free (c);
        c = next;
    }
}

int zim_loop_run (zim_loop_t *self, int timeout_ms)
{
    //  lws_service returns after one poll round, which may end early (a
    //  timer less than 1 ms away makes poll wait 0 ms): keep servicing until
    //  something of ours happened or the time is up.
    int rc = 0;
    uint64_t events = self->events;
    uint64_t deadline = zim_mono_us () + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    self->depth++;
    if (timeout_ms == 0)
        rc = lws_service (self->ctx, -1);
    else
        do {
            if (timeout_ms > 0) {
                uint64_t now = zim_mono_us ();
                if (now >= deadline)
                    break;
                lws_sul_schedule (self->ctx, 0, &self->wake, s_wake, (lws_usec_t)(deadline - now));
            }
            rc = lws_service (self->ctx, 0);
            lws_sul_cancel (&self->wake);
        } while (rc >= 0 && self->events == events);
    self->depth--;
    s_reap (self);
    return rc < 0 ? -1 : 0;
}

void zim_loop_destroy (zim_loop_t **self_p)
{
    zim_loop_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (zim_client_t *c = self->clients; c; c = c->next)
        s_cancel_timers (c);
    self->destroying = true;
    //  closes every wsi: their callbacks end each connection (silently for
    //  dead clients; live ones get CLOSED)
    self->depth++;
    lws_context_destroy (self->ctx);
    self->depth--;
    zim_client_t *c = self->clients;
    while (c) {
        zim_client_t *next = c->next;
        c->wsi = NULL;
        c->conn_live = false;
        if (c->dead) {
            c->loop = NULL;
            c->prev = c->next = NULL;
            s_free (c);
        } else {
            //  still owned by the application: detach it
            c->loop = NULL;
            c->prev = c->next = NULL;
            c->state = ZIM_CLIENT_CLOSED;
        }
        c = next;
    }
    free (self);
}

//  ---------------------------------------------------------------------
//  The client.

//  Splits the url (ws[s]://host[:port][/path]) into address, port and
//  path; returns 0 or -1. IPv6 addresses go in brackets.
static int s_parse_url (zim_client_t *self)
{
    const char *u = self->url;
    if (strncmp (u, "ws://", 5) == 0)
        u += 5;
    else if (strncmp (u, "wss://", 6) == 0) {
        u += 6;
        self->ssl = true;
    } else
        return -1;
    const char *host = u, *host_end;
    if (*u == '[') {
        host = u + 1;
        host_end = strchr (host, ']');
        if (!host_end)
            return -1;
        u = host_end + 1;
    } else {
        host_end = u + strcspn (u, ":/?");
        u = host_end;
    }
    if (host_end == host)
        return -1;
    int port = self->ssl ? 443 : 80;
    if (*u == ':') {
        char *end;
        long p = strtol (u + 1, &end, 10);
        if (end == u + 1 || p <= 0 || p > 65535)
            return -1;
        port = (int)p;
        u = end;
    }
    if (*u && *u != '/' && *u != '?')
        return -1;
    size_t hlen = (size_t)(host_end - host);
    self->address = zim_malloc (hlen + 1);
    memcpy (self->address, host, hlen);
    self->address[hlen] = 0;
    self->port = port;
    size_t n = strlen (u) + 2;
    self->base_path = zim_malloc (n);
    snprintf (self->base_path, n, "%s%s", *u == '/' ? "" : "/", u);
    size_t h = hlen + 16;
    self->host_hdr = zim_malloc (h);
    bool v6 = memchr (host, ':', hlen) != NULL;
    if (port == (self->ssl ? 443 : 80))
        snprintf (self->host_hdr, h, v6 ? "[%s]" : "%s", self->address);
    else
        snprintf (self->host_hdr, h, v6 ? "[%s]:%d" : "%s:%d", self->address, port);
    return 0;
}

//  Builds the request path: base path plus, with token_in_url, the token
//  and device as query parameters.
static void s_build_path (zim_client_t *self)
{
    free (self->path);
    if (!self->cfg.token_in_url) {
        self->path = zim_strdup (self->base_path);
        return;
    }
    size_t size = strlen (self->base_path) + 3 * strlen (self->token) +
                  (self->device ? 3 * strlen (self->device) : 0) + 32;
    self->path = zim_malloc (size);
    snprintf (self->path, size, "%s%stoken=", self->base_path,
              strchr (self->base_path, '?') ? "&" : "?");
    s_url_escape (self->path, size, self->token);
    if (self->device) {
        strcat (self->path, "&device=");
        s_url_escape (self->path, size, self->device);
    }
}

zim_client_t *zim_client_new (zim_loop_t *loop, const zim_client_config_t *cfg)
{
    if (!loop || !cfg || !cfg->token || !*cfg->token)
        return NULL;
    if (cfg->device && !zim_cid_valid (zim_str (cfg->device)))
        return NULL;
    zim_client_t *self = zim_calloc (1, sizeof *self);
    self->cfg = *cfg;
    self->url = zim_strdup (cfg->url ? cfg->url : S_DEFAULT_URL);
    self->token = zim_strdup (cfg->token);
    self->device = cfg->device ? zim_strdup (cfg->device) : NULL;
    self->cfg.url = self->url;
    self->cfg.token = self->token;
    self->cfg.device = self->device;
    if (!self->cfg.max_queue)
        self->cfg.max_queue = 1u << 20;
    if (!self->cfg.max_unacked)
        self->cfg.max_unacked = 10000;
    if (!self->cfg.max_message)
        self->cfg.max_message = 65536;
    if (self->cfg.max_message < 256)
        self->cfg.max_message = 256;
    if (!self->cfg.connect_timeout_ms)
        self->cfg.connect_timeout_ms = 10000;
    if (!self->cfg.ping_interval_ms)
        self->cfg.ping_interval_ms = 30000;
    if (!self->cfg.backoff_min_ms)
        self->cfg.backoff_min_ms = 250;
    if (!self->cfg.backoff_max_ms)
        self->cfg.backoff_max_ms = 30000;
    if (self->cfg.backoff_max_ms < self->cfg.backoff_min_ms)
        self->cfg.backoff_max_ms = self->cfg.backoff_min_ms;
    if (!self->cfg.sync_limit)
        self->cfg.sync_limit = 1000;
    zim_wr_init (&self->wr);
    self->last_seq = -1;
    self->next_rid = 1;
    self->state = ZIM_CLIENT_CLOSED;

    uint8_t rnd[16];
    s_random_bytes (rnd, sizeof rnd);
    static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
    for (int i = 0; i < 12; i++)
        self->cid_prefix[i] = digits[rnd[i] & 31];
    self->cid_prefix[12] = 0;
    memcpy (&self->rng, rnd + 8, 8);
    self->rng |= 1;

    if (s_parse_url (self)) {
        s_free (self);
        return NULL;
    }
    s_build_path (self);
    self->loop = loop;
    self->next = loop->clients;
    if (loop->clients)
        loop->clients->prev = self;
    loop->clients = self;
    s_schedule (self, &self->sul_connect, s_connect_timer, 0);
    return self;
}

void zim_client_destroy (zim_client_t **self_p)
{
    zim_client_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->dead = true;
    s_cancel_timers (self);
    if (!self->loop) {
        s_free (self);
        return;
    }
    if (self->wsi) {
        if (self->loop->depth == 0)
            lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        else
            lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    if (!self->wsi) {
        self->conn_live = false;
        if (self->loop->depth == 0)
            s_free (self);
    }
    //  else zim_loop_run or zim_loop_destroy frees it once lws lets go
}

int zim_client_connect (zim_client_t *self)
{
    if (self->dead || !self->loop || self->conn_live || self->state != ZIM_CLIENT_CLOSED)
        return -1;
    lws_sul_cancel (&self->sul_notify);
    self->closing = false;
    self->attempt = 0;
    s_schedule (self, &self->sul_connect, s_connect_timer, 0);
    return 0;
}

void zim_client_set_token (zim_client_t *self, const char *token)
{
    if (!token || !*token)
        return;
    free (self->token);
    self->token = zim_strdup (token);
    self->cfg.token = self->token;
    s_build_path (self);
}

void zim_client_close (zim_client_t *self)
{
    if (self->dead || !self->loop)
        return;
    self->closing = true;
    lws_sul_cancel (&self->sul_connect);
    lws_sul_cancel (&self->sul_retry);
    if (self->wsi && self->state == ZIM_CLIENT_AUTHED)
        lws_callback_on_writable (self->wsi); //  flush, then close
    else if (self->wsi)
        lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    else if (!self->conn_live && self->state != ZIM_CLIENT_CLOSED)
        s_schedule (self, &self->sul_notify, s_notify_timer, 0);
}

zim_client_state_t zim_client_state (zim_client_t *self)
{
    return self->state;
}

const char *zim_client_uid (zim_client_t *self)
{
    return self->uid;
}

int zim_client_send (zim_client_t *self, const char *to, const char *cid, const void *body,
                     size_t len, char *cid_out)
{
    if (self->dead || !to || !body || len == 0 || !zim_uid_valid (zim_str (to)))
        return -1;
    if (self->npending >= self->cfg.max_unacked)
        return -1;
    char gen[ZIM_CLIENT_CID_SIZE];
    if (cid) {
        if (!zim_cid_valid (zim_str (cid)))
            return -1;
    } else {
        snprintf (gen, sizeof gen, "%s.%" PRIu64, self->cid_prefix, ++self->cid_counter);
        cid = gen;
    }
    //  the body must be exactly one msgpack value
    zim_rd_t rd;
    zim_rd_init (&rd, body, len);
    if (zim_rd_skip (&rd, NULL) || zim_rd_left (&rd) != 0)
        return -1;
    s_enc_send (&self->wr, to, cid, body, len);
    size_t n = self->wr.size;
    if (n > self->cfg.max_message) {
        zim_wr_reset (&self->wr);
        return -1;
    }
    bool now = self->state == ZIM_CLIENT_AUTHED && self->wsi;
    if (now && self->queued + n > self->cfg.max_queue) {
        zim_wr_reset (&self->wr);
        return -1;
    }
    s_pending_t *p = zim_malloc (sizeof *p + n);
    memset (p, 0, sizeof *p);
    memcpy (p->cid, cid, strlen (cid) + 1);
    p->len = n;
    memcpy (p->frame, self->wr.data, n);
    zim_wr_reset (&self->wr);
    p->prev = self->p_tail;
    if (self->p_tail)
        self->p_tail->next = p;
    else
        self->p_head = p;
    self->p_tail = p;
    self->npending++;
    if (now) {
        s_enqueue (self, p->frame, n, false);
        p->inflight = true;
        p->queued_us = zim_mono_us ();
        lws_callback_on_writable (self->wsi);
    }
    if (cid_out)
        memcpy (cid_out, p->cid, strlen (p->cid) + 1);
    return 0;
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

int zim_client_sync (zim_client_t *self, int64_t since, uint32_t limit, uint64_t *rid_out)
{
    if (self->dead)
        return -1;
    uint64_t rid = self->next_rid++;
    s_enc_sync (&self->wr, since < 0 ? -1 : since, limit, rid);
    if (s_queue_wr (self, false))
        return -1;
    s_rid_add (self, rid);
    if (rid_out)
        *rid_out = rid;
    return 0;
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
    uint64_t rid = self->next_rid++;
    s_enc_history (&self->wr, peer, before, limit, rid);
    if (s_queue_wr (self, false))
        return -1;
    s_rid_add (self, rid);
    if (rid_out)
        *rid_out = rid;
    return 0;
}

int zim_client_ping (zim_client_t *self, uint64_t t)
{
    if (self->dead)
        return -1;
    s_enc_ping (&self->wr, t);
    return s_queue_wr (self, false);
}

size_t zim_client_unacked (zim_client_t *self)
{
    return self->npending;
}

int64_t zim_client_last_seq (zim_client_t *self)
{
    return self->last_seq;
}

//  ---------------------------------------------------------------------
//  msgpack to JSON.

//  A growable text buffer.
typedef struct {
    char *data;   //  the text, NUL-terminated
    size_t size;  //  bytes used, without the NUL
    size_t alloc; //  bytes allocated
} s_text_t;

static void s_text_reserve (s_text_t *t, size_t more)
{
    if (t->size + more + 1 <= t->alloc)
        return;
    size_t alloc = t->alloc ? t->alloc : 64;
    while (alloc < t->size + more + 1)
        alloc *= 2;
    t->data = zim_realloc (t->data, alloc);
    t->alloc = alloc;
}

static void s_text_add (s_text_t *t, const char *s, size_t n)
{
    s_text_reserve (t, n);
    memcpy (t->data + t->size, s, n);
    t->size += n;
    t->data[t->size] = 0;
}

static void s_text_cstr (s_text_t *t, const char *s)
{
    s_text_add (t, s, strlen (s));
}

static void s_text_char (s_text_t *t, char c)
{
    s_text_add (t, &c, 1);
}

//  Length of the valid UTF-8 sequence at p (at most n bytes), or 0.
static size_t s_utf8_len (const unsigned char *p, size_t n)
{
    uint32_t cp;
    size_t len;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
    } else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    //  no overlong forms, no surrogates, nothing above U+10FFFF
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

//  Appends bytes as a JSON string with quotes.
static void s_text_jstr (s_text_t *t, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    s_text_reserve (t, n + 2);
    s_text_char (t, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            s_text_add (t, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char esc[8];
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named)
                s_text_cstr (t, named);
            else {
                snprintf (esc, sizeof esc, "\\u%04x", c);
                s_text_cstr (t, esc);
            }
            i++;
        } else if (c < 0x80) {
            //  copy the run of plain ASCII at once
            size_t j = i;
            while (j < n && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\')
                j++;
            s_text_add (t, s + i, j - i);
            i = j;
        } else {
            size_t len = s_utf8_len (p + i, n - i);
            if (len) {
                s_text_add (t, s + i, len);
                i += len;
            } else {
                s_text_cstr (t, "\\ufffd");
                i++;
            }
        }
    }
    s_text_char (t, '"');
}

//  Appends bytes as a base64 string with quotes.
static void s_text_b64 (s_text_t *t, const unsigned char *p, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s_text_reserve (t, (n + 2) / 3 * 4 + 2);
    s_text_char (t, '"');
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        char q[4] = {b64[p[i] >> 2], b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     b64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], b64[p[i + 2] & 63]};
        s_text_add (t, q, 4);
    }
    if (n - i == 1) {
        char q[4] = {b64[p[i] >> 2], b64[(p[i] & 3) << 4], '=', '='};
        s_text_add (t, q, 4);
    } else if (n - i == 2) {
        char q[4] = {b64[p[i] >> 2], b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     b64[(p[i + 1] & 15) << 2], '='};
        s_text_add (t, q, 4);
    }
    s_text_char (t, '"');
}

//  Reads a big-endian unsigned integer of n bytes.
static uint64_t s_be (const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

//  One open container while converting.
typedef struct {
    uint32_t left; //  elements (arrays) or pairs (maps) still to come
    bool map;      //  a map
    bool first;    //  nothing written inside yet
    bool want_key; //  maps: the next value is a key
} s_jlevel_t;

static int s_json_value (s_text_t *t, zim_rd_t *rd, int key_depth);

//  Converts one scalar (not array or map) value. Returns 0 or -1.
static int s_json_scalar (s_text_t *t, zim_rd_t *rd)
{
    char num[40];
    zim_str_t v;
    switch (zim_rd_peek (rd)) {
    case ZIM_MP_NIL:
        if (zim_rd_nil (rd))
            return -1;
        s_text_cstr (t, "null");
        return 0;
    case ZIM_MP_BOOL: {
        bool b;
        if (zim_rd_bool (rd, &b))
            return -1;
        s_text_cstr (t, b ? "true" : "false");
        return 0;
    }
    case ZIM_MP_UINT: {
        uint64_t u;
        if (zim_rd_uint (rd, &u))
            return -1;
        snprintf (num, sizeof num, "%" PRIu64, u);
        s_text_cstr (t, num);
        return 0;
    }
    case ZIM_MP_INT: {
        int64_t i;
        if (zim_rd_int (rd, &i))
            return -1;
        snprintf (num, sizeof num, "%" PRId64, i);
        s_text_cstr (t, num);
        return 0;
    }
    case ZIM_MP_FLOAT: {
        if (zim_rd_skip (rd, &v))
            return -1;
        const unsigned char *p = (const unsigned char *)v.ptr;
        double d;
        if (p[0] == 0xca && v.len == 5) {
            uint32_t bits = (uint32_t)s_be (p + 1, 4);
            float f;
            memcpy (&f, &bits, 4);
            d = f;
        } else if (p[0] == 0xcb && v.len == 9) {
            uint64_t bits = s_be (p + 1, 8);
            memcpy (&d, &bits, 8);
        } else
            return -1;
        if (isnan (d) || isinf (d))
            s_text_cstr (t, "null");
        else {
            snprintf (num, sizeof num, "%.17g", d);
            s_text_cstr (t, num);
        }
        return 0;
    }
    case ZIM_MP_STR:
        if (zim_rd_str (rd, &v))
            return -1;
        s_text_jstr (t, v.ptr, v.len);
        return 0;
    case ZIM_MP_BIN:
        if (zim_rd_bin (rd, &v))
            return -1;
        s_text_b64 (t, (const unsigned char *)v.ptr, v.len);
        return 0;
    case ZIM_MP_EXT: {
        if (zim_rd_skip (rd, &v))
            return -1;
        const unsigned char *p = (const unsigned char *)v.ptr;
        size_t hdr;
        if (p[0] >= 0xd4 && p[0] <= 0xd8)
            hdr = 1; //  fixext: type follows
        else if (p[0] == 0xc7)
            hdr = 2;
        else if (p[0] == 0xc8)
            hdr = 3;
        else if (p[0] == 0xc9)
            hdr = 5;
        else
            return -1;
        if (v.len < hdr + 1)
            return -1;
        snprintf (num, sizeof num, "{\"ext\":%d,\"data\":", (int)(int8_t)p[hdr]);
        s_text_cstr (t, num);
        s_text_b64 (t, p + hdr + 1, v.len - hdr - 1);
        s_text_char (t, '}');
        return 0;
    }
    default:
        return -1;
    }
}

//  Converts one value of any type; containers are walked with an explicit
//  stack so that deep nesting cannot exhaust the C stack. Non-string map
//  keys recurse (their JSON text becomes the key), up to a small depth.
static int s_json_value (s_text_t *t, zim_rd_t *rd, int key_depth)
{
    s_jlevel_t *stack = NULL;
    size_t depth = 0, alloc = 0;
    do {
        if (depth > 0) {
            s_jlevel_t *top = &stack[depth - 1];
            if (top->map && top->want_key) {
                if (top->left == 0) {
                    s_text_char (t, '}');
                    depth--;
                    continue;
                }
                if (!top->first)
                    s_text_char (t, ',');
                top->first = false;
                top->want_key = false;
                zim_str_t key;
                if (zim_rd_peek (rd) == ZIM_MP_STR) {
                    if (zim_rd_str (rd, &key))
                        goto malformed;
                    s_text_jstr (t, key.ptr, key.len);
                } else {
                    if (key_depth >= 8 || zim_rd_skip (rd, &key))
                        goto malformed;
                    s_text_t kt = {NULL, 0, 0};
                    zim_rd_t kr;
                    zim_rd_init (&kr, key.ptr, key.len);
                    if (s_json_value (&kt, &kr, key_depth + 1)) {
                        free (kt.data);
                        goto malformed;
                    }
                    s_text_jstr (t, kt.data, kt.size);
                    free (kt.data);
                }
                s_text_char (t, ':');
                continue; //  now the value
            }
            if (top->map) {
                top->want_key = true;
                top->left--;
            } else {
                if (top->left == 0) {
                    s_text_char (t, ']');
                    depth--;
                    continue;
                }
                if (!top->first)
                    s_text_char (t, ',');
                top->first = false;
                top->left--;
            }
        }
        zim_mp_type_t type = zim_rd_peek (rd);
        if (type == ZIM_MP_ARRAY || type == ZIM_MP_MAP) {
            uint32_t count;
            if (type == ZIM_MP_ARRAY ? zim_rd_array (rd, &count) : zim_rd_map (rd, &count))
                goto malformed;
            //  every element takes at least one byte: refuse absurd counts early
            if (count > zim_rd_left (rd))
                goto malformed;
            if (depth == alloc) {
                alloc = alloc ? alloc * 2 : 16;
                stack = zim_realloc (stack, alloc * sizeof *stack);
            }
            stack[depth].left = count;
            stack[depth].map = type == ZIM_MP_MAP;
            stack[depth].first = true;
            stack[depth].want_key = true;
            depth++;
            s_text_char (t, type == ZIM_MP_MAP ? '{' : '[');
        } else if (s_json_scalar (t, rd))
            goto malformed;
    } while (depth > 0);
    free (stack);
    return 0;
malformed:
    free (stack);
    return -1;
}

char *zim_body_to_json (const void *msgpack, size_t len)
{
    if (!msgpack || len == 0)
        return NULL;
    s_text_t t = {NULL, 0, 0};
    zim_rd_t rd;
    zim_rd_init (&rd, msgpack, len);
    if (s_json_value (&t, &rd, 0) || zim_rd_left (&rd) != 0) {
        free (t.data);
        return NULL;
    }
    return t.data;
}

char *zim_json_string (const char *s)
{
    s_text_t t = {NULL, 0, 0};
    s_text_jstr (&t, s ? s : "", s ? strlen (s) : 0);
    return t.data;
}

//  ---------------------------------------------------------------------
//  Selftest: everything that needs no server. The SDK against a real
//  zim-server is tested by tests/ (it needs the whole server to link).

#include <assert.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)

//  What the selftest's callbacks saw.
typedef struct {
    int acks, errors, msgs, pages, states;
    uint64_t ack_seq, ack_id, last_msg_seq, page_rid;
    uint64_t seqs[64]; //  seqs of delivered messages, in order
    char last_cid[ZIM_CLIENT_CID_SIZE];
    char last_body[64];
    int last_error;
    zim_client_state_t state;
} s_seen_t;

static void s_t_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
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
    snprintf (s->last_cid, sizeof s->last_cid, "%s", e->cid ? e->cid : "");
}

static void s_t_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    s_seen_t *s = arg;
    if (s->msgs < 64)
        s->seqs[s->msgs] = m->seq;
    s->msgs++;
    s->last_msg_seq = m->seq;
    char *json = zim_body_to_json (m->body, m->body_len);
    snprintf (s->last_body, sizeof s->last_body, "%s", json ? json : "?");
    free (json);
}

static void s_t_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    s_seen_t *s = arg;
    s->pages++;
    s->page_rid = p->rid;
}

static void s_t_state (zim_client_t *c, zim_client_state_t state, int code, void *arg)
{
    s_seen_t *s = arg;
    s->states++;
    s->state = state;
}

//  Parses a hex string ("83 a2 6f ...") into buf; returns the length.
static size_t s_t_hex (const char *hex, unsigned char *buf, size_t size)
{
    size_t n = 0;
    unsigned int b;
    int used;
    while (n < size && sscanf (hex, " %2x%n", &b, &used) == 1) {
        buf[n++] = (unsigned char)b;
        hex += used;
    }
    return n;
}

//  True if the writer holds exactly the bytes of hex.
static bool s_t_same (zim_wr_t *wr, const char *hex)
{
    unsigned char buf[256];
    size_t n = s_t_hex (hex, buf, sizeof buf);
    bool same = n == wr->size && memcmp (buf, wr->data, n) == 0;
    zim_wr_reset (wr);
    return same;
}

//  Feeds an encoded server message to the client, as if it had arrived.
static void s_t_feed (zim_client_t *c, zim_wr_t *wr)
{
    c->conn_live = true;
    s_on_message (c, (const unsigned char *)wr->data, wr->size);
    zim_wr_reset (wr);
}

//  A msg frame for the reader bob with this seq and a string body.
static void s_t_msg_frame (zim_wr_t *wr, uint64_t seq, const char *text)
{
    zim_wr_t body;
    zim_wr_init (&body);
    zim_wr_cstr (&body, text);
    zim_item_t item = {seq,
                       1000 + seq,
                       1763856000000ull,
                       zim_str ("alice"),
                       zim_str ("bob"),
                       {body.data, body.size}};
    zim_cframe_msg (wr, &item);
    zim_wr_free (&body);
}

//  Decodes the frames queued in c; returns the `since` of the last sync
//  found (-1 if it had none, -2 if there was no sync) and clears the queue.
static int64_t s_t_queued_sync (zim_client_t *c, uint64_t *rid)
{
    int64_t since = -2;
    for (s_chunk_t *ch = c->head; ch; ch = ch->next) {
        zim_rd_t rd;
        zim_rd_init (&rd, ch->buf + LWS_PRE, ch->size);
        while (zim_rd_left (&rd)) {
            zim_cframe_t f;
            const char *why;
            assert (zim_cframe_decode (&rd, &f, &why) == 0);
            if (f.op == ZIM_OP_SYNC) {
                since = f.since;
                *rid = f.rid;
            }
        }
    }
    s_queue_clear (c);
    return since;
}

void zim_client_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);

    //  Client frames are byte for byte the vectors of docs/PROTOCOL.md.
    s_enc_auth (&wr, "TOKEN", "phone");
    assert (s_t_same (&wr, "83 a2 6f 70 a4 61 75 74 68 a5 74 6f 6b 65 6e a5 54 4f 4b 45 4e a6 64 "
                           "65 76 69 63 65 a5 70 68 6f 6e 65"));
    s_enc_ping (&wr, 1);
    assert (s_t_same (&wr, "82 a2 6f 70 a4 70 69 6e 67 a1 74 01"));
    s_enc_send (&wr, "bob", "c1", "\xa2hi", 3);
    assert (s_t_same (&wr, "84 a2 6f 70 a4 73 65 6e 64 a2 74 6f a3 62 6f 62 a3 63 69 64 a2 63 31 "
                           "a4 62 6f 64 79 a2 68 69"));
    s_enc_sync (&wr, 0, 100, 1);
    assert (s_t_same (&wr, "84 a2 6f 70 a4 73 79 6e 63 a5 73 69 6e 63 65 00 a5 6c 69 6d 69 74 64 "
                           "a3 72 69 64 01"));
    s_enc_cursor (&wr, 5);
    assert (s_t_same (&wr, "82 a2 6f 70 a6 63 75 72 73 6f 72 a3 73 65 71 05"));
    s_enc_history (&wr, "bob", 0, 20, 2);
    assert (s_t_same (&wr, "85 a2 6f 70 a7 68 69 73 74 6f 72 79 a4 70 65 65 72 a3 62 6f 62 a6 62 "
                           "65 66 6f 72 65 00 a5 6c 69 6d 69 74 14 a3 72 69 64 02"));
    //  and the server decodes what we send without since (stored cursor)
    s_enc_sync (&wr, -1, 0, 7);
    {
        zim_rd_t rd;
        zim_cframe_t f;
        const char *why;
        zim_rd_init (&rd, wr.data, wr.size);
        assert (zim_cframe_decode (&rd, &f, &why) == 0);
        assert (f.op == ZIM_OP_SYNC && f.since == -1 && f.rid == 7 && f.limit == 0);
        zim_wr_reset (&wr);
    }

    //  URLs.
    zim_loop_t *loop = zim_loop_new ();
    assert (loop);
    s_seen_t seen;
    memset (&seen, 0, sizeof seen);
    zim_client_config_t cfg = {0};
    cfg.token = "tok";
    cfg.on_ack = s_t_ack;
    cfg.on_error = s_t_error;
    cfg.on_msg = s_t_msg;
    cfg.on_page = s_t_page;
    cfg.on_state = s_t_state;
    cfg.arg = &seen;
    const char *bad_urls[] = {"http://x/ws",   "ws://",       "ws://:80/",   "ws://h:0/",
                              "ws://h:99999/", "ws://h:12x/", "ws://[::1/ws"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        cfg.url = bad_urls[i];
        assert (zim_client_new (loop, &cfg) == NULL);
    }
    cfg.url = "wss://example.com/ws?x=1";
    cfg.token_in_url = true;
    cfg.device = "my phone"; //  not a valid device name
    zim_client_t *c = zim_client_new (loop, &cfg);
    assert (c == NULL);
    cfg.device = "a/b";
    c = zim_client_new (loop, &cfg);
    assert (c && c->ssl && c->port == 443 && streq (c->address, "example.com"));
    assert (streq (c->path, "/ws?x=1&token=tok&device=a%2Fb"));
    assert (streq (c->host_hdr, "example.com"));
    zim_client_destroy (&c);
    assert (c == NULL);
    cfg.url = "ws://[::1]:7700";
    cfg.token_in_url = false;
    c = zim_client_new (loop, &cfg);
    assert (c && !c->ssl && c->port == 7700 && streq (c->address, "::1"));
    assert (streq (c->path, "/") && streq (c->host_hdr, "[::1]:7700"));
    zim_client_destroy (&c);

    //  A client that never connects: frames are fed to it directly.
    cfg.url = "ws://127.0.0.1:1/ws";
    cfg.device = NULL;
    c = zim_client_new (loop, &cfg);
    assert (c);
    //  send validation
    assert (zim_client_send_text (c, "bad uid!", NULL, "x", NULL) == -1);
    assert (zim_client_send_text (c, "bob", "bad cid", "x", NULL) == -1);
    assert (zim_client_send (c, "bob", NULL, "\x92\x01", 2, NULL) == -1); //  truncated body
    assert (zim_client_send (c, "bob", NULL, "\x01\x02", 2, NULL) == -1); //  two values
    char cid[ZIM_CLIENT_CID_SIZE], cid2[ZIM_CLIENT_CID_SIZE];
    assert (zim_client_send_text (c, "bob", NULL, "x", cid) == 0);
    assert (zim_client_send_text (c, "bob", NULL, "y", cid2) == 0);
    assert (strlen (cid) > 12 && !streq (cid, cid2));
    assert (zim_client_unacked (c) == 2);
    assert (zim_client_send_text (c, "bob", "c1", "hi", NULL) == 0);
    //  not connected: nothing is queued for the wire yet
    assert (c->queued == 0 && c->npending == 3);

    //  An ack and a msg coalesced in one WebSocket message (s2c-ack+msg).
    unsigned char vec[512];
    size_t vlen = s_t_hex (
        "85 a2 6f 70 a3 61 63 6b a3 63 69 64 a2 63 31 a2 69 64 cf 03 7a ec 2c 00 00 10 00 a3 73 "
        "65 71 01 a2 74 73 cf 00 00 01 9a ae 02 a4 00 88 a2 6f 70 a3 6d 73 67 a3 73 65 71 01 a2 "
        "69 64 cf 03 7a ec 2c 00 00 10 00 a4 66 72 6f 6d a5 61 6c 69 63 65 a2 74 6f a3 62 6f 62 "
        "a4 63 6f 6e 76 ab 70 3a 61 6c 69 63 65 3a 62 6f 62 a4 62 6f 64 79 a2 68 69 a2 74 73 cf "
        "00 00 01 9a ae 02 a4 00",
        vec, sizeof vec);
    c->conn_live = true;
    s_on_message (c, vec, vlen);
    assert (seen.acks == 1 && streq (seen.last_cid, "c1") && seen.ack_seq == 1);
    assert (seen.ack_id == 250772402995204096ull);
    assert (seen.msgs == 1 && seen.last_msg_seq == 1 && streq (seen.last_body, "\"hi\""));
    assert (zim_client_unacked (c) == 2);
    //  a duplicate ack for a cid no longer pending is ignored
    s_on_message (c, vec, vlen);
    assert (seen.acks == 1);

    //  An error for a pending send fails it; a truncated message stops
    //  at the broken frame with a protocol error.
    zim_cframe_error (&wr, ZIM_ERR_BAD_RECIPIENT, "bad recipient", zim_str (cid), false, 0);
    s_t_feed (c, &wr);
    assert (seen.errors == 1 && seen.last_error == ZIM_ERR_BAD_RECIPIENT &&
            streq (seen.last_cid, cid));
    assert (zim_client_unacked (c) == 1);
    s_on_message (c, vec, 20);
    assert (seen.errors == 2 && seen.last_error == ZIM_CLIENT_ERR_PROTOCOL);

    //  Output queue: frames pack into chunks of at most max_message bytes,
    //  and max_queue bounds what is waiting.
    c->cfg.max_message = 1000;
    c->cfg.max_queue = 2000;
    char frame[400];
    memset (frame, 0x90, sizeof frame);
    assert (s_enqueue (c, frame, 400, false) == 0);
    assert (s_enqueue (c, frame, 400, false) == 0);
    assert (s_enqueue (c, frame, 400, false) == 0); //  800 + 400 > 1000: second chunk
    assert (c->head != c->tail && c->head->size == 800 && c->tail->size == 400);
    assert (s_enqueue (c, frame, 400, false) == 0);
    assert (s_enqueue (c, frame, 400, false) == 0);
    assert (s_enqueue (c, frame, 400, false) == -1); //  queue full
    assert (s_enqueue (c, frame, 400, true) == 0);   //  unless forced
    char big[1001];
    memset (big, 0x90, sizeof big);
    assert (s_enqueue (c, big, sizeof big, true) == -1); //  over max_message
    assert (c->queued == 2400);
    s_queue_clear (c);
    assert (c->queued == 0 && !c->head && !c->tail && c->spare);
    c->cfg.max_message = 65536;
    c->cfg.max_queue = 1u << 20;

    //  Losing the connection fails the sends in flight (retry off).
    for (s_pending_t *p = c->p_head; p; p = p->next)
        p->inflight = true;
    int errors = seen.errors;
    s_conn_end (c, ZIM_CLIENT_ERR_LOST, "test");
    assert (seen.errors == errors + 1 && seen.last_error == ZIM_CLIENT_ERR_LOST);
    assert (zim_client_unacked (c) == 0 && seen.state == ZIM_CLIENT_CLOSED);
    zim_client_destroy (&c);

    //  auto_sync: in order, once, gaps filled by sync, own acks counted.
    memset (&seen, 0, sizeof seen);
    cfg.auto_sync = true;
    cfg.has_since = true;
    cfg.since = 0;
    c = zim_client_new (loop, &cfg);
    assert (c);
    c->state = ZIM_CLIENT_AUTHED;
    c->conn_live = true;
    s_start_sync (c);
    uint64_t rid = 0;
    assert (s_t_queued_sync (c, &rid) == 0 && c->syncing);
    //  live 4 arrives while syncing: held
    s_t_msg_frame (&wr, 4, "four");
    s_t_feed (c, &wr);
    assert (seen.msgs == 0 && c->nheld == 1);
    //  page 1..2, more
    zim_wr_t body;
    zim_wr_init (&body);
    zim_wr_cstr (&body, "p");
    zim_item_t item = {1, 1, 1, zim_str ("alice"), zim_str ("bob"), {body.data, body.size}};
    zim_cframe_page_begin (&wr, rid, true, 2);
    zim_cframe_page_item (&wr, &item);
    item.seq = 2;
    zim_cframe_page_item (&wr, &item);
    s_t_feed (c, &wr);
    assert (seen.msgs == 2 && seen.pages == 0 && c->last_seq == 2);
    assert (s_t_queued_sync (c, &rid) == 2 && c->syncing);
    //  page 2..4 (2 again: a duplicate), no more: 4 held is a dup too
    zim_cframe_page_begin (&wr, rid, false, 3);
    item.seq = 2;
    zim_cframe_page_item (&wr, &item);
    item.seq = 3;
    zim_cframe_page_item (&wr, &item);
    item.seq = 4;
    zim_cframe_page_item (&wr, &item);
    s_t_feed (c, &wr);
    assert (seen.msgs == 4 && c->last_seq == 4 && !c->syncing && c->nheld == 0);
    assert (seen.seqs[0] == 1 && seen.seqs[1] == 2 && seen.seqs[2] == 3 && seen.seqs[3] == 4);
    //  live 5 in order; 5 again dropped; 7 is a gap: held, 6 is our own ack
    s_t_msg_frame (&wr, 5, "five");
    s_t_feed (c, &wr);
    s_t_msg_frame (&wr, 5, "five");
    s_t_feed (c, &wr);
    assert (seen.msgs == 5 && c->last_seq == 5);
    s_t_msg_frame (&wr, 7, "seven");
    s_t_feed (c, &wr);
    assert (seen.msgs == 5 && c->nheld == 1);
    assert (zim_client_send_text (c, "alice", "own6", "mine", NULL) == 0);
    zim_cframe_ack (&wr, zim_str ("own6"), 99, 6, 1);
    s_t_feed (c, &wr);
    assert (seen.acks == 1 && seen.msgs == 6 && seen.last_msg_seq == 7 && c->last_seq == 7);
    assert (streq (seen.last_body, "\"seven\"") && c->nheld == 0);
    //  a real gap: 9 without 8; the grace timer would sync from 7
    s_t_msg_frame (&wr, 9, "nine");
    s_t_feed (c, &wr);
    assert (seen.msgs == 6 && c->nheld == 1 && !c->syncing);
    s_gap_timer (&c->sul_gap);
    assert (c->syncing && s_t_queued_sync (c, &rid) == 7);
    zim_cframe_page_begin (&wr, rid, false, 2);
    item.seq = 8;
    zim_cframe_page_item (&wr, &item);
    item.seq = 9;
    zim_cframe_page_item (&wr, &item);
    s_t_feed (c, &wr);
    assert (seen.msgs == 8 && c->last_seq == 9 && c->nheld == 0 && seen.pages == 0);
    //  a user sync still reaches on_page
    assert (zim_client_sync (c, 3, 10, &rid) == 0);
    s_queue_clear (c);
    zim_cframe_page_begin (&wr, rid, false, 0);
    s_t_feed (c, &wr);
    assert (seen.pages == 1 && seen.page_rid == rid);
    //  an unknown op and unknown keys are ignored
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "future");
    zim_wr_cstr (&wr, "x");
    zim_wr_array (&wr, 0);
    s_t_feed (c, &wr);
    assert (seen.errors == 0);
    zim_wr_free (&body);
    zim_client_destroy (&c);

    //  msgpack to JSON.
    struct {
        const char *hex;  //  msgpack
        const char *json; //  expected, NULL = refused
    } cases[] = {
        {"a2 68 69", "\"hi\""},
        {"c0", "null"},
        {"c3", "true"},
        {"ff", "-1"},
        {"d0 05", "5"},
        {"d3 00 00 00 00 00 00 00 07", "7"},
        {"cc ff", "255"},
        {"cf ff ff ff ff ff ff ff ff", "18446744073709551615"},
        {"d3 80 00 00 00 00 00 00 00", "-9223372036854775808"},
        {"cb 3f f8 00 00 00 00 00 00", "1.5"},
        {"cb 7f f8 00 00 00 00 00 00", "null"},
        {"ca 3f c0 00 00", "1.5"},
        {"82 a1 61 01 01 92 c2 a0", "{\"a\":1,\"1\":[false,\"\"]}"},
        {"81 92 01 02 c0", "{\"[1,2]\":null}"},
        {"c4 03 01 02 03", "\"AQID\""},
        {"c4 01 ff", "\"/w==\""},
        {"c4 00", "\"\""},
        {"d4 05 41", "{\"ext\":5,\"data\":\"QQ==\"}"},
        {"a5 22 5c 0a 01 7f", "\"\\\"\\\\\\n\\u0001\\u007f\""},
        {"a4 c3 a9 ff 41", "\"\xc3\xa9\\ufffdA\""},
        {"a3 ed a0 80", "\"\\ufffd\\ufffd\\ufffd\""}, //  a surrogate is not UTF-8
        {"90", "[]"},
        {"80", "{}"},
        {"91 80", "[{}]"},
        {"92 01", NULL},          //  truncated
        {"01 02", NULL},          //  two values
        {"dd ff ff ff ff", NULL}, //  absurd count
        {"c1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char mp[64];
        size_t n = s_t_hex (cases[i].hex, mp, sizeof mp);
        char *json = zim_body_to_json (mp, n);
        if (verbose || !(cases[i].json ? json && streq (json, cases[i].json) : json == NULL))
            printf ("\n%s -> %s (want %s)", cases[i].hex, json ? json : "NULL",
                    cases[i].json ? cases[i].json : "NULL");
        assert (cases[i].json ? json && streq (json, cases[i].json) : json == NULL);
        free (json);
    }
    //  Deep nesting does not exhaust the stack.
    size_t deep = 200000;
    unsigned char *mp = zim_malloc (deep + 1);
    memset (mp, 0x91, deep);
    mp[deep] = 0xc0;
    char *json = zim_body_to_json (mp, deep + 1);
    assert (json && strlen (json) == 2 * deep + 4 && json[0] == '[' && json[deep] == 'n');
    free (json);
    //  ... nor do deeply nested non-string keys (refused past a depth)
    memset (mp, 0x81, deep);
    json = zim_body_to_json (mp, deep + 1);
    assert (json == NULL);
    free (mp);
    json = zim_json_string ("a\"b\xff");
    assert (json && streq (json, "\"a\\\"b\\ufffd\""));
    free (json);

    //  The loop waits about as long as asked, with nothing to do (the
    //  first round may return early: lws finishes starting up).
    zim_loop_run (loop, 0);
    zim_loop_run (loop, 10);
    uint64_t t0 = zim_mono_us ();
    assert (zim_loop_run (loop, 50) == 0);
    uint64_t took = zim_mono_us () - t0;
    assert (took >= 40000 && took < 1000000);
    t0 = zim_mono_us ();
    assert (zim_loop_run (loop, 0) == 0);
    assert (zim_mono_us () - t0 < 100000);

    //  A refused connection reports CLOSED with ERR_CONNECT, or with
    //  reconnect on, WAITING and then tries again.
    memset (&seen, 0, sizeof seen);
    cfg.auto_sync = false;
    cfg.url = "ws://127.0.0.1:1/ws";
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
    for (int i = 0; i < 100 && c->attempt < 3; i++)
        zim_loop_run (loop, 20);
    if (verbose)
        fprintf (stderr, "\nreconnect: attempt %u state %d states %d\n", c->attempt, seen.state,
                 seen.states);
    assert (c->attempt >= 3 && seen.state != ZIM_CLIENT_CLOSED && seen.states >= 6);
    assert (zim_client_unacked (c) == 1); //  kept for the retry
    zim_client_close (c);
    for (int i = 0; i < 100 && seen.state != ZIM_CLIENT_CLOSED; i++)
        zim_loop_run (loop, 20);
    assert (seen.state == ZIM_CLIENT_CLOSED && zim_client_unacked (c) == 1);
    zim_client_destroy (&c);

    zim_wr_free (&wr);
    zim_loop_destroy (&loop);
    assert (loop == NULL);
    if (verbose)
        printf ("\n");
}
