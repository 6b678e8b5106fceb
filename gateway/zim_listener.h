/*  zim_listener.h: a listening TCP socket on a libuv loop, for a gateway
    that shares its port with other processes (SO_REUSEPORT, the workers
    of one node; tools/zim_workers.h). libwebsockets 4.1.6 cannot share a
    listening port, so the gateway listens itself and hands every accepted
    socket to its vhost (lws_adopt_socket_vhost).
*/
#ifndef ZIM_LISTENER_H_INCLUDED
#define ZIM_LISTENER_H_INCLUDED

#include <stdbool.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_listener_t zim_listener_t;

//  Called with each accepted socket (non-blocking); the callee owns it.
typedef void (zim_listener_fn) (void *arg, int fd);

//  Listens on iface (NULL: every address) and port (0: ephemeral) with
//  SO_REUSEPORT, watched by loop. NULL if it cannot bind. Caller owns
//  return value.
zim_listener_t *zim_listener_new (uv_loop_t *loop, const char *iface, int port,
                                  zim_listener_fn *fn, void *arg);
//  The same, sharing the port only if reuse_port (SO_REUSEPORT); without
//  it, binding a port another socket holds fails.
zim_listener_t *zim_listener_bind (uv_loop_t *loop, const char *iface, int port, bool reuse_port,
                                   zim_listener_fn *fn, void *arg);
//  Frees it; zim_listener_close must have run, and the loop since.
void zim_listener_destroy (zim_listener_t **self_p);
//  The port bound.
int zim_listener_port (zim_listener_t *self);
//  Stops listening and closes the socket and its handle.
void zim_listener_close (zim_listener_t *self);

//  Self test of this class.
void zim_listener_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
