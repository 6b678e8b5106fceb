/*  zim_workers.h: a gateway node as several worker processes sharing its
    client port (SO_REUSEPORT: the kernel spreads new connections over
    them), each its own cluster member named NAME.wK. One process may hold
    at most ~19,000 connections here (20,000 descriptors, a hard limit), so
    more connections on one node need more processes; they also use every
    core, each running its own libuv loop.

    The supervisor (the process started) forks the workers before anything
    else starts (no ZeroMQ context yet), forwards SIGTERM and SIGINT to
    them and exits once they all did. Worker 0 keeps the admin endpoint;
    the others have none.

    zim-server --workers N: the same workers, each a gateway member
    NAME.wK (gw-1.w0, ...), and the supervisor runs the store, router and
    brokers (and the admin endpoint, API and metrics) itself. The backbone
    between them is ipc:// in a private directory (mkdtemp, mode 0700,
    removed at exit): only this user's processes can connect to it, and
    a broker believes the sender a gateway names.
*/
#ifndef ZIM_WORKERS_H_INCLUDED
#define ZIM_WORKERS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

//  What a worker runs: the node's main with the worker's arguments.
typedef int (zim_workers_main_fn) (const char *program, int roles, int argc, char **argv);

//  Takes --workers N (or --workers=N) out of argv. Returns N, 1 if absent,
//  0 if its value is not 1..64; "auto" is one per core.
int zim_workers_take (int *argc, char **argv);

//  Runs n workers of the node (program, roles, argv) and waits for them.
//  Returns the exit status for the supervisor.
int zim_workers_run (const char *program, int roles, int n, int argc, char **argv,
                     zim_workers_main_fn *main_fn);

//  True in a worker process: its gateway shares the port (SO_REUSEPORT).
bool zim_workers_sharing (void);

//  zim-server with workers (the supervisor and its workers): writes the
//  backbone endpoint of name ("router", "broker-1", ...) into buf,
//  ipc://DIR/name. Returns 0, or -1 when there is no such backbone.
int zim_workers_backbone (const char *name, char *buf, size_t size);

//  In a zim-server worker: waits until the supervisor has bound the
//  router and brokers 1..nbrokers on the backbone, so that the client port
//  opens only once sends can go through. Returns 0 (at once elsewhere), or
//  -1 after timeout_ms or an interrupt (logged).
int zim_workers_await (int nbrokers, int timeout_ms);

//  In zim-server's supervisor: true once a worker exited (logged, with
//  what to do) or a signal came before czmq took SIGTERM/SIGINT over: the
//  node then stops. False elsewhere. Does not block.
bool zim_workers_lost (void);

//  In zim-server's supervisor: stops every worker still running (SIGTERM,
//  SIGKILL after 10 s) and reaps them. Returns 0, or 1 if a worker exited
//  other than by this stop or failed (the same again on later calls). A
//  no-op elsewhere (0).
int zim_workers_stop (void);

//  Self test of this class.
void zim_workers_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
