/*  zim_sdk_conn.c: the C SDK's transport, one lws client wsi at a time
    whose user data is the connection object. An attempt runs from its
    timer (never from inside an API call), has a deadline until its owner
    says it is ready, and ends in exactly one closed hook, whatever ended
    it: a refused connect or upgrade, the deadline, the peer, a failed
    write, or the owner.

    A destroyed connection keeps its memory until lws has let go of the
    wsi: the loop reaps it (zim_sdk_conn_reap) after servicing.
*/
#include "config.h"
#include "sdk/c/zim_sdk_conn.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_RX (16u << 20) //  largest message we accept from the server

struct _zim_sdk_conn_t {
    lws_dll2_t member;           //  in the loop's list of connections
    zim_loop_t *loop;            //  our loop, NULL once it was destroyed
    zim_sdk_conn_hooks_t hooks;  //  what we tell the owner
    void *arg;                   //  the hooks' argument
    char *address;               //  host from the url
    int port;                    //  port from the url
    bool ssl;                    //  wss://
    bool raw;                    //  tcp://: raw TCP, each frame after its length (4 bytes BE)
    char *base_path;             //  path (and query) from the url, with leading '/'
    char *path;                  //  the request path sent (may carry a query)
    char *host_hdr;              //  Host and Origin header
    char *ca_file;               //  wss://: the CAs to trust, NULL: the system's
    uint32_t connect_timeout_ms; //  deadline of an attempt
    uint32_t backoff_min_ms;     //  first reconnect delay
    uint32_t backoff_max_ms;     //  largest reconnect delay
    uint64_t rng;                //  xorshift state for jitter

    struct lws *wsi;            //  the connection, NULL when none
    bool live;                  //  an attempt is under way or the WebSocket is open
    bool open;                  //  the WebSocket is open
    bool dead;                  //  zim_sdk_conn_destroy was called: no more hooks
    uint32_t attempt;           //  reconnect attempts since the last start or ready
    int close_code;             //  why the connection is ending, 0 if unknown
    char close_text[256];       //  and what was said
    uint64_t last_rx_us;        //  when the server last sent something
    unsigned char *rx;          //  a message arriving in fragments
    size_t rx_size, rx_alloc;   //  its bytes so far, and the buffer's size
    zim_sdk_timer_t t_connect;  //  starts the next attempt
    zim_sdk_timer_t t_deadline; //  ends an attempt that is not ready in time
    uint8_t hdr[4];             //  tcp://: the length of the packet coming in
    uint32_t hdr_got;           //  its bytes so far (4: in the payload)
    uint32_t body_left;         //  payload bytes still to come
    unsigned char *tx;          //  tcp://: the frames of one write, each after its length
    size_t tx_alloc;            //  its size
};

static int s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);

static const struct lws_protocols s_protocols[] = {{"zim", s_callback, 0, 16384, 0, NULL, 1u << 20},
                                                   {NULL, NULL, 0, 0, 0, NULL, 0}};

const struct lws_protocols *zim_sdk_conn_protocols (void)
{
    return s_protocols;
}

//  ---------------------------------------------------------------------
//  URL and request path.

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

//  Splits the url (ws[s]://host[:port][/path]) into address, port and
//  path; returns 0 or -1. IPv6 addresses go in brackets.
static int s_parse_url (zim_sdk_conn_t *self, const char *u)
{
    if (strncmp (u, "ws://", 5) == 0)
        u += 5;
    else if (strncmp (u, "tcp://", 6) == 0) {
        u += 6;
        self->raw = true;
    } else if (strncmp (u, "wss://", 6) == 0) {
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
    if (self->raw && (*u || !strchr (host_end, ':')))
        return -1; //  tcp://host:port, nothing more
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

void zim_sdk_conn_set_query (zim_sdk_conn_t *self, const char *token, const char *device)
{
    free (self->path);
    size_t size = strlen (self->base_path) + (token ? 3 * strlen (token) : 0) +
                  (device ? 3 * strlen (device) : 0) + 32;
    self->path = zim_malloc (size);
    snprintf (self->path, size, "%s", self->base_path);
    const char *sep = strchr (self->base_path, '?') ? "&" : "?";
    if (token) {
        strcat (self->path, sep);
        strcat (self->path, "token=");
        s_url_escape (self->path, size, token);
        sep = "&";
    }
    if (device) {
        strcat (self->path, sep);
        strcat (self->path, "device=");
        s_url_escape (self->path, size, device);
    }
}

//  ---------------------------------------------------------------------
//  Lifecycle.

//  Frees the connection's memory (its wsi is gone).
static void s_free (zim_sdk_conn_t *self)
{
    zim_sdk_timer_fini (&self->t_connect);
    zim_sdk_timer_fini (&self->t_deadline);
    if (self->loop)
        lws_dll2_remove (&self->member);
    free (self->rx);
    free (self->address);
    free (self->base_path);
    free (self->path);
    free (self->host_hdr);
    free (self->ca_file);
    free (self->tx);
    free (self);
}

//  Records why the connection ends: always with force, else only if no
//  reason is known yet.
static void s_record (zim_sdk_conn_t *self, int code, const char *text, bool force)
{
    if (self->close_code && !force)
        return;
    self->close_code = code;
    snprintf (self->close_text, sizeof self->close_text, "%s", text ? text : "");
}

//  The connection or the attempt is over: tell the owner, once.
static void s_end (zim_sdk_conn_t *self, int code, const char *text, bool refused)
{
    if (!self->live)
        return;
    self->live = false;
    self->open = false;
    self->wsi = NULL;
    self->rx_size = 0;
    self->hdr_got = 0;
    zim_sdk_timer_stop (&self->t_deadline);
    if (self->dead)
        return;
    char why[sizeof self->close_text];
    snprintf (why, sizeof why, "%s", self->close_code ? self->close_text : text ? text : "");
    self->hooks.closed (self->arg, self->close_code ? self->close_code : code, why, refused);
}

//  The deadline timer: not ready in time.
static void s_deadline_timer (void *arg)
{
    zim_sdk_conn_t *self = arg;
    if (!self->live)
        return;
    char text[64];
    snprintf (text, sizeof text, "no auth_ok within %u ms", self->connect_timeout_ms);
    s_record (self, ZIM_CLIENT_ERR_TIMEOUT, text, true);
    if (self->wsi)
        lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    else
        s_end (self, ZIM_CLIENT_ERR_TIMEOUT, text, false);
}

//  The connect timer: one attempt.
static void s_connect_timer (void *arg)
{
    zim_sdk_conn_t *self = arg;
    if (self->dead || !self->loop || self->live)
        return;
    self->close_code = 0;
    self->close_text[0] = 0;
    self->live = true;
    self->open = false;
    self->last_rx_us = zim_mono_us ();
    zim_sdk_timer_start (&self->t_deadline, (uint64_t)self->connect_timeout_ms * 1000);
    self->hooks.connecting (self->arg);
    if (self->dead || !self->live)
        return;

    struct lws_client_connect_info ci;
    memset (&ci, 0, sizeof ci);
    ci.context = zim_sdk_loop_context (self->loop);
    ci.address = self->address;
    ci.port = self->port;
    ci.path = self->path;
    ci.host = self->host_hdr;
    ci.origin = self->host_hdr;
    ci.ssl_connection = self->ssl ? LCCSCF_USE_SSL : 0;
    if (self->raw)
        ci.method = "RAW"; //  no HTTP, no WebSocket: lws's raw socket role
    if (self->ssl && self->ca_file) {
        ci.vhost = zim_sdk_loop_vhost (self->loop, self->ca_file);
        if (!ci.vhost) {
            s_end (self, ZIM_CLIENT_ERR_CONNECT, "cannot load the TLS CA file", false);
            return;
        }
    }
    ci.local_protocol_name = s_protocols[0].name;
    ci.userdata = self;
    ci.opaque_user_data = self;
    ci.pwsi = &self->wsi;
    if (!lws_client_connect_via_info (&ci)) {
        self->wsi = NULL;
        s_end (self, ZIM_CLIENT_ERR_CONNECT, "could not start the connection", false);
    }
}

zim_sdk_conn_t *zim_sdk_conn_new (zim_loop_t *loop, const zim_sdk_conn_config_t *cfg,
                                  const zim_sdk_conn_hooks_t *hooks, void *arg)
{
    zim_sdk_conn_t *self = zim_calloc (1, sizeof *self);
    if (s_parse_url (self, cfg->url)) {
        s_free (self);
        return NULL;
    }
    zim_sdk_conn_set_query (self, NULL, NULL);
    self->hooks = *hooks;
    self->arg = arg;
    self->connect_timeout_ms = cfg->connect_timeout_ms;
    self->backoff_min_ms = cfg->backoff_min_ms;
    self->backoff_max_ms = cfg->backoff_max_ms;
    self->rng = cfg->seed | 1;
    self->ca_file = cfg->tls_ca_file ? zim_strdup (cfg->tls_ca_file) : NULL;
    self->loop = loop;
    zim_sdk_loop_add_conn (loop, &self->member);
    zim_sdk_timer_init (&self->t_connect, loop, s_connect_timer, self);
    zim_sdk_timer_init (&self->t_deadline, loop, s_deadline_timer, self);
    return self;
}

void zim_sdk_conn_destroy (zim_sdk_conn_t **self_p)
{
    zim_sdk_conn_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->dead = true;
    zim_sdk_timer_stop (&self->t_connect);
    zim_sdk_timer_stop (&self->t_deadline);
    if (self->loop && self->wsi)
        lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK,
                         zim_sdk_loop_busy (self->loop) ? LWS_TO_KILL_ASYNC : LWS_TO_KILL_SYNC);
    if (!self->wsi) {
        self->live = false;
        if (!self->loop || !zim_sdk_loop_busy (self->loop))
            s_free (self);
    }
    //  else the loop frees it once lws lets go (zim_sdk_conn_reap)
}

void zim_sdk_conn_reap (lws_dll2_t *member)
{
    zim_sdk_conn_t *self = lws_container_of (member, zim_sdk_conn_t, member);
    if (self->dead && !self->wsi)
        s_free (self);
}

void zim_sdk_conn_detach (lws_dll2_t *member)
{
    zim_sdk_conn_t *self = lws_container_of (member, zim_sdk_conn_t, member);
    self->loop = NULL; //  the loop has unlinked us
    self->wsi = NULL;
    self->live = self->open = false;
    if (self->dead)
        s_free (self);
}

int zim_sdk_conn_start (zim_sdk_conn_t *self)
{
    if (self->dead || !self->loop || self->live)
        return -1;
    self->attempt = 0;
    zim_sdk_timer_start (&self->t_connect, 0);
    return 0;
}

uint64_t zim_sdk_conn_backoff_us (zim_sdk_conn_t *self, uint32_t n)
{
    //  exponential, capped, with "equal jitter" (half fixed, half random) so
    //  that clients cut off together do not come back together
    uint64_t ms = self->backoff_min_ms;
    for (uint32_t i = 0; i < n && ms < self->backoff_max_ms; i++)
        ms *= 2;
    if (ms > self->backoff_max_ms)
        ms = self->backoff_max_ms;
    uint64_t half = ms / 2;
    uint64_t x = self->rng; //  xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->rng = x;
    x *= 0x2545F4914F6CDD1Dull;
    return (half + (half ? x % (half + 1) : 0)) * 1000;
}

int zim_sdk_conn_reconnect (zim_sdk_conn_t *self)
{
    if (self->dead || !self->loop || self->live)
        return -1;
    zim_sdk_timer_start (&self->t_connect, zim_sdk_conn_backoff_us (self, self->attempt++));
    return 0;
}

bool zim_sdk_conn_cancel (zim_sdk_conn_t *self)
{
    bool waiting = zim_sdk_timer_armed (&self->t_connect);
    zim_sdk_timer_stop (&self->t_connect);
    return waiting;
}

void zim_sdk_conn_ready (zim_sdk_conn_t *self)
{
    zim_sdk_timer_stop (&self->t_deadline);
    self->attempt = 0;
}

bool zim_sdk_conn_live (zim_sdk_conn_t *self)
{
    return self->live;
}

bool zim_sdk_conn_open (zim_sdk_conn_t *self)
{
    return self->open && self->wsi;
}

bool zim_sdk_conn_quiet (zim_sdk_conn_t *self)
{
    return !self->loop || zim_sdk_loop_destroying (self->loop);
}

zim_loop_t *zim_sdk_conn_loop (zim_sdk_conn_t *self)
{
    return self->loop;
}

//  ---------------------------------------------------------------------
//  Traffic.

void zim_sdk_conn_want_write (zim_sdk_conn_t *self)
{
    if (self->open && self->wsi)
        lws_callback_on_writable (self->wsi);
}

size_t zim_sdk_conn_headroom (void)
{
    return LWS_PRE;
}

//  tcp://: writes the frames of payload, each after its length.
static int s_write_raw (zim_sdk_conn_t *self, const unsigned char *payload, size_t len)
{
    size_t need = LWS_PRE + len + 4 * (len + 1); //  at most one length per byte, and one
    if (need > self->tx_alloc) {
        self->tx = zim_realloc (self->tx, need);
        self->tx_alloc = need;
    }
    unsigned char *p = self->tx + LWS_PRE;
    zim_rd_t rd;
    zim_rd_init (&rd, payload, len);
    while (zim_rd_left (&rd) > 0) {
        const uint8_t *start = rd.pos;
        size_t n = zim_rd_left (&rd);
        if (zim_rd_skip (&rd, NULL) == 0)
            n = (size_t)(rd.pos - start);
        else //  not msgpack (we encode every frame): the rest as one
            zim_rd_init (&rd, start + n, 0);
        p[0] = (unsigned char)(n >> 24);
        p[1] = (unsigned char)(n >> 16);
        p[2] = (unsigned char)(n >> 8);
        p[3] = (unsigned char)n;
        memcpy (p + 4, start, n);
        p += 4 + n;
    }
    size_t total = (size_t)(p - (self->tx + LWS_PRE));
    return lws_write (self->wsi, self->tx + LWS_PRE, total, LWS_WRITE_RAW) < (int)total ? -1 : 0;
}

int zim_sdk_conn_write (zim_sdk_conn_t *self, unsigned char *payload, size_t len)
{
    if (!self->wsi ||
        (self->raw ? s_write_raw (self, payload, len)
                   : lws_write (self->wsi, payload, len, LWS_WRITE_BINARY) < (int)len)) {
        s_record (self, ZIM_CLIENT_ERR_LOST, "write failed", false);
        return -1;
    }
    return 0;
}

void zim_sdk_conn_fail (zim_sdk_conn_t *self, int code, const char *text)
{
    s_record (self, code, text, false);
    if (self->wsi)
        lws_set_timeout (self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void zim_sdk_conn_note (zim_sdk_conn_t *self, int code, const char *text)
{
    s_record (self, code, text, false);
}

void zim_sdk_conn_bye (zim_sdk_conn_t *self)
{
    if (self->wsi && !self->raw) //  tcp://: the FIN says it
        lws_close_reason (self->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
}

uint64_t zim_sdk_conn_last_rx (zim_sdk_conn_t *self)
{
    return self->last_rx_us;
}

//  Collects fragments; hands the message over once it is complete.
static int s_on_receive (zim_sdk_conn_t *self, struct lws *wsi, const void *in, size_t len)
{
    self->last_rx_us = zim_mono_us ();
    bool complete = lws_is_final_fragment (wsi) && lws_remaining_packet_payload (wsi) == 0;
    if (complete && self->rx_size == 0)
        return self->hooks.message (self->arg, in, len);
    if (self->rx_size + len > S_MAX_RX) {
        char text[64];
        snprintf (text, sizeof text, "server message over %u bytes", S_MAX_RX);
        s_record (self, ZIM_CLIENT_ERR_PROTOCOL, text, true);
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
    //  hand over a copy of the length: the hook may end the connection
    size_t size = self->rx_size;
    self->rx_size = 0;
    int rc = self->hooks.message (self->arg, self->rx, size);
    if (self->rx_alloc > (1u << 20) && !self->dead) {
        free (self->rx); //  give back what a large message needed
        self->rx = NULL;
        self->rx_alloc = 0;
    }
    return rc;
}

//  tcp://: takes bytes of the stream; each complete packet is a message.
static int s_on_raw_rx (zim_sdk_conn_t *self, const unsigned char *in, size_t len)
{
    self->last_rx_us = zim_mono_us ();
    while (len > 0 && !self->dead) {
        if (self->hdr_got < 4) {
            size_t take = 4 - self->hdr_got < len ? 4 - self->hdr_got : len;
            memcpy (self->hdr + self->hdr_got, in, take);
            self->hdr_got += (uint32_t)take;
            in += take;
            len -= take;
            if (self->hdr_got < 4)
                break;
            self->body_left = (uint32_t)self->hdr[0] << 24 | (uint32_t)self->hdr[1] << 16 |
                              (uint32_t)self->hdr[2] << 8 | self->hdr[3];
            if (self->body_left > S_MAX_RX) {
                s_record (self, ZIM_CLIENT_ERR_PROTOCOL, "server packet over the size limit", true);
                return -1;
            }
            if (self->body_left == 0)
                self->hdr_got = 0; //  an empty packet: nothing to hand over
            continue;
        }
        size_t take = self->body_left < len ? self->body_left : len;
        if (take == self->body_left && self->rx_size == 0) { //  whole in this read
            self->hdr_got = 0;
            self->body_left = 0;
            if (self->hooks.message (self->arg, in, take))
                return -1;
        } else {
            if (self->rx_size + take > self->rx_alloc) {
                size_t alloc = self->rx_alloc ? self->rx_alloc : 65536;
                while (alloc < self->rx_size + take)
                    alloc *= 2;
                self->rx = zim_realloc (self->rx, alloc);
                self->rx_alloc = alloc;
            }
            memcpy (self->rx + self->rx_size, in, take);
            self->rx_size += take;
            self->body_left -= (uint32_t)take;
            if (self->body_left == 0) {
                size_t size = self->rx_size;
                self->rx_size = 0;
                self->hdr_got = 0;
                if (self->hooks.message (self->arg, self->rx, size))
                    return -1;
            }
        }
        in += take;
        len -= take;
    }
    return 0;
}

//  An attempt failed before the WebSocket opened.
static void s_on_connection_error (zim_sdk_conn_t *self, struct lws *wsi, const char *in,
                                   size_t len)
{
    int status = (int)lws_http_client_http_response (wsi);
    char text[160];
    snprintf (text, sizeof text, "%s%.*s", status ? "" : "connect failed: ", in ? (int)len : 0,
              in ? in : "");
    int code = ZIM_CLIENT_ERR_CONNECT;
    if (status == 401 || status == 403) {
        code = ZIM_ERR_BAD_TOKEN;
        snprintf (text, sizeof text, "token refused (HTTP %d)", status);
    } else if (status)
        snprintf (text, sizeof text, "WebSocket upgrade refused (HTTP %d)", status);
    s_record (self, code, text, false);
    s_end (self, code, text, true);
}

static int s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    (void)user; //  for some reasons (TLS setup) it is not ours: the wsi says
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_RECEIVE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
    case LWS_CALLBACK_RAW_CONNECTED:
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_CLOSE:
        break;
    default:
        return 0;
    }
    zim_sdk_conn_t *self = wsi ? (zim_sdk_conn_t *)lws_get_opaque_user_data (wsi) : NULL;
    if (!self)
        return 0;
    if (self->loop)
        zim_sdk_loop_event (self->loop);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (wsi != self->wsi && self->wsi)
            return 0;
        s_on_connection_error (self, wsi, in, len);
        return 0;
    case LWS_CALLBACK_RAW_RX:
        if (wsi != self->wsi || self->dead)
            return -1;
        return s_on_raw_rx (self, in, len) || self->dead ? -1 : 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
    case LWS_CALLBACK_RAW_CONNECTED:
        if (wsi != self->wsi || self->dead)
            return -1;
        self->last_rx_us = zim_mono_us ();
        self->open = true;
        return self->hooks.open (self->arg) || self->dead ? -1 : 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (wsi != self->wsi || self->dead)
            return -1;
        return s_on_receive (self, wsi, in, len) || self->dead ? -1 : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
    case LWS_CALLBACK_RAW_WRITEABLE:
        if (wsi != self->wsi || self->dead)
            return -1;
        return self->hooks.writable (self->arg) || self->dead ? -1 : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (wsi == self->wsi && len >= 2) {
            const unsigned char *p = in;
            int status = (p[0] << 8) | p[1];
            if (status >= 4000) {
                char text[256];
                snprintf (text, sizeof text, "%.*s", (int)(len - 2), (const char *)in + 2);
                s_record (self, status, text, false);
            }
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_WSI_DESTROY:
        if (wsi == self->wsi)
            s_end (self, ZIM_CLIENT_ERR_LOST, "connection lost", false);
        return 0;
    default:
        return 0;
    }
}

//  ---------------------------------------------------------------------
//  Selftest: URLs, backoff, and attempts that are refused. Open
//  connections are tested against a real zim-server by tests/.

#include <assert.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)

//  What the hooks saw.
typedef struct {
    int connecting, closed, refused; //  hook calls
    int code;                        //  the last closed code
    uint64_t last_us, gap_us;        //  when the last attempt started, and the gap before it
    zim_sdk_conn_t *conn;            //  to reconnect from the closed hook
    bool again;                      //  reconnect
} s_t_seen_t;

static void s_t_connecting (void *arg)
{
    s_t_seen_t *s = arg;
    uint64_t now = zim_mono_us ();
    s->gap_us = s->last_us ? now - s->last_us : 0;
    s->last_us = now;
    s->connecting++;
}

static int s_t_open (void *arg)
{
    (void)arg;
    return -1;
}

static int s_t_message (void *arg, const unsigned char *data, size_t len)
{
    (void)arg, (void)data, (void)len;
    return -1;
}

static void s_t_closed (void *arg, int code, const char *text, bool refused)
{
    (void)text;
    s_t_seen_t *s = arg;
    s->closed++;
    s->refused += refused;
    s->code = code;
    if (s->again)
        assert (zim_sdk_conn_reconnect (s->conn) == 0);
}

void zim_sdk_conn_test (bool verbose)
{
    zim_loop_t *loop = zim_loop_new ();
    assert (loop);
    s_t_seen_t seen;
    memset (&seen, 0, sizeof seen);
    zim_sdk_conn_hooks_t hooks = {s_t_connecting, s_t_open, s_t_message, s_t_open, s_t_closed};
    zim_sdk_conn_config_t cfg = {NULL, 10000, 10, 40, 42, NULL};

    //  URLs.
    const char *bad_urls[] = {"http://x/ws",  "ws://",         "ws://:80/",
                              "ws://h:0/",    "ws://h:99999/", "ws://h:12x/",
                              "ws://[::1/ws", "tcp://h",       "tcp://h:7701/ws"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        cfg.url = bad_urls[i];
        assert (zim_sdk_conn_new (loop, &cfg, &hooks, &seen) == NULL);
    }
    cfg.url = "wss://example.com/ws?x=1";
    zim_sdk_conn_t *c = zim_sdk_conn_new (loop, &cfg, &hooks, &seen);
    assert (c && c->ssl && c->port == 443 && streq (c->address, "example.com"));
    assert (streq (c->path, "/ws?x=1") && streq (c->host_hdr, "example.com"));
    zim_sdk_conn_set_query (c, "t k", "a/b");
    assert (streq (c->path, "/ws?x=1&token=t%20k&device=a%2Fb"));
    zim_sdk_conn_set_query (c, NULL, "d");
    assert (streq (c->path, "/ws?x=1&device=d"));
    zim_sdk_conn_destroy (&c);
    assert (c == NULL);
    cfg.url = "tcp://127.0.0.1:7701";
    c = zim_sdk_conn_new (loop, &cfg, &hooks, &seen);
    assert (c && c->raw && !c->ssl && c->port == 7701 && streq (c->address, "127.0.0.1"));
    zim_sdk_conn_destroy (&c);
    cfg.url = "ws://[::1]:7700";
    c = zim_sdk_conn_new (loop, &cfg, &hooks, &seen);
    assert (c && !c->ssl && c->port == 7700 && streq (c->address, "::1"));
    assert (streq (c->path, "/") && streq (c->host_hdr, "[::1]:7700"));
    zim_sdk_conn_set_query (c, "tok", NULL);
    assert (streq (c->path, "/?token=tok"));
    zim_sdk_conn_destroy (&c);

    //  Backoff: doubles from the minimum up to the cap, half of it random.
    cfg.url = "ws://127.0.0.1:1/ws";
    c = zim_sdk_conn_new (loop, &cfg, &hooks, &seen);
    for (uint32_t n = 0; n < 40; n++) {
        uint64_t full = (n == 0 ? 10 : n == 1 ? 20 : 40) * 1000;
        uint64_t us = zim_sdk_conn_backoff_us (c, n);
        assert (us >= full / 2 && us <= full);
    }

    //  A refused connection ends in one closed hook, refused, ERR_CONNECT;
    //  nothing is attempted before the loop runs.
    assert (zim_sdk_conn_start (c) == 0);
    assert (seen.connecting == 0);
    for (int i = 0; i < 100 && seen.closed == 0; i++)
        zim_loop_run (loop, 20);
    assert (seen.connecting == 1 && seen.closed == 1 && seen.refused == 1);
    assert (seen.code == ZIM_CLIENT_ERR_CONNECT && !zim_sdk_conn_live (c));

    //  Reconnecting from the closed hook: attempts follow after the backoff.
    seen.again = true;
    seen.conn = c;
    assert (zim_sdk_conn_start (c) == 0);
    for (int i = 0; i < 200 && seen.connecting < 5; i++)
        zim_loop_run (loop, 20);
    if (verbose)
        printf ("\nreconnect: %d attempts, last gap %" PRIu64 " us\n", seen.connecting,
                seen.gap_us);
    assert (seen.connecting >= 5 && seen.gap_us >= 10000);
    //  A reconnect that waits can be cancelled.
    seen.again = false;
    zim_sdk_conn_cancel (c);
    for (int i = 0; i < 100 && zim_sdk_conn_live (c); i++)
        zim_loop_run (loop, 20);
    assert (!zim_sdk_conn_live (c) && zim_sdk_conn_cancel (c) == false);
    assert (zim_sdk_conn_reconnect (c) == 0 && zim_sdk_conn_cancel (c) == true);
    zim_sdk_conn_destroy (&c);

    //  A connection destroyed with its loop still running is freed by the
    //  loop; one left alive when the loop goes is detached and quiet.
    c = zim_sdk_conn_new (loop, &cfg, &hooks, &seen);
    assert (zim_sdk_conn_start (c) == 0 && !zim_sdk_conn_quiet (c));
    zim_loop_destroy (&loop);
    assert (zim_sdk_conn_quiet (c) && zim_sdk_conn_loop (c) == NULL);
    assert (zim_sdk_conn_start (c) == -1);
    zim_sdk_conn_destroy (&c);
}
