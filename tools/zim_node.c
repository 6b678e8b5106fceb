/*  zim_node.c: the server process (zim_node.h): the order of start-up and
    shutdown, the actors of its roles, and the loop that serves the admin
    endpoint and the cluster membership.
*/
#include "config.h"
#include "tools/zim_node.h"
#include "broker/zim_broker.h"
#include "gateway/zim_gateway.h"
#include "msg/zim_admin.h"
#include "msg/zim_metrics.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "msg/zim_zap.h"
#include "router/zim_router.h"
#include "store/zim_store.h"
#include "tools/zim_adminsrv.h"
#include "tools/zim_apisrv.h"
#include "tools/zim_datadir.h"
#include "tools/zim_membership.h"
#include "tools/zim_metricsrv.h"
#include "tools/zim_storeadmin.h"
#include "tools/zim_workers.h"

#include <assert.h>
#include <czmq.h>
#include <openssl/crypto.h>
#include <inttypes.h>
#include <unistd.h>

static int s_api_open (zim_node_t *self, bool cluster);
static const char *s_api_ready (zim_node_t *self, char *buf, size_t size);

//  One running actor and how status describes it.
typedef struct {
    zactor_t *actor; //  the actor
    char *name;      //  node name
    char *role;      //  gateway, broker, router, store
    char *address;   //  where it listens
} s_member_t;

struct _zim_node_t {
    zim_nodeconf_t *conf;                    //  options and config
    zim_datadir_t *datadir;                  //  data dir, secrets, keys
    zim_zap_t *zap;                          //  ZAP handler, with CURVE
    zim_adminsrv_t *admin;                   //  admin endpoint, or NULL
    zim_metricsrv_t *metrics;                //  metrics endpoint, or NULL
    zim_apisrv_t *api;                       //  the backend push API, or NULL
    zim_membership_t *membership;            //  cluster nodes: routers joined
    zim_storeadmin_t *storeadmin;            //  the store's admin verbs, or NULL
    s_member_t members[4 + ZIM_MAX_BROKERS]; //  running actors, start order
    size_t nmembers;                         //  how many
    int64_t next_beat_ms;                    //  next HELLO (monotonic)
};

zim_node_t *zim_node_new (const char *program, int roles)
{
    zim_node_t *self = zim_calloc (1, sizeof *self);
    self->conf = zim_nodeconf_new (program, roles);
    return self;
}

void zim_node_destroy (zim_node_t **self_p)
{
    zim_node_t *self = *self_p;
    if (!self)
        return;
    zim_storeadmin_destroy (&self->storeadmin);
    //  Stop the edge first so no new work comes in, the store last so that
    //  everything accepted is committed.
    for (size_t i = self->nmembers; i-- > 0;) {
        zactor_destroy (&self->members[i].actor);
        free (self->members[i].name);
        free (self->members[i].role);
        free (self->members[i].address);
    }
    zim_membership_destroy (&self->membership);
    zim_metricsrv_destroy (&self->metrics);
    zim_apisrv_destroy (&self->api);
    zim_adminsrv_destroy (&self->admin);
    zim_zap_destroy (&self->zap);
    zim_datadir_destroy (&self->datadir);
    zim_nodeconf_destroy (&self->conf);
    free (self);
    *self_p = NULL;
}

int zim_node_configure (zim_node_t *self, int argc, char **argv)
{
    return zim_nodeconf_parse (self->conf, argc, argv);
}

//  The program name, for log lines.
static const char *s_program (zim_node_t *self)
{
    return zim_nodeconf_program (self->conf);
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

//  Starts an actor and names it; in a cluster with CURVE, gives it the
//  cluster key pair for its backbone sockets.
static s_member_t *s_member_add (zim_node_t *self, zactor_fn *fn, const char *name,
                                 const char *role)
{
    s_member_t *m = &self->members[self->nmembers++];
    m->actor = zactor_new (fn, NULL);
    m->name = zim_strdup (name);
    m->role = zim_strdup (role);
    m->address = zim_strdup ("");
    zstr_sendx (m->actor, "SET", "name", name, NULL);
    const zim_curve_t *curve = zim_datadir_curve (self->datadir);
    if (curve && zim_nodeconf_cluster (self->conf)) {
        zstr_sendx (m->actor, "SET", "curve_public_key", zim_curve_public (curve), NULL);
        zstr_sendx (m->actor, "SET", "curve_secret_key", zim_curve_secret (curve), NULL);
    }
    return m;
}

//  The STATS of an actor as a JSON object ({} if it did not answer with
//  one). Caller owns return value.
static json_t *s_actor_stats (zactor_t *actor)
{
    zstr_sendx (actor, "STATS", NULL);
    char *text = zstr_recv (actor);
    json_t *stats = text ? json_loads (text, 0, NULL) : NULL;
    zstr_free (&text);
    if (!json_is_object (stats)) {
        json_decref (stats);
        stats = json_object ();
    }
    return stats;
}

//  The node's name in metrics: the cluster node's, or the program's.
static const char *s_metrics_name (zim_node_t *self)
{
    return zim_nodeconf_cluster (self->conf)
               ? zim_nodeconf_get (self->conf, "server/name",
                                   zim_nodeconf_default_name (self->conf))
               : s_program (self);
}

//  The metrics endpoint's text: every actor's METRICS, merged by family,
//  then the process shell's own counters. Caller owns return value.
static char *s_metrics_text (void *arg)
{
    zim_node_t *self = (zim_node_t *)arg;
    zim_metrics_t *m = zim_metrics_new ();
    for (size_t i = 0; i < self->nmembers; i++) {
        zstr_sendx (self->members[i].actor, "METRICS", NULL);
        zmsg_t *families = zmsg_recv (self->members[i].actor);
        for (zframe_t *f = families ? zmsg_first (families) : NULL; f; f = zmsg_next (families))
            if (zframe_size (f))
                zim_metrics_merge (m, (const char *)zframe_data (f), zframe_size (f));
        zmsg_destroy (&families);
    }
    char label[128];
    zim_metrics_label (label, sizeof label, "node", s_metrics_name (self));
    if (self->admin)
        zim_metrics_counter (m, "zim_node_admin_bad_keys",
                             "admin requests refused for a bad admin key", label,
                             zim_adminsrv_bad_keys (self->admin));
    if (self->zap)
        zim_metrics_counter (m, "zim_node_curve_refused", "CURVE handshakes refused", label,
                             zim_zap_refused (self->zap));
    zim_metrics_counter (m, "zim_node_metrics_scrapes", "GET /metrics answered", label,
                         zim_metricsrv_scrapes (self->metrics));
    zim_metrics_counter (m, "zim_node_metrics_refused",
                         "requests on the metrics port refused (bad path, method or request)",
                         label, zim_metricsrv_refused (self->metrics));
    char *text = zim_metrics_text (m);
    zim_metrics_destroy (&m);
    return text;
}

//  The ready line's metrics part: " metrics=URL", or "".
static const char *s_metrics_ready (zim_node_t *self, char *buf, size_t size)
{
    buf[0] = 0;
    if (self->metrics)
        snprintf (buf, size, " metrics=%s", zim_metricsrv_url (self->metrics));
    return buf;
}

//  Status nodes: the whole cluster from the newest map when this cluster
//  node has one, else this process's actors.
static json_t *s_nodes (void *arg)
{
    zim_node_t *self = (zim_node_t *)arg;
    json_t *nodes = self->membership ? zim_membership_nodes (self->membership) : NULL;
    if (nodes)
        return nodes;
    nodes = json_array ();
    for (size_t i = 0; i < self->nmembers; i++) {
        s_member_t *m = &self->members[i];
        json_array_append_new (nodes, json_pack ("{s:s, s:s, s:s, s:b, s:o}", "name", m->name,
                                                 "role", m->role, "address", m->address, "alive", 1,
                                                 "stats", s_actor_stats (m->actor)));
    }
    return nodes;
}

//  Adds the gateway actor with its settings and apps (not yet started).
static s_member_t *s_gateway_add (zim_node_t *self, const char *name)
{
    s_member_t *m = s_member_add (self, zim_gateway_actor, name, "gateway");
    zim_nodeconf_apply (self->conf, m->actor, "gateway");
    zstr_sendx (m->actor, "SET", "port", zim_nodeconf_get (self->conf, "server/port", "7700"),
                NULL);
    const char *iface = zim_nodeconf_get (self->conf, "server/interface", NULL);
    if (iface && *iface && !streq (iface, "*"))
        zstr_sendx (m->actor, "SET", "interface", iface, NULL);
    //  Dev tokens (GET /dev/token?uid=) only with the demo defaults and
    //  only for clients on this machine; never from a config file
    //  (zim_nodeconf refuses gateway/dev_tokens).
    if (zim_datadir_dev_defaults (self->datadir) && iface &&
        (strncmp (iface, "127.", 4) == 0 || streq (iface, "localhost")))
        zstr_sendx (m->actor, "SET", "dev_tokens", "1", NULL);
    zim_datadir_apply_apps (self->datadir, m->actor);
    if (zim_workers_sharing ()) //  one of several processes on this port
        zstr_sendx (m->actor, "SET", "reuse_port", "1", NULL);
    return m;
}

//  Starts the gateway and records its WebSocket URL. Returns 0 or -1.
static int s_gateway_start (zim_node_t *self, s_member_t *m)
{
    const char *port = zim_nodeconf_get (self->conf, "server/port", "7700");
    if (s_command (m->actor, "START", NULL, NULL)) {
        zsys_error ("%s: gateway could not start on port %s (in use? try --port)", s_program (self),
                    port);
        return -1;
    }
    const char *iface = zim_nodeconf_get (self->conf, "server/interface", NULL);
    zstr_sendx (m->actor, "PORT", NULL);
    char *real = zstr_recv (m->actor);
    char ws[128];
    //  With a certificate and no tls_port, the client port itself is WSS.
    const char *tls_port = zim_nodeconf_get (self->conf, "gateway/tls_port", "off");
    bool wss = zim_nodeconf_get (self->conf, "gateway/tls_cert", NULL) &&
               (streq (tls_port, "off") || streq (tls_port, "-1") || !*tls_port);
    snprintf (ws, sizeof ws, "%s://%s:%s/ws", wss ? "wss" : "ws",
              iface && *iface && !streq (iface, "*") ? iface : "0.0.0.0", real ? real : "?");
    s_member_address (m, ws);
    free (real);
    return 0;
}

//  The admin endpoint status and the ready line show.
static const char *s_admin_endpoint (zim_node_t *self)
{
    return self->admin ? zim_adminsrv_endpoint (self->admin) : "none";
}

//  The admin verbs beyond status and token: the push API's (push, online,
//  rooms), then the store's (pushq, mute).
static char *s_node_verbs (void *arg, const zim_admin_req_t *req, int *code, char *text,
                           size_t size)
{
    zim_node_t *self = (zim_node_t *)arg;
    *code = ZIM_ERR_UNKNOWN_OP;
    snprintf (text, size, "unknown verb");
    char *answer = NULL;
    if (self->api) {
        answer = zim_apisrv_admin (self->api, req, code, text, size);
        if (answer || *code != ZIM_ERR_UNKNOWN_OP)
            return answer;
    }
    if (self->storeadmin)
        answer = zim_storeadmin_verb (self->storeadmin, req, code, text, size);
    return answer;
}

//  Serves the store's admin verbs (pushq, mute) on the admin endpoint,
//  through a DEALER to the store at endpoint. Returns 0 or -1.
static int s_store_verbs (zim_node_t *self, const char *endpoint, const zim_curve_t *curve)
{
    if (!self->admin)
        return 0;
    self->storeadmin = zim_storeadmin_new (endpoint, curve);
    if (!self->storeadmin)
        return -1;
    if (self->api)
        zim_apisrv_use_store (self->api, zim_storeadmin_verb, self->storeadmin);
    zim_adminsrv_set_verbs (self->admin, s_node_verbs, self);
    return 0;
}

//  The ready line of zim-server's supervisor (--workers): its workers
//  serve the client port and log their own ready lines.
static int s_supervisor_ready (zim_node_t *self, uint64_t nbrokers)
{
    const char *iface = zim_nodeconf_get (self->conf, "server/interface", NULL);
    char metrics[400], api[400], dir[200] = "";
    zim_workers_backbone ("", dir, sizeof dir);
    zsys_info (
        "%s ready: ws=ws://%s:%s/ws admin=%s data=%s sync=%s brokers=%" PRIu64 " backbone=%s%s%s%s",
        s_program (self), iface && *iface && !streq (iface, "*") ? iface : "0.0.0.0",
        zim_nodeconf_get (self->conf, "server/port", "7700"), s_admin_endpoint (self),
        zim_datadir_path (self->datadir), zim_nodeconf_get (self->conf, "store/sync", "batch"),
        nbrokers, dir, s_metrics_ready (self, metrics, sizeof metrics),
        s_api_ready (self, api, sizeof api), self->zap ? " curve=on" : "");
    return 0;
}

//  Starts every role in this process over inproc:// (zim-server).
static int s_start_embedded (zim_node_t *self)
{
    char path[4096];
    uint64_t nbrokers = 1;
    zim_parse_u64 (zim_nodeconf_get (self->conf, "server/brokers", "1"), &nbrokers);
    s_member_t *m = s_member_add (self, zim_store_actor, "store-1", "store");
    zim_nodeconf_apply (self->conf, m->actor, "store");
    snprintf (path, sizeof path, "%s/store", zim_datadir_path (self->datadir));
    zstr_sendx (m->actor, "SET", "data", path, NULL);
    s_member_address (m, path);
    if (s_command (m->actor, "BIND", "inproc://zim-store", NULL) ||
        s_command (m->actor, "START", NULL, NULL) ||
        s_store_verbs (self, "inproc://zim-store", NULL))
        return -1;
    //  With --workers the gateways are other processes: they reach the
    //  router and brokers on the backbone (ipc://, zim_workers.h) too.
    char ipc[200] = "";
    m = s_member_add (self, zim_router_actor, "router-1", "router");
    zim_nodeconf_apply (self->conf, m->actor, "router");
    if (s_command (m->actor, "BIND", "inproc://zim-router", NULL) ||
        (!zim_workers_backbone ("router", ipc, sizeof ipc) &&
         s_command (m->actor, "BIND", ipc, NULL)) ||
        s_command (m->actor, "START", NULL, NULL))
        return -1;
    for (uint64_t i = 1; i <= nbrokers; i++) {
        char name[32], endpoint[64], id[16];
        snprintf (name, sizeof name, "broker-%" PRIu64, i);
        snprintf (endpoint, sizeof endpoint, "inproc://zim-broker-%" PRIu64, i);
        snprintf (id, sizeof id, "%" PRIu64, i);
        m = s_member_add (self, zim_broker_actor, name, "broker");
        zim_nodeconf_apply (self->conf, m->actor, "broker");
        zstr_sendx (m->actor, "SET", "node_id", id, NULL);
        if (s_command (m->actor, "BIND", endpoint, NULL) ||
            (!zim_workers_backbone (name, ipc, sizeof ipc) &&
             s_command (m->actor, "BIND", ipc, NULL)) ||
            s_command (m->actor, "CONNECT", "store", "inproc://zim-store") ||
            s_command (m->actor, "CONNECT", "router", "inproc://zim-router") ||
            s_command (m->actor, "START", NULL, NULL))
            return -1;
    }
    if (*ipc)
        return s_supervisor_ready (self, nbrokers);
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
    char metrics[400], api[400];
    zsys_info ("%s ready: ws=%s admin=%s data=%s sync=%s brokers=%" PRIu64 "%s%s%s%s",
               s_program (self), m->address, s_admin_endpoint (self),
               zim_datadir_path (self->datadir),
               zim_nodeconf_get (self->conf, "store/sync", "batch"), nbrokers,
               s_metrics_ready (self, metrics, sizeof metrics), s_api_ready (self, api, sizeof api),
               self->zap ? " curve=on" : "",
               zim_datadir_dev_defaults (self->datadir) ? " app=demo (dev defaults)" : "");
    return 0;
}

//  What others connect to for a bind endpoint: a wildcard host becomes
//  loopback, and the port is the one bound.
static void s_announced (const char *bind, const char *port, char *endpoint, size_t size)
{
    const char *host = strstr (bind, "://");
    host = host ? host + 3 : bind;
    size_t hlen = strcspn (host, ":");
    if (strncmp (bind, "tcp://", 6) == 0 && port && atoi (port) > 0) {
        bool any = (hlen == 1 && *host == '*') || (hlen == 7 && !strncmp (host, "0.0.0.0", 7));
        snprintf (endpoint, size, "tcp://%.*s:%s", any ? 9 : (int)hlen, any ? "127.0.0.1" : host,
                  port);
    } else
        snprintf (endpoint, size, "%s", bind);
}

//  The counters of this node for its HELLO: its actor's, and the process
//  shell's own. Caller owns return value.
static json_t *s_hello_stats (zim_node_t *self)
{
    json_t *stats = s_actor_stats (self->members[0].actor);
    if (self->admin)
        json_object_set_new (stats, "admin_bad_keys",
                             json_integer ((json_int_t)zim_adminsrv_bad_keys (self->admin)));
    if (self->zap)
        json_object_set_new (stats, "curve_refused",
                             json_integer ((json_int_t)zim_zap_refused (self->zap)));
    return stats;
}

//  Sends HELLO with this node's counters to every router.
static void s_heartbeat (zim_node_t *self)
{
    json_t *stats = s_hello_stats (self);
    s_member_t *m = &self->members[0];
    self->next_beat_ms = zim_membership_beat (self->membership, m->address,
                                              self->admin ? s_admin_endpoint (self) : "", stats);
    json_decref (stats);
}

//  Adds the one actor of this cluster node, with its settings.
static s_member_t *s_cluster_actor (zim_node_t *self, const char *name)
{
    int roles = zim_nodeconf_roles (self->conf);
    s_member_t *m = NULL;
    if (roles & ZIM_ROLE_STORE) {
        char path[4096];
        m = s_member_add (self, zim_store_actor, name, "store");
        zim_nodeconf_apply (self->conf, m->actor, "store");
        snprintf (path, sizeof path, "%s/%s", zim_datadir_path (self->datadir), name);
        zstr_sendx (m->actor, "SET", "data", path, NULL);
    } else if (roles & ZIM_ROLE_ROUTER) {
        m = s_member_add (self, zim_router_actor, name, "router");
        zim_nodeconf_apply (self->conf, m->actor, "router");
    } else if (roles & ZIM_ROLE_BROKER) {
        m = s_member_add (self, zim_broker_actor, name, "broker");
        zim_nodeconf_apply (self->conf, m->actor, "broker");
        zstr_sendx (m->actor, "SET", "node_id",
                    zim_nodeconf_get (self->conf, "server/node_id", "1"), NULL);
    } else
        m = s_gateway_add (self, name);
    return m;
}

//  Starts this process's one role as a cluster node over tcp://.
static int s_start_cluster (zim_node_t *self)
{
    const char *program = s_program (self);
    int roles = zim_nodeconf_roles (self->conf);
    const char *name =
        zim_nodeconf_get (self->conf, "server/name", zim_nodeconf_default_name (self->conf));
    if (!zim_uid_valid (zim_str (name))) {
        zsys_error ("%s: bad node name '%s' (1-64 of A-Za-z0-9_.@-)", program, name);
        return -1;
    }
    const char *bind = zim_nodeconf_get (self->conf, "cluster/bind", "");
    if (!(roles & ZIM_ROLE_GATEWAY) && !*bind) {
        zsys_error ("%s: needs --bind ENDPOINT (or cluster/bind in the config)", program);
        return -1;
    }
    s_member_t *m = s_cluster_actor (self, name);
    if (*bind) {
        zstr_sendx (m->actor, "BIND", bind, NULL);
        if (zsock_wait (m->actor) != 0) {
            zsys_error ("%s: cannot bind %s (in use? another node there?)", program, bind);
            return -1;
        }
        zstr_sendx (m->actor, "PORT", NULL);
        char *port = zstr_recv (m->actor);
        char endpoint[300];
        s_announced (bind, port, endpoint, sizeof endpoint);
        s_member_address (m, endpoint);
        free (port);
    }
    //  The routers to join; a router joins itself too.
    self->membership = zim_membership_new (name, m->role, zim_datadir_curve (self->datadir));
    if (roles & ZIM_ROLE_ROUTER)
        zim_membership_join (self->membership, m->address);
    char *routers = zim_strdup (zim_nodeconf_get (self->conf, "cluster/routers", ""));
    for (char *tok = strtok (routers, ", "); tok; tok = strtok (NULL, ", "))
        if (zim_membership_join (self->membership, tok)) {
            free (routers);
            return -1;
        }
    free (routers);
    size_t njoined = zim_membership_size (self->membership);
    if (njoined == 0) {
        zsys_error ("%s: no router to join: give --router ENDPOINT (or cluster/routers)", program);
        return -1;
    }
    //  A zim-server worker: its supervisor's brokers, on the backbone.
    char ipc[200], id[32];
    uint64_t nbrokers = 1;
    zim_parse_u64 (zim_nodeconf_get (self->conf, "server/brokers", "1"), &nbrokers);
    if ((roles & ZIM_ROLE_GATEWAY) && zim_workers_await ((int)nbrokers, 60000))
        return -1;
    for (uint64_t i = 1; i <= nbrokers && (roles & ZIM_ROLE_GATEWAY); i++) {
        snprintf (id, sizeof id, "broker-%" PRIu64, i);
        if (!zim_workers_backbone (id, ipc, sizeof ipc) &&
            s_command (m->actor, "CONNECT", "broker", ipc))
            return -1;
    }
    if (roles & (ZIM_ROLE_BROKER | ZIM_ROLE_GATEWAY))
        for (size_t i = 0; i < njoined; i++)
            if (s_command (m->actor, "CONNECT", "router",
                           zim_membership_endpoint (self->membership, i)))
                return -1;
    if (roles & ZIM_ROLE_GATEWAY) {
        if (s_gateway_start (self, m))
            return -1;
    } else if (s_command (m->actor, "START", NULL, NULL))
        return -1;
    if ((roles & ZIM_ROLE_STORE) &&
        s_store_verbs (self, m->address,
                       zim_nodeconf_cluster (self->conf) ? zim_datadir_curve (self->datadir)
                                                         : NULL))
        return -1;
    s_heartbeat (self);
    char metrics[400], api[400];
    zsys_info ("%s ready: name=%s %s=%s admin=%s routers=%zu data=%s%s%s%s%s", program, name,
               roles & ZIM_ROLE_GATEWAY ? "ws" : "bind", m->address, s_admin_endpoint (self),
               njoined, zim_datadir_path (self->datadir),
               s_metrics_ready (self, metrics, sizeof metrics), s_api_ready (self, api, sizeof api),
               self->zap ? " curve=on" : "",
               zim_datadir_dev_defaults (self->datadir) && (roles & ZIM_ROLE_GATEWAY)
                   ? " app=demo (dev defaults)"
                   : "");
    return 0;
}

int zim_node_start (zim_node_t *self)
{
    const char *program = s_program (self);
    bool cluster = zim_nodeconf_cluster (self->conf);
    self->datadir = zim_datadir_open (zim_nodeconf_tree (self->conf), program);
    if (!self->datadir)
        return -1;
    //  One ZAP handler per process, before any CURVE server socket.
    const zim_curve_t *curve = zim_datadir_curve (self->datadir);
    if (curve) {
        self->zap = zim_zap_new (zim_curve_public (curve), zim_datadir_clients (self->datadir));
        if (!self->zap)
            return -1;
    }
    //  The admin endpoint first: a second server on the same machine fails
    //  here, before it touches the store. Cluster nodes have one only if
    //  asked (--admin).
    const char *admin =
        zim_nodeconf_get (self->conf, "server/admin", cluster ? "" : ZIM_ADMIN_ENDPOINT);
    if (*admin) {
        self->admin = zim_adminsrv_new (program, admin, self->datadir, s_nodes, self);
        if (!self->admin)
            return -1;
    }
    const char *metrics = zim_nodeconf_get (self->conf, "server/metrics", "");
    if (*metrics) {
        self->metrics = zim_metricsrv_new (program, metrics, s_metrics_text, self);
        if (!self->metrics)
            return -1;
    }
    if (s_api_open (self, cluster))
        return -1;
    return cluster ? s_start_cluster (self) : s_start_embedded (self);
}

//  Opens the backend push API (zim_apisrv.h): zim-server's on
//  ZIM_API_ADDRESS unless server/api says otherwise ("none": off; the
//  default address taken already only loses the API, with a warning), a
//  cluster node's only with --api, to its routers. Keys: apps/NAME/api_key,
//  or with the dev defaults DATA/app-demo.apikey. Returns 0 or -1.
static int s_api_open (zim_node_t *self, bool cluster)
{
    const char *program = s_program (self);
    const char *given = zim_nodeconf_get (self->conf, "server/api", NULL);
    const char *address = given ? given : cluster ? "" : ZIM_API_ADDRESS;
    if (!*address || streq (address, "none"))
        return 0;
    const char *routers =
        cluster ? zim_nodeconf_get (self->conf, "cluster/routers", "") : "inproc://zim-router";
    self->api = zim_apisrv_new (program, address, routers,
                                cluster ? zim_datadir_curve (self->datadir) : NULL);
    if (!self->api) {
        if (given)
            return -1;
        zsys_warning ("%s: the push API is off: %s is taken (give --api ADDR:PORT)", program,
                      address);
        return 0;
    }
    if (!cluster)
        zim_apisrv_use_broker (self->api, "inproc://zim-broker-1");
    if (self->admin)
        zim_adminsrv_set_verbs (self->admin, s_node_verbs, self);
    if (zim_datadir_dev_defaults (self->datadir)) {
        char path[4096];
        snprintf (path, sizeof path, "%s/app-demo.apikey", zim_datadir_path (self->datadir));
        return zim_apisrv_key_file (self->api, "demo", path);
    }
    zconfig_t *apps = zconfig_locate (zim_nodeconf_tree (self->conf), "apps");
    for (zconfig_t *app = apps ? zconfig_child (apps) : NULL; app; app = zconfig_next (app)) {
        const char *key = zconfig_get (app, "api_key", NULL);
        if (key && zim_apisrv_add_key (self->api, zconfig_name (app), key))
            return -1;
    }
    return 0;
}

//  The ready line's API part: " api=URL", or "".
static const char *s_api_ready (zim_node_t *self, char *buf, size_t size)
{
    *buf = 0;
    if (self->api)
        snprintf (buf, size, " api=%s", zim_apisrv_url (self->api));
    return buf;
}

//  Serves the admin endpoint and the membership until interrupted or, if
//  until_ms is not 0, until then (monotonic ms).
static void s_serve (zim_node_t *self, int64_t until_ms)
{
    zpoller_t *poller = zpoller_new (NULL);
    if (self->admin)
        zpoller_add (poller, zim_adminsrv_sock (self->admin));
    if (self->metrics)
        zpoller_add (poller, zim_metricsrv_sock (self->metrics));
    if (self->api) {
        zpoller_add (poller, zim_apisrv_sock (self->api));
        zpoller_add (poller, zim_apisrv_routers (self->api));
        zpoller_add (poller, zim_apisrv_brokers (self->api));
    }
    size_t njoined = self->membership ? zim_membership_size (self->membership) : 0;
    for (size_t i = 0; i < njoined; i++)
        zpoller_add (poller, zim_membership_sock (self->membership, i));
    while (!zsys_interrupted && !zim_workers_lost () && (!until_ms || zclock_mono () < until_ms)) {
        int64_t wait = 200;
        if (njoined) {
            wait = self->next_beat_ms - zclock_mono ();
            if (wait <= 0) {
                s_heartbeat (self);
                wait = 1000;
            }
        }
        void *which = zpoller_wait (poller, (int)(wait < 200 ? wait : 200));
        if (self->metrics)
            zim_metricsrv_sweep (self->metrics);
        if (self->api)
            zim_apisrv_sweep (self->api);
        if (which && self->admin && which == zim_adminsrv_sock (self->admin))
            zim_adminsrv_handle (self->admin);
        else if (which && self->api && which == zim_apisrv_sock (self->api))
            zim_apisrv_handle (self->api);
        else if (which && self->api && which == zim_apisrv_routers (self->api))
            zim_apisrv_handle_router (self->api);
        else if (which && self->api && which == zim_apisrv_brokers (self->api))
            zim_apisrv_handle_broker (self->api);
        else if (which && self->metrics && which == zim_metricsrv_sock (self->metrics))
            zim_metricsrv_handle (self->metrics);
        else if (which) {
            zframe_t *map = zim_membership_recv (self->membership, (zsock_t *)which);
            if (map && self->api)
                zim_apisrv_map (self->api, map);
            if (map && (zim_nodeconf_roles (self->conf) & (ZIM_ROLE_GATEWAY | ZIM_ROLE_BROKER))) {
                zmsg_t *msg = zmsg_new ();
                zmsg_addstr (msg, "MAP");
                zmsg_append (msg, &map);
                zmsg_send (&msg, self->members[0].actor);
            }
            zframe_destroy (&map);
        } else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
}

int zim_node_run (zim_node_t *self)
{
    s_serve (self, 0);
    zsys_info ("%s: shutting down", s_program (self));
    return 0;
}

//  One node in this process (a worker's too).
static int s_node_main (const char *program, int roles, int argc, char **argv)
{
    zsys_init ();
    zim_node_t *node = zim_node_new (program, roles);
    int rc = zim_node_configure (node, argc, argv);
    if (rc != 0) {
        zim_node_destroy (&node);
        return rc > 0 ? 0 : 2;
    }
    char ipc[200];
    if (roles == ZIM_ROLE_GATEWAY && !zim_workers_backbone ("", ipc, sizeof ipc))
        //  A zim-server worker: CURVE is for the supervisor's admin
        //  endpoint; the backbone is private by its directory.
        zconfig_put (zim_nodeconf_tree (node->conf), "curve/enabled", "0");
    if (zim_node_start (node)) {
        zim_node_destroy (&node);
        return 1;
    }
    zim_node_run (node);
    rc = zim_workers_stop (); //  zim-server's workers, before the store stops
    zim_node_destroy (&node);
    return rc;
}

int zim_node_main (const char *program, int roles, int argc, char **argv)
{
    //  No OpenSSL cleanup at exit: czmq's actor threads are detached and may
    //  still be ending (freeing their OpenSSL thread state) when exit()
    //  runs it, which then frees that state a second time (seen under ASan
    //  in zim-gateway --workers, about one stop in ten).
    OPENSSL_init_crypto (OPENSSL_INIT_NO_ATEXIT, NULL);
    int workers = zim_workers_take (&argc, argv);
    if (workers == 0) {
        fprintf (stderr, "%s: --workers must be 1..64 or auto\n", program);
        return 2;
    }
    if (workers > 1)
        return zim_workers_run (program, roles, workers, argc, argv, s_node_main);
    return s_node_main (program, roles, argc, argv);
}

//  -------------------------------------------------------------------------
//  Selftest: zim-server's roles in this process, with CURVE on its admin
//  endpoint; admin calls come from another thread while this one serves.

typedef struct {
    char endpoint[128]; //  the admin endpoint
    char keys[256];     //  the CURVE keys directory
    int with_keys;      //  answer code with the admin client's keys
    int without_keys;   //  answer code without CURVE
    bool alive_all;     //  the status listed 4 nodes, all alive
    volatile int done;  //  set when the calls are over
} s_test_calls_t;

static void s_test_caller (zsock_t *pipe, void *args)
{
    s_test_calls_t *t = (s_test_calls_t *)args;
    zsock_signal (pipe, 0);
    zim_curve_t *curve = zim_curve_load_client (t->keys, "admin", false);
    char *text = NULL;
    t->with_keys =
        zim_admin_call_curve (t->endpoint, curve, "test key", 5000, "status", NULL, &text);
    json_t *status = text ? json_loads (text, 0, NULL) : NULL;
    size_t i, alive = 0;
    json_t *node;
    json_array_foreach (json_object_get (status, "nodes"), i, node) alive +=
        json_is_true (json_object_get (node, "alive"));
    t->alive_all = alive == 4 && json_array_size (json_object_get (status, "nodes")) == 4;
    json_decref (status);
    zstr_free (&text);
    t->without_keys = zim_admin_call (t->endpoint, "test key", 300, "status", NULL, &text);
    zstr_free (&text);
    zim_curve_destroy (&curve);
    __atomic_store_n (&t->done, 1, __ATOMIC_RELEASE);
    char *term = zstr_recv (pipe); //  $TERM
    zstr_free (&term);
}

void zim_node_test (bool verbose)
{
    char dir[] = "/tmp/zim-node-test-XXXXXX";
    assert (mkdtemp (dir));
    s_test_calls_t t = {.with_keys = -1, .without_keys = -1};
    snprintf (t.keys, sizeof t.keys, "%s/curve", dir);
    assert (zim_curve_keygen_cluster (t.keys) == 1);
    assert (zim_curve_keygen_client (t.keys, "admin") == 1);
    zim_node_t *node = zim_node_new ("zim-server", ZIM_ROLE_ALL);
    const char *args[] = {"zim-server",        "-p", "0", "--interface", "127.0.0.1", "-a",
                          "tcp://127.0.0.1:*", "-d", dir, "--curve",     NULL};
    assert (zim_node_configure (node, 10, (char **)args) == 0);
    zconfig_put (zim_nodeconf_tree (node->conf), "server/admin_key", "test key");
    assert (zim_node_start (node) == 0);
    assert (node->nmembers == 4 && node->zap);
    snprintf (t.endpoint, sizeof t.endpoint, "%s", zim_adminsrv_endpoint (node->admin));
    zactor_t *caller = zactor_new (s_test_caller, &t);
    int64_t deadline = zclock_mono () + 15000;
    while (!__atomic_load_n (&t.done, __ATOMIC_ACQUIRE) && zclock_mono () < deadline)
        s_serve (node, zclock_mono () + 100);
    zactor_destroy (&caller);
    assert (t.with_keys == 0 && t.alive_all);
    assert (t.without_keys == ZIM_ERR_UNAVAILABLE);
    assert (zim_zap_allowed (node->zap) >= 1);
    zim_node_destroy (&node);
    zim_node_destroy (&node);
    char cmd[400];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert (system (cmd) == 0);
    if (verbose)
        zsys_info ("node: zim-server's roles start; admin over CURVE with keys only");
}
