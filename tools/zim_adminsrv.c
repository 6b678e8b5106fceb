/*  zim_adminsrv.c: the admin endpoint (zim_adminsrv.h): key check, the
    token and status verbs, and the status document and table, both built
    with jansson so that any name or counter comes out as valid JSON.
*/
#include "config.h"
#include "tools/zim_adminsrv.h"
#include "gateway/zim_token.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"
#include "msg/zim_zap.h"

#include <assert.h>
#include <inttypes.h>
#include <openssl/crypto.h>

struct _zim_adminsrv_t {
    char *program;                //  name in logs and in the status document
    zsock_t *sock;                //  the ROUTER
    zim_datadir_t *datadir;       //  admin key, app secrets (borrowed)
    zim_adminsrv_nodes_fn *nodes; //  what status lists
    void *arg;                    //  its argument
    int64_t started_ms;           //  for uptime (wall clock)
    uint64_t bad_keys;            //  requests refused for a bad key
    zim_ratelog_t ratelog;        //  refusals: a caller can cause them
    zim_adminsrv_verb_fn *verbs;  //  more verbs, or NULL
    void *verbs_arg;              //  their argument
};

zim_adminsrv_t *zim_adminsrv_new (const char *program, const char *endpoint, zim_datadir_t *datadir,
                                  zim_adminsrv_nodes_fn *nodes, void *arg)
{
    zsock_t *sock = zim_curve_socket (zim_datadir_curve (datadir), ZMQ_ROUTER, ZIM_ZAP_ADMIN,
                                      ZIM_SHELL_MAX_MSG_SIZE);
    if (!sock)
        return NULL;
    if (zsock_bind (sock, "%s", endpoint) == -1) {
        zsys_error ("%s: cannot bind admin endpoint %s: %s (another node running? use --admin)",
                    program, endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
    zim_adminsrv_t *self = zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->sock = sock;
    self->datadir = datadir;
    self->nodes = nodes;
    self->arg = arg;
    self->started_ms = zclock_time ();
    return self;
}

void zim_adminsrv_destroy (zim_adminsrv_t **self_p)
{
    zim_adminsrv_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    free (self->program);
    free (self);
    *self_p = NULL;
}

void zim_adminsrv_set_verbs (zim_adminsrv_t *self, zim_adminsrv_verb_fn *fn, void *arg)
{
    self->verbs = fn;
    self->verbs_arg = arg;
}

zsock_t *zim_adminsrv_sock (zim_adminsrv_t *self)
{
    return self->sock;
}

const char *zim_adminsrv_endpoint (zim_adminsrv_t *self)
{
    return zsock_endpoint (self->sock);
}

uint64_t zim_adminsrv_bad_keys (zim_adminsrv_t *self)
{
    return self->bad_keys;
}

json_t *zim_adminsrv_status (zim_adminsrv_t *self)
{
    json_t *nodes = self->nodes ? self->nodes (self->arg) : NULL;
    return json_pack ("{s:s, s:s, s:I, s:o}", "program", self->program, "version", PACKAGE_VERSION,
                      "uptime_s", (json_int_t)((zclock_time () - self->started_ms) / 1000), "nodes",
                      nodes ? nodes : json_array ());
}

//  Appends one value of a counters object as text: numbers and strings
//  as they are, anything else as compact JSON.
static void s_value_text (zchunk_t *buf, json_t *value)
{
    char *text = NULL;
    if (json_is_string (value))
        text = zim_strdup (json_string_value (value));
    else
        text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
        zchunk_extend (buf, text, strlen (text));
    free (text);
}

char *zim_adminsrv_status_text (zim_adminsrv_t *self)
{
    json_t *status = zim_adminsrv_status (self);
    zchunk_t *buf = zchunk_new (NULL, 1024);
    char *line = zsys_sprintf ("%s %s, up %" PRId64 " s\n%-12s %-8s %-6s %s\n", self->program,
                               PACKAGE_VERSION,
                               (int64_t)json_integer_value (json_object_get (status, "uptime_s")),
                               "NODE", "ROLE", "ALIVE", "ADDRESS");
    zchunk_extend (buf, line, strlen (line));
    zstr_free (&line);
    size_t i;
    json_t *node;
    json_array_foreach (json_object_get (status, "nodes"), i, node)
    {
        const char *name = json_string_value (json_object_get (node, "name"));
        const char *role = json_string_value (json_object_get (node, "role"));
        const char *address = json_string_value (json_object_get (node, "address"));
        bool alive = json_is_true (json_object_get (node, "alive"));
        line = zsys_sprintf ("%-12s %-8s %-6s %s\n", name ? name : "?", role ? role : "?",
                             alive ? "yes" : "no", address ? address : "");
        zchunk_extend (buf, line, strlen (line));
        zstr_free (&line);
        json_t *stats = json_object_get (node, "stats");
        if (!alive || !json_object_size (stats))
            continue;
        zchunk_extend (buf, "   ", 3);
        const char *key;
        json_t *value;
        json_object_foreach (stats, key, value)
        {
            zchunk_extend (buf, " ", 1);
            zchunk_extend (buf, key, strlen (key));
            zchunk_extend (buf, "=", 1);
            s_value_text (buf, value);
        }
        zchunk_extend (buf, "\n", 1);
    }
    json_decref (status);
    zchunk_extend (buf, "", 1);
    char *text = zim_strdup ((char *)zchunk_data (buf));
    zchunk_destroy (&buf);
    return text;
}

//  The token verb: a token for UID in APP valid TTL seconds. Returns it
//  (caller owns), or NULL with *code and text set.
static char *s_token (zim_adminsrv_t *self, const zim_admin_req_t *req, int *code, char *text,
                      size_t size)
{
    char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1], ttl_s[24] = "3600";
    uint64_t ttl;
    if (!zim_uid_valid (req->args[0]) || !zim_uid_valid (req->args[1]) ||
        (req->nargs == 3 && zim_str_copy (req->args[2], ttl_s, sizeof ttl_s)) ||
        zim_parse_u64 (ttl_s, &ttl) || ttl == 0 || ttl > 366 * 86400) {
        *code = ZIM_ERR_BAD_FIELD;
        snprintf (text, size,
                  "token needs APP and UID ([A-Za-z0-9_.@-], 1-64) and TTL 1..31622400");
        return NULL;
    }
    zim_str_copy (req->args[0], app, sizeof app);
    zim_str_copy (req->args[1], uid, sizeof uid);
    const char *secret = zim_datadir_secret (self->datadir, app);
    if (!secret) {
        *code = ZIM_ERR_BAD_FIELD;
        snprintf (text, size,
                  "unknown app '%s', or an app with a public key only (its backend mints its "
                  "tokens)",
                  app);
        return NULL;
    }
    return zim_token_sign (secret, app, uid, (uint64_t)time (NULL) + ttl);
}

void zim_adminsrv_handle (zim_adminsrv_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sock);
    if (!msg)
        return;
    zframe_t *peer = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_admin_req_t req;
    zim_rd_t rd;
    char text[512];
    char *result = NULL;
    int code = 0;
    if (!body || zmsg_size (msg) != 0) {
        code = ZIM_ERR_MALFORMED;
        snprintf (text, sizeof text, "one frame per request");
        goto reply;
    }
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    if (zim_admin_req_decode (&rd, &req)) {
        code = ZIM_ERR_MALFORMED;
        snprintf (text, sizeof text, "malformed admin request");
        goto reply;
    }
    const char *key = zim_datadir_admin_key (self->datadir);
    size_t klen = strlen (key);
    if (req.key.len != klen || CRYPTO_memcmp (req.key.ptr, key, klen) != 0) {
        code = ZIM_ERR_FORBIDDEN;
        snprintf (text, sizeof text, "bad admin key (see DATA/admin.key or server/admin_key)");
        self->bad_keys++;
        const char *from = zframe_meta (body, "Peer-Address");
        zim_ratelog_warn (&self->ratelog, self->program,
                          "admin request with a bad key refused (from %s)", from ? from : "?");
        goto reply;
    }
    if (zim_str_eq (req.verb, "status") && req.nargs == 0) {
        json_t *status = zim_adminsrv_status (self);
        result = json_dumps (status, JSON_COMPACT);
        json_decref (status);
    } else if (zim_str_eq (req.verb, "status") && req.nargs == 1 &&
               zim_str_eq (req.args[0], "text"))
        result = zim_adminsrv_status_text (self);
    else if (zim_str_eq (req.verb, "token") && (req.nargs == 2 || req.nargs == 3))
        result = s_token (self, &req, &code, text, sizeof text);
    else if (self->verbs &&
             ((result = self->verbs (self->verbs_arg, &req, &code, text, sizeof text)) ||
              code != ZIM_ERR_UNKNOWN_OP))
        ;
    else {
        code = ZIM_ERR_UNKNOWN_OP;
        snprintf (text, sizeof text,
                  "unknown verb or wrong arguments (verbs: token APP UID [TTL], status [text]; "
                  "on a store: pushq [take AFTER MAX | ack OUTCOME QID,...], mute APP UID CONV "
                  "UNTIL)");
    }
reply:
    zim_admin_reply_encode (&wr, code, result ? result : code ? text : "");
    if (peer) {
        void *handle = zsock_resolve (self->sock);
        if (zmq_send (handle, zframe_data (peer), zframe_size (peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) !=
            -1)
            zmq_send (handle, wr.data, wr.size, ZMQ_DONTWAIT);
    }
    free (result);
    zim_wr_free (&wr);
    zframe_destroy (&peer);
    zframe_destroy (&body);
    zmsg_destroy (&msg);
}

//  -------------------------------------------------------------------------
//  Selftest: an admin endpoint in a thread of its own, asked through the
//  client call zimctl uses.

//  Nodes with awkward names and counters: the JSON must stay valid.
static json_t *s_test_nodes (void *arg)
{
    (void)arg;
    return json_pack ("[{s:s, s:s, s:s, s:b, s:{s:i, s:{s:i}}}, {s:s, s:s, s:s, s:b, s:{}}]",
                      "name", "gw-\"1\"\\", "role", "gateway", "address", "ws://h:1/ws\n", "alive",
                      1, "stats", "sends", 5, "gateway_routes", "gw-1", 2, "name", "store-1",
                      "role", "store", "address", "", "alive", 0, "stats");
}

static void s_test_server (zsock_t *pipe, void *args)
{
    zim_adminsrv_t *self = (zim_adminsrv_t *)args;
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, self->sock, NULL);
    while (zpoller_wait (poller, -1) == self->sock)
        zim_adminsrv_handle (self);
    zpoller_destroy (&poller);
}

void zim_adminsrv_test (bool verbose)
{
    char dir[] = "/tmp/zim-adminsrv-test-XXXXXX";
    assert (mkdtemp (dir));
    zconfig_t *conf = zconfig_new ("root", NULL);
    zconfig_put (conf, "server/data", dir);
    zconfig_put (conf, "server/admin_key", "right key");
    zim_datadir_t *dd = zim_datadir_open (conf, "test");
    assert (dd);
    zim_adminsrv_t *srv = zim_adminsrv_new ("test", "tcp://127.0.0.1:*", dd, s_test_nodes, NULL);
    assert (srv);
    assert (zim_adminsrv_new ("test", "tcp://127.0.0.1:bad", dd, NULL, NULL) == NULL);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "%s", zim_adminsrv_endpoint (srv));
    zactor_t *server = zactor_new (s_test_server, srv);

    char *text = NULL;
    const char *token_args[] = {"demo", "alice", "60", NULL};
    assert (zim_admin_call (endpoint, "right key", 2000, "token", token_args, &text) == 0);
    //  A JWT whose claims name the user and the app (the gateway's own
    //  selftests check signatures).
    char *dot = strchr (text, '.'), *dot2 = dot ? strchr (dot + 1, '.') : NULL;
    assert (dot && dot2 && !strchr (dot2 + 1, '.'));
    *dot2 = 0;
    zarmour_t *armour = zarmour_new ();
    zarmour_set_mode (armour, ZARMOUR_MODE_BASE64_URL);
    zarmour_set_pad (armour, false);
    zchunk_t *claims_text = zarmour_decode (armour, dot + 1);
    assert (claims_text);
    //  (zarmour may count a terminating NUL in the chunk)
    char *claims_str = strndup ((char *)zchunk_data (claims_text), zchunk_size (claims_text));
    json_t *claims = json_loads (claims_str, 0, NULL);
    free (claims_str);
    assert (streq (json_string_value (json_object_get (claims, "sub")), "alice"));
    assert (streq (json_string_value (json_object_get (claims, "app")), "demo"));
    json_decref (claims);
    zchunk_destroy (&claims_text);
    zarmour_destroy (&armour);
    zstr_free (&text);
    const char *unknown_app[] = {"nosuch", "alice", NULL};
    assert (zim_admin_call (endpoint, "right key", 2000, "token", unknown_app, &text) ==
            ZIM_ERR_BAD_FIELD);
    zstr_free (&text);

    //  Status: valid JSON whatever the names hold, and a table.
    assert (zim_admin_call (endpoint, "right key", 2000, "status", NULL, &text) == 0);
    json_t *status = json_loads (text, 0, NULL);
    assert (status && streq (json_string_value (json_object_get (status, "program")), "test"));
    json_t *nodes = json_object_get (status, "nodes");
    assert (json_array_size (nodes) == 2);
    assert (streq (json_string_value (json_object_get (json_array_get (nodes, 0), "name")),
                   "gw-\"1\"\\"));
    json_decref (status);
    zstr_free (&text);
    const char *as_text[] = {"text", NULL};
    assert (zim_admin_call (endpoint, "right key", 2000, "status", as_text, &text) == 0);
    assert (strstr (text, "sends=5") && strstr (text, "gateway_routes={\"gw-1\":2}"));
    assert (strstr (text, "store-1") && strstr (text, " no "));
    zstr_free (&text);

    //  A bad key is refused, counted, and logged at most a few times.
    for (int i = 0; i < 30; i++) {
        assert (zim_admin_call (endpoint, "wrong", 2000, "status", NULL, &text) ==
                ZIM_ERR_FORBIDDEN);
        zstr_free (&text);
    }
    assert (zim_admin_call (endpoint, "right key", 2000, "dance", NULL, &text) ==
            ZIM_ERR_UNKNOWN_OP);
    zstr_free (&text);
    zactor_destroy (&server);
    assert (zim_adminsrv_bad_keys (srv) == 30 && srv->ratelog.dropped == 20);

    zim_adminsrv_destroy (&srv);
    zim_adminsrv_destroy (&srv);
    zim_datadir_destroy (&dd);
    zconfig_destroy (&conf);
    char cmd[400];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert (system (cmd) == 0);
    if (verbose)
        zsys_info ("adminsrv: tokens, status JSON and text, bad keys limited");
}
