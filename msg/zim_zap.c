/*  zim_zap.c: the process's ZAP handler (zim_zap.h): an actor with a REP
    socket on inproc://zeromq.zap.01, where libzmq sends one request per
    CURVE handshake and waits for the verdict.
*/
#include "msg/zim_zap.h"
#include "msg/zim_curve.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <assert.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

//  Whether a handler runs in this process.
static int s_running;

struct _zim_zap_t {
    zactor_t *actor;       //  the handler
    char cluster_key[41];  //  Z85 public key of the cluster
    char *clients_dir;     //  client certificates allowed on the admin endpoint
    uint64_t allowed;      //  handshakes allowed (written by the actor)
    uint64_t refused;      //  handshakes refused (written by the actor)
    zim_ratelog_t ratelog; //  refusals: a peer can cause them
    bool bound;            //  the actor holds the ZAP endpoint
};

//  The verdict on one request: true to allow. *why says why not.
static bool s_verdict (zim_zap_t *self, zcertstore_t *clients, const char *domain,
                       const char *mechanism, zframe_t *key, const char **why)
{
    if (!streq (mechanism, "CURVE")) {
        *why = "not CURVE";
        return false;
    }
    if (!key || zframe_size (key) != 32) {
        *why = "no client key";
        return false;
    }
    char text[41];
    zmq_z85_encode (text, zframe_data (key), 32);
    if (streq (text, self->cluster_key) &&
        (streq (domain, ZIM_ZAP_BACKBONE) || streq (domain, ZIM_ZAP_ADMIN)))
        return true;
    if (streq (domain, ZIM_ZAP_ADMIN) && clients && zcertstore_lookup (clients, text))
        return true;
    *why = streq (domain, ZIM_ZAP_ADMIN) || streq (domain, ZIM_ZAP_BACKBONE) ? "key not allowed"
                                                                             : "unknown ZAP domain";
    return false;
}

//  Answers one ZAP request on rep.
static void s_handle (zim_zap_t *self, zsock_t *rep, zcertstore_t *clients)
{
    zmsg_t *request = zmsg_recv (rep);
    if (!request)
        return;
    //  version, request id, domain, address, routing id, mechanism, key
    char *version = zmsg_popstr (request), *id = zmsg_popstr (request);
    char *domain = zmsg_popstr (request), *address = zmsg_popstr (request);
    char *identity = zmsg_popstr (request), *mechanism = zmsg_popstr (request);
    zframe_t *key = zmsg_pop (request);
    const char *why = "malformed request";
    bool ok = version && streq (version, "1.0") && id && domain && address && mechanism &&
              s_verdict (self, clients, domain, mechanism, key, &why);
    if (ok)
        __atomic_add_fetch (&self->allowed, 1, __ATOMIC_RELAXED);
    else {
        __atomic_add_fetch (&self->refused, 1, __ATOMIC_RELAXED);
        zim_ratelog_warn (&self->ratelog, "zap",
                          "CURVE handshake from %s on domain '%s' refused: %s",
                          address ? address : "?", domain ? domain : "?", why);
    }
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    zmsg_addstr (reply, id ? id : "");
    zmsg_addstr (reply, ok ? "200" : "400");
    zmsg_addstr (reply, ok ? "OK" : why);
    zmsg_addstr (reply, "");      //  user id
    zmsg_addmem (reply, NULL, 0); //  metadata
    zmsg_send (&reply, rep);
    zstr_free (&version);
    zstr_free (&id);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&identity);
    zstr_free (&mechanism);
    zframe_destroy (&key);
    zmsg_destroy (&request);
}

static void s_actor (zsock_t *pipe, void *args)
{
    zim_zap_t *self = (zim_zap_t *)args;
    zsock_t *rep = zsock_new (ZMQ_REP);
    if (!rep || zsock_bind (rep, S_ZAP_ENDPOINT) == -1) {
        zsys_error ("zap: cannot bind %s (a handler already runs in this process?)",
                    S_ZAP_ENDPOINT);
        zsock_destroy (&rep);
        zsock_signal (pipe, 1);
        return;
    }
    //  A missing directory is an empty store; files added later are read
    //  at the next lookup.
    zcertstore_t *clients = self->clients_dir ? zcertstore_new (self->clients_dir) : NULL;
    __atomic_store_n (&s_running, 1, __ATOMIC_RELEASE);
    self->bound = true; //  read by zim_zap_new after the signal
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, rep, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == rep)
            s_handle (self, rep, clients);
        else
            break; //  $TERM on the pipe, or interrupted
    }
    __atomic_store_n (&s_running, 0, __ATOMIC_RELEASE);
    zpoller_destroy (&poller);
    zcertstore_destroy (&clients);
    zsock_destroy (&rep);
}

zim_zap_t *zim_zap_new (const char *cluster_key, const char *clients_dir)
{
    if (!cluster_key || strlen (cluster_key) != 40) {
        zsys_error ("zap: the cluster key must be 40 characters of Z85");
        return NULL;
    }
    zim_zap_t *self = zim_calloc (1, sizeof *self);
    snprintf (self->cluster_key, sizeof self->cluster_key, "%s", cluster_key);
    self->clients_dir = clients_dir ? zim_strdup (clients_dir) : NULL;
    self->actor = zactor_new (s_actor, self);
    //  zactor_new waited for the actor's first signal.
    if (!self->bound) {
        zim_zap_destroy (&self);
        return NULL;
    }
    return self;
}

void zim_zap_destroy (zim_zap_t **self_p)
{
    zim_zap_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->actor);
    free (self->clients_dir);
    free (self);
    *self_p = NULL;
}

uint64_t zim_zap_allowed (zim_zap_t *self)
{
    return __atomic_load_n (&self->allowed, __ATOMIC_RELAXED);
}

uint64_t zim_zap_refused (zim_zap_t *self)
{
    return __atomic_load_n (&self->refused, __ATOMIC_RELAXED);
}

bool zim_zap_running (void)
{
    return __atomic_load_n (&s_running, __ATOMIC_ACQUIRE) != 0;
}

//  -------------------------------------------------------------------------
//  Selftest: a CURVE server on each domain, and clients with the cluster
//  key, an allowed client key, a stranger's key, no key, and a wrong
//  server key.

//  Sends "ping" from a new DEALER with keys (NULL: none) to endpoint and
//  says whether the server received it within 500 ms.
static bool s_test_reaches (zsock_t *server, const char *endpoint, zcert_t *mine,
                            const char *server_key)
{
    zsock_t *client = zsock_new (ZMQ_DEALER);
    zsock_set_linger (client, 0);
    if (mine) {
        zcert_apply (mine, client);
        zsock_set_curve_serverkey (client, server_key);
    }
    zsock_connect (client, "%s", endpoint);
    zstr_send (client, "ping");
    zsock_set_rcvtimeo (server, 500);
    zmsg_t *msg = zmsg_recv (server);
    bool reached = msg != NULL;
    zmsg_destroy (&msg);
    zsock_destroy (&client);
    return reached;
}

void zim_zap_test (bool verbose)
{
    char dir[] = "/tmp/zim-zap-test-XXXXXX";
    assert (mkdtemp (dir));
    char path[256];
    zcert_t *cluster = zcert_new (), *operator= zcert_new (), *stranger = zcert_new ();
    snprintf (path, sizeof path, "%s/operator.cert", dir);
    assert (zcert_save_public (operator, path) == 0);

    assert (zim_zap_new ("short", dir) == NULL);
    zim_zap_t *zap = zim_zap_new (zcert_public_txt (cluster), dir);
    assert (zap && zim_zap_running ());
    assert (zim_zap_new (zcert_public_txt (cluster), dir) == NULL); //  one per process

    zsock_t *backbone = zsock_new (ZMQ_ROUTER), *admin = zsock_new (ZMQ_ROUTER);
    zim_curve_t *keys = zim_curve_new (zcert_public_txt (cluster), zcert_secret_txt (cluster),
                                       zcert_public_txt (cluster));
    assert (zim_curve_apply (keys, backbone, ZIM_ZAP_BACKBONE) == 0);
    assert (zim_curve_apply (keys, admin, ZIM_ZAP_ADMIN) == 0);
    int bport = zsock_bind (backbone, "tcp://127.0.0.1:*");
    int aport = zsock_bind (admin, "tcp://127.0.0.1:*");
    assert (bport > 0 && aport > 0);
    char bep[64], aep[64];
    snprintf (bep, sizeof bep, "tcp://127.0.0.1:%d", bport);
    snprintf (aep, sizeof aep, "tcp://127.0.0.1:%d", aport);
    const char *server_key = zcert_public_txt (cluster);

    assert (s_test_reaches (backbone, bep, cluster, server_key));
    assert (!s_test_reaches (backbone, bep, operator, server_key));
    assert (!s_test_reaches (backbone, bep, stranger, server_key));
    assert (!s_test_reaches (backbone, bep, NULL, NULL));
    assert (!s_test_reaches (backbone, bep, cluster, zcert_public_txt (stranger)));
    assert (s_test_reaches (admin, aep, cluster, server_key));
    assert (s_test_reaches (admin, aep, operator, server_key));
    assert (!s_test_reaches (admin, aep, stranger, server_key));
    assert (!s_test_reaches (admin, aep, NULL, NULL));
    assert (zim_zap_allowed (zap) == 3 && zim_zap_refused (zap) == 3);

    //  Without a handler, CURVE server sockets refuse everyone.
    zim_zap_destroy (&zap);
    assert (!zim_zap_running ());
    assert (!s_test_reaches (backbone, bep, cluster, server_key));

    zsock_destroy (&backbone);
    zsock_destroy (&admin);
    zim_curve_destroy (&keys);
    zcert_destroy (&cluster);
    zcert_destroy (&operator);
    zcert_destroy (&stranger);
    unlink (path);
    rmdir (dir);
    if (verbose)
        zsys_info (
            "zap: the backbone takes only the cluster key, the admin endpoint its clients too");
}
