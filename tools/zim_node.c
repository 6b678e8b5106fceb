/*  zim_node.c: the server process shell around the actors: options and
    config, data directory and secrets, actor start-up and shutdown order,
    and the admin endpoint (token minting, status).
*/
#include "config.h"
#include "tools/zim_node.h"
#include "broker/zim_broker.h"
#include "gateway/zim_gateway.h"
#include "gateway/zim_token.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "router/zim_router.h"
#include "store/zim_store.h"

#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <sys/stat.h>

#define ZIM_MAX_BROKERS 16

//  One running actor and how status describes it.
typedef struct {
    zactor_t *actor; //  the actor
    char *name;      //  node name
    char *role;      //  gateway, broker, router, store
    char *address;   //  where it listens
} s_member_t;

struct _zim_node_t {
    char *program;        //  name in logs and --help
    int roles;            //  ZIM_ROLE_* bits
    zconfig_t *conf;      //  config tree: file, then command line on top
    zhash_t *secrets;     //  app name -> secret
    bool dev_defaults;    //  no apps configured: app "demo", secret in data dir
    char *data;           //  data directory
    char *admin_key;      //  key every admin request must carry
    zsock_t *admin;       //  admin ROUTER
    s_member_t members[4 + ZIM_MAX_BROKERS]; //  running actors, start order
    size_t nmembers;      //  how many
    int64_t started_ms;   //  for uptime
};

zim_node_t *zim_node_new (const char *program, int roles)
{
    zim_node_t *self = zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->roles = roles;
    self->conf = zconfig_new ("root", NULL);
    self->secrets = zhash_new ();
    zhash_autofree (self->secrets);
    return self;
}

void zim_node_destroy (zim_node_t **self_p)
{
    zim_node_t *self = *self_p;
    if (!self)
        return;
    //  Stop the edge first so no new work comes in, the store last so that
    //  everything accepted is committed.
    for (size_t i = self->nmembers; i-- > 0;) {
        zactor_destroy (&self->members[i].actor);
        free (self->members[i].name);
        free (self->members[i].role);
        free (self->members[i].address);
    }
    zsock_destroy (&self->admin);
    zconfig_destroy (&self->conf);
    zhash_destroy (&self->secrets);
    free (self->program);
    free (self->data);
    free (self->admin_key);
    free (self);
    *self_p = NULL;
}

static void s_usage (zim_node_t *self, FILE *out)
{
    fprintf (out,
             "Usage: %s [OPTIONS]\n"
             "\n"
             "Runs the zim messaging server: WebSocket gateway, broker, router and\n"
             "LMDB store in one process. Clients connect to ws://HOST:PORT/ws.\n"
             "\n"
             "Options (command line wins over the config file):\n"
             "  -c, --config FILE      config file (ZPL format; see docs/OPERATIONS.md)\n"
             "  -p, --port N           client port, WebSocket at /ws (default 7700;\n"
             "                         0 picks a free port, printed in the ready line)\n"
             "      --interface ADDR   address to listen on for clients (default: all)\n"
             "  -a, --admin ENDPOINT   admin endpoint for zimctl (default %s;\n"
             "                         tcp://127.0.0.1:* picks a free port)\n"
             "  -d, --data DIR         data directory (default ./zim-data)\n"
             "      --sync MODE        fsync policy: always | batch | none (default batch)\n"
             "      --brokers N        broker actors (default 1, at most %d)\n"
             "      --www DIR          serve the files of DIR over HTTP at / (the demo\n"
             "                         chat page is sdk/js/demo)\n"
             "  -h, --help             this text\n"
             "      --version          print the version\n"
             "\n"
             "With no apps in the config, the server serves app \"demo\" with a secret\n"
             "generated on first start and kept in DIR/app-demo.secret. The admin key\n"
             "is server/admin_key in the config or DIR/admin.key (generated).\n"
             "With those defaults and --interface 127.0.0.1, GET /dev/token?uid=NAME\n"
             "hands out demo tokens (for the demo page; never on other interfaces).\n"
             "\n"
             "Examples:\n"
             "  %s                          # serve on :7700 with ./zim-data\n"
             "  %s -p 0 -d /tmp/zim -a tcp://127.0.0.1:*\n"
             "  zimctl token --app demo --uid alice   # mint a client token\n",
             self->program, ZIM_ADMIN_ENDPOINT, ZIM_MAX_BROKERS, self->program, self->program);
}

int zim_node_configure (zim_node_t *self, int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},   {"port", required_argument, NULL, 'p'},
        {"interface", required_argument, NULL, 'I'}, {"admin", required_argument, NULL, 'a'},
        {"data", required_argument, NULL, 'd'},     {"sync", required_argument, NULL, 'S'},
        {"brokers", required_argument, NULL, 'B'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {"www", required_argument, NULL, 'W'},
        {NULL, 0, NULL, 0}};
    //  Command-line values wait until the config file is loaded.
    zconfig_t *cli = zconfig_new ("root", NULL);
    const char *config_file = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "c:p:a:d:h", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_file = optarg;
            break;
        case 'p':
            zconfig_put (cli, "server/port", optarg);
            break;
        case 'I':
            zconfig_put (cli, "server/interface", optarg);
            break;
        case 'a':
            zconfig_put (cli, "server/admin", optarg);
            break;
        case 'd':
            zconfig_put (cli, "server/data", optarg);
            break;
        case 'S':
            zconfig_put (cli, "store/sync", optarg);
            break;
        case 'B':
            zconfig_put (cli, "server/brokers", optarg);
            break;
        case 'W':
            zconfig_put (cli, "gateway/www", optarg);
            break;
        case 'h':
            s_usage (self, stdout);
            zconfig_destroy (&cli);
            return 1;
        case 'V':
            printf ("%s %s\n", self->program, PACKAGE_VERSION);
            zconfig_destroy (&cli);
            return 1;
        default:
            fprintf (stderr, "Try '%s --help'.\n", self->program);
            zconfig_destroy (&cli);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "%s: unexpected argument '%s'. Try '%s --help'.\n", self->program,
                 argv[optind], self->program);
        zconfig_destroy (&cli);
        return -1;
    }
    if (config_file) {
        zconfig_t *loaded = zconfig_load (config_file);
        if (!loaded) {
            fprintf (stderr, "%s: cannot load config file '%s' (missing or not ZPL)\n",
                     self->program, config_file);
            zconfig_destroy (&cli);
            return -1;
        }
        zconfig_destroy (&self->conf);
        self->conf = loaded;
    }
    //  Lay the command line over the file.
    for (zconfig_t *sec = zconfig_child (cli); sec; sec = zconfig_next (sec))
        for (zconfig_t *kv = zconfig_child (sec); kv; kv = zconfig_next (kv)) {
            char path[256];
            snprintf (path, sizeof path, "%s/%s", zconfig_name (sec), zconfig_name (kv));
            zconfig_put (self->conf, path, zconfig_value (kv));
        }
    zconfig_destroy (&cli);
    const char *sync = zconfig_get (self->conf, "store/sync", "batch");
    if (!streq (sync, "always") && !streq (sync, "batch") && !streq (sync, "none")) {
        fprintf (stderr, "%s: store sync must be always, batch or none, not '%s'\n",
                 self->program, sync);
        return -1;
    }
    uint64_t n;
    const char *port = zconfig_get (self->conf, "server/port", "7700");
    if (zim_parse_u64 (port, &n) || n > 65535) {
        fprintf (stderr, "%s: bad port '%s'\n", self->program, port);
        return -1;
    }
    const char *brokers = zconfig_get (self->conf, "server/brokers", "1");
    if (zim_parse_u64 (brokers, &n) || n < 1 || n > ZIM_MAX_BROKERS) {
        fprintf (stderr, "%s: brokers must be 1..%d, not '%s'\n", self->program,
                 ZIM_MAX_BROKERS, brokers);
        return -1;
    }
    return 0;
}

//  Reads a one-line secret file, or creates it with a fresh random secret
//  (mode 0600). Caller owns return value; NULL on failure (logged).
static char *s_secret_file (const char *path)
{
    FILE *f = fopen (path, "r");
    if (f) {
        char buf[256] = "";
        if (!fgets (buf, sizeof buf, f))
            buf[0] = 0;
        fclose (f);
        buf[strcspn (buf, "\r\n")] = 0;
        if (buf[0])
            return zim_strdup (buf);
        zsys_error ("%s is empty: delete it to have a new secret generated", path);
        return NULL;
    }
    char *secret = zim_token_secret_new ();
    mode_t old = umask (077);
    f = fopen (path, "w");
    umask (old);
    if (!f || fprintf (f, "%s\n", secret) < 0 || fclose (f) != 0) {
        zsys_error ("cannot write %s: %s", path, strerror (errno));
        free (secret);
        return NULL;
    }
    zsys_info ("generated %s", path);
    return secret;
}

//  Sends SET for every key of one config section to an actor.
static void s_apply_section (zim_node_t *self, zactor_t *actor, const char *section)
{
    zconfig_t *sec = zconfig_locate (self->conf, section);
    for (zconfig_t *kv = sec ? zconfig_child (sec) : NULL; kv; kv = zconfig_next (kv))
        zstr_sendx (actor, "SET", zconfig_name (kv), zconfig_value (kv), NULL);
}

//  Sends a command that answers with a signal; returns 0 if it succeeded.
static int s_command (zactor_t *actor, const char *cmd, const char *a1, const char *a2)
{
    zstr_sendx (actor, cmd, a1, a2, NULL);
    return zsock_wait (actor) == 0 ? 0 : -1;
}

static s_member_t *s_member_add (zim_node_t *self, zactor_fn *fn, const char *name,
                                 const char *role)
{
    s_member_t *m = &self->members[self->nmembers++];
    m->actor = zactor_new (fn, NULL);
    m->name = zim_strdup (name);
    m->role = zim_strdup (role);
    m->address = zim_strdup ("");
    zstr_sendx (m->actor, "SET", "name", name, NULL);
    return m;
}

int zim_node_start (zim_node_t *self)
{
    self->started_ms = zclock_time ();
    self->data = zim_strdup (zconfig_get (self->conf, "server/data", "./zim-data"));
    if (zsys_dir_create ("%s", self->data)) {
        zsys_error ("%s: cannot create data directory %s: %s", self->program, self->data,
                    strerror (errno));
        return -1;
    }
    char path[4096];
    //  Apps and their secrets.
    zconfig_t *apps = zconfig_locate (self->conf, "apps");
    for (zconfig_t *app = apps ? zconfig_child (apps) : NULL; app; app = zconfig_next (app)) {
        const char *secret = zconfig_get (app, "secret", "");
        if (!zim_uid_valid (zim_str (zconfig_name (app))) || strlen (secret) < 16) {
            zsys_error ("%s: app '%s' needs a valid name and a secret of 16+ characters",
                        self->program, zconfig_name (app));
            return -1;
        }
        zhash_insert (self->secrets, zconfig_name (app), (void *) secret); //  autofree copies
    }
    if (zhash_size (self->secrets) == 0) {
        self->dev_defaults = true;
        snprintf (path, sizeof path, "%s/app-demo.secret", self->data);
        char *secret = s_secret_file (path);
        if (!secret)
            return -1;
        zhash_insert (self->secrets, "demo", secret); //  autofree copies
        free (secret);
    }
    const char *key = zconfig_get (self->conf, "server/admin_key", NULL);
    if (key && *key)
        self->admin_key = zim_strdup (key);
    else {
        snprintf (path, sizeof path, "%s/admin.key", self->data);
        self->admin_key = s_secret_file (path);
        if (!self->admin_key)
            return -1;
    }
    //  The admin endpoint first: a second server on the same machine fails
    //  here, before it touches the store.
    const char *admin = zconfig_get (self->conf, "server/admin", ZIM_ADMIN_ENDPOINT);
    self->admin = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (self->admin, 0);
    if (zsock_bind (self->admin, "%s", admin) == -1) {
        zsys_error ("%s: cannot bind admin endpoint %s: %s (another server running? use --admin)",
                    self->program, admin, zmq_strerror (zmq_errno ()));
        return -1;
    }
    uint64_t nbrokers = 1;
    zim_parse_u64 (zconfig_get (self->conf, "server/brokers", "1"), &nbrokers);

    if (self->roles & ZIM_ROLE_STORE) {
        s_member_t *m = s_member_add (self, zim_store_actor, "store-1", "store");
        s_apply_section (self, m->actor, "store");
        snprintf (path, sizeof path, "%s/store", self->data);
        zstr_sendx (m->actor, "SET", "data", path, NULL);
        free (m->address);
        m->address = zim_strdup (path);
        if (s_command (m->actor, "BIND", "inproc://zim-store", NULL) ||
            s_command (m->actor, "START", NULL, NULL))
            return -1;
    }
    if (self->roles & ZIM_ROLE_ROUTER) {
        s_member_t *m = s_member_add (self, zim_router_actor, "router-1", "router");
        s_apply_section (self, m->actor, "router");
        if (s_command (m->actor, "BIND", "inproc://zim-router", NULL) ||
            s_command (m->actor, "START", NULL, NULL))
            return -1;
    }
    if (self->roles & ZIM_ROLE_BROKER)
        for (uint64_t i = 1; i <= nbrokers; i++) {
            char name[32], endpoint[64], id[16];
            snprintf (name, sizeof name, "broker-%" PRIu64, i);
            snprintf (endpoint, sizeof endpoint, "inproc://zim-broker-%" PRIu64, i);
            snprintf (id, sizeof id, "%" PRIu64, i);
            s_member_t *m = s_member_add (self, zim_broker_actor, name, "broker");
            s_apply_section (self, m->actor, "broker");
            zstr_sendx (m->actor, "SET", "node_id", id, NULL);
            if (s_command (m->actor, "BIND", endpoint, NULL) ||
                s_command (m->actor, "CONNECT", "store", "inproc://zim-store") ||
                s_command (m->actor, "CONNECT", "router", "inproc://zim-router") ||
                s_command (m->actor, "START", NULL, NULL))
                return -1;
        }
    char ws[128] = "";
    if (self->roles & ZIM_ROLE_GATEWAY) {
        s_member_t *m = s_member_add (self, zim_gateway_actor, "gw-1", "gateway");
        s_apply_section (self, m->actor, "gateway");
        const char *port = zconfig_get (self->conf, "server/port", "7700");
        zstr_sendx (m->actor, "SET", "port", port, NULL);
        const char *iface = zconfig_get (self->conf, "server/interface", NULL);
        if (iface && *iface && !streq (iface, "*"))
            zstr_sendx (m->actor, "SET", "interface", iface, NULL);
        //  Dev tokens (GET /dev/token?uid=) only with the demo defaults and
        //  only for clients on this machine.
        if (self->dev_defaults && iface &&
            (strncmp (iface, "127.", 4) == 0 || streq (iface, "localhost")))
            zstr_sendx (m->actor, "SET", "dev_tokens", "1", NULL);
        for (char *secret = zhash_first (self->secrets); secret;
             secret = zhash_next (self->secrets))
            zstr_sendx (m->actor, "SET", "app", zhash_cursor (self->secrets), secret, NULL);
        for (uint64_t i = 1; i <= nbrokers; i++) {
            char endpoint[64];
            snprintf (endpoint, sizeof endpoint, "inproc://zim-broker-%" PRIu64, i);
            if (s_command (m->actor, "CONNECT", "broker", endpoint))
                return -1;
        }
        if (s_command (m->actor, "CONNECT", "router", "inproc://zim-router") ||
            s_command (m->actor, "START", NULL, NULL)) {
            zsys_error ("%s: gateway could not start on port %s (in use? try --port)",
                        self->program, port);
            return -1;
        }
        zstr_sendx (m->actor, "PORT", NULL);
        char *real = zstr_recv (m->actor);
        snprintf (ws, sizeof ws, "ws://%s:%s/ws",
                  iface && *iface && !streq (iface, "*") ? iface : "0.0.0.0", real ? real : "?");
        free (m->address);
        m->address = zim_strdup (ws);
        free (real);
    }
    zsys_info ("%s ready: ws=%s admin=%s data=%s sync=%s brokers=%" PRIu64 "%s", self->program,
               ws, zsock_endpoint (self->admin), self->data,
               zconfig_get (self->conf, "store/sync", "batch"), nbrokers,
               self->dev_defaults ? " app=demo (dev defaults)" : "");
    return 0;
}

//  Appends a JSON string literal (quotes and escapes) to buf.
static void s_json_str (zchunk_t *buf, const char *s)
{
    zchunk_extend (buf, "\"", 1);
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = *s;
            zchunk_extend (buf, esc, 2);
        }
        else if ((unsigned char) *s < 0x20) {
            snprintf (esc, sizeof esc, "\\u%04x", (unsigned char) *s);
            zchunk_extend (buf, esc, 6);
        }
        else
            zchunk_extend (buf, s, 1);
    }
    zchunk_extend (buf, "\"", 1);
}

//  Appends one actor's flat JSON counters as "key=value" words.
static void s_stats_text (zchunk_t *buf, const char *stats)
{
    zchunk_extend (buf, "    ", 4);
    for (const char *s = stats; *s; s++) {
        char c = *s == ':' ? '=' : *s == ',' ? ' ' : *s;
        if (c != '{' && c != '}' && c != '"')
            zchunk_extend (buf, &c, 1);
    }
    zchunk_extend (buf, "\n", 1);
}

//  Builds the status as a table for people. Caller owns return value.
static char *s_status_text (zim_node_t *self)
{
    zchunk_t *buf = zchunk_new (NULL, 1024);
    char line[512];
    snprintf (line, sizeof line, "%s %s, up %" PRId64 " s\n%-12s %-8s %-6s %s\n", self->program,
              PACKAGE_VERSION, (zclock_time () - self->started_ms) / 1000, "NODE", "ROLE",
              "ALIVE", "ADDRESS");
    zchunk_extend (buf, line, strlen (line));
    for (size_t i = 0; i < self->nmembers; i++) {
        s_member_t *m = &self->members[i];
        zstr_sendx (m->actor, "STATS", NULL);
        char *stats = zstr_recv (m->actor);
        snprintf (line, sizeof line, "%-12s %-8s %-6s %s\n", m->name, m->role,
                  stats ? "yes" : "no", m->address);
        zchunk_extend (buf, line, strlen (line));
        if (stats)
            s_stats_text (buf, stats);
        free (stats);
    }
    zchunk_extend (buf, "", 1);
    char *text = zim_strdup ((char *) zchunk_data (buf));
    zchunk_destroy (&buf);
    return text;
}

//  Builds the status document. Caller owns return value.
static char *s_status (zim_node_t *self)
{
    zchunk_t *buf = zchunk_new (NULL, 1024);
    char head[256];
    snprintf (head, sizeof head, "{\"program\":\"%s\",\"version\":\"%s\",\"uptime_s\":%" PRId64
             ",\"nodes\":[",
             self->program, PACKAGE_VERSION, (zclock_time () - self->started_ms) / 1000);
    zchunk_extend (buf, head, strlen (head));
    for (size_t i = 0; i < self->nmembers; i++) {
        s_member_t *m = &self->members[i];
        zstr_sendx (m->actor, "STATS", NULL);
        char *stats = zstr_recv (m->actor);
        zchunk_extend (buf, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
        s_json_str (buf, m->name);
        zchunk_extend (buf, ",\"role\":", 8);
        s_json_str (buf, m->role);
        zchunk_extend (buf, ",\"address\":", 11);
        s_json_str (buf, m->address);
        const char *alive = stats ? ",\"alive\":true,\"stats\":" : ",\"alive\":false,\"stats\":{}";
        zchunk_extend (buf, alive, strlen (alive));
        if (stats)
            zchunk_extend (buf, stats, strlen (stats));
        zchunk_extend (buf, "}", 1);
        free (stats);
    }
    zchunk_extend (buf, "]}", 3); //  with the NUL
    char *json = zim_strdup ((char *) zchunk_data (buf));
    zchunk_destroy (&buf);
    return json;
}

//  Answers one admin request.
static void s_admin_handle (zim_node_t *self)
{
    zmsg_t *msg = zmsg_recv (self->admin);
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
    size_t klen = strlen (self->admin_key);
    if (req.key.len != klen || CRYPTO_memcmp (req.key.ptr, self->admin_key, klen) != 0) {
        code = ZIM_ERR_FORBIDDEN;
        snprintf (text, sizeof text, "bad admin key (see DATA/admin.key or server/admin_key)");
        zsys_warning ("%s: admin request with a bad key refused", self->program);
        goto reply;
    }
    if (zim_str_eq (req.verb, "status") && req.nargs == 0)
        result = s_status (self);
    else if (zim_str_eq (req.verb, "status") && req.nargs == 1 && zim_str_eq (req.args[0], "text"))
        result = s_status_text (self);
    else if (zim_str_eq (req.verb, "token") && (req.nargs == 2 || req.nargs == 3)) {
        char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1], ttl_s[24] = "3600";
        uint64_t ttl;
        if (!zim_uid_valid (req.args[0]) || !zim_uid_valid (req.args[1]) ||
            (req.nargs == 3 && zim_str_copy (req.args[2], ttl_s, sizeof ttl_s)) ||
            zim_parse_u64 (ttl_s, &ttl) || ttl == 0 || ttl > 366 * 86400) {
            code = ZIM_ERR_BAD_FIELD;
            snprintf (text, sizeof text,
                      "token needs APP and UID ([A-Za-z0-9_.@-], 1-64) and TTL 1..31622400");
            goto reply;
        }
        zim_str_copy (req.args[0], app, sizeof app);
        zim_str_copy (req.args[1], uid, sizeof uid);
        const char *secret = zhash_lookup (self->secrets, app);
        if (!secret) {
            code = ZIM_ERR_BAD_FIELD;
            snprintf (text, sizeof text, "unknown app '%s'", app);
            goto reply;
        }
        result = zim_token_sign (secret, app, uid, (uint64_t) time (NULL) + ttl);
    }
    else {
        code = ZIM_ERR_UNKNOWN_OP;
        snprintf (text, sizeof text, "unknown verb or wrong arguments (verbs: token APP UID [TTL], status [text])");
    }
reply:
    zim_admin_reply_encode (&wr, code, result ? result : code ? text : "");
    if (peer) {
        zmq_send (zsock_resolve (self->admin), zframe_data (peer), zframe_size (peer),
                  ZMQ_SNDMORE);
        zmq_send (zsock_resolve (self->admin), wr.data, wr.size, 0);
    }
    free (result);
    zim_wr_free (&wr);
    zframe_destroy (&peer);
    zframe_destroy (&body);
    zmsg_destroy (&msg);
}

int zim_node_run (zim_node_t *self)
{
    zpoller_t *poller = zpoller_new (self->admin, NULL);
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, 1000);
        if (which == self->admin)
            s_admin_handle (self);
        else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
    zsys_info ("%s: shutting down", self->program);
    return 0;
}
