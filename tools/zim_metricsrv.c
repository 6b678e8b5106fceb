/*  zim_metricsrv.c: the metrics endpoint (zim_metricsrv.h). A ZeroMQ
    STREAM socket hands us each TCP connection's bytes as [id, data]
    messages (an empty data frame when one opens or closes; sending
    [id, ""] closes it): enough for one request and one answer per
    connection, without a new dependency.
*/
#include "tools/zim_metricsrv.h"
#include "msg/zim_metrics.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define S_CONNS 16         //  requests open at once
#define S_REQ_MAX 4096     //  bytes of request line and headers
#define S_ID_MAX 256       //  bytes of a STREAM routing id
#define S_DEADLINE_MS 5000 //  a request must be complete by then

//  One open connection and its request so far.
typedef struct {
    bool used;            //  slot taken
    uint8_t id[S_ID_MAX]; //  STREAM routing id
    size_t idlen;         //  its length
    char peer[64];        //  peer address, for log lines
    char req[S_REQ_MAX];  //  bytes received
    size_t len;           //  how many
    int64_t since_ms;     //  when it opened, or was answered (monotonic)
    bool answered;        //  the answer went out: the client closes
} s_conn_t;

struct _zim_metricsrv_t {
    char *program;               //  for log lines
    zsock_t *sock;               //  STREAM socket
    int port;                    //  bound port
    char url[300];               //  what to scrape
    zim_metricsrv_text_fn *text; //  the exposition text
    void *arg;                   //  its argument
    s_conn_t conns[S_CONNS];     //  open connections
    uint8_t last_id[S_ID_MAX];   //  the newest connection's id
    size_t last_idlen;           //  its length (0: none yet)
    uint64_t scrapes;            //  200 answers
    uint64_t refused;            //  anything else
    zim_ratelog_t ratelog;       //  refusals
};

zim_metricsrv_t *zim_metricsrv_new (const char *program, const char *address,
                                    zim_metricsrv_text_fn *text, void *arg)
{
    const char *colon = address ? strrchr (address, ':') : NULL;
    uint64_t port;
    if (!colon || zim_parse_u64 (colon + 1, &port) || port > 65535) {
        zsys_error ("%s: metrics address '%s' is not HOST:PORT", program, address ? address : "");
        return NULL;
    }
    int hlen = (int)(colon - address);
    bool v6 = hlen >= 2 && address[0] == '[' && address[hlen - 1] == ']';
    const char *host = hlen == 0 ? "*" : address;
    if (hlen == 0)
        hlen = 1;
    zim_metricsrv_t *self = zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->text = text;
    self->arg = arg;
    self->sock = zsock_new (ZMQ_STREAM);
    assert (self->sock);
    zsock_set_linger (self->sock, 0);
    if (v6)
        zsock_set_ipv6 (self->sock, 1);
    char port_text[16];
    snprintf (port_text, sizeof port_text, "%" PRIu64, port);
    self->port = zsock_bind (self->sock, "tcp://%.*s:%s", hlen, host, port ? port_text : "*");
    if (self->port == -1) {
        zsys_error ("%s: cannot listen for metrics on %s (%s)", program, address,
                    zmq_strerror (zmq_errno ()));
        zim_metricsrv_destroy (&self);
        return NULL;
    }
    bool any = (hlen == 1 && *host == '*') || (hlen == 7 && !strncmp (host, "0.0.0.0", 7));
    snprintf (self->url, sizeof self->url, "http://%.*s:%d/metrics", any ? 9 : hlen,
              any ? "127.0.0.1" : host, self->port);
    return self;
}

void zim_metricsrv_destroy (zim_metricsrv_t **self_p)
{
    zim_metricsrv_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    free (self->program);
    free (self);
    *self_p = NULL;
}

zsock_t *zim_metricsrv_sock (zim_metricsrv_t *self)
{
    return self->sock;
}

int zim_metricsrv_port (zim_metricsrv_t *self)
{
    return self->port;
}

const char *zim_metricsrv_url (zim_metricsrv_t *self)
{
    return self->url;
}

uint64_t zim_metricsrv_scrapes (zim_metricsrv_t *self)
{
    return self->scrapes;
}

uint64_t zim_metricsrv_refused (zim_metricsrv_t *self)
{
    return self->refused;
}

//  Closes the connection of c and frees its slot.
static void s_close (zim_metricsrv_t *self, s_conn_t *c)
{
    void *sock = zsock_resolve (self->sock);
    zmq_send (sock, c->id, c->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (sock, "", 0, ZMQ_DONTWAIT);
    c->used = false;
}

//  Answers c with status and body (head: without the body), then closes.
static void s_answer (zim_metricsrv_t *self, s_conn_t *c, int status, const char *type,
                      const char *body, bool head)
{
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                                         : "Error";
    size_t blen = strlen (body);
    char header[512];
    int hlen = snprintf (header, sizeof header,
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                         "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                         status, reason, type, blen, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    zmq_msg_t out;
    zmq_msg_init_size (&out, (size_t)hlen + (head ? 0 : blen));
    memcpy (zmq_msg_data (&out), header, (size_t)hlen);
    if (!head)
        memcpy ((char *)zmq_msg_data (&out) + hlen, body, blen);
    void *sock = zsock_resolve (self->sock);
    if (zmq_send (sock, c->id, c->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_msg_send (&out, sock, ZMQ_DONTWAIT) == -1) {
        zim_ratelog_warn (&self->ratelog, self->program, "metrics: cannot answer %s (%s)",
                          *c->peer ? c->peer : "?", zmq_strerror (zmq_errno ()));
        zmq_msg_close (&out);
    }
    //  The client closes once it has read the answer (Content-Length,
    //  Connection: close). Closing here could lose it: libzmq ends a
    //  STREAM connection at once when told to, dropping what is still
    //  queued for it. The sweep closes it if the client does not.
    c->answered = true;
    c->since_ms = zclock_mono ();
}

//  Refuses c: logged, counted, answered with status (0: closed unanswered).
static void s_refuse (zim_metricsrv_t *self, s_conn_t *c, int status, const char *why)
{
    self->refused++;
    char who[96];
    snprintf (who, sizeof who, "%s metrics", self->program);
    int wlen = (int)strcspn (why, "\n");
    zim_ratelog_warn (&self->ratelog, who, "request from %s refused (%d): %.*s",
                      *c->peer ? c->peer : "?", status, wlen, why);
    if (status)
        s_answer (self, c, status, "text/plain; charset=utf-8", why, false);
    else
        s_close (self, c);
}

//  True for the bytes a request line and headers may hold.
static bool s_text_ok (const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t')
            return false;
        if (ch >= 0x7f)
            return false;
    }
    return true;
}

//  Looks at what c has received: refuses it as soon as it cannot be an
//  HTTP request, answers it once its headers are complete.
static void s_parse (zim_metricsrv_t *self, s_conn_t *c)
{
    if (!s_text_ok (c->req, c->len)) {
        s_refuse (self, c, 400, "not an HTTP request\n");
        return;
    }
    const char *nl = memchr (c->req, '\n', c->len);
    if (!nl) {
        if (c->len == S_REQ_MAX)
            s_refuse (self, c, 400, "request line too long\n");
        return;
    }
    //  METHOD SP TARGET SP HTTP/1.x
    char method[16], target[1024], version[16];
    char line[sizeof target + 64];
    size_t llen = (size_t)(nl - c->req);
    if (llen && c->req[llen - 1] == '\r')
        llen--;
    if (llen >= sizeof line) {
        s_refuse (self, c, 400, "request line too long\n");
        return;
    }
    memcpy (line, c->req, llen);
    line[llen] = 0;
    char extra;
    if (sscanf (line, "%15[A-Z] %1023[^ ] %15[^ ] %c", method, target, version, &extra) != 3 ||
        target[0] != '/' || strncmp (version, "HTTP/1.", 7) != 0) {
        s_refuse (self, c, 400, "not an HTTP request\n");
        return;
    }
    //  The answer waits for the end of the headers (closing earlier would
    //  reset a client still sending them).
    c->req[c->len < S_REQ_MAX ? c->len : S_REQ_MAX - 1] = 0;
    if (!strstr (c->req, "\r\n\r\n") && !strstr (c->req, "\n\n")) {
        if (c->len >= S_REQ_MAX - 1)
            s_refuse (self, c, 400, "headers too large\n");
        return;
    }
    bool head = streq (method, "HEAD");
    if (!head && !streq (method, "GET")) {
        s_refuse (self, c, 405, "only GET\n");
        return;
    }
    target[strcspn (target, "?")] = 0;
    if (!streq (target, "/metrics")) {
        char why[128];
        snprintf (why, sizeof why, "no such path (%.60s): metrics are at /metrics\n", target);
        s_refuse (self, c, 404, why);
        return;
    }
    self->scrapes++; //  before the text, which may count it
    char *body = self->text (self->arg);
    s_answer (self, c, 200, ZIM_METRICS_CONTENT_TYPE, body ? body : "", head);
    free (body);
}

//  The slot of id, or NULL.
static s_conn_t *s_find (zim_metricsrv_t *self, const void *id, size_t idlen)
{
    for (size_t i = 0; i < S_CONNS; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->used && c->idlen == idlen && memcmp (c->id, id, idlen) == 0)
            return c;
    }
    return NULL;
}

void zim_metricsrv_sweep (zim_metricsrv_t *self)
{
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < S_CONNS; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->used && now - c->since_ms > S_DEADLINE_MS) {
            if (c->answered)
                s_close (self, c);
            else
                s_refuse (self, c, 0, "incomplete request: closed after 5 s");
        }
    }
}

//  True if id is newer than every connection seen so far: libzmq numbers
//  STREAM connections upwards, so an empty frame with a newer id opens a
//  connection and one with an older id closes one we already let go.
static bool s_newer (zim_metricsrv_t *self, const void *id, size_t idlen)
{
    bool newer = idlen > self->last_idlen ||
                 (idlen == self->last_idlen && memcmp (id, self->last_id, idlen) > 0);
    if (newer) {
        memcpy (self->last_id, id, idlen);
        self->last_idlen = idlen;
    }
    return newer;
}

//  A slot for a new connection, or NULL after closing it (all taken).
static s_conn_t *s_open (zim_metricsrv_t *self, zframe_t *id, zframe_t *data)
{
    s_conn_t *c = NULL, spare;
    for (size_t i = 0; i < S_CONNS && !c; i++)
        if (!self->conns[i].used)
            c = &self->conns[i];
    s_conn_t *slot = c ? c : &spare;
    memset (slot, 0, sizeof *slot);
    slot->used = true;
    memcpy (slot->id, zframe_data (id), zframe_size (id));
    slot->idlen = zframe_size (id);
    slot->since_ms = zclock_mono ();
    const char *peer = zframe_meta (data, "Peer-Address");
    snprintf (slot->peer, sizeof slot->peer, "%s", peer ? peer : "");
    if (!c)
        s_refuse (self, slot, 0, "too many requests open at once");
    return c;
}

void zim_metricsrv_handle (zim_metricsrv_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sock);
    zframe_t *id = msg ? zmsg_first (msg) : NULL;
    zframe_t *data = msg ? zmsg_next (msg) : NULL;
    if (id && data && zframe_size (id) > 0 && zframe_size (id) <= S_ID_MAX) {
        s_conn_t *c = s_find (self, zframe_data (id), zframe_size (id));
        bool newer = s_newer (self, zframe_data (id), zframe_size (id));
        if (zframe_size (data) == 0) {
            if (c)
                c->used = false; //  the peer closed
            else if (newer)
                s_open (self, id, data);
        } else {
            if (!c)
                c = s_open (self, id, data);
            if (c && !c->answered) {
                size_t room = S_REQ_MAX - c->len, n = zframe_size (data);
                memcpy (c->req + c->len, zframe_data (data), n < room ? n : room);
                c->len += n < room ? n : room;
                if (n > room)
                    s_refuse (self, c, 400, "request too large\n");
                else
                    s_parse (self, c);
            }
        }
    }
    zmsg_destroy (&msg);
    zim_metricsrv_sweep (self);
}

//  -------------------------------------------------------------------------
//  Selftest: requests over real TCP connections, served by this thread.

static char *s_test_text (void *arg)
{
    (void)arg;
    return zim_strdup ("# HELP x a test\n# TYPE x gauge\nx 1\n");
}

//  True once answer holds a whole response: headers and Content-Length
//  bytes, or the headers alone for a HEAD.
static bool s_test_complete (const char *answer, bool head)
{
    const char *body = strstr (answer, "\r\n\r\n");
    const char *length = strstr (answer, "Content-Length: ");
    return body && length && (head || strlen (body + 4) >= (size_t)atoi (length + 16));
}

//  Open connections of the server.
static size_t s_test_open (zim_metricsrv_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < S_CONNS; i++)
        n += self->conns[i].used;
    return n;
}

//  Sends request (len bytes) on a new connection and returns the answer
//  (or what came before the server closed), then closes the connection as
//  a client does. Caller owns return value.
static char *s_test_request (zim_metricsrv_t *self, const char *request, size_t len)
{
    zsock_t *client = zsock_new (ZMQ_STREAM);
    assert (zsock_connect (client, "tcp://127.0.0.1:%d", self->port) == 0);
    //  The client's connect notification carries the server's id.
    zmsg_t *hello = zmsg_recv (client);
    zframe_t *peer = zframe_dup (zmsg_first (hello));
    zmsg_destroy (&hello);
    zframe_send (&peer, client, ZFRAME_MORE | ZFRAME_REUSE);
    zmq_send (zsock_resolve (client), request, len, 0);
    char *answer = zim_strdup ("");
    zpoller_t *poller = zpoller_new (self->sock, client, NULL);
    int64_t deadline = zclock_mono () + 5000;
    bool closed = false, head = strncmp (request, "HEAD ", 5) == 0;
    while (!closed && !s_test_complete (answer, head) && zclock_mono () < deadline) {
        void *which = zpoller_wait (poller, 100);
        if (which == self->sock)
            zim_metricsrv_handle (self);
        else if (which == client) {
            zmsg_t *msg = zmsg_recv (client);
            zframe_t *data = zmsg_last (msg);
            if (zframe_size (data) == 0)
                closed = true;
            else {
                size_t old = strlen (answer);
                answer = zim_realloc (answer, old + zframe_size (data) + 1);
                memcpy (answer + old, zframe_data (data), zframe_size (data));
                answer[old + zframe_size (data)] = 0;
            }
            zmsg_destroy (&msg);
        }
    }
    assert (closed || s_test_complete (answer, head));
    if (!closed) {
        zframe_send (&peer, client, ZFRAME_MORE | ZFRAME_REUSE);
        zmq_send (zsock_resolve (client), "", 0, 0);
    }
    //  The server lets the connection go when the client closes it.
    while (s_test_open (self) && zclock_mono () < deadline)
        if (zpoller_wait (poller, 100) == self->sock)
            zim_metricsrv_handle (self);
    assert (s_test_open (self) == 0);
    zframe_destroy (&peer);
    zpoller_destroy (&poller);
    zsock_destroy (&client);
    return answer;
}

void zim_metricsrv_test (bool verbose)
{
    assert (zim_metricsrv_new ("test", "no-port", s_test_text, NULL) == NULL);
    assert (zim_metricsrv_new ("test", "127.0.0.1:99999", s_test_text, NULL) == NULL);
    zim_metricsrv_t *self = zim_metricsrv_new ("test", "127.0.0.1:0", s_test_text, NULL);
    assert (self && self->port > 0);
    char url[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", self->port);
    assert (streq (zim_metricsrv_url (self), url));

    const char *get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    char *answer = s_test_request (self, get, strlen (get));
    assert (strncmp (answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert (strstr (answer, "Content-Type: text/plain; version=0.0.4"));
    assert (strstr (answer, "\r\n\r\n# HELP x a test\n# TYPE x gauge\nx 1\n"));
    free (answer);
    const char *query = "GET /metrics?x=1 HTTP/1.0\n\n";
    answer = s_test_request (self, query, strlen (query));
    assert (strncmp (answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free (answer);
    const char *head = "HEAD /metrics HTTP/1.1\r\n\r\n";
    answer = s_test_request (self, head, strlen (head));
    assert (strncmp (answer, "HTTP/1.1 200 OK\r\n", 17) == 0 && !strstr (answer, "x 1"));
    free (answer);
    assert (self->scrapes == 3 && self->refused == 0);

    const char *other = "GET /other HTTP/1.1\r\n\r\n";
    answer = s_test_request (self, other, strlen (other));
    assert (strncmp (answer, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    free (answer);
    const char *post = "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    answer = s_test_request (self, post, strlen (post));
    assert (strncmp (answer, "HTTP/1.1 405 ", 13) == 0);
    free (answer);
    //  Garbage is refused at once, without waiting for headers.
    const char *garbage = "\x16\x03\x01\x02\x00\x01\x00";
    answer = s_test_request (self, garbage, 7);
    assert (strncmp (answer, "HTTP/1.1 400 ", 13) == 0);
    free (answer);
    answer = s_test_request (self, "hello there\n", 12);
    assert (strncmp (answer, "HTTP/1.1 400 ", 13) == 0);
    free (answer);
    char big[S_REQ_MAX + 100];
    memset (big, 'a', sizeof big);
    memcpy (big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    answer = s_test_request (self, big, sizeof big);
    assert (strncmp (answer, "HTTP/1.1 400 ", 13) == 0);
    free (answer);
    assert (self->scrapes == 3 && self->refused == 5);
    zim_metricsrv_destroy (&self);
    zim_metricsrv_destroy (&self);
    if (verbose)
        zsys_info ("metricsrv: GET /metrics answered; 404, 405 and 400 refused");
}
