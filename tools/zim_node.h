/*  zim_node.h: one server process. Reads the command line and the config
    file, prepares the data directory (secrets, admin key), starts the actors
    of its roles, serves the admin endpoint and stops everything cleanly on
    SIGINT/SIGTERM. zim-server runs every role over inproc://; zim-gateway,
    zim-broker, zim-router and zim-store run one each over tcp:// and join
    the cluster's routers (HELLO heartbeats, MAP in).
*/
#ifndef ZIM_NODE_H_INCLUDED
#define ZIM_NODE_H_INCLUDED

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_node_t zim_node_t;

//  Roles a node runs; zim-server runs them all.
#define ZIM_ROLE_GATEWAY 1
#define ZIM_ROLE_BROKER 2
#define ZIM_ROLE_ROUTER 4
#define ZIM_ROLE_STORE 8
#define ZIM_ROLE_ALL 15

//  Creates a node for the given roles; program is the name used in logs and
//  --help.
zim_node_t *zim_node_new (const char *program, int roles);
void zim_node_destroy (zim_node_t **self_p);

//  Parses the command line (and the config file it names). Returns 0 to go
//  on, 1 when it printed --help or --version (exit 0), -1 on a usage error
//  (already printed; exit 2).
int zim_node_configure (zim_node_t *self, int argc, char **argv);

//  Prepares the data dir and starts the actors. Returns 0 or -1 (logged).
int zim_node_start (zim_node_t *self);

//  Serves the admin endpoint (and, in a cluster, heartbeats and the map)
//  until SIGINT/SIGTERM. Returns 0.
int zim_node_run (zim_node_t *self);

//  The whole main() of a node program: configure, start, run, stop.
//  Returns the exit status: 0, 1 (could not start), 2 (usage error).
int zim_node_main (const char *program, int roles, int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
