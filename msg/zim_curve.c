/*  zim_curve.c: CURVE keys and the sockets that use them (zim_curve.h).
    Keys are read and written with czmq's zcert; the handshake and the
    encryption are libzmq's.
*/
#include "msg/zim_curve.h"
#include "msg/zim_util.h"
#include "msg/zim_zap.h"

#include <assert.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

//  A draft option of libzmq 4.3, so not always in zmq.h.
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

struct _zim_curve_t {
    char public_key[41]; //  this side's public key, Z85
    char secret_key[41]; //  this side's secret key, Z85
    char server_key[41]; //  public key of the servers it connects to
};

//  True if text is a 40-character Z85 key.
static bool s_z85_key (const char *text)
{
    uint8_t bin[32];
    return text && strlen (text) == 40 && zmq_z85_decode (bin, text) != NULL;
}

zim_curve_t *zim_curve_new (const char *public_key, const char *secret_key, const char *server_key)
{
    if (!s_z85_key (public_key) || !s_z85_key (secret_key) || !s_z85_key (server_key))
        return NULL;
    //  The public key must be the secret's: a mismatch fails every
    //  handshake later with no clear reason.
    char derived[41];
    if (zmq_curve_public (derived, secret_key) != 0 || !streq (derived, public_key))
        return NULL;
    zim_curve_t *self = zim_calloc (1, sizeof *self);
    memcpy (self->public_key, public_key, 41);
    memcpy (self->secret_key, secret_key, 41);
    memcpy (self->server_key, server_key, 41);
    return self;
}

void zim_curve_destroy (zim_curve_t **self_p)
{
    zim_curve_t *self = *self_p;
    if (!self)
        return;
    //  Do not leave the secret in freed memory.
    explicit_bzero (self, sizeof *self);
    free (self);
    *self_p = NULL;
}

//  Loads the certificate at path (its _secret file first); NULL (logged
//  unless quiet) if there is none with a secret key.
static zcert_t *s_load_secret (const char *path, bool quiet)
{
    zcert_t *cert = zcert_load (path);
    if (cert && strspn (zcert_secret_txt (cert), "0") == 40) {
        if (!quiet)
            zsys_error ("%s_secret: not found (only the public %s)", path, path);
        zcert_destroy (&cert);
    } else if (!cert && !quiet)
        zsys_error ("cannot read the CURVE key pair %s_secret: missing or not a certificate "
                    "(make one with zimctl keygen)",
                    path);
    return cert;
}

zim_curve_t *zim_curve_load_node (const char *dir)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/cluster.cert", dir);
    zcert_t *cert = s_load_secret (path, false);
    if (!cert)
        return NULL;
    zim_curve_t *self =
        zim_curve_new (zcert_public_txt (cert), zcert_secret_txt (cert), zcert_public_txt (cert));
    if (!self)
        zsys_error ("%s_secret: not a valid CURVE key pair", path);
    zcert_destroy (&cert);
    return self;
}

zim_curve_t *zim_curve_load_client (const char *dir, const char *name, bool quiet)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/cluster.cert", dir);
    zcert_t *server = zcert_load (path);
    if (!server) {
        if (!quiet)
            zsys_error ("cannot read the cluster's public key %s", path);
        return NULL;
    }
    snprintf (path, sizeof path, "%s/%s.cert", dir, name);
    zcert_t *cert = s_load_secret (path, quiet);
    zim_curve_t *self = cert ? zim_curve_new (zcert_public_txt (cert), zcert_secret_txt (cert),
                                              zcert_public_txt (server))
                             : NULL;
    if (cert && !self && !quiet)
        zsys_error ("%s_secret: not a valid CURVE key pair", path);
    zcert_destroy (&cert);
    zcert_destroy (&server);
    return self;
}

const char *zim_curve_public (const zim_curve_t *self)
{
    return self->public_key;
}

const char *zim_curve_secret (const zim_curve_t *self)
{
    return self->secret_key;
}

const char *zim_curve_server (const zim_curve_t *self)
{
    return self->server_key;
}

int zim_curve_apply (const zim_curve_t *self, zsock_t *sock, const char *zap_domain)
{
    zsock_set_curve_publickey (sock, self->public_key);
    zsock_set_curve_secretkey (sock, self->secret_key);
    if (!zap_domain) {
        zsock_set_curve_serverkey (sock, self->server_key);
        return 0;
    }
    if (!zim_zap_running ()) {
        zsys_error ("a CURVE server socket needs the process's ZAP handler, and none runs");
        return -1;
    }
    zsock_set_curve_server (sock, 1);
    zsock_set_zap_domain (sock, zap_domain);
    //  Without a handler libzmq would let every client in: refuse instead.
    //  (A draft option in libzmq 4.3: without it, zim_zap_running above is
    //  the guard.)
    int enforce = 1;
    zmq_setsockopt (zsock_resolve (sock), ZMQ_ZAP_ENFORCE_DOMAIN, &enforce, sizeof enforce);
    return 0;
}

zsock_t *zim_curve_socket (const zim_curve_t *curve, int type, const char *zap_domain,
                           int64_t max_msg_size)
{
    zsock_t *sock = zsock_new (type);
    if (!sock) {
        zsys_error ("cannot make a socket: %s", zmq_strerror (zmq_errno ()));
        return NULL;
    }
    zsock_set_linger (sock, 0);
    zmq_setsockopt (zsock_resolve (sock), ZMQ_MAXMSGSIZE, &max_msg_size, sizeof max_msg_size);
    if (curve && zim_curve_apply (curve, sock, zap_domain)) {
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

//  Makes dir (0700) if missing. Returns 0 or -1 (logged).
static int s_mkdir (const char *dir)
{
    if (mkdir (dir, 0700) == 0 || errno == EEXIST)
        return 0;
    zsys_error ("cannot create %s: %s", dir, strerror (errno));
    return -1;
}

int zim_curve_keygen_cluster (const char *dir)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/cluster.cert", dir);
    if (access (path, F_OK) == 0)
        return 0;
    if (s_mkdir (dir))
        return -1;
    zcert_t *cert = zcert_new ();
    zcert_set_meta (cert, "name", "cluster");
    //  The secret first: a public file alone would mean "done" next time.
    char secret[4200];
    snprintf (secret, sizeof secret, "%s_secret", path);
    int rc = zcert_save_secret (cert, secret) == 0 && zcert_save_public (cert, path) == 0 ? 1 : -1;
    if (rc < 0)
        zsys_error ("cannot write %s: %s", path, strerror (errno));
    zcert_destroy (&cert);
    return rc;
}

int zim_curve_keygen_client (const char *dir, const char *name)
{
    char pub[4096], secret[4200];
    snprintf (pub, sizeof pub, "%s/clients", dir);
    if (s_mkdir (dir) || s_mkdir (pub))
        return -1;
    snprintf (pub, sizeof pub, "%s/clients/%s.cert", dir, name);
    snprintf (secret, sizeof secret, "%s/%s.cert_secret", dir, name);
    if (access (secret, F_OK) == 0 && access (pub, F_OK) == 0)
        return 0;
    zcert_t *cert = zcert_new ();
    zcert_set_meta (cert, "name", "%s", name);
    int rc = zcert_save_secret (cert, secret) == 0 && zcert_save_public (cert, pub) == 0 ? 1 : -1;
    if (rc < 0)
        zsys_error ("cannot write %s: %s", pub, strerror (errno));
    zcert_destroy (&cert);
    return rc;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_curve_test (bool verbose)
{
    char dir[] = "/tmp/zim-curve-test-XXXXXX";
    assert (mkdtemp (dir));
    char keys[300];
    snprintf (keys, sizeof keys, "%s/keys", dir);
    assert (zim_curve_load_node (keys) == NULL); //  none yet
    assert (zim_curve_keygen_cluster (keys) == 1);
    assert (zim_curve_keygen_cluster (keys) == 0); //  kept
    assert (zim_curve_keygen_client (keys, "admin") == 1);
    assert (zim_curve_keygen_client (keys, "admin") == 0);
    char path[400];
    struct stat st;
    snprintf (path, sizeof path, "%s/cluster.cert_secret", keys);
    assert (stat (path, &st) == 0 && (st.st_mode & 077) == 0);
    snprintf (path, sizeof path, "%s/admin.cert_secret", keys);
    assert (stat (path, &st) == 0 && (st.st_mode & 077) == 0);

    zim_curve_t *node = zim_curve_load_node (keys);
    zim_curve_t *client = zim_curve_load_client (keys, "admin", false);
    assert (node && client);
    assert (streq (zim_curve_server (node), zim_curve_public (node)));
    assert (streq (zim_curve_server (client), zim_curve_public (node)));
    assert (!streq (zim_curve_public (client), zim_curve_public (node)));
    assert (zim_curve_load_client (keys, "nobody", true) == NULL);
    //  A public key that is not the secret's is refused.
    assert (zim_curve_new (zim_curve_public (client), zim_curve_secret (node),
                           zim_curve_public (node)) == NULL);
    assert (zim_curve_new ("short", zim_curve_secret (node), zim_curve_public (node)) == NULL);

    //  Sockets: a client can always be made; a server only with a ZAP
    //  handler running.
    zsock_t *sock = zim_curve_socket (client, ZMQ_DEALER, NULL, 1 << 20);
    assert (sock && zsock_curve_server (sock) == 0);
    int64_t max = 0;
    size_t len = sizeof max;
    zmq_getsockopt (zsock_resolve (sock), ZMQ_MAXMSGSIZE, &max, &len);
    assert (max == 1 << 20);
    zsock_destroy (&sock);
    if (!zim_zap_running ())
        assert (zim_curve_socket (node, ZMQ_ROUTER, ZIM_ZAP_BACKBONE, 1 << 20) == NULL);
    sock = zim_curve_socket (NULL, ZMQ_ROUTER, NULL, 1 << 20); //  no CURVE
    assert (sock);
    zsock_destroy (&sock);

    zim_curve_destroy (&node);
    zim_curve_destroy (&client);
    zim_curve_destroy (&client);
    char cmd[400];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert (system (cmd) == 0);
    if (verbose)
        zsys_info ("curve: keys generated, loaded, checked; sockets made");
}
