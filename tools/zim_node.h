/*  zim_node.h: one server process. Reads its options and config
    (zim_nodeconf), opens the data directory and secrets (zim_datadir),
    starts the ZAP handler when CURVE is on (msg/zim_zap.h), serves the
    admin endpoint (zim_adminsrv), starts the actors of its roles, and in a
    cluster joins the routers (zim_membership); it stops everything cleanly
    on SIGINT/SIGTERM. zim-server runs every role over inproc://;
    zim-gateway, zim-broker, zim-router and zim-store run one each over
    tcp://.
*/
#ifndef ZIM_NODE_H_INCLUDED
#define ZIM_NODE_H_INCLUDED

#include "tools/zim_nodeconf.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_node_t zim_node_t;

//  Creates a node for the given roles (ZIM_ROLE_*); program is the name
//  used in logs and --help. Caller owns return value.
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

//  Self test of this class.
void zim_node_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
