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
#include <unistd.h>

#define ZIM_MAX_BROKERS 16
#define ZIM_MAX_ROUTERS 8

//  One running actor and how status describes it.
typedef struct {
    zactor_t *actor; //  the actor
    char *name;      //  node name
    char *role;      //  gateway, broker, router, store
    char *address;   //  where it listens
} s_member_t;

//  A router this node has joined (cluster nodes only).
typedef struct {
    zsock_t *sock;   //  DEALER, identity "m:NAME": HELLO out, MAP in
    char *endpoint;  //  the router's endpoint
    zframe_t *map;   //  the last MAP it sent, NULL before the first
    int64_t map_ms;  //  when that came (monotonic)
} s_joined_t;

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
    bool cluster;         //  one role over tcp:// (not zim-server)
    char default_name[32]; //  ROLE-1
    uint64_t instance;    //  random per start, in every HELLO
    s_joined_t joined[ZIM_MAX_ROUTERS]; //  routers joined
    size_t njoined;       //  how many
    int64_t next_beat_ms; //  next HELLO (monotonic)
};

static int s_start_embedded (zim_node_t *self);
static int s_start_cluster (zim_node_t *self);
static int s_join (zim_node_t *self, const char *endpoint);
static void s_heartbeat (zim_node_t *self);
static void s_handle_map (zim_node_t *self, s_joined_t *j);
static s_member_t *s_gateway_add (zim_node_t *self, const char *name);
static int s_gateway_start (zim_node_t *self, s_member_t *m);

zim_node_t *zim_node_new (const char *program, int roles)
{
    zim_node_t *self = zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->roles = roles;
    self->conf = zconfig_new ("root", NULL);
    self->secrets = zhash_new ();
    zhash_autofree (self->secrets);
    self->cluster = roles != ZIM_ROLE_ALL;
    snprintf (self->default_name, sizeof self->default_name, "%s-1",
              roles == ZIM_ROLE_GATEWAY  ? "gw"
              : roles == ZIM_ROLE_BROKER ? "broker"
              : roles == ZIM_ROLE_ROUTER ? "router"
                                         : "store");
    self->instance = ((uint64_t) randof (0x7fffffff) << 31) ^ (uint64_t) zclock_usecs ();
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
    for (size_t i = 0; i < self->njoined; i++) {
        zsock_destroy (&self->joined[i].sock);
        zframe_destroy (&self->joined[i].map);
        free (self->joined[i].endpoint);
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
    if (!self->cluster) {
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
                 self->program, ZIM_ADMIN_ENDPOINT, ZIM_MAX_BROKERS, self->program,
                 self->program);
        return;
    }
    const char *what = self->roles == ZIM_ROLE_GATEWAY
                           ? "a gateway: client WebSocket sessions, forwarded to the live\n"
                             "brokers of the cluster map"
                       : self->roles == ZIM_ROLE_BROKER
                           ? "a broker: sends, acks and deliveries; writes to the store\n"
                             "shards of the cluster map"
                       : self->roles == ZIM_ROLE_ROUTER
                           ? "a router: presence routes and cluster membership (every node\n"
                             "joins every router)"
                           : "a store shard: the LMDB inboxes, history and cursors of the\n"
                             "users the consistent hash places on it";
    fprintf (out,
             "Usage: %s [OPTIONS]\n"
             "\n"
             "Runs one zim cluster node, %s.\n"
             "\n"
             "Options (command line wins over the config file):\n"
             "  -c, --config FILE      config file (ZPL, as zim-server; docs/OPERATIONS.md)\n"
             "      --name NAME        node name, unique in the cluster (default %s)\n"
             "  -r, --router ENDPOINT  a router to join (repeatable; cluster/routers)\n"
             "%s"
             "  -a, --admin ENDPOINT   admin endpoint for zimctl (default: none); status\n"
             "                         there shows the whole cluster\n"
             "  -d, --data DIR         data directory: secrets, admin.key%s\n"
             "                         (default ./zim-data)\n"
             "  -h, --help             this text\n"
             "      --version          print the version\n",
             self->program, what, self->default_name,
             self->roles == ZIM_ROLE_GATEWAY
                 ? "  -p, --port N           client port, WebSocket at /ws (default 7700)\n"
                   "      --interface ADDR   address to listen on for clients (default: all)\n"
                   "      --www DIR          serve the files of DIR over HTTP at /\n"
                 : self->roles == ZIM_ROLE_BROKER
                 ? "      --bind ENDPOINT    where gateways connect (cluster/bind)\n"
                   "      --node-id N        0..1023, unique per broker: part of message ids\n"
                 : self->roles == ZIM_ROLE_STORE
                 ? "      --bind ENDPOINT    where brokers connect (cluster/bind)\n"
                   "      --sync MODE        fsync policy: always | batch | none (default batch)\n"
                 : "      --bind ENDPOINT    where every node connects (cluster/bind)\n",
             self->roles == ZIM_ROLE_STORE ? ", the LMDB files in DIR/NAME" : "");
}

int zim_node_configure (zim_node_t *self, int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},   {"port", required_argument, NULL, 'p'},
        {"interface", required_argument, NULL, 'I'}, {"admin", required_argument, NULL, 'a'},
        {"data", required_argument, NULL, 'd'},     {"sync", required_argument, NULL, 'S'},
        {"brokers", required_argument, NULL, 'B'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {"www", required_argument, NULL, 'W'},
        {"name", required_argument, NULL, 'n'},     {"bind", required_argument, NULL, 'b'},
        {"router", required_argument, NULL, 'r'},   {"node-id", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0}};
    char routers[1024] = "";
    //  Command-line values wait until the config file is loaded.
    zconfig_t *cli = zconfig_new ("root", NULL);
    const char *config_file = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "c:p:a:d:r:h", options, NULL)) != -1) {
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
        case 'n':
            zconfig_put (cli, "server/name", optarg);
            break;
        case 'b':
            zconfig_put (cli, "cluster/bind", optarg);
            break;
        case 'r':
            if (strlen (routers) + strlen (optarg) + 2 < sizeof routers) {
                if (*routers)
                    strcat (routers, ",");
                strcat (routers, optarg);
            }
            zconfig_put (cli, "cluster/routers", routers);
            break;
        case 'i':
            zconfig_put (cli, "server/node_id", optarg);
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
//  (mode 0600). Creation is atomic (a private temp file linked into place),
//  so nodes starting together on one data dir agree on one secret. Caller
//  owns return value; NULL on failure (logged).
static char *s_secret_file (const char *path)
{
    for (int attempt = 0; attempt < 2; attempt++) {
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
        char tmp[4200];
        snprintf (tmp, sizeof tmp, "%s.%d.tmp", path, (int) getpid ());
        char *secret = zim_token_secret_new ();
        mode_t old = umask (077);
        f = fopen (tmp, "w");
        umask (old);
        if (!f || fprintf (f, "%s\n", secret) < 0 || fflush (f) != 0 || fsync (fileno (f)) != 0 ||
            fclose (f) != 0) {
            zsys_error ("cannot write %s: %s", tmp, strerror (errno));
            free (secret);
            unlink (tmp);
            return NULL;
        }
        int rc = link (tmp, path);
        int err = errno;
        unlink (tmp);
        if (rc == 0) {
            zsys_info ("generated %s", path);
            return secret;
        }
        free (secret);
        if (err != EEXIST) {
            zsys_error ("cannot create %s: %s", path, strerror (err));
            return NULL;
        }
        //  Someone else made it first: read theirs.
    }
    return NULL;
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

//  Sets the address status shows for m.
static void s_member_address (s_member_t *m, const char *address)
{
    free (m->address);
    m->address = zim_strdup (address);
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
    //  here, before it touches the store. Cluster nodes have one only if
    //  asked (--admin).
    const char *admin = zconfig_get (self->conf, "server/admin",
                                     self->cluster ? "" : ZIM_ADMIN_ENDPOINT);
    if (*admin) {
        self->admin = zsock_new (ZMQ_ROUTER);
        zsock_set_linger (self->admin, 0);
        if (zsock_bind (self->admin, "%s", admin) == -1) {
            zsys_error ("%s: cannot bind admin endpoint %s: %s (another node running? use "
                        "--admin)",
                        self->program, admin, zmq_strerror (zmq_errno ()));
            return -1;
        }
    }
    return self->cluster ? s_start_cluster (self) : s_start_embedded (self);
}

//  Starts every role in this process over inproc:// (zim-server).
static int s_start_embedded (zim_node_t *self)
{
    char path[4096];
    uint64_t nbrokers = 1;
    zim_parse_u64 (zconfig_get (self->conf, "server/brokers", "1"), &nbrokers);
    s_member_t *m = s_member_add (self, zim_store_actor, "store-1", "store");
    s_apply_section (self, m->actor, "store");
    snprintf (path, sizeof path, "%s/store", self->data);
    zstr_sendx (m->actor, "SET", "data", path, NULL);
    s_member_address (m, path);
    if (s_command (m->actor, "BIND", "inproc://zim-store", NULL) ||
        s_command (m->actor, "START", NULL, NULL))
        return -1;
    m = s_member_add (self, zim_router_actor, "router-1", "router");
    s_apply_section (self, m->actor, "router");
    if (s_command (m->actor, "BIND", "inproc://zim-router", NULL) ||
        s_command (m->actor, "START", NULL, NULL))
        return -1;
    for (uint64_t i = 1; i <= nbrokers; i++) {
        char name[32], endpoint[64], id[16];
        snprintf (name, sizeof name, "broker-%" PRIu64, i);
        snprintf (endpoint, sizeof endpoint, "inproc://zim-broker-%" PRIu64, i);
        snprintf (id, sizeof id, "%" PRIu64, i);
        m = s_member_add (self, zim_broker_actor, name, "broker");
        s_apply_section (self, m->actor, "broker");
        zstr_sendx (m->actor, "SET", "node_id", id, NULL);
        if (s_command (m->actor, "BIND", endpoint, NULL) ||
            s_command (m->actor, "CONNECT", "store", "inproc://zim-store") ||
            s_command (m->actor, "CONNECT", "router", "inproc://zim-router") ||
            s_command (m->actor, "START", NULL, NULL))
            return -1;
    }
    m = s_gateway_add (self, "gw-1");
    for (uint64_t i = 1; i <= nbrokers; i++) {
        char endpoint[64];
        snprintf (endpoint, sizeof endpoint, "inproc://zim-broker-%" PRIu64, i);
        if (s_command (m->actor, "CONNECT", "broker", endpoint))
            return -1;
    }
    if (s_command (m->actor, "CONNECT", "router", "inproc://zim-router") ||
        s_gateway_start (self, m))
        return -1;
    zsys_info ("%s ready: ws=%s admin=%s data=%s sync=%s brokers=%" PRIu64 "%s", self->program,
               m->address, self->admin ? zsock_endpoint (self->admin) : "none", self->data,
               zconfig_get (self->conf, "store/sync", "batch"), nbrokers,
               self->dev_defaults ? " app=demo (dev defaults)" : "");
    return 0;
}

//  Adds the gateway actor with its settings (not yet started).
static s_member_t *s_gateway_add (zim_node_t *self, const char *name)
{
    s_member_t *m = s_member_add (self, zim_gateway_actor, name, "gateway");
    s_apply_section (self, m->actor, "gateway");
    zstr_sendx (m->actor, "SET", "port", zconfig_get (self->conf, "server/port", "7700"), NULL);
    const char *iface = zconfig_get (self->conf, "server/interface", NULL);
    if (iface && *iface && !streq (iface, "*"))
        zstr_sendx (m->actor, "SET", "interface", iface, NULL);
    //  Dev tokens (GET /dev/token?uid=) only with the demo defaults and
    //  only for clients on this machine.
    if (self->dev_defaults && iface &&
        (strncmp (iface, "127.", 4) == 0 || streq (iface, "localhost")))
        zstr_sendx (m->actor, "SET", "dev_tokens", "1", NULL);
    for (char *secret = zhash_first (self->secrets); secret; secret = zhash_next (self->secrets))
        zstr_sendx (m->actor, "SET", "app", zhash_cursor (self->secrets), secret, NULL);
    return m;
}

//  Starts the gateway and records its WebSocket URL. Returns 0 or -1.
static int s_gateway_start (zim_node_t *self, s_member_t *m)
{
    const char *port = zconfig_get (self->conf, "server/port", "7700");
    if (s_command (m->actor, "START", NULL, NULL)) {
        zsys_error ("%s: gateway could not start on port %s (in use? try --port)",
                    self->program, port);
        return -1;
    }
    const char *iface = zconfig_get (self->conf, "server/interface", NULL);
    zstr_sendx (m->actor, "PORT", NULL);
    char *real = zstr_recv (m->actor);
    char ws[128];
    snprintf (ws, sizeof ws, "ws://%s:%s/ws",
              iface && *iface && !streq (iface, "*") ? iface : "0.0.0.0", real ? real : "?");
    s_member_address (m, ws);
    free (real);
    return 0;
}

//  Starts this process's one role as a cluster node over tcp://.
static int s_start_cluster (zim_node_t *self)
{
    char path[4096];
    const char *name = zconfig_get (self->conf, "server/name", self->default_name);
    if (!zim_uid_valid (zim_str (name))) {
        zsys_error ("%s: bad node name '%s' (1-64 of A-Za-z0-9_.@-)", self->program, name);
        return -1;
    }
    const char *bind = zconfig_get (self->conf, "cluster/bind", "");
    if (!(self->roles & ZIM_ROLE_GATEWAY) && !*bind) {
        zsys_error ("%s: needs --bind ENDPOINT (or cluster/bind in the config)", self->program);
        return -1;
    }
    s_member_t *m = NULL;
    if (self->roles & ZIM_ROLE_STORE) {
        m = s_member_add (self, zim_store_actor, name, "store");
        s_apply_section (self, m->actor, "store");
        snprintf (path, sizeof path, "%s/%s", self->data, name);
        zstr_sendx (m->actor, "SET", "data", path, NULL);
    }
    else if (self->roles & ZIM_ROLE_ROUTER) {
        m = s_member_add (self, zim_router_actor, name, "router");
        s_apply_section (self, m->actor, "router");
    }
    else if (self->roles & ZIM_ROLE_BROKER) {
        m = s_member_add (self, zim_broker_actor, name, "broker");
        s_apply_section (self, m->actor, "broker");
        zstr_sendx (m->actor, "SET", "node_id", zconfig_get (self->conf, "server/node_id", "1"),
                    NULL);
    }
    else
        m = s_gateway_add (self, name);
    if (*bind) {
        zstr_sendx (m->actor, "BIND", bind, NULL);
        if (zsock_wait (m->actor) != 0) {
            zsys_error ("%s: cannot bind %s (in use? another node there?)", self->program, bind);
            return -1;
        }
        //  What others connect to: a wildcard host becomes loopback.
        zstr_sendx (m->actor, "PORT", NULL);
        char *port = zstr_recv (m->actor);
        char endpoint[300];
        const char *host = strstr (bind, "://");
        host = host ? host + 3 : bind;
        size_t hlen = strcspn (host, ":");
        if (strncmp (bind, "tcp://", 6) == 0 && port && atoi (port) > 0) {
            bool any = (hlen == 1 && *host == '*') || (hlen == 7 && !strncmp (host, "0.0.0.0", 7));
            snprintf (endpoint, sizeof endpoint, "tcp://%.*s:%s", any ? 9 : (int) hlen,
                      any ? "127.0.0.1" : host, port);
        }
        else
            snprintf (endpoint, sizeof endpoint, "%s", bind);
        s_member_address (m, endpoint);
        free (port);
    }
    //  The routers to join; a router joins itself too.
    char *routers = zim_strdup (zconfig_get (self->conf, "cluster/routers", ""));
    if (self->roles & ZIM_ROLE_ROUTER)
        s_join (self, m->address);
    for (char *tok = strtok (routers, ", "); tok; tok = strtok (NULL, ", "))
        if (s_join (self, tok)) {
            free (routers);
            return -1;
        }
    free (routers);
    if (self->njoined == 0) {
        zsys_error ("%s: no router to join: give --router ENDPOINT (or cluster/routers)",
                    self->program);
        return -1;
    }
    if (self->roles & (ZIM_ROLE_BROKER | ZIM_ROLE_GATEWAY))
        for (size_t i = 0; i < self->njoined; i++)
            if (s_command (m->actor, "CONNECT", "router", self->joined[i].endpoint))
                return -1;
    if (self->roles & ZIM_ROLE_GATEWAY) {
        if (s_gateway_start (self, m))
            return -1;
    }
    else if (s_command (m->actor, "START", NULL, NULL))
        return -1;
    s_heartbeat (self);
    zsys_info ("%s ready: name=%s %s=%s admin=%s routers=%zu data=%s%s", self->program, name,
               self->roles & ZIM_ROLE_GATEWAY ? "ws" : "bind", m->address,
               self->admin ? zsock_endpoint (self->admin) : "none", self->njoined, self->data,
               self->dev_defaults && (self->roles & ZIM_ROLE_GATEWAY) ? " app=demo (dev defaults)"
                                                                      : "");
    return 0;
}

//  Connects the membership DEALER to one more router. Returns 0 or -1.
static int s_join (zim_node_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->njoined; i++)
        if (streq (self->joined[i].endpoint, endpoint))
            return 0;
    if (self->njoined == ZIM_MAX_ROUTERS) {
        zsys_error ("%s: at most %d routers", self->program, ZIM_MAX_ROUTERS);
        return -1;
    }
    s_joined_t *j = &self->joined[self->njoined];
    j->sock = zsock_new (ZMQ_DEALER);
    char identity[ZIM_ID_MAX + 3];
    snprintf (identity, sizeof identity, "m:%s", self->members[0].name);
    zsock_set_identity (j->sock, identity);
    zsock_set_linger (j->sock, 0);
    zsock_set_sndhwm (j->sock, 10);
    if (zsock_connect (j->sock, "%s", endpoint)) {
        zsys_error ("%s: bad router endpoint '%s'", self->program, endpoint);
        zsock_destroy (&j->sock);
        return -1;
    }
    j->endpoint = zim_strdup (endpoint);
    self->njoined++;
    return 0;
}

//  Sends HELLO with this node's counters to every router.
static void s_heartbeat (zim_node_t *self)
{
    s_member_t *m = &self->members[0];
    zstr_sendx (m->actor, "STATS", NULL);
    char *stats = zstr_recv (m->actor);
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_hello_t hello = {zim_str (m->name), zim_str (m->role), zim_str (m->address),
                         self->instance,
                         zim_str (self->admin ? zsock_endpoint (self->admin) : ""),
                         zim_str (stats ? stats : "{}")};
    zim_hello_encode (&wr, &hello);
    for (size_t i = 0; i < self->njoined; i++)
        zmq_send (zsock_resolve (self->joined[i].sock), wr.data, wr.size, ZMQ_DONTWAIT);
    zim_wr_free (&wr);
    free (stats);
    self->next_beat_ms = zclock_mono () + 1000;
}

//  A MAP from router j: keep it for status and pass it to the actor.
static void s_handle_map (zim_node_t *self, s_joined_t *j)
{
    zframe_t *frame = zframe_recv (j->sock);
    if (!frame)
        return;
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int kind;
    uint32_t fields;
    zim_map_t map;
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_decode (&rd, fields, &map)) {
        zsys_warning ("%s: dropped an undecodable message from router %s", self->program,
                      j->endpoint);
        zframe_destroy (&frame);
        return;
    }
    if (!j->map)
        zsys_info ("%s: joined the cluster through %s (%u members)", self->program,
                   j->endpoint, map.nmembers);
    j->map_ms = zclock_mono ();
    if (self->roles & (ZIM_ROLE_GATEWAY | ZIM_ROLE_BROKER)) {
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "MAP");
        zmsg_addmem (msg, zframe_data (frame), zframe_size (frame));
        zmsg_send (&msg, self->members[0].actor);
    }
    zframe_destroy (&j->map);
    j->map = frame;
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

//  One line of status: a node and its counters.
typedef struct {
    char *name, *role, *address, *stats; //  stats: JSON object, or NULL
    bool alive;
} s_row_t;

//  Collects the status rows: the whole cluster from the newest map when
//  this is a cluster node that has one, else this process's actors.
//  Returns the count; caller frees with s_rows_free.
static size_t s_rows (zim_node_t *self, s_row_t **rows_p)
{
    s_joined_t *newest = NULL;
    for (size_t i = 0; i < self->njoined; i++)
        if (self->joined[i].map && (!newest || self->joined[i].map_ms > newest->map_ms))
            newest = &self->joined[i];
    zim_map_t map;
    if (newest) {
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (newest->map), zframe_size (newest->map));
        int kind;
        uint32_t fields;
        if (zim_msg_kind (&rd, &kind, &fields) || zim_map_decode (&rd, fields, &map))
            newest = NULL;
    }
    size_t n = newest ? map.nmembers : self->nmembers;
    s_row_t *rows = (s_row_t *) zim_calloc (n + 1, sizeof (s_row_t));
    for (size_t i = 0; i < n; i++) {
        s_row_t *r = &rows[i];
        if (newest) {
            zim_member_t m;
            if (zim_member_next (&map.members, &m)) {
                n = i;
                break;
            }
            r->name = zim_str_dup (m.name);
            r->role = zim_str_dup (m.role);
            r->address = zim_str_dup (m.endpoint);
            r->alive = m.alive;
            r->stats = m.alive ? zim_str_dup (m.stats) : NULL;
        }
        else {
            s_member_t *m = &self->members[i];
            zstr_sendx (m->actor, "STATS", NULL);
            r->stats = zstr_recv (m->actor);
            r->name = zim_strdup (m->name);
            r->role = zim_strdup (m->role);
            r->address = zim_strdup (m->address);
            r->alive = r->stats != NULL;
        }
    }
    *rows_p = rows;
    return n;
}

static void s_rows_free (s_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free (rows[i].name);
        free (rows[i].role);
        free (rows[i].address);
        free (rows[i].stats);
    }
    free (rows);
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
    s_row_t *rows;
    size_t n = s_rows (self, &rows);
    for (size_t i = 0; i < n; i++) {
        snprintf (line, sizeof line, "%-12s %-8s %-6s %s\n", rows[i].name, rows[i].role,
                  rows[i].alive ? "yes" : "no", rows[i].address);
        zchunk_extend (buf, line, strlen (line));
        if (rows[i].stats)
            s_stats_text (buf, rows[i].stats);
    }
    s_rows_free (rows, n);
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
    s_row_t *rows;
    size_t n = s_rows (self, &rows);
    for (size_t i = 0; i < n; i++) {
        zchunk_extend (buf, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
        s_json_str (buf, rows[i].name);
        zchunk_extend (buf, ",\"role\":", 8);
        s_json_str (buf, rows[i].role);
        zchunk_extend (buf, ",\"address\":", 11);
        s_json_str (buf, rows[i].address);
        const char *alive =
            rows[i].stats ? ",\"alive\":true,\"stats\":" : ",\"alive\":false,\"stats\":{}";
        zchunk_extend (buf, alive, strlen (alive));
        if (rows[i].stats)
            zchunk_extend (buf, rows[i].stats, strlen (rows[i].stats));
        zchunk_extend (buf, "}", 1);
    }
    s_rows_free (rows, n);
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
    zpoller_t *poller = zpoller_new (NULL);
    if (self->admin)
        zpoller_add (poller, self->admin);
    for (size_t i = 0; i < self->njoined; i++)
        zpoller_add (poller, self->joined[i].sock);
    while (!zsys_interrupted) {
        int64_t wait = 1000;
        if (self->njoined) {
            wait = self->next_beat_ms - zclock_mono ();
            if (wait <= 0) {
                s_heartbeat (self);
                wait = 1000;
            }
        }
        void *which = zpoller_wait (poller, (int) wait);
        if (which && which == self->admin)
            s_admin_handle (self);
        else if (which) {
            for (size_t i = 0; i < self->njoined; i++)
                if (which == self->joined[i].sock)
                    s_handle_map (self, &self->joined[i]);
        }
        else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
    zsys_info ("%s: shutting down", self->program);
    return 0;
}

int zim_node_main (const char *program, int roles, int argc, char **argv)
{
    zsys_init ();
    zim_node_t *node = zim_node_new (program, roles);
    int rc = zim_node_configure (node, argc, argv);
    if (rc != 0) {
        zim_node_destroy (&node);
        return rc > 0 ? 0 : 2;
    }
    if (zim_node_start (node)) {
        zim_node_destroy (&node);
        return 1;
    }
    zim_node_run (node);
    zim_node_destroy (&node);
    return 0;
}
