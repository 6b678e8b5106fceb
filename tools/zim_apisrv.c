/*  zim_apisrv.c: the backend push API (zim_apisrv.h). A ZeroMQ STREAM
    socket hands us each TCP connection's bytes as [id, data] messages (an
    empty data frame when one opens or closes); each connection has one
    request in flight at a time (a client may pipeline: what follows waits
    in its buffer until the answer went out).
*/
#include "tools/zim_apisrv.h"
#include "tools/zim_apibody.h"
#include "tools/zim_apigroups.h"
#include "tools/zim_apipersist.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_CONNS 1024          //  connections open at once
#define S_HEAD_MAX 16384          //  bytes of request line and headers
#define S_BODY_MAX (1 << 20)      //  bytes of a request body (413 beyond)
#define S_ID_MAX 256              //  bytes of a STREAM routing id
#define S_ROUTER_MS 5000          //  a router must answer by then (503)
#define S_IDLE_MS 60000           //  an idle kept-alive connection is closed
#define S_MAX_TARGETS 10000       //  users, rooms or connections per request
#define S_MAX_APPS 64             //  apps with a key

//  One open connection.
typedef struct {
    uint8_t id[S_ID_MAX]; //  STREAM routing id
    size_t idlen;         //  its length
    char key[2 * S_ID_MAX + 1]; //  its index key (hex of id)
    char peer[64];        //  peer address, for log lines
    char *buf;            //  bytes received, not yet handled
    size_t len, alloc;    //  how many, room for
    uint64_t req;         //  the request in flight (0: none)
    int64_t since_ms;     //  when it was sent to a router, or the last activity
    bool close;           //  close once the answer went out (Connection: close, an error)
    bool persist;         //  req is a persisted push (its own deadline)
} s_conn_t;

//  An app and its key.
typedef struct {
    char app[ZIM_ID_MAX + 1];
    char *key;
} s_key_t;

struct _zim_apisrv_t {
    char *program;           //  for log lines
    zsock_t *sock;           //  STREAM
    zsock_t *routers;        //  DEALER to every router
    int port;                //  bound port
    char url[300];           //  base URL
    zhashx_t *conns;         //  hex id -> s_conn_t
    zhashx_t *inflight;      //  req (hex) -> s_conn_t
    s_key_t keys[S_MAX_APPS]; //  API keys
    size_t nkeys;            //  how many
    uint64_t next_req;       //  request ids
    uint64_t requests;       //  answered 200
    uint64_t refused;        //  refused
    zim_ratelog_t ratelog;   //  refusals
    zim_wr_t wr;             //  API_Q
    zim_wr_t body;           //  the push body as msgpack
    zim_adminsrv_verb_fn *store_fn; //  the store's admin verbs (groups), or NULL
    void *store_arg;         //  its argument
    zim_apipersist_t *persist; //  persisted pushes, through a broker
};

static void s_conn_destroy (void **item)
{
    s_conn_t *c = (s_conn_t *)*item;
    if (!c)
        return;
    free (c->buf);
    free (c);
    *item = NULL;
}

zim_apisrv_t *zim_apisrv_new (const char *program, const char *address, const char *routers,
                              const zim_curve_t *curve)
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
    zim_apisrv_t *self = (zim_apisrv_t *)zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->conns = zhashx_new ();
    zhashx_set_destructor (self->conns, s_conn_destroy);
    self->inflight = zhashx_new ();
    zim_wr_init (&self->wr);
    zim_wr_init (&self->body);
    self->sock = zsock_new (ZMQ_STREAM);
    assert (self->sock);
    zsock_set_linger (self->sock, 0);
    char port_text[16];
    snprintf (port_text, sizeof port_text, "%" PRIu64, port);
    self->port = zsock_bind (self->sock, "tcp://%.*s:%s", hlen, host, port ? port_text : "*");
    if (self->port == -1) {
        zsys_error ("%s: cannot listen for the API on %s (%s)", program, address,
                    zmq_strerror (zmq_errno ()));
        zim_apisrv_destroy (&self);
        return NULL;
    }
    bool any = (hlen == 1 && *host == '*') || (hlen == 7 && !strncmp (host, "0.0.0.0", 7));
    snprintf (self->url, sizeof self->url, "http://%.*s:%d", any ? 9 : hlen,
              any ? "127.0.0.1" : host, self->port);
    self->routers = zim_curve_socket (curve, ZMQ_DEALER, NULL, 64 << 20);
    if (!self->routers) {
        zim_apisrv_destroy (&self);
        return NULL;
    }
    self->persist = zim_apipersist_new (program, curve);
    if (!self->persist) {
        zim_apisrv_destroy (&self);
        return NULL;
    }
    char identity[64];
    snprintf (identity, sizeof identity, "api:%d:%u", (int)getpid (), (unsigned)randof (1 << 30));
    zsock_set_identity (self->routers, identity);
    zsock_set_sndhwm (self->routers, 100000);
    char *list = zim_strdup (routers ? routers : "");
    for (char *tok = strtok (list, ", "); tok; tok = strtok (NULL, ", "))
        if (zsock_connect (self->routers, "%s", tok))
            zsys_error ("%s: API: cannot connect to router %s", program, tok);
    free (list);
    return self;
}

void zim_apisrv_destroy (zim_apisrv_t **self_p)
{
    zim_apisrv_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    zsock_destroy (&self->routers);
    zim_apipersist_destroy (&self->persist);
    zhashx_destroy (&self->inflight);
    zhashx_destroy (&self->conns);
    for (size_t i = 0; i < self->nkeys; i++) {
        OPENSSL_cleanse (self->keys[i].key, strlen (self->keys[i].key));
        free (self->keys[i].key);
    }
    zim_wr_free (&self->wr);
    zim_wr_free (&self->body);
    free (self->program);
    free (self);
    *self_p = NULL;
}

int zim_apisrv_add_key (zim_apisrv_t *self, const char *app, const char *key)
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

int zim_apisrv_key_file (zim_apisrv_t *self, const char *app, const char *path)
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
    return zim_apisrv_add_key (self, app, key);
}

void zim_apisrv_use_store (zim_apisrv_t *self, zim_adminsrv_verb_fn *fn, void *arg)
{
    self->store_fn = fn;
    self->store_arg = arg;
}

void zim_apisrv_use_broker (zim_apisrv_t *self, const char *endpoint)
{
    zim_apipersist_use_broker (self->persist, endpoint);
}

void zim_apisrv_map (zim_apisrv_t *self, zframe_t *map)
{
    zim_apipersist_map (self->persist, map);
}

zsock_t *zim_apisrv_brokers (zim_apisrv_t *self)
{
    return zim_apipersist_sock (self->persist);
}

zsock_t *zim_apisrv_sock (zim_apisrv_t *self)
{
    return self->sock;
}

zsock_t *zim_apisrv_routers (zim_apisrv_t *self)
{
    return self->routers;
}

int zim_apisrv_port (zim_apisrv_t *self)
{
    return self->port;
}

const char *zim_apisrv_url (zim_apisrv_t *self)
{
    return self->url;
}

uint64_t zim_apisrv_requests (zim_apisrv_t *self)
{
    return self->requests;
}

uint64_t zim_apisrv_refused (zim_apisrv_t *self)
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

//  Closes c's connection and forgets it.
static void s_close (zim_apisrv_t *self, s_conn_t *c)
{
    void *sock = zsock_resolve (self->sock);
    zmq_send (sock, c->id, c->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (sock, "", 0, ZMQ_DONTWAIT);
    if (c->req) {
        char req[24];
        snprintf (req, sizeof req, "%" PRIx64, c->req);
        zhashx_delete (self->inflight, req);
    }
    zhashx_delete (self->conns, c->key);
}

static void s_parse (zim_apisrv_t *self, s_conn_t *c);

//  Answers c with status and a JSON body; then reads its next request, or
//  (c->close) lets the client close (closed by the sweep otherwise).
static void s_answer (zim_apisrv_t *self, s_conn_t *c, int status, const char *json)
{
    size_t blen = strlen (json);
    char header[512];
    int hlen = snprintf (header, sizeof header,
                         "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                         "%zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                         status, s_reason (status), blen + 1,
                         c->close ? "Connection: close\r\n" : "",
                         status == 405 ? "Allow: GET, POST\r\n" : "");
    zmq_msg_t out;
    zmq_msg_init_size (&out, (size_t)hlen + blen + 1);
    memcpy (zmq_msg_data (&out), header, (size_t)hlen);
    memcpy ((char *)zmq_msg_data (&out) + hlen, json, blen);
    ((char *)zmq_msg_data (&out))[hlen + blen] = '\n';
    void *sock = zsock_resolve (self->sock);
    if (zmq_send (sock, c->id, c->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_msg_send (&out, sock, ZMQ_DONTWAIT) == -1) {
        zim_ratelog_warn (&self->ratelog, self->program, "API: cannot answer %s (%s)",
                          *c->peer ? c->peer : "?", zmq_strerror (zmq_errno ()));
        zmq_msg_close (&out);
    }
    if (status == 200)
        self->requests++;
    c->req = 0;
    c->since_ms = zclock_mono ();
    if (!c->close && c->len > 0)
        s_parse (self, c); //  a pipelined request
}

//  Refuses c's request: logged, counted, answered {"error":{code,text}}.
static void s_refuse (zim_apisrv_t *self, s_conn_t *c, int status, const char *code,
                      const char *text)
{
    self->refused++;
    char who[96];
    snprintf (who, sizeof who, "%s API", self->program);
    zim_ratelog_warn (&self->ratelog, who, "request from %s refused (%d %s): %s",
                      *c->peer ? c->peer : "?", status, code, text);
    json_t *doc = json_pack ("{s:{s:s, s:s}}", "error", "code", code, "text", text);
    char *json = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    s_answer (self, c, status, json);
    free (json);
}

//  -------------------------------------------------------------------------
//  Requests

//  The app whose key is key, or NULL (every key compared in full).
static const char *s_app_of (zim_apisrv_t *self, const char *key, size_t len)
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

//  The value of query parameter name in query (after '?'), into buf.
static bool s_param (const char *query, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen (name);
    for (const char *p = query; p && *p; p = strchr (p, '&') ? strchr (p, '&') + 1 : NULL)
        if (strncmp (p, name, nlen) == 0 && p[nlen] == '=') {
            size_t vlen = strcspn (p + nlen + 1, "&");
            snprintf (buf, size, "%.*s", (int)vlen, p + nlen + 1);
            return true;
        }
    return false;
}

//  True if room is 1..128 bytes of A-Z a-z 0-9 _ . : @ / -.
static bool s_room_ok (const char *room)
{
    size_t len = strlen (room);
    if (len == 0 || len > 128)
        return false;
    return strspn (room, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-") ==
           len;
}

//  Sends API_Q (targets already in self->wr after its header) for c.
static void s_forward (zim_apisrv_t *self, s_conn_t *c)
{
    if (zmq_send (zsock_resolve (self->routers), self->wr.data, self->wr.size, ZMQ_DONTWAIT) !=
        (int)self->wr.size) {
        s_refuse (self, c, 503, "unavailable", "no router reachable");
        return;
    }
    char req[24];
    snprintf (req, sizeof req, "%" PRIx64, c->req);
    zhashx_insert (self->inflight, req, c);
    c->since_ms = zclock_mono ();
}

//  Checks every target (nothing half-applied) and packs the API_Q of op
//  for app into self->wr, with self->body as the body. Returns its request
//  id, or 0 with *why set.
static uint64_t s_build (zim_apisrv_t *self, int op, const char *app, json_t *targets,
                         uint64_t top, const char *room, const char **why)
{
    size_t n = targets ? json_array_size (targets) : 0;
    bool listed = op == ZIM_API_PUSH_USERS || op == ZIM_API_PUSH_ROOMS ||
                  op == ZIM_API_PUSH_CONNS || op == ZIM_API_ONLINE || op == ZIM_API_ROOM_JOIN ||
                  op == ZIM_API_ROOM_LEAVE || op == ZIM_API_DISCONNECT;
    const char *bad = NULL;
    if (listed && n == 0)
        bad = "at least one target is needed";
    if (n > S_MAX_TARGETS)
        bad = "at most 10000 targets";
    if (op == ZIM_API_PUSH_ROOMS && n > 256)
        bad = "at most 256 rooms";
    for (size_t i = 0; i < n && !bad; i++) {
        json_t *t = json_array_get (targets, i);
        if (op == ZIM_API_PUSH_CONNS || op == ZIM_API_DISCONNECT) {
            const char *u = json_string_value (json_object_get (t, "user"));
            const char *d = json_string_value (json_object_get (t, "device"));
            bool has_device = json_object_get (t, "device") != NULL;
            if (!u || !zim_uid_valid (zim_str (u)) || ((op == ZIM_API_PUSH_CONNS || has_device) &&
                                                       (!d || !zim_cid_valid (zim_str (d)))))
                bad = "each target must be {\"user\": UID, \"device\": DEVICE}";
        } else if (op == ZIM_API_PUSH_ROOMS || op == ZIM_API_ROOM) {
            if (!json_is_string (t) || !s_room_ok (json_string_value (t)))
                bad = "each room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -";
        } else if (!json_is_string (t) || !zim_uid_valid (zim_str (json_string_value (t))))
            bad = "each user must be a user id (1..64 of A-Z a-z 0-9 _ . @ -)";
    }
    if (bad) {
        *why = bad;
        return 0;
    }
    uint64_t req = ++self->next_req;
    zim_wr_reset (&self->wr);
    zim_str_t mpbody = self->body.size ? (zim_str_t){(const char *)self->body.data, self->body.size}
                                       : (zim_str_t){"\xc0", 1};
    zim_api_q_pack (&self->wr, &(zim_api_q_t){.req = req,
                                              .app = zim_str (app),
                                              .op = (uint64_t)op,
                                              .n = top,
                                              .room = zim_str (room ? room : ""),
                                              .body = mpbody,
                                              .ntargets = (uint32_t)n});
    bool pairs = op == ZIM_API_PUSH_CONNS || op == ZIM_API_DISCONNECT;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get (targets, i);
        const char *name = pairs ? json_string_value (json_object_get (t, "user"))
                                 : json_string_value (t);
        const char *device = pairs ? json_string_value (json_object_get (t, "device")) : "";
        if (!device)
            device = "";
        zim_api_target_pack (&self->wr, &(zim_api_target_t){zim_str (name), zim_str (device)});
    }
    return req;
}

//  A push, online, rooms or stats request of app: checked whole, then one
//  API_Q. Returns after answering or forwarding.
static void s_route (zim_apisrv_t *self, s_conn_t *c, const char *method, const char *path,
                     const char *query, const char *app, const char *type, const char *body,
                     size_t blen)
{
    bool post = streq (method, "POST"), get = streq (method, "GET");
    int op = 0;
    const char *list_key = NULL; //  the JSON array of targets
    char room[200] = "";
    if (strlen (path) > 10 + 140) {
        s_refuse (self, c, 404, "not_found", "no such endpoint (docs/API.md)");
        return;
    }
    if (streq (path, "/v1/push/users"))
        op = ZIM_API_PUSH_USERS, list_key = "users";
    else if (streq (path, "/v1/push/rooms"))
        op = ZIM_API_PUSH_ROOMS, list_key = "rooms";
    else if (streq (path, "/v1/push/conns"))
        op = ZIM_API_PUSH_CONNS, list_key = "targets";
    else if (streq (path, "/v1/push/all"))
        op = ZIM_API_PUSH_ALL;
    else if (streq (path, "/v1/online"))
        op = ZIM_API_ONLINE;
    else if (streq (path, "/v1/rooms"))
        op = ZIM_API_TOP;
    else if (streq (path, "/v1/stats"))
        op = ZIM_API_STATS;
    else if (strncmp (path, "/v1/rooms/", 10) == 0) {
        snprintf (room, sizeof room, "%.150s", path + 10);
        size_t rlen = strlen (room);
        if (rlen > 5 && streq (room + rlen - 5, "/join")) {
            room[rlen - 5] = 0;
            op = ZIM_API_ROOM_JOIN, list_key = "users";
        } else if (rlen > 6 && streq (room + rlen - 6, "/leave")) {
            room[rlen - 6] = 0;
            op = ZIM_API_ROOM_LEAVE, list_key = "users";
        } else
            op = ZIM_API_ROOM;
    } else if (streq (path, "/v1/disconnect"))
        op = ZIM_API_DISCONNECT;
    else {
        s_refuse (self, c, 404, "not_found", "no such endpoint (docs/API.md)");
        return;
    }
    bool is_push = op == ZIM_API_PUSH_USERS || op == ZIM_API_PUSH_ROOMS ||
                   op == ZIM_API_PUSH_CONNS || op == ZIM_API_PUSH_ALL;
    bool is_order = op == ZIM_API_ROOM_JOIN || op == ZIM_API_ROOM_LEAVE || op == ZIM_API_DISCONNECT;
    if (((is_push || is_order) && !post) || (!is_push && !is_order && !get)) {
        s_refuse (self, c, 405, "method_not_allowed", is_push || is_order ? "use POST" : "use GET");
        return;
    }
    //  The raw form: a msgpack body that is the push's data, the targets
    //  in the query (for push/all: a body that is no map with "data").
    char text[8192];
    zim_str_t raw;
    bool msgpack = zim_apibody_is_msgpack (type);
    bool raw_form = is_push && msgpack &&
                    (list_key ? s_param (query, list_key, text, sizeof text)
                              : zim_apibody_raw (body, blen, "data", &raw) != 0);
    json_t *doc = NULL, *targets = NULL;
    if ((is_order || is_push) && !raw_form) {
        //  The whole request, as JSON or msgpack (zim_apibody.h).
        const char *why = NULL;
        doc = zim_apibody_load (type, body, blen, &why);
        if (!doc) {
            s_refuse (self, c, 400, msgpack ? "bad_body" : "bad_json", why);
            return;
        }
    }
    if (is_order) {
        //  {"users": [...]} for a room, {"user": U, "device"?: D} to cut.
        if (op == ZIM_API_DISCONNECT) {
            json_t *user = json_object_get (doc, "user"), *device = json_object_get (doc, "device");
            targets = json_array ();
            json_t *t = json_object ();
            if (user)
                json_object_set (t, "user", user);
            if (device)
                json_object_set (t, "device", device);
            json_array_append_new (targets, t);
        } else {
            targets = json_incref (json_object_get (doc, "users"));
            if (!s_room_ok (room)) {
                s_refuse (self, c, 400, "bad_room", "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
                json_decref (targets);
                json_decref (doc);
                return;
            }
        }
        json_decref (doc);
        const char *bad = json_is_array (targets) ? NULL : "users must be an array";
        uint64_t req = bad ? 0 : s_build (self, op, app, targets, 0, room, &bad);
        json_decref (targets);
        if (!req) {
            s_refuse (self, c, 400, "bad_field", bad);
            return;
        }
        c->req = req;
        s_forward (self, c);
        return;
    }
    //  The targets and the body.
    zim_wr_reset (&self->body);
    uint64_t top = 10;
    if (raw_form) {
        zim_rd_t rd;
        zim_rd_init (&rd, body, blen);
        if (blen == 0 || zim_rd_skip (&rd, NULL) || zim_rd_left (&rd) != 0) {
            s_refuse (self, c, 400, "bad_body", "the body must be exactly one msgpack value");
            return;
        }
        zim_wr_raw (&self->body, body, blen);
        if (list_key) {
            if (!*text) {
                s_refuse (self, c, 400, "bad_field",
                          "with a msgpack body, name the targets in the query (users=a,b)");
                return;
            }
            targets = json_array ();
            for (char *tok = strtok (text, ","); tok; tok = strtok (NULL, ","))
                json_array_append_new (targets, json_string (tok));
        }
    } else if (is_push) {
        json_t *data = json_object_get (doc, "data");
        if (!data) {
            s_refuse (self, c, 400, "bad_field", "data is required (any JSON value)");
            json_decref (doc);
            return;
        }
        if (msgpack && zim_apibody_raw (body, blen, "data", &raw) == 0)
            zim_wr_raw (&self->body, raw.ptr, raw.len); //  byte for byte
        else if (zim_apibody_to_mp (&self->body, data)) {
            s_refuse (self, c, 400, "bad_field", "data is nested too deep");
            json_decref (doc);
            return;
        }
        if (list_key) {
            targets = json_incref (json_object_get (doc, list_key));
            if (!json_is_array (targets)) {
                char why[80];
                snprintf (why, sizeof why, "%s must be an array", list_key);
                s_refuse (self, c, 400, "bad_field", why);
                json_decref (targets);
                json_decref (doc);
                return;
            }
        }
    } else if (op == ZIM_API_ONLINE) {
        if (!s_param (query, "users", text, sizeof text) || !*text) {
            s_refuse (self, c, 400, "bad_field", "users=a,b is required");
            return;
        }
        targets = json_array ();
        for (char *tok = strtok (text, ","); tok; tok = strtok (NULL, ","))
            json_array_append_new (targets, json_string (tok));
    } else if (op == ZIM_API_TOP) {
        if (s_param (query, "top", text, sizeof text) &&
            (zim_parse_u64 (text, &top) || top == 0 || top > 1000)) {
            s_refuse (self, c, 400, "bad_field", "top must be 1 to 1000");
            return;
        }
    } else if (op == ZIM_API_ROOM) {
        targets = json_pack ("[s]", room);
        if (!s_room_ok (room)) {
            s_refuse (self, c, 400, "bad_room", "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
            json_decref (targets);
            return;
        }
    }
    const char *bad = NULL;
    json_t *persist = json_object_get (doc, "persist");
    if (persist && !json_is_boolean (persist))
        bad = "persist must be true or false";
    else if (json_is_true (persist) && op != ZIM_API_PUSH_USERS)
        bad = "persist is for /v1/push/users";
    else if (json_is_true (persist))
        bad = zim_apipersist_check (targets, json_object_get (doc, "id"));
    uint64_t req = bad ? 0 : s_build (self, op, app, targets, top, NULL, &bad);
    if (req && json_is_true (persist)) {
        //  Stored in each user's inbox through a broker (zim_apipersist.h).
        const char *id = json_string_value (json_object_get (doc, "id"));
        zim_str_t mpbody = {(const char *)self->body.data, self->body.size};
        if (zim_apipersist_start (self->persist, req, app, id, targets, mpbody, &bad)) {
            json_decref (targets);
            json_decref (doc);
            s_refuse (self, c, 503, "unavailable", bad);
            return;
        }
        json_decref (targets);
        json_decref (doc);
        c->req = req;
        c->persist = true;
        c->since_ms = zclock_mono ();
        char key[24];
        snprintf (key, sizeof key, "%" PRIx64, req);
        zhashx_insert (self->inflight, key, c);
        return;
    }
    json_decref (targets);
    json_decref (doc);
    if (!req) {
        s_refuse (self, c, 400, "bad_field", bad);
        return;
    }
    c->req = req;
    s_forward (self, c);
}

//  A groups request (zim_apigroups.h), answered at once: the store's admin
//  verb blocks this loop up to its timeout, as zimctl groups does.
static void s_groups (zim_apisrv_t *self, s_conn_t *c, const char *method, const char *path,
                      const char *app, const char *type, const char *body, size_t blen)
{
    json_t *doc = NULL;
    char *json = NULL;
    if (streq (method, "POST")) {
        const char *why = NULL;
        doc = zim_apibody_load (type, body, blen, &why);
        if (!doc) {
            s_refuse (self, c, 400, why && strstr (why, "msgpack") ? "bad_body" : "bad_json",
                      why ? why : "the body must be a JSON object");
            return;
        }
    }
    int status = zim_apigroups_handle (self->store_fn, self->store_arg, method, path, app, doc, &json);
    json_decref (doc);
    if (status != 200) {
        self->refused++;
        zim_ratelog_warn (&self->ratelog, self->program, "API: request from %s refused (%d): %s",
                          *c->peer ? c->peer : "?", status, json);
    }
    s_answer (self, c, status, json);
    free (json);
}

//  Looks at what c has received: answers or forwards a complete request.
static void s_parse (zim_apisrv_t *self, s_conn_t *c)
{
    if (c->req || c->len == 0)
        return;
    //  The end of the headers.
    char *end = NULL;
    for (size_t i = 0; i + 3 < c->len && i < S_HEAD_MAX; i++)
        if (memcmp (c->buf + i, "\r\n\r\n", 4) == 0) {
            end = c->buf + i;
            break;
        }
    if (!end) {
        if (c->len >= S_HEAD_MAX) {
            c->close = true;
            c->len = 0;
            s_refuse (self, c, 413, "too_large", "request headers over 16 KiB");
        }
        return;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    char *head = zim_malloc (hlen + 1);
    memcpy (head, c->buf, hlen);
    head[hlen] = 0;
    char method[16], target[4096], version[16];
    if (sscanf (head, "%15[A-Z] %4095[^ \r\n] %15[^ \r\n]", method, target, version) != 3 ||
        target[0] != '/' || strncmp (version, "HTTP/1.", 7) != 0) {
        free (head);
        c->close = true;
        c->len = 0;
        s_refuse (self, c, 400, "bad_request", "not an HTTP/1.x request");
        return;
    }
    char value[512];
    uint64_t clen = 0;
    if (s_header (head, "Content-Length", value, sizeof value) && zim_parse_u64 (value, &clen)) {
        free (head);
        c->close = true;
        c->len = 0;
        s_refuse (self, c, 400, "bad_request", "Content-Length is not a number");
        return;
    }
    if (clen > S_BODY_MAX) {
        free (head);
        c->close = true;
        c->len = 0;
        s_refuse (self, c, 413, "too_large", "a request body may hold at most 1 MiB");
        return;
    }
    if (c->len < hlen + clen) {
        free (head);
        return; //  the body is still coming
    }
    c->close = (s_header (head, "Connection", value, sizeof value) &&
                strcasecmp (value, "close") == 0) ||
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
    if (!s_header (head, "Authorization", value, sizeof value) ||
        strncmp (value, "Bearer ", 7) != 0)
        s_refuse (self, c, 401, "unauthorized", "Authorization: Bearer KEY is required");
    else if (!(app = s_app_of (self, value + 7, strlen (value + 7))))
        s_refuse (self, c, 403, "forbidden", "no app has this API key");
    else if (zim_apigroups_path (target))
        s_groups (self, c, method, target, app, has_type ? type : NULL, body, clen);
    else
        s_route (self, c, method, target, query ? query : "", app, has_type ? type : NULL, body,
                 clen);
    free (body);
    free (head);
}

void zim_apisrv_handle (zim_apisrv_t *self)
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
        if (c) { //  the peer closed
            if (c->req) {
                char req[24];
                snprintf (req, sizeof req, "%" PRIx64, c->req);
                zhashx_delete (self->inflight, req);
            }
            zhashx_delete (self->conns, key);
        } else if (zhashx_size (self->conns) < S_MAX_CONNS) {
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
        return;
    }
    if (c && !c->close) {
        size_t n = zframe_size (data);
        if (c->len + n > S_HEAD_MAX + S_BODY_MAX + 1) {
            c->close = true;
            c->len = 0;
            if (!c->req)
                s_refuse (self, c, 413, "too_large", "a request body may hold at most 1 MiB");
        } else {
            if (c->len + n > c->alloc) {
                c->alloc = (c->len + n) * 2;
                c->buf = zim_realloc (c->buf, c->alloc);
            }
            memcpy (c->buf + c->len, zframe_data (data), n);
            c->len += n;
            c->since_ms = c->req ? c->since_ms : zclock_mono ();
            s_parse (self, c);
        }
    }
    zmsg_destroy (&msg);
}

//  Decodes an API_R; returns 0 with *r set, or -1 (logged).
static int s_router_answer (zim_apisrv_t *self, zframe_t *frame, zim_api_r_t *r)
{
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    if (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_API_R &&
        zim_api_r_unpack (&rd, fields, r) == 0)
        return 0;
    zim_ratelog_warn (&self->ratelog, self->program, "API: dropped an undecodable answer");
    return -1;
}

//  Answers the HTTP request req (if its connection is still there).
static void s_deliver_json (zim_apisrv_t *self, uint64_t req, int status, const char *json)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRIx64, req);
    s_conn_t *c = (s_conn_t *)zhashx_lookup (self->inflight, key);
    if (!c)
        return;
    zhashx_delete (self->inflight, key);
    c->persist = false;
    if (status != 200) {
        self->refused++;
        zim_ratelog_warn (&self->ratelog, self->program, "API: request from %s failed (%d): %s",
                          *c->peer ? c->peer : "?", status, json);
    }
    s_answer (self, c, status, json);
}

void zim_apisrv_handle_broker (zim_apisrv_t *self)
{
    int status = 0;
    char *json = NULL;
    uint64_t req = zim_apipersist_handle (self->persist, &status, &json);
    if (req)
        s_deliver_json (self, req, status, json);
    free (json);
}

//  Answers the HTTP request a router's answer is for.
static void s_deliver_answer (zim_apisrv_t *self, const zim_api_r_t *r)
{
    char req[24];
    snprintf (req, sizeof req, "%" PRIx64, r->req);
    s_conn_t *c = (s_conn_t *)zhashx_lookup (self->inflight, req);
    if (c) {
        zhashx_delete (self->inflight, req);
        char *json = zim_str_dup (r->json);
        s_answer (self, c, r->status ? (int)r->status : 200, json);
        free (json);
    }
}

void zim_apisrv_handle_router (zim_apisrv_t *self)
{
    zframe_t *frame = zframe_recv (self->routers);
    zim_api_r_t r;
    if (frame && s_router_answer (self, frame, &r) == 0)
        s_deliver_answer (self, &r);
    zframe_destroy (&frame);
}

//  The admin verb's persisted push req: sent, then waited for (other
//  answers meanwhile go to their HTTP requests). Returns the JSON answer
//  (caller owns) or NULL with *code and text set.
static char *s_admin_persist (zim_apisrv_t *self, uint64_t req, const char *app, const char *id,
                              json_t *targets, int *code, char *text, size_t size)
{
    const char *why = NULL;
    zim_str_t body = {(const char *)self->body.data, self->body.size};
    *code = ZIM_ERR_UNAVAILABLE;
    if (zim_apipersist_start (self->persist, req, app, id, targets, body, &why)) {
        snprintf (text, size, "%s", why);
        return NULL;
    }
    zsock_t *sock = zim_apisrv_brokers (self);
    while (true) {
        int status = 0;
        char *json = NULL;
        uint64_t done = 0;
        if (zsock_events (sock) & ZMQ_POLLIN)
            done = zim_apipersist_handle (self->persist, &status, &json);
        else {
            zmq_pollitem_t item = {zsock_resolve (sock), 0, ZMQ_POLLIN, 0};
            zmq_poll (&item, 1, 100);
            done = zim_apipersist_late (self->persist, zclock_mono (), &status, &json);
        }
        if (done == req) {
            if (status == 200) {
                *code = 0;
                return json;
            }
            *code = status == 409 ? ZIM_ERR_CID_CONFLICT : ZIM_ERR_UNAVAILABLE;
            snprintf (text, size, "%s", json);
            free (json);
            return NULL;
        }
        if (done)
            s_deliver_json (self, done, status, json);
        free (json);
    }
}

char *zim_apisrv_admin (void *arg, const zim_admin_req_t *req, int *code, char *text, size_t size)
{
    zim_apisrv_t *self = (zim_apisrv_t *)arg;
    *code = ZIM_ERR_BAD_FIELD;
    int op = 0;
    bool push = zim_str_eq (req->verb, "push");
    //  push APP users TARGETS DATA persist [ID]: stored (zim_apipersist.h).
    bool persist = push && req->nargs >= 5 && req->nargs <= 6 &&
                   zim_str_eq (req->args[4], "persist") && zim_str_eq (req->args[1], "users");
    if (push && (req->nargs == 4 || persist)) {
        op = zim_str_eq (req->args[1], "users")   ? ZIM_API_PUSH_USERS
             : zim_str_eq (req->args[1], "rooms") ? ZIM_API_PUSH_ROOMS
             : zim_str_eq (req->args[1], "all")   ? ZIM_API_PUSH_ALL
                                                  : 0;
        if (!op) {
            snprintf (text, size, "push users|rooms|all");
            return NULL;
        }
    } else if (zim_str_eq (req->verb, "online") && req->nargs == 2)
        op = ZIM_API_ONLINE;
    else if (zim_str_eq (req->verb, "rooms") && req->nargs == 3)
        op = req->args[1].len ? ZIM_API_ROOM : ZIM_API_TOP;
    else if (push || zim_str_eq (req->verb, "online") || zim_str_eq (req->verb, "rooms")) {
        snprintf (text, size, "wrong arguments for %.*s", (int)req->verb.len, req->verb.ptr);
        return NULL;
    } else {
        *code = ZIM_ERR_UNKNOWN_OP;
        snprintf (text, size, "unknown verb");
        return NULL;
    }
    char app[ZIM_ID_MAX + 1], list[4096], value[4096];
    if (!zim_uid_valid (req->args[0]) || req->args[0].len >= sizeof app) {
        snprintf (text, size, "not an app name");
        return NULL;
    }
    zim_str_copy (req->args[0], app, sizeof app);
    json_t *targets = json_array ();
    uint64_t top = 10;
    zim_wr_reset (&self->body);
    if (op == ZIM_API_TOP) {
        zim_str_copy (req->args[2], value, sizeof value);
        if (zim_parse_u64 (value, &top) || top == 0 || top > 1000) {
            json_decref (targets);
            snprintf (text, size, "top must be 1 to 1000");
            return NULL;
        }
    } else if (op != ZIM_API_PUSH_ALL) {
        zim_str_copy (req->args[op == ZIM_API_ROOM ? 1 : op == ZIM_API_ONLINE ? 1 : 2], list,
                      sizeof list);
        for (char *tok = strtok (list, ","); tok; tok = strtok (NULL, ","))
            json_array_append_new (targets, json_string (tok));
    }
    if (push) {
        json_error_t err;
        json_t *data = json_loadb (req->args[3].ptr, req->args[3].len, JSON_DECODE_ANY, &err);
        if (!data || zim_apibody_to_mp (&self->body, data)) {
            json_decref (data);
            json_decref (targets);
            snprintf (text, size, "data must be JSON (at most 32 levels deep)");
            return NULL;
        }
        json_decref (data);
    }
    const char *bad = NULL;
    json_t *push_id = persist && req->nargs == 6 ? json_stringn (req->args[5].ptr, req->args[5].len)
                                                 : NULL;
    if (persist)
        bad = zim_apipersist_check (targets, push_id);
    uint64_t id = bad ? 0 : s_build (self, op, app, targets, top, NULL, &bad);
    if (id && persist) {
        char *answer = s_admin_persist (self, id, app, json_string_value (push_id), targets, code,
                                        text, size);
        json_decref (push_id);
        json_decref (targets);
        return answer;
    }
    json_decref (push_id);
    json_decref (targets);
    if (!id) {
        snprintf (text, size, "%s", bad);
        return NULL;
    }
    *code = ZIM_ERR_UNAVAILABLE;
    if (zmq_send (zsock_resolve (self->routers), self->wr.data, self->wr.size, ZMQ_DONTWAIT) !=
        (int)self->wr.size) {
        snprintf (text, size, "no router reachable");
        return NULL;
    }
    //  Wait for our answer; answers to HTTP requests meanwhile go to them.
    int64_t deadline = zclock_mono () + S_ROUTER_MS;
    while (zclock_mono () < deadline) {
        zsock_set_rcvtimeo (self->routers, (int)(deadline - zclock_mono ()));
        zframe_t *frame = zframe_recv (self->routers);
        zim_api_r_t r;
        if (!frame)
            break;
        if (s_router_answer (self, frame, &r) == 0) {
            if (r.req == id) {
                char *json = zim_str_dup (r.json);
                zframe_destroy (&frame);
                zsock_set_rcvtimeo (self->routers, -1);
                *code = 0;
                return json;
            }
            s_deliver_answer (self, &r);
        }
        zframe_destroy (&frame);
    }
    zsock_set_rcvtimeo (self->routers, -1);
    snprintf (text, size, "no router answered within 5 s");
    return NULL;
}

void zim_apisrv_sweep (zim_apisrv_t *self)
{
    int64_t now = zclock_mono ();
    int status;
    char *json = NULL;
    uint64_t done;
    while ((done = zim_apipersist_late (self->persist, now, &status, &json))) {
        s_deliver_json (self, done, status, json);
        free (json);
    }
    zlist_t *late = zlist_new ();
    for (s_conn_t *c = zhashx_first (self->conns); c; c = zhashx_next (self->conns))
        if ((c->req && !c->persist && now - c->since_ms > S_ROUTER_MS) ||
            (!c->req && now - c->since_ms > (c->close ? 5000 : S_IDLE_MS)))
            zlist_append (late, c);
    for (s_conn_t *c = zlist_first (late); c; c = zlist_next (late))
        if (c->req) {
            char req[24];
            snprintf (req, sizeof req, "%" PRIx64, c->req);
            zhashx_delete (self->inflight, req);
            c->req = 0;
            s_refuse (self, c, 503, "unavailable", "no router answered within 5 s");
        } else
            s_close (self, c);
    zlist_destroy (&late);
}

//  -------------------------------------------------------------------------
//  Selftest: a real TCP client, a ROUTER playing the router, one thread.

//  Serves until the client socket fd has an answer; returns it.
static char *s_test_call (zim_apisrv_t *self, zsock_t *router, int fd, const char *request)
{
    assert (write (fd, request, strlen (request)) == (ssize_t)strlen (request));
    char *answer = zim_calloc (1, 65536);
    size_t len = 0;
    int64_t deadline = zclock_mono () + 5000;
    zpoller_t *poller = zpoller_new (self->sock, self->routers, router, NULL);
    while (zclock_mono () < deadline) {
        void *which = zpoller_wait (poller, 20);
        if (which == self->sock)
            zim_apisrv_handle (self);
        else if (which == self->routers)
            zim_apisrv_handle_router (self);
        else if (which == router) {
            //  The router's side: answer every API_Q with its op.
            zmsg_t *msg = zmsg_recv (router);
            zframe_t *body = zmsg_last (msg);
            zim_rd_t rd;
            zim_rd_init (&rd, zframe_data (body), zframe_size (body));
            int kind;
            uint32_t fields;
            zim_api_q_t q;
            assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_API_Q);
            assert (zim_api_q_unpack (&rd, fields, &q) == 0);
            char json[64];
            snprintf (json, sizeof json, "{\"op\":%" PRIu64 ",\"n\":%u}", q.op, q.ntargets);
            zim_wr_t wr;
            zim_wr_init (&wr);
            zim_api_r_pack (&wr, &(zim_api_r_t){q.req, 0, zim_str (json)});
            zframe_t *answer_frame = zframe_new (wr.data, wr.size);
            zmsg_remove (msg, body);
            zframe_destroy (&body);
            zmsg_append (msg, &answer_frame);
            zmsg_send (&msg, router);
            zim_wr_free (&wr);
        }
        ssize_t n = recv (fd, answer + len, 65535 - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        const char *body = strstr (answer, "\r\n\r\n");
        const char *clen = strstr (answer, "Content-Length: ");
        if (body && clen && strlen (body + 4) >= (size_t)atoi (clen + 16))
            break;
    }
    zpoller_destroy (&poller);
    return answer;
}

void zim_apisrv_test (bool verbose)
{
    (void)verbose;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int rport = zsock_bind (router, "tcp://127.0.0.1:*");
    char rep[64];
    snprintf (rep, sizeof rep, "tcp://127.0.0.1:%d", rport);
    zim_apisrv_t *self = zim_apisrv_new ("test", "127.0.0.1:0", rep, NULL);
    assert (self && zim_apisrv_port (self) > 0);
    assert (zim_apisrv_add_key (self, "demo", "short") == -1);
    assert (zim_apisrv_add_key (self, "demo", "demo-key-demo-key-demo") == 0);
    char path[] = "/tmp/zim-apikey-XXXXXX";
    int tmp = mkstemp (path);
    close (tmp);
    unlink (path);
    assert (zim_apisrv_key_file (self, "other", path) == 0);
    struct stat st;
    assert (stat (path, &st) == 0 && (st.st_mode & 0777) == 0600);
    unlink (path);

    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)self->port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert (connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    //  Kept alive: several requests on one connection.
    char *a = s_test_call (self, router, fd,
                           "POST /v1/push/users HTTP/1.1\r\nAuthorization: Bearer "
                           "demo-key-demo-key-demo\r\nContent-Length: 40\r\n\r\n"
                           "{\"users\":[\"alice\",\"bob\"],\"data\":{\"x\":1}}");
    assert (strstr (a, "HTTP/1.1 200") && strstr (a, "{\"op\":1,\"n\":2}"));
    free (a);
    a = s_test_call (self, router, fd,
                     "GET /v1/online?users=alice HTTP/1.1\r\nAuthorization: Bearer nope-nope-nope-nope\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 403") && strstr (a, "\"forbidden\""));
    free (a);
    a = s_test_call (self, router, fd, "GET /v1/stats HTTP/1.1\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 401"));
    free (a);
    a = s_test_call (self, router, fd,
                     "POST /v1/push/users HTTP/1.1\r\nAuthorization: Bearer "
                     "demo-key-demo-key-demo\r\nContent-Length: 37\r\n\r\n"
                     "{\"users\":[\"alice\",\"no one\"],\"data\":1}");
    assert (strstr (a, "HTTP/1.1 400") && strstr (a, "\"bad_field\""));
    free (a);
    a = s_test_call (self, router, fd,
                     "GET /v1/push/all HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 405"));
    free (a);
    a = s_test_call (self, router, fd,
                     "GET /v1/nothing HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 404"));
    free (a);
    a = s_test_call (self, router, fd,
                     "POST /v1/push/all HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n"
                     "Content-Length: 2000000\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 413"));
    free (a);
    close (fd);
    assert (zim_apisrv_requests (self) == 1 && zim_apisrv_refused (self) == 6);
    zim_apisrv_destroy (&self);
    zsock_destroy (&router);
}
