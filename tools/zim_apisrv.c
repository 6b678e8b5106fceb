/*  zim_apisrv.c: the backend push API (zim_apisrv.h): each request the
    HTTP side (zim_apihttp) hands over is routed to its handler: pushes,
    online, rooms and stats become one API_Q to a router, groups the
    store's admin verb (zim_apigroups), persisted pushes SENDs to a broker
    (zim_apipersist). The API_Q's request id is the HTTP request's ticket.
*/
#include "tools/zim_apisrv.h"
#include "tools/zim_apibody.h"
#include "tools/zim_apihttp.h"
#include "tools/zim_apigroups.h"
#include "tools/zim_apipersist.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_ROUTER_MS 5000          //  a router must answer the admin verbs by then
#define S_MAX_TARGETS 10000       //  users, rooms or connections per request
#define S_ADMIN_REQ (1ULL << 63)  //  request ids of the admin verbs (tickets stay below)

struct _zim_apisrv_t {
    char *program;           //  for log lines
    zim_apihttp_t *http;     //  the HTTP side
    zsock_t *routers;        //  DEALER to every router
    uint64_t next_req;       //  request ids of the admin verbs
    zim_ratelog_t ratelog;   //  undecodable answers
    zim_wr_t wr;             //  API_Q
    zim_wr_t body;           //  the push body as msgpack
    zim_adminsrv_verb_fn *store_fn; //  the store's admin verbs (groups), or NULL
    void *store_arg;         //  its argument
    zim_apipersist_t *persist; //  persisted pushes, through a broker
};

static void s_on_request (void *arg, const zim_apihttp_req_t *r);

zim_apisrv_t *zim_apisrv_new (const char *program, const char *address, const char *routers,
                              const zim_curve_t *curve)
{
    zim_apisrv_t *self = (zim_apisrv_t *)zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    zim_wr_init (&self->wr);
    zim_wr_init (&self->body);
    self->http = zim_apihttp_new (program, address, s_on_request, self);
    if (!self->http) {
        zim_apisrv_destroy (&self);
        return NULL;
    }
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
    zim_apihttp_destroy (&self->http);
    zsock_destroy (&self->routers);
    zim_apipersist_destroy (&self->persist);
    zim_wr_free (&self->wr);
    zim_wr_free (&self->body);
    free (self->program);
    free (self);
    *self_p = NULL;
}

int zim_apisrv_add_key (zim_apisrv_t *self, const char *app, const char *key)
{
    return zim_apihttp_add_key (self->http, app, key);
}

int zim_apisrv_key_file (zim_apisrv_t *self, const char *app, const char *path)
{
    return zim_apihttp_key_file (self->http, app, path);
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
    return zim_apihttp_sock (self->http);
}

zsock_t *zim_apisrv_routers (zim_apisrv_t *self)
{
    return self->routers;
}

int zim_apisrv_port (zim_apisrv_t *self)
{
    return zim_apihttp_port (self->http);
}

const char *zim_apisrv_url (zim_apisrv_t *self)
{
    return zim_apihttp_url (self->http);
}

uint64_t zim_apisrv_requests (zim_apisrv_t *self)
{
    return zim_apihttp_requests (self->http);
}

uint64_t zim_apisrv_refused (zim_apisrv_t *self)
{
    return zim_apihttp_refused (self->http);
}

//  Messages read per call, while there are more: a pipelining client or
//  a burst of router answers costs one poll of the loop per batch, not
//  one per message.
#define S_DRAIN 64

void zim_apisrv_handle (zim_apisrv_t *self)
{
    zsock_t *sock = zim_apihttp_sock (self->http);
    int n = 0;
    do
        zim_apihttp_handle (self->http);
    while (++n < S_DRAIN && (zsock_events (sock) & ZMQ_POLLIN));
}

//  -------------------------------------------------------------------------
//  Requests

//  The value of query parameter name in query (after '?'), into buf; an
//  empty value if it does not fit (never a cut list of targets).
static bool s_param (const char *query, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen (name);
    for (const char *p = query; p && *p; p = strchr (p, '&') ? strchr (p, '&') + 1 : NULL)
        if (strncmp (p, name, nlen) == 0 && p[nlen] == '=') {
            size_t vlen = strcspn (p + nlen + 1, "&");
            snprintf (buf, size, "%.*s", vlen < size ? (int)vlen : 0, p + nlen + 1);
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

//  Sends the API_Q in self->wr for request ticket.
static void s_forward (zim_apisrv_t *self, uint64_t ticket)
{
    if (zmq_send (zsock_resolve (self->routers), self->wr.data, self->wr.size, ZMQ_DONTWAIT) !=
        (int)self->wr.size)
        zim_apihttp_refuse (self->http, ticket, 503, "unavailable", "no router reachable");
}

//  Checks every target (nothing half-applied) and packs the API_Q of op
//  for app into self->wr, with self->body as the body and req as its
//  request id. Returns req, or 0 with *why set.
static uint64_t s_build (zim_apisrv_t *self, uint64_t req, int op, const char *app, json_t *targets,
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
static void s_route (zim_apisrv_t *self, const zim_apihttp_req_t *r)
{
    const char *method = r->method, *path = r->path, *query = r->query, *app = r->app,
               *type = r->type, *body = r->body;
    size_t blen = r->blen;
    uint64_t ticket = r->ticket;
    bool post = streq (method, "POST"), get = streq (method, "GET");
    int op = 0;
    const char *list_key = NULL; //  the JSON array of targets
    char room[200] = "";
    if (strlen (path) > 10 + 140) {
        zim_apihttp_refuse (self->http, ticket, 404, "not_found", "no such endpoint (docs/API.md)");
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
        zim_apihttp_refuse (self->http, ticket, 404, "not_found", "no such endpoint (docs/API.md)");
        return;
    }
    bool is_push = op == ZIM_API_PUSH_USERS || op == ZIM_API_PUSH_ROOMS ||
                   op == ZIM_API_PUSH_CONNS || op == ZIM_API_PUSH_ALL;
    bool is_order = op == ZIM_API_ROOM_JOIN || op == ZIM_API_ROOM_LEAVE || op == ZIM_API_DISCONNECT;
    if (((is_push || is_order) && !post) || (!is_push && !is_order && !get)) {
        zim_apihttp_refuse (self->http, ticket, 405, "method_not_allowed", is_push || is_order ? "use POST" : "use GET");
        return;
    }
    //  The raw form: a msgpack body that is the push's data, the targets
    //  in the query (for push/all: a body that is no map with "data").
    char text[16384]; //  a query value: the target fits the 16 KiB of the head
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
            zim_apihttp_refuse (self->http, ticket, 400, msgpack ? "bad_body" : "bad_json", why);
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
                zim_apihttp_refuse (self->http, ticket, 400, "bad_room", "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
                json_decref (targets);
                json_decref (doc);
                return;
            }
        }
        json_decref (doc);
        const char *bad = json_is_array (targets) ? NULL : "users must be an array";
        uint64_t req = bad ? 0 : s_build (self, ticket, op, app, targets, 0, room, &bad);
        json_decref (targets);
        if (!req) {
            zim_apihttp_refuse (self->http, ticket, 400, "bad_field", bad);
            return;
        }
        s_forward (self, ticket);
        return;
    }
    //  The targets and the body.
    zim_wr_reset (&self->body);
    uint64_t top = 10;
    if (raw_form) {
        zim_rd_t rd;
        zim_rd_init (&rd, body, blen);
        if (blen == 0 || zim_rd_skip (&rd, NULL) || zim_rd_left (&rd) != 0) {
            zim_apihttp_refuse (self->http, ticket, 400, "bad_body", "the body must be exactly one msgpack value");
            return;
        }
        zim_wr_raw (&self->body, body, blen);
        if (list_key) {
            if (!*text) {
                zim_apihttp_refuse (self->http, ticket, 400, "bad_field",
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
            zim_apihttp_refuse (self->http, ticket, 400, "bad_field", "data is required (any JSON value)");
            json_decref (doc);
            return;
        }
        if (msgpack && zim_apibody_raw (body, blen, "data", &raw) == 0)
            zim_wr_raw (&self->body, raw.ptr, raw.len); //  byte for byte
        else if (zim_apibody_to_mp (&self->body, data)) {
            zim_apihttp_refuse (self->http, ticket, 400, "bad_field", "data is nested too deep");
            json_decref (doc);
            return;
        }
        if (list_key) {
            targets = json_incref (json_object_get (doc, list_key));
            if (!json_is_array (targets)) {
                char why[80];
                snprintf (why, sizeof why, "%s must be an array", list_key);
                zim_apihttp_refuse (self->http, ticket, 400, "bad_field", why);
                json_decref (targets);
                json_decref (doc);
                return;
            }
        }
    } else if (op == ZIM_API_ONLINE) {
        if (!s_param (query, "users", text, sizeof text) || !*text) {
            zim_apihttp_refuse (self->http, ticket, 400, "bad_field", "users=a,b is required");
            return;
        }
        targets = json_array ();
        for (char *tok = strtok (text, ","); tok; tok = strtok (NULL, ","))
            json_array_append_new (targets, json_string (tok));
    } else if (op == ZIM_API_TOP) {
        if (s_param (query, "top", text, sizeof text) &&
            (zim_parse_u64 (text, &top) || top == 0 || top > 1000)) {
            zim_apihttp_refuse (self->http, ticket, 400, "bad_field", "top must be 1 to 1000");
            return;
        }
    } else if (op == ZIM_API_ROOM) {
        targets = json_pack ("[s]", room);
        if (!s_room_ok (room)) {
            zim_apihttp_refuse (self->http, ticket, 400, "bad_room", "room must be 1..128 bytes of A-Z a-z 0-9 _ . : @ / -");
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
    uint64_t req = bad ? 0 : s_build (self, ticket, op, app, targets, top, NULL, &bad);
    if (req && json_is_true (persist)) {
        //  Stored in each user's inbox through a broker (zim_apipersist.h).
        const char *id = json_string_value (json_object_get (doc, "id"));
        zim_str_t mpbody = {(const char *)self->body.data, self->body.size};
        if (zim_apipersist_start (self->persist, req, app, id, targets, mpbody, &bad)) {
            json_decref (targets);
            json_decref (doc);
            zim_apihttp_refuse (self->http, ticket, 503, "unavailable", bad);
            return;
        }
        json_decref (targets);
        json_decref (doc);
        zim_apihttp_wait (self->http, ticket, ZIM_APIPERSIST_TIMEOUT_MS + 2000);
        return;
    }
    json_decref (targets);
    json_decref (doc);
    if (!req) {
        zim_apihttp_refuse (self->http, ticket, 400, "bad_field", bad);
        return;
    }
    s_forward (self, ticket);
}

//  A groups request (zim_apigroups.h), answered at once: the store's admin
//  verb blocks this loop up to its timeout, as zimctl groups does.
static void s_groups (zim_apisrv_t *self, const zim_apihttp_req_t *r)
{
    json_t *doc = NULL;
    char *json = NULL;
    if (streq (r->method, "POST")) {
        const char *why = NULL;
        doc = zim_apibody_load (r->type, r->body, r->blen, &why);
        if (!doc) {
            zim_apihttp_refuse (self->http, r->ticket, 400,
                                zim_apibody_is_msgpack (r->type) ? "bad_body" : "bad_json", why);
            return;
        }
    }
    int status = zim_apigroups_handle (self->store_fn, self->store_arg, r->method, r->path, r->app,
                                       doc, &json);
    json_decref (doc);
    zim_apihttp_answer (self->http, r->ticket, status, json);
    free (json);
}

//  Every request the HTTP side hands over.
static void s_on_request (void *arg, const zim_apihttp_req_t *r)
{
    zim_apisrv_t *self = (zim_apisrv_t *)arg;
    if (zim_apigroups_path (r->path))
        s_groups (self, r);
    else
        s_route (self, r);
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
    zim_apihttp_answer (self->http, req, status, json);
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
    char *json = zim_str_dup (r->json);
    zim_apihttp_answer (self->http, r->req, r->status ? (int)r->status : 200, json);
    free (json);
}

void zim_apisrv_handle_router (zim_apisrv_t *self)
{
    int n = 0;
    do {
        zframe_t *frame = zframe_recv (self->routers);
        zim_api_r_t r;
        if (frame && s_router_answer (self, frame, &r) == 0)
            s_deliver_answer (self, &r);
        zframe_destroy (&frame);
    } while (++n < S_DRAIN && (zsock_events (self->routers) & ZMQ_POLLIN));
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
    uint64_t id = bad ? 0 : s_build (self, S_ADMIN_REQ | ++self->next_req, op, app, targets, top, NULL, &bad);
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
    int status;
    char *json = NULL;
    uint64_t done;
    while ((done = zim_apipersist_late (self->persist, zclock_mono (), &status, &json))) {
        s_deliver_json (self, done, status, json);
        free (json);
    }
    zim_apihttp_sweep (self->http);
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
    zpoller_t *poller = zpoller_new (zim_apisrv_sock (self), self->routers, router, NULL);
    while (zclock_mono () < deadline) {
        void *which = zpoller_wait (poller, 20);
        if (which == zim_apisrv_sock (self))
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
    //  Keys and the HTTP refusals are zim_apihttp's (its selftest).
    assert (zim_apisrv_add_key (self, "demo", "demo-key-demo-key-demo") == 0);

    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)zim_apisrv_port (self))};
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
    //  A groups request without a store: 503.
    a = s_test_call (self, router, fd,
                     "GET /v1/groups/g1 HTTP/1.1\r\nAuthorization: Bearer demo-key-demo-key-demo\r\n\r\n");
    assert (strstr (a, "HTTP/1.1 503"));
    free (a);
    close (fd);
    assert (zim_apisrv_requests (self) == 1 && zim_apisrv_refused (self) == 4);
    zim_apisrv_destroy (&self);
    zsock_destroy (&router);
}
