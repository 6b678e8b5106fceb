/*  zim_uvzmq.h: ZeroMQ sockets watched by a libuv loop.

    ZMQ_FD is not a level-triggered "readable" signal: it fires when the
    socket's mailbox gets commands, and any operation on the socket (a
    send too) can consume that signal while messages stay queued. Reading
    one message per wakeup hangs after the first one. So each socket is
    marked dirty when its fd fires and whenever the owner says it sent on
    it (zim_uvzmq_kick); a prepare handle (before the loop blocks) and a
    check handle (after it polled) re-read ZMQ_EVENTS of every dirty
    socket and call the owner's reader while it shows POLLIN. The reader
    takes a bounded batch, so clients are served between batches; while
    a socket still shows POLLIN an idle handle keeps the loop from
    blocking (docs/ARCHITECTURE.md, "The gateway's loop").
*/
#ifndef ZIM_UVZMQ_H_INCLUDED
#define ZIM_UVZMQ_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_uvzmq_t zim_uvzmq_t;

//  Called while sock shows POLLIN: reads a batch (at least one message if
//  there is one). It may send on any socket, then kick it.
typedef void (zim_uvzmq_fn) (void *arg, zsock_t *sock);

//  Creates a watcher on loop calling fn (arg) for input. Caller owns
//  return value. Its handles start at once.
zim_uvzmq_t *zim_uvzmq_new (uv_loop_t *loop, zim_uvzmq_fn *fn, void *arg);
//  Frees the watcher; zim_uvzmq_close must have run and the loop must have
//  run its close callbacks since (uv_run returned).
void zim_uvzmq_destroy (zim_uvzmq_t **self_p);

//  Watches one more socket (borrowed: it must outlive the watcher's
//  handles). Returns 0 or -1.
int zim_uvzmq_watch (zim_uvzmq_t *self, zsock_t *sock);
//  sock (NULL: every socket) was sent on or read outside the reader: look
//  at its ZMQ_EVENTS again before the loop blocks.
void zim_uvzmq_kick (zim_uvzmq_t *self, zsock_t *sock);
//  Stops and closes every handle (from inside the loop or before
//  uv_run); the reader is not called again.
void zim_uvzmq_close (zim_uvzmq_t *self);

//  Self test of this class.
void zim_uvzmq_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
