/*  zim_tkcluster.h: cluster node processes for the black-box tests: a
    router, stores, brokers and gateways as separate programs on free
    loopback ports, started, killed, restarted and checked (part of the
    test kit: zim_testkit.h includes it).
*/
#ifndef ZIM_TKCLUSTER_H_INCLUDED
#define ZIM_TKCLUSTER_H_INCLUDED

#include "tests/zim_testkit.h"

//  ---------------------------------------------------------------------
//  Clusters: zim-router, zim-store, zim-broker and zim-gateway processes
//  (found in $ZIM_BIN, default ".") on free loopback ports, sharing
//  one data dir, as docs/OPERATIONS.md "Running a cluster" describes.

//  One cluster node process.
typedef struct {
    pid_t pid;        //  child pid, 0 when not running
    char program[16]; //  zim-gateway, zim-broker, zim-router, zim-store
    char name[32];    //  node name: gw-N, broker-N, router-1, store-N
    int index;        //  N
    char bind[80];    //  service endpoint, tcp://127.0.0.1:PORT with a
                      //  free port picked at the first start; a
                      //  restart binds it again
    char admin[64];   //  admin endpoint, the same way
    int ws_port;      //  gateway: client port, the same way
    int starts;       //  how many times started
    char log[300];    //  log of the current start
    tk_server_t srv;  //  gateway: what tk_connect / tk_login need
} tk_node_t;

#define TK_CLUSTER_MAX 16

//  A cluster: its routers, then stores, brokers and gateways.
typedef struct {
    char dir[256];                   //  shared data dir (secrets, admin key,
                                     //  store-N/ LMDB files, logs)
    char key[128];                   //  admin key
    char router[80];                 //  the first router's endpoint
    char broker_cfg[300];            //  config file the brokers read
    tk_node_t nodes[TK_CLUSTER_MAX]; //  start order
    size_t nnodes;                   //  how many
    bool curve;                      //  CURVE on every endpoint: keys made
                                     //  in DIR/curve, nodes run with --curve
    zim_curve_t *keys;               //  the admin client's keys (with curve)
    zim_curve_t *node_keys;          //  the cluster key pair (with curve)
} tk_cluster_t;

//  Whether tk_cluster_start and tk_cluster_start_routers run the cluster
//  with CURVE, as the example cluster of docs/examples/cluster does.
#define TK_CLUSTER_CURVE true

//  Starts router-1, then stores store-1.., brokers broker-1.. (node id N,
//  broker/shards naming every store) and gateways gw-1.. (on 127.0.0.1), each
//  after the previous one logged its ready line, in a fresh dir
//  ./tk-cluster-XXXXXX; then waits until every gateway's cluster map shows
//  every node alive. Returns 0, or -1 after printing why and the node's log.
int tk_cluster_start (tk_cluster_t *c, int stores, int brokers, int gateways);
//  The same with routers routers (router-1.., 1 or more): every node,
//  routers included, is given --router for each of them, so every router
//  hears every node and publishes the whole map.
int tk_cluster_start_routers (tk_cluster_t *c, int routers, int stores, int brokers, int gateways);
//  The same, with CURVE on (docs/OPERATIONS.md, "CURVE keys") or off.
int tk_cluster_start_with (tk_cluster_t *c, int routers, int stores, int brokers, int gateways,
                           bool curve);
//  A socket that connects to a node's service endpoint as another node
//  would: with the cluster key pair when the cluster runs CURVE, plain
//  otherwise (for tests that play a gateway or a broker). Caller owns
//  return value.
zsock_t *tk_cluster_socket (tk_cluster_t *c, int type);
//  The node called name, or NULL.
tk_node_t *tk_cluster_node (tk_cluster_t *c, const char *name);
//  (Re)starts a node on the endpoints it had, and waits for its ready line.
//  Returns 0 or -1 (printed why).
int tk_node_start (tk_cluster_t *c, tk_node_t *n);
//  Sends sig to the node (SIGKILL: crash; SIGTERM: clean stop) and reaps it.
void tk_node_stop (tk_node_t *n, int sig);
//  Waits until the cluster map seen by every running gateway shows every
//  running node alive and nothing else alive, for 1.5 s in a row (a map
//  can be stale for a second after a kill or restart). Returns 0 or -1.
int tk_cluster_wait (tk_cluster_t *c, int timeout_ms);
//  The status JSON of one node's admin endpoint. Caller owns return value;
//  NULL if it did not answer.
char *tk_cluster_status (tk_cluster_t *c, const tk_node_t *n);
//  Prints the last lines of a node's log to stderr (after a failure).
void tk_node_log_tail (const tk_node_t *n, int lines);
//  Stops every running node with SIGTERM (SIGKILL if one is still running
//  after 5 s), then looks for trouble: a node that did not exit with status
//  0, and sanitizer reports in any log of any start. Returns how many
//  problems it found (each printed, with the end of the log).
int tk_cluster_stop (tk_cluster_t *c);
//  Kills every node and removes the data dir (kept if $ZIM_KEEP is set).
void tk_cluster_cleanup (tk_cluster_t *c);

#endif
