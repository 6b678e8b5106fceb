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
*/
#ifndef ZIM_WORKERS_H_INCLUDED
#define ZIM_WORKERS_H_INCLUDED

#include <stdbool.h>

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

//  Self test of this class.
void zim_workers_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
