/*  zim_curve.h: CURVE keys (libzmq's CurveZMQ) for the sockets between
    nodes and for admin clients, and the one function that makes such a
    socket.

    The key model (docs/OPERATIONS.md, "CURVE keys"):
    - one cluster key pair, held by every node of a cluster: each node's
      server sockets present it, and each node's client sockets use it as
      their own key and expect it as the server's. A peer without the
      cluster secret completes no handshake with any node;
    - client key pairs for operators (zimctl, zim-bench), allowed on the
      admin endpoint only (msg/zim_zap.h).

    Files, as `zimctl keygen DIR` writes them (czmq zcert format):
        DIR/cluster.cert          the cluster's public key (clients need it)
        DIR/cluster.cert_secret   the cluster key pair (nodes only; 0600)
        DIR/clients/NAME.cert     a client's public key: allowed on the
                                  admin endpoint
        DIR/NAME.cert_secret      that client's key pair (its user only; 0600)
*/
#ifndef ZIM_CURVE_H_INCLUDED
#define ZIM_CURVE_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_curve_t zim_curve_t;

//  Keys from Z85 text (40 characters each): this side's key pair and the
//  public key of the servers it connects to. Returns NULL if one is not a
//  Z85 key or the secret does not belong to the public key. Caller owns
//  return value.
zim_curve_t *zim_curve_new (const char *public_key, const char *secret_key, const char *server_key);
//  A node's keys: the cluster key pair from DIR/cluster.cert_secret, the
//  server key being its own public key. NULL if missing or bad (logged).
//  Caller owns return value.
zim_curve_t *zim_curve_load_node (const char *dir);
//  A client's keys: its pair from DIR/NAME.cert_secret and the cluster's
//  public key from DIR/cluster.cert. NULL if one is missing or bad (logged
//  unless quiet). Caller owns return value.
zim_curve_t *zim_curve_load_client (const char *dir, const char *name, bool quiet);
void zim_curve_destroy (zim_curve_t **self_p);

//  The keys as Z85 text.
const char *zim_curve_public (const zim_curve_t *self);
const char *zim_curve_secret (const zim_curve_t *self);
const char *zim_curve_server (const zim_curve_t *self);

//  Applies the keys to a socket before it binds or connects. With a ZAP
//  domain (ZIM_ZAP_BACKBONE, ZIM_ZAP_ADMIN) the socket is a CURVE server
//  whose clients the process's ZAP handler must allow (it refuses
//  everyone while no handler runs); without (NULL), a CURVE client.
//  Returns 0, or -1 if a server is asked for while no ZAP handler runs
//  (logged).
int zim_curve_apply (const zim_curve_t *self, zsock_t *sock, const char *zap_domain);

//  Makes a socket for traffic between processes: linger 0, ZMQ_MAXMSGSIZE
//  max_msg_size (a bigger message drops the peer), and CURVE with curve
//  when not NULL (server with zap_domain, else client). Caller owns return
//  value; NULL if it cannot be made (logged).
zsock_t *zim_curve_socket (const zim_curve_t *curve, int type, const char *zap_domain,
                           int64_t max_msg_size);

//  Creates DIR (0700) with the cluster key pair, unless DIR/cluster.cert
//  exists. Returns 1 if it made them, 0 if they were there, -1 on error
//  (logged).
int zim_curve_keygen_cluster (const char *dir);
//  Creates the key pair of client name in DIR (DIR/clients/NAME.cert and
//  DIR/NAME.cert_secret), unless it exists. Returns 1, 0 or -1 likewise.
int zim_curve_keygen_client (const char *dir, const char *name);

//  Self test of this class.
void zim_curve_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
