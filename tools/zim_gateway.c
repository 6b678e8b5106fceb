/*  zim_gateway.c: zim-gateway, one cluster node (docs/OPERATIONS.md, "Running a
    cluster"): the gateway actor over tcp://, joined to the cluster's routers.
*/
#include "tools/zim_node.h"

#include <czmq.h>

int main (int argc, char **argv)
{
    return zim_node_main ("zim-gateway", ZIM_ROLE_GATEWAY, argc, argv);
}
