/*  zim_nodeconf.c: options and config of a node program (zim_nodeconf.h).
 */
#include "config.h"
#include "tools/zim_nodeconf.h"
#include "msg/zim_admin.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <getopt.h>
#include <unistd.h>

struct _zim_nodeconf_t {
    char *program;         //  name in logs and --help
    int roles;             //  ZIM_ROLE_* bits
    bool cluster;          //  one role over tcp:// (not zim-server)
    char default_name[32]; //  ROLE-1
    zconfig_t *conf;       //  config tree: file, then command line on top
};

zim_nodeconf_t *zim_nodeconf_new (const char *program, int roles)
{
    zim_nodeconf_t *self = zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->roles = roles;
    self->cluster = roles != ZIM_ROLE_ALL;
    self->conf = zconfig_new ("root", NULL);
    snprintf (self->default_name, sizeof self->default_name, "%s-1",
              roles == ZIM_ROLE_GATEWAY  ? "gw"
              : roles == ZIM_ROLE_BROKER ? "broker"
              : roles == ZIM_ROLE_ROUTER ? "router"
                                         : "store");
    return self;
}

void zim_nodeconf_destroy (zim_nodeconf_t **self_p)
{
    zim_nodeconf_t *self = *self_p;
    if (!self)
        return;
    zconfig_destroy (&self->conf);
    free (self->program);
    free (self);
    *self_p = NULL;
}

const char *zim_nodeconf_get (zim_nodeconf_t *self, const char *path, const char *def)
{
    return zconfig_get (self->conf, path, def);
}

zconfig_t *zim_nodeconf_tree (zim_nodeconf_t *self)
{
    return self->conf;
}

void zim_nodeconf_apply (zim_nodeconf_t *self, zactor_t *actor, const char *section)
{
    zconfig_t *sec = zconfig_locate (self->conf, section);
    for (zconfig_t *kv = sec ? zconfig_child (sec) : NULL; kv; kv = zconfig_next (kv))
        zstr_sendx (actor, "SET", zconfig_name (kv), zconfig_value (kv), NULL);
}

const char *zim_nodeconf_program (zim_nodeconf_t *self)
{
    return self->program;
}

int zim_nodeconf_roles (zim_nodeconf_t *self)
{
    return self->roles;
}

bool zim_nodeconf_cluster (zim_nodeconf_t *self)
{
    return self->cluster;
}

const char *zim_nodeconf_default_name (zim_nodeconf_t *self)
{
    return self->default_name;
}

//  Reads a boolean word as the actors' settings do: 1, 0, or -1 if none.
static int s_bool (const char *value)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (streq (value, yes[i]))
            return 1;
        if (streq (value, no[i]))
            return 0;
    }
    return -1;
}

//  The client transports' options (WSS, raw TCP), in both programs' help.
static const char *s_edge_usage =
    "      --tls-cert FILE    PEM certificate (chain): TLS for WebSocket clients\n"
    "      --tls-key FILE     its PEM private key (both: gateway/tls_cert, tls_key)\n"
    "      --tls-port N       WSS on port N beside plain ws on --port (gateway/\n"
    "                         tls_port; without it the client port itself is WSS)\n"
    "      --tcp N            raw TCP clients on port N: msgpack frames, each after\n"
    "                         its length (4 bytes, big endian); gateway/tcp_port,\n"
    "                         default off; 0 picks a free port\n";

void zim_nodeconf_usage (zim_nodeconf_t *self, FILE *out)
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
                 "%s"
                 "      --metrics ADDR:PORT  Prometheus metrics of every actor at\n"
                 "                         http://ADDR:PORT/metrics (default: none; port 0\n"
                 "                         picks a free one, printed in the ready line)\n"
                 "      --api ADDR:PORT    the backend push API (HTTP+JSON, docs/API.md;\n"
                 "                         default 127.0.0.1:7701, none: off)\n"
                 "      --workers N        N gateway processes on the client port\n"
                 "                         (SO_REUSEPORT), members gw-1.w0.., over ipc:// in a\n"
                 "                         private 0700 dir; store, router, brokers, admin,\n"
                 "                         API stay in this process; 1..64 or auto (default 1)\n"
                 "  -h, --help             this text\n"
                 "      --version          print the version\n"
                 "\n"
                 "With no apps in the config, the server serves app \"demo\" with a secret\n"
                 "generated on first start and kept in DIR/app-demo.secret. The admin key\n"
                 "is server/admin_key in the config or DIR/admin.key (generated).\n"
                 "With those defaults and --interface 127.0.0.1, GET /dev/token?uid=NAME\n"
                 "hands out demo tokens (for the demo page; never on other interfaces).\n"
                 "CURVE on the admin endpoint: config section curve (docs/OPERATIONS.md).\n"
                 "\n"
                 "Examples:\n"
                 "  %s                          # serve on :7700 with ./zim-data\n"
                 "  %s -p 0 -d /tmp/zim -a tcp://127.0.0.1:*\n"
                 "  zimctl token --app demo --uid alice   # mint a client token\n",
                 self->program, ZIM_ADMIN_ENDPOINT, ZIM_MAX_BROKERS, s_edge_usage, self->program,
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
             "%s%s"
             "  -a, --admin ENDPOINT   admin endpoint for zimctl (default: none); status\n"
             "                         there shows the whole cluster\n"
             "  -d, --data DIR         data directory: secrets, admin.key%s\n"
             "                         (default ./zim-data)\n"
             "      --curve            CURVE on every ZeroMQ endpoint (curve/enabled), with\n"
             "                         the keys of DIR/curve (zimctl keygen DIR/curve)\n"
             "      --metrics ADDR:PORT  Prometheus metrics at http://ADDR:PORT/metrics\n"
             "                         (server/metrics; default: none)\n"
             "  -h, --help             this text\n"
             "      --version          print the version\n",
             self->program, what, self->default_name,
             self->roles == ZIM_ROLE_GATEWAY
                 ? "  -p, --port N           client port, WebSocket at /ws (default 7700)\n"
                   "      --interface ADDR   address to listen on for clients (default: all)\n"
                   "      --www DIR          serve the files of DIR over HTTP at /\n"
                   "      --workers N        N processes on the one port (SO_REUSEPORT), each a\n"
                   "                         member NAME.wK; 1..64 or auto, one per core (default 1)\n"
             : self->roles == ZIM_ROLE_BROKER
                 ? "      --bind ENDPOINT    where gateways connect (cluster/bind)\n"
                   "      --node-id N        0..1023, unique per broker: part of message ids\n"
             : self->roles == ZIM_ROLE_STORE
                 ? "      --bind ENDPOINT    where brokers connect (cluster/bind)\n"
                   "      --sync MODE        fsync policy: always | batch | none (default batch)\n"
                 : "      --bind ENDPOINT    where every node connects (cluster/bind)\n",
             self->roles == ZIM_ROLE_GATEWAY ? s_edge_usage : "",
             self->roles == ZIM_ROLE_STORE ? ", the LMDB files in DIR/NAME" : "");
}

int zim_nodeconf_load (zim_nodeconf_t *self, const char *text, size_t len)
{
    zchunk_t *chunk = zchunk_new (text, len);
    zconfig_t *loaded = zconfig_chunk_load (chunk);
    zchunk_destroy (&chunk);
    if (!loaded)
        return -1;
    zconfig_destroy (&self->conf);
    self->conf = loaded;
    return 0;
}

int zim_nodeconf_parse (zim_nodeconf_t *self, int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},    {"port", required_argument, NULL, 'p'},
        {"interface", required_argument, NULL, 'I'}, {"admin", required_argument, NULL, 'a'},
        {"data", required_argument, NULL, 'd'},      {"sync", required_argument, NULL, 'S'},
        {"brokers", required_argument, NULL, 'B'},   {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},         {"www", required_argument, NULL, 'W'},
        {"name", required_argument, NULL, 'n'},      {"bind", required_argument, NULL, 'b'},
        {"router", required_argument, NULL, 'r'},    {"node-id", required_argument, NULL, 'i'},
        {"curve", no_argument, NULL, 'C'},           {"metrics", required_argument, NULL, 'M'},
        {"api", required_argument, NULL, 'P'},
        {"tls-cert", required_argument, NULL, 1001}, {"tls-key", required_argument, NULL, 1002},
        {"tls-port", required_argument, NULL, 1003}, {"tcp", required_argument, NULL, 1004},
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
        case 'C':
            zconfig_put (cli, "curve/enabled", "1");
            break;
        case 'M':
            zconfig_put (cli, "server/metrics", optarg);
            break;
        case 'P':
            zconfig_put (cli, "server/api", optarg);
            break;
        case 1001:
            zconfig_put (cli, "gateway/tls_cert", optarg);
            break;
        case 1002:
            zconfig_put (cli, "gateway/tls_key", optarg);
            break;
        case 1003:
            zconfig_put (cli, "gateway/tls_port", optarg);
            break;
        case 1004:
            zconfig_put (cli, "gateway/tcp_port", optarg);
            break;
        case 'h':
            zim_nodeconf_usage (self, stdout);
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
        //  Read here, parsed from memory: czmq's zconfig_load leaks its
        //  file handle when the text is not ZPL (found by
        //  tests/fuzz/fuzz_config.c).
        zchunk_t *chunk = zchunk_slurp (config_file, 0);
        int rc = chunk ? zim_nodeconf_load (self, (const char *)zchunk_data (chunk),
                                            zchunk_size (chunk))
                       : -1;
        zchunk_destroy (&chunk);
        if (rc) {
            fprintf (stderr, "%s: cannot load config file '%s' (missing or not ZPL)\n",
                     self->program, config_file);
            zconfig_destroy (&cli);
            return -1;
        }
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
        fprintf (stderr, "%s: store sync must be always, batch or none, not '%s'\n", self->program,
                 sync);
        return -1;
    }
    uint64_t n;
    const char *port = zconfig_get (self->conf, "server/port", "7700");
    if (zim_parse_u64 (port, &n) || n > 65535) {
        fprintf (stderr, "%s: bad port '%s'\n", self->program, port);
        return -1;
    }
    //  Dev tokens come only from the dev defaults, set by the shell itself
    //  for a loopback interface: a config file that asks for them would
    //  hand out tokens signed with a real app's secret.
    if (zconfig_locate (self->conf, "gateway/dev_tokens")) {
        fprintf (stderr,
                 "%s: gateway/dev_tokens is not a config key: /dev/token is served only with "
                 "the dev defaults (no apps section) on a loopback --interface. Remove it from "
                 "the config file.\n",
                 self->program);
        return -1;
    }
    //  The client transports: ports in range, a certificate with its key.
    const char *ports[] = {"gateway/tcp_port", "gateway/tls_port"};
    for (size_t i = 0; i < 2; i++) {
        const char *value = zconfig_get (self->conf, ports[i], NULL);
        if (value && !streq (value, "off") && (zim_parse_u64 (value, &n) || n > 65535)) {
            fprintf (stderr, "%s: %s must be a port 0..65535 or off, not '%s'\n", self->program,
                     ports[i], value);
            return -1;
        }
    }
    const char *cert = zconfig_get (self->conf, "gateway/tls_cert", NULL);
    const char *key = zconfig_get (self->conf, "gateway/tls_key", NULL);
    if (!cert != !key) {
        fprintf (stderr, "%s: --tls-cert and --tls-key (gateway/tls_cert, tls_key) go together\n",
                 self->program);
        return -1;
    }
    for (const char *file = cert; file; file = file == cert ? key : NULL)
        if (access (file, R_OK)) {
            fprintf (stderr, "%s: cannot read TLS file '%s'\n", self->program, file);
            return -1;
        }
    if (zconfig_get (self->conf, "gateway/tls_port", NULL) && !cert) {
        fprintf (stderr, "%s: --tls-port (gateway/tls_port) needs --tls-cert and --tls-key\n",
                 self->program);
        return -1;
    }
    const char *curve = zconfig_get (self->conf, "curve/enabled", "0");
    int curve_on = s_bool (curve);
    if (curve_on < 0) {
        fprintf (stderr, "%s: curve/enabled must be 1/0, true/false, yes/no or on/off, not '%s'\n",
                 self->program, curve);
        return -1;
    }
    //  Read as "1" or "0" from here on (zim_datadir).
    zconfig_put (self->conf, "curve/enabled", curve_on ? "1" : "0");
    const char *brokers = zconfig_get (self->conf, "server/brokers", "1");
    if (zim_parse_u64 (brokers, &n) || n < 1 || n > ZIM_MAX_BROKERS) {
        fprintf (stderr, "%s: brokers must be 1..%d, not '%s'\n", self->program, ZIM_MAX_BROKERS,
                 brokers);
        return -1;
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Parses a command line given as a NULL-terminated list.
static int s_test_parse (zim_nodeconf_t *self, const char *const *args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    return zim_nodeconf_parse (self, argc, (char **)args);
}

void zim_nodeconf_test (bool verbose)
{
    char path[] = "/tmp/zim-nodeconf-test-XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    const char *file = "server\n    port = 7000\n    name = gw-7\n"
                       "gateway\n    max_frame = 1024\n";
    assert (write (fd, file, strlen (file)) == (ssize_t)strlen (file));
    close (fd);

    //  The command line wins over the file; the file fills the rest.
    zim_nodeconf_t *conf = zim_nodeconf_new ("zim-gateway", ZIM_ROLE_GATEWAY);
    assert (zim_nodeconf_cluster (conf));
    assert (streq (zim_nodeconf_default_name (conf), "gw-1"));
    const char *args[] = {"zim-gateway", "-c",       path,        "-p",      "7001", "-r",
                          "tcp://a:1",   "--router", "tcp://b:2", "--curve", NULL};
    assert (s_test_parse (conf, args) == 0);
    assert (streq (zim_nodeconf_get (conf, "server/port", ""), "7001"));
    assert (streq (zim_nodeconf_get (conf, "server/name", ""), "gw-7"));
    assert (streq (zim_nodeconf_get (conf, "gateway/max_frame", ""), "1024"));
    assert (streq (zim_nodeconf_get (conf, "cluster/routers", ""), "tcp://a:1,tcp://b:2"));
    assert (streq (zim_nodeconf_get (conf, "curve/enabled", ""), "1"));
    zim_nodeconf_destroy (&conf);
    const char *yes[] = {"zim-server", "--config", path, NULL};
    FILE *yes_file = fopen (path, "w");
    assert (yes_file && fputs ("curve\n    enabled = yes\n", yes_file) >= 0);
    assert (fclose (yes_file) == 0);
    conf = zim_nodeconf_new ("zim-server", ZIM_ROLE_ALL);
    assert (s_test_parse (conf, yes) == 0);
    assert (streq (zim_nodeconf_get (conf, "curve/enabled", ""), "1"));
    zim_nodeconf_destroy (&conf);

    //  What cannot run is refused before start.
    conf = zim_nodeconf_new ("zim-server", ZIM_ROLE_ALL);
    const char *tcp[] = {"zim-server", "--tcp", "0", "--tls-cert", path, "--tls-key", path,
                         "--tls-port", "7443", NULL};
    assert (s_test_parse (conf, tcp) == 0);
    assert (streq (zim_nodeconf_get (conf, "gateway/tcp_port", ""), "0"));
    assert (streq (zim_nodeconf_get (conf, "gateway/tls_cert", ""), path));
    assert (streq (zim_nodeconf_get (conf, "gateway/tls_key", ""), path));
    assert (streq (zim_nodeconf_get (conf, "gateway/tls_port", ""), "7443"));
    zim_nodeconf_destroy (&conf);
    const char *const bad[][6] = {{"zim-server", "--sync", "sometimes", NULL},
                                  {"zim-server", "--tcp", "70000", NULL},
                                  {"zim-server", "--tls-cert", "/nonexistent/cert.pem", NULL},
                                  {"zim-server", "--tls-port", "7443", NULL},
                                  {"zim-server", "--tls-cert", "/nonexistent/c.pem", "--tls-key",
                                   "/nonexistent/k.pem", NULL},
                                  {"zim-server", "-p", "70000", NULL},
                                  {"zim-server", "--brokers", "17", NULL},
                                  {"zim-server", "stray", NULL},
                                  {"zim-server", "-c", "/nonexistent/zim.cfg", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        conf = zim_nodeconf_new ("zim-server", ZIM_ROLE_ALL);
        assert (s_test_parse (conf, bad[i]) == -1);
        zim_nodeconf_destroy (&conf);
    }
    //  gateway/dev_tokens in a config file is refused with a clear error,
    //  and so is a curve/enabled that is not a boolean.
    const char *files[] = {"gateway\n    dev_tokens = 1\n", "curve\n    enabled = maybe\n"};
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen (path, "w");
        assert (f && fputs (files[i], f) >= 0 && fclose (f) == 0);
        conf = zim_nodeconf_new ("zim-server", ZIM_ROLE_ALL);
        const char *with_file[] = {"zim-server", "-c", path, NULL};
        assert (s_test_parse (conf, with_file) == -1);
        zim_nodeconf_destroy (&conf);
    }
    unlink (path);
    zim_nodeconf_destroy (&conf);
    if (verbose)
        zsys_info ("nodeconf: command line over file, bad configs refused");
}
