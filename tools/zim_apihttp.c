/*  zim_apihttp.c: the HTTP side of the backend API (zim_apihttp.h). A
    ZeroMQ STREAM socket hands us each TCP connection's bytes as [id, data]
    messages (an empty data frame when one opens or closes).
*/
#include "tools/zim_apihttp.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_CONNS 1024     //  connections open at once
#define S_HEAD_MAX 16384     //  bytes of request line and headers (the target included)
#define S_BODY_MAX (1 << 20) //  bytes of a request body (413 beyond)
#define S_ID_MAX 256         //  bytes of a STREAM routing id
#define S_ANSWER_MS 5000     //  a request is answered by then (503), unless it waits longer
#define S_IDLE_MS 60000      //  an idle kept-alive connection is closed
#define S_MAX_APPS 64        //  apps with a key
#define S_CONN_REQS 64       //  requests of a connection between parse and written answer
#define S_SERVER_REQS 4096   //  the same, over every connection
#define S_HELD_MAX (1 << 20) //  bytes of answers a connection holds behind an earlier request
#define S_SCAN_MS 100        //  how often the sweep looks for late requests

typedef struct _s_conn_t s_conn_t;
typedef struct _s_req_t s_req_t;

//  One request of a connection, from its parse until its answer is
//  written: answers go out in request order (HTTP/1.1 pipelining).
struct _s_req_t {
    uint64_t ticket;    //  its ticket (in self->inflight until answered)
    s_conn_t *conn;     //  its connection
    int64_t since_ms;   //  when it was handed over
    int64_t timeout_ms; //  how long its answer may take
    bool close;         //  its answer says Connection: close (the connection's last request)
    char *answer;       //  the whole HTTP answer once answered, else NULL
    size_t alen;        //  its length
    s_req_t *next;      //  the connection's next request
};

//  One open connection.
struct _s_conn_t {
    uint8_t id[S_ID_MAX];       //  STREAM routing id
    size_t idlen;               //  its length
    char key[2 * S_ID_MAX + 1]; //  its index key (hex of id)
    char peer[64];              //  peer address, for log lines
    char *buf;                  //  bytes received, not yet parsed
    size_t len, alloc;          //  how many, room for
    s_req_t *head, *tail;       //  its requests not yet written, in order
    size_t nreqs;               //  how many
    size_t held;                //  bytes of answers among them, waiting for an earlier one
    int64_t since_ms;           //  the last activity (idle connections are closed)
    bool close;                 //  no more requests read (Connection: close, an error)
    bool parsing;               //  s_parse is reading its buffer (answers do not recurse)
    bool stalled;               //  waits for the server's bound of requests
    bool blocked;               //  its answers did not fit the socket: tried again later
    int64_t blocked_ms;         //  since when (closed after S_IDLE_MS of it)
};

//  An app and its key.
typedef struct {
    char app[ZIM_ID_MAX + 1];
    char *key;
} s_key_t;

struct _zim_apihttp_t {
    char *program;            //  for log lines
    zsock_t *sock;            //  STREAM
    int port;                 //  bound port
    char url[300];            //  base URL
    zhashx_t *conns;          //  hex id -> s_conn_t
    zhashx_t *inflight;       //  ticket (hex) -> s_req_t, not yet answered
    size_t nreqs;             //  requests between parse and written answer, every connection
    size_t nstalled;          //  connections waiting for that to fall (c->stalled)
    size_t nblocked;          //  connections whose answers wait for room (c->blocked)
    int parsing;              //  s_parse calls under way (stalled ones resume after)
    int64_t next_scan_ms;     //  when the sweep looks for late requests next
    s_key_t keys[S_MAX_APPS]; //  API keys
    size_t nkeys;             //  how many
    uint64_t next_ticket;     //  request tickets
    uint64_t requests;        //  answered 200
    uint64_t refused;         //  refused
    zim_ratelog_t ratelog;    //  refusals
    zim_apihttp_fn *fn;       //  the handler
    void *arg;                //  its argument
};

static void s_conn_destroy (void **item)
{
    s_conn_t *c = (s_conn_t *)*item;
    if (!c)
        return;
    while (c->head) {
        s_req_t *r = c->head;
        c->head = r->next;
        free (r->answer);
        free (r);
    }
    free (c->buf);
    free (c);
    *item = NULL;
}

zim_apihttp_t *zim_apihttp_new (const char *program, const char *address, zim_apihttp_fn *fn,
                                void *arg)
{
    const char *colon = address ? strrchr (address, ':') : NULL;
    uint64_t port;
    if (!colon || zim_parse_u64 (colon + 1, &port) || port > 65535) {
        zsys_error ("%s: API address '%s' is not HOST:PORT", program, address ? address : "");
        return NULL;
    }
    int hlen = (int)(colon - address);
    const char *host = hlen == 0 ? "*" : address;
    if (hlen == 0)
        hlen = 1;
    zim_apihttp_t *self = (zim_apihttp_t *)zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->fn = fn;
    self->arg = arg;
    self->conns = zhashx_new ();
    zhashx_set_destructor (self->conns, s_conn_destroy);
    self->inflight = zhashx_new ();
    self->sock = zsock_new (ZMQ_STREAM);
    assert (self->sock);
    zsock_set_linger (self->sock, 0);
    char port_text[16];
    snprintf (port_text, sizeof port_text, "%" PRIu64, port);
    self->port = zsock_bind (self->sock, "tcp://%.*s:%s", hlen, host, port ? port_text : "*");
    if (self->port == -1) {
        zsys_error ("%s: cannot listen for the API on %s (%s)", program, address,
                    zmq_strerror (zmq_errno ()));
        zim_apihttp_destroy (&self);
        return NULL;
    }
    bool any = (hlen == 1 && *host == '*') || (hlen == 7 && !strncmp (host, "0.0.0.0", 7));
    snprintf (self->url, sizeof self->url, "http://%.*s:%d", any ? 9 : hlen,
              any ? "127.0.0.1" : host, self->port);
    return self;
}

void zim_apihttp_destroy (zim_apihttp_t **self_p)
{
    zim_apihttp_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    zhashx_destroy (&self->inflight);
    zhashx_destroy (&self->conns);
    for (size_t i = 0; i < self->nkeys; i++) {
        OPENSSL_cleanse (self->keys[i].key, strlen (self->keys[i].key));
        free (self->keys[i].key);
    }
    free (self->program);
    free (self);
    *self_p = NULL;
}

int zim_apihttp_add_key (zim_apihttp_t *self, const char *app, const char *key)
{
    if (!zim_uid_valid (zim_str (app)) || !key || strlen (key) < 16 || strlen (key) > 256 ||
        self->nkeys == S_MAX_APPS) {
        zsys_error ("%s: API key of app '%s' refused: 16 to 256 characters, at most %d apps",
                    self->program, app, S_MAX_APPS);
        return -1;
    }
    snprintf (self->keys[self->nkeys].app, sizeof self->keys[0].app, "%s", app);
    self->keys[self->nkeys++].key = zim_strdup (key);
    return 0;
}

int zim_apihttp_key_file (zim_apihttp_t *self, const char *app, const char *path)
{
    char key[300] = "";
    FILE *f = fopen (path, "r");
    if (f) {
        if (!fgets (key, sizeof key, f))
            key[0] = 0;
        fclose (f);
        key[strcspn (key, "\r\n")] = 0;
    } else {
        uint8_t raw[32];
        if (RAND_bytes (raw, sizeof raw) != 1)
            return -1;
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf (key + 2 * i, 3, "%02x", raw[i]);
        int fd = open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || write (fd, key, strlen (key)) != (ssize_t)strlen (key) ||
            write (fd, "\n", 1) != 1) {
            if (fd >= 0)
                close (fd);
            zsys_error ("%s: cannot write the API key to %s", self->program, path);
            return -1;
        }
        close (fd);
    }
    return zim_apihttp_add_key (self, app, key);
}

zsock_t *zim_apihttp_sock (zim_apihttp_t *self)
{
    return self->sock;
}

int zim_apihttp_port (zim_apihttp_t *self)
{
    return self->port;
}

const char *zim_apihttp_url (zim_apihttp_t *self)
{
    return self->url;
}

uint64_t zim_apihttp_requests (zim_apihttp_t *self)
{
    return self->requests;
}

uint64_t zim_apihttp_refused (zim_apihttp_t *self)
{
    return self->refused;
}

//  -------------------------------------------------------------------------
//  Answers

static const char *s_reason (int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}


static void s_parse (zim_apihttp_t *self, s_conn_t *c);

//  Forgets c and its requests (their late answers go nowhere).
static void s_drop (zim_apihttp_t *self, s_conn_t *c)
{
    for (s_req_t *r = c->head; r; r = r->next) {
        if (!r->answer) {
            char ticket[24];
            snprintf (ticket, sizeof ticket, "%" PRIx64, r->ticket);
            zhashx_delete (self->inflight, ticket);
        }
        self->nreqs--;
    }
    self->nstalled -= c->stalled ? 1 : 0;
    self->nblocked -= c->blocked ? 1 : 0;
    zhashx_delete (self->conns, c->key);
}

//  Closes c's connection and forgets it.
static void s_close (zim_apihttp_t *self, s_conn_t *c)
{
    void *sock = zsock_resolve (self->sock);
    zmq_send (sock, c->id, c->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (sock, "", 0, ZMQ_DONTWAIT);
    s_drop (self, c);
}

//  Resumes the connections that waited for the server's bound of
//  requests, once no s_parse is under way (no recursion through answers).
static void s_resume (zim_apihttp_t *self)
{
    if (self->parsing || !self->nstalled || self->nreqs >= S_SERVER_REQS)
        return;
    zlist_t *stalled = zlist_new ();
    for (s_conn_t *c = zhashx_first (self->conns); c; c = zhashx_next (self->conns))
        if (c->stalled)
            zlist_append (stalled, c);
    for (s_conn_t *c = zlist_first (stalled); c; c = zlist_next (stalled)) {
        c->stalled = false;
        self->nstalled--;
        s_parse (self, c);
    }
    zlist_destroy (&stalled);
}

//  Writes c's answers that are due (the first ones, up to one not yet
//  answered) in one message; then reads c's next requests. Answers that
//  do not fit the socket now stay, and c is tried again later.
static void s_flush (zim_apihttp_t *self, s_conn_t *c)
{
    size_t size = 0, n = 0;
    for (s_req_t *r = c->head; r && r->answer; r = r->next, n++)
        size += r->alen;
    if (n > 0) {
        zmq_msg_t out;
        zmq_msg_init_size (&out, size);
        char *at = (char *)zmq_msg_data (&out);
        for (s_req_t *r = c->head; r && r->answer; r = r->next) {
            memcpy (at, r->answer, r->alen);
            at += r->alen;
        }
        void *sock = zsock_resolve (self->sock);
        bool sent = zmq_send (sock, c->id, c->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1 &&
                    zmq_msg_send (&out, sock, ZMQ_DONTWAIT) != -1;
        if (!sent) {
            zmq_msg_close (&out);
            if (zmq_errno () == EAGAIN) {
                if (!c->blocked) {
                    self->nblocked++;
                    c->blocked_ms = zclock_mono ();
                }
                c->blocked = true; //  its reader is slow: it gets no more until these went
                return;
            }
            zim_ratelog_warn (&self->ratelog, self->program, "API: cannot answer %s (%s)",
                              *c->peer ? c->peer : "?", zmq_strerror (zmq_errno ()));
        }
        if (c->blocked)
            self->nblocked--;
        c->blocked = false;
        for (size_t i = 0; i < n; i++) {
            s_req_t *r = c->head;
            c->head = r->next;
            free (r->answer);
            free (r);
            c->nreqs--;
            self->nreqs--;
        }
        if (!c->head)
            c->tail = NULL;
        c->held = 0;
        for (s_req_t *r = c->head; r; r = r->next)
            c->held += r->answer ? r->alen : 0;
        c->since_ms = zclock_mono ();
    }
    if (!c->close && c->len > 0)
        s_parse (self, c); //  pipelined requests
    s_resume (self);
}

//  Answers r with status and a JSON body, in its turn on its connection.
static void s_answer (zim_apihttp_t *self, s_req_t *r, int status, const char *json)
{
    assert (!r->answer);
    char ticket[24];
    snprintf (ticket, sizeof ticket, "%" PRIx64, r->ticket);
    zhashx_delete (self->inflight, ticket);
    size_t blen = strlen (json);
    char header[512];
    int hlen =
        snprintf (header, sizeof header,
                  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                  "%zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                  status, s_reason (status), blen + 1, r->close ? "Connection: close\r\n" : "",
                  status == 405 ? "Allow: GET, POST, DELETE\r\n" : "");
    r->alen = (size_t)hlen + blen + 1;
    r->answer = zim_malloc (r->alen);
    memcpy (r->answer, header, (size_t)hlen);
    memcpy (r->answer + hlen, json, blen);
    r->answer[hlen + blen] = '\n';
    if (status == 200)
        self->requests++;
    s_conn_t *c = r->conn;
    if (c->head != r) {
        c->held += r->alen; //  waits for an earlier one
        return;
    }
    s_flush (self, c);
}

//  Refuses r: logged, counted, answered {"error":{code,text}}.
static void s_refuse (zim_apihttp_t *self, s_req_t *r, int status, const char *code,
                      const char *text)
{
    self->refused++;
    char who[96];
    snprintf (who, sizeof who, "%s API", self->program);
    zim_ratelog_warn (&self->ratelog, who, "request from %s refused (%d %s): %s",
                      *r->conn->peer ? r->conn->peer : "?", status, code, text);
    json_t *doc = json_pack ("{s:{s:s, s:s}}", "error", "code", code, "text", text);
    char *json = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    s_answer (self, r, status, json);
    free (json);
}

//  The request ticket not yet answered, or NULL.
static s_req_t *s_inflight (zim_apihttp_t *self, uint64_t ticket)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRIx64, ticket);
    return (s_req_t *)zhashx_lookup (self->inflight, key);
}

bool zim_apihttp_answer (zim_apihttp_t *self, uint64_t ticket, int status, const char *json)
{
    s_req_t *r = s_inflight (self, ticket);
    if (!r)
        return false;
    if (status != 200) {
        self->refused++;
        char who[96];
        snprintf (who, sizeof who, "%s API", self->program);
        zim_ratelog_warn (&self->ratelog, who, "request from %s refused (%d): %s",
                          *r->conn->peer ? r->conn->peer : "?", status, json);
    }
    s_answer (self, r, status, json);
    return true;
}

void zim_apihttp_refuse (zim_apihttp_t *self, uint64_t ticket, int status, const char *code,
                         const char *text)
{
    s_req_t *r = s_inflight (self, ticket);
    if (r)
        s_refuse (self, r, status, code, text);
}

void zim_apihttp_wait (zim_apihttp_t *self, uint64_t ticket, int64_t timeout_ms)
{
    s_req_t *r = s_inflight (self, ticket);
    if (r)
        r->timeout_ms = timeout_ms;
}

//  -------------------------------------------------------------------------
//  Requests

//  A new request of c, last in its order; close: the connection's last.
static s_req_t *s_req_new (zim_apihttp_t *self, s_conn_t *c, bool close)
{
    s_req_t *r = (s_req_t *)zim_calloc (1, sizeof *r);
    r->ticket = ++self->next_ticket;
    r->conn = c;
    r->since_ms = zclock_mono ();
    r->timeout_ms = S_ANSWER_MS;
    r->close = close;
    if (close)
        c->close = true;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreqs++;
    self->nreqs++;
    char ticket[24];
    snprintf (ticket, sizeof ticket, "%" PRIx64, r->ticket);
    zhashx_insert (self->inflight, ticket, r);
    return r;
}

//  Refuses c's next request and reads no more of c (its buffer dropped).
static void s_fail (zim_apihttp_t *self, s_conn_t *c, int status, const char *code,
                    const char *text)
{
    c->len = 0;
    s_refuse (self, s_req_new (self, c, true), status, code, text);
}

//  The app whose key is key, or NULL (every key compared in full).
static const char *s_app_of (zim_apihttp_t *self, const char *key, size_t len)
{
    const char *found = NULL;
    for (size_t i = 0; i < self->nkeys; i++) {
        size_t klen = strlen (self->keys[i].key);
        if (klen == len && CRYPTO_memcmp (self->keys[i].key, key, len) == 0)
            found = self->keys[i].app;
    }
    return found;
}

//  The value of header name in head (NUL-terminated), into buf; false if
//  absent.
static bool s_header (const char *head, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen (name);
    for (const char *line = strchr (head, '\n'); line && line[1]; line = strchr (line + 1, '\n')) {
        const char *h = line + 1;
        if (strncasecmp (h, name, nlen) == 0 && h[nlen] == ':') {
            h += nlen + 1;
            while (*h == ' ' || *h == '\t')
                h++;
            size_t vlen = strcspn (h, "\r\n");
            snprintf (buf, size, "%.*s", (int)vlen, h);
            return true;
        }
    }
    return false;
}

//  Looks at the first request c has received: answers or hands it over
//  if it is complete (taken out of the buffer), else leaves it there.

//  Reads the first request c has received, if complete: takes it out of
//  the buffer and answers it or hands it over. Returns false if it is not
//  complete yet.
static bool s_parse_one (zim_apihttp_t *self, s_conn_t *c)
{
    //  The end of the headers.
    char *end = NULL;
    for (size_t i = 0; i + 3 < c->len && i < S_HEAD_MAX; i++)
        if (memcmp (c->buf + i, "\r\n\r\n", 4) == 0) {
            end = c->buf + i;
            break;
        }
    if (!end) {
        if (c->len < S_HEAD_MAX)
            return false;
        s_fail (self, c, 413, "too_large", "request headers over 16 KiB");
        return true;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    char *head = zim_malloc (hlen + 1);
    memcpy (head, c->buf, hlen);
    head[hlen] = 0;
    //  The target may take the whole 16 KiB of the head (a long users=...).
    char method[16], version[16];
    char *target = zim_malloc (hlen + 1);
    if (sscanf (head, "%15[A-Z] %[^ \r\n] %15[^ \r\n]", method, target, version) != 3 ||
        target[0] != '/' || strncmp (version, "HTTP/1.", 7) != 0) {
        free (target);
        free (head);
        s_fail (self, c, 400, "bad_request", "not an HTTP/1.x request");
        return true;
    }
    char value[512];
    uint64_t clen = 0;
    const char *bad = NULL;
    if (s_header (head, "Content-Length", value, sizeof value) && zim_parse_u64 (value, &clen))
        bad = "Content-Length is not a number";
    else if (clen > S_BODY_MAX) {
        free (target);
        free (head);
        s_fail (self, c, 413, "too_large", "a request body may hold at most 1 MiB");
        return true;
    }
    if (bad || c->len < hlen + clen) {
        free (target);
        free (head);
        if (bad)
            s_fail (self, c, 400, "bad_request", bad);
        return bad != NULL; //  else the body is still coming
    }
    bool close =
        (s_header (head, "Connection", value, sizeof value) && strcasecmp (value, "close") == 0) ||
        streq (version, "HTTP/1.0");
    //  The request: head and body, taken out of the buffer.
    char *body = zim_malloc (clen + 1);
    memcpy (body, c->buf + hlen, clen);
    body[clen] = 0;
    memmove (c->buf, c->buf + hlen + clen, c->len - hlen - clen);
    c->len -= hlen + clen;
    char *query = strchr (target, '?');
    if (query)
        *query++ = 0;
    char type[128] = "";
    bool has_type = s_header (head, "Content-Type", type, sizeof type);
    const char *app = NULL;
    s_req_t *r = s_req_new (self, c, close);
    if (!s_header (head, "Authorization", value, sizeof value) ||
        strncmp (value, "Bearer ", 7) != 0)
        s_refuse (self, r, 401, "unauthorized", "Authorization: Bearer KEY is required");
    else if (!(app = s_app_of (self, value + 7, strlen (value + 7))))
        s_refuse (self, r, 403, "forbidden", "no app has this API key");
    else {
        //  In flight from now: the handler answers it now or later (r may
        //  be gone when it returns).
        zim_apihttp_req_t req = {
            r->ticket, method, target, query ? query : "", app, has_type ? type : NULL, body, clen};
        self->fn (self->arg, &req);
    }
    free (body);
    free (target);
    free (head);
    return true;
}

//  Reads c's requests while they are complete and c has room for them: at
//  most S_CONN_REQS (and S_HELD_MAX bytes of held answers) per connection,
//  S_SERVER_REQS in all, none while its answers wait for the socket. What
//  follows stays in its buffer, which is bounded: a client that sends
//  faster than it reads is read no further. A loop, not a recursion
//  through the answers, however many a client pipelined.
static void s_parse (zim_apihttp_t *self, s_conn_t *c)
{
    if (c->parsing)
        return; //  the loop below goes on
    c->parsing = true;
    self->parsing++;
    while (!c->close && !c->blocked && c->len > 0 && c->nreqs < S_CONN_REQS &&
           c->held < S_HELD_MAX) {
        if (self->nreqs >= S_SERVER_REQS) {
            if (!c->stalled)
                self->nstalled++;
            c->stalled = true; //  resumed by s_resume
            break;
        }
        if (!s_parse_one (self, c))
            break;
    }
    c->parsing = false;
    self->parsing--;
}

void zim_apihttp_handle (zim_apihttp_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sock);
    zframe_t *id = msg ? zmsg_first (msg) : NULL;
    zframe_t *data = msg ? zmsg_next (msg) : NULL;
    if (!id || !data || zframe_size (id) == 0 || zframe_size (id) > S_ID_MAX) {
        zmsg_destroy (&msg);
        return;
    }
    char key[2 * S_ID_MAX + 1];
    for (size_t i = 0; i < zframe_size (id); i++)
        snprintf (key + 2 * i, 3, "%02x", zframe_data (id)[i]);
    s_conn_t *c = (s_conn_t *)zhashx_lookup (self->conns, key);
    if (zframe_size (data) == 0) {
        if (c) //  the peer closed
            s_drop (self, c);
        else if (zhashx_size (self->conns) < S_MAX_CONNS) {
            c = (s_conn_t *)zim_calloc (1, sizeof *c);
            memcpy (c->id, zframe_data (id), zframe_size (id));
            c->idlen = zframe_size (id);
            snprintf (c->key, sizeof c->key, "%s", key);
            const char *peer = zframe_meta (data, "Peer-Address");
            snprintf (c->peer, sizeof c->peer, "%s", peer ? peer : "");
            c->since_ms = zclock_mono ();
            zhashx_insert (self->conns, key, c);
        } else {
            void *sock = zsock_resolve (self->sock);
            zmq_send (sock, zframe_data (id), zframe_size (id), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send (sock, "", 0, ZMQ_DONTWAIT);
            self->refused++;
        }
        zmsg_destroy (&msg);
        s_resume (self);
        return;
    }
    if (c && !c->close) {
        size_t n = zframe_size (data);
        if (c->len + n > S_HEAD_MAX + S_BODY_MAX + 1)
            //  More than one request may hold (after those in flight).
            s_fail (self, c, 413, "too_large", "a request body may hold at most 1 MiB");
        else {
            if (c->len + n > c->alloc) {
                c->alloc = (c->len + n) * 2;
                c->buf = zim_realloc (c->buf, c->alloc);
            }
            memcpy (c->buf + c->len, zframe_data (data), n);
            c->len += n;
            if (!c->head)
                c->since_ms = zclock_mono ();
            s_parse (self, c);
        }
    }
    zmsg_destroy (&msg);
    s_resume (self);
}

void zim_apihttp_sweep (zim_apihttp_t *self)
{
    int64_t now = zclock_mono ();
    //  Answers that waited for room in the socket.
    if (self->nblocked) {
        zlist_t *blocked = zlist_new ();
        for (s_conn_t *c = zhashx_first (self->conns); c; c = zhashx_next (self->conns))
            if (c->blocked)
                zlist_append (blocked, c);
        for (s_conn_t *c = zlist_first (blocked); c; c = zlist_next (blocked))
            s_flush (self, c);
        zlist_destroy (&blocked);
    }
    if (now < self->next_scan_ms)
        return;
    self->next_scan_ms = now + S_SCAN_MS;
    //  Idle connections closed (and those that read nothing for as long);
    //  requests past their time answered 503.
    zlist_t *idle = zlist_new ();
    size_t nlate = 0, cap = 0;
    uint64_t *late = NULL;
    for (s_conn_t *c = zhashx_first (self->conns); c; c = zhashx_next (self->conns)) {
        if ((!c->head && now - c->since_ms > (c->close ? 5000 : S_IDLE_MS)) ||
            (c->blocked && now - c->blocked_ms > S_IDLE_MS)) {
            zlist_append (idle, c); //  idle, or reads none of its answers
            continue;
        }
        for (s_req_t *r = c->head; r; r = r->next)
            if (!r->answer && now - r->since_ms > r->timeout_ms) {
                if (nlate == cap) {
                    cap = cap ? 2 * cap : 16;
                    late = zim_realloc (late, cap * sizeof *late);
                }
                late[nlate++] = r->ticket;
            }
    }
    for (s_conn_t *c = zlist_first (idle); c; c = zlist_next (idle))
        s_close (self, c);
    zlist_destroy (&idle);
    for (size_t i = 0; i < nlate; i++) {
        s_req_t *r = s_inflight (self, late[i]);
        if (r) {
            char why[64];
            snprintf (why, sizeof why, "no answer within %d s", (int)(r->timeout_ms / 1000));
            s_refuse (self, r, 503, "unavailable", why);
        }
    }
    free (late);
}

//  -------------------------------------------------------------------------
//  Selftest: a real TCP client; the handler answers GET /now at once, lets
//  GET /later wait (answered by the test), and GET /never time out.

typedef struct {
    zim_apihttp_t *http;
    uint64_t later; //  the ticket of /later
    uint64_t never; //  the ticket of /never
} s_test_t;

static void s_test_fn (void *arg, const zim_apihttp_req_t *req)
{
    s_test_t *t = (s_test_t *)arg;
    if (streq (req->path, "/now")) {
        char json[128];
        snprintf (json, sizeof json, "{\"app\":\"%s\",\"len\":%zu}", req->app, req->blen);
        assert (zim_apihttp_answer (t->http, req->ticket, 200, json));
    } else if (streq (req->path, "/later"))
        t->later = req->ticket;
    else if (streq (req->path, "/never")) {
        t->never = req->ticket;
        zim_apihttp_wait (t->http, req->ticket, 100);
    } else
        zim_apihttp_refuse (t->http, req->ticket, 404, "not_found", "no such endpoint");
}

//  Serves until fd has a whole answer (or 5 s); returns it.
static char *s_test_call (s_test_t *t, int fd, const char *request)
{
    assert (write (fd, request, strlen (request)) == (ssize_t)strlen (request));
    char *answer = zim_calloc (1, 65536);
    size_t len = 0;
    int64_t deadline = zclock_mono () + 5000;
    zpoller_t *poller = zpoller_new (zim_apihttp_sock (t->http), NULL);
    while (zclock_mono () < deadline) {
        if (zpoller_wait (poller, 20))
            zim_apihttp_handle (t->http);
        zim_apihttp_sweep (t->http);
        ssize_t n = recv (fd, answer + len, 65535 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        const char *body = strstr (answer, "\r\n\r\n");
        const char *clen = strstr (answer, "Content-Length: ");
        if (body && clen && strlen (body + 4) >= (size_t)atoi (clen + 16))
            break;
        if (t->later) {
            assert (zim_apihttp_answer (t->http, t->later, 200, "{\"later\":1}"));
            t->later = 0;
        }
    }
    zpoller_destroy (&poller);
    return answer;
}

//  Writes /later and 20,000 requests refused at once (401) behind it,
//  pumping the server and reading meanwhile, then answers /later: every
//  answer comes, /later's first (in request order, though the 401s were
//  answered before it), the 20,000 read in a loop and never more than
//  S_CONN_REQS of them held; the connection still serves.
static void s_test_pipeline (s_test_t *t, int fd)
{
    const char *wait =
        "GET /later HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n";
    const char *bad = "GET /x HTTP/1.1\r\n\r\n";
    size_t n = 20000, size = strlen (wait) + n * strlen (bad);
    char *all = zim_malloc (size + 1);
    size_t len = (size_t)snprintf (all, size + 1, "%s", wait);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf (all + len, size + 1 - len, "%s", bad);
    size_t sent = 0, answers = 0, got = 0;
    char chunk[65536 + 16], first[64] = "";
    size_t carry = 0; //  the last bytes of the previous chunk (a status line across two)
    int64_t deadline = zclock_mono () + 20000;
    zpoller_t *poller = zpoller_new (zim_apihttp_sock (t->http), NULL);
    while (zclock_mono () < deadline && answers < n + 1) {
        if (sent < size) {
            ssize_t w = send (fd, all + sent, size - sent, MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
        }
        if (zpoller_wait (poller, 5))
            zim_apihttp_handle (t->http);
        zim_apihttp_sweep (t->http);
        if (t->later && sent == size) {
            //  Everything is queued behind it now (once the server read it).
            for (int i = 0; i < 50; i++)
                if (zpoller_wait (poller, 5))
                    zim_apihttp_handle (t->http);
            assert (t->http->nreqs <= S_CONN_REQS);
            assert (zim_apihttp_answer (t->http, t->later, 200, "{\"later\":1}"));
            t->later = 0;
        }
        ssize_t r = recv (fd, chunk + carry, 65536, MSG_DONTWAIT);
        if (r <= 0)
            continue;
        if (got < sizeof first - 1)
            snprintf (first + got, sizeof first - got, "%.*s", (int)r, chunk + carry);
        got += (size_t)r;
        size_t end = carry + (size_t)r;
        for (size_t i = 0; i + 9 <= end; i++)
            if (memcmp (chunk + i, "HTTP/1.1 ", 9) == 0 && i + 9 > carry)
                answers++;
        carry = end < 8 ? end : 8;
        memmove (chunk, chunk + end - carry, carry);
    }
    assert (sent == size && !t->later && answers == n + 1);
    assert (strncmp (first, "HTTP/1.1 200", 12) == 0);
    zpoller_destroy (&poller);
    free (all);
    char *a = s_test_call (t, fd,
                           "POST /now HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n"
                           "Content-Length: 4\r\n\r\nlast");
    assert (strstr (a, "\"len\":4}"));
    free (a);
}

//  A client that sends 20,000 requests and reads nothing meanwhile (a
//  small receive buffer, a small high-water mark): the server writes what
//  fits, then holds the rest (c->blocked) and parses no further, at most
//  S_CONN_REQS requests held; once the client reads, every answer comes.
static void s_test_slow_reader (s_test_t *t)
{
    zsock_set_sndhwm (zim_apihttp_sock (t->http), 4); //  for the pipes of new connections
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    assert (setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons ((uint16_t)zim_apihttp_port (t->http))};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert (connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    const char *bad = "GET /x HTTP/1.1\r\n\r\n";
    size_t n = 20000, size = n * strlen (bad), sent = 0, answers = 0, carry = 0;
    char *all = zim_malloc (size + 1);
    for (size_t i = 0; i < n; i++)
        memcpy (all + i * strlen (bad), bad, strlen (bad));
    char chunk[65536 + 16];
    bool seen_blocked = false;
    int64_t deadline = zclock_mono () + 20000;
    zpoller_t *poller = zpoller_new (zim_apihttp_sock (t->http), NULL);
    while (zclock_mono () < deadline && answers < n) {
        if (sent < size) {
            ssize_t w = send (fd, all + sent, size - sent, MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
        }
        if (zpoller_wait (poller, seen_blocked ? 1 : 5))
            zim_apihttp_handle (t->http);
        zim_apihttp_sweep (t->http);
        assert (t->http->nreqs <= S_CONN_REQS);
        if (!seen_blocked) {
            seen_blocked = t->http->nblocked > 0 && sent == size;
            continue; //  read nothing until the server holds its answers
        }
        ssize_t r = recv (fd, chunk + carry, 65536, MSG_DONTWAIT);
        if (r <= 0)
            continue;
        size_t end = carry + (size_t)r;
        for (size_t i = 0; i + 12 <= end; i++) //  not counted already: i + 12 > carry
            if (i + 12 > carry && memcmp (chunk + i, "HTTP/1.1 401", 12) == 0)
                answers++;
        carry = end < 11 ? end : 11;
        memmove (chunk, chunk + end - carry, carry);
    }
    assert (seen_blocked && answers == n && t->http->nblocked == 0);
    zpoller_destroy (&poller);
    free (all);
    close (fd);
    zsock_set_sndhwm (zim_apihttp_sock (t->http), 1000);
}

void zim_apihttp_test (bool verbose)
{
    (void)verbose;
    s_test_t t = {NULL, 0, 0};
    t.http = zim_apihttp_new ("test", "127.0.0.1:0", s_test_fn, &t);
    assert (t.http && zim_apihttp_port (t.http) > 0);
    assert (zim_apihttp_add_key (t.http, "demo", "short") == -1);
    assert (zim_apihttp_add_key (t.http, "demo", "demo-key-demo-key-demo") == 0);
    char path[] = "/tmp/zim-apikey-XXXXXX";
    int tmp = mkstemp (path);
    close (tmp);
    unlink (path);
    assert (zim_apihttp_key_file (t.http, "other", path) == 0);
    struct stat st;
    assert (stat (path, &st) == 0 && (st.st_mode & 0777) == 0600);
    unlink (path);

    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons ((uint16_t)zim_apihttp_port (t.http))};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert (connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    //  Kept alive, the key's app and the body handed over.
    char *a = s_test_call (&t, fd,
                           "POST /now HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n"
                           "Content-Length: 3\r\n\r\nabc");
    assert (strstr (a, "HTTP/1.1 200") && strstr (a, "{\"app\":\"demo\",\"len\":3}"));
    free (a);
    //  Answered later, with its ticket.
    a = s_test_call (&t, fd,
                     "GET /later HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 200") && strstr (a, "{\"later\":1}"));
    free (a);
    //  Thousands pipelined behind a request that waits, refused at once
    //  when its answer comes: read in a loop, the last one answered.
    s_test_pipeline (&t, fd);
    //  A client that reads nothing while it sends is held back, loses nothing.
    s_test_slow_reader (&t);
    //  Not answered in its time: 503, and a late answer goes nowhere.
    a = s_test_call (&t, fd,
                     "GET /never HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 503") && strstr (a, "unavailable"));
    free (a);
    assert (!zim_apihttp_answer (t.http, t.never, 200, "{}"));
    //  Refusals before the handler.
    a = s_test_call (&t, fd,
                     "GET /now HTTP/1.1\r\nAuthorization: Bearer nope-nope-nope-nope\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 403") && strstr (a, "\"forbidden\""));
    free (a);
    a = s_test_call (&t, fd, "GET /now HTTP/1.1\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 401"));
    free (a);
    a = s_test_call (&t, fd,
                     "GET /else HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 404"));
    free (a);
    a = s_test_call (&t, fd,
                     "POST /now HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n"
                     "Content-Length: 2000000\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 413"));
    free (a);
    close (fd);
    assert (zim_apihttp_requests (t.http) == 4 && zim_apihttp_refused (t.http) == 5 + 2 * 20000);
    zim_apihttp_destroy (&t.http);
}
