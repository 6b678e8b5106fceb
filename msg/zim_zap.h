/*  zim_zap.h: the ZAP handler of a process (ZeroMQ RFC 27). libzmq asks it,
    for every CURVE handshake on a server socket of this process, whether
    the client's public key may connect; it answers by the socket's ZAP
    domain:

        "zim"        the backbone: only the cluster key (every node of the
                     cluster holds the cluster key pair)
        "zim-admin"  the admin endpoint: the cluster key, and every client
                     certificate in the clients directory (zimctl keygen
                     --client writes them; added or removed files count at
                     the next handshake)

    czmq's zauth keeps one allow list per process for every socket; the
    backbone must not accept an operator's key, so zim answers ZAP itself,
    with zcert/zcertstore for the keys. One handler per process: the process
    shell starts it before any server socket is made, and server sockets
    refuse every client while none runs (ZMQ_ZAP_ENFORCE_DOMAIN).
*/
#ifndef ZIM_ZAP_H_INCLUDED
#define ZIM_ZAP_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  ZAP domains of zim's server sockets.
#define ZIM_ZAP_BACKBONE "zim"
#define ZIM_ZAP_ADMIN "zim-admin"

typedef struct _zim_zap_t zim_zap_t;

//  Starts the handler. cluster_key is the cluster's public key (Z85);
//  clients_dir holds the client certificates allowed on the admin
//  endpoint (may be missing: none). Returns NULL if the key is not a Z85
//  key or a handler already runs in this process (logged). Caller owns
//  return value.
zim_zap_t *zim_zap_new (const char *cluster_key, const char *clients_dir);
//  Stops the handler; CURVE server sockets then refuse every client.
void zim_zap_destroy (zim_zap_t **self_p);

//  Handshakes allowed and refused so far.
uint64_t zim_zap_allowed (zim_zap_t *self);
uint64_t zim_zap_refused (zim_zap_t *self);

//  True while a handler runs in this process.
bool zim_zap_running (void);

//  Self test of this class.
void zim_zap_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
